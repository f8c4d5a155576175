//! Every pod exports decision metrics about its own volumes. The decisions
//! come from the leader: locally when this pod leads, otherwise from the
//! leader's `/v1/decisions` long-poll.

use super::leader::Leadership;
use super::planner::feed::{DecisionFeed, InstanceDecisions};
use crate::api::cluster::{AutoResizeEvent, ResizeResult};
use crate::kube_api::observed;
use crate::metrics::{Metrics, VolumeLabels};
use k8s_openapi::api::core::v1::Pod;
use kube::Api;
use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;

pub struct Follower {
    pub pod_name: String,
    pub http_port: u16,
    pub pods: Api<Pod>,
    pub metrics: Arc<Metrics>,
    pub leadership: watch::Receiver<Leadership>,
    pub local_feed: watch::Receiver<DecisionFeed>,
    /// Journal entries older than this are history, not news: counters
    /// count resizes observed while this process runs.
    pub started: jiff::Timestamp,
}

/// Applies decisions to the metrics, counting each journal entry once.
pub struct Applier {
    metrics: Arc<Metrics>,
    started: jiff::Timestamp,
    counted: HashSet<(String, String, String)>,
    last: Option<InstanceDecisions>,
}

impl Applier {
    pub fn new(metrics: Arc<Metrics>, started: jiff::Timestamp) -> Self {
        Applier {
            metrics,
            started,
            counted: HashSet::new(),
            last: None,
        }
    }

    pub fn apply(&mut self, mine: &InstanceDecisions) {
        if self.last.as_ref() == Some(mine) {
            return;
        }
        for v in &mine.volumes {
            self.metrics.record_decision(&v.labels(), &v.metrics());
        }
        for e in &mine.events {
            self.count(e);
        }
        self.last = Some(mine.clone());
    }

    fn count(&mut self, e: &AutoResizeEvent) {
        let recent = e.timestamp.parse::<jiff::Timestamp>().is_ok_and(|t| {
            t >= self
                .started
                .round(jiff::Unit::Second)
                .unwrap_or(self.started)
                - jiff::SignedDuration::from_secs(1)
        });
        let key = (e.pvc_name.clone(), e.timestamp.clone(), e.new_size.clone());
        if recent && self.counted.insert(key) {
            let labels = VolumeLabels::new(e.volume_type, e.tablespace.as_deref());
            self.metrics
                .count_resize(&labels, e.result == ResizeResult::Success);
        }
    }
}

impl Follower {
    pub async fn run(mut self) {
        let mut applier = Applier::new(self.metrics.clone(), self.started);
        let http = reqwest::Client::new();
        let mut after = 0u64;
        let mut leader_url: Option<(String, String)> = None;
        loop {
            let leadership = self.leadership.borrow().clone();
            if leadership.is_leader {
                let feed = self.local_feed.borrow_and_update().clone();
                if let Some(mine) = feed.instances.get(&self.pod_name) {
                    applier.apply(mine);
                }
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
                Some((pod, url)) if *pod == holder => url.clone(),
                _ => match self.resolve(&holder).await {
                    Some(url) => {
                        after = 0;
                        leader_url = Some((holder.clone(), url.clone()));
                        url
                    }
                    None => {
                        let _ =
                            tokio::time::timeout(Duration::from_secs(1), self.leadership.changed())
                                .await;
                        continue;
                    }
                },
            };
            let request = http
                .get(&url)
                .query(&[
                    ("instance", self.pod_name.as_str()),
                    ("wait", "10"),
                    ("after", &after.to_string()),
                ])
                .timeout(Duration::from_secs(12));
            let answer = tokio::select! {
                r = request.send() => match r {
                    Ok(resp) if resp.status().is_success() => resp.json::<DecisionFeed>().await.ok(),
                    _ => None,
                },
                _ = self.leadership.changed() => continue,
            };
            match answer {
                Some(feed) => {
                    after = feed.version;
                    if let Some(mine) = feed.instances.get(&self.pod_name) {
                        applier.apply(mine);
                    }
                }
                None => {
                    leader_url = None;
                    tokio::time::sleep(Duration::from_millis(500)).await;
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
