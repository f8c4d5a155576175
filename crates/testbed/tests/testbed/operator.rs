//! The CloudNativePG stand-in: its status writes are full updates from the
//! fork's Go types (unknown fields dropped, a missing event timestamp
//! written as `null`), carry the resourceVersion they read (409 → re-read),
//! never touch `spec`; and the Cluster served with the fork's real CRD
//! accepts them.

use crate::common::init_tracing;
use cnpg_testbed::operator::{OperatorConfig, PHASE_HEALTHY};
use cnpg_testbed::scenario::Scenario;
use kube::api::{Patch, PatchParams};
use serde_json::{json, Value};
use std::time::{Duration, Instant};

const MIB: u64 = 1 << 20;

async fn eventually<F, Fut>(what: &str, timeout: Duration, mut f: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = Instant::now() + timeout;
    while !f().await {
        assert!(Instant::now() < deadline, "timed out waiting for: {what}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn fast() -> OperatorConfig {
    OperatorConfig {
        status_interval: Duration::from_millis(300),
        ..OperatorConfig::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_writes_drop_unknown_fields_and_null_missing_timestamps() {
    init_tracing();
    let mut scenario = Scenario::builder("op")
        .data(64 * MIB, json!({"enabled": true}))
        .operator_config(fast())
        .start()
        .await
        .unwrap();
    let op = scenario
        .operator
        .as_ref()
        .expect("on by default with PostgreSQL");

    // Its own fields, as CNPG sets them.
    eventually("CNPG's status fields", Duration::from_secs(20), || async {
        let s = scenario.cluster_status().await.unwrap();
        s["phase"] == PHASE_HEALTHY
            && s["instanceNames"] == json!(["op-1"])
            && s["currentPrimary"] == "op-1"
            && s["targetPrimary"] == "op-1"
            && s["readyInstances"] == 1
            && s["latestGeneratedNode"] == 1
            && s["conditions"].as_array().is_some_and(|c| {
                c.iter()
                    .any(|c| c["type"] == "Ready" && c["status"] == "True")
            })
    })
    .await;
    let before = scenario.clusters().get("op").await.unwrap();

    // What the Go implementation left behind, and a field no Go type knows
    // (the sandbox serves a schema-less Cluster here, so it keeps them).
    let foreign = json!({"status": {
        "bogusField": {"x": 1},
        "autoResizeEvents": [{"pvcName": "op-1", "instanceName": "op-1", "volumeType": "data",
            "result": "success", "previousSize": "64Mi", "newSize": "96Mi", "trigger": "usage"}],
    }});
    scenario
        .clusters()
        .patch_status("op", &PatchParams::default(), &Patch::Merge(&foreign))
        .await
        .unwrap();
    assert!(scenario.cluster_status().await.unwrap()["bogusField"].is_object());
    // Any write accepted from now on read the patched object (an older
    // read would have met a 409).
    let writes = op.writes();
    op.wait_for_write_after(writes, Duration::from_secs(20))
        .await
        .unwrap();

    let written = op.last_written_status().unwrap();
    assert!(written.get("bogusField").is_none(), "{written:#}");
    let event = &written["autoResizeEvents"][0];
    assert_eq!(
        event.get("timestamp"),
        Some(&Value::Null),
        "Go writes a zero metav1.Time as null: {written:#}"
    );
    assert!(
        event.get("trigger").is_none(),
        "not in the fork's CRD: {event}"
    );
    assert_eq!(event["newSize"], "96Mi");

    let stored = scenario.clusters().get("op").await.unwrap();
    let status = &stored.data["status"];
    assert!(status.get("bogusField").is_none(), "{status:#}");
    assert_eq!(status["autoResizeEvents"][0]["pvcName"], "op-1");
    assert!(
        status["autoResizeEvents"][0]
            .get("timestamp")
            .is_none_or(Value::is_null),
        "{status:#}"
    );
    assert_eq!(stored.data["spec"], before.data["spec"], "spec untouched");
    assert_eq!(stored.metadata.generation, before.metadata.generation);

    // A scale-up as CNPG performs it: the next serial, PVCs from the spec.
    let report = scenario.add_replica().await.unwrap();
    assert_eq!(report.pod, "op-2");
    assert_eq!(
        scenario.requested_bytes("op-2").await.unwrap(),
        64 * MIB,
        "spec.storage.size"
    );
    assert!(scenario.server("op-2").unwrap().is_replica());
    eventually(
        "the stand-in lists the new instance",
        Duration::from_secs(20),
        || async {
            let s = scenario.cluster_status().await.unwrap();
            s["instanceNames"] == json!(["op-1", "op-2"])
                && s["latestGeneratedNode"] == 2
                && s["readyInstances"] == 2
                && s["phase"] == PHASE_HEALTHY
        },
    )
    .await;
    let spec = &scenario.clusters().get("op").await.unwrap().data["spec"];
    assert_eq!(spec["instances"], 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stale_write_conflicts_and_is_retried_after_a_fresh_read() {
    init_tracing();
    let scenario = Scenario::builder("cf")
        .postgres(false)
        .cnpg_operator(true)
        .operator_config(OperatorConfig {
            status_interval: Duration::from_millis(200),
            // A reconcile takes time between its read and its write.
            reconcile_delay: Duration::from_millis(300),
            conflict_retries: 1,
            ..OperatorConfig::default()
        })
        .start()
        .await
        .unwrap();
    let op = scenario.operator.as_ref().unwrap();
    op.wait_for_write_after(0, Duration::from_secs(20))
        .await
        .unwrap();

    // Someone else (the manager) writes the status all the time.
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut n = 0;
    while op.conflicts() == 0 {
        assert!(Instant::now() < deadline, "no conflict: {:?}", op.stats());
        n += 1;
        let patch = json!({"status": {"diskStatus": {"instances": {"cf-1": {"lastUpdated": format!("2026-01-01T00:00:{:02}Z", n % 60)}}}}});
        scenario
            .clusters()
            .patch_status("cf", &PatchParams::default(), &Patch::Merge(&patch))
            .await
            .unwrap();
        tokio::time::sleep(Duration::from_millis(30)).await;
    }
    // Once the other writer pauses, a fresh read goes through — and keeps
    // the other writer's fields it knows.
    let writes = op.writes();
    op.wait_for_write_after(writes, Duration::from_secs(20))
        .await
        .unwrap();
    let status = scenario.cluster_status().await.unwrap();
    assert!(
        status["diskStatus"]["instances"]["cf-1"]["lastUpdated"].is_string(),
        "{status:#}"
    );
    assert_eq!(status["instances"], 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_fork_crd_served_by_the_sandbox_accepts_the_stand_ins_writes() {
    init_tracing();
    let crd = kube_sandbox::cluster_crd().unwrap().text;
    let scenario = Scenario::builder("fk")
        .postgres(false)
        .cnpg_operator(true)
        .operator_config(fast())
        .cluster_crd(crd)
        .start()
        .await
        .unwrap();
    let op = scenario.operator.as_ref().unwrap();
    let foreign = json!({"status": {"autoResizeEvents": [{"pvcName": "fk-1", "result": "success",
        "volumeType": "data", "newSize": "96Mi", "timestamp": null}]}});
    scenario
        .clusters()
        .patch_status("fk", &PatchParams::default(), &Patch::Merge(&foreign))
        .await
        .unwrap();
    let writes = op.writes();
    op.wait_for_write_after(writes, Duration::from_secs(20))
        .await
        .unwrap();
    op.wait_for_write_after(writes + 1, Duration::from_secs(20))
        .await
        .unwrap();
    let status = scenario.cluster_status().await.unwrap();
    assert_eq!(status["phase"], PHASE_HEALTHY, "{status:#}");
    assert_eq!(status["autoResizeEvents"][0]["newSize"], "96Mi");
    // The stand-in wrote `null`; a non-nullable field's null is pruned.
    assert!(
        status["autoResizeEvents"][0].get("timestamp").is_none(),
        "{status:#}"
    );
    assert_eq!(op.stats().errors, 0, "{:?}", op.stats());
}

/// The fork's own resizer: every PVC whose `diskStatus` figures cross the
/// trigger gets the next size by an unconditional merge patch, as field
/// manager `manager`, pass after pass while the figures stay above it (no
/// in-flight check), never past `limit`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_forks_resizer_patches_unconditionally_on_every_pass() {
    init_tracing();
    let resize = json!({"enabled": true, "triggers": {"usageThreshold": 80},
        "expansion": {"step": "50%", "minStep": "16Mi", "limit": "200Mi"}});
    let scenario = Scenario::builder("fork")
        .postgres(false)
        .cnpg_operator(true)
        .data(64 * MIB, resize)
        .start()
        .await
        .unwrap();
    let op = scenario.operator.as_ref().unwrap();
    // Below the trigger (or without figures): nothing.
    assert!(op.fork_resize_now().await.unwrap().is_empty());
    let report = |pct: u64| {
        json!({"status": {"diskStatus": {"instances": {"fork-1": {"dataVolume": {
            "totalBytes": 60 * MIB, "usedBytes": 60 * MIB * pct / 100,
            "availableBytes": 60 * MIB * (100 - pct) / 100, "percentUsed": pct}}}}}})
    };
    let scenario = &scenario;
    let set_report = |pct: u64| async move {
        scenario
            .clusters()
            .patch_status("fork", &PatchParams::default(), &Patch::Merge(&report(pct)))
            .await
            .unwrap();
    };
    set_report(70).await;
    assert!(op.fork_resize_now().await.unwrap().is_empty());
    set_report(90).await;
    // 64Mi + 50% = 96Mi; then, the figures unchanged, 144Mi; then the limit.
    for want in [96, 144, 200] {
        assert_eq!(op.fork_resize_now().await.unwrap(), ["fork-1"]);
        assert_eq!(
            scenario.requested_bytes("fork-1").await.unwrap(),
            want * MIB
        );
    }
    assert!(
        op.fork_resize_now().await.unwrap().is_empty(),
        "at the limit"
    );
    assert_eq!(op.fork_resizes(), 3);
    let pvc = scenario.pvcs().get("fork-1").await.unwrap();
    let owner = pvc
        .metadata
        .managed_fields
        .unwrap_or_default()
        .into_iter()
        .find(|e| {
            e.fields_v1.as_ref().is_some_and(|f| {
                f.0.pointer("/f:spec/f:resources/f:requests/f:storage")
                    .is_some()
            })
        })
        .and_then(|e| e.manager);
    assert_eq!(
        owner.as_deref(),
        Some(cnpg_testbed::operator::FORK_FIELD_MANAGER)
    );
}
