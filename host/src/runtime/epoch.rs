//! The epoch ticker: a thread that advances the engine's epoch at a fixed period,
//! which is what turns a store's epoch deadline into a wall-clock deadline.
//!
//! Every loaded module and instance holds the ticker (through an `Arc`), so it keeps
//! ticking while any of them can still run code; it stops when the last one goes.

use std::sync::mpsc::{self, RecvTimeoutError, Sender};
use std::time::{Duration, Instant};

use wasmtime::Engine;

/// Default period of the epoch ticker: the granularity of every deadline.
pub const DEFAULT_EPOCH_TICK: Duration = Duration::from_millis(10);

#[derive(Debug)]
pub(crate) struct EpochTicker {
    tick: Duration,
    /// Dropping the sender disconnects the channel, which ends the thread.
    _stop: Sender<()>,
}

impl EpochTicker {
    pub(crate) fn start(engine: Engine, tick: Duration) -> std::io::Result<EpochTicker> {
        let (stop, stopped) = mpsc::channel::<()>();
        std::thread::Builder::new()
            .name("wasmond-epoch".into())
            .spawn(move || {
                // The epoch follows the clock, not the count of wake-ups: on a busy
                // machine a late wake-up catches up instead of stretching every deadline.
                let started = Instant::now();
                let mut epoch: u128 = 0;
                while let Err(RecvTimeoutError::Timeout) = stopped.recv_timeout(tick) {
                    let due = started.elapsed().as_nanos() / tick.as_nanos().max(1);
                    while epoch < due {
                        engine.increment_epoch();
                        epoch += 1;
                    }
                }
            })?;
        Ok(EpochTicker { tick, _stop: stop })
    }

    /// Epoch ticks to allow for `deadline`: rounded up, plus one because the first
    /// tick may come at any moment after the deadline is set. A loop is therefore
    /// stopped after `deadline` and before `deadline` + 2 ticks.
    pub(crate) fn ticks_for(&self, deadline: Duration) -> u64 {
        let tick = self.tick.as_nanos().max(1);
        let ticks = deadline.as_nanos().div_ceil(tick);
        u64::try_from(ticks).unwrap_or(u64::MAX - 1).max(1) + 1
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deadlines_round_up_and_add_one_tick() {
        let engine = Engine::default();
        let ticker = EpochTicker::start(engine, Duration::from_millis(10)).unwrap();
        assert_eq!(ticker.ticks_for(Duration::from_millis(100)), 11);
        assert_eq!(ticker.ticks_for(Duration::from_millis(101)), 12);
        assert_eq!(ticker.ticks_for(Duration::ZERO), 2);
        assert_eq!(ticker.ticks_for(Duration::MAX), u64::MAX);
    }
}
