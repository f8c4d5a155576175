//! `cnpg-autoresize plugin`: a CNPG-I plugin (docs/deploy-cnpg-i.md).
//! CloudNativePG calls it to add the manager container to its instance
//! pods, to validate the plugin's parameters and to show a summary in the
//! Cluster's status. The decisions are in [`inject`] and [`status`] (pure,
//! unit-tested); [`service`] and [`server`] only carry them over gRPC.

pub mod command;
pub mod inject;
pub mod kube;
pub mod proto;
pub mod server;
pub mod service;
pub mod status;
pub mod tls;
