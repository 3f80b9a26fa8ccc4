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

#[tokio::test]
async fn native_sparse_output_matches_sparse_encoder() {
    let app = heads_app(Limits::default());
    let want = expected("splade-bert");
    let vectors = want["vectors"].as_array().unwrap();
    let body = json!({"model": "tiny-splade", "input": want["texts"], "output": "sparse"});
    let (status, got) = send(&app, post_json("/api/v1/embed", &body.to_string())).await;
    assert_eq!(status, StatusCode::OK, "{got}");
    assert_eq!(got["output"], "sparse");
    assert_eq!(got["model"], "tiny-splade");
    assert!(got["usage"]["prompt_tokens"].as_u64().unwrap() > 0, "{got}");
    let dimension = got["dimension"].as_u64().unwrap();
    let embeddings = got["embeddings"].as_array().unwrap();
    assert_eq!(embeddings.len(), vectors.len());
    for (g, w) in embeddings.iter().zip(vectors) {
        assert_eq!(g["indices"], w["indices"]);
        assert!(g["indices"]
            .as_array()
            .unwrap()
            .iter()
            .all(|i| i.as_u64().unwrap() < dimension));
        for (v, e) in floats(&g["values"]).iter().zip(floats(&w["values"])) {
            close(*v as f64, e as f64, "native sparse");
        }
    }

    // top_k keeps the k largest values of each full vector, still by increasing index.
    let body =
        json!({"model": "tiny-splade", "input": want["texts"], "output": "sparse", "top_k": 3});
    let (status, got) = send(&app, post_json("/api/v1/embed", &body.to_string())).await;
    assert_eq!(status, StatusCode::OK, "{got}");
    for (g, w) in got["embeddings"].as_array().unwrap().iter().zip(vectors) {
        let mut full: Vec<(f32, u64)> = floats(&w["values"])
            .into_iter()
            .zip(
                w["indices"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|i| i.as_u64().unwrap()),
            )
            .collect();
        full.sort_by(|a, b| b.0.total_cmp(&a.0));
        let idx: Vec<u64> = g["indices"]
            .as_array()
            .unwrap()
            .iter()
            .map(|i| i.as_u64().unwrap())
            .collect();
        assert_eq!(idx.len(), full.len().min(3), "{g}");
        assert!(idx.windows(2).all(|p| p[0] < p[1]), "{g}");
        // The smallest kept value is at least the fourth largest of the full vector.
        let kept = floats(&g["values"]);
        let floor = kept.iter().copied().fold(f32::INFINITY, f32::min);
        if let Some(next) = full.get(3) {
            assert!(floor as f64 >= next.0 as f64 - 1e-4, "{g} vs {full:?}");
        }
        for (i, v) in idx.iter().zip(&kept) {
            let (e, _) = full.iter().find(|(_, j)| j == i).unwrap();
            close(*v as f64, *e as f64, "top_k");
        }
    }
}

#[tokio::test]
async fn native_output_kind_and_options_are_checked() {
    let app = heads_app(Limits::default());
    let cases = [
        // A sparse request to an embedder, a dense one to a sparse encoder: the kind named.
        (
            json!({"input": ["a"], "output": "sparse"}),
            "is an embedder (kind `embedder`)",
        ),
        (
            json!({"model": "tiny-splade", "input": ["a"]}),
            "is a sparse encoder (kind `sparse`); dense output needs an embedder",
        ),
        (
            json!({"model": "tiny-cross", "input": ["a"], "output": "sparse"}),
            "is a reranker",
        ),
        // Options of the other output, and an unknown output, name their field.
        (
            json!({"input": ["a"], "top_k": 3}),
            "`top_k` applies to sparse output only",
        ),
        (
            json!({"model": "tiny-splade", "input": ["a"], "output": "sparse", "normalize": true}),
            "`normalize` applies to dense output only",
        ),
        (
            json!({"input": ["a"], "output": "colbert"}),
            "unknown `output` `colbert`",
        ),
        (
            json!({"model": "tiny-splade", "input": ["a"], "output": "sparse", "top_k": 0}),
            "top_k",
        ),
    ];
    for (body, want) in cases {
        let (status, got) = send(&app, post_json("/api/v1/embed", &body.to_string())).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{body}: {got}");
        assert_eq!(got["error"]["type"], "invalid_request", "{got}");
        let message = got["error"]["message"].as_str().unwrap();
        assert!(message.contains(want), "{body}: {message}");
    }
}

#[tokio::test]
async fn the_catalog_shows_kinds_and_metrics_carry_the_task() {
    let app = heads_app(Limits::default());
    let (status, got) = send(&app, get("/api/v1/models")).await;
    assert_eq!(status, StatusCode::OK, "{got}");
    let kind = |id: &str| {
        got["models"]
            .as_array()
            .unwrap()
            .iter()
            .find(|m| m["id"] == id)
            .map(|m| m["kind"].clone())
    };
    assert_eq!(kind("tiny-bert"), Some(json!("embedder")));
    assert_eq!(kind("tiny-cross"), Some(json!("reranker")));
    assert_eq!(kind("tiny-splade"), Some(json!("sparse")));
    assert_eq!(kind("ms-marco-MiniLM-L6-v2"), Some(json!("reranker")));
    assert_eq!(
        kind("gte-multilingual-reranker-base"),
        Some(json!("reranker"))
    );
    assert_eq!(
        kind("gte-reranker-modernbert-base"),
        Some(json!("reranker"))
    );
    let (_, one) = send(&app, get("/api/v1/models/tiny-splade")).await;
    assert_eq!(one["kind"], "sparse", "{one}");

    let rerank = json!({"model": "tiny-cross", "query": "q", "documents": ["a", "b"]});
    let (status, _) = send(&app, post_json("/v1/rerank", &rerank.to_string())).await;
    assert_eq!(status, StatusCode::OK);
    let sparse = json!({"model": "tiny-splade", "input": "a", "output": "sparse"});
    let (status, _) = send(&app, post_json("/api/v1/embed", &sparse.to_string())).await;
    assert_eq!(status, StatusCode::OK);
    let (status, _) = send(&app, post_json("/embed_all", r#"{"inputs": "a"}"#)).await;
    assert_eq!(status, StatusCode::OK);
    let (status, _) = send(&app, post_json("/api/v1/embed", r#"{"input": "a"}"#)).await;
    assert_eq!(status, StatusCode::OK);

    let resp = tower::ServiceExt::oneshot(app.clone(), get("/metrics"))
        .await
        .unwrap();
    let bytes = http_body_util::BodyExt::collect(resp.into_body())
        .await
        .unwrap()
        .to_bytes();
    let text = String::from_utf8(bytes.to_vec()).unwrap();
    for line in [
        r#"ember_requests_total{route="/v1/rerank",model="tiny-cross",task="rerank",status="200"} 1"#,
        r#"ember_requests_total{route="/api/v1/embed",model="tiny-splade",task="sparse",status="200"} 1"#,
        r#"ember_requests_total{route="/embed_all",model="tiny-bert",task="token_embeddings",status="200"} 1"#,
        r#"ember_requests_total{route="/api/v1/embed",model="tiny-bert",task="embed",status="200"} 1"#,
    ] {
        assert!(text.contains(line), "missing {line} in\n{text}");
    }
}
