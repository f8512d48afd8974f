//! Where a module's calls run. Each WebAssembly module gets a lane of the shared
//! [`Pool`]: its jobs run in order on a pool thread, and the pool adds a thread when a
//! call holds one, so a module that loops until its deadline holds up nobody else while
//! 1000 modules need only a few threads. The host's own metrics run inline in the
//! scheduler, since they only read counters.
//!
//! The scheduler hands a worker jobs and never waits on it: answers come back as
//! [`Report`]s on a channel, and the scheduler bounds how long it expects each one.

use std::sync::Arc;
use std::time::{Duration, Instant as WallInstant};

use tokio::sync::mpsc::UnboundedSender;

use super::driver::{Failure, FailureKind, ModuleDriver, Usage};
use super::pool::{Lane, Pool, Runs};
use crate::metric::{MetricDescriptor, MetricValue};

/// Identifies one start of one module: reports from an older start are stale.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub(crate) struct ModuleId(pub u64);

/// The metrics one collection asks of one module: (slot in the group, metric name).
pub(crate) type Slice = Arc<[(usize, Arc<str>)]>;

#[derive(Debug)]
pub(crate) enum Job {
    Start,
    Collect {
        group: usize,
        epoch: u64,
        metrics: Slice,
    },
    Cleanup,
}

/// A worker's answer to a job.
#[derive(Debug)]
pub(crate) struct Report {
    pub module: ModuleId,
    pub account: Account,
    pub kind: ReportKind,
}

#[derive(Debug)]
pub(crate) enum ReportKind {
    Started(Result<Vec<MetricDescriptor>, Failure>),
    Collected(Collected),
    CleanedUp,
}

#[derive(Debug)]
pub(crate) struct Collected {
    pub group: usize,
    pub epoch: u64,
    /// The job's slice, echoed so that values can be matched by name after a re-plan.
    pub slice: Slice,
    /// One per metric of the slice, in order: its value, or `None` when the call failed
    /// or was skipped.
    pub values: Vec<Option<MetricValue>>,
    /// The failures, for the log.
    pub failures: Vec<(Arc<str>, Failure)>,
    /// A call trapped; the metrics after it were not called.
    pub trapped: bool,
}

/// Per-module accounting, published as the host's `wasmond_*` metrics.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Account {
    pub calls: u64,
    pub errors: u64,
    pub traps: u64,
    /// Wall time spent in the module's calls (init, handler, cleanup).
    pub busy: Duration,
    pub usage: Usage,
    /// Failed calls by kind, indexed by [`FailureKind::index`] (`traps` and `errors`
    /// are their sums).
    pub failures: [u64; FailureKind::ALL.len()],
}

impl Account {
    /// Failed calls of one kind.
    pub fn failed(&self, kind: FailureKind) -> u64 {
        self.failures[kind.index()]
    }

    /// Two accounts together (a tenant's): counts add up, memory is the larger peak.
    pub fn plus(self, other: &Account) -> Account {
        Account {
            calls: self.calls + other.calls,
            errors: self.errors + other.errors,
            traps: self.traps + other.traps,
            busy: self.busy + other.busy,
            failures: std::array::from_fn(|i| self.failures[i] + other.failures[i]),
            usage: Usage {
                fuel: self.usage.fuel + other.usage.fuel,
                peak_memory_bytes: self
                    .usage
                    .peak_memory_bytes
                    .max(other.usage.peak_memory_bytes),
            },
        }
    }
}

/// Runs jobs for one module and reports each outcome.
struct Runner {
    id: ModuleId,
    driver: Box<dyn ModuleDriver>,
    account: Account,
    reports: UnboundedSender<Report>,
}

impl Runs for Runner {
    type Job = Job;

    /// Runs one job; returns false once the module is cleaned up and must not run again.
    fn run(&mut self, job: Job) -> bool {
        // Timed per job, not per call: the runtime already reads the clock around each
        // call, and reading it twice more is a visible share of a cheap handler.
        let started = WallInstant::now();
        let (kind, more) = match job {
            Job::Start => (ReportKind::Started(self.start()), true),
            Job::Collect {
                group,
                epoch,
                metrics,
            } => (
                ReportKind::Collected(self.collect(group, epoch, metrics)),
                true,
            ),
            Job::Cleanup => {
                self.account.calls += 1;
                let _ = guarded(
                    || "cleanup",
                    &mut *self.driver,
                    |driver| {
                        driver.cleanup();
                        Ok(())
                    },
                );
                (ReportKind::CleanedUp, false)
            }
        };
        self.account.busy += started.elapsed();
        self.account.usage = self.driver.usage();
        // The scheduler may be gone (shutdown): nobody is left to tell.
        let _ = self.reports.send(Report {
            module: self.id,
            account: self.account,
            kind,
        });
        more
    }
}

impl Runner {
    fn start(&mut self) -> Result<Vec<MetricDescriptor>, Failure> {
        self.account.calls += 1;
        let result = guarded(|| "init", &mut *self.driver, |driver| driver.start());
        if let Err(failure) = &result {
            self.count_failure(failure);
        }
        result
    }

    fn collect(&mut self, group: usize, epoch: u64, slice: Slice) -> Collected {
        let mut collected = Collected {
            group,
            epoch,
            values: Vec::with_capacity(slice.len()),
            slice: slice.clone(),
            failures: Vec::new(),
            trapped: false,
        };
        let names: Vec<&str> = slice.iter().map(|(_, name)| &**name).collect();
        let mut answers = Vec::with_capacity(names.len());
        let answered = std::cell::Cell::new(0);
        let in_progress = || names.get(answered.get()).copied().unwrap_or("handler");
        let outcome = guarded(in_progress, &mut *self.driver, |driver| {
            driver.handle_each(&names, &mut |result| {
                answers.push(result);
                answered.set(answered.get() + 1);
            });
            Ok(())
        });
        if let Err(panic) = outcome {
            answers.push(Err(panic));
        }
        for ((_, name), result) in slice.iter().zip(answers) {
            // After a trap the next call would start a new instance at once; the
            // scheduler's backoff decides when that happens instead.
            if collected.trapped {
                break;
            }
            self.account.calls += 1;
            match result {
                Ok(value) => collected.values.push(Some(value)),
                Err(failure) => {
                    self.count_failure(&failure);
                    collected.trapped = failure.is_trap();
                    collected.values.push(None);
                    collected.failures.push((name.clone(), failure));
                }
            }
        }
        // What a trap left uncalled.
        collected.values.resize(slice.len(), None);
        collected
    }

    fn count_failure(&mut self, failure: &Failure) {
        if failure.is_trap() {
            self.account.traps += 1;
        } else {
            self.account.errors += 1;
        }
        self.account.failures[failure.kind.index()] += 1;
    }
}

/// A call that may panic (a bug in the host side of a driver): the panic becomes a
/// trap of this module instead of the end of its thread.
fn guarded<'a, T>(
    what: impl FnOnce() -> &'a str,
    driver: &mut dyn ModuleDriver,
    call: impl FnOnce(&mut dyn ModuleDriver) -> Result<T, Failure>,
) -> Result<T, Failure> {
    let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| call(driver)));
    outcome.unwrap_or_else(|panic| {
        let reason = panic
            .downcast_ref::<&str>()
            .map(ToString::to_string)
            .or_else(|| panic.downcast_ref::<String>().cloned())
            .unwrap_or_else(|| "a panic".to_string());
        Err(Failure::trap(format!(
            "{}: the host panicked: {reason}",
            what()
        )))
    })
}

/// Why a job was not accepted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Refused {
    /// The worker has stopped (cleaned up, or its pool is gone).
    Gone,
}

/// A module's worker: its lane of the pool, or inline in the scheduler.
pub(crate) struct Worker(Inner);

enum Inner {
    /// Unbounded: the engine keeps at most one job per collection group (its
    /// `busy` set) plus a start and a cleanup waiting, so a module with many groups
    /// due at once (every group at start-up) loses none of them.
    Pooled(Lane<Runner>),
    /// `None` once cleaned up.
    Inline(Option<Runner>),
}

impl std::fmt::Debug for Worker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self.0 {
            Inner::Pooled(_) => "Worker::Pooled",
            Inner::Inline(_) => "Worker::Inline",
        })
    }
}

impl Worker {
    /// A worker on `pool`. Its runner (and the module's instance) is dropped after
    /// `Cleanup`, or when the scheduler drops the worker and its queued jobs are done.
    pub(crate) fn pooled(
        pool: &Pool,
        id: ModuleId,
        driver: Box<dyn ModuleDriver>,
        reports: UnboundedSender<Report>,
    ) -> Worker {
        Worker(Inner::Pooled(pool.lane(Runner {
            id,
            driver,
            account: Account::default(),
            reports,
        })))
    }

    /// A worker that runs each job at once, in the caller: for cheap, trusted drivers.
    pub fn inline(
        id: ModuleId,
        driver: Box<dyn ModuleDriver>,
        reports: UnboundedSender<Report>,
    ) -> Worker {
        Worker(Inner::Inline(Some(Runner {
            id,
            driver,
            account: Account::default(),
            reports,
        })))
    }

    pub(crate) fn submit(&mut self, job: Job) -> Result<(), Refused> {
        match &mut self.0 {
            Inner::Pooled(lane) => lane.submit(job).map_err(|_| Refused::Gone),
            Inner::Inline(runner) => {
                let more = runner.as_mut().ok_or(Refused::Gone)?.run(job);
                if !more {
                    *runner = None;
                }
                Ok(())
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::sync::mpsc::unbounded_channel;

    /// Answers "ok" with a counter; traps on `trap`, errs on `err`.
    struct Scripted {
        calls: u32,
    }

    impl ModuleDriver for Scripted {
        fn start(&mut self) -> Result<Vec<MetricDescriptor>, Failure> {
            Ok(Vec::new())
        }
        fn handle(&mut self, metric: &str) -> Result<MetricValue, Failure> {
            self.calls += 1;
            match metric {
                "trap" => Err(Failure::trap("module s: handler of metric trap: deadline")),
                "err" => Err(Failure::error("module s: handler of metric err: no")),
                "panic" => panic!("driver bug"),
                _ => Ok(MetricValue::UInt32(self.calls)),
            }
        }
        fn cleanup(&mut self) {}
    }

    fn slice(names: &[&str]) -> Slice {
        names
            .iter()
            .enumerate()
            .map(|(i, n)| (i, Arc::from(*n)))
            .collect()
    }

    #[tokio::test]
    async fn stops_a_collection_at_the_first_trap_and_counts_everything() {
        let (tx, mut rx) = unbounded_channel();
        let pool = Pool::new();
        let mut worker = Worker::pooled(&pool, ModuleId(7), Box::new(Scripted { calls: 0 }), tx);
        worker
            .submit(Job::Collect {
                group: 2,
                epoch: 5,
                metrics: slice(&["a", "err", "b", "trap", "c"]),
            })
            .unwrap();
        let report = rx.recv().await.unwrap();
        assert_eq!(report.module, ModuleId(7));
        let ReportKind::Collected(collected) = report.kind else {
            panic!("{:?}", report.kind)
        };
        assert_eq!((collected.group, collected.epoch), (2, 5));
        assert_eq!(
            collected.values,
            [
                Some(MetricValue::UInt32(1)),
                None,
                Some(MetricValue::UInt32(3)),
                None,
                None
            ],
            "c is not called after the trap"
        );
        assert!(collected.trapped);
        assert_eq!(collected.failures.len(), 2);
        assert_eq!(
            (
                report.account.calls,
                report.account.errors,
                report.account.traps
            ),
            (4, 1, 1)
        );
        assert_eq!(report.account.failed(FailureKind::ModuleError), 1);
        assert_eq!(report.account.failed(FailureKind::Crash), 1);
        assert_eq!(report.account.failed(FailureKind::Fuel), 0);
    }

    #[tokio::test]
    async fn a_panicking_driver_is_a_trap_not_a_dead_thread() {
        let (tx, mut rx) = unbounded_channel();
        let pool = Pool::new();
        let mut worker = Worker::pooled(&pool, ModuleId(2), Box::new(Scripted { calls: 0 }), tx);
        worker
            .submit(Job::Collect {
                group: 0,
                epoch: 0,
                metrics: slice(&["panic"]),
            })
            .unwrap();
        let report = rx.recv().await.unwrap();
        let ReportKind::Collected(collected) = report.kind else {
            panic!("{:?}", report.kind)
        };
        assert!(collected.trapped);
        assert_eq!(
            collected.failures[0].1.message,
            "panic: the host panicked: driver bug"
        );
        worker
            .submit(Job::Collect {
                group: 0,
                epoch: 0,
                metrics: slice(&["a"]),
            })
            .unwrap();
        assert!(
            matches!(rx.recv().await.unwrap().kind, ReportKind::Collected(_)),
            "the worker lives on"
        );
    }

    #[tokio::test]
    async fn runner_is_dropped_after_cleanup() {
        let (tx, mut rx) = unbounded_channel();
        let pool = Pool::new();
        let mut worker = Worker::pooled(&pool, ModuleId(1), Box::new(Scripted { calls: 0 }), tx);
        worker.submit(Job::Cleanup).unwrap();
        assert!(matches!(
            rx.recv().await.unwrap().kind,
            ReportKind::CleanedUp
        ));
        assert_eq!(
            rx.recv().await.map(|r| r.module),
            None,
            "the runner dropped its sender"
        );
        assert_eq!(worker.submit(Job::Start), Err(Refused::Gone));
    }

    #[tokio::test]
    async fn inline_worker_reports_before_submit_returns() {
        let (tx, mut rx) = unbounded_channel();
        let mut worker = Worker::inline(ModuleId(3), Box::new(Scripted { calls: 0 }), tx);
        worker.submit(Job::Start).unwrap();
        assert!(matches!(
            rx.try_recv().unwrap().kind,
            ReportKind::Started(Ok(_))
        ));
        worker.submit(Job::Cleanup).unwrap();
        assert_eq!(worker.submit(Job::Start), Err(Refused::Gone));
    }
}
