//! Fixture paths and file helpers of the integration tests, shared by ember-core's and
//! ember-server's: the server's `tests/common/mod.rs` includes this file by its path, so one
//! definition serves both without a crate of test helpers.

use std::path::{Path, PathBuf};

/// The repository's `fixtures/` folder (from either crate's directory).
pub fn fixtures() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../fixtures")
}

/// A tiny seeded model (`bert`, `mpnet`, `xlm-roberta`, ...) with transformers' outputs.
pub fn tiny(kind: &str) -> PathBuf {
    fixtures().join("reference/tiny").join(kind)
}

/// Recursively copies a directory (e.g. a tiny fixture, for a test that changes its files).
pub fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let dest = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_dir(&entry.path(), &dest);
        } else {
            std::fs::copy(entry.path(), &dest).unwrap();
        }
    }
}

/// Other weights in `dir`'s `model.safetensors`, in place (one float's low bits), with a
/// modification time 2 s later: a checkpoint edited under a loaded model.
pub fn perturb_weights(dir: &Path) {
    let path = dir.join("model.safetensors");
    let mut bytes = std::fs::read(&path).unwrap();
    let n = bytes.len();
    bytes[n - 4] ^= 0x5a;
    std::fs::write(&path, &bytes).unwrap();
    let later = std::time::SystemTime::now() + std::time::Duration::from_secs(2);
    let file = std::fs::File::options().write(true).open(&path).unwrap();
    file.set_modified(later).unwrap();
}
