//! `cnpg-autoresize plan`: the offline what-if. Reads a snapshot, prints the
//! decisions the running system would make, as JSON.

use super::input::{expect_cluster, read_document, typed, InputError};
use crate::api::cluster::Cluster;
use crate::api::quantity::format_bytes;
use crate::api::report::InstanceReport;
use crate::engine::{decide, Action, Decision, EngineSettings, PlanInput, Reason, WarningCode};
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

/// One line of `plan` output; field names and values are the public contract.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct PlannedDecision {
    pub instance: String,
    pub pvc: String,
    pub volume_type: &'static str,
    pub tablespace: Option<String>,
    pub action: Action,
    pub reason: Option<Reason>,
    pub warnings: Vec<WarningCode>,
    pub current_size: Option<String>,
    pub new_size: Option<String>,
    pub budget_remaining: Option<u32>,
}

#[derive(Clone, Debug, Serialize)]
pub struct PlanOutput {
    pub decisions: Vec<PlannedDecision>,
}

impl From<&Decision> for PlannedDecision {
    fn from(d: &Decision) -> Self {
        PlannedDecision {
            instance: d.volume.instance.clone(),
            pvc: d.volume.pvc.clone(),
            volume_type: d.volume.volume_type.as_str(),
            tablespace: d.volume.tablespace.clone(),
            action: d.action,
            reason: d.reason,
            warnings: d.warnings.clone(),
            current_size: d.current_size.map(format_bytes),
            new_size: d.new_size.map(format_bytes),
            budget_remaining: d.budget_remaining,
        }
    }
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
        decisions: decide(&input).iter().map(PlannedDecision::from).collect(),
    })
}
