//! The rotary families (issue 17) against sentence-transformers / transformers, on the tiny
//! seeded models of `fixtures/reference/make_frontier.py`: Qwen3 (causal and bidirectional),
//! Gemma3 (bidirectional, sliding and full layers, Dense heads), ModernBERT (local and global
//! layers), Alibaba GTE in both layouts. Each over at least 20 texts, some past twice the sliding
//! window, past 1,000 tokens and past the 2,048-token limit; batch invariance (a text alone and
//! in a padded batch) and padding on either side.

mod common;

use std::path::PathBuf;

use common::{agreement, assert_close, copy_dir, cosine, embed_rows, json, rows, strings, tiny};
use ember_core::config::ModelConfig;
use ember_core::models::{Batch, Encoder};
use ember_core::weights::{weight_files, Weights};
use ember_core::{EmbedOptions, Embedder};

const KINDS: [&str; 6] = [
    "qwen3",
    "qwen3-bidir",
    "gemma3",
    "modernbert",
    "gte",
    "gte-new",
];

fn check_parity(kind: &str) {
    let dir = tiny(kind);
    let expected = json(dir.join("expected.json"));
    let texts = strings(&expected["texts"]);
    assert!(texts.len() >= 20, "{kind}: {} texts", texts.len());
    let model = Embedder::load(kind, &dir).unwrap();
    assert_eq!(model.info().max_seq_length, 2048, "{kind}");

    // Tokenization, truncation and the post-processor's special tokens (Qwen3's appended
    // <|endoftext|>, Gemma's <bos> ... <eos>).
    let counts: Vec<usize> = expected["token_counts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_u64().unwrap() as usize)
        .collect();
    assert_eq!(model.count_tokens(&texts).unwrap(), counts, "{kind}");
    assert!(
        counts.iter().any(|&n| n > 1000 && n < 2048),
        "{kind}: a text past 1,000 tokens"
    );
    assert!(counts.contains(&2048), "{kind}: a text cut at the limit");

    // One batch of every text (heavily padded) against the references, padded on either side.
    let all = embed_rows(
        &model,
        &texts,
        &EmbedOptions {
            batch_size: 64,
            ..Default::default()
        },
    );
    for side in ["right", "left"] {
        let want = rows(&expected[format!("normalized_{side}")]);
        assert_close(&format!("{kind} vs {side}-padded reference"), &all, &want);
    }

    // Batch invariance: each text alone gives its vector from the padded batch.
    let alone = embed_rows(
        &model,
        &texts,
        &EmbedOptions {
            batch_size: 1,
            ..Default::default()
        },
    );
    let (_, min, _) = agreement(&alone, &all);
    assert!(min >= 0.99999, "{kind}: alone vs batched, min {min:.7}");

    // The model's prompts, where the reference has them.
    if let Some(prompted) = expected["prompted"].as_object() {
        for (name, want) in prompted {
            let got = embed_rows(
                &model,
                &texts[..4],
                &EmbedOptions {
                    prompt_name: Some(name.clone()),
                    ..Default::default()
                },
            );
            let (mean, min, _) = agreement(&got, &rows(want));
            assert!(
                mean >= 0.99999 && min >= 0.9999,
                "{kind} prompt {name}: mean {mean:.7}, min {min:.7}"
            );
        }
    }
}

#[test]
fn qwen3_matches_sentence_transformers() {
    check_parity("qwen3");
}

#[test]
fn qwen3_bidirectional_matches_transformers() {
    check_parity("qwen3-bidir");
}

#[test]
fn gemma3_matches_sentence_transformers() {
    check_parity("gemma3");
}

#[test]
fn modernbert_matches_sentence_transformers() {
    check_parity("modernbert");
}

#[test]
fn gte_matches_sentence_transformers() {
    check_parity("gte");
}

#[test]
fn gte_alibaba_layout_with_ntk_matches() {
    check_parity("gte-new");
}

/// A copy of a fixture directory whose pooling config `edit` changes.
fn with_pooling(kind: &str, edit: impl FnOnce(&mut serde_json::Value)) -> tempfile::TempDir {
    let tmp = tempfile::tempdir().unwrap();
    copy_dir(&tiny(kind), tmp.path());
    let path = tmp.path().join("1_Pooling/config.json");
    let mut cfg = json(path.clone());
    edit(&mut cfg);
    std::fs::write(path, serde_json::to_vec(&cfg).unwrap()).unwrap();
    tmp
}

/// ModernBERT's CLS pooling reads the first token, whose local layers see only its window; mean
/// pooling, as modernbert-embed uses, reads them all.
#[test]
fn modernbert_mean_pooling_matches_too() {
    let expected = json(tiny("modernbert").join("expected.json"));
    let texts = strings(&expected["texts"]);
    let dir = with_pooling("modernbert", |c| {
        c["pooling_mode_cls_token"] = false.into();
        c["pooling_mode_mean_tokens"] = true.into();
    });
    let model = Embedder::load("modernbert-mean", dir.path()).unwrap();
    let got = embed_rows(&model, &texts, &EmbedOptions::default());
    let want = rows(&expected["normalized_mean_right"]);
    assert_close("modernbert mean pooling", &got, &want);
}

/// Matryoshka: the first `d` components of the raw vector, renormalized.
#[test]
fn qwen3_matryoshka_truncates_then_normalizes() {
    let model = Embedder::load("qwen3", &tiny("qwen3")).unwrap();
    let texts = vec!["hello world".to_string(), "a".to_string()];
    let raw = model
        .embed(
            &texts,
            &EmbedOptions {
                normalize: false,
                ..Default::default()
            },
        )
        .unwrap();
    let cut = model
        .embed(
            &texts,
            &EmbedOptions {
                dimensions: Some(8),
                ..Default::default()
            },
        )
        .unwrap();
    assert_eq!(cut.dimension, 8);
    for i in 0..texts.len() {
        assert!(cosine(cut.row(i), &raw.row(i)[..8]) > 0.999_999);
        let norm: f32 = cut.row(i).iter().map(|v| v * v).sum();
        assert!((norm - 1.0).abs() < 1e-5);
    }
}

/// The encoder itself on left- and right-padded batches of the same texts: every real token's
/// hidden state agrees (the rotary families run unpadded, so the side cannot matter).
#[test]
fn left_and_right_padding_give_the_same_hidden_states() {
    for kind in KINDS {
        let dir: PathBuf = tiny(kind);
        let cfg = ModelConfig::read(&dir.join("config.json")).unwrap();
        let w = Weights::load(
            kind,
            &weight_files(&dir).unwrap(),
            &candle_core::Device::Cpu,
        )
        .unwrap()
        .with_prefixes(&["model.", "new.", "gte."]);
        let enc = Encoder::load(&w, &cfg, &dir.join("config.json")).unwrap();
        let model = Embedder::load(kind, &dir).unwrap();
        let texts = strings(&json(dir.join("expected.json"))["texts"]);
        let ids = model.token_ids(&texts[..18]).unwrap();
        let seq = ids.iter().map(Vec::len).max().unwrap();
        let padded = |left: bool| {
            let mut b = Batch {
                ids: vec![0; ids.len() * seq],
                type_ids: vec![0; ids.len() * seq],
                mask: vec![0; ids.len() * seq],
                batch: ids.len(),
                seq,
            };
            for (r, t) in ids.iter().enumerate() {
                let at = r * seq + if left { seq - t.len() } else { 0 };
                b.ids[at..at + t.len()].copy_from_slice(t);
                b.mask[at..at + t.len()].fill(1);
            }
            b
        };
        let (r, l) = (
            enc.forward(&padded(false)).unwrap(),
            enc.forward(&padded(true)).unwrap(),
        );
        let dim = r.dim;
        for (i, t) in ids.iter().enumerate() {
            let right = &r.sequence(i)[..t.len() * dim];
            let left = &l.sequence(i)[(seq - t.len()) * dim..];
            for (a, b) in right.chunks(dim).zip(left.chunks(dim)) {
                assert!(cosine(a, b) > 0.999_999, "{kind} text {i}");
            }
            // Padding rows are zero.
            assert!(r.sequence(i)[t.len() * dim..].iter().all(|&v| v == 0.0));
        }
    }
}
