//! Liveness and readiness probes (public, never keyed).

use std::sync::atomic::Ordering;

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use serde_json::json;

use crate::AppState;

/// `GET /health/live`: the process answers.
#[utoipa::path(get, operation_id = "health_live", path = "/health/live", tag = "health",
    responses((status = 200, description = "`{status: ok}`")))]
pub async fn live() -> impl IntoResponse {
    axum::Json(json!({"status": "ok"}))
}

/// `GET /health/ready`: 200 once start-up loading finished, 503 before.
#[utoipa::path(get, operation_id = "health_ready", path = "/health/ready", tag = "health",
    responses((status = 200, description = "`{status: ready}`"),
        (status = 503, description = "`{status: loading}`")))]
pub async fn ready(State(state): State<AppState>) -> impl IntoResponse {
    if state.ready.load(Ordering::Acquire) {
        (StatusCode::OK, axum::Json(json!({"status": "ready"})))
    } else {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            axum::Json(json!({"status": "loading"})),
        )
    }
}
