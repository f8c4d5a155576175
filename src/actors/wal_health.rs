//! WalHealth: asks the local PostgreSQL about archiving and replication
//! slots. Every query runs under a timeout (the slot query under its own),
//! set server-side on the session as well, on one connection reused across
//! checks and re-opened after an error, so a hung server never blocks the
//! probe, the metrics or the planner, and never accumulates backends.
//! Works as a role with only `pg_monitor`.

use super::status::{LeaderHints, StatusPublisher};
use super::supervision::{injected_panic, Lifeline, Liveness};
use crate::api::report::{InactiveSlot, WalHealth};
use crate::metrics::Metrics;
use actix::prelude::*;
use std::future::Future;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::time::timeout;
use tokio_postgres::{Client, NoTls, Row};

#[derive(Clone, Debug)]
pub struct WalHealthSettings {
    pub pg: tokio_postgres::Config,
    pub interval: Duration,
    pub connect_timeout: Duration,
    pub statement_timeout: Duration,
    pub slot_query_timeout: Duration,
}

const SETTINGS_QUERY: &str = "SELECT pg_is_in_recovery(), current_setting('archive_mode'), \
     current_setting('archive_command'), coalesce(current_setting('archive_library', true), ''), \
     current_setting('data_directory')";

/// Failing: the last failure is newer than the last success, or failures
/// happened and nothing was ever archived.
const ARCHIVER_QUERY: &str = "SELECT coalesce(last_failed_time IS NOT NULL AND \
     (last_archived_time IS NULL OR last_failed_time > last_archived_time), false) FROM pg_stat_archiver";

/// Inactive physical slots and the WAL they hold back, measured from the
/// current position (primary) or the replayed position (standby).
const SLOTS_QUERY: &str = "SELECT slot_name::text, coalesce(pg_wal_lsn_diff(CASE WHEN pg_is_in_recovery() \
     THEN pg_last_wal_replay_lsn() ELSE pg_current_wal_lsn() END, restart_lsn), 0)::bigint \
     FROM pg_replication_slots WHERE NOT active AND slot_type = 'physical' AND restart_lsn IS NOT NULL \
     ORDER BY slot_name";

const READY_QUERY: &str =
    "SELECT count(*) FROM pg_ls_archive_statusdir() WHERE name LIKE '%.ready'";

pub struct WalHealthActor {
    settings: WalHealthSettings,
    status: StatusPublisher,
    metrics: Arc<Metrics>,
    liveness: Arc<Liveness>,
    hints: LeaderHints,
    /// The session reused across checks; None after an error (reconnect).
    session: Option<PgSession>,
    running: bool,
    last_error: Option<String>,
    _lifeline: Lifeline,
}

/// One connection to the local PostgreSQL, kept across checks. Its queries
/// are bounded server-side too (`statement_timeout`), so a query the client
/// gave up on never lingers in PostgreSQL.
pub struct PgSession {
    client: Client,
    connection: tokio::task::JoinHandle<()>,
}

impl Drop for PgSession {
    fn drop(&mut self) {
        self.connection.abort();
    }
}

impl WalHealthActor {
    pub fn new(
        settings: WalHealthSettings,
        status: StatusPublisher,
        metrics: Arc<Metrics>,
        liveness: Arc<Liveness>,
        hints: LeaderHints,
        lifeline: Lifeline,
    ) -> Self {
        WalHealthActor {
            settings,
            status,
            metrics,
            liveness,
            hints,
            session: None,
            running: false,
            last_error: None,
            _lifeline: lifeline,
        }
    }

    fn tick(&mut self, ctx: &mut Context<Self>) {
        injected_panic("wal_health");
        self.liveness.beat("wal_health", self.settings.interval);
        if self.running {
            return; // the previous check is still inside its timeouts
        }
        self.running = true;
        let settings = self.settings.clone();
        let session = self.session.take();
        let started = Instant::now();
        let check = async move { check(&settings, session).await };
        ctx.spawn(check.into_actor(self).map(move |(result, session), act, _ctx| {
            act.running = false;
            act.session = session;
            act.metrics
                .wal_check_duration
                .observe(started.elapsed().as_secs_f64());
            let cnpg_slots = act.hints.cnpg_slots();
            match result {
                Ok(health) => {
                    if act.last_error.take().is_some() {
                        tracing::info!("WAL health available again");
                    }
                    tracing::debug!(
                        archive_healthy = health.archive_healthy,
                        archiving_configured = health.archiving_configured,
                        pending_wal_files = health.pending_wal_files,
                        inactive_slots = health.inactive_slots.len(),
                        slots_known = health.slots_known,
                        "WAL health check complete"
                    );
                    act.metrics.record_wal_health(Some(&health), &cnpg_slots);
                    act.status.set_wal_health(Some(health));
                }
                Err(error) => {
                    if act.last_error.as_ref() != Some(&error) {
                        tracing::warn!(%error, "WAL health unavailable; resizes of WAL volumes fail open");
                    }
                    act.last_error = Some(error);
                    act.metrics.record_wal_health(None, &cnpg_slots);
                    act.status.set_wal_health(None);
                }
            }
        }));
    }
}

impl Actor for WalHealthActor {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        self.tick(ctx);
        ctx.run_interval(self.settings.interval, |act, ctx| act.tick(ctx));
    }
}

/// Client-side backstop beyond the server-side `statement_timeout`.
const CLIENT_GRACE: Duration = Duration::from_secs(1);

/// Runs `query` bounded by `limit` on the client too; a client timeout
/// cancels the query and poisons the session (it is re-opened next time).
async fn bounded<T>(
    session: &PgSession,
    what: &str,
    limit: Duration,
    query: impl Future<Output = Result<T, tokio_postgres::Error>>,
) -> Result<T, Failure> {
    match timeout(limit + CLIENT_GRACE, query).await {
        Ok(Ok(v)) => Ok(v),
        Ok(Err(e)) if e.code() == Some(&tokio_postgres::error::SqlState::QUERY_CANCELED) => {
            Err(Failure::Query(format!(
                "{what}: no answer within {}ms (cancelled by statement_timeout)",
                limit.as_millis()
            )))
        }
        Ok(Err(e)) if e.is_closed() => Err(Failure::Session(format!("{what}: {e}"))),
        Ok(Err(e)) => Err(Failure::Query(format!("{what}: {e}"))),
        Err(_) => {
            let cancel = session.client.cancel_token();
            tokio::spawn(async move {
                let _ = cancel.cancel_query(NoTls).await;
            });
            Err(Failure::Session(format!(
                "{what}: no answer within {}ms",
                (limit + CLIENT_GRACE).as_millis()
            )))
        }
    }
}

/// Why a check failed: a query error leaves the session usable; anything
/// else (a closed connection, a client-side timeout) means reconnect.
enum Failure {
    Query(String),
    Session(String),
}

async fn connect(settings: &WalHealthSettings) -> Result<PgSession, String> {
    let mut pg = settings.pg.clone();
    // Server-side bound on every statement of the session.
    pg.options(format!(
        "-c statement_timeout={}",
        settings.statement_timeout.as_millis()
    ));
    pg.application_name("cnpg-autoresize");
    let (client, connection) = match timeout(settings.connect_timeout, pg.connect(NoTls)).await {
        Ok(result) => result.map_err(|e| format!("connect: {e}"))?,
        Err(_) => {
            return Err(format!(
                "connect: no answer within {}ms",
                settings.connect_timeout.as_millis()
            ))
        }
    };
    let connection = tokio::spawn(async move {
        let _ = connection.await;
    });
    Ok(PgSession { client, connection })
}

/// One health check, on `session` if it is still open (else a new one).
/// Returns the session to keep, None when it must be re-opened.
pub async fn check(
    settings: &WalHealthSettings,
    session: Option<PgSession>,
) -> (Result<WalHealth, String>, Option<PgSession>) {
    let session = match session.filter(|s| !s.client.is_closed()) {
        Some(s) => s,
        None => match connect(settings).await {
            Ok(s) => s,
            Err(e) => return (Err(e), None),
        },
    };
    match check_on(&session, settings).await {
        Ok(health) => (Ok(health), Some(session)),
        Err(Failure::Query(e)) => (Err(e), Some(session)),
        Err(Failure::Session(e)) => (Err(e), None),
    }
}

async fn check_on(session: &PgSession, settings: &WalHealthSettings) -> Result<WalHealth, Failure> {
    let client = &session.client;
    let limit = settings.statement_timeout;
    let row = bounded(
        session,
        "settings query",
        limit,
        client.query_one(SETTINGS_QUERY, &[]),
    )
    .await?;
    let (in_recovery, mode, command, library, data_directory) =
        settings_of(&row).map_err(Failure::Query)?;
    let configured = match mode.as_str() {
        "always" => true,
        "on" => !in_recovery, // archive_mode=on archives only on the primary
        _ => false,
    } && (!library.is_empty() || !(command.is_empty() || command == "(disabled)"));

    let failing: bool = bounded(
        session,
        "pg_stat_archiver query",
        limit,
        client.query_one(ARCHIVER_QUERY, &[]),
    )
    .await?
    .try_get(0)
    .map_err(|e| Failure::Query(format!("pg_stat_archiver: {e}")))?;

    let status_dir = Path::new(&data_directory)
        .join("pg_wal")
        .join("archive_status");
    let pending = match count_ready(&status_dir) {
        Ok(n) => n,
        // The filesystem is the source; the monitor role's SQL view is the
        // fallback when this container cannot read the directory.
        Err(_) => {
            let n: i64 = bounded(
                session,
                "archive status query",
                limit,
                client.query_one(READY_QUERY, &[]),
            )
            .await?
            .try_get(0)
            .map_err(|e| Failure::Query(format!("archive status: {e}")))?;
            n.max(0) as u64
        }
    };

    // The slot query has its own bound, server-side as well.
    let slot_limit = settings.slot_query_timeout;
    let set = |ms: u128| format!("SET statement_timeout = {ms}");
    bounded(
        session,
        "setting the slot query timeout",
        limit,
        client.batch_execute(&set(slot_limit.as_millis())),
    )
    .await?;
    let slots = bounded(
        session,
        "slot query",
        slot_limit,
        client.query(SLOTS_QUERY, &[]),
    )
    .await;
    // Unknown slots are never "no slots": a timeout is reported as such.
    let (inactive_slots, slots_known) = match slots {
        Ok(rows) => (slots_of(&rows).map_err(Failure::Query)?, true),
        Err(Failure::Query(error)) => {
            tracing::warn!(%error, "replication slot data unknown this round");
            (Vec::new(), false)
        }
        Err(session_failure) => return Err(session_failure),
    };
    bounded(
        session,
        "resetting the statement timeout",
        limit,
        client.batch_execute(&set(limit.as_millis())),
    )
    .await?;

    Ok(WalHealth {
        archive_healthy: !failing,
        archiving_configured: configured,
        pending_wal_files: pending,
        inactive_slots,
        slots_known,
        in_recovery: Some(in_recovery),
    })
}

fn settings_of(row: &Row) -> Result<(bool, String, String, String, String), String> {
    let e = |e: tokio_postgres::Error| format!("settings query: {e}");
    Ok((
        row.try_get(0).map_err(e)?,
        row.try_get(1).map_err(e)?,
        row.try_get(2).map_err(e)?,
        row.try_get(3).map_err(e)?,
        row.try_get(4).map_err(e)?,
    ))
}

fn slots_of(rows: &[Row]) -> Result<Vec<InactiveSlot>, String> {
    rows.iter()
        .map(|row| {
            let name: String = row.try_get(0).map_err(|e| format!("slot query: {e}"))?;
            let bytes: i64 = row.try_get(1).map_err(|e| format!("slot query: {e}"))?;
            Ok(InactiveSlot {
                slot_name: name,
                retention_bytes: bytes.max(0) as u64,
            })
        })
        .collect()
}

fn count_ready(dir: &Path) -> std::io::Result<u64> {
    let mut n = 0;
    for entry in std::fs::read_dir(dir)? {
        if entry?.file_name().to_string_lossy().ends_with(".ready") {
            n += 1;
        }
    }
    Ok(n)
}
