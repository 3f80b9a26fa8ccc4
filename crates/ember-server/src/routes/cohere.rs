//! Cohere- and Jina-compatible reranking: `POST /v1/rerank` (Cohere's v1 client, Jina, vLLM)
//! and `POST /v2/rerank` (Cohere's v2 client). Errors are `{"message": "..."}` as Cohere answers
//! them. The request and response types and the handler are generic over the dialect: the
//! native API mounts the same handler at `POST /api/v1/rerank` with its own error shape.

use axum::extract::{OriginalUri, State};
use axum::routing::post;
use axum::Router;
use ember_core::RerankOptions;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use utoipa::openapi::Components;
use utoipa::{OpenApi, ToSchema};

use super::Api;
use crate::error::{ApiError, Dialect, DialectError};
use crate::json::Json;
use crate::tasks::{parse_documents, Task};
use crate::AppState;

/// Cohere's (and Jina's) rerank API.
#[derive(Debug, Clone, Copy)]
pub struct Cohere;

/// The error body: `{"message": "..."}`.
impl Dialect for Cohere {
    fn body(e: &ApiError) -> Value {
        json!({"message": e.message})
    }
}

impl Api for Cohere {
    const TAG: &'static str = "cohere";
    const DESCRIPTION: &'static str = "Cohere- and Jina-compatible reranking";

    /// Two exact paths: unknown paths under `/v1` stay OpenAI's, the rest the server's.
    fn routes(_: &AppState) -> Router<AppState> {
        Router::new()
            .route("/v1/rerank", post(rerank::<Cohere>))
            .route("/v2/rerank", post(rerank::<Cohere>))
            .method_not_allowed_fallback(wrong_method)
    }

    fn paths() -> utoipa::openapi::OpenApi {
        Doc::openapi()
    }

    fn error_schema(components: &mut Components) -> String {
        use utoipa::PartialSchema;
        components
            .schemas
            .insert(CohereError::name().into_owned(), CohereError::schema());
        CohereError::name().into_owned()
    }
}

#[derive(OpenApi)]
#[openapi(
    paths(cohere_rerank_v1, cohere_rerank_v2),
    components(schemas(
        RerankRequest,
        RerankResponse,
        RerankResult,
        RerankDocument,
        RerankUsage
    ))
)]
struct Doc;

/// Cohere's error body.
#[derive(ToSchema)]
#[allow(dead_code)]
struct CohereError {
    message: String,
}

async fn wrong_method(OriginalUri(uri): OriginalUri) -> DialectError<Cohere> {
    ApiError::method_not_allowed(uri.path()).into()
}

/// Body of a Cohere/Jina rerank. Fields the clients send that Ember does not use
/// (`rank_fields`, `max_chunks_per_doc`, `max_tokens_per_doc`) are accepted and ignored.
#[derive(Debug, Deserialize, ToSchema)]
pub struct RerankRequest {
    /// A reranker's id or alias; the default model when absent (which must be a reranker).
    #[serde(default)]
    pub model: Option<String>,
    pub query: String,
    /// Strings, or `{"text": "..."}` objects.
    #[schema(value_type = Vec<Value>)]
    pub documents: Value,
    /// Return the best `top_n` (all by default).
    #[serde(default)]
    pub top_n: Option<usize>,
    /// Include each document's text in its result (default false).
    #[serde(default)]
    pub return_documents: Option<bool>,
    /// Ember extension: cut pairs over the model's limit, the document first (default true).
    #[serde(default)]
    pub truncate: Option<bool>,
}

/// A document as Cohere returns it.
#[derive(Debug, Serialize, ToSchema)]
pub struct RerankDocument {
    pub text: String,
}

/// One document's place in the ranking.
#[derive(Debug, Serialize, ToSchema)]
pub struct RerankResult {
    /// Its index in the request's documents.
    pub index: usize,
    /// The model's activated score (sigmoid for ms-marco and bge rerankers).
    pub relevance_score: f32,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub document: Option<RerankDocument>,
}

/// Tokens processed, as Jina reports them.
#[derive(Debug, Serialize, ToSchema)]
pub struct RerankUsage {
    pub total_tokens: usize,
}

/// Response of a rerank: results best first.
#[derive(Debug, Serialize, ToSchema)]
pub struct RerankResponse {
    pub id: String,
    pub model: String,
    pub results: Vec<RerankResult>,
    pub usage: RerankUsage,
    /// Cohere's `meta` (its clients read `api_version`).
    #[schema(value_type = Object)]
    pub meta: Value,
}

/// Ranks `documents` by relevance to `query` with a reranker, in dialect `D`'s error shape.
pub async fn rerank<D: Dialect>(
    State(state): State<AppState>,
    Json(req, _): Json<RerankRequest, D>,
) -> Result<axum::Json<RerankResponse>, DialectError<D>> {
    if req.top_n == Some(0) {
        return Err(ApiError::invalid_field("top_n", "`top_n` must be at least 1").into());
    }
    let documents = parse_documents(req.documents, "documents", &state.limits)?;
    let target = state.target(req.model.as_deref(), None)?;
    let opts = RerankOptions {
        truncate: req.truncate.unwrap_or(true),
        ..RerankOptions::default()
    };
    let query = req.query;
    let docs = documents.clone();
    let ranked = state
        .run_task(&target, Task::Rerank, move |m| {
            m.rerank(&query, &docs, &opts)
        })
        .await?;
    let return_documents = req.return_documents.unwrap_or(false);
    let results = ranked
        .results
        .iter()
        .take(req.top_n.unwrap_or(usize::MAX))
        .map(|r| RerankResult {
            index: r.index,
            relevance_score: r.score,
            document: return_documents.then(|| RerankDocument {
                text: documents[r.index].clone(),
            }),
        })
        .collect();
    Ok(axum::Json(RerankResponse {
        id: format!("rerank-{:016x}", rand_id()),
        model: ranked.model,
        results,
        usage: RerankUsage {
            total_tokens: ranked.prompt_tokens,
        },
        meta: json!({"api_version": {"version": "1"}, "billed_units": {"search_units": 1}}),
    }))
}

/// A request id for the response's `id` (unique enough to tell responses apart in logs).
fn rand_id() -> u64 {
    use std::hash::{BuildHasher, RandomState};
    RandomState::new().hash_one(std::time::SystemTime::now())
}

/// Cohere v1 / Jina / vLLM rerank.
#[utoipa::path(post, operation_id = "cohere_rerank_v1", path = "/v1/rerank", tag = "cohere",
    request_body = RerankRequest,
    responses((status = 200, body = RerankResponse), (status = 400), (status = 404), (status = 413)))]
#[allow(dead_code)]
fn cohere_rerank_v1() {}

/// Cohere v2 rerank (the same body and answer).
#[utoipa::path(post, operation_id = "cohere_rerank_v2", path = "/v2/rerank", tag = "cohere",
    request_body = RerankRequest,
    responses((status = 200, body = RerankResponse), (status = 400), (status = 404), (status = 413)))]
#[allow(dead_code)]
fn cohere_rerank_v2() {}
