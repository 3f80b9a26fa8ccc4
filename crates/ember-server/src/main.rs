//! The `ember-server` binary: parse flags (or `EMBER_*` variables), log to stderr, serve.

use clap::Parser;
use ember_server::ServeArgs;

fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("EMBER_LOG")
                .unwrap_or_else(|_| "info".into()),
        )
        .init();
    let args = ServeArgs::parse();
    // serve_blocking logs the effective configuration (flags merged with the file, keys
    // redacted).
    ember_server::serve_blocking(args)
}
