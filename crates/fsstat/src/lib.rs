//! Filesystem usage with `df` semantics, shared by the product's disk probe
//! and the test bed.
//!
//! Real volumes are measured with `statvfs(2)`. The test bed can also run
//! without root, where it cannot mount tmpfs: a volume is then a directory
//! whose capacity is declared in a marker file, and [`simulated_stats`]
//! computes what `statvfs` would report for it. The product only reads
//! simulated volumes when started with its test-only flag.

use std::collections::HashSet;
use std::io;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

/// Marker file at a simulated volume's root, see [`SimulatedCapacity`].
pub const SIMULATED_CAPACITY_FILE: &str = ".cnpg-simulated-capacity";

/// Inode count reported for simulated volumes that do not declare one.
pub const SIMULATED_INODES_TOTAL: u64 = 1_000_000;

/// What a simulated volume declares in its [`SIMULATED_CAPACITY_FILE`].
///
/// Format: the first line is the filesystem's total in decimal bytes (the
/// whole file in the original format, still accepted); optional further
/// lines are `key=value`:
///
/// ```text
/// 57380864
/// inodes=16384
/// ```
///
/// `inodes` is the inode count (`f_files`; [`SIMULATED_INODES_TOTAL`] when
/// absent). Unknown keys and blank lines are ignored, so later additions stay
/// readable by this version.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SimulatedCapacity {
    /// Filesystem total (`f_blocks * f_frsize`), in bytes.
    pub total_bytes: u64,
    /// Inode count, when declared.
    pub inodes_total: Option<u64>,
}

impl SimulatedCapacity {
    /// A capacity of `total_bytes` with the default inode count.
    pub fn bytes(total_bytes: u64) -> SimulatedCapacity {
        SimulatedCapacity {
            total_bytes,
            inodes_total: None,
        }
    }

    /// Parse the file's contents; `None` when malformed.
    pub fn parse(text: &str) -> Option<SimulatedCapacity> {
        let mut lines = text.lines().map(str::trim).filter(|l| !l.is_empty());
        let total_bytes = lines.next()?.parse().ok()?;
        let mut inodes_total = None;
        for line in lines {
            let (key, value) = line.split_once('=')?;
            if key.trim() == "inodes" {
                inodes_total = Some(value.trim().parse().ok()?);
            }
        }
        Some(SimulatedCapacity {
            total_bytes,
            inodes_total,
        })
    }

    /// The file's contents. Without inodes this is the original format
    /// (just the number), byte for byte.
    pub fn render(&self) -> String {
        match self.inodes_total {
            None => format!("{}\n", self.total_bytes),
            Some(inodes) => format!("{}\ninodes={inodes}\n", self.total_bytes),
        }
    }

    /// Read the declaration at a simulated volume's `root`.
    pub fn read(root: &Path) -> Option<SimulatedCapacity> {
        SimulatedCapacity::parse(&std::fs::read_to_string(root.join(SIMULATED_CAPACITY_FILE)).ok()?)
    }

    /// Write the declaration at `root`, atomically (write, then rename), so a
    /// concurrent reader never sees a partial file.
    pub fn write(&self, root: &Path) -> io::Result<()> {
        let tmp = root.join(format!("{SIMULATED_CAPACITY_FILE}.tmp"));
        std::fs::write(&tmp, self.render())?;
        std::fs::rename(&tmp, root.join(SIMULATED_CAPACITY_FILE))
    }
}

/// Filesystem usage, with `df` semantics.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct FsStats {
    /// Size of the filesystem (`f_blocks * f_frsize`).
    pub total_bytes: u64,
    /// Bytes in use (`(f_blocks - f_bfree) * f_frsize`).
    pub used_bytes: u64,
    /// Bytes an unprivileged writer may still use (`f_bavail * f_frsize`).
    pub available_bytes: u64,
    /// Total inodes (`f_files`).
    pub inodes_total: u64,
    /// Inodes in use (`f_files - f_ffree`).
    pub inodes_used: u64,
    /// Free inodes (`f_ffree`).
    pub inodes_free: u64,
}

impl FsStats {
    /// `used / (used + available) * 100`, as `df` computes `Use%` before
    /// rounding. Reserved blocks (ext4's 5%) count as neither.
    pub fn percent_used(&self) -> f64 {
        let denominator = self.used_bytes as f64 + self.available_bytes as f64;
        if denominator == 0.0 {
            return 0.0;
        }
        self.used_bytes as f64 * 100.0 / denominator
    }
}

/// `statvfs(2)` of `path`, converted like `df` does.
pub fn statvfs(path: &Path) -> io::Result<FsStats> {
    let s = nix::sys::statvfs::statvfs(path).map_err(io::Error::from)?;
    let frsize = s.fragment_size() as u64;
    let blocks = s.blocks() as u64;
    let bfree = s.blocks_free() as u64;
    let files = s.files() as u64;
    let ffree = s.files_free() as u64;
    Ok(FsStats {
        total_bytes: blocks.saturating_mul(frsize),
        used_bytes: blocks.saturating_sub(bfree).saturating_mul(frsize),
        available_bytes: (s.blocks_available() as u64).saturating_mul(frsize),
        inodes_total: files,
        inodes_used: files.saturating_sub(ffree),
        inodes_free: ffree,
    })
}

/// What `statvfs` would report for the simulated volume containing `path`
/// (its root or anything below it), or `None` when `path` is in none.
///
/// - `total_bytes` = the total declared in [`SIMULATED_CAPACITY_FILE`];
/// - `used_bytes` = allocated bytes (`st_blocks * 512`) of every entry below
///   the root (hard links once, symlinks not followed, other filesystems not
///   entered);
/// - `available_bytes` = `total - used`, saturating at 0;
/// - inodes: the declared count ([`SIMULATED_INODES_TOTAL`] by default),
///   one used per entry plus the root, at most all of them.
///
/// One `lstat` per entry: sub-millisecond for a fresh PostgreSQL data
/// directory, so a 1 s probe can call it freely.
pub fn simulated_stats(path: &Path) -> Option<FsStats> {
    let root = find_simulated_root(path)?;
    let declared = SimulatedCapacity::read(&root)?;
    let total = declared.total_bytes;
    let inodes_total = declared.inodes_total.unwrap_or(SIMULATED_INODES_TOTAL);
    let root_meta = std::fs::symlink_metadata(&root).ok()?;
    let mut seen = HashSet::new();
    let (used, entries) = walk_usage(&root, root_meta.dev(), &mut seen);
    let inodes_used = (entries + 1).min(inodes_total);
    Some(FsStats {
        total_bytes: total,
        used_bytes: used,
        available_bytes: total.saturating_sub(used),
        inodes_total,
        inodes_used,
        inodes_free: inodes_total - inodes_used,
    })
}

/// The nearest ancestor of `path` (itself included) holding the capacity file.
fn find_simulated_root(path: &Path) -> Option<PathBuf> {
    let mut dir = if path.is_dir() {
        Some(path)
    } else {
        path.parent()
    };
    while let Some(d) = dir {
        if d.join(SIMULATED_CAPACITY_FILE).is_file() {
            return Some(d.to_path_buf());
        }
        dir = d.parent();
    }
    None
}

/// Allocated bytes and number of entries below `dir`. Entries vanishing
/// while we walk (PostgreSQL recycling WAL) are skipped.
fn walk_usage(dir: &Path, dev: u64, seen: &mut HashSet<(u64, u64)>) -> (u64, u64) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return (0, 0);
    };
    let (mut used, mut count) = (0u64, 0u64);
    for entry in entries.flatten() {
        let Ok(meta) = entry.metadata() else { continue };
        if meta.nlink() > 1 && !meta.is_dir() && !seen.insert((meta.dev(), meta.ino())) {
            continue;
        }
        count += 1;
        used += meta.blocks() * 512;
        if meta.is_dir() && meta.dev() == dev {
            let (u, c) = walk_usage(&entry.path(), dev, seen);
            used += u;
            count += c;
        }
    }
    (used, count)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    #[test]
    fn statvfs_matches_df_arithmetic() {
        let dir = tempfile::tempdir().unwrap();
        let s = statvfs(dir.path()).unwrap();
        assert!(s.total_bytes > 0);
        assert!(s.used_bytes <= s.total_bytes);
        assert!(
            s.available_bytes <= s.total_bytes - s.used_bytes,
            "available excludes reserved blocks"
        );
        assert_eq!(s.inodes_used + s.inodes_free, s.inodes_total);
        assert!(statvfs(Path::new("/nonexistent/volume")).is_err());
    }

    #[test]
    fn simulated_volume_counts_files_below_its_root() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(
            simulated_stats(dir.path()),
            None,
            "no marker, no simulated volume"
        );
        std::fs::write(dir.path().join(SIMULATED_CAPACITY_FILE), "1048576\n").unwrap();
        std::fs::create_dir(dir.path().join("pgdata")).unwrap();
        let mut f = std::fs::File::create(dir.path().join("pgdata/big")).unwrap();
        f.write_all(&vec![7u8; 300 * 1024]).unwrap();
        f.sync_all().unwrap();
        let s = simulated_stats(&dir.path().join("pgdata")).unwrap();
        assert_eq!(s.total_bytes, 1 << 20);
        assert!(s.used_bytes >= 300 * 1024, "{s:?}");
        assert_eq!(s.available_bytes, s.total_bytes - s.used_bytes);
        assert!(s.percent_used() > 29.0);
        assert_eq!(s.inodes_used, 4, "root, marker, pgdata, big");
        assert_eq!(s.inodes_total, SIMULATED_INODES_TOTAL);
    }

    #[test]
    fn simulated_capacity_format_old_and_new() {
        // The original format: just the number.
        assert_eq!(
            SimulatedCapacity::parse("1048576\n"),
            Some(SimulatedCapacity::bytes(1 << 20))
        );
        assert_eq!(SimulatedCapacity::bytes(1 << 20).render(), "1048576\n");
        let declared = SimulatedCapacity {
            total_bytes: 57_380_864,
            inodes_total: Some(16384),
        };
        assert_eq!(declared.render(), "57380864\ninodes=16384\n");
        assert_eq!(SimulatedCapacity::parse(&declared.render()), Some(declared));
        // Unknown keys are skipped; malformed files are not volumes.
        assert_eq!(
            SimulatedCapacity::parse("5\nfuture=1\n\ninodes=7\n"),
            Some(SimulatedCapacity {
                total_bytes: 5,
                inodes_total: Some(7)
            })
        );
        for bad in ["", "x", "5\ninodes=many", "5\nno-equals-sign"] {
            assert_eq!(SimulatedCapacity::parse(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn simulated_volume_reports_declared_inodes() {
        let dir = tempfile::tempdir().unwrap();
        SimulatedCapacity {
            total_bytes: 1 << 20,
            inodes_total: Some(5),
        }
        .write(dir.path())
        .unwrap();
        for i in 0..6 {
            std::fs::write(dir.path().join(format!("f{i}")), b"").unwrap();
        }
        let s = simulated_stats(dir.path()).unwrap();
        assert_eq!(s.inodes_total, 5);
        assert_eq!(
            (s.inodes_used, s.inodes_free),
            (5, 0),
            "capped at the total"
        );
        assert!(!dir
            .path()
            .join(format!("{SIMULATED_CAPACITY_FILE}.tmp"))
            .exists());
    }
}
