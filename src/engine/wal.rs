//! WAL safety (docs/reference/decision.md#9-wal-safety): growing a volume that
//! holds WAL must not hide failing archiving, a `.ready` backlog or an
//! abandoned slot.

use super::{CnpgSlots, Reason, WarningCode};
use crate::api::report::InstanceReport;
use crate::api::resize::WalSafety;

pub enum WalVerdict {
    Allowed { warning: Option<WarningCode> },
    Blocked(Reason, String),
}

/// `single_volume_data`: the data volume of a cluster without `walStorage`.
/// `cnpg_slots`: which slots are CloudNativePG's own; they never block.
pub fn wal_safety(
    single_volume_data: bool,
    safety: &WalSafety,
    report: &InstanceReport,
    cnpg_slots: &CnpgSlots,
) -> WalVerdict {
    if single_volume_data && !safety.acknowledge_wal_risk {
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
            .filter(|s| !cnpg_slots.is_cnpg(&s.slot_name, health.in_recovery))
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
