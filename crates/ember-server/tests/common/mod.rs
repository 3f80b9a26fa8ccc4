//! Shared helpers for server tests: an app over tiny models, and request/response plumbing.

#![allow(dead_code)]

// The core tests' fixture paths and file helpers, one definition for both crates' tests.
#[path = "../../../ember-core/tests/common/files.rs"]
mod files;

use std::sync::Arc;

use axum::body::Body;
use axum::http::{Request, StatusCode};
use axum::Router;
use ember_core::{ModelManager, ModelSpec, Registry, Resolver};
use ember_server::{app, AppState, Limits};
use http_body_util::BodyExt;
use serde_json::Value;
use tower::ServiceExt;

// Not every test binary uses each of these (`dead_code` covers this module's own items).
#[allow(unused_imports)]
pub use files::{copy_dir, fixtures, perturb_weights, tiny};

/// A manager whose catalog adds the tiny models (`tiny-bert` is the default).
pub fn manager() -> Arc<ModelManager> {
    let mut reg = Registry::builtin();
    for kind in ["bert", "mpnet", "xlm-roberta"] {
        let mut spec = ModelSpec::for_path(&format!("tiny-{kind}"), &tiny(kind));
        spec.is_default = kind == "bert";
        reg.register(spec).unwrap();
    }
    Arc::new(ModelManager::new(reg, Resolver::from_env()))
}

pub fn test_app(limits: Limits) -> Router {
    app(AppState::new(manager(), limits))
}

/// Sends one request through the router and returns status and JSON body.
pub async fn send(app: &Router, req: Request<Body>) -> (StatusCode, Value) {
    let resp = app.clone().oneshot(req).await.unwrap();
    let status = resp.status();
    let bytes = resp.into_body().collect().await.unwrap().to_bytes();
    let body = serde_json::from_slice(&bytes)
        .unwrap_or_else(|_| panic!("response is not JSON: {}", String::from_utf8_lossy(&bytes)));
    (status, body)
}

pub fn post_json(uri: &str, body: &str) -> Request<Body> {
    Request::post(uri)
        .header("content-type", "application/json")
        .body(Body::from(body.to_string()))
        .unwrap()
}

pub fn get(uri: &str) -> Request<Body> {
    Request::get(uri).body(Body::empty()).unwrap()
}

pub fn cosine(a: &[f32], b: &[f32]) -> f64 {
    let dot: f64 = a.iter().zip(b).map(|(x, y)| *x as f64 * *y as f64).sum();
    let na: f64 = a.iter().map(|x| (*x as f64).powi(2)).sum::<f64>().sqrt();
    let nb: f64 = b.iter().map(|x| (*x as f64).powi(2)).sum::<f64>().sqrt();
    dot / (na * nb)
}

pub fn floats(v: &Value) -> Vec<f32> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_f64().unwrap() as f32)
        .collect()
}
