//! The worker of one (model, dtype) queue: it takes whatever has queued up, up to the batch
//! bounds, tokenizes each job with its own options, runs the batch as one embedding call under
//! a lease on the model, and answers each job from its rows.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc::{Receiver, RecvTimeoutError};
use std::sync::Arc;
use std::time::{Duration, Instant};

use ember_core::manager::Key;
use ember_core::{Embedder, Embeddings, Encoded};

use super::{Pending, Shared};
use crate::engine::{EmbedOutput, Inputs, Timings};
use crate::error::ApiError;

pub(super) struct Worker {
    pub(super) shared: Arc<Shared>,
    pub(super) key: Key,
    pub(super) rx: Receiver<Pending>,
    pub(super) depth: Arc<AtomicUsize>,
}

/// A job checked and tokenized against the loaded model.
struct Prepared {
    pending: Pending,
    encoded: Vec<Encoded>,
    tokens: usize,
    tokenize: Duration,
}

impl Worker {
    pub(super) fn run(self) {
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
            if let Some(gate) = &self.shared.config.gate {
                gate.pass();
            }
            // A panic inside the model must not take the queue down with it: the batch's
            // callers get a 500 (their reply senders drop) and the worker goes on.
            let step = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| self.batch(first)));
            match step {
                Ok(next) => carry = next,
                Err(_) => {
                    tracing::error!(model = %self.key.model, "a batch panicked; its requests failed")
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
                tracing::debug!(model = %self.key.model, "batch worker idle, stopped");
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
        let waiting = 1 + self.depth.load(Ordering::Acquire);
        self.shared.metrics.queued(&self.key.model, waiting);
        let model = match manager.lease_key(&self.key) {
            Ok(m) => m,
            Err(e) => {
                // Everything queued during the failed load would fail the same way; answering
                // them now avoids one load attempt per request. A failed load is not cached, so
                // the queue is emptied before anyone is answered: a request sent after a caller
                // saw this error must try the load again, not get the stale error.
                let e = ApiError::from(e);
                let queued: Vec<Pending> = std::iter::from_fn(|| self.next_queued()).collect();
                for p in std::iter::once(first).chain(queued) {
                    let _ = p.reply.send(Err(e.clone()));
                }
                return None;
            }
        };
        let load = started.elapsed();

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
            let encoded = match &p.job.inputs {
                Inputs::Texts(texts) => model.tokenize(texts, &p.job.opts),
                Inputs::Ids(rows) => model.tokenize_ids(rows, &p.job.opts),
            };
            match encoded {
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
                model.set_keep_alive(k);
            }
            let waited = started.duration_since(prep.pending.enqueued);
            self.shared.metrics.queue_time(&self.key.model, waited);
        }
        if !batch.is_empty() {
            self.execute(&model, batch, tokens, load);
        }
        // Dropping the lease ends this use: last use refreshed, keep-alive 0 applied.
        drop(model);
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
        let result = model.embed_encoded(&encoded, batch_size);
        let inference = started.elapsed();
        // Counted before anyone is answered: a caller that scrapes /metrics right after its
        // reply must already see the batch that served it.
        self.shared.metrics.batch(
            model.id(),
            requests,
            texts,
            tokens,
            texts.div_ceil(batch_size),
        );
        match result {
            Ok(raw) => {
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
                    let _ = prep.pending.reply.send(Err(e.clone()));
                }
            }
        }
    }
}

/// Answers one job from its rows of the batch's raw (unnormalized, full-width) vectors.
fn answer(model: &Embedder, prep: Prepared, raw: &[f32], inference: Duration, load: Duration) {
    let opts = &prep.pending.job.opts;
    let dim = model.dimension();
    let (dimension, data) = model.finish(raw, opts);
    let embeddings = Embeddings {
        model: model.id().to_string(),
        dtype: model.info().dtype,
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
