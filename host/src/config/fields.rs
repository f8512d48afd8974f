//! Reading one section of the raw tree against its key table: unknown keys and
//! misplaced sections become errors (with "did you mean"), and values are
//! converted the way libconfuse converts them (booleans yes/no/true/false/on/off,
//! integers with C `strtol` base-0 rules, floats).

use std::collections::HashMap;

use super::error::{ConfigError, ErrorKind, Location, Warning, describe_text};
use super::raw::{Item, Scalar, Value};
use super::schema::{self, Key, Kind};

/// Errors and warnings collected while building the typed config.
#[derive(Default)]
pub struct Diagnostics {
    pub errors: Vec<ConfigError>,
    pub warnings: Vec<Warning>,
}

impl Diagnostics {
    pub fn error(&mut self, at: &Location, kind: ErrorKind) {
        self.errors.push(ConfigError::new(at.clone(), kind));
    }

    pub fn invalid(&mut self, at: &Location, message: impl Into<String>) {
        self.error(at, ErrorKind::Invalid(message.into()));
    }

    pub(crate) fn warn(&mut self, at: &Location, message: impl Into<String>) {
        self.warnings.push(Warning {
            at: at.clone(),
            message: message.into(),
        });
    }
}

/// The value of one option after `=` / `+=` handling.
pub(crate) enum Set<'a> {
    One(&'a Scalar),
    List(Vec<&'a Scalar>),
}

/// A subsection found in a section, with its title if it has one.
pub(crate) struct Sub<'a> {
    pub name: &'static str,
    pub title: Option<&'a Scalar>,
    pub body: &'a [Item],
    pub at: &'a Location,
}

/// One section's options (the last value of each wins, as in libconfuse) and
/// subsections (in file order).
pub(crate) struct Fields<'a> {
    pub section: &'static str,
    values: HashMap<&'static str, (Set<'a>, &'a Location)>,
    pub subs: Vec<Sub<'a>>,
}

impl<'a> Fields<'a> {
    /// Reads `bodies` (one or more occurrences of the section `section`, merged)
    /// against `keys`.
    pub fn read(
        section: &'static str,
        keys: &'static [Key],
        bodies: impl IntoIterator<Item = &'a [Item]>,
        diag: &mut Diagnostics,
    ) -> Fields<'a> {
        let mut fields = Fields {
            section,
            values: HashMap::new(),
            subs: Vec::new(),
        };
        for item in bodies.into_iter().flatten() {
            fields.read_item(keys, item, diag);
        }
        fields
    }

    fn read_item(&mut self, keys: &'static [Key], item: &'a Item, diag: &mut Diagnostics) {
        match item {
            Item::Option { key, value, append } => {
                self.read_option(keys, key, value, *append, diag)
            }
            Item::Section { name, title, body } => {
                self.read_section(keys, name, title.as_ref(), body, diag)
            }
            Item::Call { name, .. } => {
                let message = if name.text.eq_ignore_ascii_case("include") {
                    format!(
                        "`include` is allowed only at the top level, not inside `{}`",
                        self.section
                    )
                } else {
                    format!(
                        "unknown function `{}`: gmond knows only `include`",
                        name.text
                    )
                };
                diag.invalid(&name.at, message);
            }
        }
    }

    fn known(
        &self,
        keys: &'static [Key],
        name: &Scalar,
        diag: &mut Diagnostics,
    ) -> Option<&'static Key> {
        // gmond parses with CFGF_NOCASE: names are case-insensitive.
        let lower = name.text.to_ascii_lowercase();
        if let Some(key) = schema::lookup(keys, &lower) {
            return Some(key);
        }
        let suggestion = schema::suggest(&lower, keys.iter().map(|k| k.name));
        let hint = match (&suggestion, schema::home_of(&lower)) {
            (None, Some("sandbox")) if self.section == "module" => {
                "; sandbox settings go in a `sandbox { }` block inside `module`".to_string()
            }
            (None, Some(home)) => format!("; `{lower}` belongs in `{home} {{ }}`"),
            _ => String::new(),
        };
        let section = match self.section {
            "top level" => "the top level".to_string(),
            other => format!("`{other}`"),
        };
        diag.error(
            &name.at,
            ErrorKind::UnknownKey {
                section,
                key: name.text.clone(),
                suggestion,
                hint,
            },
        );
        None
    }

    fn read_option(
        &mut self,
        keys: &'static [Key],
        name: &'a Scalar,
        value: &'a Value,
        append: bool,
        diag: &mut Diagnostics,
    ) {
        let Some(key) = self.known(keys, name, diag) else {
            return;
        };
        let set = match (key.kind, value) {
            (Kind::Section { .. }, _) => {
                let found = format!("`{} = ...`", name.text);
                let kind = ErrorKind::Syntax {
                    expected: format!("a section `{} {{ ... }}`", key.name),
                    found,
                };
                return diag.error(&name.at, kind);
            }
            (Kind::StrList, Value::List { items, .. }) => Set::List(items.iter().collect()),
            (Kind::StrList, Value::Scalar(one)) => Set::List(vec![one]),
            (_, Value::Scalar(one)) if !append => Set::One(one),
            (_, Value::Scalar(_)) => {
                return diag.invalid(
                    &name.at,
                    format!(
                        "`+=` appends to lists, but `{}` takes a single value",
                        key.name
                    ),
                );
            }
            (_, Value::List { at, .. }) => {
                let kind = ErrorKind::InvalidValue {
                    key: key.name.into(),
                    expected: "a single value".into(),
                    found: "a list".into(),
                };
                return diag.error(at, kind);
            }
        };
        match (self.values.get_mut(key.name), set) {
            (Some((Set::List(old), _)), Set::List(new)) if append => old.extend(new),
            (previous, set) => {
                if let Some((_, first)) = previous {
                    let message = format!(
                        "`{}` is set again (first at {}); the last value wins",
                        key.name, first
                    );
                    diag.warn(&name.at, message);
                }
                self.values.insert(key.name, (set, &name.at));
            }
        }
    }

    fn read_section(
        &mut self,
        keys: &'static [Key],
        name: &'a Scalar,
        title: Option<&'a Scalar>,
        body: &'a [Item],
        diag: &mut Diagnostics,
    ) {
        let lower = name.text.to_ascii_lowercase();
        let Some(key) = schema::lookup(keys, &lower) else {
            let candidates = keys
                .iter()
                .filter(|k| matches!(k.kind, Kind::Section { .. }))
                .map(|k| k.name);
            let suggestion = schema::suggest(&lower, candidates);
            let context = if self.section == "top level" {
                "at the top level".to_string()
            } else {
                format!("in `{}`", self.section)
            };
            return diag.error(
                &name.at,
                ErrorKind::UnknownSection {
                    name: name.text.clone(),
                    context,
                    suggestion,
                },
            );
        };
        let Kind::Section { titled } = key.kind else {
            let kind = ErrorKind::Syntax {
                expected: format!("`{} = value`", key.name),
                found: "a section".into(),
            };
            return diag.error(&name.at, kind);
        };
        match (titled, title) {
            (true, None) => diag.invalid(
                &name.at,
                format!("`{0}` needs a name: `{0} NAME {{ ... }}`", key.name),
            ),
            (false, Some(title)) => diag.invalid(
                &title.at,
                format!(
                    "`{}` takes no name, found {}",
                    key.name,
                    describe_text(&title.text)
                ),
            ),
            _ => self.subs.push(Sub {
                name: key.name,
                title,
                body,
                at: &name.at,
            }),
        }
    }

    /// Where `key` was set, if it was.
    pub fn at(&self, key: &str) -> Option<&'a Location> {
        self.values.get(key).map(|(_, at)| *at)
    }

    /// Where the value of `key` was written (its first item, for a list).
    pub(crate) fn value_at(&self, key: &str) -> Option<&'a Location> {
        match self.values.get(key)? {
            (Set::One(s), _) => Some(&s.at),
            (Set::List(items), at) => Some(items.first().map_or(*at, |s| &s.at)),
        }
    }

    pub(crate) fn is_set(&self, key: &str) -> bool {
        self.values.contains_key(key)
    }

    fn scalar(&self, key: &str) -> Option<&'a Scalar> {
        match self.values.get(key) {
            Some((Set::One(s), _)) => Some(s),
            _ => None,
        }
    }

    pub fn list(&self, key: &str) -> Vec<&'a Scalar> {
        match self.values.get(key) {
            Some((Set::List(items), _)) => items.clone(),
            _ => Vec::new(),
        }
    }

    pub fn string(&self, key: &str) -> Option<String> {
        self.scalar(key).map(|s| s.text.clone())
    }

    pub fn bool(&self, key: &str, default: bool, diag: &mut Diagnostics) -> bool {
        let Some(s) = self.scalar(key) else {
            return default;
        };
        match s.text.to_ascii_lowercase().as_str() {
            "yes" | "true" | "on" => true,
            "no" | "false" | "off" => false,
            _ => {
                bad_value(diag, s, key, "a boolean (yes/no, true/false, on/off)");
                default
            }
        }
    }

    /// An integer as C's `strtol(s, &end, 0)` reads it, the whole text consumed.
    pub fn int(&self, key: &str, diag: &mut Diagnostics) -> Option<i64> {
        let s = self.scalar(key)?;
        let value = parse_c_int(&s.text);
        if value.is_none() {
            bad_value(diag, s, key, "an integer");
        }
        value
    }

    /// An integer in `min..=max`, described as `what` in the error.
    pub(crate) fn int_in(
        &self,
        key: &str,
        min: i64,
        max: i64,
        what: &str,
        diag: &mut Diagnostics,
    ) -> Option<i64> {
        let s = self.scalar(key)?;
        match parse_c_int(&s.text) {
            Some(v) if (min..=max).contains(&v) => Some(v),
            _ => {
                bad_value(diag, s, key, what);
                None
            }
        }
    }

    pub fn float(&self, key: &str, diag: &mut Diagnostics) -> Option<f64> {
        let s = self.scalar(key)?;
        let value = s.text.trim().parse::<f64>().ok().filter(|v| !v.is_nan());
        if value.is_none() {
            bad_value(diag, s, key, "a number");
        }
        value
    }
}

fn bad_value(diag: &mut Diagnostics, s: &Scalar, key: &str, expected: &str) {
    let kind = ErrorKind::InvalidValue {
        key: key.into(),
        expected: expected.into(),
        found: describe_text(&s.text),
    };
    diag.error(&s.at, kind);
}

/// C `strtol` with base 0: optional sign, then `0x` hex, `0` octal or decimal.
/// Leading blanks are skipped as strtol does; anything left over is an error.
pub(crate) fn parse_c_int(text: &str) -> Option<i64> {
    let text = text.trim_start();
    let (negative, digits) = match text.as_bytes().first()? {
        b'-' => (true, &text[1..]),
        b'+' => (false, &text[1..]),
        _ => (false, text),
    };
    let (radix, digits) = if let Some(hex) = digits
        .strip_prefix("0x")
        .or_else(|| digits.strip_prefix("0X"))
    {
        (16, hex)
    } else if digits.len() > 1 && digits.starts_with('0') {
        (8, &digits[1..])
    } else {
        (10, digits)
    };
    if digits.is_empty() || !digits.chars().all(|c| c.is_digit(radix)) {
        return None;
    }
    let magnitude = i64::from_str_radix(digits, radix).ok()?;
    Some(if negative { -magnitude } else { magnitude })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn c_integers_follow_strtol_base_zero() {
        assert_eq!(parse_c_int("8649"), Some(8649));
        assert_eq!(parse_c_int("-1"), Some(-1));
        assert_eq!(parse_c_int("0x10"), Some(16));
        assert_eq!(parse_c_int("010"), Some(8));
        assert_eq!(parse_c_int("0"), Some(0));
        assert_eq!(parse_c_int(" 42"), Some(42));
        assert_eq!(parse_c_int("08"), None);
        assert_eq!(parse_c_int("12abc"), None);
        assert_eq!(parse_c_int("1.0"), None);
        assert_eq!(parse_c_int(""), None);
        assert_eq!(parse_c_int("-"), None);
        assert_eq!(parse_c_int("99999999999999999999"), None);
    }
}
