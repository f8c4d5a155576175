//! Properties of the decision for any valid configuration and state: a
//! resize never shrinks, never passes `limit`, never exceeds the budget,
//! never violates the cooldown — also over a long run of resizes with time
//! passing, with the growth forecast, `timeToFull` and `horizon` in play.

use cnpg_autoresize::api::cluster::Cluster;
use cnpg_autoresize::api::quantity::format_bytes;
use cnpg_autoresize::api::report::{InactiveSlot, InstanceReport, VolumeStats, WalHealth};
use cnpg_autoresize::engine::{decide, Action, Decision, EngineSettings, PlanInput, BUDGET_WINDOW};
use jiff::{SignedDuration, Timestamp};
use k8s_openapi::api::core::v1::PersistentVolumeClaim;
use proptest::prelude::*;
use serde_json::{json, Value};
use std::collections::BTreeMap;

const MIB: u64 = 1 << 20;
const GIB: u64 = 1 << 30;

#[derive(Clone, Debug)]
struct Config {
    step: Value,
    min_step: u64,
    max_step: u64,
    limit: Option<u64>,
    max_actions: u32,
    threshold: u32,
    single_volume: bool,
    cooldown_minutes: Option<u64>,
    time_to_full_minutes: Option<u64>,
    horizon_minutes: Option<u64>,
}

fn config() -> impl Strategy<Value = Config> {
    let step = prop_oneof![
        (1u32..=100).prop_map(|p| json!(format!("{p}%"))),
        (1u64..=64 * GIB).prop_map(|b| json!(format_bytes(b))),
    ];
    (
        step,
        0u64..=32 * GIB,
        0u64..=64 * GIB,
        proptest::option::of(MIB..=4096 * GIB),
        0u32..=10,
        1u32..=99,
        any::<bool>(),
        (
            proptest::option::of(1u64..=360),
            proptest::option::of(1u64..=24 * 60),
            proptest::option::of(1u64..=48 * 60),
        ),
    )
        .prop_map(
            |(
                step,
                a,
                b,
                limit,
                max_actions,
                threshold,
                single_volume,
                (cooldown, ttf, horizon),
            )| {
                Config {
                    step,
                    min_step: a.min(b),
                    max_step: a.max(b),
                    limit,
                    max_actions,
                    threshold,
                    single_volume,
                    cooldown_minutes: cooldown,
                    time_to_full_minutes: ttf,
                    horizon_minutes: horizon,
                }
            },
        )
}

fn cluster(c: &Config, events: &[Value]) -> Cluster {
    let mut expansion = json!({"step": c.step, "minStep": format_bytes(c.min_step), "maxStep": format_bytes(c.max_step)});
    if let Some(limit) = c.limit {
        expansion["limit"] = json!(format_bytes(limit));
    }
    if let Some(h) = c.horizon_minutes {
        expansion["horizon"] = json!(format!("{h}m"));
    }
    let mut resize = json!({"enabled": true, "triggers": {"usageThreshold": c.threshold}, "expansion": expansion,
        "strategy": {"maxActionsPerDay": c.max_actions, "walSafetyPolicy": {"acknowledgeWALRisk": c.single_volume, "maxSlotRetentionBytes": GIB}}});
    if let Some(m) = c.cooldown_minutes {
        resize["strategy"]["cooldown"] = json!(format!("{m}m"));
    }
    if let Some(m) = c.time_to_full_minutes {
        resize["triggers"]["timeToFull"] = json!(format!("{m}m"));
    }
    let mut spec = json!({"storage": {"size": "1Gi", "resize": resize}});
    if !c.single_volume {
        spec["walStorage"] = json!({"size": "1Gi"});
    }
    serde_json::from_value(
        json!({"apiVersion": "postgresql.cnpg.io/v1", "kind": "Cluster",
        "metadata": {"name": "pg"}, "spec": spec, "status": {"autoResizeEvents": events}}),
    )
    .unwrap()
}

fn pvc(request: u64) -> PersistentVolumeClaim {
    serde_json::from_value(json!({"metadata": {"name": "pg-1", "labels": {"cnpg.io/pvcRole": "PG_DATA", "cnpg.io/instanceName": "pg-1"}},
        "spec": {"resources": {"requests": {"storage": format_bytes(request)}}},
        "status": {"capacity": {"storage": format_bytes(request)}}}))
    .unwrap()
}

fn event(at: Timestamp, previous: u64, new: u64, success: bool) -> Value {
    json!({"timestamp": at.to_string(), "instanceName": "pg-1", "pvcName": "pg-1", "volumeType": "data",
        "previousSize": format_bytes(previous), "newSize": format_bytes(new), "result": if success {"success"} else {"failure"}})
}

/// A refused resize aims at another size than a success at the same time
/// would: two records of one resize are one record (a failure marked later).
fn past_event(at: Timestamp, request: u64, success: bool) -> Value {
    event(
        at,
        request / 2,
        request + u64::from(!success) * MIB,
        success,
    )
}

fn health() -> impl Strategy<Value = Option<WalHealth>> {
    proptest::option::of(
        (
            any::<bool>(),
            any::<bool>(),
            0u64..200,
            0u64..2 * GIB,
            any::<bool>(),
        )
            .prop_map(
                |(archive_healthy, archiving_configured, pending, retention, slots_known)| {
                    WalHealth {
                        archive_healthy,
                        archiving_configured,
                        pending_wal_files: pending,
                        inactive_slots: vec![InactiveSlot {
                            slot_name: "s".into(),
                            retention_bytes: retention,
                        }],
                        slots_known,
                        in_recovery: None,
                    }
                },
            ),
    )
}

fn decide_one(
    cluster: &Cluster,
    request: u64,
    fs: VolumeStats,
    health: Option<WalHealth>,
    now: Timestamp,
) -> Decision {
    let instances = BTreeMap::from([(
        "pg-1".to_string(),
        InstanceReport {
            data: Some(fs),
            wal_health: health,
            ..Default::default()
        },
    )]);
    let pvcs = [pvc(request)];
    let mut decisions = decide(&PlanInput {
        source: cnpg_autoresize::api::source::Source::fork(cluster),
        pvcs: &pvcs,
        instances: &instances,
        pods: cnpg_autoresize::engine::Pods::Unknown,
        now,
        settings: EngineSettings::default(),
    });
    assert_eq!(decisions.len(), 1);
    decisions.remove(0)
}

fn now() -> Timestamp {
    "2026-11-26T12:00:00Z".parse().unwrap()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn a_single_decision_never_shrinks_passes_the_limit_or_the_budget(
        c in config(),
        request in MIB..=2048 * GIB,
        used_pct in 0u64..=100,
        past in proptest::collection::vec((0i64..48 * 60, any::<bool>()), 0..12),
        health in health(),
        growth in proptest::option::of(1.0f64..1e9),
    ) {
        let events: Vec<Value> = past.iter().map(|(minutes, ok)| past_event(now() - SignedDuration::from_mins(*minutes), request, *ok)).collect();
        // Two successes at the same minute are one record of one resize
        // (same PVC, timestamp and sizes): counted once.
        let recent_successes = past.iter().filter(|(m, ok)| *ok && SignedDuration::from_mins(*m) < BUDGET_WINDOW).map(|(m, _)| *m).collect::<std::collections::BTreeSet<_>>().len() as u32;
        let latest_success = past.iter().filter(|(_, ok)| *ok).map(|(m, _)| *m).min();
        let used = request / 100 * used_pct;
        let fs = VolumeStats { total_bytes: request, used_bytes: used, available_bytes: request - used, growth_bytes_per_second: growth, ..Default::default() };
        let d = decide_one(&cluster(&c, &events), request, fs, health, now());
        prop_assert_eq!(d.budget_remaining, Some(c.max_actions.saturating_sub(recent_successes)));
        if let (Some(cooldown), Some(ago), Action::Resize) = (c.cooldown_minutes, latest_success, d.action) {
            prop_assert!(ago as u64 >= cooldown, "resized {} min after the last resize, cooldown {}", ago, cooldown);
        }
        match d.action {
            Action::Resize => {
                let new = d.new_size.unwrap();
                prop_assert!(new > request, "shrink or no-op: {} -> {}", request, new);
                if let Some(limit) = c.limit { prop_assert!(new <= limit, "{} > limit {}", new, limit); }
                prop_assert!(recent_successes < c.max_actions, "budget {} used of {}", recent_successes, c.max_actions);
                prop_assert!(d.reason.is_none());
                prop_assert!(c.limit.is_some_and(|l| new == l) || new.is_multiple_of(MIB), "not whole MiB: {}", new);
            }
            _ => {
                prop_assert!(d.new_size.is_none());
                prop_assert!(d.reason.is_some());
            }
        }
    }

    /// Runs the planner for days of simulated time on a volume that keeps
    /// filling: every 24 h window holds at most maxActionsPerDay resizes, the
    /// size only grows and never passes the limit.
    #[test]
    fn over_time_the_budget_and_limit_hold(
        c in config(),
        start in GIB..=64 * GIB,
        ticks in proptest::collection::vec(1i64..=180, 1..120),
        growth in proptest::option::of(1.0f64..1e9),
    ) {
        let mut request = start;
        let mut events: Vec<Value> = Vec::new();
        let mut resizes: Vec<Timestamp> = Vec::new();
        let mut t = now();
        for minutes in ticks {
            t += SignedDuration::from_mins(minutes);
            // The filesystem matches the request and is always past the trigger.
            let fs = VolumeStats { total_bytes: request, used_bytes: request, available_bytes: 0, growth_bytes_per_second: growth, ..Default::default() };
            let d = decide_one(&cluster(&c, &events), request, fs, Some(WalHealth::default()), t);
            if d.action == Action::Resize {
                let new = d.new_size.unwrap();
                prop_assert!(new > request);
                if let Some(limit) = c.limit { prop_assert!(new <= limit); }
                if let (Some(cooldown), Some(last)) = (c.cooldown_minutes, resizes.last()) {
                    prop_assert!(t.duration_since(*last) >= SignedDuration::from_mins(cooldown as i64),
                        "resized {:?} after the last resize, cooldown {}m", t.duration_since(*last), cooldown);
                }
                events.push(event(t, request, new, true));
                resizes.push(t);
                request = new;
            }
            let in_window = resizes.iter().filter(|r| **r > t - BUDGET_WINDOW).count() as u32;
            prop_assert!(in_window <= c.max_actions, "{} resizes in 24h, budget {}", in_window, c.max_actions);
        }
    }
}
