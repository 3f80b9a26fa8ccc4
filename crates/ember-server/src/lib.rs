//! Ember's HTTP server: an `app(state)` router factory that tests and binaries mount, and
//! [`serve_blocking`] that runs it with start-up loading and graceful shutdown.

pub mod auth;
pub mod batching;
pub mod config;
pub mod engine;
pub mod error;
pub mod json;
pub mod listen;
pub mod metrics;
pub mod middleware;
pub mod routes;
pub mod settings;
pub mod tasks;
pub mod traffic;
pub mod ui;
pub mod warmup;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use axum::Router;
use ember_core::registry::PathPolicy;
use ember_core::{ModelManager, Registry, Resolver};
use tokio::sync::Semaphore;

pub use auth::AuthConfig;
pub use batching::{BatchConfig, Batcher, Gate};
pub use config::{Flags, ServeArgs};
pub use error::{ApiError, ApiErrorKind};
pub use metrics::Metrics;
pub use settings::{Limits, Settings};

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
    /// Permits for requests served at once (`limits.max_concurrent_requests`).
    pub inflight: Arc<Semaphore>,
    /// Permits for bytes of request bodies held at once (`limits.max_inflight_body_bytes`).
    pub body_bytes: Arc<Semaphore>,
    /// Start-up models and how their load and warm-up went.
    pub startup: Arc<warmup::Startup>,
    /// The OpenAI dialect's settings.
    pub openai: settings::OpenAiSettings,
}

impl AppState {
    /// State over `manager` with `limits`, already marked ready, with default batching and no
    /// keys (tests; `serve` builds its state from the settings). Which model directories
    /// requests may name is the manager's registry's [`PathPolicy`] ([`build_manager`] sets it
    /// from `--model-roots`).
    pub fn new(manager: Arc<ModelManager>, limits: Limits) -> Self {
        let metrics = Metrics::default();
        Self {
            batcher: Batcher::new(manager.clone(), metrics.clone(), BatchConfig::default()),
            manager,
            ready: Arc::new(AtomicBool::new(true)),
            inflight: Arc::new(Semaphore::new(limits.max_concurrent_requests.max(1))),
            body_bytes: Arc::new(Semaphore::new(
                limits.max_inflight_body_bytes.min(Semaphore::MAX_PERMITS),
            )),
            limits,
            metrics,
            auth: Arc::new(AuthConfig::default()),
            startup: Arc::default(),
            openai: settings::OpenAiSettings::default(),
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

    /// The same state with the OpenAI dialect's settings.
    pub fn with_openai(mut self, openai: settings::OpenAiSettings) -> Self {
        self.openai = openai;
        self
    }

    /// The limit on requests served at once.
    pub fn limits_max_concurrent(&self) -> usize {
        self.limits.max_concurrent_requests.max(1)
    }

    /// Time a client has to send a request body (`None`: no limit).
    pub fn body_timeout(&self) -> Option<Duration> {
        (self.limits.body_timeout > 0).then(|| Duration::from_secs(self.limits.body_timeout))
    }

    /// State for `settings` over `manager`, not ready until start-up ends.
    pub fn from_settings(settings: &Settings, manager: Arc<ModelManager>) -> Self {
        let state = Self::new(manager, settings.limits.clone())
            .with_batching(settings.batching.clone())
            .with_auth(settings.auth.clone())
            .with_openai(settings.openai.clone());
        state.ready.store(false, Ordering::Release);
        state
    }
}

/// The router with every route, each dialect's behind the middleware stack answering in its
/// error shape (see [`routes`]).
pub fn app(state: AppState) -> Router {
    routes::router(&state).with_state(state)
}

/// Builds the manager for `settings`: catalog, models file, default model, budgets, pinned
/// models and their dtypes, and the model roots requests may name directories under.
pub fn build_manager(settings: &Settings) -> anyhow::Result<ModelManager> {
    let mut resolver = Resolver::from_env();
    resolver.progress = true;
    build_manager_with(settings, resolver)
}

/// [`build_manager`] with `resolver` finding the models' files (its `models_dir`, when it
/// exists, counts as a model root).
pub fn build_manager_with(settings: &Settings, resolver: Resolver) -> anyhow::Result<ModelManager> {
    let mut registry = Registry::builtin();
    if let Some(file) = &settings.models_file {
        let n = registry.load_toml(file)?;
        tracing::info!(file = %file.display(), models = n, "models file read");
    }
    if let Some(default) = &settings.default_model {
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
    let mut roots = settings.model_roots.clone();
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
/// models in the background (readiness turns true when they are done). On `shutdown` the
/// listener stops accepting, readiness turns false, and in-flight requests get
/// `--shutdown-timeout` seconds to finish.
pub async fn serve(
    listener: tokio::net::TcpListener,
    settings: &Settings,
    manager: Arc<ModelManager>,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    let state = AppState::from_settings(settings, manager);
    let plan = warmup::WarmupPlan::for_settings(settings, &state.manager);
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
    let grace = Duration::from_secs(settings.server.shutdown_timeout);
    let deadline = async move {
        let _ = stopping_rx.wait_for(|stopping| *stopping).await;
        tokio::time::sleep(grace).await;
    };
    let header_timeout = (settings.server.header_timeout > 0)
        .then(|| Duration::from_secs(settings.server.header_timeout));
    let server = listen::serve(listener, app(state), header_timeout, signal);
    tokio::select! {
        () = server => {},
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

/// Runs the server for `flags` until Ctrl-C / SIGTERM (blocking; builds its own runtime),
/// after logging the effective configuration.
pub fn serve_blocking(flags: &Flags) -> anyhow::Result<()> {
    // Before any thread exists: the soak's settled RSS drifted +24 % with glibc's default arenas.
    ember_core::manager::limit_allocator_arenas();
    let settings = Settings::load(flags)?;
    for line in settings.describe(flags) {
        tracing::info!("{line}");
    }
    let manager = Arc::new(build_manager(&settings)?);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async {
        let listener = tokio::net::TcpListener::bind(settings.server.addr()?).await?;
        serve(listener, &settings, manager, shutdown_signal()).await
    })
}
