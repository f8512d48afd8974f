//! A real Prometheus 2.42 for the export tests: started on a free loopback port with a
//! config and a TSDB in a temporary directory, killed (by its own pid) when dropped;
//! a minimal HTTP/1.0 client for its API and for wasmond's exposition; `promtool`.
//!
//! [`require_prometheus`] decides skip or fail when the tools are missing, as
//! `ganglia::require_ganglia` does, under the same `WASMOND_REQUIRE_INTEROP=1`.

#![allow(dead_code)] // Each test binary uses its own part of this module.

use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpStream};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use super::ganglia::{self, Daemon, TempDir};

pub const PROMETHEUS: &str = "/usr/bin/prometheus";
pub const PROMTOOL: &str = "/usr/bin/promtool";

/// Whether Prometheus and promtool are here; when not, prints that `test` skipped and
/// returns false, or panics under `WASMOND_REQUIRE_INTEROP=1`.
pub fn require_prometheus(test: &str) -> bool {
    let missing: Vec<&str> = [PROMETHEUS, PROMTOOL]
        .into_iter()
        .filter(|tool| !Path::new(tool).exists())
        .collect();
    if missing.is_empty() {
        return true;
    }
    let message = format!("{test}: skipped, Prometheus tools missing: {missing:?}");
    if std::env::var("WASMOND_REQUIRE_INTEROP").is_ok_and(|value| value == "1") {
        panic!("{message} (WASMOND_REQUIRE_INTEROP=1)");
    }
    eprintln!("{message}");
    false
}

/// A running Prometheus.
pub struct Prometheus {
    pub daemon: Daemon,
    pub addr: SocketAddr,
    _dir: TempDir,
}

impl Prometheus {
    /// Starts Prometheus scraping `targets` (host:port, at `metrics_path`) every second,
    /// with `extra_flags` (e.g. `--web.enable-remote-write-receiver`).
    pub fn start(targets: &[SocketAddr], metrics_path: &str, extra_flags: &[&str]) -> Prometheus {
        let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, ganglia::free_port()));
        Prometheus::start_on(addr, targets, metrics_path, extra_flags)
    }

    /// [`Prometheus::start`], listening on `addr`.
    pub fn start_on(
        addr: SocketAddr,
        targets: &[SocketAddr],
        metrics_path: &str,
        extra_flags: &[&str],
    ) -> Prometheus {
        let dir = TempDir::new("prometheus");
        let targets: Vec<String> = targets.iter().map(|t| format!("'{t}'")).collect();
        let scrape = if targets.is_empty() {
            String::new()
        } else {
            format!(
                "scrape_configs:\n  - job_name: wasmond\n    metrics_path: '{metrics_path}'\n    static_configs:\n      - targets: [{}]\n",
                targets.join(", ")
            )
        };
        let conf = format!(
            "global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\n  evaluation_interval: 1s\n{scrape}"
        );
        let conf_path = dir.write("prometheus.yml", &conf);
        let daemon = Daemon::spawn(
            "prometheus",
            Command::new(PROMETHEUS)
                .arg(format!("--config.file={}", conf_path.display()))
                .arg(format!(
                    "--storage.tsdb.path={}",
                    dir.path().join("data").display()
                ))
                .arg(format!("--web.listen-address={addr}"))
                .args(extra_flags),
            dir.path().join("prometheus.log"),
        );
        let prometheus = Prometheus {
            daemon,
            addr,
            _dir: dir,
        };
        ganglia::wait_for(
            Duration::from_secs(30),
            "Prometheus ready",
            || {
                prometheus.daemon.assert_running();
                http_get(prometheus.addr, "/-/ready", None)
                    .ok()
                    .filter(|answer| answer.status == 200)
            },
            || prometheus.daemon.log_text(),
        );
        prometheus
    }

    /// `GET /api/v1/<endpoint>?<query>`, parsed; panics unless the status is success.
    pub fn api(&self, endpoint: &str, query: &[(&str, &str)]) -> serde_json::Value {
        let query: Vec<String> = query
            .iter()
            .map(|(key, value)| format!("{key}={}", percent_encode(value)))
            .collect();
        let path = format!("/api/v1/{endpoint}?{}", query.join("&"));
        let answer = http_get(self.addr, &path, None).expect("Prometheus API");
        let json: serde_json::Value = serde_json::from_str(&answer.body)
            .unwrap_or_else(|error| panic!("{path}: {error}: {}", answer.body));
        assert_eq!(json["status"], "success", "{path}: {json}");
        json["data"].clone()
    }

    /// The result vector of the instant query `promql`.
    pub fn query(&self, promql: &str) -> Vec<serde_json::Value> {
        let data = self.api("query", &[("query", promql)]);
        data["result"].as_array().cloned().unwrap_or_default()
    }
}

/// One HTTP answer.
#[derive(Debug)]
pub struct Answer {
    pub status: u16,
    /// Header lines as `name: value`, names lowercased.
    pub headers: Vec<(String, String)>,
    pub body: String,
}

impl Answer {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(key, _)| key == name)
            .map(|(_, value)| value.as_str())
    }
}

/// `GET path` over HTTP/1.0 (the server closes after the answer), with an optional
/// `Accept` header.
pub fn http_get(addr: SocketAddr, path: &str, accept: Option<&str>) -> std::io::Result<Answer> {
    let mut stream = TcpStream::connect_timeout(&addr, Duration::from_secs(2))?;
    stream.set_read_timeout(Some(Duration::from_secs(10)))?;
    let accept = accept.map_or(String::new(), |value| format!("Accept: {value}\r\n"));
    write!(
        stream,
        "GET {path} HTTP/1.0\r\nHost: {addr}\r\n{accept}\r\n"
    )?;
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw)?;
    let raw = String::from_utf8_lossy(&raw).into_owned();
    let (head, body) = raw.split_once("\r\n\r\n").unwrap_or((&raw, ""));
    let mut lines = head.lines();
    let status = lines
        .next()
        .and_then(|line| line.split_whitespace().nth(1))
        .and_then(|code| code.parse().ok())
        .unwrap_or(0);
    let headers = lines
        .filter_map(|line| line.split_once(':'))
        .map(|(key, value)| (key.trim().to_ascii_lowercase(), value.trim().to_owned()))
        .collect();
    Ok(Answer {
        status,
        headers,
        body: body.to_owned(),
    })
}

/// `promtool check metrics` on `exposition`: its exit code and what it printed.
pub fn promtool_check_metrics(exposition: &str) -> (i32, String) {
    let mut child = Command::new(PROMTOOL)
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run promtool");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(exposition.as_bytes())
        .unwrap();
    let output = child.wait_with_output().unwrap();
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    (output.status.code().unwrap_or(-1), said)
}

fn percent_encode(text: &str) -> String {
    text.bytes()
        .map(|byte| match byte {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                char::from(byte).to_string()
            }
            _ => format!("%{byte:02X}"),
        })
        .collect()
}
