//! Core tests that need the public API or the built binary: decision
//! properties, and the `plan`/`validate` command-line contracts.

mod cli;
mod docs;
mod properties;
mod untrusted;
