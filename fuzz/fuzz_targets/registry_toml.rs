//! Arbitrary text as a user's models TOML file (see `ember_fuzz::formats::registry_toml`).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| ember_fuzz::formats::registry_toml(data));
