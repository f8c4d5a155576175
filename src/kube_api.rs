//! The Kubernetes client: construction, and instrumentation of every call
//! for `cnpg_autoresize_api_requests_total`.

use crate::metrics::Metrics;
use anyhow::Context;
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::{Client, Config};
use std::future::Future;
use std::path::Path;
use std::time::Duration;

/// A client from `--kubeconfig`, else the in-cluster service account.
/// Returns the namespace the configuration names, if any. `user_agent`
/// names the pod in the API server's audit log and request accounting.
pub async fn client(
    kubeconfig: Option<&Path>,
    user_agent: Option<&str>,
) -> anyhow::Result<(Client, String)> {
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
    // Our actors retry with their own capped, jittered backoff; the client's
    // default retry can sleep for minutes on 503s (an outage), which would
    // stall lease renewals and recovery.
    let mut config = config;
    config.default_retry = false;
    if let Some(agent) = user_agent {
        let value =
            http::HeaderValue::from_str(agent).with_context(|| format!("user agent {agent:?}"))?;
        config.headers.push((http::header::USER_AGENT, value));
    }
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

/// No single call (watches aside) may hang longer than this.
pub const CALL_TIMEOUT: Duration = Duration::from_secs(10);

/// Runs one API call under [`CALL_TIMEOUT`] and counts it by verb, resource and code.
pub async fn observed<T>(
    metrics: &Metrics,
    verb: &str,
    resource: &str,
    call: impl Future<Output = kube::Result<T>>,
) -> kube::Result<T> {
    let result = match tokio::time::timeout(CALL_TIMEOUT, call).await {
        Ok(result) => result,
        Err(_) => Err(kube::Error::Service(
            format!(
                "{verb} {resource}: no answer within {}s",
                CALL_TIMEOUT.as_secs()
            )
            .into(),
        )),
    };
    let code = match &result {
        Ok(_) => 200,
        Err(e) => status_code(e),
    };
    metrics.count_api(verb, resource, code);
    result
}
