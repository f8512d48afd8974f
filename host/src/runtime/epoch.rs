//! The epoch ticker: a thread that advances the engine's epoch when the deadline of
//! a running callback comes, which is what turns a store's deadline into a
//! wall-clock deadline.
//!
//! Every store's epoch deadline is the next increment, and its epoch-deadline
//! callback ([`check_deadline`]) compares the time with the store's own deadline:
//! past it, the call traps; before it, the store waits for the increment after.
//! Each store has a [`Watch`], where a callback in flight shows its deadline; the
//! ticker sleeps until the earliest deadline shown and increments the epoch then.
//! A call that ends in time therefore costs the ticker nothing, and starting one
//! wakes it only if it sleeps past the new deadline.
//!
//! With no call in flight the ticker stays up for the shortest deadline it has
//! seen, so that calls made every second or so never have to wake it; once that
//! long passes with no call begun, it parks (no wake-ups at all) until one begins.
//! The older design ticked every 10 ms while any call ran, and so woke twice for
//! every collection: each wake-up of a thread costs tens of microseconds of CPU.
//!
//! Every loaded module and instance holds the ticker (through an `Arc`); the thread
//! ends when the last one goes.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::thread::Thread;
use std::time::{Duration, Instant};

use wasmtime::{Engine, StoreContextMut, UpdateDeadline};

use super::state::HostState;

/// Default time between two increments while a callback is past its deadline and
/// has not trapped yet (it waits in a host call, which has its own deadline).
pub const DEFAULT_EPOCH_TICK: Duration = Duration::from_millis(10);

/// A watch's value, and the ticker's wake-up time, for "none".
const NONE: u64 = u64::MAX;

#[derive(Debug)]
pub(crate) struct EpochTicker {
    shared: Arc<Shared>,
    thread: Thread,
}

/// What the ticker and the stores share.
#[derive(Debug)]
struct Shared {
    origin: Instant,
    /// How soon the ticker increments again for a call still running past its deadline.
    retry: Duration,
    /// Every store's watch; one only the ticker holds is dropped at the next scan.
    watches: Mutex<Vec<Arc<AtomicU64>>>,
    /// When the ticker wakes next (nanoseconds since `origin`), or `NONE` (parked).
    wake_at: AtomicU64,
    /// Callbacks begun, so the idle ticker knows whether calls still come.
    begun: AtomicU64,
    /// The shortest deadline of any callback (nanoseconds): how long it stays up idle.
    shortest: AtomicU64,
    stop: AtomicBool,
    /// Times the ticker thread woke up, for tests.
    wakeups: AtomicU64,
}

impl Shared {
    fn since_origin(&self, now: Instant) -> u64 {
        nanos(now.saturating_duration_since(self.origin))
    }

    /// The earliest deadline of the callbacks in flight.
    fn earliest(&self) -> Option<u64> {
        let mut watches = self.watches.lock().unwrap_or_else(PoisonError::into_inner);
        watches.retain(|watch| Arc::strong_count(watch) > 1);
        watches
            .iter()
            .map(|watch| watch.load(Ordering::SeqCst))
            .filter(|&deadline| deadline != NONE)
            .min()
    }
}

/// Where a store's callback in flight shows its deadline to the ticker.
#[derive(Debug)]
pub(crate) struct Watch {
    deadline: Arc<AtomicU64>,
    shared: Arc<Shared>,
    thread: Thread,
}

/// Held while a callback runs: its watch shows no deadline once it drops.
#[must_use = "the watch shows the deadline until the guard drops"]
pub(crate) struct Running {
    deadline: Arc<AtomicU64>,
}

impl Drop for Running {
    fn drop(&mut self) {
        self.deadline.store(NONE, Ordering::SeqCst);
    }
}

impl EpochTicker {
    pub(crate) fn start(engine: Engine, retry: Duration) -> std::io::Result<EpochTicker> {
        let shared = Arc::new(Shared {
            origin: Instant::now(),
            retry,
            watches: Mutex::new(Vec::new()),
            wake_at: AtomicU64::new(NONE),
            begun: AtomicU64::new(0),
            shortest: AtomicU64::new(NONE),
            stop: AtomicBool::new(false),
            wakeups: AtomicU64::new(0),
        });
        let ticker = shared.clone();
        let handle = std::thread::Builder::new()
            .name("wasmond-epoch".into())
            .spawn(move || run(&engine, &ticker))?;
        Ok(EpochTicker {
            shared,
            thread: handle.thread().clone(),
        })
    }

    /// A watch for a new store.
    pub(crate) fn watch(&self) -> Watch {
        let deadline = Arc::new(AtomicU64::new(NONE));
        self.shared
            .watches
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push(deadline.clone());
        Watch {
            deadline,
            shared: self.shared.clone(),
            thread: self.thread.clone(),
        }
    }
}

impl Watch {
    /// A callback with `deadline` begins: what [`Watch::show`] shows from now on is its
    /// deadline, until the guard drops.
    pub(crate) fn begin(&self, deadline: Duration) -> Running {
        self.shared.begun.fetch_add(1, Ordering::SeqCst);
        self.shared
            .shortest
            .fetch_min(nanos(deadline), Ordering::SeqCst);
        Running {
            deadline: self.deadline.clone(),
        }
    }

    /// The callback in flight is due to end `deadline` after `now` (an answer of
    /// `handle-each` starts the next metric's deadline).
    pub(crate) fn show(&self, deadline: Duration, now: Instant) {
        let at = self
            .shared
            .since_origin(now)
            .saturating_add(nanos(deadline));
        // SeqCst on both sides (here and in `run`): either the ticker's scan sees this
        // deadline, or this sees the wake-up time it set after the scan.
        self.deadline.store(at, Ordering::SeqCst);
        if self.shared.wake_at.load(Ordering::SeqCst) > at {
            self.thread.unpark();
        }
    }
}

/// The epoch-deadline callback of every store: an increment came, so the ticker
/// found some callback's deadline passed. Traps if it is this store's; otherwise
/// waits for the next increment.
pub(crate) fn check_deadline(
    store: StoreContextMut<'_, HostState>,
) -> wasmtime::Result<UpdateDeadline> {
    if Instant::now() >= store.data().deadline {
        return Err(wasmtime::Trap::Interrupt.into());
    }
    Ok(UpdateDeadline::Continue(1))
}

impl Drop for EpochTicker {
    fn drop(&mut self) {
        self.shared.stop.store(true, Ordering::SeqCst);
        self.thread.unpark();
    }
}

/// The ticker thread: sleeps until the earliest deadline in flight, increments the
/// epoch when one has passed, lingers while calls keep coming, parks when none do.
fn run(engine: &Engine, shared: &Shared) {
    let mut begun_seen = shared.begun.load(Ordering::SeqCst);
    loop {
        if shared.stop.load(Ordering::SeqCst) {
            return;
        }
        let now = shared.since_origin(Instant::now());
        let earliest = shared.earliest();
        let next = match earliest {
            Some(deadline) if deadline <= now => {
                // Every store in flight checks its own deadline at its next epoch check.
                engine.increment_epoch();
                now.saturating_add(nanos(shared.retry))
            }
            Some(deadline) => deadline,
            None => {
                let begun = shared.begun.load(Ordering::SeqCst);
                if begun == begun_seen {
                    NONE
                } else {
                    // A call that begins from now on ends no earlier than this.
                    begun_seen = begun;
                    now.saturating_add(shared.shortest.load(Ordering::SeqCst))
                }
            }
        };
        shared.wake_at.store(next, Ordering::SeqCst);
        // A call that began since the scan saw the wake-up time before this one.
        if shared.earliest().is_some_and(|deadline| deadline < next) {
            continue;
        }
        if next == NONE {
            std::thread::park();
        } else {
            std::thread::park_timeout(Duration::from_nanos(next.saturating_sub(now)));
        }
        shared.wakeups.fetch_add(1, Ordering::Relaxed);
    }
}

/// Nanoseconds in 64 bits (saturating after 584 years): u128 division is slow,
/// and this runs before every callback.
fn nanos(duration: Duration) -> u64 {
    u64::try_from(duration.as_nanos()).unwrap_or(u64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Polls `done` for up to 5 s.
    fn eventually(done: impl Fn() -> bool) -> bool {
        let until = Instant::now() + Duration::from_secs(5);
        while Instant::now() < until {
            if done() {
                return true;
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        done()
    }

    fn parked(ticker: &EpochTicker) -> bool {
        ticker.shared.wake_at.load(Ordering::SeqCst) == NONE
    }

    fn wakeups(ticker: &EpochTicker) -> u64 {
        ticker.shared.wakeups.load(Ordering::SeqCst)
    }

    #[test]
    fn calls_that_end_in_time_do_not_wake_a_ticker_already_up_and_idle_ones_none() {
        let ticker = EpochTicker::start(Engine::default(), DEFAULT_EPOCH_TICK).unwrap();
        let watch = ticker.watch();
        assert!(eventually(|| parked(&ticker)), "parks before any call");
        let idle = wakeups(&ticker);
        std::thread::sleep(Duration::from_millis(50));
        assert_eq!(wakeups(&ticker), idle, "no wake-up while nothing runs");

        // The first call wakes it; it then sleeps until that call's deadline.
        let deadline = Duration::from_millis(300);
        let call = |watch: &Watch| {
            let _running = watch.begin(deadline);
            watch.show(deadline, Instant::now());
        };
        call(&watch);
        assert!(eventually(|| wakeups(&ticker) > idle));
        let woken = wakeups(&ticker);
        // Calls every 20 ms, each ending in time, do not wake it again before then.
        for _ in 0..5 {
            std::thread::sleep(Duration::from_millis(20));
            call(&watch);
        }
        assert_eq!(wakeups(&ticker), woken, "short calls cost no wake-up");
        // Once calls stop, it parks again.
        assert!(eventually(|| parked(&ticker)), "parks after the calls");
        let after = wakeups(&ticker);
        std::thread::sleep(Duration::from_millis(400));
        assert_eq!(wakeups(&ticker), after);
    }

    /// Spins in a store of `engine` watched by `ticker` on a thread of its own until
    /// its deadline stops it: the trap and how long it took.
    fn spin(
        engine: &Engine,
        ticker: &EpochTicker,
        deadline: Duration,
    ) -> std::thread::JoinHandle<(Option<wasmtime::Trap>, Duration)> {
        let module =
            wasmtime::Module::new(engine, "(module (func (export \"spin\") (loop br 0)))").unwrap();
        let watch = ticker.watch();
        let state = HostState::new("t".into(), &Default::default(), &Default::default());
        let mut store = wasmtime::Store::new(engine, state.unwrap());
        store.epoch_deadline_callback(check_deadline);
        store.set_epoch_deadline(1);
        let instance = wasmtime::Instance::new(&mut store, &module, &[]).unwrap();
        let spin = instance
            .get_typed_func::<(), ()>(&mut store, "spin")
            .unwrap();
        std::thread::spawn(move || {
            let started = Instant::now();
            store.data_mut().deadline = started + deadline;
            let _call = watch.begin(deadline);
            watch.show(deadline, started);
            let trap = spin.call(&mut store, ()).unwrap_err();
            (
                trap.downcast_ref::<wasmtime::Trap>().copied(),
                started.elapsed(),
            )
        })
    }

    fn assert_stopped_in_time(
        call: std::thread::JoinHandle<(Option<wasmtime::Trap>, Duration)>,
        deadline: Duration,
    ) {
        let (trap, took) = call.join().unwrap();
        assert_eq!(trap, Some(wasmtime::Trap::Interrupt));
        assert!(took >= deadline, "{took:?} < {deadline:?}");
        assert!(took < deadline * 2, "{took:?} >= 2 x {deadline:?}");
    }

    fn epoch_engine() -> Engine {
        Engine::new(wasmtime::Config::new().epoch_interruption(true)).unwrap()
    }

    /// Regression (of the ticking design, kept for this one): a call that woke the
    /// ticker and ended before it looked must not leave it asleep for the next one.
    #[test]
    fn short_calls_never_leave_the_ticker_asleep_for_a_long_one() {
        let engine = epoch_engine();
        let ticker = EpochTicker::start(engine.clone(), DEFAULT_EPOCH_TICK).unwrap();
        let watch = ticker.watch();
        for _ in 0..20_000 {
            let _call = watch.begin(Duration::from_secs(3600));
            watch.show(Duration::from_secs(3600), Instant::now());
        }
        let deadline = Duration::from_millis(20);
        assert_stopped_in_time(spin(&engine, &ticker, deadline), deadline);
    }

    #[test]
    fn a_store_past_its_deadline_traps_and_one_before_it_runs_on() {
        let engine = epoch_engine();
        let ticker = EpochTicker::start(engine.clone(), DEFAULT_EPOCH_TICK).unwrap();
        // Two stores spin at once: the short one's deadline increments the epoch
        // while the long one still has time, and the long one runs on to its own.
        let short = Duration::from_millis(30);
        let long = Duration::from_millis(300);
        let calls = [spin(&engine, &ticker, short), spin(&engine, &ticker, long)];
        for (call, deadline) in calls.into_iter().zip([short, long]) {
            assert_stopped_in_time(call, deadline);
        }
    }
}
