//! Scale: many managers against one API server, at the product's default
//! timings (probe 1s, lease 15s, renew 5s, WAL 10s), no PostgreSQL
//! (simulated volumes: real tmpfs mounts as root, ext4-shaped).
//!
//! A plain `main` (no criterion).
//!
//! ```sh
//! cargo bench --bench scale                                  # both modes
//! SCALE_MODES=cluster SCALE_INSTANCES=50 SCALE_SETTLE_SECONDS=30 SCALE_WINDOW_SECONDS=120 \
//!     SCALE_REACTION_SAMPLES=50 cargo bench --bench scale
//! SCALE_MODES=clusters SCALE_CLUSTERS=100 SCALE_CLUSTER_INSTANCES=3 SCALE_BURST_PERCENT=10 \
//!     SCALE_BURST_WINDOW_SECONDS=20 cargo bench --bench scale
//! ```
//!
//! **Mode `cluster`**: one cluster of `SCALE_INSTANCES` (50) instances, one
//! bare manager process per instance (`Scenario::spawn_manager`), each on its
//! own loopback address. After every manager is ready, a leader holds the
//! Lease and its decisions cover every instance, the bench settles, then
//! measures over `SCALE_WINDOW_SECONDS`: the API requests the managers make
//! (the sandbox's request accounting, by identity and User-Agent — every
//! manager names its pod in it), each manager's CPU (`/proc/<pid>/stat`
//! ticks, and `/proc/<pid>/task/*/schedstat`) and RSS. Then
//! `SCALE_REACTION_SAMPLES` reaction samples on the followers' data volumes,
//! round robin (as in the `reaction` bench: 50% used, settled, a random phase
//! of 1–2 probe intervals, then 85%; from the fill's return to a PVC watch
//! seeing the patch).
//!
//! **Mode `clusters`**: `SCALE_CLUSTERS` (100) clusters of
//! `SCALE_CLUSTER_INSTANCES` (3) instances in one namespace of one
//! sandbox, as many managers as memory allows (24 MiB budgeted per manager,
//! 4 GiB kept free). The Scenario API builds one cluster per sandbox: the
//! first cluster is a `Scenario`; the bench builds every other cluster's
//! objects itself against that scenario's sandbox — the `Cluster` (a copy of
//! the first one's spec), labelled instance Pods with their IPs, data and WAL
//! PVCs with CNPG's labels, ext4-shaped tmpfs volumes in the scenario's
//! directory registered with the scenario's volume simulator (which binds
//! and grows them) — each cluster with its own service-account identity
//! under the chart's Role and its own kubeconfig, and starts every manager
//! (the first cluster's too) with the same command line `spawn_manager`
//! builds. Steady state as in mode `cluster`; then a burst:
//! `SCALE_BURST_PERCENT` of the data volumes, picked at random, are brought to
//! 50% and settled, then filled to 85% at the same moment (one thread each);
//! each crossing's reaction, and the API requests over
//! `SCALE_BURST_WINDOW_SECONDS` from the burst's start, with the 409s and 422s.
//!
//! Requests by the bench itself and the test bed (watches, the volume
//! simulator: identity `admin`) are left out of every figure.

mod support;

use anyhow::{bail, Context, Result};
use cnpg_autoresize::api::quantity::format_bytes;
use cnpg_testbed::scenario::{cluster_api, ManagerProcess, Scenario, STORAGE_CLASS};
use cnpg_testbed::{FilesystemKind, Volume};
use k8s_openapi::api::core::v1::{PersistentVolumeClaim, Pod};
use kube::api::{DynamicObject, Patch, PatchParams, PostParams};
use kube::Api;
use rand::seq::SliceRandom;
use rand::SeedableRng;
use serde_json::{json, Value};
use std::collections::{BTreeMap, HashMap};
use std::net::{Ipv4Addr, SocketAddr};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};
use support::{ms, summary, Tally, MIB};

const DATA_BYTES: u64 = 64 * MIB;
const WAL_BYTES: u64 = 16 * MIB;
const BASELINE_PERCENT: f64 = 50.0;
const FILL_PERCENT: f64 = 85.0;
const TIMEOUT: Duration = Duration::from_secs(60);
/// Steady-state goal of mode `cluster` (requests per second, whole cluster).
const GOAL_RPS: f64 = 0.3;
/// Burst goal: every crossing resized within this.
const GOAL_BURST: Duration = Duration::from_secs(2);
/// Memory budgeted per manager when deciding how many fit.
const MIB_PER_MANAGER: u64 = 24;
const MEMORY_RESERVE: u64 = 4 << 30;

fn resize_block() -> Value {
    json!({"enabled": true,
        "expansion": {"step": "16Mi", "limit": "1Gi"},
        "strategy": {"maxActionsPerDay": 10}})
}

struct Knobs {
    instances: usize,
    settle: Duration,
    window: Duration,
    samples: usize,
    clusters: usize,
    cluster_instances: usize,
    burst_percent: f64,
    burst_window: Duration,
}

impl Knobs {
    fn read() -> Knobs {
        Knobs {
            instances: support::env_or("SCALE_INSTANCES", 50usize).max(2),
            settle: Duration::from_secs(support::env_or("SCALE_SETTLE_SECONDS", 30u64)),
            window: Duration::from_secs(support::env_or("SCALE_WINDOW_SECONDS", 120u64).max(1)),
            samples: support::env_or("SCALE_REACTION_SAMPLES", 50usize),
            clusters: support::env_or("SCALE_CLUSTERS", 100usize).max(1),
            cluster_instances: support::env_or("SCALE_CLUSTER_INSTANCES", 3usize).max(1),
            burst_percent: support::env_or("SCALE_BURST_PERCENT", 10.0f64).clamp(0.0, 100.0),
            burst_window: Duration::from_secs(support::env_or("SCALE_BURST_WINDOW_SECONDS", 20u64)),
        }
    }
}

/// CPU (% of one core: ticks, schedstat) and mean RSS (MiB) of one manager.
#[derive(Clone, Copy, Debug)]
struct Usage {
    cpu_ticks: f64,
    cpu_sched: f64,
    rss_mib: f64,
}

/// Measures `pids` over `window`: CPU at both ends, RSS every 2 s.
async fn measure_usage(pids: &[u32], window: Duration) -> Result<Vec<Usage>> {
    let before = support::CpuReading::take(pids)?;
    let started = Instant::now();
    let mut rss: Vec<Vec<u64>> = vec![Vec::new(); pids.len()];
    while started.elapsed() < window {
        for (n, pid) in pids.iter().enumerate() {
            rss[n].push(support::rss_kib(*pid)?);
        }
        let left = window.saturating_sub(started.elapsed());
        tokio::time::sleep(left.min(Duration::from_secs(2))).await;
    }
    let after = support::CpuReading::take(pids)?;
    Ok(after
        .percent_since(&before)
        .into_iter()
        .zip(rss)
        .map(|((ticks, sched), r)| Usage {
            cpu_ticks: ticks,
            cpu_sched: sched,
            rss_mib: r.iter().sum::<u64>() as f64 / r.len().max(1) as f64 / 1024.0,
        })
        .collect())
}

fn usage_line(label: &str, list: &[Usage]) -> String {
    if list.is_empty() {
        return format!("{label:<22} (none)");
    }
    let ticks = summary(&list.iter().map(|u| u.cpu_ticks).collect::<Vec<_>>());
    let sched = summary(&list.iter().map(|u| u.cpu_sched).collect::<Vec<_>>());
    let rss = summary(&list.iter().map(|u| u.rss_mib).collect::<Vec<_>>());
    format!(
        "{label:<22} {:>4} {:>10.3} {:>10.3} {:>12.3} {:>12.3} {:>9.1} {:>9.1} {:>10.2}",
        list.len(),
        ticks.p50,
        ticks.max,
        sched.p50,
        sched.max,
        rss.p50,
        rss.max,
        list.iter().map(|u| u.cpu_sched).sum::<f64>(),
    )
}

fn usage_header() -> String {
    format!(
        "{:<22} {:>4} {:>10} {:>10} {:>12} {:>12} {:>9} {:>9} {:>10}",
        "managers",
        "n",
        "CPU% p50",
        "CPU% max",
        "sched% p50",
        "sched% max",
        "RSS p50",
        "RSS max",
        "sum sched%"
    )
}

/// Waits until `leader_url`'s feed has a decision other than `no_status`
/// for the data PVC of every pod of `pods`.
async fn wait_covered(
    http: &reqwest::Client,
    leader_url: &str,
    pods: &[String],
    deadline: Instant,
) -> Result<()> {
    loop {
        let feed: Option<Value> = match http
            .get(leader_url)
            .timeout(Duration::from_secs(5))
            .send()
            .await
        {
            Ok(r) if r.status().is_success() => r.json().await.ok(),
            _ => None,
        };
        let covered = feed.as_ref().map_or(0, |f| {
            pods.iter()
                .filter(|pod| {
                    f["instances"][pod.as_str()]["volumes"]
                        .as_array()
                        .is_some_and(|vs| {
                            vs.iter()
                                .any(|v| v["pvc"] == pod.as_str() && v["reason"] != "no_status")
                        })
                })
                .count()
        });
        if covered == pods.len() {
            return Ok(());
        }
        if Instant::now() > deadline {
            bail!(
                "the leader at {leader_url} covers {covered} of {} instances",
                pods.len()
            );
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

// ---- mode `cluster` -------------------------------------------------------------

async fn one_cluster(k: &Knobs) -> Result<()> {
    let n = k.instances;
    eprintln!("mode cluster: {n} instances (load {})", support::loadavg());
    let scenario = Scenario::builder("pg")
        .instances(n)
        .postgres(false)
        .data(DATA_BYTES, resize_block())
        .wal(WAL_BYTES, json!({"enabled": false}))
        .enforce_role(support::MANAGER_ROLE)
        .start()
        .await?;
    scenario.sandbox.register_crd(&support::policy_crd()?)?;
    let port = scenario.common_port()?;
    let bin = support::binary();
    let options = support::product_options();
    let managers = (0..n)
        .map(|i| scenario.spawn_manager(&bin, i, port, &options))
        .collect::<Result<Vec<ManagerProcess>>>()?;
    let http = reqwest::Client::new();
    let logs = |pod: &str| -> String {
        managers
            .iter()
            .find(|m| m.pod == pod)
            .map(|m| m.logs())
            .unwrap_or_default()
    };

    let started = Instant::now();
    let deadline = started + TIMEOUT * 2;
    let leader = loop {
        let mut ready = 0;
        for m in &managers {
            ready += usize::from(support::http_ok(&http, &m.url("/readyz")).await);
        }
        let holder = support::lease_holder(&scenario.client, &scenario.namespace, "pg").await;
        if let (true, Some(h)) = (ready == n, holder) {
            break h;
        }
        if Instant::now() > deadline {
            bail!("{ready} of {n} managers ready, no leader yet");
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    let leader_m = managers
        .iter()
        .find(|m| m.pod == leader)
        .context("the leader has no manager")?;
    let pods: Vec<String> = managers.iter().map(|m| m.pod.clone()).collect();
    if let Err(e) = wait_covered(&http, &leader_m.url("/v1/decisions"), &pods, deadline).await {
        bail!("{e:#}\n{}", logs(&leader));
    }
    eprintln!(
        "  ready after {:.1} s, leader {leader}; settling {:?}",
        started.elapsed().as_secs_f64(),
        k.settle
    );
    tokio::time::sleep(k.settle).await;

    // Steady state.
    let pids: Vec<u32> = managers
        .iter()
        .map(|m| m.pid().context("a manager exited"))
        .collect::<Result<_>>()?;
    eprintln!(
        "  steady-state window {:?} (load {})",
        k.window,
        support::loadavg()
    );
    scenario.sandbox.reset_requests();
    let window_start = Instant::now();
    let usage = measure_usage(&pids, k.window).await?;
    let rows = scenario.sandbox.requests();
    let seconds = window_start.elapsed().as_secs_f64();
    let still = support::lease_holder(&scenario.client, &scenario.namespace, "pg").await;
    if still.as_deref() != Some(leader.as_str()) {
        eprintln!("  warning: leadership moved during the window ({leader} -> {still:?})");
    }
    let identity = scenario.identity.clone();
    let total = support::tally(&rows, |i| i == identity);
    let by_pod = support::tally_by_pod(&rows, |i| i == identity);
    let leader_tally = by_pod.get(&leader).cloned().unwrap_or_default();
    let follower_requests: Vec<(String, u64)> = by_pod
        .iter()
        .filter(|(p, _)| **p != leader)
        .map(|(p, t)| (p.clone(), t.requests))
        .filter(|(_, r)| *r > 0)
        .collect();
    let load_window = support::loadavg();

    // Reaction on the followers' data volumes.
    let mut reactions = Vec::new();
    let mut reaction_tally = Tally::default();
    let mut resizes = 0usize;
    if k.samples > 0 {
        let followers: Vec<usize> = (0..n)
            .filter(|i| scenario.instances[*i].pod != leader)
            .collect();
        let mut watch = support::RequestWatch::start(scenario.pvcs());
        let leader_url = leader_m.url("/v1/decisions");
        let interval = Duration::from_secs(1);
        eprintln!(
            "  {} reaction samples on followers' data volumes",
            k.samples
        );
        scenario.sandbox.reset_requests();
        for s in 0..k.samples {
            let instance = &scenario.instances[followers[s % followers.len()]];
            let (pod, pvc) = (instance.pod.clone(), instance.data().pvc.clone());
            let volume = instance.data().volume.clone();
            // Size parity (docs/reference/decision.md#1-size-parity): every
            // resize grows the cluster's other data PVCs too; read the request
            // and wait for the volume.
            let before = support::wait_parity(&scenario.pvcs(), "pg", TIMEOUT).await?;
            let grow_deadline = Instant::now() + TIMEOUT;
            while volume.capacity_bytes() < before {
                if Instant::now() > grow_deadline {
                    bail!("volume of {pvc} not grown to {before}");
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            volume.fill_to_percent(BASELINE_PERCENT)?;
            if let Err(e) = support::wait_not_triggered(
                &http,
                &leader_url,
                &pod,
                &pvc,
                &format_bytes(before),
                TIMEOUT,
            )
            .await
            {
                bail!("{e:#}\n{}", logs(&leader));
            }
            tokio::time::sleep(interval + interval.mul_f64(rand::random::<f64>())).await;
            watch.drain();
            volume.fill_to_percent(FILL_PERCENT)?;
            let t0 = Instant::now();
            let t1 = loop {
                let left = (t0 + TIMEOUT).saturating_duration_since(Instant::now());
                match tokio::time::timeout(left, watch.changes.recv()).await {
                    Ok(Some((name, bytes, seen))) if name == pvc && bytes > before => break seen,
                    Ok(Some(_)) => continue,
                    Ok(None) => bail!("the PVC watch ended"),
                    Err(_) => bail!("{pvc} not resized within {TIMEOUT:?}\n{}", logs(&leader)),
                }
            };
            resizes += 1;
            reactions.push(ms(t1 - t0));
            // Parity grows every volume with each sample: keep only one
            // filled; and emptied before it grows, one crossing is one resize
            // (85% of a volume past 256Mi is still above 80% after 16Mi more).
            volume.clear_fill()?;
            eprintln!("    {pod:<8} {:>7.1} ms", ms(t1 - t0));
        }
        reaction_tally = support::tally(&scenario.sandbox.requests(), |i| i == identity);
    }

    // Report.
    println!();
    println!(
        "scale, mode cluster: {n} instances, 1 cluster, product defaults (probe 1s, lease 15s, renew 5s)"
    );
    println!(
        "steady state over {seconds:.0} s after {:.0} s settling (load during the window {load_window}):",
        k.settle.as_secs_f64()
    );
    let rps = total.requests as f64 / seconds;
    println!(
        "  API requests, all {n} managers: {} = {rps:.3}/s (goal <= {GOAL_RPS}/s: {}); watch events sent {}, bookmarks {}",
        total.requests,
        if rps <= GOAL_RPS { "met" } else { "NOT met" },
        total.watch_events,
        total.bookmarks
    );
    for line in total.lines(seconds) {
        println!("    {line}");
    }
    println!(
        "  leader {leader}: {} requests ({:.3}/s); followers with any request: {} of {}{}",
        leader_tally.requests,
        leader_tally.requests as f64 / seconds,
        follower_requests.len(),
        n - 1,
        if follower_requests.is_empty() {
            String::new()
        } else {
            format!(" {follower_requests:?}")
        }
    );
    let (mut lead_u, mut foll_u) = (Vec::new(), Vec::new());
    for (m, u) in managers.iter().zip(&usage) {
        if m.pod == leader {
            lead_u.push(*u);
        } else {
            foll_u.push(*u);
        }
    }
    println!("  CPU (% of one core: /proc/<pid>/stat ticks; schedstat) and RSS (MiB):");
    println!("    {}", usage_header());
    println!("    {}", usage_line("leader", &lead_u));
    println!("    {}", usage_line("followers", &foll_u));
    // Peak RSS since each manager started (settling, the window and the
    // reaction samples, every resize included): what the container limit
    // must hold.
    let (mut lead_peak, mut foll_peak) = (Vec::new(), Vec::new());
    let mut lead_now = f64::NAN;
    for m in &managers {
        if let Some(peak) = m.pid().and_then(|p| support::peak_rss_kib(p).ok()) {
            let mib = peak as f64 / 1024.0;
            if m.pod == leader {
                lead_peak.push(mib);
                lead_now = m
                    .pid()
                    .and_then(|p| support::rss_kib(p).ok())
                    .map_or(f64::NAN, |k| k as f64 / 1024.0);
            } else {
                foll_peak.push(mib);
            }
        }
    }
    let fp = summary(&foll_peak);
    println!(
        "  peak RSS (VmHWM, MiB) at the end of the run: leader {:.1} (RSS now {lead_now:.1}); followers p50 {:.1} max {:.1}",
        lead_peak.first().copied().unwrap_or(f64::NAN),
        fp.p50,
        fp.max
    );
    if !reactions.is_empty() {
        let s = summary(&reactions);
        println!(
            "reaction, followers' data volumes (leader {leader}): n {} min {:.1} p50 {:.1} p90 {:.1} p99 {:.1} max {:.1} ms",
            s.n, s.min, s.p50, s.p90, s.p99, s.max
        );
        println!(
            "  requests during the samples: {} for {resizes} resizes; 409: {}, 422: {}",
            reaction_tally.requests,
            reaction_tally.code(409),
            reaction_tally.code(422)
        );
        for line in reaction_tally.lines(1.0) {
            println!("    {}", line.split("  (").next().unwrap_or(&line));
        }
    }
    println!(
        "command: SCALE_MODES=cluster SCALE_INSTANCES={n} SCALE_SETTLE_SECONDS={} SCALE_WINDOW_SECONDS={} SCALE_REACTION_SAMPLES={} cargo bench --bench scale",
        k.settle.as_secs(),
        k.window.as_secs(),
        k.samples
    );
    Ok(())
}

// ---- mode `clusters` ------------------------------------------------------------

/// A `cnpg-autoresize run` started by this bench; killed on drop.
struct Manager {
    pod: String,
    cluster: usize,
    addr: SocketAddr,
    log: PathBuf,
    child: Option<Child>,
}

impl Manager {
    fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }
}

impl Drop for Manager {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// The last `n` lines of a log file.
fn tail(path: &Path, n: usize) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

struct Member {
    pod: String,
    ip: Ipv4Addr,
    data_pvc: String,
    data: Arc<Volume>,
    wal: Arc<Volume>,
}

struct Bed {
    name: String,
    identity: String,
    kubeconfig: PathBuf,
    members: Vec<Member>,
}

fn cluster_name(i: usize) -> String {
    format!("pg{:03}", i + 1)
}

/// The manager command line `Scenario::manager_command` builds, for any cluster.
fn manager_command(bin: &Path, bed: &Bed, m: &Member, port: u16, namespace: &str) -> Command {
    let o = support::product_options();
    let mut cmd = Command::new(bin);
    cmd.arg("run")
        .arg("--kubeconfig")
        .arg(&bed.kubeconfig)
        .args(["--namespace", namespace, "--cluster", &bed.name])
        .args(["--pod-name", &m.pod])
        .arg("--http-addr")
        .arg(format!("{}:{port}", m.ip))
        .args(["--probe-interval", &o.probe_interval])
        .args(["--wal-interval", &o.wal_interval])
        .args(["--slot-query-timeout", &o.slot_query_timeout])
        .args(["--pg-timeout", &o.pg_timeout])
        .args(["--lease-duration", &o.lease_duration])
        .args(["--renew-interval", &o.renew_interval])
        .args(["--log-format", "json", "--log-level", &o.log_level])
        .arg("--data-path")
        .arg(m.data.path())
        .arg("--wal-path")
        .arg(m.wal.path())
        // No PostgreSQL: a closed port, WAL health unavailable.
        .arg("--pg-dsn")
        .arg(format!(
            "host={} port=1 user=nobody dbname=postgres connect_timeout=1",
            m.ip
        ));
    if !cnpg_testbed::is_root() {
        cmd.arg("--simulated-volumes");
    }
    cmd
}

async fn create_pod(pods: &Api<Pod>, cluster: &str, m: &Member, primary: bool) -> Result<()> {
    let role = if primary { "primary" } else { "replica" };
    let serial = m.pod.rsplit('-').next().unwrap_or("1");
    let pod: Pod = serde_json::from_value(json!({
        "metadata": {"name": m.pod,
            "labels": {"cnpg.io/cluster": cluster, "cnpg.io/instanceName": m.pod,
                "cnpg.io/podRole": "instance", "cnpg.io/instanceRole": role, "role": role},
            "annotations": {"cnpg.io/nodeSerial": serial}},
        "spec": {"containers": [{"name": "postgres", "image": "ghcr.io/cloudnative-pg/postgresql:17"}]},
    }))?;
    pods.create(&PostParams::default(), &pod)
        .await
        .with_context(|| format!("creating pod {}", m.pod))?;
    let status = json!({"status": {"phase": "Running", "podIP": m.ip.to_string(),
        "podIPs": [{"ip": m.ip.to_string()}],
        "conditions": [{"type": "Ready", "status": "True"}]}});
    pods.patch_status(&m.pod, &PatchParams::default(), &Patch::Merge(&status))
        .await
        .with_context(|| format!("setting the IP of pod {}", m.pod))?;
    Ok(())
}

async fn create_pvc(
    pvcs: &Api<PersistentVolumeClaim>,
    cluster: &str,
    pod: &str,
    name: &str,
    role: &str,
    volume: &Volume,
) -> Result<()> {
    let serial = pod.rsplit('-').next().unwrap_or("1");
    let claim: PersistentVolumeClaim = serde_json::from_value(json!({
        "metadata": {"name": name,
            "labels": {"cnpg.io/cluster": cluster, "cnpg.io/instanceName": pod, "cnpg.io/pvcRole": role},
            "annotations": {"cnpg.io/nodeSerial": serial, "cnpg.io/pvcStatus": "ready"}},
        "spec": {"accessModes": ["ReadWriteOnce"], "storageClassName": STORAGE_CLASS,
            "resources": {"requests": {"storage": format_bytes(volume.capacity_bytes())}}},
    }))?;
    pvcs.create(&PostParams::default(), &claim)
        .await
        .with_context(|| format!("creating PVC {name}"))?;
    Ok(())
}

/// Builds cluster `i` (objects, volumes, identity) against the scenario's sandbox.
async fn build_cluster(scenario: &Scenario, spec: &Value, i: usize, size: usize) -> Result<Bed> {
    let name = cluster_name(i);
    let ns = scenario.namespace.as_str();
    let identity = format!("system:serviceaccount:{ns}:{name}");
    scenario.sandbox.enforce_role(
        &identity,
        &support::MANAGER_ROLE.replace(cnpg_testbed::scenario::ROLE_CLUSTER_PLACEHOLDER, &name),
    )?;
    let kubeconfig = scenario.dir().join(format!("{name}.kubeconfig"));
    scenario
        .sandbox
        .write_kubeconfig(&kubeconfig, &identity, ns)?;
    let mut cluster_spec = spec.clone();
    cluster_spec["instances"] = json!(size);
    let object: DynamicObject = serde_json::from_value(json!({
        "apiVersion": "postgresql.cnpg.io/v1", "kind": "Cluster",
        "metadata": {"name": name, "namespace": ns},
        "spec": cluster_spec,
    }))?;
    cluster_api(&scenario.client, ns)
        .create(&PostParams::default(), &object)
        .await
        .with_context(|| format!("creating Cluster {name}"))?;
    let pods: Api<Pod> = Api::namespaced(scenario.client.clone(), ns);
    let pvcs = scenario.pvcs();
    let mut members = Vec::new();
    for n in 1..=size {
        let pod = format!("{name}-{n}");
        let wal_pvc = format!("{pod}-wal");
        let data = Arc::new(Volume::create_with(
            &scenario.dir().join(&pod),
            DATA_BYTES,
            FilesystemKind::Ext4,
        )?);
        let wal = Arc::new(Volume::create_with(
            &scenario.dir().join(&wal_pvc),
            WAL_BYTES,
            FilesystemKind::Ext4,
        )?);
        let m = Member {
            pod: pod.clone(),
            ip: cnpg_testbed::next_loopback_ip()?,
            data_pvc: pod.clone(),
            data,
            wal,
        };
        create_pod(&pods, &name, &m, n == 1).await?;
        scenario.simulator.register(&pod, m.data.clone());
        scenario.simulator.register(&wal_pvc, m.wal.clone());
        create_pvc(&pvcs, &name, &pod, &pod, "PG_DATA", &m.data).await?;
        create_pvc(&pvcs, &name, &pod, &wal_pvc, "PG_WAL", &m.wal).await?;
        members.push(m);
    }
    Ok(Bed {
        name,
        identity,
        kubeconfig,
        members,
    })
}

/// A port free on every address.
fn common_port(ips: &[Ipv4Addr]) -> Result<u16> {
    for _ in 0..50 {
        let port = cnpg_testbed::free_port(ips[0])?;
        if ips
            .iter()
            .all(|ip| std::net::TcpListener::bind(SocketAddr::from((*ip, port))).is_ok())
        {
            return Ok(port);
        }
    }
    bail!("no port free on every address")
}

struct BurstSample {
    pod: String,
    reaction: Option<Duration>,
}

async fn many_clusters(k: &Knobs) -> Result<()> {
    let per = k.cluster_instances;
    let available = support::mem_available()?;
    let fit = (available.saturating_sub(MEMORY_RESERVE) / (MIB_PER_MANAGER * MIB)) as usize / per;
    let clusters = k.clusters.min(fit.max(1));
    eprintln!(
        "mode clusters: {} clusters of {per} asked, {clusters} fit ({:.1} GiB available, {MIB_PER_MANAGER} MiB budgeted per manager) (load {})",
        k.clusters,
        available as f64 / (1u64 << 30) as f64,
        support::loadavg()
    );

    let first = Scenario::builder(&cluster_name(0))
        .instances(per)
        .postgres(false)
        .data(DATA_BYTES, resize_block())
        .wal(WAL_BYTES, json!({"enabled": false}))
        .enforce_role(support::MANAGER_ROLE)
        .start()
        .await?;
    first.sandbox.register_crd(&support::policy_crd()?)?;
    let ns = first.namespace.clone();
    let spec = first
        .clusters()
        .get(&first.cluster)
        .await
        .context("reading the first Cluster")?
        .data["spec"]
        .clone();

    // Cluster 1 from the scenario, the others built here.
    let build_started = Instant::now();
    let kubeconfig = first.dir().join(format!("{}.kubeconfig", first.cluster));
    first
        .sandbox
        .write_kubeconfig(&kubeconfig, &first.identity, &ns)?;
    let mut beds = vec![Bed {
        name: first.cluster.clone(),
        identity: first.identity.clone(),
        kubeconfig,
        members: first
            .instances
            .iter()
            .map(|i| -> Result<Member> {
                Ok(Member {
                    pod: i.pod.clone(),
                    ip: i.ip,
                    data_pvc: i.data().pvc.clone(),
                    data: i.data().volume.clone(),
                    wal: i.volumes.get(1).context("no WAL volume")?.volume.clone(),
                })
            })
            .collect::<Result<_>>()?,
    }];
    for i in 1..clusters {
        beds.push(build_cluster(&first, &spec, i, per).await?);
    }
    // Wait until every PVC is Bound (the simulator binds them).
    let deadline = Instant::now() + TIMEOUT;
    loop {
        let list = first.pvcs().list(&Default::default()).await?;
        let bound = list
            .items
            .iter()
            .filter(|p| p.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Bound"))
            .count();
        if bound == clusters * per * 2 {
            break;
        }
        if Instant::now() > deadline {
            bail!("{bound} of {} PVCs Bound", clusters * per * 2);
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    eprintln!(
        "  {clusters} clusters built in {:.1} s",
        build_started.elapsed().as_secs_f64()
    );

    // Managers, in batches so start-up does not swamp two cores.
    let ips: Vec<Ipv4Addr> = beds
        .iter()
        .flat_map(|b| b.members.iter().map(|m| m.ip))
        .collect();
    let port = common_port(&ips)?;
    let bin = support::binary();
    let mut managers: Vec<Manager> = Vec::new();
    for (c, bed) in beds.iter().enumerate() {
        for m in &bed.members {
            let log = first.dir().join(format!("{}.log", m.pod));
            let out = std::fs::File::create(&log)?;
            let err = out.try_clone()?;
            let child = manager_command(&bin, bed, m, port, &ns)
                .process_group(0)
                .stdin(Stdio::null())
                .stdout(out)
                .stderr(err)
                .spawn()
                .with_context(|| format!("starting {}", bin.display()))?;
            managers.push(Manager {
                pod: m.pod.clone(),
                cluster: c,
                addr: SocketAddr::from((m.ip, port)),
                log,
                child: Some(child),
            });
        }
        if c % 10 == 9 {
            tokio::time::sleep(Duration::from_millis(300)).await;
        }
    }
    let total_managers = managers.len();
    let http = reqwest::Client::builder()
        .pool_max_idle_per_host(1)
        .build()?;
    let started = Instant::now();
    let deadline = started + TIMEOUT * 4;
    // Every manager ready, every cluster led, every leader covering its instances.
    let mut leaders: Vec<Option<String>> = vec![None; beds.len()];
    loop {
        let mut ready = 0;
        for m in &managers {
            ready += usize::from(support::http_ok(&http, &m.url("/readyz")).await);
        }
        for (c, bed) in beds.iter().enumerate() {
            if leaders[c].is_none() {
                leaders[c] = support::lease_holder(&first.client, &ns, &bed.name).await;
            }
        }
        let led = leaders.iter().filter(|l| l.is_some()).count();
        if ready == total_managers && led == beds.len() {
            break;
        }
        if Instant::now() > deadline {
            bail!(
                "{ready} of {total_managers} managers ready, {led} of {} clusters led",
                beds.len()
            );
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    let leaders: Vec<String> = leaders.into_iter().flatten().collect();
    let leader_url = |c: usize| -> Result<String> {
        managers
            .iter()
            .find(|m| m.pod == leaders[c])
            .map(|m| m.url("/v1/decisions"))
            .with_context(|| format!("no manager for leader {}", leaders[c]))
    };
    for (c, bed) in beds.iter().enumerate() {
        let pods: Vec<String> = bed.members.iter().map(|m| m.pod.clone()).collect();
        if let Err(e) = wait_covered(&http, &leader_url(c)?, &pods, deadline).await {
            let log = managers
                .iter()
                .find(|m| m.pod == leaders[c])
                .map(|m| tail(&m.log, 20))
                .unwrap_or_default();
            bail!("{e:#}\n{log}");
        }
    }
    eprintln!(
        "  {total_managers} managers ready and {} clusters led after {:.1} s; settling {:?}",
        beds.len(),
        started.elapsed().as_secs_f64(),
        k.settle
    );
    tokio::time::sleep(k.settle).await;

    // Steady state.
    let pids: Vec<u32> = managers
        .iter()
        .map(|m| m.pid().context("a manager exited"))
        .collect::<Result<_>>()?;
    eprintln!(
        "  steady-state window {:?} (load {})",
        k.window,
        support::loadavg()
    );
    let is_manager = {
        let ids: Vec<String> = beds.iter().map(|b| b.identity.clone()).collect();
        move |i: &str| ids.iter().any(|x| x == i)
    };
    first.sandbox.reset_requests();
    let window_start = Instant::now();
    let usage = measure_usage(&pids, k.window).await?;
    let rows = first.sandbox.requests();
    let seconds = window_start.elapsed().as_secs_f64();
    let load_window = support::loadavg();
    let steady = support::tally(&rows, &is_manager);
    let per_cluster: Vec<u64> = beds
        .iter()
        .map(|b| support::tally(&rows, |i| i == b.identity).requests)
        .collect();
    let mut moved = 0;
    for (c, bed) in beds.iter().enumerate() {
        if support::lease_holder(&first.client, &ns, &bed.name)
            .await
            .as_deref()
            != Some(leaders[c].as_str())
        {
            moved += 1;
        }
    }
    let (mut lead_u, mut foll_u) = (Vec::new(), Vec::new());
    for (m, u) in managers.iter().zip(&usage) {
        if leaders[m.cluster] == m.pod {
            lead_u.push(*u);
        } else {
            foll_u.push(*u);
        }
    }
    let follower_pods: Vec<&str> = managers
        .iter()
        .filter(|m| leaders[m.cluster] != m.pod)
        .map(|m| m.pod.as_str())
        .collect();
    let by_pod = support::tally_by_pod(&rows, &is_manager);
    let followers_asking = by_pod
        .iter()
        .filter(|(p, t)| follower_pods.contains(&p.as_str()) && t.requests > 0)
        .count();

    // Burst.
    let mut samples: Vec<BurstSample> = Vec::new();
    let mut burst = Tally::default();
    let mut burst_seconds = 0.0;
    let wanted = ((total_managers as f64) * k.burst_percent / 100.0).round() as usize;
    if wanted > 0 {
        let mut rng = rand::rngs::StdRng::seed_from_u64(0x5ca1e);
        let mut all: Vec<(usize, usize)> = beds
            .iter()
            .enumerate()
            .flat_map(|(c, b)| (0..b.members.len()).map(move |j| (c, j)))
            .collect();
        all.shuffle(&mut rng);
        all.truncate(wanted);
        let chosen = all;
        eprintln!(
            "  burst: {wanted} data volumes of {} clusters to {BASELINE_PERCENT}%, settling",
            {
                let mut cs: Vec<usize> = chosen.iter().map(|(c, _)| *c).collect();
                cs.sort_unstable();
                cs.dedup();
                cs.len()
            }
        );
        let mut watch = support::RequestWatch::start(first.pvcs());
        let mut before: BTreeMap<String, u64> = BTreeMap::new();
        for (c, j) in &chosen {
            let m = &beds[*c].members[*j];
            m.data.fill_to_percent(BASELINE_PERCENT)?;
            before.insert(
                m.data_pvc.clone(),
                first.requested_bytes(&m.data_pvc).await?,
            );
        }
        for (c, j) in &chosen {
            let m = &beds[*c].members[*j];
            support::wait_not_triggered(
                &http,
                &leader_url(*c)?,
                &m.pod,
                &m.data_pvc,
                &format_bytes(before[&m.data_pvc]),
                TIMEOUT,
            )
            .await?;
        }
        tokio::time::sleep(Duration::from_secs(2)).await;
        watch.drain();
        eprintln!(
            "  burst: filling to {FILL_PERCENT}% (load {})",
            support::loadavg()
        );
        first.sandbox.reset_requests();
        let burst_start = Instant::now();
        let threads: Vec<_> = chosen
            .iter()
            .map(|(c, j)| {
                let m = &beds[*c].members[*j];
                let (volume, pvc) = (m.data.clone(), m.data_pvc.clone());
                std::thread::spawn(move || -> Result<(String, Instant)> {
                    volume.fill_to_percent(FILL_PERCENT)?;
                    Ok((pvc, Instant::now()))
                })
            })
            .collect();
        let mut t0: HashMap<String, Instant> = HashMap::new();
        for t in threads {
            let (pvc, at) = t
                .join()
                .map_err(|_| anyhow::anyhow!("a fill thread panicked"))??;
            t0.insert(pvc, at);
        }
        let mut t1: HashMap<String, Instant> = HashMap::new();
        let deadline = burst_start + TIMEOUT;
        while t1.len() < t0.len() {
            let left = deadline.saturating_duration_since(Instant::now());
            match tokio::time::timeout(left, watch.changes.recv()).await {
                Ok(Some((name, bytes, seen))) => {
                    if before.get(&name).is_some_and(|b| bytes > *b) {
                        t1.entry(name).or_insert(seen);
                    }
                }
                Ok(None) => bail!("the PVC watch ended"),
                Err(_) => break,
            }
        }
        let window_end = burst_start + k.burst_window;
        tokio::time::sleep(window_end.saturating_duration_since(Instant::now())).await;
        burst = support::tally(&first.sandbox.requests(), &is_manager);
        burst_seconds = burst_start.elapsed().as_secs_f64();
        for (c, j) in &chosen {
            let m = &beds[*c].members[*j];
            samples.push(BurstSample {
                pod: m.pod.clone(),
                reaction: t1
                    .get(&m.data_pvc)
                    .zip(t0.get(&m.data_pvc))
                    .map(|(b, a)| b.saturating_duration_since(*a)),
            });
        }
    }

    // Report.
    println!();
    println!(
        "scale, mode clusters: {} clusters x {per} instances = {total_managers} managers in one namespace ({} clusters x {per} asked); product defaults",
        beds.len(),
        k.clusters
    );
    println!(
        "steady state over {seconds:.0} s after {:.0} s settling (load during the window {load_window}); leadership moved in {moved} clusters:",
        k.settle.as_secs_f64()
    );
    let pc = summary(
        &per_cluster
            .iter()
            .map(|r| *r as f64 / seconds)
            .collect::<Vec<_>>(),
    );
    println!(
        "  API requests, all managers: {} = {:.3}/s; per cluster p50 {:.3}/s, max {:.3}/s; followers with any request: {followers_asking} of {}; watch events sent {}",
        steady.requests,
        steady.requests as f64 / seconds,
        pc.p50,
        pc.max,
        follower_pods.len(),
        steady.watch_events
    );
    for line in steady.lines(seconds) {
        println!("    {line}");
    }
    println!("  CPU (% of one core: /proc/<pid>/stat ticks; schedstat) and RSS (MiB):");
    println!("    {}", usage_header());
    println!("    {}", usage_line("leaders", &lead_u));
    println!("    {}", usage_line("followers", &foll_u));
    if !samples.is_empty() {
        let done: Vec<f64> = samples.iter().filter_map(|s| s.reaction.map(ms)).collect();
        let within = samples
            .iter()
            .filter(|s| s.reaction.is_some_and(|r| r <= GOAL_BURST))
            .count();
        let s = summary(&done);
        println!(
            "burst: {} data volumes ({:.0}%) crossed at once; resized {} of them; within {GOAL_BURST:?}: {within} ({})",
            samples.len(),
            k.burst_percent,
            done.len(),
            if within == samples.len() { "met" } else { "NOT met" }
        );
        println!(
            "  reaction (fill returned -> patch seen): min {:.1} p50 {:.1} p90 {:.1} p99 {:.1} max {:.1} ms",
            s.min, s.p50, s.p90, s.p99, s.max
        );
        let mut sorted: Vec<(String, f64)> = samples
            .iter()
            .map(|s| (s.pod.clone(), s.reaction.map_or(f64::INFINITY, ms)))
            .collect();
        sorted.sort_by(|a, b| a.1.total_cmp(&b.1));
        println!(
            "  each: {}",
            sorted
                .iter()
                .map(|(p, r)| format!("{p} {r:.0}"))
                .collect::<Vec<_>>()
                .join(", ")
        );
        let resized = done.len().max(1) as f64;
        let steady_rate = steady.requests as f64 / seconds;
        println!(
            "  API requests over the {burst_seconds:.0} s from the burst's start: {} = {:.3}/s (steady {steady_rate:.3}/s); above steady: {:.1} per resize; 409: {} ({:.2} per resize), 422: {} ({:.2} per resize)",
            burst.requests,
            burst.requests as f64 / burst_seconds,
            (burst.requests as f64 - steady_rate * burst_seconds) / resized,
            burst.code(409),
            burst.code(409) as f64 / resized,
            burst.code(422),
            burst.code(422) as f64 / resized,
        );
        for line in burst.lines(burst_seconds) {
            println!("    {line}");
        }
    }
    println!(
        "command: SCALE_MODES=clusters SCALE_CLUSTERS={} SCALE_CLUSTER_INSTANCES={per} SCALE_SETTLE_SECONDS={} SCALE_WINDOW_SECONDS={} SCALE_BURST_PERCENT={} SCALE_BURST_WINDOW_SECONDS={} cargo bench --bench scale",
        k.clusters,
        k.settle.as_secs(),
        k.window.as_secs(),
        k.burst_percent,
        k.burst_window.as_secs()
    );
    // Managers stop before the volumes and the scenario go.
    drop(managers);
    drop(beds);
    drop(first);
    Ok(())
}

fn main() -> Result<()> {
    let knobs = Knobs::read();
    let modes = std::env::var("SCALE_MODES").unwrap_or_else(|_| "cluster,clusters".into());
    eprintln!("binary: {}", support::binary().display());
    eprintln!("machine: {}", support::machine());
    if knobs.window < Duration::from_secs(120) {
        eprintln!(
            "note: SCALE_WINDOW_SECONDS={} is below the 120 s the goal asks for",
            knobs.window.as_secs()
        );
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    for mode in modes.split(',').map(str::trim) {
        match mode {
            "cluster" => runtime.block_on(one_cluster(&knobs))?,
            "clusters" => runtime.block_on(many_clusters(&knobs))?,
            other => bail!("SCALE_MODES: unknown mode {other:?} (cluster, clusters)"),
        }
    }
    Ok(())
}
