//! Cross-encoder scoring with a reranker: `predict` (scores of texts or text pairs, as
//! sentence-transformers' `CrossEncoder.predict` and TEI's `/predict`) and `rerank` (one query
//! against many documents, sorted, as `CrossEncoder.rank`).
//!
//! Pairs are tokenized together (`TextTokenizer::encode_pairs`: token type ids, truncation that
//! keeps the query), sorted by length and run `batch_size` at a time; the classification head
//! reads each row's first token. The split into [`Embedder::tokenize_pairs`] and
//! [`Embedder::logits_encoded`] lets the server's batcher mix pairs of several requests in one
//! pass, counted by their pair tokens.

use std::time::{Duration, Instant};

use serde::Serialize;

use crate::embedder::Embedder;
use crate::error::{Error, Result};
use crate::heads::classifier::Classifier;
use crate::heads::{Head, ModelKind};
use crate::tokenize::{Encoded, TruncationSide};

/// Options of a scoring call. `Default`: activated scores, truncation on, 32 pairs per pass.
#[derive(Debug, Clone)]
pub struct RerankOptions {
    /// Logits as the head gives them, without the model's activation (TEI's `raw_scores`).
    pub raw_scores: bool,
    /// Cut pairs longer than the limit (the document first), else error naming the pair.
    pub truncate: bool,
    /// Which end of an over-long text is cut.
    pub truncation_side: TruncationSide,
    /// A limit smaller than the model's max_seq_length.
    pub max_length: Option<usize>,
    /// Pairs per forward pass.
    pub batch_size: usize,
}

impl Default for RerankOptions {
    fn default() -> Self {
        Self {
            raw_scores: false,
            truncate: true,
            truncation_side: TruncationSide::Right,
            max_length: None,
            batch_size: 32,
        }
    }
}

/// One input of [`Embedder::predict`]: a text (single-sequence classification) or a pair.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PredictInput {
    Single(String),
    Pair(String, String),
}

/// Scores of [`Embedder::predict`], in input order.
#[derive(Debug, Clone, Serialize)]
pub struct Scores {
    pub model: String,
    /// Scores per input.
    pub num_labels: usize,
    /// Label names, in score order.
    pub labels: Vec<String>,
    /// Row-major `[inputs × num_labels]`.
    pub scores: Vec<f32>,
    /// Tokens processed (after truncation, special tokens included).
    pub prompt_tokens: usize,
    pub tokenize_time: Duration,
    pub inference_time: Duration,
}

impl Scores {
    /// The scores of input `i`.
    pub fn row(&self, i: usize) -> &[f32] {
        &self.scores[i * self.num_labels..(i + 1) * self.num_labels]
    }
}

/// One document's place in a ranking.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct RankedDocument {
    /// Its index in the request's documents.
    pub index: usize,
    pub score: f32,
}

/// The documents of [`Embedder::rerank`], best first.
#[derive(Debug, Clone, Serialize)]
pub struct Ranked {
    pub model: String,
    pub results: Vec<RankedDocument>,
    pub prompt_tokens: usize,
    pub tokenize_time: Duration,
    pub inference_time: Duration,
}

/// `scores` (one per document) as a ranking: highest first, ties in document order (the order
/// Python's stable `sorted(..., reverse=True)` gives `CrossEncoder.rank`).
pub fn rank(scores: &[f32]) -> Vec<RankedDocument> {
    let mut out: Vec<RankedDocument> = scores
        .iter()
        .enumerate()
        .map(|(index, &score)| RankedDocument { index, score })
        .collect();
    out.sort_by(|a, b| b.score.total_cmp(&a.score).then(a.index.cmp(&b.index)));
    out
}

impl Embedder {
    /// The classification head, when the model is a reranker.
    pub fn classifier(&self) -> Option<&Classifier> {
        match &self.head {
            Head::Classifier(c) => Some(c),
            _ => None,
        }
    }

    fn classifier_for(&self, task: &'static str) -> Result<&Classifier> {
        self.require_kind(ModelKind::Reranker, task)?;
        self.classifier()
            .ok_or_else(|| Error::Internal(format!("reranker `{}` has no head", self.id())))
    }

    fn pair_limit(&self, opts: &RerankOptions) -> Result<usize> {
        if opts.batch_size == 0 {
            return Err(Error::invalid("batch_size", "must be at least 1"));
        }
        if opts.max_length == Some(0) {
            return Err(Error::invalid("max_length", "must be at least 1"));
        }
        let own = self.info.max_seq_length;
        Ok(opts.max_length.map_or(own, |m| m.min(own)))
    }

    /// Tokenizes `inputs` as [`predict`](Self::predict) will. Feed the result to
    /// [`logits_encoded`](Self::logits_encoded); encodings of several calls may be mixed there.
    pub fn tokenize_inputs(
        &self,
        inputs: &[PredictInput],
        opts: &RerankOptions,
    ) -> Result<Vec<Encoded>> {
        self.classifier_for("predict")?;
        let limit = self.pair_limit(opts)?;
        let (mut singles, mut firsts, mut seconds) = (Vec::new(), Vec::new(), Vec::new());
        for input in inputs {
            match input {
                PredictInput::Single(t) => singles.push(t.clone()),
                PredictInput::Pair(a, b) => {
                    firsts.push(a.clone());
                    seconds.push(b.clone());
                }
            }
        }
        let side = opts.truncation_side;
        let singles = self
            .tokenizer
            .encode(&singles, limit, opts.truncate, side)
            .map_err(|e| reindex(e, inputs, false))?;
        let pairs = self
            .tokenizer
            .encode_pairs(&firsts, &seconds, limit, opts.truncate, side)
            .map_err(|e| reindex(e, inputs, true))?;
        let (mut singles, mut pairs) = (singles.into_iter(), pairs.into_iter());
        Ok(inputs
            .iter()
            .filter_map(|i| match i {
                PredictInput::Single(_) => singles.next(),
                PredictInput::Pair(..) => pairs.next(),
            })
            .collect())
    }

    /// Tokenizes (`query`, document) pairs as [`rerank`](Self::rerank) will.
    pub fn tokenize_pairs(
        &self,
        query: &str,
        documents: &[String],
        opts: &RerankOptions,
    ) -> Result<Vec<Encoded>> {
        self.classifier_for("rerank")?;
        let limit = self.pair_limit(opts)?;
        let queries = vec![query.to_string(); documents.len()];
        self.tokenizer.encode_pairs(
            &queries,
            documents,
            limit,
            opts.truncate,
            opts.truncation_side,
        )
    }

    /// Raw logits `[rows × num_labels]` of `encoded`, in its order; rows sorted by length and run
    /// `batch_size` at a time, each pass padded to its longest member.
    pub fn logits_encoded(&self, encoded: &[Encoded], batch_size: usize) -> Result<Vec<f32>> {
        let head = self.classifier_for("predict")?;
        let (n, h) = (head.num_labels(), self.pooled);
        let mut out = vec![0f32; encoded.len() * n];
        let mut order: Vec<usize> = (0..encoded.len()).collect();
        order.sort_by_key(|&i| std::cmp::Reverse(encoded[i].ids.len()));
        for rows in order.chunks(batch_size.max(1)) {
            let batch = self.tokenizer.pad(encoded, rows);
            let hidden = self.hidden_state(&batch)?;
            let pooled = match head.mean_pooled() {
                true => mean_rows(&hidden, &batch.mask, rows.len(), batch.seq, h),
                false => (0..rows.len())
                    .flat_map(|r| &hidden[r * batch.seq * h..r * batch.seq * h + h])
                    .copied()
                    .collect(),
            };
            let logits = head.logits(&pooled, h).map_err(|source| Error::Tensor {
                model: self.info.id.clone(),
                source,
            })?;
            for (r, &i) in rows.iter().enumerate() {
                out[i * n..(i + 1) * n].copy_from_slice(&logits[r * n..(r + 1) * n]);
            }
        }
        Ok(out)
    }

    /// Applies the model's activation to logits `[rows × num_labels]` in place (what
    /// `CrossEncoder.predict` returns by default).
    pub fn activate(&self, logits: &mut [f32]) {
        if let Some(c) = self.classifier() {
            let n = c.num_labels().max(1);
            logits
                .chunks_exact_mut(n)
                .for_each(|row| c.activation().apply(row));
        }
    }

    /// Scores of texts or text pairs, in input order: the model's activation applied unless
    /// `raw_scores`.
    pub fn predict(&self, inputs: &[PredictInput], opts: &RerankOptions) -> Result<Scores> {
        let head = self.classifier_for("predict")?;
        let started = Instant::now();
        let encoded = self.tokenize_inputs(inputs, opts)?;
        let tokenize_time = started.elapsed();
        let started = Instant::now();
        let mut scores = self.logits_encoded(&encoded, opts.batch_size)?;
        if !opts.raw_scores {
            self.activate(&mut scores);
        }
        Ok(Scores {
            model: self.info.id.clone(),
            num_labels: head.num_labels(),
            labels: head.labels().to_vec(),
            scores,
            prompt_tokens: encoded.iter().map(|e| e.ids.len()).sum(),
            tokenize_time,
            inference_time: started.elapsed(),
        })
    }

    /// Scores every document against `query` and sorts them, best first. The model must give
    /// one score per pair (as `CrossEncoder.rank` requires).
    pub fn rerank(
        &self,
        query: &str,
        documents: &[String],
        opts: &RerankOptions,
    ) -> Result<Ranked> {
        let head = self.classifier_for("rerank")?;
        if head.num_labels() != 1 {
            return Err(Error::invalid(
                "model",
                format!(
                    "rerank needs one score per pair, but model `{}` has {} labels ({}); use predict to get them",
                    self.info.id,
                    head.num_labels(),
                    head.labels().join(", ")
                ),
            ));
        }
        let started = Instant::now();
        let encoded = self.tokenize_pairs(query, documents, opts)?;
        let tokenize_time = started.elapsed();
        let started = Instant::now();
        let mut scores = self.logits_encoded(&encoded, opts.batch_size)?;
        if !opts.raw_scores {
            self.activate(&mut scores);
        }
        Ok(Ranked {
            model: self.info.id.clone(),
            results: rank(&scores),
            prompt_tokens: encoded.iter().map(|e| e.ids.len()).sum(),
            tokenize_time,
            inference_time: started.elapsed(),
        })
    }
}

/// `InputTooLong` from the singles (or pairs) alone names the input by its index in `inputs`.
fn reindex(err: Error, inputs: &[PredictInput], pairs: bool) -> Error {
    match err {
        Error::InputTooLong {
            model,
            index,
            tokens,
            limit,
        } => {
            let index = inputs
                .iter()
                .enumerate()
                .filter(|(_, i)| matches!(i, PredictInput::Pair(..)) == pairs)
                .nth(index)
                .map_or(index, |(k, _)| k);
            Error::InputTooLong {
                model,
                index,
                tokens,
                limit,
            }
        }
        other => other,
    }
}

/// The mean of each row's real tokens' vectors (`hidden` is `[rows × seq × h]`, `mask`
/// `[rows × seq]`), as transformers' ModernBERT classifier pools with `classifier_pooling: mean`.
fn mean_rows(hidden: &[f32], mask: &[u32], rows: usize, seq: usize, h: usize) -> Vec<f32> {
    let mut out = vec![0f32; rows * h];
    for (r, o) in out.chunks_exact_mut(h.max(1)).enumerate() {
        let real: Vec<usize> = (0..seq).filter(|&p| mask[r * seq + p] != 0).collect();
        for &p in &real {
            let at = (r * seq + p) * h;
            o.iter_mut()
                .zip(&hidden[at..at + h])
                .for_each(|(a, &x)| *a += x);
        }
        let n = real.len().max(1) as f32;
        o.iter_mut().for_each(|a| *a /= n);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranking_is_by_score_then_index() {
        let r = rank(&[0.2, 0.9, 0.2, -1.0]);
        let order: Vec<usize> = r.iter().map(|d| d.index).collect();
        assert_eq!(order, [1, 0, 2, 3]);
    }
}
