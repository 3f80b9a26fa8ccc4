//! TEI's routes for models with a head: `POST /rerank` (a cross-encoder's scores of one query
//! against texts, sorted), `POST /predict` (a classifier's scores per label) and
//! `POST /embed_sparse` (SPLADE vectors as `{index, value}` lists). As in the rest of TEI's
//! routes, a body may name a `model`; the kind is checked before anything loads.

use axum::extract::State;
use ember_core::{PredictInput, RerankOptions, SparseOptions};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::ToSchema;

use super::{truncation_side, Error, Tei};
use crate::error::ApiError;
use crate::json::Json;
use crate::routes::shared::{self, type_name};
use crate::tasks::{parse_documents, Task};
use crate::AppState;

/// Body of `POST /rerank`.
#[derive(Debug, Deserialize, ToSchema)]
#[schema(as = TeiRerankRequest)]
pub struct RerankRequest {
    pub query: String,
    /// The texts to rank against `query`.
    #[schema(value_type = Vec<String>)]
    pub texts: Value,
    /// Ember extension: the reranker to use (the default model when absent).
    #[serde(default)]
    pub model: Option<String>,
    /// Logits without the model's activation (default false).
    #[serde(default)]
    pub raw_scores: bool,
    /// Include each text in its result (default false).
    #[serde(default)]
    pub return_text: bool,
    /// Cut pairs over the model's limit, the text first (default true).
    #[serde(default)]
    pub truncate: Option<bool>,
    /// `Right` (default) or `Left`.
    #[serde(default)]
    pub truncation_direction: Option<String>,
}

/// One text's place in the ranking.
#[derive(Debug, Serialize, ToSchema)]
#[schema(as = TeiRank)]
pub struct Rank {
    pub index: usize,
    pub score: f32,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub text: Option<String>,
}

/// Ranks `texts` by relevance to `query`, best first.
#[utoipa::path(post, operation_id = "tei_rerank", path = "/rerank", tag = "tei", request_body = RerankRequest,
    responses((status = 200, body = Vec<Rank>), (status = 400), (status = 404), (status = 413)))]
pub async fn rerank(
    State(state): State<AppState>,
    Json(req, _): Json<RerankRequest, Tei>,
) -> Result<axum::Json<Vec<Rank>>, Error> {
    let texts = parse_documents(req.texts, "texts", &state.limits)?;
    let opts = RerankOptions {
        raw_scores: req.raw_scores,
        truncate: req.truncate.unwrap_or(true),
        truncation_side: truncation_side(req.truncation_direction.as_deref())?,
        ..RerankOptions::default()
    };
    let target = state.target(req.model.as_deref(), None)?;
    let (query, docs) = (req.query, texts.clone());
    let ranked = state
        .run_task(&target, Task::Rerank, move |m| {
            m.rerank(&query, &docs, &opts)
        })
        .await?;
    Ok(axum::Json(
        ranked
            .results
            .iter()
            .map(|r| Rank {
                index: r.index,
                score: r.score,
                text: req.return_text.then(|| texts[r.index].clone()),
            })
            .collect(),
    ))
}

/// Body of `POST /predict`.
#[derive(Debug, Deserialize, ToSchema)]
#[schema(as = TeiPredictRequest)]
pub struct PredictRequest {
    /// A text, a `[text]` or `[text, text]` pair, or a list of those.
    #[schema(value_type = Value)]
    pub inputs: Value,
    #[serde(default)]
    pub model: Option<String>,
    #[serde(default)]
    pub raw_scores: bool,
    #[serde(default)]
    pub truncate: Option<bool>,
}

/// One label's score.
#[derive(Debug, Serialize, ToSchema)]
#[schema(as = TeiPrediction)]
pub struct Prediction {
    pub score: f32,
    pub label: String,
}

/// One `/predict` input: a string, or a list of one or two strings.
fn sequence(v: Value, field: &str) -> Result<PredictInput, ApiError> {
    let bad = |got: &str| {
        ApiError::invalid_field(
            field.to_string(),
            format!("`{field}` must be a text or a [text, text] pair, got {got}"),
        )
    };
    match v {
        Value::String(s) => Ok(PredictInput::Single(s)),
        Value::Array(items) => {
            let texts: Vec<String> = items
                .into_iter()
                .map(|t| match t {
                    Value::String(s) => Ok(s),
                    other => Err(bad(&format!("a list holding {}", type_name(&other)))),
                })
                .collect::<Result<_, _>>()?;
            match <[String; 2]>::try_from(texts) {
                Ok([a, b]) => Ok(PredictInput::Pair(a, b)),
                Err(texts) if texts.len() == 1 => Ok(PredictInput::Single(texts[0].clone())),
                Err(texts) => Err(bad(&format!("a list of {} texts", texts.len()))),
            }
        }
        other => Err(bad(type_name(&other))),
    }
}

/// `/predict`'s inputs and whether they were one input (TEI answers one list then).
fn predict_inputs(v: Value, limits: &crate::Limits) -> Result<(Vec<PredictInput>, bool), ApiError> {
    let batch = matches!(&v, Value::Array(items) if items.iter().any(Value::is_array));
    let inputs = match (v, batch) {
        (Value::Array(items), true) => items
            .into_iter()
            .enumerate()
            .map(|(i, s)| sequence(s, &format!("inputs[{i}]")))
            .collect::<Result<Vec<_>, _>>()?,
        (v, _) => vec![sequence(v, "inputs")?],
    };
    let sizes = inputs.iter().map(|i| match i {
        PredictInput::Single(s) => s.chars().count(),
        PredictInput::Pair(a, b) => a.chars().count() + b.chars().count(),
    });
    shared::check_counts(sizes, inputs.len(), "inputs", "characters", limits)?;
    Ok((inputs, !batch))
}

/// Scores of each input per label, highest first: one list for one input, a list per input
/// for several.
#[utoipa::path(post, operation_id = "tei_predict", path = "/predict", tag = "tei", request_body = PredictRequest,
    responses((status = 200, body = Vec<Prediction>, description = "One list per input (a single list for one input)"),
        (status = 400), (status = 404), (status = 413)))]
pub async fn predict(
    State(state): State<AppState>,
    Json(req, _): Json<PredictRequest, Tei>,
) -> Result<axum::Json<Value>, Error> {
    let (inputs, single) = predict_inputs(req.inputs, &state.limits)?;
    let opts = RerankOptions {
        raw_scores: req.raw_scores,
        truncate: req.truncate.unwrap_or(true),
        ..RerankOptions::default()
    };
    let target = state.target(req.model.as_deref(), None)?;
    let scores = state
        .run_task(&target, Task::Predict, move |m| m.predict(&inputs, &opts))
        .await?;
    let label = |j: usize| {
        scores
            .labels
            .get(j)
            .cloned()
            .unwrap_or_else(|| format!("LABEL_{j}"))
    };
    let rows: Vec<Vec<Prediction>> = (0..scores.scores.len() / scores.num_labels.max(1))
        .map(|i| {
            let mut row: Vec<Prediction> = scores
                .row(i)
                .iter()
                .enumerate()
                .map(|(j, &score)| Prediction {
                    score,
                    label: label(j),
                })
                .collect();
            row.sort_by(|a, b| b.score.total_cmp(&a.score));
            row
        })
        .collect();
    let out = match single {
        true => serde_json::to_value(&rows[0]),
        false => serde_json::to_value(&rows),
    };
    out.map(axum::Json)
        .map_err(|e| ApiError::internal(format!("cannot serialize predictions: {e}")).into())
}

/// Body of `POST /embed_sparse`.
#[derive(Debug, Deserialize, ToSchema)]
#[schema(as = TeiSparseRequest)]
pub struct SparseRequest {
    /// A string or a list of strings.
    #[schema(value_type = shared::TextInput, inline)]
    pub inputs: Value,
    #[serde(default)]
    pub model: Option<String>,
    #[serde(default)]
    pub truncate: Option<bool>,
    #[serde(default)]
    pub truncation_direction: Option<String>,
}

/// One nonzero entry of a sparse vector.
#[derive(Debug, Serialize, ToSchema)]
#[schema(as = TeiSparseValue)]
pub struct SparseValue {
    pub index: u32,
    pub value: f32,
}

/// SPLADE vectors of `inputs` (the document side), their nonzero entries by increasing index.
#[utoipa::path(post, operation_id = "tei_embed_sparse", path = "/embed_sparse", tag = "tei", request_body = SparseRequest,
    responses((status = 200, body = Vec<Vec<SparseValue>>), (status = 400), (status = 404), (status = 413)))]
pub async fn embed_sparse(
    State(state): State<AppState>,
    Json(req, _): Json<SparseRequest, Tei>,
) -> Result<axum::Json<Vec<Vec<SparseValue>>>, Error> {
    let texts = shared::parse_texts(req.inputs, "inputs", &state.limits)?;
    let opts = SparseOptions {
        truncate: req.truncate.unwrap_or(true),
        truncation_side: truncation_side(req.truncation_direction.as_deref())?,
        ..SparseOptions::default()
    };
    let target = state.target(req.model.as_deref(), None)?;
    let out = state
        .run_task(&target, Task::Sparse, move |m| {
            m.embed_sparse(&texts, &opts)
        })
        .await?;
    Ok(axum::Json(
        out.vectors
            .iter()
            .map(|v| {
                v.indices
                    .iter()
                    .zip(&v.values)
                    .map(|(&index, &value)| SparseValue { index, value })
                    .collect()
            })
            .collect(),
    ))
}
