//! Alibaba's GTE encoder (gte-multilingual-base, gte-base-en-v1.5, snowflake-arctic-embed-m-v2.0)
//! in both layouts: as published (`model_type: new`, Alibaba's `modeling.py`: fused `qkv_proj`,
//! `up_gate_proj`, `attn_ln` / `mlp_ln`, often under a `new.` prefix) and as transformers 5
//! writes it (`model_type: gte`, `modeling_gte.py`: separate `q/k/v_proj`, `up_proj` /
//! `gate_proj`, `post_attention_layernorm` / `post_mlp_layernorm`).
//!
//! Word (and token type) embeddings and a layer norm, then post-norm layers: RoPE attention with
//! biases, `x = LN(x + attn(x))`, a gated feed-forward `down(up * act(gate))`,
//! `x = LN(x + mlp(x))`. `rope_scaling: {type: ntk, factor}` is Alibaba's fixed NTK scaling
//! (`NTKScalingRotaryEmbedding`), applied at every length as its code does.

use std::path::Path;

use serde::Deserialize;

use super::block::{Block, Norm};
use super::rotary::{self, RopeSpec, RotaryModel};
use super::Embedding;
use crate::error::{Error, Result};
use crate::kernels::flash::{Heads, Span};
use crate::kernels::gated::Gate;
use crate::weights::Weights;

/// The fields of a `new` or `gte` `config.json` Ember reads.
#[derive(Debug, Clone, Deserialize)]
pub struct GteConfig {
    pub model_type: String,
    pub vocab_size: usize,
    pub hidden_size: usize,
    pub num_hidden_layers: usize,
    pub num_attention_heads: usize,
    pub intermediate_size: usize,
    #[serde(default = "default_act")]
    pub hidden_act: String,
    pub max_position_embeddings: usize,
    #[serde(default)]
    pub type_vocab_size: usize,
    #[serde(default = "default_eps")]
    pub layer_norm_eps: f64,
    /// `layer_norm` or `rms_norm` (Alibaba's layout).
    #[serde(default)]
    pub layer_norm_type: Option<String>,
    /// Must be `rope` (Alibaba's layout also allows `absolute`, which no published GTE uses).
    #[serde(default)]
    pub position_embedding_type: Option<String>,
    #[serde(default)]
    pub rope_theta: Option<f64>,
    #[serde(default)]
    pub rope_scaling: Option<serde_json::Value>,
    #[serde(default)]
    pub rope_parameters: Option<serde_json::Value>,
    #[serde(default)]
    pub logn_attention_scale: bool,
    #[serde(default)]
    pub pad_token_id: Option<u32>,
}

fn default_act() -> String {
    "gelu".into()
}
fn default_eps() -> f64 {
    1e-12
}

impl GteConfig {
    fn rope(&self, path: &Path) -> Result<RopeSpec> {
        // Alibaba's `NewConfig` defaults the base to 10,000, transformers' `GteConfig` to 160,000.
        let default = if self.model_type == "gte" {
            160_000.0
        } else {
            10_000.0
        };
        rotary::with_ntk(
            path,
            self.rope_parameters.as_ref(),
            self.rope_scaling.as_ref(),
            self.rope_theta,
            default,
        )
    }

    fn gate(&self) -> Option<Gate> {
        match self.hidden_act.as_str() {
            "gelu" => Some(Gate::Gelu),
            "gelu_new" | "gelu_pytorch_tanh" => Some(Gate::GeluTanh),
            "silu" => Some(Gate::Silu),
            _ => None,
        }
    }

    fn rms(&self) -> bool {
        self.layer_norm_type.as_deref() == Some("rms_norm")
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
        if let Some(p) = self
            .position_embedding_type
            .as_deref()
            .filter(|&p| p != "rope")
        {
            return Err(missing(format!(
                "position_embedding_type `{p}` for GTE (Ember runs `rope`)"
            )));
        }
        if self.logn_attention_scale {
            return Err(missing("logn_attention_scale".into()));
        }
        if !matches!(
            self.layer_norm_type.as_deref(),
            None | Some("layer_norm") | Some("rms_norm")
        ) {
            return Err(missing(format!(
                "layer_norm_type `{}` for GTE",
                self.layer_norm_type.as_deref().unwrap_or_default()
            )));
        }
        if self.gate().is_none() {
            return Err(missing(format!(
                "hidden_act `{}` for GTE (Ember runs `gelu`, `gelu_pytorch_tanh`, `silu`)",
                self.hidden_act
            )));
        }
        self.rope(path).map(|_| ())
    }
}

/// Loads Alibaba's `NewModel` / transformers' `GteModel` without the pooler, every block named
/// as in the checkpoint, in either layout (`path` is the config).
pub fn load(w: &Weights, cfg: &GteConfig, path: &Path) -> Result<RotaryModel> {
    cfg.validate(path)?;
    let (h, eps, inner) = (cfg.hidden_size, cfg.layer_norm_eps, cfg.intermediate_size);
    let heads = Heads::full(cfg.num_attention_heads, h);
    let norm = |name: &str| match cfg.rms() {
        true => Norm::rms(w, name, h, eps, false),
        false => Norm::layer(w, name, h, eps, true),
    };
    let alibaba = w.contains("encoder.layer.0.attention.o_proj.weight");
    let layers = (0..cfg.num_hidden_layers)
        .map(|i| {
            let (qkv, out, up_gate, down, attn_ln, mlp_ln) = if alibaba {
                let p = format!("encoder.layer.{i}");
                let qkv = match w.contains(&format!("{p}.attention.qkv_proj.weight")) {
                    true => {
                        rotary::fused(w, &[(&format!("{p}.attention.qkv_proj"), 3 * h)], h, true)?
                    }
                    false => rotary::fused(
                        w,
                        &[
                            (&format!("{p}.attention.q_proj"), h),
                            (&format!("{p}.attention.k_proj"), h),
                            (&format!("{p}.attention.v_proj"), h),
                        ],
                        h,
                        true,
                    )?,
                };
                (
                    qkv,
                    rotary::fused(w, &[(&format!("{p}.attention.o_proj"), h)], h, true)?,
                    rotary::fused(
                        w,
                        &[(&format!("{p}.mlp.up_gate_proj"), 2 * inner)],
                        h,
                        false,
                    )?,
                    rotary::fused(w, &[(&format!("{p}.mlp.down_proj"), h)], inner, true)?,
                    norm(&format!("{p}.attn_ln"))?,
                    norm(&format!("{p}.mlp_ln"))?,
                )
            } else {
                let p = format!("layers.{i}");
                let attn = |n: &str| format!("{p}.self_attn.{n}");
                let mlp = |n: &str| format!("{p}.mlp.{n}");
                (
                    rotary::fused(
                        w,
                        &[
                            (&attn("q_proj"), h),
                            (&attn("k_proj"), h),
                            (&attn("v_proj"), h),
                        ],
                        h,
                        true,
                    )?,
                    rotary::fused(w, &[(&attn("o_proj"), h)], h, true)?,
                    rotary::fused(
                        w,
                        &[(&mlp("up_proj"), inner), (&mlp("gate_proj"), inner)],
                        h,
                        false,
                    )?,
                    rotary::fused(w, &[(&mlp("down_proj"), h)], inner, true)?,
                    norm(&format!("{p}.post_attention_layernorm"))?,
                    norm(&format!("{p}.post_mlp_layernorm"))?,
                )
            };
            Ok(Block {
                pre_attn: None,
                qkv,
                qk_norm: None,
                out,
                post_attn: None,
                after_attn: Some(attn_ln),
                pre_mlp: None,
                up_gate,
                gate: cfg.gate().expect("validated"),
                down,
                post_mlp: None,
                after_mlp: Some(mlp_ln),
                heads,
                span: Span::FULL,
                scale: 1.0 / (heads.head_dim as f32).sqrt(),
                rope: 0,
            })
        })
        .collect::<Result<Vec<_>>>()?;
    Ok(RotaryModel {
        embed: Embedding::load(w, "embeddings.word_embeddings.weight", cfg.vocab_size, h)?,
        token_type: Embedding::token_types(w, cfg.type_vocab_size, h)?,
        embed_scale: None,
        embed_norm: Some(norm("embeddings.LayerNorm")?),
        layers,
        final_norm: None,
        ropes: vec![cfg.rope(path)?],
        hidden: h,
        max_positions: cfg.max_position_embeddings,
        device: w.device().clone(),
    })
}
