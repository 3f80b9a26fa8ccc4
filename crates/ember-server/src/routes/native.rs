//! Ember's native API: `POST /api/v1/embed`, `GET /api/v1/models`, `GET /api/v1/models/{id}`.

use axum::extract::{Path, State};
use ember_core::EmbedOptions;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::engine::EmbedJob;
use crate::error::ApiError;
use crate::json::Json;
use crate::AppState;

/// Body of `POST /api/v1/embed`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EmbedRequest {
    /// A string or a list of strings.
    pub input: Value,
    /// Model id or alias; the default model when absent.
    #[serde(default)]
    pub model: Option<String>,
    /// L2-normalize (default true).
    #[serde(default)]
    pub normalize: Option<bool>,
    /// Matryoshka truncation.
    #[serde(default)]
    pub dimensions: Option<usize>,
    /// A key of the model's prompts.
    #[serde(default)]
    pub prompt_name: Option<String>,
    /// Cut inputs over the model's limit (default true).
    #[serde(default)]
    pub truncate: Option<bool>,
}

/// Token usage, as OpenAI reports it.
#[derive(Debug, Serialize, Deserialize)]
pub struct Usage {
    pub prompt_tokens: usize,
    pub total_tokens: usize,
}

/// Response of `POST /api/v1/embed`.
#[derive(Debug, Serialize, Deserialize)]
pub struct EmbedResponse {
    pub model: String,
    pub dimension: usize,
    pub embeddings: Vec<Vec<f32>>,
    pub usage: Usage,
}

/// Checks `input` is a string or a non-empty list of strings, naming the first bad element.
pub fn parse_input(input: Value, max_inputs: usize) -> Result<Vec<String>, ApiError> {
    let texts = match input {
        Value::String(s) => vec![s],
        Value::Array(items) => {
            if items.is_empty() {
                return Err(ApiError::invalid(
                    "`input` is an empty list; send at least one string",
                ));
            }
            items
                .into_iter()
                .enumerate()
                .map(|(i, v)| match v {
                    Value::String(s) => Ok(s),
                    other => Err(ApiError::invalid(format!(
                        "`input[{i}]` must be a string, got {}",
                        type_name(&other)
                    ))),
                })
                .collect::<Result<Vec<_>, _>>()?
        }
        other => {
            return Err(ApiError::invalid(format!(
                "`input` must be a string or a list of strings, got {}",
                type_name(&other)
            )))
        }
    };
    if texts.len() > max_inputs {
        return Err(ApiError {
            status: axum::http::StatusCode::PAYLOAD_TOO_LARGE,
            kind: "too_many_inputs",
            message: format!(
                "`input` has {} items; this server accepts at most {max_inputs} per request",
                texts.len()
            ),
        });
    }
    Ok(texts)
}

fn type_name(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "a list",
        Value::Object(_) => "an object",
    }
}

/// `POST /api/v1/embed`.
pub async fn embed(
    State(state): State<AppState>,
    Json(req): Json<EmbedRequest>,
) -> Result<axum::Json<EmbedResponse>, ApiError> {
    let texts = parse_input(req.input, state.limits.max_client_batch)?;
    let job = EmbedJob {
        model: req.model,
        texts,
        opts: EmbedOptions {
            normalize: req.normalize.unwrap_or(true),
            dimensions: req.dimensions,
            prompt_name: req.prompt_name,
            truncate: req.truncate.unwrap_or(true),
            ..EmbedOptions::default()
        },
        ..EmbedJob::default()
    };
    let out = state.embed(job).await?.embeddings;
    Ok(axum::Json(EmbedResponse {
        model: out.model.clone(),
        dimension: out.dimension,
        embeddings: out.iter().map(<[f32]>::to_vec).collect(),
        usage: Usage {
            prompt_tokens: out.prompt_tokens,
            total_tokens: out.prompt_tokens,
        },
    }))
}

/// `GET /api/v1/models`: the catalog, each entry with whether it is loaded.
pub async fn list_models(State(state): State<AppState>) -> Result<axum::Json<Value>, ApiError> {
    let models = state.manager.status()?;
    let default = state.manager.spec(None)?.id;
    Ok(axum::Json(
        serde_json::json!({"default_model": default, "models": models}),
    ))
}

/// `GET /api/v1/models/{id}`.
pub async fn get_model(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<axum::Json<Value>, ApiError> {
    let status = state.manager.model_status(&id)?;
    Ok(axum::Json(serde_json::to_value(status).map_err(|e| {
        ApiError {
            status: axum::http::StatusCode::INTERNAL_SERVER_ERROR,
            kind: "internal",
            message: e.to_string(),
        }
    })?))
}
