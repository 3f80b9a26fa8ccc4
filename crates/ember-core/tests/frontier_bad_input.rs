//! Bad input to the rotary families: configs with options Ember does not run get an error that
//! names the option; an input over the limit without truncation names both numbers.

mod common;

use common::tiny;
use ember_core::{EmbedOptions, Embedder, Error, ErrorKind};
use serde_json::{json, Value};

/// Loads a copy of the tiny Qwen3 whose config `edit` changes; the error's message, after
/// checking its kind (`Unsupported` for an option Ember does not run, `ModelLoad` for sizes that
/// do not fit together).
fn load_edited(kind: ErrorKind, edit: impl FnOnce(&mut Value)) -> String {
    let tmp = tempfile::tempdir().unwrap();
    for entry in std::fs::read_dir(tiny("qwen3")).unwrap() {
        let entry = entry.unwrap();
        if entry.file_type().unwrap().is_file() {
            std::fs::copy(entry.path(), tmp.path().join(entry.file_name())).unwrap();
        }
    }
    let path = tmp.path().join("config.json");
    let mut cfg: Value = serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
    edit(&mut cfg);
    std::fs::write(&path, serde_json::to_vec(&cfg).unwrap()).unwrap();
    let err = Embedder::load("edited-qwen3", tmp.path()).unwrap_err();
    assert_eq!(err.kind(), kind, "{err}");
    err.to_string()
}

#[test]
fn unsupported_qwen3_options_are_named() {
    let yarn = load_edited(ErrorKind::Unsupported, |c| {
        c["rope_parameters"] = json!({"rope_type": "yarn", "rope_theta": 1e6, "factor": 4.0});
    });
    assert!(
        yarn.contains("`yarn`") && yarn.contains("config.json"),
        "{yarn}"
    );
    let old_layout = load_edited(ErrorKind::Unsupported, |c| {
        c.as_object_mut().unwrap().remove("rope_parameters");
        c["rope_theta"] = json!(1e6);
        c["rope_scaling"] = json!({"type": "dynamic", "factor": 2.0});
    });
    assert!(old_layout.contains("`dynamic`"), "{old_layout}");
    let moe = load_edited(ErrorKind::Unsupported, |c| c["num_experts"] = json!(8));
    assert!(
        moe.contains("`num_experts` = 8") && moe.contains("mixture-of-experts"),
        "{moe}"
    );
    let moe_type = load_edited(ErrorKind::Unsupported, |c| {
        c["model_type"] = json!("qwen3_moe")
    });
    assert!(moe_type.contains("qwen3_moe"), "{moe_type}");
    let act = load_edited(ErrorKind::Unsupported, |c| c["hidden_act"] = json!("gelu"));
    assert!(
        act.contains("hidden_act") && act.contains("`gelu`"),
        "{act}"
    );
    let heads = load_edited(ErrorKind::ModelLoad, |c| {
        c["num_key_value_heads"] = json!(3)
    });
    assert!(heads.contains("4 query heads cannot share 3"), "{heads}");
}

#[test]
fn over_the_limit_without_truncation_names_both_numbers() {
    let model = Embedder::load("qwen3", &tiny("qwen3")).unwrap();
    let long = "hello world ".repeat(1500);
    let err = model
        .embed(
            &["short".to_string(), long],
            &EmbedOptions {
                truncate: false,
                ..Default::default()
            },
        )
        .unwrap_err();
    match &err {
        Error::InputTooLong {
            index,
            tokens,
            limit,
            ..
        } => {
            assert_eq!((*index, *limit), (1, 2048));
            assert!(*tokens > 2048);
            let msg = err.to_string();
            assert!(
                msg.contains(&tokens.to_string()) && msg.contains("2048"),
                "{msg}"
            );
        }
        other => panic!("unexpected {other}"),
    }
}
