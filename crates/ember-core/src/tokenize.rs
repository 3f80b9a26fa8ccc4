//! Tokenization with the `tokenizers` crate: our own truncation (the model's max_seq_length or a
//! smaller limit), special tokens, and padded batches built by length.

use std::path::Path;

use tokenizers::{
    PaddingParams, Tokenizer, TruncationDirection, TruncationParams, TruncationStrategy,
};

use crate::error::{Error, Result};
use crate::models::Batch;

/// One tokenized input, before padding.
#[derive(Debug, Clone)]
pub struct Encoded {
    /// Token ids, special tokens included.
    pub ids: Vec<u32>,
    /// Token type ids.
    pub type_ids: Vec<u32>,
}

/// A model's tokenizer with Ember's truncation rules.
#[derive(Debug, Clone)]
pub struct TextTokenizer {
    model: String,
    inner: Tokenizer,
    /// A copy set up once to truncate at the model's limit (the common case), so requests do not
    /// clone the whole tokenizer to change its truncation.
    truncating: Option<(usize, Tokenizer)>,
    pad_id: u32,
    lowercase: bool,
}

impl TextTokenizer {
    /// Loads `tokenizer.json`; the file's own truncation and padding settings are dropped (Ember
    /// truncates per request and pads per batch).
    pub fn load(path: &Path, model: &str, pad_id: u32, lowercase: bool) -> Result<Self> {
        let mut inner = Tokenizer::from_file(path).map_err(|source| Error::Tokenizer {
            model: model.to_string(),
            source,
        })?;
        inner.with_padding(None::<PaddingParams>);
        inner
            .with_truncation(None)
            .map_err(|source| Error::Tokenizer {
                model: model.to_string(),
                source,
            })?;
        Ok(Self {
            model: model.to_string(),
            inner,
            truncating: None,
            pad_id,
            lowercase,
        })
    }

    /// Bytes the tokenizer holds, counted from its vocabulary: each token's text plus the
    /// `String` and hash-map entry overhead of the token→id and id→token maps.
    pub fn approx_bytes(&self) -> usize {
        const ENTRY: usize = std::mem::size_of::<String>() + 4 + 16;
        self.inner
            .get_vocab(true)
            .keys()
            .map(|t| 2 * (t.len() + ENTRY))
            .sum()
    }

    /// Prepares truncation at `max_len` (the model's limit) once.
    pub fn with_default_limit(mut self, max_len: usize) -> Result<Self> {
        self.truncating = Some((max_len, self.truncating_at(max_len)?));
        Ok(self)
    }

    fn truncating_at(&self, max_len: usize) -> Result<Tokenizer> {
        let mut t = self.inner.clone();
        t.with_truncation(Some(TruncationParams {
            max_length: max_len,
            strategy: TruncationStrategy::LongestFirst,
            stride: 0,
            direction: TruncationDirection::Right,
        }))
        .map_err(|source| Error::Tokenizer {
            model: self.model.clone(),
            source,
        })?;
        Ok(t)
    }

    /// Size of the tokenizer's vocabulary, special tokens included.
    pub fn vocab_size(&self) -> usize {
        self.inner.get_vocab_size(true)
    }

    /// Tokenizes `texts`, cutting each to `max_len` tokens (special tokens included) when
    /// `truncate`, or failing with [`Error::InputTooLong`] naming the first input that is longer.
    pub fn encode(&self, texts: &[String], max_len: usize, truncate: bool) -> Result<Vec<Encoded>> {
        let lowered;
        let texts: &[String] = if self.lowercase {
            lowered = texts.iter().map(|t| t.to_lowercase()).collect::<Vec<_>>();
            &lowered
        } else {
            texts
        };
        let inputs: Vec<&str> = texts.iter().map(String::as_str).collect();
        let tok_err = |source| Error::Tokenizer {
            model: self.model.clone(),
            source,
        };
        let encodings = if truncate {
            match &self.truncating {
                Some((limit, t)) if *limit == max_len => {
                    t.encode_batch(inputs, true).map_err(tok_err)?
                }
                _ => self
                    .truncating_at(max_len)?
                    .encode_batch(inputs, true)
                    .map_err(tok_err)?,
            }
        } else {
            let all = self.inner.encode_batch(inputs, true).map_err(tok_err)?;
            if let Some((index, e)) = all.iter().enumerate().find(|(_, e)| e.len() > max_len) {
                return Err(Error::InputTooLong {
                    model: self.model.clone(),
                    index,
                    tokens: e.len(),
                    limit: max_len,
                });
            }
            all
        };
        Ok(encodings
            .into_iter()
            .map(|e| Encoded {
                ids: e.get_ids().to_vec(),
                type_ids: e.get_type_ids().to_vec(),
            })
            .collect())
    }

    /// Tokens of one text, as strings, without truncation (for inspection and `/tokenize`).
    pub fn tokens(&self, text: &str) -> Result<Vec<(u32, String)>> {
        let text = if self.lowercase {
            text.to_lowercase()
        } else {
            text.to_string()
        };
        let e = self
            .inner
            .encode(text, true)
            .map_err(|source| Error::Tokenizer {
                model: self.model.clone(),
                source,
            })?;
        Ok(e.get_ids()
            .iter()
            .copied()
            .zip(e.get_tokens().iter().cloned())
            .collect())
    }

    /// The text of `ids` (special tokens dropped).
    pub fn decode(&self, ids: &[u32]) -> Result<String> {
        self.inner
            .decode(ids, true)
            .map_err(|source| Error::Tokenizer {
                model: self.model.clone(),
                source,
            })
    }

    /// Pads `rows` (indices into `encoded`) to their longest member.
    pub fn pad(&self, encoded: &[Encoded], rows: &[usize]) -> Batch {
        let seq = rows
            .iter()
            .map(|&i| encoded[i].ids.len())
            .max()
            .unwrap_or(0);
        let n = rows.len();
        let mut batch = Batch {
            ids: vec![self.pad_id; n * seq],
            type_ids: vec![0; n * seq],
            mask: vec![0; n * seq],
            batch: n,
            seq,
        };
        for (r, &i) in rows.iter().enumerate() {
            let e = &encoded[i];
            let off = r * seq;
            batch.ids[off..off + e.ids.len()].copy_from_slice(&e.ids);
            batch.type_ids[off..off + e.type_ids.len()].copy_from_slice(&e.type_ids);
            batch.mask[off..off + e.ids.len()].fill(1);
        }
        batch
    }
}
