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
//! own function. The worker is in `worker.rs`.

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc::{sync_channel, SyncSender, TrySendError};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use ember_core::manager::Key;
use ember_core::ModelManager;
use tokio::sync::oneshot;

use crate::engine::{EmbedJob, EmbedOutput};
use crate::error::{ApiError, ApiErrorKind};
use crate::metrics::Metrics;

mod worker;

use worker::Worker;

/// Bounds of the batch queues.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(default, deny_unknown_fields)]
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
    #[serde(skip)]
    pub idle: Duration,
    /// A gate the workers pass before each batch (tests hold batches back with it); none by
    /// default, and then no lock is taken.
    #[serde(skip)]
    pub gate: Option<Gate>,
}

/// Holds batch workers back while closed, so tests can fill queues deterministically.
#[derive(Debug, Clone, Default)]
pub struct Gate(Arc<(Mutex<bool>, Condvar)>);

impl PartialEq for Gate {
    fn eq(&self, other: &Self) -> bool {
        Arc::ptr_eq(&self.0, &other.0)
    }
}

impl Gate {
    /// Workers wait before their next batch until [`Gate::open`].
    pub fn close(&self) {
        if let Ok(mut closed) = self.0 .0.lock() {
            *closed = true;
        }
    }

    /// Lets every worker go on.
    pub fn open(&self) {
        if let Ok(mut closed) = self.0 .0.lock() {
            *closed = false;
        }
        self.0 .1.notify_all();
    }

    fn pass(&self) {
        let Ok(mut closed) = self.0 .0.lock() else {
            return;
        };
        while *closed {
            match self.0 .1.wait(closed) {
                Ok(c) => closed = c,
                Err(_) => return,
            }
        }
    }
}

impl Default for BatchConfig {
    fn default() -> Self {
        Self {
            max_batch_tokens: 16384,
            max_batch_requests: 256,
            max_batch_size: 64,
            queue_size: 1024,
            idle: Duration::from_secs(60),
            gate: None,
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
                    return Err(ApiError::new(
                        ApiErrorKind::QueueFull,
                        format!(
                            "the queue of model `{}` ({}) is full: {} requests are waiting \
                             (--queue-size); retry later",
                            key.model, key.dtype, self.shared.config.queue_size
                        ),
                    ));
                }
                Err(TrySendError::Disconnected(p)) => {
                    pending = p;
                    queues.remove(&key);
                }
            }
        }
        Err(ApiError::internal(format!(
            "the worker of model `{}` ({}) could not be started",
            key.model, key.dtype
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
            .name(format!("ember-batch-{}", key.model))
            .spawn(move || worker.run())
            .map_err(|e| ApiError::internal(format!("cannot start a model worker thread: {e}")))?;
        tracing::debug!(model = %key.model, dtype = %key.dtype, "batch worker started");
        Ok(Queue { tx, depth })
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
                    k.model.clone(),
                    k.dtype.to_string(),
                    q.depth.load(Ordering::Acquire),
                )
            })
            .collect();
        out.sort();
        out
    }
}
