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

use crate::{PgServer, Volume};
use anyhow::{bail, Context, Result};
use std::sync::Arc;

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

/// Builder of a [`PgCluster`].
#[derive(Debug, Clone)]
pub struct PgClusterBuilder {
    name: String,
    instances: usize,
    data_bytes: u64,
    wal_bytes: Option<u64>,
    tablespaces: Vec<(String, u64)>,
}

impl PgClusterBuilder {
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
        let mut cluster = PgCluster {
            name: self.name.clone(),
            instances: Vec::new(),
            base,
        };
        for i in 1..=self.instances {
            let pod = format!("{}-{i}", self.name);
            let mut volumes = Vec::new();
            let mut make =
                |pvc_name: String, role: VolumeRole, bytes: u64| -> Result<Arc<Volume>> {
                    let volume =
                        Arc::new(Volume::create(&cluster.base.path().join(&pvc_name), bytes)?);
                    volumes.push(InstanceVolume {
                        pvc_name,
                        role,
                        volume: volume.clone(),
                    });
                    Ok(volume)
                };
            let data = make(pod.clone(), VolumeRole::Data, self.data_bytes)?;
            let wal = match self.wal_bytes {
                Some(bytes) => Some(make(format!("{pod}-wal"), VolumeRole::Wal, bytes)?),
                None => None,
            };
            let mut tbs = Vec::new();
            for (name, bytes) in &self.tablespaces {
                let vol = make(
                    format!("{pod}-tbs-{name}"),
                    VolumeRole::Tablespace(name.clone()),
                    *bytes,
                )?;
                tbs.push((name.clone(), vol));
            }

            let server = match cluster.instances.first() {
                None => {
                    let mut b = PgServer::primary(&pod, data);
                    if let Some(w) = wal {
                        b = b.wal_volume(w);
                    }
                    let server = b.start().await?;
                    for (name, vol) in tbs {
                        server.create_tablespace(&name, vol).await?;
                    }
                    server
                }
                Some(primary) => {
                    let mut b = primary.server.replica(&pod, data);
                    if let Some(w) = wal {
                        b = b.wal_volume(w);
                    }
                    for (name, vol) in tbs {
                        b = b.tablespace_volume(&name, vol);
                    }
                    let server = b.start().await?;
                    primary
                        .server
                        .wait_for_streaming_replica(&pod, std::time::Duration::from_secs(60))
                        .await?;
                    server
                }
            };
            cluster.instances.push(PgInstance {
                name: pod,
                volumes,
                server,
            });
        }
        Ok(cluster)
    }
}

/// A running CNPG-shaped cluster; dropping it stops every server and
/// removes every volume.
#[derive(Debug)]
pub struct PgCluster {
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
}
