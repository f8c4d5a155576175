//! The kubelet stand-in: restarts after a crash (with the crash-loop
//! back-off and the cause recorded), liveness failures (a hung endpoint),
//! readiness transitions — against a tiny HTTP server whose answers the
//! test controls through files.

use crate::common::{alive, init_tracing};
use cnpg_testbed::kubelet::{
    Container, ContainerCommand, ContainerLaunch, ContainerSpec, KubeletConfig, RestartCause,
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
