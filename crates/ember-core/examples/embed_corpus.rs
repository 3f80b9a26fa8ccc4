//! Embeds the benchmark corpus in batches, as an ingestion job does, and prints tokens/s: a small,
//! profiler-friendly program for the batched path (`perf record -g -e cpu-clock
//! target/release/examples/embed_corpus 500 3 int8`).
//!
//!     cargo run --release -p ember-core --example embed_corpus -- [TEXTS] [ROUNDS] [DTYPE] [MODEL|DIR] [BATCH]

use std::time::Instant;

use ember_core::{DType, EmbedOptions, Embedder, Registry, Resolver};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let limit: usize = args.next().map_or(Ok(500), |a| a.parse())?;
    let rounds: usize = args.next().map_or(Ok(3), |a| a.parse())?;
    let dtype: DType = args.next().unwrap_or_else(|| "fp32".into()).parse()?;
    let model = args.next().unwrap_or_else(|| "all-MiniLM-L6-v2".into());
    let batch: usize = args.next().map_or(Ok(32), |a| a.parse())?;
    // A catalog id, or a model directory (a full-size model made by `benches/fullsize.py`).
    let m = if std::path::Path::new(&model).is_dir() {
        Embedder::load_dtype(&model, std::path::Path::new(&model), dtype)?
    } else {
        let spec = Registry::builtin().lookup(&model)?;
        let dir = Resolver::from_env().resolve(&spec)?;
        Embedder::load_dtype(&spec.id, &dir, dtype)?
    };
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../benches/data/corpus.jsonl"
    );
    let texts: Vec<String> = std::fs::read_to_string(path)?
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter_map(|v| v["text"].as_str().map(str::to_string))
        .take(limit)
        .collect();
    let tokens: usize = m.count_tokens(&texts)?.iter().sum();
    let opts = EmbedOptions {
        batch_size: batch,
        ..EmbedOptions::default()
    };
    let mut best = f64::INFINITY;
    for _ in 0..rounds {
        let t = Instant::now();
        m.embed(&texts, &opts)?;
        best = best.min(t.elapsed().as_secs_f64());
    }
    eprintln!(
        "{model} {dtype}: {} texts, {tokens} tokens, batch {batch}, best of {rounds}: {:.0} tokens/s",
        texts.len(),
        tokens as f64 / best
    );
    Ok(())
}
