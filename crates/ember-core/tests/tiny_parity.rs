//! Tiny seeded models (BERT, MPNet, XLM-R) against transformers / sentence-transformers outputs
//! for the same weights (`fixtures/reference/tiny/*/expected.json`).

mod common;

use common::{cosine, json, rel_l2, rows, strings, tiny};
use ember_core::{EmbedOptions, Embedder};

fn check(kind: &str) {
    let dir = tiny(kind);
    let expected = json(dir.join("expected.json"));
    let texts = strings(&expected["texts"]);
    let model = Embedder::load(kind, &dir).unwrap();

    // Tokenization: ids match the reference (which is padded to max_seq_length).
    let ids = model.token_ids(&texts).unwrap();
    for (i, row) in expected["input_ids"].as_array().unwrap().iter().enumerate() {
        let mask = expected["attention_mask"][i].as_array().unwrap();
        let want: Vec<u32> = row
            .as_array()
            .unwrap()
            .iter()
            .zip(mask)
            .filter(|(_, m)| m.as_u64() == Some(1))
            .map(|(x, _)| x.as_u64().unwrap() as u32)
            .collect();
        assert_eq!(ids[i], want, "{kind}: input_ids of text {i}");
    }

    // Encoder: last hidden state of every real token.
    let hidden = model.token_embeddings(&texts, true).unwrap();
    let dim = model.dimension();
    for (i, h) in hidden.iter().enumerate() {
        let want: Vec<f32> = rows(&expected["last_hidden_state"][i])
            .into_iter()
            .take(h.len() / dim)
            .flatten()
            .collect();
        assert!(
            rel_l2(h, &want) < 1e-4,
            "{kind}: hidden state of text {i}: rel L2 {}",
            rel_l2(h, &want)
        );
    }

    // Pooled and normalized sentence embeddings.
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
    for (i, (want_n, want_r)) in rows(&expected["normalized"])
        .iter()
        .zip(rows(&expected["raw_mean_pooled"]))
        .enumerate()
    {
        assert!(
            cosine(norm.row(i), want_n) > 0.9999,
            "{kind}: normalized text {i}"
        );
        assert!(rel_l2(raw.row(i), &want_r) < 1e-4, "{kind}: raw text {i}");
    }
}

#[test]
fn tiny_bert_matches_transformers() {
    check("bert");
}

#[test]
fn tiny_mpnet_matches_transformers() {
    check("mpnet");
}

#[test]
fn tiny_xlm_roberta_matches_transformers() {
    check("xlm-roberta");
}

#[test]
fn batch_composition_and_order_do_not_change_vectors() {
    let dir = tiny("bert");
    let texts = strings(&json(dir.join("expected.json"))["texts"]);
    let model = Embedder::load("bert", &dir).unwrap();
    let all = model.embed(&texts, &EmbedOptions::default()).unwrap();
    let one_by_one = model
        .embed(
            &texts,
            &EmbedOptions {
                batch_size: 1,
                ..Default::default()
            },
        )
        .unwrap();
    let reversed: Vec<String> = texts.iter().rev().cloned().collect();
    let rev = model.embed(&reversed, &EmbedOptions::default()).unwrap();
    for i in 0..texts.len() {
        assert!(rel_l2(all.row(i), one_by_one.row(i)) < 1e-5);
        assert!(rel_l2(all.row(i), rev.row(texts.len() - 1 - i)) < 1e-5);
    }
}

#[test]
fn matryoshka_truncates_then_renormalizes() {
    let dir = tiny("bert");
    let model = Embedder::load("bert", &dir).unwrap();
    let texts = vec!["hello world".to_string()];
    let full = model
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
    let norm: f32 = cut.row(0).iter().map(|x| x * x).sum::<f32>().sqrt();
    assert!((norm - 1.0).abs() < 1e-5);
    assert!(cosine(cut.row(0), &full.row(0)[..8]) > 0.99999);
}

#[test]
fn prompts_prefix_inputs() {
    let dir = tiny("bert");
    let model = Embedder::load("bert", &dir).unwrap();
    let texts = vec!["world".to_string()];
    let explicit = model
        .embed(
            &texts,
            &EmbedOptions {
                prompt: Some("hello ".into()),
                ..Default::default()
            },
        )
        .unwrap();
    let joined = model
        .embed(&["hello world".to_string()], &EmbedOptions::default())
        .unwrap();
    assert!(rel_l2(explicit.row(0), joined.row(0)) < 1e-6);
}
