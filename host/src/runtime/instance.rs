//! One running module: its store, its descriptors, its stats, and the lifecycle
//! around each callback (arm fuel and deadline, call, classify, account).
//!
//! After a trap the store is dropped (wasmtime poisons it); the next `handle`
//! instantiates afresh from the `InstancePre` and runs `init` again first. A
//! python module whose source has no translation kept yet is translated first, in
//! a short-lived instance of its own.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use wasmtime::Store;

use super::bindings::MetricModule;
use super::blocking::BlockedPastDeadline;
use super::epoch::Running;
use super::error::{
    Callback, ErrorKind, MAX_TRAP_LINE_BYTES, MAX_TRAP_MESSAGE_BYTES, ModuleError, log_safe,
};
use super::limits::MAX_ERROR_MESSAGE_BYTES;
use super::state::{HostState, ModuleLog};
use super::stats::{CallStats, ModuleStats};
use super::{LoadedModule, validate};
use crate::metric::{MetricDescriptor, MetricValue};

/// A started module. Its calls block the calling thread (at most for the deadline
/// of the callback), so async callers run them on blocking workers.
pub struct ModuleInstance {
    module: LoadedModule,
    params: Vec<(String, String)>,
    /// `None` after a trap, until the next call re-instantiates.
    live: Option<Live>,
    /// The log of the last dropped store, handed to the next one.
    kept_log: Option<ModuleLog>,
    descriptors: Vec<MetricDescriptor>,
    by_name: HashMap<String, usize>,
    stats: ModuleStats,
}

struct Live {
    store: Store<HostState>,
    bindings: MetricModule,
}

/// The budget of one callback.
#[derive(Clone, Copy)]
struct Budget {
    callback: Callback,
    fuel: u64,
    deadline: Duration,
}

impl ModuleInstance {
    pub(crate) fn start(
        module: LoadedModule,
        params: Vec<(String, String)>,
    ) -> Result<ModuleInstance, ModuleError> {
        let mut instance = ModuleInstance {
            module,
            params,
            live: None,
            kept_log: None,
            descriptors: Vec::new(),
            by_name: HashMap::new(),
            stats: ModuleStats::default(),
        };
        instance.instantiate_and_init(None)?;
        Ok(instance)
    }

    pub fn name(&self) -> &str {
        self.module.name()
    }

    /// The metrics `init` declared, checked against the contract and the caps.
    pub fn descriptors(&self) -> &[MetricDescriptor] {
        &self.descriptors
    }

    pub fn stats(&self) -> &ModuleStats {
        &self.stats
    }

    /// What the sandbox refused the module so far, each once: opens outside its
    /// grants (with the grant that would allow them), sockets, processes, threads.
    /// Reported by the bundled Python interpreter; a module may have hidden them.
    pub fn refused(&self) -> &[String] {
        match (&self.live, &self.kept_log) {
            (Some(live), _) => live.store.data().log.refused(),
            (None, Some(log)) => log.refused(),
            (None, None) => &[],
        }
    }

    /// Asks the module for the value of `metric`, re-instantiating it first if a
    /// trap dropped its store. The value is checked against the metric's descriptor.
    pub fn handle(&mut self, metric: &str) -> Result<MetricValue, ModuleError> {
        let mut index = self.descriptor_index(metric)?;
        if self.live.is_none() {
            self.stats.restarts += 1;
            self.instantiate_and_init(Some(metric))?;
            // The fresh `init` may have declared other metrics.
            index = self.descriptor_index(metric)?;
        }
        let budget = self.budget(Callback::Handler);
        let Some(live) = self.live.as_mut() else {
            unreachable!("instantiate_and_init leaves a live store on success")
        };
        let (started, running) = arm(&mut live.store, &self.module, budget);
        let result = live.bindings.call_handler(&mut live.store, metric);
        drop(running);
        account(&mut self.stats, &mut live.store, budget, started);
        self.stats.calls += 1;
        let value = match result {
            Ok(Ok(value)) => MetricValue::from(value),
            Ok(Err(message)) => {
                return Err(self.reported(Callback::Handler, Some(metric), &message));
            }
            Err(trap) => {
                let kind = classify(&live.store, budget, &trap);
                if let Some(live) = self.live.take() {
                    self.keep_log(live.store);
                }
                return Err(self.error(Callback::Handler, Some(metric), kind));
            }
        };
        match validate::check_value(&self.descriptors[index], &value) {
            Ok(()) => Ok(value),
            Err(invalid) => Err(self.error(
                Callback::Handler,
                Some(metric),
                ErrorKind::InvalidOutput(invalid),
            )),
        }
    }

    /// Where `metric` is among the descriptors; refused before any call if absent.
    fn descriptor_index(&mut self, metric: &str) -> Result<usize, ModuleError> {
        match self.by_name.get(metric) {
            Some(&index) => Ok(index),
            None => Err(self.error(Callback::Handler, Some(metric), ErrorKind::UnknownMetric)),
        }
    }

    /// Runs the module's `cleanup` and drops it. A module whose store a trap
    /// dropped has nothing to clean up.
    pub fn cleanup(mut self) -> Result<(), ModuleError> {
        let budget = self.budget(Callback::Cleanup);
        let Some(mut live) = self.live.take() else {
            return Ok(());
        };
        let (started, running) = arm(&mut live.store, &self.module, budget);
        let result = live.bindings.call_cleanup(&mut live.store);
        drop(running);
        account(&mut self.stats, &mut live.store, budget, started);
        result.map_err(|trap| {
            let kind = classify(&live.store, budget, &trap);
            self.error(Callback::Cleanup, None, kind)
        })
    }

    /// Creates a store, instantiates, and runs `init`, all under the init budget
    /// (after a python module's translation, under a budget of its own).
    fn instantiate_and_init(&mut self, metric: Option<&str>) -> Result<(), ModuleError> {
        self.translate_apart(metric)?;
        let budget = self.budget(Callback::Init);
        let mut store = self.new_store(metric)?;
        let loaded = &self.module.inner;
        self.stats.inits += 1;
        let (started, running) = arm(&mut store, &self.module, budget);
        let result = loaded.pre.instantiate(&mut store).and_then(|bindings| {
            let init = bindings.call_init(&mut store, &self.params)?;
            Ok((bindings, init))
        });
        drop(running);
        account(&mut self.stats, &mut store, budget, started);
        let (bindings, descriptors) = match result {
            Ok((bindings, Ok(descriptors))) => (bindings, descriptors),
            Ok((_, Err(message))) => {
                self.keep_log(store);
                return Err(self.reported(Callback::Init, metric, &message));
            }
            Err(trap) => {
                let kind = classify(&store, budget, &trap);
                self.keep_log(store);
                return Err(self.error(Callback::Init, metric, kind));
            }
        };
        let descriptors: Vec<MetricDescriptor> = descriptors.into_iter().map(Into::into).collect();
        if let Err(invalid) = validate::check_descriptors(&descriptors) {
            self.keep_log(store);
            return Err(self.error(Callback::Init, metric, ErrorKind::InvalidOutput(invalid)));
        }
        self.by_name = descriptors
            .iter()
            .enumerate()
            .map(|(i, d)| (d.name.clone(), i))
            .collect();
        self.descriptors = descriptors;
        self.live = Some(Live { store, bindings });
        Ok(())
    }

    /// A store for one instance of the module, under its limits and grants.
    fn new_store(&mut self, metric: Option<&str>) -> Result<Store<HostState>, ModuleError> {
        let loaded = &self.module.inner;
        let mut state = match HostState::new(
            loaded.name.clone(),
            &loaded.sandbox.limits,
            &loaded.sandbox.grants,
        ) {
            Ok(state) => state,
            Err(error) => return Err(self.error(Callback::Init, metric, ErrorKind::Load(error))),
        };
        state.python = loaded.python.clone();
        // A restart must not refill the log's rate limit.
        if let Some(log) = self.kept_log.take() {
            state.log = log;
        }
        let mut store = Store::new(&loaded.shared.engine, state);
        store.limiter(|state| &mut state.limiter);
        store.epoch_deadline_trap();
        Ok(store)
    }

    /// Translates a python module's source in an instance of its own, under the
    /// init budget, when no translation of it is kept yet; the instance is dropped
    /// and the one that runs the module finds the translation in `module-source`.
    /// Translating (fissix's parser and fixers) grows an instance's linear memory by
    /// tens of MB, which WebAssembly never gives back: done in the module's own
    /// instance, a cold start held that memory until the daemon stopped. An
    /// interpreter without the `translate` export translates in `init`.
    fn translate_apart(&mut self, metric: Option<&str>) -> Result<(), ModuleError> {
        let loaded = self.module.inner.clone();
        if loaded
            .python
            .as_ref()
            .is_none_or(|python| python.translated())
        {
            return Ok(());
        }
        let instance_pre = loaded.pre.instance_pre();
        let Some(export) = instance_pre.component().get_export_index(None, TRANSLATE) else {
            return Ok(());
        };
        let budget = self.budget(Callback::Init);
        let mut store = self.new_store(metric)?;
        let (started, running) = arm(&mut store, &self.module, budget);
        let result = instance_pre.instantiate(&mut store).and_then(|instance| {
            let translate =
                instance.get_typed_func::<(), (Result<(), String>,)>(&mut store, &export)?;
            Ok(translate.call(&mut store, ())?.0)
        });
        drop(running);
        account(&mut self.stats, &mut store, budget, started);
        let outcome = match result {
            Ok(Ok(())) => Ok(()),
            Ok(Err(message)) => Err(self.reported(Callback::Init, metric, &message)),
            Err(trap) => {
                let kind = classify(&store, budget, &trap);
                Err(self.error(Callback::Init, metric, kind))
            }
        };
        self.keep_log(store);
        outcome
    }

    /// Drops a store but keeps its log, whose rate limit the next store inherits.
    fn keep_log(&mut self, store: Store<HostState>) {
        self.kept_log = Some(store.into_data().log);
    }

    /// An error of this module, counted in its stats.
    fn error(&mut self, callback: Callback, metric: Option<&str>, kind: ErrorKind) -> ModuleError {
        self.stats.errors.count(&kind);
        ModuleError {
            module: self.name().to_string(),
            callback,
            metric: metric.map(str::to_string),
            kind,
        }
    }

    /// An `err(message)` the module returned through WIT, cut to a sane length.
    fn reported(&mut self, callback: Callback, metric: Option<&str>, message: &str) -> ModuleError {
        let message = log_safe(message, MAX_ERROR_MESSAGE_BYTES, MAX_ERROR_MESSAGE_BYTES);
        self.error(callback, metric, ErrorKind::ModuleReported(message))
    }

    fn budget(&self, callback: Callback) -> Budget {
        let limits = &self.module.sandbox().limits;
        let (fuel, deadline) = match callback {
            Callback::Init | Callback::Load => (limits.fuel_init, limits.deadline_init),
            Callback::Handler => (limits.fuel_handler, limits.deadline_handler),
            Callback::Cleanup => (limits.fuel_cleanup, limits.deadline_cleanup),
        };
        Budget {
            callback,
            fuel,
            deadline,
        }
    }
}

/// The bundled Python interpreter's export that translates its module's source
/// (world `gmond-python` in `wit/metric.wit`).
const TRANSLATE: &str = "translate";

/// Resets the fuel, the epoch deadline and the host-wait deadline before a
/// callback; returns when the callback starts, and the guard that keeps the epoch
/// ticking until it is dropped (when the callback returns).
fn arm(store: &mut Store<HostState>, module: &LoadedModule, budget: Budget) -> (Instant, Running) {
    store
        .set_fuel(budget.fuel)
        .expect("the engine consumes fuel");
    let ticker = &module.inner.shared.ticker;
    let running = ticker.running();
    let started = Instant::now();
    store.set_epoch_deadline(ticker.ticks_for(budget.deadline, started));
    store.data_mut().deadline = started
        .checked_add(budget.deadline)
        .unwrap_or_else(|| started + FAR_FUTURE);
    (started, running)
}

/// A deadline for callbacks whose deadline does not fit in an `Instant`.
const FAR_FUTURE: Duration = Duration::from_secs(365 * 24 * 3600);

/// Adds the cost of the callback that just returned to `stats`.
fn account(
    stats: &mut ModuleStats,
    store: &mut Store<HostState>,
    budget: Budget,
    started: Instant,
) {
    let wall_time = started.elapsed();
    let fuel = budget.fuel - store.get_fuel().unwrap_or(0).min(budget.fuel);
    let state = store.data_mut();
    let logs = state.log.take_counts();
    stats.fuel_consumed += fuel;
    stats.wall_time += wall_time;
    stats.peak_memory_bytes = stats.peak_memory_bytes.max(state.limiter.peak_memory_bytes);
    stats.last_call = Some(CallStats {
        callback: budget.callback,
        wall_time,
        fuel,
    });
    stats.log_lines += logs.written;
    stats.log_lines_dropped += logs.dropped;
    stats.log_lines_truncated += logs.truncated;
}

/// Tells apart the limits a failed call may have hit, then other traps.
fn classify(store: &Store<HostState>, budget: Budget, error: &wasmtime::Error) -> ErrorKind {
    if let Some(hit) = store.data().limiter.refused {
        return ErrorKind::MemoryLimit(hit);
    }
    if error.is::<BlockedPastDeadline>() {
        return ErrorKind::Deadline {
            deadline: budget.deadline,
        };
    }
    match error.downcast_ref::<wasmtime::Trap>() {
        Some(wasmtime::Trap::OutOfFuel) => ErrorKind::OutOfFuel {
            budget: budget.fuel,
        },
        Some(wasmtime::Trap::Interrupt) => ErrorKind::Deadline {
            deadline: budget.deadline,
        },
        Some(&code) => trap(store, Some(code), code.to_string()),
        // A host-raised trap carries the wasm backtrace, with names from the module.
        None => trap(
            store,
            None,
            log_safe(
                &format!("{error:#}"),
                MAX_TRAP_LINE_BYTES,
                MAX_TRAP_MESSAGE_BYTES,
            ),
        ),
    }
}

/// Any other trap, with what the module last wrote to stderr (a panic message).
fn trap(store: &Store<HostState>, code: Option<wasmtime::Trap>, message: String) -> ErrorKind {
    let message = match store.data().stderr.take_summary() {
        Some(stderr) => format!("{message}; stderr: {stderr}"),
        None => message,
    };
    ErrorKind::Trap { code, message }
}
