//! `ember.Embedder`: a loaded model whose `embed` (Ember's defaults) and `encode`
//! (sentence-transformers' meaning) return C-contiguous float32 NumPy arrays.

use std::path::PathBuf;
use std::sync::Arc;

use ember_core::{EmbedOptions, Embedder, Error, ModelSpec};
use numpy::ndarray::{Array2, ArrayView2, Axis};
use numpy::{AllowTypeChange, IntoPyArray, PyArray2, PyArrayLikeDyn, PyUntypedArrayMethods};
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyString};

use crate::catalog::{manager, path_to_string, to_python};
use crate::errors::{detached, invalid_input, EmberError, IntoPyException};

/// Forward-pass batches per GIL-free call: between calls the GIL is taken back to notice Ctrl-C.
const BATCHES_PER_CALL: usize = 8;

/// A text-embedding model, loaded once per process and shared by every `Embedder` naming it.
///
/// `model` is a catalog id (`"all-MiniLM-L6-v2"`), an alias (`"all-minilm"`) or a
/// sentence-transformers model directory; None loads the default model. Files are found in
/// `EMBER_MODELS_DIR`, the Hugging Face cache, installed Python packages, or downloaded.
///
/// >>> m = ember.Embedder("all-MiniLM-L6-v2")
/// >>> m.embed(["a", "b"]).shape
/// (2, 384)
/// >>> m.embed("a").shape
/// (384,)
///
/// Raises ModelNotFoundError, ModelLoadError or UnsupportedModelError.
#[pyclass(frozen, module = "ember", name = "Embedder")]
#[derive(Debug)]
pub(crate) struct PyEmbedder {
    model: Arc<Embedder>,
    spec: ModelSpec,
}

/// Texts from `str` or a sequence of `str`; `true` when a single string was given.
fn texts_of(inputs: &Bound<'_, PyAny>) -> PyResult<(Vec<String>, bool)> {
    if let Ok(s) = inputs.cast::<PyString>() {
        return Ok((vec![s.to_cow()?.into_owned()], true));
    }
    let type_name = |o: &Bound<'_, PyAny>| -> String {
        o.get_type()
            .name()
            .map_or_else(|_| "?".into(), |n| n.to_string())
    };
    let not_texts = || {
        invalid_input(format!(
            "inputs must be a string or a sequence of strings (got {})",
            type_name(inputs)
        ))
    };
    if inputs.is_instance_of::<PyBytes>() {
        return Err(not_texts());
    }
    let iter = inputs.try_iter().map_err(|_| not_texts())?;
    let mut texts = Vec::with_capacity(inputs.len().unwrap_or(0));
    for (i, item) in iter.enumerate() {
        let item = item?;
        let s = item.cast::<PyString>().map_err(|_| {
            invalid_input(format!(
                "input[{i}] is not a string (got {})",
                type_name(&item)
            ))
        })?;
        let text = s
            .to_cow()
            .map_err(|e| invalid_input(format!("input[{i}] is not valid Unicode: {e}")))?;
        texts.push(text.into_owned());
    }
    Ok((texts, false))
}

/// A count argument (`dimensions`, `batch_size`) that must not be negative.
fn count(field: &str, value: i64) -> PyResult<usize> {
    usize::try_from(value).map_err(|_| {
        Error::invalid(field, format!("must not be negative, got {value}")).into_exception()
    })
}

/// `InputTooLong` names the input by its index in the call, not in the chunk.
fn shift_index(err: Error, offset: usize) -> Error {
    match err {
        Error::InputTooLong {
            model,
            index,
            tokens,
            limit,
        } => Error::InputTooLong {
            model,
            index: index + offset,
            tokens,
            limit,
        },
        other => other,
    }
}

/// A flat row-major buffer as a `(rows, dim)` array, or `(dim,)` for a single input.
fn to_array(
    py: Python<'_>,
    data: Vec<f32>,
    dim: usize,
    single: bool,
) -> PyResult<Bound<'_, PyAny>> {
    if single {
        return Ok(data.into_pyarray(py).into_any());
    }
    let rows = data.len().checked_div(dim).unwrap_or(0);
    let array = Array2::from_shape_vec((rows, dim), data)
        .map_err(|e| EmberError::new_err(format!("internal error: output shape: {e}")))?;
    Ok(array.into_pyarray(py).into_any())
}

/// A 1-D or 2-D array-like as owned rows.
fn rows_of(a: &PyArrayLikeDyn<'_, f32, AllowTypeChange>, name: &str) -> PyResult<Array2<f32>> {
    let view = a.as_array();
    let shape_err = |e: numpy::ndarray::ShapeError| invalid_input(format!("`{name}`: {e}"));
    match view.ndim() {
        1 => Ok(view
            .insert_axis(Axis(0))
            .into_dimensionality()
            .map_err(shape_err)?
            .to_owned()),
        2 => Ok(view.into_dimensionality().map_err(shape_err)?.to_owned()),
        n => Err(invalid_input(format!(
            "`{name}` must be one vector or a 2-D array of vectors, got {n} dimensions (shape {:?})",
            a.shape()
        ))),
    }
}

/// Cosine similarity of every row of `a` with every row of `b`.
fn cosine_matrix(mut a: Array2<f32>, mut b: Array2<f32>) -> Result<Array2<f32>, Error> {
    if a.ncols() != b.ncols() {
        return Err(Error::invalid(
            "embeddings",
            format!(
                "vectors of different lengths cannot be compared ({} vs {})",
                a.ncols(),
                b.ncols()
            ),
        ));
    }
    for m in [&mut a, &mut b] {
        for mut row in m.rows_mut() {
            let norm = row.dot(&row).sqrt().max(1e-12);
            row.mapv_inplace(|x| x / norm);
        }
    }
    let bt: ArrayView2<'_, f32> = b.t();
    Ok(a.dot(&bt))
}

impl PyEmbedder {
    /// Embeds `texts` in chunks, each with the GIL released, checking for Ctrl-C in between.
    fn run(
        &self,
        py: Python<'_>,
        texts: &[String],
        opts: &EmbedOptions,
    ) -> PyResult<(Vec<f32>, usize)> {
        let model = &self.model;
        if texts.is_empty() {
            // Still validates the options and reports the output dimension.
            let e = detached(py, || model.embed(texts, opts))?;
            return Ok((e.data, e.dimension));
        }
        let step = opts.batch_size.max(1).saturating_mul(BATCHES_PER_CALL);
        let mut data = Vec::new();
        let mut dim = 0;
        for (n, part) in texts.chunks(step).enumerate() {
            let e = detached(py, || {
                model
                    .embed(part, opts)
                    .map_err(|e| shift_index(e, n * step))
            })?;
            if data.is_empty() {
                data.reserve_exact(texts.len() * e.dimension);
            }
            dim = e.dimension;
            data.extend_from_slice(&e.data);
            py.check_signals()?;
        }
        Ok((data, dim))
    }
}

#[pymethods]
impl PyEmbedder {
    #[new]
    #[pyo3(signature = (model = None))]
    fn new(py: Python<'_>, model: Option<PathBuf>) -> PyResult<Self> {
        let id = model.map(|m| path_to_string(m, "model")).transpose()?;
        let (model, spec) = detached(py, || {
            let spec = manager().spec(id.as_deref())?;
            let model = manager().get(Some(&spec.id))?;
            Ok::<_, Error>((model, spec))
        })?;
        Ok(Self { model, spec })
    }

    /// Embeds one string (-> shape `(dimension,)`) or a sequence of strings (-> shape
    /// `(len(inputs), dimension)`) as C-contiguous float32 vectors, L2-normalized by default.
    ///
    /// normalize: L2-normalize each vector.
    /// dimensions: keep the first `dimensions` components (Matryoshka), re-normalized when
    ///     `normalize`.
    /// prompt_name: a key of the model's prompts (see `prompts`), prepended to every input.
    /// prompt: a literal prefix for every input (wins over `prompt_name`).
    /// truncate: cut inputs longer than `max_seq_length` tokens; False raises InvalidInputError
    ///     naming the first input that is too long.
    /// batch_size: sequences per forward pass.
    ///
    /// >>> v = ember.Embedder("all-MiniLM-L6-v2").embed(["hello", "world"], dimensions=64)
    /// >>> v.shape, v.dtype, v.flags.c_contiguous
    /// ((2, 64), dtype('float32'), True)
    #[pyo3(signature = (
        inputs, *, normalize = true, dimensions = None, prompt_name = None, prompt = None,
        truncate = true, batch_size = 32
    ))]
    #[allow(clippy::too_many_arguments)]
    fn embed<'py>(
        &self,
        py: Python<'py>,
        inputs: &Bound<'py, PyAny>,
        normalize: bool,
        dimensions: Option<i64>,
        prompt_name: Option<String>,
        prompt: Option<String>,
        truncate: bool,
        batch_size: i64,
    ) -> PyResult<Bound<'py, PyAny>> {
        let (texts, single) = texts_of(inputs)?;
        let opts = EmbedOptions {
            normalize,
            dimensions: dimensions.map(|d| count("dimensions", d)).transpose()?,
            prompt_name,
            prompt,
            truncate,
            max_length: None,
            batch_size: count("batch_size", batch_size)?,
        };
        let (data, dim) = self.run(py, &texts, &opts)?;
        to_array(py, data, dim, single)
    }

    /// sentence-transformers' `SentenceTransformer.encode`: the model's own pipeline output
    /// (normalized when the model ends in a Normalize module, as all-MiniLM-L6-v2 does), as
    /// float32 NumPy arrays; inputs are always truncated to `max_seq_length`.
    ///
    /// normalize_embeddings: L2-normalize (after `truncate_dim`) even if the model does not.
    /// truncate_dim: keep the first `truncate_dim` components (not re-normalized unless
    ///     `normalize_embeddings`, as in sentence-transformers).
    /// show_progress_bar: accepted for compatibility; ignored.
    #[pyo3(signature = (
        sentences, *, batch_size = 32, normalize_embeddings = false, prompt_name = None,
        prompt = None, truncate_dim = None, show_progress_bar = None
    ))]
    #[allow(clippy::too_many_arguments)]
    fn encode<'py>(
        &self,
        py: Python<'py>,
        sentences: &Bound<'py, PyAny>,
        batch_size: i64,
        normalize_embeddings: bool,
        prompt_name: Option<String>,
        prompt: Option<String>,
        truncate_dim: Option<i64>,
        show_progress_bar: Option<bool>,
    ) -> PyResult<Bound<'py, PyAny>> {
        let _ = show_progress_bar;
        let (texts, single) = texts_of(sentences)?;
        let truncate_dim = truncate_dim.map(|d| count("truncate_dim", d)).transpose()?;
        let pipeline_normalizes = self.model.info().normalize;
        // sentence-transformers cuts after the Normalize module and only re-normalizes when
        // asked; the core re-normalizes after cutting, so that one case is cut here instead.
        let cut_here = pipeline_normalizes && !normalize_embeddings && truncate_dim.is_some();
        let mut opts = EmbedOptions {
            normalize: normalize_embeddings || pipeline_normalizes,
            dimensions: truncate_dim,
            prompt_name,
            prompt,
            truncate: true,
            max_length: None,
            batch_size: count("batch_size", batch_size)?,
        };
        self.model
            .check_options(&opts)
            .map_err(IntoPyException::into_exception)?;
        if cut_here {
            opts.dimensions = None;
        }
        let (mut data, mut dim) = self.run(py, &texts, &opts)?;
        if let (true, Some(k)) = (cut_here, truncate_dim) {
            data = data
                .chunks_exact(dim)
                .flat_map(|row| &row[..k])
                .copied()
                .collect();
            dim = k;
        }
        to_array(py, data, dim, single)
    }

    /// Cosine similarity of every vector in `a` with every vector in `b` (each one vector or a
    /// 2-D array), as a float32 array of shape `(len(a), len(b))`.
    ///
    /// >>> m = ember.Embedder("all-MiniLM-L6-v2")
    /// >>> e = m.embed(["a cat", "a kitten", "tax law"])
    /// >>> s = m.similarity(e, e)
    /// >>> s.shape, bool(s[0, 1] > s[0, 2])
    /// ((3, 3), True)
    fn similarity<'py>(
        &self,
        py: Python<'py>,
        a: PyArrayLikeDyn<'py, f32, AllowTypeChange>,
        b: PyArrayLikeDyn<'py, f32, AllowTypeChange>,
    ) -> PyResult<Bound<'py, PyArray2<f32>>> {
        let (a, b) = (rows_of(&a, "a")?, rows_of(&b, "b")?);
        let scores = detached(py, || cosine_matrix(a, b))?;
        Ok(scores.into_pyarray(py))
    }

    /// The tokens `text` becomes (special tokens included, no truncation).
    ///
    /// >>> ember.Embedder("all-MiniLM-L6-v2").tokenize("Hello world")
    /// ['[CLS]', 'hello', 'world', '[SEP]']
    fn tokenize(&self, py: Python<'_>, text: String) -> PyResult<Vec<String>> {
        let model = &self.model;
        let tokens = detached(py, || model.tokenizer().tokens(&text))?;
        Ok(tokens.into_iter().map(|(_, t)| t).collect())
    }

    /// Token counts of `inputs` after truncation to `max_seq_length` (special tokens included).
    fn count_tokens(&self, py: Python<'_>, inputs: &Bound<'_, PyAny>) -> PyResult<Vec<usize>> {
        let (texts, _) = texts_of(inputs)?;
        let model = &self.model;
        detached(py, || model.count_tokens(&texts))
    }

    /// Length of the output vectors.
    #[getter]
    fn dimension(&self) -> usize {
        self.model.dimension()
    }

    /// Longest input, in tokens, before truncation.
    #[getter(max_seq_length)]
    fn seq_limit(&self) -> usize {
        self.model.info().max_seq_length
    }

    /// The catalog id the model was loaded as.
    #[getter]
    fn model_id(&self) -> &str {
        self.model.id()
    }

    /// Named prompts (`prompt_name` -> prefix).
    #[getter]
    fn prompts(&self) -> std::collections::BTreeMap<String, String> {
        self.model.info().prompts.clone()
    }

    /// The prompt applied when none is named, or None.
    #[getter]
    fn default_prompt_name(&self) -> Option<String> {
        self.model.info().default_prompt_name.clone()
    }

    /// The model's catalog entry, as `ember.get_model_spec` gives it.
    #[getter]
    fn spec<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        to_python(py, &self.spec)
    }

    /// Facts read from the model's files: architecture, dimension, max_seq_length, pooling,
    /// normalize (whether its pipeline ends in L2 normalization), prompts, vocab_size, bytes,
    /// path.
    #[getter]
    fn info<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        to_python(py, self.model.info())
    }

    /// sentence-transformers' name for `dimension`.
    fn get_sentence_embedding_dimension(&self) -> usize {
        self.model.dimension()
    }

    /// sentence-transformers' name for `max_seq_length`.
    fn get_max_seq_length(&self) -> usize {
        self.model.info().max_seq_length
    }

    fn __repr__(&self) -> String {
        format!(
            "Embedder({:?}, dimension={}, max_seq_length={})",
            self.model.id(),
            self.model.dimension(),
            self.model.info().max_seq_length
        )
    }
}
