//! A whole cluster in one call: two instances with data, WAL and tablespace
//! volumes, PostgreSQL streaming, labelled objects in the API sandbox; a PVC
//! patched larger through the API grows its real filesystem; a shrink is refused.

use cnpg_testbed::cluster::VolumeRole;
use cnpg_testbed::scenario::Scenario;
use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, ListParams, Patch, PatchParams};
use serde_json::json;
use std::time::{Duration, Instant};

const MIB: u64 = 1 << 20;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_two_instance_cluster_grows_a_volume_through_the_api_and_refuses_a_shrink() {
    let scenario = Scenario::builder("tb")
        .instances(2)
        .data(128 * MIB, json!({"enabled": true}))
        .wal(128 * MIB, json!({"enabled": true}))
        .tablespace("idx", 64 * MIB, json!({"enabled": true}))
        .start()
        .await
        .unwrap();

    // The objects CNPG would have made, labelled as CNPG labels them.
    let pods: Api<Pod> = Api::namespaced(scenario.client.clone(), "default");
    let listed = pods
        .list(&ListParams::default().labels("cnpg.io/cluster=tb"))
        .await
        .unwrap();
    let mut ips: Vec<_> = listed
        .items
        .iter()
        .map(|p| p.status.as_ref().unwrap().pod_ip.clone().unwrap())
        .collect();
    ips.sort();
    ips.dedup();
    assert_eq!(ips.len(), 2, "each pod has its own address");
    let pvcs = scenario
        .pvcs()
        .list(&ListParams::default().labels("cnpg.io/cluster=tb"))
        .await
        .unwrap();
    let mut names: Vec<_> = pvcs
        .items
        .iter()
        .map(|p| p.metadata.name.clone().unwrap())
        .collect();
    names.sort();
    assert_eq!(
        names,
        [
            "tb-1",
            "tb-1-tbs-idx",
            "tb-1-wal",
            "tb-2",
            "tb-2-tbs-idx",
            "tb-2-wal"
        ]
    );
    let roles: Vec<_> = pvcs
        .items
        .iter()
        .map(|p| p.metadata.labels.as_ref().unwrap()["cnpg.io/pvcRole"].clone())
        .collect();
    assert!(roles.contains(&"PG_TABLESPACE".to_string()) && roles.contains(&"PG_WAL".to_string()));
    let cluster = scenario.clusters().get("tb").await.unwrap();
    assert_eq!(cluster.data["spec"]["tablespaces"][0]["name"], "idx");

    // PostgreSQL streams to the replica and uses the tablespace volume.
    let primary = scenario.server("tb-1").unwrap();
    let client = primary.connect().await.unwrap();
    let streaming: i64 = client
        .query_one("SELECT count(*) FROM pg_stat_replication", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(streaming, 1);

    // Fill a volume, then grow its PVC through the API: the filesystem grows.
    let instance = &scenario.instances[1];
    let wal = instance.volume(&VolumeRole::Wal).unwrap();
    wal.volume.fill_to_percent(85.0).unwrap();
    let before = wal.volume.stats().unwrap();
    let grow = json!({"spec": {"resources": {"requests": {"storage": "192Mi"}}}});
    scenario
        .pvcs()
        .patch(&wal.pvc, &PatchParams::default(), &Patch::Merge(&grow))
        .await
        .unwrap();
    // The filesystem of a 192Mi device: less than 192Mi on ext4 (metadata).
    let grown = wal.volume.total_bytes_after_grow(192 * MIB);
    assert!(grown > before.total_bytes, "{grown} vs {before:?}");
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let now = wal.volume.stats().unwrap();
        if now.total_bytes >= grown {
            assert!(
                now.used_bytes >= before.used_bytes,
                "files stay: {before:?} -> {now:?}"
            );
            assert!(now.percent_used() < 60.0, "{now:?}");
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the filesystem did not grow: {now:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // The kubelet stand-in grows the filesystem, then reports the capacity.
    eventually("the capacity reported", Duration::from_secs(10), || async {
        let pvc = scenario.pvcs().get(&wal.pvc).await.unwrap();
        pvc.status.unwrap().capacity.unwrap()["storage"].0 == "192Mi"
    })
    .await;

    // A shrink is refused, as a real API server refuses it.
    let shrink = json!({"spec": {"resources": {"requests": {"storage": "128Mi"}}}});
    let err = scenario
        .pvcs()
        .patch(&wal.pvc, &PatchParams::default(), &Patch::Merge(&shrink))
        .await
        .unwrap_err();
    match err {
        kube::Error::Api(status) => assert_eq!(status.code, 422, "{status:?}"),
        other => panic!("{other}"),
    }
    assert_eq!(scenario.requested_bytes(&wal.pvc).await.unwrap(), 192 * MIB);
}

/// Polls `f` every 100 ms until it returns true or `timeout` passes.
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

async fn grow(scenario: &Scenario, pvc: &str, bytes: u64) {
    let patch =
        json!({"spec": {"resources": {"requests": {"storage": format!("{}Mi", bytes / MIB)}}}});
    scenario
        .pvcs()
        .patch(pvc, &PatchParams::default(), &Patch::Merge(&patch))
        .await
        .unwrap();
    eventually(&format!("{pvc} grown"), Duration::from_secs(30), || async {
        let pvc = scenario.pvcs().get(pvc).await.unwrap();
        pvc.status
            .and_then(|s| s.capacity)
            .and_then(|c| c.get("storage").cloned())
            .is_some_and(|q| q.0 == format!("{}Mi", bytes / MIB))
    })
    .await;
}

/// CNPG rebuilds a replica with PVCs of `spec.storage.size`, which
/// auto-resizes never change: once the database outgrew it, the base
/// backup fails for lack of space — and succeeds once the new PVC is grown
/// (here from the test; in production by the leader's size parity, before
/// the new instance's own manager exists).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rebuilt_replica_gets_pvcs_at_spec_size_and_joins_once_grown() {
    use cnpg_testbed::JoinOptions;
    let mut scenario = Scenario::builder("rb")
        .instances(2)
        .data(128 * MIB, json!({"enabled": true}))
        .join_options(JoinOptions {
            retry_interval: Duration::from_secs(1),
            timeout: Duration::from_secs(180),
        })
        .start()
        .await
        .unwrap();
    // Auto-resizes grew both data volumes; the database outgrows 128Mi.
    grow(&scenario, "rb-1", 384 * MIB).await;
    grow(&scenario, "rb-2", 384 * MIB).await;
    let primary = scenario.server("rb-1").unwrap();
    let client = primary.connect().await.unwrap();
    client
        .batch_execute(
            "CREATE TABLE big AS SELECT g, repeat('x', 1000) AS v FROM generate_series(1, 90000) g;
             CHECKPOINT;",
        )
        .await
        .unwrap();
    let rows: i64 = client
        .query_one("SELECT count(*) FROM big", &[])
        .await
        .unwrap()
        .get(0);
    let old_uid = scenario.pvcs().get("rb-2").await.unwrap().metadata.uid;
    let old_ip = scenario.instance("rb-2").unwrap().ip;
    // rb-2's manager runs as its pod's sidecar (a stand-in process here).
    let port = scenario.common_port().unwrap();
    let before = scenario
        .start_manager_pod(
            crate::kubelet::http_target(),
            1,
            port,
            &cnpg_testbed::scenario::ManagerOptions::default(),
        )
        .unwrap();
    let old_pid = before.wait_running(Duration::from_secs(10)).await.unwrap();
    drop(before);

    let pending = scenario.begin_rebuild_replica("rb-2").await.unwrap();
    assert_eq!(pending.pvcs(), ["rb-2"]);
    // A new claim of the same name, at spec.storage.size, labelled as CNPG does.
    let pvc = scenario.pvcs().get("rb-2").await.unwrap();
    assert_ne!(pvc.metadata.uid, old_uid, "the PVC was recreated");
    assert_eq!(scenario.requested_bytes("rb-2").await.unwrap(), 128 * MIB);
    let labels = pvc.metadata.labels.clone().unwrap();
    assert_eq!(labels["cnpg.io/cluster"], "rb");
    assert_eq!(labels["cnpg.io/instanceName"], "rb-2");
    assert_eq!(labels["cnpg.io/pvcRole"], "PG_DATA");
    assert_eq!(
        pvc.metadata.annotations.as_ref().unwrap()["cnpg.io/pvcStatus"],
        "initializing"
    );
    assert!(
        scenario.instance("rb-2").is_none(),
        "no instance while it joins"
    );
    assert!(
        scenario.manager_pod("rb-2").is_none(),
        "no manager while the instance joins"
    );
    assert!(
        !crate::common::alive(old_pid as i32),
        "the old manager stopped"
    );
    let pods: Api<Pod> = Api::namespaced(scenario.client.clone(), "default");
    assert!(
        pods.get_opt("rb-2").await.unwrap().is_none(),
        "no pod while it joins"
    );

    // The base backup does not fit and is retried.
    let progress = pending.progress();
    eventually("a failed base backup", Duration::from_secs(90), || async {
        progress.failures() >= 1
    })
    .await;
    assert!(!progress.succeeded());
    let failure = progress.attempts()[0].error.clone().unwrap();
    assert!(failure.contains("No space left on device"), "{failure}");

    // Grown through the API (the simulator grows the volume): it joins.
    grow(&scenario, "rb-2", 384 * MIB).await;
    let report = scenario.finish_replica(pending).await.unwrap();
    assert!(report.attempts.len() >= 2, "{:?}", report.attempts);
    assert!(report.attempts.last().unwrap().error.is_none());
    // Only now does the instance's manager start again, on the new pod IP.
    let manager = report.manager.expect("the manager pod is back");
    manager
        .wait_ready(true, Duration::from_secs(10))
        .await
        .unwrap();
    assert_ne!(manager.pid(), Some(old_pid));
    assert_eq!(manager.addr.ip(), scenario.instance("rb-2").unwrap().ip);

    let replica = scenario.server("rb-2").unwrap();
    assert!(replica.is_replica());
    let rclient = replica.connect().await.unwrap();
    let copied: i64 = rclient
        .query_one("SELECT count(*) FROM big", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(copied, rows);
    let instance = scenario.instance("rb-2").unwrap();
    assert_ne!(instance.ip, old_ip, "a new pod, a new IP");
    let pod = pods.get("rb-2").await.unwrap();
    assert_eq!(
        pod.status.unwrap().pod_ip.as_deref(),
        Some(instance.ip.to_string().as_str())
    );
    let pvc = scenario.pvcs().get("rb-2").await.unwrap();
    assert_eq!(
        pvc.metadata.annotations.unwrap()["cnpg.io/pvcStatus"],
        "ready"
    );
    // The simulator backs the new claim with the new volume.
    assert_eq!(
        scenario.simulator.volume("rb-2").unwrap().path(),
        instance.data().volume.path()
    );
    // The primary keeps the HA slot of the rebuilt standby, in use again.
    let slots = scenario
        .server("rb-1")
        .unwrap()
        .physical_slots()
        .await
        .unwrap();
    assert!(
        slots.iter().any(|s| s.name == "_cnpg_rb_2" && s.active),
        "{slots:?}"
    );
}

/// A manager started as a pod: the kubelet stand-in restarts it after a
/// SIGKILL (at once, then with back-off), records why, and reports it
/// ready (the chart's sidecar has no readiness probe).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_manager_pod_is_restarted_after_a_crash_with_the_restart_recorded() {
    use cnpg_testbed::kubelet::{KubeletConfig, RestartCause};
    use cnpg_testbed::scenario::{ManagerOptions, PodOptions};
    let scenario = Scenario::builder("mp")
        .postgres(false)
        .start()
        .await
        .unwrap();
    let port = scenario.common_port().unwrap();
    let control = tempfile::tempdir().unwrap();
    let options = ManagerOptions {
        extra_args: vec![
            "--control".into(),
            control.path().to_string_lossy().into_owned(),
        ],
        ..ManagerOptions::default()
    };
    let pod_options = PodOptions {
        container: None,
        kubelet: KubeletConfig {
            backoff_base: Duration::from_secs(2),
            ..KubeletConfig::default()
        },
    };
    let manager = scenario
        .start_manager_pod_with(
            crate::kubelet::http_target(),
            0,
            port,
            &options,
            &pod_options,
        )
        .unwrap();
    assert!(scenario.manager_pod("mp-1").is_some());
    let first = manager.wait_running(Duration::from_secs(10)).await.unwrap();
    manager
        .wait_ready(true, Duration::from_secs(10))
        .await
        .unwrap();
    // The process listens where the chart's probes are sent.
    eventually("the endpoint answers", Duration::from_secs(10), || async {
        cnpg_testbed::kubelet::http_get(manager.addr, "/healthz", Duration::from_secs(1)).await
            == Ok(200)
    })
    .await;

    manager.kill().unwrap();
    manager
        .wait_for_restarts(1, Duration::from_secs(20))
        .await
        .unwrap();
    let second = manager.wait_running(Duration::from_secs(10)).await.unwrap();
    assert_ne!(first, second);
    let restart = manager.restarts()[0].clone();
    assert_eq!(
        restart.cause,
        RestartCause::Exited {
            code: None,
            signal: Some(9)
        }
    );
    assert_eq!(restart.backoff, Duration::ZERO);
    assert_eq!(restart.pid, second);

    // The Pod's Ready condition follows the sidecar's readiness.
    let pods: Api<Pod> = Api::namespaced(scenario.client.clone(), "default");
    let pod_ready = |want: &'static str| {
        let pods = pods.clone();
        move || {
            let pods = pods.clone();
            async move {
                let pod = pods.get("mp-1").await.unwrap();
                pod.status
                    .and_then(|s| s.conditions)
                    .is_some_and(|c| c.iter().any(|c| c.type_ == "Ready" && c.status == want))
            }
        }
    };
    eventually("pod Ready", Duration::from_secs(10), pod_ready("True")).await;

    // A crash loop backs off: 2 s, then 4 s (the configured base, doubling).
    manager.kill().unwrap();
    manager
        .wait_for_restarts(2, Duration::from_secs(20))
        .await
        .unwrap();
    manager.wait_running(Duration::from_secs(10)).await.unwrap();
    manager.terminate().unwrap();
    // While it waits out its back-off the pod is not ready.
    eventually("pod not Ready", Duration::from_secs(4), pod_ready("False")).await;
    manager
        .wait_for_restarts(3, Duration::from_secs(20))
        .await
        .unwrap();
    let restarts = manager.restarts();
    assert_eq!(restarts[1].backoff, Duration::from_secs(2));
    assert_eq!(restarts[2].backoff, Duration::from_secs(4));
    assert_eq!(
        restarts[2].cause,
        RestartCause::Exited {
            code: None,
            signal: Some(15)
        }
    );
    manager
        .wait_ready(true, Duration::from_secs(10))
        .await
        .unwrap();
    let states: Vec<bool> = manager
        .readiness_history()
        .iter()
        .map(|r| r.ready)
        .collect();
    assert_eq!(states, [true, false, true, false, true, false, true]);
    assert!(
        manager.logs().contains("listening on"),
        "{}",
        manager.logs()
    );

    eventually(
        "pod Ready again",
        Duration::from_secs(10),
        pod_ready("True"),
    )
    .await;

    scenario.stop_manager_pod("mp-1").await.unwrap();
    assert!(scenario.manager_pod("mp-1").is_none());
    assert_eq!(manager.pid(), None);
}
