//! Kubernetes Events (`events.k8s.io/v1`) for the planner's notices. A
//! repeat of the same event (same object, PVC, reason) within six minutes
//! updates the existing Event's series and its note, so the Event always
//! describes the latest occurrence — unlike kube-runtime's `Recorder`, whose
//! series update keeps the first note.

use super::notices::{Notice, Severity};
use crate::kube_api::observed;
use crate::metrics::Metrics;
use k8s_openapi::api::core::v1::ObjectReference;
use k8s_openapi::api::events::v1::{Event, EventSeries};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta};
use kube::api::{Api, Patch, PatchParams, PostParams};
use serde_json::json;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Kubernetes aggregates isomorphic events observed within this window.
const SERIES_WINDOW: Duration = Duration::from_secs(6 * 60);
/// An Event's note is limited to 1 KiB by the API server.
const NOTE_LIMIT: usize = 1024;

type SeriesKey = (String, String, String, &'static str);

pub struct EventRecorder {
    api: Api<Event>,
    controller: String,
    instance: String,
    metrics: Arc<Metrics>,
    series: Mutex<HashMap<SeriesKey, (String, i32, Instant)>>,
}

impl EventRecorder {
    pub fn new(api: Api<Event>, instance: &str, metrics: Arc<Metrics>) -> Self {
        EventRecorder {
            api,
            controller: "cnpg-autoresize".to_string(),
            instance: instance.to_string(),
            metrics,
            series: Mutex::new(HashMap::new()),
        }
    }

    /// Records `notice` about `regarding`, with its PVC (if any) as the related object.
    pub async fn publish(&self, regarding: &ObjectReference, notice: &Notice) -> kube::Result<()> {
        let key = (
            regarding.kind.clone().unwrap_or_default(),
            regarding.name.clone().unwrap_or_default(),
            notice.pvc.clone(),
            notice.reason,
        );
        let note = truncate(&notice.message, NOTE_LIMIT);
        let now = MicroTime(jiff::Timestamp::now());
        let repeat = {
            let series = self.series.lock().unwrap_or_else(|p| p.into_inner());
            series
                .get(&key)
                .filter(|(_, _, last)| last.elapsed() < SERIES_WINDOW)
                .map(|(name, count, _)| (name.clone(), *count))
        };
        if let Some((name, count)) = repeat {
            let patch = json!({
                "series": {"count": count + 1, "lastObservedTime": now},
                "note": note,
            });
            let result = observed(
                &self.metrics,
                "patch",
                "events",
                self.api
                    .patch(&name, &PatchParams::default(), &Patch::Merge(&patch)),
            )
            .await;
            if result.is_ok() {
                let mut series = self.series.lock().unwrap_or_else(|p| p.into_inner());
                series.insert(key, (name, count + 1, Instant::now()));
                return Ok(());
            }
            // The Event may have been deleted or expired: start a new one.
        }
        let base = regarding
            .name
            .clone()
            .unwrap_or_else(|| "cnpg-autoresize".into());
        let name = format!("{base}.{:016x}", rand::random::<u64>());
        let event = Event {
            metadata: ObjectMeta {
                name: Some(name.clone()),
                namespace: regarding.namespace.clone(),
                ..Default::default()
            },
            event_time: Some(now),
            type_: Some(match notice.severity {
                Severity::Normal => "Normal".into(),
                Severity::Warning => "Warning".into(),
            }),
            reason: Some(notice.reason.to_string()),
            action: Some("AutoResize".into()),
            note: Some(note),
            regarding: Some(regarding.clone()),
            // A notice about no PVC (a duplicate policy) relates to nothing.
            related: (!notice.pvc.is_empty()).then(|| ObjectReference {
                api_version: Some("v1".into()),
                kind: Some("PersistentVolumeClaim".into()),
                name: Some(notice.pvc.clone()),
                namespace: regarding.namespace.clone(),
                ..Default::default()
            }),
            reporting_controller: Some(self.controller.clone()),
            reporting_instance: Some(self.instance.clone()),
            series: None::<EventSeries>,
            ..Default::default()
        };
        observed(
            &self.metrics,
            "create",
            "events",
            self.api.create(&PostParams::default(), &event),
        )
        .await?;
        let mut series = self.series.lock().unwrap_or_else(|p| p.into_inner());
        series.retain(|_, (_, _, last)| last.elapsed() < SERIES_WINDOW);
        series.insert(key, (name, 1, Instant::now()));
        Ok(())
    }
}

fn truncate(s: &str, max: usize) -> String {
    if s.len() <= max {
        return s.to_string();
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    s[..end].to_string()
}
