//! Arbitrary text as a user's models TOML file: accepted or refused with an error, never a panic,
//! and any accepted entry can be looked up by its id.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    let mut reg = ember_core::Registry::builtin();
    if let Ok(ids) = reg.add_toml_str(text, std::path::Path::new("/models.toml")) {
        for id in ids {
            assert!(reg.lookup(&id).is_ok(), "registered id {id:?} not found");
        }
    }
});
