//! MPNet, as in transformers' `modeling_mpnet.py`: BERT-like layers plus a relative-position
//! attention bias computed once per sequence length and shared by every layer.

use candle_core::{Device, Module, Tensor};

use super::host::{self, LayerParts};
use super::{attention, Activation, Batch, Embedding, LayerNorm, Linear};
use crate::config::TransformerConfig;
use crate::error::Result;
use crate::weights::Weights;

/// T5-style bucketing of a relative position (`MPNetEncoder.relative_position_bucket`), computed
/// in f32 as PyTorch does so bucket edges match.
pub fn relative_position_bucket(
    relative_position: i64,
    num_buckets: usize,
    max_distance: usize,
) -> usize {
    let half = (num_buckets / 2) as i64;
    let n = -relative_position;
    let mut ret = if n < 0 { half } else { 0 };
    let n = n.abs();
    let max_exact = half / 2;
    if n < max_exact {
        ret += n;
    } else {
        let ratio = (n as f32 / max_exact as f32).ln()
            / ((max_distance as f64 / max_exact as f64).ln() as f32);
        let large = max_exact + (ratio * (half - max_exact) as f32) as i64;
        ret += large.min(half - 1);
    }
    ret as usize
}

#[derive(Debug)]
struct Layer {
    qkv: Linear,
    o: Linear,
    attn_norm: LayerNorm,
    intermediate: Linear,
    output: Linear,
    out_norm: LayerNorm,
    heads: usize,
    act: Activation,
}

impl Layer {
    fn load(w: &Weights, cfg: &TransformerConfig, i: usize) -> Result<Self> {
        let h = cfg.hidden_size;
        let p = format!("encoder.layer.{i}");
        let qkv = Linear::load_fused(
            w,
            &[
                &format!("{p}.attention.attn.q"),
                &format!("{p}.attention.attn.k"),
                &format!("{p}.attention.attn.v"),
            ],
            h,
            h,
        )?;
        Ok(Self {
            qkv,
            o: Linear::load(w, &format!("{p}.attention.attn.o"), h, h)?,
            attn_norm: LayerNorm::load(
                w,
                &format!("{p}.attention.LayerNorm"),
                h,
                cfg.layer_norm_eps,
            )?,
            intermediate: Linear::load(
                w,
                &format!("{p}.intermediate.dense"),
                h,
                cfg.intermediate_size,
            )?,
            output: Linear::load(w, &format!("{p}.output.dense"), cfg.intermediate_size, h)?,
            out_norm: LayerNorm::load(w, &format!("{p}.output.LayerNorm"), h, cfg.layer_norm_eps)?,
            heads: cfg.num_attention_heads,
            act: Activation::from_config(cfg),
        })
    }

    fn parts(&self) -> LayerParts<'_> {
        LayerParts {
            qkv: &self.qkv,
            attn_out: &self.o,
            attn_norm: &self.attn_norm,
            intermediate: &self.intermediate,
            output: &self.output,
            out_norm: &self.out_norm,
            heads: self.heads,
            act: self.act,
        }
    }

    fn forward(&self, x: &Tensor, bias: &Tensor) -> candle_core::Result<Tensor> {
        let ctx = attention(&self.qkv.forward(x)?, self.heads, bias)?;
        let x = self.attn_norm.forward(&(self.o.forward(&ctx)? + x)?)?;
        let ff = self.act.forward(&self.intermediate.forward(&x)?)?;
        self.out_norm.forward(&(self.output.forward(&ff)? + x)?)
    }

    fn bytes(&self) -> usize {
        self.qkv.bytes()
            + self.o.bytes()
            + self.attn_norm.bytes()
            + self.intermediate.bytes()
            + self.output.bytes()
            + self.out_norm.bytes()
    }
}

/// `MPNetModel` without the pooler.
#[derive(Debug)]
pub struct MPNetModel {
    word: Embedding,
    position: Embedding,
    emb_norm: LayerNorm,
    padding_idx: u32,
    relative_bias: Tensor,
    num_buckets: usize,
    layers: Vec<Layer>,
    device: Device,
}

impl MPNetModel {
    /// Loads every block named as in the checkpoint.
    pub fn load(w: &Weights, cfg: &TransformerConfig) -> Result<Self> {
        let h = cfg.hidden_size;
        let word = Embedding::load(w, "embeddings.word_embeddings.weight", cfg.vocab_size, h)?;
        let device = w.device().clone();
        Ok(Self {
            position: Embedding::load(
                w,
                "embeddings.position_embeddings.weight",
                cfg.max_position_embeddings,
                h,
            )?,
            emb_norm: LayerNorm::load(w, "embeddings.LayerNorm", h, cfg.layer_norm_eps)?,
            padding_idx: cfg.pad_token_id.unwrap_or(1),
            relative_bias: w.get(
                "encoder.relative_attention_bias.weight",
                &[cfg.relative_attention_num_buckets, cfg.num_attention_heads],
            )?,
            num_buckets: cfg.relative_attention_num_buckets,
            layers: (0..cfg.num_hidden_layers)
                .map(|i| Layer::load(w, cfg, i))
                .collect::<Result<Vec<_>>>()?,
            word,
            device,
        })
    }

    /// `[1, heads, seq, seq]` relative-position bias (`MPNetEncoder.compute_position_bias`).
    fn position_bias(&self, seq: usize) -> candle_core::Result<Tensor> {
        let mut buckets = Vec::with_capacity(seq * seq);
        for q in 0..seq as i64 {
            for k in 0..seq as i64 {
                buckets.push(relative_position_bucket(k - q, self.num_buckets, 128) as u32);
            }
        }
        let idx = Tensor::from_vec(buckets, seq * seq, &self.device)?;
        let heads = self.relative_bias.dims()[1];
        self.relative_bias
            .index_select(&idx, 0)?
            .reshape((seq, seq, heads))?
            .permute((2, 0, 1))?
            .unsqueeze(0)?
            .contiguous()
    }

    /// Word + position embeddings, before the norm.
    fn embed_sum(&self, batch: &Batch) -> candle_core::Result<Tensor> {
        let shape = (batch.batch, batch.seq);
        let positions = batch.offset_positions(self.padding_idx);
        self.word.forward(&batch.ids, shape)? + self.position.forward(&positions, shape)?
    }

    /// Last hidden state `[batch, seq, hidden]`: the CPU kernels on the CPU, candle elsewhere.
    pub fn forward(&self, batch: &Batch) -> candle_core::Result<Tensor> {
        if self.device.is_cpu() && batch.batch * batch.seq > 0 {
            self.forward_host(batch)
        } else {
            self.forward_candle(batch)
        }
    }

    fn forward_host(&self, batch: &Batch) -> candle_core::Result<Tensor> {
        let mut x = self.embed_sum(batch)?.flatten_all()?.to_vec1::<f32>()?;
        self.emb_norm.forward_host(&mut x, &[])?;
        // `[heads, seq, seq]`; the attention kernel applies the padding mask itself.
        let bias = self
            .position_bias(batch.seq)?
            .flatten_all()?
            .to_vec1::<f32>()?;
        host::with_scratch(|s| {
            self.layers
                .iter()
                .try_for_each(|l| host::layer_forward(l.parts(), &mut x, batch, &bias, s))
        })?;
        let h = x.len() / (batch.batch * batch.seq);
        Tensor::from_vec(x, (batch.batch, batch.seq, h), &self.device)
    }

    /// The same forward pass with candle's own ops (other devices, and the benches' baseline).
    pub fn forward_candle(&self, batch: &Batch) -> candle_core::Result<Tensor> {
        let mut x = self.emb_norm.forward(&self.embed_sum(batch)?)?;
        let bias = self
            .position_bias(batch.seq)?
            .broadcast_add(&batch.mask_bias(&self.device)?)?;
        for layer in &self.layers {
            x = layer.forward(&x, &bias)?;
        }
        Ok(x)
    }

    pub(crate) fn device(&self) -> &Device {
        &self.device
    }

    pub(crate) fn bytes(&self) -> usize {
        self.word.bytes()
            + self.position.bytes()
            + self.emb_norm.bytes()
            + self.relative_bias.elem_count() * 4
            + self.layers.iter().map(Layer::bytes).sum::<usize>()
    }
}

#[cfg(test)]
mod tests {
    use super::relative_position_bucket;

    #[test]
    fn buckets_match_transformers_for_every_offset() {
        // fixtures/mpnet_relative_buckets.txt: transformers' function run by torch for -400..=400.
        let table = include_str!("../../../../fixtures/mpnet_relative_buckets.txt");
        let want: Vec<usize> = table
            .split(',')
            .map(|v| v.trim().parse().unwrap())
            .collect();
        assert_eq!(want.len(), 801);
        for (i, w) in want.iter().enumerate() {
            let rel = i as i64 - 400;
            assert_eq!(
                relative_position_bucket(rel, 32, 128),
                *w,
                "relative position {rel}"
            );
        }
    }
}
