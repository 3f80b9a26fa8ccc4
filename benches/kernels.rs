//! Criterion benches for each CPU kernel in `ember_core::kernels` against the candle op it
//! replaces, at all-MiniLM-L6-v2's shapes for one corpus-sized batch (32 sequences of 112
//! tokens). Before criterion runs, a per-op profile of one encoder layer (candle ops vs ours)
//! is printed to stderr, with each op's share of the layer: the breakdown issue 6 asks for.

use std::hint::black_box;
use std::time::Duration;

use candle_core::{Device, Tensor};
use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use ember_core::kernels::{self, attention::AttnShape, elementwise, int8, sgemm};

mod common;

const BATCH: usize = 32;
const SEQ: usize = 112;
const HIDDEN: usize = 384;
const INTER: usize = 1536;
const HEADS: usize = 12;
const ROWS: usize = BATCH * SEQ;

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

fn t(v: &[f32], shape: &[usize]) -> Tensor {
    Tensor::from_slice(v, shape, &Device::Cpu).expect("tensor")
}

/// A mask with real lengths spread like a sorted corpus batch (longest first).
fn mask() -> Vec<u32> {
    let mut m = vec![0u32; ROWS];
    for b in 0..BATCH {
        let len = SEQ - b * SEQ / (3 * BATCH);
        m[b * SEQ..b * SEQ + len].fill(1);
    }
    m
}

/// candle's attention as the encoders ran it before the kernels (`models::attention`).
fn candle_attention(qkv: &Tensor, bias: &Tensor) -> Tensor {
    let (b, s, three_h) = qkv.dims3().expect("dims");
    let h = three_h / 3;
    let d = h / HEADS;
    let split = |i: usize| {
        qkv.narrow(2, i * h, h)
            .and_then(|x| x.reshape((b, s, HEADS, d)))
            .and_then(|x| x.transpose(1, 2))
            .and_then(|x| x.contiguous())
            .expect("split")
    };
    let q = (split(0) * (1.0 / (d as f64).sqrt())).expect("scale");
    let (k, v) = (split(1), split(2));
    let scores = q
        .matmul(&k.t().expect("t"))
        .and_then(|x| x.broadcast_add(bias))
        .expect("scores");
    let p = candle_nn::ops::softmax_last_dim(&scores).expect("softmax");
    p.matmul(&v)
        .and_then(|x| x.transpose(1, 2))
        .and_then(|x| x.reshape((b, s, h)))
        .expect("ctx")
}

fn candle_linear(x: &Tensor, w: &Tensor, b: &Tensor) -> Tensor {
    x.matmul(&w.t().expect("t"))
        .and_then(|y| y.broadcast_add(b))
        .expect("linear")
}

struct Op {
    name: &'static str,
    per_layer: usize,
    base: Duration,
    ours: Duration,
}

/// One MiniLM layer, op by op, candle vs the kernels; prints each op's share of the layer.
fn profile() {
    let x = data(ROWS * HIDDEN, 1);
    let ff = data(ROWS * INTER, 2);
    let qkv = data(ROWS * 3 * HIDDEN, 3);
    let (g, be) = (data(HIDDEN, 4), data(HIDDEN, 5));
    let m = mask();
    let bias: Vec<f32> = m
        .iter()
        .map(|&v| if v != 0 { 0.0 } else { -1e30 })
        .collect();
    let (tx, tff, tqkv) = (
        t(&x, &[BATCH, SEQ, HIDDEN]),
        t(&ff, &[ROWS, INTER]),
        t(&qkv, &[BATCH, SEQ, 3 * HIDDEN]),
    );
    let (tg, tb, tbias) = (
        t(&g, &[HIDDEN]),
        t(&be, &[HIDDEN]),
        t(&bias, &[BATCH, 1, 1, SEQ]),
    );
    let x2 = t(&x, &[ROWS, HIDDEN]);
    let mut ops = Vec::new();
    for (name, n, k) in [
        ("linear qkv 384->1152", 3 * HIDDEN, HIDDEN),
        ("linear attn-out 384->384", HIDDEN, HIDDEN),
        ("linear intermediate 384->1536", INTER, HIDDEN),
        ("linear output 1536->384", HIDDEN, INTER),
    ] {
        let w = data(n * k, 7);
        let b = data(n, 8);
        let (tw, tbb) = (t(&w, &[n, k]), t(&b, &[n]));
        let xin = if k == HIDDEN { x2.clone() } else { tff.clone() };
        let xs: Vec<f32> = if k == HIDDEN { x.clone() } else { ff.clone() };
        let mut out = vec![0f32; ROWS * n];
        let packed = sgemm::PackedF32::pack(&w, n, k);
        let (base, ours) = common::ratio(
            name,
            5,
            || {
                black_box(candle_linear(&xin, &tw, &tbb));
            },
            || sgemm::linear(&xs, &packed, &b, &mut out),
        );
        ops.push(Op {
            name,
            per_layer: 1,
            base,
            ours,
        });
    }
    let mut ctx = vec![0f32; ROWS * HIDDEN];
    let shape = AttnShape {
        batch: BATCH,
        seq: SEQ,
        heads: HEADS,
        head_dim: HIDDEN / HEADS,
        scale: AttnShape::scale_for(HIDDEN / HEADS),
    };
    let (base, ours) = common::ratio(
        "attention (scores, softmax, context)",
        5,
        || {
            black_box(candle_attention(&tqkv, &tbias));
        },
        || kernels::attention::attention(&qkv, &m, &[], shape, &mut ctx),
    );
    ops.push(Op {
        name: "attention",
        per_layer: 1,
        base,
        ours,
    });
    let mut y = x.clone();
    let (base, ours) = common::ratio(
        "residual add + layer norm",
        5,
        || {
            let s = (&tx + &tx).expect("add");
            black_box(candle_nn::ops::layer_norm(&s, &tg, &tb, 1e-12).expect("ln"));
        },
        || {
            y.copy_from_slice(&x);
            elementwise::add_layer_norm(&mut y, &x, &g, &be, 1e-12)
        },
    );
    ops.push(Op {
        name: "add + layer norm",
        per_layer: 2,
        base,
        ours,
    });
    let mut f = ff.clone();
    let (base, ours) = common::ratio(
        "GELU (erf)",
        5,
        || {
            black_box(tff.gelu_erf().expect("gelu"));
        },
        || {
            f.copy_from_slice(&ff);
            elementwise::gelu_erf(&mut f)
        },
    );
    ops.push(Op {
        name: "GELU",
        per_layer: 1,
        base,
        ours,
    });
    let total = |f: fn(&Op) -> Duration| -> f64 {
        ops.iter()
            .map(|o| f(o).as_secs_f64() * o.per_layer as f64)
            .sum()
    };
    let (tb_, to_) = (total(|o| o.base), total(|o| o.ours));
    eprintln!(
        "\nprofile: one all-MiniLM-L6-v2 layer, {BATCH} x {SEQ} tokens, {} threads, {}",
        kernels::threads::num_threads(),
        kernels::isa()
    );
    eprintln!(
        "{:<28} {:>12} {:>7} {:>12} {:>7}",
        "op", "candle ms", "share", "ember ms", "share"
    );
    for o in &ops {
        let (b, e) = (
            o.base.as_secs_f64() * o.per_layer as f64,
            o.ours.as_secs_f64() * o.per_layer as f64,
        );
        eprintln!(
            "{:<28} {:>12.2} {:>6.1}% {:>12.2} {:>6.1}%",
            format!("{} x{}", o.name, o.per_layer),
            b * 1e3,
            100.0 * b / tb_,
            e * 1e3,
            100.0 * e / to_
        );
    }
    eprintln!(
        "{:<28} {:>12.2} {:>7} {:>12.2} {:>7}  (speed-up {:.2}x)\n",
        "layer total",
        tb_ * 1e3,
        "",
        to_ * 1e3,
        "",
        tb_ / to_
    );
}

fn bench_kernels(c: &mut Criterion) {
    profile();
    let x = data(ROWS * HIDDEN, 1);
    let ff = data(ROWS * INTER, 2);
    let (g, be) = (data(HIDDEN, 4), data(HIDDEN, 5));
    let (tx, tff) = (t(&x, &[ROWS, HIDDEN]), t(&ff, &[ROWS, INTER]));
    let (tg, tb) = (t(&g, &[HIDDEN]), t(&be, &[HIDDEN]));

    let mut grp = c.benchmark_group("layer_norm");
    grp.throughput(Throughput::Elements((ROWS * HIDDEN) as u64));
    grp.bench_function("candle", |b| {
        b.iter(|| black_box(candle_nn::ops::layer_norm(&tx, &tg, &tb, 1e-12).expect("ln")))
    });
    let mut y = x.clone();
    grp.bench_function("ember", |b| {
        b.iter(|| elementwise::add_layer_norm(black_box(&mut y), &[], &g, &be, 1e-12))
    });
    grp.finish();

    let mut grp = c.benchmark_group("gelu_erf");
    grp.throughput(Throughput::Elements((ROWS * INTER) as u64));
    grp.bench_function("candle", |b| {
        b.iter(|| black_box(tff.gelu_erf().expect("gelu")))
    });
    let mut f = ff.clone();
    grp.bench_function("ember", |b| {
        b.iter(|| {
            f.copy_from_slice(&ff);
            elementwise::gelu_erf(black_box(&mut f))
        })
    });
    grp.finish();

    let scores = data(BATCH * HEADS * SEQ * SEQ, 9);
    let ts = t(&scores, &[BATCH * HEADS * SEQ, SEQ]);
    let mut grp = c.benchmark_group("softmax");
    grp.throughput(Throughput::Elements(scores.len() as u64));
    grp.bench_function("candle", |b| {
        b.iter(|| black_box(candle_nn::ops::softmax_last_dim(&ts).expect("softmax")))
    });
    let mut s = scores.clone();
    grp.bench_function("ember", |b| {
        b.iter(|| {
            s.copy_from_slice(&scores);
            s.chunks_mut(SEQ).for_each(elementwise::softmax)
        })
    });
    grp.finish();

    let qkv = data(ROWS * 3 * HIDDEN, 3);
    let tqkv = t(&qkv, &[BATCH, SEQ, 3 * HIDDEN]);
    let m = mask();
    let bias: Vec<f32> = m
        .iter()
        .map(|&v| if v != 0 { 0.0 } else { -1e30 })
        .collect();
    let tbias = t(&bias, &[BATCH, 1, 1, SEQ]);
    let shape = AttnShape {
        batch: BATCH,
        seq: SEQ,
        heads: HEADS,
        head_dim: HIDDEN / HEADS,
        scale: AttnShape::scale_for(HIDDEN / HEADS),
    };
    let mut ctx = vec![0f32; ROWS * HIDDEN];
    let mut grp = c.benchmark_group("attention");
    grp.sample_size(10);
    grp.throughput(Throughput::Elements(ROWS as u64));
    grp.bench_function("candle", |b| {
        b.iter(|| black_box(candle_attention(&tqkv, &tbias)))
    });
    grp.bench_function("ember", |b| {
        b.iter(|| kernels::attention::attention(&qkv, &m, &[], shape, black_box(&mut ctx)))
    });
    grp.finish();

    // Linear layers at batch 1 (a 15-token query) and at the corpus batch, f32 and int8.
    for rows in [15usize, ROWS] {
        let (n, k) = (INTER, HIDDEN);
        let w = data(n * k, 7);
        let bb = data(n, 8);
        let xs = &x[..rows * k];
        let (tw, tbb, txs) = (t(&w, &[n, k]), t(&bb, &[n]), t(xs, &[rows, k]));
        let mut wq = vec![0i8; n * k];
        let ws: Vec<f32> = w
            .chunks(128)
            .zip(wq.chunks_mut(128))
            .map(|(c, q)| int8::quantize_group(c, q))
            .collect();
        // The fastest kernel on this CPU (AVX-512 VNNI where present), and the AVX2 one.
        let wpacked = int8::PackedInt8::pack(&wq, &ws, n, k, 128);
        let isa = format!("{:?}", wpacked.isa).to_lowercase();
        let wavx2 = int8::PackedInt8::pack_for(int8::Isa::Avx2, &wq, &ws, n, k, 128);
        let mut out = vec![0f32; rows * n];
        let mut xq = int8::QuantizedRows::default();
        let mut grp = c.benchmark_group(format!("linear_384x1536_rows{rows}"));
        grp.sample_size(10);
        grp.throughput(Throughput::Elements((rows * n * k) as u64));
        grp.bench_function("candle_f32", |b| {
            b.iter(|| black_box(candle_linear(&txs, &tw, &tbb)))
        });
        grp.bench_function(BenchmarkId::new("gemm_crate", "f32"), |b| {
            b.iter(|| kernels::gemm::linear(xs, &w, &bb, rows, k, n, black_box(&mut out)))
        });
        let packed = sgemm::PackedF32::pack(&w, n, k);
        grp.bench_function(BenchmarkId::new("ember", "f32"), |b| {
            b.iter(|| sgemm::linear(xs, &packed, &bb, black_box(&mut out)))
        });
        grp.bench_function(BenchmarkId::new("ember_int8", &isa), |b| {
            b.iter(|| {
                int8::quantize_rows(xs, k, 128, &mut xq);
                int8::gemm(&xq, &wpacked, &bb, black_box(&mut out))
            })
        });
        let avx2 = wpacked.isa != int8::Isa::Avx2 && int8::Isa::Avx2.available();
        if avx2 {
            grp.bench_function(BenchmarkId::new("ember_int8", "avx2"), |b| {
                b.iter(|| {
                    int8::quantize_rows(xs, k, 128, &mut xq);
                    int8::gemm(&xq, &wavx2, &bb, black_box(&mut out))
                })
            });
        }
        grp.finish();
        let mut out2 = vec![0f32; rows * n];
        common::ratio(
            &format!("linear 384x1536 rows {rows}: gemm crate (packs per call) vs packed f32"),
            5,
            || kernels::gemm::linear(xs, &w, &bb, rows, k, n, &mut out),
            || sgemm::linear(xs, &packed, &bb, &mut out2),
        );
        common::ratio(
            &format!("linear 384x1536 rows {rows}: ember f32 vs int8 ({isa})"),
            5,
            || sgemm::linear(xs, &packed, &bb, &mut out),
            || {
                int8::quantize_rows(xs, k, 128, &mut xq);
                int8::gemm(&xq, &wpacked, &bb, &mut out2)
            },
        );
        if avx2 {
            let mut xq2 = int8::QuantizedRows::default();
            common::ratio(
                &format!("linear 384x1536 rows {rows}: int8 avx2 vs int8 {isa}"),
                5,
                || {
                    int8::quantize_rows(xs, k, 128, &mut xq2);
                    int8::gemm(&xq2, &wavx2, &bb, &mut out)
                },
                || {
                    int8::quantize_rows(xs, k, 128, &mut xq);
                    int8::gemm(&xq, &wpacked, &bb, &mut out2)
                },
            );
        }
    }
}

criterion_group!(benches, bench_kernels);
criterion_main!(benches);
