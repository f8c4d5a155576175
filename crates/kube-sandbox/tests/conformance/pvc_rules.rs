//! PersistentVolumeClaim validation and resize admission, as on a real API server.

use kube::api::{Patch, PatchParams, PostParams};
use serde_json::json;

use crate::common::*;

fn grow(size: &str) -> Patch<serde_json::Value> {
    Patch::Merge(json!({"spec": {"resources": {"requests": {"storage": size}}}}))
}

#[tokio::test]
async fn shrinking_is_422() {
    let sb = sandbox().await;
    let c = admin(&sb).await;
    storage_class(&c, "fast", Some(true)).await;
    bound_pvc(&c, "a", "2Gi", "fast").await;
    let s = api_error(
        pvcs(&c)
            .patch("a", &PatchParams::default(), &grow("1Gi"))
            .await,
    );
    assert_status(&s, 422, "Invalid");
    assert_eq!(
        s.message,
        "PersistentVolumeClaim \"a\" is invalid: spec.resources.requests.storage: Forbidden: field can not be less than previous value"
    );
}

#[tokio::test]
async fn growing_needs_an_expandable_storage_class() {
    let sb = sandbox().await;
    let c = admin(&sb).await;
    storage_class(&c, "fixed", None).await;
    storage_class(&c, "off", Some(false)).await;
    storage_class(&c, "fast", Some(true)).await;
    for class in ["fixed", "off", "missing"] {
        let name = format!("p-{class}");
        bound_pvc(&c, &name, "1Gi", class).await;
        let s = api_error(
            pvcs(&c)
                .patch(&name, &PatchParams::default(), &grow("2Gi"))
                .await,
        );
        assert_status(&s, 403, "Forbidden");
        assert_eq!(
            s.message,
            format!("persistentvolumeclaims \"{name}\" is forbidden: only dynamically provisioned pvc can be resized and the storageclass that provisions the pvc must support resize")
        );
    }
    bound_pvc(&c, "ok", "1Gi", "fast").await;
    let p = pvcs(&c)
        .patch("ok", &PatchParams::default(), &grow("2Gi"))
        .await
        .unwrap();
    assert_eq!(
        p.spec.unwrap().resources.unwrap().requests.unwrap()["storage"].0,
        "2Gi"
    );
    assert_eq!(p.metadata.generation, Some(2));
}

#[tokio::test]
async fn quantities_compare_exactly() {
    let sb = sandbox().await;
    let c = admin(&sb).await;
    storage_class(&c, "fixed", Some(false)).await;
    bound_pvc(&c, "a", "1Gi", "fixed").await;
    // Same size in another notation: neither a shrink nor a growth.
    pvcs(&c)
        .patch("a", &PatchParams::default(), &grow("1073741824"))
        .await
        .unwrap();
    let s = api_error(
        pvcs(&c)
            .patch("a", &PatchParams::default(), &grow("1073741825"))
            .await,
    );
    assert_status(&s, 403, "Forbidden");
    let s = api_error(
        pvcs(&c)
            .patch("a", &PatchParams::default(), &grow("1073741823"))
            .await,
    );
    assert_status(&s, 422, "Invalid");
}

#[tokio::test]
async fn spec_is_immutable_except_requests_of_bound_claims() {
    let sb = sandbox().await;
    let c = admin(&sb).await;
    storage_class(&c, "fast", Some(true)).await;
    bound_pvc(&c, "a", "1Gi", "fast").await;
    let s = api_error(
        pvcs(&c)
            .patch(
                "a",
                &PatchParams::default(),
                &Patch::Merge(json!({"spec": {"accessModes": ["ReadWriteMany"]}})),
            )
            .await,
    );
    assert_status(&s, 422, "Invalid");
    assert_eq!(
        s.message,
        "PersistentVolumeClaim \"a\" is invalid: spec: Forbidden: spec is immutable after creation except resources.requests and volumeAttributesClassName for bound claims"
    );
    // An unbound (Pending) claim cannot be resized at all.
    pvcs(&c)
        .create(&PostParams::default(), &pvc("pending", "1Gi", "fast"))
        .await
        .unwrap();
    let s = api_error(
        pvcs(&c)
            .patch("pending", &PatchParams::default(), &grow("2Gi"))
            .await,
    );
    assert_status(&s, 422, "Invalid");
}

#[tokio::test]
async fn strategic_merge_patch_on_pvc() {
    let sb = sandbox().await;
    let c = admin(&sb).await;
    storage_class(&c, "fast", Some(true)).await;
    bound_pvc(&c, "a", "1Gi", "fast").await;
    let p = pvcs(&c)
        .patch(
            "a",
            &PatchParams::default(),
            &Patch::Strategic(json!({"spec": {"resources": {"requests": {"storage": "3Gi"}}}, "metadata": {"annotations": {"r": "1"}}})),
        )
        .await
        .unwrap();
    assert_eq!(
        p.spec.unwrap().resources.unwrap().requests.unwrap()["storage"].0,
        "3Gi"
    );
    let s = pvcs(&c)
        .patch_status(
            "a",
            &PatchParams::default(),
            &Patch::Strategic(
                json!({"status": {"conditions": [{"type": "Resizing", "status": "True"}]}}),
            ),
        )
        .await
        .unwrap();
    assert_eq!(s.status.unwrap().conditions.unwrap()[0].type_, "Resizing");
}

#[tokio::test]
async fn recover_from_expansion_failure_option() {
    let sb = sandbox_with(kube_sandbox::SandboxConfig {
        recover_volume_expansion_failure: true,
        ..Default::default()
    })
    .await;
    let c = admin(&sb).await;
    storage_class(&c, "fast", Some(true)).await;
    bound_pvc(&c, "a", "1Gi", "fast").await;
    pvcs(&c)
        .patch("a", &PatchParams::default(), &grow("4Gi"))
        .await
        .unwrap();
    pvcs(&c)
        .patch("a", &PatchParams::default(), &grow("2Gi"))
        .await
        .unwrap();
    let s = api_error(
        pvcs(&c)
            .patch("a", &PatchParams::default(), &grow("1Gi"))
            .await,
    );
    assert!(
        s.message
            .contains("field can not be less than status.capacity"),
        "{}",
        s.message
    );
}
