//! The `wasmond` binary: parses the command line, sets up logging, and hands over
//! to the library. Each command lives in `wasmond::cli`.

use std::process::ExitCode;

use clap::{Parser, Subcommand};
use wasmond::cli::module_run::{ModuleRunArgs, module_run};
use wasmond::cli::{check, run};

#[derive(Debug, Parser)]
#[command(name = "wasmond", version, about = "A gmond-compatible metric daemon with WebAssembly modules")]
struct Cli {
    /// Without a command, `run` on the bundled default config.
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the daemon in the foreground (SIGHUP reloads, SIGTERM/SIGINT stop).
    Run(run::RunArgs),
    /// Check a configuration: load every module, explain what each group collects.
    Check(check::CheckArgs),
    /// Work with metric modules.
    Module {
        #[command(subcommand)]
        command: ModuleCommand,
    },
}

#[derive(Debug, Subcommand)]
enum ModuleCommand {
    /// Run a module once: init, each metric's handler, cleanup; print the values.
    Run(ModuleRunArgs),
}

fn main() -> ExitCode {
    let command = Cli::parse().command.unwrap_or_else(|| Command::Run(run::RunArgs::default()));
    // `run` sets its log level from the config's debug_level.
    if !matches!(command, Command::Run(_)) {
        init_logging();
    }
    let result = match command {
        Command::Run(args) => run::run(args),
        Command::Check(args) => check::check(args),
        Command::Module { command: ModuleCommand::Run(args) } => module_run(args),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("wasmond: error: {error:#}");
            ExitCode::FAILURE
        }
    }
}

/// Logs go to stderr; `RUST_LOG` filters them (default: info).
fn init_logging() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).init();
}
