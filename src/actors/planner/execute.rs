//! Writes: the conditional, journaled PVC resize, marking a refused
//! expansion's record as failed, and the owner's status (the Cluster's or
//! the AutoResizePolicy's). Every write first checks the lease fence.

use crate::actors::leader::Fence;
use crate::api::cluster::{rfc3339_seconds, AutoResizeEvent, ResizeResult};
use crate::api::quantity::format_bytes;
use crate::engine::journal::{
    annotation_marking_failed, annotation_with, parse_annotation, PVC_EVENTS_ANNOTATION,
};
use crate::engine::{Decision, Trigger, FIELD_MANAGER};
use crate::kube_api::{is_status, observed, status_code};
use crate::metrics::Metrics;
use k8s_openapi::api::core::v1::PersistentVolumeClaim;
use kube::api::{Api, DynamicObject, Patch, PatchParams};
use serde_json::{json, Value};
use std::sync::Arc;
use std::time::Duration;

pub enum ResizeOutcome {
    /// The PVC now requests the new size; its record is on the PVC.
    Applied(AutoResizeEvent),
    /// The PVC changed since the decision (another writer, a deposed
    /// leader's race): decide again from the fresh copy (when it was read),
    /// never retry blindly from a cache that has not caught up.
    Changed(Option<Box<PersistentVolumeClaim>>),
    /// The API server refused the resize for good (e.g. no volume expansion).
    Rejected {
        event: AutoResizeEvent,
        error: String,
    },
    /// No answer or a server error: try again later.
    Transient(String),
    /// The lease is no longer ours.
    NotLeader,
}

/// The object whose status carries the journal and the disk status.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Owner {
    Cluster(String),
    Policy(String),
}

impl Owner {
    pub fn name(&self) -> &str {
        match self {
            Owner::Cluster(n) | Owner::Policy(n) => n,
        }
    }

    fn resource(&self) -> &'static str {
        match self {
            Owner::Cluster(_) => "clusters",
            Owner::Policy(_) => "autoresizepolicies",
        }
    }
}

pub struct Writer {
    pub pvcs: Api<PersistentVolumeClaim>,
    pub clusters: Api<DynamicObject>,
    pub policies: Api<DynamicObject>,
    pub metrics: Arc<Metrics>,
    pub fence: Arc<Fence>,
}

fn request_text(pvc: &PersistentVolumeClaim) -> Option<String> {
    pvc.spec
        .as_ref()?
        .resources
        .as_ref()?
        .requests
        .as_ref()?
        .get("storage")
        .map(|q| q.0.clone())
}

/// Every PVC write names us as its field manager, so `managedFields` tells
/// our resizes from another resizer's.
fn pvc_patch_params() -> PatchParams {
    PatchParams {
        field_manager: Some(FIELD_MANAGER.to_string()),
        ..PatchParams::default()
    }
}

/// JSON-patch path segment escaping (RFC 6901).
fn pointer_segment(key: &str) -> String {
    key.replace('~', "~0").replace('/', "~1")
}

fn annotation_path() -> String {
    format!(
        "/metadata/annotations/{}",
        pointer_segment(PVC_EVENTS_ANNOTATION)
    )
}

fn json_patch(ops: Vec<Value>) -> Result<json_patch::Patch, String> {
    serde_json::from_value(Value::Array(ops)).map_err(|e| format!("building the patch: {e}"))
}

impl Writer {
    pub async fn resize(
        &self,
        pvc: &PersistentVolumeClaim,
        d: &Decision,
        now: jiff::Timestamp,
    ) -> ResizeOutcome {
        let (Some(current), Some(new)) = (d.current_size, d.new_size) else {
            return ResizeOutcome::Changed(None);
        };
        let name = d.volume.pvc.clone();
        let Some(current_text) = request_text(pvc) else {
            return ResizeOutcome::Changed(None);
        };
        let event = AutoResizeEvent {
            timestamp: now.round(jiff::Unit::Second).unwrap_or(now),
            instance_name: d.volume.instance.clone(),
            pvc_name: name.clone(),
            volume_type: d.volume.volume_type,
            tablespace: d.volume.tablespace.clone(),
            previous_size: format_bytes(current),
            new_size: format_bytes(new),
            result: ResizeResult::Success,
            trigger: d.trigger.map(|t| Trigger::as_str(t).to_string()),
            filesystem_bytes: d.filesystem_bytes,
        };
        let annotations = pvc.metadata.annotations.as_ref();
        let existing = match annotations.and_then(|a| a.get(PVC_EVENTS_ANNOTATION)) {
            Some(text) => match parse_annotation(text) {
                Ok(events) => events,
                Err(e) => return ResizeOutcome::Transient(e),
            },
            None => Vec::new(),
        };
        let record = annotation_with(&existing, &event, now);
        // The size change and its record land in one atomic write, and only
        // if the request is still the one the decision was made from.
        let mut ops = vec![
            json!({"op": "test", "path": "/spec/resources/requests/storage", "value": current_text}),
            json!({"op": "replace", "path": "/spec/resources/requests/storage", "value": format_bytes(new)}),
        ];
        if annotations.is_some() {
            ops.push(json!({"op": "add", "path": annotation_path(), "value": record}));
        } else {
            ops.push(json!({"op": "add", "path": "/metadata/annotations", "value": {PVC_EVENTS_ANNOTATION: record}}));
        }
        let patch = match json_patch(ops) {
            Ok(p) => p,
            Err(e) => return ResizeOutcome::Transient(e),
        };
        if !self.fence.holds() {
            return ResizeOutcome::NotLeader;
        }
        let result = observed(
            &self.metrics,
            "patch",
            "persistentvolumeclaims",
            self.pvcs
                .patch(&name, &pvc_patch_params(), &Patch::Json::<()>(patch)),
        )
        .await;
        match result {
            Ok(_) => ResizeOutcome::Applied(event),
            Err(e) if is_status(&e, 404) => ResizeOutcome::Changed(None),
            Err(e) if is_status(&e, 409) || is_status(&e, 422) => {
                // A failed `test` and a real rejection both answer 422: the
                // fresh PVC tells them apart, and is what we decide from next.
                match observed(
                    &self.metrics,
                    "get",
                    "persistentvolumeclaims",
                    self.pvcs.get_opt(&name),
                )
                .await
                {
                    Ok(Some(fresh))
                        if request_text(&fresh).as_deref() == Some(current_text.as_str()) =>
                    {
                        ResizeOutcome::Rejected {
                            event: AutoResizeEvent {
                                result: ResizeResult::Failure,
                                ..event
                            },
                            error: e.to_string(),
                        }
                    }
                    Ok(fresh) => ResizeOutcome::Changed(fresh.map(Box::new)),
                    Err(read) => {
                        ResizeOutcome::Transient(format!("{e}; then reading the PVC: {read}"))
                    }
                }
            }
            Err(e) if matches!(status_code(&e), 400 | 403 | 415) => ResizeOutcome::Rejected {
                event: AutoResizeEvent {
                    result: ResizeResult::Failure,
                    ..event
                },
                error: e.to_string(),
            },
            Err(e) => ResizeOutcome::Transient(e.to_string()),
        }
    }

    /// Turns the PVC's record of `record` into a failure (the storage refused
    /// the expansion), conditional on the annotation as read.
    pub async fn mark_failed(
        &self,
        pvc: &PersistentVolumeClaim,
        record: &AutoResizeEvent,
    ) -> Result<(), String> {
        let name = pvc.metadata.name.clone().unwrap_or_default();
        let Some(text) = pvc
            .metadata
            .annotations
            .as_ref()
            .and_then(|a| a.get(PVC_EVENTS_ANNOTATION))
        else {
            return Ok(()); // only the mirror holds it; the merge prefers failures
        };
        let existing = parse_annotation(text)?;
        let marked = annotation_marking_failed(&existing, record);
        if marked == *text {
            return Ok(());
        }
        let patch = json_patch(vec![
            json!({"op": "test", "path": annotation_path(), "value": text}),
            json!({"op": "replace", "path": annotation_path(), "value": marked}),
        ])?;
        if !self.fence.holds() {
            return Err("the lease is no longer ours".into());
        }
        observed(
            &self.metrics,
            "patch",
            "persistentvolumeclaims",
            self.pvcs
                .patch(&name, &pvc_patch_params(), &Patch::Json::<()>(patch)),
        )
        .await
        .map(|_| ())
        .map_err(|e| format!("marking the refused resize of {name} failed: {e}"))
    }

    /// Patches the owner's status from `build` (given the owner's current
    /// `status`, Null when it has none; None = nothing to write), unless
    /// `build` finds nothing to write on the watched copy `cached`.
    /// Conditional on the resourceVersion read; a 409 means re-read and
    /// rebuild, never a blind retry. Returns the status the API server
    /// answered with (what it kept of the write), None when nothing was
    /// written.
    pub async fn write_status(
        &self,
        owner: &Owner,
        cached: &Value,
        build: impl Fn(&Value) -> Option<Value>,
    ) -> Result<Option<Value>, String> {
        // The watched copy says whether there is anything to write: a steady
        // state costs no API call. A stale copy costs one read at most.
        if build(cached).is_none() {
            return Ok(None);
        }
        let api = match owner {
            Owner::Cluster(_) => &self.clusters,
            Owner::Policy(_) => &self.policies,
        };
        let resource = owner.resource();
        let status_resource = format!("{resource}/status");
        let mut delay = Duration::from_millis(50);
        for _ in 0..6 {
            // The main resource carries the status too; the Role grants no
            // `get` on the status subresource, only `patch`.
            let object = observed(&self.metrics, "get", resource, api.get(owner.name()))
                .await
                .map_err(|e| format!("reading {resource} {}: {e}", owner.name()))?;
            let status = object.data.get("status").cloned().unwrap_or(Value::Null);
            let Some(patch_status) = build(&status) else {
                return Ok(None);
            };
            if !self.fence.holds() {
                return Err("the lease is no longer ours".to_string());
            }
            let patch = json!({
                "metadata": {"resourceVersion": object.metadata.resource_version},
                "status": patch_status,
            });
            let result = observed(
                &self.metrics,
                "patch",
                &status_resource,
                api.patch_status(owner.name(), &PatchParams::default(), &Patch::Merge(&patch)),
            )
            .await;
            match result {
                Ok(written) => {
                    return Ok(Some(
                        written.data.get("status").cloned().unwrap_or(Value::Null),
                    ))
                }
                Err(e) if is_status(&e, 409) => {
                    tokio::time::sleep(delay + crate::http_client::jitter(delay / 2)).await;
                    delay = (delay * 2).min(Duration::from_secs(2));
                }
                Err(e) => return Err(format!("patching {resource} {} status: {e}", owner.name())),
            }
        }
        Err(format!(
            "{resource} {} status kept changing; will retry",
            owner.name()
        ))
    }
}

/// Kubernetes timestamps have second precision.
pub fn timestamp(now: jiff::Timestamp) -> String {
    rfc3339_seconds::format(&now)
}
