//! One collection group's clock and send policy, without I/O: when to collect, and which
//! collected values to send, with gmond's semantics (gmond.c `process_collection_groups`).
//!
//! - `collect_every = N` collects at start and then every N seconds; `collect_once`
//!   collects at start only (and again for metrics a restarted module brings back).
//! - The whole group is sent at start, then whenever `time_threshold` has passed since
//!   its last send.
//! - Each collected number is compared with the value collected before it; when it
//!   moved by `value_threshold` or more (gmond compares with `>=`), the whole group is
//!   sent now. A string that changed also sends the group (gmond never looks at strings;
//!   wasmond does so that a changed string is not hidden for a whole `time_threshold`).
//!
//! Values of one group arrive in slices, one per module, each when its module answers.
//! A slow module must not hold back the others, so a cycle's decision is made slice by
//! slice: once the cycle is sending (time due at its start, or a threshold crossed by a
//! slice), every slice of the cycle is sent as it arrives, and slices that arrived
//! before the decision are sent with the one that triggered it. A metric whose module
//! failed this cycle is not re-sent with a stale value: it keeps its last value in the
//! store until TMAX/DMAX says otherwise.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use tokio::time::Instant;

use super::select::{Collect, MetricKey};
use crate::metric::MetricValue;

/// Epochs come from one counter for the whole process, so a group that a reload
/// rebuilds never reuses an epoch that a report still in flight carries.
fn next_epoch() -> u64 {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    NEXT.fetch_add(1, Ordering::Relaxed)
}

/// The scheduler's state for one collection group.
#[derive(Debug)]
pub(crate) struct GroupState {
    collect: Collect,
    time_threshold: Duration,
    /// `None` once a `collect_once` group has collected everything it has.
    next_collect: Option<Instant>,
    next_send: Instant,
    metrics: Vec<MetricSlot>,
    /// Each metric's slot, for answers that arrive after a re-plan.
    slot_of: HashMap<MetricKey, usize>,
    epoch: u64,
    cycle: Cycle,
}

#[derive(Debug, Clone)]
struct MetricSlot {
    key: MetricKey,
    value_threshold: Option<f64>,
    last: Option<MetricValue>,
    /// Whether `last` came from the most recent collection (a failed one clears it).
    fresh: bool,
}

#[derive(Debug, Default)]
struct Cycle {
    sending: bool,
    /// Arrived in this cycle, not sent yet (the cycle has not decided to send).
    held: Vec<usize>,
}

/// What a group wants done now.
#[derive(Debug, Default, PartialEq, Eq)]
pub(crate) struct Tick {
    /// Start a collection of every metric of the group.
    pub collect: bool,
    /// Send these metrics' current values now (a send without a collection).
    pub send: Vec<usize>,
}

impl GroupState {
    /// A group that collects and sends at `now`.
    pub fn new(collect: Collect, time_threshold: Duration, now: Instant) -> GroupState {
        GroupState {
            collect,
            time_threshold,
            next_collect: Some(now),
            next_send: now,
            metrics: Vec::new(),
            slot_of: HashMap::new(),
            epoch: next_epoch(),
            cycle: Cycle::default(),
        }
    }

    /// Sets the metrics the group collects (modules came or went) and returns the slots
    /// of the metrics it did not have. Metrics it already had keep their values. The
    /// caller collects the new ones at once: the current cycle is made a sending one,
    /// so they are announced without waiting for a whole `time_threshold`.
    pub(crate) fn set_metrics(
        &mut self,
        metrics: impl IntoIterator<Item = (MetricKey, Option<f64>)>,
    ) -> Vec<usize> {
        let mut old: HashMap<MetricKey, MetricSlot> = std::mem::take(&mut self.metrics)
            .into_iter()
            .map(|slot| (slot.key.clone(), slot))
            .collect();
        let mut added = Vec::new();
        self.slot_of.clear();
        for (key, value_threshold) in metrics {
            let kept = old.remove(&key);
            if kept.is_none() {
                added.push(self.metrics.len());
            }
            let (last, fresh) = kept.map_or((None, false), |slot| (slot.last, slot.fresh));
            self.slot_of.insert(key.clone(), self.metrics.len());
            self.metrics.push(MetricSlot {
                key,
                value_threshold,
                last,
                fresh,
            });
        }
        self.epoch = next_epoch();
        // Held slots are numbered in the old layout.
        self.cycle = Cycle {
            sending: self.cycle.sending || !added.is_empty(),
            held: Vec::new(),
        };
        added
    }

    /// Changes whenever the slots are renumbered, and is never shared with another
    /// group (not even one that a reload built in the same place): results carry the
    /// epoch they were asked for in, and any other is matched by key instead.
    pub fn epoch(&self) -> u64 {
        self.epoch
    }

    /// Makes the next collection send the whole group (a peer asked for metadata).
    pub(crate) fn send_soon(&mut self, now: Instant) {
        self.next_send = self.next_send.min(now);
    }

    pub fn len(&self) -> usize {
        self.metrics.len()
    }

    pub fn is_empty(&self) -> bool {
        self.metrics.is_empty()
    }

    pub fn key(&self, index: usize) -> &MetricKey {
        &self.metrics[index].key
    }

    pub(crate) fn index_of(&self, key: &MetricKey) -> Option<usize> {
        self.slot_of.get(key).copied()
    }

    /// The value last collected for metric `index`.
    pub fn value(&self, index: usize) -> Option<&MetricValue> {
        self.metrics[index].last.as_ref()
    }

    /// When the group next has something to do.
    pub(crate) fn next_event(&self) -> Instant {
        self.next_collect
            .map_or(self.next_send, |collect| collect.min(self.next_send))
    }

    /// Advances the clock to `now`: starts a collection and/or sends cached values.
    pub(crate) fn tick(&mut self, now: Instant) -> Tick {
        let send_due = self.next_send <= now;
        let collect_due = self.next_collect.is_some_and(|at| at <= now);
        if collect_due {
            let planned = self.next_collect.unwrap_or(now);
            self.next_collect = self.following_collection(now);
            self.cycle = Cycle {
                sending: send_due,
                held: Vec::new(),
            };
            if send_due {
                // Counted from the planned collection, so that a late first collection
                // (its module was still starting) does not put the sends out of step
                // with the collections for good.
                self.next_send =
                    later_than(planned + self.time_threshold, now, self.time_threshold);
            }
            return Tick {
                collect: true,
                send: Vec::new(),
            };
        }
        if send_due {
            self.next_send = later_than(
                self.next_send + self.time_threshold,
                now,
                self.time_threshold,
            );
            let fresh = (0..self.metrics.len())
                .filter(|&i| self.metrics[i].fresh)
                .collect();
            return Tick {
                collect: false,
                send: fresh,
            };
        }
        Tick::default()
    }

    /// Keeps collections on a fixed grid from the group's start (no drift from
    /// processing time); after a stall the missed ones are skipped, not made up in a burst.
    fn following_collection(&self, now: Instant) -> Option<Instant> {
        match (self.collect, self.next_collect) {
            (Collect::Every(every), Some(planned)) => {
                let behind =
                    now.saturating_duration_since(planned).as_nanos() / every.as_nanos().max(1);
                let steps = u32::try_from(behind + 1).unwrap_or(u32::MAX);
                Some(planned + every * steps)
            }
            (Collect::Every(every), None) => Some(now + every),
            (Collect::Once, _) => None,
        }
    }

    /// Records one module's answers for this cycle (`None`: the call failed or was
    /// skipped) and returns the metrics to send now.
    pub fn collected(
        &mut self,
        now: Instant,
        results: impl IntoIterator<Item = (usize, Option<MetricValue>)>,
    ) -> Vec<usize> {
        let mut arrived = Vec::new();
        let mut crossed = false;
        for (index, value) in results {
            let Some(slot) = self.metrics.get_mut(index) else {
                continue;
            };
            match value {
                Some(value) => {
                    crossed |= slot
                        .last
                        .as_ref()
                        .is_some_and(|last| moved(slot.value_threshold, last, &value));
                    slot.last = Some(value);
                    slot.fresh = true;
                    arrived.push(index);
                }
                None => slot.fresh = false,
            }
        }
        if crossed && !self.cycle.sending {
            self.cycle.sending = true;
            self.next_send = now + self.time_threshold;
        }
        if self.cycle.sending {
            let mut send = std::mem::take(&mut self.cycle.held);
            send.extend(arrived);
            send
        } else {
            self.cycle.held.extend(arrived);
            Vec::new()
        }
    }
}

/// `at`, or `now + period` when `at` is already past.
fn later_than(at: Instant, now: Instant, period: Duration) -> Instant {
    if at > now { at } else { now + period }
}

/// Whether a value moved enough since the previous collection to send its group.
fn moved(value_threshold: Option<f64>, last: &MetricValue, now: &MetricValue) -> bool {
    match (last.as_f64(), now.as_f64()) {
        (Some(last), Some(now)) => {
            value_threshold.is_some_and(|t| t >= 0.0 && (last - now).abs() >= t)
        }
        _ => last != now,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::time::{advance, pause};

    const SEC: Duration = Duration::from_secs(1);

    fn key(name: &str) -> MetricKey {
        MetricKey::new("m", name)
    }

    fn group(collect: Collect, time_threshold: u64, metrics: &[(&str, Option<f64>)]) -> GroupState {
        let now = Instant::now();
        let mut state = GroupState::new(collect, Duration::from_secs(time_threshold), now);
        state.set_metrics(metrics.iter().map(|(name, t)| (key(name), *t)));
        state
    }

    fn double(v: f64) -> Option<MetricValue> {
        Some(MetricValue::Double(v))
    }

    /// Runs one collection of the group if one is due, answering every metric at once.
    fn step(state: &mut GroupState, values: &[Option<MetricValue>]) -> (bool, Vec<usize>) {
        let now = Instant::now();
        let tick = state.tick(now);
        if tick.collect {
            let sent = state.collected(now, values.iter().cloned().enumerate());
            (true, sent)
        } else {
            (false, tick.send)
        }
    }

    #[tokio::test]
    async fn collect_every_collects_on_its_period_without_drift() {
        pause();
        let mut state = group(
            Collect::Every(Duration::from_secs(20)),
            3600,
            &[("a", None)],
        );
        let start = Instant::now();
        assert_eq!(
            step(&mut state, &[double(1.0)]),
            (true, vec![0]),
            "collect and send at start"
        );
        assert_eq!(state.next_event(), start + Duration::from_secs(20));
        advance(Duration::from_secs(19)).await;
        assert_eq!(state.tick(Instant::now()), Tick::default());
        advance(SEC + Duration::from_millis(300)).await;
        assert_eq!(
            step(&mut state, &[double(1.0)]),
            (true, vec![]),
            "collected, not sent"
        );
        assert_eq!(
            state.next_event(),
            start + Duration::from_secs(40),
            "late tick does not shift the rhythm"
        );
        advance(Duration::from_secs(100)).await;
        assert!(
            state.tick(Instant::now()).collect,
            "at 120.3 s, for the one due at 40 s"
        );
        assert_eq!(
            state.next_event(),
            start + Duration::from_secs(140),
            "no burst, same grid"
        );
    }

    #[tokio::test]
    async fn a_late_first_collection_keeps_sends_in_step_with_collections() {
        pause();
        let start = Instant::now();
        let mut state = GroupState::new(
            Collect::Every(Duration::from_secs(1)),
            Duration::from_secs(1),
            start,
        );
        state.set_metrics([(key("a"), None)]);
        advance(Duration::from_millis(620)).await;
        assert_eq!(step(&mut state, &[double(1.0)]), (true, vec![0]));
        for _ in 0..3 {
            advance(Duration::from_millis(380)).await;
            assert_eq!(
                step(&mut state, &[double(1.0)]),
                (true, vec![0]),
                "sent with each collection"
            );
            advance(Duration::from_millis(620)).await;
            assert_eq!(state.tick(Instant::now()), Tick::default());
        }
    }

    #[tokio::test]
    async fn collect_once_collects_at_start_then_only_resends_on_time_threshold() {
        pause();
        let mut state = group(Collect::Once, 1800, &[("cpu_num", None)]);
        assert_eq!(
            step(&mut state, &[Some(MetricValue::UInt16(4))]),
            (true, vec![0])
        );
        advance(Duration::from_secs(1799)).await;
        assert_eq!(state.tick(Instant::now()), Tick::default());
        advance(SEC).await;
        assert_eq!(
            state.tick(Instant::now()),
            Tick {
                collect: false,
                send: vec![0]
            }
        );
        assert_eq!(state.value(0), Some(&MetricValue::UInt16(4)));
        advance(Duration::from_secs(1800)).await;
        assert_eq!(
            state.tick(Instant::now()),
            Tick {
                collect: false,
                send: vec![0]
            }
        );
    }

    #[tokio::test]
    async fn time_threshold_sends_the_whole_group() {
        pause();
        let mut state = group(
            Collect::Every(Duration::from_secs(10)),
            30,
            &[("a", Some(100.0)), ("b", None)],
        );
        assert_eq!(
            step(&mut state, &[double(1.0), double(2.0)]),
            (true, vec![0, 1])
        );
        let mut sends = Vec::new();
        for second in (10..=60).step_by(10) {
            advance(Duration::from_secs(10)).await;
            let (_, sent) = step(&mut state, &[double(second as f64), double(2.0)]);
            if !sent.is_empty() {
                sends.push((second, sent));
            }
        }
        assert_eq!(sends, [(30, vec![0, 1]), (60, vec![0, 1])]);
    }

    #[tokio::test]
    async fn value_threshold_compares_with_the_previous_collection_and_sends_the_group() {
        pause();
        let mut state = group(
            Collect::Every(SEC),
            3600,
            &[("cpu_user", Some(5.0)), ("cpu_idle", None)],
        );
        step(&mut state, &[double(10.0), double(90.0)]);
        let mut sends = Vec::new();
        // 10 -> 14 (4, no) -> 18 (4 since the last collection, no: not since the last
        // send) -> 23 (5: >=, yes) -> 20 (3, no) -> 30 (10, yes).
        for value in [14.0, 18.0, 23.0, 20.0, 30.0] {
            advance(SEC).await;
            let (_, sent) = step(&mut state, &[double(value), double(50.0)]);
            sends.push(sent);
        }
        assert_eq!(sends, [vec![], vec![], vec![0, 1], vec![], vec![0, 1]]);
    }

    #[tokio::test]
    async fn a_threshold_send_restarts_the_time_threshold() {
        pause();
        let mut state = group(
            Collect::Every(Duration::from_secs(10)),
            30,
            &[("a", Some(1.0))],
        );
        step(&mut state, &[double(0.0)]);
        advance(Duration::from_secs(20)).await;
        assert_eq!(step(&mut state, &[double(5.0)]).1, [0], "threshold at 20 s");
        advance(Duration::from_secs(10)).await;
        assert_eq!(
            step(&mut state, &[double(5.0)]).1,
            Vec::<usize>::new(),
            "not at 30 s"
        );
        advance(Duration::from_secs(20)).await;
        assert_eq!(step(&mut state, &[double(5.0)]).1, [0], "at 50 s = 20 + 30");
    }

    #[tokio::test]
    async fn unset_threshold_never_triggers_but_changed_strings_do() {
        pause();
        let mut state = group(Collect::Every(SEC), 3600, &[("n", None), ("s", None)]);
        let text = |s: &str| Some(MetricValue::String(s.into()));
        step(&mut state, &[double(0.0), text("a")]);
        advance(SEC).await;
        assert_eq!(
            step(&mut state, &[double(1e9), text("a")]).1,
            Vec::<usize>::new()
        );
        advance(SEC).await;
        assert_eq!(step(&mut state, &[double(1e9), text("b")]).1, [0, 1]);
    }

    #[tokio::test]
    async fn slices_are_sent_as_they_arrive_once_the_cycle_sends() {
        pause();
        let mut state = group(
            Collect::Every(SEC),
            3600,
            &[("fast", Some(1.0)), ("slow", Some(1.0))],
        );
        step(&mut state, &[double(0.0), double(0.0)]);
        advance(SEC).await;
        let now = Instant::now();
        assert!(state.tick(now).collect);
        assert_eq!(
            state.collected(now, [(0, double(0.5))]),
            Vec::<usize>::new(),
            "held"
        );
        // The slow module's slice crosses its threshold: the held slice goes with it.
        assert_eq!(state.collected(now, [(1, double(7.0))]), [0, 1]);
    }

    #[tokio::test]
    async fn failed_metrics_are_not_resent_with_stale_values() {
        pause();
        let mut state = group(
            Collect::Every(Duration::from_secs(100)),
            10,
            &[("ok", None), ("dead", None)],
        );
        step(&mut state, &[double(1.0), None]);
        advance(Duration::from_secs(10)).await;
        assert_eq!(
            state.tick(Instant::now()),
            Tick {
                collect: false,
                send: vec![0]
            }
        );
        assert_eq!(state.value(1), None);
    }

    #[tokio::test]
    async fn new_metrics_are_sent_when_they_arrive_and_old_ones_keep_their_values() {
        pause();
        let mut state = group(Collect::Once, 3600, &[("a", None)]);
        step(&mut state, &[double(1.0)]);
        advance(Duration::from_secs(5)).await;
        let now = Instant::now();
        assert_eq!(state.tick(now), Tick::default());
        let epoch = state.epoch();
        assert_eq!(state.set_metrics([(key("b"), None), (key("a"), None)]), [0]);
        assert_ne!(state.epoch(), epoch);
        assert_eq!(state.value(1), Some(&MetricValue::Double(1.0)));
        assert_eq!(state.index_of(&key("a")), Some(1));
        assert_eq!(
            state.collected(now, [(0, double(2.0))]),
            [0],
            "the new module's slice goes out"
        );
        assert_eq!(state.tick(now), Tick::default(), "nothing else is due");
    }

    /// Issue 11: a reload rebuilds the groups; a report asked for before it must not be
    /// applied by position to the new layout, so the new group's epoch cannot be the old one's.
    #[tokio::test]
    async fn a_group_rebuilt_by_a_reload_never_reuses_an_epoch() {
        pause();
        let before = group(Collect::Once, 60, &[("a", None), ("b", None)]);
        let rebuilt = group(Collect::Once, 60, &[("b", None), ("a", None)]);
        assert_ne!(before.epoch(), rebuilt.epoch());
        assert_eq!(
            rebuilt.index_of(&key("a")),
            Some(1),
            "matched by key instead"
        );
    }

    #[tokio::test]
    async fn send_soon_sends_the_group_with_the_next_collection() {
        pause();
        let mut state = group(
            Collect::Every(Duration::from_secs(10)),
            3600,
            &[("a", None)],
        );
        step(&mut state, &[double(1.0)]);
        advance(Duration::from_secs(10)).await;
        assert_eq!(step(&mut state, &[double(1.0)]).1, Vec::<usize>::new());
        state.send_soon(Instant::now());
        advance(Duration::from_secs(10)).await;
        assert_eq!(step(&mut state, &[double(1.0)]).1, [0]);
    }
}
