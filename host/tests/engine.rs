//! The engine and the daemon with real guests: healthy modules keep their schedule next
//! to hostile ones, a wedged module does not hold up shutdown, `wasmond run` reloads on
//! SIGHUP and stops on SIGTERM even with a module looping in its cleanup, and
//! `wasmond check` explains a configuration.

use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use tokio::sync::mpsc;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use wasmond::collect::EngineHandle;
use wasmond::collect::conversion::{call_bounds, sandbox};
use wasmond::collect::host_module::HostFacts;
use wasmond::collect::select::{Collect, EntrySpec, GroupSpec, Selector};
use wasmond::collect::wasm::WasmDriver;
use wasmond::collect::{EngineConfig, HostIdentity, ModuleSpec, ModuleState, Outputs, Status};
use wasmond::config::SandboxConfig;
use wasmond::metric::SendRequest;
use wasmond::runtime::{Code, Runtime, RuntimeConfig};
use wasmond::store::{ClusterInfo, Store, StoreConfig};
use wasmond_test_guests as guests;

/// How late a healthy module's values may be, next to a hostile module.
const SCHEDULE_TOLERANCE: Duration = Duration::from_millis(50);

/// The timing tests run one at a time: on a small machine, tests running side by side
/// would measure each other.
static TIMING: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

fn runtime() -> Runtime {
    Runtime::new(RuntimeConfig {
        cache_dir: None,
        ..RuntimeConfig::default()
    })
    .unwrap()
}

/// A module spec for a real guest, with a handler deadline in milliseconds.
fn wasm_module(
    runtime: &Runtime,
    name: &str,
    wasm: &str,
    params: &[(&str, &str)],
    deadline_ms: u64,
) -> ModuleSpec {
    let config = SandboxConfig {
        deadline_handler_ms: Some(deadline_ms),
        deadline_cleanup_ms: Some(deadline_ms),
        ..SandboxConfig::default()
    };
    let sandbox = sandbox(&config);
    let params = params
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    ModuleSpec {
        name: name.into(),
        fingerprint: "test".into(),
        bounds: call_bounds(&sandbox),
        driver: Box::new(WasmDriver::new(
            runtime.clone(),
            name,
            Code::Wasm(PathBuf::from(wasm)),
            sandbox,
            params,
        )),
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

/// Every second, sent every time: each collection shows as a send.
fn every_second(pattern: &str) -> GroupSpec {
    GroupSpec {
        collect: Collect::Every(Duration::from_secs(1)),
        time_threshold: Duration::from_secs(1),
        entries: vec![EntrySpec {
            selector: Selector::name_match(pattern, None).unwrap(),
            value_threshold: None,
        }],
    }
}

struct Running {
    handle: EngineHandle,
    /// Every send request, with when it arrived.
    sends: mpsc::UnboundedReceiver<(Instant, SendRequest)>,
    stop: CancellationToken,
    task: tokio::task::JoinHandle<wasmond::collect::ShutdownReport>,
    /// Just before the engine started: its group's schedule starts once its modules have
    /// (at most a few ms later, but 70 ms on a loaded CI machine).
    origin: Instant,
}

fn start(modules: Vec<ModuleSpec>, pattern: &str) -> Running {
    let config = EngineConfig {
        host: HostIdentity {
            name: "testhost".into(),
            ip: "127.0.0.1".into(),
        },
        facts: HostFacts {
            started: SystemTime::now(),
            location: "here".into(),
        },
        groups: vec![every_second(pattern)],
        modules,
        send_metadata_interval: None,
        policy: Default::default(),
    };
    let (sink, mut requests) = mpsc::channel(4096);
    let (stamped, sends) = mpsc::unbounded_channel();
    tokio::spawn(async move {
        while let Some(request) = requests.recv().await {
            let _ = stamped.send((Instant::now(), request));
        }
    });
    let stop = CancellationToken::new();
    let origin = Instant::now();
    let (handle, task) = wasmond::collect::spawn(
        config,
        Outputs {
            store: store(),
            sink: Some(sink),
            network: None,
        },
        stop.clone(),
    );
    Running {
        handle,
        sends,
        stop,
        task,
        origin,
    }
}

impl Running {
    async fn wait_running(&self, modules: &[&str]) -> Status {
        for _ in 0..200 {
            let status = self.handle.status().await.unwrap();
            if modules
                .iter()
                .all(|m| matches!(status.modules.get(*m), Some(ModuleState::Running { .. })))
            {
                return status;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!(
            "modules not running: {:?}",
            self.handle.status().await.unwrap().modules
        );
    }

    /// For `seconds` whole cycles from the next one: the lateness of every send whose
    /// metrics start with `prefix`, against the group's schedule. The schedule is a grid
    /// of whole seconds from when the engine started, offset by how long its modules took
    /// to start: the earliest any send of a cycle came (a healthy module's).
    async fn lateness(&mut self, prefix: &str, seconds: u32) -> Vec<Duration> {
        let origin = self.origin;
        while self.sends.try_recv().is_ok() {}
        let period = Duration::from_secs(1);
        let cycles_so_far = Instant::now().duration_since(origin).as_secs() as u32 + 1;
        let from = origin + period * cycles_so_far;
        let until = from + period * seconds - Duration::from_millis(500);
        let phase = |arrived: Instant| {
            let since = arrived.duration_since(origin);
            since - period * since.as_secs() as u32
        };
        let mut phases = Vec::new();
        let mut earliest = period;
        loop {
            tokio::select! {
                request = self.sends.recv() => {
                    let (arrived, request) = request.unwrap();
                    if arrived < from {
                        continue;
                    }
                    earliest = earliest.min(phase(arrived));
                    if request.metrics.iter().any(|m| m.name.starts_with(prefix)) {
                        phases.push(phase(arrived));
                    }
                }
                () = tokio::time::sleep_until(until) => break,
            }
        }
        phases.into_iter().map(|phase| phase - earliest).collect()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn healthy_modules_stay_on_schedule_next_to_a_module_hitting_its_deadline() {
    let _alone = TIMING.lock().await;
    let runtime = runtime();
    let modules = vec![
        wasm_module(
            &runtime,
            "healthy_a",
            guests::EXAMPLE,
            &[("prefix", "a_")],
            1000,
        ),
        wasm_module(
            &runtime,
            "hostile",
            guests::HOSTILE,
            &[("attack", "loop-handler")],
            300,
        ),
        wasm_module(
            &runtime,
            "healthy_b",
            guests::EXAMPLE,
            &[("prefix", "b_")],
            1000,
        ),
    ];
    let mut engine = start(modules, "^(a_|b_|attack|calls)");
    engine
        .wait_running(&["healthy_a", "hostile", "healthy_b"])
        .await;
    let late_a = engine.lateness("a_", 6).await;
    let status = engine.handle.status().await.unwrap();
    let traps = status.accounts["hostile"].traps;
    assert!(
        traps >= 2,
        "the hostile module hit its deadline {traps} times"
    );
    assert!(late_a.len() >= 5, "a collection per cycle: {late_a:?}");
    let worst = late_a.iter().max().unwrap();
    assert!(
        *worst <= SCHEDULE_TOLERANCE,
        "healthy_a was {worst:?} late: {late_a:?}"
    );
    println!("hostile traps: {traps}; healthy_a lateness: {late_a:?}");
    engine.stop.cancel();
    let report = engine.task.await.unwrap();
    assert_eq!(
        report.cleaned_up,
        ["healthy_a", "healthy_b", "hostile", "wasmond"]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_module_sleeping_in_a_host_call_is_stopped_at_its_deadline() {
    // `sleep` waits in WASI for an hour, where no epoch check runs: the runtime's
    // deadline-aware poll (run in the worker thread's tokio context) stops it.
    let _alone = TIMING.lock().await;
    let runtime = runtime();
    let modules = vec![
        wasm_module(
            &runtime,
            "healthy",
            guests::EXAMPLE,
            &[("prefix", "a_")],
            1000,
        ),
        wasm_module(
            &runtime,
            "sleeper",
            guests::HOSTILE,
            &[("attack", "sleep")],
            200,
        ),
    ];
    let mut engine = start(modules, "^(a_|attack|calls)");
    engine.wait_running(&["healthy", "sleeper"]).await;
    let late = engine.lateness("a_", 4).await;
    let worst = late.iter().max().unwrap();
    assert!(late.len() >= 3 && *worst <= SCHEDULE_TOLERANCE, "{late:?}");
    let status = engine.handle.status().await.unwrap();
    assert!(
        status.accounts["sleeper"].traps >= 1,
        "{:?}",
        status.accounts["sleeper"]
    );
    let asked = Instant::now();
    engine.stop.cancel();
    let report = engine.task.await.unwrap();
    assert_eq!(report.cleaned_up, ["healthy", "sleeper", "wasmond"]);
    assert!(
        asked.elapsed() < Duration::from_secs(3),
        "shutdown took {:?}",
        asked.elapsed()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_real_modules_claiming_one_name_the_second_is_rejected() {
    let runtime = runtime();
    let modules = vec![
        wasm_module(
            &runtime,
            "first",
            guests::EXAMPLE,
            &[("prefix", "x_")],
            1000,
        ),
        wasm_module(
            &runtime,
            "second",
            guests::EXAMPLE,
            &[("prefix", "x_")],
            1000,
        ),
    ];
    let engine = start(modules, "^x_");
    engine.wait_running(&["first"]).await;
    let mut status = engine.handle.status().await.unwrap();
    for _ in 0..100 {
        if matches!(status.modules["second"], ModuleState::Rejected { .. }) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
        status = engine.handle.status().await.unwrap();
    }
    let ModuleState::Rejected { errors } = &status.modules["second"] else {
        panic!("{:?}", status.modules)
    };
    // Whichever finished its init first, the module declared first keeps the names: the
    // second claims only once the first has started, and is refused every name.
    assert_eq!(errors.len(), 9, "{errors:?}");
    assert!(
        errors
            .iter()
            .all(|e| e.contains("is already published by module first")),
        "{errors:?}"
    );
    engine.stop.cancel();
    engine.task.await.unwrap();
}

// ---- the daemon, as a process ----

/// A port for this test's XML channel, unlikely to clash with other tests.
fn port(offset: u16) -> u16 {
    20000 + (std::process::id() % 20000) as u16 + offset
}

fn module_block(name: &str, wasm: &str, params: &[(&str, &str)], sandbox: &str) -> String {
    let params: String = params
        .iter()
        .map(|(k, v)| format!("    param {k} {{ value = \"{v}\" }}\n"))
        .collect();
    format!(
        "modules {{\n  module {{\n    name = \"{name}\"\n    language = \"wasm\"\n    path = \"{wasm}\"\n{params}    sandbox {{ {sandbox} }}\n  }}\n}}\n"
    )
}

fn daemon_config(xml_port: u16, modules: &str) -> String {
    format!(
        r#"globals {{
  daemonize = no
  setuid = no
  debug_level = 0
}}
tcp_accept_channel {{
  bind = 127.0.0.1
  port = {xml_port}
}}
{modules}
collection_group {{
  collect_every = 1
  time_threshold = 1
  metric {{ name_match = "^(a_|b_|attack|calls)" }}
}}
"#
    )
}

struct Daemon {
    child: Child,
    log: Arc<Mutex<String>>,
}

impl Daemon {
    fn start(config: &Path) -> Daemon {
        let mut child = Command::new(env!("CARGO_BIN_EXE_wasmond"))
            .args(["run", "-c"])
            .arg(config)
            .env("RUST_LOG", "info")
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let log = Arc::new(Mutex::new(String::new()));
        let stderr = child.stderr.take().unwrap();
        let sink = log.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                let mut log = sink.lock().unwrap();
                log.push_str(&line);
                log.push('\n');
            }
        });
        Daemon { child, log }
    }

    fn signal(&self, signal: &str) {
        let status = Command::new("kill")
            .args(["-s", signal, &self.child.id().to_string()])
            .status()
            .unwrap();
        assert!(status.success());
    }

    fn log(&self) -> String {
        self.log.lock().unwrap().clone()
    }

    /// Waits until the log contains `text`.
    fn wait_log(&self, text: &str) {
        for _ in 0..300 {
            if self.log().contains(text) {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!("no {text:?} in the log:\n{}", self.log());
    }

    /// Waits until the XML served on `port` contains `text`.
    fn wait_xml(&self, port: u16, text: &str) -> String {
        let mut xml = String::new();
        for _ in 0..300 {
            xml.clear();
            if let Ok(mut stream) = std::net::TcpStream::connect(("127.0.0.1", port)) {
                let _ = stream.read_to_string(&mut xml);
                if xml.contains(text) {
                    return xml;
                }
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!("no {text:?} in the XML:\n{xml}\nlog:\n{}", self.log());
    }

    /// Waits for the process to exit; returns its status and how long it took.
    fn wait_exit(&mut self, within: Duration) -> (std::process::ExitStatus, Duration) {
        let started = std::time::Instant::now();
        while started.elapsed() < within {
            if let Some(status) = self.child.try_wait().unwrap() {
                return (status, started.elapsed());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        panic!(
            "the daemon did not exit within {within:?}; log:\n{}",
            self.log()
        );
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn temp_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("wasmond-engine-{name}-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

#[test]
fn sighup_reloads_the_config_and_refuses_a_bad_one() {
    let dir = temp_dir("reload");
    let config = dir.join("gmond.conf");
    let xml_port = port(1);
    let module_a = module_block("a", guests::EXAMPLE, &[("prefix", "a_")], "");
    std::fs::write(&config, daemon_config(xml_port, &module_a)).unwrap();
    let daemon = Daemon::start(&config);
    daemon.wait_xml(xml_port, "a_double");

    std::fs::write(&config, "globals { no_such_key = 1 }\n").unwrap();
    daemon.signal("HUP");
    daemon.wait_log("the running one is kept");

    let module_b = module_block("b", guests::EXAMPLE, &[("prefix", "b_")], "");
    std::fs::write(&config, daemon_config(xml_port, &module_b)).unwrap();
    daemon.signal("HUP");
    daemon.wait_xml(xml_port, "b_double");
    daemon.wait_log("stopping module a");
    let log = daemon.log();
    assert!(log.contains("module b started with 9 metrics"), "{log}");
    assert_eq!(
        log.matches("module a started").count(),
        1,
        "a is not restarted: {log}"
    );
}

#[test]
fn sigterm_exits_zero_in_bounded_time_with_a_module_looping_in_cleanup() {
    let dir = temp_dir("shutdown");
    let config = dir.join("gmond.conf");
    let xml_port = port(2);
    let modules = module_block(
        "looper",
        guests::HOSTILE,
        &[("attack", "loop-cleanup")],
        "deadline_cleanup_ms = 300 fuel_cleanup = 1000000000000",
    ) + &module_block("a", guests::EXAMPLE, &[("prefix", "a_")], "");
    std::fs::write(&config, daemon_config(xml_port, &modules)).unwrap();
    let mut daemon = Daemon::start(&config);
    daemon.wait_xml(xml_port, "a_double");
    daemon.wait_log("module looper started");
    daemon.signal("TERM");
    let (status, took) = daemon.wait_exit(Duration::from_secs(15));
    assert!(status.success(), "{status}: {}", daemon.log());
    assert!(took < Duration::from_secs(5), "took {took:?}");
    let log = daemon.log();
    assert!(
        log.contains("module looper: cleanup: deadline"),
        "the loop was stopped by its deadline: {log}"
    );
    println!("SIGTERM to exit: {took:?}");
}

#[test]
fn check_explains_the_config_and_fails_on_a_clash() {
    let dir = temp_dir("check");
    let config = dir.join("gmond.conf");
    let module_a = module_block("a", guests::EXAMPLE, &[("prefix", "a_")], "");
    let text = daemon_config(port(3), &module_a)
        + "collection_group {\n  collect_every = 60\n  metric { name = \"nothing_here\" }\n}\n"
        + "collection_group {\n  collect_every = 30\n  metric { name = \"a_*int*\" }\n  metric { name = \"!a_?int8\" }\n}\n"
        + "collection_group {\n  collect_every = 45\n  metric { name = \"!a_*\" }\n}\n";
    std::fs::write(&config, text).unwrap();
    let output = Command::new(env!("CARGO_BIN_EXE_wasmond"))
        .args(["check", "-c"])
        .arg(&config)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(
        stdout.contains(
            "a_double (double, ratio, tmax 60 s): group 1 by name_match \"^(a_|b_|attack|calls)\" (every 1 s, sent at least every 1 s)"
        ),
        "{stdout}"
    );
    // Globs select, `!` excludes whatever the order, and a group of exclusions only
    // takes everything else.
    assert!(
        stdout.contains("a_uint16 (uint16, count, tmax 60 s): group 1 by name_match \"^(a_|b_|attack|calls)\" (every 1 s, sent at least every 1 s); group 3 by name \"a_*int*\" (every 30 s, sent at least every 3600 s); excluded from group 4 by name \"!a_*\""),
        "{stdout}"
    );
    assert!(
        stdout.contains("a_uint8 (uint8, count, tmax 60 s): group 1 by name_match \"^(a_|b_|attack|calls)\" (every 1 s, sent at least every 1 s); excluded from group 3 by name \"!a_?int8\"; excluded from group 4 by name \"!a_*\""),
        "{stdout}"
    );
    assert!(
        stdout.contains("a_int8 (int8, count, tmax 60 s): group 1 by name_match \"^(a_|b_|attack|calls)\" (every 1 s, sent at least every 1 s); group 3 by name \"a_*int*\""),
        "{stdout}"
    );
    assert!(
        stdout.contains("heartbeat (uint32, tmax 20 s): group 4 by name \"!a_*\" (every metric but the excluded) (every 45 s, sent at least every 3600 s)"),
        "{stdout}"
    );
    assert!(
        stdout.contains("entry name \"nothing_here\" matches no metric"),
        "{stdout}"
    );

    let clash = module_block("a", guests::EXAMPLE, &[("prefix", "a_")], "")
        + &module_block("b", guests::EXAMPLE, &[("prefix", "a_")], "");
    std::fs::write(&config, daemon_config(port(3), &clash)).unwrap();
    let output = Command::new(env!("CARGO_BIN_EXE_wasmond"))
        .args(["check", "-c"])
        .arg(&config)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success());
    assert!(
        stderr.contains("module b: metric \"a_string\" is already published by module a"),
        "{stderr}"
    );
}
