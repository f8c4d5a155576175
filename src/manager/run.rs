//! `cnpg-autoresize run`: the in-pod manager. Flags with environment
//! fallbacks; everything is checked before anything starts.

use super::http::{serve, HttpState};
use super::logging::{self, LogFormat};
use crate::actors::disk_probe::{DiskProbe, ProbeSettings, ProbeTarget};
use crate::actors::follower::Follower;
use crate::actors::leader::{Fence, LeaderActor, LeaderSettings, Leadership, Release};
use crate::actors::planner::feed::DecisionFeed;
use crate::actors::planner::{Planner, PlannerSettings};
use crate::actors::status::{LeaderHints, StatusPublisher};
use crate::actors::supervision::{self, supervise, Liveness};
use crate::actors::wal_health::{WalHealthActor, WalHealthSettings};
use crate::api::cluster::VolumeType;
use crate::engine::EngineSettings;
use crate::metrics::Metrics;
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
    /// Test bed only: read volumes whose capacity is simulated (non-root tests).
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
    /// to prove supervision restarts it.
    #[arg(long = "fault-panic", hide = true, value_name = "ACTOR[:N]")]
    pub fault_panics: Vec<String>,
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

/// Refuses timings that cannot work together
/// (docs/reference/commands.md#checked-before-anything-starts): every write is
/// fenced by the lease, so a lease the leader cannot renew in time would
/// refuse every write, silently.
fn check_timings(args: &RunArgs) -> Result<(), String> {
    let (lease, renew) = (args.lease_duration, args.renew_interval);
    if lease < Duration::from_secs(3) {
        return Err(format!(
            "--lease-duration {lease:?} is shorter than 3s: the write fence keeps a 1s margin, so the leader could never write"
        ));
    }
    if renew * 3 > lease {
        return Err(format!(
            "--renew-interval {renew:?} is above a third of --lease-duration {lease:?}: one slow renewal would lose the lease"
        ));
    }
    if args.probe_interval * 3 > lease {
        return Err(format!(
            "--probe-interval {:?}: a report is trusted for 3 probe intervals, which must fit in --lease-duration {lease:?}",
            args.probe_interval
        ));
    }
    if args.slot_query_timeout >= args.wal_interval * 10 {
        return Err(format!(
            "--slot-query-timeout {:?} is longer than 10 WAL checks (--wal-interval {:?})",
            args.slot_query_timeout, args.wal_interval
        ));
    }
    if args.forecast_min_span >= args.forecast_window {
        return Err(format!(
            "--forecast-min-span {:?} must be shorter than --forecast-window {:?}",
            args.forecast_min_span, args.forecast_window
        ));
    }
    if args.stuck_resize_after < args.probe_interval * 3 {
        return Err(format!(
            "--stuck-resize-after {:?} is shorter than 3 probe intervals",
            args.stuck_resize_after
        ));
    }
    Ok(())
}

/// `ACTOR[:N]` of the hidden `--fault-panic` flag.
fn fault_panics(specs: &[String]) -> Result<Vec<(String, u32)>, String> {
    specs
        .iter()
        .map(|spec| {
            let (actor, n) = spec.split_once(':').unwrap_or((spec, "1"));
            let n = n
                .parse()
                .map_err(|_| format!("--fault-panic {spec:?}: expected ACTOR[:N]"))?;
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
        check_timings(&args)?;
        if args.http_addr.port() == 0 {
            return Err(format!(
                "--http-addr {}: the leader reaches every pod on the same fixed port; port 0 cannot work",
                args.http_addr
            ));
        }
        let pg = match &args.pg_dsn {
            Some(dsn) => {
                tokio_postgres::Config::from_str(dsn).map_err(|e| format!("--pg-dsn: {e}"))?
            }
            None => pg_from_env(),
        };
        supervision::inject_panics(&fault_panics(&args.fault_panics)?);
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
    let agent = format!("cnpg-autoresize/{VERSION} (pod {pod_name})");
    let (client, default_namespace) =
        crate::kube_api::client(args.kubeconfig.as_deref(), Some(&agent))
            .await
            .map_err(|e| Startup::Usage(format!("{e:#}")))?;
    let namespace = args
        .namespace
        .clone()
        .filter(|n| !n.is_empty())
        .unwrap_or(default_namespace);

    let metrics = Arc::new(Metrics::new(VERSION).map_err(|e| Startup::Failed(e.to_string()))?);
    let liveness = Arc::new(Liveness::default());
    let fence = Arc::new(Fence::default());
    let hints = LeaderHints::default();
    let (status, status_rx) = StatusPublisher::new(hints.clone());
    let (leadership_tx, leadership_rx) = watch::channel(Leadership::default());
    let (evidence_tx, evidence_rx) = watch::channel(None);
    let (feed_tx, feed_rx) = watch::channel(DecisionFeed::default());

    let (http, server) = serve(
        args.http_addr,
        HttpState {
            pod_name: pod_name.clone(),
            metrics: metrics.clone(),
            liveness: liveness.clone(),
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
        forecast: crate::engine::forecast::ForecastSpan {
            window: args.forecast_window,
            min_span: args.forecast_min_span,
        },
    };
    let (s, m, l) = (status.clone(), metrics.clone(), liveness.clone());
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

    let leader_settings = LeaderSettings {
        lease_name: format!("cnpg-autoresize-{cluster}"),
        identity: pod_name.clone(),
        lease_duration: args.lease_duration,
        renew_interval: args.renew_interval,
    };
    let leases = kube::Api::namespaced(client.clone(), &namespace);
    let released = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let (f, m, l, r) = (
        fence.clone(),
        metrics.clone(),
        liveness.clone(),
        released.clone(),
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
    let (c, m, f, l) = (
        client.clone(),
        metrics.clone(),
        fence.clone(),
        liveness.clone(),
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
    let signal = super::signals::wait_for_signal().await;
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
