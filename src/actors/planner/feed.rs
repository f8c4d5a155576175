//! The decisions the leader publishes, per instance, so every pod can export
//! decision metrics about its own volumes and know its triggers (served at
//! `/v1/decisions`). The version moves only on a material change: a message
//! whose byte counts changed wakes no follower.

use crate::api::cluster::AutoResizeEvent;
use crate::api::resize::Mode;
use crate::engine::{Action, CnpgSlots, Decision, DecisionSummary, Reason, Thresholds};
use crate::metrics::{DecisionMetrics, VolumeLabels};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DecisionFeed {
    pub version: u64,
    /// The pod that made these decisions.
    pub leader: String,
    /// The Cluster's CloudNativePG HA slot prefix (for followers of an
    /// older version; `cnpg_slots` says more).
    #[serde(default)]
    pub ha_slot_prefix: String,
    /// Which inactive slots are CloudNativePG's (left out of slot metrics).
    #[serde(default)]
    pub cnpg_slots: CnpgSlots,
    pub instances: BTreeMap<String, InstanceDecisions>,
    /// Planning passes completed by this leader. Moves on every pass
    /// without waking anyone: what a test waits for when it checks that
    /// something does *not* happen.
    #[serde(default)]
    pub passes: u64,
    /// The Lease as the leader holds it when it answers (the HTTP endpoint
    /// adds it): a follower that stops hearing from the leader knows which
    /// record to watch expire, and when.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lease: Option<LeaseView>,
}

impl DecisionFeed {
    /// This feed with only `instance`'s decisions, what a follower asks
    /// for: the other instances are not copied, so 49 followers woken at
    /// once cost 49 instances, not 49 clusters. (Destructured, so a new
    /// field cannot be forgotten here.)
    pub fn only(&self, instance: &str) -> DecisionFeed {
        let DecisionFeed {
            version,
            leader,
            ha_slot_prefix,
            cnpg_slots,
            instances,
            passes,
            lease,
        } = self;
        DecisionFeed {
            version: *version,
            leader: leader.clone(),
            ha_slot_prefix: ha_slot_prefix.clone(),
            cnpg_slots: cnpg_slots.clone(),
            instances: instances
                .get_key_value(instance)
                .map(|(k, v)| (k.clone(), v.clone()))
                .into_iter()
                .collect(),
            passes: *passes,
            lease: lease.clone(),
        }
    }
}

/// The leader's Lease record and how long it stays valid, on the leader's
/// clock, as of the answer.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct LeaseView {
    pub holder: String,
    pub renew_time: String,
    pub valid_for_seconds: f64,
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
    /// Mode Recommend: the size a resize would set.
    #[serde(default)]
    pub recommended_bytes: Option<u64>,
    #[serde(default)]
    pub thresholds: Option<Thresholds>,
    /// Exact figures change all the time: not part of what makes a feed new.
    pub message: String,
}

impl VolumeDecision {
    pub fn from_decision(d: &Decision) -> Self {
        VolumeDecision {
            summary: DecisionSummary::from(d),
            next_action_at: d.next_action_at,
            at_limit: d.at_limit,
            stuck: d.stuck,
            recommended_bytes: d
                .new_size
                .filter(|_| d.action == Action::Resize && d.mode == Mode::Recommend),
            thresholds: d.thresholds,
            message: d.message.clone(),
        }
    }

    pub fn labels(&self) -> VolumeLabels {
        VolumeLabels::new(self.summary.volume_type, self.summary.tablespace.as_deref())
    }

    pub fn metrics(&self) -> DecisionMetrics {
        let s = &self.summary;
        DecisionMetrics {
            reason: s.reason,
            at_limit: self.at_limit,
            budget_remaining: s.budget_remaining,
            next_action_at: self
                .next_action_at
                .filter(|_| s.budget_remaining == Some(0) || s.reason == Some(Reason::Cooldown)),
            stuck: self.stuck,
            recommended_bytes: self.recommended_bytes,
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

/// The feed without its prose: what decides whether followers are woken.
fn material(
    instances: &BTreeMap<String, InstanceDecisions>,
) -> BTreeMap<String, InstanceDecisions> {
    let mut m = instances.clone();
    for i in m.values_mut() {
        for v in &mut i.volumes {
            v.message.clear();
            // Grows every second: not news.
            v.summary.history_seconds = None;
        }
    }
    m
}

/// Replaces the feed's content; the version (and with it every waiting
/// long-poll) moves only when something material changed.
pub fn update(
    feed: &mut DecisionFeed,
    leader: &str,
    cnpg_slots: &CnpgSlots,
    instances: BTreeMap<String, InstanceDecisions>,
) -> bool {
    let changed = feed.leader != leader
        || feed.cnpg_slots != *cnpg_slots
        || material(&feed.instances) != material(&instances);
    feed.instances = instances;
    feed.passes += 1;
    if changed {
        feed.version += 1;
        feed.leader = leader.to_string();
        feed.ha_slot_prefix = cnpg_slots.prefix.clone();
        feed.cnpg_slots = cnpg_slots.clone();
    }
    changed
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::cluster::VolumeType;

    fn feed_with(message: &str, reason: Reason) -> BTreeMap<String, InstanceDecisions> {
        let summary = DecisionSummary {
            instance: "pg-1".into(),
            pvc: "pg-1".into(),
            volume_type: VolumeType::Data,
            tablespace: None,
            action: Action::None,
            reason: Some(reason),
            warnings: vec![],
            trigger: None,
            current_size: Some("1Gi".into()),
            new_size: None,
            budget_remaining: Some(3),
            history_seconds: None,
        };
        BTreeMap::from([(
            "pg-1".to_string(),
            InstanceDecisions {
                volumes: vec![VolumeDecision {
                    summary,
                    next_action_at: None,
                    at_limit: false,
                    stuck: false,
                    recommended_bytes: None,
                    thresholds: None,
                    message: message.into(),
                }],
                events: vec![],
            },
        )])
    }

    #[test]
    fn only_a_material_change_moves_the_version() {
        let mut feed = DecisionFeed::default();
        assert!(update(
            &mut feed,
            "pg-1",
            &CnpgSlots::default(),
            feed_with("50% used", Reason::NotTriggered)
        ));
        let v = feed.version;
        assert!(!update(
            &mut feed,
            "pg-1",
            &CnpgSlots::default(),
            feed_with("51% used", Reason::NotTriggered)
        ));
        assert_eq!(feed.version, v, "new figures in the message only");
        assert_eq!(
            feed.instances["pg-1"].volumes[0].message, "51% used",
            "but current"
        );
        assert!(update(
            &mut feed,
            "pg-1",
            &CnpgSlots::default(),
            feed_with("x", Reason::AtLimit)
        ));
        assert_eq!(feed.version, v + 1);
    }
}
