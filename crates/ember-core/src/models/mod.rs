//! Transformer encoders on candle tensors, and the pieces they share.
//!
//! Each architecture follows the candle idiom: a config mirror, `load(weights, cfg)` per block,
//! names that follow the checkpoint, and `forward`.

pub mod bert;
pub(crate) mod host;
pub mod linear;
pub mod mpnet;
pub mod quant;

use candle_core::{Device, Module, Tensor};

use crate::config::TransformerConfig;
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

/// The feed-forward activation named by `hidden_act`.
#[derive(Debug, Clone, Copy)]
pub enum Activation {
    /// Exact (erf) GELU, transformers' `gelu`.
    Gelu,
    /// Tanh approximation, `gelu_new` / `gelu_pytorch_tanh`.
    GeluTanh,
    /// ReLU.
    Relu,
}

impl Activation {
    pub(crate) fn from_config(cfg: &TransformerConfig) -> Self {
        match cfg.hidden_act.as_str() {
            "gelu_new" | "gelu_pytorch_tanh" => Activation::GeluTanh,
            "relu" => Activation::Relu,
            _ => Activation::Gelu,
        }
    }
}

impl Module for Activation {
    fn forward(&self, x: &Tensor) -> candle_core::Result<Tensor> {
        match self {
            Activation::Gelu => x.gelu_erf(),
            Activation::GeluTanh => x.gelu(),
            Activation::Relu => x.relu(),
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

/// An encoder of any supported architecture.
#[derive(Debug)]
pub enum Encoder {
    /// BERT and the RoBERTa family (XLM-RoBERTa, CamemBERT).
    Bert(bert::BertModel),
    /// MPNet.
    MPNet(mpnet::MPNetModel),
}

impl Encoder {
    /// Builds the encoder named by `cfg.model_type` from `weights`.
    pub fn load(weights: &Weights, cfg: &TransformerConfig) -> Result<Self> {
        match cfg.model_type.as_str() {
            "bert" | "roberta" | "xlm-roberta" | "camembert" => {
                Ok(Encoder::Bert(bert::BertModel::load(weights, cfg)?))
            }
            "mpnet" => Ok(Encoder::MPNet(mpnet::MPNetModel::load(weights, cfg)?)),
            other => Err(Error::Unsupported {
                id: weights.model().to_string(),
                architecture: other.to_string(),
            }),
        }
    }

    /// The last hidden state `[batch, seq, hidden]`.
    pub fn forward(&self, batch: &Batch) -> candle_core::Result<Tensor> {
        // The CPU kernels' parallel loops start cheaper from inside the pool. A pass's work is
        // about its padded tokens times the weights each one goes through.
        let cost = (batch.batch * batch.seq) as u64 * self.bytes() as u64;
        crate::kernels::threads::on_pool(cost, || match self {
            Encoder::Bert(m) => m.forward(batch),
            Encoder::MPNet(m) => m.forward(batch),
        })
    }

    /// The last hidden state computed with candle's own ops only (the benches' baseline).
    pub fn forward_candle(&self, batch: &Batch) -> candle_core::Result<Tensor> {
        match self {
            Encoder::Bert(m) => m.forward_candle(batch),
            Encoder::MPNet(m) => m.forward_candle(batch),
        }
    }

    /// The device the weights live on.
    pub fn device(&self) -> &Device {
        match self {
            Encoder::Bert(m) => m.device(),
            Encoder::MPNet(m) => m.device(),
        }
    }

    /// Bytes held by all weight tensors.
    pub fn bytes(&self) -> usize {
        match self {
            Encoder::Bert(m) => m.bytes(),
            Encoder::MPNet(m) => m.bytes(),
        }
    }
}
