//! Broken model directories of the newer families: each is refused with an error that names the
//! file and what is wrong (architectures, shapes, the missing feature), never a panic.

mod common;

use std::path::Path;

use common::{copy_dir, tiny};
use ember_core::{Embedder, ErrorKind};

fn broken(kind: &str, edit: impl FnOnce(&Path)) -> (tempfile::TempDir, String, ErrorKind) {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join(kind);
    copy_dir(&tiny(kind), &dir);
    edit(&dir);
    let err = Embedder::load(kind, &dir).unwrap_err();
    let kind = err.kind();
    (tmp, err.to_string(), kind)
}

fn edit_json(path: &Path, f: impl FnOnce(&mut serde_json::Value)) {
    let mut v: serde_json::Value = serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap();
    f(&mut v);
    std::fs::write(path, serde_json::to_vec(&v).unwrap()).unwrap();
}

#[test]
fn unknown_model_type_lists_the_supported_architectures() {
    let (_t, msg, kind) = broken("bert", |d| {
        edit_json(&d.join("config.json"), |v| v["model_type"] = "qwen9".into())
    });
    assert_eq!(kind, ErrorKind::Unsupported);
    for want in [
        "config.json",
        "qwen9",
        "bert",
        "nomic_bert",
        "t5",
        "model2vec",
        "mpnet",
    ] {
        assert!(msg.contains(want), "{want} missing from: {msg}");
    }
}

#[test]
fn nomic_v2_moe_config_is_not_supported_yet() {
    let (_t, msg, kind) = broken("nomic", |d| {
        edit_json(&d.join("config.json"), |v| {
            v["num_experts"] = 8.into();
            v["moe_every_n_layers"] = 2.into();
            v["moe_top_k"] = 2.into();
        })
    });
    assert_eq!(kind, ErrorKind::Unsupported);
    assert!(
        msg.contains("mixture-of-experts") && msg.contains("not supported yet"),
        "{msg}"
    );
    assert!(msg.contains("config.json"), "{msg}");
}

#[test]
fn static_model_without_embeddings_names_the_file_and_its_tensors() {
    let (_t, msg, kind) = broken("potion", |d| {
        let path = d.join("model.safetensors");
        let t =
            candle_core::Tensor::zeros((3, 4), candle_core::DType::F32, &candle_core::Device::Cpu)
                .unwrap();
        candle_core::safetensors::save(&[("vectors", t)].into_iter().collect(), &path).unwrap();
    });
    assert_eq!(kind, ErrorKind::ModelLoad);
    assert!(msg.contains("model.safetensors"), "{msg}");
    assert!(
        msg.contains("`embeddings`") && msg.contains("`vectors` [3, 4]"),
        "{msg}"
    );
}

#[test]
fn static_model_with_a_short_table_names_the_shapes() {
    let (_t, msg, kind) = broken("potion", |d| {
        let path = d.join("model.safetensors");
        let t =
            candle_core::Tensor::zeros((5, 64), candle_core::DType::F32, &candle_core::Device::Cpu)
                .unwrap();
        candle_core::safetensors::save(&[("embeddings", t)].into_iter().collect(), &path).unwrap();
    });
    assert_eq!(kind, ErrorKind::ModelLoad);
    assert!(
        msg.contains("model.safetensors") && msg.contains("[5, 64]") && msg.contains("mapping"),
        "{msg}"
    );
}

#[test]
fn dense_modules_that_do_not_chain_name_the_file_and_the_shapes() {
    // The second Dense reads 40 values; say it reads 33.
    let (_t, msg, kind) = broken("t5-dense", |d| {
        edit_json(&d.join("3_Dense/config.json"), |v| {
            v["in_features"] = 33.into()
        })
    });
    assert_eq!(kind, ErrorKind::ModelLoad);
    assert!(
        msg.contains("3_Dense") && msg.contains("config.json"),
        "{msg}"
    );
    assert!(msg.contains("33") && msg.contains("40"), "{msg}");

    // A config that chains but weights of another shape.
    let (_t, msg, _) = broken("t5-dense", |d| {
        edit_json(&d.join("3_Dense/config.json"), |v| {
            v["out_features"] = 30.into()
        })
    });
    assert!(
        msg.contains("3_Dense") && msg.contains("model.safetensors"),
        "{msg}"
    );
    assert!(
        msg.contains("[32, 40]") && msg.contains("[30, 40]"),
        "{msg}"
    );
}

#[test]
fn an_unknown_dense_activation_names_the_file() {
    let (_t, msg, _) = broken("t5-dense", |d| {
        edit_json(&d.join("2_Dense/config.json"), |v| {
            v["activation_function"] = "torch.nn.modules.activation.Mish".into()
        })
    });
    assert!(msg.contains("2_Dense") && msg.contains("Mish"), "{msg}");
}

#[test]
fn a_bad_t5_feed_forward_names_the_field() {
    let (_t, msg, _) = broken("t5-dense", |d| {
        edit_json(&d.join("config.json"), |v| {
            v["feed_forward_proj"] = "gated-mish".into()
        })
    });
    assert!(
        msg.contains("feed_forward_proj") && msg.contains("gated-mish"),
        "{msg}"
    );
}
