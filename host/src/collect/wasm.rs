//! Drives a WebAssembly module through the runtime: load (compile or fetch from the
//! cache) once, then instantiate and `init`, `handler` calls and `cleanup`, all under the
//! module's sandbox. Runs on the module's worker thread.

use tracing::warn;

use super::driver::{Failure, FailureKind, ModuleDriver, Usage};
use crate::metric::{MetricDescriptor, MetricValue};
use crate::runtime::{
    Code, ErrorKind, LoadedModule, ModuleError, ModuleInstance, Runtime, Sandbox,
};

pub struct WasmDriver {
    runtime: Runtime,
    name: String,
    code: Code,
    sandbox: Sandbox,
    params: Vec<(String, String)>,
    loaded: Option<LoadedModule>,
    instance: Option<ModuleInstance>,
    /// Usage of instances already cleaned up.
    retired: Usage,
}

impl WasmDriver {
    pub fn new(
        runtime: Runtime,
        name: &str,
        code: Code,
        sandbox: Sandbox,
        params: Vec<(String, String)>,
    ) -> WasmDriver {
        WasmDriver {
            runtime,
            name: name.to_string(),
            code,
            sandbox,
            params,
            loaded: None,
            instance: None,
            retired: Usage::default(),
        }
    }

    /// The sandbox the module runs under.
    pub fn sandbox(&self) -> &Sandbox {
        &self.sandbox
    }

    /// Reads, compiles and type-checks the module now, on the caller's thread (a reload
    /// does this before it stops the running instance); `start` then uses the result.
    pub(crate) fn preload(&mut self) -> Result<(), String> {
        self.loaded().map(drop).map_err(|failure| failure.message)
    }

    fn loaded(&mut self) -> Result<LoadedModule, Failure> {
        if let Some(loaded) = &self.loaded {
            return Ok(loaded.clone());
        }
        let loaded = self
            .runtime
            .load_code(&self.name, &self.code, self.sandbox.clone())
            .map_err(failure)?;
        self.loaded = Some(loaded.clone());
        Ok(loaded)
    }

    fn instance_usage(&self) -> Usage {
        self.instance.as_ref().map_or(Usage::default(), |instance| {
            let stats = instance.stats();
            Usage {
                fuel: stats.fuel_consumed,
                peak_memory_bytes: stats.peak_memory_bytes as u64,
            }
        })
    }

    fn retire_instance(&mut self) -> Option<ModuleInstance> {
        let usage = self.instance_usage();
        self.retired.fuel += usage.fuel;
        self.retired.peak_memory_bytes =
            self.retired.peak_memory_bytes.max(usage.peak_memory_bytes);
        self.instance.take()
    }
}

impl ModuleDriver for WasmDriver {
    fn start(&mut self) -> Result<Vec<MetricDescriptor>, Failure> {
        let loaded = self.loaded()?;
        // Starts only follow a failed start, so there is no live instance to clean up;
        // the usage of any earlier one is kept.
        self.retire_instance();
        let instance = loaded.start(self.params.clone()).map_err(failure)?;
        let descriptors = instance.descriptors().to_vec();
        self.instance = Some(instance);
        Ok(descriptors)
    }

    fn handle(&mut self, metric: &str) -> Result<MetricValue, Failure> {
        let instance = self.instance.as_mut().ok_or_else(|| {
            Failure::error(format!(
                "module {}: handler of metric {metric}: not started",
                self.name
            ))
        })?;
        instance.handle(metric).map_err(failure)
    }

    fn handle_each(
        &mut self,
        metrics: &[&str],
        answer: &mut dyn FnMut(Result<MetricValue, Failure>),
    ) {
        match self.instance.as_mut() {
            Some(instance) => {
                instance.handle_each(metrics, &mut |result| answer(result.map_err(failure)));
            }
            // Not started: each metric says so.
            None => {
                for metric in metrics {
                    answer(self.handle(metric));
                }
            }
        }
    }

    fn cleanup(&mut self) {
        if let Some(instance) = self.retire_instance()
            && let Err(err) = instance.cleanup()
        {
            warn!(module = %self.name, "{err}");
        }
    }

    fn usage(&self) -> Usage {
        let current = self.instance_usage();
        Usage {
            fuel: self.retired.fuel + current.fuel,
            peak_memory_bytes: self
                .retired
                .peak_memory_bytes
                .max(current.peak_memory_bytes),
        }
    }
}

/// The runtime's typed error as the engine counts it: its kind survives.
fn failure(err: ModuleError) -> Failure {
    let kind = match err.kind() {
        ErrorKind::OutOfFuel { .. } => FailureKind::Fuel,
        ErrorKind::Deadline { .. } => FailureKind::Deadline,
        ErrorKind::MemoryLimit(_) => FailureKind::Memory,
        ErrorKind::Trap { .. } => FailureKind::Crash,
        ErrorKind::ModuleReported(_) => FailureKind::ModuleError,
        ErrorKind::InvalidOutput(_) | ErrorKind::UnknownMetric => FailureKind::InvalidOutput,
        ErrorKind::Load(_) => FailureKind::Load,
    };
    Failure::new(kind, err.to_string())
}
