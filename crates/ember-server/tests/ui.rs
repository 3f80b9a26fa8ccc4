//! The web page's routes: the page and its files compiled in, public even with keys, relative
//! URLs only, and `GET /api/v1/stats` (keyed) with the per-model traffic the charts draw.

mod common;

use axum::body::Body;
use axum::http::{header, Request, StatusCode};
use axum::Router;
use common::{get, manager, post_json, send};
use ember_server::config::Secret;
use ember_server::ui::ASSETS;
use ember_server::{app, AppState, AuthConfig, Limits};
use http_body_util::BodyExt;
use tower::ServiceExt;

async fn raw(app: &Router, req: Request<Body>) -> (StatusCode, axum::http::HeaderMap, Vec<u8>) {
    let resp = app.clone().oneshot(req).await.unwrap();
    let status = resp.status();
    let headers = resp.headers().clone();
    let body = resp
        .into_body()
        .collect()
        .await
        .unwrap()
        .to_bytes()
        .to_vec();
    (status, headers, body)
}

fn keyed_app() -> Router {
    let auth = AuthConfig {
        api_keys: vec![Secret::new("k1")],
        admin_key: Some(Secret::new("admin")),
        metrics_require_key: false,
    };
    app(AppState::new(manager(), Limits::default()).with_auth(auth))
}

#[tokio::test]
async fn the_page_is_served_at_root_and_at_ui_with_every_file_it_names() {
    let app = common::test_app(Limits::default());
    let (status, headers, root) = raw(&app, get("/")).await;
    assert_eq!(status, StatusCode::OK);
    assert!(headers[header::CONTENT_TYPE]
        .to_str()
        .unwrap()
        .starts_with("text/html"));
    let csp = headers[header::CONTENT_SECURITY_POLICY].to_str().unwrap();
    assert!(csp.contains("default-src 'none'") && csp.contains("connect-src 'self'"));
    let (status, _, ui) = raw(&app, get("/ui")).await;
    assert_eq!((status, &ui), (StatusCode::OK, &root));

    // Every `src`/`href` of the page and every module a script imports is served.
    let html = String::from_utf8(root).unwrap();
    let mut named: Vec<String> = Vec::new();
    for part in html.split(['"', '\'']).filter(|p| p.starts_with("ui/")) {
        named.push(part.to_string());
    }
    for a in ASSETS.iter().filter(|a| a.name.ends_with(".js")) {
        for part in a.body.split('"').filter(|p| p.starts_with("./")) {
            named.push(format!("ui/{}", &part[2..]));
        }
    }
    assert!(named.len() >= 8, "{named:?}");
    for path in named {
        let (status, headers, _) = raw(&app, get(&format!("/{path}"))).await;
        assert_eq!(status, StatusCode::OK, "{path}");
        let etag = headers[header::ETAG].clone();
        let again = Request::get(format!("/{path}"))
            .header(header::IF_NONE_MATCH, etag)
            .body(Body::empty())
            .unwrap();
        let (status, _, body) = raw(&app, again).await;
        assert_eq!(
            (status, body.len()),
            (StatusCode::NOT_MODIFIED, 0),
            "{path}"
        );
    }
}

#[test]
fn the_page_names_nothing_outside_itself_and_only_relative_urls() {
    for a in ASSETS {
        // The SVG namespace is a name, not something fetched.
        let body = a.body.replace("http://www.w3.org/2000/svg", "");
        for bad in [
            "http://", "https://", "//cdn", "src=\"/", "href=\"/", "url(", "@import",
        ] {
            assert!(!body.contains(bad), "{} contains {bad}", a.name);
        }
        for call in ["call(\"/", "call(`/", "fetch(\"/", "fetch(`/", "from \"/"] {
            assert!(
                !body.contains(call),
                "{} has an absolute URL: {call}",
                a.name
            );
        }
    }
}

#[tokio::test]
async fn ui_with_a_slash_redirects_relatively_and_unknown_files_are_native_404s() {
    let app = common::test_app(Limits::default());
    let (status, headers, _) = raw(&app, get("/ui/")).await;
    assert_eq!(status, StatusCode::PERMANENT_REDIRECT);
    assert_eq!(headers[header::LOCATION], "../ui");
    let (status, body) = send(&app, get("/ui/nothing.js")).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(body["error"]["type"], "not_found");
    // The page itself is only at `/` and `/ui`, where its relative URLs resolve.
    let (status, _) = send(&app, get("/ui/index.html")).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (status, body) = send(&app, post_json("/", "{}")).await;
    assert_eq!(status, StatusCode::METHOD_NOT_ALLOWED);
    assert_eq!(body["error"]["type"], "method_not_allowed");
}

#[tokio::test]
async fn with_keys_the_page_is_public_and_its_data_is_not() {
    let app = keyed_app();
    for path in ["/", "/ui", "/ui/app.js", "/ui/app.css"] {
        let (status, _, _) = raw(&app, get(path)).await;
        assert_eq!(status, StatusCode::OK, "{path}");
    }
    let (status, config) = send(&app, get("/ui/config.json")).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(config["auth"]["api_key"], true);
    assert_eq!(config["auth"]["admin_key"], true);
    assert_eq!(
        config.as_object().unwrap().keys().collect::<Vec<_>>(),
        ["auth", "version"],
        "nothing else before a key"
    );
    let (status, body) = send(&app, get("/api/v1/stats")).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_eq!(body["error"]["type"], "unauthorized");
    let keyed = Request::get("/api/v1/stats")
        .header(header::AUTHORIZATION, "Bearer k1")
        .body(Body::empty())
        .unwrap();
    let (status, body) = send(&app, keyed).await;
    assert_eq!(status, StatusCode::OK);
    assert!(body["models"].as_array().unwrap().len() > 3);
}

#[tokio::test]
async fn stats_carry_the_catalog_memory_and_each_models_traffic() {
    let app = common::test_app(Limits::default());
    for _ in 0..2 {
        let (status, _) = send(
            &app,
            post_json("/api/v1/embed", r#"{"input": ["one", "two"]}"#),
        )
        .await;
        assert_eq!(status, StatusCode::OK);
    }
    // Over tiny-bert's 32 tokens without truncation: refused once the model is known.
    let long = format!(
        r#"{{"input": ["{}"], "truncate": false}}"#,
        "word ".repeat(60)
    );
    let (status, _) = send(&app, post_json("/api/v1/embed", &long)).await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE);

    let (status, s) = send(&app, get("/api/v1/stats")).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(s["default_model"], "tiny-bert");
    let bert = s["models"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["id"] == "tiny-bert")
        .unwrap();
    assert_eq!(bert["loaded"], true);
    // The `input_type`s each model has prompts for, by core's task table.
    let tasks = |id: &str| {
        s["models"]
            .as_array()
            .unwrap()
            .iter()
            .find(|m| m["id"] == id)
            .map(|m| m["tasks"].clone())
    };
    assert_eq!(tasks("tiny-bert"), Some(serde_json::json!([])));
    assert_eq!(
        tasks("e5-small-v2"),
        Some(serde_json::json!(["query", "document"]))
    );
    assert_eq!(
        tasks("bge-small-en-v1.5"),
        Some(serde_json::json!(["query"]))
    );
    assert!(s["manager"]["bytes_in_use"].as_u64().unwrap() >= bert["bytes"].as_u64().unwrap());
    assert!(s["now_ms"].as_u64().unwrap() > 1_700_000_000_000);

    let t = &s["traffic"];
    assert_eq!(
        (t["bucket_seconds"].as_u64(), t["buckets"].as_u64()),
        (Some(5), Some(60))
    );
    let series = t["models"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["model"] == "tiny-bert")
        .expect("tiny-bert has traffic");
    let sum = |k: &str| -> u64 {
        series[k]
            .as_array()
            .unwrap()
            .iter()
            .filter_map(serde_json::Value::as_u64)
            .sum()
    };
    // The same counts Prometheus sees: three requests (one refused), two batches of two texts.
    assert_eq!(sum("requests"), 3);
    assert_eq!(sum("errors"), 1);
    assert_eq!(sum("batches"), 2);
    assert!(series["queue_depth"]
        .as_array()
        .unwrap()
        .iter()
        .any(|d| d.as_u64() >= Some(1)));
    let mean: Vec<f64> = series["batch_texts_mean"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(serde_json::Value::as_f64)
        .collect();
    assert!(
        !mean.is_empty() && mean.iter().all(|&m| m == 2.0),
        "{mean:?}"
    );
    assert!(series["p95_ms"]
        .as_array()
        .unwrap()
        .iter()
        .any(|v| v.as_f64().is_some()));
    assert_eq!(series["requests"].as_array().unwrap().len(), 60);
}
