//! The decision, per volume (docs/reference/decision.md). Pure: no I/O and no
//! clock — the caller passes everything it knows, `now` included. `plan` and
//! the in-pod planner share it, so what `plan` prints is what `run` does.
//!
//! Reading order: [`decide`] pairs every PVC of the cluster with its volume's
//! configuration and the journal of past resizes ([`journal`]); `rules.rs`
//! applies the rules in the order decision.md gives them, with `inflight.rs`
//! (what the PVC says), `budget.rs` (budget and cooldown), `wal.rs` (WAL
//! safety) and `sizing.rs` (the new size) doing the arithmetic.

mod budget;
pub mod forecast;
mod foreign;
mod inflight;
pub mod journal;
mod rules;
mod sizing;
mod slots;
mod summary;
mod volumes;
mod wal;

pub use budget::{budget_for, cooldown_until, Budget, BUDGET_WINDOW};
pub use foreign::{foreign_resizes, request_owner, ForeignResize, FIELD_MANAGER};
pub use inflight::requested_bytes;
use inflight::Claim;
pub use sizing::{new_size, round_up_to_mib, Growth, HISTORY_MULTIPLE, MIB};
pub use slots::{ha_slot_name, CnpgSlots, Pods};
pub use summary::DecisionSummary;
pub use volumes::{classify_pvc, VolumeRef, LABEL_CLUSTER, LABEL_POD_ROLE};

use crate::api::cluster::{AutoResizeEvent, VolumeType};
use crate::api::report::InstanceReport;
use crate::api::resize::{Mode, ResizePolicy};
use crate::api::source::Source;
use jiff::{SignedDuration, Timestamp};
use journal::Journal;
use k8s_openapi::api::core::v1::PersistentVolumeClaim;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::fmt;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Action {
    Resize,
    None,
    Blocked,
}

/// Why a volume is not resized. The codes are part of the public contract
/// (CLI, metrics, events, status).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Reason {
    NoStatus,
    ResizeInProgress,
    ExpansionFailed,
    NotTriggered,
    Cooldown,
    RateLimit,
    AtLimit,
    SingleVolumeNoAck,
    ArchiveUnhealthy,
    PendingWalExceeded,
    SlotRetentionExceeded,
    InvalidConfig,
}

impl Reason {
    pub const ALL: [Reason; 12] = [
        Reason::NoStatus,
        Reason::ResizeInProgress,
        Reason::ExpansionFailed,
        Reason::NotTriggered,
        Reason::Cooldown,
        Reason::RateLimit,
        Reason::AtLimit,
        Reason::SingleVolumeNoAck,
        Reason::ArchiveUnhealthy,
        Reason::PendingWalExceeded,
        Reason::SlotRetentionExceeded,
        Reason::InvalidConfig,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Reason::NoStatus => "no_status",
            Reason::ResizeInProgress => "resize_in_progress",
            Reason::ExpansionFailed => "expansion_failed",
            Reason::NotTriggered => "not_triggered",
            Reason::Cooldown => "cooldown",
            Reason::RateLimit => "rate_limit",
            Reason::AtLimit => "at_limit",
            Reason::SingleVolumeNoAck => "single_volume_no_ack",
            Reason::ArchiveUnhealthy => "archive_unhealthy",
            Reason::PendingWalExceeded => "pending_wal_exceeded",
            Reason::SlotRetentionExceeded => "slot_retention_exceeded",
            Reason::InvalidConfig => "invalid_config",
        }
    }
}

impl fmt::Display for Reason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum WarningCode {
    /// WAL health could not be read (or slot data is unknown); the resize was
    /// allowed anyway, because a full disk is the worse outcome.
    WalHealthUnavailable,
    /// The PVC grows to the size of its peers (rule 1), not by a trigger.
    SizeParity,
}

impl WarningCode {
    pub const ALL: [WarningCode; 2] = [WarningCode::WalHealthUnavailable, WarningCode::SizeParity];

    pub fn as_str(self) -> &'static str {
        match self {
            WarningCode::WalHealthUnavailable => "wal_health_unavailable",
            WarningCode::SizeParity => "size_parity",
        }
    }
}

/// Which trigger made a volume grow.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Trigger {
    Usage,
    Available,
    Inodes,
    Forecast,
    Parity,
}

impl Trigger {
    pub const ALL: [Trigger; 5] = [
        Trigger::Usage,
        Trigger::Available,
        Trigger::Inodes,
        Trigger::Forecast,
        Trigger::Parity,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Trigger::Usage => "usage",
            Trigger::Available => "available",
            Trigger::Inodes => "inodes",
            Trigger::Forecast => "forecast",
            Trigger::Parity => "parity",
        }
    }
}

/// Knobs of the decision that come from the manager's flags.
#[derive(Clone, Copy, Debug)]
pub struct EngineSettings {
    /// A report older than this is not trusted (3 probe intervals).
    pub status_max_age: SignedDuration,
    /// A resize in flight for longer than this is reported stuck.
    pub stuck_after: SignedDuration,
    /// A primary's HA slot stays CloudNativePG's this long after the
    /// instance it names lost its pod (rule 9).
    pub ha_slot_grace: SignedDuration,
}

/// Default of [`EngineSettings::ha_slot_grace`].
pub const HA_SLOT_GRACE: SignedDuration = SignedDuration::from_mins(30);

impl Default for EngineSettings {
    fn default() -> Self {
        EngineSettings {
            status_max_age: SignedDuration::from_secs(3),
            stuck_after: SignedDuration::from_mins(10),
            ha_slot_grace: HA_SLOT_GRACE,
        }
    }
}

/// Everything the decision looks at.
pub struct PlanInput<'a> {
    pub source: Source<'a>,
    pub pvcs: &'a [PersistentVolumeClaim],
    pub instances: &'a BTreeMap<String, InstanceReport>,
    /// The instance pods (rule 9); `Pods::Unknown` when not known.
    pub pods: Pods,
    pub now: Timestamp,
    pub settings: EngineSettings,
}

impl PlanInput<'_> {
    /// Which inactive slots are CloudNativePG's in this cluster now (rule 9).
    pub fn cnpg_slots(&self) -> CnpgSlots {
        let cluster = self.source.cluster.name();
        let mut existing: std::collections::BTreeSet<String> = self
            .pvcs
            .iter()
            .filter_map(|p| classify_pvc(p, cluster))
            .map(|v| v.instance)
            .collect();
        match &self.pods {
            Pods::Unknown => existing.extend(self.instances.keys().cloned()),
            Pods::Known { present, .. } => existing.extend(present.iter().cloned()),
        }
        CnpgSlots::of(
            self.source.cluster,
            &existing,
            &self.pods,
            self.now,
            self.settings.ha_slot_grace,
        )
    }
}

/// The trigger settings of a volume, published to its instance so its disk
/// probe can wake the leader the moment one is crossed.
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Thresholds {
    pub usage_threshold: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min_available_bytes: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub inode_usage_threshold: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub time_to_full_seconds: Option<f64>,
}

impl Thresholds {
    pub fn of(policy: &ResizePolicy) -> Self {
        Thresholds {
            usage_threshold: policy.usage_threshold,
            min_available_bytes: policy.min_available,
            inode_usage_threshold: policy.inode_usage_threshold,
            time_to_full_seconds: policy.time_to_full.map(|d| d.as_secs_f64()),
        }
    }
}

/// The storage refused an expansion (rule 3).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Refusal {
    /// Our record of the refused resize, to be marked `failure`.
    pub record: Option<AutoResizeEvent>,
    /// The PVC's state and condition message.
    pub message: String,
}

#[derive(Clone, Debug, PartialEq)]
pub struct Decision {
    pub volume: VolumeRef,
    pub action: Action,
    /// None exactly when `action` is `Resize`.
    pub reason: Option<Reason>,
    pub warnings: Vec<WarningCode>,
    /// Which trigger fired; set only for a resize.
    pub trigger: Option<Trigger>,
    /// The PVC's `spec.resources.requests.storage`, when readable.
    pub current_size: Option<u64>,
    pub new_size: Option<u64>,
    /// Resizes left in the rolling 24 h window before this decision acts;
    /// None when the configuration could not be read.
    pub budget_remaining: Option<u32>,
    /// When a resize is next allowed: the budget's next free slot when it is
    /// exhausted, or the end of the cooldown.
    pub next_action_at: Option<Timestamp>,
    /// The PVC's request has reached its limit.
    pub at_limit: bool,
    /// In flight for longer than `stuck_after`, or refused by the storage.
    pub stuck: bool,
    /// This resize grows a volume holding WAL and the policy asks for a warning.
    pub wal_risk_alert: bool,
    /// `Recommend`: a resize is reported, never executed.
    pub mode: Mode,
    /// The filesystem total this decision saw (recorded with the resize).
    pub filesystem_bytes: Option<u64>,
    /// On a resize sized by `horizon`: the history behind the forecast
    /// (whole seconds); the horizon counted for at most four times it.
    pub history_seconds: Option<u64>,
    /// The volume's triggers, when its configuration reads.
    pub thresholds: Option<Thresholds>,
    /// Set when the storage refused an expansion.
    pub refusal: Option<Refusal>,
    /// A sentence for events and logs: which check, with the numbers.
    pub message: String,
}

impl Decision {
    fn new(volume: VolumeRef) -> Self {
        Decision {
            volume,
            action: Action::None,
            reason: None,
            warnings: Vec::new(),
            trigger: None,
            current_size: None,
            new_size: None,
            budget_remaining: None,
            next_action_at: None,
            at_limit: false,
            stuck: false,
            wal_risk_alert: false,
            mode: Mode::Standard,
            filesystem_bytes: None,
            history_seconds: None,
            thresholds: None,
            refusal: None,
            message: String::new(),
        }
    }

    /// A resize the planner should execute (not merely recommend).
    pub fn executes(&self) -> bool {
        self.action == Action::Resize && self.mode == Mode::Standard
    }
}

/// One decision per PVC whose volume kind has `resize.enabled`, ordered by
/// instance, then data, WAL, tablespaces.
pub fn decide(input: &PlanInput<'_>) -> Vec<Decision> {
    let journal = Journal::of(&input.source, input.pvcs);
    decide_with(input, &journal)
}

/// [`decide`] with the journal already built (the planner needs it too).
pub fn decide_with(input: &PlanInput<'_>, journal: &Journal) -> Vec<Decision> {
    let cluster = input.source.cluster.name();
    // Each kind of volume's block is resolved once per pass, each request
    // parsed once: a cluster has few kinds and many PVCs.
    let mut configs: PerKind<rules::Config> = PerKind::default();
    for c in input.source.volumes() {
        // The first block of a kind governs it.
        configs.get_or_insert_with(c.volume_type, c.tablespace, || rules::Config::of(&c));
    }
    let mut volumes: Vec<(VolumeRef, Claim<'_>)> = input
        .pvcs
        .iter()
        .filter_map(|pvc| classify_pvc(pvc, cluster).map(|v| (v, Claim::of(pvc))))
        .collect();
    volumes.sort_unstable_by(|a, b| a.0.cmp(&b.0));
    // Parity copies what the storage delivered: a request may be refused
    // or still in flight, a Bound claim's capacity is real.
    let mut largest: PerKind<u64> = PerKind::default();
    for (v, claim) in &volumes {
        if let Some(bytes) = claim.capacity().filter(|_| claim.is_bound()) {
            let entry = largest.get_or_insert_with(v.volume_type, v.tablespace.as_deref(), || 0);
            *entry = (*entry).max(bytes);
        }
    }
    let pass = rules::Pass {
        input,
        journal,
        largest: &largest,
        cnpg_slots: input.cnpg_slots(),
    };
    // Volumes and reports are both sorted by instance: walk them together
    // rather than search the reports for every volume.
    let mut reports = input.instances.iter().peekable();
    volumes
        .into_iter()
        .filter_map(|(volume, claim)| {
            while reports
                .next_if(|(instance, _)| **instance < volume.instance)
                .is_some()
            {}
            let report = reports
                .peek()
                .filter(|(instance, _)| **instance == volume.instance)
                .map(|(_, report)| *report);
            let config = configs.get(volume.volume_type, volume.tablespace.as_deref())?;
            rules::decide_volume(&pass, config, volume, &claim, report)
        })
        .collect()
}

/// A value per kind of volume (role, and tablespace). A cluster has a
/// handful of kinds, so a list searched by borrowed keys beats a map that
/// needs an owned key for every lookup.
pub(crate) struct PerKind<T>(Vec<(VolumeType, Option<String>, T)>);

impl<T> Default for PerKind<T> {
    fn default() -> Self {
        PerKind(Vec::new())
    }
}

impl<T> PerKind<T> {
    fn position(&self, volume_type: VolumeType, tablespace: Option<&str>) -> Option<usize> {
        self.0
            .iter()
            .position(|(t, ts, _)| *t == volume_type && ts.as_deref() == tablespace)
    }

    pub(crate) fn get(&self, volume_type: VolumeType, tablespace: Option<&str>) -> Option<&T> {
        self.position(volume_type, tablespace).map(|i| &self.0[i].2)
    }

    fn get_or_insert_with(
        &mut self,
        volume_type: VolumeType,
        tablespace: Option<&str>,
        make: impl FnOnce() -> T,
    ) -> &mut T {
        let i = match self.position(volume_type, tablespace) {
            Some(i) => i,
            None => {
                self.0
                    .push((volume_type, tablespace.map(str::to_string), make()));
                self.0.len() - 1
            }
        };
        &mut self.0[i].2
    }
}

#[cfg(test)]
mod tests;
