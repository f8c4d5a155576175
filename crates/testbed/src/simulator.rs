//! A volume simulator playing CSI external-resizer + kubelet for PVCs in one
//! namespace, reporting on the PVC's status what Kubernetes ≥ 1.34
//! (RecoverVolumeExpansionFailure GA) reports.
//!
//! When a registered, `Bound` PVC's `spec.resources.requests.storage`
//! exceeds `status.capacity.storage`, its `/status` passes through
//! (conditions are `status: "True"`):
//!
//! | step | `allocatedResourceStatuses.storage` | conditions | who, in Kubernetes |
//! |---|---|---|---|
//! | 1 | `ControllerResizeInProgress` (+ `allocatedResources.storage` = request) | `Resizing` | external-resizer `markControllerResizeInProgress` |
//! | 2 | `NodeResizePending` | `FileSystemResizePending` (message "Waiting for user to (re-)start a pod to finish file system resize of volume on node.") | external-resizer `markForPendingNodeExpansion`, after `ControllerExpandVolume` |
//! | 3 | `NodeResizeInProgress` | unchanged | kubelet `MarkNodeExpansionInProgress` |
//! | 4 | removed | resize conditions removed | kubelet `MarkNodeExpansionFinishedWithRecovery`: `capacity.storage` = the allocated size |
//!
//! [`PhaseDelays`] separate the steps (controller call, kubelet pick-up,
//! `resize2fs`); the backing [`Volume`] grows between 3 and 4, so its
//! filesystem is the old one until the kubelet step. Conditions of other
//! types are kept; an old resize condition of the same type and status keeps
//! its `lastTransitionTime`, as `MergeResizeConditionsOfPVC` does.
//!
//! Per-PVC [`ExpansionMode`]s reproduce refusals and stalls:
//! [`ExpansionMode::Fail`] → `ControllerResizeInfeasible` + a
//! `ControllerResizeError` condition after step 1;
//! [`ExpansionMode::NodeFail`] → `NodeResizeInfeasible` + a `NodeResizeError`
//! condition after step 3 (the device grew, the filesystem did not);
//! [`ExpansionMode::Stall`] stays at step 1, [`ExpansionMode::StallNode`] at
//! step 2. A refused or stalled request is not retried until the request or
//! the mode changes; changing the mode back to [`ExpansionMode::Expand`]
//! resumes (from step 2 when the controller side had finished).
//!
//! Writes are ones a real API server accepts: merge patches of `/status`
//! only, `allocatedResourceStatuses` only with the five values of
//! [`ResizeStatus`], and resizes only of `Bound` claims. A registered PVC
//! without `status.capacity` (nothing binds volumes in a sandbox) is given
//! the volume's device size and phase `Bound`.

use crate::Volume;
use anyhow::{Context, Result};
use futures::StreamExt;
use k8s_openapi::api::core::v1::PersistentVolumeClaim;
use k8s_quantity::{format_bytes, Quantity};
use kube::api::{Patch, PatchParams};
use kube::runtime::watcher::{self, Event};
use kube::runtime::WatchStreamExt;
use kube::{Api, Client};
use serde_json::{json, Value};
use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;
use tokio::sync::mpsc;
use tokio::task::AbortHandle;

/// Field manager of the simulator's status patches.
pub const FIELD_MANAGER: &str = "cnpg-testbed-volume-simulator";

/// Message of the `FileSystemResizePending` condition (external-resizer's).
pub const FS_RESIZE_PENDING_MESSAGE: &str =
    "Waiting for user to (re-)start a pod to finish file system resize of volume on node.";

/// Condition types Kubernetes' resize code owns (`knownResizeConditions`);
/// each status step replaces them, other conditions stay.
const RESIZE_CONDITIONS: [&str; 4] = [
    "Resizing",
    "FileSystemResizePending",
    "ControllerResizeError",
    "NodeResizeError",
];

/// How the simulator behaves.
#[derive(Debug, Clone)]
pub struct SimulatorConfig {
    /// Time between noticing a larger request and the filesystem being grown
    /// (the CSI + kubelet latency; real clusters take seconds to minutes).
    /// Split over the phases by [`PhaseDelays::split`] unless
    /// [`SimulatorConfig::phase_delays`] is set.
    pub expand_delay: Duration,
    /// Explicit per-phase delays, replacing the split of `expand_delay`.
    pub phase_delays: Option<PhaseDelays>,
    /// Re-examine every registered PVC this often, besides watch events
    /// (covers missed events and mode changes).
    pub resync_interval: Duration,
}

impl Default for SimulatorConfig {
    fn default() -> Self {
        SimulatorConfig {
            expand_delay: Duration::from_millis(200),
            phase_delays: None,
            resync_interval: Duration::from_secs(2),
        }
    }
}

impl SimulatorConfig {
    /// The delays in effect.
    pub fn delays(&self) -> PhaseDelays {
        self.phase_delays
            .unwrap_or_else(|| PhaseDelays::split(self.expand_delay))
    }
}

/// How long each step of an expansion lasts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct PhaseDelays {
    /// In `ControllerResizeInProgress`: the external resizer's
    /// `ControllerExpandVolume` call (cloud API latency).
    pub controller: Duration,
    /// In `NodeResizePending`: until the kubelet picks the volume up.
    pub node_pending: Duration,
    /// In `NodeResizeInProgress`: `NodeExpandVolume` (`resize2fs`).
    pub node: Duration,
}

impl PhaseDelays {
    /// `total` split as half controller, a quarter each on the node.
    pub fn split(total: Duration) -> PhaseDelays {
        let controller = total / 2;
        let node_pending = total / 4;
        PhaseDelays {
            controller,
            node_pending,
            node: total.saturating_sub(controller + node_pending),
        }
    }

    /// Sum of the three delays.
    pub fn total(&self) -> Duration {
        self.controller + self.node_pending + self.node
    }
}

/// The values of `status.allocatedResourceStatuses.storage` the API server
/// accepts (`ClaimResourceStatus`), and so the only ones the simulator writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ResizeStatus {
    /// The external resizer is expanding the volume.
    ControllerResizeInProgress,
    /// The external resizer gave up (final error from the driver).
    ControllerResizeInfeasible,
    /// The volume is expanded; the kubelet must grow the filesystem.
    NodeResizePending,
    /// The kubelet is growing the filesystem.
    NodeResizeInProgress,
    /// The kubelet gave up.
    NodeResizeInfeasible,
}

impl ResizeStatus {
    /// All five values.
    pub const ALL: [ResizeStatus; 5] = [
        ResizeStatus::ControllerResizeInProgress,
        ResizeStatus::ControllerResizeInfeasible,
        ResizeStatus::NodeResizePending,
        ResizeStatus::NodeResizeInProgress,
        ResizeStatus::NodeResizeInfeasible,
    ];

    /// The API string.
    pub fn as_str(self) -> &'static str {
        match self {
            ResizeStatus::ControllerResizeInProgress => "ControllerResizeInProgress",
            ResizeStatus::ControllerResizeInfeasible => "ControllerResizeInfeasible",
            ResizeStatus::NodeResizePending => "NodeResizePending",
            ResizeStatus::NodeResizeInProgress => "NodeResizeInProgress",
            ResizeStatus::NodeResizeInfeasible => "NodeResizeInfeasible",
        }
    }

    /// Parse an API string.
    pub fn parse(s: &str) -> Option<ResizeStatus> {
        ResizeStatus::ALL.into_iter().find(|r| r.as_str() == s)
    }
}

/// What happens when a registered PVC asks for more storage.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum ExpansionMode {
    /// Expand after the configured delay.
    #[default]
    Expand,
    /// The controller refuses: after `ControllerResizeInProgress`,
    /// `allocatedResourceStatuses.storage: ControllerResizeInfeasible` and a
    /// `ControllerResizeError` condition carrying `message`. The volume is
    /// not grown. Retried only when the request changes again (as the real
    /// resizer does for infeasible requests) or the mode changes.
    Fail {
        /// The condition message.
        message: String,
    },
    /// The node refuses: after `NodeResizeInProgress`,
    /// `NodeResizeInfeasible` and a `NodeResizeError` condition with the
    /// kubelet's message `failed to expand pvc with <message>`
    /// (`FileSystemResizePending` stays). The filesystem is not grown.
    NodeFail {
        /// The error the node plugin returned.
        message: String,
    },
    /// Stay in `ControllerResizeInProgress` (condition `Resizing`) forever.
    Stall,
    /// Stay in `NodeResizePending` (condition `FileSystemResizePending`)
    /// forever, as when no pod mounts the volume.
    StallNode,
}

/// One completed expansion, for assertions such as "grown exactly once".
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Expansion {
    /// PVC name.
    pub pvc: String,
    /// Capacity before, in bytes.
    pub from_bytes: u64,
    /// Capacity after (the request), in bytes.
    pub to_bytes: u64,
}

#[derive(Debug)]
struct Entry {
    volume: Arc<Volume>,
    mode: ExpansionMode,
    /// A reconcile task is running for this PVC.
    busy: bool,
    /// Something changed while busy: reconcile again afterwards.
    dirty: bool,
    /// Request (bytes) last refused or left stalled, so resyncs do not
    /// repeat the same status writes.
    settled_request: Option<u64>,
}

#[derive(Debug)]
struct Shared {
    api: Api<PersistentVolumeClaim>,
    config: SimulatorConfig,
    entries: Mutex<HashMap<String, Entry>>,
    expansions: Mutex<Vec<Expansion>>,
    tasks: Mutex<Vec<AbortHandle>>,
}

/// Handle of a running simulator; dropping it stops the simulator and
/// releases its references to the registered volumes.
#[derive(Debug)]
pub struct VolumeSimulator {
    shared: Arc<Shared>,
    recheck: mpsc::UnboundedSender<String>,
    main: AbortHandle,
}

impl VolumeSimulator {
    /// Start watching PVCs of `namespace` through `client`.
    pub async fn start(
        client: Client,
        namespace: &str,
        config: SimulatorConfig,
    ) -> Result<VolumeSimulator> {
        let api: Api<PersistentVolumeClaim> = Api::namespaced(client, namespace);
        let shared = Arc::new(Shared {
            api,
            config,
            entries: Mutex::new(HashMap::new()),
            expansions: Mutex::new(Vec::new()),
            tasks: Mutex::new(Vec::new()),
        });
        let (tx, rx) = mpsc::unbounded_channel();
        let main = tokio::spawn(run(shared.clone(), rx)).abort_handle();
        Ok(VolumeSimulator {
            shared,
            recheck: tx,
            main,
        })
    }

    /// Back PVC `pvc_name` with `volume` (expanding with [`ExpansionMode::Expand`]).
    /// The PVC may be created before or after.
    pub fn register(&self, pvc_name: &str, volume: Arc<Volume>) {
        lock(&self.shared.entries).insert(
            pvc_name.to_string(),
            Entry {
                volume,
                mode: ExpansionMode::Expand,
                busy: false,
                dirty: false,
                settled_request: None,
            },
        );
        let _ = self.recheck.send(pvc_name.to_string());
    }

    /// Change how expansions of `pvc_name` behave from now on. Returns
    /// `false` if the PVC is not registered.
    pub fn set_mode(&self, pvc_name: &str, mode: ExpansionMode) -> bool {
        let known = match lock(&self.shared.entries).get_mut(pvc_name) {
            Some(e) => {
                e.mode = mode;
                e.settled_request = None;
                true
            }
            None => false,
        };
        if known {
            let _ = self.recheck.send(pvc_name.to_string());
        }
        known
    }

    /// Completed expansions so far, in order.
    pub fn expansions(&self) -> Vec<Expansion> {
        lock(&self.shared.expansions).clone()
    }

    /// The volume backing `pvc_name`, if registered.
    pub fn volume(&self, pvc_name: &str) -> Option<Arc<Volume>> {
        lock(&self.shared.entries)
            .get(pvc_name)
            .map(|e| e.volume.clone())
    }
}

impl Drop for VolumeSimulator {
    fn drop(&mut self) {
        self.main.abort();
        for t in lock(&self.shared.tasks).drain(..) {
            t.abort();
        }
        // Release the volumes now, not when the runtime gets round to
        // dropping the aborted tasks: callers expect to remove them next.
        lock(&self.shared.entries).clear();
    }
}

async fn run(shared: Arc<Shared>, mut recheck: mpsc::UnboundedReceiver<String>) {
    let stream = watcher::watcher(shared.api.clone(), watcher::Config::default()).default_backoff();
    let mut stream = std::pin::pin!(stream);
    let mut resync = tokio::time::interval(shared.config.resync_interval);
    loop {
        tokio::select! {
            event = stream.next() => match event {
                Some(Ok(Event::Apply(pvc) | Event::InitApply(pvc))) => {
                    if let Some(name) = pvc.metadata.name {
                        schedule(&shared, &name);
                    }
                }
                Some(Ok(_)) => {}
                Some(Err(e)) => tracing::warn!(error = %e, "volume simulator: PVC watch error"),
                None => break,
            },
            Some(name) = recheck.recv() => schedule(&shared, &name),
            _ = resync.tick() => {
                let names: Vec<String> = lock(&shared.entries).keys().cloned().collect();
                for name in names {
                    schedule(&shared, &name);
                }
            }
        }
    }
}

/// Start a reconcile task for `name` unless one runs (then mark it dirty).
fn schedule(shared: &Arc<Shared>, name: &str) {
    {
        let mut entries = lock(&shared.entries);
        let Some(entry) = entries.get_mut(name) else {
            return;
        };
        if entry.busy {
            entry.dirty = true;
            return;
        }
        entry.busy = true;
        entry.dirty = false;
    }
    let task = tokio::spawn(reconcile_loop(shared.clone(), name.to_string()));
    let mut tasks = lock(&shared.tasks);
    tasks.retain(|t| !t.is_finished());
    tasks.push(task.abort_handle());
}

async fn reconcile_loop(shared: Arc<Shared>, name: String) {
    loop {
        if let Err(e) = reconcile(&shared, &name).await {
            tracing::warn!(pvc = %name, error = %format!("{e:#}"), "volume simulator: reconcile failed");
        }
        let mut entries = lock(&shared.entries);
        let Some(entry) = entries.get_mut(&name) else {
            return;
        };
        if entry.dirty {
            entry.dirty = false;
            continue;
        }
        entry.busy = false;
        return;
    }
}

async fn reconcile(shared: &Shared, name: &str) -> Result<()> {
    let Some(pvc) = read_pvc(shared, name).await? else {
        return Ok(());
    };
    let Some((volume, settled)) = lock(&shared.entries)
        .get(name)
        .map(|e| (e.volume.clone(), e.settled_request))
    else {
        return Ok(());
    };
    let status = pvc.status.as_ref();
    let Some(capacity) = status
        .and_then(|s| s.capacity.as_ref())
        .and_then(|c| c.get("storage"))
        .map(|q| q.0.clone())
    else {
        // Bind: report the device the volume stands for.
        let size = format_bytes(volume.capacity_bytes());
        patch_status(
            shared,
            name,
            json!({"status": {"phase": "Bound", "capacity": {"storage": size},
                   "accessModes": ["ReadWriteOnce"]}}),
        )
        .await?;
        return Ok(());
    };
    // Only bound claims are resized (the API server lets only those grow).
    if status.and_then(|s| s.phase.as_deref()) != Some("Bound") {
        return Ok(());
    }
    let Some(request) = pvc
        .spec
        .as_ref()
        .and_then(|s| s.resources.as_ref())
        .and_then(|r| r.requests.as_ref())
        .and_then(|r| r.get("storage"))
        .map(|q| q.0.clone())
    else {
        return Ok(());
    };
    let request_bytes = parse_bytes(&request)
        .with_context(|| format!("PVC {name} spec.resources.requests.storage"))?;
    let capacity_bytes =
        parse_bytes(&capacity).with_context(|| format!("PVC {name} status.capacity.storage"))?;
    let resize_status = status
        .and_then(|s| s.allocated_resource_statuses.as_ref())
        .and_then(|m| m.get("storage"))
        .and_then(|s| ResizeStatus::parse(s));
    let allocated = status
        .and_then(|s| s.allocated_resources.as_ref())
        .and_then(|m| m.get("storage"))
        .map(|q| q.0.clone());

    // The size the node must grow the filesystem to: an expansion the
    // controller already handed over resumes there, otherwise the
    // controller side runs first.
    let handed_over = matches!(
        resize_status,
        Some(ResizeStatus::NodeResizePending | ResizeStatus::NodeResizeInProgress)
    );
    let target = match (handed_over, allocated) {
        (true, Some(allocated)) => allocated,
        _ => {
            if request_bytes <= capacity_bytes || settled == Some(request_bytes) {
                return Ok(());
            }
            if !controller_expand(shared, name, &request, request_bytes).await? {
                return Ok(());
            }
            request
        }
    };
    let target_bytes =
        parse_bytes(&target).with_context(|| format!("PVC {name} allocated size {target}"))?;
    node_expand(shared, name, &volume, &target, target_bytes, capacity_bytes).await
}

/// The external resizer's part. Returns whether the node part follows.
async fn controller_expand(
    shared: &Shared,
    name: &str,
    request: &str,
    request_bytes: u64,
) -> Result<bool> {
    let delays = shared.config.delays();
    write_status(
        shared,
        name,
        Some(ResizeStatus::ControllerResizeInProgress),
        Conditions::Replace(vec![condition("Resizing", None)]),
        json!({"allocatedResources": {"storage": request}}),
    )
    .await?;
    if current_mode(shared, name) == Some(ExpansionMode::Stall) {
        settle(shared, name, request_bytes);
        return Ok(false);
    }
    tokio::time::sleep(delays.controller).await;
    if let Some(ExpansionMode::Fail { message }) = current_mode(shared, name) {
        write_status(
            shared,
            name,
            Some(ResizeStatus::ControllerResizeInfeasible),
            Conditions::Replace(vec![condition("ControllerResizeError", Some(&message))]),
            json!({}),
        )
        .await?;
        settle(shared, name, request_bytes);
        return Ok(false);
    }
    // ControllerExpandVolume succeeded; the filesystem needs the node.
    write_status(
        shared,
        name,
        Some(ResizeStatus::NodeResizePending),
        Conditions::Replace(vec![condition(
            "FileSystemResizePending",
            Some(FS_RESIZE_PENDING_MESSAGE),
        )]),
        json!({}),
    )
    .await?;
    Ok(true)
}

/// The kubelet's part: grow the filesystem to `target` and finish.
async fn node_expand(
    shared: &Shared,
    name: &str,
    volume: &Arc<Volume>,
    target: &str,
    target_bytes: u64,
    capacity_bytes: u64,
) -> Result<()> {
    let delays = shared.config.delays();
    if current_mode(shared, name) == Some(ExpansionMode::StallNode) {
        settle(shared, name, target_bytes);
        return Ok(());
    }
    tokio::time::sleep(delays.node_pending).await;
    write_status(
        shared,
        name,
        Some(ResizeStatus::NodeResizeInProgress),
        Conditions::Keep,
        json!({}),
    )
    .await?;
    tokio::time::sleep(delays.node).await;
    if let Some(ExpansionMode::NodeFail { message }) = current_mode(shared, name) {
        let message = format!("failed to expand pvc with {message}");
        write_status(
            shared,
            name,
            Some(ResizeStatus::NodeResizeInfeasible),
            Conditions::Add(vec![condition("NodeResizeError", Some(&message))]),
            json!({}),
        )
        .await?;
        settle(shared, name, target_bytes);
        return Ok(());
    }
    let vol = volume.clone();
    tokio::task::spawn_blocking(move || vol.grow(target_bytes))
        .await
        .context("volume grow task panicked")?
        .with_context(|| format!("growing the volume of PVC {name} to {target}"))?;
    write_status(
        shared,
        name,
        None,
        Conditions::Replace(Vec::new()),
        json!({"capacity": {"storage": target}}),
    )
    .await?;
    lock(&shared.expansions).push(Expansion {
        pvc: name.to_string(),
        from_bytes: capacity_bytes,
        to_bytes: target_bytes,
    });
    Ok(())
}

/// What a status step does to the resize conditions.
enum Conditions {
    /// Leave all conditions alone.
    Keep,
    /// Drop the resize conditions, then add these (`keepOldResizeConditions`
    /// false in Kubernetes).
    Replace(Vec<Value>),
    /// Keep the other resize conditions, add or update these (true).
    Add(Vec<Value>),
}

/// A resize condition with status `True`, stamped now.
fn condition(type_: &str, message: Option<&str>) -> Value {
    let mut c = json!({"type": type_, "status": "True", "lastTransitionTime": now_rfc3339()});
    if let Some(m) = message {
        c["message"] = json!(m);
    }
    c
}

/// Set `allocatedResourceStatuses.storage` (removed when `None`), the
/// conditions and the `extra` status fields, from the PVC as it is now.
async fn write_status(
    shared: &Shared,
    name: &str,
    resize: Option<ResizeStatus>,
    conditions: Conditions,
    extra: Value,
) -> Result<()> {
    let Some(pvc) = read_pvc(shared, name).await? else {
        return Ok(());
    };
    let status = pvc.status.unwrap_or_default();
    let mut patch = match extra {
        Value::Object(map) => map,
        _ => serde_json::Map::new(),
    };
    // Only the storage entry is ours; an emptied map is omitted, as the
    // API server's `omitempty` renders it.
    let others = status
        .allocated_resource_statuses
        .as_ref()
        .is_some_and(|m| m.keys().any(|k| k != "storage"));
    let statuses = match resize {
        Some(r) => json!({"storage": r.as_str()}),
        None if others => json!({"storage": null}),
        None => Value::Null,
    };
    patch.insert("allocatedResourceStatuses".into(), statuses);
    let old = status.conditions.unwrap_or_default();
    let (keep_old_resize, new) = match conditions {
        Conditions::Keep => (true, Vec::new()),
        Conditions::Replace(new) => (false, new),
        Conditions::Add(new) => (true, new),
    };
    let mut merged = Vec::new();
    for c in &old {
        let is_resize = RESIZE_CONDITIONS.contains(&c.type_.as_str());
        let replaced = new.iter().find(|n| n["type"] == c.type_.as_str());
        match replaced {
            // Same type and status: the old one (its transition time) stays.
            Some(n) if n["status"] == c.status.as_str() && n["message"] == json!(c.message) => {
                merged.push(serde_json::to_value(c).context("serialising a PVC condition")?)
            }
            Some(n) => merged.push(n.clone()),
            None if !is_resize || keep_old_resize => {
                merged.push(serde_json::to_value(c).context("serialising a PVC condition")?)
            }
            None => {}
        }
    }
    for n in new {
        if !old.iter().any(|c| n["type"] == c.type_.as_str()) {
            merged.push(n);
        }
    }
    if merged.is_empty() {
        patch.insert("conditions".into(), Value::Null);
    } else {
        patch.insert("conditions".into(), Value::Array(merged));
    }
    patch_status(shared, name, json!({ "status": patch })).await
}

async fn read_pvc(shared: &Shared, name: &str) -> Result<Option<PersistentVolumeClaim>> {
    shared
        .api
        .get_opt(name)
        .await
        .with_context(|| format!("reading PVC {name}"))
}

/// The mode of `name` now (it may change while an expansion runs).
fn current_mode(shared: &Shared, name: &str) -> Option<ExpansionMode> {
    lock(&shared.entries).get(name).map(|e| e.mode.clone())
}

/// Bytes of a storage quantity such as `64Mi` or `1.5Gi` (fractions round
/// up; surrounding white space is ignored, as when the API server decodes it).
fn parse_bytes(q: &str) -> Result<u64> {
    Ok(Quantity::parse(q.trim())?.to_bytes()?)
}

fn settle(shared: &Shared, name: &str, request_bytes: u64) {
    if let Some(e) = lock(&shared.entries).get_mut(name) {
        e.settled_request = Some(request_bytes);
    }
}

async fn patch_status(shared: &Shared, name: &str, patch: serde_json::Value) -> Result<()> {
    shared
        .api
        .patch_status(
            name,
            &PatchParams::apply(FIELD_MANAGER),
            &Patch::Merge(&patch),
        )
        .await
        .with_context(|| format!("patching status of PVC {name} with {patch}"))?;
    Ok(())
}

fn now_rfc3339() -> String {
    jiff::Timestamp::now()
        .strftime("%Y-%m-%dT%H:%M:%SZ")
        .to_string()
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}
