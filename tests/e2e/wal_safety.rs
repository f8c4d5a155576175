//! Growth that would only hide a WAL problem is refused; blindness fails
//! open, loudly (docs/reference/decision.md#9-wal-safety).

use crate::common::*;
use cnpg_testbed::cluster::VolumeRole;
use cnpg_testbed::scenario::{ManagerOptions, Scenario};
use serde_json::json;

fn wal_volume(env: &Env) -> &cnpg_testbed::Volume {
    &env.scenario.instances[0]
        .volume(&VolumeRole::Wal)
        .unwrap()
        .volume
}

/// At runtime: a single-volume cluster without acknowledgeWALRisk.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn single_volume_without_acknowledgement_is_blocked() {
    let env = Env::start(Scenario::builder("pg").data(128 * MIB, json!({"enabled": true}))).await;
    env.scenario.instances[0]
        .data()
        .volume
        .fill_to_percent(85.0)
        .unwrap();
    env.wait_blocked(0, "data", "single_volume_no_ack", secs(30))
        .await;
    let (_, kind, note) = env.wait_kube_event("AutoResizeBlocked", secs(10)).await;
    assert_eq!(kind, "Warning");
    assert!(note.contains("single_volume_no_ack"), "{note}");
    env.hold_request("pg-1", 128 * MIB, 2).await;
}

/// Archiving failing -> the WAL volume is not grown.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failing_archiving_blocks_wal_growth_until_it_recovers() {
    let wal = json!({"enabled": true, "expansion": {"step": "64Mi"}});
    let env = Env::start(
        Scenario::builder("pg")
            .data(128 * MIB, json!({"enabled": false}))
            .wal(128 * MIB, wal),
    )
    .await;
    let server = env.scenario.server("pg-1").unwrap();
    server.set_archive_failing(true).unwrap();
    wait_archiver(server, true).await;
    // The problem is seen before the disk fills, as in real life.
    env.wait_metric(0, "cnpg_wal_archive_healthy", &[], 0.0, secs(10))
        .await;
    wal_volume(&env).fill_to_percent(85.0).unwrap();
    env.wait_blocked(0, "wal", "archive_unhealthy", secs(30))
        .await;
    env.hold_request("pg-1-wal", 128 * MIB, 2).await;
    let (_, _, note) = env.wait_kube_event("AutoResizeBlocked", secs(10)).await;
    assert!(note.contains("archive"), "{note}");

    // Archiving recovers -> the volume may grow. (Room first: PostgreSQL
    // needs space for the segments the recovery check switches to.)
    wal_volume(&env).clear_fill().unwrap();
    server.set_archive_failing(false).unwrap();
    wait_archiver(server, false).await;
    env.wait_metric(0, "cnpg_wal_archive_healthy", &[], 1.0, secs(10))
        .await;
    wal_volume(&env).fill_to_percent(85.0).unwrap();
    env.wait_request("pg-1-wal", 192 * MIB, secs(60)).await;
}

/// An inactive slot retaining more than maxSlotRetentionBytes blocks; the
/// slot shows in diskStatus (and the seed's missed-slot bug).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn inactive_slot_retention_blocks_and_is_reported() {
    let wal = json!({"enabled": true, "strategy": {"walSafetyPolicy": {"maxSlotRetentionBytes": 16777216}}});
    let env = Env::start(
        Scenario::builder("pg")
            .data(128 * MIB, json!({"enabled": false}))
            .wal(128 * MIB, wal),
    )
    .await;
    let server = env.scenario.server("pg-1").unwrap();
    server
        .create_inactive_physical_slot("abandoned")
        .await
        .unwrap();
    server.generate_wal(24 << 20).await.unwrap();
    wait_until("the retention seen by the manager", secs(10), || async {
        let text = env.metrics(0).await;
        let retained = metric(
            &text,
            "cnpg_wal_slot_retention_bytes",
            &[("slot_name", "abandoned")],
        )
        .unwrap_or(0.0);
        (retained > 16777216.0)
            .then_some(())
            .ok_or(retained.to_string())
    })
    .await;
    wal_volume(&env).fill_to_percent(85.0).unwrap();
    env.wait_metric(
        0,
        "cnpg_disk_resize_blocked",
        &[
            ("volume_type", "wal"),
            ("reason", "slot_retention_exceeded"),
        ],
        1.0,
        secs(30),
    )
    .await;
    env.wait_metric(0, "cnpg_wal_inactive_slots", &[], 1.0, secs(5))
        .await;
    let text = env.metrics(0).await;
    let retained = metric(
        &text,
        "cnpg_wal_slot_retention_bytes",
        &[("slot_name", "abandoned")],
    )
    .unwrap();
    assert!(retained > 16777216.0, "{retained}");
    wait_until("the slot in diskStatus", secs(15), || async {
        let status = env.status().await;
        let health = &status["diskStatus"]["instances"]["pg-1"]["walHealth"];
        let slot = health["inactiveSlots"]
            .as_array()
            .and_then(|s| s.iter().find(|s| s["slotName"] == "abandoned").cloned());
        match slot {
            Some(s)
                if health["inactiveSlotCount"] == 1
                    && s["retentionBytes"].as_u64() > Some(16777216) =>
            {
                Ok(())
            }
            _ => Err(health.to_string()),
        }
    })
    .await;
    env.hold_request("pg-1-wal", 128 * MIB, 2).await;
}

/// A `.ready` backlog above maxPendingWALFiles blocks.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ready_backlog_blocks() {
    let wal = json!({"enabled": true, "strategy": {"walSafetyPolicy": {"requireArchiveHealthy": false, "maxPendingWALFiles": 1}}});
    let env = Env::start(
        Scenario::builder("pg")
            .data(128 * MIB, json!({"enabled": false}))
            .wal(128 * MIB, wal),
    )
    .await;
    let server = env.scenario.server("pg-1").unwrap();
    server.set_archive_failing(true).unwrap();
    for _ in 0..3 {
        server.generate_wal(1 << 20).await.unwrap();
    }
    assert!(server.pending_ready_files().unwrap() > 1);
    wait_until("the backlog seen by the manager", secs(10), || async {
        let pending =
            metric(&env.metrics(0).await, "cnpg_wal_pending_archive_files", &[]).unwrap_or(0.0);
        (pending >= 2.0).then_some(()).ok_or(pending.to_string())
    })
    .await;
    wal_volume(&env).fill_to_percent(85.0).unwrap();
    env.wait_blocked(0, "wal", "pending_wal_exceeded", secs(30))
        .await;
    let pending = metric(&env.metrics(0).await, "cnpg_wal_pending_archive_files", &[]).unwrap();
    assert!(pending >= 2.0, "{pending}");
    env.hold_request("pg-1-wal", 128 * MIB, 2).await;
}

/// PostgreSQL stopped -> the resize still happens, with a Warning event (and
/// the seed's silent fail-open).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_down_fails_open_with_a_warning() {
    let wal = json!({"enabled": true, "expansion": {"step": "64Mi"}});
    let env = Env::start(
        Scenario::builder("pg")
            .data(128 * MIB, json!({"enabled": false}))
            .wal(128 * MIB, wal),
    )
    .await;
    env.scenario.server("pg-1").unwrap().stop().await.unwrap();
    env.wait_metric(0, "cnpg_wal_health_up", &[], 0.0, secs(20))
        .await;
    wal_volume(&env).fill_to_percent(85.0).unwrap();
    env.wait_request("pg-1-wal", 192 * MIB, secs(30)).await;
    let (_, kind, note) = env
        .wait_kube_event("AutoResizeWALHealthUnavailable", secs(10))
        .await;
    assert_eq!(kind, "Warning");
    assert!(note.contains("pg-1-wal"), "{note}");
}

/// The slot query hangs -> the WAL check returns within the
/// slot-query timeout, slot data is "unknown" (not "none"), and probes and
/// metrics carry on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hanging_slot_query_blocks_nothing() {
    let wal = json!({"enabled": true, "expansion": {"step": "64Mi"},
        "strategy": {"walSafetyPolicy": {"maxSlotRetentionBytes": 1048576}}});
    let options = ManagerOptions {
        slot_query_timeout: "1s".into(),
        ..ManagerOptions::default()
    };
    let env = Env::start_with(
        Scenario::builder("pg")
            .data(128 * MIB, json!({"enabled": false}))
            .wal(128 * MIB, wal),
        options,
    )
    .await;
    let server = env.scenario.server("pg-1").unwrap();
    wait_until("a first WAL check", secs(20), || async {
        let s = get_json(&env.manager(0).url("/v1/status"))
            .await
            .ok_or("no answer")?;
        (s["report"]["walHealth"]["slotsKnown"] == true)
            .then_some(())
            .ok_or(s.to_string())
    })
    .await;
    let lock = server.lock_slots_view().await.unwrap();
    let status = wait_until("slots unknown", secs(20), || async {
        let s = get_json(&env.manager(0).url("/v1/status"))
            .await
            .ok_or("no answer")?;
        (s["report"]["walHealth"]["slotsKnown"] == false)
            .then_some(s.clone())
            .ok_or(s.to_string())
    })
    .await;
    // The rest of the check still ran.
    assert_eq!(status["report"]["walHealth"]["archiveHealthy"], true);
    // Probes keep going while the slot view stays locked.
    let before = status["version"].as_u64().unwrap();
    wal_volume(&env).fill_to_percent(85.0).unwrap();
    wait_until("a newer probe", secs(5), || async {
        let s = get_json(&env.manager(0).url("/v1/status"))
            .await
            .ok_or("no answer")?;
        (s["version"].as_u64() > Some(before))
            .then_some(())
            .ok_or(s.to_string())
    })
    .await;
    // Unknown slots fail open: the WAL volume grows, with the warning event.
    env.wait_request("pg-1-wal", 192 * MIB, secs(30)).await;
    env.wait_kube_event("AutoResizeWALHealthUnavailable", secs(10))
        .await;
    // Every WAL check finished within the slot timeout plus the other queries.
    let text = env.metrics(0).await;
    let count = metric(
        &text,
        "cnpg_autoresize_wal_check_duration_seconds_count",
        &[],
    )
    .unwrap();
    let slow = count
        - metric(
            &text,
            "cnpg_autoresize_wal_check_duration_seconds_bucket",
            &[("le", "5")],
        )
        .unwrap();
    assert!(
        count >= 2.0 && slow == 0.0,
        "count {count}, slower than 5s: {slow}"
    );
    lock.release().await.unwrap();
}
