//! Arbitrary bytes as one HTTP request to the real router, every API dialect (see
//! `ember_fuzz::http`).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| ember_fuzz::http::http_request(data));
