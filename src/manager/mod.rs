//! Wiring: the command line and the commands behind it.

pub mod cli;
pub mod input;
pub mod plan;
pub mod validate;
