//! PersistentVolumeClaim validation and resize admission, as on a real API server.

use kube::api::{Patch, PatchParams, PostParams};
use serde_json::json;

use crate::common::*;

fn grow(size: &str) -> Patch<serde_json::Value> {
    Patch::Merge(json!({"spec": {"resources": {"requests": {"storage": size}}}}))
}

const IMMUTABLE: &str = "spec: Forbidden: spec is immutable after creation except resources.requests and volumeAttributesClassName for bound claims";
const BELOW_CAPACITY: &str =
    "spec.resources.requests.storage: Forbidden: field can not be less than status.capacity";

#[tokio::test]
async fn lowering_to_or_below_capacity_is_422_and_above_capacity_is_accepted() {
    let sb = sandbox().await;
    let c = admin(&sb).await;
    storage_class(&c, "fast", Some(true)).await;
    bound_pvc(&c, "a", "2Gi", "fast").await;
    for size in ["2Gi", "2147483648"] {
        // Same size in another notation is no change at all.
        pvcs(&c)
            .patch("a", &PatchParams::default(), &grow(size))
            .await
            .unwrap();
    }
    for size in ["1Gi", "2147483647"] {
        let s = api_error(
            pvcs(&c)
                .patch("a", &PatchParams::default(), &grow(size))
                .await,
        );
        assert_status(&s, 422, "Invalid");
        assert_eq!(
            s.message,
            format!("PersistentVolumeClaim \"a\" is invalid: {BELOW_CAPACITY}")
        );
    }
    // RecoverVolumeExpansionFailure (GA): after asking for 5Gi, going back to 3Gi (still
    // above the 2Gi capacity) is accepted, 2Gi (= capacity) is not.
    pvcs(&c)
        .patch("a", &PatchParams::default(), &grow("5Gi"))
        .await
        .unwrap();
    let p = pvcs(&c)
        .patch("a", &PatchParams::default(), &grow("3Gi"))
        .await
        .unwrap();
    assert_eq!(
        p.spec.unwrap().resources.unwrap().requests.unwrap()["storage"].0,
        "3Gi"
    );
    let s = api_error(
        pvcs(&c)
            .patch("a", &PatchParams::default(), &grow("2Gi"))
            .await,
    );
    assert!(s.message.ends_with(BELOW_CAPACITY), "{}", s.message);
    // Lowering above capacity needs no expandable class (admission only checks growth).
    storage_class(&c, "fixed", Some(false)).await;
    bound_pvc(&c, "b", "1Gi", "fixed").await;
    pvcs(&c)
        .patch_status(
            "b",
            &PatchParams::default(),
            &Patch::Merge(json!({"status": {"capacity": {"storage": "512Mi"}}})),
        )
        .await
        .unwrap();
    pvcs(&c)
        .patch("b", &PatchParams::default(), &grow("768Mi"))
        .await
        .unwrap();
}

#[tokio::test]
async fn without_recover_volume_expansion_failure_every_decrease_is_422() {
    let sb = sandbox_with(kube_sandbox::SandboxConfig {
        recover_volume_expansion_failure: false,
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
    let s = api_error(
        pvcs(&c)
            .patch("a", &PatchParams::default(), &grow("2Gi"))
            .await,
    );
    assert_status(&s, 422, "Invalid");
    assert_eq!(
        s.message,
        "PersistentVolumeClaim \"a\" is invalid: spec.resources.requests.storage: Forbidden: field can not be less than previous value"
    );
}

#[tokio::test]
async fn an_unbound_claim_cannot_change_its_request() {
    let sb = sandbox().await;
    let c = admin(&sb).await;
    storage_class(&c, "fast", Some(true)).await;
    pvcs(&c)
        .create(&PostParams::default(), &pvc("pending", "1Gi", "fast"))
        .await
        .unwrap();
    // Growth and decrease alike: validation (422) runs before the resize admission (403).
    for size in ["2Gi", "2000Mi"] {
        let s = api_error(
            pvcs(&c)
                .patch("pending", &PatchParams::default(), &grow(size))
                .await,
        );
        assert_status(&s, 422, "Invalid");
        assert_eq!(
            s.message,
            format!("PersistentVolumeClaim \"pending\" is invalid: {IMMUTABLE}")
        );
        assert_eq!(s.details.as_ref().unwrap().causes[0].field, "spec");
    }
    // A Lost claim is not Bound either.
    pvcs(&c)
        .patch_status(
            "pending",
            &PatchParams::default(),
            &Patch::Merge(json!({"status": {"phase": "Lost"}})),
        )
        .await
        .unwrap();
    let s = api_error(
        pvcs(&c)
            .patch("pending", &PatchParams::default(), &grow("2Gi"))
            .await,
    );
    assert!(s.message.ends_with(IMMUTABLE), "{}", s.message);
}

#[tokio::test]
async fn allocated_resource_statuses_accept_only_the_real_values() {
    let sb = sandbox().await;
    let c = admin(&sb).await;
    storage_class(&c, "fast", Some(true)).await;
    bound_pvc(&c, "a", "1Gi", "fast").await;
    for ok in [
        "ControllerResizeInProgress",
        "ControllerResizeInfeasible",
        "NodeResizePending",
        "NodeResizeInProgress",
        "NodeResizeInfeasible",
    ] {
        let p = pvcs(&c)
            .patch_status(
                "a",
                &PatchParams::default(),
                &Patch::Merge(json!({"status": {"allocatedResourceStatuses": {"storage": ok}}})),
            )
            .await
            .unwrap();
        assert_eq!(
            p.status.unwrap().allocated_resource_statuses.unwrap()["storage"],
            ok
        );
    }
    for bad in ["ControllerResizeFailed", "Resizing", ""] {
        let s = api_error(
            pvcs(&c)
                .patch_status(
                    "a",
                    &PatchParams::default(),
                    &Patch::Merge(
                        json!({"status": {"allocatedResourceStatuses": {"storage": bad}}}),
                    ),
                )
                .await,
        );
        assert_status(&s, 422, "Invalid");
        // ValidatePersistentVolumeClaimStatusUpdate reports the key under this path.
        assert_eq!(
            s.message,
            "PersistentVolumeClaim \"a\" is invalid: status.allocatedResourceStatus: Unsupported value: \"storage\": supported values: \"ControllerResizeInProgress\", \"ControllerResizeInfeasible\", \"NodeResizeInProgress\", \"NodeResizeInfeasible\", \"NodeResizePending\""
        );
    }
    let last = pvcs(&c).get_status("a").await.unwrap();
    assert_eq!(
        last.status.unwrap().allocated_resource_statuses.unwrap()["storage"],
        "NodeResizeInfeasible",
        "a refused status write changes nothing"
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

/// `managedFields`, as a real API server records them: the manager of a
/// write (its `fieldManager`, else its User-Agent up to the first `/`) owns
/// what it changed; a write of the same value moves no ownership; status
/// writes are their own entry.
#[tokio::test]
async fn managed_fields_name_who_last_set_the_request() {
    let sb = sandbox().await;
    let c = admin(&sb).await;
    storage_class(&c, "fast", Some(true)).await;
    bound_pvc(&c, "a", "2Gi", "fast").await;
    let owner = |p: &k8s_openapi::api::core::v1::PersistentVolumeClaim| {
        p.metadata
            .managed_fields
            .clone()
            .unwrap_or_default()
            .into_iter()
            .find(|e| {
                e.subresource.is_none()
                    && e.fields_v1.as_ref().is_some_and(|f| {
                        f.0.pointer("/f:spec/f:resources/f:requests/f:storage")
                            .is_some()
                    })
            })
            .and_then(|e| e.manager)
    };
    let as_manager = |m: &str| PatchParams {
        field_manager: Some(m.to_string()),
        ..PatchParams::default()
    };
    let p = pvcs(&c).get("a").await.unwrap();
    let creator = owner(&p).expect("the creator owns the request");
    let p = pvcs(&c)
        .patch("a", &as_manager("manager"), &grow("3Gi"))
        .await
        .unwrap();
    assert_eq!(owner(&p).as_deref(), Some("manager"));
    assert_ne!(creator, "manager");
    // The same value again, by someone else: nothing changes hands.
    let p = pvcs(&c)
        .patch("a", &as_manager("cnpg-autoresize"), &grow("3Gi"))
        .await
        .unwrap();
    assert_eq!(owner(&p).as_deref(), Some("manager"));
    let p = pvcs(&c)
        .patch("a", &as_manager("cnpg-autoresize"), &grow("4Gi"))
        .await
        .unwrap();
    assert_eq!(owner(&p).as_deref(), Some("cnpg-autoresize"));
    let statuses: Vec<_> = p
        .metadata
        .managed_fields
        .unwrap_or_default()
        .into_iter()
        .filter(|e| e.subresource.as_deref() == Some("status"))
        .collect();
    assert_eq!(statuses.len(), 1, "the Bound status write: {statuses:?}");
}
