//! Volumes: capacity, `df` semantics, filling, growing, cleanup.

use crate::common::{backends, mounted, tempdir, MIB};
use cnpg_testbed::volume::{simulated_stats, FILL_FILE};
use cnpg_testbed::{is_root, Volume, VolumeBackend, VolumeStats};
use std::path::Path;
use std::process::Command;

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

/// Stats must agree with `statvfs`/`df` (tmpfs) or with the simulation rules.
fn check_semantics(vol: &Volume, stats: &VolumeStats) {
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
            assert_eq!(stats.total_bytes, vol.capacity_bytes());
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
    assert_eq!(vol.is_mounted(), backend == VolumeBackend::Tmpfs);

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
