//! Is a resize of this PVC already under way (SPEC §3 step 2)?

use crate::api::cluster::{AutoResizeEvent, ResizeResult};
use crate::api::report::VolumeStats;
use crate::api::resize::parse_non_negative_bytes;
use jiff::Timestamp;
use k8s_openapi::api::core::v1::PersistentVolumeClaim;

pub struct InFlight {
    /// What showed it, for the message.
    pub evidence: String,
    /// Since when, when a durable record says (for stuck detection).
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

/// The latest successful auto-resize of `pvc` (by timestamp).
pub fn latest_success<'e>(
    events: &'e [AutoResizeEvent],
    pvc: &str,
) -> Option<(&'e AutoResizeEvent, Option<Timestamp>)> {
    events
        .iter()
        .filter(|e| e.result == ResizeResult::Success && e.pvc_name == pvc)
        .map(|e| (e, e.timestamp.parse::<Timestamp>().ok()))
        .max_by_key(|(_, t)| *t)
}

pub fn in_flight(
    pvc: &PersistentVolumeClaim,
    events: &[AutoResizeEvent],
    pvc_name: &str,
    requested: u64,
    stats: &VolumeStats,
) -> Option<InFlight> {
    let latest = latest_success(events, pvc_name);
    let event_since = latest
        .filter(|(e, _)| parse_non_negative_bytes(&e.new_size).ok() == Some(requested))
        .and_then(|(_, t)| t);
    let status = pvc.status.as_ref();

    let capacity = status
        .and_then(|s| s.capacity.as_ref())
        .and_then(|c| c.get("storage"))
        .and_then(|q| parse_non_negative_bytes(&q.0).ok());
    if let Some(capacity) = capacity.filter(|c| requested > *c) {
        return Some(InFlight {
            evidence: format!("requested {requested} bytes > capacity {capacity} bytes"),
            since: event_since,
        });
    }

    let condition = status
        .and_then(|s| s.conditions.as_ref())
        .into_iter()
        .flatten()
        .find(|c| {
            matches!(c.type_.as_str(), "Resizing" | "FileSystemResizePending")
                && c.status != "False"
        });
    if let Some(condition) = condition {
        return Some(InFlight {
            evidence: format!("PVC condition {}", condition.type_),
            since: condition
                .last_transition_time
                .as_ref()
                .map(|t| t.0)
                .or(event_since),
        });
    }

    let allocated = status
        .and_then(|s| s.allocated_resource_statuses.as_ref())
        .and_then(|a| a.get("storage"))
        .filter(|s| !s.is_empty());
    if let Some(state) = allocated {
        return Some(InFlight {
            evidence: format!("allocatedResourceStatuses.storage is {state}"),
            since: event_since,
        });
    }

    // Filesystems report less than the device, so compare with the size the
    // volume had before our resize, never with the request itself.
    if let Some((event, when)) = latest {
        let new = parse_non_negative_bytes(&event.new_size).ok();
        let previous = parse_non_negative_bytes(&event.previous_size).ok();
        if let (Some(new), Some(previous)) = (new, previous) {
            if new == requested && stats.size_bytes() <= previous {
                return Some(InFlight {
                    evidence: format!(
                        "the filesystem ({} bytes) has not grown past {} since the resize to {}",
                        stats.size_bytes(),
                        event.previous_size,
                        event.new_size
                    ),
                    since: when,
                });
            }
        }
    }
    None
}
