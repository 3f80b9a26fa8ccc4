//! Rerankers, sparse encoders and token embeddings against sentence-transformers' outputs for
//! the same seeded tiny models (`fixtures/reference/make_heads.py`): `CrossEncoder.predict` raw
//! and activated and `CrossEncoder.rank`, `SparseEncoder.encode` (and `encode_query` of an
//! inference-free router), `encode(output_value="token_embeddings")`.

mod common;

use common::{cosine, json, rows, strings, tiny, CROSS_ENCODERS};
use ember_core::{
    DType, Embedder, ModelKind, PredictInput, RerankOptions, SparseOptions, SparseVector,
};
use serde_json::Value;

fn floats(v: &Value) -> Vec<f32> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_f64().unwrap() as f32)
        .collect()
}

fn load(kind: &str) -> Embedder {
    Embedder::load(kind, &tiny(kind)).unwrap()
}

fn close(got: &[f32], want: &[f32], tol: f32, what: &str) {
    assert_eq!(got.len(), want.len(), "{what}: lengths");
    for (i, (g, w)) in got.iter().zip(want).enumerate() {
        assert!((g - w).abs() <= tol, "{what}[{i}]: {g} vs {w}");
    }
}

/// `got` ranks documents as `want` does, up to pairs whose reference scores tie within `tol`.
fn same_order(got: &[(usize, f32)], want: &[(usize, f32)], tol: f32) {
    let ref_score = |i: usize| want.iter().find(|w| w.0 == i).unwrap().1;
    for pair in got.windows(2) {
        let (a, b) = (ref_score(pair[0].0), ref_score(pair[1].0));
        assert!(a >= b - tol, "order differs: {got:?} vs {want:?}");
    }
    let exact: Vec<usize> = got.iter().map(|g| g.0).collect();
    let want_idx: Vec<usize> = want.iter().map(|w| w.0).collect();
    if exact != want_idx {
        eprintln!("ranking differs only within ties: {exact:?} vs {want_idx:?}");
    }
}

fn check_cross(kind: &str) {
    let expected = json(tiny(kind).join("expected.json"));
    let model = load(kind);
    assert_eq!(model.kind(), ModelKind::Reranker);
    assert_eq!(model.info().labels, ["LABEL_0"]);
    let query = expected["query"].as_str().unwrap();
    let docs = strings(&expected["documents"]);

    // Pair tokenization: ids and token types as the reference tokenizer makes them (the long
    // document is cut, the query kept).
    let encoded = model
        .tokenize_pairs(query, &docs, &RerankOptions::default())
        .unwrap();
    for (i, e) in encoded.iter().enumerate() {
        let ids: Vec<u32> = floats(&expected["input_ids"][i])
            .iter()
            .map(|&x| x as u32)
            .collect();
        assert_eq!(e.ids, ids, "{kind}: ids of pair {i}");
        if let Some(types) = expected["token_type_ids"][i].as_array() {
            let types: Vec<u32> = types.iter().map(|x| x.as_u64().unwrap() as u32).collect();
            assert_eq!(e.type_ids, types, "{kind}: token types of pair {i}");
        }
    }

    let pairs: Vec<PredictInput> = docs
        .iter()
        .map(|d| PredictInput::Pair(query.to_string(), d.clone()))
        .collect();
    let raw = RerankOptions {
        raw_scores: true,
        ..RerankOptions::default()
    };
    let got = model.predict(&pairs, &raw).unwrap();
    close(&got.scores, &floats(&expected["raw"]), 1e-4, kind);
    let got = model.predict(&pairs, &RerankOptions::default()).unwrap();
    close(&got.scores, &floats(&expected["activated"]), 1e-4, kind);

    // rank: the same scores, best first, in CrossEncoder.rank's order.
    let ranked = model
        .rerank(query, &docs, &RerankOptions::default())
        .unwrap();
    let want: Vec<(usize, f32)> = expected["rank"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            (
                r["index"].as_u64().unwrap() as usize,
                r["score"].as_f64().unwrap() as f32,
            )
        })
        .collect();
    let got: Vec<(usize, f32)> = ranked.results.iter().map(|r| (r.index, r.score)).collect();
    same_order(&got, &want, 1e-5);
    for (g, w) in got.iter().zip(&want) {
        let w_score = want.iter().find(|x| x.0 == g.0).unwrap().1;
        assert!((g.1 - w_score).abs() <= 1e-4, "{kind}: {g:?} vs {w:?}");
    }

    // Batch size does not change a score.
    let one = RerankOptions {
        batch_size: 1,
        ..RerankOptions::default()
    };
    let single = model.rerank(query, &docs, &one).unwrap();
    for (a, b) in single.results.iter().zip(&ranked.results) {
        assert!((a.score - b.score).abs() < 1e-5);
    }
}

#[test]
fn bert_cross_encoder_matches_sentence_transformers() {
    check_cross("cross-bert");
}

#[test]
fn xlm_roberta_cross_encoder_matches_sentence_transformers() {
    check_cross("cross-xlm-roberta");
}

/// ModernBERT's head: mean pooling, then dense, GELU and layer norm before the classifier.
#[test]
fn modernbert_cross_encoder_matches_sentence_transformers() {
    check_cross("cross-modernbert");
}

/// GTE's head: the pooler (first token, dense, tanh), then the classifier.
#[test]
fn gte_cross_encoder_matches_sentence_transformers() {
    check_cross("cross-gte");
}

/// Alibaba's published layout, as gte-multilingual-reranker-base ships it: `model_type: new`,
/// `NewForSequenceClassification`, the encoder and `pooler.dense` under `new.`, `classifier` at
/// the top, RoPE NTK scaling, no sentence-transformers files (the limit comes from
/// `tokenizer_config.json`, the sigmoid from the one label).
#[test]
fn gte_new_layout_cross_encoder_matches_sentence_transformers() {
    check_cross("cross-gte-new");
    let model = load("cross-gte-new");
    let info = model.info();
    assert_eq!(
        (info.architecture.as_str(), info.max_seq_length),
        ("new", 32)
    );
}

#[test]
fn three_label_classifier_predicts_pairs_and_texts() {
    let expected = json(tiny("cross-bert-nli").join("expected.json"));
    let model = load("cross-bert-nli");
    assert_eq!(model.info().labels.len(), 3);
    let pairs: Vec<PredictInput> = expected["pairs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| PredictInput::Pair(p[0].as_str().unwrap().into(), p[1].as_str().unwrap().into()))
        .collect();
    let singles: Vec<PredictInput> = strings(&expected["singles"])
        .into_iter()
        .map(PredictInput::Single)
        .collect();
    // Identity is the default for several labels: activated equals raw.
    let got = model.predict(&pairs, &RerankOptions::default()).unwrap();
    let want: Vec<f32> = rows(&expected["activated"]).concat();
    close(&got.scores, &want, 1e-4, "nli pairs");
    // Singles and pairs mixed in one call keep their order.
    let mixed = [singles.clone(), pairs.clone()].concat();
    let got = model.predict(&mixed, &RerankOptions::default()).unwrap();
    let want = [
        rows(&expected["singles_raw"]).concat(),
        rows(&expected["raw"]).concat(),
    ]
    .concat();
    close(&got.scores, &want, 1e-4, "nli mixed");
    // rank needs a single score.
    let err = model
        .rerank("q", &["d".to_string()], &RerankOptions::default())
        .unwrap_err();
    assert!(err.to_string().contains("3 labels"), "{err}");
}

fn sparse_rows(v: &Value) -> Vec<(Vec<u32>, Vec<f32>)> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|r| {
            let idx = floats(&r["indices"]).iter().map(|&x| x as u32).collect();
            (idx, floats(&r["values"]))
        })
        .collect()
}

fn check_sparse(got: &[SparseVector], want: &[(Vec<u32>, Vec<f32>)], what: &str) {
    assert_eq!(got.len(), want.len());
    for (i, (g, (idx, vals))) in got.iter().zip(want).enumerate() {
        // Entries within rounding of zero may fall on either side of it.
        let small = |x: f32| x.abs() < 1e-5;
        let g_big: Vec<u32> = g
            .indices
            .iter()
            .zip(&g.values)
            .filter(|(_, v)| !small(**v))
            .map(|(i, _)| *i)
            .collect();
        let w_big: Vec<u32> = idx
            .iter()
            .zip(vals)
            .filter(|(_, v)| !small(**v))
            .map(|(i, _)| *i)
            .collect();
        assert_eq!(g_big, w_big, "{what}: indices of text {i}");
        for (k, v) in idx.iter().zip(vals) {
            let got = g
                .indices
                .iter()
                .position(|x| x == k)
                .map_or(0.0, |p| g.values[p]);
            assert!(
                (got - v).abs() <= 1e-4,
                "{what}: text {i} index {k}: {got} vs {v}"
            );
        }
    }
}

#[test]
fn splade_matches_sparse_encoder() {
    let expected = json(tiny("splade-bert").join("expected.json"));
    let model = load("splade-bert");
    assert_eq!(model.kind(), ModelKind::Sparse);
    assert_eq!(model.dimension(), 248);
    let texts = strings(&expected["texts"]);
    let got = model
        .embed_sparse(&texts, &SparseOptions::default())
        .unwrap();
    check_sparse(&got.vectors, &sparse_rows(&expected["vectors"]), "splade");
    let top = model
        .embed_sparse(
            &texts[..3],
            &SparseOptions {
                top_k: Some(3),
                ..SparseOptions::default()
            },
        )
        .unwrap();
    check_sparse(
        &top.vectors,
        &sparse_rows(&expected["top_3"]),
        "splade top 3",
    );
}

#[test]
fn inference_free_router_matches_sparse_encoder_on_both_routes() {
    let expected = json(tiny("splade-distilbert-if").join("expected.json"));
    let model = load("splade-distilbert-if");
    assert_eq!(model.kind(), ModelKind::Sparse);
    assert_eq!(model.info().architecture, "distilbert");
    assert!(model.sparse_head().unwrap().inference_free());
    let texts = strings(&expected["texts"]);
    let docs = model
        .embed_sparse(&texts, &SparseOptions::default())
        .unwrap();
    check_sparse(
        &docs.vectors,
        &sparse_rows(&expected["documents"]),
        "documents",
    );
    let query = SparseOptions {
        query: true,
        ..SparseOptions::default()
    };
    let queries = model.embed_sparse(&texts, &query).unwrap();
    check_sparse(
        &queries.vectors,
        &sparse_rows(&expected["queries"]),
        "queries",
    );
}

#[test]
fn token_embeddings_match_sentence_transformers() {
    let expected = json(tiny("bert").join("token_embeddings.json"));
    let model = load("bert");
    let texts = strings(&expected["texts"]);
    let got = model.token_embeddings(&texts, true).unwrap();
    let dim = model.dimension();
    for (i, want) in expected["token_embeddings"]
        .as_array()
        .unwrap()
        .iter()
        .enumerate()
    {
        let want = rows(want);
        assert_eq!(got[i].len(), want.len() * dim, "text {i}: token count");
        for (t, w) in got[i].chunks(dim).zip(&want) {
            let c = cosine(t, w);
            assert!(c >= 0.9999, "text {i}: token cosine {c}");
        }
    }
}

#[test]
fn kinds_refuse_each_others_calls() {
    let reranker = load("cross-bert");
    let err = reranker
        .embed(&["x".to_string()], &Default::default())
        .unwrap_err();
    let msg = err.to_string();
    assert!(
        msg.contains("cross-bert") && msg.contains("reranker") && msg.contains("embed"),
        "{msg}"
    );
    assert_eq!(err.kind(), ember_core::ErrorKind::InvalidInput);
    let embedder = load("bert");
    let err = embedder
        .rerank("q", &["d".to_string()], &RerankOptions::default())
        .unwrap_err();
    assert!(err.to_string().contains("is an embedder"), "{err}");
    let err = embedder
        .embed_sparse(&["x".to_string()], &SparseOptions::default())
        .unwrap_err();
    assert!(err.to_string().contains("sparse"), "{err}");
}

#[test]
fn truncation_off_names_the_long_pair() {
    let model = load("cross-bert");
    let docs = vec!["short".to_string(), "word ".repeat(60)];
    let opts = RerankOptions {
        truncate: false,
        ..RerankOptions::default()
    };
    let err = model.rerank("query", &docs, &opts).unwrap_err().to_string();
    assert!(
        err.contains("input 1") && err.contains("accepts 32"),
        "{err}"
    );
}

/// Every dtype loads the heads and keeps the ranking of the tiny models close to FP32.
#[test]
fn heads_load_in_every_dtype() {
    let sparse = ["splade-bert", "splade-distilbert-if"];
    for kind in CROSS_ENCODERS.into_iter().chain(sparse) {
        for dtype in DType::ALL {
            let m = Embedder::load_dtype(kind, &tiny(kind), dtype).unwrap();
            assert_eq!(m.info().dtype, dtype);
            if m.kind() == ModelKind::Reranker {
                let r = m
                    .rerank(
                        "quick fox",
                        &["the fox".into(), "".into()],
                        &Default::default(),
                    )
                    .unwrap();
                assert_eq!(r.results.len(), 2, "{kind} {dtype}");
            } else {
                let s = m
                    .embed_sparse(&["the quick fox".into()], &Default::default())
                    .unwrap();
                assert!(!s.vectors[0].is_empty(), "{kind} {dtype}");
            }
        }
    }
}
