//! The actors that run in every instance pod (docs/design.md#shape). They
//! gather facts, call the pure engine and execute; none of them decides
//! anything itself.

pub mod disk_probe;
pub mod follower;
pub mod leader;
pub mod planner;
pub mod preflight;
pub mod problems;
pub mod status;
pub mod supervision;
pub mod wal_health;
