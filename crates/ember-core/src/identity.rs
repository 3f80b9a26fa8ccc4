//! What makes a stored vector comparable to another: a model's identity (id, weights hash,
//! dimension, dtype, pooling, normalization, prompt), the task an input plays (query or
//! document) and the prompt that task picks, and token-window chunking of long texts.
//!
//! Vector tables record an identity next to their rows (the Python `ember.index`); every edge
//! that names a task (`input_type` over HTTP, `encode_query` / `encode_document` in Python) picks
//! its prompt here, so the rule lives in one place.

use std::collections::HashMap;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::sync::Mutex;
use std::time::SystemTime;

use serde::Serialize;
use sha2::{Digest, Sha256};

use crate::embedder::{EmbedOptions, Embedder};
use crate::error::{Error, Result};
use crate::pooling::Pooling;

/// The role of an input, as sentence-transformers 5's `encode_query` / `encode_document`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum InputType {
    /// A search query.
    Query,
    /// A stored passage or document.
    Document,
}

impl InputType {
    /// The model prompt names this role uses, the first one a model has wins.
    pub fn prompt_names(self) -> &'static [&'static str] {
        match self {
            InputType::Query => &["query"],
            InputType::Document => &["document", "passage", "corpus", "doc"],
        }
    }

    /// The first of [`InputType::prompt_names`] for which `has` is true (a model's prompt names).
    pub fn pick(self, has: impl Fn(&str) -> bool) -> Option<&'static str> {
        self.prompt_names().iter().find(|n| has(n)).copied()
    }

    /// The canonical name (`query`, `document`).
    pub fn as_str(self) -> &'static str {
        match self {
            InputType::Query => "query",
            InputType::Document => "document",
        }
    }
}

impl FromStr for InputType {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self> {
        match s {
            "query" => Ok(InputType::Query),
            "document" | "passage" => Ok(InputType::Document),
            other => Err(Error::invalid(
                "input_type",
                format!("unknown input type `{other}`; use `query` or `document`"),
            )),
        }
    }
}

/// Everything that decides which vector a text becomes: two tables whose identities differ in
/// any field hold vectors that must not be compared.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ModelIdentity {
    /// The model id vectors are tagged with.
    pub id: String,
    /// `model_type` of config.json.
    pub architecture: String,
    /// SHA-256 of the safetensors weights (see [`weights_sha256`]).
    pub weights_sha256: String,
    /// Length of each vector.
    pub dimension: usize,
    /// How the weights were stored when the vectors were made.
    pub dtype: String,
    /// The pooling mode.
    pub pooling: Pooling,
    /// Whether the vectors are L2-normalized.
    pub normalize: bool,
    /// The prompt's name in the model, when it came from one.
    pub prompt_name: Option<String>,
    /// The literal prefix put before every input (None: no prompt).
    pub prompt: Option<String>,
    /// The token limit inputs were cut to.
    pub max_seq_length: usize,
}

/// SHA-256 of a model's safetensors weights, hex: for one `model.safetensors` the file's own
/// digest (the one the Hugging Face Hub lists for it); for a sharded checkpoint, the digest of
/// the shards' hex digests joined by newlines, in load order.
pub fn weights_sha256(dir: &Path) -> Result<String> {
    let files = crate::weights::weight_files(dir)?;
    let digests = files
        .iter()
        .map(|f| file_sha256(f))
        .collect::<Result<Vec<_>>>()?;
    if let [one] = digests.as_slice() {
        return Ok(one.clone());
    }
    Ok(hex(&Sha256::digest(digests.join("\n").as_bytes())))
}

/// What a model's weight files look like on disk, read without opening them: each file's path,
/// length and modification time. Equal stamps are taken to mean equal bytes (a file rewritten in
/// place gets a new modification time), which lets a hash be reused without reading the files.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WeightsStamp(Vec<(PathBuf, u64, Option<SystemTime>)>);

impl WeightsStamp {
    /// The stamp of the weight files of the model directory `dir`.
    pub fn of(dir: &Path) -> Result<Self> {
        let files = crate::weights::weight_files(dir)?;
        files
            .into_iter()
            .map(|f| {
                let meta = std::fs::metadata(&f).map_err(|e| Error::io(&f, e))?;
                Ok((f, meta.len(), meta.modified().ok()))
            })
            .collect::<Result<Vec<_>>>()
            .map(Self)
    }
}

/// [`weights_sha256`] of model directories, each read once until its files change (their
/// [`WeightsStamp`]): asking again for an unchanged directory costs a `stat` per file.
#[derive(Debug, Default)]
pub struct WeightsHashes(Mutex<HashMap<PathBuf, (WeightsStamp, String)>>);

impl WeightsHashes {
    /// The hash of `dir`'s weights as they are now (from the cache when their stamp is the one
    /// hashed before).
    pub fn get(&self, dir: &Path) -> Result<String> {
        let stamp = WeightsStamp::of(dir)?;
        if let Some((s, h)) = self.lock().get(dir) {
            if *s == stamp {
                return Ok(h.clone());
            }
        }
        // Read without the lock: other directories' hashes stay available meanwhile.
        let hash = weights_sha256(dir)?;
        // Files rewritten while they were read may have mixed old and new bytes: not cached.
        if WeightsStamp::of(dir)? == stamp {
            self.lock().insert(dir.to_path_buf(), (stamp, hash.clone()));
        }
        Ok(hash)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<PathBuf, (WeightsStamp, String)>> {
        // The map holds finished entries only: a panic elsewhere cannot leave one half-written.
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }
}

fn file_sha256(path: &Path) -> Result<String> {
    let mut file = std::fs::File::open(path).map_err(|e| Error::io(path, e))?;
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = file.read(&mut buf).map_err(|e| Error::io(path, e))?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
    }
    Ok(hex(&hasher.finalize()))
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// One chunk of a text: byte offsets `[start, end)` into the text and its token count (content
/// tokens, special tokens and prompt left out).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Chunk {
    pub start: usize,
    pub end: usize,
    pub tokens: usize,
}

impl Chunk {
    /// `chunks` of `text` (byte offsets, as [`Embedder::chunk`] gives them) with their offsets
    /// in characters (Unicode code points) instead: the indices Python's `str` slices with, and
    /// what the server's chunk route answers (JSON clients cannot slice UTF-8 bytes).
    pub fn in_chars(text: &str, chunks: &[Chunk]) -> Vec<Chunk> {
        let mut starts: Vec<usize> = text.char_indices().map(|(b, _)| b).collect();
        starts.push(text.len());
        let char_at = |byte: usize| starts.partition_point(|&s| s < byte);
        chunks
            .iter()
            .map(|c| Chunk {
                start: char_at(c.start),
                end: char_at(c.end),
                tokens: c.tokens,
            })
            .collect()
    }
}

impl Embedder {
    /// The prompt name `input_type` picks for this model: the first of
    /// [`InputType::prompt_names`] the model has, else None (no prompt).
    pub fn prompt_name_for(&self, input_type: InputType) -> Option<&str> {
        let prompts = &self.info().prompts;
        input_type.pick(|n| prompts.contains_key(n))
    }

    /// Whether the model's weight files changed on disk since it loaded them (or cannot be
    /// read now): its weights are then no longer those the files hold, and hashing the files
    /// would not say which weights it computes with.
    pub fn weights_changed_on_disk(&self) -> bool {
        let now = WeightsStamp::of(&self.info().path).ok();
        now.is_none() || now != self.weights_stamp
    }

    /// The model's identity for vectors made with `opts`: the prompt resolved as `embed` resolves
    /// it, the weights hashed (once per loaded model; the hash is cached).
    pub fn identity(&self, opts: &EmbedOptions) -> Result<ModelIdentity> {
        self.check_options(opts)?;
        let prompt = self.resolved_prompt(opts)?;
        let prompt_name = match (&opts.prompt, &opts.prompt_name) {
            (Some(_), _) => None,
            (None, Some(n)) => Some(n.clone()),
            (None, None) => prompt.as_ref().and(self.info().default_prompt_name.clone()),
        };
        let info = self.info();
        Ok(ModelIdentity {
            id: info.id.clone(),
            architecture: info.architecture.clone(),
            weights_sha256: self.weights_sha256()?.to_string(),
            dimension: opts.dimensions.unwrap_or(info.dimension),
            dtype: info.dtype.as_str().to_string(),
            pooling: info.pooling,
            normalize: opts.normalize,
            prompt_name,
            prompt,
            max_seq_length: opts
                .max_length
                .map_or(info.max_seq_length, |m| m.min(info.max_seq_length)),
        })
    }

    /// Splits `text` into windows of at most `max_tokens` of this model's tokens, each starting
    /// `max_tokens - overlap` tokens after the previous one, as byte ranges of `text` (a text
    /// that fits is one chunk; an empty text is one empty chunk).
    ///
    /// `max_tokens` plus the special tokens and the prompt (`opts`) must fit the model's limit,
    /// so that no chunk is cut when it is embedded.
    pub fn chunk(
        &self,
        text: &str,
        max_tokens: usize,
        overlap: usize,
        opts: &EmbedOptions,
    ) -> Result<Vec<Chunk>> {
        if max_tokens == 0 {
            return Err(Error::invalid("chunk_tokens", "must be at least 1"));
        }
        if overlap >= max_tokens {
            return Err(Error::invalid(
                "chunk_overlap",
                format!("{overlap} must be smaller than chunk_tokens ({max_tokens})"),
            ));
        }
        let (limit, overhead) = self.chunk_room(opts)?;
        if max_tokens + overhead > limit {
            return Err(Error::invalid(
                "chunk_tokens",
                format!(
                    "{max_tokens} tokens plus {overhead} for special tokens and the prompt exceed \
                     the {limit}-token limit of model `{}`; use at most {}",
                    self.id(),
                    limit.saturating_sub(overhead)
                ),
            ));
        }
        let spans = self.tokenizer().content_spans(text)?;
        if spans.len() <= max_tokens {
            return Ok(vec![Chunk {
                start: 0,
                end: text.len(),
                tokens: spans.len(),
            }]);
        }
        let step = max_tokens - overlap;
        let mut chunks = Vec::new();
        let mut first = 0;
        loop {
            let last = (first + max_tokens).min(spans.len()) - 1;
            chunks.push(Chunk {
                start: spans[first].0,
                end: spans[last].1,
                tokens: last + 1 - first,
            });
            if last + 1 == spans.len() {
                return Ok(chunks);
            }
            first += step;
        }
    }

    /// The largest `max_tokens` [`chunk`](Self::chunk) accepts with `opts`: the model's limit
    /// (or `opts.max_length`) less the special tokens and the prompt. An error when nothing is
    /// left (a prompt as long as the limit).
    pub fn max_chunk_tokens(&self, opts: &EmbedOptions) -> Result<usize> {
        let (limit, overhead) = self.chunk_room(opts)?;
        match limit.checked_sub(overhead) {
            Some(n) if n > 0 => Ok(n),
            _ => Err(Error::invalid(
                "chunk_tokens",
                format!(
                    "the special tokens and the prompt ({overhead} tokens) leave no room for \
                     content in the {limit}-token limit of model `{}`",
                    self.id()
                ),
            )),
        }
    }

    /// The token limit inputs are cut to with `opts`, and the tokens around each input's
    /// content.
    fn chunk_room(&self, opts: &EmbedOptions) -> Result<(usize, usize)> {
        let limit = opts.max_length.map_or(self.info().max_seq_length, |m| {
            m.min(self.info().max_seq_length)
        });
        Ok((limit, self.tokens_around_content(opts)?))
    }

    /// Tokens every input carries besides its content: special tokens and the prompt's.
    fn tokens_around_content(&self, opts: &EmbedOptions) -> Result<usize> {
        let empty = [String::new()];
        let opts = EmbedOptions {
            truncate: true,
            ..opts.clone()
        };
        Ok(self
            .tokenize(&empty, &opts)?
            .first()
            .map_or(0, |e| e.ids.len()))
    }
}
