//! `cnpg-autoresize demo`: plain lines without a terminal, a real resize
//! shown, and SIGINT/SIGTERM leave nothing behind (no mounts, no PostgreSQL,
//! no managers) and exit 0.

use crate::common::binary;
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// Paths only the demo uses (its cluster is named "demo").
fn demo_leftovers() -> Vec<String> {
    let marks = ["cnpg-testbed-demo-", "cnpg-scenario-demo-"];
    let mut found = Vec::new();
    let mounts = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    found.extend(
        mounts
            .lines()
            .filter(|l| marks.iter().any(|m| l.contains(m)))
            .map(|l| format!("mount: {l}")),
    );
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let cmdline = std::fs::read(entry.path().join("cmdline")).unwrap_or_default();
        let cmdline = String::from_utf8_lossy(&cmdline).replace('\0', " ");
        if marks.iter().any(|m| cmdline.contains(m)) {
            let state = std::fs::read_to_string(entry.path().join("stat")).unwrap_or_default();
            // Zombies are dead; this container's init may not reap them.
            if state.split_whitespace().nth(2).is_none_or(|s| s != "Z") {
                found.push(format!("process {:?}: {cmdline}", entry.file_name()));
            }
        }
    }
    found
}

fn run_demo_then(signal: Signal) {
    let mut child = Command::new(binary())
        .args(["demo", "--instances", "2"])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    let mut lines = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(120);
    while !lines.iter().any(|l: &String| l.contains("demo complete")) {
        let left = deadline.saturating_duration_since(Instant::now());
        match rx.recv_timeout(left) {
            Ok(line) => lines.push(line),
            Err(_) => {
                let _ = child.kill();
                panic!("the demo did not complete:\n{}", lines.join("\n"));
            }
        }
    }
    let text = lines.join("\n");
    assert!(
        !text.contains('\x1b'),
        "no screen redrawing without a terminal:\n{text}"
    );
    assert!(text.contains("AutoResizeSuccess"), "{text}");
    assert!(
        text.contains("resize_in_progress") || text.contains("160Mi"),
        "{text}"
    );
    if cnpg_testbed::PgBinaries::discover().is_ok() {
        assert!(text.contains("archive_unhealthy"), "{text}");
    }
    assert!(
        !demo_leftovers().is_empty(),
        "the demo's volumes and processes are running"
    );
    explore_as_told(&text);

    kill(Pid::from_raw(child.id() as i32), signal).unwrap();
    let started = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        assert!(
            started.elapsed() < Duration::from_secs(15),
            "the demo did not stop"
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(status.success(), "{status:?}");
    let rest: Vec<String> = rx.try_iter().collect();
    assert!(
        rest.iter().any(|l| l.contains("nothing left behind")),
        "{rest:?}"
    );
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let left = demo_leftovers();
        if left.is_empty() {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "left behind:\n{}",
            left.join("\n")
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// The demo names a kubeconfig and endpoint URLs: they answer, and the
/// commands it suggests work.
fn explore_as_told(text: &str) {
    let kubeconfig = text
        .lines()
        .find_map(|l| l.trim().strip_prefix("export KUBECONFIG="))
        .unwrap_or_else(|| panic!("no kubeconfig in:\n{text}"))
        .to_string();
    let urls: Vec<&str> = text
        .split_whitespace()
        .filter(|w| w.starts_with("http://") && (w.ends_with("/metrics") || w.contains("/v1/")))
        .collect();
    assert!(
        urls.len() >= 6,
        "two managers' /metrics, /v1/status, /v1/decisions: {urls:?}"
    );
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        for url in &urls {
            let answer = reqwest::get(*url).await;
            assert!(answer.is_ok(), "{url}: {answer:?}");
        }
        let config = kube::config::Kubeconfig::read_from(&kubeconfig).unwrap();
        let config = kube::Config::from_custom_kubeconfig(config, &Default::default())
            .await
            .unwrap();
        let client = kube::Client::try_from(config).unwrap();
        let pvcs: kube::Api<k8s_openapi::api::core::v1::PersistentVolumeClaim> =
            kube::Api::default_namespaced(client);
        assert!(!pvcs
            .list(&Default::default())
            .await
            .unwrap()
            .items
            .is_empty());
    });
    let status = Command::new(binary())
        .args(["status", "--cluster", "demo"])
        .env("KUBECONFIG", &kubeconfig)
        .output()
        .unwrap();
    let table = String::from_utf8_lossy(&status.stdout);
    assert!(
        status.status.success(),
        "{table}{}",
        String::from_utf8_lossy(&status.stderr)
    );
    assert!(table.contains("demo-1"), "{table}");
}

/// Both signals in one test: the demo's paths are shared by name, so two
/// demos must not run at the same time.
#[test]
fn demo_shows_a_resize_and_cleans_up_on_sigint_and_sigterm() {
    run_demo_then(Signal::SIGINT);
    run_demo_then(Signal::SIGTERM);
}
