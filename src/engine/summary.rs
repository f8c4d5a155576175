//! A decision as the outside world sees it: the `plan` output record (its
//! fields and names are the contract of docs/reference/commands.md#output),
//! also embedded in what the leader publishes to every pod.

use super::{Action, Decision, Reason, Trigger, WarningCode};
use crate::api::cluster::VolumeType;
use crate::api::quantity::format_bytes;
use serde::{Deserialize, Serialize};

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DecisionSummary {
    pub instance: String,
    pub pvc: String,
    pub volume_type: VolumeType,
    /// Null unless the volume is a tablespace.
    pub tablespace: Option<String>,
    pub action: Action,
    /// Null exactly when the action is `resize`.
    pub reason: Option<Reason>,
    pub warnings: Vec<WarningCode>,
    /// Which trigger fired; null unless the action is `resize`.
    pub trigger: Option<Trigger>,
    /// Kubernetes quantity strings.
    pub current_size: Option<String>,
    pub new_size: Option<String>,
    pub budget_remaining: Option<u32>,
    /// On a resize sized by `horizon`: the history behind the forecast, in
    /// seconds (the horizon counted for at most four times it); absent
    /// otherwise.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub history_seconds: Option<u64>,
}

impl From<&Decision> for DecisionSummary {
    fn from(d: &Decision) -> Self {
        DecisionSummary {
            instance: d.volume.instance.clone(),
            pvc: d.volume.pvc.clone(),
            volume_type: d.volume.volume_type,
            tablespace: d.volume.tablespace.clone(),
            action: d.action,
            reason: d.reason,
            warnings: d.warnings.clone(),
            trigger: d.trigger,
            current_size: d.current_size.map(format_bytes),
            new_size: d.new_size.map(format_bytes),
            budget_remaining: d.budget_remaining,
            history_seconds: d.history_seconds,
        }
    }
}
