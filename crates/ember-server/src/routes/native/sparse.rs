//! The native embed route's two outputs. `"output": "dense"` (the default) is the pooled vector
//! of an embedder; `"output": "sparse"` is a sparse encoder's (SPLADE) vector per input, as
//! `{indices, values}` by increasing index, only the `top_k` largest when asked (`input_type:
//! "query"` takes an inference-free model's query route). The kind is checked from the catalog
//! before anything loads, both ways: a sparse request to an embedder, or a dense one to a sparse
//! encoder or a reranker, is a 400 naming the model's kind. Options of one output sent with the
//! other are refused naming the field, never silently dropped.

use ember_core::manager::Target;
use ember_core::{InputType, ModelKind, SparseOptions};
use serde::Serialize;
use utoipa::ToSchema;

use super::{EmbedRequest, Usage};
use crate::error::ApiError;
use crate::routes::shared;
use crate::tasks::Task;
use crate::AppState;

/// What `POST /api/v1/embed` computes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Output {
    /// Pooled vectors of an embedder.
    Dense,
    /// A sparse encoder's vocabulary weights.
    Sparse,
}

impl Output {
    /// The request's `output`: `dense` (default) or `sparse`.
    pub fn parse(output: Option<&str>) -> Result<Self, ApiError> {
        match output {
            None | Some("dense") => Ok(Output::Dense),
            Some("sparse") => Ok(Output::Sparse),
            Some(other) => Err(ApiError::invalid_field(
                "output",
                format!("unknown `output` `{other}`; use `dense` (the default) or `sparse`"),
            )),
        }
    }
}

/// One input's sparse vector: its nonzero entries, by increasing index.
#[derive(Debug, Serialize, ToSchema)]
pub struct SparseEmbedding {
    /// Vocabulary indices, increasing.
    pub indices: Vec<u32>,
    /// The weight at each index.
    pub values: Vec<f32>,
}

/// Response of `POST /api/v1/embed` with `"output": "sparse"`.
#[derive(Debug, Serialize, ToSchema)]
pub struct SparseEmbedResponse {
    pub model: String,
    /// The vocabulary size: every index is below it.
    pub dimension: usize,
    /// The dtype that served the request.
    pub dtype: String,
    /// `sparse`.
    pub output: String,
    /// One vector per input.
    pub embeddings: Vec<SparseEmbedding>,
    pub usage: Usage,
}

/// A dense request's model must be an embedder: anything else is a 400 naming its kind (for a
/// sparse encoder, with the output to ask for), before anything loads.
pub fn require_dense(target: &Target) -> Result<(), ApiError> {
    let spec = &target.spec;
    crate::metrics::note_task(Task::Embed.label());
    if spec.kind == ModelKind::Embedder {
        return Ok(());
    }
    let mut e = ApiError::from(ember_core::Error::WrongKind {
        model: spec.id.clone(),
        kind: spec.kind,
        task: "dense output",
        wanted: ModelKind::Embedder,
    });
    if spec.kind == ModelKind::Sparse {
        e.message
            .push_str("; send `\"output\": \"sparse\"` for its sparse vectors");
    }
    Err(e)
}

/// `top_k` is sparse output's alone.
pub fn refuse_sparse_options(req: &EmbedRequest) -> Result<(), ApiError> {
    match req.top_k {
        Some(_) => Err(ApiError::invalid_field(
            "top_k",
            "`top_k` applies to sparse output only (`\"output\": \"sparse\"`)",
        )),
        None => Ok(()),
    }
}

/// The dense options a sparse request may not carry.
fn refuse_dense_options(req: &EmbedRequest) -> Result<(), ApiError> {
    let sent = [
        ("normalize", req.normalize.is_some()),
        ("dimensions", req.dimensions.is_some()),
        ("prompt_name", req.prompt_name.is_some()),
        ("instruction", req.instruction.is_some()),
        ("encoding_format", req.encoding_format.is_some()),
        ("precision", req.precision.is_some()),
    ];
    match sent.into_iter().find(|(_, set)| *set) {
        Some((field, _)) => Err(ApiError::invalid_field(
            field,
            format!(
                "`{field}` applies to dense output only; a sparse request takes `input`, \
                 `model`, `dtype`, `input_type`, `truncate`, `top_k` and `keep_alive`"
            ),
        )),
        None => Ok(()),
    }
}

/// Sparse vectors of the request's inputs with the named (or default) sparse encoder.
pub async fn embed(state: AppState, req: EmbedRequest) -> Result<SparseEmbedResponse, ApiError> {
    refuse_dense_options(&req)?;
    if req.top_k == Some(0) {
        return Err(ApiError::invalid_field(
            "top_k",
            "`top_k` must be at least 1",
        ));
    }
    let texts = shared::parse_texts(req.input, "input", &state.limits)?;
    let dtype = shared::parse_dtype(req.dtype.as_deref())?;
    let keep_alive = shared::parse_keep_alive(req.keep_alive.as_ref())?;
    let input_type = shared::parse_input_type(req.input_type.as_deref())?;
    let opts = SparseOptions {
        top_k: req.top_k,
        query: input_type == Some(InputType::Query),
        truncate: req.truncate.unwrap_or(true),
        ..SparseOptions::default()
    };
    let target = state.target(req.model.as_deref(), dtype)?;
    let out = state
        .run_task_with(&target, Task::Sparse, keep_alive, move |m| {
            m.embed_sparse(&texts, &opts)
        })
        .await?;
    Ok(SparseEmbedResponse {
        model: out.model,
        dimension: out.dimension,
        dtype: target.key.dtype.to_string(),
        output: "sparse".into(),
        embeddings: out
            .vectors
            .into_iter()
            .map(|v| SparseEmbedding {
                indices: v.indices,
                values: v.values,
            })
            .collect(),
        usage: Usage {
            prompt_tokens: out.prompt_tokens,
            total_tokens: out.prompt_tokens,
        },
    })
}
