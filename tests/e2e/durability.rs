//! SPEC §9 scenarios 5, 16, 17, 18, 19, 20: budgets and records survive
//! restarts, crashes, leader changes and API outages; bad input and refusals
//! are loud and never retried in a storm.

use crate::common::*;
use cnpg_testbed::scenario::Scenario;
use nix::sys::signal::Signal;
use serde_json::json;
use std::time::{Duration, Instant};

fn successes(events: &[serde_json::Value], pvc: &str) -> usize {
    events
        .iter()
        .filter(|e| e["pvcName"] == pvc && e["result"] == "success")
        .count()
}

/// Scenario 5 (and the seed's in-memory budget): maxActionsPerDay 1 -> the
/// second trigger is rate limited, still after every manager restarts.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_budget_survives_restarting_every_manager() {
    let resize = json!({"enabled": true, "expansion": {"step": "64Mi"}, "strategy": {"maxActionsPerDay": 1}});
    let mut env = Env::start(
        Scenario::builder("pg")
            .postgres(false)
            .instances(2)
            .data(128 * MIB, resize)
            .wal(16 * MIB, json!({"enabled": false})),
    )
    .await;
    let data = env.scenario.instances[0].data().volume.clone();
    data.fill_to_percent(85.0).unwrap();
    env.wait_request("pg-1", 192 * MIB, secs(30)).await;
    wait_grown(&data, 192 * MIB).await;
    data.fill_to_percent(90.0).unwrap();
    env.wait_blocked(0, "data", "rate_limit", secs(20)).await;
    env.wait_metric(
        0,
        "cnpg_disk_resize_budget_remaining",
        &[("volume_type", "data")],
        0.0,
        secs(5),
    )
    .await;
    let next = metric(
        &env.metrics(0).await,
        "cnpg_disk_resize_next_action_timestamp_seconds",
        &[("volume_type", "data")],
    )
    .unwrap();
    let in_a_day =
        (jiff::Timestamp::now() + jiff::SignedDuration::from_hours(24)).as_second() as f64;
    assert!(
        (next - in_a_day).abs() < 120.0,
        "next action {next}, expected about {in_a_day}"
    );
    env.wait_kube_event("AutoResizeRateLimited", secs(10)).await;

    for n in 0..2 {
        env.restart(n);
    }
    env.wait_leader(secs(15)).await;
    env.wait_blocked(0, "data", "rate_limit", secs(30)).await;
    env.hold_request("pg-1", 192 * MIB, secs(3)).await;
    assert_eq!(successes(&env.resize_events().await, "pg-1"), 1);
}

/// Scenario 16: the leader is SIGKILLed -> another pod leads within the
/// lease duration (plus one renew interval); no volume grows twice.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_leader_is_replaced_and_nothing_grows_twice() {
    let resize = json!({"enabled": true, "expansion": {"step": "64Mi"}});
    let mut env = Env::start(
        Scenario::builder("pg")
            .postgres(false)
            .instances(3)
            .data(128 * MIB, resize)
            .wal(16 * MIB, json!({"enabled": false})),
    )
    .await;
    let leader = env.wait_leader(secs(15)).await;
    let n = env.index_of(&leader);
    for i in &env.scenario.instances {
        i.data().volume.fill_to_percent(85.0).unwrap();
    }
    env.stop(n, Signal::SIGKILL);
    let killed = Instant::now();
    let successor = env.wait_new_leader(&leader, secs(10)).await;
    // Lease 3s, plus up to one renew interval (1s) between the leader's last
    // renewal and its death, plus 1s of slack for a loaded machine.
    assert!(
        killed.elapsed() < Duration::from_secs(5),
        "took {:?}",
        killed.elapsed()
    );
    assert_ne!(successor, leader);
    for i in 0..3 {
        env.wait_request(&format!("pg-{}", i + 1), 192 * MIB, secs(30))
            .await;
    }
    env.hold_request("pg-1", 192 * MIB, secs(2)).await;
    let events = env.resize_events().await;
    for i in 1..=3 {
        assert_eq!(successes(&events, &format!("pg-{i}")), 1, "{events:?}");
    }
}

/// A graceful stop releases the lease: the successor takes over at once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_releases_the_lease_and_exits_zero() {
    let mut env = Env::start(
        Scenario::builder("pg")
            .postgres(false)
            .instances(2)
            .data(64 * MIB, json!({"enabled": true}))
            .wal(16 * MIB, json!({"enabled": false})),
    )
    .await;
    let leader = env.wait_leader(secs(15)).await;
    let n = env.index_of(&leader);
    let started = Instant::now();
    let status = env.stop(n, Signal::SIGTERM).expect("exits");
    assert!(status.success(), "{status:?}");
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "took {:?}",
        started.elapsed()
    );
    let successor = env.wait_new_leader(&leader, secs(3)).await;
    // Well under the 3s lease: it was released, not left to expire.
    assert!(
        started.elapsed() < Duration::from_millis(2500),
        "{successor} after {:?}",
        started.elapsed()
    );
}

/// Scenario 17: a 60 s API outage -> no crash, no lost record, and work
/// resumes within 5 s of recovery.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_api_outage_loses_nothing() {
    let resize = json!({"enabled": true, "expansion": {"step": "64Mi"}});
    let mut env = Env::start(
        Scenario::builder("pg")
            .postgres(false)
            .instances(2)
            .data(128 * MIB, resize)
            .wal(16 * MIB, json!({"enabled": false})),
    )
    .await;
    env.wait_leader(secs(15)).await;
    env.scenario
        .sandbox
        .faults()
        .outage_for(Duration::from_secs(60));
    let outage_end = Instant::now() + Duration::from_secs(60);
    env.scenario.instances[0]
        .data()
        .volume
        .fill_to_percent(85.0)
        .unwrap();
    // Throughout the outage, no manager exits.
    while Instant::now() < outage_end {
        for m in env.managers.iter_mut().flatten() {
            assert!(
                m.wait_exit(Duration::ZERO).unwrap().is_none(),
                "manager {} exited\n{}",
                m.pod,
                m.logs()
            );
        }
        tokio::time::sleep(
            Duration::from_millis(500).min(outage_end.saturating_duration_since(Instant::now())),
        )
        .await;
    }
    let recovered = Instant::now();
    env.wait_request("pg-1", 192 * MIB, secs(30)).await;
    assert!(
        recovered.elapsed() < Duration::from_secs(5),
        "resumed after {:?}",
        recovered.elapsed()
    );
    wait_until("the record", secs(10), || async {
        let events = env.resize_events().await;
        (successes(&events, "pg-1") == 1)
            .then_some(())
            .ok_or(format!("{events:?}"))
    })
    .await;
}

/// Scenario 18: the process dies between the PVC patch and the status
/// mirror -> after restart the record exists exactly once and the budget holds.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crash_between_the_resize_and_its_mirror_loses_nothing() {
    let resize = json!({"enabled": true, "expansion": {"step": "64Mi"}, "strategy": {"maxActionsPerDay": 1}});
    let mut env = Env::start(
        Scenario::builder("pg")
            .postgres(false)
            .data(128 * MIB, resize)
            .wal(16 * MIB, json!({"enabled": false})),
    )
    .await;
    env.wait_leader(secs(15)).await;
    // Step 1 fails (the PVC patch): nothing happens, nothing is recorded.
    env.scenario
        .sandbox
        .faults()
        .set_error_rate("patch", "persistentvolumeclaims", 1.0, 500);
    let data = env.scenario.instances[0].data().volume.clone();
    data.fill_to_percent(85.0).unwrap();
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(env.requested("pg-1").await, 128 * MIB);
    assert!(env.resize_events().await.is_empty());
    env.stop(0, Signal::SIGKILL);

    // Step 2 fails (the status mirror) and the process dies right after.
    env.scenario.sandbox.faults().clear();
    env.scenario
        .sandbox
        .faults()
        .set_error_rate("patch", "clusters/status", 1.0, 500);
    env.restart(0);
    env.wait_request("pg-1", 192 * MIB, secs(30)).await;
    env.stop(0, Signal::SIGKILL);
    assert!(
        env.resize_events().await.is_empty(),
        "the mirror write was failing"
    );
    let pvc = env.scenario.pvcs().get("pg-1").await.unwrap();
    let record = pvc.metadata.annotations.unwrap()["autoresize.cnpg.io/events"].clone();
    assert!(record.contains("\"newSize\":\"192Mi\""), "{record}");

    // After the restart the mirror is repaired: exactly one record, and the
    // budget (1/day) holds although the volume is still past its trigger.
    env.scenario.sandbox.faults().clear();
    wait_grown(&data, 192 * MIB).await;
    data.fill_to_percent(90.0).unwrap();
    env.restart(0);
    wait_until("the repaired record", secs(20), || async {
        let events = env.resize_events().await;
        (successes(&events, "pg-1") == 1)
            .then_some(())
            .ok_or(format!("{events:?}"))
    })
    .await;
    env.wait_blocked(0, "data", "rate_limit", secs(20)).await;
    env.hold_request("pg-1", 192 * MIB, secs(2)).await;
    assert_eq!(successes(&env.resize_events().await, "pg-1"), 1);
}

/// Scenario 19 (and the seed's silent quantity fallback and `step: 0`):
/// invalid values met at runtime block the volume, loudly.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invalid_values_at_runtime_block_the_volume() {
    let env = Env::start(
        Scenario::builder("pg")
            .postgres(false)
            .data(
                128 * MIB,
                json!({"enabled": true, "expansion": {"minStep": "2XGi"}}),
            )
            .wal(64 * MIB, json!({"enabled": true, "expansion": {"step": 0}})),
    )
    .await;
    let i = &env.scenario.instances[0];
    i.data().volume.fill_to_percent(85.0).unwrap();
    i.volumes[1].volume.fill_to_percent(85.0).unwrap();
    for volume_type in ["data", "wal"] {
        env.wait_metric(
            0,
            "cnpg_disk_resize_blocked",
            &[("volume_type", volume_type), ("reason", "invalid_config")],
            1.0,
            secs(30),
        )
        .await;
    }
    let (_, kind, _) = env
        .wait_kube_event("AutoResizeInvalidConfig", secs(10))
        .await;
    assert_eq!(kind, "Warning");
    let notes: Vec<String> = env
        .kube_events()
        .await
        .into_iter()
        .filter(|e| e.0 == "AutoResizeInvalidConfig")
        .map(|e| e.2)
        .collect();
    assert!(notes.iter().any(|n| n.contains("2XGi")), "{notes:?}");
    assert!(notes.iter().any(|n| n.contains("not 0")), "{notes:?}");
    env.hold_request("pg-1", 128 * MIB, secs(2)).await;
    env.hold_request("pg-1-wal", 64 * MIB, secs(0)).await;
}

/// Scenario 20: a StorageClass without expansion -> one clear event, no
/// retry storm; and the manager never asks to shrink.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_resize_is_reported_once_and_not_retried() {
    let env = Env::start(
        Scenario::builder("pg")
            .postgres(false)
            .expandable(false)
            .data(
                128 * MIB,
                json!({"enabled": true, "expansion": {"step": "64Mi"}}),
            )
            .wal(16 * MIB, json!({"enabled": false})),
    )
    .await;
    env.scenario.instances[0]
        .data()
        .volume
        .fill_to_percent(85.0)
        .unwrap();
    let (_, kind, note) = env.wait_kube_event("AutoResizeFailed", secs(30)).await;
    assert_eq!(kind, "Warning");
    assert!(
        note.contains("forbidden") || note.contains("403") || note.contains("resize"),
        "{note}"
    );
    tokio::time::sleep(Duration::from_secs(5)).await;
    let text = env.metrics(0).await;
    let refused = metric(
        &text,
        "cnpg_autoresize_api_requests_total",
        &[
            ("verb", "patch"),
            ("resource", "persistentvolumeclaims"),
            ("code", "403"),
        ],
    );
    assert_eq!(refused, Some(1.0), "exactly one attempt\n{text}");
    let events = env.resize_events().await;
    assert_eq!(
        events.iter().filter(|e| e["result"] == "failure").count(),
        1,
        "{events:?}"
    );
    assert_eq!(env.requested("pg-1").await, 128 * MIB);
    env.wait_metric(
        0,
        "cnpg_disk_resizes_total",
        &[("volume_type", "data"), ("result", "failure")],
        1.0,
        secs(10),
    )
    .await;
}
