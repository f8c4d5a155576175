//! The end-to-end harness: a scenario (sandbox with the fork's real Cluster
//! CRD and the project's AutoResizePolicy CRD, ext4-shaped volumes,
//! PostgreSQL with the CloudNativePG stand-in) and one real
//! `cnpg-autoresize run` per instance, run as its pod's sidecar by the
//! kubelet stand-in (the chart's probes; restarted when it exits), with the
//! chart's Role enforced for the managers' identity.

use cnpg_testbed::scenario::{ManagerOptions, ManagerPod, Relaunch, Scenario, ScenarioBuilder};
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::events::v1::Event;
use kube::api::Api;
use serde_json::Value;
use std::future::Future;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

pub const MIB: u64 = 1 << 20;
pub const GIB: u64 = 1 << 30;

/// Cluster "pg" without PostgreSQL whose data volume, of `data_bytes` with
/// `resize`, is the one under test; its WAL volume is small and not resized.
pub fn data_volume_cluster(data_bytes: u64, resize: Value) -> ScenarioBuilder {
    Scenario::builder("pg")
        .postgres(false)
        .data(data_bytes, resize)
        .wal(16 * MIB, serde_json::json!({"enabled": false}))
}

/// The Role the Helm chart renders for the manager (kept in sync by hack/check-chart.sh).
pub const MANAGER_ROLE: &str = include_str!("../packaging/manager-role.yaml");

/// The project's AutoResizePolicy CRD, as the chart installs it.
pub const POLICY_CRD: &str =
    include_str!("../../charts/cnpg-autoresize/crds/autoresize.cnpg.io_autoresizepolicies.yaml");

pub fn binary() -> &'static Path {
    Path::new(env!("CARGO_BIN_EXE_cnpg-autoresize"))
}

/// The fork's real Cluster CRD (read in place, never copied), or the project's generated
/// one where the fork's is not available (`kube_sandbox::cluster_crd` says which).
pub fn fork_cluster_crd() -> String {
    kube_sandbox::cluster_crd()
        .expect("a Cluster CRD for the e2e tests")
        .text
}

/// Upstream CloudNativePG's Cluster CRD, derived from the fork's: no
/// `resize` blocks, no `autoResizeEvents`, no `diskStatus`.
pub fn upstream_cluster_crd() -> String {
    let mut crd: Value =
        serde_norway::from_str(&fork_cluster_crd()).expect("the fork's CRD parses");
    for version in crd["spec"]["versions"].as_array_mut().expect("versions") {
        let root = &mut version["schema"]["openAPIV3Schema"]["properties"];
        let spec = &mut root["spec"]["properties"];
        for storage in ["storage", "walStorage"] {
            spec[storage]["properties"]
                .as_object_mut()
                .expect("storage")
                .remove("resize");
        }
        spec["tablespaces"]["items"]["properties"]["storage"]["properties"]
            .as_object_mut()
            .expect("tablespace storage")
            .remove("resize");
        let status = root["status"]["properties"]
            .as_object_mut()
            .expect("status");
        status.remove("autoResizeEvents");
        status.remove("diskStatus");
    }
    serde_json::to_string(&crd).expect("serializes")
}

pub struct Env {
    pub scenario: Scenario,
    pub port: u16,
    pub options: ManagerOptions,
    /// How each stopped manager pod was launched, to start it again.
    stopped: Vec<Option<Relaunch>>,
}

impl Env {
    pub async fn start(builder: ScenarioBuilder) -> Env {
        Self::start_with(builder, ManagerOptions::default()).await
    }

    pub async fn start_with(builder: ScenarioBuilder, options: ManagerOptions) -> Env {
        Self::start_with_crd(builder, options, fork_cluster_crd()).await
    }

    /// With another Cluster CRD (e.g. upstream CloudNativePG's, without `resize`).
    pub async fn start_with_crd(
        builder: ScenarioBuilder,
        options: ManagerOptions,
        cluster_crd: String,
    ) -> Env {
        Self::start_custom(builder, options, cluster_crd, MANAGER_ROLE).await
    }

    /// With another Cluster CRD and another Role for the managers.
    pub async fn start_custom(
        builder: ScenarioBuilder,
        options: ManagerOptions,
        cluster_crd: String,
        role: &str,
    ) -> Env {
        let scenario = builder
            .cluster_crd(cluster_crd)
            .enforce_role(role)
            .start()
            .await
            .expect("scenario starts");
        let port = scenario.common_port().expect("a common port");
        Self::adopt(scenario, port, options)
    }

    /// Around a scenario started by the caller (who may have prepared
    /// files in its directory): one manager pod per instance on `port`.
    pub fn adopt(scenario: Scenario, port: u16, options: ManagerOptions) -> Env {
        scenario
            .sandbox
            .register_crd(POLICY_CRD)
            .expect("the policy CRD registers");
        let n = scenario.instances.len();
        let env = Env {
            scenario,
            port,
            options,
            stopped: vec![None; n],
        };
        for n in 0..n {
            env.scenario
                .start_manager_pod(binary(), n, env.port, &env.options)
                .expect("manager pod starts");
        }
        env
    }

    pub fn pod(&self, n: usize) -> &str {
        &self.scenario.instances[n].pod
    }

    /// The index of instance `pod`.
    pub fn index_of(&self, pod: &str) -> usize {
        self.scenario
            .instances
            .iter()
            .position(|i| i.pod == pod)
            .expect("a scenario pod")
    }

    /// Instance `n`'s manager pod (it must run).
    pub fn manager(&self, n: usize) -> Arc<ManagerPod> {
        self.scenario
            .manager_pod(self.pod(n))
            .expect("manager pod running")
    }

    /// Deletes instance `n`'s manager pod: SIGTERM, the chart's grace
    /// period, no restart.
    pub async fn delete_pod(&mut self, n: usize) {
        let pod = self.pod(n).to_string();
        self.stopped[n] = self
            .scenario
            .stop_manager_pod(&pod)
            .await
            .expect("pod stops");
    }

    /// Kills instance `n`'s manager pod as a dying node does: SIGKILL, no
    /// grace, no restart.
    pub async fn kill_pod(&mut self, n: usize) {
        let pod = self.pod(n).to_string();
        self.stopped[n] = self
            .scenario
            .kill_manager_pod(&pod)
            .await
            .expect("pod dies");
    }

    /// Starts a stopped manager pod again.
    pub fn start_pod(&mut self, n: usize) {
        let relaunch = self.stopped[n].take().expect("a stopped pod");
        self.scenario
            .relaunch_manager_pod(n, &relaunch)
            .expect("pod starts again");
    }

    /// SIGKILLs instance `n`'s manager process; the kubelet restarts it.
    /// Waits until it runs again.
    pub async fn crash(&self, n: usize) {
        let m = self.manager(n);
        let before = m.restart_count();
        m.kill().expect("SIGKILL");
        m.wait_for_restarts(before + 1, secs(30))
            .await
            .expect("the kubelet restarts it");
        m.wait_running(secs(30)).await.expect("running again");
    }

    pub async fn metrics(&self, n: usize) -> String {
        get_text(&self.manager(n).url("/metrics"))
            .await
            .unwrap_or_default()
    }

    pub async fn requested(&self, pvc: &str) -> u64 {
        self.scenario
            .requested_bytes(pvc)
            .await
            .expect("PVC readable")
    }

    /// Waits until the PVC requests `bytes`.
    pub async fn wait_request(&self, pvc: &str, bytes: u64, timeout: Duration) {
        wait_until(
            &format!("PVC {pvc} requests {bytes} bytes"),
            timeout,
            || async {
                let now = self.requested(pvc).await;
                (now == bytes)
                    .then_some(())
                    .ok_or(format!("requests {now}"))
            },
        )
        .await;
    }

    /// The PVC keeps requesting `bytes` for `period`.
    pub async fn hold_request(&self, pvc: &str, bytes: u64, period: Duration) {
        let end = Instant::now() + period;
        while Instant::now() < end {
            assert_eq!(
                self.requested(pvc).await,
                bytes,
                "PVC {pvc} changed\n{}",
                self.logs()
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// The AutoResizePolicies of the namespace.
    pub fn policies(&self) -> Api<kube::api::DynamicObject> {
        let gvk =
            kube::api::GroupVersionKind::gvk("autoresize.cnpg.io", "v1alpha1", "AutoResizePolicy");
        Api::namespaced_with(
            self.scenario.client.clone(),
            &self.scenario.namespace,
            &kube::api::ApiResource::from_gvk_with_plural(&gvk, "autoresizepolicies"),
        )
    }

    /// Creates AutoResizePolicy `name` with `spec`.
    pub async fn create_policy(&self, name: &str, spec: Value) {
        let object: kube::api::DynamicObject = serde_json::from_value(serde_json::json!({
            "apiVersion": "autoresize.cnpg.io/v1alpha1", "kind": "AutoResizePolicy",
            "metadata": {"name": name, "namespace": self.scenario.namespace},
            "spec": spec,
        }))
        .expect("a policy object");
        self.policies()
            .create(&Default::default(), &object)
            .await
            .expect("the policy is accepted");
    }

    /// Policy `name`'s status (Null when none).
    pub async fn policy_status(&self, name: &str) -> Value {
        let object = self.policies().get(name).await.expect("the policy");
        object.data.get("status").cloned().unwrap_or(Value::Null)
    }

    pub async fn status(&self) -> Value {
        self.scenario
            .cluster_status()
            .await
            .expect("cluster readable")
    }

    pub async fn resize_events(&self) -> Vec<Value> {
        self.status().await["autoResizeEvents"]
            .as_array()
            .cloned()
            .unwrap_or_default()
    }

    /// Kubernetes Events recorded on the Cluster: (reason, type, note).
    pub async fn kube_events(&self) -> Vec<(String, String, String)> {
        let api: Api<Event> =
            Api::namespaced(self.scenario.client.clone(), &self.scenario.namespace);
        api.list(&Default::default())
            .await
            .map(|l| {
                l.items
                    .into_iter()
                    .map(|e| {
                        (
                            e.reason.unwrap_or_default(),
                            e.type_.unwrap_or_default(),
                            e.note.unwrap_or_default(),
                        )
                    })
                    .collect()
            })
            .unwrap_or_default()
    }

    pub async fn wait_kube_event(
        &self,
        reason: &str,
        timeout: Duration,
    ) -> (String, String, String) {
        wait_until(&format!("event {reason}"), timeout, || async {
            let events = self.kube_events().await;
            events
                .iter()
                .find(|e| e.0 == reason)
                .cloned()
                .ok_or(format!("{events:?}"))
        })
        .await
    }

    /// The pod holding the lease.
    pub async fn leader(&self) -> Option<String> {
        let api: Api<Lease> =
            Api::namespaced(self.scenario.client.clone(), &self.scenario.namespace);
        let lease = api
            .get_opt(&format!("cnpg-autoresize-{}", self.scenario.cluster))
            .await
            .ok()??;
        lease.spec?.holder_identity.filter(|h| !h.is_empty())
    }

    pub async fn wait_leader(&self, timeout: Duration) -> String {
        wait_until("a leader", timeout, || async {
            self.leader().await.ok_or("none".to_string())
        })
        .await
    }

    /// Waits for `metric{labels}` on instance `n` to equal `value`.
    pub async fn wait_metric(
        &self,
        n: usize,
        name: &str,
        labels: &[(&str, &str)],
        value: f64,
        timeout: Duration,
    ) {
        wait_until(
            &format!("{name}{labels:?} = {value} on {}", self.pod(n)),
            timeout,
            || async {
                let text = self.metrics(n).await;
                let got = metric(&text, name, labels);
                (got == Some(value)).then_some(()).ok_or(format!("{got:?}"))
            },
        )
        .await;
    }

    /// Waits until a pod other than `old` holds the lease.
    pub async fn wait_new_leader(&self, old: &str, timeout: Duration) -> String {
        wait_until("a new leader", timeout, || async {
            match self.leader().await {
                Some(l) if l != old => Ok(l),
                other => Err(format!("{other:?}")),
            }
        })
        .await
    }

    /// Waits until instance `n` reports its `volume_type` volume blocked for `reason`.
    pub async fn wait_blocked(&self, n: usize, volume_type: &str, reason: &str, timeout: Duration) {
        let labels = [("volume_type", volume_type), ("reason", reason)];
        self.wait_metric(n, "cnpg_disk_resize_blocked", &labels, 1.0, timeout)
            .await;
    }

    pub fn logs(&self) -> String {
        let mut pods = self.scenario.manager_pods();
        pods.sort_by(|a, b| a.pod.cmp(&b.pod));
        pods.iter()
            .map(|m| format!("--- {} ---\n{}", m.pod, tail(&m.logs(), 60)))
            .collect::<Vec<_>>()
            .join("\n")
    }
}

impl Drop for Env {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!("manager logs:\n{}", self.logs());
        }
    }
}

fn tail(text: &str, lines: usize) -> String {
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

pub async fn get_text(url: &str) -> Option<String> {
    let response = reqwest::Client::new()
        .get(url)
        .timeout(Duration::from_secs(5))
        .send()
        .await
        .ok()?;
    response.text().await.ok()
}

/// The HTTP status of a GET, None when nothing answers.
pub async fn get_status(url: &str) -> Option<u16> {
    let response = reqwest::Client::new()
        .get(url)
        .timeout(Duration::from_secs(5))
        .send()
        .await
        .ok()?;
    Some(response.status().as_u16())
}

pub async fn get_json(url: &str) -> Option<Value> {
    serde_json::from_str(&get_text(url).await?).ok()
}

/// Polls `check` until it returns Ok, or panics with the last answer.
pub async fn wait_until<T, F, Fut>(what: &str, timeout: Duration, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, String>>,
{
    let deadline = Instant::now() + timeout;
    loop {
        match check().await {
            Ok(v) => return v,
            Err(last) if Instant::now() > deadline => {
                panic!("timed out after {timeout:?} waiting for {what}; last: {last}")
            }
            Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
        }
    }
}

/// The value of the sample `name{labels}` (labels must all match).
pub fn metric(text: &str, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .find_map(|line| {
            let (series, value) = line.rsplit_once(' ')?;
            let (metric_name, label_text) = match series.split_once('{') {
                Some((n, rest)) => (n, rest.trim_end_matches('}')),
                None => (series, ""),
            };
            if metric_name != name {
                return None;
            }
            let all = labels.iter().all(|(k, v)| {
                label_text
                    .split(',')
                    .any(|pair| pair == format!("{k}=\"{v}\""))
            });
            all.then(|| value.parse().ok()).flatten()
        })
}

/// Waits until the simulator has grown `volume`'s device to `device_bytes`
/// and the filesystem shows what such a device shows (less than the device:
/// ext4 keeps its metadata).
pub async fn wait_grown(volume: &cnpg_testbed::Volume, device_bytes: u64) {
    let expected = volume.total_bytes_after_grow(device_bytes);
    wait_until(
        &format!("the filesystem of a {device_bytes}-byte device ({expected} bytes)"),
        secs(20),
        || async {
            let total = volume.stats().map_err(|e| e.to_string())?.total_bytes;
            (total >= expected).then_some(()).ok_or(total.to_string())
        },
    )
    .await;
}

pub fn secs(n: u64) -> Duration {
    Duration::from_secs(n)
}
