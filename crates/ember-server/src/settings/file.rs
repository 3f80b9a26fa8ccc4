//! The configuration file, read into the same section types as the flags:
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
//! header_timeout = 10
//!
//! [limits]
//! max_body_bytes = "8MiB"
//! max_inflight_body_bytes = "256MiB"
//! max_client_batch = 2048
//! max_input_chars = 100000
//! max_total_chars = 8388608
//! max_input_tokens = 8192
//! max_concurrent_requests = 512
//! body_timeout = 30
//!
//! [batching]
//! max_batch_tokens = 16384
//! max_batch_requests = 256
//! max_batch_size = 64
//! queue_size = 1024          # also read from [limits], where earlier versions had it
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
//! [openai]
//! token_ids = "cl100k_base"
//!
//! [[models]]
//! id = "all-mpnet-base-v2"
//! dtype = "int8"
//! keep_alive = "-1"
//! pinned = true
//! warmup = true
//! ```
//!
//! Every key is optional; an unknown key is an error naming it.

use std::path::{Path, PathBuf};

use ember_core::{DType, KeepAlive};
use serde::de::Error as _;
use serde::{Deserialize, Deserializer};

use super::WarmupSettings;
use super::{Limits, ManagerSettings, OpenAiSettings, Preload, ServerSettings, Settings};
use crate::auth::AuthConfig;
use crate::batching::BatchConfig;
use crate::config::parse_bytes;

#[derive(Debug, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
struct FileSettings {
    default_model: Option<String>,
    models_file: Option<PathBuf>,
    model_roots: Vec<PathBuf>,
    server: ServerSettings,
    limits: Limits,
    batching: BatchConfig,
    budget: ManagerSettings,
    auth: AuthConfig,
    warmup: WarmupSettings,
    openai: OpenAiSettings,
    models: Vec<ModelEntry>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ModelEntry {
    id: String,
    #[serde(default, deserialize_with = "opt_dtype")]
    dtype: Option<DType>,
    #[serde(default, deserialize_with = "opt_keep_alive")]
    keep_alive: Option<KeepAlive>,
    #[serde(default)]
    pinned: bool,
    #[serde(default = "yes")]
    warmup: bool,
}

fn yes() -> bool {
    true
}

/// Reads the file's `text` (from `path`, named in errors) into settings.
pub(super) fn parse(text: &str, path: &Path) -> anyhow::Result<Settings> {
    let invalid = |e: &dyn std::fmt::Display| {
        anyhow::anyhow!("config file {} is not valid: {e}", path.display())
    };
    let mut table: toml::Table = toml::from_str(text).map_err(|e| invalid(&e))?;
    move_legacy_keys(&mut table).map_err(|e| invalid(&e))?;
    let f: FileSettings = serde_path_to_error::deserialize(toml::Value::Table(table))
        .map_err(|e| invalid(&format_args!("`{}`: {}", e.path(), e.inner())))?;
    Ok(Settings {
        config_file: None,
        default_model: f.default_model,
        models_file: f.models_file,
        model_roots: f.model_roots,
        server: f.server,
        limits: f.limits,
        batching: f.batching,
        budget: f.budget,
        auth: f.auth,
        warmup: f.warmup,
        openai: f.openai,
        preload: f
            .models
            .into_iter()
            .map(|m| Preload {
                id: m.id,
                dtype: m.dtype,
                keep_alive: m.keep_alive,
                pinned: m.pinned,
                warmup: m.warmup,
            })
            .collect(),
    })
}

/// `[limits] queue_size` (where earlier versions had it) moves to `[batching]`.
fn move_legacy_keys(table: &mut toml::Table) -> Result<(), String> {
    let Some(queue) = table
        .get_mut("limits")
        .and_then(toml::Value::as_table_mut)
        .and_then(|l| l.remove("queue_size"))
    else {
        return Ok(());
    };
    let batching = table
        .entry("batching")
        .or_insert_with(|| toml::Value::Table(toml::Table::new()));
    let Some(batching) = batching.as_table_mut() else {
        return Err("`batching` must be a table".into());
    };
    if batching.contains_key("queue_size") {
        return Err("`queue_size` is set in both [limits] and [batching]; keep one".into());
    }
    batching.insert("queue_size".into(), queue);
    Ok(())
}

/// A size given as a byte count or a string with a unit (`"8MiB"`, `"2GB"`).
#[derive(Deserialize)]
#[serde(untagged)]
enum SizeValue {
    Bytes(u64),
    Text(String),
}

impl SizeValue {
    fn bytes<E: serde::de::Error>(self) -> Result<usize, E> {
        match self {
            Self::Bytes(n) => usize::try_from(n).map_err(|_| E::custom("too large")),
            Self::Text(s) => parse_bytes(&s).map_err(E::custom),
        }
    }
}

/// Deserializes a size (see [`parse_bytes`]).
pub fn size<'de, D: Deserializer<'de>>(d: D) -> Result<usize, D::Error> {
    SizeValue::deserialize(d)?.bytes()
}

/// Deserializes an optional size.
pub fn opt_size<'de, D: Deserializer<'de>>(d: D) -> Result<Option<usize>, D::Error> {
    Option::<SizeValue>::deserialize(d)?
        .map(SizeValue::bytes)
        .transpose()
}

/// A keep-alive given as seconds or a duration string.
#[derive(Deserialize)]
#[serde(untagged)]
enum KeepAliveValue {
    Secs(f64),
    Text(String),
}

impl KeepAliveValue {
    fn keep_alive<E: serde::de::Error>(self) -> Result<KeepAlive, E> {
        match self {
            Self::Secs(s) => KeepAlive::from_secs_f64(s),
            Self::Text(t) => t.parse(),
        }
        .map_err(E::custom)
    }
}

/// Deserializes a keep-alive.
pub(super) fn keep_alive<'de, D: Deserializer<'de>>(d: D) -> Result<KeepAlive, D::Error> {
    KeepAliveValue::deserialize(d)?.keep_alive()
}

fn opt_keep_alive<'de, D: Deserializer<'de>>(d: D) -> Result<Option<KeepAlive>, D::Error> {
    Option::<KeepAliveValue>::deserialize(d)?
        .map(KeepAliveValue::keep_alive)
        .transpose()
}

/// A dtype by any of its names (`int8`, `float16`, ...).
fn opt_dtype<'de, D: Deserializer<'de>>(d: D) -> Result<Option<DType>, D::Error> {
    Option::<String>::deserialize(d)?
        .map(|s| s.parse::<DType>().map_err(D::Error::custom))
        .transpose()
}
