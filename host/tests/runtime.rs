//! The runtime against real guests: the example module, the hostile module (each
//! attack must hit exactly the limit expected, in bounded time, after which the same
//! runtime still serves the example normally), load errors, the compile cache, and
//! `wasmond module run` through the binary.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use tempfile::TempDir;
use wasmond::metric::{MetricValue, ValueType};
use wasmond::runtime::limits::{LOG_BURST_LINES, MAX_DESCRIPTOR_BYTES, MAX_DESCRIPTORS};
use wasmond::runtime::{
    Callback, ErrorKind, Grants, InvalidOutput, LimitHit, Limits, LoadError, ModuleError,
    ModuleInstance, Runtime, RuntimeConfig, Sandbox,
};
use wasmond_test_guests as guests;

/// A deadline short enough for tests, long enough to be measured on a busy machine.
const TEST_DEADLINE: Duration = Duration::from_millis(500);
/// Fuel no test loop burns through before `TEST_DEADLINE`.
const UNLIMITED_FUEL: u64 = u64::MAX;

struct Host {
    runtime: Runtime,
    _cache: TempDir,
}

fn host() -> Host {
    let cache = TempDir::new().unwrap();
    let config = RuntimeConfig {
        cache_dir: Some(cache.path().to_path_buf()),
        ..RuntimeConfig::default()
    };
    Host {
        runtime: Runtime::new(config).unwrap(),
        _cache: cache,
    }
}

fn params(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

fn start_hostile(
    host: &Host,
    sandbox: Sandbox,
    pairs: &[(&str, &str)],
) -> Result<ModuleInstance, ModuleError> {
    let module = host
        .runtime
        .load("hostile", Path::new(guests::HOSTILE), sandbox)
        .unwrap();
    module.start(params(pairs))
}

fn deadline_only(limits: Limits) -> Sandbox {
    let limits = Limits {
        fuel_init: UNLIMITED_FUEL,
        fuel_handler: UNLIMITED_FUEL,
        fuel_cleanup: UNLIMITED_FUEL,
        deadline_init: TEST_DEADLINE,
        deadline_handler: TEST_DEADLINE,
        deadline_cleanup: TEST_DEADLINE,
        ..limits
    };
    Sandbox {
        limits,
        ..Sandbox::default()
    }
}

/// The healthy module still works on the same runtime: every type, right values.
fn assert_serves_example(host: &Host) {
    let module = host
        .runtime
        .load("example", Path::new(guests::EXAMPLE), Sandbox::default())
        .unwrap();
    let mut instance = module.start(params(&[("step", "2")])).unwrap();
    let descriptors = instance.descriptors().to_vec();
    assert_eq!(descriptors.len(), ValueType::ALL.len());
    for descriptor in &descriptors {
        let value = instance.handle(&descriptor.name).unwrap();
        assert_eq!(
            value.value_type(),
            descriptor.value_type,
            "{}",
            descriptor.name
        );
    }
    assert_eq!(
        instance.handle("example_double").unwrap(),
        MetricValue::Double(20.0 / 8.0)
    );
    assert_eq!(instance.stats().calls, 10);
    assert_eq!(instance.stats().errors.total(), 0);
    instance.cleanup().unwrap();
}

fn assert_within_twice(elapsed: Duration, deadline: Duration) {
    assert!(
        elapsed >= deadline,
        "stopped after {elapsed:?}, before its deadline {deadline:?}"
    );
    assert!(
        elapsed < deadline * 2,
        "stopped after {elapsed:?}, over twice its deadline {deadline:?}"
    );
}

#[test]
fn the_example_module_serves_every_value_type() {
    let host = host();
    let module = host
        .runtime
        .load("example", Path::new(guests::EXAMPLE), Sandbox::default())
        .unwrap();
    assert_eq!(module.name(), "example");
    let mut instance = module
        .start(params(&[("prefix", "ex_"), ("group", "demo")]))
        .unwrap();
    let types: Vec<ValueType> = instance
        .descriptors()
        .iter()
        .map(|d| d.value_type)
        .collect();
    assert_eq!(types, ValueType::ALL);
    assert!(
        instance
            .descriptors()
            .iter()
            .all(|d| d.groups == ["demo"] && d.name.starts_with("ex_"))
    );
    assert_eq!(
        instance.handle("ex_string").unwrap(),
        MetricValue::String("hello from wasm".into())
    );
    assert_eq!(instance.handle("ex_int8").unwrap(), MetricValue::Int8(2));
    let stats = instance.stats().clone();
    assert_eq!((stats.inits, stats.calls, stats.restarts), (1, 2, 0));
    assert!(stats.fuel_consumed > 0 && stats.peak_memory_bytes > 0);
    assert_eq!(stats.last_call.unwrap().callback, Callback::Handler);
    instance.cleanup().unwrap();
}

#[test]
fn an_undeclared_metric_is_refused_without_calling_the_module() {
    let host = host();
    let mut instance = start_hostile(&host, Sandbox::default(), &[]).unwrap();
    let error = instance.handle("nope").unwrap_err();
    assert!(matches!(error.kind, ErrorKind::UnknownMetric), "{error}");
    assert_eq!(instance.stats().calls, 0);
}

#[test]
fn a_loop_in_init_hits_the_init_deadline() {
    let host = host();
    let sandbox = deadline_only(Limits::default());
    let module = host
        .runtime
        .load("hostile", Path::new(guests::HOSTILE), sandbox)
        .unwrap();
    let started = Instant::now();
    let error = module
        .start(params(&[("attack", "loop-init")]))
        .err()
        .unwrap();
    assert_within_twice(started.elapsed(), TEST_DEADLINE);
    assert!(matches!(error.kind, ErrorKind::Deadline { .. }), "{error}");
    assert_eq!(error.callback, Callback::Init);
    assert_serves_example(&host);
}

#[test]
fn a_loop_in_the_handler_hits_the_handler_deadline_and_the_module_restarts() {
    let host = host();
    let mut instance = start_hostile(
        &host,
        deadline_only(Limits::default()),
        &[("attack", "loop-handler")],
    )
    .unwrap();
    assert_eq!(instance.handle("calls").unwrap(), MetricValue::UInt32(1));
    let started = Instant::now();
    let error = instance.handle("attack").unwrap_err();
    assert_within_twice(started.elapsed(), TEST_DEADLINE);
    assert!(matches!(error.kind, ErrorKind::Deadline { .. }), "{error}");
    assert_eq!(
        (error.callback, error.metric.as_deref()),
        (Callback::Handler, Some("attack"))
    );
    assert_eq!(
        error.to_string(),
        "module hostile: handler of metric attack: deadline of 500ms exceeded"
    );
    // The poisoned store is gone: a fresh instance counts its calls from one again.
    assert_eq!(instance.handle("calls").unwrap(), MetricValue::UInt32(1));
    let stats = instance.stats();
    assert_eq!(
        (stats.inits, stats.restarts, stats.errors.deadline),
        (2, 1, 1)
    );
    assert_serves_example(&host);
}

/// `handle-each` on `metrics`: what came back for each metric answered, in order.
fn handle_each(
    instance: &mut ModuleInstance,
    metrics: &[&str],
) -> Vec<Result<MetricValue, ModuleError>> {
    let mut answers = Vec::new();
    instance.handle_each(metrics, &mut |answer| answers.push(answer));
    answers
}

#[test]
fn handle_each_gives_every_metric_the_budget_of_one_handler_call() {
    let host = host();
    let sandbox = deadline_only(Limits::default());
    let busy = (TEST_DEADLINE * 3 / 5).as_millis().to_string();
    let mut instance = start_hostile(&host, sandbox, &[("attack", "busy"), ("ms", &busy)]).unwrap();
    let started = Instant::now();
    let answers = handle_each(&mut instance, &["attack", "attack", "calls"]);
    // Together the calls take longer than one deadline; each fits in its own.
    assert!(started.elapsed() > TEST_DEADLINE, "{:?}", started.elapsed());
    let values: Vec<MetricValue> = answers.into_iter().map(Result::unwrap).collect();
    let busy = busy.parse().unwrap();
    assert_eq!(
        values,
        [
            MetricValue::Double(busy),
            MetricValue::Double(busy),
            MetricValue::UInt32(3)
        ]
    );
    let stats = instance.stats();
    assert_eq!((stats.calls, stats.restarts), (3, 0));
    assert!(stats.fuel_consumed > 0);
}

/// The host keeps the positions of the names last asked: asking others, or the same in
/// another order, must not reuse them.
#[test]
fn each_collection_is_answered_for_the_names_it_asks() {
    let host = host();
    let sandbox = deadline_only(Limits::default());
    let mut instance = start_hostile(&host, sandbox, &[("attack", "busy"), ("ms", "1")]).unwrap();
    let kinds = |instance: &mut ModuleInstance, names: &[&str]| -> Vec<&'static str> {
        handle_each(instance, names)
            .into_iter()
            .map(|answer| match answer.unwrap() {
                MetricValue::Double(_) => "attack",
                MetricValue::UInt32(_) => "calls",
                other => panic!("{other:?}"),
            })
            .collect()
    };
    for names in [
        &["calls", "attack"][..],
        &["calls", "attack"],
        &["attack", "calls"],
        &["calls"],
        &["attack", "attack", "calls"],
    ] {
        assert_eq!(kinds(&mut instance, names), names);
    }
}

#[test]
fn a_loop_inside_handle_each_is_stopped_as_in_a_handler_and_the_rest_is_not_called() {
    let host = host();
    let sandbox = deadline_only(Limits::default());
    let mut instance = start_hostile(&host, sandbox, &[("attack", "loop-handler")]).unwrap();
    let started = Instant::now();
    let mut answers = handle_each(&mut instance, &["calls", "attack", "calls"]).into_iter();
    assert_within_twice(started.elapsed(), TEST_DEADLINE);
    assert_eq!(answers.next().unwrap().unwrap(), MetricValue::UInt32(1));
    let error = answers.next().unwrap().unwrap_err();
    assert!(matches!(error.kind, ErrorKind::Deadline { .. }), "{error}");
    assert_eq!(error.metric.as_deref(), Some("attack"));
    assert!(answers.next().is_none(), "nothing is asked after a trap");
    // The next collection starts a fresh instance, one handler call per metric.
    let answers = handle_each(&mut instance, &["calls", "calls"]);
    assert_eq!(answers[1].as_ref().unwrap(), &MetricValue::UInt32(2));
    assert_eq!(instance.stats().restarts, 1);
    assert_serves_example(&host);
}

#[test]
fn answering_another_metric_than_the_one_due_breaks_the_contract() {
    let host = host();
    let mut instance = start_hostile(
        &host,
        Sandbox::default(),
        &[("attack", "answer-out-of-turn")],
    )
    .unwrap();
    let answers = handle_each(&mut instance, &["calls", "attack", "calls"]);
    assert_eq!(answers.len(), 2, "{answers:?}");
    assert_eq!(answers[0].as_ref().unwrap(), &MetricValue::UInt32(1));
    let error = answers[1].as_ref().unwrap_err();
    assert!(matches!(error.kind, ErrorKind::Trap { .. }), "{error}");
    assert!(
        error
            .to_string()
            .contains("metric 7 answered where metric 0 was due"),
        "{error}"
    );
    // Outside handle-each (a fresh instance after the trap), the answer has no call to go to.
    let error = instance.handle("attack").unwrap_err();
    assert!(
        error
            .to_string()
            .contains("collect.answer called outside handle-each"),
        "{error}"
    );
}

#[test]
fn a_sleep_in_the_host_hits_the_handler_deadline() {
    let host = host();
    let mut instance = start_hostile(
        &host,
        deadline_only(Limits::default()),
        &[("attack", "sleep")],
    )
    .unwrap();
    let started = Instant::now();
    let error = instance.handle("attack").unwrap_err();
    assert_within_twice(started.elapsed(), TEST_DEADLINE);
    assert!(matches!(error.kind, ErrorKind::Deadline { .. }), "{error}");
    assert_serves_example(&host);
}

/// How the scheduler calls modules: on a blocking worker of its tokio runtime.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sleep_on_a_tokio_blocking_worker_hits_the_deadline() {
    let host = host();
    let mut instance = start_hostile(
        &host,
        deadline_only(Limits::default()),
        &[("attack", "sleep")],
    )
    .unwrap();
    let started = Instant::now();
    let result = tokio::task::spawn_blocking(move || instance.handle("attack"))
        .await
        .unwrap();
    assert_within_twice(started.elapsed(), TEST_DEADLINE);
    assert!(matches!(
        result.unwrap_err().kind,
        ErrorKind::Deadline { .. }
    ));
}

#[test]
fn a_loop_in_cleanup_hits_the_cleanup_deadline() {
    let host = host();
    let instance = start_hostile(
        &host,
        deadline_only(Limits::default()),
        &[("attack", "loop-cleanup")],
    )
    .unwrap();
    let started = Instant::now();
    let error = instance.cleanup().unwrap_err();
    assert_within_twice(started.elapsed(), TEST_DEADLINE);
    assert!(matches!(error.kind, ErrorKind::Deadline { .. }), "{error}");
    assert_eq!(error.callback, Callback::Cleanup);
    assert_serves_example(&host);
}

#[test]
fn a_loop_runs_out_of_fuel_before_a_distant_deadline() {
    let host = host();
    let limits = Limits {
        fuel_handler: 20_000_000,
        deadline_handler: Duration::from_secs(30),
        ..Limits::default()
    };
    let sandbox = Sandbox {
        limits,
        ..Sandbox::default()
    };
    let mut instance = start_hostile(&host, sandbox, &[("attack", "loop-handler")]).unwrap();
    let started = Instant::now();
    let error = instance.handle("attack").unwrap_err();
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "took {:?}",
        started.elapsed()
    );
    assert!(
        matches!(error.kind, ErrorKind::OutOfFuel { budget: 20_000_000 }),
        "{error}"
    );
    assert_eq!(instance.stats().last_call.unwrap().fuel, 20_000_000);
    assert_serves_example(&host);
}

#[test]
fn a_memory_bomb_hits_the_memory_cap() {
    let host = host();
    let cap = 32 << 20;
    let sandbox = Sandbox {
        limits: Limits {
            memory_bytes: cap,
            ..Limits::default()
        },
        ..Sandbox::default()
    };
    let mut instance = start_hostile(&host, sandbox, &[("attack", "memory-bomb")]).unwrap();
    let error = instance.handle("attack").unwrap_err();
    assert!(
        matches!(error.kind, ErrorKind::MemoryLimit(LimitHit::Memory { limit }) if limit == cap),
        "{error}"
    );
    let peak = instance.stats().peak_memory_bytes;
    assert!(peak <= cap && peak > cap / 2, "peak {peak}");
    assert_serves_example(&host);
}

#[test]
fn the_instance_cap_refuses_a_component_that_needs_more() {
    let host = host();
    let limits = Limits {
        max_instances: 1,
        ..Limits::default()
    };
    let error = start_hostile(
        &host,
        Sandbox {
            limits,
            ..Sandbox::default()
        },
        &[],
    )
    .err()
    .unwrap();
    assert_eq!(error.callback, Callback::Init);
    assert!(
        matches!(&error.kind, ErrorKind::Trap { code: None, message } if message.contains("resource limit exceeded")),
        "{error}"
    );
    assert_serves_example(&host);
}

#[test]
fn runaway_recursion_overflows_the_stack() {
    let host = host();
    let mut instance =
        start_hostile(&host, Sandbox::default(), &[("attack", "stack-overflow")]).unwrap();
    let error = instance.handle("attack").unwrap_err();
    assert!(
        matches!(
            error.kind,
            ErrorKind::Trap {
                code: Some(wasmtime::Trap::StackOverflow),
                ..
            }
        ),
        "{error}"
    );
    assert_serves_example(&host);
}

#[test]
fn a_panic_is_a_trap_and_the_next_call_gets_a_fresh_instance() {
    let host = host();
    let mut instance = start_hostile(&host, Sandbox::default(), &[("attack", "panic")]).unwrap();
    let error = instance.handle("attack").unwrap_err();
    assert!(
        matches!(
            &error.kind,
            ErrorKind::Trap {
                code: Some(wasmtime::Trap::UnreachableCodeReached),
                message,
            } if message.contains("; stderr: thread '<unnamed>'")
                && message.contains(" panicked at ")
                && message.ends_with(": the hostile module panics on purpose")
        ),
        "{error}"
    );
    assert_eq!(instance.handle("calls").unwrap(), MetricValue::UInt32(1));
    assert_eq!(instance.stats().restarts, 1);
    assert_serves_example(&host);
}

#[test]
fn a_huge_string_value_is_invalid_output() {
    let host = host();
    let mut instance =
        start_hostile(&host, Sandbox::default(), &[("attack", "huge-string")]).unwrap();
    let error = instance.handle("attack").unwrap_err();
    assert!(
        matches!(
            error.kind,
            ErrorKind::InvalidOutput(InvalidOutput::StringTooLong { field: "string value", len, .. })
                if len == 16 << 20
        ),
        "{error}"
    );
    assert_serves_example(&host);
}

#[test]
fn a_million_descriptors_hit_the_memory_cap() {
    let host = host();
    let error = start_hostile(
        &host,
        Sandbox::default(),
        &[("attack", "million-descriptors")],
    )
    .err()
    .unwrap();
    assert!(
        matches!(error.kind, ErrorKind::MemoryLimit(LimitHit::Memory { .. })),
        "{error}"
    );
    assert_eq!(error.callback, Callback::Init);
    assert_serves_example(&host);
}

#[test]
fn more_descriptors_than_the_cap_are_invalid_output() {
    let host = host();
    let count = (MAX_DESCRIPTORS + 1).to_string();
    let error = start_hostile(
        &host,
        Sandbox::default(),
        &[("attack", "million-descriptors"), ("count", &count)],
    )
    .err()
    .unwrap();
    assert!(
        matches!(
            error.kind,
            ErrorKind::InvalidOutput(InvalidOutput::TooMany {
                what: "descriptors",
                ..
            })
        ),
        "{error}"
    );
    assert_serves_example(&host);
}

#[test]
fn descriptors_over_the_modules_byte_budget_are_invalid_output() {
    let host = host();
    // 4096 descriptors of about 1 KB: each within every per-field cap, 4 MB in all.
    let error = start_hostile(&host, Sandbox::default(), &[("attack", "fat-descriptors")])
        .err()
        .unwrap();
    assert!(
        matches!(
            error.kind,
            ErrorKind::InvalidOutput(InvalidOutput::DescriptorsTooLarge {
                max: MAX_DESCRIPTOR_BYTES,
                ..
            })
        ),
        "{error}"
    );
    let message = error.to_string();
    assert!(
        message.starts_with("module hostile: init: invalid output: descriptors of ")
            && message.ends_with(&format!(
                "bytes in all are over the module's cap of {MAX_DESCRIPTOR_BYTES}"
            )),
        "{message}"
    );
    // A thousand of them fit.
    start_hostile(
        &host,
        Sandbox::default(),
        &[("attack", "fat-descriptors"), ("count", "1000")],
    )
    .unwrap();
}

#[test]
fn bad_and_duplicate_names_are_invalid_output() {
    let host = host();
    let bad = start_hostile(&host, Sandbox::default(), &[("attack", "bad-name")])
        .err()
        .unwrap();
    assert!(
        matches!(
            bad.kind,
            ErrorKind::InvalidOutput(InvalidOutput::InvalidName { .. })
        ),
        "{bad}"
    );
    let twin = start_hostile(&host, Sandbox::default(), &[("attack", "duplicate-name")])
        .err()
        .unwrap();
    assert!(
        matches!(&twin.kind, ErrorKind::InvalidOutput(InvalidOutput::DuplicateName(name)) if name == "twin"),
        "{twin}"
    );
    assert_serves_example(&host);
}

#[test]
fn a_value_of_the_wrong_type_is_invalid_output_and_no_trap() {
    let host = host();
    let mut instance =
        start_hostile(&host, Sandbox::default(), &[("attack", "wrong-type")]).unwrap();
    let error = instance.handle("attack").unwrap_err();
    assert!(
        matches!(
            error.kind,
            ErrorKind::InvalidOutput(InvalidOutput::WrongType {
                expected: ValueType::Double,
                got: ValueType::String
            })
        ),
        "{error}"
    );
    assert!(!error.is_trap());
    assert_eq!(
        instance.handle("calls").unwrap(),
        MetricValue::UInt32(2),
        "same instance"
    );
    assert_serves_example(&host);
}

#[test]
fn errors_returned_through_wit_are_module_reported() {
    let host = host();
    let init = start_hostile(&host, Sandbox::default(), &[("attack", "init-error")])
        .err()
        .unwrap();
    assert!(
        matches!(&init.kind, ErrorKind::ModuleReported(m) if m == "init refused on purpose"),
        "{init}"
    );
    let mut instance =
        start_hostile(&host, Sandbox::default(), &[("attack", "handler-error")]).unwrap();
    let error = instance.handle("attack").unwrap_err();
    assert!(
        matches!(&error.kind, ErrorKind::ModuleReported(m) if m == "handler refused on purpose")
    );
    assert_eq!(instance.stats().errors.module_reported, 1);
    assert_eq!(instance.stats().restarts, 0);
    assert_serves_example(&host);
}

#[test]
fn files_are_out_of_reach_without_a_grant_and_read_only_with_one() {
    let host = host();
    let granted = TempDir::new().unwrap();
    let secret = granted.path().join("secret.txt");
    std::fs::write(&secret, "granted content").unwrap();
    let secret = secret.to_str().unwrap();

    let mut denied = start_hostile(
        &host,
        Sandbox::default(),
        &[("attack", "open-file"), ("path", secret)],
    )
    .unwrap();
    let error = denied.handle("attack").unwrap_err();
    assert!(
        matches!(&error.kind, ErrorKind::ModuleReported(m) if m.starts_with("cannot read")),
        "{error}"
    );

    let grants = Grants {
        read_only_dirs: vec![granted.path().to_path_buf()],
        ..Grants::default()
    };
    let sandbox = Sandbox {
        grants,
        ..Sandbox::default()
    };
    let mut reader = start_hostile(
        &host,
        sandbox.clone(),
        &[("attack", "open-file"), ("path", secret)],
    )
    .unwrap();
    assert_eq!(
        reader.handle("attack").unwrap(),
        MetricValue::String("granted content".into())
    );

    let target = granted.path().join("written.txt");
    let target = target.to_str().unwrap();
    let mut writer = start_hostile(
        &host,
        sandbox.clone(),
        &[("attack", "write-file"), ("path", target)],
    )
    .unwrap();
    let error = writer.handle("attack").unwrap_err();
    assert!(
        matches!(&error.kind, ErrorKind::ModuleReported(m) if m.starts_with("cannot write")),
        "{error}"
    );
    assert!(!Path::new(target).exists());

    // `..` does not climb out of the granted directory.
    let outside = TempDir::new().unwrap();
    std::fs::write(outside.path().join("other.txt"), "not granted").unwrap();
    let name = outside.path().file_name().unwrap().to_str().unwrap();
    let escape = granted.path().join("..").join(name).join("other.txt");
    let escape = escape.to_str().unwrap();
    let mut climber =
        start_hostile(&host, sandbox, &[("attack", "open-file"), ("path", escape)]).unwrap();
    let error = climber.handle("attack").unwrap_err();
    assert!(
        matches!(&error.kind, ErrorKind::ModuleReported(m) if m.starts_with("cannot read")),
        "{error}"
    );
    assert_serves_example(&host);
}

#[test]
fn sockets_are_denied() {
    let host = host();
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.set_nonblocking(true).unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    let mut instance = start_hostile(
        &host,
        Sandbox::default(),
        &[("attack", "open-socket"), ("addr", &addr)],
    )
    .unwrap();
    let error = instance.handle("attack").unwrap_err();
    assert!(
        matches!(&error.kind, ErrorKind::ModuleReported(m) if m.starts_with("cannot connect")),
        "{error}"
    );
    let accepted = listener.accept();
    assert!(
        accepted.is_err(),
        "the module reached the listener: {accepted:?}"
    );
    assert_serves_example(&host);
}

#[test]
fn the_environment_is_empty_unless_granted() {
    let host = host();
    let pairs = [("attack", "read-env"), ("name", "WASMOND_TEST_VAR")];
    let mut bare = start_hostile(&host, Sandbox::default(), &pairs).unwrap();
    assert!(matches!(
        bare.handle("attack").unwrap_err().kind,
        ErrorKind::ModuleReported(_)
    ));
    let grants = Grants {
        env: vec![("WASMOND_TEST_VAR".into(), "granted".into())],
        ..Grants::default()
    };
    let mut granted = start_hostile(
        &host,
        Sandbox {
            grants,
            ..Sandbox::default()
        },
        &pairs,
    )
    .unwrap();
    assert_eq!(
        granted.handle("attack").unwrap(),
        MetricValue::String("granted".into())
    );
}

#[test]
fn a_log_flood_is_rate_limited() {
    let host = host();
    let mut instance = start_hostile(
        &host,
        Sandbox::default(),
        &[("attack", "log-flood"), ("count", "20000")],
    )
    .unwrap();
    assert_eq!(
        instance.handle("attack").unwrap(),
        MetricValue::Double(20000.0)
    );
    let stats = instance.stats();
    assert_eq!(stats.log_lines + stats.log_lines_dropped, 20000);
    // The burst, plus what refilled while the flood ran.
    let allowed = u64::from(LOG_BURST_LINES) + 20 * stats.wall_time.as_secs() + 20;
    assert!(
        stats.log_lines >= u64::from(LOG_BURST_LINES) && stats.log_lines <= allowed,
        "{stats:?}"
    );
    assert_serves_example(&host);
}

#[test]
fn the_log_rate_limit_survives_restarts() {
    let host = host();
    let pairs = [("attack", "log-then-panic"), ("count", "300")];
    let mut instance = start_hostile(&host, Sandbox::default(), &pairs).unwrap();
    for _ in 0..3 {
        assert!(instance.handle("attack").unwrap_err().is_trap());
    }
    let stats = instance.stats();
    assert_eq!(stats.restarts, 2);
    assert_eq!(stats.log_lines + stats.log_lines_dropped, 900);
    // One burst for the module, plus what refilled meanwhile; not one per restart.
    let allowed = u64::from(LOG_BURST_LINES) + 20 * stats.wall_time.as_secs() + 20;
    assert!(stats.log_lines <= allowed, "{stats:?}");
    assert_serves_example(&host);
}

#[test]
fn a_huge_log_line_is_cut() {
    let host = host();
    let mut instance =
        start_hostile(&host, Sandbox::default(), &[("attack", "huge-log-line")]).unwrap();
    assert_eq!(
        instance.handle("attack").unwrap(),
        MetricValue::Double(f64::from(1 << 20))
    );
    assert_eq!(
        (
            instance.stats().log_lines,
            instance.stats().log_lines_truncated
        ),
        (1, 1)
    );
}

fn fixture(name: &str, dir: &TempDir) -> PathBuf {
    let source = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name);
    let binary = wat::parse_file(&source).unwrap();
    let path = dir.path().join(Path::new(name).with_extension("wasm"));
    std::fs::write(&path, binary).unwrap();
    path
}

fn load_error(host: &Host, path: &Path) -> LoadError {
    match host.runtime.load("bad", path, Sandbox::default()) {
        Err(ModuleError {
            kind: ErrorKind::Load(error),
            callback: Callback::Load,
            ..
        }) => error,
        Err(other) => panic!("expected a load error, got {other}"),
        Ok(_) => panic!("{} loaded", path.display()),
    }
}

#[test]
fn loads_refuse_missing_files_non_components_and_other_worlds() {
    let host = host();
    let dir = TempDir::new().unwrap();
    let missing = dir.path().join("missing.wasm");
    assert!(matches!(
        load_error(&host, &missing),
        LoadError::Read { .. }
    ));
    let text = dir.path().join("text.wasm");
    std::fs::write(&text, "not wasm at all").unwrap();
    assert!(matches!(
        load_error(&host, &text),
        LoadError::NotWasm { .. }
    ));
    let core = fixture("core-module.wat", &dir);
    assert!(matches!(
        load_error(&host, &core),
        LoadError::CoreModule { .. }
    ));
    let other = fixture("other-world.wat", &dir);
    let error = load_error(&host, &other);
    assert!(matches!(error, LoadError::WrongWorld { .. }), "{error}");
    assert_serves_example(&host);
}

#[test]
fn compile_bombs_are_refused_before_compiling_naming_the_file_and_the_cap() {
    use wasmond::runtime::inspect::{MAX_FUNCTION_BYTES, MAX_FUNCTIONS};
    let host = host();
    let dir = TempDir::new().unwrap();
    // Each would take Cranelift a long while and a lot of memory; neither is compiled.
    let many = format!(
        "(component (core module {}))",
        "(func)".repeat(MAX_FUNCTIONS as usize + 1)
    );
    let huge = format!(
        "(component (core module (func {})))",
        "i32.const 0 drop ".repeat(MAX_FUNCTION_BYTES as usize / 3 + 1)
    );
    for (file, wat, what) in [
        ("many.wasm", many, "functions"),
        ("huge.wasm", huge, "bytes in one function"),
    ] {
        let path = dir.path().join(file);
        std::fs::write(&path, wat::parse_str(&wat).unwrap()).unwrap();
        let error = load_error(&host, &path);
        assert!(
            matches!(error, LoadError::OverBudget { what: w, .. } if w == what),
            "{error}"
        );
        let message = error.to_string();
        assert!(
            message.starts_with(&path.display().to_string())
                && message.ends_with("refused before compiling"),
            "{message}"
        );
    }
    assert_serves_example(&host);
}

#[test]
fn a_missing_grant_directory_fails_the_load() {
    let host = host();
    let grants = Grants {
        read_only_dirs: vec!["/nonexistent/wasmond".into()],
        ..Grants::default()
    };
    let error = host.runtime.load(
        "hostile",
        Path::new(guests::HOSTILE),
        Sandbox {
            grants,
            ..Sandbox::default()
        },
    );
    assert!(matches!(
        error,
        Err(ModuleError {
            kind: ErrorKind::Load(LoadError::Grant { .. }),
            ..
        })
    ));
}

fn cached_artifacts(cache: &Path) -> Vec<PathBuf> {
    let mut files = Vec::new();
    for engine_dir in std::fs::read_dir(cache).unwrap().flatten() {
        files.extend(
            std::fs::read_dir(engine_dir.path())
                .unwrap()
                .flatten()
                .map(|entry| entry.path()),
        );
    }
    files
}

#[test]
fn compiled_components_are_cached_on_disk_and_damage_is_survived() {
    let cache = TempDir::new().unwrap();
    let config = || RuntimeConfig {
        cache_dir: Some(cache.path().to_path_buf()),
        ..RuntimeConfig::default()
    };
    let example = Path::new(guests::EXAMPLE);

    let first = Runtime::new(config())
        .unwrap()
        .load("example", example, Sandbox::default())
        .unwrap();
    let artifacts = cached_artifacts(cache.path());
    assert_eq!(artifacts.len(), 1, "{artifacts:?}");
    let artifact = &artifacts[0];
    assert!(
        artifact
            .to_str()
            .unwrap()
            .ends_with(&format!("{}.cwasm", hex::encode(first.content_hash())))
    );

    // A store writes a new file beside the old one and renames it over it, so the
    // same inode after a second load means it came from the cache, not a compile.
    let inode = || std::os::unix::fs::MetadataExt::ino(&std::fs::metadata(artifact).unwrap());
    let written = inode();
    let second = Runtime::new(config())
        .unwrap()
        .load("example", example, Sandbox::default())
        .unwrap();
    assert_eq!(second.content_hash(), first.content_hash());
    assert_eq!(
        inode(),
        written,
        "the second load compiled instead of using the cache"
    );
    second.start(Vec::new()).unwrap().cleanup().unwrap();

    let mut damaged = std::fs::read(artifact).unwrap();
    let middle = damaged.len() / 2;
    damaged[middle] ^= 0xff;
    std::fs::write(artifact, &damaged).unwrap();
    let third = Runtime::new(config())
        .unwrap()
        .load("example", example, Sandbox::default())
        .unwrap();
    third.start(Vec::new()).unwrap().cleanup().unwrap();
    assert_ne!(
        std::fs::read(artifact).unwrap(),
        damaged,
        "the damaged artifact was rewritten"
    );
}

#[test]
fn modules_of_the_same_wasm_content_share_one_compiled_artifact() {
    // No disk cache: a second compile could only be avoided in memory.
    let runtime = Runtime::new(RuntimeConfig {
        cache_dir: None,
        ..RuntimeConfig::default()
    })
    .unwrap();
    let dir = TempDir::new().unwrap();
    let copy = dir.path().join("renamed.wasm");
    std::fs::copy(guests::EXAMPLE, &copy).unwrap();
    let a = runtime
        .load("a", Path::new(guests::EXAMPLE), Sandbox::default())
        .unwrap();
    let b = runtime.load("b", &copy, Sandbox::default()).unwrap();
    assert_eq!(runtime.artifacts_in_use(), 1, "same content, one artifact");
    let hostile = runtime
        .load("hostile", Path::new(guests::HOSTILE), Sandbox::default())
        .unwrap();
    assert_eq!(runtime.artifacts_in_use(), 2);
    // Each module still gets its own instance and state.
    let mut first = a.start(params(&[("step", "2")])).unwrap();
    let mut second = b.start(params(&[("step", "3")])).unwrap();
    assert_eq!(
        first.handle("example_double").unwrap(),
        MetricValue::Double(2.0 / 8.0)
    );
    assert_eq!(
        second.handle("example_double").unwrap(),
        MetricValue::Double(3.0 / 8.0)
    );
    first.cleanup().unwrap();
    second.cleanup().unwrap();
    drop((a, b, hostile));
    assert_eq!(runtime.artifacts_in_use(), 0, "unused code is freed");
}

/// Runs `wasmond module run ARGS` with a private cache; returns status, stdout, stderr.
fn module_run(args: &[&str]) -> (bool, String, String) {
    let cache = TempDir::new().unwrap();
    let output = Command::new(env!("CARGO_BIN_EXE_wasmond"))
        .args(["module", "run"])
        .args(args)
        .env("XDG_CACHE_HOME", cache.path())
        .env_remove("RUST_LOG")
        .output()
        .unwrap();
    let text = |bytes: Vec<u8>| String::from_utf8(bytes).unwrap();
    (
        output.status.success(),
        text(output.stdout),
        text(output.stderr),
    )
}

#[test]
fn module_run_prints_a_table_for_the_example() {
    let (ok, stdout, stderr) = module_run(&[guests::EXAMPLE, "--param", "step=3", "--count", "2"]);
    assert!(ok, "stderr: {stderr}");
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(lines.len(), 1 + 2 * ValueType::ALL.len(), "{stdout}");
    let header: Vec<&str> = lines[0].split_whitespace().collect();
    assert_eq!(
        header,
        [
            "METRIC", "TYPE", "VALUE", "UNITS", "SLOPE", "GROUPS", "CALL", "TIME", "FUEL"
        ]
    );
    let int8: Vec<&str> = lines[2].split_whitespace().collect();
    assert_eq!(
        &int8[..7],
        ["example_int8", "int8", "6", "count", "both", "example", "1"]
    );
}

#[test]
fn module_run_errors_are_one_clear_line() {
    let dir = TempDir::new().unwrap();
    let missing = dir.path().join("missing.wasm");
    let core = fixture("core-module.wat", &dir);
    let other = fixture("other-world.wat", &dir);
    let cases = [
        (missing.to_str().unwrap(), "cannot read"),
        (
            core.to_str().unwrap(),
            "is a core WebAssembly module, not a component",
        ),
        (
            other.to_str().unwrap(),
            "is not a wasmond:metric@0.1.0 metric-module component",
        ),
    ];
    for (path, expected) in cases {
        let (ok, stdout, stderr) = module_run(&[path]);
        assert!(!ok, "{path} succeeded");
        assert_eq!(stdout, "");
        assert_eq!(stderr.lines().count(), 1, "{stderr}");
        assert!(
            stderr.starts_with("wasmond: error: module ") && stderr.contains(expected),
            "{stderr}"
        );
    }
}

#[test]
fn module_run_reports_handler_errors_and_fails() {
    let (ok, stdout, stderr) = module_run(&[guests::HOSTILE, "--param", "attack=handler-error"]);
    assert!(!ok);
    assert!(stdout.contains("(error)"), "{stdout}");
    assert!(
        stderr.contains(
            "handler of metric attack: module reported an error: handler refused on purpose"
        ),
        "{stderr}"
    );
}

#[test]
fn file_system_usage_needs_its_grant_and_answers_only_for_local_mount_points() {
    let host = host();
    let statvfs_of = |path: &str, granted: bool| {
        let grants = Grants {
            filesystem_usage: granted,
            ..Grants::default()
        };
        let sandbox = Sandbox {
            grants,
            ..Sandbox::default()
        };
        let mut module =
            start_hostile(&host, sandbox, &[("attack", "statvfs"), ("path", path)]).unwrap();
        module.handle("attack")
    };

    let denied = statvfs_of("/", false).unwrap_err();
    assert!(
        matches!(&denied.kind, ErrorKind::ModuleReported(m) if m.contains("not granted")),
        "{denied}"
    );
    let root = rustix::fs::statvfs("/").unwrap();
    assert_eq!(
        statvfs_of("/", true).unwrap(),
        MetricValue::Double((root.f_blocks * root.f_frsize) as f64)
    );
    let not_a_mount = statvfs_of("/etc", true).unwrap_err();
    assert!(
        matches!(&not_a_mount.kind, ErrorKind::ModuleReported(m) if m == "/etc is not a mount point"),
        "{not_a_mount}"
    );
    assert_serves_example(&host);
}
