//! Tokenization with the `tokenizers` crate: our own truncation (the model's max_seq_length or a
//! smaller limit), special tokens, and padded batches built by length.

mod wordpiece;

use std::path::Path;
use std::sync::{Arc, OnceLock};

use rayon::prelude::*;
use tokenizers::{Encoding, PaddingParams, PostProcessor, Token, Tokenizer, TruncationDirection};

use crate::error::{Error, Result};
use crate::models::Batch;

/// Which end of an over-long input loses its tokens (TEI's `truncation_direction`).
#[derive(
    Debug, Clone, Copy, Default, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize,
)]
#[serde(rename_all = "lowercase")]
pub enum TruncationSide {
    /// Keep the beginning (sentence-transformers' behaviour).
    #[default]
    Right,
    /// Keep the end.
    Left,
}

impl TruncationSide {
    fn direction(self) -> TruncationDirection {
        match self {
            Self::Right => TruncationDirection::Right,
            Self::Left => TruncationDirection::Left,
        }
    }
}

/// One tokenized input, before padding.
#[derive(Debug, Clone)]
pub struct Encoded {
    /// Token ids, special tokens included.
    pub ids: Vec<u32>,
    /// Token type ids.
    pub type_ids: Vec<u32>,
    /// Leading tokens left out of pooling (a prompt with `include_prompt: false`).
    pub pool_skip: usize,
}

/// One token of a text, as `/tokenize` reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenInfo {
    pub id: u32,
    /// The token as the vocabulary spells it (`##ing`, `[CLS]`).
    pub token: String,
    /// Added by the post-processor (`[CLS]`, `[SEP]`, `<s>`).
    pub special: bool,
    /// Byte offsets `[start, stop)` into the tokenized text; `None` for special tokens.
    pub offsets: Option<(usize, usize)>,
    /// The slice of the tokenized text this token covers (the token itself when special).
    pub text: String,
}

/// A model's tokenizer with Ember's truncation rules.
#[derive(Debug, Clone)]
pub struct TextTokenizer {
    model: String,
    inner: Tokenizer,
    /// Special tokens the post-processor adds to one sequence (`[CLS]` and `[SEP]`: 2).
    added: usize,
    pad_id: u32,
    lowercase: bool,
    /// The fast path of [`TextTokenizer::encode_plain`], made at its first use (`None`: the
    /// tokenizer is not one it reproduces).
    fast: OnceLock<Option<Arc<wordpiece::FastWordPiece>>>,
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
        let added = inner
            .get_post_processor()
            .map_or(0, |p| p.added_tokens(false));
        Ok(Self {
            model: model.to_string(),
            inner,
            added,
            pad_id,
            lowercase,
            fast: OnceLock::new(),
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

    /// Size of the tokenizer's vocabulary, special tokens included.
    pub fn vocab_size(&self) -> usize {
        self.inner.get_vocab_size(true)
    }

    fn err(&self, source: tokenizers::Error) -> Error {
        Error::Tokenizer {
            model: self.model.clone(),
            source,
        }
    }

    /// `text` as the tokenizer gets it: lowercased for models that ask for it
    /// (sentence-transformers' `do_lower_case`).
    fn prepared<'a>(&self, text: &'a str) -> std::borrow::Cow<'a, str> {
        match self.lowercase {
            true => text.to_lowercase().into(),
            false => text.into(),
        }
    }

    fn lowered<'a>(&self, texts: &'a [String]) -> std::borrow::Cow<'a, [String]> {
        if self.lowercase {
            texts
                .iter()
                .map(|t| t.to_lowercase())
                .collect::<Vec<_>>()
                .into()
        } else {
            texts.into()
        }
    }

    /// Tokenizes `texts`, cutting each to `max_len` tokens (special tokens included) at `side`
    /// when `truncate`, or failing with [`Error::InputTooLong`] naming the first input that is
    /// longer.
    ///
    /// Truncation is done here rather than by the tokenizer's own setting, which lives on the
    /// tokenizer and would need a copy of it per limit and side: we encode without special
    /// tokens, cut the content to `max_len` minus the special tokens, then let the
    /// post-processor add them, exactly the steps `tokenizers` takes itself.
    pub fn encode(
        &self,
        texts: &[String],
        max_len: usize,
        truncate: bool,
        side: TruncationSide,
    ) -> Result<Vec<Encoded>> {
        let texts = self.lowered(texts);
        let inputs: Vec<&str> = texts.iter().map(String::as_str).collect();
        let raw = self
            .inner
            .encode_batch(inputs, false)
            .map_err(|e| self.err(e))?;
        self.finish(raw, max_len, truncate, side)
    }

    /// Token-id inputs as [`TextTokenizer::encode`] treats texts: `prefix` then each row's ids
    /// (taken as they are), cut to `max_len` with the special tokens (or refused), and the
    /// special tokens added by the post-processor.
    pub fn encode_ids(
        &self,
        rows: &[Vec<u32>],
        prefix: &[u32],
        max_len: usize,
        truncate: bool,
        side: TruncationSide,
    ) -> Result<Vec<Encoded>> {
        let raw = rows
            .iter()
            .map(|ids| {
                let tokens = prefix
                    .iter()
                    .chain(ids)
                    .map(|&id| Token::new(id, String::new(), (0, 0)))
                    .collect();
                Encoding::from_tokens(tokens, 0)
            })
            .collect();
        self.finish(raw, max_len, truncate, side)
    }

    /// The ids of `text` without special tokens (a prompt to put before token-id inputs).
    pub fn content_ids(&self, text: &str) -> Result<Vec<u32>> {
        let e = self
            .inner
            .encode(self.prepared(text), false)
            .map_err(|e| self.err(e))?;
        Ok(e.get_ids().to_vec())
    }

    /// The post-processor's special tokens around `first` (and `second`, for a pair), as ids.
    fn post_processed(&self, first: Encoding, second: Option<Encoding>) -> Result<Encoded> {
        let e = self
            .inner
            .post_process(first, second, true)
            .map_err(|e| self.err(e))?;
        Ok(Encoded {
            ids: e.get_ids().to_vec(),
            type_ids: e.get_type_ids().to_vec(),
            pool_skip: 0,
        })
    }

    /// Input `index` has `tokens` tokens, over `limit`.
    fn too_long(&self, index: usize, tokens: usize, limit: usize) -> Error {
        Error::InputTooLong {
            model: self.model.clone(),
            index,
            tokens,
            limit,
        }
    }

    /// Truncates (or refuses) each encoding without special tokens at `max_len` minus the
    /// special tokens, then lets the post-processor add them.
    fn finish(
        &self,
        raw: Vec<Encoding>,
        max_len: usize,
        truncate: bool,
        side: TruncationSide,
    ) -> Result<Vec<Encoded>> {
        let mut out = Vec::with_capacity(raw.len());
        for (index, mut e) in raw.into_iter().enumerate() {
            let tokens = e.len() + self.added;
            if tokens > max_len {
                if !truncate {
                    return Err(self.too_long(index, tokens, max_len));
                }
                e.truncate(max_len.saturating_sub(self.added), 0, side.direction());
                // The cut-off parts would be post-processed too; nobody reads them.
                drop(e.take_overflowing());
            }
            out.push(self.post_processed(e, None)?);
        }
        Ok(out)
    }

    /// Tokenizes (first, second) pairs as a cross-encoder reads them: both sides with the
    /// pair template's special tokens and token type ids (`[CLS] q [SEP] d [SEP]`, types 0 then
    /// 1 for BERT; `<s> q </s></s> d </s>` for XLM-RoBERTa).
    ///
    /// Over `max_len`, truncation keeps the query: the second text is cut first (at `side`);
    /// only a first text longer than half the room is cut too, down to what the second leaves
    /// (both then end up about half, as transformers' `longest_first` gives). With `truncate`
    /// false an over-long pair is [`Error::InputTooLong`] naming its index.
    pub fn encode_pairs(
        &self,
        firsts: &[String],
        seconds: &[String],
        max_len: usize,
        truncate: bool,
        side: TruncationSide,
    ) -> Result<Vec<Encoded>> {
        debug_assert_eq!(firsts.len(), seconds.len());
        let added = self
            .inner
            .get_post_processor()
            .map_or(0, |p| p.added_tokens(true));
        let budget = max_len.saturating_sub(added);
        // Rerank sends one query with many documents: tokenize each distinct first text once.
        let mut distinct: Vec<String> = Vec::new();
        let mut which = Vec::with_capacity(firsts.len());
        for f in firsts {
            match distinct.iter().position(|d| d == f) {
                Some(i) => which.push(i),
                None if distinct.len() < 64 => {
                    which.push(distinct.len());
                    distinct.push(f.clone());
                }
                None => {
                    distinct = firsts.to_vec();
                    which = (0..firsts.len()).collect();
                    break;
                }
            }
        }
        let encode = |texts: &[String]| {
            let texts = self.lowered(texts);
            let inputs: Vec<&str> = texts.iter().map(String::as_str).collect();
            self.inner
                .encode_batch(inputs, false)
                .map_err(|e| self.err(e))
        };
        let queries = encode(&distinct)?;
        let docs = encode(seconds)?;
        let mut out = Vec::with_capacity(docs.len());
        for (index, mut d) in docs.into_iter().enumerate() {
            let mut q = queries[which[index]].clone();
            let (ql, dl) = (q.len(), d.len());
            if ql + dl > budget {
                if !truncate {
                    return Err(self.too_long(index, ql + dl + added, max_len));
                }
                let keep_d = budget.saturating_sub(ql).max(dl.min(budget / 2));
                let keep_q = budget - keep_d;
                if keep_q < ql {
                    q.truncate(keep_q, 0, side.direction());
                    drop(q.take_overflowing());
                }
                d.truncate(keep_d, 0, side.direction());
                drop(d.take_overflowing());
            }
            out.push(self.post_processed(q, Some(d))?);
        }
        Ok(out)
    }

    /// [`encode_plain`](Self::encode_plain) ids (no special tokens: a static query route's
    /// input) cut to `max_len` when `truncate`, else [`Error::InputTooLong`] for the first
    /// longer text.
    pub fn encode_plain_cut(
        &self,
        texts: &[String],
        max_len: usize,
        truncate: bool,
    ) -> Result<Vec<Vec<u32>>> {
        let refs: Vec<&str> = texts.iter().map(String::as_str).collect();
        self.encode_plain(&refs)?
            .into_iter()
            .enumerate()
            .map(|(index, mut ids)| {
                if ids.len() > max_len && !truncate {
                    return Err(self.too_long(index, ids.len(), max_len));
                }
                ids.truncate(max_len);
                Ok(ids)
            })
            .collect()
    }

    /// The id of `token` in the vocabulary (added tokens included).
    pub fn token_id(&self, token: &str) -> Option<u32> {
        self.inner.token_to_id(token)
    }

    /// Tokens of one text without truncation (for inspection and `/tokenize`), with byte
    /// offsets into the text as tokenized (lowercased first for lowercasing models).
    pub fn tokens(&self, text: &str) -> Result<Vec<TokenInfo>> {
        let text = self.prepared(text);
        let e = self
            .inner
            .encode(text.as_ref(), true)
            .map_err(|e| self.err(e))?;
        Ok(e.get_ids()
            .iter()
            .zip(e.get_tokens())
            .zip(e.get_offsets())
            .zip(e.get_special_tokens_mask())
            .map(|(((&id, token), &(start, stop)), &special)| {
                let special = special == 1;
                let slice = text.get(start..stop).filter(|_| !special);
                TokenInfo {
                    id,
                    token: token.clone(),
                    special,
                    offsets: slice.map(|_| (start, stop)),
                    text: slice.map_or_else(|| token.clone(), str::to_string),
                }
            })
            .collect())
    }

    /// Byte ranges of `text` covered by each of its content tokens (no special tokens, no
    /// truncation), in order: what chunking cuts at. For lowercasing models the ranges are
    /// mapped back from the lowercased text to `text`.
    pub fn content_spans(&self, text: &str) -> Result<Vec<(usize, usize)>> {
        if !self.lowercase {
            let e = self.inner.encode(text, false).map_err(|e| self.err(e))?;
            return Ok(e.get_offsets().to_vec());
        }
        let lowered = text.to_lowercase();
        // For each char of the lowered text: its byte start there, and the byte range of the
        // char of `text` it came from (lowercasing may change a char's length or count).
        let mut source: Vec<(usize, usize, usize)> = Vec::with_capacity(lowered.len());
        let mut at = 0;
        for (start, c) in text.char_indices() {
            for l in c.to_lowercase() {
                source.push((at, start, start + c.len_utf8()));
                at += l.len_utf8();
            }
        }
        let char_at = |byte: usize| match source.binary_search_by_key(&byte, |s| s.0) {
            Ok(i) => i,
            Err(i) => i.saturating_sub(1),
        };
        let e = self
            .inner
            .encode(lowered.as_str(), false)
            .map_err(|e| self.err(e))?;
        Ok(e.get_offsets()
            .iter()
            .map(|&(start, end)| {
                if source.is_empty() {
                    return (0, 0);
                }
                let from = source[char_at(start)].1;
                let to = if end > start {
                    source[char_at(end - 1)].2
                } else {
                    from
                };
                (from, to)
            })
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

    /// Whether [`TextTokenizer::encode_plain`] has its fast path for this tokenizer (a BERT
    /// WordPiece one): plain ASCII texts skip the `tokenizers` crate.
    pub fn has_fast_plain(&self) -> bool {
        self.fast_plain().is_some()
    }

    /// The fast path of [`TextTokenizer::encode_plain`], made at its first use.
    fn fast_plain(&self) -> Option<&Arc<wordpiece::FastWordPiece>> {
        self.fast
            .get_or_init(|| wordpiece::FastWordPiece::new(&self.inner).map(Arc::new))
            .as_ref()
    }

    /// Ids of `texts` without special tokens, truncation or offsets, as `encode_batch_fast`
    /// gives them: what static models read. Plain ASCII texts under a BERT WordPiece tokenizer
    /// take a faster path with the same result (see `wordpiece`).
    pub fn encode_plain(&self, texts: &[&str]) -> Result<Vec<Vec<u32>>> {
        let Some(fast) = self.fast_plain() else {
            return self.encode_plain_slow(texts);
        };
        // Plain ASCII text takes the fast path (see `wordpiece`); the rest goes through the
        // `tokenizers` crate in one batch.
        let mut out: Vec<Option<Vec<u32>>> = texts
            .par_iter()
            .with_min_len(64)
            .map(|t| {
                let mut ids = Vec::with_capacity(t.len() / 4 + 1);
                fast.encode(t, self.lowercase, &mut ids).then_some(ids)
            })
            .collect();
        let rest: Vec<usize> = (0..texts.len()).filter(|&i| out[i].is_none()).collect();
        if !rest.is_empty() {
            let slow =
                self.encode_plain_slow(&rest.iter().map(|&i| texts[i]).collect::<Vec<_>>())?;
            for (i, ids) in rest.into_iter().zip(slow) {
                out[i] = Some(ids);
            }
        }
        Ok(out.into_iter().map(Option::unwrap_or_default).collect())
    }

    /// [`TextTokenizer::encode_plain`] through the `tokenizers` crate (`encode_batch_fast`).
    fn encode_plain_slow(&self, texts: &[&str]) -> Result<Vec<Vec<u32>>> {
        let prepared: Vec<std::borrow::Cow<str>> = texts.iter().map(|t| self.prepared(t)).collect();
        let texts: Vec<&str> = prepared.iter().map(|t| t.as_ref()).collect();
        let raw = self
            .inner
            .encode_batch_fast(texts, false)
            .map_err(|e| self.err(e))?;
        Ok(raw.into_iter().map(|e| e.get_ids().to_vec()).collect())
    }

    /// The id of the model's unknown token, as model2vec finds it: `unk_token` of WordPiece,
    /// WordLevel and BPE models that set one, `unk_id` of Unigram models.
    pub fn unk_id(&self) -> Option<u32> {
        use tokenizers::models::ModelWrapper;
        let token = match self.inner.get_model() {
            ModelWrapper::WordPiece(m) => Some(m.unk_token.clone()),
            ModelWrapper::WordLevel(m) => Some(m.unk_token.clone()),
            ModelWrapper::BPE(m) => m.unk_token.clone(),
            // The field is private to the tokenizers crate; its serialized form carries it.
            ModelWrapper::Unigram(m) => {
                return serde_json::to_value(m)
                    .ok()?
                    .get("unk_id")?
                    .as_u64()
                    .and_then(|v| u32::try_from(v).ok())
            }
        };
        token.and_then(|t| self.inner.token_to_id(&t))
    }

    /// model2vec's `median_token_length`: the median of the tokens' lengths in characters
    /// (added tokens included), rounded down.
    pub fn median_token_chars(&self) -> usize {
        let mut lens: Vec<usize> = self
            .inner
            .get_vocab(true)
            .keys()
            .map(|t| t.chars().count())
            .collect();
        if lens.is_empty() {
            return 0;
        }
        lens.sort_unstable();
        let n = lens.len();
        match n % 2 {
            1 => lens[n / 2],
            _ => (lens[n / 2 - 1] + lens[n / 2]) / 2,
        }
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

#[cfg(test)]
mod tests {
    use tokenizers::{TruncationParams, TruncationStrategy};

    use super::*;

    fn fixture(kind: &str) -> std::path::PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../../fixtures/reference/tiny")
            .join(kind)
            .join("tokenizer.json")
    }

    const TEXTS: [&str; 5] = [
        "",
        "hello",
        "hello world, this is a longer sentence with some punctuation!",
        "ünïcödé wörds and 日本語 mixed in",
        "one two three four five six seven eight nine ten eleven twelve",
    ];

    /// Our truncation (encode without special tokens, cut, post-process) gives exactly the ids
    /// of the tokenizers crate's own truncation, at every limit, on both sides.
    #[test]
    fn truncation_matches_the_tokenizers_crate() {
        for kind in ["bert", "xlm-roberta", "mpnet"] {
            let path = fixture(kind);
            let ours = TextTokenizer::load(&path, kind, 0, false).unwrap();
            let texts: Vec<String> = TEXTS.iter().map(|t| t.to_string()).collect();
            for side in [TruncationSide::Right, TruncationSide::Left] {
                for limit in [3, 4, 7, 12, 64] {
                    let mut theirs = Tokenizer::from_file(&path).unwrap();
                    theirs.with_padding(None);
                    theirs
                        .with_truncation(Some(TruncationParams {
                            max_length: limit,
                            strategy: TruncationStrategy::LongestFirst,
                            stride: 0,
                            direction: side.direction(),
                        }))
                        .unwrap();
                    let want = theirs.encode_batch(texts.clone(), true).unwrap();
                    let got = ours.encode(&texts, limit, true, side).unwrap();
                    for (w, g) in want.iter().zip(&got) {
                        assert_eq!(g.ids, w.get_ids(), "{kind} {side:?} limit {limit}");
                        assert_eq!(g.type_ids, w.get_type_ids());
                        assert!(g.ids.len() <= limit);
                    }
                }
            }
        }
    }

    #[test]
    fn too_long_without_truncation_names_the_input() {
        let tok = TextTokenizer::load(&fixture("bert"), "tiny", 0, false).unwrap();
        let texts = vec!["a".to_string(), "a b c d e f g h".to_string()];
        let err = tok
            .encode(&texts, 6, false, TruncationSide::Right)
            .unwrap_err();
        match err {
            Error::InputTooLong {
                index,
                tokens,
                limit,
                ..
            } => {
                assert_eq!((index, tokens, limit), (1, 10, 6));
            }
            other => panic!("unexpected {other}"),
        }
    }

    /// Token ids are taken as given, with the special tokens added and the limit applied
    /// exactly as for the text they came from.
    #[test]
    fn id_inputs_get_the_special_tokens_and_limit_of_text() {
        for kind in ["bert", "xlm-roberta", "mpnet"] {
            let tok = TextTokenizer::load(&fixture(kind), kind, 0, false).unwrap();
            let texts: Vec<String> = TEXTS.iter().map(|t| t.to_string()).collect();
            let rows: Vec<Vec<u32>> = texts.iter().map(|t| tok.content_ids(t).unwrap()).collect();
            for side in [TruncationSide::Right, TruncationSide::Left] {
                for limit in [3, 7, 64] {
                    let want = tok.encode(&texts, limit, true, side).unwrap();
                    let got = tok.encode_ids(&rows, &[], limit, true, side).unwrap();
                    for (w, g) in want.iter().zip(&got) {
                        assert_eq!(g.ids, w.ids, "{kind} {side:?} {limit}");
                        assert_eq!(g.type_ids, w.type_ids);
                    }
                }
            }
            let long = vec![rows[4].clone()];
            let e = tok
                .encode_ids(&long, &[], 5, false, TruncationSide::Right)
                .unwrap_err();
            assert!(matches!(e, Error::InputTooLong { index: 0, .. }), "{e}");
            // A prefix goes first.
            let with = tok
                .encode_ids(&rows[2..3], &rows[1], 64, true, TruncationSide::Right)
                .unwrap();
            let plain = tok
                .encode_ids(&rows[2..3], &[], 64, true, TruncationSide::Right)
                .unwrap();
            assert_eq!(
                with[0].ids.len(),
                plain[0].ids.len() + rows[1].len(),
                "{kind}"
            );
            // After the one leading special token each of these tokenizers adds.
            assert_eq!(with[0].ids[1..1 + rows[1].len()], rows[1][..], "{kind}");
        }
    }

    #[test]
    fn tokens_carry_byte_offsets_into_the_text() {
        for kind in ["bert", "xlm-roberta"] {
            let tok = TextTokenizer::load(&fixture(kind), kind, 0, false).unwrap();
            let text = "héllo wörld";
            let tokens = tok.tokens(text).unwrap();
            assert!(tokens.first().unwrap().special && tokens.last().unwrap().special);
            let inner = &tokens[1..tokens.len() - 1];
            assert!(!inner.is_empty());
            for t in inner {
                let (start, stop) = t.offsets.expect("text tokens have offsets");
                assert!(start < stop && stop <= text.len(), "{t:?}");
                assert_eq!(t.text, &text[start..stop]);
                assert!(!t.special);
            }
            // The text tokens cover the words, in order.
            let covered: String = inner.iter().map(|t| t.text.as_str()).collect();
            assert_eq!(covered.replace(' ', ""), "héllowörld", "{kind}");
        }
    }
}
