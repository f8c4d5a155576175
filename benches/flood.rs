//! Flood: the memory of a leader under hostile HTTP load, against the
//! container limit. A plain `main` (no criterion).
//!
//! ```sh
//! cargo bench --bench flood
//! FLOOD_CONNECTIONS=1000 FLOOD_WAVES=5 FLOOD_WAIT_SECONDS=5 FLOOD_BODIES=20 cargo bench --bench flood
//! ```
//!
//! Two instances at the product's default timings, no PostgreSQL. Once a
//! leader leads and its decisions cover both instances, its peak resident
//! set (`VmHWM`) is read; then `FLOOD_WAVES` waves of `FLOOD_CONNECTIONS`
//! concurrent long-polls (each on its own connection, half on `/v1/status`,
//! half on `/v1/decisions`, `wait=FLOOD_WAIT_SECONDS`), `FLOOD_BODIES` GETs
//! with a 10 MiB body, and hostile query strings are sent to it while the
//! bench probes `/healthz`. Reported: the answers by status code, the
//! slowest `/healthz`, the peak RSS before and after, and whether any actor
//! restarted or the process changed.

mod support;

use anyhow::{bail, Context, Result};
use cnpg_testbed::scenario::{ManagerProcess, Scenario};
use serde_json::json;
use std::collections::BTreeMap;
use std::time::{Duration, Instant};
use support::MIB;

async fn answer(request: reqwest::RequestBuilder) -> u16 {
    match request.timeout(Duration::from_secs(90)).send().await {
        Ok(response) => {
            let code = response.status().as_u16();
            let _ = response.bytes().await;
            code
        }
        Err(_) => 0,
    }
}

fn peak_mib(m: &ManagerProcess) -> Result<f64> {
    let pid = m.pid().context("the manager exited")?;
    Ok(support::peak_rss_kib(pid)? as f64 / 1024.0)
}

fn rss_mib(m: &ManagerProcess) -> Result<f64> {
    let pid = m.pid().context("the manager exited")?;
    Ok(support::rss_kib(pid)? as f64 / 1024.0)
}

async fn run() -> Result<()> {
    let connections: usize = support::env_or("FLOOD_CONNECTIONS", 1000usize).max(2);
    let waves: usize = support::env_or("FLOOD_WAVES", 5usize).max(1);
    let wait: u64 = support::env_or("FLOOD_WAIT_SECONDS", 5u64);
    let bodies: usize = support::env_or("FLOOD_BODIES", 20usize);
    eprintln!(
        "flood: {connections} long-polls x {waves} waves (load {})",
        support::loadavg()
    );
    let scenario = Scenario::builder("pg")
        .instances(2)
        .postgres(false)
        .data(64 * MIB, json!({"enabled": true}))
        .wal(16 * MIB, json!({"enabled": false}))
        .enforce_role(support::MANAGER_ROLE)
        .start()
        .await?;
    scenario.sandbox.register_crd(&support::policy_crd()?)?;
    let port = scenario.common_port()?;
    let bin = support::binary();
    let options = support::product_options();
    let managers = (0..2)
        .map(|i| scenario.spawn_manager(&bin, i, port, &options))
        .collect::<Result<Vec<ManagerProcess>>>()?;
    let http = reqwest::Client::new();
    let deadline = Instant::now() + Duration::from_secs(120);
    let leader = loop {
        if let Some(l) = support::lease_holder(&scenario.client, &scenario.namespace, "pg").await {
            let m = managers.iter().find(|m| m.pod == l).context("the leader")?;
            let feed: serde_json::Value = http
                .get(m.url("/v1/decisions"))
                .send()
                .await?
                .json()
                .await
                .unwrap_or_default();
            let covered = ["pg-1", "pg-2"]
                .iter()
                .all(|p| feed["instances"][p]["volumes"][0]["reason"].is_string());
            if covered {
                break m;
            }
        }
        if Instant::now() > deadline {
            bail!("no leader covering both instances in 120 s");
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    let pid = leader.pid();
    let before = peak_mib(leader)?;
    let rss_before = rss_mib(leader)?;
    eprintln!(
        "  leader {} settled: peak RSS {before:.1} MiB, RSS {rss_before:.1} MiB",
        leader.pod
    );

    let status = leader.url("/v1/status");
    let decisions = leader.url("/v1/decisions");
    let mut codes: BTreeMap<u16, usize> = BTreeMap::new();
    let mut slowest_health = Duration::ZERO;
    let mut peaks = Vec::new();
    for wave in 0..waves {
        let version = http
            .get(&status)
            .send()
            .await?
            .json::<serde_json::Value>()
            .await?["version"]
            .as_u64()
            .unwrap_or(0);
        let far = version + 1_000_000;
        let mut tasks = Vec::with_capacity(connections);
        for i in 0..connections {
            let url = if i % 2 == 0 {
                format!("{status}?wait={wait}&after={far}")
            } else {
                format!("{decisions}?wait={wait}&after={far}")
            };
            // One client each: one connection each, as an attacker opens them.
            let request = reqwest::Client::new().get(url);
            tasks.push(tokio::spawn(answer(request)));
        }
        for query in [
            "wait=1e20&after=0",
            "wait=NaN&after=0",
            "after=-1",
            "wait=-1&after=0",
        ] {
            tasks.push(tokio::spawn(answer(http.get(format!("{status}?{query}")))));
        }
        for _ in 0..bodies / waves.max(1) {
            let request = reqwest::Client::new()
                .get(&status)
                .body(vec![b'x'; 10 << 20]);
            tasks.push(tokio::spawn(answer(request)));
        }
        // The kubelet's view while it lasts.
        let started = Instant::now();
        while started.elapsed() < Duration::from_secs(wait) {
            let t = Instant::now();
            let ok = answer(http.get(leader.url("/healthz"))).await;
            if ok != 200 {
                bail!("/healthz answered {ok} during wave {wave}");
            }
            slowest_health = slowest_health.max(t.elapsed());
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
        for task in tasks {
            *codes.entry(task.await?).or_insert(0) += 1;
        }
        peaks.push(peak_mib(leader)?);
        eprintln!(
            "  wave {wave}: peak RSS {:.1} MiB, answers so far {codes:?}",
            peaks[wave]
        );
    }
    let after = peak_mib(leader)?;
    let rss_after = rss_mib(leader)?;
    let metrics = http
        .get(leader.url("/metrics"))
        .send()
        .await?
        .text()
        .await?;
    let restarts: f64 = metrics
        .lines()
        .filter(|l| l.starts_with("cnpg_autoresize_actor_restarts_total"))
        .filter_map(|l| l.rsplit_once(' ')?.1.parse::<f64>().ok())
        .fold(0.0, |a, b| a + b);

    println!();
    println!(
        "flood: leader {} of 2 instances, product defaults; {waves} waves of {connections} concurrent long-polls (wait={wait}s, half /v1/status, half /v1/decisions), {bodies} GETs with a 10 MiB body, 4 hostile query strings per wave",
        leader.pod
    );
    println!("  answers by HTTP status (0 = no answer): {codes:?}");
    println!(
        "  peak RSS (VmHWM): {before:.1} MiB settled -> {after:.1} MiB after the flood (RSS {rss_before:.1} -> {rss_after:.1} MiB); per wave {:?}",
        peaks.iter().map(|p| format!("{p:.1}")).collect::<Vec<_>>()
    );
    println!(
        "  slowest /healthz during the flood: {:.1} ms; actor restarts {restarts}; same process: {}",
        support::ms(slowest_health),
        leader.pid() == pid
    );
    println!(
        "command: FLOOD_CONNECTIONS={connections} FLOOD_WAVES={waves} FLOOD_WAIT_SECONDS={wait} FLOOD_BODIES={bodies} cargo bench --bench flood"
    );
    println!("machine: {}", support::machine());
    Ok(())
}

fn main() -> Result<()> {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?
        .block_on(run())
}
