//! Who hears about a decision: the Events on the configuration's owner (the
//! policy and the Cluster), and the refusal of a second policy for one
//! cluster.

use super::notices::{self, Notice};
use super::{execute, pass, Planner};
use crate::api::cluster::Cluster;
use crate::api::policy::AutoResizePolicy;
use actix::prelude::*;
use k8s_openapi::api::core::v1::ObjectReference;
use std::collections::HashSet;

impl Planner {
    /// A second policy for one cluster is refused: condition and event, once.
    pub(super) fn refuse_duplicates(
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
    pub(super) fn owner_references(
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

    pub(super) fn publish_notices(
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
