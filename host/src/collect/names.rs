//! Metric names: what a valid one looks like, and which module owns each.
//!
//! A metric name travels in XDR packets, XML attributes and RRD file names on gmetad's
//! side, so wasmond only accepts the characters the WIT contract promises. Names are
//! global on a host: the first module to declare a name owns it, and a later module that
//! declares it again is refused as a whole, with an error naming both.

use std::collections::HashMap;

use thiserror::Error;

/// The longest metric name accepted, in bytes (the WIT contract's promise).
pub const MAX_METRIC_NAME_LEN: usize = 128;

/// Why a metric name is refused.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum NameError {
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
pub fn validate_metric_name(name: &str) -> Result<(), NameError> {
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

/// Why a module may not publish its metrics.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum ClaimError {
    #[error("module {module}: {source}")]
    Invalid { module: String, source: NameError },
    #[error("module {module}: metric {metric:?} is already published by module {owner}")]
    Taken {
        module: String,
        metric: String,
        owner: String,
    },
    #[error("module {module}: metric {metric:?} is declared twice")]
    Duplicate { module: String, metric: String },
    #[error(
        "module {module}: metric {metric:?} starts with {prefix:?}, which is reserved for module {owner}"
    )]
    Reserved {
        module: String,
        metric: String,
        prefix: String,
        owner: String,
    },
}

/// Which module owns each metric name on this host.
#[derive(Debug, Default, Clone)]
pub struct MetricOwners {
    owner_of: HashMap<String, String>,
    /// (prefix, owner): names only `owner` may publish.
    reserved: Vec<(String, String)>,
}

impl MetricOwners {
    pub fn new() -> MetricOwners {
        MetricOwners::default()
    }

    /// Keeps every name starting with `prefix` for `owner`.
    pub fn reserve_prefix(&mut self, prefix: &str, owner: &str) {
        self.reserved.push((prefix.to_string(), owner.to_string()));
    }

    /// Gives `module` all of `metrics`, or none of them: on any invalid, duplicate or
    /// already-owned name nothing is claimed and every problem is returned.
    pub fn claim<'a>(
        &mut self,
        module: &str,
        metrics: impl IntoIterator<Item = &'a str>,
    ) -> Result<(), Vec<ClaimError>> {
        let mut errors = Vec::new();
        let mut seen = std::collections::HashSet::new();
        let mut names = Vec::new();
        for metric in metrics {
            if let Err(source) = validate_metric_name(metric) {
                errors.push(ClaimError::Invalid {
                    module: module.to_string(),
                    source,
                });
            } else if let Some((prefix, owner)) = self
                .reserved
                .iter()
                .find(|(prefix, owner)| metric.starts_with(prefix.as_str()) && owner != module)
            {
                errors.push(ClaimError::Reserved {
                    module: module.into(),
                    metric: metric.into(),
                    prefix: prefix.clone(),
                    owner: owner.clone(),
                });
            } else if !seen.insert(metric) {
                errors.push(ClaimError::Duplicate {
                    module: module.into(),
                    metric: metric.into(),
                });
            } else if let Some(owner) = self.owner_of.get(metric).filter(|owner| *owner != module) {
                errors.push(ClaimError::Taken {
                    module: module.into(),
                    metric: metric.into(),
                    owner: owner.clone(),
                });
            } else {
                names.push(metric);
            }
        }
        if !errors.is_empty() {
            return Err(errors);
        }
        for name in names {
            self.owner_of.insert(name.to_string(), module.to_string());
        }
        Ok(())
    }

    /// Frees every name `module` owns (it stopped, or it is being replaced).
    pub fn release(&mut self, module: &str) {
        self.owner_of.retain(|_, owner| owner != module);
    }

    pub fn owner(&self, metric: &str) -> Option<&str> {
        self.owner_of.get(metric).map(String::as_str)
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

    #[test]
    fn first_module_wins_and_second_is_refused_whole() {
        let mut owners = MetricOwners::new();
        owners.claim("cpu", ["cpu_user", "cpu_idle"]).unwrap();
        let errors = owners
            .claim("rogue", ["rogue_only", "cpu_idle"])
            .unwrap_err();
        assert_eq!(
            errors,
            vec![ClaimError::Taken {
                module: "rogue".into(),
                metric: "cpu_idle".into(),
                owner: "cpu".into()
            }]
        );
        assert_eq!(
            errors[0].to_string(),
            "module rogue: metric \"cpu_idle\" is already published by module cpu"
        );
        assert_eq!(
            owners.owner("rogue_only"),
            None,
            "nothing is claimed on error"
        );
        assert_eq!(owners.owner("cpu_idle"), Some("cpu"));
    }

    #[test]
    fn reserved_prefix_is_only_for_its_owner() {
        let mut owners = MetricOwners::new();
        owners.reserve_prefix("wasmond_", "wasmond");
        owners.claim("wasmond", ["wasmond_cpu_calls"]).unwrap();
        let errors = owners.claim("evil", ["wasmond_fake"]).unwrap_err();
        assert_eq!(
            errors[0].to_string(),
            "module evil: metric \"wasmond_fake\" starts with \"wasmond_\", which is reserved for module wasmond"
        );
    }

    #[test]
    fn reports_every_problem_of_a_module() {
        let mut owners = MetricOwners::new();
        let errors = owners.claim("m", ["ok", "bad name", "ok", ""]).unwrap_err();
        assert_eq!(errors.len(), 3, "{errors:?}");
    }

    #[test]
    fn released_names_can_be_claimed_again_and_reclaiming_is_idempotent() {
        let mut owners = MetricOwners::new();
        owners.claim("a", ["m1"]).unwrap();
        owners.claim("a", ["m1"]).unwrap();
        owners.release("a");
        owners.claim("b", ["m1"]).unwrap();
        assert_eq!(owners.owner("m1"), Some("b"));
    }
}
