//! The kubelet stand-in: restarts after a crash (with the crash-loop
//! back-off and the cause recorded), liveness failures (a hung endpoint),
//! readiness transitions — against a tiny HTTP server whose answers the
//! test controls through files.

use crate::common::{alive, init_tracing};
use cnpg_testbed::kubelet::{
    Container, ContainerCommand, ContainerLaunch, ContainerSpec, InitContainer, KubeletConfig, Pod,
    PodSpec, RestartCause,
};
use cnpg_testbed::{free_port, next_loopback_ip};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

const SECS_30: Duration = Duration::from_secs(30);

pub fn http_target() -> &'static Path {
    Path::new(env!("CARGO_BIN_EXE_testbed-http-target"))
}

/// A container running the HTTP target on a fresh loopback address, its
/// answers controlled through files in `control`.
fn start(spec_yaml: &str, control: &Path, log: PathBuf, kubelet: KubeletConfig) -> Container {
    let ip = next_loopback_ip().unwrap();
    let port = free_port(ip).unwrap();
    let spec = ContainerSpec::from_yaml(spec_yaml).unwrap();
    let port_map: BTreeMap<u16, u16> = spec
        .ports
        .iter()
        .map(|p| (p.container_port, port))
        .collect();
    let command = ContainerCommand::new(http_target())
        .arg("--http-addr")
        .arg(format!("{ip}:{port}"))
        .arg("--control")
        .arg(control);
    Container::start(
        ContainerLaunch {
            name: "target".into(),
            command,
            spec,
            ip: ip.into(),
            port_map,
            log,
        },
        kubelet,
    )
    .unwrap()
}

fn fast_kubelet() -> KubeletConfig {
    KubeletConfig {
        backoff_base: Duration::from_millis(500),
        termination_grace: Duration::from_secs(2),
        ..KubeletConfig::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hung_liveness_endpoint_gets_the_container_restarted() {
    init_tracing();
    let dir = tempfile::tempdir().unwrap();
    let spec = "name: target\nports: [{name: http, containerPort: 9188}]\n\
                livenessProbe:\n  httpGet: {path: /healthz, port: http}\n  \
                periodSeconds: 1\n  timeoutSeconds: 1\n  failureThreshold: 2\n";
    let c = start(spec, dir.path(), dir.path().join("log"), fast_kubelet());
    let first = c.wait_running(SECS_30).await.unwrap();
    c.wait_ready(true, SECS_30).await.unwrap();

    // Healthy: probed repeatedly, never restarted.
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(c.restart_count(), 0, "{:?}", c.restarts());

    // /healthz stops answering: two probe timeouts in a row and the
    // kubelet kills and restarts it.
    std::fs::write(dir.path().join("healthz"), "hang").unwrap();
    c.wait_for_restarts(1, SECS_30).await.unwrap();
    std::fs::remove_file(dir.path().join("healthz")).unwrap();
    let restart = c.restarts()[0].clone();
    match &restart.cause {
        RestartCause::LivenessProbe { last_failure } => {
            assert!(last_failure.contains("deadline exceeded"), "{last_failure}")
        }
        other => panic!("restarted for {other:?}"),
    }
    assert_ne!(restart.pid, first);
    assert!(!alive(first as i32), "the killed process survived");
    assert_eq!(
        restart.backoff,
        Duration::ZERO,
        "the first restart is immediate"
    );

    // A failing status code counts as a failure too.
    std::fs::write(dir.path().join("healthz"), "500").unwrap();
    c.wait_for_restarts(2, SECS_30).await.unwrap();
    match &c.restarts()[1].cause {
        RestartCause::LivenessProbe { last_failure } => {
            assert!(last_failure.contains("500"), "{last_failure}")
        }
        other => panic!("restarted for {other:?}"),
    }
    assert_eq!(c.restarts()[1].backoff, Duration::from_millis(500));
    std::fs::remove_file(dir.path().join("healthz")).unwrap();

    c.stop().await.unwrap();
    assert_eq!(c.pid(), None);
    assert!(!c.is_ready());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readiness_transitions_are_recorded_without_restarts() {
    init_tracing();
    let dir = tempfile::tempdir().unwrap();
    let spec = "name: target\nports: [{name: http, containerPort: 8080}]\n\
                readinessProbe:\n  httpGet: {path: /readyz, port: 8080}\n  \
                periodSeconds: 1\n  failureThreshold: 2\n  successThreshold: 2\n\
                livenessProbe:\n  httpGet: {path: /healthz, port: http}\n  periodSeconds: 1\n";
    // Not ready until the readiness probe succeeded twice in a row.
    std::fs::write(dir.path().join("readyz"), "503").unwrap();
    let c = start(spec, dir.path(), dir.path().join("log"), fast_kubelet());
    c.wait_running(SECS_30).await.unwrap();
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert!(!c.is_ready(), "ready although /readyz answers 503");
    assert!(c.readiness_history().is_empty());

    std::fs::remove_file(dir.path().join("readyz")).unwrap();
    c.wait_ready(true, SECS_30).await.unwrap();
    std::fs::write(dir.path().join("readyz"), "503").unwrap();
    c.wait_ready(false, SECS_30).await.unwrap();
    std::fs::remove_file(dir.path().join("readyz")).unwrap();
    c.wait_ready(true, SECS_30).await.unwrap();

    let history = c.readiness_history();
    let states: Vec<bool> = history.iter().map(|h| h.ready).collect();
    assert_eq!(states, [true, false, true], "{history:?}");
    assert!(
        history.windows(2).all(|w| w[0].at <= w[1].at),
        "{history:?}"
    );
    assert!(history[1].reason.contains("503"), "{history:?}");
    // Readiness never restarts anything.
    assert_eq!(c.restart_count(), 0, "{:?}", c.restarts());
}

#[test]
fn the_chart_sidecar_is_probed_as_rendered() {
    let text = std::fs::read_to_string(cnpg_testbed::kubelet::chart_sidecar_path()).unwrap();
    let raw: serde_json::Value = serde_norway::from_str(&text).unwrap();
    let spec = ContainerSpec::chart_sidecar().unwrap();
    let live = spec.liveness.as_ref().unwrap();
    let field = |k: &str| raw["livenessProbe"][k].as_u64();
    assert_eq!(
        Some(live.period.as_secs()),
        field("periodSeconds").or(Some(10))
    );
    assert_eq!(
        Some(live.timeout.as_secs()),
        field("timeoutSeconds").or(Some(1))
    );
    assert_eq!(
        Some(u64::from(live.failure_threshold)),
        field("failureThreshold").or(Some(3))
    );
    assert_eq!(
        Some(live.path.as_str()),
        raw["livenessProbe"]["httpGet"]["path"].as_str()
    );
    assert_eq!(spec.readiness.is_some(), !raw["readinessProbe"].is_null());
    assert_eq!(spec.startup.is_some(), !raw["startupProbe"].is_null());
}

/// The launch of an HTTP target on a fresh loopback address (not started).
fn launch(
    name: &str,
    spec_yaml: &str,
    control: &Path,
    dir: &Path,
    extra_args: &[&str],
) -> ContainerLaunch {
    let ip = next_loopback_ip().unwrap();
    let port = free_port(ip).unwrap();
    let spec = ContainerSpec::from_yaml(spec_yaml).unwrap();
    let port_map: BTreeMap<u16, u16> = spec
        .ports
        .iter()
        .map(|p| (p.container_port, port))
        .collect();
    let mut command = ContainerCommand::new(http_target());
    if !extra_args.contains(&"--no-address") {
        command = command.arg("--http-addr").arg(format!("{ip}:{port}"));
    }
    command = command.arg("--control").arg(control);
    ContainerLaunch {
        name: name.into(),
        command,
        spec,
        ip: ip.into(),
        port_map,
        log: dir.join(format!("{name}.log")),
    }
}

const PLAIN: &str = "name: c\nports: [{name: http, containerPort: 8080}]\n";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_native_sidecar_that_keeps_exiting_keeps_the_main_containers_from_starting() {
    init_tracing();
    let dir = tempfile::tempdir().unwrap();
    // Without an address the target exits 2 at once, like a manager that
    // refuses its flags.
    let sidecar = launch("sidecar", PLAIN, dir.path(), dir.path(), &["--no-address"]);
    let main = launch("postgres", PLAIN, dir.path(), dir.path(), &[]);
    let pod = Pod::start(
        PodSpec {
            name: "pg-1".into(),
            init_containers: vec![InitContainer::Sidecar(sidecar)],
            containers: vec![main],
        },
        fast_kubelet(),
    )
    .unwrap();
    // Proof enough that the kubelet kept trying: three restarts of the sidecar.
    let started = tokio::time::Instant::now();
    let c = loop {
        if let Some(c) = pod.container("sidecar") {
            break c;
        }
        assert!(started.elapsed() < SECS_30, "the sidecar never started");
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    c.wait_for_restarts(3, SECS_30).await.unwrap();
    assert_eq!(
        pod.main_started_at("postgres"),
        None,
        "postgres started behind a crash-looping sidecar"
    );
    assert!(!pod.is_ready());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_main_containers_start_after_the_sidecar_and_its_readiness_counts_for_the_pod() {
    init_tracing();
    let dir = tempfile::tempdir().unwrap();
    let sidecar_control = dir.path().join("sidecar");
    std::fs::create_dir(&sidecar_control).unwrap();
    let with_readiness = "name: c\nports: [{name: http, containerPort: 8080}]\n\
                          readinessProbe:\n  httpGet: {path: /readyz, port: http}\n  periodSeconds: 1\n  failureThreshold: 1\n";
    let sidecar = launch("sidecar", with_readiness, &sidecar_control, dir.path(), &[]);
    let main = launch("postgres", PLAIN, dir.path(), dir.path(), &[]);
    // CloudNativePG's bootstrap-controller comes first; it fails once here.
    let marker = dir.path().join("bootstrapped-once");
    let bootstrap = ContainerLaunch {
        name: "bootstrap-controller".into(),
        command: ContainerCommand::new("/bin/sh").arg("-c").arg(format!(
            "test -e {0} || {{ touch {0}; exit 1; }}",
            marker.display()
        )),
        spec: ContainerSpec::from_yaml("name: bootstrap-controller\n").unwrap(),
        ip: std::net::Ipv4Addr::LOCALHOST.into(),
        port_map: BTreeMap::new(),
        log: dir.path().join("bootstrap.log"),
    };
    let pod = Pod::start(
        PodSpec {
            name: "pg-1".into(),
            init_containers: vec![
                InitContainer::RunToCompletion(bootstrap),
                InitContainer::Sidecar(sidecar),
            ],
            containers: vec![main],
        },
        fast_kubelet(),
    )
    .unwrap();
    pod.wait_main_started(SECS_30).await.unwrap();
    assert_eq!(pod.init_completed("bootstrap-controller"), Some(2));
    pod.wait_ready(true, SECS_30).await.unwrap();
    let sidecar = pod.container("sidecar").unwrap();
    let postgres = pod.container("postgres").unwrap();
    // The sidecar's readiness failing takes the whole pod out, not postgres.
    std::fs::write(sidecar_control.join("readyz"), "503").unwrap();
    pod.wait_ready(false, SECS_30).await.unwrap();
    assert!(postgres.is_ready());
    std::fs::remove_file(sidecar_control.join("readyz")).unwrap();
    pod.wait_ready(true, SECS_30).await.unwrap();
    // A sidecar crash after the start: postgres keeps running, the pod is not
    // ready until the sidecar runs again.
    let pg_pid = postgres.pid().unwrap();
    sidecar.kill().unwrap();
    sidecar.wait_for_restarts(1, SECS_30).await.unwrap();
    pod.wait_ready(true, SECS_30).await.unwrap();
    assert_eq!(postgres.pid(), Some(pg_pid), "postgres was restarted");
    let states: Vec<bool> = pod.readiness_history().iter().map(|h| h.ready).collect();
    assert!(states == [true, false, true, false, true], "{states:?}");
    pod.stop().await.unwrap();
}
