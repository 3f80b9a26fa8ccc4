//! Bad inputs and broken model directories: each gives a clear error naming the problem.

mod common;

use std::path::Path;

use common::{copy_dir, tiny};
use ember_core::{EmbedOptions, Embedder, Error, ErrorKind, ModelManager, Registry, Resolver};

fn broken(edit: impl FnOnce(&Path)) -> (tempfile::TempDir, Result<Embedder, Error>) {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("m");
    copy_dir(&tiny("bert"), &dir);
    edit(&dir);
    let res = Embedder::load("broken", &dir);
    (tmp, res)
}

fn load_err(edit: impl FnOnce(&Path)) -> String {
    let (_tmp, res) = broken(edit);
    let err = res.expect_err("loading a broken directory must fail");
    assert_eq!(err.kind(), ErrorKind::ModelLoad, "{err}");
    err.to_string()
}

#[test]
fn missing_tokenizer_is_named() {
    let msg = load_err(|d| std::fs::remove_file(d.join("tokenizer.json")).unwrap());
    assert!(msg.contains("tokenizer.json"), "{msg}");
}

#[test]
fn missing_config_is_named() {
    let msg = load_err(|d| std::fs::remove_file(d.join("config.json")).unwrap());
    assert!(msg.contains("config.json"), "{msg}");
}

#[test]
fn missing_weights_are_named() {
    let msg = load_err(|d| std::fs::remove_file(d.join("model.safetensors")).unwrap());
    assert!(msg.contains("model.safetensors"), "{msg}");
}

#[test]
fn pickle_only_directory_is_refused() {
    let msg = load_err(|d| {
        std::fs::rename(d.join("model.safetensors"), d.join("pytorch_model.bin")).unwrap()
    });
    assert!(msg.contains("never unpickles"), "{msg}");
}

#[test]
fn corrupt_safetensors_is_reported() {
    let msg = load_err(|d| {
        std::fs::write(d.join("model.safetensors"), b"\x10\0\0\0\0\0\0\0{not json").unwrap()
    });
    assert!(
        msg.contains("corrupt safetensors") && msg.contains("model.safetensors"),
        "{msg}"
    );
}

#[test]
fn truncated_safetensors_is_reported() {
    let msg = load_err(|d| {
        let p = d.join("model.safetensors");
        let bytes = std::fs::read(&p).unwrap();
        std::fs::write(&p, &bytes[..bytes.len() / 2]).unwrap();
    });
    assert!(msg.contains("corrupt safetensors"), "{msg}");
}

#[test]
fn config_disagreeing_with_weights_names_the_tensor() {
    let msg = load_err(|d| {
        let p = d.join("config.json");
        let mut cfg: serde_json::Value =
            serde_json::from_slice(&std::fs::read(&p).unwrap()).unwrap();
        cfg["intermediate_size"] = 48.into();
        std::fs::write(&p, serde_json::to_vec(&cfg).unwrap()).unwrap();
    });
    assert!(
        msg.contains("intermediate.dense.weight") && msg.contains("[48, 32]"),
        "{msg}"
    );
}

#[test]
fn inconsistent_config_is_refused() {
    let msg = load_err(|d| {
        let p = d.join("config.json");
        let mut cfg: serde_json::Value =
            serde_json::from_slice(&std::fs::read(&p).unwrap()).unwrap();
        cfg["num_attention_heads"] = 5.into();
        std::fs::write(&p, serde_json::to_vec(&cfg).unwrap()).unwrap();
    });
    assert!(msg.contains("num_attention_heads"), "{msg}");
}

#[test]
fn malformed_config_json_names_the_file() {
    let msg = load_err(|d| std::fs::write(d.join("config.json"), b"{").unwrap());
    assert!(msg.contains("config.json"), "{msg}");
}

fn model() -> Embedder {
    Embedder::load("tiny-bert", &tiny("bert")).unwrap()
}

#[test]
fn unknown_prompt_lists_known_ones() {
    let m = model();
    let err = m
        .embed(
            &["x".into()],
            &EmbedOptions {
                prompt_name: Some("query".into()),
                ..Default::default()
            },
        )
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidInput);
    assert!(err.to_string().contains("query") && err.to_string().contains("tiny-bert"));
}

#[test]
fn dimensions_out_of_range_name_the_limit() {
    let m = model();
    for d in [0, 33] {
        let err = m
            .embed(
                &["x".into()],
                &EmbedOptions {
                    dimensions: Some(d),
                    ..Default::default()
                },
            )
            .unwrap_err();
        assert_eq!(err.kind(), ErrorKind::InvalidInput);
        assert!(err.to_string().contains("between 1 and 32"), "{err}");
    }
}

#[test]
fn too_long_without_truncation_names_input_and_limit() {
    let m = model();
    let long = "hello world ".repeat(40);
    let err = m
        .embed(
            &["short".into(), long],
            &EmbedOptions {
                truncate: false,
                ..Default::default()
            },
        )
        .unwrap_err();
    let msg = err.to_string();
    assert!(
        msg.contains("input 1") && msg.contains("accepts 32"),
        "{msg}"
    );
}

#[test]
fn empty_list_gives_zero_rows() {
    let out = model().embed(&[], &EmbedOptions::default()).unwrap();
    assert_eq!((out.rows, out.dimension, out.data.len()), (0, 32, 0));
}

#[test]
fn unknown_model_id_lists_known_models() {
    let mgr = ModelManager::new(Registry::builtin(), Resolver::from_env());
    let err = mgr.lease(Some("nope-model"), None).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::ModelNotFound);
    assert!(err.to_string().contains("all-MiniLM-L6-v2"));
}

#[test]
fn unsupported_architecture_says_so() {
    let mgr = ModelManager::new(Registry::builtin(), Resolver::from_env());
    let err = mgr
        .lease(Some("nomic-embed-text-v2-moe"), None)
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Unsupported);
    assert!(err.to_string().contains("mixture-of-experts"), "{err}");
}

#[test]
fn a_directory_works_as_a_model_id() {
    let mgr = ModelManager::new(Registry::builtin(), Resolver::from_env());
    let dir = tiny("mpnet");
    let out = mgr
        .embed(
            Some(dir.to_str().unwrap()),
            None,
            &["hi".into()],
            &EmbedOptions::default(),
        )
        .unwrap();
    assert_eq!(out.dimension, 32);
    assert_eq!(out.model, dir.to_str().unwrap());
}
