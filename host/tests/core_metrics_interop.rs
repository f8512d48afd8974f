//! Interop (issue 7): the `core_metrics` module against real gmond 3.7.2 on the
//! same machine.
//!
//! Both tests run Debian's gmond with its stock configuration
//! (`data/gmond-stock-loopback.conf`, captured from
//! `reference/ganglia-3.7.2/captures/stock/`, moved to a free loopback port, in the
//! foreground) and read the XML it serves.
//!
//! 1. [`core_metrics_matches_real_gmond`] loads `core_metrics.wasm` through wasmond's
//!    runtime with read-only `/proc` and `/sys`; gmond also collects, in one fast group,
//!    the built-in metrics its stock config leaves out. Every metric gmond served is
//!    declared by the module and the other way round, with the same TYPE, UNITS,
//!    SLOPE, TMAX, GROUP and DESC.
//! 2. [`wasmond_run_serves_what_gmond_serves`] runs `wasmond run` on the bundled
//!    default config (`conf.d/wasmond.conf`, moved to a free port) and compares the
//!    two XML documents: the same metrics (but wasmond's own `wasmond_*`
//!    accounting) with the same TYPE, UNITS, SLOPE, TMAX, GROUP, DESC and TITLE.
//!
//! Both check `cpu_num`, `mem_total`, `swap_total`, `boottime` and `os_release` (and
//! `os_name`, `machine_type`, `cpu_speed`, `gexec`, and `disk_total` through the
//! host's statvfs import) printed alike, and `load_one`
//! within 0.5. Both skip (with a message) when gmond is not
//! installed, and fail then if `WASMOND_REQUIRE_INTEROP=1`.

use std::cell::RefCell;
use std::collections::{BTreeMap, BTreeSet};
use std::fs::File;
use std::io::Read;
use std::net::{TcpListener, TcpStream, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Mutex;
use std::thread::sleep;
use std::time::{Duration, Instant};

use quick_xml::Reader;
use quick_xml::events::Event;
use wasmond::metric::{MetricDescriptor, MetricValue};
use wasmond::runtime::{Grants, ModuleInstance, Runtime, RuntimeConfig, Sandbox};

/// The stock loopback config; its port 8749 is replaced by a free one.
const STOCK_CONFIG: &str = include_str!("data/gmond-stock-loopback.conf");
const STOCK_PORT: &str = "8749";

/// wasmond's bundled default config; its port 8649 is replaced by a free one.
const DEFAULT_CONFIG: &str = include_str!("../../conf.d/wasmond.conf");
const DEFAULT_PORT: &str = "8649";

/// Collects `load_one` every 2 s and sends it as often, so that the XML's value is
/// fresh enough to compare within 0.5 (the stock group sends it only when it moved
/// by 1.0, or every 90 s). Added to both daemons' configs, with the stock title.
const FAST_LOAD_GROUP: &str = r#"
collection_group {
  collect_every = 2
  time_threshold = 2
  metric { name = "load_one" title = "One Minute Load Average" }
}
"#;

/// The built-in metrics gmond's stock config does not collect, so that test 1 sees
/// every metric gmond has.
const UNCOLLECTED_GROUP: &str = r#"
collection_group {
  collect_every = 2
  time_threshold = 2
  metric { name = "sys_clock" }
  metric { name = "mtu" }
  metric { name = "cpu_intr" }
  metric { name = "cpu_sintr" }
  metric { name = "cpu_steal" }
  metric { name = "mem_sreclaimable" }
}
"#;

/// What gmond serves on its stock config (`captures/stock/gmond_stock_xml.xml`, but
/// for the `io_*` metrics of the optional ganglia-modules-linux).
#[rustfmt::skip]
const STOCK_METRICS: [&str; 32] = [
    "boottime", "bytes_in", "bytes_out", "cpu_aidle", "cpu_idle", "cpu_nice", "cpu_num", "cpu_speed",
    "cpu_system", "cpu_user", "cpu_wio", "disk_free", "disk_total", "gexec", "load_fifteen", "load_five",
    "load_one", "machine_type", "mem_buffers", "mem_cached", "mem_free", "mem_shared", "mem_total", "os_name",
    "os_release", "part_max_used", "pkts_in", "pkts_out", "proc_run", "proc_total", "swap_free", "swap_total",
];

/// Metrics whose values both sides read alike at about the same time: the five of
/// issue 7, and the ones fixed while the machine runs.
const SAME_VALUES: [&str; 10] = [
    "cpu_num",
    "mem_total",
    "swap_total",
    "boottime",
    "os_release",
    "os_name",
    "machine_type",
    "cpu_speed",
    "gexec",
    "disk_total",
];

/// The prefix of wasmond's own accounting metrics, which gmond does not have.
const WASMOND_OWN: &str = "wasmond_";

/// How long a daemon may take to serve every metric (the slow stock groups are
/// collected at start, so this is start-up plus one send).
const WARMUP: Duration = Duration::from_secs(60);

/// Attempts at reading `load_one` from both sides close enough in time: the kernel
/// updates it every 5 s, and a busy machine can move it by more than 0.5 per update.
const LOAD_ATTEMPTS: usize = 6;

/// One `<METRIC>` of a gmond XML document.
#[derive(Debug, Clone)]
struct XmlMetric {
    val: String,
    ty: String,
    units: String,
    slope: String,
    tmax: u32,
    tn: u32,
    groups: Vec<String>,
    /// The `DESC` extra element: the descriptor's description.
    desc: String,
    /// The `TITLE` extra element: the collection group's title.
    title: String,
}

/// What the tests compare of a metric's description: TYPE, UNITS, SLOPE, TMAX,
/// groups and DESC.
type Description = (String, String, String, u32, Vec<String>, String);

impl XmlMetric {
    fn description(&self) -> Description {
        (
            self.ty.clone(),
            self.units.clone(),
            self.slope.clone(),
            self.tmax,
            self.groups.clone(),
            self.desc.clone(),
        )
    }
}

fn description_of(d: &MetricDescriptor) -> Description {
    let (ty, slope) = (
        d.value_type.gmond_name().to_string(),
        d.slope.gmond_name().to_string(),
    );
    let (units, groups, desc) = (d.units.clone(), d.groups.clone(), d.description.clone());
    (ty, units, slope, d.time_max, groups, desc)
}

#[test]
fn core_metrics_matches_real_gmond() {
    let Some(gmond_bin) = find_gmond() else {
        return;
    };
    let gmond = Daemon::gmond(&gmond_bin, &[FAST_LOAD_GROUP, UNCOLLECTED_GROUP]);
    let (mut module, descriptors) = start_module();

    let ours: BTreeSet<&str> = descriptors.iter().map(|d| d.name.as_str()).collect();
    let served = gmond.wait_for(&ours);
    let theirs: BTreeSet<&str> = served.keys().map(String::as_str).collect();
    assert_eq!(theirs, ours, "metric names: gmond's, then core_metrics'");
    for descriptor in &descriptors {
        let name = &descriptor.name;
        assert_eq!(
            served[name].description(),
            description_of(descriptor),
            "{name}: TYPE, UNITS, SLOPE, TMAX, GROUP, DESC"
        );
    }

    // The same values printed with the same formats.
    for name in SAME_VALUES {
        let descriptor = descriptors.iter().find(|d| d.name == name).unwrap();
        let value = module
            .handle(name)
            .unwrap_or_else(|e| panic!("{name}: {e:#}"));
        let mut ours = String::new();
        wasmond::wire::format::format_value(&descriptor.format, &value, &mut ours);
        assert_eq!(ours, served[name].val, "{name}");
    }
    assert_load_one_close(&gmond, || {
        as_f32(module.handle("load_one").expect("load_one"))
    });
}

#[test]
fn wasmond_run_serves_what_gmond_serves() {
    let Some(gmond_bin) = find_gmond() else {
        return;
    };
    let gmond = Daemon::gmond(&gmond_bin, &[FAST_LOAD_GROUP]);
    let wasmond = Daemon::wasmond(&[FAST_LOAD_GROUP]);

    let served_by_gmond = gmond.wait_for(&BTreeSet::from(STOCK_METRICS));
    let stock: BTreeSet<&str> = served_by_gmond.keys().map(String::as_str).collect();
    assert_eq!(
        stock,
        BTreeSet::from(STOCK_METRICS),
        "what gmond serves on its stock config"
    );
    let expected = stock;
    let served = wasmond.wait_for(&expected);
    let ours: BTreeSet<&str> = served
        .keys()
        .map(String::as_str)
        .filter(|name| !name.starts_with(WASMOND_OWN))
        .collect();
    assert_eq!(ours, expected, "metric names: wasmond's, then gmond's");
    for name in &expected {
        let (theirs, ours) = (&served_by_gmond[*name], &served[*name]);
        assert_eq!(
            ours.description(),
            theirs.description(),
            "{name}: TYPE, UNITS, SLOPE, TMAX, GROUP, DESC"
        );
        assert_eq!(
            ours.title, theirs.title,
            "{name}: TITLE (the default config's)"
        );
    }
    // The same values printed with the same formats.
    for name in SAME_VALUES {
        assert_eq!(served[name].val, served_by_gmond[name].val, "{name}");
    }
    assert_load_one_close(&gmond, || wasmond.fresh("load_one").val.parse().unwrap());
}

/// Reads `load_one` from gmond (a value it sent within the last second) and from
/// ours, until they are within 0.5 or the attempts run out.
fn assert_load_one_close(gmond: &Daemon, mut ours: impl FnMut() -> f32) {
    let mut pairs = Vec::new();
    for _ in 0..LOAD_ATTEMPTS {
        let theirs: f32 = gmond.fresh("load_one").val.parse().unwrap();
        let ours = ours();
        if (theirs - ours).abs() <= 0.5 {
            return;
        }
        pairs.push((theirs, ours));
        sleep(Duration::from_secs(2));
    }
    panic!("load_one never within 0.5 of gmond's: (gmond, ours) = {pairs:?}");
}

/// Loads and starts `core_metrics.wasm` with only `/proc` and `/sys` readable, and
/// the file system usage of local mount points.
fn start_module() -> (ModuleInstance, Vec<MetricDescriptor>) {
    let runtime = Runtime::new(RuntimeConfig {
        cache_dir: None,
        ..RuntimeConfig::default()
    })
    .expect("runtime");
    let grants = Grants {
        read_only_dirs: vec!["/proc".into(), "/sys".into()],
        filesystem_usage: true,
        ..Grants::default()
    };
    let sandbox = Sandbox {
        grants,
        ..Sandbox::default()
    };
    let wasm = Path::new(wasmond_test_guests::CORE_METRICS);
    let loaded = runtime
        .load("core_metrics", wasm, sandbox)
        .expect("load core_metrics.wasm");
    let module = loaded.start(Vec::new()).expect("start core_metrics");
    let descriptors = module.descriptors().to_vec();
    (module, descriptors)
}

fn as_f32(value: MetricValue) -> f32 {
    match value {
        MetricValue::Float(v) => v,
        other => panic!("expected a float, got {other:?}"),
    }
}

/// gmond's path; if it is missing, says the test skipped (or fails under
/// `WASMOND_REQUIRE_INTEROP=1`) and returns None.
fn find_gmond() -> Option<PathBuf> {
    let on_path = std::env::var_os("PATH")
        .map(|path| {
            std::env::split_paths(&path)
                .map(|dir| dir.join("gmond"))
                .collect::<Vec<_>>()
        })
        .unwrap_or_default();
    let found = std::iter::once(PathBuf::from("/usr/sbin/gmond"))
        .chain(on_path)
        .find(|path| path.is_file());
    if found.is_none() {
        let why = "gmond (Debian's ganglia-monitor 3.7.2) is not installed";
        if std::env::var("WASMOND_REQUIRE_INTEROP").as_deref() == Ok("1") {
            panic!("{why}, and WASMOND_REQUIRE_INTEROP=1");
        }
        eprintln!("skipped: {why} (set WASMOND_REQUIRE_INTEROP=1 to make this a failure)");
    }
    found
}

/// A daemon serving gmond's XML, started by this test on a free port and stopped
/// (by its pid) when dropped.
struct Daemon {
    name: String,
    child: RefCell<Child>,
    port: u16,
    /// Its stdout and stderr.
    log: PathBuf,
    _dir: TempDir,
}

impl Daemon {
    /// gmond on the stock config (run in the foreground as the current user, without
    /// Debian's `conf.d`, whose optional modules are not gmond's built-ins), plus `extra`.
    fn gmond(bin: &Path, extra: &[&str]) -> Daemon {
        let stock = STOCK_CONFIG
            .replace("daemonize = yes", "daemonize = no")
            .replace("setuid = yes", "setuid = no")
            .replace("include ('/etc/ganglia/conf.d/*.conf')", "");
        Daemon::start("gmond", bin, &["-f", "-c"], &stock, STOCK_PORT, extra)
    }

    /// `wasmond run` on the bundled default config, plus `extra`.
    fn wasmond(extra: &[&str]) -> Daemon {
        let bin = Path::new(env!("CARGO_BIN_EXE_wasmond"));
        Daemon::start(
            "wasmond",
            bin,
            &["run", "-c"],
            DEFAULT_CONFIG,
            DEFAULT_PORT,
            extra,
        )
    }

    /// Runs `bin ARGS CONF` where CONF is `config` with `port` replaced by a free one.
    fn start(
        name: &str,
        bin: &Path,
        args: &[&str],
        config: &str,
        port: &str,
        extra: &[&str],
    ) -> Daemon {
        let free = free_port();
        let dir = TempDir::new(&format!("core-metrics-interop-{name}-{free}"));
        let conf = dir.path.join(format!("{name}.conf"));
        let text = format!(
            "{}\n{}",
            config.replace(port, &free.to_string()),
            extra.concat()
        );
        std::fs::write(&conf, text).expect("write the config");
        let log = dir.path.join(format!("{name}.log"));
        let output = File::create(&log).expect("create the daemon's log");
        let child = Command::new(bin)
            .args(args)
            .arg(&conf)
            .stdin(Stdio::null())
            .stdout(output.try_clone().expect("clone the log's handle"))
            .stderr(output)
            .spawn()
            .unwrap_or_else(|e| panic!("start {}: {e}", bin.display()));
        Daemon {
            name: name.to_string(),
            child: RefCell::new(child),
            port: free,
            log,
            _dir: dir,
        }
    }

    /// Fails the test, with the daemon's output, if it has exited.
    fn assert_running(&self) {
        if let Ok(Some(status)) = self.child.borrow_mut().try_wait() {
            let output = std::fs::read_to_string(&self.log).unwrap_or_default();
            panic!("{} exited ({status}); its output:\n{output}", self.name);
        }
    }

    /// The XML's metrics once it has every metric in `names`.
    fn wait_for(&self, names: &BTreeSet<&str>) -> BTreeMap<String, XmlMetric> {
        let deadline = Instant::now() + WARMUP;
        loop {
            let served = self.metrics();
            let missing: Vec<&str> = names
                .iter()
                .copied()
                .filter(|n| !served.contains_key(*n))
                .collect();
            if missing.is_empty() {
                return served;
            }
            self.assert_running();
            assert!(
                Instant::now() < deadline,
                "{} on port {}: {missing:?} not served within {WARMUP:?}",
                self.name,
                self.port
            );
            sleep(Duration::from_millis(500));
        }
    }

    /// Metric `name` once the daemon has received it within the last second.
    fn fresh(&self, name: &str) -> XmlMetric {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(metric) = self.metrics().remove(name).filter(|m| m.tn <= 1) {
                return metric;
            }
            self.assert_running();
            assert!(
                Instant::now() < deadline,
                "{} on port {}: no fresh {name} in 30 s",
                self.name,
                self.port
            );
            sleep(Duration::from_millis(200));
        }
    }

    /// The metrics of the XML right now; empty while the daemon is not listening yet.
    fn metrics(&self) -> BTreeMap<String, XmlMetric> {
        let Ok(mut stream) = TcpStream::connect(("127.0.0.1", self.port)) else {
            return BTreeMap::new();
        };
        let mut xml = String::new();
        match stream.read_to_string(&mut xml) {
            Ok(_) => parse_metrics(&xml),
            Err(_) => BTreeMap::new(),
        }
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let child = self.child.get_mut();
        let _ = child.kill();
        let _ = child.wait();
    }
}

/// A port free for both TCP and UDP on 127.0.0.1 (gmond binds both).
/// Never the same one twice in this process: a port handed to a daemon that has not
/// bound it yet looks free.
fn free_port() -> u16 {
    static HANDED_OUT: Mutex<BTreeSet<u16>> = Mutex::new(BTreeSet::new());
    let mut handed_out = HANDED_OUT.lock().unwrap_or_else(|e| e.into_inner());
    for _ in 0..50 {
        let tcp = TcpListener::bind("127.0.0.1:0").expect("bind a TCP port");
        let port = tcp.local_addr().unwrap().port();
        if UdpSocket::bind(("127.0.0.1", port)).is_ok() && handed_out.insert(port) {
            return port;
        }
    }
    panic!("no port free for both TCP and UDP");
}

/// Every `<METRIC>` of a gmond XML document, by name.
fn parse_metrics(xml: &str) -> BTreeMap<String, XmlMetric> {
    let mut reader = Reader::from_str(xml);
    let mut metrics = BTreeMap::new();
    let mut current: Option<(String, XmlMetric)> = None;
    loop {
        match reader.read_event() {
            Ok(Event::Start(e)) if e.name().as_ref() == b"METRIC" => {
                current = Some(metric_of(&attributes(&e)))
            }
            Ok(Event::Empty(e)) if e.name().as_ref() == b"METRIC" => {
                let (name, metric) = metric_of(&attributes(&e));
                metrics.insert(name, metric);
            }
            Ok(Event::Empty(e)) if e.name().as_ref() == b"EXTRA_ELEMENT" => {
                let attrs = attributes(&e);
                if let Some((_, metric)) = current.as_mut() {
                    let val = attrs.get("VAL").cloned().unwrap_or_default();
                    match attrs.get("NAME").map(String::as_str) {
                        Some("GROUP") => metric.groups.push(val),
                        Some("DESC") => metric.desc = val,
                        Some("TITLE") => metric.title = val,
                        _ => {}
                    }
                }
            }
            Ok(Event::End(e)) if e.name().as_ref() == b"METRIC" => {
                if let Some((name, metric)) = current.take() {
                    metrics.insert(name, metric);
                }
            }
            Ok(Event::Eof) => return metrics,
            // A document cut short (gmond stopping): use what was read.
            Err(_) => return metrics,
            Ok(_) => {}
        }
    }
}

fn attributes(element: &quick_xml::events::BytesStart<'_>) -> BTreeMap<String, String> {
    element
        .attributes()
        .filter_map(Result::ok)
        .map(|a| {
            let key = String::from_utf8_lossy(a.key.as_ref()).into_owned();
            (
                key,
                a.unescape_value()
                    .map(|v| v.into_owned())
                    .unwrap_or_default(),
            )
        })
        .collect()
}

fn metric_of(attrs: &BTreeMap<String, String>) -> (String, XmlMetric) {
    let text = |key: &str| attrs.get(key).cloned().unwrap_or_default();
    let number = |key: &str| {
        attrs
            .get(key)
            .and_then(|v| v.parse().ok())
            .unwrap_or(u32::MAX)
    };
    let metric = XmlMetric {
        val: text("VAL"),
        ty: text("TYPE"),
        units: text("UNITS"),
        slope: text("SLOPE"),
        tmax: number("TMAX"),
        tn: number("TN"),
        groups: Vec::new(),
        desc: String::new(),
        title: String::new(),
    };
    (text("NAME"), metric)
}

/// A directory under the system temp dir, removed when dropped.
struct TempDir {
    path: PathBuf,
}

impl TempDir {
    fn new(prefix: &str) -> TempDir {
        let path = std::env::temp_dir().join(format!("{prefix}-{}", std::process::id()));
        std::fs::create_dir_all(&path).expect("create a temp dir");
        TempDir { path }
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.path);
    }
}
