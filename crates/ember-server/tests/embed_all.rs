//! TEI's `POST /embed_all` through `oneshot`: per-token vectors of the tiny BERT checked against
//! sentence-transformers' `output_value="token_embeddings"` (cosine ≥ 0.9999 per token, the
//! same token counts), in TEI's `[inputs][tokens][dimension]` shape, and its bad input in TEI's
//! error shape.

mod common;

use std::sync::Arc;

use axum::http::StatusCode;
use axum::Router;
use common::*;
use ember_core::{ModelManager, ModelSpec, Registry, Resolver};
use ember_server::{app, AppState, Limits};
use serde_json::{json, Value};

/// The tiny embedder (default) and the tiny cross-encoder.
fn tokens_app() -> Router {
    let mut reg = Registry::builtin();
    for (id, dir) in [("tiny-bert", "bert"), ("tiny-cross", "cross-bert")] {
        let mut spec = ModelSpec::for_path(id, &tiny(dir));
        spec.is_default = id == "tiny-bert";
        reg.register(spec).unwrap();
    }
    let manager = Arc::new(ModelManager::new(reg, Resolver::from_env()));
    app(AppState::new(manager, Limits::default()))
}

fn reference() -> Value {
    let text = std::fs::read_to_string(tiny("bert").join("token_embeddings.json")).unwrap();
    serde_json::from_str(&text).unwrap()
}

#[tokio::test]
async fn embed_all_matches_sentence_transformers_token_embeddings() {
    let app = tokens_app();
    let want = reference();
    let body = json!({"inputs": want["texts"]});
    let (status, got) = send(&app, post_json("/embed_all", &body.to_string())).await;
    assert_eq!(status, StatusCode::OK, "{got}");
    let got = got.as_array().unwrap();
    let want = want["token_embeddings"].as_array().unwrap();
    assert_eq!(got.len(), want.len());
    for (i, (g, w)) in got.iter().zip(want).enumerate() {
        let (g, w) = (g.as_array().unwrap(), w.as_array().unwrap());
        assert_eq!(g.len(), w.len(), "input {i}: token count");
        for (t, (gt, wt)) in g.iter().zip(w).enumerate() {
            let (gt, wt) = (floats(gt), floats(wt));
            assert_eq!(gt.len(), wt.len(), "input {i} token {t}: dimension");
            let c = cosine(&gt, &wt);
            assert!(c >= 0.9999, "input {i} token {t}: cosine {c}");
        }
    }

    // One string gives one input's tokens; the model can be named.
    let body = json!({"inputs": "hello world", "model": "tiny-bert"});
    let (status, got) = send(&app, post_json("/embed_all", &body.to_string())).await;
    assert_eq!(status, StatusCode::OK, "{got}");
    assert_eq!(got.as_array().unwrap().len(), 1);
    let tokens = got[0].as_array().unwrap();
    assert_eq!(tokens.len(), want[0].as_array().unwrap().len());
    assert!(cosine(&floats(&tokens[1]), &floats(&want[0][1])) >= 0.9999);
}

#[tokio::test]
async fn embed_all_bad_input_names_the_field_kind_or_limit() {
    let app = tokens_app();
    let long = "word ".repeat(400);
    let cases = [
        (json!({"inputs": []}), StatusCode::BAD_REQUEST, "empty"),
        (json!({"inputs": [1]}), StatusCode::BAD_REQUEST, "inputs"),
        (
            json!({"inputs": ["a"], "model": "tiny-cross"}),
            StatusCode::BAD_REQUEST,
            "is a reranker (kind `reranker`); token embeddings needs an embedder",
        ),
        (
            json!({"inputs": [long], "truncate": false}),
            StatusCode::PAYLOAD_TOO_LARGE,
            "pass truncate=true",
        ),
        (
            json!({"inputs": ["a"], "truncation_direction": "Up"}),
            StatusCode::BAD_REQUEST,
            "truncation_direction",
        ),
        (
            json!({"inputs": ["a"], "model": "no-such-model"}),
            StatusCode::NOT_FOUND,
            "no-such-model",
        ),
    ];
    for (body, status, want) in cases {
        let (got_status, got) = send(&app, post_json("/embed_all", &body.to_string())).await;
        assert_eq!(got_status, status, "{body}: {got}");
        let message = got["error"].as_str().unwrap();
        assert!(message.contains(want), "{body}: {message}");
        assert!(got["error_type"].is_string(), "{got}");
    }
    // A long input is cut by default: every token vector still comes back.
    let body = json!({"inputs": ["word ".repeat(400)], "truncation_direction": "Left"});
    let (status, got) = send(&app, post_json("/embed_all", &body.to_string())).await;
    assert_eq!(status, StatusCode::OK, "{got}");
    assert!(!got[0].as_array().unwrap().is_empty());
}
