//! Core tests that need the public API or the built binary: decision
//! properties, the `plan`/`validate` command-line contracts, and the
//! trace benchmark's figures.

mod cli;
mod docs;
mod properties;
mod trace;
