//! The effective configuration: flags and `EMBER_*` variables ([`ServeArgs`]) merged with the
//! TOML file named by `--config`, and the [`ManagerConfig`] built from it.
//!
//! ```toml
//! default_model = "all-MiniLM-L6-v2"
//! # Directories requests may name models from by path (default: none).
//! model_roots = ["/srv/models"]
//!
//! [server]
//! host = "0.0.0.0"
//! port = 8080
//! shutdown_timeout = 30
//!
//! [limits]
//! max_body_bytes = "8MiB"
//! max_client_batch = 2048
//! max_input_chars = 100000
//! max_total_chars = 8388608
//! max_concurrent_requests = 512
//! queue_size = 1024
//!
//! [batching]
//! max_batch_tokens = 16384
//! max_batch_requests = 256
//! max_batch_size = 64
//!
//! [budget]
//! max_models = 4
//! max_memory = "2GB"
//! keep_alive = "10m"
//!
//! [auth]
//! api_keys = ["sk-one", "sk-two"]
//! admin_key = "admin-secret"
//! metrics_require_key = false
//!
//! [warmup]
//! enabled = true
//! batch_sizes = [1, 32]
//!
//! [[models]]
//! id = "all-mpnet-base-v2"
//! dtype = "int8"
//! keep_alive = "-1"
//! pinned = true
//! warmup = true
//! ```
//!
//! A flag or variable wins over the file, except a flag left at its built-in default.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use anyhow::Context;
use ember_core::{DType, KeepAlive, ManagerConfig};
use serde::Deserialize;

use crate::config::{self, parse_bytes, Secret, ServeArgs};

/// A model named in the configuration: loaded (and warmed up) at start.
#[derive(Debug, Clone, PartialEq)]
pub struct Preload {
    pub id: String,
    pub dtype: Option<DType>,
    pub keep_alive: Option<KeepAlive>,
    /// Never evicted.
    pub pinned: bool,
    /// Run the warm-up batches (when warm-up is on globally).
    pub warmup: bool,
}

/// Everything `serve` needs, after merging the file into the flags.
#[derive(Debug, Clone)]
pub struct Settings {
    /// The flags, with the file's values filled in.
    pub args: ServeArgs,
    /// Models to load at start, in order (`--model` first, then the file's `[[models]]`).
    pub preload: Vec<Preload>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileConfig {
    default_model: Option<String>,
    models_file: Option<PathBuf>,
    #[serde(default)]
    model_roots: Vec<PathBuf>,
    #[serde(default)]
    server: ServerSection,
    #[serde(default)]
    limits: LimitsSection,
    #[serde(default)]
    batching: BatchingSection,
    #[serde(default)]
    budget: BudgetSection,
    #[serde(default)]
    auth: AuthSection,
    #[serde(default)]
    warmup: WarmupSection,
    #[serde(default)]
    models: Vec<ModelEntry>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct ServerSection {
    host: Option<String>,
    port: Option<u16>,
    lazy: Option<bool>,
    shutdown_timeout: Option<u64>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct LimitsSection {
    max_body_bytes: Option<Size>,
    max_client_batch: Option<usize>,
    max_input_chars: Option<usize>,
    max_total_chars: Option<usize>,
    max_concurrent_requests: Option<usize>,
    queue_size: Option<usize>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct BatchingSection {
    max_batch_tokens: Option<usize>,
    max_batch_requests: Option<usize>,
    max_batch_size: Option<usize>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct BudgetSection {
    max_models: Option<usize>,
    max_memory: Option<Size>,
    keep_alive: Option<Duration>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct AuthSection {
    #[serde(default)]
    api_keys: Vec<Secret>,
    admin_key: Option<Secret>,
    metrics_require_key: Option<bool>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct WarmupSection {
    enabled: Option<bool>,
    batch_sizes: Option<Vec<usize>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ModelEntry {
    id: String,
    dtype: Option<String>,
    keep_alive: Option<Duration>,
    #[serde(default)]
    pinned: bool,
    #[serde(default = "yes")]
    warmup: bool,
}

fn yes() -> bool {
    true
}

/// A size as a byte count or a string with a unit.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum Size {
    Bytes(u64),
    Text(String),
}

impl Size {
    fn bytes(&self, field: &str) -> anyhow::Result<usize> {
        match self {
            Size::Bytes(n) => {
                usize::try_from(*n).with_context(|| format!("`{field}` is too large"))
            }
            Size::Text(s) => parse_bytes(s).map_err(|e| anyhow::anyhow!("`{field}`: {e}")),
        }
    }
}

/// A keep-alive as seconds or a duration string.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum Duration {
    Secs(f64),
    Text(String),
}

impl Duration {
    fn keep_alive(&self, field: &str) -> anyhow::Result<KeepAlive> {
        let k = match self {
            Duration::Secs(s) => KeepAlive::from_secs_f64(*s),
            Duration::Text(t) => t.parse(),
        };
        k.with_context(|| format!("`{field}`"))
    }
}

/// Takes the file's value when the flag was left at its built-in default.
fn fill<T: PartialEq>(flag: &mut T, default: T, file: Option<T>) {
    if let Some(v) = file {
        if *flag == default {
            *flag = v;
        }
    }
}

impl Settings {
    /// Reads `args.config` (if any) and merges it under the flags.
    pub fn load(args: ServeArgs) -> anyhow::Result<Self> {
        match args.config.clone() {
            None => Self::merge(args, FileConfig::default()),
            Some(path) => {
                let text = std::fs::read_to_string(&path)
                    .with_context(|| format!("cannot read config file {}", path.display()))?;
                Self::from_toml(args, &text, &path)
            }
        }
    }

    /// Merges the TOML `text` (read from `path`, for messages) under `args`.
    pub fn from_toml(args: ServeArgs, text: &str, path: &Path) -> anyhow::Result<Self> {
        let file: FileConfig = toml::from_str(text)
            .with_context(|| format!("config file {} is not valid", path.display()))?;
        Self::merge(args, file)
    }

    fn merge(mut a: ServeArgs, f: FileConfig) -> anyhow::Result<Self> {
        a.default_model = a.default_model.or(f.default_model);
        a.models_file = a.models_file.or(f.models_file);
        if a.model_roots.is_empty() {
            a.model_roots = f.model_roots;
        }
        fill(&mut a.host, config::DEFAULT_HOST.to_string(), f.server.host);
        fill(&mut a.port, config::DEFAULT_PORT, f.server.port);
        fill(&mut a.lazy, false, f.server.lazy);
        let t = config::DEFAULT_SHUTDOWN_TIMEOUT;
        fill(&mut a.shutdown_timeout, t, f.server.shutdown_timeout);

        let l = f.limits;
        let body = l
            .max_body_bytes
            .map(|s| s.bytes("limits.max_body_bytes"))
            .transpose()?;
        fill(&mut a.max_body_bytes, config::DEFAULT_MAX_BODY_BYTES, body);
        let d = config::DEFAULT_MAX_CLIENT_BATCH;
        fill(&mut a.max_client_batch, d, l.max_client_batch);
        let d = config::DEFAULT_MAX_INPUT_CHARS;
        fill(&mut a.max_input_chars, d, l.max_input_chars);
        let d = config::DEFAULT_MAX_TOTAL_CHARS;
        fill(&mut a.max_total_chars, d, l.max_total_chars);
        let d = config::DEFAULT_MAX_CONCURRENT;
        fill(&mut a.max_concurrent_requests, d, l.max_concurrent_requests);
        fill(&mut a.queue_size, config::DEFAULT_QUEUE_SIZE, l.queue_size);

        let b = f.batching;
        let d = config::DEFAULT_MAX_BATCH_TOKENS;
        fill(&mut a.max_batch_tokens, d, b.max_batch_tokens);
        let d = config::DEFAULT_MAX_BATCH_REQUESTS;
        fill(&mut a.max_batch_requests, d, b.max_batch_requests);
        let d = config::DEFAULT_MAX_BATCH_SIZE;
        fill(&mut a.max_batch_size, d, b.max_batch_size);

        fill(
            &mut a.max_models,
            config::DEFAULT_MAX_MODELS,
            f.budget.max_models,
        );
        if a.max_memory.is_none() {
            a.max_memory = f
                .budget
                .max_memory
                .map(|s| s.bytes("budget.max_memory"))
                .transpose()?;
        }
        if a.keep_alive.is_none() {
            a.keep_alive = f
                .budget
                .keep_alive
                .map(|k| k.keep_alive("budget.keep_alive"))
                .transpose()?;
        }

        if a.api_keys.is_empty() {
            a.api_keys = f.auth.api_keys;
        }
        a.admin_key = a.admin_key.or(f.auth.admin_key);
        fill(
            &mut a.metrics_require_key,
            false,
            f.auth.metrics_require_key,
        );

        if let Some(on) = f.warmup.enabled {
            a.no_warmup = a.no_warmup || !on;
        }
        let d = config::DEFAULT_WARMUP_SIZES.to_vec();
        fill(&mut a.warmup_batch_sizes, d, f.warmup.batch_sizes);

        let mut preload: Vec<Preload> = a
            .models
            .iter()
            .map(|id| Preload {
                id: id.clone(),
                dtype: None,
                keep_alive: None,
                pinned: false,
                warmup: true,
            })
            .collect();
        for (i, m) in f.models.into_iter().enumerate() {
            let dtype = m
                .dtype
                .as_deref()
                .map(str::parse::<DType>)
                .transpose()
                .with_context(|| format!("`models[{i}].dtype` (model `{}`)", m.id))?;
            let keep_alive = m
                .keep_alive
                .map(|k| k.keep_alive(&format!("models[{i}].keep_alive")))
                .transpose()?;
            let entry = Preload {
                id: m.id,
                dtype,
                keep_alive,
                pinned: m.pinned,
                warmup: m.warmup,
            };
            // A model both flagged and in the file takes the file's details.
            match preload.iter_mut().find(|p| p.id == entry.id) {
                Some(p) => *p = entry,
                None => preload.push(entry),
            }
        }
        Self::validate(&a)?;
        Ok(Self { args: a, preload })
    }

    fn validate(a: &ServeArgs) -> anyhow::Result<()> {
        let positive = [
            ("max_concurrent_requests", a.max_concurrent_requests),
            ("queue_size", a.queue_size),
            ("max_batch_tokens", a.max_batch_tokens),
            ("max_batch_requests", a.max_batch_requests),
            ("max_batch_size", a.max_batch_size),
            ("max_models", a.max_models),
            ("max_client_batch", a.max_client_batch),
            ("max_input_chars", a.max_input_chars),
            ("max_total_chars", a.max_total_chars),
        ];
        for (name, v) in positive {
            anyhow::ensure!(v > 0, "`{name}` must be at least 1");
        }
        anyhow::ensure!(
            a.warmup_batch_sizes
                .iter()
                .all(|&n| (1..=4096).contains(&n)),
            "`warmup_batch_sizes` must each be between 1 and 4096, got {:?}",
            a.warmup_batch_sizes
        );
        Ok(())
    }

    /// The manager's configuration: budgets, pinned models and their dtypes (`resolve` maps a
    /// configured name or alias to its catalog id).
    pub fn manager_config(&self, resolve: impl Fn(&str) -> Option<String>) -> ManagerConfig {
        let mut dtypes = HashMap::new();
        let mut pinned = Vec::new();
        for p in &self.preload {
            let id = resolve(&p.id).unwrap_or_else(|| p.id.clone());
            if let Some(d) = p.dtype {
                dtypes.insert(id.clone(), d);
            }
            if p.pinned {
                pinned.push(id);
            }
        }
        ManagerConfig {
            max_models: self.args.max_models,
            max_memory: self.args.max_memory,
            pinned,
            keep_alive: self.args.keep_alive.unwrap_or(KeepAlive::Forever),
            dtypes,
            ..ManagerConfig::default()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn model_roots_and_total_chars_come_from_the_file_unless_flagged() {
        let text = "model_roots = [\"/srv/a\"]\n[limits]\nmax_total_chars = 5000\n";
        let s = Settings::from_toml(ServeArgs::default(), text, Path::new("e.toml")).unwrap();
        assert_eq!(s.args.model_roots, vec![PathBuf::from("/srv/a")]);
        assert_eq!(s.args.max_total_chars, 5000);

        let flagged = ServeArgs {
            model_roots: vec![PathBuf::from("/flag")],
            max_total_chars: 7,
            ..ServeArgs::default()
        };
        let s = Settings::from_toml(flagged, text, Path::new("e.toml")).unwrap();
        assert_eq!(s.args.model_roots, vec![PathBuf::from("/flag")]);
        assert_eq!(s.args.max_total_chars, 7);

        let zero = "[limits]\nmax_total_chars = 0\n";
        let e = Settings::from_toml(ServeArgs::default(), zero, Path::new("e.toml")).unwrap_err();
        assert!(e.to_string().contains("max_total_chars"), "{e}");
    }
}
