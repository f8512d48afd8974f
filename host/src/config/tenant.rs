//! Tenants: the operator's policy over modules it does not trust.
//!
//! The operator's configuration (the top-level file and what it includes itself) may
//! declare tenants. Each names the files that hold its `.pyconf`s and the ceilings of
//! what its modules may ask:
//!
//! ```text
//! tenant {
//!   name = "acme"
//!   files = ("/etc/ganglia/tenants/acme/*.pyconf")
//!   name_prefix = "acme_"
//!   memory_mb = 32
//!   fuel_handler = 50000000
//!   allow_read = ("/srv/acme")
//!   allow_env = ("ACME_MODE")
//!   max_modules = 4
//!   max_metrics = 200
//!   cpu_ms_per_minute = 3000
//! }
//! ```
//!
//! A tenant's file may hold only `modules { module { } }` and `collection_group { }`;
//! every `sandbox { }` setting is checked against the tenant's ceiling, and a ceiling
//! the operator did not name is the runtime's safe default (grants: none). Whatever a
//! tenant's file gets wrong refuses that file only (its modules and groups), with
//! `file:line:col`; the operator's configuration and the other tenants load.
//!
//! A file matched by a tenant's `files` is that tenant's even when an operator
//! `include` matches it too: it is then not read as the operator's. Operator files
//! must be owned by root or the daemon's user and writable by nobody else (as sshd's
//! `StrictModes`), so that a writable file cannot make its writer the operator; a
//! tenant file writable by everyone is refused.
//!
//! The checks that need the modules' metrics (names, `max_metrics`, `name_prefix`,
//! what a tenant's groups select) and the CPU budget are the engine's; this module
//! carries them there in [`Ceilings`].

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};

use serde::Serialize;

use super::LoadOptions;
use super::build::{collection_group, module_dirs, relative_to_declaring_file};
use super::error::{ConfigError, ErrorKind, Location};
use super::fields::{Diagnostics, Fields, Sub};
use super::loader::{FileSource, Ownership};
use super::model::{CollectionGroup, Config, MetricSelector, ModuleConfig, ModuleSource};
use super::modules;
use super::raw::{Item, Scalar, parse_partial};
use super::schema;
use crate::runtime::limits;

/// Modules a tenant may declare unless the operator says otherwise.
pub(crate) const DEFAULT_MAX_MODULES: u32 = 16;
/// Metrics a tenant's modules may publish together unless the operator says otherwise.
pub(crate) const DEFAULT_MAX_METRICS: u32 = 1024;
/// CPU milliseconds per minute a tenant's modules may spend together unless the
/// operator says otherwise: a tenth of one core.
pub(crate) const DEFAULT_CPU_MS_PER_MINUTE: u64 = 6000;
/// Longest tenant name and tenant module name: both end up inside the host's
/// `wasmond_*` accounting metric names, which may not pass 128 bytes.
pub(crate) const MAX_TENANT_NAME_BYTES: usize = 32;
pub(crate) const MAX_TENANT_MODULE_NAME_BYTES: usize = 64;

/// One `tenant { }` of the operator's configuration.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Tenant {
    pub name: String,
    /// Where the tenant's files are: paths or glob patterns, relative ones resolved
    /// from the declaring file's directory.
    pub files: Vec<PathBuf>,
    pub ceilings: Ceilings,
    pub declared_at: Location,
}

impl Tenant {
    /// The directories that hold the tenant's files, now or after a reload: each
    /// pattern's leading part without a glob character (a plain path's directory).
    pub fn directories(&self) -> Vec<PathBuf> {
        self.files
            .iter()
            .filter_map(|pattern| {
                let mut dir = PathBuf::new();
                for part in pattern.components() {
                    if part.as_os_str().to_string_lossy().contains(['*', '?', '[']) {
                        return Some(dir);
                    }
                    dir.push(part);
                }
                pattern.parent().map(Path::to_path_buf)
            })
            .collect()
    }
}

/// One limit of a tenant, and where the operator set it (`None`: the default).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Ceiling<T> {
    pub value: T,
    pub set_at: Option<Location>,
}

impl<T: std::fmt::Display> Ceiling<T> {
    /// "the ceiling of 64 (set at f:3:5)" or "the default ceiling of 128".
    fn describe(&self) -> String {
        match &self.set_at {
            Some(at) => format!("the tenant's ceiling of {} (set at {at})", self.value),
            None => format!(
                "the default ceiling of {} (the operator set none)",
                self.value
            ),
        }
    }
}

/// What a tenant's modules may ask for, at most.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Ceilings {
    pub fuel_init: Ceiling<u64>,
    pub fuel_handler: Ceiling<u64>,
    pub fuel_cleanup: Ceiling<u64>,
    pub deadline_init_ms: Ceiling<u64>,
    pub deadline_handler_ms: Ceiling<u64>,
    pub deadline_cleanup_ms: Ceiling<u64>,
    pub memory_mb: Ceiling<u64>,
    pub deadline_compile_ms: Ceiling<u64>,
    pub compile_memory_mb: Ceiling<u64>,
    /// Directories a module may be granted, read-only: these or below them.
    pub allow_read: Vec<PathBuf>,
    /// Environment variable names a module may be given.
    pub allow_env: Vec<String>,
    pub allow_filesystem_usage: bool,
    pub max_modules: Ceiling<u64>,
    /// Metrics of all the tenant's modules together (the engine enforces it).
    pub max_metrics: Ceiling<u64>,
    /// CPU time of all the tenant's modules per minute (the engine enforces it).
    pub cpu_ms_per_minute: Ceiling<u64>,
    /// Every metric a tenant's module publishes must start with it (the engine
    /// enforces it); `None`: any name not owned by the operator.
    pub name_prefix: Option<String>,
}

/// The numeric keys of `tenant { }` and their defaults.
fn numeric_defaults() -> [(&'static str, u64); 12] {
    let ms = |d: std::time::Duration| d.as_millis() as u64;
    [
        ("fuel_init", limits::DEFAULT_FUEL_INIT),
        ("fuel_handler", limits::DEFAULT_FUEL_HANDLER),
        ("fuel_cleanup", limits::DEFAULT_FUEL_CLEANUP),
        ("deadline_init_ms", ms(limits::DEFAULT_DEADLINE_INIT)),
        ("deadline_handler_ms", ms(limits::DEFAULT_DEADLINE_HANDLER)),
        ("deadline_cleanup_ms", ms(limits::DEFAULT_DEADLINE_CLEANUP)),
        ("memory_mb", (limits::DEFAULT_MEMORY_BYTES >> 20) as u64),
        ("deadline_compile_ms", ms(limits::DEFAULT_DEADLINE_COMPILE)),
        (
            "compile_memory_mb",
            limits::DEFAULT_COMPILE_MEMORY_BYTES >> 20,
        ),
        ("max_modules", DEFAULT_MAX_MODULES.into()),
        ("max_metrics", DEFAULT_MAX_METRICS.into()),
        ("cpu_ms_per_minute", DEFAULT_CPU_MS_PER_MINUTE),
    ]
}

impl Default for Ceilings {
    /// What a tenant whose `tenant { }` names no ceiling gets: the runtime's safe
    /// defaults, no grants.
    fn default() -> Ceilings {
        let d: HashMap<&str, u64> = numeric_defaults().into_iter().collect();
        let c = |key: &str| Ceiling {
            value: d[key],
            set_at: None,
        };
        Ceilings {
            fuel_init: c("fuel_init"),
            fuel_handler: c("fuel_handler"),
            fuel_cleanup: c("fuel_cleanup"),
            deadline_init_ms: c("deadline_init_ms"),
            deadline_handler_ms: c("deadline_handler_ms"),
            deadline_cleanup_ms: c("deadline_cleanup_ms"),
            memory_mb: c("memory_mb"),
            deadline_compile_ms: c("deadline_compile_ms"),
            compile_memory_mb: c("compile_memory_mb"),
            allow_read: Vec::new(),
            allow_env: Vec::new(),
            allow_filesystem_usage: false,
            max_modules: c("max_modules"),
            max_metrics: c("max_metrics"),
            cpu_ms_per_minute: c("cpu_ms_per_minute"),
            name_prefix: None,
        }
    }
}

/// Reads every top-level `tenant { }` of the operator's (expanded) items.
pub fn declared(items: &[Item], diag: &mut Diagnostics) -> Vec<Tenant> {
    let mut tenants: Vec<Tenant> = Vec::new();
    for item in items {
        let Item::Section { name, body, .. } = item else {
            continue;
        };
        if !name.text.eq_ignore_ascii_case("tenant") {
            continue;
        }
        let f = Fields::read("tenant", schema::TENANT, [body.as_slice()], diag);
        let Some(tenant_name) = f.string("name") else {
            diag.invalid(&name.at, "`tenant` needs a `name`");
            continue;
        };
        if let Err(reason) = check_name(&tenant_name, MAX_TENANT_NAME_BYTES) {
            let at = f.value_at("name").unwrap_or(&name.at);
            diag.invalid(at, format!("tenant name `{tenant_name}`: {reason}"));
            continue;
        }
        if let Some(first) = tenants.iter().find(|t| t.name == tenant_name) {
            let message = format!(
                "tenant `{tenant_name}` is declared twice (first at {})",
                first.declared_at
            );
            diag.invalid(&name.at, message);
            continue;
        }
        let files: Vec<PathBuf> = f
            .list("files")
            .into_iter()
            .map(|s| relative_to_declaring_file(Some(&s.at), &s.text))
            .collect();
        if files.is_empty() {
            diag.warn(
                &name.at,
                format!("tenant `{tenant_name}` names no `files`; it has no modules"),
            );
        }
        tenants.push(Tenant {
            name: tenant_name,
            files,
            ceilings: ceilings(&f, diag),
            declared_at: name.at.clone(),
        });
    }
    tenants
}

fn ceilings(f: &Fields, diag: &mut Diagnostics) -> Ceilings {
    let mut c = Ceilings::default();
    for (key, _) in numeric_defaults() {
        let Some(value) = (match key {
            "memory_mb" => f.int_in(key, 0, 4096, "an integer from 0 to 4096", diag),
            "compile_memory_mb" => {
                let (min, max) = super::sandbox::COMPILE_MEMORY_MB;
                let expected = format!("a size in MiB from {min} to {max}");
                f.int_in(key, min, max, &expected, diag)
            }
            _ => f.int_in(key, 0, i64::MAX, "an integer of 0 or more", diag),
        }) else {
            continue;
        };
        let ceiling = Ceiling {
            value: value as u64,
            set_at: f.value_at(key).cloned(),
        };
        *match key {
            "fuel_init" => &mut c.fuel_init,
            "fuel_handler" => &mut c.fuel_handler,
            "fuel_cleanup" => &mut c.fuel_cleanup,
            "deadline_init_ms" => &mut c.deadline_init_ms,
            "deadline_handler_ms" => &mut c.deadline_handler_ms,
            "deadline_cleanup_ms" => &mut c.deadline_cleanup_ms,
            "memory_mb" => &mut c.memory_mb,
            "deadline_compile_ms" => &mut c.deadline_compile_ms,
            "compile_memory_mb" => &mut c.compile_memory_mb,
            "max_modules" => &mut c.max_modules,
            "max_metrics" => &mut c.max_metrics,
            _ => &mut c.cpu_ms_per_minute,
        } = ceiling;
    }
    c.allow_read = f
        .list("allow_read")
        .into_iter()
        .filter_map(|s| {
            let path = PathBuf::from(&s.text);
            if path.is_absolute() && !s.text.split('/').any(|part| part == "..") {
                Some(path)
            } else {
                let message = format!(
                    "`allow_read`: expected an absolute directory without `..`, found `{}`",
                    s.text
                );
                diag.invalid(&s.at, message);
                None
            }
        })
        .collect();
    c.allow_env = f.list("allow_env").iter().map(|s| s.text.clone()).collect();
    c.allow_filesystem_usage = f.bool("allow_filesystem_usage", false, diag);
    c.name_prefix = f.string("name_prefix");
    if let Some(prefix) = &c.name_prefix
        && let Err(reason) = check_name(prefix, MAX_TENANT_MODULE_NAME_BYTES)
    {
        let at = f.value_at("name_prefix").expect("name_prefix is set");
        diag.invalid(at, format!("`name_prefix` `{prefix}`: {reason}"));
        c.name_prefix = None;
    }
    c
}

/// Tenant and tenant module names end up in metric names: letters, digits, `_`, `-`.
fn check_name(name: &str, max: usize) -> Result<(), String> {
    if name.is_empty() {
        return Err("expected 1 or more characters".into());
    }
    if name.len() > max {
        return Err(format!(
            "{} bytes long; at most {max} are allowed",
            name.len()
        ));
    }
    match name
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '_' | '-')))
    {
        Some(c) => Err(format!(
            "{c:?} is not allowed; only ASCII letters, digits, `_` and `-` are"
        )),
        None => Ok(()),
    }
}

/// Every tenant's files, in declaration and then name order: (file, tenant index).
/// A file matched by two tenants is an error of the operator's.
pub(crate) fn files_of(
    tenants: &[Tenant],
    fs: &dyn FileSource,
    diag: &mut Diagnostics,
) -> Vec<Owned> {
    let mut owner_of: HashMap<PathBuf, usize> = HashMap::new();
    let mut owned = Vec::new();
    for (index, tenant) in tenants.iter().enumerate() {
        for pattern in &tenant.files {
            let text = pattern.to_string_lossy();
            let matches = if text.contains(['*', '?', '[']) {
                match fs.glob(&text) {
                    Ok(matches) => matches,
                    Err(e) => {
                        let message = format!(
                            "tenant `{}`: bad `files` pattern `{text}`: {e}",
                            tenant.name
                        );
                        diag.invalid(&tenant.declared_at, message);
                        continue;
                    }
                }
            } else if fs.is_file(pattern) {
                vec![pattern.clone()]
            } else {
                Vec::new()
            };
            for file in matches {
                let identity = fs.identity(&file);
                match owner_of.get(&identity) {
                    Some(&first) if first == index => {}
                    Some(&first) => {
                        let message = format!(
                            "`{}` belongs to tenant `{}` and to tenant `{}`; a file has one owner",
                            file.display(),
                            tenants[first].name,
                            tenant.name
                        );
                        diag.invalid(&tenant.declared_at, message);
                    }
                    None => {
                        owner_of.insert(identity.clone(), index);
                        owned.push(Owned {
                            path: file,
                            identity,
                            tenant: index,
                        });
                    }
                }
            }
        }
    }
    owned
}

/// One file of one tenant.
#[derive(Debug, Clone)]
pub struct Owned {
    pub path: PathBuf,
    /// `FileSource::identity` of the path.
    pub identity: PathBuf,
    pub tenant: usize,
}

/// Why a file may not carry the operator's authority, if it may not: sshd's
/// `StrictModes` for configuration (owned by root or the daemon's user, writable by
/// nobody else, in a directory others cannot write either).
pub(crate) fn untrusted_operator_file(ownership: &Ownership) -> Option<String> {
    if ownership.uid != 0 && ownership.uid != ownership.daemon_uid {
        return Some(format!(
            "it is owned by uid {}, neither root nor the daemon's user (uid {})",
            ownership.uid, ownership.daemon_uid
        ));
    }
    if ownership.mode & 0o022 != 0 {
        return Some(format!(
            "it is writable by its group or by others (mode {:04o})",
            ownership.mode & 0o7777
        ));
    }
    let dir_open = ownership.dir_mode & 0o002 != 0 && ownership.dir_mode & 0o1000 == 0;
    if dir_open {
        return Some(format!(
            "its directory is writable by everyone (mode {:04o})",
            ownership.dir_mode & 0o7777
        ));
    }
    None
}

/// What the tenants' files add to the configuration, and what they were refused.
pub struct TenantLoad {
    /// Every tenant file read.
    pub files: Vec<PathBuf>,
    /// Errors of tenant files; each refuses its file only.
    pub errors: Vec<ConfigError>,
}

/// Reads every tenant's files into `config` (modules and groups tagged with their
/// tenant). A file with any error adds nothing; its errors are returned.
pub fn load(
    config: &mut Config,
    owned: &[Owned],
    options: &LoadOptions,
    fs: &dyn FileSource,
    warnings: &mut Diagnostics,
) -> TenantLoad {
    let module_dirs = module_dirs(&config.globals, options);
    let mut out = TenantLoad {
        files: Vec::new(),
        errors: Vec::new(),
    };
    let mut taken: HashMap<String, Location> = config
        .modules
        .iter()
        .map(|m| (m.name.clone(), m.declared_at.clone()))
        .collect();
    let mut modules_of: HashMap<usize, u64> = HashMap::new();
    for file in owned {
        let tenant = &config.tenants[file.tenant];
        let origin = super::loader::origin_of(&file.path);
        let mut diag = Diagnostics::default();
        let reader = TenantFile {
            tenant,
            module_dirs: &module_dirs,
            fs,
        };
        let Some((modules, groups)) = reader.read(&file.path, &origin, &mut diag) else {
            out.errors.append(&mut diag.errors);
            continue;
        };
        out.files.push(file.path.clone());
        // Names across files and the module count: checked here, where earlier files
        // are known.
        let count = modules_of.entry(file.tenant).or_default();
        let mut added = 0;
        for module in &modules {
            if let Some(first) = taken.get(&module.name) {
                let message = format!("declared twice (first at {first})");
                diag.error(
                    &module.declared_at,
                    ErrorKind::Module {
                        module: module.name.clone(),
                        message,
                    },
                );
            }
            if module.enabled {
                added += 1;
                let max = &tenant.ceilings.max_modules;
                if *count + added > max.value {
                    let message = format!(
                        "tenant `{}` may declare at most {} enabled modules: {}",
                        tenant.name,
                        max.value,
                        max.describe()
                    );
                    diag.error(
                        &module.declared_at,
                        ErrorKind::Module {
                            module: module.name.clone(),
                            message,
                        },
                    );
                }
            }
        }
        if !diag.errors.is_empty() {
            diag.errors.sort_by_key(|e| (e.at.line, e.at.col));
            out.errors.append(&mut diag.errors);
            continue;
        }
        *count += added;
        warnings.warnings.append(&mut diag.warnings);
        for module in &modules {
            taken.insert(module.name.clone(), module.declared_at.clone());
        }
        config.modules.extend(modules);
        config.collection_groups.extend(groups);
    }
    out
}

struct TenantFile<'a> {
    tenant: &'a super::tenant::Tenant,
    module_dirs: &'a [PathBuf],
    fs: &'a dyn FileSource,
}

impl TenantFile<'_> {
    /// One tenant file's modules and groups (those without errors), or `None` when it
    /// cannot be read or parsed; errors go to `diag`.
    fn read(
        &self,
        path: &Path,
        origin: &str,
        diag: &mut Diagnostics,
    ) -> Option<(Vec<ModuleConfig>, Vec<CollectionGroup>)> {
        let whole = Location::whole_file(origin);
        if let Some(ownership) = self.fs.ownership(path)
            && ownership.mode & 0o002 != 0
        {
            let message = format!(
                "tenant `{}`: refusing `{origin}`: it is writable by everyone (mode {:04o})",
                self.tenant.name,
                ownership.mode & 0o7777
            );
            diag.invalid(&whole, message);
            return None;
        }
        let src = match self.fs.read(path, super::loader::MAX_FILE_BYTES) {
            Ok(src) => src,
            Err(e) => {
                let kind = ErrorKind::Read {
                    path: origin.into(),
                    reason: e.to_string(),
                };
                diag.error(&whole, kind);
                return None;
            }
        };
        let (tree, mut errors) = parse_partial(&src, origin);
        if !errors.is_empty() {
            diag.errors.append(&mut errors);
            return None;
        }
        let allowed: Vec<Item> = tree
            .items
            .into_iter()
            .filter(|item| self.allowed_at_top(item, diag))
            .collect();
        let top = Fields::read("a tenant file", schema::TENANT_FILE, [&allowed[..]], diag);
        let mut modules = Vec::new();
        let mut groups = Vec::new();
        for sub in &top.subs {
            match sub.name {
                "modules" => {
                    let list = Fields::read("modules", schema::MODULES, [sub.body], diag);
                    for module in list.subs.iter().filter(|s| s.name == "module") {
                        if let Some(module) = self.module(module, diag) {
                            modules.push(module);
                        }
                    }
                }
                _ => {
                    let mut group = collection_group(sub, diag);
                    self.check_group(&group, diag);
                    group.tenant = Some(self.tenant.name.clone());
                    groups.push(group);
                }
            }
        }
        Some((modules, groups))
    }

    /// Only `modules` and `collection_group` sections may be at a tenant file's top.
    fn allowed_at_top(&self, item: &Item, diag: &mut Diagnostics) -> bool {
        let (word, at) = match item {
            Item::Section { name, .. } => {
                let lower = name.text.to_ascii_lowercase();
                if lower == "modules" || lower == "collection_group" {
                    return true;
                }
                (format!("a `{}` section", name.text), &name.at)
            }
            Item::Option { key, .. } => (format!("the option `{}`", key.text), &key.at),
            Item::Call { name, .. } => (format!("`{} (...)`", name.text), &name.at),
        };
        let message = format!(
            "tenant `{}` may not have {word} here: a tenant's file holds only its own `modules` and `collection_group`s",
            self.tenant.name
        );
        diag.invalid(at, message);
        false
    }

    fn module(&self, sub: &Sub, diag: &mut Diagnostics) -> Option<ModuleConfig> {
        let errors_before = diag.errors.len();
        // No python module directories of the tenant's own: a tenant's file may not
        // declare gmond's `python_module`, so its python code is found beside the file
        // or in the system's python modules directories, as `check_code` requires.
        let mut module = modules::read(sub, self.module_dirs, &[], self.fs, diag)?;
        let problem = |diag: &mut Diagnostics, at: &Location, message: String| {
            diag.error(
                at,
                ErrorKind::Module {
                    module: module.name.clone(),
                    message,
                },
            )
        };
        if let Err(reason) = check_name(&module.name, MAX_TENANT_MODULE_NAME_BYTES) {
            problem(diag, sub.at, format!("a tenant module's name: {reason}"));
        }
        // What `modules::read` did not keep: where each key was written.
        let mut scratch = Diagnostics::default();
        let f = Fields::read("module", schema::MODULE, [sub.body], &mut scratch);
        let sandbox_bodies = f
            .subs
            .iter()
            .filter(|s| s.name == "sandbox")
            .map(|s| s.body);
        let sandbox = Fields::read("sandbox", schema::SANDBOX, sandbox_bodies, &mut scratch);
        self.check_code(&module, &f, diag);
        let c = &self.tenant.ceilings;
        let s = &module.sandbox;
        let numbers = [
            ("fuel_init", s.fuel_init, &c.fuel_init),
            ("fuel_handler", s.fuel_handler, &c.fuel_handler),
            ("fuel_cleanup", s.fuel_cleanup, &c.fuel_cleanup),
            ("deadline_init_ms", s.deadline_init_ms, &c.deadline_init_ms),
            (
                "deadline_handler_ms",
                s.deadline_handler_ms,
                &c.deadline_handler_ms,
            ),
            (
                "deadline_cleanup_ms",
                s.deadline_cleanup_ms,
                &c.deadline_cleanup_ms,
            ),
            ("memory_mb", s.memory_mb.map(u64::from), &c.memory_mb),
            (
                "deadline_compile_ms",
                s.deadline_compile_ms,
                &c.deadline_compile_ms,
            ),
            (
                "compile_memory_mb",
                s.compile_memory_mb,
                &c.compile_memory_mb,
            ),
        ];
        for (key, asked, ceiling) in numbers {
            if let Some(asked) = asked
                && asked > ceiling.value
            {
                let at = sandbox.value_at(key).unwrap_or(sub.at);
                let message = format!(
                    "`{key} = {asked}` is over {} for tenant `{}`",
                    ceiling.describe(),
                    self.tenant.name
                );
                problem(diag, at, message);
            }
        }
        // A module that asks nothing gets the runtime's default, or the ceiling where
        // the operator set it lower.
        let defaults: HashMap<&str, u64> = numeric_defaults().into_iter().collect();
        let fit = |asked: &mut Option<u64>, key: &str, ceiling: &Ceiling<u64>| {
            asked.get_or_insert(defaults[key].min(ceiling.value));
        };
        let s = &mut module.sandbox;
        fit(&mut s.fuel_init, "fuel_init", &c.fuel_init);
        fit(&mut s.fuel_handler, "fuel_handler", &c.fuel_handler);
        fit(&mut s.fuel_cleanup, "fuel_cleanup", &c.fuel_cleanup);
        fit(
            &mut s.deadline_init_ms,
            "deadline_init_ms",
            &c.deadline_init_ms,
        );
        fit(
            &mut s.deadline_handler_ms,
            "deadline_handler_ms",
            &c.deadline_handler_ms,
        );
        fit(
            &mut s.deadline_cleanup_ms,
            "deadline_cleanup_ms",
            &c.deadline_cleanup_ms,
        );
        let memory = defaults["memory_mb"].min(c.memory_mb.value);
        s.memory_mb.get_or_insert(memory as u32);
        fit(
            &mut s.deadline_compile_ms,
            "deadline_compile_ms",
            &c.deadline_compile_ms,
        );
        fit(
            &mut s.compile_memory_mb,
            "compile_memory_mb",
            &c.compile_memory_mb,
        );
        for dir in sandbox.list("allow_read") {
            if let Some(reason) = self.read_refused(dir) {
                problem(diag, &dir.at, reason);
            }
        }
        for grant in sandbox.list("allow_env") {
            let name = grant.text.split_once('=').map_or(&*grant.text, |(n, _)| n);
            if !c.allow_env.iter().any(|allowed| allowed == name) {
                let listed = listing(c.allow_env.iter().map(String::as_str));
                let message = format!(
                    "`allow_env` of `{name}`: tenant `{}` may be given only {listed}",
                    self.tenant.name
                );
                problem(diag, &grant.at, message);
            }
        }
        if module.sandbox.allow_filesystem_usage && !c.allow_filesystem_usage {
            let at = sandbox.value_at("allow_filesystem_usage").unwrap_or(sub.at);
            let message = format!(
                "`allow_filesystem_usage = yes` is not allowed for tenant `{}` (the operator grants it with `allow_filesystem_usage = yes` in the tenant)",
                self.tenant.name
            );
            problem(diag, at, message);
        }
        module.tenant = Some(self.tenant.name.clone());
        (diag.errors.len() == errors_before).then_some(module)
    }

    /// A tenant module's code comes from beside its file (or below) or from a module
    /// directory: a tenant cannot make the daemon read any other file as its module.
    fn check_code(&self, module: &ModuleConfig, f: &Fields, diag: &mut Diagnostics) {
        let (path, also) = match &module.source {
            ModuleSource::Wasm { path } => (path, &[][..]),
            // The operator's packages install python modules there.
            ModuleSource::Python { source, .. } => (source, modules::GMOND_PYTHON_MODULE_DIRS),
            _ => return,
        };
        let own_dir = Path::new(&*module.declared_at.file)
            .parent()
            .unwrap_or(Path::new(""));
        let code = self.fs.identity(path);
        let inside = std::iter::once(own_dir)
            .chain(self.module_dirs.iter().map(PathBuf::as_path))
            .chain(also.iter().map(Path::new))
            .any(|dir| code.starts_with(self.fs.identity(dir)));
        if !inside {
            let at = f.value_at("path").unwrap_or(&module.declared_at);
            let message = format!(
                "`{}` is outside the tenant's directory `{}` and the module directories",
                path.display(),
                own_dir.display()
            );
            diag.error(
                at,
                ErrorKind::Module {
                    module: module.name.clone(),
                    message,
                },
            );
        }
    }

    /// Why a requested `allow_read` directory is refused, if it is.
    fn read_refused(&self, dir: &Scalar) -> Option<String> {
        let asked = Path::new(&dir.text);
        let allowed = &self.tenant.ceilings.allow_read;
        // Both as written and resolved: a symbolic link below an allowed directory
        // must not lead out of it.
        let real = self.fs.identity(asked);
        let fits = allowed.iter().any(|ceiling| {
            asked.starts_with(ceiling) && real.starts_with(self.fs.identity(ceiling))
        });
        if fits {
            return None;
        }
        let listed = listing(allowed.iter().map(|p| p.to_str().unwrap_or("?")));
        Some(format!(
            "`allow_read` of `{}`: tenant `{}` may be granted only directories at or below {listed}",
            dir.text, self.tenant.name
        ))
    }

    /// A tenant's group may name only metrics it may publish.
    fn check_group(&self, group: &CollectionGroup, diag: &mut Diagnostics) {
        let Some(prefix) = &self.tenant.ceilings.name_prefix else {
            return;
        };
        for metric in &group.metrics {
            // An exclusion (`!name`) only narrows what the group takes, which the
            // engine already keeps to the tenant's own metrics.
            if let MetricSelector::Name(name) = &metric.selector
                && !name.starts_with('!')
                && !name.starts_with(prefix.as_str())
            {
                let message = format!(
                    "tenant `{}` may collect only its own metrics, named `{prefix}*`; found `{name}`",
                    self.tenant.name
                );
                diag.invalid(&metric.declared_at, message);
            }
        }
    }
}

/// "`a`, `b`" or "nothing (the operator allowed none)".
fn listing<'a>(items: impl Iterator<Item = &'a str>) -> String {
    let quoted: Vec<String> = items.map(|s| format!("`{s}`")).collect();
    if quoted.is_empty() {
        "none (the operator listed none in the tenant)".into()
    } else {
        quoted.join(", ")
    }
}

/// The identities of the files in `owned`.
pub(crate) fn identities(owned: &[Owned]) -> HashSet<PathBuf> {
    owned.iter().map(|o| o.identity.clone()).collect()
}

#[cfg(test)]
mod tests {
    use super::super::tests::MemFs;
    use super::super::{LoadOptions, Loaded, load_with};
    use super::*;

    const OPERATOR: &str = r#"
globals { module_dir = "/mods" }
modules { module { name = "core" language = "wasm" } }
tenant {
  name = "acme"
  files = ("/t/acme/*.pyconf")
  name_prefix = "acme_"
  memory_mb = 32
  allow_read = ("/srv/acme")
  allow_env = ("ACME_MODE")
  max_modules = 2
  deadline_compile_ms = 20000
}
tenant { name = "bob" files = ("/t/bob/*.pyconf") }
include ("/etc/conf.d/*.pyconf")
"#;

    fn load(extra: &[(&str, &str)]) -> Loaded {
        let mut files = vec![
            ("/etc/gmond.conf", OPERATOR),
            ("/mods/core.wasm", ""),
            ("/t/acme/a.wasm", ""),
            ("/t/acme/b.wasm", ""),
            ("/t/acme/c.wasm", ""),
            ("/t/bob/bob.wasm", ""),
            (
                "/t/bob/bob.pyconf",
                r#"modules { module { name = "bob" language = "wasm" } }"#,
            ),
        ];
        files.extend_from_slice(extra);
        load_with(
            Path::new("/etc/gmond.conf"),
            &LoadOptions::default(),
            &MemFs::with(&files),
        )
        .unwrap_or_else(|e| panic!("the operator's configuration loads: {e}"))
    }

    fn errors(loaded: &Loaded) -> Vec<String> {
        loaded.tenant_errors.iter().map(|e| e.to_string()).collect()
    }

    fn modules(loaded: &Loaded) -> Vec<(&str, Option<&str>)> {
        loaded
            .config
            .modules
            .iter()
            .map(|m| (m.name.as_str(), m.tenant.as_deref()))
            .collect()
    }

    #[test]
    fn a_tenants_directories_are_where_its_patterns_and_paths_lead() {
        let tenant = |files: &[&str]| Tenant {
            files: files.iter().map(PathBuf::from).collect(),
            ..load(&[]).config.tenants[0].clone()
        };
        assert_eq!(
            tenant(&["/t/acme/*.pyconf", "/t/x/[ab]/c.pyconf", "/t/y/one.pyconf"]).directories(),
            [
                PathBuf::from("/t/acme"),
                PathBuf::from("/t/x"),
                PathBuf::from("/t/y")
            ]
        );
    }

    #[test]
    fn a_request_over_a_ceiling_refuses_that_file_with_where_and_which_ceiling() {
        let loaded = load(&[(
            "/t/acme/a.pyconf",
            "modules {\n  module {\n    name = \"a\"\n    language = \"wasm\"\n    sandbox { memory_mb = 4096 fuel_handler = 9223372036854775807 allow_read = (\"/\") }\n  }\n}\n",
        )]);
        assert_eq!(
            errors(&loaded),
            [
                "/t/acme/a.pyconf:5:27: error: module `a`: `memory_mb = 4096` is over the tenant's ceiling of 32 (set at /etc/gmond.conf:8:15) for tenant `acme`",
                "/t/acme/a.pyconf:5:47: error: module `a`: `fuel_handler = 9223372036854775807` is over the default ceiling of 1000000000 (the operator set none) for tenant `acme`",
                "/t/acme/a.pyconf:5:81: error: module `a`: `allow_read` of `/`: tenant `acme` may be granted only directories at or below `/srv/acme`",
            ]
        );
        // The operator's module and the other tenant's run.
        assert_eq!(modules(&loaded), [("core", None), ("bob", Some("bob"))]);
    }

    #[test]
    fn compile_bounds_are_ceilings_too() {
        let loaded = load(&[
            (
                "/t/acme/a.pyconf",
                "modules { module { name = \"a\" language = \"wasm\"\n  sandbox { deadline_compile_ms = 60000 compile_memory_mb = 4096 } } }\n",
            ),
            (
                "/t/acme/b.pyconf",
                "modules { module { name = \"b\" language = \"wasm\" } }\n",
            ),
        ]);
        assert_eq!(
            errors(&loaded),
            [
                "/t/acme/a.pyconf:2:35: error: module `a`: `deadline_compile_ms = 60000` is over the tenant's ceiling of 20000 (set at /etc/gmond.conf:12:25) for tenant `acme`",
                "/t/acme/a.pyconf:2:61: error: module `a`: `compile_memory_mb = 4096` is over the default ceiling of 1024 (the operator set none) for tenant `acme`",
            ]
        );
        // A module that asks nothing compiles under the lower of default and ceiling.
        let b = loaded
            .config
            .modules
            .iter()
            .find(|m| m.name == "b")
            .unwrap();
        assert_eq!(b.sandbox.deadline_compile_ms, Some(20_000));
        assert_eq!(
            b.sandbox.compile_memory_mb,
            Some(limits::DEFAULT_COMPILE_MEMORY_BYTES >> 20)
        );
    }

    #[test]
    fn a_tenant_file_holds_only_its_modules_and_groups() {
        let loaded = load(&[(
            "/t/acme/a.pyconf",
            "globals { override_hostname = \"evil\" }\nudp_send_channel { host = 10.0.0.1 port = 9 }\ninclude (\"/etc/gmond.conf\")\nmodules { module { name = \"a\" language = \"wasm\" } }\n",
        )]);
        let errors = errors(&loaded);
        assert_eq!(errors.len(), 3, "{errors:#?}");
        assert!(
            errors[0].starts_with(
                "/t/acme/a.pyconf:1:1: error: tenant `acme` may not have a `globals` section here"
            ),
            "{}",
            errors[0]
        );
        assert!(errors[1].starts_with("/t/acme/a.pyconf:2:1: error: tenant `acme` may not have a `udp_send_channel` section"), "{}", errors[1]);
        assert!(
            errors[2].starts_with(
                "/t/acme/a.pyconf:3:1: error: tenant `acme` may not have `include (...)`"
            ),
            "{}",
            errors[2]
        );
        assert_eq!(loaded.config.globals.override_hostname, None);
        assert!(loaded.config.udp_send_channels.is_empty());
        assert_eq!(modules(&loaded), [("core", None), ("bob", Some("bob"))]);
    }

    #[test]
    fn a_syntax_error_refuses_one_file_and_the_rest_loads() {
        let loaded = load(&[
            ("/t/acme/a.pyconf", "modules { module { name = \"a\" \n"),
            (
                "/t/acme/b.pyconf",
                "modules { module { name = \"b\" language = \"wasm\" sandbox { memory_mb = 16 } } }\ncollection_group { collect_every = 10 metric { name = \"acme_b\" } }\n",
            ),
        ]);
        assert_eq!(errors(&loaded).len(), 1, "{:?}", errors(&loaded));
        assert!(errors(&loaded)[0].starts_with("/t/acme/a.pyconf:2:"));
        assert_eq!(
            modules(&loaded),
            [("core", None), ("b", Some("acme")), ("bob", Some("bob"))]
        );
        let b = &loaded.config.modules[1];
        assert_eq!(b.sandbox.memory_mb, Some(16));
        assert_eq!(b.sandbox.fuel_handler, Some(limits::DEFAULT_FUEL_HANDLER));
        let group = loaded.config.collection_groups.last().unwrap();
        assert_eq!(group.tenant.as_deref(), Some("acme"));
    }

    #[test]
    fn a_tenant_without_ceilings_gets_the_safe_defaults_and_no_grants() {
        let loaded = load(&[(
            "/t/bob/more.pyconf",
            "modules { module { name = \"bob2\" path = \"bob.wasm\" language = \"wasm\" sandbox { allow_env = (\"HOME\") allow_filesystem_usage = yes memory_mb = 129 } } }\n",
        )]);
        let errors = errors(&loaded);
        assert_eq!(errors.len(), 3, "{errors:#?}");
        assert!(
            errors[0].contains("`allow_env` of `HOME`: tenant `bob` may be given only none"),
            "{errors:#?}"
        );
        assert!(
            errors[1].contains("`allow_filesystem_usage = yes` is not allowed for tenant `bob`")
        );
        assert!(errors[2].contains("`memory_mb = 129` is over the default ceiling of 128"));
        // A module that asks nothing runs with the defaults and no grants.
        let bob = loaded
            .config
            .modules
            .iter()
            .find(|m| m.name == "bob")
            .unwrap();
        assert_eq!(bob.sandbox.memory_mb, Some(128));
        assert!(bob.sandbox.allow_read.is_empty() && bob.sandbox.allow_env.is_empty());
    }

    #[test]
    fn grants_within_the_ceilings_are_given() {
        let loaded = load(&[(
            "/t/acme/a.pyconf",
            "modules { module { name = \"a\" language = \"wasm\" sandbox { allow_read = (\"/srv/acme/data\") allow_env = (\"ACME_MODE=fast\") } } }\n",
        )]);
        assert!(errors(&loaded).is_empty(), "{:?}", errors(&loaded));
        let a = &loaded.config.modules[1];
        assert_eq!(a.sandbox.allow_read, [PathBuf::from("/srv/acme/data")]);
        assert_eq!(
            a.sandbox.memory_mb,
            Some(32),
            "the ceiling is below the default"
        );
    }

    #[test]
    fn a_tenant_cannot_load_code_from_elsewhere_nor_exceed_its_module_count() {
        let loaded = load(&[(
            "/t/acme/a.pyconf",
            "modules {\n module { name = \"a\" language = \"wasm\" }\n module { name = \"b\" language = \"wasm\" }\n module { name = \"c\" language = \"wasm\" }\n module { name = \"x\" language = \"wasm\" path = \"/t/bob/bob.wasm\" }\n}\n",
        )]);
        let errors = errors(&loaded);
        assert_eq!(errors.len(), 2, "{errors:#?}");
        assert!(errors[0].starts_with("/t/acme/a.pyconf:4:2: error: module `c`: tenant `acme` may declare at most 2 enabled modules: the tenant's ceiling of 2 (set at /etc/gmond.conf:11:17)"), "{}", errors[0]);
        assert!(
            errors[1].starts_with(
                "/t/acme/a.pyconf:5:47: error: module `x`: `/t/bob/bob.wasm` is outside"
            ),
            "{}",
            errors[1]
        );
        assert_eq!(modules(&loaded), [("core", None), ("bob", Some("bob"))]);
    }

    #[test]
    fn names_a_tenant_may_not_take() {
        let loaded = load(&[(
            "/t/acme/a.pyconf",
            "modules { module { name = \"core\" language = \"wasm\" path = \"a.wasm\" } }\ncollection_group { metric { name = \"load_one\" title = \"pwned\" } }\n",
        )]);
        let errors = errors(&loaded);
        assert_eq!(errors.len(), 2, "{errors:#?}");
        assert!(errors[0].contains("/t/acme/a.pyconf:1:11: error: module `core`: declared twice (first at /etc/gmond.conf:3:11)"), "{}", errors[0]);
        assert!(errors[1].contains("/t/acme/a.pyconf:2:20: error: tenant `acme` may collect only its own metrics, named `acme_*`; found `load_one`"), "{}", errors[1]);
    }

    #[test]
    fn an_operator_include_of_a_tenant_file_reads_it_as_the_tenant_s() {
        let tenant_file = "/t/acme/a.pyconf";
        let operator = OPERATOR.replace("/etc/conf.d/*.pyconf", "/t/acme/*.pyconf");
        let files = [
            ("/etc/gmond.conf", operator.as_str()),
            ("/mods/core.wasm", ""),
            (
                tenant_file,
                "globals { override_hostname = \"evil\" }\ntenant { name = \"me\" files = (\"/t/me/*\") allow_read = (\"/\") }\n",
            ),
        ];
        let loaded = load_with(
            Path::new("/etc/gmond.conf"),
            &LoadOptions::default(),
            &MemFs::with(&files),
        )
        .unwrap();
        assert_eq!(loaded.config.globals.override_hostname, None);
        assert_eq!(loaded.config.tenants.len(), 2, "no tenant `me`");
        assert_eq!(errors(&loaded).len(), 2, "{:?}", errors(&loaded));
        assert!(
            loaded
                .warnings
                .iter()
                .any(|w| w.message.contains("is read as the tenant's"))
        );
    }

    #[test]
    fn operator_files_must_be_owned_by_root_or_the_daemon_and_writable_by_no_one_else() {
        let ok = Ownership {
            uid: 0,
            mode: 0o100644,
            dir_mode: 0o40755,
            daemon_uid: 0,
        };
        assert_eq!(untrusted_operator_file(&ok), None);
        assert_eq!(
            untrusted_operator_file(&Ownership {
                uid: 112,
                daemon_uid: 112,
                ..ok
            }),
            None
        );
        assert_eq!(
            untrusted_operator_file(&Ownership {
                dir_mode: 0o41777,
                ..ok
            }),
            None,
            "sticky /tmp"
        );
        for bad in [
            Ownership { uid: 1000, ..ok },
            Ownership {
                mode: 0o100664,
                ..ok
            },
            Ownership {
                mode: 0o100646,
                ..ok
            },
            Ownership {
                dir_mode: 0o40777,
                ..ok
            },
        ] {
            assert!(untrusted_operator_file(&bad).is_some(), "{bad:?}");
        }
    }
}
