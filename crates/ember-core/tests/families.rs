//! The newer families against their reference implementations, on tiny seeded models made by
//! `fixtures/reference/make_families.py`: NomicBERT in both config layouts (nomic's own code and
//! transformers 5) and pre-norm, T5 with Dense heads (sentence-transformers), INSTRUCTOR's
//! pooling rule, and static model2vec models (the `model2vec` package). Every fixture has 22
//! texts: empty, CJK, emoji, accents, whitespace, inputs over the limit and, for NomicBERT,
//! inputs past the 32 trained positions with NTK scaling on.

mod common;

use common::{assert_close, cosine, embed_rows, json, rows, strings, tiny};
use ember_core::{DType, EmbedOptions, Embedder, Matryoshka};

fn check_nomic(kind: &str) {
    let dir = tiny(kind);
    let expected = json(dir.join("expected.json"));
    let texts = strings(&expected["texts"]);
    let m = Embedder::load(kind, &dir).unwrap();
    assert_eq!(m.info().architecture, "nomic_bert");
    assert_eq!(m.info().max_seq_length, 128);
    if let Some(ids) = expected["input_ids"].as_array() {
        let got = m.token_ids(&texts).unwrap();
        for (i, want) in ids.iter().enumerate() {
            let want: Vec<u32> = want
                .as_array()
                .unwrap()
                .iter()
                .map(|v| v.as_u64().unwrap() as u32)
                .collect();
            assert_eq!(got[i], want, "{kind}: ids of text {i}");
        }
        // Some texts run past the 32 trained positions, so the NTK scaling is exercised.
        assert!(got.iter().any(|ids| ids.len() > 32 && ids.len() < 128));
        assert!(got.iter().any(|ids| ids.len() == 128));
    }
    let norm = embed_rows(&m, &texts, &EmbedOptions::default());
    assert_close(
        &format!("{kind} normalized"),
        &norm,
        &rows(&expected["normalized"]),
    );
    let raw = embed_rows(
        &m,
        &texts,
        &EmbedOptions {
            normalize: false,
            ..Default::default()
        },
    );
    assert_close(
        &format!("{kind} raw"),
        &raw,
        &rows(&expected["raw_mean_pooled"]),
    );
    if expected.get("matryoshka_16").is_some() {
        let cut = m
            .embed(
                &texts,
                &EmbedOptions {
                    dimensions: Some(16),
                    ..Default::default()
                },
            )
            .unwrap();
        assert_eq!(cut.dimension, 16);
        let cut: Vec<Vec<f32>> = cut.iter().map(<[f32]>::to_vec).collect();
        assert_close(
            &format!("{kind} matryoshka (layer norm, cut, normalize)"),
            &cut,
            &rows(&expected["matryoshka_16"]),
        );
        // The plain slice (sentence-transformers' truncate_dim) differs from the recipe.
        let sliced = m
            .embed(
                &texts[1..2],
                &EmbedOptions {
                    dimensions: Some(16),
                    matryoshka: Some(Matryoshka::Slice),
                    ..Default::default()
                },
            )
            .unwrap();
        let want: Vec<f32> = norm[1][..16].to_vec();
        assert!(cosine(sliced.row(0), &want) > 0.99999);
    }
}

#[test]
fn nomic_layout_matches_nomics_code() {
    check_nomic("nomic");
}

#[test]
fn nomic_transformers_layout_matches_transformers() {
    check_nomic("nomic-hf");
}

#[test]
fn nomic_prenorm_with_biases_and_interleaved_rotary_matches_nomics_code() {
    check_nomic("nomic-prenorm");
}

#[test]
fn t5_with_dense_heads_matches_sentence_transformers() {
    let dir = tiny("t5-dense");
    let expected = json(dir.join("expected.json"));
    let texts = strings(&expected["texts"]);
    let m = Embedder::load("t5-dense", &dir).unwrap();
    assert_eq!((m.info().architecture.as_str(), m.dimension()), ("t5", 32));
    let ids = m.token_ids(&texts).unwrap();
    for (i, want) in expected["input_ids"].as_array().unwrap().iter().enumerate() {
        let want: Vec<u32> = want
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_u64().unwrap() as u32)
            .collect();
        assert_eq!(ids[i], want, "t5 ids of text {i}");
    }
    let norm = embed_rows(&m, &texts, &EmbedOptions::default());
    assert_close("t5-dense normalized", &norm, &rows(&expected["normalized"]));
    let raw = embed_rows(
        &m,
        &texts,
        &EmbedOptions {
            normalize: false,
            ..Default::default()
        },
    );
    assert_close(
        "t5-dense before Normalize",
        &raw,
        &rows(&expected["raw_dense"]),
    );
}

#[test]
fn instructor_leaves_the_instruction_out_of_pooling() {
    let dir = tiny("instructor");
    let expected = json(dir.join("expected.json"));
    let m = Embedder::load("instructor", &dir).unwrap();
    for inst in strings(&expected["instructions"]) {
        let cases: Vec<&serde_json::Value> = expected["rows"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|r| r["instruction"].as_str() == Some(inst.as_str()))
            .collect();
        let texts: Vec<String> = cases
            .iter()
            .map(|r| r["text"].as_str().unwrap().to_string())
            .collect();
        let opts = EmbedOptions {
            instruction: Some(inst.clone()),
            ..Default::default()
        };
        let encoded = m.tokenize(&texts, &opts).unwrap();
        for (e, r) in encoded.iter().zip(&cases) {
            let want: Vec<u32> = r["input_ids"]
                .as_array()
                .unwrap()
                .iter()
                .map(|v| v.as_u64().unwrap() as u32)
                .collect();
            assert_eq!(e.ids, want, "{inst:?} / {:?}", r["text"]);
            assert_eq!(e.pool_skip as u64, r["context_masks"].as_u64().unwrap());
        }
        let got = embed_rows(&m, &texts, &opts);
        let want: Vec<Vec<f32>> = cases
            .iter()
            .map(|r| {
                r["normalized"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|x| x.as_f64().unwrap() as f32)
                    .collect()
            })
            .collect();
        assert_close(&format!("instructor {inst:?}"), &got, &want);
    }
    // A model whose prompts are instructions applies the same rule to `prompt`.
    let m = m.with_instruction_prompts(true);
    let texts = vec!["hello world".to_string()];
    let by_prompt = m
        .embed(
            &texts,
            &EmbedOptions {
                prompt: Some("Represent the science title: ".into()),
                ..Default::default()
            },
        )
        .unwrap();
    let by_instruction = m
        .embed(
            &texts,
            &EmbedOptions {
                instruction: Some("Represent the science title: ".into()),
                ..Default::default()
            },
        )
        .unwrap();
    assert!(cosine(by_prompt.row(0), by_instruction.row(0)) > 0.999999);
}

fn check_static(kind: &str) {
    let dir = tiny(kind);
    let expected = json(dir.join("expected.json"));
    let texts = strings(&expected["texts"]);
    let m = Embedder::load(kind, &dir).unwrap();
    assert_eq!(m.info().architecture, "model2vec");
    let normalize = expected["normalize"].as_bool().unwrap();
    assert_eq!(m.info().normalize, normalize);
    assert_eq!(
        m.info().max_seq_length as u64,
        expected["max_length"].as_u64().unwrap()
    );
    let got = m.token_ids(&texts).unwrap();
    for (i, want) in expected["ids"].as_array().unwrap().iter().enumerate() {
        let want: Vec<u32> = want
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_u64().unwrap() as u32)
            .collect();
        assert_eq!(got[i], want, "{kind}: ids of text {i}");
    }
    let opts = EmbedOptions {
        normalize,
        ..Default::default()
    };
    let vectors = embed_rows(&m, &texts, &opts);
    assert_close(kind, &vectors, &rows(&expected["vectors"]));
    if !normalize {
        // Unnormalized: the lengths match too, not only the directions.
        for (g, w) in vectors.iter().zip(rows(&expected["vectors"])) {
            assert!(common::rel_l2(g, &w) < 1e-5 || w.iter().all(|x| *x == 0.0));
        }
    }
}

#[test]
fn static_model_matches_model2vec() {
    check_static("potion");
}

#[test]
fn static_model_with_weights_and_mapping_matches_model2vec() {
    check_static("potion-mapped");
}

/// A text gives the same vector alone and inside a batch of other lengths (sorted, padded, and
/// for NomicBERT past the trained positions, scaled by its own length).
#[test]
fn every_family_is_batch_invariant() {
    for kind in [
        "nomic",
        "nomic-hf",
        "nomic-prenorm",
        "t5-dense",
        "instructor",
        "potion",
        "potion-mapped",
    ] {
        let dir = tiny(kind);
        let texts = strings(&json(dir.join("expected.json"))["texts"]);
        let m = Embedder::load(kind, &dir).unwrap();
        let batch = m.embed(&texts, &EmbedOptions::default()).unwrap();
        for (i, t) in texts.iter().enumerate() {
            let alone = m
                .embed(std::slice::from_ref(t), &EmbedOptions::default())
                .unwrap();
            let c = if alone.row(0).iter().all(|x| *x == 0.0) {
                1.0
            } else {
                cosine(alone.row(0), batch.row(i))
            };
            assert!(c > 0.999999, "{kind}: text {i} alone vs in a batch: {c}");
        }
    }
}

/// Every dtype loads and stays close to FP32 on the tiny models (the quality table's figures
/// come from full-size models: `dtype_quality.rs`).
#[test]
fn every_family_loads_in_every_dtype() {
    for kind in ["nomic", "nomic-hf", "t5-dense", "instructor", "potion"] {
        let dir = tiny(kind);
        let texts = strings(&json(dir.join("expected.json"))["texts"]);
        let base = Embedder::load_dtype(kind, &dir, DType::Fp32).unwrap();
        let want = base.embed(&texts, &EmbedOptions::default()).unwrap();
        for dtype in [DType::Fp16, DType::Bf16, DType::Int8] {
            let m = Embedder::load_dtype(kind, &dir, dtype).unwrap();
            assert!(
                m.info().bytes < base.info().bytes,
                "{kind} {dtype} is not smaller"
            );
            let got = m.embed(&texts, &EmbedOptions::default()).unwrap();
            for i in 0..texts.len() {
                if want.row(i).iter().all(|x| *x == 0.0) {
                    continue; // a static model's text with no known token
                }
                let c = cosine(got.row(i), want.row(i));
                assert!(c > 0.98, "{kind} {dtype} text {i}: cosine {c}");
            }
        }
    }
}
