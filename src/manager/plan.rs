//! `cnpg-autoresize plan`: the offline what-if. Reads a snapshot, prints the
//! decisions the running system would make, as JSON.

use super::input::{expect_cluster, read_document, typed, InputError};
use crate::api::cluster::Cluster;
use crate::api::report::InstanceReport;
use crate::engine::{decide, DecisionSummary, EngineSettings, PlanInput};
use k8s_openapi::api::core::v1::PersistentVolumeClaim;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::Path;

/// The `plan` input (SPEC §6).
#[derive(Clone, Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Snapshot {
    #[serde(default)]
    pub now: Option<jiff::Timestamp>,
    pub cluster: serde_json::Value,
    #[serde(default)]
    pub pvcs: Vec<PersistentVolumeClaim>,
    #[serde(default)]
    pub instances: BTreeMap<String, InstanceReport>,
}

#[derive(Clone, Debug, Serialize)]
pub struct PlanOutput {
    pub decisions: Vec<DecisionSummary>,
}

/// Loads a snapshot and decides. `now` is the snapshot's, else the caller's.
pub fn plan_file(path: Option<&Path>, now: jiff::Timestamp) -> Result<PlanOutput, InputError> {
    let name = path
        .filter(|p| p.as_os_str() != "-")
        .map(|p| p.display().to_string())
        .unwrap_or_else(|| "standard input".to_string());
    let snapshot: Snapshot = typed(&name, read_document(path)?)?;
    expect_cluster(&format!("{name}: cluster"), &snapshot.cluster)?;
    let cluster: Cluster = typed(&format!("{name}: cluster"), snapshot.cluster.clone())?;
    let input = PlanInput {
        cluster: &cluster,
        pvcs: &snapshot.pvcs,
        instances: &snapshot.instances,
        now: snapshot.now.unwrap_or(now),
        settings: EngineSettings::default(),
    };
    Ok(PlanOutput {
        decisions: decide(&input).iter().map(DecisionSummary::from).collect(),
    })
}
