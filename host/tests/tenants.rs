//! The operator's tenants with real guests and the real daemon: a tenant's file that asks
//! for more than its ceilings, or holds what only the operator may write, is refused (by
//! `wasmond check` and at start-up) with its `file:line:col`; the operator's modules, the
//! tenant's other files and the other tenants run on schedule beside it; a tenant's module
//! that declares the operator's names publishes only its own. And a failure keeps its
//! kind (fuel, deadline, memory, crash, module error, invalid output, load) from the
//! runtime to what the engine counts.

#[path = "support/ganglia.rs"]
mod ganglia;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use ganglia::{Daemon, TempDir, fetch_xml, free_port, wait_for};
use wasmond::collect::conversion::sandbox as sandbox_of;
use wasmond::collect::driver::{Failure, FailureKind, ModuleDriver};
use wasmond::collect::wasm::WasmDriver;
use wasmond::config::SandboxConfig;
use wasmond::runtime::{Code, Runtime, RuntimeConfig};
use wasmond_test_guests as guests;

/// The operator's gmond.conf: one module of its own, two tenants.
fn operator_config(xml_port: u16) -> String {
    format!(
        r#"globals {{ daemonize = no setuid = no }}
cluster {{ name = "ours" }}
tcp_accept_channel {{ bind = 127.0.0.1 port = {xml_port} }}
modules {{
  module {{
    name = "a"
    language = "wasm"
    path = "{example}"
    param prefix {{ value = "a_" }}
  }}
}}
collection_group {{
  collect_every = 1
  time_threshold = 1
  metric {{ name_match = "^a_" }}
}}
tenant {{
  name = "acme"
  files = ("tenants/acme/*.pyconf")
  name_prefix = "acme_"
  memory_mb = 32
}}
tenant {{
  name = "bob"
  files = ("tenants/bob/*.pyconf")
}}
"#,
        example = guests::EXAMPLE
    )
}

/// A tenant's module of the example guest, publishing names with `prefix`.
fn tenant_module(name: &str, prefix: &str, sandbox: &str) -> String {
    format!(
        r#"modules {{
  module {{
    name = "{name}"
    language = "wasm"
    path = "example.wasm"
    param prefix {{ value = "{prefix}" }}
    sandbox {{ {sandbox} }}
  }}
}}
"#
    )
}

const ACME_GROUP: &str = r#"collection_group {
  collect_every = 1
  time_threshold = 1
  metric { name_match = "." }
}
"#;

/// Lays out the operator's config and the tenants' files; returns the config's path.
fn lay_out(dir: &TempDir, xml_port: u16) -> std::path::PathBuf {
    for tenant in ["acme", "bob"] {
        let own = dir.path().join("tenants").join(tenant);
        std::fs::create_dir_all(&own).unwrap();
        std::fs::copy(guests::EXAMPLE, own.join("example.wasm")).unwrap();
    }
    let acme_good = tenant_module("acme_ok", "acme_", "memory_mb = 16") + ACME_GROUP;
    dir.write("tenants/acme/good.pyconf", &acme_good);
    let greedy = tenant_module("acme_greedy", "acme_g_", "memory_mb = 4096");
    dir.write("tenants/acme/greedy.pyconf", &greedy);
    let redirect = format!(
        "udp_send_channel {{ host = 127.0.0.1 port = 9 }}\n{}",
        tenant_module("bob_redirect", "bob_r_", "")
    );
    dir.write("tenants/bob/redirect.pyconf", &redirect);
    dir.write("tenants/bob/broken.pyconf", "modules { module { name = \n");
    // Bob declares the operator's names (and one of its own); bob has no prefix.
    dir.write(
        "tenants/bob/squat.pyconf",
        &tenant_module("bob_squat", "a_", ""),
    );
    dir.write("gmond.conf", &operator_config(xml_port))
}

#[test]
fn check_refuses_each_bad_tenant_file_with_its_place_and_the_ceiling() {
    let dir = TempDir::new("tenants-check");
    let config = lay_out(&dir, free_port());
    let output = Command::new(env!("CARGO_BIN_EXE_wasmond"))
        .args(["check", "-c"])
        .arg(&config)
        .output()
        .unwrap();
    let stderr =
        String::from_utf8_lossy(&output.stderr).replace(&format!("{}/", dir.path().display()), "");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(!output.status.success(), "{stdout}\n{stderr}");
    for expected in [
        "tenants/acme/greedy.pyconf:7:27: error: module `acme_greedy`: `memory_mb = 4096` is over the tenant's ceiling of 32 (set at gmond.conf:21:15) for tenant `acme`",
        "tenants/bob/redirect.pyconf:1:1: error: tenant `bob` may not have a `udp_send_channel` section here",
        "tenants/bob/broken.pyconf:2:1: error:",
        "module bob_squat: metric \"a_double\" is already published by module a",
    ] {
        assert!(stderr.contains(expected), "no {expected:?} in:\n{stderr}");
    }
    // What is not refused is explained as the daemon would run it.
    assert!(stdout.contains("acme_double"), "{stdout}");
    assert!(!stdout.contains("acme_g_double"), "{stdout}");
}

#[test]
fn the_daemon_runs_the_operator_and_the_good_tenant_files_beside_the_refused_ones() {
    let dir = TempDir::new("tenants-run");
    let xml_port = free_port();
    let config = lay_out(&dir, xml_port);
    let daemon = start(&dir, &config);
    // The operator's module, the tenant's good module and the host's own metrics.
    let mut xml = String::new();
    for present in [
        "\"a_double\"",
        "\"acme_double\"",
        "wasmond_tenant_acme_calls",
        "wasmond_bob_squat_calls",
    ] {
        xml = wait_xml(&daemon, xml_port, present);
    }
    for absent in ["acme_g_", "bob_r_"] {
        assert!(!xml.contains(absent), "{absent} in:\n{xml}");
    }
    let log = daemon.log_text();
    for expected in [
        "greedy.pyconf:7:27: error: module `acme_greedy`: `memory_mb = 4096` is over",
        "the file is refused, the rest of the configuration runs",
        "module bob_squat: metric \"a_double\" is already published by module a; that metric is not published",
        "module bob_squat: none of its metrics may be published; the module is not loaded",
    ] {
        assert!(log.contains(expected), "no {expected:?} in the log:\n{log}");
    }
}

/// A module failing every call of 4000 metrics, each error a distinct line, beside a
/// healthy one: the log gets the module's budget of lines, not thousands, and the healthy
/// module publishes on schedule.
#[test]
fn a_module_failing_every_call_cannot_flood_the_log() {
    let dir = TempDir::new("tenants-log-budget");
    let xml_port = free_port();
    let config = format!(
        r#"globals {{ daemonize = no setuid = no }}
cluster {{ name = "ours" }}
tcp_accept_channel {{ bind = 127.0.0.1 port = {xml_port} }}
modules {{
  module {{
    name = "flood"
    language = "wasm"
    path = "{hostile}"
    param attack {{ value = "million-descriptors" }}
    param count {{ value = "4000" }}
  }}
  module {{
    name = "a"
    language = "wasm"
    path = "{example}"
    param prefix {{ value = "a_" }}
  }}
}}
collection_group {{
  collect_every = 1
  time_threshold = 1
  metric {{ name_match = "^m[0-9]+$" }}
  metric {{ name_match = "^a_" }}
}}
"#,
        hostile = guests::HOSTILE,
        example = guests::EXAMPLE
    );
    let config = dir.write("gmond.conf", &config);
    let daemon = start(&dir, &config);
    wait_xml(&daemon, xml_port, "\"a_double\"");
    let flood_lines = || {
        daemon
            .log_text()
            .lines()
            .filter(|line| line.contains("unknown metric m"))
            .count()
    };
    wait_for(
        Duration::from_secs(20),
        "the flood module's first errors",
        || (flood_lines() > 0).then_some(()),
        || daemon.log_text(),
    );
    // Four more collections of 4000 failures each.
    std::thread::sleep(Duration::from_secs(4));
    let lines = flood_lines();
    assert!(
        (1..=40).contains(&lines),
        "{lines} lines of the flood module's errors"
    );
    let xml = wait_xml(&daemon, xml_port, "\"a_double\"");
    assert!(xml.contains("NAME=\"a_uint32\""), "{xml}");
}

/// `wasmond run` on `config`, logging to `wasmond.log` beside it.
fn start(dir: &TempDir, config: &Path) -> Daemon {
    Daemon::spawn(
        "wasmond",
        Command::new(env!("CARGO_BIN_EXE_wasmond"))
            .args(["run", "-c"])
            .arg(config),
        dir.path().join("wasmond.log"),
    )
}

/// The daemon's XML on `port` once it contains `text`.
fn wait_xml(daemon: &Daemon, port: u16, text: &str) -> String {
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    wait_for(
        Duration::from_secs(15),
        text,
        || fetch_xml(addr).ok().filter(|xml| xml.contains(text)),
        || daemon.log_text(),
    )
}

/// A hostile guest's handler, run through the engine's WebAssembly driver: the kind of
/// each failure survives from the runtime to what the engine counts and logs.
fn failure_of(attack: &str, sandbox: SandboxConfig) -> Failure {
    let runtime = Runtime::new(RuntimeConfig {
        cache_dir: None,
        ..RuntimeConfig::default()
    })
    .unwrap();
    let params = vec![("attack".to_string(), attack.to_string())];
    let mut driver = WasmDriver::new(
        runtime,
        "hostile",
        Code::Wasm(PathBuf::from(guests::HOSTILE)),
        sandbox_of(&sandbox),
        params,
    );
    let metrics = driver.start().expect("the hostile guest starts");
    let metric = &metrics[0].name;
    driver.handle(metric).expect_err("the attack fails")
}

#[test]
fn failures_keep_their_kind_from_the_runtime_to_the_engine() {
    let small = |fuel: u64, deadline_ms: u64, memory_mb: u32| SandboxConfig {
        fuel_handler: Some(fuel),
        deadline_handler_ms: Some(deadline_ms),
        memory_mb: Some(memory_mb),
        ..SandboxConfig::default()
    };
    for (attack, sandbox, kind) in [
        (
            "loop-handler",
            small(1_000_000, 5_000, 64),
            FailureKind::Fuel,
        ),
        (
            "loop-handler",
            small(1_000_000_000_000, 200, 64),
            FailureKind::Deadline,
        ),
        (
            "memory-bomb",
            small(1_000_000_000, 5_000, 4),
            FailureKind::Memory,
        ),
        (
            "stack-overflow",
            SandboxConfig::default(),
            FailureKind::Crash,
        ),
        (
            "handler-error",
            SandboxConfig::default(),
            FailureKind::ModuleError,
        ),
        (
            "wrong-type",
            SandboxConfig::default(),
            FailureKind::InvalidOutput,
        ),
    ] {
        let failure = failure_of(attack, sandbox);
        assert_eq!(failure.kind, kind, "{attack}: {}", failure.message);
        assert_eq!(failure.is_trap(), kind.is_trap(), "{attack}");
    }
    let mut missing = WasmDriver::new(
        Runtime::new(RuntimeConfig {
            cache_dir: None,
            ..RuntimeConfig::default()
        })
        .unwrap(),
        "gone",
        Code::Wasm(PathBuf::from("/nonexistent/gone.wasm")),
        sandbox_of(&SandboxConfig::default()),
        Vec::new(),
    );
    assert_eq!(missing.start().unwrap_err().kind, FailureKind::Load);
}
