//! End-to-end tests of the modules written in C, Python and JavaScript, and of the
//! Rust example beside them: one host, no language-specific code in it.
//!
//! Each non-Rust module is built by `make -C guest-modules <language>` (a no-op when
//! up to date), deployed as `<name>.wasm` beside a copy of its own `.pyconf`, read
//! through the config loader, loaded by the runtime under the sandbox its `.pyconf`
//! asks for, collected, and its values checked against what this process reads from
//! the same kernel files. `wasmond module run` is run on each module too.
//!
//! A language whose toolchain is missing is skipped with a message; with
//! `WASMOND_REQUIRE_TOOLCHAINS=1` (as in CI) that is a failure instead.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Mutex;
use std::thread;
use std::time::Duration;

use wasmond::collect::conversion::sandbox as sandbox_of;
use wasmond::config::{self, ModuleConfig};
use wasmond::metric::{MetricDescriptor, MetricValue, ValueType};
use wasmond::runtime::{ErrorKind, ModuleInstance, Runtime, RuntimeConfig, Sandbox};

const REQUIRE_TOOLCHAINS: &str = "WASMOND_REQUIRE_TOOLCHAINS";

/// The languages built by guest-modules/Makefile, with the tool each one needs first.
#[derive(Debug, Clone, Copy)]
enum Language {
    C,
    Python,
    JavaScript,
}

impl Language {
    fn make_target(self) -> &'static str {
        match self {
            Language::C => "c",
            Language::Python => "python",
            Language::JavaScript => "js",
        }
    }

    /// A command that succeeds only when the language's toolchain is installed.
    fn probe(self) -> (&'static str, &'static [&'static str]) {
        match self {
            Language::C => ("clang", &["--version"]),
            Language::Python => ("componentize-py", &["--version"]),
            Language::JavaScript => ("npm", &["--version"]),
        }
    }
}

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf()
}

fn wasm_dir() -> PathBuf {
    root().join("target").join("polyglot")
}

fn runs(tool: &str, args: &[&str]) -> bool {
    Command::new(tool)
        .args(args)
        .output()
        .is_ok_and(|out| out.status.success())
}

/// `Some` when every language's toolchain (and make) is there; else says what is
/// missing and skips, or fails when toolchains are required.
fn toolchains(languages: &[Language], what: &str) -> Option<()> {
    let missing: Vec<&str> = languages
        .iter()
        .map(|language| language.probe())
        .chain([("make", &["--version"][..])])
        .filter(|(tool, args)| !runs(tool, args))
        .map(|(tool, _)| tool)
        .collect();
    if missing.is_empty() {
        return Some(());
    }
    if std::env::var_os(REQUIRE_TOOLCHAINS).is_some_and(|v| v == "1") {
        panic!("{what}: {missing:?} not found and {REQUIRE_TOOLCHAINS}=1");
    }
    eprintln!("SKIPPED: {what}: {missing:?} not found (run .ci/install-guest-toolchains.sh)");
    None
}

/// Runs `make -C guest-modules <target>`; the Makefile's steps share outputs (the
/// bindings tool, node_modules), so one make at a time.
fn make(target: &str) {
    static MAKE: Mutex<()> = Mutex::new(());
    let _guard = MAKE.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
    let output = Command::new("make")
        .args(["-C", "guest-modules", target])
        .current_dir(root())
        .output()
        .expect("run make");
    assert!(
        output.status.success(),
        "make -C guest-modules {target} failed:\n{}\n{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}

/// Builds one language's modules; `None` when its toolchain is missing and
/// toolchains are not required.
fn build(language: Language) -> Option<()> {
    toolchains(&[language], &format!("{language:?} guest test"))?;
    make(language.make_target());
    Some(())
}

/// A fresh directory for one test, under the system's temporary directory.
fn scratch_dir(label: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("wasmond-polyglot-{}-{label}", std::process::id()));
    fs::create_dir_all(&dir).unwrap();
    dir
}

/// Puts `<name>.wasm` beside a copy of the module's `.pyconf` in `dir`, as an
/// operator deploys it, and returns the `.pyconf`'s path.
fn copy_module(dir: &Path, folder: &str, name: &str) -> PathBuf {
    let pyconf = dir.join(format!("{name}.pyconf"));
    fs::copy(
        root()
            .join("guest-modules")
            .join(folder)
            .join(format!("{name}.pyconf")),
        &pyconf,
    )
    .unwrap();
    fs::copy(
        wasm_dir().join(format!("{name}.wasm")),
        dir.join(format!("{name}.wasm")),
    )
    .unwrap();
    pyconf
}

/// Deploys one module and returns its config as the loader reads it.
fn deploy(folder: &str, name: &str) -> (PathBuf, ModuleConfig) {
    let dir = scratch_dir(name);
    let pyconf = copy_module(&dir, folder, name);
    let loaded = config::load(&pyconf).unwrap_or_else(|errors| panic!("{name}.pyconf: {errors}"));
    let module = loaded
        .config
        .modules
        .into_iter()
        .find(|m| m.name == name)
        .expect("module in its .pyconf");
    (dir, module)
}

/// Where this test's compiled components are cached: an interpreter guest takes
/// seconds to compile, so only the first load of each pays. `wasmond module run`
/// finds the same cache through `XDG_CACHE_HOME`.
fn cache_home() -> PathBuf {
    wasm_dir().join("test-cache")
}

fn runtime() -> Runtime {
    let cache_dir = Some(cache_home().join("wasmond"));
    Runtime::new(RuntimeConfig {
        cache_dir,
        ..RuntimeConfig::default()
    })
    .unwrap()
}

/// Loads and starts a deployed module under the sandbox its `.pyconf` declares.
fn start(module: &ModuleConfig) -> ModuleInstance {
    let wasm = module.wasm_path().expect("an enabled wasm module");
    let loaded = runtime()
        .load(&module.name, wasm, sandbox_of(&module.sandbox))
        .unwrap_or_else(|e| panic!("{e}"));
    loaded
        .start(module.params.clone())
        .unwrap_or_else(|e| panic!("{e}"))
}

fn descriptor<'a>(instance: &'a ModuleInstance, name: &str) -> &'a MetricDescriptor {
    instance
        .descriptors()
        .iter()
        .find(|d| d.name == name)
        .unwrap_or_else(|| panic!("no metric {name} among {:?}", names(instance)))
}

fn names(instance: &ModuleInstance) -> Vec<&str> {
    instance
        .descriptors()
        .iter()
        .map(|d| d.name.as_str())
        .collect()
}

fn handle(instance: &mut ModuleInstance, metric: &str) -> MetricValue {
    instance.handle(metric).unwrap_or_else(|e| panic!("{e}"))
}

/// Calls every metric in turn `calls` times in all, as a long-running daemon would,
/// and checks the module never failed nor had to be restarted (e.g. for outgrowing
/// the memory cap of its `.pyconf`).
fn sustain(instance: &mut ModuleInstance, calls: usize) {
    let metrics: Vec<String> = names(instance).into_iter().map(str::to_string).collect();
    for (call, metric) in metrics.iter().cycle().take(calls).enumerate() {
        instance
            .handle(metric)
            .unwrap_or_else(|e| panic!("call {call}: {e}"));
    }
    let stats = instance.stats();
    assert_eq!((stats.restarts, stats.errors.total()), (0, 0), "{stats:?}");
    eprintln!(
        "{}: {calls} calls, peak memory {} bytes",
        instance.name(),
        stats.peak_memory_bytes
    );
}

/// The init error a module reports when it is started with nothing granted.
fn init_error_without_grants(module: &ModuleConfig) -> String {
    let wasm = module.wasm_path().unwrap();
    let loaded = runtime()
        .load(&module.name, wasm, Sandbox::default())
        .unwrap();
    match loaded.start(module.params.clone()) {
        Ok(instance) => panic!(
            "{} started with no grant: {:?}",
            module.name,
            names(&instance)
        ),
        Err(error) => match error.kind() {
            ErrorKind::ModuleReported(message) => message.clone(),
            other => panic!(
                "{}: expected an error reported by the module, got {other}",
                module.name
            ),
        },
    }
}

/// Runs `wasmond module run` on a deployed module and returns its stdout.
fn module_run(module: &ModuleConfig) -> String {
    let mut command = Command::new(env!("CARGO_BIN_EXE_wasmond"));
    command
        .args(["module", "run"])
        .arg(module.wasm_path().unwrap())
        .args(["--count", "2"]);
    command.env("XDG_CACHE_HOME", cache_home());
    for dir in &module.sandbox.allow_read {
        command.arg("--allow-read").arg(dir);
    }
    for (key, value) in &module.params {
        command.arg("--param").arg(format!("{key}={value}"));
    }
    let output = command.output().expect("run wasmond module run");
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    assert!(
        output.status.success(),
        "wasmond module run {} failed:\n{stdout}\n{}",
        module.name,
        String::from_utf8_lossy(&output.stderr)
    );
    stdout
}

/// A field of a /proc/net/snmp-style table, read by this process.
fn snmp_field(text: &str, section: &str, field: &str) -> u64 {
    let prefix = format!("{section}:");
    let mut lines = text.lines().filter(|line| line.starts_with(&prefix));
    let header = lines.next().unwrap();
    let values = lines.next().unwrap();
    let index = header
        .split_whitespace()
        .position(|word| word == field)
        .unwrap();
    values
        .split_whitespace()
        .nth(index)
        .unwrap()
        .parse()
        .unwrap()
}

fn read_snmp(section: &str, field: &str) -> u64 {
    snmp_field(
        &fs::read_to_string("/proc/net/snmp").unwrap(),
        section,
        field,
    )
}

#[test]
fn c_module_reports_the_kernels_tcp_and_udp_counters() {
    if build(Language::C).is_none() {
        return;
    }
    let (_dir, module) = deploy("c-netstat", "netstat");
    // A counter read by the module lies between two reads by this process (the module
    // samples the table at init, then at most once per min_poll_ms).
    let before = read_snmp("Tcp", "InSegs") as u32;
    let mut instance = start(&module);
    let MetricValue::UInt32(in_segs) = handle(&mut instance, "tcp_in_segs") else {
        panic!("tcp_in_segs type")
    };
    let after = read_snmp("Tcp", "InSegs") as u32;
    assert!(
        before <= in_segs && in_segs <= after,
        "tcp_in_segs {in_segs} not in [{before}, {after}]"
    );
    assert_eq!(
        descriptor(&instance, "tcp_in_segs").value_type,
        ValueType::UInt32
    );
    assert_eq!(
        descriptor(&instance, "tcp_retrans_percent").value_type,
        ValueType::Float
    );
    assert_eq!(
        descriptor(&instance, "udp_in_datagrams").groups,
        vec!["network".to_string()]
    );

    for name in names(&instance)
        .into_iter()
        .map(str::to_string)
        .collect::<Vec<_>>()
    {
        match handle(&mut instance, &name) {
            MetricValue::UInt32(_) => {}
            MetricValue::Float(percent) => {
                assert!((0.0..=100.0).contains(&percent), "{name} = {percent}")
            }
            other => panic!("{name}: unexpected {other:?}"),
        }
    }
    sustain(&mut instance, 100_000);
    instance.cleanup().unwrap();

    let denied = init_error_without_grants(&module);
    assert!(denied.contains("cannot read /proc/net/snmp"), "{denied}");

    let table = module_run(&module);
    assert!(
        table.contains("tcp_established") && table.contains("udp_out_datagrams"),
        "{table}"
    );
}

/// The block devices this process sees, as diskstats picks them by default.
fn physical_block_devices() -> Vec<String> {
    let mut devices: Vec<String> = fs::read_dir("/sys/block")
        .unwrap()
        .flatten()
        .map(|entry| entry.file_name().to_string_lossy().into_owned())
        .filter(|name| {
            !["loop", "ram", "zram"]
                .iter()
                .any(|prefix| name.starts_with(prefix))
        })
        .collect();
    devices.sort();
    devices
}

#[test]
fn python_gmond_module_runs_unchanged_through_the_helper() {
    if build(Language::Python).is_none() {
        return;
    }
    let devices = physical_block_devices();
    let (_dir, module) = deploy("python-diskstats", "diskstats");
    if devices.is_empty() {
        let error = init_error_without_grants(&module);
        assert!(error.contains("metric_init failed"), "{error}");
        return;
    }
    let mut instance = start(&module);
    let device = &devices[0];
    assert_eq!(
        instance.descriptors().len(),
        7 * devices.len(),
        "{:?}",
        names(&instance)
    );

    // What the helper made of gmond's descriptor dicts.
    let reads = descriptor(&instance, &format!("diskstat_{device}_reads")).clone();
    assert_eq!(reads.value_type, ValueType::Double);
    assert_eq!(reads.units, "reads/sec");
    assert_eq!(reads.format, "%.2f");
    assert_eq!(reads.groups, vec!["disk".to_string()]);
    assert_eq!(reads.extra, vec![("device".to_string(), device.clone())]);
    assert_eq!(
        descriptor(&instance, &format!("diskstat_{device}_in_flight")).value_type,
        ValueType::UInt32
    );

    // Two collections a little over min_poll_seconds apart: the second one has rates.
    for round in 0..2 {
        if round == 1 {
            thread::sleep(Duration::from_millis(1100));
        }
        for name in names(&instance)
            .into_iter()
            .map(str::to_string)
            .collect::<Vec<_>>()
        {
            let value = handle(&mut instance, &name);
            let number = value
                .as_f64()
                .unwrap_or_else(|| panic!("{name}: {value:?}"));
            assert!(number.is_finite() && number >= 0.0, "{name} = {number}");
            if name.ends_with("_busy") {
                assert!(number <= 100.0, "{name} = {number}");
            }
        }
    }

    sustain(&mut instance, 100_000);
    let error = instance.handle("diskstat_nosuchdevice_reads").unwrap_err();
    assert!(matches!(error.kind(), ErrorKind::UnknownMetric), "{error}");
    instance.cleanup().unwrap();

    let denied = init_error_without_grants(&module);
    assert!(
        denied.contains("metric_init failed") && denied.contains("/sys/block"),
        "{denied}"
    );

    let table = module_run(&module);
    assert!(
        table.contains(&format!("diskstat_{device}_read_bytes")),
        "{table}"
    );
}

/// The `some` line of a PSI file, read by this process: (avg10, avg60, avg300).
fn host_pressure(resource: &str) -> Option<[f64; 3]> {
    let text = fs::read_to_string(format!("/proc/pressure/{resource}")).ok()?;
    let some = text.lines().find(|line| line.starts_with("some "))?;
    let field = |key: &str| -> f64 {
        let pair = some
            .split_whitespace()
            .find(|pair| pair.starts_with(key))
            .unwrap();
        pair[key.len()..].parse().unwrap()
    };
    Some([field("avg10="), field("avg60="), field("avg300=")])
}

#[test]
fn javascript_module_reads_pressure_stall_information() {
    if build(Language::JavaScript).is_none() {
        return;
    }
    let (_dir, module) = deploy("js-pressure", "pressure");
    let Some(host_cpu) = host_pressure("cpu") else {
        // A kernel without PSI: the module must say so at init.
        let error = init_error_without_grants(&module);
        assert!(error.contains("/proc/pressure"), "{error}");
        return;
    };
    let mut instance = start(&module);
    let avg300 = descriptor(&instance, "psi_cpu_some_avg300");
    assert_eq!(
        (avg300.value_type, avg300.units.as_str()),
        (ValueType::Float, "%")
    );

    // The 300 s average moves slowly: the module's and this process's reads agree.
    let MetricValue::Float(module_avg300) = handle(&mut instance, "psi_cpu_some_avg300") else {
        panic!("type")
    };
    let host_avg300 = host_pressure("cpu").unwrap()[2].max(host_cpu[2]);
    assert!(
        (f64::from(module_avg300) - host_avg300).abs() < 10.0,
        "module {module_avg300}, host {host_avg300}"
    );

    for round in 0..2 {
        if round == 1 {
            thread::sleep(Duration::from_millis(200));
        }
        for name in names(&instance)
            .into_iter()
            .map(str::to_string)
            .collect::<Vec<_>>()
        {
            let MetricValue::Float(percent) = handle(&mut instance, &name) else {
                panic!("{name} type")
            };
            assert!((0.0..=100.0).contains(&percent), "{name} = {percent}");
        }
    }
    // SpiderMonkey's heap levels off near 90 MB only after some 200 000 calls.
    sustain(&mut instance, 300_000);
    let error = instance.handle("psi_disk_some_avg10").unwrap_err();
    assert!(matches!(error.kind(), ErrorKind::UnknownMetric), "{error}");
    instance.cleanup().unwrap();

    let denied = init_error_without_grants(&module);
    assert!(denied.contains("no granted directory holds it"), "{denied}");

    let table = module_run(&module);
    assert!(
        table.contains("psi_io_some_avg10") && table.contains("psi_memory_full_stall"),
        "{table}"
    );
}

/// A `wasmond run` child process, stopped when dropped (also when a test fails).
struct Daemon(std::process::Child);

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A port free for both TCP and UDP on 127.0.0.1 (the daemon serves its XML over
/// TCP and sends values to itself over UDP on the same port, as gmond does).
fn free_port() -> u16 {
    loop {
        let tcp = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = tcp.local_addr().unwrap().port();
        if std::net::UdpSocket::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
}

/// The daemon's XML once it holds every one of `names`, or `None` at the deadline.
fn xml_with_metrics(port: u16, names: &[String], deadline: Duration) -> Option<String> {
    let start = std::time::Instant::now();
    while start.elapsed() < deadline {
        if let Ok(mut stream) = std::net::TcpStream::connect(("127.0.0.1", port)) {
            let mut xml = String::new();
            if std::io::Read::read_to_string(&mut stream, &mut xml).is_ok()
                && names
                    .iter()
                    .all(|name| xml.contains(&format!("<METRIC NAME=\"{name}\"")))
            {
                return Some(xml);
            }
        }
        thread::sleep(Duration::from_millis(500));
    }
    None
}

#[test]
fn every_language_reaches_the_daemons_xml() {
    let all = [Language::C, Language::Python, Language::JavaScript];
    if toolchains(&all, "polyglot daemon test").is_none() {
        return;
    }
    for language in all {
        make(language.make_target());
    }
    let dir = scratch_dir("daemon");
    let mut expected = vec!["tcp_in_segs".to_string()];
    copy_module(&dir, "c-netstat", "netstat");
    copy_module(&dir, "python-diskstats", "diskstats");
    copy_module(&dir, "js-pressure", "pressure");
    if let Some(device) = physical_block_devices().first() {
        expected.push(format!("diskstat_{device}_reads"));
    }
    if host_pressure("cpu").is_some() {
        expected.push("psi_cpu_some_avg10".into());
    }
    let port = free_port();
    let conf = dir.join("gmond.conf");
    fs::write(
        &conf,
        format!(
            "globals {{\n  daemonize = no\n  setuid = no\n  send_metadata_interval = 0\n}}\n\
             cluster {{\n  name = \"polyglot\"\n}}\n\
             udp_send_channel {{\n  host = 127.0.0.1\n  port = {port}\n}}\n\
             udp_recv_channel {{\n  bind = 127.0.0.1\n  port = {port}\n}}\n\
             tcp_accept_channel {{\n  bind = 127.0.0.1\n  port = {port}\n}}\n\
             include (\"{}/*.pyconf\")\n",
            dir.display()
        ),
    )
    .unwrap();
    let log = fs::File::create(dir.join("wasmond.log")).unwrap();
    let _daemon = Daemon(
        Command::new(env!("CARGO_BIN_EXE_wasmond"))
            .args(["run", "-c"])
            .arg(&conf)
            .env("XDG_CACHE_HOME", cache_home())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("start wasmond run"),
    );
    // The first start compiles the Python and JavaScript components (seconds each).
    let xml = xml_with_metrics(port, &expected, Duration::from_secs(240));
    let log = fs::read_to_string(dir.join("wasmond.log")).unwrap_or_default();
    let xml = xml.unwrap_or_else(|| {
        panic!("the XML on port {port} never held all of {expected:?}; log:\n{log}")
    });
    assert!(xml.contains(r#"TYPE="uint32" UNITS="segments""#), "{xml}");
}

#[test]
fn guest_code_unit_tests_pass_natively() {
    let all = [Language::C, Language::Python, Language::JavaScript];
    if toolchains(&all, "native tests of the guest modules' code").is_none() {
        return;
    }
    make("check");
}

#[test]
fn rust_example_module_runs_beside_the_others() {
    let wasm = Path::new(wasmond_test_guests::EXAMPLE);
    let loaded = runtime().load("example", wasm, Sandbox::default()).unwrap();
    let mut instance = loaded.start(vec![("step".into(), "3".into())]).unwrap();
    assert_eq!(
        handle(&mut instance, "example_uint32"),
        MetricValue::UInt32(3)
    );
    assert_eq!(
        handle(&mut instance, "example_double"),
        MetricValue::Double(6.0 / 8.0)
    );
    instance.cleanup().unwrap();
}
