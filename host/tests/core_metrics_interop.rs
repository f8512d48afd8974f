//! Interop (issue 7): the `core_metrics` module against real gmond 3.7.2 on the
//! same machine.
//!
//! Runs Debian's gmond with its stock configuration (`data/gmond-stock-loopback.conf`,
//! captured from `reference/ganglia-3.7.2/captures/stock/`, moved to a free loopback
//! port, in the foreground) plus one fast group that also collects the built-in
//! metrics the stock config leaves out, and reads the XML it serves. Loads
//! `core_metrics.wasm` through wasmond's runtime with read-only `/proc` and `/sys`.
//! Then checks:
//! - the same metric names: every metric gmond served is declared by the module and
//!   the other way round;
//! - for each, the same TYPE, UNITS, SLOPE, TMAX and GROUP;
//! - `cpu_num`, `mem_total`, `swap_total`, `boottime` and `os_release` equal;
//!   `load_one` within 0.5.
//!
//! Skips (with a message) when gmond is not installed, and fails then if
//! `WASMOND_REQUIRE_INTEROP=1`.

use std::collections::BTreeMap;
use std::io::Read;
use std::net::{TcpListener, TcpStream, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::thread::sleep;
use std::time::{Duration, Instant};

use quick_xml::Reader;
use quick_xml::events::Event;
use wasmond::metric::{MetricDescriptor, MetricValue};
use wasmond::runtime::{Grants, Runtime, RuntimeConfig, Sandbox};

/// The stock loopback config; its port 8749 is replaced by a free one.
const STOCK_CONFIG: &str = include_str!("data/gmond-stock-loopback.conf");
const STOCK_PORT: &str = "8749";

/// Collected every 2 s and sent as often, so the XML's values are fresh: `load_one`
/// (compared within 0.5), and the built-in metrics the stock config does not collect.
const FAST_GROUP: &str = r#"
collection_group {
  collect_every = 2
  time_threshold = 2
  metric { name = "load_one" }
  metric { name = "sys_clock" }
  metric { name = "mtu" }
  metric { name = "cpu_intr" }
  metric { name = "cpu_sintr" }
  metric { name = "cpu_steal" }
  metric { name = "mem_sreclaimable" }
}
"#;

/// How long gmond may take to serve every metric (its slowest stock group is
/// collected at start, so this is start-up plus one send).
const GMOND_WARMUP: Duration = Duration::from_secs(60);

/// Attempts at reading `load_one` from both sides close enough in time: the kernel
/// updates it every 5 s, and a busy machine can move it by more than 0.5 per update.
const LOAD_ATTEMPTS: usize = 6;

/// One `<METRIC>` of gmond's XML.
#[derive(Debug, Clone)]
struct XmlMetric {
    val: String,
    ty: String,
    units: String,
    slope: String,
    tmax: u32,
    tn: u32,
    groups: Vec<String>,
}

#[test]
fn core_metrics_matches_real_gmond() {
    let Some(gmond_bin) = find_gmond() else {
        skip_or_fail("gmond (Debian's ganglia-monitor 3.7.2) is not installed");
        return;
    };
    let gmond = Gmond::start(&gmond_bin);
    let (mut module, descriptors) = start_module();

    let wanted: Vec<&str> = descriptors.iter().map(|d| d.name.as_str()).collect();
    let served = gmond.wait_for(&wanted);

    assert_same_names(&served, &descriptors);
    for descriptor in &descriptors {
        assert_same_descriptor(&served[&descriptor.name], descriptor);
    }

    let ours = |module: &mut Module, name: &str| module.handle(name).unwrap_or_else(|e| panic!("{name}: {e:#}"));
    assert_eq!(served["cpu_num"].val.parse::<u16>().unwrap(), as_u16(ours(&mut module, "cpu_num")), "cpu_num");
    assert_eq!(served["boottime"].val.parse::<u32>().unwrap(), as_u32(ours(&mut module, "boottime")), "boottime");
    assert_eq!(MetricValue::String(served["os_release"].val.clone()), ours(&mut module, "os_release"), "os_release");
    for name in ["mem_total", "swap_total"] {
        // "%.0f" of the same f32 on both sides.
        let theirs: f64 = served[name].val.parse().unwrap();
        assert_eq!(theirs, f64::from(as_f32(ours(&mut module, name))).round(), "{name}");
    }
    assert_load_one_close(&gmond, &mut module);
}

/// Reads `load_one` from gmond (only a value gmond sent within the last second)
/// and from the module, until they are within 0.5 or the attempts run out.
fn assert_load_one_close(gmond: &Gmond, module: &mut Module) {
    let mut pairs = Vec::new();
    for _ in 0..LOAD_ATTEMPTS {
        let theirs = gmond.fresh("load_one");
        let ours = as_f32(module.handle("load_one").expect("load_one"));
        let theirs: f32 = theirs.val.parse().unwrap();
        if (theirs - ours).abs() <= 0.5 {
            return;
        }
        pairs.push((theirs, ours));
        sleep(Duration::from_secs(2));
    }
    panic!("load_one never within 0.5 of gmond's: (gmond, ours) = {pairs:?}");
}

fn assert_same_names(served: &BTreeMap<String, XmlMetric>, descriptors: &[MetricDescriptor]) {
    let ours: Vec<&str> = descriptors.iter().map(|d| d.name.as_str()).collect();
    let extra_in_gmond: Vec<&str> =
        served.keys().map(String::as_str).filter(|name| !ours.contains(name)).collect();
    assert!(extra_in_gmond.is_empty(), "gmond serves metrics core_metrics lacks: {extra_in_gmond:?}");
}

fn assert_same_descriptor(theirs: &XmlMetric, ours: &MetricDescriptor) {
    let name = &ours.name;
    assert_eq!(theirs.ty, ours.value_type.gmond_name(), "{name}: TYPE");
    assert_eq!(theirs.units, ours.units, "{name}: UNITS");
    assert_eq!(theirs.slope, ours.slope.gmond_name(), "{name}: SLOPE");
    assert_eq!(theirs.tmax, ours.time_max, "{name}: TMAX");
    assert_eq!(theirs.groups, ours.groups, "{name}: GROUP");
}

type Module = wasmond::runtime::ModuleInstance;

/// Loads and starts `core_metrics.wasm` with only `/proc` and `/sys` readable.
fn start_module() -> (Module, Vec<MetricDescriptor>) {
    let runtime = Runtime::new(RuntimeConfig { cache_dir: None, ..RuntimeConfig::default() }).expect("runtime");
    let grants = Grants { read_only_dirs: vec!["/proc".into(), "/sys".into()], ..Grants::default() };
    let sandbox = Sandbox { grants, ..Sandbox::default() };
    let wasm = Path::new(wasmond::guests::CORE_METRICS);
    let loaded = runtime.load("core_metrics", wasm, sandbox).expect("load core_metrics.wasm");
    let module = loaded.start(Vec::new()).expect("start core_metrics");
    let descriptors = module.descriptors().to_vec();
    (module, descriptors)
}

fn as_u16(value: MetricValue) -> u16 {
    match value {
        MetricValue::UInt16(v) => v,
        other => panic!("expected a uint16, got {other:?}"),
    }
}

fn as_u32(value: MetricValue) -> u32 {
    match value {
        MetricValue::UInt32(v) => v,
        other => panic!("expected a uint32, got {other:?}"),
    }
}

fn as_f32(value: MetricValue) -> f32 {
    match value {
        MetricValue::Float(v) => v,
        other => panic!("expected a float, got {other:?}"),
    }
}

fn skip_or_fail(why: &str) {
    if std::env::var("WASMOND_REQUIRE_INTEROP").as_deref() == Ok("1") {
        panic!("{why}, and WASMOND_REQUIRE_INTEROP=1");
    }
    eprintln!("skipped: {why} (set WASMOND_REQUIRE_INTEROP=1 to make this a failure)");
}

fn find_gmond() -> Option<PathBuf> {
    let candidates = std::env::var_os("PATH")
        .map(|path| std::env::split_paths(&path).map(|dir| dir.join("gmond")).collect::<Vec<_>>())
        .unwrap_or_default();
    std::iter::once(PathBuf::from("/usr/sbin/gmond")).chain(candidates).find(|path| path.is_file())
}

/// A gmond started by this test, stopped (by its pid) when dropped.
struct Gmond {
    child: Child,
    port: u16,
    _dir: TempDir,
}

impl Gmond {
    fn start(bin: &Path) -> Gmond {
        let port = free_port();
        let dir = TempDir::new("core-metrics-interop");
        let conf = dir.path.join("gmond.conf");
        std::fs::write(&conf, test_config(port)).expect("write gmond.conf");
        let child = Command::new(bin)
            .arg("-f")
            .arg("-c")
            .arg(&conf)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start gmond");
        Gmond { child, port, _dir: dir }
    }

    /// gmond's XML once it serves every metric in `names`.
    fn wait_for(&self, names: &[&str]) -> BTreeMap<String, XmlMetric> {
        let deadline = Instant::now() + GMOND_WARMUP;
        loop {
            let served = self.metrics();
            let missing: Vec<&str> = names.iter().copied().filter(|n| !served.contains_key(*n)).collect();
            if missing.is_empty() {
                return served;
            }
            assert!(Instant::now() < deadline, "gmond did not serve {missing:?} within {GMOND_WARMUP:?}");
            sleep(Duration::from_millis(500));
        }
    }

    /// Metric `name` once gmond has received it within the last second.
    fn fresh(&self, name: &str) -> XmlMetric {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(metric) = self.metrics().remove(name).filter(|m| m.tn <= 1) {
                return metric;
            }
            assert!(Instant::now() < deadline, "gmond sent no fresh {name} in 30 s");
            sleep(Duration::from_millis(200));
        }
    }

    /// The metrics of gmond's XML right now; empty while it is not listening yet.
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

impl Drop for Gmond {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The stock config on `port`, run in the foreground as the current user, without
/// Debian's `conf.d` (whose optional modules are not gmond's built-ins), plus
/// [`FAST_GROUP`].
fn test_config(port: u16) -> String {
    let stock = STOCK_CONFIG
        .replace(STOCK_PORT, &port.to_string())
        .replace("daemonize = yes", "daemonize = no")
        .replace("setuid = yes", "setuid = no")
        .replace("include ('/etc/ganglia/conf.d/*.conf')", "");
    format!("{stock}\n{FAST_GROUP}")
}

/// A port free for both TCP and UDP on 127.0.0.1 (gmond binds both).
fn free_port() -> u16 {
    for _ in 0..50 {
        let tcp = TcpListener::bind("127.0.0.1:0").expect("bind a TCP port");
        let port = tcp.local_addr().unwrap().port();
        if UdpSocket::bind(("127.0.0.1", port)).is_ok() {
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
            Ok(Event::Start(e)) if e.name().as_ref() == b"METRIC" => current = Some(metric_of(&attributes(&e))),
            Ok(Event::Empty(e)) if e.name().as_ref() == b"METRIC" => {
                let (name, metric) = metric_of(&attributes(&e));
                metrics.insert(name, metric);
            }
            Ok(Event::Empty(e)) if e.name().as_ref() == b"EXTRA_ELEMENT" => {
                let attrs = attributes(&e);
                if let Some((_, metric)) = current.as_mut()
                    && attrs.get("NAME").map(String::as_str) == Some("GROUP")
                {
                    metric.groups.push(attrs.get("VAL").cloned().unwrap_or_default());
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
            (key, a.unescape_value().map(|v| v.into_owned()).unwrap_or_default())
        })
        .collect()
}

fn metric_of(attrs: &BTreeMap<String, String>) -> (String, XmlMetric) {
    let text = |key: &str| attrs.get(key).cloned().unwrap_or_default();
    let number = |key: &str| attrs.get(key).and_then(|v| v.parse().ok()).unwrap_or(u32::MAX);
    let metric = XmlMetric {
        val: text("VAL"),
        ty: text("TYPE"),
        units: text("UNITS"),
        slope: text("SLOPE"),
        tmax: number("TMAX"),
        tn: number("TN"),
        groups: Vec::new(),
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
