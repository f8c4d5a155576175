//! The Kubernetes client: construction, and instrumentation of every call
//! for `cnpg_autoresize_api_requests_total`.

use crate::metrics::Metrics;
use anyhow::Context;
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::{Client, Config};
use std::future::Future;
use std::path::Path;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::Poll;
use std::time::Duration;

/// A client from `--kubeconfig`, else the in-cluster service account.
/// Returns the namespace the configuration names, if any. `user_agent`
/// names the pod in the API server's audit log and request accounting.
pub async fn client(
    kubeconfig: Option<&Path>,
    user_agent: Option<&str>,
) -> anyhow::Result<(Client, String)> {
    client_with_clock(kubeconfig, user_agent, None).await
}

/// [`client`], comparing this pod's clock with the API server's on every
/// answer when `clock` is given.
pub async fn client_with_clock(
    kubeconfig: Option<&Path>,
    user_agent: Option<&str>,
    clock: Option<Arc<ApiClock>>,
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
    let builder =
        kube::client::ClientBuilder::try_from(config).context("building the Kubernetes client")?;
    let client = match clock {
        Some(clock) => builder.with_layer(&ClockLayer(clock)).build(),
        None => builder.build(),
    };
    Ok((client, namespace))
}

/// This pod's clock against the API server's, from the `Date` header of the
/// API server's answers (docs/reference/metrics.md#process-metrics). Records
/// and budgets are dated by the leader's clock; this says how far it is off.
pub struct ApiClock {
    skew: Mutex<Option<f64>>,
    metrics: Arc<Metrics>,
}

impl ApiClock {
    pub fn new(metrics: Arc<Metrics>) -> Self {
        ApiClock {
            skew: Mutex::new(None),
            metrics,
        }
    }

    /// This pod's clock minus the API server's, in seconds (positive: this
    /// pod is ahead), as of the last answer; None before the first one.
    pub fn skew_seconds(&self) -> Option<f64> {
        *self.skew.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Compares an answer's `Date` (whole seconds, so the server's time was
    /// within the second after it) with this pod's clock now.
    pub fn observe(&self, date: &str, now: jiff::Timestamp) {
        let Some(skew) = skew_from_date(date, now) else {
            return;
        };
        *self.skew.lock().unwrap_or_else(|p| p.into_inner()) = Some(skew);
        self.metrics
            .clock_skew
            .with_label_values::<&str>(&[])
            .set(skew);
    }
}

/// `now` minus the middle of the second an HTTP `Date` names; None when the
/// header does not read (an answer says nothing about our clock then).
pub fn skew_from_date(date: &str, now: jiff::Timestamp) -> Option<f64> {
    let server = jiff::fmt::rfc2822::DateTimeParser::new()
        .parse_timestamp(date)
        .ok()?;
    let skew = now.duration_since(server).as_secs_f64() - 0.5;
    skew.is_finite().then_some(skew)
}

/// The tower layer that hands every answer's `Date` to an [`ApiClock`].
#[derive(Clone)]
struct ClockLayer(Arc<ApiClock>);

impl<S> tower::Layer<S> for ClockLayer {
    type Service = ClockService<S>;

    fn layer(&self, inner: S) -> ClockService<S> {
        ClockService {
            inner,
            clock: self.0.clone(),
        }
    }
}

#[derive(Clone)]
struct ClockService<S> {
    inner: S,
    clock: Arc<ApiClock>,
}

impl<S, ReqBody, ResBody> tower::Service<http::Request<ReqBody>> for ClockService<S>
where
    S: tower::Service<http::Request<ReqBody>, Response = http::Response<ResBody>>,
    S::Future: Send + 'static,
    ResBody: Send + 'static,
    S::Error: Send + 'static,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = Pin<Box<dyn Future<Output = Result<S::Response, S::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut std::task::Context<'_>) -> Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: http::Request<ReqBody>) -> Self::Future {
        let answer = self.inner.call(request);
        let clock = self.clock.clone();
        Box::pin(async move {
            let response = answer.await?;
            if let Some(date) = response
                .headers()
                .get(http::header::DATE)
                .and_then(|d| d.to_str().ok())
            {
                clock.observe(date, jiff::Timestamp::now());
            }
            Ok(response)
        })
    }
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn skew_is_our_clock_minus_the_middle_of_the_servers_second() {
        let now: jiff::Timestamp = "2026-03-01T12:05:00.5Z".parse().unwrap();
        let skew = |date: &str| skew_from_date(date, now);
        assert_eq!(skew("Sun, 01 Mar 2026 12:05:00 GMT"), Some(0.0));
        assert_eq!(skew("Sun, 01 Mar 2026 12:00:00 GMT"), Some(300.0));
        assert_eq!(skew("Sun, 01 Mar 2026 12:07:00 GMT"), Some(-120.0));
        assert_eq!(skew("yesterday"), None);
        assert_eq!(skew(""), None);
    }
}
