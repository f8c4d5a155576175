//! Reaction time, end to end: from a data volume crossing its trigger to
//! the PVC patch being accepted by the Kubernetes API sandbox.
//!
//! A plain `main` (no criterion): every sample starts real processes.
//!
//! ```sh
//! cargo bench --bench reaction            # release build of the bench and of the binary
//! REACTION_ITERATIONS=15 REACTION_PROBE_INTERVALS=1s,200ms cargo bench --bench reaction
//! CNPG_AUTORESIZE_BIN=/path/to/cnpg-autoresize cargo bench --bench reaction
//! ```
//!
//! Cargo builds the `cnpg-autoresize` binary with the bench (same profile)
//! and tells us where it is (`CARGO_BIN_EXE_cnpg-autoresize`);
//! `CNPG_AUTORESIZE_BIN` overrides it.
//!
//! Setup: 2 instances, no PostgreSQL (data volumes need no WAL health when
//! the cluster has a separate WAL volume, here with resize disabled), the
//! chart's Role enforced by the sandbox, the test bed's manager timings except
//! `--probe-interval` (the product default 1s, then 200ms).
//!
//! One sample: bring the chosen data volume to 50% used and let the
//! managers settle (the leader's decision for it says `not_triggered` at the
//! PVC's current size, then 2–3 probe intervals, a random phase); fill it to
//! 85% (trigger: `usageThreshold` 80) and take `t0` when the fill returns;
//! `t1` is when a watch on the PVCs (sandbox admin client) sees the larger
//! request. Each resize grows the volume by 16Mi (`maxActionsPerDay: 10`), so
//! a scenario gives 10 samples per PVC and a fresh one is started after.
//! Cases: (a) the leader's own data volume, (b) the peer's.

use anyhow::{bail, Context, Result};
use cnpg_autoresize::api::quantity::{format_bytes, Quantity};
use cnpg_testbed::scenario::{ManagerOptions, ManagerProcess, Scenario};
use futures::StreamExt;
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::PersistentVolumeClaim;
use kube::runtime::{watcher, WatchStreamExt};
use kube::Api;
use serde_json::{json, Value};
use std::collections::HashMap;
use std::path::PathBuf;
use std::time::{Duration, Instant, SystemTime};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

const MIB: u64 = 1 << 20;
/// The Role the Helm chart renders for the manager.
const MANAGER_ROLE: &str = include_str!("../tests/packaging/manager-role.yaml");
const CLUSTER: &str = "pg";
/// `maxActionsPerDay` (its ceiling): samples per PVC and scenario.
const BUDGET: usize = 10;
const BASELINE_PERCENT: f64 = 50.0;
const FILL_PERCENT: f64 = 85.0;
const TIMEOUT: Duration = Duration::from_secs(30);

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
enum Case {
    LeaderOwn,
    Peer,
}

impl Case {
    fn label(self) -> &'static str {
        match self {
            Case::LeaderOwn => "leader's own data volume",
            Case::Peer => "peer's data volume",
        }
    }
}

struct Sample {
    /// t0 (fill returned) -> t1 (watch saw the new request).
    reaction: Duration,
    /// How long the fill itself took (the crossing happens during it).
    fill: Duration,
    /// t0 -> the leader's "resized" log line (its patch answered), when found.
    logged: Option<f64>,
    /// Probes per second of the volume's own manager just before the fill.
    probe_rate: Option<f64>,
}

enum Outcome {
    Sample(Sample),
    /// Leadership moved during the sample: it belongs to neither case.
    Dropped,
    /// The PVC's daily budget in this scenario is spent.
    Exhausted,
}

/// A watch-observed change of a PVC's request: (pvc, bytes, when seen).
type RequestChange = (String, u64, Instant);

struct Bed {
    // Declared first: the managers are killed before the scenario goes.
    managers: Vec<ManagerProcess>,
    scenario: Scenario,
    interval: Duration,
    requests: HashMap<String, u64>,
    resizes: HashMap<String, usize>,
    changes: mpsc::UnboundedReceiver<RequestChange>,
    watch: JoinHandle<()>,
    http: reqwest::Client,
}

impl Drop for Bed {
    fn drop(&mut self) {
        self.watch.abort();
    }
}

fn binary() -> PathBuf {
    std::env::var_os("CNPG_AUTORESIZE_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_BIN_EXE_cnpg-autoresize")))
}

fn request_of(pvc: &PersistentVolumeClaim) -> Option<u64> {
    let text = pvc
        .spec
        .as_ref()?
        .resources
        .as_ref()?
        .requests
        .as_ref()?
        .get("storage")?
        .0
        .clone();
    Quantity::parse(&text).ok()?.to_bytes().ok()
}

impl Bed {
    async fn start(interval_text: &str, interval: Duration) -> Result<Bed> {
        let resize = json!({"enabled": true,
            "expansion": {"step": "16Mi", "limit": "1Gi"},
            "strategy": {"maxActionsPerDay": BUDGET}});
        let scenario = Scenario::builder(CLUSTER)
            .instances(2)
            .postgres(false)
            .data(64 * MIB, resize)
            .wal(16 * MIB, json!({"enabled": false}))
            .enforce_role(MANAGER_ROLE)
            .start()
            .await?;
        let port = scenario.common_port()?;
        let options = ManagerOptions {
            probe_interval: interval_text.to_string(),
            ..ManagerOptions::default()
        };
        let bin = binary();
        let managers = (0..scenario.instances.len())
            .map(|n| scenario.spawn_manager(&bin, n, port, &options))
            .collect::<Result<Vec<_>>>()?;

        let (tx, changes) = mpsc::unbounded_channel();
        let api: Api<PersistentVolumeClaim> = scenario.pvcs();
        let watch = tokio::spawn(async move {
            let mut last: HashMap<String, u64> = HashMap::new();
            let stream = watcher(api, watcher::Config::default()).default_backoff();
            futures::pin_mut!(stream);
            while let Some(event) = stream.next().await {
                let seen = Instant::now();
                let pvc = match event {
                    Ok(watcher::Event::Apply(p)) | Ok(watcher::Event::InitApply(p)) => p,
                    _ => continue,
                };
                let (Some(name), Some(bytes)) = (pvc.metadata.name.clone(), request_of(&pvc))
                else {
                    continue;
                };
                if last.insert(name.clone(), bytes) != Some(bytes) {
                    let _ = tx.send((name, bytes, seen));
                }
            }
        });
        let mut requests = HashMap::new();
        for i in &scenario.instances {
            requests.insert(i.pod.clone(), scenario.requested_bytes(&i.pod).await?);
        }
        let bed = Bed {
            managers,
            scenario,
            interval,
            requests,
            resizes: HashMap::new(),
            changes,
            watch,
            http: reqwest::Client::new(),
        };
        bed.wait_ready().await?;
        Ok(bed)
    }

    async fn wait_ready(&self) -> Result<()> {
        let deadline = Instant::now() + TIMEOUT;
        loop {
            let mut ready = 0;
            for m in &self.managers {
                let ok = self
                    .http
                    .get(m.url("/readyz"))
                    .timeout(Duration::from_secs(2))
                    .send()
                    .await
                    .is_ok_and(|r| r.status().is_success());
                ready += usize::from(ok);
            }
            if ready == self.managers.len() && self.leader().await.is_some() {
                return Ok(());
            }
            if Instant::now() > deadline {
                bail!(
                    "managers not ready with a leader after {TIMEOUT:?}\n{}",
                    self.logs()
                );
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    async fn leader(&self) -> Option<String> {
        let api: Api<Lease> =
            Api::namespaced(self.scenario.client.clone(), &self.scenario.namespace);
        let lease = api
            .get_opt(&format!("cnpg-autoresize-{CLUSTER}"))
            .await
            .ok()??;
        lease.spec?.holder_identity.filter(|h| !h.is_empty())
    }

    fn manager(&self, pod: &str) -> &ManagerProcess {
        self.managers
            .iter()
            .find(|m| m.pod == pod)
            .expect("a manager per pod")
    }

    fn logs(&self) -> String {
        self.managers
            .iter()
            .map(|m| {
                let text = m.logs();
                let lines: Vec<&str> = text.lines().collect();
                format!(
                    "--- {} ---\n{}",
                    m.pod,
                    lines[lines.len().saturating_sub(30)..].join("\n")
                )
            })
            .collect::<Vec<_>>()
            .join("\n")
    }

    /// How many probes `pod`'s manager has made (its probe-duration histogram).
    async fn probe_count(&self, pod: &str) -> Option<f64> {
        let text = self
            .http
            .get(self.manager(pod).url("/metrics"))
            .timeout(Duration::from_secs(2))
            .send()
            .await
            .ok()?
            .text()
            .await
            .ok()?;
        text.lines()
            .find_map(|l| l.strip_prefix("cnpg_autoresize_probe_duration_seconds_count "))?
            .trim()
            .parse()
            .ok()
    }

    /// Waits until the leader decides `not_triggered` for `pvc` at its current size.
    async fn wait_quiet(&self, leader: &str, pod: &str, pvc: &str) -> Result<()> {
        let size = format_bytes(self.requests[pvc]);
        let url = self.manager(leader).url("/v1/decisions");
        let deadline = Instant::now() + TIMEOUT;
        loop {
            let feed: Option<Value> = match self
                .http
                .get(&url)
                .query(&[("instance", pod)])
                .timeout(Duration::from_secs(2))
                .send()
                .await
            {
                Ok(r) if r.status().is_success() => r.json().await.ok(),
                _ => None,
            };
            let quiet = feed.as_ref().is_some_and(|f| {
                f["instances"][pod]["volumes"].as_array().is_some_and(|vs| {
                    vs.iter().any(|v| {
                        v["pvc"] == pvc
                            && v["reason"] == "not_triggered"
                            && v["currentSize"] == size.as_str()
                    })
                })
            });
            if quiet {
                return Ok(());
            }
            if Instant::now() > deadline {
                bail!(
                    "{pvc} not quiet at {size} after {TIMEOUT:?}: {feed:?}\n{}",
                    self.logs()
                );
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// One sample, unless this scenario's budget for the PVC is spent.
    async fn sample(&mut self, case: Case) -> Result<Outcome> {
        let leader = self.leader().await.context("no leader")?;
        let leader_idx = self
            .scenario
            .instances
            .iter()
            .position(|i| i.pod == leader)
            .context("leader is not an instance")?;
        let idx = match case {
            Case::LeaderOwn => leader_idx,
            Case::Peer => 1 - leader_idx,
        };
        let instance = &self.scenario.instances[idx];
        let (pod, pvc) = (instance.pod.clone(), instance.data().pvc.clone());
        let volume = instance.data().volume.clone();
        if self.resizes.get(&pvc).copied().unwrap_or(0) >= BUDGET {
            return Ok(Outcome::Exhausted);
        }
        let before = self.requests[&pvc];

        // Settle at the baseline, then a random phase against the probe timer.
        volume.fill_to_percent(BASELINE_PERCENT)?;
        self.wait_quiet(&leader, &pod, &pvc).await?;
        let phase = self.interval * 2 + self.interval.mul_f64(rand::random::<f64>());
        let probes_before = self.probe_count(&pod).await;
        let slept = Instant::now();
        tokio::time::sleep(phase).await;
        let probe_rate = match (probes_before, self.probe_count(&pod).await) {
            (Some(a), Some(b)) => Some((b - a) / slept.elapsed().as_secs_f64()),
            _ => None,
        };
        while self.changes.try_recv().is_ok() {}

        let started = Instant::now();
        volume.fill_to_percent(FILL_PERCENT)?;
        let t0 = Instant::now();
        let wall0 = SystemTime::now();

        let deadline = t0 + TIMEOUT;
        let (t1, after) = loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match tokio::time::timeout(left, self.changes.recv()).await {
                Ok(Some((name, bytes, seen))) if name == pvc && bytes > before => {
                    break (seen, bytes)
                }
                Ok(Some(_)) => continue,
                Ok(None) => bail!("the PVC watch ended"),
                Err(_) => bail!("{pvc} not resized within {TIMEOUT:?}\n{}", self.logs()),
            }
        };
        self.requests.insert(pvc.clone(), after);
        *self.resizes.entry(pvc.clone()).or_default() += 1;
        let still = self.leader().await;
        // The simulator grows the volume; wait for it before the next sample.
        let deadline = Instant::now() + TIMEOUT;
        while volume.capacity_bytes() < after {
            if Instant::now() > deadline {
                bail!("volume of {pvc} not grown to {after}");
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        if still.as_deref() != Some(leader.as_str()) {
            eprintln!("  leadership moved during a sample ({leader} -> {still:?}); sample dropped");
            return Ok(Outcome::Dropped);
        }
        Ok(Outcome::Sample(Sample {
            reaction: t1 - t0,
            fill: t0 - started,
            logged: logged_offset(&self.manager(&leader).logs(), &pvc, wall0),
            probe_rate,
        }))
    }
}

/// Milliseconds from `wall0` to the leader's last "resized" log line for `pvc`.
fn logged_offset(logs: &str, pvc: &str, wall0: SystemTime) -> Option<f64> {
    let line = logs.lines().rev().find_map(|l| {
        let v: Value = serde_json::from_str(l).ok()?;
        (v["msg"] == "resized" && v["pvc"] == pvc).then_some(v)
    })?;
    let ts: jiff::Timestamp = line["ts"].as_str()?.parse().ok()?;
    let wall0 = jiff::Timestamp::try_from(wall0).ok()?;
    let ms = (ts - wall0).total(jiff::Unit::Millisecond).ok()?;
    Some(ms)
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

struct Summary {
    min: f64,
    median: f64,
    p90: f64,
    max: f64,
}

fn summary(values: &[f64]) -> Summary {
    let mut v = values.to_vec();
    v.sort_by(f64::total_cmp);
    let n = v.len();
    let median = if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    };
    let p90 = v[((n as f64 * 0.9).ceil() as usize).clamp(1, n) - 1];
    Summary {
        min: v[0],
        median,
        p90,
        max: v[n - 1],
    }
}

fn parse_interval(text: &str) -> Result<Duration> {
    let d: jiff::SignedDuration = text.parse().with_context(|| format!("interval {text:?}"))?;
    Duration::try_from(d).with_context(|| format!("interval {text:?}"))
}

async fn run_interval(text: &str, n: usize) -> Result<HashMap<Case, Vec<Sample>>> {
    let interval = parse_interval(text)?;
    let mut samples: HashMap<Case, Vec<Sample>> = HashMap::new();
    let cases = [Case::LeaderOwn, Case::Peer];
    let mut round = 0;
    while cases.iter().any(|c| samples.get(c).map_or(0, Vec::len) < n) {
        round += 1;
        let mut bed = Bed::start(text, interval).await?;
        eprintln!(
            "probe {text}: scenario {round} ready, leader {:?}",
            bed.leader().await
        );
        'scenario: loop {
            let mut progressed = false;
            for case in cases {
                if samples.get(&case).map_or(0, Vec::len) >= n {
                    continue;
                }
                match bed.sample(case).await? {
                    Outcome::Sample(s) => {
                        eprintln!(
                            "  {:<26} {:>7.1} ms (fill {:.1} ms, leader logged the patch at {}, probes/s before {})",
                            case.label(),
                            ms(s.reaction),
                            ms(s.fill),
                            s.logged.map_or("?".into(), |l| format!("{l:.1} ms")),
                            s.probe_rate.map_or("?".into(), |r| format!("{r:.1}")),
                        );
                        samples.entry(case).or_default().push(s);
                        progressed = true;
                    }
                    Outcome::Dropped => progressed = true,
                    Outcome::Exhausted => break 'scenario,
                }
            }
            if !progressed {
                break;
            }
        }
    }
    Ok(samples)
}

fn main() -> Result<()> {
    let n: usize = std::env::var("REACTION_ITERATIONS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(15)
        .max(1);
    let intervals = std::env::var("REACTION_PROBE_INTERVALS").unwrap_or_else(|_| "1s,200ms".into());
    let intervals: Vec<String> = intervals.split(',').map(|s| s.trim().to_string()).collect();
    eprintln!("binary: {}", binary().display());
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    let mut results = Vec::new();
    for text in &intervals {
        let samples = runtime.block_on(run_interval(text, n))?;
        results.push((text.clone(), samples));
    }

    println!();
    println!("reaction time: trigger crossed (fill returned) -> PVC patch seen by a watch; {n} samples per case");
    println!(
        "{:<9} {:<26} {:>8} {:>8} {:>8} {:>8} {:>14} {:>10} {:>10}",
        "probe", "case", "min ms", "median", "p90", "max", "patch logged*", "fill ms", "probes/s**"
    );
    let mut medians: HashMap<(String, Case), f64> = HashMap::new();
    for (text, samples) in &results {
        for case in [Case::LeaderOwn, Case::Peer] {
            let Some(list) = samples.get(&case) else {
                continue;
            };
            let reaction: Vec<f64> = list.iter().map(|s| ms(s.reaction)).collect();
            let fill: Vec<f64> = list.iter().map(|s| ms(s.fill)).collect();
            let logged: Vec<f64> = list.iter().filter_map(|s| s.logged).collect();
            let rates: Vec<f64> = list.iter().filter_map(|s| s.probe_rate).collect();
            let r = summary(&reaction);
            medians.insert((text.clone(), case), r.median);
            println!(
                "{:<9} {:<26} {:>8.1} {:>8.1} {:>8.1} {:>8.1} {:>14} {:>10.1} {:>10}",
                text,
                case.label(),
                r.min,
                r.median,
                r.p90,
                r.max,
                if logged.is_empty() {
                    "?".to_string()
                } else {
                    format!("{:.1}", summary(&logged).median)
                },
                summary(&fill).median,
                if rates.is_empty() {
                    "?".to_string()
                } else {
                    format!("{:.1}", summary(&rates).median)
                },
            );
        }
    }
    println!("* median of t0 -> the leader's \"resized\" log line (wall clock, ms resolution of the log)");
    println!("** median probe rate of the volume's own manager in the seconds before the fill");
    for (text, _) in &results {
        if let (Some(own), Some(peer)) = (
            medians.get(&(text.clone(), Case::LeaderOwn)),
            medians.get(&(text.clone(), Case::Peer)),
        ) {
            println!("probe {text}: peer / leader-own median = {:.2}", peer / own);
        }
    }
    if results.len() >= 2 {
        let (a, b) = (&results[0].0, &results[1].0);
        for case in [Case::LeaderOwn, Case::Peer] {
            if let (Some(x), Some(y)) = (
                medians.get(&(a.clone(), case)),
                medians.get(&(b.clone(), case)),
            ) {
                println!(
                    "{}: probe {a} / probe {b} median = {:.2}",
                    case.label(),
                    x / y
                );
            }
        }
    }
    Ok(())
}
