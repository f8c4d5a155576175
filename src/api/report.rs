//! What an instance knows about itself: its volumes' usage and its WAL health.
//! Served by every pod at `/v1/status`, and the `instances` of a `plan` snapshot.

use crate::api::cluster::VolumeType;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct InstanceReport {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub data: Option<VolumeStats>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub wal: Option<VolumeStats>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub tablespaces: BTreeMap<String, VolumeStats>,
    /// Absent or null: WAL health is unavailable (PostgreSQL down, query
    /// error, timeout).
    #[serde(default)]
    pub wal_health: Option<WalHealth>,
    /// How old the report is, in seconds, on the clock of the instance that
    /// took it (its disk probe's last sample). Older than 3 probe intervals:
    /// not trusted (`no_status`). Absent: see `last_updated`, else fresh.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub age_seconds: Option<f64>,
    /// When the report was taken (RFC 3339), for snapshots written by hand.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_updated: Option<jiff::Timestamp>,
}

/// Limits of a report read from outside (a peer's answer, a `plan`
/// snapshot). Beyond them a report is nonsense — no probe that ran, no
/// PostgreSQL that exists says so — and it is ignored rather than used.
pub mod limits {
    /// Older than a year: no probe of a running manager reports that.
    pub const MAX_AGE_SECONDS: f64 = 365.0 * 86_400.0;
    /// Tablespaces of one instance.
    pub const MAX_TABLESPACES: usize = 1024;
    /// Inactive replication slots of one instance.
    pub const MAX_SLOTS: usize = 1024;
    /// PostgreSQL names (tablespaces, slots): NAMEDATALEN - 1 bytes.
    pub const MAX_NAME_BYTES: usize = 63;
}

impl InstanceReport {
    /// Checks a report read from outside against [`limits`] and what a
    /// filesystem can report; the error names the field and the value.
    pub fn check(&self) -> Result<(), String> {
        if let Some(age) = self.age_seconds {
            if !age.is_finite() || !(0.0..=limits::MAX_AGE_SECONDS).contains(&age) {
                return Err(format!(
                    "ageSeconds {age}: expected seconds from 0 to {}",
                    limits::MAX_AGE_SECONDS
                ));
            }
        }
        if self.tablespaces.len() > limits::MAX_TABLESPACES {
            return Err(format!(
                "tablespaces: {} of them, more than {}",
                self.tablespaces.len(),
                limits::MAX_TABLESPACES
            ));
        }
        let volumes = [("data", self.data.as_ref()), ("wal", self.wal.as_ref())]
            .into_iter()
            .filter_map(|(name, v)| Some((name.to_string(), v?)))
            .chain(
                self.tablespaces
                    .iter()
                    .map(|(name, v)| (format!("tablespaces.{name}"), v)),
            );
        for (name, stats) in volumes {
            stats.check().map_err(|e| format!("{name}.{e}"))?;
        }
        for name in self.tablespaces.keys() {
            check_name("tablespaces", name)?;
        }
        if let Some(health) = &self.wal_health {
            if health.inactive_slots.len() > limits::MAX_SLOTS {
                return Err(format!(
                    "walHealth.inactiveSlots: {} of them, more than {}",
                    health.inactive_slots.len(),
                    limits::MAX_SLOTS
                ));
            }
            for slot in &health.inactive_slots {
                check_name("walHealth.inactiveSlots.slotName", &slot.slot_name)?;
            }
        }
        Ok(())
    }

    /// The figures of one volume: data, WAL, or the named tablespace.
    pub fn stats(&self, volume_type: VolumeType, tablespace: Option<&str>) -> Option<&VolumeStats> {
        match volume_type {
            VolumeType::Data => self.data.as_ref(),
            VolumeType::Wal => self.wal.as_ref(),
            VolumeType::Tablespace => self.tablespaces.get(tablespace?),
        }
    }

    /// Leaves out the figures of one volume.
    pub fn forget(&mut self, volume_type: VolumeType, tablespace: Option<&str>) {
        match (volume_type, tablespace) {
            (VolumeType::Data, _) => self.data = None,
            (VolumeType::Wal, _) => self.wal = None,
            (VolumeType::Tablespace, Some(t)) => {
                self.tablespaces.remove(t);
            }
            (VolumeType::Tablespace, None) => {}
        }
    }
}

/// Filesystem figures as `df` prints them (statvfs), and the growth forecast.
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct VolumeStats {
    #[serde(default)]
    pub total_bytes: u64,
    #[serde(default)]
    pub used_bytes: u64,
    #[serde(default)]
    pub available_bytes: u64,
    #[serde(default)]
    pub inodes_total: u64,
    #[serde(default)]
    pub inodes_used: u64,
    #[serde(default)]
    pub inodes_free: u64,
    /// Growth of used bytes (least squares over the last 30 minutes of the
    /// instance's own samples); absent with under 5 minutes of samples or a
    /// rate <= 0.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub growth_bytes_per_second: Option<f64>,
    /// How far back the samples behind that rate go (seconds): the horizon
    /// counts for at most four times this. Absent with the rate: the
    /// shortest history a forecast has (5 minutes).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub history_seconds: Option<f64>,
}

fn check_name(field: &str, name: &str) -> Result<(), String> {
    if name.is_empty() || name.len() > limits::MAX_NAME_BYTES {
        let shown: String = name.chars().take(80).collect();
        return Err(format!(
            "{field} {shown:?}: expected a PostgreSQL name (1 to {} bytes)",
            limits::MAX_NAME_BYTES
        ));
    }
    Ok(())
}

impl VolumeStats {
    /// What `statvfs` can report: used and available bytes within the
    /// total, used and free inodes within theirs (a total of 0 means not
    /// given), a finite, non-negative growth rate.
    pub fn check(&self) -> Result<(), String> {
        let within = |field: &str, value: u64, total: u64, of: &str| {
            if total > 0 && value > total {
                Err(format!("{field} {value}: more than {of} {total}"))
            } else {
                Ok(())
            }
        };
        within("usedBytes", self.used_bytes, self.total_bytes, "totalBytes")?;
        within(
            "availableBytes",
            self.available_bytes,
            self.total_bytes,
            "totalBytes",
        )?;
        within(
            "inodesUsed",
            self.inodes_used,
            self.inodes_total,
            "inodesTotal",
        )?;
        within(
            "inodesFree",
            self.inodes_free,
            self.inodes_total,
            "inodesTotal",
        )?;
        if let Some(rate) = self.growth_bytes_per_second {
            if !rate.is_finite() || rate < 0.0 {
                return Err(format!(
                    "growthBytesPerSecond {rate}: expected a finite rate of 0 or more"
                ));
            }
        }
        Ok(())
    }

    /// Filesystem size; falls back to used + available when total is not given.
    pub fn size_bytes(&self) -> u64 {
        if self.total_bytes > 0 {
            self.total_bytes
        } else {
            self.used_bytes.saturating_add(self.available_bytes)
        }
    }

    /// `used / (used + available) * 100`, rounded to the nearest whole percent.
    pub fn percent_used_rounded(&self) -> u64 {
        let used = self.used_bytes as u128;
        let denominator = used + self.available_bytes as u128;
        if denominator == 0 {
            return 0;
        }
        ((used * 200 + denominator) / (denominator * 2)) as u64
    }

    /// Exact test of `used% > threshold` without floating point.
    pub fn percent_used_exceeds(&self, threshold: u32) -> bool {
        let used = self.used_bytes as u128;
        let denominator = used + self.available_bytes as u128;
        denominator > 0 && used * 100 > threshold as u128 * denominator
    }

    /// Exact test of `inodes used% > threshold`.
    pub fn inodes_used_exceeds(&self, threshold: u32) -> bool {
        self.inodes_total > 0
            && self.inodes_used as u128 * 100 > threshold as u128 * self.inodes_total as u128
    }

    /// Inodes used, in whole percent (rounded).
    pub fn inodes_percent_used_rounded(&self) -> u64 {
        if self.inodes_total == 0 {
            return 0;
        }
        let (used, total) = (self.inodes_used as u128, self.inodes_total as u128);
        ((used * 200 + total) / (total * 2)) as u64
    }

    /// Seconds until full at the forecast rate, when there is a forecast.
    pub fn seconds_to_full(&self) -> Option<f64> {
        let rate = self.growth_bytes_per_second.filter(|r| *r > 0.0)?;
        Some(self.available_bytes as f64 / rate)
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct WalHealth {
    #[serde(default = "yes")]
    pub archive_healthy: bool,
    /// False when the instance has no WAL archiving (`archive_mode` off or no
    /// command/library); the archive check is then skipped.
    #[serde(default = "yes")]
    pub archiving_configured: bool,
    #[serde(rename = "pendingWALFiles", default)]
    pub pending_wal_files: u64,
    #[serde(default)]
    pub inactive_slots: Vec<InactiveSlot>,
    /// False when the slot query timed out: slot data is unknown, not empty.
    #[serde(default = "yes")]
    pub slots_known: bool,
    /// `pg_is_in_recovery()`: true on a standby. Absent: unknown, treated
    /// as a primary (rule 9 exempts fewer slots there).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub in_recovery: Option<bool>,
}

impl Default for WalHealth {
    fn default() -> Self {
        WalHealth {
            archive_healthy: true,
            archiving_configured: true,
            pending_wal_files: 0,
            inactive_slots: Vec::new(),
            slots_known: true,
            in_recovery: None,
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct InactiveSlot {
    pub slot_name: String,
    pub retention_bytes: u64,
}

fn yes() -> bool {
    true
}
