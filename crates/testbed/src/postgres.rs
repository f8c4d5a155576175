//! Real PostgreSQL servers for tests: a primary and streaming replicas laid
//! out like CloudNativePG instances, on [`Volume`]s.
//!
//! Layout per server (CloudNativePG's conventions):
//!
//! | what | where |
//! |---|---|
//! | PGDATA | `<data volume>/pgdata` |
//! | WAL (separate WAL volume) | `<wal volume>/pg_wal` (`initdb --waldir`, symlinked from PGDATA) |
//! | tablespace `<name>` | `<tablespace volume>/data` |
//! | socket, archive, log, failure flag | a private temporary work directory |
//!
//! Each server listens on its own loopback address (127.0.0.2, 127.0.0.3, …
//! stand in for pod IPs) and a free port. Host connections use
//! `scram-sha-256`; the superuser is `postgres` with a random password
//! ([`PgServer::dsn`]).
//!
//! Archiving is on, with an `archive_command` that copies each segment into
//! [`PgServer::archive_dir`] unless the flag file of
//! [`PgServer::set_archive_failing`] exists — so archiving can be broken and
//! repaired without a reload, and `pg_stat_archiver` reacts as in production.
//!
//! As root, every PostgreSQL binary runs as the `postgres` user and the
//! directories handed to PostgreSQL are chowned to it. Dropping a
//! [`PgServer`] stops it (`pg_ctl stop -m immediate`, then SIGKILL of the
//! postmaster and its children) so no process outlives a failed test.

use crate::{net, RunAs, Volume};
use anyhow::{anyhow, bail, Context, Result};
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use std::collections::BTreeMap;
use std::ffi::OsStr;
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::process::Output;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};
use std::time::{Duration, Instant};
use tokio_postgres::{Client, NoTls};

/// The WAL segment size: initdb's default, which the test bed keeps.
pub const WAL_SEGMENT_BYTES: u64 = 16 << 20;

/// The exit code of CloudNativePG's instance manager when PostgreSQL cannot
/// start for lack of WAL space (`apiv1.MissingWALDiskSpaceExitCode`).
pub const MISSING_WAL_DISK_SPACE_EXIT_CODE: i32 = 4;

/// What [`PgServer::start_as_instance_manager`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InstanceManagerStart {
    /// PostgreSQL runs.
    Started,
    /// Not started: no room for one WAL segment.
    NoWalSpace,
}

/// CloudNativePG's monitoring role, reached by peer authentication.
pub const METRICS_EXPORTER_ROLE: &str = "cnpg_metrics_exporter";

/// The superuser created by `initdb -U`.
pub const SUPERUSER: &str = "postgres";

/// Upper bound for any one PostgreSQL command (initdb, pg_ctl, pg_basebackup).
const COMMAND_TIMEOUT: Duration = Duration::from_secs(120);

/// Environment variable naming a PostgreSQL `bin` directory to use instead of discovery.
pub const PG_BINDIR_ENV: &str = "CNPG_TESTBED_PG_BINDIR";

/// Name of the flag file whose presence makes `archive_command` fail.
const ARCHIVE_FAIL_FLAG: &str = "archive-fail";

/// The PostgreSQL server binaries in use.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PgBinaries {
    bin_dir: PathBuf,
}

impl PgBinaries {
    /// Find the PostgreSQL binaries: `$CNPG_TESTBED_PG_BINDIR` if set, then
    /// the directory of `initdb` found on `PATH` (symlinks resolved, so
    /// `/usr/local/bin/initdb -> /usr/lib/postgresql/15/bin/initdb` works),
    /// then the highest `/usr/lib/postgresql/<version>/bin` (Debian/Ubuntu
    /// `apt-get install postgresql`, where `initdb` is not on `PATH`).
    pub fn discover() -> Result<PgBinaries> {
        static FOUND: OnceLock<PathBuf> = OnceLock::new();
        if let Some(dir) = FOUND.get() {
            return Ok(PgBinaries {
                bin_dir: dir.clone(),
            });
        }
        let dir = discover_bin_dir()?;
        Ok(PgBinaries {
            bin_dir: FOUND.get_or_init(|| dir).clone(),
        })
    }

    /// The `bin` directory holding `initdb`, `postgres`, `pg_ctl`, `pg_basebackup`.
    pub fn bin_dir(&self) -> &Path {
        &self.bin_dir
    }

    /// Full path of one binary.
    pub fn binary(&self, name: &str) -> PathBuf {
        self.bin_dir.join(name)
    }
}

const REQUIRED_BINARIES: [&str; 4] = ["initdb", "postgres", "pg_ctl", "pg_basebackup"];

fn has_all_binaries(dir: &Path) -> bool {
    REQUIRED_BINARIES.iter().all(|b| dir.join(b).is_file())
}

fn discover_bin_dir() -> Result<PathBuf> {
    if let Some(dir) = std::env::var_os(PG_BINDIR_ENV) {
        let dir = PathBuf::from(dir);
        if !has_all_binaries(&dir) {
            bail!(
                "${PG_BINDIR_ENV}={} lacks one of {REQUIRED_BINARIES:?}",
                dir.display()
            );
        }
        return Ok(dir);
    }
    if let Some(path) = std::env::var_os("PATH") {
        for dir in std::env::split_paths(&path) {
            let initdb = dir.join("initdb");
            if let Ok(real) = initdb.canonicalize() {
                if let Some(parent) = real.parent() {
                    if has_all_binaries(parent) {
                        return Ok(parent.to_path_buf());
                    }
                }
            }
        }
    }
    let mut candidates: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| {
            let version: u32 = e.file_name().to_str()?.parse().ok()?;
            let bin = e.path().join("bin");
            has_all_binaries(&bin).then_some((version, bin))
        })
        .collect();
    candidates.sort();
    candidates.pop().map(|(_, bin)| bin).ok_or_else(|| {
        anyhow!(
            "no PostgreSQL server binaries found: no initdb on PATH and nothing in \
             /usr/lib/postgresql/*/bin (apt-get install postgresql, or set ${PG_BINDIR_ENV})"
        )
    })
}

/// How a server gets its data: `initdb`, or a base backup of a primary.
#[derive(Debug, Clone)]
enum Origin {
    Initdb,
    Replica(Upstream),
}

/// What a replica needs to know about its primary.
#[derive(Debug, Clone)]
struct Upstream {
    name: String,
    ip: Ipv4Addr,
    port: u16,
    password: String,
    /// Tablespace name -> location on the primary.
    tablespaces: BTreeMap<String, PathBuf>,
    replicas: Arc<AtomicUsize>,
}

/// Builder for a [`PgServer`]; see [`PgServer::primary`] and [`PgServer::replica`].
/// Cloneable, so a failed clone can be retried with the same settings.
#[derive(Debug, Clone)]
pub struct PgServerBuilder {
    name: String,
    origin: Origin,
    data_volume: Arc<Volume>,
    wal_volume: Option<Arc<Volume>>,
    tablespace_volumes: BTreeMap<String, Arc<Volume>>,
    ip: Option<Ipv4Addr>,
    slot: Option<String>,
    /// Whether `pg_basebackup -C` creates `slot` on the primary.
    create_slot: bool,
    settings: Vec<(String, String)>,
}

impl PgServerBuilder {
    /// Put WAL on its own volume (`<volume>/pg_wal`), like CNPG's `walStorage`.
    pub fn wal_volume(mut self, volume: Arc<Volume>) -> Self {
        self.wal_volume = Some(volume);
        self
    }

    /// Listen on `ip` instead of the next free loopback address.
    pub fn ip(mut self, ip: Ipv4Addr) -> Self {
        self.ip = Some(ip);
        self
    }

    /// Extra `postgresql.conf` setting for this server (`value` is written
    /// verbatim, so quote strings: `.setting("work_mem", "'8MB'")`).
    pub fn setting(mut self, name: &str, value: &str) -> Self {
        self.settings.push((name.to_string(), value.to_string()));
        self
    }

    /// Replicas only: the volume that holds this replica's copy of the
    /// primary's tablespace `name` (every primary tablespace needs one —
    /// two servers on one host cannot share a tablespace directory).
    pub fn tablespace_volume(mut self, name: &str, volume: Arc<Volume>) -> Self {
        self.tablespace_volumes.insert(name.to_string(), volume);
        self
    }

    /// Replicas only: stream through a physical replication slot of this
    /// name on the primary (created by `pg_basebackup -C`).
    pub fn replication_slot(mut self, slot: &str) -> Self {
        self.slot = Some(slot.to_string());
        self.create_slot = true;
        self
    }

    /// Replicas only: stream through the primary's slot `slot`
    /// (`primary_slot_name`) that someone else creates on the primary — as
    /// CloudNativePG's primary creates `_cnpg_<instance>` for each standby.
    /// Until it exists the standby's WAL receiver retries.
    pub fn primary_slot_name(mut self, slot: &str) -> Self {
        self.slot = Some(slot.to_string());
        self.create_slot = false;
        self
    }

    /// Create the data directory and start the server; returns once it
    /// accepts connections.
    pub async fn start(self) -> Result<PgServer> {
        let bins = PgBinaries::discover()?;
        let run_as = RunAs::postgres()?;
        let ip = match self.ip {
            Some(ip) => ip,
            None => net::next_loopback_ip()?,
        };
        let work = tempfile::Builder::new()
            .prefix(&format!("cnpg-testbed-{}-", self.name))
            .tempdir()
            .context("creating the server's work directory")?;
        for sub in ["socket", "archive", "log"] {
            let dir = work.path().join(sub);
            std::fs::create_dir(&dir).with_context(|| format!("mkdir {}", dir.display()))?;
            run_as.chown(&dir)?;
        }
        run_as.chown(work.path())?;

        let pgdata = self.data_volume.path().join("pgdata");
        let wal_dir = match &self.wal_volume {
            Some(v) => v.path().join("pg_wal"),
            None => pgdata.join("pg_wal"),
        };
        let password = match &self.origin {
            Origin::Initdb => random_password()?,
            Origin::Replica(up) => up.password.clone(),
        };
        let mut tablespaces = BTreeMap::new();
        if let Origin::Replica(up) = &self.origin {
            for name in up.tablespaces.keys() {
                let vol = self.tablespace_volumes.get(name).with_context(|| {
                    format!(
                        "replica {} needs a volume for tablespace {name:?} of primary {} \
                         (PgServerBuilder::tablespace_volume)",
                        self.name, up.name
                    )
                })?;
                tablespaces.insert(name.clone(), vol.clone());
            }
        } else if !self.tablespace_volumes.is_empty() {
            bail!(
                "primary {}: create tablespaces with PgServer::create_tablespace once it runs",
                self.name
            );
        }

        let server = PgServer {
            name: self.name,
            bins,
            run_as,
            ip,
            port: Mutex::new(0),
            data_volume: self.data_volume,
            wal_volume: self.wal_volume,
            tablespaces: Mutex::new(tablespaces),
            pgdata,
            wal_dir,
            password,
            settings: self.settings,
            primary_slot: self.slot,
            create_primary_slot: self.create_slot,
            upstream: match &self.origin {
                Origin::Initdb => None,
                Origin::Replica(up) => Some(up.clone()),
            },
            replicas: Arc::new(AtomicUsize::new(0)),
            postmaster: Mutex::new(None),
            work,
        };
        match &self.origin {
            Origin::Initdb => server.initdb().await?,
            Origin::Replica(up) => {
                if let Err(e) = server.base_backup(up).await {
                    // Leave the volumes empty, as a failed CNPG join does, so
                    // a retry starts from scratch.
                    if let Err(clean) = server.remove_cloned_data() {
                        tracing::warn!(server = %server.name, error = %format!("{clean:#}"),
                            "could not clean up after a failed base backup");
                    }
                    return Err(e);
                }
                up.replicas.fetch_add(1, Ordering::SeqCst);
            }
        }
        server.start_with_port_retries().await?;
        if server.upstream.is_none() {
            server.setup_metrics_exporter_role().await?;
        }
        Ok(server)
    }
}

/// One running (or stopped) PostgreSQL server. See the module docs.
#[derive(Debug)]
pub struct PgServer {
    name: String,
    bins: PgBinaries,
    run_as: RunAs,
    ip: Ipv4Addr,
    port: Mutex<u16>,
    data_volume: Arc<Volume>,
    wal_volume: Option<Arc<Volume>>,
    tablespaces: Mutex<BTreeMap<String, Arc<Volume>>>,
    pgdata: PathBuf,
    wal_dir: PathBuf,
    password: String,
    settings: Vec<(String, String)>,
    primary_slot: Option<String>,
    create_primary_slot: bool,
    upstream: Option<Upstream>,
    /// Replicas cloned from this server (tablespaces must exist before them).
    replicas: Arc<AtomicUsize>,
    /// Pid of the running postmaster, if we started it and it was not stopped.
    postmaster: Mutex<Option<i32>>,
    /// Declared last: removed after the server is stopped in `Drop`.
    work: tempfile::TempDir,
}

impl PgServer {
    /// A primary named `name` (used in `application_name`, temp dir names
    /// and logs) whose PGDATA lives on `data_volume`.
    pub fn primary(name: &str, data_volume: Arc<Volume>) -> PgServerBuilder {
        PgServerBuilder {
            name: name.to_string(),
            origin: Origin::Initdb,
            data_volume,
            wal_volume: None,
            tablespace_volumes: BTreeMap::new(),
            ip: None,
            slot: None,
            create_slot: false,
            settings: Vec::new(),
        }
    }

    /// A streaming replica of this server, cloned with `pg_basebackup`
    /// (`-X stream -c fast`; `standby.signal` and `primary_conninfo` with
    /// `application_name=<name>` are written as `-R` would).
    pub fn replica(&self, name: &str, data_volume: Arc<Volume>) -> PgServerBuilder {
        let tablespaces = lock(&self.tablespaces)
            .iter()
            .map(|(n, v)| (n.clone(), tablespace_location(v)))
            .collect();
        PgServerBuilder {
            name: name.to_string(),
            origin: Origin::Replica(Upstream {
                name: self.name.clone(),
                ip: self.ip,
                port: self.port(),
                password: self.password.clone(),
                tablespaces,
                replicas: self.replicas.clone(),
            }),
            data_volume,
            wal_volume: None,
            tablespace_volumes: BTreeMap::new(),
            ip: None,
            slot: None,
            create_slot: false,
            settings: Vec::new(),
        }
    }

    /// The server's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The address it listens on.
    pub fn ip(&self) -> Ipv4Addr {
        self.ip
    }

    /// The port it listens on.
    pub fn port(&self) -> u16 {
        *lock(&self.port)
    }

    /// PGDATA.
    pub fn pgdata(&self) -> &Path {
        &self.pgdata
    }

    /// The real WAL directory (on the WAL volume when there is one).
    pub fn wal_dir(&self) -> &Path {
        &self.wal_dir
    }

    /// The volume holding PGDATA.
    pub fn data_volume(&self) -> &Arc<Volume> {
        &self.data_volume
    }

    /// The separate WAL volume, if any.
    pub fn wal_volume(&self) -> Option<&Arc<Volume>> {
        self.wal_volume.as_ref()
    }

    /// The volume of tablespace `name`, if any.
    pub fn tablespace_volume(&self, name: &str) -> Option<Arc<Volume>> {
        lock(&self.tablespaces).get(name).cloned()
    }

    /// Where `archive_command` copies segments.
    pub fn archive_dir(&self) -> PathBuf {
        self.work.path().join("archive")
    }

    /// The Unix socket directory (private to this server).
    pub fn socket_dir(&self) -> PathBuf {
        self.work.path().join("socket")
    }

    /// The server log (`pg_ctl -l`).
    pub fn log_file(&self) -> PathBuf {
        self.work.path().join("log").join("postgres.log")
    }

    /// The superuser's password.
    pub fn superuser_password(&self) -> &str {
        &self.password
    }

    /// Whether this server is a standby (created with [`PgServer::replica`]).
    pub fn is_replica(&self) -> bool {
        self.upstream.is_some()
    }

    /// libpq connection string of the superuser (TCP, database `postgres`).
    pub fn dsn(&self) -> String {
        self.dsn_for(SUPERUSER, &self.password)
    }

    /// libpq connection string for `user`/`password` (TCP, database `postgres`).
    pub fn dsn_for(&self, user: &str, password: &str) -> String {
        format!(
            "host={} port={} user={} password={} dbname=postgres connect_timeout=10",
            self.ip,
            self.port(),
            libpq_quote(user),
            libpq_quote(password)
        )
    }

    /// Connect as the superuser; the connection task is spawned on the
    /// current tokio runtime.
    pub async fn connect(&self) -> Result<Client> {
        self.connect_as(SUPERUSER, &self.password).await
    }

    /// Connect as `user`/`password`.
    pub async fn connect_as(&self, user: &str, password: &str) -> Result<Client> {
        connect(&self.name, self.ip, self.port(), user, password).await
    }

    /// What it takes to connect as the superuser, detached from this
    /// handle (for background tasks such as the HA slot synchroniser).
    pub fn endpoint(&self) -> PgEndpoint {
        PgEndpoint {
            name: self.name.clone(),
            ip: self.ip,
            port: self.port(),
            password: self.password.clone(),
        }
    }

    /// CloudNativePG's `cnpg_metrics_exporter` (as its instance manager
    /// sets it up): login, no password, a member of `pg_monitor` only.
    async fn setup_metrics_exporter_role(&self) -> Result<()> {
        let client = self.connect().await?;
        let sql = format!(
            "CREATE ROLE {METRICS_EXPORTER_ROLE} WITH LOGIN PASSWORD NULL \
             NOSUPERUSER NOCREATEDB NOCREATEROLE NOREPLICATION NOBYPASSRLS INHERIT \
             IN ROLE pg_monitor"
        );
        client
            .batch_execute(&sql)
            .await
            .with_context(|| format!("creating {METRICS_EXPORTER_ROLE} on {}", self.name))
    }

    /// The libpq connection string CloudNativePG's metrics exporter (and the
    /// chart's sidecar by default) uses: the Unix socket in `socket_dir`,
    /// peer authentication, no password. Only a process running as
    /// PostgreSQL's OS user gets in.
    pub fn metrics_exporter_dsn(&self, socket_dir: &Path) -> String {
        format!(
            "host={} port={} user={METRICS_EXPORTER_ROLE} dbname=postgres connect_timeout=10",
            libpq_quote(&socket_dir.to_string_lossy()),
            self.port()
        )
    }

    /// The OS identity PostgreSQL runs as.
    pub fn run_as(&self) -> &RunAs {
        &self.run_as
    }

    /// Create a login role that is a member of `pg_monitor` and nothing
    /// else (no superuser, no other grants) — the least privilege the
    /// product's WAL health check needs.
    pub async fn create_monitor_role(&self, name: &str, password: &str) -> Result<()> {
        let client = self.connect().await?;
        let sql = format!(
            "CREATE ROLE {} LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOREPLICATION \
             PASSWORD {} IN ROLE pg_monitor",
            quote_ident(name),
            quote_literal(password)
        );
        client
            .batch_execute(&sql)
            .await
            .with_context(|| format!("creating monitor role {name} on {}", self.name))
    }

    /// Create tablespace `name` at `<volume>/data` (CNPG's layout). Must
    /// happen before replicas are cloned: a standby on the same host would
    /// replay `CREATE TABLESPACE` into the primary's directory.
    pub async fn create_tablespace(&self, name: &str, volume: Arc<Volume>) -> Result<()> {
        if self.replicas.load(Ordering::SeqCst) > 0 {
            bail!(
                "create tablespace {name} on {} before cloning replicas \
                 (a standby on this host would replay it into the same directory)",
                self.name
            );
        }
        if self.is_replica() {
            bail!(
                "{} is a standby; create tablespaces on the primary",
                self.name
            );
        }
        let location = tablespace_location(&volume);
        std::fs::create_dir(&location).with_context(|| format!("mkdir {}", location.display()))?;
        self.run_as.chown(&location)?;
        let location_str = location
            .to_str()
            .with_context(|| format!("tablespace path {} is not UTF-8", location.display()))?;
        let client = self.connect().await?;
        client
            .batch_execute(&format!(
                "CREATE TABLESPACE {} LOCATION {}",
                quote_ident(name),
                quote_literal(location_str)
            ))
            .await
            .with_context(|| format!("CREATE TABLESPACE {name} on {}", self.name))?;
        lock(&self.tablespaces).insert(name.to_string(), volume);
        Ok(())
    }

    /// Create an inactive physical replication slot that reserves WAL right
    /// away (`pg_create_physical_replication_slot(name, true)`), so WAL
    /// piles up behind it.
    pub async fn create_inactive_physical_slot(&self, name: &str) -> Result<()> {
        let client = self.connect().await?;
        client
            .execute(
                "SELECT pg_create_physical_replication_slot($1, true)",
                &[&name],
            )
            .await
            .with_context(|| format!("creating physical slot {name} on {}", self.name))?;
        Ok(())
    }

    /// Bytes of WAL retained by slot `name`, measured from this server's
    /// WAL position (`pg_current_wal_lsn()` on a primary,
    /// `pg_last_wal_replay_lsn()` on a standby — as the product measures),
    /// `None` if the slot does not exist or reserves nothing.
    pub async fn slot_retained_bytes(&self, name: &str) -> Result<Option<i64>> {
        let client = self.connect().await?;
        let row = client
            .query_opt(
                &format!(
                    "SELECT pg_wal_lsn_diff({WAL_POSITION}, restart_lsn)::bigint \
                     FROM pg_replication_slots WHERE slot_name = $1"
                ),
                &[&name],
            )
            .await
            .with_context(|| format!("reading slot {name} on {}", self.name))?;
        Ok(row.and_then(|r| r.get::<_, Option<i64>>(0)))
    }

    /// This server's non-temporary physical replication slots, by name.
    pub async fn physical_slots(&self) -> Result<Vec<SlotInfo>> {
        let client = self.connect().await?;
        physical_slots(&client)
            .await
            .with_context(|| format!("listing replication slots on {}", self.name))
    }

    /// This server's WAL position as text: `pg_current_wal_lsn()` on a
    /// primary, `pg_last_wal_replay_lsn()` on a standby.
    pub async fn wal_position(&self) -> Result<String> {
        let client = self.connect().await?;
        let row = client
            .query_one(&format!("SELECT ({WAL_POSITION})::text"), &[])
            .await
            .with_context(|| format!("reading the WAL position of {}", self.name))?;
        row.get::<_, Option<String>>(0)
            .with_context(|| format!("{} has no WAL position yet", self.name))
    }

    /// The slot this standby streams through (`primary_slot_name`), if any.
    pub fn primary_slot(&self) -> Option<&str> {
        self.primary_slot.as_deref()
    }

    /// Write at least `bytes` of WAL without growing any table (logical
    /// decoding messages of up to 1 MiB, which are plain WAL records), then
    /// `pg_switch_wal()` so the segment is closed and queued for archiving.
    /// Returns the WAL bytes actually written.
    pub async fn generate_wal(&self, bytes: u64) -> Result<u64> {
        const CHUNK: u64 = 1 << 20;
        let client = self.connect().await?;
        let ctx = || format!("generating WAL on {}", self.name);
        let start: String = client
            .query_one("SELECT pg_current_wal_insert_lsn()::text", &[])
            .await
            .with_context(ctx)?
            .get(0);
        loop {
            let done = wal_written_since(&client, &start).await.with_context(ctx)?;
            if done >= bytes {
                break;
            }
            let size = (bytes - done).clamp(1, CHUNK) as i32;
            client
                .execute(
                    "SELECT pg_logical_emit_message(false, 'cnpg-testbed', repeat('x', $1))",
                    &[&size],
                )
                .await
                .with_context(ctx)?;
        }
        client
            .execute("SELECT pg_switch_wal()", &[])
            .await
            .with_context(ctx)?;
        wal_written_since(&client, &start).await.with_context(ctx)
    }

    /// Make `archive_command` fail (`true`) or succeed again (`false`),
    /// effective at its next run — no reload needed. The archiver retries a
    /// failed segment three times, then waits for the next segment or 60 s;
    /// [`PgServer::generate_wal`] wakes it.
    pub fn set_archive_failing(&self, failing: bool) -> Result<()> {
        let flag = self.work.path().join(ARCHIVE_FAIL_FLAG);
        if failing {
            std::fs::write(&flag, b"archiving disabled by the test bed\n")
                .with_context(|| format!("creating {}", flag.display()))
        } else {
            match std::fs::remove_file(&flag) {
                Ok(()) => Ok(()),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
                Err(e) => Err(e).with_context(|| format!("removing {}", flag.display())),
            }
        }
    }

    /// Number of `*.ready` files in `<wal dir>/archive_status`: segments
    /// waiting to be archived (read from the filesystem, as the product does).
    pub fn pending_ready_files(&self) -> Result<usize> {
        let dir = self.wal_dir.join("archive_status");
        let entries =
            std::fs::read_dir(&dir).with_context(|| format!("listing {}", dir.display()))?;
        Ok(entries
            .flatten()
            .filter(|e| e.path().extension() == Some(OsStr::new("ready")))
            .count())
    }

    /// Wait until `pg_stat_replication` on this server shows
    /// `application_name` streaming.
    pub async fn wait_for_streaming_replica(
        &self,
        application_name: &str,
        timeout: Duration,
    ) -> Result<()> {
        let deadline = Instant::now() + timeout;
        let client = self.connect().await?;
        loop {
            let row = client
                .query_opt(
                    "SELECT state FROM pg_stat_replication WHERE application_name = $1",
                    &[&application_name],
                )
                .await
                .with_context(|| format!("reading pg_stat_replication on {}", self.name))?;
            if row.as_ref().map(|r| r.get::<_, Option<String>>(0)) == Some(Some("streaming".into()))
            {
                return Ok(());
            }
            if Instant::now() >= deadline {
                bail!(
                    "replica {application_name} not streaming from {} after {timeout:?}; \
                     its log may say why",
                    self.name
                );
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Make every query that reads the `pg_replication_slots` view block
    /// until the returned guard is released or dropped.
    ///
    /// Mechanism: a superuser session runs `ALTER VIEW
    /// pg_catalog.pg_replication_slots SET (security_barrier = false)` in a
    /// transaction it keeps open (and finally rolls back, so nothing
    /// changes). That holds `AccessExclusiveLock` on the view alone; any
    /// query naming the view needs `AccessShareLock` on it while being
    /// parsed, so it waits — like a slot query stuck behind a lock in
    /// production — and can still be cancelled by `statement_timeout`.
    ///
    /// `LOCK TABLE pg_replication_slots` is *not* used: locking a view also
    /// locks every relation of its query, here `pg_database`, which would
    /// block every new connection rather than just the slot query. With
    /// this mechanism new connections, `pg_stat_archiver`,
    /// `pg_stat_replication` and the rest stay usable.
    pub async fn lock_slots_view(&self) -> Result<SlotsViewLock> {
        let client = self.connect().await?;
        client
            .batch_execute(
                "BEGIN; ALTER VIEW pg_catalog.pg_replication_slots SET (security_barrier = false)",
            )
            .await
            .with_context(|| format!("locking pg_replication_slots on {}", self.name))?;
        Ok(SlotsViewLock {
            client: Some(client),
        })
    }

    /// Whether one WAL segment still fits in `pg_wal`, tested as
    /// CloudNativePG's instance manager tests it: by allocating a file of
    /// that size there (removed at once). A directory-backed volume, whose
    /// capacity nothing enforces, compares with its simulated free space.
    pub fn has_space_for_wal_segment(&self) -> Result<bool> {
        let volume = self.wal_volume.as_ref().unwrap_or(&self.data_volume);
        if volume.backend() == crate::VolumeBackend::Directory {
            return Ok(volume.stats()?.available_bytes >= WAL_SEGMENT_BYTES);
        }
        let probe = self.wal_dir.join(".cnpg-testbed-space-probe");
        let file =
            std::fs::File::create(&probe).with_context(|| format!("creating {}", probe.display()));
        let file = match file {
            Ok(f) => f,
            Err(e) if is_enospc(&e) => return Ok(false),
            Err(e) => return Err(e),
        };
        let len = i64::try_from(WAL_SEGMENT_BYTES).context("segment size overflows off_t")?;
        let result = nix::fcntl::fallocate(&file, nix::fcntl::FallocateFlags::empty(), 0, len);
        drop(file);
        std::fs::remove_file(&probe).with_context(|| format!("removing {}", probe.display()))?;
        match result {
            Ok(()) => Ok(true),
            Err(nix::errno::Errno::ENOSPC) => Ok(false),
            Err(e) => Err(e).with_context(|| format!("fallocate {}", probe.display())),
        }
    }

    /// Start PostgreSQL the way CloudNativePG's instance manager does: not
    /// at all when one WAL segment no longer fits (the manager then exits
    /// with [`MISSING_WAL_DISK_SPACE_EXIT_CODE`] and the kubelet restarts
    /// the container, which tries again).
    pub async fn start_as_instance_manager(&self) -> Result<InstanceManagerStart> {
        if !self.has_space_for_wal_segment()? {
            return Ok(InstanceManagerStart::NoWalSpace);
        }
        self.start().await?;
        Ok(InstanceManagerStart::Started)
    }

    /// Start a stopped server (also after [`PgServer::kill`]: stale lock
    /// files of the dead postmaster are removed first, then PostgreSQL runs
    /// crash recovery).
    pub async fn start(&self) -> Result<()> {
        if self.is_running() {
            return Ok(());
        }
        self.remove_stale_lock_files()?;
        self.pg_ctl_start().await
    }

    /// Stop with `pg_ctl stop -m fast` (clean shutdown).
    pub async fn stop(&self) -> Result<()> {
        if !self.is_running() {
            *lock(&self.postmaster) = None;
            return Ok(());
        }
        let pgdata = self.pgdata.to_string_lossy().into_owned();
        let mut cmd = self.command("pg_ctl");
        cmd.args(["stop", "-D", &pgdata, "-m", "fast", "-w", "-t", "60"]);
        self.run(cmd, "pg_ctl stop -m fast").await?;
        *lock(&self.postmaster) = None;
        Ok(())
    }

    /// Crash the server: SIGKILL to the postmaster and all its children at
    /// once (no shutdown checkpoint, nothing cleaned up), and wait until
    /// they are gone.
    pub async fn kill(&self) -> Result<()> {
        let pids = self.process_ids();
        for pid in &pids {
            let _ = kill(Pid::from_raw(*pid), Signal::SIGKILL);
        }
        let deadline = Instant::now() + Duration::from_secs(10);
        while pids.iter().any(|p| pid_alive(*p)) {
            if Instant::now() >= deadline {
                bail!(
                    "processes {pids:?} of {} survived SIGKILL for 10 s",
                    self.name
                );
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        *lock(&self.postmaster) = None;
        Ok(())
    }

    /// Whether our postmaster is alive.
    pub fn is_running(&self) -> bool {
        lock(&self.postmaster).is_some_and(pid_alive)
    }

    /// Pids of the postmaster and all its children (backends, checkpointer,
    /// WAL sender…), empty when not running. For leak checks in tests.
    pub fn process_ids(&self) -> Vec<i32> {
        let Some(pm) = *lock(&self.postmaster) else {
            return Vec::new();
        };
        if !pid_alive(pm) {
            return Vec::new();
        }
        let mut pids = vec![pm];
        pids.extend(children_of(pm));
        pids
    }

    // ---- internals -------------------------------------------------------

    /// Remove what a (failed) base backup left on this server's volumes.
    fn remove_cloned_data(&self) -> Result<()> {
        let mut dirs = vec![self.pgdata.clone()];
        if self.wal_volume.is_some() {
            dirs.push(self.wal_dir.clone());
        }
        dirs.extend(
            lock(&self.tablespaces)
                .values()
                .map(|v| tablespace_location(v)),
        );
        for dir in dirs {
            match std::fs::remove_dir_all(&dir) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(e).with_context(|| format!("removing {}", dir.display())),
            }
        }
        Ok(())
    }

    /// A directory-backed volume never runs out of space by itself (nothing
    /// enforces its simulated capacity), so a base backup that does not fit
    /// fails here the way it fails with ENOSPC on a real filesystem.
    fn check_simulated_space(&self) -> Result<()> {
        let mut volumes: Vec<Arc<Volume>> = vec![self.data_volume.clone()];
        volumes.extend(self.wal_volume.iter().cloned());
        volumes.extend(lock(&self.tablespaces).values().cloned());
        for v in volumes {
            if v.backend() != crate::VolumeBackend::Directory {
                continue;
            }
            let stats = v.stats()?;
            if stats.used_bytes > stats.total_bytes {
                bail!(
                    "pg_basebackup for {}: could not write to {}: No space left on device \
                     (simulated: {} bytes used of {})",
                    self.name,
                    v.path().display(),
                    stats.used_bytes,
                    stats.total_bytes
                );
            }
        }
        Ok(())
    }

    /// A command for PostgreSQL binary `bin`: as `postgres` when root, with
    /// a neutral environment (no inherited `PG*` variables, C locale) and
    /// the work directory as cwd (our cwd may be unreadable for `postgres`).
    fn command(&self, bin: &str) -> tokio::process::Command {
        let mut cmd = tokio::process::Command::new(self.bins.binary(bin));
        for (key, _) in std::env::vars_os() {
            if key.to_string_lossy().starts_with("PG") {
                cmd.env_remove(key);
            }
        }
        cmd.env("LC_ALL", "C")
            .env("LANG", "C")
            .current_dir(self.work.path())
            .stdin(std::process::Stdio::null())
            .kill_on_drop(true);
        if self.run_as.switch {
            cmd.uid(self.run_as.uid.as_raw())
                .gid(self.run_as.gid.as_raw());
        }
        cmd
    }

    /// Run `cmd` to completion; fail with its stderr (and the server log
    /// tail) when it exits non-zero or takes too long.
    async fn run(&self, mut cmd: tokio::process::Command, what: &str) -> Result<Output> {
        let output = tokio::time::timeout(COMMAND_TIMEOUT, cmd.output())
            .await
            .map_err(|_| {
                anyhow!(
                    "{what} for {} timed out after {COMMAND_TIMEOUT:?}",
                    self.name
                )
            })?
            .with_context(|| format!("spawning {what} for {}", self.name))?;
        if !output.status.success() {
            bail!(
                "{what} for {} failed ({}):\nstderr: {}\nstdout: {}\nserver log tail:\n{}",
                self.name,
                output.status,
                String::from_utf8_lossy(&output.stderr).trim(),
                String::from_utf8_lossy(&output.stdout).trim(),
                self.log_tail()
            );
        }
        Ok(output)
    }

    async fn initdb(&self) -> Result<()> {
        let pwfile = self.work.path().join("pwfile");
        std::fs::write(&pwfile, format!("{}\n", self.password))
            .with_context(|| format!("writing {}", pwfile.display()))?;
        self.run_as.chown(&pwfile)?;
        let mut cmd = self.command("initdb");
        cmd.arg("-D")
            .arg(&self.pgdata)
            .args([
                "-U",
                SUPERUSER,
                "--auth-local=trust",
                "--auth-host=scram-sha-256",
            ])
            .args(["-E", "UTF8", "--locale=C", "--no-sync"])
            .arg(format!("--pwfile={}", pwfile.display()));
        if self.wal_volume.is_some() {
            cmd.arg(format!("--waldir={}", self.wal_dir.display()));
        }
        let result = self.run(cmd, "initdb").await;
        let _ = std::fs::remove_file(&pwfile);
        result?;

        // The socket as CloudNativePG (>= 1.30) configures it: peer
        // authentication through its ident maps, cnpg_metrics_exporter for
        // PostgreSQL's own OS user. Loopback connections from any 127/8
        // address (pod IP stand-ins) are password-checked.
        let hba = self.pgdata.join("pg_hba.conf");
        std::fs::write(
            &hba,
            "# written by cnpg-testbed\n\
             local all cnpg_metrics_exporter peer map=cnpg_metrics_exporter\n\
             local all all peer map=local\n\
             host all all 127.0.0.0/8 scram-sha-256\n\
             host replication all 127.0.0.0/8 scram-sha-256\n",
        )
        .with_context(|| format!("writing {}", hba.display()))?;
        let mut ident = String::from("# written by cnpg-testbed\n");
        if let Some(os_user) = self.run_as.user_name() {
            ident.push_str(&format!(
                "local {os_user} {SUPERUSER}\n\
                 {METRICS_EXPORTER_ROLE} {os_user} {METRICS_EXPORTER_ROLE}\n"
            ));
        }
        let ident_file = self.pgdata.join("pg_ident.conf");
        std::fs::write(&ident_file, ident)
            .with_context(|| format!("writing {}", ident_file.display()))?;
        // Server-specific settings live in an included file, which replicas
        // (cloned with pg_basebackup) rewrite for themselves.
        let conf = self.pgdata.join("postgresql.conf");
        let mut text = std::fs::read_to_string(&conf)
            .with_context(|| format!("reading {}", conf.display()))?;
        text.push_str("\ninclude_if_exists = 'testbed.conf'\n");
        std::fs::write(&conf, text).with_context(|| format!("writing {}", conf.display()))?;
        Ok(())
    }

    async fn base_backup(&self, up: &Upstream) -> Result<()> {
        let conninfo = format!(
            "host={} port={} user={SUPERUSER} password={} application_name={}",
            up.ip,
            up.port,
            libpq_quote(&up.password),
            libpq_quote(&self.name)
        );
        let mut cmd = self.command("pg_basebackup");
        cmd.arg("-D").arg(&self.pgdata).args([
            "-d",
            &conninfo,
            "-X",
            "stream",
            "-c",
            "fast",
            "--no-sync",
        ]);
        if self.wal_volume.is_some() {
            cmd.arg(format!("--waldir={}", self.wal_dir.display()));
        }
        if let (Some(slot), true) = (&self.primary_slot, self.create_primary_slot) {
            cmd.args(["-C", "-S", slot]);
        }
        for (name, old) in &up.tablespaces {
            let vol = lock(&self.tablespaces)
                .get(name)
                .cloned()
                .with_context(|| format!("no volume for tablespace {name}"))?;
            cmd.arg(format!(
                "--tablespace-mapping={}={}",
                old.display(),
                tablespace_location(&vol).display()
            ));
        }
        self.run(cmd, "pg_basebackup").await?;
        self.check_simulated_space()?;
        let signal = self.pgdata.join("standby.signal");
        std::fs::write(&signal, b"").with_context(|| format!("writing {}", signal.display()))?;
        self.run_as.chown(&signal)?;
        Ok(())
    }

    /// Write `<pgdata>/testbed.conf` for `port`.
    fn write_config(&self, port: u16) -> Result<()> {
        let archive_command = format!(
            "test ! -e {} && cp %p {}/%f",
            shell_quote(&self.work.path().join(ARCHIVE_FAIL_FLAG)),
            shell_quote(&self.archive_dir())
        );
        let mut settings: Vec<(String, String)> = [
            ("listen_addresses", conf_quote(&self.ip.to_string())),
            ("port", port.to_string()),
            (
                "unix_socket_directories",
                conf_quote(&self.socket_dir().to_string_lossy()),
            ),
            // Small and fast: many servers run in parallel on two cores.
            ("shared_buffers", "'16MB'".into()),
            ("max_connections", "30".into()),
            ("max_wal_senders", "10".into()),
            ("max_replication_slots", "10".into()),
            ("huge_pages", "off".into()),
            ("fsync", "off".into()),
            ("full_page_writes", "off".into()),
            ("autovacuum", "off".into()),
            ("wal_level", "replica".into()),
            ("max_wal_size", "'64MB'".into()),
            ("min_wal_size", "'32MB'".into()),
            ("wal_keep_size", "0".into()),
            ("archive_mode", "on".into()),
            ("archive_command", conf_quote(&archive_command)),
            ("wal_receiver_status_interval", "'1s'".into()),
            ("log_line_prefix", "'%m [%p] %q%a '".into()),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect();
        if let Some(up) = &self.upstream {
            let conninfo = format!(
                "host={} port={} user={SUPERUSER} password={} application_name={}",
                up.ip,
                up.port,
                libpq_quote(&up.password),
                libpq_quote(&self.name)
            );
            settings.push(("primary_conninfo".into(), conf_quote(&conninfo)));
            if let Some(slot) = &self.primary_slot {
                settings.push(("primary_slot_name".into(), conf_quote(slot)));
            }
        }
        settings.extend(self.settings.iter().cloned());
        let mut text = String::from("# written by cnpg-testbed for this server\n");
        for (k, v) in settings {
            text.push_str(&format!("{k} = {v}\n"));
        }
        let path = self.pgdata.join("testbed.conf");
        std::fs::write(&path, text).with_context(|| format!("writing {}", path.display()))?;
        self.run_as.chown(&path)
    }

    /// First start: pick a free port, retrying when another process grabs
    /// it between our check and PostgreSQL's bind.
    async fn start_with_port_retries(&self) -> Result<()> {
        let mut last_err = None;
        for _ in 0..5 {
            let port = net::free_port(self.ip)?;
            *lock(&self.port) = port;
            match self.pg_ctl_start().await {
                Ok(()) => return Ok(()),
                Err(e) if self.log_tail().contains("could not bind") => last_err = Some(e),
                Err(e) => return Err(e),
            }
        }
        Err(last_err.unwrap_or_else(|| anyhow!("no free port")))
            .with_context(|| format!("starting {}: every port tried was taken", self.name))
    }

    async fn pg_ctl_start(&self) -> Result<()> {
        self.write_config(self.port())?;
        let pgdata = self.pgdata.to_string_lossy().into_owned();
        let log = self.log_file().to_string_lossy().into_owned();
        let mut cmd = self.command("pg_ctl");
        cmd.args(["start", "-D", &pgdata, "-l", &log, "-w", "-t", "60", "-s"]);
        if let Err(e) = self.run(cmd, "pg_ctl start").await {
            // A postmaster that started but was not ready in time must
            // still be stopped by Drop.
            if let Ok(pid) = read_postmaster_pid(&self.pgdata) {
                if pid_alive(pid) {
                    *lock(&self.postmaster) = Some(pid);
                }
            }
            return Err(e);
        }
        let pid = read_postmaster_pid(&self.pgdata)?;
        *lock(&self.postmaster) = Some(pid);
        Ok(())
    }

    /// After a crash the postmaster may linger as a zombie (nobody reaps
    /// it in containers), which PostgreSQL would mistake for a live
    /// postmaster holding the lock files.
    fn remove_stale_lock_files(&self) -> Result<()> {
        let pidfile = self.pgdata.join("postmaster.pid");
        if let Ok(pid) = read_postmaster_pid(&self.pgdata) {
            if !pid_alive(pid) {
                std::fs::remove_file(&pidfile)
                    .with_context(|| format!("removing stale {}", pidfile.display()))?;
                let sock_lock = self
                    .socket_dir()
                    .join(format!(".s.PGSQL.{}.lock", self.port()));
                let _ = std::fs::remove_file(sock_lock);
                let _ = std::fs::remove_file(
                    self.socket_dir().join(format!(".s.PGSQL.{}", self.port())),
                );
            }
        }
        Ok(())
    }

    fn log_tail(&self) -> String {
        let text = std::fs::read_to_string(self.log_file()).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(20)..].join("\n")
    }

    /// Synchronous last-resort stop for `Drop`.
    fn stop_now(&mut self) {
        let Some(pm) = *lock(&self.postmaster) else {
            return;
        };
        if !pid_alive(pm) {
            return;
        }
        let children = children_of(pm);
        let mut cmd = std::process::Command::new(self.bins.binary("pg_ctl"));
        cmd.arg("stop")
            .arg("-D")
            .arg(&self.pgdata)
            .args(["-m", "immediate", "-w", "-t", "10", "-s"])
            .current_dir(self.work.path())
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null());
        if self.run_as.switch {
            use std::os::unix::process::CommandExt;
            cmd.uid(self.run_as.uid.as_raw())
                .gid(self.run_as.gid.as_raw());
        }
        let _ = cmd.status();
        // Whatever survived (pg_ctl missing, timeout…) gets SIGKILL.
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            let alive: Vec<i32> = std::iter::once(pm)
                .chain(children.iter().copied())
                .filter(|p| pid_alive(*p))
                .collect();
            if alive.is_empty() {
                break;
            }
            for p in &alive {
                let _ = kill(Pid::from_raw(*p), Signal::SIGKILL);
            }
            if Instant::now() >= deadline {
                tracing::warn!(server = %self.name, pids = ?alive, "PostgreSQL processes survived SIGKILL");
                break;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        *lock(&self.postmaster) = None;
    }
}

impl Drop for PgServer {
    fn drop(&mut self) {
        self.stop_now();
    }
}

/// WAL bytes inserted since LSN `start` (text form).
async fn wal_written_since(client: &Client, start: &str) -> Result<u64, tokio_postgres::Error> {
    let row = client
        .query_one(
            "SELECT pg_wal_lsn_diff(pg_current_wal_insert_lsn(), $1::text::pg_lsn)::bigint",
            &[&start],
        )
        .await?;
    Ok(row.get::<_, i64>(0).max(0) as u64)
}

/// Superuser connection details of one server; see [`PgServer::endpoint`].
#[derive(Clone)]
pub struct PgEndpoint {
    /// The server's name.
    pub name: String,
    /// Its address.
    pub ip: Ipv4Addr,
    /// Its port.
    pub port: u16,
    password: String,
}

impl std::fmt::Debug for PgEndpoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PgEndpoint")
            .field("name", &self.name)
            .field("ip", &self.ip)
            .field("port", &self.port)
            .finish_non_exhaustive()
    }
}

impl PgEndpoint {
    /// Connect as the superuser.
    pub async fn connect(&self) -> Result<Client> {
        connect(&self.name, self.ip, self.port, SUPERUSER, &self.password).await
    }
}

async fn connect(
    name: &str,
    ip: Ipv4Addr,
    port: u16,
    user: &str,
    password: &str,
) -> Result<Client> {
    let mut config = tokio_postgres::Config::new();
    config
        .host(ip.to_string())
        .port(port)
        .user(user)
        .password(password)
        .dbname("postgres")
        .application_name("cnpg-testbed")
        .connect_timeout(Duration::from_secs(10));
    let (client, connection) = config
        .connect(NoTls)
        .await
        .with_context(|| format!("connecting to {name} at {ip}:{port} as {user}"))?;
    let name = name.to_string();
    tokio::spawn(async move {
        if let Err(e) = connection.await {
            tracing::debug!(server = %name, error = %e, "test-bed connection ended");
        }
    });
    Ok(client)
}

/// SQL for this server's WAL position: current on a primary, replayed on a standby.
const WAL_POSITION: &str =
    "CASE WHEN pg_is_in_recovery() THEN pg_last_wal_replay_lsn() ELSE pg_current_wal_lsn() END";

/// One physical, non-temporary replication slot (a row of `pg_replication_slots`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SlotInfo {
    /// `slot_name`.
    pub name: String,
    /// `active`: a WAL sender streams through it right now.
    pub active: bool,
    /// `restart_lsn` as text; `None` while the slot reserves no WAL.
    pub restart_lsn: Option<String>,
    /// `xmin` or `catalog_xmin` is set.
    pub holds_xmin: bool,
    /// WAL retained, from the server's WAL position (see [`PgServer::slot_retained_bytes`]).
    pub retained_bytes: Option<i64>,
}

/// The non-temporary physical slots visible through `client`.
pub(crate) async fn physical_slots(
    client: &Client,
) -> Result<Vec<SlotInfo>, tokio_postgres::Error> {
    let rows = client
        .query(
            &format!(
                "SELECT slot_name::text, active, restart_lsn::text, \
                        xmin IS NOT NULL OR catalog_xmin IS NOT NULL, \
                        pg_wal_lsn_diff({WAL_POSITION}, restart_lsn)::bigint \
                 FROM pg_replication_slots \
                 WHERE NOT temporary AND slot_type = 'physical' ORDER BY slot_name"
            ),
            &[],
        )
        .await?;
    Ok(rows
        .iter()
        .map(|r| SlotInfo {
            name: r.get(0),
            active: r.get(1),
            restart_lsn: r.get(2),
            holds_xmin: r.get(3),
            retained_bytes: r.get(4),
        })
        .collect())
}

/// Guard returned by [`PgServer::lock_slots_view`]: while it lives, queries
/// on `pg_replication_slots` block.
#[derive(Debug)]
pub struct SlotsViewLock {
    client: Option<Client>,
}

impl SlotsViewLock {
    /// Roll the locking transaction back, unblocking waiting queries.
    /// (Dropping the guard also releases the lock: the connection closes
    /// and the server ends the backend.)
    pub async fn release(mut self) -> Result<()> {
        if let Some(client) = self.client.take() {
            client
                .batch_execute("ROLLBACK")
                .await
                .context("rolling back the pg_replication_slots lock")?;
        }
        Ok(())
    }
}

fn tablespace_location(volume: &Volume) -> PathBuf {
    volume.path().join("data")
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

fn read_postmaster_pid(pgdata: &Path) -> Result<i32> {
    let path = pgdata.join("postmaster.pid");
    let text =
        std::fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))?;
    text.lines()
        .next()
        .and_then(|l| l.trim().parse().ok())
        .with_context(|| format!("no pid on the first line of {}", path.display()))
}

/// Whether `pid` exists and is not a zombie. In containers nobody may reap
/// a dead postmaster (it is reparented to pid 1), so zombies count as dead.
pub fn pid_alive(pid: i32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => process_state(&stat).is_some_and(|s| s != 'Z' && s != 'X'),
        Err(_) => false,
    }
}

/// The state letter of a `/proc/<pid>/stat` line (after the `(comm)`).
fn process_state(stat: &str) -> Option<char> {
    let rest = &stat[stat.rfind(')')? + 1..];
    rest.split_whitespace().next()?.chars().next()
}

/// Live children of `parent`, from `/proc/*/stat`.
fn children_of(parent: i32) -> Vec<i32> {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<i32>().ok())
        .filter(|pid| {
            let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
                return false;
            };
            let Some(close) = stat.rfind(')') else {
                return false;
            };
            let mut fields = stat[close + 1..].split_whitespace();
            let state = fields.next();
            let ppid = fields.next().and_then(|p| p.parse::<i32>().ok());
            ppid == Some(parent) && state != Some("Z")
        })
        .collect()
}

fn random_password() -> Result<String> {
    let mut buf = [0u8; 16];
    let mut f = std::fs::File::open("/dev/urandom").context("opening /dev/urandom")?;
    std::io::Read::read_exact(&mut f, &mut buf).context("reading /dev/urandom")?;
    Ok(buf.iter().map(|b| format!("{b:02x}")).collect())
}

/// `'value'` for postgresql.conf (single quotes doubled).
fn conf_quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', "''"))
}

/// A POSIX shell single-quoted word.
fn shell_quote(p: &Path) -> String {
    format!("'{}'", p.to_string_lossy().replace('\'', r"'\''"))
}

/// A libpq conninfo value (quoted, backslash-escaped).
fn libpq_quote(s: &str) -> String {
    format!("'{}'", s.replace('\\', r"\\").replace('\'', r"\'"))
}

/// A quoted SQL identifier.
pub fn quote_ident(s: &str) -> String {
    format!("\"{}\"", s.replace('"', "\"\""))
}

/// A quoted SQL string literal (standard_conforming_strings is on).
pub fn quote_literal(s: &str) -> String {
    format!("'{}'", s.replace('\'', "''"))
}

fn is_enospc(e: &anyhow::Error) -> bool {
    e.chain()
        .filter_map(|c| c.downcast_ref::<std::io::Error>())
        .any(|io| io.raw_os_error() == Some(nix::errno::Errno::ENOSPC as i32))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quoting() {
        assert_eq!(conf_quote("a'b"), "'a''b'");
        assert_eq!(libpq_quote(r"a'b\c"), r"'a\'b\\c'");
        assert_eq!(quote_ident("we\"ird"), "\"we\"\"ird\"");
        assert_eq!(shell_quote(Path::new("/t/a'b")), r"'/t/a'\''b'");
    }

    #[test]
    fn proc_stat_state() {
        assert_eq!(process_state("12 (post gres) S 1 2"), Some('S'));
        assert_eq!(process_state("12 (a) b) Z 1"), Some('Z'));
        assert!(pid_alive(std::process::id() as i32));
    }
}
