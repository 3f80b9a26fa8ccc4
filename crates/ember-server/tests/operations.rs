//! Operating the server, through the router with tiny models: API and admin keys, `/metrics`
//! content, request ids, the configuration file (merging, errors, redaction) and warm-up with
//! readiness.

mod common;

use std::path::Path;

use axum::body::Body;
use axum::http::{HeaderMap, Request, StatusCode};
use axum::Router;
use common::*;
use ember_server::config::Secret;
use ember_server::settings::Preload;
use ember_server::warmup::{self, WarmupPlan};
use ember_server::{app, AppState, AuthConfig, Flags, Limits, Settings};
use http_body_util::BodyExt;
use serde_json::Value;
use tower::ServiceExt;

async fn call(app: &Router, req: Request<Body>) -> (StatusCode, HeaderMap, String) {
    let resp = app.clone().oneshot(req).await.unwrap();
    let (parts, body) = resp.into_parts();
    let bytes = body.collect().await.unwrap().to_bytes();
    (
        parts.status,
        parts.headers,
        String::from_utf8_lossy(&bytes).into_owned(),
    )
}

fn with_key(mut req: Request<Body>, key: &str) -> Request<Body> {
    req.headers_mut()
        .insert("authorization", format!("Bearer {key}").parse().unwrap());
    req
}

fn keyed_app() -> Router {
    let state = AppState::new(manager(), Limits::default()).with_auth(AuthConfig {
        api_keys: vec![Secret::new("user-key"), Secret::new("other-key")],
        admin_key: Some(Secret::new("admin-key")),
        metrics_require_key: false,
    });
    app(state)
}

#[tokio::test]
async fn api_keys_guard_every_route_but_health_and_metrics() {
    let app = keyed_app();
    let embed = || post_json("/api/v1/embed", r#"{"input":"hi"}"#);

    let (status, headers, body) = call(&app, embed()).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "{body}");
    assert_eq!(headers["www-authenticate"], "Bearer");
    let v: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["error"]["type"], "unauthorized");
    assert_eq!(v["error"]["code"], 401);

    let (status, _, _) = call(&app, with_key(embed(), "wrong")).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    let (status, _, body) = call(&app, with_key(embed(), "other-key")).await;
    assert_eq!(status, StatusCode::OK, "{body}");

    // Each API answers in its own error shape.
    let openai = post_json("/v1/embeddings", r#"{"input":"hi","model":"tiny-bert"}"#);
    let (status, _, body) = call(&app, openai).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    let v: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["error"]["type"], "authentication_error", "{body}");
    let ollama = post_json("/api/embed", r#"{"input":"hi","model":"tiny-bert"}"#);
    let (_, _, body) = call(&app, ollama).await;
    let v: Value = serde_json::from_str(&body).unwrap();
    assert!(v["error"].is_string(), "{body}");

    for path in ["/health/live", "/health/ready", "/metrics"] {
        let (status, _, _) = call(&app, get(path)).await;
        assert_eq!(status, StatusCode::OK, "{path}");
    }
}

#[tokio::test]
async fn loading_and_unloading_need_the_admin_key() {
    let app = keyed_app();
    let load = || post_json("/api/v1/models/tiny-mpnet/load", "");
    let (status, _, body) = call(&app, with_key(load(), "user-key")).await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
    assert!(body.contains("admin key"), "{body}");
    let (status, _, _) = call(&app, load()).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    let (status, _, body) = call(&app, with_key(load(), "admin-key")).await;
    assert_eq!(status, StatusCode::OK, "{body}");

    let unload = || {
        Request::delete("/api/v1/models/tiny-mpnet")
            .body(Body::empty())
            .unwrap()
    };
    let (status, _, _) = call(&app, with_key(unload(), "user-key")).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let (status, _, body) = call(&app, with_key(unload(), "admin-key")).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    // Reading model status is an ordinary keyed route.
    let (status, _, _) = call(&app, with_key(get("/api/v1/models"), "user-key")).await;
    assert_eq!(status, StatusCode::OK);
}

#[tokio::test]
async fn metrics_are_prometheus_text_with_requests_batches_and_models() {
    let state = AppState::new(manager(), Limits::default());
    let app = app(state);
    let (status, headers, _) =
        call(&app, post_json("/api/v1/embed", r#"{"input":["a","b"]}"#)).await;
    assert_eq!(status, StatusCode::OK);
    assert!(!headers["x-request-id"].is_empty());
    let _ = call(
        &app,
        post_json("/api/v1/embed", r#"{"input":"x","model":"nope"}"#),
    )
    .await;

    let (status, headers, text) = call(&app, get("/metrics")).await;
    assert_eq!(status, StatusCode::OK);
    assert!(headers["content-type"]
        .to_str()
        .unwrap()
        .starts_with("text/plain; version=0.0.4"));
    for line in [
        r#"ember_requests_total{route="/api/v1/embed",model="tiny-bert",task="embed",status="200"} 1"#,
        r#"ember_requests_total{route="/api/v1/embed",model="",task="",status="404"} 1"#,
        r#"ember_batches_total{model="tiny-bert"} 1"#,
        r#"ember_forward_passes_total{model="tiny-bert"} 1"#,
        r#"ember_embedded_texts_total{model="tiny-bert"} 2"#,
        r#"ember_queue_depth{model="tiny-bert",dtype="fp32"} 0"#,
        "# TYPE ember_request_duration_seconds histogram",
        r#"ember_request_duration_seconds_count{route="/api/v1/embed"} 2"#,
        r#"ember_queue_time_seconds_count{model="tiny-bert"} 1"#,
        r#"ember_batch_requests_bucket{model="tiny-bert",le="1"} 1"#,
        "ember_model_cache_misses_total 1",
        "ember_model_loads_total 1",
        r#"ember_model_evictions_total{reason="lru"} 0"#,
        "ember_models_loaded 1",
        "ember_ready 1",
    ] {
        assert!(text.contains(line), "missing `{line}` in\n{text}");
    }
    // The kernels this process dispatched to, so a deployment can see the fast path is on.
    let k = ember_core::kernels::info();
    let build = format!(
        r#"ember_build_info{{version="{}",f32_kernels="{}",int8_kernels="{}",threads="{}"}} 1"#,
        env!("CARGO_PKG_VERSION"),
        k.f32,
        k.int8,
        k.threads
    );
    assert!(text.contains(&build), "missing `{build}` in\n{text}");
    assert!(
        ["avx512f", "avx2+fma", "portable"].contains(&k.f32),
        "{k:?}"
    );
    assert!(k.threads >= 1);
    assert!(text.contains(r#"ember_model_bytes{model="tiny-bert",dtype="fp32"} "#));
    assert!(text.contains(r#"ember_tokens_total{model="tiny-bert"} "#));
    // Every sample line is `name{labels} value` or `name value`.
    for line in text.lines().filter(|l| !l.starts_with('#')) {
        let value = line.rsplit(' ').next().unwrap();
        assert!(value.parse::<f64>().is_ok(), "bad sample: {line}");
    }
}

#[tokio::test]
async fn request_ids_are_echoed_or_made() {
    let app = app(AppState::new(manager(), Limits::default()));
    let mut req = get("/api/v1/models");
    req.headers_mut()
        .insert("x-request-id", "trace-42".parse().unwrap());
    let (_, headers, _) = call(&app, req).await;
    assert_eq!(headers["x-request-id"], "trace-42");
    let (_, a, _) = call(&app, get("/nowhere")).await;
    let (_, b, _) = call(&app, get("/nowhere")).await;
    assert_ne!(a["x-request-id"], b["x-request-id"]);
}

const FILE: &str = r#"
default_model = "tiny-bert"

[server]
port = 9999
shutdown_timeout = 5

[limits]
max_body_bytes = "1MiB"
max_concurrent_requests = 7
queue_size = 3

[batching]
max_batch_tokens = 512

[budget]
max_models = 2
max_memory = "2GB"
keep_alive = "10m"

[auth]
api_keys = ["sk-file-1", "sk-file-2"]
admin_key = "adm-file"

[warmup]
batch_sizes = [1, 4]

[[models]]
id = "tiny-mpnet"
dtype = "int8"
keep_alive = -1
pinned = true
warmup = false
"#;

#[test]
fn the_config_file_fills_what_flags_leave_at_their_defaults() {
    let flags =
        Flags::try_parse_from(["ember-server", "--queue-size", "9", "--model", "tiny-bert"])
            .unwrap();
    let s = Settings::from_toml(&flags, FILE, Path::new("ember.toml")).unwrap();
    assert_eq!(s.server.port, 9999);
    assert_eq!(s.limits.max_body_bytes, 1 << 20);
    assert_eq!(s.limits.max_concurrent_requests, 7);
    assert_eq!(s.batching.queue_size, 9, "a flag wins over the file");
    assert_eq!(s.batching.max_batch_tokens, 512);
    assert_eq!(s.budget.max_models, 2);
    assert_eq!(s.budget.max_memory, Some(2_000_000_000));
    assert_eq!(
        s.budget.keep_alive.duration(),
        Some(std::time::Duration::from_secs(600))
    );
    assert_eq!(s.auth.api_keys.len(), 2);
    assert_eq!(s.warmup.batch_sizes, vec![1, 4]);
    assert_eq!(s.default_model.as_deref(), Some("tiny-bert"));
    assert_eq!(s.preload.len(), 2);
    let mpnet = &s.preload[1];
    assert_eq!(mpnet.id, "tiny-mpnet");
    assert_eq!(mpnet.dtype, Some(ember_core::DType::Int8));
    assert!(mpnet.pinned && !mpnet.warmup);

    let cfg = s.manager_config(|id| Some(id.to_string()));
    assert_eq!(cfg.max_models, 2);
    assert_eq!(cfg.pinned, vec!["tiny-mpnet".to_string()]);
    assert_eq!(cfg.dtypes["tiny-mpnet"], ember_core::DType::Int8);

    // The logged configuration never shows a key.
    let shown = format!("{s:?}\n{}", s.describe(&flags).join("\n"));
    for secret in ["sk-file-1", "sk-file-2", "adm-file"] {
        assert!(!shown.contains(secret), "{secret} leaked: {shown}");
    }
    assert!(shown.contains("<redacted>"));
}

#[test]
fn config_file_errors_name_the_field() {
    let bad = |text: &str| {
        let e = Settings::from_toml(&Flags::defaults(), text, Path::new("bad.toml")).unwrap_err();
        format!("{e:#}")
    };
    assert!(bad("[limits]\nmax_bodybytes = 3").contains("max_bodybytes"));
    assert!(bad("[budget]\nmax_memory = \"2 parsecs\"").contains("budget.max_memory"));
    assert!(bad("[[models]]\nid = \"x\"\ndtype = \"fp8\"").contains("models[0].dtype"));
    assert!(bad("[batching]\nmax_batch_size = 0").contains("max_batch_size"));
    assert!(bad("[limits]\nqueue_size = \"many\"").contains("bad.toml"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn warm_up_reports_each_model_and_a_failure_does_not_stop_the_others() {
    let settings = Settings::from_toml(&Flags::defaults(), "", Path::new("none.toml")).unwrap();
    let state = AppState::from_settings(&settings, manager());
    let (status, body) = state.readiness();
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{body}");
    let app = app(state.clone());
    let (status, _, _) = call(&app, get("/health/ready")).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);

    let preload = |id: &str, warmup: bool| Preload {
        id: id.into(),
        dtype: None,
        keep_alive: None,
        pinned: false,
        warmup,
    };
    let plan = WarmupPlan {
        models: vec![
            (None, preload("tiny-bert", true)),
            (Some("no-such-model".into()), preload("no-such-model", true)),
            (Some("tiny-mpnet".into()), preload("tiny-mpnet", false)),
        ],
        enabled: true,
        batch_sizes: vec![1, 32],
        max_batch_size: 64,
    };
    let st = state.clone();
    tokio::task::spawn_blocking(move || warmup::run(&st, &plan))
        .await
        .unwrap();

    let (status, body) = state.readiness();
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(
        body["failed"],
        serde_json::json!(["no-such-model"]),
        "{body}"
    );
    let models = body["models"].as_array().unwrap();
    assert_eq!(models[0]["state"], "ready");
    assert_eq!(models[0]["warmed_up"], true);
    assert_eq!(models[1]["state"], "failed");
    assert!(models[1]["error"]
        .as_str()
        .unwrap()
        .contains("no-such-model"));
    assert_eq!(models[2]["state"], "ready");
    assert_eq!(
        models[2]["warmed_up"], false,
        "warm-up is off for this model"
    );
    let (status, _, _) = call(&app, get("/health/ready")).await;
    assert_eq!(status, StatusCode::OK);
    // The others serve.
    let body = r#"{"input":"hello","model":"tiny-mpnet"}"#;
    let (status, _, _) = call(&app, post_json("/api/v1/embed", body)).await;
    assert_eq!(status, StatusCode::OK);
}
