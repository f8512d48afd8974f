//! Per-module sandbox settings: wasmond's extension to gmond's `module { }`.
//!
//! They go in a `sandbox { }` block inside `module { }`. Every key is optional:
//! an absent limit means "the runtime's safe default" (decided by `runtime`, not
//! here), and absent grants mean "nothing granted" — a module sees no files and
//! no environment unless its configuration says so.
//!
//! ```text
//! module {
//!   name = "diskstats"
//!   language = "wasm"
//!   sandbox {
//!     fuel_handler = 5000000
//!     deadline_handler_ms = 200
//!     memory_mb = 16
//!     allow_read = ("/proc", "/sys/block")
//!     allow_env = ("HOSTNAME", "DISKSTATS_MODE=fast")
//!   }
//! }
//! ```
//!
//! | key | value | meaning |
//! |---|---|---|
//! | `fuel_init` | integer ≥ 1 | fuel (≈ wasm instructions) one `init` call may burn |
//! | `fuel_handler` | integer ≥ 1 | fuel one `handler(name)` call may burn |
//! | `fuel_cleanup` | integer ≥ 1 | fuel the `cleanup` call may burn |
//! | `deadline_init_ms` | integer ≥ 1 | wall-clock milliseconds `init` may take |
//! | `deadline_handler_ms` | integer ≥ 1 | wall-clock milliseconds one `handler` call may take |
//! | `deadline_cleanup_ms` | integer ≥ 1 | wall-clock milliseconds `cleanup` may take |
//! | `memory_mb` | integer ≥ 1 | most linear memory the module may grow to, in MiB |
//! | `deadline_compile_ms` | integer ≥ 1 | wall-clock milliseconds compiling the module's `.wasm` may take |
//! | `compile_memory_mb` | integer from 64 to 65536 | memory compiling the module's `.wasm` may use, in MiB |
//! | `allow_read` | list of absolute directories | read-only preopens; the guest sees each at the same path |
//! | `allow_env` | list of `NAME` or `NAME=value` | `NAME` passes the daemon's value (if set); `NAME=value` sets it |
//! | `allow_filesystem_usage` | boolean (default no) | the module may ask the size and free space of local mount points (statvfs, for disk metrics) |
//!
//! A module that runs out of fuel or time is stopped (the call fails, the daemon
//! carries on); one that asks for more memory gets a failed `memory.grow`. A compile
//! over its bounds is stopped and the module refused (compiles run in a child process;
//! an artifact found in the compile cache costs no compile).

use std::path::{Component, Path, PathBuf};

use serde::Serialize;

use super::fields::{Diagnostics, Fields};
use super::raw::{Item, Scalar};
use super::schema;

/// One `sandbox { }` block. `None` = the runtime's default.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct SandboxConfig {
    pub fuel_init: Option<u64>,
    pub fuel_handler: Option<u64>,
    pub fuel_cleanup: Option<u64>,
    pub deadline_init_ms: Option<u64>,
    pub deadline_handler_ms: Option<u64>,
    pub deadline_cleanup_ms: Option<u64>,
    pub memory_mb: Option<u32>,
    pub deadline_compile_ms: Option<u64>,
    pub compile_memory_mb: Option<u64>,
    /// Read-only directory preopens, host path = guest path.
    pub allow_read: Vec<PathBuf>,
    /// Environment variables the module sees.
    pub allow_env: Vec<EnvGrant>,
    /// Whether the module may ask the size and free space of local mount points.
    pub allow_filesystem_usage: bool,
}

/// One `allow_env` entry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum EnvGrant {
    /// `"NAME"`: the daemon's own value, if it has one.
    Inherit(String),
    /// `"NAME=value"`: this value.
    Set { name: String, value: String },
}

/// The largest accepted `memory_mb`: 4 GiB is all a 32-bit wasm memory can address.
const MAX_MEMORY_MB: i64 = 4096;
/// The accepted `compile_memory_mb`: below 64 MiB the compiler process cannot even
/// start its engine; 64 GiB is more than any compile within the compile caps needs.
pub const COMPILE_MEMORY_MB: (i64, i64) = (64, 65536);

/// Reads the `sandbox { }` blocks of one module (normally one; later keys win).
pub fn read(bodies: Vec<&[Item]>, diag: &mut Diagnostics) -> SandboxConfig {
    let fields = Fields::read("sandbox", schema::SANDBOX, bodies, diag);
    let positive = |key: &str, diag: &mut Diagnostics| {
        fields
            .int_in(key, 1, i64::MAX, "an integer of at least 1", diag)
            .map(|v| v as u64)
    };
    SandboxConfig {
        fuel_init: positive("fuel_init", diag),
        fuel_handler: positive("fuel_handler", diag),
        fuel_cleanup: positive("fuel_cleanup", diag),
        deadline_init_ms: positive("deadline_init_ms", diag),
        deadline_handler_ms: positive("deadline_handler_ms", diag),
        deadline_cleanup_ms: positive("deadline_cleanup_ms", diag),
        memory_mb: fields
            .int_in(
                "memory_mb",
                1,
                MAX_MEMORY_MB,
                "a size in MiB from 1 to 4096",
                diag,
            )
            .map(|v| v as u32),
        deadline_compile_ms: positive("deadline_compile_ms", diag),
        compile_memory_mb: fields
            .int_in(
                "compile_memory_mb",
                COMPILE_MEMORY_MB.0,
                COMPILE_MEMORY_MB.1,
                "a size in MiB from 64 to 65536",
                diag,
            )
            .map(|v| v as u64),
        allow_read: fields
            .list("allow_read")
            .into_iter()
            .filter_map(|s| read_dir(s, diag))
            .collect(),
        allow_env: fields
            .list("allow_env")
            .into_iter()
            .filter_map(|s| env_grant(s, diag))
            .collect(),
        allow_filesystem_usage: fields.bool("allow_filesystem_usage", false, diag),
    }
}

/// Preopens must be absolute (the guest sees the same path) and may not climb
/// with `..`, which would make the granted directory hard to read off the config.
fn read_dir(s: &Scalar, diag: &mut Diagnostics) -> Option<PathBuf> {
    let path = Path::new(&s.text);
    if !path.is_absolute() {
        diag.invalid(
            &s.at,
            format!(
                "`allow_read`: expected an absolute directory, found `{}`",
                s.text
            ),
        );
        return None;
    }
    if path.components().any(|c| c == Component::ParentDir) {
        diag.invalid(
            &s.at,
            format!(
                "`allow_read`: expected a path without `..`, found `{}`",
                s.text
            ),
        );
        return None;
    }
    Some(path.to_path_buf())
}

fn env_grant(s: &Scalar, diag: &mut Diagnostics) -> Option<EnvGrant> {
    let (name, value) = match s.text.split_once('=') {
        Some((name, value)) => (name, Some(value)),
        None => (s.text.as_str(), None),
    };
    let valid_name =
        !name.is_empty() && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
    if !valid_name {
        let message = format!(
            "`allow_env`: expected `NAME` or `NAME=value` with NAME of letters, digits and `_`, found `{}`",
            s.text
        );
        diag.invalid(&s.at, message);
        return None;
    }
    Some(match value {
        None => EnvGrant::Inherit(name.into()),
        Some(value) => EnvGrant::Set {
            name: name.into(),
            value: value.into(),
        },
    })
}
