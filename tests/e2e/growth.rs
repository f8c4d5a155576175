//! Volumes grow when they should, by what they should, and never past their
//! limit.

use crate::common::*;
use cnpg_testbed::cluster::VolumeRole;
use cnpg_testbed::scenario::Scenario;
use serde_json::json;

/// Data past 80% on both instances -> both data PVCs grow, the event is
/// persisted, an Event says so (and the seed's lost-events bug).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn data_volumes_of_every_instance_grow_and_the_resize_is_recorded() {
    let resize =
        json!({"enabled": true, "expansion": {"step": "20%", "minStep": "32Mi", "limit": "1Gi"}});
    let env = Env::start(
        Scenario::builder("pg")
            .instances(2)
            .data(128 * MIB, resize)
            .wal(128 * MIB, json!({"enabled": false})),
    )
    .await;
    for i in &env.scenario.instances {
        i.data().volume.fill_to_percent(85.0).unwrap();
    }
    // 20% of 128Mi is 25.6Mi, below minStep 32Mi -> 160Mi.
    env.wait_request("pg-1", 160 * MIB, secs(30)).await;
    env.wait_request("pg-2", 160 * MIB, secs(30)).await;
    wait_until("two persisted data events", secs(15), || async {
        let events = env.resize_events().await;
        let ok = events
            .iter()
            .filter(|e| e["result"] == "success" && e["volumeType"] == "data")
            .count();
        (ok == 2).then_some(()).ok_or(format!("{events:?}"))
    })
    .await;
    let events = env.resize_events().await;
    for pvc in ["pg-1", "pg-2"] {
        let e = events.iter().find(|e| e["pvcName"] == pvc).unwrap();
        assert_eq!(
            (e["previousSize"].as_str(), e["newSize"].as_str()),
            (Some("128Mi"), Some("160Mi"))
        );
        assert_eq!(e["instanceName"], pvc);
    }
    env.wait_kube_event("AutoResizeSuccess", secs(10)).await;
    // diskStatus shows both instances, with the grown filesystems.
    wait_until("diskStatus after the resize", secs(15), || async {
        let status = env.status().await;
        let sizes: Vec<_> = ["pg-1", "pg-2"]
            .iter()
            .map(|p| status["diskStatus"]["instances"][p]["dataVolume"]["totalBytes"].as_u64())
            .collect();
        sizes
            .iter()
            .all(|s| s.is_some())
            .then_some(())
            .ok_or(format!("{}", status["diskStatus"]))
    })
    .await;
    // One crossing, one resize: the grown volumes stay put.
    env.hold_request("pg-1", 160 * MIB, 2).await;
    assert_eq!(env.resize_events().await.len(), 2);
}

/// A separate WAL volume fills -> the WAL PVC grows.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wal_volume_grows() {
    let wal = json!({"enabled": true, "expansion": {"step": "64Mi", "limit": "1Gi"}});
    let env = Env::start(
        Scenario::builder("pg")
            .data(128 * MIB, json!({"enabled": false}))
            .wal(128 * MIB, wal),
    )
    .await;
    let volume = &env.scenario.instances[0]
        .volume(&VolumeRole::Wal)
        .unwrap()
        .volume;
    volume.fill_to_percent(85.0).unwrap();
    env.wait_request("pg-1-wal", 192 * MIB, secs(30)).await;
    let events = env.wait_resize_events().await;
    assert_eq!(events[0]["volumeType"], "wal");
    // A WAL volume grew and alertOnResize defaults to true.
    env.wait_kube_event("AutoResizeWALRisk", secs(10)).await;
}

/// Grows to the limit, never past; then at_limit (event + metric).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn limit_is_respected() {
    let resize =
        json!({"enabled": true, "expansion": {"step": "50%", "minStep": "1Mi", "limit": "160Mi"}});
    let env = Env::start(data_volume_cluster(128 * MIB, resize)).await;
    let data = &env.scenario.instances[0].data().volume;
    data.fill_to_percent(85.0).unwrap();
    // 50% would be 192Mi: capped at the limit.
    env.wait_request("pg-1", 160 * MIB, secs(30)).await;
    wait_grown(data, 160 * MIB).await;
    data.fill_to_percent(90.0).unwrap();
    env.wait_metric(
        0,
        "cnpg_disk_at_limit",
        &[("volume_type", "data")],
        1.0,
        secs(20),
    )
    .await;
    env.wait_blocked(0, "data", "at_limit", secs(10)).await;
    env.wait_kube_event("AutoResizeAtLimit", secs(10)).await;
    env.hold_request("pg-1", 160 * MIB, 2).await;
}

/// 5% of 2Gi clamped up to minStep 1Gi -> 3Gi.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn min_step_clamps_small_percentages_up() {
    let resize = json!({"enabled": true, "triggers": {"usageThreshold": 1},
        "expansion": {"step": "5%", "minStep": "1Gi"}, "strategy": {"maxActionsPerDay": 1}});
    let env = Env::start(data_volume_cluster(2 * GIB, resize)).await;
    env.scenario.instances[0]
        .data()
        .volume
        .fill_to_percent(2.0)
        .unwrap();
    env.wait_request("pg-1", 3 * GIB, secs(30)).await;
}

/// 10Gi with step 50% and maxStep 2Gi -> 12Gi, not 15Gi.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn max_step_clamps_large_percentages_down() {
    let resize = json!({"enabled": true, "triggers": {"usageThreshold": 1},
        "expansion": {"step": "50%", "maxStep": "2Gi"}, "strategy": {"maxActionsPerDay": 1}});
    let env = Env::start(data_volume_cluster(10 * GIB, resize)).await;
    env.scenario.instances[0]
        .data()
        .volume
        .fill_to_percent(1.5)
        .unwrap();
    env.wait_request("pg-1", 12 * GIB, secs(30)).await;
    env.hold_request("pg-1", 12 * GIB, 2).await;
}

/// minAvailable 300Mi alone triggers once less than 300Mi remains.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn min_available_alone_triggers() {
    let resize = json!({"enabled": true, "triggers": {"usageThreshold": 99, "minAvailable": "300Mi"},
        "expansion": {"step": "256Mi"}});
    let env = Env::start(data_volume_cluster(GIB, resize)).await;
    let data = &env.scenario.instances[0].data().volume;
    data.fill_to_percent(60.0).unwrap(); // ~410Mi available: nothing happens
    env.hold_request("pg-1", GIB, 2).await;
    data.fill_to_percent(75.0).unwrap(); // ~256Mi available: below 300Mi
    env.wait_request("pg-1", GIB + 256 * MIB, secs(30)).await;
}

/// A tablespace volume grows (WAL safety does not apply to it).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tablespace_volume_grows() {
    let env = Env::start(
        Scenario::builder("pg")
            .data(128 * MIB, json!({"enabled": false}))
            .wal(128 * MIB, json!({"enabled": false}))
            .tablespace(
                "idx",
                64 * MIB,
                json!({"enabled": true, "expansion": {"step": "32Mi"}}),
            ),
    )
    .await;
    let instance = &env.scenario.instances[0];
    let tbs = &instance
        .volume(&VolumeRole::Tablespace("idx".into()))
        .unwrap()
        .volume;
    // Archiving fails too: irrelevant for tablespaces.
    env.scenario
        .server("pg-1")
        .unwrap()
        .set_archive_failing(true)
        .unwrap();
    tbs.fill_to_percent(85.0).unwrap();
    env.wait_request("pg-1-tbs-idx", 96 * MIB, secs(30)).await;
    let events = env.wait_resize_events().await;
    assert_eq!(
        (
            events[0]["volumeType"].as_str(),
            events[0]["tablespace"].as_str()
        ),
        (Some("tablespace"), Some("idx"))
    );
}
