//! The store rendered for its readers: gmond's XML, and for users beyond Ganglia the
//! formats of other monitoring systems. These only read the store (through its view) and
//! know nothing of sockets; the servers in `net` hand out what they render.
//!
//! - [`xml`]: gmond's XML document of the cluster (`tcp_accept_channel`).
//! - [`prometheus`]: the Prometheus text format 0.0.4 and OpenMetrics 1.0.0 exposition.
//! - [`remote_write`]: the same metrics as a Prometheus remote-write 1.0 request.
//! - [`interactive`]: gmetad's interactive port, the XML cut down to a requested path.

pub mod interactive;
pub mod prometheus;
pub mod remote_write;
pub mod xml;
