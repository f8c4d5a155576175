//! A guest in the database's pod does no harm (docs/guest.md): WAL health
//! through CloudNativePG's own socket without a password, and a full disk
//! with PostgreSQL down is when the sidecar still works.

use crate::common::*;
use cnpg_testbed::operator::{PHASE_DISK_FULL, PHASE_HEALTHY};
use cnpg_testbed::postgres::{
    InstanceManagerStart, METRICS_EXPORTER_ROLE, MISSING_WAL_DISK_SPACE_EXIT_CODE,
};
use cnpg_testbed::scenario::{ManagerOptions, PostgresAuth, Scenario};
use cnpg_testbed::volume::ReadOnlyBind;
use cnpg_testbed::{is_root, ExpansionMode};
use serde_json::json;

/// The real uid of process `pid` (`/proc/<pid>/status`).
fn process_uid(pid: u32) -> u32 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let line = status.lines().find(|l| l.starts_with("Uid:")).unwrap();
    line.split_whitespace().nth(1).unwrap().parse().unwrap()
}

/// The chart's default WAL health connection: CloudNativePG's socket
/// directory mounted read-only, `cnpg_metrics_exporter` with peer
/// authentication as CloudNativePG >= 1.30 configures it, no password, the
/// sidecar running as PostgreSQL's OS user. The WAL checks work through it
/// (archiving failures block WAL growth), and nobody else gets in that way.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wal_health_through_cloudnativepgs_socket_with_peer_authentication() {
    let wal = json!({"enabled": true, "expansion": {"step": "64Mi"}});
    let builder = Scenario::builder("pg")
        .data(128 * MIB, json!({"enabled": false}))
        .wal(128 * MIB, wal);
    let mut env = Env::prepare(
        builder,
        ManagerOptions::default(),
        fork_cluster_crd(),
        MANAGER_ROLE,
    )
    .await;
    let server = env.scenario.server("pg-1").unwrap();
    // As root the socket directory is seen through a read-only bind mount,
    // as the chart mounts /controller; otherwise in place.
    let bind = is_root().then(|| {
        let target = env.scenario.dir().join("controller-run");
        ReadOnlyBind::new(&server.socket_dir(), &target).unwrap()
    });
    let socket_dir = bind
        .as_ref()
        .map_or_else(|| server.socket_dir(), |b| b.path().to_path_buf());
    if bind.is_some() {
        let err = std::fs::write(socket_dir.join("probe"), b"x").unwrap_err();
        assert_eq!(err.raw_os_error(), Some(nix::libc::EROFS), "{err}");
        // Peer authentication holds: root is not PostgreSQL's OS user.
        let dsn = server.metrics_exporter_dsn(&socket_dir);
        let err = tokio_postgres::connect(&dsn, tokio_postgres::NoTls)
            .await
            .map(|_| ())
            .unwrap_err();
        let text = err
            .as_db_error()
            .map_or_else(|| format!("{err}"), |e| e.message().to_string());
        assert!(
            text.contains("Peer authentication failed"),
            "{METRICS_EXPORTER_ROLE} from root: {text}"
        );
    }
    env.options.postgres_auth = PostgresAuth::Peer {
        socket_dir: Some(socket_dir),
    };
    env.start_all_pods();
    let manager = env.manager(0);
    let pid = manager.wait_running(secs(30)).await.unwrap();
    assert_eq!(process_uid(pid), server.run_as().uid.as_raw());
    // Configured as the chart configures it: no DSN, no password.
    let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap();
    let environ = std::fs::read(format!("/proc/{pid}/environ")).unwrap();
    assert!(!String::from_utf8_lossy(&cmdline).contains("--pg-dsn"));
    assert!(!String::from_utf8_lossy(&environ).contains("PGPASSWORD"));

    env.wait_metric(0, "cnpg_wal_health_up", &[], 1.0, secs(30))
        .await;
    env.wait_metric(0, "cnpg_wal_archive_healthy", &[], 1.0, secs(10))
        .await;
    // Real answers through the socket: failing archiving blocks WAL growth.
    server.set_archive_failing(true).unwrap();
    wait_archiver(server, true).await;
    env.wait_metric(0, "cnpg_wal_archive_healthy", &[], 0.0, secs(30))
        .await;
    let wal_volume = env.scenario.instances[0]
        .volume(&cnpg_testbed::cluster::VolumeRole::Wal)
        .unwrap()
        .volume
        .clone();
    wal_volume.fill_to_percent(85.0).unwrap();
    env.wait_blocked(0, "wal", "archive_unhealthy", secs(30))
        .await;
    env.hold_request("pg-1-wal", 128 * MIB, 2).await;
    drop(bind);
}

/// The data volume 100 % full: PostgreSQL could not write and stopped, and
/// CloudNativePG's instance manager refuses to start it again (exit code 4;
/// the operator reports "Not enough disk space"). The sidecar still reports,
/// leads, and grows the volume — with warning `wal_health_unavailable`,
/// since no WAL check can run — after which PostgreSQL starts again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_data_volume_with_postgres_down_still_grows() {
    let data = json!({"enabled": true, "expansion": {"step": "64Mi"},
        "strategy": {"walSafetyPolicy": {"acknowledgeWALRisk": true}}});
    let env = Env::start(Scenario::builder("pg").data(128 * MIB, data)).await;
    env.wait_metric(0, "cnpg_wal_health_up", &[], 1.0, secs(30))
        .await;
    // Storage slower than the fill: the expansion waits until we say so.
    assert!(env
        .scenario
        .set_expansion_mode("pg-1", ExpansionMode::Stall));
    let server = env.scenario.server("pg-1").unwrap();
    let volume = env.scenario.instances[0].data().volume.clone();
    // PostgreSQL's PANIC on a failed WAL write: every process gone at once.
    server.kill().await.unwrap();
    env.wait_metric(0, "cnpg_wal_health_up", &[], 0.0, secs(30))
        .await;
    volume.fill_completely().unwrap();
    assert_eq!(volume.stats().unwrap().available_bytes, 0);
    assert_eq!(
        server.start_as_instance_manager().await.unwrap(),
        InstanceManagerStart::NoWalSpace
    );
    env.scenario
        .set_postgres_container("pg-1", Some(MISSING_WAL_DISK_SPACE_EXIT_CODE))
        .await
        .unwrap();
    wait_until("the cluster phase", secs(30), || async {
        let phase = env.status().await["phase"].clone();
        (phase == PHASE_DISK_FULL)
            .then_some(())
            .ok_or(format!("{phase}"))
    })
    .await;

    // The sidecar sees the full volume, leads, and asks for more.
    env.wait_metric(
        0,
        "cnpg_disk_percent_used",
        &[("volume_type", "data")],
        100.0,
        secs(30),
    )
    .await;
    env.wait_request("pg-1", 192 * MIB, secs(30)).await;
    assert_eq!(env.leader().await.as_deref(), Some("pg-1"));
    let (_, kind, note) = env
        .wait_kube_event("AutoResizeWALHealthUnavailable", secs(10))
        .await;
    assert_eq!(kind, "Warning");
    assert!(note.contains("pg-1"), "{note}");

    // The storage catches up; the kubelet's next restart of postgres finds
    // room and CloudNativePG starts PostgreSQL.
    env.scenario
        .set_expansion_mode("pg-1", ExpansionMode::Expand);
    wait_grown(&volume, 192 * MIB).await;
    assert_eq!(
        server.start_as_instance_manager().await.unwrap(),
        InstanceManagerStart::Started
    );
    env.scenario
        .set_postgres_container("pg-1", None)
        .await
        .unwrap();
    wait_until("the cluster phase", secs(30), || async {
        let phase = env.status().await["phase"].clone();
        (phase == PHASE_HEALTHY)
            .then_some(())
            .ok_or(format!("{phase}"))
    })
    .await;
    env.wait_metric(0, "cnpg_wal_health_up", &[], 1.0, secs(30))
        .await;
}
