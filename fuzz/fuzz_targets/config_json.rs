//! Arbitrary bytes as a model's `config.json` (see `ember_fuzz::formats::config_json`).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| ember_fuzz::formats::config_json(data));
