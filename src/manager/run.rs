//! `cnpg-autoresize run`: the in-pod manager. Flags with environment
//! fallbacks; everything is checked before anything starts. A manager that
//! cannot work exits (2) only when a person runs it on a terminal; in a pod
//! it stays up inert instead: a native sidecar that exits keeps PostgreSQL
//! from starting, and out of its Service (docs/reference/operations.md#when-the-manager-is-inert).

use super::cli::{Cli, Command};
use super::http::{serve, HttpState};
use super::logging::{self, LogFormat};
use crate::actors::disk_probe::{DiskProbe, ProbeSettings, ProbeTarget};
use crate::actors::follower::Follower;
use crate::actors::leader::{Fence, LeaderActor, LeaderSettings, Leadership, Release};
use crate::actors::planner::feed::DecisionFeed;
use crate::actors::planner::{Planner, PlannerSettings};
use crate::actors::preflight::Preflight;
use crate::actors::problems::{Problem, Problems, Source, REPEAT_EVERY};
use crate::actors::status::{LeaderHints, StatusPublisher};
use crate::actors::supervision::{self, supervise, Liveness};
use crate::actors::wal_health::{WalHealthActor, WalHealthSettings};
use crate::api::cluster::VolumeType;
use crate::engine::EngineSettings;
use crate::kube_api::ApiClock;
use crate::metrics::Metrics;
use clap::{Args, CommandFactory, FromArgMatches, Parser};
use std::ffi::OsString;
use std::io::IsTerminal;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;

pub const VERSION: &str = env!("CARGO_PKG_VERSION");

#[derive(Clone, Debug, Args)]
pub struct RunArgs {
    /// Kubeconfig file; absent = the pod's in-cluster service account.
    #[arg(long, env = "KUBECONFIG")]
    pub kubeconfig: Option<PathBuf>,
    /// Namespace of the cluster (default: the pod's, or the kubeconfig's).
    #[arg(long, short = 'n', env = "POD_NAMESPACE")]
    pub namespace: Option<String>,
    /// Name of the CNPG Cluster (the pod label cnpg.io/cluster).
    #[arg(long, env = "CLUSTER_NAME")]
    pub cluster: Option<String>,
    /// This instance's pod name.
    #[arg(long, env = "POD_NAME")]
    pub pod_name: Option<String>,
    /// Mount path of the data volume.
    #[arg(
        long,
        env = "AUTORESIZE_DATA_PATH",
        default_value = "/var/lib/postgresql/data"
    )]
    pub data_path: PathBuf,
    /// Mount path of the WAL volume (absent = no separate WAL volume).
    #[arg(long, env = "AUTORESIZE_WAL_PATH")]
    pub wal_path: Option<PathBuf>,
    /// A tablespace volume, NAME=PATH (repeatable).
    #[arg(
        long = "tablespace",
        value_name = "NAME=PATH",
        env = "AUTORESIZE_TABLESPACES",
        value_delimiter = ','
    )]
    pub tablespaces: Vec<String>,
    /// libpq-style connection string (default: from PGHOST, PGPORT, PGUSER, PGPASSWORD, PGDATABASE).
    #[arg(long, env = "AUTORESIZE_PG_DSN", hide_env_values = true)]
    pub pg_dsn: Option<String>,
    /// Address of the metrics, health and status endpoint.
    #[arg(long, env = "AUTORESIZE_HTTP_ADDR", default_value = "0.0.0.0:9188")]
    pub http_addr: SocketAddr,
    /// How often volumes are measured (faster near the trigger).
    #[arg(long, env = "AUTORESIZE_PROBE_INTERVAL", default_value = "1s", value_parser = parse_duration)]
    pub probe_interval: Duration,
    /// How often WAL health is checked.
    #[arg(long, env = "AUTORESIZE_WAL_INTERVAL", default_value = "10s", value_parser = parse_duration)]
    pub wal_interval: Duration,
    /// Timeout of the replication slot query.
    #[arg(long, env = "AUTORESIZE_SLOT_QUERY_TIMEOUT", default_value = "5s", value_parser = parse_duration)]
    pub slot_query_timeout: Duration,
    /// Timeout of connecting to PostgreSQL, and of each other query.
    #[arg(long, env = "AUTORESIZE_PG_TIMEOUT", default_value = "5s", value_parser = parse_duration)]
    pub pg_timeout: Duration,
    /// Lease duration for leader election.
    #[arg(long, env = "AUTORESIZE_LEASE_DURATION", default_value = "15s", value_parser = parse_duration)]
    pub lease_duration: Duration,
    /// How often the leader renews its lease.
    #[arg(long, env = "AUTORESIZE_RENEW_INTERVAL", default_value = "5s", value_parser = parse_duration)]
    pub renew_interval: Duration,
    /// A resize in flight longer than this is reported stuck.
    #[arg(long, env = "AUTORESIZE_STUCK_RESIZE_AFTER", default_value = "10m", value_parser = parse_duration)]
    pub stuck_resize_after: Duration,
    /// How long a primary's CloudNativePG HA slot stays exempt from the slot
    /// check after the instance it names lost its pod.
    #[arg(long, env = "AUTORESIZE_HA_SLOT_GRACE", default_value = "30m", value_parser = parse_duration)]
    pub ha_slot_grace: Duration,
    /// Log format.
    #[arg(long, env = "AUTORESIZE_LOG_FORMAT", value_enum, default_value_t = LogFormat::Json)]
    pub log_format: LogFormat,
    /// Log level or filter (RUST_LOG syntax).
    #[arg(long, env = "AUTORESIZE_LOG_LEVEL", default_value = "info")]
    pub log_level: String,
    /// Test bed only: read volumes whose capacity is simulated (non-root
    /// tests). Not in the in-pod build.
    #[cfg(feature = "testbed")]
    #[arg(long, hide = true)]
    pub simulated_volumes: bool,
    /// How often the leader rewrites `status.diskStatus` when only usage changed.
    #[arg(long, env = "AUTORESIZE_STATUS_INTERVAL", default_value = "30s", value_parser = parse_duration, hide = true)]
    pub status_interval: Duration,
    /// How much history the growth forecast fits (30 minutes, as
    /// docs/reference/decision.md#the-growth-forecast says; benches shorten it).
    #[arg(long, env = "AUTORESIZE_FORECAST_WINDOW", default_value = "30m", value_parser = parse_duration, hide = true)]
    pub forecast_window: Duration,
    /// How much history the forecast needs before it says anything (5 minutes,
    /// as documented; benches shorten it).
    #[arg(long, env = "AUTORESIZE_FORECAST_MIN_SPAN", default_value = "5m", value_parser = parse_duration, hide = true)]
    pub forecast_min_span: Duration,
    /// Tests only: make ACTOR panic on its next N ticks (ACTOR[:N], N default 1),
    /// to prove supervision restarts it. Not in the in-pod build.
    #[cfg(feature = "testbed")]
    #[arg(long = "fault-panic", hide = true, value_name = "ACTOR[:N]")]
    pub fault_panics: Vec<String>,
}

impl RunArgs {
    /// `--simulated-volumes`, which only builds with the test bed have.
    fn simulated_volumes(&self) -> bool {
        #[cfg(feature = "testbed")]
        return self.simulated_volumes;
        #[cfg(not(feature = "testbed"))]
        false
    }
}

/// Durations like `1s`, `500ms`, `10m`, `1m30s`.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let d = jiff::SignedDuration::from_str(text)
        .map_err(|e| format!("invalid duration {text:?} (use e.g. 1s, 500ms, 10m): {e}"))?;
    if d.is_negative() || d.is_zero() {
        return Err(format!("duration {text:?} must be positive"));
    }
    Duration::try_from(d).map_err(|e| format!("duration {text:?}: {e}"))
}

/// A duration as the flags write it.
fn shown(d: Duration) -> String {
    jiff::SignedDuration::try_from(d)
        .map(|d| format!("{d:#}"))
        .unwrap_or_else(|_| format!("{d:?}"))
}

/// Refuses timings that cannot work together
/// (docs/reference/commands.md#checked-before-anything-starts): every write is
/// fenced by the lease, so a lease the leader cannot renew in time would
/// refuse every write, silently.
fn check_timings(args: &RunArgs) -> Result<(), Problem> {
    let (lease, renew) = (args.lease_duration, args.renew_interval);
    if lease < Duration::from_secs(3) {
        return Err(Problem::new(
            "--lease-duration",
            shown(lease),
            format!(
                "--lease-duration {} is shorter than 3s: the write fence keeps a 1s margin, so the leader could never write",
                shown(lease)
            ),
        ));
    }
    if renew * 3 > lease {
        return Err(Problem::new(
            "--renew-interval",
            shown(renew),
            format!(
                "--renew-interval {} is above a third of --lease-duration {}: one slow renewal would lose the lease",
                shown(renew),
                shown(lease)
            ),
        ));
    }
    if args.probe_interval * 3 > lease {
        return Err(Problem::new(
            "--probe-interval",
            shown(args.probe_interval),
            format!(
                "--probe-interval {}: a report is trusted for 3 probe intervals, which must fit in --lease-duration {}",
                shown(args.probe_interval),
                shown(lease)
            ),
        ));
    }
    if args.slot_query_timeout >= args.wal_interval * 10 {
        return Err(Problem::new(
            "--slot-query-timeout",
            shown(args.slot_query_timeout),
            format!(
                "--slot-query-timeout {} is longer than 10 WAL checks (--wal-interval {})",
                shown(args.slot_query_timeout),
                shown(args.wal_interval)
            ),
        ));
    }
    if args.forecast_min_span >= args.forecast_window {
        return Err(Problem::new(
            "--forecast-min-span",
            shown(args.forecast_min_span),
            format!(
                "--forecast-min-span {} must be shorter than --forecast-window {}",
                shown(args.forecast_min_span),
                shown(args.forecast_window)
            ),
        ));
    }
    if args.stuck_resize_after < args.probe_interval * 3 {
        return Err(Problem::new(
            "--stuck-resize-after",
            shown(args.stuck_resize_after),
            format!(
                "--stuck-resize-after {} is shorter than 3 probe intervals",
                shown(args.stuck_resize_after)
            ),
        ));
    }
    Ok(())
}

/// `ACTOR[:N]` of the hidden `--fault-panic` flag.
#[cfg(feature = "testbed")]
fn fault_panics(specs: &[String]) -> Result<Vec<(String, u32)>, Problem> {
    specs
        .iter()
        .map(|spec| {
            let (actor, n) = spec.split_once(':').unwrap_or((spec, "1"));
            let n = n.parse().map_err(|_| {
                Problem::new(
                    "--fault-panic",
                    spec.clone(),
                    format!("--fault-panic {spec:?}: expected ACTOR[:N]"),
                )
            })?;
            Ok((actor.to_string(), n))
        })
        .collect()
}

/// Everything `run` needs, checked.
pub struct RunConfig {
    pub args: RunArgs,
    pub cluster: String,
    pub pod_name: String,
    pub targets: Vec<ProbeTarget>,
    pub pg: tokio_postgres::Config,
}

fn required(value: &Option<String>, flag: &str, env: &str) -> Result<String, Problem> {
    match value.as_deref().map(str::trim) {
        Some(v) if !v.is_empty() => Ok(v.to_string()),
        _ => Err(Problem::new(
            format!("--{flag}"),
            "",
            format!("missing --{flag} (or {env})"),
        )),
    }
}

fn existing_dir(path: &std::path::Path, flag: &str) -> Result<(), Problem> {
    if path.is_dir() {
        Ok(())
    } else {
        Err(Problem::new(
            format!("--{flag}"),
            path.display().to_string(),
            format!("--{flag} {}: no such directory", path.display()),
        ))
    }
}

/// libpq's environment variables, since tokio-postgres does not read them.
fn pg_from_env() -> tokio_postgres::Config {
    pg_from_vars(|name| std::env::var(name).ok())
}

fn pg_from_vars(lookup: impl Fn(&str) -> Option<String>) -> tokio_postgres::Config {
    let mut config = tokio_postgres::Config::new();
    let var = |name: &str| lookup(name).filter(|v| !v.is_empty());
    config.host(var("PGHOST").as_deref().unwrap_or("/controller/run"));
    if let Some(port) = var("PGPORT").and_then(|p| p.parse().ok()) {
        config.port(port);
    }
    // CloudNativePG (>= 1.30) lets its own OS user in as this role by peer
    // authentication over the socket: no password anywhere.
    config.user(var("PGUSER").as_deref().unwrap_or("cnpg_metrics_exporter"));
    if let Some(password) = var("PGPASSWORD") {
        config.password(password);
    }
    config.dbname(var("PGDATABASE").as_deref().unwrap_or("postgres"));
    config
}

/// The volumes named by the flags, whether or not their paths exist: the
/// disk probe reports a path it cannot read as absent.
fn targets_of(args: &RunArgs) -> Vec<ProbeTarget> {
    let mut targets = vec![ProbeTarget {
        volume_type: VolumeType::Data,
        tablespace: None,
        path: args.data_path.clone(),
    }];
    if let Some(wal) = &args.wal_path {
        targets.push(ProbeTarget {
            volume_type: VolumeType::Wal,
            tablespace: None,
            path: wal.clone(),
        });
    }
    for spec in &args.tablespaces {
        if let Some((name, path)) = spec
            .split_once('=')
            .filter(|(n, p)| !n.is_empty() && !p.is_empty())
        {
            targets.push(ProbeTarget {
                volume_type: VolumeType::Tablespace,
                tablespace: Some(name.to_string()),
                path: PathBuf::from(path),
            });
        }
    }
    targets
}

impl RunConfig {
    /// The configuration, or the first problem with it (and the flags, for
    /// an inert manager to serve what it can).
    pub fn check(args: RunArgs) -> Result<RunConfig, Box<(RunArgs, Problem)>> {
        match Self::problem(&args) {
            Ok((cluster, pod_name, pg)) => Ok(RunConfig {
                targets: targets_of(&args),
                args,
                cluster,
                pod_name,
                pg,
            }),
            Err(problem) => Err(Box::new((args, problem))),
        }
    }

    fn problem(args: &RunArgs) -> Result<(String, String, tokio_postgres::Config), Problem> {
        let cluster = required(&args.cluster, "cluster", "CLUSTER_NAME")?;
        let pod_name = required(&args.pod_name, "pod-name", "POD_NAME")?;
        existing_dir(&args.data_path, "data-path")?;
        if let Some(wal) = &args.wal_path {
            existing_dir(wal, "wal-path")?;
        }
        for spec in &args.tablespaces {
            let Some((_, path)) = spec
                .split_once('=')
                .filter(|(n, p)| !n.is_empty() && !p.is_empty())
            else {
                return Err(Problem::new(
                    "--tablespace",
                    spec.clone(),
                    format!("--tablespace {spec:?}: expected NAME=PATH"),
                ));
            };
            existing_dir(std::path::Path::new(path), "tablespace")?;
        }
        check_timings(args)?;
        if args.http_addr.port() == 0 {
            return Err(Problem::new(
                "--http-addr",
                args.http_addr.to_string(),
                format!(
                    "--http-addr {}: the leader reaches every pod on the same fixed port; port 0 cannot work",
                    args.http_addr
                ),
            ));
        }
        let pg = match &args.pg_dsn {
            Some(dsn) => tokio_postgres::Config::from_str(dsn).map_err(|e| {
                // The DSN may carry a password: the value is not repeated.
                Problem::new("--pg-dsn", "(hidden)", format!("--pg-dsn: {e}"))
            })?,
            None => pg_from_env(),
        };
        #[cfg(feature = "testbed")]
        supervision::inject_panics(&fault_panics(&args.fault_panics)?);
        Ok((cluster, pod_name, pg))
    }
}

/// Whether a person runs `run`: standard input and output are a terminal.
/// In a pod neither is, so problems leave the manager inert instead of
/// ending it.
pub fn on_terminal() -> bool {
    std::io::stdin().is_terminal() && std::io::stdout().is_terminal()
}

pub fn main(args: RunArgs) -> ExitCode {
    let terminal = on_terminal();
    match RunConfig::check(args) {
        Ok(config) => run(
            Basics::of(Some(&config.args)),
            Some(config),
            Vec::new(),
            terminal,
        ),
        Err(failed) => {
            let (args, problem) = *failed;
            if terminal {
                eprintln!("error: {}", problem.message);
                return ExitCode::from(super::cli::EXIT_USAGE);
            }
            run(Basics::of(Some(&args)), None, vec![problem], terminal)
        }
    }
}

/// Whether `argv` (the whole command line) runs the `run` command.
pub fn is_run(argv: &[OsString]) -> bool {
    argv.get(1).is_some_and(|a| a == "run")
}

/// `run` whose command line does not parse (an unknown flag, a value that
/// does not read), without a terminal: the flags that do parse still
/// count — the endpoint's address, the volumes — and the manager stays up
/// inert.
pub fn main_unparsed(argv: &[OsString], error: &clap::Error) -> ExitCode {
    let (args, problems) = salvage(argv, error);
    run(Basics::of(args.as_ref()), None, problems, false)
}

/// Removes what the parser blames, one argument at a time, until the rest
/// parses; each removal is a problem. Without anything left to blame: the
/// defaults, environment ignored.
fn salvage(argv: &[OsString], first: &clap::Error) -> (Option<RunArgs>, Vec<Problem>) {
    let mut argv = argv.to_vec();
    let mut problems = Vec::new();
    let mut later: Option<clap::Error> = None;
    for _ in 0..32 {
        let (problem, removed) = blame(&mut argv, later.as_ref().unwrap_or(first));
        problems.push(problem);
        if !removed {
            break;
        }
        match Cli::try_parse_from(&argv) {
            Ok(Cli {
                command: Some(Command::Run(args)),
            }) => return (Some(*args), problems),
            Ok(_) => break,
            Err(e) => later = Some(e),
        }
    }
    (defaults_without_environment(), problems)
}

/// The argument a parse error is about, removed from `argv` with its value;
/// false when none is found (a value from the environment, say).
fn blame(argv: &mut Vec<OsString>, error: &clap::Error) -> (Problem, bool) {
    use clap::error::ContextKind;
    let context = |kind| error.get(kind).map(|v| v.to_string());
    let arg = context(ContextKind::InvalidArg).unwrap_or_default();
    // "--lease-duration <D>" names the flag; "--foo=bar" is the flag and its value.
    let word = arg.split_whitespace().next().unwrap_or("");
    let (flag, given) = match word.split_once('=') {
        Some((f, v)) => (f.to_string(), Some(v.to_string())),
        None => (word.to_string(), None),
    };
    let mut value = context(ContextKind::InvalidValue).or(given);
    let message = error
        .render()
        .to_string()
        .lines()
        .next()
        .unwrap_or("")
        .trim_start_matches("error: ")
        .to_string();
    let position = (!flag.is_empty())
        .then(|| {
            argv.iter().skip(2).position(|a| {
                let a = a.to_string_lossy();
                a == flag.as_str() || a.starts_with(&format!("{flag}="))
            })
        })
        .flatten()
        .map(|i| i + 2);
    let removed = match position {
        Some(i) => {
            let element = argv.remove(i).to_string_lossy().into_owned();
            match element.split_once('=') {
                Some((_, v)) => {
                    value.get_or_insert_with(|| v.to_string());
                }
                // `--flag VALUE`: the value goes with it.
                None if flag.starts_with('-')
                    && argv
                        .get(i)
                        .is_some_and(|next| !next.to_string_lossy().starts_with('-')) =>
                {
                    let next = argv.remove(i).to_string_lossy().into_owned();
                    value.get_or_insert(next);
                }
                None => {}
            }
            true
        }
        None => false,
    };
    let flag = if flag.is_empty() {
        "run".to_string()
    } else {
        flag
    };
    (
        Problem::new(flag, value.unwrap_or_default(), message),
        removed,
    )
}

/// `run`'s defaults, as if no flag and no environment variable were given.
fn defaults_without_environment() -> Option<RunArgs> {
    let command = Cli::command().mut_subcommand("run", |c| c.mut_args(|a| a.env(None)));
    let matches = command
        .try_get_matches_from(["cnpg-autoresize", "run"])
        .ok()?;
    match Cli::from_arg_matches(&matches).ok()?.command? {
        Command::Run(args) => Some(*args),
        #[allow(unreachable_patterns)]
        _ => None,
    }
}

/// What even an inert manager serves: its endpoint, its volumes' figures.
struct Basics {
    http_addr: SocketAddr,
    pod_name: String,
    targets: Vec<ProbeTarget>,
    probe: ProbeSettings,
    log_format: LogFormat,
    log_level: String,
}

impl Basics {
    /// From the flags that parsed, else the in-pod defaults.
    fn of(args: Option<&RunArgs>) -> Basics {
        let default_addr = SocketAddr::from(([0, 0, 0, 0], 9188));
        let Some(args) = args else {
            return Basics {
                http_addr: default_addr,
                pod_name: std::env::var("POD_NAME").unwrap_or_default(),
                targets: vec![ProbeTarget {
                    volume_type: VolumeType::Data,
                    tablespace: None,
                    path: PathBuf::from("/var/lib/postgresql/data"),
                }],
                probe: ProbeSettings {
                    interval: Duration::from_secs(1),
                    simulated_volumes: false,
                    forecast: crate::engine::forecast::ForecastSpan::default(),
                },
                log_format: LogFormat::Json,
                log_level: "info".to_string(),
            };
        };
        // Port 0 cannot be probed by the kubelet: the chart's port instead.
        let http_addr = if args.http_addr.port() == 0 {
            SocketAddr::new(args.http_addr.ip(), default_addr.port())
        } else {
            args.http_addr
        };
        Basics {
            http_addr,
            pod_name: args.pod_name.clone().unwrap_or_default(),
            targets: targets_of(args),
            probe: ProbeSettings {
                interval: args.probe_interval,
                simulated_volumes: args.simulated_volumes(),
                forecast: crate::engine::forecast::ForecastSpan {
                    window: args.forecast_window,
                    min_span: args.forecast_min_span,
                },
            },
            log_format: args.log_format,
            log_level: args.log_level.clone(),
        }
    }
}

fn run(
    basics: Basics,
    config: Option<RunConfig>,
    problems: Vec<Problem>,
    terminal: bool,
) -> ExitCode {
    logging::init(basics.log_format, &basics.log_level);
    // A panic ends only the actor's task; it must not go unnoticed. It is
    // logged here, the actor stops beating, and /healthz turns red so the
    // kubelet restarts the container. (Actors that stop are restarted by
    // their Supervisor.)
    std::panic::set_hook(Box::new(|info| {
        tracing::error!(panic = %info, "a task panicked; /healthz reports the silent actor");
    }));
    let system = actix::System::new();
    match system.block_on(manage(basics, config, problems, terminal)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(Startup::Usage(e)) => {
            eprintln!("error: {e}");
            ExitCode::from(super::cli::EXIT_USAGE)
        }
        Err(Startup::Failed(e)) => {
            tracing::error!(error = %e, "manager failed");
            ExitCode::FAILURE
        }
    }
}

enum Startup {
    Usage(String),
    Failed(String),
}

/// What the signal handler is waited on with.
type Signal = std::pin::Pin<Box<dyn std::future::Future<Output = &'static str>>>;

async fn manage(
    basics: Basics,
    config: Option<RunConfig>,
    found: Vec<Problem>,
    terminal: bool,
) -> Result<(), Startup> {
    let mut signal: Signal = Box::pin(super::signals::wait_for_signal());
    let metrics = Arc::new(Metrics::new(VERSION).map_err(|e| Startup::Failed(e.to_string()))?);
    let problems = Problems::new(metrics.clone());
    problems.set(Source::Flags, found);
    actix_rt::spawn(problems.clone().repeat_in_log());
    let liveness = Arc::new(Liveness::default());
    let fence = Arc::new(Fence::default());
    let hints = LeaderHints::default();
    let (status, status_rx) = StatusPublisher::new(hints.clone());
    let (leadership_tx, leadership_rx) = watch::channel(Leadership::default());
    let (evidence_tx, evidence_rx) = watch::channel(None);
    let (feed_tx, feed_rx) = watch::channel(DecisionFeed::default());
    let (held_tx, held_rx) = watch::channel(None);

    let (http, server) = serve(
        basics.http_addr,
        HttpState {
            pod_name: basics.pod_name.clone(),
            metrics: metrics.clone(),
            liveness: liveness.clone(),
            status: status_rx.clone(),
            feed: feed_rx.clone(),
            leadership: leadership_rx.clone(),
            held: held_rx,
            problems: problems.clone(),
        },
    )
    .map_err(|e| Startup::Failed(format!("cannot listen on {}: {e}", basics.http_addr)))?;
    actix_rt::spawn(server);

    let (s, m, l) = (status.clone(), metrics.clone(), liveness.clone());
    let (targets, probe) = (basics.targets, basics.probe);
    supervise(
        "disk_probe",
        metrics.clone(),
        liveness.clone(),
        move |lifeline| {
            DiskProbe::new(
                targets.clone(),
                probe.clone(),
                s.clone(),
                m.clone(),
                l.clone(),
                lifeline,
            )
        },
    );

    let Some(config) = config else {
        // Inert for good: only a new container can change the flags.
        tracing::warn!(http = %basics.http_addr, "manager started inert: it measures its volumes and serves its endpoint, and does nothing else");
        let signal = signal.await;
        tracing::info!(signal, "shutting down");
        supervision::shutting_down();
        let _ = tokio::time::timeout(Duration::from_secs(1), http.stop(true)).await;
        return Ok(());
    };
    let RunConfig {
        args,
        cluster,
        pod_name,
        targets: _,
        pg,
    } = config;

    let wal = WalHealthSettings {
        pg,
        interval: args.wal_interval,
        connect_timeout: args.pg_timeout,
        statement_timeout: args.pg_timeout,
        slot_query_timeout: args.slot_query_timeout,
    };
    let (s, m, l, h) = (
        status.clone(),
        metrics.clone(),
        liveness.clone(),
        hints.clone(),
    );
    supervise(
        "wal_health",
        metrics.clone(),
        liveness.clone(),
        move |lifeline| {
            WalHealthActor::new(
                wal.clone(),
                s.clone(),
                m.clone(),
                l.clone(),
                h.clone(),
                lifeline,
            )
        },
    );

    // The credentials: tried again every minute while they cannot be read
    // (a token that is mounted late, a kubeconfig that is fixed).
    let agent = format!("cnpg-autoresize/{VERSION} (pod {pod_name})");
    let clock = Arc::new(ApiClock::new(metrics.clone()));
    let (client, default_namespace) = loop {
        match crate::kube_api::client_with_clock(
            args.kubeconfig.as_deref(),
            Some(&agent),
            Some(clock.clone()),
        )
        .await
        {
            Ok(found) => {
                problems.set(Source::Credentials, Vec::new());
                break found;
            }
            Err(e) => {
                let value = args
                    .kubeconfig
                    .as_ref()
                    .map(|p| p.display().to_string())
                    .unwrap_or_else(|| "(in-cluster service account)".to_string());
                let problem = Problem::new("--kubeconfig", value, format!("{e:#}"));
                if terminal {
                    return Err(Startup::Usage(problem.message));
                }
                problems.set(Source::Credentials, vec![problem]);
                tokio::select! {
                    _ = tokio::time::sleep(REPEAT_EVERY) => continue,
                    name = &mut signal => return stop_inert(name, &http).await,
                }
            }
        }
    };
    let namespace = args
        .namespace
        .clone()
        .filter(|n| !n.is_empty())
        .unwrap_or(default_namespace);
    let lease_name = format!("cnpg-autoresize-{cluster}");

    // The permissions, before anything competes for the Lease.
    let preflight = Preflight {
        client: client.clone(),
        namespace: namespace.clone(),
        cluster: cluster.clone(),
        lease_name: lease_name.clone(),
        metrics: metrics.clone(),
    };
    let allowed = tokio::select! {
        allowed = preflight.settle(&problems) => allowed,
        name = &mut signal => return stop_inert(name, &http).await,
    };
    if !allowed && terminal {
        let said: Vec<String> = problems.list().into_iter().map(|p| p.message).collect();
        return Err(Startup::Usage(said.join("; ")));
    }
    actix_rt::spawn(preflight.keep_checking(problems.clone()));

    let leader_settings = LeaderSettings {
        lease_name,
        identity: pod_name.clone(),
        lease_duration: args.lease_duration,
        renew_interval: args.renew_interval,
    };
    let leases = kube::Api::namespaced(client.clone(), &namespace);
    let released = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let (f, m, l, r, p) = (
        fence.clone(),
        metrics.clone(),
        liveness.clone(),
        released.clone(),
        problems.clone(),
    );
    let leader = supervise(
        "leader",
        metrics.clone(),
        liveness.clone(),
        move |lifeline| {
            LeaderActor::new(
                leader_settings.clone(),
                leases.clone(),
                f.clone(),
                leadership_tx.clone(),
                evidence_rx.clone(),
                held_tx.clone(),
                p.clone(),
                m.clone(),
                l.clone(),
                r.clone(),
                lifeline,
            )
        },
    );

    let planner_settings = PlannerSettings {
        namespace: namespace.clone(),
        cluster: cluster.clone(),
        pod_name: pod_name.clone(),
        http_port: args.http_addr.port(),
        engine: EngineSettings {
            status_max_age: jiff::SignedDuration::try_from(args.probe_interval * 3)
                .unwrap_or(jiff::SignedDuration::from_secs(3)),
            stuck_after: jiff::SignedDuration::try_from(args.stuck_resize_after)
                .unwrap_or(jiff::SignedDuration::from_mins(10)),
            ha_slot_grace: jiff::SignedDuration::try_from(args.ha_slot_grace)
                .unwrap_or(crate::engine::HA_SLOT_GRACE),
        },
        replan_interval: Duration::from_secs(5),
        failure_backoff: Duration::from_secs(600),
        disk_status_interval: args.status_interval,
    };
    let (c, m, f, l, p, k) = (
        client.clone(),
        metrics.clone(),
        fence.clone(),
        liveness.clone(),
        problems.clone(),
        clock.clone(),
    );
    let (local, lead, feed) = (status_rx.clone(), leadership_rx.clone(), feed_tx.clone());
    supervise(
        "planner",
        metrics.clone(),
        liveness.clone(),
        move |lifeline| {
            Planner::new(
                planner_settings.clone(),
                c.clone(),
                m.clone(),
                f.clone(),
                l.clone(),
                local.clone(),
                lead.clone(),
                feed.clone(),
                p.clone(),
                k.clone(),
                lifeline,
            )
        },
    );

    let follower = Follower {
        pod_name: pod_name.clone(),
        http_port: args.http_addr.port(),
        pods: kube::Api::namespaced(client.clone(), &namespace),
        metrics: metrics.clone(),
        hints: hints.clone(),
        leadership: leadership_rx.clone(),
        evidence: evidence_tx,
        local_feed: feed_rx.clone(),
        poll_wait: args.renew_interval,
        forget_after: args.lease_duration * 3,
        started: jiff::Timestamp::now(),
    };
    actix_rt::spawn(follower.run());

    tracing::info!(version = VERSION, %cluster, %namespace, pod = %pod_name, http = %args.http_addr, "manager started");
    let signal = signal.await;
    tracing::info!(signal, "shutting down");
    supervision::shutting_down();

    // Release the lease first so a successor takes over at once.
    if let Some(leader) = leader.addr() {
        let _ = tokio::time::timeout(Duration::from_secs(3), leader.send(Release)).await;
    }
    released.store(true, std::sync::atomic::Ordering::SeqCst);
    let _ = tokio::time::timeout(Duration::from_secs(1), http.stop(true)).await;
    tracing::info!("stopped");
    Ok(())
}

#[cfg(test)]
mod pg_env_tests {
    use super::pg_from_vars;
    use tokio_postgres::config::Host;

    #[test]
    fn without_variables_the_socket_of_cloudnativepg_as_its_metrics_exporter() {
        let config = pg_from_vars(|_| None);
        assert_eq!(
            config.get_hosts(),
            [Host::Unix("/controller/run".into())].as_slice()
        );
        assert_eq!(config.get_user(), Some("cnpg_metrics_exporter"));
        assert_eq!(config.get_password(), None);
        assert_eq!(config.get_dbname(), Some("postgres"));
    }

    #[test]
    fn the_password_mode_variables_win() {
        let config = pg_from_vars(|name| {
            let value = match name {
                "PGHOST" => "10.0.0.7",
                "PGPORT" => "5433",
                "PGUSER" => "cnpg_autoresize",
                "PGPASSWORD" => "s3cret",
                _ => "",
            };
            Some(value.to_string())
        });
        assert_eq!(
            config.get_hosts(),
            [Host::Tcp("10.0.0.7".into())].as_slice()
        );
        assert_eq!(config.get_ports(), [5433].as_slice());
        assert_eq!(config.get_user(), Some("cnpg_autoresize"));
        assert_eq!(config.get_password(), Some(b"s3cret".as_slice()));
        assert_eq!(config.get_dbname(), Some("postgres"));
    }
}

/// SIGTERM while inert: nothing to release.
async fn stop_inert(
    signal: &'static str,
    http: &actix_web::dev::ServerHandle,
) -> Result<(), Startup> {
    tracing::info!(signal, "shutting down");
    supervision::shutting_down();
    let _ = tokio::time::timeout(Duration::from_secs(1), http.stop(true)).await;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn argv(args: &[&str]) -> Vec<OsString> {
        ["cnpg-autoresize", "run"]
            .iter()
            .chain(args)
            .map(OsString::from)
            .collect()
    }

    fn salvaged(args: &[&str]) -> (Option<RunArgs>, Vec<Problem>) {
        let argv = argv(args);
        let error = Cli::try_parse_from(&argv).expect_err("does not parse");
        salvage(&argv, &error)
    }

    /// A typo in the chart's extraArgs: the flags around it still count, so
    /// the inert manager serves on its port and measures its volumes.
    #[test]
    fn the_flags_around_an_unknown_one_still_count() {
        let (args, problems) = salvaged(&[
            "--data-path=/d",
            "--stuck-resize-afterr=30m",
            "--http-addr=127.0.0.1:9999",
            "--bogus",
            "value",
            "--wal-path",
            "/w",
        ]);
        let args = args.expect("salvaged");
        assert_eq!(args.http_addr, "127.0.0.1:9999".parse().unwrap());
        assert_eq!(args.data_path, PathBuf::from("/d"));
        assert_eq!(args.wal_path, Some(PathBuf::from("/w")));
        let named: Vec<(&str, &str)> = problems
            .iter()
            .map(|p| (p.flag.as_str(), p.value.as_str()))
            .collect();
        assert_eq!(
            named,
            [("--stuck-resize-afterr", "30m"), ("--bogus", "value")]
        );
    }

    #[test]
    fn a_value_that_does_not_read_is_named_and_left_out() {
        let (args, problems) = salvaged(&["--lease-duration", "soon", "--probe-interval=2s"]);
        let args = args.expect("salvaged");
        assert_eq!(args.lease_duration, Duration::from_secs(15), "the default");
        assert_eq!(args.probe_interval, Duration::from_secs(2));
        assert_eq!(problems.len(), 1);
        assert_eq!(
            (problems[0].flag.as_str(), problems[0].value.as_str()),
            ("--lease-duration", "soon")
        );
        assert!(problems[0].message.contains("soon"), "{:?}", problems[0]);
    }

    #[test]
    fn the_defaults_without_environment_are_the_in_pod_ones() {
        let args = defaults_without_environment().expect("defaults");
        assert_eq!(args.http_addr, "0.0.0.0:9188".parse().unwrap());
        assert_eq!(args.data_path, PathBuf::from("/var/lib/postgresql/data"));
        assert_eq!(args.lease_duration, Duration::from_secs(15));
    }

    #[test]
    fn timings_that_cannot_work_name_the_flag_and_the_value() {
        let args = |extra: &[&str]| match Cli::try_parse_from(argv(extra)).expect("parses").command
        {
            Some(Command::Run(args)) => *args,
            _ => unreachable!(),
        };
        let p = check_timings(&args(&["--lease-duration=10s"])).unwrap_err();
        assert_eq!(
            (p.flag.as_str(), p.value.as_str()),
            ("--renew-interval", "5s")
        );
        assert!(p.message.contains("--lease-duration 10s"), "{}", p.message);
        let p =
            check_timings(&args(&["--lease-duration=2s", "--renew-interval=500ms"])).unwrap_err();
        assert_eq!(
            (p.flag.as_str(), p.value.as_str()),
            ("--lease-duration", "2s")
        );
        assert!(check_timings(&args(&[])).is_ok());
    }
}
