//! The rotary families' rerankers over HTTP: ModernBERT (mean pooling, its prediction head) and
//! GTE (its pooler; transformers' layout and Alibaba's published `new` one) cross-encoders
//! through `POST /v1/rerank` and TEI's `POST /rerank`, checked against `CrossEncoder`
//! (`fixtures/reference/make_heads.py`): scores within 1e-4, the same order.

mod common;

use std::sync::Arc;

use axum::http::StatusCode;
use common::*;
use ember_core::{ModelManager, ModelSpec, Registry, Resolver};
use ember_server::{app, AppState, Limits};
use serde_json::{json, Value};

const FAMILIES: [&str; 3] = ["cross-modernbert", "cross-gte", "cross-gte-new"];

#[tokio::test]
async fn modernbert_and_gte_rerankers_match_cross_encoder_over_http() {
    let mut reg = Registry::builtin();
    for dir in FAMILIES {
        reg.register(ModelSpec::for_path(dir, &tiny(dir))).unwrap();
    }
    let app = app(AppState::new(
        Arc::new(ModelManager::new(reg, Resolver::from_env())),
        Limits::default(),
    ));
    for model in FAMILIES {
        let text = std::fs::read_to_string(tiny(model).join("expected.json")).unwrap();
        let want: Value = serde_json::from_str(&text).unwrap();
        let rank = want["rank"].as_array().unwrap();
        let (query, docs) = (&want["query"], &want["documents"]);

        let body = json!({"model": model, "query": query, "documents": docs});
        let (status, got) = send(&app, post_json("/v1/rerank", &body.to_string())).await;
        assert_eq!(status, StatusCode::OK, "{model}: {got}");
        let results = got["results"].as_array().unwrap();
        assert_eq!(results.len(), rank.len(), "{model}");
        for (g, w) in results.iter().zip(rank) {
            assert_eq!(g["index"], w["index"], "{model}: {got}");
            let (g, w) = (g["relevance_score"].as_f64(), w["score"].as_f64());
            assert!(
                (g.unwrap() - w.unwrap()).abs() <= 1e-4,
                "{model}: {g:?} vs {w:?}"
            );
        }

        let body = json!({"model": model, "query": query, "texts": docs, "raw_scores": true});
        let (status, got) = send(&app, post_json("/rerank", &body.to_string())).await;
        assert_eq!(status, StatusCode::OK, "{model}: {got}");
        for g in got.as_array().unwrap() {
            let i = g["index"].as_u64().unwrap() as usize;
            let (g, w) = (
                g["score"].as_f64().unwrap(),
                want["raw"][i].as_f64().unwrap(),
            );
            assert!((g - w).abs() <= 1e-4, "{model} raw {i}: {g} vs {w}");
        }
    }
}
