//! The `wasmond` binary: parses the command line, sets up logging, and hands over
//! to the library. Each command lives in `wasmond::cli`.

use std::process::ExitCode;

use clap::{Parser, Subcommand};
use wasmond::cli::module_run::{ModuleRunArgs, module_run};

#[derive(Debug, Parser)]
#[command(name = "wasmond", version, about = "A gmond-compatible metric daemon with WebAssembly modules")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
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
    let cli = Cli::parse();
    init_logging();
    let result = match cli.command {
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
