//! Idle cost of the manager: resident memory and CPU time of
//! `cnpg-autoresize run` when nothing needs resizing, with the product's
//! default intervals (probe 1s, WAL health 10s, lease 15s / renew 5s).
//!
//! A plain `main` (no criterion).
//!
//! ```sh
//! cargo bench --bench idle                       # release build of the bench and of the binary
//! IDLE_SECONDS=60 IDLE_SETTLE_SECONDS=10 cargo bench --bench idle
//! CNPG_AUTORESIZE_BIN=/path/to/cnpg-autoresize cargo bench --bench idle
//! ```
//!
//! Phase 1: one instance with real PostgreSQL (so the WAL health checks run
//! against a real server), data + WAL volumes with resize enabled and far
//! from their triggers, the chart's Role enforced. Phase 2: two instances (a
//! primary and a streaming replica): the leader and the follower side by
//! side. Each phase waits for `/readyz` and a leader, lets things settle,
//! then samples `/proc/<pid>/status` (VmRSS) every second and
//! `/proc/<pid>/stat` (utime + stime) at both ends of the window, and the
//! manager's own `cnpg_autoresize_api_requests_total` counters.

use anyhow::{bail, Context, Result};
use cnpg_testbed::scenario::{ManagerProcess, Scenario};
use serde_json::json;
use std::collections::BTreeMap;
use std::time::{Duration, Instant};
use support::{binary, clock_ticks, cpu_ticks, lease_holder, product_options};

mod support;

const MIB: u64 = 1 << 20;
/// The Role the Helm chart renders for the manager.
const MANAGER_ROLE: &str = include_str!("../tests/packaging/manager-role.yaml");
const CLUSTER: &str = "pg";

fn env_secs(name: &str, default: u64) -> Duration {
    Duration::from_secs(
        std::env::var(name)
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(default),
    )
}

/// (VmRSS in KiB, Threads) of `pid`.
fn rss_and_threads(pid: u32) -> Result<(u64, u64)> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    let field = |name: &str| -> Option<u64> {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))?
            .split_whitespace()
            .next()?
            .parse()
            .ok()
    };
    Ok((
        field("VmRSS:").context("no VmRSS")?,
        field("Threads:").unwrap_or(0),
    ))
}

/// `cnpg_autoresize_api_requests_total` per "verb resource".
async fn api_requests(http: &reqwest::Client, m: &ManagerProcess) -> BTreeMap<String, f64> {
    let text = match http.get(m.url("/metrics")).send().await {
        Ok(r) => r.text().await.unwrap_or_default(),
        Err(_) => String::new(),
    };
    let mut out = BTreeMap::new();
    for line in text.lines() {
        let Some(rest) = line.strip_prefix("cnpg_autoresize_api_requests_total{") else {
            continue;
        };
        let Some((labels, value)) = rest.rsplit_once("} ") else {
            continue;
        };
        let label = |k: &str| {
            labels
                .split(',')
                .find_map(|p| p.strip_prefix(&format!("{k}=\"")))
                .map(|v| v.trim_end_matches('"').to_string())
                .unwrap_or_default()
        };
        let key = format!("{} {}", label("verb"), label("resource"));
        *out.entry(key).or_insert(0.0) += value.parse::<f64>().unwrap_or(0.0);
    }
    out
}

struct Measured {
    role: String,
    rss_mean_mib: f64,
    rss_max_mib: f64,
    threads: u64,
    cpu_seconds: f64,
    requests: BTreeMap<String, f64>,
}

async fn measure_phase(
    instances: usize,
    settle: Duration,
    window: Duration,
) -> Result<Vec<Measured>> {
    let resize = |limit: &str| json!({"enabled": true, "expansion": {"step": "20%", "minStep": "32Mi", "limit": limit}});
    let scenario = Scenario::builder(CLUSTER)
        .instances(instances)
        .postgres(true)
        .data(256 * MIB, resize("1Gi"))
        .wal(256 * MIB, resize("1Gi"))
        .enforce_role(MANAGER_ROLE)
        .start()
        .await?;
    let port = scenario.common_port()?;
    let bin = binary();
    let options = product_options();
    let managers = (0..instances)
        .map(|n| scenario.spawn_manager(&bin, n, port, &options))
        .collect::<Result<Vec<_>>>()?;
    let http = reqwest::Client::new();

    let deadline = Instant::now() + Duration::from_secs(60);
    let leader = loop {
        let mut ready = 0;
        for m in &managers {
            let ok = http
                .get(m.url("/readyz"))
                .timeout(Duration::from_secs(2))
                .send()
                .await
                .is_ok_and(|r| r.status().is_success());
            ready += usize::from(ok);
        }
        if ready == managers.len() {
            if let Some(l) = lease_holder(&scenario.client, &scenario.namespace, CLUSTER).await {
                break l;
            }
        }
        if Instant::now() > deadline {
            bail!("managers not ready with a leader after 60 s");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let requested_before: Vec<u64> = {
        let mut v = Vec::new();
        for i in &scenario.instances {
            for vol in &i.volumes {
                v.push(scenario.requested_bytes(&vol.pvc).await?);
            }
        }
        v
    };
    eprintln!("{instances} instance(s): ready, leader {leader}; settling {settle:?}");
    tokio::time::sleep(settle).await;

    let pids: Vec<u32> = managers
        .iter()
        .map(|m| m.pid().context("manager exited"))
        .collect::<Result<_>>()?;
    let cpu0: Vec<u64> = pids.iter().map(|p| cpu_ticks(*p)).collect::<Result<_>>()?;
    let mut req0 = Vec::new();
    for m in &managers {
        req0.push(api_requests(&http, m).await);
    }
    let started = Instant::now();
    let mut rss: Vec<Vec<u64>> = vec![Vec::new(); pids.len()];
    let mut threads = vec![0u64; pids.len()];
    eprintln!("sampling for {window:?}");
    while started.elapsed() < window {
        for (n, pid) in pids.iter().enumerate() {
            let (kib, t) = rss_and_threads(*pid)?;
            rss[n].push(kib);
            threads[n] = t;
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    let elapsed = started.elapsed().as_secs_f64();
    let cpu1: Vec<u64> = pids.iter().map(|p| cpu_ticks(*p)).collect::<Result<_>>()?;
    let ticks = clock_ticks();
    let still_leader = lease_holder(&scenario.client, &scenario.namespace, CLUSTER).await;
    if still_leader.as_deref() != Some(leader.as_str()) {
        eprintln!("warning: leadership moved during the window ({leader} -> {still_leader:?})");
    }
    let mut requested_after = Vec::new();
    for i in &scenario.instances {
        for vol in &i.volumes {
            requested_after.push(scenario.requested_bytes(&vol.pvc).await?);
        }
    }
    if requested_after != requested_before {
        eprintln!("warning: a PVC was resized during the idle window");
    }

    let mut out = Vec::new();
    for (n, m) in managers.iter().enumerate() {
        let after = api_requests(&http, m).await;
        let requests = after
            .iter()
            .map(|(k, v)| {
                (
                    k.clone(),
                    (v - req0[n].get(k).copied().unwrap_or(0.0)) * 60.0 / elapsed,
                )
            })
            .filter(|(_, v)| *v > 0.0)
            .collect();
        let samples = &rss[n];
        out.push(Measured {
            role: if m.pod == leader {
                format!("{} (leader)", m.pod)
            } else {
                format!("{} (follower)", m.pod)
            },
            rss_mean_mib: samples.iter().sum::<u64>() as f64 / samples.len() as f64 / 1024.0,
            rss_max_mib: *samples.iter().max().unwrap_or(&0) as f64 / 1024.0,
            threads: threads[n],
            cpu_seconds: (cpu1[n] - cpu0[n]) as f64 / ticks * 60.0 / elapsed,
            requests,
        });
    }
    Ok(out)
}

fn main() -> Result<()> {
    let window = env_secs("IDLE_SECONDS", 60);
    let settle = env_secs("IDLE_SETTLE_SECONDS", 10);
    eprintln!("binary: {}", binary().display());
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    let mut phases = Vec::new();
    for instances in [1usize, 2] {
        let measured = runtime.block_on(measure_phase(instances, settle, window))?;
        phases.push((instances, measured));
    }
    println!();
    println!(
        "idle manager, product intervals (probe 1s, WAL 10s, lease 15s/5s), window {}s after {}s settling",
        window.as_secs(),
        settle.as_secs()
    );
    println!(
        "{:<10} {:<20} {:>13} {:>12} {:>8} {:>12} {:>10}",
        "instances", "manager", "RSS mean MiB", "RSS max MiB", "threads", "CPU s/min", "% 1 core"
    );
    for (instances, measured) in &phases {
        for m in measured {
            println!(
                "{:<10} {:<20} {:>13.1} {:>12.1} {:>8} {:>12.3} {:>10.2}",
                instances,
                m.role,
                m.rss_mean_mib,
                m.rss_max_mib,
                m.threads,
                m.cpu_seconds,
                m.cpu_seconds / 60.0 * 100.0
            );
        }
    }
    println!("API requests per minute (the manager's own counters):");
    for (instances, measured) in &phases {
        for m in measured {
            let list: Vec<String> = m
                .requests
                .iter()
                .map(|(k, v)| format!("{k}: {v:.1}"))
                .collect();
            println!(
                "  {instances} instance(s), {}: {}",
                m.role,
                if list.is_empty() {
                    "none".into()
                } else {
                    list.join(", ")
                }
            );
        }
    }
    Ok(())
}
