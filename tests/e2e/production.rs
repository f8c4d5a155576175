//! The production defects a real API server, the Go implementation's data
//! and an SRE's reading found: each test failed on the code before the fix.

use crate::common::*;
use cnpg_testbed::cluster::VolumeRole;
use cnpg_testbed::scenario::{ManagerOptions, Scenario};
use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, Patch, PatchParams, PostParams};
use serde_json::{json, Value};
use std::time::{Duration, Instant};

/// Our identity's writes of the Cluster status (the CNPG stand-in writes too).
fn status_patches(env: &Env) -> u64 {
    env.scenario
        .sandbox
        .requests()
        .iter()
        .filter(|r| {
            r.identity == env.scenario.identity
                && r.verb == "patch"
                && r.resource == "clusters/status"
        })
        .map(|r| r.count)
        .sum()
}

/// The Go implementation wrote a zero time as `null`, which the
/// fork's CRD prunes: the entry has no timestamp. Planning goes on, the
/// entry counts toward no budget, is logged once and is gone after the next
/// status write.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn foreign_status_entries_do_not_stop_planning() {
    let resize = json!({"enabled": true, "expansion": {"step": "64Mi"}, "strategy": {"maxActionsPerDay": 1}});
    let env = Env::start(data_volume_cluster(128 * MIB, resize)).await;
    let foreign = json!({"status": {"autoResizeEvents": [{"timestamp": null, "instanceName": "pg-1", "pvcName": "pg-1",
        "volumeType": "data", "previousSize": "96Mi", "newSize": "128Mi", "result": "success"}]}});
    env.scenario
        .clusters()
        .patch_status("pg", &PatchParams::default(), &Patch::Merge(&foreign))
        .await
        .expect("the Go implementation's status write");
    let stored = env.resize_events().await;
    assert_eq!(stored.len(), 1);
    assert!(
        stored[0].get("timestamp").is_none(),
        "the CRD pruned the null: {stored:?}"
    );

    env.scenario.instances[0]
        .data()
        .volume
        .fill_to_percent(85.0)
        .unwrap();
    env.wait_request("pg-1", 192 * MIB, secs(30)).await;
    wait_until(
        "the foreign entry dropped and ours mirrored",
        secs(20),
        || async {
            let events = env.resize_events().await;
            let ours = events.iter().filter(|e| e["newSize"] == "192Mi").count();
            let foreign = events
                .iter()
                .filter(|e| e.get("timestamp").is_none())
                .count();
            (ours == 1 && foreign == 0)
                .then_some(())
                .ok_or(format!("{events:?}"))
        },
    )
    .await;
    let logs = env.manager(0).logs();
    assert_eq!(
        logs.matches("cannot be read").count(),
        1,
        "logged once\n{logs}"
    );
}

/// ext4 shows less than its device (a 64Mi device: ~55 MiB),
/// so after a small step the filesystem is still smaller than the old PVC
/// size. The next crossing must resize again, never a permanent
/// `resize_in_progress`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_small_step_on_ext4_resizes_again_once_the_filesystem_grew() {
    let resize =
        json!({"enabled": true, "expansion": {"step": "4Mi"}, "strategy": {"maxActionsPerDay": 3}});
    let env = Env::start(data_volume_cluster(64 * MIB, resize)).await;
    let data = env.scenario.instances[0].data().volume.clone();
    assert!(data.filesystem_total_bytes() < 60 * MIB, "ext4-shaped");
    data.fill_to_percent(90.0).unwrap();
    env.wait_request("pg-1", 68 * MIB, secs(30)).await;
    wait_grown(&data, 68 * MIB).await;
    assert!(
        data.stats().unwrap().total_bytes < 64 * MIB,
        "still below the old request"
    );
    data.fill_to_percent(90.0).unwrap();
    env.wait_request("pg-1", 72 * MIB, secs(30)).await;
    env.wait_metric(
        0,
        "cnpg_disk_resize_stuck",
        &[("volume_type", "data")],
        0.0,
        secs(10),
    )
    .await;
}

/// A slot that is dropped, a PostgreSQL that stops, an
/// instance that is removed disappear from `status.diskStatus` and from the
/// metrics within a status interval; then nothing is written while nothing
/// changes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn what_is_gone_disappears_from_disk_status_and_metrics() {
    let options = ManagerOptions {
        extra_args: vec!["--status-interval".into(), "2s".into()],
        ..ManagerOptions::default()
    };
    let env = Env::start_with(
        Scenario::builder("pg")
            .instances(2)
            .data(128 * MIB, json!({"enabled": true}))
            .wal(128 * MIB, json!({"enabled": true})),
        options,
    )
    .await;
    let primary = env.scenario.server("pg-1").unwrap();
    primary
        .create_inactive_physical_slot("gone_soon")
        .await
        .unwrap();
    let slot_in_status = |status: &Value| {
        status["diskStatus"]["instances"]["pg-1"]["walHealth"]["inactiveSlots"]
            .as_array()
            .is_some_and(|s| s.iter().any(|s| s["slotName"] == "gone_soon"))
    };
    wait_until("the slot in diskStatus", secs(30), || async {
        let status = env.status().await;
        slot_in_status(&status)
            .then_some(())
            .ok_or(status["diskStatus"].to_string())
    })
    .await;
    let slot_metric = [("slot_name", "gone_soon")];
    wait_until("the slot's metric", secs(10), || async {
        metric(
            &env.metrics(0).await,
            "cnpg_wal_slot_retention_bytes",
            &slot_metric,
        )
        .map(|_| ())
        .ok_or("absent".to_string())
    })
    .await;

    let client = primary.connect().await.unwrap();
    client
        .execute("SELECT pg_drop_replication_slot('gone_soon')", &[])
        .await
        .unwrap();
    wait_until(
        "the slot gone from diskStatus and the metrics",
        secs(20),
        || async {
            let status = env.status().await;
            let text = env.metrics(0).await;
            let in_metrics = metric(&text, "cnpg_wal_slot_retention_bytes", &slot_metric).is_some();
            (!slot_in_status(&status) && !in_metrics)
                .then_some(())
                .ok_or(format!(
                    "metric {in_metrics}, status {}",
                    status["diskStatus"]
                ))
        },
    )
    .await;

    // PostgreSQL stops on pg-2: its WAL health is unknown, not stale.
    env.scenario.server("pg-2").unwrap().stop().await.unwrap();
    wait_until("pg-2's WAL health gone", secs(20), || async {
        let status = env.status().await;
        let text = env.metrics(1).await;
        let health = &status["diskStatus"]["instances"]["pg-2"]["walHealth"];
        let gauge = metric(&text, "cnpg_wal_archive_healthy", &[]);
        let up = metric(&text, "cnpg_wal_health_up", &[]);
        (health.is_null() && gauge.is_none() && up == Some(0.0))
            .then_some(())
            .ok_or(format!("{health} {gauge:?} {up:?}"))
    })
    .await;
    // pg-1's HA slot for pg-2 is inactive now: CNPG's own, never reported.
    assert_eq!(
        metric(&env.metrics(0).await, "cnpg_wal_inactive_slots", &[]),
        Some(0.0)
    );

    // The instance is removed: its pod goes (its PVCs stay, as with CNPG).
    let mut env = env;
    env.delete_pod(1).await;
    let pods: Api<Pod> = Api::namespaced(env.scenario.client.clone(), &env.scenario.namespace);
    pods.delete("pg-2", &Default::default()).await.unwrap();
    wait_until("pg-2 gone from diskStatus", secs(20), || async {
        let status = env.status().await;
        status["diskStatus"]["instances"]["pg-2"]
            .is_null()
            .then_some(())
            .ok_or(status["diskStatus"].to_string())
    })
    .await;
    // Then a steady state: no further writes over several status intervals,
    // each followed by a planning pass that would write.
    env.wait_pass_after(Instant::now() + Duration::from_secs(2), secs(30))
        .await;
    let before = status_patches(&env);
    env.wait_pass_after(Instant::now() + Duration::from_secs(6), secs(30))
        .await;
    env.wait_passes(2, secs(30)).await;
    assert_eq!(
        status_patches(&env),
        before,
        "writes in a steady state\n{}",
        env.logs()
    );
}

/// On a write-heavy cluster CloudNativePG's HA slots on a
/// standby lag behind by more than `maxSlotRetentionBytes` between two
/// advances. They are not abandoned slots: the standby's WAL volume still
/// grows, and no inactive slot is reported.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lagging_ha_slots_on_a_standby_do_not_block_its_wal_volume() {
    let wal = json!({"enabled": true, "expansion": {"step": "64Mi"},
        "strategy": {"walSafetyPolicy": {"maxSlotRetentionBytes": 1048576, "requireArchiveHealthy": false}}});
    let env = Env::start(
        Scenario::builder("pg")
            .instances(3)
            .slot_update_interval(Duration::from_secs(120))
            .data(128 * MIB, json!({"enabled": false}))
            .wal(128 * MIB, wal),
    )
    .await;
    let primary = env.scenario.server("pg-1").unwrap();
    let standby = env.scenario.server("pg-2").unwrap();
    env.scenario
        .pg
        .as_ref()
        .unwrap()
        .sync_slots_now()
        .await
        .unwrap();
    primary.generate_wal(16 * MIB).await.unwrap();
    let ha = env
        .scenario
        .pg
        .as_ref()
        .unwrap()
        .ha_slot_name("pg-3")
        .unwrap();
    wait_until("the standby's HA slot lags", secs(30), || async {
        let slots = standby.physical_slots().await.map_err(|e| e.to_string())?;
        let lag = slots
            .iter()
            .find(|s| s.name == ha && !s.active)
            .and_then(|s| s.retained_bytes)
            .unwrap_or(0);
        (lag > 2 * MIB as i64)
            .then_some(())
            .ok_or(format!("{slots:?}"))
    })
    .await;
    let wal_volume = env.scenario.instances[1]
        .volume(&VolumeRole::Wal)
        .unwrap()
        .volume
        .clone();
    wal_volume.fill_to_percent(85.0).unwrap();
    env.wait_request("pg-2-wal", 192 * MIB, secs(40)).await;
    env.wait_metric(1, "cnpg_wal_inactive_slots", &[], 0.0, secs(10))
        .await;
    // pg-2's decision metrics come from the leader's feed, which may reach
    // it after the patch: wait for the series, never blocked by the slot.
    env.wait_metric(
        1,
        "cnpg_disk_resize_blocked",
        &[
            ("volume_type", "wal"),
            ("reason", "slot_retention_exceeded"),
        ],
        0.0,
        secs(10),
    )
    .await;
    let status = env.status().await;
    assert_eq!(
        status["diskStatus"]["instances"]["pg-2"]["walHealth"]["inactiveSlotCount"],
        0
    );
}

/// A refused PVC patch (the `test` op saw another size) is followed by a
/// decision from the freshly read PVC — not by PATCH(422)+GET rounds until
/// the watch catches up.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_patch_is_followed_by_a_decision_from_the_fresh_pvc() {
    let resize = json!({"enabled": true, "expansion": {"step": "64Mi"}});
    let env = Env::start(data_volume_cluster(128 * MIB, resize)).await;
    env.wait_leader(secs(15)).await;
    let faults = env.scenario.sandbox.faults();
    // The planner's PVC watch will not catch up for a while.
    faults.set_latency_for("watch", "persistentvolumeclaims", Duration::from_secs(5));
    faults.drop_watches();
    let grow = json!({"spec": {"resources": {"requests": {"storage": "160Mi"}}}});
    env.scenario
        .pvcs()
        .patch("pg-1", &PatchParams::default(), &Patch::Merge(&grow))
        .await
        .expect("someone else grows the PVC");
    let data = env.scenario.instances[0].data().volume.clone();
    data.fill_to_percent(85.0).unwrap();
    let refused_patch = [
        ("verb", "patch"),
        ("resource", "persistentvolumeclaims"),
        ("code", "422"),
    ];
    env.wait_metric(
        0,
        "cnpg_autoresize_api_requests_total",
        &refused_patch,
        1.0,
        secs(20),
    )
    .await;
    // The outside resize completes; the next crossing grows from 160Mi.
    wait_grown(&data, 160 * MIB).await;
    data.fill_to_percent(85.0).unwrap();
    env.wait_request("pg-1", 224 * MIB, secs(40)).await;
    let text = env.metrics(0).await;
    let refused = metric(
        &text,
        "cnpg_autoresize_api_requests_total",
        &[
            ("verb", "patch"),
            ("resource", "persistentvolumeclaims"),
            ("code", "422"),
        ],
    );
    assert_eq!(
        refused,
        Some(1.0),
        "one refused patch, then the fresh copy\n{text}"
    );
}

/// A peer whose disk probe stopped is not fresh (its age is measured on its
/// own clock), and an answer from another pod at a peer's IP is ignored.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_frozen_peer_is_not_fresh_and_an_impostor_is_ignored() {
    let resize = json!({"enabled": true, "expansion": {"step": "64Mi"}});
    let mut env = Env::start(data_volume_cluster(128 * MIB, resize).instances(2)).await;
    let leader = env.wait_leader(secs(15)).await;
    let follower = 1 - env.index_of(&leader);
    let follower_pod = env.pod(follower).to_string();
    // The follower's disk probe freezes (it panics on every tick after its
    // first); its HTTP endpoint keeps answering with the first figures.
    env.delete_pod(follower).await;
    let frozen = ManagerOptions {
        extra_args: vec!["--fault-panic".into(), "disk_probe:1000".into()],
        ..env.options.clone()
    };
    env.scenario
        .start_manager_pod(binary(), follower, env.port, &frozen)
        .unwrap();
    let leader_url = env.manager(env.index_of(&leader)).url("/v1/decisions");
    let reason_of = |feed: &Value| {
        feed["instances"][&follower_pod]["volumes"][0]["reason"]
            .as_str()
            .map(str::to_string)
    };
    // Its endpoint answers, but what it serves is older and older.
    let status_url = env.manager(follower).url("/v1/status");
    wait_until("the peer's report to age", secs(30), || async {
        let status = get_json(&status_url).await.ok_or("no answer")?;
        let age = status["report"]["ageSeconds"].as_f64().unwrap_or(0.0);
        (age > 2.0).then_some(()).ok_or(status.to_string())
    })
    .await;
    // The leader judges it by that age, not by when its answer arrived.
    wait_until(
        "the frozen peer's volume is no_status",
        secs(15),
        || async {
            let feed = get_json(&leader_url).await.ok_or("no answer")?;
            (reason_of(&feed).as_deref() == Some("no_status"))
                .then_some(())
                .ok_or(feed.to_string())
        },
    )
    .await;
    // It stays so over the leader's next passes.
    let (_, start) = env.passes().await.expect("the leader answers");
    wait_until("three more passes, all no_status", secs(30), || async {
        let feed = get_json(&leader_url).await.unwrap_or_default();
        assert_eq!(reason_of(&feed).as_deref(), Some("no_status"), "{feed}");
        let passes = feed["passes"].as_u64().unwrap_or(0);
        (passes >= start + 3)
            .then_some(())
            .ok_or(passes.to_string())
    })
    .await;

    // An impostor at the peer's address claims the volume is full.
    let addr = env.manager(follower).addr;
    env.delete_pod(follower).await;
    let asked = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let impostor = tokio::spawn(serve_forever(
        addr,
        json!({"instance": "somebody-else", "version": 7, "probed": true, "report": {
            "data": {"totalBytes": 100, "usedBytes": 99, "availableBytes": 1},
            "walHealth": {"archiveHealthy": true}, "ageSeconds": 0.0}}),
        asked.clone(),
    ));
    // Once the leader has heard the impostor, its next passes would act on it.
    wait_until("the leader asks the impostor", secs(30), || async {
        let n = asked.load(std::sync::atomic::Ordering::SeqCst);
        (n >= 1).then_some(()).ok_or(n.to_string())
    })
    .await;
    env.hold_request(&follower_pod, 128 * MIB, 2).await;
    let feed = get_json(&leader_url).await.unwrap();
    assert_eq!(reason_of(&feed).as_deref(), Some("no_status"), "{feed}");
    impostor.abort();
}

/// Answers every request with `body` as JSON, counting them in `asked`.
async fn serve_forever(
    addr: std::net::SocketAddr,
    body: Value,
    asked: std::sync::Arc<std::sync::atomic::AtomicUsize>,
) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .expect("bind the impostor");
    let body = body.to_string();
    loop {
        let Ok((mut socket, _)) = listener.accept().await else {
            continue;
        };
        let body = body.clone();
        let asked = asked.clone();
        tokio::spawn(async move {
            let mut buf = [0u8; 4096];
            let _ = socket.read(&mut buf).await;
            asked.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            let answer = format!(
                "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                body.len()
            );
            let _ = socket.write_all(answer.as_bytes()).await;
        });
    }
}

/// When the leader cannot be reached over HTTP (a NetworkPolicy, a wrong
/// address), followers back off instead of reading the API twice a second,
/// and remove their decision gauges rather than export stale ones.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn followers_back_off_when_the_leader_cannot_be_reached() {
    let env =
        Env::start(data_volume_cluster(128 * MIB, json!({"enabled": true})).instances(3)).await;
    let leader = env.wait_leader(secs(15)).await;
    let followers: Vec<usize> = (0..3).filter(|n| env.pod(*n) != leader).collect();
    for n in &followers {
        env.wait_metric(
            *n,
            "cnpg_disk_resize_budget_remaining",
            &[("volume_type", "data")],
            3.0,
            secs(20),
        )
        .await;
    }
    // The leader's pod now names an address nobody listens on; followers
    // restarted after that look it up and cannot reach it.
    let pods: Api<Pod> = Api::namespaced(env.scenario.client.clone(), &env.scenario.namespace);
    let nowhere = json!({"status": {"podIP": "127.0.0.254", "podIPs": [{"ip": "127.0.0.254"}]}});
    pods.patch_status(&leader, &PatchParams::default(), &Patch::Merge(&nowhere))
        .await
        .unwrap();
    for n in &followers {
        env.crash(*n).await;
    }
    env.scenario.sandbox.reset_requests();
    let reset = Instant::now();
    // 3 lease durations (9 s) without an answer: no stale decision gauges.
    for n in &followers {
        wait_until("the decision gauges removed", secs(30), || async {
            let gauge = metric(
                &env.metrics(*n).await,
                "cnpg_disk_resize_budget_remaining",
                &[("volume_type", "data")],
            );
            gauge.is_none().then_some(()).ok_or(format!("{gauge:?}"))
        })
        .await;
    }
    // Backed off: a follower looks its leader's pod up at most once per
    // lease duration (3 s) and reads the Lease at most once per renew
    // interval (1 s). Without back-off both happen every 500 ms. Wait for
    // the lookups, then see how long they took.
    let count = |verb: &'static str, resource: &'static str, n: usize| {
        let agent = format!("(pod {})", env.pod(n));
        env.scenario
            .sandbox
            .requests()
            .iter()
            .filter(|r| r.user_agent.contains(&agent) && r.verb == verb && r.resource == resource)
            .map(|r| r.count)
            .sum::<u64>()
    };
    for n in &followers {
        let pod = env.pod(*n).to_string();
        for (verb, resource, calls, at_least) in [
            ("get", "pods", 3, Duration::from_secs(5)),
            ("get", "leases", 4, Duration::from_millis(2500)),
        ] {
            let took = wait_until(
                &format!("{calls} {verb} {resource} by {pod}"),
                secs(60),
                || async {
                    let c = count(verb, resource, *n);
                    (c >= calls).then_some(reset.elapsed()).ok_or(c.to_string())
                },
            )
            .await;
            assert!(
                took >= at_least,
                "{pod}: {calls} {verb} {resource} in {took:?}"
            );
        }
    }
    assert_eq!(
        env.leader().await.as_deref(),
        Some(leader.as_str()),
        "the leader still leads"
    );
}

/// Byte churn wakes nobody: a peer's report version and the leader's
/// decision feed move only on material changes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn byte_churn_wakes_nobody() {
    let env =
        Env::start(data_volume_cluster(256 * MIB, json!({"enabled": true})).instances(2)).await;
    let leader = env.wait_leader(secs(15)).await;
    let l = env.index_of(&leader);
    let follower = 1 - l;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let version = |url: String| async move {
        get_json(&url)
            .await
            .and_then(|v| v["version"].as_u64())
            .unwrap_or(0)
    };
    let status_url = env.manager(follower).url("/v1/status");
    let feed_url = env.manager(l).url("/v1/decisions");
    let (status_before, feed_before) = (
        version(status_url.clone()).await,
        version(feed_url.clone()).await,
    );
    // 2.5 MB in 100 KiB writes, every probe interval: about 2 MiB-steps.
    let volume = env.scenario.instances[follower].data().volume.clone();
    for _ in 0..25 {
        volume.fill_bytes(100 << 10).unwrap();
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    // Count once the churn has been seen: the follower probed the last
    // write, and the leader planned after hearing of it.
    let used = volume.stats().unwrap().used_bytes;
    wait_until("the last write probed", secs(10), || async {
        let s = get_json(&status_url).await.ok_or("no answer")?;
        let seen = s["report"]["data"]["usedBytes"].as_u64().unwrap_or(0);
        (seen >= used)
            .then_some(())
            .ok_or(format!("{seen} < {used}"))
    })
    .await;
    env.wait_passes(2, secs(30)).await;
    let status_moves = version(status_url).await - status_before;
    let feed_moves = version(feed_url).await - feed_before;
    assert!(
        status_moves <= 4,
        "{status_moves} report versions for 2.5 MB of churn"
    );
    assert!(
        feed_moves <= 2,
        "{feed_moves} feed versions without a decision change"
    );
}

/// Gauges of what cannot be read any more disappear instead of staying at
/// their last value.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gauges_of_an_unreadable_volume_disappear() {
    let dir = tempfile::tempdir().unwrap();
    let target = dir.path().join("ghost-target");
    std::fs::create_dir(&target).unwrap();
    let link = dir.path().join("ghost");
    std::os::unix::fs::symlink(&target, &link).unwrap();
    let options = ManagerOptions {
        extra_args: vec![format!("--tablespace=ghost={}", link.display())],
        ..ManagerOptions::default()
    };
    let env = Env::start_with(
        data_volume_cluster(64 * MIB, json!({"enabled": true})),
        options,
    )
    .await;
    let labels = [("volume_type", "tablespace"), ("tablespace", "ghost")];
    let present = || async { metric(&env.metrics(0).await, "cnpg_disk_total_bytes", &labels) };
    wait_until("the ghost volume's gauges", secs(15), || async {
        present().await.map(|_| ()).ok_or("absent".to_string())
    })
    .await;
    std::fs::remove_file(&link).unwrap();
    wait_until("the gauges gone", secs(10), || async {
        match present().await {
            None => Ok(()),
            Some(v) => Err(v.to_string()),
        }
    })
    .await;
    std::os::unix::fs::symlink(&target, &link).unwrap();
    wait_until("the gauges back", secs(10), || async {
        present().await.map(|_| ()).ok_or("absent".to_string())
    })
    .await;
}

/// A second resize of one PVC within the event series window updates the
/// one Event, whose note describes the latest resize.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_repeated_event_describes_the_latest_resize() {
    let resize = json!({"enabled": true, "expansion": {"step": "32Mi"}, "strategy": {"maxActionsPerDay": 3}});
    let env = Env::start(data_volume_cluster(128 * MIB, resize)).await;
    let data = env.scenario.instances[0].data().volume.clone();
    data.fill_to_percent(85.0).unwrap();
    env.wait_request("pg-1", 160 * MIB, secs(30)).await;
    wait_grown(&data, 160 * MIB).await;
    data.fill_to_percent(85.0).unwrap();
    env.wait_request("pg-1", 192 * MIB, secs(30)).await;
    let api: Api<k8s_openapi::api::events::v1::Event> =
        Api::namespaced(env.scenario.client.clone(), &env.scenario.namespace);
    wait_until(
        "one Event, two occurrences, the latest note",
        secs(15),
        || async {
            let events = api
                .list(&Default::default())
                .await
                .map_err(|e| e.to_string())?
                .items;
            let success: Vec<_> = events
                .iter()
                .filter(|e| e.reason.as_deref() == Some("AutoResizeSuccess"))
                .filter(|e| e.regarding.as_ref().and_then(|r| r.kind.as_deref()) == Some("Cluster"))
                .collect();
            let ok = success.len() == 1
                && success[0].series.as_ref().map(|s| s.count) == Some(2)
                && success[0]
                    .note
                    .as_deref()
                    .is_some_and(|n| n.contains("to 192Mi"));
            ok.then_some(()).ok_or(format!("{success:?}"))
        },
    )
    .await;
}

/// A watch refused while the manager leads (the Role changed under it; here
/// the API server answers the pod list and watch 403) is an error in the log
/// and a metric, not a silently empty store — and the manager turns inert:
/// the leader steps down, `cnpg_autoresize_config_valid` 0. Once the
/// permission is back, the preflight (every minute) finds it and the
/// manager leads again. (A Role that lacks it from the start: the manager
/// never leads; tests/e2e/inert.rs.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_watch_refused_while_leading_is_an_error_a_metric_and_makes_the_manager_inert() {
    let env = Env::start(data_volume_cluster(64 * MIB, json!({"enabled": true}))).await;
    let leader = env.wait_leader(secs(15)).await;
    let n = env.index_of(&leader);
    let pods = [("resource", "pods")];
    env.wait_metric(n, "cnpg_autoresize_watch_up", &pods, 1.0, secs(30))
        .await;
    let faults = env.scenario.sandbox.faults();
    faults.set_error_rate("list", "pods", 1.0, 403);
    faults.set_error_rate("watch", "pods", 1.0, 403);
    faults.drop_watches();
    env.wait_metric(n, "cnpg_autoresize_watch_up", &pods, 0.0, secs(30))
        .await;
    env.wait_metric(n, "cnpg_autoresize_config_valid", &[], 0.0, secs(30))
        .await;
    env.wait_metric(n, "cnpg_autoresize_is_leader", &[], 0.0, secs(30))
        .await;
    let logs = env.manager(n).logs();
    assert!(
        logs.lines()
            .any(|l| l.contains("watch failing") && l.contains("\"level\":\"error\"")),
        "{logs}"
    );
    assert!(
        logs.lines()
            .any(|l| l.contains("stays up inert") && l.contains("watch pods")),
        "{logs}"
    );
    faults.clear();
    env.wait_metric(n, "cnpg_autoresize_config_valid", &[], 1.0, secs(90))
        .await;
    env.wait_metric(n, "cnpg_autoresize_is_leader", &[], 1.0, secs(30))
        .await;
}

/// A policy watch that fails for another reason than "not served" or a
/// refusal (here the API server answers 500) leaves the configuration's
/// source unknown: the planner must not fall back to the Cluster's own
/// blocks, which a policy could contradict (a Recommend-mode policy, a
/// lower limit). It plans nothing. (A refusal makes the manager inert.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_policy_watch_plans_nothing_rather_than_guess_the_source() {
    let scenario = data_volume_cluster(
        64 * MIB,
        json!({"enabled": true, "strategy": {"walSafetyPolicy": {"acknowledgeWALRisk": true}}}),
    )
    .cluster_crd(fork_cluster_crd())
    .enforce_role(MANAGER_ROLE)
    .start()
    .await
    .expect("scenario starts");
    let faults = scenario.sandbox.faults();
    faults.set_error_rate("list", "autoresizepolicies", 1.0, 500);
    faults.set_error_rate("watch", "autoresizepolicies", 1.0, 500);
    let port = scenario.common_port().expect("a port");
    let env = Env::adopt(scenario, port, ManagerOptions::default()).await;
    env.wait_leader(secs(30)).await;
    env.scenario.instances[0]
        .data()
        .volume
        .fill_to_percent(90.0)
        .unwrap();
    env.wait_metric(
        0,
        "cnpg_autoresize_watch_up",
        &[("resource", "autoresizepolicies")],
        0.0,
        secs(30),
    )
    .await;
    // No pass runs here by design: hold well past the 5 s after which the
    // planner used to assume the fork, two 5 s timer ticks later.
    env.hold_request_for("pg-1", 64 * MIB, secs(10)).await;
    let text = env.metrics(0).await;
    assert_eq!(
        metric(
            &text,
            "cnpg_disk_resize_blocked",
            &[("volume_type", "data")]
        ),
        None,
        "no decision at all: {text}"
    );
    assert_eq!(
        metric(&text, "cnpg_autoresize_config_valid", &[]),
        Some(1.0),
        "a 500 is no refusal: {text}"
    );
}

/// CNPG's initdb and join Job pods carry the cluster label too: the leader
/// must not poll them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn job_pods_of_the_cluster_are_not_polled() {
    let env = Env::start(data_volume_cluster(64 * MIB, json!({"enabled": true}))).await;
    env.wait_leader(secs(15)).await;
    let ip = cnpg_testbed::next_loopback_ip().unwrap();
    let listener = tokio::net::TcpListener::bind((ip, env.port)).await.unwrap();
    let pods: Api<Pod> = Api::namespaced(env.scenario.client.clone(), &env.scenario.namespace);
    let job: Pod = serde_json::from_value(json!({
        "metadata": {"name": "pg-2-join", "labels": {"cnpg.io/cluster": "pg", "cnpg.io/jobRole": "join",
            "cnpg.io/instanceName": "pg-2"}},
        "spec": {"containers": [{"name": "join", "image": "ghcr.io/cloudnative-pg/postgresql:17"}]},
    }))
    .unwrap();
    pods.create(&PostParams::default(), &job).await.unwrap();
    let status = json!({"status": {"phase": "Running", "podIP": ip.to_string()}});
    pods.patch_status("pg-2-join", &PatchParams::default(), &Patch::Merge(&status))
        .await
        .unwrap();
    let polled = tokio::time::timeout(Duration::from_secs(6), listener.accept()).await;
    assert!(polled.is_err(), "the Job pod was polled");
}

/// An actor that panics is restarted and counted; one that keeps failing
/// turns /healthz red, and the kubelet restarts the container.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn panicking_actors_are_restarted_and_a_failing_one_restarts_the_pod() {
    let options = ManagerOptions {
        extra_args: vec![
            "--fault-panic".into(),
            "wal_health:2".into(),
            "--fault-panic".into(),
            "disk_probe:1000".into(),
        ],
        ..ManagerOptions::default()
    };
    let env = Env::start_with(
        data_volume_cluster(64 * MIB, json!({"enabled": true})),
        options,
    )
    .await;
    let env = &env;
    let restarts = |actor: &'static str| async move {
        metric(
            &env.metrics(0).await,
            "cnpg_autoresize_actor_restarts_total",
            &[("actor", actor)],
        )
    };
    env.wait_metric(
        0,
        "cnpg_autoresize_actor_restarts_total",
        &[("actor", "wal_health")],
        2.0,
        secs(30),
    )
    .await;
    assert!(restarts("disk_probe").await >= Some(1.0));
    // Five restarts in five minutes: the disk probe keeps failing.
    let url = env.manager(0).url("/healthz");
    wait_until("/healthz red", secs(60), || async {
        match get_status(&url).await {
            Some(503) => Ok(()),
            other => Err(format!("{other:?}")),
        }
    })
    .await;
    let body = get_text(&url).await.unwrap_or_default();
    assert!(body.contains("disk_probe"), "{body}");
    env.manager(0)
        .wait_for_restarts(1, secs(60))
        .await
        .expect("the kubelet's liveness probe restarts it");
    let cause = format!("{:?}", env.manager(0).restarts()[0].cause);
    assert!(cause.contains("LivenessProbe"), "{cause}");
}
