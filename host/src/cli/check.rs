//! `wasmond check [-c FILE]`: validates a configuration, loads every module and runs its
//! `init` (and, for a python module, each metric's call_back once, to see what the
//! sandbox refuses it), and explains what the daemon would do: each module's metrics, which
//! collection group collects each, how often and with which thresholds; the metrics no
//! group collects (gmond ignores them silently) and the group entries that match no
//! metric; where the store is pushed (`prometheus_remote_write`). Exits non-zero on any
//! error: in the config, in a module, or in its metric names, or anything the sandbox
//! refused a python module (an open outside its grants, with the grant to add; a socket,
//! a process, a thread), which the module may hide.

use std::fmt::Write as _;
use std::path::PathBuf;
use std::time::{Duration, SystemTime};

use crate::collect::conversion::{group_specs, module_code, policy, sandbox};
use crate::collect::driver::ModuleDriver;
use crate::collect::host_module::{Accounts, HOST_MODULE, HOST_PREFIX, HostFacts, HostModule};
use crate::collect::ownership::{Claimant, MetricOwners, Rank};
use crate::collect::plan::{
    ACCOUNTING_EVERY, ACCOUNTING_THRESHOLD, PlannedGroup, accounting_group, plan,
};
use crate::collect::select::{Catalog, Collect, GroupSelection, GroupSpec, MetricKey};
use crate::config::{Config, ModuleSource};
use crate::daemon::ConfigSource;
use crate::metric::MetricDescriptor;
use crate::runtime::{Code, Compiler, Runtime, RuntimeConfig};

#[derive(Debug, clap::Args)]
pub struct CheckArgs {
    /// The gmond.conf to check; without it, the bundled default (conf.d/wasmond.conf).
    #[arg(short = 'c', long = "conf", value_name = "FILE")]
    pub config: Option<PathBuf>,
}

/// Prints the report on stdout and the problems on stderr; fails when there is any.
pub fn check(args: CheckArgs) -> anyhow::Result<()> {
    let source = ConfigSource::new(args.config);
    let loaded = match source.load() {
        Ok(loaded) => loaded,
        Err(errors) => {
            for error in &errors.0 {
                eprintln!("{error}");
            }
            anyhow::bail!(
                "{}: {} errors in the configuration",
                source.describe(),
                errors.0.len()
            );
        }
    };
    for warning in &loaded.warnings {
        eprintln!("{warning}");
    }
    let runtime = Runtime::new(RuntimeConfig {
        compiler: Compiler::this_program(),
        ..RuntimeConfig::default()
    })?;
    let (report, errors) = explain(&loaded.config, &runtime);
    print!("{report}");
    // A refused tenant file does not stop the daemon, but it is the operator's to see.
    for error in &loaded.tenant_errors {
        eprintln!("{error} (the tenant's file is refused)");
    }
    for error in &errors {
        eprintln!("error: {error}");
    }
    let count = errors.len() + loaded.tenant_errors.len();
    if count == 0 {
        println!("{}: OK", source.describe());
        Ok(())
    } else {
        anyhow::bail!("{}: {count} errors", source.describe())
    }
}

/// A module as `check` found it.
struct Checked {
    name: String,
    what: String,
    metrics: Vec<MetricDescriptor>,
}

/// The report's text and the errors found.
pub fn explain(config: &Config, runtime: &Runtime) -> (String, Vec<String>) {
    let mut errors = Vec::new();
    let groups = group_specs(config).unwrap_or_else(|entry_errors| {
        errors.extend(entry_errors.iter().map(ToString::to_string));
        Vec::new()
    });
    let mut owners = MetricOwners::new();
    owners.reserve_prefix(HOST_PREFIX, HOST_MODULE);
    let mut notes = String::new();
    let mut modules = vec![host_module(config)];
    for module in &config.modules {
        match &module.source {
            ModuleSource::Wasm { .. } | ModuleSource::Python { .. } if module.enabled => {
                let code = module_code(module).expect("an enabled wasm or python module");
                let checked = start_module(
                    runtime,
                    &module.name,
                    &code,
                    &module.params,
                    &module.sandbox,
                );
                let what = match &code {
                    Code::Wasm(path) => path.display().to_string(),
                    Code::Python { source, .. } => format!("{} (python)", source.display()),
                };
                match checked {
                    Ok(metrics) => modules.push(Checked {
                        name: module.name.clone(),
                        what: format!("{what} ({} metrics)", metrics.len()),
                        metrics,
                    }),
                    Err(module_errors) => errors.extend(module_errors),
                }
            }
            ModuleSource::Wasm { path } | ModuleSource::Python { source: path, .. } => {
                let _ = writeln!(
                    notes,
                    "module {}: disabled ({})",
                    module.name,
                    path.display()
                );
            }
            ModuleSource::Native { reason, .. } => {
                let _ = writeln!(notes, "module {}: not loaded: {reason}", module.name);
            }
            ModuleSource::DisabledMissing { .. } => {
                let _ = writeln!(notes, "module {}: disabled", module.name);
            }
        }
    }
    // The names as the running daemon settles them: strongest claimant first.
    let policy = policy(config);
    let tenant_of = |name: &str| policy.modules.get(name).copied();
    let mut by_rank: Vec<(Rank, usize)> = modules
        .iter()
        .enumerate()
        .map(|(position, module)| (Rank::of(position, tenant_of(&module.name)), position))
        .collect();
    by_rank.sort();
    for (rank, index) in by_rank {
        let module = &mut modules[index];
        let claimant = Claimant {
            module: &module.name,
            rank,
            tenant: tenant_of(&module.name).map(|t| &policy.tenants[t]),
        };
        let claimed = owners.claim(claimant, module.metrics.iter().map(|m| m.name.as_str()));
        errors.extend(
            claimed
                .refused
                .iter()
                .map(|clash| format!("{clash}; that metric would not be published")),
        );
        let mut granted = claimed.granted.iter();
        module.metrics.retain(|_| *granted.next().unwrap_or(&false));
    }
    let catalog = Catalog::new(modules.iter().flat_map(|module| {
        module.metrics.iter().map(|m| {
            (
                MetricKey::new(&module.name, &m.name),
                tenant_of(&module.name),
            )
        })
    }));
    // Planned as the engine plans: a tenant's group selects only that tenant's metrics,
    // and the daemon's accounting group, last, what no configured group takes.
    let accounting = accounting_group();
    let planned: Vec<PlannedGroup<'_>> = groups
        .iter()
        .enumerate()
        .map(|(index, spec)| PlannedGroup {
            spec,
            tenant: policy.groups.get(index).copied().flatten(),
            builtin: false,
        })
        .chain(std::iter::once(PlannedGroup {
            spec: &accounting,
            tenant: None,
            builtin: true,
        }))
        .collect();
    let mut selections = plan(&catalog, &planned);
    let accounted = selections.pop().expect("the accounting group is planned");
    notes.push_str(&render(config, &groups, &selections, &accounted, &modules));
    notes.push_str(&exports(config));
    (notes, errors)
}

/// Where the store is pushed beyond Ganglia, one line per `prometheus_remote_write`.
fn exports(config: &Config) -> String {
    let mut out = String::new();
    for push in &config.prometheus_remote_writes {
        let _ = writeln!(
            out,
            "prometheus_remote_write ({}): every metric of every host pushed to {} every {} s, up to {} requests queued while it is unreachable",
            push.declared_at, push.url, push.interval, push.queue
        );
    }
    out
}

fn host_module(config: &Config) -> Checked {
    let facts = HostFacts {
        started: SystemTime::now(),
        location: config.host.location.clone(),
    };
    let names = config
        .modules
        .iter()
        .filter(|m| m.wasm_path().is_some())
        .map(|m| m.name.clone())
        .collect();
    let metrics = HostModule::new(facts, names, Accounts::default())
        .start()
        .unwrap_or_default();
    Checked {
        name: HOST_MODULE.into(),
        what: "the daemon's own metrics".into(),
        metrics,
    }
}

fn start_module(
    runtime: &Runtime,
    name: &str,
    code: &Code,
    params: &[(String, String)],
    config: &crate::config::SandboxConfig,
) -> Result<Vec<MetricDescriptor>, Vec<String>> {
    let sandbox = sandbox(config);
    let loaded = runtime
        .load_code(name, code, sandbox)
        .map_err(|e| vec![e.to_string()])?;
    let mut instance = loaded
        .start(params.to_vec())
        .map_err(|e| vec![e.to_string()])?;
    let metrics = instance.descriptors().to_vec();
    // A python module's interpreter reports what the sandbox refused; most modules
    // open their files in the call_backs, and many turn a refused open into a 0.
    if matches!(code, Code::Python { .. }) {
        for metric in &metrics {
            let _ = instance.handle(&metric.name);
        }
    }
    let refused: Vec<String> = instance
        .refused()
        .iter()
        .map(|what| format!("module {name}: refused: {what}"))
        .collect();
    if let Err(error) = instance.cleanup() {
        return Err(vec![error.to_string()]);
    }
    if !refused.is_empty() {
        return Err(refused);
    }
    Ok(metrics)
}

fn render(
    config: &Config,
    groups: &[GroupSpec],
    selections: &[GroupSelection],
    accounted: &GroupSelection,
    modules: &[Checked],
) -> String {
    let mut out = String::new();
    for module in modules {
        let _ = writeln!(out, "module {}: {}", module.name, module.what);
        for metric in &module.metrics {
            let key = MetricKey::new(&module.name, &metric.name);
            let _ = write!(
                out,
                "  {} ({}{}, tmax {} s)",
                metric.name,
                metric.value_type,
                if metric.units.is_empty() {
                    String::new()
                } else {
                    format!(", {}", metric.units)
                },
                metric.time_max
            );
            let collectors: Vec<String> = selections
                .iter()
                .zip(groups)
                .enumerate()
                .filter_map(|(index, (selection, group))| {
                    let selected = selection.metrics.iter().find(|m| m.key == key)?;
                    let threshold = selected
                        .value_threshold
                        .map_or(String::new(), |t| format!(", value_threshold {t}"));
                    let title = if selected.title == metric.name {
                        String::new()
                    } else {
                        format!(", title {:?}", selected.title)
                    };
                    Some(format!(
                        "group {} by {}{} ({}{threshold}{title})",
                        index + 1,
                        group.entries[selected.entry].selector.describe(),
                        if group.entries[selected.entry].selector.is_exclusion() {
                            " (every metric but the excluded)"
                        } else {
                            ""
                        },
                        describe_group(group)
                    ))
                })
                .collect();
            let exclusions: Vec<String> = selections
                .iter()
                .zip(groups)
                .enumerate()
                .filter_map(|(index, (selection, group))| {
                    let (_, entry) = selection.excluded.iter().find(|(k, _)| *k == key)?;
                    Some(format!(
                        "excluded from group {} by {}",
                        index + 1,
                        group.entries[*entry].selector.describe()
                    ))
                })
                .collect();
            let collectors: Vec<String> = collectors.into_iter().chain(exclusions).collect();
            let only_excluded =
                !collectors.is_empty() && collectors.iter().all(|c| c.starts_with("excluded from"));
            if collectors.is_empty() && accounted.metrics.iter().any(|m| m.key == key) {
                let _ = writeln!(
                    out,
                    ": the built-in accounting group (every {} s, sent at least every {} s)",
                    ACCOUNTING_EVERY.as_secs(),
                    ACCOUNTING_THRESHOLD.as_secs()
                );
            } else if collectors.is_empty() {
                let _ = writeln!(out, ": collected by no group");
            } else if only_excluded {
                let _ = writeln!(out, ": collected by no group ({})", collectors.join("; "));
            } else {
                let _ = writeln!(out, ": {}", collectors.join("; "));
            }
        }
    }
    for (index, (selection, group)) in selections.iter().zip(groups).enumerate() {
        let at = &config.collection_groups[index].declared_at;
        for entry in &selection.unmatched_entries {
            let _ = writeln!(
                out,
                "group {} ({at}): entry {} matches no metric",
                index + 1,
                group.entries[*entry].selector.describe()
            );
        }
    }
    out
}

fn describe_group(group: &GroupSpec) -> String {
    let collect = match group.collect {
        Collect::Once => "collected once".to_string(),
        Collect::Every(every) => format!("every {}", seconds(every)),
    };
    format!(
        "{collect}, sent at least every {}",
        seconds(group.time_threshold)
    )
}

fn seconds(duration: Duration) -> String {
    format!("{} s", duration.as_secs())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_remote_write_is_explained() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("g.conf");
        let conf = "\n\nprometheus_remote_write { url = \"http://127.0.0.1:9090/api/v1/write\" }\n";
        std::fs::write(&path, conf).unwrap();
        let config = crate::config::load(&path).unwrap().config;
        assert_eq!(
            exports(&config),
            format!(
                "prometheus_remote_write ({}:3:1): every metric of every host pushed to http://127.0.0.1:9090/api/v1/write every 15 s, up to 16 requests queued while it is unreachable\n",
                path.display()
            )
        );
    }
}
