//! CloudNativePG as users run it. Upstream's
//! Cluster CRD has no `resize` blocks (the sandbox prunes them like a real
//! API server): an AutoResizePolicy configures the cluster and receives the
//! journal, the disk status and conditions. And a replica that CNPG rebuilds
//! from `spec.storage.size` grows to its peers' size before its manager runs.

use crate::common::*;
use cnpg_testbed::cluster::VolumeRole;
use cnpg_testbed::scenario::{ManagerOptions, Scenario};
use serde_json::{json, Value};
use std::time::Duration;

fn successes(events: &[Value], pvc: &str) -> usize {
    events
        .iter()
        .filter(|e| e["pvcName"] == pvc && e["result"] == "success")
        .count()
}

async fn policy_events(env: &Env, policy: &str) -> Vec<Value> {
    env.policy_status(policy).await["autoResizeEvents"]
        .as_array()
        .cloned()
        .unwrap_or_default()
}

/// On upstream CloudNativePG the Cluster's `resize` blocks are pruned away
/// and ignored; a policy makes both instances' data volumes grow, records the
/// resizes in its status, and its budget of one resize a day holds across
/// manager restarts (growth.rs and durability.rs, through a policy).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_policy_drives_upstream_cloudnativepg() {
    let env = Env::start_with_crd(
        // Written into the Cluster, as a user migrating from the fork might.
        data_volume_cluster(
            128 * MIB,
            json!({"enabled": true, "expansion": {"step": "1Gi"}}),
        )
        .instances(2),
        ManagerOptions::default(),
        upstream_cluster_crd(),
    )
    .await;
    let cluster = env.scenario.clusters().get("pg").await.unwrap();
    assert!(
        cluster.data["spec"]["storage"].get("resize").is_none(),
        "upstream's CRD prunes resize: {}",
        cluster.data["spec"]
    );
    env.create_policy(
        "pg",
        json!({"cluster": "pg", "walStorage": {}, "storage": {"resize": {"enabled": true,
            "expansion": {"step": "64Mi", "limit": "1Gi"}, "strategy": {"maxActionsPerDay": 1}}}}),
    )
    .await;
    // pg-1 crosses; pg-2, smaller than its peer, follows by size parity.
    env.scenario.instances[0]
        .data()
        .volume
        .fill_to_percent(85.0)
        .unwrap();
    env.wait_request("pg-1", 192 * MIB, secs(30)).await;
    env.wait_request("pg-2", 192 * MIB, secs(30)).await;
    wait_until("both resizes in the policy's status", secs(20), || async {
        let events = policy_events(&env, "pg").await;
        (successes(&events, "pg-1") == 1 && successes(&events, "pg-2") == 1)
            .then_some(())
            .ok_or(format!("{events:?}"))
    })
    .await;
    let status = env.policy_status("pg").await;
    let ready = status["conditions"]
        .as_array()
        .and_then(|c| c.iter().find(|c| c["type"] == "Ready"))
        .cloned()
        .unwrap_or_default();
    assert_eq!(ready["status"], "True", "{status}");
    assert!(
        status["diskStatus"]["instances"]["pg-1"]["dataVolume"]["totalBytes"].is_u64(),
        "{status}"
    );
    assert!(status["lastResizeTime"].is_string(), "{status}");
    env.wait_kube_event("AutoResizeSuccess", secs(10)).await;

    // The budget through the policy: pg-1's second crossing is rate
    // limited, still after every manager restarts. (pg-2 is not filled: its
    // growth was a parity grow, which used none of its budget.)
    let data = env.scenario.instances[0].data().volume.clone();
    wait_grown(&data, 192 * MIB).await;
    data.fill_to_percent(90.0).unwrap();
    env.wait_blocked(0, "data", "rate_limit", secs(20)).await;
    for n in 0..2 {
        env.crash(n).await;
    }
    env.wait_leader(secs(15)).await;
    env.wait_blocked(0, "data", "rate_limit", secs(30)).await;
    env.hold_request("pg-1", 192 * MIB, 3).await;
    assert_eq!(successes(&policy_events(&env, "pg").await, "pg-1"), 1);
    let blocked = env.policy_status("pg").await["conditions"]
        .as_array()
        .and_then(|c| c.iter().find(|c| c["type"] == "Blocked").cloned())
        .unwrap_or_default();
    assert_eq!(blocked["status"], "True", "{blocked}");
    // The Cluster's status holds nothing of ours: upstream's CRD has no place.
    let cluster_status = env.status().await;
    assert!(
        cluster_status.get("autoResizeEvents").is_none(),
        "{cluster_status}"
    );
}

/// WAL volumes through the policy (growth.rs and wal_safety.rs): one grows;
/// with archiving failing another is refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_policy_guards_wal_volumes_on_upstream_cloudnativepg() {
    let env = Env::start_with_crd(
        Scenario::builder("pg")
            .instances(2)
            .data(128 * MIB, json!({"enabled": false}))
            .wal(128 * MIB, json!({"enabled": false}))
            .spec(json!({"backup": {"barmanObjectStore": {"destinationPath": "s3://backups"}}})),
        ManagerOptions::default(),
        upstream_cluster_crd(),
    )
    .await;
    env.create_policy(
        "pg",
        json!({"cluster": "pg", "walStorage": {"resize": {"enabled": true, "expansion": {"step": "64Mi"}}}}),
    )
    .await;
    let wal = |n: usize| {
        env.scenario.instances[n]
            .volume(&VolumeRole::Wal)
            .unwrap()
            .volume
            .clone()
    };
    // Archiving fails on the primary: its WAL volume is refused.
    let primary = env.scenario.server("pg-1").unwrap();
    primary.set_archive_failing(true).unwrap();
    primary.generate_wal(1 << 20).await.unwrap();
    wait_until("archiving seen failing", secs(30), || async {
        let text = env.metrics(0).await;
        (metric(&text, "cnpg_wal_archive_healthy", &[]) == Some(0.0))
            .then_some(())
            .ok_or(text)
    })
    .await;
    wal(0).fill_to_percent(85.0).unwrap();
    env.wait_blocked(0, "wal", "archive_unhealthy", secs(30))
        .await;
    env.hold_request("pg-1-wal", 128 * MIB, 2).await;
    assert!(policy_events(&env, "pg").await.is_empty());
    // Once archiving works again, the WAL volume grows.
    primary.set_archive_failing(false).unwrap();
    primary.generate_wal(1 << 20).await.unwrap();
    env.wait_request("pg-1-wal", 192 * MIB, secs(60)).await;
    wait_until(
        "the WAL resize in the policy's status",
        secs(20),
        || async {
            let events = policy_events(&env, "pg").await;
            (successes(&events, "pg-1-wal") == 1 && events[0]["volumeType"] == "wal")
                .then_some(())
                .ok_or(format!("{events:?}"))
        },
    )
    .await;
}

/// A second policy for one cluster is refused (condition and event); the
/// older one keeps governing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_policy_for_one_cluster_is_refused() {
    let env = Env::start_with_crd(
        data_volume_cluster(128 * MIB, json!({"enabled": false})),
        ManagerOptions::default(),
        upstream_cluster_crd(),
    )
    .await;
    env.create_policy(
        "first",
        json!({"cluster": "pg", "walStorage": {}, "storage": {"resize": {"enabled": true, "expansion": {"step": "32Mi"}}}}),
    )
    .await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    env.create_policy(
        "second",
        json!({"cluster": "pg", "walStorage": {}, "storage": {"resize": {"enabled": true, "expansion": {"step": "1Gi"}}}}),
    )
    .await;
    wait_until("the second policy refused", secs(30), || async {
        let status = env.policy_status("second").await;
        let ready = status["conditions"]
            .as_array()
            .and_then(|c| c.iter().find(|c| c["type"] == "Ready").cloned())
            .unwrap_or_default();
        (ready["status"] == "False" && ready["reason"] == "DuplicatePolicy")
            .then_some(())
            .ok_or(status.to_string())
    })
    .await;
    env.wait_kube_event("AutoResizeDuplicatePolicy", secs(10))
        .await;
    // It is about the policy alone: no related PVC (not one without a name).
    let events: kube::Api<k8s_openapi::api::events::v1::Event> =
        kube::Api::namespaced(env.scenario.client.clone(), &env.scenario.namespace);
    let duplicate = events
        .list(&Default::default())
        .await
        .unwrap()
        .items
        .into_iter()
        .find(|e| e.reason.as_deref() == Some("AutoResizeDuplicatePolicy"))
        .unwrap();
    assert_eq!(duplicate.related, None, "{duplicate:?}");
    assert_eq!(
        duplicate.regarding.and_then(|r| r.name).as_deref(),
        Some("second")
    );
    env.scenario.instances[0]
        .data()
        .volume
        .fill_to_percent(85.0)
        .unwrap();
    env.wait_request("pg-1", 160 * MIB, secs(30)).await;
}

/// After the data volumes grew, CloudNativePG rebuilds a
/// replica with a PVC of `spec.storage.size`; the leader grows it to its
/// peers' size at once (warning size_parity, trigger parity, no budget),
/// so the base backup of the grown database fits, before the replica's own
/// manager exists.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rebuilt_replica_grows_to_its_peers_size_before_its_manager_starts() {
    // Through a policy: its status keeps each record's trigger (the fork's
    // CRD prunes it, so there a recreated PVC's earlier parity grows count).
    let mut env = Env::start_with_crd(
        Scenario::builder("pg")
            .instances(2)
            .data(96 * MIB, json!({"enabled": false}))
            .wal(256 * MIB, json!({"enabled": false})),
        ManagerOptions::default(),
        upstream_cluster_crd(),
    )
    .await;
    env.create_policy(
        "pg",
        json!({"cluster": "pg", "walStorage": {}, "storage": {"resize": {"enabled": true,
            "expansion": {"step": "96Mi"}, "strategy": {"maxActionsPerDay": 3}}}}),
    )
    .await;
    for n in 0..2 {
        env.scenario.instances[n]
            .data()
            .volume
            .fill_to_percent(82.0)
            .unwrap();
    }
    env.wait_request("pg-1", 192 * MIB, secs(40)).await;
    env.wait_request("pg-2", 192 * MIB, secs(40)).await;
    for n in 0..2 {
        wait_grown(&env.scenario.instances[n].data().volume, 192 * MIB).await;
        env.scenario.instances[n]
            .data()
            .volume
            .clear_fill()
            .unwrap();
    }
    // The database grows past what a fresh 96Mi volume holds.
    let client = env
        .scenario
        .server("pg-1")
        .unwrap()
        .connect()
        .await
        .unwrap();
    client
        .batch_execute(
            // ~1 KB rows stay below TOAST's threshold: stored as written, not compressed.
            "CREATE TABLE big AS SELECT repeat(md5(i::text), 30) AS filler FROM generate_series(1, 80000) i; CHECKPOINT",
        )
        .await
        .unwrap();
    let budget = |text: &str| {
        metric(
            text,
            "cnpg_disk_resize_budget_remaining",
            &[("volume_type", "data")],
        )
    };
    let before = budget(&env.metrics(1).await).expect("pg-2's budget");

    // CloudNativePG rebuilds pg-2: its manager is gone until the base backup is done.
    let report = env
        .scenario
        .rebuild_replica("pg-2")
        .await
        .expect("the replica joins");
    // Whether the first base backup runs out of space depends on who is
    // quicker: the leader's parity grow or CloudNativePG's first attempt.
    // Either way the replica joins only on a grown volume, grown before its
    // own manager could start: the parity record precedes the join.
    let joined = report
        .attempts
        .last()
        .filter(|a| a.error.is_none())
        .unwrap_or_else(|| panic!("the last attempt joined: {:?}", report.attempts))
        .at;
    assert_eq!(env.requested("pg-2").await, 192 * MIB);
    let pvc = env.scenario.pvcs().get("pg-2").await.unwrap();
    let record = pvc.metadata.annotations.unwrap_or_default()["autoresize.cnpg.io/events"].clone();
    let records: Vec<Value> = serde_json::from_str(&record).unwrap();
    let parity = records
        .iter()
        .find(|r| r["trigger"] == "parity")
        .unwrap_or_else(|| panic!("a parity record: {record}"));
    let grown_at: jiff::Timestamp = parity["timestamp"].as_str().unwrap().parse().unwrap();
    // The record's timestamp is rounded to the second: so is the join's.
    let joined = joined.round(jiff::Unit::Second).unwrap();
    assert!(
        grown_at <= joined,
        "grown at {grown_at}, joined at {joined}: {:?}",
        report.attempts
    );
    // No budget used by the parity grow.
    env.wait_metric(
        1,
        "cnpg_disk_resize_budget_remaining",
        &[("volume_type", "data")],
        before,
        secs(30),
    )
    .await;
    let rows: i64 = env
        .scenario
        .server("pg-2")
        .unwrap()
        .connect()
        .await
        .unwrap()
        .query_one("SELECT count(*) FROM big", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(rows, 80000, "the replica holds the whole database");
}
