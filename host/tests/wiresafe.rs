//! Issue 16 (items 3, 4, 6) and issue 12's receive channel, end to end with the real
//! `wasmond run` binary: what it sends a real gmond 3.7.2 never breaks it, what other
//! senders send is checked and counted, a flood of senders cannot starve the host, and
//! the daemon drops root and Landlocks itself.

#[path = "support/ganglia.rs"]
mod ganglia;
#[path = "support/gxml.rs"]
mod gxml;

use std::net::{Ipv4Addr, SocketAddr};
use std::path::Path;
use std::time::Duration;

use ganglia::{Daemon, Gmond, TempDir, require_ganglia, wait_for, xmllint_valid};
use wasmond::metric::{MetricValue, Slope, ValueType};
use wasmond::wire::xdr;
use wasmond_test_guests as guests;

const CLUSTER: &str = "WireSafe";

/// The real `wasmond run` on loopback, with a config made of `body` plus a receive
/// channel and an XML channel of its own.
struct Wasmond {
    daemon: Daemon,
    xml_addr: SocketAddr,
    udp_addr: SocketAddr,
    dir: TempDir,
}

impl Wasmond {
    fn start(label: &str, body: &str) -> Wasmond {
        Wasmond::start_with(label, "setuid = no", body)
    }

    /// [`start`](Self::start), with `privileges` (`setuid`, `user`) in `globals`.
    fn start_with(label: &str, privileges: &str, body: &str) -> Wasmond {
        let (udp_port, xml_port) = (ganglia::free_port(), ganglia::free_port());
        let dir = TempDir::new(label);
        let conf = format!(
            r#"globals {{
  daemonize = no
  {privileges}
  host_dmax = 0
  send_metadata_interval = 0
}}
cluster {{
  name = "{CLUSTER}"
  owner = "wasmond tests"
}}
udp_recv_channel {{
  port = {udp_port}
  bind = 127.0.0.1
}}
tcp_accept_channel {{
  port = {xml_port}
  bind = 127.0.0.1
}}
{body}
"#
        );
        let daemon = Daemon::spawn_wasmond(&dir, &conf);
        Wasmond {
            daemon,
            xml_addr: SocketAddr::from((Ipv4Addr::LOCALHOST, xml_port)),
            udp_addr: SocketAddr::from((Ipv4Addr::LOCALHOST, udp_port)),
            dir,
        }
    }

    fn xml(&self) -> Option<String> {
        self.daemon.assert_running();
        ganglia::fetch_xml(self.xml_addr).ok()
    }
}

/// Whether the guest modules were built; says so when they were not.
fn hostile_guest_built() -> bool {
    let built = Path::new(guests::HOSTILE).exists();
    if !built {
        let message = format!("the hostile guest was not built ({})", guests::HOSTILE);
        assert!(
            std::env::var("WASMOND_REQUIRE_TOOLCHAINS").as_deref() != Ok("1"),
            "{message}"
        );
        eprintln!("skipped: {message}");
    }
    built
}

/// The `wire_*` metrics the hostile guest declares (and `Location`, never sent).
const WIRE_METRICS: [&str; 9] = [
    "wire_s4",
    "wire_n",
    "wire_fn",
    "wire_sd",
    "wire_wide",
    "wire_literal",
    "wire_text",
    "wire_long",
    "wire_extras",
];

fn wire_metrics_in(xml: &str) -> Option<usize> {
    let grid = gxml::parse(xml).ok()?;
    grid.hosts
        .iter()
        .map(|host| {
            host.metrics
                .iter()
                .filter(|metric| WIRE_METRICS.contains(&metric.attr("NAME")))
                .count()
        })
        .max()
}

/// Issue 16 item 4: a hostile module's formats (`%s%s%s%s`, `%n`, `%.3f%n`, `%s` for a
/// number, huge widths, literal `<&"`), its units, descriptions, groups and extras full
/// of `<>&"'`, control characters and non-ASCII, over-long strings and a `Location`
/// double: a real gmond 3.7.2 receiving what wasmond sends stays up, and its XML is
/// well-formed and valid, showing the values as the safe formats render them.
#[test]
fn a_real_gmond_survives_a_hostile_modules_metadata() {
    if !require_ganglia("a_real_gmond_survives_a_hostile_modules_metadata")
        || !hostile_guest_built()
    {
        return;
    }
    let gmond = Gmond::start(CLUSTER, "");
    let body = format!(
        r#"udp_send_channel {{
  host = 127.0.0.1
  port = {}
}}
modules {{
  module {{
    name = "hostile"
    language = "wasm"
    path = "{}"
    param attack {{
      value = "wire"
    }}
  }}
}}
collection_group {{
  collect_every = 1
  time_threshold = 2
  metric {{
    name_match = "^(wire_.*|Location)$"
    title = "Title <&\"> \\1"
  }}
}}
"#,
        gmond.port,
        guests::HOSTILE
    );
    let wasmond = Wasmond::start("wire", &body);
    let theirs = wait_for(
        Duration::from_secs(30),
        "the hostile metrics in gmond's XML",
        || {
            gmond.daemon.assert_running();
            let xml = gmond.xml();
            (wire_metrics_in(&xml)? == WIRE_METRICS.len()).then_some(xml)
        },
        || format!("{}\n{}", gmond.daemon.log_text(), wasmond.daemon.log_text()),
    );
    // Several more sends (values every second, metadata again on request): still up.
    std::thread::sleep(Duration::from_secs(3));
    gmond.daemon.assert_running();
    let lint = TempDir::new("wire-lint");
    xmllint_valid(&lint, &theirs).unwrap_or_else(|complaints| panic!("{complaints}\n{theirs}"));
    let later = gmond.xml();
    xmllint_valid(&lint, &later).unwrap_or_else(|complaints| panic!("{complaints}\n{later}"));

    let grid = gxml::parse(&later).unwrap();
    let host = grid
        .host("localhost")
        .expect("gmond names 127.0.0.1 localhost");
    let val = |name: &str| host.metric(name).unwrap().attr("VAL").to_owned();
    assert_eq!(val("wire_s4"), "1.500000", "%s%s%s%s became %f");
    assert_eq!(val("wire_n"), "-7", "%n became %d");
    assert_eq!(val("wire_fn"), "2.500000", "%.3f%n became %f");
    assert_eq!(val("wire_sd"), "7", "%s for a uint32 became %u");
    assert_eq!(val("wire_wide"), "1.500000", "a 1000-wide format became %f");
    assert_eq!(val("wire_literal"), "?1.500000???");
    let hostile_text = "a?b??c?d?e?f?[31mg?h?";
    assert_eq!(val("wire_text"), hostile_text);
    assert_eq!(
        val("wire_long").len(),
        256,
        "string values are cut to 256 bytes"
    );
    let text = host.metric("wire_text").unwrap();
    assert_eq!(text.attr("UNITS"), hostile_text);
    assert_eq!(text.extra("DESC"), [hostile_text]);
    assert_eq!(text.extra("GROUP"), [hostile_text]);
    assert_eq!(text.extra(hostile_text), [hostile_text]);
    assert_eq!(text.extra("TITLE"), ["Title ???? wire_text"]);
    let long = host.metric("wire_long").unwrap();
    assert_eq!(long.attr("UNITS").len(), 64);
    assert_eq!(long.extra("DESC")[0].len(), 256);
    let extras = host.metric("wire_extras").unwrap();
    assert!(extras.extra("k29").len() == 1 && extras.extra("k30").is_empty());
    assert_eq!(
        host.attr("LOCATION"),
        "unspecified",
        "Location (a double) was not sent"
    );
    assert!(
        wasmond
            .daemon
            .log_text()
            .contains("metric Location: not sent: gmond reads any 'location' value as a string"),
        "{}",
        wasmond.daemon.log_text()
    );
    // wasmond's own XML shows the same, and is valid.
    let ours = wasmond.xml().unwrap();
    xmllint_valid(&lint, &ours).unwrap_or_else(|complaints| panic!("{complaints}\n{ours}"));
    assert!(ours.contains("VAL=\"?1.500000???\""), "{ours}");
    let _ = wasmond.dir.path();
}

/// A collection group that publishes the network counters every second.
const NET_COUNTERS_GROUP: &str = r#"collection_group {
  collect_every = 1
  time_threshold = 1
  metric {
    name_match = "^wasmond_udp_"
  }
}
"#;

fn encoded(message: &xdr::Message) -> Vec<u8> {
    let mut out = Vec::new();
    xdr::encode(message, &mut out).unwrap();
    out
}

/// gmetric's two datagrams for one metric: metadata with `value_type`, then the value as
/// a string (gmetric sends every value as a string), from `host` (spoofed when it reads
/// `IP:name`).
fn gmetric_packets(host: &str, name: &str, value_type: ValueType, value: &str) -> [Vec<u8>; 2] {
    let header = xdr::Header {
        host: host.into(),
        name: name.into(),
        spoof: host.contains(':'),
    };
    let metadata = xdr::Message::Metadata(xdr::Metadata {
        header: header.clone(),
        value_type,
        units: "things".into(),
        slope: Slope::Both,
        tmax: 60,
        dmax: 0,
        extras: vec![("GROUP".into(), "flood".into())],
    });
    let value = xdr::Message::Value(xdr::Value {
        header,
        format: "%s".into(),
        value: MetricValue::String(value.into()),
    });
    [encoded(&metadata), encoded(&value)]
}

/// The value of one of the host's `wasmond` metrics in `xml`, as a number.
fn counter(xml: &str, name: &str) -> Option<f64> {
    let grid = gxml::parse(xml).ok()?;
    grid.hosts
        .iter()
        .find_map(|host| host.metric(name))?
        .attr("VAL")
        .parse()
        .ok()
}

/// Issue 12: a value that does not read as its metadata's type
/// (`VAL="not-a-number" TYPE="int32"`) is refused and counted, and the receive channel's
/// counters are published in the host's `wasmond` group.
#[test]
fn mistyped_values_are_refused_and_counted() {
    let wasmond = Wasmond::start("mistyped", NET_COUNTERS_GROUP);
    let sender = std::net::UdpSocket::bind((Ipv4Addr::LOCALHOST, 0)).unwrap();
    wait_for(
        Duration::from_secs(30),
        "wasmond's XML",
        || {
            wasmond
                .xml()
                .filter(|xml| xml.contains("wasmond_udp_received"))
        },
        || wasmond.daemon.log_text(),
    );
    for packet in gmetric_packets("vm", "typed", ValueType::Int32, "42")
        .into_iter()
        .chain(gmetric_packets(
            "vm",
            "mistyped",
            ValueType::Int32,
            "not-a-number",
        ))
        .chain(gmetric_packets(
            "vm",
            "float_text",
            ValueType::Double,
            "1.5e3x",
        ))
    {
        sender.send_to(&packet, wasmond.udp_addr).unwrap();
    }
    sender
        .send_to(b"\x00\x00\x00\x85garbage", wasmond.udp_addr)
        .unwrap();
    let xml = wait_for(
        Duration::from_secs(30),
        "the counters to show the refused values",
        || {
            let xml = wasmond.xml()?;
            let refused = counter(&xml, "wasmond_udp_refused")?;
            let malformed = counter(&xml, "wasmond_udp_malformed")?;
            (xml.contains("NAME=\"typed\"") && refused >= 2.0 && malformed >= 1.0).then_some(xml)
        },
        || wasmond.daemon.log_text(),
    );
    let grid = gxml::parse(&xml).unwrap();
    let typed = grid.hosts.iter().find_map(|h| h.metric("typed")).unwrap();
    assert_eq!((typed.attr("VAL"), typed.attr("TYPE")), ("42", "int32"));
    assert!(!xml.contains("not-a-number"), "{xml}");
    assert!(!xml.contains("1.5e3x"), "{xml}");
    assert_eq!(counter(&xml, "wasmond_udp_refused"), Some(2.0));
    assert!(counter(&xml, "wasmond_udp_received").unwrap() >= 4.0);
    let refused = grid
        .hosts
        .iter()
        .find_map(|h| h.metric("wasmond_udp_refused"))
        .unwrap();
    assert_eq!(refused.extra("GROUP"), ["wasmond"]);
    for name in [
        "wasmond_udp_kernel_drops",
        "wasmond_udp_over_quota",
        "wasmond_udp_sent",
    ] {
        assert!(counter(&xml, name).is_some(), "{name} is published");
    }
}

/// Issue 16 item 6: a flood of gmetric packets for 10 000 spoofed hosts from one source
/// address fills only that sender's share of the store (counted as over quota), and a
/// module added afterwards by SIGHUP still publishes all its metrics.
#[test]
fn a_flood_of_spoofed_hosts_cannot_starve_the_host() {
    if !hostile_guest_built() {
        return;
    }
    // A module from the guests' directory from the start: Landlock allows reading the
    // directories the configuration uses when the daemon starts.
    let early = format!(
        "{NET_COUNTERS_GROUP}modules {{\n  module {{\n    name = \"early\"\n    language = \"wasm\"\n    path = \"{}\"\n  }}\n}}\n",
        guests::HOSTILE
    );
    let wasmond = Wasmond::start("flood", &early);
    wait_for(
        Duration::from_secs(30),
        "wasmond's XML",
        || {
            wasmond
                .xml()
                .filter(|xml| xml.contains("wasmond_udp_received"))
        },
        || wasmond.daemon.log_text(),
    );
    let sender = std::net::UdpSocket::bind((Ipv4Addr::LOCALHOST, 0)).unwrap();
    const HOSTS: usize = 10_000;
    for i in 0..HOSTS {
        let host = format!("10.{}.{}.{}:spoofed{i}", i >> 16, (i >> 8) & 255, i & 255);
        for packet in gmetric_packets(&host, "flood", ValueType::UInt32, "1") {
            sender.send_to(&packet, wasmond.udp_addr).unwrap();
        }
        if i % 500 == 499 {
            // Let the receiver keep up with the socket buffer, so the store's caps (not
            // the kernel) refuse what is over.
            std::thread::sleep(Duration::from_millis(20));
        }
    }
    let xml = wait_for(
        Duration::from_secs(60),
        "the flood to be counted as over quota",
        || {
            let xml = wasmond.xml()?;
            let over = counter(&xml, "wasmond_udp_over_quota")?;
            let drops = counter(&xml, "wasmond_udp_kernel_drops")?;
            let received = counter(&xml, "wasmond_udp_received")?;
            (over + drops + received >= (2 * HOSTS) as f64).then_some(xml)
        },
        || wasmond.daemon.log_text(),
    );
    let grid = gxml::parse(&xml).unwrap();
    let spoofed = grid
        .hosts
        .iter()
        .filter(|host| host.attr("NAME").starts_with("spoofed"))
        .count();
    assert_eq!(
        spoofed,
        wasmond::store::MAX_HOSTS_PER_SENDER,
        "one source address adds at most its share of hosts"
    );
    assert!(counter(&xml, "wasmond_udp_over_quota").unwrap() >= (HOSTS - spoofed) as f64);

    // A module added by SIGHUP publishes all its metrics.
    let conf = wasmond.dir.path().join("wasmond.conf");
    let mut text = std::fs::read_to_string(&conf).unwrap();
    text.push_str(&format!(
        r#"modules {{
  module {{
    name = "late"
    language = "wasm"
    path = "{}"
    param prefix {{
      value = "late_"
    }}
  }}
}}
collection_group {{
  collect_every = 1
  time_threshold = 1
  metric {{
    name_match = "^late_"
  }}
}}
"#,
        guests::EXAMPLE
    ));
    std::fs::write(&conf, text).unwrap();
    wasmond.daemon.signal(libc::SIGHUP);
    wait_for(
        Duration::from_secs(30),
        "the module added by SIGHUP in the XML",
        || {
            let xml = wasmond.xml()?;
            let grid = gxml::parse(&xml).ok()?;
            let own = grid
                .hosts
                .iter()
                .find(|host| host.metric("wasmond_udp_received").is_some())?;
            (own.metric("late_double").is_some() && own.metric("late_string").is_some())
                .then_some(())
        },
        || wasmond.daemon.log_text(),
    );
}

/// One line of `/proc/PID/status`, e.g. `Uid:` gives `["102", "102", "102", "102"]`.
fn status_field(pid: u32, field: &str) -> Vec<String> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|line| line.strip_prefix(field))
        .unwrap_or_default()
        .split_whitespace()
        .map(str::to_owned)
        .collect()
}

/// Issue 16 item 3: started as root from a stock-like config (`setuid = yes`,
/// `user = ganglia`), the daemon runs as `ganglia` once its sockets are open, and it is
/// Landlocked: after SIGHUP with an include of a file outside its configuration
/// directories, which `ganglia` itself may read, the reload fails with "permission
/// denied" and the running configuration is kept.
#[test]
fn started_as_root_it_runs_as_ganglia_under_landlock() {
    // SAFETY: getuid has no preconditions.
    if unsafe { libc::getuid() } != 0 {
        eprintln!("started_as_root_it_runs_as_ganglia_under_landlock: skipped, not root");
        return;
    }
    if !hostile_guest_built() {
        return;
    }
    let ganglia = match wasmond::lockdown::lookup_user("ganglia") {
        Ok(user) => user,
        Err(error) => {
            let message = format!("skipped, no ganglia user (install ganglia-monitor): {error:#}");
            assert!(
                std::env::var("WASMOND_REQUIRE_INTEROP").as_deref() != Ok("1"),
                "{message}"
            );
            eprintln!("started_as_root_it_runs_as_ganglia_under_landlock: {message}");
            return;
        }
    };
    let modules = format!(
        r#"modules {{
  module {{
    name = "guest"
    language = "wasm"
    path = "{}"
  }}
}}
collection_group {{
  collect_every = 1
  time_threshold = 1
  metric {{
    name_match = "^(attack|calls)$"
  }}
}}
"#,
        guests::HOSTILE
    );
    let wasmond = Wasmond::start_with("privdrop", "setuid = yes\n  user = ganglia", &modules);
    let conf = wasmond.dir.path().join("wasmond.conf");
    let text = std::fs::read_to_string(&conf).unwrap();
    wait_for(
        Duration::from_secs(30),
        "the guest's metrics in the XML",
        || wasmond.xml().filter(|xml| xml.contains("NAME=\"calls\"")),
        || wasmond.daemon.log_text(),
    );
    let pid = wasmond.daemon.pid();
    let uid = ganglia.uid.to_string();
    let gid = ganglia.gid.to_string();
    assert_eq!(status_field(pid, "Uid:"), [uid.as_str(); 4]);
    assert_eq!(status_field(pid, "Gid:"), [gid.as_str(); 4]);
    assert_eq!(
        status_field(pid, "NoNewPrivs:"),
        ["1"],
        "Landlock sets no_new_privs"
    );
    assert!(
        wasmond
            .daemon
            .log_text()
            .contains("running as user ganglia"),
        "{}",
        wasmond.daemon.log_text()
    );

    // A file outside the allowed set, that the ganglia user may read.
    let outside = TempDir::new("privdrop-outside");
    let extra = outside.write("extra.conf", "host {\n  location = \"outside\"\n}\n");
    let readable = std::process::Command::new("setpriv")
        .args(["--reuid", &uid, "--regid", &gid, "--init-groups", "cat"])
        .arg(&extra)
        .output();
    if let Ok(output) = readable {
        assert!(
            output.status.success(),
            "ganglia can read {}: {}",
            extra.display(),
            String::from_utf8_lossy(&output.stderr)
        );
    }
    let with_include = format!("{text}\ninclude (\"{}\")\n", extra.display());
    std::fs::write(&conf, with_include).unwrap();
    wasmond.daemon.signal(libc::SIGHUP);
    let log = wait_for(
        Duration::from_secs(20),
        "the reload to fail on the include",
        || {
            let log = wasmond.daemon.log_text();
            log.contains("the running one is kept").then_some(log)
        },
        || wasmond.daemon.log_text(),
    );
    let denied = log
        .lines()
        .find(|line| line.contains(&extra.display().to_string()))
        .unwrap_or_else(|| panic!("no error names the include:\n{log}"));
    assert!(
        denied.to_lowercase().contains("permission denied"),
        "{denied}"
    );
    // Still serving, as ganglia.
    assert!(
        wasmond
            .xml()
            .is_some_and(|xml| xml.contains("NAME=\"calls\""))
    );
    assert_eq!(status_field(pid, "Uid:")[0], uid);
}
