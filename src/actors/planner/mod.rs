//! Planner: runs on the leader only. Keeps the Cluster, its PVCs and pods
//! current through watches, gathers every instance's report (its own from
//! the local channel, peers' from their `/v1/status` long-poll), calls the
//! pure engine on every relevant change and on a timer, executes resizes and
//! publishes events, status and decisions.

pub mod disk_status;
pub mod execute;
pub mod feed;
pub mod notices;

use super::leader::{Fence, Leadership};
use super::status::{LocalStatus, StatusResponse};
use super::supervision::Liveness;
use crate::api::cluster::{AutoResizeEvent, Cluster, ResizeResult};
use crate::api::quantity::format_bytes;
use crate::api::report::InstanceReport;
use crate::engine::journal::{self, PVC_EVENTS_ANNOTATION};
use crate::engine::{decide, Action, Decision, EngineSettings, PlanInput, Reason, LABEL_CLUSTER};
use crate::metrics::Metrics;
use actix::prelude::*;
use execute::{ResizeOutcome, Writer};
use feed::DecisionFeed;
use futures::StreamExt;
use k8s_openapi::api::core::v1::{ObjectReference, PersistentVolumeClaim, Pod};
use kube::runtime::events::{Event as KubeEvent, EventType, Recorder, Reporter};
use kube::runtime::reflector::{self, Store};
use kube::runtime::{watcher, WatchStreamExt};
use kube::{Api, Client};
use notices::{Aggregator, Notice, Severity};
use serde_json::json;
use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::watch;
use tokio::task::JoinHandle;

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

/// What a planning pass works from.
struct Snapshot {
    cluster: Cluster,
    pvcs: Vec<PersistentVolumeClaim>,
    reports: BTreeMap<String, InstanceReport>,
    now: jiff::Timestamp,
    may_write_disk_status: bool,
    /// The decisions of the previous pass (pvc, action, reason).
    previous: Vec<DecisionKey>,
}

type DecisionKey = (String, Action, Option<Reason>);

#[derive(Default)]
struct PassResult {
    conditions: Vec<Notice>,
    announcements: Vec<Notice>,
    wrote_disk_status: bool,
    retry_after: Option<Duration>,
    replan_now: bool,
    write_error: Option<String>,
    decisions: Vec<DecisionKey>,
}

/// Watches and peer pollers that live while this pod leads.
struct Session {
    cluster: Store<Cluster>,
    pvcs: Store<PersistentVolumeClaim>,
    pods: Store<Pod>,
    watchers: Vec<JoinHandle<()>>,
    peers: HashMap<String, (String, JoinHandle<()>)>,
    reports: HashMap<String, InstanceReport>,
}

impl Drop for Session {
    fn drop(&mut self) {
        for task in &self.watchers {
            task.abort();
        }
        for (_, task) in self.peers.values() {
            task.abort();
        }
    }
}

pub struct Planner {
    settings: PlannerSettings,
    client: Client,
    writer: Arc<Writer>,
    recorder: Arc<Recorder>,
    http: reqwest::Client,
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
    session_started: Option<Instant>,
}

#[derive(Message)]
#[rtype(result = "()")]
struct Replan;

#[derive(Message)]
#[rtype(result = "()")]
struct LeadershipChanged(Leadership);

#[derive(Message)]
#[rtype(result = "()")]
struct PeerReport {
    pod: String,
    report: InstanceReport,
}

#[allow(clippy::too_many_arguments)]
impl Planner {
    pub fn new(
        settings: PlannerSettings,
        client: Client,
        metrics: Arc<Metrics>,
        fence: Arc<Fence>,
        liveness: Arc<Liveness>,
        local: watch::Receiver<LocalStatus>,
        leadership: watch::Receiver<Leadership>,
        feed: watch::Sender<DecisionFeed>,
    ) -> Self {
        let writer = Writer {
            pvcs: Api::namespaced(client.clone(), &settings.namespace),
            clusters: Api::namespaced(client.clone(), &settings.namespace),
            cluster_name: settings.cluster.clone(),
            metrics: metrics.clone(),
            fence: fence.clone(),
        };
        let reporter = Reporter {
            controller: "cnpg-autoresize".to_string(),
            instance: Some(settings.pod_name.clone()),
        };
        Planner {
            recorder: Arc::new(Recorder::new(client.clone(), reporter)),
            writer: Arc::new(writer),
            http: reqwest::Client::new(),
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
            session_started: None,
        }
    }

    fn start_session(&mut self, ctx: &mut Context<Self>) {
        let ns = &self.settings.namespace;
        let selector = format!("{LABEL_CLUSTER}={}", self.settings.cluster);
        let clusters: Api<Cluster> = Api::namespaced(self.client.clone(), ns);
        let pvcs: Api<PersistentVolumeClaim> = Api::namespaced(self.client.clone(), ns);
        let pods: Api<Pod> = Api::namespaced(self.client.clone(), ns);
        let addr = ctx.address();
        let (cluster_store, w1) = watch_into_store(
            clusters,
            watcher::Config::default().fields(&format!("metadata.name={}", self.settings.cluster)),
            addr.clone(),
        );
        let (pvc_store, w2) = watch_into_store(
            pvcs,
            watcher::Config::default().labels(&selector),
            addr.clone(),
        );
        let (pod_store, w3) =
            watch_into_store(pods, watcher::Config::default().labels(&selector), addr);
        self.session = Some(Session {
            cluster: cluster_store,
            pvcs: pvc_store,
            pods: pod_store,
            watchers: vec![w1, w2, w3],
            peers: HashMap::new(),
            reports: HashMap::new(),
        });
        self.session_started = Some(Instant::now());
        tracing::info!(cluster = %self.settings.cluster, "planning for the cluster");
    }

    /// Keeps one long-poller per peer pod with an IP.
    fn sync_peers(&mut self, ctx: &mut Context<Self>) {
        let Some(session) = self.session.as_mut() else {
            return;
        };
        let wanted: HashMap<String, String> = session
            .pods
            .state()
            .iter()
            .filter_map(|p| {
                let name = p.metadata.name.clone()?;
                let ip = p.status.as_ref()?.pod_ip.clone()?;
                (name != self.settings.pod_name).then_some((name, ip))
            })
            .collect();
        session.peers.retain(|pod, (ip, task)| {
            let keep = wanted.get(pod) == Some(ip);
            if !keep {
                task.abort();
            }
            keep
        });
        session.reports.retain(|pod, _| wanted.contains_key(pod));
        for (pod, ip) in wanted {
            if session.peers.contains_key(&pod) {
                continue;
            }
            let url = format!("http://{ip}:{}/v1/status", self.settings.http_port);
            // Half the staleness limit: a quiet peer still answers in time.
            let wait = (self.settings.engine.status_max_age.unsigned_abs() / 2)
                .max(Duration::from_millis(200));
            let task = tokio::spawn(poll_peer(
                self.http.clone(),
                ctx.address(),
                pod.clone(),
                url,
                wait,
            ));
            session.peers.insert(pod, (ip, task));
        }
    }

    fn snapshot(&mut self) -> Option<Snapshot> {
        let session = self.session.as_ref()?;
        let Some(cluster) = session.cluster.state().first().map(|c| (**c).clone()) else {
            // The first list takes a moment; only a lasting absence is news.
            let settled = self
                .session_started
                .is_some_and(|t| t.elapsed() > Duration::from_secs(5));
            if settled && !self.missing_cluster_logged {
                tracing::warn!(cluster = %self.settings.cluster, "cluster not found; nothing to plan");
                self.missing_cluster_logged = true;
            }
            return None;
        };
        self.missing_cluster_logged = false;
        let now = jiff::Timestamp::now();
        let mut reports: BTreeMap<String, InstanceReport> = session
            .reports
            .iter()
            .map(|(pod, r)| (pod.clone(), r.clone()))
            .collect();
        let local = self.local.borrow();
        if local.complete() {
            reports.insert(self.settings.pod_name.clone(), local.report.clone());
        }
        drop(local);
        Some(Snapshot {
            cluster,
            pvcs: session.pvcs.state().iter().map(|p| (**p).clone()).collect(),
            reports,
            now,
            may_write_disk_status: self
                .last_disk_write
                .is_none_or(|t| t.elapsed() >= self.settings.disk_status_interval),
            previous: self.last_decisions.clone(),
        })
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
        self.sync_peers(ctx);
        let Some(snapshot) = self.snapshot() else {
            return;
        };
        self.busy = true;
        self.dirty = false;
        let pass = run_pass(
            self.settings.clone(),
            self.writer.clone(),
            self.feed.clone(),
            snapshot,
        );
        ctx.spawn(pass.into_actor(self).map(|result, act, ctx| {
            act.busy = false;
            if result.wrote_disk_status {
                act.last_disk_write = Some(Instant::now());
            }
            act.retry_at = result.retry_after.map(|d| Instant::now() + d);
            match (&result.write_error, &act.last_write_error) {
                (Some(e), last) if last.as_ref() != Some(e) => {
                    tracing::warn!(error = %e, "cannot write the cluster status; the PVC records keep the history")
                }
                (None, Some(_)) => tracing::info!("cluster status written again"),
                _ => {}
            }
            act.last_write_error = result.write_error.clone();
            if result.write_error.is_none() {
                act.last_decisions = result.decisions.clone();
            }
            let mut notices = act.aggregator.filter(result.conditions, Instant::now());
            notices.extend(result.announcements);
            act.publish_notices(notices, ctx);
            if act.dirty || result.replan_now {
                ctx.notify(Replan);
            }
        }));
    }

    fn publish_notices(&self, notices: Vec<Notice>, ctx: &mut Context<Self>) {
        if notices.is_empty() {
            return;
        }
        let recorder = self.recorder.clone();
        let fence = self.fence.clone();
        let reference = ObjectReference {
            api_version: Some(crate::api::cluster::API_VERSION.to_string()),
            kind: Some(crate::api::cluster::KIND.to_string()),
            name: Some(self.settings.cluster.clone()),
            namespace: Some(self.settings.namespace.clone()),
            uid: self.session.as_ref().and_then(|s| {
                s.cluster
                    .state()
                    .first()
                    .and_then(|c| c.metadata.uid.clone())
            }),
            ..Default::default()
        };
        let metrics = self.metrics.clone();
        ctx.spawn(
            async move {
                for notice in notices {
                    let level = notice.severity;
                    match level {
                        Severity::Normal => tracing::info!(reason = notice.reason, pvc = %notice.pvc, "{}", notice.message),
                        Severity::Warning => tracing::warn!(reason = notice.reason, pvc = %notice.pvc, "{}", notice.message),
                    }
                    if !fence.holds() {
                        continue;
                    }
                    // The PVC as the related object: each PVC's condition is
                    // its own event series (the recorder aggregates by
                    // reason and objects, not by message).
                    let pvc = ObjectReference {
                        api_version: Some("v1".to_string()),
                        kind: Some("PersistentVolumeClaim".to_string()),
                        name: Some(notice.pvc.clone()),
                        namespace: reference.namespace.clone(),
                        ..Default::default()
                    };
                    let event = KubeEvent {
                        type_: if level == Severity::Normal { EventType::Normal } else { EventType::Warning },
                        reason: notice.reason.to_string(),
                        note: Some(truncate(&notice.message, 1024)),
                        action: "AutoResize".to_string(),
                        secondary: Some(pvc),
                    };
                    let result = recorder.publish(&event, &reference).await;
                    let code = result.as_ref().map(|_| 201).unwrap_or_else(crate::kube_api::status_code);
                    metrics.count_api("create", "events", code);
                    if let Err(error) = result {
                        tracing::warn!(%error, reason = notice.reason, "cannot record event");
                    }
                }
            }
            .into_actor(self),
        );
    }
}

fn truncate(s: &str, max: usize) -> String {
    if s.len() <= max {
        return s.to_string();
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    s[..end].to_string()
}

/// A reflector store kept by a watch that tells the planner about changes.
fn watch_into_store<K>(
    api: Api<K>,
    config: watcher::Config,
    addr: Addr<Planner>,
) -> (Store<K>, JoinHandle<()>)
where
    K: kube::Resource<DynamicType = ()>
        + Clone
        + std::fmt::Debug
        + serde::de::DeserializeOwned
        + Send
        + Sync
        + 'static,
{
    let (reader, writer) = reflector::store();
    let stream = reflector::reflector(writer, watcher(api, config).default_backoff());
    let task = tokio::spawn(async move {
        futures::pin_mut!(stream);
        while let Some(event) = stream.next().await {
            match event {
                Ok(_) => addr.do_send(Replan),
                Err(error) => tracing::debug!(%error, "watch interrupted; resuming"),
            }
        }
    });
    (reader, task)
}

async fn poll_peer(
    http: reqwest::Client,
    addr: Addr<Planner>,
    pod: String,
    url: String,
    wait: Duration,
) {
    let mut after = 0u64;
    let mut backoff = Duration::from_millis(100);
    loop {
        let request = http
            .get(&url)
            .query(&[
                ("wait", format!("{:.3}", wait.as_secs_f64())),
                ("after", after.to_string()),
            ])
            .timeout(wait + Duration::from_secs(2));
        let answer = match request.send().await {
            Ok(response) if response.status().is_success() => {
                response.json::<StatusResponse>().await.ok()
            }
            _ => None,
        };
        match answer {
            Some(status) => {
                backoff = Duration::from_millis(100);
                after = status.version;
                if status.probed {
                    addr.do_send(PeerReport {
                        pod: pod.clone(),
                        report: status.report,
                    });
                }
            }
            None => {
                tokio::time::sleep(backoff + execute::jitter(backoff)).await;
                backoff = (backoff * 2).min(Duration::from_secs(2));
            }
        }
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
        // The local report changes -> replan at once (the leader's own volume).
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
            act.liveness.beat("planner", act.settings.replan_interval);
            act.replan(ctx);
        });
        self.liveness.beat("planner", self.settings.replan_interval);
    }
}

impl Supervised for Planner {
    fn restarting(&mut self, _ctx: &mut Context<Self>) {
        tracing::warn!(actor = "planner", "restarting");
        self.session = None;
        self.busy = false;
        self.metrics
            .actor_restarts
            .with_label_values(&["planner"])
            .inc();
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
                self.start_session(ctx);
                self.replan(ctx);
            }
            (false, true) => {
                tracing::info!("no longer leading; planning stops");
                self.session = None;
                self.aggregator = Aggregator::default();
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
        // Freshness is judged on this pod's clock: when we last heard.
        let mut report = msg.report;
        report.last_updated = Some(jiff::Timestamp::now());
        session.reports.insert(msg.pod, report);
        self.replan(ctx);
    }
}

/// The journal entries recorded on the PVCs themselves, and the PVCs whose
/// record cannot be read (their budget is unknown: no resize for them).
fn pvc_journal(pvcs: &[PersistentVolumeClaim]) -> (Vec<AutoResizeEvent>, HashMap<String, String>) {
    let mut events = Vec::new();
    let mut unreadable = HashMap::new();
    for pvc in pvcs {
        let name = pvc.metadata.name.clone().unwrap_or_default();
        if let Some(text) = pvc
            .metadata
            .annotations
            .as_ref()
            .and_then(|a| a.get(PVC_EVENTS_ANNOTATION))
        {
            match journal::parse_annotation(text) {
                Ok(list) => events.extend(list),
                Err(e) => {
                    unreadable.insert(name, e);
                }
            }
        }
    }
    (events, unreadable)
}

/// A refusal of this very resize (same PVC, same starting size) is recent.
fn recently_refused(
    events: &[AutoResizeEvent],
    d: &Decision,
    now: jiff::Timestamp,
    backoff: Duration,
) -> bool {
    let Some(current) = d.current_size.map(format_bytes) else {
        return false;
    };
    let horizon = now
        - jiff::SignedDuration::try_from(backoff).unwrap_or(jiff::SignedDuration::from_mins(10));
    events.iter().any(|e| {
        e.result == ResizeResult::Failure
            && e.pvc_name == d.volume.pvc
            && e.previous_size == current
            && e.timestamp
                .parse::<jiff::Timestamp>()
                .is_ok_and(|t| t > horizon)
    })
}

async fn run_pass(
    settings: PlannerSettings,
    writer: Arc<Writer>,
    feed: watch::Sender<DecisionFeed>,
    snapshot: Snapshot,
) -> PassResult {
    let mut result = PassResult::default();
    let Snapshot {
        mut cluster,
        pvcs,
        reports,
        now,
        may_write_disk_status,
        previous,
    } = snapshot;
    let watched = cluster.clone();
    let (pvc_events, unreadable) = pvc_journal(&pvcs);
    let status_events = cluster.events().to_vec();
    let journal = journal::merged(&status_events, &pvc_events);
    cluster
        .status
        .get_or_insert_with(Default::default)
        .auto_resize_events = journal.clone();

    let mut decisions = decide(&PlanInput {
        cluster: &cluster,
        pvcs: &pvcs,
        instances: &reports,
        now,
        settings: settings.engine,
    });
    for d in decisions.iter_mut() {
        if let Some(error) = unreadable.get(&d.volume.pvc) {
            d.action = Action::Blocked;
            d.reason = Some(Reason::InvalidConfig);
            d.new_size = None;
            d.message = format!(
                "the resize record on the PVC is unreadable, so its budget is unknown: {error}"
            );
        }
    }

    // Execute resizes, one PVC at a time.
    let mut recorded: Vec<AutoResizeEvent> = Vec::new();
    for d in decisions.iter_mut().filter(|d| d.action == Action::Resize) {
        if recently_refused(&journal, d, now, settings.failure_backoff) {
            tracing::debug!(pvc = %d.volume.pvc, "skipping: the same resize was refused recently");
            continue;
        }
        let Some(pvc) = pvcs
            .iter()
            .find(|p| p.metadata.name.as_deref() == Some(d.volume.pvc.as_str()))
        else {
            continue;
        };
        match writer.resize(pvc, d, now).await {
            ResizeOutcome::Applied(event) => {
                tracing::info!(pvc = %d.volume.pvc, from = %event.previous_size, to = %event.new_size, "resized");
                recorded.push(event);
                result.announcements.extend(notices::resized(d));
            }
            ResizeOutcome::Changed => {
                tracing::info!(pvc = %d.volume.pvc, "PVC changed since the decision; deciding again");
                result.replan_now = true;
            }
            ResizeOutcome::Rejected { event, error } => {
                tracing::warn!(pvc = %d.volume.pvc, %error, "resize refused by the API server");
                result.announcements.push(Notice {
                    severity: Severity::Warning,
                    reason: "AutoResizeFailed",
                    message: format!(
                        "{}: resize from {} to {} refused; not retried for {}s: {error}",
                        d.volume.pvc,
                        event.previous_size,
                        event.new_size,
                        settings.failure_backoff.as_secs()
                    ),
                    pvc: d.volume.pvc.clone(),
                });
                recorded.push(event);
            }
            ResizeOutcome::Transient(error) => {
                tracing::warn!(pvc = %d.volume.pvc, %error, "resize failed; will retry");
                result.retry_after =
                    Some(Duration::from_millis(500) + execute::jitter(Duration::from_millis(500)));
            }
            ResizeOutcome::NotLeader => return result,
        }
    }

    // Mirror the journal and the disk status into the Cluster status.
    let new_disk = disk_status::build(&reports, &execute::timestamp(now));
    let keys: Vec<DecisionKey> = decisions
        .iter()
        .map(|d| (d.volume.pvc.clone(), d.action, d.reason))
        .collect();
    // A new decision (a resize, a block, a change of reason) is written at
    // once, so the status shows why; a steady state writes nothing.
    let decided = !recorded.is_empty() || keys != previous;
    result.decisions = keys;
    // Sized from the largest budget a PVC can have: a counting entry is never dropped.
    let cap = journal::capacity(
        pvcs.iter()
            .map(|_| crate::api::resize::MAX_ACTIONS_PER_DAY_CEILING),
    );
    let mut extra = pvc_events.clone();
    extra.extend(recorded.iter().cloned());
    // Which parts the last attempted write carried (the builder may run again after a 409).
    let wrote_disk = std::cell::Cell::new(false);
    let write = writer
        .write_status(&watched, |current| {
            let mut status = serde_json::Map::new();
            let present = current.events();
            let events = journal::pruned(&journal::merged(present, &extra), now, cap);
            if events.as_slice() != present {
                status.insert("autoResizeEvents".into(), json!(events));
            }
            let old_disk = current.status.as_ref().and_then(|s| s.disk_status.as_ref());
            let disk_changed = disk_status::materially_different(old_disk, &new_disk);
            let include_disk = disk_changed && (may_write_disk_status || decided);
            wrote_disk.set(include_disk);
            if include_disk {
                status.insert("diskStatus".into(), json!(new_disk));
            }
            (!status.is_empty()).then_some(serde_json::Value::Object(status))
        })
        .await;
    match write {
        Ok(wrote) => result.wrote_disk_status = wrote && wrote_disk.get(),
        Err(error) => {
            result.write_error = Some(error);
            result.retry_after.get_or_insert(Duration::from_secs(1));
        }
    }

    result.conditions = decisions.iter().flat_map(notices::conditions_of).collect();
    let all_events = journal::merged(&journal, &recorded);
    let instances = feed::feed_of(&decisions, &all_events);
    feed.send_modify(|f| {
        if f.instances != instances || f.leader != settings.pod_name {
            f.version += 1;
            f.instances = instances;
            f.leader = settings.pod_name.clone();
        }
    });
    result
}
