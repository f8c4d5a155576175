//! Leader: holds the cluster's `coordination.k8s.io/v1` Lease so exactly one
//! pod plans at a time. Expiry is judged by local observation (how long the
//! record stayed unchanged), never by comparing clocks across pods.
//!
//! API cost: the leader renews with one `update` per renew interval (it
//! keeps the Lease it last wrote). A follower reads the Lease only while the
//! leader does not answer it over HTTP: the leader's `/v1/decisions`
//! long-poll, which every follower keeps open anyway, is the evidence that
//! the leader lives, so a healthy cluster of any size costs the API server
//! the leader's renewals and nothing per follower.

use super::problems::{Problem, Problems, Source, REPEAT_EVERY};
use super::supervision::{injected_panic, Lifeline, Liveness};
use crate::kube_api::{is_status, observed, status_code};
use crate::metrics::Metrics;
use actix::prelude::*;
use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta};
use kube::api::{Api, PostParams};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::watch;

#[derive(Clone, Debug)]
pub struct LeaderSettings {
    pub lease_name: String,
    pub identity: String,
    pub lease_duration: Duration,
    pub renew_interval: Duration,
}

impl LeaderSettings {
    /// How long a follower trusts the leader's last HTTP answer before it
    /// looks at the Lease itself: two renew intervals (the long-poll answers
    /// at least every renew interval) and a second of slack.
    pub fn evidence_grace(&self) -> Duration {
        self.renew_interval * 2 + Duration::from_secs(1)
    }
}

/// Who leads, as this pod last saw it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Leadership {
    pub is_leader: bool,
    pub holder: Option<String>,
}

/// What a follower learned from the leader's last HTTP answer.
#[derive(Clone, Debug, PartialEq)]
pub struct Evidence {
    /// The leader that answered.
    pub holder: String,
    /// When its last answer arrived, on this pod's clock.
    pub at: Instant,
    /// False once it stopped answering: the Lease is read again.
    pub answering: bool,
    /// The Lease record it held when it answered (its `renewTime`), and when
    /// that record expires at the latest, on this pod's clock.
    pub record: Option<(String, Instant)>,
}

/// The latest evidence about the leader, if any.
pub type LeaderEvidence = Option<Evidence>;

/// The Lease as this pod holds it, while it leads.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HeldLease {
    pub holder: String,
    /// The record's `renewTime`, as the API server stores it.
    pub renew_time: String,
    /// The lease is ours until then (this pod's clock).
    pub valid_until: Instant,
}

/// Margin kept before the lease's end: a write is only started while the
/// lease stays valid for at least this long.
const FENCE_MARGIN: Duration = Duration::from_secs(1);

/// The write fence: every write first checks the lease is still ours.
#[derive(Default)]
pub struct Fence {
    valid_until: Mutex<Option<Instant>>,
}

impl Fence {
    pub fn holds(&self) -> bool {
        let until = *self.valid_until.lock().unwrap_or_else(|p| p.into_inner());
        until.is_some_and(|t| Instant::now() + FENCE_MARGIN < t)
    }

    fn set(&self, until: Option<Instant>) {
        *self.valid_until.lock().unwrap_or_else(|p| p.into_inner()) = until;
    }
}

/// The lease record as last observed, and since when it has not changed.
#[derive(Clone, Debug)]
struct Observation {
    holder: Option<String>,
    renew_time: Option<String>,
    duration: Duration,
    since: Instant,
}

/// What one attempt found.
enum Outcome {
    /// We hold the lease, as written in this object, until then.
    Leading {
        lease: Box<Lease>,
        valid_until: Instant,
    },
    Following {
        observation: Observation,
    },
    /// The leader answered a follower recently: the API was not asked.
    Trusting {
        holder: String,
    },
    /// The API did not answer: nothing learned.
    Unknown,
    /// The API refused (401, 403): the Role or the token does not allow it.
    Refused {
        verb: &'static str,
        code: u16,
        error: String,
    },
}

pub struct LeaderActor {
    settings: LeaderSettings,
    api: Api<Lease>,
    fence: Arc<Fence>,
    leadership: watch::Sender<Leadership>,
    evidence: watch::Receiver<LeaderEvidence>,
    held_tx: watch::Sender<Option<HeldLease>>,
    problems: Problems,
    metrics: Arc<Metrics>,
    liveness: Arc<Liveness>,
    observation: Option<Observation>,
    /// When the Lease was last tried while it was refused.
    refused_at: Option<Instant>,
    /// The Lease as we last wrote it, while we lead.
    held: Option<Lease>,
    busy: bool,
    /// Once released, nothing in this process acts as leader again.
    released: Arc<std::sync::atomic::AtomicBool>,
    _lifeline: Lifeline,
}

impl LeaderActor {
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        settings: LeaderSettings,
        api: Api<Lease>,
        fence: Arc<Fence>,
        leadership: watch::Sender<Leadership>,
        evidence: watch::Receiver<LeaderEvidence>,
        held_tx: watch::Sender<Option<HeldLease>>,
        problems: Problems,
        metrics: Arc<Metrics>,
        liveness: Arc<Liveness>,
        released: Arc<std::sync::atomic::AtomicBool>,
        lifeline: Lifeline,
    ) -> Self {
        LeaderActor {
            settings,
            api,
            fence,
            leadership,
            evidence,
            held_tx,
            problems,
            metrics,
            liveness,
            observation: None,
            refused_at: None,
            held: None,
            busy: false,
            released,
            _lifeline: lifeline,
        }
    }

    fn is_released(&self) -> bool {
        self.released.load(std::sync::atomic::Ordering::SeqCst)
    }

    fn attempt(&mut self, ctx: &mut Context<Self>) {
        injected_panic("leader");
        self.liveness.beat("leader", self.settings.renew_interval);
        if self.busy || self.is_released() {
            return;
        }
        // An inert manager takes no lease (docs/reference/operations.md#when-the-manager-is-inert);
        // a refused Lease is tried again once a minute, not on every tick.
        let refused_recently = self.problems.has(Source::Lease)
            && self.refused_at.is_some_and(|t| t.elapsed() < REPEAT_EVERY);
        if self.problems.has_other_than(Source::Lease) || refused_recently {
            self.step_down(ctx);
            ctx.run_later(self.settings.renew_interval / 2, |act, ctx| {
                act.attempt(ctx)
            });
            return;
        }
        // A follower that heard from the leader recently leaves the API alone.
        let evidence = self.evidence.borrow().clone();
        let trusted = evidence.as_ref().filter(|e| {
            e.answering
                && self.held.is_none()
                && e.holder != self.settings.identity
                && e.at.elapsed() < self.settings.evidence_grace()
        });
        if let Some(e) = trusted {
            let next = self.apply(Outcome::Trusting {
                holder: e.holder.clone(),
            });
            ctx.run_later(next, |act, ctx| act.attempt(ctx));
            return;
        }
        // What the leader last said it held: the record it will let expire.
        let hint = evidence.and_then(|e| {
            let (renew_time, expires_by) = e.record?;
            Some(Hint {
                holder: e.holder,
                renew_time,
                expires_by,
            })
        });
        self.busy = true;
        let api = self.api.clone();
        let settings = self.settings.clone();
        let observation = self.observation.clone();
        let held = self.held.clone();
        let metrics = self.metrics.clone();
        let fut = async move {
            match held {
                Some(lease) => renew(&api, &settings, lease, &metrics).await,
                None => acquire_or_follow(&api, &settings, observation, hint, &metrics).await,
            }
        };
        ctx.spawn(fut.into_actor(self).map(|outcome, act, ctx| {
            act.busy = false;
            let next = act.apply(outcome);
            ctx.run_later(next, |act, ctx| act.attempt(ctx));
        }));
    }

    /// Gives up leadership now (an inert manager leads nothing): the fence
    /// drops at once, and the lease is released for a successor.
    fn step_down(&mut self, ctx: &mut Context<Self>) {
        self.fence.set(None);
        let _ = self.held_tx.send_replace(None);
        if let Some(lease) = self.held.take() {
            tracing::warn!(lease = %self.settings.lease_name, "stepping down: the manager cannot work (see the errors above)");
            let (api, settings, metrics) = (
                self.api.clone(),
                self.settings.clone(),
                self.metrics.clone(),
            );
            ctx.spawn(
                async move { release(&api, &settings, lease, &metrics).await }.into_actor(self),
            );
        }
        let holder = self.leadership.borrow().holder.clone();
        let me = self.settings.identity.clone();
        self.publish(false, holder.filter(|h| *h != me));
    }

    /// Updates fence and leadership; returns when to try again.
    fn apply(&mut self, outcome: Outcome) -> Duration {
        if self.is_released() {
            // A renewal that was in flight when the lease was released must
            // not re-arm the fence: a successor may already lead.
            self.fence.set(None);
            self.held = None;
            let _ = self.held_tx.send_replace(None);
            return self.settings.renew_interval;
        }
        let me = self.settings.identity.clone();
        if matches!(outcome, Outcome::Leading { .. } | Outcome::Following { .. }) {
            self.refused_at = None;
            self.problems.set(Source::Lease, Vec::new());
        }
        match outcome {
            Outcome::Leading { lease, valid_until } => {
                self.fence.set(Some(valid_until));
                let renew_time = lease
                    .spec
                    .as_ref()
                    .and_then(|s| s.renew_time.as_ref())
                    .map(|t| t.0.to_string())
                    .unwrap_or_default();
                let _ = self.held_tx.send_replace(Some(HeldLease {
                    holder: me.clone(),
                    renew_time,
                    valid_until,
                }));
                self.held = Some(*lease);
                self.observation = None;
                self.publish(true, Some(me));
                self.settings.renew_interval
            }
            Outcome::Following { observation } => {
                self.fence.set(None);
                self.held = None;
                let _ = self.held_tx.send_replace(None);
                let holder = observation.holder.clone();
                // A record seen for the first time cannot expire before a
                // lease duration from now: look again shortly before that
                // (a live holder has renewed by then; we only get here when
                // it does not answer us over HTTP). An unchanged record is
                // looked at again exactly when it would expire, so a crashed
                // leader is replaced one lease duration after we first saw
                // its last renewal.
                let changed = self.observation.as_ref().is_none_or(|o| {
                    o.holder != observation.holder || o.renew_time != observation.renew_time
                });
                let until_expiry = observation
                    .duration
                    .saturating_sub(observation.since.elapsed());
                let settle = if changed {
                    observation
                        .duration
                        .saturating_sub(self.settings.renew_interval / 2)
                        .max(self.settings.renew_interval / 2)
                } else {
                    self.settings.renew_interval / 2
                };
                self.observation = Some(observation);
                self.publish(false, holder);
                settle.min(until_expiry + Duration::from_millis(10))
            }
            Outcome::Trusting { holder } => {
                // Observing starts afresh once the evidence stops: expiry is
                // then judged from a full lease duration of stillness.
                self.observation = None;
                self.publish(false, Some(holder));
                self.settings.renew_interval / 2
            }
            Outcome::Unknown => {
                // Keep leading only while the lease we hold is still valid.
                if !self.fence.holds() {
                    self.held = None;
                    let _ = self.held_tx.send_replace(None);
                    let holder = self.leadership.borrow().holder.clone();
                    self.publish(false, holder.filter(|h| *h != me));
                }
                (self.settings.renew_interval / 2).max(Duration::from_millis(100))
            }
            Outcome::Refused { verb, code, error } => {
                self.fence.set(None);
                self.held = None;
                let _ = self.held_tx.send_replace(None);
                self.refused_at = Some(Instant::now());
                self.problems.set(
                    Source::Lease,
                    vec![Problem::new(
                        format!("{verb} leases"),
                        code.to_string(),
                        format!(
                            "the API server refuses to {verb} the Lease {}: {error} (check the Role and the service account token)",
                            self.settings.lease_name
                        ),
                    )],
                );
                let holder = self.leadership.borrow().holder.clone();
                self.publish(false, holder.filter(|h| *h != me));
                self.settings.renew_interval / 2
            }
        }
    }

    fn publish(&self, is_leader: bool, holder: Option<String>) {
        let new = Leadership { is_leader, holder };
        let old = self.leadership.borrow().clone();
        if old == new {
            return;
        }
        if new.is_leader != old.is_leader {
            if new.is_leader {
                tracing::info!(lease = %self.settings.lease_name, "leadership gained");
            } else {
                tracing::info!(lease = %self.settings.lease_name, holder = ?new.holder, "leadership lost");
            }
        }
        self.metrics.is_leader.set(i64::from(new.is_leader));
        let _ = self.leadership.send(new);
    }
}

impl Actor for LeaderActor {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        self.attempt(ctx);
    }

    fn stopped(&mut self, _ctx: &mut Context<Self>) {
        // A new incarnation starts from the Lease itself.
        self.fence.set(None);
    }
}

/// Gives the lease up on graceful shutdown so a successor takes over at once.
#[derive(Message)]
#[rtype(result = "()")]
pub struct Release;

impl Handler<Release> for LeaderActor {
    type Result = ResponseActFuture<Self, ()>;

    fn handle(&mut self, _: Release, _ctx: &mut Context<Self>) -> Self::Result {
        self.released
            .store(true, std::sync::atomic::Ordering::SeqCst);
        self.fence.set(None);
        self.publish(false, None);
        let held = self.held.take();
        let api = self.api.clone();
        let settings = self.settings.clone();
        let metrics = self.metrics.clone();
        Box::pin(
            async move {
                if let Some(lease) = held {
                    release(&api, &settings, lease, &metrics).await;
                }
            }
            .into_actor(self),
        )
    }
}

fn now_micro() -> MicroTime {
    MicroTime(jiff::Timestamp::now())
}

fn duration_secs(d: Duration) -> i32 {
    i32::try_from(d.as_secs().max(1)).unwrap_or(i32::MAX)
}

/// Renews the lease we hold with one update carrying the resourceVersion we
/// last wrote; a conflict means someone else wrote it: look again.
async fn renew(
    api: &Api<Lease>,
    settings: &LeaderSettings,
    mut lease: Lease,
    metrics: &Metrics,
) -> Outcome {
    let started = Instant::now();
    if let Some(spec) = lease.spec.as_mut() {
        spec.renew_time = Some(now_micro());
        spec.lease_duration_seconds = Some(duration_secs(settings.lease_duration));
    }
    match observed(
        metrics,
        "update",
        "leases",
        api.replace(&settings.lease_name, &PostParams::default(), &lease),
    )
    .await
    {
        Ok(written) => Outcome::Leading {
            lease: Box::new(written),
            valid_until: started + settings.lease_duration,
        },
        Err(e) if is_status(&e, 409) || is_status(&e, 404) => {
            acquire_or_follow(api, settings, None, None, metrics).await
        }
        Err(error) => refused("update", &error).unwrap_or_else(|| {
            tracing::debug!(%error, "cannot renew the lease");
            Outcome::Unknown
        }),
    }
}

/// A refusal by the API server (401, 403) of `verb` on the Lease.
fn refused(verb: &'static str, error: &kube::Error) -> Option<Outcome> {
    let code = status_code(error);
    matches!(code, 401 | 403).then(|| Outcome::Refused {
        verb,
        code,
        error: error.to_string(),
    })
}

/// What the leader said in its last answer: it held this record, which
/// expires by then (this pod's clock).
#[derive(Clone, Debug)]
struct Hint {
    holder: String,
    renew_time: String,
    expires_by: Instant,
}

async fn acquire_or_follow(
    api: &Api<Lease>,
    settings: &LeaderSettings,
    previous: Option<Observation>,
    hint: Option<Hint>,
    metrics: &Metrics,
) -> Outcome {
    let started = Instant::now();
    let valid_until = started + settings.lease_duration;
    let current = match observed(metrics, "get", "leases", api.get_opt(&settings.lease_name)).await
    {
        Ok(lease) => lease,
        Err(error) => {
            return refused("get", &error).unwrap_or_else(|| {
                tracing::debug!(%error, "cannot read the lease");
                Outcome::Unknown
            });
        }
    };
    let Some(mut lease) = current else {
        let lease = Lease {
            metadata: ObjectMeta {
                name: Some(settings.lease_name.clone()),
                ..Default::default()
            },
            spec: Some(LeaseSpec {
                holder_identity: Some(settings.identity.clone()),
                lease_duration_seconds: Some(duration_secs(settings.lease_duration)),
                acquire_time: Some(now_micro()),
                renew_time: Some(now_micro()),
                lease_transitions: Some(0),
                ..Default::default()
            }),
        };
        return match observed(
            metrics,
            "create",
            "leases",
            api.create(&PostParams::default(), &lease),
        )
        .await
        {
            Ok(written) => Outcome::Leading {
                lease: Box::new(written),
                valid_until,
            },
            Err(e) if is_status(&e, 409) => Outcome::Unknown, // someone else created it first
            Err(error) => refused("create", &error).unwrap_or_else(|| {
                tracing::debug!(%error, "cannot create the lease");
                Outcome::Unknown
            }),
        };
    };
    let spec = lease.spec.clone().unwrap_or_default();
    let holder = spec.holder_identity.clone().filter(|h| !h.is_empty());
    let renew_time = spec.renew_time.as_ref().map(|t| t.0.to_string());
    let duration = Duration::from_secs(spec.lease_duration_seconds.unwrap_or(1).max(1) as u64);
    let observation = match previous {
        Some(p) if p.holder == holder && p.renew_time == renew_time => p,
        _ => {
            // Seen unchanged from now on, the record expires a lease duration
            // from now. Unless the leader told us, in its last answer, that it
            // held this very record: it has not renewed since, so the record
            // expires when it said — its last renewal plus a lease duration,
            // not a lease duration after we happen to look. Never later than
            // a full duration from now, whatever the answer claimed.
            let now = Instant::now();
            let since = hint
                .filter(|h| {
                    holder.as_deref() == Some(h.holder.as_str())
                        && renew_time.as_deref() == Some(h.renew_time.as_str())
                })
                .and_then(|h| h.expires_by.checked_sub(duration))
                .map_or(now, |s| s.min(now));
            Observation {
                holder: holder.clone(),
                renew_time: renew_time.clone(),
                duration,
                since,
            }
        }
    };
    let mine = holder.as_deref() == Some(settings.identity.as_str());
    let expired = holder.is_none() || observation.since.elapsed() > observation.duration;
    if !mine && !expired {
        return Outcome::Following { observation };
    }
    let mut new_spec = spec.clone();
    new_spec.holder_identity = Some(settings.identity.clone());
    new_spec.lease_duration_seconds = Some(duration_secs(settings.lease_duration));
    new_spec.renew_time = Some(now_micro());
    if !mine {
        new_spec.acquire_time = Some(now_micro());
        new_spec.lease_transitions = Some(spec.lease_transitions.unwrap_or(0) + 1);
    }
    lease.spec = Some(new_spec);
    // The update carries the resourceVersion we read: two candidates racing
    // for an expired lease cannot both win.
    match observed(
        metrics,
        "update",
        "leases",
        api.replace(&settings.lease_name, &PostParams::default(), &lease),
    )
    .await
    {
        Ok(written) => Outcome::Leading {
            lease: Box::new(written),
            valid_until,
        },
        Err(e) if is_status(&e, 409) => Outcome::Following { observation },
        Err(error) => refused("update", &error).unwrap_or_else(|| {
            tracing::debug!(%error, "cannot take the lease");
            Outcome::Unknown
        }),
    }
}

/// Clears the holder, conditional on the Lease we hold; after a conflict
/// (a renewal landed first) it looks once more.
async fn release(api: &Api<Lease>, settings: &LeaderSettings, held: Lease, metrics: &Metrics) {
    let mut lease = held;
    for _ in 0..2 {
        let Some(spec) = lease.spec.as_mut() else {
            return;
        };
        if spec.holder_identity.as_deref() != Some(settings.identity.as_str()) {
            return;
        }
        spec.holder_identity = None;
        spec.lease_duration_seconds = Some(1);
        spec.renew_time = Some(now_micro());
        match observed(
            metrics,
            "update",
            "leases",
            api.replace(&settings.lease_name, &PostParams::default(), &lease),
        )
        .await
        {
            Ok(_) => {
                tracing::info!(lease = %settings.lease_name, "lease released");
                return;
            }
            Err(e) if is_status(&e, 409) => {
                match observed(metrics, "get", "leases", api.get_opt(&settings.lease_name)).await {
                    Ok(Some(fresh)) => lease = fresh,
                    _ => return,
                }
            }
            Err(error) => {
                tracing::warn!(%error, "cannot release the lease; it expires on its own");
                return;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::actors::supervision::Lifeline;

    /// An API that must not be called: these tests drive the state machine.
    fn unreachable_api() -> Api<Lease> {
        let service = tower::service_fn(|_req: http::Request<kube::client::Body>| async {
            Err::<http::Response<kube::client::Body>, std::io::Error>(std::io::Error::other(
                "no API in this test",
            ))
        });
        Api::namespaced(kube::Client::new(service, "default"), "default")
    }

    fn actor() -> (LeaderActor, watch::Receiver<Leadership>, Arc<Fence>) {
        let (leadership, rx) = watch::channel(Leadership::default());
        let (_evidence_tx, evidence) = watch::channel(None);
        let fence = Arc::new(Fence::default());
        let (lifeline, _) = tokio::sync::oneshot::channel();
        let metrics = Arc::new(Metrics::new("test").unwrap());
        let actor = LeaderActor::new(
            LeaderSettings {
                lease_name: "cnpg-autoresize-pg".into(),
                identity: "pg-1".into(),
                lease_duration: Duration::from_secs(15),
                renew_interval: Duration::from_secs(5),
            },
            unreachable_api(),
            fence.clone(),
            leadership,
            evidence,
            watch::channel(None).0,
            Problems::new(metrics.clone()),
            metrics,
            Arc::new(Liveness::default()),
            Arc::new(std::sync::atomic::AtomicBool::new(false)),
            Lifeline::for_tests(lifeline),
        );
        (actor, rx, fence)
    }

    /// An API whose Lease is `lease` (GET); any write is a conflict.
    fn lease_api(lease: serde_json::Value) -> Api<Lease> {
        let service = tower::service_fn(move |req: http::Request<kube::client::Body>| {
            let (status, body) = if req.method() == http::Method::GET {
                (200, lease.to_string())
            } else {
                (409, serde_json::json!({"kind": "Status", "apiVersion": "v1", "status": "Failure", "reason": "Conflict", "code": 409}).to_string())
            };
            async move {
                let mut response = http::Response::new(kube::client::Body::from(body.into_bytes()));
                *response.status_mut() = http::StatusCode::from_u16(status).unwrap();
                Ok::<_, std::io::Error>(response)
            }
        });
        Api::namespaced(kube::Client::new(service, "default"), "default")
    }

    fn settings() -> LeaderSettings {
        LeaderSettings {
            lease_name: "cnpg-autoresize-pg".into(),
            identity: "pg-1".into(),
            lease_duration: Duration::from_secs(15),
            renew_interval: Duration::from_secs(5),
        }
    }

    /// How long the follower still waits for the record it read to expire.
    async fn left_to_expiry(hint: Option<Hint>) -> Duration {
        let api = lease_api(serde_json::json!({
            "apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
            "metadata": {"name": "cnpg-autoresize-pg", "resourceVersion": "7"},
            "spec": {"holderIdentity": "pg-2", "leaseDurationSeconds": 15,
                     "renewTime": "2026-01-01T00:00:00.000000Z"}}));
        let metrics = Metrics::new("test").unwrap();
        match acquire_or_follow(&api, &settings(), None, hint, &metrics).await {
            Outcome::Following { observation } => observation
                .duration
                .saturating_sub(observation.since.elapsed()),
            _ => panic!("a live record of another pod is followed"),
        }
    }

    /// The leader said, in its last answer, that it held this very record
    /// until 2 s from now: it expires then, not a full lease after the
    /// follower first reads it (a frozen leader is replaced within the lease
    /// after its last renewal). A hint about another record, or one that
    /// claims more than a lease, changes nothing.
    #[tokio::test]
    async fn a_record_the_leader_said_it_held_expires_when_it_said() {
        let hint = |holder: &str, renew_time: &str, in_: Duration| Hint {
            holder: holder.into(),
            renew_time: renew_time.into(),
            expires_by: Instant::now() + in_,
        };
        let told = left_to_expiry(Some(hint(
            "pg-2",
            "2026-01-01T00:00:00Z",
            Duration::from_secs(2),
        )))
        .await;
        assert!(
            told <= Duration::from_secs(2) && told > Duration::from_secs(1),
            "{told:?}"
        );
        let full = Duration::from_secs(14);
        assert!(left_to_expiry(None).await > full);
        let older = hint("pg-2", "2025-12-31T23:59:55Z", Duration::from_secs(2));
        assert!(left_to_expiry(Some(older)).await > full);
        let other = hint("pg-3", "2026-01-01T00:00:00Z", Duration::from_secs(2));
        assert!(left_to_expiry(Some(other)).await > full);
        let boast = hint("pg-2", "2026-01-01T00:00:00Z", Duration::from_secs(3600));
        let boasted = left_to_expiry(Some(boast)).await;
        assert!(
            boasted <= Duration::from_secs(15) && boasted > full,
            "{boasted:?}"
        );
    }

    fn leading() -> Outcome {
        Outcome::Leading {
            lease: Box::default(),
            valid_until: Instant::now() + Duration::from_secs(15),
        }
    }

    #[tokio::test]
    async fn a_renewal_landing_after_the_release_does_not_lead_again() {
        let (mut actor, rx, fence) = actor();
        actor.apply(leading());
        assert!(fence.holds() && rx.borrow().is_leader);
        // SIGTERM: the lease is released while a renewal is in flight ...
        actor
            .released
            .store(true, std::sync::atomic::Ordering::SeqCst);
        actor.fence.set(None);
        actor.publish(false, None);
        // ... and the renewal's success arrives afterwards.
        actor.apply(leading());
        assert!(!fence.holds(), "the fence must stay down once released");
        assert!(!rx.borrow().is_leader);
        assert!(actor.held.is_none());
    }

    #[tokio::test]
    async fn evidence_of_a_live_leader_saves_the_api_a_read() {
        let (mut actor, rx, fence) = actor();
        let next = actor.apply(Outcome::Trusting {
            holder: "pg-2".into(),
        });
        assert_eq!(next, Duration::from_millis(2500));
        assert!(!fence.holds());
        assert_eq!(rx.borrow().holder.as_deref(), Some("pg-2"));
        assert!(
            actor.observation.is_none(),
            "expiry is judged afresh once the evidence stops"
        );
    }
}
