//! The store's live metrics grouped into Prometheus metric families: what both the
//! exposition ([`super::text`]) and the remote-write requests
//! ([`crate::export::remote_write`]) are made of. Naming, typing, staleness and the
//! conflict rules are described in [`super`].
//!
//! Built in one pass over the store under its read lock, allocating per scrape, never
//! per family or sample: family names are borrowed from each metric's [`Memo`] in the
//! store, found through a hash table of indices into the families, and the members of
//! all families are in one vector in the order found, each family's chained through it. A member is made into what the reader needs (a
//! rendered sample line, a remote-write series) as it is found, while its metric is in
//! the CPU's cache: the store of a large cluster does not fit in it, and going back to
//! each metric in family order would miss it again.

use std::hash::BuildHasher;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Mutex, PoisonError};
use std::time::SystemTime;

use hashbrown::{DefaultHashBuilder, HashTable};

use super::memo::Memo;
use super::{Kind, number};
use crate::store::{HostView, MetricView, View};

/// One metric family: every host's metric that maps to one Prometheus name.
pub(in crate::export) struct Family<'a> {
    /// The stem, then `_<unit>` when it has one.
    name: &'a str,
    pub(in crate::export) kind: Kind,
    pub(in crate::export) unit: Option<&'static str>,
    /// The first and last members, as places in [`Families::members`] ([`NONE`] when it
    /// has none yet).
    first: u32,
    last: u32,
}

/// The end of a chain of members.
const NONE: u32 = u32::MAX;

/// A host's metric in a family.
#[derive(Clone, Copy)]
pub(in crate::export) struct Member<'a> {
    pub(in crate::export) host: HostView<'a>,
    pub(in crate::export) metric: MetricView<'a>,
}

/// A member as it is found, for the reader to make into its `M`.
pub(in crate::export) struct Found<'f, 'a> {
    pub(in crate::export) family: &'f Family<'a>,
    pub(in crate::export) member: Member<'a>,
    /// The member's exposition pieces (its family's name, HELP, its labels).
    pub(in crate::export) memo: Memo<'a>,
    /// Whether this is the family's first member (its founder).
    pub(in crate::export) first: bool,
}

/// The store's live metrics as families, sorted by name, each member made into an `M`.
pub(in crate::export) struct Families<'a, M> {
    names: Names<'a>,
    /// The families' places in `names`, sorted by name.
    order: Vec<u32>,
    /// Every member in host then metric order, with the place of the next member of its
    /// family ([`NONE`] after the last).
    members: Vec<(M, u32)>,
    /// Metrics left out to keep the exposition valid (see [`super`]).
    pub(in crate::export) dropped: usize,
}

/// Samples of the last scrape, so the next one allocates its vector once (a hint: a
/// daemon has one store, whose size changes slowly).
static LAST_SAMPLES: AtomicUsize = AtomicUsize::new(0);

/// The families' order in the last scrape, tried first by the next one (see
/// [`Names::order`]).
static LAST_ORDER: Mutex<Vec<u32>> = Mutex::new(Vec::new());

impl<'a, M> Families<'a, M> {
    /// Groups the store's live metrics into families, in host then metric order, making
    /// each member into an `M` with `make` as it is found.
    pub(in crate::export) fn collect(
        view: View<'a>,
        now: SystemTime,
        mut make: impl FnMut(Found<'_, 'a>) -> M,
    ) -> Families<'a, M> {
        let host_dmax = view.config().host_dmax;
        let mut names = Names::with_capacity(last_order().len());
        let mut members: Vec<(M, u32)> = Vec::with_capacity(LAST_SAMPLES.load(Ordering::Relaxed));
        let mut dropped = 0;
        for host in view.hosts() {
            if expired(host.last_heard(), now, host_dmax) {
                continue;
            }
            for metric in host.metrics() {
                if expired(metric.updated, now, metric.meta.dmax) {
                    continue;
                }
                let memo = Memo::of(metric);
                if memo.kind == Kind::Counter
                    && !number(&metric.sample.value).is_some_and(|v| v >= 0.0)
                {
                    dropped += 1;
                    continue;
                }
                let Some(index) = names.place(memo) else {
                    dropped += 1;
                    continue;
                };
                let place = members.len() as u32;
                let family = &names.list[index as usize];
                let made = make(Found {
                    family,
                    member: Member { host, metric },
                    memo,
                    first: family.first == NONE,
                });
                members.push((made, NONE));
                let family = &mut names.list[index as usize];
                match family.last {
                    NONE => family.first = place,
                    last => members[last as usize].1 = place,
                }
                family.last = place;
            }
        }
        LAST_SAMPLES.store(members.len(), Ordering::Relaxed);
        let order = names.order();
        Families {
            names,
            order,
            members,
            dropped,
        }
    }

    /// Every family, sorted by name.
    pub(in crate::export) fn iter(&self) -> impl Iterator<Item = &Family<'a>> {
        self.order
            .iter()
            .map(|&index| &self.names.list[index as usize])
    }

    /// The family's members, in host then metric order.
    pub(in crate::export) fn members(&self, family: &Family<'a>) -> impl Iterator<Item = &M> {
        let mut next = family.first;
        std::iter::from_fn(move || {
            let (member, after) = self.members.get(next as usize)?;
            next = *after;
            Some(member)
        })
    }

    /// The family's name: the stem, then `_<unit>` when it has one. Sample names add the
    /// kind's suffix ([`Kind::sample_suffix`]).
    pub(in crate::export) fn name<'f>(&self, family: &'f Family<'_>) -> &'f str {
        family.name
    }

    /// Samples in all.
    pub(in crate::export) fn samples(&self) -> usize {
        self.members.len()
    }
}

/// The families as they are founded.
struct Names<'a> {
    list: Vec<Family<'a>>,
    /// Family indices by name, with the hash of the name (by `hasher`) so that growing
    /// the table does not hash every name again.
    by_name: HashTable<(u64, u32)>,
    hasher: DefaultHashBuilder,
    /// One of the sample names of the name being placed.
    sample: String,
}

impl<'a> Names<'a> {
    /// Room for `families` families.
    fn with_capacity(families: usize) -> Names<'a> {
        Names {
            list: Vec::with_capacity(families),
            by_name: HashTable::with_capacity(families),
            hasher: DefaultHashBuilder::default(),
            sample: String::new(),
        }
    }

    /// The family of a metric: the existing one of its name, or a new one, or `None`
    /// when either would conflict.
    fn place(&mut self, memo: Memo<'a>) -> Option<u32> {
        let hash = self.hasher.hash_one(memo.name);
        match self.claimant(memo.name, hash) {
            // The name is a family's or one of its samples': only the family itself, with
            // the same type and unit, can take the metric.
            Some(index) => {
                let family = &self.list[index as usize];
                (family.kind == memo.kind && family.unit == memo.unit).then_some(index)
            }
            None if self.claimant_of_samples(memo.name, memo.kind) => None,
            None => Some(self.found(memo, hash)),
        }
    }

    /// The family that claims `name`, as its own name or as one of its samples' names
    /// (a counter `foo` claims `foo_total` and `foo_created`, an info `foo` `foo_info`).
    fn claimant(&self, name: &str, hash: u64) -> Option<u32> {
        if let Some(index) = self.family_named(name, hash) {
            return Some(index);
        }
        [Kind::Counter, Kind::Info].into_iter().find_map(|kind| {
            kind.claimed_suffixes().iter().find_map(|suffix| {
                let stem = name.strip_suffix(suffix)?;
                let index = self.family_named(stem, self.hasher.hash_one(stem))?;
                (self.list[index as usize].kind == kind).then_some(index)
            })
        })
    }

    /// Whether a new family `name` of `kind` would have a sample name another family
    /// already claims.
    fn claimant_of_samples(&mut self, name: &str, kind: Kind) -> bool {
        let mut sample = std::mem::take(&mut self.sample);
        let claimed = kind.claimed_suffixes().iter().any(|suffix| {
            sample.clear();
            sample.push_str(name);
            sample.push_str(suffix);
            self.claimant(&sample, self.hasher.hash_one(&sample))
                .is_some()
        });
        self.sample = sample;
        claimed
    }

    /// The family named `name`, whose hash (by `hasher`) is `hash`.
    fn family_named(&self, name: &str, hash: u64) -> Option<u32> {
        self.by_name
            .find(hash, |&(other, index)| {
                other == hash && self.list[index as usize].name == name
            })
            .map(|&(_, index)| index)
    }

    fn found(&mut self, memo: Memo<'a>, hash: u64) -> u32 {
        let index = self.list.len() as u32;
        self.list.push(Family {
            name: memo.name,
            kind: memo.kind,
            unit: memo.unit,
            first: NONE,
            last: NONE,
        });
        self.by_name
            .insert_unique(hash, (hash, index), |&(hash, _)| hash);
        index
    }

    /// The families' places in `list`, sorted by stem: the order the exposition has
    /// always had, stable (two families of one stem, `uptime` and `uptime_seconds`, stay
    /// in the order they were founded).
    ///
    /// A scrape mostly finds the families of the last one, in the same order, so the last
    /// order is tried first: it is kept when each of its families comes before the next
    /// by (stem, place), which makes it a permutation of the places and the only order
    /// the stable sort can give, at one comparison a family instead of a sort.
    fn order(&self) -> Vec<u32> {
        let families = self.list.len();
        let stem = |index: u32| {
            let family = &self.list[index as usize];
            let unit = family.unit.map_or(0, |unit| unit.len() + 1);
            &family.name[..family.name.len() - unit]
        };
        let mut order = std::mem::take(&mut *last_order());
        let fits = order.len() == families
            && order.iter().all(|&index| (index as usize) < families)
            && order
                .windows(2)
                .all(|pair| (stem(pair[0]), pair[0]) < (stem(pair[1]), pair[1]));
        if !fits {
            order.clear();
            order.extend(0..families as u32);
            order.sort_by(|&a, &b| stem(a).cmp(stem(b)));
        }
        last_order().clone_from(&order);
        order
    }
}

fn last_order() -> std::sync::MutexGuard<'static, Vec<u32>> {
    LAST_ORDER.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Whether something last updated at `updated` is past its `dmax` (0 = never) at `now`.
fn expired(updated: SystemTime, now: SystemTime, dmax: u32) -> bool {
    dmax > 0
        && now
            .duration_since(updated)
            .is_ok_and(|age| age.as_secs() > u64::from(dmax))
}
