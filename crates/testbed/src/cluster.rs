//! A CloudNativePG-shaped cluster in one call: instances `<cluster>-1`,
//! `<cluster>-2`, … (the first is the primary, the others stream from it),
//! each with its volumes named like the PVCs CNPG creates:
//!
//! | volume | PVC name | role label |
//! |---|---|---|
//! | data | `<pod>` | `PG_DATA` |
//! | WAL (optional) | `<pod>-wal` | `PG_WAL` |
//! | tablespace `<name>` | `<pod>-tbs-<name>` | `PG_TABLESPACE` |
//!
//! so tests can create matching PVC objects and register the volumes with
//! the [`crate::VolumeSimulator`] under the same names.
//!
//! # CloudNativePG's HA replication slots
//!
//! On by default ([`PgClusterBuilder::ha_slots`]), as in CNPG
//! (`spec.replicationSlots.highAvailability.enabled` defaults to true). What
//! CNPG's instance manager does (`internal/management/controller/slots` in
//! cloudnative-pg), this cluster does too:
//!
//! - slot names are [`ha_slot_name`]: the prefix (default `_cnpg_`) plus the
//!   instance name, lower-cased, every run of characters outside `[a-z0-9_]`
//!   replaced by `_` (`GetSlotNameFromInstanceName`);
//! - the **primary** holds one physical slot per other instance of the
//!   Cluster's `status.instanceNames` (when the CloudNativePG stand-in
//!   writes it, see [`PgCluster::follow_instance_names`]; else per running
//!   standby), created without reserving WAL
//!   (`pg_create_physical_replication_slot(name, false)`), and drops
//!   inactive HA slots of instances not in that list
//!   (`reconcilePrimaryReplicationSlots`); each standby streams through its
//!   own slot (`primary_slot_name`), so that slot is active while it streams;
//! - every **standby**, each `updateInterval` (default 30 s), reads the
//!   primary's slots and, for every HA slot but its own that has a
//!   `restart_lsn`, creates a local copy (reserving WAL) and moves it with
//!   `pg_replication_slot_advance(slot, <the primary's restart_lsn of that
//!   slot>)`; local HA slots absent from the primary, its own slot and slots
//!   holding an xmin are dropped (`synchronizeReplicationSlots`). These
//!   copies are inactive by construction, and between two advances they
//!   retain all the WAL the standby replayed since — on a write-heavy
//!   cluster far more than a small `maxSlotRetentionBytes`.
//!
//! So a standby holds copies of the *other standbys'* slots: a two-instance
//! cluster has none on its standby (the primary has no HA slot of its own);
//! three instances are needed to see them.
//!
//! CNPG also copies user-created physical slots of the primary to standbys
//! (`synchronizeReplicas`, on by default) and drops user slots a standby
//! holds that the primary lacks; so does the test bed, unless
//! [`HaSlots::synchronize_user_slots`] is off.

use crate::postgres::{physical_slots, PgEndpoint};
use crate::volume::FilesystemKind;
use crate::{PgServer, PgServerBuilder, Volume};
use anyhow::{bail, Context, Result};
use std::collections::BTreeSet;
use std::net::Ipv4Addr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};
use tokio::task::JoinHandle;

pub use crate::postgres::SlotInfo;

/// CNPG's default `spec.replicationSlots.highAvailability.slotPrefix`.
pub const DEFAULT_SLOT_PREFIX: &str = "_cnpg_";

/// The role of a volume, as CNPG's `cnpg.io/pvcRole` label says it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum VolumeRole {
    /// `PG_DATA`.
    Data,
    /// `PG_WAL`.
    Wal,
    /// `PG_TABLESPACE` with its tablespace name.
    Tablespace(String),
}

impl VolumeRole {
    /// The `cnpg.io/pvcRole` label value.
    pub fn label(&self) -> &'static str {
        match self {
            VolumeRole::Data => "PG_DATA",
            VolumeRole::Wal => "PG_WAL",
            VolumeRole::Tablespace(_) => "PG_TABLESPACE",
        }
    }

    /// The PVC name CNPG gives this volume of instance `pod`.
    pub fn pvc_name(&self, pod: &str) -> String {
        match self {
            VolumeRole::Data => pod.to_string(),
            VolumeRole::Wal => format!("{pod}-wal"),
            VolumeRole::Tablespace(name) => format!("{pod}-tbs-{}", tablespace_k8s_name(name)),
        }
    }
}

/// A tablespace's name made a valid Kubernetes name as CloudNativePG makes
/// it for PVC and volume names: a leading `_` becomes `1`, `$` and `_`
/// become `-`, letters are lowercased (`_Scratch$1` → `1scratch-1`).
pub fn tablespace_k8s_name(name: &str) -> String {
    let name = match name.strip_prefix('_') {
        Some(rest) => format!("1{rest}"),
        None => name.to_string(),
    };
    name.replace(['$', '_'], "-").to_lowercase()
}

/// One volume of an instance.
#[derive(Debug, Clone)]
pub struct InstanceVolume {
    /// The PVC name CNPG would give it.
    pub pvc_name: String,
    /// Its role.
    pub role: VolumeRole,
    /// The volume.
    pub volume: Arc<Volume>,
}

/// One instance (pod) of a [`PgCluster`].
#[derive(Debug)]
pub struct PgInstance {
    /// Pod / instance name, e.g. `cluster-example-1`.
    pub name: String,
    /// Its volumes (data first).
    pub volumes: Vec<InstanceVolume>,
    /// The PostgreSQL server; its listen address stands in for the pod IP.
    pub server: PgServer,
}

/// CNPG's `spec.replicationSlots` as far as HA slots go.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HaSlots {
    /// `highAvailability.slotPrefix` (default `_cnpg_`).
    pub slot_prefix: String,
    /// `updateInterval`: how often standbys copy and advance the slots
    /// (CNPG: 30 s; shorter in tests).
    pub update_interval: Duration,
    /// `synchronizeReplicas.enabled`: also copy the primary's user-created
    /// physical slots to standbys (and drop a standby's user slots the
    /// primary lacks). On by default, as in CNPG.
    pub synchronize_user_slots: bool,
}

impl Default for HaSlots {
    fn default() -> Self {
        HaSlots {
            slot_prefix: DEFAULT_SLOT_PREFIX.to_string(),
            update_interval: Duration::from_secs(30),
            synchronize_user_slots: true,
        }
    }
}

/// Where the primary learns which instances the Cluster has: CNPG's
/// `status.instanceNames` (None while unknown).
pub type InstanceNames = Arc<dyn Fn() -> Option<Vec<String>> + Send + Sync>;

struct NamesSource(InstanceNames);

impl std::fmt::Debug for NamesSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("NamesSource(status.instanceNames)")
    }
}

/// CNPG's HA slot name for `instance` (`GetSlotNameFromInstanceName`):
/// `prefix + instance`, lower-cased, each run of characters outside
/// `[a-z0-9_]` replaced by one `_`.
pub fn ha_slot_name(prefix: &str, instance: &str) -> String {
    let mut out = String::new();
    let mut in_bad_run = false;
    for c in format!("{prefix}{instance}").to_lowercase().chars() {
        if c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_' {
            out.push(c);
            in_bad_run = false;
        } else if !in_bad_run {
            out.push('_');
            in_bad_run = true;
        }
    }
    out
}

/// Capacities of one instance's volumes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VolumeSizes {
    /// Data volume bytes.
    pub data: u64,
    /// WAL volume bytes, if the instance has a separate WAL volume.
    pub wal: Option<u64>,
    /// Tablespace name and bytes.
    pub tablespaces: Vec<(String, u64)>,
}

/// Builder of a [`PgCluster`].
#[derive(Debug, Clone)]
pub struct PgClusterBuilder {
    name: String,
    instances: usize,
    data_bytes: u64,
    wal_bytes: Option<u64>,
    tablespaces: Vec<(String, u64)>,
    ha: Option<HaSlots>,
    filesystem: FilesystemKind,
}

impl PgClusterBuilder {
    /// What the volumes' filesystems look like (default: ext4's overhead, as
    /// in production).
    pub fn filesystem(mut self, kind: FilesystemKind) -> Self {
        self.filesystem = kind;
        self
    }

    /// Number of instances (default 1): one primary, the rest replicas.
    pub fn instances(mut self, n: usize) -> Self {
        self.instances = n;
        self
    }

    /// Capacity of each data volume (default 256 MiB).
    pub fn data_size(mut self, bytes: u64) -> Self {
        self.data_bytes = bytes;
        self
    }

    /// Give each instance a separate WAL volume of this capacity.
    pub fn wal_size(mut self, bytes: u64) -> Self {
        self.wal_bytes = Some(bytes);
        self
    }

    /// Add tablespace `name` with a volume of this capacity per instance.
    pub fn tablespace(mut self, name: &str, bytes: u64) -> Self {
        self.tablespaces.push((name.to_string(), bytes));
        self
    }

    /// CNPG's HA replication slots (default: on, with [`HaSlots::default`]);
    /// `None` turns them off (`highAvailability.enabled: false`): standbys
    /// then stream without a slot.
    pub fn ha_slots(mut self, config: Option<HaSlots>) -> Self {
        self.ha = config;
        self
    }

    /// Create the volumes and start the instances; returns once every
    /// replica streams from the primary.
    pub async fn start(self) -> Result<PgCluster> {
        if self.instances == 0 {
            bail!("cluster {} needs at least one instance", self.name);
        }
        let base = tempfile::Builder::new()
            .prefix(&format!("cnpg-testbed-{}-", self.name))
            .tempdir()
            .context("creating the cluster's base directory")?;
        // PostgreSQL (as `postgres` when we are root) must traverse it.
        {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(base.path(), std::fs::Permissions::from_mode(0o755))
                .with_context(|| format!("chmod 755 {}", base.path().display()))?;
        }
        let slots = self.ha.clone().map(SlotSync::new);
        let mut cluster = PgCluster {
            slots,
            filesystem: self.filesystem,
            name: self.name.clone(),
            instances: Vec::new(),
            base,
        };
        let sizes = VolumeSizes {
            data: self.data_bytes,
            wal: self.wal_bytes,
            tablespaces: self.tablespaces.clone(),
        };
        for i in 1..=self.instances {
            let pod = format!("{}-{i}", self.name);
            let volumes = cluster.create_volumes(&pod, &sizes)?;
            let data = volumes[0].volume.clone();
            let wal = volumes
                .iter()
                .find(|v| v.role == VolumeRole::Wal)
                .map(|v| v.volume.clone());
            let server = match cluster.instances.first() {
                None => {
                    let mut b = PgServer::primary(&pod, data);
                    if let Some(w) = wal {
                        b = b.wal_volume(w);
                    }
                    let server = b.start().await?;
                    for v in &volumes {
                        if let VolumeRole::Tablespace(name) = &v.role {
                            server.create_tablespace(name, v.volume.clone()).await?;
                        }
                    }
                    server
                }
                Some(primary) => {
                    if let Some(slots) = &cluster.slots {
                        slots.set_joining(&pod, true);
                        slots.reconcile_primary().await?;
                    }
                    let server = cluster
                        .replica_builder(&primary.server, &pod, &volumes, None)?
                        .start()
                        .await?;
                    primary
                        .server
                        .wait_for_streaming_replica(&pod, Duration::from_secs(60))
                        .await?;
                    server
                }
            };
            cluster.instances.push(PgInstance {
                name: pod,
                volumes,
                server,
            });
            cluster.update_topology();
        }
        if let Some(slots) = &cluster.slots {
            slots.spawn();
        }
        Ok(cluster)
    }
}

/// A running CNPG-shaped cluster; dropping it stops every server and
/// removes every volume.
#[derive(Debug)]
pub struct PgCluster {
    /// Declared first: the slot synchroniser stops before the servers.
    slots: Option<SlotSync>,
    filesystem: FilesystemKind,
    name: String,
    /// Declared before `base`: servers and volumes go first on drop.
    instances: Vec<PgInstance>,
    base: tempfile::TempDir,
}

impl PgCluster {
    /// Start describing cluster `name` (e.g. `cluster-example`).
    pub fn builder(name: &str) -> PgClusterBuilder {
        PgClusterBuilder {
            name: name.to_string(),
            instances: 1,
            data_bytes: 256 << 20,
            wal_bytes: None,
            tablespaces: Vec::new(),
            ha: Some(HaSlots::default()),
            filesystem: FilesystemKind::Ext4,
        }
    }

    /// The cluster name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The primary (instance `<cluster>-1`).
    pub fn primary(&self) -> &PgInstance {
        &self.instances[0]
    }

    /// All instances, primary first.
    pub fn instances(&self) -> &[PgInstance] {
        &self.instances
    }

    /// The instance named `name`.
    pub fn instance(&self, name: &str) -> Option<&PgInstance> {
        self.instances.iter().find(|i| i.name == name)
    }

    /// Every volume of every instance, with its PVC name.
    pub fn volumes(&self) -> impl Iterator<Item = &InstanceVolume> {
        self.instances.iter().flat_map(|i| i.volumes.iter())
    }

    /// The HA slot configuration, `None` when HA slots are off.
    pub fn ha_slots(&self) -> Option<&HaSlots> {
        self.slots.as_ref().map(|s| &s.shared.config)
    }

    /// The HA slot of `instance` (on the primary; copied to the other
    /// standbys), `None` when HA slots are off.
    pub fn ha_slot_name(&self, instance: &str) -> Option<String> {
        self.ha_slots()
            .map(|c| ha_slot_name(&c.slot_prefix, instance))
    }

    /// Keep one HA slot on the primary per other instance that `names`
    /// lists (CNPG's `status.instanceNames`), as CNPG's primary does, rather
    /// than per running standby. A no-op without HA slots.
    pub fn follow_instance_names(&self, names: InstanceNames) {
        if let Some(s) = &self.slots {
            *lock(&s.shared.instance_names) = Some(NamesSource(names));
        }
    }

    /// Counters of the HA slot synchroniser (zero when HA slots are off).
    pub fn slot_sync_stats(&self) -> SlotSyncStats {
        self.slots
            .as_ref()
            .map(|s| s.shared.stats())
            .unwrap_or_default()
    }

    /// Run one synchronisation round now (primary slots, then every
    /// standby's copies), besides the periodic ones. A no-op without HA slots.
    pub async fn sync_slots_now(&self) -> Result<()> {
        match &self.slots {
            Some(s) => s.shared.round().await,
            None => Ok(()),
        }
    }

    /// New, empty volumes for instance `pod`, named like its PVCs, in this
    /// cluster's directory (never reusing a path still in use).
    pub fn create_volumes(&self, pod: &str, sizes: &VolumeSizes) -> Result<Vec<InstanceVolume>> {
        let mut roles = vec![(VolumeRole::Data, sizes.data)];
        if let Some(bytes) = sizes.wal {
            roles.push((VolumeRole::Wal, bytes));
        }
        for (name, bytes) in &sizes.tablespaces {
            roles.push((VolumeRole::Tablespace(name.clone()), *bytes));
        }
        let mut out = Vec::new();
        for (role, bytes) in roles {
            let pvc_name = role.pvc_name(pod);
            let mut path = self.base.path().join(&pvc_name);
            let mut generation = 1;
            // A volume of a removed instance may still be referenced (and
            // mounted) elsewhere for a moment: never reuse its path.
            while path.exists() {
                generation += 1;
                path = self.base.path().join(format!("{pvc_name}.{generation}"));
            }
            let volume = Arc::new(Volume::create_with(&path, bytes, self.filesystem)?);
            out.push(InstanceVolume {
                pvc_name,
                role,
                volume,
            });
        }
        Ok(out)
    }

    /// Stop instance `name` (a standby) and take it out of the cluster; the
    /// caller owns its volumes. Its HA slot on the primary is dropped, as
    /// CNPG's primary drops the slots of instances that are gone.
    pub async fn remove_instance(&mut self, name: &str) -> Result<PgInstance> {
        let Some(index) = self.instances.iter().position(|i| i.name == name) else {
            bail!("cluster {} has no instance {name}", self.name);
        };
        if index == 0 {
            bail!(
                "{name} is the primary of {}; only standbys can be removed",
                self.name
            );
        }
        self.instances[index]
            .server
            .stop()
            .await
            .with_context(|| format!("stopping {name}"))?;
        let instance = self.instances.remove(index);
        self.update_topology();
        if let Some(slots) = &self.slots {
            // Best effort: the WAL sender may take a moment to let go of the
            // slot; the periodic round drops it otherwise.
            if let Err(e) = slots.reconcile_primary().await {
                tracing::debug!(instance = name, error = %format!("{e:#}"), "HA slot not dropped yet");
            }
        }
        Ok(instance)
    }

    /// Start cloning a new standby `name` onto `volumes` in the background,
    /// as CNPG's join Job does: `pg_basebackup` from the primary; when it
    /// fails (e.g. the volume is too small) the volumes are emptied and it
    /// is retried every `options.retry_interval` until it succeeds or
    /// `options.timeout` passes; then PostgreSQL starts as a streaming
    /// standby. [`PgCluster::finish_join`] waits for it and adds the instance.
    pub async fn begin_join(
        &self,
        name: &str,
        volumes: Vec<InstanceVolume>,
        options: JoinOptions,
    ) -> Result<PendingJoin> {
        if self.instance(name).is_some() {
            bail!("cluster {} already has an instance {name}", self.name);
        }
        if !volumes.iter().any(|v| v.role == VolumeRole::Data) {
            bail!("instance {name} needs a data volume");
        }
        if let Some(slots) = &self.slots {
            // The primary creates the slot of every instance it knows of.
            slots.set_joining(name, true);
            slots.reconcile_primary().await?;
        }
        let ip = crate::net::next_loopback_ip()?;
        let builder = self.replica_builder(&self.primary().server, name, &volumes, Some(ip))?;
        let progress = JoinProgress::default();
        let task = tokio::spawn(join_loop(
            name.to_string(),
            builder,
            options,
            progress.clone(),
        ));
        Ok(PendingJoin {
            name: name.to_string(),
            ip,
            volumes,
            progress,
            task: Some(task),
            slots: self.slots.as_ref().map(|s| s.shared.clone()),
        })
    }

    /// Wait for a join to finish and add the new standby to the cluster;
    /// returns once it streams from the primary.
    pub async fn finish_join(&mut self, mut join: PendingJoin) -> Result<&PgInstance> {
        let task = join.task.take().context("join already finished")?;
        let name = join.name.clone();
        let joined = match task.await {
            Ok(result) => result,
            Err(e) => Err(anyhow::Error::new(e).context("the join task panicked or was cancelled")),
        };
        let server = match joined {
            Ok(server) => server,
            Err(e) => {
                if let Some(slots) = &self.slots {
                    slots.set_joining(&name, false);
                }
                return Err(e.context(format!("joining {name} to {}", self.name)));
            }
        };
        if let Err(e) = self
            .primary()
            .server
            .wait_for_streaming_replica(&name, Duration::from_secs(60))
            .await
        {
            if let Some(slots) = &self.slots {
                slots.set_joining(&name, false);
            }
            return Err(e);
        }
        self.instances.push(PgInstance {
            name: name.clone(),
            volumes: std::mem::take(&mut join.volumes),
            server,
        });
        self.update_topology();
        let index = self.instances.len() - 1;
        Ok(&self.instances[index])
    }

    /// [`PgCluster::begin_join`] then [`PgCluster::finish_join`].
    pub async fn add_replica(
        &mut self,
        name: &str,
        volumes: Vec<InstanceVolume>,
        options: JoinOptions,
    ) -> Result<&PgInstance> {
        let join = self.begin_join(name, volumes, options).await?;
        self.finish_join(join).await
    }

    fn replica_builder(
        &self,
        primary: &PgServer,
        name: &str,
        volumes: &[InstanceVolume],
        ip: Option<Ipv4Addr>,
    ) -> Result<PgServerBuilder> {
        let data = volumes
            .iter()
            .find(|v| v.role == VolumeRole::Data)
            .context("no data volume")?;
        let mut b = primary.replica(name, data.volume.clone());
        for v in volumes {
            match &v.role {
                VolumeRole::Data => {}
                VolumeRole::Wal => b = b.wal_volume(v.volume.clone()),
                VolumeRole::Tablespace(t) => b = b.tablespace_volume(t, v.volume.clone()),
            }
        }
        if let Some(slot) = self.ha_slot_name(name) {
            b = b.primary_slot_name(&slot);
        }
        if let Some(ip) = ip {
            b = b.ip(ip);
        }
        Ok(b)
    }

    fn update_topology(&self) {
        if let Some(slots) = &self.slots {
            let mut topo = lock(&slots.shared.topology);
            topo.primary = self.instances.first().map(|i| i.server.endpoint());
            topo.standbys = self.instances[1..]
                .iter()
                .map(|i| i.server.endpoint())
                .collect();
            let names: BTreeSet<&str> = self.instances.iter().map(|i| i.name.as_str()).collect();
            topo.joining.retain(|j| !names.contains(j.as_str()));
        }
    }
}

/// Counters of the HA slot synchroniser.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SlotSyncStats {
    /// Rounds completed (periodic and [`PgCluster::sync_slots_now`]).
    pub rounds: u64,
    /// `pg_replication_slot_advance` calls that succeeded on standbys.
    pub advances: u64,
    /// Errors met (a standby down, an advance refused, …).
    pub errors: u64,
    /// The latest error.
    pub last_error: Option<String>,
}

/// Timing of a join (base backup of a new standby).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JoinOptions {
    /// Pause between two attempts (CNPG retries a failed join Job).
    pub retry_interval: Duration,
    /// Give up after this long.
    pub timeout: Duration,
}

impl Default for JoinOptions {
    fn default() -> Self {
        JoinOptions {
            retry_interval: Duration::from_secs(3),
            timeout: Duration::from_secs(300),
        }
    }
}

/// One base backup attempt of a join.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JoinAttempt {
    /// When it ended.
    pub at: jiff::Timestamp,
    /// `None` when it succeeded, else what failed.
    pub error: Option<String>,
}

/// What a join has done so far; cloneable, so a test can watch it while
/// the join runs.
#[derive(Debug, Clone, Default)]
pub struct JoinProgress(Arc<Mutex<Vec<JoinAttempt>>>);

impl JoinProgress {
    /// Every attempt so far, in order.
    pub fn attempts(&self) -> Vec<JoinAttempt> {
        lock(&self.0).clone()
    }

    /// Number of failed attempts.
    pub fn failures(&self) -> usize {
        lock(&self.0).iter().filter(|a| a.error.is_some()).count()
    }

    /// Whether an attempt succeeded.
    pub fn succeeded(&self) -> bool {
        lock(&self.0).iter().any(|a| a.error.is_none())
    }

    fn record(&self, error: Option<String>) {
        lock(&self.0).push(JoinAttempt {
            at: jiff::Timestamp::now(),
            error,
        });
    }
}

/// A standby being cloned; see [`PgCluster::begin_join`]. Dropping it
/// cancels the join (and stops the server if it already started).
#[derive(Debug)]
pub struct PendingJoin {
    name: String,
    ip: Ipv4Addr,
    volumes: Vec<InstanceVolume>,
    progress: JoinProgress,
    task: Option<JoinHandle<Result<PgServer>>>,
    slots: Option<Arc<SlotShared>>,
}

impl PendingJoin {
    /// The new instance's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The address the new server listens on (its pod IP).
    pub fn ip(&self) -> Ipv4Addr {
        self.ip
    }

    /// Its volumes.
    pub fn volumes(&self) -> &[InstanceVolume] {
        &self.volumes
    }

    /// The attempts so far (shared: keeps updating).
    pub fn progress(&self) -> JoinProgress {
        self.progress.clone()
    }
}

impl Drop for PendingJoin {
    fn drop(&mut self) {
        if let Some(task) = self.task.take() {
            task.abort();
            if let Some(slots) = &self.slots {
                lock(&slots.topology).joining.retain(|j| j != &self.name);
            }
        }
    }
}

async fn join_loop(
    name: String,
    builder: PgServerBuilder,
    options: JoinOptions,
    progress: JoinProgress,
) -> Result<PgServer> {
    let deadline = Instant::now() + options.timeout;
    loop {
        match builder.clone().start().await {
            Ok(server) => {
                progress.record(None);
                return Ok(server);
            }
            Err(e) => {
                let text = format!("{e:#}");
                tracing::info!(instance = %name, error = %text, "join failed; retrying");
                progress.record(Some(text));
                if Instant::now() + options.retry_interval > deadline {
                    return Err(e).with_context(|| {
                        format!(
                            "joining {name}: no successful base backup within {:?}",
                            options.timeout
                        )
                    });
                }
                tokio::time::sleep(options.retry_interval).await;
            }
        }
    }
}

// ---- HA slot synchroniser ------------------------------------------------

#[derive(Debug, Default)]
struct Topology {
    primary: Option<PgEndpoint>,
    standbys: Vec<PgEndpoint>,
    /// Instances being cloned: the primary already keeps a slot for them.
    joining: Vec<String>,
}

#[derive(Debug)]
struct SlotShared {
    config: HaSlots,
    topology: Mutex<Topology>,
    instance_names: Mutex<Option<NamesSource>>,
    /// One round at a time (periodic and on demand).
    round_lock: tokio::sync::Mutex<()>,
    rounds: AtomicU64,
    advances: AtomicU64,
    errors: AtomicU64,
    last_error: Mutex<Option<String>>,
}

#[derive(Debug)]
struct SlotSync {
    shared: Arc<SlotShared>,
    task: Mutex<Option<tokio::task::AbortHandle>>,
}

impl SlotSync {
    fn new(config: HaSlots) -> SlotSync {
        SlotSync {
            shared: Arc::new(SlotShared {
                config,
                topology: Mutex::new(Topology::default()),
                instance_names: Mutex::new(None),
                round_lock: tokio::sync::Mutex::new(()),
                rounds: AtomicU64::new(0),
                advances: AtomicU64::new(0),
                errors: AtomicU64::new(0),
                last_error: Mutex::new(None),
            }),
            task: Mutex::new(None),
        }
    }

    fn spawn(&self) {
        let shared = self.shared.clone();
        let handle = tokio::spawn(async move {
            let mut tick = tokio::time::interval(shared.config.update_interval);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            tick.tick().await;
            loop {
                tick.tick().await;
                if let Err(e) = shared.round().await {
                    tracing::debug!(error = %format!("{e:#}"), "HA slot round failed");
                }
            }
        });
        *lock(&self.task) = Some(handle.abort_handle());
    }

    fn set_joining(&self, name: &str, on: bool) {
        let mut topo = lock(&self.shared.topology);
        topo.joining.retain(|j| j != name);
        if on {
            topo.joining.push(name.to_string());
        }
    }

    async fn reconcile_primary(&self) -> Result<()> {
        let _round = self.shared.round_lock.lock().await;
        self.shared.reconcile_primary().await.map(|_| ())
    }
}

impl Drop for SlotSync {
    fn drop(&mut self) {
        if let Some(task) = lock(&self.task).take() {
            task.abort();
        }
    }
}

impl SlotShared {
    fn stats(&self) -> SlotSyncStats {
        SlotSyncStats {
            rounds: self.rounds.load(Ordering::SeqCst),
            advances: self.advances.load(Ordering::SeqCst),
            errors: self.errors.load(Ordering::SeqCst),
            last_error: lock(&self.last_error).clone(),
        }
    }

    fn error(&self, e: &anyhow::Error) {
        self.errors.fetch_add(1, Ordering::SeqCst);
        *lock(&self.last_error) = Some(format!("{e:#}"));
    }

    fn is_ha(&self, slot: &str) -> bool {
        slot.starts_with(&self.config.slot_prefix)
    }

    /// One round: the primary's slots, then every standby's copies.
    async fn round(&self) -> Result<()> {
        let _round = self.round_lock.lock().await;
        let result = self.round_locked().await;
        self.rounds.fetch_add(1, Ordering::SeqCst);
        if let Err(e) = &result {
            self.error(e);
        }
        result
    }

    async fn round_locked(&self) -> Result<()> {
        let primary_slots = self.reconcile_primary().await?;
        let standbys = lock(&self.topology).standbys.clone();
        let mut first_error = None;
        for standby in &standbys {
            // One standby down must not stop the others from syncing.
            if let Err(e) = self.sync_standby(standby, &primary_slots).await {
                let e = e.context(format!("synchronising HA slots on {}", standby.name));
                self.error(&e);
                first_error.get_or_insert(e);
            }
        }
        match first_error {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }

    /// CNPG's `reconcilePrimaryReplicationSlots`: a slot per standby (not
    /// reserving WAL until the standby connects), inactive HA slots of
    /// instances that are gone dropped. Returns the primary's slots after.
    async fn reconcile_primary(&self) -> Result<Vec<SlotInfo>> {
        let (primary, expected) = {
            let topo = lock(&self.topology);
            let Some(primary) = topo.primary.clone() else {
                return Ok(Vec::new());
            };
            let listed = lock(&self.instance_names).as_ref().and_then(|f| (f.0)());
            let instances: Vec<String> = match listed {
                Some(names) => names.into_iter().filter(|n| *n != primary.name).collect(),
                None => topo.standbys.iter().map(|s| s.name.clone()).collect(),
            };
            let expected: BTreeSet<String> = instances
                .iter()
                .chain(topo.joining.iter())
                .map(|n| ha_slot_name(&self.config.slot_prefix, n))
                .collect();
            (primary, expected)
        };
        let client = primary.connect().await?;
        let ctx = || format!("reconciling the HA slots of primary {}", primary.name);
        let current = physical_slots(&client).await.with_context(ctx)?;
        for slot in &expected {
            if !current.iter().any(|s| &s.name == slot) {
                client
                    .execute(
                        "SELECT pg_create_physical_replication_slot($1, false)",
                        &[slot],
                    )
                    .await
                    .with_context(|| format!("creating HA slot {slot} on {}", primary.name))?;
            }
        }
        for slot in &current {
            if self.is_ha(&slot.name) && !expected.contains(&slot.name) && !slot.active {
                client
                    .execute("SELECT pg_drop_replication_slot($1)", &[&slot.name])
                    .await
                    .with_context(|| {
                        format!("dropping HA slot {} on {}", slot.name, primary.name)
                    })?;
            }
        }
        physical_slots(&client).await.with_context(ctx)
    }

    /// CNPG's `synchronizeReplicationSlots` on one standby.
    async fn sync_standby(&self, standby: &PgEndpoint, primary_slots: &[SlotInfo]) -> Result<()> {
        let mine = ha_slot_name(&self.config.slot_prefix, &standby.name);
        let sync_user = self.config.synchronize_user_slots;
        let client = standby.connect().await?;
        let local = physical_slots(&client).await?;
        for slot in primary_slots {
            if slot.name == mine {
                continue;
            }
            let ha = self.is_ha(&slot.name);
            if (ha && slot.restart_lsn.is_none()) || (!ha && !sync_user) {
                continue;
            }
            if !local.iter().any(|l| l.name == slot.name) {
                client
                    .execute(
                        "SELECT pg_create_physical_replication_slot($1, $2)",
                        &[&slot.name, &slot.restart_lsn.is_some()],
                    )
                    .await
                    .with_context(|| format!("creating slot {} on {}", slot.name, standby.name))?;
            }
            if let Some(lsn) = &slot.restart_lsn {
                client
                    .execute(
                        "SELECT pg_replication_slot_advance($1, $2::text::pg_lsn)",
                        &[&slot.name, lsn],
                    )
                    .await
                    .with_context(|| {
                        format!("advancing slot {} on {} to {lsn}", slot.name, standby.name)
                    })?;
                self.advances.fetch_add(1, Ordering::SeqCst);
            }
        }
        for slot in &local {
            let ha = self.is_ha(&slot.name);
            if !ha && !sync_user {
                continue;
            }
            let stale = !primary_slots.iter().any(|p| p.name == slot.name)
                || slot.name == mine
                || slot.holds_xmin;
            if stale && !slot.active {
                client
                    .execute("SELECT pg_drop_replication_slot($1)", &[&slot.name])
                    .await
                    .with_context(|| format!("dropping slot {} on {}", slot.name, standby.name))?;
            }
        }
        Ok(())
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slot_names_follow_cnpg() {
        assert_eq!(
            ha_slot_name("_cnpg_", "cluster-example-2"),
            "_cnpg_cluster_example_2"
        );
        assert_eq!(ha_slot_name("_cnpg_", "A.b--c"), "_cnpg_a_b_c");
        assert_eq!(ha_slot_name("my-", "x"), "my_x");
    }

    #[test]
    fn pvc_names_follow_cnpg() {
        assert_eq!(VolumeRole::Data.pvc_name("pg-1"), "pg-1");
        assert_eq!(VolumeRole::Wal.pvc_name("pg-1"), "pg-1-wal");
        assert_eq!(
            VolumeRole::Tablespace("idx".into()).pvc_name("pg-1"),
            "pg-1-tbs-idx"
        );
        // pkg/specs/volumes.go: convertPostgresIDToK8sName.
        assert_eq!(
            VolumeRole::Tablespace("_Scratch$1".into()).pvc_name("pg-1"),
            "pg-1-tbs-1scratch-1"
        );
    }
}
