//! What gmond python modules cost in the bundled interpreter: per-module start time,
//! resident memory and handler cost, for 1, 10 and 100 modules in one process.
//!
//!     cargo bench --bench python
//!
//! The modules are gmond 3.7.2's own (tools/fetch-ganglia-python-modules.sh), taken in
//! turn from cpu_stats, mem_stats, vm_stats, multi_interface, diskstat, diskfree and
//! entropy, each loaded under its own name from its unchanged `.py` with `/proc` and
//! `/sys` granted, and kept running, as a daemon keeps them. Reported:
//!
//! - the first module's cold start: the interpreter's compile (the compile cache
//!   starts empty) plus its instantiation and `init` (the module's import, Python 2
//!   translation included, and `metric_init`);
//! - each further module's start (load served by the runtime, instantiate, `init`);
//! - RSS (VmRSS of this process) after each step, and the marginal RSS per module;
//! - the handler cost: every metric of every module called once, after a priming
//!   round, as the median per call.
//!
//! A second pass repeats the 100 with the compile cache warm (a daemon restart).

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use wasmond::runtime::{
    Code, Grants, ModuleInstance, PYTHON_INTERPRETER, Runtime, RuntimeConfig, Sandbox,
};

/// A stock module: its directory, its name, and its params.
type StockModule = (
    &'static str,
    &'static str,
    &'static [(&'static str, &'static str)],
);

const MODULES: &[StockModule] = &[
    ("cpu", "cpu_stats", &[]),
    ("memory", "mem_stats", &[]),
    ("vm_stats", "vm_stats", &[]),
    (
        "network",
        "multi_interface",
        &[
            ("interfaces", ""),
            ("excluded_interfaces", "lo"),
            ("send_aggregate_bytes_packets", "False"),
        ],
    ),
    ("disk", "diskstat", &[]),
    (
        "disk",
        "diskfree",
        &[("mounts", "/proc/mounts"), ("min_disk_size", "1")],
    ),
    ("ssl", "entropy", &[]),
];

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf()
}

fn rss_mb() -> f64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let kb: f64 = status
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))
        .and_then(|rest| rest.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap();
    kb / 1024.0
}

fn sandbox() -> Sandbox {
    Sandbox {
        grants: Grants {
            read_only_dirs: vec!["/proc".into(), "/sys".into()],
            filesystem_usage: true,
            ..Grants::default()
        },
        ..Sandbox::default()
    }
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    values.get(values.len() / 2).copied().unwrap_or(0.0)
}

/// Starts `count` modules on `runtime`; returns them with each start's time and the
/// RSS once the first one runs.
fn start_modules(
    runtime: &Runtime,
    interpreter: &Path,
    count: usize,
) -> (Vec<ModuleInstance>, Vec<Duration>, f64) {
    let sources = root().join("target/ganglia-3.7.2/gmond/python_modules");
    let mut instances = Vec::new();
    let mut times = Vec::new();
    let mut rss_after_first = 0.0;
    for index in 0..count {
        let (folder, name, params) = MODULES[index % MODULES.len()];
        let code = Code::Python {
            source: sources.join(folder).join(format!("{name}.py")),
            interpreter: interpreter.to_path_buf(),
        };
        let params = params
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        let started = Instant::now();
        let instance = runtime
            .load_code(&format!("{name}_{index}"), &code, sandbox())
            .and_then(|loaded| loaded.start(params))
            .unwrap_or_else(|e| panic!("{e}"));
        times.push(started.elapsed());
        instances.push(instance);
        if index == 0 {
            rss_after_first = rss_mb();
        }
    }
    (instances, times, rss_after_first)
}

/// Median wall time of one handler call over every metric of every instance.
fn handler_cost(instances: &mut [ModuleInstance]) -> f64 {
    let mut calls = Vec::new();
    for round in 0..2 {
        for instance in instances.iter_mut() {
            let names: Vec<String> = instance
                .descriptors()
                .iter()
                .map(|d| d.name.clone())
                .collect();
            for name in names {
                let started = Instant::now();
                let _ = instance.handle(&name);
                if round == 1 {
                    calls.push(started.elapsed().as_secs_f64() * 1e6);
                }
            }
        }
    }
    median(calls)
}

fn main() {
    let interpreter = wasmond::bundled::path(PYTHON_INTERPRETER);
    if wasmond::bundled::bytes(&interpreter).is_none()
        || !root()
            .join("target/ganglia-3.7.2/gmond/python_modules")
            .is_dir()
    {
        eprintln!(
            "python bench: skipped, needs {} and tools/fetch-ganglia-python-modules.sh",
            interpreter.display()
        );
        return;
    }
    let cache = tempfile::tempdir().unwrap();
    for pass in ["cold compile cache", "warm compile cache"] {
        for count in [1usize, 10, 100] {
            let runtime = Runtime::new(RuntimeConfig {
                cache_dir: Some(cache.path().to_path_buf()),
                ..RuntimeConfig::default()
            })
            .unwrap();
            let before = rss_mb();
            let (mut instances, times, first) = start_modules(&runtime, &interpreter, count);
            let after = rss_mb();
            let metrics: usize = instances.iter().map(|i| i.descriptors().len()).sum();
            let further: Vec<f64> = times.iter().skip(1).map(|t| ms(*t)).collect();
            let handler = handler_cost(&mut instances);
            // Memory past the first module (which holds the compiled interpreter),
            // per further module.
            let marginal = if count > 1 {
                (after - first) / (count - 1) as f64
            } else {
                after - before
            };
            println!(
                "{pass}: {count:>3} modules ({metrics} metrics): first start {:.0} ms; further starts median {:.1} ms, max {:.1} ms; RSS +{:.0} MB (first module +{:.0} MB, then {:.1} MB per module); handler median {:.1} µs",
                ms(times[0]),
                median(further.clone()),
                further.iter().copied().fold(0.0, f64::max),
                after - before,
                first - before,
                marginal,
                handler,
            );
            drop(instances);
        }
    }
}
