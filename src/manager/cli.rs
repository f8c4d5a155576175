//! The command line (SPEC §6).

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
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// The in-pod manager: probes volumes and WAL health, elects a leader, resizes PVCs.
    Run(Box<super::run::RunArgs>),
    /// Offline what-if: read a snapshot (YAML or JSON) and print the decisions as JSON.
    Plan {
        /// Snapshot file; "-" or absent reads standard input.
        file: Option<PathBuf>,
    },
    /// Check a Cluster manifest's resize configuration (exit 1 on errors).
    Validate {
        /// Cluster manifest (YAML or JSON); "-" or absent reads standard input.
        file: Option<PathBuf>,
        /// Output format.
        #[arg(long, short = 'o', value_enum, default_value_t = OutputFormat::Human)]
        output: OutputFormat,
    },
    /// Print a cluster's volumes as the planner sees them: size, use, trigger, budget, state.
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
    /// Run the whole system locally (API sandbox, PostgreSQL, volumes, managers) and show a resize live.
    Demo(super::demo::DemoArgs),
    /// Serve the local Kubernetes API sandbox (no real cluster needed).
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
    let cli = Cli::parse();
    match cli.command {
        Command::Run(args) => super::run::main(*args),
        Command::Demo(args) => super::demo::main(args),
        Command::Plan { file } => run_plan(file),
        Command::Validate { file, output } => run_validate(file, output),
        Command::Status {
            cluster,
            namespace,
            kubeconfig,
        } => run_async(async move {
            let table = super::status::status(kubeconfig.as_deref(), namespace, &cluster).await?;
            print!("{table}");
            Ok(())
        }),
        Command::Sandbox {
            listen,
            kubeconfig_out,
        } => {
            run_async(async move { kube_sandbox::serve_until_signal(listen, kubeconfig_out).await })
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
        Ok(output) => match print_json(&output) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => fail(format!("cannot write the plan: {e}")),
        },
        Err(e) => fail(e),
    }
}

fn run_validate(file: Option<PathBuf>, output: OutputFormat) -> ExitCode {
    let (cluster, report) = match validate::validate_file(file.as_deref()) {
        Ok(result) => result,
        Err(e) => return fail(e),
    };
    let written = match output {
        OutputFormat::Json => print_json(&report),
        OutputFormat::Human => std::io::stdout()
            .write_all(validate::render_human(&cluster, &report).as_bytes())
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
