//! A loaded model: encoder, tokenizer, pooling and prompts, and the `embed` call that turns texts
//! into sentence-transformers' vectors. Rerankers and sparse encoders are loaded models too, with
//! a head from `crate::heads` (their calls live in `crate::rerank` and `crate::sparse`).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use candle_core::Device;
use rayon::prelude::*;
use serde::Serialize;

use crate::dtype::DType;
use crate::error::{Error, Result};
use crate::heads::{Head, ModelKind};
use crate::identity::InputType;
use crate::loading::{load_parts, Backbone, LoadOptions};
use crate::models::dense::Dense;
use crate::models::Batch;
use crate::pooling::{Matryoshka, Pooling};
use crate::tokenize::{Encoded, TextTokenizer, TruncationSide};

mod ids;

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
    /// The inputs' role (query, document): the model's prompt for it
    /// ([`InputType::prompt_names`]) is prepended (`prompt` and `prompt_name` win); a model
    /// without one is an error ([`Error::NoInputTypePrompt`]).
    pub input_type: Option<InputType>,
    /// Cut inputs longer than the limit (else: error naming the input).
    pub truncate: bool,
    /// Which end of an over-long input is cut.
    pub truncation_side: TruncationSide,
    /// A limit smaller than the model's max_seq_length.
    pub max_length: Option<usize>,
    /// Sequences per forward pass.
    pub batch_size: usize,
    /// An INSTRUCTOR instruction: prepended to every input and left out of mean pooling, by
    /// INSTRUCTOR's rule (see [`Embedder::tokenize`]). Wins over `prompt` and `prompt_name`.
    pub instruction: Option<String>,
    /// How `dimensions` cuts: `None` applies the model's own recipe
    /// ([`ModelInfo::matryoshka`]: nomic's layer norm before the cut), `Some(Slice)` a plain
    /// slice as sentence-transformers' `truncate_dim`.
    pub matryoshka: Option<Matryoshka>,
}

impl Default for EmbedOptions {
    fn default() -> Self {
        Self {
            normalize: true,
            dimensions: None,
            prompt_name: None,
            prompt: None,
            input_type: None,
            truncate: true,
            truncation_side: TruncationSide::Right,
            max_length: None,
            batch_size: 32,
            instruction: None,
            matryoshka: None,
        }
    }
}

/// Vectors for a list of inputs, in input order, with the identity of the model that made them.
#[derive(Debug, Clone, Serialize)]
pub struct Embeddings {
    /// Id of the model that produced the vectors.
    pub model: String,
    /// The dtype of the weights that produced them.
    pub dtype: DType,
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
    /// What the model computes: dense vectors, pair scores or sparse vectors.
    pub kind: ModelKind,
    pub architecture: String,
    /// Output width: the vector length (embedders), scores per pair (rerankers) or the
    /// vocabulary size (sparse encoders).
    pub dimension: usize,
    pub max_seq_length: usize,
    /// A reranker's label names, in score order (`id2label`); empty for other kinds.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub labels: Vec<String>,
    pub pooling: Pooling,
    pub normalize: bool,
    pub prompts: BTreeMap<String, String>,
    pub default_prompt_name: Option<String>,
    /// The model's prompts are INSTRUCTOR instructions: prepended, and their tokens left out of
    /// mean pooling by INSTRUCTOR's rule (catalog fact `prompts_are_instructions`).
    pub prompts_are_instructions: bool,
    /// How `dimensions` cuts this model's vectors by default.
    pub matryoshka: Matryoshka,
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
    pub(crate) info: ModelInfo,
    pub(crate) backbone: Backbone,
    /// Dense modules after pooling, in order.
    dense: Vec<Dense>,
    /// Width of the pooled vectors and of the hidden state (the encoder's hidden size).
    pub(crate) pooled: usize,
    pub(crate) tokenizer: TextTokenizer,
    /// Drop the prompt's tokens from pooling (`include_prompt: false`).
    include_prompt: bool,
    /// SHA-256 of the weight files, computed on first use (see [`Embedder::weights_sha256`]).
    weights_sha256: std::sync::OnceLock<String>,
    /// The weight files as they were when loaded (see [`Embedder::weights_changed_on_disk`]).
    pub(crate) weights_stamp: Option<crate::identity::WeightsStamp>,
    /// Pooling (embedders), a classifier or a masked-LM head.
    pub(crate) head: Head,
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

    /// Loads a model directory in the sentence-transformers (or model2vec) layout onto
    /// `device`, storing its matrices (linear layers and embedding tables) in `dtype`.
    pub fn load_on(id: &str, dir: &Path, device: &Device, dtype: DType) -> Result<Self> {
        let opts = LoadOptions {
            dtype,
            ..LoadOptions::default()
        };
        Self::load_with(id, dir, device, &opts)
    }

    /// Loads a model directory onto `device` as `opts` say: the dtype, the catalog's kind as a
    /// hint for checkpoints whose files do not say (see `crate::heads`), the input cap.
    pub fn load_with(id: &str, dir: &Path, device: &Device, opts: &LoadOptions) -> Result<Self> {
        let (dtype, p) = (opts.dtype, load_parts(id, dir, device, opts)?);
        let weight_bytes =
            p.backbone.bytes() + p.dense.iter().map(Dense::bytes).sum::<usize>() + p.head.bytes();
        let info = ModelInfo {
            id: id.to_string(),
            kind: p.kind,
            architecture: p.architecture,
            dimension: p.head.output_dim().unwrap_or(p.dimension),
            max_seq_length: p.max_seq_length,
            labels: p.head.labels(),
            pooling: p.pooling,
            normalize: p.normalize && p.kind == ModelKind::Embedder,
            prompts: p.prompts,
            default_prompt_name: p.default_prompt_name,
            prompts_are_instructions: false,
            matryoshka: p.matryoshka,
            vocab_size: p.tokenizer.vocab_size(),
            dtype,
            weight_bytes,
            tokenizer_bytes: p.tokenizer.approx_bytes(),
            bytes: weight_bytes + p.tokenizer.approx_bytes(),
            path: dir.to_path_buf(),
        };
        // After the load: a stamp taken before could miss a rewrite that happened during it.
        let weights_stamp = crate::identity::WeightsStamp::of(dir).ok();
        tracing::info!(model = id, kind = %info.kind, %dtype, dir = %dir.display(), bytes = info.bytes, "model loaded");
        Ok(Self {
            info,
            backbone: p.backbone,
            dense: p.dense,
            pooled: p.hidden,
            tokenizer: p.tokenizer,
            include_prompt: p.include_prompt,
            weights_sha256: std::sync::OnceLock::new(),
            weights_stamp,
            head: p.head,
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

    /// Width of the encoder's hidden state (of each token vector).
    pub fn hidden_size(&self) -> usize {
        self.pooled
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

    /// Marks the model's prompts as INSTRUCTOR instructions (catalog fact
    /// `prompts_are_instructions`): `prompt` and `prompt_name` then follow INSTRUCTOR's rule.
    pub fn with_instruction_prompts(mut self, yes: bool) -> Self {
        self.info.prompts_are_instructions = yes;
        self
    }

    /// [`Embedder::weights_sha256`] when it was computed already (no file is read).
    pub fn known_weights_sha256(&self) -> Option<&str> {
        self.weights_sha256.get().map(String::as_str)
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
        if let (Some(input_type), None) = (opts.input_type, &opts.prompt_name) {
            let prompts = &self.info.prompts;
            return match self.prompt_name_for(input_type) {
                Some(name) => Ok(prompts.get(name).cloned()),
                None => Err(Error::NoInputTypePrompt {
                    model: self.info.id.clone(),
                    input_type,
                    names: input_type.prompt_names().to_vec(),
                    known: prompts.keys().cloned().collect::<Vec<_>>().join(", "),
                }),
            };
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

    /// What the model computes.
    pub fn kind(&self) -> ModelKind {
        self.info.kind
    }

    /// An error unless the model is of kind `want` (`task` names the call, e.g. `rerank`).
    pub fn require_kind(&self, want: ModelKind, task: &'static str) -> Result<()> {
        if self.info.kind == want {
            return Ok(());
        }
        Err(Error::WrongKind {
            model: self.info.id.clone(),
            kind: self.info.kind,
            task,
            wanted: want,
        })
    }

    /// Checks options that do not depend on the inputs.
    pub fn check_options(&self, opts: &EmbedOptions) -> Result<()> {
        self.require_kind(ModelKind::Embedder, "embed")?;
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
        let (dimension, data) = self.finish(&raw, opts);
        Ok(Embeddings {
            model: self.info.id.clone(),
            dtype: self.info.dtype,
            dimension,
            data,
            rows: texts.len(),
            prompt_tokens: encoded.iter().map(|e| e.ids.len()).sum(),
            tokenize_time,
            inference_time: started.elapsed(),
        })
    }

    /// Checks `opts` and tokenizes `texts` as [`Embedder::embed`] will: prompt or instruction
    /// prepended, truncated (or refused) at the limit. Feed the result to
    /// [`Embedder::embed_encoded`]; encodings of different calls may be mixed in one call there.
    ///
    /// An instruction (`opts.instruction`, or the prompt of a model whose prompts are
    /// instructions) follows INSTRUCTOR's rule (`InstructorEmbedding.INSTRUCTOR_Transformer`):
    /// the input is `(instruction + text.strip()).strip()`; the instruction alone is tokenized
    /// (stripped, cut at the limit) and its tokens but the last (the `</s>` the tokenizer adds)
    /// are left out of mean pooling, none when that leaves one token or fewer. The encoder
    /// still attends to them.
    pub fn tokenize(&self, texts: &[String], opts: &EmbedOptions) -> Result<Vec<Encoded>> {
        self.check_options(opts)?;
        let limit = opts.max_length.map_or(self.info.max_seq_length, |m| {
            m.min(self.info.max_seq_length)
        });
        let prompt = self.resolved_prompt(opts)?;
        let instruction = match &opts.instruction {
            Some(i) => Some(i.clone()),
            None if self.info.prompts_are_instructions => prompt.clone(),
            None => None,
        };
        if let Backbone::Static(m) = &self.backbone {
            let prefix = instruction.or(prompt).unwrap_or_default();
            return self.tokenize_static(m, texts, &prefix, limit, opts.truncate);
        }
        if let Some(inst) = instruction {
            let inputs: Vec<String> = texts
                .iter()
                .map(|t| format!("{inst}{}", t.trim()).trim().to_string())
                .collect();
            let mut encoded =
                self.tokenizer
                    .encode(&inputs, limit, opts.truncate, opts.truncation_side)?;
            let own = self.tokenizer.encode(
                &[inst.trim().to_string()],
                limit,
                true,
                TruncationSide::Right,
            )?;
            let skip = own.first().map_or(0, |e| e.ids.len().saturating_sub(1));
            let skip = if skip <= 1 { 0 } else { skip };
            encoded.iter_mut().for_each(|e| e.pool_skip = skip);
            return Ok(encoded);
        }
        let inputs: Vec<String> = match &prompt {
            Some(p) => texts.iter().map(|t| format!("{p}{t}")).collect(),
            None => texts.to_vec(),
        };
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

    /// model2vec's tokenization (`StaticModel.encode`): each text cut to `limit × median token
    /// length` characters, tokenized without special tokens and cut to `limit` ids, unknown
    /// tokens dropped. Without `truncate`, a text with more than `limit` known ids is an error
    /// naming it.
    fn tokenize_static(
        &self,
        m: &crate::models::static_embed::StaticModel,
        texts: &[String],
        prefix: &str,
        limit: usize,
        truncate: bool,
    ) -> Result<Vec<Encoded>> {
        let chars = m.char_limit(limit);
        // A text shorter in bytes than the cut is shorter in characters too: kept as it is.
        let inputs: Vec<std::borrow::Cow<str>> = texts
            .iter()
            .map(|t| match (prefix.is_empty(), truncate) {
                (true, false) => t.as_str().into(),
                (true, true) if t.len() <= chars => t.as_str().into(),
                (_, true) => format!("{prefix}{t}").chars().take(chars).collect(),
                (false, false) => format!("{prefix}{t}").into(),
            })
            .collect();
        let refs: Vec<&str> = inputs.iter().map(|t| t.as_ref()).collect();
        self.tokenizer
            .encode_plain(&refs)?
            .into_iter()
            .enumerate()
            .map(|(index, ids)| self.static_row(m, index, ids, limit, truncate))
            .collect()
    }

    /// Raw (unnormalized, full-width) vectors of `encoded`, in its order, `[rows × dim]`:
    /// pooled and through the Dense modules. Rows are sorted by length and run `batch_size` at a
    /// time, each pass padded only to its longest member.
    pub fn embed_encoded(&self, encoded: &[Encoded], batch_size: usize) -> Result<Vec<f32>> {
        self.require_kind(ModelKind::Embedder, "embed")?;
        if batch_size == 0 {
            return Err(Error::invalid("batch_size", "must be at least 1"));
        }
        let encoder = match &self.backbone {
            Backbone::Encoder(e) => e,
            Backbone::Static(m) => {
                let dim = m.dim();
                let mut data = vec![0f32; encoded.len() * dim];
                data.par_chunks_exact_mut(dim.max(1))
                    .zip(encoded.par_iter())
                    .with_min_len(64)
                    .try_for_each(|(out, e)| m.pool(&e.ids, out))?;
                return Ok(data);
            }
        };
        let dim = self.pooled;
        let mut data = vec![0f32; encoded.len() * dim];
        let mut order: Vec<usize> = (0..encoded.len()).collect();
        order.sort_by_key(|&i| std::cmp::Reverse(encoded[i].ids.len()));
        let tensor_err = |source| Error::Tensor {
            model: self.info.id.clone(),
            source,
        };
        for rows in order.chunks(batch_size) {
            let batch = self.tokenizer.pad(encoded, rows);
            let hidden = encoder.forward(&batch).map_err(tensor_err)?;
            let mut mask = vec![0u32; batch.seq];
            for (r, &i) in rows.iter().enumerate() {
                mask.copy_from_slice(&batch.mask[r * batch.seq..(r + 1) * batch.seq]);
                mask.iter_mut()
                    .take(encoded[i].pool_skip)
                    .for_each(|m| *m = 0);
                self.info.pooling.pool(
                    hidden.sequence(r),
                    &mask,
                    dim,
                    &mut data[i * dim..(i + 1) * dim],
                );
            }
        }
        for d in &self.dense {
            data = d.forward(&data).map_err(tensor_err)?;
        }
        Ok(data)
    }

    /// Final vectors from `embed_encoded`'s raw ones: cut to `opts.dimensions` by the model's
    /// Matryoshka recipe (or `opts.matryoshka`), normalized when `opts.normalize`. Returns the
    /// width and the vectors.
    pub fn finish(&self, raw: &[f32], opts: &EmbedOptions) -> (usize, Vec<f32>) {
        crate::pooling::finish(
            raw,
            self.info.dimension,
            opts.dimensions,
            opts.normalize,
            opts.matryoshka.unwrap_or(self.info.matryoshka),
        )
    }

    /// The encoder's last hidden state of a padded batch on the host, `[batch × seq × hidden]`.
    /// Static models have none (they are embedders only, and embed without it).
    pub(crate) fn hidden_state(&self, batch: &Batch) -> Result<Vec<f32>> {
        let Backbone::Encoder(encoder) = &self.backbone else {
            return Err(Error::Internal(format!(
                "model `{}` is a static table and has no hidden states",
                self.info.id
            )));
        };
        encoder
            .forward(batch)
            .map(|h| h.data)
            .map_err(|source| Error::Tensor {
                model: self.info.id.clone(),
                source,
            })
    }

    /// Per-token vectors of the last hidden state for each text (padding removed, special tokens
    /// kept, not normalized), as sentence-transformers' `output_value="token_embeddings"`;
    /// `[len_i * hidden]` each. Static models have no hidden states: each token's row of the
    /// table instead.
    pub fn token_embeddings(&self, texts: &[String], truncate: bool) -> Result<Vec<Vec<f32>>> {
        self.token_embeddings_with(texts, self.info.max_seq_length, truncate, 32)
    }

    /// [`token_embeddings`](Self::token_embeddings) with inputs cut at `limit` tokens (at most
    /// the model's), run `batch_size` at a time.
    pub fn token_embeddings_with(
        &self,
        texts: &[String],
        limit: usize,
        truncate: bool,
        batch_size: usize,
    ) -> Result<Vec<Vec<f32>>> {
        self.require_kind(ModelKind::Embedder, "token embeddings")?;
        let limit = limit.min(self.info.max_seq_length);
        let encoded = match &self.backbone {
            Backbone::Static(_) => {
                let opts = EmbedOptions {
                    truncate,
                    max_length: Some(limit),
                    ..EmbedOptions::default()
                };
                self.tokenize(texts, &opts)?
            }
            Backbone::Encoder(_) => {
                self.tokenizer
                    .encode(texts, limit, truncate, TruncationSide::Right)?
            }
        };
        self.token_embeddings_encoded(&encoded, batch_size)
    }

    /// Per-token vectors of `encoded` (from [`tokenize`](Self::tokenize)), in its order, run
    /// `batch_size` at a time by length.
    pub fn token_embeddings_encoded(
        &self,
        encoded: &[Encoded],
        batch_size: usize,
    ) -> Result<Vec<Vec<f32>>> {
        self.require_kind(ModelKind::Embedder, "token embeddings")?;
        if let Backbone::Static(m) = &self.backbone {
            let mut out = Vec::with_capacity(encoded.len());
            for e in encoded {
                let mut rows = vec![0f32; e.ids.len() * m.dim()];
                for (id, row) in e.ids.iter().zip(rows.chunks_exact_mut(m.dim().max(1))) {
                    m.pool(std::slice::from_ref(id), row)?;
                }
                out.push(rows);
            }
            return Ok(out);
        }
        let dim = self.pooled;
        let mut out = vec![Vec::new(); encoded.len()];
        let mut order: Vec<usize> = (0..encoded.len()).collect();
        order.sort_by_key(|&i| std::cmp::Reverse(encoded[i].ids.len()));
        for rows in order.chunks(batch_size.max(1)) {
            let batch = self.tokenizer.pad(encoded, rows);
            let hidden = self.hidden_state(&batch)?;
            for (r, &i) in rows.iter().enumerate() {
                let start = r * batch.seq * dim;
                out[i] = hidden[start..start + encoded[i].ids.len() * dim].to_vec();
            }
        }
        Ok(out)
    }

    /// Text for the model's own token ids, special tokens dropped. Ids outside the vocabulary
    /// are an error naming the input and the id.
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

    /// Token ids of `texts` after the model's truncation (a static model's: model2vec's).
    pub fn token_ids(&self, texts: &[String]) -> Result<Vec<Vec<u32>>> {
        Ok(self
            .plain_encode(texts)?
            .into_iter()
            .map(|e| e.ids)
            .collect())
    }

    /// Token counts of `texts` after the model's truncation.
    pub fn count_tokens(&self, texts: &[String]) -> Result<Vec<usize>> {
        Ok(self
            .plain_encode(texts)?
            .iter()
            .map(|e| e.ids.len())
            .collect())
    }

    fn plain_encode(&self, texts: &[String]) -> Result<Vec<Encoded>> {
        match &self.backbone {
            Backbone::Static(m) => {
                self.tokenize_static(m, texts, "", self.info.max_seq_length, true)
            }
            Backbone::Encoder(_) => {
                self.tokenizer
                    .encode(texts, self.info.max_seq_length, true, TruncationSide::Right)
            }
        }
    }
}
