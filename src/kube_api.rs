//! The Kubernetes client: construction, and instrumentation of every call
//! for `cnpg_autoresize_api_requests_total`.

use crate::metrics::Metrics;
use anyhow::Context;
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::{Client, Config};
use std::future::Future;
use std::path::Path;

/// A client from `--kubeconfig`, else the in-cluster service account.
/// Returns the namespace the configuration names, if any.
pub async fn client(kubeconfig: Option<&Path>) -> anyhow::Result<(Client, String)> {
    let config = match kubeconfig {
        Some(path) => {
            let kc = Kubeconfig::read_from(path)
                .with_context(|| format!("reading kubeconfig {}", path.display()))?;
            Config::from_custom_kubeconfig(kc, &KubeConfigOptions::default())
                .await
                .with_context(|| format!("using kubeconfig {}", path.display()))?
        }
        None => Config::incluster()
            .context("no --kubeconfig given and not running in a pod (in-cluster config)")?,
    };
    let namespace = config.default_namespace.clone();
    let client = Client::try_from(config).context("building the Kubernetes client")?;
    Ok((client, namespace))
}

/// The HTTP status of a failed call (0 when it never got an answer).
pub fn status_code(error: &kube::Error) -> u16 {
    match error {
        kube::Error::Api(status) => status.code,
        _ => 0,
    }
}

pub fn is_status(error: &kube::Error, code: u16) -> bool {
    status_code(error) == code
}

/// Runs one API call and counts it by verb, resource and code.
pub async fn observed<T>(
    metrics: &Metrics,
    verb: &str,
    resource: &str,
    call: impl Future<Output = kube::Result<T>>,
) -> kube::Result<T> {
    let result = call.await;
    let code = match &result {
        Ok(_) => 200,
        Err(e) => status_code(e),
    };
    metrics.count_api(verb, resource, code);
    result
}
