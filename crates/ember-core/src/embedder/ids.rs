//! Token-id inputs (OpenAI's `input` as arrays of ids): the ids go to the encoder as they
//! are, prepared by the same prompt, instruction, special-token and limit rules as texts.

use super::{Backbone, EmbedOptions, Embedder};
use crate::error::{Error, Result};
use crate::tokenize::{Encoded, TruncationSide};

impl Embedder {
    /// Checks `opts` and prepares token-id inputs as [`Embedder::tokenize`] prepares texts: the
    /// ids are the model's own, taken as they are (never decoded and re-encoded), with the
    /// prompt's (or instruction's) tokens before them and the model's special tokens added as
    /// for text (TEI's, vLLM's and llama.cpp's convention), then truncated (or refused) at the
    /// limit. Prompt tokens are left out of pooling by the same rules as for text. A static
    /// (model2vec) model gets no special tokens and drops its unknown-token ids, as for text. An
    /// id outside the vocabulary is an error naming the input and the id.
    pub fn tokenize_ids(&self, rows: &[Vec<u32>], opts: &EmbedOptions) -> Result<Vec<Encoded>> {
        self.check_options(opts)?;
        for (i, ids) in rows.iter().enumerate() {
            if let Some(&bad) = ids.iter().find(|&&id| id as usize >= self.info.vocab_size) {
                return Err(Error::invalid(
                    format!("input[{i}]"),
                    format!(
                        "token id {bad} is outside the vocabulary of model `{}` ({} tokens)",
                        self.info.id, self.info.vocab_size
                    ),
                ));
            }
        }
        let limit = opts.max_length.map_or(self.info.max_seq_length, |m| {
            m.min(self.info.max_seq_length)
        });
        let prompt = self.resolved_prompt(opts)?;
        let instruction = match &opts.instruction {
            Some(i) => Some(i.trim().to_string()),
            None if self.info.prompts_are_instructions => prompt.as_ref().map(|p| p.trim().into()),
            None => None,
        };
        if let Backbone::Static(m) = &self.backbone {
            let prefix = match instruction.or(prompt) {
                Some(p) => self.tokenizer.content_ids(&p)?,
                None => Vec::new(),
            };
            return self.static_ids(m, rows, &prefix, limit, opts.truncate);
        }
        // The prefix's tokens a pooling rule leaves out: those of the prefix encoded alone,
        // minus its trailing special token (as `tokenize` counts them for text).
        let skipped = |prefix: &[u32]| -> Result<usize> {
            let own = self.tokenizer.encode_ids(
                &[prefix.to_vec()],
                &[],
                limit,
                true,
                TruncationSide::Right,
            )?;
            Ok(own.first().map_or(0, |e| e.ids.len().saturating_sub(1)))
        };
        let (prefix, skip) = match (instruction, prompt) {
            (Some(inst), _) => {
                let prefix = self.tokenizer.content_ids(&inst)?;
                let skip = skipped(&prefix)?;
                (prefix, if skip <= 1 { 0 } else { skip })
            }
            (None, Some(p)) => {
                let prefix = self.tokenizer.content_ids(&p)?;
                let skip = if self.include_prompt {
                    0
                } else {
                    skipped(&prefix)?
                };
                (prefix, skip)
            }
            (None, None) => (Vec::new(), 0),
        };
        let mut encoded =
            self.tokenizer
                .encode_ids(rows, &prefix, limit, opts.truncate, opts.truncation_side)?;
        encoded.iter_mut().for_each(|e| e.pool_skip = skip);
        Ok(encoded)
    }

    /// Token-id inputs of a static model, as [`Embedder::tokenize_static`] treats texts: no
    /// special tokens, cut to (or refused over) `limit` ids, unknown-token ids dropped.
    fn static_ids(
        &self,
        m: &crate::models::static_embed::StaticModel,
        rows: &[Vec<u32>],
        prefix: &[u32],
        limit: usize,
        truncate: bool,
    ) -> Result<Vec<Encoded>> {
        rows.iter()
            .enumerate()
            .map(|(index, row)| {
                let ids = prefix.iter().chain(row).copied().collect();
                self.static_row(m, index, ids, limit, truncate)
            })
            .collect()
    }

    /// Input `index` of a static model from its ids: cut to `limit` when `truncate` (model2vec
    /// cuts in the tokenizer, before the unknown tokens go), else refused when it has more than
    /// `limit` known ids; then the unknown-token ids dropped.
    pub(super) fn static_row(
        &self,
        m: &crate::models::static_embed::StaticModel,
        index: usize,
        mut ids: Vec<u32>,
        limit: usize,
        truncate: bool,
    ) -> Result<Encoded> {
        match truncate {
            true => ids.truncate(limit),
            false => {
                let known = ids.iter().filter(|&&id| Some(id) != m.unk()).count();
                if known > limit {
                    return Err(Error::InputTooLong {
                        model: self.info.id.clone(),
                        index,
                        tokens: known,
                        limit,
                    });
                }
            }
        }
        if let Some(unk) = m.unk() {
            ids.retain(|&id| id != unk);
        }
        Ok(Encoded {
            type_ids: Vec::new(),
            ids,
            pool_skip: 0,
        })
    }
}
