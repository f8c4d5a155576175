//! Prints the `AutoResizePolicy` CustomResourceDefinition as YAML, generated from the
//! Rust types (the kube-rs convention). Its output is checked in as
//! `charts/cnpg-autoresize/crds/autoresize.cnpg.io_autoresizepolicies.yaml`:
//!
//! ```sh
//! cargo run --bin crdgen > charts/cnpg-autoresize/crds/autoresize.cnpg.io_autoresizepolicies.yaml
//! ```
//!
//! `--cluster` prints instead the `postgresql.cnpg.io` Cluster CRD generated from the
//! project's types, the stand-in for the fork's real one (see
//! `cnpg_autoresize::api::crd::generated_cluster_crd`).

use std::io::Write;

fn main() -> anyhow::Result<()> {
    let yaml = match std::env::args().nth(1).as_deref() {
        None => cnpg_autoresize::api::crd::policy_crd_yaml()?,
        Some("--cluster") => cnpg_autoresize::api::crd::generated_cluster_crd_yaml()?,
        Some(other) => anyhow::bail!(
            "unknown argument {other:?}; usage: crdgen [--cluster] (prints the AutoResizePolicy CRD, \
             or with --cluster the generated Cluster CRD)"
        ),
    };
    std::io::stdout().write_all(yaml.as_bytes())?;
    Ok(())
}
