//! Rerank, classification, sparse and per-token requests. A handler resolves its model once
//! ([`AppState::target`]), then [`AppState::run_task`] notes the [`Task`] for the request
//! metrics and checks the catalog's kind before anything loads (an embedder asked to rerank, or a reranker asked to embed, is a 400 naming the model's
//! kind) and runs the core call under a lease on a blocking thread: model work never runs on the
//! async runtime. Each request's pairs or texts are batched by length inside the core call.
//!
//! [`parse_documents`] reads a rerank's documents (strings, or `{"text": ...}` objects as
//! Cohere and Jina send them) against the server's limits.

use ember_core::manager::Target;
use ember_core::{Embedder, KeepAlive, ModelKind};
use serde_json::Value;

use crate::error::{ApiError, ApiErrorKind};
use crate::routes::shared::{check_texts, type_name};
use crate::{AppState, Limits};

/// What a request asks of a model: the model kind it needs, the name errors give it and the
/// `task` label of the request metrics.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Task {
    /// Dense vectors (through the batch queues, not [`AppState::run_task`]).
    Embed,
    /// A cross-encoder's ranking of documents against a query.
    Rerank,
    /// A classifier's scores per label.
    Predict,
    /// SPLADE vectors.
    Sparse,
    /// Per-token vectors of the last hidden state.
    TokenEmbeddings,
    /// Token windows of texts (an embedder's tokens, for the chunks it will embed).
    Chunk,
}

impl Task {
    /// The model kind this task runs on.
    pub fn kind(self) -> ModelKind {
        match self {
            Task::Embed | Task::TokenEmbeddings | Task::Chunk => ModelKind::Embedder,
            Task::Rerank | Task::Predict => ModelKind::Reranker,
            Task::Sparse => ModelKind::Sparse,
        }
    }

    /// The task as errors name it (``…; rerank needs a reranker``).
    pub fn described(self) -> &'static str {
        match self {
            Task::Embed => "embed",
            Task::Rerank => "rerank",
            Task::Predict => "predict",
            Task::Sparse => "sparse embedding",
            Task::TokenEmbeddings => "token embeddings",
            Task::Chunk => "chunking",
        }
    }

    /// The `task` label of the request metrics.
    pub fn label(self) -> &'static str {
        match self {
            Task::Embed => "embed",
            Task::Rerank => "rerank",
            Task::Predict => "predict",
            Task::Sparse => "sparse",
            Task::TokenEmbeddings => "token_embeddings",
            Task::Chunk => "chunk",
        }
    }
}

impl AppState {
    /// Runs `f` on `target`'s model once the catalog lists it as the kind `task` needs (a 400
    /// naming the model's kind otherwise), under a lease on a blocking thread.
    pub async fn run_task<T, F>(&self, target: &Target, task: Task, f: F) -> Result<T, ApiError>
    where
        T: Send + 'static,
        F: FnOnce(&Embedder) -> ember_core::Result<T> + Send + 'static,
    {
        self.run_task_with(target, task, None, f).await
    }

    /// [`run_task`](Self::run_task) that also sets the model's keep-alive (a request's
    /// `keep_alive`), counted from the end of this use.
    pub async fn run_task_with<T, F>(
        &self,
        target: &Target,
        task: Task,
        keep_alive: Option<KeepAlive>,
        f: F,
    ) -> Result<T, ApiError>
    where
        T: Send + 'static,
        F: FnOnce(&Embedder) -> ember_core::Result<T> + Send + 'static,
    {
        crate::metrics::note_task(task.label());
        if target.spec.kind != task.kind() {
            return Err(ember_core::Error::WrongKind {
                model: target.spec.id.clone(),
                kind: target.spec.kind,
                task: task.described(),
                wanted: task.kind(),
            }
            .into());
        }
        let manager = self.manager.clone();
        let key = target.key.clone();
        tokio::task::spawn_blocking(move || {
            let model = manager.lease_key(&key)?;
            if let Some(k) = keep_alive {
                model.set_keep_alive(k);
            }
            f(&model)
        })
        .await
        .map_err(|e| ApiError::internal(format!("{} task failed: {e}", task.described())))?
        .map_err(ApiError::from)
    }
}

/// A rerank's `documents` (named `field`): strings or `{"text": "..."}` objects, at least one,
/// at most `--max-rerank-documents` (413 naming the limit), within the character limits.
pub fn parse_documents(
    documents: Value,
    field: &str,
    limits: &Limits,
) -> Result<Vec<String>, ApiError> {
    let Value::Array(items) = documents else {
        return Err(ApiError::invalid_field(
            field.to_string(),
            format!(
                "`{field}` must be a list of strings or of {{\"text\": ...}} objects, got {}",
                type_name(&documents)
            ),
        ));
    };
    if items.is_empty() {
        return Err(ApiError::new(
            ApiErrorKind::Empty,
            format!("`{field}` is an empty list; send at least one document"),
        )
        .with_field(field.to_string()));
    }
    if items.len() > limits.max_rerank_documents {
        return Err(ApiError::new(
            ApiErrorKind::TooManyInputs,
            format!(
                "`{field}` has {} documents; this server reranks at most {} per request \
                 (--max-rerank-documents)",
                items.len(),
                limits.max_rerank_documents
            ),
        )
        .with_field(field.to_string()));
    }
    let texts = items
        .into_iter()
        .enumerate()
        .map(|(i, v)| match v {
            Value::String(s) => Ok(s),
            Value::Object(mut o) => match o.remove("text") {
                Some(Value::String(s)) => Ok(s),
                _ => Err(ApiError::invalid_field(
                    format!("{field}[{i}].text"),
                    format!("`{field}[{i}]` is an object without a string `text`"),
                )),
            },
            other => Err(ApiError::invalid_field(
                format!("{field}[{i}]"),
                format!(
                    "`{field}[{i}]` must be a string or a {{\"text\": ...}} object, got {}",
                    type_name(&other)
                ),
            )),
        })
        .collect::<Result<Vec<_>, _>>()?;
    check_texts(&texts, field, limits)?;
    Ok(texts)
}
