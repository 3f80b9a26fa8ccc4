//! `POST /api/v1/chunk`: cuts texts into windows of an embedder's own tokens, with overlap, as
//! `ember index --chunk-tokens` and Python's `Embedder.chunk` do, so a client that embeds through
//! the server (`ember index --server URL --chunk-tokens N`) gets the very chunks an in-process run
//! makes without loading the model itself. Offsets are in characters (Unicode code points), the
//! indices Python's `str` slices with.
//!
//! A window plus the special tokens and the prompt must fit the model's limit (a 400 naming the
//! largest window that fits); without `chunk_tokens` the window is that largest one.

use axum::extract::State;
use ember_core::{Chunk, EmbedOptions};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::ToSchema;

use super::{Error, Native, Usage};
use crate::json::Json;
use crate::routes::shared;
use crate::tasks::Task;
use crate::AppState;

/// Body of `POST /api/v1/chunk`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ChunkRequest {
    /// A string or a list of strings.
    #[schema(value_type = shared::TextInput, inline)]
    pub input: Value,
    /// The embedder whose tokens count (the default model when absent).
    #[serde(default)]
    pub model: Option<String>,
    /// Which loaded copy to use (tokens do not depend on it; naming the dtype requests are
    /// served in avoids loading another copy).
    #[serde(default)]
    #[schema(value_type = Option<shared::DTypeName>, inline)]
    pub dtype: Option<String>,
    /// Content tokens per window; the largest that fits the model's limit when absent.
    #[serde(default)]
    pub chunk_tokens: Option<usize>,
    /// Tokens each window shares with the one before (default 0, below `chunk_tokens`).
    #[serde(default)]
    pub chunk_overlap: Option<usize>,
    /// The prompt the chunks will be embedded with (its tokens count against the limit).
    #[serde(default)]
    pub prompt_name: Option<String>,
    /// `query` or `document`: the model's prompt for that input type, as on the embed route.
    #[serde(default)]
    #[schema(value_type = Option<shared::InputTypeName>, inline)]
    pub input_type: Option<String>,
    /// Also return each chunk's text (default false).
    #[serde(default)]
    pub return_text: Option<bool>,
}

/// One window of a text.
#[derive(Debug, Serialize, ToSchema)]
pub struct ChunkSpan {
    /// Character offset of the chunk's first character.
    pub start: usize,
    /// Character offset just past its last character.
    pub end: usize,
    /// Content tokens in the chunk (special tokens and prompt left out).
    pub tokens: usize,
    /// The chunk's text, with `return_text`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub text: Option<String>,
}

/// Response of `POST /api/v1/chunk`.
#[derive(Debug, Serialize, ToSchema)]
pub struct ChunkResponse {
    pub model: String,
    /// The window used.
    pub chunk_tokens: usize,
    pub chunk_overlap: usize,
    /// Per input, its chunks in order (a text that fits is one chunk; an empty text one empty
    /// chunk).
    pub chunks: Vec<Vec<ChunkSpan>>,
    /// Content tokens of all inputs.
    pub usage: Usage,
}

/// Cuts texts into windows of the model's tokens, with overlap, as `ember index --chunk-tokens`
/// does; offsets in characters.
#[utoipa::path(post, operation_id = "native_chunk", path = "/api/v1/chunk", tag = "native", request_body = ChunkRequest,
    responses((status = 200, body = ChunkResponse), (status = 400), (status = 404), (status = 413)))]
pub async fn chunk(
    State(state): State<AppState>,
    Json(req, _): Json<ChunkRequest, Native>,
) -> Result<axum::Json<ChunkResponse>, Error> {
    let texts = shared::parse_texts(req.input, "input", &state.limits)?;
    let dtype = shared::parse_dtype(req.dtype.as_deref())?;
    let input_type =
        shared::parse_prompt_choice(req.input_type.as_deref(), req.prompt_name.as_deref())?;
    let opts = EmbedOptions {
        prompt_name: req.prompt_name,
        input_type,
        ..EmbedOptions::default()
    };
    let overlap = req.chunk_overlap.unwrap_or(0);
    let with_text = req.return_text.unwrap_or(false);
    let target = state.target(req.model.as_deref(), dtype)?;
    let asked = req.chunk_tokens;
    let out = state
        .run_task(&target, Task::Chunk, move |m| {
            let window = match asked {
                Some(n) => n,
                None => m.max_chunk_tokens(&opts)?,
            };
            let (mut chunks, mut tokens) = (Vec::with_capacity(texts.len()), 0);
            for text in &texts {
                let spans = Chunk::in_chars(text, &m.chunk(text, window, overlap, &opts)?);
                tokens += content_tokens(&spans, window - overlap);
                chunks.push(spans_of(text, &spans, with_text));
            }
            Ok(ChunkResponse {
                model: m.id().to_string(),
                chunk_tokens: window,
                chunk_overlap: overlap,
                chunks,
                usage: Usage {
                    prompt_tokens: tokens,
                    total_tokens: tokens,
                },
            })
        })
        .await?;
    Ok(axum::Json(out))
}

/// `spans` (character offsets of `text`) as the response gives them.
fn spans_of(text: &str, spans: &[Chunk], with_text: bool) -> Vec<ChunkSpan> {
    let chars: Vec<char> = if with_text {
        text.chars().collect()
    } else {
        Vec::new()
    };
    spans
        .iter()
        .map(|c| ChunkSpan {
            start: c.start,
            end: c.end,
            tokens: c.tokens,
            text: with_text.then(|| chars[c.start..c.end].iter().collect()),
        })
        .collect()
}

/// A text's content tokens from its windows, each token counted once: windows start `step`
/// tokens apart, so all but the last contribute `step`.
fn content_tokens(spans: &[Chunk], step: usize) -> usize {
    match spans.split_last() {
        Some((last, rest)) => rest.len() * step + last.tokens,
        None => 0,
    }
}
