//! This instance's own report, published to the HTTP endpoint, the metrics
//! and the local planner through a watch channel (latest value wins).
//!
//! The figures are updated on every probe, but receivers (the leader's
//! long-poll, the local planner) are woken only by a material change
//! (docs/design.md#peers-and-decision-metrics): churn stays proportional to
//! what matters, not to bytes written.

use crate::api::cluster::VolumeType;
use crate::api::report::{InstanceReport, VolumeStats, WalHealth};
use crate::engine::{CnpgSlots, Thresholds};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::Instant;
use tokio::sync::watch;

/// A volume of this instance: its kind and tablespace name.
pub type VolumeKey = (VolumeType, Option<String>);

/// What the leader tells each instance about its own volumes: their trigger
/// settings (crossing one is a material change, worth waking the leader
/// for) and which replication slots are CloudNativePG's (left out of the
/// instance's slot metrics). Until the leader says otherwise: no triggers,
/// CNPG's default HA prefix.
#[derive(Clone, Default)]
pub struct LeaderHints(Arc<Mutex<Hints>>);

#[derive(Default)]
struct Hints {
    thresholds: HashMap<VolumeKey, Thresholds>,
    cnpg_slots: CnpgSlots,
}

impl LeaderHints {
    pub fn set(&self, thresholds: HashMap<VolumeKey, Thresholds>, cnpg_slots: &CnpgSlots) {
        let mut hints = self.0.lock().unwrap_or_else(|p| p.into_inner());
        hints.thresholds = thresholds;
        hints.cnpg_slots = cnpg_slots.clone();
    }

    fn get(&self, key: &VolumeKey) -> Option<Thresholds> {
        self.0
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .thresholds
            .get(key)
            .copied()
    }

    pub fn cnpg_slots(&self) -> CnpgSlots {
        self.0
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .cnpg_slots
            .clone()
    }
}

#[derive(Clone, Debug, Default, PartialEq)]
pub struct LocalStatus {
    /// Bumped on every material change; long-pollers wait for a version after theirs.
    pub version: u64,
    /// The latest figures (updated on every probe).
    pub report: InstanceReport,
    /// When the disk figures were sampled, on this instance's monotonic clock.
    pub taken: Option<Instant>,
    /// The first disk probe has completed (readiness).
    pub probed: bool,
    /// The first WAL health check has completed (successfully or not).
    pub wal_checked: bool,
}

impl LocalStatus {
    /// Both probes have reported once. Before the first WAL check,
    /// `walHealth` is absent without meaning "unavailable": a report is only
    /// used once it is complete, or WAL volumes could grow unchecked.
    pub fn complete(&self) -> bool {
        self.probed && self.wal_checked
    }

    /// The report with its age on this instance's clock, as served.
    pub fn served_report(&self) -> InstanceReport {
        let mut report = self.report.clone();
        report.age_seconds = self.taken.map(|t| t.elapsed().as_secs_f64());
        report.last_updated = None;
        report
    }
}

/// Writer side shared by the probe actors.
#[derive(Clone)]
pub struct StatusPublisher {
    tx: watch::Sender<LocalStatus>,
    triggers: LeaderHints,
    /// The figures as of the last version bump: changes are measured from
    /// there, so a slow drift becomes material once it adds up.
    baseline: Arc<Mutex<InstanceReport>>,
}

impl StatusPublisher {
    pub fn new(triggers: LeaderHints) -> (StatusPublisher, watch::Receiver<LocalStatus>) {
        let (tx, rx) = watch::channel(LocalStatus::default());
        let publisher = StatusPublisher {
            tx,
            triggers,
            baseline: Arc::new(Mutex::new(InstanceReport::default())),
        };
        (publisher, rx)
    }

    pub fn subscribe(&self) -> watch::Receiver<LocalStatus> {
        self.tx.subscribe()
    }

    pub fn set_disks(
        &self,
        data: Option<VolumeStats>,
        wal: Option<VolumeStats>,
        tablespaces: BTreeMap<String, VolumeStats>,
        taken: Instant,
    ) {
        let mut baseline = self.baseline.lock().unwrap_or_else(|p| p.into_inner());
        self.tx.send_if_modified(|s| {
            s.report.data = data;
            s.report.wal = wal;
            s.report.tablespaces = tablespaces;
            s.taken = Some(taken);
            let bump = !s.probed || disks_differ_materially(&baseline, &s.report, &self.triggers);
            s.probed = true;
            if bump {
                s.version += 1;
                baseline.data = s.report.data;
                baseline.wal = s.report.wal;
                baseline.tablespaces = s.report.tablespaces.clone();
            }
            bump
        });
    }

    pub fn set_wal_health(&self, health: Option<WalHealth>) {
        let mut baseline = self.baseline.lock().unwrap_or_else(|p| p.into_inner());
        self.tx.send_if_modified(|s| {
            let bump = !s.wal_checked
                || wal_differs_materially(baseline.wal_health.as_ref(), health.as_ref());
            s.report.wal_health = health;
            s.wal_checked = true;
            if bump {
                s.version += 1;
                baseline.wal_health = s.report.wal_health.clone();
            }
            bump
        });
    }
}

const MIB: u64 = 1 << 20;

/// A material change: >= 1 MiB or 0.1 % of the volume (whichever is larger),
/// a size change, a trigger crossed, inodes, a volume appearing or
/// disappearing.
fn disks_differ_materially(
    old: &InstanceReport,
    new: &InstanceReport,
    triggers: &LeaderHints,
) -> bool {
    let volumes = |r: &InstanceReport| {
        let mut v: Vec<(VolumeKey, VolumeStats)> = Vec::new();
        v.extend(r.data.map(|s| ((VolumeType::Data, None), s)));
        v.extend(r.wal.map(|s| ((VolumeType::Wal, None), s)));
        v.extend(
            r.tablespaces
                .iter()
                .map(|(n, s)| ((VolumeType::Tablespace, Some(n.clone())), *s)),
        );
        v
    };
    let (old, new) = (volumes(old), volumes(new));
    if old.len() != new.len() {
        return true;
    }
    old.iter().zip(&new).any(|((ko, o), (kn, n))| {
        ko != kn || volume_differs_materially(o, n, triggers.get(kn).as_ref())
    })
}

pub fn volume_differs_materially(
    old: &VolumeStats,
    new: &VolumeStats,
    t: Option<&Thresholds>,
) -> bool {
    if old.total_bytes != new.total_bytes || old.inodes_total != new.inodes_total {
        return true;
    }
    let step = MIB.max(new.total_bytes / 1000);
    if old.used_bytes.abs_diff(new.used_bytes) >= step {
        return true;
    }
    let inode_step = 100u64.max(new.inodes_total / 1000);
    if old.inodes_used.abs_diff(new.inodes_used) >= inode_step {
        return true;
    }
    let Some(t) = t else {
        return false;
    };
    let crossed = |f: &dyn Fn(&VolumeStats) -> bool| f(old) != f(new);
    crossed(&|s| s.percent_used_exceeds(t.usage_threshold))
        || t.min_available_bytes
            .is_some_and(|min| crossed(&|s| s.available_bytes < min))
        || t.inode_usage_threshold
            .is_some_and(|th| crossed(&|s| s.inodes_used_exceeds(th)))
        || t.time_to_full_seconds
            .is_some_and(|ttf| crossed(&|s| s.seconds_to_full().is_some_and(|secs| secs < ttf)))
}

/// Archiving, the `.ready` count, the set of inactive slots and their
/// retention in whole MiB; not the byte churn of a busy primary.
fn wal_differs_materially(old: Option<&WalHealth>, new: Option<&WalHealth>) -> bool {
    let key = |h: &WalHealth| {
        (
            h.archive_healthy,
            h.archiving_configured,
            h.pending_wal_files,
            h.slots_known,
            h.inactive_slots
                .iter()
                .map(|s| (s.slot_name.clone(), s.retention_bytes / MIB))
                .collect::<Vec<_>>(),
        )
    };
    old.map(key) != new.map(key)
}

/// The `/v1/status` answer.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct StatusResponse {
    /// The pod that answers: a reused IP must not pass for another pod.
    pub instance: String,
    pub version: u64,
    /// False until the first disk probe and WAL check: not usable yet.
    pub probed: bool,
    /// With `ageSeconds` measured on this instance's clock.
    pub report: InstanceReport,
    /// False while the manager is inert; `problems` says why.
    #[serde(default = "yes")]
    pub config_valid: bool,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub problems: Vec<crate::actors::problems::Problem>,
}

fn yes() -> bool {
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stats(total: u64, used: u64) -> VolumeStats {
        VolumeStats {
            total_bytes: total,
            used_bytes: used,
            available_bytes: total - used,
            inodes_total: 1_000_000,
            inodes_used: 1_000,
            inodes_free: 999_000,
            growth_bytes_per_second: None,
            history_seconds: None,
        }
    }

    #[test]
    fn byte_churn_is_not_material_but_steps_sizes_and_crossings_are() {
        let gib = 1 << 30;
        let base = stats(10 * gib, 5 * gib);
        let t = Thresholds {
            usage_threshold: 80,
            ..Default::default()
        };
        let material = |new: VolumeStats| volume_differs_materially(&base, &new, Some(&t));
        assert!(!material(stats(10 * gib, 5 * gib + 4096)), "4 KiB");
        assert!(
            !material(stats(10 * gib, 5 * gib + 10 * MIB)),
            "10 MiB < 0.1% of 10 GiB"
        );
        assert!(material(stats(10 * gib, 5 * gib + 11 * MIB)), "> 0.1%");
        assert!(material(stats(11 * gib, 5 * gib)), "the filesystem grew");
        // A crossing is material even when tiny.
        let near = stats(10 * gib, 8 * gib);
        let across = stats(10 * gib, 8 * gib + 4096);
        assert!(volume_differs_materially(&near, &across, Some(&t)));
        assert!(!volume_differs_materially(&near, &across, None));
        // A small volume: 1 MiB is the floor.
        let small = stats(64 * MIB, 10 * MIB);
        assert!(!volume_differs_materially(
            &small,
            &stats(64 * MIB, 10 * MIB + MIB - 1),
            None
        ));
        assert!(volume_differs_materially(
            &small,
            &stats(64 * MIB, 11 * MIB),
            None
        ));
    }

    #[test]
    fn receivers_wake_only_on_material_change_and_drift_adds_up() {
        let (publisher, mut rx) = StatusPublisher::new(LeaderHints::default());
        let now = Instant::now();
        let mut used = 10 * MIB;
        publisher.set_disks(Some(stats(64 * MIB, used)), None, BTreeMap::new(), now);
        assert!(rx.has_changed().unwrap(), "the first probe wakes");
        let first = rx.borrow_and_update().version;
        // 100 probes adding 100 KiB each: 10 MiB in all, about 10 wake-ups.
        let mut wakes = 0;
        for _ in 0..100 {
            used += 100 << 10;
            publisher.set_disks(Some(stats(64 * MIB, used)), None, BTreeMap::new(), now);
            if rx.has_changed().unwrap() {
                wakes += 1;
                rx.borrow_and_update();
            }
        }
        assert!((9..=10).contains(&wakes), "{wakes} wake-ups");
        assert_eq!(rx.borrow().version, first + wakes);
        assert_eq!(
            rx.borrow().report.data.unwrap().used_bytes,
            used,
            "figures are current"
        );
    }
}
