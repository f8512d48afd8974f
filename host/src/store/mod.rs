//! The metric store: the one place that knows the cluster's state.
//!
//! Cluster → hosts (address, location, start time, when last heard) → metrics (metadata,
//! current value and format, when last updated). The receiver and the scheduler write to
//! it; the XML server and the UDP sender read from it. It knows nothing of how values
//! arrive or leave: no sockets, no clock (every call takes `now`, so tests are exact).
//!
//! Share it as `Arc<Store>`: one `RwLock` guards the state, every call holds it briefly and
//! never across an `.await` (there is none here). Readers ([`Store::with_view`]: the XML,
//! the Prometheus exposition) render from a borrowed [`View`] under the read lock and
//! write to their sockets after it is released.
//!
//! gmond's semantics kept here: `heartbeat` and `location` values set the host's
//! GMOND_STARTED and LOCATION instead of becoming metrics; a metric shows in the XML only
//! once both its metadata and a value are known; DMAX 0 means never expire. Unlike gmond,
//! a value that does not read as its metadata's type (`VAL="not-a-number"` for an
//! `int32`) is refused ([`StoreError::Mistyped`]), and one taken before its metadata is
//! dropped when the metadata says otherwise.
//!
//! Capacity: what other senders add ([`Store::update_metadata_from`],
//! [`Store::update_value_from`]) is counted per sender (source address) against
//! [`MAX_HOSTS_PER_SENDER`] and [`MAX_METRICS_PER_SENDER`], and over all senders against
//! [`MAX_HOSTS`] and [`MAX_METRICS`]; past a cap, what is new is refused (what exists is
//! still updated), and an expired host or metric gives its sender its room back. The
//! host's own writes ([`Store::update_metadata`], [`Store::update_value`]: its modules'
//! metrics, bounded by the modules' own caps) are never counted there, so a flood of
//! senders cannot take the host's room.

mod metrics;
mod view;

pub use view::{HostView, MetricView, View};

use std::cell::Cell;
use std::collections::{BTreeMap, HashMap};
use std::net::IpAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{OnceLock, PoisonError, RwLock, RwLockReadGuard, RwLockWriteGuard};
use std::time::{SystemTime, UNIX_EPOCH};

pub(crate) use self::metrics::Place;

use self::metrics::Metrics;
use crate::metric::{MetricMeta, MetricValue, OutgoingMetric, ValueType};
use crate::wire::format::format_value;
use crate::wire::safe::fits_type;

/// Most hosts other senders may add to the store; past it, packets about new hosts are
/// refused, so a flood of spoofed host names cannot exhaust memory.
pub(crate) const MAX_HOSTS: usize = 100_000;

/// Most metrics other senders may add to the store over all hosts, for the same reason.
pub(crate) const MAX_METRICS: usize = 1_000_000;

/// Most hosts one sender (one source address) may add: a few spoofing bridges (gmetric
/// `-S`) fit, a flood of spoofed names from one address stops here.
pub const MAX_HOSTS_PER_SENDER: usize = 4096;

/// Most metrics one sender may add, over all the hosts it names.
pub(crate) const MAX_METRICS_PER_SENDER: usize = 65_536;

/// The metric whose value is the sender's start time (HOST GMOND_STARTED).
pub(crate) const HEARTBEAT_METRIC: &str = "heartbeat";

/// The metric whose value is the sender's `host { location }` (HOST LOCATION).
pub(crate) const LOCATION_METRIC: &str = "location";

/// LOCATION until a host reports one, as gmond shows it.
const UNSPECIFIED_LOCATION: &str = "unspecified";

/// The `cluster {}` section of gmond.conf.
#[derive(Debug, Clone, PartialEq)]
pub struct ClusterInfo {
    pub name: String,
    pub owner: String,
    pub latlong: String,
    pub url: String,
}

/// What the store needs from the configuration.
#[derive(Debug, Clone, PartialEq)]
pub struct StoreConfig {
    pub cluster: ClusterInfo,
    /// HOST TMAX: gmond's `host_tmax` (20 s).
    pub host_tmax: u32,
    /// gmond's `host_dmax`: a host silent this many seconds is deleted; 0 = never.
    pub host_dmax: u32,
}

#[cfg(test)]
impl StoreConfig {
    /// The tests' cluster: named `name`, owner `o`, latlong `l`, url `u`, host TMAX 20 s,
    /// hosts never deleted.
    pub(crate) fn for_tests(name: &str) -> StoreConfig {
        StoreConfig {
            cluster: ClusterInfo {
                name: name.into(),
                owner: "o".into(),
                latlong: "l".into(),
                url: "u".into(),
            },
            host_tmax: 20,
            host_dmax: 0,
        }
    }
}

/// Which host a write is about: the name shown in the XML and its address.
#[derive(Debug, Clone, Copy)]
pub struct HostRef<'a> {
    pub name: &'a str,
    pub ip: &'a str,
}

/// A value with the printf format its sender gave for it (the value packet's `fmt`).
#[derive(Debug, Clone, PartialEq)]
pub struct Sample {
    pub value: MetricValue,
    pub format: Arc<str>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum StoreError {
    #[error("other senders already added {MAX_HOSTS} hosts")]
    TooManyHosts,
    #[error("other senders already added {MAX_METRICS} metrics")]
    TooManyMetrics,
    #[error("this sender already added {MAX_HOSTS_PER_SENDER} hosts")]
    SenderHostsFull,
    #[error("this sender already added {MAX_METRICS_PER_SENDER} metrics")]
    SenderMetricsFull,
    #[error("the value does not read as the metric's type {0}")]
    Mistyped(ValueType),
}

/// What [`Store::expire`] deleted.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Expired {
    pub hosts: usize,
    pub metrics: usize,
}

/// A copy of one host, for readers that need more than the XML.
#[derive(Debug, Clone, PartialEq)]
pub struct HostSnapshot {
    pub name: String,
    pub ip: String,
    pub location: String,
    pub gmond_started: u32,
    /// When any packet from the host last arrived.
    pub reported: SystemTime,
    pub metrics: Vec<MetricSnapshot>,
}

/// A copy of one metric: what is known of it so far.
#[derive(Debug, Clone, PartialEq)]
pub struct MetricSnapshot {
    pub name: String,
    pub meta: Option<MetricMeta>,
    pub sample: Option<Sample>,
    /// When the value (or, before any value, the metadata) last changed.
    pub updated: SystemTime,
}

/// The cluster's state, shared by every task (see the module docs).
#[derive(Debug)]
pub struct Store {
    state: RwLock<State>,
    /// Bumped by every write, so a reader can tell that a document it rendered is
    /// still current ([`Store::generation`]).
    generation: AtomicU64,
}

#[derive(Debug)]
struct State {
    config: StoreConfig,
    hosts: BTreeMap<String, Host>,
    peers: PeerShares,
}

/// Who added a host or a metric: the host itself (its modules) or another sender.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Origin {
    Own,
    Peer(IpAddr),
}

/// What other senders added, in all and per source address.
#[derive(Debug, Default)]
struct PeerShares {
    hosts: usize,
    metrics: usize,
    by_sender: HashMap<IpAddr, Share>,
}

#[derive(Debug, Default, Clone, Copy)]
struct Share {
    hosts: usize,
    metrics: usize,
}

#[derive(Debug)]
struct Host {
    origin: Origin,
    ip: String,
    location: String,
    gmond_started: u32,
    last_heard: SystemTime,
    metrics: Metrics,
}

#[derive(Debug)]
struct Metric {
    origin: Origin,
    meta: Option<Described>,
    sample: Option<Sample>,
    updated: SystemTime,
}

/// Metadata, with room for what readers render from it alone (the XML's `EXTRA_DATA`
/// from the extras, the Prometheus exposition's pieces from the name and metadata):
/// kept until what it was rendered from changes, so a reader serving the whole cluster
/// does not render every metric's again for every document.
#[derive(Debug)]
struct Described {
    meta: MetricMeta,
    extras_rendered: OnceLock<Box<[u8]>>,
    meta_rendered: OnceLock<Box<str>>,
}

impl Store {
    pub fn new(config: StoreConfig) -> Self {
        let state = State {
            config,
            hosts: BTreeMap::new(),
            peers: PeerShares::default(),
        };
        Store {
            state: RwLock::new(state),
            generation: AtomicU64::new(0),
        }
    }

    /// Replaces the configuration (on reload); hosts and metrics are kept.
    pub(crate) fn set_config(&self, config: StoreConfig) {
        self.write().config = config;
    }

    /// Records a metric's metadata from the host itself. Metadata for `heartbeat` or
    /// `location` only marks the host as heard: those never show as metrics.
    pub fn update_metadata(
        &self,
        host: HostRef<'_>,
        meta: MetricMeta,
        now: SystemTime,
    ) -> Result<(), StoreError> {
        self.put_metadata(Origin::Own, host, meta, now)
    }

    /// [`update_metadata`](Self::update_metadata) for what another sender sent from
    /// `sender`, within its share of the store (see the module docs).
    pub(crate) fn update_metadata_from(
        &self,
        sender: IpAddr,
        host: HostRef<'_>,
        meta: MetricMeta,
        now: SystemTime,
    ) -> Result<(), StoreError> {
        self.put_metadata(Origin::Peer(sender), host, meta, now)
    }

    fn put_metadata(
        &self,
        origin: Origin,
        host: HostRef<'_>,
        meta: MetricMeta,
        now: SystemTime,
    ) -> Result<(), StoreError> {
        let mut state = self.write();
        let State { hosts, peers, .. } = &mut *state;
        host_entry(hosts, peers, origin, host, now)?.put_metadata(peers, origin, meta, now)
    }

    /// Records a metric's value from the host itself. Returns whether the metric's
    /// metadata is known; when it is not, gmond asks the sender for it (a metadata
    /// request, id 136).
    pub fn update_value(
        &self,
        host: HostRef<'_>,
        name: &str,
        value: MetricValue,
        format: &str,
        now: SystemTime,
    ) -> Result<bool, StoreError> {
        self.put_value(Origin::Own, host, name, value, format, now)
    }

    /// [`update_value`](Self::update_value) for what another sender sent from `sender`,
    /// within its share of the store (see the module docs).
    pub(crate) fn update_value_from(
        &self,
        sender: IpAddr,
        host: HostRef<'_>,
        name: &str,
        value: MetricValue,
        format: &str,
        now: SystemTime,
    ) -> Result<bool, StoreError> {
        self.put_value(Origin::Peer(sender), host, name, value, format, now)
    }

    fn put_value(
        &self,
        origin: Origin,
        host: HostRef<'_>,
        name: &str,
        value: MetricValue,
        format: &str,
        now: SystemTime,
    ) -> Result<bool, StoreError> {
        let mut state = self.write();
        let State { hosts, peers, .. } = &mut *state;
        host_entry(hosts, peers, origin, host, now)?.put_value(
            peers,
            origin,
            name,
            value,
            FormatIn::Text(format),
            now,
        )
    }

    /// Records what the host's own modules collected together: each metric's metadata
    /// when it goes out with it, then its value, under one lock and one look-up of the
    /// host. `places[i]` is where `metrics[i]` was last time: used when still current,
    /// refreshed otherwise. Returns what was refused (a value that does not read as its
    /// type).
    pub(crate) fn update_own(
        &self,
        host: HostRef<'_>,
        metrics: &[OutgoingMetric],
        places: &[&Cell<Option<Place>>],
        now: SystemTime,
    ) -> Vec<StoreError> {
        let mut state = self.write();
        let State { hosts, peers, .. } = &mut *state;
        let own = Origin::Own;
        let host = match host_entry(hosts, peers, own, host, now) {
            Ok(host) => host,
            Err(err) => return vec![err],
        };
        let mut refused = Vec::new();
        for (metric, place) in metrics.iter().zip(places) {
            if let Some(meta) = &metric.metadata
                && let Err(err) = host.put_metadata(peers, own, MetricMeta::clone(meta), now)
            {
                refused.push(err);
            }
            let value = metric.value.clone();
            let known = place.get().and_then(|place| host.metrics.at_mut(place));
            let stored = match known {
                Some(entry) => entry.put_sample(value, FormatIn::Shared(&metric.format), now),
                None => {
                    let stored = host.put_value(
                        peers,
                        own,
                        &metric.name,
                        value,
                        FormatIn::Shared(&metric.format),
                        now,
                    );
                    place.set(host.metrics.place_of(&metric.name));
                    stored
                }
            };
            if let Err(err) = stored {
                refused.push(err);
            }
        }
        refused
    }

    /// Deletes hosts silent for more than `host_dmax` seconds and metrics not updated for
    /// more than their DMAX (gmond: 0 = never).
    pub(crate) fn expire(&self, now: SystemTime) -> Expired {
        let mut state = self.write();
        let State {
            config,
            hosts,
            peers,
        } = &mut *state;
        let host_dmax = u64::from(config.host_dmax);
        let mut expired = Expired::default();
        hosts.retain(|_, host| {
            if host_dmax > 0 && seconds_between(host.last_heard, now) > host_dmax {
                expired.hosts += 1;
                expired.metrics += host.metrics.len();
                peers.release(
                    host.origin,
                    Share {
                        hosts: 1,
                        metrics: 0,
                    },
                );
                for metric in host.metrics.values() {
                    peers.release(
                        metric.origin,
                        Share {
                            hosts: 0,
                            metrics: 1,
                        },
                    );
                }
                return false;
            }
            host.metrics.retain(|metric| {
                let dmax = metric
                    .meta
                    .as_ref()
                    .map_or(0, |described| u64::from(described.meta.dmax));
                let keep = dmax == 0 || seconds_between(metric.updated, now) <= dmax;
                if !keep {
                    expired.metrics += 1;
                    peers.release(
                        metric.origin,
                        Share {
                            hosts: 0,
                            metrics: 1,
                        },
                    );
                }
                keep
            });
            true
        });
        expired
    }

    /// Deletes metrics of `host` at once (a module that no longer declares them); returns
    /// how many were there.
    pub(crate) fn remove_metrics<'a>(
        &self,
        host: &str,
        names: impl IntoIterator<Item = &'a str>,
    ) -> usize {
        let mut state = self.write();
        let State { hosts, peers, .. } = &mut *state;
        let Some(host) = hosts.get_mut(host) else {
            return 0;
        };
        let mut removed = 0;
        for name in names {
            if let Some(metric) = host.metrics.remove(name) {
                peers.release(
                    metric.origin,
                    Share {
                        hosts: 0,
                        metrics: 1,
                    },
                );
                removed += 1;
            }
        }
        removed
    }

    /// The metadata of one metric, e.g. to answer a metadata request.
    #[cfg(test)]
    pub(crate) fn metadata(&self, host: &str, name: &str) -> Option<MetricMeta> {
        let state = self.read();
        let described = state.hosts.get(host)?.metrics.get(name)?.meta.as_ref()?;
        Some(described.meta.clone())
    }

    /// A copy of one host and its metrics.
    pub fn host(&self, name: &str) -> Option<HostSnapshot> {
        let state = self.read();
        state.hosts.get(name).map(|host| host.snapshot(name))
    }

    /// A copy of every host, ordered by name.
    #[cfg(test)]
    pub(crate) fn snapshot(&self) -> Vec<HostSnapshot> {
        self.read()
            .hosts
            .iter()
            .map(|(name, host)| host.snapshot(name))
            .collect()
    }

    /// A number that changes whenever the state does: a document rendered at generation
    /// `g` in a given second is still the document of that second while this is `g`.
    pub(crate) fn generation(&self) -> u64 {
        self.generation.load(Ordering::Acquire)
    }
}

/// The host's entry, created if new (and if `origin` has room for it); either way it
/// was heard from `now`.
fn host_entry<'m>(
    hosts: &'m mut BTreeMap<String, Host>,
    peers: &mut PeerShares,
    origin: Origin,
    host: HostRef<'_>,
    now: SystemTime,
) -> Result<&'m mut Host, StoreError> {
    // Looked up before an entry is made: making one costs the name's copy, every write.
    if !hosts.contains_key(host.name) {
        peers.take(
            origin,
            Share {
                hosts: 1,
                metrics: 0,
            },
        )?;
        hosts.insert(
            host.name.to_owned(),
            Host {
                origin,
                ip: String::new(),
                location: UNSPECIFIED_LOCATION.to_owned(),
                gmond_started: 0,
                last_heard: now,
                metrics: Metrics::default(),
            },
        );
    }
    let entry = hosts.get_mut(host.name).expect("present or just added");
    if entry.ip != host.ip {
        host.ip.clone_into(&mut entry.ip);
    }
    entry.last_heard = now;
    Ok(entry)
}

/// The metric's entry, created (and counted against `origin`'s share) if new.
fn metric_entry<'m>(
    metrics: &'m mut Metrics,
    peers: &mut PeerShares,
    origin: Origin,
    name: &str,
    now: SystemTime,
) -> Result<&'m mut Metric, StoreError> {
    metrics.get_or_try_insert(name, || {
        peers.take(
            origin,
            Share {
                hosts: 0,
                metrics: 1,
            },
        )?;
        Ok(Metric {
            origin,
            meta: None,
            sample: None,
            updated: now,
        })
    })
}

impl PeerShares {
    /// Books `share` for `origin`, or refuses it past a cap; the host's own is free.
    fn take(&mut self, origin: Origin, share: Share) -> Result<(), StoreError> {
        let Origin::Peer(sender) = origin else {
            return Ok(());
        };
        if self.hosts + share.hosts > MAX_HOSTS {
            return Err(StoreError::TooManyHosts);
        }
        if self.metrics + share.metrics > MAX_METRICS {
            return Err(StoreError::TooManyMetrics);
        }
        let mine = self.by_sender.entry(sender).or_default();
        if mine.hosts + share.hosts > MAX_HOSTS_PER_SENDER {
            return Err(StoreError::SenderHostsFull);
        }
        if mine.metrics + share.metrics > MAX_METRICS_PER_SENDER {
            return Err(StoreError::SenderMetricsFull);
        }
        mine.hosts += share.hosts;
        mine.metrics += share.metrics;
        self.hosts += share.hosts;
        self.metrics += share.metrics;
        Ok(())
    }

    /// Gives back what `origin` had booked.
    fn release(&mut self, origin: Origin, share: Share) {
        let Origin::Peer(sender) = origin else {
            return;
        };
        self.hosts -= share.hosts;
        self.metrics -= share.metrics;
        if let Some(mine) = self.by_sender.get_mut(&sender) {
            mine.hosts -= share.hosts;
            mine.metrics -= share.metrics;
            if mine.hosts == 0 && mine.metrics == 0 {
                self.by_sender.remove(&sender);
            }
        }
    }
}

impl Metric {
    fn set_meta(&mut self, meta: MetricMeta) {
        // A value taken before its metadata (or under an older type) must read as the
        // type now declared, like any value that arrives from now on.
        if self
            .sample
            .as_ref()
            .is_some_and(|sample| !fits_type(&sample.value, meta.value_type))
        {
            self.sample = None;
        }
        match &mut self.meta {
            // Senders repeat their metadata (gmond: every send_metadata_interval).
            Some(described) if described.meta.extras == meta.extras => {
                if described.meta != meta {
                    described.meta_rendered = OnceLock::new();
                }
                described.meta = meta;
            }
            _ => {
                self.meta = Some(Described {
                    meta,
                    extras_rendered: OnceLock::new(),
                    meta_rendered: OnceLock::new(),
                })
            }
        }
    }

    /// Takes `value` if it reads as the metric's type; returns whether the metadata is
    /// known.
    fn put_sample(
        &mut self,
        value: MetricValue,
        format: FormatIn<'_>,
        now: SystemTime,
    ) -> Result<bool, StoreError> {
        if let Some(described) = &self.meta
            && !fits_type(&value, described.meta.value_type)
        {
            return Err(StoreError::Mistyped(described.meta.value_type));
        }
        self.set_sample(value, format, now);
        Ok(self.meta.is_some())
    }

    fn set_sample(&mut self, value: MetricValue, format: FormatIn<'_>, now: SystemTime) {
        self.updated = now;
        match &mut self.sample {
            Some(sample) => {
                sample.value = value;
                if !format.is(&sample.format) {
                    sample.format = format.shared();
                }
            }
            None => {
                self.sample = Some(Sample {
                    value,
                    format: format.shared(),
                })
            }
        }
    }
}

impl Host {
    fn put_metadata(
        &mut self,
        peers: &mut PeerShares,
        origin: Origin,
        meta: MetricMeta,
        now: SystemTime,
    ) -> Result<(), StoreError> {
        if !is_host_attribute(&meta.name) {
            let metric = metric_entry(&mut self.metrics, peers, origin, &meta.name, now)?;
            metric.set_meta(meta);
        }
        Ok(())
    }

    /// Returns whether the metric's metadata is known.
    fn put_value(
        &mut self,
        peers: &mut PeerShares,
        origin: Origin,
        name: &str,
        value: MetricValue,
        format: FormatIn<'_>,
        now: SystemTime,
    ) -> Result<bool, StoreError> {
        match name {
            HEARTBEAT_METRIC => self.gmond_started = start_time(&value),
            LOCATION_METRIC => {
                self.location.clear();
                format_value(format.text(), &value, &mut self.location);
            }
            _ => {
                let metric = metric_entry(&mut self.metrics, peers, origin, name, now)?;
                return metric.put_sample(value, format, now);
            }
        }
        Ok(true)
    }

    fn snapshot(&self, name: &str) -> HostSnapshot {
        HostSnapshot {
            name: name.to_owned(),
            ip: self.ip.clone(),
            location: self.location.clone(),
            gmond_started: self.gmond_started,
            reported: self.last_heard,
            metrics: self
                .metrics
                .iter()
                .map(|(name, metric)| MetricSnapshot {
                    name: name.to_owned(),
                    meta: metric.meta.as_ref().map(|described| described.meta.clone()),
                    sample: metric.sample.clone(),
                    updated: metric.updated,
                })
                .collect(),
        }
    }
}

impl Store {
    fn read(&self) -> RwLockReadGuard<'_, State> {
        // A panic elsewhere while holding the lock leaves the maps consistent (every
        // mutation is a single insert/assign), so carry on rather than spread the panic.
        self.state.read().unwrap_or_else(PoisonError::into_inner)
    }

    fn write(&self) -> RwLockWriteGuard<'_, State> {
        let guard = self.state.write().unwrap_or_else(PoisonError::into_inner);
        // Bumped under the write lock: a reader that read `g` before taking the read
        // lock renders a state at least as new as `g`.
        self.generation.fetch_add(1, Ordering::AcqRel);
        guard
    }
}

/// A value's format as its writer has it: the scheduler's shared string, kept as is (and
/// told unchanged by its address alone: no read of the stored text, which at thousands of
/// values a second was a cache miss each), or a peer's text, copied when it changed.
#[derive(Clone, Copy)]
enum FormatIn<'a> {
    Shared(&'a Arc<str>),
    Text(&'a str),
}

impl FormatIn<'_> {
    fn text(&self) -> &str {
        match self {
            FormatIn::Shared(format) => format,
            FormatIn::Text(format) => format,
        }
    }

    fn is(&self, kept: &Arc<str>) -> bool {
        match self {
            FormatIn::Shared(format) => Arc::ptr_eq(format, kept),
            FormatIn::Text(format) => **kept == **format,
        }
    }

    fn shared(&self) -> Arc<str> {
        match self {
            FormatIn::Shared(format) => Arc::clone(format),
            FormatIn::Text(format) => Arc::from(*format),
        }
    }
}

fn is_host_attribute(name: &str) -> bool {
    name == HEARTBEAT_METRIC || name == LOCATION_METRIC
}

/// The start time a heartbeat value carries. gmond reads any heartbeat packet as a uint
/// (a gmetric string "0" gives pointer bits); here a string is parsed, and a bad one is 0.
fn start_time(value: &MetricValue) -> u32 {
    match value {
        MetricValue::UInt32(seconds) => *seconds,
        MetricValue::String(text) => text.trim().parse().unwrap_or(0),
        other => other.as_f64().map_or(0, |seconds| seconds as u32),
    }
}

/// `time` in whole Unix seconds, as the XML's times count.
pub(crate) fn unix_seconds(time: SystemTime) -> u64 {
    time.duration_since(UNIX_EPOCH)
        .map_or(0, |elapsed| elapsed.as_secs())
}

/// Whole seconds from `earlier` to `later`; 0 if the clock went backwards.
pub(crate) fn seconds_between(earlier: SystemTime, later: SystemTime) -> u64 {
    later
        .duration_since(earlier)
        .map_or(0, |elapsed| elapsed.as_secs())
}

#[cfg(test)]
mod tests;
