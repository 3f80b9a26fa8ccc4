//! A fast path for the ids of plain ASCII text under BERT's WordPiece tokenizer (the tokenizer of
//! model2vec's potion models and of bert-base-uncased), for static models, whose whole cost is
//! tokenization.
//!
//! Hand-written because the `tokenizers` crate builds, for every text, a `NormalizedString` with
//! per-byte alignments, then a `Token` per piece with its own `String` and offsets; a static model
//! needs only the ids, and that bookkeeping is most of its time. Here a text is split and looked
//! up in place, with no allocation per word.
//!
//! It takes only what it reproduces exactly and declines the rest, which then goes through the
//! `tokenizers` crate:
//! - the tokenizer must be a `BertNormalizer` + `BertPreTokenizer` + `WordPiece` one;
//! - the text must be printable ASCII plus `\t`, `\n` and `\r` (so clean-up, accent stripping and
//!   CJK spacing change nothing but case, and whitespace and punctuation are ASCII's);
//! - the text must not contain an added token's content (`[CLS]`, `[MASK]`, …), which the
//!   `tokenizers` crate matches before normalizing.
//!
//! The rules followed are those of `tokenizers`' `BertNormalizer` (lowercase when set),
//! `BertPreTokenizer` (split on whitespace, each punctuation character a word of its own) and
//! `WordPiece::tokenize` (greedy longest match, `##`-style continuations, a word longer than
//! `max_input_chars_per_word` or with no match becomes the unknown token).

use std::collections::HashMap;

use tokenizers::models::ModelWrapper;
use tokenizers::normalizers::NormalizerWrapper;
use tokenizers::pre_tokenizers::PreTokenizerWrapper;
use tokenizers::{Model, Tokenizer};

/// The vocabulary split for lookups by `&str`: word starts, and continuations without their
/// prefix.
#[derive(Debug, Clone)]
pub(crate) struct FastWordPiece {
    starts: HashMap<Box<str>, u32>,
    continuations: HashMap<Box<str>, u32>,
    unk: u32,
    max_chars: usize,
    lowercase: bool,
    /// Added tokens' contents, lowercased: a text containing one is declined.
    added: Vec<String>,
    /// Their first bytes, a cheap test before the search.
    added_first: Vec<u8>,
}

/// Added tokens beyond this many make the containment check cost more than it saves.
const MOST_ADDED: usize = 32;

impl FastWordPiece {
    /// The fast path for `tok`, or `None` when it is not a BERT WordPiece tokenizer.
    pub(crate) fn new(tok: &Tokenizer) -> Option<Self> {
        let lowercase = match tok.get_normalizer()? {
            NormalizerWrapper::BertNormalizer(n) => n.lowercase,
            _ => return None,
        };
        if !matches!(
            tok.get_pre_tokenizer()?,
            PreTokenizerWrapper::BertPreTokenizer(_)
        ) {
            return None;
        }
        let ModelWrapper::WordPiece(wp) = tok.get_model() else {
            return None;
        };
        let prefix = wp.continuing_subword_prefix.as_str();
        let mut starts = HashMap::new();
        let mut continuations = HashMap::new();
        for (token, id) in wp.get_vocab() {
            // An entry spelled with the prefix is looked up only as a continuation (the
            // `tokenizers` crate prepends the prefix to every piece after the first).
            match token.strip_prefix(prefix).filter(|_| !prefix.is_empty()) {
                Some(rest) => continuations.insert(rest.into(), id),
                None => None,
            };
            starts.insert(token.into_boxed_str(), id);
        }
        let unk = *starts.get(wp.unk_token.as_str())?;
        let added: Vec<String> = tok
            .get_added_tokens_decoder()
            .values()
            .map(|t| t.content.to_lowercase())
            // A text this path takes is ASCII, so it never holds a non-ASCII token.
            .filter(|c| !c.is_empty() && c.is_ascii())
            .collect();
        if added.len() > MOST_ADDED {
            return None;
        }
        let added_first = added.iter().map(|a| a.as_bytes()[0]).collect();
        Some(Self {
            starts,
            continuations,
            unk,
            max_chars: wp.max_input_chars_per_word,
            lowercase,
            added,
            added_first,
        })
    }

    /// Appends the ids of `text` (no special tokens) to `out`, lowercasing first when `lower`
    /// (sentence-transformers' `do_lower_case`) or the normalizer says so. `false`, with `out`
    /// untouched, when the text is not one this path reproduces exactly.
    pub(crate) fn encode(&self, text: &str, lower: bool, out: &mut Vec<u32>) -> bool {
        let bytes = text.as_bytes();
        if !bytes
            .iter()
            .all(|&b| (0x20..0x7f).contains(&b) || matches!(b, b'\t' | b'\n' | b'\r'))
        {
            return false;
        }
        let lower = lower || self.lowercase;
        // Added tokens match before normalization, with or without case: a text that could hold
        // one (lowercased, it contains a lowercased added token) is declined.
        if bytes
            .iter()
            .any(|b| self.added_first.contains(&b.to_ascii_lowercase()))
        {
            let hay = text.to_ascii_lowercase();
            if self.added.iter().any(|a| hay.contains(a.as_str())) {
                return false;
            }
        }
        let mut word = [0u8; 256];
        let mut start = 0;
        let mut i = 0;
        while i <= bytes.len() {
            let b = bytes.get(i).copied();
            let boundary = match b {
                None => true,
                Some(c) => c.is_ascii_whitespace() || c.is_ascii_punctuation(),
            };
            if boundary {
                if i > start {
                    self.word(&bytes[start..i], lower, &mut word, out);
                }
                if let Some(c) = b.filter(u8::is_ascii_punctuation) {
                    self.word(&[c], lower, &mut word, out);
                }
                start = i + 1;
            }
            i += 1;
        }
        true
    }

    /// The pieces of one word (ASCII, no whitespace) into `out`.
    fn word(&self, raw: &[u8], lower: bool, buf: &mut [u8; 256], out: &mut Vec<u32>) {
        if raw.len() > self.max_chars {
            out.push(self.unk);
            return;
        }
        let owned;
        let w: &[u8] = if raw.len() <= buf.len() {
            let buf = &mut buf[..raw.len()];
            buf.copy_from_slice(raw);
            if lower {
                buf.make_ascii_lowercase();
            }
            buf
        } else {
            owned = match lower {
                true => raw.to_ascii_lowercase(),
                false => raw.to_vec(),
            };
            &owned
        };
        // ASCII throughout, so every byte index is a character boundary.
        let w = std::str::from_utf8(w).unwrap_or_default();
        let mark = out.len();
        let mut start = 0;
        while start < w.len() {
            let table = match start {
                0 => &self.starts,
                _ => &self.continuations,
            };
            let found = (start + 1..=w.len())
                .rev()
                .find_map(|end| table.get(&w[start..end]).map(|&id| (id, end)));
            match found {
                Some((id, end)) => {
                    out.push(id);
                    start = end;
                }
                None => {
                    out.truncate(mark);
                    out.push(self.unk);
                    return;
                }
            }
        }
    }
}
