//! The command line (docs/reference/commands.md).

use super::{plan, validate};
use clap::{Parser, Subcommand, ValueEnum};
use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(Debug, Parser)]
#[command(
    name = "cnpg-autoresize",
    version,
    about = "Grows PostgreSQL volumes on Kubernetes before they fill — and refuses when growth would only hide a WAL problem."
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Option<Command>,
}

/// What `cnpg-autoresize` alone prints: where to start.
fn overview() -> String {
    let demo = if cfg!(feature = "testbed") {
        "  cnpg-autoresize demo              see it work on this machine: API sandbox, PostgreSQL, volumes, managers"
    } else {
        "  cnpg-autoresize demo              (developer builds only: cargo run --release -- demo)"
    };
    format!(
        "cnpg-autoresize {} — grows PostgreSQL volumes on Kubernetes before they fill\n\n\
         {demo}\n\
         \x20 cnpg-autoresize validate FILE     check a Cluster's resize blocks or an AutoResizePolicy\n\
         \x20 cnpg-autoresize plan FILE         what would it decide for this snapshot? (JSON)\n\
         \x20 cnpg-autoresize status --cluster  a cluster's volumes as the planner sees them\n\
         \x20 cnpg-autoresize run               the in-pod manager (injected by the Helm chart)\n\
         \x20 cnpg-autoresize plugin --listen  the CNPG-I plugin: CloudNativePG adds the manager to its pods\n\
         \x20 cnpg-autoresize sandbox           serve the local Kubernetes API sandbox (developer builds)\n\n\
         `cnpg-autoresize <command> --help` shows each command's flags and an example.\n",
        env!("CARGO_PKG_VERSION")
    )
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the whole system locally (API sandbox, PostgreSQL, volumes, managers) and show a resize live.
    #[cfg(feature = "testbed")]
    #[command(
        after_help = "Example:\n  cnpg-autoresize demo --instances 3      # Ctrl-C stops and cleans up"
    )]
    Demo(super::demo::DemoArgs),
    /// Check a Cluster's resize configuration or an AutoResizePolicy (exit 1 on errors).
    #[command(
        after_help = "Examples:\n  cnpg-autoresize validate examples/clusters/data-and-wal.yaml\n  cnpg-autoresize validate examples/policies/data-and-wal.yaml --cluster-file examples/policies/cluster-upstream.yaml --output json"
    )]
    Validate {
        /// Cluster or AutoResizePolicy manifest (YAML or JSON); "-" or absent reads standard input.
        file: Option<PathBuf>,
        /// With a policy: the Cluster it governs, for the size comparisons and the volumes it has.
        #[arg(long)]
        cluster_file: Option<PathBuf>,
        /// Output format.
        #[arg(long, short = 'o', value_enum, default_value_t = OutputFormat::Human)]
        output: OutputFormat,
    },
    /// Offline what-if: read a snapshot (YAML or JSON) and print the decisions as JSON.
    #[command(
        after_help = "Example:\n  cnpg-autoresize plan examples/plan/data-and-wal.yaml | jq '.decisions[] | {pvc, action, reason}'"
    )]
    Plan {
        /// Snapshot file; "-" or absent reads standard input.
        file: Option<PathBuf>,
    },
    /// Print a cluster's volumes as the planner sees them: size, use, forecast, trigger, budget, state.
    #[command(after_help = "Example:\n  cnpg-autoresize status --cluster pg-main -n databases")]
    Status {
        /// Name of the CNPG Cluster.
        #[arg(long, env = "CLUSTER_NAME")]
        cluster: String,
        /// Namespace (default: the kubeconfig's).
        #[arg(long, short = 'n')]
        namespace: Option<String>,
        /// Kubeconfig file; absent = in-cluster.
        #[arg(long, env = "KUBECONFIG")]
        kubeconfig: Option<PathBuf>,
    },
    /// The in-pod manager: probes volumes and WAL health, elects a leader, resizes PVCs.
    #[command(
        after_help = "Example (the Helm chart injects this into every instance pod):\n  cnpg-autoresize run --cluster pg-main --pod-name \"$POD_NAME\" --wal-path /var/lib/postgresql/wal"
    )]
    Run(Box<super::run::RunArgs>),
    /// Serve CNPG-I: CloudNativePG adds the manager to the instance pods of Clusters that list the plugin.
    #[command(
        after_help = "Example (the Helm chart runs it with cnpgi.enabled=true):\n  cnpg-autoresize plugin --listen 0.0.0.0:9090 --tls-cert /tls/server/tls.crt --tls-key /tls/server/tls.key --client-ca /tls/client/tls.crt --sidecar-template /etc/cnpg-autoresize/sidecar.yaml"
    )]
    Plugin(Box<crate::plugin::command::PluginArgs>),
    /// Serve the local Kubernetes API sandbox (no real cluster needed).
    #[cfg(feature = "testbed")]
    #[command(
        after_help = "Example:\n  cnpg-autoresize sandbox --kubeconfig-out /tmp/kc.yaml &\n  kubectl --kubeconfig /tmp/kc.yaml --validate=false get pvc"
    )]
    Sandbox {
        /// Address to listen on (port 0 = a free port).
        #[arg(long, default_value = "127.0.0.1:0")]
        listen: std::net::SocketAddr,
        /// Write an admin kubeconfig for the sandbox here.
        #[arg(long)]
        kubeconfig_out: Option<PathBuf>,
    },
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum OutputFormat {
    Human,
    Json,
}

/// Exit code for unusable input or flags (matches clap's usage errors).
pub const EXIT_USAGE: u8 = 2;

pub fn main() -> ExitCode {
    let argv: Vec<std::ffi::OsString> = std::env::args_os().collect();
    let cli = match Cli::try_parse_from(&argv) {
        Ok(cli) => cli,
        // In a pod `run` must not exit over its flags (a native sidecar
        // that exits keeps PostgreSQL down): it stays up inert instead.
        Err(e)
            if super::run::is_run(&argv)
                && !super::run::on_terminal()
                && !matches!(
                    e.kind(),
                    clap::error::ErrorKind::DisplayHelp
                        | clap::error::ErrorKind::DisplayVersion
                        | clap::error::ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand
                ) =>
        {
            return super::run::main_unparsed(&argv, &e)
        }
        Err(e) => e.exit(),
    };
    let Some(command) = cli.command else {
        print!("{}", overview());
        return ExitCode::SUCCESS;
    };
    match command {
        Command::Run(args) => super::run::main(*args),
        Command::Plugin(args) => crate::plugin::command::main(*args),
        #[cfg(feature = "testbed")]
        Command::Demo(args) => super::demo::main(args),
        Command::Plan { file } => run_plan(file),
        Command::Validate {
            file,
            cluster_file,
            output,
        } => run_validate(file, cluster_file, output),
        Command::Status {
            cluster,
            namespace,
            kubeconfig,
        } => run_async(async move {
            let table = super::status::status(kubeconfig.as_deref(), namespace, &cluster).await?;
            print!("{table}");
            Ok(())
        }),
        #[cfg(feature = "testbed")]
        Command::Sandbox {
            listen,
            kubeconfig_out,
        } => {
            run_async(async move {
                // The Cluster schema of the fields the project reads and
                // writes (the sandbox prunes the rest, like a real server),
                // and the project's own AutoResizePolicy CRD.
                let crds = vec![
                    crate::api::crd::generated_cluster_crd_yaml()?,
                    crate::api::crd::policy_crd_yaml()?,
                ];
                kube_sandbox::serve_until_signal(listen, kubeconfig_out, crds).await
            })
        }
    }
}

/// Runs an async command; an error is one line on stderr and exit 1.
fn run_async(fut: impl std::future::Future<Output = anyhow::Result<()>>) -> ExitCode {
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => return fail(format!("cannot start the runtime: {e}")),
    };
    match runtime.block_on(fut) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn fail(message: impl std::fmt::Display) -> ExitCode {
    eprintln!("error: {message}");
    ExitCode::from(EXIT_USAGE)
}

fn print_json(value: &impl serde::Serialize) -> Result<(), String> {
    let mut stdout = std::io::stdout().lock();
    serde_json::to_writer_pretty(&mut stdout, value).map_err(|e| e.to_string())?;
    writeln!(stdout).map_err(|e| e.to_string())
}

fn run_plan(file: Option<PathBuf>) -> ExitCode {
    match plan::plan_file(file.as_deref(), jiff::Timestamp::now()) {
        Ok((output, notes)) => match notes
            .iter()
            .try_for_each(|n| writeln!(std::io::stderr(), "note: {n}"))
            .map_err(|e| e.to_string())
            .and_then(|()| print_json(&output))
        {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => fail(format!("cannot write the plan: {e}")),
        },
        Err(e) => fail(e),
    }
}

fn run_validate(
    file: Option<PathBuf>,
    cluster_file: Option<PathBuf>,
    output: OutputFormat,
) -> ExitCode {
    let (subject, report) = match validate::validate_file(file.as_deref(), cluster_file.as_deref())
    {
        Ok(result) => result,
        Err(e) => return fail(e),
    };
    let written = match output {
        OutputFormat::Json => print_json(&report),
        OutputFormat::Human => std::io::stdout()
            .write_all(validate::render_human(&subject, &report).as_bytes())
            .map_err(|e| e.to_string()),
    };
    if let Err(e) = written {
        return fail(format!("cannot write the report: {e}"));
    }
    if report.is_valid() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    }
}
