//! `wasmond` subcommands other than the daemon itself.

pub mod check;
pub mod logging;
pub mod module_run;
pub mod run;
