//! Dynamic batching, as TEI's router does it: one bounded queue and one worker thread per
//! (model id, dtype). Handlers enqueue a job with a `oneshot` reply; the worker takes whatever has
//! queued up while the previous batch ran, up to a token budget and a request count, and runs it
//! as one embedding call. Nothing waits on a timer to fill a batch: under load the queue fills
//! while the model is busy, at low load a request runs alone at once.
//!
//! Each job is tokenized once, by the worker, with its own options (prompt, truncation, length
//! limit): the encodings count against the token budget and then go to the model as they are.
//! Per-text results do not depend on batch mates: the core sorts all of the batch's encodings by
//! length and pads each forward pass to its longest member with masked padding, and the options
//! applied after pooling (`normalize`, `dimensions`) are applied here per job with the core's
//! own function.

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc::{sync_channel, Receiver, RecvTimeoutError, SyncSender, TrySendError};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use axum::http::StatusCode;
use ember_core::manager::Key;
use ember_core::{Embedder, Embeddings, Encoded, ModelManager};
use tokio::sync::oneshot;

use crate::engine::{EmbedJob, EmbedOutput, Timings};
use crate::error::ApiError;
use crate::metrics::Metrics;

/// Bounds of the batch queues.
#[derive(Debug, Clone)]
pub struct BatchConfig {
    /// Most tokens (summed over inputs) coalesced into one batch; a single larger request still
    /// runs, alone.
    pub max_batch_tokens: usize,
    /// Most requests coalesced into one batch.
    pub max_batch_requests: usize,
    /// Sequences per forward pass.
    pub max_batch_size: usize,
    /// Requests that may wait in one model's queue; one more is answered 429.
    pub queue_size: usize,
    /// A worker with nothing to do for this long stops (it restarts on the next request).
    pub idle: Duration,
}

impl Default for BatchConfig {
    fn default() -> Self {
        Self {
            max_batch_tokens: 16384,
            max_batch_requests: 256,
            max_batch_size: 64,
            queue_size: 1024,
            idle: Duration::from_secs(60),
        }
    }
}

type Reply = Result<EmbedOutput, ApiError>;

struct Pending {
    job: EmbedJob,
    enqueued: Instant,
    reply: oneshot::Sender<Reply>,
}

struct Queue {
    tx: SyncSender<Pending>,
    depth: Arc<AtomicUsize>,
}

struct Shared {
    manager: Arc<ModelManager>,
    metrics: Metrics,
    config: BatchConfig,
    queues: Mutex<HashMap<Key, Queue>>,
    /// While true, workers start no new batch (tests use it to make queues fill up
    /// deterministically).
    paused: Mutex<bool>,
    resumed: Condvar,
}

/// The batch queues of every model. Cheap to clone (shared).
#[derive(Clone)]
pub struct Batcher {
    shared: Arc<Shared>,
}

impl std::fmt::Debug for Batcher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Batcher")
            .field("config", &self.shared.config)
            .finish_non_exhaustive()
    }
}

impl Batcher {
    pub fn new(manager: Arc<ModelManager>, metrics: Metrics, config: BatchConfig) -> Self {
        Self {
            shared: Arc::new(Shared {
                manager,
                metrics,
                config,
                queues: Mutex::new(HashMap::new()),
                paused: Mutex::new(false),
                resumed: Condvar::new(),
            }),
        }
    }

    /// The queue bounds in force.
    pub fn config(&self) -> &BatchConfig {
        &self.shared.config
    }

    /// Queues `job` for model `key`; the receiver gets the answer. A full queue is a 429.
    pub fn submit(&self, key: Key, job: EmbedJob) -> Result<oneshot::Receiver<Reply>, ApiError> {
        let (tx, rx) = oneshot::channel();
        let mut pending = Pending {
            job,
            enqueued: Instant::now(),
            reply: tx,
        };
        let mut queues = self
            .shared
            .queues
            .lock()
            .map_err(|_| ApiError::internal("batch queues poisoned"))?;
        // Two tries: a worker that died (it only does on a panic) is replaced once.
        for _ in 0..2 {
            if !queues.contains_key(&key) {
                let q = self.spawn_worker(&key)?;
                queues.insert(key.clone(), q);
            }
            let Some(q) = queues.get(&key) else { break };
            // Counted before sending so the worker's decrement never runs first.
            q.depth.fetch_add(1, Ordering::AcqRel);
            match q.tx.try_send(pending) {
                Ok(()) => return Ok(rx),
                Err(TrySendError::Full(_)) => {
                    q.depth.fetch_sub(1, Ordering::AcqRel);
                    self.shared.metrics.rejected("queue_full");
                    return Err(ApiError {
                        status: StatusCode::TOO_MANY_REQUESTS,
                        kind: "queue_full",
                        message: format!(
                            "the queue of model `{}` ({}) is full: {} requests are waiting \
                             (--queue-size); retry later",
                            key.0, key.1, self.shared.config.queue_size
                        ),
                    });
                }
                Err(TrySendError::Disconnected(p)) => {
                    pending = p;
                    queues.remove(&key);
                }
            }
        }
        Err(ApiError::internal(format!(
            "the worker of model `{}` ({}) could not be started",
            key.0, key.1
        )))
    }

    fn spawn_worker(&self, key: &Key) -> Result<Queue, ApiError> {
        let (tx, rx) = sync_channel(self.shared.config.queue_size.max(1));
        let depth = Arc::new(AtomicUsize::new(0));
        let worker = Worker {
            shared: self.shared.clone(),
            key: key.clone(),
            rx,
            depth: depth.clone(),
        };
        std::thread::Builder::new()
            .name(format!("ember-batch-{}", key.0))
            .spawn(move || worker.run())
            .map_err(|e| ApiError::internal(format!("cannot start a model worker thread: {e}")))?;
        tracing::debug!(model = %key.0, dtype = %key.1, "batch worker started");
        Ok(Queue { tx, depth })
    }

    /// Holds (`true`) or releases (`false`) every worker before its next batch; jobs keep
    /// queueing meanwhile, up to the queue bound. Meant for tests of batching and overload.
    pub fn set_paused(&self, paused: bool) {
        if let Ok(mut p) = self.shared.paused.lock() {
            *p = paused;
        }
        self.shared.resumed.notify_all();
    }

    /// (model, dtype, requests waiting) for every live queue.
    pub fn depths(&self) -> Vec<(String, String, usize)> {
        let Ok(queues) = self.shared.queues.lock() else {
            return Vec::new();
        };
        let mut out: Vec<_> = queues
            .iter()
            .map(|(k, q)| {
                (
                    k.0.clone(),
                    k.1.to_string(),
                    q.depth.load(Ordering::Acquire),
                )
            })
            .collect();
        out.sort();
        out
    }
}

struct Worker {
    shared: Arc<Shared>,
    key: Key,
    rx: Receiver<Pending>,
    depth: Arc<AtomicUsize>,
}

/// A job checked and tokenized against the loaded model.
struct Prepared {
    pending: Pending,
    encoded: Vec<Encoded>,
    tokens: usize,
    tokenize: Duration,
}

impl Worker {
    fn run(self) {
        let mut carry: Option<Pending> = None;
        loop {
            let first = match carry.take() {
                Some(p) => p,
                None => match self.rx.recv_timeout(self.shared.config.idle) {
                    Ok(p) => {
                        self.depth.fetch_sub(1, Ordering::AcqRel);
                        p
                    }
                    Err(RecvTimeoutError::Timeout) => {
                        self.retire();
                        continue;
                    }
                    Err(RecvTimeoutError::Disconnected) => return,
                },
            };
            self.wait_while_paused();
            // A panic inside the model must not take the queue down with it: the batch's
            // callers get a 500 (their reply senders drop) and the worker goes on.
            let step = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| self.batch(first)));
            match step {
                Ok(next) => carry = next,
                Err(_) => {
                    tracing::error!(model = %self.key.0, "a batch panicked; its requests failed")
                }
            }
        }
    }

    /// Removes this worker's queue from the map when idle; senders only send while holding the
    /// map's lock, so after this nothing new arrives and `recv` ends once the buffer is empty.
    fn retire(&self) {
        if let Ok(mut queues) = self.shared.queues.lock() {
            let ours = queues
                .get(&self.key)
                .is_some_and(|q| Arc::ptr_eq(&q.depth, &self.depth));
            if ours && self.depth.load(Ordering::Acquire) == 0 {
                queues.remove(&self.key);
                tracing::debug!(model = %self.key.0, "batch worker idle, stopped");
            }
        }
    }

    fn wait_while_paused(&self) {
        let Ok(mut paused) = self.shared.paused.lock() else {
            return;
        };
        while *paused {
            match self.shared.resumed.wait(paused) {
                Ok(p) => paused = p,
                Err(_) => return,
            }
        }
    }

    fn next_queued(&self) -> Option<Pending> {
        let p = self.rx.try_recv().ok()?;
        self.depth.fetch_sub(1, Ordering::AcqRel);
        Some(p)
    }

    /// Runs one batch starting with `first`; returns a job that did not fit, for the next one.
    fn batch(&self, first: Pending) -> Option<Pending> {
        let cfg = &self.shared.config;
        let manager = &self.shared.manager;
        let started = Instant::now();
        let model = match manager.acquire(Some(&self.key.0), Some(self.key.1)) {
            Ok(m) => m,
            Err(e) => {
                // Everything queued during the failed load would fail the same way; answering
                // them now avoids one load attempt per request. A failed load is not cached, so
                // the queue is emptied before anyone is answered: a request sent after a caller
                // saw this error must try the load again, not get the stale error.
                let e = ApiError::from(e);
                let queued: Vec<Pending> = std::iter::from_fn(|| self.next_queued()).collect();
                for p in std::iter::once(first).chain(queued) {
                    let _ = p.reply.send(Err(copy(&e)));
                }
                return None;
            }
        };
        let load = started.elapsed();
        let key = (model.id().to_string(), model.info().dtype);

        let mut batch: Vec<Prepared> = Vec::new();
        let mut tokens = 0usize;
        let mut carry = None;
        let mut next = Some(first);
        while let Some(p) = next.take().or_else(|| self.next_queued()) {
            if p.reply.is_closed() {
                self.shared.metrics.rejected("client_gone");
                continue;
            }
            if batch.len() >= cfg.max_batch_requests {
                carry = Some(p);
                break;
            }
            let tokenizing = Instant::now();
            match model.tokenize(&p.job.texts, &p.job.opts) {
                Err(e) => {
                    let _ = p.reply.send(Err(e.into()));
                }
                Ok(encoded) => {
                    let prep = Prepared {
                        pending: p,
                        tokens: encoded.iter().map(|e| e.ids.len()).sum(),
                        encoded,
                        tokenize: tokenizing.elapsed(),
                    };
                    if !batch.is_empty() && tokens + prep.tokens > cfg.max_batch_tokens {
                        carry = Some(prep.pending);
                        break;
                    }
                    tokens += prep.tokens;
                    batch.push(prep);
                }
            }
        }
        for prep in &batch {
            if let Some(k) = prep.pending.job.keep_alive {
                let _ = manager.set_keep_alive(&key, k);
            }
            let waited = started.duration_since(prep.pending.enqueued);
            self.shared.metrics.queue_time(&key.0, waited);
        }
        if !batch.is_empty() {
            self.execute(&model, batch, tokens, load);
        }
        drop(model);
        manager.finished(&key);
        carry
    }

    /// Embeds the whole batch in one core call and answers each job.
    fn execute(&self, model: &Embedder, batch: Vec<Prepared>, tokens: usize, load: Duration) {
        let batch_size = self.shared.config.max_batch_size.max(1);
        let requests = batch.len();
        let mut encoded = Vec::with_capacity(batch.iter().map(|p| p.encoded.len()).sum());
        let mut jobs = Vec::with_capacity(batch.len());
        for mut prep in batch {
            let rows = prep.encoded.len();
            encoded.append(&mut prep.encoded);
            jobs.push((prep, rows));
        }
        let texts = encoded.len();
        let started = Instant::now();
        match model.embed_encoded(&encoded, batch_size) {
            Ok(raw) => {
                let inference = started.elapsed();
                let dim = model.dimension();
                let mut row = 0usize;
                for (prep, rows) in jobs {
                    let part = &raw[row * dim..(row + rows) * dim];
                    row += rows;
                    answer(model, prep, part, inference, load);
                }
            }
            Err(e) => {
                // Each job was checked while tokenizing; a failure here is the model's. Every
                // job of the batch gets it.
                tracing::error!(model = %model.id(), error = %e, "a batch failed");
                let e = ApiError::from(e);
                for (prep, _) in jobs {
                    let _ = prep.pending.reply.send(Err(copy(&e)));
                }
            }
        }
        self.shared.metrics.batch(
            model.id(),
            requests,
            texts,
            tokens,
            texts.div_ceil(batch_size),
        );
    }
}

/// Answers one job from its rows of the batch's raw (unnormalized, full-width) vectors.
fn answer(model: &Embedder, prep: Prepared, raw: &[f32], inference: Duration, load: Duration) {
    let opts = &prep.pending.job.opts;
    let dim = model.dimension();
    let (dimension, data) = model.finish(raw, opts);
    let embeddings = Embeddings {
        model: model.id().to_string(),
        dimension,
        data,
        rows: raw.len() / dim.max(1),
        prompt_tokens: prep.tokens,
        tokenize_time: prep.tokenize,
        inference_time: inference,
    };
    let total = prep.pending.enqueued.elapsed();
    let timings = Timings {
        queue: total.saturating_sub(prep.tokenize + inference + load),
        tokenize: prep.tokenize,
        inference,
        load,
        total,
    };
    let _ = prep.pending.reply.send(Ok(EmbedOutput {
        embeddings,
        timings,
    }));
}

/// `ApiError` holds a `&'static str` kind and a message; copies go to every waiter of a failure.
fn copy(e: &ApiError) -> ApiError {
    ApiError {
        status: e.status,
        kind: e.kind,
        message: e.message.clone(),
    }
}
