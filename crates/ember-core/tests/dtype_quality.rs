//! Weight dtypes on real models: bytes held relative to FP32, and cosine of each dtype's vectors
//! to the FP32 vectors over the reference texts. Targets: INT8 ≤ 30 % of the FP32 bytes with mean
//! cosine ≥ 0.995 (min ≥ 0.98); FP16 and BF16 ≤ 52 % with mean cosine ≥ 0.9995.

mod common;

use common::{cosine, fixtures, json, real_model, strings, tiny};
use ember_core::{DType, EmbedOptions, Embedder};

fn check(id: &str, dir: &std::path::Path, texts: &[String], strict: bool) {
    let reference = Embedder::load_dtype(id, dir, DType::Fp32).unwrap();
    let want = reference.embed(texts, &EmbedOptions::default()).unwrap();
    let base = reference.info().bytes as f64;
    for dtype in [DType::Fp16, DType::Bf16, DType::Int8] {
        let m = Embedder::load_dtype(id, dir, dtype).unwrap();
        assert_eq!(m.info().dtype, dtype);
        let got = m.embed(texts, &EmbedOptions::default()).unwrap();
        let cos: Vec<f64> = (0..texts.len())
            .map(|i| cosine(got.row(i), want.row(i)))
            .collect();
        let mean = cos.iter().sum::<f64>() / cos.len() as f64;
        let min = cos.iter().cloned().fold(1.0, f64::min);
        let ratio = m.info().bytes as f64 / base;
        eprintln!(
            "{id} {dtype}: {} bytes ({:.1} % of fp32 {}), cosine to fp32 mean {mean:.6} min {min:.6}",
            m.info().bytes,
            ratio * 100.0,
            base
        );
        if !strict {
            continue;
        }
        match dtype {
            DType::Int8 => {
                assert!(ratio <= 0.30, "{id} int8 holds {:.1} %", ratio * 100.0);
                assert!(
                    mean >= 0.995 && min >= 0.98,
                    "{id} int8 cosine mean {mean} min {min}"
                );
            }
            _ => {
                assert!(ratio <= 0.52, "{id} {dtype} holds {:.1} %", ratio * 100.0);
                assert!(mean >= 0.9995, "{id} {dtype} cosine mean {mean}");
            }
        }
    }
}

#[test]
fn tiny_models_load_in_every_dtype() {
    for kind in ["bert", "mpnet", "xlm-roberta"] {
        let texts = strings(&json(tiny(kind).join("expected.json"))["texts"]);
        // Tiny models have tiny matrices: only check that every dtype loads and embeds sanely.
        check(kind, &tiny(kind), &texts, false);
    }
}

#[test]
fn minilm_dtypes_meet_memory_and_quality_targets() {
    let id = "all-MiniLM-L6-v2";
    let Some(dir) = real_model(id) else { return };
    let texts = strings(&json(fixtures().join(format!("reference/{id}.json")))["texts"]);
    check(id, &dir, &texts, true);
}

#[test]
fn mpnet_dtypes_meet_memory_and_quality_targets() {
    let id = "all-mpnet-base-v2";
    let Some(dir) = real_model(id) else { return };
    let texts = strings(&json(fixtures().join(format!("reference/{id}.json")))["texts"]);
    check(id, &dir, &texts, true);
}
