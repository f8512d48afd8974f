//! Export (issue 14): the real `wasmond run` binary's `prometheus_listener` scraped by a
//! real Prometheus 2.42 on loopback. Its target goes `up`, the metrics of wasmond's own
//! host (the example guest) and of a host it heard over UDP (real `gmetric`) are
//! queryable through Prometheus' HTTP API with their labels and types, and `promtool
//! check metrics` accepts the text exposition.
//!
//! Skipped (with a message) without Prometheus or Ganglia's tools, failed instead under
//! `WASMOND_REQUIRE_INTEROP=1`.

#[path = "support/ganglia.rs"]
mod ganglia;
#[path = "support/prometheus.rs"]
mod prometheus;

use std::net::{Ipv4Addr, SocketAddr};
use std::time::Duration;

use ganglia::{TempDir, gmetric, require_ganglia, wait_for};
use prometheus::{Prometheus, http_get, promtool_check_metrics, require_prometheus};

const CLUSTER: &str = "Prom Cluster";

/// The real `wasmond run`: the example guest's metrics (prefixed `e2e_`) collected every
/// second and sent to its own receive channel, the exposition at `/wasmond/metrics`.
struct WasmondRun {
    daemon: ganglia::Daemon,
    udp_addr: SocketAddr,
    metrics_addr: SocketAddr,
    dir: TempDir,
}

impl WasmondRun {
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
    let Some(wasmond) = WasmondRun::start() else {
        return;
    };
    // wasmond is up (its receive channel bound) once it answers scrapes.
    wait_for(
        Duration::from_secs(30),
        "wasmond's exposition",
        || {
            wasmond.daemon.assert_running();
            http_get(wasmond.metrics_addr, "/wasmond/metrics", None).ok()
        },
        || wasmond.daemon.log_text(),
    );
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
