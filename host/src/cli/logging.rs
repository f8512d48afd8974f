//! Where the daemon's and the commands' logs go and how they look: stderr, as text
//! (coloured only when stderr is a terminal, so files and journals get plain lines) or
//! as one JSON object per line for log collectors (`--log-format json`).
//!
//! The level comes from the caller (gmond's `debug_level` for `run`, info otherwise);
//! `RUST_LOG`, when set, overrides it.

use std::io::IsTerminal;

use tracing_subscriber::EnvFilter;

/// How each log line is written.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    /// `2026-01-01T00:00:00.000000Z  INFO wasmond::daemon: message key=value`
    #[default]
    Text,
    /// `{"timestamp":"...","level":"INFO","message":"...","key":"value","target":"..."}`
    Json,
}

/// Installs the process's log subscriber on stderr. A subscriber already set (a test
/// harness) keeps logging where it does.
pub fn init(format: LogFormat, default_filter: &str) {
    let filter =
        EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default_filter));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    let _ = match format {
        LogFormat::Text => builder.with_ansi(colour()).try_init(),
        LogFormat::Json => builder
            .json()
            .flatten_event(true)
            .with_ansi(false)
            .try_init(),
    };
}

/// Colour codes only for a person at a terminal: never into a file, a pipe or the
/// journal, and not when `NO_COLOR` is set (<https://no-color.org>).
fn colour() -> bool {
    std::io::stderr().is_terminal() && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty())
}
