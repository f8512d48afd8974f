//! The network layer: gmond's three channels, over the store and the wire codecs.
//!
//! - [`tcp`]: `tcp_accept_channel`, serving the cluster's XML to gmetad and friends.
//! - [`send`]: `udp_send_channel`s, sending this host's metadata, values and heartbeat
//!   as gmetric XDR, batched (`sendmmsg`) and paced so a receiver's buffer never overflows.
//! - [`recv`]: `udp_recv_channel`s, taking packets from gmetric, gmond and other wasmonds
//!   into the store, asking senders for missing metadata (id 136) and answering such asks.
//! - [`interactive`]: wasmond's `interactive_channel`s, gmetad's interactive port.
//! - [`prometheus`]: wasmond's `prometheus_listener`s, serving the store's Prometheus
//!   exposition over HTTP.
//! - [`remote_write`]: wasmond's `prometheus_remote_write`s, pushing the same metrics to
//!   a Prometheus remote-write receiver.
//!
//! [`service::Network`] opens every channel of a configuration (honouring `mute` and
//! `deaf`), starts their tasks and sweeps expired hosts; it is what the daemon calls.
//! Sockets are set up in [`socket`], datagrams batched and paced in [`batch`], senders
//! named in [`names`]; the acl check is [`acl`], and [`listener`] the accept loop of the TCP
//! listeners; [`stats`] counts what happened. Nothing
//! here knows what a module is: the scheduler hands the sender the metrics that are due.

pub mod acl;
pub mod batch;
pub mod interactive;
pub mod listener;
pub mod names;
pub mod prometheus;
pub mod recv;
pub mod remote_write;
pub mod send;
pub mod service;
pub mod socket;
pub mod stats;
pub mod tcp;

pub use service::{Network, NetworkSetup};
pub use stats::NetStats;

#[cfg(test)]
mod tests;
