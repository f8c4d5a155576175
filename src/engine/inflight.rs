//! What the PVC itself says about a resize (rules 3 and 4 of
//! docs/reference/decision.md): refused by the storage, or still under way.

use crate::api::cluster::AutoResizeEvent;
use crate::api::report::VolumeStats;
use crate::api::resize::parse_non_negative_bytes;
use jiff::Timestamp;
use k8s_openapi::api::core::v1::{PersistentVolumeClaim, PersistentVolumeClaimCondition};

/// `allocatedResourceStatuses.storage` values meaning the storage refused
/// the expansion (Kubernetes >= 1.34, and the names older servers used).
const REFUSED: [&str; 4] = [
    "ControllerResizeInfeasible",
    "NodeResizeInfeasible",
    "ControllerResizeFailed",
    "NodeResizeFailed",
];

pub struct InFlight {
    /// What showed it, for the message.
    pub evidence: String,
    /// Since when, when a durable record or a condition says (stuck detection).
    pub since: Option<Timestamp>,
}

/// The PVC's `spec.resources.requests.storage` in bytes.
pub fn requested_bytes(pvc: &PersistentVolumeClaim) -> Result<u64, String> {
    let name = pvc.metadata.name.as_deref().unwrap_or("");
    let request = pvc
        .spec
        .as_ref()
        .and_then(|s| s.resources.as_ref())
        .and_then(|r| r.requests.as_ref())
        .and_then(|r| r.get("storage"))
        .ok_or_else(|| format!("PVC {name} has no spec.resources.requests.storage"))?;
    parse_non_negative_bytes(&request.0)
        .map_err(|e| format!("PVC {name} spec.resources.requests.storage: {e}"))
}

/// What one PVC says, read once per pass: its request, its capacity and the
/// state of a resize the storage reports.
pub struct Claim<'a> {
    pub pvc: &'a PersistentVolumeClaim,
    /// `spec.resources.requests.storage` in bytes, or why it does not read.
    pub requested: Result<u64, String>,
    capacity: Option<u64>,
    allocated: Option<&'a str>,
}

impl<'a> Claim<'a> {
    pub fn of(pvc: &'a PersistentVolumeClaim) -> Self {
        let status = pvc.status.as_ref();
        Claim {
            pvc,
            requested: requested_bytes(pvc),
            capacity: status
                .and_then(|s| s.capacity.as_ref())
                .and_then(|c| c.get("storage"))
                .and_then(|q| parse_non_negative_bytes(&q.0).ok()),
            allocated: status
                .and_then(|s| s.allocated_resource_statuses.as_ref())
                .and_then(|a| a.get("storage"))
                .map(String::as_str)
                .filter(|s| !s.is_empty()),
        }
    }

    /// `status.capacity.storage` in bytes, when it reads.
    pub fn capacity(&self) -> Option<u64> {
        self.capacity
    }

    pub fn is_bound(&self) -> bool {
        self.pvc.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Bound")
    }

    fn refused_state(&self) -> Option<&'a str> {
        self.allocated.filter(|s| REFUSED.contains(s))
    }

    /// The storage refused the expansion.
    pub fn is_refused(&self) -> bool {
        self.refused_state().is_some()
    }

    /// The storage refused the expansion: the state and the PVC's own words.
    pub fn refusal(&self) -> Option<String> {
        let state = self.refused_state()?;
        // The resizer and the kubelet explain in a *ResizeError condition.
        let said = self
            .conditions()
            .filter(|c| c.status != "False")
            .find(|c| c.type_.ends_with("ResizeError") || c.message.is_some())
            .and_then(|c| c.message.clone())
            .unwrap_or_else(|| "no message on the PVC".to_string());
        Some(format!("{state}: {said}"))
    }

    fn conditions(&self) -> impl Iterator<Item = &'a PersistentVolumeClaimCondition> {
        self.pvc
            .status
            .as_ref()
            .and_then(|s| s.conditions.as_ref())
            .into_iter()
            .flatten()
    }

    /// Rule 4, from the PVC alone (no filesystem figures needed).
    /// `own_record`: our latest resize of the PVC, when it set this request.
    pub fn in_flight(
        &self,
        requested: u64,
        own_record: Option<&AutoResizeEvent>,
    ) -> Option<InFlight> {
        let record_since = || own_record.map(|e| e.timestamp);
        let condition = self.conditions().find(|c| {
            matches!(c.type_.as_str(), "Resizing" | "FileSystemResizePending")
                && c.status != "False"
        });
        if let Some(capacity) = self.capacity.filter(|c| requested > *c) {
            // Without our record (a resize by hand), the condition dates it.
            let since = record_since().or(condition
                .and_then(|c| c.last_transition_time.as_ref())
                .map(|t| t.0));
            return Some(InFlight {
                evidence: format!("requested {requested} bytes > capacity {capacity} bytes"),
                since,
            });
        }
        if let Some(condition) = condition {
            return Some(InFlight {
                evidence: format!("PVC condition {}", condition.type_),
                since: record_since().or(condition.last_transition_time.as_ref().map(|t| t.0)),
            });
        }
        // Any other state than the refusals (rule 3) means a resize is pending.
        if let Some(state) = self.allocated.filter(|s| !REFUSED.contains(s)) {
            return Some(InFlight {
                evidence: format!("allocatedResourceStatuses.storage is {state}"),
                since: record_since(),
            });
        }
        None
    }
}

/// Rule 4 with the filesystem: our latest resize set the request, but the
/// filesystem is not yet larger than it was when that resize was decided.
/// A filesystem total is never compared with a PVC size (ext4 keeps
/// 1.5-5 % for itself); records without `filesystemBytes` do not count.
pub fn filesystem_in_flight(
    own_record: Option<&AutoResizeEvent>,
    stats: &VolumeStats,
) -> Option<InFlight> {
    let record = own_record?;
    let seen = record.filesystem_bytes?;
    (stats.size_bytes() <= seen).then(|| InFlight {
        evidence: format!(
            "the filesystem ({} bytes) has not grown past the {seen} bytes it had when the resize to {} was decided",
            stats.size_bytes(),
            record.new_size
        ),
        since: Some(record.timestamp),
    })
}
