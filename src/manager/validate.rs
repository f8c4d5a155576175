//! `cnpg-autoresize validate`: checks a Cluster's resize configuration, or
//! an AutoResizePolicy (with its Cluster from `--cluster-file` when the
//! size comparisons and the volumes the Cluster has should be checked).

use super::input::{expect_kind, kind_of, read_document, typed, InputError};
use crate::api::cluster::Cluster;
use crate::api::policy::AutoResizePolicy;
use crate::api::validation::{
    validate_cluster, validate_policy, ValidationContext, ValidationReport,
};
use std::fmt::Write;
use std::path::Path;

/// What was validated, for the verdict line.
pub struct Subject {
    pub kind: &'static str,
    pub name: String,
}

fn display_name(path: Option<&Path>) -> String {
    path.filter(|p| p.as_os_str() != "-")
        .map(|p| p.display().to_string())
        .unwrap_or_else(|| "standard input".to_string())
}

pub fn validate_file(
    path: Option<&Path>,
    cluster_file: Option<&Path>,
) -> Result<(Subject, ValidationReport), InputError> {
    let name = display_name(path);
    let document = read_document(path)?;
    let cluster_kind = (crate::api::cluster::API_GROUP, crate::api::cluster::KIND);
    let policy_kind = (crate::api::policy::API_GROUP, crate::api::policy::KIND);
    match kind_of(&document) {
        k if k == policy_kind => {
            let policy: AutoResizePolicy = typed(&name, document)?;
            let cluster = match cluster_file {
                Some(file) => {
                    let cluster_name = display_name(Some(file));
                    let value = read_document(Some(file))?;
                    expect_kind(&cluster_name, &value, cluster_kind.0, cluster_kind.1)?;
                    Some(typed::<Cluster>(&cluster_name, value)?)
                }
                None => None,
            };
            let report = validate_policy(&policy, cluster.as_ref(), ValidationContext::default());
            Ok((
                Subject {
                    kind: "policy",
                    name: policy.name().to_string(),
                },
                report,
            ))
        }
        _ => {
            expect_kind(&name, &document, cluster_kind.0, cluster_kind.1).map_err(|_| {
                InputError(format!(
                    "{name} is neither a CloudNativePG Cluster (postgresql.cnpg.io/v1) nor an AutoResizePolicy (autoresize.cnpg.io/v1alpha1) manifest"
                ))
            })?;
            if cluster_file.is_some() {
                return Err(InputError(
                    "--cluster-file is for validating an AutoResizePolicy; the input is a Cluster"
                        .into(),
                ));
            }
            let cluster: Cluster = typed(&name, document)?;
            let report = validate_cluster(&cluster);
            Ok((
                Subject {
                    kind: "cluster",
                    name: cluster.name().to_string(),
                },
                report,
            ))
        }
    }
}

/// The human form: one line per problem, then a verdict.
pub fn render_human(subject: &Subject, report: &ValidationReport) -> String {
    let mut out = String::new();
    for e in &report.errors {
        let _ = writeln!(out, "error: {}: {}", e.field, e.message);
    }
    for w in &report.warnings {
        let _ = writeln!(out, "warning: {}: {}", w.field, w.message);
    }
    let plural = |n: usize, word: &str| format!("{n} {word}{}", if n == 1 { "" } else { "s" });
    let (kind, name) = (subject.kind, &subject.name);
    let _ = if report.is_valid() {
        writeln!(
            out,
            "{kind} {name:?}: valid ({})",
            plural(report.warnings.len(), "warning")
        )
    } else {
        writeln!(
            out,
            "{kind} {name:?}: invalid ({}, {})",
            plural(report.errors.len(), "error"),
            plural(report.warnings.len(), "warning")
        )
    };
    out
}
