//! `cnpg-autoresize demo`: the whole system on this machine, no Kubernetes
//! cluster needed. The embedded API sandbox, real volumes, real PostgreSQL
//! (when its binaries are installed) and one real `cnpg-autoresize run`
//! process per instance; a volume is filled past its trigger and the resize
//! is shown live. SIGINT/SIGTERM tears everything down and exits 0.

use cnpg_testbed::cluster::VolumeRole;
use cnpg_testbed::scenario::{ManagerOptions, ManagerPod, Scenario};
use k8s_openapi::api::coordination::v1::Lease;
use serde_json::{json, Value};
use std::io::{IsTerminal, Write};
use std::process::ExitCode;
use std::time::{Duration, Instant};

const MIB: u64 = 1 << 20;

#[derive(Debug, clap::Args)]
pub struct DemoArgs {
    /// Number of PostgreSQL instances.
    #[arg(long, default_value_t = 2, value_parser = clap::value_parser!(u8).range(1..=3))]
    pub instances: u8,
    /// Exit when the scripted part is over instead of waiting for Ctrl-C.
    #[arg(long)]
    pub once: bool,
}

pub fn main(args: DemoArgs) -> ExitCode {
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let code = runtime.block_on(async {
        tokio::select! {
            result = demo(&args) => match result {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("demo failed: {e:#}");
                    ExitCode::FAILURE
                }
            },
            signal = super::signals::wait_for_signal() => {
                // Dropping the demo future stops the managers, PostgreSQL and
                // the sandbox and unmounts the volumes.
                println!("\n{signal}: stopping managers, PostgreSQL and volumes…");
                ExitCode::SUCCESS
            }
        }
    });
    runtime.shutdown_timeout(Duration::from_secs(3));
    if code == ExitCode::SUCCESS {
        println!("demo stopped; nothing left behind");
    }
    code
}

/// Writes lines: a redrawn screen on a terminal, plain lines otherwise.
struct Screen {
    tty: bool,
    started: Instant,
    log: Vec<String>,
    last_table: String,
    /// How to look around while the demo runs (kept on a terminal's screen).
    explore: Vec<String>,
}

impl Screen {
    fn say(&mut self, line: impl Into<String>) {
        let line = format!(
            "[{:>5.1}s] {}",
            self.started.elapsed().as_secs_f64(),
            line.into()
        );
        if self.tty {
            self.log.push(line);
            let keep = self.log.len().saturating_sub(12);
            self.log.drain(..keep);
            self.redraw();
        } else {
            println!("{line}");
        }
    }

    fn table(&mut self, table: String) {
        if table == self.last_table {
            return;
        }
        if !self.tty {
            for line in table.lines().skip(1) {
                if !self.last_table.lines().any(|l| l == line) {
                    println!(
                        "[{:>5.1}s]   {}",
                        self.started.elapsed().as_secs_f64(),
                        line
                    );
                }
            }
        }
        self.last_table = table;
        if self.tty {
            self.redraw();
        }
    }

    /// Shows how to explore: kept at the top of a terminal's screen,
    /// printed once as plain lines otherwise.
    fn explore(&mut self, lines: Vec<String>) {
        if !self.tty {
            for line in &lines {
                println!("{line}");
            }
        }
        self.explore = lines;
        if self.tty {
            self.redraw();
        }
    }

    fn redraw(&self) {
        let mut out = std::io::stdout().lock();
        let _ = write!(out, "\x1b[2J\x1b[H");
        let _ = writeln!(out, "cnpg-autoresize demo — Ctrl-C to stop and clean up\n");
        for line in &self.explore {
            let _ = writeln!(out, "{line}");
        }
        if !self.explore.is_empty() {
            let _ = writeln!(out);
        }
        let _ = writeln!(out, "{}", self.last_table);
        for line in &self.log {
            let _ = writeln!(out, "{line}");
        }
        let _ = out.flush();
    }
}

struct Demo {
    scenario: Scenario,
    managers: Vec<std::sync::Arc<ManagerPod>>,
}

impl Demo {
    async fn leader(&self) -> Option<String> {
        let api: kube::Api<Lease> =
            kube::Api::namespaced(self.scenario.client.clone(), &self.scenario.namespace);
        let lease = api
            .get_opt(&format!("cnpg-autoresize-{}", self.scenario.cluster))
            .await
            .ok()??;
        lease.spec?.holder_identity.filter(|h| !h.is_empty())
    }

    async fn get(&self, url: &str) -> Option<Value> {
        let response = reqwest::Client::new()
            .get(url)
            .timeout(Duration::from_secs(2))
            .send()
            .await
            .ok()?;
        response.json().await.ok()
    }

    /// One row per volume: request, filesystem, use, and the leader's decision.
    async fn table(&self) -> String {
        let leader = self.leader().await;
        let feed = match leader
            .as_ref()
            .and_then(|l| self.managers.iter().find(|m| &m.pod == l))
        {
            Some(m) => self.get(&m.url("/v1/decisions")).await,
            None => None,
        };
        let mut rows = vec![format!(
            "{:<8} {:<11} {:<12} {:>9} {:>9} {:>6}  {}",
            "POD", "VOLUME", "PVC", "REQUEST", "FS SIZE", "USED", "DECISION"
        )];
        for (instance, manager) in self.scenario.instances.iter().zip(&self.managers) {
            let status = self
                .get(&manager.url("/v1/status"))
                .await
                .unwrap_or(Value::Null);
            let decisions = feed
                .as_ref()
                .and_then(|f| f["instances"][&instance.pod]["volumes"].as_array().cloned())
                .unwrap_or_default();
            for v in &instance.volumes {
                let (kind, stats) = match &v.role {
                    VolumeRole::Data => ("data".to_string(), &status["report"]["data"]),
                    VolumeRole::Wal => ("wal".to_string(), &status["report"]["wal"]),
                    VolumeRole::Tablespace(t) => {
                        (format!("tbs/{t}"), &status["report"]["tablespaces"][t])
                    }
                };
                let request = self
                    .scenario
                    .requested_bytes(&v.pvc)
                    .await
                    .map(|b| format!("{}Mi", b / MIB))
                    .unwrap_or_default();
                let total = stats["totalBytes"]
                    .as_u64()
                    .map(|b| format!("{}Mi", b / MIB))
                    .unwrap_or("-".into());
                let used = match (
                    stats["usedBytes"].as_f64(),
                    stats["availableBytes"].as_f64(),
                ) {
                    (Some(u), Some(a)) if u + a > 0.0 => format!("{:.0}%", u * 100.0 / (u + a)),
                    _ => "-".into(),
                };
                let decision = decisions
                    .iter()
                    .find(|d| d["pvc"] == v.pvc.as_str())
                    .map(|d| match d["action"].as_str() {
                        Some("resize") => {
                            format!("resize → {}", d["newSize"].as_str().unwrap_or("?"))
                        }
                        _ => format!(
                            "{} ({})",
                            d["action"].as_str().unwrap_or("?"),
                            d["reason"].as_str().unwrap_or("")
                        ),
                    })
                    .unwrap_or_else(|| "-".into());
                let lead = if leader.as_deref() == Some(instance.pod.as_str()) {
                    "*"
                } else {
                    ""
                };
                rows.push(format!(
                    "{:<8} {:<11} {:<12} {:>9} {:>9} {:>6}  {}",
                    format!("{}{lead}", instance.pod),
                    kind,
                    v.pvc,
                    request,
                    total,
                    used,
                    decision
                ));
            }
        }
        rows.push("(* = leader)".into());
        rows.join("\n")
    }

    async fn events(&self) -> Vec<String> {
        let api: kube::Api<k8s_openapi::api::events::v1::Event> =
            kube::Api::namespaced(self.scenario.client.clone(), &self.scenario.namespace);
        let mut events: Vec<_> = api
            .list(&Default::default())
            .await
            .map(|l| l.items)
            .unwrap_or_default();
        events.sort_by_key(|e| e.event_time.as_ref().map(|t| t.0));
        events
            .into_iter()
            .map(|e| {
                format!(
                    "Event {} {}: {}",
                    e.type_.unwrap_or_default(),
                    e.reason.unwrap_or_default(),
                    e.note.unwrap_or_default()
                )
            })
            .collect()
    }

    /// Shows the table until `done` holds or `timeout` passes; reports new Events.
    async fn watch_until(
        &self,
        screen: &mut Screen,
        seen: &mut Vec<String>,
        timeout: Duration,
        done: impl AsyncFn(&Self) -> bool,
    ) -> bool {
        let deadline = Instant::now() + timeout;
        loop {
            screen.table(self.table().await);
            for e in self.events().await {
                if !seen.contains(&e) {
                    screen.say(e.clone());
                    seen.push(e);
                }
            }
            if done(self).await {
                return true;
            }
            if Instant::now() > deadline {
                return false;
            }
            tokio::time::sleep(Duration::from_millis(300)).await;
        }
    }
}

/// How to look at the running system from another terminal.
fn explore_lines(
    kubeconfig: &std::path::Path,
    managers: &[std::sync::Arc<ManagerPod>],
) -> Vec<String> {
    let me = std::env::current_exe()
        .map(|p| p.display().to_string())
        .unwrap_or_else(|_| "cnpg-autoresize".into());
    let mut lines = vec![
        "Explore from another terminal while the demo runs:".to_string(),
        format!("  export KUBECONFIG={}", kubeconfig.display()),
        "  kubectl get pvc                                              # requests grow here".to_string(),
        "  kubectl get clusters.postgresql.cnpg.io demo -o yaml | less  # status.autoResizeEvents, status.diskStatus".to_string(),
        "  kubectl get events                                           # AutoResizeSuccess, AutoResizeBlocked, ...".to_string(),
        format!("  {me} status --cluster demo"),
        "Each manager's endpoint:".to_string(),
    ];
    for m in managers {
        lines.push(format!(
            "  {:<8} {}  {}  {}",
            m.pod,
            m.url("/metrics"),
            m.url("/v1/status"),
            m.url("/v1/decisions")
        ));
    }
    lines
}

async fn demo(args: &DemoArgs) -> anyhow::Result<()> {
    let mut screen = Screen {
        tty: std::io::stdout().is_terminal(),
        started: Instant::now(),
        log: Vec::new(),
        last_table: String::new(),
        explore: Vec::new(),
    };
    let postgres = cnpg_testbed::PgBinaries::discover().is_ok();
    let backend = if cnpg_testbed::is_root() {
        "tmpfs mounts"
    } else {
        "directories with simulated capacity (not root)"
    };
    screen.say(format!(
        "starting: Kubernetes API sandbox, {} instance(s), volumes as {backend}, {}",
        args.instances,
        if postgres {
            "PostgreSQL streaming replication"
        } else {
            "no PostgreSQL (binaries not found: apt-get install postgresql)"
        }
    ));
    let data = json!({"enabled": true, "triggers": {"usageThreshold": 80},
        "expansion": {"step": "20%", "minStep": "32Mi", "limit": "512Mi"}, "strategy": {"maxActionsPerDay": 3}});
    let wal = json!({"enabled": true, "expansion": {"step": "64Mi", "limit": "512Mi"}});
    let scenario = Scenario::builder("demo")
        .instances(args.instances as usize)
        .data(128 * MIB, data)
        .wal(128 * MIB, wal)
        .spec(json!({"backup": {"barmanObjectStore": {"destinationPath": "s3://demo"}}}))
        .postgres(postgres)
        // Without the fork's CRD at hand, the schema of the fields we read
        // and write: the sandbox prunes the rest, as a real API server would.
        .cluster_crd(crate::api::crd::generated_cluster_crd_yaml()?)
        .enforce_role(include_str!("../../tests/packaging/manager-role.yaml"))
        .start()
        .await?;
    scenario.sandbox.register_crd(include_str!(
        "../../charts/cnpg-autoresize/crds/autoresize.cnpg.io_autoresizepolicies.yaml"
    ))?;
    let kubeconfig = scenario.dir().join("kubeconfig");
    scenario
        .sandbox
        .write_kubeconfig(&kubeconfig, kube_sandbox::ADMIN, &scenario.namespace)?;
    let port = scenario.common_port()?;
    let binary = std::env::current_exe()?;
    let options = ManagerOptions {
        probe_interval: "500ms".into(),
        wal_interval: "2s".into(),
        ..ManagerOptions::default()
    };
    let mut managers = Vec::new();
    for n in 0..scenario.instances.len() {
        managers.push(scenario.start_manager_pod(&binary, n, port, &options)?);
    }
    screen.say(format!(
        "{} cnpg-autoresize managers running as pods (probed and restarted like the kubelet does; logs in {}); the chart's Role is enforced",
        managers.len(),
        scenario.dir().display()
    ));
    screen.explore(explore_lines(&kubeconfig, &managers));
    let demo = Demo { scenario, managers };
    let mut seen = Vec::new();
    let elected = demo
        .watch_until(
            &mut screen,
            &mut seen,
            Duration::from_secs(30),
            async |d: &Demo| d.leader().await.is_some(),
        )
        .await;
    anyhow::ensure!(elected, "no manager took the lease within 30s");
    screen.say(format!(
        "leader elected: {}",
        demo.leader().await.unwrap_or_default()
    ));

    let primary = &demo.scenario.instances[0];
    screen.say(format!(
        "filling {}'s data volume to 85% (trigger: > 80% used)",
        primary.pod
    ));
    primary.data().volume.fill_to_percent(85.0)?;
    let grown = demo
        .watch_until(
            &mut screen,
            &mut seen,
            Duration::from_secs(60),
            async |d: &Demo| {
                let pvc = &d.scenario.instances[0].data().pvc;
                d.scenario
                    .requested_bytes(pvc)
                    .await
                    .is_ok_and(|b| b > 128 * MIB)
            },
        )
        .await;
    anyhow::ensure!(
        grown,
        "the data volume was not resized within 60s; see the manager logs"
    );
    demo.watch_until(
        &mut screen,
        &mut seen,
        Duration::from_secs(10),
        async |d: &Demo| {
            let volume = &d.scenario.instances[0].data().volume;
            // The filesystem shows less than its device (ext4's metadata).
            let before = cnpg_testbed::volume::model_total_bytes(volume.kind(), 128 * MIB)
                .unwrap_or(128 * MIB);
            volume.stats().is_ok_and(|s| s.total_bytes > before)
        },
    )
    .await;
    screen.say("the PVC grew, the volume simulator (CSI + kubelet) grew the filesystem; the record is in status.autoResizeEvents");

    if let Some(server) = demo.scenario.server(&primary.pod) {
        screen.say("now WAL archiving fails on the primary, and its WAL volume fills to 85%…");
        server.set_archive_failing(true)?;
        server.generate_wal(1 << 20).await?;
        tokio::time::sleep(Duration::from_secs(3)).await;
        if let Some(wal) = primary.volume(&VolumeRole::Wal) {
            wal.volume.fill_to_percent(85.0)?;
        }
        demo.watch_until(
            &mut screen,
            &mut seen,
            Duration::from_secs(30),
            async |d: &Demo| {
                d.events()
                    .await
                    .iter()
                    .any(|e| e.contains("AutoResizeBlocked"))
            },
        )
        .await;
        screen.say("growing the WAL volume would only hide the failing archiving: refused (archive_unhealthy)");
    }
    if args.once {
        screen.say("demo complete");
        return Ok(());
    }
    screen.say("demo complete — still running: explore with the commands above; Ctrl-C stops and cleans up");
    loop {
        demo.watch_until(
            &mut screen,
            &mut seen,
            Duration::from_secs(3600),
            async |_: &Demo| false,
        )
        .await;
    }
}
