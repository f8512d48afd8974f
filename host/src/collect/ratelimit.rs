//! Rate limit for repeated log lines: a module failing the same metric every second
//! must not flood the log. The first line of each key is let through, then at most one
//! per window, carrying how many were suppressed in between. Pure: the caller passes
//! the time.

use std::collections::HashMap;
use std::hash::Hash;
use std::time::Duration;

use tokio::time::Instant;

/// The window for one key's repeated lines.
pub const LOG_WINDOW: Duration = Duration::from_secs(60);
/// Keys remembered at most; beyond it the oldest windows are forgotten, so that a module
/// inventing metric names cannot grow the limiter without bound.
pub const MAX_KEYS: usize = 4096;

#[derive(Debug)]
pub struct RateLimiter<K> {
    window: Duration,
    keys: HashMap<K, Window>,
}

#[derive(Debug, Clone, Copy)]
struct Window {
    opened: Instant,
    suppressed: u64,
}

impl<K: Hash + Eq + Clone> RateLimiter<K> {
    pub fn new(window: Duration) -> RateLimiter<K> {
        RateLimiter {
            window,
            keys: HashMap::new(),
        }
    }

    /// `Some(suppressed)` when a line for `key` may be logged now, with the number of
    /// lines suppressed since the last one; `None` when this one is to be suppressed.
    pub fn allow(&mut self, key: &K, now: Instant) -> Option<u64> {
        if let Some(window) = self.keys.get_mut(key) {
            if now.duration_since(window.opened) < self.window {
                window.suppressed += 1;
                return None;
            }
            let suppressed = window.suppressed;
            *window = Window {
                opened: now,
                suppressed: 0,
            };
            return Some(suppressed);
        }
        if self.keys.len() >= MAX_KEYS {
            let window = self.window;
            self.keys
                .retain(|_, w| now.duration_since(w.opened) < window);
        }
        if self.keys.len() < MAX_KEYS {
            self.keys.insert(
                key.clone(),
                Window {
                    opened: now,
                    suppressed: 0,
                },
            );
        }
        Some(0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_line_per_window_per_key_with_the_suppressed_count() {
        let start = Instant::now();
        let mut limiter = RateLimiter::new(Duration::from_secs(60));
        let at = |s: u64| start + Duration::from_secs(s);
        assert_eq!(limiter.allow(&"a", at(0)), Some(0));
        assert_eq!(limiter.allow(&"b", at(1)), Some(0), "keys are independent");
        for s in 1..60 {
            assert_eq!(limiter.allow(&"a", at(s)), None);
        }
        assert_eq!(limiter.allow(&"a", at(60)), Some(59));
        assert_eq!(limiter.allow(&"a", at(61)), None);
    }

    #[test]
    fn key_count_is_bounded() {
        let now = Instant::now();
        let mut limiter = RateLimiter::new(Duration::from_secs(60));
        for i in 0..(MAX_KEYS + 10) {
            assert_eq!(limiter.allow(&i, now), Some(0));
        }
        assert!(limiter.keys.len() <= MAX_KEYS);
    }
}
