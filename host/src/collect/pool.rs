//! The threads that module calls run on: a pool shared by every module, so that 1000
//! modules do not need 1000 threads, which grows when a call holds its thread so that
//! a module looping until its deadline holds up nobody else.
//!
//! Each module has a queue ([`Lane`]); a module with jobs waiting is put on the pool's
//! ready list once, and a pool thread runs its jobs one after another, so a module's
//! jobs never overlap and keep their order. The pool keeps `core` threads (the
//! machine's cores). When a module is ready and no thread is idle, a watcher gives the
//! busy threads [`STALL`] to take it, then adds a thread (up to [`MAX_THREADS`]): a
//! module stuck in a call delays the others by about `STALL`, not by its deadline.
//! Threads beyond `core` end after [`SPARE_IDLE`] without work. Nothing wakes while
//! there is no work: idle threads and the watcher wait without a timeout.

use std::collections::VecDeque;
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

/// How long a ready module waits for a busy pool before a thread is added for it.
pub(crate) const STALL: Duration = Duration::from_millis(5);
/// The most threads the pool runs (beyond it, ready modules wait their turn).
pub(crate) const MAX_THREADS: usize = 512;
/// How long a thread beyond the core ones waits for work before it ends.
pub(crate) const SPARE_IDLE: Duration = Duration::from_secs(10);

/// What a lane runs: one module's jobs.
pub trait Runs: Send + 'static {
    type Job: Send + 'static;
    /// Runs `job`; false once the module is done and must not run again.
    fn run(&mut self, job: Self::Job) -> bool;
}

/// The shared pool. Cheap to clone. When the last clone goes, the threads finish the
/// lanes that are ready and end.
#[derive(Clone)]
pub(crate) struct Pool {
    owner: Arc<Owner>,
}

/// Closes the pool when dropped.
struct Owner {
    inner: Arc<Inner>,
}

impl Drop for Owner {
    fn drop(&mut self) {
        self.inner.lock().closed = true;
        self.inner.work.notify_all();
        self.inner.watch.notify_all();
    }
}

struct Inner {
    state: Mutex<State>,
    /// Idle threads wait here for ready lanes.
    work: Condvar,
    /// The watcher waits here for a ready lane nobody takes.
    watch: Condvar,
    core: usize,
    /// The tokio runtime the calls run in (WASI waits on its timers), when there is one.
    context: Option<tokio::runtime::Handle>,
}

struct State {
    ready: VecDeque<Arc<dyn Drain>>,
    threads: usize,
    /// Threads waiting for work and not yet woken for it.
    idle: usize,
    /// Wake-ups sent to idle threads and not yet received.
    woken: usize,
    /// Whether the watcher waits for a ready lane (and must be told of one).
    watcher_waiting: bool,
    /// Lanes taken from `ready` so far: the watcher's measure of progress.
    taken: u64,
    watcher: bool,
    closed: bool,
}

/// A lane as the pool sees it.
trait Drain: Send + Sync {
    fn drain(&self);
}

impl Pool {
    /// A pool of as many core threads as the machine has cores (at least two), started
    /// as needed.
    pub fn new() -> Pool {
        let cores = std::thread::available_parallelism().map_or(2, |n| n.get());
        Pool::with_core_threads(cores.max(2))
    }

    pub(crate) fn with_core_threads(core: usize) -> Pool {
        let inner = Arc::new(Inner {
            state: Mutex::new(State {
                ready: VecDeque::new(),
                threads: 0,
                idle: 0,
                woken: 0,
                watcher_waiting: false,
                taken: 0,
                watcher: false,
                closed: false,
            }),
            work: Condvar::new(),
            watch: Condvar::new(),
            core: core.max(1),
            context: tokio::runtime::Handle::try_current().ok(),
        });
        Pool {
            owner: Arc::new(Owner { inner }),
        }
    }

    /// Threads the pool runs now.
    #[cfg(test)]
    pub fn threads(&self) -> usize {
        self.owner.inner.lock().threads
    }

    /// A lane for one module's jobs, run by `runner`.
    pub(crate) fn lane<R: Runs>(&self, runner: R) -> Lane<R> {
        Lane {
            shared: Arc::new(LaneShared {
                pool: Arc::downgrade(&self.owner.inner),
                state: Mutex::new(LaneState {
                    jobs: VecDeque::new(),
                    runner: Some(runner),
                    queued: false,
                    done: false,
                }),
            }),
        }
    }
}

impl Default for Pool {
    fn default() -> Pool {
        Pool::new()
    }
}

impl Inner {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Puts a lane with jobs on the ready list and makes sure someone will take it.
    fn ready(self: &Arc<Inner>, lane: Arc<dyn Drain>) {
        let mut state = self.lock();
        state.ready.push_back(lane);
        if state.idle > 0 {
            state.idle -= 1;
            state.woken += 1;
            // Notified once the lock is free: the woken thread's first step is to take
            // it, and would otherwise sleep again at once on the lock we hold.
            drop(state);
            self.work.notify_one();
        } else if state.threads < self.core || state.closed {
            self.spawn(&mut state);
        } else if !state.watcher {
            state.watcher = true;
            let pool = self.clone();
            if std::thread::Builder::new()
                .name("wasmond-pool-watch".into())
                .spawn(move || pool.watch())
                .is_err()
            {
                state.watcher = false;
            }
        } else if state.watcher_waiting {
            self.watch.notify_one();
        }
    }

    /// After a wait on `work`: whether it was a wake-up from `ready` (else it was
    /// spurious or timed out, and the thread still counts as idle).
    fn took_wakeup(state: &mut State) -> bool {
        if state.woken > 0 {
            state.woken -= 1;
            true
        } else {
            false
        }
    }

    fn spawn(self: &Arc<Inner>, state: &mut State) {
        let pool = self.clone();
        let spawned = std::thread::Builder::new()
            .name("wasmond-module".into())
            .spawn(move || pool.work());
        if spawned.is_ok() {
            state.threads += 1;
        } else {
            tracing::warn!("module pool: cannot start a thread; ready modules wait");
        }
    }

    /// A pool thread: takes ready lanes and drains them.
    fn work(self: Arc<Inner>) {
        let _context = self.context.as_ref().map(tokio::runtime::Handle::enter);
        let mut state = self.lock();
        loop {
            if let Some(lane) = state.ready.pop_front() {
                state.taken += 1;
                drop(state);
                lane.drain();
                state = self.lock();
                continue;
            }
            if state.closed {
                state.threads -= 1;
                return;
            }
            state.idle += 1;
            let spare = state.threads > self.core;
            let timed_out = if spare {
                let (next, timeout) = self
                    .work
                    .wait_timeout(state, SPARE_IDLE)
                    .unwrap_or_else(PoisonError::into_inner);
                state = next;
                timeout.timed_out()
            } else {
                state = self
                    .work
                    .wait(state)
                    .unwrap_or_else(PoisonError::into_inner);
                false
            };
            if !Inner::took_wakeup(&mut state) {
                state.idle -= 1;
                if timed_out && state.ready.is_empty() && state.threads > self.core {
                    state.threads -= 1;
                    return;
                }
            }
        }
    }

    /// Adds a thread when a ready lane waited `STALL` with no lane taken meanwhile;
    /// sleeps without a timeout while nothing waits.
    fn watch(self: Arc<Inner>) {
        let mut state = self.lock();
        loop {
            while state.ready.is_empty() {
                if state.closed {
                    state.watcher = false;
                    return;
                }
                state.watcher_waiting = true;
                state = self
                    .watch
                    .wait(state)
                    .unwrap_or_else(PoisonError::into_inner);
                state.watcher_waiting = false;
            }
            let taken = state.taken;
            let (next, _) = self
                .watch
                .wait_timeout(state, STALL)
                .unwrap_or_else(PoisonError::into_inner);
            state = next;
            if !state.ready.is_empty() && state.taken == taken && state.threads < MAX_THREADS {
                self.spawn(&mut state);
            }
        }
    }
}

/// One module's queue of jobs. Dropping it lets the jobs queued finish, then the
/// runner is dropped.
pub(crate) struct Lane<R: Runs> {
    shared: Arc<LaneShared<R>>,
}

struct LaneShared<R: Runs> {
    pool: std::sync::Weak<Inner>,
    state: Mutex<LaneState<R>>,
}

struct LaneState<R: Runs> {
    jobs: VecDeque<R::Job>,
    /// `None` while a pool thread runs it, and once done.
    runner: Option<R>,
    /// On the ready list or being drained.
    queued: bool,
    done: bool,
}

/// The lane no longer takes jobs: its runner finished.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Closed;

impl<R: Runs> Lane<R> {
    /// Queues `job`; the lane's runner gets it after the jobs before it.
    pub(crate) fn submit(&self, job: R::Job) -> Result<(), Closed> {
        let mut state = self
            .shared
            .state
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if state.done {
            return Err(Closed);
        }
        state.jobs.push_back(job);
        if !state.queued {
            let Some(pool) = self.shared.pool.upgrade() else {
                state.done = true;
                return Err(Closed);
            };
            state.queued = true;
            drop(state);
            pool.ready(self.shared.clone());
        }
        Ok(())
    }
}

impl<R: Runs> Drain for LaneShared<R> {
    fn drain(&self) {
        let lock = || self.state.lock().unwrap_or_else(PoisonError::into_inner);
        let mut state = lock();
        let Some(mut runner) = state.runner.take() else {
            state.queued = false;
            return;
        };
        while let Some(job) = state.jobs.pop_front() {
            drop(state);
            let more = runner.run(job);
            state = lock();
            if !more {
                state.done = true;
                state.jobs.clear();
                state.queued = false;
                drop(state);
                return;
            }
        }
        state.runner = Some(runner);
        state.queued = false;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::mpsc;
    use std::time::Instant;

    /// Sends each job's number; a job of `u64::MAX` blocks until told; 0 ends the lane.
    struct Echo {
        out: mpsc::Sender<(usize, u64)>,
        id: usize,
        release: Option<mpsc::Receiver<()>>,
    }

    impl Runs for Echo {
        type Job = u64;
        fn run(&mut self, job: u64) -> bool {
            if job == u64::MAX
                && let Some(release) = &self.release
            {
                let _ = release.recv_timeout(Duration::from_secs(10));
            }
            self.out.send((self.id, job)).unwrap();
            job != 0
        }
    }

    #[test]
    fn a_lane_runs_its_jobs_in_order_and_closes_when_done() {
        let pool = Pool::with_core_threads(2);
        let (out, results) = mpsc::channel();
        let lane = pool.lane(Echo {
            out,
            id: 1,
            release: None,
        });
        for job in [3, 2, 1, 0] {
            lane.submit(job).unwrap();
        }
        let got: Vec<u64> = (0..4).map(|_| results.recv().unwrap().1).collect();
        assert_eq!(got, [3, 2, 1, 0]);
        // The runner finished: the lane refuses more once the pool saw it.
        let until = Instant::now() + Duration::from_secs(5);
        while lane.submit(5) != Err(Closed) {
            assert!(Instant::now() < until, "the lane still takes jobs");
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    #[test]
    fn many_lanes_share_few_threads() {
        let pool = Pool::with_core_threads(2);
        let (out, results) = mpsc::channel();
        let lanes: Vec<_> = (0..1000)
            .map(|id| {
                pool.lane(Echo {
                    out: out.clone(),
                    id,
                    release: None,
                })
            })
            .collect();
        for lane in &lanes {
            lane.submit(1).unwrap();
        }
        for _ in 0..1000 {
            results.recv_timeout(Duration::from_secs(10)).unwrap();
        }
        assert!(
            pool.threads() < 50,
            "{} threads for 1000 lanes",
            pool.threads()
        );
    }

    #[test]
    fn a_blocked_lane_holds_up_no_other() {
        let pool = Pool::with_core_threads(1);
        let (out, results) = mpsc::channel();
        let (release, released) = mpsc::channel();
        let stuck = pool.lane(Echo {
            out: out.clone(),
            id: 1,
            release: Some(released),
        });
        let other = pool.lane(Echo {
            out,
            id: 2,
            release: None,
        });
        stuck.submit(u64::MAX).unwrap();
        // Give the one core thread time to take the stuck job.
        std::thread::sleep(Duration::from_millis(50));
        other.submit(7).unwrap();
        let (id, job) = results
            .recv_timeout(Duration::from_secs(5))
            .expect("the other lane ran while the first is stuck");
        assert_eq!((id, job), (2, 7));
        assert_eq!(pool.threads(), 2, "one thread was added for it");
        release.send(()).unwrap();
        assert_eq!(results.recv().unwrap(), (1, u64::MAX));
    }
}
