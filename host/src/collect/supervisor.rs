//! The module slots: every configured module's worker and how it is doing — starting,
//! started and waiting to claim its names, running, failed (retried with backoff) or
//! refused — with the jobs it has in flight and when each should have been answered.
//!
//! The supervisor starts modules, retries the failed ones when their backoff allows,
//! reconciles the slots with a new configuration (keeping unchanged modules on their
//! instance), retires removed ones behind their cleanup, and queues every cleanup at
//! shutdown. It decides nothing about metrics: which names a module may publish, and
//! what the groups collect, is the engine's (`engine.rs`).

use std::collections::{BTreeMap, HashMap, HashSet};
use std::time::Duration;

use tokio::sync::mpsc::UnboundedSender;
use tokio::time::Instant;
use tracing::{error, info, warn};

use super::backoff::Backoff;
use super::driver::{Failure, ModuleDriver};
use super::ownership::{Level, Rank};
use super::pool::Pool;
use super::worker::{Job, ModuleId, Refused, Report, Worker};
use crate::metric::MetricDescriptor;

/// Added to every job's own bound: thread hand-off, scheduling, a loaded machine.
pub(super) const JOB_MARGIN: Duration = Duration::from_secs(1);
/// How long an operator's module waits for the first start of an earlier one (whose
/// names it might take) before it publishes anyway: one slow compile or `init` must not
/// hold healthy modules' first values back. Should the slow module then declare one of
/// their names, it takes the name over. Tenants' modules wait for the operator's
/// without this bound: nothing a tenant loses to the operator is ever sent.
pub(super) const SETTLE_WAIT: Duration = Duration::from_secs(3);
/// The longest the shutdown waits for a module's cleanup (behind a call still in flight):
/// past it, the module is abandoned, so a module stuck in a call with a long deadline
/// cannot make the daemon overrun its own shutdown budget.
pub const SHUTDOWN_WAIT: Duration = Duration::from_secs(8);

/// One module to run.
pub struct ModuleSpec {
    pub name: String,
    /// Whatever must restart the module on reload when it changes: the `.wasm`'s content
    /// hash and the module's settings.
    pub fingerprint: String,
    /// The longest each kind of call may take (the runtime's deadlines).
    pub bounds: CallBounds,
    pub driver: Box<dyn ModuleDriver>,
    /// Runs the calls in the scheduler itself instead of on a thread of their own: only
    /// for drivers that never block (the host's own module, test doubles).
    pub inline: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CallBounds {
    pub init: Duration,
    pub handler: Duration,
    pub cleanup: Duration,
}

/// How a module is doing, for `status` and `wasmond check`.
#[derive(Debug, Clone, PartialEq)]
pub enum ModuleState {
    Starting,
    Running {
        metrics: Vec<MetricDescriptor>,
    },
    /// Its init failed; it is retried with backoff.
    Failed {
        error: String,
        retry_in: Duration,
    },
    /// Refused for good (until a reload): its metric names clash or are invalid.
    Rejected {
        errors: Vec<String>,
    },
}

pub(super) struct ModuleSlot {
    pub(super) name: String,
    fingerprint: String,
    bounds: CallBounds,
    worker: Worker,
    pub(super) state: SlotState,
    pub(super) backoff: Backoff,
    /// Groups with a collection job not answered yet.
    pub(super) busy: HashSet<usize>,
    /// When the latest job in flight should have been answered.
    answer_by: Option<Instant>,
    jobs_in_flight: usize,
    /// Its authority over metric names.
    pub(super) rank: Rank,
    /// Index of its tenant in the policy; `None`: the operator's or the host's.
    pub(super) tenant: Option<usize>,
    /// Its first start has finished, well or not: weaker modules stop waiting for it.
    settled: bool,
    /// When it was added: the operator's weaker modules wait for it [`SETTLE_WAIT`].
    added_at: Instant,
}

#[derive(Debug, Clone)]
pub(super) enum SlotState {
    Starting,
    /// Started; its metrics wait until every module that could be stronger settled.
    Claiming(Vec<MetricDescriptor>),
    Running(Vec<MetricDescriptor>),
    Failed {
        error: String,
    },
    Rejected(Vec<String>),
}

/// The slots, in configuration order, and the pool their calls run on.
pub(super) struct Supervisor {
    reports: UnboundedSender<Report>,
    /// The threads every module's calls run on.
    pool: Pool,
    next_id: u64,
    modules: BTreeMap<ModuleId, ModuleSlot>,
    /// Module ids in configuration order, the host module first.
    order: Vec<ModuleId>,
}

impl Supervisor {
    pub(super) fn new(reports: UnboundedSender<Report>) -> Supervisor {
        Supervisor {
            reports,
            pool: Pool::new(),
            next_id: 0,
            modules: BTreeMap::new(),
            order: Vec::new(),
        }
    }

    pub(super) fn get(&self, id: ModuleId) -> Option<&ModuleSlot> {
        self.modules.get(&id)
    }

    pub(super) fn get_mut(&mut self, id: ModuleId) -> Option<&mut ModuleSlot> {
        self.modules.get_mut(&id)
    }

    pub(super) fn named_mut(&mut self, name: &str) -> Option<&mut ModuleSlot> {
        self.modules.values_mut().find(|slot| slot.name == name)
    }

    /// Every slot, in configuration order.
    pub(super) fn in_order(&self) -> impl Iterator<Item = (ModuleId, &ModuleSlot)> {
        self.order
            .iter()
            .filter_map(|id| Some((*id, self.modules.get(id)?)))
    }

    pub(super) fn any_starting(&self) -> bool {
        self.modules
            .values()
            .any(|slot| matches!(slot.state, SlotState::Starting))
    }

    /// When the supervisor next has something to do: a failed module's retry, or (while
    /// a started module waits to claim its names) a slow module's [`SETTLE_WAIT`] ending.
    pub(super) fn next_event(&self, now: Instant) -> Option<Instant> {
        let retries = self.modules.values().filter_map(|slot| match slot.state {
            SlotState::Failed { .. } => slot.backoff.until(),
            _ => None,
        });
        let claiming = self
            .modules
            .values()
            .any(|slot| matches!(slot.state, SlotState::Claiming(_)));
        let settle = self
            .modules
            .values()
            .filter(|slot| claiming && !slot.settled)
            .map(|slot| slot.added_at + SETTLE_WAIT)
            .filter(|at| *at > now);
        retries.chain(settle).min()
    }

    /// Starts again the failed modules whose backoff is over.
    pub(super) fn retry_due(&mut self, now: Instant) {
        let due: Vec<ModuleId> = self
            .modules
            .iter()
            .filter(|(_, slot)| {
                matches!(slot.state, SlotState::Failed { .. }) && slot.backoff.ready(now)
            })
            .map(|(id, _)| *id)
            .collect();
        for id in due {
            self.start(id, now);
        }
    }

    /// Records a report's answer; `None` if the module is gone (retired by a reload,
    /// finishing its cleanup).
    pub(super) fn answered(&mut self, id: ModuleId) -> Option<&mut ModuleSlot> {
        let slot = self.modules.get_mut(&id)?;
        slot.jobs_in_flight = slot.jobs_in_flight.saturating_sub(1);
        if slot.jobs_in_flight == 0 {
            slot.answer_by = None;
        }
        Some(slot)
    }

    /// Module `id`'s start finished. Returns whether that settles it for the first time
    /// (so modules waiting for it may publish).
    pub(super) fn started(
        &mut self,
        id: ModuleId,
        result: Result<Vec<MetricDescriptor>, Failure>,
        now: Instant,
    ) -> bool {
        let Some(slot) = self.modules.get_mut(&id) else {
            return false;
        };
        match result {
            Ok(descriptors) => slot.state = SlotState::Claiming(descriptors),
            Err(failure) => {
                let delay = slot.backoff.failed(now);
                error!(module = %slot.name, kind = %failure.kind, "{} [{}]; retrying in {delay:?}", failure.message, failure.kind);
                slot.state = SlotState::Failed {
                    error: format!("{} [{}]", failure.message, failure.kind),
                };
            }
        }
        !std::mem::replace(&mut slot.settled, true)
    }

    /// The started modules whose every possibly stronger module has settled, strongest
    /// first: they may claim their names now, and nothing a module loses to a stronger
    /// one is ever sent.
    pub(super) fn ready_to_claim(&self, now: Instant) -> Vec<ModuleId> {
        let unsettled = || self.modules.values().filter(|slot| !slot.settled);
        let strongest_unsettled = unsettled().map(|slot| slot.rank).min();
        let strongest_still_due = unsettled()
            .filter(|slot| now < slot.added_at + SETTLE_WAIT)
            .map(|slot| slot.rank)
            .min();
        let mut ready: Vec<(Rank, ModuleId)> = self
            .modules
            .iter()
            .filter(|(_, slot)| matches!(slot.state, SlotState::Claiming(_)))
            .filter(|(_, slot)| {
                let waited_for = match slot.rank.level() {
                    Level::Tenant => strongest_unsettled,
                    _ => strongest_still_due,
                };
                waited_for.is_none_or(|other| !slot.rank.waits_for(&other))
            })
            .map(|(id, slot)| (slot.rank, *id))
            .collect();
        ready.sort();
        ready.into_iter().map(|(_, id)| id).collect()
    }

    /// Makes the slots those of `wanted` (in configuration order): unchanged modules (and
    /// `kept` ones that run) stay on their instance, removed and changed ones are retired,
    /// new ones start. `authority` gives each module's rank and tenant from its position
    /// and name. Returns the names of the retired modules.
    pub(super) fn reconcile(
        &mut self,
        wanted: Vec<ModuleSpec>,
        kept: &HashSet<String>,
        authority: impl Fn(usize, &str) -> (Rank, Option<usize>),
        now: Instant,
    ) -> Vec<String> {
        let wanted_fingerprints: HashMap<&str, &str> = wanted
            .iter()
            .map(|spec| (spec.name.as_str(), spec.fingerprint.as_str()))
            .collect();
        let keep: HashMap<String, ModuleId> = self
            .modules
            .iter()
            .filter(
                |(_, slot)| match wanted_fingerprints.get(slot.name.as_str()) {
                    Some(fingerprint) if *fingerprint == slot.fingerprint => {
                        !matches!(slot.state, SlotState::Rejected(_))
                    }
                    Some(_) => {
                        kept.contains(&slot.name)
                            && matches!(slot.state, SlotState::Running(_) | SlotState::Claiming(_))
                    }
                    None => false,
                },
            )
            .map(|(id, slot)| (slot.name.clone(), *id))
            .collect();
        let kept_ids: HashSet<ModuleId> = keep.values().copied().collect();
        let retire: Vec<ModuleId> = self
            .modules
            .keys()
            .filter(|id| !kept_ids.contains(id))
            .copied()
            .collect();
        let retired = retire
            .into_iter()
            .filter_map(|id| self.retire(id, now))
            .collect();
        self.order.clear();
        for (position, spec) in wanted.into_iter().enumerate() {
            let (rank, tenant) = authority(position, &spec.name);
            let id = match keep.get(&spec.name) {
                Some(id) => *id,
                None => self.add(spec, rank, tenant, now),
            };
            if let Some(slot) = self.modules.get_mut(&id) {
                (slot.rank, slot.tenant) = (rank, tenant);
            }
            self.order.push(id);
        }
        retired
    }

    fn add(
        &mut self,
        spec: ModuleSpec,
        rank: Rank,
        tenant: Option<usize>,
        now: Instant,
    ) -> ModuleId {
        self.next_id += 1;
        let id = ModuleId(self.next_id);
        let worker = if spec.inline {
            Worker::inline(id, spec.driver, self.reports.clone())
        } else {
            Worker::pooled(&self.pool, id, spec.driver, self.reports.clone())
        };
        self.modules.insert(
            id,
            ModuleSlot {
                name: spec.name,
                fingerprint: spec.fingerprint,
                bounds: spec.bounds,
                worker,
                state: SlotState::Starting,
                backoff: Backoff::new(),
                busy: HashSet::new(),
                answer_by: None,
                jobs_in_flight: 0,
                rank,
                tenant,
                settled: false,
                added_at: now,
            },
        );
        self.start(id, now);
        id
    }

    fn start(&mut self, id: ModuleId, now: Instant) {
        let Some(slot) = self.modules.get_mut(&id) else {
            return;
        };
        slot.state = SlotState::Starting;
        let bound = slot.bounds.init + JOB_MARGIN;
        if let Err(refused) = slot.submit(Job::Start, bound, now) {
            let delay = slot.backoff.failed(now);
            slot.state = SlotState::Failed {
                error: format!("its worker refused to start it ({refused:?})"),
            };
            warn!(module = %slot.name, "module {}: cannot start now; retrying in {delay:?}", slot.name);
        }
    }

    /// Stops a module: its cleanup is queued behind its current job, and the worker
    /// thread ends after it; the last report finds no slot.
    fn retire(&mut self, id: ModuleId, now: Instant) -> Option<String> {
        let mut slot = self.modules.remove(&id)?;
        info!(module = %slot.name, "stopping module {}", slot.name);
        slot.cleanup(now);
        Some(slot.name)
    }

    /// Queues every module's cleanup, behind the job it may have in flight, for the
    /// shutdown. Returns, for each, its name and when its cleanup should be done by (at
    /// most [`SHUTDOWN_WAIT`] from now).
    pub(super) fn clean_up_all(&mut self, now: Instant) -> HashMap<ModuleId, (String, Instant)> {
        let mut waiting = HashMap::new();
        for (id, slot) in &mut self.modules {
            if matches!(slot.state, SlotState::Rejected(_)) {
                // Cleaned up when it was refused.
                continue;
            }
            let in_flight = slot.answer_by;
            if let Some(bound) = slot.cleanup(now) {
                // Behind a job still in flight, the cleanup waits for that one too.
                let by = in_flight.map_or(now + bound, |by| by.max(now) + bound);
                waiting.insert(*id, (slot.name.clone(), by.min(now + SHUTDOWN_WAIT)));
            }
        }
        waiting
    }

    /// Each module's state as `status` shows it, in configuration order.
    pub(super) fn states(&self, now: Instant) -> BTreeMap<String, ModuleState> {
        self.in_order()
            .map(|(_, slot)| (slot.name.clone(), slot.public_state(now)))
            .collect()
    }
}

impl ModuleSlot {
    /// Submits a job expected to be answered within `bound`.
    pub(super) fn submit(
        &mut self,
        job: Job,
        bound: Duration,
        now: Instant,
    ) -> Result<(), Refused> {
        self.worker.submit(job)?;
        self.jobs_in_flight += 1;
        let by = now + bound;
        self.answer_by = Some(self.answer_by.map_or(by, |old| old.max(by)));
        Ok(())
    }

    /// Submits a collection of `metrics` (one handler call each).
    pub(super) fn collect(
        &mut self,
        job: Job,
        metrics: usize,
        now: Instant,
    ) -> Result<(), Refused> {
        let bound = self.bounds.handler * u32::try_from(metrics).unwrap_or(u32::MAX) + JOB_MARGIN;
        self.submit(job, bound, now)
    }

    /// Queues the module's cleanup; returns its bound, or `None` if the worker is gone.
    pub(super) fn cleanup(&mut self, now: Instant) -> Option<Duration> {
        let bound = self.bounds.cleanup + JOB_MARGIN;
        self.submit(Job::Cleanup, bound, now).ok().map(|()| bound)
    }

    /// Why a collection of a group this module is still busy with was skipped.
    pub(super) fn unanswered_reason(&self, now: Instant) -> String {
        match self.answer_by {
            Some(by) if by < now => format!(
                "it is unresponsive: its previous collection is {:?} past its bound",
                now.saturating_duration_since(by)
            ),
            _ => "its previous collection of this group is still running".to_string(),
        }
    }

    fn public_state(&self, now: Instant) -> ModuleState {
        match &self.state {
            SlotState::Starting | SlotState::Claiming(_) => ModuleState::Starting,
            SlotState::Running(metrics) => ModuleState::Running {
                metrics: metrics.clone(),
            },
            SlotState::Failed { error } => ModuleState::Failed {
                error: error.clone(),
                retry_in: self
                    .backoff
                    .until()
                    .map_or(Duration::ZERO, |until| until.saturating_duration_since(now)),
            },
            SlotState::Rejected(errors) => ModuleState::Rejected {
                errors: errors.clone(),
            },
        }
    }
}
