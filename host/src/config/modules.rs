//! `module { }` declarations and where each module's code comes from.
//!
//! - `language = "wasm"`: `path` (relative to the declaring file's directory, then
//!   to each module directory), else `<name>.wasm` beside the declaring file, else
//!   in a module directory.
//! - `language = "python"` (a `.pyconf` written for gmond, unchanged): `<name>.wasm`
//!   beside the `.pyconf` if there is one (a module built into a component), else
//!   gmond's `<name>.py`, looked for where gmond looks — the `params` directory of
//!   gmond's `python_module` declaration (`modpython.conf`), then the `.pyconf`'s own
//!   directory, `/usr/lib/ganglia/python_modules` and
//!   `/usr/lib64/ganglia/python_modules` — and run by the bundled Python interpreter
//!   component (`gmond_python.wasm`) from a module directory; else `<name>.wasm` in a
//!   module directory.
//! - gmond's native modules (`path = "modcpu.so"`, `core_metrics`, the python host
//!   `modpython.so`) are skipped with a warning that says what wasmond does instead.
//!   In place of gmond's built-in metric modules (`core_metrics`, `cpu_module`, ...)
//!   wasmond loads its `core_metrics.wasm` from a module directory, once, so that a
//!   stock gmond.conf serves the same host metrics.
//! - No `language` and no `path`: a wasm module if `<name>.wasm` is found.
//!
//! A missing wasm file is an error at the declaration, unless the module is
//! disabled (`enabled = no`), since it would not be loaded anyway.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use super::error::{ErrorKind, Location};
use super::fields::{Diagnostics, Fields, Sub};
use super::loader::FileSource;
use super::model::{ModuleConfig, ModuleSource};
use super::sandbox::{self, SandboxConfig};
use super::schema;
use crate::runtime::PYTHON_INTERPRETER;

/// gmond's C modules whose metrics wasmond's `core_metrics` wasm module provides.
const CORE_C_MODULES: &[&str] = &[
    "core_metrics",
    "cpu_module",
    "disk_module",
    "load_module",
    "mem_module",
    "net_module",
    "proc_module",
    "sys_module",
];

/// wasmond's module for gmond's built-in metrics, looked for as `<name>.wasm`.
const CORE_METRICS: &str = "core_metrics";

/// Where gmond's packages install python modules (Debian, and RPM on 64-bit).
pub(super) const GMOND_PYTHON_MODULE_DIRS: &[&str] = &[
    "/usr/lib/ganglia/python_modules",
    "/usr/lib64/ganglia/python_modules",
];

/// gmond's python host: its `params` is the python modules directory.
const PYTHON_HOST_MODULE: &str = "python_module";

/// Reads every `module { }` (from all `modules { }` blocks, in order).
pub(crate) fn read_all(
    subs: &[Sub],
    module_dirs: &[PathBuf],
    fs: &dyn FileSource,
    diag: &mut Diagnostics,
) -> Vec<ModuleConfig> {
    let mut seen: HashMap<String, Location> = HashMap::new();
    let mut modules = Vec::new();
    let python_dirs = python_module_dirs(subs);
    for sub in subs.iter().filter(|s| s.name == "module") {
        let Some(module) = read(sub, module_dirs, &python_dirs, fs, diag) else {
            continue;
        };
        if let Some(first) = seen.get(&module.name) {
            let message = format!("declared twice (first at {first})");
            diag.error(
                sub.at,
                ErrorKind::Module {
                    module: module.name.clone(),
                    message,
                },
            );
            continue;
        }
        seen.insert(module.name.clone(), module.declared_at.clone());
        modules.push(module);
    }
    substitute_core_metrics(&mut modules, module_dirs, fs);
    modules
}

/// gmond's stock configuration takes its host metrics from C modules; wasmond loads
/// `core_metrics.wasm` in their place, where the first of them is declared (gmond's
/// `core_metrics`), with what those modules read: `/proc`, `/sys` and the size of
/// mounted file systems. Not when the configuration runs a wasm `core_metrics` itself,
/// nor when no module directory holds `core_metrics.wasm`.
fn substitute_core_metrics(
    modules: &mut [ModuleConfig],
    module_dirs: &[PathBuf],
    fs: &dyn FileSource,
) {
    if modules
        .iter()
        .any(|m| m.name == CORE_METRICS && m.wasm_path().is_some())
    {
        return;
    }
    let Some(first) = modules.iter().position(|m| {
        m.enabled
            && CORE_C_MODULES.contains(&m.name.as_str())
            && matches!(m.source, ModuleSource::Native { .. })
    }) else {
        return;
    };
    let file = format!("{CORE_METRICS}.wasm");
    let Some(path) = module_dirs
        .iter()
        .map(|dir| dir.join(&file))
        .find(|p| fs.is_file(p))
    else {
        return;
    };
    let module = &mut modules[first];
    module.name = CORE_METRICS.to_string();
    module.source = ModuleSource::Wasm { path };
    module.params = Vec::new();
    module.params_string = None;
    module.sandbox = SandboxConfig {
        allow_read: vec![PathBuf::from("/proc"), PathBuf::from("/sys")],
        allow_filesystem_usage: true,
        ..SandboxConfig::default()
    };
}

/// The `params` of gmond's `python_module` declarations (the python modules
/// directory), in file order. Read without diagnostics: each declaration is read
/// again, and reported, as a module.
fn python_module_dirs(subs: &[Sub]) -> Vec<PathBuf> {
    subs.iter()
        .filter(|s| s.name == "module")
        .filter_map(|sub| {
            let f = Fields::read(
                "module",
                schema::MODULE,
                [sub.body],
                &mut Diagnostics::default(),
            );
            let dir = f
                .string("params")
                .filter(|_| f.string("name").as_deref() == Some(PYTHON_HOST_MODULE))?;
            Some(relative_to(sub, &dir))
        })
        .collect()
}

/// `path` as is if absolute, else relative to the directory of the file declaring `sub`.
fn relative_to(sub: &Sub, path: &str) -> PathBuf {
    Path::new(&*sub.at.file)
        .parent()
        .unwrap_or(Path::new(""))
        .join(path)
}

pub(super) fn read(
    sub: &Sub,
    module_dirs: &[PathBuf],
    python_dirs: &[PathBuf],
    fs: &dyn FileSource,
    diag: &mut Diagnostics,
) -> Option<ModuleConfig> {
    let f = Fields::read("module", schema::MODULE, [sub.body], diag);
    let Some(name) = f.string("name") else {
        diag.invalid(sub.at, "`module` needs a `name`");
        return None;
    };
    let enabled = f.bool("enabled", true, diag);
    let params = f
        .subs
        .iter()
        .filter(|s| s.name == "param")
        .filter_map(|s| param(s, diag))
        .collect();
    let sandbox_bodies = f
        .subs
        .iter()
        .filter(|s| s.name == "sandbox")
        .map(|s| s.body)
        .collect();
    let declaration = Declaration {
        name: &name,
        sub,
        fields: &f,
        enabled,
        module_dirs,
        python_dirs,
        fs,
    };
    let source = declaration.source(diag)?;
    Some(ModuleConfig {
        language: f.string("language"),
        source,
        params,
        params_string: f.string("params"),
        enabled,
        sandbox: sandbox::read(sandbox_bodies, diag),
        tenant: None,
        declared_at: sub.at.clone(),
        name,
    })
}

/// `param NAME { value = ... }`.
fn param(sub: &Sub, diag: &mut Diagnostics) -> Option<(String, String)> {
    let f = Fields::read("param", schema::PARAM, [sub.body], diag);
    let name = sub.title.map(|t| t.text.clone()).unwrap_or_default();
    match f.string("value") {
        Some(value) => Some((name, value)),
        None => {
            diag.invalid(sub.at, format!("`param {name}` needs a `value`"));
            None
        }
    }
}

struct Declaration<'a> {
    name: &'a str,
    sub: &'a Sub<'a>,
    fields: &'a Fields<'a>,
    enabled: bool,
    module_dirs: &'a [PathBuf],
    python_dirs: &'a [PathBuf],
    fs: &'a dyn FileSource,
}

impl Declaration<'_> {
    fn source(&self, diag: &mut Diagnostics) -> Option<ModuleSource> {
        let path = self.fields.string("path");
        let language = self
            .fields
            .string("language")
            .map(|l| l.to_ascii_lowercase());
        match (language.as_deref(), path) {
            (Some("wasm"), Some(path)) => {
                self.find(&self.candidates(&path), self.fields.value_at("path"), diag)
            }
            // Python modules have no `path` in gmond either: the name finds the code.
            (Some("python"), _) => self.python(diag),
            (Some("wasm"), _) => self.find(&self.candidates(&self.wasm_file()), None, diag),
            (None, Some(path)) if path.ends_with(".wasm") => {
                self.find(&self.candidates(&path), self.fields.value_at("path"), diag)
            }
            (None, None) if self.name != "core_metrics" => {
                self.find(&self.candidates(&self.wasm_file()), None, diag)
            }
            (None | Some("c"), path) => Some(self.native(path, diag)),
            (Some(other), _) => {
                let kind = ErrorKind::InvalidValue {
                    key: "language".into(),
                    expected: "`wasm`, `python` or `C`".into(),
                    found: format!("`{other}`"),
                };
                diag.error(
                    self.fields.value_at("language").expect("language is set"),
                    kind,
                );
                None
            }
        }
    }

    /// A gmond python module: `<name>.wasm` beside the `.pyconf`, else `<name>.py` in
    /// the python modules directories (run by the bundled interpreter), else
    /// `<name>.wasm` in a module directory.
    fn python(&self, diag: &mut Diagnostics) -> Option<ModuleSource> {
        let beside = self.declaring_dir().join(self.wasm_file());
        if self.fs.is_file(&beside) {
            return Some(ModuleSource::Wasm { path: beside });
        }
        let py_file = format!("{}.py", self.name);
        let py_dirs: Vec<PathBuf> = self
            .python_dirs
            .iter()
            .cloned()
            .chain(std::iter::once(self.declaring_dir()))
            .chain(GMOND_PYTHON_MODULE_DIRS.iter().map(PathBuf::from))
            .collect();
        let source = py_dirs
            .iter()
            .map(|dir| dir.join(&py_file))
            .find(|p| self.fs.is_file(p));
        let Some(source) = source else {
            let mut candidates: Vec<PathBuf> =
                py_dirs.iter().map(|dir| dir.join(&py_file)).collect();
            candidates.extend(
                self.module_dirs
                    .iter()
                    .map(|dir| dir.join(self.wasm_file())),
            );
            return self.find(&candidates, None, diag);
        };
        let interpreter = self
            .module_dirs
            .iter()
            .map(|dir| dir.join(PYTHON_INTERPRETER))
            .find(|p| self.fs.is_file(p));
        match interpreter {
            Some(interpreter) => Some(ModuleSource::Python {
                source,
                interpreter,
            }),
            None if !self.enabled => Some(ModuleSource::DisabledMissing {
                looked_in: vec![source],
            }),
            None => {
                let looked: Vec<String> = self
                    .module_dirs
                    .iter()
                    .map(|d| format!("`{}`", d.display()))
                    .collect();
                let message = format!(
                    "found `{}`, but not the bundled Python interpreter `{PYTHON_INTERPRETER}` that runs it \
                     (looked in the module directories: {})",
                    source.display(),
                    if looked.is_empty() {
                        "none set".to_string()
                    } else {
                        looked.join(", ")
                    }
                );
                diag.error(
                    self.sub.at,
                    ErrorKind::Module {
                        module: self.name.into(),
                        message,
                    },
                );
                None
            }
        }
    }

    fn wasm_file(&self) -> String {
        format!("{}.wasm", self.name)
    }

    fn declaring_dir(&self) -> PathBuf {
        Path::new(&*self.sub.at.file)
            .parent()
            .map(Path::to_path_buf)
            .unwrap_or_default()
    }

    /// Where to look for `file`: as is if absolute, else beside the declaring file,
    /// then in each module directory.
    fn candidates(&self, file: &str) -> Vec<PathBuf> {
        if Path::new(file).is_absolute() {
            return vec![PathBuf::from(file)];
        }
        std::iter::once(self.declaring_dir())
            .chain(self.module_dirs.iter().cloned())
            .map(|dir| dir.join(file))
            .collect()
    }

    fn find(
        &self,
        candidates: &[PathBuf],
        path_at: Option<&Location>,
        diag: &mut Diagnostics,
    ) -> Option<ModuleSource> {
        if let Some(found) = candidates.iter().find(|p| self.fs.is_file(p)) {
            return Some(ModuleSource::Wasm {
                path: found.clone(),
            });
        }
        if !self.enabled {
            return Some(ModuleSource::DisabledMissing {
                looked_in: candidates.to_vec(),
            });
        }
        let looked: Vec<String> = candidates
            .iter()
            .map(|p| format!("`{}`", p.display()))
            .collect();
        let message = format!(
            "expected its WebAssembly file at {}, found none",
            looked.join(" or ")
        );
        diag.error(
            path_at.unwrap_or(self.sub.at),
            ErrorKind::Module {
                module: self.name.into(),
                message,
            },
        );
        None
    }

    /// gmond's native modules: skipped, with a warning saying what replaces them.
    fn native(&self, path: Option<String>, diag: &mut Diagnostics) -> ModuleSource {
        let file = path.as_deref().map(|p| p.rsplit('/').next().unwrap_or(p));
        let what = match file {
            Some(file) => format!("`{file}`"),
            None => "built into gmond".to_string(),
        };
        let (kind, reason) = if self.name == "python_module" || file == Some("modpython.so") {
            (
                "gmond's python host",
                "wasmond does not need it: it runs each python module's `<name>.py` in its bundled, sandboxed Python interpreter",
            )
        } else if CORE_C_MODULES.contains(&self.name) {
            (
                "a gmond C module",
                "wasmond runs no native code; its sandboxed `core_metrics` WebAssembly module collects these metrics",
            )
        } else {
            (
                "a gmond C module",
                "wasmond runs no native code; port it to a WebAssembly component declared with `language = \"wasm\"`",
            )
        };
        diag.warn(
            self.sub.at,
            format!(
                "module `{}` ({what}) is {kind}, skipped: {reason}",
                self.name
            ),
        );
        ModuleSource::Native {
            path,
            reason: reason.into(),
        }
    }
}
