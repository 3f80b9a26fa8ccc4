//! Rerank, predict and sparse routes through `oneshot`, checked against the CrossEncoder and
//! SparseEncoder fixtures (scores within 1e-4 and the same order, sparse values within 1e-4 on
//! the same indices), each dialect's error shape, and the limits.

mod common;

use std::sync::Arc;

use axum::http::StatusCode;
use axum::Router;
use common::*;
use ember_core::{ModelManager, ModelSpec, Registry, Resolver};
use ember_server::{app, AppState, Limits};
use serde_json::{json, Value};

/// The tiny embedder (default), the tiny cross-encoders and the tiny SPLADE model.
fn heads_app(limits: Limits) -> Router {
    let mut reg = Registry::builtin();
    for (id, dir) in [
        ("tiny-bert", "bert"),
        ("tiny-cross", "cross-bert"),
        ("tiny-nli", "cross-bert-nli"),
        ("tiny-splade", "splade-bert"),
    ] {
        let mut spec = ModelSpec::for_path(id, &tiny(dir));
        spec.is_default = id == "tiny-bert";
        reg.register(spec).unwrap();
    }
    let manager = Arc::new(ModelManager::new(reg, Resolver::from_env()));
    app(AppState::new(manager, limits))
}

fn expected(dir: &str) -> Value {
    let text = std::fs::read_to_string(tiny(dir).join("expected.json")).unwrap();
    serde_json::from_str(&text).unwrap()
}

fn close(got: f64, want: f64, what: &str) {
    assert!((got - want).abs() <= 1e-4, "{what}: {got} vs {want}");
}

#[tokio::test]
async fn rerank_routes_match_cross_encoder_in_every_dialect() {
    let app = heads_app(Limits::default());
    let want = expected("cross-bert");
    let rank = want["rank"].as_array().unwrap();
    let (query, docs) = (&want["query"], &want["documents"]);

    // TEI: activated scores, sorted, texts on request; raw scores are the logits.
    let body = json!({"model": "tiny-cross", "query": query, "texts": docs, "return_text": true});
    let (status, got) = send(&app, post_json("/rerank", &body.to_string())).await;
    assert_eq!(status, StatusCode::OK, "{got}");
    let got = got.as_array().unwrap();
    assert_eq!(got.len(), rank.len());
    for (g, w) in got.iter().zip(rank) {
        assert_eq!(g["index"], w["index"], "{got:?}");
        close(
            g["score"].as_f64().unwrap(),
            w["score"].as_f64().unwrap(),
            "tei",
        );
        assert_eq!(g["text"], docs[g["index"].as_u64().unwrap() as usize]);
    }
    let body = json!({"model": "tiny-cross", "query": query, "texts": docs, "raw_scores": true});
    let (_, got) = send(&app, post_json("/rerank", &body.to_string())).await;
    for g in got.as_array().unwrap() {
        let i = g["index"].as_u64().unwrap() as usize;
        close(
            g["score"].as_f64().unwrap(),
            want["raw"][i].as_f64().unwrap(),
            "raw",
        );
        assert!(g.get("text").is_none());
    }

    // Cohere / Jina and native: documents as strings or {"text"}, top_n, return_documents.
    let objects: Vec<Value> = docs
        .as_array()
        .unwrap()
        .iter()
        .map(|d| json!({"text": d}))
        .collect();
    for (uri, documents) in [
        ("/v1/rerank", docs.clone()),
        ("/v2/rerank", json!(objects)),
        ("/api/v1/rerank", docs.clone()),
    ] {
        let body = json!({"model": "tiny-cross", "query": query, "documents": documents,
            "top_n": 3, "return_documents": true});
        let (status, got) = send(&app, post_json(uri, &body.to_string())).await;
        assert_eq!(status, StatusCode::OK, "{uri}: {got}");
        assert_eq!(got["model"], "tiny-cross");
        let results = got["results"].as_array().unwrap();
        assert_eq!(results.len(), 3, "{uri}");
        for (g, w) in results.iter().zip(rank) {
            assert_eq!(g["index"], w["index"], "{uri}");
            let score = g["relevance_score"].as_f64().unwrap();
            close(score, w["score"].as_f64().unwrap(), uri);
            let i = g["index"].as_u64().unwrap() as usize;
            assert_eq!(g["document"]["text"], docs[i], "{uri}");
        }
        assert!(got["usage"]["total_tokens"].as_u64().unwrap() > 0, "{got}");
    }
}

#[tokio::test]
async fn predict_and_embed_sparse_match_the_reference() {
    let app = heads_app(Limits::default());
    let nli = expected("cross-bert-nli");
    let body = json!({"model": "tiny-nli", "inputs": nli["pairs"]});
    let (status, got) = send(&app, post_json("/predict", &body.to_string())).await;
    assert_eq!(status, StatusCode::OK, "{got}");
    let labels = nli["labels"].as_array().unwrap();
    for (i, row) in got.as_array().unwrap().iter().enumerate() {
        let row = row.as_array().unwrap();
        assert_eq!(row.len(), 3);
        assert!(row
            .windows(2)
            .all(|w| w[0]["score"].as_f64() >= w[1]["score"].as_f64()));
        for p in row {
            let j = labels.iter().position(|l| *l == p["label"]).unwrap();
            let want = nli["activated"][i][j].as_f64().unwrap();
            close(p["score"].as_f64().unwrap(), want, "predict");
        }
    }
    // One pair gives one list.
    let body = json!({"model": "tiny-nli", "inputs": nli["pairs"][0], "raw_scores": true});
    let (_, got) = send(&app, post_json("/predict", &body.to_string())).await;
    for p in got.as_array().unwrap() {
        let j = labels.iter().position(|l| *l == p["label"]).unwrap();
        close(
            p["score"].as_f64().unwrap(),
            nli["raw"][0][j].as_f64().unwrap(),
            "raw",
        );
    }

    let splade = expected("splade-bert");
    let body = json!({"model": "tiny-splade", "inputs": splade["texts"]});
    let (status, got) = send(&app, post_json("/embed_sparse", &body.to_string())).await;
    assert_eq!(status, StatusCode::OK, "{got}");
    for (g, w) in got
        .as_array()
        .unwrap()
        .iter()
        .zip(splade["vectors"].as_array().unwrap())
    {
        let g = g.as_array().unwrap();
        let idx: Vec<&Value> = g.iter().map(|e| &e["index"]).collect();
        let want_idx: Vec<&Value> = w["indices"].as_array().unwrap().iter().collect();
        assert_eq!(idx, want_idx);
        for (e, v) in g.iter().zip(w["values"].as_array().unwrap()) {
            close(e["value"].as_f64().unwrap(), v.as_f64().unwrap(), "sparse");
        }
    }
}

#[tokio::test]
async fn bad_rerank_requests_name_the_field_kind_or_limit() {
    let app = heads_app(Limits {
        max_rerank_documents: 3,
        ..Limits::default()
    });
    let docs = json!(["a", "b", "c", "d"]);
    // Over the document limit: 413 naming it, in each dialect's shape.
    let body = json!({"model": "tiny-cross", "query": "q", "documents": docs}).to_string();
    let (status, got) = send(&app, post_json("/v1/rerank", &body)).await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE, "{got}");
    assert!(
        got["message"].as_str().unwrap().contains("at most 3"),
        "{got}"
    );
    let (status, got) = send(&app, post_json("/api/v1/rerank", &body)).await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE);
    assert_eq!(got["error"]["type"], "too_many_inputs", "{got}");
    let body = json!({"model": "tiny-cross", "query": "q", "texts": docs}).to_string();
    let (status, got) = send(&app, post_json("/rerank", &body)).await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE);
    assert!(got["error"]
        .as_str()
        .unwrap()
        .contains("--max-rerank-documents"));

    // Empty documents: 400.
    let body = json!({"model": "tiny-cross", "query": "q", "documents": []}).to_string();
    let (status, got) = send(&app, post_json("/v1/rerank", &body)).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{got}");
    assert!(got["message"].as_str().unwrap().contains("empty"), "{got}");

    // Missing query: names the field.
    let body = json!({"model": "tiny-cross", "documents": ["a"]}).to_string();
    let (status, got) = send(&app, post_json("/api/v1/rerank", &body)).await;
    assert!(status.is_client_error(), "{status}");
    assert!(
        got["error"]["message"].as_str().unwrap().contains("query"),
        "{got}"
    );

    // An embedder asked to rerank, a reranker asked to embed or for sparse vectors: 400 naming
    // the kind.
    let body = json!({"query": "q", "documents": ["a"]}).to_string();
    let (status, got) = send(&app, post_json("/v1/rerank", &body)).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{got}");
    assert!(
        got["message"].as_str().unwrap().contains("is an embedder"),
        "{got}"
    );
    let body = json!({"model": "tiny-cross", "inputs": ["a"]}).to_string();
    let (status, got) = send(&app, post_json("/embed_sparse", &body)).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{got}");
    assert!(
        got["error"].as_str().unwrap().contains("is a reranker"),
        "{got}"
    );
    let body = json!({"model": "tiny-cross", "input": ["a"]}).to_string();
    let (status, got) = send(&app, post_json("/api/v1/embed", &body)).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{got}");
    assert_eq!(got["error"]["type"], "invalid_request", "{got}");

    // A long pair with truncation off: named, not cut.
    let long = "word ".repeat(200);
    let body = json!({"model": "tiny-cross", "query": "q", "texts": [long], "truncate": false});
    let (status, got) = send(&app, post_json("/rerank", &body.to_string())).await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE, "{got}");
}
