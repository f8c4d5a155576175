//! Volumes: capacity, `df` semantics, filling, growing, cleanup.

use crate::common::{backends, mounted, tempdir, MIB};
use cnpg_testbed::fsmodel::Ext4Fs;
use cnpg_testbed::volume::{
    model_grown_total_bytes, model_inodes, simulated_stats, SimulatedCapacity, FILL_FILE,
    INODE_FILL_DIR, SIMULATED_CAPACITY_FILE,
};
use cnpg_testbed::{
    is_root, model_total_bytes, FilesystemKind, Volume, VolumeBackend, VolumeStats,
};
use std::path::Path;
use std::process::Command;

const GIB: u64 = 1 << 30;

/// `df -B1` of `path`: (size, used, avail, itotal, iused, ifree).
fn df(path: &Path) -> (u64, u64, u64, u64, u64, u64) {
    let out = Command::new("df")
        .args(["-B1", "--output=size,used,avail,itotal,iused,iavail"])
        .arg(path)
        .output()
        .unwrap();
    assert!(out.status.success(), "df failed: {out:?}");
    let text = String::from_utf8(out.stdout).unwrap();
    let v: Vec<u64> = text
        .lines()
        .nth(1)
        .unwrap()
        .split_whitespace()
        .map(|f| f.parse().unwrap())
        .collect();
    (v[0], v[1], v[2], v[3], v[4], v[5])
}

/// Stats must agree with `statvfs`/`df` (tmpfs) or with the simulation
/// rules, and show the filesystem the volume presents.
fn check_semantics(vol: &Volume, stats: &VolumeStats) {
    assert_eq!(stats.total_bytes, vol.filesystem_total_bytes());
    if let Some(inodes) = vol.filesystem_inodes() {
        assert_eq!(stats.inodes_total, inodes);
    }
    match vol.backend() {
        VolumeBackend::Tmpfs => {
            assert_eq!(*stats, cnpg_fsstat::statvfs(vol.path()).unwrap());
            let (size, used, avail, itotal, iused, ifree) = df(vol.path());
            assert_eq!(stats.total_bytes, size);
            assert_eq!(stats.used_bytes, used);
            assert_eq!(stats.available_bytes, avail);
            assert_eq!(stats.inodes_total, itotal);
            assert_eq!(stats.inodes_used, iused);
            assert_eq!(stats.inodes_free, ifree);
        }
        VolumeBackend::Directory => {
            assert_eq!(Some(*stats), simulated_stats(vol.path()));
            assert_eq!(
                stats.available_bytes,
                stats.total_bytes.saturating_sub(stats.used_bytes)
            );
            assert_eq!(stats.inodes_total, stats.inodes_used + stats.inodes_free);
        }
    }
}

fn lifecycle(backend: VolumeBackend) {
    let dir = tempdir();
    let path = dir.path().join("vol");
    let vol = Volume::create_with_backend(&path, 64 * MIB, backend).unwrap();
    let path = vol.path().to_path_buf();
    assert_eq!(vol.backend(), backend);
    assert_eq!(vol.kind(), FilesystemKind::Raw);
    assert_eq!(vol.is_mounted(), backend == VolumeBackend::Tmpfs);
    // Raw: the filesystem is the device, as before the ext4 model.
    assert_eq!(vol.filesystem_total_bytes(), 64 * MIB);
    assert_eq!(vol.filesystem_inodes(), None);
    if backend == VolumeBackend::Directory {
        // The original capacity-file format, byte for byte.
        let text = std::fs::read_to_string(path.join(SIMULATED_CAPACITY_FILE)).unwrap();
        assert_eq!(text, format!("{}\n", 64 * MIB));
    }

    let stats = vol.stats().unwrap();
    check_semantics(&vol, &stats);
    assert_eq!(stats.total_bytes, 64 * MIB);
    assert!(stats.percent_used() < 1.0, "{stats:?}");

    // A file that must survive growing.
    std::fs::write(path.join("keep"), b"precious").unwrap();
    let sub = path.join("sub");
    std::fs::create_dir(&sub).unwrap();
    std::fs::write(sub.join("f"), vec![1u8; 100_000]).unwrap();

    vol.fill_to_percent(85.0).unwrap();
    let stats = vol.stats().unwrap();
    check_semantics(&vol, &stats);
    assert!(stats.percent_used() > 85.0, "{stats:?}");
    assert!(stats.percent_used() < 85.5, "overshoot: {stats:?}");
    // Stats are found from anywhere inside a simulated volume.
    if backend == VolumeBackend::Directory {
        assert_eq!(simulated_stats(&sub), Some(stats));
        assert_eq!(simulated_stats(&sub.join("f")), Some(stats));
    }
    // Filling lower shrinks the filler.
    vol.fill_to_percent(50.0).unwrap();
    let p = vol.stats().unwrap().percent_used();
    assert!(p > 50.0 && p < 50.5, "{p}");
    vol.fill_to_percent(85.0).unwrap();

    vol.grow(128 * MIB).unwrap();
    let stats = vol.stats().unwrap();
    check_semantics(&vol, &stats);
    assert_eq!(stats.total_bytes, 128 * MIB);
    assert_eq!(vol.capacity_bytes(), 128 * MIB);
    assert!(
        stats.percent_used() > 42.0 && stats.percent_used() < 43.5,
        "{stats:?}"
    );
    assert_eq!(std::fs::read(path.join("keep")).unwrap(), b"precious");
    assert_eq!(std::fs::read(sub.join("f")).unwrap().len(), 100_000);
    assert!(path.join(FILL_FILE).exists());

    // Shrinking is refused, growing to the same size is a no-op.
    assert!(vol.grow(64 * MIB).is_err());
    vol.grow(128 * MIB).unwrap();

    let before = vol.stats().unwrap().used_bytes;
    vol.clear_fill().unwrap();
    let cleared = vol.stats().unwrap();
    assert!(cleared.used_bytes + 50 * MIB < before, "{cleared:?}");
    vol.fill_bytes(10 * MIB).unwrap();
    let after = vol.stats().unwrap();
    check_semantics(&vol, &after);
    assert!(
        after.used_bytes >= cleared.used_bytes + 10 * MIB,
        "{after:?}"
    );

    // A real tmpfs refuses to store more than its size.
    if backend == VolumeBackend::Tmpfs {
        let err = vol.fill_bytes(200 * MIB).unwrap_err();
        assert!(format!("{err:#}").contains("no space"), "{err:#}");
    }

    // Full to the last byte, as a database that ran out of space leaves it;
    // growing the device gives room again.
    vol.fill_completely().unwrap();
    let full = vol.stats().unwrap();
    check_semantics(&vol, &full);
    assert_eq!(full.available_bytes, 0, "{full:?}");
    if backend == VolumeBackend::Tmpfs {
        let err = vol.fill_bytes(4096).unwrap_err();
        assert!(format!("{err:#}").contains("no space"), "{err:#}");
    }
    vol.grow(192 * MIB).unwrap();
    let grown = vol.stats().unwrap();
    assert!(grown.available_bytes >= 63 * MIB, "{grown:?}");

    drop(vol);
    assert!(!mounted(&path), "{} still mounted", path.display());
    assert!(!path.exists(), "{} not removed", path.display());
}

#[test]
fn volume_lifecycle_all_backends() {
    for backend in backends() {
        lifecycle(backend);
    }
}

#[test]
fn default_backend_follows_privileges() {
    let dir = tempdir();
    let vol = Volume::create(&dir.path().join("v"), 8 * MIB).unwrap();
    let expected = if is_root() {
        VolumeBackend::Tmpfs
    } else {
        VolumeBackend::Directory
    };
    assert_eq!(vol.backend(), expected);
    if !is_root() {
        assert!(
            Volume::create_with_backend(&dir.path().join("t"), 8 * MIB, VolumeBackend::Tmpfs)
                .is_err()
        );
    }
}

#[test]
fn refuses_non_empty_directory() {
    let dir = tempdir();
    std::fs::write(dir.path().join("x"), b"x").unwrap();
    let err = Volume::create(dir.path(), 8 * MIB).unwrap_err();
    assert!(format!("{err:#}").contains("non-empty"), "{err:#}");
    assert!(dir.path().join("x").exists());
}

#[test]
fn simulated_stats_outside_volume_is_none() {
    let dir = tempdir();
    assert_eq!(simulated_stats(dir.path()), None);
}

#[test]
fn no_mount_left_when_a_test_panics() {
    for backend in backends() {
        let dir = tempdir();
        let path = dir.path().join("panicking");
        let p = path.clone();
        let result = std::panic::catch_unwind(move || {
            let vol = Volume::create_with_backend(&p, 8 * MIB, backend).unwrap();
            vol.fill_to_percent(50.0).unwrap();
            assert_eq!(vol.is_mounted(), backend == VolumeBackend::Tmpfs);
            panic!("test failure while the volume is in use");
        });
        assert!(result.is_err());
        assert!(!mounted(&path));
        assert!(!path.exists());
    }
}

#[test]
fn busy_volume_leaves_no_mount_on_drop() {
    // An open file keeps a tmpfs busy; drop must still leave no mount.
    let dir = tempdir();
    let path = dir.path().join("busy");
    let vol = Volume::create(&path, 8 * MIB).unwrap();
    let path = vol.path().to_path_buf();
    let file = std::fs::File::create(path.join("open")).unwrap();
    drop(vol);
    assert!(!mounted(&path));
    drop(file);
}

#[test]
fn stale_mounts_of_dead_processes_are_swept() {
    use cnpg_testbed::volume::sweep_stale_mounts;
    // A pid that existed and is gone now.
    let mut child = Command::new("true").spawn().unwrap();
    let dead = child.id();
    child.wait().unwrap();
    if !is_root() {
        // Nothing to sweep without the right to mount.
        assert_eq!(sweep_stale_mounts(), 0);
        return;
    }
    let dir = tempdir();
    let mp = dir.path().join("stale");
    std::fs::create_dir(&mp).unwrap();
    nix::mount::mount(
        Some(format!("cnpg-testbed-{dead}").as_str()),
        &mp,
        Some("tmpfs"),
        nix::mount::MsFlags::empty(),
        Some("size=1m"),
    )
    .unwrap();
    assert!(mounted(&mp));
    assert!(sweep_stale_mounts() >= 1);
    assert!(!mounted(&mp));
    assert!(!mp.exists());
}

/// Percentage of inodes in use, as `df -i` computes IUse% before rounding.
fn inode_percent(s: &VolumeStats) -> f64 {
    s.inodes_used as f64 * 100.0 / s.inodes_total as f64
}

fn ext4_lifecycle(backend: VolumeBackend) {
    let dir = tempdir();
    let vol = Volume::create_with_backend_and_kind(
        &dir.path().join("ext4"),
        64 * MIB,
        backend,
        FilesystemKind::Ext4,
    )
    .unwrap();
    let path = vol.path().to_path_buf();
    assert_eq!(vol.kind(), FilesystemKind::Ext4);
    // The PVC's size is the device's; the filesystem is what ext4 shows on
    // it (57 381 888 bytes) rounded down to tmpfs's 4 KiB pages.
    assert_eq!(vol.capacity_bytes(), 64 * MIB);
    assert_eq!(vol.filesystem_total_bytes(), 57_380_864);
    assert_eq!(Ext4Fs::mkfs(64 * MIB).unwrap().total_bytes(), 57_381_888);
    assert_eq!(
        model_total_bytes(FilesystemKind::Ext4, 64 * MIB).unwrap(),
        57_380_864
    );
    assert_eq!(vol.filesystem_inodes(), Some(16384));
    let stats = vol.stats().unwrap();
    check_semantics(&vol, &stats);
    assert_eq!((stats.total_bytes, stats.inodes_total), (57_380_864, 16384));
    if backend == VolumeBackend::Directory {
        assert_eq!(
            SimulatedCapacity::read(&path),
            Some(SimulatedCapacity {
                total_bytes: 57_380_864,
                inodes_total: Some(16384)
            })
        );
    }
    std::fs::write(path.join("keep"), b"precious").unwrap();

    // Growing within the size class is like formatting the new size.
    assert_eq!(
        vol.total_bytes_after_grow(128 * MIB),
        model_total_bytes(FilesystemKind::Ext4, 128 * MIB).unwrap()
    );
    vol.grow(128 * MIB).unwrap();
    let stats = vol.stats().unwrap();
    check_semantics(&vol, &stats);
    assert_eq!(vol.capacity_bytes(), 128 * MIB);
    assert_eq!(
        stats.total_bytes,
        model_total_bytes(FilesystemKind::Ext4, 128 * MIB).unwrap()
    );
    assert_eq!(stats.inodes_total, 32768, "inodes grow with the groups");
    // A 128 MiB ext4 cannot hold 121 MiB; a tmpfs presenting it refuses too.
    if backend == VolumeBackend::Tmpfs {
        let err = vol.fill_bytes(121 * MIB).unwrap_err();
        assert!(format!("{err:#}").contains("no space"), "{err:#}");
        vol.clear_fill().unwrap();
    }
    vol.fill_to_percent(80.0).unwrap();
    let p = vol.stats().unwrap().percent_used();
    assert!(p > 80.0 && p < 80.5, "{p}");

    // Across size classes the creation-time geometry stays: 1 KiB blocks,
    // one inode per 4 KiB — not a fresh 1 GiB filesystem.
    let predicted = vol.total_bytes_after_grow(GIB);
    assert_eq!(
        predicted,
        model_grown_total_bytes(FilesystemKind::Ext4, 64 * MIB, GIB).unwrap()
    );
    assert!(predicted < model_total_bytes(FilesystemKind::Ext4, GIB).unwrap());
    vol.grow(GIB).unwrap();
    let stats = vol.stats().unwrap();
    check_semantics(&vol, &stats);
    assert_eq!(stats.total_bytes, predicted);
    assert_eq!(stats.inodes_total, 262_144);
    assert_eq!(
        model_inodes(FilesystemKind::Ext4, GIB).unwrap(),
        Some(65_536)
    );
    assert_eq!(
        vol.total_bytes_after_grow(128 * MIB),
        predicted,
        "no shrinking"
    );
    assert!(vol.grow(128 * MIB).is_err());
    assert_eq!(std::fs::read(path.join("keep")).unwrap(), b"precious");

    drop(vol);
    assert!(!mounted(&path));
    assert!(!path.exists());
}

#[test]
fn volume_ext4_presents_the_model_all_backends() {
    for backend in backends() {
        ext4_lifecycle(backend);
    }
}

#[test]
fn volume_ext4_refuses_devices_the_model_does_not_cover() {
    let dir = tempdir();
    for backend in backends() {
        let err = Volume::create_with_backend_and_kind(
            &dir.path().join("tiny"),
            512 * 1024,
            backend,
            FilesystemKind::Ext4,
        )
        .unwrap_err();
        assert!(format!("{err:#}").contains("1 MiB"), "{err:#}");
        assert!(!dir.path().join("tiny").exists());
    }
    assert!(model_total_bytes(FilesystemKind::Ext4, 1000).is_err());
    assert_eq!(model_total_bytes(FilesystemKind::Raw, 1000).unwrap(), 1000);
}

fn inode_fill(backend: VolumeBackend) {
    let dir = tempdir();
    // 8 MiB of ext4: 2048 inodes.
    let vol = Volume::create_with_backend_and_kind(
        &dir.path().join("inodes"),
        8 * MIB,
        backend,
        FilesystemKind::Ext4,
    )
    .unwrap();
    let path = vol.path().to_path_buf();
    assert_eq!(vol.stats().unwrap().inodes_total, 2048);
    let before = vol.stats().unwrap().inodes_used;

    for percent in [90.0, 50.0, 75.5] {
        vol.fill_inodes_to_percent(percent).unwrap();
        let s = vol.stats().unwrap();
        check_semantics(&vol, &s);
        // Just over: one inode fewer would not be over.
        assert!(inode_percent(&s) > percent, "{percent}: {s:?}");
        assert!(
            (s.inodes_used - 1) as f64 * 100.0 / s.inodes_total as f64 <= percent,
            "{percent}: {s:?}"
        );
    }

    // Every inode taken.
    vol.fill_inodes_to_percent(99.99).unwrap();
    let s = vol.stats().unwrap();
    assert_eq!((s.inodes_used, s.inodes_free), (2048, 0), "{s:?}");
    if backend == VolumeBackend::Tmpfs {
        // The limit is real: no file can be created although space is left.
        assert!(s.available_bytes > MIB);
        let err = std::fs::File::create(path.join("one-more")).unwrap_err();
        assert_eq!(err.raw_os_error(), Some(libc_enospc()), "{err}");
    }

    // Growing the device adds inodes (ext4 adds groups), freeing room.
    vol.grow(16 * MIB).unwrap();
    let s = vol.stats().unwrap();
    check_semantics(&vol, &s);
    assert_eq!(s.inodes_total, 4096);
    assert!(
        inode_percent(&s) > 49.0 && inode_percent(&s) < 51.0,
        "{s:?}"
    );
    std::fs::File::create(path.join("one-more")).unwrap();

    vol.clear_inode_fill().unwrap();
    assert!(!path.join(INODE_FILL_DIR).exists());
    let s = vol.stats().unwrap();
    assert_eq!(s.inodes_used, before + 1, "only one-more is left: {s:?}");
    vol.clear_inode_fill().unwrap();
    assert!(vol.fill_inodes_to_percent(100.0).is_err());
    assert!(vol.fill_inodes_to_percent(-1.0).is_err());
}

/// ENOSPC (28 on Linux).
fn libc_enospc() -> i32 {
    nix::errno::Errno::ENOSPC as i32
}

#[test]
fn volume_inodes_fill_and_release_all_backends() {
    for backend in backends() {
        inode_fill(backend);
    }
}
