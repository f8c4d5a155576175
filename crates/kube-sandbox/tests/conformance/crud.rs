//! Create/get/list/update/patch/delete and the metadata the server owns.

use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{Event, PersistentVolumeClaim, Pod};
use k8s_openapi::api::events::v1::Event as EventV1;
use k8s_openapi::api::storage::v1::StorageClass;
use kube::api::{DeleteParams, ListParams, Patch, PatchParams, PostParams};
use kube::{Api, ResourceExt};
use serde_json::json;

use crate::common::*;

#[tokio::test]
async fn pvc_crud_roundtrip() {
    let sb = sandbox().await;
    let c = admin(&sb).await;
    let api = pvcs(&c);
    let created = api
        .create(&PostParams::default(), &pvc("data", "1Gi", "fast"))
        .await
        .unwrap();
    let meta = &created.metadata;
    assert_eq!(meta.namespace.as_deref(), Some(NS));
    assert!(meta.uid.as_deref().is_some_and(|u| u.len() == 36));
    assert!(meta.creation_timestamp.is_some());
    assert_eq!(meta.generation, Some(1));
    assert_eq!(
        created.status.as_ref().and_then(|s| s.phase.as_deref()),
        Some("Pending")
    );
    assert_eq!(
        created.spec.as_ref().unwrap().volume_mode.as_deref(),
        Some("Filesystem")
    );

    let got = api.get("data").await.unwrap();
    assert_eq!(
        got.metadata.resource_version,
        created.metadata.resource_version
    );
    assert_eq!(
        api.list(&ListParams::default()).await.unwrap().items.len(),
        1
    );

    let mut replaced = got.clone();
    replaced.labels_mut().insert("x".into(), "1".into());
    let replaced = api
        .replace("data", &PostParams::default(), &replaced)
        .await
        .unwrap();
    assert!(rv_of(&replaced) > rv_of(&got));
    assert_eq!(replaced.metadata.generation, Some(1), "labels are not spec");

    let patched = api
        .patch(
            "data",
            &PatchParams::default(),
            &Patch::Merge(json!({"metadata": {"annotations": {"a": "b"}}})),
        )
        .await
        .unwrap();
    assert_eq!(
        patched.annotations().get("a").map(String::as_str),
        Some("b")
    );
    assert_eq!(patched.labels().get("x").map(String::as_str), Some("1"));

    let deleted = api.delete("data", &DeleteParams::default()).await.unwrap();
    assert!(
        deleted.is_right(),
        "immediate deletion answers a Success Status"
    );
    let s = api_error(api.get("data").await);
    assert_status(&s, 404, "NotFound");
    assert_eq!(s.message, "persistentvolumeclaims \"data\" not found");
    assert_eq!(s.details.as_ref().unwrap().name, "data");
}

#[tokio::test]
async fn create_existing_is_409_already_exists() {
    let sb = sandbox().await;
    let c = admin(&sb).await;
    let api = pvcs(&c);
    api.create(&PostParams::default(), &pvc("a", "1Gi", "x"))
        .await
        .unwrap();
    let s = api_error(
        api.create(&PostParams::default(), &pvc("a", "1Gi", "x"))
            .await,
    );
    assert_status(&s, 409, "AlreadyExists");
    assert_eq!(s.message, "persistentvolumeclaims \"a\" already exists");
}

#[tokio::test]
async fn generate_name_and_global_resource_version() {
    let sb = sandbox().await;
    let c = admin(&sb).await;
    let leases: Api<Lease> = Api::namespaced(c.clone(), NS);
    let l1 = leases
        .create(
            &PostParams::default(),
            &from_json(
                json!({"metadata": {"generateName": "lock-"}, "spec": {"holderIdentity": "a"}}),
            ),
        )
        .await
        .unwrap();
    assert!(
        l1.name_any().starts_with("lock-") && l1.name_any().len() == 10,
        "{}",
        l1.name_any()
    );
    let p = pvcs(&c)
        .create(&PostParams::default(), &pvc("p", "1Gi", "x"))
        .await
        .unwrap();
    assert!(
        rv_of(&p) > rv_of(&l1),
        "one resourceVersion sequence across resources"
    );
    let list = leases.list(&ListParams::default()).await.unwrap();
    let list_rv: u64 = list.metadata.resource_version.unwrap().parse().unwrap();
    assert!(list_rv >= rv_of(&p));
}

#[tokio::test]
async fn noop_update_keeps_resource_version() {
    let sb = sandbox().await;
    let c = admin(&sb).await;
    let api = pvcs(&c);
    let p = api
        .create(&PostParams::default(), &pvc("a", "1Gi", "x"))
        .await
        .unwrap();
    let same = api.replace("a", &PostParams::default(), &p).await.unwrap();
    assert_eq!(rv_of(&same), rv_of(&p));
}

#[tokio::test]
async fn list_across_namespaces_and_cluster_scope() {
    let sb = sandbox().await;
    let c = admin(&sb).await;
    for ns in ["a", "b"] {
        Api::<PersistentVolumeClaim>::namespaced(c.clone(), ns)
            .create(&PostParams::default(), &pvc("p", "1Gi", "x"))
            .await
            .unwrap();
    }
    let all = Api::<PersistentVolumeClaim>::all(c.clone())
        .list(&ListParams::default())
        .await
        .unwrap();
    let names: Vec<_> = all.items.iter().map(|p| p.namespace().unwrap()).collect();
    assert_eq!(names, ["a", "b"]);
    storage_class(&c, "fast", Some(true)).await;
    let sc = Api::<StorageClass>::all(c.clone())
        .get("fast")
        .await
        .unwrap();
    assert_eq!(sc.metadata.namespace, None);
    assert_eq!(sc.allow_volume_expansion, Some(true));
}

#[tokio::test]
async fn every_resource_type_is_served() {
    let sb = sandbox().await;
    let c = admin(&sb).await;
    let pp = PostParams::default();
    Api::<Pod>::namespaced(c.clone(), NS)
        .create(&pp, &from_json(json!({"metadata": {"name": "pg-1"}, "spec": {"containers": [{"name": "pg", "image": "pg"}]}})))
        .await
        .unwrap();
    Api::<Event>::namespaced(c.clone(), NS)
        .create(&pp, &from_json(json!({"metadata": {"name": "e1"}, "involvedObject": {"kind": "Pod", "name": "pg-1"}, "reason": "Resized", "message": "m"})))
        .await
        .unwrap();
    Api::<EventV1>::namespaced(c.clone(), NS)
        .create(&pp, &from_json(json!({"metadata": {"name": "e2"}, "eventTime": "2026-01-01T00:00:00.000000Z", "reportingController": "x", "reportingInstance": "y", "action": "Resize", "reason": "Resized", "type": "Normal"})))
        .await
        .unwrap();
    let cl = clusters(&c).create(&pp, &cluster_obj("pg")).await.unwrap();
    assert_eq!(
        cl.data["spec"]["x-unknown"],
        json!({"kept": true}),
        "unknown fields are preserved"
    );
    assert_eq!(cl.types.as_ref().unwrap().kind, "Cluster");
    // Custom resources answer a deletion with the deleted object.
    let d = clusters(&c)
        .delete("pg", &DeleteParams::default())
        .await
        .unwrap();
    assert!(d.is_left());
}

#[tokio::test]
async fn cluster_generation_follows_spec() {
    let sb = sandbox().await;
    let c = admin(&sb).await;
    let api = clusters(&c);
    api.create(&PostParams::default(), &cluster_obj("pg"))
        .await
        .unwrap();
    let p = api
        .patch(
            "pg",
            &PatchParams::default(),
            &Patch::Merge(json!({"metadata": {"labels": {"l": "v"}}})),
        )
        .await
        .unwrap();
    assert_eq!(p.metadata.generation, Some(1));
    let p = api
        .patch(
            "pg",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"instances": 4}})),
        )
        .await
        .unwrap();
    assert_eq!(p.metadata.generation, Some(2));
}

#[tokio::test]
async fn apply_patch_creates_then_merges() {
    let sb = sandbox().await;
    let c = admin(&sb).await;
    let leases: Api<Lease> = Api::namespaced(c.clone(), NS);
    let pp = PatchParams::apply("test").force();
    let l = leases
        .patch("l", &pp, &Patch::Apply(json!({"apiVersion": "coordination.k8s.io/v1", "kind": "Lease", "spec": {"holderIdentity": "a"}})))
        .await
        .unwrap();
    assert_eq!(l.spec.unwrap().holder_identity.as_deref(), Some("a"));
    let l = leases
        .patch("l", &pp, &Patch::Apply(json!({"apiVersion": "coordination.k8s.io/v1", "kind": "Lease", "spec": {"leaseDurationSeconds": 15}})))
        .await
        .unwrap();
    assert_eq!(l.spec.unwrap().lease_duration_seconds, Some(15));
}

#[tokio::test]
async fn discovery_documents() {
    let sb = sandbox().await;
    let c = admin(&sb).await;
    let v = c.apiserver_version().await.unwrap();
    assert_eq!((v.major.as_str(), v.minor.as_str()), ("1", "36"));
    let discovery = kube::Discovery::new(c.clone()).run().await.unwrap();
    let (ar, caps) = discovery
        .resolve_gvk(&kube::api::GroupVersionKind::gvk(
            "postgresql.cnpg.io",
            "v1",
            "Cluster",
        ))
        .expect("Cluster discovered");
    assert_eq!(ar.plural, "clusters");
    assert!(caps.subresources.iter().any(|(s, _)| s.plural == "status"));
    assert!(discovery.has_group("storage.k8s.io"));
}
