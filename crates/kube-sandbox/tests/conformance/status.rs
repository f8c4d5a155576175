//! Status subresource separation, both directions.

use k8s_openapi::api::core::v1::Pod;
use kube::api::{Patch, PatchParams, PostParams};
use kube::Api;
use serde_json::json;

use crate::common::*;

#[tokio::test]
async fn pvc_main_write_ignores_status_and_status_write_ignores_spec() {
    let sb = sandbox().await;
    let c = admin(&sb).await;
    let api = pvcs(&c);
    let mut created = pvc("a", "1Gi", "x");
    created.status = Some(from_json(json!({"phase": "Bound"})));
    let p = api.create(&PostParams::default(), &created).await.unwrap();
    assert_eq!(
        p.status.unwrap().phase.as_deref(),
        Some("Pending"),
        "status is not settable on create"
    );

    let p = api
        .patch(
            "a",
            &PatchParams::default(),
            &Patch::Merge(json!({"status": {"phase": "Lost"}, "metadata": {"labels": {"m": "1"}}})),
        )
        .await
        .unwrap();
    assert_eq!(p.status.unwrap().phase.as_deref(), Some("Pending"));
    assert_eq!(p.metadata.labels.unwrap()["m"], "1");

    let s = api
        .patch_status(
            "a",
            &PatchParams::default(),
            &Patch::Merge(json!({"status": {"phase": "Bound"}, "metadata": {"labels": {"s": "1"}}, "spec": {"volumeName": "pv-1"}})),
        )
        .await
        .unwrap();
    assert_eq!(s.status.as_ref().unwrap().phase.as_deref(), Some("Bound"));
    assert!(
        !s.metadata.labels.as_ref().unwrap().contains_key("s"),
        "metadata unchanged by /status"
    );
    assert_eq!(
        s.spec.as_ref().unwrap().volume_name,
        None,
        "spec unchanged by /status"
    );

    let mut full = api.get_status("a").await.unwrap();
    full.status.as_mut().unwrap().phase = Some("Lost".into());
    full.spec.as_mut().unwrap().volume_name = Some("pv-2".into());
    let r = api
        .replace_status("a", &PostParams::default(), &full)
        .await
        .unwrap();
    assert_eq!(r.status.unwrap().phase.as_deref(), Some("Lost"));
    assert_eq!(r.spec.unwrap().volume_name, None);
}

#[tokio::test]
async fn cluster_status_subresource() {
    let sb = sandbox().await;
    let c = admin(&sb).await;
    let api = clusters(&c);
    api.create(&PostParams::default(), &cluster_obj("pg"))
        .await
        .unwrap();
    let s = api
        .patch_status(
            "pg",
            &PatchParams::default(),
            &Patch::Merge(json!({"status": {"phase": "Healthy"}, "spec": {"instances": 9}})),
        )
        .await
        .unwrap();
    assert_eq!(s.data["status"]["phase"], "Healthy");
    assert_eq!(s.data["spec"]["instances"], 3);
    assert_eq!(
        s.metadata.generation,
        Some(1),
        "status writes do not bump generation"
    );
    let m = api
        .patch(
            "pg",
            &PatchParams::default(),
            &Patch::Merge(json!({"status": {"phase": "Broken"}, "spec": {"instances": 2}})),
        )
        .await
        .unwrap();
    assert_eq!(m.data["status"]["phase"], "Healthy");
    assert_eq!(m.data["spec"]["instances"], 2);
}

#[tokio::test]
async fn pod_status_subresource_with_strategic_merge() {
    let sb = sandbox().await;
    let c = admin(&sb).await;
    let api: Api<Pod> = Api::namespaced(c.clone(), NS);
    api.create(&PostParams::default(), &from_json(json!({"metadata": {"name": "p"}, "spec": {"containers": [{"name": "pg", "image": "pg:16"}]}})))
        .await
        .unwrap();
    api.patch_status(
        "p",
        &PatchParams::default(),
        &Patch::Strategic(json!({"status": {"phase": "Running", "conditions": [{"type": "Ready", "status": "False"}, {"type": "Initialized", "status": "True"}]}})),
    )
    .await
    .unwrap();
    let p = api
        .patch_status(
            "p",
            &PatchParams::default(),
            &Patch::Strategic(
                json!({"status": {"conditions": [{"type": "Ready", "status": "True"}]}}),
            ),
        )
        .await
        .unwrap();
    let conds = p.status.unwrap().conditions.unwrap();
    assert_eq!(conds.len(), 2, "conditions merge by type");
    assert_eq!(
        (conds[0].type_.as_str(), conds[0].status.as_str()),
        ("Ready", "True")
    );
    let p = api
        .patch(
            "p",
            &PatchParams::default(),
            &Patch::Strategic(json!({"spec": {"containers": [{"name": "pg", "image": "pg:17"}]}})),
        )
        .await
        .unwrap();
    let containers = p.spec.unwrap().containers;
    assert_eq!(
        (containers.len(), containers[0].image.as_deref()),
        (1, Some("pg:17"))
    );
}
