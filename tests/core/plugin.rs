//! The CNPG-I plugin driven over gRPC, as CloudNativePG drives it, with a
//! client generated from the project's own protocol definitions
//! (proto/cnpgi/), over plaintext and mutual TLS; with Cluster and instance
//! pod JSON shaped as CloudNativePG 1.25 to 1.30 send them; its patch
//! compared with what the chart's MutatingAdmissionPolicy does to the same
//! pods in the API sandbox, which also says whether the pod is accepted and
//! its QoS class.

use cnpg_autoresize::plugin::inject::{MountPaths, SidecarTemplate, PLUGIN_NAME};
use cnpg_autoresize::plugin::proto::identity::identity_client::IdentityClient;
use cnpg_autoresize::plugin::proto::identity::plugin_capability;
use cnpg_autoresize::plugin::proto::identity::{
    GetPluginCapabilitiesRequest, GetPluginMetadataRequest, ProbeRequest,
};
use cnpg_autoresize::plugin::proto::lifecycle::operator_lifecycle_client::OperatorLifecycleClient;
use cnpg_autoresize::plugin::proto::lifecycle::operator_operation_type::Type as Op;
use cnpg_autoresize::plugin::proto::lifecycle::{
    OperatorLifecycleCapabilitiesRequest, OperatorLifecycleRequest, OperatorOperationType,
};
use cnpg_autoresize::plugin::proto::operator::operator_capability;
use cnpg_autoresize::plugin::proto::operator::operator_capability::rpc::Type as Rpc;
use cnpg_autoresize::plugin::proto::operator::operator_client::OperatorClient;
use cnpg_autoresize::plugin::proto::operator::{
    OperatorCapabilitiesRequest, OperatorMutateClusterRequest,
    OperatorValidateClusterChangeRequest, OperatorValidateClusterCreateRequest,
    SetStatusInClusterRequest,
};
use cnpg_autoresize::plugin::service::Plugin;
use cnpg_autoresize::plugin::status::StatusMode;
use cnpg_autoresize::plugin::tls::{Reloader, TlsFiles};
use k8s_openapi::api::core::v1::Pod;
use kube::api::{ApiResource, DynamicObject, GroupVersionKind, PostParams};
use kube::Api;
use serde_json::{json, Value};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use tokio::sync::oneshot;
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Endpoint, Identity};

const NS: &str = "databases";
/// The MutatingAdmissionPolicy's binding matches `databases` only: the
/// plugin's pods are created elsewhere, or the policy would inject too.
const PLUGIN_NS: &str = "plugin-path";
/// The chart's Service name, the TLS server name CloudNativePG checks.
const SERVICE: &str = "cnpg-autoresize-cnpgi";

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/cnpgi")
        .join(name)
}

/// The chart's rendering: its MutatingAdmissionPolicy and binding, and the
/// sidecar template its ConfigMap carries (hack/render-plugin-fixtures.py).
struct Chart {
    policy: Value,
    binding: Value,
    template: String,
}

fn chart(name: &str) -> Chart {
    let text = std::fs::read_to_string(fixture(name)).unwrap();
    let mut docs = Vec::new();
    for doc in serde_norway::Deserializer::from_str(&text) {
        let value: Value = serde::Deserialize::deserialize(doc).unwrap();
        docs.push(value);
    }
    let kind = |k: &str| {
        docs.iter()
            .find(|d| d["kind"] == k)
            .cloned()
            .unwrap_or_else(|| panic!("{name} has no {k}"))
    };
    Chart {
        policy: kind("MutatingAdmissionPolicy"),
        binding: kind("MutatingAdmissionPolicyBinding"),
        template: docs
            .iter()
            .find_map(|d| d["sidecarTemplate"].as_str())
            .expect("the sidecar template")
            .to_string(),
    }
}

// ------------------------------------------------------------ CNPG shapes

#[derive(Clone, Copy, Debug, PartialEq)]
enum Cnpg {
    V1_25,
    V1_27_0,
    V1_28_2,
    V1_30,
}

const VERSIONS: [Cnpg; 4] = [Cnpg::V1_25, Cnpg::V1_27_0, Cnpg::V1_28_2, Cnpg::V1_30];

impl Cnpg {
    fn tag(self) -> &'static str {
        match self {
            Cnpg::V1_25 => "1.25.0",
            Cnpg::V1_27_0 => "1.27.0",
            Cnpg::V1_28_2 => "1.28.2",
            Cnpg::V1_30 => "1.30.0",
        }
    }

    /// `tbs-<name>` from 1.27.4 / 1.28.2 / 1.29; the bare name before.
    fn tablespace_volume(self, name: &str) -> String {
        let k8s = k8s_name(name);
        match self {
            Cnpg::V1_25 | Cnpg::V1_27_0 => k8s,
            _ => format!("tbs-{k8s}"),
        }
    }
}

/// CloudNativePG's convertPostgresIDToK8sName.
fn k8s_name(name: &str) -> String {
    let mut k8s: String = name.to_lowercase().replace(['_', '$'], "-");
    if name.starts_with('_') {
        k8s.replace_range(0..1, "1");
    }
    k8s
}

#[derive(Clone, Debug)]
struct Shape {
    wal: bool,
    tablespaces: Vec<&'static str>,
    /// requests = limits on every container (CloudNativePG's production
    /// advice); else requests only.
    guaranteed: bool,
}

fn cluster(name: &str, namespace: &str, shape: &Shape, plugins: Value) -> Value {
    let resources = if shape.guaranteed {
        json!({"requests": {"cpu": "1", "memory": "1Gi"}, "limits": {"cpu": "1", "memory": "1Gi"}})
    } else {
        json!({"requests": {"cpu": "500m", "memory": "512Mi"}})
    };
    let mut spec = json!({
        "instances": 3,
        "imageName": "ghcr.io/cloudnative-pg/postgresql:17.5",
        "primaryUpdateStrategy": "unsupervised",
        "storage": {"size": "10Gi"},
        "resources": resources,
        "plugins": plugins,
    });
    if shape.wal {
        spec["walStorage"] = json!({"size": "2Gi"});
    }
    if !shape.tablespaces.is_empty() {
        spec["tablespaces"] = json!(shape
            .tablespaces
            .iter()
            .map(|t| json!({"name": t, "storage": {"size": "1Gi"}}))
            .collect::<Vec<_>>());
    }
    // As CloudNativePG marshals it: typed, with its status.
    json!({"apiVersion": "postgresql.cnpg.io/v1", "kind": "Cluster",
        "metadata": {"name": name, "namespace": namespace, "uid": "8d7c1b7e-0000-4000-8000-000000000001",
            "generation": 1, "creationTimestamp": "2026-01-02T03:04:05Z"},
        "spec": spec,
        "status": {"instances": 3, "readyInstances": 3, "phase": "Cluster in healthy state",
            "currentPrimary": format!("{name}-1"), "targetPrimary": format!("{name}-1"),
            "pluginStatus": [{"name": PLUGIN_NAME, "version": "0.1.0",
                "capabilities": ["TYPE_LIFECYCLE_SERVICE", "TYPE_OPERATOR_SERVICE"]}]}})
}

fn enabled(parameters: Value) -> Value {
    json!([{"name": PLUGIN_NAME, "parameters": parameters}])
}

/// An instance pod as CloudNativePG's `NewInstance` builds it, before
/// admission (pkg/specs/pods.go, volumes.go): what the lifecycle hook gets.
fn instance_pod(version: Cnpg, cluster: &Value, serial: u32) -> Value {
    let name = cluster["metadata"]["name"].as_str().unwrap();
    let namespace = cluster["metadata"]["namespace"].as_str().unwrap();
    let spec = &cluster["spec"];
    let pod_name = format!("{name}-{serial}");
    let resources = spec["resources"].clone();
    let image = spec["imageName"].clone();
    let mut volumes = vec![
        json!({"name": "pgdata", "persistentVolumeClaim": {"claimName": pod_name}}),
        json!({"name": "scratch-data", "emptyDir": {}}),
        json!({"name": "shm", "emptyDir": {"medium": "Memory"}}),
    ];
    let mut mounts = vec![
        json!({"name": "pgdata", "mountPath": "/var/lib/postgresql/data"}),
        json!({"name": "scratch-data", "mountPath": "/run"}),
        json!({"name": "scratch-data", "mountPath": "/controller"}),
        json!({"name": "shm", "mountPath": "/dev/shm"}),
    ];
    if spec.get("walStorage").is_some() {
        volumes.push(json!({"name": "pg-wal", "persistentVolumeClaim": {"claimName": format!("{pod_name}-wal")}}));
        mounts.push(json!({"name": "pg-wal", "mountPath": "/var/lib/postgresql/wal"}));
    }
    let mut tablespaces: Vec<&str> = spec["tablespaces"]
        .as_array()
        .map(|ts| ts.iter().map(|t| t["name"].as_str().unwrap()).collect())
        .unwrap_or_default();
    tablespaces.sort();
    for t in tablespaces {
        let volume = version.tablespace_volume(t);
        let claim = format!("{pod_name}-tbs-{}", k8s_name(t));
        volumes.push(json!({"name": volume, "persistentVolumeClaim": {"claimName": claim}}));
        mounts.push(
            json!({"name": volume, "mountPath": format!("/var/lib/postgresql/tablespaces/{t}")}),
        );
    }
    let bootstrap_mounts = mounts.clone();
    let mut labels = json!({"cnpg.io/cluster": name, "cnpg.io/instanceName": pod_name, "cnpg.io/podRole": "instance"});
    if matches!(version, Cnpg::V1_28_2 | Cnpg::V1_30) {
        for (k, v) in [
            ("app.kubernetes.io/name", "postgresql"),
            ("app.kubernetes.io/instance", name),
            ("app.kubernetes.io/version", "17"),
            ("app.kubernetes.io/component", "database"),
            ("app.kubernetes.io/managed-by", "cloudnative-pg"),
        ] {
            labels[k] = json!(v);
        }
    }
    let mut pod_spec = json!({
        "volumes": volumes,
        "initContainers": [{
            "name": "bootstrap-controller",
            "image": format!("ghcr.io/cloudnative-pg/cloudnative-pg:{}", version.tag()),
            "command": ["/manager", "bootstrap", "/controller/manager", "--log-level=info"],
            "resources": resources,
            "volumeMounts": bootstrap_mounts,
            "securityContext": container_security(),
        }],
        "containers": [{
            "name": "postgres",
            "image": image,
            "command": ["/controller/manager", "instance", "run", "--log-level=info"],
            "env": [
                {"name": "PGDATA", "value": "/var/lib/postgresql/data/pgdata"},
                {"name": "POD_NAME", "value": pod_name},
                {"name": "NAMESPACE", "value": namespace},
                {"name": "CLUSTER_NAME", "value": name},
                {"name": "PSQL_HISTORY", "value": "/controller/tmp/.psql_history"},
                {"name": "PGPORT", "value": "5432"},
                {"name": "PGHOST", "value": "/controller/run"},
                {"name": "TMPDIR", "value": "/controller/tmp"}
            ],
            "ports": [
                {"name": "postgresql", "containerPort": 5432, "protocol": "TCP"},
                {"name": "metrics", "containerPort": 9187, "protocol": "TCP"},
                {"name": "status", "containerPort": 8000, "protocol": "TCP"}
            ],
            "resources": resources,
            "volumeMounts": mounts,
            "livenessProbe": {"httpGet": {"path": "/healthz", "port": 8000, "scheme": "HTTPS"}, "periodSeconds": 10, "timeoutSeconds": 5},
            "readinessProbe": {"httpGet": {"path": "/readyz", "port": 8000, "scheme": "HTTPS"}, "periodSeconds": 10, "timeoutSeconds": 5},
            "startupProbe": {"httpGet": {"path": "/startupz", "port": 8000, "scheme": "HTTPS"}, "periodSeconds": 10, "failureThreshold": 360},
            "securityContext": container_security(),
        }],
        "terminationGracePeriodSeconds": 1800,
        "serviceAccountName": name,
        "hostname": pod_name,
        "subdomain": format!("{name}-any"),
        "securityContext": {"runAsUser": 26, "runAsGroup": 26, "runAsNonRoot": true, "fsGroup": 26,
            "seccompProfile": {"type": "RuntimeDefault"}},
    });
    if version == Cnpg::V1_30 {
        // Its own token volume, mounted into postgres only.
        pod_spec["automountServiceAccountToken"] = json!(false);
        pod_spec["volumes"].as_array_mut().unwrap().push(json!({"name": "kube-api-access", "projected": {
            "defaultMode": 420, "sources": [
                {"serviceAccountToken": {"path": "token", "expirationSeconds": 3607}},
                {"configMap": {"name": "kube-root-ca.crt", "items": [{"key": "ca.crt", "path": "ca.crt"}]}},
                {"downwardAPI": {"items": [{"path": "namespace", "fieldRef": {"apiVersion": "v1", "fieldPath": "metadata.namespace"}}]}}]}}));
        pod_spec["containers"][0]["volumeMounts"]
            .as_array_mut()
            .unwrap()
            .push(json!({"name": "kube-api-access", "mountPath": "/var/run/secrets/kubernetes.io/serviceaccount", "readOnly": true}));
    }
    json!({"kind": "Pod", "apiVersion": "v1",
        "metadata": {"name": pod_name, "namespace": namespace, "creationTimestamp": null, "labels": labels,
            "annotations": {"cnpg.io/nodeSerial": serial.to_string(), "cnpg.io/podEnvHash": "5d4f8c9b7"}},
        "spec": pod_spec,
        "status": {}})
}

fn container_security() -> Value {
    json!({"capabilities": {"drop": ["ALL"]}, "privileged": false, "runAsNonRoot": true,
        "readOnlyRootFilesystem": true, "allowPrivilegeEscalation": false,
        "seccompProfile": {"type": "RuntimeDefault"}})
}

/// CloudNativePG's initdb Job pod: `cnpg.io/jobRole`, no `podRole`.
fn job_pod(cluster: &Value) -> Value {
    let name = cluster["metadata"]["name"].as_str().unwrap();
    let mut pod = instance_pod(Cnpg::V1_28_2, cluster, 1);
    pod["metadata"]["name"] = json!(format!("{name}-1-initdb-x7k2p"));
    pod["metadata"]["labels"] = json!({"cnpg.io/cluster": name, "cnpg.io/jobRole": "initdb",
        "cnpg.io/instanceName": format!("{name}-1"), "job-name": format!("{name}-1-initdb")});
    pod
}

fn shapes() -> Vec<Shape> {
    vec![
        Shape {
            wal: false,
            tablespaces: vec![],
            guaranteed: true,
        },
        Shape {
            wal: true,
            tablespaces: vec!["events", "_scratch"],
            guaranteed: true,
        },
        Shape {
            wal: true,
            tablespaces: vec!["analytics"],
            guaranteed: false,
        },
    ]
}

// ------------------------------------------------------------ the server

struct Server {
    address: String,
    stop: Option<oneshot::Sender<()>>,
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}

fn plugin_with(template: &str, status_mode: StatusMode) -> Arc<Plugin> {
    Arc::new(Plugin {
        template: SidecarTemplate::parse(template).unwrap(),
        paths: MountPaths::default(),
        status_mode,
        kube: None,
    })
}

async fn serve(plugin: Arc<Plugin>, tls: Option<Arc<Reloader>>) -> Server {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap().to_string();
    let (stop, stopped) = oneshot::channel::<()>();
    tokio::spawn(async move {
        cnpg_autoresize::plugin::server::serve(listener, tls, plugin, async {
            let _ = stopped.await;
        })
        .await
        .unwrap();
    });
    Server {
        address,
        stop: Some(stop),
    }
}

async fn plaintext(server: &Server) -> Channel {
    Endpoint::from_shared(format!("http://{}", server.address))
        .unwrap()
        .connect()
        .await
        .unwrap()
}

fn op(t: Op) -> Option<OperatorOperationType> {
    Some(OperatorOperationType { r#type: t as i32 })
}

async fn hook(channel: &Channel, t: Op, cluster: &Value, pod: &Value) -> Vec<Value> {
    let response = OperatorLifecycleClient::new(channel.clone())
        .lifecycle_hook(OperatorLifecycleRequest {
            operation_type: op(t),
            cluster_definition: serde_json::to_vec(cluster).unwrap(),
            object_definition: serde_json::to_vec(pod).unwrap(),
        })
        .await
        .unwrap()
        .into_inner();
    if response.json_patch.is_empty() {
        return Vec::new();
    }
    serde_json::from_slice(&response.json_patch).expect("an RFC 6902 patch (a JSON array)")
}

fn apply(pod: &Value, ops: &[Value]) -> Value {
    let mut patched = pod.clone();
    let patch: json_patch::Patch = serde_json::from_value(Value::Array(ops.to_vec())).unwrap();
    json_patch::patch(&mut patched, &patch).unwrap();
    patched
}

fn init_names(pod: &Value) -> Vec<String> {
    pod["spec"]["initContainers"]
        .as_array()
        .map(|cs| {
            cs.iter()
                .map(|c| c["name"].as_str().unwrap().to_string())
                .collect()
        })
        .unwrap_or_default()
}

// ------------------------------------------------------------ the sandbox

async fn sandbox_with_policy(chart: &Chart) -> (kube_sandbox::Sandbox, kube::Client) {
    let sandbox = kube_sandbox::Sandbox::start(kube_sandbox::SandboxConfig::default())
        .await
        .unwrap();
    let client = sandbox.client().await.unwrap();
    for (kind, plural, object) in [
        (
            "MutatingAdmissionPolicy",
            "mutatingadmissionpolicies",
            &chart.policy,
        ),
        (
            "MutatingAdmissionPolicyBinding",
            "mutatingadmissionpolicybindings",
            &chart.binding,
        ),
    ] {
        let resource = ApiResource::from_gvk_with_plural(
            &GroupVersionKind::gvk("admissionregistration.k8s.io", "v1", kind),
            plural,
        );
        let api: Api<DynamicObject> = Api::all_with(client.clone(), &resource);
        let object: DynamicObject = serde_json::from_value(object.clone()).unwrap();
        api.create(&PostParams::default(), &object)
            .await
            .unwrap_or_else(|e| panic!("the chart's {kind} is refused: {e}"));
    }
    (sandbox, client)
}

async fn create(client: &kube::Client, pod: &Value) -> Value {
    let namespace = pod["metadata"]["namespace"].as_str().unwrap();
    let api: Api<Pod> = Api::namespaced(client.clone(), namespace);
    let typed: Pod = serde_json::from_value(pod.clone()).unwrap();
    let created = api
        .create(&PostParams::default(), &typed)
        .await
        .unwrap_or_else(|e| panic!("the API server refuses the pod: {e}"));
    serde_json::to_value(created).unwrap()
}

/// The pod's spec with the ServiceAccount plugin's random volume suffix
/// (`kube-api-access-xxxxx`) and the namespace (CloudNativePG's NAMESPACE
/// variable) made comparable.
fn comparable_spec(pod: &Value) -> Value {
    let mut text = pod["spec"]
        .to_string()
        .replace(&format!("\"{PLUGIN_NS}\""), &format!("\"{NS}\""));
    let prefix = "\"kube-api-access-";
    let mut at = 0;
    while let Some(i) = text[at..].find(prefix) {
        let start = at + i + prefix.len();
        let end = start + text[start..].find('"').unwrap();
        text.replace_range(start..end, "*");
        at = start;
    }
    serde_json::from_str(&text).unwrap()
}

fn qos(pod: &Value) -> String {
    pod["status"]["qosClass"].as_str().unwrap_or("").to_string()
}

fn sidecar(pod: &Value) -> Value {
    pod["spec"]["initContainers"]
        .as_array()
        .and_then(|cs| cs.iter().find(|c| c["name"] == "cnpg-autoresize"))
        .cloned()
        .unwrap_or(Value::Null)
}

// ------------------------------------------------------------ the tests

#[tokio::test]
async fn plugin_metadata_and_capabilities_are_what_cloudnativepg_needs() {
    let chart = chart("chart-peer.yaml");
    let server = serve(plugin_with(&chart.template, StatusMode::Attention), None).await;
    let channel = plaintext(&server).await;
    let mut identity = IdentityClient::new(channel.clone());
    let metadata = identity
        .get_plugin_metadata(GetPluginMetadataRequest {})
        .await
        .unwrap()
        .into_inner();
    assert_eq!(metadata.name, "autoresize.cnpg.io");
    assert_eq!(metadata.version, env!("CARGO_PKG_VERSION"));
    assert_eq!(metadata.license, "Apache-2.0");
    for (field, value) in [
        ("display_name", &metadata.display_name),
        ("description", &metadata.description),
        ("project_url", &metadata.project_url),
        ("repository_url", &metadata.repository_url),
        ("license_url", &metadata.license_url),
    ] {
        assert!(!value.is_empty(), "{field} is empty");
    }
    assert!(metadata.project_url.starts_with("https://"));
    let capabilities = identity
        .get_plugin_capabilities(GetPluginCapabilitiesRequest {})
        .await
        .unwrap()
        .into_inner()
        .capabilities;
    // Every entry set (the operator dereferences it); no sidecar socket claimed.
    let services: Vec<i32> = capabilities
        .iter()
        .map(|c| match &c.r#type {
            Some(plugin_capability::Type::Service(s)) => s.r#type,
            None => panic!("a capability without its service: {c:?}"),
        })
        .collect();
    assert_eq!(
        services,
        vec![4, 1],
        "lifecycle (4) and operator (1) services"
    );
    assert!(
        identity
            .probe(ProbeRequest {})
            .await
            .unwrap()
            .into_inner()
            .ready
    );
    let lifecycle = OperatorLifecycleClient::new(channel.clone())
        .get_capabilities(OperatorLifecycleCapabilitiesRequest {})
        .await
        .unwrap()
        .into_inner()
        .lifecycle_capabilities;
    assert_eq!(lifecycle.len(), 1);
    assert_eq!(
        (lifecycle[0].group.as_str(), lifecycle[0].kind.as_str()),
        ("", "Pod")
    );
    let verbs: Vec<i32> = lifecycle[0]
        .operation_types
        .iter()
        .map(|o| o.r#type)
        .collect();
    assert_eq!(verbs, vec![Op::Create as i32, Op::Evaluate as i32]);
    let rpcs: Vec<i32> = OperatorClient::new(channel)
        .get_capabilities(OperatorCapabilitiesRequest {})
        .await
        .unwrap()
        .into_inner()
        .capabilities
        .iter()
        .map(|c| match &c.r#type {
            Some(operator_capability::Type::Rpc(r)) => r.r#type,
            None => panic!("an operator capability without its rpc: {c:?}"),
        })
        .collect();
    for rpc in [
        Rpc::ValidateClusterCreate,
        Rpc::ValidateClusterChange,
        Rpc::MutateCluster,
        Rpc::SetStatusInCluster,
    ] {
        assert!(
            rpcs.contains(&(rpc as i32)),
            "{rpc:?} not advertised: {rpcs:?}"
        );
    }
}

/// Every CloudNativePG version and volume layout: the plugin's pod (hook
/// patch, then admission) equals the policy's pod (admission alone), the API
/// server accepts both, and the QoS class is the pod's own.
async fn same_pod_as_the_policy(chart_file: &str, parameters: Value) {
    let chart = chart(chart_file);
    let server = serve(plugin_with(&chart.template, StatusMode::Attention), None).await;
    let channel = plaintext(&server).await;
    let (_sandbox, client) = sandbox_with_policy(&chart).await;
    for version in VERSIONS {
        for (i, shape) in shapes().iter().enumerate() {
            let name = format!("pg-{}-{i}", version.tag().replace('.', "-"));
            let by_plugin = cluster(&name, PLUGIN_NS, shape, enabled(parameters.clone()));
            let by_policy = cluster(&name, NS, shape, json!([]));
            let pod = instance_pod(version, &by_plugin, 1);
            // EVALUATE, then CREATE on the evaluated pod, as the operator does.
            let evaluated = apply(&pod, &hook(&channel, Op::Evaluate, &by_plugin, &pod).await);
            let create_ops = hook(&channel, Op::Create, &by_plugin, &evaluated).await;
            assert!(
                create_ops.is_empty(),
                "{version:?} {shape:?}: CREATE after EVALUATE changes {create_ops:?}"
            );
            assert_eq!(
                init_names(&evaluated),
                ["bootstrap-controller", "cnpg-autoresize"],
                "{version:?} {shape:?}"
            );
            let plugin_pod = create(&client, &evaluated).await;
            let policy_pod = create(&client, &instance_pod(version, &by_policy, 1)).await;
            assert_eq!(
                sidecar(&policy_pod)["name"],
                "cnpg-autoresize",
                "{version:?} {shape:?}: the policy did not inject (the comparison would be empty)"
            );
            assert_eq!(
                comparable_spec(&plugin_pod),
                comparable_spec(&policy_pod),
                "{version:?} {shape:?}: the plugin's pod differs from the policy's"
            );
            let want = if shape.guaranteed {
                "Guaranteed"
            } else {
                "Burstable"
            };
            assert_eq!(qos(&plugin_pod), want, "{version:?} {shape:?}");
            assert_eq!(qos(&policy_pod), want, "{version:?} {shape:?}");
            // Every volume the pod measures is mounted, and the token.
            let mounts: Vec<String> = sidecar(&plugin_pod)["volumeMounts"]
                .as_array()
                .unwrap()
                .iter()
                .map(|m| m["mountPath"].as_str().unwrap().to_string())
                .collect();
            assert!(
                mounts.contains(&"/var/run/secrets/kubernetes.io/serviceaccount".to_string()),
                "{version:?}: {mounts:?}"
            );
            for t in &shape.tablespaces {
                assert!(
                    mounts.contains(&format!("/var/lib/postgresql/tablespaces/{t}")),
                    "{version:?}: {mounts:?}"
                );
            }
        }
    }
}

#[tokio::test]
async fn plugin_patch_equals_the_admission_policys_on_cnpg_1_25_to_1_30_pods() {
    same_pod_as_the_policy("chart-peer.yaml", json!({})).await;
}

#[tokio::test]
async fn plugin_patch_equals_the_admission_policys_with_password_authentication() {
    same_pod_as_the_policy("chart-password.yaml", json!({})).await;
}

#[tokio::test]
async fn plugin_does_nothing_for_job_pods_other_clusters_and_clusters_without_it() {
    let chart = chart("chart-peer.yaml");
    let server = serve(plugin_with(&chart.template, StatusMode::Attention), None).await;
    let channel = plaintext(&server).await;
    let shape = &shapes()[1];
    let with = cluster("pg", NS, shape, enabled(json!({})));
    let other = cluster("other", NS, shape, enabled(json!({})));
    let without = cluster(
        "pg",
        NS,
        shape,
        json!([
        {"name": "barman-cloud.cloudnative-pg.io", "isWALArchiver": true, "parameters": {"barmanObjectName": "s3"}}]),
    );
    let disabled = cluster(
        "pg",
        NS,
        shape,
        json!([{"name": PLUGIN_NAME, "enabled": false}]),
    );
    let service = json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "pg-rw", "namespace": NS,
        "labels": {"cnpg.io/cluster": "pg", "cnpg.io/podRole": "instance"}}, "spec": {}});
    for op in [Op::Evaluate, Op::Create] {
        for (what, c, object) in [
            ("an initdb Job's pod", &with, job_pod(&with)),
            (
                "another Cluster's instance pod",
                &with,
                instance_pod(Cnpg::V1_28_2, &other, 1),
            ),
            (
                "a Cluster without the plugin",
                &without,
                instance_pod(Cnpg::V1_28_2, &without, 1),
            ),
            (
                "a Cluster with the plugin disabled",
                &disabled,
                instance_pod(Cnpg::V1_28_2, &disabled, 1),
            ),
            ("not a pod", &with, service.clone()),
        ] {
            assert_eq!(
                hook(&channel, op, c, &object).await,
                Vec::<Value>::new(),
                "{op:?}: {what}"
            );
        }
        // The same pod of the right Cluster does get it: the cases above
        // are refused for their reason, not by accident.
        assert_eq!(
            hook(&channel, op, &with, &instance_pod(Cnpg::V1_28_2, &with, 1))
                .await
                .len(),
            1
        );
    }
    // Verbs it did not ask for leave the object alone.
    for op in [Op::Patch, Op::Update, Op::Delete, Op::Unspecified] {
        assert!(
            hook(&channel, op, &with, &instance_pod(Cnpg::V1_28_2, &with, 1))
                .await
                .is_empty()
        );
    }
    // Unreadable input is an InvalidArgument answer, never a crash.
    let mut lifecycle = OperatorLifecycleClient::new(channel.clone());
    for (cluster_bytes, object_bytes) in [
        (b"{".to_vec(), b"{}".to_vec()),
        (b"{}".to_vec(), b"[1,2]".to_vec()),
        (Vec::new(), Vec::new()),
    ] {
        let status = lifecycle
            .lifecycle_hook(OperatorLifecycleRequest {
                operation_type: op(Op::Create),
                cluster_definition: cluster_bytes,
                object_definition: object_bytes,
            })
            .await
            .unwrap_err();
        assert_eq!(status.code(), tonic::Code::InvalidArgument, "{status:?}");
    }
    // And the server still answers.
    assert!(IdentityClient::new(channel)
        .probe(ProbeRequest {})
        .await
        .is_ok());
}

#[tokio::test]
async fn plugin_hook_is_idempotent_and_a_parameter_change_replaces_the_container() {
    let chart = chart("chart-peer.yaml");
    let server = serve(plugin_with(&chart.template, StatusMode::Attention), None).await;
    let channel = plaintext(&server).await;
    let c = cluster("pg", NS, &shapes()[1], enabled(json!({})));
    let pod = instance_pod(Cnpg::V1_30, &c, 2);
    let once = apply(&pod, &hook(&channel, Op::Evaluate, &c, &pod).await);
    let twice = apply(&once, &hook(&channel, Op::Evaluate, &c, &once).await);
    let thrice = apply(&twice, &hook(&channel, Op::Create, &c, &twice).await);
    assert_eq!(once, thrice);
    assert_eq!(
        init_names(&thrice),
        ["bootstrap-controller", "cnpg-autoresize"]
    );
    // Deterministic: the same input, the same bytes.
    assert_eq!(
        hook(&channel, Op::Evaluate, &c, &pod).await,
        hook(&channel, Op::Evaluate, &c, &pod).await
    );
    let changed = cluster(
        "pg",
        NS,
        &shapes()[1],
        enabled(json!({"cpu": "100m", "memory": "96Mi"})),
    );
    let ops = hook(&channel, Op::Create, &changed, &once).await;
    assert_eq!(ops.len(), 1, "{ops:?}");
    assert_eq!(ops[0]["op"], "replace");
    let updated = apply(&once, &ops);
    assert_eq!(
        init_names(&updated),
        ["bootstrap-controller", "cnpg-autoresize"]
    );
    assert_eq!(sidecar(&updated)["resources"]["limits"]["cpu"], "100m");
}

#[tokio::test]
async fn plugin_parameters_set_the_sidecar_and_the_pod_stays_guaranteed() {
    let chart = chart("chart-peer.yaml");
    let server = serve(plugin_with(&chart.template, StatusMode::Attention), None).await;
    let channel = plaintext(&server).await;
    let sandbox = kube_sandbox::Sandbox::start(kube_sandbox::SandboxConfig::default())
        .await
        .unwrap();
    let client = sandbox.client().await.unwrap();
    let params = json!({"image": "registry.example.com/ops/cnpg-autoresize:0.2.0", "probeInterval": "2s",
        "cpu": "120m", "memory": "96Mi", "httpPort": "9300", "postgresAuth": "password",
        "postgresSecret": "pg-monitoring", "postgresSecretKey": "pw"});
    for version in VERSIONS {
        let c = cluster(
            &format!("pg-{}", version.tag().replace('.', "-")),
            PLUGIN_NS,
            &shapes()[1],
            enabled(params.clone()),
        );
        let pod = instance_pod(version, &c, 1);
        let created = create(
            &client,
            &apply(&pod, &hook(&channel, Op::Evaluate, &c, &pod).await),
        )
        .await;
        assert_eq!(qos(&created), "Guaranteed", "{version:?}");
        let s = sidecar(&created);
        assert_eq!(s["image"], "registry.example.com/ops/cnpg-autoresize:0.2.0");
        assert_eq!(
            s["resources"]["requests"],
            json!({"cpu": "120m", "memory": "96Mi"})
        );
        assert_eq!(
            s["resources"]["limits"],
            json!({"cpu": "120m", "memory": "96Mi"})
        );
        assert_eq!(s["ports"][0]["containerPort"], 9300);
        let args = s["args"].as_array().unwrap();
        assert!(
            args.contains(&json!("--http-addr=0.0.0.0:9300"))
                && args.contains(&json!("--probe-interval=2s")),
            "{args:?}"
        );
        let env = s["env"].as_array().unwrap();
        let password = env.iter().find(|e| e["name"] == "PGPASSWORD").unwrap();
        assert_eq!(
            password["valueFrom"]["secretKeyRef"],
            json!({"name": "pg-monitoring", "key": "pw", "optional": true})
        );
        // Password mode does not mount the socket directory.
        assert!(!s["volumeMounts"]
            .as_array()
            .unwrap()
            .iter()
            .any(|m| m["mountPath"] == "/controller"));
    }
}

#[tokio::test]
async fn plugin_refuses_bad_and_unknown_parameters_naming_the_field_and_value() {
    let chart = chart("chart-peer.yaml");
    let server = serve(plugin_with(&chart.template, StatusMode::Attention), None).await;
    let channel = plaintext(&server).await;
    let mut operator = OperatorClient::new(channel.clone());
    let shape = &shapes()[0];
    let good = cluster("pg", NS, shape, enabled(json!({"cpu": "100m"})));
    let bad = cluster(
        "pg",
        NS,
        shape,
        json!([
        {"name": "barman-cloud.cloudnative-pg.io", "parameters": {"barmanObjectName": "s3"}},
        {"name": PLUGIN_NAME, "parameters": {"cpu": "a lot", "probeIntervall": "2s", "memory": "64Mi"}}]),
    );
    let errors = operator
        .validate_cluster_create(OperatorValidateClusterCreateRequest {
            definition: serde_json::to_vec(&bad).unwrap(),
        })
        .await
        .unwrap()
        .into_inner()
        .validation_errors;
    let found: Vec<(Vec<String>, String)> = errors
        .iter()
        .map(|e| (e.path_components.clone(), e.value.clone()))
        .collect();
    assert_eq!(
        found,
        vec![
            (
                vec![
                    "spec".into(),
                    "plugins".into(),
                    "1".into(),
                    "parameters".into(),
                    "cpu".into()
                ],
                "a lot".into()
            ),
            (
                vec![
                    "spec".into(),
                    "plugins".into(),
                    "1".into(),
                    "parameters".into(),
                    "probeIntervall".into()
                ],
                "2s".into()
            ),
        ]
    );
    assert!(
        errors[1].message.contains("unknown parameter"),
        "{:?}",
        errors[1]
    );
    assert!(operator
        .validate_cluster_create(OperatorValidateClusterCreateRequest {
            definition: serde_json::to_vec(&good).unwrap(),
        })
        .await
        .unwrap()
        .into_inner()
        .validation_errors
        .is_empty());
    // A change is judged on the new Cluster.
    let change = |old: &Value, new: &Value| OperatorValidateClusterChangeRequest {
        old_cluster: serde_json::to_vec(old).unwrap(),
        new_cluster: serde_json::to_vec(new).unwrap(),
    };
    assert_eq!(
        operator
            .validate_cluster_change(change(&good, &bad))
            .await
            .unwrap()
            .into_inner()
            .validation_errors
            .len(),
        2
    );
    assert!(operator
        .validate_cluster_change(change(&bad, &good))
        .await
        .unwrap()
        .into_inner()
        .validation_errors
        .is_empty());
    // MutateCluster changes nothing.
    assert!(operator
        .mutate_cluster(OperatorMutateClusterRequest {
            definition: serde_json::to_vec(&good).unwrap(),
        })
        .await
        .unwrap()
        .into_inner()
        .json_patch
        .is_empty());
    // The hook itself refuses to inject with them, and the Cluster's status
    // says why (the operator does not call the validation in released
    // versions).
    let pod = instance_pod(Cnpg::V1_28_2, &bad, 1);
    for op in [Op::Evaluate, Op::Create] {
        assert!(hook(&channel, op, &bad, &pod).await.is_empty());
    }
    let status = operator
        .set_status_in_cluster(SetStatusInClusterRequest {
            cluster: serde_json::to_vec(&bad).unwrap(),
        })
        .await
        .unwrap()
        .into_inner()
        .json_status;
    let status: Value = serde_json::from_slice(&status).expect("a JSON object");
    assert_eq!(
        status["parameterErrors"][0]
            .as_str()
            .unwrap()
            .split(": ")
            .next(),
        Some(r#"spec.plugins[1].parameters.cpu="a lot""#)
    );
    assert!(status["parameterErrors"][1]
        .as_str()
        .unwrap()
        .starts_with(r#"spec.plugins[1].parameters.probeIntervall="2s": unknown parameter"#));
    // A healthy Cluster with valid parameters: nothing (no 5 s requeue).
    assert!(operator
        .set_status_in_cluster(SetStatusInClusterRequest {
            cluster: serde_json::to_vec(&good).unwrap(),
        })
        .await
        .unwrap()
        .into_inner()
        .json_status
        .is_empty());
}

#[tokio::test]
async fn plugin_status_in_always_mode_is_a_json_object_with_the_last_resize() {
    let chart = chart("chart-peer.yaml");
    let server = serve(plugin_with(&chart.template, StatusMode::Always), None).await;
    let mut operator = OperatorClient::new(plaintext(&server).await);
    let mut c = cluster("pg", NS, &shapes()[1], enabled(json!({})));
    c["status"]["autoResizeEvents"] = json!([{"timestamp": "2026-03-01T10:00:00Z", "instanceName": "pg-1",
        "pvcName": "pg-1-wal", "volumeType": "wal", "previousSize": "2Gi", "newSize": "3Gi", "result": "success"}]);
    let status = operator
        .set_status_in_cluster(SetStatusInClusterRequest {
            cluster: serde_json::to_vec(&c).unwrap(),
        })
        .await
        .unwrap()
        .into_inner()
        .json_status;
    let status: Value = serde_json::from_slice(&status).unwrap();
    assert_eq!(status["source"], "Cluster");
    assert_eq!(status["lastResize"]["pvc"], "pg-1-wal");
    assert_eq!(status["lastResize"]["to"], "3Gi");
}

// ------------------------------------------------------------ mutual TLS

struct Pki {
    dir: tempfile::TempDir,
}

struct Pair {
    cert: String,
    key: String,
}

/// A self-signed leaf (CA:FALSE), as cert-manager's selfSigned Issuer makes
/// with isCA: false: each side pins the other's.
fn leaf(names: &[&str], usage: rcgen::ExtendedKeyUsagePurpose) -> Pair {
    let key = rcgen::KeyPair::generate().unwrap();
    let mut params =
        rcgen::CertificateParams::new(names.iter().map(|n| n.to_string()).collect::<Vec<_>>())
            .unwrap();
    params.is_ca = rcgen::IsCa::ExplicitNoCa;
    params.extended_key_usages = vec![usage];
    let cert = params.self_signed(&key).unwrap();
    Pair {
        cert: cert.pem(),
        key: key.serialize_pem(),
    }
}

impl Pki {
    fn new() -> Pki {
        Pki {
            dir: tempfile::tempdir().unwrap(),
        }
    }

    fn write(&self, name: &str, text: &str) -> PathBuf {
        let path = self.dir.path().join(name);
        // Replace atomically, as the kubelet swaps a Secret volume.
        let tmp = self.dir.path().join(format!(".{name}.tmp"));
        std::fs::write(&tmp, text).unwrap();
        std::fs::rename(&tmp, &path).unwrap();
        path
    }

    fn files(&self, server: &Pair, client_ca: &str) -> TlsFiles {
        TlsFiles {
            cert: self.write("tls.crt", &server.cert),
            key: self.write("tls.key", &server.key),
            client_ca: self.write("client-ca.crt", client_ca),
        }
    }
}

/// A client as CloudNativePG's: trusts exactly the server's certificate,
/// checks the Service name in it, presents `identity`.
async fn tls_client(
    server: &Server,
    server_cert: &str,
    identity: Option<&Pair>,
) -> Result<Channel, tonic::transport::Error> {
    let mut tls = ClientTlsConfig::new()
        .ca_certificate(Certificate::from_pem(server_cert))
        .domain_name(SERVICE);
    if let Some(pair) = identity {
        tls = tls.identity(Identity::from_pem(&pair.cert, &pair.key));
    }
    Endpoint::from_shared(format!("https://{}", server.address))
        .unwrap()
        .tls_config(tls)?
        .connect()
        .await
}

async fn metadata_over(
    channel: Result<Channel, tonic::transport::Error>,
) -> Result<String, String> {
    let channel = channel.map_err(|e| format!("connect: {e:?}"))?;
    IdentityClient::new(channel)
        .get_plugin_metadata(GetPluginMetadataRequest {})
        .await
        .map(|r| r.into_inner().name)
        .map_err(|e| format!("call: {e:?}"))
}

#[tokio::test]
async fn plugin_mutual_tls_refuses_a_client_without_a_trusted_certificate() {
    let pki = Pki::new();
    let server_pair = leaf(
        &[SERVICE, &format!("{SERVICE}.cnpg-system.svc")],
        rcgen::ExtendedKeyUsagePurpose::ServerAuth,
    );
    let operator = leaf(
        &["cnpg-autoresize-cnpgi-client"],
        rcgen::ExtendedKeyUsagePurpose::ClientAuth,
    );
    let stranger = leaf(
        &["cnpg-autoresize-cnpgi-client"],
        rcgen::ExtendedKeyUsagePurpose::ClientAuth,
    );
    let reloader = Arc::new(Reloader::new(pki.files(&server_pair, &operator.cert)).unwrap());
    let chart = chart("chart-peer.yaml");
    let server = serve(
        plugin_with(&chart.template, StatusMode::Attention),
        Some(reloader),
    )
    .await;

    assert_eq!(
        metadata_over(tls_client(&server, &server_pair.cert, Some(&operator)).await).await,
        Ok("autoresize.cnpg.io".to_string())
    );
    for (what, identity) in [
        ("no client certificate", None),
        ("a certificate the client CA did not sign", Some(&stranger)),
    ] {
        let result = metadata_over(tls_client(&server, &server_pair.cert, identity).await).await;
        assert!(result.is_err(), "{what}: {result:?}");
    }
    // A self-signed client certificate that says CA:TRUE (what `openssl req
    // -x509` makes), pinned as --client-ca, passes as Go's verifier passes
    // it; another one does not.
    let ca_true = |cn: &str| {
        let key = rcgen::KeyPair::generate().unwrap();
        let mut params = rcgen::CertificateParams::new(vec![cn.to_string()]).unwrap();
        params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        Pair {
            cert: params.self_signed(&key).unwrap().pem(),
            key: key.serialize_pem(),
        }
    };
    let openssl_like = ca_true("operator");
    let other = ca_true("operator");
    let pki2 = Pki::new();
    let reloader2 = Arc::new(Reloader::new(pki2.files(&server_pair, &openssl_like.cert)).unwrap());
    let server2 = serve(
        plugin_with(&chart.template, StatusMode::Attention),
        Some(reloader2),
    )
    .await;
    assert!(
        metadata_over(tls_client(&server2, &server_pair.cert, Some(&openssl_like)).await)
            .await
            .is_ok()
    );
    assert!(
        metadata_over(tls_client(&server2, &server_pair.cert, Some(&other)).await)
            .await
            .is_err()
    );
    // Plaintext on the TLS port gets nothing either.
    let plain = Endpoint::from_shared(format!("http://{}", server.address))
        .unwrap()
        .connect()
        .await;
    assert!(metadata_over(plain).await.is_err());
    // A client that checks another name than the Service's refuses us (the
    // operator checks the Service name in our certificate).
    let wrong_name = ClientTlsConfig::new()
        .ca_certificate(Certificate::from_pem(&server_pair.cert))
        .identity(Identity::from_pem(&operator.cert, &operator.key))
        .domain_name("another-service");
    let channel = Endpoint::from_shared(format!("https://{}", server.address))
        .unwrap()
        .tls_config(wrong_name)
        .unwrap()
        .connect()
        .await;
    assert!(metadata_over(channel).await.is_err());
}

#[tokio::test]
async fn plugin_mutual_tls_accepts_clients_signed_by_a_ca_and_reloads_rotated_files() {
    let pki = Pki::new();
    // A CA-issued client certificate, with --client-ca the CA.
    let ca_key = rcgen::KeyPair::generate().unwrap();
    let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    ca_params.key_usages = vec![rcgen::KeyUsagePurpose::KeyCertSign];
    let ca_cert = ca_params.self_signed(&ca_key).unwrap();
    let issuer = rcgen::Issuer::new(ca_params, ca_key);
    let client_key = rcgen::KeyPair::generate().unwrap();
    let mut client_params = rcgen::CertificateParams::new(vec!["operator".to_string()]).unwrap();
    client_params.extended_key_usages = vec![rcgen::ExtendedKeyUsagePurpose::ClientAuth];
    let client = Pair {
        cert: client_params.signed_by(&client_key, &issuer).unwrap().pem(),
        key: client_key.serialize_pem(),
    };
    let first = leaf(&[SERVICE], rcgen::ExtendedKeyUsagePurpose::ServerAuth);
    let files = pki.files(&first, &ca_cert.pem());
    let reloader = Arc::new(Reloader::new(files).unwrap());
    let chart = chart("chart-peer.yaml");
    let server = serve(
        plugin_with(&chart.template, StatusMode::Attention),
        Some(reloader),
    )
    .await;
    assert!(
        metadata_over(tls_client(&server, &first.cert, Some(&client)).await)
            .await
            .is_ok()
    );

    // cert-manager rotates both Secrets; the operator then trusts only the
    // new server certificate and presents only the new client one.
    let second = leaf(&[SERVICE], rcgen::ExtendedKeyUsagePurpose::ServerAuth);
    let new_operator = leaf(&["operator"], rcgen::ExtendedKeyUsagePurpose::ClientAuth);
    pki.files(&second, &new_operator.cert);
    assert_eq!(
        metadata_over(tls_client(&server, &second.cert, Some(&new_operator)).await).await,
        Ok("autoresize.cnpg.io".to_string())
    );
    assert!(
        metadata_over(tls_client(&server, &first.cert, Some(&client)).await)
            .await
            .is_err()
    );
    // A half-written rotation keeps the last good files working.
    pki.write(
        "tls.key",
        "-----BEGIN PRIVATE KEY-----\ngarbage\n-----END PRIVATE KEY-----\n",
    );
    assert!(
        metadata_over(tls_client(&server, &second.cert, Some(&new_operator)).await)
            .await
            .is_ok()
    );
}

#[test]
fn plugin_refuses_to_start_with_unusable_tls_files() {
    let pki = Pki::new();
    let server_pair = leaf(&[SERVICE], rcgen::ExtendedKeyUsagePurpose::ServerAuth);
    let mut files = pki.files(&server_pair, "not a certificate");
    let err = Reloader::new(files.clone()).err().expect("refused");
    assert!(err.starts_with("--client-ca "), "{err}");
    files.key = pki.dir.path().join("missing.key");
    assert!(Reloader::new(files).is_err());
}

// ------------------------------------------------------------ the binary

#[test]
fn plugin_inject_prints_the_pod_the_hook_makes() {
    let dir = tempfile::tempdir().unwrap();
    let c = cluster("pg", NS, &shapes()[1], enabled(json!({})));
    let pod = instance_pod(Cnpg::V1_27_0, &c, 1);
    let write = |name: &str, v: &Value| {
        let path = dir.path().join(name);
        std::fs::write(&path, serde_json::to_string(v).unwrap()).unwrap();
        path
    };
    let (cluster_file, pod_file) = (write("cluster.json", &c), write("pod.json", &pod));
    let template = dir.path().join("sidecar.yaml");
    std::fs::write(&template, chart("chart-peer.yaml").template).unwrap();
    let run = |extra: &[&str]| {
        std::process::Command::new(env!("CARGO_BIN_EXE_cnpg-autoresize"))
            .args([
                "plugin",
                "inject",
                "--template",
                template.to_str().unwrap(),
                "--cluster",
                cluster_file.to_str().unwrap(),
                "--pod",
                pod_file.to_str().unwrap(),
            ])
            .args(extra)
            .output()
            .unwrap()
    };
    let out = run(&[]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let printed: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        init_names(&printed),
        ["bootstrap-controller", "cnpg-autoresize"]
    );
    let out = run(&["--param", "cpu=200m"]);
    let printed: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(sidecar(&printed)["resources"]["limits"]["cpu"], "200m");
    let out = run(&["--param", "cpu=lots"]);
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains(r#"spec.plugins[0].parameters.cpu="lots""#),
        "{stderr}"
    );
}

#[test]
fn plugin_built_in_template_is_the_charts_default_rendering() {
    let built_in = SidecarTemplate::builtin().unwrap();
    let chart = SidecarTemplate::parse(&chart("chart-peer.yaml").template).unwrap();
    assert_eq!(format!("{built_in:?}"), format!("{chart:?}"));
}

#[tokio::test]
async fn plugin_status_reads_the_governing_policy_and_the_leaders_lease() {
    let sandbox = kube_sandbox::Sandbox::start(kube_sandbox::SandboxConfig {
        crds: vec![cnpg_autoresize::api::crd::policy_crd_yaml().unwrap()],
        ..Default::default()
    })
    .await
    .unwrap();
    let client = sandbox.client().await.unwrap();
    let policies: Api<cnpg_autoresize::api::policy::AutoResizePolicy> =
        Api::namespaced(client.clone(), NS);
    let policy: cnpg_autoresize::api::policy::AutoResizePolicy = serde_json::from_value(json!({
        "apiVersion": "autoresize.cnpg.io/v1alpha1", "kind": "AutoResizePolicy",
        "metadata": {"name": "pg-main-policy", "namespace": NS},
        "spec": {"cluster": "pg-main"}}))
    .unwrap();
    policies
        .create(&PostParams::default(), &policy)
        .await
        .unwrap();
    let status = json!({"status": {
        "autoResizeEvents": [{"timestamp": "2026-03-01T10:00:00Z", "instanceName": "pg-main-1", "pvcName": "pg-main-1",
            "volumeType": "data", "previousSize": "10Gi", "newSize": "12Gi", "result": "success"}],
        "conditions": [
            {"type": "Ready", "status": "True", "reason": "Planning", "message": "the leader plans 3 volumes with this policy", "lastTransitionTime": "2026-03-01T10:00:00Z"},
            {"type": "Blocked", "status": "True", "reason": "VolumesBlocked", "message": "pg-main-2 (rate_limit)", "lastTransitionTime": "2026-03-01T10:00:00Z"}]}});
    policies
        .patch_status(
            "pg-main-policy",
            &kube::api::PatchParams::default(),
            &kube::api::Patch::Merge(&status),
        )
        .await
        .unwrap();
    let leases: Api<k8s_openapi::api::coordination::v1::Lease> =
        Api::namespaced(client.clone(), NS);
    let lease: k8s_openapi::api::coordination::v1::Lease = serde_json::from_value(json!({
        "metadata": {"name": "cnpg-autoresize-pg-main", "namespace": NS},
        "spec": {"holderIdentity": "pg-main-2", "leaseDurationSeconds": 15}}))
    .unwrap();
    leases.create(&PostParams::default(), &lease).await.unwrap();

    let view = cnpg_autoresize::plugin::kube::KubeView::start(client);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    while view.policy_for(NS, "pg-main").is_none() {
        assert!(
            std::time::Instant::now() < deadline,
            "the policy watch never listed it: {:?}",
            view.unavailable()
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    let chart = chart("chart-peer.yaml");
    let plugin = Arc::new(Plugin {
        template: SidecarTemplate::parse(&chart.template).unwrap(),
        paths: MountPaths::default(),
        status_mode: StatusMode::Attention,
        kube: Some(view),
    });
    let server = serve(plugin, None).await;
    let mut operator = OperatorClient::new(plaintext(&server).await);
    let c = cluster("pg-main", NS, &shapes()[0], enabled(json!({})));
    let answer = operator
        .set_status_in_cluster(SetStatusInClusterRequest {
            cluster: serde_json::to_vec(&c).unwrap(),
        })
        .await
        .unwrap()
        .into_inner()
        .json_status;
    let summary: Value =
        serde_json::from_slice(&answer).expect("a blocked volume is worth a summary");
    assert_eq!(summary["source"], "AutoResizePolicy/pg-main-policy");
    assert_eq!(summary["leader"], "pg-main-2");
    assert_eq!(summary["blocked"], "pg-main-2 (rate_limit)");
    assert_eq!(summary["lastResize"]["to"], "12Gi");
    assert!(summary.get("unavailable").is_none(), "{summary}");
    // Another Cluster of the namespace has no policy: its own status counts.
    let other = cluster("pg-other", NS, &shapes()[0], enabled(json!({})));
    let answer = operator
        .set_status_in_cluster(SetStatusInClusterRequest {
            cluster: serde_json::to_vec(&other).unwrap(),
        })
        .await
        .unwrap()
        .into_inner()
        .json_status;
    assert!(answer.is_empty(), "{}", String::from_utf8_lossy(&answer));
}
