//! One planning pass: decide from a snapshot (the pure engine), execute the
//! resizes, mirror the journal and the disk status into the owner's status,
//! and publish the decisions.

use super::disk_status;
use super::execute::{timestamp, Owner, ResizeOutcome, Writer};
use super::feed::{self, DecisionFeed};
use super::notices::{self, Notice, Severity};
use super::PlannerSettings;
use crate::api::cluster::{
    lenient_list, AutoResizeEvent, Cluster, ClusterDiskStatus, ResizeResult,
};
use crate::api::lenient::{self, Lenient};
use crate::api::policy::AutoResizePolicy;
use crate::api::quantity::format_bytes;
use crate::api::report::InstanceReport;
use crate::api::source::Source;
use crate::engine::journal::{self, Journal};
use crate::engine::{
    decide_with, foreign_resizes, Action, Decision, ForeignResize, PlanInput, Pods, Reason,
};
use k8s_openapi::api::core::v1::PersistentVolumeClaim;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use serde::Deserialize;
use serde_json::{json, Map, Value};
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;

/// What a planning pass works from.
pub struct Snapshot {
    pub cluster: Cluster,
    /// The policy that governs the cluster, if any (the oldest one).
    pub policy: Option<AutoResizePolicy>,
    pub pvcs: Vec<PersistentVolumeClaim>,
    /// Every instance's report, aged on the clock of the instance that took
    /// it, minus figures sampled before their volume's capacity changed.
    pub reports: BTreeMap<String, InstanceReport>,
    /// The reports as sampled, for `diskStatus`: a volume whose figures the
    /// decision leaves out for a moment does not vanish from the status.
    pub sampled_reports: BTreeMap<String, InstanceReport>,
    /// The instance pods, and since when the missing ones are gone.
    pub pods: Pods,
    pub now: jiff::Timestamp,
    pub may_write_disk_status: bool,
    /// The decisions of the previous pass (pvc, action, reason).
    pub previous: Vec<DecisionKey>,
    /// Refused resizes this leader recorded lately: their record lives only
    /// in the owner's status, which the watch may not show yet (or a write
    /// may have failed); without them the next pass would try again.
    pub refused: Vec<AutoResizeEvent>,
    /// Status fields the owner's CRD prunes: not written.
    pub unwritable: Vec<String>,
}

pub type DecisionKey = (String, Action, Option<Reason>);

#[derive(Default)]
pub struct PassResult {
    pub decisions: Vec<Decision>,
    /// Standing conditions; the planner's aggregator decides what to announce.
    pub conditions: Vec<Notice>,
    /// Occurrences announced now (a resize).
    pub announcements: Vec<Notice>,
    pub wrote_disk_status: bool,
    /// An API call failed: plan again after the planner's back-off.
    pub retry: bool,
    /// PVCs read after a refused patch, with the resourceVersion of the
    /// (stale) copy the decision used: newer than the watch's copies until
    /// the watch delivers something else.
    pub fresh_pvcs: Vec<(Option<String>, PersistentVolumeClaim)>,
    pub replan_now: bool,
    pub write_error: Option<String>,
    pub keys: Vec<DecisionKey>,
    /// Status entries that could not be read (dropped by this pass's write).
    pub unreadable_entries: Vec<String>,
    /// Resizes the API server refused in this pass.
    pub refused: Vec<AutoResizeEvent>,
    /// Status fields this pass wrote that the API server dropped (its CRD
    /// has no such field).
    pub pruned_fields: Vec<String>,
    /// The object whose status this pass wrote (or would have).
    pub owner: Option<Owner>,
    /// PVC requests another resizer raised.
    pub foreign: Vec<ForeignResize>,
}

/// The owner's status as this pass reads it: only our fields, leniently.
#[derive(Default, Deserialize)]
#[serde(rename_all = "camelCase")]
struct OwnerStatus {
    #[serde(default, deserialize_with = "lenient_list")]
    auto_resize_events: Vec<Lenient<AutoResizeEvent>>,
    #[serde(default)]
    disk_status: Option<Value>,
    #[serde(default)]
    conditions: Option<Value>,
}

fn owner_status(status: &Value) -> OwnerStatus {
    match Lenient::<OwnerStatus>::read(status.clone()) {
        Lenient::Ok(s) => s,
        Lenient::Unreadable { .. } => OwnerStatus::default(),
    }
}

pub async fn run_pass(
    settings: PlannerSettings,
    writer: Arc<Writer>,
    feed: watch::Sender<DecisionFeed>,
    snapshot: Snapshot,
) -> PassResult {
    let mut result = PassResult::default();
    let Snapshot {
        cluster,
        policy,
        pvcs,
        reports,
        sampled_reports,
        pods,
        now,
        may_write_disk_status,
        previous,
        refused,
        unwritable,
    } = snapshot;
    let source = Source {
        cluster: &cluster,
        policy: policy.as_ref(),
    };
    let owner = match &policy {
        Some(p) => Owner::Policy(p.name().to_string()),
        None => Owner::Cluster(cluster.name().to_string()),
    };
    result.owner = Some(owner.clone());
    let journal = Journal::of(&source, &pvcs).with(&refused);
    result.unreadable_entries = lenient::split(source.status_events())
        .1
        .iter()
        .map(|(value, error)| format!("{error}: {value}"))
        .collect();
    let input = PlanInput {
        source,
        pvcs: &pvcs,
        instances: &reports,
        pods,
        now,
        settings: settings.engine,
    };
    let cnpg_slots = input.cnpg_slots();
    let mut decisions = decide_with(&input, &journal);
    result.foreign = foreign_resizes(&source, &pvcs, &journal);

    // Execute, one PVC at a time.
    let mut recorded: Vec<AutoResizeEvent> = Vec::new();
    for d in decisions.iter_mut() {
        let Some(pvc) = pvcs
            .iter()
            .find(|p| p.metadata.name.as_deref() == Some(d.volume.pvc.as_str()))
        else {
            continue;
        };
        if let Some(refusal) = &d.refusal {
            // The storage refused: the record becomes a failure (no budget spent).
            if let Some(record) = refusal
                .record
                .as_ref()
                .filter(|r| r.result == ResizeResult::Success)
            {
                match writer.mark_failed(pvc, record).await {
                    Ok(()) => recorded.push(AutoResizeEvent {
                        result: ResizeResult::Failure,
                        ..record.clone()
                    }),
                    Err(error) => {
                        tracing::warn!(pvc = %d.volume.pvc, %error, "cannot mark the refused resize as failed")
                    }
                }
            }
            continue;
        }
        if !d.executes() {
            continue;
        }
        if let Some(refused) = recently_refused(&journal, d, now, settings.failure_backoff) {
            // Still the same refusal: a standing condition, not a new attempt.
            result.conditions.push(refused_notice(
                d,
                &refused.previous_size,
                &refused.new_size,
                "refused by the API server",
                settings.failure_backoff,
            ));
            continue;
        }
        match writer.resize(pvc, d, now).await {
            ResizeOutcome::Applied(event) => {
                tracing::info!(pvc = %d.volume.pvc, instance = %d.volume.instance,
                    from = %event.previous_size, to = %event.new_size,
                    trigger = event.trigger.as_deref().unwrap_or(""),
                    filesystem_bytes = d.filesystem_bytes.unwrap_or(0), "resized");
                recorded.push(event);
                result.announcements.extend(notices::resized(d));
            }
            ResizeOutcome::Changed(fresh) => {
                tracing::info!(pvc = %d.volume.pvc, "PVC changed since the decision; deciding again from the fresh copy");
                let stale = pvc.metadata.resource_version.clone();
                result.fresh_pvcs.extend(fresh.map(|p| (stale, *p)));
                result.replan_now = true;
            }
            ResizeOutcome::Rejected { event, error } => {
                tracing::warn!(pvc = %d.volume.pvc, %error, "resize refused by the API server");
                result.conditions.push(refused_notice(
                    d,
                    &event.previous_size,
                    &event.new_size,
                    &error,
                    settings.failure_backoff,
                ));
                result.refused.push(event.clone());
                recorded.push(event);
            }
            ResizeOutcome::Transient(error) => {
                tracing::warn!(pvc = %d.volume.pvc, %error, "resize failed; will retry");
                result.retry = true;
            }
            ResizeOutcome::NotLeader => return result,
        }
    }

    // Mirror the journal and the disk status into the owner's status.
    let new_disk = disk_status::build(&sampled_reports, &timestamp(now), &cnpg_slots);
    let keys: Vec<DecisionKey> = decisions
        .iter()
        .map(|d| (d.volume.pvc.clone(), d.action, d.reason))
        .collect();
    // A new decision (a resize, a block, a change of reason) is written at
    // once, so the status shows why; a steady state writes nothing.
    let decided = !recorded.is_empty() || keys != previous;
    // Sized from the largest budget a PVC can have: a counting entry is never dropped.
    // Records of PVCs that are gone go once they count toward no budget.
    let existing: std::collections::HashSet<&str> = pvcs
        .iter()
        .filter_map(|p| p.metadata.name.as_deref())
        .collect();
    let cap = journal::capacity(
        pvcs.iter()
            .map(|_| crate::api::resize::MAX_ACTIONS_PER_DAY_CEILING),
    );
    let all_events = journal::merged(&[journal.events(), &recorded]);
    let conditions = policy.as_ref().map(|_| policy_conditions(&decisions));
    let last_resize = all_events
        .iter()
        .filter(|e| e.result == ResizeResult::Success)
        .map(|e| e.timestamp)
        .max()
        .map(timestamp);
    let wrote_disk = std::cell::Cell::new(false);
    // What the last built patch carried, to tell what the server pruned.
    let sent = std::cell::RefCell::new(Vec::<String>::new());
    let writable = |field: &str| !unwritable.iter().any(|f| f == field);
    let cached = match &policy {
        Some(p) => serde_json::to_value(&p.status).unwrap_or(Value::Null),
        None => serde_json::to_value(&cluster.status).unwrap_or(Value::Null),
    };
    let write = writer
        .write_status(&owner, &cached, |current| {
            let stored = owner_status(current);
            let mut patch = Map::new();
            let (readable, unreadable) = lenient::split(&stored.auto_resize_events);
            let events = journal::pruned(
                &journal::merged(&[&readable, &all_events]),
                now,
                cap,
                |pvc| existing.contains(pvc),
            );
            // Compared by identity and result: a CRD may prune fields of the mirror.
            if (!journal::same_records(&events, &readable) || !unreadable.is_empty())
                && writable("autoResizeEvents")
            {
                patch.insert("autoResizeEvents".into(), json!(events));
            }
            let old_disk = stored
                .disk_status
                .clone()
                .and_then(|v| serde_json::from_value::<ClusterDiskStatus>(v).ok());
            let disk_changed = disk_status::materially_different(old_disk.as_ref(), &new_disk);
            let include_disk =
                disk_changed && (may_write_disk_status || decided) && writable("diskStatus");
            wrote_disk.set(include_disk);
            if include_disk {
                let new_value = serde_json::to_value(&new_disk).unwrap_or(Value::Null);
                let diff = match &stored.disk_status {
                    Some(old) => disk_status::merge_diff(old, &new_value),
                    None => new_value,
                };
                patch.insert("diskStatus".into(), diff);
            }
            if let Some(wanted) = &conditions {
                let merged = merge_conditions(stored.conditions.as_ref(), wanted, now);
                if stored.conditions.as_ref() != Some(&merged) {
                    patch.insert("conditions".into(), merged);
                }
                if last_resize.is_some()
                    && current.get("lastResizeTime").and_then(Value::as_str)
                        != last_resize.as_deref()
                {
                    patch.insert("lastResizeTime".into(), json!(last_resize));
                }
            }
            *sent.borrow_mut() = patch
                .iter()
                .filter(|(_, v)| !is_empty(v))
                .map(|(k, _)| k.clone())
                .collect();
            (!patch.is_empty()).then_some(Value::Object(patch))
        })
        .await;
    match write {
        Ok(written) => {
            result.wrote_disk_status = written.is_some() && wrote_disk.get();
            // Whatever the server dropped from what it was sent, its
            // schema prunes: writing it again is pointless.
            if let Some(kept) = written {
                result.pruned_fields = sent
                    .take()
                    .into_iter()
                    .filter(|field| kept.get(field).is_none_or(is_empty))
                    .collect();
            }
        }
        Err(error) => {
            result.write_error = Some(error);
            result.retry = true;
        }
    }

    result
        .conditions
        .extend(decisions.iter().flat_map(notices::conditions_of));
    let instances = feed::feed_of(&decisions, &all_events);
    feed.send_if_modified(|f| feed::update(f, &settings.pod_name, &cnpg_slots, instances));
    result.keys = keys;
    result.decisions = decisions;
    result
}

/// Null, or an empty object or list: nothing a server could have pruned.
fn is_empty(v: &Value) -> bool {
    match v {
        Value::Null => true,
        Value::Object(m) => m.is_empty(),
        Value::Array(a) => a.is_empty(),
        _ => false,
    }
}

/// A refusal of this very resize (same PVC, same starting size) is recent.
fn recently_refused<'e>(
    journal: &'e Journal,
    d: &Decision,
    now: jiff::Timestamp,
    backoff: Duration,
) -> Option<&'e AutoResizeEvent> {
    let current = d.current_size.map(format_bytes)?;
    let horizon = backoff_start(now, backoff);
    journal.of_pvc(&d.volume.pvc).find(|e| {
        e.result == ResizeResult::Failure && e.previous_size == current && e.timestamp > horizon
    })
}

/// Refusals after this instant are not retried yet (`--failure-backoff`).
pub(super) fn backoff_start(now: jiff::Timestamp, backoff: Duration) -> jiff::Timestamp {
    // The backoff is 10 min (run.rs); the fallback only guards the conversion.
    now - jiff::SignedDuration::try_from(backoff).unwrap_or(jiff::SignedDuration::from_mins(10))
}

fn refused_notice(d: &Decision, from: &str, to: &str, error: &str, backoff: Duration) -> Notice {
    Notice {
        severity: Severity::Warning,
        reason: "AutoResizeFailed",
        message: format!(
            "{}: resize from {from} to {to} refused; not retried for {}s: {error}",
            d.volume.pvc,
            backoff.as_secs()
        ),
        pvc: d.volume.pvc.clone(),
    }
}

/// The policy's `Ready` and `Blocked` conditions from this pass's decisions.
fn policy_conditions(decisions: &[Decision]) -> Vec<(String, bool, String, String)> {
    let invalid: Vec<String> = decisions
        .iter()
        .filter(|d| d.reason == Some(Reason::InvalidConfig))
        .map(|d| format!("{}: {}", d.volume.pvc, d.message))
        .collect();
    let blocked: Vec<String> = decisions
        .iter()
        .filter(|d| d.action == Action::Blocked)
        .map(|d| {
            format!(
                "{} ({})",
                d.volume.pvc,
                d.reason.map(|r| r.as_str()).unwrap_or("")
            )
        })
        .collect();
    let ready = if invalid.is_empty() {
        (
            "Ready".into(),
            true,
            "Planning".into(),
            format!(
                "the leader plans {} volumes with this policy",
                decisions.len()
            ),
        )
    } else {
        (
            "Ready".into(),
            false,
            "InvalidConfig".into(),
            invalid.join("; "),
        )
    };
    let blocked = if blocked.is_empty() {
        (
            "Blocked".into(),
            false,
            "NothingBlocked".into(),
            "no volume is blocked".into(),
        )
    } else {
        (
            "Blocked".into(),
            true,
            "VolumesBlocked".into(),
            blocked.join(", "),
        )
    };
    vec![ready, blocked]
}

/// Conditions as stored, with `lastTransitionTime` kept while a status holds.
pub fn merge_conditions(
    stored: Option<&Value>,
    wanted: &[(String, bool, String, String)],
    now: jiff::Timestamp,
) -> Value {
    let old: Vec<Condition> = stored
        .cloned()
        .and_then(|v| serde_json::from_value(v).ok())
        .unwrap_or_default();
    let conditions: Vec<Condition> = wanted
        .iter()
        .map(|(type_, status, reason, message)| {
            let status = if *status { "True" } else { "False" }.to_string();
            let since = old
                .iter()
                .find(|c| c.type_ == *type_ && c.status == status)
                .map(|c| c.last_transition_time.clone())
                .unwrap_or(Time(now.round(jiff::Unit::Second).unwrap_or(now)));
            Condition {
                type_: type_.clone(),
                status,
                reason: reason.clone(),
                message: message.chars().take(4096).collect(),
                last_transition_time: since,
                observed_generation: None,
            }
        })
        .collect();
    serde_json::to_value(conditions).unwrap_or(Value::Null)
}
