//! Survivable write rate: the highest steady write rate at which a 1 GiB
//! volume never reaches 100% before its first expansion completes, for a
//! CSI expansion latency of 5 s and 30 s, under
//!
//! - `a`: the defaults (`usageThreshold` 80, `step` 20%) in the Cluster;
//! - `b`: an AutoResizePolicy with `timeToFull` and `horizon`, at the
//!   product's default forecast (its history can be shortened with the
//!   hidden `--forecast-min-span`/`--forecast-window`: `SURVIVAL_FORECAST_*`);
//! - `fork`: the same harness (defaults) with the CloudNativePG fork's
//!   detection delay: a 30 s decision loop;
//! - `topolvm`: the same harness with topolvm pvc-autoresizer's: a 10 s loop
//!   on figures 60 s old (kubelet volume stats through Prometheus).
//!
//! A plain `main` (no criterion).
//!
//! ```sh
//! cargo bench --bench survival
//! SURVIVAL_CONFIGS=a,b,fork,topolvm SURVIVAL_LATENCIES=5s,30s SURVIVAL_TRIALS=6 \
//!     SURVIVAL_PARALLEL=4 \
//!     SURVIVAL_B_START_PERCENT=50 SURVIVAL_LEAD_SECONDS=5 cargo bench --bench survival
//! ```
//!
//! One trial: a fresh scenario (1 instance, no PostgreSQL, chart Role and
//! policy CRD, product default timings; a 1 GiB ext4-shaped data volume and
//! a 16Mi WAL volume with resize off, so the data volume needs no WAL
//! health; the volume simulator's expansion delay = the latency). The data
//! volume is pre-filled to the start level *before* the manager starts, so
//! nothing the forecast sees predates the stream; the manager and a writer
//! thread then start together. The writer appends at the steady rate R
//! (every 20 ms). "Reaches 100%" = the stream's bytes no longer fit in the
//! filesystem's current total. The trial ends when the filesystem has grown
//! (survived) or at 100% (failed).
//!
//! Where the stream starts: `b` from `SURVIVAL_B_START_PERCENT` (50%): its
//! advantage is lead time, which depends on how much room is left when the
//! stream begins. `a`, `fork` and `topolvm` decide on usage alone, so for
//! them only the time from the crossing of 80% matters; their stream starts
//! `SURVIVAL_LEAD_SECONDS` (5 s) before the crossing (the start-up of the
//! manager and the probe's 4x mode are behind it by then), which is
//! observationally the same as a stream that started at 50%, and keeps trials short.
//!
//! The anchors' detection delays are modelled by what the decision sees:
//! the writer still appends at R, but what lands on the volume (what
//! `statvfs` — the product's probe — reports) is the stream sampled every
//! *period* and delayed by *lag*: `fork` period 30 s, lag 0; `topolvm`
//! period 10 s, lag 60 s; "reaches 100%" still counts every byte of the
//! stream. The sampling phase is the worst case: a sample lands just (0.2 s)
//! before the crossing, so the crossing is seen one period (+ lag) later.
//! The product's own probe adds at most 250 ms on top (≥ 70% used: 4x
//! faster). (`--probe-interval 30s` is not a 30 s loop here: while usage
//! grows the probe runs 4x faster, every 7.5 s, and a 30 s probe interval
//! needs a 90 s lease.)
//!
//! Search: per configuration and latency, a geometric bisection between
//! 0.4x and 2.5x the rate predicted from the model (predicted =
//! headroom / (detection + latency)), `SURVIVAL_TRIALS` trials, each
//! reported. The result is the highest surviving rate tested. The physical
//! limit is `(1 - 0.8) * filesystem total / latency`.

mod support;

use anyhow::{bail, Context, Result};
use cnpg_testbed::scenario::{ManagerOptions, Scenario};
use cnpg_testbed::{FilesystemKind, Volume};
use futures::StreamExt;
use serde_json::json;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use support::{GIB, MIB};

const CLUSTER: &str = "pg";
const SIZE: u64 = GIB;
const THRESHOLD: f64 = 0.80;
/// Writer step.
const TICK: Duration = Duration::from_millis(20);
/// How early before the crossing the worst-case sample of `fork`/`topolvm` lands.
const SAMPLE_BEFORE_CROSSING: f64 = 0.2;
/// The product's own detection (probe at 4x while filling, hop, patch), for the prediction.
const OWN_DETECTION: f64 = 0.5;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Config {
    Defaults,
    Forecast,
    Fork,
    Topolvm,
}

impl Config {
    fn parse(s: &str) -> Result<Config> {
        Ok(match s {
            "a" => Config::Defaults,
            "b" => Config::Forecast,
            "fork" | "c-fork" => Config::Fork,
            "topolvm" | "c-topolvm" => Config::Topolvm,
            other => bail!("SURVIVAL_CONFIGS: unknown {other:?} (a, b, fork, topolvm)"),
        })
    }

    fn label(self) -> &'static str {
        match self {
            Config::Defaults => "(a) defaults",
            Config::Forecast => "(b) timeToFull+horizon",
            Config::Fork => "(c) fork: 30s loop",
            Config::Topolvm => "(c) topolvm: 10s loop, 60s lag",
        }
    }

    /// (period, lag) of what the decision sees; None = the volume itself.
    fn sampling(self) -> Option<(f64, f64)> {
        match self {
            Config::Fork => Some((30.0, 0.0)),
            Config::Topolvm => Some((10.0, 60.0)),
            _ => None,
        }
    }

    /// Worst-case detection delay of the model (s).
    fn detection(self) -> f64 {
        self.sampling()
            .map_or(0.0, |(p, l)| p + l - SAMPLE_BEFORE_CROSSING)
            + OWN_DETECTION
    }
}

#[derive(Clone, Debug)]
struct Knobs {
    configs: Vec<Config>,
    latencies: Vec<(String, Duration)>,
    trials: usize,
    parallel: usize,
    min_span: String,
    window: String,
    b_start: f64,
    lead: f64,
    time_to_full: String,
    horizon: String,
}

impl Knobs {
    fn read() -> Result<Knobs> {
        let configs = std::env::var("SURVIVAL_CONFIGS")
            .unwrap_or_else(|_| "a,b,fork,topolvm".into())
            .split(',')
            .map(|s| Config::parse(s.trim()))
            .collect::<Result<Vec<_>>>()?;
        let latencies = std::env::var("SURVIVAL_LATENCIES")
            .unwrap_or_else(|_| "5s,30s".into())
            .split(',')
            .map(|s| Ok((s.trim().to_string(), support::parse_duration(s)?)))
            .collect::<Result<Vec<_>>>()?;
        Ok(Knobs {
            configs,
            latencies,
            trials: support::env_or("SURVIVAL_TRIALS", 6usize).max(1),
            parallel: support::env_or("SURVIVAL_PARALLEL", 4usize).max(1),
            // Empty: the product's own forecast (default settings).
            min_span: std::env::var("SURVIVAL_FORECAST_MIN_SPAN").unwrap_or_default(),
            window: std::env::var("SURVIVAL_FORECAST_WINDOW").unwrap_or_default(),
            b_start: support::env_or("SURVIVAL_B_START_PERCENT", 50.0f64).clamp(0.0, 79.0) / 100.0,
            lead: support::env_or("SURVIVAL_LEAD_SECONDS", 5.0f64).max(1.0),
            time_to_full: std::env::var("SURVIVAL_TIME_TO_FULL").unwrap_or_else(|_| "1h".into()),
            horizon: std::env::var("SURVIVAL_HORIZON").unwrap_or_else(|_| "1h".into()),
        })
    }
}

#[derive(Clone, Debug)]
struct Trial {
    rate: f64,
    survived: bool,
    start_percent: f64,
    /// Seconds from the stream's start: crossing of 80% (by the stream's bytes).
    crossing: f64,
    /// ... the PVC patch seen, the filesystem grown, 100% reached.
    patched: Option<f64>,
    grown: Option<f64>,
    full: Option<f64>,
    /// Highest share of the filesystem the stream's bytes reached (%).
    peak_percent: f64,
    /// The trigger of the resize, from the manager's log.
    trigger: Option<String>,
    note: String,
}

/// What the writer thread found.
struct WriterResult {
    grown: Option<f64>,
    full: Option<f64>,
    peak_percent: f64,
    error: Option<String>,
}

/// The writer thread; stopped and joined on drop.
struct Writer {
    stop: Arc<AtomicBool>,
    handle: Option<std::thread::JoinHandle<WriterResult>>,
}

impl Writer {
    /// Appends at `rate` bytes/s from now; what lands on the volume follows
    /// `sampling` (period, lag) with a sample instant at `phase` (s).
    fn start(
        volume: Arc<Volume>,
        rate: f64,
        start_used: u64,
        sampling: Option<(f64, f64)>,
        phase: f64,
        timeout: f64,
    ) -> Writer {
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let handle = std::thread::spawn(move || {
            write_stream(&volume, rate, start_used, sampling, phase, timeout, &flag)
        });
        Writer {
            stop,
            handle: Some(handle),
        }
    }

    fn finished(&self) -> bool {
        self.handle
            .as_ref()
            .is_none_or(std::thread::JoinHandle::is_finished)
    }

    fn join(mut self) -> Result<WriterResult> {
        let handle = self.handle.take().context("writer already joined")?;
        handle
            .join()
            .map_err(|_| anyhow::anyhow!("the writer thread panicked"))
    }
}

impl Drop for Writer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(h) = self.handle.take() {
            let _ = h.join();
        }
    }
}

fn write_stream(
    volume: &Volume,
    rate: f64,
    start_used: u64,
    sampling: Option<(f64, f64)>,
    phase: f64,
    timeout: f64,
    stop: &AtomicBool,
) -> WriterResult {
    let total0 = volume.filesystem_total_bytes();
    let started = Instant::now();
    let mut on_disk = start_used;
    let mut peak = 0.0f64;
    let result = |grown, full, peak, error| WriterResult {
        grown,
        full,
        peak_percent: peak,
        error,
    };
    loop {
        if stop.load(Ordering::SeqCst) {
            return result(None, None, peak, Some("stopped".into()));
        }
        let t = started.elapsed().as_secs_f64();
        if volume.filesystem_total_bytes() > total0 {
            return result(Some(t), None, peak, None);
        }
        let stats = match volume.stats() {
            Ok(s) => s,
            Err(e) => return result(None, None, peak, Some(format!("{e:#}"))),
        };
        let fs_total = (stats.used_bytes + stats.available_bytes) as f64;
        let stream = start_used as f64 + rate * t;
        peak = peak.max(stream / fs_total * 100.0);
        if stream >= fs_total {
            return result(None, Some(t), peak, None);
        }
        // What the decision may see now.
        let visible_at = match sampling {
            None => t,
            Some((period, lag)) => {
                let s = t - lag;
                phase + ((s - phase) / period).floor() * period
            }
        };
        let visible = (start_used as f64 + rate * visible_at.max(0.0)) as u64;
        if visible > on_disk {
            let n = (visible - on_disk).min(stats.available_bytes);
            if n > 0 {
                if let Err(e) = volume.fill_bytes(n) {
                    // Page rounding: the stream is within a page of the end.
                    return result(None, Some(t), peak, Some(format!("{e:#}")));
                }
            }
            on_disk = visible;
        }
        if t > timeout {
            return result(
                None,
                None,
                peak,
                Some(format!("no expansion within {timeout:.0} s")),
            );
        }
        std::thread::sleep(TICK);
    }
}

async fn trial(k: &Knobs, config: Config, latency: Duration, rate: f64) -> Result<Trial> {
    let lat = latency.as_secs_f64();
    let data_resize = if config == Config::Forecast {
        json!({"enabled": false})
    } else {
        json!({"enabled": true})
    };
    let scenario = Scenario::builder(CLUSTER)
        .instances(1)
        .postgres(false)
        .data(SIZE, data_resize)
        .wal(16 * MIB, json!({"enabled": false}))
        .expand_delay(latency)
        .enforce_role(support::MANAGER_ROLE)
        .start()
        .await?;
    scenario.sandbox.register_crd(&support::policy_crd()?)?;
    let mut options = support::product_options();
    if config == Config::Forecast {
        support::create_policy(
            &scenario.client,
            &scenario.namespace,
            CLUSTER,
            json!({"cluster": CLUSTER,
                "storage": {"resize": {
                    "enabled": true,
                    "triggers": {"timeToFull": k.time_to_full},
                    "expansion": {"horizon": k.horizon},
                }},
                // The Cluster has a WAL volume (resize off), as in (a).
                "walStorage": {"resize": {"enabled": false}},
            }),
        )
        .await?;
        let mut extra_args = Vec::new();
        if !k.min_span.is_empty() {
            extra_args.extend(["--forecast-min-span".into(), k.min_span.clone()]);
        }
        if !k.window.is_empty() {
            extra_args.extend(["--forecast-window".into(), k.window.clone()]);
        }
        options = ManagerOptions {
            extra_args,
            ..options
        };
    }
    let instance = &scenario.instances[0];
    let volume = instance.data().volume.clone();
    let pvc = instance.data().pvc.clone();
    let stats = volume.stats()?;
    let total = stats.used_bytes + stats.available_bytes;
    let trigger = THRESHOLD * total as f64;
    let start_used = match config {
        Config::Forecast => (k.b_start * total as f64) as u64,
        _ => (trigger - rate * k.lead) as u64,
    }
    .max(stats.used_bytes);
    {
        let v = volume.clone();
        let n = start_used - stats.used_bytes;
        tokio::task::spawn_blocking(move || v.fill_bytes(n)).await??;
    }
    let start_used = volume.stats()?.used_bytes;
    let crossing = (trigger - start_used as f64) / rate;
    let phase = crossing - SAMPLE_BEFORE_CROSSING;
    let timeout = crossing + config.detection() + lat + 60.0;
    let before = scenario.requested_bytes(&pvc).await?;
    let mut watch = support::RequestWatch::start(scenario.pvcs());
    // Start and stream together.
    let port = scenario.common_port()?;
    let manager = scenario.spawn_manager(&support::binary(), 0, port, &options)?;
    let writer = Writer::start(
        volume.clone(),
        rate,
        start_used,
        config.sampling(),
        phase,
        timeout,
    );
    let t0 = Instant::now();
    let mut patched = None;
    while !writer.finished() {
        match tokio::time::timeout(Duration::from_millis(100), watch.changes.recv()).await {
            Ok(Some((name, bytes, seen))) if name == pvc && bytes > before => {
                patched.get_or_insert(seen.saturating_duration_since(t0).as_secs_f64());
            }
            Ok(Some(_)) | Err(_) => {}
            Ok(None) => bail!("the PVC watch ended"),
        }
    }
    let result = writer.join()?;
    while let Ok((name, bytes, seen)) = watch.changes.try_recv() {
        if name == pvc && bytes > before {
            patched.get_or_insert(seen.saturating_duration_since(t0).as_secs_f64());
        }
    }
    let mut note = result.error.clone().unwrap_or_default();
    if result.grown.is_none() && result.full.is_none() {
        let logs = manager.logs();
        let tail: Vec<&str> = logs.lines().rev().take(5).collect();
        note = format!("{note}; manager log tail: {}", tail.join(" | "));
    }
    let trigger = manager.logs().lines().find_map(|l| {
        let v: serde_json::Value = serde_json::from_str(l).ok()?;
        (v["msg"] == "resized" && v["pvc"] == pvc.as_str())
            .then(|| v["trigger"].as_str().unwrap_or("?").to_string())
    });
    drop(manager);
    Ok(Trial {
        rate,
        survived: result.grown.is_some() && result.full.is_none(),
        start_percent: start_used as f64 / total as f64 * 100.0,
        crossing,
        patched,
        grown: result.grown,
        full: result.full,
        peak_percent: result.peak_percent,
        trigger,
        note,
    })
}

struct Search {
    config: Config,
    latency_text: String,
    latency: Duration,
    predicted: f64,
    physical: f64,
    trials: Vec<Trial>,
}

impl Search {
    fn best(&self) -> Option<f64> {
        self.trials
            .iter()
            .filter(|t| t.survived)
            .map(|t| t.rate)
            .max_by(f64::total_cmp)
    }

    fn lowest_failure(&self) -> Option<f64> {
        self.trials
            .iter()
            .filter(|t| !t.survived)
            .map(|t| t.rate)
            .min_by(f64::total_cmp)
    }
}

fn fmt_opt(v: Option<f64>) -> String {
    v.map_or("-".into(), |v| format!("{v:.1}"))
}

async fn search(
    k: Knobs,
    config: Config,
    latency_text: String,
    latency: Duration,
) -> Result<Search> {
    let total = cnpg_testbed::model_total_bytes(FilesystemKind::Ext4, SIZE)? as f64;
    let lat = latency.as_secs_f64();
    let physical = (1.0 - THRESHOLD) * total / lat;
    let threshold_path = (1.0 - THRESHOLD) * total / (config.detection() + lat);
    let predicted = match config {
        Config::Forecast => {
            // By default the fast-fill forecast, which needs 5 s of samples.
            let min_span = if k.min_span.is_empty() {
                5.0
            } else {
                support::parse_duration(&k.min_span)?.as_secs_f64()
            };
            let forecast_path = (1.0 - k.b_start) * total / (min_span + OWN_DETECTION + lat);
            forecast_path.max(threshold_path)
        }
        _ => threshold_path,
    };
    let (mut lo, mut hi) = (predicted * 0.4, predicted * 2.5);
    let mut trials = Vec::new();
    for n in 0..k.trials {
        let rate = (lo * hi).sqrt();
        let t = trial(&k, config, latency, rate).await.with_context(|| {
            format!(
                "{} at {latency_text}, {:.2} MiB/s",
                config.label(),
                rate / MIB as f64
            )
        })?;
        eprintln!(
            "  {:<32} L={latency_text:<4} trial {}/{}: {:>7.2} MiB/s {:<8} start {:.1}%, crossing {:.1} s, patch {} s ({}), grown {} s, full {} s, peak {:.1}% {}",
            config.label(),
            n + 1,
            k.trials,
            rate / MIB as f64,
            if t.survived { "survived" } else { "FULL" },
            t.start_percent,
            t.crossing,
            fmt_opt(t.patched),
            t.trigger.as_deref().unwrap_or("-"),
            fmt_opt(t.grown),
            fmt_opt(t.full),
            t.peak_percent,
            t.note
        );
        if t.survived {
            lo = rate;
        } else {
            hi = rate;
        }
        trials.push(t);
    }
    Ok(Search {
        config,
        latency_text,
        latency,
        predicted,
        physical,
        trials,
    })
}

fn main() -> Result<()> {
    let k = Knobs::read()?;
    eprintln!("binary: {}", support::binary().display());
    eprintln!("machine: {}", support::machine());
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    let started = Instant::now();
    // Longest searches first, `parallel` at a time.
    let mut jobs: Vec<(Config, String, Duration)> = Vec::new();
    for (text, d) in &k.latencies {
        for c in &k.configs {
            jobs.push((*c, text.clone(), *d));
        }
    }
    jobs.sort_by(|a, b| {
        (b.0.detection() + b.2.as_secs_f64()).total_cmp(&(a.0.detection() + a.2.as_secs_f64()))
    });
    let results: Vec<Result<Search>> = runtime.block_on(
        futures::stream::iter(
            jobs.into_iter()
                .map(|(c, text, d)| search(k.clone(), c, text, d)),
        )
        .buffer_unordered(k.parallel)
        .collect(),
    );
    let mut searches = results.into_iter().collect::<Result<Vec<_>>>()?;
    searches.sort_by(|a, b| {
        a.latency
            .cmp(&b.latency)
            .then((a.config as u8).cmp(&(b.config as u8)))
    });

    let mib = MIB as f64;
    println!();
    println!(
        "survivable write rate: 1 GiB ext4-shaped volume, first expansion; product defaults (probe 1s); run took {:.0} s; load now {}",
        started.elapsed().as_secs_f64(),
        support::loadavg()
    );
    println!(
        "(b): timeToFull {}, horizon {}, --forecast-min-span {} --forecast-window {}, stream from {:.0}%; a/fork/topolvm: stream from {:.0} s before the 80% crossing",
        k.time_to_full, k.horizon, k.min_span, k.window, k.b_start * 100.0, k.lead
    );
    println!("trials (MiB/s, outcome, seconds from the stream's start):");
    for s in &searches {
        for t in &s.trials {
            println!(
                "  L={:<4} {:<32} {:>7.2} {:<8} start {:>5.1}% crossing {:>6.1} patch {:>6} {:<8} grown {:>6} full {:>6} peak {:>5.1}%",
                s.latency_text,
                s.config.label(),
                t.rate / mib,
                if t.survived { "survived" } else { "FULL" },
                t.start_percent,
                t.crossing,
                fmt_opt(t.patched),
                t.trigger.as_deref().unwrap_or("-"),
                fmt_opt(t.grown),
                fmt_opt(t.full),
                t.peak_percent,
            );
        }
    }
    println!(
        "{:<6} {:<32} {:>10} {:>10} {:>10} {:>10} {:>8}",
        "L", "configuration", "survives", "fails at", "predicted", "physical", "/physical"
    );
    for s in &searches {
        let best = s.best();
        println!(
            "{:<6} {:<32} {:>10} {:>10} {:>10.2} {:>10.2} {:>8}",
            s.latency_text,
            s.config.label(),
            best.map_or("< all".into(), |b| format!("{:.2}", b / mib)),
            s.lowest_failure()
                .map_or("> all".into(), |f| format!("{:.2}", f / mib)),
            s.predicted / mib,
            s.physical / mib,
            best.map_or("-".into(), |b| format!("{:.2}", b / s.physical)),
        );
    }
    println!("rates in MiB/s; physical = (1 - 0.8) x filesystem total / latency");
    for (text, _) in &k.latencies {
        let find = |c: Config| {
            searches
                .iter()
                .find(|s| s.config == c && &s.latency_text == text)
                .and_then(Search::best)
        };
        let phys = searches
            .iter()
            .find(|s| &s.latency_text == text)
            .map(|s| s.physical);
        if let (Some(a), Some(p)) = (find(Config::Defaults), phys) {
            println!(
                "L={text}: (a) / physical = {:.2} (goal >= 0.8: {})",
                a / p,
                if a / p >= 0.8 { "met" } else { "NOT met" }
            );
        }
        if let (Some(b), Some(p)) = (find(Config::Forecast), phys) {
            println!(
                "L={text}: (b) / physical = {:.2} (goal > 1: {})",
                b / p,
                if b > p { "met" } else { "NOT met" }
            );
        }
        for anchor in [Config::Fork, Config::Topolvm] {
            for own in [Config::Defaults, Config::Forecast] {
                if let (Some(x), Some(y)) = (find(own), find(anchor)) {
                    println!(
                        "L={text}: {} / {} = {:.2}",
                        own.label(),
                        anchor.label(),
                        x / y
                    );
                }
            }
        }
    }
    println!(
        "command: SURVIVAL_CONFIGS={} SURVIVAL_LATENCIES={} SURVIVAL_TRIALS={} SURVIVAL_PARALLEL={} SURVIVAL_FORECAST_MIN_SPAN={} SURVIVAL_FORECAST_WINDOW={} SURVIVAL_B_START_PERCENT={:.0} SURVIVAL_LEAD_SECONDS={} SURVIVAL_TIME_TO_FULL={} SURVIVAL_HORIZON={} cargo bench --bench survival",
        k.configs
            .iter()
            .map(|c| match c {
                Config::Defaults => "a",
                Config::Forecast => "b",
                Config::Fork => "fork",
                Config::Topolvm => "topolvm",
            })
            .collect::<Vec<_>>()
            .join(","),
        k.latencies
            .iter()
            .map(|(t, _)| t.as_str())
            .collect::<Vec<_>>()
            .join(","),
        k.trials,
        k.parallel,
        k.min_span,
        k.window,
        k.b_start * 100.0,
        k.lead,
        k.time_to_full,
        k.horizon
    );
    Ok(())
}
