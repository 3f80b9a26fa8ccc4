//! Sequence-classification heads: what turns a cross-encoder's last hidden state into scores.
//!
//! The heads transformers puts on its encoders, read from the same checkpoint names:
//! - `BertForSequenceClassification` (`modeling_bert.py`, `BertPooler` + `classifier`): the first
//!   token through `pooler.dense` and tanh, then `classifier`;
//! - `RobertaClassificationHead` (XLM-RoBERTa, RoBERTa, CamemBERT; MPNet's head is the same):
//!   the first token through `classifier.dense` and tanh, then `classifier.out_proj`;
//! - `DistilBertForSequenceClassification`: `pre_classifier`, ReLU, `classifier`;
//! - `GteForSequenceClassification` (`modeling_gte.py`; Alibaba's `NewForSequenceClassification`
//!   is the same head): `GtePooler` (first token, `pooler.dense`, tanh), then `classifier`;
//! - `ModernBertForSequenceClassification` (`modeling_modernbert.py`): the first token, or the
//!   mean over the real tokens with `classifier_pooling: mean`, through `ModernBertPredictionHead`
//!   (`head.dense`, `classifier_activation`, `head.norm`), then `classifier`.
//!
//! The activation follows sentence-transformers' `CrossEncoder.get_default_activation_fn`: the
//! one the config names under `sentence_transformers.activation_fn` (or the pre-v4
//! `sbert_ce_default_activation_function`), else sigmoid for one label and identity otherwise.
//!
//! The head's matrices stay in FP32 whatever the encoder's dtype, as ONNX Runtime's dynamic
//! quantization is usually applied (to the encoder only). They are `hidden² + hidden × labels`
//! floats (2.4 MB at hidden 768, about 2 % of an INT8 base model), and their rounding reaches
//! the scores with no later layer to average it out, where near ties between documents are
//! common (`tests/dtype_quality.rs::rerankers_rank_as_fp32_in_every_dtype`).

use serde::Serialize;
use serde_json::Value;

use crate::dtype::DType;
use crate::error::{Error, Result};
use crate::kernels::int8::QuantizedRows;
use crate::models::block::Norm;
use crate::models::{Activation, Linear};
use crate::weights::Weights;

/// The function applied to a cross-encoder's logits unless raw scores are asked for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ScoreActivation {
    /// `1 / (1 + e^-x)` per logit.
    Sigmoid,
    /// The logits as they are.
    Identity,
    /// `tanh` per logit.
    Tanh,
    /// Softmax over a pair's labels.
    Softmax,
}

impl ScoreActivation {
    /// The activation a `torch.nn` class path names (`torch.nn.modules.activation.Sigmoid`).
    /// Paths outside `torch.` are refused, as sentence-transformers refuses them without
    /// `trust_remote_code`.
    fn from_torch_path(path: &str) -> Option<Self> {
        if !path.starts_with("torch.") {
            return None;
        }
        match path.rsplit('.').next()? {
            "Sigmoid" => Some(Self::Sigmoid),
            "Identity" => Some(Self::Identity),
            "Tanh" => Some(Self::Tanh),
            "Softmax" => Some(Self::Softmax),
            _ => None,
        }
    }

    /// Applies the activation to one pair's logits in place.
    pub fn apply(self, logits: &mut [f32]) {
        match self {
            Self::Identity => {}
            Self::Sigmoid => logits
                .iter_mut()
                .for_each(|x| *x = 1.0 / (1.0 + (-*x).exp())),
            Self::Tanh => logits.iter_mut().for_each(|x| *x = x.tanh()),
            Self::Softmax => {
                let max = logits.iter().copied().fold(f32::NEG_INFINITY, f32::max);
                let sum: f32 = logits
                    .iter_mut()
                    .map(|x| {
                        *x = (*x - max).exp();
                        *x
                    })
                    .sum();
                logits.iter_mut().for_each(|x| *x /= sum);
            }
        }
    }
}

/// How the pooled vector becomes logits.
#[derive(Debug)]
enum Style {
    /// Dense, tanh, linear (BERT's and GTE's poolers, RoBERTa's and MPNet's classification
    /// heads).
    Tanh,
    /// Dense, ReLU, linear (DistilBERT).
    Relu,
    /// Dense, an activation, layer norm, linear (ModernBERT's prediction head).
    ActNorm(Activation, Norm),
}

/// A sequence-classification head.
#[derive(Debug)]
pub struct Classifier {
    dense: Linear,
    out: Linear,
    style: Style,
    /// Mean over the real tokens rather than the first token (ModernBERT's
    /// `classifier_pooling: mean`).
    mean: bool,
    labels: Vec<String>,
    activation: ScoreActivation,
}

/// The dtype the head's matrices are stored in (see the module header).
const HEAD_DTYPE: DType = DType::Fp32;

/// One of the head's layers (`{prefix}.weight`, `{prefix}.bias`) in [`HEAD_DTYPE`].
fn head_linear(w: &Weights, prefix: &str, in_dim: usize, out_dim: usize) -> Result<Linear> {
    Linear::load_opt_in(w, prefix, in_dim, out_dim, true, HEAD_DTYPE)
}

/// The labels of a config: `id2label` in id order, else `num_labels` generic ones, else
/// transformers' default of two.
fn labels_of(cfg: &Value) -> Vec<String> {
    if let Some(map) = cfg.get("id2label").and_then(Value::as_object) {
        let mut pairs: Vec<(usize, String)> = map
            .iter()
            .filter_map(|(k, v)| Some((k.parse().ok()?, v.as_str()?.to_string())))
            .collect();
        pairs.sort();
        if !pairs.is_empty() {
            return pairs.into_iter().map(|(_, v)| v).collect();
        }
    }
    let n = cfg.get("num_labels").and_then(Value::as_u64).unwrap_or(2) as usize;
    (0..n.max(1)).map(|i| format!("LABEL_{i}")).collect()
}

impl Classifier {
    /// Loads the head named by `architecture` from `w`; `cfg` is the raw `config.json`.
    pub(crate) fn load(
        w: &Weights,
        cfg: &Value,
        architecture: &str,
        hidden: usize,
    ) -> Result<Self> {
        let labels = labels_of(cfg);
        let n = labels.len();
        let mut mean = false;
        let (dense, out, style) = match architecture {
            "BertForSequenceClassification" => (
                head_linear(w, "pooler.dense", hidden, hidden)?,
                head_linear(w, "classifier", hidden, n)?,
                Style::Tanh,
            ),
            "XLMRobertaForSequenceClassification"
            | "RobertaForSequenceClassification"
            | "CamembertForSequenceClassification"
            | "MPNetForSequenceClassification" => (
                head_linear(w, "classifier.dense", hidden, hidden)?,
                head_linear(w, "classifier.out_proj", hidden, n)?,
                Style::Tanh,
            ),
            "DistilBertForSequenceClassification" => (
                head_linear(w, "pre_classifier", hidden, hidden)?,
                head_linear(w, "classifier", hidden, n)?,
                Style::Relu,
            ),
            "GteForSequenceClassification" | "NewForSequenceClassification" => (
                head_linear(w, "pooler.dense", hidden, hidden)?,
                head_linear(w, "classifier", hidden, n)?,
                Style::Tanh,
            ),
            "ModernBertForSequenceClassification" => {
                let (style, pooled_mean) = modernbert_head(w, cfg, hidden)?;
                mean = pooled_mean;
                let flag = cfg.get("classifier_bias").and_then(Value::as_bool);
                (
                    Linear::load_opt_in(
                        w,
                        "head.dense",
                        hidden,
                        hidden,
                        flag.unwrap_or(false),
                        HEAD_DTYPE,
                    )?,
                    head_linear(w, "classifier", hidden, n)?,
                    style,
                )
            }
            other => {
                return Err(Error::Unsupported {
                    id: w.model().to_string(),
                    architecture: other.to_string(),
                    reason: "Ember's reranker heads are BERT, RoBERTa, XLM-RoBERTa, CamemBERT, \
                             MPNet, DistilBERT, GTE and ModernBERT ForSequenceClassification"
                        .into(),
                })
            }
        };
        let named = cfg
            .pointer("/sentence_transformers/activation_fn")
            .or_else(|| cfg.get("sbert_ce_default_activation_function"))
            .and_then(Value::as_str);
        let activation = match named.map(|p| (p, ScoreActivation::from_torch_path(p))) {
            Some((_, Some(a))) => a,
            other => {
                if let Some((path, None)) = other {
                    tracing::warn!(
                        model = w.model(),
                        path,
                        "activation not recognized; using the default"
                    );
                }
                if n == 1 {
                    ScoreActivation::Sigmoid
                } else {
                    ScoreActivation::Identity
                }
            }
        };
        Ok(Self {
            dense,
            out,
            style,
            mean,
            labels,
            activation,
        })
    }

    /// True when the head reads the mean of the real tokens' vectors, not the first token's.
    pub fn mean_pooled(&self) -> bool {
        self.mean
    }

    /// Scores per pair.
    pub fn num_labels(&self) -> usize {
        self.labels.len()
    }

    /// The label names, in score order (`id2label`).
    pub fn labels(&self) -> &[String] {
        &self.labels
    }

    /// The activation applied to the logits unless raw scores are asked for.
    pub fn activation(&self) -> ScoreActivation {
        self.activation
    }

    /// Bytes held.
    pub fn bytes(&self) -> usize {
        let norm = match &self.style {
            Style::ActNorm(_, norm) => norm.bytes(),
            _ => 0,
        };
        self.dense.bytes() + self.out.bytes() + norm
    }

    /// Logits `[rows × num_labels]` from each row's pooled vector (`[rows × hidden]`: the first
    /// token's, or the mean when [`mean_pooled`](Self::mean_pooled)).
    pub(crate) fn logits(&self, first: &[f32], hidden: usize) -> candle_core::Result<Vec<f32>> {
        let rows = first.len() / hidden.max(1);
        let mut xq = QuantizedRows::default();
        let mut mid = vec![0f32; rows * hidden];
        self.dense.forward_host(first, &mut xq, &mut mid)?;
        match &self.style {
            Style::Tanh => mid.iter_mut().for_each(|x| *x = x.tanh()),
            Style::Relu => mid.iter_mut().for_each(|x| *x = x.max(0.0)),
            Style::ActNorm(act, norm) => {
                // Never gated (refused at load): the activation runs in place.
                act.apply_host(&mut mid, hidden, &mut Vec::new());
                norm.add_in_place(&mut mid, &[]);
            }
        }
        let mut out = vec![0f32; rows * self.labels.len()];
        self.out.forward_host(&mid, &mut xq, &mut out)?;
        Ok(out)
    }
}

/// ModernBERT's prediction head after its dense layer (`classifier_activation`, default GELU;
/// `head.norm`, with a bias when `norm_bias`) and whether it pools by mean
/// (`classifier_pooling`: `cls`, the default, or `mean`).
fn modernbert_head(w: &Weights, cfg: &Value, hidden: usize) -> Result<(Style, bool)> {
    let unsupported = |what: String| Error::Unsupported {
        id: w.model().to_string(),
        architecture: "ModernBertForSequenceClassification".into(),
        reason: what,
    };
    let name = cfg
        .get("classifier_activation")
        .and_then(Value::as_str)
        .unwrap_or("gelu");
    let act = Activation::from_name(name)
        .filter(|a| !matches!(a, Activation::SwiGlu | Activation::GeGluTanh))
        .ok_or_else(|| unsupported(format!("classifier_activation `{name}`")))?;
    let mean = match cfg.get("classifier_pooling").and_then(Value::as_str) {
        None | Some("cls") => false,
        Some("mean") => true,
        Some(other) => {
            return Err(unsupported(format!(
                "classifier_pooling `{other}` (Ember pools `cls` or `mean`)"
            )))
        }
    };
    let eps = cfg.get("norm_eps").and_then(Value::as_f64).unwrap_or(1e-5);
    let bias = cfg
        .get("norm_bias")
        .and_then(Value::as_bool)
        .unwrap_or(false);
    let norm = Norm::layer(w, "head.norm", hidden, eps, bias)?;
    Ok((Style::ActNorm(act, norm), mean))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn activations_follow_torch() {
        let mut v = [0.0f32, 2.0];
        ScoreActivation::Sigmoid.apply(&mut v);
        assert!((v[0] - 0.5).abs() < 1e-6 && (v[1] - 0.880_797).abs() < 1e-5);
        let mut s = [1.0f32, 2.0, 3.0];
        ScoreActivation::Softmax.apply(&mut s);
        assert!((s.iter().sum::<f32>() - 1.0).abs() < 1e-6 && s[2] > s[1]);
        assert_eq!(
            ScoreActivation::from_torch_path("torch.nn.modules.linear.Identity"),
            Some(ScoreActivation::Identity)
        );
        assert_eq!(ScoreActivation::from_torch_path("mypkg.Sigmoid"), None);
    }

    #[test]
    fn labels_come_from_id2label_in_id_order() {
        let cfg: Value =
            serde_json::from_str(r#"{"id2label": {"1": "b", "0": "a", "10": "k"}}"#).unwrap();
        assert_eq!(labels_of(&cfg), ["a", "b", "k"]);
        let cfg: Value = serde_json::from_str(r#"{"num_labels": 1}"#).unwrap();
        assert_eq!(labels_of(&cfg), ["LABEL_0"]);
        assert_eq!(labels_of(&Value::Null).len(), 2);
    }
}
