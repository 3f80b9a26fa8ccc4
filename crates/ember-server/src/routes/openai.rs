//! OpenAI-compatible routes: `POST /v1/embeddings` (and `/embeddings`), `GET /v1/models`,
//! `GET /v1/models/{id}`. Every error, including malformed bodies and unknown routes under
//! `/v1`, is answered in OpenAI's shape `{"error": {"message", "type", "param", "code"}}`.

use axum::extract::State;
use axum::http::{HeaderMap, Uri};
use axum::routing::{get, post};
use axum::Router;
use ember_core::EmbedOptions;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::ToSchema;

use super::shared::{self, Vector};
use crate::engine::EmbedJob;
use crate::error::{ApiError, DialectError, OpenAi};
use crate::json::{Json, Path};
use crate::AppState;

type Error = DialectError<OpenAi>;

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

/// The `/v1` routes with OpenAI-shaped fallbacks, plus `/embeddings`.
pub fn router() -> Router<AppState> {
    let v1 = Router::new()
        .route("/embeddings", post(embeddings))
        .route("/models", get(list_models))
        .route("/models/{*id}", get(get_model))
        .fallback(|uri: Uri| async move { Error::from(no_route(&uri)) })
        .method_not_allowed_fallback(|uri: Uri| async move {
            // Inside the nest the path has lost its `/v1`.
            Error::from(ApiError::method_not_allowed(&format!("/v1{}", uri.path())))
        });
    Router::new()
        .route("/embeddings", post(embeddings))
        .nest("/v1", v1)
}

fn no_route(uri: &Uri) -> ApiError {
    ApiError {
        message: format!(
            "no route for /v1{}; OpenAI-compatible routes are POST /v1/embeddings and GET /v1/models",
            uri.path()
        ),
        ..ApiError::no_route(uri.path())
    }
}

/// A token id of input `index`, or an error naming where it is.
fn token_id(v: &Value, at: &str) -> Result<u32, ApiError> {
    v.as_u64()
        .and_then(|n| u32::try_from(n).ok())
        .ok_or_else(|| {
            ApiError::invalid(format!(
                "`{at}` must be a token id (a non-negative integer), got {}",
                shared::type_name(v)
            ))
        })
}

/// Inputs as OpenAI accepts them: texts, or token-id lists to decode with the model's tokenizer.
enum Inputs {
    Texts(Vec<String>),
    Tokens(Vec<Vec<u32>>),
}

fn parse_inputs(input: Value) -> Result<Inputs, ApiError> {
    let items = match input {
        Value::Array(items) => items,
        other => return shared::parse_texts(other, "input", &no_limits()).map(Inputs::Texts),
    };
    match items.first() {
        None => Err(ApiError {
            kind: "empty",
            ..ApiError::invalid("`input` is an empty list; send at least one string")
        }),
        Some(Value::Number(_)) => Ok(Inputs::Tokens(vec![items
            .iter()
            .enumerate()
            .map(|(j, v)| token_id(v, &format!("input[{j}]")))
            .collect::<Result<_, _>>()?])),
        Some(Value::Array(_)) => items
            .iter()
            .enumerate()
            .map(|(i, row)| match row {
                Value::Array(ids) if ids.is_empty() => Err(ApiError::invalid(format!(
                    "`input[{i}]` is an empty token list"
                ))),
                Value::Array(ids) => ids
                    .iter()
                    .enumerate()
                    .map(|(j, v)| token_id(v, &format!("input[{i}][{j}]")))
                    .collect(),
                other => Err(ApiError::invalid(format!(
                    "`input[{i}]` must be a list of token ids like the other inputs, got {}",
                    shared::type_name(other)
                ))),
            })
            .collect::<Result<_, _>>()
            .map(Inputs::Tokens),
        Some(_) => {
            shared::parse_texts(Value::Array(items), "input", &no_limits()).map(Inputs::Texts)
        }
    }
}

/// Limits are checked once inputs are texts (token inputs are decoded first).
fn no_limits() -> crate::Limits {
    crate::Limits {
        max_client_batch: usize::MAX,
        max_body_bytes: usize::MAX,
        max_input_chars: usize::MAX,
        max_total_chars: usize::MAX,
    }
}

/// Creates embeddings, routed to the model the request names.
#[utoipa::path(post, operation_id = "openai_embeddings", path = "/v1/embeddings", tag = "openai", request_body = EmbeddingsRequest,
    responses((status = 200, body = EmbeddingsResponse), (status = 400), (status = 404)))]
pub async fn embeddings(
    State(state): State<AppState>,
    Json(req, _): Json<EmbeddingsRequest, OpenAi>,
) -> Result<(HeaderMap, axum::Json<EmbeddingsResponse>), Error> {
    let base64 = shared::parse_encoding(req.encoding_format.as_deref())?;
    let texts = match parse_inputs(req.input)? {
        Inputs::Texts(t) => t,
        Inputs::Tokens(rows) => {
            // Bounded before decoding, one character per id, so decoding work is bounded too.
            let sizes = rows.iter().map(Vec::len);
            shared::check_counts(sizes, rows.len(), "input", "token ids", &state.limits)?;
            let model = shared::acquire(&state, req.model.as_deref(), None).await?;
            rows.iter()
                .enumerate()
                .map(|(i, ids)| model.decode(i, ids))
                .collect::<Result<Vec<_>, _>>()?
        }
    };
    shared::check_texts(&texts, "input", &state.limits)?;
    let job = EmbedJob {
        model: req.model,
        texts,
        opts: EmbedOptions {
            dimensions: req.dimensions,
            instruction: req.instruction,
            ..EmbedOptions::default()
        },
        ..EmbedJob::default()
    };
    let out = state.embed(job).await?;
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
