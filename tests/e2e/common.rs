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
use serde::Deserialize;
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

/// The chart's admission policies for one listed cluster named
/// `cluster-placeholder` in namespace `default` (kept in sync by
/// hack/check-chart.sh): the ValidatingAdmissionPolicy that limits what a
/// cluster's token may write, the MutatingAdmissionPolicy that injects the
/// sidecar, and their bindings.
pub const ADMISSION_POLICIES: &str = include_str!("../packaging/admission-policies.yaml");

/// The documents of [`ADMISSION_POLICIES`] of `kinds`, for `cluster`.
pub fn admission_policies(cluster: &str, kinds: &[&str]) -> Vec<Value> {
    assert!(
        ADMISSION_POLICIES.contains(cnpg_testbed::scenario::ROLE_CLUSTER_PLACEHOLDER),
        "the admission policies are rendered for another placeholder"
    );
    let text =
        ADMISSION_POLICIES.replace(cnpg_testbed::scenario::ROLE_CLUSTER_PLACEHOLDER, cluster);
    serde_norway::Deserializer::from_str(&text)
        .map(|doc| Value::deserialize(doc).expect("a YAML document"))
        .filter(|v| kinds.contains(&v["kind"].as_str().unwrap_or("")))
        .collect()
}

/// Creates admission policy objects (as the chart's install would).
pub async fn install_admission(client: &kube::Client, objects: &[Value]) {
    for object in objects {
        let kind = object["kind"].as_str().expect("a kind");
        let plural = match kind {
            "ValidatingAdmissionPolicy" => "validatingadmissionpolicies",
            "ValidatingAdmissionPolicyBinding" => "validatingadmissionpolicybindings",
            "MutatingAdmissionPolicy" => "mutatingadmissionpolicies",
            "MutatingAdmissionPolicyBinding" => "mutatingadmissionpolicybindings",
            other => panic!("not an admission policy kind: {other}"),
        };
        let gvk = kube::api::GroupVersionKind::gvk("admissionregistration.k8s.io", "v1", kind);
        let api: Api<kube::api::DynamicObject> = Api::all_with(
            client.clone(),
            &kube::api::ApiResource::from_gvk_with_plural(&gvk, plural),
        );
        let object: kube::api::DynamicObject =
            serde_json::from_value(object.clone()).expect("an object");
        api.create(&Default::default(), &object)
            .await
            .unwrap_or_else(|e| panic!("the sandbox refuses the chart's {kind}: {e}"));
    }
}

/// The chart's ValidatingAdmissionPolicy and its binding: every end-to-end
/// scenario runs under them, so every write the managers make is one the
/// policy allows.
pub const GUARD_KINDS: &[&str] = &[
    "ValidatingAdmissionPolicy",
    "ValidatingAdmissionPolicyBinding",
];

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
        let env = Self::prepare(builder, options, cluster_crd, role).await;
        env.start_all_pods();
        env
    }

    /// The scenario without its manager pods ([`Env::start_all_pods`] starts them).
    pub async fn prepare(
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
        Self::around(scenario, port, options).await
    }

    /// Around a scenario started by the caller (who may have prepared
    /// files in its directory): one manager pod per instance on `port`.
    pub async fn adopt(scenario: Scenario, port: u16, options: ManagerOptions) -> Env {
        let env = Self::around(scenario, port, options).await;
        env.start_all_pods();
        env
    }

    /// The policy CRD and the chart's admission policies, no pods yet.
    async fn around(scenario: Scenario, port: u16, options: ManagerOptions) -> Env {
        scenario
            .sandbox
            .register_crd(POLICY_CRD)
            .expect("the policy CRD registers");
        install_admission(
            &scenario.client,
            &admission_policies(&scenario.cluster, GUARD_KINDS),
        )
        .await;
        let n = scenario.instances.len();
        Env {
            scenario,
            port,
            options,
            stopped: vec![None; n],
        }
    }

    /// Starts every instance's manager pod with `self.options`.
    pub fn start_all_pods(&self) {
        for n in 0..self.scenario.instances.len() {
            self.scenario
                .start_manager_pod(binary(), n, self.port, &self.options)
                .expect("manager pod starts");
        }
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

    /// The leader and the planning passes it has completed (its
    /// `/v1/decisions`), None while no leader answers.
    pub async fn passes(&self) -> Option<(String, u64)> {
        let leader = self.leader().await?;
        let feed = get_json(&self.scenario.manager_pod(&leader)?.url("/v1/decisions")).await?;
        Some((leader, feed["passes"].as_u64()?))
    }

    /// Waits until one leader has completed `n` more planning passes: the
    /// event that would prove a "nothing happens" check wrong has had its
    /// chance. Returns the leader.
    pub async fn wait_passes(&self, n: u64, timeout: Duration) -> String {
        let (leader, start) = wait_until("a leader's planning passes", timeout, || async {
            self.passes().await.ok_or("no leader answers".to_string())
        })
        .await;
        wait_until(
            &format!("{n} more planning passes of {leader}"),
            timeout,
            || async {
                match self.passes().await {
                    Some((l, p)) if l == leader && p >= start + n => Ok(()),
                    other => Err(format!("{other:?} (from {start})")),
                }
            },
        )
        .await;
        leader
    }

    /// Waits until `at` has passed and then the leader has completed a
    /// planning pass: e.g. a status interval has passed and been acted on.
    pub async fn wait_pass_after(&self, at: Instant, timeout: Duration) {
        wait_until("the moment to pass", timeout, || async {
            (Instant::now() >= at)
                .then_some(())
                .ok_or(format!("{:?} to go", at - Instant::now()))
        })
        .await;
        self.wait_passes(1, timeout).await;
    }

    /// The PVC keeps requesting `bytes` while the leader completes `passes`
    /// planning passes (each would have resized it if it were going to).
    pub async fn hold_request(&self, pvc: &str, bytes: u64, passes: u64) {
        let (leader, start) = wait_until("a leader's planning passes", secs(30), || async {
            self.passes().await.ok_or("no leader answers".to_string())
        })
        .await;
        wait_until(
            &format!("{passes} planning passes with {pvc} at {bytes} bytes"),
            secs(60),
            || async {
                let now = self.requested(pvc).await;
                assert_eq!(now, bytes, "PVC {pvc} changed\n{}", self.logs());
                match self.passes().await {
                    Some((l, p)) if l == leader && p >= start + passes => Ok(()),
                    other => Err(format!("{other:?} (from {start})")),
                }
            },
        )
        .await;
        assert_eq!(self.requested(pvc).await, bytes, "PVC {pvc} changed");
    }

    /// The PVC keeps requesting `bytes` for `period`. Only where no planning
    /// pass runs by design (a leader that plans nothing): elsewhere
    /// [`Env::hold_request`] waits for the passes that would change it.
    pub async fn hold_request_for(&self, pvc: &str, bytes: u64, period: Duration) {
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

    /// The status's resize records once there are any: the status mirrors a
    /// PVC's record after the patch that wrote it.
    pub async fn wait_resize_events(&self) -> Vec<Value> {
        wait_until("resize records in the status", secs(30), || async {
            let events = self.resize_events().await;
            (!events.is_empty())
                .then_some(events)
                .ok_or("none yet".to_string())
        })
        .await
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

/// Waits until PostgreSQL itself reports archiving as failing (or not).
/// Each attempt switches to a new 16 MiB segment, so attempts are sparse.
pub async fn wait_archiver(server: &cnpg_testbed::PgServer, failing: bool) {
    let mut last_switch = None;
    wait_until(
        &format!("pg_stat_archiver failing = {failing}"),
        secs(30),
        || {
            let due = last_switch.is_none_or(|t: std::time::Instant| {
                t.elapsed() > std::time::Duration::from_secs(3)
            });
            if due {
                last_switch = Some(std::time::Instant::now());
            }
            async move {
                if due {
                    server
                        .generate_wal(64 << 10)
                        .await
                        .map_err(|e| e.to_string())?;
                }
                let client = server.connect().await.map_err(|e| e.to_string())?;
                let row = client
                .query_one(
                    "SELECT coalesce(last_failed_time IS NOT NULL AND (last_archived_time IS NULL \
                     OR last_failed_time > last_archived_time), false) FROM pg_stat_archiver",
                    &[],
                )
                .await
                .map_err(|e| e.to_string())?;
                let now: bool = row.get(0);
                (now == failing)
                    .then_some(())
                    .ok_or(format!("failing = {now}"))
            }
        },
    )
    .await;
}
