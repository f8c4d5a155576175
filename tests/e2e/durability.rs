//! Budgets and records survive restarts, crashes, leader changes and API
//! outages; bad input and refusals are loud and never retried in a storm.

use crate::common::*;
use cnpg_testbed::scenario::Scenario;
use serde_json::json;
use std::time::{Duration, Instant};

fn successes(events: &[serde_json::Value], pvc: &str) -> usize {
    events
        .iter()
        .filter(|e| e["pvcName"] == pvc && e["result"] == "success")
        .count()
}

/// maxActionsPerDay 1 -> the second trigger is rate limited, still after
/// every manager restarts (and the seed's in-memory budget).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_budget_survives_restarting_every_manager() {
    let resize = json!({"enabled": true, "expansion": {"step": "64Mi"}, "strategy": {"maxActionsPerDay": 1}});
    let env = Env::start(data_volume_cluster(128 * MIB, resize).instances(2)).await;
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
        env.crash(n).await;
    }
    env.wait_leader(secs(15)).await;
    env.wait_blocked(0, "data", "rate_limit", secs(30)).await;
    env.hold_request("pg-1", 192 * MIB, 3).await;
    assert_eq!(successes(&env.resize_events().await, "pg-1"), 1);
}

/// The leader's node dies (SIGKILL, no grace, no restart) ->
/// another pod takes the lease once it expired (never before) and resizes
/// what crossed; no volume grows twice for one crossing. No wall-clock
/// bound: how fast failover is, is measured in benches/, not asserted here.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_leader_is_replaced_and_nothing_grows_twice() {
    let resize = json!({"enabled": true, "expansion": {"step": "64Mi"}});
    let mut env = Env::start(data_volume_cluster(128 * MIB, resize).instances(3)).await;
    let leader = env.wait_leader(secs(15)).await;
    let dead = env.index_of(&leader);
    let transitions = lease(&env)
        .await
        .spec
        .unwrap()
        .lease_transitions
        .unwrap_or(0);
    env.kill_pod(dead).await;
    // Only the survivors' volumes cross: the dead pod reports nothing.
    let survivors: Vec<usize> = (0..3).filter(|n| *n != dead).collect();
    for n in &survivors {
        env.scenario.instances[*n]
            .data()
            .volume
            .fill_to_percent(85.0)
            .unwrap();
    }
    let successor = env.wait_new_leader(&leader, secs(30)).await;
    let taken = lease(&env).await.spec.unwrap();
    assert_eq!(
        taken.lease_transitions,
        Some(transitions + 1),
        "taken over by expiry, once"
    );
    assert!(survivors.contains(&env.index_of(&successor)));
    for n in &survivors {
        env.wait_request(env.pod(*n), 192 * MIB, secs(30)).await;
    }
    env.hold_request(env.pod(survivors[0]), 192 * MIB, 2).await;
    let events = env.resize_events().await;
    for n in &survivors {
        assert_eq!(successes(&events, env.pod(*n)), 1, "{events:?}");
    }
    // The dead pod's volume never crossed (its pod reports nothing), but it
    // is now smaller than its peers: size parity grows it, once, no budget.
    env.wait_request(&leader, 192 * MIB, secs(30)).await;
    // The status mirrors the parity record after the patch: wait for it,
    // then hold the leader for two passes so a second grow would show.
    wait_until("the parity record in the status", secs(30), || async {
        let events = env.resize_events().await;
        (successes(&events, &leader) >= 1)
            .then_some(())
            .ok_or(format!("{events:?}"))
    })
    .await;
    env.hold_request(&leader, 192 * MIB, 2).await;
    let events = env.resize_events().await;
    assert_eq!(successes(&events, &leader), 1, "{events:?}");
}

async fn lease(env: &Env) -> k8s_openapi::api::coordination::v1::Lease {
    let api: kube::Api<k8s_openapi::api::coordination::v1::Lease> =
        kube::Api::namespaced(env.scenario.client.clone(), &env.scenario.namespace);
    api.get("cnpg-autoresize-pg").await.expect("the lease")
}

/// A graceful stop (the pod is deleted: SIGTERM) releases the lease (holder
/// cleared, not left to expire), the process exits 0, and a successor takes
/// the lease.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_releases_the_lease_and_exits_zero() {
    let mut env =
        Env::start(data_volume_cluster(64 * MIB, json!({"enabled": true})).instances(2)).await;
    let leader = env.wait_leader(secs(15)).await;
    let n = env.index_of(&leader);
    // Every version of the Lease from now on, as a watch sees them.
    let api: kube::Api<k8s_openapi::api::coordination::v1::Lease> =
        kube::Api::namespaced(env.scenario.client.clone(), &env.scenario.namespace);
    let seen = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let recorder = {
        use futures::StreamExt;
        let seen = seen.clone();
        let stream = kube::runtime::watcher(
            api,
            kube::runtime::watcher::Config::default().fields("metadata.name=cnpg-autoresize-pg"),
        );
        tokio::spawn(async move {
            futures::pin_mut!(stream);
            while let Some(Ok(e)) = stream.next().await {
                if let kube::runtime::watcher::Event::Apply(l)
                | kube::runtime::watcher::Event::InitApply(l) = e
                {
                    let spec = l.spec.unwrap_or_default();
                    seen.lock()
                        .unwrap()
                        .push((spec.holder_identity, spec.lease_duration_seconds));
                }
            }
        })
    };
    // The recorder has seen the Lease as it is before the release.
    wait_until("the Lease watched", secs(10), || async {
        let n = seen.lock().unwrap().len();
        (n >= 1).then_some(()).ok_or(n.to_string())
    })
    .await;
    let pod = env.manager(n);
    env.delete_pod(n).await;
    let exit = pod.final_exit().expect("it exited within the grace period");
    assert!(exit.success(), "{exit:?}\n{}", pod.logs());
    let successor = env.wait_new_leader(&leader, secs(30)).await;
    recorder.abort();
    let versions = seen.lock().unwrap().clone();
    let released = versions
        .iter()
        .position(|(holder, duration)| holder.is_none() && *duration == Some(1));
    let taken = versions
        .iter()
        .position(|(holder, _)| holder.as_deref() == Some(successor.as_str()));
    assert!(
        matches!((released, taken), (Some(r), Some(t)) if r < t),
        "released, then taken: {versions:?}"
    );
}

/// A 60 s API outage -> no crash, no lost record, and work
/// resumes within 5 s of recovery.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_api_outage_loses_nothing() {
    let resize = json!({"enabled": true, "expansion": {"step": "64Mi"}});
    let env = Env::start(data_volume_cluster(128 * MIB, resize).instances(2)).await;
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
    // Throughout the outage no manager exits or fails its liveness probe,
    // /readyz stays 200 on every pod (a sidecar's readiness would take
    // PostgreSQL out of its Service), and the API's trouble is a metric.
    let mut api_down_seen = [false; 2];
    while Instant::now() < outage_end {
        for (n, down_seen) in api_down_seen.iter_mut().enumerate() {
            let m = env.manager(n);
            assert_eq!(m.restart_count(), 0, "{} restarted\n{}", m.pod, env.logs());
            let ready = get_status(&m.url("/readyz")).await;
            assert_eq!(ready, Some(200), "{} not ready during the outage", m.pod);
            let up = metric(&env.metrics(n).await, "cnpg_autoresize_api_up", &[]);
            *down_seen |= up == Some(0.0);
        }
        tokio::time::sleep(
            Duration::from_millis(500).min(outage_end.saturating_duration_since(Instant::now())),
        )
        .await;
    }
    let leader = env.leader().await.expect("a leader after the outage");
    assert!(
        api_down_seen[env.index_of(&leader)],
        "the leader saw the API down"
    );
    for n in 0..2 {
        let history = env.manager(n).readiness_history();
        assert!(
            history.iter().all(|c| c.ready),
            "{}: {history:?}",
            env.pod(n)
        );
    }
    // Work resumes after recovery (how fast is measured in benches/).
    env.wait_request("pg-1", 192 * MIB, secs(30)).await;
    wait_until("the record", secs(10), || async {
        let events = env.resize_events().await;
        (successes(&events, "pg-1") == 1)
            .then_some(())
            .ok_or(format!("{events:?}"))
    })
    .await;
}

/// The process dies between the PVC patch and the status
/// mirror -> after restart the record exists exactly once and the budget holds.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crash_between_the_resize_and_its_mirror_loses_nothing() {
    let resize = json!({"enabled": true, "expansion": {"step": "64Mi"}, "strategy": {"maxActionsPerDay": 1}});
    let mut env = Env::start(data_volume_cluster(128 * MIB, resize)).await;
    env.wait_leader(secs(15)).await;
    // Step 1 fails (the PVC patch): nothing happens, nothing is recorded.
    env.scenario
        .sandbox
        .faults()
        .set_error_rate("patch", "persistentvolumeclaims", 1.0, 500);
    let data = env.scenario.instances[0].data().volume.clone();
    data.fill_to_percent(85.0).unwrap();
    // The patch was tried and failed; the passes after it change nothing.
    let failed = [
        ("verb", "patch"),
        ("resource", "persistentvolumeclaims"),
        ("code", "500"),
    ];
    wait_until("a failed resize patch", secs(20), || async {
        let n = metric(
            &env.metrics(0).await,
            "cnpg_autoresize_api_requests_total",
            &failed,
        );
        n.filter(|n| *n >= 1.0).map(|_| ()).ok_or(format!("{n:?}"))
    })
    .await;
    env.hold_request("pg-1", 128 * MIB, 2).await;
    assert!(env.resize_events().await.is_empty());
    env.kill_pod(0).await;

    // Step 2 fails (the status mirror) and the process dies right after.
    env.scenario.sandbox.faults().clear();
    env.scenario
        .sandbox
        .faults()
        .set_error_rate("patch", "clusters/status", 1.0, 500);
    env.start_pod(0);
    env.wait_request("pg-1", 192 * MIB, secs(30)).await;
    env.kill_pod(0).await;
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
    env.start_pod(0);
    wait_until("the repaired record", secs(20), || async {
        let events = env.resize_events().await;
        (successes(&events, "pg-1") == 1)
            .then_some(())
            .ok_or(format!("{events:?}"))
    })
    .await;
    env.wait_blocked(0, "data", "rate_limit", secs(20)).await;
    env.hold_request("pg-1", 192 * MIB, 2).await;
    assert_eq!(successes(&env.resize_events().await, "pg-1"), 1);
}

/// Invalid values met at runtime block the volume, loudly (and the seed's
/// silent quantity fallback and `step: 0`).
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
    env.hold_request("pg-1", 128 * MIB, 2).await;
    env.hold_request("pg-1-wal", 64 * MIB, 2).await;
}

/// A StorageClass without expansion -> one clear event, no
/// retry storm; and the manager never asks to shrink. The refusal is
/// remembered even while its record cannot reach the status (or has not
/// come back through the watch yet): here every status write fails at first.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_resize_is_reported_once_and_not_retried() {
    let env = Env::start(
        data_volume_cluster(
            128 * MIB,
            json!({"enabled": true, "expansion": {"step": "64Mi"}}),
        )
        .expandable(false),
    )
    .await;
    let faults = env.scenario.sandbox.faults();
    faults.set_error_rate("patch", "clusters/status", 1.0, 500);
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
    // The passes after the refusal would retry if anything did.
    env.wait_passes(3, secs(30)).await;
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
    // Once the status can be written, the failure is recorded, once.
    faults.set_error_rate("patch", "clusters/status", 0.0, 500);
    wait_until("the failure in the status", secs(20), || async {
        let events = env.resize_events().await;
        (events.iter().filter(|e| e["result"] == "failure").count() == 1)
            .then_some(())
            .ok_or(format!("{events:?}"))
    })
    .await;
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
