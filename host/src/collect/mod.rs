//! The collection engine: collection groups, thresholds, schedules, backoff, reload and
//! shutdown. It knows nothing of packet or XML formats.
//!
//! The parts, pure ones first:
//! - [`names`]: valid metric names; [`ownership`]: which module owns each (authority
//!   first: the host, the operator, then tenants), and the tenants' policy.
//! - [`select`]: which metrics a `collection_group` collects (`name`, `name_match`,
//!   titles with `\1`..`\9`); [`plan`]: every group's selection at once, the daemon's
//!   accounting group included, for the engine and `wasmond check` alike.
//! - [`schedule`]: one group's clock and gmond's send policy (`collect_every`,
//!   `collect_once`, `time_threshold`, `value_threshold`).
//! - [`backoff`], [`ratelimit`]: retry delays after traps, quiet logs.
//! - [`driver`]: what a module must do for the engine; [`wasm`] drives a WebAssembly
//!   module through the runtime; [`host_module`] is the daemon's own `wasmond` module
//!   (`heartbeat`, `location`, per-module accounting).
//! - [`worker`], [`pool`]: a module's calls run in order on a shared pool of threads that
//!   grows when a call holds a thread; the scheduler never waits on one.
//! - [`engine`]: the scheduler task that ties the rest together. The module slots
//!   (start, backoff, reconcile, shutdown cleanups) are its supervisor's
//!   (`supervisor.rs`); each metric's metadata and when it last went out are kept in
//!   `published.rs`; values leave through [`Outputs`] (the store and the sender).
//!   [`conversion`] turns a typed config into what the engine runs.
//!
//! # gmond's semantics, and where wasmond differs
//!
//! As gmond 3.7.2 (`gmond.c`): a group collects at start and then every `collect_every`
//! (`collect_once`: at start only) and is sent whole at start, every `time_threshold`, and
//! whenever a collected number moved by `value_threshold` or more (`>=`, as gmond's code,
//! where gmond.conf(5) says "greater than") since the *previous collection*. `name_match`
//! is an unanchored search and `title` takes `\1`..`\9`. Metric metadata goes out with a
//! metric's first value, every `send_metadata_interval`, and after a peer's request.
//! Differences: a changed string also sends its group (gmond never compares strings);
//! `collect_every` and `time_threshold` below 1 s count as 1 s; gmond's fallback of a
//! `name` that matches no metric to a case-insensitive prefix match is not kept; a
//! module's slice of a group is sent as soon as that module answers, so one slow module
//! never holds back the others' values; the metrics of a module that failed this cycle
//! are not re-sent with their old values. A reload restarts every group's rhythm (gmond
//! re-executes itself on SIGHUP). Metric names belong to the strongest claimant (see
//! [`ownership`]), whichever finished its `init` first; a clash refuses only the
//! clashing metric.
//!
//! # The seam to the sender
//!
//! The engine writes every value it sends (and its metadata, when due) into the
//! [`Store`](crate::store::Store), so the XML shows this host's metrics at once, and hands
//! the same values to the UDP sender as [`SendRequest`](crate::metric::SendRequest)s on a bounded
//! `tokio::sync::mpsc` channel ([`Outputs::sink`]). One request is one group's
//! worth of values due together; the sender encodes each [`OutgoingMetric`](crate::metric::OutgoingMetric) as a metadata
//! packet (when `metadata` is set) followed by a value packet, and sends them to every
//! `udp_send_channel`. The engine never waits on the sender: when the channel is full the
//! request is dropped and a rate-limited warning says so. When the engine stops it drops
//! its end of the channel, after the last values: the sender sends what is queued and
//! ends. A peer's metadata request (gmond's id 136) comes back through
//! [`EngineHandle::resend_metadata`](engine::EngineHandle::resend_metadata).

pub mod backoff;
pub mod conversion;
pub mod driver;
pub mod engine;
pub mod host_module;
pub mod names;
mod outputs;
pub mod ownership;
pub mod plan;
pub mod pool;
mod published;
pub mod ratelimit;
pub mod schedule;
pub mod select;
mod supervisor;
mod timer;
pub mod wasm;
pub mod worker;

#[cfg(test)]
mod tests;

pub use engine::{EngineConfig, EngineHandle, HostIdentity, ShutdownReport, Status, spawn};
pub use outputs::Outputs;
pub use supervisor::{CallBounds, ModuleSpec, ModuleState, SHUTDOWN_WAIT};
