//! `cnpg-autoresize validate`: checks a Cluster manifest's resize configuration.

use super::input::{expect_cluster, read_document, typed, InputError};
use crate::api::cluster::Cluster;
use crate::api::validation::{validate_cluster, ValidationReport};
use std::fmt::Write;
use std::path::Path;

pub fn validate_file(path: Option<&Path>) -> Result<(Cluster, ValidationReport), InputError> {
    let name = path
        .filter(|p| p.as_os_str() != "-")
        .map(|p| p.display().to_string())
        .unwrap_or_else(|| "standard input".to_string());
    let document = read_document(path)?;
    expect_cluster(&name, &document)?;
    let cluster: Cluster = typed(&name, document)?;
    let report = validate_cluster(&cluster);
    Ok((cluster, report))
}

/// The human form: one line per problem, then a verdict.
pub fn render_human(cluster: &Cluster, report: &ValidationReport) -> String {
    let mut out = String::new();
    for e in &report.errors {
        let _ = writeln!(out, "error: {}: {}", e.field, e.message);
    }
    for w in &report.warnings {
        let _ = writeln!(out, "warning: {}: {}", w.field, w.message);
    }
    let name = cluster.name();
    let plural = |n: usize, word: &str| format!("{n} {word}{}", if n == 1 { "" } else { "s" });
    let _ = if report.is_valid() {
        writeln!(
            out,
            "cluster {name:?}: valid ({})",
            plural(report.warnings.len(), "warning")
        )
    } else {
        writeln!(
            out,
            "cluster {name:?}: invalid ({}, {})",
            plural(report.errors.len(), "error"),
            plural(report.warnings.len(), "warning")
        )
    };
    out
}
