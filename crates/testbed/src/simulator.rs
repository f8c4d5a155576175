//! A volume simulator playing CSI resizer + kubelet for PVCs in one namespace.
//!
//! Real Kubernetes expands a PVC in two steps after its
//! `spec.resources.requests.storage` grows: the external resizer expands the
//! volume (condition `Resizing`, `allocatedResourceStatuses.storage:
//! ControllerResizeInProgress`), then the kubelet grows the filesystem and
//! `status.capacity.storage` finally shows the new size. The simulator
//! reproduces what the product can observe of that:
//!
//! 1. it watches PVCs; for a PVC registered with a [`Volume`] whose request
//!    exceeds `status.capacity.storage`,
//! 2. it patches `/status`: condition `Resizing`, `allocatedResources`,
//!    `allocatedResourceStatuses.storage: ControllerResizeInProgress`;
//! 3. waits [`SimulatorConfig::expand_delay`];
//! 4. grows the volume to exactly the requested bytes ([`Volume::grow`]);
//! 5. patches `/status`: `capacity.storage` = the request, condition and
//!    resize status cleared.
//!
//! Per-PVC [`ExpansionMode`]s make an expansion fail
//! (`ControllerResizeInfeasible` + a `ControllerResizeError` condition, as
//! Kubernetes ≥ 1.31 reports it) or stall forever in `Resizing`.
//!
//! A registered PVC without `status.capacity` (nothing binds volumes in a
//! sandbox) is given the volume's capacity and phase `Bound`.

use crate::Volume;
use anyhow::{Context, Result};
use futures::StreamExt;
use k8s_openapi::api::core::v1::PersistentVolumeClaim;
use k8s_quantity::{format_bytes, Quantity};
use kube::api::{Patch, PatchParams};
use kube::runtime::watcher::{self, Event};
use kube::runtime::WatchStreamExt;
use kube::{Api, Client};
use serde_json::json;
use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;
use tokio::sync::mpsc;
use tokio::task::AbortHandle;

/// Field manager of the simulator's status patches.
pub const FIELD_MANAGER: &str = "cnpg-testbed-volume-simulator";

/// How the simulator behaves.
#[derive(Debug, Clone)]
pub struct SimulatorConfig {
    /// Time between noticing a larger request and the filesystem being grown
    /// (the CSI + kubelet latency; real clusters take seconds to minutes).
    pub expand_delay: Duration,
    /// Re-examine every registered PVC this often, besides watch events
    /// (covers missed events and mode changes).
    pub resync_interval: Duration,
}

impl Default for SimulatorConfig {
    fn default() -> Self {
        SimulatorConfig {
            expand_delay: Duration::from_millis(200),
            resync_interval: Duration::from_secs(2),
        }
    }
}

/// What happens when a registered PVC asks for more storage.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum ExpansionMode {
    /// Expand after the configured delay.
    #[default]
    Expand,
    /// Refuse: `allocatedResourceStatuses.storage: ControllerResizeInfeasible`
    /// and a `ControllerResizeError` condition carrying `message`. The volume
    /// is not grown. Retried only when the request changes again (as the
    /// real resizer does for infeasible requests) or the mode changes back.
    Fail {
        /// The condition message.
        message: String,
    },
    /// Set `Resizing` and never finish.
    Stall,
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
    /// Request (bytes) last refused in `Fail` mode or left stalled, so
    /// resyncs do not repeat the same status writes.
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
    let Some(pvc) = shared
        .api
        .get_opt(name)
        .await
        .with_context(|| format!("reading PVC {name}"))?
    else {
        return Ok(());
    };
    let (volume, mode, settled) = {
        let entries = lock(&shared.entries);
        let Some(e) = entries.get(name) else {
            return Ok(());
        };
        (e.volume.clone(), e.mode.clone(), e.settled_request)
    };
    let request = pvc
        .spec
        .as_ref()
        .and_then(|s| s.resources.as_ref())
        .and_then(|r| r.requests.as_ref())
        .and_then(|r| r.get("storage"))
        .map(|q| q.0.clone());
    let capacity = pvc
        .status
        .as_ref()
        .and_then(|s| s.capacity.as_ref())
        .and_then(|c| c.get("storage"))
        .map(|q| q.0.clone());

    let Some(capacity) = capacity else {
        // Bind: report what the volume offers.
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
    let Some(request) = request else {
        return Ok(());
    };
    let request_bytes = parse_bytes(&request)
        .with_context(|| format!("PVC {name} spec.resources.requests.storage"))?;
    let capacity_bytes =
        parse_bytes(&capacity).with_context(|| format!("PVC {name} status.capacity.storage"))?;
    if request_bytes <= capacity_bytes {
        return Ok(());
    }
    if settled == Some(request_bytes) {
        return Ok(());
    }

    let now = now_rfc3339();
    match mode {
        ExpansionMode::Fail { message } => {
            patch_status(
                shared,
                name,
                json!({"status": {
                    "allocatedResourceStatuses": {"storage": "ControllerResizeInfeasible"},
                    "conditions": [{
                        "type": "ControllerResizeError", "status": "True",
                        "lastTransitionTime": now, "message": message,
                    }],
                }}),
            )
            .await?;
            settle(shared, name, request_bytes);
            Ok(())
        }
        ExpansionMode::Stall => {
            patch_status(shared, name, resizing_status(&request, &now)).await?;
            settle(shared, name, request_bytes);
            Ok(())
        }
        ExpansionMode::Expand => {
            patch_status(shared, name, resizing_status(&request, &now)).await?;
            tokio::time::sleep(shared.config.expand_delay).await;
            let vol = volume.clone();
            tokio::task::spawn_blocking(move || vol.grow(request_bytes))
                .await
                .context("volume grow task panicked")?
                .with_context(|| format!("growing the volume of PVC {name} to {request}"))?;
            patch_status(
                shared,
                name,
                json!({"status": {
                    "capacity": {"storage": request},
                    "allocatedResources": {"storage": request},
                    "allocatedResourceStatuses": null,
                    "conditions": null,
                }}),
            )
            .await?;
            lock(&shared.expansions).push(Expansion {
                pvc: name.to_string(),
                from_bytes: capacity_bytes,
                to_bytes: request_bytes,
            });
            Ok(())
        }
    }
}

fn resizing_status(request: &str, now: &str) -> serde_json::Value {
    json!({"status": {
        "allocatedResources": {"storage": request},
        "allocatedResourceStatuses": {"storage": "ControllerResizeInProgress"},
        "conditions": [{"type": "Resizing", "status": "True", "lastTransitionTime": now}],
    }})
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
