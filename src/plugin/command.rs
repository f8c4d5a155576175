//! `cnpg-autoresize plugin` (docs/reference/commands.md#plugin): serve CNPG-I;
//! and the hidden `plugin inject`, the hook's decision on files, for
//! comparing the injection paths on the same pods.

use super::inject::{self, MountPaths, Outcome, SidecarTemplate};
use super::service::Plugin;
use super::status::StatusMode;
use super::tls::{Reloader, TlsFiles};
use crate::manager::cli::EXIT_USAGE;
use crate::manager::logging::{self, LogFormat};
use clap::{Args, Subcommand};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;

#[derive(Debug, Args)]
#[command(args_conflicts_with_subcommands = true, subcommand_negates_reqs = true)]
pub struct PluginArgs {
    #[command(subcommand)]
    pub action: Option<PluginAction>,
    /// Address to serve CNPG-I on (gRPC), e.g. 0.0.0.0:9090.
    #[arg(long, env = "AUTORESIZE_PLUGIN_LISTEN", required = true)]
    pub listen: Option<SocketAddr>,
    /// Server certificate (PEM); with --tls-key and --client-ca: mutual TLS 1.3.
    /// Without the three: plaintext, for local tests only.
    #[arg(long, env = "AUTORESIZE_PLUGIN_TLS_CERT", requires_all = ["tls_key", "client_ca"])]
    pub tls_cert: Option<PathBuf>,
    /// The server certificate's private key (PEM).
    #[arg(long, env = "AUTORESIZE_PLUGIN_TLS_KEY", requires_all = ["tls_cert", "client_ca"])]
    pub tls_key: Option<PathBuf>,
    /// Certificates a client's certificate must be signed by (PEM): the
    /// operator's client certificate itself (pinned), or its CA.
    #[arg(long, env = "AUTORESIZE_PLUGIN_CLIENT_CA", requires_all = ["tls_cert", "tls_key"])]
    pub client_ca: Option<PathBuf>,
    #[command(flatten)]
    pub sidecar: SidecarArgs,
    /// When to write a summary into the Cluster's status.pluginStatus.
    #[arg(long, env = "AUTORESIZE_PLUGIN_CLUSTER_STATUS", value_enum, default_value_t = StatusMode::Attention)]
    pub cluster_status: StatusMode,
    /// Kubeconfig file for the status summary's reads (policies, Leases);
    /// absent = the pod's service account, or none outside a pod.
    #[arg(long, env = "KUBECONFIG")]
    pub kubeconfig: Option<PathBuf>,
    /// Log format.
    #[arg(long, env = "AUTORESIZE_LOG_FORMAT", value_enum, default_value_t = LogFormat::Json)]
    pub log_format: LogFormat,
    /// Log level or filter (RUST_LOG syntax).
    #[arg(long, env = "AUTORESIZE_LOG_LEVEL", default_value = "info")]
    pub log_level: String,
}

/// What the container is built from (shared by the server and `inject`).
#[derive(Debug, Args)]
pub struct SidecarArgs {
    /// The manager container as the Helm chart renders it (its ConfigMap);
    /// absent = the chart's default rendering, built in.
    #[arg(long, env = "AUTORESIZE_PLUGIN_SIDECAR_TEMPLATE")]
    pub sidecar_template: Option<PathBuf>,
    /// Where CloudNativePG mounts the WAL volume in the postgres container.
    #[arg(long, env = "AUTORESIZE_PLUGIN_WAL_PATH", default_value = inject::DEFAULT_WAL_PATH)]
    pub wal_path: String,
    /// Where CloudNativePG mounts tablespaces (one directory each).
    #[arg(long, env = "AUTORESIZE_PLUGIN_TABLESPACES_PATH", default_value = inject::DEFAULT_TABLESPACES_PATH)]
    pub tablespaces_path: String,
}

impl SidecarArgs {
    fn load(&self) -> Result<(SidecarTemplate, MountPaths), String> {
        let template = match &self.sidecar_template {
            Some(path) => {
                let text = std::fs::read_to_string(path)
                    .map_err(|e| format!("--sidecar-template {}: {e}", path.display()))?;
                SidecarTemplate::parse(&text)
                    .map_err(|e| format!("--sidecar-template {}: {e}", path.display()))?
            }
            None => SidecarTemplate::builtin()
                .map_err(|e| format!("the built-in sidecar template: {e}"))?,
        };
        let paths = MountPaths {
            wal: self.wal_path.clone(),
            tablespaces: self.tablespaces_path.clone(),
        };
        Ok((template, paths))
    }
}

#[derive(Debug, Subcommand)]
pub enum PluginAction {
    /// Print the pod as the lifecycle hook would patch it (JSON), through
    /// the same code; for comparing the injection paths.
    #[command(hide = true)]
    Inject {
        /// The sidecar template (as --sidecar-template).
        #[arg(long)]
        template: Option<PathBuf>,
        /// The Cluster (YAML or JSON).
        #[arg(long)]
        cluster: PathBuf,
        /// The Pod (YAML or JSON).
        #[arg(long)]
        pod: PathBuf,
        /// A plugin parameter, NAME=VALUE (repeatable); replaces the
        /// Cluster's own parameters when given.
        #[arg(long = "param", value_name = "NAME=VALUE")]
        params: Vec<String>,
        #[arg(long, default_value = inject::DEFAULT_WAL_PATH)]
        wal_path: String,
        #[arg(long, default_value = inject::DEFAULT_TABLESPACES_PATH)]
        tablespaces_path: String,
    },
}

pub fn main(args: PluginArgs) -> ExitCode {
    if let Some(PluginAction::Inject {
        template,
        cluster,
        pod,
        params,
        wal_path,
        tablespaces_path,
    }) = args.action
    {
        let sidecar = SidecarArgs {
            sidecar_template: template,
            wal_path,
            tablespaces_path,
        };
        return match inject_files(&sidecar, &cluster, &pod, &params) {
            Ok(text) => {
                println!("{text}");
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("error: {e}");
                ExitCode::from(EXIT_USAGE)
            }
        };
    }
    let Some(listen) = args.listen else {
        eprintln!("error: missing --listen");
        return ExitCode::from(EXIT_USAGE);
    };
    let (template, paths) = match args.sidecar.load() {
        Ok(loaded) => loaded,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(EXIT_USAGE);
        }
    };
    let tls = match (&args.tls_cert, &args.tls_key, &args.client_ca) {
        (Some(cert), Some(key), Some(client_ca)) => match Reloader::new(TlsFiles {
            cert: cert.clone(),
            key: key.clone(),
            client_ca: client_ca.clone(),
        }) {
            Ok(r) => Some(Arc::new(r)),
            Err(e) => {
                eprintln!("error: {e}");
                return ExitCode::from(EXIT_USAGE);
            }
        },
        (None, None, None) => None,
        _ => {
            eprintln!("error: --tls-cert, --tls-key and --client-ca go together");
            return ExitCode::from(EXIT_USAGE);
        }
    };
    logging::init(args.log_format, &args.log_level);
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
    let result = runtime.block_on(async move {
        let listener = tokio::net::TcpListener::bind(listen)
            .await
            .map_err(|e| format!("--listen {listen}: {e}"))?;
        let kube = if args.cluster_status == StatusMode::Never {
            None
        } else {
            let agent = format!("cnpg-autoresize/{} (plugin)", env!("CARGO_PKG_VERSION"));
            match crate::kube_api::client(args.kubeconfig.as_deref(), Some(&agent)).await {
                Ok((client, _)) => Some(super::kube::KubeView::start(client)),
                Err(e) => {
                    tracing::warn!(error = %format!("{e:#}"), "no Kubernetes API: the status summary reads the Cluster only (no policy, no leader)");
                    None
                }
            }
        };
        let address = listener
            .local_addr()
            .map(|a| a.to_string())
            .unwrap_or_else(|_| listen.to_string());
        tracing::info!(
            %address,
            tls = tls.is_some(),
            container = template.name(),
            "serving CNPG-I as {}",
            inject::PLUGIN_NAME
        );
        if tls.is_none() {
            tracing::warn!("plaintext: CloudNativePG connects with mutual TLS only; this is for local tests");
        }
        let plugin = Arc::new(Plugin {
            template,
            paths,
            status_mode: args.cluster_status,
            kube,
        });
        super::server::serve(listener, tls, plugin, async {
            let signal = crate::manager::signals::wait_for_signal().await;
            tracing::info!(signal, "stopping");
        })
        .await
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

/// The pod, patched as the hook would, as pretty JSON.
pub fn inject_files(
    sidecar: &SidecarArgs,
    cluster: &Path,
    pod: &Path,
    params: &[String],
) -> Result<String, String> {
    let (template, paths) = sidecar.load()?;
    let read =
        |path: &Path| crate::manager::input::read_document(Some(path)).map_err(|e| e.to_string());
    let mut cluster = read(cluster)?;
    let mut pod = read(pod)?;
    if !params.is_empty() {
        let mut map = serde_json::Map::new();
        for param in params {
            let (name, value) = param
                .split_once('=')
                .ok_or_else(|| format!("--param {param:?}: expected NAME=VALUE"))?;
            map.insert(
                name.to_string(),
                serde_json::Value::String(value.to_string()),
            );
        }
        set_parameters(&mut cluster, map)?;
    }
    match inject::lifecycle_hook(&template, &paths, &cluster, &pod) {
        Outcome::Patch(ops) => {
            let patch: json_patch::Patch = serde_json::from_value(serde_json::Value::Array(ops))
                .map_err(|e| format!("the hook's patch: {e}"))?;
            json_patch::patch(&mut pod, &patch).map_err(|e| format!("the hook's patch: {e}"))?;
        }
        Outcome::Skip(reason) => eprintln!("note: nothing injected: {reason}"),
        Outcome::Invalid(errors) => {
            let lines: Vec<String> = errors.iter().map(ToString::to_string).collect();
            return Err(format!(
                "parameters refused, nothing injected:\n  {}",
                lines.join("\n  ")
            ));
        }
    }
    serde_json::to_string_pretty(&pod).map_err(|e| e.to_string())
}

/// Puts `parameters` into the Cluster's entry for the plugin (added, enabled,
/// when it has none).
fn set_parameters(
    cluster: &mut serde_json::Value,
    parameters: serde_json::Map<String, serde_json::Value>,
) -> Result<(), String> {
    let spec = cluster
        .as_object_mut()
        .ok_or("--cluster: not a mapping")?
        .entry("spec")
        .or_insert_with(|| serde_json::json!({}));
    let plugins = spec
        .as_object_mut()
        .ok_or("--cluster: spec is not a mapping")?
        .entry("plugins")
        .or_insert_with(|| serde_json::json!([]));
    let list = plugins
        .as_array_mut()
        .ok_or("--cluster: spec.plugins is not a list")?;
    let entry = match list.iter().position(|p| {
        p.get("name").and_then(serde_json::Value::as_str) == Some(inject::PLUGIN_NAME)
    }) {
        Some(i) => &mut list[i],
        None => {
            list.push(serde_json::json!({"name": inject::PLUGIN_NAME}));
            let last = list.len() - 1;
            &mut list[last]
        }
    };
    if let Some(map) = entry.as_object_mut() {
        map.insert("parameters".into(), serde_json::Value::Object(parameters));
    }
    Ok(())
}
