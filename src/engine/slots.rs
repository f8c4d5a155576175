//! Which replication slots are CloudNativePG's own (rule 9 of
//! docs/reference/decision.md#9-wal-safety): an inactive slot CNPG keeps on
//! purpose never blocks a resize and is not reported as inactive; every
//! other inactive slot counts, on any instance.
//!
//! - An HA slot (`<slotPrefix><instance>`) is CNPG's while the instance it
//!   names exists (a PVC or a pod of the cluster). On the primary the
//!   instance must also have a pod, or have lost it less than a grace period
//!   ago: a standby gone for longer is as good as abandoned.
//! - On a standby, copies of the primary's user slots are CNPG's while its
//!   slot synchronisation (`synchronizeReplicas`) is on, except those its
//!   `excludePatterns` leave out.

use crate::api::cluster::{Cluster, DEFAULT_HA_SLOT_PREFIX};
use jiff::{SignedDuration, Timestamp};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet};

/// The cluster's instance pods, as far as rule 9 needs them.
#[derive(Clone, Debug, Default, PartialEq)]
pub enum Pods {
    /// Not known (a `plan` snapshot without `pods`): an instance has a pod
    /// while it has a PVC or a report.
    #[default]
    Unknown,
    Known {
        /// Instances with a pod now.
        present: BTreeSet<String>,
        /// Instances whose pod disappeared, and since when. An instance in
        /// neither set lost its pod longer ago than anyone knows.
        gone_since: BTreeMap<String, Timestamp>,
    },
}

/// What decides whether a slot is CNPG's, for one cluster at one moment.
/// Published to every pod (in the decision feed) so each one's slot metrics
/// leave out the same slots as the leader's decisions and status.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CnpgSlots {
    /// `highAvailability.slotPrefix`, CNPG's default when empty.
    pub prefix: String,
    /// The HA slot name of every instance that exists, and whether it counts
    /// as CNPG's on a primary (a pod, or one lost within the grace period).
    /// Absent: the instances are not known (no leader has said yet), and
    /// the prefix alone decides.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub instances: Option<BTreeMap<String, bool>>,
    /// `synchronizeReplicas.enabled` (CNPG's default: on).
    pub synchronize_user_slots: bool,
    /// `synchronizeReplicas.excludePatterns`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub exclude_patterns: Vec<String>,
}

impl Default for CnpgSlots {
    /// Before the leader says anything: CNPG's defaults, by prefix.
    fn default() -> Self {
        CnpgSlots {
            prefix: DEFAULT_HA_SLOT_PREFIX.to_string(),
            instances: None,
            synchronize_user_slots: true,
            exclude_patterns: Vec::new(),
        }
    }
}

impl CnpgSlots {
    /// `existing`: every instance with a PVC, a pod or (when pods are not
    /// known) a report. `grace`: how long a primary's HA slot stays CNPG's
    /// after its instance lost its pod.
    pub fn of(
        cluster: &Cluster,
        existing: &BTreeSet<String>,
        pods: &Pods,
        now: Timestamp,
        grace: SignedDuration,
    ) -> Self {
        let prefix = cluster.ha_slot_prefix();
        let instances = existing
            .iter()
            .map(|instance| {
                let attached = match pods {
                    Pods::Unknown => true,
                    Pods::Known {
                        present,
                        gone_since,
                    } => {
                        present.contains(instance)
                            || gone_since
                                .get(instance)
                                .is_some_and(|since| now.duration_since(*since) < grace)
                    }
                };
                (ha_slot_name(&prefix, instance), attached)
            })
            .collect();
        let (synchronize_user_slots, exclude_patterns) = cluster.synchronized_user_slots();
        CnpgSlots {
            prefix,
            instances: Some(instances),
            synchronize_user_slots,
            exclude_patterns,
        }
    }

    /// Whether `slot`, inactive on an instance that is (`in_recovery`) or
    /// is not a standby, is CNPG's. Unknown recovery counts as a primary.
    pub fn is_cnpg(&self, slot: &str, in_recovery: Option<bool>) -> bool {
        let standby = in_recovery == Some(true);
        if slot.starts_with(&self.prefix) {
            return match &self.instances {
                None => true,
                Some(instances) => instances
                    .get(slot)
                    .is_some_and(|attached| standby || *attached),
            };
        }
        standby && self.synchronize_user_slots && !self.excluded(slot)
    }

    /// A pattern that does not compile leaves the slot out of the copies
    /// too: counting a slot is the safe side.
    fn excluded(&self, slot: &str) -> bool {
        self.exclude_patterns
            .iter()
            .any(|p| regex::Regex::new(p).map_or(true, |re| re.is_match(slot)))
    }
}

/// CNPG's HA slot name for `instance` (`GetSlotNameFromInstanceName`):
/// `prefix + instance`, lower-cased, each run of characters outside
/// `[a-z0-9_]` replaced by one `_`.
pub fn ha_slot_name(prefix: &str, instance: &str) -> String {
    let mut out = String::with_capacity(prefix.len() + instance.len());
    let mut in_bad_run = false;
    for c in format!("{prefix}{instance}").to_lowercase().chars() {
        if c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_' {
            out.push(c);
            in_bad_run = false;
        } else if !in_bad_run {
            out.push('_');
            in_bad_run = true;
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slot_names_follow_cnpg() {
        assert_eq!(ha_slot_name("_cnpg_", "pg-main-2"), "_cnpg_pg_main_2");
        assert_eq!(ha_slot_name("_cnpg_", "A.b--c"), "_cnpg_a_b_c");
    }

    #[test]
    fn an_unreadable_exclude_pattern_counts_the_slot() {
        let slots = CnpgSlots {
            exclude_patterns: vec!["(".into()],
            ..CnpgSlots::default()
        };
        assert!(!slots.is_cnpg("analytics", Some(true)));
        assert!(CnpgSlots::default().is_cnpg("analytics", Some(true)));
        assert!(!CnpgSlots::default().is_cnpg("analytics", Some(false)));
        assert!(!CnpgSlots::default().is_cnpg("analytics", None));
    }
}
