//! Fuzz bodies for what Ember reads from disk and from callers' text: safetensors files, a model's
//! `config.json`, the models TOML file and arbitrary text through the tiny BERT fixture's
//! tokenizer and encoder. Each function panics only on a bug; the cargo-fuzz binaries and the
//! corpus replay test (`crates/ember-core/tests/fuzz_replay.rs`) both call them.

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use ember_core::{EmbedOptions, Embedder, Registry};

/// Arbitrary bytes as a safetensors file: refused with an error or read into tensors that fit
/// inside the buffer, never a panic, and nothing allocated beyond what the buffer holds.
pub fn safetensors_header(data: &[u8]) {
    let mut cursor = std::io::Cursor::new(data);
    let Ok(index) = ember_core::weights::safetensors_index(&mut cursor) else {
        return;
    };
    let mut total = 0usize;
    for stored in &index {
        let Ok(t) = stored.read(&mut cursor, &candle_core::Device::Cpu) else {
            continue;
        };
        total += t.elem_count() * t.dtype().size_in_bytes();
        assert!(
            total <= data.len(),
            "tensors up to {:?} claim {total} bytes but the file has {}",
            stored.name,
            data.len()
        );
    }
}

/// Arbitrary bytes as a model's `config.json` (and `1_Pooling/config.json`,
/// `sentence_bert_config.json`): parsed and validated, or refused, never a panic; a refusal names
/// the file.
pub fn config_json(data: &[u8]) {
    let path = Path::new("config.json");
    if let Ok(cfg) = serde_json::from_slice::<ember_core::config::TransformerConfig>(data) {
        if let Err(e) = cfg.validate(path) {
            assert!(e.to_string().contains("config.json"), "{e}");
        }
    }
    // Every architecture's mirror, picked by `model_type`: parsed or refused naming the file.
    if let Err(e) = ember_core::config::ModelConfig::parse(data, path) {
        assert!(e.to_string().contains("config.json"), "{e}");
    }
    let _ = serde_json::from_slice::<ember_core::config::PoolingConfigFile>(data);
    let _ = serde_json::from_slice::<ember_core::config::SentenceTransformersConfig>(data);
}

/// Arbitrary text as a user's models TOML file: either every entry is added and can be looked up
/// by its id, or the file is refused with an error naming it and the catalog is unchanged.
pub fn registry_toml(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let builtin = Registry::builtin();
    let mut reg = builtin.clone();
    match reg.add_toml_str(text, Path::new("/models.toml")) {
        Ok(ids) => {
            for id in ids {
                assert!(reg.lookup(&id).is_ok(), "registered id {id:?} not found");
            }
        }
        Err(e) => {
            assert!(e.to_string().contains("models.toml"), "{e}");
            let ids = |r: &Registry| r.models().iter().map(|m| m.id.clone()).collect::<Vec<_>>();
            assert_eq!(
                ids(&reg),
                ids(&builtin),
                "a refused file changed the catalog"
            );
        }
    }
}

/// The tiny BERT fixture (`fixtures/reference/tiny/bert`).
pub fn tiny_bert_dir() -> PathBuf {
    crate::replay::repo_root().join("fixtures/reference/tiny/bert")
}

fn tiny_bert() -> &'static Embedder {
    static M: OnceLock<Embedder> = OnceLock::new();
    M.get_or_init(|| Embedder::load("tiny-bert", &tiny_bert_dir()).expect("tiny model loads"))
}

/// Arbitrary bytes (read as UTF-8, invalid sequences replaced) through the tiny BERT model:
/// token ids inside the vocabulary and the length limit, one finite unit-norm vector of the
/// model's dimension, and with truncation off either the same or an "input too long" error.
pub fn tokenize(data: &[u8]) {
    let text = String::from_utf8_lossy(data).into_owned();
    let texts = [text];
    let m = tiny_bert();
    let info = m.info();

    let ids = m.token_ids(&texts).expect("token ids of any text");
    assert_eq!(ids.len(), 1);
    assert!(
        ids[0].len() <= info.max_seq_length,
        "{} tokens after truncation; the limit is {}",
        ids[0].len(),
        info.max_seq_length
    );
    assert!(
        ids[0].iter().all(|&id| (id as usize) < info.vocab_size),
        "token id outside the vocabulary ({}): {:?}",
        info.vocab_size,
        ids[0]
    );
    assert_eq!(
        m.count_tokens(&texts).expect("token count"),
        vec![ids[0].len()]
    );
    m.decode(0, &ids[0]).expect("the model's own ids decode");

    let out = m
        .embed(&texts, &EmbedOptions::default())
        .expect("embedding never fails on text");
    assert_eq!((out.rows, out.data.len()), (1, m.dimension()));
    assert_eq!(out.prompt_tokens, ids[0].len());
    assert!(out.data.iter().all(|x| x.is_finite()), "non-finite vector");
    let norm = out.data.iter().map(|x| x * x).sum::<f32>().sqrt();
    assert!((norm - 1.0).abs() < 1e-3, "norm {norm}");

    let strict = EmbedOptions {
        truncate: false,
        ..EmbedOptions::default()
    };
    match m.embed(&texts, &strict) {
        Ok(o) => assert_eq!(o.data.len(), m.dimension()),
        Err(e) => assert!(
            matches!(e, ember_core::Error::InputTooLong { .. }),
            "truncate=false failed with something other than an over-long input: {e}"
        ),
    }
}
