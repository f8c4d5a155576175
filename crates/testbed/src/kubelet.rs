//! A kubelet stand-in: runs a process the way the kubelet runs a container
//! of a pod (docs/design.md#the-test-bed) — probed over HTTP with the
//! container's own probe settings, restarted when it exits or fails its
//! liveness probe, with the kubelet's crash-loop back-off.
//!
//! Semantics followed (Kubernetes pod lifecycle and probe documentation):
//!
//! - probes are `httpGet` against the pod IP and the container port (a
//!   named port resolves through the container's `ports`); a response
//!   200–399 within `timeoutSeconds` is a success, anything else (refused,
//!   timed out, 4xx/5xx) a failure; each probe runs every `periodSeconds`,
//!   first after `initialDelaySeconds`;
//! - with a `startupProbe`, liveness and readiness results count only once
//!   it succeeded; `failureThreshold` startup failures kill the container;
//! - `failureThreshold` consecutive liveness failures kill the container
//!   (SIGTERM, then SIGKILL after the termination grace period);
//! - readiness: not ready until the readiness probe succeeded
//!   `successThreshold` times in a row, not ready again after
//!   `failureThreshold` consecutive failures; a container without a
//!   readiness probe is ready as soon as it started (and passed its startup
//!   probe); never ready while not running;
//! - `restartPolicy: Always`: a container that exited or was killed is
//!   started again — the first time at once, then after 10 s, 20 s, 40 s, …
//!   capped at 5 min; the delay resets once a container ran 10 min.
//!
//! A [`Pod`] runs containers in the kubelet's order: each native sidecar (an
//! init container with `restartPolicy: Always`) is started and must be
//! `started` — running, past its startup probe, and still running when the
//! kubelet next looks (its pod lifecycle events are relisted every second) —
//! before the next init container or the main containers start; a sidecar
//! that keeps exiting blocks them. The pod is `Ready` when every main
//! container and every native sidecar is ready.
//!
//! On one machine every "pod" shares the network namespace, so a container
//! cannot listen on its declared `containerPort`; the launch maps declared
//! ports to the ports really used ([`ContainerLaunch::port_map`]).

use anyhow::{bail, Context, Result};
use nix::sys::signal::Signal;
use nix::unistd::Pid;
use serde_json::Value;
use std::collections::BTreeMap;
use std::ffi::OsString;
use std::net::{IpAddr, SocketAddr};
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::mpsc;

/// Where the chart's rendered sidecar container lives, relative to the workspace.
pub const CHART_SIDECAR_FILE: &str = "tests/packaging/sidecar-container.yaml";

/// `<workspace>/tests/packaging/sidecar-container.yaml`: the container the
/// Helm chart injects, as rendered (kept in sync with the chart elsewhere).
pub fn chart_sidecar_path() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .join(CHART_SIDECAR_FILE)
}

/// The port a probe targets.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ProbePort {
    /// A port number.
    Number(u16),
    /// The name of one of the container's `ports`.
    Name(String),
}

/// An `httpGet` probe with its timing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpProbe {
    /// `httpGet.path` (default `/`).
    pub path: String,
    /// `httpGet.port`.
    pub port: ProbePort,
    /// `initialDelaySeconds` (default 0).
    pub initial_delay: Duration,
    /// `periodSeconds` (default 10).
    pub period: Duration,
    /// `timeoutSeconds` (default 1).
    pub timeout: Duration,
    /// `successThreshold` (default 1).
    pub success_threshold: u32,
    /// `failureThreshold` (default 3).
    pub failure_threshold: u32,
}

/// One declared container port.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ContainerPort {
    /// `name`, if any.
    pub name: Option<String>,
    /// `containerPort`.
    pub container_port: u16,
}

/// What the kubelet needs of a container spec.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ContainerSpec {
    /// `name`.
    pub name: String,
    /// `ports`.
    pub ports: Vec<ContainerPort>,
    /// `livenessProbe`.
    pub liveness: Option<HttpProbe>,
    /// `readinessProbe`.
    pub readiness: Option<HttpProbe>,
    /// `startupProbe`.
    pub startup: Option<HttpProbe>,
}

impl ContainerSpec {
    /// Parse a container (YAML or JSON) as it appears in a pod spec.
    pub fn from_yaml(text: &str) -> Result<ContainerSpec> {
        let v: Value = serde_norway::from_str(text).context("parsing the container as YAML")?;
        let name = v["name"].as_str().unwrap_or("container").to_string();
        let mut ports = Vec::new();
        for p in v["ports"].as_array().into_iter().flatten() {
            let port = p["containerPort"]
                .as_u64()
                .and_then(|n| u16::try_from(n).ok())
                .with_context(|| {
                    format!("container {name}: a port without a valid containerPort: {p}")
                })?;
            ports.push(ContainerPort {
                name: p["name"].as_str().map(str::to_string),
                container_port: port,
            });
        }
        let probe = |key: &str| -> Result<Option<HttpProbe>> {
            let p = &v[key];
            if p.is_null() {
                return Ok(None);
            }
            parse_probe(p)
                .map(Some)
                .with_context(|| format!("container {name}: {key}"))
        };
        Ok(ContainerSpec {
            liveness: probe("livenessProbe")?,
            readiness: probe("readinessProbe")?,
            startup: probe("startupProbe")?,
            name,
            ports,
        })
    }

    /// The chart's sidecar container ([`chart_sidecar_path`]).
    pub fn chart_sidecar() -> Result<ContainerSpec> {
        let path = chart_sidecar_path();
        let text = std::fs::read_to_string(&path)
            .with_context(|| format!("reading {}", path.display()))?;
        ContainerSpec::from_yaml(&text).with_context(|| format!("in {}", path.display()))
    }

    /// The container port a probe targets.
    pub fn resolve_port(&self, port: &ProbePort) -> Result<u16> {
        match port {
            ProbePort::Number(n) => Ok(*n),
            ProbePort::Name(name) => self
                .ports
                .iter()
                .find(|p| p.name.as_deref() == Some(name))
                .map(|p| p.container_port)
                .with_context(|| format!("container {} has no port named {name:?}", self.name)),
        }
    }
}

fn parse_probe(p: &Value) -> Result<HttpProbe> {
    let get = &p["httpGet"];
    if !get.is_object() {
        bail!("only httpGet probes are supported, got {p}");
    }
    let port = match &get["port"] {
        Value::Number(n) => ProbePort::Number(
            n.as_u64()
                .and_then(|n| u16::try_from(n).ok())
                .with_context(|| format!("invalid probe port {n}"))?,
        ),
        Value::String(s) => match s.parse::<u16>() {
            Ok(n) => ProbePort::Number(n),
            Err(_) => ProbePort::Name(s.clone()),
        },
        other => bail!("invalid probe port {other}"),
    };
    let seconds = |key: &str, default: u64| -> Result<Duration> {
        match &p[key] {
            Value::Null => Ok(Duration::from_secs(default)),
            v => v
                .as_u64()
                .map(Duration::from_secs)
                .with_context(|| format!("{key} must be a non-negative integer, got {v}")),
        }
    };
    let count = |key: &str, default: u32| -> Result<u32> {
        match &p[key] {
            Value::Null => Ok(default),
            v => v
                .as_u64()
                .and_then(|n| u32::try_from(n).ok())
                .filter(|n| *n >= 1)
                .with_context(|| format!("{key} must be a positive integer, got {v}")),
        }
    };
    Ok(HttpProbe {
        path: get["path"].as_str().unwrap_or("/").to_string(),
        port,
        initial_delay: seconds("initialDelaySeconds", 0)?,
        period: seconds("periodSeconds", 10)?.max(Duration::from_secs(1)),
        timeout: seconds("timeoutSeconds", 1)?.max(Duration::from_secs(1)),
        success_threshold: count("successThreshold", 1)?,
        failure_threshold: count("failureThreshold", 3)?,
    })
}

/// Kubelet behaviour that is not part of the container spec.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KubeletConfig {
    /// First crash-loop back-off delay (kubelet: 10 s; the very first
    /// restart is immediate).
    pub backoff_base: Duration,
    /// Back-off cap (kubelet: 5 min).
    pub backoff_cap: Duration,
    /// A container that ran this long resets the back-off (kubelet: 10 min).
    pub backoff_reset_after: Duration,
    /// Time between SIGTERM and SIGKILL when the kubelet kills a container
    /// (the pod's `terminationGracePeriodSeconds`, default 30 s).
    pub termination_grace: Duration,
}

impl Default for KubeletConfig {
    fn default() -> Self {
        KubeletConfig {
            backoff_base: Duration::from_secs(10),
            backoff_cap: Duration::from_secs(300),
            backoff_reset_after: Duration::from_secs(600),
            termination_grace: Duration::from_secs(30),
        }
    }
}

/// The command a container runs (re-run on every restart).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ContainerCommand {
    /// Executable.
    pub program: PathBuf,
    /// Arguments.
    pub args: Vec<OsString>,
    /// Environment changes (`None` removes the variable).
    pub env: Vec<(OsString, Option<OsString>)>,
    /// Working directory.
    pub cwd: Option<PathBuf>,
    /// Run as this uid and gid (`runAsUser`/`runAsGroup`; needs root).
    pub user: Option<(u32, u32)>,
}

impl ContainerCommand {
    /// Run `program` without arguments.
    pub fn new(program: impl Into<PathBuf>) -> ContainerCommand {
        ContainerCommand {
            program: program.into(),
            args: Vec::new(),
            env: Vec::new(),
            cwd: None,
            user: None,
        }
    }

    /// Add an argument.
    pub fn arg(mut self, arg: impl Into<OsString>) -> ContainerCommand {
        self.args.push(arg.into());
        self
    }

    /// Program, arguments, environment and directory of `cmd`.
    pub fn from_command(cmd: &std::process::Command) -> ContainerCommand {
        ContainerCommand {
            program: PathBuf::from(cmd.get_program()),
            args: cmd.get_args().map(OsString::from).collect(),
            env: cmd
                .get_envs()
                .map(|(k, v)| (k.to_os_string(), v.map(OsString::from)))
                .collect(),
            cwd: cmd.get_current_dir().map(Path::to_path_buf),
            user: None,
        }
    }

    fn to_tokio(&self) -> tokio::process::Command {
        let mut cmd = tokio::process::Command::new(&self.program);
        cmd.args(&self.args);
        for (k, v) in &self.env {
            match v {
                Some(v) => cmd.env(k, v),
                None => cmd.env_remove(k),
            };
        }
        if let Some((uid, gid)) = self.user {
            cmd.uid(uid).gid(gid);
        }
        if let Some(dir) = &self.cwd {
            cmd.current_dir(dir);
        }
        cmd
    }
}

/// Everything needed to run one container.
#[derive(Debug, Clone)]
pub struct ContainerLaunch {
    /// A name for logs and errors (e.g. the pod name).
    pub name: String,
    /// What to run.
    pub command: ContainerCommand,
    /// Its probes and ports.
    pub spec: ContainerSpec,
    /// The pod IP the probes go to.
    pub ip: IpAddr,
    /// Declared container port → port the process really listens on.
    /// Ports not in the map are probed as declared.
    pub port_map: BTreeMap<u16, u16>,
    /// stdout and stderr of every run are appended here.
    pub log: PathBuf,
}

/// Why a container was restarted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RestartCause {
    /// The process exited by itself (or was killed by someone else).
    Exited {
        /// Exit code, when it exited.
        code: Option<i32>,
        /// Signal, when one ended it.
        signal: Option<i32>,
    },
    /// `failureThreshold` consecutive liveness failures; the kubelet killed it.
    LivenessProbe {
        /// The last failure.
        last_failure: String,
    },
    /// The startup probe failed `failureThreshold` times; the kubelet killed it.
    StartupProbe {
        /// The last failure.
        last_failure: String,
    },
    /// The process could not be started at all.
    StartFailed {
        /// Why.
        error: String,
    },
}

/// One restart of a container.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Restart {
    /// When the previous run ended.
    pub terminated_at: jiff::Timestamp,
    /// When the new run started.
    pub started_at: jiff::Timestamp,
    /// Why the previous run ended.
    pub cause: RestartCause,
    /// How long the previous run lasted.
    pub ran_for: Duration,
    /// The crash-loop back-off waited before this restart.
    pub backoff: Duration,
    /// Pid of the new run.
    pub pid: u32,
}

/// A change of the container's `Ready` state.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReadinessChange {
    /// When it changed.
    pub at: jiff::Timestamp,
    /// The new state.
    pub ready: bool,
    /// Why (probe result, start, termination).
    pub reason: String,
}

#[derive(Debug, Default)]
struct State {
    pid: Option<u32>,
    ready: bool,
    started: bool,
    runs: u32,
    restarts: Vec<Restart>,
    readiness: Vec<ReadinessChange>,
    stopped: bool,
    /// How the process ended when the pod was stopped for good.
    final_exit: Option<std::process::ExitStatus>,
}

#[derive(Debug)]
struct Shared {
    launch: ContainerLaunch,
    config: KubeletConfig,
    state: Mutex<State>,
    /// Readiness, for whoever mirrors it (e.g. into the Pod's conditions).
    ready_tx: tokio::sync::watch::Sender<bool>,
}

impl Shared {
    fn set_ready(&self, ready: bool, reason: &str) {
        let mut s = lock(&self.state);
        if s.ready != ready {
            s.ready = ready;
            s.readiness.push(ReadinessChange {
                at: jiff::Timestamp::now(),
                ready,
                reason: reason.to_string(),
            });
            self.ready_tx.send_replace(ready);
        }
    }

    fn probe_addr(&self, probe: &HttpProbe) -> Result<SocketAddr> {
        let declared = self.launch.spec.resolve_port(&probe.port)?;
        let port = self
            .launch
            .port_map
            .get(&declared)
            .copied()
            .unwrap_or(declared);
        Ok(SocketAddr::new(self.launch.ip, port))
    }
}

enum Control {
    /// The pod is deleted: SIGTERM, SIGKILL after the grace period.
    Stop,
    /// The node dies (or `kubectl delete pod --force --grace-period=0`):
    /// SIGKILL at once, no chance to clean up, no restart.
    Kill,
}

/// A container run by the kubelet stand-in; dropping it kills the process.
#[derive(Debug)]
pub struct Container {
    shared: Arc<Shared>,
    control: mpsc::UnboundedSender<Control>,
    task: tokio::task::AbortHandle,
}

impl Container {
    /// Start the container now and keep it running (on the current tokio runtime).
    pub fn start(launch: ContainerLaunch, config: KubeletConfig) -> Result<Container> {
        // Fail early on probes that can never work.
        for probe in [
            &launch.spec.liveness,
            &launch.spec.readiness,
            &launch.spec.startup,
        ]
        .into_iter()
        .flatten()
        {
            launch.spec.resolve_port(&probe.port)?;
        }
        std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&launch.log)
            .with_context(|| format!("opening {}", launch.log.display()))?;
        let shared = Arc::new(Shared {
            launch,
            config,
            state: Mutex::new(State::default()),
            ready_tx: tokio::sync::watch::channel(false).0,
        });
        let (tx, rx) = mpsc::unbounded_channel();
        let task = tokio::spawn(run(shared.clone(), rx)).abort_handle();
        Ok(Container {
            shared,
            control: tx,
            task,
        })
    }

    /// The launch settings.
    pub fn launch(&self) -> &ContainerLaunch {
        &self.shared.launch
    }

    /// Pid of the running process, `None` between runs or once stopped.
    pub fn pid(&self) -> Option<u32> {
        lock(&self.shared.state).pid
    }

    /// Restarts so far (Kubernetes' `restartCount`).
    pub fn restart_count(&self) -> u32 {
        lock(&self.shared.state).restarts.len() as u32
    }

    /// How the process exited when the pod was stopped for good (SIGTERM
    /// honoured within the grace period: its own exit status).
    pub fn final_exit(&self) -> Option<std::process::ExitStatus> {
        lock(&self.shared.state).final_exit
    }

    /// Every restart so far, with its cause.
    pub fn restarts(&self) -> Vec<Restart> {
        lock(&self.shared.state).restarts.clone()
    }

    /// Whether the container is running and past its startup probe (the
    /// kubelet's `started`).
    pub fn is_started(&self) -> bool {
        let s = lock(&self.shared.state);
        s.started && s.pid.is_some()
    }

    /// Whether the container is `Ready` now.
    pub fn is_ready(&self) -> bool {
        lock(&self.shared.state).ready
    }

    /// Follows the container's readiness (starts not ready).
    pub fn readiness_watch(&self) -> tokio::sync::watch::Receiver<bool> {
        self.shared.ready_tx.subscribe()
    }

    /// Every readiness change so far, in order (the state starts not ready).
    pub fn readiness_history(&self) -> Vec<ReadinessChange> {
        lock(&self.shared.state).readiness.clone()
    }

    /// The log file (stdout and stderr of every run).
    pub fn log_path(&self) -> &Path {
        &self.shared.launch.log
    }

    /// The log so far (empty if unreadable).
    pub fn logs(&self) -> String {
        std::fs::read_to_string(&self.shared.launch.log).unwrap_or_default()
    }

    /// Send `signal` to the running process (e.g. SIGKILL to crash it,
    /// SIGTERM to ask it to exit); the kubelet then restarts it.
    pub fn signal(&self, signal: Signal) -> Result<()> {
        let pid = self
            .pid()
            .with_context(|| format!("container {} is not running", self.shared.launch.name))?;
        nix::sys::signal::kill(Pid::from_raw(pid as i32), signal)
            .with_context(|| format!("sending {signal} to pid {pid}"))
    }

    /// SIGKILL the running process.
    pub fn kill(&self) -> Result<()> {
        self.signal(Signal::SIGKILL)
    }

    /// SIGTERM the running process.
    pub fn terminate(&self) -> Result<()> {
        self.signal(Signal::SIGTERM)
    }

    /// Stop for good, as when the pod is deleted: SIGTERM, SIGKILL after
    /// the grace period; no restart afterwards.
    pub async fn stop(&self) -> Result<()> {
        let _ = self.control.send(Control::Stop);
        let timeout = self.shared.config.termination_grace + Duration::from_secs(10);
        wait_for(timeout, "the container to stop", || {
            lock(&self.shared.state).stopped || self.task.is_finished()
        })
        .await
    }

    /// Stop for good without a grace period, as when the node dies: SIGKILL
    /// at once, no restart afterwards.
    pub async fn kill_for_good(&self) -> Result<()> {
        let _ = self.control.send(Control::Kill);
        wait_for(Duration::from_secs(10), "the container to die", || {
            lock(&self.shared.state).stopped || self.task.is_finished()
        })
        .await
    }

    /// Wait until at least `n` restarts happened.
    pub async fn wait_for_restarts(&self, n: u32, timeout: Duration) -> Result<()> {
        wait_for(timeout, &format!("{n} restart(s)"), || {
            self.restart_count() >= n
        })
        .await
    }

    /// Wait until the container's readiness is `ready`.
    pub async fn wait_ready(&self, ready: bool, timeout: Duration) -> Result<()> {
        wait_for(timeout, &format!("ready = {ready}"), || {
            self.is_ready() == ready
        })
        .await
    }

    /// Wait until a process runs (after a restart's back-off).
    pub async fn wait_running(&self, timeout: Duration) -> Result<u32> {
        wait_for(timeout, "a running process", || self.pid().is_some()).await?;
        self.pid().context("the process ended again")
    }
}

impl Drop for Container {
    fn drop(&mut self) {
        self.task.abort();
        // The aborted task drops its child with kill_on_drop, but the
        // process group may hold children of its own: end them all now.
        if let Some(pid) = lock(&self.shared.state).pid.take() {
            let _ = nix::sys::signal::killpg(Pid::from_raw(pid as i32), Signal::SIGKILL);
        }
    }
}

async fn wait_for(timeout: Duration, what: &str, mut done: impl FnMut() -> bool) -> Result<()> {
    let deadline = Instant::now() + timeout;
    while !done() {
        if Instant::now() > deadline {
            bail!("timed out after {timeout:?} waiting for {what}");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    Ok(())
}

/// How one run ended.
enum Ending {
    Terminated(RestartCause),
    Stopped,
}

async fn run(shared: Arc<Shared>, mut control: mpsc::UnboundedReceiver<Control>) {
    // None: the next restart is immediate (first crash, or after a reset).
    let mut backoff: Option<Duration> = None;
    let mut pending: Option<(jiff::Timestamp, RestartCause, Duration, Duration)> = None;
    loop {
        let started = Instant::now();
        let ending = match spawn(&shared) {
            Ok(mut child) => {
                let pid = child.id().unwrap_or(0);
                {
                    let mut s = lock(&shared.state);
                    s.pid = Some(pid);
                    s.runs += 1;
                    if let Some((terminated_at, cause, ran_for, waited)) = pending.take() {
                        s.restarts.push(Restart {
                            terminated_at,
                            started_at: jiff::Timestamp::now(),
                            cause,
                            ran_for,
                            backoff: waited,
                            pid,
                        });
                    }
                }
                let ending = supervise(&shared, &mut child, &mut control).await;
                lock(&shared.state).pid = None;
                ending
            }
            Err(e) => {
                // Nothing ran: the restart that follows is still counted.
                lock(&shared.state).runs += 1;
                Ending::Terminated(RestartCause::StartFailed {
                    error: format!("{e:#}"),
                })
            }
        };
        {
            let mut s = lock(&shared.state);
            s.started = false;
        }
        shared.set_ready(false, "container terminated");
        let cause = match ending {
            Ending::Stopped => break,
            Ending::Terminated(cause) => cause,
        };
        let ran_for = started.elapsed();
        if ran_for >= shared.config.backoff_reset_after {
            backoff = None;
        }
        let delay = backoff.unwrap_or(Duration::ZERO);
        backoff = Some(match backoff {
            None => shared.config.backoff_base,
            Some(d) => (d * 2).min(shared.config.backoff_cap),
        });
        tracing::info!(container = %shared.launch.name, ?cause, ?delay, "kubelet: restarting container");
        pending = Some((jiff::Timestamp::now(), cause, ran_for, delay));
        tokio::select! {
            _ = tokio::time::sleep(delay) => {}
            msg = control.recv() => match msg {
                Some(Control::Stop | Control::Kill) | None => break,
            },
        }
    }
    lock(&shared.state).stopped = true;
}

fn spawn(shared: &Shared) -> Result<tokio::process::Child> {
    let launch = &shared.launch;
    let out = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&launch.log)
        .with_context(|| format!("opening {}", launch.log.display()))?;
    let err = out
        .try_clone()
        .with_context(|| format!("duplicating {}", launch.log.display()))?;
    let mut cmd = launch.command.to_tokio();
    // Its own process group: a terminal's Ctrl-C reaches only the test.
    cmd.process_group(0)
        .stdin(Stdio::null())
        .stdout(out)
        .stderr(err)
        .kill_on_drop(true);
    cmd.spawn().with_context(|| {
        format!(
            "starting {} for container {}",
            launch.command.program.display(),
            launch.name
        )
    })
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum ProbeKind {
    Startup,
    Liveness,
    Readiness,
}

struct ProbeResult {
    kind: ProbeKind,
    outcome: std::result::Result<u16, String>,
}

/// Probe and watch one run until it ends.
async fn supervise(
    shared: &Arc<Shared>,
    child: &mut tokio::process::Child,
    control: &mut mpsc::UnboundedReceiver<Control>,
) -> Ending {
    let spec = &shared.launch.spec;
    let has_startup = spec.startup.is_some();
    lock(&shared.state).started = !has_startup;
    if !has_startup && spec.readiness.is_none() {
        shared.set_ready(true, "started (no readiness probe)");
    }
    let (tx, mut rx) = mpsc::unbounded_channel();
    let mut workers = tokio::task::JoinSet::new();
    for (kind, probe) in [
        (ProbeKind::Startup, &spec.startup),
        (ProbeKind::Liveness, &spec.liveness),
        (ProbeKind::Readiness, &spec.readiness),
    ] {
        let Some(probe) = probe.clone() else { continue };
        let addr = match shared.probe_addr(&probe) {
            Ok(a) => a,
            Err(e) => {
                tracing::warn!(error = %format!("{e:#}"), "kubelet: probe port unresolvable");
                continue;
            }
        };
        let tx = tx.clone();
        workers.spawn(async move {
            tokio::time::sleep(probe.initial_delay).await;
            let mut tick = tokio::time::interval(probe.period);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tick.tick().await;
                let outcome = http_get(addr, &probe.path, probe.timeout).await;
                if tx.send(ProbeResult { kind, outcome }).is_err() {
                    return;
                }
            }
        });
    }
    drop(tx);
    let (mut live_failures, mut ready_failures, mut ready_successes, mut startup_failures) =
        (0u32, 0u32, 0u32, 0u32);
    let ending = loop {
        tokio::select! {
            status = child.wait() => {
                let cause = match status {
                    Ok(s) => RestartCause::Exited { code: s.code(), signal: s.signal() },
                    Err(e) => {
                        tracing::warn!(error = %e, "kubelet: waiting for a container process failed");
                        RestartCause::Exited { code: None, signal: None }
                    }
                };
                break Ending::Terminated(cause);
            }
            Some(result) = rx.recv() => {
                let started = lock(&shared.state).started;
                let ok = matches!(result.outcome, Ok(code) if (200..400).contains(&code));
                let detail = match &result.outcome {
                    Ok(code) => format!("HTTP probe failed with statuscode: {code}"),
                    Err(e) => e.clone(),
                };
                match result.kind {
                    ProbeKind::Startup if !started => {
                        if ok {
                            lock(&shared.state).started = true;
                            if spec.readiness.is_none() {
                                shared.set_ready(true, "startup probe succeeded");
                            }
                        } else {
                            startup_failures += 1;
                            let threshold = spec.startup.as_ref().map_or(3, |p| p.failure_threshold);
                            if startup_failures >= threshold {
                                terminate(shared, child, shared.config.termination_grace).await;
                                break Ending::Terminated(RestartCause::StartupProbe { last_failure: detail });
                            }
                        }
                    }
                    ProbeKind::Startup => {}
                    _ if !started => {}
                    ProbeKind::Liveness => {
                        if ok {
                            live_failures = 0;
                        } else {
                            live_failures += 1;
                            let threshold = spec.liveness.as_ref().map_or(3, |p| p.failure_threshold);
                            if live_failures >= threshold {
                                terminate(shared, child, shared.config.termination_grace).await;
                                break Ending::Terminated(RestartCause::LivenessProbe { last_failure: detail });
                            }
                        }
                    }
                    ProbeKind::Readiness => {
                        let probe = spec.readiness.as_ref();
                        if ok {
                            ready_failures = 0;
                            ready_successes += 1;
                            if ready_successes >= probe.map_or(1, |p| p.success_threshold) {
                                shared.set_ready(true, "readiness probe succeeded");
                            }
                        } else {
                            ready_successes = 0;
                            ready_failures += 1;
                            if ready_failures >= probe.map_or(3, |p| p.failure_threshold) {
                                shared.set_ready(false, &format!("readiness probe failed: {detail}"));
                            }
                        }
                    }
                }
            }
            msg = control.recv() => match msg {
                Some(Control::Stop) | None => {
                    terminate(shared, child, shared.config.termination_grace).await;
                    break Ending::Stopped;
                }
                Some(Control::Kill) => {
                    terminate(shared, child, Duration::ZERO).await;
                    break Ending::Stopped;
                }
            },
        }
    };
    workers.shutdown().await;
    ending
}

/// The kubelet's kill: SIGTERM, then SIGKILL after the grace period (at
/// once when there is none).
async fn terminate(shared: &Shared, child: &mut tokio::process::Child, grace: Duration) {
    if let Some(pid) = child.id().filter(|_| !grace.is_zero()) {
        let _ = nix::sys::signal::kill(Pid::from_raw(pid as i32), Signal::SIGTERM);
    }
    let exited = if grace.is_zero() {
        None
    } else {
        tokio::time::timeout(grace, child.wait()).await.ok()
    };
    let status = match exited {
        Some(status) => status.ok(),
        None => {
            let _ = child.start_kill();
            child.wait().await.ok()
        }
    };
    lock(&shared.state).final_exit = status;
    // Whatever the process left in its group goes too, as with a container.
    if let Some(pid) = lock(&shared.state).pid {
        let _ = nix::sys::signal::killpg(Pid::from_raw(pid as i32), Signal::SIGKILL);
    }
}

/// The containers of one pod, in the kubelet's start order.
#[derive(Debug, Clone)]
pub struct PodSpec {
    /// A name for logs and errors.
    pub name: String,
    /// The pod's `initContainers`, run in order.
    pub init_containers: Vec<InitContainer>,
    /// The pod's `containers`.
    pub containers: Vec<ContainerLaunch>,
}

/// One of a pod's `initContainers`.
#[derive(Debug, Clone)]
pub enum InitContainer {
    /// A plain init container: must exit 0 before the next starts; a
    /// failure is retried with the crash-loop back-off (the pod's
    /// `restartPolicy: Always`, as CloudNativePG's instance pods have).
    RunToCompletion(ContainerLaunch),
    /// A native sidecar (`restartPolicy: Always`): started, and kept
    /// running, before the next starts.
    Sidecar(ContainerLaunch),
}

impl InitContainer {
    fn launch(&self) -> &ContainerLaunch {
        match self {
            InitContainer::RunToCompletion(l) | InitContainer::Sidecar(l) => l,
        }
    }
}

/// A change of the pod's `Ready` condition.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PodReadinessChange {
    /// When it changed.
    pub at: jiff::Timestamp,
    /// The new state.
    pub ready: bool,
}

#[derive(Debug, Default)]
struct PodState {
    /// Started long-running containers, sidecars first, by name.
    containers: Vec<(String, Arc<Container>)>,
    /// Init containers that ran to completion, by name, with their attempts.
    completed_init: BTreeMap<String, u32>,
    /// When each main container was first started, by name.
    main_started: BTreeMap<String, jiff::Timestamp>,
}

/// A pod run by the kubelet stand-in; dropping it kills its containers.
#[derive(Debug)]
pub struct Pod {
    spec: PodSpec,
    state: Arc<Mutex<PodState>>,
    task: tokio::task::AbortHandle,
}

/// How long a native sidecar must keep running before the kubelet counts it
/// `started` and moves on: the pod lifecycle event generator's relist period.
pub const KUBELET_RELIST_PERIOD: Duration = Duration::from_secs(1);

impl Pod {
    /// Starts the pod's containers in order, on the current tokio runtime.
    pub fn start(spec: PodSpec, config: KubeletConfig) -> Result<Pod> {
        let state = Arc::new(Mutex::new(PodState::default()));
        let task = tokio::spawn(run_pod(spec.clone(), config, state.clone())).abort_handle();
        Ok(Pod { spec, state, task })
    }

    /// The container `name`, once the kubelet started it.
    pub fn container(&self, name: &str) -> Option<Arc<Container>> {
        lock(&self.state)
            .containers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, c)| c.clone())
    }

    /// When main container `name` was first started (`None`: not yet).
    pub fn main_started_at(&self, name: &str) -> Option<jiff::Timestamp> {
        lock(&self.state).main_started.get(name).copied()
    }

    fn expected_containers(&self) -> usize {
        let sidecars = self
            .spec
            .init_containers
            .iter()
            .filter(|c| matches!(c, InitContainer::Sidecar(_)))
            .count();
        sidecars + self.spec.containers.len()
    }

    /// How many attempts init container `name` took to exit 0 (`None`: not
    /// completed yet).
    pub fn init_completed(&self, name: &str) -> Option<u32> {
        lock(&self.state).completed_init.get(name).copied()
    }

    /// The pod's `Ready` condition now: every container started and ready.
    pub fn is_ready(&self) -> bool {
        let s = lock(&self.state);
        s.containers.len() == self.expected_containers()
            && s.containers.iter().all(|(_, c)| c.is_ready())
    }

    /// Every change of the pod's `Ready` condition so far, merged from the
    /// containers' own readiness changes, so no window is too short to see.
    pub fn readiness_history(&self) -> Vec<PodReadinessChange> {
        let s = lock(&self.state);
        let mut changes: Vec<(jiff::Timestamp, usize, bool)> = s
            .containers
            .iter()
            .enumerate()
            .flat_map(|(i, (_, c))| {
                c.readiness_history()
                    .into_iter()
                    .map(move |r| (r.at, i, r.ready))
            })
            .collect();
        changes.sort_by_key(|(at, _, _)| *at);
        let mut ready = vec![false; self.expected_containers()];
        let mut pod_ready = false;
        let mut history = Vec::new();
        for (at, i, state) in changes {
            ready[i] = state;
            let now = ready.iter().all(|r| *r);
            if now != pod_ready {
                pod_ready = now;
                history.push(PodReadinessChange { at, ready: now });
            }
        }
        history
    }

    /// Waits until every main container has started.
    pub async fn wait_main_started(&self, timeout: Duration) -> Result<()> {
        let names: Vec<String> = self
            .spec
            .containers
            .iter()
            .map(|c| c.name.clone())
            .collect();
        wait_for(timeout, "the main containers to start", || {
            let s = lock(&self.state);
            names.iter().all(|n| s.main_started.contains_key(n))
        })
        .await
    }

    /// Waits until the pod's `Ready` condition is `ready`.
    pub async fn wait_ready(&self, ready: bool, timeout: Duration) -> Result<()> {
        wait_for(
            timeout,
            &format!("pod {} ready = {ready}", self.spec.name),
            || self.is_ready() == ready,
        )
        .await
    }

    /// Deletes the pod: every container stopped (main containers first,
    /// then the sidecars in reverse order, as the kubelet does).
    pub async fn stop(&self) -> Result<()> {
        self.task.abort();
        let containers: Vec<Arc<Container>> = lock(&self.state)
            .containers
            .iter()
            .rev()
            .map(|(_, c)| c.clone())
            .collect();
        for c in containers {
            c.stop().await?;
        }
        Ok(())
    }
}

impl Drop for Pod {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn run_pod(spec: PodSpec, config: KubeletConfig, state: Arc<Mutex<PodState>>) {
    for init in &spec.init_containers {
        let launch = init.launch();
        match init {
            InitContainer::RunToCompletion(launch) => {
                let attempts = run_to_completion(&spec.name, launch, &config).await;
                lock(&state)
                    .completed_init
                    .insert(launch.name.clone(), attempts);
                continue;
            }
            InitContainer::Sidecar(_) => {}
        }
        let container = match Container::start(launch.clone(), config.clone()) {
            Ok(c) => Arc::new(c),
            Err(e) => {
                tracing::warn!(pod = %spec.name, error = %format!("{e:#}"), "kubelet: a sidecar cannot start");
                return;
            }
        };
        lock(&state)
            .containers
            .push((launch.name.clone(), container.clone()));
        // Started: running (and past its startup probe) at two looks one
        // relist apart, so a sidecar that exits at once never counts.
        loop {
            if container.is_started() {
                let run = container.pid();
                tokio::time::sleep(KUBELET_RELIST_PERIOD).await;
                if container.is_started() && container.pid() == run {
                    break;
                }
            } else {
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    }
    for main in &spec.containers {
        match Container::start(main.clone(), config.clone()) {
            Ok(c) => {
                let mut s = lock(&state);
                s.containers.push((main.name.clone(), Arc::new(c)));
                s.main_started
                    .insert(main.name.clone(), jiff::Timestamp::now());
            }
            Err(e) => {
                tracing::warn!(pod = %spec.name, error = %format!("{e:#}"), "kubelet: a container cannot start");
                return;
            }
        }
    }
}

/// Runs a plain init container until it exits 0, with the crash-loop
/// back-off between failed attempts; the number of attempts.
async fn run_to_completion(pod: &str, launch: &ContainerLaunch, config: &KubeletConfig) -> u32 {
    let mut attempts = 0;
    let mut delay = Duration::ZERO;
    loop {
        attempts += 1;
        tokio::time::sleep(delay).await;
        delay = if delay.is_zero() {
            config.backoff_base
        } else {
            (delay * 2).min(config.backoff_cap)
        };
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&launch.log);
        let mut cmd = launch.command.to_tokio();
        if let Ok(log) = log.and_then(|f| Ok((f.try_clone()?, f))) {
            cmd.stdout(log.0).stderr(log.1);
        }
        cmd.stdin(std::process::Stdio::null()).kill_on_drop(true);
        match cmd.status().await {
            Ok(status) if status.success() => return attempts,
            Ok(status) => {
                tracing::info!(pod, container = %launch.name, %status, "kubelet: init container failed; retrying");
            }
            Err(e) => {
                tracing::warn!(pod, container = %launch.name, error = %e, "kubelet: init container cannot start; retrying");
            }
        }
    }
}

/// One HTTP GET as the kubelet's prober sends it; the status code, or why
/// there is none (refused, timed out, garbled).
pub async fn http_get(
    addr: SocketAddr,
    path: &str,
    timeout: Duration,
) -> std::result::Result<u16, String> {
    let request = async {
        let mut stream = tokio::net::TcpStream::connect(addr)
            .await
            .map_err(|e| format!("Get \"http://{addr}{path}\": {e}"))?;
        let text = format!(
            "GET {path} HTTP/1.1\r\nHost: {addr}\r\nUser-Agent: kube-probe/1.36\r\n\
             Accept: */*\r\nConnection: close\r\n\r\n"
        );
        stream
            .write_all(text.as_bytes())
            .await
            .map_err(|e| format!("writing the probe request: {e}"))?;
        let mut buf = Vec::new();
        let mut chunk = [0u8; 512];
        while !buf.windows(2).any(|w| w == b"\r\n") && buf.len() < 4096 {
            let n = stream
                .read(&mut chunk)
                .await
                .map_err(|e| format!("reading the probe response: {e}"))?;
            if n == 0 {
                break;
            }
            buf.extend_from_slice(&chunk[..n]);
        }
        let line = String::from_utf8_lossy(&buf);
        let code = line
            .split_whitespace()
            .nth(1)
            .and_then(|c| c.parse::<u16>().ok())
            .ok_or_else(|| format!("malformed HTTP response: {:?}", line.lines().next()))?;
        Ok(code)
    };
    match tokio::time::timeout(timeout, request).await {
        Ok(result) => result,
        Err(_) => Err(format!(
            "Get \"http://{addr}{path}\": context deadline exceeded (Client.Timeout exceeded while awaiting headers)"
        )),
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_chart_sidecar_parses_with_its_probe_settings() {
        let spec = ContainerSpec::chart_sidecar().unwrap();
        let live = spec
            .liveness
            .clone()
            .expect("the chart has a liveness probe");
        assert_eq!(live.path, "/healthz");
        assert!(live.failure_threshold >= 1);
        assert!(spec.resolve_port(&live.port).is_ok());
    }

    #[test]
    fn probes_take_kubernetes_defaults() {
        let spec = ContainerSpec::from_yaml(
            "name: c\nports: [{name: web, containerPort: 8080}]\n\
             readinessProbe: {httpGet: {port: web}}\n\
             livenessProbe: {httpGet: {path: /h, port: 9000}, periodSeconds: 2, failureThreshold: 5}\n",
        )
        .unwrap();
        let r = spec.readiness.unwrap();
        assert_eq!(
            (
                r.path.as_str(),
                r.period,
                r.timeout,
                r.failure_threshold,
                r.success_threshold
            ),
            ("/", Duration::from_secs(10), Duration::from_secs(1), 3, 1)
        );
        assert_eq!(spec.ports[0].container_port, 8080);
        let l = spec.liveness.unwrap();
        assert_eq!(
            (l.port, l.period, l.failure_threshold),
            (ProbePort::Number(9000), Duration::from_secs(2), 5)
        );
        assert!(spec.startup.is_none());
        assert!(
            ContainerSpec::from_yaml("name: c\nlivenessProbe: {exec: {command: [true]}}").is_err()
        );
    }
}
