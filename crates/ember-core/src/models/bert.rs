//! BERT and the RoBERTa family (XLM-RoBERTa), as in transformers' `modeling_bert.py` /
//! `modeling_xlm_roberta.py`. The two differ only in how position ids are made: BERT counts from
//! 0, RoBERTa from `pad_token_id + 1` (`create_position_ids_from_input_ids`).

use candle_core::{Device, Module, Tensor};

use super::host::{self, AttnParts, LayerParts, MlpParts};
use super::{attention, Activation, Batch, Embedding, LayerNorm, Linear};
use crate::config::TransformerConfig;
use crate::error::Result;
use crate::weights::Weights;

/// `BertEmbeddings`: word + position + token type, then LayerNorm.
#[derive(Debug)]
struct Embeddings {
    word: Embedding,
    position: Embedding,
    token_type: Option<Embedding>,
    norm: LayerNorm,
    /// `Some(pad)` for RoBERTa-style positions.
    position_offset: Option<u32>,
}

impl Embeddings {
    fn load(w: &Weights, cfg: &TransformerConfig) -> Result<Self> {
        let h = cfg.hidden_size;
        let roberta = cfg.model_type != "bert";
        Ok(Self {
            word: Embedding::load(w, "embeddings.word_embeddings.weight", cfg.vocab_size, h)?,
            position: Embedding::load(
                w,
                "embeddings.position_embeddings.weight",
                cfg.max_position_embeddings,
                h,
            )?,
            token_type: Embedding::token_types(w, cfg.type_vocab_size, h)?,
            norm: LayerNorm::load(w, "embeddings.LayerNorm", h, cfg.layer_norm_eps)?,
            position_offset: roberta.then(|| cfg.pad_token_id.unwrap_or(1)),
        })
    }

    fn forward(&self, batch: &Batch) -> candle_core::Result<Tensor> {
        self.norm.forward(&self.sum(batch)?)
    }

    /// Word + position + token type, before the norm.
    fn sum(&self, batch: &Batch) -> candle_core::Result<Tensor> {
        let shape = (batch.batch, batch.seq);
        let positions: Vec<u32> = match self.position_offset {
            Some(pad) => batch.offset_positions(pad),
            None => (0..batch.batch).flat_map(|_| 0..batch.seq as u32).collect(),
        };
        let mut x = self.word.forward(&batch.ids, shape)?;
        x = (x + self.position.forward(&positions, shape)?)?;
        if let Some(tt) = &self.token_type {
            x = (x + tt.forward(&batch.type_ids, shape)?)?;
        }
        Ok(x)
    }

    /// Word + position + token type, then the norm, into a host buffer `[tokens, hidden]`.
    fn forward_host(&self, batch: &Batch) -> candle_core::Result<Vec<f32>> {
        let positions: Vec<u32> = match self.position_offset {
            Some(pad) => batch.offset_positions(pad),
            None => (0..batch.batch).flat_map(|_| 0..batch.seq as u32).collect(),
        };
        let mut x = vec![0f32; batch.ids.len() * self.word.dim()];
        self.word.add_into(&batch.ids, &mut x)?;
        self.position.add_into(&positions, &mut x)?;
        if let Some(tt) = &self.token_type {
            tt.add_into(&batch.type_ids, &mut x)?;
        }
        self.norm.forward_host(&mut x, &[])?;
        Ok(x)
    }

    fn bytes(&self) -> usize {
        self.word.bytes()
            + self.position.bytes()
            + self.token_type.as_ref().map_or(0, Embedding::bytes)
            + self.norm.bytes()
    }
}

/// One `BertLayer`: self-attention, add & norm, feed-forward, add & norm.
#[derive(Debug)]
struct Layer {
    qkv: Linear,
    attn_out: Linear,
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
                &format!("{p}.attention.self.query"),
                &format!("{p}.attention.self.key"),
                &format!("{p}.attention.self.value"),
            ],
            h,
            h,
        )?;
        Ok(Self {
            qkv,
            attn_out: Linear::load(w, &format!("{p}.attention.output.dense"), h, h)?,
            attn_norm: LayerNorm::load(
                w,
                &format!("{p}.attention.output.LayerNorm"),
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
                out: &self.attn_out,
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
        let x = self
            .attn_norm
            .forward(&(self.attn_out.forward(&ctx)? + x)?)?;
        let ff = self.act.forward(&self.intermediate.forward(&x)?)?;
        self.out_norm.forward(&(self.output.forward(&ff)? + x)?)
    }

    fn bytes(&self) -> usize {
        self.qkv.bytes()
            + self.attn_out.bytes()
            + self.attn_norm.bytes()
            + self.intermediate.bytes()
            + self.output.bytes()
            + self.out_norm.bytes()
    }
}

/// `BertModel` without the pooler (sentence embeddings pool the last hidden state themselves).
#[derive(Debug)]
pub struct BertModel {
    embeddings: Embeddings,
    layers: Vec<Layer>,
    device: Device,
}

impl BertModel {
    /// Loads every block named as in the checkpoint.
    pub fn load(w: &Weights, cfg: &TransformerConfig) -> Result<Self> {
        let embeddings = Embeddings::load(w, cfg)?;
        let device = w.device().clone();
        let layers = (0..cfg.num_hidden_layers)
            .map(|i| Layer::load(w, cfg, i))
            .collect::<Result<Vec<_>>>()?;
        Ok(Self {
            embeddings,
            layers,
            device,
        })
    }

    /// Last hidden state `[batch * seq, hidden]` on the host, on Ember's kernels (CPU only).
    pub(crate) fn forward_host(&self, batch: &Batch) -> candle_core::Result<Vec<f32>> {
        let mut x = self.embeddings.forward_host(batch)?;
        host::with_scratch(|s| {
            self.layers
                .iter()
                .try_for_each(|l| host::layer_forward(l.parts(), &mut x, batch, &[], s))
        })?;
        Ok(x)
    }

    /// The same forward pass with candle's own ops (other devices, and the benches' baseline).
    pub fn forward_candle(&self, batch: &Batch) -> candle_core::Result<Tensor> {
        let bias = batch.mask_bias(&self.device)?;
        let mut x = self.embeddings.forward(batch)?;
        for layer in &self.layers {
            x = layer.forward(&x, &bias)?;
        }
        Ok(x)
    }

    pub(crate) fn hidden_size(&self) -> usize {
        self.embeddings.word.dim()
    }

    pub(crate) fn device(&self) -> &Device {
        &self.device
    }

    pub(crate) fn bytes(&self) -> usize {
        self.embeddings.bytes() + self.layers.iter().map(Layer::bytes).sum::<usize>()
    }
}
