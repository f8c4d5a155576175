//! DiskProbe: measures each volume this instance mounts with `statvfs(2)`
//! and publishes the figures to the status channel and the metrics.

use super::status::StatusPublisher;
use super::supervision::Liveness;
use crate::api::cluster::VolumeType;
use crate::api::report::VolumeStats;
use crate::metrics::{Metrics, VolumeLabels};
use actix::prelude::*;
use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// One mounted volume.
#[derive(Clone, Debug)]
pub struct ProbeTarget {
    pub volume_type: VolumeType,
    pub tablespace: Option<String>,
    pub path: PathBuf,
}

impl ProbeTarget {
    fn labels(&self) -> VolumeLabels {
        VolumeLabels::new(self.volume_type, self.tablespace.as_deref())
    }
}

#[derive(Clone, Debug)]
pub struct ProbeSettings {
    pub interval: Duration,
    /// Read test-bed volumes whose capacity is simulated (non-root tests).
    pub simulated_volumes: bool,
}

/// Above this usage a volume is probed four times as often: a filling disk
/// must reach the planner fast, an idle one costs nothing.
const FAST_PROBE_PERCENT: f64 = 70.0;

pub struct DiskProbe {
    targets: Vec<ProbeTarget>,
    settings: ProbeSettings,
    status: StatusPublisher,
    metrics: Arc<Metrics>,
    liveness: Arc<Liveness>,
    last_percent: HashMap<PathBuf, f64>,
    failing: HashMap<PathBuf, String>,
}

impl DiskProbe {
    pub fn new(
        targets: Vec<ProbeTarget>,
        settings: ProbeSettings,
        status: StatusPublisher,
        metrics: Arc<Metrics>,
        liveness: Arc<Liveness>,
    ) -> Self {
        DiskProbe {
            targets,
            settings,
            status,
            metrics,
            liveness,
            last_percent: HashMap::new(),
            failing: HashMap::new(),
        }
    }

    fn measure(&self, target: &ProbeTarget) -> std::io::Result<VolumeStats> {
        if self.settings.simulated_volumes {
            if let Some(s) = cnpg_fsstat::simulated_stats(&target.path) {
                return Ok(from_fs(s));
            }
        }
        cnpg_fsstat::statvfs(&target.path).map(from_fs)
    }

    /// Probes every volume once; returns the delay until the next probe.
    fn probe(&mut self) -> Duration {
        let started = Instant::now();
        let mut data = None;
        let mut wal = None;
        let mut tablespaces = BTreeMap::new();
        let mut hurry = false;
        for target in self.targets.clone() {
            match self.measure(&target) {
                Ok(stats) => {
                    if self.failing.remove(&target.path).is_some() {
                        tracing::info!(path = %target.path.display(), "volume readable again");
                    }
                    self.metrics.record_volume(&target.labels(), &stats);
                    let pct = stats.percent_used_rounded() as f64;
                    let previous = self.last_percent.insert(target.path.clone(), pct);
                    hurry |= pct >= FAST_PROBE_PERCENT || previous.is_some_and(|p| pct > p);
                    match (&target.volume_type, &target.tablespace) {
                        (VolumeType::Data, _) => data = Some(stats),
                        (VolumeType::Wal, _) => wal = Some(stats),
                        (VolumeType::Tablespace, Some(name)) => {
                            tablespaces.insert(name.clone(), stats);
                        }
                        (VolumeType::Tablespace, None) => {}
                    }
                }
                Err(e) => {
                    // Left out of the report: the planner then sees no status
                    // for this volume rather than stale figures. Logged once.
                    let message = e.to_string();
                    if self
                        .failing
                        .insert(target.path.clone(), message.clone())
                        .as_ref()
                        != Some(&message)
                    {
                        tracing::warn!(path = %target.path.display(), error = %message, "cannot measure volume");
                    }
                }
            }
        }
        self.status
            .set_disks(data, wal, tablespaces, jiff::Timestamp::now());
        self.metrics
            .probe_duration
            .observe(started.elapsed().as_secs_f64());
        self.liveness.beat("disk_probe", self.settings.interval);
        if hurry {
            (self.settings.interval / 4).max(Duration::from_millis(50))
        } else {
            self.settings.interval
        }
    }

    fn schedule(&mut self, ctx: &mut Context<Self>) {
        let delay = self.probe();
        ctx.run_later(delay, |act, ctx| act.schedule(ctx));
    }
}

pub fn from_fs(s: cnpg_fsstat::FsStats) -> VolumeStats {
    VolumeStats {
        total_bytes: s.total_bytes,
        used_bytes: s.used_bytes,
        available_bytes: s.available_bytes,
        inodes_total: s.inodes_total,
        inodes_used: s.inodes_used,
        inodes_free: s.inodes_free,
    }
}

impl Actor for DiskProbe {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        for target in &self.targets {
            self.metrics.init_resize_counters(&target.labels());
        }
        self.schedule(ctx);
    }
}

impl Supervised for DiskProbe {
    fn restarting(&mut self, _ctx: &mut Context<Self>) {
        tracing::warn!(actor = "disk_probe", "restarting");
        self.metrics
            .actor_restarts
            .with_label_values(&["disk_probe"])
            .inc();
    }
}
