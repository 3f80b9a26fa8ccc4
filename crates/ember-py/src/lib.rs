//! `ember._native`: thin PyO3 bindings over `ember-core` (models, embeddings) and `ember-server`
//! (`serve`); the `ember` package re-exports them.

use std::path::PathBuf;

use ember_server::Flags;
use pyo3::prelude::*;

mod arrays;
mod catalog;
mod embedder;
mod errors;
mod identity;
mod logging;
mod manager;
mod options;
mod reranker;
mod sparse;

use errors::{detached, invalid_input};

/// The kernels this process computes with, as `{"f32": ..., "int8": ..., "threads": n}`: the
/// instruction sets picked at run time for this CPU (after any `EMBER_ISA` cap; f32 `avx512f`,
/// `avx2+fma` or `portable`, INT8 `avx512-vnni`, `avx2`, `neon-dotprod` or `portable`) and the
/// thread budget (`EMBER_NUM_THREADS`, default: the number of cores).
#[pyfunction]
fn kernels(py: Python<'_>) -> PyResult<Bound<'_, pyo3::types::PyDict>> {
    let k = ember_core::kernels::info();
    let d = pyo3::types::PyDict::new(py);
    d.set_item("f32", k.f32)?;
    d.set_item("int8", k.int8)?;
    d.set_item("threads", k.threads)?;
    Ok(d)
}

/// Runs Ember's HTTP server in this process until Ctrl-C or SIGTERM; the GIL is released while
/// it runs. Arguments left as None take their `EMBER_*` environment variable, else the server's
/// default (host 127.0.0.1, port 8080).
///
/// host: address to listen on.
/// port: port to listen on (0 picks a free one; the chosen port is logged).
/// models: models to load at start (ids, aliases or model directories).
/// default_model: the model a request that names none gets.
/// models_file: a TOML file adding `[[models]]` entries to the catalog.
/// max_body_bytes: largest request body accepted.
/// max_client_batch: most inputs one request may carry.
/// lazy: load the default model on first use instead of at start.
/// config: a TOML server configuration (models to preload with dtype, keep-alive, pinning and
///     warm-up; budgets, limits, keys), as `ember serve --config`.
#[pyfunction]
#[pyo3(signature = (
    host = None, port = None, models = None, default_model = None, models_file = None, *,
    max_body_bytes = None, max_client_batch = None, lazy = None, config = None
))]
#[allow(clippy::too_many_arguments)]
fn serve(
    py: Python<'_>,
    host: Option<String>,
    port: Option<u16>,
    models: Option<Vec<String>>,
    default_model: Option<String>,
    models_file: Option<PathBuf>,
    max_body_bytes: Option<usize>,
    max_client_batch: Option<usize>,
    lazy: Option<bool>,
    config: Option<PathBuf>,
) -> PyResult<()> {
    // The arguments become flags, so they win over a configuration file as flags do. A bad
    // value or EMBER_* variable raises instead of making clap exit the Python process.
    let mut argv = vec!["ember serve".to_string()];
    let mut flag = |name: &str, value: Option<String>| {
        if let Some(v) = value {
            argv.push(format!("--{name}={v}"));
        }
    };
    flag("host", host);
    flag("port", port.map(|p| p.to_string()));
    flag("model", models.map(|m| m.join(",")));
    flag("default-model", default_model);
    flag("models-file", models_file.map(|p| p.display().to_string()));
    flag("max-body-bytes", max_body_bytes.map(|n| n.to_string()));
    flag("max-client-batch", max_client_batch.map(|n| n.to_string()));
    flag("lazy", lazy.map(|b| b.to_string()));
    flag("config", config.map(|p| p.display().to_string()));
    let flags =
        Flags::try_parse_from(argv).map_err(|e| invalid_input(e.to_string().trim().to_string()))?;
    logging::for_server();
    detached(py, || ember_server::serve_blocking(&flags))
}

/// Runs `ember serve ARGS...`: the arguments are parsed exactly as the `ember-server` binary
/// parses them (every flag, its `EMBER_*` variable, `--help`), then the server runs in this
/// process until Ctrl-C or SIGTERM with the GIL released. Returns `(exit status, text)`: when the
/// arguments ask for help or are wrong, the server does not start and `text` is clap's message
/// (status 0 for help, 2 for a usage error).
#[pyfunction]
fn serve_cli(py: Python<'_>, argv: Vec<String>) -> PyResult<(i32, String)> {
    let flags = match Flags::try_parse_from(std::iter::once("ember serve".to_string()).chain(argv))
    {
        Ok(flags) => flags,
        Err(e) => return Ok((if e.use_stderr() { 2 } else { 0 }, e.render().to_string())),
    };
    logging::for_server();
    detached(py, || ember_server::serve_blocking(&flags))?;
    Ok((0, String::new()))
}

/// Ember's native extension: text-embedding models in Rust. Use it through `import ember`.
#[pymodule(gil_used = false)]
fn _native(m: &Bound<'_, PyModule>) -> PyResult<()> {
    logging::init();
    m.add("__version__", env!("CARGO_PKG_VERSION"))?;
    m.add_class::<embedder::PyEmbedder>()?;
    m.add_class::<manager::PyModelManager>()?;
    m.add_class::<reranker::PyReranker>()?;
    m.add_function(wrap_pyfunction!(catalog::models, m)?)?;
    m.add_function(wrap_pyfunction!(catalog::get_model_spec, m)?)?;
    m.add_function(wrap_pyfunction!(catalog::register_model, m)?)?;
    m.add_function(wrap_pyfunction!(catalog::load_models_file, m)?)?;
    m.add_function(wrap_pyfunction!(catalog::set_default_model, m)?)?;
    m.add_function(wrap_pyfunction!(catalog::download_model, m)?)?;
    m.add_function(wrap_pyfunction!(kernels, m)?)?;
    m.add_function(wrap_pyfunction!(identity::prompt_name_for, m)?)?;
    m.add_function(wrap_pyfunction!(serve, m)?)?;
    m.add_function(wrap_pyfunction!(serve_cli, m)?)?;
    Ok(())
}
