//! Sparse (SPLADE) embeddings with a sparse encoder: one weight per vocabulary entry, most of
//! them zero, returned as (indices, values) by increasing index, as sentence-transformers'
//! `SparseEncoder.encode` gives them (`encode_query` / `encode_document` for asymmetric models).
//!
//! Documents (and queries of ordinary SPLADE models) run through the encoder and the masked-LM
//! head; queries of inference-free models (OpenSearch's `doc-v3-distill`) take the static route,
//! a weight look-up per query token with no forward pass. [`Embedder::tokenize_sparse`] and
//! [`Embedder::sparse_encoded`] let the server batch documents of several requests together.

use std::time::{Duration, Instant};

use serde::Serialize;

use crate::embedder::Embedder;
use crate::error::{Error, Result};
use crate::heads::sparse::{SparseHead, SparseVector};
use crate::heads::{Head, ModelKind};
use crate::tokenize::{Encoded, TruncationSide};

/// Options of a sparse-embedding call. `Default`: the document route, every nonzero entry,
/// truncation on, 32 texts per pass.
#[derive(Debug, Clone)]
pub struct SparseOptions {
    /// Keep only the `top_k` largest entries of each vector.
    pub top_k: Option<usize>,
    /// Encode as queries (an inference-free model's static route; the same as documents for
    /// other models).
    pub query: bool,
    /// Cut inputs longer than the limit, else error naming the input.
    pub truncate: bool,
    /// Which end of an over-long input is cut.
    pub truncation_side: TruncationSide,
    /// A limit smaller than the model's max_seq_length.
    pub max_length: Option<usize>,
    /// Texts per forward pass.
    pub batch_size: usize,
}

impl Default for SparseOptions {
    fn default() -> Self {
        Self {
            top_k: None,
            query: false,
            truncate: true,
            truncation_side: TruncationSide::Right,
            max_length: None,
            batch_size: 32,
        }
    }
}

/// Sparse vectors for a list of inputs, in input order.
#[derive(Debug, Clone, Serialize)]
pub struct SparseEmbeddings {
    pub model: String,
    /// The vocabulary size: every index is below it.
    pub dimension: usize,
    pub vectors: Vec<SparseVector>,
    /// Tokens processed (after truncation).
    pub prompt_tokens: usize,
    pub tokenize_time: Duration,
    pub inference_time: Duration,
}

impl Embedder {
    /// The masked-LM head, when the model is a sparse encoder.
    pub fn sparse_head(&self) -> Option<&SparseHead> {
        match &self.head {
            Head::Sparse(s) => Some(s),
            _ => None,
        }
    }

    fn sparse_for(&self) -> Result<&SparseHead> {
        self.require_kind(ModelKind::Sparse, "sparse embedding")?;
        self.sparse_head()
            .ok_or_else(|| Error::Internal(format!("sparse model `{}` has no head", self.id())))
    }

    fn sparse_limit(&self, opts: &SparseOptions) -> Result<usize> {
        if opts.batch_size == 0 {
            return Err(Error::invalid("batch_size", "must be at least 1"));
        }
        if opts.top_k == Some(0) {
            return Err(Error::invalid("top_k", "must be at least 1"));
        }
        if opts.max_length == Some(0) {
            return Err(Error::invalid("max_length", "must be at least 1"));
        }
        let own = self.info.max_seq_length;
        Ok(opts.max_length.map_or(own, |m| m.min(own)))
    }

    /// Tokenizes `texts` for the document route, as [`embed_sparse`](Self::embed_sparse) will.
    pub fn tokenize_sparse(&self, texts: &[String], opts: &SparseOptions) -> Result<Vec<Encoded>> {
        self.sparse_for()?;
        let limit = self.sparse_limit(opts)?;
        self.tokenizer
            .encode(texts, limit, opts.truncate, opts.truncation_side)
    }

    /// Sparse vectors of `encoded` (document route), in its order, run `batch_size` at a time
    /// by length.
    pub fn sparse_encoded(
        &self,
        encoded: &[Encoded],
        batch_size: usize,
        top_k: Option<usize>,
    ) -> Result<Vec<SparseVector>> {
        let head = self.sparse_for()?;
        let v = head.vocab();
        let mut out = vec![SparseVector::default(); encoded.len()];
        let mut order: Vec<usize> = (0..encoded.len()).collect();
        order.sort_by_key(|&i| std::cmp::Reverse(encoded[i].ids.len()));
        for rows in order.chunks(batch_size.max(1)) {
            let batch = self.tokenizer.pad(encoded, rows);
            let hidden = self.hidden_state(&batch)?;
            let cost = (batch.batch * batch.seq) as u64 * head.bytes() as u64;
            let pooled = crate::kernels::threads::on_pool(cost, || {
                head.pool(&hidden, &batch.mask, batch.batch, batch.seq)
            })
            .map_err(|source| Error::Tensor {
                model: self.info.id.clone(),
                source,
            })?;
            for (r, &i) in rows.iter().enumerate() {
                out[i] = SparseVector::from_dense(&pooled[r * v..(r + 1) * v], top_k);
            }
        }
        Ok(out)
    }

    /// Sparse vectors of `texts`, in input order.
    pub fn embed_sparse(&self, texts: &[String], opts: &SparseOptions) -> Result<SparseEmbeddings> {
        let head = self.sparse_for()?;
        let limit = self.sparse_limit(opts)?;
        let started = Instant::now();
        if let (true, Some(q)) = (opts.query, head.static_query.as_ref()) {
            let tok = q.tokenizer.as_ref().unwrap_or(&self.tokenizer);
            let ids = tok.encode_plain_cut(texts, q.max_length.unwrap_or(limit), opts.truncate)?;
            let vectors = ids.iter().map(|i| q.vector(i, opts.top_k)).collect();
            return Ok(SparseEmbeddings {
                model: self.info.id.clone(),
                dimension: head.vocab(),
                vectors,
                prompt_tokens: ids.iter().map(Vec::len).sum(),
                tokenize_time: started.elapsed(),
                inference_time: Duration::ZERO,
            });
        }
        let encoded = self.tokenize_sparse(texts, opts)?;
        let tokenize_time = started.elapsed();
        let started = Instant::now();
        let vectors = self.sparse_encoded(&encoded, opts.batch_size, opts.top_k)?;
        Ok(SparseEmbeddings {
            model: self.info.id.clone(),
            dimension: head.vocab(),
            vectors,
            prompt_tokens: encoded.iter().map(|e| e.ids.len()).sum(),
            tokenize_time,
            inference_time: started.elapsed(),
        })
    }
}
