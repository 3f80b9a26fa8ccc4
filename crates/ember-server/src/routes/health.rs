//! Liveness and readiness probes (public, never keyed).

use axum::extract::State;
use axum::response::IntoResponse;
use serde_json::json;

use crate::AppState;

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
