//! What no other resizer does — refused expansions end cleanly, the growth
//! forecast resizes early and sizes the step, Recommend mode reports without
//! touching anything, cooldowns hold, exhausted inodes trigger. The fields only a policy can
//! carry are set through an AutoResizePolicy (the fork's CRD prunes them).

use crate::common::*;
use cnpg_testbed::scenario::ManagerOptions;
use cnpg_testbed::ExpansionMode;
use serde_json::{json, Value};
use std::time::Duration;

/// A one-instance cluster without PostgreSQL whose data volume a policy governs.
async fn with_policy(data_bytes: u64, resize: Value, options: ManagerOptions) -> Env {
    let env = Env::start_with(
        data_volume_cluster(data_bytes, json!({"enabled": false})),
        options,
    )
    .await;
    // The cluster has a WAL volume: the policy says so (`walStorage`), or
    // the API server takes it to govern a single-volume cluster.
    env.create_policy(
        "pg",
        json!({"cluster": "pg", "storage": {"resize": resize}, "walStorage": {}}),
    )
    .await;
    env
}

fn records(pvc: &k8s_openapi::api::core::v1::PersistentVolumeClaim) -> Vec<Value> {
    pvc.metadata
        .annotations
        .as_ref()
        .and_then(|a| a.get("autoresize.cnpg.io/events"))
        .and_then(|t| serde_json::from_str(t).ok())
        .unwrap_or_default()
}

/// The storage refuses the expansion -> blocked
/// `expansion_failed`, one AutoResizeFailed event quoting the backend, the
/// record marked `failure`, no retry until the request changes; a human's
/// recovery (a lower request above the capacity) lets it go on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_expansion_is_blocked_and_not_retried() {
    let resize = json!({"enabled": true, "expansion": {"step": "64Mi"}, "strategy": {"maxActionsPerDay": 2}});
    let env = Env::start(data_volume_cluster(128 * MIB, resize)).await;
    let backend = "disk quota exceeded for volume type gp3 (max 160Mi)";
    env.scenario.set_expansion_mode(
        "pg-1",
        ExpansionMode::Fail {
            message: backend.into(),
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
    env.wait_metric(
        0,
        "cnpg_disk_resize_stuck",
        &[("volume_type", "data")],
        1.0,
        secs(10),
    )
    .await;
    let (_, kind, note) = env.wait_kube_event("AutoResizeFailed", secs(15)).await;
    assert_eq!(kind, "Warning");
    assert!(note.contains(backend), "{note}");
    wait_until("the record marked failure", secs(15), || async {
        let pvc = env
            .scenario
            .pvcs()
            .get("pg-1")
            .await
            .map_err(|e| e.to_string())?;
        let r = records(&pvc);
        (r.len() == 1 && r[0]["result"] == "failure")
            .then_some(())
            .ok_or(format!("{r:?}"))
    })
    .await;
    // No retry while the request stays: exactly one resize patch went out
    // (and one more marking its record failed), over the passes that would
    // have retried.
    env.wait_passes(3, secs(30)).await;
    let patches = metric(
        &env.metrics(0).await,
        "cnpg_autoresize_api_requests_total",
        &[
            ("verb", "patch"),
            ("resource", "persistentvolumeclaims"),
            ("code", "200"),
        ],
    );
    assert_eq!(patches, Some(2.0));
    let refused: Vec<_> = env
        .kube_events()
        .await
        .into_iter()
        .filter(|e| e.0 == "AutoResizeFailed")
        .collect();
    assert_eq!(refused.len(), 1, "{refused:?}");

    // Recovery, as the docs tell a human: lower the request to a size the
    // backend allows (above status.capacity), the resizer finishes it.
    env.scenario
        .set_expansion_mode("pg-1", ExpansionMode::Expand);
    let lower = json!({"spec": {"resources": {"requests": {"storage": "160Mi"}}}});
    env.scenario
        .pvcs()
        .patch(
            "pg-1",
            &Default::default(),
            &kube::api::Patch::Merge(&lower),
        )
        .await
        .expect("lowering above capacity is allowed since Kubernetes 1.34");
    wait_grown(&env.scenario.instances[0].data().volume, 160 * MIB).await;
    env.wait_metric(
        0,
        "cnpg_disk_resize_stuck",
        &[("volume_type", "data")],
        0.0,
        secs(20),
    )
    .await;
    // The refused resize used no budget: two more are allowed today.
    env.wait_metric(
        0,
        "cnpg_disk_resize_budget_remaining",
        &[("volume_type", "data")],
        2.0,
        secs(20),
    )
    .await;
}

/// A volume filling at a steady rate grows when the forecast
/// says it fills within `timeToFull`, well before the usage threshold, and
/// with `horizon` the step covers the forecast growth. (The forecast's
/// history is shortened by hidden test flags: 40 s instead of 5 minutes.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_forecast_resizes_early_and_sizes_the_step() {
    let options = ManagerOptions {
        extra_args: vec![
            "--forecast-min-span".into(),
            "20s".into(),
            "--forecast-window".into(),
            "2m".into(),
        ],
        ..ManagerOptions::default()
    };
    let resize = json!({"enabled": true, "triggers": {"usageThreshold": 80, "timeToFull": "10m"},
        "expansion": {"step": "16Mi", "horizon": "10m"}, "strategy": {"maxActionsPerDay": 1}});
    let env = with_policy(512 * MIB, resize, options).await;
    let data = env.scenario.instances[0].data().volume.clone();
    // 1 MiB/s: about 8 minutes to fill; the forecast says so after 20 s.
    let writer = tokio::spawn(async move {
        loop {
            data.fill_bytes(256 << 10).unwrap();
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    });
    wait_until("the forecast's resize", secs(90), || async {
        let requested = env.requested("pg-1").await;
        (requested > 512 * MIB)
            .then_some(())
            .ok_or(requested.to_string())
    })
    .await;
    writer.abort();
    let used = env.scenario.instances[0].data().volume.stats().unwrap();
    let pct = used.used_bytes * 100 / (used.used_bytes + used.available_bytes);
    assert!(
        pct < 30,
        "resized at {pct}% used: the forecast, not the threshold"
    );
    let pvc = env.scenario.pvcs().get("pg-1").await.unwrap();
    let record = records(&pvc).pop().unwrap();
    assert_eq!(record["trigger"], "forecast", "{record}");
    // The forecast's history is the manager's own (about its 20 s of
    // samples): the 10m horizon counts for 4 times that, some 80Mi at
    // ~1 MiB/s, far more than the 16Mi step and far less than 10 minutes.
    let grown = env.requested("pg-1").await - 512 * MIB;
    assert!(
        (48 * MIB..=600 * MIB).contains(&grown),
        "grew by {} MiB",
        grown / MIB
    );
}

/// `horizon: 24h` and a short burst: the step covers at most four times
/// the history behind the rate (`historySeconds`, which `/v1/status`
/// reports), never 24 h of a rate seen for seconds. (The forecast's
/// minimum history is shortened by a hidden test flag: 5 s, not 5 minutes.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_short_burst_buys_at_most_four_times_its_history() {
    let options = ManagerOptions {
        extra_args: vec![
            "--forecast-min-span".into(),
            "5s".into(),
            "--forecast-window".into(),
            "1m".into(),
        ],
        ..ManagerOptions::default()
    };
    let resize = json!({"enabled": true, "triggers": {"usageThreshold": 80},
        "expansion": {"step": "16Mi", "horizon": "24h", "limit": "8Gi"},
        "strategy": {"maxActionsPerDay": 1}});
    let started = std::time::Instant::now();
    let env = with_policy(128 * MIB, resize, options).await;
    let data = env.scenario.instances[0].data().volume.clone();
    // The burst: 4 MiB/s until the usage threshold fires.
    let writer = tokio::spawn(async move {
        loop {
            data.fill_bytes(1 << 20).unwrap();
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    });
    let status = env.manager(0).url("/v1/status");
    let history = wait_until(
        "a forecast with its history in /v1/status",
        secs(60),
        || async {
            let s = get_json(&status).await.ok_or("no answer")?;
            let data = &s["report"]["data"];
            match (
                data["growthBytesPerSecond"].as_f64(),
                data["historySeconds"].as_f64(),
            ) {
                (Some(_), Some(h)) => Ok(h),
                _ => Err(data.to_string()),
            }
        },
    )
    .await;
    let alive = started.elapsed().as_secs_f64();
    assert!(
        history > 0.0 && history <= alive,
        "historySeconds {history} for a manager alive {alive:.1}s"
    );
    wait_until("the burst's resize", secs(90), || async {
        let requested = env.requested("pg-1").await;
        (requested > 128 * MIB)
            .then_some(())
            .ok_or(requested.to_string())
    })
    .await;
    let alive = started.elapsed().as_secs_f64();
    writer.abort();
    // The manager has seen at most `alive` seconds of a stream of about
    // 4 MiB/s (twice that allowed for the fit's jitter): four times that is
    // a few hundred MiB. 24 h of it would have gone to the 8Gi limit.
    let grown = env.requested("pg-1").await - 128 * MIB;
    let bound = (4.0 * alive * 8.0 * MIB as f64) as u64;
    assert!(
        grown >= 16 * MIB && grown <= bound,
        "grew by {} MiB after {alive:.0}s of history (bound {} MiB)",
        grown / MIB,
        bound / MIB
    );
}

/// `mode: Recommend` decides and reports (metric, event) but
/// patches nothing, records nothing, uses no budget.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn recommend_mode_reports_and_never_patches() {
    let resize = json!({"enabled": true, "expansion": {"step": "64Mi"}, "strategy": {"mode": "Recommend", "maxActionsPerDay": 1}});
    let env = with_policy(128 * MIB, resize, ManagerOptions::default()).await;
    env.scenario.instances[0]
        .data()
        .volume
        .fill_to_percent(85.0)
        .unwrap();
    env.wait_metric(
        0,
        "cnpg_disk_resize_recommended_bytes",
        &[("volume_type", "data")],
        (192 * MIB) as f64,
        secs(30),
    )
    .await;
    let (_, kind, note) = env.wait_kube_event("AutoResizeRecommended", secs(15)).await;
    assert_eq!(kind, "Normal");
    assert!(note.contains("192Mi"), "{note}");
    env.hold_request("pg-1", 128 * MIB, 3).await;
    let pvc = env.scenario.pvcs().get("pg-1").await.unwrap();
    assert!(records(&pvc).is_empty());
    assert!(env.policy_status("pg").await["autoResizeEvents"].is_null());
    env.wait_metric(
        0,
        "cnpg_disk_resize_budget_remaining",
        &[("volume_type", "data")],
        1.0,
        secs(5),
    )
    .await;
}

/// `cooldown: 1h` -> a second crossing within the hour is
/// blocked `cooldown`, with the next action time in the metric.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cooldown_blocks_a_second_crossing() {
    let resize = json!({"enabled": true, "expansion": {"step": "64Mi"}, "strategy": {"cooldown": "1h", "maxActionsPerDay": 5}});
    let env = with_policy(128 * MIB, resize, ManagerOptions::default()).await;
    let data = env.scenario.instances[0].data().volume.clone();
    data.fill_to_percent(85.0).unwrap();
    env.wait_request("pg-1", 192 * MIB, secs(30)).await;
    let resized_at = jiff::Timestamp::now();
    wait_grown(&data, 192 * MIB).await;
    data.fill_to_percent(90.0).unwrap();
    env.wait_blocked(0, "data", "cooldown", secs(30)).await;
    let next = metric(
        &env.metrics(0).await,
        "cnpg_disk_resize_next_action_timestamp_seconds",
        &[("volume_type", "data")],
    )
    .unwrap();
    let in_an_hour = (resized_at + jiff::SignedDuration::from_hours(1)).as_second() as f64;
    assert!(
        (next - in_an_hour).abs() < 120.0,
        "next action {next}, expected about {in_an_hour}"
    );
    env.hold_request("pg-1", 192 * MIB, 2).await;
}

/// The inode trigger, on a filesystem whose inodes really run out.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exhausted_inodes_trigger_a_resize() {
    let resize = json!({"enabled": true, "triggers": {"inodeUsageThreshold": 90}, "expansion": {"step": "64Mi"}});
    let env = with_policy(128 * MIB, resize, ManagerOptions::default()).await;
    let data = env.scenario.instances[0].data().volume.clone();
    data.fill_inodes_to_percent(95.0).unwrap();
    let stats = data.stats().unwrap();
    assert!(
        stats.used_bytes * 100 < 50 * (stats.used_bytes + stats.available_bytes),
        "bytes are not the trigger"
    );
    env.wait_request("pg-1", 192 * MIB, secs(30)).await;
    let pvc = env.scenario.pvcs().get("pg-1").await.unwrap();
    assert_eq!(records(&pvc)[0]["trigger"], "inodes");
    wait_grown(&data, 192 * MIB).await;
    let grown = data.stats().unwrap();
    assert!(
        grown.inodes_total > stats.inodes_total,
        "the inodes grow with the volume"
    );
}
