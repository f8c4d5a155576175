//! A strict local stand-in for the Kubernetes API server (docs/design.md#the-test-bed).
//!
//! The sandbox speaks the Kubernetes REST protocol over plain HTTP for the
//! resources cnpg-autoresize uses, so the real `kube` client and `kubectl
//! --validate=false` work against it unchanged:
//!
//! | group/version            | resource                 | scope      | subresources |
//! |--------------------------|--------------------------|------------|--------------|
//! | `v1`                     | `persistentvolumeclaims` | namespaced | `status`     |
//! | `v1`                     | `pods`                   | namespaced | `status`     |
//! | `v1`                     | `events`                 | namespaced |              |
//! | `events.k8s.io/v1`       | `events`                 | namespaced |              |
//! | `coordination.k8s.io/v1` | `leases`                 | namespaced |              |
//! | `storage.k8s.io/v1`      | `storageclasses`         | cluster    |              |
//! | `apiextensions.k8s.io/v1`| `customresourcedefinitions` | cluster | `status`     |
//! | `postgresql.cnpg.io/v1`  | `clusters` (kind Cluster)| namespaced | `status`     |
//! | any CRD registered       | from its manifest        | from it    | from it      |
//!
//! Custom resources are data: [`SandboxConfig::crds`], [`Sandbox::register_crd`] or a
//! `customresourcedefinitions` create (e.g. `kubectl apply -f crd.yaml`) serve a resource
//! with the CRD's names, versions, scope and status subresource, and every write is pruned,
//! defaulted and validated against the served version's structural schema like the
//! apiextensions-apiserver does (unknown fields answered with `Warning: 299` headers).
//! Without a Cluster CRD, `clusters.postgresql.cnpg.io` is served schema-less (everything kept).
//!
//! Rules enforced like a real API server: one global resourceVersion; 409 on a
//! stale update or a patch whose `metadata.resourceVersion` no longer matches;
//! 422 when a JSON patch fails (including `test`); 415 for unknown patch types
//! (strategic merge only on built-in types); status subresource separation;
//! PVC spec immutability (only Bound claims change their request), no lowering
//! to or below `status.capacity` (422), growth only with an expandable
//! StorageClass (403), `allocatedResourceStatuses` values; watches with replay from a bounded history,
//! `410 Gone` ERROR events, bookmarks, label and field selectors; RBAC from a
//! Role manifest; every error is a `meta/v1 Status`. See `README.md` for the
//! differences from a real server.
//!
//! # Identities
//!
//! The bearer token *is* the identity. `admin` ([`ADMIN`]) bypasses RBAC. A
//! request without a token gets 401. Any other token is accepted; it is
//! restricted only once [`Sandbox::enforce_role`] was called for it (several
//! calls add up, like several RoleBindings). client-go (kubectl) never sends
//! credentials over plain HTTP, so the identity may also be given as a server
//! URL prefix `http://HOST:PORT/as/<identity>`; generated kubeconfigs do both.
//!
//! # Out-of-process control
//!
//! Unauthenticated endpoints, outside the Kubernetes API:
//!
//! * `GET /sandbox/v1/faults` — current faults:
//!   `{"latencyMs", "errorRates": [{"verb","resource","rate","code"}], "outageRemainingMs",
//!   "clockOffsetSeconds"}`.
//! * `POST /sandbox/v1/faults` — JSON body, every field optional, applied in
//!   this order: `{"clear": true, "latencyMs": 200, "errorRates": [{"verb":
//!   "patch", "resource": "persistentvolumeclaims", "rate": 1.0, "code": 500}],
//!   "outageMs": 3000, "dropWatches": true, "clockOffsetSeconds": -300}`. A rate of 0
//!   removes that rule; a clock offset shifts the `Date` header of every answer.
//!   `"latencies": [{"verb": "update", "resource": "leases", "ms": 1500}]` adds a delay to
//!   matching requests (after `latencyMs`, which delays every request).
//! * `GET /sandbox/v1/requests` — request accounting: `{"requests": [{"identity", "userAgent",
//!   "verb", "resource", "code", "count", "watchEvents", "watchBookmarks"}]}`;
//!   `DELETE` resets it. Same as [`Sandbox::requests`] / [`Sandbox::reset_requests`].
//! * `POST /sandbox/v1/roles/<identity>` — body: Role/ClusterRole YAML; same as
//!   [`Sandbox::enforce_role`].
//! * `GET /healthz`, `/livez`, `/readyz` — `ok`.
//!
//! ```no_run
//! # async fn demo() -> anyhow::Result<()> {
//! let sandbox = kube_sandbox::Sandbox::start(Default::default()).await?;
//! let client = sandbox.client().await?;
//! sandbox.faults().set_error_rate("patch", "persistentvolumeclaims", 1.0, 500);
//! # drop(client); Ok(()) }
//! ```

#![cfg_attr(not(test), deny(clippy::unwrap_used, clippy::expect_used))]

mod accounting;
mod admission;
mod cel;
pub mod celcheck;
mod crd;
mod discovery;
mod error;
mod faults;
mod http;
mod managed;
mod patch;
mod rbac;
mod resources;
mod rules;
mod schema;
mod selector;
mod store;
mod watch;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use std::io::Write;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

pub use accounting::RequestCount;
pub use cel::CelRuleEvaluator;
pub use error::{go_value, ApiError, FieldError, FieldErrorKind};
pub use faults::{ErrorRate, Faults, LatencyRule};
pub use rbac::ADMIN;
pub use schema::{RuleContext, RuleEvaluator};

/// Settings of one sandbox.
#[derive(Debug, Clone)]
pub struct SandboxConfig {
    /// Listen address; port 0 picks a free port.
    pub listen: SocketAddr,
    /// Number of events kept for watch resumption; a watch from an older resourceVersion gets 410.
    pub watch_history: usize,
    /// Interval of BOOKMARK events on watches with `allowWatchBookmarks=true`.
    pub bookmark_interval: Duration,
    /// Seed of the fault-injection RNG (error rates), for reproducible runs.
    pub fault_seed: u64,
    /// The `RecoverVolumeExpansionFailure` behaviour (GA since Kubernetes 1.34, on by default):
    /// a PVC request may be lowered while it stays above `status.capacity`. Off: every
    /// decrease is rejected (`field can not be less than previous value`, Kubernetes < 1.32).
    pub recover_volume_expansion_failure: bool,
    /// CustomResourceDefinition manifests (YAML, several documents allowed, or JSON) served
    /// from the start. One for `clusters.postgresql.cnpg.io` replaces the schema-less default.
    pub crds: Vec<String>,
    /// Evaluator of `x-kubernetes-validations` (CEL) rules; without one they are not checked.
    /// Default: a [`CelRuleEvaluator`] (kube-cel), so invalid objects get a 422 like from a
    /// real API server.
    pub rule_evaluator: Option<Arc<dyn RuleEvaluator>>,
    /// The CEL compatibility version CRDs and admission policies are compiled at: the
    /// minor version of the Kubernetes stood in for, minus one (a 1.36 API server compiles
    /// new expressions with its 1.35 environment). Default: [`celcheck::decls::CURRENT`];
    /// [`celcheck::decls::OLDEST_SUPPORTED`] holds manifests to Kubernetes 1.30.
    pub cel_compatibility_version: u32,
}

impl Default for SandboxConfig {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 0)),
            watch_history: 1000,
            bookmark_interval: Duration::from_secs(2),
            fault_seed: 0x5eed,
            recover_volume_expansion_failure: true,
            crds: Vec::new(),
            rule_evaluator: Some(Arc::new(CelRuleEvaluator::new())),
            cel_compatibility_version: celcheck::decls::CURRENT,
        }
    }
}

/// A running sandbox API server.
pub struct Sandbox {
    addr: SocketAddr,
    shared: Arc<http::Shared>,
    stop: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<()>>,
}

impl Sandbox {
    /// Binds the listener and starts serving in the background.
    pub async fn start(config: SandboxConfig) -> anyhow::Result<Sandbox> {
        let listener = tokio::net::TcpListener::bind(config.listen)
            .await
            .with_context(|| format!("binding the sandbox API server to {}", config.listen))?;
        let addr = listener.local_addr().context("reading the bound address")?;
        let shared = Arc::new(http::Shared {
            store: store::Store::new(config.watch_history),
            registry: resources::Registry::new(),
            faults: Faults::new(config.fault_seed),
            rbac: rbac::Rbac::default(),
            rules: rules::RuleOptions {
                recover_volume_expansion_failure: config.recover_volume_expansion_failure,
                cel_compatibility_version: config.cel_compatibility_version,
            },
            accounting: accounting::Accounting::default(),
            evaluator: std::sync::RwLock::new(config.rule_evaluator.clone()),
            bookmark_interval: config.bookmark_interval,
            server_address: addr.to_string(),
        });
        for (i, manifest) in config.crds.iter().enumerate() {
            register_manifest(&shared, manifest)
                .with_context(|| format!("registering SandboxConfig::crds[{i}]"))?;
        }
        let app = http::router(shared.clone());
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(async move {
            let serve = axum::serve(listener, app).with_graceful_shutdown(async move {
                let _ = stopped.await;
            });
            if let Err(e) = serve.await {
                tracing::error!(error = %e, "sandbox API server failed");
            }
        });
        tracing::info!(%addr, "kube-sandbox listening");
        Ok(Sandbox {
            addr,
            shared,
            stop: Some(stop),
            task: Some(task),
        })
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Base URL, e.g. `http://127.0.0.1:40123`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// A kubeconfig for `identity` with `namespace` as default namespace.
    ///
    /// The identity is both the bearer token and an `/as/<identity>` server path
    /// prefix: client-go (kubectl) never sends credentials over plain HTTP, so
    /// the prefix is how it identifies itself.
    pub fn kubeconfig_yaml(&self, identity: &str, namespace: &str) -> String {
        // JSON strings are valid YAML scalars: safe quoting for any identity.
        let q = |s: &str| serde_json::Value::from(s).to_string();
        format!(
            "apiVersion: v1\nkind: Config\nclusters:\n- name: kube-sandbox\n  cluster:\n    server: {server}\ncontexts:\n- name: kube-sandbox\n  context:\n    cluster: kube-sandbox\n    user: {user}\n    namespace: {ns}\ncurrent-context: kube-sandbox\nusers:\n- name: {user}\n  user:\n    token: {user}\npreferences: {{}}\n",
            server = q(&format!(
                "{}{}{}",
                self.url(),
                http::IDENTITY_PREFIX,
                http::percent_encode(identity)
            )),
            user = q(identity),
            ns = q(namespace),
        )
    }

    pub fn write_kubeconfig(
        &self,
        path: &Path,
        identity: &str,
        namespace: &str,
    ) -> anyhow::Result<()> {
        std::fs::write(path, self.kubeconfig_yaml(identity, namespace))
            .with_context(|| format!("writing kubeconfig to {}", path.display()))
    }

    /// A client with the admin identity (bypasses RBAC), default namespace `default`.
    pub async fn client(&self) -> anyhow::Result<kube::Client> {
        self.client_as(ADMIN).await
    }

    /// A client whose bearer token is `identity` (kube's defaults, including its retries).
    pub async fn client_as(&self, identity: &str) -> anyhow::Result<kube::Client> {
        let config = self.config_as(identity).await?;
        kube::Client::try_from(config).context("building a kube client for the sandbox")
    }

    /// The `kube::Config` behind [`Sandbox::client_as`], for callers that tune it.
    ///
    /// Note: kube's default client retries 429/503/504 answers up to 15 times with
    /// exponential backoff; set `default_retry = false` to observe injected errors directly.
    pub async fn config_as(&self, identity: &str) -> anyhow::Result<kube::Config> {
        let yaml = self.kubeconfig_yaml(identity, "default");
        let kubeconfig = kube::config::Kubeconfig::from_yaml(&yaml)
            .context("parsing the generated kubeconfig")?;
        let options = kube::config::KubeConfigOptions::default();
        kube::Config::from_custom_kubeconfig(kubeconfig, &options)
            .await
            .context("building a kube config for the sandbox")
    }

    /// Restricts `identity` to what the Role/ClusterRole manifest(s) in `role_yaml` grant.
    pub fn enforce_role(&self, identity: &str, role_yaml: &str) -> anyhow::Result<()> {
        self.shared.rbac.enforce(identity, role_yaml)
    }

    pub fn faults(&self) -> &Faults {
        &self.shared.faults
    }

    /// Creates or replaces the CustomResourceDefinition(s) in `manifest` (YAML or JSON text),
    /// as `kubectl apply -f` would: the resource is served from now on.
    pub fn register_crd(&self, manifest: &str) -> anyhow::Result<()> {
        register_manifest(&self.shared, manifest)
    }

    /// Plugs in (or removes) the evaluator of `x-kubernetes-validations` rules.
    pub fn set_rule_evaluator(&self, evaluator: Option<Arc<dyn RuleEvaluator>>) {
        *self
            .shared
            .evaluator
            .write()
            .unwrap_or_else(|e| e.into_inner()) = evaluator;
    }

    /// Requests counted since the start (or the last [`Sandbox::reset_requests`]): one row per
    /// identity, User-Agent, verb, resource (with subresource) and response code.
    pub fn requests(&self) -> Vec<RequestCount> {
        self.shared.accounting.snapshot()
    }

    /// Zeroes the request accounting.
    pub fn reset_requests(&self) {
        self.shared.accounting.reset();
    }

    /// Closes open watches and stops serving.
    pub async fn shutdown(mut self) {
        self.stop_now();
        if let Some(task) = self.task.take() {
            if tokio::time::timeout(Duration::from_secs(5), task)
                .await
                .is_err()
            {
                tracing::warn!("sandbox API server did not stop within 5s");
            }
        }
    }

    fn stop_now(&mut self) {
        self.shared.faults.drop_watches();
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}

impl Drop for Sandbox {
    fn drop(&mut self) {
        self.stop_now();
    }
}

fn register_manifest(shared: &http::Shared, manifest: &str) -> anyhow::Result<()> {
    for obj in crd::parse_manifests(manifest)? {
        let name = obj
            .pointer("/metadata/name")
            .and_then(serde_json::Value::as_str)
            .unwrap_or("")
            .to_string();
        http::apply_crd(shared, obj)
            .map_err(|e| anyhow::anyhow!("{e}"))
            .with_context(|| format!("registering CustomResourceDefinition {name:?}"))?;
    }
    Ok(())
}

/// Where the fork's Cluster CRD is, for tests that serve the real one (read in place,
/// never copied): `$CNPG_CLUSTER_CRD` if set, else `<workspace>/../shared/cnpg/`
/// `postgresql.cnpg.io_clusters.yaml`. An error says where it looked.
pub fn fork_cluster_crd_path() -> anyhow::Result<PathBuf> {
    if let Some(p) = std::env::var_os("CNPG_CLUSTER_CRD") {
        let p = PathBuf::from(p);
        if p.is_file() {
            return Ok(p);
        }
        anyhow::bail!(
            "CNPG_CLUSTER_CRD is set to {} but no such file exists",
            p.display()
        );
    }
    // This crate lives in <workspace>/crates/kube-sandbox.
    let candidate = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../../shared/cnpg/postgresql.cnpg.io_clusters.yaml");
    if candidate.is_file() {
        return Ok(candidate);
    }
    anyhow::bail!(
        "the fork's Cluster CRD was not found (looked at $CNPG_CLUSTER_CRD and {}); set CNPG_CLUSTER_CRD to its path",
        candidate.display()
    )
}

/// The project's own Cluster CRD, generated from its types (`cargo run --bin crdgen --
/// --cluster`; a test keeps this copy equal to the generator's output): the same
/// structural rules as the fork's for the fields the project reads and writes.
pub const GENERATED_CLUSTER_CRD: &str =
    include_str!("../crds/postgresql.cnpg.io_clusters.generated.yaml");

/// A Cluster CRD for tests, and where it came from.
#[derive(Debug, Clone)]
pub struct ClusterCrd {
    pub text: String,
    /// The file it was read from, or "the project's generated Cluster CRD".
    pub source: String,
}

/// The fork's Cluster CRD when [`fork_cluster_crd_path`] finds it, else the project's
/// [`GENERATED_CLUSTER_CRD`]; which one is said once per process (on stderr). A
/// `$CNPG_CLUSTER_CRD` that names no file is an error, not a fallback.
pub fn cluster_crd() -> anyhow::Result<ClusterCrd> {
    static SAID: std::sync::Once = std::sync::Once::new();
    let crd = match fork_cluster_crd_path() {
        Ok(path) => ClusterCrd {
            text: std::fs::read_to_string(&path)
                .with_context(|| format!("reading {}", path.display()))?,
            source: path.display().to_string(),
        },
        Err(e) if std::env::var_os("CNPG_CLUSTER_CRD").is_some() => return Err(e),
        Err(_) => ClusterCrd {
            text: GENERATED_CLUSTER_CRD.to_string(),
            source: "the project's generated Cluster CRD".to_string(),
        },
    };
    SAID.call_once(|| eprintln!("kube-sandbox: serving the Cluster CRD of {}", crd.source));
    Ok(crd)
}

/// For the CLI: serves until SIGINT/SIGTERM, printing the address; writes an admin kubeconfig.
/// `crds` are served from the start (CRD manifests, YAML or JSON).
pub async fn serve_until_signal(
    listen: SocketAddr,
    kubeconfig_out: Option<PathBuf>,
    crds: Vec<String>,
) -> anyhow::Result<()> {
    let sandbox = Sandbox::start(SandboxConfig {
        listen,
        crds,
        ..SandboxConfig::default()
    })
    .await?;
    if let Some(path) = &kubeconfig_out {
        sandbox.write_kubeconfig(path, ADMIN, "default")?;
    }
    // A closed stdout (the reader went away) must not stop the server.
    let mut out = std::io::stdout();
    let _ = writeln!(out, "kube-sandbox listening on {}", sandbox.url());
    if let Some(path) = &kubeconfig_out {
        let _ = writeln!(out, "kubeconfig written to {}", path.display());
    }
    let _ = out.flush();
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .context("installing the SIGTERM handler")?;
    tokio::select! {
        r = tokio::signal::ctrl_c() => r.context("waiting for SIGINT")?,
        _ = term.recv() => {}
    }
    sandbox.shutdown().await;
    Ok(())
}
