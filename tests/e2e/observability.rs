//! The endpoint contracts: the metrics of docs/reference/metrics.md with
//! their values after a resize (on the leader and on a non-leader), promtool
//! clean; health, readiness, status long-poll; `run` flag errors.

use crate::common::*;
use cnpg_testbed::scenario::{ManagerOptions, Scenario};
use serde_json::json;
use std::process::Command;
use std::time::{Duration, Instant};

const PRESENT_AFTER_A_RESIZE: &[&str] = &[
    "cnpg_disk_total_bytes",
    "cnpg_disk_used_bytes",
    "cnpg_disk_available_bytes",
    "cnpg_disk_percent_used",
    "cnpg_disk_inodes_total",
    "cnpg_disk_inodes_used",
    "cnpg_disk_inodes_free",
    "cnpg_disk_at_limit",
    "cnpg_disk_resize_blocked",
    "cnpg_disk_resize_budget_remaining",
    "cnpg_disk_resize_next_action_timestamp_seconds",
    "cnpg_disk_resizes_total",
    "cnpg_disk_resize_stuck",
    "cnpg_wal_archive_healthy",
    "cnpg_wal_pending_archive_files",
    "cnpg_wal_inactive_slots",
    "cnpg_wal_slot_retention_bytes",
    "cnpg_wal_health_up",
    "cnpg_autoresize_is_leader",
    "cnpg_autoresize_build_info",
    "cnpg_autoresize_probe_duration_seconds",
    "cnpg_autoresize_wal_check_duration_seconds",
    "cnpg_autoresize_api_requests_total",
];

/// The metrics every pod exposes, with their values after a resize (and the
/// seed's never-set decision metrics).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_metric_is_present_with_the_right_values_after_a_resize() {
    let resize = json!({"enabled": true, "expansion": {"step": "64Mi", "limit": "1Gi"}, "strategy": {"maxActionsPerDay": 3}});
    let env = Env::start(
        Scenario::builder("pg")
            .instances(2)
            .data(128 * MIB, resize)
            .wal(128 * MIB, json!({"enabled": false})),
    )
    .await;
    let server = env.scenario.server("pg-1").unwrap();
    server.create_inactive_physical_slot("spare").await.unwrap();
    server.generate_wal(2 << 20).await.unwrap();
    let leader = env.wait_leader(secs(15)).await;
    // Grow the non-leader's volume: its decision metrics come from the leader.
    let n = env
        .scenario
        .instances
        .iter()
        .position(|i| i.pod != leader)
        .unwrap();
    let pvc = env.pod(n).to_string();
    env.scenario.instances[n]
        .data()
        .volume
        .fill_to_percent(85.0)
        .unwrap();
    env.wait_request(&pvc, 192 * MIB, secs(30)).await;
    let data = [("volume_type", "data"), ("tablespace", "")];
    env.wait_metric(
        n,
        "cnpg_disk_resizes_total",
        &[data[0], ("result", "success")],
        1.0,
        secs(15),
    )
    .await;
    env.wait_metric(n, "cnpg_disk_resize_budget_remaining", &data, 2.0, secs(15))
        .await;
    // What the filesystem of a 192Mi device shows (ext4 keeps its metadata).
    let volume = env.scenario.instances[n].data().volume.clone();
    env.wait_metric(
        n,
        "cnpg_disk_total_bytes",
        &data,
        volume.total_bytes_after_grow(192 * MIB) as f64,
        secs(15),
    )
    .await;

    let text = env.metrics(n).await;
    // Per-slot series exist only where a slot does: on the primary, pg-1,
    // once its WAL check has run after the slot was created (the first one
    // may predate it).
    let primary = wait_until("the primary reports slot spare", secs(30), || async {
        let text = env.metrics(0).await;
        match metric(
            &text,
            "cnpg_wal_slot_retention_bytes",
            &[("slot_name", "spare")],
        ) {
            Some(_) => Ok(text),
            None => Err(text),
        }
    })
    .await;
    for name in PRESENT_AFTER_A_RESIZE {
        let source = if *name == "cnpg_wal_slot_retention_bytes" {
            &primary
        } else {
            &text
        };
        assert!(
            source.lines().any(|l| l.starts_with(name)),
            "{name} missing\n{source}"
        );
    }
    let value = |name: &str, labels: &[(&str, &str)]| {
        metric(&text, name, labels).unwrap_or_else(|| panic!("{name}{labels:?}\n{text}"))
    };
    assert_eq!(
        value("cnpg_disk_resizes_total", &[data[0], ("result", "failure")]),
        0.0
    );
    assert_eq!(value("cnpg_disk_at_limit", &data), 0.0);
    assert_eq!(value("cnpg_disk_resize_stuck", &data), 0.0);
    assert_eq!(
        value("cnpg_disk_resize_next_action_timestamp_seconds", &data),
        0.0
    );
    assert_eq!(
        value(
            "cnpg_disk_resize_blocked",
            &[data[0], ("reason", "rate_limit")]
        ),
        0.0
    );
    assert_eq!(value("cnpg_autoresize_is_leader", &[]), 0.0);
    assert_eq!(
        value(
            "cnpg_autoresize_build_info",
            &[("version", env!("CARGO_PKG_VERSION"))]
        ),
        1.0
    );
    assert_eq!(value("cnpg_wal_health_up", &[]), 1.0);
    assert_eq!(value("cnpg_wal_archive_healthy", &[]), 1.0);
    let used = value("cnpg_disk_used_bytes", &data);
    let available = value("cnpg_disk_available_bytes", &data);
    let pct = value("cnpg_disk_percent_used", &data);
    assert!(
        (pct - used * 100.0 / (used + available)).abs() < 0.01,
        "{pct} {used} {available}"
    );
    assert!(value("cnpg_disk_inodes_total", &data) > 0.0);
    assert!(value("cnpg_autoresize_probe_duration_seconds_count", &[]) > 0.0);
    assert!(
        value(
            "cnpg_autoresize_api_requests_total",
            &[("verb", "get"), ("resource", "pods"), ("code", "200")]
        ) >= 1.0
    );

    // The leader's own view, and the slot metrics of the primary.
    let l = 1 - n;
    let leader_text = env.metrics(l).await;
    assert_eq!(
        metric(&leader_text, "cnpg_autoresize_is_leader", &[]),
        Some(1.0)
    );
    assert_eq!(metric(&primary, "cnpg_wal_inactive_slots", &[]), Some(1.0));
    assert!(
        metric(
            &primary,
            "cnpg_wal_slot_retention_bytes",
            &[("slot_name", "spare")]
        )
        .unwrap()
            > 0.0
    );
    let patches = [
        ("verb", "patch"),
        ("resource", "persistentvolumeclaims"),
        ("code", "200"),
    ];
    assert!(metric(&leader_text, "cnpg_autoresize_api_requests_total", &patches) >= Some(1.0));

    for (pod, text) in [(pvc.as_str(), &text), (env.pod(l), &leader_text)] {
        let file = env.scenario.dir().join(format!("{pod}.metrics"));
        std::fs::write(&file, text).unwrap();
        let check = Command::new("promtool")
            .args(["check", "metrics"])
            .stdin(std::fs::File::open(&file).unwrap())
            .output()
            .expect("promtool is required (CI installs the prometheus package)");
        assert!(
            check.status.success(),
            "promtool on {pod}: {}{}",
            String::from_utf8_lossy(&check.stdout),
            String::from_utf8_lossy(&check.stderr)
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_readiness_and_status_long_poll() {
    let env = Env::start(data_volume_cluster(64 * MIB, json!({"enabled": true}))).await;
    let m = env.manager(0);
    wait_until("ready", secs(15), || async {
        let ready = reqwest::get(m.url("/readyz"))
            .await
            .map_err(|e| e.to_string())?;
        ready
            .status()
            .is_success()
            .then_some(())
            .ok_or(ready.status().to_string())
    })
    .await;
    let health = reqwest::get(m.url("/healthz")).await.unwrap();
    assert!(health.status().is_success());

    let status = get_json(&m.url("/v1/status")).await.unwrap();
    assert_eq!(status["instance"], "pg-1");
    assert_eq!(status["probed"], true);
    let data = &env.scenario.instances[0].data().volume;
    assert_eq!(
        status["report"]["data"]["totalBytes"].as_u64(),
        Some(data.filesystem_total_bytes()),
        "what the filesystem shows, less than the 64Mi device"
    );
    assert!(
        status["report"]["ageSeconds"]
            .as_f64()
            .is_some_and(|a| a < 1.0),
        "{status}"
    );
    assert_eq!(
        status["report"]["walHealth"],
        serde_json::Value::Null,
        "no PostgreSQL: unavailable"
    );
    // A long-poll returns as soon as something changes...
    let version = status["version"].as_u64().unwrap();
    let url = m.url(&format!("/v1/status?wait=10&after={version}"));
    let poll = tokio::spawn(async move {
        let started = Instant::now();
        let answer = get_json(&url).await.unwrap();
        (answer, started.elapsed())
    });
    tokio::time::sleep(Duration::from_millis(300)).await;
    env.scenario.instances[0]
        .data()
        .volume
        .fill_to_percent(50.0)
        .unwrap();
    let (answer, took) = poll.await.unwrap();
    assert!(answer["version"].as_u64().unwrap() > version);
    assert!(took < Duration::from_secs(3), "{took:?}");
    let half = data.filesystem_total_bytes() * 45 / 100;
    wait_until("the fill in the report", secs(5), || async {
        let s = get_json(&m.url("/v1/status")).await.ok_or("no answer")?;
        let used = s["report"]["data"]["usedBytes"].as_u64().unwrap_or(0);
        (used >= half).then_some(()).ok_or(used.to_string())
    })
    .await;
    // ...and after `wait` when nothing does.
    let quiet = get_json(&m.url("/v1/status")).await.unwrap()["version"]
        .as_u64()
        .unwrap();
    let started = Instant::now();
    let same = get_json(&m.url(&format!("/v1/status?wait=0.5&after={}", quiet + 1000)))
        .await
        .unwrap();
    assert!(started.elapsed() >= Duration::from_millis(450));
    assert_eq!(same["instance"], "pg-1");
}

/// Runs `cnpg-autoresize run ARGS` as a person does: standard input and
/// output on a terminal (a pseudo-terminal here); standard error captured.
fn run_on_a_terminal(args: &[String]) -> std::process::Output {
    let pty = nix::pty::openpty(None, None).expect("a pseudo-terminal");
    let output = Command::new(binary())
        .arg("run")
        .args(args)
        .env_remove("POD_NAME")
        .env_remove("CLUSTER_NAME")
        .env_remove("KUBECONFIG")
        .stdin(std::process::Stdio::from(
            pty.slave.try_clone().expect("the terminal again"),
        ))
        .stdout(std::process::Stdio::from(pty.slave))
        .stderr(std::process::Stdio::piped())
        .output()
        .expect("runs");
    drop(pty.master);
    output
}

/// On a terminal, flags that cannot work are one error line and exit 2
/// before anything starts (without one, the manager stays up inert:
/// tests/e2e/inert.rs).
#[test]
fn run_on_a_terminal_rejects_bad_flags_before_starting() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().to_str().unwrap();
    // Each case: the flags (after the base of a valid identity and data path)
    // and what the one error line must name.
    let base = ["--cluster", "pg", "--pod-name", "pg-1", "--data-path", data];
    let with_base = |extra: &[&str]| -> Vec<String> {
        base.iter().chain(extra).map(|a| a.to_string()).collect()
    };
    let cases: Vec<(Vec<String>, &str)> = vec![
        (
            vec![
                "--cluster".into(),
                "pg".into(),
                "--data-path".into(),
                data.into(),
            ],
            "--pod-name",
        ),
        (
            vec![
                "--pod-name".into(),
                "pg-1".into(),
                "--data-path".into(),
                data.into(),
            ],
            "--cluster",
        ),
        (
            [
                "--cluster",
                "pg",
                "--pod-name",
                "pg-1",
                "--data-path",
                "/nonexistent/data",
            ]
            .map(String::from)
            .to_vec(),
            "/nonexistent/data",
        ),
        (with_base(&["--probe-interval", "fast"]), "fast"),
        (with_base(&["--probe-interval", "0s"]), "positive"),
        (with_base(&["--tablespace", "idx"]), "NAME=PATH"),
        (with_base(&["--renew-interval", "20s"]), "--renew-interval"),
        // Combinations that cannot work: the fence needs a lease of 3s at
        // least, and a renewal must fit three times in the lease.
        (
            with_base(&["--lease-duration", "1s", "--renew-interval", "200ms"]),
            "--lease-duration",
        ),
        (
            with_base(&["--lease-duration", "15s", "--renew-interval", "6s"]),
            "a third of --lease-duration",
        ),
        (with_base(&["--http-addr", "127.0.0.1:0"]), "port 0"),
        (
            with_base(&["--fault-panic", "disk_probe:many"]),
            "ACTOR[:N]",
        ),
        (with_base(&["--http-addr", "nowhere"]), "nowhere"),
        (with_base(&["--no-such-flag"]), "--no-such-flag"),
        (
            with_base(&["--kubeconfig", "/nonexistent/kc"]),
            "/nonexistent/kc",
        ),
    ];
    for (args, expected) in &cases {
        let out = run_on_a_terminal(args);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {stderr}");
        assert!(stderr.contains(expected), "{args:?}: {stderr}");
    }
}

/// A steady state (nothing changing materially) makes no status writes
/// (docs/reference/configuration.md#statusdiskstatus-policy-and-cluster):
/// watched over several status intervals, each followed by a planning pass
/// that would write if anything had changed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_steady_state_writes_no_status() {
    let interval = Duration::from_secs(2);
    let options = ManagerOptions {
        extra_args: vec!["--status-interval".into(), "2s".into()],
        ..ManagerOptions::default()
    };
    let env = Env::start_with(
        Scenario::builder("pg")
            .instances(2)
            .data(128 * MIB, json!({"enabled": true}))
            .wal(128 * MIB, json!({"enabled": true})),
        options,
    )
    .await;
    let leader = env.wait_leader(secs(15)).await;
    let n = env.index_of(&leader);
    let writes = |text: &str| {
        metric(
            text,
            "cnpg_autoresize_api_requests_total",
            &[
                ("verb", "patch"),
                ("resource", "clusters/status"),
                ("code", "200"),
            ],
        )
        .unwrap_or(0.0)
    };
    // The first pass records diskStatus once both instances have reported.
    wait_until("diskStatus for both instances", secs(20), || async {
        let status = env.status().await;
        let both = ["pg-1", "pg-2"]
            .iter()
            .all(|p| status["diskStatus"]["instances"][p]["walHealth"].is_object());
        both.then_some(()).ok_or(status.to_string())
    })
    .await;
    // Whatever was still settling has had a status interval to be written.
    env.wait_pass_after(Instant::now() + interval, secs(30))
        .await;
    let before = writes(&env.metrics(n).await);
    // PostgreSQL keeps writing a little; nothing material changes. Three
    // status intervals pass, each followed by a pass that may write.
    env.wait_pass_after(Instant::now() + interval * 3, secs(30))
        .await;
    env.wait_passes(2, secs(30)).await;
    assert_eq!(
        env.leader().await.as_deref(),
        Some(leader.as_str()),
        "one leader throughout"
    );
    let after = writes(&env.metrics(n).await);
    assert_eq!(
        after,
        before,
        "status writes in a steady state\n{}",
        env.logs()
    );
    assert!(before >= 1.0);
}

/// `cnpg-autoresize status` prints each volume as the planner sees it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_command_shows_volumes_and_the_last_resize() {
    let env = Env::start(data_volume_cluster(
        128 * MIB,
        json!({"enabled": true, "expansion": {"step": "64Mi", "limit": "1Gi"}}),
    ))
    .await;
    env.scenario.instances[0]
        .data()
        .volume
        .fill_to_percent(85.0)
        .unwrap();
    env.wait_request("pg-1", 192 * MIB, secs(30)).await;
    wait_until("the mirrored record", secs(10), || async {
        let n = env.resize_events().await.len();
        (n == 1).then_some(()).ok_or(n.to_string())
    })
    .await;
    let kubeconfig = env.scenario.dir().join("admin.kubeconfig");
    env.scenario
        .sandbox
        .write_kubeconfig(&kubeconfig, kube_sandbox::ADMIN, "default")
        .unwrap();
    let out = Command::new(binary())
        .args(["status", "--cluster", "pg", "-n", "default", "--kubeconfig"])
        .arg(&kubeconfig)
        .output()
        .unwrap();
    let table = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let header = table.lines().nth(1).unwrap();
    for column in [
        "INSTANCE",
        "VOLUME",
        "SIZE",
        "USED%",
        "GROWTH/H",
        "FULL IN",
        "BUDGET",
        "NEXT ACTION",
        "STATE",
        "LAST RESIZE",
    ] {
        assert!(header.contains(column), "{header}");
    }
    let row = table
        .lines()
        .find(|l| l.starts_with("pg-1 ") && l.contains("data"))
        .unwrap_or_else(|| panic!("{table}"));
    assert!(
        row.contains("192Mi") && row.contains("128Mi→192Mi") && row.ends_with("usage"),
        "{row}"
    );
    // An unknown cluster is a clear error, exit 1.
    let missing = Command::new(binary())
        .args([
            "status",
            "--cluster",
            "nope",
            "-n",
            "default",
            "--kubeconfig",
        ])
        .arg(&kubeconfig)
        .output()
        .unwrap();
    assert_eq!(missing.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&missing.stderr).contains("default/nope"));
}

/// `cnpg-autoresize sandbox` serves the API, writes a kubeconfig, stops on SIGTERM.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sandbox_command_serves_until_sigterm() {
    use std::io::BufRead;
    let dir = tempfile::tempdir().unwrap();
    let kubeconfig = dir.path().join("kc.yaml");
    let mut child = Command::new(binary())
        .args(["sandbox", "--listen", "127.0.0.1:0", "--kubeconfig-out"])
        .arg(&kubeconfig)
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut first = String::new();
    std::io::BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut first)
        .unwrap();
    let url = first.trim().rsplit(' ').next().unwrap().to_string();
    assert!(url.starts_with("http://127.0.0.1:"), "{first}");
    // The kubeconfig works with the real kube client.
    let config = kube::Config::from_custom_kubeconfig(
        kube::config::Kubeconfig::read_from(&kubeconfig).unwrap(),
        &Default::default(),
    )
    .await
    .unwrap();
    let client = kube::Client::try_from(config).unwrap();
    let version = client.apiserver_version().await.unwrap();
    assert!(!version.git_version.is_empty(), "{version:?}");
    let pvcs: kube::Api<k8s_openapi::api::core::v1::PersistentVolumeClaim> =
        kube::Api::default_namespaced(client);
    assert!(pvcs
        .list(&Default::default())
        .await
        .unwrap()
        .items
        .is_empty());
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(child.id() as i32),
        nix::sys::signal::Signal::SIGTERM,
    )
    .unwrap();
    let started = Instant::now();
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            assert!(status.success(), "{status:?}");
            break;
        }
        assert!(started.elapsed() < Duration::from_secs(5));
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
