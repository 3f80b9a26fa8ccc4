//! Real all-MiniLM-L6-v2 and all-mpnet-base-v2 (from their PyPI packages) against
//! sentence-transformers' vectors in `fixtures/reference/` (FP32): per-text cosine ≥ 0.9999, mean
//! ≥ 0.99999, raw vectors within 1e-4 relative L2, token counts equal.

mod common;

use common::{cosine, fixtures, json, real_model, rel_l2, rows, strings};
use ember_core::{EmbedOptions, Embedder};

fn check(id: &str) {
    let Some(dir) = real_model(id) else { return };
    // `scripts/test.sh` runs this file again under `EMBER_ISA` caps, so the narrower kernels
    // meet the reference end to end on a wider CPU: the cap must really hold.
    let k = ember_core::kernels::info();
    eprintln!("{id}: kernels {k:?}");
    match std::env::var("EMBER_ISA").as_deref() {
        Ok("portable") => assert_eq!((k.f32, k.int8), ("portable", "portable")),
        Ok("avx2") => {
            assert_ne!(k.f32, "avx512f");
            assert_ne!(k.int8, "avx512-vnni");
        }
        _ => {}
    }
    let reference = json(fixtures().join(format!("reference/{id}.json")));
    let texts = strings(&reference["texts"]);
    let model = Embedder::load(id, &dir).unwrap();
    assert_eq!(
        model.dimension() as u64,
        reference["dimension"].as_u64().unwrap()
    );
    assert_eq!(
        model.info().max_seq_length as u64,
        reference["max_seq_length"].as_u64().unwrap()
    );

    let counts = model.count_tokens(&texts).unwrap();
    let want_counts: Vec<usize> = reference["token_counts_after_truncation"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_u64().unwrap() as usize)
        .collect();
    assert_eq!(counts, want_counts, "{id}: token counts after truncation");

    let norm = model.embed(&texts, &EmbedOptions::default()).unwrap();
    let raw = model
        .embed(
            &texts,
            &EmbedOptions {
                normalize: false,
                ..Default::default()
            },
        )
        .unwrap();
    assert_eq!(norm.model, id);
    let want_norm = rows(&reference["normalized"]);
    let want_raw = rows(&reference["raw_mean_pooled"]);
    let mut sum = 0.0;
    let mut worst = (1.0f64, 0usize);
    for i in 0..texts.len() {
        let c = cosine(norm.row(i), &want_norm[i]);
        sum += c;
        if c < worst.0 {
            worst = (c, i);
        }
        let r = rel_l2(raw.row(i), &want_raw[i]);
        assert!(
            r < 1e-4,
            "{id}: raw vector of text {i} differs by {r:e} relative L2"
        );
    }
    let mean = sum / texts.len() as f64;
    eprintln!(
        "{id}: mean cosine {mean:.7}, min {:.7} (text {})",
        worst.0, worst.1
    );
    assert!(
        worst.0 >= 0.9999,
        "{id}: text {} has cosine {}",
        worst.1,
        worst.0
    );
    assert!(mean >= 0.99999, "{id}: mean cosine {mean}");
}

#[test]
fn all_minilm_l6_v2_matches_sentence_transformers() {
    check("all-MiniLM-L6-v2");
}

#[test]
fn all_mpnet_base_v2_matches_sentence_transformers() {
    check("all-mpnet-base-v2");
}
