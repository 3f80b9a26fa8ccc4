//! The one configuration tree: [`Settings`], whose sections are the types the server runs with
//! ([`Limits`], [`BatchConfig`], [`AuthConfig`], [`ManagerSettings`], [`WarmupSettings`], ...),
//! each with the one `Default` its values come from.
//!
//! Precedence: a flag > its `EMBER_*` variable > the TOML file given with `--config` > the
//! default. Flags know whether they were given ([`Flags`]), so a flag set to its default value
//! still wins over the file. The file (see `file.rs` for its layout) is read into the same
//! section types; `describe.rs` writes the effective configuration as readable log lines.

mod describe;
mod file;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Context as _;
use ember_core::{DType, KeepAlive, ManagerConfig, DEFAULT_MAX_INPUT_TOKENS};
use serde::{Deserialize, Serialize};

use crate::auth::AuthConfig;
use crate::batching::BatchConfig;
use crate::config::Flags;

pub use file::{opt_size, size};

/// Request limits enforced by the middleware and the handlers.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Limits {
    /// Largest body, in bytes.
    #[serde(deserialize_with = "size")]
    pub max_body_bytes: usize,
    /// Bytes of request bodies held at once, all requests together.
    #[serde(deserialize_with = "size")]
    pub max_inflight_body_bytes: usize,
    /// Most inputs one request may carry.
    pub max_client_batch: usize,
    /// Most documents one rerank may carry.
    pub max_rerank_documents: usize,
    /// Most characters in one input.
    pub max_input_chars: usize,
    /// Most characters in one request, all inputs together.
    pub max_total_chars: usize,
    /// Most tokens of one input, whatever the model's own maximum (the core's
    /// `LoadOptions::max_input_tokens`): longer inputs are cut, or refused with truncation off.
    pub max_input_tokens: usize,
    /// Most requests served at once.
    pub max_concurrent_requests: usize,
    /// Seconds a client has to send a body; 0: no limit.
    pub body_timeout: u64,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_body_bytes: 8 << 20,
            max_inflight_body_bytes: 256 << 20,
            max_client_batch: 2048,
            max_rerank_documents: 1000,
            max_input_chars: 100_000,
            max_total_chars: 8 << 20,
            max_input_tokens: DEFAULT_MAX_INPUT_TOKENS,
            max_concurrent_requests: 512,
            body_timeout: 30,
        }
    }
}

/// Where and how the server listens.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ServerSettings {
    pub host: String,
    pub port: u16,
    /// Seconds in-flight requests get after SIGTERM / Ctrl-C.
    pub shutdown_timeout: u64,
    /// Seconds a client has to send a request's headers; 0: no limit.
    pub header_timeout: u64,
    /// Load the default model on first use instead of at start.
    pub lazy: bool,
}

impl Default for ServerSettings {
    fn default() -> Self {
        Self {
            host: "127.0.0.1".into(),
            port: 8080,
            shutdown_timeout: 30,
            header_timeout: 10,
            lazy: false,
        }
    }
}

impl ServerSettings {
    /// The socket address to bind.
    pub fn addr(&self) -> anyhow::Result<SocketAddr> {
        let host = if self.host == "localhost" {
            "127.0.0.1"
        } else {
            &self.host
        };
        format!("{host}:{}", self.port)
            .parse()
            .with_context(|| format!("cannot listen on `{host}:{}`", self.port))
    }
}

/// The model manager's budgets (the file's `[budget]`); the defaults are the core's.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ManagerSettings {
    /// Most (model, dtype) pairs held at once.
    pub max_models: usize,
    /// Memory budget in bytes; `None`: unbounded.
    #[serde(deserialize_with = "opt_size")]
    pub max_memory: Option<usize>,
    /// Keep-alive of a model loaded without one.
    #[serde(deserialize_with = "file::keep_alive")]
    pub keep_alive: KeepAlive,
}

impl Default for ManagerSettings {
    fn default() -> Self {
        let core = ManagerConfig::default();
        Self {
            max_models: core.max_models,
            max_memory: core.max_memory,
            keep_alive: core.keep_alive,
        }
    }
}

/// Start-up warm-up.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct WarmupSettings {
    /// Run dummy batches at all.
    pub enabled: bool,
    /// One dummy batch of each size.
    pub batch_sizes: Vec<usize>,
}

impl Default for WarmupSettings {
    fn default() -> Self {
        Self {
            enabled: true,
            batch_sizes: vec![1, 32],
        }
    }
}

/// What the token ids of an OpenAI-dialect request are.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "snake_case")]
pub enum TokenIds {
    /// The served model's own vocabulary (TEI's, vLLM's and llama.cpp's convention).
    #[default]
    Model,
    /// OpenAI's `cl100k_base` (what LangChain's `OpenAIEmbeddings` sends by default).
    #[value(name = "cl100k_base")]
    Cl100kBase,
    /// OpenAI's `o200k_base`.
    #[value(name = "o200k_base")]
    O200kBase,
}

impl std::fmt::Display for TokenIds {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::Model => "model",
            Self::Cl100kBase => "cl100k_base",
            Self::O200kBase => "o200k_base",
        })
    }
}

/// The OpenAI dialect's settings.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct OpenAiSettings {
    /// How token-id inputs are read.
    pub token_ids: TokenIds,
}

/// A model named in the configuration: loaded (and warmed up) at start.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Preload {
    pub id: String,
    pub dtype: Option<DType>,
    pub keep_alive: Option<KeepAlive>,
    /// Never evicted.
    pub pinned: bool,
    /// Run the warm-up batches (when warm-up is on globally).
    pub warmup: bool,
}

impl Preload {
    /// A model named by `--model`: default dtype and keep-alive, not pinned, warmed up.
    pub fn named(id: &str) -> Self {
        Self {
            id: id.to_string(),
            dtype: None,
            keep_alive: None,
            pinned: false,
            warmup: true,
        }
    }
}

/// Everything the server runs with.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Settings {
    /// The configuration file read, if any.
    pub config_file: Option<PathBuf>,
    /// The model requests get when they name none (`None`: the catalog's default).
    pub default_model: Option<String>,
    /// A TOML file adding models to the catalog.
    pub models_file: Option<PathBuf>,
    /// Directories requests may name model directories under.
    pub model_roots: Vec<PathBuf>,
    pub server: ServerSettings,
    pub limits: Limits,
    pub batching: BatchConfig,
    pub budget: ManagerSettings,
    pub auth: AuthConfig,
    pub warmup: WarmupSettings,
    pub openai: OpenAiSettings,
    /// Models to load at start, in order (`--model` first, then the file's `[[models]]`).
    pub preload: Vec<Preload>,
}

impl Settings {
    /// The settings for `flags`: the file `--config` names (if any) under the given flags.
    pub fn load(flags: &Flags) -> anyhow::Result<Self> {
        match &flags.args().config {
            None => Self::merge(flags, Settings::default()),
            Some(path) => {
                let text = std::fs::read_to_string(path)
                    .with_context(|| format!("cannot read config file {}", path.display()))?;
                Self::from_toml(flags, &text, path)
            }
        }
    }

    /// `flags` over the TOML `text` (read from `path`, named in errors).
    pub fn from_toml(flags: &Flags, text: &str, path: &Path) -> anyhow::Result<Self> {
        let mut file = file::parse(text, path)?;
        file.config_file = Some(path.to_path_buf());
        Self::merge(flags, file)
    }

    /// Each given flag replaces the value below it.
    fn merge(flags: &Flags, mut s: Settings) -> anyhow::Result<Self> {
        let a = flags.args();
        macro_rules! given {
            ($($id:ident => $dst:expr),+ $(,)?) => {$(
                if flags.given(stringify!($id)) {
                    $dst = a.$id.clone().into();
                }
            )+};
        }
        given! {
            default_model => s.default_model,
            models_file => s.models_file,
            model_roots => s.model_roots,
            host => s.server.host,
            port => s.server.port,
            lazy => s.server.lazy,
            shutdown_timeout => s.server.shutdown_timeout,
            header_timeout => s.server.header_timeout,
            max_body_bytes => s.limits.max_body_bytes,
            max_inflight_body_bytes => s.limits.max_inflight_body_bytes,
            max_client_batch => s.limits.max_client_batch,
            max_rerank_documents => s.limits.max_rerank_documents,
            max_input_chars => s.limits.max_input_chars,
            max_total_chars => s.limits.max_total_chars,
            max_input_tokens => s.limits.max_input_tokens,
            max_concurrent_requests => s.limits.max_concurrent_requests,
            body_timeout => s.limits.body_timeout,
            queue_size => s.batching.queue_size,
            max_batch_tokens => s.batching.max_batch_tokens,
            max_batch_requests => s.batching.max_batch_requests,
            max_batch_size => s.batching.max_batch_size,
            max_models => s.budget.max_models,
            max_memory => s.budget.max_memory,
            keep_alive => s.budget.keep_alive,
            api_keys => s.auth.api_keys,
            admin_key => s.auth.admin_key,
            metrics_require_key => s.auth.metrics_require_key,
            warmup_batch_sizes => s.warmup.batch_sizes,
            openai_token_ids => s.openai.token_ids,
        }
        if flags.given("no_warmup") {
            s.warmup.enabled = !a.no_warmup;
        }
        // `--model` models come first; one also in the file keeps the file's details.
        let mut preload: Vec<Preload> = a.models.iter().map(|id| Preload::named(id)).collect();
        for entry in std::mem::take(&mut s.preload) {
            match preload.iter_mut().find(|p| p.id == entry.id) {
                Some(p) => *p = entry,
                None => preload.push(entry),
            }
        }
        s.preload = preload;
        s.validate()?;
        Ok(s)
    }

    fn validate(&self) -> anyhow::Result<()> {
        let (l, b) = (&self.limits, &self.batching);
        let positive = [
            ("max_concurrent_requests", l.max_concurrent_requests),
            ("queue_size", b.queue_size),
            ("max_batch_tokens", b.max_batch_tokens),
            ("max_batch_requests", b.max_batch_requests),
            ("max_batch_size", b.max_batch_size),
            ("max_models", self.budget.max_models),
            ("max_client_batch", l.max_client_batch),
            ("max_rerank_documents", l.max_rerank_documents),
            ("max_input_chars", l.max_input_chars),
            ("max_total_chars", l.max_total_chars),
            ("max_input_tokens", l.max_input_tokens),
        ];
        for (name, v) in positive {
            anyhow::ensure!(v > 0, "`{name}` must be at least 1");
        }
        anyhow::ensure!(
            l.max_inflight_body_bytes >= l.max_body_bytes,
            "`max_inflight_body_bytes` ({}) must be at least `max_body_bytes` ({}), or no \
             body of the largest size could ever be read",
            l.max_inflight_body_bytes,
            l.max_body_bytes
        );
        let sizes = &self.warmup.batch_sizes;
        anyhow::ensure!(
            sizes.iter().all(|&n| (1..=4096).contains(&n)),
            "`warmup_batch_sizes` must each be between 1 and 4096, got {sizes:?}"
        );
        Ok(())
    }

    /// `--body-timeout` as a duration (`None`: no limit).
    pub fn body_timeout(&self) -> Option<Duration> {
        (self.limits.body_timeout > 0).then(|| Duration::from_secs(self.limits.body_timeout))
    }

    /// The manager's configuration: budgets, pinned models and their dtypes (`resolve` maps a
    /// configured name or alias to its catalog id).
    pub fn manager_config(&self, resolve: impl Fn(&str) -> Option<String>) -> ManagerConfig {
        let mut config = ManagerConfig {
            max_models: self.budget.max_models,
            max_memory: self.budget.max_memory,
            keep_alive: self.budget.keep_alive,
            max_input_tokens: self.limits.max_input_tokens,
            ..ManagerConfig::default()
        };
        for p in &self.preload {
            let id = resolve(&p.id).unwrap_or_else(|| p.id.clone());
            if let Some(d) = p.dtype {
                config.dtypes.insert(id.clone(), d);
            }
            if p.pinned {
                config.pinned.push(id);
            }
        }
        config
    }
}

#[cfg(test)]
mod tests;
