//! The store as a Prometheus exposition: OpenMetrics 1.0.0 text or the Prometheus text
//! format 0.0.4, encoded by `prometheus-client` through a custom [`Collector`] that reads
//! the store in place (no copy of the metrics is made per scrape). Sans-IO: the HTTP
//! server in `net::prometheus` only picks the [`Format`] and hands out the text.
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

use std::collections::HashMap;
use std::fmt::Write as _;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::SystemTime;

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, NoLabelSet};
use prometheus_client::metrics::MetricType;
use prometheus_client::registry::{Registry, Unit};

use crate::metric::{MetricValue, Slope, ValueType};
use crate::store::{HostView, MetricView, Store, View};
use crate::wire::format::format_value;

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
            Format::Text => prometheus_client::encoding::prometheus_text::CONTENT_TYPE,
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
    let dropped = Arc::new(AtomicUsize::new(0));
    let mut registry = Registry::default();
    registry.register_collector(Box::new(StoreCollector {
        store: Arc::clone(store),
        now,
        format,
        dropped: Arc::clone(&dropped),
    }));
    let mut text = String::with_capacity(1 << 16);
    // Encoding into a String fails only if the collector does, which it does not.
    let _ = match format {
        Format::OpenMetrics => prometheus_client::encoding::text::encode(&mut text, &registry),
        Format::Text => prometheus_client::encoding::prometheus_text::encode(&mut text, &registry),
    };
    Exposition {
        text,
        dropped: dropped.load(Ordering::Relaxed),
    }
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

/// The OpenMetrics base unit Ganglia `units` name, if they name one without scaling.
pub(crate) fn base_unit(units: &str) -> Option<Unit> {
    let unit = match units.trim().to_ascii_lowercase().as_str() {
        "b" | "byte" | "bytes" => Unit::Bytes,
        "s" | "sec" | "secs" | "second" | "seconds" => Unit::Seconds,
        "j" | "joule" | "joules" => Unit::Joules,
        "v" | "volt" | "volts" => Unit::Volts,
        "a" | "amp" | "amps" | "ampere" | "amperes" => Unit::Amperes,
        "celsius" | "degc" => Unit::Celsius,
        "g" | "gram" | "grams" => Unit::Grams,
        "m" | "meter" | "meters" | "metre" | "metres" => Unit::Meters,
        // Prometheus' naming conventions say `ratio` (prometheus-client's `Ratios` is
        // "ratios"), and promtool checks names against them.
        "ratio" | "ratios" => Unit::Other("ratio".to_owned()),
        _ => return None,
    };
    Some(unit)
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

    fn metric_type(self) -> MetricType {
        match self {
            Kind::Counter => MetricType::Counter,
            Kind::Gauge => MetricType::Gauge,
            Kind::Info => MetricType::Info,
        }
    }

    /// Suffixes the encoder puts after the family name on the sample lines.
    fn sample_suffixes(self) -> &'static [&'static str] {
        match self {
            Kind::Counter => &["_total", "_created"],
            Kind::Gauge => &[""],
            Kind::Info => &["_info"],
        }
    }
}

#[derive(Debug)]
struct StoreCollector {
    store: Arc<Store>,
    now: SystemTime,
    format: Format,
    dropped: Arc<AtomicUsize>,
}

impl Collector for StoreCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        self.store.with_view(|view| {
            let families = Families::collect(view, self.now, self.format);
            self.dropped.store(families.dropped, Ordering::Relaxed);
            families.encode(view, &mut encoder)
        })
    }
}

/// One metric family: every host's metric that maps to one Prometheus name.
pub(super) struct Family<'a> {
    /// The name without the unit suffix (the encoder appends `_<unit>`).
    stem: String,
    pub(super) kind: Kind,
    unit: Option<Unit>,
    help: String,
    pub(super) members: Vec<(HostView<'a>, MetricView<'a>)>,
}

/// The store's live metrics as families: what both the exposition and the
/// remote-write requests ([`super::remote_write`]) are made of.
pub(super) struct Families<'a> {
    pub(super) list: Vec<Family<'a>>,
    pub(super) dropped: usize,
}

impl<'a> Families<'a> {
    /// Groups the store's live metrics into families, in host then metric order.
    pub(super) fn collect(view: View<'a>, now: SystemTime, format: Format) -> Families<'a> {
        let config = view.config();
        let mut list: Vec<Family<'a>> = Vec::new();
        // Family names and sample names, each to the family that owns it.
        let mut claimed: HashMap<String, usize> = HashMap::new();
        let mut dropped = 0;
        let (mut stem, mut name) = (String::new(), String::new());
        for host in view.hosts() {
            if expired(host.last_heard(), now, config.host_dmax) {
                continue;
            }
            for metric in host.metrics() {
                if expired(metric.updated, now, metric.meta.dmax) {
                    continue;
                }
                let kind = Kind::of(metric.meta.value_type, metric.meta.slope);
                if kind == Kind::Counter && !number(&metric.sample.value).is_some_and(|v| v >= 0.0)
                {
                    dropped += 1;
                    continue;
                }
                let unit = base_unit(&metric.meta.units);
                sanitize_name(metric.name, &mut stem);
                strip_suffix(&mut stem, kind, unit.as_ref());
                family_name(&stem, unit.as_ref(), &mut name);
                let index = match claimed.get(name.as_str()) {
                    Some(&index) => index,
                    None => {
                        let index = list.len();
                        let taken = kind
                            .sample_suffixes()
                            .iter()
                            .map(|suffix| format!("{name}{suffix}"))
                            .chain([name.clone()]);
                        let taken: Vec<String> = taken.collect();
                        if taken.iter().any(|n| claimed.contains_key(n)) {
                            dropped += 1;
                            continue;
                        }
                        for n in taken {
                            claimed.insert(n, index);
                        }
                        list.push(Family {
                            stem: stem.clone(),
                            kind,
                            unit: unit.clone(),
                            help: help(metric, unit.is_some(), format),
                            members: Vec::new(),
                        });
                        index
                    }
                };
                let family = &mut list[index];
                if family.kind != kind || family.unit != unit {
                    dropped += 1;
                    continue;
                }
                family.members.push((host, metric));
            }
        }
        list.sort_by(|a, b| a.stem.cmp(&b.stem));
        Families { list, dropped }
    }

    fn encode(&self, view: View<'_>, encoder: &mut DescriptorEncoder) -> std::fmt::Result {
        let cluster = view.config().cluster.name.as_str();
        let mut groups = String::new();
        let mut text = String::new();
        for family in &self.list {
            let mut metric_encoder = encoder.encode_descriptor(
                &family.stem,
                &family.help,
                family.unit.as_ref(),
                family.kind.metric_type(),
            )?;
            for (host, metric) in &family.members {
                join_groups(*metric, &mut groups);
                let labels = labels(cluster, host.name, &groups, metric.name);
                let mut sample = metric_encoder.encode_family(&labels)?;
                let value = sample_value(family.kind, &metric.sample.value);
                match family.kind {
                    Kind::Info => {
                        info_text(*metric, &mut text);
                        sample.encode_info(&[("value", text.as_str())])?;
                    }
                    Kind::Counter => {
                        sample.encode_counter::<NoLabelSet, f64, f64>(&value, None)?;
                    }
                    Kind::Gauge => sample.encode_gauge(&value)?,
                }
            }
        }
        Ok(())
    }
}

impl Family<'_> {
    /// The name of the family's samples as the exposition writes them: the stem, `_<unit>`
    /// when it has one, then the kind's suffix (`_total`, `_info`).
    pub(super) fn sample_name(&self) -> String {
        let mut name = String::with_capacity(self.stem.len() + 16);
        family_name(&self.stem, self.unit.as_ref(), &mut name);
        name.push_str(self.kind.sample_suffixes()[0]);
        name
    }
}

/// A sample's labels but the info metric's `value`: cluster, host, groups, Ganglia name.
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

/// The sample's value: a counter's number (never negative: see [`Families::collect`]),
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

/// Whether something last updated at `updated` is past its `dmax` (0 = never) at `now`.
fn expired(updated: SystemTime, now: SystemTime, dmax: u32) -> bool {
    dmax > 0
        && now
            .duration_since(updated)
            .is_ok_and(|age| age.as_secs() > u64::from(dmax))
}

/// Drops a suffix the encoder adds itself, so `bytes_total` (a counter in bytes) does
/// not come out as `bytes_bytes_total_total`.
fn strip_suffix(stem: &mut String, kind: Kind, unit: Option<&Unit>) {
    let own = match kind {
        Kind::Counter => "_total",
        Kind::Info => "_info",
        Kind::Gauge => "",
    };
    if !own.is_empty() && stem.len() > own.len() && stem.ends_with(own) {
        stem.truncate(stem.len() - own.len());
    }
    if let Some(unit) = unit {
        let suffix = unit.as_str();
        let cut = stem.len().saturating_sub(suffix.len() + 1);
        if cut > 0 && stem[cut..].strip_prefix('_') == Some(suffix) {
            stem.truncate(cut);
        }
    }
}

/// The family's name: the stem, with `_<unit>` when it has a unit.
fn family_name(stem: &str, unit: Option<&Unit>, out: &mut String) {
    out.clear();
    out.push_str(stem);
    if let Some(unit) = unit {
        out.push('_');
        out.push_str(unit.as_str());
    }
}

/// The HELP text: DESC, else TITLE, else the name; units without a base unit appended.
/// The OpenMetrics encoder writes HELP as given, so it is escaped here (`\`, newline and
/// `"`, as OpenMetrics requires); the text encoder escapes it itself.
fn help(metric: MetricView<'_>, unit_in_name: bool, format: Format) -> String {
    let meta = metric.meta;
    let mut help = [meta.description(), meta.title()]
        .into_iter()
        .flatten()
        .find(|text| !text.trim().is_empty())
        .unwrap_or(metric.name)
        .to_owned();
    let units = meta.units.trim();
    if !unit_in_name && !units.is_empty() {
        let _ = write!(help, " (units: {units})");
    }
    if format == Format::Text {
        return help;
    }
    let mut escaped = String::with_capacity(help.len());
    for c in help.chars() {
        match c {
            '\\' => escaped.push_str("\\\\"),
            '\n' => escaped.push_str("\\n"),
            '"' => escaped.push_str("\\\""),
            c => escaped.push(c),
        }
    }
    escaped
}

#[cfg(test)]
mod tests;
