//! `cnpg-autoresize status`: reads a cluster from the API server and prints,
//! per instance and volume, what the planner sees and decides.

use crate::api::cluster::{
    AutoResizeEvent, Cluster, InstanceDiskStatus, ResizeResult, VolumeDiskStatus,
};
use crate::api::quantity::format_bytes;
use crate::api::report::{InactiveSlot, InstanceReport, VolumeStats, WalHealth};
use crate::engine::{decide, Action, Decision, EngineSettings, PlanInput, LABEL_CLUSTER};
use anyhow::Context;
use k8s_openapi::api::core::v1::PersistentVolumeClaim;
use kube::api::{Api, ListParams};
use std::collections::BTreeMap;
use std::fmt::Write;

fn stats(v: &VolumeDiskStatus) -> VolumeStats {
    VolumeStats {
        total_bytes: v.total_bytes,
        used_bytes: v.used_bytes,
        available_bytes: v.available_bytes,
        inodes_total: v.inodes_total,
        inodes_used: v.inodes_used,
        inodes_free: v.inodes_free,
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
        }),
        last_updated: None,
    }
}

fn last_resize<'e>(events: &'e [AutoResizeEvent], pvc: &str) -> Option<&'e AutoResizeEvent> {
    events
        .iter()
        .filter(|e| e.pvc_name == pvc && e.result == ResizeResult::Success)
        .max_by_key(|e| e.timestamp.parse::<jiff::Timestamp>().ok())
}

pub fn render(
    cluster: &Cluster,
    decisions: &[Decision],
    reports: &BTreeMap<String, InstanceReport>,
) -> String {
    let mut rows = vec![[
        "INSTANCE",
        "VOLUME",
        "PVC",
        "SIZE",
        "USED%",
        "TRIGGER",
        "BUDGET",
        "NEXT ACTION",
        "STATE",
        "LAST RESIZE",
    ]
    .map(String::from)];
    for d in decisions {
        let report = reports.get(&d.volume.instance);
        let used = report
            .and_then(|r| match d.volume.volume_type {
                crate::api::cluster::VolumeType::Data => r.data,
                crate::api::cluster::VolumeType::Wal => r.wal,
                crate::api::cluster::VolumeType::Tablespace => {
                    r.tablespaces.get(d.volume.tablespace.as_deref()?).copied()
                }
            })
            .map(|s| format!("{}%", s.percent_used_rounded()))
            .unwrap_or_else(|| "-".into());
        let policy = cluster
            .storage_for(d.volume.volume_type, d.volume.tablespace.as_deref())
            .and_then(|(s, path)| s.resize.as_ref()?.resolve(&path.child("resize")).ok());
        let trigger = policy
            .map(|p| match p.min_available {
                Some(min) => format!(">{}% or <{}", p.usage_threshold, format_bytes(min)),
                None => format!(">{}%", p.usage_threshold),
            })
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
        let last = last_resize(cluster.events(), &d.volume.pvc)
            .map(|e| format!("{} {}→{}", e.timestamp, e.previous_size, e.new_size))
            .unwrap_or_else(|| "-".into());
        rows.push([
            d.volume.instance.clone(),
            volume,
            d.volume.pvc.clone(),
            d.current_size
                .map(format_bytes)
                .unwrap_or_else(|| "?".into()),
            used,
            trigger,
            d.budget_remaining
                .map(|b| b.to_string())
                .unwrap_or_else(|| "-".into()),
            d.next_action_at
                .map(|t| t.to_string())
                .unwrap_or_else(|| "-".into()),
            state,
            last,
        ]);
    }
    let widths: Vec<usize> = (0..10)
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
    let (client, default_ns) = crate::kube_api::client(kubeconfig).await?;
    let ns = namespace.unwrap_or(default_ns);
    let cluster: Cluster = Api::namespaced(client.clone(), &ns)
        .get(cluster_name)
        .await
        .with_context(|| format!("reading cluster {ns}/{cluster_name}"))?;
    let pvcs: Vec<PersistentVolumeClaim> = Api::namespaced(client, &ns)
        .list(&ListParams::default().labels(&format!("{LABEL_CLUSTER}={cluster_name}")))
        .await
        .with_context(|| format!("listing the PVCs of {ns}/{cluster_name}"))?
        .items;
    let reports: BTreeMap<String, InstanceReport> = cluster
        .status
        .as_ref()
        .and_then(|s| s.disk_status.as_ref())
        .map(|d| {
            d.instances
                .iter()
                .map(|(n, s)| (n.clone(), report_from_status(s)))
                .collect()
        })
        .unwrap_or_default();
    let decisions = decide(&PlanInput {
        cluster: &cluster,
        pvcs: &pvcs,
        instances: &reports,
        now: jiff::Timestamp::now(),
        settings: EngineSettings::default(),
    });
    if decisions.is_empty() {
        return Ok(format!(
            "cluster {ns}/{cluster_name}: nothing to show ({} PVCs labelled {LABEL_CLUSTER}={cluster_name}; \
             a volume shows when its kind has resize.enabled and it has a PVC)\n",
            pvcs.len()
        ));
    }
    Ok(render(&cluster, &decisions, &reports))
}
