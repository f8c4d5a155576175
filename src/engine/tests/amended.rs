//! Table tests for the rules of docs/reference/decision.md that came after
//! the first ones, or changed: size parity, freshness by the sampler's clock,
//! refused expansions, in-flight by `filesystemBytes`, the inode and forecast
//! triggers, horizon sizing, cooldown, Recommend mode, CloudNativePG's HA
//! slots, foreign data and the AutoResizePolicy source.

use super::*;

fn data_pvc(name: &str, request: &str, capacity: &str) -> PersistentVolumeClaim {
    let mut p = pvc(name, "PG_DATA", request, capacity);
    p.metadata
        .labels
        .as_mut()
        .unwrap()
        .insert("cnpg.io/instanceName".into(), name.into());
    let mut status = serde_json::to_value(p.status.take().unwrap()).unwrap();
    status["phase"] = json!("Bound");
    p.status = Some(serde_json::from_value(status).unwrap());
    p
}

fn with_status(mut p: PersistentVolumeClaim, extra: Value) -> PersistentVolumeClaim {
    let mut s = serde_json::to_value(p.status.take().unwrap()).unwrap();
    s.as_object_mut()
        .unwrap()
        .extend(extra.as_object().unwrap().clone());
    p.status = Some(serde_json::from_value(s).unwrap());
    p
}

/// A data + WAL cluster whose data block is `resize`.
fn data_cluster(resize: Value) -> Cluster {
    cluster(resize, Some(json!({"enabled": false})))
}

fn decide_all(
    c: &Cluster,
    pvcs: &[PersistentVolumeClaim],
    reports: &[(&str, InstanceReport)],
) -> Vec<Decision> {
    let instances: BTreeMap<String, InstanceReport> = reports
        .iter()
        .map(|(pod, r)| (pod.to_string(), r.clone()))
        .collect();
    decide(&PlanInput {
        source: Source::fork(c),
        pvcs,
        instances: &instances,
        pods: Pods::Unknown,
        now: now(),
        settings: EngineSettings::default(),
    })
}

fn healthy(data: VolumeStats) -> InstanceReport {
    report(Some(data), None, Some(WalHealth::default()))
}

const MI: u64 = 1 << 20;

#[test]
fn a_smaller_replica_grows_to_its_peers_size_without_status_trigger_or_budget() {
    let c = data_cluster(json!({"enabled": true, "strategy": {"maxActionsPerDay": 1}}));
    let pvcs = [
        data_pvc("pg-1", "96Mi", "96Mi"),
        data_pvc("pg-2", "64Mi", "64Mi"),
    ];
    // pg-2 was just rebuilt by CloudNativePG: its manager does not run yet.
    let d = decide_all(&c, &pvcs, &[("pg-1", healthy(stats(90 * MI, 10)))]);
    let pg2 = d.iter().find(|d| d.volume.pvc == "pg-2").unwrap();
    assert_eq!(
        outcome(pg2),
        (Action::Resize, None, Some(96 * MI)),
        "{}",
        pg2.message
    );
    assert_eq!(pg2.trigger, Some(Trigger::Parity));
    assert_eq!(pg2.warnings, vec![WarningCode::SizeParity]);
    assert_eq!(pg2.budget_remaining, Some(1));
    let pg1 = d.iter().find(|d| d.volume.pvc == "pg-1").unwrap();
    assert_eq!(pg1.reason, Some(Reason::NotTriggered));

    // A parity grow on record uses no budget.
    let parity = json!([{"timestamp": "2026-11-26T11:00:00Z", "instanceName": "pg-2", "pvcName": "pg-2",
        "volumeType": "data", "previousSize": "64Mi", "newSize": "96Mi", "result": "success", "trigger": "parity"}]);
    let c2 = with_events(c.clone(), parity);
    let grown = [
        data_pvc("pg-1", "96Mi", "96Mi"),
        data_pvc("pg-2", "96Mi", "96Mi"),
    ];
    let d = decide_all(&c2, &grown, &[("pg-2", healthy(stats(90 * MI, 95)))]);
    let pg2 = d.iter().find(|d| d.volume.pvc == "pg-2").unwrap();
    assert_eq!(pg2.action, Action::Resize, "{}", pg2.message);
    assert_eq!(pg2.budget_remaining, Some(1));
    assert_eq!(pg2.trigger, Some(Trigger::Usage));
}

#[test]
fn parity_needs_a_bound_settled_pvc_and_respects_the_limit() {
    let limited = data_cluster(json!({"enabled": true, "expansion": {"limit": "80Mi"}}));
    let pvcs = [
        data_pvc("pg-1", "96Mi", "96Mi"),
        data_pvc("pg-2", "64Mi", "64Mi"),
    ];
    let d = decide_all(&limited, &pvcs, &[]);
    assert_eq!(
        outcome(&d[1]),
        (Action::Resize, None, Some(80 * MI)),
        "capped at the limit"
    );
    let at_limit = [
        data_pvc("pg-1", "96Mi", "96Mi"),
        data_pvc("pg-2", "80Mi", "80Mi"),
    ];
    assert_eq!(
        decide_all(&limited, &at_limit, &[])[1].reason,
        Some(Reason::NoStatus)
    );

    let c = data_cluster(json!({"enabled": true}));
    let mut pending = data_pvc("pg-2", "64Mi", "64Mi");
    pending.status.as_mut().unwrap().phase = Some("Pending".into());
    let in_flight = data_pvc("pg-2", "80Mi", "64Mi");
    let refused = with_status(
        data_pvc("pg-2", "64Mi", "64Mi"),
        json!({"allocatedResourceStatuses": {"storage": "ControllerResizeInfeasible"}}),
    );
    for (case, pvc) in [
        ("pending", pending),
        ("in flight", in_flight),
        ("refused", refused),
    ] {
        let d = decide_all(&c, &[data_pvc("pg-1", "96Mi", "96Mi"), pvc], &[]);
        assert_eq!(d[1].action, Action::None, "{case}: {}", d[1].message);
        assert_ne!(d[1].trigger, Some(Trigger::Parity), "{case}");
    }
}

#[test]
fn freshness_is_the_age_the_sampling_instance_reports() {
    let c = data_cluster(json!({"enabled": true}));
    let pvcs = [data_pvc("pg-1", "10Gi", "10Gi")];
    let aged = |age: f64| {
        let mut r = healthy(stats(10 * GI, 90));
        r.age_seconds = Some(age);
        decide_all(&c, &pvcs, &[("pg-1", r)]).remove(0)
    };
    assert_eq!(aged(2.9).action, Action::Resize);
    let stale = aged(3.5);
    assert_eq!(stale.reason, Some(Reason::NoStatus));
    assert!(stale.message.contains("3.5s old"), "{}", stale.message);
}

#[test]
fn a_refused_expansion_blocks_until_the_request_changes() {
    let c = with_events(
        data_cluster(json!({"enabled": true})),
        json!([event(
            "2026-11-26T11:00:00Z",
            "pg-1",
            "10Gi",
            "12Gi",
            "success"
        )]),
    );
    for (state, condition) in [
        ("ControllerResizeInfeasible", "ControllerResizeError"),
        ("NodeResizeInfeasible", "NodeResizeError"),
        ("ControllerResizeFailed", "ControllerResizeError"),
    ] {
        let refused = with_status(
            data_pvc("pg-1", "12Gi", "10Gi"),
            json!({"allocatedResourceStatuses": {"storage": state},
                   "conditions": [{"type": condition, "status": "True", "message": "quota exceeded for disk type"}]}),
        );
        let d = decide_all(&c, &[refused], &[("pg-1", healthy(stats(10 * GI, 95)))]).remove(0);
        assert_eq!(
            (d.action, d.reason),
            (Action::Blocked, Some(Reason::ExpansionFailed)),
            "{state}: before resize_in_progress"
        );
        assert!(d.stuck);
        assert!(
            d.message.contains("quota exceeded for disk type"),
            "{}",
            d.message
        );
        let refusal = d.refusal.unwrap();
        assert_eq!(
            refusal.record.unwrap().new_size,
            "12Gi",
            "our record of it, to mark failed"
        );
    }
}

#[test]
fn inode_and_forecast_triggers_are_strict_and_named() {
    let c = data_cluster(
        json!({"enabled": true, "triggers": {"inodeUsageThreshold": 90, "timeToFull": "10m"}}),
    );
    let pvcs = [data_pvc("pg-1", "10Gi", "10Gi")];
    let with = |inodes_used: u64, growth: Option<f64>| {
        let mut s = stats(10 * GI, 50);
        s.inodes_total = 1000;
        s.inodes_used = inodes_used;
        s.inodes_free = 1000 - inodes_used;
        s.growth_bytes_per_second = growth;
        decide_all(&c, &pvcs, &[("pg-1", healthy(s))]).remove(0)
    };
    let d = with(901, None);
    assert_eq!(
        (d.action, d.trigger),
        (Action::Resize, Some(Trigger::Inodes))
    );
    assert_eq!(with(900, None).reason, Some(Reason::NotTriggered), "strict");
    // 5 GiB available: full in 512s at 10 MiB/s (< 600s), in 1024s at 5 MiB/s.
    let d = with(0, Some(10.0 * MI as f64));
    assert_eq!(
        (d.action, d.trigger),
        (Action::Resize, Some(Trigger::Forecast)),
        "{}",
        d.message
    );
    let d = with(0, Some(5.0 * MI as f64));
    assert_eq!(d.reason, Some(Reason::NotTriggered));
    assert!(d.message.contains("full in"), "{}", d.message);
    assert_eq!(
        with(0, None).reason,
        Some(Reason::NotTriggered),
        "no forecast, no trigger"
    );
    // Usage wins when several fire.
    let mut s = stats(10 * GI, 95);
    s.inodes_total = 1000;
    s.inodes_used = 999;
    let d = decide_all(&c, &pvcs, &[("pg-1", healthy(s))]).remove(0);
    assert_eq!(d.trigger, Some(Trigger::Usage));
}

#[test]
fn horizon_sizes_the_step_from_the_forecast_within_max_step() {
    let c =
        data_cluster(json!({"enabled": true, "expansion": {"horizon": "1h", "maxStep": "50Gi"}}));
    let pvcs = [data_pvc("pg-1", "10Gi", "10Gi")];
    let grow = |rate: Option<f64>| {
        let mut s = stats(10 * GI, 90);
        s.growth_bytes_per_second = rate;
        // An hour of history: the 1h horizon counts in full.
        s.history_seconds = Some(3600.0);
        decide_all(&c, &pvcs, &[("pg-1", healthy(s))])
            .remove(0)
            .new_size
    };
    // 20% of 10Gi = 2Gi beats 100 KiB/s over an hour (~351Mi).
    assert_eq!(grow(Some(102_400.0)), Some(12 * GI));
    // 1 MiB/s over an hour = 3600Mi: more than 2Gi.
    assert_eq!(grow(Some(MI as f64)), Some(10 * GI + 3600 * MI));
    // 100 MiB/s over an hour is capped by maxStep.
    assert_eq!(grow(Some(100.0 * MI as f64)), Some(60 * GI));
    assert_eq!(grow(None), Some(12 * GI), "no forecast: the step alone");
}

/// `horizon: 24h` and a 5-minute burst of 50 MB/s: the horizon term is
/// `growthBytesPerSecond × min(horizon, 4 × historySeconds)`, so the step
/// buys 20 minutes of the burst, not a day; a day of steady growth still
/// buys the whole horizon. Figures as a report carries them (JSON).
#[test]
fn a_short_burst_buys_four_times_its_history_not_the_horizon() {
    let c = data_cluster(json!({"enabled": true, "expansion": {"step": "5Gi", "horizon": "24h"}}));
    let pvcs = [data_pvc("pg-1", "100Gi", "100Gi")];
    let grow = |rate: f64, history: Option<f64>| {
        let s: VolumeStats = serde_json::from_value(json!({
            "totalBytes": 100 * GI, "usedBytes": 85 * GI, "availableBytes": 15 * GI,
            "growthBytesPerSecond": rate, "historySeconds": history,
        }))
        .unwrap();
        let d = decide_all(&c, &pvcs, &[("pg-1", healthy(s))]).remove(0);
        assert_eq!(d.action, Action::Resize, "{}", d.message);
        d.new_size
    };
    // The burst: 50 MB/s seen for 300 s -> 1200 s of it = 60 GB = 57220.46Mi,
    // rounded up to the MiB (not 24 h of it capped at maxStep 500Gi).
    assert_eq!(grow(50e6, Some(300.0)), Some(100 * GI + 57_221 * MI));
    // Ten minutes of history: forty minutes of the rate.
    assert_eq!(grow(50e6, Some(600.0)), Some(100 * GI + 114_441 * MI));
    // A day of steady growth at 1 MiB/s: the whole horizon, 86400Mi.
    assert_eq!(
        grow(MI as f64, Some(86_400.0)),
        Some(100 * GI + 86_400 * MI)
    );
    // Six hours are enough for 24 h (4 x 6 h); one hour buys four.
    assert_eq!(
        grow(MI as f64, Some(21_600.0)),
        Some(100 * GI + 86_400 * MI)
    );
    assert_eq!(grow(MI as f64, Some(3_600.0)), Some(100 * GI + 14_400 * MI));
    // A rate without its history (a hand-written snapshot, an older peer)
    // counts as the shortest history a forecast has: 5 minutes, so 20
    // minutes of 1 MiB/s = 1200Mi, less than the 5Gi step.
    assert_eq!(grow(MI as f64, None), Some(105 * GI));
}

#[test]
fn horizon_never_cuts_an_absolute_step_larger_than_max_step() {
    // maxStep caps the forecast's growth, not the step the user wrote.
    let c = data_cluster(
        json!({"enabled": true, "expansion": {"step": "60Gi", "horizon": "1h", "maxStep": "50Gi"}}),
    );
    let pvcs = [data_pvc("pg-1", "10Gi", "10Gi")];
    let grow = |rate: f64| {
        let mut s = stats(10 * GI, 90);
        s.growth_bytes_per_second = Some(rate);
        s.history_seconds = Some(3600.0);
        decide_all(&c, &pvcs, &[("pg-1", healthy(s))])
            .remove(0)
            .new_size
    };
    assert_eq!(grow(MI as f64), Some(70 * GI), "the step beats 3600Mi");
    assert_eq!(
        grow(100.0 * MI as f64),
        Some(70 * GI),
        "351Gi of forecast, capped at 50Gi, is less than the step"
    );
}

#[test]
fn cooldown_blocks_a_second_resize_and_comes_before_the_budget() {
    let c = data_cluster(
        json!({"enabled": true, "strategy": {"cooldown": "1h", "maxActionsPerDay": 1}}),
    );
    let pvcs = [data_pvc("pg-1", "12Gi", "12Gi")];
    let after = |minutes: i64| {
        let at = now() - SignedDuration::from_mins(minutes);
        let ts = at.strftime("%Y-%m-%dT%H:%M:%SZ").to_string();
        let c = with_events(
            c.clone(),
            json!([event(&ts, "pg-1", "10Gi", "12Gi", "success")]),
        );
        decide_all(&c, &pvcs, &[("pg-1", healthy(stats(12 * GI, 95)))]).remove(0)
    };
    let d = after(30);
    assert_eq!(
        (d.action, d.reason),
        (Action::Blocked, Some(Reason::Cooldown)),
        "{}",
        d.message
    );
    assert_eq!(
        d.next_action_at,
        Some(now() + SignedDuration::from_mins(30))
    );
    // Past the cooldown, the budget of 1 is what blocks.
    assert_eq!(after(61).reason, Some(Reason::RateLimit));
}

#[test]
fn recommend_mode_reports_a_resize_it_does_not_execute() {
    let c = data_cluster(json!({"enabled": true, "strategy": {"mode": "Recommend"}}));
    let d = decide_all(
        &c,
        &[data_pvc("pg-1", "10Gi", "10Gi")],
        &[("pg-1", healthy(stats(10 * GI, 90)))],
    )
    .remove(0);
    assert_eq!(outcome(&d), (Action::Resize, None, Some(12 * GI)));
    assert_eq!(d.mode, crate::api::resize::Mode::Recommend);
    assert!(!d.executes());
    assert!(d.message.contains("Recommend"), "{}", d.message);
}

#[test]
fn cloudnativepg_ha_slots_never_block() {
    let wal =
        json!({"enabled": true, "strategy": {"walSafetyPolicy": {"maxSlotRetentionBytes": "1Gi"}}});
    let slot = |name: &str| InactiveSlot {
        slot_name: name.into(),
        retention_bytes: 10 * GI,
    };
    let health = |slots: Vec<InactiveSlot>| WalHealth {
        inactive_slots: slots,
        ..Default::default()
    };
    // pg-2 exists (its PVC): the slot CNPG keeps for it is CNPG's.
    let mut pg2 = pvc("pg-2-wal", "PG_WAL", "4Gi", "4Gi");
    pg2.metadata
        .labels
        .as_mut()
        .unwrap()
        .insert("cnpg.io/instanceName".into(), "pg-2".into());
    let c = cluster(json!({"enabled": false}), Some(wal.clone()));
    let decide_wal_in = |c: &Cluster, slots| {
        run(
            c,
            &[pvc("pg-1-wal", "PG_WAL", "4Gi", "4Gi"), pg2.clone()],
            Some(report(None, Some(stats(4 * GI, 90)), Some(health(slots)))),
        )
        .remove(0)
    };
    let d = decide_wal_in(&c, vec![slot("_cnpg_pg_2")]);
    assert_eq!(d.action, Action::Resize, "{}", d.message);
    let d = decide_wal_in(&c, vec![slot("_cnpg_pg_2"), slot("abandoned")]);
    assert_eq!(d.reason, Some(Reason::SlotRetentionExceeded));
    assert!(d.message.contains("abandoned"), "{}", d.message);

    // The cluster's own prefix counts, not the default.
    let mut c = c;
    c.spec.replication_slots =
        Some(serde_json::from_value(json!({"highAvailability": {"slotPrefix": "_ha_"}})).unwrap());
    let decide_wal = |slots| decide_wal_in(&c, slots);
    assert_eq!(decide_wal(vec![slot("_ha_pg_2")]).action, Action::Resize);
    assert_eq!(
        decide_wal(vec![slot("_cnpg_pg_2")]).reason,
        Some(Reason::SlotRetentionExceeded)
    );
}

#[test]
fn foreign_data_affects_only_what_needs_it() {
    // The Go implementation's null timestamps, pruned by the CRD, an
    // unreadable diskStatus, and a resize block of the wrong shape: the
    // Cluster still reads.
    let c: Cluster = serde_json::from_value(json!({
        "apiVersion": "postgresql.cnpg.io/v1", "kind": "Cluster", "metadata": {"name": "pg"},
        "spec": {"storage": {"size": "10Gi", "resize": {"enabled": true}},
                 "walStorage": {"size": "4Gi", "resize": {"enabled": true, "triggers": {"usageThreshold": "80"}}}},
        "status": {"autoResizeEvents": [{"pvcName": "pg-1", "volumeType": "data", "previousSize": "8Gi",
                                          "newSize": "10Gi", "result": "success", "instanceName": "pg-1"}],
                   "diskStatus": "not an object", "phase": "Cluster in healthy state"},
    }))
    .unwrap();
    assert!(c.disk_status().is_none());
    assert_eq!(c.status_events().len(), 1);
    assert!(c.events().is_empty());
    let pvcs = [
        pvc("pg-1", "PG_DATA", "10Gi", "10Gi"),
        pvc("pg-1-wal", "PG_WAL", "4Gi", "4Gi"),
    ];
    let d = run(
        &c,
        &pvcs,
        Some(report(
            Some(stats(10 * GI, 90)),
            Some(stats(4 * GI, 90)),
            Some(WalHealth::default()),
        )),
    );
    assert_eq!(d[0].action, Action::Resize, "{}", d[0].message);
    assert_eq!(
        d[0].budget_remaining,
        Some(3),
        "the unreadable entry counts toward no budget"
    );
    assert_eq!(
        (d[1].action, d[1].reason),
        (Action::Blocked, Some(Reason::InvalidConfig))
    );
    assert!(
        d[1].message.contains("spec.walStorage.resize") && d[1].message.contains("usageThreshold"),
        "{}",
        d[1].message
    );
}

#[test]
fn an_unreadable_record_on_one_pvc_blocks_only_that_pvc() {
    let c = data_cluster(json!({"enabled": true}));
    let mut broken = data_pvc("pg-1", "10Gi", "10Gi");
    broken.metadata.annotations = Some(BTreeMap::from([(
        journal::PVC_EVENTS_ANNOTATION.to_string(),
        "{not json".to_string(),
    )]));
    let reports = [
        ("pg-1", healthy(stats(10 * GI, 90))),
        ("pg-2", healthy(stats(10 * GI, 90))),
    ];
    let d = decide_all(&c, &[broken, data_pvc("pg-2", "10Gi", "10Gi")], &reports);
    assert_eq!(
        (d[0].action, d[0].reason),
        (Action::Blocked, Some(Reason::InvalidConfig))
    );
    assert!(
        d[0].message.contains("budget is unknown"),
        "{}",
        d[0].message
    );
    assert_eq!(d[1].action, Action::Resize);
}

#[test]
fn records_on_the_pvc_count_even_when_the_mirror_lost_them() {
    let c = data_cluster(json!({"enabled": true, "strategy": {"maxActionsPerDay": 1}}));
    let mut p = data_pvc("pg-1", "12Gi", "12Gi");
    let record = json!([{"timestamp": "2026-11-26T10:00:00Z", "instanceName": "pg-1", "pvcName": "pg-1",
        "volumeType": "data", "previousSize": "10Gi", "newSize": "12Gi", "result": "success", "trigger": "usage"}]);
    p.metadata.annotations = Some(BTreeMap::from([(
        journal::PVC_EVENTS_ANNOTATION.to_string(),
        record.to_string(),
    )]));
    let d = decide_all(&c, &[p], &[("pg-1", healthy(stats(12 * GI, 95)))]).remove(0);
    assert_eq!(d.reason, Some(Reason::RateLimit));
}

#[test]
fn a_policy_is_the_only_source_when_it_targets_the_cluster() {
    let c = cluster(
        json!({"enabled": true, "expansion": {"step": "1Gi"}}),
        Some(json!({"enabled": false})),
    );
    let policy: crate::api::policy::AutoResizePolicy = serde_json::from_value(json!({
        "apiVersion": "autoresize.cnpg.io/v1alpha1", "kind": "AutoResizePolicy",
        "metadata": {"name": "pg"},
        "spec": {"cluster": "pg", "storage": {"resize": {"enabled": true, "expansion": {"step": "5Gi"},
                                                          "strategy": {"maxActionsPerDay": 1}}}},
        "status": {"autoResizeEvents": [{"timestamp": "2026-11-26T11:00:00Z", "instanceName": "pg-1", "pvcName": "pg-2",
            "volumeType": "data", "previousSize": "5Gi", "newSize": "10Gi", "result": "success"}]},
    }))
    .unwrap();
    let pvcs = [
        data_pvc("pg-1", "10Gi", "10Gi"),
        data_pvc("pg-2", "10Gi", "10Gi"),
    ];
    let instances = BTreeMap::from([
        ("pg-1".to_string(), healthy(stats(10 * GI, 90))),
        ("pg-2".to_string(), healthy(stats(10 * GI, 90))),
    ]);
    let d = decide(&PlanInput {
        source: Source {
            cluster: &c,
            policy: Some(&policy),
        },
        pvcs: &pvcs,
        instances: &instances,
        pods: Pods::Unknown,
        now: now(),
        settings: EngineSettings::default(),
    });
    assert_eq!(
        outcome(&d[0]),
        (Action::Resize, None, Some(15 * GI)),
        "the policy's step"
    );
    assert_eq!(
        d[1].reason,
        Some(Reason::RateLimit),
        "the policy's status is the journal"
    );
}
