//! gmond's own python modules (`gmond/python_modules/` of Ganglia 3.7.2, fetched from
//! Debian's source package by `tools/fetch-ganglia-python-modules.sh`), run unchanged
//! by the bundled Python interpreter component, and the sandbox truths it offers.
//!
//! Each module's `.py` is copied as shipped into a python modules directory and its
//! stock `.pyconf` into `conf.d/` with one addition, the grant (`sandbox { allow_read
//! = ("/proc", "/sys") }`); a gmond.conf names the directory as gmond's does (the
//! `python_module` declaration's `params`). The modules that need only `/proc` and
//! `/sys` (and statvfs) are checked three ways: their descriptors equal what the same
//! module declares natively (python3, after the same Python 2 translation), their
//! values match the native module's sampled in lockstep, and `wasmond run` on the
//! stock `.pyconf` files serves every metric their collection groups name, with the
//! descriptor the module declares. procstat is left out: it runs `pgrep`/`ps` in a
//! subprocess.
//!
//! Missing pieces (the interpreter component, the fetched modules, python3) skip the
//! tests with a message, or fail them under `WASMOND_REQUIRE_TOOLCHAINS=1` (CI).

#[path = "support/ganglia.rs"]
mod ganglia;
#[path = "support/gxml.rs"]
mod gxml;

use std::fs;
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;
use wasmond::collect::conversion::{module_code, sandbox as sandbox_of};
use wasmond::config::{Config, MetricSelector, ModuleConfig};
use wasmond::daemon::ConfigSource;
use wasmond::metric::{MetricDescriptor, MetricValue, Slope, ValueType};
use wasmond::runtime::{Code, ModuleInstance, PYTHON_INTERPRETER, Runtime, RuntimeConfig};

use ganglia::{Daemon, TempDir, free_port};

/// The stock modules that need only /proc, /sys and statvfs: (folder, module).
const MODULES: &[(&str, &str)] = &[
    ("cpu", "cpu_stats"),
    ("memory", "mem_stats"),
    ("vm_stats", "vm_stats"),
    ("network", "netstats"),
    ("network", "multi_interface"),
    ("disk", "diskstat"),
    ("disk", "diskfree"),
    ("ssl", "entropy"),
];

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf()
}

fn interpreter() -> PathBuf {
    wasmond::bundled::path(PYTHON_INTERPRETER)
}

fn ganglia_modules() -> PathBuf {
    root().join("target/ganglia-3.7.2/gmond/python_modules")
}

fn python_deps() -> PathBuf {
    root().join("target/python-deps")
}

/// Whether everything these tests need is here; else skip (or fail in CI).
fn prerequisites(test: &str) -> bool {
    let mut missing = Vec::new();
    if wasmond::bundled::bytes(&interpreter()).is_none() {
        missing.push(format!(
            "{} (built by cargo when componentize-py is installed)",
            interpreter().display()
        ));
    }
    if !ganglia_modules().join("cpu/cpu_stats.py").is_file() {
        missing.push("Ganglia's python modules (tools/fetch-ganglia-python-modules.sh)".into());
    }
    if !python_deps().join("fissix").is_dir() {
        missing.push("target/python-deps (.ci/install-guest-toolchains.sh)".into());
    }
    if missing.is_empty() {
        return true;
    }
    let message = format!("{test}: skipped, missing {}", missing.join(", "));
    if std::env::var("WASMOND_REQUIRE_TOOLCHAINS").is_ok_and(|v| v == "1") {
        panic!("{message} (WASMOND_REQUIRE_TOOLCHAINS=1)");
    }
    eprintln!("{message}");
    false
}

/// The compiled interpreter is cached here across tests and runs (a compile takes
/// seconds); `wasmond run` finds it through XDG_CACHE_HOME.
fn cache_home() -> PathBuf {
    root().join("target/gmond-python-test-cache")
}

fn runtime() -> Runtime {
    Runtime::new(RuntimeConfig {
        cache_dir: Some(cache_home().join("wasmond")),
        ..RuntimeConfig::default()
    })
    .unwrap()
}

/// A gmond-style install in `dir`: `python_modules/NAME.py` as shipped,
/// `conf.d/NAME.pyconf` as shipped plus the grant, and `gmond.conf` naming both.
fn install(dir: &Path, modules: &[(&str, &str)], port: u16) -> PathBuf {
    let py_dir = dir.join("python_modules");
    let conf_d = dir.join("conf.d");
    fs::create_dir_all(&py_dir).unwrap();
    fs::create_dir_all(&conf_d).unwrap();
    for (folder, name) in modules {
        let source = ganglia_modules().join(folder).join(format!("{name}.py"));
        fs::copy(&source, py_dir.join(format!("{name}.py"))).unwrap();
        let pyconf =
            fs::read_to_string(ganglia_modules().join(format!("conf.d/{name}.pyconf"))).unwrap();
        fs::write(
            conf_d.join(format!("{name}.pyconf")),
            with_grant(&pyconf, name),
        )
        .unwrap();
    }
    let conf = dir.join("gmond.conf");
    fs::write(
        &conf,
        format!(
            "globals {{\n  daemonize = no\n  setuid = no\n  send_metadata_interval = 0\n}}\n\
             cluster {{\n  name = \"python\"\n}}\n\
             udp_send_channel {{\n  host = 127.0.0.1\n  port = {port}\n}}\n\
             udp_recv_channel {{\n  bind = 127.0.0.1\n  port = {port}\n}}\n\
             tcp_accept_channel {{\n  bind = 127.0.0.1\n  port = {port}\n}}\n\
             modules {{\n  module {{\n    name = \"python_module\"\n    path = \"modpython.so\"\n    params = \"{py}\"\n  }}\n}}\n\
             include (\"{conf_d}/*.pyconf\")\n",
            py = py_dir.display(),
            conf_d = conf_d.display(),
        ),
    )
    .unwrap();
    conf
}

/// The stock `.pyconf` with the one thing gmond would not know: what the module may
/// read (and, for diskfree, statvfs), inserted after its `language` line.
fn with_grant(pyconf: &str, name: &str) -> String {
    let usage = if name == "diskfree" {
        " allow_filesystem_usage = yes"
    } else {
        ""
    };
    let grant = format!("\n    sandbox {{ allow_read = (\"/proc\", \"/sys\"){usage} }}");
    let mut out = String::new();
    let mut done = false;
    for line in pyconf.lines() {
        out.push_str(line);
        if !done && line.trim_start().starts_with("language") {
            out.push_str(&grant);
            done = true;
        }
        out.push('\n');
    }
    assert!(done, "{name}.pyconf has a language line");
    out
}

/// The config as the daemon reads it (module directories: the installed one, then the
/// modules bundled in the binary, where the interpreter is).
fn load_config(conf: &Path) -> Vec<ModuleConfig> {
    load_whole_config(conf).modules
}

fn load_whole_config(conf: &Path) -> Config {
    ConfigSource::File(conf.to_path_buf())
        .load()
        .unwrap_or_else(|errors| panic!("{}: {errors}", conf.display()))
        .config
}

/// The same module, run natively by host/tests/support/gmond_native.py.
struct Native {
    child: Child,
    stdin: ChildStdin,
    stdout: BufReader<ChildStdout>,
    descriptors: Vec<Value>,
}

impl Native {
    fn start(source: &Path, params: &[(String, String)]) -> Native {
        let params: serde_json::Map<String, Value> = params
            .iter()
            .map(|(k, v)| (k.clone(), Value::String(v.clone())))
            .collect();
        let mut child = Command::new("python3")
            .arg(root().join("host/tests/support/gmond_native.py"))
            .arg(source)
            .arg(Value::Object(params).to_string())
            .env("PYTHONPATH", python_deps())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .expect("run python3");
        let stdin = child.stdin.take().unwrap();
        let mut stdout = BufReader::new(child.stdout.take().unwrap());
        let mut line = String::new();
        stdout.read_line(&mut line).unwrap();
        let descriptors = serde_json::from_str::<Vec<Value>>(&line)
            .unwrap_or_else(|e| panic!("native {}: {e}: {line:?}", source.display()));
        Native {
            child,
            stdin,
            stdout,
            descriptors,
        }
    }

    fn call(&mut self, metric: &str) -> Result<Value, String> {
        writeln!(self.stdin, "{metric}").unwrap();
        let mut line = String::new();
        self.stdout.read_line(&mut line).unwrap();
        let reply: Value = serde_json::from_str(&line).unwrap();
        match reply.get("value") {
            Some(value) => Ok(value.clone()),
            None => Err(reply["error"].as_str().unwrap_or_default().to_string()),
        }
    }
}

impl Drop for Native {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn start(runtime: &Runtime, module: &ModuleConfig) -> ModuleInstance {
    let code = module_code(module).expect("an enabled module");
    assert!(
        matches!(code, Code::Python { .. }),
        "{} runs in the interpreter",
        module.name
    );
    runtime
        .load_code(&module.name, &code, sandbox_of(&module.sandbox))
        .unwrap_or_else(|e| panic!("{e}"))
        .start(module.params.clone())
        .unwrap_or_else(|e| panic!("{e}"))
}

/// The native descriptor's fields as the gmond helper converts them.
fn assert_same_descriptor(module: &str, wasm: &MetricDescriptor, native: &Value) {
    let text = |key: &str, default: &str| {
        native.get(key).map_or(default.to_string(), |v| match v {
            Value::String(s) => s.clone(),
            other => other.to_string(),
        })
    };
    let value_type = match text("value_type", "uint").as_str() {
        "uint" => ValueType::UInt32,
        "int" => ValueType::Int32,
        "float" => ValueType::Float,
        "double" => ValueType::Double,
        "string" => ValueType::String,
        other => panic!("{module}: value_type {other}"),
    };
    let slope = match text("slope", "both").as_str() {
        "both" => Slope::Both,
        "positive" => Slope::Positive,
        "zero" => Slope::Zero,
        other => panic!("{module}: slope {other}"),
    };
    let at = format!("{module}/{}", wasm.name);
    assert_eq!(wasm.value_type, value_type, "{at}");
    assert_eq!(wasm.slope, slope, "{at}");
    assert_eq!(wasm.units, text("units", ""), "{at}");
    assert_eq!(wasm.description, text("description", ""), "{at}");
    assert_eq!(wasm.time_max.to_string(), text("time_max", "60"), "{at}");
    if let Some(format) = native.get("format") {
        assert_eq!(Some(wasm.format.as_str()), format.as_str(), "{at}");
    }
    let groups: Vec<String> = text("groups", "")
        .split(',')
        .map(|g| g.trim().to_string())
        .filter(|g| !g.is_empty())
        .collect();
    assert_eq!(wasm.groups, groups, "{at}");
}

fn number(value: &MetricValue) -> Option<f64> {
    match value {
        MetricValue::String(_) => None,
        MetricValue::Int8(v) => Some(f64::from(*v)),
        MetricValue::UInt8(v) => Some(f64::from(*v)),
        MetricValue::Int16(v) => Some(f64::from(*v)),
        MetricValue::UInt16(v) => Some(f64::from(*v)),
        MetricValue::Int32(v) => Some(f64::from(*v)),
        MetricValue::UInt32(v) => Some(f64::from(*v)),
        MetricValue::Float(v) => Some(f64::from(*v)),
        MetricValue::Double(v) => Some(*v),
    }
}

/// Whether two samples of one metric, taken a few milliseconds apart by the two
/// runs, agree. Both runs compute the same formula over the same kernel counters at
/// (nearly) the same instants, so they differ only by what the kernel counted in
/// between: for a level or a counter, a small fraction of its size; for a rate over
/// a window of a second or more, a few events' worth of that window. Hence 2 % of
/// the larger magnitude plus an absolute slack of 2 (units, events/s or percentage
/// points) — far below what a wrong page size (16x), a wrong CPU count or a missed
/// file would change.
fn close(a: f64, b: f64) -> bool {
    (a - b).abs() <= 0.02 * a.abs().max(b.abs()) + 2.0
}

#[test]
fn stock_gmond_python_modules_match_the_same_modules_run_natively() {
    if !prerequisites("stock modules vs native") {
        return;
    }
    let dir = TempDir::new("gmond-python-native");
    let conf = install(dir.path(), MODULES, free_port());
    let runtime = runtime();
    let mut report = Vec::new();
    for module in load_config(&conf) {
        let Some(Code::Python { source, .. }) = module_code(&module) else {
            continue;
        };
        let mut instance = start(&runtime, &module);
        let mut native = Native::start(&source, &module.params);
        let names: Vec<String> = instance
            .descriptors()
            .iter()
            .map(|d| d.name.clone())
            .collect();
        assert_eq!(
            names.len(),
            native.descriptors.len(),
            "{}: metric count",
            module.name
        );
        for (wasm, native) in instance.descriptors().iter().zip(&native.descriptors) {
            assert_eq!(
                wasm.name,
                native["name"].as_str().unwrap(),
                "{}",
                module.name
            );
            assert_same_descriptor(&module.name, wasm, native);
        }
        // Two rounds in lockstep: the first primes the modules' rates.
        let (mut compared, mut failed) = (0, 0);
        for round in 0..2 {
            if round == 1 {
                std::thread::sleep(Duration::from_millis(1500));
            }
            for name in &names {
                let ours = instance.handle(name);
                let theirs = native.call(name);
                match (&ours, &theirs) {
                    (Ok(ours), Ok(theirs)) => {
                        compared += 1;
                        // gmond's C side parses a number a call_back returns as a string.
                        let theirs_number = theirs
                            .as_f64()
                            .or_else(|| theirs.as_str()?.trim().parse().ok());
                        match (number(ours), theirs_number) {
                            (Some(a), Some(b)) if !close(a, b) => {
                                resample_until_close(&mut instance, &mut native, name, (a, b))
                                    .unwrap_or_else(|e| panic!("{}/{name}: {e}", module.name))
                            }
                            (Some(_), Some(_)) => {}
                            (None, _) => assert_eq!(
                                ours,
                                &MetricValue::String(theirs.as_str().unwrap_or_default().into()),
                                "{}/{name}",
                                module.name
                            ),
                            (Some(a), None) => {
                                panic!("{}/{name}: {a} here, {theirs} natively", module.name)
                            }
                        }
                    }
                    // A Python 2 behaviour no translation restores fails both ways alike.
                    (Err(ours), Err(theirs)) => {
                        failed += 1;
                        let ours = ours.to_string();
                        assert!(
                            ours.contains(name.as_str()) && ours.contains(theirs.as_str()),
                            "{}/{name}: {ours} here, {theirs} natively",
                            module.name
                        );
                    }
                    _ => panic!("{}/{name}: {ours:?} here, {theirs:?} natively", module.name),
                }
            }
        }
        report.push(format!(
            "{}: {} metrics, {compared} values matched, {failed} failed alike",
            module.name,
            names.len()
        ));
    }
    eprintln!("{}", report.join("\n"));
    assert_eq!(report.len(), MODULES.len(), "{report:#?}");
}

/// Samples one metric again on both sides, a second and a half apart, until the two
/// agree. A busy machine can move a fast level (dirty pages, running processes) by more
/// than the slack between the two samples of one round; a wrong formula, page size or
/// CPU count disagrees on every attempt, and that is what fails. Five attempts span
/// 7.5 s, more than one refresh of a module's cache (netstats keeps its readings 5 s, so
/// the two runs' rate windows can straddle a refresh differently once).
fn resample_until_close(
    instance: &mut ModuleInstance,
    native: &mut Native,
    name: &str,
    first: (f64, f64),
) -> Result<(), String> {
    let mut attempts = vec![first];
    for _ in 0..5 {
        std::thread::sleep(Duration::from_millis(1500));
        let ours = instance.handle(name).map_err(|e| e.to_string())?;
        let theirs = native.call(name)?;
        let theirs = theirs
            .as_f64()
            .or_else(|| theirs.as_str()?.trim().parse().ok());
        let (Some(a), Some(b)) = (number(&ours), theirs) else {
            return Err(format!("{ours:?} here, {theirs:?} natively on a resample"));
        };
        if close(a, b) {
            return Ok(());
        }
        attempts.push((a, b));
    }
    Err(format!(
        "(here, natively) disagree on every sample: {attempts:?}"
    ))
}

/// One metric a stock `.pyconf`'s collection groups name, as the module declares it
/// natively, with the title the group gives it.
struct Expected {
    module: String,
    descriptor: Value,
    title: String,
}

/// Every metric the config's collection groups select among the modules' native
/// declarations (gmond collects only those: `vm_stats` declares 88 metrics, its
/// `.pyconf` names 4), leaving out any whose call_back fails natively as well: those
/// have no value to serve.
fn expected_metrics(config: &Config) -> Vec<Expected> {
    let mut declared = Vec::new();
    for module in &config.modules {
        let Some(Code::Python { source, .. }) = module_code(module) else {
            continue;
        };
        let mut native = Native::start(&source, &module.params);
        for descriptor in native.descriptors.clone() {
            let name = descriptor["name"].as_str().unwrap().to_string();
            if native.call(&name).is_ok() {
                declared.push((module.name.clone(), name, descriptor));
            }
        }
    }
    let mut expected: Vec<Expected> = Vec::new();
    for entry in config.collection_groups.iter().flat_map(|g| &g.metrics) {
        for (module, name, descriptor) in &declared {
            let selected = match &entry.selector {
                MetricSelector::Name(wanted) => wanted == name,
                MetricSelector::NameMatch(pattern) => {
                    regex::Regex::new(pattern).unwrap().is_match(name)
                }
            };
            // The first entry selecting a metric gives its title, as in gmond.
            if selected
                && !expected
                    .iter()
                    .any(|e| e.descriptor["name"] == name.as_str())
            {
                let title = entry.title.clone().unwrap_or_else(|| name.clone());
                assert!(!title.contains('\\'), "the stock titles quote no groups");
                expected.push(Expected {
                    module: module.clone(),
                    descriptor: descriptor.clone(),
                    title,
                });
            }
        }
    }
    expected
}

/// The daemon's XML once it holds every one of `names`, or None at `deadline`.
fn xml_with(port: u16, names: &[&str], deadline: Duration) -> Option<gxml::Document> {
    let start = Instant::now();
    while start.elapsed() < deadline {
        if let Ok(mut stream) = std::net::TcpStream::connect(("127.0.0.1", port)) {
            let mut xml = String::new();
            if std::io::Read::read_to_string(&mut stream, &mut xml).is_ok() {
                let document = gxml::parse(&xml).unwrap_or_else(|e| panic!("{e}:\n{xml}"));
                let host = document.hosts.first()?;
                if names.iter().all(|name| host.metric(name).is_some()) {
                    return Some(document);
                }
            }
        }
        std::thread::sleep(Duration::from_millis(500));
    }
    None
}

/// Whether `value` is what the printf `format` of a number makes: `%u`/`%d` an
/// integer, `%f` six decimals, `%.Nf` N decimals.
fn formatted_as(format: &str, value: &str) -> bool {
    let decimals = value.split_once('.').map_or(0, |(_, d)| d.len());
    let number = value.parse::<f64>().is_ok();
    match format {
        "%u" | "%d" | "%i" => value.parse::<i64>().is_ok(),
        "%f" => number && decimals == 6,
        other => {
            let wanted = other
                .strip_prefix("%.")
                .and_then(|f| f.strip_suffix('f'))
                .and_then(|n| n.parse::<usize>().ok())
                .unwrap_or_else(|| panic!("a format the stock modules do not use: {other}"));
            number && decimals == wanted
        }
    }
}

#[test]
fn wasmond_run_serves_the_stock_modules_metrics_as_declared() {
    if !prerequisites("wasmond run with stock modules") {
        return;
    }
    let dir = TempDir::new("gmond-python-run");
    let port = free_port();
    let conf = install(dir.path(), MODULES, port);
    let expected = expected_metrics(&load_whole_config(&conf));
    for (_, module) in MODULES {
        assert!(
            expected.iter().any(|e| e.module == *module),
            "{module}: its .pyconf selects none of its metrics"
        );
    }
    let daemon = Daemon::spawn(
        "wasmond",
        Command::new(env!("CARGO_BIN_EXE_wasmond"))
            .args(["run", "-c"])
            .arg(&conf)
            .env("XDG_CACHE_HOME", cache_home()),
        dir.path().join("wasmond.log"),
    );
    // Every collection group collects at start-up and gmond sends a metric's first
    // value at once, so the stock collect_every (10 to 60 s) need not be shortened:
    // all appear within seconds of the modules' start (a cold compile of the
    // interpreter, when the cache is empty, takes longer: hence the generous wait).
    let names: Vec<&str> = expected
        .iter()
        .map(|e| e.descriptor["name"].as_str().unwrap())
        .collect();
    let Some(document) = xml_with(port, &names, Duration::from_secs(240)) else {
        let xml =
            std::io::read_to_string(std::net::TcpStream::connect(("127.0.0.1", port)).unwrap())
                .unwrap_or_default();
        let missing: Vec<&&str> = names
            .iter()
            .filter(|name| !xml.contains(&format!("<METRIC NAME=\"{name}\"")))
            .collect();
        panic!(
            "the XML never held {missing:?}; log:\n{}",
            daemon.log_text()
        );
    };
    let host = &document.hosts[0];
    for Expected {
        module,
        descriptor,
        title,
    } in &expected
    {
        let name = descriptor["name"].as_str().unwrap();
        let at = format!("{module}/{name}");
        let metric = host.metric(name).unwrap();
        let text = |key: &str, default: &str| {
            descriptor
                .get(key)
                .map_or(default.to_string(), |v| match v {
                    Value::String(s) => s.clone(),
                    other => other.to_string(),
                })
        };
        let value_type = match text("value_type", "uint").as_str() {
            "uint" => "uint32",
            "int" => "int32",
            other => other,
        }
        .to_string();
        assert_eq!(metric.attr("TYPE"), value_type, "{at}");
        assert_eq!(metric.attr("UNITS"), text("units", ""), "{at}");
        assert_eq!(metric.attr("SLOPE"), text("slope", "both"), "{at}");
        assert_eq!(metric.attr("TMAX"), text("time_max", "60"), "{at}");
        assert_eq!(metric.attr("DMAX"), "0", "{at}");
        assert_eq!(metric.extra("DESC"), vec![text("description", "")], "{at}");
        assert_eq!(metric.extra("TITLE"), vec![title.as_str()], "{at}");
        let groups: Vec<String> = text("groups", "")
            .split(',')
            .map(|g| g.trim().to_string())
            .filter(|g| !g.is_empty())
            .collect();
        assert_eq!(metric.extra("GROUP"), groups, "{at}");
        // Any other key of the descriptor dict is an extra element, as in gmond.
        let known = [
            "name",
            "value_type",
            "units",
            "slope",
            "format",
            "time_max",
            "description",
            "groups",
        ];
        for key in descriptor.as_object().unwrap().keys() {
            if !known.contains(&key.as_str()) {
                assert_eq!(metric.extra(key), vec![text(key, "")], "{at}: extra {key}");
            }
        }
        if value_type != "string" {
            let format = text(
                "format",
                if value_type.contains("int") {
                    "%u"
                } else {
                    "%f"
                },
            );
            assert!(
                formatted_as(&format, metric.attr("VAL")),
                "{at}: VAL {:?} is not {format}",
                metric.attr("VAL")
            );
        }
    }
    daemon.assert_running();
    let log = daemon.log_text();
    for (_, module) in MODULES {
        assert!(
            log.contains(&format!("module {module} started with")),
            "{module}:\n{log}"
        );
    }
    eprintln!(
        "{} metrics of {} modules served as declared",
        expected.len(),
        MODULES.len()
    );
}

/// A throwaway python module in a directory of its own, run by `wasmond module run`.
fn module_run(dir: &Path, name: &str, source: &str, args: &[&str]) -> (bool, String) {
    let path = dir.join(format!("{name}.py"));
    fs::write(&path, source).unwrap();
    wasmond(|command| command.args(["module", "run"]).arg(&path).args(args))
}

/// Runs the daemon's binary with the arguments `args` adds, sharing the tests' compile
/// cache: whether it succeeded, and everything it printed.
fn wasmond(args: impl FnOnce(&mut Command) -> &mut Command) -> (bool, String) {
    let mut command = Command::new(env!("CARGO_BIN_EXE_wasmond"));
    let out = args(&mut command)
        .env("XDG_CACHE_HOME", cache_home())
        .output()
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

#[test]
fn the_sandbox_tells_the_truth() {
    if !prerequisites("sandbox truths") {
        return;
    }
    let dir = TempDir::new("gmond-python-truths");
    let getconf = |name: &str| {
        let out = Command::new("getconf").arg(name).output().unwrap();
        String::from_utf8(out.stdout).unwrap().trim().to_string()
    };
    let native_inodes = Command::new("python3")
        .args(["-c", "import os; print(os.statvfs('/').f_files)"])
        .output()
        .unwrap();
    let native_inodes = String::from_utf8(native_inodes.stdout)
        .unwrap()
        .trim()
        .to_string();
    // Python 2, lazily imported modules, sysconf, cpu_count, statvfs with inodes and a
    // path written as //, logging to a file, and a duplicate name.
    let source = r#"
import os, logging
logging.basicConfig(filename='/var/log/truths.log', level=logging.INFO)
def value(name):
    import json, optparse, hashlib
    if name == 'page': return os.sysconf('SC_PAGE_SIZE')
    if name == 'ticks': return os.sysconf(os.sysconf_names['SC_CLK_TCK'])
    if name == 'cpus': return os.cpu_count()
    if name == 'inodes': return os.statvfs('//').f_files
    return json.dumps({'md5': hashlib.md5(b'x').hexdigest()[:4]})
def metric_init(params):
    logging.info("truths starting")
    print "python 2"
    d = lambda n, t='uint': {'name': n, 'call_back': value, 'value_type': t, 'format': '%s' if t == 'string' else '%u'}
    return [d('page'), d('ticks'), d('cpus'), d('inodes', 'double'), d('json', 'string'), d('page', 'string')]
"#;
    let (ok, text) = module_run(dir.path(), "truths", source, &["--allow-filesystem-usage"]);
    assert!(ok, "{text}");
    let row = |name: &str| {
        text.lines()
            .find(|line| line.split_whitespace().next() == Some(name))
            .unwrap_or_else(|| panic!("no {name} row in\n{text}"))
            .split_whitespace()
            .nth(2)
            .unwrap()
            .to_string()
    };
    assert_eq!(row("page"), getconf("PAGESIZE"), "{text}");
    assert_eq!(row("ticks"), getconf("CLK_TCK"), "{text}");
    assert_eq!(row("cpus"), getconf("_NPROCESSORS_ONLN"), "{text}");
    assert_eq!(
        row("inodes").parse::<f64>().unwrap(),
        native_inodes.parse::<f64>().unwrap(),
        "{text}"
    );
    assert!(
        text.lines()
            .any(|line| line.starts_with("json") && line.contains("9dd4")),
        "{text}"
    );
    assert!(text.contains("metric page is declared twice"), "{text}");
    assert!(
        text.contains("truths starting"),
        "the file handler writes to the host log:\n{text}"
    );
}

#[test]
fn errors_name_the_python_file_line_and_metric() {
    if !prerequisites("python errors") {
        return;
    }
    let dir = TempDir::new("gmond-python-errors");
    let (ok, text) = module_run(
        dir.path(),
        "broken",
        "def metric_init(params):\n    return [\n",
        &[],
    );
    assert!(!ok);
    assert!(
        text.contains("broken.py:2") || text.contains("broken.py:3"),
        "{text}"
    );

    let (ok, text) = module_run(
        dir.path(),
        "raises",
        "def value(name):\n    return {}[name]\n\ndef metric_init(params):\n    return [{'name': 'm', 'call_back': value}]\n",
        &[],
    );
    assert!(!ok);
    assert!(
        text.contains("m: call_back failed: KeyError: 'm' (at "),
        "{text}"
    );
    assert!(text.contains("raises.py:2 in value"), "{text}");

    let (ok, text) = module_run(
        dir.path(),
        "threads",
        "import threading\ndef metric_init(params):\n    threading.Thread(target=lambda: None).start()\n    return []\n",
        &[],
    );
    assert!(!ok);
    assert!(
        text.contains("cannot start: wasmond runs python modules without threads"),
        "{text}"
    );
    assert!(text.contains("threads.py:3 in metric_init"), "{text}");
}

/// `wasmond check -c CONF`, with the test's compile cache.
fn check(conf: &Path) -> (bool, String) {
    wasmond(|command| command.args(["check", "-c"]).arg(conf))
}

#[test]
fn denials_are_visible_even_when_the_module_hides_them() {
    if !prerequisites("python denials") {
        return;
    }
    let dir = TempDir::new("gmond-python-denials");
    // entropy.py's pattern (an IOError becomes a 0), and a process, a socket, a name
    // lookup and a thread, each attempt caught and hidden by the module.
    let source = "import socket, subprocess, threading\n\
        def value(name):\n    try:\n        return int(open('/proc/sys/kernel/random/entropy_avail').read())\n    except IOError:\n        return 0\n\n\
        def metric_init(params):\n    for attempt in (lambda: subprocess.Popen(['ps']),\n                    lambda: socket.socket(socket.AF_INET, socket.SOCK_STREAM),\n                    lambda: socket.gethostbyname('localhost'),\n                    lambda: threading.Thread(target=value, name='poller').start()):\n        try:\n            attempt()\n        except Exception:\n            pass\n    return [{'name': 'entropy', 'call_back': value}]\n";
    let (ok, text) = module_run(dir.path(), "hides", source, &[]);
    assert!(!ok, "a refusal is an error:\n{text}");
    for refusal in [
        r#"error: hides: refused: open /proc/sys/kernel/random/entropy_avail: not granted; allow it with sandbox { allow_read = ("/proc") }"#,
        "error: hides: refused: subprocess ['ps']: wasmond runs no processes",
        "error: hides: refused: socket (AF_INET, SOCK_STREAM): wasmond modules have no network",
        "error: hides: refused: name lookup 'localhost': wasmond modules have no network",
        "error: hides: refused: thread 'poller': wasmond runs python modules without threads",
    ] {
        assert!(text.contains(refusal), "{refusal}:\n{text}");
    }

    // `check` calls a python module's call_backs once to see the same; granted, the
    // open is not refused and the module is fine.
    let entropy_like = "def value(name):\n    try:\n        return int(open('/proc/sys/kernel/random/entropy_avail').read())\n    except IOError:\n        return 0\n\ndef metric_init(params):\n    return [{'name': 'entropy_like', 'call_back': value}]\n";
    fs::write(dir.path().join("entropy_like.py"), entropy_like).unwrap();
    let conf = |grant: &str| {
        dir.write(
            "gmond.conf",
            &format!(
                "globals {{\n  daemonize = no\n  setuid = no\n}}\n\
                 modules {{\n  module {{\n    name = \"entropy_like\"\n    language = \"python\"\n{grant}  }}\n}}\n\
                 collection_group {{\n  collect_every = 15\n  metric {{\n    name = \"entropy_like\"\n  }}\n}}\n"
            ),
        )
    };
    let (ok, text) = check(&conf(""));
    assert!(!ok, "{text}");
    assert!(
        text.contains(r#"error: module entropy_like: refused: open /proc/sys/kernel/random/entropy_avail: not granted; allow it with sandbox { allow_read = ("/proc") }"#),
        "{text}"
    );
    let (ok, text) = check(&conf("    sandbox { allow_read = (\"/proc\") }\n"));
    assert!(ok, "{text}");
    assert!(!text.contains("refused"), "{text}");
    let (ok, text) = module_run(
        dir.path(),
        "entropy_like",
        entropy_like,
        &["--allow-read", "/proc"],
    );
    assert!(ok, "{text}");
    assert!(!text.contains("refused"), "{text}");
}

/// Issue 15: "memory used to compile is returned after the first load". A Python 2
/// module is translated in an instance of its own, which is then dropped: the
/// instance that runs the module after a cold start (no translation kept yet) holds
/// no more memory than after a warm one. Before, the translation ran in the module's
/// own instance, and the pages fissix dirtied stayed in its linear memory (which
/// never shrinks) until the daemon stopped.
#[test]
fn a_cold_start_holds_no_more_memory_than_a_warm_one() {
    if !prerequisites("memory after a cold start") {
        return;
    }
    let dir = TempDir::new("gmond-python-cold-memory");
    let py_dir = dir.path().join("python_modules");
    fs::create_dir_all(&py_dir).unwrap();
    // A source of its own, so that no earlier run kept its translation: the first
    // start below is cold, the second warm (the compiled interpreter is cached).
    let nonce = format!("{} {:?}", std::process::id(), std::time::SystemTime::now());
    fs::write(py_dir.join("oldstyle.py"), python2_module(&nonce)).unwrap();
    let port = free_port();
    let conf = dir.write(
        "gmond.conf",
        &format!(
            "globals {{\n  daemonize = no\n  setuid = no\n}}\n\
             tcp_accept_channel {{\n  bind = 127.0.0.1\n  port = {port}\n}}\n\
             modules {{\n  module {{\n    name = \"python_module\"\n    path = \"modpython.so\"\n    params = \"{py}\"\n  }}\n  \
             module {{\n    name = \"oldstyle\"\n    language = \"python\"\n  }}\n}}\n\
             collection_group {{\n  collect_every = 60\n  time_threshold = 60\n  metric {{\n    name = \"oldstyle_value\"\n  }}\n}}\n",
            py = py_dir.display(),
        ),
    );
    let cold: u64 = image_mappings_after_start(&dir, &conf, "cold", &["oldstyle"], Duration::ZERO)
        .iter()
        .sum();
    // The warm start finds the translation the cold one made (the runtime keeps it
    // in the cache directory, as `<hash>.py`): it translates nothing.
    let kept = fs::read_dir(cache_home().join("wasmond/python"))
        .unwrap()
        .filter_map(|entry| fs::read_to_string(entry.unwrap().path()).ok())
        .find(|text| text.contains(&nonce))
        .expect("the cold start kept the translation");
    assert!(kept.contains("print(\"f3\", d[3])"), "{kept}");
    let warm: u64 = image_mappings_after_start(&dir, &conf, "warm", &["oldstyle"], Duration::ZERO)
        .iter()
        .sum();
    eprintln!("resident in the instance's linear memory: cold {cold} kB, warm {warm} kB");
    // The same module, the same work since it started: what may differ is noise
    // (which pages the kernel maps around a fault), far under what the translation
    // dirtied when it ran in this instance (4.2 MB more than warm, measured).
    assert!(
        cold <= warm + 512,
        "after a cold start the module's instance holds {cold} kB of linear memory, \
         after a warm one {warm} kB"
    );
}

/// What one more Python module costs is mostly what its instance maps of the
/// interpreter's memory snapshot: a page it only reads stays shared, but the kernel maps
/// the 64 KiB around it, and VmRSS counts each mapped page once per instance. The
/// interpreter settles its heap before the snapshot (`wasmond_snapshot.py`: collect,
/// fill the allocator's free chunks, freeze), so that a running module allocates past
/// the snapshot and touches few stretches of it. Four modules, each called every second
/// for a few seconds.
#[test]
fn each_python_module_maps_little_of_the_interpreters_snapshot() {
    if !prerequisites("snapshot mapped per module") {
        return;
    }
    let dir = TempDir::new("gmond-python-snapshot-mapped");
    let py_dir = dir.path().join("python_modules");
    fs::create_dir_all(&py_dir).unwrap();
    let names = ["lean0", "lean1", "lean2", "lean3"];
    let mut modules = String::new();
    for name in names {
        fs::write(
            py_dir.join(format!("{name}.py")),
            format!(
                "import time\n\n\
                 def value(name):\n    return int(time.time()) % 1000 + len(name)\n\n\
                 def metric_init(params):\n    return [{{'name': '{name}_value', 'call_back': value,\n\
                 \x20            'value_type': 'uint', 'format': '%u', 'time_max': 60}}]\n"
            ),
        )
        .unwrap();
        modules.push_str(&format!(
            "  module {{\n    name = \"{name}\"\n    language = \"python\"\n  }}\n"
        ));
    }
    let port = free_port();
    let conf = dir.write(
        "gmond.conf",
        &format!(
            "globals {{\n  daemonize = no\n  setuid = no\n}}\n\
             tcp_accept_channel {{\n  bind = 127.0.0.1\n  port = {port}\n}}\n\
             modules {{\n  module {{\n    name = \"python_module\"\n    path = \"modpython.so\"\n    params = \"{py}\"\n  }}\n{modules}}}\n\
             collection_group {{\n  collect_every = 1\n  time_threshold = 1\n  metric {{\n    name_match = \"lean._value\"\n  }}\n}}\n",
            py = py_dir.display(),
        ),
    );
    let mapped = image_mappings_after_start(&dir, &conf, "lean", &names, Duration::from_secs(3));
    eprintln!("resident per instance in the snapshot's mapping: {mapped:?} kB");
    assert_eq!(mapped.len(), names.len(), "{mapped:?}");
    // Measured: 9.3-10.1 MiB each settled (it grows a little as the interpreter's own
    // Python does more per call), 12.7-12.9 MiB unsettled (without `settle()`).
    for kb in &mapped {
        assert!(
            *kb <= 11 * 1024 + 512,
            "an instance maps {kb} kB of the interpreter's snapshot (all: {mapped:?} kB)"
        );
    }
}

/// A small Python 2 module in gmond 3.7.2's style (print statements, `has_key`,
/// `iteritems`, `except X, e`, long literals), one metric. Translating any module
/// loads fissix's grammar and fixers: about 4 MB of an instance's memory dirtied.
fn python2_module(nonce: &str) -> String {
    let mut source = format!("# {nonce}\nimport sys\n\n");
    for k in 0..5 {
        source.push_str(&format!(
            "def f{k}(d):\n    if d.has_key({k}):\n        print \"f{k}\", d[{k}]\n    \
             try:\n        return sum(v for _, v in d.iteritems())\n    \
             except KeyError, e:\n        print >>sys.stderr, e\n        return 0L\n\n"
        ));
    }
    source.push_str(
        "def value(name):\n    return f3({3: 3})\n\n\
         def metric_init(params):\n    return [{'name': 'oldstyle_value', 'call_back': value,\n             \
         'value_type': 'uint', 'format': '%u'}]\n",
    );
    source
}

/// Starts `wasmond run -c conf` (the tests' compile cache), waits for `modules` to
/// start and for `settle` more, and returns the resident kB of each mapping of
/// wasmtime's copy-on-write memory image (the interpreter's snapshot, which is all of
/// an instance's linear memory: one mapping per live instance); then stops the daemon.
fn image_mappings_after_start(
    dir: &TempDir,
    conf: &Path,
    label: &str,
    modules: &[&str],
    settle: Duration,
) -> Vec<u64> {
    let daemon = Daemon::spawn(
        "wasmond",
        Command::new(env!("CARGO_BIN_EXE_wasmond"))
            .args(["run", "-c"])
            .arg(conf)
            .env("XDG_CACHE_HOME", cache_home()),
        dir.path().join(format!("wasmond-{label}.log")),
    );
    ganglia::wait_for(
        Duration::from_secs(240),
        "the modules started",
        || {
            daemon.assert_running();
            let log = daemon.log_text();
            for module in modules {
                assert!(!log.contains(&format!("module {module}: init:")), "{log}");
            }
            modules
                .iter()
                .all(|module| log.contains(&format!("module {module} started")))
                .then_some(())
        },
        || daemon.log_text(),
    );
    std::thread::sleep(settle);
    let smaps = fs::read_to_string(format!("/proc/{}/smaps", daemon.pid())).unwrap();
    let mut in_image = false;
    let mut mappings = Vec::new();
    for line in smaps.lines() {
        if let Some(kb) = line.strip_prefix("Rss:") {
            if in_image {
                mappings.push(
                    kb.trim()
                        .trim_end_matches("kB")
                        .trim()
                        .parse::<u64>()
                        .unwrap(),
                );
            }
        } else if is_mapping(line) {
            in_image = line.contains("memfd:wasm-memory-image");
        }
    }
    assert!(!mappings.is_empty(), "no memory image mapped:\n{smaps}");
    daemon.terminate(Duration::from_secs(20));
    mappings
}

/// Whether an smaps line opens a mapping (`start-end perms ...`) rather than
/// giving one of its fields (`Rss:   4 kB`).
fn is_mapping(line: &str) -> bool {
    line.split_whitespace()
        .next()
        .and_then(|range| range.split_once('-'))
        .is_some_and(|(start, end)| {
            u64::from_str_radix(start, 16).is_ok() && u64::from_str_radix(end, 16).is_ok()
        })
}

/// A module of each kind of answer: a string (`collect.answer-text`), numbers
/// (`answer-number`), a call_back that fails (`answer` with an error), one that returns
/// what its type cannot hold (`value_type` uint, a string: refused as gmond does).
const EACH_KIND: &str = r#"
def text(name): return "up"
def count(name): return -1
def ratio(name): return 0.5
def broken(name): raise KeyError(name)
def wrong(name): return "not a number"

def metric_init(params):
    kinds = [("text", text, "string"), ("count", count, "uint"), ("ratio", ratio, "double"),
             ("broken", broken, "uint"), ("wrong", wrong, "uint")]
    return [{"name": name, "call_back": call_back, "value_type": value_type, "units": "",
             "slope": "both", "format": "%s", "time_max": 60, "description": "",
             "groups": "each"} for name, call_back, value_type in kinds]
"#;

#[test]
fn one_handle_each_call_answers_every_kind_of_value_as_handler_calls_do() {
    if !prerequisites("handle-each of a python module") {
        return;
    }
    let dir = TempDir::new("gmond-python-each");
    let conf = install(dir.path(), &[], free_port());
    fs::write(dir.path().join("python_modules/each.py"), EACH_KIND).unwrap();
    fs::write(
        dir.path().join("conf.d/each.pyconf"),
        "modules {\n  module {\n    name = \"each\"\n    language = \"python\"\n  }\n}\n",
    )
    .unwrap();
    let modules = load_config(&conf);
    let module = modules.iter().find(|m| m.name == "each").unwrap();
    let runtime = runtime();
    let mut each = start(&runtime, module);
    let names = ["wrong", "text", "count", "ratio", "broken", "text"];
    let mut answers = Vec::new();
    each.handle_each(&names, &mut |answer| answers.push(answer));
    let calls = each.stats().calls;
    let mut one_by_one = start(&runtime, module);
    for (name, answer) in names.iter().zip(&answers) {
        let alone = one_by_one.handle(name);
        match (answer, &alone) {
            (Ok(value), Ok(alone)) => assert_eq!(value, alone, "{name}"),
            // The same message; the traceback's last frame is the SDK's own.
            (Err(error), Err(alone)) => assert_eq!(
                error.to_string().split(" (at ").next(),
                alone.to_string().split(" (at ").next(),
                "{name}"
            ),
            _ => panic!("{name}: {answer:?} in handle-each, {alone:?} alone"),
        }
    }
    assert_eq!(answers.len(), names.len());
    assert_eq!(
        answers[1].as_ref().unwrap(),
        &MetricValue::String("up".into())
    );
    assert_eq!(answers[2].as_ref().unwrap(), &MetricValue::UInt32(u32::MAX));
    assert_eq!(answers[3].as_ref().unwrap(), &MetricValue::Double(0.5));
    let broken = answers[4].as_ref().unwrap_err().to_string();
    assert!(
        broken.contains("broken: call_back failed: KeyError"),
        "{broken}"
    );
    let wrong = answers[0].as_ref().unwrap_err().to_string();
    assert!(
        wrong.contains("call_back returned 'not a number'"),
        "{wrong}"
    );
    assert_eq!(
        calls,
        names.len() as u64,
        "one call counted per metric asked"
    );
}
