//! The `wasmond` binary: parses the command line, sets up logging, and hands over
//! to the library. Each command lives in `wasmond::cli`.

use std::process::ExitCode;

use clap::{Parser, Subcommand};
use wasmond::cli::logging::{self, LogFormat};
use wasmond::cli::module_run::{ModuleRunArgs, module_run};
use wasmond::cli::{check, run};

#[derive(Debug, Parser)]
#[command(
    name = "wasmond",
    version,
    about = "A gmond-compatible metric daemon with WebAssembly modules"
)]
struct Cli {
    /// Without a command, `run` on the bundled default config.
    #[command(subcommand)]
    command: Option<Command>,
    /// Log lines as text (coloured only on a terminal) or as JSON objects, on stderr.
    #[arg(
        long,
        global = true,
        value_enum,
        value_name = "FORMAT",
        default_value_t
    )]
    log_format: LogFormat,
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
    let cli = Cli::parse();
    let command = cli
        .command
        .unwrap_or_else(|| Command::Run(run::RunArgs::default()));
    // `run` sets its log level from the config's debug_level.
    if !matches!(command, Command::Run(_)) {
        logging::init(cli.log_format, "info");
    }
    let result = match command {
        Command::Run(args) => run::run(args, cli.log_format),
        Command::Check(args) => check::check(args),
        Command::Module {
            command: ModuleCommand::Run(args),
        } => module_run(args),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("wasmond: error: {error:#}");
            ExitCode::FAILURE
        }
    }
}
