//! Volume simulator (CSI + kubelet stand-in) against the Kubernetes API sandbox.

use crate::common::{init_tracing, tempdir, volume, MIB};
use cnpg_testbed::{ExpansionMode, SimulatorConfig, VolumeSimulator};
use k8s_openapi::api::core::v1::PersistentVolumeClaim;
use k8s_openapi::api::storage::v1::StorageClass;
use kube::api::{Patch, PatchParams, PostParams};
use kube::{Api, Client};
use kube_sandbox::{Sandbox, SandboxConfig};
use serde_json::json;
use std::time::{Duration, Instant};

const NS: &str = "default";

async fn sandbox_with_class() -> (Sandbox, Client) {
    let sandbox = Sandbox::start(SandboxConfig::default()).await.unwrap();
    let client = sandbox.client().await.unwrap();
    let sc: StorageClass = serde_json::from_value(json!({
        "apiVersion": "storage.k8s.io/v1", "kind": "StorageClass",
        "metadata": {"name": "expandable"},
        "provisioner": "testbed.cnpg.io", "allowVolumeExpansion": true,
    }))
    .unwrap();
    Api::<StorageClass>::all(client.clone())
        .create(&PostParams::default(), &sc)
        .await
        .unwrap();
    (sandbox, client)
}

async fn create_pvc(api: &Api<PersistentVolumeClaim>, name: &str, size: &str) {
    let pvc: PersistentVolumeClaim = serde_json::from_value(json!({
        "apiVersion": "v1", "kind": "PersistentVolumeClaim",
        "metadata": {"name": name, "labels": {"cnpg.io/pvcRole": "PG_DATA"}},
        "spec": {"accessModes": ["ReadWriteOnce"], "storageClassName": "expandable",
                 "resources": {"requests": {"storage": size}}},
    }))
    .unwrap();
    api.create(&PostParams::default(), &pvc).await.unwrap();
}

async fn request(api: &Api<PersistentVolumeClaim>, name: &str, size: &str) {
    api.patch(
        name,
        &PatchParams::default(),
        &Patch::Merge(json!({"spec": {"resources": {"requests": {"storage": size}}}})),
    )
    .await
    .unwrap();
}

fn capacity(pvc: &PersistentVolumeClaim) -> Option<String> {
    pvc.status
        .as_ref()?
        .capacity
        .as_ref()?
        .get("storage")
        .map(|q| q.0.clone())
}

fn condition_types(pvc: &PersistentVolumeClaim) -> Vec<String> {
    pvc.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .map(|c| c.iter().map(|c| c.type_.clone()).collect())
        .unwrap_or_default()
}

fn resize_status(pvc: &PersistentVolumeClaim) -> Option<String> {
    pvc.status
        .as_ref()?
        .allocated_resource_statuses
        .as_ref()?
        .get("storage")
        .cloned()
}

/// Poll the PVC until `pred` holds.
async fn wait_pvc<F>(
    api: &Api<PersistentVolumeClaim>,
    name: &str,
    what: &str,
    pred: F,
) -> PersistentVolumeClaim
where
    F: Fn(&PersistentVolumeClaim) -> bool,
{
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let pvc = api.get(name).await.unwrap();
        if pred(&pvc) {
            return pvc;
        }
        assert!(
            Instant::now() < deadline,
            "timed out waiting for PVC {name}: {what}; last: {:?}",
            pvc.status
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn pvc_growth_grows_the_volume() {
    init_tracing();
    let (_sandbox, client) = sandbox_with_class().await;
    let api: Api<PersistentVolumeClaim> = Api::namespaced(client.clone(), NS);
    let dir = tempdir();
    let vol = volume(dir.path(), "pg-1", 64);
    std::fs::write(vol.path().join("keep"), b"data").unwrap();
    let sim = VolumeSimulator::start(
        client,
        NS,
        SimulatorConfig {
            expand_delay: Duration::from_millis(500),
            resync_interval: Duration::from_millis(300),
        },
    )
    .await
    .unwrap();
    // Registered before the PVC exists: picked up from the watch.
    sim.register("pg-1", vol.clone());
    create_pvc(&api, "pg-1", "64Mi").await;
    let pvc = wait_pvc(&api, "pg-1", "bound", |p| capacity(p).is_some()).await;
    assert_eq!(capacity(&pvc).as_deref(), Some("64Mi"));
    assert_eq!(pvc.status.as_ref().unwrap().phase.as_deref(), Some("Bound"));

    request(&api, "pg-1", "128Mi").await;
    let pvc = wait_pvc(&api, "pg-1", "Resizing condition", |p| {
        condition_types(p).contains(&"Resizing".to_string())
    })
    .await;
    assert_eq!(
        resize_status(&pvc).as_deref(),
        Some("ControllerResizeInProgress")
    );
    assert_eq!(capacity(&pvc).as_deref(), Some("64Mi"));
    assert_eq!(vol.capacity_bytes(), 64 * MIB, "grown before the delay");

    let pvc = wait_pvc(&api, "pg-1", "capacity 128Mi", |p| {
        capacity(p).as_deref() == Some("128Mi")
    })
    .await;
    assert!(condition_types(&pvc).is_empty(), "{:?}", pvc.status);
    assert_eq!(resize_status(&pvc), None);
    assert_eq!(vol.capacity_bytes(), 128 * MIB);
    assert_eq!(vol.stats().unwrap().total_bytes, 128 * MIB);
    assert_eq!(std::fs::read(vol.path().join("keep")).unwrap(), b"data");

    // Resyncs do not expand again.
    tokio::time::sleep(Duration::from_millis(1000)).await;
    let exp = sim.expansions();
    assert_eq!(exp.len(), 1, "{exp:?}");
    assert_eq!((exp[0].from_bytes, exp[0].to_bytes), (64 * MIB, 128 * MIB));

    // A second growth in another notation works too.
    request(&api, "pg-1", "0.25Gi").await;
    wait_pvc(&api, "pg-1", "capacity 0.25Gi", |p| {
        capacity(p).as_deref() == Some("0.25Gi")
    })
    .await;
    assert_eq!(vol.stats().unwrap().total_bytes, 256 * MIB);
    assert_eq!(sim.expansions().len(), 2);
}

#[tokio::test]
async fn failing_and_stalled_expansions() {
    init_tracing();
    let (_sandbox, client) = sandbox_with_class().await;
    let api: Api<PersistentVolumeClaim> = Api::namespaced(client.clone(), NS);
    let dir = tempdir();
    let failing = volume(dir.path(), "failing", 32);
    let stalled = volume(dir.path(), "stalled", 32);
    create_pvc(&api, "failing", "32Mi").await;
    create_pvc(&api, "stalled", "32Mi").await;
    let sim = VolumeSimulator::start(
        client,
        NS,
        SimulatorConfig {
            expand_delay: Duration::from_millis(100),
            resync_interval: Duration::from_millis(200),
        },
    )
    .await
    .unwrap();
    // Registered after the PVCs exist.
    sim.register("failing", failing.clone());
    sim.register("stalled", stalled.clone());
    assert!(sim.set_mode(
        "failing",
        ExpansionMode::Fail {
            message: "quota exceeded in the storage backend".into()
        }
    ));
    assert!(sim.set_mode("stalled", ExpansionMode::Stall));
    assert!(!sim.set_mode("unknown", ExpansionMode::Stall));
    for name in ["failing", "stalled"] {
        wait_pvc(&api, name, "bound", |p| capacity(p).is_some()).await;
        request(&api, name, "64Mi").await;
    }

    let pvc = wait_pvc(&api, "failing", "infeasible", |p| {
        resize_status(p).as_deref() == Some("ControllerResizeInfeasible")
    })
    .await;
    let cond = &pvc.status.as_ref().unwrap().conditions.as_ref().unwrap()[0];
    assert_eq!(cond.type_, "ControllerResizeError");
    assert_eq!(
        cond.message.as_deref(),
        Some("quota exceeded in the storage backend")
    );
    wait_pvc(&api, "stalled", "Resizing", |p| {
        condition_types(p).contains(&"Resizing".to_string())
    })
    .await;

    // Several delays and resyncs later neither has grown.
    tokio::time::sleep(Duration::from_millis(1000)).await;
    for (name, vol) in [("failing", &failing), ("stalled", &stalled)] {
        let pvc = api.get(name).await.unwrap();
        assert_eq!(capacity(&pvc).as_deref(), Some("32Mi"), "{name}");
        assert_eq!(vol.capacity_bytes(), 32 * MIB, "{name}");
    }
    assert!(sim.expansions().is_empty());

    // Fixing the backend lets the pending request through.
    sim.set_mode("failing", ExpansionMode::Expand);
    let pvc = wait_pvc(&api, "failing", "capacity 64Mi", |p| {
        capacity(p).as_deref() == Some("64Mi")
    })
    .await;
    assert!(condition_types(&pvc).is_empty());
    assert_eq!(failing.stats().unwrap().total_bytes, 64 * MIB);
    assert_eq!(stalled.capacity_bytes(), 32 * MIB);
}
