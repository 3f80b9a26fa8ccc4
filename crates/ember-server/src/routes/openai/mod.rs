//! OpenAI-compatible routes: `POST /v1/embeddings` (and `/embeddings`), `GET /v1/models`,
//! `GET /v1/models/{id}`. Every error, including malformed bodies and unknown routes under
//! `/v1`, is answered in OpenAI's shape `{"error": {"message", "type", "param", "code"}}`.
//! `inputs.rs` reads `input`: strings, or token ids (the model's own, or OpenAI's tokenizers'
//! with `--openai-token-ids`).

use axum::extract::{OriginalUri, State};
use axum::http::{HeaderMap, StatusCode};
use axum::routing::{get, post};
use axum::Router;
use ember_core::EmbedOptions;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use utoipa::openapi::Components;
use utoipa::{OpenApi, ToSchema};

mod inputs;

use super::shared::{self, Vector};
use super::Api;
use crate::engine::EmbedJob;
use crate::error::{ApiError, Dialect, DialectError};
use crate::json::{Json, Path};
use crate::AppState;

/// OpenAI's API.
#[derive(Debug, Clone, Copy)]
pub struct OpenAi;

type Error = DialectError<OpenAi>;

/// The error body: `{"error": {"message", "type", "param", "code"}}`. OpenAI's `type` is coarse;
/// `code` carries Ember's specific kind and `param` the request field at fault.
impl Dialect for OpenAi {
    fn body(e: &ApiError) -> Value {
        let kind = match e.status {
            StatusCode::NOT_FOUND if e.kind.is_about_model() => "invalid_request_error",
            StatusCode::NOT_FOUND => "not_found_error",
            StatusCode::TOO_MANY_REQUESTS => "rate_limit_error",
            StatusCode::UNAUTHORIZED => "authentication_error",
            s if s.is_server_error() => "server_error",
            _ => "invalid_request_error",
        };
        json!({
            "error": {"message": e.message, "type": kind, "param": e.field, "code": e.kind.as_str()}
        })
    }
}

impl Api for OpenAi {
    const TAG: &'static str = "openai";
    const DESCRIPTION: &'static str = "OpenAI-compatible embeddings";

    /// The `/v1` routes with OpenAI-shaped fallbacks, plus `/embeddings`.
    fn routes(_: &AppState) -> Router<AppState> {
        let v1 = Router::new()
            .route("/embeddings", post(embeddings))
            .route("/models", get(list_models))
            .route("/models/{*id}", get(get_model))
            .fallback(no_route)
            .method_not_allowed_fallback(wrong_method);
        Router::new()
            .route("/embeddings", post(embeddings))
            .method_not_allowed_fallback(wrong_method)
            .nest("/v1", v1)
    }

    fn paths() -> utoipa::openapi::OpenApi {
        Doc::openapi()
    }

    fn error_schema(components: &mut Components) -> String {
        use utoipa::PartialSchema;
        for (name, schema) in [
            (OpenAiError::name(), OpenAiError::schema()),
            (OpenAiErrorDetail::name(), OpenAiErrorDetail::schema()),
        ] {
            components.schemas.insert(name.into_owned(), schema);
        }
        OpenAiError::name().into_owned()
    }
}

#[derive(OpenApi)]
#[openapi(
    paths(embeddings, list_models, get_model),
    components(schemas(EmbeddingsRequest, EmbeddingsResponse, EmbeddingObject, OpenAiUsage))
)]
struct Doc;

/// OpenAI's error body.
#[derive(ToSchema)]
#[allow(dead_code)]
struct OpenAiError {
    error: OpenAiErrorDetail,
}

#[derive(ToSchema)]
#[allow(dead_code)]
struct OpenAiErrorDetail {
    message: String,
    /// `invalid_request_error`, `authentication_error`, `rate_limit_error`, `server_error`, ...
    r#type: String,
    /// The request field at fault, when one is.
    param: Option<String>,
    /// Ember's specific kind, as in the native shape.
    code: Option<String>,
}

/// Body of `POST /v1/embeddings`.
#[derive(Debug, Deserialize, ToSchema)]
#[schema(as = OpenAiEmbeddingsRequest)]
pub struct EmbeddingsRequest {
    /// A string, a list of strings, a list of token ids or a list of token-id lists.
    #[schema(value_type = shared::OpenAiInput, inline)]
    pub input: Value,
    /// Model id or alias (the default model when absent).
    #[serde(default)]
    pub model: Option<String>,
    /// `float` (default) or `base64` (little-endian f32 bytes).
    #[serde(default)]
    #[schema(value_type = Option<shared::EncodingName>, inline)]
    pub encoding_format: Option<String>,
    /// Matryoshka truncation to this many dimensions.
    #[serde(default)]
    pub dimensions: Option<usize>,
    /// An end-user id; accepted and ignored.
    #[serde(default)]
    pub user: Option<String>,
    /// Ember extension: an INSTRUCTOR instruction, prepended to every input and left out of the
    /// mean pooling (for `instructor-base` / `-large`; OpenAI's SDKs send it with `extra_body`).
    #[serde(default)]
    pub instruction: Option<String>,
}

/// One vector of the response.
#[derive(Debug, Serialize, ToSchema)]
#[schema(as = OpenAiEmbeddingObject)]
pub struct EmbeddingObject {
    /// Always `embedding`.
    pub object: &'static str,
    pub index: usize,
    /// Floats, or a base64 string with `encoding_format: "base64"`.
    #[schema(inline)]
    pub embedding: Vector,
}

/// Token usage.
#[derive(Debug, Serialize, ToSchema)]
pub struct OpenAiUsage {
    pub prompt_tokens: usize,
    pub total_tokens: usize,
}

/// Response of `POST /v1/embeddings`.
#[derive(Debug, Serialize, ToSchema)]
#[schema(as = OpenAiEmbeddingsResponse)]
pub struct EmbeddingsResponse {
    /// Always `list`.
    pub object: &'static str,
    pub data: Vec<EmbeddingObject>,
    pub model: String,
    pub usage: OpenAiUsage,
}

async fn no_route(OriginalUri(uri): OriginalUri) -> Error {
    ApiError::no_route(
        uri.path(),
        "OpenAI-compatible routes are POST /v1/embeddings and GET /v1/models",
    )
    .into()
}

async fn wrong_method(OriginalUri(uri): OriginalUri) -> Error {
    ApiError::method_not_allowed(uri.path()).into()
}

/// Creates embeddings, routed to the model the request names.
#[utoipa::path(post, operation_id = "openai_embeddings", path = "/v1/embeddings", tag = "openai", request_body = EmbeddingsRequest,
    responses((status = 200, body = EmbeddingsResponse), (status = 400), (status = 404)))]
pub async fn embeddings(
    State(state): State<AppState>,
    Json(req, _): Json<EmbeddingsRequest, OpenAi>,
) -> Result<(HeaderMap, axum::Json<EmbeddingsResponse>), Error> {
    let base64 = shared::parse_encoding(req.encoding_format.as_deref())?;
    let target = state.target(req.model.as_deref(), None)?;
    let inputs = inputs::read(req.input, &state.limits, state.openai.token_ids)?;
    let job = EmbedJob {
        inputs,
        opts: EmbedOptions {
            dimensions: req.dimensions,
            instruction: req.instruction,
            ..EmbedOptions::default()
        },
        ..EmbedJob::default()
    };
    let out = state.embed(&target, job).await?;
    let headers = shared::timing_headers(&out);
    let e = &out.embeddings;
    let data = shared::vectors(e, ember_core::Precision::Float32, base64)?
        .into_iter()
        .enumerate()
        .map(|(index, embedding)| EmbeddingObject {
            object: "embedding",
            index,
            embedding,
        })
        .collect();
    Ok((
        headers,
        axum::Json(EmbeddingsResponse {
            object: "list",
            data,
            model: e.model.clone(),
            usage: OpenAiUsage {
                prompt_tokens: e.prompt_tokens,
                total_tokens: e.prompt_tokens,
            },
        }),
    ))
}

fn model_object(id: &str) -> Value {
    serde_json::json!({"id": id, "object": "model", "created": 0, "owned_by": "ember"})
}

/// The servable models in OpenAI's list shape.
#[utoipa::path(get, operation_id = "openai_list_models", path = "/v1/models", tag = "openai",
    responses((status = 200, description = "`{object: list, data: [{id, object, created, owned_by}]}`")))]
pub async fn list_models(State(state): State<AppState>) -> Result<axum::Json<Value>, Error> {
    let data: Vec<Value> = state
        .manager
        .status()
        .map_err(ApiError::from)?
        .iter()
        .filter(|m| m.spec.supported)
        .map(|m| model_object(&m.spec.id))
        .collect();
    Ok(axum::Json(
        serde_json::json!({"object": "list", "data": data}),
    ))
}

/// One model in OpenAI's shape.
#[utoipa::path(get, operation_id = "openai_get_model", path = "/v1/models/{id}", tag = "openai",
    params(("id" = String, Path, description = "Model id or alias")),
    responses((status = 200, description = "`{id, object, created, owned_by}`"), (status = 404)))]
pub async fn get_model(
    State(state): State<AppState>,
    Path(id, _): Path<String, OpenAi>,
) -> Result<axum::Json<Value>, Error> {
    let spec = state.manager.spec(Some(&id)).map_err(ApiError::from)?;
    Ok(axum::Json(model_object(&spec.id)))
}
