//! What the exposition makes of a metric's name and metadata alone, kept in the store
//! beside the metadata (`MetricView::meta_rendered`) so that a scrape does not make it
//! again: the family name, the type and unit, the escaped `group` and `ganglia_name`
//! labels and the escaped HELP. The store empties it when the metadata change.
//!
//! It is one string per metric scraped (about 130 bytes for a metric with a DESC and a
//! group), read in one go: before it, a scrape of a large store was dominated by the
//! cache misses of the first read of each metric's strings (units, groups, DESC spread
//! over the heap), and by sanitizing and escaping them. The string is
//! `<kind><unit><name>\n<labels>\n<help>\n<help in OpenMetrics>`: the kind and unit one
//! character each, then pieces that can hold no newline (the name is sanitized, the
//! others are escaped, which spells a newline `\n`). The OpenMetrics HELP, which also
//! escapes `"`, is empty when it is the same as the 0.0.4 one.

use super::text::push_escaped;
use super::{Kind, UNITS, base_unit};
use crate::store::MetricView;

/// A metric's exposition pieces, borrowed from the store.
#[derive(Clone, Copy)]
pub(in crate::export) struct Memo<'a> {
    pub(in crate::export) kind: Kind,
    pub(in crate::export) unit: Option<&'static str>,
    /// The family's name: the sanitized name without the suffixes the exposition adds,
    /// then `_<unit>` when it has one.
    pub(in crate::export) name: &'a str,
    /// `group="…",ganglia_name="…"`, escaped.
    pub(in crate::export) labels: &'a str,
    rest: &'a str,
}

impl<'a> Memo<'a> {
    /// The metric's pieces, made now if the store does not have them yet.
    pub(in crate::export) fn of(metric: MetricView<'a>) -> Memo<'a> {
        let block = metric.meta_rendered.get_or_init(|| render(metric));
        let (head, rest) = block.split_at(2);
        let mut head = head.bytes();
        let kind = match head.next() {
            Some(b'c') => Kind::Counter,
            Some(b'i') => Kind::Info,
            _ => Kind::Gauge,
        };
        let unit = head
            .next()
            .and_then(|code| UNITS.get(usize::from(code.wrapping_sub(b'0'))))
            .map(|(unit, _)| *unit);
        let (name, rest) = rest.split_once('\n').unwrap_or((rest, ""));
        let (labels, rest) = rest.split_once('\n').unwrap_or((rest, ""));
        Memo {
            kind,
            unit,
            name,
            labels,
            rest,
        }
    }

    /// HELP, escaped for OpenMetrics (`quote`) or 0.0.4: the metric's DESC, else its
    /// TITLE, else its name; units that are not in the name appended as `(units: KB)`.
    pub(in crate::export) fn help(&self, quote: bool) -> &'a str {
        let (text, open_metrics) = self.rest.split_once('\n').unwrap_or((self.rest, ""));
        if quote && !open_metrics.is_empty() {
            open_metrics
        } else {
            text
        }
    }
}

fn render(metric: MetricView<'_>) -> Box<str> {
    let meta = metric.meta;
    let kind = Kind::of(meta.value_type, meta.slope);
    let unit = base_unit(&meta.units);
    let mut out = String::new();
    out.push(match kind {
        Kind::Counter => 'c',
        Kind::Gauge => 'g',
        Kind::Info => 'i',
    });
    let code = UNITS.iter().position(|(base, _)| Some(*base) == unit);
    out.push(code.map_or('-', |code| char::from(b'0' + code as u8)));

    let mut name = String::new();
    super::sanitize_name(metric.name, &mut name);
    super::strip_suffix(&mut name, kind, unit);
    out.push_str(&name);
    if let Some(unit) = unit {
        out.push('_');
        out.push_str(unit);
    }

    out.push_str("\ngroup=\"");
    for (i, group) in meta.groups().enumerate() {
        if i > 0 {
            out.push(',');
        }
        push_escaped(&mut out, group, true);
    }
    out.push_str("\",ganglia_name=\"");
    push_escaped(&mut out, metric.name, true);
    out.push('"');

    let text = [meta.description(), meta.title()]
        .into_iter()
        .flatten()
        .find(|text| !text.trim().is_empty())
        .unwrap_or(metric.name);
    let units = meta.units.trim();
    let units = (unit.is_none() && !units.is_empty()).then_some(units);
    for quote in [false, true] {
        out.push('\n');
        if quote && !text.contains('"') && !units.is_some_and(|units| units.contains('"')) {
            break;
        }
        push_escaped(&mut out, text, quote);
        if let Some(units) = units {
            out.push_str(" (units: ");
            push_escaped(&mut out, units, quote);
            out.push(')');
        }
    }
    out.into_boxed_str()
}
