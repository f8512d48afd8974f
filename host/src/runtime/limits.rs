//! The limits a module runs under, their defaults, and the caps on every host
//! allocation whose size a guest controls.
//!
//! Defaults are meant for an untrusted tenant on a monitoring host: a handler gets
//! about a second of CPU at most, a module a bounded slice of memory, and nothing a
//! module returns or logs can make the host allocate without bound.

use std::time::Duration;

use super::error::LimitHit;

/// Fuel for instantiation plus `init` (roughly one unit per wasm instruction).
/// Large enough for an interpreter-based guest (Python, JavaScript) to boot.
pub(crate) const DEFAULT_FUEL_INIT: u64 = 10_000_000_000;
/// Fuel for one `handler` call.
pub(crate) const DEFAULT_FUEL_HANDLER: u64 = 1_000_000_000;
/// Fuel for `cleanup`.
pub(crate) const DEFAULT_FUEL_CLEANUP: u64 = 200_000_000;
/// Wall-clock deadline for instantiation plus `init`.
pub(crate) const DEFAULT_DEADLINE_INIT: Duration = Duration::from_secs(10);
/// Wall-clock deadline for one `handler` call.
pub(crate) const DEFAULT_DEADLINE_HANDLER: Duration = Duration::from_secs(2);
/// Wall-clock deadline for `cleanup`.
pub(crate) const DEFAULT_DEADLINE_CLEANUP: Duration = Duration::from_secs(2);
/// Wall-clock time compiling a module's component may take (when it compiles in a
/// child process, see `runtime::compiler`). The bundled Python interpreter, the largest
/// bundled component, compiles in about 40 s on two busy cores.
pub(crate) const DEFAULT_DEADLINE_COMPILE: Duration = Duration::from_secs(300);
/// Memory (the compiler process's data: heap, stacks, code; `RLIMIT_DATA`) compiling a
/// module's component may use. The Python interpreter compiles within 512 MiB and not
/// within 384 (peak RSS 437 MiB, two threads).
pub(crate) const DEFAULT_COMPILE_MEMORY_BYTES: u64 = 1024 << 20;
/// Linear memory of one module instance, summed over its memories.
pub(crate) const DEFAULT_MEMORY_BYTES: usize = 128 << 20;
/// Elements of all the tables of one module instance together (the Python guest's
/// tables hold about 15 000). Each element also counts against the memory cap as
/// [`TABLE_ELEMENT_BYTES`].
pub(crate) const DEFAULT_TABLE_ELEMENTS: usize = 200_000;
/// What one table element costs the host (a pointer), counted against the memory cap:
/// tables are not linear memory, but a module growing them grows the daemon as surely.
pub(crate) const TABLE_ELEMENT_BYTES: usize = 8;
/// Core instances in one store (a component instantiates several core modules).
pub(crate) const DEFAULT_MAX_INSTANCES: usize = 64;
/// Tables in one store.
pub(crate) const DEFAULT_MAX_TABLES: usize = 64;
/// Linear memories in one store.
pub(crate) const DEFAULT_MAX_MEMORIES: usize = 16;

/// Descriptors one `init` may return. A list the guest returns is lifted by wasmtime
/// in full before the host can count it, so the memory cap bounds the lift itself
/// (the host copy is a small multiple of the guest's memory); this cap bounds what
/// the host keeps.
pub const MAX_DESCRIPTORS: usize = 4096;
/// Bytes of all the descriptors one `init` returns, every text field counted (name,
/// units, format, description, groups, extras): what the daemon keeps and serves for
/// one module, within the per-item caps below. 4096 metrics of 256 bytes each.
pub const MAX_DESCRIPTOR_BYTES: usize = 1 << 20;
/// Bytes of a metric name (the WIT contract says so too).
pub(crate) const MAX_METRIC_NAME_BYTES: usize = 128;
/// Bytes of a string value. gmond sends a value in one 1464-byte XDR message.
pub(crate) const MAX_STRING_VALUE_BYTES: usize = 1024;
/// Bytes of each descriptor text field: units, format, description, group, extra key or value.
pub(crate) const MAX_DESCRIPTOR_TEXT_BYTES: usize = 1024;
/// Groups of one descriptor.
pub(crate) const MAX_GROUPS: usize = 32;
/// Extra key/value pairs of one descriptor.
pub(crate) const MAX_EXTRAS: usize = 64;
/// Bytes kept of an error message a module returns through WIT; the rest is cut.
pub(crate) const MAX_ERROR_MESSAGE_BYTES: usize = 1024;
/// Bytes kept of one log line; the rest is cut. Like every string a guest passes
/// to the host, wasmtime copies the whole message before the host sees it, so the
/// memory cap bounds that copy.
pub(crate) const MAX_LOG_LINE_BYTES: usize = 4096;
/// Log lines a module may write in a burst before rate limiting starts.
pub const LOG_BURST_LINES: u32 = 200;
/// Log lines per second a module may write in the long run.
pub(crate) const LOG_LINES_PER_SECOND: u32 = 20;
/// Bytes one `wasi:random` call may ask for (wasmtime-wasi's default is 64 MiB);
/// a larger request traps.
pub(crate) const MAX_RANDOM_BYTES: u64 = 1 << 20;

/// What one module instance may consume. `Default` is safe for an untrusted tenant.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Limits {
    pub fuel_init: u64,
    pub fuel_handler: u64,
    pub fuel_cleanup: u64,
    pub deadline_init: Duration,
    pub deadline_handler: Duration,
    pub deadline_cleanup: Duration,
    pub memory_bytes: usize,
    /// Bounds on compiling the module's component, when it is compiled (not found in a
    /// cache) in a child process.
    pub deadline_compile: Duration,
    pub compile_memory_bytes: u64,
    pub table_elements: usize,
    pub max_instances: usize,
    pub max_tables: usize,
    pub max_memories: usize,
}

impl Default for Limits {
    fn default() -> Limits {
        Limits {
            fuel_init: DEFAULT_FUEL_INIT,
            fuel_handler: DEFAULT_FUEL_HANDLER,
            fuel_cleanup: DEFAULT_FUEL_CLEANUP,
            deadline_init: DEFAULT_DEADLINE_INIT,
            deadline_handler: DEFAULT_DEADLINE_HANDLER,
            deadline_cleanup: DEFAULT_DEADLINE_CLEANUP,
            memory_bytes: DEFAULT_MEMORY_BYTES,
            deadline_compile: DEFAULT_DEADLINE_COMPILE,
            compile_memory_bytes: DEFAULT_COMPILE_MEMORY_BYTES,
            table_elements: DEFAULT_TABLE_ELEMENTS,
            max_instances: DEFAULT_MAX_INSTANCES,
            max_tables: DEFAULT_MAX_TABLES,
            max_memories: DEFAULT_MAX_MEMORIES,
        }
    }
}

/// The error a refused grow traps with; recognised again when the call fails.
#[derive(Debug, thiserror::Error)]
#[error("resource limit refused a grow")]
pub(crate) struct GrowRefused;

/// A `ResourceLimiter` that traps on a refused grow, records which limit refused,
/// and keeps the peak memory size for the module's stats.
#[derive(Debug)]
pub(crate) struct Limiter {
    memory_bytes: usize,
    table_elements: usize,
    max_instances: usize,
    max_tables: usize,
    max_memories: usize,
    /// Current size of each memory, summed: a store may hold several memories.
    memory_in_use: usize,
    /// Current elements of each table, summed.
    table_elements_in_use: usize,
    pub(crate) peak_memory_bytes: usize,
    pub(crate) refused: Option<LimitHit>,
}

impl Limiter {
    pub(crate) fn new(limits: &Limits) -> Limiter {
        Limiter {
            memory_bytes: limits.memory_bytes,
            table_elements: limits.table_elements,
            max_instances: limits.max_instances,
            max_tables: limits.max_tables,
            max_memories: limits.max_memories,
            memory_in_use: 0,
            table_elements_in_use: 0,
            peak_memory_bytes: 0,
            refused: None,
        }
    }
}

impl Limiter {
    fn table_bytes(&self, elements: usize) -> usize {
        elements.saturating_mul(TABLE_ELEMENT_BYTES)
    }
}

impl wasmtime::ResourceLimiter for Limiter {
    fn memory_growing(
        &mut self,
        current: usize,
        desired: usize,
        maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        let in_use = self.memory_in_use - current.min(self.memory_in_use) + desired;
        if in_use.saturating_add(self.table_bytes(self.table_elements_in_use)) > self.memory_bytes {
            self.refused = Some(LimitHit::Memory {
                limit: self.memory_bytes,
            });
            return Err(GrowRefused.into());
        }
        if maximum.is_some_and(|max| desired > max) {
            // The module's own declared maximum: wasm semantics say grow returns -1.
            return Ok(false);
        }
        self.memory_in_use = in_use;
        self.peak_memory_bytes = self.peak_memory_bytes.max(in_use);
        Ok(true)
    }

    fn memory_grow_failed(&mut self, error: wasmtime::Error) -> wasmtime::Result<()> {
        // The host could not map memory it had allowed: treat it as the limit too.
        self.refused = Some(LimitHit::Memory {
            limit: self.memory_bytes,
        });
        Err(error.context(GrowRefused))
    }

    fn table_growing(
        &mut self,
        current: usize,
        desired: usize,
        maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        let in_use = self.table_elements_in_use - current.min(self.table_elements_in_use) + desired;
        if in_use > self.table_elements {
            self.refused = Some(LimitHit::Table {
                limit: self.table_elements,
            });
            return Err(GrowRefused.into());
        }
        if self.memory_in_use.saturating_add(self.table_bytes(in_use)) > self.memory_bytes {
            self.refused = Some(LimitHit::Memory {
                limit: self.memory_bytes,
            });
            return Err(GrowRefused.into());
        }
        if maximum.is_some_and(|max| desired > max) {
            return Ok(false);
        }
        self.table_elements_in_use = in_use;
        Ok(true)
    }

    fn instances(&self) -> usize {
        self.max_instances
    }

    fn tables(&self) -> usize {
        self.max_tables
    }

    fn memories(&self) -> usize {
        self.max_memories
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use wasmtime::ResourceLimiter;

    fn limiter(memory_bytes: usize) -> Limiter {
        Limiter::new(&Limits {
            memory_bytes,
            table_elements: 10,
            ..Limits::default()
        })
    }

    #[test]
    fn memory_grows_up_to_the_cap_and_records_the_peak() {
        let mut limiter = limiter(1000);
        assert!(limiter.memory_growing(0, 600, None).unwrap());
        assert!(limiter.memory_growing(600, 1000, None).unwrap());
        assert_eq!(limiter.peak_memory_bytes, 1000);
        assert_eq!(limiter.refused, None);
    }

    #[test]
    fn memory_over_the_cap_traps_and_says_which_limit() {
        let mut limiter = limiter(1000);
        assert!(limiter.memory_growing(0, 600, None).unwrap());
        assert!(limiter.memory_growing(600, 1001, None).is_err());
        assert_eq!(limiter.refused, Some(LimitHit::Memory { limit: 1000 }));
        assert_eq!(limiter.peak_memory_bytes, 600);
    }

    #[test]
    fn the_cap_covers_all_memories_of_the_store() {
        let mut limiter = limiter(1000);
        assert!(limiter.memory_growing(0, 600, None).unwrap());
        assert!(limiter.memory_growing(0, 500, None).is_err());
    }

    #[test]
    fn a_module_maximum_fails_the_grow_without_trapping() {
        let mut limiter = limiter(1000);
        assert!(!limiter.memory_growing(0, 600, Some(500)).unwrap());
        assert_eq!(limiter.refused, None);
    }

    #[test]
    fn tables_over_the_cap_trap() {
        let mut limiter = limiter(1000);
        assert!(limiter.table_growing(0, 10, None).unwrap());
        assert!(limiter.table_growing(10, 11, None).is_err());
        assert_eq!(limiter.refused, Some(LimitHit::Table { limit: 10 }));
    }

    /// A core module instantiated in a store under `limits`: what the limiter refused.
    fn instantiate(wat: &str, limits: &Limits) -> Option<LimitHit> {
        let engine = wasmtime::Engine::default();
        let module = wasmtime::Module::new(&engine, wat).unwrap();
        let mut store = wasmtime::Store::new(&engine, Limiter::new(limits));
        store.limiter(|limiter| limiter);
        let result = wasmtime::Instance::new(&mut store, &module, &[]);
        assert_eq!(result.is_err(), store.data().refused.is_some());
        store.data().refused
    }

    #[test]
    fn the_table_cap_covers_all_tables_of_the_store() {
        let limits = Limits::default();
        let half = limits.table_elements / 2 + 1;
        let one = format!("(module (table {half} funcref))");
        assert_eq!(instantiate(&one, &limits), None);
        let two = format!("(module (table {half} funcref) (table {half} funcref))");
        assert_eq!(
            instantiate(&two, &limits),
            Some(LimitHit::Table {
                limit: limits.table_elements
            })
        );
    }

    #[test]
    fn tables_count_against_the_memory_cap() {
        // One page of linear memory and 100 000 elements (800 KB): over a 512 KiB cap.
        let limits = Limits {
            memory_bytes: 512 << 10,
            ..Limits::default()
        };
        let wat = "(module (memory 1) (table 100000 funcref))";
        assert_eq!(
            instantiate(wat, &limits),
            Some(LimitHit::Memory { limit: 512 << 10 })
        );
        let small = "(module (memory 1) (table 1000 funcref))";
        assert_eq!(instantiate(small, &limits), None);
    }
}
