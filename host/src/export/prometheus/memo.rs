//! What the exposition makes of a metric's name and metadata alone, kept in the store
//! beside the metadata (`MetricView::meta_rendered`) so that a scrape does not make it
//! again: the family name, the type and unit, the escaped `group` and `ganglia_name`
//! labels and the escaped HELP. The store empties it when the metadata change.
//!
//! It is one string per metric scraped (about 130 bytes for a metric with a DESC and a
//! group), read in one go: before it, a scrape of a large store was dominated by the
//! cache misses of the first read of each metric's strings (units, groups, DESC spread
//! over the heap), and by sanitizing and escaping them. The string is a header, then
//! the name, the labels, HELP and HELP for OpenMetrics one after the other. The header
//! is the kind and the unit one character each, then the lengths of the first three
//! pieces, each in ASCII six bits to a byte (low bits first, `0x40` on every byte but
//! the last), so that finding a piece costs no scan. The OpenMetrics HELP, which also
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
    /// HELP for 0.0.4, and for OpenMetrics when it differs (else empty).
    help: (&'a str, &'a str),
}

impl<'a> Memo<'a> {
    /// The metric's pieces, made now if the store does not have them yet.
    pub(in crate::export) fn of(metric: MetricView<'a>) -> Memo<'a> {
        let block: &str = metric.meta_rendered.get_or_init(|| render(metric));
        let bytes = block.as_bytes();
        let kind = match bytes[0] {
            b'c' => Kind::Counter,
            b'i' => Kind::Info,
            _ => Kind::Gauge,
        };
        let unit = UNITS
            .get(usize::from(bytes[1].wrapping_sub(b'0')))
            .map(|(unit, _)| *unit);
        let mut at = 2;
        let mut piece = [0; 3];
        for len in &mut piece {
            *len = read_len(bytes, &mut at);
        }
        let (name, rest) = block[at..].split_at(piece[0]);
        let (labels, rest) = rest.split_at(piece[1]);
        Memo {
            kind,
            unit,
            name,
            labels,
            help: rest.split_at(piece[2]),
        }
    }

    /// HELP, escaped for OpenMetrics (`quote`) or 0.0.4: the metric's DESC, else its
    /// TITLE, else its name; units that are not in the name appended as `(units: KB)`.
    pub(in crate::export) fn help(&self, quote: bool) -> &'a str {
        match self.help {
            (_, open_metrics) if quote && !open_metrics.is_empty() => open_metrics,
            (text, _) => text,
        }
    }
}

/// Made in two allocations: the pieces one after the other, then the memo of exactly
/// its size (a store's first scrape makes one for each metric).
fn render(metric: MetricView<'_>) -> Box<str> {
    let meta = metric.meta;
    let kind = Kind::of(meta.value_type, meta.slope);
    let unit = base_unit(&meta.units);

    let mut pieces = String::with_capacity(256);
    super::sanitize_name(metric.name, &mut pieces);
    super::strip_suffix(&mut pieces, kind, unit);
    if let Some(unit) = unit {
        pieces.push('_');
        pieces.push_str(unit);
    }
    let name_len = pieces.len();

    pieces.push_str("group=\"");
    for (i, group) in meta.groups().enumerate() {
        if i > 0 {
            pieces.push(',');
        }
        push_escaped(&mut pieces, group, true);
    }
    pieces.push_str("\",ganglia_name=\"");
    push_escaped(&mut pieces, metric.name, true);
    pieces.push('"');
    let labels_len = pieces.len() - name_len;

    let text = [meta.description(), meta.title()]
        .into_iter()
        .flatten()
        .find(|text| !text.trim().is_empty())
        .unwrap_or(metric.name);
    let units = meta.units.trim();
    let units = (unit.is_none() && !units.is_empty()).then_some(units);
    let mut help = |quote| {
        let start = pieces.len();
        push_escaped(&mut pieces, text, quote);
        if let Some(units) = units {
            pieces.push_str(" (units: ");
            push_escaped(&mut pieces, units, quote);
            pieces.push(')');
        }
        pieces.len() - start
    };
    let help_len = help(false);
    if text.contains('"') || units.is_some_and(|units| units.contains('"')) {
        help(true);
    }

    let lens = [name_len, labels_len, help_len];
    let header = 2 + lens.iter().map(|&len| len_bytes(len)).sum::<usize>();
    let mut out = String::with_capacity(header + pieces.len());
    out.push(match kind {
        Kind::Counter => 'c',
        Kind::Gauge => 'g',
        Kind::Info => 'i',
    });
    let code = UNITS.iter().position(|(base, _)| Some(*base) == unit);
    out.push(code.map_or('-', |code| char::from(b'0' + code as u8)));
    for len in lens {
        push_len(&mut out, len);
    }
    out.push_str(&pieces);
    out.into_boxed_str()
}

/// The bytes [`push_len`] takes for `len`.
fn len_bytes(mut len: usize) -> usize {
    let mut bytes = 1;
    while len >= 0x40 {
        len >>= 6;
        bytes += 1;
    }
    bytes
}

/// Appends `len` to the header (see the module docs).
fn push_len(out: &mut String, mut len: usize) {
    while len >= 0x40 {
        out.push(char::from(0x40 | (len & 0x3f) as u8));
        len >>= 6;
    }
    out.push(char::from(len as u8));
}

/// Reads a length of the header at `at`, and moves `at` past it.
fn read_len(bytes: &[u8], at: &mut usize) -> usize {
    let mut len = 0;
    let mut shift = 0;
    loop {
        let byte = bytes[*at];
        *at += 1;
        len |= usize::from(byte & 0x3f) << shift;
        if byte & 0x40 == 0 {
            return len;
        }
        shift += 6;
    }
}
