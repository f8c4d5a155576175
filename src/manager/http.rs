//! The pod's HTTP endpoint: `/metrics`, `/healthz`, `/readyz`, `/v1/status`
//! (long-poll with `?wait=<s>&after=<version>`) and `/v1/decisions`.

use crate::actors::leader::Leadership;
use crate::actors::planner::feed::DecisionFeed;
use crate::actors::status::{LocalStatus, StatusResponse};
use crate::actors::supervision::Liveness;
use crate::metrics::Metrics;
use actix_web::dev::ServerHandle;
use actix_web::{web, App, HttpResponse, HttpServer};
use serde::Deserialize;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;

/// Long-polls never hold a request longer than this.
const MAX_WAIT: Duration = Duration::from_secs(60);

#[derive(Clone)]
pub struct HttpState {
    pub pod_name: String,
    pub metrics: Arc<Metrics>,
    pub liveness: Arc<Liveness>,
    pub status: watch::Receiver<LocalStatus>,
    pub feed: watch::Receiver<DecisionFeed>,
    pub leadership: watch::Receiver<Leadership>,
}

#[derive(Deserialize)]
struct LongPoll {
    wait: Option<f64>,
    after: Option<u64>,
    instance: Option<String>,
}

impl LongPoll {
    fn wait(&self) -> Duration {
        let seconds = self.wait.unwrap_or(0.0);
        if seconds.is_finite() && seconds > 0.0 {
            Duration::from_secs_f64(seconds).min(MAX_WAIT)
        } else {
            Duration::ZERO
        }
    }
}

async fn metrics(state: web::Data<HttpState>) -> HttpResponse {
    HttpResponse::Ok()
        .content_type("text/plain; version=0.0.4; charset=utf-8")
        .body(state.metrics.render())
}

async fn healthz(state: web::Data<HttpState>) -> HttpResponse {
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
/// depend on the API server, the lease or PostgreSQL (`cnpg_autoresize_api_up`
/// tells about the API server).
async fn readyz(state: web::Data<HttpState>) -> HttpResponse {
    if state.status.borrow().probed {
        HttpResponse::Ok().body("ok\n")
    } else {
        HttpResponse::ServiceUnavailable().body("the first disk probe is not done yet\n")
    }
}

async fn status(state: web::Data<HttpState>, query: web::Query<LongPoll>) -> HttpResponse {
    let mut rx = state.status.clone();
    if let Some(after) = query.after {
        let _ = tokio::time::timeout(query.wait(), rx.wait_for(|s| s.version > after)).await;
    }
    let current = rx.borrow().clone();
    HttpResponse::Ok().json(StatusResponse {
        instance: state.pod_name.clone(),
        version: current.version,
        probed: current.complete(),
        report: current.served_report(),
    })
}

async fn decisions(state: web::Data<HttpState>, query: web::Query<LongPoll>) -> HttpResponse {
    if !state.leadership.borrow().is_leader {
        let holder = state.leadership.borrow().holder.clone();
        return HttpResponse::ServiceUnavailable().json(serde_json::json!({"leader": holder}));
    }
    let mut rx = state.feed.clone();
    if let Some(after) = query.after {
        let _ = tokio::time::timeout(query.wait(), rx.wait_for(|f| f.version > after)).await;
    }
    let mut feed = rx.borrow().clone();
    if let Some(instance) = &query.instance {
        feed.instances.retain(|name, _| name == instance);
    }
    HttpResponse::Ok().json(feed)
}

/// Binds and starts the server; the handle stops it.
pub fn serve(
    addr: SocketAddr,
    state: HttpState,
) -> std::io::Result<(ServerHandle, actix_web::dev::Server)> {
    let data = web::Data::new(state);
    let server = HttpServer::new(move || {
        App::new()
            .app_data(data.clone())
            .route("/metrics", web::get().to(metrics))
            .route("/healthz", web::get().to(healthz))
            .route("/readyz", web::get().to(readyz))
            .route("/v1/status", web::get().to(status))
            .route("/v1/decisions", web::get().to(decisions))
    })
    .workers(1)
    .disable_signals()
    .shutdown_timeout(1)
    .bind(addr)?
    .run();
    Ok((server.handle(), server))
}
