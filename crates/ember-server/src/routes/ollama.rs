//! Ollama-compatible routes: `POST /api/embed`, legacy `POST /api/embeddings`, `GET /api/tags`,
//! `GET /api/ps`, `GET /api/version`. Errors are `{"error": "..."}`, as Ollama answers them, for
//! every path under `/api/` but `/api/v1`. Bodies are read as JSON whatever their content type,
//! as Ollama reads them.

use axum::extract::{OriginalUri, State};
use axum::http::{HeaderMap, StatusCode};
use axum::routing::{get, post};
use axum::Router;
use ember_core::manager::LoadState;
use ember_core::{EmbedOptions, ModelStatus};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use utoipa::openapi::Components;
use utoipa::{OpenApi, ToSchema};

use super::shared;
use super::Api;
use crate::engine::{EmbedJob, Inputs};
use crate::error::{ApiError, ApiErrorKind, Dialect, DialectError};
use crate::json::AnyJson;
use crate::AppState;

/// Ollama's API.
#[derive(Debug, Clone, Copy)]
pub struct Ollama;

type Error = DialectError<Ollama>;

/// The error body: `{"error": "..."}`.
impl Dialect for Ollama {
    fn body(e: &ApiError) -> Value {
        json!({"error": e.message})
    }
}

impl Api for Ollama {
    const TAG: &'static str = "ollama";
    const DESCRIPTION: &'static str = "Ollama-compatible embeddings";

    fn routes(_: &AppState) -> Router<AppState> {
        let api = Router::new()
            .route("/embed", post(embed))
            .route("/embeddings", post(embeddings))
            .route("/tags", get(tags))
            .route("/ps", get(ps))
            .route("/version", get(version))
            .method_not_allowed_fallback(wrong_method)
            .fallback(no_route);
        Router::new().nest("/api", api)
    }

    fn paths() -> utoipa::openapi::OpenApi {
        Doc::openapi()
    }

    fn error_schema(components: &mut Components) -> String {
        use utoipa::PartialSchema;
        components
            .schemas
            .insert(OllamaError::name().into_owned(), OllamaError::schema());
        OllamaError::name().into_owned()
    }
}

#[derive(OpenApi)]
#[openapi(
    paths(embed, embeddings, tags, ps, version),
    components(schemas(EmbedRequest, EmbedResponse, EmbeddingsRequest, EmbeddingsResponse))
)]
struct Doc;

/// Ollama's error body.
#[derive(ToSchema)]
#[allow(dead_code)]
struct OllamaError {
    error: String,
}

async fn no_route(OriginalUri(uri): OriginalUri) -> Error {
    ApiError::no_route(
        uri.path(),
        "Ollama-compatible routes are POST /api/embed, POST /api/embeddings, GET /api/tags, \
         GET /api/ps and GET /api/version",
    )
    .into()
}

async fn wrong_method(OriginalUri(uri): OriginalUri) -> Error {
    ApiError::method_not_allowed(uri.path()).into()
}

/// The Ollama API level these routes follow (clients check it to pick features).
pub const OLLAMA_API_VERSION: &str = "0.12.0";

/// Body of `POST /api/embed`.
#[derive(Debug, Deserialize, ToSchema)]
#[schema(as = OllamaEmbedRequest)]
pub struct EmbedRequest {
    /// Model name (`all-minilm`, `all-minilm:latest`, or any Ember id or alias).
    #[serde(default)]
    pub model: Option<String>,
    /// A string or a list of strings (an empty string or list gives no vectors).
    #[schema(value_type = shared::OllamaInput, inline)]
    pub input: Value,
    /// Cut inputs over the context length (default true); false makes a too-long input an error.
    #[serde(default)]
    pub truncate: Option<bool>,
    /// Matryoshka truncation to this many dimensions (then normalized).
    #[serde(default)]
    pub dimensions: Option<usize>,
    /// How long the model stays loaded: a duration (`"5m"`, `"-1"`) or seconds.
    #[serde(default)]
    #[schema(value_type = Option<shared::KeepAliveValue>, inline)]
    pub keep_alive: Option<Value>,
    /// Runner options; accepted and ignored.
    #[serde(default)]
    #[schema(value_type = Option<Object>)]
    pub options: Option<Value>,
    /// Ember extension: an INSTRUCTOR instruction, prepended to every input and left out of the
    /// mean pooling (for `instructor-base` / `-large`).
    #[serde(default)]
    pub instruction: Option<String>,
}

/// Response of `POST /api/embed`.
#[derive(Debug, Serialize, ToSchema)]
#[schema(as = OllamaEmbedResponse)]
pub struct EmbedResponse {
    pub model: String,
    /// L2-normalized vectors, one per input.
    pub embeddings: Vec<Vec<f32>>,
    /// Nanoseconds.
    pub total_duration: u64,
    /// Nanoseconds spent loading the model.
    pub load_duration: u64,
    pub prompt_eval_count: usize,
}

/// Body of the legacy `POST /api/embeddings`.
#[derive(Debug, Deserialize, ToSchema)]
#[schema(as = OllamaEmbeddingsRequest)]
pub struct EmbeddingsRequest {
    #[serde(default)]
    pub model: Option<String>,
    /// One text.
    pub prompt: String,
    #[serde(default)]
    #[schema(value_type = Option<shared::KeepAliveValue>, inline)]
    pub keep_alive: Option<Value>,
    #[serde(default)]
    #[schema(value_type = Option<Object>)]
    pub options: Option<Value>,
}

/// Response of the legacy `POST /api/embeddings`: one vector, not normalized.
#[derive(Debug, Serialize, ToSchema)]
#[schema(as = OllamaEmbeddingsResponse)]
pub struct EmbeddingsResponse {
    pub embedding: Vec<f32>,
}

fn nanos(d: std::time::Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
}

/// Ollama's wording for an input over the context length with `truncate: false` (a 400).
fn ollama_error(e: ApiError) -> Error {
    if e.kind == ApiErrorKind::InputTooLong {
        let message = format!("the input length exceeds the context length: {}", e.message);
        return ApiError { message, ..e }
            .with_status(StatusCode::BAD_REQUEST)
            .into();
    }
    e.into()
}

/// Embeds one or more inputs, always L2-normalized.
#[utoipa::path(post, operation_id = "ollama_embed", path = "/api/embed", tag = "ollama", request_body = EmbedRequest,
    responses((status = 200, body = EmbedResponse), (status = 400), (status = 404)))]
pub async fn embed(
    State(state): State<AppState>,
    AnyJson(req, _): AnyJson<EmbedRequest, Ollama>,
) -> Result<(HeaderMap, axum::Json<EmbedResponse>), Error> {
    let keep_alive = shared::parse_keep_alive(req.keep_alive.as_ref())?;
    // As Ollama: an empty string or list gives no vectors (the model must still exist).
    let empty = match &req.input {
        Value::String(s) => s.is_empty(),
        Value::Array(a) => a.is_empty(),
        _ => false,
    };
    let target = state.target(req.model.as_deref(), None)?;
    let name = req.model.clone().unwrap_or_else(|| target.spec.id.clone());
    if empty {
        return Ok((
            HeaderMap::new(),
            axum::Json(EmbedResponse {
                model: name,
                embeddings: vec![],
                total_duration: 0,
                load_duration: 0,
                prompt_eval_count: 0,
            }),
        ));
    }
    let texts = shared::parse_texts(req.input, "input", &state.limits)?;
    let job = EmbedJob {
        keep_alive,
        inputs: Inputs::Texts(texts),
        opts: EmbedOptions {
            normalize: true,
            dimensions: req.dimensions,
            truncate: req.truncate.unwrap_or(true),
            instruction: req.instruction,
            ..EmbedOptions::default()
        },
    };
    let out = state.embed(&target, job).await.map_err(ollama_error)?;
    let e = &out.embeddings;
    Ok((
        shared::timing_headers(&out),
        axum::Json(EmbedResponse {
            model: name,
            embeddings: e.iter().map(<[f32]>::to_vec).collect(),
            total_duration: nanos(out.timings.total),
            load_duration: nanos(out.timings.load),
            prompt_eval_count: e.prompt_tokens,
        }),
    ))
}

/// Legacy single-prompt embedding (not normalized, as Ollama's).
#[utoipa::path(post, operation_id = "ollama_embeddings", path = "/api/embeddings", tag = "ollama", request_body = EmbeddingsRequest,
    responses((status = 200, body = EmbeddingsResponse), (status = 400), (status = 404)))]
pub async fn embeddings(
    State(state): State<AppState>,
    AnyJson(req, _): AnyJson<EmbeddingsRequest, Ollama>,
) -> Result<(HeaderMap, axum::Json<EmbeddingsResponse>), Error> {
    let keep_alive = shared::parse_keep_alive(req.keep_alive.as_ref())?;
    let target = state.target(req.model.as_deref(), None)?;
    if req.prompt.is_empty() {
        return Ok((
            HeaderMap::new(),
            axum::Json(EmbeddingsResponse { embedding: vec![] }),
        ));
    }
    let texts = vec![req.prompt];
    shared::check_texts(&texts, "prompt", &state.limits)?;
    let job = EmbedJob {
        keep_alive,
        inputs: Inputs::Texts(texts),
        opts: EmbedOptions {
            normalize: false,
            ..EmbedOptions::default()
        },
    };
    let out = state.embed(&target, job).await.map_err(ollama_error)?;
    Ok((
        shared::timing_headers(&out),
        axum::Json(EmbeddingsResponse {
            embedding: out.embeddings.row(0).to_vec(),
        }),
    ))
}

/// An RFC 3339 UTC timestamp for milliseconds since the Unix epoch.
fn rfc3339(ms: u64) -> String {
    let secs = ms / 1000;
    let (days, rem) = (secs / 86_400, secs % 86_400);
    // Howard Hinnant's civil_from_days.
    let z = days as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{:03}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60,
        ms % 1000
    )
}

fn model_entry(m: &ModelStatus) -> Value {
    let s = &m.spec;
    json!({
        "name": s.id,
        "model": s.id,
        "modified_at": rfc3339(m.instances.iter().map(|i| i.loaded_at_ms).max().unwrap_or(0)),
        "size": m.bytes.max((s.size_mb * 1e6) as usize),
        "digest": "",
        "details": {
            "parent_model": "",
            "format": "safetensors",
            "family": s.architecture,
            "families": [s.architecture],
            "parameter_size": format!("{:.0}M", s.parameters_m),
            "quantization_level": m.dtype.as_str().to_uppercase(),
        },
    })
}

/// The servable models, as Ollama lists local models.
#[utoipa::path(get, operation_id = "ollama_tags", path = "/api/tags", tag = "ollama",
    responses((status = 200, description = "`{models: [{name, model, size, details, ...}]}`")))]
pub async fn tags(State(state): State<AppState>) -> Result<axum::Json<Value>, Error> {
    let models: Vec<Value> = state
        .manager
        .status()
        .map_err(ApiError::from)?
        .iter()
        .filter(|m| m.spec.supported)
        .map(model_entry)
        .collect();
    Ok(axum::Json(json!({ "models": models })))
}

/// The loaded models, with bytes held and when they expire.
#[utoipa::path(get, operation_id = "ollama_ps", path = "/api/ps", tag = "ollama",
    responses((status = 200, description = "`{models: [{name, model, size, expires_at, ...}]}`")))]
pub async fn ps(State(state): State<AppState>) -> Result<axum::Json<Value>, Error> {
    let mut models = Vec::new();
    for m in state.manager.status().map_err(ApiError::from)? {
        for inst in m.instances.iter().filter(|i| i.state == LoadState::Loaded) {
            let mut entry = model_entry(&m);
            entry["size"] = json!(inst.bytes);
            entry["size_vram"] = json!(0);
            entry["details"]["quantization_level"] = json!(inst.dtype.as_str().to_uppercase());
            // Ollama shows a far-future date for models kept forever.
            entry["expires_at"] = json!(rfc3339(inst.expires_at_ms.unwrap_or(253_402_300_799_000)));
            models.push(entry);
        }
    }
    Ok(axum::Json(json!({ "models": models })))
}

/// The Ollama API version these routes follow.
#[utoipa::path(get, operation_id = "ollama_version", path = "/api/version", tag = "ollama",
    responses((status = 200, description = "`{version}`")))]
pub async fn version() -> axum::Json<Value> {
    axum::Json(json!({"version": OLLAMA_API_VERSION, "ember": env!("CARGO_PKG_VERSION")}))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc3339_formats_utc() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00.000Z");
        assert_eq!(rfc3339(1_700_000_000_123), "2023-11-14T22:13:20.123Z");
        assert_eq!(rfc3339(253_402_300_799_000), "9999-12-31T23:59:59.000Z");
    }
}
