//! gmetad's interactive port, answered from the store: one request line in, the XML of
//! the subtree it names out. Sans-IO: `net::interactive` reads the line and writes the
//! answer.
//!
//! The request (gmetad 3.7.2 `server.c`, `process_request` and `process_path`):
//! - a path `/`, `/CLUSTER`, `/CLUSTER/HOST`, `/CLUSTER/HOST/METRIC`, optionally followed
//!   by `?filter=summary` (any other filter name is ignored, as gmetad does; a `?` without
//!   `=` is a bad request);
//! - or the same as an HTTP request line, `GET /path HTTP/1.0` (or `1.1`). The answer is
//!   the bare XML either way, as gmetad writes it.
//! - Bad requests get no answer, the connection is just closed: an empty line, a path not
//!   starting with `/`, a character of ``>!@#$%`;|"\'<`` in it.
//!
//! The walk: each path element is looked up among the children of the node before it
//! (the one cluster, its hosts, a host's metrics). An element that is not found shows the
//! whole node it was looked for in (so `/NoSuchCluster` answers everything); in HTTP form
//! it shows nothing instead, and `*` stands for every child. With `filter=summary` the
//! node the path ends at is summarized where gmetad summarizes (the root and a cluster):
//! `<HOSTS UP DOWN SOURCE="gmetad"/>` and, per numeric metric over the hosts up, `<METRICS
//! NAME SUM NUM TYPE="double" UNITS SLOPE SOURCE="gmond">` with its extras, as gmetad does;
//! hosts and metrics are never listed under a summary.
//!
//! Differences from gmetad: there is no `GRID` element (wasmond serves one cluster, as
//! gmond does, so the answer is gmond's document cut down), `/status` is not served, and
//! metrics are listed in name order (gmetad's order is its hash table's).

use std::collections::HashMap;
use std::io::{self, Write};
use std::time::SystemTime;

use super::xml::{begin, write_host};
use crate::metric::ValueType;
use crate::store::{HostView, MetricView, Store, View, seconds_between};
use crate::wire::format::format_value;
use crate::wire::xml::escape_attribute;

/// The longest request line read, as gmetad's `REQUESTLEN`; a longer one is refused.
pub(crate) const MAX_REQUEST_LINE: usize = 2048;

/// Characters gmetad refuses anywhere in a path.
const ILLEGAL: &[char] = &[
    '>', '!', '@', '#', '$', '%', '`', ';', '|', '"', '\\', '\'', '<',
];

/// A request the port answers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    /// The path's elements: `/a/b/` is `["a", "b"]`.
    pub elements: Vec<String>,
    pub summary: bool,
    /// Asked as `GET ... HTTP/1.x`: a missing element shows nothing, `*` is a wildcard.
    pub http: bool,
}

/// Why a request gets no answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub(crate) enum BadRequest {
    #[error("empty request")]
    Empty,
    #[error("a GET request that does not end in HTTP/1.0 or HTTP/1.1")]
    BadHttp,
    #[error("the path does not start with /")]
    NotAPath,
    #[error("a character gmetad refuses in the path")]
    IllegalCharacter,
    #[error("a filter without `=`")]
    BadFilter,
    #[error("/status is gmetad's own and is not served")]
    Status,
}

/// Parses one request line (without its line end), as gmetad's `process_request`.
pub(crate) fn parse_request(line: &str) -> Result<Request, BadRequest> {
    if line.is_empty() {
        return Err(BadRequest::Empty);
    }
    let (path, http) = match line.strip_prefix("GET ") {
        Some(rest) if line.len() >= 12 => {
            let path = rest
                .strip_suffix(" HTTP/1.0")
                .or_else(|| rest.strip_suffix(" HTTP/1.1"))
                .ok_or(BadRequest::BadHttp)?;
            (path, true)
        }
        _ => (line, false),
    };
    if !path.starts_with('/') {
        return Err(BadRequest::NotAPath);
    }
    if path.len() >= 7 && path[..7].eq_ignore_ascii_case("/status") {
        return Err(BadRequest::Status);
    }
    if path.contains(ILLEGAL) {
        return Err(BadRequest::IllegalCharacter);
    }
    let (path, summary) = match path.split_once('?') {
        Some((path, filter)) => {
            let (_, name) = filter.split_once('=').ok_or(BadRequest::BadFilter)?;
            (path, name == "summary")
        }
        None => (path, false),
    };
    // gmetad takes the text between slashes as an element, so `//` holds an empty one
    // (found nowhere); a trailing slash adds none.
    let inner = path[1..].strip_suffix('/').unwrap_or(&path[1..]);
    let elements = if inner.is_empty() {
        Vec::new()
    } else {
        inner.split('/').map(str::to_owned).collect()
    };
    Ok(Request {
        elements,
        summary,
        http,
    })
}

/// The answer to `request` from `store` as of `now`.
pub fn answer(store: &Store, request: &Request, now: SystemTime) -> Vec<u8> {
    let mut out = Vec::with_capacity(16 * 1024);
    // Writing into a Vec cannot fail.
    let _ = store.with_view(|view| write_answer(view, request, now, &mut out));
    out
}

/// What the walk decided to show.
enum Shown<'a> {
    /// The cluster element and everything in it (or its summary).
    Cluster,
    /// The cluster element, empty: an element under it was not found in HTTP form.
    Nothing,
    /// The cluster element with these hosts, each with these metrics (`None`: all of
    /// them, or, under a summary, none).
    Hosts(Vec<(HostView<'a>, Option<Vec<MetricView<'a>>>)>),
}

fn write_answer(
    view: View<'_>,
    request: &Request,
    now: SystemTime,
    out: &mut Vec<u8>,
) -> io::Result<()> {
    let config = view.config();
    let shown = walk(view, request);
    let mut xml = begin(view, now, out)?;
    match &shown {
        Shown::Cluster if request.summary => {}
        Shown::Cluster => {
            for host in view.hosts() {
                write_host(&mut xml, host, None, config, now)?;
            }
        }
        Shown::Nothing => {}
        Shown::Hosts(hosts) => {
            for (host, metrics) in hosts {
                let metrics = match (metrics, request.summary) {
                    (_, true) => Some(&[][..]),
                    (Some(metrics), false) => Some(metrics.as_slice()),
                    (None, false) => None,
                };
                write_host(&mut xml, *host, metrics, config, now)?;
            }
        }
    }
    xml.finish()?;
    if request.summary && matches!(shown, Shown::Cluster) {
        // The writer has no element for a summary: it goes right after the CLUSTER start
        // tag, i.e. before the `</CLUSTER>` that closes the (empty) cluster.
        let mut summary = Vec::new();
        write_summary(view, now, &mut summary)?;
        let close = out
            .windows(b"</CLUSTER>".len())
            .rposition(|window| window == b"</CLUSTER>")
            .unwrap_or(out.len());
        out.splice(close..close, summary);
    }
    Ok(())
}

/// Follows the request's elements down the tree (see the module docs).
fn walk<'a>(view: View<'a>, request: &Request) -> Shown<'a> {
    let mut elements = request.elements.iter();
    let Some(cluster) = elements.next() else {
        return Shown::Cluster;
    };
    let wildcard = |element: &str| request.http && element == "*";
    if *cluster != view.config().cluster.name && !wildcard(cluster) {
        return if request.http {
            Shown::Nothing
        } else {
            Shown::Cluster
        };
    }
    let Some(host_name) = elements.next() else {
        return Shown::Cluster;
    };
    let hosts: Vec<HostView<'a>> = view
        .hosts()
        .filter(|host| wildcard(host_name) || host.name == host_name)
        .collect();
    if hosts.is_empty() {
        return if request.http {
            Shown::Nothing
        } else {
            Shown::Cluster
        };
    }
    let Some(metric_name) = elements.next() else {
        return Shown::Hosts(hosts.into_iter().map(|host| (host, None)).collect());
    };
    let shown = hosts
        .into_iter()
        .map(|host| {
            let metrics: Vec<MetricView<'a>> = host
                .metrics()
                .filter(|metric| wildcard(metric_name) || metric.name == metric_name)
                .collect();
            // Not found: the host in full, or (HTTP) the host alone.
            let metrics = match (metrics.is_empty(), request.http) {
                (true, false) => None,
                _ => Some(metrics),
            };
            (host, metrics)
        })
        .collect();
    Shown::Hosts(shown)
}

/// One numeric metric summed over the hosts up, as gmetad keeps it.
struct Summed<'a> {
    first: MetricView<'a>,
    sum: f64,
    num: u32,
    /// Digits after the point of the first host's value (gmetad's `precision`).
    precision: usize,
    /// Distinct extras over the hosts, in the order met (SPOOF_HOST left out).
    extras: Vec<(&'a str, &'a str)>,
}

/// gmetad's cluster summary: `HOSTS` up and down, then `METRICS` per numeric metric.
fn write_summary(view: View<'_>, now: SystemTime, out: &mut Vec<u8>) -> io::Result<()> {
    let config = view.config();
    let (mut up, mut down) = (0u32, 0u32);
    let mut order: Vec<&str> = Vec::new();
    let mut sums: HashMap<&str, Summed<'_>> = HashMap::new();
    let mut text = String::new();
    for host in view.hosts() {
        // gmetad: a host is up while its TN is under 4 TMAX (always, for TMAX 0).
        let tn = seconds_between(host.last_heard(), now);
        let alive = config.host_tmax == 0 || tn < 4 * u64::from(config.host_tmax);
        if !alive {
            down += 1;
            continue;
        }
        up += 1;
        for metric in host.metrics() {
            let meta = metric.meta;
            if meta.value_type == ValueType::String
                || (meta.dmax > 0 && seconds_between(metric.updated, now) > u64::from(meta.dmax))
            {
                continue;
            }
            // gmetad sums the VAL it read, so sum the value as the XML shows it.
            text.clear();
            format_value(&metric.sample.format, &metric.sample.value, &mut text);
            let value: f64 = text.trim().parse().unwrap_or(0.0);
            let summed = sums.entry(metric.name).or_insert_with(|| {
                order.push(metric.name);
                Summed {
                    first: metric,
                    sum: 0.0,
                    num: 0,
                    precision: text.rfind('.').map_or(0, |dot| text.len() - dot - 1),
                    extras: Vec::new(),
                }
            });
            summed.sum += value;
            summed.num += 1;
            // gmond lists extras reversed from the wire order; so does gmetad's copy.
            for (name, value) in meta.extras.iter().rev() {
                let pair = (name.as_str(), value.as_str());
                if name != "SPOOF_HOST" && !summed.extras.contains(&pair) {
                    summed.extras.push(pair);
                }
            }
        }
    }
    writeln!(
        out,
        "<HOSTS UP=\"{up}\" DOWN=\"{down}\" SOURCE=\"gmetad\"/>"
    )?;
    let mut escaped = String::new();
    let mut attr = |value: &str| {
        escaped.clear();
        escape_attribute(value, &mut escaped);
        escaped.clone()
    };
    for name in order {
        let summed = &sums[name];
        let meta = summed.first.meta;
        let sum = match meta.value_type {
            ValueType::Float | ValueType::Double => {
                format!("{:.*}", summed.precision, summed.sum)
            }
            _ => format!("{:.0}", summed.sum),
        };
        writeln!(
            out,
            "<METRICS NAME=\"{}\" SUM=\"{sum}\" NUM=\"{}\" TYPE=\"double\" UNITS=\"{}\" SLOPE=\"{}\" SOURCE=\"gmond\">",
            attr(name),
            summed.num,
            attr(&meta.units),
            meta.slope.gmond_name(),
        )?;
        writeln!(out, "<EXTRA_DATA>")?;
        for (key, value) in &summed.extras {
            writeln!(
                out,
                "<EXTRA_ELEMENT NAME=\"{}\" VAL=\"{}\"/>",
                attr(key),
                attr(value)
            )?;
        }
        writeln!(out, "</EXTRA_DATA>\n</METRICS>")?;
    }
    Ok(())
}

#[cfg(test)]
mod tests;
