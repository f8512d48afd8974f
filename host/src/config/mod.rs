//! gmond's configuration language, read unchanged: `gmond.conf`, the `conf.d/*.conf`
//! and `*.pyconf` files it includes, and wasmond's `sandbox { }` extension.
//!
//! Two phases, as in libconfuse: [`parse_str`] turns one file into a raw tree
//! (sections, options, `include` calls, every node with its `file:line:col`);
//! [`load`] reads a file and its includes and builds the typed [`Config`] with
//! gmond 3.7.2's defaults, resolving each module to its `.wasm` file. Every error
//! names `file:line:col`, says what was expected and what was found, and all
//! errors are reported, not only the first. Settings wasmond accepts but does not
//! act on (gexec, setuid, C modules, ...) come back as [`Warning`]s.
//!
//! This module knows nothing of sockets, wasmtime or tokio; it reads files only
//! through [`FileSource`]. Per-module sandbox keys are documented in [`sandbox`], the
//! operator's tenants and their ceilings in [`tenant`] (which takes its default
//! ceilings from the runtime's default limits).

mod build;
mod error;
mod fields;
mod lexer;
mod loader;
mod model;
mod modules;
mod raw;
pub mod sandbox;
mod schema;
pub mod tenant;

#[cfg(test)]
mod fuzz;
#[cfg(test)]
mod tests;

use std::collections::HashSet;
use std::path::{Path, PathBuf};

use serde::Serialize;

pub use error::{ConfigError, ConfigErrors, ErrorKind, Location, Warning};
pub use loader::{FileSource, Ownership, RealFs};
pub use model::{
    Acl, AclAccess, AclAction, Cluster, CollectedMetric, CollectionGroup, Config, Family, Globals,
    HostInfo, MetricSelector, ModuleConfig, ModuleSource, TcpAcceptChannel, UdpRecvChannel,
    UdpSendChannel,
};
pub use model::{
    DEFAULT_METRICS_PATH, DEFAULT_REMOTE_WRITE_INTERVAL, DEFAULT_REMOTE_WRITE_QUEUE,
    InteractiveChannel, MAX_REMOTE_WRITE_INTERVAL, MAX_REMOTE_WRITE_QUEUE, PrometheusListener,
    PrometheusRemoteWrite,
};
pub use raw::{Item, RawTree, Scalar, Value, parse_str};
pub use sandbox::{EnvGrant, SandboxConfig};
pub use tenant::{Ceiling, Ceilings, Tenant};

/// Choices the caller makes, not the config file.
#[derive(Debug, Clone, Default)]
pub struct LoadOptions {
    /// Directories searched for modules, in order, after the declaring file's
    /// directory and `globals { module_dir }` (the install's module directory, then
    /// the bundled modules').
    pub module_dirs: Vec<PathBuf>,
}

/// A valid configuration and what the user should know about it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Loaded {
    pub config: Config,
    /// Accepted settings that wasmond ignores or replaces, in file order.
    pub warnings: Vec<Warning>,
    /// Errors in tenants' files: each refused its file (its modules and groups), and
    /// nothing else.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub tenant_errors: Vec<ConfigError>,
    /// Every file read: the root first, then the included ones, then tenants' files.
    #[serde(skip)]
    pub files: Vec<PathBuf>,
}

/// Reads `path` and everything it includes into a typed config.
pub fn load(path: impl AsRef<Path>) -> Result<Loaded, ConfigErrors> {
    load_with(path.as_ref(), &LoadOptions::default(), &RealFs)
}

/// [`load`] with options and a chosen file source (tests use an in-memory one).
///
/// The operator's files are read first; the `tenant { }`s they declare name the
/// tenants' files, which are then read apart (see [`tenant`]). An error in the
/// operator's files refuses the configuration; one in a tenant's file only that file.
pub(crate) fn load_with(
    path: &Path,
    options: &LoadOptions,
    fs: &dyn FileSource,
) -> Result<Loaded, ConfigErrors> {
    // A tenant's file matched by an operator `include` is the tenant's: read the
    // operator's files again without it (each round skips more, so this ends).
    let root = fs.identity(path);
    let mut skip = HashSet::new();
    let (expanded, tenants, owned, mut diag) = loop {
        let mut diag = fields::Diagnostics::default();
        let expanded = loader::expand(path, fs, &skip, &mut diag);
        if expanded.syntax_errors || expanded.files.is_empty() {
            in_file_order(&expanded.files, &mut diag);
            return Err(ConfigErrors(diag.errors));
        }
        let tenants = tenant::declared(&expanded.items, &mut diag);
        let owned = tenant::files_of(&tenants, fs, &mut diag);
        let owned_ids = tenant::identities(&owned);
        let overlap: Vec<PathBuf> = expanded
            .files
            .iter()
            .map(|f| fs.identity(f))
            .filter(|id| owned_ids.contains(id) && *id != root)
            .collect();
        if overlap.is_empty() {
            break (expanded, tenants, owned, diag);
        }
        skip.extend(overlap);
    };
    for file in owned.iter().filter(|o| skip.contains(&o.identity)) {
        let tenant = &tenants[file.tenant];
        let message = format!(
            "`{}` is matched by an `include` of the operator's and by tenant `{}`'s `files`: it is read as the tenant's",
            file.path.display(),
            tenant.name
        );
        diag.warn(&tenant.declared_at, message);
    }
    for file in &expanded.files {
        if fs.identity(file) == root && owned.iter().any(|o| o.identity == root) {
            let message = "the top-level configuration is matched by a tenant's `files`; it is the operator's and cannot be a tenant's";
            diag.invalid(&Location::whole_file(&loader::origin_of(file)), message);
        }
        if let Some(reason) = fs
            .ownership(file)
            .and_then(|o| tenant::untrusted_operator_file(&o))
        {
            let message = format!(
                "refusing `{}` as the operator's configuration: {reason}",
                file.display()
            );
            diag.invalid(&Location::whole_file(&loader::origin_of(file)), message);
        }
    }
    let mut config = build::build(&expanded.items, options, fs, &mut diag);
    config.tenants = tenants;
    if !diag.errors.is_empty() {
        in_file_order(&expanded.files, &mut diag);
        return Err(ConfigErrors(diag.errors));
    }
    let tenants_load = tenant::load(&mut config, &owned, options, fs, &mut diag);
    let mut files = expanded.files;
    files.extend(tenants_load.files);
    in_file_order(&files, &mut diag);
    Ok(Loaded {
        config,
        warnings: diag.warnings,
        tenant_errors: tenants_load.errors,
        files,
    })
}

/// Sorts errors and warnings by file (in reading order), line and column: the
/// builder finds them section type by section type.
fn in_file_order(files: &[PathBuf], diag: &mut fields::Diagnostics) {
    let rank = |at: &Location| {
        let file = files
            .iter()
            .position(|f| loader::origin_of(f) == *at.file)
            .unwrap_or(usize::MAX);
        (file, at.line, at.col)
    };
    diag.errors.sort_by_key(|e| rank(&e.at));
    diag.warnings.sort_by_key(|w| rank(&w.at));
}
