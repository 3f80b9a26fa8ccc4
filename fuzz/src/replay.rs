//! The committed inputs of a fuzz target, for replaying them as an ordinary test: hand-written
//! seeds (`fuzz/seeds/<target>/`) and the minimized corpus of the long runs (`fuzz/min/<target>/`).

use std::path::{Path, PathBuf};

/// The repository root: the first folder above the compiling crate's manifest that holds
/// `fixtures/` (the fuzz crate and the replay tests sit at different depths).
pub fn repo_root() -> PathBuf {
    let here = Path::new(env!("CARGO_MANIFEST_DIR"));
    here.ancestors()
        .find(|d| d.join("fixtures/reference").is_dir())
        .unwrap_or(here)
        .to_path_buf()
}

/// Every committed input of `target` as (file name, bytes), sorted by name.
pub fn inputs(target: &str) -> Vec<(String, Vec<u8>)> {
    let mut out = Vec::new();
    for kind in ["seeds", "min"] {
        let Ok(entries) = std::fs::read_dir(repo_root().join("fuzz").join(kind).join(target))
        else {
            continue;
        };
        for entry in entries.flatten() {
            let path = entry.path();
            if path.is_file() {
                let bytes = std::fs::read(&path)
                    .unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
                out.push((
                    format!("{kind}/{target}/{}", entry.file_name().to_string_lossy()),
                    bytes,
                ));
            }
        }
    }
    out.sort();
    out
}

/// Runs `body` on every committed input of `target`, naming the input that fails; asserts there
/// are at least `min_inputs` of them (a missing corpus folder fails rather than passing empty).
pub fn replay(target: &str, min_inputs: usize, body: impl Fn(&[u8])) {
    let inputs = inputs(target);
    assert!(
        inputs.len() >= min_inputs,
        "{target}: {} committed inputs under fuzz/seeds and fuzz/min, expected at least {min_inputs}",
        inputs.len()
    );
    for (name, bytes) in &inputs {
        let run = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| body(bytes)));
        if let Err(e) = run {
            std::panic::resume_unwind(Box::new(format!(
                "fuzz input {name} fails: {}",
                e.downcast_ref::<String>()
                    .map(String::as_str)
                    .or_else(|| e.downcast_ref::<&str>().copied())
                    .unwrap_or("panic")
            )));
        }
    }
}
