//! The `ember-server` binary: parse flags (or `EMBER_*` variables), log to stderr, serve.

use std::io::IsTerminal as _;

use ember_server::Flags;

fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        // Colours only on a terminal: a file or a pipe gets plain text.
        .with_ansi(std::io::stderr().is_terminal())
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("EMBER_LOG")
                .unwrap_or_else(|_| "info".into()),
        )
        .init();
    // serve_blocking logs the effective configuration (flags over the file, keys redacted).
    ember_server::serve_blocking(&Flags::parse())
}
