//! Who owns each metric name on this host: authority first, not load order.
//!
//! Three levels of authority: the host's own module (`wasmond`: `heartbeat`,
//! `location`, the `wasmond_*` accounting), the operator's modules (everything outside a
//! tenant, `core_metrics` included), then the tenants' modules. A claim is made metric by
//! metric: a name the module may not have is refused alone, and the module runs with the
//! rest. A stronger claimant takes a name from a weaker owner; among the operator's
//! modules the one declared first is the stronger; among tenants' modules, whoever
//! claimed first keeps it.
//!
//! The engine makes sure that nothing of a loser is ever published: a module's claims
//! wait until every module that could be stronger has finished its first start (tenants
//! for all the operator's; the operator's for the earlier operator modules, but only
//! `SETTLE_WAIT`, so one slow start does not hold healthy modules back), so a take-over
//! only happens when a stronger module whose first start failed, or was that slow,
//! succeeds later.
//!
//! A tenant's modules are also held to the tenant's `name_prefix` and to its
//! `max_metrics`, counted over all its modules.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use thiserror::Error;

use super::names::{NameError, validate_metric_name};

/// The operator's policy over tenants, as the engine needs it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Policy {
    pub tenants: Vec<TenantPolicy>,
    /// Module name → index in `tenants`; modules not listed are the operator's.
    pub modules: HashMap<String, usize>,
    /// For each configured collection group (in the engine config's order), the index
    /// of the tenant that declared it: it selects only that tenant's metrics.
    pub groups: Vec<Option<usize>>,
}

/// One tenant's limits that only the engine can enforce.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TenantPolicy {
    pub name: Arc<str>,
    pub name_prefix: Option<String>,
    /// Metrics of all its modules together.
    pub max_metrics: usize,
    /// CPU time (wall time in calls) of all its modules per minute.
    pub cpu_per_minute: Duration,
}

/// How strong a claimant is; smaller is stronger.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub(crate) struct Rank {
    level: Level,
    /// Configuration order, for the host's and the operator's modules; 0 for tenants',
    /// which do not outrank one another.
    position: usize,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub(crate) enum Level {
    Host,
    Operator,
    Tenant,
}

impl Rank {
    pub fn new(level: Level, position: usize) -> Rank {
        let position = if level == Level::Tenant { 0 } else { position };
        Rank { level, position }
    }

    /// The rank of the module at `position` in configuration order (the host's own
    /// module first), as the engine and `wasmond check` settle names.
    pub fn of(position: usize, tenant: Option<usize>) -> Rank {
        let level = match (position, tenant) {
            (0, _) => Level::Host,
            (_, None) => Level::Operator,
            (_, Some(_)) => Level::Tenant,
        };
        Rank::new(level, position)
    }

    pub fn level(&self) -> Level {
        self.level
    }

    /// Whether a module of this rank must wait for `other`'s first start before it
    /// claims: `other` could be stronger.
    pub(crate) fn waits_for(&self, other: &Rank) -> bool {
        other < self
    }
}

/// Who claims.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Claimant<'a> {
    pub module: &'a str,
    pub rank: Rank,
    /// The tenant's policy, for a tenant's module.
    pub tenant: Option<&'a TenantPolicy>,
}

/// Why one metric name is refused to a module.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub(crate) enum ClaimError {
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
    #[error(
        "module {module}: metric {metric:?} does not start with {prefix:?}, the name prefix of tenant {tenant}"
    )]
    OutsidePrefix {
        module: String,
        metric: String,
        prefix: String,
        tenant: String,
    },
    #[error("module {module}: metric {metric:?} is over tenant {tenant}'s quota of {max} metrics")]
    OverQuota {
        module: String,
        metric: String,
        tenant: String,
        max: usize,
    },
}

/// The outcome of one module's claim.
#[derive(Debug, Default, PartialEq, Eq)]
pub(crate) struct Claimed {
    /// For each metric asked, in order, whether it is the module's now.
    pub granted: Vec<bool>,
    pub refused: Vec<ClaimError>,
    /// (module, metric): names taken from a weaker owner, which must stop publishing them.
    pub taken_from: Vec<(String, String)>,
}

struct Owner {
    module: String,
    rank: Rank,
    tenant: Option<Arc<str>>,
}

/// Which module owns each metric name on this host.
#[derive(Default)]
pub(crate) struct MetricOwners {
    owner_of: HashMap<String, Owner>,
    /// (prefix, owner): names only `owner` may publish.
    reserved: Vec<(String, String)>,
}

impl MetricOwners {
    pub fn new() -> MetricOwners {
        MetricOwners::default()
    }

    /// Keeps every name starting with `prefix` for `owner`.
    pub(crate) fn reserve_prefix(&mut self, prefix: &str, owner: &str) {
        self.reserved.push((prefix.to_string(), owner.to_string()));
    }

    /// Claims `metrics` for `who`, replacing what it owned before: each name is granted
    /// or refused on its own.
    pub(crate) fn claim<'a>(
        &mut self,
        who: Claimant<'_>,
        metrics: impl IntoIterator<Item = &'a str>,
    ) -> Claimed {
        self.release(who.module);
        let tenant = who.tenant.map(|t| t.name.clone());
        let mut owned_by_tenant = tenant.as_ref().map_or(0, |tenant| {
            self.owner_of
                .values()
                .filter(|o| o.tenant.as_ref() == Some(tenant))
                .count()
        });
        let mut claimed = Claimed::default();
        let mut seen = std::collections::HashSet::new();
        for metric in metrics {
            let refusal = self.refusal(who, metric, &seen, owned_by_tenant);
            claimed.granted.push(refusal.is_none());
            if let Some(refusal) = refusal {
                claimed.refused.push(refusal);
                continue;
            }
            seen.insert(metric);
            owned_by_tenant += 1;
            let previous = self.owner_of.insert(
                metric.to_string(),
                Owner {
                    module: who.module.to_string(),
                    rank: who.rank,
                    tenant: tenant.clone(),
                },
            );
            if let Some(previous) = previous {
                claimed
                    .taken_from
                    .push((previous.module, metric.to_string()));
            }
        }
        claimed
    }

    fn refusal(
        &self,
        who: Claimant<'_>,
        metric: &str,
        seen: &std::collections::HashSet<&str>,
        owned_by_tenant: usize,
    ) -> Option<ClaimError> {
        let module = || who.module.to_string();
        if let Err(source) = validate_metric_name(metric) {
            return Some(ClaimError::Invalid {
                module: module(),
                source,
            });
        }
        if let Some((prefix, owner)) = self
            .reserved
            .iter()
            .find(|(prefix, owner)| metric.starts_with(prefix.as_str()) && owner != who.module)
        {
            return Some(ClaimError::Reserved {
                module: module(),
                metric: metric.into(),
                prefix: prefix.clone(),
                owner: owner.clone(),
            });
        }
        if let Some(tenant) = who.tenant
            && let Some(prefix) = &tenant.name_prefix
            && !metric.starts_with(prefix.as_str())
        {
            return Some(ClaimError::OutsidePrefix {
                module: module(),
                metric: metric.into(),
                prefix: prefix.clone(),
                tenant: tenant.name.to_string(),
            });
        }
        if seen.contains(metric) {
            return Some(ClaimError::Duplicate {
                module: module(),
                metric: metric.into(),
            });
        }
        if let Some(owner) = self.owner_of.get(metric)
            && owner.rank <= who.rank
        {
            return Some(ClaimError::Taken {
                module: module(),
                metric: metric.into(),
                owner: owner.module.clone(),
            });
        }
        if let Some(tenant) = who.tenant
            && owned_by_tenant >= tenant.max_metrics
        {
            return Some(ClaimError::OverQuota {
                module: module(),
                metric: metric.into(),
                tenant: tenant.name.to_string(),
                max: tenant.max_metrics,
            });
        }
        None
    }

    /// Frees every name `module` owns (it stopped, or it is being replaced).
    pub fn release(&mut self, module: &str) {
        self.owner_of.retain(|_, owner| owner.module != module);
    }

    pub fn owner(&self, metric: &str) -> Option<&str> {
        self.owner_of.get(metric).map(|o| o.module.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn operator(module: &str, position: usize) -> Claimant<'_> {
        Claimant {
            module,
            rank: Rank::new(Level::Operator, position),
            tenant: None,
        }
    }

    fn tenant<'a>(module: &'a str, policy: &'a TenantPolicy) -> Claimant<'a> {
        Claimant {
            module,
            rank: Rank::new(Level::Tenant, 99),
            tenant: Some(policy),
        }
    }

    fn acme(prefix: Option<&str>, max_metrics: usize) -> TenantPolicy {
        TenantPolicy {
            name: "acme".into(),
            name_prefix: prefix.map(Into::into),
            max_metrics,
            cpu_per_minute: Duration::from_secs(6),
        }
    }

    #[test]
    fn a_clash_refuses_only_the_clashing_metric_of_the_weaker_module() {
        let mut owners = MetricOwners::new();
        let policy = acme(None, 100);
        let first = owners.claim(tenant("squatter", &policy), ["load_one", "own"]);
        assert_eq!(first.granted, [true, true]);
        // The operator's module is stronger whatever the order: it takes the name.
        let core = owners.claim(operator("core_metrics", 1), ["load_one", "cpu_idle"]);
        assert_eq!(core.granted, [true, true]);
        assert_eq!(
            core.taken_from,
            [("squatter".to_string(), "load_one".to_string())]
        );
        assert_eq!(owners.owner("load_one"), Some("core_metrics"));
        assert_eq!(owners.owner("own"), Some("squatter"));
        // Claiming again, the squatter keeps what is not the operator's.
        let again = owners.claim(tenant("squatter", &policy), ["load_one", "own"]);
        assert_eq!(again.granted, [false, true]);
        assert_eq!(
            again.refused[0].to_string(),
            "module squatter: metric \"load_one\" is already published by module core_metrics"
        );
    }

    #[test]
    fn among_operator_modules_the_earlier_declared_wins_and_tenants_first_come() {
        let mut owners = MetricOwners::new();
        owners.claim(operator("late", 5), ["m"]);
        let early = owners.claim(operator("early", 2), ["m"]);
        assert_eq!(early.taken_from, [("late".to_string(), "m".to_string())]);
        let late = owners.claim(operator("late", 5), ["m"]);
        assert_eq!(late.granted, [false]);

        let policy = acme(None, 100);
        let other = TenantPolicy {
            name: "bob".into(),
            ..acme(None, 100)
        };
        owners.claim(tenant("a", &policy), ["t"]);
        let b = owners.claim(tenant("b", &other), ["t"]);
        assert_eq!(b.granted, [false], "tenants do not outrank one another");
    }

    #[test]
    fn a_tenant_is_held_to_its_prefix_and_quota() {
        let mut owners = MetricOwners::new();
        let policy = acme(Some("acme_"), 3);
        let a = owners.claim(tenant("a", &policy), ["acme_1", "load_one", "acme_2"]);
        assert_eq!(a.granted, [true, false, true]);
        assert_eq!(
            a.refused[0].to_string(),
            "module a: metric \"load_one\" does not start with \"acme_\", the name prefix of tenant acme"
        );
        let b = owners.claim(tenant("b", &policy), ["acme_3", "acme_4"]);
        assert_eq!(b.granted, [true, false]);
        assert_eq!(
            b.refused[0].to_string(),
            "module b: metric \"acme_4\" is over tenant acme's quota of 3 metrics"
        );
        // A re-claim replaces the module's own names, it does not count them twice.
        let a = owners.claim(tenant("a", &policy), ["acme_1", "acme_2"]);
        assert_eq!(a.granted, [true, true]);
    }

    #[test]
    fn reserved_prefix_invalid_and_duplicate_names_are_refused_alone() {
        let mut owners = MetricOwners::new();
        owners.reserve_prefix("wasmond_", "wasmond");
        let claimed = owners.claim(
            operator("m", 1),
            ["ok", "wasmond_fake", "bad name", "ok", ""],
        );
        assert_eq!(claimed.granted, [true, false, false, false, false]);
        assert_eq!(
            claimed.refused[0].to_string(),
            "module m: metric \"wasmond_fake\" starts with \"wasmond_\", which is reserved for module wasmond"
        );
        assert_eq!(claimed.refused.len(), 4);
    }

    #[test]
    fn released_names_can_be_claimed_again() {
        let mut owners = MetricOwners::new();
        owners.claim(operator("a", 1), ["m1"]);
        owners.release("a");
        owners.claim(operator("b", 2), ["m1"]);
        assert_eq!(owners.owner("m1"), Some("b"));
    }
}
