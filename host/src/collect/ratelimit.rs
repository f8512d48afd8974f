//! Rate limits for the engine's log lines about modules: a module failing the same metric
//! every second must not flood the log, nor may one failing every call of thousands of
//! metrics. Two levels: the first line of each key (a module's metric) is let through,
//! then at most one per window, carrying how many were suppressed in between
//! ([`RateLimiter`]); and each module has a budget of lines ([`ModuleLogLimiter`], a
//! token bucket like the one on the module's own log), whose suppressed lines are
//! counted and summarized on the module's next line. Pure: the caller passes the time.

use std::collections::HashMap;
use std::hash::Hash;
use std::time::Duration;

use tokio::time::Instant;

/// The window for one key's repeated lines.
pub(crate) const LOG_WINDOW: Duration = Duration::from_secs(60);
/// Keys remembered at most; beyond it the oldest windows are forgotten, so that a module
/// inventing metric names cannot grow the limiter without bound.
pub(crate) const MAX_KEYS: usize = 4096;

/// Lines about one module the engine may log in a burst.
pub(crate) const MODULE_BURST_LINES: u32 = 20;
/// Lines about one module the engine may log per minute in the long run.
pub(crate) const MODULE_LINES_PER_MINUTE: u32 = 30;

/// Why lines before the one let through were not logged.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Suppressed {
    /// Lines of the same key within its window.
    pub similar: u64,
    /// Lines of the module over its budget.
    pub over_budget: u64,
}

impl std::fmt::Display for Suppressed {
    /// The suffix of the line let through: empty when nothing was suppressed.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.similar > 0 {
            write!(f, " ({} similar lines suppressed)", self.similar)?;
        }
        if self.over_budget > 0 {
            write!(
                f,
                " ({} lines suppressed by the module's log budget of {MODULE_BURST_LINES} lines, then {MODULE_LINES_PER_MINUTE} a minute)",
                self.over_budget
            )?;
        }
        Ok(())
    }
}

/// Per module: a [`RateLimiter`] of its keys, and its budget of lines.
#[derive(Debug)]
pub(crate) struct ModuleLogLimiter {
    window: Duration,
    modules: HashMap<String, ModuleBudget>,
}

#[derive(Debug)]
struct ModuleBudget {
    keys: RateLimiter<String>,
    tokens: f64,
    refilled_at: Instant,
    over_budget: u64,
}

impl ModuleLogLimiter {
    pub fn new(window: Duration) -> ModuleLogLimiter {
        ModuleLogLimiter {
            window,
            modules: HashMap::new(),
        }
    }

    /// `Some(suppressed)` when a line about `module`'s `key` may be logged now, with
    /// what was suppressed before it; `None` when this one is suppressed.
    pub fn allow(&mut self, module: &str, key: &str, now: Instant) -> Option<Suppressed> {
        let window = self.window;
        let budget = self
            .modules
            .entry(module.to_string())
            .or_insert_with(|| ModuleBudget {
                keys: RateLimiter::new(window),
                tokens: f64::from(MODULE_BURST_LINES),
                refilled_at: now,
                over_budget: 0,
            });
        let similar = budget.keys.allow(&key.to_string(), now)?;
        let elapsed = now.saturating_duration_since(budget.refilled_at);
        budget.refilled_at = now;
        let refill = elapsed.as_secs_f64() * f64::from(MODULE_LINES_PER_MINUTE) / 60.0;
        budget.tokens = (budget.tokens + refill).min(f64::from(MODULE_BURST_LINES));
        if budget.tokens < 1.0 {
            // This line and the similar ones its key held back.
            budget.over_budget += 1 + similar;
            return None;
        }
        budget.tokens -= 1.0;
        Some(Suppressed {
            similar,
            over_budget: std::mem::take(&mut budget.over_budget),
        })
    }

    /// Forgets the modules not in `keep` (removed by a reload).
    pub fn retain(&mut self, keep: impl Fn(&str) -> bool) {
        self.modules.retain(|module, _| keep(module));
    }
}

#[derive(Debug)]
pub(crate) struct RateLimiter<K> {
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
    fn a_module_failing_every_call_of_thousands_of_metrics_is_held_to_its_budget() {
        let start = Instant::now();
        let mut limiter = ModuleLogLimiter::new(LOG_WINDOW);
        let mut logged = 0;
        let mut summarized = 0;
        // 4096 metrics failing every second for two minutes.
        for second in 0..120 {
            let now = start + Duration::from_secs(second);
            for metric in 0..4096 {
                if let Some(suppressed) = limiter.allow("flood", &format!("m{metric}"), now) {
                    logged += 1;
                    summarized += suppressed.over_budget + suppressed.similar;
                }
            }
        }
        let budget = u64::from(MODULE_BURST_LINES) + 2 * u64::from(MODULE_LINES_PER_MINUTE);
        assert!(logged <= budget, "{logged} lines logged, over {budget}");
        assert!(
            logged >= u64::from(MODULE_BURST_LINES),
            "{logged} lines logged"
        );
        // What the first burst left out is told with the next lines let through.
        assert!(
            summarized >= 4096 - u64::from(MODULE_BURST_LINES),
            "suppressed lines are counted: {summarized}"
        );
        // Another module's line is its own budget's.
        let later = start + Duration::from_secs(120);
        assert_eq!(
            limiter.allow("healthy", "m0", later),
            Some(Suppressed::default())
        );
    }

    #[test]
    fn the_next_line_says_what_the_budget_suppressed() {
        let start = Instant::now();
        let mut limiter = ModuleLogLimiter::new(LOG_WINDOW);
        for metric in 0..MODULE_BURST_LINES {
            assert!(limiter.allow("m", &metric.to_string(), start).is_some());
        }
        assert_eq!(limiter.allow("m", "late", start), None);
        assert_eq!(limiter.allow("m", "later", start), None);
        let next = limiter
            .allow("m", "next", start + Duration::from_secs(2))
            .unwrap();
        assert_eq!(next.over_budget, 2);
        assert_eq!(
            next.to_string(),
            " (2 lines suppressed by the module's log budget of 20 lines, then 30 a minute)"
        );
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
