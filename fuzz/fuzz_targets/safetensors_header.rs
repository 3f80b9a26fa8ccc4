//! Arbitrary bytes as a safetensors file (see `ember_fuzz::formats::safetensors_header`).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| ember_fuzz::formats::safetensors_header(data));
