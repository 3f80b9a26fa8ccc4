//! Per-model traffic over the last minutes, for the web page's charts: a ring of
//! [`BUCKETS`] time buckets of [`BUCKET_SECS`] seconds per model, each holding the requests,
//! errors, a latency histogram, the batches (texts and tokens) and the deepest queue seen.
//!
//! It is fed by [`crate::metrics::Metrics`] from the same calls that count for Prometheus, so
//! nothing is counted twice. Recording is a lock, a hash lookup by model id (no allocation once
//! the model has a ring) and a few additions; a bucket is reset when the ring comes round to it
//! again, so nothing runs in the background. Latency quantiles come from a log-spaced histogram
//! (four bins per doubling, so a quantile is within about 9 % of the true value), read when a
//! snapshot is taken. Times are seconds since the buffer was made, passed in, so the tests
//! drive the clock.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use serde::Serialize;

/// Seconds per bucket.
pub const BUCKET_SECS: u64 = 5;
/// Buckets kept: five minutes.
pub const BUCKETS: usize = 60;

/// Latency bins: bin `k` holds `[LAT_MIN * 2^(k/4), LAT_MIN * 2^((k+1)/4))` ms; the first and
/// last also take everything below and above (0.05 ms to about 52 s).
const LAT_BINS: usize = 80;
const LAT_MIN_MS: f64 = 0.05;
const BINS_PER_DOUBLING: f64 = 4.0;

#[derive(Debug, Clone)]
struct Bucket {
    /// The bucket's number (seconds / BUCKET_SECS); `u64::MAX` for never used.
    slot: u64,
    requests: u32,
    errors: u32,
    latency: [u32; LAT_BINS],
    batches: u32,
    batch_texts: u64,
    batch_texts_max: u32,
    tokens: u64,
    queue_max: u32,
}

impl Bucket {
    fn empty(slot: u64) -> Self {
        Self {
            slot,
            requests: 0,
            errors: 0,
            latency: [0; LAT_BINS],
            batches: 0,
            batch_texts: 0,
            batch_texts_max: 0,
            tokens: 0,
            queue_max: 0,
        }
    }

    /// The `q` quantile of the latencies, in ms, interpolated geometrically inside its bin.
    fn quantile_ms(&self, q: f64) -> Option<f64> {
        let n: u64 = self.latency.iter().map(|&c| u64::from(c)).sum();
        if n == 0 {
            return None;
        }
        let target = q * n as f64;
        let mut below = 0.0;
        for (k, &c) in self.latency.iter().enumerate() {
            let c = f64::from(c);
            if c > 0.0 && below + c >= target {
                let within = ((target - below) / c).clamp(0.0, 1.0);
                return Some(LAT_MIN_MS * 2f64.powf((k as f64 + within) / BINS_PER_DOUBLING));
            }
            below += c;
        }
        None
    }
}

fn latency_bin(ms: f64) -> usize {
    if ms.is_nan() || ms <= LAT_MIN_MS {
        return 0;
    }
    let k = ((ms / LAT_MIN_MS).log2() * BINS_PER_DOUBLING).floor();
    (k as usize).min(LAT_BINS - 1)
}

/// One model's ring.
#[derive(Debug)]
struct Ring {
    buckets: Vec<Bucket>,
    newest: u64,
}

impl Ring {
    fn new() -> Self {
        Self {
            buckets: vec![Bucket::empty(u64::MAX); BUCKETS],
            newest: 0,
        }
    }

    fn at(&mut self, slot: u64) -> &mut Bucket {
        self.newest = self.newest.max(slot);
        let b = &mut self.buckets[(slot % BUCKETS as u64) as usize];
        if b.slot != slot {
            *b = Bucket::empty(slot);
        }
        b
    }

    fn get(&self, slot: u64) -> Option<&Bucket> {
        let b = &self.buckets[(slot % BUCKETS as u64) as usize];
        (b.slot == slot).then_some(b)
    }
}

/// One model's series, oldest bucket first, the last one still filling.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct ModelTraffic {
    pub model: String,
    /// Requests answered (whatever the status).
    pub requests: Vec<u32>,
    /// Requests answered with a status of 400 or more.
    pub errors: Vec<u32>,
    /// Median request latency in ms (`null` without requests).
    pub p50_ms: Vec<Option<f64>>,
    pub p95_ms: Vec<Option<f64>>,
    /// The most requests seen waiting in the model's queues when a batch started.
    pub queue_depth: Vec<u32>,
    pub batches: Vec<u32>,
    /// Texts per batch (`null` without batches).
    pub batch_texts_mean: Vec<Option<f64>>,
    pub batch_texts_max: Vec<Option<u32>>,
    pub tokens: Vec<u64>,
}

/// Every model's series over the same buckets.
#[derive(Debug, Clone, Serialize)]
pub struct TrafficSnapshot {
    pub bucket_seconds: u64,
    pub buckets: usize,
    /// Seconds the newest bucket has covered so far (its rate is over these).
    pub current_bucket_seconds: f64,
    /// Models with any traffic in the window, by id.
    pub models: Vec<ModelTraffic>,
}

/// The rings of every model. Cheap to share behind an `Arc`.
#[derive(Debug)]
pub struct Traffic {
    start: Instant,
    models: Mutex<HashMap<String, Ring>>,
}

impl Default for Traffic {
    fn default() -> Self {
        Self {
            start: Instant::now(),
            models: Mutex::default(),
        }
    }
}

impl Traffic {
    /// Seconds since the buffer was made.
    pub fn now(&self) -> f64 {
        self.start.elapsed().as_secs_f64()
    }

    fn with(&self, model: &str, at: f64, f: impl FnOnce(&mut Bucket)) {
        let slot = at.max(0.0) as u64 / BUCKET_SECS;
        let Ok(mut models) = self.models.lock() else {
            return;
        };
        if let Some(ring) = models.get_mut(model) {
            f(ring.at(slot));
        } else {
            let mut ring = Ring::new();
            f(ring.at(slot));
            models.insert(model.to_string(), ring);
        }
    }

    /// A request answered for `model` at `at` seconds.
    pub fn request(&self, model: &str, at: f64, error: bool, elapsed: Duration) {
        let bin = latency_bin(elapsed.as_secs_f64() * 1e3);
        self.with(model, at, |b| {
            b.requests += 1;
            b.errors += u32::from(error);
            b.latency[bin] += 1;
        });
    }

    /// A batch of `texts` texts and `tokens` tokens run by `model`'s worker.
    pub fn batch(&self, model: &str, at: f64, texts: usize, tokens: usize) {
        let texts = u32::try_from(texts).unwrap_or(u32::MAX);
        self.with(model, at, |b| {
            b.batches += 1;
            b.batch_texts += u64::from(texts);
            b.batch_texts_max = b.batch_texts_max.max(texts);
            b.tokens += tokens as u64;
        });
    }

    /// `depth` requests were waiting in `model`'s queue when a batch started.
    pub fn queued(&self, model: &str, at: f64, depth: usize) {
        let depth = u32::try_from(depth).unwrap_or(u32::MAX);
        self.with(model, at, |b| b.queue_max = b.queue_max.max(depth));
    }

    /// The window ending at `at` seconds; models idle for the whole window are dropped.
    pub fn snapshot(&self, at: f64) -> TrafficSnapshot {
        let at = at.max(0.0);
        let newest = at as u64 / BUCKET_SECS;
        let oldest = (newest + 1).saturating_sub(BUCKETS as u64);
        // Before the process has run a whole window, the first slots are before its start.
        let slots: Vec<Option<u64>> = (0..BUCKETS as u64)
            .map(|i| (newest + 1 + i).checked_sub(BUCKETS as u64))
            .collect();
        let mut out = Vec::new();
        if let Ok(mut models) = self.models.lock() {
            models.retain(|_, ring| ring.newest >= oldest);
            for (id, ring) in models.iter() {
                out.push(series(id, ring, &slots));
            }
        }
        out.sort_by(|a, b| a.model.cmp(&b.model));
        TrafficSnapshot {
            bucket_seconds: BUCKET_SECS,
            buckets: BUCKETS,
            current_bucket_seconds: at - (newest * BUCKET_SECS) as f64,
            models: out,
        }
    }
}

fn series(id: &str, ring: &Ring, slots: &[Option<u64>]) -> ModelTraffic {
    let mut m = ModelTraffic {
        model: id.to_string(),
        requests: Vec::with_capacity(slots.len()),
        errors: Vec::with_capacity(slots.len()),
        p50_ms: Vec::with_capacity(slots.len()),
        p95_ms: Vec::with_capacity(slots.len()),
        queue_depth: Vec::with_capacity(slots.len()),
        batches: Vec::with_capacity(slots.len()),
        batch_texts_mean: Vec::with_capacity(slots.len()),
        batch_texts_max: Vec::with_capacity(slots.len()),
        tokens: Vec::with_capacity(slots.len()),
    };
    let none = Bucket::empty(u64::MAX);
    for &slot in slots {
        let b = slot.and_then(|s| ring.get(s)).unwrap_or(&none);
        m.requests.push(b.requests);
        m.errors.push(b.errors);
        m.p50_ms.push(b.quantile_ms(0.5));
        m.p95_ms.push(b.quantile_ms(0.95));
        m.queue_depth.push(b.queue_max);
        m.batches.push(b.batches);
        m.batch_texts_mean
            .push((b.batches > 0).then(|| b.batch_texts as f64 / f64::from(b.batches)));
        m.batch_texts_max
            .push((b.batches > 0).then_some(b.batch_texts_max));
        m.tokens.push(b.tokens);
    }
    m
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(v: f64) -> Duration {
        Duration::from_secs_f64(v / 1e3)
    }

    #[test]
    fn requests_land_in_their_bucket_and_the_window_ends_now() {
        let t = Traffic::default();
        t.request("a", 1.0, false, ms(10.0));
        t.request("a", 4.9, true, ms(10.0));
        t.request("a", 12.0, false, ms(10.0));
        let s = t.snapshot(13.0);
        assert_eq!(s.models.len(), 1);
        let a = &s.models[0];
        assert_eq!(a.requests.len(), BUCKETS);
        // Now is in bucket 2 (10-15 s): the last three buckets are 0-5, 5-10, 10-15 s.
        assert_eq!(&a.requests[BUCKETS - 3..], &[2, 0, 1]);
        assert_eq!(&a.errors[BUCKETS - 3..], &[1, 0, 0]);
        assert_eq!(a.requests[..BUCKETS - 3].iter().sum::<u32>(), 0);
        assert!((s.current_bucket_seconds - 3.0).abs() < 1e-9);
    }

    #[test]
    fn the_ring_forgets_what_is_older_than_the_window() {
        let t = Traffic::default();
        t.request("a", 0.0, false, ms(1.0));
        t.request("b", 0.0, false, ms(1.0));
        let later = (BUCKETS as u64 * BUCKET_SECS) as f64;
        // The same ring slot comes round again: the old count must not survive.
        t.request("a", later + 1.0, false, ms(1.0));
        let s = t.snapshot(later + 1.0);
        let ids: Vec<&str> = s.models.iter().map(|m| m.model.as_str()).collect();
        assert_eq!(ids, ["a"], "b had no traffic in the window");
        assert_eq!(s.models[0].requests.iter().sum::<u32>(), 1);
        assert_eq!(s.models[0].requests[BUCKETS - 1], 1);
    }

    #[test]
    fn quantiles_are_within_a_bin_of_the_true_ones() {
        let t = Traffic::default();
        // 1..=100 ms: p50 = 50 ms, p95 = 95 ms.
        for v in 1..=100 {
            t.request("a", 0.0, false, ms(f64::from(v)));
        }
        let a = &t.snapshot(0.0).models[0];
        let (p50, p95) = (
            a.p50_ms[BUCKETS - 1].unwrap(),
            a.p95_ms[BUCKETS - 1].unwrap(),
        );
        let bin = 2f64.powf(1.0 / BINS_PER_DOUBLING);
        assert!(p50 > 50.0 / bin && p50 < 50.0 * bin, "p50 {p50}");
        assert!(p95 > 95.0 / bin && p95 < 95.0 * bin, "p95 {p95}");
        assert_eq!(a.p50_ms[BUCKETS - 2], None, "no requests, no latency");
    }

    #[test]
    fn extreme_latencies_stay_in_the_end_bins() {
        assert_eq!(latency_bin(0.0), 0);
        assert_eq!(latency_bin(f64::NAN), 0);
        assert_eq!(latency_bin(1e9), LAT_BINS - 1);
        let b = latency_bin(1.0);
        assert!(LAT_MIN_MS * 2f64.powf(b as f64 / 4.0) <= 1.0);
        assert!(LAT_MIN_MS * 2f64.powf((b + 1) as f64 / 4.0) > 1.0);
    }

    #[test]
    fn batches_and_queue_depth_per_bucket() {
        let t = Traffic::default();
        t.batch("a", 0.5, 4, 40);
        t.batch("a", 1.0, 8, 90);
        t.queued("a", 1.0, 3);
        t.queued("a", 2.0, 1);
        let a = &t.snapshot(2.0).models[0];
        let last = BUCKETS - 1;
        assert_eq!(a.batches[last], 2);
        assert_eq!(a.batch_texts_mean[last], Some(6.0));
        assert_eq!(a.batch_texts_max[last], Some(8));
        assert_eq!(a.tokens[last], 130);
        assert_eq!(a.queue_depth[last], 3);
        assert_eq!(a.batch_texts_mean[last - 1], None);
    }
}
