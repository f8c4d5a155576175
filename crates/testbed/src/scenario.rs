//! Scenarios: a whole CNPG cluster in one call — the API sandbox, a
//! StorageClass, the `Cluster` object, labelled pods with IPs and PVCs,
//! real volumes behind them (grown by the [`VolumeSimulator`]) and, when
//! asked, real PostgreSQL (a primary and streaming replicas) — plus the
//! `cnpg-autoresize run` processes, one per instance. Everything is torn
//! down on drop, even when a test fails.

use crate::cluster::{PgCluster, VolumeRole};
use crate::{net, ExpansionMode, PgServer, SimulatorConfig, Volume, VolumeSimulator};
use anyhow::{bail, Context, Result};
use k8s_openapi::api::core::v1::{PersistentVolumeClaim, Pod};
use k8s_openapi::api::storage::v1::StorageClass;
use kube::api::{Api, DynamicObject, Patch, PatchParams, PostParams};
use kube::core::{ApiResource, GroupVersionKind};
use serde_json::{json, Value};
use std::net::{Ipv4Addr, SocketAddr};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

pub const STORAGE_CLASS: &str = "testbed-expandable";
pub const MONITOR_ROLE: &str = "autoresize";

/// One volume of a scenario instance.
#[derive(Debug, Clone)]
pub struct ScenarioVolume {
    pub pvc: String,
    pub role: VolumeRole,
    pub volume: Arc<Volume>,
}

/// One instance: its pod name and IP, its volumes, its PostgreSQL.
#[derive(Debug)]
pub struct ScenarioInstance {
    pub pod: String,
    pub ip: Ipv4Addr,
    pub volumes: Vec<ScenarioVolume>,
    /// libpq connection string for the `pg_monitor` role (None without PostgreSQL).
    pub monitor_dsn: Option<String>,
}

impl ScenarioInstance {
    pub fn volume(&self, role: &VolumeRole) -> Option<&ScenarioVolume> {
        self.volumes.iter().find(|v| &v.role == role)
    }

    pub fn data(&self) -> &ScenarioVolume {
        // Every instance has a data volume by construction.
        &self.volumes[0]
    }
}

#[derive(Debug, Clone)]
pub struct ScenarioBuilder {
    cluster: String,
    namespace: String,
    instances: usize,
    data: (u64, Value),
    wal: Option<(u64, Value)>,
    tablespaces: Vec<(String, u64, Value)>,
    spec_extra: Value,
    postgres: bool,
    expandable: bool,
    expand_delay: Duration,
    role: Option<(String, String)>,
}

impl ScenarioBuilder {
    pub fn instances(mut self, n: usize) -> Self {
        self.instances = n;
        self
    }

    /// The data volume's size and its `spec.storage.resize` block.
    pub fn data(mut self, bytes: u64, resize: Value) -> Self {
        self.data = (bytes, resize);
        self
    }

    /// A WAL volume (`spec.walStorage`) with its resize block.
    pub fn wal(mut self, bytes: u64, resize: Value) -> Self {
        self.wal = Some((bytes, resize));
        self
    }

    pub fn tablespace(mut self, name: &str, bytes: u64, resize: Value) -> Self {
        self.tablespaces.push((name.to_string(), bytes, resize));
        self
    }

    /// Merged into the Cluster's `spec` (e.g. `backup`, `plugins`).
    pub fn spec(mut self, extra: Value) -> Self {
        self.spec_extra = extra;
        self
    }

    /// Run real PostgreSQL servers (default: yes).
    pub fn postgres(mut self, on: bool) -> Self {
        self.postgres = on;
        self
    }

    /// Whether the StorageClass allows volume expansion (default: yes).
    pub fn expandable(mut self, on: bool) -> Self {
        self.expandable = on;
        self
    }

    pub fn expand_delay(mut self, delay: Duration) -> Self {
        self.expand_delay = delay;
        self
    }

    /// Make the sandbox enforce `role_yaml` for the managers' identity
    /// (`system:serviceaccount:<namespace>:<cluster>`, as CNPG's pods have).
    pub fn enforce_role(mut self, role_yaml: &str) -> Self {
        let identity = format!("system:serviceaccount:{}:{}", self.namespace, self.cluster);
        self.role = Some((identity, role_yaml.to_string()));
        self
    }

    fn cluster_spec(&self) -> Value {
        let mut spec = json!({
            "instances": self.instances,
            "storage": {"size": quantity(self.data.0), "storageClass": STORAGE_CLASS, "resize": self.data.1},
        });
        if let Some((bytes, resize)) = &self.wal {
            spec["walStorage"] =
                json!({"size": quantity(*bytes), "storageClass": STORAGE_CLASS, "resize": resize});
        }
        if !self.tablespaces.is_empty() {
            spec["tablespaces"] = self
                .tablespaces
                .iter()
                .map(|(name, bytes, resize)| {
                    json!({"name": name, "storage": {"size": quantity(*bytes), "storageClass": STORAGE_CLASS, "resize": resize}})
                })
                .collect();
        }
        merge(&mut spec, &self.spec_extra);
        spec
    }

    pub async fn start(self) -> Result<Scenario> {
        if self.instances == 0 {
            bail!("a scenario needs at least one instance");
        }
        let dir = tempfile::Builder::new()
            .prefix(&format!("cnpg-scenario-{}-", self.cluster))
            .tempdir()
            .context("creating the scenario directory")?;
        let sandbox = kube_sandbox::Sandbox::start(kube_sandbox::SandboxConfig::default()).await?;
        if let Some((identity, role)) = &self.role {
            sandbox.enforce_role(identity, role)?;
        }
        let client = sandbox.client().await?;

        // PostgreSQL (with its volumes) or bare volumes.
        let mut pg = None;
        let mut instances = Vec::new();
        if self.postgres {
            let mut builder = PgCluster::builder(&self.cluster)
                .instances(self.instances)
                .data_size(self.data.0);
            if let Some((bytes, _)) = &self.wal {
                builder = builder.wal_size(*bytes);
            }
            for (name, bytes, _) in &self.tablespaces {
                builder = builder.tablespace(name, *bytes);
            }
            let cluster = builder.start().await?;
            let password = format!("monitor-{}", std::process::id());
            cluster
                .primary()
                .server
                .create_monitor_role(MONITOR_ROLE, &password)
                .await?;
            for i in cluster.instances() {
                instances.push(ScenarioInstance {
                    pod: i.name.clone(),
                    ip: i.server.ip(),
                    volumes: i
                        .volumes
                        .iter()
                        .map(|v| ScenarioVolume {
                            pvc: v.pvc_name.clone(),
                            role: v.role.clone(),
                            volume: v.volume.clone(),
                        })
                        .collect(),
                    monitor_dsn: Some(i.server.dsn_for(MONITOR_ROLE, &password)),
                });
            }
            pg = Some(cluster);
        } else {
            for n in 1..=self.instances {
                let pod = format!("{}-{n}", self.cluster);
                let mut volumes = Vec::new();
                let mut add = |pvc: String, role: VolumeRole, bytes: u64| -> Result<()> {
                    let volume = Arc::new(Volume::create(&dir.path().join(&pvc), bytes)?);
                    volumes.push(ScenarioVolume { pvc, role, volume });
                    Ok(())
                };
                add(pod.clone(), VolumeRole::Data, self.data.0)?;
                if let Some((bytes, _)) = &self.wal {
                    add(format!("{pod}-wal"), VolumeRole::Wal, *bytes)?;
                }
                for (name, bytes, _) in &self.tablespaces {
                    add(
                        format!("{pod}-tbs-{name}"),
                        VolumeRole::Tablespace(name.clone()),
                        *bytes,
                    )?;
                }
                instances.push(ScenarioInstance {
                    pod,
                    ip: net::next_loopback_ip()?,
                    volumes,
                    monitor_dsn: None,
                });
            }
        }

        // Kubernetes objects, as CNPG would have created them.
        let ns = self.namespace.as_str();
        let classes: Api<StorageClass> = Api::all(client.clone());
        let class: StorageClass = serde_json::from_value(json!({
            "metadata": {"name": STORAGE_CLASS},
            "provisioner": "testbed.cnpg.io",
            "allowVolumeExpansion": self.expandable,
        }))?;
        classes
            .create(&PostParams::default(), &class)
            .await
            .context("creating the StorageClass")?;
        let clusters = cluster_api(&client, ns);
        let object: DynamicObject = serde_json::from_value(json!({
            "apiVersion": "postgresql.cnpg.io/v1", "kind": "Cluster",
            "metadata": {"name": self.cluster, "namespace": ns},
            "spec": self.cluster_spec(),
        }))?;
        clusters
            .create(&PostParams::default(), &object)
            .await
            .context("creating the Cluster")?;

        let simulator = VolumeSimulator::start(
            client.clone(),
            ns,
            SimulatorConfig {
                expand_delay: self.expand_delay,
                ..SimulatorConfig::default()
            },
        )
        .await?;
        let pods: Api<Pod> = Api::namespaced(client.clone(), ns);
        let pvcs: Api<PersistentVolumeClaim> = Api::namespaced(client.clone(), ns);
        for (n, instance) in instances.iter().enumerate() {
            let role = if n == 0 { "primary" } else { "replica" };
            let pod: Pod = serde_json::from_value(json!({
                "metadata": {"name": instance.pod, "namespace": ns, "labels": {
                    "cnpg.io/cluster": self.cluster, "cnpg.io/instanceName": instance.pod,
                    "cnpg.io/podRole": "instance", "cnpg.io/instanceRole": role, "role": role}},
                "spec": {"containers": [{"name": "postgres", "image": "ghcr.io/cloudnative-pg/postgresql:17"}]},
            }))?;
            pods.create(&PostParams::default(), &pod)
                .await
                .with_context(|| format!("creating pod {}", instance.pod))?;
            let status = json!({"status": {"phase": "Running", "podIP": instance.ip.to_string(),
                "podIPs": [{"ip": instance.ip.to_string()}]}});
            pods.patch_status(
                &instance.pod,
                &PatchParams::default(),
                &Patch::Merge(&status),
            )
            .await
            .with_context(|| format!("setting the IP of pod {}", instance.pod))?;
            for v in &instance.volumes {
                let mut labels = json!({"cnpg.io/cluster": self.cluster, "cnpg.io/instanceName": instance.pod,
                    "cnpg.io/pvcRole": v.role.label()});
                if let VolumeRole::Tablespace(name) = &v.role {
                    labels["cnpg.io/tablespaceName"] = json!(name);
                }
                let claim: PersistentVolumeClaim = serde_json::from_value(json!({
                    "metadata": {"name": v.pvc, "namespace": ns, "labels": labels},
                    "spec": {"accessModes": ["ReadWriteOnce"], "storageClassName": STORAGE_CLASS,
                        "resources": {"requests": {"storage": quantity(v.volume.capacity_bytes())}}},
                }))?;
                pvcs.create(&PostParams::default(), &claim)
                    .await
                    .with_context(|| format!("creating PVC {}", v.pvc))?;
                simulator.register(&v.pvc, v.volume.clone());
            }
        }
        let scenario = Scenario {
            cluster: self.cluster.clone(),
            namespace: self.namespace.clone(),
            identity: self
                .role
                .as_ref()
                .map(|(i, _)| i.clone())
                .unwrap_or_else(|| {
                    format!("system:serviceaccount:{}:{}", self.namespace, self.cluster)
                }),
            instances,
            simulator,
            pg,
            client,
            sandbox,
            dir,
        };
        scenario.wait_all_bound(Duration::from_secs(30)).await?;
        Ok(scenario)
    }
}

fn quantity(bytes: u64) -> String {
    k8s_quantity::format_bytes(bytes)
}

fn merge(into: &mut Value, extra: &Value) {
    if let (Some(into), Some(extra)) = (into.as_object_mut(), extra.as_object()) {
        for (k, v) in extra {
            match into.get_mut(k) {
                Some(existing) if existing.is_object() && v.is_object() => merge(existing, v),
                _ => {
                    into.insert(k.clone(), v.clone());
                }
            }
        }
    }
}

pub fn cluster_api(client: &kube::Client, namespace: &str) -> Api<DynamicObject> {
    let gvk = GroupVersionKind::gvk("postgresql.cnpg.io", "v1", "Cluster");
    Api::namespaced_with(
        client.clone(),
        namespace,
        &ApiResource::from_gvk_with_plural(&gvk, "clusters"),
    )
}

/// A running cluster; dropping it stops managers, PostgreSQL, the simulator
/// and the sandbox, and unmounts the volumes.
pub struct Scenario {
    pub cluster: String,
    pub namespace: String,
    /// The managers' Kubernetes identity.
    pub identity: String,
    pub instances: Vec<ScenarioInstance>,
    pub simulator: VolumeSimulator,
    pub pg: Option<PgCluster>,
    pub client: kube::Client,
    pub sandbox: kube_sandbox::Sandbox,
    dir: tempfile::TempDir,
}

impl Scenario {
    pub fn builder(cluster: &str) -> ScenarioBuilder {
        ScenarioBuilder {
            cluster: cluster.to_string(),
            namespace: "default".to_string(),
            instances: 1,
            data: (64 << 20, json!({"enabled": true})),
            wal: None,
            tablespaces: Vec::new(),
            spec_extra: json!({}),
            postgres: true,
            expandable: true,
            expand_delay: Duration::from_millis(200),
            role: None,
        }
    }

    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    pub fn instance(&self, pod: &str) -> Option<&ScenarioInstance> {
        self.instances.iter().find(|i| i.pod == pod)
    }

    pub fn server(&self, pod: &str) -> Option<&PgServer> {
        self.pg.as_ref()?.instance(pod).map(|i| &i.server)
    }

    pub fn clusters(&self) -> Api<DynamicObject> {
        cluster_api(&self.client, &self.namespace)
    }

    pub fn pvcs(&self) -> Api<PersistentVolumeClaim> {
        Api::namespaced(self.client.clone(), &self.namespace)
    }

    /// The PVC's `spec.resources.requests.storage` in bytes.
    pub async fn requested_bytes(&self, pvc: &str) -> Result<u64> {
        let claim = self
            .pvcs()
            .get(pvc)
            .await
            .with_context(|| format!("reading PVC {pvc}"))?;
        let text = claim
            .spec
            .and_then(|s| s.resources)
            .and_then(|r| r.requests)
            .and_then(|r| r.get("storage").cloned())
            .with_context(|| format!("PVC {pvc} has no storage request"))?;
        k8s_quantity::Quantity::parse(&text.0)?
            .to_bytes()
            .with_context(|| format!("PVC {pvc} request {:?}", text.0))
    }

    /// The Cluster's `status` (Null when none).
    pub async fn cluster_status(&self) -> Result<Value> {
        let object = self
            .clusters()
            .get(&self.cluster)
            .await
            .context("reading the Cluster")?;
        Ok(object.data.get("status").cloned().unwrap_or(Value::Null))
    }

    /// Replaces one storage block's `resize` (`spec.storage`, `spec.walStorage`, …).
    pub async fn set_resize(&self, block: &str, resize: Value) -> Result<()> {
        let patch = json!({"spec": {block: {"resize": resize}}});
        self.clusters()
            .patch(
                &self.cluster,
                &PatchParams::default(),
                &Patch::Merge(&patch),
            )
            .await
            .with_context(|| format!("patching spec.{block}.resize"))?;
        Ok(())
    }

    pub fn set_expansion_mode(&self, pvc: &str, mode: ExpansionMode) -> bool {
        self.simulator.set_mode(pvc, mode)
    }

    async fn wait_all_bound(&self, timeout: Duration) -> Result<()> {
        let deadline = Instant::now() + timeout;
        loop {
            let list = self.pvcs().list(&Default::default()).await?;
            let bound = list
                .items
                .iter()
                .all(|p| p.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Bound"));
            if bound {
                return Ok(());
            }
            if Instant::now() > deadline {
                bail!("PVCs not bound after {timeout:?}");
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// The manager command line for instance `n` (0-based) on `port`.
    pub fn manager_command(
        &self,
        binary: &Path,
        n: usize,
        port: u16,
        options: &ManagerOptions,
    ) -> Result<Command> {
        let instance = self
            .instances
            .get(n)
            .with_context(|| format!("no instance {n}"))?;
        let kubeconfig = self.dir.path().join(format!("{}.kubeconfig", instance.pod));
        if !kubeconfig.exists() {
            self.sandbox
                .write_kubeconfig(&kubeconfig, &self.identity, &self.namespace)?;
        }
        let mut cmd = Command::new(binary);
        cmd.arg("run")
            .arg("--kubeconfig")
            .arg(&kubeconfig)
            .args([
                "--namespace",
                &self.namespace,
                "--cluster",
                &self.cluster,
                "--pod-name",
                &instance.pod,
            ])
            .arg("--http-addr")
            .arg(format!("{}:{port}", instance.ip))
            .args(["--probe-interval", &options.probe_interval])
            .args(["--wal-interval", &options.wal_interval])
            .args(["--slot-query-timeout", &options.slot_query_timeout])
            .args(["--pg-timeout", &options.pg_timeout])
            .args(["--lease-duration", &options.lease_duration])
            .args(["--renew-interval", &options.renew_interval])
            .args(["--log-format", "json", "--log-level", &options.log_level]);
        for v in &instance.volumes {
            match &v.role {
                VolumeRole::Data => cmd.arg("--data-path").arg(v.volume.path()),
                VolumeRole::Wal => cmd.arg("--wal-path").arg(v.volume.path()),
                VolumeRole::Tablespace(name) => {
                    cmd.arg(format!("--tablespace={name}={}", v.volume.path().display()))
                }
            };
        }
        // Without PostgreSQL, point at a closed port: WAL health is unavailable.
        let dsn = instance.monitor_dsn.clone().unwrap_or_else(|| {
            format!(
                "host={} port=1 user=nobody dbname=postgres connect_timeout=1",
                instance.ip
            )
        });
        cmd.arg("--pg-dsn").arg(dsn);
        if !crate::is_root() {
            cmd.arg("--simulated-volumes");
        }
        cmd.args(&options.extra_args);
        Ok(cmd)
    }

    /// A port free on every instance's IP: all pods listen on the same port.
    pub fn common_port(&self) -> Result<u16> {
        for _ in 0..50 {
            let port = net::free_port(self.instances[0].ip)?;
            let free_everywhere = self
                .instances
                .iter()
                .all(|i| std::net::TcpListener::bind(SocketAddr::from((i.ip, port))).is_ok());
            if free_everywhere {
                return Ok(port);
            }
        }
        bail!("no port free on every instance address")
    }

    /// Starts `cnpg-autoresize run` for instance `n`, logging to the scenario dir.
    pub fn spawn_manager(
        &self,
        binary: &Path,
        n: usize,
        port: u16,
        options: &ManagerOptions,
    ) -> Result<ManagerProcess> {
        let pod = self.instances[n].pod.clone();
        let log = self.dir.path().join(format!("{pod}.log"));
        let out = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log)
            .with_context(|| format!("opening {}", log.display()))?;
        let err = out.try_clone()?;
        // Its own process group: a terminal's Ctrl-C reaches only the
        // caller, which stops the managers in order.
        let child = self
            .manager_command(binary, n, port, options)?
            .process_group(0)
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .spawn()
            .with_context(|| format!("starting {}", binary.display()))?;
        Ok(ManagerProcess {
            pod,
            addr: SocketAddr::from((self.instances[n].ip, port)),
            log,
            child: Some(child),
        })
    }
}

/// Timings of the managers a scenario runs; short, so tests are quick.
#[derive(Debug, Clone)]
pub struct ManagerOptions {
    pub probe_interval: String,
    pub wal_interval: String,
    pub slot_query_timeout: String,
    pub pg_timeout: String,
    pub lease_duration: String,
    pub renew_interval: String,
    pub log_level: String,
    pub extra_args: Vec<String>,
}

impl Default for ManagerOptions {
    fn default() -> Self {
        ManagerOptions {
            probe_interval: "200ms".into(),
            wal_interval: "500ms".into(),
            slot_query_timeout: "1s".into(),
            pg_timeout: "2s".into(),
            lease_duration: "3s".into(),
            renew_interval: "1s".into(),
            log_level: "info".into(),
            extra_args: Vec::new(),
        }
    }
}

/// A running `cnpg-autoresize run`; killed on drop.
pub struct ManagerProcess {
    pub pod: String,
    pub addr: SocketAddr,
    pub log: PathBuf,
    child: Option<Child>,
}

impl ManagerProcess {
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(|c| c.id())
    }

    /// Sends a signal (e.g. SIGTERM, SIGKILL).
    pub fn signal(&self, signal: nix::sys::signal::Signal) -> Result<()> {
        let pid = self.pid().context("process already reaped")?;
        nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid as i32), signal)
            .context("sending a signal")
    }

    /// Waits for exit; None if still running after `timeout`.
    pub fn wait_exit(&mut self, timeout: Duration) -> Result<Option<std::process::ExitStatus>> {
        let deadline = Instant::now() + timeout;
        let Some(child) = self.child.as_mut() else {
            return Ok(None);
        };
        loop {
            if let Some(status) = child.try_wait()? {
                self.child = None;
                return Ok(Some(status));
            }
            if Instant::now() > deadline {
                return Ok(None);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    pub fn logs(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for ManagerProcess {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}
