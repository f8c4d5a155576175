//! Core tests that need the public API or the built binary: decision
//! properties, the `plan`/`validate` command-line contracts, and the CNPG-I
//! plugin over gRPC.

mod cli;
mod docs;
mod plugin;
mod properties;
