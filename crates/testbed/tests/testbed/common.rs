//! Helpers shared by the test modules.

use cnpg_testbed::{is_root, Volume, VolumeBackend};
use std::path::Path;
use std::sync::Arc;

pub const MIB: u64 = 1 << 20;

/// The backends to exercise in this process: both as root, the directory
/// backend otherwise (never a silent skip).
pub fn backends() -> Vec<VolumeBackend> {
    if is_root() {
        vec![VolumeBackend::Tmpfs, VolumeBackend::Directory]
    } else {
        vec![VolumeBackend::Directory]
    }
}

/// A fresh private temporary directory (0755, so the `postgres` user can
/// traverse it when we are root).
pub fn tempdir() -> tempfile::TempDir {
    let dir = tempfile::Builder::new()
        .prefix("cnpg-testbed-test-")
        .tempdir()
        .unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    dir
}

/// A volume of `mib` MiB at `<dir>/<name>` with the process's default backend.
pub fn volume(dir: &Path, name: &str, mib: u64) -> Arc<Volume> {
    Arc::new(Volume::create(&dir.join(name), mib * MIB).unwrap())
}

/// Whether `pid` is a live (non-zombie) process.
pub fn alive(pid: i32) -> bool {
    cnpg_testbed::postgres::pid_alive(pid)
}

/// Whether anything is mounted on `path` (per /proc/self/mountinfo).
pub fn mounted(path: &Path) -> bool {
    cnpg_testbed::volume::is_mount_point(path)
}

pub fn init_tracing() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "warn".into()),
        )
        .with_test_writer()
        .try_init();
}
