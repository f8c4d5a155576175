//! Decisions that stay safe at their edges: parity never spreads a refused
//! request, CloudNativePG's slots are exempt only while they are its own,
//! another resizer is seen and never doubled, status the API server prunes
//! is not rewritten forever, records of PVCs that are gone leave the status,
//! API errors back off, and a flapping volume is one Event.

use crate::common::*;
use cnpg_testbed::cluster::VolumeRole;
use cnpg_testbed::operator::OperatorConfig;
use cnpg_testbed::scenario::{ManagerOptions, Scenario};
use cnpg_testbed::ExpansionMode;
use k8s_openapi::api::events::v1::Event;
use kube::api::{Api, Patch, PatchParams};
use serde_json::{json, Value};
use std::time::{Duration, Instant};

fn records_on(pvc: &k8s_openapi::api::core::v1::PersistentVolumeClaim) -> Vec<Value> {
    pvc.metadata
        .annotations
        .as_ref()
        .and_then(|a| a.get("autoresize.cnpg.io/events"))
        .and_then(|t| serde_json::from_str(t).ok())
        .unwrap_or_default()
}

async fn set_request(env: &Env, pvc: &str, size: &str) {
    let patch = json!({"spec": {"resources": {"requests": {"storage": size}}}});
    env.scenario
        .pvcs()
        .patch(pvc, &PatchParams::default(), &Patch::Merge(&patch))
        .await
        .expect("the request changes");
}

/// Events of `reason` on the Cluster: (note, series count).
async fn events_of(env: &Env, reason: &str) -> Vec<(String, Option<i32>)> {
    let api: Api<Event> = Api::namespaced(env.scenario.client.clone(), &env.scenario.namespace);
    api.list(&Default::default())
        .await
        .expect("events list")
        .items
        .into_iter()
        .filter(|e| e.reason.as_deref() == Some(reason))
        .map(|e| (e.note.unwrap_or_default(), e.series.map(|s| s.count)))
        .collect()
}

/// One PVC's expansion is refused at 192Mi (capacity 128Mi): its sibling is
/// not grown to 192Mi by parity. A human lowers the refused request to
/// 160Mi to recover; the storage delivers it; parity copies 160Mi to the
/// sibling and never raises the recovered PVC again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_expansion_never_spreads_by_parity() {
    let resize = json!({"enabled": true, "expansion": {"step": "64Mi"}});
    let env = Env::start(data_volume_cluster(128 * MIB, resize).instances(2)).await;
    env.scenario.set_expansion_mode(
        "pg-1",
        ExpansionMode::Fail {
            message: "volume size exceeds the quota of the storage pool".into(),
        },
    );
    env.scenario.instances[0]
        .data()
        .volume
        .fill_to_percent(85.0)
        .unwrap();
    env.wait_request("pg-1", 192 * MIB, secs(30)).await;
    env.wait_blocked(0, "data", "expansion_failed", secs(30))
        .await;
    env.hold_request("pg-2", 128 * MIB, 3).await;

    // The backend allows 160Mi, not 192Mi: lowered first, then delivered.
    set_request(&env, "pg-1", "160Mi").await;
    env.scenario
        .set_expansion_mode("pg-1", ExpansionMode::Expand);
    wait_grown(&env.scenario.instances[0].data().volume, 160 * MIB).await;
    env.wait_request("pg-2", 160 * MIB, secs(30)).await;
    env.hold_request("pg-1", 160 * MIB, 3).await;
    assert_eq!(env.requested("pg-2").await, 160 * MIB);
}

/// A WAL-volume cluster of two instances whose slot check blocks above
/// 16 MiB. CNPG's primary drops an inactive HA slot of a vanished instance
/// at its next slot round: a long `updateInterval` keeps such a leak in
/// place for the test (it also happens when that round fails).
async fn slot_env() -> Env {
    let wal = json!({"enabled": true, "expansion": {"step": "64Mi"},
        "strategy": {"walSafetyPolicy": {"maxSlotRetentionBytes": 16777216, "requireArchiveHealthy": false}}});
    Env::start(
        Scenario::builder("pg")
            .instances(2)
            .slot_update_interval(Duration::from_secs(3600))
            .data(128 * MIB, json!({"enabled": false}))
            .wal(128 * MIB, wal),
    )
    .await
}

fn wal_of(env: &Env, n: usize) -> std::sync::Arc<cnpg_testbed::Volume> {
    env.scenario.instances[n]
        .volume(&VolumeRole::Wal)
        .unwrap()
        .volume
        .clone()
}

fn slots_in_status(status: &Value, pod: &str) -> Vec<String> {
    status["diskStatus"]["instances"][pod]["walHealth"]["inactiveSlots"]
        .as_array()
        .map(|s| {
            s.iter()
                .filter_map(|s| s["slotName"].as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default()
}

/// An HA slot on the primary for an instance that no longer exists holds
/// WAL for nobody: it is reported and blocks the primary's WAL volume.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_ha_slot_of_a_vanished_instance_blocks_the_primarys_wal_volume() {
    let env = slot_env().await;
    let primary = env.scenario.server("pg-1").unwrap();
    let orphan = cnpg_testbed::cluster::ha_slot_name("_cnpg_", "pg-9");
    primary
        .create_inactive_physical_slot(&orphan)
        .await
        .unwrap();
    primary.generate_wal(24 << 20).await.unwrap();
    let slot = [("slot_name", orphan.as_str())];
    wait_until(
        "the orphaned slot's retention reported",
        secs(30),
        || async {
            let retained = metric(
                &env.metrics(0).await,
                "cnpg_wal_slot_retention_bytes",
                &slot,
            );
            retained
                .filter(|r| *r > 16777216.0)
                .map(|_| ())
                .ok_or(format!("{retained:?}"))
        },
    )
    .await;
    wal_of(&env, 0).fill_to_percent(85.0).unwrap();
    env.wait_blocked(0, "wal", "slot_retention_exceeded", secs(30))
        .await;
    wait_until("the orphaned slot in diskStatus", secs(20), || async {
        let status = env.status().await;
        let slots = slots_in_status(&status, "pg-1");
        slots
            .contains(&orphan)
            .then_some(())
            .ok_or(format!("{slots:?}"))
    })
    .await;
    env.hold_request("pg-1-wal", 128 * MIB, 2).await;
}

/// A user slot CNPG's slot synchronisation copies to a standby is inactive
/// there by design: not reported, never blocking the standby's WAL volume.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_synchronised_user_slot_is_not_reported_on_a_standby() {
    let env = slot_env().await;
    let primary = env.scenario.server("pg-1").unwrap();
    let standby = env.scenario.server("pg-2").unwrap();
    primary
        .create_inactive_physical_slot("analytics_cdc")
        .await
        .unwrap();
    env.scenario
        .pg
        .as_ref()
        .unwrap()
        .sync_slots_now()
        .await
        .unwrap();
    primary.generate_wal(24 << 20).await.unwrap();
    wait_until("the copy retains WAL on the standby", secs(30), || async {
        let slots = standby.physical_slots().await.map_err(|e| e.to_string())?;
        let retained = slots
            .iter()
            .find(|s| s.name == "analytics_cdc" && !s.active)
            .and_then(|s| s.retained_bytes)
            .unwrap_or(0);
        (retained > 16777216)
            .then_some(())
            .ok_or(format!("{slots:?}"))
    })
    .await;
    // The standby's own check sees the copy (its raw report)...
    wait_until("the standby's report shows the copy", secs(20), || async {
        let s = get_json(&env.manager(1).url("/v1/status"))
            .await
            .ok_or("no answer")?;
        let health = &s["report"]["walHealth"];
        let seen = health["inactiveSlots"]
            .as_array()
            .is_some_and(|a| a.iter().any(|x| x["slotName"] == "analytics_cdc"));
        (seen && health["inRecovery"] == true)
            .then_some(())
            .ok_or(s.to_string())
    })
    .await;
    // ... and reports it nowhere.
    let text = env.metrics(1).await;
    assert_eq!(metric(&text, "cnpg_wal_inactive_slots", &[]), Some(0.0));
    assert_eq!(
        metric(
            &text,
            "cnpg_wal_slot_retention_bytes",
            &[("slot_name", "analytics_cdc")]
        ),
        None
    );
    wal_of(&env, 1).fill_to_percent(85.0).unwrap();
    env.wait_request("pg-2-wal", 192 * MIB, secs(40)).await;
    let status = env.status().await;
    let slots = slots_in_status(&status, "pg-2");
    assert!(!slots.contains(&"analytics_cdc".to_string()), "{slots:?}");
    // On the primary the slot is its own, and reported.
    let on_primary = metric(
        &env.metrics(0).await,
        "cnpg_wal_slot_retention_bytes",
        &[("slot_name", "analytics_cdc")],
    );
    assert!(on_primary.is_some(), "the primary's slot is reported");
}

/// The fork's operator resizes on the same blocks, with an unconditional
/// merge patch. Its raise is announced once (Event and counter) and never
/// doubled: while it is in flight the volume is `resize_in_progress`, and
/// once done the next decision starts from the grown volume. Then both
/// resizers run on one crossing: cnpg-autoresize resizes at most once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn beside_the_forks_resizer_a_raise_is_announced_once_and_never_doubled() {
    let resize = json!({"enabled": true, "expansion": {"step": "64Mi"}});
    let env = Env::start(
        data_volume_cluster(128 * MIB, resize)
            .cnpg_operator(true)
            .operator_config(OperatorConfig {
                status_interval: Duration::from_secs(1),
                ..OperatorConfig::default()
            }),
    )
    .await;
    env.wait_leader(secs(15)).await;
    wait_until("pg-1 in diskStatus", secs(20), || async {
        let status = env.status().await;
        status["diskStatus"]["instances"]["pg-1"]["dataVolume"]
            .is_object()
            .then_some(())
            .ok_or(status.to_string())
    })
    .await;
    let operator = env.scenario.operator.as_ref().expect("the CNPG stand-in");
    // The fork's instance manager reports pg-1 at 90% (its operator reads
    // that); the raise stays in flight until the test lets it complete.
    env.scenario
        .set_expansion_mode("pg-1", ExpansionMode::Stall);
    let report = json!({"status": {"diskStatus": {"instances": {"pg-1": {"dataVolume": {
        "totalBytes": 120 * MIB, "usedBytes": 108 * MIB, "availableBytes": 12 * MIB, "percentUsed": 90}}}}}});
    // The leader may rewrite diskStatus with its own figures in between:
    // report again until the fork's operator has acted on it, once.
    wait_until("the fork's raise", secs(20), || async {
        env.scenario
            .clusters()
            .patch_status("pg", &PatchParams::default(), &Patch::Merge(&report))
            .await
            .map_err(|e| e.to_string())?;
        let raised = operator
            .fork_resize_now()
            .await
            .map_err(|e| format!("{e:#}"))?;
        (raised == ["pg-1"])
            .then_some(())
            .ok_or(format!("{raised:?}"))
    })
    .await;
    assert_eq!(env.requested("pg-1").await, 192 * MIB);

    let (note, _) = wait_until("AutoResizeForeignResizer", secs(20), || async {
        let found = events_of(&env, "AutoResizeForeignResizer").await;
        found.first().cloned().ok_or("none".to_string())
    })
    .await;
    assert!(
        note.contains("pg-1") && note.contains("\"manager\""),
        "{note}"
    );
    env.wait_metric(
        0,
        "cnpg_autoresize_foreign_resizes_total",
        &[],
        1.0,
        secs(10),
    )
    .await;
    // Our own figures cross the trigger while the fork's raise is in flight.
    let data = env.scenario.instances[0].data().volume.clone();
    data.fill_to_percent(85.0).unwrap();
    env.wait_blocked(0, "data", "resize_in_progress", secs(20))
        .await;
    env.hold_request("pg-1", 192 * MIB, 3).await;
    // Announced once, counted once.
    assert_eq!(events_of(&env, "AutoResizeForeignResizer").await.len(), 1);
    let (_, series) = events_of(&env, "AutoResizeForeignResizer").await[0].clone();
    assert_eq!(series, None, "announced once");
    assert_eq!(
        metric(
            &env.metrics(0).await,
            "cnpg_autoresize_foreign_resizes_total",
            &[]
        ),
        Some(1.0)
    );
    // Done: the volume the next decision starts from is the grown one.
    env.scenario
        .set_expansion_mode("pg-1", ExpansionMode::Expand);
    wait_grown(&data, 192 * MIB).await;
    env.hold_request("pg-1", 192 * MIB, 3).await;
    let pvc = env.scenario.pvcs().get("pg-1").await.unwrap();
    assert!(records_on(&pvc).is_empty(), "{:?}", records_on(&pvc));

    // Both resizers on one crossing: at most one resize of ours.
    operator.set_fork_resizer(true);
    data.fill_to_percent(85.0).unwrap();
    wait_until("the crossing handled", secs(40), || async {
        let now = env.requested("pg-1").await;
        (now > 192 * MIB).then_some(()).ok_or(now.to_string())
    })
    .await;
    operator.set_fork_resizer(false);
    env.wait_passes(3, secs(30)).await;
    // One resize for the crossing; the forecast may add one for the fill
    // itself (two fills seconds apart are a fill rate). Each of ours starts
    // where the last change ended, and nobody raised on top of ours.
    let pvc = env.scenario.pvcs().get("pg-1").await.unwrap();
    let ours = records_on(&pvc);
    let context = format!("{ours:?}\n{}", env.logs());
    let crossing: Vec<_> = ours.iter().filter(|r| r["trigger"] != "forecast").collect();
    assert!(crossing.len() <= 1, "{context}");
    let mut size = "192Mi".to_string();
    for record in &ours {
        assert_eq!(record["previousSize"], json!(size), "{context}");
        size = record["newSize"].as_str().unwrap().to_string();
    }
    let requested = pvc.spec.unwrap().resources.unwrap().requests.unwrap()["storage"]
        .0
        .clone();
    assert_eq!(requested, size, "{context}");
}

/// On upstream CloudNativePG without a policy the Cluster owns the status,
/// and its CRD prunes `diskStatus`: the leader sees the write come back
/// without it, says so once, and stops writing it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_status_field_the_api_server_prunes_is_not_written_again() {
    let options = ManagerOptions {
        extra_args: vec!["--status-interval".into(), "1s".into()],
        ..ManagerOptions::default()
    };
    let env = Env::start_with_crd(
        data_volume_cluster(128 * MIB, json!({"enabled": true})),
        options,
        upstream_cluster_crd(),
    )
    .await;
    let leader = env.wait_leader(secs(15)).await;
    let n = env.index_of(&leader);
    let said = |logs: &str| {
        logs.lines()
            .filter(|l| l.contains("prunes this status field") && l.contains("diskStatus"))
            .count()
    };
    wait_until("the pruned field noticed", secs(30), || async {
        let count = said(&env.manager(n).logs());
        (count >= 1).then_some(()).ok_or(count.to_string())
    })
    .await;
    let calls = |text: &str, verb: &str, resource: &str| {
        metric(
            text,
            "cnpg_autoresize_api_requests_total",
            &[("verb", verb), ("resource", resource), ("code", "200")],
        )
        .unwrap_or(0.0)
    };
    let before = env.metrics(n).await;
    // Three status intervals pass, and the leader plans after each.
    env.wait_pass_after(Instant::now() + Duration::from_secs(3), secs(30))
        .await;
    env.wait_passes(2, secs(30)).await;
    let after = env.metrics(n).await;
    assert_eq!(
        calls(&after, "patch", "clusters/status"),
        calls(&before, "patch", "clusters/status"),
        "status writes the API server prunes\n{}",
        env.logs()
    );
    assert_eq!(
        calls(&after, "get", "clusters"),
        calls(&before, "get", "clusters"),
        "reads before such writes"
    );
    assert_eq!(said(&env.manager(n).logs()), 1, "said once");
}

/// Records of PVCs that no longer exist leave the status once they count
/// toward no budget; the latest success of a PVC that exists stays.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn records_of_pvcs_that_are_gone_leave_the_status() {
    let env = Env::start(data_volume_cluster(128 * MIB, json!({"enabled": true}))).await;
    env.wait_leader(secs(15)).await;
    let old = (jiff::Timestamp::now() - jiff::SignedDuration::from_hours(26))
        .strftime("%Y-%m-%dT%H:%M:%SZ")
        .to_string();
    let record = |pvc: &str| {
        json!({"timestamp": old, "instanceName": pvc, "pvcName": pvc, "volumeType": "data",
               "previousSize": "64Mi", "newSize": "128Mi", "result": "success"})
    };
    // pg-7 was a replica rebuilt under another name (a node drain with
    // local storage): its parity grow is all that is left of it.
    let seeded = json!({"status": {"autoResizeEvents": [record("pg-1"), record("pg-7")]}});
    env.scenario
        .clusters()
        .patch_status("pg", &PatchParams::default(), &Patch::Merge(&seeded))
        .await
        .unwrap();
    wait_until("pg-7's record pruned", secs(30), || async {
        let events = env.resize_events().await;
        let pvcs: Vec<&str> = events
            .iter()
            .filter_map(|e| e["pvcName"].as_str())
            .collect();
        (pvcs == ["pg-1"])
            .then_some(())
            .ok_or(format!("{events:?}"))
    })
    .await;
}

/// API errors: the planner retries after a capped exponential back-off with
/// jitter, each retry at the end of its back-off (not at the next 5 s
/// timer tick), and resumes at once when the API heals.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn api_errors_are_retried_with_a_growing_back_off() {
    let resize = json!({"enabled": true, "expansion": {"step": "64Mi"}});
    let env = Env::start(data_volume_cluster(128 * MIB, resize)).await;
    env.wait_leader(secs(15)).await;
    let faults = env.scenario.sandbox.faults();
    faults.set_error_rate("patch", "persistentvolumeclaims", 1.0, 503);
    env.scenario.instances[0]
        .data()
        .volume
        .fill_to_percent(85.0)
        .unwrap();
    let attempts = || -> Vec<jiff::Timestamp> {
        env.manager(0)
            .logs()
            .lines()
            .filter(|l| l.contains("resize failed; will retry"))
            .filter_map(|l| serde_json::from_str::<Value>(l).ok())
            .filter_map(|v| v["ts"].as_str()?.parse().ok())
            .collect()
    };
    let times = wait_until("five failed attempts", secs(60), || async {
        let t = attempts();
        (t.len() >= 5).then_some(t.clone()).ok_or(format!("{t:?}"))
    })
    .await;
    let gaps: Vec<f64> = times
        .windows(2)
        .map(|w| w[1].duration_since(w[0]).as_secs_f64())
        .collect();
    // Back-off steps of 1, 2, 4, 8 s, each waited half to all of; a pass
    // takes a little more. The 5 s timer would give ~5 s every time.
    let margin = 1.2;
    let bounds = [(0.5, 1.0), (1.0, 2.0), (2.0, 4.0), (4.0, 8.0)];
    for (i, (gap, (low, high))) in gaps.iter().zip(bounds).enumerate() {
        assert!(
            *gap >= low - 0.05 && *gap <= high + margin,
            "gap {i}: {gap:.2}s not in [{low}, {high}] s: {gaps:?}\n{}",
            env.logs()
        );
    }
    faults.clear();
    env.wait_request("pg-1", 192 * MIB, secs(20)).await;
}

/// A volume hovering at its threshold while rate-limited re-enters the same
/// condition again and again: one Event, not one per re-entry.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_volume_flapping_at_its_threshold_is_one_event() {
    let resize = json!({"enabled": true, "expansion": {"step": "64Mi"}, "strategy": {"maxActionsPerDay": 1}});
    let env = Env::start(data_volume_cluster(128 * MIB, resize)).await;
    let data = env.scenario.instances[0].data().volume.clone();
    data.fill_to_percent(85.0).unwrap();
    env.wait_request("pg-1", 192 * MIB, secs(30)).await;
    wait_grown(&data, 192 * MIB).await;
    let decided = |reason: &'static str| {
        let env = &env;
        async move {
            env.wait_blocked(0, "data", reason, secs(20)).await;
            // The Events of that decision are published after its pass.
            env.wait_passes(1, secs(20)).await;
        }
    };
    data.fill_to_percent(85.0).unwrap();
    decided("rate_limit").await;
    assert_eq!(events_of(&env, "AutoResizeRateLimited").await.len(), 1);
    for _ in 0..3 {
        data.clear_fill().unwrap();
        decided("not_triggered").await;
        data.fill_to_percent(85.0).unwrap();
        decided("rate_limit").await;
    }
    let events = events_of(&env, "AutoResizeRateLimited").await;
    assert_eq!(events.len(), 1, "{events:?}");
    assert_eq!(events[0].1, None, "no repeats: {events:?}");
}

/// The fork run as docs/reference/operations.md#beside-the-forks-own-resizer
/// says: its Cluster blocks off, an AutoResizePolicy for cnpg-autoresize.
/// The fork's resizer runs on every reconcile and resizes nothing; one
/// resizer grows the volume, once, and nothing foreign is announced.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_the_forks_resizer_off_as_documented_one_resizer_acts() {
    let env = Env::start(
        data_volume_cluster(128 * MIB, json!({"enabled": false}))
            .cnpg_operator(true)
            .operator_config(OperatorConfig {
                status_interval: Duration::from_secs(1),
                fork_resizer: true,
                ..OperatorConfig::default()
            }),
    )
    .await;
    env.create_policy(
        "pg",
        json!({"cluster": "pg", "walStorage": {},
               "storage": {"resize": {"enabled": true, "expansion": {"step": "64Mi"}}}}),
    )
    .await;
    let data = env.scenario.instances[0].data().volume.clone();
    data.fill_to_percent(85.0).unwrap();
    env.wait_request("pg-1", 192 * MIB, secs(30)).await;
    wait_grown(&data, 192 * MIB).await;
    env.hold_request("pg-1", 192 * MIB, 3).await;
    let operator = env.scenario.operator.as_ref().expect("the CNPG stand-in");
    assert!(operator.stats().writes >= 3, "{:?}", operator.stats());
    assert_eq!(operator.fork_resizes(), 0);
    let pvc = env.scenario.pvcs().get("pg-1").await.unwrap();
    assert_eq!(records_on(&pvc).len(), 1, "{:?}", records_on(&pvc));
    assert!(events_of(&env, "AutoResizeForeignResizer").await.is_empty());
    assert_eq!(
        metric(
            &env.metrics(0).await,
            "cnpg_autoresize_foreign_resizes_total",
            &[]
        ),
        Some(0.0)
    );
}
