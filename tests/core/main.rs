//! Core tests that need the public API or the built binary: decision
//! properties, the `plan`/`validate` command-line contracts, the CNPG-I
//! plugin over gRPC, and the trace benchmark's figures.

mod cli;
mod docs;
mod plugin;
mod properties;
mod trace;
mod untrusted;
