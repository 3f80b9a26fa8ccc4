//! The rotary families over HTTP (issue 17): Qwen3, Gemma3 (Dense heads), ModernBERT and Alibaba
//! GTE (both layouts) answer the native, OpenAI and Ollama routes with the reference vectors of
//! `fixtures/reference/tiny/*`, texts past 1,000 tokens included; prompts reach them; an input
//! over the limit with truncation off is refused naming both numbers (413 natively, 400 in
//! Ollama's dialect, as for every model).

mod common;

use std::sync::Arc;

use axum::http::StatusCode;
use common::{cosine, floats, post_json, send, tiny};
use ember_core::{ModelManager, ModelSpec, Registry, Resolver};
use ember_server::{app, AppState, Limits};
use serde_json::{json, Value};

const KINDS: [&str; 5] = ["qwen3", "gemma3", "modernbert", "gte", "gte-new"];

fn expected(kind: &str) -> Value {
    serde_json::from_slice(&std::fs::read(tiny(kind).join("expected.json")).unwrap()).unwrap()
}

fn texts(v: &Value) -> Vec<String> {
    v["texts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t.as_str().unwrap().to_string())
        .collect()
}

fn rows_of(v: &Value) -> Vec<Vec<f32>> {
    v.as_array().unwrap().iter().map(floats).collect()
}

fn router() -> axum::Router {
    let mut reg = Registry::builtin();
    for kind in KINDS {
        reg.register(ModelSpec::for_path(&format!("tiny-{kind}"), &tiny(kind)))
            .unwrap();
    }
    let manager = Arc::new(ModelManager::new(reg, Resolver::from_env()));
    app(AppState::new(manager, Limits::default()))
}

/// Mean ≥ 0.99999 and min ≥ 0.9999 cosine over the rows.
fn assert_close(what: &str, got: &[Vec<f32>], want: &[Vec<f32>]) {
    assert_eq!(got.len(), want.len(), "{what}");
    let cos: Vec<f64> = got.iter().zip(want).map(|(g, w)| cosine(g, w)).collect();
    let mean = cos.iter().sum::<f64>() / cos.len() as f64;
    let min = cos.iter().cloned().fold(1.0, f64::min);
    assert!(
        mean >= 0.99999 && min >= 0.9999,
        "{what}: mean {mean} min {min}"
    );
}

async fn post(app: &axum::Router, uri: &str, body: Value) -> (StatusCode, Value) {
    send(app, post_json(uri, &body.to_string())).await
}

#[tokio::test]
async fn every_family_matches_its_reference_on_every_dialect() {
    let app = router();
    for kind in KINDS {
        let e = expected(kind);
        let t = texts(&e);
        let want = rows_of(&e["normalized_right"]);
        let model = format!("tiny-{kind}");

        let (s, b) = post(&app, "/api/v1/embed", json!({"input": t, "model": model})).await;
        assert_eq!(s, StatusCode::OK, "{kind}: {b}");
        assert_close(&format!("{kind} native"), &rows_of(&b["embeddings"]), &want);
        // Every text's tokens are counted, the cut ones at the limit.
        let tokens: u64 = e["token_counts"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_u64().unwrap())
            .sum();
        assert_eq!(b["usage"]["prompt_tokens"], tokens, "{kind}");

        let (s, b) = post(&app, "/v1/embeddings", json!({"input": t, "model": model})).await;
        assert_eq!(s, StatusCode::OK, "{kind}: {b}");
        let got: Vec<Vec<f32>> = b["data"]
            .as_array()
            .unwrap()
            .iter()
            .map(|d| floats(&d["embedding"]))
            .collect();
        assert_close(&format!("{kind} openai"), &got, &want);

        let (s, b) = post(&app, "/api/embed", json!({"input": t, "model": model})).await;
        assert_eq!(s, StatusCode::OK, "{kind}: {b}");
        assert_close(&format!("{kind} ollama"), &rows_of(&b["embeddings"]), &want);
    }
}

#[tokio::test]
async fn prompts_reach_qwen3_and_gemma3() {
    let app = router();
    for (kind, name) in [
        ("qwen3", "query"),
        ("gemma3", "query"),
        ("gemma3", "document"),
    ] {
        let e = expected(kind);
        let t: Vec<String> = texts(&e).into_iter().take(4).collect();
        let (s, b) = post(
            &app,
            "/api/v1/embed",
            json!({"input": t, "model": format!("tiny-{kind}"), "prompt_name": name}),
        )
        .await;
        assert_eq!(s, StatusCode::OK, "{b}");
        let want = rows_of(&e["prompted"][name]);
        assert_close(&format!("{kind} {name}"), &rows_of(&b["embeddings"]), &want);
    }
}

#[tokio::test]
async fn over_the_limit_without_truncation_is_refused_naming_both_numbers() {
    let app = router();
    let long = "hello world ".repeat(1500);
    for kind in ["qwen3", "modernbert"] {
        let (s, b) = post(
            &app,
            "/api/v1/embed",
            json!({"input": ["fine", long], "model": format!("tiny-{kind}"), "truncate": false}),
        )
        .await;
        // The project answers an over-long input 413 `input_too_long` (docs/robustness.md, row 11).
        assert_eq!(s, StatusCode::PAYLOAD_TOO_LARGE, "{kind}: {b}");
        let msg = b["error"]["message"].as_str().unwrap();
        assert!(msg.contains("input 1") && msg.contains("2048"), "{msg}");
        let tokens: usize = msg
            .split_whitespace()
            .find_map(|w| w.parse().ok().filter(|&n: &usize| n > 2048))
            .unwrap_or_else(|| panic!("no token count over 2048 in {msg}"));
        assert!(tokens > 2048);

        let (s, b) = post(
            &app,
            "/api/embed",
            json!({"input": [long], "model": format!("tiny-{kind}"), "truncate": false}),
        )
        .await;
        // Ollama's own answer: 400, "the input length exceeds the context length".
        assert_eq!(s, StatusCode::BAD_REQUEST, "{kind} ollama: {b}");
        let msg = b["error"].as_str().unwrap();
        assert!(
            msg.contains("exceeds the context length") && msg.contains("2048"),
            "{msg}"
        );
    }
}
