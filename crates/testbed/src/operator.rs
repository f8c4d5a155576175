//! A CloudNativePG stand-in: what the operator does to the `Cluster` while
//! cnpg-autoresize runs beside it (docs/design.md#the-test-bed).
//!
//! Nobody but CNPG and us writes a Cluster, and CNPG writes its status all
//! the time. It does so from Go types: it GETs the Cluster into its
//! `apiv1.Cluster` struct, sets its own fields and sends the whole status
//! back with `Status().Update()` — a `PUT .../clusters/<name>/status`
//! carrying the resourceVersion it read; a 409 makes controller-runtime
//! requeue, i.e. read again and retry. Two consequences that production
//! has and a test bed without this stand-in hides:
//!
//! - every status field the Go types do not know is dropped on each write
//!   (here: everything outside the status schema of the fork's CRD,
//!   projected exactly as the API server prunes);
//! - zero times are written as `null`: an `autoResizeEvents[]` entry
//!   without `timestamp` goes back with `"timestamp": null` (Go's zero
//!   `metav1.Time` marshals so).
//!
//! The stand-in writes its own fields the way CNPG fills them (phase,
//! instances, readyInstances, instanceNames, instancesStatus, currentPrimary,
//! targetPrimary, the `Ready` condition, latestGeneratedNode, services,
//! PVC lists), from the cluster's instance pods and PVCs. It never writes
//! `spec`, and counts its writes and conflicts for tests.
//!
//! # The fork's own resizer
//!
//! The CloudNativePG fork's operator resizes PVCs itself, on the same
//! `resize` blocks ([`OperatorConfig::fork_resizer`], off by default): on
//! every reconcile, for each PVC whose volume's `status.diskStatus` figures
//! cross `usageThreshold` (or `minAvailable`), it computes the next size
//! from the block's `expansion` and sends an unconditional merge patch of
//! `spec.resources.requests.storage` — no `test`, no check that an earlier
//! resize is still in flight, no record. Its field manager is `manager`
//! (the operator binary's name, which controller-runtime's User-Agent
//! gives the API server).

use anyhow::{bail, Context, Result};
use k8s_openapi::api::core::v1::{PersistentVolumeClaim, Pod};
use kube::api::{Api, DynamicObject, ListParams, Patch, PatchParams, PostParams};
use serde_json::{json, Map, Value};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

/// CNPG's phase of a cluster whose instances are all ready.
pub const PHASE_HEALTHY: &str = "Cluster in healthy state";
/// CNPG's phase while an instance is missing.
pub const PHASE_CREATING_REPLICA: &str = "Creating a new replica";
/// CNPG's phase while instances exist but are not all ready.
pub const PHASE_WAITING: &str = "Waiting for the instances to become active";

/// CNPG's phase while an instance's PostgreSQL cannot start for lack of WAL
/// space (its instance manager exited with code 4).
pub const PHASE_DISK_FULL: &str = "Not enough disk space";
/// CNPG's reason for [`PHASE_DISK_FULL`], word for word.
pub const PHASE_DISK_FULL_REASON: &str = "Insufficient disk space detected in one or more pods is \
     preventing PostgreSQL from running.Please verify your storage settings. Further information \
     inside .status.instancesReportedState";

/// The status schema of a Cluster CRD: what a Go operator built from the
/// matching types keeps of a status.
#[derive(Debug, Clone, PartialEq)]
pub struct StatusSchema {
    schema: Value,
}

impl StatusSchema {
    /// From CRD YAML (or JSON) text: the `openAPIV3Schema.properties.status`
    /// of version `v1` (else the storage version).
    pub fn from_crd_text(text: &str) -> Result<StatusSchema> {
        let crd: Value = serde_norway::from_str(text).context("parsing the Cluster CRD as YAML")?;
        let versions = crd["spec"]["versions"]
            .as_array()
            .context("the CRD has no spec.versions")?;
        let version = versions
            .iter()
            .find(|v| v["name"] == "v1")
            .or_else(|| versions.iter().find(|v| v["storage"] == true))
            .context("the CRD has no version v1 and no storage version")?;
        let schema = version["schema"]["openAPIV3Schema"]["properties"]["status"].clone();
        if !schema.is_object() {
            bail!("the CRD's v1 schema has no properties.status");
        }
        Ok(StatusSchema { schema })
    }

    /// The fork's CRD where [`kube_sandbox::cluster_crd`] finds it (`$CNPG_CLUSTER_CRD`,
    /// else `<workspace>/../shared/cnpg/…`), else the project's generated Cluster CRD.
    pub fn fork() -> Result<StatusSchema> {
        let crd = kube_sandbox::cluster_crd()?;
        StatusSchema::from_crd_text(&crd.text).with_context(|| format!("in {}", crd.source))
    }

    /// `status` as a Go round trip leaves it: fields outside the schema
    /// dropped (structural pruning), and `timestamp: null` on every
    /// `autoResizeEvents[]` entry without a timestamp.
    pub fn project(&self, status: &Value) -> Value {
        let mut out = prune(status, &self.schema);
        null_missing_event_timestamps(&mut out);
        out
    }
}

/// Structural pruning as the API server does it: object fields not in
/// `properties` (or matched by `additionalProperties`) are dropped unless
/// the schema says `x-kubernetes-preserve-unknown-fields`.
fn prune(value: &Value, schema: &Value) -> Value {
    let preserve = schema["x-kubernetes-preserve-unknown-fields"] == true;
    match value {
        Value::Object(map) => {
            let props = schema["properties"].as_object();
            let additional = &schema["additionalProperties"];
            let mut out = Map::new();
            for (k, v) in map {
                if let Some(sub) = props.and_then(|p| p.get(k)) {
                    out.insert(k.clone(), prune(v, sub));
                } else if additional.is_object() {
                    out.insert(k.clone(), prune(v, additional));
                } else if preserve || *additional == true {
                    out.insert(k.clone(), v.clone());
                }
            }
            Value::Object(out)
        }
        Value::Array(items) if schema["items"].is_object() => {
            Value::Array(items.iter().map(|i| prune(i, &schema["items"])).collect())
        }
        other => other.clone(),
    }
}

/// Go's zero `metav1.Time` marshals as `null` (no `omitempty` helps a struct).
fn null_missing_event_timestamps(status: &mut Value) {
    if let Some(events) = status
        .get_mut("autoResizeEvents")
        .and_then(Value::as_array_mut)
    {
        for event in events.iter_mut() {
            if let Some(map) = event.as_object_mut() {
                map.entry("timestamp").or_insert(Value::Null);
            }
        }
    }
}

/// Settings of the stand-in.
#[derive(Debug, Clone)]
pub struct OperatorConfig {
    /// How often the status is written (default 2 s).
    pub status_interval: Duration,
    /// Time between reading the Cluster and writing its status, standing in
    /// for the rest of a reconcile (default none). Longer → more conflicts.
    pub reconcile_delay: Duration,
    /// How many times one pass re-reads and retries after a 409 (default 5).
    pub conflict_retries: u32,
    /// The Cluster CRD whose status schema writes are projected onto; `None`
    /// uses the fork's CRD, or the project's generated one where the fork's
    /// is not available ([`StatusSchema::fork`]).
    pub cluster_crd: Option<String>,
    /// Resize PVCs as the fork's operator does, on every status pass (see
    /// the module documentation). Default off.
    pub fork_resizer: bool,
}

/// The field manager of the fork's operator (`manager`, its binary).
pub const FORK_FIELD_MANAGER: &str = "manager";

impl Default for OperatorConfig {
    fn default() -> Self {
        OperatorConfig {
            status_interval: Duration::from_secs(2),
            reconcile_delay: Duration::ZERO,
            conflict_retries: 5,
            cluster_crd: None,
            fork_resizer: false,
        }
    }
}

/// Counters of the stand-in.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct OperatorStats {
    /// Status writes the API server accepted.
    pub writes: u64,
    /// Writes refused with 409 Conflict (each followed by a re-read).
    pub conflicts: u64,
    /// Passes that failed otherwise (API down, Cluster missing, …).
    pub errors: u64,
    /// The latest such error.
    pub last_error: Option<String>,
    /// PVC requests the fork's resizer raised (accepted patches).
    pub fork_resizes: u64,
}

#[derive(Debug)]
struct Shared {
    clusters: Api<DynamicObject>,
    pods: Api<Pod>,
    pvcs: Api<PersistentVolumeClaim>,
    cluster: String,
    config: OperatorConfig,
    schema: StatusSchema,
    paused: AtomicBool,
    writes: AtomicU64,
    conflicts: AtomicU64,
    errors: AtomicU64,
    last_error: Mutex<Option<String>>,
    last_written: Mutex<Option<Value>>,
    fork_resizer: AtomicBool,
    fork_resizes: AtomicU64,
    /// One pass at a time (timer and [`CnpgOperator::reconcile_now`]).
    pass: tokio::sync::Mutex<()>,
}

/// The running stand-in; dropping it stops it.
#[derive(Debug)]
pub struct CnpgOperator {
    shared: Arc<Shared>,
    task: tokio::task::AbortHandle,
}

impl CnpgOperator {
    /// Start writing the status of Cluster `cluster` in `namespace` every
    /// `config.status_interval`, through `client` (an identity allowed to
    /// read pods and PVCs and update `clusters/status`).
    pub async fn start(
        client: kube::Client,
        namespace: &str,
        cluster: &str,
        config: OperatorConfig,
    ) -> Result<CnpgOperator> {
        let schema = match &config.cluster_crd {
            Some(text) => StatusSchema::from_crd_text(text)?,
            None => StatusSchema::fork()?,
        };
        let fork_resizer = config.fork_resizer;
        let shared = Arc::new(Shared {
            clusters: crate::scenario::cluster_api(&client, namespace),
            pods: Api::namespaced(client.clone(), namespace),
            pvcs: Api::namespaced(client, namespace),
            cluster: cluster.to_string(),
            config,
            schema,
            paused: AtomicBool::new(false),
            writes: AtomicU64::new(0),
            conflicts: AtomicU64::new(0),
            errors: AtomicU64::new(0),
            last_error: Mutex::new(None),
            last_written: Mutex::new(None),
            fork_resizer: AtomicBool::new(fork_resizer),
            fork_resizes: AtomicU64::new(0),
            pass: tokio::sync::Mutex::new(()),
        });
        let task = tokio::spawn(run(shared.clone())).abort_handle();
        Ok(CnpgOperator { shared, task })
    }

    /// Counters so far.
    pub fn stats(&self) -> OperatorStats {
        let s = &self.shared;
        OperatorStats {
            writes: s.writes.load(Ordering::SeqCst),
            conflicts: s.conflicts.load(Ordering::SeqCst),
            errors: s.errors.load(Ordering::SeqCst),
            last_error: lock(&s.last_error).clone(),
            fork_resizes: s.fork_resizes.load(Ordering::SeqCst),
        }
    }

    /// Turn the fork's resizer on or off (see the module documentation).
    pub fn set_fork_resizer(&self, on: bool) {
        self.shared.fork_resizer.store(on, Ordering::SeqCst);
    }

    /// One pass of the fork's resizer now, on or off: the PVCs it raised.
    pub async fn fork_resize_now(&self) -> Result<Vec<String>> {
        self.shared.fork_resize().await
    }

    /// PVC requests the fork's resizer raised so far.
    pub fn fork_resizes(&self) -> u64 {
        self.shared.fork_resizes.load(Ordering::SeqCst)
    }

    /// Status writes accepted so far.
    pub fn writes(&self) -> u64 {
        self.shared.writes.load(Ordering::SeqCst)
    }

    /// 409 Conflicts met so far.
    pub fn conflicts(&self) -> u64 {
        self.shared.conflicts.load(Ordering::SeqCst)
    }

    /// The status of the latest accepted write, as sent.
    pub fn last_written_status(&self) -> Option<Value> {
        lock(&self.shared.last_written).clone()
    }

    /// `status.instanceNames` as last written, for the primary's HA slots
    /// ([`crate::cluster::PgCluster::follow_instance_names`]).
    pub fn instance_names(&self) -> crate::cluster::InstanceNames {
        let shared = self.shared.clone();
        Arc::new(move || {
            lock(&shared.last_written).as_ref().and_then(|status| {
                status["instanceNames"].as_array().map(|names| {
                    names
                        .iter()
                        .filter_map(|n| n.as_str().map(str::to_string))
                        .collect()
                })
            })
        })
    }

    /// Stop (`true`) or resume (`false`) the periodic writes.
    pub fn set_paused(&self, paused: bool) {
        self.shared.paused.store(paused, Ordering::SeqCst);
    }

    /// One pass now (read, set own fields, write; retried on 409), whether
    /// paused or not.
    pub async fn reconcile_now(&self) -> Result<()> {
        self.shared.pass().await
    }

    /// Wait until more than `writes` writes were accepted.
    pub async fn wait_for_write_after(&self, writes: u64, timeout: Duration) -> Result<()> {
        let deadline = Instant::now() + timeout;
        while self.writes() <= writes {
            if Instant::now() > deadline {
                bail!(
                    "the CNPG stand-in wrote no status within {timeout:?} (stats: {:?})",
                    self.stats()
                );
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        Ok(())
    }
}

impl Drop for CnpgOperator {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn run(shared: Arc<Shared>) {
    let mut tick = tokio::time::interval(shared.config.status_interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        if shared.paused.load(Ordering::SeqCst) {
            continue;
        }
        if let Err(e) = shared.pass().await {
            tracing::debug!(cluster = %shared.cluster, error = %format!("{e:#}"), "CNPG stand-in: status write failed");
        }
        if shared.fork_resizer.load(Ordering::SeqCst) {
            if let Err(e) = shared.fork_resize().await {
                tracing::debug!(cluster = %shared.cluster, error = %format!("{e:#}"), "CNPG stand-in: fork resizer failed");
            }
        }
    }
}

impl Shared {
    async fn pass(&self) -> Result<()> {
        let _one = self.pass.lock().await;
        let result = self.pass_locked().await;
        if let Err(e) = &result {
            self.errors.fetch_add(1, Ordering::SeqCst);
            *lock(&self.last_error) = Some(format!("{e:#}"));
        }
        result
    }

    async fn pass_locked(&self) -> Result<()> {
        let mut attempt = 0;
        loop {
            let mut object = self
                .clusters
                .get(&self.cluster)
                .await
                .with_context(|| format!("reading Cluster {}", self.cluster))?;
            let pods = self
                .pods
                .list(&ListParams::default().labels(&format!(
                    "cnpg.io/cluster={},cnpg.io/podRole=instance",
                    self.cluster
                )))
                .await
                .context("listing the instance pods")?
                .items;
            let pvcs = self
                .pvcs
                .list(&ListParams::default().labels(&format!("cnpg.io/cluster={}", self.cluster)))
                .await
                .context("listing the cluster's PVCs")?
                .items;
            if !self.config.reconcile_delay.is_zero() {
                tokio::time::sleep(self.config.reconcile_delay).await;
            }
            let spec_instances = object.data["spec"]["instances"].as_u64().unwrap_or(1);
            let mut status = object.data.get("status").cloned().unwrap_or(json!({}));
            if !status.is_object() {
                status = json!({});
            }
            set_own_fields(&mut status, &self.cluster, spec_instances, &pods, &pvcs);
            let status = self.schema.project(&status);
            object.data["status"] = status.clone();
            // The object as read carries its resourceVersion: a stale one
            // is refused with 409, as for any Go Update.
            match self
                .clusters
                .replace_status(&self.cluster, &PostParams::default(), &object)
                .await
            {
                Ok(_) => {
                    // Before the counter: a waiter that sees the count sees this status.
                    *lock(&self.last_written) = Some(status);
                    self.writes.fetch_add(1, Ordering::SeqCst);
                    return Ok(());
                }
                Err(kube::Error::Api(s)) if s.code == 409 => {
                    self.conflicts.fetch_add(1, Ordering::SeqCst);
                    attempt += 1;
                    if attempt > self.config.conflict_retries {
                        bail!(
                            "status of Cluster {}: still conflicting after {attempt} attempts",
                            self.cluster
                        );
                    }
                    // controller-runtime requeues with a short, growing delay.
                    tokio::time::sleep(Duration::from_millis(5 << attempt.min(6))).await;
                }
                Err(e) => {
                    return Err(e)
                        .with_context(|| format!("writing the status of Cluster {}", self.cluster))
                }
            }
        }
    }
}

impl Shared {
    /// The fork's resizer: every PVC whose volume crosses its trigger in
    /// `status.diskStatus` gets the next size, by unconditional merge patch.
    async fn fork_resize(&self) -> Result<Vec<String>> {
        let object = self
            .clusters
            .get(&self.cluster)
            .await
            .with_context(|| format!("reading Cluster {}", self.cluster))?;
        let spec = &object.data["spec"];
        let disk = &object.data["status"]["diskStatus"]["instances"];
        let pvcs = self
            .pvcs
            .list(&ListParams::default().labels(&format!("cnpg.io/cluster={}", self.cluster)))
            .await
            .context("listing the cluster's PVCs")?
            .items;
        let mut raised = Vec::new();
        for pvc in pvcs {
            let Some(name) = pvc.metadata.name.clone() else {
                continue;
            };
            let labels = pvc.metadata.labels.clone().unwrap_or_default();
            let label = |k: &str| labels.get(k).cloned().unwrap_or_default();
            let instance = &disk[label("cnpg.io/instanceName")];
            let (block, usage) = match label("cnpg.io/pvcRole").as_str() {
                "PG_DATA" => (&spec["storage"], &instance["dataVolume"]),
                "PG_WAL" => (&spec["walStorage"], &instance["walVolume"]),
                "PG_TABLESPACE" => {
                    let t = label("cnpg.io/tablespaceName");
                    let block = spec["tablespaces"]
                        .as_array()
                        .and_then(|ts| ts.iter().find(|b| b["name"] == t.as_str()))
                        .map(|b| &b["storage"])
                        .unwrap_or(&Value::Null);
                    (block, &instance["tablespaces"][t.as_str()])
                }
                _ => continue,
            };
            let resize = &block["resize"];
            if resize["enabled"] != true || !usage.is_object() {
                continue;
            }
            let threshold = resize["triggers"]["usageThreshold"].as_u64().unwrap_or(80);
            let min_available = resize["triggers"]["minAvailable"]
                .as_str()
                .filter(|t| !t.is_empty())
                .map(bytes_of)
                .transpose()?;
            let fired = usage["percentUsed"].as_u64().unwrap_or(0) > threshold
                || min_available.is_some_and(|min| {
                    usage["availableBytes"]
                        .as_u64()
                        .is_some_and(|available| available < min)
                });
            let current = pvc
                .spec
                .as_ref()
                .and_then(|s| s.resources.as_ref())
                .and_then(|r| r.requests.as_ref())
                .and_then(|r| r.get("storage"))
                .map(|q| bytes_of(&q.0))
                .transpose()?;
            let Some(current) = current.filter(|_| fired) else {
                continue;
            };
            let new = fork_next_size(current, &resize["expansion"])?;
            if new <= current {
                continue;
            }
            let patch = json!({"spec": {"resources": {"requests": {"storage": k8s_quantity::format_bytes(new)}}}});
            let params = PatchParams {
                field_manager: Some(FORK_FIELD_MANAGER.to_string()),
                ..PatchParams::default()
            };
            self.pvcs
                .patch(&name, &params, &Patch::Merge(&patch))
                .await
                .with_context(|| format!("raising PVC {name} to {new} bytes"))?;
            self.fork_resizes.fetch_add(1, Ordering::SeqCst);
            raised.push(name);
        }
        Ok(raised)
    }
}

fn bytes_of(text: &str) -> Result<u64> {
    Ok(k8s_quantity::Quantity::parse(text.trim())?.to_bytes()?)
}

/// The fork's next size: the step (a percentage clamped to
/// `[minStep, maxStep]`, or absolute), capped at `limit`.
fn fork_next_size(current: u64, expansion: &Value) -> Result<u64> {
    let quantity = |key: &str, default: u64| -> Result<u64> {
        match expansion[key].as_str().filter(|t| !t.is_empty()) {
            Some(t) => bytes_of(t),
            None => Ok(default),
        }
    };
    let step = expansion["step"].as_str().unwrap_or("20%");
    let increment = match step.strip_suffix('%') {
        Some(pct) => {
            let pct: u64 = pct.trim().parse().context("a percentage step")?;
            let raw = (current as u128 * pct as u128 / 100) as u64;
            raw.max(quantity("minStep", 2 << 30)?)
                .min(quantity("maxStep", 500 << 30)?)
        }
        None => bytes_of(step)?,
    };
    let mut new = current.saturating_add(increment);
    if let Some(limit) = expansion["limit"].as_str().filter(|t| !t.is_empty()) {
        new = new.min(bytes_of(limit)?);
    }
    Ok(new)
}

/// The fields CNPG's operator owns, computed from the instance pods and PVCs.
fn set_own_fields(
    status: &mut Value,
    cluster: &str,
    spec_instances: u64,
    pods: &[Pod],
    pvcs: &[PersistentVolumeClaim],
) {
    let now = jiff::Timestamp::now()
        .strftime("%Y-%m-%dT%H:%M:%SZ")
        .to_string();
    let mut instances: Vec<(u64, String, bool, bool)> = pods
        .iter()
        .filter(|p| p.metadata.deletion_timestamp.is_none())
        .filter_map(|p| {
            let name = p.metadata.name.clone()?;
            let labels = p.metadata.labels.clone().unwrap_or_default();
            let primary = labels.get("cnpg.io/instanceRole").map(String::as_str) == Some("primary")
                || labels.get("role").map(String::as_str) == Some("primary");
            Some((node_serial(p, &name), name, pod_ready(p), primary))
        })
        .collect();
    instances.sort();
    let names: Vec<&str> = instances.iter().map(|i| i.1.as_str()).collect();
    let ready: Vec<&str> = instances
        .iter()
        .filter(|i| i.2)
        .map(|i| i.1.as_str())
        .collect();
    let not_ready: Vec<&str> = instances
        .iter()
        .filter(|i| !i.2)
        .map(|i| i.1.as_str())
        .collect();
    let primary = instances
        .iter()
        .find(|i| i.3)
        .map(|i| i.1.clone())
        .or_else(|| status["currentPrimary"].as_str().map(str::to_string))
        .or_else(|| names.first().map(|n| n.to_string()));
    let latest = instances
        .iter()
        .map(|i| i.0)
        .max()
        .unwrap_or(0)
        .max(status["latestGeneratedNode"].as_u64().unwrap_or(0));
    let disk_full = pods
        .iter()
        .filter(|p| p.metadata.deletion_timestamp.is_none())
        .any(postgres_out_of_wal_space);
    let (phase, reason) = if disk_full {
        (PHASE_DISK_FULL, Some(PHASE_DISK_FULL_REASON))
    } else if (names.len() as u64) < spec_instances {
        (PHASE_CREATING_REPLICA, Some("Creating a new replica"))
    } else if ready.len() < names.len() {
        (PHASE_WAITING, Some("Some instances are not ready"))
    } else {
        (PHASE_HEALTHY, None)
    };
    let healthy_cluster = phase == PHASE_HEALTHY;

    let mut healthy_pvc = Vec::new();
    let mut initializing_pvc = Vec::new();
    for pvc in pvcs {
        let Some(name) = pvc.metadata.name.clone() else {
            continue;
        };
        let state = pvc
            .metadata
            .annotations
            .as_ref()
            .and_then(|a| a.get("cnpg.io/pvcStatus"))
            .map(String::as_str);
        match state {
            Some("initializing") => initializing_pvc.push(name),
            _ => healthy_pvc.push(name),
        }
    }
    healthy_pvc.sort();
    initializing_pvc.sort();

    let Some(map) = status.as_object_mut() else {
        return;
    };
    map.insert("instances".into(), json!(names.len()));
    map.insert("readyInstances".into(), json!(ready.len()));
    map.insert("instanceNames".into(), json!(names));
    let mut by_state = Map::new();
    if !ready.is_empty() {
        by_state.insert("healthy".into(), json!(ready));
    }
    if !not_ready.is_empty() {
        by_state.insert("failed".into(), json!(not_ready));
    }
    map.insert("instancesStatus".into(), Value::Object(by_state));
    if let Some(primary) = &primary {
        if map.get("currentPrimary").and_then(Value::as_str) != Some(primary) {
            map.insert("currentPrimaryTimestamp".into(), json!(now));
            map.insert("targetPrimaryTimestamp".into(), json!(now));
        }
        map.insert("currentPrimary".into(), json!(primary));
        map.insert("targetPrimary".into(), json!(primary));
    }
    map.insert("latestGeneratedNode".into(), json!(latest));
    map.insert("phase".into(), json!(phase));
    match reason {
        Some(r) => map.insert("phaseReason".into(), json!(r)),
        None => map.remove("phaseReason"),
    };
    map.insert("writeService".into(), json!(format!("{cluster}-rw")));
    map.insert("readService".into(), json!(format!("{cluster}-r")));
    map.insert(
        "pvcCount".into(),
        json!(healthy_pvc.len() + initializing_pvc.len()),
    );
    if healthy_pvc.is_empty() {
        map.remove("healthyPVC");
    } else {
        map.insert("healthyPVC".into(), json!(healthy_pvc));
    }
    if initializing_pvc.is_empty() {
        map.remove("initializingPVC");
    } else {
        map.insert("initializingPVC".into(), json!(initializing_pvc));
    }

    // meta.SetStatusCondition: the transition time moves only on a change.
    let (cond_status, cond_reason, cond_message) = if healthy_cluster {
        ("True", "ClusterIsReady", "Cluster is Ready")
    } else {
        ("False", "ClusterIsNotReady", "Cluster Is Not Ready")
    };
    let mut conditions: Vec<Value> = map
        .get("conditions")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    let previous = conditions.iter().position(|c| c["type"] == "Ready");
    let transition = match previous {
        Some(i) if conditions[i]["status"] == cond_status => conditions[i]["lastTransitionTime"]
            .as_str()
            .unwrap_or(&now)
            .to_string(),
        _ => now.clone(),
    };
    let ready_condition = json!({
        "type": "Ready", "status": cond_status, "reason": cond_reason,
        "message": cond_message, "lastTransitionTime": transition,
    });
    match previous {
        Some(i) => conditions[i] = ready_condition,
        None => conditions.push(ready_condition),
    }
    map.insert("conditions".into(), Value::Array(conditions));
}

/// CNPG's node serial: the `cnpg.io/nodeSerial` annotation, else the
/// number after the last `-` of the instance name.
fn node_serial(pod: &Pod, name: &str) -> u64 {
    pod.metadata
        .annotations
        .as_ref()
        .and_then(|a| a.get("cnpg.io/nodeSerial"))
        .and_then(|s| s.parse().ok())
        .or_else(|| name.rsplit('-').next().and_then(|s| s.parse().ok()))
        .unwrap_or(0)
}

/// A pod's `Ready` condition; a running pod without conditions counts as ready.
/// CNPG's `isWALSpaceAvailableOnPod`, negated: the `postgres` container
/// terminated with the instance manager's no-WAL-space code, or is not
/// ready and last terminated so (crash-looping on it).
fn postgres_out_of_wal_space(pod: &Pod) -> bool {
    let Some(statuses) = pod
        .status
        .as_ref()
        .and_then(|s| s.container_statuses.as_ref())
    else {
        return false;
    };
    let Some(pg) = statuses.iter().find(|c| c.name == "postgres") else {
        return false;
    };
    let no_space = |state: Option<&k8s_openapi::api::core::v1::ContainerState>| {
        state
            .and_then(|s| s.terminated.as_ref())
            .is_some_and(|t| t.exit_code == crate::postgres::MISSING_WAL_DISK_SPACE_EXIT_CODE)
    };
    no_space(pg.state.as_ref()) || (!pg.ready && no_space(pg.last_state.as_ref()))
}

fn pod_ready(pod: &Pod) -> bool {
    let Some(status) = &pod.status else {
        return false;
    };
    match &status.conditions {
        Some(conditions) if !conditions.is_empty() => conditions
            .iter()
            .any(|c| c.type_ == "Ready" && c.status == "True"),
        _ => status.phase.as_deref() == Some("Running"),
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn schema() -> StatusSchema {
        StatusSchema::from_crd_text(
            r#"
spec:
  versions:
  - name: v1
    schema:
      openAPIV3Schema:
        properties:
          status:
            type: object
            properties:
              phase: {type: string}
              autoResizeEvents:
                type: array
                items:
                  type: object
                  properties:
                    pvcName: {type: string}
                    timestamp: {type: string, format: date-time}
              diskStatus:
                type: object
                properties:
                  instances:
                    type: object
                    additionalProperties:
                      type: object
                      properties:
                        lastUpdated: {type: string}
              free:
                type: object
                x-kubernetes-preserve-unknown-fields: true
"#,
        )
        .unwrap()
    }

    #[test]
    fn projection_prunes_unknown_fields_and_nulls_missing_timestamps() {
        let status = json!({
            "phase": "x", "bogus": 1,
            "autoResizeEvents": [{"pvcName": "a", "trigger": "usage"}, {"pvcName": "b", "timestamp": "2026-01-01T00:00:00Z"}],
            "diskStatus": {"instances": {"pg-1": {"lastUpdated": "t", "extra": true}}, "other": 2},
            "free": {"anything": {"goes": 1}},
        });
        assert_eq!(
            schema().project(&status),
            json!({
                "phase": "x",
                "autoResizeEvents": [{"pvcName": "a", "timestamp": null}, {"pvcName": "b", "timestamp": "2026-01-01T00:00:00Z"}],
                "diskStatus": {"instances": {"pg-1": {"lastUpdated": "t"}}},
                "free": {"anything": {"goes": 1}},
            })
        );
    }

    #[test]
    fn the_fork_crd_is_found_and_knows_cnpg_fields() {
        let schema = StatusSchema::fork().unwrap();
        let status = json!({"phase": PHASE_HEALTHY, "readyInstances": 2, "notAField": 1,
            "autoResizeEvents": [{"pvcName": "pg-1", "result": "success", "trigger": "usage"}]});
        let projected = schema.project(&status);
        assert_eq!(projected["phase"], PHASE_HEALTHY);
        assert_eq!(projected["readyInstances"], 2);
        assert!(projected.get("notAField").is_none());
        assert_eq!(
            projected["autoResizeEvents"],
            json!([{"pvcName": "pg-1", "result": "success", "timestamp": null}])
        );
    }
}
