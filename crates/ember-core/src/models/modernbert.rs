//! ModernBERT (gte-modernbert, modernbert-embed, granite-embedding R2), as in transformers'
//! `modeling_modernbert.py`: token embeddings and a layer norm, pre-norm layers without biases
//! (the first layer has no attention norm), a fused `Wqkv` projection, alternating global layers
//! and local ones that see `|i - j| <= local_attention / 2` (`global_attn_every_n_layers`, or
//! `layer_types`), RoPE at a different base for each kind, a GeGLU feed-forward (`Wi` gives
//! `[input | gate]`, `act(input) * gate`) and a final norm. Runs unpadded, as ModernBERT's own
//! code does with flash-attention.

use std::path::Path;

use serde::Deserialize;

use super::block::{Block, Norm};
use super::rotary::{self, RopeSpec, RotaryModel};
use super::{Embedding, Linear};
use crate::error::{Error, Result};
use crate::kernels::flash::{Heads, Span};
use crate::kernels::gated::Gate;
use crate::weights::Weights;

/// The fields of a `modernbert` `config.json` Ember reads (transformers' `ModernBertConfig`, in
/// the layout of the published checkpoints or the one transformers 5 writes).
#[derive(Debug, Clone, Deserialize)]
pub struct ModernBertConfig {
    pub vocab_size: usize,
    pub hidden_size: usize,
    pub intermediate_size: usize,
    pub num_hidden_layers: usize,
    pub num_attention_heads: usize,
    #[serde(default = "default_act")]
    pub hidden_activation: String,
    pub max_position_embeddings: usize,
    #[serde(default = "default_eps")]
    pub norm_eps: f64,
    #[serde(default)]
    pub norm_bias: bool,
    #[serde(default)]
    pub attention_bias: bool,
    #[serde(default)]
    pub mlp_bias: bool,
    #[serde(default = "default_local")]
    pub local_attention: usize,
    #[serde(default = "default_every")]
    pub global_attn_every_n_layers: usize,
    #[serde(default)]
    pub layer_types: Option<Vec<String>>,
    #[serde(default)]
    pub global_rope_theta: Option<f64>,
    #[serde(default)]
    pub local_rope_theta: Option<f64>,
    #[serde(default)]
    pub rope_parameters: Option<serde_json::Value>,
    #[serde(default)]
    pub pad_token_id: Option<u32>,
}

fn default_act() -> String {
    "gelu".into()
}
fn default_eps() -> f64 {
    1e-5
}
fn default_local() -> usize {
    128
}
fn default_every() -> usize {
    3
}

impl ModernBertConfig {
    /// Whether layer `i` is a local (sliding-window) layer.
    fn local(&self, i: usize) -> bool {
        match &self.layer_types {
            Some(t) => t.get(i).is_some_and(|t| t == "sliding_attention"),
            None => i % self.global_attn_every_n_layers.max(1) != 0,
        }
    }

    /// The global layers' RoPE and the local ones'.
    fn ropes(&self, path: &Path) -> Result<[RopeSpec; 2]> {
        let p = self.rope_parameters.as_ref();
        Ok([
            rotary::per_type(
                path,
                p,
                "full_attention",
                self.global_rope_theta.unwrap_or(160_000.0),
            )?,
            rotary::per_type(
                path,
                p,
                "sliding_attention",
                self.local_rope_theta.unwrap_or(10_000.0),
            )?,
        ])
    }

    /// The feed-forward's gate activation.
    fn gate(&self) -> Option<Gate> {
        match self.hidden_activation.as_str() {
            "gelu" => Some(Gate::Gelu),
            "gelu_new" | "gelu_pytorch_tanh" => Some(Gate::GeluTanh),
            "silu" => Some(Gate::Silu),
            _ => None,
        }
    }

    /// Checks sizes and refuses what Ember does not run, naming the option.
    pub fn validate(&self, path: &Path) -> Result<()> {
        let bad = |message: String| Error::Config {
            path: path.to_path_buf(),
            message,
        };
        let missing = |feature: String| rotary::unsupported_feature(path, feature);
        let (h, n) = (self.hidden_size, self.num_attention_heads);
        if h == 0 || n == 0 || self.num_hidden_layers == 0 || h % n != 0 || (h / n) % 2 != 0 {
            return Err(bad(format!(
                "hidden_size {h} does not split into {n} heads of an even width"
            )));
        }
        if self.gate().is_none() {
            return Err(missing(format!(
                "hidden_activation `{}` for modernbert (Ember runs `gelu`, `gelu_pytorch_tanh`, \
                 `silu`)",
                self.hidden_activation
            )));
        }
        self.ropes(path).map(|_| ())
    }
}

/// Loads `ModernBertModel`, every block named as in the checkpoint (`path` is the config, for
/// errors).
pub fn load(w: &Weights, cfg: &ModernBertConfig, path: &Path) -> Result<RotaryModel> {
    cfg.validate(path)?;
    let (h, eps, inner) = (cfg.hidden_size, cfg.norm_eps, cfg.intermediate_size);
    let heads = Heads::full(cfg.num_attention_heads, h);
    let d = heads.head_dim;
    let gate = cfg.gate().expect("validated");
    let half = cfg.local_attention / 2;
    let layers = (0..cfg.num_hidden_layers)
        .map(|i| {
            let p = format!("layers.{i}");
            let norm = |n: &str| Norm::layer(w, &format!("{p}.{n}"), h, eps, cfg.norm_bias);
            Ok(Block {
                // The first layer's attention norm is the identity (the embeddings' norm
                // precedes it).
                pre_attn: (i > 0).then(|| norm("attn_norm")).transpose()?,
                qkv: rotary::fused(
                    w,
                    &[(&format!("{p}.attn.Wqkv"), 3 * h)],
                    h,
                    cfg.attention_bias,
                )?,
                qk_norm: None,
                out: rotary::fused(w, &[(&format!("{p}.attn.Wo"), h)], h, cfg.attention_bias)?,
                post_attn: None,
                after_attn: None,
                pre_mlp: Some(norm("mlp_norm")?),
                up_gate: gate_up(w, &format!("{p}.mlp.Wi"), h, inner, cfg.mlp_bias)?,
                gate,
                down: rotary::fused(w, &[(&format!("{p}.mlp.Wo"), h)], inner, cfg.mlp_bias)?,
                post_mlp: None,
                after_mlp: None,
                heads,
                span: match cfg.local(i) {
                    true => Span::window(half, half),
                    false => Span::FULL,
                },
                scale: 1.0 / (d as f32).sqrt(),
                rope: usize::from(cfg.local(i)),
            })
        })
        .collect::<Result<Vec<_>>>()?;
    Ok(RotaryModel {
        embed: Embedding::load(w, "embeddings.tok_embeddings.weight", cfg.vocab_size, h)?,
        token_type: None,
        embed_scale: None,
        embed_norm: Some(Norm::layer(w, "embeddings.norm", h, eps, cfg.norm_bias)?),
        layers,
        final_norm: Some(Norm::layer(w, "final_norm", h, eps, cfg.norm_bias)?),
        ropes: cfg.ropes(path)?.to_vec(),
        hidden: h,
        max_positions: cfg.max_position_embeddings,
        device: w.device().clone(),
    })
}

/// `Wi` (`[2 · inner, hidden]`, rows `[input | gate]`, `act(input) * gate`) reordered to the
/// block's `[up | gate]` convention (`up * act(gate)`): ModernBERT's `gate` half is the one
/// multiplied, its `input` half the one activated.
fn gate_up(w: &Weights, prefix: &str, h: usize, inner: usize, bias: bool) -> Result<Linear> {
    let tensor_err = |source| Error::Tensor {
        model: w.model().to_string(),
        source,
    };
    let swap = |t: candle_core::Tensor| -> Result<candle_core::Tensor> {
        let (a, b) = (t.narrow(0, 0, inner), t.narrow(0, inner, inner));
        candle_core::Tensor::cat(&[b.map_err(tensor_err)?, a.map_err(tensor_err)?], 0)
            .map_err(tensor_err)
    };
    let weight = swap(w.get(&format!("{prefix}.weight"), &[2 * inner, h])?)?;
    let bias = bias
        .then(|| {
            w.get(&format!("{prefix}.bias"), &[2 * inner])
                .and_then(swap)
        })
        .transpose()?;
    Linear::from_tensors(w, weight, bias)
}
