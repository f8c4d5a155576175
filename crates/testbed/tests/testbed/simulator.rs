//! Volume simulator (CSI external-resizer + kubelet stand-in) against the
//! Kubernetes API sandbox. Every status a PVC passes through is observed
//! with a watch, as a controller in the cluster would see it.

use crate::common::{init_tracing, tempdir, volume, MIB};
use cnpg_testbed::simulator::FS_RESIZE_PENDING_MESSAGE;
use cnpg_testbed::volume::model_grown_total_bytes;
use cnpg_testbed::{
    model_total_bytes, ExpansionMode, FilesystemKind, PhaseDelays, ResizeStatus, SimulatorConfig,
    Volume, VolumeSimulator,
};
use futures::StreamExt;
use k8s_openapi::api::core::v1::PersistentVolumeClaim;
use k8s_openapi::api::storage::v1::StorageClass;
use kube::api::{Patch, PatchParams, PostParams};
use kube::runtime::{watcher, WatchStreamExt};
use kube::{Api, Client};
use kube_sandbox::{Sandbox, SandboxConfig};
use serde_json::json;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const NS: &str = "default";
const GIB: u64 = 1 << 30;

async fn sandbox_with_class() -> (Sandbox, Client) {
    let sandbox = Sandbox::start(SandboxConfig::default()).await.unwrap();
    let client = sandbox.client().await.unwrap();
    let sc: StorageClass = serde_json::from_value(json!({
        "apiVersion": "storage.k8s.io/v1", "kind": "StorageClass",
        "metadata": {"name": "expandable"},
        "provisioner": "testbed.cnpg.io", "allowVolumeExpansion": true,
    }))
    .unwrap();
    Api::<StorageClass>::all(client.clone())
        .create(&PostParams::default(), &sc)
        .await
        .unwrap();
    (sandbox, client)
}

async fn create_pvc(api: &Api<PersistentVolumeClaim>, name: &str, size: &str) {
    let pvc: PersistentVolumeClaim = serde_json::from_value(json!({
        "apiVersion": "v1", "kind": "PersistentVolumeClaim",
        "metadata": {"name": name, "labels": {"cnpg.io/pvcRole": "PG_DATA"}},
        "spec": {"accessModes": ["ReadWriteOnce"], "storageClassName": "expandable",
                 "resources": {"requests": {"storage": size}}},
    }))
    .unwrap();
    api.create(&PostParams::default(), &pvc).await.unwrap();
}

async fn request(api: &Api<PersistentVolumeClaim>, name: &str, size: &str) {
    api.patch(
        name,
        &PatchParams::default(),
        &Patch::Merge(json!({"spec": {"resources": {"requests": {"storage": size}}}})),
    )
    .await
    .unwrap();
}

fn capacity(pvc: &PersistentVolumeClaim) -> Option<String> {
    pvc.status
        .as_ref()?
        .capacity
        .as_ref()?
        .get("storage")
        .map(|q| q.0.clone())
}

fn condition_types(pvc: &PersistentVolumeClaim) -> Vec<String> {
    pvc.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .map(|c| c.iter().map(|c| c.type_.clone()).collect())
        .unwrap_or_default()
}

fn resize_status(pvc: &PersistentVolumeClaim) -> Option<String> {
    pvc.status
        .as_ref()?
        .allocated_resource_statuses
        .as_ref()?
        .get("storage")
        .cloned()
}

/// Poll the PVC until `pred` holds.
async fn wait_pvc<F>(
    api: &Api<PersistentVolumeClaim>,
    name: &str,
    what: &str,
    pred: F,
) -> PersistentVolumeClaim
where
    F: Fn(&PersistentVolumeClaim) -> bool,
{
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let pvc = api.get(name).await.unwrap();
        if pred(&pvc) {
            return pvc;
        }
        assert!(
            Instant::now() < deadline,
            "timed out waiting for PVC {name}: {what}; last: {:?}",
            pvc.status
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// What a status step shows of a PVC: phase, resize status, conditions
/// (`Type=Status`), `status.capacity.storage`, `allocatedResources.storage`.
#[derive(Debug, Clone, PartialEq, Eq)]
struct State {
    phase: Option<String>,
    resize: Option<String>,
    conditions: Vec<String>,
    capacity: Option<String>,
    allocated: Option<String>,
}

impl State {
    fn of(pvc: &PersistentVolumeClaim) -> State {
        let status = pvc.status.clone().unwrap_or_default();
        State {
            phase: status.phase,
            resize: resize_status(pvc),
            conditions: status
                .conditions
                .unwrap_or_default()
                .iter()
                .map(|c| format!("{}={}", c.type_, c.status))
                .collect(),
            capacity: capacity(pvc),
            allocated: status
                .allocated_resources
                .and_then(|a| a.get("storage").map(|q| q.0.clone())),
        }
    }

    /// A bound PVC at rest.
    fn at_rest(capacity: &str, allocated: Option<&str>) -> State {
        State {
            phase: Some("Bound".into()),
            resize: None,
            conditions: vec![],
            capacity: Some(capacity.into()),
            allocated: allocated.map(Into::into),
        }
    }

    fn step(resize: ResizeStatus, conditions: &[&str], capacity: &str, allocated: &str) -> State {
        State {
            phase: Some("Bound".into()),
            resize: Some(resize.as_str().into()),
            conditions: conditions.iter().map(|c| format!("{c}=True")).collect(),
            capacity: Some(capacity.into()),
            allocated: Some(allocated.into()),
        }
    }
}

/// Records every distinct status of one PVC delivered by a watch, and
/// every full PVC object (for condition messages).
struct Recorder {
    states: Arc<Mutex<Vec<State>>>,
    objects: Arc<Mutex<Vec<PersistentVolumeClaim>>>,
    task: tokio::task::JoinHandle<()>,
}

impl Recorder {
    fn start(api: &Api<PersistentVolumeClaim>, name: &str) -> Recorder {
        let states = Arc::new(Mutex::new(Vec::<State>::new()));
        let objects = Arc::new(Mutex::new(Vec::new()));
        let (s, o, api, name) = (
            states.clone(),
            objects.clone(),
            api.clone(),
            name.to_string(),
        );
        let task = tokio::spawn(async move {
            let stream = watcher(api, watcher::Config::default()).applied_objects();
            let mut stream = std::pin::pin!(stream);
            while let Some(event) = stream.next().await {
                let Ok(pvc) = event else { continue };
                if pvc.metadata.name.as_deref() != Some(name.as_str()) {
                    continue;
                }
                let state = State::of(&pvc);
                let mut states = s.lock().unwrap();
                if states.last() != Some(&state) {
                    states.push(state);
                }
                o.lock().unwrap().push(pvc);
            }
        });
        Recorder {
            states,
            objects,
            task,
        }
    }

    fn states(&self) -> Vec<State> {
        self.states.lock().unwrap().clone()
    }

    /// Wait until the watch delivered a state satisfying `pred`.
    async fn wait_for(&self, what: &str, pred: impl Fn(&State) -> bool) {
        let deadline = Instant::now() + Duration::from_secs(20);
        while !self.states().iter().any(&pred) {
            assert!(
                Instant::now() < deadline,
                "watch never showed {what}: {:#?}",
                self.states()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// The states from the first one matching `from` on.
    fn since(&self, from: &State) -> Vec<State> {
        let states = self.states();
        let start = states
            .iter()
            .position(|s| s == from)
            .unwrap_or_else(|| panic!("{from:?} never seen: {states:#?}"));
        states[start..].to_vec()
    }

    /// Message of the last `type_` condition seen.
    fn message(&self, type_: &str) -> Option<String> {
        self.objects
            .lock()
            .unwrap()
            .iter()
            .filter_map(|p| p.status.as_ref()?.conditions.as_ref())
            .flatten()
            .rev()
            .find(|c| c.type_ == type_)
            .and_then(|c| c.message.clone())
    }

    /// Every resize status written must be one the API server accepts.
    fn assert_only_allowed_statuses(&self) {
        for state in self.states() {
            if let Some(r) = &state.resize {
                assert!(ResizeStatus::parse(r).is_some(), "{r} is not accepted");
            }
        }
    }
}

impl Drop for Recorder {
    fn drop(&mut self) {
        self.task.abort();
    }
}

fn config(phases: PhaseDelays) -> SimulatorConfig {
    SimulatorConfig {
        expand_delay: phases.total(),
        phase_delays: Some(phases),
        resync_interval: Duration::from_millis(200),
    }
}

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

fn ext4_volume(dir: &Path, name: &str, mib: u64) -> Arc<Volume> {
    Arc::new(Volume::create_with(&dir.join(name), mib * MIB, FilesystemKind::Ext4).unwrap())
}

#[tokio::test]
async fn simulator_expansion_passes_through_every_state() {
    init_tracing();
    let (_sandbox, client) = sandbox_with_class().await;
    let api: Api<PersistentVolumeClaim> = Api::namespaced(client.clone(), NS);
    let dir = tempdir();
    let vol = ext4_volume(dir.path(), "pg-1", 64);
    std::fs::write(vol.path().join("keep"), b"data").unwrap();
    let sim = VolumeSimulator::start(
        client,
        NS,
        config(PhaseDelays {
            controller: ms(150),
            node_pending: ms(100),
            node: ms(100),
        }),
    )
    .await
    .unwrap();
    let recorder = Recorder::start(&api, "pg-1");
    // Registered before the PVC exists: picked up from the watch.
    sim.register("pg-1", vol.clone());
    create_pvc(&api, "pg-1", "64Mi").await;
    let pvc = wait_pvc(&api, "pg-1", "bound", |p| capacity(p).is_some()).await;
    // The PVC shows the device; the filesystem on it is smaller.
    assert_eq!(capacity(&pvc).as_deref(), Some("64Mi"));
    assert_eq!(pvc.status.as_ref().unwrap().phase.as_deref(), Some("Bound"));
    assert_eq!(vol.stats().unwrap().total_bytes, 57_380_864);

    request(&api, "pg-1", "128Mi").await;
    let done = State::at_rest("128Mi", Some("128Mi"));
    recorder
        .wait_for("the end of the expansion", |s| *s == done)
        .await;
    assert_eq!(
        recorder.since(&State::at_rest("64Mi", None)),
        vec![
            State::at_rest("64Mi", None),
            State::step(
                ResizeStatus::ControllerResizeInProgress,
                &["Resizing"],
                "64Mi",
                "128Mi"
            ),
            State::step(
                ResizeStatus::NodeResizePending,
                &["FileSystemResizePending"],
                "64Mi",
                "128Mi"
            ),
            State::step(
                ResizeStatus::NodeResizeInProgress,
                &["FileSystemResizePending"],
                "64Mi",
                "128Mi"
            ),
            done.clone(),
        ]
    );
    assert_eq!(
        recorder.message("FileSystemResizePending").as_deref(),
        Some(FS_RESIZE_PENDING_MESSAGE)
    );
    recorder.assert_only_allowed_statuses();
    assert_eq!(vol.capacity_bytes(), 128 * MIB);
    let stats = vol.stats().unwrap();
    assert_eq!(
        stats.total_bytes,
        model_total_bytes(FilesystemKind::Ext4, 128 * MIB).unwrap()
    );
    assert_eq!(stats.inodes_total, 32768);
    assert_eq!(std::fs::read(vol.path().join("keep")).unwrap(), b"data");

    // Resyncs do not expand again.
    tokio::time::sleep(ms(1000)).await;
    let exp = sim.expansions();
    assert_eq!(exp.len(), 1, "{exp:?}");
    assert_eq!((exp[0].from_bytes, exp[0].to_bytes), (64 * MIB, 128 * MIB));
    assert_eq!(recorder.states().last(), Some(&done));

    // A second growth in another notation, across ext4 size classes: the
    // PVC says 1Gi, the filesystem keeps its 64 MiB-era geometry.
    request(&api, "pg-1", "1.0Gi").await;
    wait_pvc(&api, "pg-1", "capacity 1.0Gi", |p| {
        capacity(p).as_deref() == Some("1.0Gi")
    })
    .await;
    let stats = vol.stats().unwrap();
    assert_eq!(
        stats.total_bytes,
        model_grown_total_bytes(FilesystemKind::Ext4, 64 * MIB, GIB).unwrap()
    );
    assert!(stats.total_bytes < GIB);
    assert_eq!(stats.inodes_total, 262_144);
    assert_eq!(sim.expansions().len(), 2);
}

#[tokio::test]
async fn simulator_expand_delay_alone_still_drives_all_phases() {
    init_tracing();
    let (_sandbox, client) = sandbox_with_class().await;
    let api: Api<PersistentVolumeClaim> = Api::namespaced(client.clone(), NS);
    let dir = tempdir();
    let vol = volume(dir.path(), "raw", 32);
    let cfg = SimulatorConfig {
        expand_delay: ms(400),
        ..SimulatorConfig::default()
    };
    assert_eq!(cfg.delays().total(), ms(400));
    assert_eq!(cfg.delays(), PhaseDelays::split(ms(400)));
    let sim = VolumeSimulator::start(client, NS, cfg).await.unwrap();
    let recorder = Recorder::start(&api, "raw");
    create_pvc(&api, "raw", "32Mi").await;
    sim.register("raw", vol.clone());
    wait_pvc(&api, "raw", "bound", |p| capacity(p).is_some()).await;
    request(&api, "raw", "48Mi").await;
    let done = State::at_rest("48Mi", Some("48Mi"));
    recorder
        .wait_for("the end of the expansion", |s| *s == done)
        .await;
    let resizes: Vec<Option<String>> = recorder
        .since(&State::at_rest("32Mi", None))
        .into_iter()
        .map(|s| s.resize)
        .collect();
    assert_eq!(
        resizes,
        [
            None,
            Some("ControllerResizeInProgress".into()),
            Some("NodeResizePending".into()),
            Some("NodeResizeInProgress".into()),
            None
        ]
    );
    // Raw volumes: the filesystem is the device.
    assert_eq!(vol.stats().unwrap().total_bytes, 48 * MIB);
}

#[tokio::test]
async fn simulator_controller_refusal_and_stall() {
    init_tracing();
    let (_sandbox, client) = sandbox_with_class().await;
    let api: Api<PersistentVolumeClaim> = Api::namespaced(client.clone(), NS);
    let dir = tempdir();
    let failing = volume(dir.path(), "failing", 32);
    let stalled = volume(dir.path(), "stalled", 32);
    create_pvc(&api, "failing", "32Mi").await;
    create_pvc(&api, "stalled", "32Mi").await;
    let sim = VolumeSimulator::start(
        client,
        NS,
        config(PhaseDelays {
            controller: ms(100),
            node_pending: ms(50),
            node: ms(50),
        }),
    )
    .await
    .unwrap();
    let failing_rec = Recorder::start(&api, "failing");
    let stalled_rec = Recorder::start(&api, "stalled");
    // Registered after the PVCs exist.
    sim.register("failing", failing.clone());
    sim.register("stalled", stalled.clone());
    assert!(sim.set_mode(
        "failing",
        ExpansionMode::Fail {
            message: "quota exceeded in the storage backend".into()
        }
    ));
    assert!(sim.set_mode("stalled", ExpansionMode::Stall));
    assert!(!sim.set_mode("unknown", ExpansionMode::Stall));
    for name in ["failing", "stalled"] {
        wait_pvc(&api, name, "bound", |p| capacity(p).is_some()).await;
        request(&api, name, "64Mi").await;
    }

    let refused = State::step(
        ResizeStatus::ControllerResizeInfeasible,
        &["ControllerResizeError"],
        "32Mi",
        "64Mi",
    );
    failing_rec.wait_for("infeasible", |s| *s == refused).await;
    assert_eq!(
        failing_rec.since(&State::at_rest("32Mi", None)),
        vec![
            State::at_rest("32Mi", None),
            State::step(
                ResizeStatus::ControllerResizeInProgress,
                &["Resizing"],
                "32Mi",
                "64Mi"
            ),
            refused.clone(),
        ]
    );
    assert_eq!(
        failing_rec.message("ControllerResizeError").as_deref(),
        Some("quota exceeded in the storage backend")
    );
    let in_progress = State::step(
        ResizeStatus::ControllerResizeInProgress,
        &["Resizing"],
        "32Mi",
        "64Mi",
    );
    stalled_rec
        .wait_for("Resizing", |s| *s == in_progress)
        .await;

    // Several delays and resyncs later neither has moved on or grown.
    tokio::time::sleep(ms(1000)).await;
    assert_eq!(failing_rec.states().last(), Some(&refused));
    assert_eq!(stalled_rec.states().last(), Some(&in_progress));
    for vol in [&failing, &stalled] {
        assert_eq!(vol.capacity_bytes(), 32 * MIB);
    }
    assert!(sim.expansions().is_empty());

    // Fixing the backend lets the pending request through, via every state.
    sim.set_mode("failing", ExpansionMode::Expand);
    let done = State::at_rest("64Mi", Some("64Mi"));
    failing_rec.wait_for("expanded", |s| *s == done).await;
    let after: Vec<Option<String>> = failing_rec
        .since(&refused)
        .into_iter()
        .map(|s| s.resize)
        .collect();
    assert_eq!(
        after,
        [
            Some("ControllerResizeInfeasible".into()),
            Some("ControllerResizeInProgress".into()),
            Some("NodeResizePending".into()),
            Some("NodeResizeInProgress".into()),
            None
        ]
    );
    assert_eq!(failing.stats().unwrap().total_bytes, 64 * MIB);
    assert_eq!(stalled.capacity_bytes(), 32 * MIB);
    failing_rec.assert_only_allowed_statuses();
    stalled_rec.assert_only_allowed_statuses();
}

#[tokio::test]
async fn simulator_node_refusal_reports_node_resize_infeasible() {
    init_tracing();
    let (_sandbox, client) = sandbox_with_class().await;
    let api: Api<PersistentVolumeClaim> = Api::namespaced(client.clone(), NS);
    let dir = tempdir();
    let vol = ext4_volume(dir.path(), "node", 64);
    let sim = VolumeSimulator::start(
        client,
        NS,
        config(PhaseDelays {
            controller: ms(50),
            node_pending: ms(50),
            node: ms(100),
        }),
    )
    .await
    .unwrap();
    let recorder = Recorder::start(&api, "node");
    sim.register("node", vol.clone());
    sim.set_mode(
        "node",
        ExpansionMode::NodeFail {
            message: "resize2fs: Permission denied".into(),
        },
    );
    create_pvc(&api, "node", "64Mi").await;
    wait_pvc(&api, "node", "bound", |p| capacity(p).is_some()).await;
    request(&api, "node", "96Mi").await;

    let refused = State::step(
        ResizeStatus::NodeResizeInfeasible,
        &["FileSystemResizePending", "NodeResizeError"],
        "64Mi",
        "96Mi",
    );
    recorder
        .wait_for("node infeasible", |s| *s == refused)
        .await;
    assert_eq!(
        recorder.since(&State::at_rest("64Mi", None)),
        vec![
            State::at_rest("64Mi", None),
            State::step(
                ResizeStatus::ControllerResizeInProgress,
                &["Resizing"],
                "64Mi",
                "96Mi"
            ),
            State::step(
                ResizeStatus::NodeResizePending,
                &["FileSystemResizePending"],
                "64Mi",
                "96Mi"
            ),
            State::step(
                ResizeStatus::NodeResizeInProgress,
                &["FileSystemResizePending"],
                "64Mi",
                "96Mi"
            ),
            refused.clone(),
        ]
    );
    assert_eq!(
        recorder.message("NodeResizeError").as_deref(),
        Some("failed to expand pvc with resize2fs: Permission denied")
    );
    // Not retried; the filesystem is the old one.
    tokio::time::sleep(ms(1000)).await;
    assert_eq!(recorder.states().last(), Some(&refused));
    assert_eq!(vol.capacity_bytes(), 64 * MIB);
    assert_eq!(vol.stats().unwrap().total_bytes, 57_380_864);
    assert!(sim.expansions().is_empty());

    sim.set_mode("node", ExpansionMode::Expand);
    let done = State::at_rest("96Mi", Some("96Mi"));
    recorder.wait_for("expanded", |s| *s == done).await;
    assert_eq!(
        vol.stats().unwrap().total_bytes,
        model_total_bytes(FilesystemKind::Ext4, 96 * MIB).unwrap()
    );
    recorder.assert_only_allowed_statuses();
}

#[tokio::test]
async fn simulator_node_stall_keeps_the_old_filesystem_until_resumed() {
    init_tracing();
    let (_sandbox, client) = sandbox_with_class().await;
    let api: Api<PersistentVolumeClaim> = Api::namespaced(client.clone(), NS);
    let dir = tempdir();
    let vol = ext4_volume(dir.path(), "offline", 64);
    let sim = VolumeSimulator::start(
        client,
        NS,
        config(PhaseDelays {
            controller: ms(50),
            node_pending: ms(50),
            node: ms(50),
        }),
    )
    .await
    .unwrap();
    let recorder = Recorder::start(&api, "offline");
    sim.register("offline", vol.clone());
    sim.set_mode("offline", ExpansionMode::StallNode);
    create_pvc(&api, "offline", "64Mi").await;
    wait_pvc(&api, "offline", "bound", |p| capacity(p).is_some()).await;
    request(&api, "offline", "128Mi").await;

    let pending = State::step(
        ResizeStatus::NodeResizePending,
        &["FileSystemResizePending"],
        "64Mi",
        "128Mi",
    );
    recorder
        .wait_for("NodeResizePending", |s| *s == pending)
        .await;
    tokio::time::sleep(ms(1000)).await;
    // The volume was expanded by the controller, not yet on the node: the
    // filesystem (what the product measures) is still the 64 MiB one.
    assert_eq!(recorder.states().last(), Some(&pending));
    assert_eq!(vol.stats().unwrap().total_bytes, 57_380_864);
    assert_eq!(vol.stats().unwrap().inodes_total, 16384);

    // A pod mounts it again: the kubelet finishes from where it was.
    sim.set_mode("offline", ExpansionMode::Expand);
    let done = State::at_rest("128Mi", Some("128Mi"));
    recorder.wait_for("expanded", |s| *s == done).await;
    assert_eq!(
        recorder.since(&pending),
        vec![
            pending.clone(),
            State::step(
                ResizeStatus::NodeResizeInProgress,
                &["FileSystemResizePending"],
                "64Mi",
                "128Mi"
            ),
            done,
        ]
    );
    assert_eq!(vol.stats().unwrap().inodes_total, 32768);
    assert_eq!(sim.expansions().len(), 1);
    recorder.assert_only_allowed_statuses();
}

#[tokio::test]
async fn simulator_resizes_only_bound_claims_and_keeps_other_conditions() {
    init_tracing();
    let (_sandbox, client) = sandbox_with_class().await;
    let api: Api<PersistentVolumeClaim> = Api::namespaced(client.clone(), NS);
    let dir = tempdir();
    let vol = volume(dir.path(), "pending", 32);
    // A claim asking for more than it has while not bound (e.g. a PV
    // controller hiccup): nothing may resize it.
    create_pvc(&api, "pending", "64Mi").await;
    api.patch_status(
        "pending",
        &PatchParams::default(),
        &Patch::Merge(
            json!({"status": {"phase": "Pending", "capacity": {"storage": "32Mi"},
            "conditions": [{"type": "ModifyingVolume", "status": "True"}]}}),
        ),
    )
    .await
    .unwrap();
    let sim = VolumeSimulator::start(
        client,
        NS,
        config(PhaseDelays {
            controller: ms(50),
            node_pending: ms(50),
            node: ms(50),
        }),
    )
    .await
    .unwrap();
    let recorder = Recorder::start(&api, "pending");
    sim.register("pending", vol.clone());
    tokio::time::sleep(ms(1000)).await;
    let pvc = api.get("pending").await.unwrap();
    assert_eq!(resize_status(&pvc), None, "{:?}", pvc.status);
    assert_eq!(vol.capacity_bytes(), 32 * MIB);
    assert!(sim.expansions().is_empty());

    // Once bound it is expanded; a condition that is not about resizing stays.
    api.patch_status(
        "pending",
        &PatchParams::default(),
        &Patch::Merge(json!({"status": {"phase": "Bound"}})),
    )
    .await
    .unwrap();
    let pvc = wait_pvc(&api, "pending", "capacity 64Mi", |p| {
        capacity(p).as_deref() == Some("64Mi")
    })
    .await;
    assert_eq!(condition_types(&pvc), ["ModifyingVolume"]);
    assert_eq!(vol.capacity_bytes(), 64 * MIB);
    recorder
        .wait_for("Resizing next to ModifyingVolume", |s| {
            s.conditions == ["ModifyingVolume=True", "Resizing=True"]
        })
        .await;
    recorder.assert_only_allowed_statuses();
}
