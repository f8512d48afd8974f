//! Where the engine's values go: the store (what the XML and the exports serve) and the
//! UDP sender. The engine hands over one group's values due together and never waits:
//! the store takes them at once, and the sender's bounded channel takes the request or
//! it is dropped (and counted by the caller).

use std::cell::Cell;
use std::sync::Arc;
use std::time::SystemTime;

use tokio::sync::mpsc::{self, error::TrySendError};
use tracing::warn;

use crate::metric::{OutgoingMetric, SendRequest};
use crate::net::NetStats;
use crate::store::{HostRef, Place, Store};

/// Where the engine's values go.
#[derive(Clone)]
pub struct Outputs {
    pub store: Arc<Store>,
    /// The UDP sender; `None` when muted or nothing listens.
    pub sink: Option<mpsc::Sender<SendRequest>>,
    /// The network's counters, which the host module publishes; `None` without one.
    pub network: Option<Arc<NetStats>>,
}

/// The sender had no room for a request: its values were stored but not sent.
#[derive(Debug)]
pub(super) struct NotSent {
    pub(super) values: usize,
}

impl Outputs {
    /// Stores this host's `metrics` (with their metadata where it goes out with them) and
    /// hands them to the sender. `places[i]` keeps where `metrics[i]` is in the store.
    pub(super) fn publish(
        &self,
        host: HostRef<'_>,
        metrics: Vec<OutgoingMetric>,
        places: &[&Cell<Option<Place>>],
        now: SystemTime,
    ) -> Result<(), NotSent> {
        if metrics.is_empty() {
            return Ok(());
        }
        for err in self.store.update_own(host, &metrics, places, now) {
            warn!("store: {err}");
        }
        let Some(sink) = &self.sink else {
            return Ok(());
        };
        sink.try_send(SendRequest { metrics })
            .map_err(|err| match err {
                TrySendError::Full(request) | TrySendError::Closed(request) => NotSent {
                    values: request.metrics.len(),
                },
            })
    }

    /// Takes metrics of this host out of the store at once; returns how many were there.
    pub(super) fn forget<'a>(&self, host: &str, names: impl IntoIterator<Item = &'a str>) -> usize {
        self.store.remove_metrics(host, names)
    }
}
