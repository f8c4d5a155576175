//! End-to-end tests: real `cnpg-autoresize run` processes, one per instance,
//! against the Kubernetes API sandbox, real PostgreSQL and real volumes
//! (tmpfs as root, simulated directories otherwise).

mod clocks;
mod common;
mod demo;
mod durability;
mod edges;
mod growth;
mod guest;
mod hostile;
mod inert;
mod observability;
mod production;
mod takeover;
mod triggers;
mod upstream;
mod wal_safety;
