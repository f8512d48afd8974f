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
    /// A trap (fuel, deadline, memory, crash): the instance is gone and the module is
    /// backed off. Otherwise the module reported an error or broke the contract, and
    /// only this value is lost.
    pub trap: bool,
    /// One line naming the module, the callback, the metric and what happened.
    pub message: String,
}

impl Failure {
    pub fn trap(message: impl Into<String>) -> Failure {
        Failure {
            trap: true,
            message: message.into(),
        }
    }

    pub fn error(message: impl Into<String>) -> Failure {
        Failure {
            trap: false,
            message: message.into(),
        }
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
