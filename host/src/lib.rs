//! wasmond: a gmond-compatible metric daemon that runs every metric module in a
//! WebAssembly sandbox.
//!
//! Configuration flows in, values flow out: `config` reads gmond.conf and `.pyconf`
//! files, `runtime` hosts the modules under fuel, deadline and memory limits,
//! and the wire formats carry the values to Ganglia peers.

pub mod bundled;
pub mod cli;
pub mod collect;
pub mod config;
pub mod daemon;
pub mod export;
pub mod lockdown;
pub mod metric;
pub mod net;
pub mod runtime;
pub mod store;
pub mod wire;
