//! Server configuration: every flag is also an `EMBER_*` environment variable.

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::Parser;

/// Ember: one process serving many text-embedding models over HTTP.
#[derive(Debug, Clone, Parser)]
#[command(name = "ember-server", version, about)]
pub struct ServeArgs {
    /// Address to listen on.
    #[arg(long, env = "EMBER_HOST", default_value = DEFAULT_HOST)]
    pub host: String,

    /// Port to listen on (0 picks a free one; the chosen port is logged).
    #[arg(long, env = "EMBER_PORT", default_value_t = DEFAULT_PORT)]
    pub port: u16,

    /// The model a request that names none gets (an id, alias or model directory).
    #[arg(long, env = "EMBER_DEFAULT_MODEL")]
    pub default_model: Option<String>,

    /// Models to load at start, comma-separated (the default model is always loaded).
    #[arg(long = "model", env = "EMBER_MODELS", value_delimiter = ',')]
    pub models: Vec<String>,

    /// A TOML file adding models to the catalog (`[[models]]` with `id` and `path` or `hub_repo`).
    #[arg(long, env = "EMBER_MODELS_FILE")]
    pub models_file: Option<PathBuf>,

    /// Largest request body accepted, in bytes.
    #[arg(long, env = "EMBER_MAX_BODY_BYTES", default_value_t = DEFAULT_MAX_BODY_BYTES)]
    pub max_body_bytes: usize,

    /// Most inputs one request may carry.
    #[arg(long, env = "EMBER_MAX_CLIENT_BATCH", default_value_t = DEFAULT_MAX_CLIENT_BATCH)]
    pub max_client_batch: usize,

    /// Most characters in one input (longer inputs are refused before tokenization).
    #[arg(long, env = "EMBER_MAX_INPUT_CHARS", default_value_t = DEFAULT_MAX_INPUT_CHARS)]
    pub max_input_chars: usize,

    /// Skip loading the default model at start (it then loads on first use).
    #[arg(long, env = "EMBER_LAZY", default_value_t = false)]
    pub lazy: bool,
}

const DEFAULT_HOST: &str = "127.0.0.1";
const DEFAULT_PORT: u16 = 8080;
const DEFAULT_MAX_BODY_BYTES: usize = 8 * 1024 * 1024;
const DEFAULT_MAX_CLIENT_BATCH: usize = 2048;
const DEFAULT_MAX_INPUT_CHARS: usize = 100_000;

impl Default for ServeArgs {
    /// The built-in defaults, ignoring `EMBER_*` variables (use `try_parse_from` to read them).
    fn default() -> Self {
        Self {
            host: DEFAULT_HOST.into(),
            port: DEFAULT_PORT,
            default_model: None,
            models: Vec::new(),
            models_file: None,
            max_body_bytes: DEFAULT_MAX_BODY_BYTES,
            max_client_batch: DEFAULT_MAX_CLIENT_BATCH,
            max_input_chars: DEFAULT_MAX_INPUT_CHARS,
            lazy: false,
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
