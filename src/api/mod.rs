//! Kubernetes-facing types: quantities and durations, the Cluster resource,
//! the AutoResizePolicy resource, their resize configuration, instance
//! reports, and validation.

pub mod cluster;
pub mod crd;
pub mod duration;
pub mod field;
pub mod lenient;
pub mod policy;
pub mod quantity;
pub mod report;
pub mod resize;
pub mod source;
pub mod validation;

pub use field::{FieldIssue, FieldPath};
pub use lenient::Lenient;

#[cfg(test)]
mod cel_tests;
#[cfg(test)]
mod validation_tests;
