//! Route handlers, one module per API family, and the router that mounts them.

pub mod health;
pub mod native;

use axum::routing::{get, post};
use axum::Router;

use crate::AppState;

/// Every API route (health included); `app()` adds fallbacks and middleware around it.
pub fn router() -> Router<AppState> {
    Router::new()
        .route("/api/v1/embed", post(native::embed))
        .route("/api/v1/models", get(native::list_models))
        .route("/api/v1/models/{*id}", get(native::get_model))
        .route("/health/live", get(health::live))
        .route("/health/ready", get(health::ready))
}
