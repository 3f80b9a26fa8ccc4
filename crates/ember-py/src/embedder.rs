//! `ember.Embedder`: a loaded model whose `embed` (Ember's defaults) and `encode` /
//! `encode_query` / `encode_document` (sentence-transformers' meaning, output precisions
//! included) return C-contiguous NumPy arrays.

use std::path::PathBuf;

use ember_core::manager::Lease;
use ember_core::precision::Precision;
use ember_core::{Chunk, EmbedOptions, Error, InputType, Matryoshka, ModelSpec};
use numpy::{AllowTypeChange, IntoPyArray, PyArray2, PyArrayLikeDyn};
use pyo3::prelude::*;
use pyo3::types::{PyDict, PyList};

use crate::arrays::{
    cosine_matrix, count, embed_chunked, ranges_arg, rows_of, texts_of, to_array, to_precision,
};
use crate::catalog::{manager, path_to_string, to_python};
use crate::errors::{detached, invalid_input, IntoPyException};
use crate::identity::task_options;
use crate::options;

/// A text-embedding model, loaded once per process (per dtype) and shared by every `Embedder`
/// naming it.
///
/// `model` is a catalog id (`"all-MiniLM-L6-v2"`), an alias (`"all-minilm"`) or a
/// sentence-transformers model directory; None loads the default model. Files are found in
/// `EMBER_MODELS_DIR`, the Hugging Face cache, installed Python packages, or downloaded.
///
/// dtype: how the weights are stored: "fp32", "fp16", "bf16" or "int8" ("float32", "float16",
///     "bfloat16" too); None takes the catalog's recommendation for the model.
/// max_seq_length: cut inputs to this many tokens (at most the model's own limit, itself at most
///     the input cap: EMBER_MAX_INPUT_TOKENS, default 8192; `ModelManager(max_input_tokens=)`
///     sets another per manager).
/// threads: size of Ember's compute thread pool. The pool is process-wide and sized once, when
///     the first model runs (default: EMBER_NUM_THREADS, else one thread per core); a different
///     value after that only warns.
///
/// >>> m = ember.Embedder("all-MiniLM-L6-v2")
/// >>> m.embed(["a", "b"]).shape
/// (2, 384)
/// >>> m.embed("a").shape
/// (384,)
/// >>> ember.Embedder("all-MiniLM-L6-v2", dtype="int8").spec["dtype"]
/// 'int8'
///
/// Raises ModelNotFoundError, ModelLoadError, UnsupportedModelError, or InvalidInputError for a
/// bad dtype, max_seq_length or threads.
#[pyclass(frozen, module = "ember", name = "Embedder")]
#[derive(Debug)]
pub(crate) struct PyEmbedder {
    /// Held for the object's life: the process-wide manager keeps the model loaded meanwhile.
    model: Lease,
    spec: ModelSpec,
    /// The `max_seq_length` cap, when smaller than the model's own limit.
    max_length: Option<usize>,
}

/// `encode`'s keyword arguments.
struct Encode<'py> {
    batch_size: i64,
    normalize_embeddings: bool,
    prompt_name: Option<String>,
    prompt: Option<String>,
    truncate_dim: Option<i64>,
    precision: String,
    ranges: Option<PyArrayLikeDyn<'py, f32, AllowTypeChange>>,
    convert_to_numpy: bool,
    instruction: Option<String>,
}

impl PyEmbedder {
    fn options(&self, opts: EmbedOptions) -> EmbedOptions {
        EmbedOptions {
            max_length: self.max_length,
            ..opts
        }
    }

    /// The effective token limit.
    fn limit(&self) -> usize {
        let own = self.model.info().max_seq_length;
        self.max_length.map_or(own, |m| m.min(own))
    }

    fn encode_with<'py>(
        &self,
        py: Python<'py>,
        sentences: &Bound<'py, PyAny>,
        args: Encode<'py>,
        task: Option<InputType>,
    ) -> PyResult<Bound<'py, PyAny>> {
        let (texts, single) = texts_of(sentences)?;
        let precision = options::precision(&args.precision)?;
        let truncate_dim = args
            .truncate_dim
            .map(|d| count("truncate_dim", d))
            .transpose()?;
        let ranges = args.ranges.as_ref().map(ranges_arg).transpose()?;
        if ranges.is_some() && !matches!(precision, Precision::Int8 | Precision::Uint8) {
            return Err(invalid_input(format!(
                "`ranges` calibrate int8/uint8 output only (precision is {:?})",
                args.precision
            )));
        }
        let mut prompt_name = args.prompt_name;
        if let (Some(task), None, None) = (task, &prompt_name, &args.prompt) {
            // sentence-transformers 5+: the task's prompt when the model has one, else none.
            prompt_name = self.model.prompt_name_for(task).map(str::to_string);
        }
        let pipeline_normalizes = self.model.info().normalize;
        // sentence-transformers cuts after the Normalize module and only re-normalizes when
        // asked; the core re-normalizes after cutting, so that one case is cut here instead.
        let cut_here = pipeline_normalizes && !args.normalize_embeddings && truncate_dim.is_some();
        let mut opts = self.options(EmbedOptions {
            normalize: args.normalize_embeddings || pipeline_normalizes,
            dimensions: truncate_dim,
            prompt_name,
            prompt: args.prompt,
            instruction: args.instruction,
            truncate: true,
            max_length: None,
            batch_size: count("batch_size", args.batch_size)?,
            // sentence-transformers' truncate_dim is a plain slice, whatever the model card says.
            matryoshka: Some(Matryoshka::Slice),
            ..EmbedOptions::default()
        });
        self.model
            .check_options(&opts)
            .map_err(IntoPyException::into_exception)?;
        if cut_here {
            opts.dimensions = None;
        }
        let (mut data, mut dim) = embed_chunked(py, &self.model, &texts, &opts)?;
        if let (true, Some(k)) = (cut_here, truncate_dim) {
            data = data
                .chunks_exact(dim)
                .flat_map(|row| &row[..k])
                .copied()
                .collect();
            dim = k;
        }
        let out = to_precision(py, data, dim, single, precision, ranges)?;
        if args.convert_to_numpy || single {
            return Ok(out);
        }
        // sentence-transformers then gives a list of per-input vectors.
        Ok(PyList::new(py, out.try_iter()?.collect::<PyResult<Vec<_>>>()?)?.into_any())
    }
}

#[pymethods]
impl PyEmbedder {
    #[new]
    #[pyo3(signature = (model = None, *, dtype = None, max_seq_length = None, threads = None))]
    fn new(
        py: Python<'_>,
        model: Option<PathBuf>,
        dtype: Option<String>,
        max_seq_length: Option<i64>,
        threads: Option<i64>,
    ) -> PyResult<Self> {
        let id = model.map(|m| path_to_string(m, "model")).transpose()?;
        let dtype = options::dtype(dtype.as_deref())?;
        let max_length = max_seq_length
            .map(|m| match usize::try_from(m) {
                Ok(m) if m > 0 => Ok(m),
                _ => Err(invalid_input(format!(
                    "`max_seq_length` must be at least 1, got {m}"
                ))),
            })
            .transpose()?;
        if let Some(n) = threads {
            options::set_threads(py, n)?;
        }
        let (model, spec) = detached(py, || {
            let spec = manager().spec(id.as_deref())?;
            let model = manager().lease(Some(&spec.id), dtype)?;
            Ok::<_, Error>((model, spec))
        })?;
        let own = model.info().max_seq_length;
        if let Some(m) = max_length.filter(|&m| m > own) {
            let cap = manager().config().max_input_tokens;
            let why = if own == cap {
                " (the input cap, EMBER_MAX_INPUT_TOKENS)"
            } else {
                ""
            };
            return Err(invalid_input(format!(
                "`max_seq_length` {m} is over the limit of model `{}`, {own} tokens{why}",
                model.id()
            )));
        }
        Ok(Self {
            model,
            spec,
            max_length,
        })
    }

    /// Embeds one string (-> shape `(dimension,)`) or a sequence of strings (-> shape
    /// `(len(inputs), dimension)`) as C-contiguous float32 vectors, L2-normalized by default.
    ///
    /// normalize: L2-normalize each vector.
    /// dimensions: keep the first `dimensions` components (Matryoshka) by the model's recipe
    ///     (nomic-embed-text: layer norm, then cut), re-normalized when `normalize`.
    /// prompt_name: a key of the model's prompts (see `prompts`), prepended to every input.
    /// prompt: a literal prefix for every input (wins over `prompt_name`).
    /// instruction: an INSTRUCTOR instruction, prepended to every input and left out of the
    ///     mean pooling (INSTRUCTOR's rule).
    /// truncate: cut inputs longer than `max_seq_length` tokens; False raises InvalidInputError
    ///     naming the first input that is too long.
    /// batch_size: sequences per forward pass.
    ///
    /// >>> v = ember.Embedder("all-MiniLM-L6-v2").embed(["hello", "world"], dimensions=64)
    /// >>> v.shape, v.dtype, v.flags.c_contiguous
    /// ((2, 64), dtype('float32'), True)
    #[pyo3(signature = (
        inputs, *, normalize = true, dimensions = None, prompt_name = None, prompt = None,
        truncate = true, batch_size = 32, instruction = None
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
        instruction: Option<String>,
    ) -> PyResult<Bound<'py, PyAny>> {
        let (texts, single) = texts_of(inputs)?;
        let opts = self.options(EmbedOptions {
            normalize,
            dimensions: dimensions.map(|d| count("dimensions", d)).transpose()?,
            prompt_name,
            prompt,
            instruction,
            truncate,
            max_length: None,
            batch_size: count("batch_size", batch_size)?,
            ..EmbedOptions::default()
        });
        let (data, dim) = embed_chunked(py, &self.model, &texts, &opts)?;
        to_array(py, data, dim, single)
    }

    /// sentence-transformers' `SentenceTransformer.encode`: the model's own pipeline output
    /// (normalized when the model ends in a Normalize module, as all-MiniLM-L6-v2 does), as
    /// NumPy arrays; inputs are always truncated to `max_seq_length`.
    ///
    /// normalize_embeddings: L2-normalize (after `truncate_dim`) even if the model does not.
    /// truncate_dim: keep the first `truncate_dim` components, a plain slice (not re-normalized
    ///     unless `normalize_embeddings`, as in sentence-transformers).
    /// instruction: an INSTRUCTOR instruction, prepended and left out of the mean pooling.
    /// precision: "float32", "int8", "uint8" (255 buckets per dimension between `ranges`),
    ///     "binary" or "ubinary" (signs packed eight per byte, most significant bit first, as
    ///     int8 shifted by -128 or uint8): sentence-transformers' `quantize_embeddings`.
    /// ranges: int8/uint8 calibration, shape `(2, dimension)` (minimums, then maximums); by
    ///     default the batch itself calibrates, so a single input needs `ranges`.
    /// convert_to_numpy: False gives a list of 1-D arrays, as sentence-transformers does.
    /// output_value: "sentence_embedding" (the default), or "token_embeddings": one float32
    ///     array `(tokens, dimension)` per input, the last hidden state with special tokens and
    ///     without padding or normalization, as sentence-transformers gives it.
    /// show_progress_bar: accepted for compatibility; ignored.
    ///
    /// >>> m = ember.Embedder("all-MiniLM-L6-v2")
    /// >>> b = m.encode(["a cat", "a dog", "tax law"], precision="ubinary")
    /// >>> b.shape, b.dtype
    /// ((3, 48), dtype('uint8'))
    #[pyo3(signature = (
        sentences, *, batch_size = 32, normalize_embeddings = false, prompt_name = None,
        prompt = None, truncate_dim = None, precision = "float32", ranges = None,
        show_progress_bar = None, convert_to_numpy = true, instruction = None,
        output_value = "sentence_embedding"
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
        precision: &str,
        ranges: Option<PyArrayLikeDyn<'py, f32, AllowTypeChange>>,
        show_progress_bar: Option<bool>,
        convert_to_numpy: bool,
        instruction: Option<String>,
        output_value: &str,
    ) -> PyResult<Bound<'py, PyAny>> {
        let _ = show_progress_bar;
        match output_value {
            "sentence_embedding" => {}
            "token_embeddings" => {
                let (texts, single) = texts_of(sentences)?;
                let batch = count("batch_size", batch_size)?.max(1);
                return crate::sparse::token_embeddings(
                    py,
                    &self.model,
                    &texts,
                    single,
                    self.limit(),
                    batch,
                );
            }
            other => {
                return Err(invalid_input(format!(
                    "output_value must be \"sentence_embedding\" or \"token_embeddings\", got {other:?}"
                )))
            }
        }
        let args = Encode {
            batch_size,
            normalize_embeddings,
            prompt_name,
            prompt,
            truncate_dim,
            precision: precision.to_string(),
            ranges,
            convert_to_numpy,
            instruction,
        };
        self.encode_with(py, sentences, args, None)
    }

    /// `encode` for search queries: with no `prompt_name` or `prompt`, the model's "query"
    /// prompt is used if it has one (sentence-transformers 5+ `encode_query`).
    #[pyo3(signature = (
        sentences, *, batch_size = 32, normalize_embeddings = false, prompt_name = None,
        prompt = None, truncate_dim = None, precision = "float32", ranges = None,
        show_progress_bar = None, convert_to_numpy = true, instruction = None
    ))]
    #[allow(clippy::too_many_arguments)]
    fn encode_query<'py>(
        &self,
        py: Python<'py>,
        sentences: &Bound<'py, PyAny>,
        batch_size: i64,
        normalize_embeddings: bool,
        prompt_name: Option<String>,
        prompt: Option<String>,
        truncate_dim: Option<i64>,
        precision: &str,
        ranges: Option<PyArrayLikeDyn<'py, f32, AllowTypeChange>>,
        show_progress_bar: Option<bool>,
        convert_to_numpy: bool,
        instruction: Option<String>,
    ) -> PyResult<Bound<'py, PyAny>> {
        let _ = show_progress_bar;
        let args = Encode {
            batch_size,
            normalize_embeddings,
            prompt_name,
            prompt,
            truncate_dim,
            precision: precision.to_string(),
            ranges,
            convert_to_numpy,
            instruction,
        };
        self.encode_with(py, sentences, args, Some(InputType::Query))
    }

    /// `encode` for documents: with no `prompt_name` or `prompt`, the first of the model's
    /// "document", "passage", "corpus" and "doc" prompts is used (sentence-transformers 5+
    /// `encode_document`).
    #[pyo3(signature = (
        sentences, *, batch_size = 32, normalize_embeddings = false, prompt_name = None,
        prompt = None, truncate_dim = None, precision = "float32", ranges = None,
        show_progress_bar = None, convert_to_numpy = true, instruction = None
    ))]
    #[allow(clippy::too_many_arguments)]
    fn encode_document<'py>(
        &self,
        py: Python<'py>,
        sentences: &Bound<'py, PyAny>,
        batch_size: i64,
        normalize_embeddings: bool,
        prompt_name: Option<String>,
        prompt: Option<String>,
        truncate_dim: Option<i64>,
        precision: &str,
        ranges: Option<PyArrayLikeDyn<'py, f32, AllowTypeChange>>,
        show_progress_bar: Option<bool>,
        convert_to_numpy: bool,
        instruction: Option<String>,
    ) -> PyResult<Bound<'py, PyAny>> {
        let _ = show_progress_bar;
        let args = Encode {
            batch_size,
            normalize_embeddings,
            prompt_name,
            prompt,
            truncate_dim,
            precision: precision.to_string(),
            ranges,
            convert_to_numpy,
            instruction,
        };
        self.encode_with(py, sentences, args, Some(InputType::Document))
    }

    /// Sparse vectors of a sparse encoder (a SPLADE model, kind "sparse"), as
    /// sentence-transformers' `SparseEncoder.encode`: for each input an `(indices, values)` pair
    /// of arrays (int64 vocabulary ids by increasing id, float32 weights); one pair for a single
    /// string.
    ///
    /// input_type: "document" (the default) or "query": an inference-free model encodes queries
    ///     by a weight look-up per token, with no model pass (`encode_query`).
    /// top_k: keep only the k largest weights of each vector (`max_active_dims`).
    /// csr: return `((data, indices, indptr), shape)`, the arguments of
    ///     `scipy.sparse.csr_matrix`, instead of per-text pairs.
    /// truncate: cut inputs over the limit; False raises InvalidInputError naming the input.
    ///
    /// Example: `indices, values = ember.Embedder("Splade_PP_en_v1").encode_sparse("a fox")`
    /// gives int64 `indices` and float32 `values` of equal length.
    #[pyo3(signature = (
        sentences, *, input_type = "document", top_k = None, batch_size = 32, truncate = true,
        csr = false
    ))]
    #[allow(clippy::too_many_arguments)]
    fn encode_sparse<'py>(
        &self,
        py: Python<'py>,
        sentences: &Bound<'py, PyAny>,
        input_type: &str,
        top_k: Option<i64>,
        batch_size: i64,
        truncate: bool,
        csr: bool,
    ) -> PyResult<Bound<'py, PyAny>> {
        let (texts, single) = texts_of(sentences)?;
        let query = match input_type {
            "query" => true,
            "document" | "passage" => false,
            other => {
                return Err(invalid_input(format!(
                    "input_type must be \"query\" or \"document\", got {other:?}"
                )))
            }
        };
        let opts = ember_core::SparseOptions {
            top_k: top_k.map(|k| count("top_k", k)).transpose()?,
            query,
            truncate,
            max_length: self.max_length,
            batch_size: count("batch_size", batch_size)?,
            ..ember_core::SparseOptions::default()
        };
        crate::sparse::encode_sparse(py, &self.model, &texts, single, &opts, csr)
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
        Ok(tokens.into_iter().map(|t| t.token).collect())
    }

    /// Token counts of `inputs` after truncation to `max_seq_length` (special tokens included).
    fn count_tokens(&self, py: Python<'_>, inputs: &Bound<'_, PyAny>) -> PyResult<Vec<usize>> {
        let (texts, _) = texts_of(inputs)?;
        let (model, limit) = (&self.model, self.limit());
        let counts = detached(py, || model.count_tokens(&texts))?;
        Ok(counts.into_iter().map(|n| n.min(limit)).collect())
    }

    /// Length of the output vectors.
    #[getter]
    fn dimension(&self) -> usize {
        self.model.dimension()
    }

    /// Longest input, in tokens, before truncation.
    #[getter(max_seq_length)]
    fn seq_limit(&self) -> usize {
        self.limit()
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

    /// The model's catalog entry, as `ember.get_model_spec` gives it, plus `dtype`: the dtype
    /// this instance's weights are stored in (`default_dtype` is the catalog's recommendation).
    #[getter]
    fn spec<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        let spec = to_python(py, &self.spec)?;
        spec.cast::<PyDict>()?.set_item("dtype", self.dtype())?;
        Ok(spec)
    }

    /// Facts read from the model's files: architecture, dimension, max_seq_length, pooling,
    /// normalize (whether its pipeline ends in L2 normalization), prompts, vocab_size, bytes,
    /// path.
    #[getter]
    fn info<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        to_python(py, self.model.info())
    }

    /// SHA-256 of the model's safetensors weights, hex (for one `model.safetensors`, the
    /// digest the Hugging Face Hub lists for the file). Read once per loaded model.
    #[getter]
    fn weights_sha256(&self, py: Python<'_>) -> PyResult<String> {
        let model = &self.model;
        detached(py, || model.weights_sha256().map(str::to_string))
    }

    /// The identity of the vectors `embed` makes with these options, as a dict: `id`,
    /// `revision`, `architecture`, `weights_sha256`, `dimension`, `dtype`, `pooling`,
    /// `normalize`, `prompt_name`, `prompt` (the literal prefix, or None) and `max_seq_length`.
    /// Vectors whose identities differ must not be compared.
    ///
    /// input_type: "query" or "document": the prompt that task picks in this model (none if
    ///     the model has no such prompt); or name `prompt_name` / `prompt` as in `embed`.
    ///
    /// >>> ember.Embedder("all-MiniLM-L6-v2").identity(input_type="document")["dimension"]
    /// 384
    #[pyo3(signature = (*, input_type = None, prompt_name = None, prompt = None, normalize = true))]
    fn identity<'py>(
        &self,
        py: Python<'py>,
        input_type: Option<&str>,
        prompt_name: Option<String>,
        prompt: Option<String>,
        normalize: bool,
    ) -> PyResult<Bound<'py, PyAny>> {
        let base = self.options(EmbedOptions {
            normalize,
            ..EmbedOptions::default()
        });
        let opts = task_options(&self.model, base, input_type, prompt_name, prompt)?;
        let model = &self.model;
        let identity = detached(py, || model.identity(&opts))?;
        let out = to_python(py, &identity)?;
        out.cast::<PyDict>()?
            .set_item("revision", &self.spec.revision)?;
        Ok(out)
    }

    /// Splits `text` into windows of at most `max_tokens` of this model's tokens, each starting
    /// `max_tokens - overlap` tokens after the previous one. Returns `(start, end, tokens)` per
    /// chunk: `text[start:end]` is the chunk. A text that fits is one chunk.
    ///
    /// `max_tokens` plus the special tokens and the prompt (`input_type`, `prompt_name`,
    /// `prompt`, as in `identity`) must fit `max_seq_length`, else InvalidInputError names the
    /// largest value that fits.
    ///
    /// >>> m = ember.Embedder("all-MiniLM-L6-v2")
    /// >>> [t for _, _, t in m.chunk("one two three four five", 2, 1)]
    /// [2, 2, 2, 2]
    #[pyo3(signature = (text, max_tokens, overlap = 0, *, input_type = None, prompt_name = None, prompt = None))]
    #[allow(clippy::too_many_arguments)]
    fn chunk(
        &self,
        py: Python<'_>,
        text: &str,
        max_tokens: i64,
        overlap: i64,
        input_type: Option<&str>,
        prompt_name: Option<String>,
        prompt: Option<String>,
    ) -> PyResult<Vec<(usize, usize, usize)>> {
        let (max_tokens, overlap) = (count("max_tokens", max_tokens)?, count("overlap", overlap)?);
        let base = self.options(EmbedOptions::default());
        let opts = task_options(&self.model, base, input_type, prompt_name, prompt)?;
        let model = &self.model;
        let chunks = detached(py, || model.chunk(text, max_tokens, overlap, &opts))?;
        Ok(Chunk::in_chars(text, &chunks)
            .iter()
            .map(|c| (c.start, c.end, c.tokens))
            .collect())
    }

    /// sentence-transformers' name for `dimension`.
    fn get_sentence_embedding_dimension(&self) -> usize {
        self.model.dimension()
    }

    /// sentence-transformers' name for `max_seq_length`.
    fn get_max_seq_length(&self) -> usize {
        self.limit()
    }

    fn __repr__(&self) -> String {
        format!(
            "Embedder({:?}, dtype={:?}, dimension={}, max_seq_length={})",
            self.model.id(),
            self.dtype(),
            self.model.dimension(),
            self.limit()
        )
    }
}
