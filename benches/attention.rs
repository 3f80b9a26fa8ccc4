//! Attention over long inputs: the encoders' kernel (`kernels::attention`, one full score row
//! per query) against the tiled one (`kernels::flash`, online softmax over key blocks), both in
//! this run and taking turns, at short and long lengths; then the tiled kernel's spans (causal,
//! sliding window) and grouped-query heads at the shapes of ModernBERT-base and
//! Qwen3-Embedding-0.6B. Prints `dense / tiled` ratios to stderr before criterion runs.

use std::hint::black_box;

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use ember_core::kernels::{
    attention::{attention as dense, AttnShape},
    flash::{attention as tiled, Heads, Rows, Span, Spec},
};

mod common;

fn data(n: usize, seed: u32) -> Vec<f32> {
    let mut s = seed.wrapping_mul(2_654_435_761).wrapping_add(1);
    (0..n)
        .map(|_| {
            s ^= s << 13;
            s ^= s >> 17;
            s ^= s << 5;
            (s % 20_000) as f32 / 10_000.0 - 1.0
        })
        .collect()
}

/// One multi-head shape over `batch` full sequences of `seq` tokens.
struct Shape {
    name: &'static str,
    batch: usize,
    seq: usize,
    heads: usize,
    d: usize,
}

impl Shape {
    fn rows(&self) -> usize {
        self.batch * self.seq
    }
    fn seqs(&self) -> Vec<Rows> {
        (0..self.batch)
            .map(|b| Rows {
                start: b * self.seq,
                len: self.seq,
            })
            .collect()
    }
    fn spec(&self, span: Span) -> Spec {
        Spec {
            heads: Heads {
                heads: self.heads,
                kv_heads: self.heads,
                head_dim: self.d,
            },
            span,
            scale: 1.0 / (self.d as f32).sqrt(),
        }
    }
    fn dense_shape(&self) -> AttnShape {
        AttnShape {
            batch: self.batch,
            seq: self.seq,
            heads: self.heads,
            head_dim: self.d,
            scale: AttnShape::scale_for(self.d),
        }
    }
}

const SHAPES: [Shape; 5] = [
    Shape {
        name: "minilm 32x112",
        batch: 32,
        seq: 112,
        heads: 12,
        d: 32,
    },
    Shape {
        name: "base 8x128",
        batch: 8,
        seq: 128,
        heads: 12,
        d: 64,
    },
    Shape {
        name: "base 2x512",
        batch: 2,
        seq: 512,
        heads: 12,
        d: 64,
    },
    Shape {
        name: "base 1x2048",
        batch: 1,
        seq: 2048,
        heads: 12,
        d: 64,
    },
    Shape {
        name: "query 1x15",
        batch: 1,
        seq: 15,
        heads: 12,
        d: 32,
    },
];

fn bench_attention(c: &mut Criterion) {
    eprintln!(
        "\nattention: dense kernel vs tiled kernel, {} threads, {}",
        ember_core::kernels::threads::num_threads(),
        ember_core::kernels::isa()
    );
    for s in &SHAPES {
        let h = s.heads * s.d;
        let qkv = data(s.rows() * 3 * h, 1);
        let mask = vec![1u32; s.rows()];
        let (mut a, mut b) = (vec![0f32; s.rows() * h], vec![0f32; s.rows() * h]);
        let spec = s.spec(Span::FULL);
        let seqs = s.seqs();
        common::ratio(
            &format!("attention {}: dense vs tiled", s.name),
            7,
            || dense(&qkv, &mask, &[], s.dense_shape(), &mut a),
            || tiled(&qkv, &seqs, &spec, &mut b),
        );
        let mut grp = c.benchmark_group(format!("attention_{}", s.name.replace(' ', "_")));
        grp.sample_size(10);
        grp.throughput(Throughput::Elements(s.rows() as u64));
        grp.bench_function("dense", |bch| {
            bch.iter(|| dense(&qkv, &mask, &[], s.dense_shape(), black_box(&mut a)))
        });
        grp.bench_function("tiled", |bch| {
            bch.iter(|| tiled(&qkv, &seqs, &spec, black_box(&mut b)))
        });
        grp.finish();
    }

    // ModernBERT-base at 8,192 tokens: full (global) and sliding (local, ±64) layers; the dense
    // kernel's full layer for scale.
    let long = Shape {
        name: "modernbert 1x8192",
        batch: 1,
        seq: 8192,
        heads: 12,
        d: 64,
    };
    let h = long.heads * long.d;
    let qkv = data(long.rows() * 3 * h, 2);
    let mask = vec![1u32; long.rows()];
    let (mut a, mut b) = (vec![0f32; long.rows() * h], vec![0f32; long.rows() * h]);
    let seqs = long.seqs();
    common::ratio(
        "attention modernbert 1x8192 global: dense vs tiled",
        2,
        || dense(&qkv, &mask, &[], long.dense_shape(), &mut a),
        || tiled(&qkv, &seqs, &long.spec(Span::FULL), &mut b),
    );
    common::ratio(
        "attention modernbert 1x8192: tiled global vs tiled local (window ±64)",
        2,
        || tiled(&qkv, &seqs, &long.spec(Span::FULL), &mut a),
        || tiled(&qkv, &seqs, &long.spec(Span::window(64, 64)), &mut b),
    );
    let mut grp = c.benchmark_group("attention_modernbert_8192");
    grp.sample_size(10);
    grp.throughput(Throughput::Elements(long.rows() as u64));
    for (name, span) in [("global", Span::FULL), ("local_64", Span::window(64, 64))] {
        let spec = long.spec(span);
        grp.bench_function(BenchmarkId::new("tiled", name), |bch| {
            bch.iter(|| tiled(&qkv, &seqs, &spec, black_box(&mut b)))
        });
    }
    grp.finish();

    // Qwen3-Embedding-0.6B: 16 query heads over 8 key heads of 128, causal, 1,024 tokens.
    let (n, heads, kv, d) = (1024, 16, 8, 128);
    let spec = Spec {
        heads: Heads {
            heads,
            kv_heads: kv,
            head_dim: d,
        },
        span: Span::CAUSAL,
        scale: 1.0 / (d as f32).sqrt(),
    };
    let qkv = data(n * spec.heads.row(), 3);
    let mut out = vec![0f32; n * spec.heads.ctx_row()];
    let seqs = [Rows { start: 0, len: n }];
    let full = Spec {
        span: Span::FULL,
        ..spec
    };
    let mut out2 = out.clone();
    common::ratio(
        "attention qwen3 1x1024 gqa 16/8: bidirectional vs causal",
        5,
        || tiled(&qkv, &seqs, &full, &mut out2),
        || tiled(&qkv, &seqs, &spec, &mut out),
    );
    let mut grp = c.benchmark_group("attention_qwen3_1024");
    grp.sample_size(10);
    grp.throughput(Throughput::Elements(n as u64));
    grp.bench_function("tiled_causal", |bch| {
        bch.iter(|| tiled(&qkv, &seqs, &spec, black_box(&mut out)))
    });
    grp.finish();
}

criterion_group!(benches, bench_attention);
criterion_main!(benches);
