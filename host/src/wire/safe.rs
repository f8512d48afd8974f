//! What wasmond lets onto the wire, and what it takes from it: text and formats that
//! gmond 3.7.2's C code (and gmetad's, behind it) handles safely. Pure functions; the
//! engine applies them to module descriptors and values, the receive channel to what
//! other senders send, before anything is stored, served or sent.
//!
//! What gmond does with what it receives (gmond.c, 3.7.2), and the rule kept here:
//! - **Formats.** gmond renders a numeric `VAL` with `apr_snprintf(buf, 1024, fmt, v)`,
//!   `fmt` being the value packet's format and `v` an `int` (the 8, 16 and 32-bit types)
//!   or a `double` (float and double). `%s%s`, `%n` or `%s` for a number make it read or
//!   write through garbage pointers: SIGSEGV. [`format`] keeps a format only if it holds
//!   exactly one conversion that reads the argument the value's type passes (`d i u x X o`
//!   for integers, `f e E g G` for floats, `s` for strings, which gmond never formats),
//!   with width and precision up to [`MAX_FORMAT_WIDTH`], at most [`MAX_FORMAT_BYTES`]
//!   long; length modifiers other than `h` are dropped, `%F` becomes `%f` (APR lacks
//!   both). Anything else becomes the type's default: `%s`, `%d`, `%u` or `%f`. The
//!   format's literal text goes into gmond's XML unescaped, so it follows [`text`].
//! - **Text.** gmond writes units, extra names and values (`DESC`, `TITLE`, `GROUP`, ...),
//!   host names and the `location` value into its XML unescaped; string `VAL`s it
//!   escapes, but a control character comes out as `&#01;` (not XML) and a non-ASCII byte
//!   as garbage. gmetad copies string `VAL`s back out unescaped. So [`text`] replaces
//!   with `?` every character that is not printable ASCII, and each of `< > & " '`.
//!   Non-ASCII is replaced too: gmond declares ISO-8859-1 and copies bytes, so UTF-8
//!   would arrive as mojibake at best; ASCII reads the same everywhere.
//! - **Lengths.** gmond builds each XML line in a 1024-byte buffer and cuts what does not
//!   fit, which leaves that line, and so the document, ill-formed; gmetad keeps all the
//!   strings of one metric in 1572 bytes and at most 32 extras. The caps below keep every
//!   line and every metric within those with room to spare: units, string values, extra
//!   names and values are cut, extras past [`MAX_EXTRAS`] or [`MAX_EXTRAS_BYTES`] dropped.
//! - **Names.** A peer's metric name gets the rule gmond's `sanitize_metric_name` means
//!   to apply (its bug makes it replace only `:`): anything but ASCII letters, digits,
//!   `_ - .` becomes `_`. Host names likewise, `:` also kept (IPv6 addresses), and a name
//!   of dots only (`..`: a directory climb in gmetad's RRD tree) becomes underscores.
//! - **`location`.** gmond reads the value of a metric named `location`, in any case, as
//!   a string pointer whatever its type: [`misread_by_gmond`] says which values must
//!   never be sent.

use std::borrow::Cow;

use super::format::{Argument, single_conversion};
use crate::metric::{MetricValue, ValueType};

/// Longest value format kept, in bytes.
pub(crate) const MAX_FORMAT_BYTES: usize = 32;
/// Largest width or precision a format may ask for: `%.32f` of the largest double is
/// 342 characters, well within one of gmond's 1024-byte lines.
pub(crate) const MAX_FORMAT_WIDTH: usize = 32;
/// Longest `UNITS`, in bytes.
pub(crate) const MAX_UNITS_BYTES: usize = 64;
/// Longest string value (and `location`), in bytes.
pub(crate) const MAX_STRING_VALUE_BYTES: usize = 256;
/// Most extras of one metric: gmetad keeps no more.
pub(crate) const MAX_EXTRAS: usize = 32;
/// Longest extra name, in bytes.
pub(crate) const MAX_EXTRA_NAME_BYTES: usize = 64;
/// Longest extra value (`DESC`, `TITLE`, a `GROUP`, ...), in bytes.
pub(crate) const MAX_EXTRA_VALUE_BYTES: usize = 256;
/// Most bytes of all of one metric's extras, names and values, counting a C string's
/// terminator each: with the value, type, units and slope it stays under gmetad's 1572.
pub(crate) const MAX_EXTRAS_BYTES: usize = 900;
/// Longest host name (or address), in bytes: DNS's limit.
pub(crate) const MAX_HOST_NAME_BYTES: usize = 255;
/// Longest metric name, in bytes (the WIT contract's limit).
pub(crate) const MAX_METRIC_NAME_BYTES: usize = 128;

/// What replaces a character [`text`] does not let through.
pub(crate) const REPLACEMENT: char = '?';

/// `text` made safe for gmond's XML and cut to `max` bytes (see the module docs);
/// borrowed when it already is.
pub fn text(text: &str, max: usize) -> Cow<'_, str> {
    if text.len() <= max && text.bytes().all(is_text_byte) {
        return Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len().min(max));
    for c in text.chars() {
        if out.len() == max {
            break;
        }
        out.push(if c.is_ascii() && is_text_byte(c as u8) {
            c
        } else {
            REPLACEMENT
        });
    }
    Cow::Owned(out)
}

/// [`text`], in place.
pub(crate) fn clean_text(value: &mut String, max: usize) {
    if let Cow::Owned(cleaned) = text(value, max) {
        *value = cleaned;
    }
}

/// Printable ASCII, but for the characters gmond would put raw into an attribute.
fn is_text_byte(byte: u8) -> bool {
    (0x20..0x7f).contains(&byte) && !matches!(byte, b'<' | b'>' | b'&' | b'"' | b'\'')
}

/// A peer's metric name with what gmond would not expect replaced by `_`; `None` when it
/// is empty or longer than [`MAX_METRIC_NAME_BYTES`].
pub fn metric_name(name: &str) -> Option<Cow<'_, str>> {
    if name.is_empty() || name.len() > MAX_METRIC_NAME_BYTES {
        return None;
    }
    Some(replace_unless(name, is_name_char, name.len()))
}

/// A host name (or address) safe for gmond's XML and gmetad's RRD paths: anything but
/// ASCII letters, digits, `_ - . :` replaced by `_`, a name of dots only made of
/// underscores, cut to [`MAX_HOST_NAME_BYTES`].
pub fn host_name(name: &str) -> Cow<'_, str> {
    let allowed = |c: char| is_name_char(c) || c == ':';
    let name = replace_unless(name, allowed, MAX_HOST_NAME_BYTES);
    if !name.is_empty() && name.bytes().all(|byte| byte == b'.') {
        return Cow::Owned("_".repeat(name.len()));
    }
    name
}

fn is_name_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.')
}

/// `name` with each character `allowed` refuses replaced by `_`, cut to `max` bytes.
fn replace_unless(name: &str, allowed: impl Fn(char) -> bool, max: usize) -> Cow<'_, str> {
    if name.len() <= max && name.chars().all(&allowed) {
        return Cow::Borrowed(name);
    }
    let mut out = String::with_capacity(name.len().min(max));
    for c in name.chars() {
        if out.len() == max {
            break;
        }
        out.push(if allowed(c) { c } else { '_' });
    }
    Cow::Owned(out)
}

/// The format to send (and show) for values of `value_type`: `format` itself when it is
/// safe for gmond, a safe spelling of it, or the type's default (see the module docs).
pub fn format(format: &str, value_type: ValueType) -> Cow<'_, str> {
    let wanted = argument_of(value_type);
    let Some(single) = single_conversion(format) else {
        return Cow::Borrowed(default_format(value_type));
    };
    if single.argument != wanted
        || single.widest() > MAX_FORMAT_WIDTH
        || format.len() > MAX_FORMAT_BYTES
    {
        return Cow::Borrowed(default_format(value_type));
    }
    let mut safe = String::with_capacity(format.len());
    safe.push_str(&text(single.prefix, MAX_FORMAT_BYTES));
    single.push_spec(&mut safe);
    safe.push_str(&text(single.suffix, MAX_FORMAT_BYTES));
    if safe == format {
        Cow::Borrowed(format)
    } else {
        Cow::Owned(safe)
    }
}

/// The C argument gmond passes to its format for a value of this type.
fn argument_of(value_type: ValueType) -> Argument {
    match value_type {
        ValueType::String => Argument::Str,
        ValueType::Float | ValueType::Double => Argument::Double,
        ValueType::Int8
        | ValueType::UInt8
        | ValueType::Int16
        | ValueType::UInt16
        | ValueType::Int32
        | ValueType::UInt32 => Argument::Int,
    }
}

/// The format gmond and gmetric use for a type when none is given.
pub(crate) fn default_format(value_type: ValueType) -> &'static str {
    match value_type {
        ValueType::String => "%s",
        ValueType::Int8 | ValueType::Int16 | ValueType::Int32 => "%d",
        ValueType::UInt8 | ValueType::UInt16 | ValueType::UInt32 => "%u",
        ValueType::Float | ValueType::Double => "%f",
    }
}

/// Makes a metric's units and extras safe, in place: [`text`] on each, cut to their
/// caps, extras past [`MAX_EXTRAS`] or [`MAX_EXTRAS_BYTES`] dropped (the first ones,
/// in wire order, are kept).
pub fn metadata(units: &mut String, extras: &mut Vec<(String, String)>) {
    clean_text(units, MAX_UNITS_BYTES);
    let mut budget = MAX_EXTRAS_BYTES;
    let mut kept = 0;
    extras.retain_mut(|(name, value)| {
        if kept == MAX_EXTRAS {
            return false;
        }
        clean_text(name, MAX_EXTRA_NAME_BYTES);
        clean_text(value, MAX_EXTRA_VALUE_BYTES);
        let cost = name.len() + value.len() + 2;
        if cost > budget {
            return false;
        }
        budget -= cost;
        kept += 1;
        true
    });
}

/// Makes a value safe, in place: a string value follows [`text`], cut to
/// [`MAX_STRING_VALUE_BYTES`]; numbers are always safe.
pub fn value(value: &mut MetricValue) {
    if let MetricValue::String(text) = value {
        clean_text(text, MAX_STRING_VALUE_BYTES);
    }
}

/// Whether gmond would misread a value packet of metric `name` carrying `value`: it takes
/// the value of any `location` (whatever the case) as a string, so a number there is
/// dereferenced as a pointer.
pub(crate) fn misread_by_gmond(name: &str, value: &MetricValue) -> bool {
    name.eq_ignore_ascii_case("location") && !matches!(value, MetricValue::String(_))
}

/// Whether `value` stands for a value of the `declared` type, as gmetric checks before it
/// sends: a number for any numeric type (gmetric sends every value as a string, and gmond
/// sends 8-bit values as 16-bit ones), a string only if it reads as a number in full
/// (leading blanks allowed, as `strtod` skips them; for the integer types, a finite
/// one). Ranges are not checked, as gmetric does not. Anything fits a string metric.
pub(crate) fn fits_type(value: &MetricValue, declared: ValueType) -> bool {
    match (value, declared) {
        (_, ValueType::String) => true,
        (MetricValue::String(text), ValueType::Float | ValueType::Double) => {
            text.trim_start().parse::<f64>().is_ok()
        }
        (MetricValue::String(text), _) => text
            .trim_start()
            .parse::<f64>()
            .is_ok_and(|number| number.is_finite()),
        _ => true,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn hostile_formats_become_the_types_default() {
        for (bad, value_type, default) in [
            ("%s%s%s%s", ValueType::Double, "%f"),
            ("%n", ValueType::Int32, "%d"),
            ("%.3f%n", ValueType::Float, "%f"),
            ("%s", ValueType::UInt32, "%u"),
            ("%d", ValueType::Double, "%f"),
            ("%f", ValueType::Int16, "%d"),
            ("%d", ValueType::String, "%s"),
            ("%d %d", ValueType::Int32, "%d"),
            ("%*d", ValueType::Int32, "%d"),
            ("%1$d", ValueType::Int32, "%d"),
            ("%p", ValueType::UInt32, "%u"),
            ("%c", ValueType::UInt8, "%u"),
            ("%33d", ValueType::Int32, "%d"),
            ("%.33f", ValueType::Double, "%f"),
            ("plain", ValueType::Double, "%f"),
            ("", ValueType::String, "%s"),
            (
                "%.2f and then some long literal text",
                ValueType::Double,
                "%f",
            ),
        ] {
            assert_eq!(format(bad, value_type), default, "{bad:?} for {value_type}");
        }
    }

    #[test]
    fn good_formats_are_kept_as_they_are() {
        for (good, value_type) in [
            ("%.3f", ValueType::Float),
            ("%.0f", ValueType::Double),
            ("%hu", ValueType::UInt16),
            ("%d", ValueType::Int8),
            ("%u", ValueType::UInt32),
            ("%08.3e", ValueType::Double),
            ("%-5x", ValueType::UInt32),
            ("%#X", ValueType::UInt32),
            ("%s", ValueType::String),
            ("%.1f%%", ValueType::Float),
            ("load: %.2f", ValueType::Double),
            ("%32.32f", ValueType::Double),
        ] {
            assert!(
                matches!(format(good, value_type), Cow::Borrowed(kept) if kept == good),
                "{good:?} for {value_type}"
            );
        }
    }

    #[test]
    fn formats_are_respelled_for_apr() {
        assert_eq!(format("%lu", ValueType::UInt32), "%u");
        assert_eq!(format("%lld", ValueType::Int32), "%d");
        assert_eq!(format("%hhd", ValueType::Int8), "%d");
        assert_eq!(format("%lf", ValueType::Double), "%f");
        assert_eq!(format("%F", ValueType::Double), "%f");
        assert_eq!(format("%i", ValueType::Int32), "%d");
        assert_eq!(format("%--5d", ValueType::Int32), "%-5d");
        assert_eq!(format("<%d>&\"", ValueType::Int32), "?%d???");
        assert_eq!(format("\u{e9}%d\n", ValueType::Int32), "?%d?");
    }

    #[test]
    fn text_keeps_printable_ascii_and_replaces_the_rest() {
        assert_eq!(text("bytes/sec (%)", 64), "bytes/sec (%)");
        assert!(matches!(text("plain", 64), Cow::Borrowed(_)));
        assert_eq!(text("u<&>\"'", 64), "u?????");
        assert_eq!(text("a\u{1}b\tc\nd\u{7f}", 64), "a?b?c?d?");
        assert_eq!(text("\u{b0}C caf\u{e9} \u{1f600}", 64), "?C caf? ?");
        assert_eq!(text(&"x".repeat(100), 10), "x".repeat(10));
        assert_eq!(text(&"\u{e9}".repeat(100), 10), "?".repeat(10));
    }

    #[test]
    fn names_get_gmonds_rule() {
        assert_eq!(metric_name("cpu_user").as_deref(), Some("cpu_user"));
        assert_eq!(metric_name("a b<c>/d").as_deref(), Some("a_b_c__d"));
        assert_eq!(metric_name("temp\u{e9}").as_deref(), Some("temp_"));
        assert_eq!(metric_name(""), None);
        assert_eq!(metric_name(&"x".repeat(129)), None);
        assert_eq!(host_name("web-7.example.org"), "web-7.example.org");
        assert_eq!(host_name("::1"), "::1");
        assert_eq!(host_name("../../etc"), ".._.._etc");
        assert_eq!(host_name(".."), "__");
        assert_eq!(host_name("<h>\"&"), "_h___");
        assert_eq!(host_name(&"h".repeat(300)).len(), MAX_HOST_NAME_BYTES);
    }

    #[test]
    fn metadata_is_cleaned_and_bounded() {
        let mut units = "u<&>".to_string();
        let mut extras = vec![
            ("TITLE".to_string(), "t\"itle".to_string()),
            ("DESC".to_string(), "d".repeat(1000)),
            ("k<ey".to_string(), "v\n".to_string()),
        ];
        metadata(&mut units, &mut extras);
        assert_eq!(units, "u???");
        assert_eq!(extras[0], ("TITLE".into(), "t?itle".into()));
        assert_eq!(extras[1].1.len(), MAX_EXTRA_VALUE_BYTES);
        assert_eq!(extras[2], ("k?ey".into(), "v?".into()));

        let mut many: Vec<(String, String)> = (0..100)
            .map(|i| (format!("k{i}"), "v".repeat(100)))
            .collect();
        metadata(&mut String::new(), &mut many);
        let bytes: usize = many.iter().map(|(k, v)| k.len() + v.len() + 2).sum();
        assert!(many.len() <= MAX_EXTRAS && bytes <= MAX_EXTRAS_BYTES);
        assert_eq!(many[0].0, "k0", "the first extras are kept");
    }

    #[test]
    fn location_must_be_a_string_for_gmond() {
        assert!(misread_by_gmond("Location", &MetricValue::Double(1.0)));
        assert!(misread_by_gmond("LOCATION", &MetricValue::UInt32(1)));
        assert!(!misread_by_gmond(
            "location",
            &MetricValue::String("rack".into())
        ));
        assert!(!misread_by_gmond("locations", &MetricValue::Double(1.0)));
    }

    #[test]
    fn values_must_read_as_their_declared_type() {
        let text = |s: &str| MetricValue::String(s.into());
        assert!(!fits_type(&text("not-a-number"), ValueType::Int32));
        assert!(!fits_type(&text("12abc"), ValueType::Double));
        assert!(!fits_type(&text(""), ValueType::UInt16));
        assert!(!fits_type(&text("nan"), ValueType::UInt32));
        assert!(
            !fits_type(&text("1 "), ValueType::Int32),
            "strtod leaves a tail"
        );
        assert!(fits_type(&text(" 42"), ValueType::Int32));
        assert!(fits_type(&text("-1"), ValueType::UInt32), "no range check");
        assert!(fits_type(&text("1234567.890123"), ValueType::Double));
        assert!(fits_type(&text("1e-3"), ValueType::Float));
        assert!(fits_type(&text("anything"), ValueType::String));
        assert!(fits_type(&MetricValue::Int16(-5), ValueType::Int8));
        assert!(fits_type(&MetricValue::Double(1.5), ValueType::String));
    }

    proptest! {
        /// Whatever a module or a peer says, what goes out is one safe conversion of the
        /// right kind, within its caps, made of safe characters.
        #[test]
        fn any_format_comes_out_safe(input in ".{0,40}", which in 0usize..9) {
            let value_type = ValueType::ALL[which];
            let safe = format(&input, value_type);
            prop_assert!(safe.len() <= 2 * MAX_FORMAT_BYTES);
            prop_assert!(safe.bytes().all(|b| is_text_byte(b) || b == b'%'));
            let single = single_conversion(&safe).expect("one conversion");
            prop_assert_eq!(single.argument, argument_of(value_type));
            prop_assert!(single.widest() <= MAX_FORMAT_WIDTH);
            prop_assert_eq!(format(&safe, value_type), safe.clone(), "idempotent");
        }

        #[test]
        fn any_text_comes_out_safe(input in "\\PC{0,300}|.{0,300}", max in 0usize..300) {
            let safe = text(&input, max);
            prop_assert!(safe.len() <= max);
            prop_assert!(safe.bytes().all(is_text_byte));
            let host = host_name(&input);
            prop_assert!(host.len() <= MAX_HOST_NAME_BYTES);
            prop_assert!(host.chars().all(|c| is_name_char(c) || c == ':'));
            prop_assert!(host.is_empty() || !host.bytes().all(|b| b == b'.'));
        }
    }
}
