//! Interop (issue 5): wasmond's XML and packets against real Ganglia 3.7.2 daemons,
//! started by each test on free loopback ports with temporary configs.
//!
//! 1. Real gmetad polls wasmond's XML, serves it back (its interactive port answers the
//!    path `/Cluster/host/metric` with our metric) and writes RRDs for numeric metrics.
//! 2. A real gmond receiving wasmond's packets shows our metrics with the right TYPE,
//!    UNITS, SLOPE and groups in its own XML.
//! 3. wasmond receives real `gmetric` packets of every type and shows them in its XML.
//! 4. wasmond's XML passes `xmllint --valid` against its internal DTD.
//!
//! Most tests run the net layer in-process (a store filled by the test, the server and
//! sender on 127.0.0.1:0); [`the_daemon_with_a_real_guest_talks_to_real_ganglia`] runs
//! the real `wasmond run` binary with the example guest module and checks all four
//! against it. Without Ganglia the tests print that they skipped; with
//! `WASMOND_REQUIRE_INTEROP=1` that is a failure.

#[path = "support/ganglia.rs"]
mod ganglia;
#[path = "support/gxml.rs"]
mod gxml;

use std::net::{Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use std::collections::HashSet;

use ganglia::{Gmetad, Gmond, TempDir, gmetric, require_ganglia, wait_for, xmllint_valid};
use tokio::net::{TcpListener, UdpSocket};
use tokio_util::sync::CancellationToken;
use wasmond::metric::{MetricMeta, MetricValue, OutgoingMetric, Slope, ValueType};
use wasmond::net::NetStats;
use wasmond::net::recv::{self, RecvContext};
use wasmond::net::send::{Identity, SendChannel, SendOptions, Sender};
use wasmond::net::tcp::{self, XmlServerOptions};
use wasmond::store::{ClusterInfo, HostRef, Store, StoreConfig};

const CLUSTER: &str = "WasmondCluster";
const HOST: &str = "wasmond-host";

/// The net layer running in its own tokio runtime, stopped on drop.
struct InProcess {
    runtime: tokio::runtime::Runtime,
    stop: CancellationToken,
    store: Arc<Store>,
    stats: Arc<NetStats>,
    xml_addr: SocketAddr,
}

impl InProcess {
    fn start(store: Arc<Store>) -> InProcess {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        let stop = CancellationToken::new();
        let stats = Arc::new(NetStats::default());
        let listener = runtime
            .block_on(TcpListener::bind((Ipv4Addr::LOCALHOST, 0)))
            .unwrap();
        let xml_addr = listener.local_addr().unwrap();
        runtime.spawn(tcp::run(
            listener,
            Arc::clone(&store),
            XmlServerOptions::default(),
            Arc::clone(&stats),
            stop.clone().cancelled_owned(),
        ));
        InProcess {
            runtime,
            stop,
            store,
            stats,
            xml_addr,
        }
    }
}

impl InProcess {
    /// Opens a receive channel into the store on 127.0.0.1; returns its address.
    fn receive(&self) -> SocketAddr {
        let socket = self
            .runtime
            .block_on(UdpSocket::bind((Ipv4Addr::LOCALHOST, 0)))
            .unwrap();
        let addr = socket.local_addr().unwrap();
        let context = RecvContext {
            store: Arc::clone(&self.store),
            acl: None,
            send_channels: Arc::new([]),
            own_sources: Arc::new(HashSet::new()),
            on_metadata_request: Arc::new(|_: &str| {}),
            stats: Arc::clone(&self.stats),
        };
        self.runtime.spawn(recv::run(
            socket,
            context,
            self.stop.clone().cancelled_owned(),
        ));
        addr
    }

    /// Sends `metrics` to `target` as `identity` through a send channel, as the daemon's
    /// sender does.
    fn send(&self, target: SocketAddr, identity: Identity, metrics: &[OutgoingMetric]) {
        self.runtime.block_on(async {
            let socket = UdpSocket::bind((Ipv4Addr::LOCALHOST, 0)).await.unwrap();
            let channel = SendChannel {
                socket: Arc::new(socket),
                destination: target,
            };
            let options = SendOptions::new(identity, 1464);
            let mut sender = Sender::new(vec![channel].into(), options, Arc::clone(&self.stats));
            sender.send(metrics).await;
        });
    }
}

impl Drop for InProcess {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

fn empty_store() -> Arc<Store> {
    Arc::new(Store::new(StoreConfig {
        cluster: ClusterInfo {
            name: CLUSTER.into(),
            owner: "wasmond tests".into(),
            latlong: "N0 E0".into(),
            url: "http://example.invalid/".into(),
        },
        host_tmax: 20,
        host_dmax: 0,
    }))
}

/// One metric of every type, named after it, with units, a slope and two groups.
fn sample_metrics() -> Vec<(MetricMeta, MetricValue, &'static str)> {
    let values = [
        (MetricValue::String("hello world".into()), "%s", Slope::Zero),
        (MetricValue::Int8(-5), "%d", Slope::Both),
        (MetricValue::UInt8(200), "%u", Slope::Both),
        (MetricValue::Int16(-300), "%d", Slope::Both),
        (MetricValue::UInt16(60000), "%hu", Slope::Both),
        (MetricValue::Int32(-70000), "%d", Slope::Both),
        (MetricValue::UInt32(4_000_000_000), "%u", Slope::Positive),
        (MetricValue::Float(3.25), "%.3f", Slope::Both),
        (MetricValue::Double(1234.5678912), "%.6f", Slope::Both),
    ];
    values
        .into_iter()
        .map(|(value, format, slope)| {
            let value_type = value.value_type();
            let meta = MetricMeta {
                name: metric_name(value_type),
                value_type,
                units: format!("{value_type} units"),
                slope,
                tmax: 60,
                dmax: 0,
                extras: vec![
                    ("TITLE".into(), format!("Wasmond {value_type}")),
                    ("DESC".into(), format!("a {value_type} metric")),
                    ("GROUP".into(), "wasmond_tests".into()),
                    ("GROUP".into(), "second".into()),
                ],
            };
            (meta, value, format)
        })
        .collect()
}

fn metric_name(value_type: ValueType) -> String {
    format!("wasmond_{value_type}")
}

fn fill(store: &Store, metrics: &[(MetricMeta, MetricValue, &'static str)]) {
    let host = HostRef {
        name: HOST,
        ip: "127.0.0.1",
    };
    let now = SystemTime::now();
    for (meta, value, format) in metrics {
        store.update_metadata(host, meta.clone(), now).unwrap();
        store
            .update_value(host, &meta.name, value.clone(), format, now)
            .unwrap();
    }
}

/// (1) A real gmetad polls our XML, serves it back on both its ports, and keeps an RRD
/// for every numeric metric (and none for the string).
#[test]
fn gmetad_polls_our_xml_and_keeps_rrds() {
    if !require_ganglia("gmetad_polls_our_xml_and_keeps_rrds") {
        return;
    }
    let metrics = sample_metrics();
    let net = InProcess::start(empty_store());
    fill(&net.store, &metrics);
    let gmetad = Gmetad::start(CLUSTER, net.xml_addr, 1);
    let log = || gmetad.daemon.log_text();

    let host_dir = gmetad.rrd_dir.join(CLUSTER).join(HOST);
    for (meta, ..) in metrics
        .iter()
        .filter(|(meta, ..)| meta.value_type.is_numeric())
    {
        let rrd = host_dir.join(format!("{}.rrd", meta.name));
        wait_for(
            Duration::from_secs(30),
            &format!("{}", rrd.display()),
            || rrd.exists().then_some(()),
            log,
        );
    }
    assert!(
        !host_dir.join("wasmond_string.rrd").exists(),
        "no RRD for a string metric"
    );
    assert!(!log().contains("XML_ParseBuffer() error"), "{}", log());

    let path = format!("/{CLUSTER}/{HOST}/wasmond_uint32");
    let answer = wait_for(
        Duration::from_secs(10),
        &format!("gmetad's answer to {path}"),
        || {
            gmetad
                .query(&path)
                .ok()
                .filter(|xml| xml.contains("<METRIC"))
        },
        log,
    );
    let grid = gxml::parse(&answer).unwrap_or_else(|error| panic!("{error}\n{answer}"));
    let host = grid
        .host(HOST)
        .unwrap_or_else(|| panic!("no host in\n{answer}"));
    assert_eq!(
        host.metrics.len(),
        1,
        "the path selects one metric:\n{answer}"
    );
    let metric = host.metric("wasmond_uint32").unwrap();
    assert_eq!(metric.attr("VAL"), "4000000000");
    assert_eq!(metric.attr("TYPE"), "uint32");
    assert_eq!(metric.attr("UNITS"), "uint32 units");
    assert_eq!(metric.attr("SLOPE"), "positive");

    // The full grid on the XML port carries every metric, the string included.
    let full = ganglia::fetch_xml(gmetad.xml_addr()).unwrap();
    let grid = gxml::parse(&full).unwrap_or_else(|error| panic!("{error}\n{full}"));
    let host = grid.host(HOST).unwrap();
    for (meta, ..) in &metrics {
        assert!(
            host.metric(&meta.name).is_some(),
            "{} missing from gmetad:\n{full}",
            meta.name
        );
    }
    assert_eq!(
        host.metric("wasmond_string").unwrap().attr("VAL"),
        "hello world"
    );
    assert!(net.stats.xml_served.get() >= 1);
}

/// (4) Our document, with every type and characters that need escaping, is valid
/// against the DTD it carries.
#[test]
fn our_xml_is_valid_against_its_dtd() {
    if !require_ganglia("our_xml_is_valid_against_its_dtd") {
        return;
    }
    let net = InProcess::start(empty_store());
    let mut metrics = sample_metrics();
    // gmetad writes string values back unescaped (reference LAYOUT.md §3), so the
    // characters that need escaping are only tried here, on our own document.
    metrics[0].1 = MetricValue::String("a<b>&c'd\"e".into());
    let (awkward, ..) = &mut metrics[1];
    awkward.units = "u<&>\"'".into();
    awkward
        .extras
        .push(("DESC".into(), "desc <&> \"q\" é".into()));
    fill(&net.store, &metrics);
    let xml = ganglia::fetch_xml(net.xml_addr).unwrap();
    let dir = TempDir::new("xmllint");
    if let Err(complaints) = xmllint_valid(&dir, &xml) {
        panic!("xmllint --valid rejected our XML:\n{complaints}\n{xml}");
    }
    let grid = gxml::parse(&xml).unwrap();
    let metric = grid.host(HOST).unwrap().metric("wasmond_int8").unwrap();
    assert_eq!(metric.attr("UNITS"), "u<&>\"'");
    let string = grid.host(HOST).unwrap().metric("wasmond_string").unwrap();
    assert_eq!(string.attr("VAL"), "a<b>&c'd\"e");
}

/// The metrics of [`sample_metrics`] as the scheduler hands them to the sender at start.
fn outgoing(metrics: &[(MetricMeta, MetricValue, &'static str)]) -> Vec<OutgoingMetric> {
    metrics
        .iter()
        .map(|(meta, value, format)| OutgoingMetric {
            metadata: Some(Arc::new(meta.clone())),
            name: meta.name.as_str().into(),
            value: value.clone(),
            format: (*format).into(),
        })
        .collect()
}

/// (2) A real gmond receiving our datagrams shows every metric with our TYPE, UNITS,
/// SLOPE, groups, DESC and TITLE, under the host it names us by; a spoofed sender shows
/// as the host it claims.
#[test]
fn real_gmond_shows_what_we_send() {
    if !require_ganglia("real_gmond_shows_what_we_send") {
        return;
    }
    let gmond = Gmond::start(CLUSTER, "");
    let net = InProcess::start(empty_store());
    let metrics = sample_metrics();
    net.send(
        gmond.addr(),
        Identity::new("vm", None, None),
        &outgoing(&metrics),
    );
    net.send(
        gmond.addr(),
        Identity::new("vm", Some("web7"), Some("10.9.8.7")),
        &outgoing(&metrics[..1]),
    );

    let xml = wait_for(
        Duration::from_secs(10),
        "our metrics in gmond's XML",
        || {
            let xml = gmond.xml();
            let grid = gxml::parse(&xml).ok()?;
            // The spoofed host shows with its metadata; its metric only once the value
            // packet that follows has arrived too.
            let complete = grid.host("localhost")?.metrics.len() == metrics.len()
                && grid.host("web7")?.metric("wasmond_string").is_some();
            complete.then_some(xml)
        },
        || gmond.daemon.log_text(),
    );
    let grid = gxml::parse(&xml).unwrap();
    let host = grid.host("localhost").unwrap();
    assert_eq!(host.attr("IP"), "127.0.0.1");
    for (meta, _, _) in &metrics {
        let metric = host
            .metric(&meta.name)
            .unwrap_or_else(|| panic!("{} missing:\n{xml}", meta.name));
        assert_eq!(
            metric.attr("TYPE"),
            meta.value_type.gmond_name(),
            "{}",
            meta.name
        );
        assert_eq!(metric.attr("UNITS"), meta.units, "{}", meta.name);
        assert_eq!(
            metric.attr("SLOPE"),
            meta.slope.gmond_name(),
            "{}",
            meta.name
        );
        assert_eq!(metric.attr("TMAX"), "60");
        // gmond lists extras in reverse wire order.
        assert_eq!(
            metric.extra("GROUP"),
            ["second", "wasmond_tests"],
            "{}",
            meta.name
        );
        assert_eq!(
            metric.extra("DESC"),
            [format!("a {} metric", meta.value_type)]
        );
        assert_eq!(
            metric.extra("TITLE"),
            [format!("Wasmond {}", meta.value_type)]
        );
    }
    let val = |name: &str| host.metric(name).unwrap().attr("VAL").to_owned();
    assert_eq!(val("wasmond_string"), "hello world");
    assert_eq!(val("wasmond_int8"), "-5");
    assert_eq!(val("wasmond_uint8"), "200");
    assert_eq!(val("wasmond_int16"), "-300");
    assert_eq!(val("wasmond_uint16"), "60000");
    assert_eq!(val("wasmond_int32"), "-70000");
    assert_eq!(val("wasmond_uint32"), "4000000000");
    assert_eq!(val("wasmond_float"), "3.250");
    assert_eq!(val("wasmond_double"), "1234.567891");
    let spoofed = grid.host("web7").unwrap();
    assert_eq!(spoofed.attr("IP"), "10.9.8.7");
    assert!(spoofed.metric("wasmond_string").is_some());
}

/// 10 000 metrics (20 000 datagrams: metadata and value each) sent at once to a real
/// gmond with its default receive buffer: every one shows in its XML.
#[test]
fn real_gmond_loses_none_of_ten_thousand_metrics() {
    if !require_ganglia("real_gmond_loses_none_of_ten_thousand_metrics") {
        return;
    }
    const METRICS: usize = 10_000;
    let gmond = Gmond::start(CLUSTER, "");
    let net = InProcess::start(empty_store());
    let metrics: Vec<OutgoingMetric> = (0..METRICS)
        .map(|i| {
            let name = format!("bulk_{i:05}");
            let meta = MetricMeta {
                name: name.clone(),
                value_type: ValueType::UInt32,
                units: "n".into(),
                slope: Slope::Both,
                tmax: 60,
                dmax: 0,
                extras: vec![("GROUP".into(), "bulk".into())],
            };
            OutgoingMetric {
                metadata: Some(Arc::new(meta)),
                name: name.into(),
                value: MetricValue::UInt32(i as u32),
                format: "%u".into(),
            }
        })
        .collect();
    let started = std::time::Instant::now();
    net.send(gmond.addr(), Identity::new("vm", None, None), &metrics);
    let elapsed = started.elapsed();
    eprintln!("sent {} datagrams in {elapsed:?}", 2 * METRICS);
    let shown = wait_for(
        Duration::from_secs(20),
        "10 000 metrics in gmond's XML",
        || {
            let grid = gxml::parse(&gmond.xml()).ok()?;
            let count = grid.host("localhost")?.metrics.len();
            (count == METRICS).then_some(count)
        },
        || {
            let count = gxml::parse(&gmond.xml())
                .ok()
                .and_then(|grid| grid.host("localhost").map(|host| host.metrics.len()));
            format!("gmond shows {count:?} metrics")
        },
    );
    assert_eq!(shown, METRICS);
    assert_eq!(net.stats.packets_sent.get(), 2 * METRICS as u64);
}

/// (3) Real gmetric packets of every type, spoofed ones included, show in our XML with
/// the TYPE, UNITS, SLOPE, VAL and extras gmetric was given.
#[test]
fn we_show_real_gmetric_packets_of_every_type() {
    if !require_ganglia("we_show_real_gmetric_packets_of_every_type") {
        return;
    }
    let net = InProcess::start(empty_store());
    let target = net.receive();
    let dir = TempDir::new("gmetric");
    let cases = [
        ("string", "some text", "both"),
        ("int8", "-5", "both"),
        ("uint8", "250", "zero"),
        ("int16", "-1234", "negative"),
        ("uint16", "65000", "positive"),
        ("int32", "-123456", "both"),
        ("uint32", "4000000000", "positive"),
        ("float", "3.5", "both"),
        ("double", "1234567.890123", "both"),
    ];
    for (ty, value, slope) in cases {
        let name = format!("gm_{ty}");
        let units = format!("{ty}_units");
        let desc = format!("{ty} metric");
        gmetric(
            &dir,
            target,
            &[
                "-n",
                &name,
                "-v",
                value,
                "-t",
                ty,
                "-u",
                &units,
                "-s",
                slope,
                "-x",
                "60",
                "-d",
                "0",
                "-g",
                "gmgroup",
                "-D",
                &desc,
                "-T",
                &format!("Title {ty}"),
            ],
        );
    }
    gmetric(
        &dir,
        target,
        &[
            "-n",
            "spoofed",
            "-v",
            "1",
            "-t",
            "uint32",
            "-S",
            "10.1.2.3:spoofhost",
        ],
    );

    let xml = wait_for(
        Duration::from_secs(10),
        "gmetric's metrics in our XML",
        || {
            let xml = ganglia::fetch_xml(net.xml_addr).ok()?;
            let grid = gxml::parse(&xml).ok()?;
            let complete = grid.host("localhost")?.metrics.len() == cases.len()
                && grid.host("spoofhost")?.metric("spoofed").is_some();
            complete.then_some(xml)
        },
        || format!("{:?}", ganglia::fetch_xml(net.xml_addr)),
    );
    let grid = gxml::parse(&xml).unwrap();
    let host = grid.host("localhost").unwrap();
    let now = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let reported: u64 = host.attr("REPORTED").parse().unwrap();
    assert!(
        reported.abs_diff(now) <= 5,
        "REPORTED {reported}, now {now}"
    );
    assert!(host.attr("TN").parse::<u64>().unwrap() <= 5);
    assert_eq!(
        (host.attr("IP"), host.attr("TMAX"), host.attr("DMAX")),
        ("127.0.0.1", "20", "0")
    );
    for (ty, value, slope) in cases {
        let metric = host.metric(&format!("gm_{ty}")).unwrap();
        assert_eq!(metric.attr("TYPE"), ty);
        assert_eq!(
            metric.attr("VAL"),
            value,
            "gmetric sends the value as typed"
        );
        assert_eq!(metric.attr("UNITS"), format!("{ty}_units"));
        assert_eq!(metric.attr("SLOPE"), slope);
        assert_eq!((metric.attr("TMAX"), metric.attr("DMAX")), ("60", "0"));
        assert_eq!(metric.extra("GROUP"), ["gmgroup"]);
        assert_eq!(metric.extra("DESC"), [format!("{ty} metric")]);
        assert_eq!(metric.extra("TITLE"), [format!("Title {ty}")]);
    }
    let spoofed = grid.host("spoofhost").unwrap();
    assert_eq!(spoofed.attr("IP"), "10.1.2.3");
    assert_eq!(spoofed.metric("spoofed").unwrap().attr("VAL"), "1");
    assert_eq!(net.stats.packets_malformed.get(), 0);
    let dir = TempDir::new("xmllint");
    xmllint_valid(&dir, &xml).unwrap_or_else(|complaints| panic!("{complaints}\n{xml}"));
}

/// The example guest's metric types, in its order.
const GUEST_TYPES: [&str; 9] = [
    "string", "int8", "uint8", "int16", "uint16", "int32", "uint32", "float", "double",
];

/// The real `wasmond run` binary on loopback: the example guest's metrics (prefixed
/// `e2e_`, collected every 2 s) and its heartbeat sent to `peer` and to its own receive
/// channel, its XML on `xml_addr`.
struct WasmondRun {
    daemon: ganglia::Daemon,
    xml_addr: SocketAddr,
    udp_addr: SocketAddr,
    dir: TempDir,
}

impl WasmondRun {
    /// `None` (after saying so) when the example guest was not built and toolchains are
    /// not required.
    fn start(peer: u16) -> Option<WasmondRun> {
        let guest = wasmond_test_guests::EXAMPLE;
        if !std::path::Path::new(guest).exists() {
            let message = format!("the example guest was not built ({guest})");
            assert!(
                std::env::var("WASMOND_REQUIRE_TOOLCHAINS").as_deref() != Ok("1"),
                "{message}"
            );
            eprintln!("skipped: {message}");
            return None;
        }
        let (udp_port, xml_port) = (ganglia::free_port(), ganglia::free_port());
        let dir = TempDir::new("wasmond-run");
        let conf = format!(
            r#"globals {{
  daemonize = no
  setuid = no
  host_dmax = 0
  send_metadata_interval = 0
}}
cluster {{
  name = "{CLUSTER}"
  owner = "wasmond tests"
}}
udp_send_channel {{
  host = 127.0.0.1
  port = {peer}
}}
udp_send_channel {{
  host = 127.0.0.1
  port = {udp_port}
}}
udp_recv_channel {{
  port = {udp_port}
  bind = 127.0.0.1
}}
tcp_accept_channel {{
  port = {xml_port}
  bind = 127.0.0.1
}}
modules {{
  module {{
    name = "example"
    language = "wasm"
    path = "{guest}"
    param prefix {{
      value = "e2e_"
    }}
  }}
}}
collection_group {{
  collect_once = yes
  time_threshold = 20
  metric {{
    name = "heartbeat"
  }}
}}
collection_group {{
  collect_every = 2
  time_threshold = 4
  metric {{
    name_match = "e2e_(.*)"
    title = "E2E \\1"
  }}
}}
"#
        );
        let daemon = ganglia::Daemon::spawn_wasmond(&dir, &conf);
        Some(WasmondRun {
            daemon,
            xml_addr: SocketAddr::from((Ipv4Addr::LOCALHOST, xml_port)),
            udp_addr: SocketAddr::from((Ipv4Addr::LOCALHOST, udp_port)),
            dir,
        })
    }

    fn stop(&self) {
        let status = self
            .daemon
            .terminate(Duration::from_secs(15))
            .expect("wasmond stops on SIGTERM");
        assert!(
            status.success(),
            "wasmond exited with {status}:\n{}",
            self.daemon.log_text()
        );
    }
}

/// How many of the guest's metrics the document's fullest host shows.
fn guest_metrics_in(xml: &str) -> Option<usize> {
    let grid = gxml::parse(xml).ok()?;
    grid.hosts
        .iter()
        .map(|host| {
            host.metrics
                .iter()
                .filter(|metric| metric.attr("NAME").starts_with("e2e_"))
                .count()
        })
        .max()
}

/// The real `wasmond run` with the example guest (one metric of every type): its XML
/// holds the guest's metrics (and what real gmetric sent it) and is DTD-valid, real gstat
/// lists its host, a real gmond shows what it sends, a real gmetad keeps RRDs of it, and
/// SIGTERM stops it.
#[test]
fn the_daemon_with_a_real_guest_talks_to_real_ganglia() {
    if !require_ganglia("the_daemon_with_a_real_guest_talks_to_real_ganglia") {
        return;
    }
    let gmond = Gmond::start(CLUSTER, "");
    let Some(wasmond) = WasmondRun::start(gmond.port) else {
        return;
    };

    // Our own XML: every guest metric, with the group and the name_match title.
    let ours = wait_for(
        Duration::from_secs(30),
        "the guest's metrics in wasmond's XML",
        || {
            wasmond.daemon.assert_running();
            let xml = ganglia::fetch_xml(wasmond.xml_addr).ok()?;
            (guest_metrics_in(&xml)? == GUEST_TYPES.len()).then_some(xml)
        },
        || wasmond.daemon.log_text(),
    );
    let grid = gxml::parse(&ours).unwrap();
    let host = grid
        .hosts
        .iter()
        .find(|host| host.metric("e2e_int8").is_some())
        .unwrap();
    let our_host_name = host.attr("NAME").to_owned();
    for ty in GUEST_TYPES {
        let metric = host.metric(&format!("e2e_{ty}")).unwrap();
        assert_eq!(metric.attr("TYPE"), ty);
        assert_eq!(metric.extra("GROUP"), ["example"]);
        assert_eq!(metric.extra("TITLE"), [format!("E2E {ty}")]);
    }
    let lint = TempDir::new("xmllint-run");
    xmllint_valid(&lint, &ours).unwrap_or_else(|complaints| panic!("{complaints}\n{ours}"));

    // Real gstat reads the same XML and counts our host up.
    let listing = ganglia::gstat(wasmond.xml_addr);
    assert!(listing.contains(&format!("Name: {CLUSTER}")), "{listing}");
    assert!(listing.contains("Dead Hosts: 0"), "{listing}");
    let host_line = listing
        .lines()
        .find(|line| line.starts_with(&format!("{our_host_name} ")));
    assert!(host_line.is_some(), "our host is listed:\n{listing}");

    // What real gmetric sends to wasmond's receive channel shows in its XML too.
    gmetric(
        &wasmond.dir,
        wasmond.udp_addr,
        &[
            "-n",
            "from_gmetric",
            "-v",
            "42",
            "-t",
            "uint16",
            "-u",
            "things",
        ],
    );
    wait_for(
        Duration::from_secs(10),
        "gmetric's metric in wasmond's XML",
        || {
            let xml = ganglia::fetch_xml(wasmond.xml_addr).ok()?;
            let grid = gxml::parse(&xml).ok()?;
            let metric = grid
                .hosts
                .iter()
                .find_map(|host| host.metric("from_gmetric"))?;
            (metric.attr("VAL") == "42" && metric.attr("TYPE") == "uint16").then_some(())
        },
        || wasmond.daemon.log_text(),
    );

    // A real gmond receiving wasmond's datagrams shows the same metrics.
    let theirs = wait_for(
        Duration::from_secs(30),
        "the guest's metrics in gmond's XML",
        || {
            let xml = gmond.xml();
            (guest_metrics_in(&xml)? == GUEST_TYPES.len()).then_some(xml)
        },
        || format!("{}\n{}", gmond.daemon.log_text(), wasmond.daemon.log_text()),
    );
    let grid = gxml::parse(&theirs).unwrap();
    let host = grid
        .host("localhost")
        .expect("gmond names 127.0.0.1 localhost");
    for ty in GUEST_TYPES {
        let metric = host.metric(&format!("e2e_{ty}")).unwrap();
        assert_eq!(metric.attr("TYPE"), ty);
        assert_eq!(
            metric.attr("SLOPE"),
            if ty == "string" { "zero" } else { "both" }
        );
        assert_eq!(metric.extra("GROUP"), ["example"]);
    }
    assert!(
        host.attr("GMOND_STARTED") != "0",
        "our heartbeat reached gmond"
    );

    // A real gmetad polling wasmond keeps RRDs of the guest's numeric metrics.
    let gmetad = Gmetad::start(CLUSTER, wasmond.xml_addr, 1);
    let rrd = gmetad
        .rrd_dir
        .join(CLUSTER)
        .join(&our_host_name)
        .join("e2e_uint32.rrd");
    wait_for(
        Duration::from_secs(30),
        "gmetad's RRD of e2e_uint32",
        || rrd.exists().then_some(()),
        || gmetad.daemon.log_text(),
    );
    let path = format!("/{CLUSTER}/{our_host_name}/e2e_double");
    let answer = wait_for(
        Duration::from_secs(10),
        &format!("gmetad's answer to {path}"),
        || {
            gmetad
                .query(&path)
                .ok()
                .filter(|xml| xml.contains("NAME=\"e2e_double\""))
        },
        || gmetad.daemon.log_text(),
    );
    assert!(answer.contains("TYPE=\"double\""), "{answer}");
    wasmond.stop();
}

/// A real gmond that missed wasmond's metadata (it started after wasmond's first send,
/// and `send_metadata_interval = 0` never repeats it) asks for it with id-136 requests;
/// the daemon answers them as gmond would, and the metrics then show in gmond's XML.
#[test]
fn the_daemon_answers_a_real_gmonds_metadata_requests() {
    if !require_ganglia("the_daemon_answers_a_real_gmonds_metadata_requests") {
        return;
    }
    let gmond_port = ganglia::free_port();
    let Some(wasmond) = WasmondRun::start(gmond_port) else {
        return;
    };
    // wasmond's first send (metadata and values) goes to a port where no one listens.
    wait_for(
        Duration::from_secs(30),
        "wasmond's first send",
        || {
            wasmond.daemon.assert_running();
            let xml = ganglia::fetch_xml(wasmond.xml_addr).ok()?;
            (guest_metrics_in(&xml)? == GUEST_TYPES.len()).then_some(())
        },
        || wasmond.daemon.log_text(),
    );
    let gmond = Gmond::start_asking(CLUSTER, gmond_port, wasmond.udp_addr);
    let theirs = wait_for(
        Duration::from_secs(30),
        "the guest's metrics in gmond's XML after its metadata requests",
        || {
            let xml = gmond.xml();
            (guest_metrics_in(&xml)? == GUEST_TYPES.len()).then_some(xml)
        },
        || format!("{}\n{}", gmond.daemon.log_text(), wasmond.daemon.log_text()),
    );
    let grid = gxml::parse(&theirs).unwrap();
    let metric = grid.host("localhost").unwrap().metric("e2e_float").unwrap();
    assert_eq!(
        (metric.attr("TYPE"), metric.attr("UNITS")),
        ("float", "ratio")
    );
    wasmond.stop();
}
