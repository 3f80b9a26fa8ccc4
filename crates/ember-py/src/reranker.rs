//! `ember.Reranker`: a cross-encoder shaped like sentence-transformers' `CrossEncoder`
//! (`predict(pairs)`, `rank(query, documents)`), sharing the process-wide model cache with
//! `ember.Embedder`.

use std::path::PathBuf;

use ember_core::heads::classifier::ScoreActivation;
use ember_core::manager::Lease;
use ember_core::{Error, ModelKind, ModelSpec, PredictInput, RerankOptions};
use numpy::ndarray::Array2;
use numpy::IntoPyArray;
use pyo3::prelude::*;
use pyo3::types::{PyDict, PyList, PyString};

use crate::arrays::{call_step, count, in_chunks, texts_of};
use crate::catalog::{manager, path_to_string, to_python};
use crate::errors::{detached, invalid_input};
use crate::options;

/// A reranker (cross-encoder): scores for (query, document) pairs, loaded once per process (per
/// dtype) like `ember.Embedder`.
///
/// `model` is a catalog id of kind "reranker" (`"ms-marco-MiniLM-L6-v2"`), an alias, or a
/// directory holding a `*ForSequenceClassification` checkpoint. An embedder raises
/// InvalidInputError naming its kind.
///
/// dtype: "fp32", "fp16", "bf16" or "int8"; None takes the catalog's recommendation.
/// max_length: cut pairs to this many tokens (at most the model's own limit); the document is
///     cut first, so the query is kept.
///
/// Example (the model's files must be reachable: a hub download or a local directory)::
///
///     r = ember.Reranker("ms-marco-MiniLM-L6-v2")
///     r.rank("who wrote Hamlet?", ["Shakespeare wrote Hamlet.", "Paris is in France."])
///     # [{'corpus_id': 0, 'score': ...}, {'corpus_id': 1, 'score': ...}]
#[pyclass(frozen, module = "ember", name = "Reranker")]
#[derive(Debug)]
pub(crate) struct PyReranker {
    model: Lease,
    spec: ModelSpec,
    max_length: Option<usize>,
}

/// `predict`'s inputs: one pair or text (`single`), or a sequence of them.
fn predict_inputs(inputs: &Bound<'_, PyAny>) -> PyResult<(Vec<PredictInput>, bool)> {
    let pair_of = |item: &Bound<'_, PyAny>, at: &str| -> PyResult<PredictInput> {
        if let Ok(s) = item.cast::<PyString>() {
            return Ok(PredictInput::Single(s.to_cow()?.into_owned()));
        }
        let (texts, _) = texts_of(item).map_err(|_| {
            invalid_input(format!("{at} must be a (query, document) pair of strings"))
        })?;
        let n = texts.len();
        let mut texts = texts.into_iter();
        match (texts.next(), texts.next(), n) {
            (Some(a), None, 1) => Ok(PredictInput::Single(a)),
            (Some(a), Some(b), 2) => Ok(PredictInput::Pair(a, b)),
            _ => Err(invalid_input(format!(
                "{at} must be a (query, document) pair (or a one-text list): it has {n} texts"
            ))),
        }
    };
    if inputs.is_instance_of::<PyString>() {
        return Ok((vec![pair_of(inputs, "inputs")?], true));
    }
    // sentence-transformers: a list whose first element is not itself a list is one pair.
    let first = inputs.get_item(0).ok();
    if first.is_some_and(|f| f.is_instance_of::<PyString>()) {
        return Ok((vec![pair_of(inputs, "inputs")?], true));
    }
    let iter = inputs
        .try_iter()
        .map_err(|_| invalid_input("inputs must be a pair of strings or a sequence of pairs"))?;
    let mut out = Vec::new();
    for (i, item) in iter.enumerate() {
        out.push(pair_of(&item?, &format!("inputs[{i}]"))?);
    }
    Ok((out, false))
}

impl PyReranker {
    fn options(
        &self,
        batch_size: i64,
        raw_scores: bool,
        truncate: bool,
    ) -> PyResult<RerankOptions> {
        Ok(RerankOptions {
            raw_scores,
            truncate,
            max_length: self.max_length,
            batch_size: count("batch_size", batch_size)?,
            ..RerankOptions::default()
        })
    }

    fn num_labels(&self) -> usize {
        self.model.classifier().map_or(1, |c| c.num_labels())
    }

    /// Scores of `inputs` in order, in GIL-free chunks.
    fn scores(
        &self,
        py: Python<'_>,
        inputs: &[PredictInput],
        opts: &RerankOptions,
    ) -> PyResult<Vec<f32>> {
        let mut out = Vec::with_capacity(inputs.len() * self.num_labels());
        let model = &self.model;
        in_chunks(
            py,
            inputs,
            call_step(opts.batch_size),
            |part| model.predict(part, opts),
            |s| out.extend_from_slice(&s.scores),
        )?;
        Ok(out)
    }
}

#[pymethods]
impl PyReranker {
    #[new]
    #[pyo3(signature = (model, *, dtype = None, max_length = None, threads = None))]
    fn new(
        py: Python<'_>,
        model: PathBuf,
        dtype: Option<String>,
        max_length: Option<i64>,
        threads: Option<i64>,
    ) -> PyResult<Self> {
        let id = path_to_string(model, "model")?;
        let dtype = options::dtype(dtype.as_deref())?;
        let max_length = match max_length.map(usize::try_from) {
            None => None,
            Some(Ok(m)) if m > 0 => Some(m),
            Some(_) => return Err(invalid_input("`max_length` must be at least 1")),
        };
        if let Some(n) = threads {
            options::set_threads(py, n)?;
        }
        let (model, spec) = detached(py, || {
            let spec = manager().spec(Some(&id))?;
            manager().check_kind(Some(&spec.id), ModelKind::Reranker, "rerank")?;
            let model = manager().lease(Some(&spec.id), dtype)?;
            model.require_kind(ModelKind::Reranker, "rerank")?;
            Ok::<_, Error>((model, spec))
        })?;
        Ok(Self {
            model,
            spec,
            max_length,
        })
    }

    /// Scores of (query, document) pairs, as `CrossEncoder.predict`: one pair gives a float (or
    /// one row per label), a sequence gives a float32 array of shape `(n,)`, or `(n, labels)`
    /// for several labels. A one-text list (`["text"]`) is classified alone, without a pair.
    ///
    /// raw_scores: the logits, without the model's activation (sigmoid for one label).
    /// apply_softmax: softmax over each input's labels (models with several labels).
    /// truncate: cut pairs over the limit (the document first); False raises InvalidInputError
    ///     naming the first pair that is too long.
    /// convert_to_numpy, show_progress_bar: accepted for compatibility.
    ///
    /// Example: `reranker.predict([("q", "a"), ("q", "b")]).shape` is `(2,)`.
    #[pyo3(signature = (
        inputs, *, batch_size = 32, raw_scores = false, apply_softmax = false, truncate = true,
        convert_to_numpy = true, show_progress_bar = None
    ))]
    #[allow(clippy::too_many_arguments)]
    fn predict<'py>(
        &self,
        py: Python<'py>,
        inputs: &Bound<'py, PyAny>,
        batch_size: i64,
        raw_scores: bool,
        apply_softmax: bool,
        truncate: bool,
        convert_to_numpy: bool,
        show_progress_bar: Option<bool>,
    ) -> PyResult<Bound<'py, PyAny>> {
        let _ = (convert_to_numpy, show_progress_bar);
        let (inputs, single) = predict_inputs(inputs)?;
        let opts = self.options(batch_size, raw_scores, truncate)?;
        let mut scores = self.scores(py, &inputs, &opts)?;
        let n = self.num_labels();
        if apply_softmax && n > 1 {
            scores
                .chunks_exact_mut(n)
                .for_each(|row| ScoreActivation::Softmax.apply(row));
        }
        match (single, n) {
            (true, 1) => Ok(scores[0].into_pyobject(py)?.into_any()),
            (true, _) | (false, 1) => Ok(scores.into_pyarray(py).into_any()),
            (false, _) => {
                let rows = scores.len() / n;
                let a = Array2::from_shape_vec((rows, n), scores)
                    .map_err(|e| invalid_input(format!("internal error: {e}")))?;
                Ok(a.into_pyarray(py).into_any())
            }
        }
    }

    /// Ranks `documents` by their score against `query`, best first, as `CrossEncoder.rank`:
    /// a list of `{"corpus_id", "score"}` (plus `"text"` with `return_documents`), cut to
    /// `top_k`.
    ///
    /// Example: `[d["corpus_id"] for d in reranker.rank("capital of France", ["Berlin",
    /// "Paris is the capital of France"])]` is `[1, 0]` with a trained reranker.
    #[pyo3(signature = (
        query, documents, top_k = None, return_documents = false, *, batch_size = 32,
        raw_scores = false, truncate = true
    ))]
    #[allow(clippy::too_many_arguments)]
    fn rank<'py>(
        &self,
        py: Python<'py>,
        query: String,
        documents: &Bound<'py, PyAny>,
        top_k: Option<i64>,
        return_documents: bool,
        batch_size: i64,
        raw_scores: bool,
        truncate: bool,
    ) -> PyResult<Bound<'py, PyList>> {
        let (docs, _) = texts_of(documents)?;
        let top_k = top_k.map(|k| count("top_k", k)).transpose()?;
        if self.num_labels() != 1 {
            return Err(invalid_input(format!(
                "rank needs one score per pair, but model `{}` has {} labels; use predict",
                self.model.id(),
                self.num_labels()
            )));
        }
        let opts = self.options(batch_size, raw_scores, truncate)?;
        let pairs: Vec<PredictInput> = docs
            .iter()
            .map(|d| PredictInput::Pair(query.clone(), d.clone()))
            .collect();
        let scores = self.scores(py, &pairs, &opts)?;
        let ranked = ember_core::rerank::rank(&scores);
        let out = PyList::empty(py);
        for r in ranked.iter().take(top_k.unwrap_or(usize::MAX)) {
            let d = PyDict::new(py);
            d.set_item("corpus_id", r.index)?;
            d.set_item("score", r.score)?;
            if return_documents {
                d.set_item("text", &docs[r.index])?;
            }
            out.append(d)?;
        }
        Ok(out)
    }

    /// Scores per pair.
    #[getter(num_labels)]
    fn labels_count(&self) -> usize {
        self.num_labels()
    }

    /// Label names, in score order (`id2label`).
    #[getter]
    fn labels(&self) -> Vec<String> {
        self.model.info().labels.clone()
    }

    /// The activation applied unless `raw_scores`: "sigmoid", "identity", "tanh" or "softmax".
    #[getter]
    fn activation(&self) -> &'static str {
        match self.model.classifier().map(|c| c.activation()) {
            Some(ScoreActivation::Sigmoid) => "sigmoid",
            Some(ScoreActivation::Tanh) => "tanh",
            Some(ScoreActivation::Softmax) => "softmax",
            _ => "identity",
        }
    }

    /// Longest pair, in tokens, before truncation.
    #[getter]
    fn max_length(&self) -> usize {
        let own = self.model.info().max_seq_length;
        self.max_length.map_or(own, |m| m.min(own))
    }

    /// How the weights are stored: "fp32", "fp16", "bf16" or "int8".
    #[getter]
    fn dtype(&self) -> &'static str {
        self.model.info().dtype.as_str()
    }

    /// The catalog id the model was loaded as.
    #[getter]
    fn model_id(&self) -> &str {
        self.model.id()
    }

    /// The model's catalog entry plus the `dtype` of this instance.
    #[getter]
    fn spec<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        let spec = to_python(py, &self.spec)?;
        spec.cast::<PyDict>()?.set_item("dtype", self.dtype())?;
        Ok(spec)
    }

    /// Facts read from the model's files (kind, architecture, labels, max_seq_length, bytes).
    #[getter]
    fn info<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        to_python(py, self.model.info())
    }

    fn __repr__(&self) -> String {
        format!(
            "Reranker({:?}, dtype={:?}, num_labels={}, max_length={})",
            self.model.id(),
            self.dtype(),
            self.num_labels(),
            self.max_length()
        )
    }
}
