//! Paths of the Rust guest modules that `build.rs` built from `guest-modules/` (example,
//! hostile, bench, core_metrics, ...), for wasmond's tests and benchmarks only: the
//! daemon never reads the build tree (its bundled modules are embedded, see
//! `wasmond::bundled`).

include!(concat!(env!("OUT_DIR"), "/guests.rs"));
