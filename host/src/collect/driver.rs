//! What the engine needs from a module, whatever runs it: start it, ask it for a value,
//! clean it up. The WebAssembly runtime is one implementation (`wasm.rs`); the host's
//! own metrics (`host_module.rs`) and test doubles are others.
//!
//! Calls are synchronous and may block for as long as the module's limits allow; the
//! engine makes them on the module's own thread and never waits for one without a bound.

use crate::metric::{MetricDescriptor, MetricValue};

/// A running (or startable) module.
pub trait ModuleDriver: Send + 'static {
    /// Loads, instantiates and initialises the module; returns its metrics. Called again
    /// after a failure, with backoff.
    fn start(&mut self) -> Result<Vec<MetricDescriptor>, Failure>;

    /// The current value of `metric`. After a trap the driver starts afresh on the next
    /// call (the engine waits out a backoff first).
    fn handle(&mut self, metric: &str) -> Result<MetricValue, Failure>;

    /// The values of `metrics`, in order, each handed to `answer` as it comes. After a
    /// trap it stops: the metrics after it get no call (the engine's backoff decides
    /// when the module starts again). By default one [`ModuleDriver::handle`] each; a
    /// driver that can answer many metrics in one call does so.
    fn handle_each(
        &mut self,
        metrics: &[&str],
        answer: &mut dyn FnMut(Result<MetricValue, Failure>),
    ) {
        for metric in metrics {
            let result = self.handle(metric);
            let trapped = matches!(&result, Err(failure) if failure.is_trap());
            answer(result);
            if trapped {
                return;
            }
        }
    }

    /// Runs the module's cleanup, under its limits.
    fn cleanup(&mut self);

    /// What the sandbox measured so far.
    fn usage(&self) -> Usage {
        Usage::default()
    }
}

/// A call that did not produce a value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failure {
    /// What failed, kept from the runtime to the accounting and the log.
    pub kind: FailureKind,
    /// One line naming the module, the callback, the metric and what happened.
    pub message: String,
}

impl Failure {
    pub fn new(kind: FailureKind, message: impl Into<String>) -> Failure {
        Failure {
            kind,
            message: message.into(),
        }
    }

    /// A trap with no more specific kind (a crash).
    pub(crate) fn trap(message: impl Into<String>) -> Failure {
        Failure::new(FailureKind::Crash, message)
    }

    /// An error the module reported.
    pub fn error(message: impl Into<String>) -> Failure {
        Failure::new(FailureKind::ModuleError, message)
    }

    /// A trap: the instance is gone and the module is backed off. Otherwise the module
    /// reported an error or broke the contract, and only this value is lost.
    pub fn is_trap(&self) -> bool {
        self.kind.is_trap()
    }
}

/// The ways a call fails, as the accounting counts them and the log names them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum FailureKind {
    /// A trap: out of fuel.
    Fuel,
    /// A trap: past its wall-clock deadline.
    Deadline,
    /// A trap: a memory or table grow refused by the module's cap.
    Memory,
    /// Any other trap: unreachable, out-of-bounds access, stack overflow, a host panic.
    Crash,
    /// The module returned an error through WIT.
    ModuleError,
    /// The module returned what breaks the contract or a host cap.
    InvalidOutput,
    /// The module could not be loaded: read, compiled, type-checked or granted.
    Load,
}

impl FailureKind {
    /// Every kind, in the order of [`FailureKind::index`].
    pub const ALL: [FailureKind; 7] = [
        FailureKind::Fuel,
        FailureKind::Deadline,
        FailureKind::Memory,
        FailureKind::Crash,
        FailureKind::ModuleError,
        FailureKind::InvalidOutput,
        FailureKind::Load,
    ];

    pub fn is_trap(self) -> bool {
        matches!(
            self,
            FailureKind::Fuel | FailureKind::Deadline | FailureKind::Memory | FailureKind::Crash
        )
    }

    /// The kind's place in [`FailureKind::ALL`] (and in an account's counts).
    pub fn index(self) -> usize {
        self as usize
    }

    /// The kind as logs and metric names show it.
    pub fn name(self) -> &'static str {
        match self {
            FailureKind::Fuel => "fuel",
            FailureKind::Deadline => "deadline",
            FailureKind::Memory => "memory",
            FailureKind::Crash => "crash",
            FailureKind::ModuleError => "module error",
            FailureKind::InvalidOutput => "invalid output",
            FailureKind::Load => "load",
        }
    }
}

impl std::fmt::Display for FailureKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// Resource use measured by the sandbox, summed over the module's life.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Usage {
    /// Fuel (about one unit per wasm instruction) consumed.
    pub fuel: u64,
    /// The largest linear memory the module had, in bytes.
    pub peak_memory_bytes: u64,
}
