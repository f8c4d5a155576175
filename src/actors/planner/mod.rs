//! Planner: runs on the leader only. A sample's way from `statvfs` to a PVC
//! patch, one file per step:
//!
//! - `session.rs`: watches of the Cluster, the policies, the PVCs and the
//!   instance pods (started when leadership is gained);
//! - `peers.rs`: every peer's report, by long-poll of its `/v1/status`;
//! - this file: the actor, which turns changes into planning passes and
//!   builds each pass's snapshot;
//! - `pass.rs`: one pass — the pure engine decides, `execute.rs` writes the
//!   PVCs and the owner's status, `feed.rs` publishes the decisions;
//! - `notices.rs` and `events.rs`: which Kubernetes Events to record, and
//!   recording them.

pub mod disk_status;
pub mod events;
pub mod execute;
pub mod feed;
pub mod notices;
pub mod pass;
pub mod peers;
pub mod session;

use super::leader::{Fence, Leadership};
use super::status::LocalStatus;
use super::supervision::{injected_panic, Lifeline, Liveness};
use crate::api::cluster::Cluster;
use crate::api::policy::AutoResizePolicy;
use crate::engine::{EngineSettings, Reason};
use crate::metrics::Metrics;
use actix::prelude::*;
use events::EventRecorder;
use execute::Writer;
use feed::DecisionFeed;
use k8s_openapi::api::core::v1::{ObjectReference, PersistentVolumeClaim};
use kube::api::{ApiResource, GroupVersionKind};
use kube::{Api, Client};
use notices::{Aggregator, Notice};
use pass::{run_pass, DecisionKey, PassResult, Snapshot};
use peers::PeerReport;
use session::{Replan, Session};
use std::collections::{BTreeMap, HashMap, HashSet};
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
    session: Option<Session>,
    aggregator: Aggregator,
    busy: bool,
    dirty: bool,
    last_disk_write: Option<Instant>,
    retry_at: Option<Instant>,
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
            session: None,
            aggregator: Aggregator::default(),
            busy: false,
            dirty: false,
            last_disk_write: None,
            retry_at: None,
            missing_cluster_logged: false,
            last_write_error: None,
            last_decisions: Vec::new(),
            no_status_since: HashMap::new(),
            fresh: HashMap::new(),
            logged_unreadable: HashSet::new(),
            refused_duplicates: HashSet::new(),
            capacity_seen: HashMap::new(),
            _lifeline: lifeline,
        }
    }

    /// The policies that target this cluster, oldest first: the first governs.
    fn policies(&self, session: &Session) -> Vec<AutoResizePolicy> {
        let mut policies: Vec<AutoResizePolicy> = session
            .policies
            .store
            .state()
            .iter()
            .filter(|p| p.spec.cluster == self.settings.cluster)
            .map(|p| (**p).clone())
            .collect();
        policies.sort_by(|a, b| {
            let age = |p: &AutoResizePolicy| p.metadata.creation_timestamp.as_ref().map(|t| t.0);
            age(a).cmp(&age(b)).then(a.name().cmp(b.name()))
        });
        policies
    }

    fn snapshot(&mut self, ctx: &mut Context<Self>) -> Option<Snapshot> {
        let session = self.session.as_mut()?;
        let settled = session.started.elapsed() > SETTLE;
        let Some(cluster) = session.cluster.store.state().first().map(|c| (**c).clone()) else {
            if settled && !self.missing_cluster_logged {
                tracing::warn!(cluster = %self.settings.cluster, "cluster not found; nothing to plan");
                self.missing_cluster_logged = true;
            }
            return None;
        };
        self.missing_cluster_logged = false;
        // Without the policies' first list we cannot know the source yet;
        // a policy watch that keeps failing (no CRD) means the fork's blocks.
        let policy_watch = &session.policies.health;
        let policies_known = policy_watch.synced()
            || policy_watch.not_served()
            || policy_watch
                .failing_since()
                .is_some_and(|t| t.elapsed() > SETTLE);
        if !policies_known || !session.pvcs.health.synced() {
            return None;
        }
        let wait = (self.settings.engine.status_max_age.unsigned_abs() / 2)
            .max(Duration::from_millis(200));
        let pods = session.pods.store.state();
        session.peers.sync(
            &pods,
            &self.settings.pod_name,
            self.settings.http_port,
            wait,
            &ctx.address(),
        );

        let mut policies = self.policies(self.session.as_ref()?);
        let duplicates = policies.split_off(policies.len().min(1));
        self.refuse_duplicates(&policies, &duplicates, ctx);
        let session = self.session.as_ref()?;

        let stored = session.pvcs.store.state();
        self.fresh.retain(|name, (stale, _)| {
            stored.iter().any(|p| {
                p.metadata.name.as_deref() == Some(name) && p.metadata.resource_version == *stale
            })
        });
        let pvcs: Vec<PersistentVolumeClaim> = stored
            .iter()
            .map(|p| {
                let name = p.metadata.name.clone().unwrap_or_default();
                match self.fresh.get(&name) {
                    Some((_, fresh)) => fresh.clone(),
                    None => (**p).clone(),
                }
            })
            .collect();
        let mut reports: BTreeMap<String, _> = BTreeMap::new();
        let mut sampled: HashMap<String, Instant> = HashMap::new();
        for (pod, r) in &session.peers.reports {
            reports.insert(pod.clone(), r.aged());
            sampled.insert(pod.clone(), r.sampled_at());
        }
        let local = self.local.borrow();
        if local.complete() {
            reports.insert(self.settings.pod_name.clone(), local.served_report());
            if let Some(taken) = local.taken {
                sampled.insert(self.settings.pod_name.clone(), taken);
            }
        }
        drop(local);
        self.forget_figures_older_than_their_volume(&pvcs, &mut reports, &sampled);
        Some(Snapshot {
            cluster,
            policy: policies.into_iter().next(),
            pvcs,
            reports,
            now: jiff::Timestamp::now(),
            may_write_disk_status: self
                .last_disk_write
                .is_none_or(|t| t.elapsed() >= self.settings.disk_status_interval),
            previous: self.last_decisions.clone(),
        })
    }

    /// A PVC whose capacity just changed has a new filesystem: a report
    /// sampled before the change describes the old one (the kubelet grows
    /// the filesystem, the instance probes it up to a probe interval later).
    /// Deciding from it would resize again: its figures for that volume are
    /// left out until the instance reports again.
    fn forget_figures_older_than_their_volume(
        &mut self,
        pvcs: &[PersistentVolumeClaim],
        reports: &mut BTreeMap<String, crate::api::report::InstanceReport>,
        sampled: &HashMap<String, Instant>,
    ) {
        let now = Instant::now();
        let first_sight = self.session.as_ref().map_or(now, |s| s.started);
        let mut seen = HashMap::new();
        for pvc in pvcs {
            let Some(volume) = crate::engine::classify_pvc(pvc, &self.settings.cluster) else {
                continue;
            };
            let capacity = pvc
                .status
                .as_ref()
                .and_then(|s| s.capacity.as_ref())
                .and_then(|c| c.get("storage"))
                .map(|q| q.0.clone());
            let changed_at = match self.capacity_seen.get(&volume.pvc) {
                Some((known, at)) if *known == capacity => *at,
                // First sight: changed before this session, whenever that was.
                None => first_sight - Duration::from_secs(3600),
                Some(_) => now,
            };
            seen.insert(volume.pvc.clone(), (capacity, changed_at));
            let stale = sampled
                .get(&volume.instance)
                .is_some_and(|taken| *taken < changed_at);
            if let (true, Some(report)) = (stale, reports.get_mut(&volume.instance)) {
                match (volume.volume_type, volume.tablespace.as_deref()) {
                    (crate::api::cluster::VolumeType::Data, _) => report.data = None,
                    (crate::api::cluster::VolumeType::Wal, _) => report.wal = None,
                    (_, Some(t)) => {
                        report.tablespaces.remove(t);
                    }
                    _ => {}
                }
            }
        }
        self.capacity_seen = seen;
    }

    /// A second policy for one cluster is refused: condition and event, once.
    fn refuse_duplicates(
        &mut self,
        governing: &[AutoResizePolicy],
        duplicates: &[AutoResizePolicy],
        ctx: &mut Context<Self>,
    ) {
        let names: HashSet<String> = duplicates.iter().map(|p| p.name().to_string()).collect();
        self.refused_duplicates.retain(|n| names.contains(n));
        let Some(winner) = governing.first().map(|p| p.name().to_string()) else {
            return;
        };
        for dup in duplicates {
            if !self.refused_duplicates.insert(dup.name().to_string()) {
                continue;
            }
            let message = format!(
                "cluster {} is already governed by the older policy {winner}; this policy is ignored",
                self.settings.cluster
            );
            tracing::warn!(policy = dup.name(), governing = %winner, "second policy for one cluster refused");
            let writer = self.writer.clone();
            let owner = execute::Owner::Policy(dup.name().to_string());
            let wanted = vec![(
                "Ready".to_string(),
                false,
                "DuplicatePolicy".to_string(),
                message.clone(),
            )];
            let notice = Notice {
                severity: notices::Severity::Warning,
                reason: "AutoResizeDuplicatePolicy",
                message,
                pvc: String::new(),
            };
            let regarding = self.policy_reference(dup);
            let recorder = self.recorder.clone();
            let fence = self.fence.clone();
            ctx.spawn(
                async move {
                    let now = jiff::Timestamp::now();
                    let write = writer
                        .write_status(&owner, &serde_json::Value::Null, |current| {
                            let merged =
                                pass::merge_conditions(current.get("conditions"), &wanted, now);
                            (current.get("conditions") != Some(&merged))
                                .then(|| serde_json::json!({"conditions": merged}))
                        })
                        .await;
                    if let Err(error) = write {
                        tracing::warn!(%error, "cannot mark the duplicate policy");
                    }
                    if fence.holds() {
                        if let Err(error) = recorder.publish(&regarding, &notice).await {
                            tracing::warn!(%error, "cannot record event");
                        }
                    }
                }
                .into_actor(self),
            );
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
        self.retry_at = result.retry_after.map(|d| Instant::now() + d);
        match (&result.write_error, &self.last_write_error) {
            (Some(e), last) if last.as_ref() != Some(e) => {
                tracing::warn!(error = %e, "cannot write the status; the PVC records keep the history")
            }
            (None, Some(_)) => tracing::info!("status written again"),
            _ => {}
        }
        self.last_write_error = result.write_error.clone();
        if result.write_error.is_none() {
            self.last_decisions = result.keys.clone();
        }
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
        let mut notices = self.aggregator.filter(conditions, Instant::now());
        notices.extend(result.announcements);
        self.publish_notices(notices, owner_refs, ctx);
        if self.dirty || result.replan_now {
            ctx.notify(Replan);
        }
    }

    fn policy_reference(&self, p: &AutoResizePolicy) -> ObjectReference {
        ObjectReference {
            api_version: Some(crate::api::policy::API_VERSION.to_string()),
            kind: Some(crate::api::policy::KIND.to_string()),
            name: Some(p.name().to_string()),
            namespace: Some(self.settings.namespace.clone()),
            uid: p.metadata.uid.clone(),
            ..Default::default()
        }
    }

    /// Events go on the owner of the configuration, and on the Cluster too
    /// when a policy governs it.
    fn owner_references(
        &self,
        cluster: &Cluster,
        policy: Option<&AutoResizePolicy>,
    ) -> Vec<ObjectReference> {
        let mut refs: Vec<ObjectReference> = policy
            .map(|p| self.policy_reference(p))
            .into_iter()
            .collect();
        refs.push(ObjectReference {
            api_version: Some(crate::api::cluster::API_VERSION.to_string()),
            kind: Some(crate::api::cluster::KIND.to_string()),
            name: Some(self.settings.cluster.clone()),
            namespace: Some(self.settings.namespace.clone()),
            uid: cluster.metadata.uid.clone(),
            ..Default::default()
        });
        refs
    }

    fn publish_notices(
        &self,
        notices: Vec<Notice>,
        regarding: Vec<ObjectReference>,
        ctx: &mut Context<Self>,
    ) {
        if notices.is_empty() {
            return;
        }
        let recorder = self.recorder.clone();
        let fence = self.fence.clone();
        ctx.spawn(
            async move {
                for notice in notices {
                    match notice.severity {
                        notices::Severity::Normal => tracing::info!(reason = notice.reason, pvc = %notice.pvc, "{}", notice.message),
                        notices::Severity::Warning => tracing::warn!(reason = notice.reason, pvc = %notice.pvc, "{}", notice.message),
                    }
                    for object in &regarding {
                        if !fence.holds() {
                            break;
                        }
                        if let Err(error) = recorder.publish(object, &notice).await {
                            tracing::warn!(%error, reason = notice.reason, "cannot record event");
                        }
                    }
                }
            }
            .into_actor(self),
        );
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
