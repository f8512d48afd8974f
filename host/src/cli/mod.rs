//! `wasmond` subcommands other than the daemon itself.

pub mod module_run;
pub mod check;
pub mod run;
