//! Planner: runs on the leader only. A sample's way from `statvfs` to a PVC
//! patch, one file per step:
//!
//! - `session.rs`: watches of the Cluster, the policies, the PVCs and the
//!   instance pods (started when leadership is gained);
//! - `peers.rs`: every peer's report, by long-poll of its `/v1/status`;
//! - this file: the actor, which turns changes into planning passes;
//! - `snapshot.rs`: what a pass decides from;
//! - `pass.rs`: one pass — the pure engine decides, `execute.rs` writes the
//!   PVCs and the owner's status, `feed.rs` publishes the decisions;
//! - `notices.rs`, `announce.rs` and `events.rs`: which Kubernetes Events
//!   to record, about which objects, and recording them.

mod announce;
pub mod disk_status;
pub mod events;
pub mod execute;
pub mod feed;
pub mod notices;
pub mod pass;
pub mod peers;
pub mod session;
mod snapshot;

use super::leader::{Fence, Leadership};
use super::problems::Problems;
use super::status::LocalStatus;
use super::supervision::{injected_panic, Lifeline, Liveness};
use crate::engine::{EngineSettings, Reason};
use crate::http_client::Backoff;
use crate::kube_api::ApiClock;
use crate::metrics::Metrics;
use actix::prelude::*;
use events::EventRecorder;
use execute::Writer;
use feed::DecisionFeed;
use k8s_openapi::api::core::v1::{ObjectReference, PersistentVolumeClaim};
use kube::api::{ApiResource, GroupVersionKind};
use kube::{Api, Client};
use notices::Aggregator;
use pass::{run_pass, DecisionKey, PassResult};
use peers::PeerReport;
use session::{Replan, Session};
use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::watch;

#[derive(Clone, Debug)]
pub struct PlannerSettings {
    pub namespace: String,
    pub cluster: String,
    pub pod_name: String,
    /// Port of every pod's HTTP endpoint (the same in all pods).
    pub http_port: u16,
    pub engine: EngineSettings,
    /// Planning also runs on this timer, not only on changes.
    pub replan_interval: Duration,
    /// A refused resize of the same PVC from the same size waits this long.
    pub failure_backoff: Duration,
    /// `status.diskStatus` is rewritten at most this often when only usage changed.
    pub disk_status_interval: Duration,
}

/// How long the first lists may take before a missing object is news.
const SETTLE: Duration = Duration::from_secs(5);
/// A leader whose clock is further off the API server's than this dates
/// records and budgets wrongly enough to say so (`AutoResizeClockSkew`).
pub const CLOCK_SKEW_WARNING: f64 = 60.0;

/// Back-off after API errors: the first retry within a second, then
/// doubling (with jitter) up to the cap.
const RETRY_FIRST: Duration = Duration::from_secs(1);
const RETRY_CAP: Duration = Duration::from_secs(16);

/// A status field the API server pruned is tried again this often (the
/// CRD may have been upgraded meanwhile).
const RECHECK_PRUNED: Duration = Duration::from_secs(3600);

pub struct Planner {
    settings: PlannerSettings,
    client: Client,
    writer: Arc<Writer>,
    recorder: Arc<EventRecorder>,
    metrics: Arc<Metrics>,
    fence: Arc<Fence>,
    liveness: Arc<Liveness>,
    local: watch::Receiver<LocalStatus>,
    leadership: watch::Receiver<Leadership>,
    feed: watch::Sender<DecisionFeed>,
    problems: Problems,
    clock: Arc<ApiClock>,
    session: Option<Session>,
    aggregator: Aggregator,
    busy: bool,
    dirty: bool,
    last_disk_write: Option<Instant>,
    /// After an API error, no pass before this; a pass asked for meanwhile
    /// runs then (`dirty`), not at the next timer tick.
    retry_at: Option<Instant>,
    /// Capped exponential back-off with jitter between retries after API
    /// errors; reset by a pass without one.
    backoff: Backoff,
    missing_cluster_logged: bool,
    last_decisions: Vec<DecisionKey>,
    /// The last status-write error, logged once rather than on every pass.
    last_write_error: Option<String>,
    /// Since when each PVC has had no usable status.
    no_status_since: HashMap<String, Instant>,
    /// PVCs read fresh after a refused patch, with the resourceVersion of the
    /// stale copy: used until the watch delivers a newer one.
    fresh: HashMap<String, (Option<String>, PersistentVolumeClaim)>,
    /// Unreadable status entries already logged.
    logged_unreadable: HashSet<String>,
    /// Policies refused as duplicates, already told so.
    refused_duplicates: HashSet<String>,
    /// Each PVC's `status.capacity` as last seen, and when it last changed.
    capacity_seen: HashMap<String, (Option<String>, Instant)>,
    /// Refused resizes of the last `failure_backoff` (see `Snapshot::refused`).
    refused: Vec<crate::api::cluster::AutoResizeEvent>,
    /// Instances with a PVC but no pod, and since when (rule 9's grace).
    pods_gone_since: HashMap<String, jiff::Timestamp>,
    /// Status fields the owner's CRD prunes (a write came back without
    /// them), and since when: not written again before `RECHECK_PRUNED`.
    unwritable: Option<(execute::Owner, Vec<String>, Instant)>,
    /// Pruned status fields already told about.
    said_unwritable: HashSet<String>,
    /// PVC requests another resizer raised, already counted and announced.
    foreign_seen: HashMap<String, u64>,
    _lifeline: Lifeline,
}

#[derive(Message)]
#[rtype(result = "()")]
struct LeadershipChanged(Leadership);

pub fn cluster_resource() -> ApiResource {
    ApiResource::from_gvk_with_plural(
        &GroupVersionKind::gvk(
            crate::api::cluster::API_GROUP,
            "v1",
            crate::api::cluster::KIND,
        ),
        "clusters",
    )
}

pub fn policy_resource() -> ApiResource {
    ApiResource::from_gvk_with_plural(
        &GroupVersionKind::gvk(
            crate::api::policy::API_GROUP,
            "v1alpha1",
            crate::api::policy::KIND,
        ),
        "autoresizepolicies",
    )
}

impl Planner {
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        settings: PlannerSettings,
        client: Client,
        metrics: Arc<Metrics>,
        fence: Arc<Fence>,
        liveness: Arc<Liveness>,
        local: watch::Receiver<LocalStatus>,
        leadership: watch::Receiver<Leadership>,
        feed: watch::Sender<DecisionFeed>,
        problems: Problems,
        clock: Arc<ApiClock>,
        lifeline: Lifeline,
    ) -> Self {
        let ns = settings.namespace.clone();
        let writer = Writer {
            pvcs: Api::namespaced(client.clone(), &ns),
            clusters: Api::namespaced_with(client.clone(), &ns, &cluster_resource()),
            policies: Api::namespaced_with(client.clone(), &ns, &policy_resource()),
            metrics: metrics.clone(),
            fence: fence.clone(),
        };
        Planner {
            recorder: Arc::new(EventRecorder::new(
                Api::namespaced(client.clone(), &ns),
                &settings.pod_name,
                metrics.clone(),
            )),
            writer: Arc::new(writer),
            settings,
            client,
            metrics,
            fence,
            liveness,
            local,
            leadership,
            feed,
            problems,
            clock,
            session: None,
            aggregator: Aggregator::default(),
            busy: false,
            dirty: false,
            last_disk_write: None,
            retry_at: None,
            backoff: Backoff::new(RETRY_FIRST, RETRY_CAP),
            missing_cluster_logged: false,
            last_write_error: None,
            last_decisions: Vec::new(),
            no_status_since: HashMap::new(),
            fresh: HashMap::new(),
            logged_unreadable: HashSet::new(),
            refused_duplicates: HashSet::new(),
            capacity_seen: HashMap::new(),
            refused: Vec::new(),
            pods_gone_since: HashMap::new(),
            unwritable: None,
            said_unwritable: HashSet::new(),
            foreign_seen: HashMap::new(),
            _lifeline: lifeline,
        }
    }

    fn replan(&mut self, ctx: &mut Context<Self>) {
        if self.session.is_none() {
            return;
        }
        if self.busy {
            self.dirty = true;
            return;
        }
        if self.retry_at.is_some_and(|t| Instant::now() < t) {
            // Queued: the retry scheduled after the error runs it.
            self.dirty = true;
            return;
        }
        let Some(snapshot) = self.snapshot(ctx) else {
            return;
        };
        self.busy = true;
        self.dirty = false;
        let owner_refs = self.owner_references(&snapshot.cluster, snapshot.policy.as_ref());
        let pass = run_pass(
            self.settings.clone(),
            self.writer.clone(),
            self.feed.clone(),
            snapshot,
        );
        ctx.spawn(pass.into_actor(self).map(move |result, act, ctx| {
            act.busy = false;
            act.after_pass(result, owner_refs, ctx);
        }));
    }

    fn after_pass(
        &mut self,
        result: PassResult,
        owner_refs: Vec<ObjectReference>,
        ctx: &mut Context<Self>,
    ) {
        if result.wrote_disk_status {
            self.last_disk_write = Some(Instant::now());
        }
        if result.retry {
            let delay = self.backoff.next_delay();
            self.retry_at = Some(Instant::now() + delay);
            tracing::info!(
                retry_in_ms = delay.as_millis() as u64,
                "an API call failed; planning again after a back-off"
            );
            ctx.run_later(delay, |act, ctx| act.replan(ctx));
        } else {
            self.retry_at = None;
            self.backoff.reset();
        }
        let forget_before =
            pass::backoff_start(jiff::Timestamp::now(), self.settings.failure_backoff);
        self.refused.extend(result.refused.iter().cloned());
        self.refused.retain(|e| e.timestamp > forget_before);
        match (&result.write_error, &self.last_write_error) {
            (Some(e), last) if last.as_ref() != Some(e) => {
                tracing::warn!(error = %e, "cannot write the status; the PVC records keep the history")
            }
            (None, Some(_)) => tracing::info!("status written again"),
            _ => {}
        }
        self.last_write_error = result.write_error.clone();
        if let (Some(owner), false) = (&result.owner, result.pruned_fields.is_empty()) {
            for field in &result.pruned_fields {
                if self.said_unwritable.insert(field.clone()) {
                    tracing::warn!(owner = owner.name(), field = %field, "the API server prunes this status field (its CRD has no such field): it is not written again; the PVC annotations keep the resize records");
                }
            }
            let mut fields = match self.unwritable.take() {
                Some((o, f, _)) if o == *owner => f,
                _ => Vec::new(),
            };
            fields.extend(result.pruned_fields.iter().cloned());
            fields.sort();
            fields.dedup();
            self.unwritable = Some((owner.clone(), fields, Instant::now()));
        }
        if result.write_error.is_none() {
            self.last_decisions = result.keys.clone();
        }
        // Bounded: an entry is forgotten once it is gone (dropped by a write).
        self.logged_unreadable
            .retain(|e| result.unreadable_entries.contains(e));
        for entry in &result.unreadable_entries {
            if self.logged_unreadable.insert(entry.clone()) {
                tracing::warn!(entry = %entry, "a status entry written by another program cannot be read: it counts toward no budget and is dropped at this status write");
            }
        }
        for (stale, fresh) in result.fresh_pvcs {
            if let Some(name) = fresh.metadata.name.clone() {
                self.fresh.insert(name, (stale, fresh));
            }
        }
        // A lasting no_status is announced, not silent.
        let mut conditions = result.conditions;
        let stuck_after = self.settings.engine.stuck_after.unsigned_abs();
        let no_status: HashSet<&str> = result
            .decisions
            .iter()
            .filter(|d| d.reason == Some(Reason::NoStatus))
            .map(|d| d.volume.pvc.as_str())
            .collect();
        self.no_status_since
            .retain(|pvc, _| no_status.contains(pvc.as_str()));
        for d in result
            .decisions
            .iter()
            .filter(|d| d.reason == Some(Reason::NoStatus))
        {
            let since = *self
                .no_status_since
                .entry(d.volume.pvc.clone())
                .or_insert_with(Instant::now);
            if since.elapsed() > stuck_after {
                conditions.push(notices::no_status(d, since.elapsed()));
            }
        }
        // The leader dates records and budgets: a clock far off the API
        // server's is a standing condition, announced when it starts and
        // hourly while it lasts.
        if let Some(skew) = self
            .clock
            .skew_seconds()
            .filter(|s| s.abs() > CLOCK_SKEW_WARNING)
        {
            conditions.push(notices::clock_skew(&self.settings.pod_name, skew));
        }
        let mut notices = self.aggregator.filter(conditions, Instant::now());
        notices.extend(result.announcements);
        notices.extend(self.foreign(&result.foreign));
        self.publish_notices(notices, owner_refs, ctx);
        if self.dirty || result.replan_now {
            ctx.notify(Replan);
        }
    }
}

impl Planner {
    /// Another resizer raised these requests: each new one is counted and
    /// announced once (`AutoResizeForeignResizer`).
    fn foreign(&mut self, foreign: &[crate::engine::ForeignResize]) -> Vec<notices::Notice> {
        self.foreign_seen
            .retain(|pvc, _| foreign.iter().any(|f| f.pvc == *pvc));
        let mut out = Vec::new();
        for f in foreign {
            if self.foreign_seen.insert(f.pvc.clone(), f.request) == Some(f.request) {
                continue;
            }
            self.metrics.foreign_resizes.inc();
            tracing::warn!(pvc = %f.pvc, manager = %f.manager, request = f.request, "another resizer raised the PVC's request");
            out.push(notices::foreign_resize(f));
        }
        out
    }
}

impl Actor for Planner {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        let addr = ctx.address();
        let mut leadership = self.leadership.clone();
        ctx.spawn(
            async move {
                loop {
                    let current = leadership.borrow_and_update().clone();
                    addr.do_send(LeadershipChanged(current));
                    if leadership.changed().await.is_err() {
                        break;
                    }
                }
            }
            .into_actor(self),
        );
        // The local report changes materially -> replan at once (the leader's own volume).
        let addr = ctx.address();
        let mut local = self.local.clone();
        ctx.spawn(
            async move {
                while local.changed().await.is_ok() {
                    addr.do_send(Replan);
                }
            }
            .into_actor(self),
        );
        ctx.run_interval(self.settings.replan_interval, |act, ctx| {
            injected_panic("planner");
            act.liveness.beat("planner", act.settings.replan_interval);
            act.replan(ctx);
        });
        self.liveness.beat("planner", self.settings.replan_interval);
    }
}

impl Handler<Replan> for Planner {
    type Result = ();
    fn handle(&mut self, _: Replan, ctx: &mut Context<Self>) {
        self.replan(ctx);
    }
}

impl Handler<LeadershipChanged> for Planner {
    type Result = ();
    fn handle(&mut self, msg: LeadershipChanged, ctx: &mut Context<Self>) {
        match (msg.0.is_leader, self.session.is_some()) {
            (true, false) => {
                self.session = Some(Session::start(
                    &self.client,
                    &self.settings.namespace,
                    &self.settings.cluster,
                    ctx.address(),
                    &self.metrics,
                    &self.problems,
                ));
                tracing::info!(cluster = %self.settings.cluster, "planning for the cluster");
                self.replan(ctx);
            }
            (false, true) => {
                tracing::info!("no longer leading; planning stops");
                self.session = None;
                self.aggregator = Aggregator::default();
                self.no_status_since.clear();
                self.fresh.clear();
                self.last_decisions.clear();
                self.capacity_seen.clear();
                self.pods_gone_since.clear();
                self.retry_at = None;
                self.backoff.reset();
            }
            _ => {}
        }
    }
}

impl Handler<PeerReport> for Planner {
    type Result = ();
    fn handle(&mut self, msg: PeerReport, ctx: &mut Context<Self>) {
        let Some(session) = self.session.as_mut() else {
            return;
        };
        session.peers.reports.insert(
            msg.pod,
            peers::Received {
                report: msg.report,
                at: msg.received,
            },
        );
        // A heartbeat only refreshes the report's age; a material change plans now.
        if msg.changed {
            self.replan(ctx);
        }
    }
}
