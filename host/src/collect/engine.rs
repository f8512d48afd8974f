//! The scheduler: one task that owns every collection group's state and every module's
//! worker, and never waits on a module.
//!
//! It wakes for the next group event, hands each module its slice of the group as a job
//! (a module's thread runs it), and goes back to waiting; answers come back as reports,
//! are applied to the group's send policy (`schedule.rs`), written to the store and
//! handed to the sender. A module that is still busy with an earlier job of the same
//! group, backing off after a trap, or not started, simply has no values this cycle.
//! Every job has a bound (its calls' deadlines plus a margin); a module past it is
//! reported as unresponsive and skipped until it answers.
//!
//! Control messages (reload, metadata requests, status) come through [`EngineHandle`];
//! cancellation of the token passed to [`spawn`] starts the shutdown: the collections in
//! flight are finished and sent, then every module's cleanup runs under its limits, each
//! waited for with a bound.
//!
//! The engine ties the parts together: the module slots are the [`Supervisor`]'s, what
//! each group collects comes from the pure planner (`plan.rs`), and values leave through
//! [`Outputs`]. What it keeps itself is what joins them: which module owns which metric
//! name (claiming, and eviction by a stronger module), each metric's metadata and when it
//! last went out, the tenants' CPU minutes, and the order of events.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::{Arc, PoisonError};
use std::time::{Duration, SystemTime};

use tokio::sync::mpsc::{UnboundedReceiver, UnboundedSender, unbounded_channel};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use tokio::time::{Instant, sleep_until};
use tokio_util::sync::CancellationToken;
use tracing::{debug, error, info, warn};

use super::host_module::{Accounts, HOST_MODULE, HOST_PREFIX, HostFacts, HostModule};
use super::outputs::{NotSent, Outputs};
use super::ownership::{Claimant, MetricOwners, Policy, Rank};
use super::plan::{PlannedGroup, accounting_group, plan};
use super::published::Published;
use super::ratelimit::{LOG_WINDOW, ModuleLogLimiter};
use super::schedule::GroupState;
use super::select::{Catalog, GroupSelection, GroupSpec, MetricKey};
use super::supervisor::{CallBounds, ModuleSpec, ModuleState, SlotState, Supervisor};
use super::timer::WakeTimer;
use super::worker::{Account, Collected, Job, ModuleId, Report, ReportKind, Slice};
use crate::metric::{MetricDescriptor, MetricValue};
use crate::store::HostRef;
use crate::wire::safe;

/// The most reports applied in a row before the plan is rebuilt and timers run: a burst
/// of modules starting is planned once, not once per module.
const REPORT_BATCH: usize = 256;
/// While modules are still starting, the groups are planned again at most this often:
/// planning costs the groups times the metrics they scan, so a thousand modules
/// starting one by one must not each pay for a whole plan.
const REPLAN_WHILE_STARTING: Duration = Duration::from_millis(300);
/// The period of a tenant's CPU budget (`cpu_ms_per_minute`).
const CPU_WINDOW: Duration = Duration::from_secs(60);

/// Everything the engine runs, as of one configuration.
pub struct EngineConfig {
    /// This host as the store and the XML show it.
    pub host: HostIdentity,
    pub facts: HostFacts,
    pub groups: Vec<GroupSpec>,
    /// In configuration order; names are unique.
    pub modules: Vec<ModuleSpec>,
    /// gmond's `send_metadata_interval`: `None` sends metadata only when a metric is new
    /// (or a peer asks).
    pub send_metadata_interval: Option<Duration>,
    /// Which modules and groups are tenants', and the tenants' limits.
    pub policy: Policy,
}

/// This host's name and address in the store.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostIdentity {
    pub name: String,
    pub ip: String,
}

/// A snapshot of the engine.
#[derive(Debug, Clone, PartialEq)]
pub struct Status {
    pub modules: BTreeMap<String, ModuleState>,
    /// What each group collects, in configuration order (the built-in group last).
    pub groups: Vec<GroupSelection>,
    /// Each module's calls, errors, traps and usage so far.
    pub accounts: BTreeMap<String, Account>,
}

/// What the shutdown achieved.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ShutdownReport {
    pub cleaned_up: Vec<String>,
    /// Modules whose cleanup did not answer within its bound.
    pub timed_out: Vec<String>,
}

enum Control {
    Reload(Box<EngineConfig>, HashSet<String>),
    ResendMetadata(Option<String>),
    Status(oneshot::Sender<Status>),
}

/// Talks to a running engine.
#[derive(Clone)]
pub struct EngineHandle {
    control: UnboundedSender<Control>,
}

impl EngineHandle {
    /// Applies a new configuration: starts added modules, stops removed ones, restarts
    /// those whose fingerprint changed, and rebuilds the groups.
    pub fn reload(&self, config: EngineConfig) {
        self.reload_keeping(config, HashSet::new());
    }

    /// [`reload`](Self::reload), except that the modules named in `kept` (whose new file
    /// failed to load) stay on their running instance, if they have one.
    pub(crate) fn reload_keeping(&self, config: EngineConfig, kept: HashSet<String>) {
        let _ = self.control.send(Control::Reload(Box::new(config), kept));
    }

    /// A peer asked for metadata (gmond's id 136): `Some(name)` for one metric, `None`
    /// for all. It goes out with the metric's next value, which comes soon.
    pub(crate) fn resend_metadata(&self, metric: Option<String>) {
        let _ = self.control.send(Control::ResendMetadata(metric));
    }

    /// The engine's state, or `None` once it stopped.
    pub async fn status(&self) -> Option<Status> {
        let (reply, answer) = oneshot::channel();
        self.control.send(Control::Status(reply)).ok()?;
        answer.await.ok()
    }
}

/// Starts the engine on the current tokio runtime. It runs until `shutdown` is
/// cancelled, then cleans up and returns what the cleanup achieved.
pub fn spawn(
    config: EngineConfig,
    outputs: Outputs,
    shutdown: CancellationToken,
) -> (EngineHandle, JoinHandle<ShutdownReport>) {
    spawn_with_timer(config, outputs, shutdown, WakeTimer::precise())
}

/// [`spawn`], sleeping on `timer`.
pub(crate) fn spawn_with_timer(
    config: EngineConfig,
    outputs: Outputs,
    shutdown: CancellationToken,
    timer: WakeTimer,
) -> (EngineHandle, JoinHandle<ShutdownReport>) {
    let (control, control_rx) = unbounded_channel();
    let (reports, reports_rx) = unbounded_channel();
    let mut engine = Engine::new(config.host.clone(), outputs, reports);
    engine.apply(config, &HashSet::new(), Instant::now());
    let task = tokio::spawn(engine.run(control_rx, reports_rx, shutdown, timer));
    (EngineHandle { control }, task)
}

struct Engine {
    host: HostIdentity,
    outputs: Outputs,
    modules: Supervisor,
    groups: Vec<Group>,
    owners: MetricOwners,
    /// Every running module's metrics; groups point into it by index.
    published: Published,
    accounts: Accounts,
    send_metadata_interval: Option<Duration>,
    log_limit: ModuleLogLimiter,
    /// The metric names each module (by name) declared when it last started: those it
    /// no longer declares are taken out of the store.
    declared: HashMap<String, Vec<String>>,
    policy: Policy,
    /// Each tenant's CPU minute: when it began and the time its modules spent in it.
    cpu: Vec<(Instant, Duration)>,
    /// Since when what runs changed without the groups being planned again.
    replan_due: Option<Instant>,
}

struct Group {
    spec: GroupSpec,
    /// The built-in accounting group only takes what configured groups leave.
    builtin: bool,
    state: GroupState,
    selection: GroupSelection,
    /// Each module's share of the group, with the slots the values go to.
    slices: BTreeMap<ModuleId, Slice>,
    /// For each slot of the group, its metric's row in `published`.
    rows: Vec<Option<usize>>,
    /// The tenant that declared the group: it selects only that tenant's metrics.
    tenant: Option<usize>,
}

impl Engine {
    fn new(host: HostIdentity, outputs: Outputs, reports: UnboundedSender<Report>) -> Engine {
        let mut owners = MetricOwners::new();
        owners.reserve_prefix(HOST_PREFIX, HOST_MODULE);
        Engine {
            host,
            outputs,
            modules: Supervisor::new(reports),
            groups: Vec::new(),
            owners,
            published: Published::default(),
            accounts: Accounts::default(),
            send_metadata_interval: None,
            log_limit: ModuleLogLimiter::new(LOG_WINDOW),
            declared: HashMap::new(),
            policy: Policy::default(),
            cpu: Vec::new(),
            replan_due: None,
        }
    }

    async fn run(
        mut self,
        mut control: UnboundedReceiver<Control>,
        mut reports: UnboundedReceiver<Report>,
        shutdown: CancellationToken,
        mut timer: WakeTimer,
    ) -> ShutdownReport {
        loop {
            let wake = self.next_wake();
            tokio::select! {
                biased;
                () = shutdown.cancelled() => break,
                Some(report) = reports.recv() => {
                    let now = Instant::now();
                    self.on_report(report, now);
                    for _ in 1..REPORT_BATCH {
                        let Ok(report) = reports.try_recv() else { break };
                        self.on_report(report, now);
                    }
                }
                Some(message) = control.recv() => self.on_control(message, Instant::now()),
                () = timer.until(wake) => self.on_timer(Instant::now()),
            }
            self.replan_when_due(Instant::now());
        }
        self.shut_down(&mut reports).await
    }

    fn next_wake(&self) -> Instant {
        let groups = self
            .groups
            .iter()
            .filter(|g| !g.state.is_empty())
            .map(|g| g.state.next_event());
        let replan = self.replan_due.map(|since| since + REPLAN_WHILE_STARTING);
        let modules = self.modules.next_event(Instant::now());
        // Nothing scheduled: wake now and then anyway; it costs nothing.
        groups
            .chain(replan)
            .chain(modules)
            .min()
            .unwrap_or_else(|| Instant::now() + Duration::from_secs(3600))
    }

    /// Plans the groups again if what runs changed: at once when no module is starting,
    /// else once the changes waited [`REPLAN_WHILE_STARTING`].
    fn replan_when_due(&mut self, now: Instant) {
        let Some(since) = self.replan_due else {
            return;
        };
        if now >= since + REPLAN_WHILE_STARTING || !self.modules.any_starting() {
            self.replan(now);
        }
    }

    fn on_control(&mut self, message: Control, now: Instant) {
        match message {
            Control::Reload(config, kept) => {
                info!("applying the new configuration");
                self.apply(*config, &kept, now);
            }
            Control::ResendMetadata(metric) => self.resend_metadata(metric.as_deref(), now),
            Control::Status(reply) => {
                let _ = reply.send(self.status(now));
            }
        }
    }

    fn on_timer(&mut self, now: Instant) {
        self.publish(now);
        self.modules.retry_due(now);
        for index in 0..self.groups.len() {
            if self.groups[index].state.is_empty() || self.groups[index].state.next_event() > now {
                continue;
            }
            let tick = self.groups[index].state.tick(now);
            if !tick.send.is_empty() {
                self.send(index, &tick.send, now);
            }
            if tick.collect {
                let slices: Vec<(ModuleId, Slice)> = self.groups[index]
                    .slices
                    .iter()
                    .map(|(id, slice)| (*id, slice.clone()))
                    .collect();
                for (id, slice) in slices {
                    self.collect_slice(index, id, slice, now);
                }
            }
        }
    }

    /// Asks module `id` for its slice of group `index`, or records at once that it has
    /// no values this time.
    fn collect_slice(&mut self, index: usize, id: ModuleId, slice: Slice, now: Instant) {
        let epoch = self.groups[index].state.epoch();
        let Some(slot) = self.modules.get_mut(id) else {
            return;
        };
        let over_budget = slot.tenant.and_then(|t| {
            let (since, used) = *self.cpu.get(t)?;
            let budget = self.policy.tenants[t].cpu_per_minute;
            (now.saturating_duration_since(since) < CPU_WINDOW && used > budget).then(|| {
                format!(
                    "tenant {} spent {used:?} of its CPU budget of {budget:?} per minute",
                    self.policy.tenants[t].name
                )
            })
        });
        let skipped = if let Some(reason) = over_budget {
            Some(reason)
        } else if slot.busy.contains(&index) {
            Some(slot.unanswered_reason(now))
        } else if !slot.backoff.ready(now) {
            None
        } else {
            let job = Job::Collect {
                group: index,
                epoch,
                metrics: slice.clone(),
            };
            match slot.collect(job, slice.len(), now) {
                Ok(()) => {
                    slot.busy.insert(index);
                    return;
                }
                Err(refused) => Some(format!("its worker refused the job ({refused:?})")),
            }
        };
        if let Some(reason) = skipped {
            let name = slot.name.clone();
            self.log_limited(&name, "", now, |suppressed| {
                warn!(module = %name, "module {name}: collection skipped: {reason}{suppressed}")
            });
        }
        let values = slice.iter().map(|(slot_index, _)| (*slot_index, None));
        let send = self.groups[index].state.collected(now, values);
        self.send(index, &send, now);
    }

    fn on_report(&mut self, report: Report, now: Instant) {
        let Some(slot) = self.modules.answered(report.module) else {
            // A module removed by a reload finishing its cleanup.
            if matches!(report.kind, ReportKind::CleanedUp) {
                debug!("an old module instance finished its cleanup");
            }
            return;
        };
        let before = self
            .accounts
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(slot.name.clone(), report.account);
        if let Some(tenant) = slot.tenant {
            let spent = report
                .account
                .busy
                .saturating_sub(before.map_or(Duration::ZERO, |b| b.busy));
            if let Some((since, used)) = self.cpu.get_mut(tenant) {
                if now.saturating_duration_since(*since) >= CPU_WINDOW {
                    (*since, *used) = (now, Duration::ZERO);
                }
                *used += spent;
            }
        }
        match report.kind {
            ReportKind::Started(result) => {
                let started = result.is_ok();
                let first_settled = self.modules.started(report.module, result, now);
                if started || first_settled {
                    self.publish(now);
                }
            }
            ReportKind::Collected(collected) => self.on_collected(report.module, collected, now),
            ReportKind::CleanedUp => {}
        }
    }

    /// Publishes the started modules whose every possibly stronger module has settled,
    /// strongest first, so that nothing a module loses to a stronger one is ever sent.
    fn publish(&mut self, now: Instant) {
        let ready = self.modules.ready_to_claim(now);
        if ready.is_empty() {
            return;
        }
        for id in ready {
            self.claim(id, now);
        }
        self.replan_due.get_or_insert(now);
    }

    /// Records what module `module` declares now; the metrics it declared before and no
    /// longer does, and that no other module took, leave the store (and the XML).
    fn declared_now(&mut self, module: &str, names: Vec<String>) {
        let before = self.declared.insert(module.to_string(), names);
        let now = &self.declared[module];
        let gone: Vec<&str> = before
            .iter()
            .flatten()
            .filter(|name| !now.contains(name) && self.owners.owner(name).is_none())
            .map(String::as_str)
            .collect();
        if !gone.is_empty() {
            let removed = self.outputs.forget(&self.host.name, gone);
            info!(module = %module, "module {module}: {removed} metrics it no longer declares removed");
        }
    }

    /// Gives a started module the names it may have; the others are refused alone, and
    /// names taken from a weaker module leave it.
    fn claim(&mut self, id: ModuleId, now: Instant) {
        let slot = self.modules.get_mut(id).expect("caller checked");
        let SlotState::Claiming(descriptors) =
            std::mem::replace(&mut slot.state, SlotState::Starting)
        else {
            return;
        };
        let claimant = Claimant {
            module: &slot.name,
            rank: slot.rank,
            tenant: slot.tenant.map(|t| &self.policy.tenants[t]),
        };
        let claimed = self
            .owners
            .claim(claimant, descriptors.iter().map(|d| d.name.as_str()));
        let name = slot.name.clone();
        let refused: Vec<String> = claimed.refused.iter().map(ToString::to_string).collect();
        for message in &refused {
            error!(module = %name, "{message}; that metric is not published");
        }
        let granted: Vec<MetricDescriptor> = descriptors
            .into_iter()
            .zip(&claimed.granted)
            .filter_map(|(descriptor, granted)| granted.then_some(descriptor))
            .collect();
        // What it publishes now: its metrics it no longer publishes leave the store.
        let names = granted.iter().map(|d| d.name.clone()).collect();
        if granted.is_empty() && !refused.is_empty() {
            error!(module = %name, "module {name}: none of its metrics may be published; the module is not loaded");
            slot.state = SlotState::Rejected(refused);
            slot.cleanup(now);
        } else {
            info!(module = %name, "module {name} started with {} metrics", granted.len());
            slot.backoff.succeeded();
            slot.state = SlotState::Running(granted);
        }
        self.declared_now(&name, names);
        for (loser, metric) in claimed.taken_from {
            self.drop_metric(&loser, &metric, &name);
        }
    }

    /// A stronger module took `metric` from `loser`, which stops publishing it.
    fn drop_metric(&mut self, loser: &str, metric: &str, winner: &str) {
        let Some(slot) = self.modules.named_mut(loser) else {
            return;
        };
        if let SlotState::Running(descriptors) = &mut slot.state {
            descriptors.retain(|d| d.name != metric);
            error!(
                module = %loser,
                "module {loser}: metric {metric:?} is module {winner}'s, which has authority over it; module {loser} no longer publishes it"
            );
        }
    }

    fn on_collected(&mut self, id: ModuleId, collected: Collected, now: Instant) {
        let slot = self.modules.get_mut(id).expect("caller checked");
        slot.busy.remove(&collected.group);
        let name = slot.name.clone();
        if collected.trapped {
            let delay = slot.backoff.failed(now);
            warn!(module = %name, "module {name} trapped; its calls resume in {delay:?}");
        } else if collected.failures.is_empty() {
            slot.backoff.succeeded();
        }
        for (metric, failure) in &collected.failures {
            self.log_limited(&name, metric, now, |suppressed| {
                warn!(module = %name, metric = %metric, kind = %failure.kind, "{} [{}]{suppressed}", failure.message, failure.kind)
            });
        }
        let Some(group) = self.groups.get_mut(collected.group) else {
            return;
        };
        let same_layout = collected.epoch == group.state.epoch();
        let module: Arc<str> = Arc::from(name.as_str());
        let values: Vec<(usize, Option<MetricValue>)> = collected
            .slice
            .iter()
            .zip(collected.values)
            .filter_map(|((slot, metric), mut value)| {
                if let Some(value) = &mut value {
                    safe::value(value);
                }
                if same_layout {
                    return Some((*slot, value));
                }
                // The group was re-planned meanwhile: find the metric's new slot.
                let key = MetricKey {
                    module: module.clone(),
                    metric: metric.clone(),
                };
                Some((group.state.index_of(&key)?, value))
            })
            .collect();
        let send = group.state.collected(now, values);
        self.send(collected.group, &send, now);
    }

    /// Writes the values of `slots` of group `index` to the store and hands them to the
    /// sender, with metadata where it is due.
    fn send(&mut self, index: usize, slots: &[usize], now: Instant) {
        if slots.is_empty() {
            return;
        }
        let group = &self.groups[index];
        let mut outgoing = Vec::with_capacity(slots.len());
        let mut rows = Vec::with_capacity(slots.len());
        for &slot in slots {
            let row = group.rows.get(slot).copied().flatten();
            let (Some(value), Some(row)) = (group.state.value(slot), row) else {
                continue;
            };
            let interval = self.send_metadata_interval;
            if let Some(metric) = self.published.outgoing(row, value, interval, now) {
                outgoing.push(metric);
                rows.push(row);
            }
        }
        let places: Vec<_> = rows
            .iter()
            .filter_map(|&row| self.published.store_place(row))
            .collect();
        let host = HostRef {
            name: &self.host.name,
            ip: &self.host.ip,
        };
        let published = self
            .outputs
            .publish(host, outgoing, &places, SystemTime::now());
        if let Err(NotSent { values }) = published {
            self.log_limited("", "sender", now, |suppressed| {
                warn!("the sender is not keeping up: {values} values dropped{suppressed}")
            });
        }
    }

    fn resend_metadata(&mut self, metric: Option<&str>, now: Instant) {
        self.published.resend(metric);
        for group in &mut self.groups {
            let wanted = (0..group.state.len())
                .any(|i| metric.is_none_or(|name| *group.state.key(i).metric == *name));
            if wanted {
                group.state.send_soon(now);
            }
        }
    }

    /// Applies a configuration: the first one, or a reload. Modules in `kept` stay on
    /// their running instance.
    fn apply(&mut self, config: EngineConfig, kept: &HashSet<String>, now: Instant) {
        self.send_metadata_interval = config.send_metadata_interval;
        self.cpu = vec![(now, Duration::ZERO); config.policy.tenants.len()];
        self.policy = config.policy;
        let names: Vec<String> = config
            .modules
            .iter()
            .map(|spec| spec.name.clone())
            .collect();
        let host = ModuleSpec {
            name: HOST_MODULE.into(),
            fingerprint: format!(
                "{:?}|{}|{:?}",
                config.facts,
                names.join("\n"),
                tenant_modules(&self.policy)
            ),
            bounds: CallBounds {
                init: Duration::ZERO,
                handler: Duration::ZERO,
                cleanup: Duration::ZERO,
            },
            driver: Box::new(
                HostModule::new(config.facts, names, self.accounts.clone())
                    .with_network(self.outputs.network.clone())
                    .with_tenants(tenant_modules(&self.policy)),
            ),
            inline: true,
        };
        let wanted: Vec<ModuleSpec> = std::iter::once(host).chain(config.modules).collect();
        self.reconcile_modules(wanted, kept, now);
        let tenants = self.policy.groups.clone();
        self.groups = config
            .groups
            .into_iter()
            .enumerate()
            .map(|(index, spec)| (spec, false, tenants.get(index).copied().flatten()))
            .chain(std::iter::once((accounting_group(), true, None)))
            .map(|(spec, builtin, tenant)| Group {
                tenant,
                state: GroupState::new(spec.collect, spec.time_threshold, now),
                spec,
                builtin,
                selection: GroupSelection {
                    metrics: Vec::new(),
                    unmatched_entries: Vec::new(),
                    excluded: Vec::new(),
                },
                slices: BTreeMap::new(),
                rows: Vec::new(),
            })
            .collect();
        self.replan(now);
    }

    /// Keeps unchanged modules (and `kept` ones that run), stops removed and changed ones,
    /// starts new ones. The metrics of a module no longer configured leave the store.
    fn reconcile_modules(&mut self, wanted: Vec<ModuleSpec>, kept: &HashSet<String>, now: Instant) {
        let wanted_names: HashSet<String> = wanted.iter().map(|spec| spec.name.clone()).collect();
        let policy = &self.policy;
        let authority = |position: usize, name: &str| {
            let tenant = policy.modules.get(name).copied();
            (Rank::of(position, tenant), tenant)
        };
        for retired in self.modules.reconcile(wanted, kept, authority, now) {
            self.owners.release(&retired);
        }
        let removed: Vec<String> = self
            .declared
            .keys()
            .filter(|name| !wanted_names.contains(*name))
            .cloned()
            .collect();
        for name in removed {
            self.declared_now(&name, Vec::new());
            self.declared.remove(&name);
        }
        // The engine's own lines ("") keep their budget.
        self.log_limit
            .retain(|module| module.is_empty() || wanted_names.contains(module));
        // A module removed by the reload may have been what others waited for.
        self.publish(now);
    }

    /// Recomputes what each group collects from the running modules' metrics.
    fn replan(&mut self, now: Instant) {
        self.replan_due = None;
        let catalog: Vec<(ModuleId, MetricKey, &MetricDescriptor)> = self
            .modules
            .in_order()
            .filter_map(|(id, slot)| match &slot.state {
                SlotState::Running(descriptors) => Some((id, slot, descriptors)),
                _ => None,
            })
            .flat_map(|(id, slot, descriptors)| {
                descriptors
                    .iter()
                    .map(move |d| (id, MetricKey::new(&slot.name, &d.name), d))
            })
            .collect();
        let keys = Catalog::new(catalog.iter().map(|(id, key, _)| {
            (
                key.clone(),
                self.modules.get(*id).and_then(|slot| slot.tenant),
            )
        }));
        let planned: Vec<PlannedGroup<'_>> = self
            .groups
            .iter()
            .map(|group| PlannedGroup {
                spec: &group.spec,
                tenant: group.tenant,
                builtin: group.builtin,
            })
            .collect();
        let selections = plan(&keys, &planned);

        let mut titles: HashMap<&MetricKey, &str> = HashMap::new();
        for selected in selections.iter().flat_map(|s| &s.metrics) {
            titles.entry(&selected.key).or_insert(&selected.title);
        }
        self.published.rebuild(
            catalog
                .iter()
                .map(|(_, key, descriptor)| (key, *descriptor, titles.get(key).copied())),
        );
        let module_of: HashMap<&MetricKey, ModuleId> =
            catalog.iter().map(|(id, key, _)| (key, *id)).collect();

        let mut fresh_work = Vec::new();
        for (index, (group, selection)) in self.groups.iter_mut().zip(selections).enumerate() {
            let added = group.state.set_metrics(
                selection
                    .metrics
                    .iter()
                    .map(|m| (m.key.clone(), m.value_threshold)),
            );
            let mut slices: BTreeMap<ModuleId, Vec<(usize, Arc<str>)>> = BTreeMap::new();
            for (slot, selected) in selection.metrics.iter().enumerate() {
                if let Some(id) = module_of.get(&selected.key) {
                    slices
                        .entry(*id)
                        .or_default()
                        .push((slot, selected.key.metric.clone()));
                }
            }
            group.slices = slices
                .into_iter()
                .map(|(id, slice)| (id, Slice::from(slice)))
                .collect();
            group.rows = selection
                .metrics
                .iter()
                .map(|m| self.published.row_of(&m.key))
                .collect();
            group.selection = selection;
            // A group that has collected before collects its new metrics at once; one
            // that has not is about to collect everything anyway.
            if !added.is_empty() && group.state.next_event() > now {
                let added: HashSet<usize> = added.into_iter().collect();
                for (id, slice) in &group.slices {
                    let fresh: Vec<(usize, Arc<str>)> = slice
                        .iter()
                        .filter(|(slot, _)| added.contains(slot))
                        .cloned()
                        .collect();
                    if !fresh.is_empty() {
                        fresh_work.push((index, *id, Slice::from(fresh)));
                    }
                }
            }
        }
        for (index, id, slice) in fresh_work {
            self.collect_slice(index, id, slice, now);
        }
    }

    fn status(&self, now: Instant) -> Status {
        let accounts = self
            .accounts
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone();
        Status {
            modules: self.modules.states(now),
            groups: self.groups.iter().map(|g| g.selection.clone()).collect(),
            accounts,
        }
    }

    /// Logs through the rate limits of (module, metric) and of the module; `log` gets
    /// the suffix that says how many lines were suppressed before this one.
    fn log_limited(&mut self, module: &str, metric: &str, now: Instant, log: impl FnOnce(String)) {
        if let Some(suppressed) = self.log_limit.allow(module, metric, now) {
            log(suppressed.to_string());
        }
    }

    /// Cleans every module up, each within its bound: the cleanup is queued at once on
    /// every module's thread, behind the collection it may have in flight, whose values
    /// are still sent. So a module stuck in a call delays only its own cleanup, until
    /// its call's deadline (then it is abandoned); every other module's runs meanwhile.
    async fn shut_down(mut self, reports: &mut UnboundedReceiver<Report>) -> ShutdownReport {
        info!("shutting down: finishing the collections in flight and cleaning up the modules");
        let mut waiting = self.modules.clean_up_all(Instant::now());
        let mut report = ShutdownReport::default();
        while let Some(deadline) = waiting.values().map(|(_, by)| *by).min() {
            tokio::select! {
                Some(message) = reports.recv() => match message.kind {
                    ReportKind::CleanedUp => {
                        if let Some((name, _)) = waiting.remove(&message.module) {
                            report.cleaned_up.push(name);
                        }
                    }
                    // The last values of a collection in flight still go out.
                    ReportKind::Collected(_) => self.on_report(message, Instant::now()),
                    ReportKind::Started(_) => {}
                },
                () = sleep_until(deadline) => {
                    let late: Vec<ModuleId> =
                        waiting.iter().filter(|(_, (_, by))| *by <= deadline).map(|(id, _)| *id).collect();
                    for id in late {
                        let (name, _) = waiting.remove(&id).expect("listed above");
                        warn!(module = %name, "module {name}: cleanup did not finish in time; abandoned");
                        report.timed_out.push(name);
                    }
                }
            }
        }
        report.cleaned_up.sort();
        report.timed_out.sort();
        report
    }
}

/// Each tenant's name and its modules, for its accounting.
fn tenant_modules(policy: &Policy) -> Vec<(String, Vec<String>)> {
    policy
        .tenants
        .iter()
        .enumerate()
        .map(|(index, tenant)| {
            let mut modules: Vec<String> = policy
                .modules
                .iter()
                .filter(|(_, t)| **t == index)
                .map(|(module, _)| module.clone())
                .collect();
            modules.sort();
            (tenant.name.to_string(), modules)
        })
        .collect()
}
