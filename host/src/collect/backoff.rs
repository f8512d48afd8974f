//! Exponential backoff for a module that trapped or failed to start: 1 s, doubling, at
//! most 5 min; a success resets it. Pure: the caller passes the time.

use std::time::Duration;

use tokio::time::Instant;

/// The first delay after a failure.
pub(crate) const INITIAL_BACKOFF: Duration = Duration::from_secs(1);
/// The longest delay between two attempts.
pub(crate) const MAX_BACKOFF: Duration = Duration::from_secs(300);

#[derive(Debug, Clone, Default)]
pub(crate) struct Backoff {
    /// The delay applied after the most recent failure; `None` after a success.
    delay: Option<Duration>,
    until: Option<Instant>,
}

impl Backoff {
    pub fn new() -> Backoff {
        Backoff::default()
    }

    /// Records a failure at `now`; returns how long to wait before the next attempt.
    pub fn failed(&mut self, now: Instant) -> Duration {
        let delay = match self.delay {
            None => INITIAL_BACKOFF,
            Some(previous) => (previous * 2).min(MAX_BACKOFF),
        };
        self.delay = Some(delay);
        self.until = Some(now + delay);
        delay
    }

    pub fn succeeded(&mut self) {
        *self = Backoff::default();
    }

    /// Whether an attempt may be made at `now`.
    pub fn ready(&self, now: Instant) -> bool {
        self.until.is_none_or(|until| until <= now)
    }

    /// When the current wait ends, if the module is waiting.
    pub fn until(&self) -> Option<Instant> {
        self.until
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn doubles_from_one_second_up_to_five_minutes_and_resets_on_success() {
        let now = Instant::now();
        let mut backoff = Backoff::new();
        assert!(backoff.ready(now));
        let delays: Vec<u64> = (0..12).map(|_| backoff.failed(now).as_secs()).collect();
        assert_eq!(delays, [1, 2, 4, 8, 16, 32, 64, 128, 256, 300, 300, 300]);
        assert!(!backoff.ready(now + Duration::from_secs(299)));
        assert!(backoff.ready(now + Duration::from_secs(300)));
        backoff.succeeded();
        assert!(backoff.ready(now));
        assert_eq!(backoff.failed(now), Duration::from_secs(1));
    }
}
