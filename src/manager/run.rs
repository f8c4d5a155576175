//! `cnpg-autoresize run`: the in-pod manager. Flags with environment
//! fallbacks; everything is checked before anything starts.

use super::http::{serve, HttpState};
use super::logging::{self, LogFormat};
use crate::actors::disk_probe::{DiskProbe, ProbeSettings, ProbeTarget};
use crate::actors::follower::Follower;
use crate::actors::leader::{Fence, LeaderActor, LeaderSettings, Leadership, Release};
use crate::actors::planner::feed::DecisionFeed;
use crate::actors::planner::{Planner, PlannerSettings};
use crate::actors::status::StatusPublisher;
use crate::actors::supervision::{ApiReachability, Liveness};
use crate::actors::wal_health::{WalHealthActor, WalHealthSettings};
use crate::api::cluster::VolumeType;
use crate::engine::EngineSettings;
use crate::metrics::Metrics;
use actix::{Actor, Supervisor};
use clap::Args;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;

pub const VERSION: &str = env!("CARGO_PKG_VERSION");

#[derive(Debug, Args)]
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
    /// Log format.
    #[arg(long, env = "AUTORESIZE_LOG_FORMAT", value_enum, default_value_t = LogFormat::Json)]
    pub log_format: LogFormat,
    /// Log level or filter (RUST_LOG syntax).
    #[arg(long, env = "AUTORESIZE_LOG_LEVEL", default_value = "info")]
    pub log_level: String,
    /// Test bed only: read volumes whose capacity is simulated (non-root tests).
    #[arg(long, hide = true)]
    pub simulated_volumes: bool,
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

/// Everything `run` needs, checked.
pub struct RunConfig {
    pub args: RunArgs,
    pub cluster: String,
    pub pod_name: String,
    pub targets: Vec<ProbeTarget>,
    pub pg: tokio_postgres::Config,
}

fn required(value: &Option<String>, flag: &str, env: &str) -> Result<String, String> {
    match value.as_deref().map(str::trim) {
        Some(v) if !v.is_empty() => Ok(v.to_string()),
        _ => Err(format!("missing --{flag} (or {env})")),
    }
}

fn existing_dir(path: &std::path::Path, flag: &str) -> Result<(), String> {
    if path.is_dir() {
        Ok(())
    } else {
        Err(format!("--{flag} {}: no such directory", path.display()))
    }
}

/// libpq's environment variables, since tokio-postgres does not read them.
fn pg_from_env() -> tokio_postgres::Config {
    let mut config = tokio_postgres::Config::new();
    let var = |name: &str| std::env::var(name).ok().filter(|v| !v.is_empty());
    config.host(var("PGHOST").as_deref().unwrap_or("/controller/run"));
    if let Some(port) = var("PGPORT").and_then(|p| p.parse().ok()) {
        config.port(port);
    }
    config.user(var("PGUSER").as_deref().unwrap_or("postgres"));
    if let Some(password) = var("PGPASSWORD") {
        config.password(password);
    }
    config.dbname(var("PGDATABASE").as_deref().unwrap_or("postgres"));
    config
}

impl RunConfig {
    pub fn check(args: RunArgs) -> Result<RunConfig, String> {
        let cluster = required(&args.cluster, "cluster", "CLUSTER_NAME")?;
        let pod_name = required(&args.pod_name, "pod-name", "POD_NAME")?;
        existing_dir(&args.data_path, "data-path")?;
        let mut targets = vec![ProbeTarget {
            volume_type: VolumeType::Data,
            tablespace: None,
            path: args.data_path.clone(),
        }];
        if let Some(wal) = &args.wal_path {
            existing_dir(wal, "wal-path")?;
            targets.push(ProbeTarget {
                volume_type: VolumeType::Wal,
                tablespace: None,
                path: wal.clone(),
            });
        }
        for spec in &args.tablespaces {
            let Some((name, path)) = spec
                .split_once('=')
                .filter(|(n, p)| !n.is_empty() && !p.is_empty())
            else {
                return Err(format!("--tablespace {spec:?}: expected NAME=PATH"));
            };
            let path = PathBuf::from(path);
            existing_dir(&path, "tablespace")?;
            targets.push(ProbeTarget {
                volume_type: VolumeType::Tablespace,
                tablespace: Some(name.to_string()),
                path,
            });
        }
        if args.renew_interval >= args.lease_duration {
            return Err(format!(
                "--renew-interval ({:?}) must be shorter than --lease-duration ({:?})",
                args.renew_interval, args.lease_duration
            ));
        }
        let pg = match &args.pg_dsn {
            Some(dsn) => {
                tokio_postgres::Config::from_str(dsn).map_err(|e| format!("--pg-dsn: {e}"))?
            }
            None => pg_from_env(),
        };
        Ok(RunConfig {
            args,
            cluster,
            pod_name,
            targets,
            pg,
        })
    }
}

pub fn main(args: RunArgs) -> ExitCode {
    let config = match RunConfig::check(args) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(super::cli::EXIT_USAGE);
        }
    };
    logging::init(config.args.log_format, &config.args.log_level);
    // A panic ends only the actor's task; it must not go unnoticed. It is
    // logged here, the actor stops beating, and /healthz turns red so the
    // kubelet restarts the container. (Actors that stop are restarted by
    // their Supervisor.)
    std::panic::set_hook(Box::new(|info| {
        tracing::error!(panic = %info, "a task panicked; /healthz reports the silent actor");
    }));
    let system = actix::System::new();
    match system.block_on(manage(config)) {
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

async fn manage(config: RunConfig) -> Result<(), Startup> {
    let RunConfig {
        args,
        cluster,
        pod_name,
        targets,
        pg,
    } = config;
    let (client, default_namespace) = crate::kube_api::client(args.kubeconfig.as_deref())
        .await
        .map_err(|e| Startup::Usage(format!("{e:#}")))?;
    let namespace = args
        .namespace
        .clone()
        .filter(|n| !n.is_empty())
        .unwrap_or(default_namespace);

    let metrics = Arc::new(Metrics::new(VERSION).map_err(|e| Startup::Failed(e.to_string()))?);
    let liveness = Arc::new(Liveness::default());
    let api_reachable = Arc::new(ApiReachability::default());
    let fence = Arc::new(Fence::default());
    let (status, status_rx) = StatusPublisher::new();
    let (leadership_tx, leadership_rx) = watch::channel(Leadership::default());
    let (feed_tx, feed_rx) = watch::channel(DecisionFeed::default());

    let (http, server) = serve(
        args.http_addr,
        HttpState {
            pod_name: pod_name.clone(),
            metrics: metrics.clone(),
            liveness: liveness.clone(),
            api: api_reachable.clone(),
            status: status_rx.clone(),
            feed: feed_rx.clone(),
            leadership: leadership_rx.clone(),
        },
    )
    .map_err(|e| Startup::Failed(format!("cannot listen on {}: {e}", args.http_addr)))?;
    actix_rt::spawn(server);

    let probe = ProbeSettings {
        interval: args.probe_interval,
        simulated_volumes: args.simulated_volumes,
    };
    let (s, m, l) = (status.clone(), metrics.clone(), liveness.clone());
    Supervisor::start(move |_| DiskProbe::new(targets, probe, s, m, l));

    let wal = WalHealthSettings {
        pg,
        interval: args.wal_interval,
        connect_timeout: args.pg_timeout,
        statement_timeout: args.pg_timeout,
        slot_query_timeout: args.slot_query_timeout,
    };
    let (s, m, l) = (status.clone(), metrics.clone(), liveness.clone());
    Supervisor::start(move |_| WalHealthActor::new(wal, s, m, l));

    let leader_settings = LeaderSettings {
        lease_name: format!("cnpg-autoresize-{cluster}"),
        identity: pod_name.clone(),
        lease_duration: args.lease_duration,
        renew_interval: args.renew_interval,
    };
    let leases = kube::Api::namespaced(client.clone(), &namespace);
    let (f, m, l, a) = (
        fence.clone(),
        metrics.clone(),
        liveness.clone(),
        api_reachable.clone(),
    );
    let leader = Supervisor::start(move |_| {
        LeaderActor::new(leader_settings, leases, f, leadership_tx, m, l, a)
    });

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
        },
        replan_interval: Duration::from_secs(5),
        failure_backoff: Duration::from_secs(600),
        disk_status_interval: Duration::from_secs(30),
    };
    let (c, m, f, l) = (
        client.clone(),
        metrics.clone(),
        fence.clone(),
        liveness.clone(),
    );
    let (local, lead) = (status_rx.clone(), leadership_rx.clone());
    let _planner =
        Planner::create(move |_| Planner::new(planner_settings, c, m, f, l, local, lead, feed_tx));

    let follower = Follower {
        pod_name: pod_name.clone(),
        http_port: args.http_addr.port(),
        pods: kube::Api::namespaced(client.clone(), &namespace),
        metrics: metrics.clone(),
        leadership: leadership_rx.clone(),
        local_feed: feed_rx.clone(),
        started: jiff::Timestamp::now(),
    };
    actix_rt::spawn(follower.run());

    tracing::info!(version = VERSION, %cluster, %namespace, pod = %pod_name, http = %args.http_addr, "manager started");
    let signal = super::signals::wait_for_signal().await;
    tracing::info!(signal, "shutting down");

    // Release the lease first so a successor takes over at once.
    let _ = tokio::time::timeout(Duration::from_secs(3), leader.send(Release)).await;
    let _ = tokio::time::timeout(Duration::from_secs(1), http.stop(true)).await;
    tracing::info!("stopped");
    Ok(())
}
