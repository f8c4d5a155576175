//! Table tests for every rule of docs/reference/decision.md and their order.

use super::*;
use crate::api::cluster::Cluster;
use crate::api::report::{InactiveSlot, VolumeStats, WalHealth};
use crate::api::source::Source;
use serde_json::{json, Value};

const GI: u64 = 1 << 30;
const NOW: &str = "2026-11-26T12:00:00Z";

fn now() -> Timestamp {
    NOW.parse().unwrap()
}

/// A two-instance cluster with data + WAL; `resize` is merged into both blocks.
fn cluster(data_resize: Value, wal_resize: Option<Value>) -> Cluster {
    let mut spec = json!({
        "instances": 2,
        "backup": {"barmanObjectStore": {"destinationPath": "s3://b"}},
        "storage": {"size": "10Gi", "resize": data_resize},
    });
    if let Some(wal) = wal_resize {
        spec["walStorage"] = json!({"size": "4Gi", "resize": wal});
    }
    serde_json::from_value(json!({
        "apiVersion": "postgresql.cnpg.io/v1", "kind": "Cluster",
        "metadata": {"name": "pg", "namespace": "db"},
        "spec": spec,
    }))
    .unwrap()
}

fn with_events(mut c: Cluster, events: Value) -> Cluster {
    c.status = Some(serde_json::from_value(json!({ "autoResizeEvents": events })).unwrap());
    c
}

fn event(ts: &str, pvc: &str, prev: &str, new: &str, result: &str) -> Value {
    json!({"timestamp": ts, "instanceName": "pg-1", "pvcName": pvc, "volumeType": "data",
           "previousSize": prev, "newSize": new, "result": result})
}

fn pvc(name: &str, role: &str, request: &str, capacity: &str) -> PersistentVolumeClaim {
    serde_json::from_value(json!({
        "metadata": {"name": name, "labels": {
            "cnpg.io/cluster": "pg", "cnpg.io/instanceName": "pg-1", "cnpg.io/pvcRole": role}},
        "spec": {"resources": {"requests": {"storage": request}}},
        "status": {"capacity": {"storage": capacity}},
    }))
    .unwrap()
}

fn stats(total: u64, used_pct: u64) -> VolumeStats {
    let used = total / 100 * used_pct;
    VolumeStats {
        total_bytes: total,
        used_bytes: used,
        available_bytes: total - used,
        ..Default::default()
    }
}

fn report(
    data: Option<VolumeStats>,
    wal: Option<VolumeStats>,
    health: Option<WalHealth>,
) -> InstanceReport {
    InstanceReport {
        data,
        wal,
        wal_health: health,
        ..Default::default()
    }
}

fn run(c: &Cluster, pvcs: &[PersistentVolumeClaim], r: Option<InstanceReport>) -> Vec<Decision> {
    let mut instances = BTreeMap::new();
    if let Some(r) = r {
        instances.insert("pg-1".to_string(), r);
    }
    decide(&PlanInput {
        source: Source::fork(c),
        pvcs,
        instances: &instances,
        pods: Pods::Unknown,
        now: now(),
        settings: EngineSettings::default(),
    })
}

/// Decides for a single data PVC of 10Gi with the given config and usage.
fn data_decision(resize: Value, used_pct: u64) -> Decision {
    let c = cluster(resize, Some(json!({"enabled": false})));
    let d = run(
        &c,
        &[pvc("pg-1", "PG_DATA", "10Gi", "10Gi")],
        Some(report(
            Some(stats(10 * GI, used_pct)),
            None,
            Some(WalHealth::default()),
        )),
    );
    assert_eq!(d.len(), 1);
    d.into_iter().next().unwrap()
}

/// Decides for a single WAL PVC of 4Gi at 90% with the given WAL health.
fn wal_decision(wal_resize: Value, health: Option<WalHealth>) -> Decision {
    let c = cluster(json!({"enabled": false}), Some(wal_resize));
    let d = run(
        &c,
        &[pvc("pg-1-wal", "PG_WAL", "4Gi", "4Gi")],
        Some(report(None, Some(stats(4 * GI, 90)), health)),
    );
    assert_eq!(d.len(), 1);
    d.into_iter().next().unwrap()
}

fn outcome(d: &Decision) -> (Action, Option<Reason>, Option<u64>) {
    (d.action, d.reason, d.new_size)
}

#[test]
fn trigger_by_percentage_is_strict() {
    let enabled = json!({"enabled": true});
    let cases = [
        (79, Action::None, Some(Reason::NotTriggered)),
        (80, Action::None, Some(Reason::NotTriggered)),
        (81, Action::Resize, None),
    ];
    for (pct, action, reason) in cases {
        let d = data_decision(enabled.clone(), pct);
        assert_eq!((d.action, d.reason), (action, reason), "at {pct}%");
    }
    let custom = data_decision(
        json!({"enabled": true, "triggers": {"usageThreshold": 50}}),
        51,
    );
    assert_eq!(custom.action, Action::Resize);
}

#[test]
fn min_available_alone_triggers_and_is_strict() {
    let resize = |min: &str| json!({"enabled": true, "triggers": {"usageThreshold": 99, "minAvailable": min}});
    // 10Gi at 70% used leaves exactly 3Gi available.
    let total = 10 * GI;
    let c = |min: &str| cluster(resize(min), None);
    let decide_with = |min: &str| {
        let s = VolumeStats {
            total_bytes: total,
            used_bytes: 7 * GI,
            available_bytes: 3 * GI,
            ..Default::default()
        };
        let mut cl = c(min);
        cl.spec.wal_storage = Some(Default::default());
        run(
            &cl,
            &[pvc("pg-1", "PG_DATA", "10Gi", "10Gi")],
            Some(report(Some(s), None, None)),
        )
        .remove(0)
    };
    assert_eq!(decide_with("3Gi").reason, Some(Reason::NotTriggered));
    let d = decide_with("3073Mi");
    assert_eq!(d.action, Action::Resize, "{}", d.message);
    assert_eq!(d.new_size, Some(12 * GI));
    assert_eq!(
        decide_with("").reason,
        Some(Reason::NotTriggered),
        "empty string = absent"
    );
}

#[test]
fn no_status_when_the_instance_or_volume_is_unreported_or_stale() {
    let c = cluster(json!({"enabled": true}), Some(json!({"enabled": true})));
    let pvcs = [
        pvc("pg-1", "PG_DATA", "10Gi", "10Gi"),
        pvc("pg-1-wal", "PG_WAL", "4Gi", "4Gi"),
    ];

    let none = run(&c, &pvcs, None);
    assert!(
        none.iter().all(|d| d.reason == Some(Reason::NoStatus)),
        "{none:?}"
    );

    let data_only = run(
        &c,
        &pvcs,
        Some(report(Some(stats(10 * GI, 90)), None, None)),
    );
    assert_eq!(data_only[0].action, Action::Resize);
    assert_eq!(
        data_only[1].reason,
        Some(Reason::NoStatus),
        "the WAL volume has no figures"
    );

    let mut stale = report(Some(stats(10 * GI, 90)), Some(stats(4 * GI, 90)), None);
    stale.last_updated = Some(now() - SignedDuration::from_secs(4));
    assert!(run(&c, &pvcs, Some(stale.clone()))
        .iter()
        .all(|d| d.reason == Some(Reason::NoStatus)));
    stale.last_updated = Some(now() - SignedDuration::from_secs(3));
    assert_eq!(
        run(&c, &pvcs, Some(stale))[0].action,
        Action::Resize,
        "3s old is still fresh"
    );
}

#[test]
fn resize_in_progress_from_every_kind_of_evidence() {
    let c = cluster(json!({"enabled": true}), None);
    let full = Some(report(Some(stats(10 * GI, 95)), None, None));
    let mut ack = c.clone();
    ack.spec.wal_storage = Some(Default::default());

    // The request is above the capacity.
    let d = run(
        &ack,
        &[pvc("pg-1", "PG_DATA", "12Gi", "10Gi")],
        full.clone(),
    )
    .remove(0);
    assert_eq!(d.reason, Some(Reason::ResizeInProgress), "{}", d.message);

    // Conditions and allocatedResourceStatuses.
    let with_status = |status: Value| {
        let mut p = pvc("pg-1", "PG_DATA", "10Gi", "10Gi");
        let mut s = serde_json::to_value(p.status.take().unwrap()).unwrap();
        s.as_object_mut()
            .unwrap()
            .extend(status.as_object().unwrap().clone());
        p.status = Some(serde_json::from_value(s).unwrap());
        run(&ack, &[p], full.clone()).remove(0)
    };
    for condition in ["Resizing", "FileSystemResizePending"] {
        let d = with_status(json!({"conditions": [{"type": condition, "status": "True"}]}));
        assert_eq!(d.reason, Some(Reason::ResizeInProgress), "{condition}");
    }
    let d = with_status(json!({"conditions": [{"type": "Resizing", "status": "False"}]}));
    assert_eq!(
        d.action,
        Action::Resize,
        "a False condition is not a resize"
    );
    for state in [
        "ControllerResizeInProgress",
        "NodeResizePending",
        "NodeResizeInProgress",
    ] {
        let d = with_status(json!({"allocatedResourceStatuses": {"storage": state}}));
        assert_eq!(d.reason, Some(Reason::ResizeInProgress), "{state}");
    }

    // Our last resize set the request, but the filesystem is not yet larger
    // than the total it reported when that resize was decided.
    let seen = 10 * GI - 50 * (1 << 20);
    let mut record = event("2026-11-26T11:59:00Z", "pg-1", "10Gi", "12Gi", "success");
    record["filesystemBytes"] = json!(seen);
    let c2 = with_events(ack.clone(), json!([record]));
    let not_grown = Some(report(Some(stats(seen, 95)), None, None));
    let d = run(
        &c2,
        &[pvc("pg-1", "PG_DATA", "12Gi", "12Gi")],
        not_grown.clone(),
    )
    .remove(0);
    assert_eq!(d.reason, Some(Reason::ResizeInProgress));
    assert!(!d.stuck, "one minute is not stuck");
    let grown = Some(report(Some(stats(seen + (1 << 20), 95)), None, None));
    let d = run(&c2, &[pvc("pg-1", "PG_DATA", "12Gi", "12Gi")], grown).remove(0);
    assert_eq!(
        d.action,
        Action::Resize,
        "grown filesystem: next resize allowed"
    );
    // A record without filesystemBytes (an older version's) does not count.
    let old_record = with_events(
        ack.clone(),
        json!([event(
            "2026-11-26T11:59:00Z",
            "pg-1",
            "10Gi",
            "12Gi",
            "success"
        )]),
    );
    let d = run(
        &old_record,
        &[pvc("pg-1", "PG_DATA", "12Gi", "12Gi")],
        not_grown,
    )
    .remove(0);
    assert_eq!(d.action, Action::Resize, "{}", d.message);
}

#[test]
fn a_resize_in_flight_for_over_ten_minutes_is_stuck() {
    let mut c = cluster(json!({"enabled": true}), None);
    c.spec.wal_storage = Some(Default::default());
    let events = json!([event(
        "2026-11-26T11:49:00Z",
        "pg-1",
        "10Gi",
        "12Gi",
        "success"
    )]);
    let c = with_events(c, events);
    let d = run(
        &c,
        &[pvc("pg-1", "PG_DATA", "12Gi", "10Gi")],
        Some(report(Some(stats(10 * GI, 95)), None, None)),
    )
    .remove(0);
    assert_eq!(d.reason, Some(Reason::ResizeInProgress));
    assert!(d.stuck, "11 minutes in flight");
}

#[test]
fn a_resize_by_hand_in_flight_for_long_is_stuck_too() {
    // No record of ours: the PVC's Resizing condition dates the resize.
    let mut c = cluster(json!({"enabled": true}), None);
    c.spec.wal_storage = Some(Default::default());
    let mut claim = pvc("pg-1", "PG_DATA", "12Gi", "10Gi");
    let resizing = |at: &str| {
        serde_json::from_value(json!([{"type": "Resizing", "status": "True",
            "lastTransitionTime": at}]))
        .unwrap()
    };
    let fs = Some(report(Some(stats(10 * GI, 95)), None, None));
    claim.status.as_mut().unwrap().conditions = Some(resizing("2026-11-26T11:00:00Z"));
    let d = run(&c, std::slice::from_ref(&claim), fs.clone()).remove(0);
    assert_eq!(d.reason, Some(Reason::ResizeInProgress));
    assert!(d.stuck, "an hour in flight");
    claim.status.as_mut().unwrap().conditions = Some(resizing("2026-11-26T11:58:00Z"));
    let d = run(&c, &[claim], fs).remove(0);
    assert!(!d.stuck, "two minutes in flight");
}

#[test]
fn budget_counts_only_recent_successes_of_this_pvc() {
    let resize = json!({"enabled": true, "strategy": {"maxActionsPerDay": 2}});
    let mut c = cluster(resize, None);
    c.spec.wal_storage = Some(Default::default());
    let decide_events = |events: Value| {
        let c = with_events(c.clone(), events);
        run(
            &c,
            &[pvc("pg-1", "PG_DATA", "10Gi", "10Gi")],
            Some(report(Some(stats(10 * GI, 90)), None, None)),
        )
        .remove(0)
    };
    let ok = |ts: &str| event(ts, "pg-1", "8Gi", "10Gi", "success");

    let d = decide_events(json!([
        ok("2026-11-26T01:00:00Z"),
        ok("2026-11-26T02:00:00Z")
    ]));
    assert_eq!(
        (d.action, d.reason),
        (Action::Blocked, Some(Reason::RateLimit))
    );
    assert_eq!(d.budget_remaining, Some(0));
    assert_eq!(
        d.next_action_at,
        Some("2026-11-27T01:00:00Z".parse().unwrap())
    );

    let ignored = json!([
        ok("2026-11-26T01:00:00Z"),
        ok("2026-11-25T12:00:00Z"), // exactly 24h old: out
        event("2026-11-26T03:00:00Z", "pg-1", "8Gi", "10Gi", "failure"),
        event("2026-11-26T03:00:00Z", "pg-2", "8Gi", "10Gi", "success"),
    ]);
    let d = decide_events(ignored);
    assert_eq!(d.action, Action::Resize, "{}", d.message);
    assert_eq!(d.budget_remaining, Some(1));

    // Foreign entries that do not read (no usable timestamp, an unknown
    // result) count toward no budget (docs/reference/decision.md#foreign-data).
    let mut no_time = ok("2026-11-26T02:00:00Z");
    no_time.as_object_mut().unwrap().remove("timestamp");
    let unreadable = json!([
        ok("2026-11-26T01:00:00Z"),
        ok("yesterday"),
        no_time,
        event("2026-11-26T02:30:00Z", "pg-1", "8Gi", "10Gi", "partial"),
    ]);
    let d = decide_events(unreadable);
    assert_eq!(d.action, Action::Resize, "{}", d.message);
    assert_eq!(d.budget_remaining, Some(1));
}

#[test]
fn zero_actions_per_day_blocks_every_resize() {
    let d = data_decision(
        json!({"enabled": true, "strategy": {"maxActionsPerDay": 0, "walSafetyPolicy": {"acknowledgeWALRisk": true}}}),
        95,
    );
    assert_eq!(
        (d.action, d.reason),
        (Action::Blocked, Some(Reason::RateLimit))
    );
    assert_eq!(d.next_action_at, None, "a zero budget never frees");
}

#[test]
fn limit_blocks_at_the_limit_and_caps_growth() {
    let at = data_decision(json!({"enabled": true, "expansion": {"limit": "10Gi"}}), 95);
    assert_eq!(
        (at.action, at.reason),
        (Action::Blocked, Some(Reason::AtLimit))
    );
    assert!(at.at_limit);
    let near = data_decision(json!({"enabled": true, "expansion": {"limit": "11Gi"}}), 95);
    assert_eq!(outcome(&near), (Action::Resize, None, Some(11 * GI)));
    assert!(!near.at_limit);
    // A limit that is not a whole MiB is still the exact cap.
    let odd = data_decision(
        json!({"enabled": true, "expansion": {"limit": "10737418241"}}),
        95,
    );
    assert_eq!(odd.new_size, Some(10 * GI + 1));
}

#[test]
fn sizing_rules() {
    let cases: &[(&str, Value, u64)] = &[
        // Two examples of docs/reference/decision.md#10-size.
        // 5% of 2Gi clamped up to minStep 1Gi -> 3Gi.
        ("2Gi", json!({"step": "5%", "minStep": "1Gi"}), 3 * GI),
        // 50% of 10Gi clamped down to maxStep 2Gi -> 12Gi.
        ("10Gi", json!({"step": "50%", "maxStep": "2Gi"}), 12 * GI),
        // Default 20% with the default 2Gi minStep.
        ("100Gi", json!({}), 120 * GI),
        ("5Gi", json!({}), 7 * GI),
        // Absolute step ignores min/max.
        (
            "10Gi",
            json!({"step": "512Mi", "minStep": "1Gi"}),
            10 * GI + 512 * (1 << 20),
        ),
        // Rounded up to a whole MiB: 1e9 + 2e8 (minStep 0) = 1.2e9 -> 1145 MiB.
        (
            "1G",
            json!({"step": "20%", "minStep": "0"}),
            1145 * (1 << 20),
        ),
        // Decimal quantities and 100%.
        ("1.5Gi", json!({"step": "100%", "minStep": "0"}), 3 * GI),
    ];
    for (current, expansion, want) in cases {
        let c = {
            let mut c = cluster(json!({"enabled": true, "expansion": expansion}), None);
            c.spec.wal_storage = Some(Default::default());
            c
        };
        let current_bytes = crate::api::resize::parse_non_negative_bytes(current).unwrap();
        let d = run(
            &c,
            &[pvc("pg-1", "PG_DATA", current, current)],
            Some(report(Some(stats(current_bytes, 95)), None, None)),
        )
        .remove(0);
        assert_eq!(
            outcome(&d),
            (Action::Resize, None, Some(*want)),
            "{current} {expansion}: {}",
            d.message
        );
    }
}

#[test]
fn invalid_values_met_at_runtime_block_the_volume() {
    // The Go code turned minStep 2XGi into 2Gi, and step 0 into 20%.
    for expansion in [
        json!({"minStep": "2XGi"}),
        json!({"step": 0}),
        json!({"step": "0%"}),
        json!({"step": 20}),
    ] {
        let d = data_decision(
            json!({"enabled": true, "expansion": expansion, "strategy": {"walSafetyPolicy": {"acknowledgeWALRisk": true}}}),
            95,
        );
        assert_eq!(
            (d.action, d.reason),
            (Action::Blocked, Some(Reason::InvalidConfig)),
            "{expansion}"
        );
        assert!(
            d.message.contains("spec.storage.resize.expansion"),
            "{}",
            d.message
        );
        assert_eq!(d.new_size, None);
    }
    // Even when not triggered: nothing is evaluated on a config we cannot read.
    let d = data_decision(
        json!({"enabled": true, "triggers": {"usageThreshold": 0}}),
        10,
    );
    assert_eq!(d.reason, Some(Reason::InvalidConfig));
    // An unreadable PVC request is not guessed either.
    let c = cluster(json!({"enabled": true}), Some(json!({"enabled": false})));
    let d = run(
        &c,
        &[pvc("pg-1", "PG_DATA", "ten gigs", "10Gi")],
        Some(report(Some(stats(10 * GI, 95)), None, None)),
    );
    assert_eq!(d[0].reason, Some(Reason::InvalidConfig));
    assert!(d[0].message.contains("ten gigs"));
}

#[test]
fn a_zero_step_grows_nothing() {
    let d = data_decision(
        json!({"enabled": true, "expansion": {"maxStep": "0", "minStep": "0"}}),
        95,
    );
    assert_eq!(
        (d.action, d.reason, d.new_size),
        (Action::None, Some(Reason::InvalidConfig), None)
    );
}

#[test]
fn single_volume_data_is_guarded_by_wal_safety() {
    let c = cluster(json!({"enabled": true}), None);
    let pvcs = [pvc("pg-1", "PG_DATA", "10Gi", "10Gi")];
    let full = |health| Some(report(Some(stats(10 * GI, 95)), None, health));
    let d = run(&c, &pvcs, full(None)).remove(0);
    assert_eq!(
        (d.action, d.reason),
        (Action::Blocked, Some(Reason::SingleVolumeNoAck))
    );

    let acked = cluster(
        json!({"enabled": true, "strategy": {"walSafetyPolicy": {"acknowledgeWALRisk": true}}}),
        None,
    );
    let failing = WalHealth {
        archive_healthy: false,
        ..Default::default()
    };
    let d = run(&acked, &pvcs, full(Some(failing))).remove(0);
    assert_eq!(d.reason, Some(Reason::ArchiveUnhealthy));
    let d = run(&acked, &pvcs, full(Some(WalHealth::default()))).remove(0);
    assert_eq!(d.action, Action::Resize);
    assert!(d.wal_risk_alert, "alertOnResize defaults to true");
}

/// (name, WAL health, expected action, reason, warnings)
type WalCase = (
    &'static str,
    Option<WalHealth>,
    Action,
    Option<Reason>,
    Vec<WarningCode>,
);

#[test]
fn wal_safety_rules_in_order() {
    let policy = json!({"enabled": true, "strategy": {"walSafetyPolicy": {
        "maxPendingWALFiles": 10, "maxSlotRetentionBytes": 1000}}});
    let slot = |bytes| InactiveSlot {
        slot_name: "s1".into(),
        retention_bytes: bytes,
    };
    let everything_wrong = WalHealth {
        archive_healthy: false,
        pending_wal_files: 11,
        inactive_slots: vec![slot(1001)],
        ..Default::default()
    };
    let cases: Vec<WalCase> = vec![
        (
            "unavailable: fail open",
            None,
            Action::Resize,
            None,
            vec![WarningCode::WalHealthUnavailable],
        ),
        (
            "archive first",
            Some(everything_wrong.clone()),
            Action::Blocked,
            Some(Reason::ArchiveUnhealthy),
            vec![],
        ),
        (
            "no archiving configured: archive check skipped, pending next",
            Some(WalHealth {
                archiving_configured: false,
                ..everything_wrong.clone()
            }),
            Action::Blocked,
            Some(Reason::PendingWalExceeded),
            vec![],
        ),
        (
            "pending at the maximum is fine; slot next",
            Some(WalHealth {
                archive_healthy: true,
                pending_wal_files: 10,
                ..everything_wrong.clone()
            }),
            Action::Blocked,
            Some(Reason::SlotRetentionExceeded),
            vec![],
        ),
        (
            "slot at the maximum is fine",
            Some(WalHealth {
                inactive_slots: vec![slot(1000), slot(3)],
                ..Default::default()
            }),
            Action::Resize,
            None,
            vec![],
        ),
        (
            "slots unknown: fail open with a warning",
            Some(WalHealth {
                slots_known: false,
                ..Default::default()
            }),
            Action::Resize,
            None,
            vec![WarningCode::WalHealthUnavailable],
        ),
    ];
    for (name, health, action, reason, warnings) in cases {
        let d = wal_decision(policy.clone(), health);
        assert_eq!(
            (d.action, d.reason, &d.warnings),
            (action, reason, &warnings),
            "{name}: {}",
            d.message
        );
    }

    // Disabled checks and requireArchiveHealthy: false.
    let lenient = json!({"enabled": true, "strategy": {"walSafetyPolicy": {
        "requireArchiveHealthy": false, "maxPendingWALFiles": 0, "maxSlotRetentionBytes": 0}}});
    let d = wal_decision(lenient, Some(everything_wrong));
    assert_eq!(d.action, Action::Resize, "{}", d.message);
    assert_eq!(d.new_size, Some(6 * GI), "4Gi + minStep 2Gi");
}

#[test]
fn tablespaces_and_separate_data_volumes_skip_wal_safety() {
    let mut c = cluster(json!({"enabled": true}), Some(json!({"enabled": false})));
    c.spec.tablespaces = Some(vec![serde_json::from_value(json!({
        "name": "tbs1", "storage": {"size": "10Gi", "resize": {"enabled": true}}}))
    .unwrap()]);
    let mut tbs = pvc("pg-1-tbs-tbs1", "PG_TABLESPACE", "10Gi", "10Gi");
    tbs.metadata
        .labels
        .as_mut()
        .unwrap()
        .insert("cnpg.io/tablespaceName".into(), "tbs1".into());
    let failing = WalHealth {
        archive_healthy: false,
        ..Default::default()
    };
    let mut r = report(
        Some(stats(10 * GI, 95)),
        Some(stats(4 * GI, 10)),
        Some(failing),
    );
    r.tablespaces.insert("tbs1".into(), stats(10 * GI, 95));
    let d = run(&c, &[tbs, pvc("pg-1", "PG_DATA", "10Gi", "10Gi")], Some(r));
    assert_eq!(d.len(), 2);
    assert!(d.iter().all(|d| d.action == Action::Resize), "{d:?}");
    assert_eq!(d[1].volume.tablespace.as_deref(), Some("tbs1"));
    assert!(d.iter().all(|d| !d.wal_risk_alert));
}

#[test]
fn rule_order_earlier_rules_win() {
    // In flight AND over budget AND at limit -> resize_in_progress.
    let mut c = cluster(
        json!({"enabled": true, "expansion": {"limit": "10Gi"}, "strategy": {"maxActionsPerDay": 1}}),
        None,
    );
    c.spec.wal_storage = Some(Default::default());
    let c = with_events(
        c,
        json!([event(
            "2026-11-26T11:00:00Z",
            "pg-other",
            "1Gi",
            "2Gi",
            "success"
        )]),
    );
    let full = Some(report(Some(stats(10 * GI, 95)), None, None));
    let in_flight = run(&c, &[pvc("pg-1", "PG_DATA", "12Gi", "10Gi")], full.clone()).remove(0);
    assert_eq!(in_flight.reason, Some(Reason::ResizeInProgress));
    // Not triggered beats budget and limit.
    let quiet = run(
        &c,
        &[pvc("pg-1", "PG_DATA", "10Gi", "10Gi")],
        Some(report(Some(stats(10 * GI, 50)), None, None)),
    )
    .remove(0);
    assert_eq!(quiet.reason, Some(Reason::NotTriggered));
    assert!(
        quiet.at_limit,
        "at_limit is reported even when not triggered"
    );
    // Budget beats limit.
    let c = with_events(
        c,
        json!([event(
            "2026-11-26T11:00:00Z",
            "pg-1",
            "9Gi",
            "10Gi",
            "success"
        )]),
    );
    let d = run(&c, &[pvc("pg-1", "PG_DATA", "10Gi", "10Gi")], full).remove(0);
    assert_eq!(d.reason, Some(Reason::RateLimit));
    // Limit beats WAL safety.
    let single = cluster(
        json!({"enabled": true, "expansion": {"limit": "10Gi"}}),
        None,
    );
    let d = run(
        &single,
        &[pvc("pg-1", "PG_DATA", "10Gi", "10Gi")],
        Some(report(Some(stats(10 * GI, 95)), None, None)),
    )
    .remove(0);
    assert_eq!(d.reason, Some(Reason::AtLimit));
}

#[test]
fn only_enabled_volumes_of_this_cluster_are_decided_in_order() {
    let c = cluster(json!({"enabled": true}), Some(json!({"enabled": false})));
    let mut foreign = pvc("other-1", "PG_DATA", "10Gi", "10Gi");
    foreign
        .metadata
        .labels
        .as_mut()
        .unwrap()
        .insert("cnpg.io/cluster".into(), "other".into());
    let mut second = pvc("pg-2", "PG_DATA", "10Gi", "10Gi");
    second
        .metadata
        .labels
        .as_mut()
        .unwrap()
        .insert("cnpg.io/instanceName".into(), "pg-2".into());
    let pvcs = [
        second,
        pvc("pg-1-wal", "PG_WAL", "4Gi", "4Gi"),
        foreign,
        pvc("pg-1", "PG_DATA", "10Gi", "10Gi"),
    ];
    let d = run(&c, &pvcs, None);
    let names: Vec<_> = d.iter().map(|d| d.volume.pvc.as_str()).collect();
    assert_eq!(names, ["pg-1", "pg-2"]);
}

#[test]
fn pvcs_without_labels_are_classified_by_name() {
    let p = |name: &str| -> PersistentVolumeClaim {
        serde_json::from_value(json!({"metadata": {"name": name}})).unwrap()
    };
    let v = classify_pvc(&p("pg-1-wal"), "pg").unwrap();
    assert_eq!(
        (v.instance.as_str(), v.volume_type),
        ("pg-1", VolumeType::Wal)
    );
    let v = classify_pvc(&p("pg-1-tbs-idx"), "pg").unwrap();
    assert_eq!(
        (v.instance.as_str(), v.volume_type, v.tablespace.as_deref()),
        ("pg-1", VolumeType::Tablespace, Some("idx"))
    );
    let v = classify_pvc(&p("pg-1"), "pg").unwrap();
    assert_eq!(
        (v.instance.as_str(), v.volume_type),
        ("pg-1", VolumeType::Data)
    );
}

mod amended;
mod edges;
