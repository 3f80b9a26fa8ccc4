//! The rotary-position families (Qwen3, Gemma3, ModernBERT, Alibaba GTE): the one config enum and
//! model shell the loader and the encoder dispatch to, and what they read alike: the RoPE base
//! from either config layout (transformers 4's `rope_theta` / `rope_scaling`, transformers 5's
//! `rope_parameters`, one per layer type where layers differ), with a clear error for any
//! scaling Ember does not run; and projections fused from several checkpoint matrices of
//! different widths (grouped-query Q, K, V).

use std::path::Path;

use candle_core::Tensor;
use serde_json::Value;

use super::block::{Block, Norm};
use super::gemma3::{self, Gemma3Config};
use super::gte::{self, GteConfig};
use super::modernbert::{self, ModernBertConfig};
use super::qwen3::{self, Qwen3Config};
use super::{Batch, Embedding, Linear, Unpadded};
use crate::error::{Error, Result};
use crate::kernels::rope::{Rope, RopeTable};
use crate::weights::Weights;

/// The `model_type`s of the rotary families.
pub const ROTARY_TYPES: &[&str] = &["qwen3", "gemma3_text", "modernbert", "new", "gte"];

/// A rotary family's `config.json`.
#[derive(Debug, Clone)]
pub enum RotaryConfig {
    Qwen3(Qwen3Config),
    Gemma3(Gemma3Config),
    ModernBert(ModernBertConfig),
    Gte(GteConfig),
}

impl RotaryConfig {
    /// Parses `config.json` bytes for `model_type`: one of [`ROTARY_TYPES`], or `qwen3_moe`,
    /// which is read only to be refused by name.
    pub fn parse(model_type: &str, bytes: &[u8]) -> serde_json::Result<Self> {
        match model_type {
            "qwen3" | "qwen3_moe" => serde_json::from_slice(bytes).map(RotaryConfig::Qwen3),
            "gemma3_text" => serde_json::from_slice(bytes).map(RotaryConfig::Gemma3),
            "modernbert" => serde_json::from_slice(bytes).map(RotaryConfig::ModernBert),
            "new" | "gte" => serde_json::from_slice(bytes).map(RotaryConfig::Gte),
            other => Err(serde::de::Error::custom(format!(
                "model_type `{other}` is not a rotary family"
            ))),
        }
    }

    /// Checks sizes and refuses unsupported options by name.
    pub fn validate(&self, path: &Path) -> Result<()> {
        match self {
            RotaryConfig::Qwen3(c) => c.validate(path),
            RotaryConfig::Gemma3(c) => c.validate(path),
            RotaryConfig::ModernBert(c) => c.validate(path),
            RotaryConfig::Gte(c) => c.validate(path),
        }
    }

    /// `model_type`.
    pub fn model_type(&self) -> &str {
        match self {
            RotaryConfig::Qwen3(c) => &c.model_type,
            RotaryConfig::Gemma3(_) => "gemma3_text",
            RotaryConfig::ModernBert(_) => "modernbert",
            RotaryConfig::Gte(c) => &c.model_type,
        }
    }

    /// `(vocab_size, pad_token_id, max_position_embeddings)`.
    pub fn sizes(&self) -> (usize, Option<u32>, usize) {
        match self {
            RotaryConfig::Qwen3(c) => (c.vocab_size, c.pad_token_id, c.max_position_embeddings),
            RotaryConfig::Gemma3(c) => (c.vocab_size, c.pad_token_id, c.max_position_embeddings),
            RotaryConfig::ModernBert(c) => {
                (c.vocab_size, c.pad_token_id, c.max_position_embeddings)
            }
            RotaryConfig::Gte(c) => (c.vocab_size, c.pad_token_id, c.max_position_embeddings),
        }
    }
}

/// A rotary family's model: token embeddings, the shared blocks (`super::block`) run unpadded,
/// and the norms and rotary tables around them. Each family's `load` fills the parts it has;
/// the forward pass and the accessors are this one shell's.
#[derive(Debug)]
pub struct RotaryModel {
    pub(super) embed: Embedding,
    /// Token-type embeddings added to the tokens' (GTE).
    pub(super) token_type: Option<Embedding>,
    /// Multiplies the embeddings (Gemma3).
    pub(super) embed_scale: Option<f32>,
    /// Norm of the embeddings (ModernBERT, GTE).
    pub(super) embed_norm: Option<Norm>,
    pub(super) layers: Vec<Block>,
    /// Norm after the last block (Qwen3, Gemma3, ModernBERT).
    pub(super) final_norm: Option<Norm>,
    /// One rotary embedding per kind of layer; a block's `rope` indexes them.
    pub(super) ropes: Vec<RopeSpec>,
    pub(super) hidden: usize,
    pub(super) max_positions: usize,
    pub(super) device: candle_core::Device,
}

impl RotaryModel {
    /// Loads the model `cfg` describes (`path` is the config, for errors).
    pub fn load(w: &Weights, cfg: &RotaryConfig, path: &Path) -> Result<Self> {
        match cfg {
            RotaryConfig::Qwen3(c) => qwen3::load(w, c, path),
            RotaryConfig::Gemma3(c) => gemma3::load(w, c, path),
            RotaryConfig::ModernBert(c) => modernbert::load(w, c, path),
            RotaryConfig::Gte(c) => gte::load(w, c, path),
        }
    }

    /// Last hidden state `[batch * seq, hidden]` on the host (zero at padding).
    pub(crate) fn forward_host(&self, batch: &Batch) -> candle_core::Result<Vec<f32>> {
        let u = Unpadded::new(batch);
        let mut x = vec![0f32; u.tokens() * self.hidden];
        self.embed.add_into(&u.ids, &mut x)?;
        if let Some(tt) = &self.token_type {
            tt.add_into(&u.type_ids, &mut x)?;
        }
        if let Some(s) = self.embed_scale {
            x.iter_mut().for_each(|v| *v *= s);
        }
        if let Some(n) = &self.embed_norm {
            n.add_in_place(&mut x, &[]);
        }
        let d = self.layers.first().map_or(2, |l| l.heads.head_dim);
        let tables: Vec<RopeTable> = self.ropes.iter().map(|r| r.table(d, u.max_len())).collect();
        for l in &self.layers {
            l.forward(&mut x, &u, &tables)?;
        }
        if let Some(n) = &self.final_norm {
            n.add_in_place(&mut x, &[]);
        }
        Ok(u.scatter(&x, self.hidden))
    }

    /// Longest input the config allows.
    pub fn max_positions(&self) -> usize {
        self.max_positions
    }

    pub(crate) fn hidden_size(&self) -> usize {
        self.hidden
    }

    pub(crate) fn device(&self) -> &candle_core::Device {
        &self.device
    }

    pub(crate) fn bytes(&self) -> usize {
        let norms = [&self.embed_norm, &self.final_norm];
        self.embed.bytes()
            + self.token_type.as_ref().map_or(0, Embedding::bytes)
            + norms
                .iter()
                .filter_map(|n| n.as_ref())
                .map(Norm::bytes)
                .sum::<usize>()
            + self.layers.iter().map(Block::bytes).sum::<usize>()
    }
}

/// A rotary embedding's frequencies: `1 / base^(2i/d)`, or Alibaba GTE's fixed NTK scaling of
/// them (`NTKScalingRotaryEmbedding`: the base times `factor`, every frequency divided by
/// `factor^(2/d)`), which its code applies at every length.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct RopeSpec {
    /// `rope_theta`.
    pub base: f64,
    /// The `ntk` scaling factor, when set.
    pub ntk: Option<f64>,
}

impl RopeSpec {
    /// The cos/sin table of positions `0..len` for heads of width `d`.
    pub fn table(&self, d: usize, len: usize) -> RopeTable {
        let rope = Rope {
            base: self.base,
            rotary_dim: d,
            interleaved: false,
            scaling: None,
        };
        match self.ntk {
            None => rope.table(self.base, len),
            Some(f) => {
                let shrink = f.powf(2.0 / d as f64) as f32;
                let inv: Vec<f32> = rope
                    .inv_freq(self.base * f)
                    .into_iter()
                    .map(|v| v / shrink)
                    .collect();
                RopeTable::from_inv_freq(&inv, len)
            }
        }
    }
}

/// The scaling type a rope object names (`rope_type`, or the older `type`), `default` if none.
fn rope_type(v: &Value) -> &str {
    v.get("rope_type")
        .or_else(|| v.get("type"))
        .and_then(Value::as_str)
        .unwrap_or("default")
}

/// A checkpoint option Ember does not run (kind `Unsupported`: the caller's model, not a fault).
pub(crate) fn unsupported_feature(path: &Path, feature: String) -> Error {
    Error::UnsupportedFeature {
        path: path.to_path_buf(),
        feature,
    }
}

fn unsupported(path: &Path, kind: &str, allowed: &str) -> Error {
    unsupported_feature(
        path,
        format!("RoPE scaling type `{kind}` for this architecture (Ember runs {allowed})"),
    )
}

/// The base of a model with one rotary embedding: `rope_parameters` (transformers 5), else
/// `rope_theta` and `rope_scaling` (transformers 4), else `default`. Only the plain (`default`)
/// type is accepted; anything else is an error naming it.
pub(crate) fn single(
    path: &Path,
    params: Option<&Value>,
    scaling: Option<&Value>,
    theta: Option<f64>,
    default: f64,
) -> Result<RopeSpec> {
    let theta_of = |v: &Value| v.get("rope_theta").and_then(Value::as_f64);
    for v in [params, scaling].into_iter().flatten() {
        if v.is_object() && rope_type(v) != "default" {
            return Err(unsupported(path, rope_type(v), "plain RoPE (`default`)"));
        }
    }
    Ok(RopeSpec {
        base: params.and_then(theta_of).or(theta).unwrap_or(default),
        ntk: None,
    })
}

/// As [`single`], also accepting Alibaba GTE's fixed `ntk` scaling (`rope_scaling: {type: ntk,
/// factor}`; its `mixed_b` variant is refused).
pub(crate) fn with_ntk(
    path: &Path,
    params: Option<&Value>,
    scaling: Option<&Value>,
    theta: Option<f64>,
    default: f64,
) -> Result<RopeSpec> {
    match scaling.filter(|v| v.is_object() && rope_type(v) == "ntk") {
        Some(v) => {
            if v.get("mixed_b").is_some_and(|m| !m.is_null()) {
                return Err(unsupported(path, "ntk with mixed_b", "fixed NTK (`ntk`)"));
            }
            let factor = v
                .get("factor")
                .and_then(Value::as_f64)
                .ok_or_else(|| Error::Config {
                    path: path.to_path_buf(),
                    message: "rope_scaling of type `ntk` has no numeric `factor`".into(),
                })?;
            Ok(RopeSpec {
                ntk: Some(factor),
                ..single(path, params, None, theta, default)?
            })
        }
        None => single(path, params, scaling, theta, default),
    }
}

/// The base of one layer type (`full_attention`, `sliding_attention`) of a model with a rotary
/// embedding per type: `rope_parameters[layer_type]` (transformers 5) or `fallback` (the older
/// configs' per-type keys, e.g. `rope_local_base_freq`, `global_rope_theta`). Plain RoPE only.
pub(crate) fn per_type(
    path: &Path,
    params: Option<&Value>,
    layer_type: &str,
    fallback: f64,
) -> Result<RopeSpec> {
    let own = params.and_then(|p| p.get(layer_type));
    single(path, own, None, None, fallback)
}

/// One linear layer from several checkpoint matrices that read the same input, concatenated
/// in order: `(prefix, out_features)` each, `{prefix}.weight` `[out, in_dim]` and, when `bias`,
/// `{prefix}.bias`.
pub(crate) fn fused(
    w: &Weights,
    parts: &[(&str, usize)],
    in_dim: usize,
    bias: bool,
) -> Result<Linear> {
    let tensor_err = |source| Error::Tensor {
        model: w.model().to_string(),
        source,
    };
    let mut weights = Vec::with_capacity(parts.len());
    let mut biases = Vec::with_capacity(parts.len());
    for &(p, out) in parts {
        weights.push(w.get(&format!("{p}.weight"), &[out, in_dim])?);
        if bias {
            biases.push(w.get(&format!("{p}.bias"), &[out])?);
        }
    }
    let weight = Tensor::cat(&weights, 0).map_err(tensor_err)?;
    let bias = bias
        .then(|| Tensor::cat(&biases, 0).map_err(tensor_err))
        .transpose()?;
    Linear::from_tensors(w, weight, bias)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn bases_come_from_either_config_layout() {
        let p = Path::new("config.json");
        let new = json!({"rope_type": "default", "rope_theta": 1e6});
        assert_eq!(single(p, Some(&new), None, None, 1e4).unwrap().base, 1e6);
        assert_eq!(single(p, None, None, Some(5e5), 1e4).unwrap().base, 5e5);
        assert_eq!(
            single(p, None, Some(&Value::Null), None, 1e4).unwrap().base,
            1e4
        );
        let typed = json!({"full_attention": {"rope_theta": 160000.0}, "sliding_attention": {}});
        assert_eq!(
            per_type(p, Some(&typed), "full_attention", 1.0)
                .unwrap()
                .base,
            160000.0
        );
        assert_eq!(
            per_type(p, Some(&typed), "sliding_attention", 1e4)
                .unwrap()
                .base,
            1e4
        );
    }

    #[test]
    fn unsupported_scaling_is_named() {
        let p = Path::new("config.json");
        for v in [
            json!({"rope_type": "yarn", "factor": 4.0}),
            json!({"type": "dynamic"}),
        ] {
            let err = single(p, None, Some(&v), Some(1e6), 1e4)
                .unwrap_err()
                .to_string();
            assert!(err.contains(rope_type(&v)), "{err}");
        }
        let ntk = json!({"type": "ntk", "factor": 2.0});
        assert!(single(p, None, Some(&ntk), None, 1e4).is_err());
        let spec = with_ntk(p, None, Some(&ntk), Some(2e4), 1e4).unwrap();
        assert_eq!((spec.base, spec.ntk), (2e4, Some(2.0)));
        let mixed = json!({"type": "ntk", "factor": 2.0, "mixed_b": 0.6});
        assert!(with_ntk(p, None, Some(&mixed), None, 1e4)
            .unwrap_err()
            .to_string()
            .contains("mixed_b"));
    }

    /// Fixed NTK: frequencies of base `b · f`, each divided by `f^(2/d)`.
    #[test]
    fn ntk_table_follows_alibabas_formula() {
        let (d, f, b) = (16usize, 2.0f64, 20000.0f64);
        let t = RopeSpec {
            base: b,
            ntk: Some(f),
        }
        .table(d, 3);
        let plain = RopeSpec { base: b, ntk: None }.table(d, 3);
        assert_eq!(t.len(), 3);
        for i in 0..d / 2 {
            let want = 1.0 / (b * f).powf(2.0 * i as f64 / d as f64) / f.powf(2.0 / d as f64);
            // Position 1's angle is the frequency itself.
            let (c, s) = t.at(1, i);
            assert!((s.atan2(c) as f64 - want).abs() < 1e-6, "frequency {i}");
            assert_ne!(plain.at(1, i), (c, s));
        }
    }
}
