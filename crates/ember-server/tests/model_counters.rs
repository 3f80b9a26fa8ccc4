//! Each model's counters over HTTP: a model is loaded, used, evicted for LRU, reloaded, unloaded
//! and loaded again, and its hits, misses, loads and evictions by reason are the same in
//! `GET /api/v1/models/{id}`, `GET /api/v1/models`, the web page's `GET /api/v1/stats` and the
//! per-model Prometheus series; a model never used shows zeros and no series.

mod common;

use std::sync::Arc;

use axum::body::Body;
use axum::http::{Request, StatusCode};
use axum::Router;
use common::{get, post_json, send, tiny};
use ember_core::manager::ManagerConfig;
use ember_core::{ModelManager, ModelSpec, Registry, Resolver};
use ember_server::{app, AppState, Limits};
use http_body_util::BodyExt;
use serde_json::{json, Value};
use tower::ServiceExt;

/// The tiny models (tiny-bert the pinned default) with room for two at once.
fn two_slot_app() -> Router {
    let mut reg = Registry::builtin();
    for kind in ["bert", "mpnet", "xlm-roberta"] {
        let mut spec = ModelSpec::for_path(&format!("tiny-{kind}"), &tiny(kind));
        spec.is_default = kind == "bert";
        reg.register(spec).unwrap();
    }
    let config = ManagerConfig {
        max_models: 2,
        ..ManagerConfig::default()
    };
    let manager = ModelManager::with_config(reg, Resolver::from_env(), config);
    app(AppState::new(Arc::new(manager), Limits::default()))
}

async fn ok(app: &Router, req: Request<Body>) -> Value {
    let (status, body) = send(app, req).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    body
}

async fn embed(app: &Router, model: &str) {
    let body = json!({"input": "hello world", "model": model}).to_string();
    ok(app, post_json("/api/v1/embed", &body)).await;
}

async fn load(app: &Router, model: &str) -> Value {
    ok(app, post_json(&format!("/api/v1/models/{model}/load"), "")).await
}

async fn unload(app: &Router, model: &str) -> Value {
    let req = Request::delete(format!("/api/v1/models/{model}"))
        .body(Body::empty())
        .unwrap();
    ok(app, req).await
}

fn counters(hits: u64, misses: u64, loads: u64, lru: u64, unload: u64) -> Value {
    json!({
        "hits": hits,
        "misses": misses,
        "loads": loads,
        "load_failures": 0,
        "evictions": {"lru": lru, "memory": 0, "keep_alive": 0, "unload": unload, "replaced": 0},
    })
}

fn find<'a>(models: &'a Value, id: &str) -> &'a Value {
    models
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["id"] == id)
        .unwrap_or_else(|| panic!("{id} missing from {models}"))
}

#[tokio::test]
async fn counters_follow_a_model_through_eviction_unload_and_reload() {
    let app = two_slot_app();
    let before = ok(&app, get("/api/v1/models")).await;
    for m in before["models"].as_array().unwrap() {
        assert_eq!(m["counters"], counters(0, 0, 0, 0, 0), "{}", m["id"]);
    }

    assert_eq!(
        load(&app, "tiny-mpnet").await["counters"],
        counters(0, 1, 1, 0, 0)
    );
    embed(&app, "tiny-mpnet").await;
    embed(&app, "tiny-mpnet").await;
    embed(&app, "tiny-bert").await; // the pinned default takes the second slot
                                    // No slot left: loading tiny-xlm-roberta evicts tiny-mpnet, the least recently used.
    load(&app, "tiny-xlm-roberta").await;
    let mpnet = ok(&app, get("/api/v1/models/tiny-mpnet")).await;
    assert_eq!(mpnet["state"], "unloaded");
    assert_eq!(mpnet["counters"], counters(2, 1, 1, 1, 0));

    // Reloaded by a request (evicting tiny-xlm-roberta in turn), unloaded, loaded again: the
    // counts before each eviction are kept.
    embed(&app, "tiny-mpnet").await;
    assert_eq!(unload(&app, "tiny-mpnet").await["unloaded"], 1);
    let mpnet = load(&app, "tiny-mpnet").await;
    let want = counters(2, 3, 3, 1, 1);
    assert_eq!(mpnet["counters"], want);
    // Its one loaded dtype has the same counters; its own hits start again at this load.
    let instance = &mpnet["instances"][0];
    assert_eq!(
        (&instance["dtype"], &instance["hits"]),
        (&json!("fp32"), &json!(0))
    );
    assert_eq!(instance["counters"], want);

    // The catalog and the web page's stats say the same.
    let list = ok(&app, get("/api/v1/models")).await;
    assert_eq!(find(&list["models"], "tiny-mpnet")["counters"], want);
    assert_eq!(
        find(&list["models"], "tiny-xlm-roberta")["counters"],
        counters(0, 1, 1, 1, 0)
    );
    assert_eq!(
        find(&list["models"], "tiny-bert")["counters"],
        counters(0, 1, 1, 0, 0)
    );
    assert_eq!(
        find(&list["models"], "all-MiniLM-L6-v2")["counters"],
        counters(0, 0, 0, 0, 0)
    );
    let stats = ok(&app, get("/api/v1/stats")).await;
    assert_eq!(find(&stats["models"], "tiny-mpnet")["counters"], want);
    let manager = &stats["manager"];
    assert_eq!(
        (&manager["hits"], &manager["misses"]),
        (&json!(2), &json!(5))
    );
    assert_eq!(manager["evictions"]["lru"], 2);

    // Prometheus: per catalog model, only for the models used.
    let resp = app.clone().oneshot(get("/metrics")).await.unwrap();
    let bytes = resp.into_body().collect().await.unwrap().to_bytes();
    let text = String::from_utf8(bytes.to_vec()).unwrap();
    for line in [
        r#"ember_model_cache_hits_by_model_total{model="tiny-mpnet"} 2"#,
        r#"ember_model_cache_misses_by_model_total{model="tiny-mpnet"} 3"#,
        r#"ember_model_loads_by_model_total{model="tiny-mpnet"} 3"#,
        r#"ember_model_load_failures_by_model_total{model="tiny-mpnet"} 0"#,
        r#"ember_model_evictions_by_model_total{model="tiny-mpnet",reason="lru"} 1"#,
        r#"ember_model_evictions_by_model_total{model="tiny-mpnet",reason="unload"} 1"#,
        r#"ember_model_evictions_by_model_total{model="tiny-mpnet",reason="memory"} 0"#,
        r#"ember_model_evictions_by_model_total{model="tiny-xlm-roberta",reason="lru"} 1"#,
        r#"ember_model_cache_misses_by_model_total{model="tiny-bert"} 1"#,
        r#"ember_model_evictions_total{reason="lru"} 2"#,
    ] {
        assert!(text.contains(line), "missing `{line}` in\n{text}");
    }
    assert!(!text.contains(r#"model="all-MiniLM-L6-v2""#), "{text}");
}
