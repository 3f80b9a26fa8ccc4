//! Property tests on tiny models: a text's vector does not depend on the other texts in its
//! batch, the batch size or the input order (within 1e-5); normalization gives unit norm;
//! Matryoshka truncation equals slicing then normalizing; output precisions are consistent.

mod common;

use std::sync::OnceLock;

use common::tiny;
use ember_core::precision::{quantize, Precision, Quantized};
use ember_core::{EmbedOptions, Embedder};
use proptest::prelude::*;

fn model(kind: usize) -> &'static Embedder {
    static MODELS: OnceLock<Vec<Embedder>> = OnceLock::new();
    &MODELS.get_or_init(|| {
        ["bert", "mpnet", "xlm-roberta"]
            .iter()
            .map(|k| Embedder::load(k, &tiny(k)).unwrap())
            .collect()
    })[kind]
}

/// Texts made of words the tiny tokenizers know, plus arbitrary unicode now and then.
fn text() -> impl Strategy<Value = String> {
    let word = prop::sample::select(vec![
        "the",
        "quick",
        "brown",
        "fox",
        "hello",
        "world",
        "embedding",
        "model",
        "search",
        "a",
        "vector",
        "123",
        "!",
        "é",
        "日本",
    ]);
    prop_oneof![
        4 => prop::collection::vec(word, 1..40).prop_map(|w| w.join(" ")),
        1 => "\\PC{0,30}",
    ]
}

fn max_abs_diff(a: &[f32], b: &[f32]) -> f32 {
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f32::max)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

    #[test]
    fn vectors_do_not_depend_on_batch_mates_size_or_order(
        kind in 0usize..3,
        texts in prop::collection::vec(text(), 1..12),
        batch_size in 1usize..6,
        seed in any::<u64>(),
    ) {
        let m = model(kind);
        let alone: Vec<Vec<f32>> = texts
            .iter()
            .map(|t| m.embed(std::slice::from_ref(t), &EmbedOptions::default()).unwrap().row(0).to_vec())
            .collect();
        // A seeded shuffle of the inputs.
        let mut order: Vec<usize> = (0..texts.len()).collect();
        let mut s = seed | 1;
        for i in (1..order.len()).rev() {
            s ^= s << 13; s ^= s >> 7; s ^= s << 17;
            order.swap(i, (s % (i as u64 + 1)) as usize);
        }
        let shuffled: Vec<String> = order.iter().map(|&i| texts[i].clone()).collect();
        let opts = EmbedOptions { batch_size, ..EmbedOptions::default() };
        let together = m.embed(&shuffled, &opts).unwrap();
        for (pos, &i) in order.iter().enumerate() {
            let d = max_abs_diff(together.row(pos), &alone[i]);
            prop_assert!(d < 1e-5, "text {i} differs by {d} in a batch of {}", texts.len());
        }
    }

    #[test]
    fn normalized_vectors_have_unit_norm(kind in 0usize..3, t in text()) {
        let v = model(kind).embed(&[t], &EmbedOptions::default()).unwrap();
        let norm: f32 = v.row(0).iter().map(|x| x * x).sum::<f32>().sqrt();
        prop_assert!((norm - 1.0).abs() < 1e-5, "norm {norm}");
    }

    #[test]
    fn matryoshka_equals_slice_then_normalize(kind in 0usize..3, t in text(), dims in 1usize..=32) {
        let m = model(kind);
        let raw = m.embed(std::slice::from_ref(&t), &EmbedOptions { normalize: false, ..Default::default() }).unwrap();
        let cut = m.embed(&[t], &EmbedOptions { dimensions: Some(dims), ..Default::default() }).unwrap();
        let head = &raw.row(0)[..dims];
        let norm = head.iter().map(|x| x * x).sum::<f32>().sqrt().max(1e-12);
        let want: Vec<f32> = head.iter().map(|x| x / norm).collect();
        prop_assert!(max_abs_diff(cut.row(0), &want) < 1e-5);
    }

    #[test]
    fn binary_precision_is_the_sign_of_every_component(
        data in prop::collection::vec(-1.0f32..1.0, 1..200),
    ) {
        let dim = data.len();
        let Quantized::Uint8(bits) = quantize(&data, dim, Precision::Ubinary, None).unwrap() else {
            panic!("ubinary gives bytes");
        };
        prop_assert_eq!(bits.len(), dim.div_ceil(8));
        for (j, v) in data.iter().enumerate() {
            let bit = bits[j / 8] >> (7 - j % 8) & 1;
            prop_assert_eq!(bit == 1, *v > 0.0);
        }
    }
}
