//! Export (issue 14): the real `wasmond run` binary's `prometheus_listener` scraped by a
//! real Prometheus 2.42 on loopback. Its target goes `up`, the metrics of wasmond's own
//! host (the example guest) and of a host it heard over UDP (real `gmetric`) are
//! queryable through Prometheus' HTTP API with their labels and types, and `promtool
//! check metrics` accepts the text exposition.
//!
//! Its `prometheus_remote_write` pushing to a second real Prometheus, started with
//! `--web.enable-remote-write-receiver`: the series of wasmond's own host and of a real
//! gmond 3.7.2 sending to wasmond over UDP arrive with their labels; with the receiver
//! down at first, the queue stays bounded, the drops are counted, and once the receiver
//! is up the queued snapshots and the new ones arrive.
//!
//! Strings holding every character the two formats escape, served in each format to a
//! real Prometheus, come back from its API as they were in the store; promtool accepts
//! the text format.
//!
//! Skipped (with a message) without Prometheus or Ganglia's tools, failed instead under
//! `WASMOND_REQUIRE_INTEROP=1`.

#[path = "support/ganglia.rs"]
mod ganglia;
#[path = "support/prometheus.rs"]
mod prometheus;

use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpListener};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use ganglia::{Gmond, TempDir, gmetric, require_ganglia, wait_for};
use prometheus::{Prometheus, http_get, promtool_check_metrics, require_prometheus};
use wasmond::export::prometheus::{self as export, Format};
use wasmond::metric::{MetricMeta, MetricValue, Slope};
use wasmond::store::{ClusterInfo, HostRef, Store, StoreConfig};

const CLUSTER: &str = "Prom Cluster";

/// The real `wasmond run`: the example guest's metrics (prefixed `e2e_`) collected every
/// second and sent to its own receive channel, the exposition at `/wasmond/metrics`,
/// and `extra` sections.
struct WasmondRun {
    daemon: ganglia::Daemon,
    udp_addr: SocketAddr,
    metrics_addr: SocketAddr,
    dir: TempDir,
}

impl WasmondRun {
    fn start(extra: &str) -> Option<WasmondRun> {
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
        let (udp_port, metrics_port) = (ganglia::free_port(), ganglia::free_port());
        let dir = TempDir::new("wasmond-prom");
        let conf = format!(
            r#"globals {{
  daemonize = no
  setuid = no
  host_dmax = 0
}}
cluster {{
  name = "{CLUSTER}"
}}
udp_send_channel {{
  host = 127.0.0.1
  port = {udp_port}
}}
udp_recv_channel {{
  port = {udp_port}
  bind = 127.0.0.1
}}
prometheus_listener {{
  bind = 127.0.0.1
  port = {metrics_port}
  path = "/wasmond/metrics"
  acl {{
    default = deny
    access {{
      ip = 127.0.0.1
      mask = 32
      action = allow
    }}
  }}
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
  collect_every = 1
  time_threshold = 2
  metric {{
    name_match = "e2e_(.*)"
  }}
}}
{extra}
"#
        );
        let daemon = ganglia::Daemon::spawn_wasmond(&dir, &conf);
        Some(WasmondRun {
            daemon,
            udp_addr: SocketAddr::from((Ipv4Addr::LOCALHOST, udp_port)),
            metrics_addr: SocketAddr::from((Ipv4Addr::LOCALHOST, metrics_port)),
            dir,
        })
    }
}

impl WasmondRun {
    /// Waits until wasmond is up (its receive channel bound): it answers scrapes.
    fn wait_up(&self) {
        wait_for(
            Duration::from_secs(30),
            "wasmond's exposition",
            || {
                self.daemon.assert_running();
                http_get(self.metrics_addr, "/wasmond/metrics", None).ok()
            },
            || self.daemon.log_text(),
        );
    }

    /// The value of the sample `name` in wasmond's own exposition (this host's).
    fn exposed(&self, name: &str) -> Option<f64> {
        let text = http_get(self.metrics_addr, "/wasmond/metrics", None)
            .ok()?
            .body;
        text.lines()
            .find(|line| line.starts_with(&format!("{name}{{")))?
            .rsplit(' ')
            .next()?
            .parse()
            .ok()
    }
}

/// The one series `promql` selects, as (labels, value).
fn one_series(prometheus: &Prometheus, promql: &str) -> Option<(serde_json::Value, String)> {
    let result = prometheus.query(promql);
    let [series] = result.as_slice() else {
        return None;
    };
    let value = series["value"][1].as_str()?.to_owned();
    Some((series["metric"].clone(), value))
}

/// The type Prometheus recorded for the metric family `name`.
fn family_type(prometheus: &Prometheus, name: &str) -> Option<String> {
    let data = prometheus.api("metadata", &[("metric", name)]);
    Some(data[name][0]["type"].as_str()?.to_owned())
}

#[test]
fn real_prometheus_scrapes_every_host_with_labels_and_types() {
    let test = "real_prometheus_scrapes_every_host_with_labels_and_types";
    if !require_prometheus(test) || !require_ganglia(test) {
        return;
    }
    let Some(wasmond) = WasmondRun::start("") else {
        return;
    };
    wasmond.wait_up();
    // A second host, heard over UDP from real gmetric: a counter in bytes.
    let send = || {
        gmetric(
            &wasmond.dir,
            wasmond.udp_addr,
            &[
                "-n",
                "remote.bytes_out",
                "-v",
                "123456",
                "-t",
                "uint32",
                "-u",
                "bytes",
                "-s",
                "positive",
                "-g",
                "network",
                "-D",
                "Bytes sent by the remote host",
                "-S",
                "10.9.8.7:remote-host",
            ],
        );
    };
    send();
    let prometheus = Prometheus::start(&[wasmond.metrics_addr], "/wasmond/metrics", &[]);
    let context = || {
        let exposition = http_get(wasmond.metrics_addr, "/wasmond/metrics", None)
            .map(|answer| answer.body)
            .unwrap_or_default();
        format!(
            "wasmond:\n{}\nexposition:\n{exposition}\nprometheus:\n{}",
            wasmond.daemon.log_text(),
            prometheus.daemon.log_text()
        )
    };

    wait_for(
        Duration::from_secs(30),
        "the wasmond target up",
        || {
            wasmond.daemon.assert_running();
            let targets = prometheus.api("targets", &[("state", "active")]);
            let target = targets["activeTargets"].get(0)?;
            (target["health"] == "up").then_some(())
        },
        context,
    );

    // wasmond's own host: the example guest's gauge, with cluster, host and group.
    let (labels, _) = wait_for(
        Duration::from_secs(30),
        "e2e_uint32 in Prometheus",
        || one_series(&prometheus, "e2e_uint32"),
        context,
    );
    assert_eq!(labels["cluster"], CLUSTER, "{labels}");
    assert_eq!(labels["group"], "example", "{labels}");
    assert_eq!(labels["ganglia_name"], "e2e_uint32", "{labels}");
    assert_eq!(labels["job"], "wasmond", "{labels}");
    let own_host = labels["host"].as_str().unwrap().to_owned();
    assert_ne!(own_host, "remote-host");
    assert_eq!(
        family_type(&prometheus, "e2e_uint32").as_deref(),
        Some("gauge")
    );
    // "ratio" is a base unit: the name carries it and the metadata says so.
    assert_eq!(
        family_type(&prometheus, "e2e_double_ratio").as_deref(),
        Some("gauge")
    );
    let data = prometheus.api("metadata", &[("metric", "e2e_double_ratio")]);
    assert_eq!(data["e2e_double_ratio"][0]["unit"], "ratio", "{data}");
    // The string metric is an info metric whose value is a label.
    let (labels, value) = wait_for(
        Duration::from_secs(10),
        "e2e_string_info in Prometheus",
        || one_series(&prometheus, "e2e_string_info"),
        context,
    );
    assert_eq!(labels["value"], "hello from wasm", "{labels}");
    assert_eq!(value, "1");
    assert_eq!(
        family_type(&prometheus, "e2e_string").as_deref(),
        Some("info")
    );

    // The host heard over UDP: a counter with the unit in its name, its value as sent.
    let (labels, value) = wait_for(
        Duration::from_secs(10),
        "remote_bytes_out_bytes_total in Prometheus",
        || {
            send();
            one_series(&prometheus, "remote_bytes_out_bytes_total")
        },
        context,
    );
    assert_eq!(labels["host"], "remote-host", "{labels}");
    assert_eq!(labels["cluster"], CLUSTER, "{labels}");
    assert_eq!(labels["group"], "network", "{labels}");
    assert_eq!(labels["ganglia_name"], "remote.bytes_out", "{labels}");
    assert_eq!(value, "123456");
    let data = prometheus.api("metadata", &[("metric", "remote_bytes_out_bytes")]);
    assert_eq!(
        data["remote_bytes_out_bytes"][0]["type"], "counter",
        "{data}"
    );
    assert_eq!(data["remote_bytes_out_bytes"][0]["unit"], "bytes", "{data}");
    assert_eq!(
        data["remote_bytes_out_bytes"][0]["help"],
        "Bytes sent by the remote host"
    );
    // Per host: both hosts' series are there, the own host's with every guest metric.
    let own = prometheus.query(&format!("{{host=\"{own_host}\",job=\"wasmond\"}}"));
    assert!(own.len() >= 9, "{own:?}");

    // The text format passes promtool; Prometheus itself read the OpenMetrics one.
    let text = http_get(wasmond.metrics_addr, "/wasmond/metrics", None).unwrap();
    assert_eq!(text.status, 200);
    assert_eq!(
        text.header("content-type"),
        Some("text/plain; version=0.0.4; charset=utf-8")
    );
    let (code, said) = promtool_check_metrics(&text.body);
    assert_eq!(code, 0, "promtool: {said}\n{}", text.body);
    let open_metrics = http_get(
        wasmond.metrics_addr,
        "/wasmond/metrics",
        Some("application/openmetrics-text; version=1.0.0"),
    )
    .unwrap();
    assert!(
        open_metrics
            .header("content-type")
            .is_some_and(|value| value.starts_with("application/openmetrics-text")),
        "{open_metrics:?}"
    );
    assert!(open_metrics.body.ends_with("# EOF\n"));
    let samples = prometheus.query("scrape_samples_scraped{job=\"wasmond\"}");
    assert_eq!(
        samples[0]["value"][1]
            .as_str()
            .map(|v| v.parse::<usize>().unwrap()),
        Some(
            open_metrics
                .body
                .lines()
                .filter(|line| !line.starts_with('#'))
                .count()
        ),
        "Prometheus took every sample of the OpenMetrics exposition"
    );
}

/// A `prometheus_remote_write` section pushing every second to `receiver`.
fn remote_write_to(receiver: SocketAddr, queue: u32) -> String {
    format!(
        "prometheus_remote_write {{\n  url = \"http://{receiver}/api/v1/write\"\n  interval = 1\n  queue = {queue}\n}}\n"
    )
}

/// Prometheus as a remote-write receiver only (it scrapes nothing).
const RECEIVER_FLAGS: &[&str] = &["--web.enable-remote-write-receiver"];

/// gmond 3.7.2's own load module, `load_one` collected and sent every second.
const GMOND_LOAD: &str = r#"modules {
  module {
    name = "core_metrics"
  }
  module {
    name = "load_module"
    path = "/usr/lib/x86_64-linux-gnu/ganglia/modload.so"
  }
}
collection_group {
  collect_every = 1
  time_threshold = 1
  metric {
    name = "load_one"
  }
}
"#;

#[test]
fn real_prometheus_receives_what_wasmond_pushes_from_every_host() {
    let test = "real_prometheus_receives_what_wasmond_pushes_from_every_host";
    if !require_prometheus(test) || !require_ganglia(test) {
        return;
    }
    let receiver = Prometheus::start(&[], "/metrics", RECEIVER_FLAGS);
    let Some(wasmond) = WasmondRun::start(&remote_write_to(receiver.addr, 16)) else {
        return;
    };
    wasmond.wait_up();
    let gmond = Gmond::start_sending(CLUSTER, wasmond.udp_addr, "real-gmond", GMOND_LOAD);
    let context = || {
        format!(
            "wasmond:\n{}\ngmond:\n{}\nreceiver:\n{}",
            wasmond.daemon.log_text(),
            gmond.daemon.log_text(),
            receiver.daemon.log_text()
        )
    };

    // wasmond's own host: the example guest's gauge, pushed, not scraped (no `job`).
    let (labels, _) = wait_for(
        Duration::from_secs(30),
        "e2e_uint32 pushed to the receiver",
        || {
            wasmond.daemon.assert_running();
            one_series(&receiver, "e2e_uint32")
        },
        context,
    );
    assert_eq!(labels["cluster"], CLUSTER, "{labels}");
    assert_eq!(labels["group"], "example", "{labels}");
    assert_eq!(labels["ganglia_name"], "e2e_uint32", "{labels}");
    assert!(labels.get("job").is_none(), "{labels}");
    let own_host = labels["host"].as_str().unwrap().to_owned();
    assert_ne!(own_host, "real-gmond");
    // The unit suffix and the info metric, as in the exposition.
    assert!(one_series(&receiver, "e2e_double_ratio").is_some());
    let (labels, value) = wait_for(
        Duration::from_secs(10),
        "e2e_string_info pushed",
        || one_series(&receiver, "e2e_string_info"),
        context,
    );
    assert_eq!(labels["value"], "hello from wasm", "{labels}");
    assert_eq!(value, "1");

    // The real gmond's host, heard over UDP: its load_one, with gmond's group.
    let (labels, value) = wait_for(
        Duration::from_secs(30),
        "the real gmond's load_one pushed",
        || {
            gmond.daemon.assert_running();
            one_series(&receiver, "load_one{host=\"real-gmond\"}")
        },
        context,
    );
    assert_eq!(labels["cluster"], CLUSTER, "{labels}");
    assert_eq!(labels["group"], "load", "{labels}");
    assert_eq!(labels["ganglia_name"], "load_one", "{labels}");
    assert_eq!(labels["__name__"], "load_one", "{labels}");
    assert!(value.parse::<f64>().unwrap() >= 0.0, "{value}");
    // Every pushed request was accepted: nothing refused, nothing dropped.
    let refused = wait_for(
        Duration::from_secs(10),
        "wasmond_remote_write_refused in the exposition",
        || wasmond.exposed("wasmond_remote_write_refused_total"),
        context,
    );
    assert_eq!(refused, 0.0, "{}", context());
    assert_eq!(
        wasmond.exposed("wasmond_remote_write_dropped_total"),
        Some(0.0)
    );
}

#[test]
fn remote_write_keeps_a_bounded_queue_while_the_receiver_is_down() {
    let test = "remote_write_keeps_a_bounded_queue_while_the_receiver_is_down";
    if !require_prometheus(test) {
        return;
    }
    let receiver_addr = SocketAddr::from((Ipv4Addr::LOCALHOST, ganglia::free_port()));
    // The counters collected every second (the built-in group takes 20 s).
    let extra = remote_write_to(receiver_addr, 3)
        + "collection_group {\n  collect_every = 1\n  time_threshold = 1\n  metric {\n    name = \"wasmond_remote_write_*\"\n  }\n}\n";
    let Some(wasmond) = WasmondRun::start(&extra) else {
        return;
    };
    wasmond.wait_up();
    let context = || wasmond.daemon.log_text();
    let counter = |name: &str| wasmond.exposed(name);

    // Nobody listens: requests pile up to the queue's 3, then the oldest are dropped.
    wait_for(
        Duration::from_secs(30),
        "requests dropped from the full queue",
        || {
            wasmond.daemon.assert_running();
            let queue = counter("wasmond_remote_write_queue")?;
            assert!(queue <= 3.0, "the queue holds {queue}");
            (counter("wasmond_remote_write_dropped_total")? >= 2.0 && queue == 3.0).then_some(())
        },
        context,
    );
    assert_eq!(counter("wasmond_remote_write_samples_total"), Some(0.0));
    assert!(counter("wasmond_remote_write_retries_total").unwrap() >= 1.0);
    let down_until = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs_f64();

    // The receiver comes up where wasmond pushes: the queued snapshots arrive, oldest
    // first, then the new ones.
    let receiver = Prometheus::start_on(receiver_addr, &[], "/metrics", RECEIVER_FLAGS);
    let context = || {
        format!(
            "wasmond:\n{}\nreceiver:\n{}",
            wasmond.daemon.log_text(),
            receiver.daemon.log_text()
        )
    };
    let stamps = wait_for(
        Duration::from_secs(30),
        "the queued and the new samples in the receiver",
        || {
            let result = receiver.query("e2e_uint32[10m]");
            let [series] = result.as_slice() else {
                return None;
            };
            let stamps: Vec<f64> = series["values"]
                .as_array()?
                .iter()
                .filter_map(|point| point[0].as_f64())
                .collect();
            (stamps.len() >= 5).then_some(stamps)
        },
        context,
    );
    assert!(stamps.is_sorted(), "{stamps:?}");
    assert!(
        stamps[0] < down_until,
        "samples taken while the receiver was down arrived: {stamps:?} (down until {down_until})"
    );
    wait_for(
        Duration::from_secs(30),
        "the samples counted and the queue emptied",
        || {
            (counter("wasmond_remote_write_samples_total")? > 0.0
                && counter("wasmond_remote_write_queue")? <= 1.0)
                .then_some(())
        },
        context,
    );
}

/// Every character the formats escape, in every string wasmond exposes: the cluster (a
/// config string), host, group and Ganglia names, a string value, DESC, units. Over UDP
/// these come sanitized (`"` and newline become `?`), but the config, a module and a
/// future sender are not bound to that.
const HOSTILE: &str = "a\\b \"c\"\nd é";

fn hostile_store() -> Arc<Store> {
    let store = Store::new(StoreConfig {
        cluster: ClusterInfo {
            name: HOSTILE.into(),
            owner: "o".into(),
            latlong: "l".into(),
            url: "u".into(),
        },
        host_tmax: 20,
        host_dmax: 0,
    });
    let host = HostRef {
        name: HOSTILE,
        ip: "10.0.0.1",
    };
    let now = SystemTime::now();
    for (name, slope, value) in [
        (
            "hostile.string",
            Slope::Zero,
            MetricValue::String(HOSTILE.into()),
        ),
        ("hostile\\counter", Slope::Positive, MetricValue::UInt32(7)),
    ] {
        let meta = MetricMeta {
            name: name.into(),
            value_type: value.value_type(),
            units: "K\\B".into(),
            slope,
            tmax: 60,
            dmax: 0,
            extras: vec![
                ("DESC".into(), HOSTILE.into()),
                ("GROUP".into(), HOSTILE.into()),
            ],
        };
        store.update_metadata(host, meta, now).unwrap();
        store.update_value(host, name, value, "%s", now).unwrap();
    }
    Arc::new(store)
}

/// Serves `store`'s exposition in `format` whatever the scraper asks for, one request per
/// connection, until the test ends.
fn serve_exposition(store: Arc<Store>, format: Format) -> SocketAddr {
    let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).unwrap();
    let addr = listener.local_addr().unwrap();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            let mut request = Vec::new();
            let mut byte = [0u8];
            while !request.ends_with(b"\r\n\r\n") && stream.read(&mut byte).is_ok_and(|n| n == 1) {
                request.push(byte[0]);
            }
            let body = export::render(&store, SystemTime::now(), format).text;
            let content_type = match format {
                Format::Text => "text/plain; version=0.0.4; charset=utf-8",
                Format::OpenMetrics => "application/openmetrics-text; version=1.0.0",
            };
            let head = format!(
                "HTTP/1.0 200 OK\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\n\r\n",
                body.len()
            );
            let _ = stream.write_all(head.as_bytes());
            let _ = stream.write_all(body.as_bytes());
        }
    });
    addr
}

/// Real Prometheus parses both formats back to the very strings in the store, and
/// promtool accepts the text format: the escaping is the formats' own.
#[test]
fn real_prometheus_reads_back_every_escaped_string() {
    let test = "real_prometheus_reads_back_every_escaped_string";
    if !require_prometheus(test) {
        return;
    }
    let store = hostile_store();
    let text = export::render(&store, SystemTime::now(), Format::Text).text;
    let (code, said) = promtool_check_metrics(&text);
    // 0, or 3 for lint warnings only (HELP and units are not Prometheus' style).
    assert!(code == 0 || code == 3, "promtool ({code}): {said}\n{text}");
    assert!(!said.contains("error"), "promtool: {said}\n{text}");

    let text_addr = serve_exposition(Arc::clone(&store), Format::Text);
    let open_metrics_addr = serve_exposition(Arc::clone(&store), Format::OpenMetrics);
    let prometheus = Prometheus::start(&[text_addr, open_metrics_addr], "/metrics", &[]);
    let context = || prometheus.daemon.log_text();
    for addr in [text_addr, open_metrics_addr] {
        let selector = |name: &str| format!("{name}{{instance=\"{addr}\"}}");
        let (labels, value) = wait_for(
            Duration::from_secs(30),
            &format!("the info metric scraped from {addr}"),
            || one_series(&prometheus, &selector("hostile_string_info")),
            context,
        );
        for label in ["value", "cluster", "host", "group"] {
            assert_eq!(labels[label], HOSTILE, "{label} from {addr}: {labels}");
        }
        assert_eq!(labels["ganglia_name"], "hostile.string", "{labels}");
        assert_eq!(value, "1");
        let (labels, value) = one_series(&prometheus, &selector("hostile_counter_total"))
            .unwrap_or_else(|| panic!("the counter from {addr}:\n{}", context()));
        assert_eq!(labels["ganglia_name"], "hostile\\counter", "{labels}");
        assert_eq!(labels["host"], HOSTILE, "{labels}");
        assert_eq!(value, "7");
    }
    // HELP, as Prometheus keeps it (from whichever target it read last).
    let data = prometheus.api("metadata", &[("metric", "hostile_counter")]);
    let help = format!("{HOSTILE} (units: K\\B)");
    let helps: Vec<&str> = data
        .as_object()
        .into_iter()
        .flat_map(|families| families.values())
        .flat_map(|entries| entries.as_array().into_iter().flatten())
        .filter_map(|entry| entry["help"].as_str())
        .collect();
    assert!(!helps.is_empty(), "{data}");
    assert!(helps.iter().all(|h| *h == help), "{helps:?} != {help:?}");
}
