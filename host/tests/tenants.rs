//! The operator's tenants with real guests and the real daemon: a tenant's file that asks
//! for more than its ceilings, or holds what only the operator may write, is refused (by
//! `wasmond check` and at start-up) with its `file:line:col`; the operator's modules, the
//! tenant's other files and the other tenants run on schedule beside it; a tenant's module
//! that declares the operator's names publishes only its own. And a failure keeps its
//! kind (fuel, deadline, memory, crash, module error, invalid output, load) from the
//! runtime to what the engine counts. A compile bomb within the compile caps is stopped
//! at its module's compile bound (time or memory) and refused, while a healthy module
//! beside it publishes on schedule; the bundled Python interpreter compiles within the
//! default bounds.

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
use wasmond::runtime::{Code, Compiler, Runtime, RuntimeConfig, Sandbox};
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

/// A component of one function of about `body_bytes` over `locals` i64 locals, each
/// step adding two of them into a third: within the compile caps (1 MiB a function), but
/// Cranelift's register allocator takes long over many long-lived values (20 000 locals:
/// minutes) and needs much memory for a big body (2 000 locals, 1 MB: about 85 MB).
fn compile_bomb(locals: u32, body_bytes: usize) -> Vec<u8> {
    fn leb(mut n: u64, out: &mut Vec<u8>) {
        loop {
            let byte = (n & 0x7f) as u8;
            n >>= 7;
            if n == 0 {
                out.push(byte);
                return;
            }
            out.push(byte | 0x80);
        }
    }
    fn section(id: u8, body: &[u8], out: &mut Vec<u8>) {
        out.push(id);
        leb(body.len() as u64, out);
        out.extend_from_slice(body);
    }
    const LOCAL_GET: u8 = 0x20;
    const LOCAL_SET: u8 = 0x21;
    const I64_CONST: u8 = 0x42;
    const I64_ADD: u8 = 0x7c;
    const I64_ROTL: u8 = 0x89;
    let mut code = Vec::new();
    // Every local starts from the parameter, so that nothing folds to a constant.
    for local in 1..=locals {
        code.extend([
            LOCAL_GET,
            0,
            I64_CONST,
            (local % 64) as u8,
            I64_ROTL,
            LOCAL_SET,
        ]);
        leb(local.into(), &mut code);
    }
    let mut state = 1u64;
    let mut pick = || {
        state = state
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        1 + (state >> 33) % u64::from(locals)
    };
    // The final sum takes up to 4 bytes a local.
    while code.len() + 4 * locals as usize + 1 < body_bytes {
        let (a, b, c) = (pick(), pick(), pick());
        code.push(LOCAL_GET);
        leb(a, &mut code);
        code.push(LOCAL_GET);
        leb(b, &mut code);
        code.extend([I64_ADD, LOCAL_SET]);
        leb(c, &mut code);
    }
    // Every local stays live to the end.
    code.extend([I64_CONST, 0]);
    for local in 1..=locals {
        code.push(LOCAL_GET);
        leb(local.into(), &mut code);
        code.push(I64_ADD);
    }
    code.push(0x0b);
    let mut function = Vec::new();
    leb(1, &mut function);
    leb(locals.into(), &mut function);
    function.push(0x7e);
    function.extend_from_slice(&code);
    let mut module = b"\0asm\x01\0\0\0".to_vec();
    section(1, &[1, 0x60, 1, 0x7e, 1, 0x7e], &mut module); // (func (param i64) (result i64))
    section(3, &[1, 0], &mut module);
    let mut code_section = vec![1];
    leb(function.len() as u64, &mut code_section);
    code_section.extend_from_slice(&function);
    section(10, &code_section, &mut module);
    let mut component = b"\0asm\x0d\0\x01\0".to_vec();
    section(1, &module, &mut component);
    component
}

/// The operator's config with two compile bombs, each under a small compile bound, and
/// the healthy example module.
fn bombs_config(dir: &TempDir, xml_port: u16) -> PathBuf {
    std::fs::write(
        dir.path().join("slow.wasm"),
        compile_bomb(20_000, 1_000_000),
    )
    .unwrap();
    std::fs::write(dir.path().join("fat.wasm"), compile_bomb(2_000, 1_000_000)).unwrap();
    let config = format!(
        r#"globals {{ daemonize = no setuid = no }}
cluster {{ name = "ours" }}
tcp_accept_channel {{ bind = 127.0.0.1 port = {xml_port} }}
modules {{
  module {{
    name = "slow"
    language = "wasm"
    sandbox {{ deadline_compile_ms = 2000 }}
  }}
  module {{
    name = "fat"
    language = "wasm"
    sandbox {{ compile_memory_mb = 64 }}
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
  metric {{ name_match = "^a_" }}
}}
"#,
        example = guests::EXAMPLE
    );
    dir.write("gmond.conf", &config)
}

/// What each bomb's refusal says: the module, its file, the bound and where it is set.
fn bomb_refusals(dir: &TempDir) -> [String; 2] {
    let at = |file: &str| dir.path().join(file).display().to_string();
    [
        format!(
            "module slow: load: {}: compiling it took longer than the compile deadline of 2s (`deadline_compile_ms`): the module is refused",
            at("slow.wasm")
        ),
        format!(
            "module fat: load: {}: compiling it needed more than the compile memory bound of 64 MiB (`compile_memory_mb`): the module is refused",
            at("fat.wasm")
        ),
    ]
}

/// The compile children the process `pid` has now.
fn compile_children(pid: u32) -> usize {
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return 0;
    };
    tasks
        .flatten()
        .filter_map(|task| std::fs::read_to_string(task.path().join("children")).ok())
        .flat_map(|children| {
            children
                .split_whitespace()
                .map(str::to_owned)
                .collect::<Vec<_>>()
        })
        .filter(|child| {
            std::fs::read(format!("/proc/{child}/cmdline"))
                .is_ok_and(|cmdline| String::from_utf8_lossy(&cmdline).contains("compile-child"))
        })
        .count()
}

#[test]
fn compile_bombs_are_stopped_at_their_bounds_while_a_healthy_module_runs() {
    let dir = TempDir::new("tenants-compile-bombs");
    let xml_port = free_port();
    let config = bombs_config(&dir, xml_port);
    // An empty compile cache: every module compiles, in a child of the daemon, under the
    // daemon's Landlock ruleset.
    let daemon = Daemon::spawn(
        "wasmond",
        Command::new(env!("CARGO_BIN_EXE_wasmond"))
            .args(["run", "-c"])
            .arg(&config)
            .env("XDG_CACHE_HOME", dir.path().join("cache")),
        dir.path().join("wasmond.log"),
    );
    // The healthy module publishes while the slow bomb still compiles (2 s of it).
    let first = wait_xml(&daemon, xml_port, "\"a_double\"");
    assert!(first.contains("NAME=\"a_uint32\""), "{first}");
    for refusal in bomb_refusals(&dir) {
        wait_for(
            Duration::from_secs(30),
            &refusal,
            || daemon.log_text().contains(&refusal).then_some(()),
            || daemon.log_text(),
        );
    }
    daemon.assert_running();
    // The slow bomb's compile was killed, not left running; retries of the same content
    // under the same bounds are refused without compiling again.
    std::thread::sleep(Duration::from_secs(3));
    assert_eq!(compile_children(daemon.pid()), 0, "{}", daemon.log_text());
    wait_xml(&daemon, xml_port, "\"a_double\"");
}

#[test]
fn check_refuses_a_compile_bomb_naming_the_module_file_and_bound() {
    let dir = TempDir::new("tenants-check-bombs");
    let config = bombs_config(&dir, free_port());
    let output = Command::new(env!("CARGO_BIN_EXE_wasmond"))
        .args(["check", "-c"])
        .arg(&config)
        .env("XDG_CACHE_HOME", dir.path().join("cache"))
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(!output.status.success(), "{stdout}\n{stderr}");
    for refusal in bomb_refusals(&dir) {
        assert!(stderr.contains(&refusal), "no {refusal:?} in:\n{stderr}");
    }
    assert!(stdout.contains("a_double"), "{stdout}");
}

#[test]
fn the_bundled_python_interpreter_compiles_within_the_default_compile_bounds() {
    let runtime = Runtime::new(RuntimeConfig {
        cache_dir: None,
        compiler: Compiler::Child {
            exe: PathBuf::from(env!("CARGO_BIN_EXE_wasmond")),
        },
        ..RuntimeConfig::default()
    })
    .unwrap();
    runtime
        .load(
            "python",
            &wasmond::bundled::path(wasmond::runtime::PYTHON_INTERPRETER),
            Sandbox::default(),
        )
        .unwrap();
}

/// Started as root with `setuid = yes`, `user = ganglia`, the daemon compiles in children
/// that run as `ganglia` under its Landlock ruleset: a component no cache has seen yet
/// compiles and publishes, and a compile bomb is refused at its memory bound (not for
/// want of the right to start the compiler).
#[test]
fn as_ganglia_under_landlock_modules_compile_in_children() {
    // SAFETY: getuid has no preconditions.
    if unsafe { libc::getuid() } != 0 {
        eprintln!("as_ganglia_under_landlock_modules_compile_in_children: skipped, not root");
        return;
    }
    if let Err(error) = wasmond::lockdown::lookup_user("ganglia") {
        let message = format!("skipped, no ganglia user (install ganglia-monitor): {error:#}");
        assert!(
            std::env::var("WASMOND_REQUIRE_INTEROP").as_deref() != Ok("1"),
            "{message}"
        );
        eprintln!("as_ganglia_under_landlock_modules_compile_in_children: {message}");
        return;
    }
    let dir = TempDir::new("tenants-compile-privdrop");
    let xml_port = free_port();
    let config = bombs_config(&dir, xml_port);
    // The example guest with a custom section of its own: a content never compiled before.
    let mut fresh = std::fs::read(guests::EXAMPLE).unwrap();
    let nonce = format!("{:?}", std::time::SystemTime::now());
    let mut payload = vec![5];
    payload.extend_from_slice(b"nonce");
    payload.extend_from_slice(nonce.as_bytes());
    fresh.push(0);
    fresh.push(payload.len() as u8);
    fresh.extend_from_slice(&payload);
    let fresh_path = dir.path().join("fresh.wasm");
    std::fs::write(&fresh_path, fresh).unwrap();
    let text = std::fs::read_to_string(&config)
        .unwrap()
        .replace("setuid = no", "setuid = yes user = ganglia")
        .replace(guests::EXAMPLE, &fresh_path.display().to_string());
    std::fs::write(&config, text).unwrap();
    let daemon = start(&dir, &config);
    wait_xml(&daemon, xml_port, "\"a_double\"");
    let [_, fat] = bomb_refusals(&dir);
    let log = wait_for(
        Duration::from_secs(30),
        &fat,
        || {
            let log = daemon.log_text();
            log.contains(&fat).then_some(log)
        },
        || daemon.log_text(),
    );
    assert!(log.contains("running as user ganglia"), "{log}");
    assert!(!log.contains("cannot start the compiler process"), "{log}");
}
