//! Ember's HTTP server: an `app(state)` router factory that tests and binaries mount, and
//! [`serve_blocking`] that runs it with start-up loading and graceful shutdown.

pub mod auth;
pub mod batching;
pub mod config;
pub mod engine;
pub mod error;
pub mod json;
pub mod metrics;
pub mod middleware;
pub mod routes;
pub mod settings;
pub mod warmup;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use axum::extract::DefaultBodyLimit;
use axum::http::Uri;
use axum::middleware::from_fn_with_state;
use axum::routing::get;
use axum::Router;
use ember_core::registry::PathPolicy;
use ember_core::{ModelManager, Registry, Resolver};
use tokio::sync::Semaphore;

pub use auth::AuthConfig;
pub use batching::{BatchConfig, Batcher};
pub use config::ServeArgs;
pub use error::ApiError;
pub use metrics::Metrics;
pub use settings::Settings;

/// Request limits enforced by the handlers.
#[derive(Debug, Clone)]
pub struct Limits {
    /// Most inputs one request may carry.
    pub max_client_batch: usize,
    /// Largest body, in bytes.
    pub max_body_bytes: usize,
    /// Most characters in one input.
    pub max_input_chars: usize,
    /// Most characters in one request, all inputs together.
    pub max_total_chars: usize,
}

impl Default for Limits {
    fn default() -> Self {
        let args = ServeArgs::default();
        Self {
            max_client_batch: args.max_client_batch,
            max_body_bytes: args.max_body_bytes,
            max_input_chars: args.max_input_chars,
            max_total_chars: args.max_total_chars,
        }
    }
}

/// What every handler shares.
#[derive(Debug, Clone)]
pub struct AppState {
    pub manager: Arc<ModelManager>,
    /// False until start-up loading and warm-up have finished (and again once shutting down).
    pub ready: Arc<AtomicBool>,
    pub limits: Limits,
    /// The per-model batch queues every embedding goes through.
    pub batcher: Batcher,
    pub metrics: Metrics,
    pub auth: Arc<AuthConfig>,
    /// Permits for requests served at once.
    pub inflight: Arc<Semaphore>,
    max_concurrent: usize,
    /// Start-up models and how their load and warm-up went.
    pub startup: Arc<warmup::Startup>,
    /// Time a client has to send a request body (`--body-timeout`); `None`: no limit.
    pub body_timeout: Option<Duration>,
}

impl AppState {
    /// State over `manager`, already marked ready, with default batching, no keys and the default
    /// concurrency limit (tests; `serve` builds its state from the configuration). Which model
    /// directories requests may name is the manager's registry's [`PathPolicy`]
    /// ([`build_manager_for`] sets it from `--model-roots`).
    pub fn new(manager: Arc<ModelManager>, limits: Limits) -> Self {
        let metrics = Metrics::default();
        let max_concurrent = config::DEFAULT_MAX_CONCURRENT;
        Self {
            batcher: Batcher::new(manager.clone(), metrics.clone(), BatchConfig::default()),
            manager,
            ready: Arc::new(AtomicBool::new(true)),
            limits,
            metrics,
            auth: Arc::new(AuthConfig::default()),
            inflight: Arc::new(Semaphore::new(max_concurrent)),
            max_concurrent,
            startup: Arc::default(),
            body_timeout: Some(Duration::from_secs(config::DEFAULT_BODY_TIMEOUT)),
        }
    }

    /// The same state with other batch queue bounds (a fresh set of queues).
    pub fn with_batching(mut self, config: BatchConfig) -> Self {
        self.batcher = Batcher::new(self.manager.clone(), self.metrics.clone(), config);
        self
    }

    /// The same state with API keys / an admin key.
    pub fn with_auth(mut self, auth: AuthConfig) -> Self {
        self.auth = Arc::new(auth);
        self
    }

    /// The same state serving at most `n` requests at once.
    pub fn with_max_concurrent(mut self, n: usize) -> Self {
        self.max_concurrent = n.max(1);
        self.inflight = Arc::new(Semaphore::new(self.max_concurrent));
        self
    }

    /// The same state giving clients `timeout` to send a request body (`None`: no limit).
    pub fn with_body_timeout(mut self, timeout: Option<Duration>) -> Self {
        self.body_timeout = timeout;
        self
    }

    /// The limit on requests served at once.
    pub fn limits_max_concurrent(&self) -> usize {
        self.max_concurrent
    }

    /// State for `settings` over `manager`, not ready until start-up ends.
    pub fn from_settings(settings: &Settings, manager: Arc<ModelManager>) -> Self {
        let a = &settings.args;
        let limits = Limits {
            max_client_batch: a.max_client_batch,
            max_body_bytes: a.max_body_bytes,
            max_input_chars: a.max_input_chars,
            max_total_chars: a.max_total_chars,
        };
        let state = Self::new(manager, limits)
            .with_batching(BatchConfig {
                max_batch_tokens: a.max_batch_tokens,
                max_batch_requests: a.max_batch_requests,
                max_batch_size: a.max_batch_size,
                queue_size: a.queue_size,
                ..BatchConfig::default()
            })
            .with_auth(AuthConfig {
                api_keys: a.api_keys.clone(),
                admin_key: a.admin_key.clone(),
                metrics_require_key: a.metrics_require_key,
            })
            .with_max_concurrent(a.max_concurrent_requests)
            .with_body_timeout((a.body_timeout > 0).then(|| Duration::from_secs(a.body_timeout)));
        state.ready.store(false, Ordering::Release);
        state
    }
}

/// The router with every route, `/metrics`, JSON fallbacks and the middleware stack (outermost
/// first): request id, span and metrics; API keys; the body read under its deadline and size
/// limit; the concurrency limit; the body limit.
pub fn app(state: AppState) -> Router {
    let body_limit = state.limits.max_body_bytes;
    routes::router()
        .route("/metrics", get(middleware::metrics))
        .fallback(|uri: Uri| async move {
            middleware::render(uri.path(), ApiError::no_route(uri.path()))
        })
        .method_not_allowed_fallback(|uri: Uri| async move {
            let e = ApiError {
                status: axum::http::StatusCode::METHOD_NOT_ALLOWED,
                kind: "method_not_allowed",
                message: format!("method not allowed on {}", uri.path()),
            };
            middleware::render(uri.path(), e)
        })
        .layer(DefaultBodyLimit::max(body_limit))
        .layer(from_fn_with_state(
            state.clone(),
            middleware::limit_concurrency,
        ))
        .layer(from_fn_with_state(state.clone(), middleware::read_body))
        .layer(from_fn_with_state(state.clone(), auth::require_key))
        .layer(from_fn_with_state(state.clone(), middleware::track))
        .with_state(state)
}

/// Builds the manager from `args`: the catalog, the user's models file and the default model,
/// with the configuration file's budgets when `args.config` names one.
pub fn build_manager(args: &ServeArgs) -> anyhow::Result<ModelManager> {
    build_manager_for(&Settings::load(args.clone())?)
}

/// Builds the manager for `settings`: catalog, models file, default model, budgets, pinned
/// models and their dtypes, and the model roots requests may name directories under.
pub fn build_manager_for(settings: &Settings) -> anyhow::Result<ModelManager> {
    let mut resolver = Resolver::from_env();
    resolver.progress = true;
    build_manager_with(settings, resolver)
}

/// [`build_manager_for`] with `resolver` finding the models' files (its `models_dir`, when it
/// exists, counts as a model root).
pub fn build_manager_with(settings: &Settings, resolver: Resolver) -> anyhow::Result<ModelManager> {
    let args = &settings.args;
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
    // Model directories the operator names for start-up join the catalog too, so they keep
    // working once requests are held to the model roots below.
    for p in &settings.preload {
        if let Ok(spec) = registry.lookup(&p.id) {
            if !registry.models().iter().any(|m| m.id == spec.id) {
                registry.register(spec)?;
            }
        }
    }
    let config = settings.manager_config(|id| registry.lookup(id).ok().map(|s| s.id));
    let mut roots = args.model_roots.clone();
    if let Some(dir) = resolver.models_dir.as_ref().filter(|d| d.is_dir()) {
        roots.push(dir.clone());
    }
    registry.set_path_policy(
        PathPolicy::under_roots(&roots)
            .context("model roots (--model-roots, EMBER_MODEL_ROOTS)")?,
    );
    tracing::info!(
        roots = roots.len(),
        "model directories by path: only under the model roots"
    );
    Ok(ModelManager::with_config(registry, resolver, config))
}

/// Serves `app` on `listener` until `shutdown` resolves, loading and warming up the start-up
/// models in the background (readiness turns true when they are done). `args.config`, when set,
/// is read and merged.
pub async fn serve(
    listener: tokio::net::TcpListener,
    args: &ServeArgs,
    manager: Arc<ModelManager>,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    let settings = Settings::load(args.clone())?;
    serve_settings(listener, &settings, manager, shutdown).await
}

/// [`serve`] with an already merged configuration. On `shutdown` the listener stops accepting,
/// readiness turns false, and in-flight requests get `shutdown_timeout` seconds to finish.
pub async fn serve_settings(
    listener: tokio::net::TcpListener,
    settings: &Settings,
    manager: Arc<ModelManager>,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    let a = &settings.args;
    let state = AppState::from_settings(settings, manager);
    let mut models: Vec<(Option<String>, settings::Preload)> = Vec::new();
    if !a.lazy {
        let id = state
            .manager
            .spec(None)
            .map_or_else(|_| "default".into(), |s| s.id);
        // The default model may also be configured (dtype, keep-alive, warm-up): use that entry.
        let entry = settings.preload.iter().find(|p| p.id == id).cloned();
        models.push((
            None,
            entry.unwrap_or(settings::Preload {
                id,
                dtype: None,
                keep_alive: None,
                pinned: true,
                warmup: true,
            }),
        ));
    }
    for p in &settings.preload {
        if !models.iter().any(|(_, m)| m.id == p.id) {
            models.push((Some(p.id.clone()), p.clone()));
        }
    }
    let plan = warmup::WarmupPlan {
        models,
        enabled: !a.no_warmup,
        batch_sizes: a.warmup_batch_sizes.clone(),
        max_batch_size: a.max_batch_size,
    };
    let startup_state = state.clone();
    tokio::task::spawn_blocking(move || warmup::run(&startup_state, &plan));

    let k = ember_core::kernels::info();
    tracing::info!(
        addr = %listener.local_addr()?,
        f32_kernels = k.f32,
        int8_kernels = k.int8,
        threads = k.threads,
        "ember listening"
    );
    let (stopping_tx, mut stopping_rx) = tokio::sync::watch::channel(false);
    let ready = state.ready.clone();
    let signal = async move {
        shutdown.await;
        ready.store(false, Ordering::Release);
        let _ = stopping_tx.send(true);
    };
    let grace = Duration::from_secs(a.shutdown_timeout);
    let deadline = async move {
        let _ = stopping_rx.wait_for(|stopping| *stopping).await;
        tokio::time::sleep(grace).await;
    };
    let server = axum::serve(listener, app(state)).with_graceful_shutdown(signal);
    tokio::select! {
        r = std::future::IntoFuture::into_future(server) => r?,
        () = deadline => tracing::warn!(
            seconds = grace.as_secs(),
            "in-flight requests did not finish in time (--shutdown-timeout); exiting anyway"
        ),
    }
    tracing::info!("stopped");
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
    // Before any thread exists: the soak's settled RSS drifted +24 % with glibc's default arenas.
    ember_core::manager::limit_allocator_arenas();
    let settings = Settings::load(args)?;
    // Secrets print as `<redacted>`.
    tracing::info!(config = ?settings, "effective configuration");
    let manager = Arc::new(build_manager_for(&settings)?);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async {
        let listener = tokio::net::TcpListener::bind(settings.args.addr()?).await?;
        serve_settings(listener, &settings, manager, shutdown_signal()).await
    })
}
