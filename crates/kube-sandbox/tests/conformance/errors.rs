//! Failure answers: 409 conflicts, 422 failed JSON patch, 415, 404, 401, 400.

use k8s_openapi::api::core::v1::PersistentVolumeClaim;
use kube::api::{DeleteParams, Patch, PatchParams, PostParams};
use kube::{Api, Client};
use serde_json::json;

use crate::common::*;

const CONFLICT: &str = "Operation cannot be fulfilled on persistentvolumeclaims \"a\": the object has been modified; please apply your changes to the latest version and try again";

#[tokio::test]
async fn stale_update_is_409_conflict() {
    let sb = sandbox().await;
    let c = admin(&sb).await;
    let api = pvcs(&c);
    let v1 = api
        .create(&PostParams::default(), &pvc("a", "1Gi", "x"))
        .await
        .unwrap();
    let mut fresh = v1.clone();
    fresh.metadata.labels = Some([("k".to_string(), "1".to_string())].into());
    api.replace("a", &PostParams::default(), &fresh)
        .await
        .unwrap();
    let mut stale = v1.clone();
    stale.metadata.labels = Some([("k".to_string(), "2".to_string())].into());
    let s = api_error(api.replace("a", &PostParams::default(), &stale).await);
    assert_status(&s, 409, "Conflict");
    assert_eq!(s.message, CONFLICT);
    // Without resourceVersion the update is unconditional.
    stale.metadata.resource_version = None;
    api.replace("a", &PostParams::default(), &stale)
        .await
        .unwrap();
}

#[tokio::test]
async fn merge_patch_resource_version_precondition_is_409() {
    let sb = sandbox().await;
    let c = admin(&sb).await;
    let api = pvcs(&c);
    let v1 = api
        .create(&PostParams::default(), &pvc("a", "1Gi", "x"))
        .await
        .unwrap();
    let rv = v1.metadata.resource_version.clone().unwrap();
    let ok = api
        .patch(
            "a",
            &PatchParams::default(),
            &Patch::Merge(json!({"metadata": {"resourceVersion": rv, "labels": {"k": "1"}}})),
        )
        .await
        .unwrap();
    assert!(rv_of(&ok) > rv_of(&v1));
    let s = api_error(
        api.patch(
            "a",
            &PatchParams::default(),
            &Patch::Merge(json!({"metadata": {"resourceVersion": rv, "labels": {"k": "2"}}})),
        )
        .await,
    );
    assert_status(&s, 409, "Conflict");
    assert_eq!(s.message, CONFLICT);
}

#[tokio::test]
async fn failed_json_patch_test_is_422() {
    let sb = sandbox().await;
    let c = admin(&sb).await;
    let api = pvcs(&c);
    api.create(&PostParams::default(), &pvc("a", "1Gi", "x"))
        .await
        .unwrap();
    let patch: json_patch::Patch = serde_json::from_value(json!([
        {"op": "test", "path": "/metadata/labels/app", "value": "other"},
        {"op": "add", "path": "/metadata/labels/k", "value": "v"}
    ]))
    .unwrap();
    let s = api_error(
        api.patch("a", &PatchParams::default(), &Patch::<()>::Json(patch))
            .await,
    );
    assert_status(&s, 422, "Invalid");
    assert!(!api
        .get("a")
        .await
        .unwrap()
        .metadata
        .labels
        .unwrap()
        .contains_key("k"));
    let ok: json_patch::Patch = serde_json::from_value(json!([
        {"op": "test", "path": "/metadata/labels/app", "value": "pg"},
        {"op": "add", "path": "/metadata/labels/k", "value": "v"}
    ]))
    .unwrap();
    let p = api
        .patch("a", &PatchParams::default(), &Patch::<()>::Json(ok))
        .await
        .unwrap();
    assert_eq!(p.metadata.labels.unwrap()["k"], "v");
}

#[tokio::test]
async fn unknown_patch_type_is_415() {
    let sb = sandbox().await;
    let c = admin(&sb).await;
    pvcs(&c)
        .create(&PostParams::default(), &pvc("a", "1Gi", "x"))
        .await
        .unwrap();
    let path = format!("/api/v1/namespaces/{NS}/persistentvolumeclaims/a");
    let s = api_error(raw(&c, "PATCH", &path, "application/xml", "<x/>").await);
    assert_status(&s, 415, "UnsupportedMediaType");
    // Strategic merge is not accepted for custom resources, as on a real server.
    clusters(&c)
        .create(&PostParams::default(), &cluster_obj("pg"))
        .await
        .unwrap();
    let s = api_error(
        clusters(&c)
            .patch(
                "pg",
                &PatchParams::default(),
                &Patch::Strategic(json!({"spec": {"instances": 1}})),
            )
            .await,
    );
    assert_status(&s, 415, "UnsupportedMediaType");
}

#[tokio::test]
async fn missing_objects_are_404() {
    let sb = sandbox().await;
    let c = admin(&sb).await;
    let api = pvcs(&c);
    assert_status(&api_error(api.get("nope").await), 404, "NotFound");
    assert_status(
        &api_error(api.delete("nope", &DeleteParams::default()).await),
        404,
        "NotFound",
    );
    assert_status(
        &api_error(
            api.patch("nope", &PatchParams::default(), &Patch::Merge(json!({})))
                .await,
        ),
        404,
        "NotFound",
    );
    let s = api_error(clusters(&c).get("nope").await);
    assert_eq!(s.message, "clusters.postgresql.cnpg.io \"nope\" not found");
    assert_eq!(s.details.as_ref().unwrap().group, "postgresql.cnpg.io");
    let s = api_error(
        raw(
            &c,
            "GET",
            "/api/v1/namespaces/ns/secrets",
            "application/json",
            "",
        )
        .await,
    );
    assert_status(&s, 404, "NotFound");
}

#[tokio::test]
async fn missing_token_is_401() {
    let sb = sandbox().await;
    let config = kube::Config::new(sb.url().parse().unwrap());
    let anon = Client::try_from(config).unwrap();
    let s = api_error(
        Api::<PersistentVolumeClaim>::namespaced(anon, NS)
            .get("a")
            .await,
    );
    assert_status(&s, 401, "Unauthorized");
}

#[tokio::test]
async fn invalid_objects_are_rejected() {
    let sb = sandbox().await;
    let c = admin(&sb).await;
    let api = pvcs(&c);
    let s = api_error(
        api.create(&PostParams::default(), &pvc("Bad_Name", "1Gi", "x"))
            .await,
    );
    assert_status(&s, 422, "Invalid");
    let mut no_modes = pvc("a", "1Gi", "x");
    no_modes.spec.as_mut().unwrap().access_modes = None;
    let s = api_error(api.create(&PostParams::default(), &no_modes).await);
    assert_status(&s, 422, "Invalid");
    assert!(
        s.message.contains("spec.accessModes: Required value"),
        "{}",
        s.message
    );
    let mut wrong_ns = pvc("a", "1Gi", "x");
    wrong_ns.metadata.namespace = Some("other".into());
    assert_status(
        &api_error(api.create(&PostParams::default(), &wrong_ns).await),
        400,
        "BadRequest",
    );
}

#[tokio::test]
async fn delete_preconditions_are_409() {
    let sb = sandbox().await;
    let c = admin(&sb).await;
    let api = pvcs(&c);
    let p = api
        .create(&PostParams::default(), &pvc("a", "1Gi", "x"))
        .await
        .unwrap();
    let dp = DeleteParams {
        preconditions: Some(kube::api::Preconditions {
            resource_version: Some("1".into()),
            uid: None,
        }),
        ..DeleteParams::default()
    };
    let s = api_error(api.delete("a", &dp).await);
    assert_status(&s, 409, "Conflict");
    assert!(s.message.contains("Precondition failed"), "{}", s.message);
    let dp = DeleteParams {
        preconditions: Some(kube::api::Preconditions {
            resource_version: p.metadata.resource_version.clone(),
            uid: p.metadata.uid.clone(),
        }),
        ..DeleteParams::default()
    };
    api.delete("a", &dp).await.unwrap();
}
