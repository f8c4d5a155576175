//! Scenarios: a whole CNPG cluster in one call — the API sandbox, a
//! StorageClass, the `Cluster` object, labelled pods with IPs and PVCs,
//! real volumes behind them (grown by the [`VolumeSimulator`]) and, when
//! asked, real PostgreSQL (a primary and streaming replicas, with CNPG's HA
//! replication slots) — plus the `cnpg-autoresize run` processes, one per
//! instance, either bare ([`Scenario::spawn_manager`]) or run as a pod's
//! container by the kubelet stand-in ([`Scenario::start_manager_pod`]).
//! Everything is torn down on drop, even when a test fails.
//!
//! With PostgreSQL, the CloudNativePG stand-in ([`crate::operator`]) writes
//! the Cluster's status all along (switch: [`ScenarioBuilder::cnpg_operator`]),
//! and replicas can be rebuilt or added the way CNPG does it
//! ([`Scenario::rebuild_replica`], [`Scenario::add_replica`]): new PVCs
//! from the Cluster's *current* `spec.storage.size`, a base backup retried
//! until it fits, and only then PostgreSQL and the instance's manager.

use crate::cluster::{
    HaSlots, InstanceVolume, JoinAttempt, JoinOptions, JoinProgress, PendingJoin, PgCluster,
    VolumeRole, VolumeSizes, DEFAULT_SLOT_PREFIX,
};
use crate::kubelet::{Container, ContainerCommand, ContainerLaunch, ContainerSpec, KubeletConfig};
use crate::operator::{CnpgOperator, OperatorConfig};
use crate::volume::FilesystemKind;
use crate::{net, ExpansionMode, PgServer, SimulatorConfig, Volume, VolumeSimulator};
use anyhow::{bail, Context, Result};
use k8s_openapi::api::core::v1::{PersistentVolumeClaim, Pod};
use k8s_openapi::api::storage::v1::StorageClass;
use kube::api::{Api, DeleteParams, DynamicObject, Patch, PatchParams, PostParams};
use kube::core::{ApiResource, GroupVersionKind};
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::net::{Ipv4Addr, SocketAddr};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

pub const STORAGE_CLASS: &str = "testbed-expandable";
pub const MONITOR_ROLE: &str = "autoresize";

/// The cluster name the chart's committed fixtures (`tests/packaging/manager-role.yaml`,
/// `tests/packaging/admission-policies.yaml`) are rendered for; tests put theirs in its place.
pub const ROLE_CLUSTER_PLACEHOLDER: &str = "cluster-placeholder";

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
    operator: Option<bool>,
    operator_config: OperatorConfig,
    ha_slots: bool,
    slot_update_interval: Duration,
    join: JoinOptions,
    cluster_crd: Option<String>,
    filesystem: FilesystemKind,
}

impl ScenarioBuilder {
    /// What the volumes' filesystems look like (default: ext4's overhead,
    /// as in production: a 64Mi device shows about 57 MB).
    pub fn filesystem(mut self, kind: FilesystemKind) -> Self {
        self.filesystem = kind;
        self
    }

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
    /// [`ROLE_CLUSTER_PLACEHOLDER`] in it (the cluster the chart's Roles are
    /// rendered for in `tests/packaging/manager-role.yaml`) becomes the
    /// scenario's cluster.
    pub fn enforce_role(mut self, role_yaml: &str) -> Self {
        let identity = format!("system:serviceaccount:{}:{}", self.namespace, self.cluster);
        self.role = Some((identity, role_yaml.to_string()));
        self
    }

    /// Run the CloudNativePG stand-in that writes the Cluster's status
    /// (default: whenever the scenario runs PostgreSQL).
    pub fn cnpg_operator(mut self, on: bool) -> Self {
        self.operator = Some(on);
        self
    }

    /// Settings of the CloudNativePG stand-in (status interval, …). Its
    /// `cluster_crd` defaults to the one given to [`ScenarioBuilder::cluster_crd`].
    pub fn operator_config(mut self, config: OperatorConfig) -> Self {
        self.operator_config = config;
        self
    }

    /// CNPG's HA replication slots (`spec.replicationSlots.highAvailability.enabled`,
    /// default on, as in CNPG).
    pub fn ha_slots(mut self, on: bool) -> Self {
        self.ha_slots = on;
        self
    }

    /// `spec.replicationSlots.updateInterval` (whole seconds, at least 1;
    /// CNPG's default 30 s): how often standbys advance their HA slot copies.
    pub fn slot_update_interval(mut self, interval: Duration) -> Self {
        self.slot_update_interval = interval;
        self
    }

    /// How rebuilt and added replicas retry their base backup.
    pub fn join_options(mut self, options: JoinOptions) -> Self {
        self.join = options;
        self
    }

    /// Serve this Cluster CRD (YAML text, e.g. `kube_sandbox::cluster_crd()?.text`)
    /// instead of the sandbox's schema-less default: every write is then
    /// pruned and validated against it. The CNPG stand-in projects its
    /// writes onto the same schema.
    pub fn cluster_crd(mut self, crd_yaml: impl Into<String>) -> Self {
        self.cluster_crd = Some(crd_yaml.into());
        self
    }

    fn update_interval_secs(&self) -> u64 {
        self.slot_update_interval.as_secs_f64().ceil().max(1.0) as u64
    }

    fn cluster_spec(&self) -> Value {
        let mut spec = json!({
            "instances": self.instances,
            "storage": {"size": quantity(self.data.0), "storageClass": STORAGE_CLASS, "resize": self.data.1},
            // What CNPG's defaulting webhook writes (the test bed copies
            // user slots to standbys as CNPG does, cluster.rs).
            "replicationSlots": {
                "highAvailability": {"enabled": self.ha_slots, "slotPrefix": DEFAULT_SLOT_PREFIX},
                "updateInterval": self.update_interval_secs(),
                "synchronizeReplicas": {"enabled": true},
            },
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
        let sandbox = kube_sandbox::Sandbox::start(kube_sandbox::SandboxConfig {
            crds: self.cluster_crd.iter().cloned().collect(),
            ..kube_sandbox::SandboxConfig::default()
        })
        .await?;
        if let Some((identity, role)) = &self.role {
            sandbox.enforce_role(
                identity,
                &role.replace(ROLE_CLUSTER_PLACEHOLDER, &self.cluster),
            )?;
        }
        let client = sandbox.client().await?;

        // PostgreSQL (with its volumes) or bare volumes.
        let mut pg = None;
        let mut instances = Vec::new();
        let spec = self.cluster_spec();
        let password = format!("monitor-{}", std::process::id());
        if self.postgres {
            let mut builder = PgCluster::builder(&self.cluster)
                .instances(self.instances)
                .data_size(self.data.0)
                .filesystem(self.filesystem)
                .ha_slots(ha_slots_of(&spec));
            if let Some((bytes, _)) = &self.wal {
                builder = builder.wal_size(*bytes);
            }
            for (name, bytes, _) in &self.tablespaces {
                builder = builder.tablespace(name, *bytes);
            }
            let cluster = builder.start().await?;
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
                    let volume = Arc::new(Volume::create_with(
                        &dir.path().join(&pvc),
                        bytes,
                        self.filesystem,
                    )?);
                    volumes.push(ScenarioVolume { pvc, role, volume });
                    Ok(())
                };
                add(pod.clone(), VolumeRole::Data, self.data.0)?;
                if let Some((bytes, _)) = &self.wal {
                    add(format!("{pod}-wal"), VolumeRole::Wal, *bytes)?;
                }
                for (name, bytes, _) in &self.tablespaces {
                    let role = VolumeRole::Tablespace(name.clone());
                    add(role.pvc_name(&pod), role, *bytes)?;
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
            "spec": spec,
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
            create_pod(&pods, &self.cluster, instance, role).await?;
            for v in &instance.volumes {
                simulator.register(&v.pvc, v.volume.clone());
                create_pvc(&pvcs, &self.cluster, &instance.pod, v, "ready").await?;
            }
        }
        let operator_on = self.operator.unwrap_or(self.postgres);
        let operator = if operator_on {
            let mut config = self.operator_config.clone();
            if config.cluster_crd.is_none() {
                config.cluster_crd = self.cluster_crd.clone();
            }
            let operator = CnpgOperator::start(client.clone(), ns, &self.cluster, config).await?;
            // CNPG's primary keeps an HA slot per instance of status.instanceNames.
            if let Some(pg) = &pg {
                pg.follow_instance_names(operator.instance_names());
            }
            Some(operator)
        } else {
            None
        };
        let scenario = Scenario {
            pods: Mutex::new(BTreeMap::new()),
            operator,
            join: self.join.clone(),
            monitor_password: password,
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

fn parse_quantity(text: &str) -> Result<u64> {
    Ok(k8s_quantity::Quantity::parse(text.trim())?.to_bytes()?)
}

/// The HA slot configuration a Cluster spec asks for (CNPG's defaults for
/// what is absent), `None` when `highAvailability.enabled` is false.
fn ha_slots_of(spec: &Value) -> Option<HaSlots> {
    let slots = &spec["replicationSlots"];
    if slots["highAvailability"]["enabled"] == false {
        return None;
    }
    Some(HaSlots {
        slot_prefix: slots["highAvailability"]["slotPrefix"]
            .as_str()
            .unwrap_or(DEFAULT_SLOT_PREFIX)
            .to_string(),
        update_interval: Duration::from_secs(slots["updateInterval"].as_u64().unwrap_or(30).max(1)),
        // CNPG's default: on.
        synchronize_user_slots: slots["synchronizeReplicas"]["enabled"] != false,
    })
}

/// The volume sizes CNPG gives a new instance: the Cluster's current
/// `spec.storage.size`, `spec.walStorage.size`, `spec.tablespaces[*].storage.size`.
fn sizes_of(spec: &Value) -> Result<VolumeSizes> {
    let size = |v: &Value, what: &str| -> Result<u64> {
        let text = v["size"]
            .as_str()
            .with_context(|| format!("the Cluster has no {what}.size"))?;
        parse_quantity(text).with_context(|| format!("{what}.size {text:?}"))
    };
    let wal = if spec["walStorage"].is_object() {
        Some(size(&spec["walStorage"], "spec.walStorage")?)
    } else {
        None
    };
    let mut tablespaces = Vec::new();
    for t in spec["tablespaces"].as_array().into_iter().flatten() {
        let name = t["name"]
            .as_str()
            .context("a tablespace of the Cluster has no name")?;
        tablespaces.push((
            name.to_string(),
            size(&t["storage"], &format!("spec.tablespaces[{name}].storage"))?,
        ));
    }
    Ok(VolumeSizes {
        data: size(&spec["storage"], "spec.storage")?,
        wal,
        tablespaces,
    })
}

/// The number after the last `-` of an instance name (CNPG's node serial).
fn serial_of(pod: &str) -> u64 {
    pod.rsplit('-')
        .next()
        .and_then(|s| s.parse().ok())
        .unwrap_or(0)
}

/// An instance pod as CNPG creates it, Running with its IP.
async fn create_pod(
    pods: &Api<Pod>,
    cluster: &str,
    instance: &ScenarioInstance,
    role: &str,
) -> Result<()> {
    let ns = pods_namespace(pods);
    let pod: Pod = serde_json::from_value(json!({
        "metadata": {"name": instance.pod, "namespace": ns,
            "labels": {"cnpg.io/cluster": cluster, "cnpg.io/instanceName": instance.pod,
                "cnpg.io/podRole": "instance", "cnpg.io/instanceRole": role, "role": role},
            "annotations": {"cnpg.io/nodeSerial": serial_of(&instance.pod).to_string()}},
        "spec": {"containers": [{"name": "postgres", "image": "ghcr.io/cloudnative-pg/postgresql:17"}]},
    }))?;
    pods.create(&PostParams::default(), &pod)
        .await
        .with_context(|| format!("creating pod {}", instance.pod))?;
    let status = json!({"status": {"phase": "Running", "podIP": instance.ip.to_string(),
        "podIPs": [{"ip": instance.ip.to_string()}],
        "conditions": [{"type": "Ready", "status": "True"}]}});
    pods.patch_status(
        &instance.pod,
        &PatchParams::default(),
        &Patch::Merge(&status),
    )
    .await
    .with_context(|| format!("setting the IP of pod {}", instance.pod))?;
    Ok(())
}

fn pods_namespace(pods: &Api<Pod>) -> String {
    pods.namespace().unwrap_or("default").to_string()
}

/// A PVC as CNPG creates it: its labels, `cnpg.io/nodeSerial`, and
/// `cnpg.io/pvcStatus` (`initializing` until the instance joined, then `ready`).
async fn create_pvc(
    pvcs: &Api<PersistentVolumeClaim>,
    cluster: &str,
    pod: &str,
    v: &ScenarioVolume,
    pvc_status: &str,
) -> Result<()> {
    let mut labels = json!({"cnpg.io/cluster": cluster, "cnpg.io/instanceName": pod,
        "cnpg.io/pvcRole": v.role.label()});
    if let VolumeRole::Tablespace(name) = &v.role {
        labels["cnpg.io/tablespaceName"] = json!(name);
    }
    let claim: PersistentVolumeClaim = serde_json::from_value(json!({
        "metadata": {"name": v.pvc, "namespace": pvcs.namespace().unwrap_or("default"), "labels": labels,
            "annotations": {"cnpg.io/nodeSerial": serial_of(pod).to_string(), "cnpg.io/pvcStatus": pvc_status}},
        "spec": {"accessModes": ["ReadWriteOnce"], "storageClassName": STORAGE_CLASS,
            "resources": {"requests": {"storage": quantity(v.volume.capacity_bytes())}}},
    }))?;
    pvcs.create(&PostParams::default(), &claim)
        .await
        .with_context(|| format!("creating PVC {}", v.pvc))?;
    Ok(())
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
    /// Declared first: manager pods stop before anything they talk to.
    pods: Mutex<BTreeMap<String, Arc<ManagerPod>>>,
    /// The CloudNativePG stand-in, when on.
    pub operator: Option<CnpgOperator>,
    join: JoinOptions,
    monitor_password: String,
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
            operator: None,
            operator_config: OperatorConfig::default(),
            ha_slots: true,
            slot_update_interval: Duration::from_secs(30),
            join: JoinOptions::default(),
            cluster_crd: None,
            filesystem: FilesystemKind::Ext4,
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

    /// Reports instance `pod`'s `postgres` container in the Pod's status as
    /// the kubelet does: `Some(code)` terminated with that exit code and not
    /// ready (what CloudNativePG's operator reads its instance manager's
    /// verdicts from), `None` running and ready again.
    pub async fn set_postgres_container(&self, pod: &str, exited: Option<i32>) -> Result<()> {
        let now = jiff::Timestamp::now()
            .strftime("%Y-%m-%dT%H:%M:%SZ")
            .to_string();
        let state = match exited {
            Some(code) => json!({"terminated": {"exitCode": code, "finishedAt": now,
                "reason": "Error"}}),
            None => json!({"running": {"startedAt": now}}),
        };
        let patch = json!({"status": {"containerStatuses": [{
            "name": "postgres", "image": "ghcr.io/cloudnative-pg/postgresql:17",
            "imageID": "", "ready": exited.is_none(), "restartCount": 0, "state": state,
        }]}});
        Api::<Pod>::namespaced(self.client.clone(), &self.namespace)
            .patch_status(pod, &PatchParams::default(), &Patch::Merge(&patch))
            .await
            .with_context(|| format!("reporting the postgres container of pod {pod}"))?;
        Ok(())
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
        let server = self.pg.as_ref().and_then(|pg| pg.instance(&instance.pod));
        match (&options.postgres_auth, server) {
            (PostgresAuth::Peer { socket_dir }, Some(i)) => {
                let dir = socket_dir.clone().unwrap_or_else(|| i.server.socket_dir());
                cmd.env("PGHOST", dir)
                    .env("PGPORT", i.server.port().to_string())
                    .env("PGUSER", crate::postgres::METRICS_EXPORTER_ROLE)
                    .env("PGDATABASE", "postgres")
                    .env_remove("PGPASSWORD");
            }
            _ => {
                // Without PostgreSQL, point at a closed port: WAL health is unavailable.
                let dsn = instance.monitor_dsn.clone().unwrap_or_else(|| {
                    format!(
                        "host={} port=1 user=nobody dbname=postgres connect_timeout=1",
                        instance.ip
                    )
                });
                cmd.arg("--pg-dsn").arg(dsn);
            }
        }
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

    // ---- managers as pods ------------------------------------------------

    /// Starts `cnpg-autoresize run` for instance `n` as the chart's sidecar
    /// container of its pod: the kubelet stand-in probes it with the chart's
    /// probe settings (`tests/packaging/sidecar-container.yaml`) and
    /// restarts it when it exits or fails its liveness probe. Logs go to
    /// `<scenario dir>/<pod>.log`, as with [`Scenario::spawn_manager`].
    pub fn start_manager_pod(
        &self,
        binary: &Path,
        n: usize,
        port: u16,
        options: &ManagerOptions,
    ) -> Result<Arc<ManagerPod>> {
        self.start_manager_pod_with(binary, n, port, options, &PodOptions::default())
    }

    /// [`Scenario::start_manager_pod`] with another container spec or kubelet timing.
    pub fn start_manager_pod_with(
        &self,
        binary: &Path,
        n: usize,
        port: u16,
        options: &ManagerOptions,
        pod_options: &PodOptions,
    ) -> Result<Arc<ManagerPod>> {
        let instance = self
            .instances
            .get(n)
            .with_context(|| format!("no instance {n}"))?;
        let pod = instance.pod.clone();
        if lock(&self.pods).contains_key(&pod) {
            bail!("a manager pod for {pod} runs already");
        }
        let spec = match &pod_options.container {
            Some(spec) => spec.clone(),
            None => ContainerSpec::chart_sidecar()?,
        };
        // Every declared port is where the manager listens: on one machine
        // the pods cannot all have their own port 9188.
        let port_map = spec
            .ports
            .iter()
            .map(|p| (p.container_port, port))
            .collect();
        let mut command =
            ContainerCommand::from_command(&self.manager_command(binary, n, port, options)?);
        if let PostgresAuth::Peer { .. } = options.postgres_auth {
            // As PostgreSQL's OS user, as the chart's runAsUser: 26 is.
            if let Some(i) = self.pg.as_ref().and_then(|pg| pg.instance(&pod)) {
                let run_as = i.server.run_as();
                if run_as.switch {
                    let kubeconfig = self.dir.path().join(format!("{pod}.kubeconfig"));
                    run_as.chown(&kubeconfig)?;
                    command.user = Some((run_as.uid.as_raw(), run_as.gid.as_raw()));
                }
            }
        }
        let launch = ContainerLaunch {
            name: pod.clone(),
            command,
            spec,
            ip: instance.ip.into(),
            port_map,
            log: self.dir.path().join(format!("{pod}.log")),
        };
        let container = Container::start(launch, pod_options.kubelet.clone())?;
        let pods: Api<Pod> = Api::namespaced(self.client.clone(), &self.namespace);
        let mirror = tokio::spawn(mirror_readiness(
            pods,
            pod.clone(),
            container.readiness_watch(),
        ))
        .abort_handle();
        let manager = Arc::new(ManagerPod {
            pod: pod.clone(),
            addr: SocketAddr::from((instance.ip, port)),
            container,
            mirror,
            relaunch: Relaunch {
                binary: binary.to_path_buf(),
                port,
                options: options.clone(),
                pod_options: pod_options.clone(),
            },
        });
        lock(&self.pods).insert(pod, manager.clone());
        Ok(manager)
    }

    /// The manager pod of instance `pod`, if one runs.
    pub fn manager_pod(&self, pod: &str) -> Option<Arc<ManagerPod>> {
        lock(&self.pods).get(pod).cloned()
    }

    /// Every manager pod, by instance name.
    pub fn manager_pods(&self) -> Vec<Arc<ManagerPod>> {
        lock(&self.pods).values().cloned().collect()
    }

    /// Deletes instance `pod`'s manager pod: SIGTERM, SIGKILL after the
    /// grace period, no restart. Returns how it was launched, if it ran.
    pub async fn stop_manager_pod(&self, pod: &str) -> Result<Option<Relaunch>> {
        let Some(manager) = lock(&self.pods).remove(pod) else {
            return Ok(None);
        };
        manager.mirror.abort();
        manager.container.stop().await?;
        // What is left of the pod (PostgreSQL) is ready again.
        let pods: Api<Pod> = Api::namespaced(self.client.clone(), &self.namespace);
        if let Err(e) = set_pod_ready(&pods, pod, true).await {
            tracing::debug!(pod, error = %format!("{e:#}"), "pod readiness not restored");
        }
        Ok(Some(manager.relaunch.clone()))
    }

    /// Kills instance `pod`'s manager pod without a grace period, as when
    /// its node dies: SIGKILL, no restart, no chance to release anything.
    pub async fn kill_manager_pod(&self, pod: &str) -> Result<Option<Relaunch>> {
        let Some(manager) = lock(&self.pods).remove(pod) else {
            return Ok(None);
        };
        manager.mirror.abort();
        manager.container.kill_for_good().await?;
        Ok(Some(manager.relaunch.clone()))
    }

    /// Starts instance `pod`'s manager pod again, as it was launched.
    pub fn relaunch_manager_pod(&self, n: usize, relaunch: &Relaunch) -> Result<Arc<ManagerPod>> {
        self.start_manager_pod_with(
            &relaunch.binary,
            n,
            relaunch.port,
            &relaunch.options,
            &relaunch.pod_options,
        )
    }

    // ---- replicas, as CloudNativePG rebuilds and adds them -------------------

    /// Rebuilds standby `pod` as CNPG does when its storage is recreated:
    /// its manager pod (if any) and PostgreSQL stop, its Pod and PVCs are
    /// deleted, new PVCs of the same names are created from the Cluster's
    /// *current* `spec.storage.size` (and `walStorage`/tablespace sizes)
    /// with CNPG's labels, backed by new volumes registered with the
    /// simulator; once Bound, the base backup runs (retried every
    /// `JoinOptions::retry_interval` while it fails, e.g. for lack of
    /// space — CNPG retries its join Job); then PostgreSQL starts as a
    /// streaming standby, the Pod is recreated, and only then its manager
    /// pod starts again. [`Scenario::begin_rebuild_replica`] and
    /// [`Scenario::finish_replica`] split this for tests that act meanwhile.
    pub async fn rebuild_replica(&mut self, pod: &str) -> Result<ReplicaReport> {
        let pending = self.begin_rebuild_replica(pod).await?;
        self.finish_replica(pending).await
    }

    /// Adds a standby as CNPG does on a scale-up: `spec.instances` + 1 (the
    /// user's part), then instance `<cluster>-<latestGeneratedNode + 1>`
    /// with PVCs from the current `spec.storage.size`, joined like
    /// [`Scenario::rebuild_replica`]. No manager pod is started for it.
    pub async fn add_replica(&mut self) -> Result<ReplicaReport> {
        let pending = self.begin_add_replica().await?;
        self.finish_replica(pending).await
    }

    /// The first half of [`Scenario::rebuild_replica`]: returns once the
    /// new PVCs are Bound and the base backup attempts have begun.
    pub async fn begin_rebuild_replica(&mut self, pod: &str) -> Result<PendingReplica> {
        let index = self
            .instances
            .iter()
            .position(|i| i.pod == pod)
            .with_context(|| format!("no instance {pod}"))?;
        let pg = self
            .pg
            .as_ref()
            .context("rebuilding a replica needs a scenario with PostgreSQL")?;
        if pg.primary().name == pod {
            bail!("{pod} is the primary; only standbys are rebuilt");
        }
        // The pod goes away with both its containers.
        let relaunch = self.stop_manager_pod(pod).await?;
        let pg = self.pg.as_mut().context("no PostgreSQL")?;
        let old = pg.remove_instance(pod).await?;
        let pods: Api<Pod> = Api::namespaced(self.client.clone(), &self.namespace);
        delete_and_wait(&pods, pod).await?;
        for v in &old.volumes {
            delete_and_wait(&self.pvcs(), &v.pvc_name).await?;
        }
        self.instances.remove(index);
        drop(old);
        self.begin_join(pod.to_string(), index, relaunch).await
    }

    /// The first half of [`Scenario::add_replica`].
    pub async fn begin_add_replica(&mut self) -> Result<PendingReplica> {
        if self.pg.is_none() {
            bail!("adding a replica needs a scenario with PostgreSQL");
        }
        let object = self
            .clusters()
            .get(&self.cluster)
            .await
            .context("reading the Cluster")?;
        let latest = object.data["status"]["latestGeneratedNode"]
            .as_u64()
            .unwrap_or(0)
            .max(
                self.instances
                    .iter()
                    .map(|i| serial_of(&i.pod))
                    .max()
                    .unwrap_or(0),
            );
        let pod = format!("{}-{}", self.cluster, latest + 1);
        let instances = object.data["spec"]["instances"].as_u64().unwrap_or(1);
        let patch = json!({"spec": {"instances": instances + 1}});
        self.clusters()
            .patch(
                &self.cluster,
                &PatchParams::default(),
                &Patch::Merge(&patch),
            )
            .await
            .context("scaling the Cluster up")?;
        let index = self.instances.len();
        self.begin_join(pod, index, None).await
    }

    async fn begin_join(
        &mut self,
        pod: String,
        index: usize,
        relaunch: Option<Relaunch>,
    ) -> Result<PendingReplica> {
        let object = self
            .clusters()
            .get(&self.cluster)
            .await
            .context("reading the Cluster")?;
        let sizes = sizes_of(&object.data["spec"])?;
        let pg = self.pg.as_ref().context("no PostgreSQL")?;
        let volumes = pg.create_volumes(&pod, &sizes)?;
        let pvcs = self.pvcs();
        for v in &volumes {
            let sv = ScenarioVolume {
                pvc: v.pvc_name.clone(),
                role: v.role.clone(),
                volume: v.volume.clone(),
            };
            self.simulator.register(&sv.pvc, sv.volume.clone());
            create_pvc(&pvcs, &self.cluster, &pod, &sv, "initializing").await?;
        }
        let names: Vec<String> = volumes.iter().map(|v| v.pvc_name.clone()).collect();
        self.wait_bound(&names, Duration::from_secs(30)).await?;
        let join = pg.begin_join(&pod, volumes, self.join.clone()).await?;
        Ok(PendingReplica {
            pod,
            index,
            relaunch,
            join,
        })
    }

    /// Waits for a rebuilt or added replica's base backup and start, marks
    /// its PVCs ready, recreates its Pod and, for a rebuild, starts its
    /// manager pod again.
    pub async fn finish_replica(&mut self, pending: PendingReplica) -> Result<ReplicaReport> {
        let PendingReplica {
            pod,
            index,
            relaunch,
            join,
        } = pending;
        let progress = join.progress();
        let pg = self.pg.as_mut().context("no PostgreSQL")?;
        let instance = pg.finish_join(join).await?;
        let scenario_instance = ScenarioInstance {
            pod: pod.clone(),
            ip: instance.server.ip(),
            volumes: instance
                .volumes
                .iter()
                .map(|v: &InstanceVolume| ScenarioVolume {
                    pvc: v.pvc_name.clone(),
                    role: v.role.clone(),
                    volume: v.volume.clone(),
                })
                .collect(),
            monitor_dsn: Some(
                instance
                    .server
                    .dsn_for(MONITOR_ROLE, &self.monitor_password),
            ),
        };
        let ready = json!({"metadata": {"annotations": {"cnpg.io/pvcStatus": "ready"}}});
        for v in &scenario_instance.volumes {
            self.pvcs()
                .patch(&v.pvc, &PatchParams::default(), &Patch::Merge(&ready))
                .await
                .with_context(|| format!("marking PVC {} ready", v.pvc))?;
        }
        let pods: Api<Pod> = Api::namespaced(self.client.clone(), &self.namespace);
        create_pod(&pods, &self.cluster, &scenario_instance, "replica").await?;
        let index = index.min(self.instances.len());
        self.instances.insert(index, scenario_instance);
        let mut manager = None;
        if let Some(r) = relaunch {
            manager = Some(self.start_manager_pod_with(
                &r.binary,
                index,
                r.port,
                &r.options,
                &r.pod_options,
            )?);
        }
        Ok(ReplicaReport {
            pod,
            attempts: progress.attempts(),
            manager,
        })
    }

    async fn wait_bound(&self, names: &[String], timeout: Duration) -> Result<()> {
        let deadline = Instant::now() + timeout;
        for name in names {
            loop {
                let pvc = self.pvcs().get_opt(name).await?;
                let phase = pvc
                    .as_ref()
                    .and_then(|p| p.status.as_ref())
                    .and_then(|s| s.phase.as_deref());
                if phase == Some("Bound") {
                    break;
                }
                if Instant::now() > deadline {
                    bail!("PVC {name} not Bound after {timeout:?}");
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
        Ok(())
    }
}

/// A pod is Ready when all its containers are: PostgreSQL's always is here,
/// so the manager container's readiness decides — as a crash-looping
/// sidecar takes a real instance out of its Services.
async fn mirror_readiness(
    pods: Api<Pod>,
    pod: String,
    mut ready: tokio::sync::watch::Receiver<bool>,
) {
    loop {
        let want = *ready.borrow_and_update();
        // Retry through API faults until done or superseded.
        while let Err(e) = set_pod_ready(&pods, &pod, want).await {
            tracing::debug!(pod, error = %format!("{e:#}"), "mirroring readiness failed; retrying");
            tokio::select! {
                _ = tokio::time::sleep(Duration::from_millis(200)) => {}
                changed = ready.changed() => if changed.is_err() { return } else { break },
            }
        }
        if ready.changed().await.is_err() {
            return;
        }
    }
}

async fn set_pod_ready(pods: &Api<Pod>, pod: &str, ready: bool) -> Result<()> {
    let status = if ready { "True" } else { "False" };
    let patch = json!({"status": {"conditions": [
        {"type": "Ready", "status": status},
        {"type": "ContainersReady", "status": status},
    ]}});
    pods.patch_status(pod, &PatchParams::default(), &Patch::Merge(&patch))
        .await
        .with_context(|| format!("setting pod {pod} Ready={status}"))?;
    Ok(())
}

/// Deletes object `name` and waits until it is gone.
async fn delete_and_wait<K>(api: &Api<K>, name: &str) -> Result<()>
where
    K: kube::Resource + Clone + serde::de::DeserializeOwned + std::fmt::Debug,
{
    match api.delete(name, &DeleteParams::default()).await {
        Ok(_) => {}
        Err(kube::Error::Api(s)) if s.code == 404 => return Ok(()),
        Err(e) => return Err(e).with_context(|| format!("deleting {name}")),
    }
    let deadline = Instant::now() + Duration::from_secs(30);
    while api.get_opt(name).await?.is_some() {
        if Instant::now() > deadline {
            bail!("{name} still exists 30 s after its deletion");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    Ok(())
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// A replica being rebuilt or added; see [`Scenario::begin_rebuild_replica`].
#[derive(Debug)]
pub struct PendingReplica {
    pod: String,
    index: usize,
    relaunch: Option<Relaunch>,
    join: PendingJoin,
}

impl PendingReplica {
    /// The instance's name.
    pub fn pod(&self) -> &str {
        &self.pod
    }

    /// Its base backup attempts so far (keeps updating).
    pub fn progress(&self) -> JoinProgress {
        self.join.progress()
    }

    /// Its new PVC names.
    pub fn pvcs(&self) -> Vec<String> {
        self.join
            .volumes()
            .iter()
            .map(|v| v.pvc_name.clone())
            .collect()
    }
}

/// How a rebuilt or added replica came up.
#[derive(Debug)]
pub struct ReplicaReport {
    /// The instance's name.
    pub pod: String,
    /// Every base backup attempt, the last one successful.
    pub attempts: Vec<JoinAttempt>,
    /// Its manager pod, restarted after a rebuild if it had one.
    pub manager: Option<Arc<ManagerPod>>,
}

/// How a manager pod is run by the kubelet stand-in.
#[derive(Debug, Clone, Default)]
pub struct PodOptions {
    /// The container spec; `None`: the chart's sidecar ([`ContainerSpec::chart_sidecar`]).
    pub container: Option<ContainerSpec>,
    /// Kubelet timing (crash-loop back-off, termination grace).
    pub kubelet: KubeletConfig,
}

/// What it takes to start a manager pod again.
#[derive(Debug, Clone)]
pub struct Relaunch {
    /// The manager binary.
    pub binary: PathBuf,
    /// Its HTTP port.
    pub port: u16,
    /// Its options.
    pub options: ManagerOptions,
    /// Its pod options.
    pub pod_options: PodOptions,
}

/// `cnpg-autoresize run` as the sidecar container of an instance pod; the
/// [`Container`] methods (restarts, readiness, pid, signals) apply to it.
#[derive(Debug)]
pub struct ManagerPod {
    /// Instance (pod) name.
    pub pod: String,
    /// Where its HTTP endpoint listens.
    pub addr: SocketAddr,
    container: Container,
    /// Mirrors the container's readiness into the Pod's conditions.
    mirror: tokio::task::AbortHandle,
    relaunch: Relaunch,
}

impl Drop for ManagerPod {
    fn drop(&mut self) {
        self.mirror.abort();
    }
}

impl ManagerPod {
    /// `http://<addr><path>`.
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    /// The container run by the kubelet stand-in.
    pub fn container(&self) -> &Container {
        &self.container
    }

    /// How it was launched.
    pub fn relaunch(&self) -> &Relaunch {
        &self.relaunch
    }
}

impl std::ops::Deref for ManagerPod {
    type Target = Container;

    fn deref(&self) -> &Container {
        &self.container
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
    /// How the manager reaches its instance's PostgreSQL.
    pub postgres_auth: PostgresAuth,
}

/// How a manager reaches its instance's PostgreSQL (the chart's
/// `sidecar.postgres.auth`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum PostgresAuth {
    /// TCP to the pod IP as a `pg_monitor` role with a password.
    #[default]
    Password,
    /// The chart's default: CloudNativePG's socket as `cnpg_metrics_exporter`
    /// with peer authentication, set through `PGHOST`, `PGUSER` and
    /// `PGDATABASE` as the chart sets them, the manager running as
    /// PostgreSQL's OS user (UID 26 in the chart). `socket_dir` replaces the
    /// server's socket directory (e.g. a read-only bind mount of it).
    Peer { socket_dir: Option<PathBuf> },
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
            postgres_auth: PostgresAuth::default(),
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
