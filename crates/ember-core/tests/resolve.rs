//! Finding model files: an explicit path, `EMBER_MODELS_DIR`, the Hugging Face cache, Python
//! packages (plain and split-zip), and a real hf-hub download from a local server that plays the
//! Hub (`HF_ENDPOINT`); sharded safetensors; the error that lists every place tried.

mod common;

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Write};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use common::{copy_dir, json, rel_l2, rows, strings, tiny};
use ember_core::{EmbedOptions, Embedder, ErrorKind, ModelSpec, Packaged, Registry, Resolver};

/// A resolver that looks nowhere but where a test points it.
fn isolated(tmp: &Path) -> Resolver {
    let mut r = Resolver::from_env();
    r.models_dir = None;
    r.hf_cache = tmp.join("hf");
    r.python_paths = vec![];
    r.cache_dir = tmp.join("ember-cache");
    r.offline = true;
    r.endpoint = "http://127.0.0.1:9".into();
    r
}

fn spec(id: &str) -> ModelSpec {
    let mut s = Registry::builtin().lookup("all-MiniLM-L6-v2").unwrap();
    s.id = id.into();
    s.hub_repo = Some(format!("ember-test/{id}"));
    s.packaged = None;
    s.path = None;
    s
}

/// The tiny BERT's vectors must come out of whatever directory was resolved.
fn assert_is_tiny_bert(dir: &Path) {
    let expected = json(tiny("bert").join("expected.json"));
    let texts = strings(&expected["texts"]);
    let out = Embedder::load("t", dir)
        .unwrap()
        .embed(&texts, &EmbedOptions::default())
        .unwrap();
    for (i, want) in rows(&expected["normalized"]).iter().enumerate() {
        assert!(rel_l2(out.row(i), want) < 1e-4);
    }
}

fn files_of(dir: &Path) -> Vec<(String, Vec<u8>)> {
    let mut out = Vec::new();
    for entry in walk(dir) {
        let rel = entry
            .strip_prefix(dir)
            .unwrap()
            .to_string_lossy()
            .replace('\\', "/");
        out.push((rel, std::fs::read(&entry).unwrap()));
    }
    out
}

fn walk(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            out.extend(walk(&p));
        } else {
            out.push(p);
        }
    }
    out
}

#[test]
fn explicit_path_wins_and_a_missing_one_is_reported() {
    let tmp = tempfile::tempdir().unwrap();
    let r = isolated(tmp.path());
    let mut s = spec("p");
    s.path = Some(tiny("bert"));
    assert_eq!(r.resolve(&s).unwrap(), tiny("bert"));
    s.path = Some(tmp.path().join("gone"));
    let msg = r.resolve(&s).unwrap_err().to_string();
    assert!(
        msg.contains("gone") && msg.contains("does not exist"),
        "{msg}"
    );
}

#[test]
fn models_dir_is_searched_by_id() {
    let tmp = tempfile::tempdir().unwrap();
    let mut r = isolated(tmp.path());
    let root = tmp.path().join("models");
    std::fs::create_dir_all(&root).unwrap();
    copy_dir(&tiny("bert"), &root.join("my-model"));
    r.models_dir = Some(root.clone());
    assert_eq!(r.resolve(&spec("my-model")).unwrap(), root.join("my-model"));
}

#[test]
fn nothing_found_lists_every_place_tried() {
    let tmp = tempfile::tempdir().unwrap();
    let mut r = isolated(tmp.path());
    r.models_dir = Some(tmp.path().join("models"));
    let mut s = spec("absent");
    s.packaged = Some(Packaged::Dir {
        module: "absent_pkg".into(),
        subdir: "model".into(),
        pip: "absent-pkg".into(),
    });
    let err = r.resolve(&s).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::ModelLoad);
    let msg = err.to_string();
    for place in [
        "EMBER_MODELS_DIR",
        "Hugging Face cache",
        "absent-pkg",
        "HF_HUB_OFFLINE",
    ] {
        assert!(msg.contains(place), "{place} missing from: {msg}");
    }
}

#[test]
fn packaged_directory_is_found_in_python_paths() {
    let tmp = tempfile::tempdir().unwrap();
    let mut r = isolated(tmp.path());
    let site = tmp.path().join("site-packages");
    copy_dir(&tiny("bert"), &site.join("tiny_pkg/model"));
    r.python_paths = vec![tmp.path().join("elsewhere"), site.clone()];
    let mut s = spec("pkg");
    s.packaged = Some(Packaged::Dir {
        module: "tiny_pkg".into(),
        subdir: "model".into(),
        pip: "tiny-pkg".into(),
    });
    assert_eq!(r.resolve(&s).unwrap(), site.join("tiny_pkg/model"));
}

#[test]
fn split_zip_packages_are_joined_and_unpacked_once() {
    let tmp = tempfile::tempdir().unwrap();
    let mut r = isolated(tmp.path());
    let site = tmp.path().join("site-packages");
    // Zip the tiny model under `tiny-root/`, then split the archive over three "packages".
    let mut buf = std::io::Cursor::new(Vec::new());
    {
        let mut zip = zip::ZipWriter::new(&mut buf);
        let opts = zip::write::SimpleFileOptions::default()
            .compression_method(zip::CompressionMethod::Deflated);
        for (rel, bytes) in files_of(&tiny("bert")) {
            zip.start_file(format!("tiny-root/{rel}"), opts).unwrap();
            zip.write_all(&bytes).unwrap();
        }
        zip.finish().unwrap();
    }
    let archive = buf.into_inner();
    let third = archive.len() / 3 + 1;
    let mut parts = Vec::new();
    for (i, chunk) in archive.chunks(third).enumerate() {
        let rel = format!("part_{i}/input/m.zip.00{}", i + 1);
        let p = site.join(&rel);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(&p, chunk).unwrap();
        parts.push(rel);
    }
    r.python_paths = vec![site.clone()];
    let mut s = spec("zipped");
    s.packaged = Some(Packaged::SplitZip {
        parts,
        root: "tiny-root".into(),
        pip: "parts".into(),
    });
    let dir = r.resolve(&s).unwrap();
    assert_eq!(dir, tmp.path().join("ember-cache/packaged/zipped"));
    assert_is_tiny_bert(&dir);
    // The unpacked copy is used from now on, even with the packages gone; no partial files remain.
    std::fs::remove_dir_all(&site).unwrap();
    assert_eq!(r.resolve(&s).unwrap(), dir);
    let leftovers: Vec<_> = std::fs::read_dir(dir.parent().unwrap())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with(".partial"))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
}

#[test]
fn a_broken_split_zip_leaves_nothing_behind() {
    let tmp = tempfile::tempdir().unwrap();
    let mut r = isolated(tmp.path());
    let site = tmp.path().join("site-packages");
    std::fs::create_dir_all(site.join("p")).unwrap();
    std::fs::write(site.join("p/a.zip.001"), b"PK\x03\x04 this is not a zip").unwrap();
    r.python_paths = vec![site];
    let mut s = spec("broken-zip");
    s.packaged = Some(Packaged::SplitZip {
        parts: vec!["p/a.zip.001".into()],
        root: "x".into(),
        pip: "p".into(),
    });
    let err = r.resolve(&s).unwrap_err();
    assert!(
        err.to_string().contains("a.zip") || err.to_string().contains("zip"),
        "{err}"
    );
    let packaged = tmp.path().join("ember-cache/packaged");
    let left: Vec<_> = std::fs::read_dir(&packaged)
        .map(|d| d.count())
        .into_iter()
        .collect();
    assert_eq!(
        left,
        vec![0],
        "partial files left in {}",
        packaged.display()
    );
}

#[test]
fn sharded_safetensors_load_like_a_single_file() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("sharded");
    copy_dir(&tiny("bert"), &dir);
    let all =
        candle_core::safetensors::load(dir.join("model.safetensors"), &candle_core::Device::Cpu)
            .unwrap();
    std::fs::remove_file(dir.join("model.safetensors")).unwrap();
    let mut shards: [HashMap<String, candle_core::Tensor>; 2] = Default::default();
    let mut map = serde_json::Map::new();
    for (i, (name, t)) in all.into_iter().enumerate() {
        let file = format!("model-0000{}-of-00002.safetensors", i % 2 + 1);
        map.insert(name.clone(), file.into());
        shards[i % 2].insert(name, t);
    }
    for (i, shard) in shards.iter().enumerate() {
        candle_core::safetensors::save(
            shard,
            dir.join(format!("model-0000{}-of-00002.safetensors", i + 1)),
        )
        .unwrap();
    }
    let index = serde_json::json!({"metadata": {}, "weight_map": map});
    std::fs::write(dir.join("model.safetensors.index.json"), index.to_string()).unwrap();
    assert_is_tiny_bert(&dir);
    // A shard named by the index but absent is an error naming it.
    std::fs::remove_file(dir.join("model-00002-of-00002.safetensors")).unwrap();
    let msg = Embedder::load("t", &dir).unwrap_err().to_string();
    assert!(msg.contains("model-00002-of-00002.safetensors"), "{msg}");
}

/// A local server speaking the part of the Hub protocol hf-hub uses: `GET
/// /{repo}/resolve/{rev}/{file}` with `Range`, answering with `ETag`, `X-Repo-Commit` and
/// `Content-Range`.
struct FakeHub {
    addr: std::net::SocketAddr,
    hits: Arc<AtomicUsize>,
}

impl FakeHub {
    fn start(repo: &str, files: Vec<(String, Vec<u8>)>) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let hits = Arc::new(AtomicUsize::new(0));
        let counter = hits.clone();
        let prefix = format!("/{repo}/resolve/main/");
        let files: HashMap<String, Vec<u8>> = files.into_iter().collect();
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(mut stream) = stream else { break };
                counter.fetch_add(1, Ordering::SeqCst);
                let mut reader = BufReader::new(stream.try_clone().unwrap());
                let mut line = String::new();
                if reader.read_line(&mut line).is_err() {
                    continue;
                }
                let path = line.split_whitespace().nth(1).unwrap_or("").to_string();
                let (mut start, mut end) = (0usize, None::<usize>);
                loop {
                    let mut h = String::new();
                    if reader.read_line(&mut h).unwrap_or(0) == 0 || h == "\r\n" {
                        break;
                    }
                    let lower = h.to_ascii_lowercase();
                    if let Some((s, e)) = lower
                        .trim()
                        .strip_prefix("range: bytes=")
                        .and_then(|v| v.split_once('-'))
                    {
                        start = s.parse().unwrap_or(0);
                        end = e.parse().ok();
                    }
                }
                let file = path.strip_prefix(&prefix).and_then(|f| files.get(f));
                let resp = match file {
                    None => {
                        b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
                            .to_vec()
                    }
                    Some(bytes) => {
                        let last = end.unwrap_or(usize::MAX).min(bytes.len() - 1);
                        let body = &bytes[start..=last];
                        let etag = format!("{:016x}", fnv(bytes));
                        let mut head = format!(
                            "HTTP/1.1 206 Partial Content\r\nETag: \"{etag}\"\r\nX-Repo-Commit: {}\r\nContent-Range: bytes {start}-{}/{}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                            "0123456789abcdef0123456789abcdef01234567",
                            start + body.len().saturating_sub(1),
                            bytes.len(),
                            body.len()
                        )
                        .into_bytes();
                        head.extend_from_slice(body);
                        head
                    }
                };
                let _ = stream.write_all(&resp);
                let _ = stream.flush();
            }
        });
        Self { addr, hits }
    }
}

fn fnv(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf29ce484222325u64, |h, b| {
        (h ^ *b as u64).wrapping_mul(0x100000001b3)
    })
}

#[test]
fn hub_download_through_hf_hub_from_a_local_hub() {
    let tmp = tempfile::tempdir().unwrap();
    let hub = FakeHub::start("ember-test/hubbed", files_of(&tiny("bert")));
    let mut r = isolated(tmp.path());
    r.offline = false;
    r.endpoint = format!("http://{}", hub.addr);
    let s = spec("hubbed");
    let dir = r.resolve(&s).unwrap();
    assert!(dir.starts_with(tmp.path().join("hf")), "{}", dir.display());
    assert!(hub.hits.load(Ordering::SeqCst) >= 6);
    assert_is_tiny_bert(&dir);
    // Now found in the Hugging Face cache, with the Hub unreachable and offline mode on.
    let mut offline = isolated(tmp.path());
    offline.offline = true;
    assert_eq!(offline.resolve(&s).unwrap(), dir);
}

#[test]
fn hub_errors_name_the_repo_and_file() {
    let tmp = tempfile::tempdir().unwrap();
    let hub = FakeHub::start("ember-test/other", vec![]);
    let mut r = isolated(tmp.path());
    r.offline = false;
    r.endpoint = format!("http://{}", hub.addr);
    let msg = r.resolve(&spec("missing-on-hub")).unwrap_err().to_string();
    assert!(
        msg.contains("ember-test/missing-on-hub") && msg.contains("config.json"),
        "{msg}"
    );
}
