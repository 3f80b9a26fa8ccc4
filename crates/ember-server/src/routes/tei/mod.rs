//! Text-embeddings-inference-compatible routes: `POST /embed`, `GET /info`, `POST /tokenize`,
//! (in `heads.rs`) `POST /rerank`, `POST /predict` and `POST /embed_sparse`, and (in
//! `tokens.rs`) `POST /embed_all`.
//! Errors are `{"error": "...", "error_type": "..."}` as TEI answers them. Unlike TEI, which
//! serves one model, the bodies may name a `model` (the default model otherwise).

use axum::extract::{OriginalUri, State};
use axum::http::{HeaderMap, StatusCode};
use axum::routing::{get, post};
use axum::Router;
use ember_core::{EmbedOptions, TruncationSide};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use utoipa::openapi::Components;
use utoipa::{OpenApi, ToSchema};

mod heads;
mod tokens;

use super::shared;
use super::Api;
use crate::engine::{EmbedJob, Inputs};
use crate::error::{ApiError, ApiErrorKind, Dialect, DialectError};
use crate::json::Json;
use crate::AppState;

/// text-embeddings-inference's API.
#[derive(Debug, Clone, Copy)]
pub struct Tei;

type Error = DialectError<Tei>;

/// The error body: `{"error": "...", "error_type": "..."}`, with TEI's error types (Unhealthy,
/// Backend, Overloaded, Validation, Tokenizer, Empty).
impl Dialect for Tei {
    fn body(e: &ApiError) -> Value {
        let kind = match e.status {
            StatusCode::TOO_MANY_REQUESTS => "overloaded",
            StatusCode::SERVICE_UNAVAILABLE => "unhealthy",
            s if s.is_server_error() => "backend",
            _ if e.kind == ApiErrorKind::Empty => "empty",
            _ => "validation",
        };
        json!({"error": e.message, "error_type": kind})
    }
}

impl Api for Tei {
    const TAG: &'static str = "tei";
    const DESCRIPTION: &'static str = "text-embeddings-inference-compatible embeddings";

    /// TEI's routes sit at the root, so unknown paths fall to the server's own 404; a wrong
    /// method on one of them is answered here.
    fn routes(_: &AppState) -> Router<AppState> {
        Router::new()
            .route("/embed", post(embed))
            .route("/info", get(info))
            .route("/tokenize", post(tokenize))
            .route("/rerank", post(heads::rerank))
            .route("/predict", post(heads::predict))
            .route("/embed_sparse", post(heads::embed_sparse))
            .route("/embed_all", post(tokens::embed_all))
            .method_not_allowed_fallback(wrong_method)
    }

    fn paths() -> utoipa::openapi::OpenApi {
        Doc::openapi()
    }

    fn error_schema(components: &mut Components) -> String {
        use utoipa::PartialSchema;
        components
            .schemas
            .insert(TeiError::name().into_owned(), TeiError::schema());
        TeiError::name().into_owned()
    }
}

#[derive(OpenApi)]
#[openapi(
    paths(
        embed,
        info,
        tokenize,
        heads::rerank,
        heads::predict,
        heads::embed_sparse,
        tokens::embed_all
    ),
    components(schemas(
        EmbedRequest,
        TokenizeRequest,
        Token,
        heads::RerankRequest,
        heads::Rank,
        heads::PredictRequest,
        heads::Prediction,
        heads::SparseRequest,
        heads::SparseValue,
        tokens::EmbedAllRequest
    ))
)]
struct Doc;

/// TEI's error body.
#[derive(ToSchema)]
#[allow(dead_code)]
struct TeiError {
    error: String,
    /// `validation`, `empty`, `overloaded`, `unhealthy`, `backend`, ...
    error_type: String,
}

async fn wrong_method(OriginalUri(uri): OriginalUri) -> Error {
    ApiError::method_not_allowed(uri.path()).into()
}

/// Body of `POST /embed`.
#[derive(Debug, Deserialize, ToSchema)]
#[schema(as = TeiEmbedRequest)]
pub struct EmbedRequest {
    /// A string or a list of strings.
    #[schema(value_type = shared::TextInput, inline)]
    pub inputs: Value,
    /// Ember extension: the model to use (the default model when absent).
    #[serde(default)]
    pub model: Option<String>,
    /// L2-normalize (default true).
    #[serde(default)]
    pub normalize: Option<bool>,
    /// Cut inputs over the model's limit (default true).
    #[serde(default)]
    pub truncate: Option<bool>,
    /// `Right` (default: keep the beginning) or `Left` (keep the end), for inputs cut at the
    /// model's limit.
    #[serde(default)]
    pub truncation_direction: Option<String>,
    /// A key of the model's prompts.
    #[serde(default)]
    pub prompt_name: Option<String>,
    /// Matryoshka truncation to this many dimensions.
    #[serde(default)]
    pub dimensions: Option<usize>,
}

/// Body of `POST /tokenize`.
#[derive(Debug, Deserialize, ToSchema)]
#[schema(as = TeiTokenizeRequest)]
pub struct TokenizeRequest {
    /// A string or a list of strings.
    #[schema(value_type = shared::TextInput, inline)]
    pub inputs: Value,
    /// Ember extension: the model whose tokenizer to use.
    #[serde(default)]
    pub model: Option<String>,
    /// Keep the special tokens (default true).
    #[serde(default)]
    pub add_special_tokens: Option<bool>,
    /// A key of the model's prompts, prepended to each input.
    #[serde(default)]
    pub prompt_name: Option<String>,
}

/// One token as TEI reports it: for a text token, `text` is the slice of the input it covers and
/// `start` / `stop` its byte offsets; a special token has its own text and no offsets.
#[derive(Debug, Serialize, ToSchema)]
#[schema(as = TeiToken)]
pub struct Token {
    pub id: u32,
    pub text: String,
    pub special: bool,
    pub start: Option<usize>,
    pub stop: Option<usize>,
}

/// TEI's `truncation_direction`: `Right` (default: keep the beginning) or `Left`.
fn truncation_side(direction: Option<&str>) -> Result<TruncationSide, ApiError> {
    match direction.map(str::to_ascii_lowercase).as_deref() {
        None | Some("right") => Ok(TruncationSide::Right),
        Some("left") => Ok(TruncationSide::Left),
        Some(other) => Err(ApiError::invalid_field(
            "truncation_direction",
            format!("unknown `truncation_direction` `{other}`; use `Right` or `Left`"),
        )),
    }
}

/// Embeds `inputs`; returns one vector per input.
#[utoipa::path(post, operation_id = "tei_embed", path = "/embed", tag = "tei", request_body = EmbedRequest,
    responses((status = 200, body = Vec<Vec<f32>>), (status = 400), (status = 404), (status = 422)))]
pub async fn embed(
    State(state): State<AppState>,
    Json(req, _): Json<EmbedRequest, Tei>,
) -> Result<(HeaderMap, axum::Json<Vec<Vec<f32>>>), Error> {
    let truncation_side = truncation_side(req.truncation_direction.as_deref())?;
    let texts = shared::parse_texts(req.inputs, "inputs", &state.limits)?;
    let target = state.target(req.model.as_deref(), None)?;
    let job = EmbedJob {
        inputs: Inputs::Texts(texts),
        opts: EmbedOptions {
            normalize: req.normalize.unwrap_or(true),
            truncate: req.truncate.unwrap_or(true),
            truncation_side,
            prompt_name: req.prompt_name,
            dimensions: req.dimensions,
            ..EmbedOptions::default()
        },
        ..EmbedJob::default()
    };
    let out = state.embed(&target, job).await?;
    Ok((
        shared::timing_headers(&out),
        axum::Json(out.embeddings.iter().map(<[f32]>::to_vec).collect()),
    ))
}

/// The default model's description, in TEI's `Info` shape.
#[utoipa::path(get, operation_id = "tei_info", path = "/info", tag = "tei",
    responses((status = 200, description = "TEI's `Info`: model_id, max_input_length, ..."), (status = 404)))]
pub async fn info(State(state): State<AppState>) -> Result<axum::Json<Value>, Error> {
    // From the catalog: nothing is loaded. Only a model directory's entry, which does not know
    // its length limit, asks the model (loaded if it is not yet).
    let target = state.target(None, None)?;
    let spec = &target.spec;
    let (max_input_length, pooling) = if spec.max_seq_length > 0 {
        (spec.max_seq_length, spec.pooling)
    } else {
        let model = shared::lease(&state, &target).await?;
        (model.info().max_seq_length, model.info().pooling)
    };
    let pooling = serde_json::to_value(pooling).unwrap_or(Value::Null);
    Ok(axum::Json(json!({
        "model_id": spec.hub_repo.clone().unwrap_or_else(|| spec.id.clone()),
        "model_sha": spec.revision,
        "model_dtype": target.key.dtype.as_str(),
        "model_type": {"embedding": {"pooling": pooling}},
        "max_concurrent_requests": null,
        "max_input_length": max_input_length,
        "max_batch_tokens": null,
        "max_batch_requests": null,
        "max_client_batch_size": state.limits.max_client_batch,
        "auto_truncate": true,
        "tokenization_workers": null,
        "version": env!("CARGO_PKG_VERSION"),
        "sha": null,
        "docker_label": null,
    })))
}

/// Tokenizes `inputs` with the model's tokenizer (no truncation).
#[utoipa::path(post, operation_id = "tei_tokenize", path = "/tokenize", tag = "tei", request_body = TokenizeRequest,
    responses((status = 200, body = Vec<Vec<Token>>), (status = 400), (status = 404)))]
pub async fn tokenize(
    State(state): State<AppState>,
    Json(req, _): Json<TokenizeRequest, Tei>,
) -> Result<axum::Json<Vec<Vec<Token>>>, Error> {
    let texts = shared::parse_texts(req.inputs, "inputs", &state.limits)?;
    let target = state.target(req.model.as_deref(), None)?;
    let model = shared::lease(&state, &target).await?;
    let prompt = match &req.prompt_name {
        None => String::new(),
        Some(name) => model.info().prompts.get(name).cloned().ok_or_else(|| {
            ApiError::invalid_field(
                "prompt_name",
                format!(
                    "unknown `prompt_name` `{name}` for model `{}`; known: {}",
                    model.id(),
                    model
                        .info()
                        .prompts
                        .keys()
                        .cloned()
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
            )
        })?,
    };
    let keep_special = req.add_special_tokens.unwrap_or(true);
    let out = tokio::task::spawn_blocking(move || {
        let tok = model.tokenizer();
        texts
            .iter()
            .map(|t| {
                let tokens = tok.tokens(&format!("{prompt}{t}"))?;
                Ok(tokens
                    .into_iter()
                    .filter(|t| keep_special || !t.special)
                    .map(|t| Token {
                        id: t.id,
                        text: t.text,
                        special: t.special,
                        start: t.offsets.map(|o| o.0),
                        stop: t.offsets.map(|o| o.1),
                    })
                    .collect())
            })
            .collect::<Result<Vec<_>, ember_core::Error>>()
    })
    .await
    .map_err(|e| ApiError::internal(format!("tokenize task failed: {e}")))??;
    Ok(axum::Json(out))
}
