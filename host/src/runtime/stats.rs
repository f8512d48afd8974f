//! Per-module counters: calls, errors by kind, fuel, wall time, peak memory, log lines.

use std::time::Duration;

use super::error::{Callback, ErrorKind};

/// What one module instance has done so far. Survives re-instantiations.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ModuleStats {
    /// Instantiations followed by `init`, successful or not.
    pub inits: u64,
    /// Re-instantiations after a trap poisoned the previous store.
    pub restarts: u64,
    /// Handler calls that reached the module.
    pub calls: u64,
    pub errors: ErrorCounts,
    /// Fuel burnt by every callback together.
    pub fuel_consumed: u64,
    /// Wall time spent in every callback together.
    pub wall_time: Duration,
    /// The largest linear memory (summed over memories) any of its stores reached.
    pub peak_memory_bytes: usize,
    /// The latest callback that ran.
    pub last_call: Option<CallStats>,
    pub log_lines: u64,
    /// Lines the rate limit dropped.
    pub log_lines_dropped: u64,
    /// Lines cut to `MAX_LOG_LINE_BYTES`.
    pub log_lines_truncated: u64,
}

/// The cost of one callback.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CallStats {
    pub callback: Callback,
    pub wall_time: Duration,
    pub fuel: u64,
}

/// Errors by kind.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ErrorCounts {
    pub out_of_fuel: u64,
    pub deadline: u64,
    pub memory_limit: u64,
    pub trap: u64,
    pub module_reported: u64,
    pub invalid_output: u64,
    pub unknown_metric: u64,
    pub load: u64,
}

impl ErrorCounts {
    pub(crate) fn count(&mut self, kind: &ErrorKind) {
        let counter = match kind {
            ErrorKind::OutOfFuel { .. } => &mut self.out_of_fuel,
            ErrorKind::Deadline { .. } => &mut self.deadline,
            ErrorKind::MemoryLimit(_) => &mut self.memory_limit,
            ErrorKind::Trap { .. } => &mut self.trap,
            ErrorKind::ModuleReported(_) => &mut self.module_reported,
            ErrorKind::InvalidOutput(_) => &mut self.invalid_output,
            ErrorKind::UnknownMetric => &mut self.unknown_metric,
            ErrorKind::Load(_) => &mut self.load,
        };
        *counter += 1;
    }

    pub fn total(&self) -> u64 {
        self.out_of_fuel
            + self.deadline
            + self.memory_limit
            + self.trap
            + self.module_reported
            + self.invalid_output
            + self.unknown_metric
            + self.load
    }
}
