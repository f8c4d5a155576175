//! What one planning pass decides from: the Cluster, the governing policy,
//! the PVCs (with copies read fresh after a refused patch), and every
//! instance's latest report — minus figures sampled before their volume's
//! capacity last changed.

use super::execute::Owner;
use super::pass::Snapshot;
use super::session::Session;
use super::{Planner, RECHECK_PRUNED, SETTLE};
use crate::api::policy::AutoResizePolicy;
use crate::api::report::InstanceReport;
use crate::engine::Pods;
use actix::prelude::*;
use k8s_openapi::api::core::v1::PersistentVolumeClaim;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::time::{Duration, Instant};

impl Planner {
    /// The policies that target this cluster, oldest first: the first governs.
    fn policies(&self, session: &Session) -> Vec<AutoResizePolicy> {
        let stored = session.policies.store.state();
        crate::api::policy::targeting(stored.iter().map(|p| &**p), &self.settings.cluster)
    }

    pub(super) fn snapshot(&mut self, ctx: &mut Context<Self>) -> Option<Snapshot> {
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
        // Without the policies' first list we cannot know the source yet.
        // Not served (no CRD: the fork) means the Cluster's blocks; any
        // other failure (RBAC, a broken CRD) means we do not know, and
        // guessing the fork's blocks could act where a policy says
        // otherwise: nothing is planned (the watch error is logged and
        // cnpg_autoresize_watch_up says it).
        let policy_watch = &session.policies.health;
        let policies_known = policy_watch.synced() || policy_watch.not_served();
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
        // diskStatus shows the latest sample of every volume; only the
        // decision leaves out figures older than their volume.
        let sampled_reports = reports.clone();
        self.forget_figures_older_than_their_volume(&pvcs, &mut reports, &sampled);
        let now = jiff::Timestamp::now();
        let pods = self.pods(&pods, &pvcs, now);
        let policy = policies.into_iter().next();
        let owner = match &policy {
            Some(p) => Owner::Policy(p.name().to_string()),
            None => Owner::Cluster(cluster.name().to_string()),
        };
        let unwritable = match &self.unwritable {
            Some((o, fields, at)) if *o == owner && at.elapsed() < RECHECK_PRUNED => fields.clone(),
            _ => Vec::new(),
        };
        Some(Snapshot {
            cluster,
            policy,
            pvcs,
            reports,
            sampled_reports,
            pods,
            now,
            may_write_disk_status: self
                .last_disk_write
                .is_none_or(|t| t.elapsed() >= self.settings.disk_status_interval),
            previous: self.last_decisions.clone(),
            refused: self.refused.clone(),
            unwritable,
        })
    }

    /// The instance pods, and since when each instance with a PVC but no pod
    /// has been without one (rule 9). An instance without a pod when this
    /// pod started leading counts from then: nobody knows better.
    fn pods(
        &mut self,
        pods: &[std::sync::Arc<k8s_openapi::api::core::v1::Pod>],
        pvcs: &[PersistentVolumeClaim],
        now: jiff::Timestamp,
    ) -> Pods {
        let present: BTreeSet<String> = pods
            .iter()
            .filter_map(|p| p.metadata.name.clone())
            .collect();
        let with_pvc: BTreeSet<String> = pvcs
            .iter()
            .filter_map(|p| crate::engine::classify_pvc(p, &self.settings.cluster))
            .map(|v| v.instance)
            .collect();
        self.pods_gone_since
            .retain(|instance, _| with_pvc.contains(instance) && !present.contains(instance));
        for instance in with_pvc.difference(&present) {
            self.pods_gone_since.entry(instance.clone()).or_insert(now);
        }
        Pods::Known {
            present,
            gone_since: self
                .pods_gone_since
                .iter()
                .map(|(k, v)| (k.clone(), *v))
                .collect(),
        }
    }

    /// A PVC whose capacity just changed has a new filesystem: a report
    /// sampled before the change describes the old one (the kubelet grows
    /// the filesystem, the instance probes it up to a probe interval later).
    /// Deciding from it would resize again: its figures for that volume are
    /// left out until the instance reports again.
    fn forget_figures_older_than_their_volume(
        &mut self,
        pvcs: &[PersistentVolumeClaim],
        reports: &mut BTreeMap<String, InstanceReport>,
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
                report.forget(volume.volume_type, volume.tablespace.as_deref());
            }
        }
        self.capacity_seen = seen;
    }
}
