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
        Command::Plan { file } => run_plan(file),
        Command::Validate { file, output } => run_validate(file, output),
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
