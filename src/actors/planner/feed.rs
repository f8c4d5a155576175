//! The decisions the leader publishes, per instance, so every pod can export
//! decision metrics about its own volumes (served at `/v1/decisions`).

use crate::api::cluster::AutoResizeEvent;
use crate::engine::{Action, Decision, DecisionSummary, Reason};
use crate::metrics::{DecisionMetrics, VolumeLabels};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DecisionFeed {
    pub version: u64,
    /// The pod that made these decisions.
    pub leader: String,
    pub instances: BTreeMap<String, InstanceDecisions>,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct InstanceDecisions {
    pub volumes: Vec<VolumeDecision>,
    /// The resize journal of this instance's PVCs.
    pub events: Vec<AutoResizeEvent>,
}

/// A decision as published: the `plan` record plus what metrics and events need.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct VolumeDecision {
    #[serde(flatten)]
    pub summary: DecisionSummary,
    pub next_action_at: Option<jiff::Timestamp>,
    pub at_limit: bool,
    pub stuck: bool,
    pub message: String,
}

impl VolumeDecision {
    pub fn from_decision(d: &Decision) -> Self {
        VolumeDecision {
            summary: DecisionSummary::from(d),
            next_action_at: d.next_action_at,
            at_limit: d.at_limit,
            stuck: d.stuck,
            message: d.message.clone(),
        }
    }

    pub fn labels(&self) -> VolumeLabels {
        VolumeLabels::new(self.summary.volume_type, self.summary.tablespace.as_deref())
    }

    pub fn metrics(&self) -> DecisionMetrics {
        let s = &self.summary;
        let blocked = s.action == Action::Blocked || s.reason == Some(Reason::InvalidConfig);
        DecisionMetrics {
            blocked_reason: s.reason.filter(|_| blocked),
            at_limit: self.at_limit,
            budget_remaining: s.budget_remaining,
            next_action_at: self
                .next_action_at
                .filter(|_| s.budget_remaining == Some(0)),
            stuck: self.stuck,
        }
    }
}

/// Groups decisions and journal entries by instance.
pub fn feed_of(
    decisions: &[Decision],
    events: &[AutoResizeEvent],
) -> BTreeMap<String, InstanceDecisions> {
    let mut instances: BTreeMap<String, InstanceDecisions> = BTreeMap::new();
    for d in decisions {
        instances
            .entry(d.volume.instance.clone())
            .or_default()
            .volumes
            .push(VolumeDecision::from_decision(d));
    }
    for e in events {
        instances
            .entry(e.instance_name.clone())
            .or_default()
            .events
            .push(e.clone());
    }
    instances
}
