//! The native routes through `oneshot`: success paths checked against reference vectors, and
//! every client mistake answered in JSON with the right status.

mod common;

use axum::body::Body;
use axum::http::{Request, StatusCode};
use common::*;
use ember_server::Limits;
use serde_json::Value;

fn expected(kind: &str) -> Value {
    serde_json::from_slice(&std::fs::read(tiny(kind).join("expected.json")).unwrap()).unwrap()
}

#[tokio::test]
async fn embed_default_model_matches_reference() {
    let app = test_app(Limits::default());
    let want = expected("bert");
    let texts = want["texts"].clone();
    let body = serde_json::json!({ "input": texts }).to_string();
    let (status, got) = send(&app, post_json("/api/v1/embed", &body)).await;
    assert_eq!(status, StatusCode::OK, "{got}");
    assert_eq!(got["model"], "tiny-bert");
    assert_eq!(got["dimension"], 32);
    let n = texts.as_array().unwrap().len();
    assert_eq!(got["embeddings"].as_array().unwrap().len(), n);
    for i in 0..n {
        let c = cosine(
            &floats(&got["embeddings"][i]),
            &floats(&want["normalized"][i]),
        );
        assert!(c > 0.9999, "text {i}: cosine {c}");
    }
    assert!(got["usage"]["prompt_tokens"].as_u64().unwrap() > n as u64);
    assert_eq!(got["usage"]["prompt_tokens"], got["usage"]["total_tokens"]);
}

#[tokio::test]
async fn embed_routes_by_model_and_options() {
    let app = test_app(Limits::default());
    let want = expected("mpnet");
    let text = want["texts"][0].clone();
    let body =
        serde_json::json!({"input": text, "model": "tiny-mpnet", "normalize": false}).to_string();
    let (status, got) = send(&app, post_json("/api/v1/embed", &body)).await;
    assert_eq!(status, StatusCode::OK, "{got}");
    assert_eq!(got["model"], "tiny-mpnet");
    let v = floats(&got["embeddings"][0]);
    let r = floats(&want["raw_mean_pooled"][0]);
    let diff: f32 = v
        .iter()
        .zip(&r)
        .map(|(a, b)| (a - b).powi(2))
        .sum::<f32>()
        .sqrt();
    let norm: f32 = r.iter().map(|x| x * x).sum::<f32>().sqrt();
    assert!(diff / norm < 1e-4);

    let body = serde_json::json!({"input": "hello", "model": "tiny-xlm-roberta", "dimensions": 8})
        .to_string();
    let (status, got) = send(&app, post_json("/api/v1/embed", &body)).await;
    assert_eq!(status, StatusCode::OK, "{got}");
    assert_eq!(got["dimension"], 8);
    let v = floats(&got["embeddings"][0]);
    assert_eq!(v.len(), 8);
    assert!((v.iter().map(|x| x * x).sum::<f32>() - 1.0).abs() < 1e-4);
}

async fn expect_error(app: &axum::Router, req: Request<Body>, status: StatusCode, needle: &str) {
    let (got_status, body) = send(app, req).await;
    assert_eq!(got_status, status, "{body}");
    let err = &body["error"];
    assert_eq!(err["code"], status.as_u16(), "{body}");
    assert!(err["type"].is_string(), "{body}");
    let msg = err["message"].as_str().unwrap();
    assert!(
        msg.contains(needle),
        "message {msg:?} should mention {needle:?}"
    );
}

#[tokio::test]
async fn client_mistakes_get_json_errors() {
    let app = test_app(Limits {
        max_client_batch: 3,
        max_body_bytes: 4096,
        ..Limits::default()
    });
    let e = |b: &str| post_json("/api/v1/embed", b);
    expect_error(
        &app,
        e(r#"{"input": []}"#),
        StatusCode::BAD_REQUEST,
        "empty",
    )
    .await;
    expect_error(
        &app,
        e(r#"{"input": ["a", 3]}"#),
        StatusCode::BAD_REQUEST,
        "input[1]",
    )
    .await;
    expect_error(
        &app,
        e(r#"{"input": {"a": 1}}"#),
        StatusCode::BAD_REQUEST,
        "string",
    )
    .await;
    expect_error(
        &app,
        e(r#"{"model": "x"}"#),
        StatusCode::BAD_REQUEST,
        "input",
    )
    .await;
    expect_error(
        &app,
        e(r#"{"input": "a", "model": "no-such"}"#),
        StatusCode::NOT_FOUND,
        "no-such",
    )
    .await;
    expect_error(
        &app,
        e(r#"{"input": "a", "prompt_name": "query"}"#),
        StatusCode::BAD_REQUEST,
        "prompt_name",
    )
    .await;
    expect_error(
        &app,
        e(r#"{"input": "a", "dimensions": 0}"#),
        StatusCode::BAD_REQUEST,
        "dimensions",
    )
    .await;
    expect_error(
        &app,
        e(r#"{"input": "a", "dimensions": 999}"#),
        StatusCode::BAD_REQUEST,
        "between 1 and 32",
    )
    .await;
    expect_error(
        &app,
        e(r#"{"input": "a", "dimensions": -1}"#),
        StatusCode::BAD_REQUEST,
        "dimensions",
    )
    .await;
    expect_error(
        &app,
        e(r#"{"input": "a", "normalise": true}"#),
        StatusCode::BAD_REQUEST,
        "normalise",
    )
    .await;
    expect_error(
        &app,
        e(r#"{"input": ["a","b","c","d"]}"#),
        StatusCode::PAYLOAD_TOO_LARGE,
        "at most 3",
    )
    .await;
    expect_error(&app, e(r#"{"input": "#), StatusCode::BAD_REQUEST, "JSON").await;
    let long = format!(
        r#"{{"input": ["ok", "{}"], "truncate": false}}"#,
        "word ".repeat(100)
    );
    expect_error(&app, e(&long), StatusCode::PAYLOAD_TOO_LARGE, "input 1").await;
    let huge = format!(r#"{{"input": "{}"}}"#, "x".repeat(5000));
    expect_error(&app, e(&huge), StatusCode::PAYLOAD_TOO_LARGE, "").await;
    let no_type = Request::post("/api/v1/embed")
        .body(Body::from(r#"{"input":"a"}"#))
        .unwrap();
    expect_error(
        &app,
        no_type,
        StatusCode::UNSUPPORTED_MEDIA_TYPE,
        "Content-Type",
    )
    .await;
    let bad_utf8 = Request::post("/api/v1/embed")
        .header("content-type", "application/json")
        .body(Body::from(vec![b'{', b'"', b'i', 0xff, 0xfe, b'"', b'}']))
        .unwrap();
    expect_error(&app, bad_utf8, StatusCode::BAD_REQUEST, "").await;
    expect_error(
        &app,
        get("/api/v1/nothing"),
        StatusCode::NOT_FOUND,
        "/api/v1/nothing",
    )
    .await;
    expect_error(
        &app,
        get("/api/v1/embed"),
        StatusCode::METHOD_NOT_ALLOWED,
        "/api/v1/embed",
    )
    .await;
    expect_error(
        &app,
        e(r#"{"input": "a", "model": "nomic-embed-text-v2-moe"}"#),
        StatusCode::BAD_REQUEST,
        "mixture-of-experts",
    )
    .await;

    // One bad request harms no other: the server still answers.
    let (status, _) = send(&app, e(r#"{"input": "fine"}"#)).await;
    assert_eq!(status, StatusCode::OK);
}

#[tokio::test]
async fn models_catalog_and_single_model() {
    let app = test_app(Limits::default());
    let (status, body) = send(&app, get("/api/v1/models")).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["default_model"], "tiny-bert");
    let models = body["models"].as_array().unwrap();
    let minilm = models
        .iter()
        .find(|m| m["id"] == "all-MiniLM-L6-v2")
        .unwrap();
    for field in [
        "display_name",
        "hub_repo",
        "revision",
        "architecture",
        "dimension",
        "parameters_m",
        "size_mb",
        "languages",
        "max_seq_length",
        "pooling",
        "prompts",
        "default_dtype",
        "is_default",
        "license",
        "description",
        "use_cases",
        "supported",
        "loaded",
    ] {
        assert!(!minilm[field].is_null(), "field {field} missing");
    }
    assert_eq!(minilm["dimension"], 384);

    // Loading is visible in the catalog.
    let (status, _) = send(
        &app,
        post_json("/api/v1/embed", r#"{"input":"x","model":"tiny-mpnet"}"#),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    let (_, one) = send(&app, get("/api/v1/models/tiny-mpnet")).await;
    assert_eq!(one["loaded"], true);
    assert!(one["bytes"].as_u64().unwrap() > 0);
    let (_, one) = send(
        &app,
        get("/api/v1/models/sentence-transformers/all-MiniLM-L6-v2"),
    )
    .await;
    assert_eq!(one["id"], "all-MiniLM-L6-v2");

    let (status, body) = send(&app, get("/api/v1/models/unknown-model")).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert!(body["error"]["message"]
        .as_str()
        .unwrap()
        .contains("unknown-model"));
}

#[tokio::test]
async fn health_probes() {
    let app = test_app(Limits::default());
    let (status, body) = send(&app, get("/health/live")).await;
    assert_eq!(
        (status, body["status"].as_str()),
        (StatusCode::OK, Some("ok"))
    );
    let (status, _) = send(&app, get("/health/ready")).await;
    assert_eq!(status, StatusCode::OK);
}

/// `GET /api/v1/models/{id}` reports the weights hash in-process Ember computes from the same
/// files: before the model is loaded (from its files, without loading it), once loaded (the
/// loaded copy's), `null` while the files on disk are no longer the loaded ones, the new files'
/// hash once it is unloaded, and `null` for a model whose files are not on this machine.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_model_reports_the_weights_hash_of_its_files_loaded_or_not() {
    use ember_core::{Embedder, ModelManager, ModelSpec, Registry, Resolver};

    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("wbert");
    copy_dir(&tiny("bert"), &dir);
    let mut reg = Registry::builtin();
    let mut default = ModelSpec::for_path("tiny-bert", &tiny("bert"));
    default.is_default = true;
    reg.register(default).unwrap();
    reg.register(ModelSpec::for_path("w-bert", &dir)).unwrap();
    let mut absent = ModelSpec::for_path("absent", &dir);
    absent.path = None;
    absent.hub_repo = Some("ember-tests/in-no-cache".into());
    reg.register(absent).unwrap();
    let manager = std::sync::Arc::new(ModelManager::new(reg, Resolver::from_env()));
    let app = ember_server::app(ember_server::AppState::new(manager, Limits::default()));
    let in_process = |dir: &std::path::Path| {
        let m = Embedder::load("w-bert", dir).unwrap();
        m.weights_sha256().unwrap().to_string()
    };
    let want = in_process(&dir);
    assert_eq!(want.len(), 64);

    let (status, one) = send(&app, get("/api/v1/models/w-bert")).await;
    assert_eq!(status, StatusCode::OK, "{one}");
    assert_eq!(one["loaded"], false, "{one}");
    assert_eq!(one["weights_sha256"], want.as_str(), "{one}");
    assert!(one["revision"].is_string(), "{one}");
    let embed = r#"{"input": "river stone", "model": "w-bert"}"#;
    let (status, v) = send(&app, post_json("/api/v1/embed", embed)).await;
    assert_eq!(status, StatusCode::OK, "{v}");
    let (_, one) = send(&app, get("/api/v1/models/w-bert")).await;
    assert_eq!(one["loaded"], true, "{one}");
    assert_eq!(one["weights_sha256"], want.as_str(), "{one}");

    // Other weights in the same file (one float's low bits), with a later modification time.
    perturb_weights(&dir);
    let changed = in_process(&dir);
    assert_ne!(changed, want);
    // The loaded copy computes with the old weights, which no file holds now: no hash.
    let (_, one) = send(&app, get("/api/v1/models/w-bert")).await;
    assert_eq!(one["loaded"], true, "{one}");
    assert!(one["weights_sha256"].is_null(), "{one}");
    let unload = Request::delete("/api/v1/models/w-bert")
        .body(Body::empty())
        .unwrap();
    let (status, v) = send(&app, unload).await;
    assert_eq!(status, StatusCode::OK, "{v}");
    let (_, one) = send(&app, get("/api/v1/models/w-bert")).await;
    assert_eq!(one["loaded"], false, "{one}");
    assert_eq!(one["weights_sha256"], changed.as_str(), "{one}");
    let (status, v) = send(&app, post_json("/api/v1/embed", embed)).await;
    assert_eq!(status, StatusCode::OK, "{v}");
    let (_, one) = send(&app, get("/api/v1/models/w-bert")).await;
    assert_eq!(one["weights_sha256"], changed.as_str(), "{one}");

    let (status, one) = send(&app, get("/api/v1/models/absent")).await;
    assert_eq!(status, StatusCode::OK, "{one}");
    assert!(one["weights_sha256"].is_null(), "{one}");
}
