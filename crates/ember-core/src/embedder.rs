//! A loaded embedding model: encoder, tokenizer, pooling and prompts, and the `embed` call that
//! turns texts into sentence-transformers' vectors.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use candle_core::Device;
use serde::Serialize;

use crate::config::{
    read_json, read_json_opt, ModuleEntry, PoolingConfigFile, SentenceBertConfig,
    SentenceTransformersConfig, TransformerConfig,
};
use crate::dtype::DType;
use crate::error::{Error, Result};
use crate::models::Encoder;
use crate::pooling::Pooling;
use crate::tokenize::{Encoded, TextTokenizer, TruncationSide};
use crate::weights::{weight_files, Weights};

/// Options of one embedding call. `Default` gives Ember's API defaults (normalized, truncated).
#[derive(Debug, Clone)]
pub struct EmbedOptions {
    /// L2-normalize the output vectors.
    pub normalize: bool,
    /// Matryoshka: keep the first `dimensions` components (re-normalized when normalizing).
    pub dimensions: Option<usize>,
    /// A key of the model's prompts, prepended to every input.
    pub prompt_name: Option<String>,
    /// An explicit prefix, prepended to every input (wins over `prompt_name`).
    pub prompt: Option<String>,
    /// Cut inputs longer than the limit (else: error naming the input).
    pub truncate: bool,
    /// Which end of an over-long input is cut.
    pub truncation_side: TruncationSide,
    /// A limit smaller than the model's max_seq_length.
    pub max_length: Option<usize>,
    /// Sequences per forward pass.
    pub batch_size: usize,
}

impl Default for EmbedOptions {
    fn default() -> Self {
        Self {
            normalize: true,
            dimensions: None,
            prompt_name: None,
            prompt: None,
            truncate: true,
            truncation_side: TruncationSide::Right,
            max_length: None,
            batch_size: 32,
        }
    }
}

/// Vectors for a list of inputs, in input order, with the identity of the model that made them.
#[derive(Debug, Clone, Serialize)]
pub struct Embeddings {
    /// Id of the model that produced the vectors.
    pub model: String,
    /// Length of each vector.
    pub dimension: usize,
    /// Row-major `[rows, dimension]`.
    pub data: Vec<f32>,
    /// Number of vectors.
    pub rows: usize,
    /// Tokens processed (after truncation, special tokens included).
    pub prompt_tokens: usize,
    /// Time spent tokenizing.
    pub tokenize_time: std::time::Duration,
    /// Time spent in the encoder and pooling.
    pub inference_time: std::time::Duration,
}

impl Embeddings {
    /// Vector `i`.
    pub fn row(&self, i: usize) -> &[f32] {
        &self.data[i * self.dimension..(i + 1) * self.dimension]
    }

    /// Iterates over the vectors.
    pub fn iter(&self) -> impl Iterator<Item = &[f32]> {
        self.data.chunks_exact(self.dimension.max(1))
    }
}

/// Facts of a loaded model, read from its files.
#[derive(Debug, Clone, Serialize)]
pub struct ModelInfo {
    pub id: String,
    pub architecture: String,
    pub dimension: usize,
    pub max_seq_length: usize,
    pub pooling: Pooling,
    pub normalize: bool,
    pub prompts: BTreeMap<String, String>,
    pub default_prompt_name: Option<String>,
    pub vocab_size: usize,
    /// The dtype the weights are stored in.
    pub dtype: DType,
    /// Bytes held by weight tensors (scales included).
    pub weight_bytes: usize,
    /// Bytes held by the tokenizer's vocabulary.
    pub tokenizer_bytes: usize,
    /// `weight_bytes + tokenizer_bytes`: what the memory budget counts.
    pub bytes: usize,
    pub path: PathBuf,
}

/// A model ready to embed. `Send + Sync`: share it behind an `Arc`.
#[derive(Debug)]
pub struct Embedder {
    info: ModelInfo,
    encoder: Encoder,
    tokenizer: TextTokenizer,
    /// Drop the prompt's tokens from pooling (`include_prompt: false`).
    include_prompt: bool,
    /// SHA-256 of the weight files, computed on first use (see [`Embedder::weights_sha256`]).
    weights_sha256: std::sync::OnceLock<String>,
}

impl Embedder {
    /// Loads a model directory on the CPU in FP32.
    pub fn load(id: &str, dir: &Path) -> Result<Self> {
        Self::load_on(id, dir, &Device::Cpu, DType::Fp32)
    }

    /// Loads a model directory on the CPU with weights stored in `dtype`.
    pub fn load_dtype(id: &str, dir: &Path, dtype: DType) -> Result<Self> {
        Self::load_on(id, dir, &Device::Cpu, dtype)
    }

    /// Loads a model directory in the sentence-transformers layout onto `device`, storing its
    /// matrices (linear layers and embedding tables) in `dtype`.
    pub fn load_on(id: &str, dir: &Path, device: &Device, dtype: DType) -> Result<Self> {
        if !dir.is_dir() {
            return Err(Error::FilesNotFound {
                id: id.to_string(),
                tried: vec![format!("{} (not a directory)", dir.display())],
            });
        }
        let config_path = dir.join("config.json");
        if !config_path.is_file() {
            return Err(Error::MissingFile {
                dir: dir.to_path_buf(),
                file: "config.json",
            });
        }
        let tokenizer_path = dir.join("tokenizer.json");
        if !tokenizer_path.is_file() {
            return Err(Error::MissingFile {
                dir: dir.to_path_buf(),
                file: "tokenizer.json",
            });
        }
        let files = weight_files(dir)?;
        let cfg: TransformerConfig = read_json(&config_path)?;
        cfg.validate(&config_path)?;

        let modules: Vec<ModuleEntry> =
            read_json_opt(&dir.join("modules.json"))?.unwrap_or_default();
        let pooling_dir = modules
            .iter()
            .find(|m| m.kind.ends_with("Pooling"))
            .map(|m| m.path.clone())
            .unwrap_or_else(|| "1_Pooling".into());
        let pooling_cfg: PoolingConfigFile =
            read_json_opt(&dir.join(&pooling_dir).join("config.json"))?.unwrap_or_default();
        let pooling = Pooling::from_config(&pooling_cfg).unwrap_or(Pooling::Mean);
        let normalize = modules.iter().any(|m| m.kind.ends_with("Normalize"));
        let sbert: SentenceBertConfig =
            read_json_opt(&dir.join("sentence_bert_config.json"))?.unwrap_or_default();
        let st: SentenceTransformersConfig =
            read_json_opt(&dir.join("config_sentence_transformers.json"))?.unwrap_or_default();

        // Position tables bound the length; RoBERTa-style models lose `pad + 1` slots to the offset.
        let position_limit = match cfg.model_type.as_str() {
            "bert" => cfg.max_position_embeddings,
            _ => cfg
                .max_position_embeddings
                .saturating_sub(cfg.pad_token_id.unwrap_or(1) as usize + 1),
        };
        let max_seq_length = sbert
            .max_seq_length
            .unwrap_or(position_limit)
            .min(position_limit);

        // Size rayon's pool (GEMMs, attention, tokenizer batches) to EMBER_NUM_THREADS once.
        crate::kernels::threads::num_threads();
        let weights = Weights::load(id, &files, device)?
            .with_prefixes(&["bert.", "roberta.", "mpnet.", "model."])
            .with_dtype(dtype);
        let encoder = Encoder::load(&weights, &cfg)?;
        drop(weights);
        let pad_id = cfg.pad_token_id.unwrap_or(0);
        let tokenizer = TextTokenizer::load(&tokenizer_path, id, pad_id, sbert.do_lower_case)?;
        let vocab_size = tokenizer.vocab_size();
        if vocab_size > cfg.vocab_size {
            return Err(Error::Config {
                path: config_path,
                message: format!(
                    "the tokenizer has {vocab_size} tokens but vocab_size is {}",
                    cfg.vocab_size
                ),
            });
        }
        let dimension = pooling_cfg
            .word_embedding_dimension
            .unwrap_or(cfg.hidden_size);
        if dimension != cfg.hidden_size {
            return Err(Error::Config {
                path: dir.join(&pooling_dir).join("config.json"),
                message: format!(
                    "word_embedding_dimension {dimension} disagrees with hidden_size {}",
                    cfg.hidden_size
                ),
            });
        }
        let info = ModelInfo {
            id: id.to_string(),
            architecture: cfg.model_type.clone(),
            dimension,
            max_seq_length,
            pooling,
            normalize,
            prompts: st.prompts,
            default_prompt_name: st.default_prompt_name,
            vocab_size,
            dtype,
            weight_bytes: encoder.bytes(),
            tokenizer_bytes: tokenizer.approx_bytes(),
            bytes: encoder.bytes() + tokenizer.approx_bytes(),
            path: dir.to_path_buf(),
        };
        tracing::info!(model = id, %dtype, dir = %dir.display(), bytes = info.bytes, "model loaded");
        Ok(Self {
            info,
            encoder,
            tokenizer,
            include_prompt: pooling_cfg.include_prompt,
            weights_sha256: std::sync::OnceLock::new(),
        })
    }

    /// Facts of the loaded model.
    pub fn info(&self) -> &ModelInfo {
        &self.info
    }

    /// The model id vectors are tagged with.
    pub fn id(&self) -> &str {
        &self.info.id
    }

    /// Output dimension.
    pub fn dimension(&self) -> usize {
        self.info.dimension
    }

    /// The tokenizer.
    pub fn tokenizer(&self) -> &TextTokenizer {
        &self.tokenizer
    }

    /// Adds prompts known from the catalog when the model's files name none.
    pub fn with_catalog_prompts(mut self, prompts: &BTreeMap<String, String>) -> Self {
        for (k, v) in prompts {
            self.info
                .prompts
                .entry(k.clone())
                .or_insert_with(|| v.clone());
        }
        self
    }

    /// SHA-256 of the model's safetensors files (see [`crate::identity::weights_sha256`]),
    /// read once per loaded model and cached.
    pub fn weights_sha256(&self) -> Result<&str> {
        if let Some(h) = self.weights_sha256.get() {
            return Ok(h);
        }
        let h = crate::identity::weights_sha256(&self.info.path)?;
        Ok(self.weights_sha256.get_or_init(|| h))
    }

    /// The prefix `embed` prepends with `opts`: `prompt`, else the prompt `prompt_name` names,
    /// else the model's default prompt, else None.
    pub fn resolved_prompt(&self, opts: &EmbedOptions) -> Result<Option<String>> {
        if let Some(p) = &opts.prompt {
            return Ok(Some(p.clone()));
        }
        let name = opts
            .prompt_name
            .as_ref()
            .or(self.info.default_prompt_name.as_ref());
        match name {
            None => Ok(None),
            Some(n) => match self.info.prompts.get(n) {
                Some(p) => Ok(Some(p.clone())),
                None => Err(Error::UnknownPrompt {
                    model: self.info.id.clone(),
                    name: n.clone(),
                    known: if self.info.prompts.is_empty() {
                        "(this model has no prompts)".into()
                    } else {
                        self.info
                            .prompts
                            .keys()
                            .cloned()
                            .collect::<Vec<_>>()
                            .join(", ")
                    },
                }),
            },
        }
    }

    /// Checks options that do not depend on the inputs.
    pub fn check_options(&self, opts: &EmbedOptions) -> Result<()> {
        if let Some(d) = opts.dimensions {
            if d == 0 || d > self.info.dimension {
                return Err(Error::Dimensions {
                    model: self.info.id.clone(),
                    requested: d,
                    max: self.info.dimension,
                });
            }
        }
        if opts.batch_size == 0 {
            return Err(Error::invalid("batch_size", "must be at least 1"));
        }
        if opts.max_length == Some(0) {
            return Err(Error::invalid("max_length", "must be at least 1"));
        }
        self.resolved_prompt(opts).map(|_| ())
    }

    /// Embeds `texts` (in input order). Inputs are sorted by length and each batch is padded only
    /// to its longest member.
    pub fn embed(&self, texts: &[String], opts: &EmbedOptions) -> Result<Embeddings> {
        let started = std::time::Instant::now();
        let encoded = self.tokenize(texts, opts)?;
        let tokenize_time = started.elapsed();
        let started = std::time::Instant::now();
        let raw = self.embed_encoded(&encoded, opts.batch_size)?;
        let (dimension, data) =
            crate::pooling::finish(&raw, self.info.dimension, opts.dimensions, opts.normalize);
        Ok(Embeddings {
            model: self.info.id.clone(),
            dimension,
            data,
            rows: texts.len(),
            prompt_tokens: encoded.iter().map(|e| e.ids.len()).sum(),
            tokenize_time,
            inference_time: started.elapsed(),
        })
    }

    /// Checks `opts` and tokenizes `texts` as [`Embedder::embed`] will: prompt prepended,
    /// truncated (or refused) at the limit. Feed the result to [`Embedder::embed_encoded`];
    /// encodings of different calls may be mixed in one call there.
    pub fn tokenize(&self, texts: &[String], opts: &EmbedOptions) -> Result<Vec<Encoded>> {
        self.check_options(opts)?;
        let prompt = self.resolved_prompt(opts)?;
        let inputs: Vec<String> = match &prompt {
            Some(p) => texts.iter().map(|t| format!("{p}{t}")).collect(),
            None => texts.to_vec(),
        };
        let limit = opts.max_length.map_or(self.info.max_seq_length, |m| {
            m.min(self.info.max_seq_length)
        });
        let mut encoded =
            self.tokenizer
                .encode(&inputs, limit, opts.truncate, opts.truncation_side)?;
        // sentence-transformers: with include_prompt=false the prompt's tokens (minus its
        // trailing special token) are masked out of pooling.
        if let (Some(p), false) = (&prompt, self.include_prompt) {
            let skip = self
                .tokenizer
                .encode(std::slice::from_ref(p), limit, true, TruncationSide::Right)?
                .first()
                .map_or(0, |e| e.ids.len().saturating_sub(1));
            encoded.iter_mut().for_each(|e| e.pool_skip = skip);
        }
        Ok(encoded)
    }

    /// Raw (unnormalized, full-width) pooled vectors of `encoded`, in its order, `[rows × dim]`.
    /// Rows are sorted by length and run `batch_size` at a time, each pass padded only to its
    /// longest member.
    pub fn embed_encoded(&self, encoded: &[Encoded], batch_size: usize) -> Result<Vec<f32>> {
        if batch_size == 0 {
            return Err(Error::invalid("batch_size", "must be at least 1"));
        }
        let dim = self.info.dimension;
        let mut data = vec![0f32; encoded.len() * dim];
        let mut order: Vec<usize> = (0..encoded.len()).collect();
        order.sort_by_key(|&i| std::cmp::Reverse(encoded[i].ids.len()));
        let tensor_err = |source| Error::Tensor {
            model: self.info.id.clone(),
            source,
        };
        for rows in order.chunks(batch_size) {
            let batch = self.tokenizer.pad(encoded, rows);
            let hidden = self.encoder.forward(&batch).map_err(tensor_err)?;
            let hidden = hidden
                .flatten_all()
                .and_then(|t| t.to_vec1::<f32>())
                .map_err(tensor_err)?;
            let mut mask = vec![0u32; batch.seq];
            for (r, &i) in rows.iter().enumerate() {
                mask.copy_from_slice(&batch.mask[r * batch.seq..(r + 1) * batch.seq]);
                mask.iter_mut()
                    .take(encoded[i].pool_skip)
                    .for_each(|m| *m = 0);
                let h = &hidden[r * batch.seq * dim..(r + 1) * batch.seq * dim];
                self.info
                    .pooling
                    .pool(h, &mask, dim, &mut data[i * dim..(i + 1) * dim]);
            }
        }
        Ok(data)
    }

    /// Per-token vectors of the last hidden state for each text (padding removed), as
    /// sentence-transformers' `output_value="token_embeddings"`; `[len_i * dimension]` each.
    pub fn token_embeddings(&self, texts: &[String], truncate: bool) -> Result<Vec<Vec<f32>>> {
        let encoded = self.tokenizer.encode(
            texts,
            self.info.max_seq_length,
            truncate,
            TruncationSide::Right,
        )?;
        let dim = self.info.dimension;
        let tensor_err = |source| Error::Tensor {
            model: self.info.id.clone(),
            source,
        };
        let mut out = Vec::with_capacity(texts.len());
        for i in 0..encoded.len() {
            let batch = self.tokenizer.pad(&encoded, &[i]);
            let hidden = self
                .encoder
                .forward(&batch)
                .and_then(|t| t.flatten_all())
                .and_then(|t| t.to_vec1::<f32>())
                .map_err(tensor_err)?;
            out.push(hidden[..batch.len_of(0) * dim].to_vec());
        }
        Ok(out)
    }

    /// Text for the model's own token ids (for APIs that accept token-id inputs). Ids outside
    /// the vocabulary are an error naming the input and the id.
    pub fn decode(&self, index: usize, ids: &[u32]) -> Result<String> {
        if let Some(&bad) = ids.iter().find(|&&id| id as usize >= self.info.vocab_size) {
            return Err(Error::invalid(
                format!("input[{index}]"),
                format!(
                    "token id {bad} is outside the vocabulary of model `{}` ({} tokens)",
                    self.info.id, self.info.vocab_size
                ),
            ));
        }
        self.tokenizer.decode(ids)
    }

    /// Token ids of `texts` after the model's truncation.
    pub fn token_ids(&self, texts: &[String]) -> Result<Vec<Vec<u32>>> {
        Ok(self
            .tokenizer
            .encode(texts, self.info.max_seq_length, true, TruncationSide::Right)?
            .into_iter()
            .map(|e| e.ids)
            .collect())
    }

    /// Token counts of `texts` after the model's truncation.
    pub fn count_tokens(&self, texts: &[String]) -> Result<Vec<usize>> {
        Ok(self
            .tokenizer
            .encode(texts, self.info.max_seq_length, true, TruncationSide::Right)?
            .iter()
            .map(|e| e.ids.len())
            .collect())
    }
}
