//! Arbitrary bytes through the tiny BERT model's tokenizer and encoder (see
//! `ember_fuzz::formats::tokenize`).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| ember_fuzz::formats::tokenize(data));
