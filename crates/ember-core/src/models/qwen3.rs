//! Qwen3 as an embedding model (Qwen3-Embedding, harrier-oss, jina-embeddings-v5, ...), as in
//! transformers' `modeling_qwen3.py`: pre-norm decoder layers with RMS norm, grouped-query
//! attention with per-head RMS norm of Q and K, RoPE (`rope_theta`), a SwiGLU feed-forward, and
//! a final RMS norm. Causal by default; `use_bidirectional_attention: true` (or
//! `is_causal: false`) gives the bidirectional variants. Layers named `sliding_attention` in
//! `layer_types` (or past `max_window_layers` with `use_sliding_window`) see a causal window.
//!
//! Runs unpadded on Ember's kernels (see `block`), so last-token pooling reads each text's own
//! last token (the tokenizer's `<|endoftext|>`) whichever side the batch was padded on.

use std::path::Path;

use serde::Deserialize;

use super::block::{Block, Norm};
use super::rotary::{self, RopeSpec, RotaryModel};
use super::Embedding;
use crate::error::{Error, Result};
use crate::kernels::flash::{Heads, Span};
use crate::kernels::gated::Gate;
use crate::weights::Weights;

/// The fields of a Qwen3 `config.json` Ember reads (transformers' `Qwen3Config`), and the ones
/// it refuses (rope scaling types, mixture-of-experts).
#[derive(Debug, Clone, Deserialize)]
pub struct Qwen3Config {
    pub model_type: String,
    pub vocab_size: usize,
    pub hidden_size: usize,
    pub intermediate_size: usize,
    pub num_hidden_layers: usize,
    pub num_attention_heads: usize,
    #[serde(default)]
    pub num_key_value_heads: Option<usize>,
    #[serde(default)]
    pub head_dim: Option<usize>,
    #[serde(default = "default_act")]
    pub hidden_act: String,
    pub max_position_embeddings: usize,
    #[serde(default = "default_eps")]
    pub rms_norm_eps: f64,
    /// Older configs: the base; newer ones put it in `rope_parameters`.
    #[serde(default)]
    pub rope_theta: Option<f64>,
    #[serde(default)]
    pub rope_scaling: Option<serde_json::Value>,
    #[serde(default)]
    pub rope_parameters: Option<serde_json::Value>,
    #[serde(default)]
    pub attention_bias: bool,
    #[serde(default)]
    pub use_sliding_window: bool,
    #[serde(default)]
    pub sliding_window: Option<usize>,
    #[serde(default)]
    pub max_window_layers: Option<usize>,
    #[serde(default)]
    pub layer_types: Option<Vec<String>>,
    /// The bidirectional variants' flag (Gemma's name for it).
    #[serde(default)]
    pub use_bidirectional_attention: bool,
    #[serde(default)]
    pub is_causal: Option<bool>,
    /// Qwen3-MoE's expert count: refused.
    #[serde(default)]
    pub num_experts: Option<usize>,
    #[serde(default)]
    pub pad_token_id: Option<u32>,
}

fn default_act() -> String {
    "silu".into()
}
fn default_eps() -> f64 {
    1e-6
}

impl Qwen3Config {
    /// Width of one attention head.
    pub fn head_dim(&self) -> usize {
        self.head_dim
            .unwrap_or(self.hidden_size / self.num_attention_heads.max(1))
    }

    fn heads(&self) -> Heads {
        Heads {
            heads: self.num_attention_heads,
            kv_heads: self.num_key_value_heads.unwrap_or(self.num_attention_heads),
            head_dim: self.head_dim(),
        }
    }

    /// The rotary base, or an error naming an unsupported scaling.
    fn rope(&self, path: &Path) -> Result<RopeSpec> {
        rotary::single(
            path,
            self.rope_parameters.as_ref(),
            self.rope_scaling.as_ref(),
            self.rope_theta,
            10_000.0,
        )
    }

    /// Whether attention looks both ways.
    pub fn bidirectional(&self) -> bool {
        self.use_bidirectional_attention || self.is_causal == Some(false)
    }

    /// Each layer's span.
    fn spans(&self) -> Vec<Span> {
        let window = self.sliding_window.filter(|_| self.use_sliding_window);
        (0..self.num_hidden_layers)
            .map(|i| {
                let sliding = match &self.layer_types {
                    Some(t) => t.get(i).is_some_and(|t| t == "sliding_attention"),
                    None => window.is_some() && i >= self.max_window_layers.unwrap_or(28),
                };
                match (sliding, self.sliding_window, self.bidirectional()) {
                    (true, Some(w), false) => Span::window(w.saturating_sub(1), 0),
                    (true, Some(w), true) => Span::window(w.saturating_sub(1), w.saturating_sub(1)),
                    (_, _, true) => Span::FULL,
                    _ => Span::CAUSAL,
                }
            })
            .collect()
    }

    /// Checks sizes and refuses what Ember does not run, naming the option.
    pub fn validate(&self, path: &Path) -> Result<()> {
        let bad = |message: String| Error::Config {
            path: path.to_path_buf(),
            message,
        };
        let missing = |feature: String| rotary::unsupported_feature(path, feature);
        if let Some(n) = self.num_experts.filter(|&n| n > 0) {
            return Err(missing(format!(
                "Qwen3 with mixture-of-experts layers (`num_experts` = {n}, model_type `{}`; \
                 Ember runs dense Qwen3)",
                self.model_type
            )));
        }
        if self.model_type != "qwen3" {
            return Err(missing(format!(
                "model_type `{}` (mixture-of-experts Qwen3; Ember runs `qwen3`)",
                self.model_type
            )));
        }
        let h = self.heads();
        if self.hidden_size == 0 || h.heads == 0 || h.kv_heads == 0 || self.num_hidden_layers == 0 {
            return Err(bad(
                "hidden_size, num_attention_heads, num_key_value_heads and num_hidden_layers \
                 must be positive"
                    .into(),
            ));
        }
        if h.heads % h.kv_heads != 0 || h.head_dim % 2 != 0 {
            return Err(bad(format!(
                "{} query heads cannot share {} key/value heads of width {}",
                h.heads, h.kv_heads, h.head_dim
            )));
        }
        if self.hidden_act != "silu" {
            return Err(missing(format!(
                "hidden_act `{}` for qwen3 (Ember runs `silu`)",
                self.hidden_act
            )));
        }
        self.rope(path).map(|_| ())
    }
}

/// Loads `Qwen3Model` without the LM head, every block named as in the checkpoint (`path` is
/// the config, for errors).
pub fn load(w: &Weights, cfg: &Qwen3Config, path: &Path) -> Result<RotaryModel> {
    cfg.validate(path)?;
    let (h, eps) = (cfg.hidden_size, cfg.rms_norm_eps);
    let heads = cfg.heads();
    let d = heads.head_dim;
    let spans = cfg.spans();
    let layers = (0..cfg.num_hidden_layers)
        .map(|i| {
            let p = format!("layers.{i}");
            let attn = |n: &str| format!("{p}.self_attn.{n}");
            let qkv = rotary::fused(
                w,
                &[
                    (&attn("q_proj"), heads.heads * d),
                    (&attn("k_proj"), heads.kv_heads * d),
                    (&attn("v_proj"), heads.kv_heads * d),
                ],
                h,
                cfg.attention_bias,
            )?;
            let mlp = |n: &str| format!("{p}.mlp.{n}");
            Ok(Block {
                pre_attn: Some(Norm::rms(
                    w,
                    &format!("{p}.input_layernorm"),
                    h,
                    eps,
                    false,
                )?),
                qkv,
                qk_norm: Some((
                    Norm::rms(w, &attn("q_norm"), d, eps, false)?,
                    Norm::rms(w, &attn("k_norm"), d, eps, false)?,
                )),
                out: rotary::fused(
                    w,
                    &[(&attn("o_proj"), h)],
                    heads.heads * d,
                    cfg.attention_bias,
                )?,
                post_attn: None,
                after_attn: None,
                pre_mlp: Some(Norm::rms(
                    w,
                    &format!("{p}.post_attention_layernorm"),
                    h,
                    eps,
                    false,
                )?),
                up_gate: rotary::fused(
                    w,
                    &[
                        (&mlp("up_proj"), cfg.intermediate_size),
                        (&mlp("gate_proj"), cfg.intermediate_size),
                    ],
                    h,
                    false,
                )?,
                gate: Gate::Silu,
                down: rotary::fused(w, &[(&mlp("down_proj"), h)], cfg.intermediate_size, false)?,
                post_mlp: None,
                after_mlp: None,
                heads,
                span: spans[i],
                scale: 1.0 / (d as f32).sqrt(),
                rope: 0,
            })
        })
        .collect::<Result<Vec<_>>>()?;
    Ok(RotaryModel {
        embed: Embedding::load(w, "embed_tokens.weight", cfg.vocab_size, h)?,
        token_type: None,
        embed_scale: None,
        embed_norm: None,
        layers,
        final_norm: Some(Norm::rms(w, "norm", h, eps, false)?),
        ropes: vec![cfg.rope(path)?],
        hidden: h,
        max_positions: cfg.max_position_embeddings,
        device: w.device().clone(),
    })
}
