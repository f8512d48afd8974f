//! What a module costs, per language: the `.wasm` size, the first load (read,
//! Cranelift compile, type-check), a load served by the compile cache, a start
//! (instantiate + `init`), and one `handler` call.
//!
//! Modules: the Rust example (built by build.rs) and the C, Python and JavaScript
//! modules of guest-modules/ (built by `make -C guest-modules polyglot` into
//! target/polyglot/; a missing one is left out with a note). Handler calls are
//! measured by criterion; the loads take seconds for an interpreter guest, so they
//! are timed directly, a few times each, and printed with the summary table.
//!
//!     cargo bench --bench polyglot
//!
//! A handler call includes what the module does to answer: netstat (C) reads
//! /proc/net/snmp, pressure (JavaScript) reads a /proc/pressure file, diskstats
//! (Python) re-reads /sys at most once a second and otherwise answers from its last
//! sample, example (Rust) only computes.

use std::fs;
use std::hint::black_box;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use criterion::Criterion;
use wasmond::runtime::{Grants, Runtime, RuntimeConfig, Sandbox};

struct Subject {
    language: &'static str,
    wasm: PathBuf,
    params: Vec<(String, String)>,
    read_only_dirs: Vec<PathBuf>,
    metric: String,
}

impl Subject {
    fn sandbox(&self) -> Sandbox {
        Sandbox {
            grants: Grants {
                read_only_dirs: self.read_only_dirs.clone(),
                ..Grants::default()
            },
            ..Sandbox::default()
        }
    }
}

fn polyglot(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../target/polyglot")
        .join(format!("{name}.wasm"))
}

fn first_block_device() -> Option<String> {
    let mut names: Vec<String> = fs::read_dir("/sys/block")
        .ok()?
        .flatten()
        .map(|entry| entry.file_name().to_string_lossy().into_owned())
        .filter(|name| {
            !["loop", "ram", "zram"]
                .iter()
                .any(|prefix| name.starts_with(prefix))
        })
        .collect();
    names.sort();
    names.into_iter().next()
}

fn subjects() -> Vec<Subject> {
    let mut subjects = vec![
        Subject {
            language: "Rust (example)",
            wasm: PathBuf::from(wasmond_test_guests::EXAMPLE),
            params: vec![],
            read_only_dirs: vec![],
            metric: "example_double".into(),
        },
        Subject {
            language: "C (netstat)",
            wasm: polyglot("netstat"),
            params: vec![],
            read_only_dirs: vec!["/proc/net".into()],
            metric: "tcp_established".into(),
        },
        Subject {
            language: "JavaScript (pressure)",
            wasm: polyglot("pressure"),
            params: vec![],
            read_only_dirs: vec!["/proc/pressure".into()],
            metric: "psi_cpu_some_avg10".into(),
        },
    ];
    if let Some(device) = first_block_device() {
        subjects.push(Subject {
            language: "Python (diskstats)",
            wasm: polyglot("diskstats"),
            params: vec![("devices".into(), device.clone())],
            read_only_dirs: vec!["/sys".into()],
            metric: format!("diskstat_{device}_reads"),
        });
    }
    subjects.retain(|subject| {
        let present = subject.wasm.exists();
        if !present {
            eprintln!(
                "note: {} left out: {} not built",
                subject.language,
                subject.wasm.display()
            );
        }
        present
    });
    subjects
}

fn median(mut samples: Vec<Duration>) -> Duration {
    samples.sort();
    samples[samples.len() / 2]
}

fn time(runs: usize, mut f: impl FnMut()) -> Duration {
    median(
        (0..runs)
            .map(|_| {
                let start = Instant::now();
                f();
                start.elapsed()
            })
            .collect(),
    )
}

struct Figures {
    size: u64,
    first_load: Duration,
    cached_load: Duration,
    start: Duration,
}

/// Compiles are slow for interpreter guests: fewer runs when one takes seconds.
fn runs_for(size: u64) -> usize {
    if size > 1 << 20 { 2 } else { 5 }
}

fn measure_loads(subject: &Subject, cache_dir: &Path) -> Figures {
    let size = fs::metadata(&subject.wasm).unwrap().len();
    let runs = runs_for(size);
    let uncached = Runtime::new(RuntimeConfig {
        cache_dir: None,
        ..RuntimeConfig::default()
    })
    .unwrap();
    let first_load = time(runs, || {
        black_box(
            uncached
                .load("bench", &subject.wasm, subject.sandbox())
                .unwrap(),
        );
    });
    let cached = Runtime::new(RuntimeConfig {
        cache_dir: Some(cache_dir.to_path_buf()),
        ..RuntimeConfig::default()
    })
    .unwrap();
    let module = cached
        .load("bench", &subject.wasm, subject.sandbox())
        .unwrap();
    let cached_load = time(10, || {
        black_box(
            cached
                .load("bench", &subject.wasm, subject.sandbox())
                .unwrap(),
        );
    });
    let start = time(runs.max(3), || {
        black_box(module.start(subject.params.clone()).unwrap());
    });
    Figures {
        size,
        first_load,
        cached_load,
        start,
    }
}

fn main() {
    let mut criterion = Criterion::default().configure_from_args();
    let cache_dir =
        std::env::temp_dir().join(format!("wasmond-bench-polyglot-{}", std::process::id()));
    let subjects = subjects();
    let mut rows = Vec::new();
    for subject in &subjects {
        let figures = measure_loads(subject, &cache_dir);
        let runtime = Runtime::new(RuntimeConfig {
            cache_dir: Some(cache_dir.clone()),
            ..RuntimeConfig::default()
        })
        .unwrap();
        let module = runtime
            .load("bench", &subject.wasm, subject.sandbox())
            .unwrap();
        let mut instance = module.start(subject.params.clone()).unwrap();
        criterion.bench_function(&format!("handler/{}", subject.language), |b| {
            b.iter(|| black_box(instance.handle(&subject.metric).unwrap()))
        });
        let handler = time(2000, || {
            black_box(instance.handle(&subject.metric).unwrap());
        });
        // Fuel is counted, not timed: it does not move with the machine's load.
        let stats = instance.stats();
        let fuel = stats.last_call.map_or(0, |call| call.fuel);
        rows.push((
            subject.language,
            figures,
            handler,
            fuel,
            stats.peak_memory_bytes,
        ));
    }
    let _ = fs::remove_dir_all(&cache_dir);
    println!(
        "\n| module | .wasm size | first load (compile) | cached load | start (instantiate + init) \
         | handler call (median) | fuel per call | peak memory |"
    );
    println!("|---|---|---|---|---|---|---|---|");
    for (language, f, handler, fuel, peak_memory) in rows {
        println!(
            "| {language} | {:.1} KB | {:.1} ms | {:.2} ms | {:.2} ms | {:.2} µs | {fuel} | {:.1} MB |",
            f.size as f64 / 1024.0,
            f.first_load.as_secs_f64() * 1e3,
            f.cached_load.as_secs_f64() * 1e3,
            f.start.as_secs_f64() * 1e3,
            handler.as_secs_f64() * 1e6,
            peak_memory as f64 / (1024.0 * 1024.0),
        );
    }
    criterion.final_summary();
}
