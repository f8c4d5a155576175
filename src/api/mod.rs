//! Kubernetes-facing types: quantities, the Cluster resource and its resize
//! configuration, instance reports, and validation.

pub mod cluster;
pub mod field;
pub mod quantity;
pub mod report;
pub mod resize;
pub mod validation;

pub use field::{FieldIssue, FieldPath};

#[cfg(test)]
mod validation_tests;
