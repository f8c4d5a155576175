//! The trace simulator behind `cargo bench --bench trace` and the CI table
//! of `tests/core/trace.rs`: deterministic, simulated time, no process.
//!
//! A workload is a trace of the bytes a database puts on one volume. A
//! simulated volume (an ext4 filesystem as the test bed models it, grown
//! after an expansion latency, optionally at most once per 6 h like an EBS
//! volume) holds it; the engine decides on it exactly as a manager would:
//! the disk probe's own forecast (`GrowthWindow`, with `historySeconds`)
//! fed at the probe's own cadence (1 s, 4× faster near a trigger or while
//! growing), the planner's decision (`engine::decide`) on every material
//! change of the report (the status publisher's own rule), when an
//! expansion completes and at the decision's next action time, and each
//! resize recorded on the PVC as the planner records it. The detection of the
//! CloudNativePG fork (a 30 s loop) and of topolvm's pvc-autoresizer (a
//! 10 s loop on kubelet figures 60 s old, through Prometheus) run on the
//! same engine with their own defaults, as the `survival` bench models them.
//!
//! The oracle knows the future: the smallest schedule of sizes (whole MiB,
//! the same filesystem overhead, the same one-change-per-6 h rule where it
//! applies) that never lets the filesystem fill. It owes nothing to a daily
//! budget. Waste is the GiB·hours provisioned above it.

#![allow(dead_code)]

use cnpg_autoresize::actors::disk_probe::{next_probe_delay, probe_hurries};
use cnpg_autoresize::actors::status::volume_differs_materially;
use cnpg_autoresize::api::cluster::{AutoResizeEvent, Cluster, ResizeResult, VolumeType};
use cnpg_autoresize::api::quantity::format_bytes;
use cnpg_autoresize::api::report::{InstanceReport, VolumeStats, WalHealth};
use cnpg_autoresize::api::source::Source;
use cnpg_autoresize::engine::forecast::{ForecastSpan, GrowthWindow};
use cnpg_autoresize::engine::journal::{pruned, PVC_EVENTS_ANNOTATION};
use cnpg_autoresize::engine::{decide, EngineSettings, PlanInput, Pods, Thresholds, Trigger};
use cnpg_testbed::volume::model_grown_total_bytes;
use cnpg_testbed::FilesystemKind;
use k8s_openapi::api::core::v1::PersistentVolumeClaim;
use serde_json::{json, Value};
use std::collections::{BTreeMap, HashMap, VecDeque};
use std::fmt::Write;
use std::time::Duration;

pub const MIB: u64 = 1 << 20;
pub const GIB: u64 = 1 << 30;
const HOUR: f64 = 3600.0;
const DAY: f64 = 24.0 * HOUR;
/// The planner's timer (5 s) changes nothing between material changes of
/// the report: every trigger crossing is one, an expansion that completes
/// wakes it, and the decision names its next action time (budget,
/// cooldown). So the simulated planner decides on those, and otherwise
/// every 10 minutes, which keeps a week of 4 Hz probing cheap.
const REPLAN: f64 = 600.0;
/// When the simulated day starts (a Monday, midnight UTC).
const EPOCH: &str = "2026-11-02T00:00:00Z";

// ---------------------------------------------------------------- traces

/// Bytes used over time: straight lines between points (seconds, bytes).
#[derive(Clone, Debug)]
pub struct Trace {
    points: Vec<(f64, f64)>,
}

impl Trace {
    fn new(start: f64) -> Trace {
        Trace {
            points: vec![(0.0, start)],
        }
    }

    fn last(&self) -> (f64, f64) {
        self.points[self.points.len() - 1]
    }

    /// A straight line to `bytes` over `seconds`.
    fn line(&mut self, seconds: f64, bytes: f64) -> &mut Self {
        let (t, _) = self.last();
        self.points.push((t + seconds, bytes.max(0.0)));
        self
    }

    /// Grows by `bytes` over `seconds`.
    fn grow(&mut self, seconds: f64, bytes: f64) -> &mut Self {
        let (_, y) = self.last();
        self.line(seconds, y + bytes)
    }

    pub fn end(&self) -> f64 {
        self.last().0
    }

    /// Ends the trace at `t`.
    pub fn cut(&mut self, t: f64) {
        if t < self.end() {
            let y = self.at(t, &mut 0);
            self.points.retain(|p| p.0 < t);
            self.points.push((t, y));
        }
    }

    /// The value at `t`; `cursor` makes increasing lookups O(1).
    pub fn at(&self, t: f64, cursor: &mut usize) -> f64 {
        let p = &self.points;
        if *cursor >= p.len() || p[*cursor].0 > t {
            *cursor = p.partition_point(|q| q.0 <= t).saturating_sub(1);
        }
        while *cursor + 1 < p.len() && p[*cursor + 1].0 <= t {
            *cursor += 1;
        }
        let (t0, y0) = p[*cursor];
        match p.get(*cursor + 1) {
            Some(&(t1, y1)) if t1 > t0 => y0 + (y1 - y0) * ((t - t0) / (t1 - t0)).clamp(0.0, 1.0),
            _ => y0,
        }
    }

    /// The largest value over [a, b] (corners included).
    fn max_between(&self, a: f64, b: f64) -> f64 {
        let (mut ca, mut cb) = (usize::MAX, usize::MAX);
        let mut best = self.at(a, &mut ca).max(self.at(b, &mut cb));
        let i = self.points.partition_point(|p| p.0 <= a);
        for p in &self.points[i..] {
            if p.0 >= b {
                break;
            }
            best = best.max(p.1);
        }
        best
    }
}

/// A small deterministic generator (xorshift64*): the noise is the same
/// on every machine and every run.
struct Noise(u64);

impl Noise {
    fn next(&mut self) -> f64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        let x = self.0.wrapping_mul(0x2545_f491_4f6c_dd1d);
        (x >> 11) as f64 / (1u64 << 53) as f64
    }

    /// Roughly normal, mean 0, deviation 1 (sum of uniforms).
    fn normal(&mut self) -> f64 {
        (0..12).map(|_| self.next()).sum::<f64>() - 6.0
    }
}

// ------------------------------------------------------------- workloads

/// One workload: what it is, the volume it starts on, its trace.
#[derive(Clone, Debug)]
pub struct Workload {
    pub name: &'static str,
    pub about: &'static str,
    pub volume_type: VolumeType,
    /// The PVC's size at the start.
    pub device: u64,
    pub trace: Trace,
}

/// The workloads, with their parameters. `storage` matters only for the
/// runaway fill, whose rate is the storage's physical limit.
pub fn workloads(storage: &Storage) -> Vec<Workload> {
    let g = GIB as f64;
    let mut out = Vec::new();

    // Steady growth: 100Gi at 50%, 20Gi a day for a week.
    let mut t = Trace::new(50.0 * g);
    t.grow(7.0 * DAY, 140.0 * g);
    out.push(Workload {
        name: "steady",
        about: "100Gi at 50%, +20Gi/day for 7 days",
        volume_type: VolumeType::Data,
        device: 100 * GIB,
        trace: t,
    });

    // Diurnal: the same 20Gi a day, all of it between 08:00 and 20:00.
    let mut t = Trace::new(50.0 * g);
    for _ in 0..7 {
        t.grow(8.0 * HOUR, 0.0)
            .grow(12.0 * HOUR, 20.0 * g)
            .grow(4.0 * HOUR, 0.0);
    }
    out.push(Workload {
        name: "diurnal",
        about: "100Gi at 50%, +20Gi/day written 08:00-20:00, 7 days",
        volume_type: VolumeType::Data,
        device: 100 * GIB,
        trace: t,
    });

    // A bulk load (pg_restore of 120Gi at 200 MB/s, 10 minutes) an hour in,
    // then steady growth.
    let mut t = Trace::new(20.0 * g);
    t.grow(HOUR, 0.0)
        .grow(120.0 * g / 200e6, 120.0 * g)
        .grow(7.0 * DAY - HOUR - 120.0 * g / 200e6, 60.0 * g);
    out.push(Workload {
        name: "bulk-load",
        about: "200Gi at 10%, pg_restore of 120Gi at 200MB/s after 1h, then +10Gi/day",
        volume_type: VolumeType::Data,
        device: 200 * GIB,
        trace: t,
    });

    // A nightly batch deleted again: 15Gi loaded over 30 min at 01:00, kept
    // 2 h, TRUNCATEd (1 min); the data grows 1Gi a day besides.
    let mut t = Trace::new(50.0 * g);
    for _ in 0..7 {
        t.grow(HOUR, g / 24.0)
            .grow(0.5 * HOUR, 15.0 * g + g / 48.0)
            .grow(2.0 * HOUR, g / 12.0)
            .grow(60.0, -15.0 * g)
            .grow(20.5 * HOUR - 60.0, 20.5 * g / 24.0);
    }
    out.push(Workload {
        name: "deleted-burst",
        about: "100Gi at 50%, +1Gi/day; nightly 15Gi batch over 30min, TRUNCATEd 2h later",
        volume_type: VolumeType::Data,
        device: 100 * GIB,
        trace: t,
    });

    // VACUUM FULL the first night at 02:00: a 20Gi table with 10Gi dead is
    // rewritten (+10Gi over 30 min), then the old copy goes (-20Gi).
    let mut t = Trace::new(55.0 * g);
    let rate = 3.0 * g / DAY;
    let before = 2.0 * HOUR;
    let rest = 7.0 * DAY - before - 0.5 * HOUR - 60.0;
    t.grow(before, rate * before)
        .grow(0.5 * HOUR, 10.0 * g + rate * 0.5 * HOUR)
        .grow(60.0, -20.0 * g)
        .grow(rest, rate * rest);
    out.push(Workload {
        name: "vacuum-full",
        about: "100Gi at 55%, +3Gi/day; VACUUM FULL of a 20Gi table (10Gi dead) at 02:00 on day 1",
        volume_type: VolumeType::Data,
        device: 100 * GIB,
        trace: t,
    });

    // A WAL volume: 1Gi kept, 2 MB/s of WAL from 08:00 to 20:00 recycled at
    // every 5-minute checkpoint; at 23:00 archiving stalls for 30 min and
    // the WAL piles up, then drains.
    let mut t = Trace::new(g);
    for _ in 0..7 {
        t.grow(8.0 * HOUR, 0.0);
        for _ in 0..(12 * 12) {
            t.grow(300.0, 600e6).grow(1.0, -600e6);
        }
        t.grow(3.0 * HOUR - 144.0, 0.0)
            .grow(0.5 * HOUR, 3.6e9)
            .grow(120.0, -3.6e9)
            .grow(0.5 * HOUR - 120.0, 0.0);
    }
    out.push(Workload {
        name: "wal-sawtooth",
        about: "WAL 8Gi, 1Gi kept; 2MB/s recycled every 5 min 08:00-20:00; a 30 min archive stall nightly",
        volume_type: VolumeType::Wal,
        device: 8 * GIB,
        trace: t,
    });

    // A runaway at the physical limit of a threshold at 80%: the remaining
    // 20% of the filesystem in exactly one expansion latency, from 50%
    // used, until 10Gi more are written.
    let device = 10 * GIB;
    let total = ext4_total(device, device) as f64;
    let rate = 0.2 * total / storage.latency;
    let mut t = Trace::new(0.5 * total);
    t.grow(HOUR, 0.0)
        .grow(10.0 * g / rate, 10.0 * g)
        .grow(DAY, 0.0);
    out.push(Workload {
        name: "runaway",
        about: "10Gi at 50%; after 1h, 10Gi written at 20% of the filesystem per expansion latency",
        volume_type: VolumeType::Data,
        device,
        trace: t,
    });

    // Noisy growth: a random walk with drift, +10Gi/day, a step a minute
    // (deviation 200Mi a step, ~1.5Gi an hour).
    let mut t = Trace::new(50.0 * g);
    let mut noise = Noise(0x5eed_1234_abcd_0042);
    let mut level = 50.0 * g;
    for _ in 0..(7 * 24 * 60) {
        level = (level + 10.0 * g / 1440.0 + noise.normal() * 200.0 * MIB as f64).max(40.0 * g);
        t.line(60.0, level);
    }
    out.push(Workload {
        name: "noisy",
        about: "100Gi at 50%, random walk with drift +10Gi/day (200Mi per minute)",
        volume_type: VolumeType::Data,
        device: 100 * GIB,
        trace: t,
    });
    out
}

// --------------------------------------------------------------- storage

/// How the simulated storage expands a volume.
#[derive(Clone, Copy, Debug)]
pub struct Storage {
    pub name: &'static str,
    /// From the PVC patch to the larger filesystem.
    pub latency: f64,
    /// EBS: one modification per this long (start to start).
    pub min_interval: Option<f64>,
}

pub const STORAGES: [Storage; 4] = [
    Storage {
        name: "5s",
        latency: 5.0,
        min_interval: None,
    },
    Storage {
        name: "30s",
        latency: 30.0,
        min_interval: None,
    },
    Storage {
        name: "5m",
        latency: 300.0,
        min_interval: None,
    },
    Storage {
        name: "5m+6h",
        latency: 300.0,
        min_interval: Some(6.0 * HOUR),
    },
];

fn ext4_total(created: u64, device: u64) -> u64 {
    model_grown_total_bytes(FilesystemKind::Ext4, created, device).unwrap_or(device)
}

// --------------------------------------------------------- configurations

/// Who decides, and how it sees the volume.
#[derive(Clone, Copy, Debug)]
pub enum Detection {
    /// This project: the disk probe every `interval` (4× faster near a
    /// trigger or while growing), the planner on every material change.
    Probe { interval: f64 },
    /// A decision loop every `period` on figures `lag` old, no forecast.
    Loop { period: f64, lag: f64 },
}

#[derive(Clone, Debug)]
pub struct Configuration {
    pub name: String,
    /// The `resize` block.
    pub resize: Value,
    pub detection: Detection,
}

pub fn configurations() -> Vec<Configuration> {
    vec![
        Configuration {
            name: "defaults".into(),
            resize: json!({"enabled": true}),
            detection: Detection::Probe { interval: 1.0 },
        },
        Configuration {
            name: "ttf+horizon".into(),
            resize: json!({"enabled": true, "triggers": {"timeToFull": "6h"},
                "expansion": {"horizon": "24h"}}),
            detection: Detection::Probe { interval: 1.0 },
        },
        // The fork's operator: the same blocks and defaults, a 30 s loop.
        Configuration {
            name: "fork".into(),
            resize: json!({"enabled": true}),
            detection: Detection::Loop {
                period: 30.0,
                lag: 0.0,
            },
        },
        // pvc-autoresizer's defaults: 10% free (threshold 90), +10%, no
        // minimum step, no daily limit (10, the most a block allows).
        Configuration {
            name: "topolvm".into(),
            resize: json!({"enabled": true, "triggers": {"usageThreshold": 90},
                "expansion": {"step": "10%", "minStep": "0"},
                "strategy": {"maxActionsPerDay": 10}}),
            detection: Detection::Loop {
                period: 10.0,
                lag: 60.0,
            },
        },
    ]
}

// ------------------------------------------------------------ simulation

/// What one run of a workload under a configuration did.
#[derive(Clone, Debug, Default)]
pub struct Outcome {
    /// Times the filesystem filled (the workload wanted more than it held).
    pub fills: u32,
    pub full_seconds: f64,
    pub above_95_seconds: f64,
    pub resizes: u32,
    /// The most resizes in any rolling 24 h.
    pub max_resizes_per_day: u32,
    pub triggers: BTreeMap<&'static str, u32>,
    /// GiB·hours of capacity provisioned.
    pub gib_hours: f64,
    pub oracle_gib_hours: f64,
    /// GiB·hours provisioned above the oracle.
    pub waste_gib_hours: f64,
    pub final_size: u64,
    pub oracle_final: u64,
    /// (hours, used GiB, capacity GiB, oracle GiB), every 10 minutes.
    pub curve: Vec<(f64, f64, f64, f64)>,
}

impl Outcome {
    pub fn ratio(&self) -> f64 {
        if self.oracle_gib_hours > 0.0 {
            self.gib_hours / self.oracle_gib_hours
        } else {
            1.0
        }
    }
}

/// The volume as Kubernetes and the filesystem see it.
struct Volume {
    created: u64,
    request: u64,
    capacity: u64,
    total: u64,
    /// (start, done, size) of the expansion under way.
    pending: Option<(f64, f64, u64)>,
    last_start: Option<f64>,
    records: Vec<AutoResizeEvent>,
}

struct Setup {
    cluster: Cluster,
    pvc_name: &'static str,
    role: &'static str,
}

fn setup(w: &Workload, c: &Configuration) -> Setup {
    let off = json!({"enabled": false});
    let (data, wal) = match w.volume_type {
        VolumeType::Wal => (off, c.resize.clone()),
        _ => (c.resize.clone(), off),
    };
    let cluster = serde_json::from_value(json!({
        "apiVersion": "postgresql.cnpg.io/v1", "kind": "Cluster",
        "metadata": {"name": "pg", "namespace": "db"},
        "spec": {"instances": 1,
            "storage": {"size": format_bytes(w.device), "resize": data},
            "walStorage": {"size": format_bytes(w.device), "resize": wal}},
    }))
    .expect("the simulated Cluster reads");
    let (pvc_name, role) = match w.volume_type {
        VolumeType::Wal => ("pg-1-wal", "PG_WAL"),
        _ => ("pg-1", "PG_DATA"),
    };
    Setup {
        cluster,
        pvc_name,
        role,
    }
}

fn pvc(s: &Setup, v: &Volume) -> PersistentVolumeClaim {
    let mut p: PersistentVolumeClaim = serde_json::from_value(json!({
        "metadata": {"name": s.pvc_name, "namespace": "db", "labels": {
            "cnpg.io/cluster": "pg", "cnpg.io/instanceName": "pg-1", "cnpg.io/pvcRole": s.role}},
        "spec": {"resources": {"requests": {"storage": format_bytes(v.request)}}},
        "status": {"phase": "Bound", "capacity": {"storage": format_bytes(v.capacity)}},
    }))
    .expect("the simulated PVC reads");
    if !v.records.is_empty() {
        let text = serde_json::to_string(&v.records).expect("records serialize");
        p.metadata.annotations = Some([(PVC_EVENTS_ANNOTATION.to_string(), text)].into());
    }
    p
}

fn epoch() -> jiff::Timestamp {
    EPOCH.parse().expect("the simulated epoch")
}

fn timestamp(t: f64) -> jiff::Timestamp {
    epoch() + jiff::SignedDuration::from_millis((t * 1000.0).round() as i64)
}

struct Run<'a> {
    workload: &'a Workload,
    storage: Storage,
    oracle: &'a Oracle,
    setup: Setup,
    volume: Volume,
    out: Outcome,
    resize_times: Vec<f64>,
    was_full: bool,
}

impl Run<'_> {
    /// Completes an expansion done by `t`; true when one completed.
    fn expand(&mut self, t: f64) -> bool {
        match self.volume.pending {
            Some((_, done, size)) if done <= t => {
                self.volume.capacity = size;
                self.volume.total = ext4_total(self.volume.created, size);
                self.volume.pending = None;
                true
            }
            _ => false,
        }
    }

    /// Accounts [t, t + dt) with the workload wanting `want` bytes.
    fn account(&mut self, t: f64, dt: f64, want: f64) {
        let total = self.volume.total as f64;
        let full = want >= total;
        if full && !self.was_full {
            self.out.fills += 1;
        }
        self.was_full = full;
        if full {
            self.out.full_seconds += dt;
        }
        if want > 0.95 * total {
            self.out.above_95_seconds += dt;
        }
        let size = self.volume.capacity as f64;
        self.out.gib_hours += size / GIB as f64 * dt / HOUR;
        let above = size - self.oracle.size_at(t) as f64;
        self.out.waste_gib_hours += above.max(0.0) / GIB as f64 * dt / HOUR;
    }

    fn stats(want: f64, total: u64) -> VolumeStats {
        let used = (want.max(0.0) as u64).min(total);
        VolumeStats {
            total_bytes: total,
            used_bytes: used,
            available_bytes: total - used,
            ..Default::default()
        }
    }

    /// One planning pass at `t` on `stats`, executed as the planner does;
    /// returns the volume's thresholds and when to decide again at the latest.
    fn decide(&mut self, t: f64, stats: VolumeStats) -> (Option<Thresholds>, f64) {
        let mut report = InstanceReport {
            wal_health: Some(WalHealth::default()),
            ..Default::default()
        };
        match self.workload.volume_type {
            VolumeType::Wal => report.wal = Some(stats),
            _ => report.data = Some(stats),
        }
        let instances = BTreeMap::from([("pg-1".to_string(), report)]);
        let pvcs = [pvc(&self.setup, &self.volume)];
        let now = timestamp(t);
        let decisions = decide(&PlanInput {
            source: Source::fork(&self.setup.cluster),
            pvcs: &pvcs,
            instances: &instances,
            pods: Pods::Unknown,
            now,
            settings: EngineSettings::default(),
        });
        let Some(d) = decisions.into_iter().next() else {
            return (None, t + REPLAN);
        };
        let mut next = t + REPLAN;
        if let Some(at) = d.next_action_at {
            next = next.min(at.duration_since(epoch()).as_secs_f64().max(t));
        }
        if let (true, Some(current), Some(new)) = (d.executes(), d.current_size, d.new_size) {
            let event = AutoResizeEvent {
                timestamp: now.round(jiff::Unit::Second).unwrap_or(now),
                instance_name: "pg-1".into(),
                pvc_name: self.setup.pvc_name.into(),
                volume_type: self.workload.volume_type,
                tablespace: None,
                previous_size: format_bytes(current),
                new_size: format_bytes(new),
                result: ResizeResult::Success,
                trigger: d.trigger.map(|t| t.as_str().to_string()),
                filesystem_bytes: d.filesystem_bytes,
            };
            let mut records = pruned(&self.volume.records, now, usize::MAX, |_| true);
            records.push(event);
            self.volume.records = records;
            self.volume.request = new;
            let start = match (self.storage.min_interval, self.volume.last_start) {
                (Some(gap), Some(last)) => t.max(last + gap),
                _ => t,
            };
            self.volume.last_start = Some(start);
            self.volume.pending = Some((start, start + self.storage.latency, new));
            self.out.resizes += 1;
            *self
                .out
                .triggers
                .entry(d.trigger.map_or("?", Trigger::as_str))
                .or_default() += 1;
            self.resize_times.push(t);
        }
        (d.thresholds, next)
    }
}

/// Runs `workload` under `config` on `storage`; `oracle` is the workload's.
pub fn simulate(
    workload: &Workload,
    config: &Configuration,
    storage: Storage,
    oracle: &Oracle,
) -> Outcome {
    let total = ext4_total(workload.device, workload.device);
    let mut run = Run {
        workload,
        storage,
        oracle,
        setup: setup(workload, config),
        volume: Volume {
            created: workload.device,
            request: workload.device,
            capacity: workload.device,
            total,
            pending: None,
            last_start: None,
            records: Vec::new(),
        },
        out: Outcome::default(),
        resize_times: Vec::new(),
        was_full: false,
    };
    let end = workload.trace.end();
    let mut cursor = 0;
    let mut curve_at = 0.0;
    let mut curve = Vec::new();
    let mut t = 0.0;
    match config.detection {
        Detection::Probe { interval } => {
            let interval = Duration::from_secs_f64(interval);
            let mut window = GrowthWindow::with_span(ForecastSpan::default());
            let mut baseline: Option<VolumeStats> = None;
            let mut thresholds = None;
            let mut next_decision = 0.0;
            let mut previous_used = None;
            while t <= end {
                let grew = run.expand(t);
                let want = workload.trace.at(t, &mut cursor);
                let mut stats = Run::stats(want, run.volume.total);
                // The disk probe: its forecast, its cadence.
                window.push(Duration::from_secs_f64(t), stats.used_bytes);
                // The rate every probe; its history (same window, same
                // moment) only when the planner decides: it is dearer.
                stats.growth_bytes_per_second = window.rate(stats.available_bytes);
                let hurry = probe_hurries(&stats, previous_used);
                previous_used = Some(stats.used_bytes);
                // The planner: a material change, a grown PVC, its timer.
                let material = baseline
                    .as_ref()
                    .is_none_or(|b| volume_differs_materially(b, &stats, thresholds.as_ref()));
                if material || grew || t >= next_decision {
                    stats.history_seconds = window
                        .forecast(stats.available_bytes)
                        .map(|f| f.history_seconds);
                    (thresholds, next_decision) = run.decide(t, stats);
                    baseline = Some(stats);
                }
                let dt = next_probe_delay(interval, hurry).as_secs_f64();
                run.account(t, dt, want);
                if t >= curve_at {
                    curve.push((t, want, run.volume.capacity));
                    curve_at += 600.0;
                }
                t += dt;
            }
        }
        Detection::Loop { period, lag } => {
            // What the kubelet reported, a sample a second: (t, total, used).
            let mut seen: VecDeque<(f64, u64, f64)> = VecDeque::new();
            let mut next_loop = period;
            while t <= end {
                run.expand(t);
                let want = workload.trace.at(t, &mut cursor);
                seen.push_back((t, run.volume.total, want));
                while seen.len() > 1 && seen[1].0 <= t - lag {
                    seen.pop_front();
                }
                if t >= next_loop {
                    let (_, total, used) = seen[0];
                    run.decide(t, Run::stats(used, total));
                    next_loop += period;
                }
                run.account(t, 1.0, want);
                if t >= curve_at {
                    curve.push((t, want, run.volume.capacity));
                    curve_at += 600.0;
                }
                t += 1.0;
            }
        }
    }
    run.out.oracle_gib_hours = oracle.gib_hours;
    run.out.oracle_final = oracle.final_size;
    run.out.final_size = run.volume.capacity;
    run.out.max_resizes_per_day = most_in_a_day(&run.resize_times);
    run.out.curve = curve
        .iter()
        .map(|&(t, used, size)| {
            (
                t / HOUR,
                used / GIB as f64,
                size as f64 / GIB as f64,
                oracle.size_at(t) as f64 / GIB as f64,
            )
        })
        .collect();
    run.out
}

fn most_in_a_day(times: &[f64]) -> u32 {
    (0..times.len())
        .map(|i| {
            times[i..]
                .iter()
                .take_while(|u| **u < times[i] + DAY)
                .count() as u32
        })
        .max()
        .unwrap_or(0)
}

// ---------------------------------------------------------------- oracle

/// The smallest size schedule that never fills, knowing the future.
pub struct Oracle {
    cell: f64,
    /// The device size in each cell.
    sizes: Vec<u64>,
    pub gib_hours: f64,
    pub final_size: u64,
}

impl Oracle {
    pub fn of(w: &Workload, storage: Storage) -> Oracle {
        // Cells of a minute; of 5 minutes where a schedule is searched.
        let cell = if storage.min_interval.is_some() {
            300.0
        } else {
            60.0
        };
        let cells = (w.trace.end() / cell).ceil() as usize;
        let mut device_of: HashMap<u64, u64> = HashMap::new();
        // What each cell needs, as a running maximum (sizes never shrink).
        let mut needs = Vec::with_capacity(cells);
        let mut most = w.device;
        for c in 0..cells {
            let used = w.trace.max_between(c as f64 * cell, (c + 1) as f64 * cell);
            let mib = (used / MIB as f64).ceil() as u64;
            let need = *device_of
                .entry(mib)
                .or_insert_with(|| device_for(w.device, mib * MIB));
            most = most.max(need);
            needs.push(most);
        }
        let sizes = match storage.min_interval {
            None => needs,
            Some(gap) => schedule(&needs, w.device, (gap / cell).ceil() as usize),
        };
        let gib_hours = sizes
            .iter()
            .map(|s| *s as f64 / GIB as f64 * cell / HOUR)
            .sum();
        let final_size = sizes.last().copied().unwrap_or(w.device);
        Oracle {
            cell,
            sizes,
            gib_hours,
            final_size,
        }
    }

    pub fn size_at(&self, t: f64) -> u64 {
        let i = ((t / self.cell) as usize).min(self.sizes.len().saturating_sub(1));
        self.sizes.get(i).copied().unwrap_or(0)
    }
}

/// The smallest device (whole MiB, at least `created`) whose ext4, grown
/// from `created`, holds `used`.
fn device_for(created: u64, used: u64) -> u64 {
    let mut device = created.max(used.div_ceil(MIB) * MIB);
    loop {
        let total = ext4_total(created, device);
        if total >= used {
            return device;
        }
        device += (used - total).div_ceil(MIB).max(1) * MIB;
    }
}

/// The cheapest sizes covering `needs` (non-decreasing) that start at
/// `initial` and change at most once per `gap` cells.
fn schedule(needs: &[u64], initial: u64, gap: usize) -> Vec<u64> {
    let n = needs.len();
    const FIRST: usize = usize::MAX;
    // best[p]: the cheapest cost of cells [0, p) with a change at p.
    let mut best = vec![f64::INFINITY; n];
    let mut from = vec![FIRST; n];
    for p in 0..n {
        if p == 0 || needs[p - 1] <= initial {
            best[p] = initial as f64 * p as f64;
        }
        for q in 0..(p + 1).saturating_sub(gap) {
            let v = best[q] + needs[p - 1] as f64 * (p - q) as f64;
            if v < best[p] {
                best[p] = v;
                from[p] = q;
            }
        }
    }
    // The last change, or none at all.
    let mut last = None;
    let mut cheapest = if needs.last().is_none_or(|n| *n <= initial) {
        initial as f64 * n as f64
    } else {
        f64::INFINITY
    };
    for (q, cost) in best.iter().enumerate() {
        let v = cost + needs[n - 1] as f64 * (n - q) as f64;
        if v < cheapest {
            cheapest = v;
            last = Some(q);
        }
    }
    let mut sizes = vec![initial; n];
    let mut end = n;
    while let Some(q) = last {
        let size = needs[end - 1];
        sizes[q..end].fill(size);
        end = q;
        last = (from[q] != FIRST).then_some(from[q]);
    }
    sizes
}

// ----------------------------------------------------------------- table

/// One row of the results.
pub struct Row {
    pub workload: &'static str,
    pub storage: &'static str,
    pub config: String,
    pub outcome: Outcome,
}

/// What to run: storages, workloads (all when `None`), configurations, and
/// where to cut the traces (whole when `None`).
pub struct Sweep<'a> {
    pub storages: &'a [Storage],
    pub workloads: Option<&'a [&'a str]>,
    pub configurations: &'a [Configuration],
    pub days: Option<f64>,
}

/// Runs every workload under every configuration on each storage.
pub fn sweep(plan: &Sweep<'_>) -> Vec<Row> {
    let mut rows = Vec::new();
    for storage in plan.storages {
        for mut w in workloads(storage) {
            if plan.workloads.is_some_and(|o| !o.contains(&w.name)) {
                continue;
            }
            if let Some(days) = plan.days {
                w.trace.cut(days * DAY);
            }
            let oracle = Oracle::of(&w, *storage);
            for c in plan.configurations {
                let outcome = simulate(&w, c, *storage, &oracle);
                rows.push(Row {
                    workload: w.name,
                    storage: storage.name,
                    config: c.name.clone(),
                    outcome,
                });
            }
        }
    }
    rows
}

/// The results as a Markdown table: fills, minutes full and above 95%,
/// resizes (most in a day), GiB·h provisioned, the oracle's, waste, the
/// ratio, final size vs the oracle's.
pub fn table(rows: &[Row]) -> String {
    let mut s = String::new();
    let _ = writeln!(
        s,
        "| workload | storage | configuration | fills | min full | min >95% | resizes (max/24h) | GiB·h | oracle GiB·h | waste GiB·h | ×oracle | final | oracle final |"
    );
    let _ = writeln!(
        s,
        "|---|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"
    );
    for r in rows {
        let o = &r.outcome;
        let _ = writeln!(
            s,
            "| {} | {} | {} | {} | {:.1} | {:.1} | {} ({}) | {:.0} | {:.0} | {:.0} | {:.2} | {} | {} |",
            r.workload,
            r.storage,
            r.config,
            o.fills,
            o.full_seconds / 60.0,
            o.above_95_seconds / 60.0,
            o.resizes,
            o.max_resizes_per_day,
            o.gib_hours,
            o.oracle_gib_hours,
            o.waste_gib_hours,
            o.ratio(),
            format_bytes(o.final_size),
            format_bytes(o.oracle_final),
        );
    }
    s
}

/// The defaults against the targets, one line each, with the misses named.
pub fn targets(rows: &[Row]) -> Vec<String> {
    let find = |storage: &str, workload: &str, config: &str| {
        rows.iter()
            .find(|r| r.storage == storage && r.workload == workload && r.config == config)
            .map(|r| &r.outcome)
    };
    let mut groups: Vec<(&str, &str)> = rows.iter().map(|r| (r.storage, r.workload)).collect();
    groups.dedup();
    let mut fills = Vec::new();
    let mut waste = Vec::new();
    let mut extra = Vec::new();
    let mut anchors = Vec::new();
    for (storage, workload) in groups {
        let Some(d) = find(storage, workload, "defaults") else {
            continue;
        };
        let survivable = rows
            .iter()
            .any(|r| r.storage == storage && r.workload == workload && r.outcome.fills == 0);
        if survivable && d.fills > 0 {
            fills.push(format!("{workload}@{storage} ({} fills)", d.fills));
        }
        if ["steady", "diurnal"].contains(&workload) && d.ratio() > 1.5 {
            waste.push(format!("{workload}@{storage} ({:.2}x)", d.ratio()));
        }
        if ["deleted-burst", "vacuum-full"].contains(&workload) && d.resizes > 0 {
            extra.push(format!("{workload}@{storage} ({} resizes)", d.resizes));
        }
        for anchor in ["fork", "topolvm"] {
            let Some(a) = find(storage, workload, anchor) else {
                continue;
            };
            if d.fills > a.fills {
                anchors.push(format!(
                    "{workload}@{storage}: {} fills vs {anchor}'s {}",
                    d.fills, a.fills
                ));
            }
            // Waste is compared where the anchor kept the volume from filling
            // (a volume that fills was simply too small), within 0.1% of the
            // oracle (a loop's phase moves a resize by seconds).
            let noise = 0.001 * d.oracle_gib_hours;
            if a.fills == 0 && d.waste_gib_hours > a.waste_gib_hours + noise {
                anchors.push(format!(
                    "{workload}@{storage}: waste {:.0} vs {anchor}'s {:.0} GiB·h",
                    d.waste_gib_hours, a.waste_gib_hours
                ));
            }
        }
    }
    let verdict = |what: &str, misses: Vec<String>| {
        if misses.is_empty() {
            format!("met: {what}")
        } else {
            format!("MISSED: {what}: {}", misses.join(", "))
        }
    };
    vec![
        verdict(
            "defaults never fill where any configuration survives",
            fills,
        ),
        verdict(
            "defaults within 1.5x the oracle on steady and diurnal",
            waste,
        ),
        verdict(
            "no resize from a deleted burst or a VACUUM FULL at defaults",
            extra,
        ),
        verdict(
            "defaults ahead of the fork and topolvm on fills, no worse on waste",
            anchors,
        ),
    ]
}
