//! Helpers shared by the process benchmarks (`reaction`, `scale`,
//! `survival`): the binary under test, the product's default timings,
//! `/proc` readings, percentiles, the PVC watch that times patches, and the
//! sandbox's request accounting.
//!
//! Not a bench target of its own (Cargo only discovers `benches/*.rs`);
//! each bench that needs it says `mod support;`.

#![allow(dead_code)]

use anyhow::{bail, Context, Result};
use cnpg_autoresize::api::quantity::Quantity;
use cnpg_testbed::scenario::ManagerOptions;
use futures::StreamExt;
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::PersistentVolumeClaim;
use kube::runtime::{watcher, WatchStreamExt};
use kube::Api;
use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::str::FromStr;
use std::time::{Duration, Instant};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

pub const MIB: u64 = 1 << 20;
pub const GIB: u64 = 1 << 30;

/// The Role the Helm chart renders for the manager.
pub const MANAGER_ROLE: &str = include_str!("../../tests/packaging/manager-role.yaml");

/// Creates the AutoResizePolicy `name` with `spec` (its CRD registered).
pub async fn create_policy(
    client: &kube::Client,
    namespace: &str,
    name: &str,
    spec: serde_json::Value,
) -> Result<()> {
    use kube::api::{ApiResource, DynamicObject, GroupVersionKind, PostParams};
    let gvk = GroupVersionKind::gvk("autoresize.cnpg.io", "v1alpha1", "AutoResizePolicy");
    let api: Api<DynamicObject> = Api::namespaced_with(
        client.clone(),
        namespace,
        &ApiResource::from_gvk_with_plural(&gvk, "autoresizepolicies"),
    );
    let policy: DynamicObject = serde_json::from_value(serde_json::json!({
        "apiVersion": "autoresize.cnpg.io/v1alpha1", "kind": "AutoResizePolicy",
        "metadata": {"name": name, "namespace": namespace},
        "spec": spec,
    }))?;
    api.create(&PostParams::default(), &policy)
        .await
        .context("creating the AutoResizePolicy")?;
    Ok(())
}

/// The AutoResizePolicy CRD the chart installs, relative to the workspace.
pub const POLICY_CRD_FILE: &str =
    "charts/cnpg-autoresize/crds/autoresize.cnpg.io_autoresizepolicies.yaml";

/// The binary under test: `CNPG_AUTORESIZE_BIN`, else the one Cargo built
/// with the bench (same profile).
pub fn binary() -> PathBuf {
    std::env::var_os("CNPG_AUTORESIZE_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_BIN_EXE_cnpg-autoresize")))
}

/// An environment knob, or its default when unset or unparsable.
pub fn env_or<T: FromStr>(name: &str, default: T) -> T {
    std::env::var(name)
        .ok()
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(default)
}

/// A duration knob (`1s`, `500ms`, `2m`).
pub fn env_duration(name: &str, default: &str) -> Result<Duration> {
    let text = std::env::var(name).unwrap_or_else(|_| default.to_string());
    parse_duration(&text).with_context(|| format!("{name}={text:?}"))
}

pub fn parse_duration(text: &str) -> Result<Duration> {
    let d: jiff::SignedDuration = text
        .trim()
        .parse()
        .with_context(|| format!("duration {text:?}"))?;
    Duration::try_from(d).with_context(|| format!("duration {text:?}"))
}

/// The product's defaults (`cnpg-autoresize run --help`), log level `info`.
pub fn product_options() -> ManagerOptions {
    ManagerOptions {
        probe_interval: "1s".into(),
        wal_interval: "10s".into(),
        slot_query_timeout: "5s".into(),
        pg_timeout: "5s".into(),
        lease_duration: "15s".into(),
        renew_interval: "5s".into(),
        log_level: "info".into(),
        ..ManagerOptions::default()
    }
}

/// The AutoResizePolicy CRD as the chart ships it (read at run time, so the
/// benches compile without it); generated from the types when the file is
/// not there.
pub fn policy_crd() -> Result<String> {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(POLICY_CRD_FILE);
    match std::fs::read_to_string(&path) {
        Ok(text) => Ok(text),
        Err(_) => cnpg_autoresize::api::crd::policy_crd_yaml()
            .context("generating the AutoResizePolicy CRD (the chart's file is missing)"),
    }
}

// ---- /proc ----------------------------------------------------------------

pub fn clock_ticks() -> f64 {
    std::process::Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(100.0)
}

/// utime + stime of `pid` (all its threads, dead ones included), in clock ticks.
pub fn cpu_ticks(pid: u32) -> Result<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .with_context(|| format!("reading /proc/{pid}/stat"))?;
    // Fields after "(comm)": state is field 3, utime 14, stime 15.
    let rest = stat.rsplit_once(')').context("malformed stat")?.1;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let utime: u64 = fields.get(11).context("no utime")?.parse()?;
    let stime: u64 = fields.get(12).context("no stime")?.parse()?;
    Ok(utime + stime)
}

/// Nanoseconds on CPU of `pid`'s live threads (`/proc/<pid>/task/*/schedstat`):
/// finer than clock ticks, for windows where a manager uses a few ticks.
pub fn cpu_nanos(pid: u32) -> Result<u64> {
    let mut total = 0u64;
    for entry in std::fs::read_dir(format!("/proc/{pid}/task"))? {
        let path = entry?.path().join("schedstat");
        if let Ok(text) = std::fs::read_to_string(&path) {
            total += text
                .split_whitespace()
                .next()
                .and_then(|v| v.parse::<u64>().ok())
                .unwrap_or(0);
        }
    }
    Ok(total)
}

/// CPU use of a set of processes between two readings.
#[derive(Clone, Debug)]
pub struct CpuReading {
    at: Instant,
    ticks: Vec<u64>,
    nanos: Vec<u64>,
}

impl CpuReading {
    pub fn take(pids: &[u32]) -> Result<CpuReading> {
        Ok(CpuReading {
            at: Instant::now(),
            ticks: pids.iter().map(|p| cpu_ticks(*p)).collect::<Result<_>>()?,
            nanos: pids.iter().map(|p| cpu_nanos(*p)).collect::<Result<_>>()?,
        })
    }

    /// Per process: % of one core from clock ticks, and from schedstat.
    pub fn percent_since(&self, earlier: &CpuReading) -> Vec<(f64, f64)> {
        let wall = (self.at - earlier.at).as_secs_f64().max(1e-9);
        let hz = clock_ticks();
        self.ticks
            .iter()
            .zip(&earlier.ticks)
            .zip(self.nanos.iter().zip(&earlier.nanos))
            .map(|((t1, t0), (n1, n0))| {
                (
                    t1.saturating_sub(*t0) as f64 / hz / wall * 100.0,
                    n1.saturating_sub(*n0) as f64 / 1e9 / wall * 100.0,
                )
            })
            .collect()
    }

    pub fn wall(&self, earlier: &CpuReading) -> Duration {
        self.at - earlier.at
    }
}

/// VmRSS of `pid`, in KiB.
pub fn rss_kib(pid: u32) -> Result<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))
        .with_context(|| format!("reading /proc/{pid}/status"))?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .context("no VmRSS")
}

/// `VmHWM` (the peak resident set since the process started) in KiB.
pub fn peak_rss_kib(pid: u32) -> Result<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))
        .with_context(|| format!("reading /proc/{pid}/status"))?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .context("no VmHWM")
}

/// `MemAvailable` of `/proc/meminfo`, in bytes.
pub fn mem_available() -> Result<u64> {
    let text = std::fs::read_to_string("/proc/meminfo")?;
    let kib: u64 = text
        .lines()
        .find_map(|l| l.strip_prefix("MemAvailable:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .context("no MemAvailable")?;
    Ok(kib * 1024)
}

/// The first three fields of `/proc/loadavg`.
pub fn loadavg() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|_| "?".into())
}

/// One line about the machine: CPUs, RAM, kernel, load.
pub fn machine() -> String {
    let cpus = std::thread::available_parallelism().map_or(0, |n| n.get());
    let model = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|t| {
            t.lines()
                .find_map(|l| l.strip_prefix("model name"))
                .map(|l| l.trim_start_matches([' ', '\t', ':']).to_string())
        })
        .unwrap_or_default();
    let mem = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|t| {
            t.lines()
                .find_map(|l| l.strip_prefix("MemTotal:"))
                .and_then(|v| v.split_whitespace().next())
                .and_then(|v| v.parse::<u64>().ok())
        })
        .map_or(0.0, |kib| kib as f64 / 1024.0 / 1024.0);
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease")
        .map(|s| s.trim().to_string())
        .unwrap_or_default();
    format!(
        "{cpus} CPUs ({model}), {mem:.1} GiB RAM, Linux {kernel}, load {}",
        loadavg()
    )
}

// ---- statistics -------------------------------------------------------------

/// Nearest-rank percentile of sorted values (p in 0..=100).
pub fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

#[derive(Clone, Copy, Debug)]
pub struct Summary {
    pub n: usize,
    pub min: f64,
    pub p50: f64,
    pub p90: f64,
    pub p99: f64,
    pub max: f64,
}

/// min, median (mean of the middle two for an even count), p90, p99, max.
pub fn summary(values: &[f64]) -> Summary {
    let mut v = values.to_vec();
    v.sort_by(f64::total_cmp);
    let n = v.len();
    if n == 0 {
        return Summary {
            n,
            min: f64::NAN,
            p50: f64::NAN,
            p90: f64::NAN,
            p99: f64::NAN,
            max: f64::NAN,
        };
    }
    let p50 = if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    };
    Summary {
        n,
        min: v[0],
        p50,
        p90: percentile(&v, 90.0),
        p99: percentile(&v, 99.0),
        max: v[n - 1],
    }
}

pub fn median(values: &[f64]) -> f64 {
    summary(values).p50
}

pub fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

// ---- Kubernetes -------------------------------------------------------------

/// A PVC's `spec.resources.requests.storage`, in bytes.
pub fn request_of(pvc: &PersistentVolumeClaim) -> Option<u64> {
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

/// A watch-observed change of a PVC's request: (pvc, bytes, when seen).
pub type RequestChange = (String, u64, Instant);

/// Watches the PVCs of `api` and reports every change of a request (the
/// initial list included), stamped when the event arrived.
pub struct RequestWatch {
    pub changes: mpsc::UnboundedReceiver<RequestChange>,
    task: JoinHandle<()>,
}

impl Drop for RequestWatch {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl RequestWatch {
    pub fn start(api: Api<PersistentVolumeClaim>) -> RequestWatch {
        let (tx, changes) = mpsc::unbounded_channel();
        let task = tokio::spawn(async move {
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
        RequestWatch { changes, task }
    }

    /// Forgets what arrived so far.
    pub fn drain(&mut self) {
        while self.changes.try_recv().is_ok() {}
    }
}

/// The holder of the Lease `cnpg-autoresize-<cluster>`, if any.
pub async fn lease_holder(client: &kube::Client, namespace: &str, cluster: &str) -> Option<String> {
    let api: Api<Lease> = Api::namespaced(client.clone(), namespace);
    let lease = api
        .get_opt(&format!("cnpg-autoresize-{cluster}"))
        .await
        .ok()??;
    lease.spec?.holder_identity.filter(|h| !h.is_empty())
}

/// Waits until every data PVC of `cluster` requests the same size (size
/// parity, docs/reference/decision.md#1-size-parity: a resize grows the
/// cluster's other data PVCs right after) and returns it.
pub async fn wait_parity(
    api: &Api<PersistentVolumeClaim>,
    cluster: &str,
    timeout: Duration,
) -> Result<u64> {
    let selector = format!("cnpg.io/cluster={cluster},cnpg.io/pvcRole=PG_DATA");
    let deadline = Instant::now() + timeout;
    loop {
        let list = api
            .list(&kube::api::ListParams::default().labels(&selector))
            .await?;
        let sizes: Vec<u64> = list.items.iter().filter_map(request_of).collect();
        let (lo, hi) = (sizes.iter().min(), sizes.iter().max());
        if let (Some(lo), Some(hi)) = (lo, hi) {
            if lo == hi && sizes.len() == list.items.len() {
                return Ok(*hi);
            }
        }
        if Instant::now() > deadline {
            bail!("data PVCs of {cluster} not at one size after {timeout:?}: {sizes:?}");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Whether `GET url` answers 2xx within 2 s.
pub async fn http_ok(http: &reqwest::Client, url: &str) -> bool {
    http.get(url)
        .timeout(Duration::from_secs(2))
        .send()
        .await
        .is_ok_and(|r| r.status().is_success())
}

/// The leader's published decision for `pvc` of `pod`: (reason, currentSize).
pub async fn decision_of(
    http: &reqwest::Client,
    leader_url: &str,
    pod: &str,
    pvc: &str,
) -> Option<(String, String)> {
    let feed: serde_json::Value = http
        .get(leader_url)
        .query(&[("instance", pod)])
        .timeout(Duration::from_secs(2))
        .send()
        .await
        .ok()?
        .json()
        .await
        .ok()?;
    feed["instances"][pod]["volumes"]
        .as_array()?
        .iter()
        .find(|v| v["pvc"] == pvc)
        .map(|v| {
            (
                v["reason"].as_str().unwrap_or("").to_string(),
                v["currentSize"].as_str().unwrap_or("").to_string(),
            )
        })
}

/// Waits until the leader (`/v1/decisions` at `leader_url`) decides
/// `not_triggered` for `pvc` at size `size`.
pub async fn wait_not_triggered(
    http: &reqwest::Client,
    leader_url: &str,
    pod: &str,
    pvc: &str,
    size: &str,
    timeout: Duration,
) -> Result<()> {
    let deadline = Instant::now() + timeout;
    loop {
        let seen = decision_of(http, leader_url, pod, pvc).await;
        if seen
            .as_ref()
            .is_some_and(|(r, s)| r == "not_triggered" && s == size)
        {
            return Ok(());
        }
        if Instant::now() > deadline {
            bail!("{pvc} not quiet at {size} after {timeout:?}: last decision {seen:?}");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

// ---- request accounting ---------------------------------------------------------

/// Requests of one group of rows.
#[derive(Clone, Debug, Default)]
pub struct Tally {
    pub requests: u64,
    pub watch_events: u64,
    pub bookmarks: u64,
    /// (verb, resource, code) -> count.
    pub by_kind: BTreeMap<(String, String, u16), u64>,
}

impl Tally {
    pub fn add(&mut self, row: &kube_sandbox::RequestCount) {
        self.requests += row.count;
        self.watch_events += row.watch_events;
        self.bookmarks += row.watch_bookmarks;
        if row.count > 0 {
            *self
                .by_kind
                .entry((row.verb.clone(), row.resource.clone(), row.code))
                .or_default() += row.count;
        }
    }

    pub fn code(&self, code: u16) -> u64 {
        self.by_kind
            .iter()
            .filter(|((_, _, c), _)| *c == code)
            .map(|(_, n)| n)
            .sum()
    }

    pub fn kind(&self, verb: &str, resource: &str) -> u64 {
        self.by_kind
            .iter()
            .filter(|((v, r, _), _)| v == verb && r == resource)
            .map(|(_, n)| n)
            .sum()
    }

    /// `verb resource code: n (x/s)` lines, largest first.
    pub fn lines(&self, seconds: f64) -> Vec<String> {
        let mut rows: Vec<_> = self.by_kind.iter().collect();
        rows.sort_by(|a, b| b.1.cmp(a.1).then(a.0.cmp(b.0)));
        rows.into_iter()
            .map(|((verb, resource, code), n)| {
                format!(
                    "{verb:<7} {resource:<28} {code:>3}: {n:>6}  ({:.3}/s)",
                    *n as f64 / seconds
                )
            })
            .collect()
    }
}

/// The pod named in a manager's User-Agent: `cnpg-autoresize/<v> (pod <name>)`.
pub fn pod_of_user_agent(agent: &str) -> Option<&str> {
    agent
        .strip_prefix("cnpg-autoresize/")?
        .split_once("(pod ")?
        .1
        .strip_suffix(')')
}

/// Sums the rows whose identity passes `identity`, per pod (from the User-Agent).
pub fn tally_by_pod(
    rows: &[kube_sandbox::RequestCount],
    identity: impl Fn(&str) -> bool,
) -> BTreeMap<String, Tally> {
    let mut out: BTreeMap<String, Tally> = BTreeMap::new();
    for row in rows.iter().filter(|r| identity(&r.identity)) {
        let pod = pod_of_user_agent(&row.user_agent)
            .map(str::to_string)
            .unwrap_or_else(|| format!("(user agent {:?})", row.user_agent));
        out.entry(pod).or_default().add(row);
    }
    out
}

/// Sums the rows whose identity passes `identity`.
pub fn tally(rows: &[kube_sandbox::RequestCount], identity: impl Fn(&str) -> bool) -> Tally {
    let mut out = Tally::default();
    for row in rows.iter().filter(|r| identity(&r.identity)) {
        out.add(row);
    }
    out
}
