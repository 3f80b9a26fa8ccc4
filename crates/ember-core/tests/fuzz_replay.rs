//! Replays the committed fuzz inputs (`fuzz/seeds/<target>`, `fuzz/min/<target>`) of the
//! file-format and tokenization targets through the very functions the cargo-fuzz binaries run,
//! so CI re-checks every seed and past finding without a sanitizer build (see docs/fuzzing.md).

#[path = "../../../fuzz/src/formats.rs"]
mod formats;
#[path = "../../../fuzz/src/replay.rs"]
mod replay;

#[test]
fn safetensors_header_corpus() {
    replay::replay("safetensors_header", 4, formats::safetensors_header);
}

#[test]
fn config_json_corpus() {
    replay::replay("config_json", 5, formats::config_json);
}

#[test]
fn registry_toml_corpus() {
    replay::replay("registry_toml", 4, formats::registry_toml);
}

#[test]
fn tokenize_corpus() {
    replay::replay("tokenize", 9, formats::tokenize);
}
