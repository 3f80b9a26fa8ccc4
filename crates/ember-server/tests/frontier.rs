//! The rotary families over HTTP (issue 17): Qwen3 (causal and bidirectional), Gemma3 (Dense
//! heads), ModernBERT and Alibaba GTE (both layouts) answer the native, OpenAI and Ollama routes
//! with the reference vectors of `fixtures/reference/tiny/*` (left- and right-padded, one padded
//! batch), texts past 1,000 tokens included; prompts reach them; an input over the limit with
//! truncation off is refused naming both numbers (413 natively, 400 in Ollama's dialect, as for
//! every model); the input cap setting cuts or refuses at the cap; the catalog entries answer to
//! their Ollama names.

mod common;

use std::sync::Arc;

use axum::http::StatusCode;
use common::{cosine, floats, post_json, send, tiny};
use ember_core::{DType, ModelManager, ModelSpec, Registry, Resolver};
use ember_server::{app, AppState, Limits};
use serde_json::{json, Value};

const KINDS: [&str; 6] = [
    "qwen3",
    "qwen3-bidir",
    "gemma3",
    "modernbert",
    "gte",
    "gte-new",
];

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
        // One padded batch, and the references of both padding sides.
        let left = rows_of(&e["normalized_left"]);
        assert_close(
            &format!("{kind} native/left"),
            &rows_of(&b["embeddings"]),
            &left,
        );
        // Batch invariance: the shortest text (the most padded in the batch) alone gives the
        // same vector.
        let counts = e["token_counts"].as_array().unwrap();
        let shortest = (0..t.len())
            .min_by_key(|&i| counts[i].as_u64().unwrap())
            .unwrap();
        let batched = rows_of(&b["embeddings"]);
        let one = json!({"input": [t[shortest]], "model": model});
        let (s, alone) = post(&app, "/api/v1/embed", one).await;
        assert_eq!(s, StatusCode::OK, "{kind}: {alone}");
        let alone = rows_of(&alone["embeddings"]);
        assert!(cosine(&alone[0], &batched[shortest]) > 0.99999, "{kind}");
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

/// The catalog entries of issue 17 answer to their Ollama names on the Ollama and native routes:
/// each entry is pointed at the tiny model of its family, so the name resolves to the entry and
/// the entry's files give the reference vectors.
#[tokio::test]
async fn ollama_names_of_the_frontier_entries_resolve_on_both_routes() {
    let mut reg = Registry::builtin();
    let names = [
        ("qwen3-embedding", "Qwen3-Embedding-0.6B", "qwen3"),
        ("embeddinggemma", "embeddinggemma-300m", "gemma3"),
        (
            "granite-embedding",
            "granite-embedding-small-english-r2",
            "modernbert",
        ),
        (
            "snowflake-arctic-embed2:latest",
            "snowflake-arctic-embed-m-v2.0",
            "gte",
        ),
    ];
    for (_, id, kind) in names {
        let mut spec = reg.lookup(id).unwrap();
        (spec.path, spec.hub_repo) = (Some(tiny(kind)), None);
        // FP32 for the references (the Qwen3 entry recommends int8).
        spec.default_dtype = DType::Fp32;
        reg.register(spec).unwrap();
    }
    let manager = Arc::new(ModelManager::new(reg, Resolver::from_env()));
    let app = app(AppState::new(manager, Limits::default()));
    for (name, id, kind) in names {
        let e = expected(kind);
        let t: Vec<String> = texts(&e).into_iter().take(3).collect();
        let want: Vec<Vec<f32>> = rows_of(&e["normalized_right"])
            .into_iter()
            .take(3)
            .collect();
        let (s, b) = post(&app, "/api/embed", json!({"input": t, "model": name})).await;
        assert_eq!(s, StatusCode::OK, "{name}: {b}");
        assert_close(&format!("{name} ollama"), &rows_of(&b["embeddings"]), &want);
        let (s, b) = post(&app, "/api/v1/embed", json!({"input": t, "model": name})).await;
        assert_eq!(s, StatusCode::OK, "{name}: {b}");
        assert_eq!(b["model"], id, "{name}: {b}");
        assert_close(&format!("{name} native"), &rows_of(&b["embeddings"]), &want);
    }
}

/// `--max-input-tokens` below the tiny Qwen3's own 2,048: the settings reach the manager, inputs
/// are cut to the cap, or refused naming it with truncation off.
#[tokio::test]
async fn the_input_cap_setting_cuts_or_refuses_at_the_cap() {
    let flags =
        ember_server::Flags::try_parse_from(["ember-server", "--max-input-tokens", "64"]).unwrap();
    let settings = ember_server::Settings::load(&flags).unwrap();
    let mut reg = Registry::builtin();
    reg.register(ModelSpec::for_path("tiny-qwen3", &tiny("qwen3")))
        .unwrap();
    let config = settings.manager_config(|_| None);
    let manager = Arc::new(ModelManager::with_config(reg, Resolver::from_env(), config));
    let app = app(AppState::new(manager, settings.limits.clone()));
    let long = "hello world ".repeat(100);
    let body = json!({"input": [long], "model": "tiny-qwen3"});
    let (s, b) = post(&app, "/api/v1/embed", body).await;
    assert_eq!(s, StatusCode::OK, "{b}");
    assert_eq!(b["usage"]["prompt_tokens"], 64, "{b}");
    let body = json!({"input": ["fine", long], "model": "tiny-qwen3", "truncate": false});
    let (s, b) = post(&app, "/api/v1/embed", body).await;
    assert_eq!(s, StatusCode::PAYLOAD_TOO_LARGE, "{b}");
    let msg = b["error"]["message"].as_str().unwrap();
    assert!(
        msg.contains("input 1") && msg.contains("accepts 64"),
        "{msg}"
    );
}
