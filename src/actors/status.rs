//! This instance's own report, published to the HTTP endpoint, the metrics
//! and the local planner through a watch channel (latest value wins).

use crate::api::report::{InstanceReport, VolumeStats, WalHealth};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use tokio::sync::watch;

#[derive(Clone, Debug, Default, PartialEq)]
pub struct LocalStatus {
    /// Bumped on every change; long-pollers wait for a version after theirs.
    pub version: u64,
    pub report: InstanceReport,
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
}

/// Writer side shared by the probe actors.
#[derive(Clone)]
pub struct StatusPublisher {
    tx: watch::Sender<LocalStatus>,
}

impl StatusPublisher {
    pub fn new() -> (StatusPublisher, watch::Receiver<LocalStatus>) {
        let (tx, rx) = watch::channel(LocalStatus::default());
        (StatusPublisher { tx }, rx)
    }

    pub fn subscribe(&self) -> watch::Receiver<LocalStatus> {
        self.tx.subscribe()
    }

    pub fn set_disks(
        &self,
        data: Option<VolumeStats>,
        wal: Option<VolumeStats>,
        tablespaces: BTreeMap<String, VolumeStats>,
        taken: jiff::Timestamp,
    ) {
        // Receivers wake only when the version changes; the timestamp is
        // updated regardless, for whoever reads next.
        self.tx.send_if_modified(|s| {
            let changed =
                s.report.data != data || s.report.wal != wal || s.report.tablespaces != tablespaces;
            let bump = changed || !s.probed;
            s.report.data = data;
            s.report.wal = wal;
            s.report.tablespaces = tablespaces;
            s.report.last_updated = Some(taken);
            if bump {
                s.version += 1;
            }
            s.probed = true;
            bump
        });
    }

    pub fn set_wal_health(&self, health: Option<WalHealth>) {
        self.tx.send_if_modified(|s| {
            let bump = s.report.wal_health != health || !s.wal_checked;
            if bump {
                s.version += 1;
            }
            s.report.wal_health = health;
            s.wal_checked = true;
            bump
        });
    }
}

/// The `/v1/status` answer.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct StatusResponse {
    pub instance: String,
    pub version: u64,
    /// False until the first disk probe and WAL check: not usable yet.
    pub probed: bool,
    pub report: InstanceReport,
}
