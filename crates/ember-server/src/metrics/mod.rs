//! Prometheus metrics: counters and histograms the server records, rendered by hand in the text
//! exposition format (version 0.0.4) at `GET /metrics`, together with the batch queues' depths
//! and the model manager's series (`manager.rs`) read at scrape time. The same calls feed the
//! per-model time buckets the web page charts ([`crate::traffic`]).

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use ember_core::ModelManager;

use crate::traffic::Traffic;

mod manager;

tokio::task_local! {
    /// The model a request was served by and the task it asked of it, filled in by the engine so
    /// the request counter can be labelled by both (the middleware that counts requests does
    /// not parse bodies).
    pub static REQUEST_MODEL: Arc<Mutex<Served>>;
}

/// What served the current request, as far as it got.
#[derive(Debug, Clone, Default)]
pub struct Served {
    /// The catalog id of the model.
    pub model: Option<String>,
    /// The task's label (`embed`, `rerank`, `predict`, `sparse`, `token_embeddings`).
    pub task: Option<&'static str>,
}

/// Records the model serving the current request, if a request scope is active.
pub fn note_model(model: &str) {
    let _ = REQUEST_MODEL.try_with(|slot| {
        if let Ok(mut m) = slot.lock() {
            m.model = Some(model.to_string());
        }
    });
}

/// Records the task (its metrics label) the current request asks, if a request scope is active.
pub fn note_task(task: &'static str) {
    let _ = REQUEST_MODEL.try_with(|slot| {
        if let Ok(mut m) = slot.lock() {
            m.task = Some(task);
        }
    });
}

/// Latency buckets in seconds (1 ms to 30 s).
const LATENCY_BUCKETS: [f64; 14] = [
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
];
/// Requests per batch and sequences per batch.
const COUNT_BUCKETS: [f64; 10] = [1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0, 256.0, 512.0];
/// Tokens per batch.
const TOKEN_BUCKETS: [f64; 9] = [
    16.0, 64.0, 256.0, 1024.0, 2048.0, 4096.0, 8192.0, 16384.0, 65536.0,
];

#[derive(Debug, Clone)]
struct Histogram {
    bounds: &'static [f64],
    counts: Vec<u64>,
    sum: f64,
    count: u64,
}

impl Histogram {
    fn new(bounds: &'static [f64]) -> Self {
        Self {
            bounds,
            counts: vec![0; bounds.len()],
            sum: 0.0,
            count: 0,
        }
    }

    fn observe(&mut self, v: f64) {
        for (b, c) in self.bounds.iter().zip(self.counts.iter_mut()) {
            if v <= *b {
                *c += 1;
            }
        }
        self.sum += v;
        self.count += 1;
    }
}

/// Label sets are kept pre-rendered (`route="/x",status="200"`), sorted for stable output.
type Labels = String;

#[derive(Debug, Default)]
struct Inner {
    counters: BTreeMap<&'static str, BTreeMap<Labels, u64>>,
    histograms: BTreeMap<&'static str, BTreeMap<Labels, Histogram>>,
}

/// Everything the server counts itself. Cheap to clone (shared).
#[derive(Debug, Clone, Default)]
pub struct Metrics {
    inner: Arc<Mutex<Inner>>,
    traffic: Arc<Traffic>,
}

/// Renders `k="v"` pairs, escaping as the exposition format asks.
pub fn labels(pairs: &[(&str, &str)]) -> Labels {
    let mut out = String::new();
    for (i, (k, v)) in pairs.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        let v = v
            .replace('\\', "\\\\")
            .replace('"', "\\\"")
            .replace('\n', "\\n");
        let _ = write!(out, "{k}=\"{v}\"");
    }
    out
}

impl Metrics {
    /// Adds `by` to counter `name{labels}`.
    pub fn inc(&self, name: &'static str, labels: Labels, by: u64) {
        if let Ok(mut m) = self.inner.lock() {
            *m.counters
                .entry(name)
                .or_default()
                .entry(labels)
                .or_default() += by;
        }
    }

    fn observe(&self, name: &'static str, bounds: &'static [f64], labels: Labels, v: f64) {
        if let Ok(mut m) = self.inner.lock() {
            m.histograms
                .entry(name)
                .or_default()
                .entry(labels)
                .or_insert_with(|| Histogram::new(bounds))
                .observe(v);
        }
    }

    /// One finished HTTP request (`model` and `task` empty when it never reached a model).
    pub fn request(&self, route: &str, served: &Served, status: u16, elapsed: Duration) {
        let model = served.model.as_deref().unwrap_or_default();
        let task = served.task.unwrap_or_default();
        if !model.is_empty() {
            let t = &self.traffic;
            t.request(model, t.now(), status >= 400, elapsed);
        }
        let status = status.to_string();
        self.inc(
            "ember_requests_total",
            labels(&[
                ("route", route),
                ("model", model),
                ("task", task),
                ("status", &status),
            ]),
            1,
        );
        self.observe(
            "ember_request_duration_seconds",
            &LATENCY_BUCKETS,
            labels(&[("route", route)]),
            elapsed.as_secs_f64(),
        );
    }

    /// One batch run by a model's worker: `requests` jobs, `texts` sequences, `tokens` tokens,
    /// `passes` forward passes.
    pub fn batch(&self, model: &str, requests: usize, texts: usize, tokens: usize, passes: usize) {
        let l = labels(&[("model", model)]);
        self.inc("ember_batches_total", l.clone(), 1);
        self.inc("ember_forward_passes_total", l.clone(), passes as u64);
        self.inc("ember_embedded_texts_total", l.clone(), texts as u64);
        self.inc("ember_tokens_total", l.clone(), tokens as u64);
        self.inc("ember_batched_requests_total", l.clone(), requests as u64);
        self.observe(
            "ember_batch_requests",
            &COUNT_BUCKETS,
            l.clone(),
            requests as f64,
        );
        self.observe("ember_batch_texts", &COUNT_BUCKETS, l.clone(), texts as f64);
        self.observe("ember_batch_tokens", &TOKEN_BUCKETS, l, tokens as f64);
        let t = &self.traffic;
        t.batch(model, t.now(), texts, tokens);
    }

    /// `depth` requests were waiting in `model`'s queue when its worker started a batch (the
    /// traffic charts; Prometheus reads the queues' depths when it scrapes).
    pub fn queued(&self, model: &str, depth: usize) {
        let t = &self.traffic;
        t.queued(model, t.now(), depth);
    }

    /// The per-model time buckets these counts also feed.
    pub fn traffic(&self) -> &Traffic {
        &self.traffic
    }

    /// Time one job waited in its model's queue.
    pub fn queue_time(&self, model: &str, waited: Duration) {
        self.observe(
            "ember_queue_time_seconds",
            &LATENCY_BUCKETS,
            labels(&[("model", model)]),
            waited.as_secs_f64(),
        );
    }

    /// A request refused before it reached a model (`queue_full`, `concurrency`, `auth`, ...).
    pub fn rejected(&self, reason: &str) {
        self.inc(
            "ember_rejected_requests_total",
            labels(&[("reason", reason)]),
            1,
        );
    }

    /// The value of counter `name{labels}` (tests and warm-up checks).
    pub fn counter(&self, name: &str, labels: &str) -> u64 {
        self.inner
            .lock()
            .ok()
            .and_then(|m| m.counters.get(name)?.get(labels).copied())
            .unwrap_or(0)
    }

    /// The sum of counter `name` over all its label sets.
    pub fn counter_total(&self, name: &str) -> u64 {
        self.inner
            .lock()
            .ok()
            .and_then(|m| m.counters.get(name).map(|c| c.values().sum()))
            .unwrap_or(0)
    }

    /// The whole exposition: the server's own series, the queues, then the manager's.
    pub fn render(
        &self,
        manager: &ModelManager,
        queues: &[(String, String, usize)],
        inflight: usize,
        ready: bool,
    ) -> String {
        let mut out = String::with_capacity(8192);
        if let Ok(m) = self.inner.lock() {
            for (name, series) in &m.counters {
                let _ = writeln!(out, "# HELP {name} {}", help(name));
                let _ = writeln!(out, "# TYPE {name} counter");
                for (l, v) in series {
                    let _ = writeln!(out, "{name}{{{l}}} {v}");
                }
            }
            for (name, series) in &m.histograms {
                let _ = writeln!(out, "# HELP {name} {}", help(name));
                let _ = writeln!(out, "# TYPE {name} histogram");
                for (l, h) in series {
                    let sep = if l.is_empty() { "" } else { "," };
                    for (b, c) in h.bounds.iter().zip(&h.counts) {
                        let _ = writeln!(out, "{name}_bucket{{{l}{sep}le=\"{b}\"}} {c}");
                    }
                    let _ = writeln!(out, "{name}_bucket{{{l}{sep}le=\"+Inf\"}} {}", h.count);
                    let _ = writeln!(out, "{name}_sum{{{l}}} {}", h.sum);
                    let _ = writeln!(out, "{name}_count{{{l}}} {}", h.count);
                }
            }
        }
        let k = ember_core::kernels::info();
        let threads = k.threads.to_string();
        let build = labels(&[
            ("version", env!("CARGO_PKG_VERSION")),
            ("f32_kernels", k.f32),
            ("int8_kernels", k.int8),
            ("threads", &threads),
        ]);
        gauge(&mut out, "ember_build_info", &[(build.as_str(), 1.0)]);
        gauge(
            &mut out,
            "ember_inflight_requests",
            &[("", inflight as f64)],
        );
        gauge(
            &mut out,
            "ember_ready",
            &[("", if ready { 1.0 } else { 0.0 })],
        );
        let depth: Vec<(String, f64)> = queues
            .iter()
            .map(|(m, d, n)| (labels(&[("model", m), ("dtype", d)]), *n as f64))
            .collect();
        let depth: Vec<(&str, f64)> = depth.iter().map(|(l, v)| (l.as_str(), *v)).collect();
        gauge(&mut out, "ember_queue_depth", &depth);
        manager::render(&mut out, manager);
        out
    }
}

fn gauge(out: &mut String, name: &str, series: &[(&str, f64)]) {
    family(out, name, "gauge", series);
}

fn counter(out: &mut String, name: &str, series: &[(&str, u64)]) {
    family(out, name, "counter", series);
}

/// One metric family in Prometheus text: its help, its type and a line per labelled series.
fn family<T: std::fmt::Display>(out: &mut String, name: &str, kind: &str, series: &[(&str, T)]) {
    let _ = writeln!(out, "# HELP {name} {}", help(name));
    let _ = writeln!(out, "# TYPE {name} {kind}");
    for (l, v) in series {
        if l.is_empty() {
            let _ = writeln!(out, "{name} {v}");
        } else {
            let _ = writeln!(out, "{name}{{{l}}} {v}");
        }
    }
}

fn help(name: &str) -> &'static str {
    match name {
        "ember_requests_total" => "HTTP requests by route, model, task and status.",
        "ember_request_duration_seconds" => "HTTP request latency by route.",
        "ember_batches_total" => "Batches run by the model workers.",
        "ember_forward_passes_total" => "Encoder forward passes.",
        "ember_embedded_texts_total" => "Texts embedded.",
        "ember_tokens_total" => "Tokens embedded (prompt included, after truncation).",
        "ember_batched_requests_total" => "Requests served through the batch queues.",
        "ember_batch_requests" => "Requests coalesced into one batch.",
        "ember_batch_texts" => "Texts in one batch.",
        "ember_batch_tokens" => "Tokens in one batch.",
        "ember_queue_time_seconds" => "Time a request waited in its model's queue.",
        "ember_rejected_requests_total" => "Requests refused before reaching a model, by reason.",
        "ember_inflight_requests" => "HTTP requests being served.",
        "ember_build_info" => {
            "Version, the instruction sets the kernels picked at run time, and the thread budget."
        }
        "ember_ready" => "1 once start-up loading and warm-up have finished.",
        "ember_queue_depth" => "Requests waiting in each model's batch queue.",
        _ => manager::help(name).unwrap_or("Ember metric."),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_are_escaped() {
        assert_eq!(
            labels(&[("a", "x\"y"), ("b", "c\\d")]),
            r#"a="x\"y",b="c\\d""#
        );
    }

    #[test]
    fn histogram_buckets_are_cumulative() {
        let mut h = Histogram::new(&COUNT_BUCKETS);
        h.observe(3.0);
        h.observe(1.0);
        assert_eq!(h.counts[0], 1);
        assert_eq!(h.counts[2], 2);
        assert_eq!(h.count, 2);
    }
}
