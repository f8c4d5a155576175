//! Exact Kubernetes `resource.Quantity` parsing and formatting for storage
//! sizes, re-exported from the k8s-quantity crate, shared with the sandbox and
//! test bed.

pub use k8s_quantity::{format_bytes, Format, Quantity, QuantityError};
