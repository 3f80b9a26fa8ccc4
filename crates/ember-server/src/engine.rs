//! The one path from an HTTP handler to the model: every dialect builds an [`EmbedJob`] and awaits
//! [`AppState::embed`], which queues the job on its model's batch queue
//! ([`crate::batching::Batcher`]) and awaits the reply. Model work never runs on the async
//! runtime.

use std::time::Duration;

use ember_core::{DType, EmbedOptions, Embeddings, KeepAlive};

use crate::error::ApiError;
use crate::AppState;

/// One embedding request, whatever dialect it came in.
#[derive(Debug, Clone, Default)]
pub struct EmbedJob {
    /// Model id or alias; the default model when `None`.
    pub model: Option<String>,
    /// Weight dtype; the model's default when `None`.
    pub dtype: Option<DType>,
    /// Keep-alive to set on the model (Ollama's `keep_alive`).
    pub keep_alive: Option<KeepAlive>,
    pub texts: Vec<String>,
    pub opts: EmbedOptions,
}

/// Time spent in each stage, reported in response headers.
#[derive(Debug, Clone, Copy, Default)]
pub struct Timings {
    /// Waiting in the model's queue (includes waiting for the batch before it to finish).
    pub queue: Duration,
    /// Tokenizing the batch this request ran in.
    pub tokenize: Duration,
    /// Forward passes and pooling of the batch this request ran in.
    pub inference: Duration,
    /// Loading the model, when this request's batch caused (or waited for) a load.
    pub load: Duration,
    pub total: Duration,
}

/// Vectors and timings of one job.
#[derive(Debug, Clone)]
pub struct EmbedOutput {
    pub embeddings: Embeddings,
    pub timings: Timings,
}

impl AppState {
    /// Queues `job` on its model's batch queue and awaits its vectors. An unknown model fails
    /// here (404) without queueing; a full queue is a 429 (the server adds `Retry-After`).
    pub async fn embed(&self, job: EmbedJob) -> Result<EmbedOutput, ApiError> {
        let spec = self.manager.spec(job.model.as_deref())?;
        let dtype = job
            .dtype
            .unwrap_or_else(|| self.manager.default_dtype(&spec));
        crate::metrics::note_model(&spec.id);
        let reply = self.batcher.submit((spec.id, dtype), job)?;
        reply.await.map_err(|_| {
            ApiError::internal("the model worker stopped before answering this request")
        })?
    }
}
