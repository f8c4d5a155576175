//! Writes: the conditional, journaled PVC resize and the Cluster status
//! mirror. Every write first checks the lease fence.

use crate::actors::leader::Fence;
use crate::api::cluster::{AutoResizeEvent, Cluster, ResizeResult};
use crate::api::quantity::format_bytes;
use crate::engine::journal::{annotation_with, parse_annotation, PVC_EVENTS_ANNOTATION};
use crate::engine::Decision;
use crate::kube_api::{is_status, observed, status_code};
use crate::metrics::Metrics;
use k8s_openapi::api::core::v1::PersistentVolumeClaim;
use kube::api::{Api, Patch, PatchParams};
use serde_json::{json, Value};
use std::sync::Arc;
use std::time::Duration;

pub enum ResizeOutcome {
    /// The PVC now requests the new size; its record is on the PVC.
    Applied(AutoResizeEvent),
    /// The PVC changed since the decision (another writer, a deposed
    /// leader's race): re-read and decide again, never retry blindly.
    Changed,
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

pub struct Writer {
    pub pvcs: Api<PersistentVolumeClaim>,
    pub clusters: Api<Cluster>,
    pub cluster_name: String,
    pub metrics: Arc<Metrics>,
    pub fence: Arc<Fence>,
}

/// Kubernetes timestamps have second precision.
pub fn timestamp(now: jiff::Timestamp) -> String {
    now.strftime("%Y-%m-%dT%H:%M:%SZ").to_string()
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

/// JSON-patch path segment escaping (RFC 6901).
fn pointer_segment(key: &str) -> String {
    key.replace('~', "~0").replace('/', "~1")
}

impl Writer {
    pub async fn resize(
        &self,
        pvc: &PersistentVolumeClaim,
        d: &Decision,
        now: jiff::Timestamp,
    ) -> ResizeOutcome {
        let (Some(current), Some(new)) = (d.current_size, d.new_size) else {
            return ResizeOutcome::Changed;
        };
        let name = d.volume.pvc.clone();
        let Some(current_text) = request_text(pvc) else {
            return ResizeOutcome::Changed;
        };
        let event = AutoResizeEvent {
            timestamp: timestamp(now),
            instance_name: d.volume.instance.clone(),
            pvc_name: name.clone(),
            volume_type: d.volume.volume_type,
            tablespace: d.volume.tablespace.clone(),
            previous_size: format_bytes(current),
            new_size: format_bytes(new),
            result: ResizeResult::Success,
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
            ops.push(json!({"op": "add", "path": format!("/metadata/annotations/{}", pointer_segment(PVC_EVENTS_ANNOTATION)), "value": record}));
        } else {
            ops.push(json!({"op": "add", "path": "/metadata/annotations", "value": {PVC_EVENTS_ANNOTATION: record}}));
        }
        let patch: json_patch::Patch = match serde_json::from_value(Value::Array(ops)) {
            Ok(p) => p,
            Err(e) => return ResizeOutcome::Transient(format!("building the patch: {e}")),
        };
        if !self.fence.holds() {
            return ResizeOutcome::NotLeader;
        }
        let result = observed(
            &self.metrics,
            "patch",
            "persistentvolumeclaims",
            self.pvcs
                .patch(&name, &PatchParams::default(), &Patch::Json::<()>(patch)),
        )
        .await;
        match result {
            Ok(_) => ResizeOutcome::Applied(event),
            Err(e) if is_status(&e, 404) => ResizeOutcome::Changed,
            Err(e) if is_status(&e, 409) || is_status(&e, 422) => {
                // A failed `test` and a real rejection both answer 422: the
                // PVC itself tells them apart.
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
                    Ok(_) => ResizeOutcome::Changed,
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

    /// Patches the Cluster status from `build` (given the freshly read
    /// Cluster; None = nothing to write), unless `build` finds nothing to
    /// write on the watched copy `cached`. Conditional on the resourceVersion
    /// read; a 409 means re-read and rebuild, never a blind retry.
    pub async fn write_status(
        &self,
        cached: &Cluster,
        build: impl Fn(&Cluster) -> Option<Value>,
    ) -> Result<bool, String> {
        // The watched copy says whether there is anything to write: a steady
        // state costs no API call. A stale copy costs one read at most.
        if build(cached).is_none() {
            return Ok(false);
        }
        let mut delay = Duration::from_millis(50);
        for _ in 0..6 {
            // The main resource carries the status too; the Role grants no
            // `get` on clusters/status, only `patch`.
            let cluster = observed(
                &self.metrics,
                "get",
                "clusters",
                self.clusters.get(&self.cluster_name),
            )
            .await
            .map_err(|e| format!("reading cluster {}: {e}", self.cluster_name))?;
            let Some(status) = build(&cluster) else {
                return Ok(false);
            };
            if !self.fence.holds() {
                return Err("the lease is no longer ours".to_string());
            }
            let patch = json!({
                "metadata": {"resourceVersion": cluster.metadata.resource_version},
                "status": status,
            });
            let result = observed(
                &self.metrics,
                "patch",
                "clusters/status",
                self.clusters.patch_status(
                    &self.cluster_name,
                    &PatchParams::default(),
                    &Patch::Merge(&patch),
                ),
            )
            .await;
            match result {
                Ok(_) => return Ok(true),
                Err(e) if is_status(&e, 409) => {
                    tokio::time::sleep(delay + jitter(delay)).await;
                    delay = (delay * 2).min(Duration::from_secs(2));
                }
                Err(e) => {
                    return Err(format!(
                        "patching cluster {} status: {e}",
                        self.cluster_name
                    ))
                }
            }
        }
        Err(format!(
            "cluster {} status kept changing; will retry",
            self.cluster_name
        ))
    }
}

/// Up to half of `d`, so retries from several writers spread out.
pub fn jitter(d: Duration) -> Duration {
    let half = d.as_millis().max(2) as u64 / 2;
    Duration::from_millis(rand::random_range(0..half))
}
