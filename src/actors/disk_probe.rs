//! DiskProbe: measures each volume this instance mounts with `statvfs(2)`,
//! keeps the growth forecast of each, and publishes the figures to the
//! status channel and the metrics. A path that cannot be read makes that
//! volume's report and gauges absent, never stale.

use super::status::StatusPublisher;
use super::supervision::{injected_panic, Lifeline, Liveness};
use crate::api::cluster::VolumeType;
use crate::api::report::VolumeStats;
use crate::engine::forecast::{ForecastSpan, GrowthWindow};
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
    /// The growth forecast's history.
    pub forecast: ForecastSpan,
}

/// Above this usage a volume is probed four times as often: a filling disk
/// must reach the planner fast, an idle one costs nothing.
const FAST_PROBE_PERCENT: u64 = 70;

pub struct DiskProbe {
    targets: Vec<ProbeTarget>,
    settings: ProbeSettings,
    status: StatusPublisher,
    metrics: Arc<Metrics>,
    liveness: Arc<Liveness>,
    /// The forecast's time origin (monotonic).
    origin: Instant,
    growth: HashMap<PathBuf, GrowthWindow>,
    last_used: HashMap<PathBuf, u64>,
    failing: HashMap<PathBuf, String>,
    _lifeline: Lifeline,
}

impl DiskProbe {
    pub fn new(
        targets: Vec<ProbeTarget>,
        settings: ProbeSettings,
        status: StatusPublisher,
        metrics: Arc<Metrics>,
        liveness: Arc<Liveness>,
        lifeline: Lifeline,
    ) -> Self {
        DiskProbe {
            targets,
            settings,
            status,
            metrics,
            liveness,
            origin: Instant::now(),
            growth: HashMap::new(),
            last_used: HashMap::new(),
            failing: HashMap::new(),
            _lifeline: lifeline,
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
        injected_panic("disk_probe");
        let started = Instant::now();
        let mut data = None;
        let mut wal = None;
        let mut tablespaces = BTreeMap::new();
        let mut hurry = false;
        for target in self.targets.clone() {
            match self.measure(&target) {
                Ok(mut stats) => {
                    if self.failing.remove(&target.path).is_some() {
                        tracing::info!(path = %target.path.display(), "volume readable again");
                    }
                    let span = self.settings.forecast;
                    let window = self
                        .growth
                        .entry(target.path.clone())
                        .or_insert_with(|| GrowthWindow::with_span(span));
                    window.push(started.duration_since(self.origin), stats.used_bytes);
                    let forecast = window.forecast(stats.available_bytes);
                    stats.growth_bytes_per_second = forecast.map(|f| f.bytes_per_second);
                    stats.history_seconds = forecast.map(|f| f.history_seconds);
                    self.metrics.record_volume(&target.labels(), &stats);
                    let previous = self.last_used.insert(target.path.clone(), stats.used_bytes);
                    hurry |= probe_hurries(&stats, previous);
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
                    // Absent, not stale: the planner sees no status for this
                    // volume, the gauges disappear, the forecast restarts.
                    self.metrics.remove_volume(&target.labels());
                    self.growth.remove(&target.path);
                    self.last_used.remove(&target.path);
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
        self.status.set_disks(data, wal, tablespaces, started);
        self.metrics
            .probe_duration
            .observe(started.elapsed().as_secs_f64());
        self.liveness.beat("disk_probe", self.settings.interval);
        next_probe_delay(self.settings.interval, hurry)
    }

    fn schedule(&mut self, ctx: &mut Context<Self>) {
        let delay = self.probe();
        ctx.run_later(delay, |act, ctx| act.schedule(ctx));
    }
}

/// Whether a volume wants the fast probe: near its trigger, or growing.
pub fn probe_hurries(stats: &VolumeStats, previous_used: Option<u64>) -> bool {
    stats.percent_used_rounded() >= FAST_PROBE_PERCENT
        || previous_used.is_some_and(|p| stats.used_bytes > p)
}

/// The delay until the next probe: a quarter of the interval (at least
/// 50 ms) when a volume hurries.
pub fn next_probe_delay(interval: Duration, hurry: bool) -> Duration {
    if hurry {
        (interval / 4).max(Duration::from_millis(50))
    } else {
        interval
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
        growth_bytes_per_second: None,
        history_seconds: None,
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
