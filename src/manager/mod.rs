//! Wiring: the command line and the commands behind it.

pub mod cli;
#[cfg(feature = "testbed")]
pub mod demo;
pub mod http;
pub mod input;
pub mod logging;
pub mod plan;
pub mod run;
pub mod signals;
pub mod status;
pub mod validate;
