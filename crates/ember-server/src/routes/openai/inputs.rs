//! OpenAI's `input`: a string, a list of strings, a list of token ids or a list of token-id
//! lists, checked against the server's limits.
//!
//! Token ids are the served model's own by default and go to the encoder as they are, with the
//! model's special tokens added as for text (the convention of TEI, vLLM and llama.cpp): they
//! are never decoded and re-encoded, which would change them. With `--openai-token-ids
//! cl100k_base` (or `o200k_base`) they are OpenAI tokenizer ids instead, as LangChain's
//! `OpenAIEmbeddings` sends them by default: decoded to text with that encoding (bundled, no
//! download), then tokenized for the served model like any text.

use serde_json::Value;

use crate::engine::Inputs;
use crate::error::{ApiError, ApiErrorKind};
use crate::routes::shared;
use crate::settings::TokenIds;
use crate::Limits;

/// `input` as the job's inputs, within `limits`; token ids read as `token_ids` says.
pub(super) fn read(input: Value, limits: &Limits, token_ids: TokenIds) -> Result<Inputs, ApiError> {
    let items = match input {
        Value::Array(items) => items,
        other => return shared::parse_texts(other, "input", limits).map(Inputs::Texts),
    };
    let rows: Vec<Vec<u32>> = match items.first() {
        None => {
            return Err(ApiError::new(
                ApiErrorKind::Empty,
                "`input` is an empty list; send at least one string",
            )
            .with_field("input"))
        }
        Some(Value::Number(_)) => vec![items
            .iter()
            .enumerate()
            .map(|(j, v)| token_id(v, &format!("input[{j}]")))
            .collect::<Result<_, _>>()?],
        Some(Value::Array(_)) => items
            .iter()
            .enumerate()
            .map(|(i, row)| match row {
                Value::Array(ids) if ids.is_empty() => Err(ApiError::invalid_field(
                    format!("input[{i}]"),
                    format!("`input[{i}]` is an empty token list"),
                )),
                Value::Array(ids) => ids
                    .iter()
                    .enumerate()
                    .map(|(j, v)| token_id(v, &format!("input[{i}][{j}]")))
                    .collect(),
                other => Err(ApiError::invalid_field(
                    format!("input[{i}]"),
                    format!(
                        "`input[{i}]` must be a list of token ids like the other inputs, got {}",
                        shared::type_name(other)
                    ),
                )),
            })
            .collect::<Result<_, _>>()?,
        Some(_) => {
            return shared::parse_texts(Value::Array(items), "input", limits).map(Inputs::Texts)
        }
    };
    // Bounded before any decoding, one character per id.
    let sizes = rows.iter().map(Vec::len);
    shared::check_counts(sizes, rows.len(), "input", "token ids", limits)?;
    match token_ids {
        TokenIds::Model => Ok(Inputs::Ids(rows)),
        TokenIds::Cl100kBase => decoded(
            &rows,
            tiktoken_rs::cl100k_base_singleton(),
            token_ids,
            limits,
        ),
        TokenIds::O200kBase => decoded(
            &rows,
            tiktoken_rs::o200k_base_singleton(),
            token_ids,
            limits,
        ),
    }
}

/// A token id at `at`, or an error naming where it is.
fn token_id(v: &Value, at: &str) -> Result<u32, ApiError> {
    v.as_u64()
        .and_then(|n| u32::try_from(n).ok())
        .ok_or_else(|| {
            ApiError::invalid_field(
                at.to_string(),
                format!(
                    "`{at}` must be a token id (a non-negative integer), got {}",
                    shared::type_name(v)
                ),
            )
        })
}

/// The texts of OpenAI tokenizer ids (`encoding` is `which`), checked as texts.
fn decoded(
    rows: &[Vec<u32>],
    encoding: &tiktoken_rs::CoreBPE,
    which: TokenIds,
    limits: &Limits,
) -> Result<Inputs, ApiError> {
    let texts = rows
        .iter()
        .enumerate()
        .map(|(i, ids)| {
            let bytes = encoding.decode_bytes(ids).map_err(|e| {
                ApiError::invalid_field(
                    format!("input[{i}]"),
                    format!(
                        "token id {} of `input[{i}]` is not in {which} (--openai-token-ids)",
                        e.token
                    ),
                )
            })?;
            // A list cut inside a character decodes to a replacement character, as OpenAI's
            // own decoding does.
            Ok(String::from_utf8_lossy(&bytes).into_owned())
        })
        .collect::<Result<Vec<_>, ApiError>>()?;
    shared::check_texts(&texts, "input", limits)?;
    Ok(Inputs::Texts(texts))
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn cl100k_ids_decode_to_their_text() {
        // "hello world" in cl100k_base.
        let ids = tiktoken_rs::cl100k_base_singleton().encode_ordinary("hello world");
        let got = read(json!([ids]), &Limits::default(), TokenIds::Cl100kBase).unwrap();
        match got {
            Inputs::Texts(t) => assert_eq!(t, ["hello world"]),
            other => panic!("{other:?}"),
        }
        let e = read(
            json!([[u32::MAX - 1]]),
            &Limits::default(),
            TokenIds::O200kBase,
        )
        .unwrap_err();
        assert!(e.message.contains("o200k_base"), "{}", e.message);
        assert_eq!(e.field.as_deref(), Some("input[0]"));
    }

    #[test]
    fn model_ids_are_kept_as_they_are() {
        match read(json!([5, 6, 7]), &Limits::default(), TokenIds::Model).unwrap() {
            Inputs::Ids(rows) => assert_eq!(rows, [[5, 6, 7]]),
            other => panic!("{other:?}"),
        }
    }
}
