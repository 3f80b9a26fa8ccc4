//! Ember's HTTP server: an `app(state)` router factory that tests and binaries mount, and
//! [`serve_blocking`] that runs it with start-up loading and graceful shutdown.

pub mod config;
pub mod engine;
pub mod error;
pub mod json;
pub mod routes;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use axum::extract::DefaultBodyLimit;
use axum::http::Uri;
use axum::Router;
use ember_core::{ModelManager, Registry, Resolver};

pub use config::ServeArgs;
pub use error::ApiError;

/// Request limits enforced by the handlers.
#[derive(Debug, Clone)]
pub struct Limits {
    /// Most inputs one request may carry.
    pub max_client_batch: usize,
    /// Largest body, in bytes.
    pub max_body_bytes: usize,
    /// Most characters in one input.
    pub max_input_chars: usize,
}

impl Default for Limits {
    fn default() -> Self {
        let args = ServeArgs::default();
        Self {
            max_client_batch: args.max_client_batch,
            max_body_bytes: args.max_body_bytes,
            max_input_chars: args.max_input_chars,
        }
    }
}

/// What every handler shares.
#[derive(Debug, Clone)]
pub struct AppState {
    pub manager: Arc<ModelManager>,
    /// False until start-up loading has finished.
    pub ready: Arc<AtomicBool>,
    pub limits: Limits,
}

impl AppState {
    /// State over `manager`, already marked ready (tests; `serve` marks readiness itself).
    pub fn new(manager: Arc<ModelManager>, limits: Limits) -> Self {
        Self {
            manager,
            ready: Arc::new(AtomicBool::new(true)),
            limits,
        }
    }
}

/// The router with every route; errors, unknown routes and bad bodies answer in JSON.
pub fn app(state: AppState) -> Router {
    let body_limit = state.limits.max_body_bytes;
    routes::router()
        .fallback(|uri: Uri| async move { ApiError::no_route(uri.path()) })
        .method_not_allowed_fallback(|uri: Uri| async move {
            ApiError {
                status: axum::http::StatusCode::METHOD_NOT_ALLOWED,
                kind: "method_not_allowed",
                message: format!("method not allowed on {}", uri.path()),
            }
        })
        .layer(DefaultBodyLimit::max(body_limit))
        .with_state(state)
}

/// Builds the manager from `args`: the catalog, the user's models file and the default model.
pub fn build_manager(args: &ServeArgs) -> anyhow::Result<ModelManager> {
    let mut registry = Registry::builtin();
    if let Some(file) = &args.models_file {
        let n = registry.load_toml(file)?;
        tracing::info!(file = %file.display(), models = n, "models file read");
    }
    if let Some(default) = &args.default_model {
        let mut spec = registry.lookup(default)?;
        if registry.models().iter().any(|m| m.id == spec.id) {
            registry.set_default(&spec.id)?;
        } else {
            // A model directory given as the default joins the catalog.
            spec.is_default = true;
            registry.register(spec)?;
        }
    }
    let mut resolver = Resolver::from_env();
    resolver.progress = true;
    Ok(ModelManager::new(registry, resolver))
}

/// Serves `app` on `listener` until `shutdown` resolves, loading the start-up models in the
/// background (readiness turns true when they are loaded).
pub async fn serve(
    listener: tokio::net::TcpListener,
    args: &ServeArgs,
    manager: Arc<ModelManager>,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    let state = AppState {
        manager: manager.clone(),
        ready: Arc::new(AtomicBool::new(false)),
        limits: Limits {
            max_client_batch: args.max_client_batch,
            max_body_bytes: args.max_body_bytes,
            max_input_chars: args.max_input_chars,
        },
    };
    let ready = state.ready.clone();
    let mut startup: Vec<Option<String>> = if args.lazy { vec![] } else { vec![None] };
    startup.extend(args.models.iter().cloned().map(Some));
    tokio::task::spawn_blocking(move || {
        for id in startup {
            match manager.get(id.as_deref()) {
                Ok(m) => tracing::info!(model = m.id(), "ready to serve"),
                Err(e) => tracing::error!(model = ?id, error = %e, "start-up load failed"),
            }
        }
        ready.store(true, Ordering::Release);
    });
    tracing::info!(addr = %listener.local_addr()?, "ember listening");
    axum::serve(listener, app(state))
        .with_graceful_shutdown(shutdown)
        .await?;
    Ok(())
}

/// Resolves on Ctrl-C or SIGTERM.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {},
        _ = term => {},
    }
    tracing::info!("shutting down: finishing in-flight requests");
}

/// Runs the server until Ctrl-C / SIGTERM (blocking; builds its own runtime).
pub fn serve_blocking(args: ServeArgs) -> anyhow::Result<()> {
    let manager = Arc::new(build_manager(&args)?);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async {
        let listener = tokio::net::TcpListener::bind(args.addr()?).await?;
        serve(listener, &args, manager, shutdown_signal()).await
    })
}
