//! The server's flags: every flag is also an `EMBER_*` environment variable, with its doc
//! comment as `--help` and its default read from the [`Settings`](crate::settings::Settings)
//! section it sets, so `--help`, the README's table ([`flags_table`]) and the effective
//! configuration logged at start come from these definitions and those `Default`s. [`Flags`]
//! keeps which flags were given (on the command line or in the environment): only those
//! override the configuration file. Key fields hold [`Secret`]s, so `Debug` never prints a key.

mod values;

use std::collections::BTreeMap;
use std::path::PathBuf;

use clap::parser::ValueSource;
use clap::{ArgAction, CommandFactory, FromArgMatches, Parser};
use ember_core::KeepAlive;

use crate::auth::AuthConfig;
use crate::batching::BatchConfig;
pub use values::{parse_bytes, Secret};

use crate::settings::{
    Limits, ManagerSettings, OpenAiSettings, ServerSettings, TokenIds, WarmupSettings,
};

/// Ember: one process serving many text-embedding models over HTTP.
#[derive(Debug, Clone, Parser)]
#[command(name = "ember-server", version)]
pub struct ServeArgs {
    /// A TOML configuration file: models to preload (dtype, keep-alive, pinning, warm-up),
    /// budgets, limits and keys. A flag or EMBER_* variable that is given wins over the file.
    #[arg(long, env = "EMBER_CONFIG")]
    pub config: Option<PathBuf>,

    /// Address to listen on.
    #[arg(long, env = "EMBER_HOST", default_value_t = ServerSettings::default().host)]
    pub host: String,

    /// Port to listen on (0 picks a free one; the chosen port is logged).
    #[arg(long, env = "EMBER_PORT", default_value_t = ServerSettings::default().port)]
    pub port: u16,

    /// The model a request that names none gets (an id, alias or model directory; always
    /// pinned). Default: the catalog's default, all-MiniLM-L6-v2.
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
    #[arg(long, env = "EMBER_MAX_BODY_BYTES", value_parser = parse_bytes,
        default_value_t = Limits::default().max_body_bytes)]
    pub max_body_bytes: usize,

    /// Bytes of request bodies held at once, all requests together; a body that would pass
    /// it is answered 429 with `Retry-After` before it is read.
    #[arg(long, env = "EMBER_MAX_INFLIGHT_BODY_BYTES", value_parser = parse_bytes,
        default_value_t = Limits::default().max_inflight_body_bytes)]
    pub max_inflight_body_bytes: usize,

    /// Most inputs one request may carry.
    #[arg(long, env = "EMBER_MAX_CLIENT_BATCH",
        default_value_t = Limits::default().max_client_batch)]
    pub max_client_batch: usize,

    /// Most documents one rerank request may carry (`/rerank`, `/v1/rerank`, `/api/v1/rerank`);
    /// more is answered 413 naming the limit.
    #[arg(long, env = "EMBER_MAX_RERANK_DOCUMENTS",
        default_value_t = Limits::default().max_rerank_documents)]
    pub max_rerank_documents: usize,

    /// Most characters in one input (longer inputs are refused before tokenization).
    #[arg(long, env = "EMBER_MAX_INPUT_CHARS", default_value_t = Limits::default().max_input_chars)]
    pub max_input_chars: usize,

    /// Most characters in one request, all inputs together (token-id inputs: their ids).
    #[arg(long, env = "EMBER_MAX_TOTAL_CHARS", default_value_t = Limits::default().max_total_chars)]
    pub max_total_chars: usize,

    /// Most tokens of one input, whatever the model's own maximum: models trained on longer
    /// inputs (Qwen3-Embedding: 32768) are cut to it, or refused with truncation off. Attention's
    /// time grows with the square of the length; raise it to serve longer inputs.
    #[arg(long, env = "EMBER_MAX_INPUT_TOKENS",
        default_value_t = Limits::default().max_input_tokens)]
    pub max_input_tokens: usize,

    /// Skip loading the default model at start (it then loads on first use).
    #[arg(long, env = "EMBER_LAZY", default_value_t = ServerSettings::default().lazy,
        num_args = 0..=1, default_missing_value = "true", action = ArgAction::Set,
        value_parser = clap::builder::BoolishValueParser::new())]
    pub lazy: bool,

    /// Most requests served at once (health and metrics excluded); one more is answered 429
    /// with `Retry-After`.
    #[arg(long, env = "EMBER_MAX_CONCURRENT_REQUESTS",
        default_value_t = Limits::default().max_concurrent_requests)]
    pub max_concurrent_requests: usize,

    /// Requests that may wait in one model's batch queue; one more is answered 429 with
    /// `Retry-After`.
    #[arg(long, env = "EMBER_QUEUE_SIZE", default_value_t = BatchConfig::default().queue_size)]
    pub queue_size: usize,

    /// Most tokens (summed over inputs) coalesced into one batch.
    #[arg(long, env = "EMBER_MAX_BATCH_TOKENS",
        default_value_t = BatchConfig::default().max_batch_tokens)]
    pub max_batch_tokens: usize,

    /// Most requests coalesced into one batch.
    #[arg(long, env = "EMBER_MAX_BATCH_REQUESTS",
        default_value_t = BatchConfig::default().max_batch_requests)]
    pub max_batch_requests: usize,

    /// Sequences per encoder forward pass.
    #[arg(long, env = "EMBER_MAX_BATCH_SIZE",
        default_value_t = BatchConfig::default().max_batch_size)]
    pub max_batch_size: usize,

    /// Most models (id x dtype) held in memory at once (least recently used first out).
    #[arg(long, env = "EMBER_MAX_MODELS", default_value_t = ManagerSettings::default().max_models)]
    pub max_models: usize,

    /// Memory budget for loaded models, e.g. "2GB", "512MiB" or a byte count. Default: none.
    #[arg(long, env = "EMBER_MAX_MEMORY", value_parser = parse_bytes)]
    pub max_memory: Option<usize>,

    /// Keep-alive of a model loaded without one, as Ollama's: "5m", "1h", "-1" (forever) or
    /// "0" (unload after each request).
    #[arg(long, env = "EMBER_KEEP_ALIVE", default_value_t = ManagerSettings::default().keep_alive)]
    pub keep_alive: KeepAlive,

    /// API keys accepted as `Authorization: Bearer <key>` (comma-separated in EMBER_API_KEYS);
    /// health stays public. None: no key is asked for.
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
    #[arg(long, env = "EMBER_METRICS_REQUIRE_KEY",
        default_value_t = AuthConfig::default().metrics_require_key,
        num_args = 0..=1, default_missing_value = "true", action = ArgAction::Set,
        value_parser = clap::builder::BoolishValueParser::new())]
    pub metrics_require_key: bool,

    /// Skip warm-up: start-up models are loaded but run no dummy batch.
    #[arg(long, env = "EMBER_NO_WARMUP", default_value_t = !WarmupSettings::default().enabled,
        num_args = 0..=1, default_missing_value = "true", action = ArgAction::Set,
        value_parser = clap::builder::BoolishValueParser::new())]
    pub no_warmup: bool,

    /// Batch sizes of the dummy batches each start-up model runs (comma-separated).
    #[arg(long, env = "EMBER_WARMUP_BATCH_SIZES", value_delimiter = ',',
        default_values_t = WarmupSettings::default().batch_sizes)]
    pub warmup_batch_sizes: Vec<usize>,

    /// Seconds a client has to send a request's headers; a slower one (a Slowloris) has its
    /// connection closed. 0: no limit.
    #[arg(long, env = "EMBER_HEADER_TIMEOUT",
        default_value_t = ServerSettings::default().header_timeout)]
    pub header_timeout: u64,

    /// Seconds a client has to send a request's whole body; a slower one gets a 408 and holds no
    /// request slot while it sends. 0: no limit.
    #[arg(long, env = "EMBER_BODY_TIMEOUT", default_value_t = Limits::default().body_timeout)]
    pub body_timeout: u64,

    /// Seconds to let in-flight requests finish after SIGTERM / Ctrl-C before exiting.
    #[arg(long, env = "EMBER_SHUTDOWN_TIMEOUT",
        default_value_t = ServerSettings::default().shutdown_timeout)]
    pub shutdown_timeout: u64,

    /// What token-id inputs of `POST /v1/embeddings` are: `model` (the served model's own ids,
    /// special tokens added as for text), or `cl100k_base` / `o200k_base` (OpenAI tokenizer ids,
    /// as LangChain's OpenAIEmbeddings sends by default: decoded to text, then tokenized for the
    /// model).
    #[arg(long, env = "EMBER_OPENAI_TOKEN_IDS",
        default_value_t = OpenAiSettings::default().token_ids)]
    pub openai_token_ids: TokenIds,
}

/// Where a flag's value came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    /// The command line.
    Flag,
    /// Its `EMBER_*` variable.
    Env,
}

/// The flags of one start: their values, and which of them were given (on the command line or
/// in the environment). Values not given are the built-in defaults and never override the
/// configuration file.
#[derive(Debug, Clone)]
pub struct Flags {
    args: ServeArgs,
    given: BTreeMap<String, Source>,
}

impl Flags {
    /// Parses `argv` (the program name first) and the `EMBER_*` variables; `--help`, `--version`
    /// and bad values are clap errors (print them with `e.exit()` or `e.render()`).
    pub fn try_parse_from<I, T>(argv: I) -> Result<Self, clap::Error>
    where
        I: IntoIterator<Item = T>,
        T: Into<std::ffi::OsString> + Clone,
    {
        let matches = ServeArgs::command().try_get_matches_from(argv)?;
        let args = ServeArgs::from_arg_matches(&matches)?;
        let given = ServeArgs::command()
            .get_arguments()
            .filter_map(|a| {
                let id = a.get_id().as_str();
                let source = match matches.value_source(id)? {
                    ValueSource::CommandLine => Source::Flag,
                    ValueSource::EnvVariable => Source::Env,
                    _ => return None,
                };
                Some((id.to_string(), source))
            })
            .collect();
        Ok(Self { args, given })
    }

    /// Parses the process's own arguments; exits with clap's message on `--help` or an error.
    pub fn parse() -> Self {
        Self::try_parse_from(std::env::args_os()).unwrap_or_else(|e| e.exit())
    }

    /// The built-in defaults, nothing given (ignores `EMBER_*` variables).
    pub fn defaults() -> Self {
        Self::try_parse_from(["ember-server"]).map_or_else(
            |_| unreachable!("no arguments parse"),
            |mut f| {
                f.given.clear();
                f
            },
        )
    }

    /// The values.
    pub fn args(&self) -> &ServeArgs {
        &self.args
    }

    /// Where flag `id` (its field name, e.g. `max_models`) came from, if it was given.
    pub fn source(&self, id: &str) -> Option<Source> {
        self.given.get(id).copied()
    }

    /// Whether flag `id` was given.
    pub fn given(&self, id: &str) -> bool {
        self.given.contains_key(id)
    }

    /// Every given flag with where it came from.
    pub fn sources(&self) -> impl Iterator<Item = (&str, Source)> {
        self.given.iter().map(|(k, v)| (k.as_str(), *v))
    }
}

/// The README's table of flags: flag, variable, default and meaning (the first paragraph of its
/// help), one row per flag, from the same definitions as `--help`.
pub fn flags_table() -> String {
    let mut out = String::from("| flag | variable | default | meaning |\n|---|---|---|---|\n");
    let cmd = ServeArgs::command();
    for a in cmd.get_arguments() {
        let Some(long) = a.get_long() else { continue };
        if matches!(long, "help" | "version") {
            continue;
        }
        let env = a
            .get_env()
            .map(|e| format!("`{}`", e.to_string_lossy()))
            .unwrap_or_default();
        let defaults: Vec<String> = a
            .get_default_values()
            .iter()
            .map(|v| v.to_string_lossy().into_owned())
            .collect();
        let default = if defaults.is_empty() {
            String::new()
        } else {
            format!("`{}`", defaults.join(","))
        };
        let help = a.get_help().map(|h| h.to_string()).unwrap_or_default();
        let help = help.replace('\n', " ").replace('|', "\\|");
        out.push_str(&format!("| `--{long}` | {env} | {default} | {help} |\n"));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_are_redacted() {
        let f =
            Flags::try_parse_from(["x", "--api-key", "sk-abc", "--admin-key", "adm-xyz"]).unwrap();
        let shown = format!("{f:?}");
        assert!(
            !shown.contains("sk-abc") && !shown.contains("adm-xyz"),
            "{shown}"
        );
        assert!(shown.contains("<redacted>"));
    }

    #[test]
    fn help_never_shows_a_key() {
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
    fn every_flag_parses_from_its_flag_and_is_marked_given() {
        let f = Flags::try_parse_from([
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
            "--max-body-bytes",
            "1MiB",
            "--openai-token-ids",
            "cl100k_base",
        ])
        .unwrap();
        let args = f.args();
        assert_eq!(
            args.model_roots,
            vec![PathBuf::from("/srv/a"), PathBuf::from("/srv/b")]
        );
        assert_eq!(args.max_total_chars, 1000);
        assert_eq!(args.max_body_bytes, 1 << 20);
        assert_eq!(args.api_keys.len(), 2);
        assert_eq!(args.max_memory, Some(1 << 30));
        assert_eq!(args.warmup_batch_sizes, vec![1, 8]);
        assert_eq!(args.openai_token_ids, TokenIds::Cl100kBase);
        assert_eq!(f.source("max_total_chars"), Some(Source::Flag));
        assert!(!f.given("port"));
    }

    #[test]
    fn the_table_has_a_row_per_flag_with_its_default() {
        let table = flags_table();
        assert!(
            table.contains("| `--port` | `EMBER_PORT` | `8080` |"),
            "{table}"
        );
        assert!(
            table.contains("| `--keep-alive` | `EMBER_KEEP_ALIVE` | `-1` |"),
            "{table}"
        );
        assert!(!table.contains("--help"));
    }
}
