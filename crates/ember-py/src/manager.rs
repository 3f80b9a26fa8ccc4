//! `ember.ModelManager`: several models side by side in one process, bounded by a model count
//! and a memory budget, with explicit load/unload, keep-alive, status and stats (the core's
//! `ModelManager`).

use std::collections::HashMap;

use ember_core::{EmbedOptions, Error, ManagerConfig, ModelManager, Resolver};
use pyo3::prelude::*;
use pyo3::types::PyList;

use crate::arrays::{count, embed_chunked, texts_of, to_array};
use crate::catalog::{env_max_input_tokens, manager, to_python};
use crate::errors::{detached, invalid_input, IntoPyException};
use crate::options;

/// Models kept loaded side by side, keyed by (model, dtype), in least-recently-used order.
///
/// A model loads on first use; when `max_models` or `max_memory` would be exceeded, the least
/// recently used models that are not pinned and not in use are unloaded. The memory budget
/// counts the bytes each model really holds (weights and tokenizer). The manager starts with a
/// copy of the current catalog (`ember.models()`, including `ember.register_model` entries);
/// it loads its own copies of models, separate from `ember.Embedder`'s.
///
/// max_models: most (model, dtype) pairs held at once.
/// max_memory: memory budget in bytes, an int or a size such as "2GB" or "512MiB"; None:
///     unbounded. A model larger than the whole budget raises CapacityError.
/// pinned: model ids never evicted (the default model is always pinned too).
/// keep_alive: how long an idle model stays loaded, as Ollama takes it: seconds, "5m", "1h",
///     "-1" (forever, the default) or 0 (unload right after each call); a timedelta works too.
/// dtypes: per-model weight dtype, e.g. {"all-mpnet-base-v2": "int8"}, overriding the catalog.
/// max_input_tokens: most tokens of one input, whatever the model's own maximum: models trained
///     on longer inputs (Qwen3-Embedding: 32768) are cut to it, or refused with
///     `truncate=False`. None: EMBER_MAX_INPUT_TOKENS, else 8192 (the server's
///     `--max-input-tokens`).
///
/// >>> mm = ember.ModelManager(max_models=2, max_memory="1GB")
/// >>> mm.embed(["hello", "world"], model="all-MiniLM-L6-v2", dtype="int8").shape
/// (2, 384)
/// >>> [(s["id"], [i["dtype"] for i in s["instances"]]) for s in mm.status() if s["loaded"]]
/// [('all-MiniLM-L6-v2', ['int8'])]
/// >>> mm.unload("all-MiniLM-L6-v2", "int8")
/// 1
#[pyclass(frozen, module = "ember", name = "ModelManager")]
#[derive(Debug)]
pub(crate) struct PyModelManager {
    manager: ModelManager,
}

#[pymethods]
impl PyModelManager {
    #[new]
    #[pyo3(signature = (
        max_models = 16, max_memory = None, pinned = None, keep_alive = None, *, dtypes = None,
        max_input_tokens = None
    ))]
    fn new(
        py: Python<'_>,
        max_models: i64,
        max_memory: Option<&Bound<'_, PyAny>>,
        pinned: Option<Vec<String>>,
        keep_alive: Option<&Bound<'_, PyAny>>,
        dtypes: Option<HashMap<String, String>>,
        max_input_tokens: Option<i64>,
    ) -> PyResult<Self> {
        let defaults = ManagerConfig::default();
        let max_models = count("max_models", max_models)?;
        let dtypes = dtypes
            .unwrap_or_default()
            .into_iter()
            .map(|(id, d)| Ok((id, d.parse().map_err(IntoPyException::into_exception)?)))
            .collect::<PyResult<HashMap<_, _>>>()?;
        let config = ManagerConfig {
            max_models,
            max_memory: options::bytes(max_memory, "max_memory")?,
            pinned: pinned.unwrap_or_default(),
            keep_alive: options::keep_alive(keep_alive)?.unwrap_or(defaults.keep_alive),
            dtypes,
            max_input_tokens: match max_input_tokens {
                None => env_max_input_tokens().map_err(invalid_input)?,
                Some(n) => count("max_input_tokens", n)?,
            },
            ..defaults
        };
        if config.max_models == 0 {
            return Err(invalid_input("`max_models` must be at least 1"));
        }
        if config.max_input_tokens == 0 {
            return Err(invalid_input("`max_input_tokens` must be at least 1"));
        }
        let manager = detached(py, || {
            let registry = manager().registry()?;
            Ok::<_, Error>(ModelManager::with_config(
                registry,
                Resolver::from_env(),
                config,
            ))
        })?;
        Ok(Self { manager })
    }

    /// Embeds `texts` (a string -> shape `(dimension,)`, a sequence -> `(len(texts),
    /// dimension)`) with `model` (the default model when None) in `dtype` (the model's default
    /// when None), loading it first if needed; float32 vectors, L2-normalized by default.
    ///
    /// normalize, dimensions, prompt_name, truncate, batch_size: as in `Embedder.embed`.
    /// keep_alive: sets the model's keep-alive from this call, as Ollama's `keep_alive` does
    ///     (0 unloads it right after).
    ///
    /// Raises CapacityError when the model cannot fit the budget.
    #[pyo3(signature = (
        texts, model = None, dtype = None, *, normalize = true, dimensions = None,
        prompt_name = None, truncate = true, batch_size = 32, keep_alive = None
    ))]
    #[allow(clippy::too_many_arguments)]
    fn embed<'py>(
        &self,
        py: Python<'py>,
        texts: &Bound<'py, PyAny>,
        model: Option<String>,
        dtype: Option<String>,
        normalize: bool,
        dimensions: Option<i64>,
        prompt_name: Option<String>,
        truncate: bool,
        batch_size: i64,
        keep_alive: Option<&Bound<'py, PyAny>>,
    ) -> PyResult<Bound<'py, PyAny>> {
        let (texts, single) = texts_of(texts)?;
        let dtype = options::dtype(dtype.as_deref())?;
        let keep_alive = options::keep_alive(keep_alive)?;
        let opts = EmbedOptions {
            normalize,
            dimensions: dimensions.map(|d| count("dimensions", d)).transpose()?,
            prompt_name,
            truncate,
            batch_size: count("batch_size", batch_size)?,
            ..EmbedOptions::default()
        };
        let mm = &self.manager;
        let embedder = detached(py, || {
            mm.check_kind(model.as_deref(), ember_core::ModelKind::Embedder, "embed")?;
            mm.lease(model.as_deref(), dtype)
        })?;
        if let Some(k) = keep_alive {
            embedder.set_keep_alive(k);
        }
        let result = embed_chunked(py, &embedder, &texts, &opts);
        // The lease ends (last use refreshed, keep-alive 0 applied) whether or not embedding
        // failed; its lock is taken without the GIL.
        py.detach(move || drop(embedder));
        let (data, dim) = result?;
        to_array(py, data, dim, single)
    }

    /// Ranks `documents` against `query` with the reranker `model` (kind "reranker"; an
    /// embedder raises InvalidInputError naming its kind), best first: a list of
    /// `{"corpus_id", "score"}` (plus `"text"` with `return_documents`), cut to `top_k`, as
    /// `ember.Reranker.rank` gives it. The reranker shares this manager's budget, LRU and
    /// keep-alive with its embedders.
    ///
    /// Example: `mm.rerank("capital of France", ["Berlin", "Paris"],
    /// model="ms-marco-MiniLM-L6-v2")[0]["corpus_id"]` is `1` with the trained model.
    #[pyo3(signature = (
        query, documents, model, dtype = None, *, top_k = None, return_documents = false,
        raw_scores = false, truncate = true, batch_size = 32, keep_alive = None
    ))]
    #[allow(clippy::too_many_arguments)]
    fn rerank<'py>(
        &self,
        py: Python<'py>,
        query: String,
        documents: &Bound<'py, PyAny>,
        model: String,
        dtype: Option<String>,
        top_k: Option<i64>,
        return_documents: bool,
        raw_scores: bool,
        truncate: bool,
        batch_size: i64,
        keep_alive: Option<&Bound<'py, PyAny>>,
    ) -> PyResult<Bound<'py, PyList>> {
        let (docs, _) = texts_of(documents)?;
        let dtype = options::dtype(dtype.as_deref())?;
        let keep_alive = options::keep_alive(keep_alive)?;
        let top_k = top_k.map(|k| count("top_k", k)).transpose()?;
        let opts = ember_core::RerankOptions {
            raw_scores,
            truncate,
            batch_size: count("batch_size", batch_size)?,
            ..ember_core::RerankOptions::default()
        };
        let mm = &self.manager;
        let ranked = detached(py, || {
            if let Some(k) = keep_alive {
                mm.check_kind(Some(&model), ember_core::ModelKind::Reranker, "rerank")?;
                mm.lease(Some(&model), dtype)?.set_keep_alive(k);
            }
            mm.rerank(Some(&model), dtype, &query, &docs, &opts)
        })?;
        let out = PyList::empty(py);
        for r in ranked.results.iter().take(top_k.unwrap_or(usize::MAX)) {
            let d = pyo3::types::PyDict::new(py);
            d.set_item("corpus_id", r.index)?;
            d.set_item("score", r.score)?;
            if return_documents {
                d.set_item("text", &docs[r.index])?;
            }
            out.append(d)?;
        }
        Ok(out)
    }

    /// Loads `model` in `dtype` now (if not loaded yet) and sets its keep-alive (the manager's
    /// when None); returns its status, as `model_status` gives it.
    #[pyo3(signature = (model, dtype = None, keep_alive = None))]
    fn load<'py>(
        &self,
        py: Python<'py>,
        model: String,
        dtype: Option<String>,
        keep_alive: Option<&Bound<'py, PyAny>>,
    ) -> PyResult<Bound<'py, PyAny>> {
        let dtype = options::dtype(dtype.as_deref())?;
        let keep_alive = options::keep_alive(keep_alive)?;
        let mm = &self.manager;
        let status = detached(py, || mm.load(&model, dtype, keep_alive))?;
        to_python(py, &status)
    }

    /// Unloads `model` in `dtype` (every dtype when None); returns how many instances left.
    /// A model still in use by a running call is released when that call ends. Pinned models
    /// raise InvalidInputError.
    #[pyo3(signature = (model, dtype = None))]
    fn unload(&self, py: Python<'_>, model: String, dtype: Option<String>) -> PyResult<usize> {
        let dtype = options::dtype(dtype.as_deref())?;
        let mm = &self.manager;
        detached(py, || mm.unload(&model, dtype))
    }

    /// One dict per catalog model (and per model directory loaded): the catalog entry plus
    /// `state` ("unloaded", "loading", "loaded", "failed"), `loaded`, `bytes` held, `dtype`
    /// (the default one), `error`, `counters` (since the manager started, kept across evictions
    /// and reloads: `hits`, `misses`, `loads`, `load_failures`, `evictions` by reason), and
    /// `instances`: per loaded dtype its `bytes`, `load_ms`, `loaded_at_ms` and `last_used_ms`
    /// (Unix epoch ms), `hits` (since this load), `keep_alive` (seconds, -1 = forever),
    /// `expires_at_ms`, `pinned`, `in_use`, and that dtype's `counters`.
    fn status<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyList>> {
        let mm = &self.manager;
        let status = detached(py, || mm.status())?;
        let items = status
            .iter()
            .map(|s| to_python(py, s))
            .collect::<PyResult<Vec<_>>>()?;
        PyList::new(py, items)
    }

    /// The status dict of one model (see `status`).
    fn model_status<'py>(&self, py: Python<'py>, model: String) -> PyResult<Bound<'py, PyAny>> {
        let mm = &self.manager;
        let status = detached(py, || mm.model_status(&model))?;
        to_python(py, &status)
    }

    /// Counters and memory: `hits`, `misses`, `loads`, `load_failures`, `evictions` (by reason:
    /// lru, memory, keep_alive, unload, replaced; every model's `counters` summed),
    /// `bytes_in_use`, `bytes_budget`, `bytes_draining` (evicted models still in use),
    /// `models_loaded`, `max_models`.
    fn stats<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        let mm = &self.manager;
        let stats = detached(py, || mm.stats())?;
        to_python(py, &stats)
    }

    fn __repr__(&self) -> String {
        let c = self.manager.config();
        let memory = c
            .max_memory
            .map_or_else(|| "None".to_string(), |m| m.to_string());
        format!(
            "ModelManager(max_models={}, max_memory={memory}, keep_alive={})",
            c.max_models, c.keep_alive
        )
    }
}
