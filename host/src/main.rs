//! The `wasmond` binary: parses the command line, sets up logging, and hands over
//! to the library. Each command lives in `wasmond::cli`.

use std::process::ExitCode;

use clap::{Parser, Subcommand};
use wasmond::cli::logging::{self, LogFormat};
use wasmond::cli::module_run::{ModuleRunArgs, module_run};
use wasmond::cli::{check, run};

/// `wasmond --help`'s closing part: what the man page (wasmond(8)) says beyond the options.
const AFTER_LONG_HELP: &str = "\
Files:
  /etc/ganglia/gmond.conf    the configuration the service runs (wasmond.service, as user ganglia)
  /usr/lib/wasmond/modules   installed modules ($WASMOND_MODULE_DIR instead, when set); a module's
                             NAME.wasm is looked for beside the file declaring it, in
                             globals { module_dir }, here, then among those built in (core_metrics)
  $XDG_CACHE_HOME/wasmond    compiled modules (~/.cache/wasmond; the service's: /var/cache/wasmond)

Environment:
  RUST_LOG        a log filter over the debug level, e.g. wasmond=debug
  NO_COLOR        no colour, even on a terminal
  NOTIFY_SOCKET   set by systemd (Type=notify): READY=1, RELOADING=1, STOPPING=1 are sent there

wasmond stays in the foreground (gmond's daemonize is ignored, with a warning) and writes no pid
file: run it from systemd (wasmond.service) or another supervisor. SIGHUP reloads the
configuration, SIGTERM and SIGINT stop it. See wasmond(8).";

#[derive(Debug, Parser)]
#[command(
    name = "wasmond",
    version,
    about = "A gmond-compatible metric daemon with WebAssembly modules",
    long_about = "A gmond-compatible metric daemon whose metric modules run in a WebAssembly \
                  sandbox (fuel, deadline, memory cap; no file, network or environment unless \
                  granted). It reads gmond.conf as it is, serves gmond's XML on its TCP port and \
                  sends gmetric packets, so gmetad, gstat and ganglia-web take it for a gmond.",
    after_long_help = AFTER_LONG_HELP
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
    /// Compile the component on stdin to a serialized artifact on stdout: the child
    /// process the daemon compiles in, under its compile bounds.
    #[command(name = wasmond::runtime::compiler::CHILD_COMMAND, hide = true)]
    CompileChild,
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
    if let Command::CompileChild = command {
        return wasmond::runtime::compiler::child_main();
    }
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
        Command::CompileChild => unreachable!("handled above"),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("wasmond: error: {error:#}");
            ExitCode::FAILURE
        }
    }
}
