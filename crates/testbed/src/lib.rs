//! The local test bed: simulated volumes, PostgreSQL servers and scenarios
//! (docs/design.md#the-test-bed).
//!
//! Three building blocks, usable on their own:
//!
//! - [`volume`]: a filesystem of a given capacity that can be filled and grown
//!   while files stay on it. As root it is a real `tmpfs` mount (remounted
//!   larger to grow); as an ordinary user it is a directory whose capacity is
//!   simulated (see [`volume::simulated_stats`]).
//! - [`postgres`]: real PostgreSQL servers (primary, streaming replicas,
//!   separate WAL directory, tablespaces, archiving that fails on demand,
//!   replication slots) run from the system's binaries — as the `postgres`
//!   user when the tests run as root.
//! - [`simulator`]: a small controller playing CSI + kubelet against a
//!   Kubernetes API server: when a PVC's storage request grows it grows the
//!   backing [`Volume`] and updates `status.capacity`.
//!
//! [`cluster`] combines them into a CloudNativePG-shaped cluster (instances
//! `<cluster>-N`, volumes named like their PVCs, CNPG's HA replication
//! slots).
//!
//! What surrounds cnpg-autoresize in production has stand-ins too:
//!
//! - [`operator`]: CloudNativePG's operator writing the Cluster's status
//!   (a full update from its Go types, dropping what they do not know);
//! - [`kubelet`]: the kubelet running a container — HTTP probes with the
//!   chart's settings, restarts with crash-loop back-off, readiness.
//!
//! [`scenario`] assembles all of it around the real `cnpg-autoresize run`
//! processes, including replica rebuilds as CNPG performs them.
//!
//! [`net`] hands out distinct loopback addresses (127.0.0.2, 127.0.0.3, …)
//! that stand in for pod IPs, and free ports on them.

pub mod cgroup;
pub mod cluster;
pub mod fsmodel;
pub mod kubelet;
pub mod net;
pub mod operator;
pub mod postgres;
pub mod scenario;
pub mod simulator;
pub mod volume;

pub use cluster::{
    ha_slot_name, HaSlots, InstanceVolume, JoinOptions, JoinProgress, PendingJoin, PgCluster,
    PgClusterBuilder, PgInstance, VolumeRole, VolumeSizes,
};
pub use kubelet::{
    Container, ContainerCommand, ContainerLaunch, ContainerSpec, InitContainer, KubeletConfig, Pod,
    PodSpec,
};
pub use net::{free_port, next_loopback_ip};
pub use operator::{CnpgOperator, OperatorConfig, OperatorStats, StatusSchema};
pub use postgres::{PgBinaries, PgEndpoint, PgServer, PgServerBuilder, SlotInfo, SlotsViewLock};
pub use simulator::{ExpansionMode, PhaseDelays, ResizeStatus, SimulatorConfig, VolumeSimulator};
pub use volume::{
    model_total_bytes, simulated_stats, FilesystemKind, Volume, VolumeBackend, VolumeStats,
};

use anyhow::{Context, Result};
use nix::unistd::{Gid, Uid, User};
use std::path::Path;

/// Whether the current process runs with effective uid 0.
///
/// Decides the volume backend (tmpfs vs simulated directory) and whether
/// PostgreSQL binaries are run as the `postgres` user.
pub fn is_root() -> bool {
    Uid::effective().is_root()
}

/// The account PostgreSQL processes run as.
///
/// As root this is the `postgres` user (PostgreSQL refuses to run as root);
/// otherwise it is the current user and no identity switch happens.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RunAs {
    /// User id the PostgreSQL binaries run with.
    pub uid: Uid,
    /// Group id the PostgreSQL binaries run with.
    pub gid: Gid,
    /// Whether spawning must switch to `uid`/`gid` (only when we are root).
    pub switch: bool,
}

impl RunAs {
    /// The identity to run PostgreSQL with: `postgres` (looked up by name)
    /// when root, the current user otherwise.
    pub fn postgres() -> Result<RunAs> {
        if !is_root() {
            return Ok(RunAs {
                uid: Uid::effective(),
                gid: nix::unistd::Gid::effective(),
                switch: false,
            });
        }
        let user = User::from_name("postgres")
            .context("looking up the `postgres` user in the password database")?
            .context(
                "running as root but there is no `postgres` user to run PostgreSQL as \
                 (install the `postgresql` package, or run the tests as an ordinary user)",
            )?;
        Ok(RunAs {
            uid: user.uid,
            gid: user.gid,
            switch: true,
        })
    }

    /// This identity's name in the password database, which is what peer
    /// authentication maps (`None`: the uid has no entry, as with an
    /// arbitrary uid in a container; peer authentication then fails).
    pub fn user_name(&self) -> Option<String> {
        User::from_uid(self.uid).ok().flatten().map(|u| u.name)
    }

    /// Give `path` to this identity (no-op when no switch is needed).
    pub fn chown(&self, path: &Path) -> Result<()> {
        if self.switch {
            nix::unistd::chown(path, Some(self.uid), Some(self.gid))
                .with_context(|| format!("chown {} to uid {}", path.display(), self.uid))?;
        }
        Ok(())
    }
}
