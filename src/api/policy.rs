//! `AutoResizePolicy` (`autoresize.cnpg.io/v1alpha1`, docs/reference/configuration.md#the-autoresizepolicy): the
//! project's own CRD, for upstream CloudNativePG whose Cluster CRD has no
//! `resize` blocks. When a policy targets a cluster it is the only source of
//! configuration for it, and its status receives what the fork's Cluster
//! status would: `autoResizeEvents`, `diskStatus`, and conditions.
//!
//! The CRD under `charts/cnpg-autoresize/crds/` is generated from these types
//! (`cargo run --bin crdgen`); a test fails when the checked-in file drifts.

use super::cluster::{lenient_list, AutoResizeEvent, ClusterDiskStatus};
use super::lenient::Lenient;
use super::resize::ResizeConfiguration;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

pub const API_GROUP: &str = "autoresize.cnpg.io";
pub const API_VERSION: &str = "autoresize.cnpg.io/v1alpha1";
pub const KIND: &str = "AutoResizePolicy";

#[derive(CustomResource, Clone, Debug, Default, Serialize, Deserialize, JsonSchema)]
#[kube(
    group = "autoresize.cnpg.io",
    version = "v1alpha1",
    kind = "AutoResizePolicy",
    plural = "autoresizepolicies",
    shortname = "arp",
    doc = "The auto-resize configuration of one CloudNativePG Cluster (for upstream CloudNativePG, whose Cluster has no resize blocks), and what the managers report about it",
    namespaced,
    status = "AutoResizePolicyStatus",
    printcolumn = r#"{"name":"Cluster","type":"string","jsonPath":".spec.cluster"}"#,
    printcolumn = r#"{"name":"Ready","type":"string","jsonPath":".status.conditions[?(@.type==\"Ready\")].status"}"#,
    printcolumn = r#"{"name":"Blocked","type":"string","jsonPath":".status.conditions[?(@.type==\"Blocked\")].status"}"#,
    printcolumn = r#"{"name":"Last Resize","type":"date","jsonPath":".status.lastResizeTime"}"#,
    printcolumn = r#"{"name":"Age","type":"date","jsonPath":".metadata.creationTimestamp"}"#
)]
#[serde(rename_all = "camelCase")]
#[schemars(transform = super::crd::policy_spec_schema)]
/// Which Cluster, and a `resize` block per kind of volume.
pub struct AutoResizePolicySpec {
    /// The CloudNativePG Cluster this policy governs, in the same namespace.
    #[schemars(length(max = super::crd::MAX_CLUSTER_NAME_LENGTH))]
    pub cluster: String,
    /// Data volumes (PGDATA).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub storage: Option<PolicyVolume>,
    /// WAL volumes; used only when the Cluster has `spec.walStorage`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub wal_storage: Option<PolicyVolume>,
    /// Tablespace volumes, by tablespace name; used only for tablespaces the Cluster has.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = super::crd::MAX_POLICY_TABLESPACES))]
    pub tablespaces: Vec<PolicyTablespace>,
}

#[derive(Clone, Debug, Default, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct PolicyVolume {
    /// The same block as a Cluster's `resize`, plus the fields only a policy can carry.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(transform = super::crd::policy_resize_schema)]
    pub resize: Option<Lenient<ResizeConfiguration>>,
}

#[derive(Clone, Debug, Default, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct PolicyTablespace {
    /// The tablespace's name, as in the Cluster's `spec.tablespaces[].name`.
    #[schemars(length(max = super::crd::MAX_TABLESPACE_NAME_LENGTH))]
    pub name: String,
    /// The same block as a Cluster's `resize`, plus the fields only a policy can carry.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(transform = super::crd::policy_resize_schema)]
    pub resize: Option<Lenient<ResizeConfiguration>>,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct AutoResizePolicyStatus {
    /// Every resize, as recorded on its PVC (the audit log and budget source).
    #[serde(
        default,
        skip_serializing_if = "Vec::is_empty",
        deserialize_with = "lenient_list"
    )]
    pub auto_resize_events: Vec<Lenient<AutoResizeEvent>>,
    /// The latest disk and WAL health figures of every instance.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub disk_status: Option<Lenient<ClusterDiskStatus>>,
    /// `Ready` (the policy is valid and a leader acts on it) and `Blocked`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<Condition>,
    /// When the last successful resize was decided.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(extend("format" = "date-time"))]
    pub last_resize_time: Option<String>,
}

impl AutoResizePolicy {
    pub fn name(&self) -> &str {
        self.metadata.name.as_deref().unwrap_or("")
    }

    pub fn status_events(&self) -> &[Lenient<AutoResizeEvent>] {
        self.status
            .as_ref()
            .map(|s| s.auto_resize_events.as_slice())
            .unwrap_or(&[])
    }

    pub fn disk_status(&self) -> Option<&ClusterDiskStatus> {
        self.status.as_ref()?.disk_status.as_ref()?.ok()
    }
}

/// The policies that target `cluster`, in the order that settles which one
/// governs: the oldest first, ties broken by name. The planner and `status`
/// must agree on it.
pub fn targeting<'p>(
    policies: impl IntoIterator<Item = &'p AutoResizePolicy>,
    cluster: &str,
) -> Vec<AutoResizePolicy> {
    let mut found: Vec<AutoResizePolicy> = policies
        .into_iter()
        .filter(|p| p.spec.cluster == cluster)
        .cloned()
        .collect();
    found.sort_by(|a, b| {
        let age = |p: &AutoResizePolicy| p.metadata.creation_timestamp.as_ref().map(|t| t.0);
        age(a).cmp(&age(b)).then(a.name().cmp(b.name()))
    });
    found
}
