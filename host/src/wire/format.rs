//! A safe subset of C `printf`, enough to write a metric's `VAL` the way gmond does.
//!
//! gmond formats each value with the `fmt` its value packet carries (`%.3f`, `%hu`, `%s`,
//! ...), handing the C value straight to `sprintf`. Here a format is parsed first: it may
//! hold literal text and `%%`, and exactly one conversion among `d i u x X o f F e E g G s`
//! with flags `- + space 0 #`, a width, a precision and a length modifier `hh h l ll`.
//! Anything else (no conversion, two conversions, `*`, `%n`, a huge width) is a bad
//! format: the value is then written with its type's default (`%s`, `%d`, `%u`, `%f`).
//! Nothing here can panic or allocate without bound, whatever the format says.
//!
//! Where C would read the wrong type (a float with `%d`), the value is converted instead:
//! integer conversions truncate a float toward zero, float conversions widen an integer,
//! and a string with a numeric conversion (or a number with `%s`) uses the default.

use std::fmt::Write as _;

use crate::metric::MetricValue;

/// Widths and precisions above this are treated as bad formats, so a module cannot make
/// one `VAL` arbitrarily large.
pub(crate) const MAX_WIDTH_OR_PRECISION: usize = 128;

/// Appends `value`, formatted with the printf-style `format`, to `out`.
///
/// A bad format, or one whose conversion does not fit the value, falls back to the
/// default format of the value's type (see the module docs).
pub fn format_value(format: &str, value: &MetricValue, out: &mut String) {
    let parsed = parse(format).filter(|parsed| parsed.spec.accepts(value));
    match parsed {
        Some(parsed) => {
            push_literal(parsed.prefix, out);
            parsed.spec.write(value, out);
            push_literal(parsed.suffix, out);
        }
        None => default_spec(value).write(value, out),
    }
}

fn default_spec(value: &MetricValue) -> Spec {
    let conversion = match value {
        MetricValue::String(_) => Conversion::Str,
        MetricValue::Int8(_) | MetricValue::Int16(_) | MetricValue::Int32(_) => Conversion::Signed,
        MetricValue::UInt8(_) | MetricValue::UInt16(_) | MetricValue::UInt32(_) => {
            Conversion::Unsigned(Radix::Decimal)
        }
        MetricValue::Float(_) | MetricValue::Double(_) => Conversion::Fixed,
    };
    Spec {
        conversion,
        ..Spec::default()
    }
}

/// The C argument a printf conversion reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Argument {
    /// An `int` (`d i u x X o`, with `h` a short promoted to int).
    Int,
    /// A `double` (`f F e E g G`; a C float is promoted to double).
    Double,
    /// A `char *` (`s`).
    Str,
}

/// A format with exactly one conversion, as [`single_conversion`] parses it.
pub(crate) struct SingleConversion<'a> {
    /// Literal text before and after the conversion; may hold `%%`.
    pub prefix: &'a str,
    pub suffix: &'a str,
    pub argument: Argument,
    spec: Spec,
}

impl SingleConversion<'_> {
    /// Appends the conversion in a canonical spelling (`%` flags width precision
    /// conversion) without any length modifier but `h`, which C applies to a promoted int.
    pub(crate) fn push_spec(&self, out: &mut String) {
        let spec = &self.spec;
        out.push('%');
        for (set, flag) in [
            (spec.flags.left, '-'),
            (spec.flags.plus, '+'),
            (spec.flags.space, ' '),
            (spec.flags.zero, '0'),
            (spec.flags.alternate, '#'),
        ] {
            if set {
                out.push(flag);
            }
        }
        if spec.width > 0 {
            out.push_str(Digits::decimal(spec.width as u64).as_str());
        }
        if let Some(precision) = spec.precision {
            out.push('.');
            out.push_str(Digits::decimal(precision as u64).as_str());
        }
        if matches!((spec.length, self.argument), (Length::Short, Argument::Int)) {
            out.push('h');
        }
        let conversion = match spec.conversion {
            Conversion::Str => 's',
            Conversion::Signed => 'd',
            Conversion::Unsigned(Radix::Decimal) => 'u',
            Conversion::Unsigned(Radix::Octal) => 'o',
            Conversion::Unsigned(Radix::Hex) => 'x',
            Conversion::Fixed => 'f',
            Conversion::Exponent => 'e',
            Conversion::General => 'g',
        };
        // gmond's `apr_snprintf` has no `%F`: write `%f` for it.
        let upper = spec.upper && !matches!(spec.conversion, Conversion::Fixed);
        out.push(if upper {
            conversion.to_ascii_uppercase()
        } else {
            conversion
        });
    }

    /// The larger of the width and the precision.
    pub(crate) fn widest(&self) -> usize {
        self.spec.width.max(self.spec.precision.unwrap_or(0))
    }
}

/// Parses a format that holds exactly one conversion this module knows (no `*`, no `%n`,
/// no positional arguments, widths and precisions up to [`MAX_WIDTH_OR_PRECISION`]).
pub(crate) fn single_conversion(format: &str) -> Option<SingleConversion<'_>> {
    let parsed = parse(format)?;
    let argument = match parsed.spec.conversion {
        Conversion::Str => Argument::Str,
        Conversion::Signed | Conversion::Unsigned(_) => Argument::Int,
        Conversion::Fixed | Conversion::Exponent | Conversion::General => Argument::Double,
    };
    Some(SingleConversion {
        prefix: parsed.prefix,
        suffix: parsed.suffix,
        argument,
        spec: parsed.spec,
    })
}

/// A format split around its single conversion. `prefix` and `suffix` may hold `%%`.
struct Parsed<'a> {
    prefix: &'a str,
    spec: Spec,
    suffix: &'a str,
}

#[derive(Default)]
struct Spec {
    flags: Flags,
    width: usize,
    precision: Option<usize>,
    length: Length,
    conversion: Conversion,
    upper: bool,
}

#[derive(Default)]
struct Flags {
    left: bool,
    plus: bool,
    space: bool,
    zero: bool,
    alternate: bool,
}

#[derive(Default, Clone, Copy)]
enum Length {
    #[default]
    Int,
    Char,
    Short,
    Long,
}

#[derive(Default, Clone, Copy)]
enum Conversion {
    #[default]
    Str,
    Signed,
    Unsigned(Radix),
    Fixed,
    Exponent,
    General,
}

#[derive(Clone, Copy)]
enum Radix {
    Octal,
    Decimal,
    Hex,
}

fn parse(format: &str) -> Option<Parsed<'_>> {
    let start = find_conversion(format, 0)?;
    let (spec, end) = parse_spec(format, start + 1)?;
    if find_conversion(format, end).is_some() || has_lone_percent(&format[end..]) {
        return None;
    }
    Some(Parsed {
        prefix: &format[..start],
        spec,
        suffix: &format[end..],
    })
}

/// The byte offset of the first `%` at or after `from` that starts a conversion (not `%%`).
fn find_conversion(format: &str, from: usize) -> Option<usize> {
    let bytes = format.as_bytes();
    let mut i = from;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            if bytes.get(i + 1) == Some(&b'%') {
                i += 2;
                continue;
            }
            if i + 1 < bytes.len() {
                return Some(i);
            }
        }
        i += 1;
    }
    None
}

/// A `%` at the very end of a format is undefined in C; treat it as a bad format.
fn has_lone_percent(text: &str) -> bool {
    let mut percents = 0usize;
    for byte in text.bytes().rev() {
        if byte != b'%' {
            break;
        }
        percents += 1;
    }
    percents % 2 == 1
}

/// Parses the spec after a `%` starting at byte `i`; returns it and the offset past it.
fn parse_spec(format: &str, mut i: usize) -> Option<(Spec, usize)> {
    let bytes = format.as_bytes();
    let mut spec = Spec::default();
    while let Some(&byte) = bytes.get(i) {
        match byte {
            b'-' => spec.flags.left = true,
            b'+' => spec.flags.plus = true,
            b' ' => spec.flags.space = true,
            b'0' => spec.flags.zero = true,
            b'#' => spec.flags.alternate = true,
            _ => break,
        }
        i += 1;
    }
    (spec.width, i) = parse_number(bytes, i)?;
    if bytes.get(i) == Some(&b'.') {
        let (precision, next) = parse_number(bytes, i + 1)?;
        spec.precision = Some(precision);
        i = next;
    }
    (spec.length, i) = parse_length(bytes, i);
    let conversion = *bytes.get(i)?;
    spec.upper = conversion.is_ascii_uppercase();
    spec.conversion = match conversion {
        b'd' | b'i' => Conversion::Signed,
        b'u' => Conversion::Unsigned(Radix::Decimal),
        b'x' | b'X' => Conversion::Unsigned(Radix::Hex),
        b'o' => Conversion::Unsigned(Radix::Octal),
        b'f' | b'F' => Conversion::Fixed,
        b'e' | b'E' => Conversion::Exponent,
        b'g' | b'G' => Conversion::General,
        b's' => Conversion::Str,
        _ => return None,
    };
    Some((spec, i + 1))
}

/// Reads an optional decimal number, refusing ones above [`MAX_WIDTH_OR_PRECISION`].
fn parse_number(bytes: &[u8], mut i: usize) -> Option<(usize, usize)> {
    let mut number = 0usize;
    while let Some(digit) = bytes.get(i).filter(|b| b.is_ascii_digit()) {
        number = number * 10 + usize::from(digit - b'0');
        if number > MAX_WIDTH_OR_PRECISION {
            return None;
        }
        i += 1;
    }
    Some((number, i))
}

fn parse_length(bytes: &[u8], i: usize) -> (Length, usize) {
    match (bytes.get(i), bytes.get(i + 1)) {
        (Some(b'h'), Some(b'h')) => (Length::Char, i + 2),
        (Some(b'h'), _) => (Length::Short, i + 1),
        (Some(b'l'), Some(b'l')) => (Length::Long, i + 2),
        (Some(b'l'), _) => (Length::Long, i + 1),
        _ => (Length::Int, i),
    }
}

fn push_literal(text: &str, out: &mut String) {
    if !text.contains('%') {
        out.push_str(text);
        return;
    }
    let mut rest = text;
    while let Some(at) = rest.find("%%") {
        out.push_str(&rest[..=at]);
        rest = &rest[at + 2..];
    }
    out.push_str(rest);
}

impl Spec {
    /// Whether this conversion can print `value`: strings only with `%s`, numbers only with
    /// numeric conversions.
    fn accepts(&self, value: &MetricValue) -> bool {
        matches!(value, MetricValue::String(_)) == matches!(self.conversion, Conversion::Str)
    }

    fn write(&self, value: &MetricValue, out: &mut String) {
        match (self.conversion, value) {
            (Conversion::Str, MetricValue::String(text)) => self.write_str(text, out),
            (Conversion::Str, _) => {}
            (Conversion::Signed, _) => self.write_signed(integer_bits(value), out),
            (Conversion::Unsigned(radix), _) => {
                self.write_unsigned(integer_bits(value), radix, out)
            }
            (Conversion::Fixed | Conversion::Exponent | Conversion::General, _) => {
                self.write_float(value.as_f64().unwrap_or(0.0), out)
            }
        }
    }

    fn write_str(&self, text: &str, out: &mut String) {
        let shown = match self.precision {
            Some(max_chars) => match text.char_indices().nth(max_chars) {
                Some((cut, _)) => &text[..cut],
                None => text,
            },
            None => text,
        };
        self.pad(out, "", 0, shown, false);
    }

    fn write_signed(&self, bits: i64, out: &mut String) {
        let value = match self.length {
            Length::Char => i64::from(bits as i8),
            Length::Short => i64::from(bits as i16),
            Length::Int => i64::from(bits as i32),
            Length::Long => bits,
        };
        let sign = if value < 0 {
            "-"
        } else if self.flags.plus {
            "+"
        } else if self.flags.space {
            " "
        } else {
            ""
        };
        let digits = Digits::new(value.unsigned_abs(), Radix::Decimal, false);
        let (digits, zeros) = self.precision_zeros(digits.as_str());
        self.pad(out, sign, zeros, digits, self.precision.is_none());
    }

    fn write_unsigned(&self, bits: i64, radix: Radix, out: &mut String) {
        let value = match self.length {
            Length::Char => u64::from(bits as u8),
            Length::Short => u64::from(bits as u16),
            Length::Int => u64::from(bits as u32),
            Length::Long => bits as u64,
        };
        let digits = Digits::new(value, radix, self.upper);
        let (digits, mut zeros) = self.precision_zeros(digits.as_str());
        let prefix = match radix {
            Radix::Hex if self.flags.alternate && value != 0 => {
                if self.upper {
                    "0X"
                } else {
                    "0x"
                }
            }
            // C's `#o` raises the precision until the first digit is a 0.
            Radix::Octal if self.flags.alternate && zeros == 0 && !digits.starts_with('0') => {
                zeros = 1;
                ""
            }
            _ => "",
        };
        self.pad(out, prefix, zeros, digits, self.precision.is_none());
    }

    /// C's integer precision: at least that many digits (as leading zeros), and `%.0d`
    /// of 0 prints no digit at all.
    fn precision_zeros<'d>(&self, digits: &'d str) -> (&'d str, usize) {
        match self.precision {
            Some(0) if digits == "0" => ("", 0),
            Some(precision) => (digits, precision.saturating_sub(digits.len())),
            None => (digits, 0),
        }
    }

    fn write_float(&self, value: f64, out: &mut String) {
        let sign = if value.is_sign_negative() && !value.is_nan() {
            "-"
        } else if self.flags.plus {
            "+"
        } else if self.flags.space {
            " "
        } else {
            ""
        };
        let magnitude = value.abs();
        if !magnitude.is_finite() {
            let word = match (magnitude.is_nan(), self.upper) {
                (true, false) => "nan",
                (true, true) => "NAN",
                (false, false) => "inf",
                (false, true) => "INF",
            };
            return self.pad(out, sign, 0, word, false);
        }
        let precision = self.precision.unwrap_or(6);
        if self.width == 0 && matches!(self.conversion, Conversion::Fixed) {
            // The common case (`%.2f`): no padding, so no intermediate string.
            out.push_str(sign);
            push_fixed(out, magnitude, precision);
            if precision == 0 && self.flags.alternate {
                out.push('.');
            }
            return;
        }
        let body = match self.conversion {
            Conversion::Exponent => self.exponent_form(magnitude, precision),
            Conversion::General => self.general_form(magnitude, precision),
            _ => self.fixed_form(magnitude, precision),
        };
        self.pad(out, sign, 0, &body, true);
    }

    fn fixed_form(&self, magnitude: f64, precision: usize) -> String {
        let mut body = String::new();
        push_fixed(&mut body, magnitude, precision);
        if precision == 0 && self.flags.alternate {
            body.push('.');
        }
        body
    }

    fn exponent_form(&self, magnitude: f64, precision: usize) -> String {
        let (mantissa, exponent) = split_exponent(magnitude, precision);
        let mut body = mantissa;
        if precision == 0 && self.flags.alternate {
            body.push('.');
        }
        push_exponent(&mut body, exponent, self.upper);
        body
    }

    /// C's `%g`: `%e` or `%f` depending on the exponent, trailing zeros removed unless `#`.
    fn general_form(&self, magnitude: f64, precision: usize) -> String {
        let significant = precision.max(1);
        let (mantissa, exponent) = split_exponent(magnitude, significant - 1);
        let use_fixed = exponent >= -4 && exponent < significant as i64;
        let mut body = if use_fixed {
            let decimals = (significant as i64 - 1 - exponent).max(0) as usize;
            format!("{magnitude:.decimals$}")
        } else {
            mantissa
        };
        if !self.flags.alternate {
            trim_fraction_zeros(&mut body);
        } else if !body.contains('.') {
            body.push('.');
        }
        if !use_fixed {
            push_exponent(&mut body, exponent, self.upper);
        }
        body
    }

    /// Writes `prefix`, `zeros` zeros and `body`, padded to the width. Zero padding goes
    /// after the prefix, and only where C allows it (`zero_allowed`: numbers without an
    /// integer precision).
    fn pad(&self, out: &mut String, prefix: &str, zeros: usize, body: &str, zero_allowed: bool) {
        let len = prefix.chars().count() + zeros + body.chars().count();
        let fill = self.width.saturating_sub(len);
        if self.flags.left {
            push_parts(out, prefix, zeros, body);
            push_repeated(out, ' ', fill);
        } else if self.flags.zero && zero_allowed {
            push_parts(out, prefix, zeros + fill, body);
        } else {
            push_repeated(out, ' ', fill);
            push_parts(out, prefix, zeros, body);
        }
    }
}

fn push_parts(out: &mut String, prefix: &str, zeros: usize, body: &str) {
    out.push_str(prefix);
    push_repeated(out, '0', zeros);
    out.push_str(body);
}

/// The digits of an integer in a radix, without allocating (22 octal digits at most).
pub(crate) struct Digits {
    buf: [u8; 22],
    start: usize,
}

impl Digits {
    pub(crate) fn decimal(value: u64) -> Self {
        Digits::new(value, Radix::Decimal, false)
    }

    fn new(mut value: u64, radix: Radix, upper: bool) -> Self {
        let base = match radix {
            Radix::Octal => 8,
            Radix::Decimal => 10,
            Radix::Hex => 16,
        };
        let symbols: &[u8; 16] = if upper {
            b"0123456789ABCDEF"
        } else {
            b"0123456789abcdef"
        };
        let mut digits = Digits {
            buf: [0; 22],
            start: 22,
        };
        loop {
            digits.start -= 1;
            digits.buf[digits.start] = symbols[(value % base) as usize];
            value /= base;
            if value == 0 {
                return digits;
            }
        }
    }

    pub(crate) fn as_str(&self) -> &str {
        // Only ASCII digits were written.
        std::str::from_utf8(&self.buf[self.start..]).unwrap_or_default()
    }
}

/// The value as C would see the integer's bits; floats are truncated toward zero.
fn integer_bits(value: &MetricValue) -> i64 {
    match *value {
        MetricValue::String(_) => 0,
        MetricValue::Int8(v) => v.into(),
        MetricValue::UInt8(v) => v.into(),
        MetricValue::Int16(v) => v.into(),
        MetricValue::UInt16(v) => v.into(),
        MetricValue::Int32(v) => v.into(),
        MetricValue::UInt32(v) => v.into(),
        MetricValue::Float(v) => v as i64,
        MetricValue::Double(v) => v as i64,
    }
}

/// Writes `{magnitude:.precision$}` (a finite, non-negative value, rounded exactly as C
/// and Rust round it). Rust's exact formatting often falls back to big-number arithmetic;
/// most metric values take a shortcut through integers instead, where it is provably exact.
fn push_fixed(out: &mut String, magnitude: f64, precision: usize) {
    if let Some(rounded) = scaled_exactly(magnitude, precision) {
        let scale = 10u64.pow(precision as u32);
        out.push_str(Digits::decimal(rounded / scale).as_str());
        if precision > 0 {
            out.push('.');
            let fraction = Digits::decimal(rounded % scale);
            push_repeated(out, '0', precision - fraction.as_str().len());
            out.push_str(fraction.as_str());
        }
        return;
    }
    let _ = write!(out, "{magnitude:.precision$}");
}

/// `magnitude × 10^precision` rounded to an integer, if the floating-point product is
/// far enough from a rounding tie that its error cannot change the result.
fn scaled_exactly(magnitude: f64, precision: usize) -> Option<u64> {
    if precision > 9 || !(0.0..1e9).contains(&magnitude) {
        return None;
    }
    // Exact: 10^9 < 2^53. The product is off by at most half an ulp: scaled × 2^-53.
    let scaled = magnitude * 10u64.pow(precision as u32) as f64;
    let whole = scaled.floor();
    let fraction = scaled - whole;
    let error_bound = scaled * f64::EPSILON;
    if (fraction - 0.5).abs() <= error_bound {
        return None;
    }
    let rounded = if fraction > 0.5 { whole + 1.0 } else { whole };
    Some(rounded as u64)
}

/// Rust's `{:.Ne}` gives `1.50e3`; returns the mantissa text and the exponent.
fn split_exponent(magnitude: f64, precision: usize) -> (String, i64) {
    let text = format!("{magnitude:.precision$e}");
    match text.split_once('e') {
        Some((mantissa, exponent)) => (mantissa.to_owned(), exponent.parse().unwrap_or(0)),
        None => (text, 0),
    }
}

/// C writes the exponent with a sign and at least two digits: `e+03`.
fn push_exponent(body: &mut String, exponent: i64, upper: bool) {
    body.push(if upper { 'E' } else { 'e' });
    body.push(if exponent < 0 { '-' } else { '+' });
    let _ = write!(body, "{:02}", exponent.unsigned_abs());
}

fn trim_fraction_zeros(body: &mut String) {
    if body.contains('.') {
        let kept = body.trim_end_matches('0').trim_end_matches('.').len();
        body.truncate(kept);
    }
}

fn push_repeated(out: &mut String, fill: char, count: usize) {
    out.extend(std::iter::repeat_n(fill, count));
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn fmt(format: &str, value: MetricValue) -> String {
        let mut out = String::new();
        format_value(format, &value, &mut out);
        out
    }

    #[test]
    fn formats_seen_in_the_gmond_captures() {
        assert_eq!(
            fmt("%.3f", MetricValue::Float(f32::from_bits(0x4049_0fd0))),
            "3.142"
        );
        assert_eq!(
            fmt("%.6f", MetricValue::Double(std::f64::consts::E)),
            "2.718282"
        );
        assert_eq!(fmt("%.0f", MetricValue::Float(21215672.0)), "21215672");
        assert_eq!(fmt("%.2f", MetricValue::Float(2.02)), "2.02");
        assert_eq!(fmt("%.1f", MetricValue::Float(86.2)), "86.2");
        assert_eq!(fmt("%hu", MetricValue::UInt16(2)), "2");
        assert_eq!(fmt("%d", MetricValue::Int32(-42)), "-42");
        assert_eq!(fmt("%u", MetricValue::UInt32(4_000_000_000)), "4000000000");
        assert_eq!(
            fmt("%s", MetricValue::String("hello world".into())),
            "hello world"
        );
    }

    #[test]
    fn integer_conversions_follow_c() {
        assert_eq!(fmt("%u", MetricValue::Int32(-1)), "4294967295");
        assert_eq!(fmt("%hu", MetricValue::UInt32(70_000)), "4464");
        assert_eq!(fmt("%hhd", MetricValue::Int32(200)), "-56");
        assert_eq!(fmt("%hhu", MetricValue::Int8(-1)), "255");
        assert_eq!(fmt("%ld", MetricValue::Int32(-7)), "-7");
        assert_eq!(fmt("%llu", MetricValue::UInt32(7)), "7");
        assert_eq!(fmt("%i", MetricValue::Int16(-1234)), "-1234");
        assert_eq!(fmt("%x", MetricValue::UInt32(255)), "ff");
        assert_eq!(fmt("%#X", MetricValue::UInt32(255)), "0XFF");
        assert_eq!(fmt("%#o", MetricValue::UInt32(8)), "010");
        assert_eq!(fmt("%x", MetricValue::Int32(-1)), "ffffffff");
        assert_eq!(fmt("%5d|", MetricValue::Int32(42)), "   42|");
        assert_eq!(fmt("%-5d|", MetricValue::Int32(42)), "42   |");
        assert_eq!(fmt("%05d", MetricValue::Int32(-42)), "-0042");
        assert_eq!(fmt("%+d", MetricValue::Int32(42)), "+42");
        assert_eq!(fmt("% d", MetricValue::Int32(42)), " 42");
        assert_eq!(fmt("%.3d", MetricValue::Int32(7)), "007");
        assert_eq!(fmt("%08.3d", MetricValue::Int32(7)), "     007");
        assert_eq!(fmt("%.0d", MetricValue::Int32(0)), "");
    }

    #[test]
    fn float_conversions_follow_c() {
        assert_eq!(fmt("%f", MetricValue::Double(1.5)), "1.500000");
        assert_eq!(fmt("%8.2f|", MetricValue::Double(-1.5)), "   -1.50|");
        assert_eq!(fmt("%08.2f", MetricValue::Double(-1.5)), "-0001.50");
        assert_eq!(fmt("%.0f", MetricValue::Double(2.5)), "2");
        assert_eq!(fmt("%#.0f", MetricValue::Double(3.0)), "3.");
        assert_eq!(fmt("%e", MetricValue::Double(1234.5)), "1.234500e+03");
        assert_eq!(fmt("%.2E", MetricValue::Double(0.000123)), "1.23E-04");
        assert_eq!(fmt("%g", MetricValue::Double(0.0001)), "0.0001");
        assert_eq!(fmt("%g", MetricValue::Double(0.00001)), "1e-05");
        assert_eq!(fmt("%g", MetricValue::Double(123456.0)), "123456");
        assert_eq!(fmt("%g", MetricValue::Double(1234567.0)), "1.23457e+06");
        assert_eq!(fmt("%g", MetricValue::Double(100.0)), "100");
        assert_eq!(fmt("%g", MetricValue::Double(0.0)), "0");
        assert_eq!(fmt("%.3g", MetricValue::Double(1.23456)), "1.23");
        assert_eq!(fmt("%#g", MetricValue::Double(1.0)), "1.00000");
        assert_eq!(fmt("%G", MetricValue::Double(1e-10)), "1E-10");
        assert_eq!(fmt("%g", MetricValue::Double(999999.5)), "1e+06");
        assert_eq!(fmt("%f", MetricValue::Double(f64::INFINITY)), "inf");
        assert_eq!(fmt("%F", MetricValue::Double(f64::NEG_INFINITY)), "-INF");
        assert_eq!(fmt("%5.1f", MetricValue::Double(f64::NAN)), "  nan");
        assert_eq!(fmt("%.1f", MetricValue::Float(0.1)), "0.1");
    }

    #[test]
    fn mismatched_types_are_converted_not_misread() {
        assert_eq!(fmt("%d", MetricValue::Double(-2.9)), "-2");
        assert_eq!(fmt("%.2f", MetricValue::UInt32(3)), "3.00");
        assert_eq!(fmt("%d", MetricValue::String("12".into())), "12");
        assert_eq!(fmt("%s", MetricValue::UInt32(12)), "12");
        assert_eq!(fmt("%s", MetricValue::Float(1.5)), "1.500000");
    }

    #[test]
    fn strings_take_width_and_precision() {
        assert_eq!(fmt("%.3s", MetricValue::String("héllo".into())), "hél");
        assert_eq!(fmt("[%6s]", MetricValue::String("ab".into())), "[    ab]");
        assert_eq!(fmt("[%-6s]", MetricValue::String("ab".into())), "[ab    ]");
    }

    #[test]
    fn literal_text_and_percent_signs_are_kept() {
        assert_eq!(fmt("%.1f%%", MetricValue::Float(12.5)), "12.5%");
        assert_eq!(fmt("%% %d %%", MetricValue::Int32(3)), "% 3 %");
        assert_eq!(fmt("load: %.2f", MetricValue::Float(0.5)), "load: 0.50");
    }

    #[test]
    fn bad_formats_fall_back_to_the_type_default() {
        for bad in [
            "",
            "plain",
            "%",
            "%d %d",
            "%n",
            "%*d",
            "%.*f",
            "%q",
            "%d%",
            "%999d",
            "%.200f",
            "%lld%s",
            "%1000000000000000000000000d",
        ] {
            assert_eq!(fmt(bad, MetricValue::Int32(-3)), "-3", "format {bad:?}");
            assert_eq!(fmt(bad, MetricValue::UInt32(3)), "3", "format {bad:?}");
            assert_eq!(
                fmt(bad, MetricValue::Double(0.5)),
                "0.500000",
                "format {bad:?}"
            );
            assert_eq!(
                fmt(bad, MetricValue::String("s".into())),
                "s",
                "format {bad:?}"
            );
        }
    }

    #[test]
    fn fixed_shortcut_leaves_ties_to_exact_rounding() {
        assert_eq!(scaled_exactly(0.125, 2), None, "an exact tie");
        assert_eq!(fmt("%.2f", MetricValue::Double(0.125)), "0.12");
        assert_eq!(fmt("%.2f", MetricValue::Double(0.375)), "0.38");
        assert_eq!(scaled_exactly(2.5, 0), None);
        assert_eq!(
            scaled_exactly(1.005, 2),
            None,
            "too close to a tie for the shortcut"
        );
        assert_eq!(
            fmt("%.2f", MetricValue::Double(1.005)),
            "1.00",
            "1.00499999999999989..."
        );
        assert_eq!(scaled_exactly(21215672.0, 0), Some(21215672));
        assert_eq!(scaled_exactly(2.02, 2), Some(202));
        assert_eq!(
            fmt("%.9f", MetricValue::Double(999_999_999.999_999_9)),
            "999999999.999999881"
        );
        assert_eq!(fmt("%.3f", MetricValue::Double(0.0)), "0.000");
        assert_eq!(fmt("%.3f", MetricValue::Double(-0.0001)), "-0.000");
    }

    proptest! {
        /// The integer shortcut gives exactly what Rust's exact formatter gives.
        #[test]
        fn fixed_shortcut_matches_exact_formatting(bits in any::<u64>(), small in 0.0..1e6f64, precision in 0usize..=9) {
            for magnitude in [f64::from_bits(bits).abs(), small, (small * 1000.0).round() / 1000.0] {
                if magnitude.is_finite() {
                    let mut fast = String::new();
                    push_fixed(&mut fast, magnitude, precision);
                    prop_assert_eq!(fast, format!("{magnitude:.precision$}"));
                }
            }
        }

        #[test]
        fn any_format_and_value_is_formatted_without_panic(format in ".{0,24}", bits in any::<i64>(), x in any::<f64>()) {
            let mut out = String::new();
            for value in [MetricValue::Int32(bits as i32), MetricValue::UInt32(bits as u32), MetricValue::Double(x), MetricValue::Float(x as f32), MetricValue::String(format.clone())] {
                out.clear();
                format_value(&format, &value, &mut out);
                prop_assert!(out.len() <= 2 * MAX_WIDTH_OR_PRECISION + format.len() + 400);
            }
        }

        #[test]
        fn printf_like_formats_with_flags_never_panic(spec in "%[-+ 0#]{0,3}[0-9]{0,3}(\\.[0-9]{0,3})?(hh|h|l|ll)?[diuxXofFeEgGs]", x in any::<f64>()) {
            let mut out = String::new();
            format_value(&spec, &MetricValue::Double(x), &mut out);
            format_value(&spec, &MetricValue::Int32(x as i32), &mut out);
        }
    }
}
