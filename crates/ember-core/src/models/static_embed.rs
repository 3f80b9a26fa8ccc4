//! Static embeddings in the model2vec format (`minishlab/potion-*`), as the `model2vec`
//! package's `StaticModel` computes them: no attention and no GEMM, only a table lookup and a
//! mean. Deliberately outside the transformer machinery (no padded batches, no tensors).
//!
//! Files: `config.json` (`model_type: model2vec`, `normalize`), `tokenizer.json`, and
//! `model.safetensors` holding `embeddings` (`[rows, dim]`), plus, in newer versions, per-token
//! `weights` (`[vocab]`) and a vocabulary `mapping` (`[vocab]`: token id → row).
//!
//! Encoding a text, as `StaticModel.encode` (model2vec 0.10) with the config's `max_length`
//! (512 when absent):
//! 1. the text is cut to `max_length × median token length` characters;
//! 2. it is tokenized without special tokens, cut to `max_length` ids by the tokenizer;
//! 3. unknown-token ids are dropped (when the tokenizer model has an unknown token);
//! 4. the vector is the mean of the ids' rows (each scaled by its weight when there are
//!    weights), or zeros for a text with no tokens left;
//! 5. normalized (`v / (|v| + 1e-32)`) when the config says `normalize: true`.

use std::path::Path;

use half::{bf16, f16};
use serde::Deserialize;

use crate::dtype::DType;
use crate::error::{Error, Result};
use crate::models::quant::INT8_GROUP;
use crate::tokenize::TextTokenizer;

/// `config.json` of a model2vec model.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct StaticConfig {
    /// model2vec's default is no normalization.
    #[serde(default)]
    pub normalize: Option<bool>,
    #[serde(default)]
    pub hidden_dim: Option<usize>,
    #[serde(default)]
    pub embedding_dtype: Option<String>,
    /// The longest input, in tokens: model2vec's `max_length` (512 when absent; `null`: no
    /// limit).
    #[serde(default = "default_max_length")]
    pub max_length: Option<usize>,
}

fn default_max_length() -> Option<usize> {
    Some(DEFAULT_MAX_LENGTH)
}

/// The limit Ember applies when the config sets none (`max_length: null`).
pub const UNLIMITED: usize = 1 << 20;

/// The embedding table in the model's dtype.
#[derive(Debug)]
enum Table {
    F32(Vec<f32>),
    F16(Vec<f16>),
    Bf16(Vec<bf16>),
    /// Symmetric int8 with one scale per `group` values of a row.
    Int8 {
        q: Vec<i8>,
        scales: Vec<f32>,
        group: usize,
    },
}

/// A loaded model2vec model.
#[derive(Debug)]
pub struct StaticModel {
    table: Table,
    rows: usize,
    dim: usize,
    /// Per token id (before the mapping), when the file has `weights`.
    weights: Option<Vec<f32>>,
    /// Token id → table row, when the file has a `mapping`.
    mapping: Option<Vec<u32>>,
    unk: Option<u32>,
    /// Characters kept per token of the limit (`median_token_length`).
    median_token_length: usize,
    normalize: bool,
}

/// model2vec's default `max_length`.
pub const DEFAULT_MAX_LENGTH: usize = 512;

impl StaticModel {
    /// Loads `model.safetensors` of `dir` for `tokenizer`, storing the table in `dtype`.
    pub fn load(
        id: &str,
        dir: &Path,
        cfg: &StaticConfig,
        tokenizer: &TextTokenizer,
        dtype: DType,
    ) -> Result<Self> {
        let files = crate::weights::weight_files(dir)?;
        let path = files[0].clone();
        let tensors =
            candle_core::safetensors::load(&path, &candle_core::Device::Cpu).map_err(|source| {
                Error::Safetensors {
                    path: path.clone(),
                    source,
                }
            })?;
        let shapes = || {
            let mut all: Vec<String> = tensors
                .iter()
                .map(|(n, t)| format!("`{n}` {:?}", t.dims()))
                .collect();
            all.sort();
            if all.is_empty() {
                "nothing".into()
            } else {
                all.join(", ")
            }
        };
        let bad = |message: String| Error::ModuleShape {
            path: path.clone(),
            message,
        };
        let tensor_err = |source| Error::Tensor {
            model: id.to_string(),
            source,
        };
        let Some(emb) = tensors
            .get("embeddings")
            .or_else(|| tensors.get("embedding.weight"))
        else {
            return Err(bad(format!(
                "no `embeddings` tensor (a model2vec model needs `embeddings` [vocab, dim]); \
                 the file holds {}",
                shapes()
            )));
        };
        let (rows, dim) = emb.dims2().map_err(|_| {
            bad(format!(
                "`embeddings` must be [rows, dim], got {:?}",
                emb.dims()
            ))
        })?;
        let vocab = tokenizer.vocab_size();
        let values = emb
            .to_dtype(candle_core::DType::F32)
            .and_then(|t| t.flatten_all())
            .and_then(|t| t.to_vec1::<f32>())
            .map_err(tensor_err)?;
        let vector = |name: &str| -> Result<Option<candle_core::Tensor>> {
            match tensors.get(name) {
                None => Ok(None),
                Some(t) if t.dims() == [vocab] => Ok(Some(t.clone())),
                Some(t) => Err(bad(format!(
                    "`{name}` has shape {:?}, but the tokenizer has {vocab} tokens \
                     (`embeddings` is {:?})",
                    t.dims(),
                    emb.dims()
                ))),
            }
        };
        let weights = vector("weights")?
            .map(|t| {
                t.to_dtype(candle_core::DType::F32)
                    .and_then(|t| t.to_vec1::<f32>())
            })
            .transpose()
            .map_err(tensor_err)?;
        let mapping = vector("mapping")?
            .map(|t| {
                t.to_dtype(candle_core::DType::I64)
                    .and_then(|t| t.to_vec1::<i64>())
            })
            .transpose()
            .map_err(tensor_err)?
            .map(|m| {
                m.into_iter()
                    .map(|r| match u32::try_from(r) {
                        Ok(r) if (r as usize) < rows => Ok(r),
                        _ => Err(bad(format!(
                            "`mapping` holds row {r}, outside `embeddings` {:?}",
                            emb.dims()
                        ))),
                    })
                    .collect::<Result<Vec<u32>>>()
            })
            .transpose()?;
        if mapping.is_none() && rows != vocab {
            return Err(bad(format!(
                "`embeddings` has {rows} rows ({:?}) but the tokenizer has {vocab} tokens, and \
                 there is no `mapping`",
                emb.dims()
            )));
        }
        let table = match dtype {
            DType::Fp32 => Table::F32(values),
            DType::Fp16 => Table::F16(values.iter().map(|&v| f16::from_f32(v)).collect()),
            DType::Bf16 => Table::Bf16(values.iter().map(|&v| bf16::from_f32(v)).collect()),
            DType::Int8 => {
                let group = if dim % INT8_GROUP == 0 {
                    INT8_GROUP
                } else {
                    dim.max(1)
                };
                let mut q = Vec::with_capacity(values.len());
                let mut scales = Vec::with_capacity(values.len() / group);
                for chunk in values.chunks_exact(group) {
                    let max = chunk.iter().fold(0f32, |m, v| m.max(v.abs()));
                    let scale = if max > 0.0 { max / 127.0 } else { 1.0 };
                    scales.push(scale);
                    q.extend(chunk.iter().map(|v| (v / scale).round() as i8));
                }
                Table::Int8 { q, scales, group }
            }
        };
        let _ = cfg;
        Ok(Self {
            table,
            rows,
            dim,
            weights,
            mapping,
            unk: tokenizer.unk_id(),
            median_token_length: tokenizer.median_token_chars(),
            normalize: cfg.normalize.unwrap_or(false),
        })
    }

    /// Width of a vector.
    pub fn dim(&self) -> usize {
        self.dim
    }

    /// Whether the config asks for unit vectors.
    pub fn normalize(&self) -> bool {
        self.normalize
    }

    /// Characters a text keeps before tokenization for a limit of `max_tokens`.
    pub fn char_limit(&self, max_tokens: usize) -> usize {
        max_tokens.saturating_mul(self.median_token_length)
    }

    /// The unknown token's id, when the tokenizer has one (its ids are dropped).
    pub fn unk(&self) -> Option<u32> {
        self.unk
    }

    /// Bytes held by the table, weights and mapping.
    pub fn bytes(&self) -> usize {
        let table = match &self.table {
            Table::F32(v) => v.len() * 4,
            Table::F16(v) => v.len() * 2,
            Table::Bf16(v) => v.len() * 2,
            Table::Int8 { q, scales, .. } => q.len() + scales.len() * 4,
        };
        table
            + self.weights.as_ref().map_or(0, |w| w.len() * 4)
            + self.mapping.as_ref().map_or(0, |m| m.len() * 4)
    }

    /// The mean of the rows of `ids` (weighted when the model has weights) into `out`
    /// (`[dim]`), zeros when `ids` is empty. Ids outside the vocabulary are an error.
    pub fn pool(&self, ids: &[u32], out: &mut [f32]) -> Result<()> {
        out.fill(0.0);
        if ids.is_empty() {
            return Ok(());
        }
        let vocab = self.mapping.as_ref().map_or(self.rows, Vec::len);
        for &id in ids {
            if id as usize >= vocab {
                return Err(Error::invalid(
                    "input",
                    format!("token id {id} is outside the vocabulary ({vocab} tokens)"),
                ));
            }
            let row = match &self.mapping {
                Some(m) => m[id as usize] as usize,
                None => id as usize,
            };
            let w = self.weights.as_ref().map_or(1.0, |w| w[id as usize]);
            self.add_row(row, w, out);
        }
        let n = ids.len() as f32;
        out.iter_mut().for_each(|v| *v /= n);
        Ok(())
    }

    fn add_row(&self, row: usize, w: f32, out: &mut [f32]) {
        let d = self.dim;
        match &self.table {
            Table::F32(t) => out
                .iter_mut()
                .zip(&t[row * d..(row + 1) * d])
                .for_each(|(o, &v)| *o += w * v),
            Table::F16(t) => out
                .iter_mut()
                .zip(&t[row * d..(row + 1) * d])
                .for_each(|(o, v)| *o += w * v.to_f32()),
            Table::Bf16(t) => out
                .iter_mut()
                .zip(&t[row * d..(row + 1) * d])
                .for_each(|(o, v)| *o += w * v.to_f32()),
            Table::Int8 { q, scales, group } => {
                let per_row = d / group;
                let groups = q[row * d..(row + 1) * d]
                    .chunks_exact(*group)
                    .zip(&scales[row * per_row..(row + 1) * per_row])
                    .zip(out.chunks_exact_mut(*group));
                for ((chunk, &s), o) in groups {
                    let ws = w * s;
                    o.iter_mut()
                        .zip(chunk)
                        .for_each(|(o, &v)| *o += ws * v as f32);
                }
            }
        }
    }
}

/// model2vec's normalization: `v / (|v| + 1e-32)`.
pub fn normalize_m2v(v: &mut [f32]) {
    let norm = v.iter().map(|x| x * x).sum::<f32>().sqrt() + 1e-32;
    v.iter_mut().for_each(|x| *x /= norm);
}
