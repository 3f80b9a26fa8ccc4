//! TEI's `POST /embed_all`: the last hidden state of an embedder, one vector per token (special
//! tokens kept, padding removed, not normalized), in TEI's shape `[[[f32; dim]; tokens]; inputs]`,
//! as sentence-transformers' `output_value="token_embeddings"` gives them. For late interaction
//! and late chunking. A reranker or sparse encoder asked for them is a 400 naming its kind.

use axum::extract::State;
use ember_core::EmbedOptions;
use serde::Deserialize;
use serde_json::Value;
use utoipa::ToSchema;

use super::{truncation_side, Error, Tei};
use crate::json::Json;
use crate::routes::shared;
use crate::tasks::Task;
use crate::AppState;

/// Texts per forward pass.
const BATCH: usize = 32;

/// Body of `POST /embed_all`.
#[derive(Debug, Deserialize, ToSchema)]
#[schema(as = TeiEmbedAllRequest)]
pub struct EmbedAllRequest {
    /// A string or a list of strings.
    #[schema(value_type = shared::TextInput, inline)]
    pub inputs: Value,
    /// Ember extension: the embedder to use (the default model when absent).
    #[serde(default)]
    pub model: Option<String>,
    /// Cut inputs over the model's limit (default true).
    #[serde(default)]
    pub truncate: Option<bool>,
    /// `Right` (default: keep the beginning) or `Left` (keep the end).
    #[serde(default)]
    pub truncation_direction: Option<String>,
    /// A key of the model's prompts, prepended to each input (its tokens are returned too).
    #[serde(default)]
    pub prompt_name: Option<String>,
}

/// Per-token vectors of each input: `[inputs][tokens][dimension]`.
#[utoipa::path(post, operation_id = "tei_embed_all", path = "/embed_all", tag = "tei", request_body = EmbedAllRequest,
    responses((status = 200, body = Vec<Vec<Vec<f32>>>), (status = 400), (status = 404), (status = 413)))]
pub async fn embed_all(
    State(state): State<AppState>,
    Json(req, _): Json<EmbedAllRequest, Tei>,
) -> Result<axum::Json<Vec<Vec<Vec<f32>>>>, Error> {
    let truncation_side = truncation_side(req.truncation_direction.as_deref())?;
    let texts = shared::parse_texts(req.inputs, "inputs", &state.limits)?;
    let opts = EmbedOptions {
        truncate: req.truncate.unwrap_or(true),
        truncation_side,
        prompt_name: req.prompt_name,
        ..EmbedOptions::default()
    };
    let target = state.target(req.model.as_deref(), None)?;
    let out = state
        .run_task(&target, Task::TokenEmbeddings, move |m| {
            let encoded = m.tokenize(&texts, &opts)?;
            let rows = m.token_embeddings_encoded(&encoded, BATCH)?;
            Ok(encoded
                .iter()
                .zip(rows)
                .map(|(e, flat)| {
                    let dim = flat.len() / e.ids.len().max(1);
                    flat.chunks_exact(dim.max(1)).map(<[f32]>::to_vec).collect()
                })
                .collect())
        })
        .await?;
    Ok(axum::Json(out))
}
