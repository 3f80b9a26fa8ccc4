//! NomicBERT (nomic-embed-text v1 / v1.5), as in nomic-ai's `modeling_hf_nomic_bert.py`
//! (contrastors) and transformers' `modeling_nomic_bert.py`: BERT-shaped layers with rotary
//! position embeddings (no position table), a SwiGLU feed-forward, optional biases, and post- or
//! pre-norm as the config says. Past `max_trained_positions` the rotary base grows by dynamic NTK
//! scaling when the config sets a factor (`kernels::rope`).
//!
//! Both config layouts load: nomic's own (`n_embd`, `n_head`, `rotary_emb_base`,
//! `rotary_scaling_factor`, `max_trained_positions`, `prenorm`, …) and the one transformers 5
//! writes (`hidden_size`, `rope_parameters`, `max_position_embeddings`, …); and both weight
//! namings: nomic's (`emb_ln`, `encoder.layers.N.attn.Wqkv`, `mlp.fc11` / `fc12` / `fc2`,
//! `norm1` / `norm2`) and transformers' (`layers.N.self_attn.q_proj`, `mlp.up_proj`, …).
//! The layers run on Ember's CPU kernels only.

use std::path::Path;

use serde::Deserialize;

use super::host::{self, AttnParts, LayerParts, MlpParts, RopeBatch};
use super::{Activation, Batch, Embedding, LayerNorm, Linear};
use crate::error::{Error, Result};
use crate::kernels::rope::{NtkScaling, Rope};
use crate::weights::Weights;

/// `rope_parameters` of the transformers layout.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct RopeParameters {
    #[serde(default)]
    pub rope_type: Option<String>,
    #[serde(default)]
    pub rope_theta: Option<f64>,
    #[serde(default)]
    pub factor: Option<f64>,
    #[serde(default)]
    pub partial_rotary_factor: Option<f64>,
}

/// `config.json` of a NomicBERT model, in either layout (fields of the other one stay `None`).
#[derive(Debug, Clone, Deserialize)]
pub struct NomicConfig {
    pub vocab_size: usize,
    // nomic's layout (a GPT2Config)
    #[serde(default)]
    pub n_embd: Option<usize>,
    #[serde(default)]
    pub n_head: Option<usize>,
    #[serde(default)]
    pub n_layer: Option<usize>,
    #[serde(default)]
    pub n_inner: Option<usize>,
    #[serde(default)]
    pub n_positions: Option<usize>,
    #[serde(default)]
    pub layer_norm_epsilon: Option<f64>,
    #[serde(default)]
    pub activation_function: Option<String>,
    #[serde(default)]
    pub rotary_emb_base: Option<f64>,
    #[serde(default)]
    pub rotary_emb_fraction: Option<f64>,
    #[serde(default)]
    pub rotary_emb_interleaved: bool,
    #[serde(default)]
    pub rotary_scaling_factor: Option<f64>,
    #[serde(default)]
    pub max_trained_positions: Option<usize>,
    #[serde(default)]
    pub qkv_proj_bias: Option<bool>,
    #[serde(default)]
    pub mlp_fc1_bias: Option<bool>,
    #[serde(default)]
    pub mlp_fc2_bias: Option<bool>,
    #[serde(default)]
    pub prenorm: bool,
    #[serde(default)]
    pub use_rms_norm: bool,
    #[serde(default)]
    pub parallel_block: bool,
    // transformers' layout
    #[serde(default)]
    pub hidden_size: Option<usize>,
    #[serde(default)]
    pub num_attention_heads: Option<usize>,
    #[serde(default)]
    pub num_hidden_layers: Option<usize>,
    #[serde(default)]
    pub intermediate_size: Option<usize>,
    #[serde(default)]
    pub max_position_embeddings: Option<usize>,
    #[serde(default)]
    pub layer_norm_eps: Option<f64>,
    #[serde(default)]
    pub hidden_act: Option<String>,
    #[serde(default)]
    pub rope_parameters: Option<RopeParameters>,
    #[serde(default)]
    pub rope_theta: Option<f64>,
    // both
    #[serde(default = "default_type_vocab")]
    pub type_vocab_size: usize,
    #[serde(default)]
    pub pad_token_id: Option<u32>,
    // nomic-embed-text-v2-moe
    #[serde(default)]
    pub num_experts: usize,
    #[serde(default)]
    pub moe_every_n_layers: usize,
    #[serde(default)]
    pub moe_top_k: Option<usize>,
}

fn default_type_vocab() -> usize {
    2
}

/// The sizes and switches the encoder needs, resolved from either layout.
#[derive(Debug, Clone)]
pub struct NomicShape {
    pub hidden: usize,
    pub heads: usize,
    pub layers: usize,
    pub inner: usize,
    pub eps: f64,
    pub act: Activation,
    pub rope: Option<Rope>,
    pub qkv_bias: bool,
    pub fc1_bias: bool,
    pub fc2_bias: bool,
    pub prenorm: bool,
    /// Longest input: `n_positions` (nomic) or the trained length times the NTK factor.
    pub max_positions: usize,
}

impl NomicConfig {
    /// True for nomic's own layout (`n_embd`, …); false for transformers'.
    pub fn is_nomic_layout(&self) -> bool {
        self.n_embd.is_some()
    }

    /// Resolves both layouts to one shape; errors name `path` and the field.
    pub fn shape(&self, path: &Path) -> Result<NomicShape> {
        let bad = |message: String| Error::Config {
            path: path.to_path_buf(),
            message,
        };
        let need = |v: Option<usize>, nomic: &str, hf: &str| {
            v.filter(|&v| v > 0)
                .ok_or_else(|| bad(format!("`{nomic}` (or `{hf}`) must be a positive integer")))
        };
        let hidden = need(self.n_embd.or(self.hidden_size), "n_embd", "hidden_size")?;
        let heads = need(
            self.n_head.or(self.num_attention_heads),
            "n_head",
            "num_attention_heads",
        )?;
        let layers = need(
            self.n_layer.or(self.num_hidden_layers),
            "n_layer",
            "num_hidden_layers",
        )?;
        if hidden % heads != 0 {
            return Err(bad(format!(
                "hidden size {hidden} is not a multiple of the {heads} heads"
            )));
        }
        let head_dim = hidden / heads;
        let nomic = self.is_nomic_layout();
        let inner = self
            .n_inner
            .or(self.intermediate_size)
            .unwrap_or(4 * hidden);
        let act_name = match nomic {
            true => self.activation_function.as_deref().unwrap_or("swiglu"),
            false => self.hidden_act.as_deref().unwrap_or("silu"),
        };
        let act = match (nomic, act_name) {
            (true, "swiglu") | (false, "silu" | "swish") => Activation::SwiGlu,
            (false, "gelu_new" | "gelu_pytorch_tanh") => Activation::GeGluTanh,
            (true, "gelu" | "gelu_new" | "gelu_fast" | "gelu_pytorch_tanh") => {
                Activation::from_name(act_name).unwrap_or(Activation::Gelu)
            }
            (_, other) => {
                return Err(bad(format!(
                    "activation `{other}` is not supported for nomic_bert (swiglu, gelu)"
                )))
            }
        };
        // nomic's gated MLP rounds its width up to a multiple of 256 (`NomciBertGatedMLP`'s
        // `multiple_of`): v1.5's 3072 stays, a smaller `n_inner` grows.
        let inner = match (nomic, act.is_gated()) {
            (true, true) => inner.next_multiple_of(256),
            _ => inner,
        };
        let rope = if nomic {
            let fraction = self.rotary_emb_fraction.unwrap_or(0.0);
            (fraction > 0.0).then(|| Rope {
                base: self.rotary_emb_base.unwrap_or(10_000.0),
                rotary_dim: ((head_dim as f64 * fraction) as usize) / 2 * 2,
                interleaved: self.rotary_emb_interleaved,
                scaling: self
                    .rotary_scaling_factor
                    .filter(|&f| f > 0.0)
                    .map(|factor| NtkScaling {
                        factor,
                        trained: self.max_trained_positions.unwrap_or(2048),
                    }),
            })
        } else {
            let p = self.rope_parameters.clone().unwrap_or_default();
            let dynamic = p.rope_type.as_deref() == Some("dynamic");
            match p.rope_type.as_deref() {
                None | Some("default") | Some("dynamic") => {}
                Some(other) => {
                    return Err(bad(format!(
                        "rope_parameters.rope_type `{other}` is not supported (default, dynamic)"
                    )))
                }
            }
            Some(Rope {
                base: p.rope_theta.or(self.rope_theta).unwrap_or(1000.0),
                rotary_dim: ((head_dim as f64 * p.partial_rotary_factor.unwrap_or(1.0)) as usize)
                    / 2
                    * 2,
                interleaved: false,
                scaling: match (dynamic, p.factor) {
                    (true, Some(factor)) if factor > 0.0 => Some(NtkScaling {
                        factor,
                        trained: self.max_position_embeddings.unwrap_or(2048),
                    }),
                    (true, _) => return Err(bad("dynamic rope needs a positive `factor`".into())),
                    _ => None,
                },
            })
        };
        if rope.as_ref().is_some_and(|r| r.rotary_dim == 0) {
            return Err(bad("the rotary width rounds to 0".into()));
        }
        if rope.is_none() {
            return Err(Error::UnsupportedFeature {
                path: path.to_path_buf(),
                feature: "nomic_bert without rotary embeddings (rotary_emb_fraction 0)".into(),
            });
        }
        let max_positions = match (nomic, &rope) {
            (true, _) => self.n_positions.unwrap_or(8192),
            (
                false,
                Some(Rope {
                    scaling: Some(s), ..
                }),
            ) => (s.trained as f64 * s.factor) as usize,
            (false, _) => self.max_position_embeddings.unwrap_or(2048),
        };
        Ok(NomicShape {
            hidden,
            heads,
            layers,
            inner,
            eps: self
                .layer_norm_epsilon
                .or(self.layer_norm_eps)
                .unwrap_or(1e-12),
            act,
            rope,
            qkv_bias: nomic && self.qkv_proj_bias.unwrap_or(true),
            fc1_bias: nomic && self.mlp_fc1_bias.unwrap_or(true),
            fc2_bias: nomic && self.mlp_fc2_bias.unwrap_or(true),
            prenorm: nomic && self.prenorm,
            max_positions,
        })
    }

    /// Refuses what Ember does not run, naming the feature: the v2 mixture-of-experts layers,
    /// RMS norm, parallel blocks.
    pub fn validate(&self, path: &Path) -> Result<()> {
        let unsupported = |feature: String| {
            Err(Error::UnsupportedFeature {
                path: path.to_path_buf(),
                feature,
            })
        };
        if self.num_experts > 0 || self.moe_every_n_layers > 0 {
            return unsupported(format!(
                "nomic-embed-text-v2-moe's mixture-of-experts feed-forward layers (num_experts {}, \
                 moe_every_n_layers {}, moe_top_k {})",
                self.num_experts,
                self.moe_every_n_layers,
                self.moe_top_k.map_or("unset".into(), |k| k.to_string())
            ));
        }
        if self.use_rms_norm {
            return unsupported("nomic_bert with use_rms_norm".into());
        }
        if self.parallel_block {
            return unsupported("nomic_bert with parallel_block".into());
        }
        self.shape(path).map(|_| ())
    }
}

/// One NomicBERT block.
#[derive(Debug)]
struct Layer {
    qkv: Linear,
    out: Linear,
    norm1: LayerNorm,
    /// `[up | gate]` for the gated MLP (`fc11`, `fc12`), or `fc1`.
    fc1: Linear,
    fc2: Linear,
    norm2: LayerNorm,
}

impl Layer {
    fn load(w: &Weights, s: &NomicShape, i: usize) -> Result<Self> {
        let h = s.hidden;
        let gated = s.act.is_gated();
        let nomic = format!("encoder.layers.{i}");
        // nomic's names, or transformers' (either config layout may come with either).
        if w.contains(&format!("{nomic}.attn.Wqkv.weight")) {
            let p = nomic;
            let qkv = Linear::from_tensors(
                w,
                w.get(&format!("{p}.attn.Wqkv.weight"), &[3 * h, h])?,
                s.qkv_bias
                    .then(|| w.get(&format!("{p}.attn.Wqkv.bias"), &[3 * h]))
                    .transpose()?,
            )?;
            let fc1 = match gated {
                true => Linear::load_fused_with(
                    w,
                    &[&format!("{p}.mlp.fc11"), &format!("{p}.mlp.fc12")],
                    h,
                    s.inner,
                    s.fc1_bias,
                )?,
                false => Linear::load_opt(w, &format!("{p}.mlp.fc1"), h, s.inner, s.fc1_bias)?,
            };
            Ok(Self {
                qkv,
                out: Linear::load_opt(w, &format!("{p}.attn.out_proj"), h, h, s.qkv_bias)?,
                norm1: LayerNorm::load(w, &format!("{p}.norm1"), h, s.eps)?,
                fc1,
                fc2: Linear::load_opt(w, &format!("{p}.mlp.fc2"), s.inner, h, s.fc2_bias)?,
                norm2: LayerNorm::load(w, &format!("{p}.norm2"), h, s.eps)?,
            })
        } else {
            let p = format!("layers.{i}");
            let attn = |n: &str| format!("{p}.self_attn.{n}");
            Ok(Self {
                qkv: Linear::load_fused_with(
                    w,
                    &[&attn("q_proj"), &attn("k_proj"), &attn("v_proj")],
                    h,
                    h,
                    false,
                )?,
                out: Linear::load_opt(w, &attn("o_proj"), h, h, false)?,
                norm1: LayerNorm::load(w, &format!("{p}.post_attention_layernorm"), h, s.eps)?,
                fc1: Linear::load_fused_with(
                    w,
                    &[&format!("{p}.mlp.up_proj"), &format!("{p}.mlp.gate_proj")],
                    h,
                    s.inner,
                    false,
                )?,
                fc2: Linear::load_opt(w, &format!("{p}.mlp.down_proj"), s.inner, h, false)?,
                norm2: LayerNorm::load(w, &format!("{p}.post_mlp_layernorm"), h, s.eps)?,
            })
        }
    }

    fn parts<'a>(&'a self, s: &NomicShape, rope: &'a RopeBatch) -> LayerParts<'a> {
        LayerParts {
            attn: AttnParts {
                qkv: &self.qkv,
                out: &self.out,
                heads: s.heads,
                rope: Some(rope),
                scale: None,
            },
            attn_norm: &self.norm1,
            mlp: MlpParts {
                up: &self.fc1,
                act: s.act,
                down: &self.fc2,
            },
            out_norm: &self.norm2,
        }
    }

    fn bytes(&self) -> usize {
        self.qkv.bytes()
            + self.out.bytes()
            + self.norm1.bytes()
            + self.fc1.bytes()
            + self.fc2.bytes()
            + self.norm2.bytes()
    }
}

/// `NomicBertModel` without the pooler.
#[derive(Debug)]
pub struct NomicBertModel {
    word: Embedding,
    token_type: Option<Embedding>,
    emb_ln: LayerNorm,
    layers: Vec<Layer>,
    shape: NomicShape,
    device: candle_core::Device,
}

impl NomicBertModel {
    /// Loads every block named as in the checkpoint (`path` is the config, for errors).
    pub fn load(w: &Weights, cfg: &NomicConfig, path: &Path) -> Result<Self> {
        let s = cfg.shape(path)?;
        let h = s.hidden;
        let emb_ln = if w.contains("emb_ln.weight") {
            "emb_ln"
        } else {
            "embeddings.LayerNorm"
        };
        Ok(Self {
            word: Embedding::load(w, "embeddings.word_embeddings.weight", cfg.vocab_size, h)?,
            token_type: Embedding::token_types(w, cfg.type_vocab_size, h)?,
            emb_ln: LayerNorm::load(w, emb_ln, h, s.eps)?,
            layers: (0..s.layers)
                .map(|i| Layer::load(w, &s, i))
                .collect::<Result<Vec<_>>>()?,
            device: w.device().clone(),
            shape: s,
        })
    }

    /// Last hidden state `[batch * seq, hidden]` on the host, on Ember's kernels.
    pub(crate) fn forward_host(&self, batch: &Batch) -> candle_core::Result<Vec<f32>> {
        let mut x = vec![0f32; batch.ids.len() * self.shape.hidden];
        self.word.add_into(&batch.ids, &mut x)?;
        if let Some(tt) = &self.token_type {
            tt.add_into(&batch.type_ids, &mut x)?;
        }
        self.emb_ln.forward_host(&mut x, &[])?;
        let Some(rope) = &self.shape.rope else {
            candle_core::bail!("nomic_bert without rotary embeddings");
        };
        let rope = RopeBatch::new(rope, batch);
        if self.shape.prenorm {
            return self.prenorm_layers(x, batch, &rope);
        }
        host::with_scratch(|s| {
            self.layers.iter().try_for_each(|l| {
                host::layer_forward(l.parts(&self.shape, &rope), &mut x, batch, &[], s)
            })
        })?;
        Ok(x)
    }

    /// Pre-norm blocks as nomic's code runs them: each block normalizes the residual stream
    /// before attention and before the MLP, and the model returns the last MLP's output (nomic's
    /// `NomicBertEncoder` adds no final residual or norm).
    fn prenorm_layers(
        &self,
        emb: Vec<f32>,
        batch: &Batch,
        rope: &RopeBatch,
    ) -> candle_core::Result<Vec<f32>> {
        let mut residual = emb;
        let mut h = vec![0f32; residual.len()];
        let mut tmp = vec![0f32; residual.len()];
        for (i, l) in self.layers.iter().enumerate() {
            if i > 0 {
                crate::kernels::gated::add_in_place(&mut residual, &h);
            }
            h.copy_from_slice(&residual);
            l.norm1.forward_host(&mut h, &[])?;
            host::with_scratch(|s| {
                host::attention_block(l.parts(&self.shape, rope).attn, &h, batch, &[], s, &mut tmp)
            })?;
            crate::kernels::gated::add_in_place(&mut residual, &tmp);
            h.copy_from_slice(&residual);
            l.norm2.forward_host(&mut h, &[])?;
            host::with_scratch(|s| {
                host::mlp_block(l.parts(&self.shape, rope).mlp, &h, s, &mut tmp)
            })?;
            std::mem::swap(&mut h, &mut tmp);
        }
        Ok(h)
    }

    /// Longest input the config allows.
    pub fn max_positions(&self) -> usize {
        self.shape.max_positions
    }

    pub(crate) fn hidden_size(&self) -> usize {
        self.shape.hidden
    }

    pub(crate) fn device(&self) -> &candle_core::Device {
        &self.device
    }

    pub(crate) fn bytes(&self) -> usize {
        self.word.bytes()
            + self.token_type.as_ref().map_or(0, Embedding::bytes)
            + self.emb_ln.bytes()
            + self.layers.iter().map(Layer::bytes).sum::<usize>()
    }
}
