//! The Prometheus metrics of docs/reference/metrics.md. Each pod reports its
//! own volumes; decision metrics come from the decisions the leader
//! publishes.

use crate::api::cluster::VolumeType;
use crate::api::report::{InstanceReport, VolumeStats, WalHealth};
use crate::engine::Reason;
use prometheus::{
    Encoder, GaugeVec, Histogram, HistogramOpts, IntCounter, IntCounterVec, IntGauge, IntGaugeVec,
    Opts, Registry, TextEncoder,
};
use std::collections::BTreeSet;
use std::sync::Mutex;

const VOLUME_LABELS: &[&str] = &["volume_type", "tablespace"];
const NO_LABELS: &[&str] = &[];

/// Labels of one volume: `volume_type`, and `tablespace` ("" unless tablespace).
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct VolumeLabels {
    pub volume_type: VolumeType,
    pub tablespace: String,
}

impl VolumeLabels {
    pub fn new(volume_type: VolumeType, tablespace: Option<&str>) -> Self {
        VolumeLabels {
            volume_type,
            tablespace: tablespace.unwrap_or("").to_string(),
        }
    }

    fn values(&self) -> [&str; 2] {
        [self.volume_type.as_str(), self.tablespace.as_str()]
    }
}

/// What a pod knows about the decision for one of its volumes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DecisionMetrics {
    /// The decision's reason (`cnpg_disk_resize_blocked{reason}` is 1 for it).
    pub reason: Option<Reason>,
    pub at_limit: bool,
    pub budget_remaining: Option<u32>,
    pub next_action_at: Option<jiff::Timestamp>,
    pub stuck: bool,
    /// Recommend mode: the size a resize would have set.
    pub recommended_bytes: Option<u64>,
}

pub struct Metrics {
    registry: Registry,
    pub total_bytes: IntGaugeVec,
    pub used_bytes: IntGaugeVec,
    pub available_bytes: IntGaugeVec,
    pub percent_used: GaugeVec,
    pub inodes_total: IntGaugeVec,
    pub inodes_used: IntGaugeVec,
    pub inodes_free: IntGaugeVec,
    pub at_limit: IntGaugeVec,
    pub resize_blocked: IntGaugeVec,
    pub budget_remaining: IntGaugeVec,
    pub next_action_timestamp: GaugeVec,
    pub resizes_total: IntCounterVec,
    pub resize_stuck: IntGaugeVec,
    pub archive_healthy: IntGaugeVec,
    pub pending_archive_files: IntGaugeVec,
    pub inactive_slots: IntGaugeVec,
    pub slot_retention_bytes: IntGaugeVec,
    pub wal_health_up: IntGauge,
    pub is_leader: IntGauge,
    pub build_info: IntGaugeVec,
    pub probe_duration: Histogram,
    pub wal_check_duration: Histogram,
    pub api_requests: IntCounterVec,
    pub api_up: IntGauge,
    pub watch_up: IntGaugeVec,
    pub actor_restarts: IntCounterVec,
    /// On the leader: PVC requests another resizer raised (rule "beside
    /// another resizer"), each counted once.
    pub foreign_resizes: IntCounter,
    pub config_valid: IntGauge,
    pub clock_skew: GaugeVec,
    pub growth: GaugeVec,
    pub recommended: IntGaugeVec,
    known_slots: Mutex<BTreeSet<String>>,
}

fn gauge_vec(
    registry: &Registry,
    name: &str,
    help: &str,
    labels: &[&str],
) -> prometheus::Result<IntGaugeVec> {
    let g = IntGaugeVec::new(Opts::new(name, help), labels)?;
    registry.register(Box::new(g.clone()))?;
    Ok(g)
}

fn float_gauge_vec(
    registry: &Registry,
    name: &str,
    help: &str,
    labels: &[&str],
) -> prometheus::Result<GaugeVec> {
    let g = GaugeVec::new(Opts::new(name, help), labels)?;
    registry.register(Box::new(g.clone()))?;
    Ok(g)
}

fn gauge(registry: &Registry, name: &str, help: &str) -> prometheus::Result<IntGauge> {
    let g = IntGauge::new(name, help)?;
    registry.register(Box::new(g.clone()))?;
    Ok(g)
}

fn counter_vec(
    registry: &Registry,
    name: &str,
    help: &str,
    labels: &[&str],
) -> prometheus::Result<IntCounterVec> {
    let c = IntCounterVec::new(Opts::new(name, help), labels)?;
    registry.register(Box::new(c.clone()))?;
    Ok(c)
}

fn histogram(
    registry: &Registry,
    name: &str,
    help: &str,
    buckets: Vec<f64>,
) -> prometheus::Result<Histogram> {
    let h = Histogram::with_opts(HistogramOpts::new(name, help).buckets(buckets))?;
    registry.register(Box::new(h.clone()))?;
    Ok(h)
}

impl Metrics {
    pub fn new(version: &str) -> prometheus::Result<Metrics> {
        let r = Registry::new();
        let v = VOLUME_LABELS;
        let m = Metrics {
            total_bytes: gauge_vec(
                &r,
                "cnpg_disk_total_bytes",
                "Filesystem size in bytes (statvfs).",
                v,
            )?,
            used_bytes: gauge_vec(
                &r,
                "cnpg_disk_used_bytes",
                "Bytes used, as df reports them.",
                v,
            )?,
            available_bytes: gauge_vec(
                &r,
                "cnpg_disk_available_bytes",
                "Bytes available to PostgreSQL.",
                v,
            )?,
            percent_used: float_gauge_vec(
                &r,
                "cnpg_disk_percent_used",
                "used / (used + available) * 100.",
                v,
            )?,
            inodes_total: gauge_vec(
                &r,
                "cnpg_disk_inodes_total",
                "Inodes in the filesystem (a gauge, exposed untyped).",
                v,
            )?,
            inodes_used: gauge_vec(&r, "cnpg_disk_inodes_used", "Inodes in use.", v)?,
            inodes_free: gauge_vec(&r, "cnpg_disk_inodes_free", "Free inodes.", v)?,
            at_limit: gauge_vec(
                &r,
                "cnpg_disk_at_limit",
                "1 when the PVC request has reached its resize limit.",
                v,
            )?,
            resize_blocked: gauge_vec(
                &r,
                "cnpg_disk_resize_blocked",
                "1 for the reason the volume is currently not resized (its decision's reason, none for a resize), 0 for the others.",
                &["volume_type", "tablespace", "reason"],
            )?,
            budget_remaining: gauge_vec(
                &r,
                "cnpg_disk_resize_budget_remaining",
                "Auto-resizes left for the PVC in the rolling 24h window.",
                v,
            )?,
            next_action_timestamp: float_gauge_vec(
                &r,
                "cnpg_disk_resize_next_action_timestamp_seconds",
                "Unix time when the exhausted budget frees a resize (0 when not exhausted).",
                v,
            )?,
            resizes_total: counter_vec(
                &r,
                "cnpg_disk_resizes_total",
                "Auto-resizes of this pod's volumes observed since the process started.",
                &["volume_type", "tablespace", "result"],
            )?,
            resize_stuck: gauge_vec(
                &r,
                "cnpg_disk_resize_stuck",
                "1 when a resize has been in flight too long.",
                v,
            )?,
            // Label-less vectors: these disappear while WAL health is unknown.
            archive_healthy: gauge_vec(
                &r,
                "cnpg_wal_archive_healthy",
                "1 when WAL archiving is not failing (absent while WAL health is unavailable).",
                &[],
            )?,
            pending_archive_files: gauge_vec(
                &r,
                "cnpg_wal_pending_archive_files",
                ".ready files waiting for archiving.",
                &[],
            )?,
            inactive_slots: gauge_vec(
                &r,
                "cnpg_wal_inactive_slots",
                "Inactive physical replication slots, CloudNativePG's HA slots excepted.",
                &[],
            )?,
            slot_retention_bytes: gauge_vec(
                &r,
                "cnpg_wal_slot_retention_bytes",
                "WAL bytes retained by an inactive physical slot.",
                &["slot_name"],
            )?,
            wal_health_up: gauge(
                &r,
                "cnpg_wal_health_up",
                "1 when the last WAL health check succeeded.",
            )?,
            is_leader: gauge(
                &r,
                "cnpg_autoresize_is_leader",
                "1 on the pod that plans resizes.",
            )?,
            build_info: gauge_vec(
                &r,
                "cnpg_autoresize_build_info",
                "Build information.",
                &["version"],
            )?,
            probe_duration: histogram(
                &r,
                "cnpg_autoresize_probe_duration_seconds",
                "Time to probe all volumes.",
                vec![0.00001, 0.0001, 0.001, 0.01, 0.1, 1.0],
            )?,
            wal_check_duration: histogram(
                &r,
                "cnpg_autoresize_wal_check_duration_seconds",
                "Time for one WAL health check.",
                vec![0.001, 0.01, 0.05, 0.1, 0.5, 1.0, 5.0, 10.0],
            )?,
            api_requests: counter_vec(
                &r,
                "cnpg_autoresize_api_requests_total",
                "Kubernetes API requests by verb, resource and HTTP code.",
                &["verb", "resource", "code"],
            )?,
            api_up: gauge(
                &r,
                "cnpg_autoresize_api_up",
                "1 when the Kubernetes API server answered this pod's last request.",
            )?,
            watch_up: gauge_vec(
                &r,
                "cnpg_autoresize_watch_up",
                "On the leader: 1 while the watch of a resource delivers, 0 while it keeps failing (RBAC, missing CRD).",
                &["resource"],
            )?,
            actor_restarts: counter_vec(
                &r,
                "cnpg_autoresize_actor_restarts_total",
                "Actors restarted by their supervisor after a panic or a stop.",
                &["actor"],
            )?,
            foreign_resizes: {
                let c = IntCounter::new(
                    "cnpg_autoresize_foreign_resizes_total",
                    "On the leader: PVC requests another field manager raised without a record of cnpg-autoresize (e.g. the CloudNativePG fork's own resizer), each counted once.",
                )?;
                r.register(Box::new(c.clone()))?;
                c
            },
            config_valid: gauge(
                &r,
                "cnpg_autoresize_config_valid",
                "1 when the flags, credentials and permissions let the manager work; 0 while it is inert.",
            )?,
            // Label-less vector: absent until the API server first answers.
            clock_skew: float_gauge_vec(
                &r,
                "cnpg_autoresize_clock_skew_seconds",
                "This pod's clock minus the API server's (its answers' Date header); positive when this pod is ahead.",
                &[],
            )?,
            growth: float_gauge_vec(
                &r,
                "cnpg_disk_growth_bytes_per_second",
                "Forecast growth of used bytes (least squares over 30 minutes); absent without a forecast.",
                v,
            )?,
            recommended: gauge_vec(
                &r,
                "cnpg_disk_resize_recommended_bytes",
                "Mode Recommend: the size a resize would set; absent otherwise.",
                v,
            )?,
            known_slots: Mutex::new(BTreeSet::new()),
            registry: r,
        };
        m.build_info.with_label_values(&[version]).set(1);
        m.config_valid.set(1);
        Ok(m)
    }

    pub fn render(&self) -> String {
        let mut out = Vec::new();
        let encoder = TextEncoder::new();
        if let Err(e) = encoder.encode(&self.registry.gather(), &mut out) {
            tracing::error!(error = %e, "cannot encode metrics");
        }
        // `cnpg_disk_inodes_total` is the documented name
        // (docs/design.md#metrics-note); `promtool check metrics` rejects
        // `_total` on a gauge but accepts it untyped, and queries treat both
        // alike. The encoder cannot write untyped families.
        String::from_utf8(out).unwrap_or_default().replace(
            "# TYPE cnpg_disk_inodes_total gauge",
            "# TYPE cnpg_disk_inodes_total untyped",
        )
    }

    pub fn record_volume(&self, labels: &VolumeLabels, stats: &VolumeStats) {
        let l = labels.values();
        let set = |g: &IntGaugeVec, v: u64| {
            g.with_label_values(&l)
                .set(i64::try_from(v).unwrap_or(i64::MAX))
        };
        set(&self.total_bytes, stats.total_bytes);
        set(&self.used_bytes, stats.used_bytes);
        set(&self.available_bytes, stats.available_bytes);
        set(&self.inodes_total, stats.inodes_total);
        set(&self.inodes_used, stats.inodes_used);
        set(&self.inodes_free, stats.inodes_free);
        let denominator = stats.used_bytes as f64 + stats.available_bytes as f64;
        let pct = if denominator > 0.0 {
            stats.used_bytes as f64 * 100.0 / denominator
        } else {
            0.0
        };
        self.percent_used.with_label_values(&l).set(pct);
        match stats.growth_bytes_per_second {
            Some(rate) => self.growth.with_label_values(&l).set(rate),
            None => {
                let _ = self.growth.remove_label_values(&l);
            }
        }
    }

    /// A volume that cannot be read: its figures disappear rather than stay stale.
    pub fn remove_volume(&self, labels: &VolumeLabels) {
        let l = labels.values();
        for g in [
            &self.total_bytes,
            &self.used_bytes,
            &self.available_bytes,
            &self.inodes_total,
            &self.inodes_used,
            &self.inodes_free,
        ] {
            let _ = g.remove_label_values(&l);
        }
        let _ = self.percent_used.remove_label_values(&l);
        let _ = self.growth.remove_label_values(&l);
    }

    pub fn record_report(&self, report: &InstanceReport) {
        if let Some(s) = &report.data {
            self.record_volume(&VolumeLabels::new(VolumeType::Data, None), s);
        }
        if let Some(s) = &report.wal {
            self.record_volume(&VolumeLabels::new(VolumeType::Wal, None), s);
        }
        for (name, s) in &report.tablespaces {
            self.record_volume(&VolumeLabels::new(VolumeType::Tablespace, Some(name)), s);
        }
    }

    /// WAL health gauges; `None` = unavailable: health_up 0 and every other
    /// WAL gauge removed (unknown is not "healthy" nor "no slots").
    /// CloudNativePG's own slots (`cnpg_slots`, rule 9) are left out.
    pub fn record_wal_health(
        &self,
        health: Option<&WalHealth>,
        cnpg_slots: &crate::engine::CnpgSlots,
    ) {
        let mut known = match self.known_slots.lock() {
            Ok(k) => k,
            Err(poisoned) => poisoned.into_inner(),
        };
        let Some(h) = health else {
            self.wal_health_up.set(0);
            let _ = self.archive_healthy.remove_label_values(NO_LABELS);
            let _ = self.pending_archive_files.remove_label_values(NO_LABELS);
            let _ = self.inactive_slots.remove_label_values(NO_LABELS);
            for gone in std::mem::take(&mut *known) {
                let _ = self.slot_retention_bytes.remove_label_values(&[&gone]);
            }
            return;
        };
        self.wal_health_up.set(1);
        self.archive_healthy
            .with_label_values(NO_LABELS)
            .set(i64::from(h.archive_healthy || !h.archiving_configured));
        self.pending_archive_files
            .with_label_values(NO_LABELS)
            .set(i64::try_from(h.pending_wal_files).unwrap_or(i64::MAX));
        if !h.slots_known {
            // Unknown this round: drop the slot figures rather than keep old ones.
            let _ = self.inactive_slots.remove_label_values(NO_LABELS);
            for gone in std::mem::take(&mut *known) {
                let _ = self.slot_retention_bytes.remove_label_values(&[&gone]);
            }
            return;
        }
        let slots: Vec<_> = h
            .inactive_slots
            .iter()
            .filter(|s| !cnpg_slots.is_cnpg(&s.slot_name, h.in_recovery))
            .collect();
        self.inactive_slots
            .with_label_values(NO_LABELS)
            .set(slots.len() as i64);
        let current: BTreeSet<String> = slots.iter().map(|s| s.slot_name.clone()).collect();
        // Slots that became active or were dropped must disappear, not linger.
        for gone in known.difference(&current) {
            let _ = self.slot_retention_bytes.remove_label_values(&[gone]);
        }
        for slot in &slots {
            self.slot_retention_bytes
                .with_label_values(&[&slot.slot_name])
                .set(i64::try_from(slot.retention_bytes).unwrap_or(i64::MAX));
        }
        *known = current;
    }

    pub fn record_decision(&self, labels: &VolumeLabels, d: &DecisionMetrics) {
        let l = labels.values();
        self.at_limit
            .with_label_values(&l)
            .set(i64::from(d.at_limit));
        self.resize_stuck
            .with_label_values(&l)
            .set(i64::from(d.stuck));
        // Unknown (invalid_config): absent, not the last known figure.
        match d.budget_remaining {
            Some(b) => self
                .budget_remaining
                .with_label_values(&l)
                .set(i64::from(b)),
            None => {
                let _ = self.budget_remaining.remove_label_values(&l);
            }
        }
        let next = d
            .next_action_at
            .map(|t| t.as_millisecond() as f64 / 1000.0)
            .unwrap_or(0.0);
        self.next_action_timestamp.with_label_values(&l).set(next);
        for reason in Reason::ALL {
            let active = d.reason == Some(reason);
            self.resize_blocked
                .with_label_values(&[l[0], l[1], reason.as_str()])
                .set(i64::from(active));
        }
        match d.recommended_bytes {
            Some(bytes) => self
                .recommended
                .with_label_values(&l)
                .set(i64::try_from(bytes).unwrap_or(i64::MAX)),
            None => {
                let _ = self.recommended.remove_label_values(&l);
            }
        }
    }

    /// A decision the leader no longer publishes (or no leader answers):
    /// its gauges go, rather than stay at their last value.
    pub fn remove_decision(&self, labels: &VolumeLabels) {
        let l = labels.values();
        for g in [
            &self.at_limit,
            &self.resize_stuck,
            &self.budget_remaining,
            &self.recommended,
        ] {
            let _ = g.remove_label_values(&l);
        }
        let _ = self.next_action_timestamp.remove_label_values(&l);
        for reason in Reason::ALL {
            let _ = self
                .resize_blocked
                .remove_label_values(&[l[0], l[1], reason.as_str()]);
        }
    }

    pub fn count_resize(&self, labels: &VolumeLabels, success: bool) {
        let l = labels.values();
        let result = if success { "success" } else { "failure" };
        self.resizes_total
            .with_label_values(&[l[0], l[1], result])
            .inc();
    }

    /// Both result series exist from the start, so `increase()` sees the first resize.
    pub fn init_resize_counters(&self, labels: &VolumeLabels) {
        let l = labels.values();
        for result in ["success", "failure"] {
            let _ = self.resizes_total.with_label_values(&[l[0], l[1], result]);
        }
    }

    /// Counts one API request; code 0 = no answer. Any answer below 500
    /// means the API server is reachable.
    pub fn count_api(&self, verb: &str, resource: &str, code: u16) {
        self.api_requests
            .with_label_values(&[verb, resource, &code.to_string()])
            .inc();
        self.api_up.set(i64::from(code != 0 && code < 500));
    }
}
