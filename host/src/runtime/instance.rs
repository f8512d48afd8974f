//! One running module: its store, its descriptors, its stats, and the lifecycle
//! around each callback (arm fuel and deadline, call, classify, account).
//!
//! After a trap the store is dropped (wasmtime poisons it); the next `handle`
//! instantiates afresh from the `InstancePre` and runs `init` again first. A
//! python module whose source has no translation kept yet is translated first, in
//! a short-lived instance of its own.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use wasmtime::component::TypedFunc;
use wasmtime::{AsContextMut, Store, StoreContextMut};

use super::bindings::MetricModule;
use super::blocking::BlockedPastDeadline;
use super::each::{Answer, Answers, HANDLE_EACH, Span, spans};
use super::epoch::{Running, check_deadline};
use super::error::{
    Callback, ErrorKind, InvalidOutput, MAX_TRAP_LINE_BYTES, MAX_TRAP_MESSAGE_BYTES, ModuleError,
    log_safe,
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
    descriptors: Arc<[MetricDescriptor]>,
    by_name: HashMap<String, usize>,
    /// The names `handle_each` was last asked for, and their positions: a group asks
    /// the same names at every collection, and comparing them costs a fraction of
    /// hashing each (a fifth of the module thread's time at 2000 metrics/s).
    last_asked: (Vec<Box<str>>, Vec<u32>),
    stats: ModuleStats,
}

struct Live {
    store: Store<HostState>,
    bindings: MetricModule,
    /// The module's `handle-each`, when it exports one (world `metric-module-each`).
    handle_each: Option<HandleEach>,
}

type HandleEach = TypedFunc<(Vec<Span>,), ()>;

/// The budget of one callback.
#[derive(Clone, Copy)]
pub(super) struct Budget {
    callback: Callback,
    pub(super) fuel: u64,
    pub(super) deadline: Duration,
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
            descriptors: Arc::new([]),
            by_name: HashMap::new(),
            last_asked: Default::default(),
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
        let (started, running) = arm(&mut live.store, budget);
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

    /// Asks the module for the values of `metrics`, in order, each checked against its
    /// descriptor and each under the budget of one `handler` call, and hands each
    /// outcome to `answer`. After a trap it stops: the metrics after it get no call.
    /// A module that exports `handle-each` answers them all in one call; otherwise,
    /// and to restart after a trap, each metric gets a `handler` call.
    pub fn handle_each(
        &mut self,
        metrics: &[&str],
        answer: &mut dyn FnMut(Result<MetricValue, ModuleError>),
    ) {
        let asked = match &self.live {
            Some(Live {
                handle_each: Some(_),
                ..
            }) => self.positions_of(metrics),
            _ => None,
        };
        match asked {
            Some(asked) => self.call_handle_each(metrics, asked, answer),
            None => self.handle_one_by_one(metrics, answer),
        }
    }

    /// The positions of `metrics` in what `init` returned, if each is one of them.
    fn positions_of(&mut self, metrics: &[&str]) -> Option<Vec<u32>> {
        let (names, positions) = &self.last_asked;
        if names.len() == metrics.len() && names.iter().zip(metrics).all(|(a, b)| **a == **b) {
            return Some(positions.clone());
        }
        let positions = metrics
            .iter()
            .map(|metric| self.by_name.get(*metric).map(|&index| index as u32))
            .collect::<Option<Vec<u32>>>()?;
        let names = metrics.iter().map(|&metric| Box::from(metric)).collect();
        self.last_asked = (names, positions.clone());
        Some(positions)
    }

    /// A `handler` call per metric, until a trap.
    fn handle_one_by_one(
        &mut self,
        metrics: &[&str],
        answer: &mut dyn FnMut(Result<MetricValue, ModuleError>),
    ) {
        for metric in metrics {
            let result = self.handle(metric);
            let trapped = matches!(&result, Err(error) if error.is_trap());
            answer(result);
            if trapped {
                return;
            }
        }
    }

    /// One `handle-each` call for `metrics`, at positions `asked`.
    fn call_handle_each(
        &mut self,
        metrics: &[&str],
        asked: Vec<u32>,
        answer: &mut dyn FnMut(Result<MetricValue, ModuleError>),
    ) {
        let budget = self.budget(Callback::Handler);
        let Some(live) = self.live.as_mut() else {
            unreachable!("handle_each asks only a live instance")
        };
        let Some(handle_each) = live.handle_each else {
            unreachable!("handle_each asks only a module that exports it")
        };
        let spans = spans(&asked);
        let answers = Answers::new(asked, self.descriptors.clone(), budget);
        live.store.data_mut().answers = Some(answers);
        let (started, running) = arm(&mut live.store, budget);
        let result = handle_each.call(&mut live.store, (spans,));
        drop(running);
        let answers = live.store.data_mut().answers.take();
        let Some(Answers { got, fuel_used, .. }) = answers else {
            unreachable!("the store keeps the answers until the call returns")
        };
        let answered = got.len();
        account(&mut self.stats, &mut live.store, budget, started);
        self.stats.fuel_consumed += fuel_used;
        self.stats.calls += answered as u64 + u64::from(answered < metrics.len());
        for (metric, got) in metrics.iter().zip(got) {
            answer(self.answered(metric, got));
        }
        let unanswered = &metrics[answered..];
        match result {
            Ok(()) => {
                for metric in unanswered {
                    let kind = ErrorKind::InvalidOutput(InvalidOutput::NotAnswered);
                    answer(Err(self.error(Callback::Handler, Some(metric), kind)));
                }
            }
            Err(trap) => {
                let Some(live) = self.live.take() else {
                    unreachable!("the call ran in the live store")
                };
                let kind = classify(&live.store, budget, &trap);
                self.keep_log(live.store);
                answer(Err(self.error(
                    Callback::Handler,
                    unanswered.first().copied(),
                    kind,
                )));
            }
        }
    }

    /// What the module answered for `metric` in `handle-each`, as `handle` returns it.
    fn answered(&mut self, metric: &str, got: Answer) -> Result<MetricValue, ModuleError> {
        match got {
            Answer::Value(value) => Ok(value),
            Answer::Reported(message) => {
                Err(self.reported(Callback::Handler, Some(metric), &message))
            }
            Answer::Invalid(invalid) => Err(self.error(
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
        let (started, running) = arm(&mut live.store, budget);
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
        let (started, running) = arm(&mut store, budget);
        let result = instantiate(&mut store, loaded).and_then(|(bindings, handle_each)| {
            let init = bindings.call_init(&mut store, &self.params)?;
            Ok((bindings, handle_each, init))
        });
        drop(running);
        account(&mut self.stats, &mut store, budget, started);
        let (bindings, handle_each, descriptors) = match result {
            Ok((bindings, handle_each, Ok(descriptors))) => (bindings, handle_each, descriptors),
            Ok((_, _, Err(message))) => {
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
        self.last_asked = Default::default();
        self.descriptors = descriptors.into();
        self.live = Some(Live {
            store,
            bindings,
            handle_each,
        });
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
        state.watch = Some(loaded.shared.ticker.watch());
        let mut store = Store::new(&loaded.shared.engine, state);
        store.limiter(|state| &mut state.limiter);
        store.epoch_deadline_callback(check_deadline);
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
        let (started, running) = arm(&mut store, budget);
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

/// Instantiates the module, with its `handle-each` if it exports one. An export
/// of that name with another type is the module's error, as a wrong world is.
fn instantiate(
    store: &mut Store<HostState>,
    loaded: &super::Loaded,
) -> wasmtime::Result<(MetricModule, Option<HandleEach>)> {
    let instance = loaded.pre.instance_pre().instantiate(&mut *store)?;
    let bindings = MetricModule::new(&mut *store, &instance)?;
    let handle_each =
        match instance.get_export_index(&mut *store, None, HANDLE_EACH) {
            Some(export) => Some(instance.get_typed_func(&mut *store, export).map_err(
                |error| error.context("the export `handle-each` of world metric-module-each"),
            )?),
            None => None,
        };
    Ok((bindings, handle_each))
}

/// Resets the fuel, the epoch deadline and the host-wait deadline before a
/// callback; returns when the callback starts, and the guard that shows the ticker
/// its deadline until it is dropped (when the callback returns).
fn arm(store: &mut Store<HostState>, budget: Budget) -> (Instant, Running) {
    let started = Instant::now();
    let Some(watch) = store.data().watch.as_ref() else {
        unreachable!("every callback's store is watched")
    };
    let running = watch.begin(budget.deadline);
    set_budget(store.as_context_mut(), budget, started);
    (started, running)
}

/// Gives the callback in flight `budget` from `now`: its fuel, and its deadline, for
/// host waits and for the epoch ticker (whose next increment makes the store check it).
pub(super) fn set_budget(mut store: StoreContextMut<'_, HostState>, budget: Budget, now: Instant) {
    store
        .set_fuel(budget.fuel)
        .expect("the engine consumes fuel");
    store.set_epoch_deadline(1);
    let state = store.data_mut();
    state.deadline = now
        .checked_add(budget.deadline)
        .unwrap_or_else(|| now + FAR_FUTURE);
    if let Some(watch) = &state.watch {
        watch.show(budget.deadline, now);
    }
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
