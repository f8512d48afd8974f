//! CPU time per metric per cycle: 100 modules x 100 metrics collected every second,
//! through the whole engine (worker threads, schedule, store writes, send requests), with
//! the `bench` guest (each handler returns a double at once).
//!
//! Anchor: gmond 3.7.2 with its python module host costs about 12 us of CPU per metric
//! per cycle (collect, send, receive). The goal for a Rust guest is 1 us or less per
//! metric collected.
//!
//! Prints, for each scenario, the process CPU time (user + system, getrusage) divided by
//! the handler calls the modules made in the measured window:
//! - `collect+send`: every value is sent each cycle (time_threshold = collect_every).
//! - `collect only`: values are collected, none is due (time_threshold = 1 h).
//! - `handler alone`: one module's handler called in a tight loop, no engine: the floor
//!   the engine adds to.
//!
//! `WASMOND_BENCH_SECONDS` sets the measured window (default 10 s);
//! `WASMOND_BENCH_ONLY=send|collect` runs one engine scenario (for profiling).

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use wasmond::collect::conversion::{call_bounds, sandbox};
use wasmond::collect::host_module::HostFacts;
use wasmond::collect::select::{Collect, EntrySpec, GroupSpec, Selector};
use wasmond::collect::wasm::WasmDriver;
use wasmond::collect::{EngineConfig, HostIdentity, ModuleSpec, ModuleState, Outputs};
use wasmond::config::SandboxConfig;
use wasmond::metric::SendRequest;
use wasmond::runtime::{Code, Runtime, RuntimeConfig, Sandbox};
use wasmond::store::{ClusterInfo, Store, StoreConfig};

/// The `bench` guest as test-guests/build.rs builds it (looked up by path rather than through
/// `wasmond_test_guests`, whose constants only list the guests present at the last build).
const BENCH_WASM: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../target/guests/wasm32-wasip2/release/bench.wasm"
);

const MODULES: usize = 100;
const METRICS: usize = 100;

fn main() {
    let seconds: u64 = std::env::var("WASMOND_BENCH_SECONDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(10);
    let runtime = Runtime::new(RuntimeConfig::default()).expect("runtime");
    let tokio = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    println!(
        "engine bench: {MODULES} modules x {METRICS} metrics, collect_every 1 s, {seconds} s measured"
    );
    let only = std::env::var("WASMOND_BENCH_ONLY").ok();
    let scenarios = [
        ("collect+send", "send", 1),
        ("collect only", "collect", 3600),
    ];
    for (label, _, time_threshold) in scenarios
        .into_iter()
        .filter(|(_, key, _)| only.as_deref().is_none_or(|o| o == *key))
    {
        let (per_metric, calls, cpu) = tokio.block_on(measure(&runtime, time_threshold, seconds));
        println!(
            "{label:>13}: {:.3} us CPU per metric per cycle ({calls} handler calls, {:.3} s CPU)",
            per_metric.as_secs_f64() * 1e6,
            cpu.as_secs_f64()
        );
    }
    let (per_call, calls) = handler_alone(&runtime);
    println!(
        "{:>13}: {:.3} us CPU per call ({calls} calls, one thread)",
        "handler alone",
        per_call.as_secs_f64() * 1e6
    );
}

/// Runs the engine, waits for every module, then measures CPU over `seconds`.
async fn measure(
    runtime: &Runtime,
    time_threshold: u64,
    seconds: u64,
) -> (Duration, u64, Duration) {
    let modules = (0..MODULES).map(|i| bench_module(runtime, i)).collect();
    let config = EngineConfig {
        host: HostIdentity {
            name: "bench".into(),
            ip: "127.0.0.1".into(),
        },
        facts: HostFacts {
            started: SystemTime::now(),
            location: "bench".into(),
        },
        groups: vec![GroupSpec {
            collect: Collect::Every(Duration::from_secs(1)),
            time_threshold: Duration::from_secs(time_threshold),
            entries: vec![EntrySpec {
                selector: Selector::name_match("^m[0-9]+_", None).unwrap(),
                value_threshold: None,
            }],
        }],
        modules,
        send_metadata_interval: None,
        policy: Default::default(),
    };
    let (sink, mut requests) = mpsc::channel::<SendRequest>(1 << 16);
    // Stands for the UDP sender: takes the requests off the channel.
    let drain = tokio::spawn(async move {
        let mut sent = 0usize;
        while let Some(request) = requests.recv().await {
            sent += request.metrics.len();
        }
        sent
    });
    let stop = CancellationToken::new();
    let (handle, task) = wasmond::collect::spawn(
        config,
        Outputs {
            store: store(),
            sink: Some(sink),
            network: None,
        },
        stop.clone(),
    );
    loop {
        let status = handle.status().await.unwrap();
        let running = status
            .modules
            .values()
            .filter(|s| matches!(s, ModuleState::Running { .. }))
            .count();
        if running == MODULES + 1 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    tokio::time::sleep(Duration::from_secs(3)).await;
    let calls_before = total_calls(&handle).await;
    let cpu_before = process_cpu();
    tokio::time::sleep(Duration::from_secs(seconds)).await;
    let cpu = process_cpu() - cpu_before;
    let calls = total_calls(&handle).await - calls_before;
    stop.cancel();
    task.await.unwrap();
    let sent = drain.await.unwrap();
    assert!(sent > 0 || time_threshold > seconds, "nothing was sent");
    (cpu / u32::try_from(calls.max(1)).unwrap(), calls, cpu)
}

async fn total_calls(handle: &wasmond::collect::EngineHandle) -> u64 {
    let status = handle.status().await.unwrap();
    status
        .accounts
        .iter()
        .filter(|(name, _)| name.starts_with('m'))
        .map(|(_, account)| account.calls)
        .sum()
}

fn bench_module(runtime: &Runtime, index: usize) -> ModuleSpec {
    let sandbox = sandbox(&SandboxConfig::default());
    let name = format!("m{index}");
    let params = vec![
        ("prefix".to_string(), format!("m{index}_")),
        ("count".to_string(), METRICS.to_string()),
    ];
    ModuleSpec {
        fingerprint: name.clone(),
        bounds: call_bounds(&sandbox),
        driver: Box::new(WasmDriver::new(
            runtime.clone(),
            &name,
            Code::Wasm(PathBuf::from(BENCH_WASM)),
            sandbox,
            params,
        )),
        name,
        inline: false,
    }
}

fn store() -> Arc<Store> {
    Arc::new(Store::new(StoreConfig {
        cluster: ClusterInfo {
            name: "c".into(),
            owner: "o".into(),
            latlong: "l".into(),
            url: "u".into(),
        },
        host_tmax: 20,
        host_dmax: 0,
    }))
}

/// One module's handler in a loop on this thread: the wasm call and its checks alone.
fn handler_alone(runtime: &Runtime) -> (Duration, u64) {
    let params = vec![
        ("prefix".to_string(), "h_".to_string()),
        ("count".to_string(), METRICS.to_string()),
    ];
    let loaded = runtime
        .load("alone", BENCH_WASM.as_ref(), Sandbox::default())
        .unwrap();
    let mut instance = loaded.start(params).unwrap();
    let names: Vec<String> = (0..METRICS).map(|i| format!("h_{i}")).collect();
    let rounds = 1000u64;
    let cpu_before = process_cpu();
    for _ in 0..rounds {
        for name in &names {
            std::hint::black_box(instance.handle(name).unwrap());
        }
    }
    let cpu = process_cpu() - cpu_before;
    let calls = rounds * METRICS as u64;
    (cpu / u32::try_from(calls).unwrap(), calls)
}

/// User + system CPU time of the whole process so far.
fn process_cpu() -> Duration {
    // SAFETY: getrusage writes into the zeroed struct we own.
    let usage = unsafe {
        let mut usage: libc::rusage = std::mem::zeroed();
        libc::getrusage(libc::RUSAGE_SELF, &mut usage);
        usage
    };
    let micros = |t: libc::timeval| t.tv_sec as u64 * 1_000_000 + t.tv_usec as u64;
    Duration::from_micros(micros(usage.ru_utime) + micros(usage.ru_stime))
}
