//! One host's metrics, kept for both ways they are used: found by name in one hash
//! probe (the scheduler and the receiver write every value by name, thousands a second)
//! and walked in name order (every document the readers render).
//!
//! An ordered map alone made every write a walk down a B-tree, comparing the name with a
//! dozen others; at 10 000 metrics a second that comparison was the host's largest cost
//! outside the wasm calls. The metrics live in one vector; a hash map finds a name's
//! place and an ordered map lists the places by name. Both keys share the name's one
//! allocation, and only a new or removed metric touches the ordered map.
//!
//! A writer that comes back to the same metrics (the scheduler, every collection) keeps
//! each one's [`Place`] and goes straight to it: no probe, no name compared, which at
//! ten thousand metrics a second was mostly cache misses. A place names the layout it
//! was taken in; a removal moves a metric, so it starts a new layout, and a place from
//! another layout (or another host) finds nothing.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use super::Metric;

#[derive(Debug)]
pub(super) struct Metrics {
    /// Unique over every host's metrics; changes whenever a metric moves.
    layout: u64,
    entries: Vec<(Arc<str>, Metric)>,
    /// SipHash (std's default): names come from peers, who must not be able to make
    /// their probes collide.
    by_name: HashMap<Arc<str>, usize>,
    in_order: BTreeMap<Arc<str>, usize>,
}

/// Where a metric is among its host's metrics, while nothing moves (see the module docs).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Place {
    layout: u64,
    index: usize,
}

fn new_layout() -> u64 {
    static LAYOUTS: AtomicU64 = AtomicU64::new(0);
    LAYOUTS.fetch_add(1, Ordering::Relaxed)
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics {
            layout: new_layout(),
            entries: Vec::new(),
            by_name: HashMap::new(),
            in_order: BTreeMap::new(),
        }
    }
}

impl Metrics {
    pub(super) fn len(&self) -> usize {
        self.entries.len()
    }

    #[cfg(test)]
    pub(super) fn get(&self, name: &str) -> Option<&Metric> {
        let &place = self.by_name.get(name)?;
        Some(&self.entries[place].1)
    }

    pub(super) fn place_of(&self, name: &str) -> Option<Place> {
        let &index = self.by_name.get(name)?;
        Some(Place {
            layout: self.layout,
            index,
        })
    }

    /// The metric at `place`, if that place is still current.
    pub(super) fn at_mut(&mut self, place: Place) -> Option<&mut Metric> {
        self.entry_at(place).map(|(_, metric)| metric)
    }

    fn entry_at(&mut self, place: Place) -> Option<&mut (Arc<str>, Metric)> {
        if place.layout != self.layout {
            return None;
        }
        self.entries.get_mut(place.index)
    }

    /// The metric `name`, added as `new()` makes it if it is not there (or `new`'s error).
    pub(super) fn get_or_try_insert<E>(
        &mut self,
        name: &str,
        new: impl FnOnce() -> Result<Metric, E>,
    ) -> Result<&mut Metric, E> {
        if let Some(&place) = self.by_name.get(name) {
            return Ok(&mut self.entries[place].1);
        }
        Ok(self.insert_new(name, new()?))
    }

    fn insert_new(&mut self, name: &str, metric: Metric) -> &mut Metric {
        let name: Arc<str> = name.into();
        let place = self.entries.len();
        self.by_name.insert(Arc::clone(&name), place);
        self.in_order.insert(Arc::clone(&name), place);
        self.entries.push((name, metric));
        &mut self.entries[place].1
    }

    /// Takes `name` out; the last metric moves into its place.
    pub(super) fn remove(&mut self, name: &str) -> Option<Metric> {
        let place = self.by_name.remove(name)?;
        self.in_order.remove(name);
        self.layout = new_layout();
        let (_, metric) = self.entries.swap_remove(place);
        if let Some((moved, _)) = self.entries.get(place) {
            *self.by_name.get_mut(moved).expect("every entry is indexed") = place;
            *self
                .in_order
                .get_mut(moved)
                .expect("every entry is ordered") = place;
        }
        Some(metric)
    }

    /// Keeps only the metrics for which `keep` holds.
    pub(super) fn retain(&mut self, mut keep: impl FnMut(&Metric) -> bool) {
        let doomed: Vec<Arc<str>> = self
            .entries
            .iter()
            .filter(|(_, metric)| !keep(metric))
            .map(|(name, _)| Arc::clone(name))
            .collect();
        for name in doomed {
            self.remove(&name);
        }
    }

    /// Every metric, ordered by name.
    pub(super) fn iter(&self) -> impl Iterator<Item = (&str, &Metric)> {
        self.in_order
            .iter()
            .map(|(name, &place)| (&**name, &self.entries[place].1))
    }

    /// Every metric, in no particular order.
    pub(super) fn values(&self) -> impl Iterator<Item = &Metric> {
        self.entries.iter().map(|(_, metric)| metric)
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;
    use std::time::UNIX_EPOCH;

    use proptest::prelude::*;

    use super::*;
    use crate::store::Origin;

    fn metric(seconds: u64) -> Metric {
        Metric {
            origin: Origin::Own,
            meta: None,
            sample: None,
            updated: UNIX_EPOCH + std::time::Duration::from_secs(seconds),
        }
    }

    #[derive(Debug, Clone)]
    enum Op {
        Insert(u8, u64),
        Remove(u8),
        RetainOdd,
    }

    fn op() -> impl Strategy<Value = Op> {
        prop_oneof![
            4 => (any::<u8>(), any::<u64>()).prop_map(|(name, at)| Op::Insert(name % 40, at % 1000)),
            2 => any::<u8>().prop_map(|name| Op::Remove(name % 40)),
            1 => Just(Op::RetainOdd),
        ]
    }

    proptest! {
        /// After any inserts, removals and retains, the metrics are the ordered map's:
        /// the same names in the same order, each with its own metric; and a place
        /// taken at any time leads to the metric it was taken for, or to nothing.
        #[test]
        fn behaves_as_an_ordered_map(ops in proptest::collection::vec(op(), 0..200)) {
            let mut metrics = Metrics::default();
            let mut model: BTreeMap<String, u64> = BTreeMap::new();
            let mut places: Vec<(String, Place)> = Vec::new();
            for op in ops {
                match op {
                    Op::Insert(name, at) => {
                        let name = format!("m{name}");
                        let entry = metrics.get_or_try_insert(&name, || Ok::<_, ()>(metric(at))).unwrap();
                        let kept = model.entry(name).or_insert(at);
                        prop_assert_eq!(entry.updated, UNIX_EPOCH + std::time::Duration::from_secs(*kept));
                    }
                    Op::Remove(name) => {
                        let name = format!("m{name}");
                        let removed = metrics.remove(&name).map(|m| m.updated);
                        let expected = model.remove(&name).map(|at| UNIX_EPOCH + std::time::Duration::from_secs(at));
                        prop_assert_eq!(removed, expected);
                    }
                    Op::RetainOdd => {
                        let odd = |at: u64| at % 2 == 1;
                        metrics.retain(|m| odd(m.updated.duration_since(UNIX_EPOCH).unwrap().as_secs()));
                        model.retain(|_, at| odd(*at));
                    }
                }
                let listed: Vec<(String, u64)> = metrics
                    .iter()
                    .map(|(name, m)| (name.to_owned(), m.updated.duration_since(UNIX_EPOCH).unwrap().as_secs()))
                    .collect();
                let expected: Vec<(String, u64)> = model.iter().map(|(n, at)| (n.clone(), *at)).collect();
                prop_assert_eq!(listed, expected);
                prop_assert_eq!(metrics.len(), model.len());
                prop_assert_eq!(metrics.values().count(), model.len());
                for (name, at) in &model {
                    prop_assert_eq!(metrics.get(name).map(|m| m.updated), Some(UNIX_EPOCH + std::time::Duration::from_secs(*at)));
                    places.push((name.clone(), metrics.place_of(name).unwrap()));
                }
                for (name, place) in &places {
                    if let Some((found, _)) = metrics.entry_at(*place) {
                        prop_assert_eq!(&**found, name.as_str());
                    }
                }
                let current = |(name, place): &(String, Place)| metrics.place_of(name) == Some(*place);
                places.retain(current);
            }
        }
    }
}
