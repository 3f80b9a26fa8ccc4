//! The one path from an HTTP handler to the model: every dialect builds an [`EmbedJob`] and awaits
//! [`AppState::embed`]. Model work runs off the async runtime.

use std::time::{Duration, Instant};

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
    pub queue: Duration,
    pub tokenize: Duration,
    pub inference: Duration,
    /// Loading the model, when this request caused (or waited for) a load.
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
    /// Runs `job` on a blocking worker thread.
    pub async fn embed(&self, job: EmbedJob) -> Result<EmbedOutput, ApiError> {
        let manager = self.manager.clone();
        let queued = Instant::now();
        let out = tokio::task::spawn_blocking(move || {
            let queue = queued.elapsed();
            let loaded = Instant::now();
            // Acquire first, so load time is separated from inference time.
            let model = manager.acquire(job.model.as_deref(), job.dtype)?;
            let load = loaded.elapsed();
            drop(model);
            let embeddings = manager.embed_keep_alive(
                job.model.as_deref(),
                job.dtype,
                job.keep_alive,
                &job.texts,
                &job.opts,
            )?;
            Ok::<_, ember_core::Error>(EmbedOutput {
                timings: Timings {
                    queue,
                    tokenize: embeddings.tokenize_time,
                    inference: embeddings.inference_time,
                    load,
                    total: queued.elapsed(),
                },
                embeddings,
            })
        })
        .await
        .map_err(|e| ApiError::internal(format!("embedding task failed: {e}")))??;
        Ok(out)
    }
}
