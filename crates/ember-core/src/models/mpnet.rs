//! MPNet, as in transformers' `modeling_mpnet.py`: BERT-like layers plus a relative-position
//! attention bias computed once per sequence length and shared by every layer.

use candle_core::{Device, Module, Tensor};

use super::host::{self, AttnParts, LayerParts, MlpParts};
use super::relpos::RelativeBias;
use super::{attention, Activation, Batch, Embedding, LayerNorm, Linear};
use crate::config::TransformerConfig;
use crate::error::Result;
use crate::weights::Weights;

pub use super::relpos::relative_position_bucket;

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
            attn: AttnParts {
                qkv: &self.qkv,
                out: &self.o,
                heads: self.heads,
                rope: None,
                scale: None,
            },
            attn_norm: &self.attn_norm,
            mlp: MlpParts {
                up: &self.intermediate,
                act: self.act,
                down: &self.output,
            },
            out_norm: &self.out_norm,
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
    relative_bias: RelativeBias,
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
            relative_bias: RelativeBias::new(
                w.get(
                    "encoder.relative_attention_bias.weight",
                    &[cfg.relative_attention_num_buckets, cfg.num_attention_heads],
                )?,
                128,
            )
            .map_err(|source| crate::error::Error::Tensor {
                model: w.model().to_string(),
                source,
            })?,
            layers: (0..cfg.num_hidden_layers)
                .map(|i| Layer::load(w, cfg, i))
                .collect::<Result<Vec<_>>>()?,
            word,
            device,
        })
    }

    /// `[heads, seq, seq]` relative-position bias on the host
    /// (`MPNetEncoder.compute_position_bias`).
    fn position_bias_host(&self, seq: usize) -> candle_core::Result<Vec<f32>> {
        self.relative_bias.for_length(seq)
    }

    /// `[1, heads, seq, seq]` relative-position bias as a tensor (the candle path).
    fn position_bias(&self, seq: usize) -> candle_core::Result<Tensor> {
        let heads = self.layers.first().map_or(0, |l| l.heads);
        let bias = self.position_bias_host(seq)?;
        Tensor::from_vec(bias, (1, heads, seq, seq), &self.device)
    }

    /// Word + position embeddings, before the norm.
    fn embed_sum(&self, batch: &Batch) -> candle_core::Result<Tensor> {
        let shape = (batch.batch, batch.seq);
        let positions = batch.offset_positions(self.padding_idx);
        self.word.forward(&batch.ids, shape)? + self.position.forward(&positions, shape)?
    }

    /// Last hidden state `[batch * seq, hidden]` on the host, on Ember's kernels (CPU only).
    pub(crate) fn forward_host(&self, batch: &Batch) -> candle_core::Result<Vec<f32>> {
        let positions = batch.offset_positions(self.padding_idx);
        let mut x = vec![0f32; batch.ids.len() * self.word.dim()];
        self.word.add_into(&batch.ids, &mut x)?;
        self.position.add_into(&positions, &mut x)?;
        self.emb_norm.forward_host(&mut x, &[])?;
        // `[heads, seq, seq]`; the attention kernel applies the padding mask itself.
        let bias = self.position_bias_host(batch.seq)?;
        host::with_scratch(|s| {
            self.layers
                .iter()
                .try_for_each(|l| host::layer_forward(l.parts(), &mut x, batch, &bias, s))
        })?;
        Ok(x)
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

    pub(crate) fn hidden_size(&self) -> usize {
        self.word.dim()
    }

    pub(crate) fn device(&self) -> &Device {
        &self.device
    }

    pub(crate) fn bytes(&self) -> usize {
        self.word.bytes()
            + self.position.bytes()
            + self.emb_norm.bytes()
            + self.relative_bias.bytes()
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
