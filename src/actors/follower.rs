//! Every pod exports decision metrics about its own volumes. The decisions
//! come from the leader: locally when this pod leads, otherwise from the
//! leader's `/v1/decisions` long-poll, whose answers also tell the Leader
//! actor that the leader lives (so followers need not read the Lease).

use super::leader::{Evidence, LeaderEvidence, Leadership};
use super::planner::feed::{DecisionFeed, InstanceDecisions};
use super::status::{LeaderHints, VolumeKey};
use crate::api::cluster::{AutoResizeEvent, ResizeResult};
use crate::engine::CnpgSlots;
use crate::http_client::{get_json, Backoff};
use crate::kube_api::observed;
use crate::metrics::{Metrics, VolumeLabels};
use k8s_openapi::api::core::v1::Pod;
use kube::Api;
use std::collections::{BTreeSet, HashMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::watch;

pub struct Follower {
    pub pod_name: String,
    pub http_port: u16,
    pub pods: Api<Pod>,
    pub metrics: Arc<Metrics>,
    pub hints: LeaderHints,
    pub leadership: watch::Receiver<Leadership>,
    pub evidence: watch::Sender<LeaderEvidence>,
    pub local_feed: watch::Receiver<DecisionFeed>,
    /// How long one long-poll waits (the renew interval: the leader's
    /// answers double as proof of life).
    pub poll_wait: Duration,
    /// Without an answer for this long, decision gauges are removed
    /// rather than exported stale (3 lease durations).
    pub forget_after: Duration,
    /// Journal entries older than this are history, not news: counters
    /// count resizes observed while this process runs.
    pub started: jiff::Timestamp,
}

/// Applies decisions to the metrics, counting each journal entry once, and
/// removing the gauges of decisions no longer published.
pub struct Applier {
    metrics: Arc<Metrics>,
    hints: LeaderHints,
    started: jiff::Timestamp,
    counted: HashSet<(String, jiff::Timestamp, String)>,
    applied: BTreeSet<VolumeLabels>,
    last: Option<(InstanceDecisions, CnpgSlots)>,
}

impl Applier {
    pub fn new(metrics: Arc<Metrics>, hints: LeaderHints, started: jiff::Timestamp) -> Self {
        Applier {
            metrics,
            hints,
            started,
            counted: HashSet::new(),
            applied: BTreeSet::new(),
            last: None,
        }
    }

    pub fn apply(&mut self, mine: &InstanceDecisions, cnpg_slots: &CnpgSlots) {
        if self.last.as_ref() == Some(&(mine.clone(), cnpg_slots.clone())) {
            return;
        }
        let mut now_applied = BTreeSet::new();
        let mut thresholds: HashMap<VolumeKey, _> = HashMap::new();
        for v in &mine.volumes {
            let labels = v.labels();
            self.metrics.record_decision(&labels, &v.metrics());
            if let Some(t) = v.thresholds {
                thresholds.insert((v.summary.volume_type, v.summary.tablespace.clone()), t);
            }
            now_applied.insert(labels);
        }
        for gone in self.applied.difference(&now_applied) {
            self.metrics.remove_decision(gone);
        }
        self.applied = now_applied;
        self.hints.set(thresholds, cnpg_slots);
        for e in &mine.events {
            self.count(e);
        }
        // Bounded by the records the leader still publishes: one it no
        // longer publishes (aged out of the journal) does not come back.
        let published: HashSet<_> = mine.events.iter().map(Self::key).collect();
        self.counted.retain(|k| published.contains(k));
        self.last = Some((mine.clone(), cnpg_slots.clone()));
    }

    /// No leader has answered for too long: export nothing rather than stale.
    pub fn forget(&mut self) {
        if self.applied.is_empty() {
            return;
        }
        tracing::warn!("no decisions from a leader for too long; decision metrics removed");
        for labels in std::mem::take(&mut self.applied) {
            self.metrics.remove_decision(&labels);
        }
        self.last = None;
    }

    fn key(e: &AutoResizeEvent) -> (String, jiff::Timestamp, String) {
        (e.pvc_name.clone(), e.timestamp, e.new_size.clone())
    }

    fn count(&mut self, e: &AutoResizeEvent) {
        let since = self
            .started
            .round(jiff::Unit::Second)
            .unwrap_or(self.started)
            - jiff::SignedDuration::from_secs(1);
        if e.timestamp >= since && self.counted.insert(Self::key(e)) {
            let labels = VolumeLabels::new(e.volume_type, e.tablespace.as_deref());
            self.metrics
                .count_resize(&labels, e.result == ResizeResult::Success);
        }
    }
}

/// Largest decision feed a follower accepts from a leader.
const MAX_FEED_BYTES: usize = 4 << 20;

impl Follower {
    pub async fn run(mut self) {
        let mut applier = Applier::new(self.metrics.clone(), self.hints.clone(), self.started);
        let http = reqwest::Client::new();
        let mut after = 0u64;
        let mut leader_url: Option<(String, String, Instant)> = None;
        let mut backoff = Backoff::new(Duration::from_millis(250), self.forget_after / 3);
        let mut last_answer = Instant::now();
        loop {
            if last_answer.elapsed() > self.forget_after {
                applier.forget();
            }
            let leadership = self.leadership.borrow().clone();
            if leadership.is_leader {
                let feed = self.local_feed.borrow_and_update().clone();
                if let Some(mine) = feed.instances.get(&self.pod_name) {
                    applier.apply(mine, &feed.cnpg_slots);
                }
                last_answer = Instant::now();
                tokio::select! {
                    _ = self.local_feed.changed() => {}
                    _ = self.leadership.changed() => {}
                }
                continue;
            }
            let Some(holder) = leadership.holder.clone() else {
                let _ =
                    tokio::time::timeout(Duration::from_secs(1), self.leadership.changed()).await;
                continue;
            };
            let url = match &leader_url {
                Some((pod, url, _)) if *pod == holder => url.clone(),
                _ => match self.resolve(&holder).await {
                    Some(url) => {
                        after = 0;
                        leader_url = Some((holder.clone(), url.clone(), Instant::now()));
                        url
                    }
                    None => {
                        let _ =
                            tokio::time::timeout(backoff.next_delay(), self.leadership.changed())
                                .await;
                        continue;
                    }
                },
            };
            let wait = format!("{:.3}", self.poll_wait.as_secs_f64());
            let after_text = after.to_string();
            let query = [
                ("instance", self.pod_name.as_str()),
                ("wait", wait.as_str()),
                ("after", after_text.as_str()),
            ];
            let request = get_json::<DecisionFeed>(
                &http,
                &url,
                &query,
                self.poll_wait + Duration::from_secs(2),
                MAX_FEED_BYTES,
            );
            let answer = tokio::select! {
                r = request => r,
                _ = self.leadership.changed() => continue,
            };
            match answer {
                Ok(feed) if feed.leader == holder => {
                    backoff.reset();
                    last_answer = Instant::now();
                    let _ = self.evidence.send(Some(Evidence {
                        holder: holder.clone(),
                        at: last_answer,
                        answering: true,
                        record: feed.lease.as_ref().and_then(|l| {
                            // The leader's own claim about its Lease; the
                            // Leader actor bounds how much it believes.
                            let valid_for =
                                Duration::try_from_secs_f64(l.valid_for_seconds).ok()?;
                            let expires_by = last_answer.checked_add(valid_for)?;
                            (l.holder == holder).then(|| (l.renew_time.clone(), expires_by))
                        }),
                    }));
                    after = feed.version;
                    let mine = feed
                        .instances
                        .get(&self.pod_name)
                        .cloned()
                        .unwrap_or_default();
                    applier.apply(&mine, &feed.cnpg_slots);
                }
                other => {
                    if let Err(error) = &other {
                        tracing::debug!(%error, leader = %holder, "leader did not answer");
                    }
                    // No proof of life: the Leader actor looks at the Lease
                    // itself now, knowing which record the leader last held.
                    self.evidence.send_modify(|e| {
                        if let Some(e) = e.as_mut().filter(|e| e.holder == holder) {
                            e.answering = false;
                        }
                    });
                    // Look the leader's pod up again (a new IP?), at most
                    // once per lease duration: the API is not a retry loop.
                    if leader_url
                        .as_ref()
                        .is_some_and(|(_, _, at)| at.elapsed() > self.forget_after / 3)
                    {
                        leader_url = None;
                    }
                    let _ =
                        tokio::time::timeout(backoff.next_delay(), self.leadership.changed()).await;
                }
            }
        }
    }

    async fn resolve(&self, pod: &str) -> Option<String> {
        let found = observed(&self.metrics, "get", "pods", self.pods.get_opt(pod))
            .await
            .ok()??;
        let ip = found.status?.pod_ip?;
        Some(format!("http://{ip}:{}/v1/decisions", self.http_port))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::cluster::VolumeType;

    fn record(second: i64) -> AutoResizeEvent {
        AutoResizeEvent {
            timestamp: jiff::Timestamp::from_second(1_800_000_000 + second).unwrap(),
            instance_name: "pg-1".into(),
            pvc_name: "pg-1".into(),
            volume_type: VolumeType::Data,
            tablespace: None,
            previous_size: "1Gi".into(),
            new_size: format!("{}Gi", second + 2),
            result: ResizeResult::Success,
            trigger: None,
            filesystem_bytes: None,
        }
    }

    /// Memory bounded by design: what is remembered to count each record
    /// once is what the leader still publishes, not every record ever seen.
    #[test]
    fn each_record_counts_once_and_is_forgotten_when_no_longer_published() {
        let metrics = Arc::new(Metrics::new("test").unwrap());
        let started = jiff::Timestamp::from_second(1_800_000_000).unwrap();
        let mut applier = Applier::new(metrics.clone(), LeaderHints::default(), started);
        for n in 0..1000 {
            // The journal keeps the last two records.
            let events = vec![record(n), record(n + 1)];
            applier.apply(
                &InstanceDecisions {
                    volumes: Vec::new(),
                    events,
                },
                &CnpgSlots::default(),
            );
            assert!(applier.counted.len() <= 2, "{}", applier.counted.len());
        }
        let text = metrics.render();
        assert!(
            text.contains(
                "cnpg_disk_resizes_total{result=\"success\",tablespace=\"\",volume_type=\"data\"} 1001"
            ),
            "{text}"
        );
    }
}
