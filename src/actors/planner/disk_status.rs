//! `status.diskStatus`: what the leader writes about every instance, and
//! when a change is material enough to write
//! (docs/reference/configuration.md#statusdiskstatus-policy-and-cluster). It
//! is written as a whole: instances, volumes and slots that are gone
//! disappear from it.

use crate::api::cluster::{
    ClusterDiskStatus, InstanceDiskStatus, SlotStatus, VolumeDiskStatus, WalHealthStatus,
};
use crate::api::report::{InstanceReport, VolumeStats};
use crate::engine::CnpgSlots;
use serde_json::{Map, Value};
use std::collections::BTreeMap;

fn volume(s: &VolumeStats) -> VolumeDiskStatus {
    VolumeDiskStatus {
        total_bytes: s.total_bytes,
        used_bytes: s.used_bytes,
        available_bytes: s.available_bytes,
        percent_used: s.percent_used_rounded(),
        inodes_total: s.inodes_total,
        inodes_used: s.inodes_used,
        inodes_free: s.inodes_free,
        growth_bytes_per_second: s.growth_bytes_per_second,
    }
}

/// CloudNativePG's own slots (`cnpg_slots`) are left out: they are not
/// abandoned slots.
pub fn build(
    reports: &BTreeMap<String, InstanceReport>,
    now: &str,
    cnpg_slots: &CnpgSlots,
) -> ClusterDiskStatus {
    let instances = reports
        .iter()
        .map(|(pod, r)| {
            let wal_health = r.wal_health.as_ref().map(|h| {
                let inactive_slots: Vec<SlotStatus> = h
                    .inactive_slots
                    .iter()
                    .filter(|s| !cnpg_slots.is_cnpg(&s.slot_name, h.in_recovery))
                    .map(|s| SlotStatus {
                        slot_name: s.slot_name.clone(),
                        retention_bytes: s.retention_bytes,
                    })
                    .collect();
                WalHealthStatus {
                    archive_healthy: h.archive_healthy || !h.archiving_configured,
                    pending_wal_files: h.pending_wal_files,
                    inactive_slot_count: inactive_slots.len() as u64,
                    inactive_slots,
                }
            });
            let status = InstanceDiskStatus {
                data_volume: r.data.as_ref().map(volume),
                wal_volume: r.wal.as_ref().map(volume),
                tablespaces: r
                    .tablespaces
                    .iter()
                    .map(|(n, s)| (n.clone(), volume(s)))
                    .collect(),
                wal_health,
                last_updated: Some(now.to_string()),
            };
            (pod.clone(), status)
        })
        .collect();
    ClusterDiskStatus { instances }
}

/// The part of the status whose change is worth a write: sizes, whole
/// percents, WAL health — not the byte churn of a busy database.
fn material(status: &ClusterDiskStatus) -> Vec<(String, String)> {
    let v = |s: &Option<VolumeDiskStatus>| s.as_ref().map(|s| (s.total_bytes, s.percent_used));
    status
        .instances
        .iter()
        .map(|(pod, i)| {
            let tablespaces: Vec<_> = i
                .tablespaces
                .iter()
                .map(|(n, s)| (n, s.total_bytes, s.percent_used))
                .collect();
            let health = i.wal_health.as_ref().map(|h| {
                let slots: Vec<_> = h
                    .inactive_slots
                    .iter()
                    .map(|s| (&s.slot_name, s.retention_bytes >> 20))
                    .collect();
                (
                    h.archive_healthy,
                    h.pending_wal_files,
                    h.inactive_slot_count,
                    format!("{slots:?}"),
                )
            });
            (
                pod.clone(),
                format!(
                    "{:?}{:?}{:?}{:?}",
                    v(&i.data_volume),
                    v(&i.wal_volume),
                    tablespaces,
                    health
                ),
            )
        })
        .collect()
}

pub fn materially_different(a: Option<&ClusterDiskStatus>, b: &ClusterDiskStatus) -> bool {
    a.is_none_or(|a| material(a) != material(b))
}

/// The JSON merge patch (RFC 7386) that turns `old` into exactly `new`:
/// keys `new` lacks are sent as `null`, so they disappear.
pub fn merge_diff(old: &Value, new: &Value) -> Value {
    match (old, new) {
        (Value::Object(o), Value::Object(n)) => {
            let mut patch = Map::new();
            for (k, v) in n {
                match o.get(k) {
                    Some(ov) if ov == v => {}
                    Some(ov) => {
                        patch.insert(k.clone(), merge_diff(ov, v));
                    }
                    None => {
                        patch.insert(k.clone(), v.clone());
                    }
                }
            }
            for k in o.keys().filter(|k| !n.contains_key(*k)) {
                patch.insert(k.clone(), Value::Null);
            }
            Value::Object(patch)
        }
        _ => new.clone(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn the_merge_diff_removes_what_is_gone_and_applies_exactly() {
        let old = json!({"instances": {"pg-1": {"walHealth": {"inactiveSlots": [{"slotName": "s"}], "inactiveSlotCount": 1},
                                                  "dataVolume": {"usedBytes": 1}},
                                       "pg-2": {"dataVolume": {"usedBytes": 2}}}});
        let new = json!({"instances": {"pg-1": {"walHealth": {"inactiveSlotCount": 0},
                                                  "dataVolume": {"usedBytes": 1}}}});
        let patch = merge_diff(&old, &new);
        assert_eq!(
            patch,
            json!({"instances": {"pg-1": {"walHealth": {"inactiveSlots": null, "inactiveSlotCount": 0}}, "pg-2": null}})
        );
        let mut applied = old.clone();
        json_patch::merge(&mut applied, &patch);
        assert_eq!(applied, new);
        assert_eq!(merge_diff(&new, &new), json!({}));
    }

    #[test]
    fn ha_slots_stay_out_of_the_disk_status() {
        let mut r = report(1 << 20, 0);
        if let Some(h) = r.wal_health.as_mut() {
            h.inactive_slots.push(InactiveSlot {
                slot_name: "_cnpg_pg_2".into(),
                retention_bytes: 1 << 40,
            });
        }
        let status = build(
            &BTreeMap::from([("pg-1".to_string(), r)]),
            "t",
            &CnpgSlots::default(),
        );
        let health = status.instances["pg-1"].wal_health.as_ref().unwrap();
        assert_eq!(health.inactive_slot_count, 1);
        assert_eq!(health.inactive_slots[0].slot_name, "s");
    }
    use crate::api::report::{InactiveSlot, WalHealth};

    fn report(used: u64, slot: u64) -> InstanceReport {
        InstanceReport {
            data: Some(VolumeStats {
                total_bytes: 1000 << 20,
                used_bytes: used,
                available_bytes: (1000 << 20) - used,
                ..Default::default()
            }),
            wal_health: Some(WalHealth {
                inactive_slots: vec![InactiveSlot {
                    slot_name: "s".into(),
                    retention_bytes: slot,
                }],
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    #[test]
    fn byte_churn_is_not_material_but_percent_size_and_health_are() {
        let at = |used, slot| {
            build(
                &BTreeMap::from([("pg-1".to_string(), report(used, slot))]),
                "t",
                &CnpgSlots::default(),
            )
        };
        let base = at(500 << 20, 0);
        assert!(materially_different(None, &base));
        assert!(
            !materially_different(Some(&base), &at((500 << 20) + 4096, 1000)),
            "a few bytes"
        );
        assert!(
            materially_different(Some(&base), &at(520 << 20, 0)),
            "50% -> 52%"
        );
        assert!(
            materially_different(Some(&base), &at(500 << 20, 5 << 20)),
            "slot retention grew by MiBs"
        );
        let mut grown = base.clone();
        grown
            .instances
            .get_mut("pg-1")
            .unwrap()
            .data_volume
            .as_mut()
            .unwrap()
            .total_bytes *= 2;
        assert!(materially_different(Some(&base), &grown));
        assert_eq!(
            base.instances["pg-1"]
                .wal_health
                .as_ref()
                .unwrap()
                .inactive_slot_count,
            1
        );
    }
}
