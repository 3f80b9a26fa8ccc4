//! Ember's native API: `POST /api/v1/embed`, `GET /api/v1/models`, `GET /api/v1/models/{id}`,
//! `POST /api/v1/models/{id}/load` and `DELETE /api/v1/models/{id}` (the last two behind the
//! admin key). Errors are `{"error": {"type", "message", "code"}}`, for every path under
//! `/api/v1` and for paths no dialect owns.

use std::collections::HashMap;

use axum::body::Bytes;
use axum::extract::{OriginalUri, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::middleware::from_fn_with_state;
use axum::routing::{get, post};
use axum::Router;
use ember_core::{EmbedOptions, ModelStatus, Precision};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use utoipa::openapi::Components;
use utoipa::{OpenApi, ToSchema};

use super::shared::{self, Vector};
use super::Api;
use crate::engine::{EmbedJob, Inputs};
use crate::error::{ApiError, ApiErrorKind, Dialect, DialectError};
use crate::json::{Json, Path};
use crate::{auth, AppState};

/// Ember's own API.
#[derive(Debug, Clone, Copy)]
pub struct Native;

type Error = DialectError<Native>;

/// The error body: `{"error": {"type", "message", "code"}}`.
impl Dialect for Native {
    fn body(e: &ApiError) -> Value {
        json!({"error": {"type": e.kind.as_str(), "message": e.message, "code": e.status.as_u16()}})
    }
}

impl Api for Native {
    const TAG: &'static str = "native";
    const DESCRIPTION: &'static str = "Ember's own API";

    fn routes(state: &AppState) -> Router<AppState> {
        let admin = from_fn_with_state(state.clone(), auth::require_admin::<Native>);
        let api = Router::new()
            .route("/embed", post(embed))
            .route("/rerank", post(super::cohere::rerank::<Native>))
            .route("/models", get(list_models))
            // Ids may contain `/`: `POST …/{id}/load` is matched inside `load_model`.
            .route(
                "/models/{*id}",
                get(get_model).merge(post(load_model).delete(unload_model).route_layer(admin)),
            )
            .method_not_allowed_fallback(wrong_method)
            .fallback(no_route_here);
        Router::new().nest("/api/v1", api)
    }

    fn paths() -> utoipa::openapi::OpenApi {
        Doc::openapi()
    }

    fn error_schema(components: &mut Components) -> String {
        use utoipa::PartialSchema;
        for (name, schema) in [
            (NativeError::name(), NativeError::schema()),
            (NativeErrorDetail::name(), NativeErrorDetail::schema()),
        ] {
            components.schemas.insert(name.into_owned(), schema);
        }
        NativeError::name().into_owned()
    }
}

#[derive(OpenApi)]
#[openapi(
    paths(embed, native_rerank, list_models, get_model, load_model, unload_model),
    components(schemas(EmbedRequest, EmbedResponse, LoadRequest, Usage))
)]
struct Doc;

/// Native error body.
#[derive(ToSchema)]
#[allow(dead_code)]
struct NativeError {
    error: NativeErrorDetail,
}

#[derive(ToSchema)]
#[allow(dead_code)]
struct NativeErrorDetail {
    /// Machine-readable kind: `invalid_request`, `model_not_found`, `input_too_long`, ...
    r#type: String,
    message: String,
    /// The HTTP status.
    code: u16,
}

/// The 404 for `path`, pointing at the native routes.
pub fn no_route(path: &str) -> ApiError {
    ApiError::no_route(path, "see GET /api/v1/models and POST /api/v1/embed")
}

async fn no_route_here(OriginalUri(uri): OriginalUri) -> Error {
    no_route(uri.path()).into()
}

async fn wrong_method(OriginalUri(uri): OriginalUri) -> Error {
    ApiError::method_not_allowed(uri.path()).into()
}

/// Body of `POST /api/v1/embed`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct EmbedRequest {
    /// A string or a list of strings.
    #[schema(value_type = shared::TextInput, inline)]
    pub input: Value,
    /// Model id or alias; the default model when absent.
    #[serde(default)]
    pub model: Option<String>,
    /// Weight dtype serving the request: fp32, fp16, bf16 or int8 (the model's default when
    /// absent).
    #[serde(default)]
    #[schema(value_type = Option<shared::DTypeName>, inline)]
    pub dtype: Option<String>,
    /// L2-normalize (default true).
    #[serde(default)]
    pub normalize: Option<bool>,
    /// Matryoshka truncation to this many dimensions.
    #[serde(default)]
    pub dimensions: Option<usize>,
    /// A key of the model's prompts.
    #[serde(default)]
    pub prompt_name: Option<String>,
    /// `query` or `document`: picks the model's prompt of that name (`document` also matches
    /// `passage`).
    #[serde(default)]
    #[schema(value_type = Option<shared::InputTypeName>, inline)]
    pub input_type: Option<String>,
    /// An INSTRUCTOR instruction (`Represent the science title: `): prepended to every input and
    /// left out of the mean pooling (INSTRUCTOR's rule; any model). Wins over prompts.
    #[serde(default)]
    pub instruction: Option<String>,
    /// Cut inputs over the model's limit (default true).
    #[serde(default)]
    pub truncate: Option<bool>,
    /// `float` (default) or `base64` (little-endian f32 bytes; raw bytes for quantized
    /// precisions).
    #[serde(default)]
    #[schema(value_type = Option<shared::EncodingName>, inline)]
    pub encoding_format: Option<String>,
    /// Output precision: float32 (default), int8, uint8, binary or ubinary (int8/uint8 are
    /// calibrated on this request's own embeddings, as sentence-transformers does).
    #[serde(default)]
    #[schema(value_type = Option<shared::PrecisionName>, inline)]
    pub precision: Option<String>,
    /// How long the model stays loaded after this request: `"5m"`, `"-1"` or seconds.
    #[serde(default)]
    #[schema(value_type = Option<shared::KeepAliveValue>, inline)]
    pub keep_alive: Option<Value>,
}

/// Token usage, as OpenAI reports it.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct Usage {
    pub prompt_tokens: usize,
    pub total_tokens: usize,
}

/// Response of `POST /api/v1/embed`.
#[derive(Debug, Serialize, ToSchema)]
pub struct EmbedResponse {
    pub model: String,
    pub dimension: usize,
    /// The dtype that served the request.
    pub dtype: String,
    pub precision: String,
    /// One vector per input: floats, integers (quantized precisions) or base64 strings.
    #[schema(inline)]
    pub embeddings: Vec<Vector>,
    pub usage: Usage,
}

/// Body of `POST /api/v1/models/{id}/load` (optional).
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct LoadRequest {
    /// Weight dtype to load (the model's default when absent).
    #[serde(default)]
    #[schema(value_type = Option<shared::DTypeName>, inline)]
    pub dtype: Option<String>,
    /// How long the model stays loaded when idle: `"5m"`, `"-1"` (forever) or seconds.
    #[serde(default)]
    #[schema(value_type = Option<shared::KeepAliveValue>, inline)]
    pub keep_alive: Option<Value>,
}

/// Embeds text with the named (or default) model.
#[utoipa::path(post, operation_id = "native_embed", path = "/api/v1/embed", tag = "native", request_body = EmbedRequest,
    responses((status = 200, body = EmbedResponse), (status = 400), (status = 404), (status = 413)))]
pub async fn embed(
    State(state): State<AppState>,
    Json(req, _): Json<EmbedRequest, Native>,
) -> Result<(HeaderMap, axum::Json<EmbedResponse>), Error> {
    let texts = shared::parse_texts(req.input, "input", &state.limits)?;
    let dtype = shared::parse_dtype(req.dtype.as_deref())?;
    let keep_alive = shared::parse_keep_alive(req.keep_alive.as_ref())?;
    let base64 = shared::parse_encoding(req.encoding_format.as_deref())?;
    let precision = req
        .precision
        .as_deref()
        .map(str::parse::<Precision>)
        .transpose()?
        .unwrap_or(Precision::Float32);
    if req.input_type.is_some() && req.prompt_name.is_some() {
        return Err(ApiError::invalid_field(
            "input_type",
            "pass either `input_type` or `prompt_name`, not both",
        )
        .into());
    }
    let input_type = shared::parse_input_type(req.input_type.as_deref())?;
    let target = state.target(req.model.as_deref(), dtype)?;
    let job = EmbedJob {
        keep_alive,
        inputs: Inputs::Texts(texts),
        opts: EmbedOptions {
            normalize: req.normalize.unwrap_or(true),
            dimensions: req.dimensions,
            prompt_name: req.prompt_name,
            instruction: req.instruction,
            input_type,
            truncate: req.truncate.unwrap_or(true),
            ..EmbedOptions::default()
        },
    };
    let out = state.embed(&target, job).await?;
    let headers = shared::timing_headers(&out);
    let e = &out.embeddings;
    Ok((
        headers,
        axum::Json(EmbedResponse {
            model: e.model.clone(),
            dimension: e.dimension,
            dtype: e.dtype.to_string(),
            precision: format!("{precision:?}").to_lowercase(),
            embeddings: shared::vectors(e, precision, base64)?,
            usage: Usage {
                prompt_tokens: e.prompt_tokens,
                total_tokens: e.prompt_tokens,
            },
        }),
    ))
}

/// Ranks documents by relevance to a query with a reranker: Cohere's body and answer
/// (`documents` as strings or `{"text"}`, `top_n`, `return_documents`), native errors.
#[utoipa::path(post, operation_id = "native_rerank", path = "/api/v1/rerank", tag = "native",
    request_body = super::cohere::RerankRequest,
    responses((status = 200, body = super::cohere::RerankResponse), (status = 400), (status = 404), (status = 413)))]
#[allow(dead_code)]
fn native_rerank() {}

/// The catalog with each model's load state, dtype, bytes held, last use and keep-alive.
#[utoipa::path(get, operation_id = "native_list_models", path = "/api/v1/models", tag = "native",
    responses((status = 200, description = "`{default_model, models: [...]}`")))]
pub async fn list_models(State(state): State<AppState>) -> Result<axum::Json<Value>, Error> {
    let c = catalog(&state)?;
    Ok(axum::Json(
        serde_json::json!({"default_model": c.default_model, "models": c.models}),
    ))
}

/// The catalog as callers see it: every model's status, and the default model's id.
#[derive(Debug)]
pub struct Catalog {
    pub default_model: String,
    pub models: Vec<ModelStatus>,
}

/// The catalog with load states, as `GET /api/v1/models` answers it (the web page's stats too).
pub fn catalog(state: &AppState) -> Result<Catalog, ApiError> {
    Ok(Catalog {
        models: state.manager.status()?.into_iter().map(public).collect(),
        default_model: state.manager.spec(None)?.id,
    })
}

/// `status` as callers see it: a load failure's message without file-system paths.
fn public(mut status: ModelStatus) -> ModelStatus {
    status.error = status.error.map(|e| crate::error::redact_paths(&e));
    status
}

fn status_json(status: ModelStatus) -> Result<axum::Json<Value>, Error> {
    serde_json::to_value(public(status))
        .map(axum::Json)
        .map_err(|e| {
            Error::from(ApiError::internal(format!(
                "cannot serialize model status: {e}"
            )))
        })
}

/// One model's catalog entry and load state.
#[utoipa::path(get, operation_id = "native_get_model", path = "/api/v1/models/{id}", tag = "native",
    params(("id" = String, Path, description = "Model id or alias (may contain `/`)")),
    responses((status = 200, description = "The model's status"), (status = 404)))]
pub async fn get_model(
    State(state): State<AppState>,
    Path(id, _): Path<String, Native>,
) -> Result<axum::Json<Value>, Error> {
    status_json(state.manager.model_status(&id)?)
}

/// Loads a model now (body: `dtype`, `keep_alive`, both optional) and returns its status.
#[utoipa::path(post, operation_id = "native_load_model", path = "/api/v1/models/{id}/load", tag = "native",
    params(("id" = String, Path, description = "Model id or alias")),
    request_body(content = LoadRequest, description = "Optional"),
    responses((status = 200, description = "The model's status after loading"), (status = 403), (status = 404)))]
pub async fn load_model(
    State(state): State<AppState>,
    Path(path, _): Path<String, Native>,
    body: Bytes,
) -> Result<axum::Json<Value>, Error> {
    // Ids may contain `/`, so the route is a wildcard and the action its last segment.
    let Some(id) = path.strip_suffix("/load") else {
        return Err(no_route(&format!("/api/v1/models/{path}")).into());
    };
    let req: LoadRequest = if body.iter().all(u8::is_ascii_whitespace) {
        LoadRequest::default()
    } else {
        serde_json::from_slice(&body).map_err(|e| {
            ApiError::new(
                ApiErrorKind::InvalidJson,
                format!("invalid load request body: {e}"),
            )
        })?
    };
    let dtype = shared::parse_dtype(req.dtype.as_deref())?;
    let keep_alive = shared::parse_keep_alive(req.keep_alive.as_ref())?;
    let manager = state.manager.clone();
    let id = id.to_string();
    let status = tokio::task::spawn_blocking(move || manager.load(&id, dtype, keep_alive))
        .await
        .map_err(|e| ApiError::internal(format!("model load task failed: {e}")))??;
    status_json(status)
}

/// Unloads a model (`?dtype=` for one dtype, else all); pinned models cannot be unloaded.
#[utoipa::path(delete, operation_id = "native_unload_model", path = "/api/v1/models/{id}", tag = "native",
    params(("id" = String, Path, description = "Model id or alias"),
        ("dtype" = inline(Option<shared::DTypeName>), Query, description = "Only this dtype")),
    responses((status = 200, description = "`{id, unloaded}`: instances removed"),
        (status = 400, description = "Pinned model"), (status = 403), (status = 404)))]
pub async fn unload_model(
    State(state): State<AppState>,
    Path(id, _): Path<String, Native>,
    Query(query): Query<HashMap<String, String>>,
) -> Result<(StatusCode, axum::Json<Value>), Error> {
    let dtype = shared::parse_dtype(query.get("dtype").map(String::as_str))?;
    let spec = state.manager.spec(Some(&id))?;
    let n = state.manager.unload(&id, dtype)?;
    Ok((
        StatusCode::OK,
        axum::Json(serde_json::json!({"id": spec.id, "unloaded": n})),
    ))
}
