//! The OpenAPI document, generated from the handlers' `#[utoipa::path]` annotations and the
//! request/response types, served at `GET /openapi.json` and committed as `openapi.json`.

use utoipa::OpenApi;

use super::{health, native, ollama, openai, tei};
use crate::error::ErrorResponses;

/// Every documented route and schema.
#[derive(Debug, OpenApi)]
#[openapi(
    modifiers(&ErrorResponses),
    info(
        title = "Ember",
        description = "One process serving many text-embedding models, with native, OpenAI, Ollama and TEI compatible routes."
    ),
    paths(
        native::embed, native::list_models, native::get_model, native::load_model,
        native::unload_model,
        openai::embeddings, openai::list_models, openai::get_model,
        ollama::embed, ollama::embeddings, ollama::tags, ollama::ps, ollama::version,
        tei::embed, tei::info, tei::tokenize,
        health::live, health::ready, spec,
    ),
    components(schemas(
        native::EmbedRequest, native::EmbedResponse, native::LoadRequest, native::Usage,
        openai::EmbeddingsRequest, openai::EmbeddingsResponse, openai::EmbeddingObject,
        openai::OpenAiUsage,
        ollama::EmbedRequest, ollama::EmbedResponse, ollama::EmbeddingsRequest,
        ollama::EmbeddingsResponse,
        tei::EmbedRequest, tei::TokenizeRequest, tei::Token,
    )),
    tags(
        (name = "native", description = "Ember's own API"),
        (name = "openai", description = "OpenAI-compatible embeddings"),
        (name = "ollama", description = "Ollama-compatible embeddings"),
        (name = "tei", description = "text-embeddings-inference-compatible embeddings"),
        (name = "health", description = "Probes"),
    )
)]
pub struct ApiDoc;

/// The document as pretty JSON with a trailing newline (the form committed to the repo).
pub fn document() -> String {
    let mut s = ApiDoc::openapi()
        .to_pretty_json()
        .unwrap_or_else(|e| format!("{{\"error\": \"{e}\"}}"));
    s.push('\n');
    s
}

/// This OpenAPI document.
#[utoipa::path(get, operation_id = "spec", path = "/openapi.json", tag = "health",
    responses((status = 200, description = "The OpenAPI 3.1 document")))]
pub async fn spec() -> impl axum::response::IntoResponse {
    (
        [(axum::http::header::CONTENT_TYPE, "application/json")],
        document(),
    )
}
