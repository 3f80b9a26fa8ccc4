//! Server flags: every flag is also an `EMBER_*` environment variable, and most can be set in the
//! TOML file given with `--config` (see [`crate::settings`], which merges the two). Key fields
//! hold [`Secret`]s, so `Debug` never prints a key.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::str::FromStr;

use clap::Parser;
use ember_core::KeepAlive;

/// Ember: one process serving many text-embedding models over HTTP.
#[derive(Debug, Clone, Parser)]
#[command(name = "ember-server", version)]
pub struct ServeArgs {
    /// A TOML configuration file: models to preload (dtype, keep-alive, pinning, warm-up),
    /// budgets, limits and keys. Flags and EMBER_* variables win over the file, except a flag
    /// left at its built-in default.
    #[arg(long, env = "EMBER_CONFIG")]
    pub config: Option<PathBuf>,

    /// Address to listen on.
    #[arg(long, env = "EMBER_HOST", default_value = DEFAULT_HOST)]
    pub host: String,

    /// Port to listen on (0 picks a free one; the chosen port is logged).
    #[arg(long, env = "EMBER_PORT", default_value_t = DEFAULT_PORT)]
    pub port: u16,

    /// The model a request that names none gets (an id, alias or model directory).
    #[arg(long, env = "EMBER_DEFAULT_MODEL")]
    pub default_model: Option<String>,

    /// Models to load (and warm up) at start, comma-separated (the default model is always
    /// loaded unless --lazy).
    #[arg(long = "model", env = "EMBER_MODELS", value_delimiter = ',')]
    pub models: Vec<String>,

    /// A TOML file adding models to the catalog (`[[models]]` with `id` and `path` or `hub_repo`).
    #[arg(long, env = "EMBER_MODELS_FILE")]
    pub models_file: Option<PathBuf>,

    /// Directories under which a request may name a model directory by path (comma-separated in
    /// EMBER_MODEL_ROOTS). The path must resolve, `..` and symlinks followed, under one of them;
    /// EMBER_MODELS_DIR counts as one when set. None (the default): requests can name only catalog
    /// ids and aliases, never a path.
    #[arg(long, env = "EMBER_MODEL_ROOTS", value_delimiter = ',')]
    pub model_roots: Vec<PathBuf>,

    /// Largest request body accepted, in bytes.
    #[arg(long, env = "EMBER_MAX_BODY_BYTES", default_value_t = DEFAULT_MAX_BODY_BYTES)]
    pub max_body_bytes: usize,

    /// Most inputs one request may carry.
    #[arg(long, env = "EMBER_MAX_CLIENT_BATCH", default_value_t = DEFAULT_MAX_CLIENT_BATCH)]
    pub max_client_batch: usize,

    /// Most characters in one input (longer inputs are refused before tokenization).
    #[arg(long, env = "EMBER_MAX_INPUT_CHARS", default_value_t = DEFAULT_MAX_INPUT_CHARS)]
    pub max_input_chars: usize,

    /// Most characters in one request, all inputs together (token-id inputs count their ids, and
    /// then their decoded text).
    #[arg(long, env = "EMBER_MAX_TOTAL_CHARS", default_value_t = DEFAULT_MAX_TOTAL_CHARS)]
    pub max_total_chars: usize,

    /// Skip loading the default model at start (it then loads on first use).
    #[arg(long, env = "EMBER_LAZY", default_value_t = false)]
    pub lazy: bool,

    /// Most requests served at once (health and metrics excluded); one more is answered 429
    /// with `Retry-After`.
    #[arg(long, env = "EMBER_MAX_CONCURRENT_REQUESTS", default_value_t = DEFAULT_MAX_CONCURRENT)]
    pub max_concurrent_requests: usize,

    /// Requests that may wait in one model's batch queue; one more is answered 429 with
    /// `Retry-After`.
    #[arg(long, env = "EMBER_QUEUE_SIZE", default_value_t = DEFAULT_QUEUE_SIZE)]
    pub queue_size: usize,

    /// Most tokens (summed over inputs) coalesced into one batch.
    #[arg(long, env = "EMBER_MAX_BATCH_TOKENS", default_value_t = DEFAULT_MAX_BATCH_TOKENS)]
    pub max_batch_tokens: usize,

    /// Most requests coalesced into one batch.
    #[arg(long, env = "EMBER_MAX_BATCH_REQUESTS", default_value_t = DEFAULT_MAX_BATCH_REQUESTS)]
    pub max_batch_requests: usize,

    /// Sequences per encoder forward pass.
    #[arg(long, env = "EMBER_MAX_BATCH_SIZE", default_value_t = DEFAULT_MAX_BATCH_SIZE)]
    pub max_batch_size: usize,

    /// Most models (id x dtype) held in memory at once.
    #[arg(long, env = "EMBER_MAX_MODELS", default_value_t = DEFAULT_MAX_MODELS)]
    pub max_models: usize,

    /// Memory budget for loaded models, e.g. "2GB", "512MiB" or a byte count (default: none).
    #[arg(long, env = "EMBER_MAX_MEMORY", value_parser = parse_bytes)]
    pub max_memory: Option<usize>,

    /// Keep-alive of a model loaded without one: "5m", "1h", "-1" (forever, the default) or
    /// "0" (unload after each request).
    #[arg(long, env = "EMBER_KEEP_ALIVE")]
    pub keep_alive: Option<KeepAlive>,

    /// API keys accepted as `Authorization: Bearer <key>` (comma-separated in EMBER_API_KEYS).
    /// None: no key is asked for.
    #[arg(
        long = "api-key",
        env = "EMBER_API_KEYS",
        value_delimiter = ',',
        hide_env_values = true
    )]
    pub api_keys: Vec<Secret>,

    /// Key required for the admin routes (model load and unload); an API key there gets 403.
    /// Unset: admin routes take the API keys like every other route.
    #[arg(long, env = "EMBER_ADMIN_KEY", hide_env_values = true)]
    pub admin_key: Option<Secret>,

    /// Ask for an API key on `GET /metrics` too (it is public by default; health always is).
    #[arg(long, env = "EMBER_METRICS_REQUIRE_KEY", default_value_t = false)]
    pub metrics_require_key: bool,

    /// Skip warm-up: start-up models are loaded but run no dummy batch.
    #[arg(long, env = "EMBER_NO_WARMUP", default_value_t = false)]
    pub no_warmup: bool,

    /// Batch sizes of the dummy batches each start-up model runs (comma-separated).
    #[arg(
        long,
        env = "EMBER_WARMUP_BATCH_SIZES",
        value_delimiter = ',',
        default_values_t = DEFAULT_WARMUP_SIZES
    )]
    pub warmup_batch_sizes: Vec<usize>,

    /// Seconds a client has to send a request's whole body; a slower one (a Slowloris) gets a
    /// 408 and holds no request slot while it sends. 0: no limit.
    #[arg(long, env = "EMBER_BODY_TIMEOUT", default_value_t = DEFAULT_BODY_TIMEOUT)]
    pub body_timeout: u64,

    /// Seconds to let in-flight requests finish after SIGTERM / Ctrl-C before exiting.
    #[arg(long, env = "EMBER_SHUTDOWN_TIMEOUT", default_value_t = DEFAULT_SHUTDOWN_TIMEOUT)]
    pub shutdown_timeout: u64,
}

pub(crate) const DEFAULT_HOST: &str = "127.0.0.1";
pub(crate) const DEFAULT_PORT: u16 = 8080;
pub(crate) const DEFAULT_MAX_BODY_BYTES: usize = 8 * 1024 * 1024;
pub(crate) const DEFAULT_MAX_CLIENT_BATCH: usize = 2048;
pub(crate) const DEFAULT_MAX_INPUT_CHARS: usize = 100_000;
pub(crate) const DEFAULT_MAX_TOTAL_CHARS: usize = 8 * 1024 * 1024;
pub(crate) const DEFAULT_MAX_CONCURRENT: usize = 512;
pub(crate) const DEFAULT_QUEUE_SIZE: usize = 1024;
pub(crate) const DEFAULT_MAX_BATCH_TOKENS: usize = 16384;
pub(crate) const DEFAULT_MAX_BATCH_REQUESTS: usize = 256;
pub(crate) const DEFAULT_MAX_BATCH_SIZE: usize = 64;
pub(crate) const DEFAULT_MAX_MODELS: usize = 16;
pub(crate) const DEFAULT_WARMUP_SIZES: [usize; 2] = [1, 32];
pub(crate) const DEFAULT_SHUTDOWN_TIMEOUT: u64 = 30;
pub(crate) const DEFAULT_BODY_TIMEOUT: u64 = 30;

impl Default for ServeArgs {
    /// The built-in defaults, ignoring `EMBER_*` variables (use `try_parse_from` to read them).
    fn default() -> Self {
        Self {
            config: None,
            host: DEFAULT_HOST.into(),
            port: DEFAULT_PORT,
            default_model: None,
            models: Vec::new(),
            models_file: None,
            model_roots: Vec::new(),
            max_body_bytes: DEFAULT_MAX_BODY_BYTES,
            max_client_batch: DEFAULT_MAX_CLIENT_BATCH,
            max_input_chars: DEFAULT_MAX_INPUT_CHARS,
            max_total_chars: DEFAULT_MAX_TOTAL_CHARS,
            lazy: false,
            max_concurrent_requests: DEFAULT_MAX_CONCURRENT,
            queue_size: DEFAULT_QUEUE_SIZE,
            max_batch_tokens: DEFAULT_MAX_BATCH_TOKENS,
            max_batch_requests: DEFAULT_MAX_BATCH_REQUESTS,
            max_batch_size: DEFAULT_MAX_BATCH_SIZE,
            max_models: DEFAULT_MAX_MODELS,
            max_memory: None,
            keep_alive: None,
            api_keys: Vec::new(),
            admin_key: None,
            metrics_require_key: false,
            no_warmup: false,
            warmup_batch_sizes: DEFAULT_WARMUP_SIZES.to_vec(),
            shutdown_timeout: DEFAULT_SHUTDOWN_TIMEOUT,
            body_timeout: DEFAULT_BODY_TIMEOUT,
        }
    }
}

impl ServeArgs {
    /// The socket address to bind.
    pub fn addr(&self) -> anyhow::Result<SocketAddr> {
        let host = if self.host == "localhost" {
            "127.0.0.1"
        } else {
            &self.host
        };
        Ok(format!("{host}:{}", self.port).parse()?)
    }
}

/// A key or other secret: compared by the auth layer, never printed (`Debug` and `Display`
/// show `<redacted>`).
#[derive(Clone, PartialEq, Eq, serde::Deserialize)]
#[serde(transparent)]
pub struct Secret(String);

impl Secret {
    pub fn new(s: impl Into<String>) -> Self {
        Self(s.into())
    }

    /// The secret itself, for comparison.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("<redacted>")
    }
}

impl std::fmt::Display for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("<redacted>")
    }
}

impl FromStr for Secret {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        let s = s.trim();
        if s.is_empty() {
            return Err("a key cannot be empty".into());
        }
        Ok(Self(s.to_string()))
    }
}

/// Parses a byte size: a plain count, or a number with a unit (`kB`, `MB`, `GB`, `TB` in powers
/// of 1000; `KiB`, `MiB`, `GiB`, `TiB` and the bare `K`, `M`, `G` in powers of 1024).
pub fn parse_bytes(s: &str) -> Result<usize, String> {
    let t = s.trim();
    let split = t
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let value: f64 = num
        .parse()
        .map_err(|_| format!("`{s}` is not a size; use e.g. 2GB, 512MiB or 1073741824"))?;
    let factor: f64 = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1.0,
        "kb" => 1e3,
        "mb" => 1e6,
        "gb" => 1e9,
        "tb" => 1e12,
        "k" | "kib" => 1024.0,
        "m" | "mib" => 1024.0 * 1024.0,
        "g" | "gib" => 1024.0 * 1024.0 * 1024.0,
        "t" | "tib" => 1024f64.powi(4),
        other => {
            return Err(format!(
                "`{s}`: unknown size unit `{other}`; use B, kB, MB, GB, TB, KiB, MiB, GiB or TiB"
            ))
        }
    };
    let bytes = value * factor;
    if !bytes.is_finite() || bytes < 0.0 || bytes > usize::MAX as f64 {
        return Err(format!("`{s}` is out of range"));
    }
    Ok(bytes as usize)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes() {
        assert_eq!(parse_bytes("2GB").unwrap(), 2_000_000_000);
        assert_eq!(parse_bytes("512MiB").unwrap(), 512 << 20);
        assert_eq!(parse_bytes("1.5G").unwrap(), 3 << 29);
        assert_eq!(parse_bytes("1024").unwrap(), 1024);
        assert!(parse_bytes("2 parsecs").unwrap_err().contains("unit"));
        assert!(parse_bytes("lots").is_err());
    }

    #[test]
    fn secrets_are_redacted() {
        let args = ServeArgs {
            api_keys: vec![Secret::new("sk-abc")],
            admin_key: Some(Secret::new("adm-xyz")),
            ..ServeArgs::default()
        };
        let shown = format!("{args:?}");
        assert!(
            !shown.contains("sk-abc") && !shown.contains("adm-xyz"),
            "{shown}"
        );
        assert!(shown.contains("<redacted>"));
    }

    #[test]
    fn help_never_shows_a_key() {
        use clap::CommandFactory;
        let mut cmd = ServeArgs::command();
        let help = cmd.render_long_help().to_string();
        assert!(help.contains("EMBER_API_KEYS") && help.contains("EMBER_ADMIN_KEY"));
        for arg in cmd.get_arguments() {
            if matches!(arg.get_id().as_str(), "api_keys" | "admin_key") {
                assert!(arg.is_hide_env_values_set(), "{}", arg.get_id());
            }
        }
    }

    #[test]
    fn every_flag_parses_from_its_flag() {
        let args = ServeArgs::try_parse_from([
            "ember-server",
            "--api-key",
            "a,b",
            "--max-memory",
            "1GiB",
            "--keep-alive",
            "5m",
            "--warmup-batch-sizes",
            "1,8",
            "--model-roots",
            "/srv/a,/srv/b",
            "--max-total-chars",
            "1000",
        ])
        .unwrap();
        assert_eq!(
            args.model_roots,
            vec![PathBuf::from("/srv/a"), PathBuf::from("/srv/b")]
        );
        assert_eq!(args.max_total_chars, 1000);
        assert_eq!(args.api_keys.len(), 2);
        assert_eq!(args.max_memory, Some(1 << 30));
        assert_eq!(args.warmup_batch_sizes, vec![1, 8]);
    }
}
