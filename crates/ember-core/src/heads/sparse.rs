//! SPLADE: a masked-LM head over the last hidden state, `log(1 + relu(logits))` pooled over the
//! tokens, as sentence-transformers' `SparseEncoder` (`MLMTransformer` + `SpladePooling`) does;
//! and the static query side of inference-free models (`SparseStaticEmbedding`: one learned
//! weight, typically an IDF, per vocabulary token present in the query).
//!
//! The masked-LM heads follow transformers: `BertOnlyMLMHead` (`cls.predictions.transform` dense,
//! activation and LayerNorm, then the decoder tied to the word embeddings plus
//! `cls.predictions.bias`), DistilBERT's `vocab_transform` / `vocab_layer_norm` /
//! `vocab_projector`, and RoBERTa's `lm_head`. The decoder is a `[vocab, hidden]` GEMM per token,
//! so it runs over real tokens only (padding rows skipped), a few dozen rows at a time so the
//! logits never take more than a few MB; `max` pooling keeps the running maximum of the logits
//! and applies the (monotonic) activation once per vocabulary entry at the end.

use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::config::{read_json_opt, TransformerConfig};
use crate::error::{Error, Result};
use crate::kernels::int8::QuantizedRows;
use crate::models::{Activation, LayerNorm, Linear};
use crate::tokenize::TextTokenizer;
use crate::weights::{weight_files, Weights};

/// Token rows whose logits are computed at once.
const CHUNK: usize = 32;

/// `SpladePooling`'s `config.json`.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
pub struct SpladeConfig {
    /// `max` (SPLADE v2 and later) or `sum`.
    #[serde(default = "default_strategy")]
    pub pooling_strategy: SpladeStrategy,
    /// `relu` (`log1p(relu(x))`) or `log1p_relu` (`log1p(log1p(relu(x)))`, OpenSearch's models).
    #[serde(default = "default_activation")]
    pub activation_function: SpladeActivation,
}

/// How token weights are pooled.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum SpladeStrategy {
    Max,
    Sum,
}

/// The saturation applied to the logits.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum SpladeActivation {
    Relu,
    Log1pRelu,
}

fn default_strategy() -> SpladeStrategy {
    SpladeStrategy::Max
}
fn default_activation() -> SpladeActivation {
    SpladeActivation::Relu
}

impl Default for SpladeConfig {
    fn default() -> Self {
        Self {
            pooling_strategy: SpladeStrategy::Max,
            activation_function: SpladeActivation::Relu,
        }
    }
}

impl SpladeConfig {
    fn saturate(self, x: f32) -> f32 {
        let y = x.max(0.0).ln_1p();
        match self.activation_function {
            SpladeActivation::Relu => y,
            SpladeActivation::Log1pRelu => y.ln_1p(),
        }
    }
}

/// One sparse vector: the nonzero entries, by increasing index.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct SparseVector {
    pub indices: Vec<u32>,
    pub values: Vec<f32>,
}

impl SparseVector {
    /// The nonzero entries of `dense`, or its `top_k` largest (ties: lower index first), by
    /// increasing index.
    pub fn from_dense(dense: &[f32], top_k: Option<usize>) -> Self {
        let mut nz: Vec<(u32, f32)> = dense
            .iter()
            .enumerate()
            .filter(|(_, &v)| v != 0.0)
            .map(|(i, &v)| (i as u32, v))
            .collect();
        if let Some(k) = top_k.filter(|&k| k < nz.len()) {
            nz.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
            nz.truncate(k);
            nz.sort_by_key(|e| e.0);
        }
        Self {
            indices: nz.iter().map(|e| e.0).collect(),
            values: nz.iter().map(|e| e.1).collect(),
        }
    }

    /// Entries stored.
    pub fn len(&self) -> usize {
        self.indices.len()
    }

    /// Whether no entry is stored.
    pub fn is_empty(&self) -> bool {
        self.indices.is_empty()
    }
}

/// The static query side of an inference-free model.
#[derive(Debug)]
pub struct StaticQuery {
    weights: Vec<f32>,
    /// The route's own tokenizer, when it ships one.
    pub(crate) tokenizer: Option<TextTokenizer>,
    pub(crate) max_length: Option<usize>,
}

impl StaticQuery {
    /// Reads `SparseStaticEmbedding` from `dir`: `model.safetensors` (`weight`, `[vocab]`), or
    /// an `idf.json` of token → weight (in `dir` or `root`) mapped through `vocab`.
    fn load(id: &str, dir: &Path, root: &Path, vocab: &TextTokenizer) -> Result<Self> {
        let tokenizer = match dir.join("tokenizer.json") {
            p if p.is_file() => Some(TextTokenizer::load(&p, id, 0, false)?),
            _ => None,
        };
        let vocab_size = tokenizer.as_ref().unwrap_or(vocab).vocab_size();
        let weights = if dir.join("model.safetensors").is_file() {
            let files = weight_files(dir)?;
            let w = Weights::load(id, &files, &candle_core::Device::Cpu)?;
            let t = w.get_any("weight")?;
            t.to_vec1::<f32>().map_err(|source| Error::Tensor {
                model: id.to_string(),
                source,
            })?
        } else {
            let path = [dir.join("idf.json"), root.join("idf.json")]
                .into_iter()
                .find(|p| p.is_file())
                .ok_or_else(|| Error::MissingFile {
                    dir: dir.to_path_buf(),
                    file: "model.safetensors or idf.json (the query route's weights)",
                })?;
            let idf: std::collections::HashMap<String, f32> =
                read_json_opt(&path)?.unwrap_or_default();
            let tok = tokenizer.as_ref().unwrap_or(vocab);
            let mut w = vec![0f32; vocab_size];
            for (token, weight) in idf {
                if let Some(i) = tok.token_id(&token).filter(|&i| (i as usize) < w.len()) {
                    w[i as usize] = weight;
                }
            }
            w
        };
        let max_length = crate::heads::tokenizer_max_length(dir);
        Ok(Self {
            weights,
            tokenizer,
            max_length,
        })
    }

    /// The vector of one query's token ids (special tokens excluded): each distinct token's
    /// weight.
    pub(crate) fn vector(&self, ids: &[u32], top_k: Option<usize>) -> SparseVector {
        let mut dense = vec![0f32; self.weights.len()];
        for &i in ids {
            if let Some(w) = self.weights.get(i as usize) {
                dense[i as usize] = *w;
            }
        }
        SparseVector::from_dense(&dense, top_k)
    }

    /// Bytes held.
    pub fn bytes(&self) -> usize {
        self.weights.len() * 4 + self.tokenizer.as_ref().map_or(0, |t| t.approx_bytes())
    }
}

/// A masked-LM head with SPLADE pooling, and the static query side when the model has one.
#[derive(Debug)]
pub struct SparseHead {
    transform: Linear,
    act: Activation,
    norm: LayerNorm,
    decoder: Linear,
    splade: SpladeConfig,
    vocab: usize,
    /// The query route of an inference-free model.
    pub(crate) static_query: Option<StaticQuery>,
}

impl SparseHead {
    /// Loads the masked-LM head of `family` (config.json's own `model_type`) from `w` (the tied
    /// decoder from the word embeddings), the pooling from `splade_dir` and the static query
    /// side from `static_dir` (its folder, and the model's root folder).
    pub(crate) fn load(
        w: &mut Weights,
        cfg: &TransformerConfig,
        family: &str,
        splade_dir: Option<&Path>,
        static_dir: Option<(&Path, &Path)>,
        tokenizer: &TextTokenizer,
    ) -> Result<Self> {
        let (h, vocab) = (cfg.hidden_size, cfg.vocab_size);
        let word = "embeddings.word_embeddings.weight";
        let (transform, norm, decoder, act) = match family {
            "distilbert" => {
                w.alias("vocab_projector.weight", word);
                (
                    "vocab_transform",
                    "vocab_layer_norm",
                    "vocab_projector",
                    None,
                )
            }
            "bert" => {
                w.alias("cls.predictions.decoder.weight", word);
                w.alias("cls.predictions.decoder.bias", "cls.predictions.bias");
                (
                    "cls.predictions.transform.dense",
                    "cls.predictions.transform.LayerNorm",
                    "cls.predictions.decoder",
                    None,
                )
            }
            _ => {
                w.alias("lm_head.decoder.weight", word);
                w.alias("lm_head.decoder.bias", "lm_head.bias");
                (
                    "lm_head.dense",
                    "lm_head.layer_norm",
                    "lm_head.decoder",
                    Some(Activation::Gelu),
                )
            }
        };
        let splade: SpladeConfig = match splade_dir {
            Some(d) => read_json_opt(&d.join("config.json"))?.unwrap_or_default(),
            None => SpladeConfig::default(),
        };
        let static_query = static_dir
            .map(|(dir, root)| StaticQuery::load(w.model(), dir, root, tokenizer))
            .transpose()?;
        Ok(Self {
            transform: Linear::load(w, transform, h, h)?,
            act: act.unwrap_or_else(|| Activation::from_config(cfg)),
            norm: LayerNorm::load(w, norm, h, cfg.layer_norm_eps)?,
            decoder: Linear::load(w, decoder, h, vocab)?,
            splade,
            vocab,
            static_query,
        })
    }

    /// Output dimension (the vocabulary size).
    pub fn vocab(&self) -> usize {
        self.vocab
    }

    /// The pooling configuration.
    pub fn splade(&self) -> SpladeConfig {
        self.splade
    }

    /// Whether queries take the static (inference-free) route.
    pub fn inference_free(&self) -> bool {
        self.static_query.is_some()
    }

    /// Bytes held.
    pub fn bytes(&self) -> usize {
        self.transform.bytes()
            + self.norm.bytes()
            + self.decoder.bytes()
            + self.static_query.as_ref().map_or(0, StaticQuery::bytes)
    }

    /// Pooled SPLADE weights `[rows × vocab]` of a padded batch: `hidden` is `[rows, seq,
    /// hidden]`, `mask` `[rows, seq]`.
    pub(crate) fn pool(
        &self,
        hidden: &[f32],
        mask: &[u32],
        rows: usize,
        seq: usize,
    ) -> candle_core::Result<Vec<f32>> {
        let h = hidden.len() / (rows * seq).max(1);
        let v = self.vocab;
        let max = self.splade.pooling_strategy == SpladeStrategy::Max;
        let mut out = vec![if max { f32::NEG_INFINITY } else { 0.0 }; rows * v];
        // Real tokens only: (row, position).
        let tokens: Vec<usize> = (0..rows * seq).filter(|&t| mask[t] != 0).collect();
        let mut xq = QuantizedRows::default();
        let mut x = Vec::with_capacity(CHUNK * h);
        let mut t = vec![0f32; CHUNK * h];
        let mut logits = vec![0f32; CHUNK * v];
        // Masked-LM transforms are never gated: the activation runs in place on `t`.
        let mut gated = Vec::new();
        for chunk in tokens.chunks(CHUNK) {
            let n = chunk.len();
            x.clear();
            chunk
                .iter()
                .for_each(|&tok| x.extend_from_slice(&hidden[tok * h..(tok + 1) * h]));
            let t = &mut t[..n * h];
            self.transform.forward_host(&x, &mut xq, t)?;
            self.act.apply_host(t, h, &mut gated);
            self.norm.forward_host(t, &[])?;
            let logits = &mut logits[..n * v];
            self.decoder.forward_host(t, &mut xq, logits)?;
            for (k, &tok) in chunk.iter().enumerate() {
                let row = &mut out[(tok / seq) * v..(tok / seq + 1) * v];
                let l = &logits[k * v..(k + 1) * v];
                if max {
                    row.iter_mut().zip(l).for_each(|(o, &x)| *o = o.max(x));
                } else {
                    row.iter_mut()
                        .zip(l)
                        .for_each(|(o, &x)| *o += self.splade.saturate(x));
                }
            }
        }
        if max {
            out.iter_mut().for_each(|o| *o = self.splade.saturate(*o));
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sparse_vectors_keep_nonzeros_by_index() {
        let v = SparseVector::from_dense(&[0.0, 3.0, 0.0, 1.0, 2.0], None);
        assert_eq!((v.indices, v.values), (vec![1, 3, 4], vec![3.0, 1.0, 2.0]));
        let top = SparseVector::from_dense(&[0.0, 3.0, 0.0, 1.0, 2.0, 2.0], Some(2));
        assert_eq!((top.indices, top.values), (vec![1, 4], vec![3.0, 2.0]));
    }

    #[test]
    fn saturation_matches_splade() {
        let relu = SpladeConfig::default();
        assert_eq!(relu.saturate(-1.0), 0.0);
        assert!((relu.saturate(1.0) - 2f32.ln()).abs() < 1e-7);
        let twice = SpladeConfig {
            activation_function: SpladeActivation::Log1pRelu,
            ..relu
        };
        assert!((twice.saturate(1.0) - (1.0 + 2f32.ln()).ln()).abs() < 1e-7);
        assert_eq!(relu.saturate(f32::NEG_INFINITY), 0.0);
    }
}
