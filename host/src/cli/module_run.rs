//! `wasmond module run`: loads one module, runs `init`, calls every metric's handler
//! N times, runs `cleanup`, and prints a table of values with the cost of each call.
//! A tool for module authors; errors print as one line and make the exit status non-zero.

use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, bail};

use crate::daemon::default_module_dirs;
use crate::metric::{MetricDescriptor, MetricValue};
use crate::runtime::{
    Code, Compiler, Grants, ModuleError, ModuleInstance, PYTHON_INTERPRETER, Runtime,
    RuntimeConfig, Sandbox,
};

#[derive(Debug, Clone, clap::Args)]
pub struct ModuleRunArgs {
    /// The module: a WebAssembly component of the wasmond:metric world, or a gmond
    /// python module (`NAME.py`, run by the bundled Python interpreter component).
    pub path: PathBuf,
    /// A param for the module's init, as NAME=VALUE (repeatable).
    #[arg(long = "param", value_name = "NAME=VALUE", value_parser = parse_key_value)]
    pub params: Vec<(String, String)>,
    /// How many times to call each metric's handler.
    #[arg(long, default_value_t = 1)]
    pub count: u32,
    /// Grant the module read-only access to a host directory (repeatable).
    #[arg(long = "allow-read", value_name = "DIR")]
    pub read_only_dirs: Vec<PathBuf>,
    /// Give the module an environment variable, as NAME=VALUE (repeatable).
    #[arg(long = "env", value_name = "NAME=VALUE", value_parser = parse_key_value)]
    pub env: Vec<(String, String)>,
    /// Let the module ask the size and free space of local mount points.
    #[arg(long)]
    pub allow_filesystem_usage: bool,
    /// Let the module write to this process's stdout and stderr.
    #[arg(long)]
    pub inherit_stdio: bool,
    /// Compile the module afresh instead of using the compile cache.
    #[arg(long)]
    pub no_cache: bool,
}

fn parse_key_value(text: &str) -> Result<(String, String), String> {
    match text.split_once('=') {
        Some((key, value)) if !key.is_empty() => Ok((key.to_string(), value.to_string())),
        _ => Err(format!("expected NAME=VALUE, got {text:?}")),
    }
}

/// Runs the command, printing the table to stdout and each handler error to stderr.
pub fn module_run(args: ModuleRunArgs) -> anyhow::Result<()> {
    let config = RuntimeConfig {
        cache_dir: if args.no_cache {
            None
        } else {
            RuntimeConfig::default().cache_dir
        },
        compiler: Compiler::this_program(),
        ..RuntimeConfig::default()
    };
    let runtime = Runtime::new(config)?;
    let name = module_name(&args);
    let sandbox = Sandbox {
        grants: Grants {
            read_only_dirs: args.read_only_dirs.clone(),
            env: args.env.clone(),
            inherit_stdio: args.inherit_stdio,
            filesystem_usage: args.allow_filesystem_usage,
        },
        ..Sandbox::default()
    };
    let module = runtime
        .load_code(&name, &code(&args.path)?, sandbox)
        .map_err(one_line)?;
    let mut instance = module.start(args.params.clone()).map_err(one_line)?;
    let rows = collect_rows(&mut instance, args.count);
    let failures = rows.iter().filter(|row| row.outcome.is_err()).count();
    let refused = instance.refused().to_vec();
    let cleanup = instance.cleanup();
    print_table(&mut io::stdout().lock(), &rows).context("writing the table")?;
    for row in &rows {
        if let Err(error) = &row.outcome {
            eprintln!("error: {}", one_line_text(error));
        }
    }
    // What the module may have caught and hidden (a 0 for a file it was refused).
    for what in &refused {
        eprintln!("error: {name}: refused: {what}");
    }
    cleanup.map_err(one_line)?;
    if failures > 0 {
        bail!("{failures} of {} handler calls failed", rows.len());
    }
    if !refused.is_empty() {
        bail!(
            "the sandbox refused the module {} operations (listed above)",
            refused.len()
        );
    }
    Ok(())
}

/// A `.py` file runs in the bundled interpreter, found in the default module directory.
fn code(path: &Path) -> anyhow::Result<Code> {
    if path.extension().is_none_or(|ext| ext != "py") {
        return Ok(Code::Wasm(path.to_path_buf()));
    }
    let dirs = default_module_dirs();
    let interpreter = dirs
        .iter()
        .map(|dir| dir.join(PYTHON_INTERPRETER))
        .find(|interpreter| crate::bundled::bytes(interpreter).is_some() || interpreter.is_file())
        .with_context(|| {
            let looked: Vec<String> = dirs.iter().map(|d| d.display().to_string()).collect();
            format!(
                "{} is a python module, but the bundled Python interpreter ({PYTHON_INTERPRETER}) \
                 is in none of {} (this wasmond was built without componentize-py)",
                path.display(),
                looked.join(", ")
            )
        })?;
    Ok(Code::Python {
        source: path.to_path_buf(),
        interpreter,
    })
}

/// The module's name for logs and errors: the file stem.
fn module_name(args: &ModuleRunArgs) -> String {
    args.path
        .file_stem()
        .map(|stem| stem.to_string_lossy().into_owned())
        .unwrap_or_else(|| "module".to_string())
}

/// One handler call: what it returned and what it cost.
struct Row {
    descriptor: MetricDescriptor,
    call: u32,
    outcome: Result<MetricValue, ModuleError>,
    wall_time: Duration,
    fuel: u64,
}

fn collect_rows(instance: &mut ModuleInstance, count: u32) -> Vec<Row> {
    let descriptors = instance.descriptors().to_vec();
    let mut rows = Vec::new();
    for call in 1..=count {
        for descriptor in &descriptors {
            let outcome = instance.handle(&descriptor.name);
            let cost = instance.stats().last_call;
            rows.push(Row {
                descriptor: descriptor.clone(),
                call,
                outcome,
                wall_time: cost.map_or(Duration::ZERO, |c| c.wall_time),
                fuel: cost.map_or(0, |c| c.fuel),
            });
        }
    }
    rows
}

const HEADER: [&str; 9] = [
    "METRIC", "TYPE", "VALUE", "UNITS", "SLOPE", "GROUPS", "CALL", "TIME", "FUEL",
];

/// Prints `rows` as a table whose columns are as wide as their widest cell.
fn print_table(out: &mut impl Write, rows: &[Row]) -> io::Result<()> {
    let cells: Vec<[String; 9]> = rows.iter().map(row_cells).collect();
    let mut widths = HEADER.map(str::len);
    for row in &cells {
        for (width, cell) in widths.iter_mut().zip(row) {
            *width = (*width).max(cell.chars().count());
        }
    }
    let header = HEADER.map(str::to_string);
    for row in std::iter::once(&header).chain(&cells) {
        let line: Vec<String> = row
            .iter()
            .zip(widths)
            .map(|(cell, width)| format!("{cell:<width$}"))
            .collect();
        writeln!(out, "{}", line.join("  ").trim_end())?;
    }
    Ok(())
}

fn row_cells(row: &Row) -> [String; 9] {
    let d = &row.descriptor;
    let value = match &row.outcome {
        Ok(value) => format_value(value),
        Err(_) => "(error)".to_string(),
    };
    [
        d.name.clone(),
        d.value_type.to_string(),
        value,
        d.units.escape_debug().to_string(),
        d.slope.to_string(),
        d.groups.join(",").escape_debug().to_string(),
        row.call.to_string(),
        format!("{:.1?}", row.wall_time),
        row.fuel.to_string(),
    ]
}

fn format_value(value: &MetricValue) -> String {
    match value {
        MetricValue::String(text) => text.escape_debug().to_string(),
        MetricValue::Int8(v) => v.to_string(),
        MetricValue::UInt8(v) => v.to_string(),
        MetricValue::Int16(v) => v.to_string(),
        MetricValue::UInt16(v) => v.to_string(),
        MetricValue::Int32(v) => v.to_string(),
        MetricValue::UInt32(v) => v.to_string(),
        MetricValue::Float(v) => v.to_string(),
        MetricValue::Double(v) => v.to_string(),
    }
}

/// A module error as an `anyhow` error whose message is a single line.
fn one_line(error: ModuleError) -> anyhow::Error {
    anyhow::anyhow!(one_line_text(&error))
}

fn one_line_text(error: &ModuleError) -> String {
    error
        .to_string()
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metric::Slope;

    fn row(name: &str, value: MetricValue) -> Row {
        Row {
            descriptor: MetricDescriptor {
                name: name.into(),
                value_type: value.value_type(),
                units: "B".into(),
                slope: Slope::Both,
                format: "%f".into(),
                time_max: 60,
                description: String::new(),
                groups: vec!["a".into(), "b".into()],
                extra: vec![],
            },
            call: 1,
            outcome: Ok(value),
            wall_time: Duration::from_micros(12),
            fuel: 345,
        }
    }

    #[test]
    fn the_table_aligns_columns() {
        let rows = [
            row("x", MetricValue::Double(1.5)),
            row("longer", MetricValue::UInt8(7)),
        ];
        let mut out = Vec::new();
        print_table(&mut out, &rows).unwrap();
        let text = String::from_utf8(out).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(
            lines[0],
            "METRIC  TYPE    VALUE  UNITS  SLOPE  GROUPS  CALL  TIME    FUEL"
        );
        assert_eq!(
            lines[1],
            "x       double  1.5    B      both   a,b     1     12.0µs  345"
        );
        assert_eq!(
            lines[2],
            "longer  uint8   7      B      both   a,b     1     12.0µs  345"
        );
    }

    #[test]
    fn params_must_be_name_equals_value() {
        assert_eq!(parse_key_value("a=b=c"), Ok(("a".into(), "b=c".into())));
        assert_eq!(parse_key_value("a="), Ok(("a".into(), String::new())));
        assert!(parse_key_value("=b").is_err());
        assert!(parse_key_value("ab").is_err());
    }

    #[test]
    fn values_print_plainly() {
        assert_eq!(format_value(&MetricValue::String("a\nb".into())), "a\\nb");
        assert_eq!(format_value(&MetricValue::Int8(-3)), "-3");
        assert_eq!(format_value(&MetricValue::Float(0.25)), "0.25");
    }
}
