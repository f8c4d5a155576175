//! cnpg-autoresize: grows PostgreSQL volumes on Kubernetes before they fill,
//! and refuses when growth would only hide a WAL problem.

pub mod actors;
pub mod api;
pub mod engine;
pub mod http_client;
pub mod kube_api;
pub mod manager;
pub mod metrics;
pub mod plugin;
