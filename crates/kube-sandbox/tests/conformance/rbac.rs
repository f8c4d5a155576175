//! RBAC: an enforced Role grants exactly its rules; everything else is 403 with the real message.

use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::storage::v1::StorageClass;
use kube::api::{DeleteParams, ListParams, Patch, PatchParams, PostParams, WatchParams};
use kube::Api;
use serde_json::json;

use crate::common::*;

const SA: &str = "system:serviceaccount:ns:autoresize";

const ROLE: &str = r#"
apiVersion: rbac.authorization.k8s.io/v1
kind: Role
metadata:
  name: autoresize
  namespace: ns
rules:
  - apiGroups: [""]
    resources: ["persistentvolumeclaims"]
    verbs: ["get", "list", "watch", "patch"]
  - apiGroups: ["postgresql.cnpg.io"]
    resources: ["clusters"]
    verbs: ["get"]
  - apiGroups: ["postgresql.cnpg.io"]
    resources: ["clusters/status"]
    verbs: ["patch"]
  - apiGroups: ["coordination.k8s.io"]
    resources: ["leases"]
    verbs: ["get", "update"]
    resourceNames: ["autoresize-pg"]
"#;

#[tokio::test]
async fn role_grants_and_denials() {
    let sb = sandbox().await;
    let c = admin(&sb).await;
    pvcs(&c)
        .create(&PostParams::default(), &pvc("a", "1Gi", "x"))
        .await
        .unwrap();
    clusters(&c)
        .create(&PostParams::default(), &cluster_obj("pg"))
        .await
        .unwrap();
    Api::<Lease>::namespaced(c.clone(), NS)
        .create(
            &PostParams::default(),
            &from_json(json!({"metadata": {"name": "autoresize-pg"}})),
        )
        .await
        .unwrap();
    sb.enforce_role(SA, ROLE).unwrap();
    let sa = sb.client_as(SA).await.unwrap();

    // Granted.
    pvcs(&sa).get("a").await.unwrap();
    pvcs(&sa).list(&ListParams::default()).await.unwrap();
    let _stream = pvcs(&sa).watch(&WatchParams::default(), "0").await.unwrap();
    pvcs(&sa)
        .patch(
            "a",
            &PatchParams::default(),
            &Patch::Merge(json!({"metadata": {"labels": {"k": "v"}}})),
        )
        .await
        .unwrap();
    clusters(&sa).get("pg").await.unwrap();
    clusters(&sa)
        .patch_status(
            "pg",
            &PatchParams::default(),
            &Patch::Merge(json!({"status": {"x": 1}})),
        )
        .await
        .unwrap();
    let leases: Api<Lease> = Api::namespaced(sa.clone(), NS);
    leases.get("autoresize-pg").await.unwrap();

    // Denied, with the real message shape.
    let s = api_error(pvcs(&sa).delete("a", &DeleteParams::default()).await);
    assert_status(&s, 403, "Forbidden");
    assert_eq!(
        s.message,
        format!("persistentvolumeclaims \"a\" is forbidden: User \"{SA}\" cannot delete resource \"persistentvolumeclaims\" in API group \"\" in the namespace \"ns\"")
    );
    let s = api_error(
        clusters(&sa)
            .patch("pg", &PatchParams::default(), &Patch::Merge(json!({})))
            .await,
    );
    assert_eq!(
        s.message,
        format!("clusters.postgresql.cnpg.io \"pg\" is forbidden: User \"{SA}\" cannot patch resource \"clusters\" in API group \"postgresql.cnpg.io\" in the namespace \"ns\"")
    );
    let s = api_error(
        pvcs(&sa)
            .patch_status("a", &PatchParams::default(), &Patch::Merge(json!({})))
            .await,
    );
    assert!(
        s.message
            .contains("cannot patch resource \"persistentvolumeclaims/status\""),
        "{}",
        s.message
    );
    assert_status(&api_error(leases.get("other").await), 403, "Forbidden");
    let s = api_error(
        leases
            .create(
                &PostParams::default(),
                &from_json(json!({"metadata": {"name": "autoresize-pg2"}})),
            )
            .await,
    );
    assert_eq!(
        s.message,
        format!("leases.coordination.k8s.io is forbidden: User \"{SA}\" cannot create resource \"leases\" in API group \"coordination.k8s.io\" in the namespace \"ns\"")
    );
    let other_ns: Api<k8s_openapi::api::core::v1::PersistentVolumeClaim> =
        Api::namespaced(sa.clone(), "other");
    assert_status(
        &api_error(other_ns.list(&ListParams::default()).await),
        403,
        "Forbidden",
    );
    let s = api_error(
        Api::<StorageClass>::all(sa.clone())
            .list(&ListParams::default())
            .await,
    );
    assert!(s.message.ends_with("at the cluster scope"), "{}", s.message);

    // Identities without an enforced role, and admin, are unrestricted.
    let free = sb.client_as("someone-else").await.unwrap();
    pvcs(&free)
        .delete("a", &DeleteParams::default())
        .await
        .unwrap();
}

#[tokio::test]
async fn roles_via_http_endpoint() {
    let sb = sandbox().await;
    let c = admin(&sb).await;
    raw(
        &c,
        "POST",
        "/sandbox/v1/roles/bob",
        "application/yaml",
        ROLE,
    )
    .await
    .unwrap();
    let bob = sb.client_as("bob").await.unwrap();
    assert_status(
        &api_error(
            Api::<StorageClass>::all(bob)
                .list(&ListParams::default())
                .await,
        ),
        403,
        "Forbidden",
    );
    assert!(sb.enforce_role("x", "kind: ConfigMap\n").is_err());
}
