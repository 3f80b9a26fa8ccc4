//! Embeds short queries one at a time, as a search front end does, and prints the median
//! latency: a small, profiler-friendly program for the single-query path
//! (`valgrind --tool=callgrind target/release/examples/embed_queries 50`).
//!
//!     cargo run --release -p ember-core --example embed_queries -- [COUNT] [MODEL] [DTYPE]

use std::time::Instant;

use ember_core::{DType, EmbedOptions, Embedder, Registry, Resolver};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let count: usize = args.next().map_or(Ok(200), |a| a.parse())?;
    let model = args.next().unwrap_or_else(|| "all-MiniLM-L6-v2".into());
    let dtype: DType = args.next().unwrap_or_else(|| "fp32".into()).parse()?;
    let spec = Registry::builtin().lookup(&model)?;
    let dir = Resolver::from_env().resolve(&spec)?;
    let m = Embedder::load_dtype(&spec.id, &dir, dtype)?;
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../benches/data/queries.jsonl"
    );
    let queries: Vec<String> = std::fs::read_to_string(path)?
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter_map(|v| v["text"].as_str().map(str::to_string))
        .cycle()
        .take(count)
        .collect();
    let opts = EmbedOptions::default();
    let mut times = Vec::with_capacity(count);
    for q in &queries {
        let t = Instant::now();
        m.embed(std::slice::from_ref(q), &opts)?;
        times.push(t.elapsed().as_secs_f64() * 1e3);
    }
    times.sort_by(f64::total_cmp);
    let tokens: usize = m.count_tokens(&queries)?.iter().sum();
    eprintln!(
        "{model} {dtype}: {count} queries, {:.1} tokens each, p50 {:.3} ms, p95 {:.3} ms",
        tokens as f64 / count.max(1) as f64,
        times[count / 2],
        times[count * 95 / 100]
    );
    Ok(())
}
