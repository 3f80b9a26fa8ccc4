//! The options `Embedder.identity` and `Embedder.chunk` share (a task or a prompt), and the
//! conversion of the core's byte offsets to Python string offsets.

use ember_core::{EmbedOptions, Embedder, InputType};
use pyo3::prelude::*;

use crate::errors::{invalid_input, IntoPyException};

/// Embedding options for `input_type` (`query` / `document`: the prompt that task picks, none
/// when the model has no such prompt) or an explicit `prompt_name` / `prompt`.
pub(crate) fn task_options(
    model: &Embedder,
    base: EmbedOptions,
    input_type: Option<&str>,
    prompt_name: Option<String>,
    prompt: Option<String>,
) -> PyResult<EmbedOptions> {
    let mut opts = EmbedOptions {
        prompt_name,
        prompt,
        ..base
    };
    if let Some(kind) = input_type {
        if opts.prompt_name.is_some() || opts.prompt.is_some() {
            return Err(invalid_input(
                "pass either `input_type` or `prompt_name` / `prompt`, not both",
            ));
        }
        let kind: InputType = kind.parse().map_err(IntoPyException::into_exception)?;
        opts.prompt_name = model.prompt_name_for(kind).map(str::to_string);
    }
    model
        .check_options(&opts)
        .map_err(IntoPyException::into_exception)?;
    Ok(opts)
}

/// The prompt name `input_type` ("query" or "document") picks among a model's `prompts` (names),
/// or None: the rule `Embedder.encode_query` / `encode_document` and `ember index` follow, for
/// callers that know a model only by its catalog entry (a remote server's).
///
/// >>> ember._native.prompt_name_for(["passage", "query"], "document")
/// 'passage'
#[pyfunction]
pub(crate) fn prompt_name_for(prompts: Vec<String>, input_type: &str) -> PyResult<Option<String>> {
    let kind: InputType = input_type
        .parse()
        .map_err(IntoPyException::into_exception)?;
    Ok(kind
        .pick(|n| prompts.iter().any(|p| p == n))
        .map(str::to_string))
}
