//! Ember's native API: `POST /api/v1/embed` (dense or, in `sparse.rs`, sparse output),
//! `POST /api/v1/rerank`, `POST /api/v1/chunk` (`chunk.rs`), `GET /api/v1/models`, `GET /api/v1/models/{id}`,
//! `POST /api/v1/models/{id}/load` and `DELETE /api/v1/models/{id}` (the last two behind the
//! admin key). Errors are `{"error": {"type", "message", "code"}}`, for every path under
//! `/api/v1` and for paths no dialect owns.

use axum::extract::{OriginalUri, State};
use axum::http::HeaderMap;
use axum::middleware::from_fn_with_state;
use axum::routing::{get, post};
use axum::Router;
use ember_core::{EmbedOptions, Precision};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use utoipa::openapi::Components;
use utoipa::{OpenApi, ToSchema};

mod chunk;
mod models;
mod sparse;

pub use models::{catalog, Catalog, LoadRequest};

use super::shared::{self, Vector};
use super::Api;
use crate::engine::{EmbedJob, Inputs};
use crate::error::{ApiError, Dialect, DialectError};
use crate::json::Json;
use crate::{auth, AppState};
use models::{get_model, list_models, load_model, unload_model};
use sparse::{Output, SparseEmbedResponse};

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
            .route("/chunk", post(chunk::chunk))
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
    paths(
        embed,
        native_rerank,
        chunk::chunk,
        models::list_models,
        models::get_model,
        models::load_model,
        models::unload_model
    ),
    components(schemas(
        EmbedRequest,
        EmbedAnswer,
        EmbedResponse,
        SparseEmbedResponse,
        sparse::SparseEmbedding,
        chunk::ChunkRequest,
        chunk::ChunkResponse,
        chunk::ChunkSpan,
        LoadRequest,
        Usage
    ))
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
    /// `dense` (default: an embedder's pooled vectors) or `sparse` (a sparse encoder's
    /// `{indices, values}`).
    #[serde(default)]
    #[schema(value_type = Option<OutputName>, inline)]
    pub output: Option<String>,
    /// Sparse output: keep only the `top_k` largest values of each vector.
    #[serde(default)]
    pub top_k: Option<usize>,
}

/// What `POST /api/v1/embed` computes.
#[derive(ToSchema)]
#[schema(as = OutputName)]
#[allow(dead_code)]
enum OutputName {
    #[schema(rename = "dense")]
    Dense,
    #[schema(rename = "sparse")]
    Sparse,
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

/// Response of `POST /api/v1/embed`: dense or sparse vectors, as the request's `output` asks.
#[derive(Debug, Serialize, ToSchema)]
#[serde(untagged)]
pub enum EmbedAnswer {
    Dense(EmbedResponse),
    Sparse(SparseEmbedResponse),
}

/// Embeds text with the named (or default) model: an embedder's dense vectors, or with
/// `"output": "sparse"` a sparse encoder's.
#[utoipa::path(post, operation_id = "native_embed", path = "/api/v1/embed", tag = "native", request_body = EmbedRequest,
    responses((status = 200, body = EmbedAnswer), (status = 400), (status = 404), (status = 413)))]
pub async fn embed(
    State(state): State<AppState>,
    Json(req, _): Json<EmbedRequest, Native>,
) -> Result<(HeaderMap, axum::Json<EmbedAnswer>), Error> {
    if Output::parse(req.output.as_deref())? == Output::Sparse {
        let out = sparse::embed(state, req).await?;
        return Ok((HeaderMap::new(), axum::Json(EmbedAnswer::Sparse(out))));
    }
    sparse::refuse_sparse_options(&req)?;
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
    let input_type =
        shared::parse_prompt_choice(req.input_type.as_deref(), req.prompt_name.as_deref())?;
    let target = state.target(req.model.as_deref(), dtype)?;
    sparse::require_dense(&target)?;
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
        axum::Json(EmbedAnswer::Dense(EmbedResponse {
            model: e.model.clone(),
            dimension: e.dimension,
            dtype: e.dtype.to_string(),
            precision: format!("{precision:?}").to_lowercase(),
            embeddings: shared::vectors(e, precision, base64)?,
            usage: Usage {
                prompt_tokens: e.prompt_tokens,
                total_tokens: e.prompt_tokens,
            },
        })),
    ))
}

/// Ranks documents by relevance to a query with a reranker: Cohere's body and answer
/// (`documents` as strings or `{"text"}`, `top_n`, `return_documents`), native errors.
#[utoipa::path(post, operation_id = "native_rerank", path = "/api/v1/rerank", tag = "native",
    request_body = super::cohere::RerankRequest,
    responses((status = 200, body = super::cohere::RerankResponse), (status = 400), (status = 404), (status = 413)))]
#[allow(dead_code)]
fn native_rerank() {}
