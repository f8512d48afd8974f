//! Issue 12, an operator's bad day, against the real binary: includes that never end
//! (a FIFO, `/dev/zero`) or are many, reloads that fail half-way or take long, and
//! SIGTERM while a module is stuck in a call.

#[path = "support/daemon.rs"]
mod daemon;

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use daemon::{Daemon, config_with, free_port, group_matching, mkfifo, module_block, temp_dir};
use wasmond::daemon::SHUTDOWN_BUDGET;
use wasmond_test_guests as guests;

/// Runs `wasmond <args>`, killing it (by pid) if it is not done within `within`.
fn wasmond_within(args: &[&str], within: Duration) -> (Output, Duration) {
    let started = Instant::now();
    let mut child = Command::new(env!("CARGO_BIN_EXE_wasmond"))
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    while started.elapsed() < within {
        if child.try_wait().unwrap().is_some() {
            return (child.wait_with_output().unwrap(), started.elapsed());
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let _ = child.kill();
    let output = child.wait_with_output().unwrap();
    panic!(
        "wasmond {args:?} did not finish within {within:?}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
}

/// `check` and `run` on a config including a FIFO and `/dev/zero`: both refuse it at
/// once, naming each include's place, instead of waiting for a writer or reading zeros
/// until the OOM killer comes.
#[test]
fn fifo_and_dev_zero_includes_are_refused_by_check_and_run_without_hanging() {
    let dir = temp_dir();
    let fifo = mkfifo(&dir.path().join("never.conf"));
    let config = dir.path().join("gmond.conf");
    let text = config_with(
        free_port(),
        "include ('never.conf')\ninclude ('/dev/zero')\n",
    );
    std::fs::write(&config, text).unwrap();
    let config = config.to_str().unwrap();
    for command in ["check", "run"] {
        let (output, took) = wasmond_within(&[command, "-c", config], Duration::from_secs(20));
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(!output.status.success(), "{command}: {stderr}");
        assert!(
            stderr.contains(&format!(
                "{config}:10:10: error: cannot read `{}`: a FIFO, not a regular file",
                fifo.display()
            )),
            "{command}: {stderr}"
        );
        assert!(
            stderr.contains(&format!(
                "{config}:11:10: error: cannot read `/dev/zero`: a device, not a regular file"
            )),
            "{command}: {stderr}"
        );
        println!("{command}: refused in {took:?}");
    }
}

/// gmond reads 10 000 included files; a thousand (here through one glob) used to be a
/// fatal error.
#[test]
fn a_thousand_included_files_pass_check() {
    let dir = temp_dir();
    let conf_d = dir.path().join("conf.d");
    std::fs::create_dir(&conf_d).unwrap();
    for i in 0..1000 {
        std::fs::write(conf_d.join(format!("{i:04}.conf")), format!("# file {i}\n")).unwrap();
    }
    let config = dir.path().join("gmond.conf");
    std::fs::write(
        &config,
        config_with(free_port(), "include ('conf.d/*.conf')\n"),
    )
    .unwrap();
    let (output, _) = wasmond_within(
        &["check", "-c", config.to_str().unwrap()],
        Duration::from_secs(60),
    );
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
}

/// A thousand modules, each in its own included `.pyconf` with a collection group of its
/// own (half naming their metrics, half by `name_match`, as gmond's files do): every
/// module's metrics reach the XML within 30 s (about 1 s here). Planning once per
/// started module over every group and metric made this quadratic: 84 s for this case,
/// and minutes with ten metrics per module.
#[test]
fn a_thousand_modules_with_a_group_each_all_serve() {
    const MODULES: usize = 1000;
    const METRICS: usize = 3;
    let dir = temp_dir();
    let conf_d = dir.path().join("conf.d");
    std::fs::create_dir(&conf_d).unwrap();
    for m in 0..MODULES {
        let selection: String = if m % 2 == 0 {
            (0..METRICS)
                .map(|i| format!("  metric {{ name = \"m{m}_{i}\" }}\n"))
                .collect()
        } else {
            format!("  metric {{ name_match = \"^m{m}_\" }}\n")
        };
        let module = module_block(
            &format!("m{m}"),
            Path::new(guests::BENCH),
            &[
                ("prefix", &format!("m{m}_")),
                ("count", &METRICS.to_string()),
            ],
            "",
        );
        std::fs::write(
            conf_d.join(format!("m{m}.pyconf")),
            format!(
                "{module}collection_group {{\n  collect_every = 5\n  time_threshold = 30\n{selection}}}\n"
            ),
        )
        .unwrap();
    }
    let port = free_port();
    let config = dir.path().join("gmond.conf");
    std::fs::write(&config, config_with(port, "include ('conf.d/*.pyconf')\n")).unwrap();
    let daemon = Daemon::start(&config);
    let started = Instant::now();
    let served = |xml: &str| xml.matches("<METRIC NAME=\"m").count();
    let mut count = 0;
    while started.elapsed() < Duration::from_secs(30) && count < MODULES * METRICS {
        count = served(&daemon.xml(port));
        std::thread::sleep(Duration::from_millis(200));
    }
    assert_eq!(
        count,
        MODULES * METRICS,
        "after {:?}; log:\n{}",
        started.elapsed(),
        daemon
            .log()
            .lines()
            .rev()
            .take(20)
            .collect::<Vec<_>>()
            .join("\n")
    );
    eprintln!(
        "{MODULES} modules with a group each served in {:?}",
        started.elapsed()
    );
}

/// The TN (seconds since its last update) of metric `name` in an XML document.
fn tn_of(xml: &str, name: &str) -> Option<u64> {
    let start = xml.find(&format!("<METRIC NAME=\"{name}\""))?;
    let tag = &xml[start..start + xml[start..].find('>')?];
    let tn = &tag[tag.find(" TN=\"")? + 5..];
    tn[..tn.find('"')?].parse().ok()
}

/// A module's `.wasm` with the example guest in it, in `dir`.
fn example_wasm(dir: &Path, name: &str) -> PathBuf {
    let wasm = dir.join(format!("{name}.wasm"));
    std::fs::copy(guests::EXAMPLE, &wasm).unwrap();
    wasm
}

/// Issue 12: a `.wasm` truncated on disk, then SIGHUP. The new file is loaded before
/// anything is stopped; it fails, so the module keeps serving from its running instance.
#[test]
fn a_truncated_wasm_on_reload_keeps_the_running_module_serving() {
    let dir = temp_dir();
    let wasm = example_wasm(dir.path(), "a");
    let port = free_port();
    let config = dir.path().join("gmond.conf");
    let modules = module_block("a", &wasm, &[("prefix", "a_")], "") + &group_matching("^a_");
    std::fs::write(&config, config_with(port, &modules)).unwrap();
    let daemon = Daemon::start(&config);
    daemon.wait_xml(port, "a_double");

    let bytes = std::fs::read(&wasm).unwrap();
    std::fs::write(&wasm, &bytes[..bytes.len() / 2]).unwrap();
    daemon.signal("HUP");
    daemon.wait_log("module a: its running instance is kept");
    // Still collected every second: its values keep being updated.
    std::thread::sleep(Duration::from_secs(3));
    let xml = daemon.xml(port);
    let tn = tn_of(&xml, "a_double").unwrap_or_else(|| panic!("no a_double:\n{xml}"));
    assert!(
        tn <= 2,
        "a_double last updated {tn} s ago:\n{}",
        daemon.log()
    );
    let log = daemon.log();
    assert!(!log.contains("stopping module a"), "{log}");
}

/// Issue 12: a module replaced (on reload) by one declaring other names: the old names
/// leave the XML instead of staying there for ever (DMAX 0).
#[test]
fn metrics_a_module_no_longer_declares_leave_the_xml() {
    let dir = temp_dir();
    let wasm = example_wasm(dir.path(), "a");
    let port = free_port();
    let config = dir.path().join("gmond.conf");
    let with_prefix = |prefix: &str| {
        module_block("a", &wasm, &[("prefix", prefix)], "") + &group_matching("^(a_|c_)")
    };
    std::fs::write(&config, config_with(port, &with_prefix("a_"))).unwrap();
    let daemon = Daemon::start(&config);
    daemon.wait_xml(port, "a_double");

    std::fs::write(&config, config_with(port, &with_prefix("c_"))).unwrap();
    daemon.signal("HUP");
    let xml = daemon.wait_xml(port, "c_double");
    assert!(!xml.contains("\"a_double\""), "{xml}");
}

/// A component whose compilation takes seconds (it has no metric exports, so it fails
/// type-checking after that): what makes a reload slow.
fn slow_to_compile(path: &Path) {
    let mut body = String::new();
    for i in 0..6000u64 {
        body.push_str(&format!(
            "local.get $x i64.const {} i64.mul i64.const {i} i64.xor local.set $x\n",
            i * 7919 + 1
        ));
    }
    let functions: String = (0..48)
        .map(|f| {
            format!(
                "(func $f{f} (export \"f{f}\") (result i64) (local $x i64) {body} local.get $x)\n"
            )
        })
        .collect();
    let bytes = wat::parse_str(format!("(component (core module {functions}))")).unwrap();
    std::fs::write(path, bytes).unwrap();
}

/// Issue 12: SIGTERM while a reload is compiling a large new module. The reload runs off
/// the signal loop, so the daemon stops at once (the reload is abandoned), cleaning up
/// the running module.
#[test]
fn sigterm_wins_over_a_slow_reload() {
    let dir = temp_dir();
    let wasm = example_wasm(dir.path(), "a");
    let big = dir.path().join("big.wasm");
    slow_to_compile(&big);
    let port = free_port();
    let config = dir.path().join("gmond.conf");
    let module_a = module_block("a", &wasm, &[("prefix", "a_")], "") + &group_matching("^a_");
    std::fs::write(&config, config_with(port, &module_a)).unwrap();
    // A cache of its own: the big module is compiled afresh.
    let cache = dir.path().join("cache");
    let mut daemon = Daemon::start_with(&config, &[("XDG_CACHE_HOME", cache.to_str().unwrap())]);
    daemon.wait_xml(port, "a_double");

    let both = module_a + &module_block("big", &big, &[], "");
    std::fs::write(&config, config_with(port, &both)).unwrap();
    daemon.signal("HUP");
    daemon.wait_log("SIGHUP: reloading");
    std::thread::sleep(Duration::from_millis(300));
    daemon.signal("TERM");
    let (status, took) = daemon.wait_exit(Duration::from_secs(30));
    let log = daemon.log();
    assert!(status.success(), "{status}: {log}");
    assert!(took < Duration::from_secs(3), "took {took:?}: {log}");
    assert!(
        !log.contains("module big"),
        "the reload was abandoned: {log}"
    );
    assert!(!log.contains("panicked"), "{log}");
    println!("SIGTERM during a slow reload to exit: {took:?}");
}

/// Issue 12: SIGTERM while a module is stuck in a handler call (a loop with a 30 s
/// deadline). The other modules' cleanup runs at once; the stuck one is abandoned at the
/// engine's shutdown bound; no panic, and the daemon exits 0 within its budget.
#[test]
fn sigterm_during_a_stuck_call_cleans_up_the_others_and_exits_zero() {
    let dir = temp_dir();
    let port = free_port();
    let config = dir.path().join("gmond.conf");
    let modules = module_block(
        "stuck",
        Path::new(guests::HOSTILE),
        &[("attack", "loop-handler")],
        "deadline_handler_ms = 30000 fuel_handler = 1000000000000000",
    ) + &module_block("a", &example_wasm(dir.path(), "a"), &[("prefix", "a_")], "")
        + &group_matching("^(a_|attack|calls)");
    std::fs::write(&config, config_with(port, &modules)).unwrap();
    let mut daemon = Daemon::start(&config);
    daemon.wait_xml(port, "a_double");
    daemon.wait_log("module stuck started");
    // Its first collection is now looping.
    std::thread::sleep(Duration::from_millis(500));
    daemon.signal("TERM");
    let (status, took) = daemon.wait_exit(Duration::from_secs(30));
    let log = daemon.log();
    assert!(status.success(), "{status}: {log}");
    assert!(took < SHUTDOWN_BUDGET, "took {took:?}: {log}");
    assert!(log.contains("modules cleaned up cleaned_up=2"), "{log}");
    assert!(
        log.contains("module stuck: cleanup did not finish in time; abandoned"),
        "{log}"
    );
    assert!(!log.contains("panicked"), "{log}");
    assert!(!log.contains("abandoning it"), "{log}");
    println!("SIGTERM during a stuck call to exit: {took:?}");
}
