//! Integration tests of the test bed (one binary; modules per component).
//!
//! Every test runs both as root (tmpfs volumes, PostgreSQL as `postgres`)
//! and as an ordinary user (directory volumes, PostgreSQL as oneself).

mod cgroup;
mod common;
mod fsmodel;
mod kubelet;
mod operator;
mod postgres;
mod scenario;
mod simulator;
mod volume;
