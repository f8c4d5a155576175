//! WalHealth: asks the local PostgreSQL about archiving and replication
//! slots. Every query runs under a timeout (the slot query under its own),
//! on a connection opened for the check, so a hung server never blocks the
//! probe, the metrics or the planner. Works as a role with only `pg_monitor`.

use super::status::StatusPublisher;
use super::supervision::Liveness;
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
    running: bool,
    last_error: Option<String>,
}

impl WalHealthActor {
    pub fn new(
        settings: WalHealthSettings,
        status: StatusPublisher,
        metrics: Arc<Metrics>,
        liveness: Arc<Liveness>,
    ) -> Self {
        WalHealthActor {
            settings,
            status,
            metrics,
            liveness,
            running: false,
            last_error: None,
        }
    }

    fn tick(&mut self, ctx: &mut Context<Self>) {
        self.liveness.beat("wal_health", self.settings.interval);
        if self.running {
            return; // the previous check is still inside its timeouts
        }
        self.running = true;
        let settings = self.settings.clone();
        let started = Instant::now();
        let check = async move { check(&settings).await };
        ctx.spawn(check.into_actor(self).map(move |result, act, _ctx| {
            act.running = false;
            act.metrics
                .wal_check_duration
                .observe(started.elapsed().as_secs_f64());
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
                    act.metrics.record_wal_health(Some(&health));
                    act.status.set_wal_health(Some(health));
                }
                Err(error) => {
                    if act.last_error.as_ref() != Some(&error) {
                        tracing::warn!(%error, "WAL health unavailable; resizes of WAL volumes fail open");
                    }
                    act.last_error = Some(error);
                    act.metrics.record_wal_health(None);
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

impl Supervised for WalHealthActor {
    fn restarting(&mut self, _ctx: &mut Context<Self>) {
        tracing::warn!(actor = "wal_health", "restarting");
        self.running = false;
        self.metrics
            .actor_restarts
            .with_label_values(&["wal_health"])
            .inc();
    }
}

/// Runs `query` under `limit`; on timeout the server-side query is cancelled.
async fn bounded<T>(
    client: &Client,
    what: &str,
    limit: Duration,
    query: impl Future<Output = Result<T, tokio_postgres::Error>>,
) -> Result<T, String> {
    match timeout(limit, query).await {
        Ok(result) => result.map_err(|e| format!("{what}: {e}")),
        Err(_) => {
            let cancel = client.cancel_token();
            tokio::spawn(async move {
                let _ = cancel.cancel_query(NoTls).await;
            });
            Err(format!("{what}: no answer within {}ms", limit.as_millis()))
        }
    }
}

/// One health check on a fresh connection, dropped at the end.
pub async fn check(settings: &WalHealthSettings) -> Result<WalHealth, String> {
    let (client, connection) =
        match timeout(settings.connect_timeout, settings.pg.connect(NoTls)).await {
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
    let result = check_on(&client, settings).await;
    drop(client);
    connection.abort();
    result
}

async fn check_on(client: &Client, settings: &WalHealthSettings) -> Result<WalHealth, String> {
    let limit = settings.statement_timeout;
    let row = bounded(
        client,
        "settings query",
        limit,
        client.query_one(SETTINGS_QUERY, &[]),
    )
    .await?;
    let (in_recovery, mode, command, library, data_directory) = settings_of(&row)?;
    let configured = match mode.as_str() {
        "always" => true,
        "on" => !in_recovery, // archive_mode=on archives only on the primary
        _ => false,
    } && (!library.is_empty() || !(command.is_empty() || command == "(disabled)"));

    let failing: bool = bounded(
        client,
        "pg_stat_archiver query",
        limit,
        client.query_one(ARCHIVER_QUERY, &[]),
    )
    .await?
    .try_get(0)
    .map_err(|e| format!("pg_stat_archiver: {e}"))?;

    let status_dir = Path::new(&data_directory)
        .join("pg_wal")
        .join("archive_status");
    let pending = match count_ready(&status_dir) {
        Ok(n) => n,
        // The filesystem is the source; the monitor role's SQL view is the
        // fallback when this container cannot read the directory.
        Err(_) => {
            let n: i64 = bounded(
                client,
                "archive status query",
                limit,
                client.query_one(READY_QUERY, &[]),
            )
            .await?
            .try_get(0)
            .map_err(|e| format!("archive status: {e}"))?;
            n.max(0) as u64
        }
    };

    // Unknown slots are never "no slots": a timeout is reported as such.
    let (inactive_slots, slots_known) = match bounded(
        client,
        "slot query",
        settings.slot_query_timeout,
        client.query(SLOTS_QUERY, &[]),
    )
    .await
    {
        Ok(rows) => (slots_of(&rows)?, true),
        Err(error) => {
            tracing::warn!(%error, "replication slot data unknown this round");
            (Vec::new(), false)
        }
    };

    Ok(WalHealth {
        archive_healthy: !failing,
        archiving_configured: configured,
        pending_wal_files: pending,
        inactive_slots,
        slots_known,
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
