//! `Weights::load` reads safetensors one tensor at a time: files written by candle's own writer
//! (an independent implementation) come back with their values, half-precision ones as f32, and
//! headers that claim more than the file holds are refused before anything is allocated.

use std::collections::HashMap;

use candle_core::{DType, Device, Tensor};
use ember_core::weights::Weights;

fn written(
    dir: &std::path::Path,
    name: &str,
    tensors: &HashMap<String, Tensor>,
) -> std::path::PathBuf {
    let path = dir.join(name);
    candle_core::safetensors::save(tensors, &path).unwrap();
    path
}

#[test]
fn every_dtype_comes_back_with_its_values() {
    let dir = tempfile::tempdir().unwrap();
    // Values exactly representable in f16 and bf16.
    let values = [0.5f32, -1.25, 3.0, 0.0, 1024.0, -0.015625];
    let base = Tensor::from_slice(&values, (2, 3), &Device::Cpu).unwrap();
    let mut first = HashMap::new();
    first.insert("a.f32".to_string(), base.clone());
    first.insert("a.f16".to_string(), base.to_dtype(DType::F16).unwrap());
    let mut second = HashMap::new();
    second.insert("b.bf16".to_string(), base.to_dtype(DType::BF16).unwrap());
    let ids = Tensor::from_slice(&[7i64, -3, 1 << 40], 3, &Device::Cpu).unwrap();
    second.insert("b.ids".to_string(), ids);
    let files = [
        written(dir.path(), "one.safetensors", &first),
        written(dir.path(), "two.safetensors", &second),
    ];
    let w = Weights::load("t", &files, &Device::Cpu).unwrap();
    for name in ["a.f32", "a.f16", "b.bf16"] {
        let t = w.get(name, &[2, 3]).unwrap();
        assert_eq!(t.dtype(), DType::F32, "{name}");
        let got: Vec<f32> = t.flatten_all().unwrap().to_vec1().unwrap();
        assert_eq!(got, values, "{name}");
    }
    let ids = w.get("b.ids", &[3]).unwrap();
    assert_eq!(ids.to_vec1::<i64>().unwrap(), [7, -3, 1 << 40]);
}

/// A safetensors file with `header` as its JSON header and `data` after it.
fn raw(dir: &std::path::Path, header: &str, data: &[u8]) -> std::path::PathBuf {
    let path = dir.join("raw.safetensors");
    let mut bytes = (header.len() as u64).to_le_bytes().to_vec();
    bytes.extend_from_slice(header.as_bytes());
    bytes.extend_from_slice(data);
    std::fs::write(&path, bytes).unwrap();
    path
}

#[test]
fn headers_claiming_more_than_the_file_holds_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let load = |header: &str, data: &[u8]| {
        let path = raw(dir.path(), header, data);
        Weights::load("t", &[path], &Device::Cpu)
            .unwrap_err()
            .to_string()
    };
    // A terabyte tensor in a 16-byte data section: refused by its offsets, nothing allocated.
    let huge = r#"{"w":{"dtype":"F32","shape":[262144,1048576],"data_offsets":[0,1099511627776]}}"#;
    let err = load(huge, &[0; 16]);
    assert!(
        err.contains("corrupt safetensors") && err.contains("`w` claims bytes"),
        "{err}"
    );
    // A shape whose element count overflows (the header parser's own check).
    let overflow =
        r#"{"w":{"dtype":"F32","shape":[4294967296,4294967296,16],"data_offsets":[0,16]}}"#;
    let err = load(overflow, &[0; 16]);
    assert!(err.contains("overflow"), "{err}");
    // A shape that does not match its bytes (the header parser's own check).
    let short = r#"{"w":{"dtype":"F32","shape":[5],"data_offsets":[0,16]}}"#;
    let err = load(short, &[0; 16]);
    assert!(err.contains("invalid shape"), "{err}");
    // A header longer than the file.
    let path = dir.path().join("long.safetensors");
    let mut bytes = 1_000_000u64.to_le_bytes().to_vec();
    bytes.extend_from_slice(b"{}");
    std::fs::write(&path, bytes).unwrap();
    let err = Weights::load("t", &[path], &Device::Cpu)
        .unwrap_err()
        .to_string();
    assert!(err.contains("invalid header length"), "{err}");
    // A well-formed file still loads.
    let ok = r#"{"w":{"dtype":"F32","shape":[4],"data_offsets":[0,16]}}"#;
    let path = raw(dir.path(), ok, &[0; 16]);
    assert!(Weights::load("t", &[path], &Device::Cpu).is_ok());
}
