//! `wasmond run [-c FILE] [-d LEVEL]`: the daemon, in the foreground, logging to stderr.
//! Before any thread starts, the process is Landlocked and the user it switches to is
//! decided ([`crate::lockdown`]).
//!
//! The log level follows gmond's `debug_level` (from the config, or `-d`, which wins):
//! 0 logs errors, warnings and the daemon's milestones (info), 1 adds debug lines, 2 and
//! more trace. `RUST_LOG`, when set, overrides both. `--log-format` picks text or JSON
//! lines ([`logging`]).

use std::path::PathBuf;

use anyhow::Context;
use tokio_util::sync::CancellationToken;

use crate::cli::logging::{self, LogFormat};
use crate::daemon::{self, ConfigSource};
use crate::lockdown;

#[derive(Debug, Default, clap::Args)]
pub struct RunArgs {
    /// The gmond.conf to read; without it, the bundled default (conf.d/wasmond.conf).
    #[arg(short = 'c', long = "conf", value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// gmond's debug level: overrides the config's `debug_level` (0 info, 1 debug, 2+ trace).
    #[arg(short = 'd', long = "debug", value_name = "LEVEL")]
    pub debug: Option<u32>,
}

pub fn run(args: RunArgs, log_format: LogFormat) -> anyhow::Result<()> {
    let source = ConfigSource::new(args.config);
    let loaded = source
        .load()
        .with_context(|| format!("{}: the configuration has errors", source.describe()))?;
    let debug_level = args.debug.unwrap_or(loaded.config.globals.debug_level);
    logging::init(log_format, level_filter(debug_level));
    // Still one thread: what is decided and restricted here holds for every thread the
    // runtime and the modules start.
    let plan = lockdown::plan(&loaded)?;
    if let Err(error) = lockdown::prepare_cache(&plan) {
        tracing::warn!("compile cache {:?}: {error}", plan.cache_dir);
    }
    // The resolver loads what it needs for a first lookup while it still can.
    let _ = crate::net::names::name_of(std::net::Ipv4Addr::LOCALHOST.into());
    lockdown::restrict(&loaded, &daemon::default_module_dirs(), &plan)?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .thread_name("wasmond")
        .build()
        .context("starting the async runtime")?;
    let result = runtime.block_on(daemon::run(
        source,
        loaded,
        plan,
        CancellationToken::new(),
        None,
    ));
    // Not shut down: a module abandoned in a call (or a reload abandoned mid-compile) may
    // still be running on a thread inside this runtime's context, and shutting it down
    // under it panics there. Everything the daemon owed is done, each part bounded, so
    // the process exits with the runtime still up.
    std::mem::forget(runtime);
    result
}

/// The tracing filter for a gmond debug level.
pub(crate) fn level_filter(debug_level: u32) -> &'static str {
    match debug_level {
        0 => "info",
        1 => "debug",
        _ => "trace",
    }
}
