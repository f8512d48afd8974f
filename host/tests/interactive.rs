//! Export (issue 14): the real `wasmond run` binary's `interactive_channel` against real
//! gmetad 3.7.2's interactive port. gmetad polls wasmond's XML; both are asked the same
//! paths (`/CLUSTER`, `/CLUSTER/HOST`, `/CLUSTER/HOST/METRIC`, a missing host, and
//! `?filter=summary`) and must show the same hosts, metrics, attributes and extras, and
//! the same summary. Values that move between the two answers (TN, REPORTED, the
//! guest's counters) are not compared.
//!
//! Skipped (with a message) without Ganglia's tools, failed instead under
//! `WASMOND_REQUIRE_INTEROP=1`.

#[path = "support/ganglia.rs"]
mod ganglia;
#[path = "support/gxml.rs"]
mod gxml;

use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpStream};
use std::time::Duration;

use ganglia::{Gmetad, TempDir, require_ganglia, wait_for};
use quick_xml::Reader;
use quick_xml::events::Event;

const CLUSTER: &str = "InteractiveCluster";

/// The guest's metrics, whose values hold still (collected once); the daemon's own
/// accounting metrics (`wasmond_*`) move every 20 s, so they are left out of comparisons.
const GUEST_PREFIX: &str = "e2e_";

struct WasmondRun {
    daemon: ganglia::Daemon,
    xml_addr: SocketAddr,
    interactive_addr: SocketAddr,
    _dir: TempDir,
}

impl WasmondRun {
    /// The example guest (prefix `e2e_`, its metrics collected once so that their
    /// values hold still) on loopback, its XML and interactive port open.
    fn start() -> Option<WasmondRun> {
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
        let (udp_port, xml_port, interactive_port) = (
            ganglia::free_port(),
            ganglia::free_port(),
            ganglia::free_port(),
        );
        let dir = TempDir::new("wasmond-interactive");
        let conf = format!(
            r#"globals {{
  daemonize = no
  setuid = no
  host_dmax = 0
}}
cluster {{
  name = "{CLUSTER}"
  owner = "wasmond tests"
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
interactive_channel {{
  port = {interactive_port}
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
  time_threshold = 3600
  metric {{
    name = "e2e_*"
  }}
}}
"#
        );
        let daemon = ganglia::Daemon::spawn_wasmond(&dir, &conf);
        Some(WasmondRun {
            daemon,
            xml_addr: SocketAddr::from((Ipv4Addr::LOCALHOST, xml_port)),
            interactive_addr: SocketAddr::from((Ipv4Addr::LOCALHOST, interactive_port)),
            _dir: dir,
        })
    }

    /// Sends `line` as written (with no line end added) and reads the whole answer.
    fn ask(&self, line: &str) -> String {
        let mut stream =
            TcpStream::connect_timeout(&self.interactive_addr, Duration::from_secs(2)).unwrap();
        stream
            .set_read_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        stream.write_all(line.as_bytes()).unwrap();
        let mut answer = Vec::new();
        let _ = stream.read_to_end(&mut answer);
        answer.iter().map(|&byte| char::from(byte)).collect()
    }
}

/// A metric's name, its stable attributes, and its extras.
type ComparableMetric = (String, Vec<String>, Vec<String>);

/// What both answers must agree on: per host, per metric, every attribute that does not
/// move with time, and the extras as a set.
fn comparable(xml: &str) -> Vec<(String, Vec<ComparableMetric>)> {
    let document = gxml::parse(xml).unwrap_or_else(|error| panic!("{error}\n{xml}"));
    let mut hosts: Vec<_> = document
        .hosts
        .iter()
        .map(|host| {
            let mut metrics: Vec<_> = host
                .metrics
                .iter()
                .filter(|metric| metric.attr("NAME").starts_with(GUEST_PREFIX))
                .map(|metric| {
                    let mut attrs: Vec<String> = ["TYPE", "UNITS", "SLOPE", "TMAX", "DMAX"]
                        .iter()
                        .map(|key| format!("{key}={}", metric.attr(key)))
                        .collect();
                    if metric.attr("TYPE") == "string" {
                        attrs.push(format!("VAL={}", metric.attr("VAL")));
                    }
                    let mut extras: Vec<String> = metric
                        .extras
                        .iter()
                        .map(|(key, value)| format!("{key}={value}"))
                        .collect();
                    extras.sort();
                    (metric.attr("NAME").to_owned(), attrs, extras)
                })
                .collect();
            metrics.sort();
            (host.attr("NAME").to_owned(), metrics)
        })
        .collect();
    hosts.sort();
    hosts
}

fn guest_metrics(host: &gxml::Host) -> usize {
    host.metrics
        .iter()
        .filter(|metric| metric.attr("NAME").starts_with(GUEST_PREFIX))
        .count()
}

/// The `HOSTS` element and the guest's `METRICS` elements of a summary: each as its
/// sorted attributes, then its extras sorted.
fn summary(xml: &str) -> Vec<String> {
    let mut reader = Reader::from_str(xml);
    let mut found: Vec<(String, Vec<String>)> = Vec::new();
    let mut guest = false;
    loop {
        match reader.read_event().expect("well-formed summary") {
            Event::Start(tag) | Event::Empty(tag) => {
                let name = String::from_utf8_lossy(tag.name().as_ref()).into_owned();
                let mut attrs: Vec<String> = tag
                    .attributes()
                    .map(|attribute| {
                        let attribute = attribute.unwrap();
                        format!(
                            "{}={}",
                            String::from_utf8_lossy(attribute.key.as_ref()),
                            attribute.unescape_value().unwrap()
                        )
                    })
                    .collect();
                attrs.sort();
                match name.as_str() {
                    "HOSTS" => found.push((format!("HOSTS {}", attrs.join(" ")), Vec::new())),
                    "METRICS" => {
                        guest = attrs.iter().any(|a| a.starts_with("NAME=e2e_"));
                        if guest {
                            found.push((format!("METRICS {}", attrs.join(" ")), Vec::new()));
                        }
                    }
                    "EXTRA_ELEMENT" if guest => {
                        if let Some((_, extras)) = found.last_mut() {
                            extras.push(attrs.join(" "));
                        }
                    }
                    _ => {}
                }
            }
            Event::Eof => break,
            _ => {}
        }
    }
    let mut lines: Vec<String> = found
        .into_iter()
        .map(|(element, mut extras)| {
            extras.sort();
            format!("{element} [{}]", extras.join("; "))
        })
        .collect();
    lines.sort();
    lines
}

#[test]
fn interactive_answers_match_real_gmetads() {
    if !require_ganglia("interactive_answers_match_real_gmetads") {
        return;
    }
    let Some(wasmond) = WasmondRun::start() else {
        return;
    };
    let host = wait_for(
        Duration::from_secs(30),
        "the guest's metrics in wasmond's XML",
        || {
            wasmond.daemon.assert_running();
            let xml = ganglia::fetch_xml(wasmond.xml_addr).ok()?;
            let document = gxml::parse(&xml).ok()?;
            let host = document
                .hosts
                .iter()
                .find(|host| guest_metrics(host) == 9)?;
            Some(host.attr("NAME").to_owned())
        },
        || wasmond.daemon.log_text(),
    );
    let gmetad = Gmetad::start(CLUSTER, wasmond.xml_addr, 1);
    let context = || {
        format!(
            "gmetad:\n{}\nwasmond:\n{}",
            gmetad.daemon.log_text(),
            wasmond.daemon.log_text()
        )
    };
    wait_for(
        Duration::from_secs(30),
        "gmetad's answer with our host",
        || {
            let answer = gmetad.query(&format!("/{CLUSTER}/{host}")).ok()?;
            (answer.matches("<METRIC NAME=\"e2e_").count() == 9).then_some(())
        },
        context,
    );

    for path in [
        format!("/{CLUSTER}"),
        format!("/{CLUSTER}/{host}"),
        format!("/{CLUSTER}/{host}/e2e_uint16"),
        format!("/{CLUSTER}/{host}/e2e_string"),
        format!("/{CLUSTER}/no-such-host"),
        format!("/{CLUSTER}/{host}/no_such_metric"),
    ] {
        let theirs = gmetad.query(&path).unwrap();
        let ours = wasmond.ask(&format!("{path}\n"));
        assert_eq!(
            comparable(&ours),
            comparable(&theirs),
            "{path}\nours:\n{ours}\ngmetad's:\n{theirs}"
        );
        assert!(
            ours.contains(&format!("<CLUSTER NAME=\"{CLUSTER}\"")),
            "{ours}"
        );
    }
    let path = format!("/{CLUSTER}/{host}/e2e_uint16");
    assert_eq!(
        comparable(&wasmond.ask(&format!("{path}\n")))[0].1.len(),
        1,
        "one metric"
    );

    // gmetad adds a metric's extras to its cluster summary from its second poll on:
    // compare once it has settled.
    let path = format!("/{CLUSTER}?filter=summary");
    let last = std::cell::RefCell::new((String::new(), String::new()));
    let ours = wait_for(
        Duration::from_secs(20),
        "gmetad's summary to match ours",
        || {
            let theirs = gmetad.query(&path).ok()?;
            let ours = wasmond.ask(&format!("{path}\r\n"));
            let same = summary(&ours) == summary(&theirs);
            *last.borrow_mut() = (ours.clone(), theirs);
            same.then_some(ours)
        },
        || {
            let (ours, theirs) = &*last.borrow();
            format!(
                "ours:\n{:#?}\ngmetad's:\n{:#?}",
                summary(ours),
                summary(theirs)
            )
        },
    );
    let lines = summary(&ours);
    assert_eq!(
        lines.len(),
        1 + 8,
        "HOSTS and the 8 numeric metrics: {lines:#?}"
    );
    assert!(
        lines[0].starts_with("HOSTS DOWN=0 SOURCE=gmetad UP=1"),
        "{lines:#?}"
    );
    assert!(
        lines
            .iter()
            .any(|line| line.starts_with("METRICS NAME=e2e_float ")
                && line.contains("NAME=GROUP VAL=example")),
        "{lines:#?}"
    );
    assert!(!ours.contains("<HOST "), "a summary lists no hosts");

    // Bad requests are closed unanswered, as gmetad closes them.
    for bad in ["no-slash\n", "/a<b\n", "/x?nofilter\n", "\n"] {
        assert_eq!(gmetad.query(bad.trim_end()).unwrap(), "", "gmetad: {bad:?}");
        assert_eq!(wasmond.ask(bad), "", "{bad:?}");
    }
    // A line longer than gmetad's 2048 bytes is refused; a silent client is not served.
    assert_eq!(wasmond.ask(&format!("/{}\n", "a".repeat(4096))), "");
    wasmond.daemon.assert_running();
}
