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
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let now = wal.volume.stats().unwrap();
        if now.total_bytes >= 192 * MIB {
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
    let pvc = scenario.pvcs().get(&wal.pvc).await.unwrap();
    assert_eq!(pvc.status.unwrap().capacity.unwrap()["storage"].0, "192Mi");

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
