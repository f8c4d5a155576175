//! Reaction time, end to end: from a data volume crossing its trigger to
//! the PVC patch being accepted by the Kubernetes API sandbox, at the
//! product's default settings, for several `--probe-interval`s, with the
//! idle CPU each manager pays for its interval.
//!
//! A plain `main` (no criterion): every sample starts real processes.
//!
//! ```sh
//! cargo bench --bench reaction            # release build of the bench and of the binary
//! REACTION_ITERATIONS=50 REACTION_PROBE_INTERVALS=1s,500ms,250ms REACTION_CPU_SECONDS=30 \
//!     cargo bench --bench reaction
//! CNPG_AUTORESIZE_BIN=/path/to/cnpg-autoresize cargo bench --bench reaction
//! REACTION_CPU_LIMITS=none,100m,50m,20m REACTION_PROBE_INTERVALS=1s \
//!     cargo bench --bench reaction    # freshness under a container CPU limit (root)
//! REACTION_BASELINE_PERCENT=77 REACTION_FILL_PERCENT=83 REACTION_PROBE_INTERVALS=1s \
//!     cargo bench --bench reaction    # a gradual crossing instead of a jump
//! ```
//!
//! Cargo builds the `cnpg-autoresize` binary with the bench (same profile)
//! and tells us where it is (`CARGO_BIN_EXE_cnpg-autoresize`);
//! `CNPG_AUTORESIZE_BIN` overrides it.
//!
//! Setup: 2 instances, no PostgreSQL (data volumes need no WAL health when
//! the cluster has a separate WAL volume, here with resize disabled), the
//! chart's Role enforced by the sandbox and its AutoResizePolicy CRD
//! installed, the product's default timings (lease 15s, renew 5s, WAL 10s)
//! with `--probe-interval` set to each value of `REACTION_PROBE_INTERVALS`.
//! The data volumes' resize block is also an AutoResizePolicy with
//! `timeToFull: 2s`: the samples' baseline refills are growth to the
//! forecast, and its resizes would fall into the samples of the threshold.
//!
//! With `REACTION_CPU_LIMITS`, each manager runs in a cgroup with the CFS
//! quota the kubelet gives that CPU limit (100 ms period), and the table
//! gains how often the limit throttled it: the check that a limit cannot make
//! reports stale.
//!
//! Per interval, first the idle cost: both managers' CPU over
//! `REACTION_CPU_SECONDS` with the volumes quiet (from
//! `/proc/<pid>/task/*/schedstat`, and clock ticks of `/proc/<pid>/stat`).
//!
//! One sample: bring the chosen data volume to 50% used (knob
//! `REACTION_BASELINE_PERCENT`) and let the
//! managers settle (the leader's decision for it says `not_triggered` at the
//! PVC's current size, then 1–2 probe intervals, a random phase against the
//! probe timer); fill it to 85% (`REACTION_FILL_PERCENT`; trigger:
//! `usageThreshold` 80) and take `t0`
//! when the fill returns; `t1` is when a watch on the PVCs (sandbox admin
//! client) sees the larger request. Each resize grows the volume by 16Mi
//! (`maxActionsPerDay: 10`), and size parity (rule 1 of
//! docs/reference/decision.md) grows the other data PVC to match right after
//! (the next sample waits for that); a
//! scenario gives 10 samples per PVC and a fresh one is started after. Cases: (a) the leader's own data volume,
//! (b) the peer's. At 50% the disk probe runs at its base interval (it
//! speeds up 4× only at ≥ 70% used or while usage grows): this measures the
//! sudden jump, the worst case.

mod support;

use anyhow::{bail, Context, Result};
use cnpg_autoresize::api::quantity::format_bytes;
use cnpg_testbed::cgroup::{ContainerCgroup, CpuThrottling};
use cnpg_testbed::scenario::{ManagerOptions, ManagerProcess, Scenario};
use serde_json::{json, Value};
use std::collections::HashMap;
use std::time::{Duration, Instant, SystemTime};
use support::{ms, summary, RequestWatch, MIB};

const CLUSTER: &str = "pg";
/// `maxActionsPerDay` (its ceiling): samples per PVC and scenario.
const BUDGET: usize = 10;
/// Where a sample starts and where the fill takes it (trigger: 80%).
/// Defaults: 50 -> 85, the sudden jump. 77 -> 83 is a gradual crossing,
/// which the disk probe watches at 4x its base rate (>= 70% used).
fn baseline_percent() -> f64 {
    support::env_or("REACTION_BASELINE_PERCENT", 50.0)
}
fn fill_percent() -> f64 {
    support::env_or("REACTION_FILL_PERCENT", 85.0)
}
const TIMEOUT: Duration = Duration::from_secs(30);
/// The goals (milliseconds).
const GOAL_P99_MS: f64 = 500.0;
const GOAL_P50_MS: f64 = 250.0;

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

/// Idle CPU of one manager (% of one core).
struct IdleCpu {
    role: &'static str,
    schedstat: f64,
    ticks: f64,
}

struct Bed {
    // Declared first: the managers are killed before their cgroups and the
    // scenario go.
    managers: Vec<ManagerProcess>,
    /// Each manager's container limits (with a CPU limit only).
    cgroups: Vec<ContainerCgroup>,
    scenario: Scenario,
    interval: Duration,
    resizes: HashMap<String, usize>,
    watch: RequestWatch,
    http: reqwest::Client,
}

impl Bed {
    async fn start(
        options: &ManagerOptions,
        interval: Duration,
        cpu_limit: Option<u64>,
    ) -> Result<Bed> {
        let resize = json!({"enabled": true,
            "expansion": {"step": "16Mi", "limit": "1Gi"},
            "strategy": {"maxActionsPerDay": BUDGET}});
        let scenario = Scenario::builder(CLUSTER)
            .instances(2)
            .postgres(false)
            .data(64 * MIB, resize.clone())
            .wal(16 * MIB, json!({"enabled": false}))
            .enforce_role(support::MANAGER_ROLE)
            .start()
            .await?;
        scenario.sandbox.register_crd(&support::policy_crd()?)?;
        // The same resize block through a policy, only to bring `timeToFull`
        // down to its minimum: each sample refills its baseline on a volume
        // the last sample grew, a staircase the forecast rightly reads as
        // growth, and a forecast resize would land inside the next sample.
        // Measured here: the usage threshold's reaction.
        let mut policy_resize = resize.clone();
        policy_resize["triggers"] = json!({"timeToFull": "2s"});
        support::create_policy(
            &scenario.client,
            &scenario.namespace,
            CLUSTER,
            json!({"cluster": CLUSTER, "storage": {"resize": policy_resize},
                "walStorage": {"resize": {"enabled": false}}}),
        )
        .await?;
        let port = scenario.common_port()?;
        let bin = support::binary();
        let managers = (0..scenario.instances.len())
            .map(|n| scenario.spawn_manager(&bin, n, port, options))
            .collect::<Result<Vec<_>>>()?;
        // The CPU limit as the kubelet enforces it (CFS quota per 100 ms).
        let mut cgroups = Vec::new();
        if let Some(millis) = cpu_limit {
            for (n, m) in managers.iter().enumerate() {
                let name = format!("cnpg-reaction-{}-{n}", std::process::id());
                let group = ContainerCgroup::create(&name, Some(millis), None)?;
                group.add(m.pid().context("manager exited")?)?;
                cgroups.push(group);
            }
        }
        let watch = RequestWatch::start(scenario.pvcs());
        let bed = Bed {
            managers,
            cgroups,
            scenario,
            interval,
            resizes: HashMap::new(),
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
                ready += usize::from(support::http_ok(&self.http, &m.url("/readyz")).await);
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
        support::lease_holder(&self.scenario.client, &self.scenario.namespace, CLUSTER).await
    }

    fn manager(&self, pod: &str) -> Result<&ManagerProcess> {
        self.managers
            .iter()
            .find(|m| m.pod == pod)
            .with_context(|| format!("no manager for {pod}"))
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
            .get(self.manager(pod).ok()?.url("/metrics"))
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

    /// Throttling of both managers' CPU so far (zero without a limit).
    fn throttling(&self) -> Result<CpuThrottling> {
        let mut sum = CpuThrottling::default();
        for g in &self.cgroups {
            let t = g.throttling()?;
            sum.periods += t.periods;
            sum.throttled_periods += t.throttled_periods;
            sum.throttled_usec += t.throttled_usec;
        }
        Ok(sum)
    }

    /// Both managers' CPU over `window` while nothing happens.
    async fn idle_cpu(&self, window: Duration) -> Result<Vec<IdleCpu>> {
        let leader = self.leader().await.context("no leader")?;
        let pids: Vec<u32> = self
            .managers
            .iter()
            .map(|m| m.pid().context("manager exited"))
            .collect::<Result<_>>()?;
        let before = support::CpuReading::take(&pids)?;
        tokio::time::sleep(window).await;
        let after = support::CpuReading::take(&pids)?;
        if self.leader().await.as_deref() != Some(leader.as_str()) {
            eprintln!("  warning: leadership moved during the CPU window");
        }
        Ok(self
            .managers
            .iter()
            .zip(after.percent_since(&before))
            .map(|(m, (ticks, schedstat))| IdleCpu {
                role: if m.pod == leader {
                    "leader"
                } else {
                    "follower"
                },
                schedstat,
                ticks,
            })
            .collect())
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
        // Size parity (docs/reference/decision.md#1-size-parity) grows the
        // other data PVC with every resize: read the request, and wait for the
        // volume to match it.
        let before = support::wait_parity(&self.scenario.pvcs(), CLUSTER, TIMEOUT).await?;
        let deadline = Instant::now() + TIMEOUT;
        while volume.capacity_bytes() < before {
            if Instant::now() > deadline {
                bail!("volume of {pvc} not grown to {before}");
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }

        // Settle at the baseline, then a random phase against the probe timer.
        volume.fill_to_percent(baseline_percent())?;
        let leader_url = self.manager(&leader)?.url("/v1/decisions");
        if let Err(e) = support::wait_not_triggered(
            &self.http,
            &leader_url,
            &pod,
            &pvc,
            &format_bytes(before),
            TIMEOUT,
        )
        .await
        {
            bail!("{e:#}\n{}", self.logs());
        }
        let phase = self.interval + self.interval.mul_f64(rand::random::<f64>());
        let probes_before = self.probe_count(&pod).await;
        let slept = Instant::now();
        tokio::time::sleep(phase).await;
        let probe_rate = match (probes_before, self.probe_count(&pod).await) {
            (Some(a), Some(b)) => Some((b - a) / slept.elapsed().as_secs_f64()),
            _ => None,
        };
        self.watch.drain();

        let started = Instant::now();
        volume.fill_to_percent(fill_percent())?;
        let t0 = Instant::now();
        let wall0 = SystemTime::now();

        let deadline = t0 + TIMEOUT;
        let (t1, after) = loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match tokio::time::timeout(left, self.watch.changes.recv()).await {
                Ok(Some((name, bytes, seen))) if name == pvc && bytes > before => {
                    break (seen, bytes)
                }
                Ok(Some(_)) => continue,
                Ok(None) => bail!("the PVC watch ended"),
                Err(_) => bail!("{pvc} not resized within {TIMEOUT:?}\n{}", self.logs()),
            }
        };
        *self.resizes.entry(pvc.clone()).or_default() += 1;
        // Once a volume passes 256Mi, 85% of it is still above 80% after one
        // 16Mi step: empty it before it grows, so one crossing is one resize.
        volume.clear_fill()?;
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
            logged: logged_offset(&self.manager(&leader)?.logs(), &pvc, wall0),
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

struct IntervalResult {
    /// The probe interval and the CPU limit, e.g. `1s/50m`.
    text: String,
    samples: HashMap<Case, Vec<Sample>>,
    idle: Vec<IdleCpu>,
    scenarios: usize,
    /// Throttling over all samples (CPU limit only).
    throttling: CpuThrottling,
}

/// `none` or a Kubernetes CPU quantity in millicores (`50m`, `0.1`, `1`).
fn parse_cpu_limit(text: &str) -> Result<Option<u64>> {
    if text == "none" {
        return Ok(None);
    }
    let cores: f64 = match text.strip_suffix('m') {
        Some(m) => m.parse::<f64>().map(|m| m / 1000.0),
        None => text.parse::<f64>(),
    }
    .with_context(|| format!("REACTION_CPU_LIMITS: {text:?} is not none, 50m or 0.05"))?;
    if !(cores > 0.0 && cores <= 64.0) {
        bail!("REACTION_CPU_LIMITS: {text:?} is not in (0, 64] cores");
    }
    Ok(Some((cores * 1000.0).round() as u64))
}

async fn run_interval(
    text: &str,
    cpu_limit: Option<u64>,
    n: usize,
    cpu_window: Duration,
) -> Result<IntervalResult> {
    let interval = support::parse_duration(text)?;
    let label = match cpu_limit {
        Some(m) => format!("{text}/{m}m"),
        None => format!("{text}/none"),
    };
    let mut throttling = CpuThrottling::default();
    let options = ManagerOptions {
        probe_interval: text.to_string(),
        ..support::product_options()
    };
    let mut samples: HashMap<Case, Vec<Sample>> = HashMap::new();
    let mut idle = Vec::new();
    let cases = [Case::LeaderOwn, Case::Peer];
    let mut round = 0;
    while cases.iter().any(|c| samples.get(c).map_or(0, Vec::len) < n) {
        round += 1;
        let mut bed = Bed::start(&options, interval, cpu_limit).await?;
        eprintln!(
            "probe/cpu limit {label}: scenario {round} ready, leader {:?} (load {})",
            bed.leader().await,
            support::loadavg()
        );
        if round == 1 && !cpu_window.is_zero() {
            // Let start-up settle (first lists, first long-polls), then measure.
            tokio::time::sleep(Duration::from_secs(5)).await;
            idle = bed.idle_cpu(cpu_window).await?;
            for c in &idle {
                eprintln!(
                    "  idle CPU over {cpu_window:?}: {} {:.3}% of a core (ticks: {:.3}%)",
                    c.role, c.schedstat, c.ticks
                );
            }
        }
        let throttled_before = bed.throttling()?;
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
        let t = bed.throttling()?.since(&throttled_before);
        throttling.periods += t.periods;
        throttling.throttled_periods += t.throttled_periods;
        throttling.throttled_usec += t.throttled_usec;
    }
    Ok(IntervalResult {
        text: label,
        samples,
        idle,
        scenarios: round,
        throttling,
    })
}

fn main() -> Result<()> {
    let n: usize = support::env_or("REACTION_ITERATIONS", 50usize).max(1);
    let intervals =
        std::env::var("REACTION_PROBE_INTERVALS").unwrap_or_else(|_| "1s,500ms,250ms".into());
    let intervals: Vec<String> = intervals.split(',').map(|s| s.trim().to_string()).collect();
    let limits_text = std::env::var("REACTION_CPU_LIMITS").unwrap_or_else(|_| "none".into());
    let limits: Vec<Option<u64>> = limits_text
        .split(',')
        .map(|s| parse_cpu_limit(s.trim()))
        .collect::<Result<_>>()?;
    let cpu_window = Duration::from_secs(support::env_or("REACTION_CPU_SECONDS", 30u64));
    eprintln!("binary: {}", support::binary().display());
    eprintln!("machine: {}", support::machine());
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    let started = Instant::now();
    let mut results = Vec::new();
    for limit in &limits {
        for text in &intervals {
            results.push(runtime.block_on(run_interval(text, *limit, n, cpu_window))?);
        }
    }

    println!();
    println!(
        "reaction: trigger crossed (fill returned) -> PVC patch seen by a watch; product defaults \
         (lease 15s, renew 5s) but --probe-interval; {n} samples per case; fill {:.0}% -> {:.0}%; run took {:.0} s; load now {}",
        baseline_percent(),
        fill_percent(),
        started.elapsed().as_secs_f64(),
        support::loadavg()
    );
    println!(
        "{:<11} {:<26} {:>4} {:>7} {:>7} {:>7} {:>7} {:>7} {:>9} {:>8} {:>9}  goal (p99<={GOAL_P99_MS:.0}, p50<={GOAL_P50_MS:.0})",
        "probe/cpu", "case", "n", "min", "p50", "p90", "p99", "max", "logged*", "fill", "probes/s"
    );
    let mut medians: HashMap<(String, Case), f64> = HashMap::new();
    for r in &results {
        for case in [Case::LeaderOwn, Case::Peer] {
            let Some(list) = r.samples.get(&case) else {
                continue;
            };
            let reaction: Vec<f64> = list.iter().map(|s| ms(s.reaction)).collect();
            let fill: Vec<f64> = list.iter().map(|s| ms(s.fill)).collect();
            let logged: Vec<f64> = list.iter().filter_map(|s| s.logged).collect();
            let rates: Vec<f64> = list.iter().filter_map(|s| s.probe_rate).collect();
            let s = summary(&reaction);
            medians.insert((r.text.clone(), case), s.p50);
            let met = s.p99 <= GOAL_P99_MS && s.p50 <= GOAL_P50_MS;
            println!(
                "{:<11} {:<26} {:>4} {:>7.1} {:>7.1} {:>7.1} {:>7.1} {:>7.1} {:>9} {:>8.1} {:>9}  {}",
                r.text,
                case.label(),
                s.n,
                s.min,
                s.p50,
                s.p90,
                s.p99,
                s.max,
                if logged.is_empty() {
                    "?".to_string()
                } else {
                    format!("{:.1}", support::median(&logged))
                },
                support::median(&fill),
                if rates.is_empty() {
                    "?".to_string()
                } else {
                    format!("{:.2}", support::median(&rates))
                },
                if met { "met" } else { "NOT met" },
            );
        }
    }
    println!("all times in ms; p99 is the nearest rank (with 50 samples: the largest)");
    println!("* median of t0 -> the leader's \"resized\" log line (wall clock, ms resolution of the log)");
    for r in &results {
        let t = &r.throttling;
        if t.periods > 0 {
            println!(
                "{}: throttled in {} of {} CFS periods ({:.1}%), {:.3} s throttled in all",
                r.text,
                t.throttled_periods,
                t.periods,
                100.0 * t.throttled_periods as f64 / t.periods as f64,
                t.throttled_usec as f64 / 1e6
            );
        }
    }
    println!("idle CPU per manager (% of one core; schedstat, clock ticks in brackets), window {cpu_window:?}:");
    for r in &results {
        let list: Vec<String> = r
            .idle
            .iter()
            .map(|c| format!("{} {:.3}% ({:.3}%)", c.role, c.schedstat, c.ticks))
            .collect();
        println!(
            "  {:<11} {}   [{} scenario(s)]",
            r.text,
            list.join(", "),
            r.scenarios
        );
    }
    for r in &results {
        if let (Some(own), Some(peer)) = (
            medians.get(&(r.text.clone(), Case::LeaderOwn)),
            medians.get(&(r.text.clone(), Case::Peer)),
        ) {
            println!("{}: peer / leader-own median = {:.2}", r.text, peer / own);
        }
    }
    if let Some(first) = results.first() {
        for other in results.iter().skip(1) {
            for case in [Case::LeaderOwn, Case::Peer] {
                if let (Some(x), Some(y)) = (
                    medians.get(&(first.text.clone(), case)),
                    medians.get(&(other.text.clone(), case)),
                ) {
                    println!(
                        "{}: median at {} / at {} = {:.2}",
                        case.label(),
                        first.text,
                        other.text,
                        x / y
                    );
                }
            }
            let cpu = |r: &IntervalResult| {
                let v: Vec<f64> = r.idle.iter().map(|c| c.schedstat).collect();
                (!v.is_empty()).then(|| v.iter().sum::<f64>() / v.len() as f64)
            };
            if let (Some(a), Some(b)) = (cpu(first), cpu(other)) {
                println!(
                    "idle CPU per manager (mean of both): {} / {} = {:.2}",
                    other.text,
                    first.text,
                    b / a
                );
            }
        }
    }
    println!(
        "command: REACTION_ITERATIONS={n} REACTION_PROBE_INTERVALS={} REACTION_CPU_LIMITS={limits_text} \
         REACTION_CPU_SECONDS={} REACTION_BASELINE_PERCENT={} REACTION_FILL_PERCENT={} cargo bench --bench reaction",
        intervals.join(","),
        cpu_window.as_secs(),
        baseline_percent(),
        fill_percent()
    );
    Ok(())
}
