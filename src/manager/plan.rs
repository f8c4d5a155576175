//! `cnpg-autoresize plan`: the offline what-if. Reads a snapshot, prints the
//! decisions the running system would make, as JSON. The snapshot is read
//! as leniently as the running system reads the API: an unreadable entry
//! is left out (with a note on stderr), and only input that is not a
//! snapshot at all is refused.

use super::input::{expect_kind, read_document, typed, InputError};
use crate::api::cluster::Cluster;
use crate::api::lenient::Lenient;
use crate::api::policy::AutoResizePolicy;
use crate::api::report::InstanceReport;
use crate::api::source::Source;
use crate::engine::{decide, DecisionSummary, EngineSettings, PlanInput, Pods};
use k8s_openapi::api::core::v1::{PersistentVolumeClaim, Pod};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::Path;

/// The `plan` input (docs/reference/commands.md#snapshot).
#[derive(Clone, Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Snapshot {
    #[serde(default)]
    pub now: Option<jiff::Timestamp>,
    pub cluster: serde_json::Value,
    #[serde(default)]
    pub policy: Option<serde_json::Value>,
    #[serde(default)]
    pub pvcs: Vec<Lenient<PersistentVolumeClaim>>,
    /// The instance pods; absent: an instance has a pod while it has a PVC
    /// or a report. An instance listed in neither has lost its pod longer
    /// ago than the grace period of rule 9.
    #[serde(default)]
    pub pods: Option<Vec<Lenient<Pod>>>,
    #[serde(default)]
    pub instances: BTreeMap<String, Lenient<InstanceReport>>,
}

#[derive(Clone, Debug, Serialize)]
pub struct PlanOutput {
    pub decisions: Vec<DecisionSummary>,
}

/// Loads a snapshot and decides. `now` is the snapshot's, else the caller's.
/// Returns the decisions and notes about entries left out.
pub fn plan_file(
    path: Option<&Path>,
    now: jiff::Timestamp,
) -> Result<(PlanOutput, Vec<String>), InputError> {
    let name = path
        .filter(|p| p.as_os_str() != "-")
        .map(|p| p.display().to_string())
        .unwrap_or_else(|| "standard input".to_string());
    plan_document(&name, read_document(path)?, now)
}

/// [`plan_file`] on a snapshot's text (YAML or JSON), named `name` in messages.
pub fn plan_text(
    name: &str,
    text: &str,
    now: jiff::Timestamp,
) -> Result<(PlanOutput, Vec<String>), InputError> {
    plan_document(name, super::input::parse_document(name, text)?, now)
}

fn plan_document(
    name: &str,
    document: serde_json::Value,
    now: jiff::Timestamp,
) -> Result<(PlanOutput, Vec<String>), InputError> {
    let name = name.to_string();
    let snapshot: Snapshot = typed(&name, document)?;
    let cluster_name = format!("{name}: cluster");
    expect_kind(
        &cluster_name,
        &snapshot.cluster,
        crate::api::cluster::API_GROUP,
        crate::api::cluster::KIND,
    )?;
    let cluster: Cluster = typed(&cluster_name, snapshot.cluster.clone())?;
    let policy: Option<AutoResizePolicy> = match &snapshot.policy {
        Some(value) => {
            let policy_name = format!("{name}: policy");
            expect_kind(
                &policy_name,
                value,
                crate::api::policy::API_GROUP,
                crate::api::policy::KIND,
            )?;
            Some(typed(&policy_name, value.clone())?)
        }
        None => None,
    };
    let mut notes = Vec::new();
    let mut pvcs = Vec::new();
    for (i, pvc) in snapshot.pvcs.into_iter().enumerate() {
        match pvc {
            Lenient::Ok(p) => pvcs.push(p),
            Lenient::Unreadable { error, .. } => {
                notes.push(format!("{name}: pvcs[{i}] left out: {error}"))
            }
        }
    }
    let pods = match snapshot.pods {
        None => Pods::Unknown,
        Some(list) => {
            let mut present = std::collections::BTreeSet::new();
            for (i, pod) in list.into_iter().enumerate() {
                match pod {
                    Lenient::Ok(p) => present.extend(p.metadata.name),
                    Lenient::Unreadable { error, .. } => {
                        notes.push(format!("{name}: pods[{i}] left out: {error}"))
                    }
                }
            }
            Pods::Known {
                present,
                gone_since: BTreeMap::new(),
            }
        }
    };
    let mut instances = BTreeMap::new();
    for (pod, report) in snapshot.instances {
        match report {
            Lenient::Ok(r) => match r.check() {
                Ok(()) => {
                    instances.insert(pod, r);
                }
                Err(error) => notes.push(format!(
                    "{name}: instances.{pod} left out (no status from it): {error}"
                )),
            },
            Lenient::Unreadable { error, .. } => notes.push(format!(
                "{name}: instances.{pod} left out (no status from it): {error}"
            )),
        }
    }
    let (_, unreadable) = crate::api::lenient::split(
        Source {
            cluster: &cluster,
            policy: policy.as_ref(),
        }
        .status_events(),
    );
    for (_, error) in unreadable {
        notes.push(format!(
            "{name}: a status.autoResizeEvents entry counts toward no budget (unreadable: {error})"
        ));
    }
    let input = PlanInput {
        source: Source {
            cluster: &cluster,
            policy: policy.as_ref(),
        },
        pvcs: &pvcs,
        instances: &instances,
        pods,
        now: snapshot.now.unwrap_or(now),
        settings: EngineSettings::default(),
    };
    let output = PlanOutput {
        decisions: decide(&input).iter().map(DecisionSummary::from).collect(),
    };
    Ok((output, notes))
}
