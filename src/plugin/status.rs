//! The summary `SetStatusInCluster` puts into the Cluster's
//! `status.pluginStatus[].status`, from what the managers already write: the
//! governing AutoResizePolicy's status, else the Cluster's own
//! (`status.autoResizeEvents`, `status.diskStatus`: the fork), and the
//! leader's Lease. No I/O here.
//!
//! CloudNativePG clears that field at the start of every reconciliation and
//! re-queues the Cluster every 5 s while the answer is not empty, so "empty
//! when nothing changed" would erase it; [`StatusMode`] decides instead when
//! the summary is worth that cost (docs/deploy-cnpg-i.md#the-clusters-status).

use super::inject::ParamError;
use crate::api::cluster::{AutoResizeEvent, ClusterDiskStatus, ClusterStatus, ResizeResult};
use crate::api::policy::AutoResizePolicy;
use serde::Serialize;
use serde_json::Value;
use std::collections::BTreeMap;

/// When the plugin answers with a summary.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum StatusMode {
    /// Only while something needs a human: refused parameters, blocked
    /// volumes, an invalid policy, unhealthy WAL, a failed resize.
    Attention,
    /// Always (CloudNativePG then reconciles the Cluster every 5 s).
    Always,
    /// Never.
    Never,
}

/// What the plugin knows about one Cluster beyond its JSON.
#[derive(Clone, Debug, Default)]
pub struct Context<'a> {
    /// The policy that governs the Cluster, if any.
    pub policy: Option<&'a AutoResizePolicy>,
    /// The holder of the Cluster's Lease, if known.
    pub leader: Option<String>,
    /// Why policies or the Lease could not be read, if they could not.
    pub unavailable: Option<String>,
    /// The plugin's parameters as refused.
    pub parameter_errors: Vec<ParamError>,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Summary {
    /// `AutoResizePolicy/<name>` or `Cluster` (the fork's blocks).
    pub source: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub leader: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_resize: Option<LastResize>,
    /// Blocked volumes and why, as the policy's `Blocked` condition says.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub blocked: Option<String>,
    /// The policy's `Ready=False` message (a configuration that does not resolve).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub invalid_config: Option<String>,
    /// Instances whose WAL archiving fails or whose inactive slots retain WAL.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub wal: Vec<String>,
    /// PVCs whose latest resize the storage refused.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub failed_resizes: Vec<String>,
    /// The plugin's parameters refused: the container is not injected.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub parameter_errors: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub unavailable: Option<String>,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct LastResize {
    pub time: String,
    pub pvc: String,
    pub from: String,
    pub to: String,
    pub result: &'static str,
}

impl Summary {
    /// Whether a human should look.
    pub fn needs_attention(&self) -> bool {
        self.blocked.is_some()
            || self.invalid_config.is_some()
            || !self.wal.is_empty()
            || !self.failed_resizes.is_empty()
            || !self.parameter_errors.is_empty()
    }
}

/// The summary for `cluster` (its JSON, as CloudNativePG sends it).
pub fn summarize(cluster: &Value, context: &Context<'_>) -> Summary {
    let cluster_status: Option<ClusterStatus> = cluster
        .get("status")
        .filter(|s| s.is_object())
        .and_then(|s| serde_json::from_value(s.clone()).ok());
    let (source, events, disk, blocked, invalid_config) = match context.policy {
        Some(policy) => {
            let status = policy.status.as_ref();
            let condition = |type_: &str, status_value: &str| {
                status?
                    .conditions
                    .iter()
                    .find(|c| c.type_ == type_ && c.status == status_value)
                    .map(|c| c.message.clone())
            };
            (
                format!("AutoResizePolicy/{}", policy.name()),
                policy
                    .status_events()
                    .iter()
                    .filter_map(|e| e.ok().cloned())
                    .collect::<Vec<_>>(),
                policy.disk_status().cloned(),
                condition("Blocked", "True"),
                condition("Ready", "False"),
            )
        }
        None => (
            "Cluster".to_string(),
            cluster_status
                .as_ref()
                .map(|s| {
                    s.auto_resize_events
                        .iter()
                        .filter_map(|e| e.ok().cloned())
                        .collect()
                })
                .unwrap_or_default(),
            cluster_status
                .as_ref()
                .and_then(|s| s.disk_status.as_ref())
                .and_then(|d| d.ok().cloned()),
            None,
            None,
        ),
    };
    Summary {
        source,
        leader: context.leader.clone(),
        last_resize: last_resize(&events),
        blocked,
        invalid_config,
        wal: disk.as_ref().map(wal_problems).unwrap_or_default(),
        failed_resizes: failed_resizes(&events),
        parameter_errors: context
            .parameter_errors
            .iter()
            .map(ToString::to_string)
            .collect(),
        unavailable: context.unavailable.clone(),
    }
}

/// The JSON to answer with (`None`: an empty answer), per `mode`.
pub fn answer(summary: &Summary, mode: StatusMode) -> Option<Vec<u8>> {
    let wanted = match mode {
        StatusMode::Never => false,
        StatusMode::Always => true,
        StatusMode::Attention => summary.needs_attention(),
    };
    if !wanted {
        return None;
    }
    serde_json::to_vec(summary).ok()
}

fn last_resize(events: &[AutoResizeEvent]) -> Option<LastResize> {
    let latest = events.iter().max_by_key(|e| e.timestamp)?;
    Some(LastResize {
        time: crate::api::cluster::rfc3339_seconds::format(&latest.timestamp),
        pvc: latest.pvc_name.clone(),
        from: latest.previous_size.clone(),
        to: latest.new_size.clone(),
        result: match latest.result {
            ResizeResult::Success => "success",
            ResizeResult::Failure => "failure",
        },
    })
}

/// PVCs whose latest record is a failure (the storage refused; the managers
/// do not retry until the request changes).
fn failed_resizes(events: &[AutoResizeEvent]) -> Vec<String> {
    let mut latest: BTreeMap<&str, &AutoResizeEvent> = BTreeMap::new();
    for event in events {
        let newer = latest
            .get(event.pvc_name.as_str())
            .is_none_or(|seen| event.timestamp >= seen.timestamp);
        if newer {
            latest.insert(&event.pvc_name, event);
        }
    }
    latest
        .into_iter()
        .filter(|(_, e)| e.result == ResizeResult::Failure)
        .map(|(pvc, e)| format!("{pvc} ({} to {})", e.previous_size, e.new_size))
        .collect()
}

fn wal_problems(disk: &ClusterDiskStatus) -> Vec<String> {
    let mut out = Vec::new();
    for (instance, status) in &disk.instances {
        let Some(wal) = &status.wal_health else {
            continue;
        };
        if !wal.archive_healthy {
            out.push(format!("{instance}: WAL archiving failing"));
        }
        if wal.inactive_slot_count > 0 {
            let bytes: u64 = wal.inactive_slots.iter().map(|s| s.retention_bytes).sum();
            out.push(format!(
                "{instance}: {} inactive replication slot(s) retaining {bytes} bytes",
                wal.inactive_slot_count
            ));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn record(time: &str, pvc: &str, result: &str) -> Value {
        json!({"timestamp": time, "instanceName": "pg-1", "pvcName": pvc, "volumeType": "wal",
            "previousSize": "1Gi", "newSize": "2Gi", "result": result})
    }

    fn fork_cluster(events: Vec<Value>, archive_healthy: bool) -> Value {
        json!({"metadata": {"name": "pg", "namespace": "db"},
            "status": {"autoResizeEvents": events, "diskStatus": {"instances": {"pg-1": {
                "walHealth": {"archiveHealthy": archive_healthy, "pendingWALFiles": 3, "inactiveSlotCount": 0}}}}}})
    }

    #[test]
    fn a_healthy_cluster_costs_nothing_in_attention_mode_but_shows_in_always_mode() {
        let cluster = fork_cluster(
            vec![record("2026-01-02T03:04:05Z", "pg-1-wal", "success")],
            true,
        );
        let context = Context {
            leader: Some("pg-1".into()),
            ..Default::default()
        };
        let summary = summarize(&cluster, &context);
        assert!(!summary.needs_attention());
        assert_eq!(answer(&summary, StatusMode::Attention), None);
        assert_eq!(answer(&summary, StatusMode::Never), None);
        let shown: Value =
            serde_json::from_slice(&answer(&summary, StatusMode::Always).unwrap()).unwrap();
        assert_eq!(
            shown,
            json!({"source": "Cluster", "leader": "pg-1", "lastResize": {"time": "2026-01-02T03:04:05Z",
                "pvc": "pg-1-wal", "from": "1Gi", "to": "2Gi", "result": "success"}})
        );
    }

    #[test]
    fn failing_archiving_a_refused_expansion_and_bad_parameters_need_attention() {
        let cluster = fork_cluster(
            vec![
                record("2026-01-02T03:04:05Z", "pg-1-wal", "success"),
                record("2026-01-02T04:00:00Z", "pg-1-wal", "failure"),
                record("2026-01-02T01:00:00Z", "pg-1", "failure"),
                record("2026-01-02T02:00:00Z", "pg-1", "success"),
            ],
            false,
        );
        let context = Context {
            parameter_errors: vec![ParamError {
                path: vec![
                    "spec".into(),
                    "plugins".into(),
                    "0".into(),
                    "parameters".into(),
                    "cpu".into(),
                ],
                value: "x".into(),
                message: "not a quantity".into(),
            }],
            ..Default::default()
        };
        let summary = summarize(&cluster, &context);
        assert!(summary.needs_attention());
        assert_eq!(summary.wal, vec!["pg-1: WAL archiving failing"]);
        assert_eq!(summary.failed_resizes, vec!["pg-1-wal (1Gi to 2Gi)"]);
        assert_eq!(
            summary.parameter_errors,
            vec![r#"spec.plugins[0].parameters.cpu="x": not a quantity"#]
        );
        let shown: Value =
            serde_json::from_slice(&answer(&summary, StatusMode::Attention).unwrap()).unwrap();
        assert!(shown.is_object());
    }

    #[test]
    fn with_a_policy_its_conditions_and_records_are_the_source() {
        let policy: AutoResizePolicy = serde_json::from_value(json!({
            "apiVersion": "autoresize.cnpg.io/v1alpha1", "kind": "AutoResizePolicy",
            "metadata": {"name": "pg-policy", "namespace": "db"},
            "spec": {"cluster": "pg"},
            "status": {"autoResizeEvents": [record("2026-01-02T03:04:05Z", "pg-2", "success")],
                "conditions": [
                    {"type": "Ready", "status": "True", "reason": "Planning", "message": "ok", "lastTransitionTime": "2026-01-02T03:04:05Z"},
                    {"type": "Blocked", "status": "True", "reason": "VolumesBlocked", "message": "pg-1-wal (archive_unhealthy)", "lastTransitionTime": "2026-01-02T03:04:05Z"}]}
        }))
        .unwrap();
        // The Cluster's own (fork) status is ignored when a policy governs.
        let cluster = fork_cluster(
            vec![record("2027-01-01T00:00:00Z", "pg-9", "failure")],
            true,
        );
        let summary = summarize(
            &cluster,
            &Context {
                policy: Some(&policy),
                ..Default::default()
            },
        );
        assert_eq!(summary.source, "AutoResizePolicy/pg-policy");
        assert_eq!(
            summary.blocked.as_deref(),
            Some("pg-1-wal (archive_unhealthy)")
        );
        assert_eq!(summary.invalid_config, None);
        assert_eq!(summary.last_resize.unwrap().pvc, "pg-2");
        assert!(summary.failed_resizes.is_empty());
    }

    #[test]
    fn an_unreadable_status_is_no_summary_problem() {
        for cluster in [
            json!({}),
            json!({"status": 3}),
            json!({"status": {"autoResizeEvents": "x", "diskStatus": []}}),
        ] {
            let summary = summarize(&cluster, &Context::default());
            assert_eq!(summary.source, "Cluster");
            assert!(summary.last_resize.is_none());
        }
    }
}
