//! File helpers of the integration tests, shared by ember-core's and ember-server's: the
//! server's `tests/common/mod.rs` includes this file by its path, so one definition serves both
//! without a crate of test helpers.

use std::path::Path;

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
