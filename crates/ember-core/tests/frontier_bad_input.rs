//! Bad input to the rotary families: configs with options Ember does not run get an error that
//! names the option; an input over the limit without truncation names both numbers; the input
//! cap (`LoadOptions::max_input_tokens`, the manager's `max_input_tokens`) below a model's own
//! limit cuts inputs to it, or refuses them naming it.

mod common;

use candle_core::Device;
use common::{cosine, tiny};
use ember_core::{
    EmbedOptions, Embedder, Error, ErrorKind, LoadOptions, ManagerConfig, ModelManager, ModelSpec,
    Registry, Resolver,
};
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

#[test]
fn the_input_cap_cuts_or_refuses_at_the_cap() {
    let mut reg = Registry::builtin();
    reg.register(ModelSpec::for_path("tiny-qwen3", &tiny("qwen3")))
        .unwrap();
    let manager = ModelManager::with_config(
        reg,
        Resolver::from_env(),
        ManagerConfig {
            max_input_tokens: 64,
            ..ManagerConfig::default()
        },
    );
    let capped = manager.lease(Some("tiny-qwen3"), None).unwrap();
    assert_eq!(capped.info().max_seq_length, 64);
    // The default cap (8,192) is over the tiny model's own 2,048.
    let own = Embedder::load("qwen3", &tiny("qwen3")).unwrap();
    assert_eq!(own.info().max_seq_length, 2048);

    let long = vec!["hello world ".repeat(100)];
    let cut = capped.tokenize(&long, &EmbedOptions::default()).unwrap();
    assert_eq!(cut[0].ids.len(), 64);
    // Cut at the cap: the vector of the uncapped model asked for 64 tokens.
    let at_64 = EmbedOptions {
        max_length: Some(64),
        ..Default::default()
    };
    let want = own.embed(&long, &at_64).unwrap();
    let got = capped.embed(&long, &EmbedOptions::default()).unwrap();
    assert!(cosine(got.row(0), want.row(0)) > 0.99999);

    let refuse = EmbedOptions {
        truncate: false,
        ..Default::default()
    };
    let err = capped.embed(&long, &refuse).unwrap_err();
    assert!(
        matches!(err, Error::InputTooLong { limit: 64, tokens, .. } if tokens > 64),
        "{err}"
    );
    assert!(err.to_string().contains("accepts 64"), "{err}");
    // Inputs within the cap pass.
    let short = vec!["hello world".to_string()];
    capped.embed(&short, &refuse).unwrap();

    // A cap of zero is refused, naming the setting.
    let zero = LoadOptions {
        max_input_tokens: 0,
        ..LoadOptions::default()
    };
    let err = Embedder::load_with("qwen3", &tiny("qwen3"), &Device::Cpu, &zero).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidInput, "{err}");
    assert!(err.to_string().contains("max_input_tokens"), "{err}");
}
