//! The exposition writer: the store's [`Families`] as OpenMetrics 1.0.0 or Prometheus
//! text 0.0.4.
//!
//! Written here rather than by `prometheus-client`'s encoder, which the exposition used
//! at first: that encoder takes each family through a `Collector` and each label
//! through `fmt::Write` and an `EncodeLabelSet`, and with the family building around it
//! a scrape of 10 000 metrics cost about 3.5 times the CPU of the same store's XML (see
//! `docs/exports.md`). Here the cluster name is escaped once per scrape, a host's name
//! once per host, and what comes from a metric's name and metadata alone (its family's
//! name, its `group` and `ganglia_name` labels, HELP) is escaped once per metric and
//! kept in the store ([`super::memo`]): a sample costs no allocation, and most of it is
//! copied from one string. The output is what that encoder wrote, byte for byte: the
//! label order, the numbers (`dtoa`, as it used) and the escapes of both formats
//! (compared on random stores before the encoder was removed; the tests pin it).
//!
//! Escaping, as both formats define it: a label value escapes `\`, `"` and newline
//! (`\\`, `\"`, `\n`); HELP escapes `\` and newline, and in OpenMetrics `"` too.
//! Metric and label names need none: names are sanitized to `[a-zA-Z0-9_]`
//! ([`super::sanitize_name`]) and label names are fixed.

use std::ops::Range;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::SystemTime;

use super::families::{Families, Found};
use super::{Exposition, Format, Kind, info_text, sample_value};
use crate::metric::MetricValue;
use crate::store::View;

/// The size of the last exposition, so the next one is allocated once (a hint: a
/// daemon has one store, and its size changes slowly).
static LAST_LEN: AtomicUsize = AtomicUsize::new(0);

/// The exposition of the live metrics of `view` as of `now`, in `format`.
///
/// Each sample line (after its family's HELP and TYPE when it founds the family) is
/// written as the store is read, in store order, then the lines are copied out in family
/// order: a copy of the text costs less than reading every metric of the store twice.
pub(super) fn render<'a>(view: View<'a>, now: SystemTime, format: Format) -> Exposition {
    let capacity = LAST_LEN.load(Ordering::Relaxed) + 4096;
    let mut writer = Writer {
        lines: String::with_capacity(capacity),
        format,
        cluster: String::new(),
        host: None,
        text: String::new(),
    };
    push_escaped(&mut writer.cluster, &view.config().cluster.name, true);
    let families = Families::collect(view, now, |found| writer.member(found));
    let mut text = String::with_capacity(writer.lines.len() + 8);
    for family in families.iter() {
        for lines in families.members(family) {
            text.push_str(&writer.lines[lines.clone()]);
        }
    }
    if format == Format::OpenMetrics {
        text.push_str("# EOF\n");
    }
    LAST_LEN.store(text.len(), Ordering::Relaxed);
    Exposition {
        text,
        dropped: families.dropped,
    }
}

struct Writer<'a> {
    /// Every member's lines, in store order.
    lines: String,
    format: Format,
    /// The cluster's name, escaped as a label value.
    cluster: String,
    /// The last host's name, and its labels: `cluster="…",host="…",`.
    host: Option<(&'a str, String)>,
    /// An info metric's value as text.
    text: String,
}

impl<'a> Writer<'a> {
    /// Writes a member's lines: its family's HELP, TYPE (and UNIT) when it is the first,
    /// then its sample.
    fn member(&mut self, found: Found<'_, 'a>) -> Range<usize> {
        let start = self.lines.len();
        if found.first {
            self.family(&found);
        }
        self.sample(&found);
        start..self.lines.len()
    }

    fn family(&mut self, found: &Found<'_, '_>) {
        let (name, family) = (found.memo.name, found.family);
        // The 0.0.4 format names a family by its samples' name, `_total` and all.
        let described = match self.format {
            Format::OpenMetrics => "",
            Format::Text => family.kind.sample_suffix(),
        };
        let help = found.memo.help(self.format == Format::OpenMetrics);
        let out = &mut self.lines;
        for part in ["# HELP ", name, described, " ", help, "\n# TYPE ", name] {
            out.push_str(part);
        }
        for part in [described, " ", family.kind.type_name(self.format), "\n"] {
            out.push_str(part);
        }
        if let (Format::OpenMetrics, Some(unit)) = (self.format, family.unit) {
            for part in ["# UNIT ", name, " ", unit, "\n"] {
                out.push_str(part);
            }
        }
    }

    fn sample(&mut self, found: &Found<'_, 'a>) {
        let (host, metric) = (found.member.host, found.member.metric);
        let kind = found.family.kind;
        let info = match (kind, &metric.sample.value) {
            (Kind::Info, MetricValue::String(text)) => Some(text.as_str()),
            (Kind::Info, _) => {
                info_text(metric, &mut self.text);
                Some(self.text.as_str())
            }
            _ => None,
        };
        let host_labels = match &mut self.host {
            // The same string in the store: hosts are read one after the other.
            Some((name, labels)) if std::ptr::eq(*name, host.name) => labels,
            other => {
                let mut labels = String::new();
                for part in ["cluster=\"", &self.cluster, "\",host=\""] {
                    labels.push_str(part);
                }
                push_escaped(&mut labels, host.name, true);
                labels.push_str("\",");
                &mut other.insert((host.name, labels)).1
            }
        };
        let out = &mut self.lines;
        out.push_str(found.memo.name);
        out.push_str(kind.sample_suffix());
        out.push('{');
        // prometheus-client put an info metric's own label first in OpenMetrics and last
        // in 0.0.4; the order means nothing to a reader, but it is kept.
        if let (Some(text), Format::OpenMetrics) = (info, self.format) {
            out.push_str("value=\"");
            push_escaped(out, text, true);
            out.push_str("\",");
        }
        out.push_str(host_labels);
        out.push_str(found.memo.labels);
        if let (Some(text), Format::Text) = (info, self.format) {
            out.push_str(",value=\"");
            push_escaped(out, text, true);
            out.push('"');
        }
        out.push_str("} ");
        if info.is_some() {
            out.push('1');
        } else {
            push_number(out, sample_value(kind, &metric.sample.value), self.format);
        }
        out.push('\n');
    }
}

/// Appends `text` with `\` and newline escaped (`\\`, `\n`), and `"` (`\"`) when
/// `quote`: a label value (`quote`), or HELP (`quote` in OpenMetrics only).
pub(super) fn push_escaped(out: &mut String, text: &str, quote: bool) {
    let special = |byte: &u8| matches!(byte, b'\\' | b'\n') || (quote && *byte == b'"');
    let mut rest = text;
    while let Some(at) = rest.as_bytes().iter().position(special) {
        out.push_str(&rest[..at]);
        out.push_str(match rest.as_bytes()[at] {
            b'\\' => "\\\\",
            b'\n' => "\\n",
            _ => "\\\"",
        });
        rest = &rest[at + 1..];
    }
    out.push_str(rest);
}

/// A sample's value: the shortest decimal that reads back as `value` (`1200.0`,
/// `0.5`, `1e-7`); NaN and the infinities as prometheus-client spelled them (`NaN`,
/// `+Inf` and `-Inf` in 0.0.4; `NaN`, `inf` and `-inf` in OpenMetrics).
fn push_number(out: &mut String, value: f64, format: Format) {
    let mut buffer = dtoa::Buffer::new();
    out.push_str(match format {
        Format::OpenMetrics => buffer.format(value),
        Format::Text if value.is_finite() => buffer.format_finite(value),
        Format::Text if value.is_nan() => "NaN",
        Format::Text if value > 0.0 => "+Inf",
        Format::Text => "-Inf",
    });
}
