//! Ember's `tracing` output inside Python: stderr, filtered by `EMBER_LOG` (default `warn` for
//! library use; `serve` raises the default to `info`, as the `ember-server` binary logs).

use std::io::IsTerminal as _;
use std::sync::OnceLock;

use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{reload, EnvFilter, Registry};

type FilterHandle = reload::Handle<EnvFilter, Registry>;

static HANDLE: OnceLock<Option<FilterHandle>> = OnceLock::new();

fn filter(default: &str) -> EnvFilter {
    EnvFilter::try_from_env("EMBER_LOG").unwrap_or_else(|_| EnvFilter::new(default))
}

/// Installs the subscriber once per process (a no-op if another one is already installed).
pub(crate) fn init() {
    HANDLE.get_or_init(|| {
        let (layer, handle) = reload::Layer::new(filter("warn"));
        tracing_subscriber::registry()
            .with(layer)
            .with(
                tracing_subscriber::fmt::layer()
                    .with_writer(std::io::stderr)
                    // Colours only on a terminal: a file or a pipe gets plain text.
                    .with_ansi(std::io::stderr().is_terminal()),
            )
            .try_init()
            .ok()
            .map(|()| handle)
    });
}

/// Server default: `info`, unless `EMBER_LOG` says otherwise.
pub(crate) fn for_server() {
    init();
    if let Some(Some(handle)) = HANDLE.get() {
        // Failing to raise the level only hides log lines; serving goes on.
        let _ = handle.reload(filter("info"));
    }
}
