//! The host's own module, `wasmond`: the metrics that describe the daemon rather than the
//! machine, and the per-module accounting an operator needs to see which tenant costs
//! what.
//!
//! - `heartbeat` (uint32, the daemon's start time) and `location` (`host { location }`),
//!   described exactly as gmond's core module describes them, so gmond's stock
//!   collection groups select them unchanged.
//! - For every configured module `M` (its name with any character a metric name may not
//!   have replaced by `_`): `wasmond_M_calls`, `_errors`, `_traps`, the failures by
//!   kind (`_traps_fuel`, `_traps_deadline`, `_traps_memory`, `_traps_crash`,
//!   `_errors_module`, `_errors_invalid`, `_errors_load`), `_fuel` (fuel
//!   burnt) and `_busy` (microseconds spent in the module's calls) — whole counts,
//!   slope positive, so gmetad stores them as RRD COUNTERs and ganglia-web graphs their
//!   rates, in units such as `calls/s` — and `_memory` (its largest linear memory,
//!   bytes), all in metric group `wasmond`, each with a title (`Module M calls`, given
//!   by the built-in group's [`accounting_selectors`]) and a description.
//! - With a network, its counters (`wasmond_udp_received`, `_malformed`, `_refused`,
//!   `_over_quota`, `_denied`, `_kernel_drops`, `_sent`, `_send_failures`: whole counts
//!   of datagrams, slope positive, units `packets/s`), in group `wasmond` too; with a
//!   `prometheus_remote_write`, its own (`wasmond_remote_write_samples`, `_dropped`,
//!   `_refused`, `_retries`, and the gauge `_queue`).
//! - For every tenant `T`: `wasmond_tenant_T_calls`, ... the same counters summed over
//!   the tenant's modules (memory: the largest of them).
//!
//! Module authors may not publish names starting with [`HOST_PREFIX`]. Whatever the
//! modules are named, the host module starts: an accounting name that would pass 128
//! bytes or repeat another (module `a_b` and module `a b`, or module `tenant_x` and
//! tenant `x`, or one of the network's counters) is left out with a warning, first
//! declared first served, and `heartbeat`, `location` and the network's counters come
//! before all of them.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{SystemTime, UNIX_EPOCH};

use tracing::warn;

use super::driver::{Failure, FailureKind, ModuleDriver};
use super::names::MAX_METRIC_NAME_LEN;
use super::select::Selector;
use super::worker::Account;
use crate::metric::{MetricDescriptor, MetricValue, Slope, ValueType};
use crate::net::NetStats;

/// The host module's name, and the metric group of its accounting metrics.
pub(crate) const HOST_MODULE: &str = "wasmond";
/// The prefix of the accounting metrics; reserved for the host.
pub(crate) const HOST_PREFIX: &str = "wasmond_";

/// Each module's latest account, by module name; written by the scheduler.
pub(crate) type Accounts = Arc<Mutex<BTreeMap<String, Account>>>;

/// What the host module reports about the daemon itself.
#[derive(Debug, Clone, PartialEq)]
pub struct HostFacts {
    /// When the daemon started (gmond's GMOND_STARTED).
    pub started: SystemTime,
    /// `host { location }`.
    pub location: String,
}

/// One accounting metric of every module: `wasmond_<module>_<suffix>`.
struct Counter {
    suffix: &'static str,
    /// gmetad keeps a metric of slope `positive` as an RRD COUNTER, which graphs its rate:
    /// such metrics count up in whole units (rrdtool takes only integers for a COUNTER)
    /// and their units name the rate.
    slope: Slope,
    units: &'static str,
    /// ganglia-web's graph title, after the module's name.
    title: &'static str,
    description: &'static str,
    read: fn(&Account) -> f64,
}

/// The accounting metrics, in the order each module declares them. The failures by kind
/// come before `fuel`, so that the built-in group titles `_traps_fuel` before its
/// pattern for `_fuel` could take it.
const COUNTERS: [Counter; 13] = [
    Counter {
        suffix: "calls",
        slope: Slope::Positive,
        units: "calls/s",
        title: "calls",
        description: "Calls into the module (init, handler, cleanup), counted since the daemon started",
        read: |account| account.calls as f64,
    },
    Counter {
        suffix: "errors",
        slope: Slope::Positive,
        units: "errors/s",
        title: "errors",
        description: "Calls that returned an error or an invalid value, counted since the daemon started",
        read: |account| account.errors as f64,
    },
    Counter {
        suffix: "traps",
        slope: Slope::Positive,
        units: "traps/s",
        title: "traps",
        description: "Calls stopped by a trap (fuel, deadline, memory or crash), counted since the daemon started",
        read: |account| account.traps as f64,
    },
    Counter {
        suffix: "traps_fuel",
        slope: Slope::Positive,
        units: "traps/s",
        title: "traps: out of fuel",
        description: "Calls stopped for running out of fuel, counted since the daemon started",
        read: |account| account.failed(FailureKind::Fuel) as f64,
    },
    Counter {
        suffix: "traps_deadline",
        slope: Slope::Positive,
        units: "traps/s",
        title: "traps: deadline",
        description: "Calls stopped at their wall-clock deadline, counted since the daemon started",
        read: |account| account.failed(FailureKind::Deadline) as f64,
    },
    Counter {
        suffix: "traps_memory",
        slope: Slope::Positive,
        units: "traps/s",
        title: "traps: memory",
        description: "Calls stopped by the memory or table cap, counted since the daemon started",
        read: |account| account.failed(FailureKind::Memory) as f64,
    },
    Counter {
        suffix: "traps_crash",
        slope: Slope::Positive,
        units: "traps/s",
        title: "traps: crash",
        description: "Calls stopped by any other trap (unreachable, out-of-bounds access, stack overflow), counted since the daemon started",
        read: |account| account.failed(FailureKind::Crash) as f64,
    },
    Counter {
        suffix: "errors_module",
        slope: Slope::Positive,
        units: "errors/s",
        title: "errors reported",
        description: "Calls for which the module returned an error, counted since the daemon started",
        read: |account| account.failed(FailureKind::ModuleError) as f64,
    },
    Counter {
        suffix: "errors_invalid",
        slope: Slope::Positive,
        units: "errors/s",
        title: "invalid outputs",
        description: "Calls whose result broke the contract or a host cap, counted since the daemon started",
        read: |account| account.failed(FailureKind::InvalidOutput) as f64,
    },
    Counter {
        suffix: "errors_load",
        slope: Slope::Positive,
        units: "errors/s",
        title: "load failures",
        description: "Starts that failed to load the module (read, compile, type-check, grants), counted since the daemon started",
        read: |account| account.failed(FailureKind::Load) as f64,
    },
    Counter {
        suffix: "fuel",
        slope: Slope::Positive,
        units: "fuel/s",
        title: "fuel burnt",
        description: "Fuel burnt by the module (about one unit per wasm instruction), counted since the daemon started",
        read: |account| account.usage.fuel as f64,
    },
    Counter {
        suffix: "busy",
        slope: Slope::Positive,
        units: "us/s",
        title: "time in calls",
        description: "Microseconds spent in the module's calls (wall clock), counted since the daemon started; as a rate, 1000000 us/s is one thread kept busy",
        // Whole microseconds: calls take tens of microseconds, so whole seconds would
        // print 0 for hours.
        read: |account| account.busy.as_micros() as f64,
    },
    Counter {
        suffix: "memory",
        slope: Slope::Both,
        units: "bytes",
        title: "peak memory",
        description: "Largest linear memory the module has had",
        read: |account| account.usage.peak_memory_bytes as f64,
    },
];

/// The built-in accounting group's entries: each accounting metric with its title
/// (`Module <module> calls`, ...), then any other `wasmond_` metric under its name.
pub(crate) fn accounting_selectors() -> Vec<Selector> {
    let titled = COUNTERS.iter().map(|counter| {
        let pattern = format!("^{HOST_PREFIX}(.+)_{}$", counter.suffix);
        let title = format!("Module \\1 {}", counter.title);
        Selector::name_match(&pattern, Some(&title)).expect("a valid pattern and title")
    });
    let rest = Selector::name_match(&format!("^{HOST_PREFIX}"), None).expect("a valid pattern");
    titled.chain(std::iter::once(rest)).collect()
}

/// The host module's driver: runs inline in the scheduler and only reads counters.
pub(crate) struct HostModule {
    facts: HostFacts,
    modules: Vec<String>,
    /// (tenant, its modules).
    tenants: Vec<(String, Vec<String>)>,
    accounts: Accounts,
    network: Option<Arc<NetStats>>,
    /// Each accounting metric declared: whose account, and which counter.
    declared: HashMap<String, (Subject, &'static Counter)>,
}

/// Whose account an accounting metric shows: a module's, or a tenant's (index).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Subject {
    Module(usize),
    Tenant(usize),
}

impl HostModule {
    /// `modules`: the configured modules, whose accounting metrics it declares.
    pub fn new(facts: HostFacts, modules: Vec<String>, accounts: Accounts) -> HostModule {
        HostModule {
            facts,
            modules,
            tenants: Vec::new(),
            accounts,
            network: None,
            declared: HashMap::new(),
        }
    }

    /// Also publishes the network's counters ([`NetStats::published`]).
    pub(crate) fn with_network(mut self, network: Option<Arc<NetStats>>) -> HostModule {
        self.network = network;
        self
    }

    fn network_value(&self, metric: &str) -> Option<MetricValue> {
        let published = self.network.as_ref()?.published();
        let counter = published.iter().find(|counter| counter.name == metric)?;
        Some(MetricValue::Double(counter.value as f64))
    }

    /// Also declares each tenant's accounting, summed over `(tenant, modules)`.
    pub(crate) fn with_tenants(mut self, tenants: Vec<(String, Vec<String>)>) -> HostModule {
        self.tenants = tenants;
        self
    }

    fn account_value(&self, metric: &str) -> Option<MetricValue> {
        let (subject, counter) = *self.declared.get(metric)?;
        let accounts = self.accounts.lock().unwrap_or_else(PoisonError::into_inner);
        let account = match subject {
            Subject::Module(index) => accounts
                .get(&self.modules[index])
                .copied()
                .unwrap_or_default(),
            Subject::Tenant(index) => self.tenants[index]
                .1
                .iter()
                .filter_map(|module| accounts.get(module))
                .fold(Account::default(), |sum, account| sum.plus(account)),
        };
        drop(accounts);
        Some(MetricValue::Double((counter.read)(&account)))
    }
}

impl ModuleDriver for HostModule {
    fn start(&mut self) -> Result<Vec<MetricDescriptor>, Failure> {
        let mut metrics = vec![heartbeat(), location()];
        self.declared.clear();
        // The network's counters are the host's own: no module's name takes them.
        let network: Vec<MetricDescriptor> = self
            .network
            .iter()
            .flat_map(|network| network.published())
            .map(|counter| MetricDescriptor {
                name: counter.name.into(),
                value_type: ValueType::Double,
                units: counter.units.into(),
                slope: counter.slope,
                format: "%.0f".into(),
                time_max: 60,
                description: counter.description.into(),
                groups: vec![HOST_MODULE.into()],
                extra: Vec::new(),
            })
            .collect();
        let subjects = self
            .modules
            .iter()
            .enumerate()
            .map(|(i, module)| {
                (
                    Subject::Module(i),
                    metric_safe(module),
                    format!("Module {module}"),
                )
            })
            .chain(self.tenants.iter().enumerate().map(|(i, (tenant, _))| {
                (
                    Subject::Tenant(i),
                    format!("tenant_{}", metric_safe(tenant)),
                    format!("Modules of tenant {tenant}"),
                )
            }));
        for (subject, infix, whose) in subjects {
            for counter in &COUNTERS {
                let name = format!("{HOST_PREFIX}{infix}_{}", counter.suffix);
                let clash = name.len() > MAX_METRIC_NAME_LEN
                    || self.declared.contains_key(&name)
                    || network.iter().any(|n| n.name == name);
                if clash {
                    warn!(
                        "module {HOST_MODULE}: no accounting metric {name:?} for {whose}: the name is too long or already taken"
                    );
                    continue;
                }
                self.declared.insert(name.clone(), (subject, counter));
                metrics.push(MetricDescriptor {
                    name,
                    value_type: ValueType::Double,
                    units: counter.units.into(),
                    slope: counter.slope,
                    // Every value is a whole number.
                    format: "%.0f".into(),
                    time_max: 60,
                    description: format!("{whose}: {}", counter.description),
                    groups: vec![HOST_MODULE.into()],
                    extra: Vec::new(),
                });
            }
        }
        metrics.extend(network);
        Ok(metrics)
    }

    fn handle(&mut self, metric: &str) -> Result<MetricValue, Failure> {
        match metric {
            "heartbeat" => Ok(MetricValue::UInt32(unix_seconds(self.facts.started))),
            "location" => Ok(MetricValue::String(self.facts.location.clone())),
            _ => self
                .account_value(metric)
                .or_else(|| self.network_value(metric))
                .ok_or_else(|| Failure::error(format!("module {HOST_MODULE}: no metric {metric}"))),
        }
    }

    fn cleanup(&mut self) {}
}

/// gmond core module's `heartbeat`, as it sends it.
fn heartbeat() -> MetricDescriptor {
    core_metric(
        "heartbeat",
        ValueType::UInt32,
        "",
        "%u",
        20,
        "Last heartbeat",
    )
}

/// gmond core module's `location`, as it sends it.
fn location() -> MetricDescriptor {
    core_metric(
        "location",
        ValueType::String,
        "(x,y,z)",
        "%s",
        1200,
        "Location of the machine",
    )
}

fn core_metric(
    name: &str,
    value_type: ValueType,
    units: &str,
    format: &str,
    time_max: u32,
    description: &str,
) -> MetricDescriptor {
    MetricDescriptor {
        name: name.into(),
        value_type,
        units: units.into(),
        slope: Slope::Unspecified,
        format: format.into(),
        time_max,
        description: description.into(),
        groups: vec!["core".into()],
        extra: Vec::new(),
    }
}

/// A module name as it appears inside a metric name.
pub(crate) fn metric_safe(module: &str) -> String {
    module
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.') {
                c
            } else {
                '_'
            }
        })
        .collect()
}

fn unix_seconds(time: SystemTime) -> u32 {
    let seconds = time
        .duration_since(UNIX_EPOCH)
        .map_or(0, |since| since.as_secs());
    u32::try_from(seconds).unwrap_or(u32::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::collect::driver::Usage;
    use std::time::Duration;

    fn host(accounts: &Accounts) -> HostModule {
        let facts = HostFacts {
            started: UNIX_EPOCH + Duration::from_secs(1_795_447_229),
            location: "rack1".into(),
        };
        HostModule::new(
            facts,
            vec!["disk io".into(), "cpu".into()],
            accounts.clone(),
        )
    }

    #[test]
    fn declares_gmond_core_metrics_and_accounting_per_module() {
        let accounts = Accounts::default();
        let descriptors = host(&accounts).start().unwrap();
        let names: Vec<_> = descriptors.iter().map(|d| d.name.as_str()).collect();
        assert_eq!(
            &names[..4],
            [
                "heartbeat",
                "location",
                "wasmond_disk_io_calls",
                "wasmond_disk_io_errors"
            ]
        );
        assert_eq!(names.len(), 2 + 2 * COUNTERS.len());
        for name in names {
            crate::collect::names::validate_metric_name(name).unwrap();
        }
        let heartbeat = &descriptors[0];
        assert_eq!(
            (heartbeat.value_type, heartbeat.time_max, heartbeat.slope),
            (ValueType::UInt32, 20, Slope::Unspecified)
        );
    }

    #[test]
    fn publishes_the_networks_counters() {
        let net = Arc::new(NetStats::default());
        let mut module = host(&Accounts::default()).with_network(Some(Arc::clone(&net)));
        let descriptors = module.start().unwrap();
        let refused = descriptors
            .iter()
            .find(|d| d.name == "wasmond_udp_refused")
            .unwrap();
        assert_eq!(refused.groups, ["wasmond"]);
        assert_eq!(refused.slope, Slope::Positive);
        net.packets_refused.add(3);
        assert_eq!(
            module.handle("wasmond_udp_refused"),
            Ok(MetricValue::Double(3.0))
        );
        for counter in net.published() {
            crate::collect::names::validate_metric_name(counter.name).unwrap();
            assert!(module.handle(counter.name).is_ok(), "{}", counter.name);
        }
        let without = host(&Accounts::default()).start().unwrap();
        assert!(!without.iter().any(|d| d.name.starts_with("wasmond_udp_")));
        assert!(
            !descriptors
                .iter()
                .any(|d| d.name.starts_with("wasmond_remote_write_")),
            "no remote write configured"
        );
    }

    #[test]
    fn publishes_the_remote_writes_counters_and_queue_when_configured() {
        let net = Arc::new(NetStats {
            remote_write: true,
            ..NetStats::default()
        });
        let mut module = host(&Accounts::default()).with_network(Some(Arc::clone(&net)));
        let descriptors = module.start().unwrap();
        let slope = |name: &str| descriptors.iter().find(|d| d.name == name).unwrap().slope;
        assert_eq!(slope("wasmond_remote_write_samples"), Slope::Positive);
        assert_eq!(slope("wasmond_remote_write_dropped"), Slope::Positive);
        assert_eq!(slope("wasmond_remote_write_queue"), Slope::Both);
        net.remote_write_samples.add(120);
        net.remote_write_queue.add(3);
        net.remote_write_queue.add(-1);
        assert_eq!(
            module.handle("wasmond_remote_write_samples"),
            Ok(MetricValue::Double(120.0))
        );
        assert_eq!(
            module.handle("wasmond_remote_write_queue"),
            Ok(MetricValue::Double(2.0))
        );
        for counter in net.published() {
            crate::collect::names::validate_metric_name(counter.name).unwrap();
        }
    }

    #[test]
    fn reads_heartbeat_location_and_accounts() {
        let accounts = Accounts::default();
        let mut module = host(&accounts);
        module.start().unwrap();
        assert_eq!(
            module.handle("heartbeat"),
            Ok(MetricValue::UInt32(1_795_447_229))
        );
        assert_eq!(
            module.handle("location"),
            Ok(MetricValue::String("rack1".into()))
        );
        assert_eq!(
            module.handle("wasmond_cpu_calls"),
            Ok(MetricValue::Double(0.0)),
            "no account yet"
        );
        let account = Account {
            calls: 7,
            traps: 2,
            busy: Duration::from_millis(1500),
            ..Account::default()
        };
        accounts.lock().unwrap().insert("cpu".into(), account);
        assert_eq!(
            module.handle("wasmond_cpu_calls"),
            Ok(MetricValue::Double(7.0))
        );
        assert_eq!(
            module.handle("wasmond_cpu_traps"),
            Ok(MetricValue::Double(2.0))
        );
        assert_eq!(
            module.handle("wasmond_cpu_busy"),
            Ok(MetricValue::Double(1_500_000.0)),
            "whole microseconds"
        );
        assert!(module.handle("wasmond_cpu_nothing").is_err());
        assert!(module.handle("wasmond_gpu_calls").is_err());
    }

    #[test]
    fn names_that_collide_or_are_too_long_leave_out_only_their_accounting() {
        let accounts = Accounts::default();
        let facts = HostFacts {
            started: UNIX_EPOCH,
            location: "x".into(),
        };
        let long = "m".repeat(130);
        let modules = vec![
            "a b".to_string(),
            "a_b".to_string(),
            long.clone(),
            "tenant_acme".to_string(),
        ];
        let mut module = HostModule::new(facts, modules, accounts.clone())
            .with_tenants(vec![("acme".into(), vec!["a b".into()])]);
        let descriptors = module.start().expect("the host module always starts");
        let names: Vec<&str> = descriptors.iter().map(|d| d.name.as_str()).collect();
        assert_eq!(&names[..2], ["heartbeat", "location"]);
        let unique: std::collections::HashSet<&&str> = names.iter().collect();
        assert_eq!(unique.len(), names.len(), "no name twice: {names:?}");
        for name in &names {
            crate::collect::names::validate_metric_name(name).unwrap();
        }
        // "a b" came first and keeps its accounting; "a_b" and the tenant, which would
        // repeat names, and the module whose names are too long, have none.
        assert_eq!(names.len(), 2 + 2 * COUNTERS.len());
        accounts.lock().unwrap().insert(
            "a b".into(),
            Account {
                calls: 3,
                ..Account::default()
            },
        );
        assert_eq!(
            module.handle("wasmond_a_b_calls"),
            Ok(MetricValue::Double(3.0))
        );
        assert_eq!(
            module.handle("wasmond_tenant_acme_calls"),
            Ok(MetricValue::Double(0.0)),
            "module tenant_acme was declared first"
        );
    }

    #[test]
    fn a_tenant_s_accounting_sums_its_modules() {
        let accounts = Accounts::default();
        let mut module = host(&accounts)
            .with_tenants(vec![("acme".into(), vec!["disk io".into(), "cpu".into()])]);
        module.start().unwrap();
        for (name, calls, memory) in [("disk io", 2, 10), ("cpu", 5, 30)] {
            let account = Account {
                calls,
                usage: Usage {
                    fuel: 1,
                    peak_memory_bytes: memory,
                },
                ..Account::default()
            };
            accounts.lock().unwrap().insert(name.into(), account);
        }
        assert_eq!(
            module.handle("wasmond_tenant_acme_calls"),
            Ok(MetricValue::Double(7.0))
        );
        assert_eq!(
            module.handle("wasmond_tenant_acme_memory"),
            Ok(MetricValue::Double(30.0))
        );
    }
}
