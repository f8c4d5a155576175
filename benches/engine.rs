//! The pure decision engine and quantity handling, with criterion.
//!
//! `cargo bench --bench engine` (figures in docs/benchmarks.md);
//! `cargo bench --bench engine -- decide_10k` for the 10 000-volume case
//! only. CI only compiles this file (`cargo clippy --all-targets`).
//!
//! A cluster of 1, 3 or 10 instances — and, in `decide_10k`, 2 500 — each
//! with a data, a WAL and two tablespace volumes (4, 12, 40 or 10 000
//! volumes), every block enabled with a
//! limit, a WAL safety policy and a 50-entry `status.autoResizeEvents`
//! journal spread over the last 30 hours. The instances' reports mix quiet
//! volumes (not triggered), volumes past their trigger (the full path down
//! to sizing), one WAL volume blocked by a pending `.ready` backlog and one
//! volume whose resize is still in flight.

use cnpg_autoresize::api::cluster::Cluster;
use cnpg_autoresize::api::quantity::{format_bytes, Quantity};
use cnpg_autoresize::api::report::{InactiveSlot, InstanceReport, VolumeStats, WalHealth};
use cnpg_autoresize::engine::{decide, EngineSettings, PlanInput};
use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use jiff::{SignedDuration, Timestamp};
use k8s_openapi::api::core::v1::PersistentVolumeClaim;
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::hint::black_box;
use std::time::Duration;

const MIB: u64 = 1 << 20;
const GIB: u64 = 1 << 30;
const CLUSTER: &str = "pg";
const TABLESPACES: [&str; 2] = ["events", "archive"];
const EVENTS: usize = 50;

fn now() -> Timestamp {
    "2026-11-26T12:00:00Z".parse().unwrap()
}

fn resize_block(step: &str, limit: &str) -> Value {
    json!({
        "enabled": true,
        "triggers": {"usageThreshold": 80, "minAvailable": "1Gi"},
        "expansion": {"step": step, "minStep": "2Gi", "maxStep": "500Gi", "limit": limit},
        "strategy": {"mode": "Standard", "maxActionsPerDay": 5, "walSafetyPolicy": {
            "requireArchiveHealthy": true, "maxPendingWALFiles": 100,
            "maxSlotRetentionBytes": GIB, "alertOnResize": true}},
    })
}

/// (pvc, instance, volumeType, tablespace) of every volume of the cluster.
fn volumes(instances: usize) -> Vec<(String, String, &'static str, Option<&'static str>)> {
    let mut out = Vec::new();
    for i in 1..=instances {
        let pod = format!("{CLUSTER}-{i}");
        out.push((pod.clone(), pod.clone(), "data", None));
        out.push((format!("{pod}-wal"), pod.clone(), "wal", None));
        for t in TABLESPACES {
            out.push((format!("{pod}-tbs-{t}"), pod.clone(), "tablespace", Some(t)));
        }
    }
    out
}

/// 50 journal entries, oldest first, spread over the last 30 hours (some
/// already out of the 24 h window), round-robin over the volumes.
fn journal(instances: usize) -> Vec<Value> {
    let vols = volumes(instances);
    (0..EVENTS)
        .map(|k| {
            let (pvc, pod, kind, tablespace) = &vols[k % vols.len()];
            let at = now() - SignedDuration::from_mins(36 * (EVENTS - k) as i64);
            let previous = 10 * GIB + (k as u64) * GIB;
            json!({
                "timestamp": at.to_string(), "instanceName": pod, "pvcName": pvc,
                "volumeType": kind, "tablespace": tablespace.unwrap_or(""),
                "previousSize": format_bytes(previous), "newSize": format_bytes(previous + 2 * GIB),
                "result": if k % 9 == 4 { "failure" } else { "success" },
            })
        })
        .collect()
}

fn cluster(instances: usize) -> Cluster {
    let tablespaces: Vec<Value> = TABLESPACES
        .iter()
        .map(|t| json!({"name": t, "storage": {"size": "20Gi", "resize": resize_block("20%", "200Gi")}}))
        .collect();
    serde_json::from_value(json!({
        "apiVersion": "postgresql.cnpg.io/v1", "kind": "Cluster",
        "metadata": {"name": CLUSTER, "namespace": "default"},
        "spec": {
            "instances": instances,
            "storage": {"size": "100Gi", "resize": resize_block("20%", "1Ti")},
            "walStorage": {"size": "20Gi", "resize": resize_block("5Gi", "100Gi")},
            "tablespaces": tablespaces,
            "backup": {"barmanObjectStore": {"destinationPath": "s3://backups/pg"}},
        },
        "status": {"autoResizeEvents": journal(instances)},
    }))
    .expect("a valid Cluster")
}

fn pvcs(instances: usize) -> Vec<PersistentVolumeClaim> {
    volumes(instances)
        .into_iter()
        .enumerate()
        .map(|(n, (pvc, pod, kind, tablespace))| {
            let role = match kind {
                "data" => "PG_DATA",
                "wal" => "PG_WAL",
                _ => "PG_TABLESPACE",
            };
            let mut labels = json!({"cnpg.io/cluster": CLUSTER, "cnpg.io/instanceName": pod, "cnpg.io/pvcRole": role});
            if let Some(t) = tablespace {
                labels["cnpg.io/tablespaceName"] = json!(t);
            }
            let request = size_of(kind);
            // One volume per cluster has a resize in flight (request above capacity).
            let capacity = if n == 2 { request - 4 * GIB } else { request };
            serde_json::from_value(json!({
                "metadata": {"name": pvc, "namespace": "default", "labels": labels, "resourceVersion": "42"},
                "spec": {"accessModes": ["ReadWriteOnce"], "storageClassName": "standard",
                    "resources": {"requests": {"storage": format_bytes(request)}}},
                "status": {"phase": "Bound", "capacity": {"storage": format_bytes(capacity)}},
            }))
            .expect("a valid PVC")
        })
        .collect()
}

fn size_of(kind: &str) -> u64 {
    match kind {
        "data" => 100 * GIB,
        "wal" => 20 * GIB,
        _ => 20 * GIB,
    }
}

fn stats(total: u64, percent: u64) -> VolumeStats {
    // A filesystem reports a little less than its device.
    let total = total - 64 * MIB;
    let used = total / 100 * percent;
    VolumeStats {
        total_bytes: total,
        used_bytes: used,
        available_bytes: total - used,
        inodes_total: 1_000_000,
        inodes_used: 20_000 + percent * 1000,
        inodes_free: 1_000_000 - 20_000 - percent * 1000,
        growth_bytes_per_second: Some(1_000_000.0),
        history_seconds: Some(3600.0),
    }
}

fn reports(instances: usize) -> BTreeMap<String, InstanceReport> {
    (1..=instances)
        .map(|i| {
            // Instance 1 is past every trigger; the others are mostly quiet,
            // with one triggered tablespace each.
            let hot = i == 1;
            let tablespaces = TABLESPACES
                .iter()
                .enumerate()
                .map(|(k, t)| {
                    (
                        t.to_string(),
                        stats(20 * GIB, if hot || k == 0 { 86 } else { 55 }),
                    )
                })
                .collect();
            let report = InstanceReport {
                data: Some(stats(100 * GIB, if hot { 85 } else { 62 })),
                wal: Some(stats(20 * GIB, if hot { 91 } else { 40 })),
                tablespaces,
                age_seconds: Some(0.5),
                wal_health: Some(WalHealth {
                    archive_healthy: true,
                    archiving_configured: true,
                    // A .ready backlog on one replica blocks its WAL volume.
                    pending_wal_files: if i == 2 { 250 } else { 3 },
                    inactive_slots: vec![InactiveSlot {
                        slot_name: format!("standby_{i}"),
                        retention_bytes: 16 * MIB,
                    }],
                    slots_known: true,
                    in_recovery: Some(i > 1),
                }),
                last_updated: Some(now() - SignedDuration::from_millis(400)),
            };
            (format!("{CLUSTER}-{i}"), report)
        })
        .collect()
}

/// A cluster of `instances` with its PVCs and reports, decided once as a
/// sanity check (one decision per volume), then measured in `group` under `id`.
fn bench_cluster(
    group: &mut criterion::BenchmarkGroup<'_, criterion::measurement::WallTime>,
    instances: usize,
    id: BenchmarkId,
) {
    let cluster = cluster(instances);
    let pvcs = pvcs(instances);
    let reports = reports(instances);
    let input = PlanInput {
        source: cnpg_autoresize::api::source::Source::fork(&cluster),
        pvcs: &pvcs,
        instances: &reports,
        pods: cnpg_autoresize::engine::Pods::Unknown,
        now: now(),
        settings: EngineSettings::default(),
    };
    assert_eq!(decide(&input).len(), pvcs.len());
    group.throughput(Throughput::Elements(pvcs.len() as u64));
    group.bench_with_input(id, &input, |b, input| b.iter(|| decide(black_box(input))));
}

fn bench_decide(c: &mut Criterion) {
    let mut group = c.benchmark_group("decide");
    for instances in [1usize, 3, 10] {
        bench_cluster(
            &mut group,
            instances,
            BenchmarkId::new("instances", instances),
        );
    }
    group.finish();
}

/// 10 000 volumes in one `decide` call: 2 500 instances of 4 volumes each.
const LARGE_INSTANCES: usize = 2_500;

fn bench_decide_large(c: &mut Criterion) {
    let mut group = c.benchmark_group("decide_10k");
    group.sample_size(20);
    group.measurement_time(Duration::from_secs(10));
    // Four volumes per instance: the id names the volume count.
    let id = BenchmarkId::new("volumes", LARGE_INSTANCES * 4);
    bench_cluster(&mut group, LARGE_INSTANCES, id);
    group.finish();
}

const QUANTITIES: [&str; 8] = [
    "10Gi",
    "1.5Gi",
    "500Mi",
    "1Ti",
    "100G",
    "1e9",
    "128974848",
    "2048Ki",
];

fn bench_quantity(c: &mut Criterion) {
    let mut group = c.benchmark_group("quantity");
    group.throughput(Throughput::Elements(QUANTITIES.len() as u64));
    group.bench_function("parse_to_bytes_x8", |b| {
        b.iter(|| {
            for q in QUANTITIES {
                let bytes = Quantity::parse(black_box(q))
                    .and_then(|q| q.to_bytes())
                    .expect("valid");
                black_box(bytes);
            }
        })
    });
    let sizes: [u64; 8] = [
        10 * GIB,
        3 * GIB / 2,
        500 * MIB,
        1 << 40,
        100_000_000_000,
        1_000_000_000,
        128_974_848,
        2 * MIB,
    ];
    group.bench_function("format_bytes_x8", |b| {
        b.iter(|| {
            for s in sizes {
                black_box(format_bytes(black_box(s)));
            }
        })
    });
    group.finish();
}

fn config() -> Criterion {
    Criterion::default()
        .sample_size(30)
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2))
}

criterion_group! {
    name = benches;
    config = config();
    targets = bench_decide, bench_decide_large, bench_quantity
}
criterion_main!(benches);
