//! Admission policies and admission plugins, as a real API server runs them: a
//! ValidatingAdmissionPolicy denies with the real server's message, a
//! MutatingAdmissionPolicy's JSONPatch (with `JSONPatch{...}` and `Object.x{...}`
//! constructions) changes the pod before it is stored, the ServiceAccount plugin mounts
//! the token, and the pod's QoS class is computed after admission.

use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, Patch, PatchParams, PostParams};
use kube::ResourceExt;
use serde_json::{json, Value};

use crate::common::*;

async fn create(sb: &kube_sandbox::Sandbox, path: &str, obj: Value) -> RawResponse {
    raw_http(
        sb,
        "POST",
        path,
        &[
            ("Authorization", "Bearer admin"),
            ("Content-Type", "application/json"),
        ],
        &obj.to_string(),
    )
    .await
}

const VAP: &str = "/apis/admissionregistration.k8s.io/v1/validatingadmissionpolicies";
const VAPB: &str = "/apis/admissionregistration.k8s.io/v1/validatingadmissionpolicybindings";
const MAP: &str = "/apis/admissionregistration.k8s.io/v1/mutatingadmissionpolicies";
const MAPB: &str = "/apis/admissionregistration.k8s.io/v1/mutatingadmissionpolicybindings";

#[tokio::test]
async fn a_validating_policy_denies_what_it_refuses_and_only_for_whom_it_matches() {
    let sb = sandbox().await;
    let client = admin(&sb).await;
    storage_class(&client, "fast", Some(true)).await;
    bound_pvc(&client, "data", "1Gi", "fast").await;
    let policy = json!({"apiVersion": "admissionregistration.k8s.io/v1", "kind": "ValidatingAdmissionPolicy",
        "metadata": {"name": "grow-only"},
        "spec": {"failurePolicy": "Fail",
            "matchConstraints": {"resourceRules": [{"apiGroups": [""], "apiVersions": ["v1"],
                "operations": ["UPDATE"], "resources": ["persistentvolumeclaims"]}]},
            "matchConditions": [{"name": "robots", "expression": "request.userInfo.username.startsWith('system:serviceaccount:')"}],
            // Index 3 is out of bounds for the admin: the variable is lazy, and the match
            // condition keeps the admin out before anything reads it.
            "variables": [{"name": "caller", "expression": "request.userInfo.username.split(':')[3]"}],
            "validations": [{"expression": "!quantity(string(object.spec.resources.requests.storage)).isLessThan(quantity(string(oldObject.spec.resources.requests.storage))) && object.metadata.labels == oldObject.metadata.labels",
                "messageExpression": "'only growth, by ' + variables.caller"}]}});
    assert_eq!(create(&sb, VAP, policy).await.code, 201);
    let binding = json!({"apiVersion": "admissionregistration.k8s.io/v1", "kind": "ValidatingAdmissionPolicyBinding",
        "metadata": {"name": "grow-only"}, "spec": {"policyName": "grow-only", "validationActions": ["Deny"]}});
    assert_eq!(create(&sb, VAPB, binding).await.code, 201);

    let robot = sb
        .client_as("system:serviceaccount:ns:pg")
        .await
        .expect("client");
    let relabel = json!({"metadata": {"labels": {"stolen": "yes"}}});
    let err = api_error(
        pvcs(&robot)
            .patch("data", &PatchParams::default(), &Patch::Merge(&relabel))
            .await,
    );
    assert_eq!(err.code, 422, "{err:?}");
    assert_eq!(
        err.message,
        "persistentvolumeclaims \"data\" is forbidden: ValidatingAdmissionPolicy 'grow-only' \
         with binding 'grow-only' denied request: only growth, by pg"
    );
    // A growth passes; the admin is not matched by the condition at all.
    let grow = json!({"spec": {"resources": {"requests": {"storage": "2Gi"}}}});
    pvcs(&robot)
        .patch("data", &PatchParams::default(), &Patch::Merge(&grow))
        .await
        .expect("growth allowed");
    pvcs(&client)
        .patch("data", &PatchParams::default(), &Patch::Merge(&relabel))
        .await
        .expect("the admin is not matched");
}

#[tokio::test]
async fn a_mutating_policy_injects_before_storage_and_the_qos_class_follows() {
    let sb = sandbox().await;
    let policy = json!({"apiVersion": "admissionregistration.k8s.io/v1", "kind": "MutatingAdmissionPolicy",
        "metadata": {"name": "inject"},
        "spec": {"failurePolicy": "Ignore", "reinvocationPolicy": "Never",
            "matchConstraints": {"resourceRules": [{"apiGroups": [""], "apiVersions": ["v1"],
                "operations": ["CREATE"], "resources": ["pods"]}],
                "objectSelector": {"matchLabels": {"inject": "yes"}}},
            "variables": [{"name": "hasInit", "expression": "has(object.spec.initContainers)"}],
            "mutations": [{"patchType": "JSONPatch", "jsonPatch": {"expression":
                "(variables.hasInit ? [] : [JSONPatch{op: 'add', path: '/spec/initContainers', value: []}]) + [JSONPatch{op: 'add', path: '/spec/initContainers/-', value: Object.spec.initContainers{name: 'sidecar', image: 'busybox', restartPolicy: 'Always', resources: Object.spec.initContainers.resources{requests: {'cpu': '10m', 'memory': '32Mi'}}}}]"}}]}});
    assert_eq!(create(&sb, MAP, policy).await.code, 201);
    let binding = json!({"apiVersion": "admissionregistration.k8s.io/v1", "kind": "MutatingAdmissionPolicyBinding",
        "metadata": {"name": "inject"}, "spec": {"policyName": "inject"}});
    assert_eq!(create(&sb, MAPB, binding).await.code, 201);

    let pods: Api<Pod> = Api::namespaced(admin(&sb).await, NS);
    let guaranteed = |name: &str, inject: &str| -> Pod {
        from_json(
            json!({"metadata": {"name": name, "labels": {"inject": inject}},
            "spec": {"automountServiceAccountToken": false, "containers": [{"name": "postgres", "image": "postgres",
                "resources": {"limits": {"cpu": "1", "memory": "1Gi"}}}]}}),
        )
    };
    let plain = pods
        .create(&PostParams::default(), &guaranteed("plain", "no"))
        .await
        .expect("created");
    assert_eq!(
        plain.status.unwrap().qos_class.as_deref(),
        Some("Guaranteed")
    );
    let injected = pods
        .create(&PostParams::default(), &guaranteed("injected", "yes"))
        .await
        .expect("created");
    let init = injected
        .spec
        .as_ref()
        .unwrap()
        .init_containers
        .clone()
        .unwrap();
    assert_eq!(init.len(), 1, "{:?}", injected.name_any());
    assert_eq!(init[0].name, "sidecar");
    assert_eq!(init[0].restart_policy.as_deref(), Some("Always"));
    // A sidecar with requests below its (absent) limits makes the pod Burstable.
    assert_eq!(
        injected.status.unwrap().qos_class.as_deref(),
        Some("Burstable")
    );
}

#[tokio::test]
async fn the_service_account_token_is_mounted_unless_the_pod_opts_out() {
    let sb = sandbox().await;
    let pods: Api<Pod> = Api::namespaced(admin(&sb).await, NS);
    let pod = |name: &str, automount: bool| -> Pod {
        from_json(json!({"metadata": {"name": name},
            "spec": {"automountServiceAccountToken": automount,
                "containers": [{"name": "postgres", "image": "postgres"}]}}))
    };
    let mounted = pods
        .create(&PostParams::default(), &pod("a", true))
        .await
        .unwrap();
    let spec = mounted.spec.unwrap();
    let mounts = spec.containers[0].volume_mounts.clone().unwrap();
    assert_eq!(
        mounts[0].mount_path,
        "/var/run/secrets/kubernetes.io/serviceaccount"
    );
    assert!(spec.volumes.unwrap()[0]
        .name
        .starts_with("kube-api-access-"));
    let bare = pods
        .create(&PostParams::default(), &pod("b", false))
        .await
        .unwrap();
    assert!(bare.spec.unwrap().containers[0].volume_mounts.is_none());
}
