//! Typed errors of the runtime: which module, which callback, which metric, and
//! which of the ways a module can fail.
//!
//! A trap (fuel, deadline, memory, any other trap) poisons the module's store; an
//! error the module returns through WIT or an invalid output does not. The kinds
//! keep those apart so the caller can count them and decide.

use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

use crate::metric::ValueType;

/// The module callback an error happened in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Callback {
    /// Reading, compiling and type-checking the component.
    Load,
    /// Instantiation followed by `init`: both run under the init limits.
    Init,
    Handler,
    Cleanup,
}

impl fmt::Display for Callback {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Callback::Load => "load",
            Callback::Init => "init",
            Callback::Handler => "handler",
            Callback::Cleanup => "cleanup",
        })
    }
}

/// A module failed. Displays as one line naming the module, the callback and the metric.
#[derive(Debug, thiserror::Error)]
pub struct ModuleError {
    pub module: String,
    pub callback: Callback,
    /// The metric the handler was asked for, if the error is a handler's.
    pub metric: Option<String>,
    pub kind: ErrorKind,
}

impl ModuleError {
    pub fn kind(&self) -> &ErrorKind {
        &self.kind
    }

    /// Whether the module's store was dropped because of this error (a trap of any kind).
    pub fn is_trap(&self) -> bool {
        self.kind.is_trap()
    }
}

impl fmt::Display for ModuleError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "module {}: {}", self.module, self.callback)?;
        if let Some(metric) = &self.metric {
            write!(f, " of metric {metric}")?;
        }
        write!(f, ": {}", self.kind)
    }
}

/// The ways a module fails.
#[derive(Debug, thiserror::Error)]
pub enum ErrorKind {
    #[error("out of fuel (budget {budget} units)")]
    OutOfFuel { budget: u64 },
    #[error("deadline of {deadline:?} exceeded")]
    Deadline { deadline: Duration },
    #[error("{0}")]
    MemoryLimit(LimitHit),
    /// Any other trap; `code` is `None` for traps raised by host functions.
    #[error("trap: {message}")]
    Trap {
        code: Option<wasmtime::Trap>,
        message: String,
    },
    /// The module returned `err(message)` through WIT (cut to `MAX_ERROR_MESSAGE_BYTES`).
    #[error("module reported an error: {0}")]
    ModuleReported(String),
    #[error("invalid output: {0}")]
    InvalidOutput(InvalidOutput),
    /// The handler was asked for a metric `init` did not declare.
    #[error("no such metric")]
    UnknownMetric,
    #[error("{0}")]
    Load(LoadError),
}

impl ErrorKind {
    /// Whether this error came from a trap, which poisons the store.
    pub fn is_trap(&self) -> bool {
        matches!(
            self,
            ErrorKind::OutOfFuel { .. }
                | ErrorKind::Deadline { .. }
                | ErrorKind::MemoryLimit(_)
                | ErrorKind::Trap { .. }
        )
    }
}

/// Which store limit refused a grow.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum LimitHit {
    #[error("memory limit of {limit} bytes exceeded")]
    Memory { limit: usize },
    #[error("table limit of {limit} elements exceeded")]
    Table { limit: usize },
}

/// An output of the module that breaks the contract or a host cap.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum InvalidOutput {
    #[error("value of type {got} for a metric declared {expected}")]
    WrongType { expected: ValueType, got: ValueType },
    #[error("metric name {name:?} is invalid: {reason}")]
    InvalidName { name: String, reason: &'static str },
    #[error("metric {0:?} is declared twice")]
    DuplicateName(String),
    #[error("{field} of {len} bytes is over the cap of {max}")]
    StringTooLong {
        field: &'static str,
        len: usize,
        max: usize,
    },
    #[error("{count} {what} are over the cap of {max}")]
    TooMany {
        what: &'static str,
        count: usize,
        max: usize,
    },
    #[error("descriptors of {bytes} bytes in all are over the module's cap of {max}")]
    DescriptorsTooLarge { bytes: usize, max: usize },
    #[error("handle-each returned without answering it")]
    NotAnswered,
    #[error("the number {number} is not a value of type {expected}")]
    NotOfType { number: f64, expected: ValueType },
}

/// Why a component could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path} is {len} bytes, over the cap of {max}")]
    TooLarge { path: PathBuf, len: u64, max: u64 },
    #[error("{path} is not a WebAssembly file")]
    NotWasm { path: PathBuf },
    #[error(
        "{path} is a core WebAssembly module, not a component (build it for wasm32-wasip2 or with `wasm-tools component new`)"
    )]
    CoreModule { path: PathBuf },
    /// What compiling it would cost crosses a cap (see `runtime::inspect`).
    #[error("{path} has {found} {what}, over the cap of {max}: refused before compiling")]
    OverBudget {
        path: PathBuf,
        what: &'static str,
        found: u64,
        max: u64,
    },
    #[error("{path} does not compile: {message}")]
    Compile { path: PathBuf, message: String },
    /// Compiling it crossed a compile bound, and the compile was stopped (see
    /// `runtime::compiler`).
    #[error("{path}: compiling it {hit}: the module is refused")]
    CompileBound { path: PathBuf, hit: CompileBoundHit },
    #[error("{path} is not a wasmond:metric@0.1.0 metric-module component: {message}")]
    WrongWorld { path: PathBuf, message: String },
    #[error("cannot grant {what}: {message}")]
    Grant { what: String, message: String },
}

/// Which compile bound a compile crossed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum CompileBoundHit {
    #[error("took longer than the compile deadline of {0:?} (`deadline_compile_ms`)")]
    Deadline(Duration),
    #[error("needed more than the compile memory bound of {mb} MiB (`compile_memory_mb`)")]
    Memory { mb: u64 },
}

/// Bytes kept of one line of a trap's message (a backtrace frame names a function from
/// the module's own name section, which may be anything).
pub(crate) const MAX_TRAP_LINE_BYTES: usize = 256;
/// Bytes kept of a trap's whole message.
pub(crate) const MAX_TRAP_MESSAGE_BYTES: usize = 2048;

/// Text a module controls made safe for the daemon's log: one line (its lines joined
/// with ` | `, each cut to `max_line` bytes), control and invisible formatting
/// characters escaped (`\n`, `\u{202e}`), the whole cut to `max` bytes. A module's
/// function names and error messages can then neither forge a log line nor hide text.
pub(crate) fn log_safe(text: &str, max_line: usize, max: usize) -> String {
    let mut out = String::new();
    for (index, line) in text.lines().map(str::trim).enumerate() {
        if index > 0 {
            out.push_str(" | ");
        }
        let kept = truncate_to(line, max_line);
        for c in kept.chars() {
            if c.is_control() || is_invisible_format(c) {
                out.extend(c.escape_default());
            } else {
                out.push(c);
            }
        }
        if kept.len() < line.len() {
            out.push_str("...");
        }
        if out.len() > max {
            break;
        }
    }
    if out.len() > max {
        let cut = truncate_to(&out, max).len();
        out.truncate(cut);
        out.push_str("...");
    }
    out
}

/// Characters that change how text around them reads without showing themselves:
/// bidirectional overrides, zero-width characters, line and paragraph separators.
fn is_invisible_format(c: char) -> bool {
    matches!(c, '\u{200b}'..='\u{200f}' | '\u{2028}'..='\u{202e}' | '\u{2066}'..='\u{2069}' | '\u{feff}')
}

/// Cuts `text` to at most `max` bytes on a character boundary.
pub(crate) fn truncate_to(text: &str, max: usize) -> &str {
    if text.len() <= max {
        return text;
    }
    let mut end = max;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    &text[..end]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn display_names_module_callback_and_metric() {
        let error = ModuleError {
            module: "disk".into(),
            callback: Callback::Handler,
            metric: Some("disk_free".into()),
            kind: ErrorKind::OutOfFuel { budget: 5 },
        };
        assert_eq!(
            error.to_string(),
            "module disk: handler of metric disk_free: out of fuel (budget 5 units)"
        );
    }

    #[test]
    fn only_traps_poison_the_store() {
        assert!(
            ErrorKind::Deadline {
                deadline: Duration::from_secs(1)
            }
            .is_trap()
        );
        assert!(ErrorKind::MemoryLimit(LimitHit::Memory { limit: 1 }).is_trap());
        assert!(!ErrorKind::ModuleReported("no".into()).is_trap());
        assert!(!ErrorKind::UnknownMetric.is_trap());
    }

    #[test]
    fn module_text_reaches_the_log_as_one_escaped_line() {
        let forged = "trap\n2026-12-05T07:00:00Z ERROR wasmond: root password is hunter2\r\u{202e}";
        assert_eq!(
            log_safe(forged, 256, 2048),
            "trap | 2026-12-05T07:00:00Z ERROR wasmond: root password is hunter2\\r\\u{202e}"
        );
        let long = format!("frame {}\nnext", "x".repeat(300));
        let safe = log_safe(&long, 10, 2048);
        assert_eq!(safe, "frame xxxx... | next");
        assert!(log_safe(&"y\n".repeat(5000), 256, 100).len() <= 103);
    }

    /// A real trap whose backtrace names a function from the module's name section.
    #[test]
    fn a_forged_function_name_in_a_trap_backtrace_stays_in_its_line() {
        let engine = wasmtime::Engine::default();
        let wat = r#"(module
            (import "host" "fail" (func $fail))
            (func $evil (@name "f\0a2026-12-05T07:00:00Z  INFO wasmond: forged") (export "run")
                call $fail))"#;
        let module = wasmtime::Module::new(&engine, wat).unwrap();
        let mut store = wasmtime::Store::new(&engine, ());
        let fail = wasmtime::Func::wrap(&mut store, || -> wasmtime::Result<()> {
            Err(wasmtime::Error::msg("host refused"))
        });
        let instance = wasmtime::Instance::new(&mut store, &module, &[fail.into()]).unwrap();
        let run = instance
            .get_typed_func::<(), ()>(&mut store, "run")
            .unwrap();
        let raw = format!("{:#}", run.call(&mut store, ()).unwrap_err());
        assert!(
            raw.contains("f\n2026"),
            "the name reaches the message raw: {raw}"
        );
        let safe = log_safe(&raw, MAX_TRAP_LINE_BYTES, MAX_TRAP_MESSAGE_BYTES);
        assert!(!safe.contains('\n'), "{safe}");
        assert!(
            safe.contains("f | 2026-12-05T07:00:00Z  INFO wasmond: forged"),
            "{safe}"
        );
    }

    #[test]
    fn truncation_respects_char_boundaries() {
        assert_eq!(truncate_to("héllo", 2), "h");
        assert_eq!(truncate_to("héllo", 3), "hé");
        assert_eq!(truncate_to("abc", 10), "abc");
    }
}
