//! Arbitrary bytes as a model's `config.json`: parse and validate without panicking.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(cfg) = serde_json::from_slice::<ember_core::config::TransformerConfig>(data) {
        let _ = cfg.validate(std::path::Path::new("config.json"));
    }
    let _ = serde_json::from_slice::<ember_core::config::PoolingConfigFile>(data);
    let _ = serde_json::from_slice::<ember_core::config::SentenceTransformersConfig>(data);
});
