//! A deliberately hostile metric module, for the runtime's tests and benchmarks.
//!
//! The param `attack` picks what it does; the host's tests assert which limit each
//! attack hits. It always declares two metrics: `attack` (whose type depends on the
//! attack) and `calls` (a uint32: handler calls since `init`, which shows when the
//! host re-instantiated the module).
//!
//! Attacks in `init`: `loop-init`, `million-descriptors` (param `count`), `bad-name`,
//! `duplicate-name`, `init-error`.
//! Attacks in the handler of `attack`: `loop-handler`, `memory-bomb`, `stack-overflow`,
//! `huge-string` (param `size`), `panic`, `wrong-type`, `open-file` (param `path`),
//! `write-file` (param `path`), `open-socket` (param `addr`), `read-env` (param `name`),
//! `log-flood` (param `count`), `huge-log-line` (param `size`), `handler-error`, `sleep`,
//! `statvfs` (param `path`: the size in bytes of the file system mounted there),
//! `busy` (param `ms`: spins that long, then answers), `answer-out-of-turn` (answers
//! metric 7 through `collect.answer` before returning its own value).
//! Attacks in `cleanup`: `loop-cleanup`.
//! `wire` declares, beside `calls`, metrics whose formats, units, descriptions, groups,
//! extras and string values would crash a real gmond 3.7.2 or make its XML ill-formed
//! if sent as they are (`wire_*`, and `Location`, a double gmond would read as a string).
//! `log-then-panic` (param `count`) writes log lines, then panics, in the handler.
//! `none` (the default) is well-behaved: `attack` is a double, 1.5.

use std::hint::black_box;
use wasmond_guest::{Level, Metric, MetricValue, Module, Params, ValueType};

struct Hostile {
    attack: String,
    params: Params,
    calls: u32,
}

impl Module for Hostile {
    fn init(params: &Params) -> Result<(Self, Vec<Metric>), String> {
        let attack = params.get("attack").unwrap_or("none").to_string();
        let metrics = match attack.as_str() {
            "loop-init" => spin_forever(),
            "init-error" => return Err("init refused on purpose".to_string()),
            "million-descriptors" => many_metrics(params.parse_or("count", 1_000_000usize)?),
            // Every descriptor within the per-field caps, the whole far over the module's.
            "fat-descriptors" => many_metrics(params.parse_or("count", 4096usize)?)
                .into_iter()
                .map(|metric| metric.description("x".repeat(1000)))
                .collect(),
            "bad-name" => vec![Metric::new("bad name!", ValueType::Double)],
            "duplicate-name" => vec![
                Metric::new("twin", ValueType::Double),
                Metric::new("twin", ValueType::Double),
            ],
            "wire" => wire_metrics(),
            _ => vec![
                Metric::new("attack", attack_metric_type(&attack)),
                Metric::new("calls", ValueType::Uint32),
            ],
        };
        let module = Hostile {
            attack,
            params: params.clone(),
            calls: 0,
        };
        Ok((module, metrics))
    }

    fn handle(&mut self, metric: &str) -> Result<MetricValue, String> {
        self.calls += 1;
        match metric {
            "calls" => Ok(MetricValue::Uint32(self.calls)),
            "attack" => self.attack(),
            wire if self.attack == "wire" => Ok(wire_value(wire)),
            other => Err(format!("unknown metric {other}")),
        }
    }

    fn cleanup(&mut self) {
        if self.attack == "loop-cleanup" {
            spin_forever()
        }
    }
}

impl Hostile {
    fn attack(&mut self) -> Result<MetricValue, String> {
        let params = &self.params;
        match self.attack.as_str() {
            "loop-handler" => spin_forever(),
            "memory-bomb" => memory_bomb(),
            "stack-overflow" => Ok(MetricValue::Double(recurse(black_box(u64::MAX)) as f64)),
            "huge-string" => {
                let size = params.parse_or("size", 16usize << 20)?;
                Ok(MetricValue::String("x".repeat(size)))
            }
            "panic" => panic!("the hostile module panics on purpose"),
            "wrong-type" => Ok(MetricValue::String("not a double".to_string())),
            "open-file" => read_file(params.get("path").unwrap_or("/etc/passwd")),
            "write-file" => write_file(params.get("path").unwrap_or("/tmp/wasmond-hostile")),
            "open-socket" => connect(params.get("addr").unwrap_or("127.0.0.1:8649")),
            "read-env" => read_env(params.get("name").unwrap_or("HOME")),
            "log-flood" => {
                let count = params.parse_or("count", 100_000u32)?;
                for line in 0..count {
                    wasmond_guest::log(Level::Info, &format!("flood line {line}"));
                }
                Ok(MetricValue::Double(f64::from(count)))
            }
            "huge-log-line" => {
                let size = params.parse_or("size", 1usize << 20)?;
                wasmond_guest::log(Level::Warn, &"y".repeat(size));
                Ok(MetricValue::Double(size as f64))
            }
            "handler-error" => Err("handler refused on purpose".to_string()),
            "log-then-panic" => {
                for line in 0..params.parse_or("count", 1000u32)? {
                    wasmond_guest::log(Level::Info, &format!("line {line} before a panic"));
                }
                panic!("the hostile module panics after logging")
            }
            "statvfs" => {
                let usage = wasmond_guest::filesystem_usage(params.get("path").unwrap_or("/"))?;
                Ok(MetricValue::Double((usage.blocks * usage.fragment_size) as f64))
            }
            "busy" => {
                let busy = std::time::Duration::from_millis(params.parse_or("ms", 100u64)?);
                let started = std::time::Instant::now();
                while started.elapsed() < busy {
                    black_box(());
                }
                Ok(MetricValue::Double(busy.as_millis() as f64))
            }
            "answer-out-of-turn" => {
                let value = MetricValue::Double(7.0);
                wasmond_guest::bindings::wasmond::metric::collect::answer(7, Ok(&value));
                Ok(value)
            }
            "sleep" => {
                std::thread::sleep(std::time::Duration::from_secs(3600));
                Ok(MetricValue::Double(0.0))
            }
            _ => Ok(MetricValue::Double(1.5)),
        }
    }
}

/// The declared type of the `attack` metric: a string where the attack returns one
/// legitimately, a double otherwise (so `wrong-type` returning a string is wrong).
fn attack_metric_type(attack: &str) -> ValueType {
    match attack {
        "huge-string" | "open-file" | "write-file" | "open-socket" | "read-env" => {
            ValueType::String
        }
        _ => ValueType::Double,
    }
}

/// Text with every character gmond 3.7.2 would put raw into its XML and break it.
const HOSTILE_TEXT: &str = "a<b>&c'd\"e\u{1}f\u{1b}[31mg\u{e9}h\u{7f}";

/// Metrics a gmond receiving them as they are would die of (formats) or serve ill-formed
/// XML for (text, lengths).
fn wire_metrics() -> Vec<Metric> {
    let mut many_extras = Metric::new("wire_extras", ValueType::Double);
    for i in 0..60 {
        many_extras = many_extras.extra(format!("k{i:02}"), "v".repeat(8));
    }
    vec![
        Metric::new("calls", ValueType::Uint32),
        Metric::new("wire_s4", ValueType::Double).format("%s%s%s%s"),
        Metric::new("wire_n", ValueType::Int32).format("%n"),
        Metric::new("wire_fn", ValueType::Float).format("%.3f%n"),
        Metric::new("wire_sd", ValueType::Uint32).format("%s"),
        Metric::new("wire_wide", ValueType::Double).format("%1000.1000f"),
        Metric::new("wire_literal", ValueType::Double).format("<%f>&\""),
        Metric::new("wire_text", ValueType::String)
            .units(HOSTILE_TEXT)
            .description(HOSTILE_TEXT)
            .group(HOSTILE_TEXT)
            .extra(HOSTILE_TEXT, HOSTILE_TEXT),
        Metric::new("wire_long", ValueType::String)
            .units("u".repeat(1000))
            .description("d".repeat(1000)),
        many_extras,
        Metric::new("Location", ValueType::Double),
    ]
}

fn wire_value(metric: &str) -> MetricValue {
    match metric {
        "wire_n" => MetricValue::Int32(-7),
        "wire_fn" => MetricValue::Float(2.5),
        "wire_sd" => MetricValue::Uint32(7),
        "wire_text" => MetricValue::String(HOSTILE_TEXT.to_string()),
        "wire_long" => MetricValue::String("x".repeat(1000)),
        _ => MetricValue::Double(1.5),
    }
}

/// Burns instructions forever: only fuel or the epoch deadline stop it.
fn spin_forever() -> ! {
    let mut counter = 0u64;
    loop {
        counter = black_box(counter.wrapping_add(1));
    }
}

/// Allocates and touches 1 MiB chunks until the host refuses to grow memory.
fn memory_bomb() -> ! {
    let mut hoard: Vec<Vec<u8>> = Vec::new();
    loop {
        hoard.push(vec![0xA5; 1 << 20]);
        black_box(&hoard);
    }
}

/// Recurses without bound; `black_box` keeps the compiler from making it a loop.
fn recurse(depth: u64) -> u64 {
    if depth == 0 {
        0
    } else {
        black_box(recurse(black_box(depth - 1))) + 1
    }
}

fn many_metrics(count: usize) -> Vec<Metric> {
    (0..count)
        .map(|i| Metric::new(format!("m{i}"), ValueType::Double))
        .collect()
}

fn read_file(path: &str) -> Result<MetricValue, String> {
    match std::fs::read_to_string(path) {
        Ok(text) => Ok(MetricValue::String(text.chars().take(64).collect())),
        Err(err) => Err(format!("cannot read {path}: {err}")),
    }
}

fn write_file(path: &str) -> Result<MetricValue, String> {
    match std::fs::write(path, b"written by a hostile module") {
        Ok(()) => Ok(MetricValue::String(format!("wrote {path}"))),
        Err(err) => Err(format!("cannot write {path}: {err}")),
    }
}

fn connect(addr: &str) -> Result<MetricValue, String> {
    match std::net::TcpStream::connect(addr) {
        Ok(_) => Ok(MetricValue::String(format!("connected to {addr}"))),
        Err(err) => Err(format!("cannot connect to {addr}: {err}")),
    }
}

fn read_env(name: &str) -> Result<MetricValue, String> {
    std::env::var(name)
        .map(MetricValue::String)
        .map_err(|err| format!("cannot read env {name}: {err}"))
}

wasmond_guest::export_module!(Hostile);
