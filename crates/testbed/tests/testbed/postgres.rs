//! PostgreSQL launcher: replication, WAL dir and tablespace volumes,
//! archiving failures, slots, least-privilege monitoring, hanging slot
//! queries, crashes and leak-free teardown.

use crate::common::{alive, init_tracing, mounted, tempdir, volume};
use cnpg_testbed::{is_root, PgBinaries, PgServer, VolumeBackend};
use std::path::PathBuf;
use std::time::{Duration, Instant};

/// Assert that every pid is gone and no path is still a mount point / exists.
fn assert_torn_down(pids: &[i32], paths: &[PathBuf]) {
    assert!(!pids.is_empty());
    for pid in pids {
        assert!(!alive(*pid), "postgres process {pid} survived teardown");
    }
    for p in paths {
        assert!(!mounted(p), "{} still mounted", p.display());
        assert!(!p.exists(), "{} still exists", p.display());
    }
}

/// Poll `f` every 100 ms until it returns true or `timeout` passes.
async fn eventually<F, Fut>(what: &str, timeout: Duration, mut f: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = Instant::now() + timeout;
    while !f().await {
        assert!(Instant::now() < deadline, "timed out waiting for: {what}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[test]
fn binaries_are_discovered() {
    let bins = PgBinaries::discover().unwrap();
    for b in ["initdb", "postgres", "pg_ctl", "pg_basebackup"] {
        assert!(
            bins.binary(b).is_file(),
            "{b} missing in {}",
            bins.bin_dir().display()
        );
    }
}

#[tokio::test]
async fn primary_and_replica_on_separate_volumes() {
    init_tracing();
    let dir = tempdir();
    let p_data = volume(dir.path(), "p-data", 128);
    let p_wal = volume(dir.path(), "p-wal", 256);
    let p_tbs = volume(dir.path(), "p-tbs", 32);
    let r_data = volume(dir.path(), "r-data", 128);
    let r_wal = volume(dir.path(), "r-wal", 256);
    let r_tbs = volume(dir.path(), "r-tbs", 32);
    let paths: Vec<PathBuf> = [&p_data, &p_wal, &p_tbs, &r_data, &r_wal, &r_tbs]
        .iter()
        .map(|v| v.path().to_path_buf())
        .collect();

    let primary = PgServer::primary("pg-1", p_data.clone())
        .wal_volume(p_wal.clone())
        .start()
        .await
        .unwrap();
    assert!(primary.ip().is_loopback() && primary.ip() != std::net::Ipv4Addr::LOCALHOST);
    // WAL really lives on the WAL volume, behind the pg_wal symlink.
    let link = std::fs::read_link(primary.pgdata().join("pg_wal")).unwrap();
    assert!(link.starts_with(p_wal.path()), "{}", link.display());
    assert!(p_wal.path().join("pg_wal").is_dir());

    primary
        .create_tablespace("tbs1", p_tbs.clone())
        .await
        .unwrap();
    let client = primary.connect().await.unwrap();
    client
        .batch_execute(
            "CREATE TABLE t (id int, v text) TABLESPACE tbs1;
             INSERT INTO t SELECT g, repeat('x', 500) FROM generate_series(1, 2000) g;
             CHECKPOINT;",
        )
        .await
        .unwrap();
    // The tablespace's files are on the tablespace volume.
    let tbs_used = p_tbs.stats().unwrap().used_bytes;
    assert!(
        tbs_used > 1 << 20,
        "tablespace volume holds {tbs_used} bytes"
    );

    let replica = primary
        .replica("pg-2", r_data.clone())
        .wal_volume(r_wal.clone())
        .tablespace_volume("tbs1", r_tbs.clone())
        .start()
        .await
        .unwrap();
    assert_ne!(replica.ip(), primary.ip());
    assert!(replica.is_replica());
    primary
        .wait_for_streaming_replica("pg-2", Duration::from_secs(30))
        .await
        .unwrap();

    let row = client
        .query_one(
            "SELECT state, client_addr IS NOT NULL FROM pg_stat_replication WHERE application_name = 'pg-2'",
            &[],
        )
        .await
        .unwrap();
    assert_eq!(row.get::<_, String>(0), "streaming");
    assert!(row.get::<_, bool>(1));

    // The standby replays, is in recovery, and stores WAL and tablespace on its own volumes.
    client
        .batch_execute("INSERT INTO t VALUES (-1, 'after clone')")
        .await
        .unwrap();
    let rclient = replica.connect().await.unwrap();
    let in_recovery: bool = rclient
        .query_one("SELECT pg_is_in_recovery()", &[])
        .await
        .unwrap()
        .get(0);
    assert!(in_recovery);
    eventually(
        "replica sees the new row",
        Duration::from_secs(30),
        || async {
            rclient
                .query_opt("SELECT 1 FROM t WHERE id = -1", &[])
                .await
                .map(|r| r.is_some())
                .unwrap_or(false)
        },
    )
    .await;
    let rlink = std::fs::read_link(replica.pgdata().join("pg_wal")).unwrap();
    assert!(rlink.starts_with(r_wal.path()), "{}", rlink.display());
    assert!(r_tbs.stats().unwrap().used_bytes > 1 << 20);
    let spc: String = rclient
        .query_one(
            "SELECT pg_tablespace_location(oid) FROM pg_tablespace WHERE spcname = 'tbs1'",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert!(
        spc.starts_with(r_tbs.path().to_str().unwrap()),
        "replica tablespace at {spc}"
    );
    // Tablespaces after cloning are refused with a clear error.
    let err = primary
        .create_tablespace("late", volume(dir.path(), "late", 8))
        .await
        .unwrap_err();
    assert!(
        format!("{err:#}").contains("before cloning replicas"),
        "{err:#}"
    );

    let mut pids = primary.process_ids();
    pids.extend(replica.process_ids());
    assert!(pids.len() > 6, "{pids:?}");
    drop((client, rclient));
    drop((primary, replica));
    drop((p_data, p_wal, p_tbs, r_data, r_wal, r_tbs));
    assert_torn_down(&pids, &paths);
}

#[tokio::test]
async fn archiving_fails_and_recovers() {
    init_tracing();
    let dir = tempdir();
    let data = volume(dir.path(), "data", 128);
    let wal = volume(dir.path(), "wal", 256);
    let pg = PgServer::primary("arch", data.clone())
        .wal_volume(wal.clone())
        .start()
        .await
        .unwrap();
    let client = pg.connect().await.unwrap();

    // Healthy first: a switched segment is archived.
    pg.generate_wal(1 << 20).await.unwrap();
    eventually(
        "first segment archived",
        Duration::from_secs(30),
        || async {
            let row = client
                .query_one("SELECT archived_count FROM pg_stat_archiver", &[])
                .await
                .unwrap();
            row.get::<_, i64>(0) > 0
        },
    )
    .await;
    assert!(std::fs::read_dir(pg.archive_dir()).unwrap().count() > 0);

    pg.set_archive_failing(true).unwrap();
    pg.generate_wal(1 << 20).await.unwrap();
    eventually("archiving fails", Duration::from_secs(30), || async {
        let row = client
            .query_one(
                "SELECT failed_count > 0 AND last_failed_time > coalesce(last_archived_time, '-infinity') FROM pg_stat_archiver",
                &[],
            )
            .await
            .unwrap();
        row.get::<_, bool>(0)
    })
    .await;
    let ready_1 = pg.pending_ready_files().unwrap();
    assert!(ready_1 >= 1, "{ready_1}");
    for _ in 0..3 {
        pg.generate_wal(1 << 20).await.unwrap();
    }
    let ready_2 = pg.pending_ready_files().unwrap();
    assert!(ready_2 >= ready_1 + 3, "backlog {ready_1} -> {ready_2}");

    pg.set_archive_failing(false).unwrap();
    pg.generate_wal(1 << 20).await.unwrap(); // wakes the archiver
    eventually("archiving recovers", Duration::from_secs(60), || async {
        let row = client
            .query_one(
                "SELECT last_archived_time > last_failed_time FROM pg_stat_archiver",
                &[],
            )
            .await
            .unwrap();
        row.get::<_, bool>(0) && pg.pending_ready_files().unwrap() == 0
    })
    .await;

    let pids = pg.process_ids();
    let paths = vec![data.path().to_path_buf(), wal.path().to_path_buf()];
    drop(client);
    drop(pg);
    drop((data, wal));
    assert_torn_down(&pids, &paths);
}

#[tokio::test]
async fn inactive_slot_and_least_privilege_monitor() {
    init_tracing();
    let dir = tempdir();
    let data = volume(dir.path(), "data", 256);
    let pg = PgServer::primary("slots", data.clone())
        .start()
        .await
        .unwrap();

    pg.create_inactive_physical_slot("abandoned").await.unwrap();
    let before = pg.slot_retained_bytes("abandoned").await.unwrap().unwrap();
    let written = pg.generate_wal(20 << 20).await.unwrap();
    assert!(written >= 20 << 20);
    let after = pg.slot_retained_bytes("abandoned").await.unwrap().unwrap();
    assert!(after >= before + (20 << 20), "retained {before} -> {after}");
    assert_eq!(pg.slot_retained_bytes("nope").await.unwrap(), None);

    pg.create_monitor_role("cnpg_autoresize", "s3cr'et")
        .await
        .unwrap();
    let dsn = pg.dsn_for("cnpg_autoresize", "s3cr'et");
    let (mon, conn) = tokio_postgres::connect(&dsn, tokio_postgres::NoTls)
        .await
        .unwrap();
    tokio::spawn(conn);
    let wrong = pg.connect_as("cnpg_autoresize", "wrong").await;
    assert!(wrong.is_err(), "password authentication must be enforced");

    let row = mon
        .query_one(
            "SELECT r.rolsuper, pg_has_role(current_user, 'pg_monitor', 'member'),
                    (SELECT count(*) FROM pg_auth_members m WHERE m.member = r.oid)
             FROM pg_roles r WHERE r.rolname = current_user",
            &[],
        )
        .await
        .unwrap();
    assert!(!row.get::<_, bool>(0), "monitor must not be superuser");
    assert!(row.get::<_, bool>(1));
    assert_eq!(row.get::<_, i64>(2), 1, "member of pg_monitor only");

    // Everything the WAL health check reads.
    let row = mon
        .query_one(
            "SELECT pg_is_in_recovery(), archived_count, failed_count,
                    current_setting('archive_mode'), current_setting('archive_command') <> ''
             FROM pg_stat_archiver",
            &[],
        )
        .await
        .unwrap();
    assert!(!row.get::<_, bool>(0));
    assert_eq!(row.get::<_, String>(3), "on");
    assert!(row.get::<_, bool>(4));
    let row = mon
        .query_one(
            "SELECT slot_name::text, active,
                    pg_wal_lsn_diff(pg_current_wal_lsn(), restart_lsn)::bigint
             FROM pg_replication_slots WHERE slot_type = 'physical'",
            &[],
        )
        .await
        .unwrap();
    assert_eq!(row.get::<_, String>(0), "abandoned");
    assert!(!row.get::<_, bool>(1));
    assert!(row.get::<_, i64>(2) >= 20 << 20);
    // No generic file access: .ready counts come from the filesystem.
    let err = mon
        .query_one(
            "SELECT count(*) FROM pg_ls_dir('pg_wal/archive_status')",
            &[],
        )
        .await
        .unwrap_err();
    assert_eq!(
        err.code(),
        Some(&tokio_postgres::error::SqlState::INSUFFICIENT_PRIVILEGE),
        "{err}"
    );
    assert!(pg.pending_ready_files().is_ok());

    let pids = pg.process_ids();
    let paths = vec![data.path().to_path_buf()];
    drop(mon);
    drop(pg);
    drop(data);
    assert_torn_down(&pids, &paths);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slot_query_blocks_while_view_is_locked() {
    init_tracing();
    let dir = tempdir();
    let data = volume(dir.path(), "data", 128);
    let pg = PgServer::primary("hang", data.clone())
        .start()
        .await
        .unwrap();
    pg.create_inactive_physical_slot("s").await.unwrap();
    pg.create_monitor_role("mon", "pw").await.unwrap();
    let mon = pg.connect_as("mon", "pw").await.unwrap();

    let lock = pg.lock_slots_view().await.unwrap();

    // 1. A statement timeout cancels the waiting query (what the product relies on).
    mon.batch_execute("SET statement_timeout = '700ms'")
        .await
        .unwrap();
    let t = Instant::now();
    let err = mon
        .query("SELECT slot_name FROM pg_replication_slots", &[])
        .await
        .unwrap_err();
    assert_eq!(
        err.code(),
        Some(&tokio_postgres::error::SqlState::QUERY_CANCELED),
        "{err}"
    );
    assert!(
        t.elapsed() >= Duration::from_millis(650),
        "{:?}",
        t.elapsed()
    );
    mon.batch_execute("RESET statement_timeout").await.unwrap();

    // 2. Without a timeout it waits until released, while other views stay readable.
    // New connections are not blocked by the lock (only the view is).
    let mon2 = tokio::time::timeout(Duration::from_secs(5), pg.connect_as("mon", "pw"))
        .await
        .expect("connecting blocked by the slots-view lock")
        .unwrap();
    let waiting = tokio::spawn(async move {
        mon2.query_one("SELECT count(*) FROM pg_replication_slots", &[])
            .await
            .map(|r| r.get::<_, i64>(0))
    });
    tokio::time::sleep(Duration::from_millis(1000)).await;
    assert!(!waiting.is_finished(), "slot query did not block");
    let archived: i64 = mon
        .query_one("SELECT archived_count FROM pg_stat_archiver", &[])
        .await
        .unwrap()
        .get(0);
    assert!(archived >= 0);
    lock.release().await.unwrap();
    let n = tokio::time::timeout(Duration::from_secs(5), waiting)
        .await
        .expect("slot query still blocked after release")
        .unwrap()
        .unwrap();
    assert_eq!(n, 1);

    // 3. Dropping the guard (e.g. a failing test) releases it too.
    let lock = pg.lock_slots_view().await.unwrap();
    drop(lock);
    let n: i64 = tokio::time::timeout(
        Duration::from_secs(5),
        mon.query_one("SELECT count(*) FROM pg_replication_slots", &[]),
    )
    .await
    .expect("lock not released on drop")
    .unwrap()
    .get(0);
    assert_eq!(n, 1);
}

#[tokio::test]
async fn crash_stop_and_restart() {
    init_tracing();
    let dir = tempdir();
    let data = volume(dir.path(), "data", 128);
    let pg = PgServer::primary("crash", data.clone())
        .start()
        .await
        .unwrap();
    let c = pg.connect().await.unwrap();
    c.batch_execute("CREATE TABLE kept(x int); INSERT INTO kept VALUES (42);")
        .await
        .unwrap();
    drop(c);

    let pids = pg.process_ids();
    pg.kill().await.unwrap();
    assert!(!pg.is_running());
    for p in &pids {
        assert!(!alive(*p), "{p} survived kill()");
    }
    assert!(pg.connect().await.is_err());

    // Crash recovery, then a clean stop/start cycle.
    pg.start().await.unwrap();
    let x: i32 = pg
        .connect()
        .await
        .unwrap()
        .query_one("SELECT x FROM kept", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(x, 42);
    pg.stop().await.unwrap();
    assert!(!pg.is_running());
    pg.stop().await.unwrap(); // idempotent
    pg.start().await.unwrap();
    assert!(pg.is_running());
    let pids = pg.process_ids();
    let paths = vec![data.path().to_path_buf()];
    drop(pg);
    drop(data);
    assert_torn_down(&pids, &paths);
}

#[test]
fn no_postgres_left_when_a_test_panics() {
    init_tracing();
    let dir = tempdir();
    let seen = std::sync::Arc::new(std::sync::Mutex::new((Vec::new(), Vec::new())));
    let seen2 = seen.clone();
    let base = dir.path().to_path_buf();
    let result = std::thread::spawn(move || {
        let rt = tokio::runtime::Runtime::new().unwrap();
        rt.block_on(async move {
            let data = volume(&base, "data", 128);
            let pg = PgServer::primary("panics", data.clone())
                .start()
                .await
                .unwrap();
            *seen2.lock().unwrap() = (pg.process_ids(), vec![data.path().to_path_buf()]);
            panic!("test failure while PostgreSQL runs");
        })
    })
    .join();
    assert!(result.is_err());
    let (pids, paths) = seen.lock().unwrap().clone();
    assert_torn_down(&pids, &paths);
}

#[tokio::test]
async fn directory_backend_works_for_postgres_too() {
    // As root this exercises the non-root volume path with PostgreSQL; as
    // an ordinary user it is the default anyway.
    init_tracing();
    let dir = tempdir();
    let vol = std::sync::Arc::new(
        cnpg_testbed::Volume::create_with_backend(
            &dir.path().join("data"),
            256 << 20,
            VolumeBackend::Directory,
        )
        .unwrap(),
    );
    let pg = PgServer::primary("dirvol", vol.clone())
        .start()
        .await
        .unwrap();
    // The probe calls simulated_stats every second: it must stay cheap.
    let t = Instant::now();
    let stats = vol.stats().unwrap();
    let took = t.elapsed();
    eprintln!("simulated_stats of a fresh PGDATA took {took:?}: {stats:?}");
    assert!(took < Duration::from_millis(200), "{took:?}");
    assert!(stats.used_bytes > 10 << 20, "{stats:?}");
    assert!(stats.inodes_used > 500, "{stats:?}");
    assert_eq!(stats.total_bytes, 256 << 20);
    if is_root() {
        use std::os::unix::fs::MetadataExt;
        let uid = std::fs::metadata(pg.pgdata()).unwrap().uid();
        assert_ne!(uid, 0, "PGDATA must belong to postgres");
    }
}

#[tokio::test]
async fn cnpg_shaped_cluster() {
    use cnpg_testbed::{PgCluster, VolumeRole};
    init_tracing();
    let cluster = PgCluster::builder("cluster-example")
        .instances(2)
        .data_size(128 << 20)
        .wal_size(128 << 20)
        .tablespace("idx", 32 << 20)
        .start()
        .await
        .unwrap();
    let names: Vec<(&str, &str)> = cluster
        .volumes()
        .map(|v| (v.pvc_name.as_str(), v.role.label()))
        .collect();
    assert_eq!(
        names,
        [
            ("cluster-example-1", "PG_DATA"),
            ("cluster-example-1-wal", "PG_WAL"),
            ("cluster-example-1-tbs-idx", "PG_TABLESPACE"),
            ("cluster-example-2", "PG_DATA"),
            ("cluster-example-2-wal", "PG_WAL"),
            ("cluster-example-2-tbs-idx", "PG_TABLESPACE"),
        ]
    );
    let replica = cluster.instance("cluster-example-2").unwrap();
    assert!(replica.server.is_replica());
    assert_eq!(
        replica.volumes[2].role,
        VolumeRole::Tablespace("idx".into())
    );
    assert!(replica.server.tablespace_volume("idx").is_some());
    let paths: Vec<PathBuf> = cluster
        .volumes()
        .map(|v| v.volume.path().to_path_buf())
        .collect();
    let mut pids = Vec::new();
    for i in cluster.instances() {
        pids.extend(i.server.process_ids());
    }
    drop(cluster);
    assert_torn_down(&pids, &paths);
}

/// CNPG's HA replication slots: on the primary one per standby, active
/// while it streams; on each standby inactive copies of the *other*
/// standbys' slots, advanced every `updateInterval` — and between two
/// advances a write-heavy primary makes them retain far more than a small
/// `maxSlotRetentionBytes`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cnpg_ha_slots_are_active_on_the_primary_and_lag_between_advances_on_standbys() {
    use cnpg_testbed::{HaSlots, PgCluster};
    init_tracing();
    const SMALL_MAX_RETENTION: i64 = 16 << 20;
    let cluster = PgCluster::builder("ha")
        .instances(3)
        .data_size(256 << 20)
        .ha_slots(Some(HaSlots {
            update_interval: Duration::from_secs(3),
            ..HaSlots::default()
        }))
        .start()
        .await
        .unwrap();
    let primary = &cluster.primary().server;
    let ha2 = &cluster.instance("ha-2").unwrap().server;
    assert_eq!(ha2.primary_slot(), Some("_cnpg_ha_2"));
    assert_eq!(cluster.ha_slot_name("ha-3").as_deref(), Some("_cnpg_ha_3"));

    // Primary: one slot per standby, in use by its standby.
    eventually(
        "both primary slots active",
        Duration::from_secs(30),
        || async {
            let slots = primary.physical_slots().await.unwrap();
            let names: Vec<&str> = slots.iter().map(|s| s.name.as_str()).collect();
            names == ["_cnpg_ha_2", "_cnpg_ha_3"] && slots.iter().all(|s| s.active)
        },
    )
    .await;

    // Standby ha-2: an inactive copy of ha-3's slot, never of its own.
    eventually(
        "ha-2 holds a copy of _cnpg_ha_3",
        Duration::from_secs(30),
        || async {
            let slots = ha2.physical_slots().await.unwrap();
            slots.len() == 1
                && slots[0].name == "_cnpg_ha_3"
                && !slots[0].active
                && slots[0].restart_lsn.is_some()
        },
    )
    .await;
    let ha3 = &cluster.instance("ha-3").unwrap().server;
    eventually(
        "ha-3 holds a copy of _cnpg_ha_2",
        Duration::from_secs(30),
        || async {
            let slots = ha3.physical_slots().await.unwrap();
            slots.len() == 1 && slots[0].name == "_cnpg_ha_2" && !slots[0].active
        },
    )
    .await;
    let first_lsn = ha2.physical_slots().await.unwrap()[0]
        .restart_lsn
        .clone()
        .unwrap();

    // Write-heavy primary: right after a burst the copy lags by the burst.
    let standby = ha2.connect().await.unwrap();
    let mut worst = 0;
    for _ in 0..8 {
        primary.generate_wal(24 << 20).await.unwrap();
        let target = primary.wal_position().await.unwrap();
        eventually(
            "ha-2 replays the burst",
            Duration::from_secs(30),
            || async {
                standby
                    .query_one(
                        "SELECT pg_wal_lsn_diff(pg_last_wal_replay_lsn(), $1::text::pg_lsn) >= 0",
                        &[&target],
                    )
                    .await
                    .unwrap()
                    .get::<_, bool>(0)
            },
        )
        .await;
        let retained = ha2
            .slot_retained_bytes("_cnpg_ha_3")
            .await
            .unwrap()
            .unwrap();
        worst = worst.max(retained);
        if retained > SMALL_MAX_RETENTION {
            break;
        }
    }
    assert!(
        worst > SMALL_MAX_RETENTION,
        "the standby's HA slot never retained more than {SMALL_MAX_RETENTION}: {worst}"
    );

    // …and the next advance moves it up to the primary's position of that slot.
    eventually("the copy advances", Duration::from_secs(30), || async {
        let moved: bool = standby
            .query_one(
                "SELECT pg_wal_lsn_diff(restart_lsn, $1::text::pg_lsn) >= 24 * 1024 * 1024 \
                 FROM pg_replication_slots WHERE slot_name = '_cnpg_ha_3'",
                &[&first_lsn],
            )
            .await
            .unwrap()
            .get(0);
        moved
    })
    .await;
    let stats = cluster.slot_sync_stats();
    assert!(stats.rounds >= 1 && stats.advances >= 1, "{stats:?}");
    assert!(
        !ha2.physical_slots().await.unwrap()[0].active,
        "standby copies stay inactive"
    );
}

/// HA slots off: standbys stream without slots, nobody creates any.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_ha_slots_standbys_stream_slotless() {
    use cnpg_testbed::PgCluster;
    init_tracing();
    let cluster = PgCluster::builder("noha")
        .instances(2)
        .data_size(128 << 20)
        .ha_slots(None)
        .start()
        .await
        .unwrap();
    assert_eq!(cluster.ha_slot_name("noha-2"), None);
    let replica = &cluster.instance("noha-2").unwrap().server;
    assert_eq!(replica.primary_slot(), None);
    cluster.sync_slots_now().await.unwrap();
    assert!(cluster
        .primary()
        .server
        .physical_slots()
        .await
        .unwrap()
        .is_empty());
    assert!(replica.physical_slots().await.unwrap().is_empty());
}

/// As CNPG's primary does: one HA slot per other instance that the Cluster's
/// `status.instanceNames` lists (even one that is not running), inactive HA
/// slots of instances it does not list dropped; user slots copied to
/// standbys (synchronizeReplicas, on by default).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn primary_ha_slots_follow_instance_names_and_user_slots_are_copied() {
    use cnpg_testbed::PgCluster;
    use std::sync::{Arc, Mutex};
    init_tracing();
    let cluster = PgCluster::builder("names")
        .instances(2)
        .data_size(128 << 20)
        .start()
        .await
        .unwrap();
    let names = Arc::new(Mutex::new(vec![
        "names-1".to_string(),
        "names-2".to_string(),
        "names-3".to_string(),
    ]));
    let listed = names.clone();
    cluster.follow_instance_names(Arc::new(move || Some(listed.lock().unwrap().clone())));
    let primary = &cluster.primary().server;
    let standby = &cluster.instance("names-2").unwrap().server;
    primary
        .create_inactive_physical_slot("user_cdc")
        .await
        .unwrap();
    cluster.sync_slots_now().await.unwrap();
    let slot_names = |slots: Vec<cnpg_testbed::cluster::SlotInfo>| {
        let mut n: Vec<String> = slots.into_iter().map(|s| s.name).collect();
        n.sort();
        n
    };
    assert_eq!(
        slot_names(primary.physical_slots().await.unwrap()),
        ["_cnpg_names_2", "_cnpg_names_3", "user_cdc"]
    );
    assert!(
        slot_names(standby.physical_slots().await.unwrap()).contains(&"user_cdc".to_string()),
        "the user slot is copied to the standby"
    );
    // names-3 leaves the list: its inactive slot goes.
    names.lock().unwrap().pop();
    cluster.sync_slots_now().await.unwrap();
    assert_eq!(
        slot_names(primary.physical_slots().await.unwrap()),
        ["_cnpg_names_2", "user_cdc"]
    );
}
