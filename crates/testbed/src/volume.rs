//! Volumes of a given capacity that can be filled and grown in place.
//!
//! Two backends, chosen automatically by [`Volume::create`]:
//!
//! - [`VolumeBackend::Tmpfs`] (root): a real `tmpfs` mounted on the path with
//!   `size=<bytes>`. `statvfs(2)` — and so `df` and the product's disk probe —
//!   sees exactly that size. [`Volume::grow`] remounts it larger with
//!   `MS_REMOUNT`; files stay.
//! - [`VolumeBackend::Directory`] (non-root, where mounting is impossible): a
//!   plain directory whose capacity is written in
//!   `<root>/.cnpg-simulated-capacity` (decimal bytes). [`simulated_stats`]
//!   computes what `statvfs` would say for it; the product's disk probe calls
//!   it when run with its test-only flag. Nothing stops writes beyond the
//!   simulated capacity — only the numbers say the volume is full.
//!
//! Dropping a [`Volume`] unmounts it (lazily if still busy) and removes the
//! directory, also while a panicking test unwinds.

use crate::RunAs;
use anyhow::{bail, Context, Result};
use nix::errno::Errno;
use nix::mount::{MntFlags, MsFlags};
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, Once};

// Filesystem usage with `df` semantics, shared with the product's disk probe:
// `simulated_stats` computes it for `VolumeBackend::Directory` volumes, whose
// capacity is in `SIMULATED_CAPACITY_FILE`.
pub use cnpg_fsstat::{
    simulated_stats, FsStats as VolumeStats, SIMULATED_CAPACITY_FILE, SIMULATED_INODES_TOTAL,
};

/// Name of the filler file written by [`Volume::fill_to_percent`] and [`Volume::fill_bytes`].
pub const FILL_FILE: &str = ".fill";

/// Allocation unit used when filling (the page size of tmpfs, the block size of most filesystems).
const BLOCK: u64 = 4096;

/// Prefix of the mount source of our tmpfs mounts; the pid follows, so stale
/// mounts of crashed test processes can be recognised and removed.
const MOUNT_SOURCE_PREFIX: &str = "cnpg-testbed-";

/// How a [`Volume`] is realised.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VolumeBackend {
    /// A real tmpfs mount (needs root / `CAP_SYS_ADMIN`).
    Tmpfs,
    /// A plain directory with a simulated capacity (see [`simulated_stats`]).
    Directory,
}

impl VolumeBackend {
    /// The backend [`Volume::create`] picks: tmpfs as root, a directory otherwise.
    pub fn for_current_process() -> VolumeBackend {
        if crate::is_root() {
            VolumeBackend::Tmpfs
        } else {
            VolumeBackend::Directory
        }
    }
}

/// A filesystem of a fixed (growable) capacity at a path.
#[derive(Debug)]
pub struct Volume {
    path: PathBuf,
    backend: VolumeBackend,
    /// Current capacity; the lock also serialises fill and grow operations.
    capacity: Mutex<u64>,
}

impl Volume {
    /// Create a volume of `capacity_bytes` at `path` with the backend that
    /// suits this process ([`VolumeBackend::for_current_process`]).
    ///
    /// `path` must not exist or be an empty directory; it is created and
    /// removed again on drop. As root the volume root is owned by the
    /// `postgres` user (so PostgreSQL can create its directories in it).
    pub fn create(path: &Path, capacity_bytes: u64) -> Result<Volume> {
        Volume::create_with_backend(path, capacity_bytes, VolumeBackend::for_current_process())
    }

    /// Create a volume with an explicit backend. [`VolumeBackend::Directory`]
    /// works for everyone (root included, to exercise the non-root path);
    /// [`VolumeBackend::Tmpfs`] needs root.
    pub fn create_with_backend(
        path: &Path,
        capacity_bytes: u64,
        backend: VolumeBackend,
    ) -> Result<Volume> {
        if capacity_bytes == 0 {
            bail!("volume {} needs a capacity above 0 bytes", path.display());
        }
        if backend == VolumeBackend::Tmpfs && !crate::is_root() {
            bail!(
                "a tmpfs volume at {} needs root; use VolumeBackend::Directory",
                path.display()
            );
        }
        static SWEEP: Once = Once::new();
        if crate::is_root() {
            SWEEP.call_once(|| {
                sweep_stale_mounts();
            });
        }

        std::fs::create_dir_all(path)
            .with_context(|| format!("creating volume directory {}", path.display()))?;
        let path = path
            .canonicalize()
            .with_context(|| format!("resolving volume path {}", path.display()))?;
        let not_empty = std::fs::read_dir(&path)
            .with_context(|| format!("listing {}", path.display()))?
            .next()
            .is_some();
        if not_empty {
            bail!(
                "refusing to create a volume on non-empty directory {} (it is removed on drop)",
                path.display()
            );
        }

        // From here on, Drop cleans up whatever was set up.
        let volume = Volume {
            path,
            backend,
            capacity: Mutex::new(capacity_bytes),
        };
        let owner = if crate::is_root() {
            RunAs::postgres().ok()
        } else {
            None
        };
        match backend {
            VolumeBackend::Tmpfs => {
                let ownership = match owner {
                    Some(o) => format!("mode=0750,uid={},gid={}", o.uid, o.gid),
                    None => "mode=0777".to_string(),
                };
                let data = format!("size={capacity_bytes},{ownership}");
                let source = format!("{MOUNT_SOURCE_PREFIX}{}", std::process::id());
                nix::mount::mount(
                    Some(source.as_str()),
                    &volume.path,
                    Some("tmpfs"),
                    tmpfs_flags(),
                    Some(data.as_str()),
                )
                .with_context(|| {
                    format!(
                        "mount -t tmpfs -o {data} {source} {}",
                        volume.path.display()
                    )
                })?;
            }
            VolumeBackend::Directory => {
                write_capacity_file(&volume.path, capacity_bytes)?;
                if let Some(o) = owner {
                    o.chown(&volume.path)?;
                }
            }
        }
        Ok(volume)
    }

    /// The volume's root directory (canonical path).
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Which backend realises this volume.
    pub fn backend(&self) -> VolumeBackend {
        self.backend
    }

    /// Current capacity as last set by [`Volume::create`] or [`Volume::grow`].
    pub fn capacity_bytes(&self) -> u64 {
        *lock(&self.capacity)
    }

    /// Current usage: `statvfs` for tmpfs, [`simulated_stats`] for directories.
    pub fn stats(&self) -> Result<VolumeStats> {
        match self.backend {
            VolumeBackend::Tmpfs => cnpg_fsstat::statvfs(&self.path)
                .with_context(|| format!("statvfs {}", self.path.display())),
            VolumeBackend::Directory => simulated_stats(&self.path).with_context(|| {
                format!(
                    "computing simulated stats of {} (capacity file missing or unreadable?)",
                    self.path.display()
                )
            }),
        }
    }

    /// Grow the volume to `new_bytes` while files stay. Growing to the
    /// current size is a no-op; shrinking is refused (as with real PVCs).
    pub fn grow(&self, new_bytes: u64) -> Result<()> {
        let mut capacity = lock(&self.capacity);
        if new_bytes < *capacity {
            bail!(
                "volume {} cannot shrink from {} to {new_bytes} bytes",
                self.path.display(),
                *capacity
            );
        }
        if new_bytes == *capacity {
            return Ok(());
        }
        match self.backend {
            VolumeBackend::Tmpfs => {
                // Options not given on remount (mode, uid, gid) are kept by tmpfs.
                let data = format!("size={new_bytes}");
                nix::mount::mount(
                    None::<&str>,
                    &self.path,
                    None::<&str>,
                    MsFlags::MS_REMOUNT | tmpfs_flags(),
                    Some(data.as_str()),
                )
                .with_context(|| format!("mount -o remount,{data} {}", self.path.display()))?;
            }
            VolumeBackend::Directory => write_capacity_file(&self.path, new_bytes)?,
        }
        *capacity = new_bytes;
        Ok(())
    }

    /// Make the volume just over `percent` used by growing (or shrinking)
    /// the filler file `.fill`. Real blocks are allocated (`fallocate`, or
    /// written zeros where unsupported), so a tmpfs really holds them.
    pub fn fill_to_percent(&self, percent: f64) -> Result<()> {
        if !(0.0..100.0).contains(&percent) {
            bail!("fill percentage {percent} is not in [0, 100)");
        }
        let _guard = lock(&self.capacity);
        let fill = self.path.join(FILL_FILE);
        // A few rounds absorb allocation granularity (page/block rounding).
        for _ in 0..64 {
            let stats = self.stats()?;
            if stats.percent_used() > percent {
                // Shrink when the filler alone overshoots by more than a block.
                let size = stats.used_bytes + stats.available_bytes;
                let target = (percent / 100.0 * size as f64).floor() as u64 + BLOCK;
                let excess = stats.used_bytes.saturating_sub(target) / BLOCK * BLOCK;
                let fill_len = file_len(&fill)?;
                if excess >= BLOCK && fill_len > 0 {
                    set_fill_len(&fill, fill_len.saturating_sub(excess))?;
                    continue;
                }
                return Ok(());
            }
            let size = stats.used_bytes + stats.available_bytes;
            let target = (percent / 100.0 * size as f64).floor() as u64 + BLOCK;
            let missing = target.saturating_sub(stats.used_bytes).max(BLOCK);
            extend_file(&fill, missing.div_ceil(BLOCK) * BLOCK)?;
        }
        bail!(
            "could not bring {} above {percent}% used after 64 rounds",
            self.path.display()
        )
    }

    /// Append `n` bytes of real, allocated data to the filler file.
    pub fn fill_bytes(&self, n: u64) -> Result<()> {
        let _guard = lock(&self.capacity);
        extend_file(&self.path.join(FILL_FILE), n)
    }

    /// Remove the filler file.
    pub fn clear_fill(&self) -> Result<()> {
        let _guard = lock(&self.capacity);
        let fill = self.path.join(FILL_FILE);
        match std::fs::remove_file(&fill) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(e).with_context(|| format!("removing {}", fill.display())),
        }
    }

    /// Whether a filesystem is mounted on this volume's path right now
    /// (from `/proc/self/mountinfo`).
    pub fn is_mounted(&self) -> bool {
        is_mount_point(&self.path)
    }
}

impl Drop for Volume {
    fn drop(&mut self) {
        match self.backend {
            VolumeBackend::Tmpfs => {
                if let Err(e) = unmount(&self.path) {
                    tracing::warn!(path = %self.path.display(), error = %format!("{e:#}"), "could not unmount volume");
                    return;
                }
                if let Err(e) = std::fs::remove_dir(&self.path) {
                    tracing::warn!(path = %self.path.display(), error = %e, "could not remove volume mount point");
                }
            }
            VolumeBackend::Directory => {
                if let Err(e) = std::fs::remove_dir_all(&self.path) {
                    if e.kind() != std::io::ErrorKind::NotFound {
                        tracing::warn!(path = %self.path.display(), error = %e, "could not remove volume directory");
                    }
                }
            }
        }
    }
}

/// Mount flags of our tmpfs mounts (repeated on remount, which resets them).
fn tmpfs_flags() -> MsFlags {
    MsFlags::MS_NOSUID | MsFlags::MS_NODEV
}

/// Unmount `path`, detaching lazily when it is still busy (e.g. a process
/// still has a file open); a lazily detached tmpfs disappears once released.
fn unmount(path: &Path) -> Result<()> {
    match nix::mount::umount2(path, MntFlags::empty()) {
        Ok(()) => Ok(()),
        Err(Errno::EBUSY) => nix::mount::umount2(path, MntFlags::MNT_DETACH)
            .with_context(|| format!("umount -l {}", path.display())),
        Err(Errno::EINVAL) if !is_mount_point(path) => Ok(()),
        Err(e) => Err(e).with_context(|| format!("umount {}", path.display())),
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // A panic while holding the lock leaves a plain integer behind; keep going.
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

fn write_capacity_file(root: &Path, bytes: u64) -> Result<()> {
    // Write then rename, so a concurrent reader never sees a partial number.
    let tmp = root.join(format!("{SIMULATED_CAPACITY_FILE}.tmp"));
    let dst = root.join(SIMULATED_CAPACITY_FILE);
    std::fs::write(&tmp, format!("{bytes}\n"))
        .with_context(|| format!("writing {}", tmp.display()))?;
    std::fs::rename(&tmp, &dst)
        .with_context(|| format!("renaming {} to {}", tmp.display(), dst.display()))
}

fn file_len(path: &Path) -> Result<u64> {
    match std::fs::metadata(path) {
        Ok(m) => Ok(m.len()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(0),
        Err(e) => Err(e).with_context(|| format!("stat {}", path.display())),
    }
}

fn set_fill_len(path: &Path, len: u64) -> Result<()> {
    let f = OpenOptions::new()
        .write(true)
        .open(path)
        .with_context(|| format!("opening {}", path.display()))?;
    f.set_len(len)
        .with_context(|| format!("truncating {} to {len} bytes", path.display()))
}

/// Append `n` allocated bytes to `path` (created if missing).
fn extend_file(path: &Path, n: u64) -> Result<()> {
    if n == 0 {
        return Ok(());
    }
    let mut f = OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .with_context(|| format!("opening {}", path.display()))?;
    let offset = f
        .metadata()
        .with_context(|| format!("stat {}", path.display()))?
        .len();
    let (off, len) = (
        i64::try_from(offset).context("fill file offset overflows off_t")?,
        i64::try_from(n).context("fill size overflows off_t")?,
    );
    match nix::fcntl::fallocate(&f, nix::fcntl::FallocateFlags::empty(), off, len) {
        Ok(()) => Ok(()),
        Err(Errno::EOPNOTSUPP) => write_zeros(&mut f, n, path),
        Err(Errno::ENOSPC) => bail!(
            "no space left on {} while allocating {n} more bytes of filler",
            path.display()
        ),
        Err(e) => Err(e).with_context(|| format!("fallocate {n} bytes in {}", path.display())),
    }
}

fn write_zeros(f: &mut File, mut n: u64, path: &Path) -> Result<()> {
    let chunk = vec![0u8; 1 << 20];
    while n > 0 {
        let k = n.min(chunk.len() as u64) as usize;
        f.write_all(&chunk[..k])
            .with_context(|| format!("writing {k} filler bytes to {}", path.display()))?;
        n -= k as u64;
    }
    f.sync_data()
        .with_context(|| format!("syncing {}", path.display()))
}

/// Whether something is mounted exactly on `path`, per `/proc/self/mountinfo`.
pub fn is_mount_point(path: &Path) -> bool {
    let Ok(text) = std::fs::read_to_string("/proc/self/mountinfo") else {
        return false;
    };
    let wanted = path.to_string_lossy();
    text.lines()
        .filter_map(|l| l.split(' ').nth(4))
        .any(|mp| unescape_mountinfo(mp) == wanted)
}

/// Undo the octal escaping (`\040` for space…) of mountinfo paths.
fn unescape_mountinfo(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'\\' && i + 3 < bytes.len() {
            if let Ok(v) = u8::from_str_radix(&s[i + 1..i + 4], 8) {
                out.push(v);
                i += 4;
                continue;
            }
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Lazily unmount tmpfs volumes left by test processes that died without
/// running destructors (SIGKILL, timeouts), recognised by their mount source
/// `cnpg-testbed-<pid>` with a pid that no longer exists; their empty mount
/// points are removed. Runs automatically before the first tmpfs volume of
/// a process; returns how many mounts were removed (always 0 unless root).
pub fn sweep_stale_mounts() -> usize {
    let Ok(text) = std::fs::read_to_string("/proc/self/mountinfo") else {
        return 0;
    };
    let mut removed = 0;
    for line in text.lines() {
        let Some((left, right)) = line.split_once(" - ") else {
            continue;
        };
        let mut r = right.split(' ');
        let (Some("tmpfs"), Some(source)) = (r.next(), r.next()) else {
            continue;
        };
        let Some(pid) = source
            .strip_prefix(MOUNT_SOURCE_PREFIX)
            .and_then(|p| p.parse::<u32>().ok())
        else {
            continue;
        };
        if Path::new(&format!("/proc/{pid}")).exists() {
            continue;
        }
        if let Some(mp) = left.split(' ').nth(4) {
            let mp = PathBuf::from(unescape_mountinfo(mp));
            if nix::mount::umount2(&mp, MntFlags::MNT_DETACH).is_ok() {
                let _ = std::fs::remove_dir(&mp);
                removed += 1;
                tracing::info!(path = %mp.display(), pid, "removed stale test-bed tmpfs mount");
            }
        }
    }
    removed
}
