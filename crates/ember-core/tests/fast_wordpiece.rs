//! The fast path of `TextTokenizer::encode_plain` (plain ASCII under a BERT WordPiece tokenizer)
//! gives exactly the ids of the `tokenizers` crate itself, on the benchmark corpus and on
//! generated text full of the cases it must get right or decline: case, punctuation, every kind
//! of whitespace, control bytes, words over the 100-character limit, added tokens (`[MASK]`,
//! `[cls]`) and non-ASCII text.

mod common;

use std::path::{Path, PathBuf};

use common::*;
use ember_core::tokenize::TextTokenizer;
use tokenizers::Tokenizer;

/// The benchmark corpus's texts.
fn corpus() -> Vec<String> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../benches/data/corpus.jsonl");
    std::fs::read_to_string(path)
        .unwrap()
        .lines()
        .map(|l| {
            serde_json::from_str::<serde_json::Value>(l).unwrap()["text"]
                .as_str()
                .unwrap()
                .to_string()
        })
        .collect()
}

/// Seeded texts built from pieces chosen to hit every branch.
fn generated(n: usize) -> Vec<String> {
    const PIECES: &[&str] = &[
        "the",
        "The",
        "QUICK",
        "brown",
        "fox's",
        "un",
        "##able",
        "running",
        "jumped",
        "e-mail",
        "3.14",
        "1,000",
        "(x)",
        "[MASK]",
        "[mask]",
        "[CLS]",
        "[cls]",
        "[SEP",
        "PAD]",
        "[UNK]",
        "a",
        "I",
        "é",
        "naïve",
        "中文",
        "\u{0}",
        "\u{b}",
        "\u{c}",
        "\u{7f}",
        "\u{1f}",
        "\t",
        "\n",
        "\r",
        "  ",
        "!",
        "?!",
        "...",
        "--",
        "@home",
        "#tag",
        "$5",
        "%",
        "^_^",
        "&",
        "*",
        "~",
        "`",
        "{",
        "}",
        "|",
        "\\",
        "<s>",
        "</s>",
        ";",
        ":",
        "\"",
        "'",
        "/",
        "=",
        "+",
        "supercalifragilisticexpialidocious",
        "Antidisestablishmentarianism",
        "zzzqqqxxx",
    ];
    let mut state = 0x2545_f491_4f6c_dd1d_u64;
    let mut next = |m: usize| {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        (state % m as u64) as usize
    };
    (0..n)
        .map(|_| {
            let words = 1 + next(24);
            let mut t = String::new();
            for _ in 0..words {
                match next(40) {
                    // A word over WordPiece's 100-character limit.
                    0 => t.push_str(&"ab".repeat(51 + next(20))),
                    1 => {}
                    _ => t.push_str(PIECES[next(PIECES.len())]),
                }
                if next(3) > 0 {
                    t.push(' ');
                }
            }
            t
        })
        .collect()
}

/// The `tokenizers` crate's tokenizer from `path`, without the file's own truncation and padding
/// (Ember drops them too: it truncates per request).
fn reference(path: &Path) -> Tokenizer {
    let mut t = Tokenizer::from_file(path).unwrap();
    t.with_padding(None);
    t.with_truncation(None).unwrap();
    t
}

/// `encode_plain` against the `tokenizers` crate on `texts`, with and without
/// sentence-transformers' lowercasing.
fn check(dir: &Path, texts: &[String]) {
    let path = dir.join("tokenizer.json");
    let reference = reference(&path);
    for lowercase in [false, true] {
        let ours = TextTokenizer::load(&path, "t", 0, lowercase).unwrap();
        assert!(ours.has_fast_plain(), "{}: no fast path", path.display());
        let refs: Vec<&str> = texts.iter().map(String::as_str).collect();
        let got = ours.encode_plain(&refs).unwrap();
        for (text, ids) in texts.iter().zip(&got) {
            let input = match lowercase {
                true => text.to_lowercase(),
                false => text.clone(),
            };
            let want = reference.encode_fast(input, false).unwrap();
            assert_eq!(
                ids,
                want.get_ids(),
                "{}: {text:?} (lowercase {lowercase})",
                path.display()
            );
        }
    }
}

fn dirs() -> Vec<PathBuf> {
    let mut out = vec![tiny("potion"), tiny("bert")];
    out.extend(real_model("all-MiniLM-L6-v2"));
    out
}

#[test]
fn fast_plain_ids_match_the_tokenizers_crate_on_the_corpus() {
    let texts = corpus();
    assert!(texts.len() >= 1000);
    for dir in dirs() {
        check(&dir, &texts);
    }
}

#[test]
fn fast_plain_ids_match_the_tokenizers_crate_on_generated_edge_cases() {
    let texts = generated(3000);
    // The generator does produce what must be declined and what must be taken.
    assert!(texts.iter().any(|t| t.contains("[MASK]")));
    assert!(texts.iter().any(|t| !t.is_ascii()));
    assert!(texts.iter().any(|t| t.split(' ').any(|w| w.len() > 100)));
    for dir in dirs() {
        check(&dir, &texts);
    }
}

#[test]
fn a_tokenizer_of_another_kind_has_no_fast_path() {
    // XLM-RoBERTa's is a Unigram (SentencePiece) tokenizer.
    let path = tiny("xlm-roberta").join("tokenizer.json");
    let ours = TextTokenizer::load(&path, "t", 1, false).unwrap();
    assert!(!ours.has_fast_plain());
    let reference = reference(&path);
    let texts = ["Hello there, world!", "naïve café"];
    let got = ours.encode_plain(&texts).unwrap();
    for (t, ids) in texts.iter().zip(got) {
        assert_eq!(ids, reference.encode_fast(*t, false).unwrap().get_ids());
    }
}
