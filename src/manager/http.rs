//! The pod's HTTP endpoint: `/metrics`, `/healthz`, `/readyz`, `/v1/status`
//! (long-poll with `?wait=<s>&after=<version>`) and `/v1/decisions`.
//!
//! Whoever reaches the port can send anything, so every input is checked
//! before it is used (docs/reference/commands.md#endpoints): a query value
//! out of range is a 400 naming it, a request body is refused (413), and
//! long-polls are bounded in number and in time.

use crate::actors::leader::{HeldLease, Leadership};
use crate::actors::planner::feed::{DecisionFeed, LeaseView};
use crate::actors::problems::Problems;
use crate::actors::status::{LocalStatus, StatusResponse};
use crate::actors::supervision::Liveness;
use crate::metrics::Metrics;
use actix_web::dev::ServerHandle;
use actix_web::http::header;
use actix_web::{web, App, HttpRequest, HttpResponse, HttpServer};
use futures::StreamExt;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::{watch, Semaphore};

/// Long-polls never hold a request longer than this; a longer `wait` is cut.
pub const MAX_WAIT: Duration = Duration::from_secs(60);
/// Long-polls waiting at once. A cluster needs one per peer on each pod (the
/// leader's) and one per follower on the leader: 128 serves a cluster of
/// 100 instances with room to spare. One more is answered 429 at once: it
/// must not wait (waiting requests are what a flood would pile up), and an
/// immediate 200 would make a legitimate poller ask again at once, in a
/// loop, where a 429 makes it back off.
pub const MAX_LONG_POLLS: usize = 128;
/// Connections open at once; more wait in the kernel's accept queue.
const MAX_CONNECTIONS: usize = 512;
/// Longest pod name (a DNS subdomain).
const MAX_INSTANCE_LEN: usize = 253;
/// A refused body is read and dropped up to this much, so that its sender
/// gets the 413 rather than a reset; beyond it the connection is closed.
const DRAIN_LIMIT: usize = 16 << 20;

#[derive(Clone)]
pub struct HttpState {
    pub pod_name: String,
    pub metrics: Arc<Metrics>,
    pub liveness: Arc<Liveness>,
    pub status: watch::Receiver<LocalStatus>,
    pub feed: watch::Receiver<DecisionFeed>,
    pub leadership: watch::Receiver<Leadership>,
    /// The Lease as this pod holds it, while it leads.
    pub held: watch::Receiver<Option<HeldLease>>,
    pub problems: Problems,
}

/// The query of `/v1/status` and `/v1/decisions`, checked.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct LongPoll {
    /// How long to wait for news: at most [`MAX_WAIT`].
    pub wait: Duration,
    /// Answer once the version is past this one (absent: answer at once).
    pub after: Option<u64>,
    /// `/v1/decisions`: only this instance's decisions.
    pub instance: Option<String>,
}

impl LongPoll {
    /// Whether this request would wait.
    fn waits(&self) -> bool {
        self.after.is_some() && !self.wait.is_zero()
    }
}

/// Reads a query string. Unknown parameters are ignored; a known one that is
/// repeated, unreadable or out of range is an error naming it and its value.
pub fn parse_long_poll(query: &str) -> Result<LongPoll, String> {
    let pairs = web::Query::<Vec<(String, String)>>::from_query(query)
        .map_err(|e| format!("unreadable query string {query:?}: {e}"))?
        .into_inner();
    let mut poll = LongPoll::default();
    let mut seen = std::collections::BTreeSet::new();
    for (name, value) in pairs {
        if matches!(name.as_str(), "wait" | "after" | "instance") && !seen.insert(name.clone()) {
            return Err(format!("{name} is given more than once"));
        }
        match name.as_str() {
            "wait" => poll.wait = parse_wait(&value)?,
            "after" => {
                poll.after = Some(value.parse().map_err(|_| {
                    format!("after {value:?}: expected a version (a whole number, 0 or more)")
                })?)
            }
            "instance" => {
                if value.is_empty() || value.len() > MAX_INSTANCE_LEN {
                    return Err(format!(
                        "instance {:?}: expected a pod name (1 to {MAX_INSTANCE_LEN} characters)",
                        truncated(&value)
                    ));
                }
                poll.instance = Some(value);
            }
            _ => {}
        }
    }
    Ok(poll)
}

/// `wait`: seconds, a finite number of 0 or more; more than [`MAX_WAIT`] is cut.
fn parse_wait(value: &str) -> Result<Duration, String> {
    let bad = || {
        format!(
            "wait {:?}: expected seconds, a finite number of 0 or more (at most {} is used)",
            truncated(value),
            MAX_WAIT.as_secs()
        )
    };
    let seconds: f64 = value.parse().map_err(|_| bad())?;
    if !seconds.is_finite() || seconds < 0.0 {
        return Err(bad());
    }
    // Cut before converting: a huge value does not fit a Duration.
    Ok(Duration::try_from_secs_f64(seconds.min(MAX_WAIT.as_secs_f64())).unwrap_or(MAX_WAIT))
}

fn truncated(value: &str) -> String {
    value.chars().take(64).collect()
}

fn bad_request(message: String) -> HttpResponse {
    HttpResponse::BadRequest().json(serde_json::json!({ "error": message }))
}

/// The endpoints take no body: one that comes is read and dropped (bounded:
/// nothing is kept) and refused.
async fn refuse_body(req: &HttpRequest, mut payload: web::Payload) -> Option<HttpResponse> {
    let headers = req.headers();
    let length = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .map(|v| v.trim() != "0")
        .unwrap_or(false);
    if !length && !headers.contains_key(header::TRANSFER_ENCODING) {
        return None;
    }
    let mut drained = 0usize;
    while let Some(Ok(chunk)) = payload.next().await {
        drained += chunk.len();
        if drained > DRAIN_LIMIT {
            break;
        }
    }
    Some(
        HttpResponse::PayloadTooLarge()
            .force_close()
            .json(serde_json::json!({"error": "these endpoints take no request body"})),
    )
}

/// One permit per waiting long-poll.
struct LongPolls(Arc<Semaphore>);

fn too_many() -> HttpResponse {
    HttpResponse::TooManyRequests()
        .insert_header((header::RETRY_AFTER, "1"))
        .force_close()
        .json(serde_json::json!({
            "error": format!("{MAX_LONG_POLLS} long-polls are waiting already; ask again later")
        }))
}

async fn metrics(
    req: HttpRequest,
    body: web::Payload,
    state: web::Data<HttpState>,
) -> HttpResponse {
    if let Some(refused) = refuse_body(&req, body).await {
        return refused;
    }
    HttpResponse::Ok()
        .content_type("text/plain; version=0.0.4; charset=utf-8")
        .body(state.metrics.render())
}

async fn healthz(
    req: HttpRequest,
    body: web::Payload,
    state: web::Data<HttpState>,
) -> HttpResponse {
    if let Some(refused) = refuse_body(&req, body).await {
        return refused;
    }
    let stalled = state.liveness.stalled();
    if stalled.is_empty() {
        HttpResponse::Ok().body("ok\n")
    } else {
        let names: Vec<String> = stalled
            .iter()
            .map(|(n, why)| format!("{n} {why}"))
            .collect();
        HttpResponse::ServiceUnavailable().body(format!("stalled: {}\n", names.join(", ")))
    }
}

/// Ready once the first disk probe is done — and nothing else. In a pod a
/// sidecar's readiness gates PostgreSQL's Service endpoints, so it must never
/// depend on the API server, the lease, PostgreSQL or a valid configuration
/// (`cnpg_autoresize_api_up` and `cnpg_autoresize_config_valid` tell those).
async fn readyz(req: HttpRequest, body: web::Payload, state: web::Data<HttpState>) -> HttpResponse {
    if let Some(refused) = refuse_body(&req, body).await {
        return refused;
    }
    if state.status.borrow().probed {
        HttpResponse::Ok().body("ok\n")
    } else {
        HttpResponse::ServiceUnavailable().body("the first disk probe is not done yet\n")
    }
}

/// A long-poll request's query, or the answer that refuses it (a body, a
/// query out of range).
async fn long_poll_of(req: &HttpRequest, body: web::Payload) -> Result<LongPoll, HttpResponse> {
    if let Some(refused) = refuse_body(req, body).await {
        return Err(refused);
    }
    parse_long_poll(req.query_string()).map_err(bad_request)
}

async fn status(
    req: HttpRequest,
    body: web::Payload,
    state: web::Data<HttpState>,
    polls: web::Data<LongPolls>,
) -> HttpResponse {
    let query = match long_poll_of(&req, body).await {
        Ok(q) => q,
        Err(refused) => return refused,
    };
    let mut rx = state.status.clone();
    if let (true, Some(after)) = (query.waits(), query.after) {
        let Ok(_permit) = polls.0.clone().try_acquire_owned() else {
            return too_many();
        };
        let _ = tokio::time::timeout(query.wait, rx.wait_for(|s| s.version > after)).await;
    }
    let current = rx.borrow().clone();
    let problems = state.problems.list();
    HttpResponse::Ok().json(StatusResponse {
        instance: state.pod_name.clone(),
        version: current.version,
        probed: current.complete(),
        report: current.served_report(),
        config_valid: problems.is_empty(),
        problems,
    })
}

async fn decisions(
    req: HttpRequest,
    body: web::Payload,
    state: web::Data<HttpState>,
    polls: web::Data<LongPolls>,
) -> HttpResponse {
    let query = match long_poll_of(&req, body).await {
        Ok(q) => q,
        Err(refused) => return refused,
    };
    if !state.leadership.borrow().is_leader {
        let holder = state.leadership.borrow().holder.clone();
        return HttpResponse::ServiceUnavailable().json(serde_json::json!({"leader": holder}));
    }
    let mut rx = state.feed.clone();
    let mut held = state.held.clone();
    if let (true, Some(after)) = (query.waits(), query.after) {
        let Ok(_permit) = polls.0.clone().try_acquire_owned() else {
            return too_many();
        };
        held.borrow_and_update();
        // News, or a renewal of the Lease: followers learn of each renewal
        // as it happens, which is how they know when a leader that stops
        // answering loses the Lease (docs/design.md#leader-election).
        let _ = tokio::time::timeout(query.wait, async {
            tokio::select! {
                _ = rx.wait_for(|f| f.version > after) => {}
                _ = held.changed() => {}
            }
        })
        .await;
    }
    let mut feed = match &query.instance {
        Some(instance) => rx.borrow().only(instance),
        None => rx.borrow().clone(),
    };
    let now = Instant::now();
    feed.lease = held.borrow().as_ref().map(|h| LeaseView {
        holder: h.holder.clone(),
        renew_time: h.renew_time.clone(),
        valid_for_seconds: h.valid_until.saturating_duration_since(now).as_secs_f64(),
    });
    HttpResponse::Ok().json(feed)
}

/// Binds and starts the server; the handle stops it.
pub fn serve(
    addr: SocketAddr,
    state: HttpState,
) -> std::io::Result<(ServerHandle, actix_web::dev::Server)> {
    let data = web::Data::new(state);
    let polls = web::Data::new(LongPolls(Arc::new(Semaphore::new(MAX_LONG_POLLS))));
    let server = HttpServer::new(move || {
        App::new()
            .app_data(data.clone())
            .app_data(polls.clone())
            .route("/metrics", web::get().to(metrics))
            .route("/healthz", web::get().to(healthz))
            .route("/readyz", web::get().to(readyz))
            .route("/v1/status", web::get().to(status))
            .route("/v1/decisions", web::get().to(decisions))
    })
    .workers(1)
    .max_connections(MAX_CONNECTIONS)
    .disable_signals()
    .shutdown_timeout(1)
    .bind(addr)?
    .run();
    Ok((server.handle(), server))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_huge_wait_is_cut_to_the_maximum_not_a_panic() {
        let poll = parse_long_poll("wait=1e20&after=0").unwrap();
        assert_eq!(poll.wait, MAX_WAIT);
        assert_eq!(poll.after, Some(0));
        assert_eq!(parse_long_poll("wait=1e308").unwrap().wait, MAX_WAIT);
        assert_eq!(
            parse_long_poll("wait=0.25").unwrap().wait,
            Duration::from_millis(250)
        );
    }

    #[test]
    fn values_out_of_range_are_errors_naming_the_parameter() {
        for (query, names) in [
            ("wait=NaN&after=0", "wait"),
            ("wait=inf", "wait"),
            ("wait=-1", "wait"),
            ("wait=-0.001", "wait"),
            ("wait=soon", "wait"),
            ("after=-1", "after"),
            ("after=1.5", "after"),
            ("after=18446744073709551616", "after"),
            ("instance=", "instance"),
            ("wait=1&wait=2", "wait"),
        ] {
            let error = parse_long_poll(query).unwrap_err();
            assert!(error.starts_with(names), "{query}: {error}");
        }
        let long = format!("instance={}", "a".repeat(254));
        assert!(parse_long_poll(&long).unwrap_err().starts_with("instance"));
    }

    #[test]
    fn unknown_parameters_are_ignored_and_no_after_means_no_wait() {
        let poll = parse_long_poll("wait=5&color=blue&instance=pg-1").unwrap();
        assert_eq!(poll.instance.as_deref(), Some("pg-1"));
        assert!(!poll.waits());
        assert_eq!(parse_long_poll("").unwrap(), LongPoll::default());
    }
}
