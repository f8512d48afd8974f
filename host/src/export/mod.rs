//! Exports for users beyond Ganglia: the store in the formats of other monitoring
//! systems. Like the XML writer, these only read the store and know nothing of sockets;
//! the servers in `net` hand out what they render.
//!
//! - [`prometheus`]: the Prometheus text format 0.0.4 and OpenMetrics 1.0.0 exposition.
//! - [`remote_write`]: the same metrics as a Prometheus remote-write 1.0 request.
//! - [`interactive`]: gmetad's interactive port, the XML cut down to a requested path.

pub mod interactive;
pub mod prometheus;
pub mod remote_write;
