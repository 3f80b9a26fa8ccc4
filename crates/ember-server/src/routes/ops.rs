//! The operational routes, outside every dialect: liveness and readiness probes (public, never
//! keyed, never counted against the request limits), `GET /metrics` (public unless
//! `--metrics-require-key`), `GET /openapi.json`, and the answer for paths no dialect owns.
//! Their errors use the native shape.

use std::sync::atomic::Ordering;

use axum::extract::{OriginalUri, State};
use axum::http::header;
use axum::middleware::from_fn_with_state;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use serde_json::json;

use super::native::{self, Native};
use crate::error::{ApiError, Dialect};
use crate::{auth, middleware, AppState};

/// `GET /health/live`: the process answers.
#[utoipa::path(get, operation_id = "health_live", path = "/health/live", tag = "health",
    responses((status = 200, description = "`{status: ok}`")))]
pub async fn live() -> impl IntoResponse {
    axum::Json(json!({"status": "ok"}))
}

/// `GET /health/ready`: 200 once start-up loading and warm-up finished, 503 before; the body lists
/// each start-up model's state and the ones that failed (which do not block readiness).
#[utoipa::path(get, operation_id = "health_ready", path = "/health/ready", tag = "health",
    responses((status = 200, description = "`{status: ready, models, failed}`"),
        (status = 503, description = "`{status: loading, models, failed}`")))]
pub async fn ready(State(state): State<AppState>) -> impl IntoResponse {
    let (status, body) = state.readiness();
    (status, axum::Json(body))
}

/// `GET /metrics`: Prometheus text exposition.
pub async fn metrics(State(state): State<AppState>) -> Response {
    let manager = state.manager.clone();
    let queues = state.batcher.depths();
    let inflight = state.limits_max_concurrent() - state.inflight.available_permits();
    let ready = state.ready.load(Ordering::Acquire);
    let metrics = state.metrics.clone();
    // The manager's status takes its locks; keep that off the async workers.
    let text =
        tokio::task::spawn_blocking(move || metrics.render(&manager, &queues, inflight, ready))
            .await;
    match text {
        Ok(text) => (
            [(
                header::CONTENT_TYPE,
                "text/plain; version=0.0.4; charset=utf-8",
            )],
            text,
        )
            .into_response(),
        Err(e) => Native::render(&ApiError::internal(format!(
            "rendering metrics failed: {e}"
        ))),
    }
}

/// The 404 for a path no dialect owns.
async fn no_route(OriginalUri(uri): OriginalUri) -> Response {
    Native::render(&native::no_route(uri.path()))
}

/// The 405 for an operational route called with another method.
async fn wrong_method(OriginalUri(uri): OriginalUri) -> Response {
    Native::render(&ApiError::method_not_allowed(uri.path()))
}

/// The operational routes and the fallback for unknown paths, each behind the middleware it
/// needs (probes: only the request tracking).
pub fn router(state: &AppState) -> Router<AppState> {
    let probes = Router::new()
        .route("/health/live", get(live))
        .route("/health/ready", get(ready))
        .method_not_allowed_fallback(wrong_method);
    let metrics = Router::new()
        .route("/metrics", get(metrics))
        .method_not_allowed_fallback(wrong_method)
        .layer(from_fn_with_state(
            state.clone(),
            auth::metrics_key::<Native>,
        ));
    let keyed = Router::new()
        .route("/openapi.json", get(super::openapi::spec))
        .method_not_allowed_fallback(wrong_method)
        .fallback(no_route);
    probes
        .merge(metrics)
        .layer(from_fn_with_state(state.clone(), middleware::track))
        .merge(middleware::stack::<Native>(keyed, state))
}
