//! Gemma3's text model as an embedding model (embeddinggemma, harrier-270m), as in
//! transformers' `modeling_gemma3.py` (`Gemma3TextModel`): embeddings scaled by `sqrt(hidden)`,
//! sandwich-normed layers (RMS norm with the `(1 + w)` scale before and after each sublayer),
//! grouped-query attention scaled by `query_pre_attn_scalar^-1/2` with per-head RMS norm of Q and
//! K, sliding-window and full layers per `layer_types` (each with its own RoPE base), a
//! tanh-GELU gated feed-forward and a final norm.
//!
//! Attention is bidirectional when `use_bidirectional_attention` is set (embeddinggemma): a
//! sliding layer then sees `|i - j| <= sliding_window / 2` (transformers halves the window for
//! it, `Gemma3TextConfig.__post_init__`); otherwise causal, a sliding layer seeing the last
//! `sliding_window` positions.

use std::path::Path;

use serde::Deserialize;

use super::block::{Block, Norm};
use super::rotary::{self, RopeSpec, RotaryModel};
use super::Embedding;
use crate::error::{Error, Result};
use crate::kernels::flash::{Heads, Span};
use crate::kernels::gated::Gate;
use crate::weights::Weights;

/// The fields of a `gemma3_text` `config.json` Ember reads (transformers' `Gemma3TextConfig`, in
/// the transformers 4 layout or the 5 one).
#[derive(Debug, Clone, Deserialize)]
pub struct Gemma3Config {
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
    pub hidden_activation: String,
    pub max_position_embeddings: usize,
    #[serde(default = "default_eps")]
    pub rms_norm_eps: f64,
    #[serde(default)]
    pub query_pre_attn_scalar: Option<f64>,
    #[serde(default)]
    pub sliding_window: Option<usize>,
    #[serde(default)]
    pub layer_types: Option<Vec<String>>,
    /// Older configs: every `sliding_window_pattern`-th layer is full.
    #[serde(default)]
    pub sliding_window_pattern: Option<usize>,
    #[serde(default)]
    pub use_bidirectional_attention: bool,
    #[serde(default)]
    pub attention_bias: bool,
    /// transformers 4: the full layers' base, and the sliding layers'.
    #[serde(default)]
    pub rope_theta: Option<f64>,
    #[serde(default)]
    pub rope_local_base_freq: Option<f64>,
    #[serde(default)]
    pub rope_scaling: Option<serde_json::Value>,
    /// transformers 5: `{full_attention: {...}, sliding_attention: {...}}`.
    #[serde(default)]
    pub rope_parameters: Option<serde_json::Value>,
    #[serde(default)]
    pub attn_logit_softcapping: Option<f64>,
    #[serde(default)]
    pub pad_token_id: Option<u32>,
}

fn default_act() -> String {
    "gelu_pytorch_tanh".into()
}
fn default_eps() -> f64 {
    1e-6
}

impl Gemma3Config {
    fn heads(&self) -> Heads {
        Heads {
            heads: self.num_attention_heads,
            kv_heads: self.num_key_value_heads.unwrap_or(self.num_attention_heads),
            head_dim: self
                .head_dim
                .unwrap_or(self.hidden_size / self.num_attention_heads.max(1)),
        }
    }

    /// Whether layer `i` is a sliding-window layer.
    fn sliding(&self, i: usize) -> bool {
        match &self.layer_types {
            Some(t) => t.get(i).is_some_and(|t| t == "sliding_attention"),
            None => (i + 1) % self.sliding_window_pattern.unwrap_or(6).max(1) != 0,
        }
    }

    fn span(&self, i: usize) -> Span {
        let w = self.sliding_window.unwrap_or(usize::MAX / 4);
        match (self.sliding(i), self.use_bidirectional_attention) {
            (true, true) => Span::window(w / 2, w / 2),
            (true, false) => Span::window(w.saturating_sub(1), 0),
            (false, true) => Span::FULL,
            (false, false) => Span::CAUSAL,
        }
    }

    /// The full layers' RoPE and the sliding layers'.
    fn ropes(&self, path: &Path) -> Result<[RopeSpec; 2]> {
        let params = self.rope_parameters.as_ref();
        if let Some(s) = self.rope_scaling.as_ref() {
            // transformers 4 kept one `rope_scaling`, for the full layers.
            rotary::single(path, None, Some(s), None, 0.0)?;
        }
        Ok([
            rotary::per_type(
                path,
                params,
                "full_attention",
                self.rope_theta.unwrap_or(1_000_000.0),
            )?,
            rotary::per_type(
                path,
                params,
                "sliding_attention",
                self.rope_local_base_freq.unwrap_or(10_000.0),
            )?,
        ])
    }

    /// Checks sizes and refuses what Ember does not run, naming the option.
    pub fn validate(&self, path: &Path) -> Result<()> {
        let bad = |message: String| Error::Config {
            path: path.to_path_buf(),
            message,
        };
        let missing = |feature: String| rotary::unsupported_feature(path, feature);
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
        if !matches!(
            self.hidden_activation.as_str(),
            "gelu_pytorch_tanh" | "gelu_new"
        ) {
            return Err(missing(format!(
                "hidden_activation `{}` for gemma3_text (Ember runs `gelu_pytorch_tanh`)",
                self.hidden_activation
            )));
        }
        if let Some(c) = self.attn_logit_softcapping {
            return Err(missing(format!(
                "attn_logit_softcapping ({c}, Gemma 2's soft-capping)"
            )));
        }
        if (0..self.num_hidden_layers).any(|i| self.sliding(i)) && self.sliding_window.is_none() {
            return Err(bad("sliding layers but no sliding_window".into()));
        }
        self.ropes(path).map(|_| ())
    }
}

/// Loads `Gemma3TextModel`, every block named as in the checkpoint (`path` is the config, for
/// errors).
pub fn load(w: &Weights, cfg: &Gemma3Config, path: &Path) -> Result<RotaryModel> {
    cfg.validate(path)?;
    let (h, eps) = (cfg.hidden_size, cfg.rms_norm_eps);
    let heads = cfg.heads();
    let d = heads.head_dim;
    let scale = cfg.query_pre_attn_scalar.unwrap_or(d as f64).powf(-0.5) as f32;
    let inner = cfg.intermediate_size;
    let layers = (0..cfg.num_hidden_layers)
        .map(|i| {
            let p = format!("layers.{i}");
            let attn = |n: &str| format!("{p}.self_attn.{n}");
            let mlp = |n: &str| format!("{p}.mlp.{n}");
            let norm = |n: &str| Norm::rms(w, &format!("{p}.{n}"), h, eps, true);
            let bias = cfg.attention_bias;
            Ok(Block {
                pre_attn: Some(norm("input_layernorm")?),
                qkv: rotary::fused(
                    w,
                    &[
                        (&attn("q_proj"), heads.heads * d),
                        (&attn("k_proj"), heads.kv_heads * d),
                        (&attn("v_proj"), heads.kv_heads * d),
                    ],
                    h,
                    bias,
                )?,
                qk_norm: Some((
                    Norm::rms(w, &attn("q_norm"), d, eps, true)?,
                    Norm::rms(w, &attn("k_norm"), d, eps, true)?,
                )),
                out: rotary::fused(w, &[(&attn("o_proj"), h)], heads.heads * d, bias)?,
                post_attn: Some(norm("post_attention_layernorm")?),
                after_attn: None,
                pre_mlp: Some(norm("pre_feedforward_layernorm")?),
                up_gate: rotary::fused(
                    w,
                    &[(&mlp("up_proj"), inner), (&mlp("gate_proj"), inner)],
                    h,
                    false,
                )?,
                gate: Gate::GeluTanh,
                down: rotary::fused(w, &[(&mlp("down_proj"), h)], inner, false)?,
                post_mlp: Some(norm("post_feedforward_layernorm")?),
                after_mlp: None,
                heads,
                span: cfg.span(i),
                scale,
                rope: usize::from(cfg.sliding(i)),
            })
        })
        .collect::<Result<Vec<_>>>()?;
    Ok(RotaryModel {
        embed: Embedding::load(w, "embed_tokens.weight", cfg.vocab_size, h)?,
        token_type: None,
        // `sqrt(hidden)`, rounded to f32 as the reference's buffer.
        embed_scale: Some((h as f64).sqrt() as f32),
        embed_norm: None,
        layers,
        final_norm: Some(Norm::rms(w, "norm", h, eps, true)?),
        ropes: cfg.ropes(path)?.to_vec(),
        hidden: h,
        max_positions: cfg.max_position_embeddings,
        device: w.device().clone(),
    })
}
