//! The store as a Prometheus exposition: OpenMetrics 1.0.0 text or the Prometheus text
//! format 0.0.4, read from the store in place (no copy of the metrics is made per
//! scrape). Sans-IO: the HTTP server in `net::prometheus` only picks the [`Format`] and
//! hands out the text. [`families`] groups the store's metrics into families (shared
//! with remote write), [`text`] writes them (and says why wasmond writes the formats
//! itself rather than through `prometheus-client`).
//!
//! How a Ganglia metric becomes a Prometheus one:
//! - **Name**: the Ganglia name with every character outside `[a-zA-Z0-9_]` replaced by
//!   `_` (and `_` put before a leading digit); the original is kept in the
//!   `ganglia_name` label, so two names that sanitize alike stay two series.
//! - **Labels**: `cluster`, `host`, `group` (the metric's groups, comma-separated) and
//!   `ganglia_name`.
//! - **Type** from the slope: `positive` → counter (`_total`); `derivative` → counter
//!   too, since its value is a running total whose rate the consumer derives (an RRD
//!   DERIVE; a decrease is a counter reset to Prometheus); `zero`, `both`, `negative`,
//!   `unspecified` → gauge. A string metric becomes an info metric,
//!   `<name>_info{...,value="<the string>"} 1` (a gauge named `<name>_info` in 0.0.4).
//! - **HELP**: the metric's DESC, else its TITLE, else its name; units that have no
//!   OpenMetrics base unit are appended as `(units: KB)`.
//! - **UNIT**: units that are an OpenMetrics base unit as they are (`bytes`, `s`/`sec`
//!   → `seconds`, ...) give the `_<unit>` suffix and a `# UNIT` line; others (`KB`,
//!   `%`, `bytes/sec`) are never rescaled, so they stay in HELP only.
//! - **Staleness**: hosts silent past `host_dmax` and metrics not updated past their
//!   DMAX are left out, even before the store's next sweep deletes them. No timestamps
//!   are sent: Prometheus stamps each scrape.
//!
//! Conflicts that would make the whole exposition invalid are resolved by dropping the
//! later metric (hosts by name, then metrics by name) and counting it in
//! [`Exposition::dropped`]: a name whose family already has another type or unit, a
//! sample name another family already uses (`foo_total` as a gauge next to counter
//! `foo`), a counter with a negative or NaN value.

use std::sync::Arc;
use std::time::SystemTime;

use crate::metric::{MetricValue, Slope, ValueType};
use crate::store::{MetricView, Store};
use crate::wire::format::format_value;

pub(super) mod families;
mod memo;
mod text;

/// The two text formats Prometheus scrapes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// `application/openmetrics-text; version=1.0.0`: with `# UNIT` and `# EOF`.
    OpenMetrics,
    /// `text/plain; version=0.0.4`: what every Prometheus-compatible scraper reads.
    Text,
}

impl Format {
    pub(crate) fn content_type(self) -> &'static str {
        match self {
            Format::OpenMetrics => "application/openmetrics-text; version=1.0.0; charset=utf-8",
            Format::Text => "text/plain; version=0.0.4; charset=utf-8",
        }
    }

    /// The format an HTTP `Accept` header prefers: the acceptable media range with the
    /// highest `q` (the first on a tie). OpenMetrics is acceptable as
    /// `application/openmetrics-text` without a version or with `version=1.0.0`; the
    /// text format as `text/plain` (no version or `0.0.4`), `text/*` or `*/*`. Without
    /// a header, or with nothing acceptable in it, the text format, as client_golang
    /// answers.
    pub(crate) fn negotiate(accept: Option<&str>) -> Format {
        let mut best: Option<(f32, Format)> = None;
        for range in accept.unwrap_or_default().split(',') {
            let mut parts = range.split(';').map(str::trim);
            let media = parts.next().unwrap_or_default().to_ascii_lowercase();
            let (mut q, mut version) = (1.0f32, None);
            for param in parts {
                let Some((key, value)) = param.split_once('=') else {
                    continue;
                };
                let value = value.trim().trim_matches('"');
                match key.trim().to_ascii_lowercase().as_str() {
                    "q" => q = value.parse().unwrap_or(0.0),
                    "version" => version = Some(value.to_owned()),
                    _ => {}
                }
            }
            let format = match (media.as_str(), version.as_deref()) {
                ("application/openmetrics-text", None | Some("1.0.0")) => Format::OpenMetrics,
                ("text/plain", None | Some("0.0.4")) | ("text/*" | "*/*", _) => Format::Text,
                _ => continue,
            };
            if q > 0.0 && best.is_none_or(|(best_q, _)| q > best_q) {
                best = Some((q, format));
            }
        }
        best.map_or(Format::Text, |(_, format)| format)
    }
}

/// One rendered exposition.
#[derive(Debug, Clone, PartialEq)]
pub struct Exposition {
    pub text: String,
    /// Metrics left out to keep the exposition valid (see the module docs).
    pub dropped: usize,
}

/// The exposition of every metric of `store` as of `now`.
pub fn render(store: &Arc<Store>, now: SystemTime, format: Format) -> Exposition {
    store.with_view(|view| text::render(view, now, format))
}

/// A Ganglia name made a valid Prometheus metric name (see the module docs), into `out`.
pub(crate) fn sanitize_name(name: &str, out: &mut String) {
    out.clear();
    if name.is_empty() || name.starts_with(|c: char| c.is_ascii_digit()) {
        out.push('_');
    }
    out.extend(
        name.chars()
            .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' }),
    );
}

/// The OpenMetrics base units, each with the Ganglia `units` that name it without scaling.
const UNITS: [(&str, &[&str]); 9] = [
    ("bytes", &["b", "byte", "bytes"]),
    ("seconds", &["s", "sec", "secs", "second", "seconds"]),
    ("joules", &["j", "joule", "joules"]),
    ("volts", &["v", "volt", "volts"]),
    ("amperes", &["a", "amp", "amps", "ampere", "amperes"]),
    ("celsius", &["celsius", "degc"]),
    ("grams", &["g", "gram", "grams"]),
    ("meters", &["m", "meter", "meters", "metre", "metres"]),
    // Prometheus' naming conventions say `ratio`, and promtool checks names against them.
    ("ratio", &["ratio", "ratios"]),
];

/// The OpenMetrics base unit Ganglia `units` name, if they name one without scaling.
pub(crate) fn base_unit(units: &str) -> Option<&'static str> {
    let units = units.trim();
    UNITS
        .iter()
        .find(|(_, spellings)| spellings.iter().any(|s| s.eq_ignore_ascii_case(units)))
        .map(|(unit, _)| *unit)
}

/// What a metric becomes (see the module docs).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    Counter,
    Gauge,
    Info,
}

impl Kind {
    pub fn of(value_type: ValueType, slope: Slope) -> Kind {
        match (value_type, slope) {
            (ValueType::String, _) => Kind::Info,
            (_, Slope::Positive | Slope::Derivative) => Kind::Counter,
            _ => Kind::Gauge,
        }
    }

    /// What `# TYPE` says.
    fn type_name(self, format: Format) -> &'static str {
        match (self, format) {
            (Kind::Counter, _) => "counter",
            (Kind::Gauge, _) | (Kind::Info, Format::Text) => "gauge",
            (Kind::Info, Format::OpenMetrics) => "info",
        }
    }

    /// The suffix of the family's samples' name: `_total`, `_info` or none.
    pub(super) fn sample_suffix(self) -> &'static str {
        match self {
            Kind::Counter => "_total",
            Kind::Gauge => "",
            Kind::Info => "_info",
        }
    }

    /// The suffixes of the names a family of this kind claims besides its own: its
    /// samples' (and a counter's `_created`, which OpenMetrics reserves for it).
    fn claimed_suffixes(self) -> &'static [&'static str] {
        match self {
            Kind::Counter => &["_total", "_created"],
            Kind::Gauge => &[],
            Kind::Info => &["_info"],
        }
    }
}

/// A sample's labels but the info metric's `value`: cluster, host, groups, Ganglia name
/// (in the order the exposition writes them too).
pub(super) fn labels<'a>(
    cluster: &'a str,
    host: &'a str,
    groups: &'a str,
    ganglia_name: &'a str,
) -> [(&'static str, &'a str); 4] {
    [
        ("cluster", cluster),
        ("host", host),
        ("group", groups),
        ("ganglia_name", ganglia_name),
    ]
}

/// The metric's groups, comma-separated, into `out`.
pub(super) fn join_groups(metric: MetricView<'_>, out: &mut String) {
    out.clear();
    for (i, group) in metric.meta.groups().enumerate() {
        if i > 0 {
            out.push(',');
        }
        out.push_str(group);
    }
}

/// The info metric's `value` label: the string, or the number as Ganglia formats it.
pub(super) fn info_text(metric: MetricView<'_>, out: &mut String) {
    out.clear();
    match &metric.sample.value {
        MetricValue::String(s) => out.push_str(s),
        other => format_value(&metric.sample.format, other, out),
    }
}

/// The sample's value: a counter's number (never negative: see [`families::Families::collect`]),
/// a gauge's (NaN when it spells none), 1 for an info metric.
pub(super) fn sample_value(kind: Kind, value: &MetricValue) -> f64 {
    match kind {
        Kind::Info => 1.0,
        Kind::Counter => number(value).unwrap_or_default(),
        Kind::Gauge => number(value).unwrap_or(f64::NAN),
    }
}

/// A numeric metric's value. gmetric sends every value as a string packet (the metadata
/// carries the type), so a string is read as the number it spells; one that spells none
/// is `None`.
fn number(value: &MetricValue) -> Option<f64> {
    match value {
        MetricValue::String(text) => text.trim().parse().ok(),
        other => other.as_f64(),
    }
}

/// Drops a suffix the exposition adds itself, so `bytes_total` (a counter in bytes) does
/// not come out as `bytes_bytes_total_total`.
fn strip_suffix(stem: &mut String, kind: Kind, unit: Option<&str>) {
    let own = kind.sample_suffix();
    if !own.is_empty() && stem.len() > own.len() && stem.ends_with(own) {
        stem.truncate(stem.len() - own.len());
    }
    if let Some(suffix) = unit {
        let cut = stem.len().saturating_sub(suffix.len() + 1);
        if cut > 0 && stem[cut..].strip_prefix('_') == Some(suffix) {
            stem.truncate(cut);
        }
    }
}

#[cfg(test)]
mod tests;
