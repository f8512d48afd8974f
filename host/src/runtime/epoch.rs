//! The epoch ticker: a thread that advances the engine's epoch at a fixed period
//! while any callback runs, which is what turns a store's epoch deadline into a
//! wall-clock deadline.
//!
//! It ticks only while a call is in flight: each callback holds a [`Running`] guard
//! for its duration, and the ticker parks (no wake-ups at all) from its first tick
//! with no call running until the next call starts. An idle daemon therefore pays
//! nothing for deadlines. A call that starts while the ticker is parked wakes it;
//! the ticker then counts from that moment, so the idle time is never charged to
//! the new call's deadline.
//!
//! Every loaded module and instance holds the ticker (through an `Arc`); the thread
//! ends when the last one goes.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::thread::Thread;
use std::time::{Duration, Instant};

use wasmtime::Engine;

/// Default period of the epoch ticker: the granularity of every deadline.
pub const DEFAULT_EPOCH_TICK: Duration = Duration::from_millis(10);

/// `TickClock::last_tick` while the ticker is parked.
const PARKED: u64 = u64::MAX;

#[derive(Debug)]
pub(crate) struct EpochTicker {
    clock: Arc<TickClock>,
    thread: Thread,
}

/// What the ticker and the stores setting deadlines share.
#[derive(Debug)]
struct TickClock {
    origin: Instant,
    tick: Duration,
    /// Callbacks running now.
    in_flight: AtomicU64,
    /// When the ticker last advanced the epoch (nanoseconds since `origin`), or
    /// `PARKED`.
    last_tick: AtomicU64,
    /// Set by the ticker before it parks: a call starting then must unpark it.
    parked: AtomicBool,
    stop: AtomicBool,
    /// Times the ticker thread woke up, for tests.
    wakeups: AtomicU64,
}

impl TickClock {
    fn since_origin(&self, now: Instant) -> u64 {
        nanos(now.saturating_duration_since(self.origin))
    }
}

/// Held while a callback runs: the ticker ticks while any is held.
#[must_use = "the ticker stops when the guard drops"]
pub(crate) struct Running {
    clock: Arc<TickClock>,
}

impl Drop for Running {
    fn drop(&mut self) {
        self.clock.in_flight.fetch_sub(1, Ordering::SeqCst);
    }
}

impl EpochTicker {
    pub(crate) fn start(engine: Engine, tick: Duration) -> std::io::Result<EpochTicker> {
        let clock = Arc::new(TickClock {
            origin: Instant::now(),
            tick,
            in_flight: AtomicU64::new(0),
            last_tick: AtomicU64::new(PARKED),
            parked: AtomicBool::new(false),
            stop: AtomicBool::new(false),
            wakeups: AtomicU64::new(0),
        });
        let shared = clock.clone();
        let handle = std::thread::Builder::new()
            .name("wasmond-epoch".into())
            .spawn(move || run(&engine, &shared))?;
        Ok(EpochTicker {
            clock,
            thread: handle.thread().clone(),
        })
    }

    /// Marks a callback as running until the guard drops, waking the ticker if it
    /// is parked. Call it before [`EpochTicker::ticks_for`].
    pub(crate) fn running(&self) -> Running {
        let clock = &self.clock;
        // SeqCst on both sides (here and in `run`): either the ticker sees this call
        // before it parks, or this call sees that it parked and unparks it.
        clock.in_flight.fetch_add(1, Ordering::SeqCst);
        if clock.parked.swap(false, Ordering::SeqCst) {
            self.thread.unpark();
        }
        Running {
            clock: clock.clone(),
        }
    }

    /// See [`EpochClock::ticks_for`]. Runs before every callback: it reads the clock
    /// in place rather than through a cloned [`EpochClock`].
    pub(crate) fn ticks_for(&self, deadline: Duration, now: Instant) -> u64 {
        ticks_for(&self.clock, deadline, now)
    }

    /// What a store needs to set deadlines while a call runs (an answer of
    /// `handle-each` starts the next metric's deadline).
    pub(crate) fn clock(&self) -> EpochClock {
        EpochClock(self.clock.clone())
    }
}

/// The ticker's clock, shared: turns a deadline into epoch ticks.
#[derive(Debug, Clone)]
pub(crate) struct EpochClock(Arc<TickClock>);

impl EpochClock {
    /// Epoch ticks to allow, from `now`, for `deadline`: rounded up, plus one
    /// because the next tick may come at any moment, plus the ticks the ticker is
    /// late with (it catches up at its next wake-up). A loop is therefore stopped
    /// after `deadline` and before `deadline` + 2 ticks plus the ticker's wake-up delay.
    pub(crate) fn ticks_for(&self, deadline: Duration, now: Instant) -> u64 {
        ticks_for(&self.0, deadline, now)
    }
}

/// [`EpochClock::ticks_for`], on the shared clock itself.
fn ticks_for(clock: &TickClock, deadline: Duration, now: Instant) -> u64 {
    let tick = nanos(clock.tick).max(1);
    let ticks = nanos(deadline).div_ceil(tick);
    // A parked ticker restarts its count when it wakes: it owes nothing.
    let late = match clock.last_tick.load(Ordering::SeqCst) {
        PARKED => 0,
        last => clock.since_origin(now).saturating_sub(last) / tick,
    };
    ticks.max(1).saturating_add(1).saturating_add(late)
}

impl Drop for EpochTicker {
    fn drop(&mut self) {
        self.clock.stop.store(true, Ordering::SeqCst);
        self.thread.unpark();
    }
}

/// The ticker thread: ticks while calls run, parks when none does.
fn run(engine: &Engine, clock: &TickClock) {
    let tick = nanos(clock.tick).max(1);
    loop {
        // Park until a call is in flight. `parked` is set again before every check:
        // a call that cleared it (and unparked us) may have ended before we looked,
        // and the next call must still find it set.
        clock.last_tick.store(PARKED, Ordering::SeqCst);
        loop {
            clock.parked.store(true, Ordering::SeqCst);
            if clock.in_flight.load(Ordering::SeqCst) > 0 || clock.stop.load(Ordering::SeqCst) {
                break;
            }
            std::thread::park();
            clock.wakeups.fetch_add(1, Ordering::Relaxed);
        }
        // A call that saw `parked` also cleared it; if this thread saw the call
        // first, clear it here so no later call unparks a running ticker.
        clock.parked.store(false, Ordering::SeqCst);
        if clock.stop.load(Ordering::SeqCst) {
            return;
        }
        // Tick from now: the idle time is nobody's.
        let mut last = clock.since_origin(Instant::now());
        clock.last_tick.store(last, Ordering::SeqCst);
        loop {
            std::thread::park_timeout(clock.tick);
            clock.wakeups.fetch_add(1, Ordering::Relaxed);
            if clock.stop.load(Ordering::SeqCst) {
                return;
            }
            // The epoch follows the clock, not the count of wake-ups: on a busy
            // machine a late wake-up catches up instead of stretching every deadline.
            let due = clock.since_origin(Instant::now()).saturating_sub(last) / tick;
            for _ in 0..due {
                engine.increment_epoch();
            }
            last += due * tick;
            clock.last_tick.store(last, Ordering::SeqCst);
            if clock.in_flight.load(Ordering::SeqCst) == 0 {
                break;
            }
        }
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

    #[test]
    fn deadlines_round_up_and_add_one_tick() {
        let ticker = EpochTicker::start(Engine::default(), Duration::from_secs(3600)).unwrap();
        let now = ticker.clock.origin;
        assert_eq!(ticker.ticks_for(Duration::from_secs(3600), now), 2);
        assert_eq!(ticker.ticks_for(Duration::from_secs(3601), now), 3);
        assert_eq!(ticker.ticks_for(Duration::ZERO, now), 2);
        assert!(
            ticker.ticks_for(Duration::MAX, now) > 5_000_000,
            "saturates at 584 years"
        );
    }

    #[test]
    fn a_late_ticker_is_allowed_for_and_a_parked_one_owes_nothing() {
        let ticker = EpochTicker::start(Engine::default(), Duration::from_secs(3600)).unwrap();
        let later = ticker.clock.origin + Duration::from_secs(7200);
        assert_eq!(
            ticker.ticks_for(Duration::from_secs(3600), later),
            2,
            "parked: two idle hours are not charged"
        );
        // Running, its last tick at the origin: two ticks are owed two hours in.
        ticker.clock.last_tick.store(0, Ordering::SeqCst);
        assert_eq!(ticker.ticks_for(Duration::from_secs(3600), later), 2 + 2);
    }

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

    #[test]
    fn ticks_only_while_a_call_runs() {
        let ticker = EpochTicker::start(Engine::default(), Duration::from_millis(1)).unwrap();
        let clock = ticker.clock.clone();
        let parked = || clock.parked.load(Ordering::SeqCst);
        assert!(eventually(parked), "parks with no call in flight");
        let idle = clock.wakeups.load(Ordering::SeqCst);
        std::thread::sleep(Duration::from_millis(100));
        assert_eq!(
            clock.wakeups.load(Ordering::SeqCst),
            idle,
            "no wake-up in 100 idle ms (100 ticks)"
        );

        let call = ticker.running();
        assert!(eventually(
            || clock.wakeups.load(Ordering::SeqCst) >= idle + 20
        ));
        assert_ne!(clock.last_tick.load(Ordering::SeqCst), PARKED);
        drop(call);
        assert!(eventually(parked), "parks again after the call");
        let after = clock.wakeups.load(Ordering::SeqCst);
        std::thread::sleep(Duration::from_millis(50));
        assert_eq!(clock.wakeups.load(Ordering::SeqCst), after);
    }

    /// Regression: a call that woke the ticker and ended before it looked left it
    /// parked for good, so the next long call was never interrupted.
    #[test]
    fn short_calls_never_leave_the_ticker_asleep_for_the_next_one() {
        let ticker = EpochTicker::start(Engine::default(), Duration::from_millis(1)).unwrap();
        let clock = ticker.clock.clone();
        for _ in 0..20_000 {
            drop(ticker.running());
        }
        let long_call = ticker.running();
        assert!(
            eventually(|| clock.last_tick.load(Ordering::SeqCst) != PARKED),
            "the ticker ticks for the long call"
        );
        drop(long_call);
    }

    #[test]
    fn the_epoch_reaches_a_deadline_set_after_idle_time() {
        let engine = Engine::new(wasmtime::Config::new().epoch_interruption(true)).unwrap();
        let ticker = EpochTicker::start(engine.clone(), Duration::from_millis(1)).unwrap();
        std::thread::sleep(Duration::from_millis(20));
        // A store whose deadline is 5 ticks away sees it pass only once the call runs.
        let mut store = wasmtime::Store::new(&engine, ());
        let module =
            wasmtime::Module::new(&engine, "(module (func (export \"spin\") (loop br 0)))")
                .unwrap();
        let instance = wasmtime::Instance::new(&mut store, &module, &[]).unwrap();
        let spin = instance
            .get_typed_func::<(), ()>(&mut store, "spin")
            .unwrap();
        let _call = ticker.running();
        let deadline = Duration::from_millis(5);
        let started = Instant::now();
        store.set_epoch_deadline(ticker.ticks_for(deadline, started));
        let trap = spin.call(&mut store, ()).unwrap_err();
        assert_eq!(trap.downcast_ref(), Some(&wasmtime::Trap::Interrupt));
        assert!(started.elapsed() >= deadline, "{:?}", started.elapsed());
    }
}
