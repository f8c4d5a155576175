//! The decision, per volume (SPEC §3). Pure: no I/O and no clock — the caller
//! passes everything it knows, `now` included. `plan` and the in-pod planner
//! share it, so what `plan` prints is what `run` does.

mod budget;
mod inflight;
pub mod journal;
mod sizing;
mod summary;
mod volumes;

pub use budget::{budget_for, Budget, BUDGET_WINDOW};
pub use inflight::requested_bytes;
pub use sizing::{new_size, round_up_to_mib, MIB};
pub use summary::DecisionSummary;
pub use volumes::{classify_pvc, VolumeRef, LABEL_CLUSTER};

use crate::api::cluster::{Cluster, VolumeType};
use crate::api::quantity::format_bytes;
use crate::api::report::{InstanceReport, VolumeStats};
use crate::api::resize::{ResizePolicy, Step};
use crate::api::validation::wal_guarded;
use jiff::{SignedDuration, Timestamp};
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
    NotTriggered,
    RateLimit,
    AtLimit,
    SingleVolumeNoAck,
    ArchiveUnhealthy,
    PendingWalExceeded,
    SlotRetentionExceeded,
    InvalidConfig,
}

impl Reason {
    pub const ALL: [Reason; 10] = [
        Reason::NoStatus,
        Reason::ResizeInProgress,
        Reason::NotTriggered,
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
            Reason::NotTriggered => "not_triggered",
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
}

impl WarningCode {
    pub fn as_str(self) -> &'static str {
        match self {
            WarningCode::WalHealthUnavailable => "wal_health_unavailable",
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
}

impl Default for EngineSettings {
    fn default() -> Self {
        EngineSettings {
            status_max_age: SignedDuration::from_secs(3),
            stuck_after: SignedDuration::from_mins(10),
        }
    }
}

/// Everything the decision looks at.
pub struct PlanInput<'a> {
    pub cluster: &'a Cluster,
    pub pvcs: &'a [PersistentVolumeClaim],
    pub instances: &'a BTreeMap<String, InstanceReport>,
    pub now: Timestamp,
    pub settings: EngineSettings,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Decision {
    pub volume: VolumeRef,
    pub action: Action,
    /// None exactly when `action` is `Resize`.
    pub reason: Option<Reason>,
    pub warnings: Vec<WarningCode>,
    /// The PVC's `spec.resources.requests.storage`, when readable.
    pub current_size: Option<u64>,
    pub new_size: Option<u64>,
    /// Resizes left in the rolling 24 h window before this decision acts;
    /// None when the configuration could not be read.
    pub budget_remaining: Option<u32>,
    /// When the budget next frees a slot, if it is exhausted.
    pub next_action_at: Option<Timestamp>,
    /// The PVC's request has reached its limit.
    pub at_limit: bool,
    /// In flight for longer than `stuck_after`.
    pub stuck: bool,
    /// This resize grows a volume holding WAL and the policy asks for a warning.
    pub wal_risk_alert: bool,
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
            current_size: None,
            new_size: None,
            budget_remaining: None,
            next_action_at: None,
            at_limit: false,
            stuck: false,
            wal_risk_alert: false,
            message: String::new(),
        }
    }

    fn finish(mut self, action: Action, reason: Option<Reason>, message: String) -> Self {
        self.action = action;
        self.reason = reason;
        self.message = message;
        self
    }
}

/// One decision per PVC whose volume kind has `resize.enabled`, ordered by
/// instance, then data, WAL, tablespaces.
pub fn decide(input: &PlanInput<'_>) -> Vec<Decision> {
    let mut volumes: Vec<(VolumeRef, &PersistentVolumeClaim)> = input
        .pvcs
        .iter()
        .filter_map(|pvc| classify_pvc(pvc, input.cluster.name()).map(|v| (v, pvc)))
        .collect();
    volumes.sort_by(|a, b| a.0.cmp(&b.0));
    volumes
        .into_iter()
        .filter_map(|(volume, pvc)| decide_volume(input, volume, pvc))
        .collect()
}

fn decide_volume(
    input: &PlanInput<'_>,
    volume: VolumeRef,
    pvc: &PersistentVolumeClaim,
) -> Option<Decision> {
    let cluster = input.cluster;
    let (storage, storage_path) =
        cluster.storage_for(volume.volume_type, volume.tablespace.as_deref())?;
    let resize = storage.resize.as_ref().filter(|r| r.is_enabled())?;
    let mut decision = Decision::new(volume);

    // 0. The configuration and the PVC must be readable; never guess.
    let policy = match resize.resolve(&storage_path.child("resize")) {
        Ok(policy) => policy,
        Err(errors) => {
            let message = errors
                .iter()
                .map(|e| e.to_string())
                .collect::<Vec<_>>()
                .join("; ");
            return Some(decision.finish(Action::Blocked, Some(Reason::InvalidConfig), message));
        }
    };
    let current = match inflight::requested_bytes(pvc) {
        Ok(bytes) => bytes,
        Err(message) => {
            return Some(decision.finish(Action::Blocked, Some(Reason::InvalidConfig), message));
        }
    };
    decision.current_size = Some(current);
    decision.at_limit = policy.limit.is_some_and(|limit| current >= limit);
    let budget = budget_for(
        cluster.events(),
        &decision.volume.pvc,
        policy.max_actions_per_day,
        input.now,
    );
    decision.budget_remaining = Some(budget.remaining);
    decision.next_action_at = budget.next_free_at;

    // 1. Status present and fresh.
    let report = input.instances.get(&decision.volume.instance);
    let stats = report.and_then(|r| volume_stats(r, &decision.volume));
    let Some((report, stats)) = report.zip(stats) else {
        let message = format!(
            "no disk status from instance {} for this {} volume",
            decision.volume.instance,
            decision.volume.volume_type.as_str()
        );
        return Some(decision.finish(Action::None, Some(Reason::NoStatus), message));
    };
    if let Some(taken) = report.last_updated {
        let age = input.now.duration_since(taken);
        if age > input.settings.status_max_age {
            let message = format!(
                "disk status from instance {} is {}s old (trusted up to {}s)",
                decision.volume.instance,
                age.as_secs(),
                input.settings.status_max_age.as_secs()
            );
            return Some(decision.finish(Action::None, Some(Reason::NoStatus), message));
        }
    }

    // 2. Resize in flight.
    if let Some(flight) =
        inflight::in_flight(pvc, cluster.events(), &decision.volume.pvc, current, stats)
    {
        decision.stuck = flight
            .since
            .is_some_and(|since| input.now.duration_since(since) > input.settings.stuck_after);
        let message = format!(
            "a resize of {} is in flight: {}",
            decision.volume.pvc, flight.evidence
        );
        return Some(decision.finish(Action::None, Some(Reason::ResizeInProgress), message));
    }

    // 3. Trigger.
    let by_percent = stats.percent_used_exceeds(policy.usage_threshold);
    let by_available = policy
        .min_available
        .is_some_and(|min| stats.available_bytes < min);
    if !by_percent && !by_available {
        let message = format!(
            "{}% used (threshold {}%), {} available",
            stats.percent_used_rounded(),
            policy.usage_threshold,
            format_bytes(stats.available_bytes)
        );
        return Some(decision.finish(Action::None, Some(Reason::NotTriggered), message));
    }
    let trigger = if by_percent {
        format!(
            "{}% used > {}%",
            stats.percent_used_rounded(),
            policy.usage_threshold
        )
    } else {
        format!(
            "{} available < minAvailable {}",
            format_bytes(stats.available_bytes),
            format_bytes(policy.min_available.unwrap_or_default())
        )
    };

    // 4. Budget.
    if budget.remaining == 0 {
        let message = format!(
            "{trigger}, but {} of {} resizes in the last 24h are used{}",
            budget.used,
            policy.max_actions_per_day,
            budget
                .next_free_at
                .map(|t| format!("; next allowed at {t}"))
                .unwrap_or_default()
        );
        return Some(decision.finish(Action::Blocked, Some(Reason::RateLimit), message));
    }

    // 5. Limit.
    if let Some(limit) = policy.limit.filter(|_| decision.at_limit) {
        let message = format!(
            "{trigger}, but the request {} has reached the limit {}",
            format_bytes(current),
            format_bytes(limit)
        );
        return Some(decision.finish(Action::Blocked, Some(Reason::AtLimit), message));
    }

    // 6. WAL safety.
    let guarded = wal_guarded(cluster, decision.volume.volume_type);
    if guarded {
        match wal_safety(cluster, &decision.volume, &policy, report) {
            WalVerdict::Blocked(reason, why) => {
                return Some(decision.finish(
                    Action::Blocked,
                    Some(reason),
                    format!("{trigger}, but {why}"),
                ));
            }
            WalVerdict::Allowed { warning } => decision.warnings.extend(warning),
        }
    }

    // 7. Size.
    let new = new_size(current, &policy);
    if new <= current {
        let message = format!(
            "{trigger}, but the configured step adds nothing to {} (maxStep {})",
            format_bytes(current),
            format_bytes(policy.max_step)
        );
        return Some(decision.finish(Action::None, Some(Reason::InvalidConfig), message));
    }
    decision.new_size = Some(new);
    decision.wal_risk_alert = guarded && policy.wal_safety.alert_on_resize;
    let step = match policy.step {
        Step::Percent(p) => format!("{p}%"),
        Step::Absolute(bytes) => format_bytes(bytes),
    };
    let message = format!(
        "{trigger}: growing {} from {} to {} (step {step})",
        decision.volume.pvc,
        format_bytes(current),
        format_bytes(new)
    );
    Some(decision.finish(Action::Resize, None, message))
}

fn volume_stats<'r>(report: &'r InstanceReport, volume: &VolumeRef) -> Option<&'r VolumeStats> {
    match volume.volume_type {
        VolumeType::Data => report.data.as_ref(),
        VolumeType::Wal => report.wal.as_ref(),
        VolumeType::Tablespace => report.tablespaces.get(volume.tablespace.as_deref()?),
    }
}

enum WalVerdict {
    Allowed { warning: Option<WarningCode> },
    Blocked(Reason, String),
}

fn wal_safety(
    cluster: &Cluster,
    volume: &VolumeRef,
    policy: &ResizePolicy,
    report: &InstanceReport,
) -> WalVerdict {
    let safety = &policy.wal_safety;
    if volume.volume_type == VolumeType::Data
        && cluster.spec.wal_storage.is_none()
        && !safety.acknowledge_wal_risk
    {
        return WalVerdict::Blocked(
            Reason::SingleVolumeNoAck,
            "WAL shares this data volume (no spec.walStorage) and acknowledgeWALRisk is not set"
                .into(),
        );
    }
    // Fail open: refusing to grow because we cannot see is worse than a full disk.
    let Some(health) = &report.wal_health else {
        return WalVerdict::Allowed {
            warning: Some(WarningCode::WalHealthUnavailable),
        };
    };
    if safety.require_archive_healthy && health.archiving_configured && !health.archive_healthy {
        return WalVerdict::Blocked(
            Reason::ArchiveUnhealthy,
            "WAL archiving is failing; growing the volume would only hide it".into(),
        );
    }
    if safety.max_pending_wal_files > 0 && health.pending_wal_files > safety.max_pending_wal_files {
        return WalVerdict::Blocked(
            Reason::PendingWalExceeded,
            format!(
                "{} WAL files wait for archiving (maxPendingWALFiles {})",
                health.pending_wal_files, safety.max_pending_wal_files
            ),
        );
    }
    if safety.max_slot_retention_bytes > 0 {
        if !health.slots_known {
            return WalVerdict::Allowed {
                warning: Some(WarningCode::WalHealthUnavailable),
            };
        }
        let worst = health
            .inactive_slots
            .iter()
            .max_by_key(|s| s.retention_bytes);
        if let Some(slot) = worst.filter(|s| s.retention_bytes > safety.max_slot_retention_bytes) {
            return WalVerdict::Blocked(
                Reason::SlotRetentionExceeded,
                format!(
                    "inactive replication slot {:?} retains {} bytes of WAL (maxSlotRetentionBytes {})",
                    slot.slot_name, slot.retention_bytes, safety.max_slot_retention_bytes
                ),
            );
        }
    }
    WalVerdict::Allowed { warning: None }
}

#[cfg(test)]
mod tests;
