//! Volumes of a given capacity that can be filled and grown in place.
//!
//! A volume stands for a PVC's block device of `device_bytes` (its
//! [`Volume::capacity_bytes`], what the PVC's `status.capacity` says) and the
//! filesystem on it, of a [`FilesystemKind`]:
//!
//! - [`FilesystemKind::Raw`]: the filesystem's total is the device size
//!   (no overhead; what [`Volume::create`] gives);
//! - [`FilesystemKind::Ext4`]: the filesystem shows what ext4 made by a CSI
//!   driver shows on such a device ([`crate::fsmodel`]): a smaller total and
//!   a fixed inode count, e.g. 57 380 864 bytes and 16 384 inodes for
//!   64 MiB. Growing keeps the geometry chosen at creation, as an online
//!   `resize2fs` does.
//!
//! Two backends, chosen automatically by [`Volume::create`]:
//!
//! - [`VolumeBackend::Tmpfs`] (root): a real `tmpfs` mounted on the path with
//!   `size=` the filesystem total (and, for ext4, `nr_inodes=` its inode
//!   count, which tmpfs enforces). `statvfs(2)` — and so `df` and the
//!   product's disk probe — sees exactly that. [`Volume::grow`] remounts it
//!   larger with `MS_REMOUNT`; files stay. ext4 itself is not used because
//!   growing a mounted ext4 image online is not permitted on the project's
//!   machines; tmpfs presents the modelled figures instead.
//! - [`VolumeBackend::Directory`] (non-root, where mounting is impossible): a
//!   plain directory whose total (and inode count) is declared in
//!   `<root>/.cnpg-simulated-capacity` ([`SimulatedCapacity`]).
//!   [`simulated_stats`] computes what `statvfs` would say for it; the
//!   product's disk probe calls it when run with its test-only flag. Nothing
//!   stops writes beyond the simulated capacity — only the numbers say the
//!   volume is full.
//!
//! Both backends present the same total: tmpfs counts whole 4 KiB pages, so
//! the ext4 total is rounded down to a page (exact for ext4 with 4 KiB
//! blocks, i.e. devices of 512 MiB and more; at most 3 KiB less below).
//! What they cannot reproduce: ext4's kernel reserve (`df` Avail is
//! `min(2 %, 16 MiB)` below Size − Used on real ext4, see
//! [`crate::fsmodel::Ext4Fs::available_bytes_empty`]), its few used blocks
//! and 11 used inodes when empty (`lost+found` and reserved inodes).
//!
//! Dropping a [`Volume`] unmounts it (lazily if still busy) and removes the
//! directory, also while a panicking test unwinds.

use crate::fsmodel::Ext4Fs;
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
    simulated_stats, FsStats as VolumeStats, SimulatedCapacity, SIMULATED_CAPACITY_FILE,
    SIMULATED_INODES_TOTAL,
};

/// Name of the filler file written by [`Volume::fill_to_percent`] and [`Volume::fill_bytes`].
pub const FILL_FILE: &str = ".fill";

/// Directory of the empty files [`Volume::fill_inodes_to_percent`] creates.
pub const INODE_FILL_DIR: &str = ".inode-fill";

/// tmpfs sizes are whole pages (4 KiB on the project's machines); the same
/// rounding is applied to directory volumes so both backends agree.
const PAGE: u64 = 4096;

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

/// Which filesystem a [`Volume`] presents on its device.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum FilesystemKind {
    /// The filesystem's total is the device size; inodes are the backend's
    /// default (tmpfs: half the RAM pages; directory: [`SIMULATED_INODES_TOTAL`]).
    #[default]
    Raw,
    /// ext4 as `mkfs.ext4 -F -m0` makes it and an online `resize2fs` grows
    /// it ([`crate::fsmodel`]).
    Ext4,
}

/// What a volume of `kind` on a fresh device of `device_bytes` shows as its
/// filesystem total (`df` Size), on either backend. Fails for ext4 devices
/// below 1 MiB.
pub fn model_total_bytes(kind: FilesystemKind, device_bytes: u64) -> Result<u64> {
    Ok(Filesystem::new(kind, device_bytes)?.presented().total_bytes)
}

/// The inode count a fresh volume of `kind` and `device_bytes` shows, when
/// the kind defines one (`None` for [`FilesystemKind::Raw`]).
pub fn model_inodes(kind: FilesystemKind, device_bytes: u64) -> Result<Option<u64>> {
    Ok(Filesystem::new(kind, device_bytes)?.presented().inodes)
}

/// The filesystem total of a volume of `kind` created on `created_bytes` and
/// grown to `device_bytes` (ext4 keeps its creation-time geometry, so this
/// differs from [`model_total_bytes`] of `device_bytes` across size classes).
pub fn model_grown_total_bytes(
    kind: FilesystemKind,
    created_bytes: u64,
    device_bytes: u64,
) -> Result<u64> {
    let mut fs = Filesystem::new(kind, created_bytes)?;
    fs.grow(device_bytes.max(created_bytes));
    Ok(fs.presented().total_bytes)
}

/// The device and the filesystem on it.
#[derive(Debug, Clone, Copy)]
struct Filesystem {
    device_bytes: u64,
    ext4: Option<Ext4Fs>,
}

/// The figures a volume makes `statvfs` show.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Presented {
    total_bytes: u64,
    inodes: Option<u64>,
}

impl Filesystem {
    fn new(kind: FilesystemKind, device_bytes: u64) -> Result<Filesystem> {
        let ext4 = match kind {
            FilesystemKind::Raw => None,
            FilesystemKind::Ext4 => Some(
                Ext4Fs::mkfs(device_bytes)
                    .with_context(|| format!("modelling ext4 on {device_bytes} bytes"))?,
            ),
        };
        Ok(Filesystem { device_bytes, ext4 })
    }

    fn grow(&mut self, device_bytes: u64) {
        self.device_bytes = device_bytes;
        if let Some(fs) = &mut self.ext4 {
            *fs = fs.grow(device_bytes);
        }
    }

    fn presented(&self) -> Presented {
        match &self.ext4 {
            None => Presented {
                total_bytes: self.device_bytes,
                inodes: None,
            },
            Some(fs) => Presented {
                total_bytes: fs.total_bytes() / PAGE * PAGE,
                inodes: Some(fs.inodes()),
            },
        }
    }

    /// The `-o` data of a tmpfs presenting this filesystem (size, inodes).
    fn tmpfs_data(&self) -> String {
        let p = self.presented();
        match p.inodes {
            None => format!("size={}", p.total_bytes),
            Some(inodes) => format!("size={},nr_inodes={inodes}", p.total_bytes),
        }
    }

    fn simulated(&self) -> SimulatedCapacity {
        let p = self.presented();
        SimulatedCapacity {
            total_bytes: p.total_bytes,
            inodes_total: p.inodes,
        }
    }
}

/// A filesystem of a fixed (growable) capacity at a path.
#[derive(Debug)]
pub struct Volume {
    path: PathBuf,
    backend: VolumeBackend,
    kind: FilesystemKind,
    /// Device and filesystem; the lock also serialises fill and grow operations.
    state: Mutex<Filesystem>,
}

impl Volume {
    /// Create a volume of `capacity_bytes` at `path` with the backend that
    /// suits this process ([`VolumeBackend::for_current_process`]) and a
    /// [`FilesystemKind::Raw`] filesystem (total = `capacity_bytes`).
    ///
    /// `path` must not exist or be an empty directory; it is created and
    /// removed again on drop. As root the volume root is owned by the
    /// `postgres` user (so PostgreSQL can create its directories in it).
    pub fn create(path: &Path, capacity_bytes: u64) -> Result<Volume> {
        Volume::create_with_backend(path, capacity_bytes, VolumeBackend::for_current_process())
    }

    /// Create a volume on a device of `device_bytes` presenting a filesystem
    /// of `kind`, with the backend that suits this process.
    pub fn create_with(path: &Path, device_bytes: u64, kind: FilesystemKind) -> Result<Volume> {
        Volume::create_with_backend_and_kind(
            path,
            device_bytes,
            VolumeBackend::for_current_process(),
            kind,
        )
    }

    /// Create a volume with an explicit backend and a [`FilesystemKind::Raw`]
    /// filesystem. [`VolumeBackend::Directory`] works for everyone (root
    /// included, to exercise the non-root path); [`VolumeBackend::Tmpfs`]
    /// needs root.
    pub fn create_with_backend(
        path: &Path,
        capacity_bytes: u64,
        backend: VolumeBackend,
    ) -> Result<Volume> {
        Volume::create_with_backend_and_kind(path, capacity_bytes, backend, FilesystemKind::Raw)
    }

    /// Create a volume with an explicit backend and filesystem kind.
    pub fn create_with_backend_and_kind(
        path: &Path,
        device_bytes: u64,
        backend: VolumeBackend,
        kind: FilesystemKind,
    ) -> Result<Volume> {
        if device_bytes == 0 {
            bail!("volume {} needs a capacity above 0 bytes", path.display());
        }
        let filesystem = Filesystem::new(kind, device_bytes)
            .with_context(|| format!("volume {}", path.display()))?;
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
            kind,
            state: Mutex::new(filesystem),
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
                let data = format!("{},{ownership}", filesystem.tmpfs_data());
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
                write_capacity_file(&volume.path, &filesystem)?;
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

    /// Which filesystem this volume presents.
    pub fn kind(&self) -> FilesystemKind {
        self.kind
    }

    /// Size of the device (the PVC's capacity) as last set by
    /// [`Volume::create`] or [`Volume::grow`].
    pub fn capacity_bytes(&self) -> u64 {
        lock(&self.state).device_bytes
    }

    /// The filesystem total `statvfs` shows (`df` Size): the device size for
    /// [`FilesystemKind::Raw`], less for ext4.
    pub fn filesystem_total_bytes(&self) -> u64 {
        lock(&self.state).presented().total_bytes
    }

    /// The inode count `statvfs` shows, when the kind defines it
    /// (`None` for [`FilesystemKind::Raw`]).
    pub fn filesystem_inodes(&self) -> Option<u64> {
        lock(&self.state).presented().inodes
    }

    /// The filesystem total this volume would show after
    /// [`Volume::grow`]`(device_bytes)` (unchanged for a smaller device).
    pub fn total_bytes_after_grow(&self, device_bytes: u64) -> u64 {
        let mut fs = *lock(&self.state);
        if device_bytes > fs.device_bytes {
            fs.grow(device_bytes);
        }
        fs.presented().total_bytes
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

    /// Grow the device to `new_bytes` and the filesystem with it while files
    /// stay (ext4: as an online `resize2fs` does, inodes included). Growing
    /// to the current size is a no-op; shrinking is refused (as with real
    /// PVCs).
    pub fn grow(&self, new_bytes: u64) -> Result<()> {
        let mut state = lock(&self.state);
        if new_bytes < state.device_bytes {
            bail!(
                "volume {} cannot shrink from {} to {new_bytes} bytes",
                self.path.display(),
                state.device_bytes
            );
        }
        if new_bytes == state.device_bytes {
            return Ok(());
        }
        let mut grown = *state;
        grown.grow(new_bytes);
        match self.backend {
            VolumeBackend::Tmpfs => {
                // Options not given on remount (mode, uid, gid) are kept by tmpfs.
                let data = grown.tmpfs_data();
                nix::mount::mount(
                    None::<&str>,
                    &self.path,
                    None::<&str>,
                    MsFlags::MS_REMOUNT | tmpfs_flags(),
                    Some(data.as_str()),
                )
                .with_context(|| format!("mount -o remount,{data} {}", self.path.display()))?;
            }
            VolumeBackend::Directory => write_capacity_file(&self.path, &grown)?,
        }
        *state = grown;
        Ok(())
    }

    /// Make the volume just over `percent` used by growing (or shrinking)
    /// the filler file `.fill`. Real blocks are allocated (`fallocate`, or
    /// written zeros where unsupported), so a tmpfs really holds them.
    pub fn fill_to_percent(&self, percent: f64) -> Result<()> {
        if !(0.0..100.0).contains(&percent) {
            bail!("fill percentage {percent} is not in [0, 100)");
        }
        let _guard = lock(&self.state);
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

    /// Fill the volume until no byte is left (`df`: 100 %, the state a
    /// database that ran out of space leaves): on tmpfs until the kernel
    /// answers ENOSPC, on a directory to its simulated capacity.
    pub fn fill_completely(&self) -> Result<()> {
        let _guard = lock(&self.state);
        let fill = self.path.join(FILL_FILE);
        for _ in 0..256 {
            let available = self.stats()?.available_bytes;
            if available == 0 {
                return Ok(());
            }
            // Metadata takes some of what statvfs calls available: halve the
            // request until it fits, and stop when not even a block does.
            let mut want = available.div_ceil(BLOCK) * BLOCK;
            while !try_extend_file(&fill, want)? {
                if want <= BLOCK {
                    return Ok(());
                }
                want = (want / 2).div_ceil(BLOCK) * BLOCK;
            }
        }
        bail!(
            "{} still has room after 256 rounds of filling",
            self.path.display()
        )
    }

    /// Append `n` bytes of real, allocated data to the filler file.
    pub fn fill_bytes(&self, n: u64) -> Result<()> {
        let _guard = lock(&self.state);
        extend_file(&self.path.join(FILL_FILE), n)
    }

    /// Remove the filler file.
    pub fn clear_fill(&self) -> Result<()> {
        let _guard = lock(&self.state);
        let fill = self.path.join(FILL_FILE);
        match std::fs::remove_file(&fill) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(e).with_context(|| format!("removing {}", fill.display())),
        }
    }

    /// Make just over `percent` of the volume's inodes used (`df -i`'s
    /// IUse%) by creating or removing empty files in [`INODE_FILL_DIR`].
    /// On tmpfs the inodes are really taken: once all are used, creating a
    /// file fails with `ENOSPC`, as on a real ext4. When other files already
    /// use more than `percent`, only the filler is removed.
    pub fn fill_inodes_to_percent(&self, percent: f64) -> Result<()> {
        if !(0.0..100.0).contains(&percent) {
            bail!("inode fill percentage {percent} is not in [0, 100)");
        }
        let _guard = lock(&self.state);
        let dir = self.path.join(INODE_FILL_DIR);
        // Usually two rounds: the filler directory takes an inode itself.
        for _ in 0..8 {
            let stats = self.stats()?;
            if stats.inodes_total == 0 {
                bail!("{} reports no inodes", self.path.display());
            }
            // The fewest used inodes that make the share exceed `percent`.
            let target = ((percent / 100.0 * stats.inodes_total as f64).floor() as u64 + 1)
                .min(stats.inodes_total);
            if stats.inodes_used < target {
                create_empty_files(&dir, target - stats.inodes_used)?;
            } else if stats.inodes_used > target {
                if remove_empty_files(&dir, stats.inodes_used - target)? == 0 {
                    return Ok(());
                }
            } else {
                return Ok(());
            }
        }
        bail!(
            "could not bring the inode use of {} to {percent}% after 8 rounds",
            self.path.display()
        )
    }

    /// Remove the files of [`Volume::fill_inodes_to_percent`], releasing
    /// their inodes.
    pub fn clear_inode_fill(&self) -> Result<()> {
        let _guard = lock(&self.state);
        let dir = self.path.join(INODE_FILL_DIR);
        match std::fs::remove_dir_all(&dir) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(e).with_context(|| format!("removing {}", dir.display())),
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

/// A read-only bind mount of a directory, as a Kubernetes `readOnly: true`
/// volume mount presents it to a container; unmounted on drop. Needs root.
#[derive(Debug)]
pub struct ReadOnlyBind {
    target: PathBuf,
}

impl ReadOnlyBind {
    /// Binds `source` on `target` (created if missing) read-only.
    pub fn new(source: &Path, target: &Path) -> Result<ReadOnlyBind> {
        std::fs::create_dir_all(target)
            .with_context(|| format!("creating {}", target.display()))?;
        nix::mount::mount(
            Some(source),
            target,
            None::<&str>,
            MsFlags::MS_BIND,
            None::<&str>,
        )
        .with_context(|| format!("mount --bind {} {}", source.display(), target.display()))?;
        let bind = ReadOnlyBind {
            target: target.to_path_buf(),
        };
        // A bind mount takes MS_RDONLY only on a remount.
        nix::mount::mount(
            None::<&str>,
            target,
            None::<&str>,
            MsFlags::MS_BIND | MsFlags::MS_REMOUNT | MsFlags::MS_RDONLY,
            None::<&str>,
        )
        .with_context(|| format!("mount -o remount,bind,ro {}", target.display()))?;
        Ok(bind)
    }

    /// Where the directory is seen read-only.
    pub fn path(&self) -> &Path {
        &self.target
    }
}

impl Drop for ReadOnlyBind {
    fn drop(&mut self) {
        if let Err(e) = nix::mount::umount2(&self.target, MntFlags::MNT_DETACH) {
            tracing::warn!(path = %self.target.display(), error = %e, "could not unmount a bind mount");
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

fn write_capacity_file(root: &Path, fs: &Filesystem) -> Result<()> {
    let declared = fs.simulated();
    declared.write(root).with_context(|| {
        format!(
            "declaring {declared:?} in {}",
            root.join(SIMULATED_CAPACITY_FILE).display()
        )
    })
}

/// Create `n` empty files in `dir` (created if missing), named by number.
fn create_empty_files(dir: &Path, n: u64) -> Result<()> {
    match std::fs::create_dir(dir) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
        Err(e) => return Err(e).with_context(|| format!("creating {}", dir.display())),
    }
    let mut next = std::fs::read_dir(dir)
        .with_context(|| format!("listing {}", dir.display()))?
        .count() as u64;
    let mut created = 0;
    while created < n {
        let file = dir.join(next.to_string());
        next += 1;
        match OpenOptions::new().write(true).create_new(true).open(&file) {
            Ok(_) => created += 1,
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
            Err(e) if e.raw_os_error() == Some(Errno::ENOSPC as i32) => bail!(
                "no inode left on the volume of {} after creating {created} of {n} files",
                dir.display()
            ),
            Err(e) => return Err(e).with_context(|| format!("creating {}", file.display())),
        }
    }
    Ok(())
}

/// Remove up to `n` files from `dir`; returns how many were removed.
fn remove_empty_files(dir: &Path, n: u64) -> Result<u64> {
    let entries = match std::fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(0),
        Err(e) => return Err(e).with_context(|| format!("listing {}", dir.display())),
    };
    let mut removed = 0;
    for entry in entries {
        if removed == n {
            break;
        }
        let path = entry
            .with_context(|| format!("listing {}", dir.display()))?
            .path();
        std::fs::remove_file(&path).with_context(|| format!("removing {}", path.display()))?;
        removed += 1;
    }
    Ok(removed)
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
    if try_extend_file(path, n)? {
        Ok(())
    } else {
        bail!(
            "no space left on {} while allocating {n} more bytes of filler",
            path.display()
        )
    }
}

/// Appends `n` allocated bytes; `false` when the filesystem has no room for
/// them (ENOSPC; fallocate then allocates nothing).
fn try_extend_file(path: &Path, n: u64) -> Result<bool> {
    if n == 0 {
        return Ok(true);
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
        Ok(()) => Ok(true),
        Err(Errno::EOPNOTSUPP) => write_zeros(&mut f, n, path).map(|()| true),
        Err(Errno::ENOSPC) => Ok(false),
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
