//! Rerankers and sparse encoders in the one manager: the catalog's kind decides what a model may
//! be asked (checked before anything loads), and they share the LRU, the memory budget,
//! keep-alive and the dtypes with the embedders.

mod common;

use common::tiny;
use ember_core::manager::ManagerConfig;
use ember_core::{
    DType, EmbedOptions, ErrorKind, KeepAlive, ModelKind, ModelManager, ModelSpec, PredictInput,
    Registry, RerankOptions, Resolver, SparseOptions,
};

fn registry() -> Registry {
    let mut reg = Registry::builtin();
    for (id, dir, default) in [
        ("tiny-bert", "bert", true),
        ("tiny-cross", "cross-bert", false),
        ("tiny-splade", "splade-bert", false),
    ] {
        let mut spec = ModelSpec::for_path(id, &tiny(dir));
        spec.is_default = default;
        reg.register(spec).unwrap();
    }
    reg
}

fn docs() -> Vec<String> {
    [
        "the quick brown fox",
        "hello world",
        "a model for text search",
    ]
    .map(String::from)
    .to_vec()
}

#[test]
fn directories_get_their_kind_from_their_files() {
    let reg = registry();
    assert_eq!(reg.lookup("tiny-bert").unwrap().kind, ModelKind::Embedder);
    assert_eq!(reg.lookup("tiny-cross").unwrap().kind, ModelKind::Reranker);
    assert_eq!(reg.lookup("tiny-splade").unwrap().kind, ModelKind::Sparse);
}

#[test]
fn wrong_kind_is_refused_before_loading() {
    let m = ModelManager::new(registry(), Resolver::from_env());
    let err = m
        .rerank(
            Some("tiny-bert"),
            None,
            "q",
            &docs(),
            &RerankOptions::default(),
        )
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidInput);
    assert!(
        err.to_string().contains("`tiny-bert` is an embedder"),
        "{err}"
    );
    let err = m
        .embed(Some("tiny-cross"), None, &docs(), &EmbedOptions::default())
        .unwrap_err();
    assert!(err.to_string().contains("is a reranker"), "{err}");
    let err = m
        .embed_sparse(Some("tiny-cross"), None, &docs(), &SparseOptions::default())
        .unwrap_err();
    assert!(
        err.to_string()
            .contains("sparse embedding needs a sparse encoder"),
        "{err}"
    );
    let err = m
        .token_embeddings(Some("tiny-splade"), None, &docs(), true)
        .unwrap_err();
    assert!(err.to_string().contains("is a sparse encoder"), "{err}");
    assert_eq!(m.stats().unwrap().loads, 0, "nothing was loaded");
}

#[test]
fn all_kinds_share_the_cache_budget_and_keep_alive() {
    let m = ModelManager::with_config(
        registry(),
        Resolver::from_env(),
        ManagerConfig {
            max_models: 2,
            ..ManagerConfig::default()
        },
    );
    let ranked = m
        .rerank(
            Some("tiny-cross"),
            None,
            "quick fox",
            &docs(),
            &RerankOptions::default(),
        )
        .unwrap();
    assert_eq!(ranked.results.len(), 3);
    let scores = m
        .predict(
            Some("tiny-cross"),
            Some(DType::Int8),
            &[PredictInput::Pair("quick fox".into(), "the fox".into())],
            &RerankOptions::default(),
        )
        .unwrap();
    assert_eq!(scores.num_labels, 1);
    // Two (model, dtype) entries held: a third evicts the least recently used one.
    let sparse = m
        .embed_sparse(
            Some("tiny-splade"),
            None,
            &docs(),
            &SparseOptions::default(),
        )
        .unwrap();
    assert_eq!(sparse.vectors.len(), 3);
    let st = m.stats().unwrap();
    assert_eq!((st.models_loaded, st.evictions.lru), (2, 1));
    let status = m.model_status("tiny-splade").unwrap();
    assert!(status.loaded);
    assert_eq!(status.spec.kind, ModelKind::Sparse);
    // A keep-alive of 0 unloads a reranker right after its request, as it does an embedder.
    let m = ModelManager::with_config(
        registry(),
        Resolver::from_env(),
        ManagerConfig {
            keep_alive: KeepAlive::For(Default::default()),
            ..ManagerConfig::default()
        },
    );
    m.rerank(
        Some("tiny-cross"),
        Some(DType::Fp16),
        "q",
        &docs(),
        &RerankOptions::default(),
    )
    .unwrap();
    assert!(!m.model_status("tiny-cross").unwrap().loaded);
    assert_eq!(m.stats().unwrap().loads, 1);
}

#[test]
fn a_models_file_entry_without_a_kind_takes_its_directory_s() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("models.toml");
    let entry = |id: &str, kind_dir: &str, kind: &str| {
        format!(
            "[[models]]\nid = \"{id}\"\npath = \"{}\"\n{kind}\n",
            tiny(kind_dir).display()
        )
    };
    let text = [
        entry("cross", "cross-bert", ""),
        entry("splade", "splade-bert", ""),
        entry("plain", "bert", ""),
        // A stated kind wins over the files.
        entry("stated", "bert", "kind = \"sparse\""),
    ]
    .join("\n");
    std::fs::write(&file, text).unwrap();
    let mut reg = Registry::builtin();
    assert_eq!(reg.load_toml(&file).unwrap(), 4);
    for (id, kind) in [
        ("cross", ModelKind::Reranker),
        ("splade", ModelKind::Sparse),
        ("plain", ModelKind::Embedder),
        ("stated", ModelKind::Sparse),
    ] {
        assert_eq!(reg.lookup(id).unwrap().kind, kind, "{id}");
    }
}
