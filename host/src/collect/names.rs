//! Metric names: what a valid one looks like (which module owns each is
//! [`ownership`](super::ownership)'s).
//!
//! A metric name travels in XDR packets, XML attributes and RRD file names on gmetad's
//! side, so wasmond only accepts the characters the WIT contract promises.

use thiserror::Error;

/// The longest metric name accepted, in bytes (the WIT contract's promise).
pub(crate) const MAX_METRIC_NAME_LEN: usize = 128;

/// Why a metric name is refused.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub(crate) enum NameError {
    #[error("metric name is empty")]
    Empty,
    #[error("metric name {name:?} is {len} bytes long; at most {MAX_METRIC_NAME_LEN} are allowed")]
    TooLong { name: String, len: usize },
    #[error(
        "metric name {name:?} has {found:?} at byte {at}; only ASCII letters, digits, '_', '-' and '.' are allowed"
    )]
    BadChar {
        name: String,
        found: char,
        at: usize,
    },
}

/// Checks a metric name: 1 to 128 bytes of ASCII letters, digits, `_`, `-`, `.`.
pub(crate) fn validate_metric_name(name: &str) -> Result<(), NameError> {
    if name.is_empty() {
        return Err(NameError::Empty);
    }
    if name.len() > MAX_METRIC_NAME_LEN {
        let shown: String = name.chars().take(40).collect();
        return Err(NameError::TooLong {
            name: format!("{shown}..."),
            len: name.len(),
        });
    }
    let allowed = |c: char| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.');
    match name.char_indices().find(|&(_, c)| !allowed(c)) {
        Some((at, found)) => Err(NameError::BadChar {
            name: name.to_string(),
            found,
            at,
        }),
        None => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_gmond_style_names() {
        for name in [
            "cpu_user",
            "load-one",
            "disk.sda.reads",
            "a",
            &"x".repeat(128),
        ] {
            assert_eq!(validate_metric_name(name), Ok(()), "{name}");
        }
    }

    #[test]
    fn refuses_empty_long_and_odd_names() {
        assert_eq!(validate_metric_name(""), Err(NameError::Empty));
        assert!(matches!(
            validate_metric_name(&"x".repeat(129)),
            Err(NameError::TooLong { len: 129, .. })
        ));
        let err = validate_metric_name("cpu user").unwrap_err();
        assert_eq!(
            err,
            NameError::BadChar {
                name: "cpu user".into(),
                found: ' ',
                at: 3
            }
        );
        assert!(matches!(
            validate_metric_name("a<b"),
            Err(NameError::BadChar { found: '<', .. })
        ));
        assert!(matches!(
            validate_metric_name("naïve"),
            Err(NameError::BadChar { found: 'ï', .. })
        ));
    }
}
