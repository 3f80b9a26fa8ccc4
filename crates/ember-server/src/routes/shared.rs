//! Request parsing and response pieces every dialect shares: inputs checked against the limits,
//! dtype and keep-alive fields, base64 vectors, output precision and TEI-style timing headers;
//! and the OpenAPI schemas of the fields parsed by hand (held as `serde_json::Value` so their
//! errors can name the item at fault).

use axum::http::{HeaderMap, HeaderName, HeaderValue};
use base64::Engine as _;
use ember_core::manager::{Lease, Target};
use ember_core::precision::{quantize, Precision, Quantized};
use ember_core::{DType, Embeddings, InputType, KeepAlive};
use serde::Serialize;
use serde_json::Value;
use utoipa::openapi::schema::{AnyOfBuilder, ArrayBuilder, ObjectBuilder, Schema, Type};
use utoipa::openapi::RefOr;

use crate::engine::EmbedOutput;
use crate::error::{ApiError, ApiErrorKind};
use crate::{AppState, Limits};

/// A JSON type name for error messages.
pub fn type_name(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "a list",
        Value::Object(_) => "an object",
    }
}

/// Checks `input` (named `field` in messages) is a string or a non-empty list of strings within
/// the server's limits on inputs per request and characters per input.
pub fn parse_texts(input: Value, field: &str, limits: &Limits) -> Result<Vec<String>, ApiError> {
    let texts = match input {
        Value::String(s) => vec![s],
        Value::Array(items) => {
            if items.is_empty() {
                return Err(ApiError::new(
                    ApiErrorKind::Empty,
                    format!("`{field}` is an empty list; send at least one string"),
                )
                .with_field(field.to_string()));
            }
            items
                .into_iter()
                .enumerate()
                .map(|(i, v)| match v {
                    Value::String(s) => Ok(s),
                    other => Err(ApiError::invalid_field(
                        format!("{field}[{i}]"),
                        format!("`{field}[{i}]` must be a string, got {}", type_name(&other)),
                    )),
                })
                .collect::<Result<Vec<_>, _>>()?
        }
        other => {
            return Err(ApiError::invalid_field(
                field.to_string(),
                format!(
                    "`{field}` must be a string or a list of strings, got {}",
                    type_name(&other)
                ),
            ))
        }
    };
    check_texts(&texts, field, limits)?;
    Ok(texts)
}

/// Enforces the limits on inputs per request, characters per input and characters per request.
pub fn check_texts(texts: &[String], field: &str, limits: &Limits) -> Result<(), ApiError> {
    check_counts(
        texts.iter().map(|t| t.chars().count()),
        texts.len(),
        field,
        "characters",
        limits,
    )
}

/// The limits for `n` inputs whose sizes are `sizes` (characters, or token ids counted as one
/// character each: a token decodes to at least one).
pub fn check_counts(
    sizes: impl Iterator<Item = usize>,
    n: usize,
    field: &str,
    unit: &str,
    limits: &Limits,
) -> Result<(), ApiError> {
    if n > limits.max_client_batch {
        return Err(ApiError::too_many_inputs(field, n, limits.max_client_batch));
    }
    let too_large = |message: String| {
        ApiError::new(ApiErrorKind::InputTooLong, message).with_field(field.to_string())
    };
    let max = limits.max_input_chars;
    let mut total = 0usize;
    for (i, size) in sizes.enumerate() {
        if size > max {
            return Err(too_large(format!(
                "`{field}[{i}]` has {size} {unit}; this server accepts at most {max} per input"
            )));
        }
        total = total.saturating_add(size);
    }
    if total > limits.max_total_chars {
        return Err(too_large(format!(
            "`{field}` has {total} {unit} in all; this server accepts at most {} per request",
            limits.max_total_chars
        )));
    }
    Ok(())
}

/// Parses an optional `dtype` field.
pub fn parse_dtype(dtype: Option<&str>) -> Result<Option<DType>, ApiError> {
    dtype
        .map(|d| d.parse::<DType>().map_err(ApiError::from))
        .transpose()
}

/// Parses `keep_alive` given as a duration string (`"5m"`, `"-1"`) or a number of seconds.
pub fn parse_keep_alive(v: Option<&Value>) -> Result<Option<KeepAlive>, ApiError> {
    match v {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.parse()?)),
        Some(Value::Number(n)) => KeepAlive::from_secs_f64(n.as_f64().unwrap_or(f64::NAN))
            .map(Some)
            // Named as sent (`1e300`), not as a 300-digit decimal.
            .map_err(|_| {
                ApiError::invalid_field("keep_alive", format!(
                    "`keep_alive` {n} seconds is out of range; use a duration like \"5m\", or -1 to keep the model loaded"
                ))
            }),
        Some(other) => Err(ApiError::invalid_field("keep_alive", format!(
            "`keep_alive` must be a duration like \"5m\" or a number of seconds, got {}",
            type_name(other)
        ))),
    }
}

/// A lease on `target`'s model, loading it off the async runtime if needed. Hold it only
/// briefly: it keeps the model from being released.
pub async fn lease(state: &AppState, target: &Target) -> Result<Lease, ApiError> {
    let manager = state.manager.clone();
    let key = target.key.clone();
    tokio::task::spawn_blocking(move || manager.lease_key(&key))
        .await
        .map_err(|e| ApiError::internal(format!("model load task failed: {e}")))?
        .map_err(ApiError::from)
}

/// Parses an optional `input_type` (`query`, `document` or `passage`) into core's
/// [`InputType`], whose prompt the model applies (the rule the Python API uses too).
pub fn parse_input_type(input_type: Option<&str>) -> Result<Option<InputType>, ApiError> {
    Ok(input_type.map(str::parse::<InputType>).transpose()?)
}

/// A request's `input_type`, which picks a prompt, when it names no `prompt_name` as well (both
/// at once is a 400 naming `input_type`).
pub fn parse_prompt_choice(
    input_type: Option<&str>,
    prompt_name: Option<&str>,
) -> Result<Option<InputType>, ApiError> {
    if input_type.is_some() && prompt_name.is_some() {
        return Err(ApiError::invalid_field(
            "input_type",
            "pass either `input_type` or `prompt_name`, not both",
        ));
    }
    parse_input_type(input_type)
}

/// Little-endian bytes of `v`, base64-encoded (OpenAI's `encoding_format: "base64"`).
pub fn base64_f32(v: &[f32]) -> String {
    let bytes: Vec<u8> = v.iter().flat_map(|x| x.to_le_bytes()).collect();
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

/// One output vector: floats, integers (quantized precisions) or base64 of the raw values.
#[derive(Debug, Clone, Serialize)]
#[serde(untagged)]
pub enum Vector {
    Float(Vec<f32>),
    Int(Vec<i16>),
    Base64(String),
}

fn string() -> ObjectBuilder {
    ObjectBuilder::new().schema_type(Type::String)
}

fn array_of(item: impl Into<RefOr<Schema>>, min_items: usize) -> ArrayBuilder {
    ArrayBuilder::new()
        .items(item.into())
        .min_items(Some(min_items))
}

fn token_id() -> ObjectBuilder {
    ObjectBuilder::new()
        .schema_type(Type::Integer)
        .minimum(Some(0))
}

// anyOf rather than oneOf: an integer vector is also a list of numbers.
impl utoipa::PartialSchema for Vector {
    fn schema() -> RefOr<Schema> {
        AnyOfBuilder::new()
            .item(array_of(ObjectBuilder::new().schema_type(Type::Number), 0))
            .item(array_of(ObjectBuilder::new().schema_type(Type::Integer), 0))
            .item(string())
            .description(Some(
                "Floats, integers (int8/uint8/binary/ubinary precisions) or a base64 string",
            ))
            .into()
    }
}

impl utoipa::ToSchema for Vector {}

/// OpenAPI schema of an `input` / `inputs` field: a string or a non-empty list of strings.
#[derive(Debug)]
pub struct TextInput;

impl utoipa::PartialSchema for TextInput {
    fn schema() -> RefOr<Schema> {
        AnyOfBuilder::new()
            .item(string())
            .item(array_of(string(), 1))
            .description(Some("A string or a list of strings"))
            .into()
    }
}

impl utoipa::ToSchema for TextInput {}

/// OpenAPI schema of Ollama's `input`: a string or a list of strings, either possibly empty.
#[derive(Debug)]
pub struct OllamaInput;

impl utoipa::PartialSchema for OllamaInput {
    fn schema() -> RefOr<Schema> {
        AnyOfBuilder::new()
            .item(string())
            .item(array_of(string(), 0))
            .description(Some(
                "A string or a list of strings (empty: no vectors, as Ollama answers)",
            ))
            .into()
    }
}

impl utoipa::ToSchema for OllamaInput {}

/// OpenAPI schema of OpenAI's `input`: strings, or token ids (one list, or a list of lists).
#[derive(Debug)]
pub struct OpenAiInput;

impl utoipa::PartialSchema for OpenAiInput {
    fn schema() -> RefOr<Schema> {
        AnyOfBuilder::new()
            .item(string())
            .item(array_of(string(), 1))
            .item(array_of(token_id(), 1))
            .item(array_of(array_of(token_id(), 1), 1))
            .description(Some(
                "A string, a list of strings, a list of token ids or a list of token-id lists",
            ))
            .into()
    }
}

impl utoipa::ToSchema for OpenAiInput {}

/// OpenAPI schemas of string fields that take one of a few names (doc-only types).
macro_rules! names {
    ($($(#[$doc:meta])* $ty:ident = [$($v:literal),+];)+) => {$(
        $(#[$doc])*
        #[derive(Debug)]
        pub struct $ty;

        impl utoipa::PartialSchema for $ty {
            fn schema() -> RefOr<Schema> {
                string().enum_values(Some([$($v),+])).into()
            }
        }

        impl utoipa::ToSchema for $ty {}
    )+};
}

names! {
    /// A weight dtype.
    DTypeName = ["fp32", "fp16", "bf16", "int8"];
    /// An output precision.
    PrecisionName = ["float32", "int8", "uint8", "binary", "ubinary"];
    /// How vectors are encoded in the response.
    EncodingName = ["float", "base64"];
    /// Which of the model's prompts to apply.
    InputTypeName = ["query", "document"];
}

/// OpenAPI schema of `keep_alive`: a duration string (`"5m"`, `"-1"`) or a number of seconds.
#[derive(Debug)]
pub struct KeepAliveValue;

impl utoipa::PartialSchema for KeepAliveValue {
    fn schema() -> RefOr<Schema> {
        AnyOfBuilder::new()
            .item(string())
            .item(ObjectBuilder::new().schema_type(Type::Number))
            .description(Some(
                "A duration like \"5m\", \"1h30m\" or \"-1\" (forever), or a number of seconds",
            ))
            .into()
    }
}

impl utoipa::ToSchema for KeepAliveValue {}

/// Parses `encoding_format` (`float` or `base64`; default float).
pub fn parse_encoding(format: Option<&str>) -> Result<bool, ApiError> {
    match format {
        None | Some("float") => Ok(false),
        Some("base64") => Ok(true),
        Some(other) => Err(ApiError::invalid_field(
            "encoding_format",
            format!("unknown `encoding_format` `{other}`; use `float` or `base64`"),
        )),
    }
}

/// The vectors of `e` in `precision`, as floats/ints or base64 (little-endian f32 for float32,
/// the raw bytes for the quantized precisions).
pub fn vectors(
    e: &Embeddings,
    precision: Precision,
    base64: bool,
) -> Result<Vec<Vector>, ApiError> {
    let width = precision.width(e.dimension);
    let q = if precision == Precision::Float32 {
        Quantized::Float32(Vec::new())
    } else {
        quantize(&e.data, e.dimension, precision, None)?
    };
    let b64 = |bytes: &[u8]| base64::engine::general_purpose::STANDARD.encode(bytes);
    Ok((0..e.rows)
        .map(|r| match (&q, base64) {
            (Quantized::Float32(_), false) => Vector::Float(e.row(r).to_vec()),
            (Quantized::Float32(_), true) => Vector::Base64(base64_f32(e.row(r))),
            (Quantized::Int8(v), false) => Vector::Int(
                v[r * width..(r + 1) * width]
                    .iter()
                    .map(|&x| x.into())
                    .collect(),
            ),
            (Quantized::Int8(v), true) => Vector::Base64(b64(&v[r * width..(r + 1) * width]
                .iter()
                .map(|&x| x.to_le_bytes()[0])
                .collect::<Vec<_>>())),
            (Quantized::Uint8(v), false) => Vector::Int(
                v[r * width..(r + 1) * width]
                    .iter()
                    .map(|&x| x.into())
                    .collect(),
            ),
            (Quantized::Uint8(v), true) => Vector::Base64(b64(&v[r * width..(r + 1) * width])),
        })
        .collect())
}

/// TEI's timing headers (milliseconds) plus the model that answered.
pub fn timing_headers(out: &EmbedOutput) -> HeaderMap {
    let t = &out.timings;
    let mut h = HeaderMap::new();
    let ms = |d: std::time::Duration| d.as_secs_f64() * 1e3;
    for (name, value) in [
        ("x-queue-time", ms(t.queue)),
        ("x-tokenization-time", ms(t.tokenize)),
        ("x-inference-time", ms(t.inference)),
        ("x-load-time", ms(t.load)),
        ("x-total-time", ms(t.total)),
    ] {
        if let Ok(v) = HeaderValue::from_str(&format!("{value:.3}")) {
            h.insert(HeaderName::from_static(name), v);
        }
    }
    if let Ok(v) = HeaderValue::from_str(&out.embeddings.model) {
        h.insert(HeaderName::from_static("x-model-id"), v);
    }
    h.insert(
        HeaderName::from_static("x-compute-tokens"),
        HeaderValue::from(out.embeddings.prompt_tokens),
    );
    h
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64_is_little_endian_f32() {
        assert_eq!(base64_f32(&[1.0]), "AACAPw==");
    }
}
