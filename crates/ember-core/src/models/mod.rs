//! Encoders (BERT, XLM-RoBERTa, MPNet, NomicBERT, T5; the rotary families Qwen3, Gemma3,
//! ModernBERT and Alibaba GTE), the static model2vec table, Dense heads, and the pieces they
//! share.
//!
//! Each architecture follows the candle idiom: a config mirror, `load(weights, cfg)` per block,
//! names that follow the checkpoint, and `forward`.

pub mod bert;
pub(crate) mod block;
pub mod dense;
pub mod gemma3;
pub mod gte;
pub(crate) mod host;
pub mod linear;
pub mod modernbert;
pub mod mpnet;
pub mod nomic;
pub mod quant;
pub mod qwen3;
pub mod relpos;
pub mod rotary;
pub mod static_embed;
pub mod t5;
pub(crate) mod unpad;

pub(crate) use unpad::Unpadded;

use std::path::Path;

use candle_core::{Device, Module, Tensor};

use crate::config::{ModelConfig, TransformerConfig};
use crate::error::{Error, Result};
use crate::weights::Weights;
pub use linear::Linear;

/// A padded batch of token ids, held on the host; encoders build their tensors from it.
#[derive(Debug, Clone)]
pub struct Batch {
    /// Row-major `[batch, seq]` token ids.
    pub ids: Vec<u32>,
    /// Row-major `[batch, seq]` token type ids.
    pub type_ids: Vec<u32>,
    /// Row-major `[batch, seq]` attention mask (1 = token, 0 = padding).
    pub mask: Vec<u32>,
    /// Number of sequences.
    pub batch: usize,
    /// Padded length of each sequence.
    pub seq: usize,
}

impl Batch {
    /// Real (unpadded) length of row `i`.
    pub fn len_of(&self, i: usize) -> usize {
        self.mask[i * self.seq..(i + 1) * self.seq]
            .iter()
            .filter(|&&m| m != 0)
            .count()
    }

    /// RoBERTa / MPNet positions: `padding_idx + 1 + i` for real tokens, `padding_idx` for padding
    /// (transformers' `create_position_ids_from_input_ids`).
    pub(crate) fn offset_positions(&self, padding_idx: u32) -> Vec<u32> {
        let mut out = Vec::with_capacity(self.ids.len());
        for row in self.ids.chunks(self.seq.max(1)) {
            let mut count = 0u32;
            for &id in row {
                if id != padding_idx {
                    count += 1;
                    out.push(padding_idx + count);
                } else {
                    out.push(padding_idx);
                }
            }
        }
        out
    }

    /// Additive attention bias `[batch, 1, 1, seq]`: 0 for tokens, a large negative for padding.
    pub(crate) fn mask_bias(&self, device: &Device) -> candle_core::Result<Tensor> {
        let bias: Vec<f32> = self
            .mask
            .iter()
            .map(|&m| if m != 0 { 0.0 } else { -1e30 })
            .collect();
        Tensor::from_vec(bias, (self.batch, 1, 1, self.seq), device)
    }
}

/// Layer normalization over the last dimension with learned scale and shift.
#[derive(Debug, Clone)]
pub struct LayerNorm {
    weight: Tensor,
    bias: Tensor,
    eps: f32,
}

impl LayerNorm {
    /// Loads `{prefix}.weight` and `{prefix}.bias`, both `[dim]`.
    pub fn load(w: &Weights, prefix: &str, dim: usize, eps: f64) -> Result<Self> {
        Ok(Self {
            weight: w.get(&format!("{prefix}.weight"), &[dim])?,
            bias: w.get(&format!("{prefix}.bias"), &[dim])?,
            eps: eps as f32,
        })
    }

    pub(crate) fn bytes(&self) -> usize {
        (self.weight.elem_count() + self.bias.elem_count()) * 4
    }
}

impl Module for LayerNorm {
    fn forward(&self, x: &Tensor) -> candle_core::Result<Tensor> {
        candle_nn::ops::layer_norm(&x.contiguous()?, &self.weight, &self.bias, self.eps)
    }
}

/// An activation: a feed-forward's (`hidden_act`), a gated feed-forward's, or a Dense module's.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Activation {
    /// Exact (erf) GELU, transformers' `gelu`.
    Gelu,
    /// Tanh approximation, `gelu_new` / `gelu_pytorch_tanh`.
    GeluTanh,
    /// ReLU.
    Relu,
    /// `x * sigmoid(x)` (`silu`, `swish`).
    Silu,
    /// Tanh (sentence-transformers' Dense default in older models).
    Tanh,
    /// Logistic sigmoid.
    Sigmoid,
    /// No activation.
    Identity,
    /// Gated: `up * silu(gate)` over `[up | gate]` rows (NomicBERT's `swiglu`).
    SwiGlu,
    /// Gated: `up * gelu_tanh(gate)` over `[up | gate]` rows (T5's `gated-gelu`).
    GeGluTanh,
}

impl Activation {
    pub(crate) fn from_config(cfg: &TransformerConfig) -> Self {
        Self::from_name(&cfg.hidden_act).unwrap_or(Activation::Gelu)
    }

    /// The activation a config names (`hidden_act`, `activation_function`, T5's
    /// `feed_forward_proj`), or `None` when Ember has none of that name.
    pub fn from_name(name: &str) -> Option<Self> {
        Some(match name {
            "gelu" => Activation::Gelu,
            "gelu_new" | "gelu_pytorch_tanh" | "gelu_fast" => Activation::GeluTanh,
            "relu" => Activation::Relu,
            "silu" | "swish" => Activation::Silu,
            "tanh" => Activation::Tanh,
            "sigmoid" => Activation::Sigmoid,
            "linear" | "identity" => Activation::Identity,
            "swiglu" => Activation::SwiGlu,
            "gated-gelu" | "geglu" => Activation::GeGluTanh,
            _ => return None,
        })
    }

    /// A sentence-transformers Dense module's `activation_function` (a torch class path such as
    /// `torch.nn.modules.activation.Tanh`), or `None` when Ember has no such activation.
    pub fn from_torch_class(path: &str) -> Option<Self> {
        let class = path.rsplit('.').next().unwrap_or(path);
        Some(match class {
            "Identity" => Activation::Identity,
            "Tanh" => Activation::Tanh,
            "ReLU" => Activation::Relu,
            "GELU" => Activation::Gelu,
            "SiLU" => Activation::Silu,
            "Sigmoid" => Activation::Sigmoid,
            _ => return None,
        })
    }

    /// True for the gated forms, whose input rows are `[up | gate]`, twice the output width.
    pub fn is_gated(self) -> bool {
        matches!(self, Activation::SwiGlu | Activation::GeGluTanh)
    }
}

impl Module for Activation {
    fn forward(&self, x: &Tensor) -> candle_core::Result<Tensor> {
        match self {
            Activation::Gelu => x.gelu_erf(),
            Activation::GeluTanh => x.gelu(),
            Activation::Relu => x.relu(),
            Activation::Silu => x.silu(),
            Activation::Tanh => x.tanh(),
            Activation::Sigmoid => candle_nn::ops::sigmoid(x),
            Activation::Identity => Ok(x.clone()),
            Activation::SwiGlu | Activation::GeGluTanh => {
                let last = x.rank() - 1;
                let inner = x.dim(last)? / 2;
                let up = x.narrow(last, 0, inner)?;
                let gate = x.narrow(last, inner, inner)?;
                let act = if *self == Activation::SwiGlu {
                    gate.silu()?
                } else {
                    gate.gelu()?
                };
                up * act
            }
        }
    }
}

/// An embedding table (`[rows, dim]`) stored in the model's dtype; lookups return f32.
#[derive(Debug, Clone)]
pub struct Embedding {
    table: quant::Stored,
}

impl Embedding {
    /// Loads `name` (`[rows, dim]`) in the weights' dtype.
    pub fn load(w: &Weights, name: &str, rows: usize, dim: usize) -> Result<Self> {
        let t = w.get(name, &[rows, dim])?;
        let table = quant::Stored::new(t, w.dtype()).map_err(|source| Error::Tensor {
            model: w.model().to_string(),
            source,
        })?;
        Ok(Self { table })
    }

    /// BERT-style `embeddings.token_type_embeddings.weight` (`[types, dim]`), or `None` for a
    /// config with no token types (`type_vocab_size` 0).
    pub fn token_types(w: &Weights, types: usize, dim: usize) -> Result<Option<Self>> {
        (types > 0)
            .then(|| Self::load(w, "embeddings.token_type_embeddings.weight", types, dim))
            .transpose()
    }

    /// Adds rows `ids` to `out` (`[ids.len(), dim]`) on the host, widened to f32.
    pub fn add_into(&self, ids: &[u32], out: &mut [f32]) -> candle_core::Result<()> {
        self.table.add_rows(ids, out)
    }

    /// Width of a row.
    pub fn dim(&self) -> usize {
        self.table.dims().1
    }

    /// Rows `ids` as `[batch, seq, dim]` f32.
    pub fn forward(&self, ids: &[u32], shape: (usize, usize)) -> candle_core::Result<Tensor> {
        let dim = self.table.dims().1;
        self.table.gather(ids)?.reshape((shape.0, shape.1, dim))
    }

    /// Bytes held.
    pub fn bytes(&self) -> usize {
        self.table.bytes()
    }

    /// The table as an f32 `[rows, dim]` tensor.
    pub fn to_f32(&self) -> candle_core::Result<Tensor> {
        self.table.to_f32()
    }
}

/// Multi-head scaled dot-product attention over a fused `[b, s, 3h]` QKV projection.
///
/// `bias` is added to the scores and broadcasts to `[b, heads, s, s]` (padding mask, relative
/// position bias).
pub(crate) fn attention(qkv: &Tensor, heads: usize, bias: &Tensor) -> candle_core::Result<Tensor> {
    let (b, s, three_h) = qkv.dims3()?;
    let h = three_h / 3;
    let d = h / heads;
    let split = |i: usize| -> candle_core::Result<Tensor> {
        qkv.narrow(2, i * h, h)?
            .reshape((b, s, heads, d))?
            .transpose(1, 2)?
            .contiguous()
    };
    let q = (split(0)? * (1.0 / (d as f64).sqrt()))?;
    let k = split(1)?;
    let v = split(2)?;
    let scores = q.matmul(&k.t()?)?.broadcast_add(bias)?;
    let probs = candle_nn::ops::softmax_last_dim(&scores)?;
    probs.matmul(&v)?.transpose(1, 2)?.reshape((b, s, h))
}

/// The last hidden state of a padded batch on the host: `[batch, seq, dim]` row-major. Heads
/// (pooling, Dense, classifiers) read it from here, whatever the encoder.
#[derive(Debug, Clone, Default)]
pub struct Hidden {
    /// Row-major `[batch, seq, dim]`.
    pub data: Vec<f32>,
    /// Sequences.
    pub batch: usize,
    /// Padded length.
    pub seq: usize,
    /// Width of one token's vector.
    pub dim: usize,
}

impl Hidden {
    /// Sequence `b`'s token vectors, `[seq, dim]`.
    pub fn sequence(&self, b: usize) -> &[f32] {
        &self.data[b * self.seq * self.dim..(b + 1) * self.seq * self.dim]
    }

    /// Copies a `[batch, seq, dim]` tensor to the host (devices other than the CPU).
    pub fn from_tensor(t: &Tensor) -> candle_core::Result<Self> {
        let (batch, seq, dim) = t.dims3()?;
        Ok(Self {
            data: t.flatten_all()?.to_vec1::<f32>()?,
            batch,
            seq,
            dim,
        })
    }

    /// As a `[batch, seq, dim]` tensor on `device`.
    pub fn to_tensor(&self, device: &Device) -> candle_core::Result<Tensor> {
        Tensor::from_slice(&self.data, (self.batch, self.seq, self.dim), device)
    }
}

/// An encoder of any supported architecture: token ids in, the last hidden state out (on the
/// host), for any head to read (pooling and Dense, classifiers, per-token outputs).
#[derive(Debug)]
pub enum Encoder {
    /// BERT and the RoBERTa family (XLM-RoBERTa, CamemBERT).
    Bert(bert::BertModel),
    /// MPNet.
    MPNet(mpnet::MPNetModel),
    /// NomicBERT (nomic-embed-text).
    Nomic(nomic::NomicBertModel),
    /// T5 encoders (INSTRUCTOR, sentence-t5).
    T5(t5::T5EncoderModel),
    /// The rotary families: Qwen3, Gemma3, ModernBERT, Alibaba GTE.
    Rotary(rotary::RotaryModel),
}

impl Encoder {
    /// Builds the encoder `cfg` describes from `weights` (`path` is the config, for errors).
    /// A static model (`model2vec`) has no encoder: that is an error here.
    pub fn load(weights: &Weights, cfg: &ModelConfig, path: &Path) -> Result<Self> {
        match cfg {
            ModelConfig::Transformer(c) => match c.model_type.as_str() {
                "mpnet" => Ok(Encoder::MPNet(mpnet::MPNetModel::load(weights, c)?)),
                _ => Ok(Encoder::Bert(bert::BertModel::load(weights, c)?)),
            },
            ModelConfig::Nomic(c) => Ok(Encoder::Nomic(nomic::NomicBertModel::load(
                weights, c, path,
            )?)),
            ModelConfig::T5(c) => Ok(Encoder::T5(t5::T5EncoderModel::load(weights, c, path)?)),
            ModelConfig::Rotary(c) => Ok(Encoder::Rotary(rotary::RotaryModel::load(
                weights, c, path,
            )?)),
            ModelConfig::Static(_) => Err(Error::Config {
                path: path.to_path_buf(),
                message: "a model2vec model has no transformer encoder".into(),
            }),
        }
    }

    /// The last hidden state on the host. On the CPU the pass runs on Ember's kernels from ids
    /// to a host buffer with no tensor made; on other devices candle's ops run (BERT and MPNet)
    /// and the result is copied back once.
    pub fn forward(&self, batch: &Batch) -> candle_core::Result<Hidden> {
        let dim = self.hidden_size();
        if batch.batch * batch.seq == 0 {
            return Ok(Hidden {
                data: Vec::new(),
                batch: batch.batch,
                seq: batch.seq,
                dim,
            });
        }
        if !self.device().is_cpu() {
            return Hidden::from_tensor(&self.forward_candle(batch)?);
        }
        // The CPU kernels' parallel loops start cheaper from inside the pool. A pass's work is
        // about its padded tokens times the weights each one goes through.
        let cost = (batch.batch * batch.seq) as u64 * self.bytes() as u64;
        let data = crate::kernels::threads::on_pool(cost, || match self {
            Encoder::Bert(m) => m.forward_host(batch),
            Encoder::MPNet(m) => m.forward_host(batch),
            Encoder::Nomic(m) => m.forward_host(batch),
            Encoder::T5(m) => m.forward_host(batch),
            Encoder::Rotary(m) => m.forward_host(batch),
        })?;
        Ok(Hidden {
            data,
            batch: batch.batch,
            seq: batch.seq,
            dim,
        })
    }

    /// The last hidden state computed with candle's own ops only (other devices, and the
    /// benches' baseline). NomicBERT, T5 and the rotary families run on Ember's CPU kernels
    /// only.
    pub fn forward_candle(&self, batch: &Batch) -> candle_core::Result<Tensor> {
        match self {
            Encoder::Bert(m) => m.forward_candle(batch),
            Encoder::MPNet(m) => m.forward_candle(batch),
            Encoder::Nomic(_) | Encoder::T5(_) | Encoder::Rotary(_) => candle_core::bail!(
                "this architecture runs on Ember's CPU kernels only (no candle path for other \
                 devices yet)"
            ),
        }
    }

    /// Width of the last hidden state.
    pub fn hidden_size(&self) -> usize {
        match self {
            Encoder::Bert(m) => m.hidden_size(),
            Encoder::MPNet(m) => m.hidden_size(),
            Encoder::Nomic(m) => m.hidden_size(),
            Encoder::T5(m) => m.hidden_size(),
            Encoder::Rotary(m) => m.hidden_size(),
        }
    }

    /// The device the weights live on.
    pub fn device(&self) -> &Device {
        match self {
            Encoder::Bert(m) => m.device(),
            Encoder::MPNet(m) => m.device(),
            Encoder::Nomic(m) => m.device(),
            Encoder::T5(m) => m.device(),
            Encoder::Rotary(m) => m.device(),
        }
    }

    /// Bytes held by all weight tensors.
    pub fn bytes(&self) -> usize {
        match self {
            Encoder::Bert(m) => m.bytes(),
            Encoder::MPNet(m) => m.bytes(),
            Encoder::Nomic(m) => m.bytes(),
            Encoder::T5(m) => m.bytes(),
            Encoder::Rotary(m) => m.bytes(),
        }
    }
}
