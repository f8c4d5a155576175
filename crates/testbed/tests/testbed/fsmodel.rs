//! The ext4 model against the real `mkfs.ext4` (and `resize2fs`) of this
//! machine, on sparse image files.
//!
//! As root the figures are read the way the product reads them: a read-only
//! loop mount and `statvfs`; `dumpe2fs -h` is checked against them. Without
//! root only `dumpe2fs -h` is available: total = (block count − overhead
//! clusters) × block size, which is what the kernel reports when mkfs set
//! the overhead (it does), and free blocks, block and inode counts for grown
//! filesystems (resize2fs clears the overhead field).

use cnpg_testbed::fsmodel::{Ext4Fs, MKFS_EXT4_ARGS};
use cnpg_testbed::is_root;
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::Command;

const MIB: u64 = 1 << 20;
const GIB: u64 = 1 << 30;

/// The sizes the model must get within 1 % of the real thing.
const CHECKED: [(u64, &str); 4] = [
    (64 * MIB, "64Mi"),
    (GIB, "1Gi"),
    (100 * GIB, "100Gi"),
    (500 * GIB, "500Gi"),
];

/// Figures of a real filesystem.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Real {
    /// `f_blocks * f_frsize`, when known.
    total_bytes: Option<u64>,
    block_size: u64,
    block_count: u64,
    free_blocks: u64,
    inodes: u64,
}

/// An e2fsprogs tool by name: on PATH, or in the sbin directories an
/// ordinary user's PATH often lacks.
fn tool(name: &str) -> PathBuf {
    let path = std::env::var_os("PATH").unwrap_or_default();
    let dirs = std::env::split_paths(&path)
        .chain(["/usr/sbin", "/sbin"].map(PathBuf::from))
        .collect::<Vec<_>>();
    dirs.iter()
        .map(|d| d.join(name))
        .find(|p| p.is_file())
        .unwrap_or_else(|| {
            panic!(
                "{name} not found (looked in {dirs:?}): install e2fsprogs \
                 (`apt-get install -y e2fsprogs`) to check the ext4 model"
            )
        })
}

fn run(cmd: &mut Command) -> String {
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("running {cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?} failed: {}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// A sparse file of `bytes` formatted as a CSI driver does. Only
/// `-E lazy_*,nodiscard` is added, which skips zeroing (so the file stays a
/// few MB on disk) and changes no figure.
fn mkfs(dir: &Path, bytes: u64) -> PathBuf {
    let img = dir.join(format!("ext4-{bytes}.img"));
    std::fs::File::create(&img)
        .and_then(|f| f.set_len(bytes))
        .unwrap_or_else(|e| panic!("creating sparse {}: {e}", img.display()));
    run(Command::new(tool("mkfs.ext4"))
        .arg("-q")
        .args(MKFS_EXT4_ARGS)
        .args(["-E", "lazy_itable_init=1,lazy_journal_init=1,nodiscard"])
        .arg(&img));
    img
}

/// `dumpe2fs -h` as key → value.
fn dumpe2fs(img: &Path) -> HashMap<String, String> {
    run(Command::new(tool("dumpe2fs")).arg("-h").arg(img))
        .lines()
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
        .collect()
}

fn field(fields: &HashMap<String, String>, key: &str) -> u64 {
    fields
        .get(key)
        .unwrap_or_else(|| panic!("dumpe2fs has no {key:?}: {fields:?}"))
        .parse()
        .unwrap_or_else(|e| panic!("dumpe2fs {key:?}: {e}"))
}

/// Unmounts on drop, also when an assertion fails while mounted.
struct Mounted(PathBuf);

impl Drop for Mounted {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(&self.0).status();
    }
}

/// The real figures of `img`: statvfs of a read-only loop mount as root
/// (cross-checked with dumpe2fs), dumpe2fs alone otherwise.
fn real(img: &Path) -> Real {
    let d = dumpe2fs(img);
    let block_size = field(&d, "Block size");
    let block_count = field(&d, "Block count");
    let from_dumpe2fs = Real {
        total_bytes: d
            .get("Overhead clusters")
            .map(|_| (block_count - field(&d, "Overhead clusters")) * block_size),
        block_size,
        block_count,
        free_blocks: field(&d, "Free blocks"),
        inodes: field(&d, "Inode count"),
    };
    if !is_root() {
        return from_dumpe2fs;
    }
    let mnt = img.with_extension("mnt");
    std::fs::create_dir_all(&mnt).unwrap();
    run(Command::new("mount")
        .args(["-o", "loop,ro"])
        .arg(img)
        .arg(&mnt));
    let guard = Mounted(mnt.clone());
    let s = nix::sys::statvfs::statvfs(&mnt).unwrap();
    drop(guard);
    let frsize = s.fragment_size() as u64;
    let measured = Real {
        total_bytes: Some(s.blocks() as u64 * frsize),
        block_size: frsize,
        block_count,
        free_blocks: s.blocks_free() as u64,
        inodes: s.files() as u64,
    };
    // dumpe2fs -h, the non-root path, must agree with the kernel.
    if from_dumpe2fs.total_bytes.is_some() {
        assert_eq!(
            from_dumpe2fs,
            measured,
            "dumpe2fs vs statvfs of {}",
            img.display()
        );
    } else {
        assert_eq!(
            Real {
                total_bytes: None,
                ..measured
            },
            from_dumpe2fs
        );
    }
    measured
}

fn relative_error(model: u64, real: u64) -> f64 {
    (model as f64 - real as f64).abs() / real as f64
}

fn image_dir() -> tempfile::TempDir {
    tempfile::Builder::new()
        .prefix("cnpg-fsmodel-")
        .tempdir()
        .unwrap()
}

#[test]
fn fsmodel_within_one_percent_of_real_mkfs_ext4() {
    let dir = image_dir();
    let mut table =
        String::from("device | real total | model total | error | real inodes | model inodes\n");
    for (bytes, name) in CHECKED {
        let img = mkfs(dir.path(), bytes);
        let real = real(&img);
        // The image stays sparse: mkfs wrote metadata only.
        let on_disk =
            std::os::unix::fs::MetadataExt::blocks(&std::fs::metadata(&img).unwrap()) * 512;
        assert!(
            on_disk < 64 * MIB,
            "{name}: image takes {on_disk} bytes on disk"
        );
        std::fs::remove_file(&img).unwrap();

        let model = Ext4Fs::mkfs(bytes).unwrap();
        let real_total = real.total_bytes.expect("mkfs records the overhead");
        let err = relative_error(model.total_bytes(), real_total);
        table += &format!(
            "{name} | {real_total} | {} | {:.4}% | {} | {}\n",
            model.total_bytes(),
            err * 100.0,
            real.inodes,
            model.inodes()
        );
        assert!(
            err <= 0.01,
            "{name}: model total {} vs real {real_total}",
            model.total_bytes()
        );
        assert!(
            relative_error(model.inodes(), real.inodes) <= 0.01,
            "{name}: model inodes {} vs real {}",
            model.inodes(),
            real.inodes
        );
        assert_eq!(model.block_size(), real.block_size, "{name}");
        // The filesystem is always smaller than the device.
        assert!(real_total < bytes && model.total_bytes() < bytes, "{name}");
    }
    eprintln!("{table}");
}

#[test]
fn fsmodel_growth_within_one_percent_of_real_resize2fs() {
    // A volume created small and grown keeps its geometry: 1 KiB blocks and
    // a 4 MiB journal for 64 MiB grown to 1 GiB, four times the inodes of a
    // fresh 1 GiB filesystem.
    let dir = image_dir();
    let img = mkfs(dir.path(), 64 * MIB);
    std::fs::File::options()
        .write(true)
        .open(&img)
        .and_then(|f| f.set_len(GIB))
        .unwrap();
    // resize2fs insists on a freshly checked filesystem when offline.
    run(Command::new(tool("e2fsck")).args(["-f", "-y"]).arg(&img));
    run(Command::new(tool("resize2fs")).arg(&img));
    let real = real(&img);
    std::fs::remove_file(&img).unwrap();

    let model = Ext4Fs::mkfs(64 * MIB).unwrap().grow(GIB);
    let fresh = Ext4Fs::mkfs(GIB).unwrap();
    eprintln!("64Mi grown to 1Gi: real {real:?}, model {model:?}, fresh 1Gi {fresh:?}");
    assert_eq!(real.block_size, 1024);
    assert_eq!(model.block_count(), real.block_count);
    let expected = model.statfs();
    assert!(relative_error(expected.free_blocks, real.free_blocks) <= 0.01);
    assert!(relative_error(model.inodes(), real.inodes) <= 0.01);
    if let Some(total) = real.total_bytes {
        assert!(
            relative_error(model.total_bytes(), total) <= 0.01,
            "{total}"
        );
    }
    // Far from a fresh filesystem of the new size.
    assert!(relative_error(fresh.inodes(), real.inodes) > 0.5);
}

#[test]
fn fsmodel_missing_e2fsprogs_fails_with_the_install_hint() {
    // Never a silent skip: a missing tool fails the test and says what to do.
    let err = std::panic::catch_unwind(|| tool("mkfs.cnpg-no-such-tool")).unwrap_err();
    let message = err.downcast_ref::<String>().cloned().unwrap_or_default();
    assert!(
        message.contains("apt-get install -y e2fsprogs"),
        "{message}"
    );
}
