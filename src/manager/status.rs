//! `cnpg-autoresize status`: reads a cluster (and the AutoResizePolicy that
//! governs it, if any) from the API server and prints, per instance and
//! volume, what the planner sees and decides: size, use, forecast, trigger,
//! budget, next action, state and the last resize with its trigger.

use crate::api::cluster::{Cluster, InstanceDiskStatus, VolumeDiskStatus};
use crate::api::duration::format_go_duration;
use crate::api::policy::AutoResizePolicy;
use crate::api::quantity::format_bytes;
use crate::api::report::{InactiveSlot, InstanceReport, VolumeStats, WalHealth};
use crate::api::source::Source;
use crate::engine::journal::Journal;
use crate::engine::{decide_with, Action, Decision, EngineSettings, PlanInput, LABEL_CLUSTER};
use anyhow::Context;
use k8s_openapi::api::core::v1::PersistentVolumeClaim;
use kube::api::{Api, ListParams};
use std::collections::BTreeMap;
use std::fmt::Write;
use std::time::Duration;

fn stats(v: &VolumeDiskStatus) -> VolumeStats {
    VolumeStats {
        total_bytes: v.total_bytes,
        used_bytes: v.used_bytes,
        available_bytes: v.available_bytes,
        inodes_total: v.inodes_total,
        inodes_used: v.inodes_used,
        inodes_free: v.inodes_free,
        growth_bytes_per_second: v.growth_bytes_per_second,
        // diskStatus keeps the rate only (the fork's CRD has no history).
        history_seconds: None,
    }
}

/// The leader's last written view of an instance, as a report.
pub fn report_from_status(s: &InstanceDiskStatus) -> InstanceReport {
    InstanceReport {
        data: s.data_volume.as_ref().map(stats),
        wal: s.wal_volume.as_ref().map(stats),
        tablespaces: s
            .tablespaces
            .iter()
            .map(|(n, v)| (n.clone(), stats(v)))
            .collect(),
        wal_health: s.wal_health.as_ref().map(|h| WalHealth {
            archive_healthy: h.archive_healthy,
            archiving_configured: true,
            pending_wal_files: h.pending_wal_files,
            inactive_slots: h
                .inactive_slots
                .iter()
                .map(|s| InactiveSlot {
                    slot_name: s.slot_name.clone(),
                    retention_bytes: s.retention_bytes,
                })
                .collect(),
            slots_known: true,
            in_recovery: None,
        }),
        age_seconds: None,
        last_updated: None,
    }
}

pub fn render(
    decisions: &[Decision],
    reports: &BTreeMap<String, InstanceReport>,
    journal: &Journal,
) -> String {
    const COLUMNS: [&str; 12] = [
        "INSTANCE",
        "VOLUME",
        "PVC",
        "SIZE",
        "USED%",
        "GROWTH/H",
        "FULL IN",
        "BUDGET",
        "NEXT ACTION",
        "STATE",
        "LAST RESIZE",
        "BY",
    ];
    let mut rows = vec![COLUMNS.map(String::from).to_vec()];
    for d in decisions {
        let stats = reports
            .get(&d.volume.instance)
            .and_then(|r| r.stats(d.volume.volume_type, d.volume.tablespace.as_deref()))
            .copied();
        let used = stats
            .map(|s| format!("{}%", s.percent_used_rounded()))
            .unwrap_or_else(|| "-".into());
        let growth = stats
            .and_then(|s| s.growth_bytes_per_second)
            .map(|r| format!("{}/h", format_bytes((r * 3600.0) as u64)))
            .unwrap_or_else(|| "-".into());
        let full_in = stats
            .and_then(|s| s.seconds_to_full())
            .map(|secs| format_go_duration(Duration::from_secs(secs as u64)))
            .unwrap_or_else(|| "-".into());
        let volume = match &d.volume.tablespace {
            Some(t) => format!("tablespace/{t}"),
            None => d.volume.volume_type.as_str().to_string(),
        };
        let state = match (d.action, d.reason) {
            (Action::Resize, _) => format!(
                "resize to {}",
                d.new_size.map(format_bytes).unwrap_or_default()
            ),
            (_, Some(r)) => format!("{:?} ({r})", d.action).to_lowercase(),
            (a, None) => format!("{a:?}").to_lowercase(),
        };
        let last = journal.latest_success(&d.volume.pvc);
        rows.push(vec![
            d.volume.instance.clone(),
            volume,
            d.volume.pvc.clone(),
            d.current_size
                .map(format_bytes)
                .unwrap_or_else(|| "?".into()),
            used,
            growth,
            full_in,
            d.budget_remaining
                .map(|b| b.to_string())
                .unwrap_or_else(|| "-".into()),
            d.next_action_at
                .map(|t| t.to_string())
                .unwrap_or_else(|| "-".into()),
            state,
            last.map(|e| format!("{} {}→{}", e.timestamp, e.previous_size, e.new_size))
                .unwrap_or_else(|| "-".into()),
            last.and_then(|e| e.trigger.clone())
                .unwrap_or_else(|| "-".into()),
        ]);
    }
    let widths: Vec<usize> = (0..COLUMNS.len())
        .map(|i| rows.iter().map(|r| r[i].chars().count()).max().unwrap_or(0))
        .collect();
    let mut out = String::new();
    for row in rows {
        let cells: Vec<String> = row
            .iter()
            .zip(&widths)
            .map(|(c, w)| format!("{c:<w$}"))
            .collect();
        let _ = writeln!(out, "{}", cells.join("  ").trim_end());
    }
    out
}

pub async fn status(
    kubeconfig: Option<&std::path::Path>,
    namespace: Option<String>,
    cluster_name: &str,
) -> anyhow::Result<String> {
    let (client, default_ns) = crate::kube_api::client(kubeconfig, None).await?;
    let ns = namespace.unwrap_or(default_ns);
    let cluster: Cluster = Api::namespaced(client.clone(), &ns)
        .get(cluster_name)
        .await
        .with_context(|| format!("reading cluster {ns}/{cluster_name}"))?;
    // Without the AutoResizePolicy CRD (the fork's clusters) there is no
    // policy; any other failure leaves the source unknown: an error, not a guess.
    let listed: Vec<AutoResizePolicy> = match Api::namespaced(client.clone(), &ns)
        .list(&ListParams::default())
        .await
    {
        Ok(list) => list.items,
        Err(kube::Error::Api(status)) if status.code == 404 => Vec::new(),
        Err(error) => {
            return Err(anyhow::Error::new(error).context(format!(
                "listing the AutoResizePolicies of {ns} (one may govern {cluster_name})"
            )))
        }
    };
    let policy = crate::api::policy::targeting(&listed, cluster_name)
        .into_iter()
        .next();
    let pvcs: Vec<PersistentVolumeClaim> = Api::namespaced(client, &ns)
        .list(&ListParams::default().labels(&format!("{LABEL_CLUSTER}={cluster_name}")))
        .await
        .with_context(|| format!("listing the PVCs of {ns}/{cluster_name}"))?
        .items;
    let disk = match &policy {
        Some(p) => p.disk_status(),
        None => cluster.disk_status(),
    };
    let reports: BTreeMap<String, InstanceReport> = disk
        .map(|d| {
            d.instances
                .iter()
                .map(|(n, s)| (n.clone(), report_from_status(s)))
                .collect()
        })
        .unwrap_or_default();
    let source = Source {
        cluster: &cluster,
        policy: policy.as_ref(),
    };
    let journal = Journal::of(&source, &pvcs);
    let decisions = decide_with(
        &PlanInput {
            source,
            pvcs: &pvcs,
            instances: &reports,
            pods: crate::engine::Pods::Unknown,
            now: jiff::Timestamp::now(),
            settings: EngineSettings::default(),
        },
        &journal,
    );
    let governed = match &policy {
        Some(p) => format!("configured by AutoResizePolicy {}", p.name()),
        None => "configured by the Cluster's resize blocks".to_string(),
    };
    if decisions.is_empty() {
        return Ok(format!(
            "cluster {ns}/{cluster_name} ({governed}): nothing to show ({} PVCs labelled {LABEL_CLUSTER}={cluster_name}; \
             a volume shows when its kind has resize.enabled and it has a PVC)\n",
            pvcs.len()
        ));
    }
    Ok(format!(
        "cluster {ns}/{cluster_name} ({governed}; figures from the leader's last status write)\n{}",
        render(&decisions, &reports, &journal)
    ))
}
