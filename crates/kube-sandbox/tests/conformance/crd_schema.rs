//! CRD structural schemas with the fork's real Cluster CRD: pruning with warnings, null
//! dropping, defaults and validation on spec and `/status` writes; CRDs registered at run time.

use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{
    ApiResource, DeleteParams, DynamicObject, GroupVersionKind, Patch, PatchParams, PostParams,
};
use kube::Api;
use serde_json::{json, Value};

use crate::common::*;

const ADMIN_AUTH: (&str, &str) = ("Authorization", "Bearer admin");
const MERGE: (&str, &str) = ("Content-Type", "application/merge-patch+json");
const CLUSTERS: &str = "/apis/postgresql.cnpg.io/v1/namespaces/ns/clusters";

async fn create_cluster(sb: &kube_sandbox::Sandbox, name: &str) -> DynamicObject {
    let c = admin(sb).await;
    clusters(&c)
        .create(&PostParams::default(), &from_json(fork_cluster(name)))
        .await
        .expect("create fork Cluster")
}

#[tokio::test]
async fn status_field_outside_the_crd_is_dropped_with_a_warning_header() {
    let sb = fork_sandbox().await;
    create_cluster(&sb, "pg").await;
    let body = json!({"status": {
        "phase": "Cluster in healthy state",
        "notInCrd": {"x": 1},
        "autoResizeEvents": [{"pvcName": "pg-1", "result": "success", "bogus": 2}]
    }});
    let r = raw_http(
        &sb,
        "PATCH",
        &format!("{CLUSTERS}/pg/status"),
        &[ADMIN_AUTH, MERGE],
        &body.to_string(),
    )
    .await;
    assert_eq!(r.code, 200, "{}", r.body);
    // One warning per pruned field, sorted, exactly as schemaCoercingDecoder words them.
    assert_eq!(
        r.header_values("Warning"),
        [
            r#"299 - "unknown field \"status.autoResizeEvents[0].bogus\"""#,
            r#"299 - "unknown field \"status.notInCrd\"""#,
        ]
    );
    let status = &r.json()["status"];
    assert_eq!(status["phase"], "Cluster in healthy state");
    assert!(status.get("notInCrd").is_none(), "{status}");
    assert_eq!(
        status["autoResizeEvents"],
        json!([{"pvcName": "pg-1", "result": "success"}])
    );
    // The stored object is the pruned one.
    let stored = clusters(&admin(&sb).await).get_status("pg").await.unwrap();
    assert!(stored.data["status"].get("notInCrd").is_none());
    // A write without unknown fields carries no warning.
    let r = raw_http(
        &sb,
        "PATCH",
        &format!("{CLUSTERS}/pg/status"),
        &[ADMIN_AUTH, MERGE],
        r#"{"status": {"phase": "x"}}"#,
    )
    .await;
    assert_eq!((r.code, r.header_values("Warning").len()), (200, 0));
}

#[tokio::test]
async fn spec_fields_outside_the_crd_are_dropped_with_warnings_on_create_and_update() {
    let sb = fork_sandbox().await;
    let mut obj = fork_cluster("pg");
    obj["spec"]["madeUp"] = json!(true);
    obj["spec"]["storage"]["alsoMadeUp"] = json!("x");
    obj["topLevel"] = json!(1);
    let r = raw_http(&sb, "POST", CLUSTERS, &[ADMIN_AUTH], &obj.to_string()).await;
    assert_eq!(r.code, 201, "{}", r.body);
    assert_eq!(
        r.header_values("Warning"),
        [
            r#"299 - "unknown field \"spec.madeUp\"""#,
            r#"299 - "unknown field \"spec.storage.alsoMadeUp\"""#,
            r#"299 - "unknown field \"topLevel\"""#,
        ]
    );
    let created = r.json();
    assert!(created["spec"].get("madeUp").is_none());
    assert!(created.get("topLevel").is_none());
    // Strict field validation turns the same into a 400.
    let mut strict = fork_cluster("strict");
    strict["spec"]["madeUp"] = json!(1);
    let r = raw_http(
        &sb,
        "POST",
        &format!("{CLUSTERS}?fieldValidation=Strict"),
        &[ADMIN_AUTH],
        &strict.to_string(),
    )
    .await;
    assert_eq!(r.code, 400, "{}", r.body);
    assert_eq!(
        r.json()["message"],
        r#"strict decoding error: unknown field "spec.madeUp""#
    );
}

#[tokio::test]
async fn null_timestamp_in_an_auto_resize_event_is_stored_without_timestamp() {
    let sb = fork_sandbox().await;
    let c = admin(&sb).await;
    let api = clusters(&c);
    create_cluster(&sb, "pg").await;
    let event = json!({"instanceName": "pg-1", "pvcName": "pg-1", "volumeType": "data",
                       "previousSize": "1Gi", "newSize": "2Gi", "result": "success", "timestamp": null});
    // Merge patch (where null would mean "delete") and a full PUT (where it is a value) alike.
    let patched = api
        .patch_status(
            "pg",
            &PatchParams::default(),
            &Patch::Merge(json!({"status": {"autoResizeEvents": [event]}})),
        )
        .await
        .unwrap();
    let stored = &patched.data["status"]["autoResizeEvents"][0];
    assert!(stored.get("timestamp").is_none(), "{stored}");
    assert_eq!(stored["pvcName"], "pg-1");
    let mut full = api.get_status("pg").await.unwrap();
    full.data["status"]["autoResizeEvents"] = json!([event, event]);
    let replaced = api
        .replace_status("pg", &PostParams::default(), &full)
        .await
        .unwrap();
    let events = replaced.data["status"]["autoResizeEvents"]
        .as_array()
        .unwrap();
    assert_eq!(events.len(), 2);
    assert!(
        events.iter().all(|e| e.get("timestamp").is_none()),
        "{events:?}"
    );
    // A real timestamp stays; a malformed one is 422 (format date-time is checked).
    let ok = api
        .patch_status(
            "pg",
            &PatchParams::default(),
            &Patch::Merge(
                json!({"status": {"autoResizeEvents": [{"timestamp": "2026-01-02T03:04:05Z"}]}}),
            ),
        )
        .await
        .unwrap();
    assert_eq!(
        ok.data["status"]["autoResizeEvents"][0]["timestamp"],
        "2026-01-02T03:04:05Z"
    );
    let s = api_error(
        api.patch_status(
            "pg",
            &PatchParams::default(),
            &Patch::Merge(json!({"status": {"autoResizeEvents": [{"timestamp": "yesterday"}]}})),
        )
        .await,
    );
    assert_status(&s, 422, "Invalid");
    assert_eq!(
        s.message,
        r#"Cluster.postgresql.cnpg.io "pg" is invalid: status.autoResizeEvents[0].timestamp: Invalid value: "yesterday": status.autoResizeEvents[0].timestamp in body must be of type date-time: "yesterday""#
    );
}

#[tokio::test]
async fn enum_violations_are_422_on_spec_and_status() {
    let sb = fork_sandbox().await;
    let c = admin(&sb).await;
    let api = clusters(&c);
    create_cluster(&sb, "pg").await;
    let s = api_error(
        api.patch(
            "pg",
            &PatchParams::default(),
            &Patch::Merge(
                json!({"spec": {"storage": {"resize": {"strategy": {"mode": "Recommend"}}}}}),
            ),
        )
        .await,
    );
    assert_status(&s, 422, "Invalid");
    assert_eq!(
        s.message,
        r#"Cluster.postgresql.cnpg.io "pg" is invalid: spec.storage.resize.strategy.mode: Unsupported value: "Recommend": supported values: "Standard""#
    );
    let details = s.details.as_ref().expect("details");
    assert_eq!(
        (details.kind.as_str(), details.group.as_str()),
        ("Cluster", "postgresql.cnpg.io")
    );
    assert_eq!(details.causes[0].reason, "FieldValueNotSupported");
    assert_eq!(details.causes[0].field, "spec.storage.resize.strategy.mode");
    let s = api_error(
        api.patch_status(
            "pg",
            &PatchParams::default(),
            &Patch::Merge(json!({"status": {"autoResizeEvents": [{"result": "maybe"}]}})),
        )
        .await,
    );
    assert_status(&s, 422, "Invalid");
    assert_eq!(
        s.message,
        r#"Cluster.postgresql.cnpg.io "pg" is invalid: status.autoResizeEvents[0].result: Unsupported value: "maybe": supported values: "success", "failure""#
    );
    // Nothing was stored.
    let got = api.get("pg").await.unwrap();
    assert!(got.data["spec"]["storage"].get("resize").is_none());
}

#[tokio::test]
async fn wrong_types_and_bounds_are_422_with_every_error_collected() {
    let sb = fork_sandbox().await;
    let c = admin(&sb).await;
    let api = clusters(&c);
    let mut obj = fork_cluster("pg");
    obj["spec"]["instances"] = json!("three");
    obj["spec"]["storage"]["resize"] =
        json!({"strategy": {"mode": "Recommend", "maxActionsPerDay": 11}});
    let s = api_error(api.create(&PostParams::default(), &from_json(obj)).await);
    assert_status(&s, 422, "Invalid");
    assert_eq!(
        s.message,
        r#"Cluster.postgresql.cnpg.io "pg" is invalid: [spec.instances: Invalid value: "string": spec.instances in body must be of type integer: "string", spec.storage.resize.strategy.maxActionsPerDay: Invalid value: 11: spec.storage.resize.strategy.maxActionsPerDay in body should be less than or equal to 10, spec.storage.resize.strategy.mode: Unsupported value: "Recommend": supported values: "Standard"]"#
    );
    let causes = &s.details.as_ref().unwrap().causes;
    assert_eq!(causes.len(), 3);
    assert_eq!(causes[0].reason, "FieldValueTypeInvalid");
    let mut obj = fork_cluster("pg");
    obj["spec"]["instances"] = json!(0);
    let s = api_error(api.create(&PostParams::default(), &from_json(obj)).await);
    assert_eq!(
        s.message,
        r#"Cluster.postgresql.cnpg.io "pg" is invalid: spec.instances: Invalid value: 0: spec.instances in body should be greater than or equal to 1"#
    );
    let mut obj = fork_cluster("pg");
    obj["spec"]["replicationSlots"] = json!({"highAvailability": {"slotPrefix": "Bad-Prefix"}});
    let s = api_error(api.create(&PostParams::default(), &from_json(obj)).await);
    assert_eq!(
        s.message,
        r#"Cluster.postgresql.cnpg.io "pg" is invalid: spec.replicationSlots.highAvailability.slotPrefix: Invalid value: "Bad-Prefix": spec.replicationSlots.highAvailability.slotPrefix in body should match '^[0-9a-z_]*$'"#
    );
    // The root requires spec.
    let s = api_error(
        api.create(
            &PostParams::default(),
            &from_json(json!({"apiVersion": "postgresql.cnpg.io/v1", "kind": "Cluster", "metadata": {"name": "nospec"}})),
        )
        .await,
    );
    assert_eq!(
        s.message,
        r#"Cluster.postgresql.cnpg.io "nospec" is invalid: spec: Required value"#
    );
    // Status writes are validated too: a Condition missing its required fields.
    create_cluster(&sb, "ok").await;
    let s = api_error(
        api.patch_status(
            "ok",
            &PatchParams::default(),
            &Patch::Merge(
                json!({"status": {"conditions": [{"type": "Ready", "status": "Maybe"}]}}),
            ),
        )
        .await,
    );
    assert_status(&s, 422, "Invalid");
    assert!(
        s.message.contains(r#"status.conditions[0].status: Unsupported value: "Maybe": supported values: "True", "False", "Unknown""#)
            && s.message.contains("status.conditions[0].lastTransitionTime: Required value"),
        "{}",
        s.message
    );
}

#[tokio::test]
async fn defaults_are_applied_on_create_update_and_patch() {
    let sb = fork_sandbox().await;
    let c = admin(&sb).await;
    let api = clusters(&c);
    let mut obj = fork_cluster("pg");
    obj["spec"]["storage"]["resize"] = json!({"strategy": {}});
    let created = api
        .create(&PostParams::default(), &from_json(obj))
        .await
        .unwrap();
    let spec = &created.data["spec"];
    assert_eq!(spec["storage"]["resize"]["enabled"], false);
    assert_eq!(spec["storage"]["resize"]["strategy"]["mode"], "Standard");
    // Nested defaults: replicationSlots defaults to {highAvailability: {enabled: true}}, then
    // highAvailability's own defaults fill in.
    assert_eq!(
        spec["replicationSlots"]["highAvailability"]["slotPrefix"],
        "_cnpg_"
    );
    assert_eq!(
        spec["replicationSlots"]["highAvailability"]["enabled"],
        true
    );
    // An update that drops a defaulted field gets the default back.
    let mut again = created.clone();
    again.data["spec"]["storage"]["resize"]
        .as_object_mut()
        .unwrap()
        .remove("enabled");
    let updated = api
        .replace("pg", &PostParams::default(), &again)
        .await
        .unwrap();
    assert_eq!(updated.data["spec"]["storage"]["resize"]["enabled"], false);
    // A patch adding an empty object gets that object's defaults.
    let patched = api
        .patch(
            "pg",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"storage": {"resize": {"expansion": {}}}}})),
        )
        .await
        .unwrap();
    assert_eq!(
        patched.data["spec"]["storage"]["resize"]["expansion"],
        json!({"maxStep": "500Gi", "minStep": "2Gi"})
    );
    // A null for a defaulted field is replaced by the default.
    let patched = api
        .patch(
            "pg",
            &PatchParams::default(),
            &Patch::Json::<()>(
                serde_json::from_value(json!([
                    {"op": "replace", "path": "/spec/storage/resize/enabled", "value": null}
                ]))
                .unwrap(),
            ),
        )
        .await
        .unwrap();
    assert_eq!(patched.data["spec"]["storage"]["resize"]["enabled"], false);
}

pub fn widget_crd() -> Value {
    json!({
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": "widgets.example.com"},
        "spec": {
            "group": "example.com",
            "scope": "Namespaced",
            "names": {"plural": "widgets", "singular": "widget", "kind": "Widget", "shortNames": ["wd"]},
            "versions": [{
                "name": "v1", "served": true, "storage": true,
                "subresources": {"status": {}},
                "schema": {"openAPIV3Schema": {"type": "object", "properties": {
                    "spec": {"type": "object", "properties": {
                        "size": {"type": "integer", "default": 3},
                        "color": {"type": "string", "enum": ["red", "blue"]}
                    }},
                    "status": {"type": "object", "properties": {"ready": {"type": "boolean"}}}
                }}}
            }]
        }
    })
}

fn widgets(c: &kube::Client) -> Api<DynamicObject> {
    let ar = ApiResource::from_gvk_with_plural(
        &GroupVersionKind::gvk("example.com", "v1", "Widget"),
        "widgets",
    );
    Api::namespaced_with(c.clone(), NS, &ar)
}

#[tokio::test]
async fn a_crd_created_through_the_api_serves_its_resource_until_deleted() {
    let sb = sandbox().await;
    let c = admin(&sb).await;
    let crds: Api<CustomResourceDefinition> = Api::all(c.clone());
    assert_status(
        &api_error(widgets(&c).list(&Default::default()).await),
        404,
        "NotFound",
    );
    let created = crds
        .create(&PostParams::default(), &from_json(widget_crd()))
        .await
        .unwrap();
    let conditions = created.status.unwrap().conditions.unwrap();
    assert!(conditions
        .iter()
        .any(|c| c.type_ == "Established" && c.status == "True"));
    // Discovery lists it.
    let list: Value = serde_json::from_str(
        &raw(&c, "GET", "/apis/example.com/v1", "", "")
            .await
            .unwrap(),
    )
    .unwrap();
    let names: Vec<&str> = list["resources"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|r| r["name"].as_str())
        .collect();
    assert_eq!(names, ["widgets", "widgets/status"]);
    let groups: Value =
        serde_json::from_str(&raw(&c, "GET", "/apis", "", "").await.unwrap()).unwrap();
    assert!(groups["groups"]
        .as_array()
        .unwrap()
        .iter()
        .any(|g| g["name"] == "example.com"));
    // Objects are pruned, defaulted and validated with its schema.
    let w = widgets(&c)
        .create(
            &PostParams::default(),
            &from_json(json!({"apiVersion": "example.com/v1", "kind": "Widget", "metadata": {"name": "w"}, "spec": {"color": "red", "extra": 1}})),
        )
        .await
        .unwrap();
    assert_eq!(w.data["spec"], json!({"color": "red", "size": 3}));
    let s = api_error(
        widgets(&c)
            .patch(
                "w",
                &PatchParams::default(),
                &Patch::Merge(json!({"spec": {"color": "green"}})),
            )
            .await,
    );
    assert_eq!(
        s.message,
        r#"Widget.example.com "w" is invalid: spec.color: Unsupported value: "green": supported values: "red", "blue""#
    );
    // A name that does not match the names is refused, as the real validation does.
    let mut bad = widget_crd();
    bad["metadata"]["name"] = json!("gadgets.example.com");
    let s = api_error(crds.create(&PostParams::default(), &from_json(bad)).await);
    assert_status(&s, 422, "Invalid");
    assert_eq!(
        s.message,
        r#"CustomResourceDefinition.apiextensions.k8s.io "gadgets.example.com" is invalid: metadata.name: Invalid value: "gadgets.example.com": must be spec.names.plural+"."+spec.group"#
    );
    // Changing the schema applies to later writes and to the stored objects.
    let mut changed = widget_crd();
    changed["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"]["properties"]
        .as_object_mut()
        .unwrap()
        .remove("color");
    crds.patch(
        "widgets.example.com",
        &PatchParams::default(),
        &Patch::Merge(json!({"spec": changed["spec"]})),
    )
    .await
    .unwrap();
    assert_eq!(
        widgets(&c).get("w").await.unwrap().data["spec"],
        json!({"size": 3})
    );
    crds.delete("widgets.example.com", &DeleteParams::default())
        .await
        .unwrap();
    assert_status(&api_error(widgets(&c).get("w").await), 404, "NotFound");
}

#[tokio::test]
async fn register_crd_at_run_time_replaces_the_schemaless_cluster() {
    let sb = sandbox().await;
    let c = admin(&sb).await;
    let mut obj = fork_cluster("before");
    obj["spec"]["anything"] = json!("kept");
    let before = clusters(&c)
        .create(&PostParams::default(), &from_json(obj))
        .await
        .unwrap();
    assert_eq!(
        before.data["spec"]["anything"], "kept",
        "no schema: everything is kept"
    );
    sb.register_crd(&fork_crd()).unwrap();
    // Stored objects now read as the schema says (pruned, defaulted), like reads from etcd.
    let now = clusters(&c).get("before").await.unwrap();
    assert!(now.data["spec"].get("anything").is_none());
    assert_eq!(
        now.data["spec"]["replicationSlots"]["highAvailability"]["slotPrefix"],
        "_cnpg_"
    );
    assert!(sb.register_crd("kind: ConfigMap\n").is_err());
}
