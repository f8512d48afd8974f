//! A borrowed, read-only view of the store for readers that render it (gmond's XML, the
//! interactive port's filtered XML, the Prometheus exposition), taken under the read
//! lock: nothing is copied, so keep the work inside short and free of I/O.

use std::sync::OnceLock;
use std::time::SystemTime;

use super::{Host, Sample, State, Store, StoreConfig};
use crate::metric::MetricMeta;

/// The whole store, as of the moment the read lock was taken.
#[derive(Clone, Copy)]
pub struct View<'a> {
    state: &'a State,
}

/// One host and its metrics.
#[derive(Clone, Copy)]
pub struct HostView<'a> {
    pub name: &'a str,
    host: &'a Host,
}

/// One metric whose metadata and value are both known (what the XML shows).
#[derive(Clone, Copy)]
pub struct MetricView<'a> {
    pub name: &'a str,
    pub meta: &'a MetricMeta,
    pub sample: &'a Sample,
    /// When the value last changed.
    pub updated: SystemTime,
    /// Where a reader keeps what it rendered from `meta.extras` alone (the XML's
    /// `EXTRA_DATA`); emptied when the extras change.
    pub extras_rendered: &'a OnceLock<Box<[u8]>>,
    /// Where a reader keeps what it rendered from the name and `meta` (the Prometheus
    /// exposition's names, labels and HELP); emptied when the metadata change.
    pub meta_rendered: &'a OnceLock<Box<str>>,
}

impl Store {
    /// Runs `read` over a view of the store, holding the read lock meanwhile.
    pub(crate) fn with_view<R>(&self, read: impl FnOnce(View<'_>) -> R) -> R {
        let state = self.read();
        read(View { state: &state })
    }
}

impl<'a> View<'a> {
    pub fn config(&self) -> &'a StoreConfig {
        &self.state.config
    }

    /// Every host, ordered by name.
    pub fn hosts(&self) -> impl Iterator<Item = HostView<'a>> + 'a {
        self.state
            .hosts
            .iter()
            .map(|(name, host)| HostView { name, host })
    }
}

impl<'a> HostView<'a> {
    pub fn ip(&self) -> &'a str {
        &self.host.ip
    }

    pub fn location(&self) -> &'a str {
        &self.host.location
    }

    pub(crate) fn gmond_started(&self) -> u32 {
        self.host.gmond_started
    }

    /// When any packet from the host last arrived.
    pub(crate) fn last_heard(&self) -> SystemTime {
        self.host.last_heard
    }

    /// The host's metrics whose metadata and value are known, ordered by name.
    pub fn metrics(&self) -> impl Iterator<Item = MetricView<'a>> + 'a {
        self.host.metrics.iter().filter_map(|(name, metric)| {
            let (Some(described), Some(sample)) = (&metric.meta, &metric.sample) else {
                return None;
            };
            Some(MetricView {
                name,
                meta: &described.meta,
                sample,
                updated: metric.updated,
                extras_rendered: &described.extras_rendered,
                meta_rendered: &described.meta_rendered,
            })
        })
    }
}
