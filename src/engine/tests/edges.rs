//! Table tests for the rules at their edges: size parity copies what the
//! storage delivered and is a write like any other (rule 1), and
//! CloudNativePG's slots are exempt only while they are CNPG's (rule 9).

use super::*;

const MI: u64 = 1 << 20;

/// A Bound PVC of instance `instance` with `role`, labelled as CNPG does.
fn claim(instance: &str, role: &str, request: &str, capacity: &str) -> PersistentVolumeClaim {
    let name = match role {
        "PG_WAL" => format!("{instance}-wal"),
        _ => instance.to_string(),
    };
    serde_json::from_value(json!({
        "metadata": {"name": name, "labels": {
            "cnpg.io/cluster": "pg", "cnpg.io/instanceName": instance, "cnpg.io/pvcRole": role}},
        "spec": {"resources": {"requests": {"storage": request}}},
        "status": {"phase": "Bound", "capacity": {"storage": capacity}},
    }))
    .unwrap()
}

fn refused(mut p: PersistentVolumeClaim, state: &str) -> PersistentVolumeClaim {
    let mut s = serde_json::to_value(p.status.take().unwrap()).unwrap();
    s["allocatedResourceStatuses"] = json!({"storage": state});
    p.status = Some(serde_json::from_value(s).unwrap());
    p
}

fn decide_in(
    c: &Cluster,
    pvcs: &[PersistentVolumeClaim],
    reports: &[(&str, InstanceReport)],
    pods: Pods,
) -> Vec<Decision> {
    let instances: BTreeMap<String, InstanceReport> = reports
        .iter()
        .map(|(pod, r)| (pod.to_string(), r.clone()))
        .collect();
    decide(&PlanInput {
        source: Source::fork(c),
        pvcs,
        instances: &instances,
        pods,
        now: now(),
        settings: EngineSettings::default(),
    })
}

fn of<'d>(d: &'d [Decision], pvc: &str) -> &'d Decision {
    d.iter().find(|d| d.volume.pvc == pvc).unwrap()
}

fn data_report(total: u64, used_pct: u64) -> InstanceReport {
    report(
        Some(stats(total, used_pct)),
        None,
        Some(WalHealth::default()),
    )
}

#[test]
fn parity_copies_the_largest_capacity_never_a_refused_or_pending_request() {
    let c = cluster(json!({"enabled": true}), Some(json!({"enabled": false})));
    let reports = [
        ("pg-1", data_report(10 * GI, 50)),
        ("pg-2", data_report(10 * GI, 50)),
    ];
    // The storage refused pg-1's expansion to 12Gi: it still has 10Gi.
    let pvcs = [
        refused(
            claim("pg-1", "PG_DATA", "12Gi", "10Gi"),
            "ControllerResizeInfeasible",
        ),
        claim("pg-2", "PG_DATA", "10Gi", "10Gi"),
    ];
    let d = decide_in(&c, &pvcs, &reports, Pods::Unknown);
    let pg2 = of(&d, "pg-2");
    assert_eq!(
        (pg2.action, pg2.reason),
        (Action::None, Some(Reason::NotTriggered)),
        "{}",
        pg2.message
    );
    assert_eq!(of(&d, "pg-1").reason, Some(Reason::ExpansionFailed));

    // A human lowers the refused request to 11Gi to recover (allowed since
    // 1.34); the resizer works on it. Parity raises neither PVC to 11 or 12.
    let lowered = [
        refused(
            claim("pg-1", "PG_DATA", "11Gi", "10Gi"),
            "ControllerResizeInProgress",
        ),
        claim("pg-2", "PG_DATA", "10Gi", "10Gi"),
    ];
    let d = decide_in(&c, &lowered, &reports, Pods::Unknown);
    assert_eq!(of(&d, "pg-2").reason, Some(Reason::NotTriggered));
    let pg1 = of(&d, "pg-1");
    assert_eq!(
        (pg1.action, pg1.reason),
        (Action::None, Some(Reason::ResizeInProgress)),
        "{}",
        pg1.message
    );

    // Once the storage delivered 11Gi, the sibling follows.
    let delivered = [
        claim("pg-1", "PG_DATA", "11Gi", "11Gi"),
        claim("pg-2", "PG_DATA", "10Gi", "10Gi"),
    ];
    let d = decide_in(&c, &delivered, &reports, Pods::Unknown);
    let pg2 = of(&d, "pg-2");
    assert_eq!(
        (pg2.action, pg2.new_size, pg2.trigger),
        (Action::Resize, Some(11 * GI), Some(Trigger::Parity)),
        "{}",
        pg2.message
    );

    // A sibling that is not Bound has no capacity to copy.
    let mut unbound = claim("pg-1", "PG_DATA", "12Gi", "12Gi");
    unbound.status.as_mut().unwrap().phase = Some("Pending".into());
    let d = decide_in(
        &c,
        &[unbound, claim("pg-2", "PG_DATA", "10Gi", "10Gi")],
        &reports,
        Pods::Unknown,
    );
    assert_eq!(of(&d, "pg-2").reason, Some(Reason::NotTriggered));
}

#[test]
fn parity_is_a_write_like_any_other() {
    let pvcs = [
        claim("pg-1", "PG_DATA", "96Mi", "96Mi"),
        claim("pg-2", "PG_DATA", "64Mi", "64Mi"),
    ];
    let decide_pg2 = |resize: Value| {
        let c = cluster(resize, Some(json!({"enabled": false})));
        of(&decide_in(&c, &pvcs, &[], Pods::Unknown), "pg-2").clone()
    };
    // maxActionsPerDay: 0 disables auto-resize, parity included.
    let d = decide_pg2(json!({"enabled": true, "strategy": {"maxActionsPerDay": 0}}));
    assert_eq!(
        (d.action, d.reason, d.new_size),
        (Action::Blocked, Some(Reason::RateLimit), None),
        "{}",
        d.message
    );
    assert!(d.message.contains("parity"), "{}", d.message);
    // Recommend reports the parity grow and patches nothing.
    let d = decide_pg2(json!({"enabled": true, "strategy": {"mode": "Recommend"}}));
    assert_eq!((d.action, d.new_size), (Action::Resize, Some(96 * MI)));
    assert_eq!(d.trigger, Some(Trigger::Parity));
    assert!(!d.executes());
    assert!(d.message.contains("Recommend"), "{}", d.message);
    // enabled: false: no decision at all.
    let c = cluster(json!({"enabled": false}), Some(json!({"enabled": false})));
    assert!(decide_in(&c, &pvcs, &[], Pods::Unknown).is_empty());
}

/// A WAL-volume cluster of instances pg-1 and pg-2 that blocks on 1Gi of
/// inactive slot retention; `slots` is merged into `spec.replicationSlots`.
fn slot_cluster(slots: Value) -> Cluster {
    let mut c = cluster(
        json!({"enabled": false}),
        Some(json!({"enabled": true,
            "strategy": {"walSafetyPolicy": {"maxSlotRetentionBytes": "1Gi"}}})),
    );
    if !slots.is_null() {
        c.spec.replication_slots = Some(serde_json::from_value(slots).unwrap());
    }
    c
}

fn wal_pvcs() -> Vec<PersistentVolumeClaim> {
    ["pg-1", "pg-2"]
        .iter()
        .map(|i| claim(i, "PG_WAL", "4Gi", "4Gi"))
        .collect()
}

/// Instance `on`'s WAL decision with one inactive slot retaining 10Gi.
fn wal_with_slot(
    c: &Cluster,
    on: &str,
    in_recovery: Option<bool>,
    slot: &str,
    pods: Pods,
) -> Decision {
    let health = WalHealth {
        inactive_slots: vec![InactiveSlot {
            slot_name: slot.into(),
            retention_bytes: 10 * GI,
        }],
        in_recovery,
        ..Default::default()
    };
    let r = report(None, Some(stats(4 * GI, 90)), Some(health));
    of(
        &decide_in(c, &wal_pvcs(), &[(on, r)], pods),
        &format!("{on}-wal"),
    )
    .clone()
}

fn pods(present: &[&str], gone: &[(&str, i64)]) -> Pods {
    Pods::Known {
        present: present.iter().map(|p| p.to_string()).collect(),
        gone_since: gone
            .iter()
            .map(|(p, mins)| (p.to_string(), now() - SignedDuration::from_mins(*mins)))
            .collect(),
    }
}

#[test]
fn an_ha_slot_is_cnpgs_only_while_its_instance_exists() {
    let c = slot_cluster(Value::Null);
    // The primary holds a slot for pg-9, which no longer exists: it holds
    // WAL for nobody and blocks like any other slot.
    let d = wal_with_slot(&c, "pg-1", Some(false), "_cnpg_pg_9", Pods::Unknown);
    assert_eq!(
        d.reason,
        Some(Reason::SlotRetentionExceeded),
        "{}",
        d.message
    );
    assert!(d.message.contains("_cnpg_pg_9"), "{}", d.message);
    // ... on a standby too.
    let d = wal_with_slot(&c, "pg-2", Some(true), "_cnpg_pg_9", Pods::Unknown);
    assert_eq!(
        d.reason,
        Some(Reason::SlotRetentionExceeded),
        "{}",
        d.message
    );
    // pg-2 exists (its PVC): its slot is CNPG's, unknown recovery = primary.
    for in_recovery in [Some(false), None] {
        let d = wal_with_slot(&c, "pg-1", in_recovery, "_cnpg_pg_2", Pods::Unknown);
        assert_eq!(d.action, Action::Resize, "{}", d.message);
    }
}

#[test]
fn on_the_primary_an_ha_slot_outlives_its_pod_only_for_the_grace_period() {
    let c = slot_cluster(Value::Null);
    let on_primary = |pods| wal_with_slot(&c, "pg-1", Some(false), "_cnpg_pg_2", pods);
    let cases = [
        ("pg-2 has its pod", pods(&["pg-1", "pg-2"], &[]), None),
        (
            "pg-2 restarting for 10 min",
            pods(&["pg-1"], &[("pg-2", 10)]),
            None,
        ),
        (
            "pg-2 gone for 40 min",
            pods(&["pg-1"], &[("pg-2", 40)]),
            Some(Reason::SlotRetentionExceeded),
        ),
        (
            "pg-2 gone since before anyone knows",
            pods(&["pg-1"], &[]),
            Some(Reason::SlotRetentionExceeded),
        ),
    ];
    for (name, pods, reason) in cases {
        let d = on_primary(pods);
        assert_eq!(d.reason, reason, "{name}: {}", d.message);
    }
    // On a standby CNPG keeps and advances the copies: the pod does not matter.
    let d = wal_with_slot(&c, "pg-2", Some(true), "_cnpg_pg_1", pods(&["pg-2"], &[]));
    assert_eq!(d.action, Action::Resize, "{}", d.message);
}

#[test]
fn synchronised_user_slots_are_cnpgs_on_standbys_only() {
    let on = |c: &Cluster, in_recovery| {
        wal_with_slot(c, "pg-2", Some(in_recovery), "analytics_cdc", Pods::Unknown).reason
    };
    // synchronizeReplicas absent: CNPG's default is on.
    let default = slot_cluster(Value::Null);
    assert_eq!(on(&default, true), None, "a copy on a standby");
    assert_eq!(
        on(&default, false),
        Some(Reason::SlotRetentionExceeded),
        "the primary's own slot decides"
    );
    let off = slot_cluster(json!({"synchronizeReplicas": {"enabled": false}}));
    assert_eq!(on(&off, true), Some(Reason::SlotRetentionExceeded));
    let excluded = slot_cluster(
        json!({"synchronizeReplicas": {"enabled": true, "excludePatterns": ["^analytics_"]}}),
    );
    assert_eq!(
        on(&excluded, true),
        Some(Reason::SlotRetentionExceeded),
        "excluded slots are not copies"
    );
    let other = slot_cluster(
        json!({"synchronizeReplicas": {"enabled": true, "excludePatterns": ["^billing"]}}),
    );
    assert_eq!(on(&other, true), None);
}

#[test]
fn an_empty_slot_prefix_means_cnpgs_default() {
    let c = slot_cluster(json!({"highAvailability": {"slotPrefix": ""}}));
    let d = wal_with_slot(&c, "pg-1", Some(false), "_cnpg_pg_2", Pods::Unknown);
    assert_eq!(d.action, Action::Resize, "{}", d.message);
    let custom = slot_cluster(json!({"highAvailability": {"slotPrefix": "_ha_"}}));
    let d = wal_with_slot(&custom, "pg-1", Some(false), "_ha_pg_2", Pods::Unknown);
    assert_eq!(d.action, Action::Resize, "{}", d.message);
    let d = wal_with_slot(&custom, "pg-1", Some(false), "_cnpg_pg_2", Pods::Unknown);
    assert_eq!(d.reason, Some(Reason::SlotRetentionExceeded));
}

/// `pvc` with its request owned by `manager` (managedFields).
fn owned_by(mut p: PersistentVolumeClaim, manager: &str) -> PersistentVolumeClaim {
    p.metadata.managed_fields = Some(
        serde_json::from_value(json!([
            {"manager": "manager", "operation": "Update", "apiVersion": "v1",
             "fieldsType": "FieldsV1", "fieldsV1": {"f:metadata": {"f:labels": {"f:cnpg.io/cluster": {}}}}},
            {"manager": manager, "operation": "Update", "apiVersion": "v1",
             "fieldsType": "FieldsV1",
             "fieldsV1": {"f:spec": {"f:resources": {"f:requests": {"f:storage": {}}}}}},
            {"manager": "kubelet", "operation": "Update", "apiVersion": "v1", "subresource": "status",
             "fieldsType": "FieldsV1", "fieldsV1": {"f:status": {"f:capacity": {"f:storage": {}}}}},
        ]))
        .unwrap(),
    );
    p
}

#[test]
fn a_request_another_field_manager_raised_without_our_record_is_foreign() {
    // spec.storage.size is 10Gi: CloudNativePG creates the PVCs at 10Gi.
    let c = cluster(json!({"enabled": true}), Some(json!({"enabled": false})));
    let ours = json!([{"timestamp": "2026-11-26T11:00:00Z", "instanceName": "pg-1", "pvcName": "pg-1",
        "volumeType": "data", "previousSize": "10Gi", "newSize": "12Gi", "result": "success"}]);
    let with_record = with_events(c.clone(), ours);
    let foreign = |c: &Cluster, p: PersistentVolumeClaim| {
        let pvcs = [p];
        let source = Source::fork(c);
        let journal = journal::Journal::of(&source, &pvcs);
        foreign_resizes(&source, &pvcs, &journal)
    };
    let raised = || claim("pg-1", "PG_DATA", "12Gi", "12Gi");
    let found = foreign(&c, owned_by(raised(), "manager"));
    assert_eq!(
        found,
        vec![ForeignResize {
            pvc: "pg-1".into(),
            manager: "manager".into(),
            request: 12 * GI,
            created_at: 10 * GI,
        }]
    );
    let cases = [
        ("we set it", foreign(&c, owned_by(raised(), FIELD_MANAGER))),
        (
            "our record says 12Gi",
            foreign(&with_record, owned_by(raised(), "manager")),
        ),
        (
            "CloudNativePG created it at spec.storage.size",
            foreign(
                &c,
                owned_by(claim("pg-1", "PG_DATA", "10Gi", "10Gi"), "manager"),
            ),
        ),
        ("no managedFields: nothing known", foreign(&c, raised())),
    ];
    for (name, found) in cases {
        assert!(found.is_empty(), "{name}: {found:?}");
    }
    // A volume kind we do not govern is none of our business.
    let off = cluster(json!({"enabled": false}), Some(json!({"enabled": false})));
    assert!(foreign(&off, owned_by(raised(), "manager")).is_empty());
}
