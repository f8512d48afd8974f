//! The epoch ticker: a thread that advances the engine's epoch at a fixed period,
//! which is what turns a store's epoch deadline into a wall-clock deadline.
//!
//! Every loaded module and instance holds the ticker (through an `Arc`), so it keeps
//! ticking while any of them can still run code; it stops when the last one goes.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{self, RecvTimeoutError, Sender};
use std::time::{Duration, Instant};

use wasmtime::Engine;

/// Default period of the epoch ticker: the granularity of every deadline.
pub const DEFAULT_EPOCH_TICK: Duration = Duration::from_millis(10);

#[derive(Debug)]
pub(crate) struct EpochTicker {
    clock: Arc<TickClock>,
    /// Dropping the sender disconnects the channel, which ends the thread.
    _stop: Sender<()>,
}

/// What the ticker and the stores setting deadlines share.
#[derive(Debug)]
struct TickClock {
    started: Instant,
    tick: Duration,
    /// Ticks applied to the engine so far.
    applied: AtomicU64,
}

impl TickClock {
    /// Ticks that should have been applied by `now`.
    fn due(&self, now: Instant) -> u64 {
        nanos(now.saturating_duration_since(self.started)) / nanos(self.tick).max(1)
    }
}

impl EpochTicker {
    pub(crate) fn start(engine: Engine, tick: Duration) -> std::io::Result<EpochTicker> {
        let clock = Arc::new(TickClock {
            started: Instant::now(),
            tick,
            applied: AtomicU64::new(0),
        });
        let (stop, stopped) = mpsc::channel::<()>();
        let shared = clock.clone();
        std::thread::Builder::new()
            .name("wasmond-epoch".into())
            .spawn(move || {
                // The epoch follows the clock, not the count of wake-ups: on a busy
                // machine a late wake-up catches up instead of stretching every deadline.
                while let Err(RecvTimeoutError::Timeout) = stopped.recv_timeout(tick) {
                    let due = shared.due(Instant::now());
                    while shared.applied.load(Ordering::Relaxed) < due {
                        engine.increment_epoch();
                        shared.applied.fetch_add(1, Ordering::Relaxed);
                    }
                }
            })?;
        Ok(EpochTicker { clock, _stop: stop })
    }

    /// Epoch ticks to allow, from `now`, for `deadline`: rounded up, plus one
    /// because the next tick may come at any moment, plus the ticks the ticker is
    /// late with (it catches up at its next wake-up). A loop is therefore stopped
    /// after `deadline` and before `deadline` + 2 ticks plus the ticker's wake-up delay.
    pub(crate) fn ticks_for(&self, deadline: Duration, now: Instant) -> u64 {
        let ticks = nanos(deadline).div_ceil(nanos(self.clock.tick).max(1));
        let late = self
            .clock
            .due(now)
            .saturating_sub(self.clock.applied.load(Ordering::Relaxed));
        ticks.max(1).saturating_add(1).saturating_add(late)
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
        let now = ticker.clock.started;
        assert_eq!(ticker.ticks_for(Duration::from_secs(3600), now), 2);
        assert_eq!(ticker.ticks_for(Duration::from_secs(3601), now), 3);
        assert_eq!(ticker.ticks_for(Duration::ZERO, now), 2);
        assert!(
            ticker.ticks_for(Duration::MAX, now) > 5_000_000,
            "saturates at 584 years"
        );
    }

    #[test]
    fn a_late_ticker_is_allowed_for() {
        let ticker = EpochTicker::start(Engine::default(), Duration::from_secs(3600)).unwrap();
        // Two hours in, the ticker (asleep for an hour per tick) has applied nothing yet.
        let later = ticker.clock.started + Duration::from_secs(7200);
        assert_eq!(ticker.ticks_for(Duration::from_secs(3600), later), 2 + 2);
    }
}
