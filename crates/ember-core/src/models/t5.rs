//! T5 encoders (`T5EncoderModel`: INSTRUCTOR, sentence-t5), as in transformers'
//! `modeling_t5.py`: pre-norm blocks with RMS norm (`T5LayerNorm`), unscaled attention with a
//! bucketed relative-position bias computed by the first block and shared by all, and the
//! feed-forward `feed_forward_proj` names (ReLU `DenseReluDense`, or gated-GELU
//! `DenseGatedActDense`). The layers run on Ember's CPU kernels only.

use std::path::Path;

use serde::Deserialize;

use super::host::{self, AttnParts, MlpParts};
use super::relpos::RelativeBias;
use super::{Activation, Batch, Embedding, Linear};
use crate::error::{Error, Result};
use crate::weights::Weights;

/// `config.json` of a T5 model (`T5Config`).
#[derive(Debug, Clone, Deserialize)]
pub struct T5Config {
    pub vocab_size: usize,
    pub d_model: usize,
    pub d_kv: usize,
    pub d_ff: usize,
    pub num_layers: usize,
    pub num_heads: usize,
    #[serde(default = "default_buckets")]
    pub relative_attention_num_buckets: usize,
    #[serde(default = "default_max_distance")]
    pub relative_attention_max_distance: usize,
    #[serde(default = "default_eps")]
    pub layer_norm_epsilon: f64,
    #[serde(default = "default_ff")]
    pub feed_forward_proj: String,
    #[serde(default)]
    pub pad_token_id: Option<u32>,
    /// The context T5 was pretrained with; relative positions set no hard limit.
    #[serde(default)]
    pub n_positions: Option<usize>,
}

fn default_buckets() -> usize {
    32
}
fn default_max_distance() -> usize {
    128
}
fn default_eps() -> f64 {
    1e-6
}
fn default_ff() -> String {
    "relu".into()
}

impl T5Config {
    /// The feed-forward's activation: `relu`, `gelu`, or gated (`gated-gelu`: transformers
    /// uses the tanh GELU there, `gelu_new`).
    pub fn activation(&self, path: &Path) -> Result<Activation> {
        let act = match self.feed_forward_proj.as_str() {
            "gated-gelu" | "gated-gelu_new" => Some(Activation::GeGluTanh),
            "gated-silu" => Some(Activation::SwiGlu),
            other => Activation::from_name(other).filter(|a| !a.is_gated()),
        };
        act.ok_or_else(|| Error::Config {
            path: path.to_path_buf(),
            message: format!(
                "feed_forward_proj `{}` is not supported (relu, gelu, gated-gelu, gated-silu)",
                self.feed_forward_proj
            ),
        })
    }

    /// Checks the sizes before any weight is read.
    pub fn validate(&self, path: &Path) -> Result<()> {
        if self.d_model == 0 || self.num_heads == 0 || self.d_kv == 0 || self.num_layers == 0 {
            return Err(Error::Config {
                path: path.to_path_buf(),
                message: "d_model, d_kv, num_heads and num_layers must be positive".into(),
            });
        }
        if self.relative_attention_num_buckets < 4 {
            return Err(Error::Config {
                path: path.to_path_buf(),
                message: "relative_attention_num_buckets must be at least 4".into(),
            });
        }
        self.activation(path).map(|_| ())
    }
}

/// `T5LayerNorm`: scale only, no mean subtracted, no bias.
#[derive(Debug, Clone)]
pub struct RmsNorm {
    weight: Vec<f32>,
    eps: f32,
}

impl RmsNorm {
    /// Loads `{prefix}.weight` (`[dim]`).
    pub fn load(w: &Weights, prefix: &str, dim: usize, eps: f64) -> Result<Self> {
        let t = w.get(&format!("{prefix}.weight"), &[dim])?;
        let weight = t.to_vec1::<f32>().map_err(|source| Error::Tensor {
            model: w.model().to_string(),
            source,
        })?;
        Ok(Self {
            weight,
            eps: eps as f32,
        })
    }

    /// `out = RMSNorm(x)`, row by row.
    pub fn forward_host(&self, x: &[f32], out: &mut [f32]) {
        crate::kernels::gated::rms_norm(x, &self.weight, self.eps, out);
    }

    fn bytes(&self) -> usize {
        self.weight.len() * 4
    }
}

/// One `T5Block` of the encoder.
#[derive(Debug)]
struct Block {
    attn_norm: RmsNorm,
    qkv: Linear,
    o: Linear,
    ff_norm: RmsNorm,
    /// `wi`, or `[wi_1 | wi_0]` (up, gate) for a gated feed-forward.
    wi: Linear,
    wo: Linear,
}

impl Block {
    fn load(w: &Weights, cfg: &T5Config, act: Activation, i: usize) -> Result<Self> {
        let (h, inner) = (cfg.d_model, cfg.num_heads * cfg.d_kv);
        let p = format!("encoder.block.{i}.layer");
        let attn = |n: &str| format!("{p}.0.SelfAttention.{n}");
        let ff = |n: &str| format!("{p}.1.DenseReluDense.{n}");
        let wi = match act.is_gated() {
            true => Linear::load_fused_with(w, &[&ff("wi_1"), &ff("wi_0")], h, cfg.d_ff, false)?,
            false => Linear::load_opt(w, &ff("wi"), h, cfg.d_ff, false)?,
        };
        Ok(Self {
            attn_norm: RmsNorm::load(w, &format!("{p}.0.layer_norm"), h, cfg.layer_norm_epsilon)?,
            qkv: Linear::load_fused_with(
                w,
                &[&attn("q"), &attn("k"), &attn("v")],
                h,
                inner,
                false,
            )?,
            o: Linear::load_opt(w, &attn("o"), inner, h, false)?,
            ff_norm: RmsNorm::load(w, &format!("{p}.1.layer_norm"), h, cfg.layer_norm_epsilon)?,
            wi,
            wo: Linear::load_opt(w, &ff("wo"), cfg.d_ff, h, false)?,
        })
    }

    fn bytes(&self) -> usize {
        self.attn_norm.bytes()
            + self.qkv.bytes()
            + self.o.bytes()
            + self.ff_norm.bytes()
            + self.wi.bytes()
            + self.wo.bytes()
    }
}

/// `T5EncoderModel`: the last hidden state after the final RMS norm.
#[derive(Debug)]
pub struct T5EncoderModel {
    embed: Embedding,
    bias: RelativeBias,
    blocks: Vec<Block>,
    final_norm: RmsNorm,
    heads: usize,
    act: Activation,
    hidden: usize,
    device: candle_core::Device,
}

impl T5EncoderModel {
    /// Loads every block named as in the checkpoint (`path` is the config, for errors).
    pub fn load(w: &Weights, cfg: &T5Config, path: &Path) -> Result<Self> {
        let act = cfg.activation(path)?;
        let table = ["shared.weight", "encoder.embed_tokens.weight"]
            .into_iter()
            .find(|n| w.contains(n))
            .unwrap_or("shared.weight");
        let rel = w.get(
            "encoder.block.0.layer.0.SelfAttention.relative_attention_bias.weight",
            &[cfg.relative_attention_num_buckets, cfg.num_heads],
        )?;
        let bias =
            RelativeBias::new(rel, cfg.relative_attention_max_distance).map_err(|source| {
                Error::Tensor {
                    model: w.model().to_string(),
                    source,
                }
            })?;
        Ok(Self {
            embed: Embedding::load(w, table, cfg.vocab_size, cfg.d_model)?,
            bias,
            blocks: (0..cfg.num_layers)
                .map(|i| Block::load(w, cfg, act, i))
                .collect::<Result<Vec<_>>>()?,
            final_norm: RmsNorm::load(
                w,
                "encoder.final_layer_norm",
                cfg.d_model,
                cfg.layer_norm_epsilon,
            )?,
            heads: cfg.num_heads,
            act,
            hidden: cfg.d_model,
            device: w.device().clone(),
        })
    }

    /// Last hidden state `[batch * seq, d_model]` on the host, on Ember's kernels.
    pub(crate) fn forward_host(&self, batch: &Batch) -> candle_core::Result<Vec<f32>> {
        let mut x = vec![0f32; batch.ids.len() * self.hidden];
        self.embed.add_into(&batch.ids, &mut x)?;
        // `[heads, seq, seq]`, computed once and shared by every block (the attention kernel
        // applies the padding mask itself).
        let bias = self.bias.for_length(batch.seq)?;
        let mut h = vec![0f32; x.len()];
        let mut tmp = vec![0f32; x.len()];
        for b in &self.blocks {
            b.attn_norm.forward_host(&x, &mut h);
            let attn = AttnParts {
                qkv: &b.qkv,
                out: &b.o,
                heads: self.heads,
                rope: None,
                scale: Some(1.0),
            };
            host::with_scratch(|s| host::attention_block(attn, &h, batch, &bias, s, &mut tmp))?;
            crate::kernels::gated::add_in_place(&mut x, &tmp);
            b.ff_norm.forward_host(&x, &mut h);
            let mlp = MlpParts {
                up: &b.wi,
                act: self.act,
                down: &b.wo,
            };
            host::with_scratch(|s| host::mlp_block(mlp, &h, s, &mut tmp))?;
            crate::kernels::gated::add_in_place(&mut x, &tmp);
        }
        self.final_norm.forward_host(&x, &mut h);
        Ok(h)
    }

    pub(crate) fn hidden_size(&self) -> usize {
        self.hidden
    }

    pub(crate) fn device(&self) -> &candle_core::Device {
        &self.device
    }

    pub(crate) fn bytes(&self) -> usize {
        self.embed.bytes()
            + self.bias.bytes()
            + self.blocks.iter().map(Block::bytes).sum::<usize>()
            + self.final_norm.bytes()
    }
}
