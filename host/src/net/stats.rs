//! Counters the network tasks keep, so an operator (and the tests) can see what was
//! served, sent, received, refused and dropped. Plain relaxed atomics: each is a tally,
//! nothing is ordered by them.

use std::sync::atomic::{AtomicU64, Ordering};

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
    /// Datagrams that did not decode (or held a value the store refused): dropped.
    pub packets_malformed: Counter,
    /// Datagrams dropped because the sender's address is denied by the channel's acl.
    pub packets_denied: Counter,
    /// Metadata requests (id 136) sent for values whose metadata is unknown.
    pub metadata_requests_sent: Counter,
    /// Metadata requests (id 136) received from peers.
    pub metadata_requests_received: Counter,
}

/// One monotonically increasing tally.
#[derive(Debug, Default)]
pub struct Counter(AtomicU64);

impl Counter {
    pub fn add(&self, n: u64) {
        self.0.fetch_add(n, Ordering::Relaxed);
    }

    pub fn incr(&self) {
        self.add(1);
    }

    pub fn get(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }
}
