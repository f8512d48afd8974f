//! From the typed configuration to what the engine runs: collection groups as
//! [`GroupSpec`]s, wasm modules as [`ModuleSpec`]s with their sandbox, and the
//! fingerprint that decides whether a reload restarts a module.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::path::Path;
use std::time::Duration;

use super::ownership::{Policy, TenantPolicy};
use super::select::{Collect, EntrySpec, GroupSpec, Selector, SelectorError};
use super::supervisor::{CallBounds, ModuleSpec};
use super::wasm::WasmDriver;
use crate::config::ModuleSource;
use crate::config::{
    CollectionGroup, Config, EnvGrant, Location, MetricSelector, ModuleConfig, SandboxConfig,
};
use crate::runtime::{Code, Grants, Limits, Runtime, Sandbox};

/// The shortest period accepted for `collect_every` and `time_threshold`: gmond never
/// loops faster than once a second, and 0 would make a group due all the time.
pub(crate) const MIN_PERIOD: Duration = Duration::from_secs(1);

/// A group entry the engine cannot use, with where it is.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{at}: {source}")]
pub(crate) struct EntryError {
    pub at: Location,
    pub source: SelectorError,
}

/// Every `collection_group` of the config, or every entry that cannot be used.
pub(crate) fn group_specs(config: &Config) -> Result<Vec<GroupSpec>, Vec<EntryError>> {
    let mut errors = Vec::new();
    let specs = config
        .collection_groups
        .iter()
        .map(|group| group_spec(group, &mut errors))
        .collect();
    if errors.is_empty() {
        Ok(specs)
    } else {
        Err(errors)
    }
}

fn group_spec(group: &CollectionGroup, errors: &mut Vec<EntryError>) -> GroupSpec {
    let collect = if group.collect_once {
        Collect::Once
    } else {
        Collect::Every(Duration::from_secs(group.collect_every.into()).max(MIN_PERIOD))
    };
    let entries = group
        .metrics
        .iter()
        .filter_map(|metric| {
            let selector = match &metric.selector {
                MetricSelector::Name(name) => Selector::from_name(name, metric.title.clone()),
                MetricSelector::NameMatch(pattern) => {
                    Selector::name_match(pattern, metric.title.as_deref())
                }
            };
            selector
                .map_err(|source| {
                    errors.push(EntryError {
                        at: metric.declared_at.clone(),
                        source,
                    })
                })
                .ok()
                .map(|selector| EntrySpec {
                    selector,
                    value_threshold: metric.value_threshold,
                })
        })
        .collect();
    GroupSpec {
        collect,
        time_threshold: Duration::from_secs(group.time_threshold.into()).max(MIN_PERIOD),
        entries,
    }
}

/// Which modules and groups are tenants', with the limits the engine enforces.
pub fn policy(config: &Config) -> Policy {
    let tenants = config
        .tenants
        .iter()
        .map(|tenant| TenantPolicy {
            name: tenant.name.as_str().into(),
            name_prefix: tenant.ceilings.name_prefix.clone(),
            max_metrics: usize::try_from(tenant.ceilings.max_metrics.value).unwrap_or(usize::MAX),
            cpu_per_minute: Duration::from_millis(tenant.ceilings.cpu_ms_per_minute.value),
        })
        .collect();
    let index_of = |name: &Option<String>| {
        let name = name.as_deref()?;
        config.tenants.iter().position(|t| t.name == name)
    };
    Policy {
        tenants,
        modules: config
            .modules
            .iter()
            .filter_map(|m| Some((m.name.clone(), index_of(&m.tenant)?)))
            .collect(),
        groups: config
            .collection_groups
            .iter()
            .map(|g| index_of(&g.tenant))
            .collect(),
    }
}

/// The runtime sandbox of a module: the runtime's defaults, overridden by its
/// `sandbox { }` settings.
pub fn sandbox(config: &SandboxConfig) -> Sandbox {
    let defaults = Limits::default();
    let ms = |value: Option<u64>, default: Duration| value.map_or(default, Duration::from_millis);
    let limits = Limits {
        fuel_init: config.fuel_init.unwrap_or(defaults.fuel_init),
        fuel_handler: config.fuel_handler.unwrap_or(defaults.fuel_handler),
        fuel_cleanup: config.fuel_cleanup.unwrap_or(defaults.fuel_cleanup),
        deadline_init: ms(config.deadline_init_ms, defaults.deadline_init),
        deadline_handler: ms(config.deadline_handler_ms, defaults.deadline_handler),
        deadline_cleanup: ms(config.deadline_cleanup_ms, defaults.deadline_cleanup),
        memory_bytes: config
            .memory_mb
            .map_or(defaults.memory_bytes, |mb| (mb as usize) << 20),
        deadline_compile: ms(config.deadline_compile_ms, defaults.deadline_compile),
        compile_memory_bytes: config
            .compile_memory_mb
            .map_or(defaults.compile_memory_bytes, |mb| mb << 20),
        ..defaults
    };
    let env = config
        .allow_env
        .iter()
        .filter_map(|grant| match grant {
            EnvGrant::Inherit(name) => std::env::var(name).ok().map(|value| (name.clone(), value)),
            EnvGrant::Set { name, value } => Some((name.clone(), value.clone())),
        })
        .collect();
    let grants = Grants {
        read_only_dirs: config.allow_read.clone(),
        env,
        inherit_stdio: false,
        filesystem_usage: config.allow_filesystem_usage,
    };
    Sandbox { limits, grants }
}

pub fn call_bounds(sandbox: &Sandbox) -> CallBounds {
    CallBounds {
        init: sandbox.limits.deadline_init,
        handler: sandbox.limits.deadline_handler,
        cleanup: sandbox.limits.deadline_cleanup,
    }
}

/// The wasm and python modules of the config (enabled, with their code found),
/// ready to run.
pub(crate) fn module_specs(config: &Config, runtime: &Runtime) -> Vec<ModuleSpec> {
    config
        .modules
        .iter()
        .filter_map(|module| Some((module, module_code(module)?)))
        .map(|(module, code)| {
            let (fingerprint, driver) = driver_of(module, code, runtime);
            spec_of(module, fingerprint, driver)
        })
        .collect()
}

/// What an enabled wasm or python module runs.
pub fn module_code(module: &ModuleConfig) -> Option<Code> {
    match &module.source {
        _ if !module.enabled => None,
        ModuleSource::Wasm { path } => Some(Code::Wasm(path.clone())),
        ModuleSource::Python {
            source,
            interpreter,
        } => Some(Code::Python {
            source: source.clone(),
            interpreter: interpreter.clone(),
        }),
        ModuleSource::Native { .. } | ModuleSource::DisabledMissing { .. } => None,
    }
}

/// A module's fingerprint and its driver, not loaded yet.
fn driver_of(module: &ModuleConfig, code: Code, runtime: &Runtime) -> (String, WasmDriver) {
    let sandbox = sandbox(&module.sandbox);
    let fingerprint = fingerprint(module, &code, &sandbox);
    let driver = WasmDriver::new(
        runtime.clone(),
        &module.name,
        code,
        sandbox,
        module.params.clone(),
    );
    (fingerprint, driver)
}

fn spec_of(module: &ModuleConfig, fingerprint: String, driver: WasmDriver) -> ModuleSpec {
    ModuleSpec {
        name: module.name.clone(),
        fingerprint,
        bounds: call_bounds(driver.sandbox()),
        driver: Box::new(driver),
        inline: false,
    }
}

/// What a reload runs: the modules of `config`, where each that is new or changed
/// since `running` (module name → fingerprint) is loaded now (read, compiled and
/// type-checked on the caller's thread) rather than after its running instance is
/// stopped. Also returns the modules whose new file failed to load, with why: those
/// stay on their running instance ([`EngineHandle::reload_keeping`]).
///
/// [`EngineHandle::reload_keeping`]: super::engine::EngineHandle::reload_keeping
pub(crate) fn reload_specs(
    config: &Config,
    runtime: &Runtime,
    running: &HashMap<String, String>,
) -> (Vec<ModuleSpec>, Vec<(String, String)>) {
    let mut failed = Vec::new();
    let specs = config
        .modules
        .iter()
        .filter_map(|module| Some((module, module_code(module)?)))
        .map(|(module, code)| {
            let (fingerprint, mut driver) = driver_of(module, code, runtime);
            if running.get(&module.name) != Some(&fingerprint)
                && let Err(error) = driver.preload()
            {
                failed.push((module.name.clone(), error));
            }
            spec_of(module, fingerprint, driver)
        })
        .collect();
    (specs, failed)
}

/// The SHA-256 of the module's files (the `.wasm`, and a python module's `.py`), or
/// why one cannot be read, and every setting the module runs with: a reload
/// restarts the module when this changes.
pub fn fingerprint(module: &ModuleConfig, code: &Code, sandbox: &Sandbox) -> String {
    let files: Vec<&Path> = match code {
        Code::Wasm(path) => vec![path],
        Code::Python {
            source,
            interpreter,
        } => vec![interpreter, source],
    };
    let mut text = String::new();
    for path in files {
        match crate::runtime::file_digest(path) {
            Ok(digest) => text.push_str(&hex::encode(digest)),
            Err(err) => {
                let _ = write!(text, "unreadable: {err}");
            }
        }
        let _ = write!(text, "|{}|", path.display());
    }
    let _ = write!(text, "{:?}|{:?}", module.params, sandbox);
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sandbox_overrides_only_what_is_set() {
        let config = SandboxConfig {
            deadline_handler_ms: Some(250),
            memory_mb: Some(16),
            allow_env: vec![EnvGrant::Set {
                name: "MODE".into(),
                value: "fast".into(),
            }],
            ..SandboxConfig::default()
        };
        let sandbox = sandbox(&config);
        assert_eq!(sandbox.limits.deadline_handler, Duration::from_millis(250));
        assert_eq!(sandbox.limits.memory_bytes, 16 << 20);
        assert_eq!(sandbox.limits.fuel_handler, Limits::default().fuel_handler);
        assert_eq!(
            sandbox.grants.env,
            [("MODE".to_string(), "fast".to_string())]
        );
        assert_eq!(call_bounds(&sandbox).handler, Duration::from_millis(250));
        assert_eq!(
            super::sandbox(&SandboxConfig::default()),
            Sandbox::default()
        );
    }
}
