//! Counters the network tasks keep, so an operator (and the tests) can see what was
//! served, sent, received, refused and dropped. Plain relaxed atomics: each is a tally,
//! nothing is ordered by them.

use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};

use crate::metric::Slope;

/// Every counter of the network layer; share as `Arc<NetStats>`.
#[derive(Debug, Default)]
pub struct NetStats {
    /// XML documents written out in full.
    pub xml_served: Counter,
    /// XML documents rendered from the store (each shared by the clients of its moment).
    pub xml_rendered: Counter,
    /// TCP clients the acl refused.
    pub xml_denied: Counter,
    /// TCP clients cut off because they read too slowly (the write or stall timeout) or
    /// failed.
    pub xml_failed: Counter,
    /// Datagrams handed to the OS.
    pub packets_sent: Counter,
    /// Datagrams the OS refused to send (each also logged, rate-limited by the caller).
    pub send_errors: Counter,
    /// Datagrams received and applied to the store.
    pub packets_received: Counter,
    /// Datagrams that did not decode: dropped.
    pub packets_malformed: Counter,
    /// Datagrams that decoded but were not applied: a bad metric name, a value that does
    /// not read as its metric's type, or a store (or sender's share of it) that is full.
    pub packets_refused: Counter,
    /// Datagrams dropped because the sender's address is denied by the channel's acl.
    pub packets_denied: Counter,
    /// Datagrams the store refused because their sender (one source address) or all
    /// senders together reached their share of it ([`crate::store`]'s caps).
    pub packets_over_quota: Counter,
    /// Datagrams the kernel dropped on the receive sockets (receive buffer full).
    pub kernel_drops: Counter,
    /// Metadata requests (id 136) sent for values whose metadata is unknown.
    pub metadata_requests_sent: Counter,
    /// Metadata requests (id 136) received from peers.
    pub metadata_requests_received: Counter,
    /// Whether a `prometheus_remote_write` is configured: the `remote_write` counters
    /// below are published only then.
    pub remote_write: bool,
    /// Samples remote-write receivers accepted.
    pub remote_write_samples: Counter,
    /// Remote-write requests dropped, the oldest first, because the queue was full.
    pub remote_write_dropped: Counter,
    /// Remote-write requests the receiver refused (a 4xx status but 429): dropped, since
    /// sending them again would be refused again.
    pub remote_write_refused: Counter,
    /// Remote-write attempts that failed and are tried again after a pause: no
    /// connection, a timeout, a 5xx or 429 status.
    pub remote_write_retries: Counter,
    /// Remote-write requests waiting to be sent, in every queue.
    pub remote_write_queue: Gauge,
}

/// One counter (or gauge) published as a metric of the host's own `wasmond` module.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Published {
    pub name: &'static str,
    pub units: &'static str,
    pub description: &'static str,
    /// `Positive` for a counter, `Both` for a gauge.
    pub slope: Slope,
    pub value: u64,
}

impl NetStats {
    /// The counters published in the host's `wasmond` group, in a fixed order: the UDP
    /// channels' always, the remote write's when one is configured. Their names end in
    /// none of the per-module accounting suffixes, so no module's accounting metric can
    /// take one.
    pub fn published(&self) -> Vec<Published> {
        let counter = |name, units, description, counter: &Counter| Published {
            name,
            units,
            description,
            slope: Slope::Positive,
            value: counter.get(),
        };
        let mut published = vec![
            counter(
                "wasmond_udp_received",
                "packets/s",
                "Datagrams received and applied",
                &self.packets_received,
            ),
            counter(
                "wasmond_udp_malformed",
                "packets/s",
                "Datagrams received that did not decode",
                &self.packets_malformed,
            ),
            counter(
                "wasmond_udp_refused",
                "packets/s",
                "Datagrams received and refused: a bad metric name or a value not of its metric's type",
                &self.packets_refused,
            ),
            counter(
                "wasmond_udp_over_quota",
                "packets/s",
                "Datagrams refused because their sender, or all senders, filled their share of the store",
                &self.packets_over_quota,
            ),
            counter(
                "wasmond_udp_denied",
                "packets/s",
                "Datagrams from senders the receive channel's acl denies",
                &self.packets_denied,
            ),
            counter(
                "wasmond_udp_kernel_drops",
                "packets/s",
                "Datagrams the kernel dropped on the receive sockets (buffer full)",
                &self.kernel_drops,
            ),
            counter(
                "wasmond_udp_sent",
                "packets/s",
                "Datagrams sent",
                &self.packets_sent,
            ),
            counter(
                "wasmond_udp_send_failures",
                "packets/s",
                "Datagrams not sent: refused by the OS, or by wasmond as unsafe or too long",
                &self.send_errors,
            ),
        ];
        if self.remote_write {
            published.extend([
                counter(
                    "wasmond_remote_write_samples",
                    "samples/s",
                    "Samples the Prometheus remote-write receivers accepted",
                    &self.remote_write_samples,
                ),
                counter(
                    "wasmond_remote_write_dropped",
                    "requests/s",
                    "Remote-write requests dropped unsent, the oldest first, because the queue was full",
                    &self.remote_write_dropped,
                ),
                counter(
                    "wasmond_remote_write_refused",
                    "requests/s",
                    "Remote-write requests the receiver refused (HTTP 4xx): dropped",
                    &self.remote_write_refused,
                ),
                counter(
                    "wasmond_remote_write_retries",
                    "attempts/s",
                    "Remote-write attempts that failed (no connection, timeout, HTTP 5xx or 429) and are tried again",
                    &self.remote_write_retries,
                ),
                Published {
                    name: "wasmond_remote_write_queue",
                    units: "requests",
                    description: "Remote-write requests waiting to be sent",
                    slope: Slope::Both,
                    value: self.remote_write_queue.get(),
                },
            ]);
        }
        published
    }
}

/// One monotonically increasing tally.
#[derive(Debug, Default)]
pub struct Counter(AtomicU64);

impl Counter {
    pub fn add(&self, n: u64) {
        self.0.fetch_add(n, Ordering::Relaxed);
    }

    pub(crate) fn incr(&self) {
        self.add(1);
    }

    pub fn get(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }
}

/// One level that goes up and down (a queue's length), never read below 0.
#[derive(Debug, Default)]
pub struct Gauge(AtomicI64);

impl Gauge {
    pub fn add(&self, n: i64) {
        self.0.fetch_add(n, Ordering::Relaxed);
    }

    pub fn get(&self) -> u64 {
        self.0.load(Ordering::Relaxed).max(0) as u64
    }
}
