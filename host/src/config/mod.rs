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
//! through [`FileSource`]. Per-module sandbox keys are documented in [`sandbox`].

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

#[cfg(test)]
mod fuzz;
#[cfg(test)]
mod tests;

use std::path::{Path, PathBuf};

use serde::Serialize;

pub use error::{ConfigError, ConfigErrors, ErrorKind, Location, Warning};
pub use loader::{FileSource, RealFs};
pub use model::{
    Acl, AclAccess, AclAction, Cluster, CollectedMetric, CollectionGroup, Config, Family, Globals,
    HostInfo, MetricSelector, ModuleConfig, ModuleSource, TcpAcceptChannel, UdpRecvChannel,
    UdpSendChannel,
};
pub use model::{DEFAULT_METRICS_PATH, InteractiveChannel, PrometheusListener};
pub use raw::{Item, RawTree, Scalar, Value, parse_str};
pub use sandbox::{EnvGrant, SandboxConfig};

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
    /// Every file read: the root first, then the included ones.
    #[serde(skip)]
    pub files: Vec<PathBuf>,
}

/// Reads `path` and everything it includes into a typed config.
pub fn load(path: impl AsRef<Path>) -> Result<Loaded, ConfigErrors> {
    load_with(path.as_ref(), &LoadOptions::default(), &RealFs)
}

/// [`load`] with options and a chosen file source (tests use an in-memory one).
pub fn load_with(
    path: &Path,
    options: &LoadOptions,
    fs: &dyn FileSource,
) -> Result<Loaded, ConfigErrors> {
    let mut diag = fields::Diagnostics::default();
    let expanded = loader::expand(path, fs, &mut diag);
    if expanded.syntax_errors || expanded.files.is_empty() {
        in_file_order(&expanded.files, &mut diag);
        return Err(ConfigErrors(diag.errors));
    }
    let config = build::build(&expanded.items, options, fs, &mut diag);
    in_file_order(&expanded.files, &mut diag);
    if diag.errors.is_empty() {
        Ok(Loaded {
            config,
            warnings: diag.warnings,
            files: expanded.files,
        })
    } else {
        Err(ConfigErrors(diag.errors))
    }
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
