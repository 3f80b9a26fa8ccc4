//! Route handlers, one module per API family, and the router that mounts them.

pub mod health;
pub mod native;
pub mod ollama;
pub mod openai;
pub mod openapi;
pub mod shared;
pub mod tei;

use axum::routing::{get, post};
use axum::Router;

use crate::AppState;

/// Every API route (health included); `app()` adds fallbacks and middleware around it.
pub fn router() -> Router<AppState> {
    Router::new()
        // Native
        .route("/api/v1/embed", post(native::embed))
        .route("/api/v1/models", get(native::list_models))
        // Ids may contain `/`: `POST …/{id}/load` is matched inside `load_model`.
        .route(
            "/api/v1/models/{*id}",
            get(native::get_model)
                .post(native::load_model)
                .delete(native::unload_model),
        )
        // Ollama
        .route("/api/embed", post(ollama::embed))
        .route("/api/embeddings", post(ollama::embeddings))
        .route("/api/tags", get(ollama::tags))
        .route("/api/ps", get(ollama::ps))
        .route("/api/version", get(ollama::version))
        // TEI
        .route("/embed", post(tei::embed))
        .route("/info", get(tei::info))
        .route("/tokenize", post(tei::tokenize))
        // OpenAI (`/v1/*` and `/embeddings`), with OpenAI-shaped fallbacks under `/v1`
        .merge(openai::router())
        .route("/openapi.json", get(openapi::spec))
        .route("/health/live", get(health::live))
        .route("/health/ready", get(health::ready))
}
