//! Ember's native API: `POST /api/v1/embed`, `GET /api/v1/models`, `GET /api/v1/models/{id}`,
//! `POST /api/v1/models/{id}/load` and `DELETE /api/v1/models/{id}`.

use std::collections::HashMap;

use axum::body::Bytes;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode};
use ember_core::{EmbedOptions, ModelStatus, Precision};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::ToSchema;

use super::shared::{self, Vector};
use crate::engine::EmbedJob;
use crate::error::ApiError;
use crate::json::{Json, Path};
use crate::AppState;

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
    Json(req, _): Json<EmbedRequest>,
) -> Result<(HeaderMap, axum::Json<EmbedResponse>), ApiError> {
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
    let mut prompt_name = req.prompt_name;
    if let Some(kind) = req.input_type.as_deref() {
        if prompt_name.is_some() {
            return Err(ApiError::invalid(
                "pass either `input_type` or `prompt_name`, not both",
            ));
        }
        let model = shared::acquire(&state, req.model.as_deref(), dtype).await?;
        let info = model.info();
        prompt_name = Some(shared::prompt_for_input_type(
            &info.id,
            info.prompts.keys().cloned(),
            kind,
        )?);
    }
    let job = EmbedJob {
        model: req.model,
        dtype,
        keep_alive,
        texts,
        opts: EmbedOptions {
            normalize: req.normalize.unwrap_or(true),
            dimensions: req.dimensions,
            prompt_name,
            instruction: req.instruction,
            truncate: req.truncate.unwrap_or(true),
            ..EmbedOptions::default()
        },
    };
    let served_dtype = match dtype {
        Some(d) => d,
        None => state
            .manager
            .default_dtype(&state.manager.spec(job.model.as_deref())?),
    };
    let out = state.embed(job).await?;
    let headers = shared::timing_headers(&out);
    let e = &out.embeddings;
    Ok((
        headers,
        axum::Json(EmbedResponse {
            model: e.model.clone(),
            dimension: e.dimension,
            dtype: served_dtype.to_string(),
            precision: format!("{precision:?}").to_lowercase(),
            embeddings: shared::vectors(e, precision, base64)?,
            usage: Usage {
                prompt_tokens: e.prompt_tokens,
                total_tokens: e.prompt_tokens,
            },
        }),
    ))
}

/// The catalog with each model's load state, dtype, bytes held, last use and keep-alive.
#[utoipa::path(get, operation_id = "native_list_models", path = "/api/v1/models", tag = "native",
    responses((status = 200, description = "`{default_model, models: [...]}`")))]
pub async fn list_models(State(state): State<AppState>) -> Result<axum::Json<Value>, ApiError> {
    let models: Vec<ModelStatus> = state.manager.status()?.into_iter().map(public).collect();
    let default = state.manager.spec(None)?.id;
    Ok(axum::Json(
        serde_json::json!({"default_model": default, "models": models}),
    ))
}

/// `status` as callers see it: a load failure's message without file-system paths.
fn public(mut status: ModelStatus) -> ModelStatus {
    status.error = status.error.map(|e| crate::error::redact_paths(&e));
    status
}

fn status_json(status: ModelStatus) -> Result<axum::Json<Value>, ApiError> {
    serde_json::to_value(public(status))
        .map(axum::Json)
        .map_err(|e| ApiError::internal(format!("cannot serialize model status: {e}")))
}

/// One model's catalog entry and load state.
#[utoipa::path(get, operation_id = "native_get_model", path = "/api/v1/models/{id}", tag = "native",
    params(("id" = String, Path, description = "Model id or alias (may contain `/`)")),
    responses((status = 200, description = "The model's status"), (status = 404)))]
pub async fn get_model(
    State(state): State<AppState>,
    Path(id, _): Path<String>,
) -> Result<axum::Json<Value>, ApiError> {
    status_json(state.manager.model_status(&id)?)
}

/// Loads a model now (body: `dtype`, `keep_alive`, both optional) and returns its status.
#[utoipa::path(post, operation_id = "native_load_model", path = "/api/v1/models/{id}/load", tag = "native",
    params(("id" = String, Path, description = "Model id or alias")),
    request_body(content = LoadRequest, description = "Optional"),
    responses((status = 200, description = "The model's status after loading"), (status = 404)))]
pub async fn load_model(
    State(state): State<AppState>,
    Path(path, _): Path<String>,
    body: Bytes,
) -> Result<axum::Json<Value>, ApiError> {
    // Ids may contain `/`, so the route is a wildcard and the action its last segment.
    let Some(id) = path.strip_suffix("/load") else {
        return Err(ApiError::no_route(&format!("/api/v1/models/{path}")));
    };
    let req: LoadRequest = if body.iter().all(u8::is_ascii_whitespace) {
        LoadRequest::default()
    } else {
        serde_json::from_slice(&body).map_err(|e| ApiError {
            kind: "invalid_json",
            ..ApiError::invalid(format!("invalid load request body: {e}"))
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
        (status = 400, description = "Pinned model"), (status = 404)))]
pub async fn unload_model(
    State(state): State<AppState>,
    Path(id, _): Path<String>,
    Query(query): Query<HashMap<String, String>>,
) -> Result<(StatusCode, axum::Json<Value>), ApiError> {
    let dtype = shared::parse_dtype(query.get("dtype").map(String::as_str))?;
    let spec = state.manager.spec(Some(&id))?;
    let n = state.manager.unload(&id, dtype)?;
    Ok((
        StatusCode::OK,
        axum::Json(serde_json::json!({"id": spec.id, "unloaded": n})),
    ))
}
