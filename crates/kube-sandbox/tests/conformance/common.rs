//! Shared helpers: a sandbox per test, object builders, error extraction, bounded waits.

use std::future::Future;
use std::time::Duration;

use k8s_openapi::api::core::v1::PersistentVolumeClaim;
use k8s_openapi::api::storage::v1::StorageClass;
use kube::api::{ApiResource, DynamicObject, GroupVersionKind, Patch, PatchParams, PostParams};
use kube::core::Status;
use kube::{Api, Client};
use kube_sandbox::{Sandbox, SandboxConfig};
use serde_json::{json, Value};

pub const NS: &str = "ns";

pub async fn sandbox() -> Sandbox {
    sandbox_with(SandboxConfig {
        bookmark_interval: Duration::from_millis(200),
        ..SandboxConfig::default()
    })
    .await
}

pub async fn sandbox_with(config: SandboxConfig) -> Sandbox {
    Sandbox::start(config).await.expect("sandbox starts")
}

pub async fn admin(sb: &Sandbox) -> Client {
    sb.client().await.expect("admin client")
}

/// An admin client that does not retry 429/503/504, so injected errors are observed directly.
pub async fn admin_no_retry(sb: &Sandbox) -> Client {
    let mut config = sb.config_as("admin").await.expect("config");
    config.default_retry = false;
    Client::try_from(config).expect("client")
}

pub fn pvcs(client: &Client) -> Api<PersistentVolumeClaim> {
    Api::namespaced(client.clone(), NS)
}

pub fn cluster_resource() -> ApiResource {
    ApiResource::from_gvk_with_plural(
        &GroupVersionKind::gvk("postgresql.cnpg.io", "v1", "Cluster"),
        "clusters",
    )
}

pub fn clusters(client: &Client) -> Api<DynamicObject> {
    Api::namespaced_with(client.clone(), NS, &cluster_resource())
}

pub fn from_json<T: serde::de::DeserializeOwned>(v: Value) -> T {
    serde_json::from_value(v).expect("valid object JSON")
}

pub fn pvc(name: &str, size: &str, class: &str) -> PersistentVolumeClaim {
    from_json(json!({
        "apiVersion": "v1",
        "kind": "PersistentVolumeClaim",
        "metadata": {"name": name, "labels": {"app": "pg"}},
        "spec": {
            "accessModes": ["ReadWriteOnce"],
            "storageClassName": class,
            "resources": {"requests": {"storage": size}}
        }
    }))
}

pub async fn storage_class(client: &Client, name: &str, expandable: Option<bool>) {
    let mut sc = json!({
        "apiVersion": "storage.k8s.io/v1",
        "kind": "StorageClass",
        "metadata": {"name": name},
        "provisioner": "sandbox.local/csi"
    });
    if let Some(e) = expandable {
        sc["allowVolumeExpansion"] = json!(e);
    }
    Api::<StorageClass>::all(client.clone())
        .create(&PostParams::default(), &from_json(sc))
        .await
        .expect("create storage class");
}

/// Creates a PVC and marks it Bound with `status.capacity` = `size` (as the PV controller would).
pub async fn bound_pvc(
    client: &Client,
    name: &str,
    size: &str,
    class: &str,
) -> PersistentVolumeClaim {
    let api = pvcs(client);
    api.create(&PostParams::default(), &pvc(name, size, class))
        .await
        .expect("create pvc");
    let status = json!({"status": {"phase": "Bound", "capacity": {"storage": size}}});
    api.patch_status(name, &PatchParams::default(), &Patch::Merge(&status))
        .await
        .expect("bind pvc")
}

pub fn cluster_obj(name: &str) -> DynamicObject {
    from_json(json!({
        "apiVersion": "postgresql.cnpg.io/v1",
        "kind": "Cluster",
        "metadata": {"name": name},
        "spec": {"instances": 3, "storage": {"size": "1Gi"}, "x-unknown": {"kept": true}}
    }))
}

/// The `Status` of a failed call; panics on success or a non-API error.
pub fn api_error<T: std::fmt::Debug>(r: Result<T, kube::Error>) -> Box<Status> {
    match r {
        Err(kube::Error::Api(s)) => s,
        other => panic!("expected an API error, got {other:?}"),
    }
}

pub fn assert_status(s: &Status, code: u16, reason: &str) {
    assert_eq!(
        (s.code, s.reason.as_str()),
        (code, reason),
        "unexpected status: {s:?}"
    );
}

/// Polls `cond` every 20ms until it holds; panics after `timeout`.
pub async fn wait_until<F, Fut>(timeout: Duration, what: &str, mut cond: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        if cond().await {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

pub fn rv_of<K: kube::Resource>(k: &K) -> u64 {
    k.meta()
        .resource_version
        .as_deref()
        .expect("resourceVersion set")
        .parse()
        .expect("numeric resourceVersion")
}

/// A raw request through the kube client (for content types and paths kube's API does not offer).
pub async fn raw(
    client: &Client,
    method: &str,
    path: &str,
    content_type: &str,
    body: &str,
) -> Result<String, kube::Error> {
    let req = axum::http::Request::builder()
        .method(method)
        .uri(path)
        .header("Content-Type", content_type)
        .body(body.as_bytes().to_vec())
        .expect("valid request");
    client.request_text(req).await
}

/// The fork's real Cluster CRD, read in place, or the project's generated one when the
/// fork's is not there (same structural rules; `kube_sandbox::cluster_crd` says which).
pub fn fork_crd() -> String {
    kube_sandbox::cluster_crd()
        .unwrap_or_else(|e| panic!("no Cluster CRD for the conformance tests: {e:#}"))
        .text
}

/// A sandbox serving the fork's Cluster CRD.
pub async fn fork_sandbox() -> Sandbox {
    sandbox_with(SandboxConfig {
        bookmark_interval: Duration::from_millis(200),
        crds: vec![fork_crd()],
        ..SandboxConfig::default()
    })
    .await
}

/// A plain HTTP/1.1 exchange over TCP, to see the exact status line and headers.
pub struct RawResponse {
    pub code: u16,
    pub headers: Vec<(String, String)>,
    pub body: String,
}

impl RawResponse {
    /// Values of every header named `name` (case-insensitive), in order.
    pub fn header_values(&self, name: &str) -> Vec<&str> {
        self.headers
            .iter()
            .filter(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
            .collect()
    }

    pub fn json(&self) -> Value {
        serde_json::from_str(&self.body).expect("JSON body")
    }
}

pub async fn raw_http(
    sb: &Sandbox,
    method: &str,
    path: &str,
    extra_headers: &[(&str, &str)],
    body: &str,
) -> RawResponse {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = tokio::net::TcpStream::connect(sb.addr())
        .await
        .expect("connect to the sandbox");
    let mut req = format!(
        "{method} {path} HTTP/1.1\r\nHost: {}\r\nContent-Length: {}\r\nConnection: close\r\n",
        sb.addr(),
        body.len()
    );
    for (k, v) in extra_headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str("\r\n");
    req.push_str(body);
    stream
        .write_all(req.as_bytes())
        .await
        .expect("send request");
    let mut buf = Vec::new();
    tokio::time::timeout(Duration::from_secs(20), stream.read_to_end(&mut buf))
        .await
        .expect("answer in time")
        .expect("read answer");
    let text = String::from_utf8(buf).expect("UTF-8 answer");
    let (head, body) = text.split_once("\r\n\r\n").expect("header/body separator");
    let mut lines = head.split("\r\n");
    let status_line = lines.next().expect("status line");
    let code = status_line
        .split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .expect("status code");
    let headers = lines
        .filter_map(|l| l.split_once(": "))
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    RawResponse {
        code,
        headers,
        body: body.to_string(),
    }
}

/// A fork Cluster manifest (`spec.instances` and `spec.storage.size` set).
pub fn fork_cluster(name: &str) -> Value {
    json!({
        "apiVersion": "postgresql.cnpg.io/v1",
        "kind": "Cluster",
        "metadata": {"name": name},
        "spec": {"instances": 3, "storage": {"size": "1Gi"}}
    })
}
