//! The one path from an HTTP handler to the model. A handler resolves its request's model once
//! ([`AppState::target`]: the catalog entry and the (model, dtype) key, nothing loaded), builds
//! an [`EmbedJob`] and awaits [`AppState::embed`], which queues the job on that key's batch
//! queue ([`crate::batching::Batcher`]) and awaits the reply. Model work never runs on the async
//! runtime.

use std::time::Duration;

use ember_core::manager::Target;
use ember_core::{DType, EmbedOptions, Embeddings, KeepAlive};

use crate::error::ApiError;
use crate::AppState;

/// What a job embeds.
#[derive(Debug, Clone)]
pub enum Inputs {
    /// Texts, tokenized by the worker with the job's options.
    Texts(Vec<String>),
    /// The model's own token ids, taken as they are (special tokens added as for text).
    Ids(Vec<Vec<u32>>),
}

impl Default for Inputs {
    fn default() -> Self {
        Inputs::Texts(Vec::new())
    }
}

/// One embedding request, whatever dialect it came in.
#[derive(Debug, Clone, Default)]
pub struct EmbedJob {
    /// Keep-alive to set on the model (Ollama's `keep_alive`).
    pub keep_alive: Option<KeepAlive>,
    pub inputs: Inputs,
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

/// Vectors (tagged with the model and dtype that made them) and timings of one job.
#[derive(Debug, Clone)]
pub struct EmbedOutput {
    pub embeddings: Embeddings,
    pub timings: Timings,
}

impl AppState {
    /// The catalog entry and (model, dtype) key a request for `model` / `dtype` uses, from one
    /// catalog lookup; nothing is loaded. An unknown model fails here (404).
    pub fn target(&self, model: Option<&str>, dtype: Option<DType>) -> Result<Target, ApiError> {
        let target = self.manager.target(model, dtype)?;
        crate::metrics::note_model(&target.key.model);
        Ok(target)
    }

    /// Queues `job` on `target`'s batch queue and awaits its vectors; a full queue is a 429
    /// (the server adds `Retry-After`).
    pub async fn embed(&self, target: &Target, job: EmbedJob) -> Result<EmbedOutput, ApiError> {
        crate::metrics::note_task(crate::tasks::Task::Embed.label());
        let reply = self.batcher.submit(target.key.clone(), job)?;
        reply.await.map_err(|_| {
            ApiError::internal("the model worker stopped before answering this request")
        })?
    }
}
