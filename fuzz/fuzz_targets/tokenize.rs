//! Arbitrary strings through a model's tokenizer and encoder (the tiny BERT fixture): tokenize,
//! truncate, embed; never a panic, always one vector of the model's dimension.
#![no_main]

use std::sync::OnceLock;

use ember_core::{EmbedOptions, Embedder};
use libfuzzer_sys::fuzz_target;

fn model() -> &'static Embedder {
    static M: OnceLock<Embedder> = OnceLock::new();
    M.get_or_init(|| {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../fixtures/reference/tiny/bert");
        Embedder::load("tiny-bert", &dir).expect("tiny model loads")
    })
}

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data).into_owned();
    let m = model();
    let out = m.embed(&[text.clone()], &EmbedOptions::default()).expect("embedding never fails on text");
    assert_eq!(out.data.len(), m.dimension());
    let strict = EmbedOptions { truncate: false, ..EmbedOptions::default() };
    if let Err(e) = m.embed(&[text], &strict) {
        assert!(e.to_string().contains("accepts"), "{e}");
    }
});
