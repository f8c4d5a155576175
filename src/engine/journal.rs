//! The resize journal: the records each resize writes atomically on its PVC,
//! mirrored in the owner's `status.autoResizeEvents`. Pure functions over
//! record lists.

use super::budget::BUDGET_WINDOW;
use crate::api::cluster::{AutoResizeEvent, ResizeResult};
use crate::api::lenient;
use crate::api::source::Source;
use jiff::{SignedDuration, Timestamp};
use k8s_openapi::api::core::v1::PersistentVolumeClaim;
use std::collections::{BTreeMap, HashMap};

/// PVC annotation holding the PVC's recent resizes, written in the same
/// patch that changes the size, so the record cannot be lost.
pub const PVC_EVENTS_ANNOTATION: &str = "autoresize.cnpg.io/events";

/// Entries older than this may be pruned (they no longer count), except the
/// latest success of each PVC, which cooldowns and in-flight checks need.
pub const RETENTION: SignedDuration = SignedDuration::from_hours(25);

/// Identity of a record: the same resize, wherever it was read. The result
/// is not part of it (a success later marked failed is the same resize), nor
/// are the fields a CRD may have pruned from the mirror.
type Key = (String, Timestamp, String, String);

fn key(e: &AutoResizeEvent) -> Key {
    (
        e.pvc_name.clone(),
        e.timestamp,
        e.previous_size.clone(),
        e.new_size.clone(),
    )
}

/// Of two copies of one record: a failure wins (a refused expansion is
/// marked after the fact), then the copy that kept more fields.
fn better(a: &AutoResizeEvent, b: &AutoResizeEvent) -> bool {
    let richness = |e: &AutoResizeEvent| {
        (
            e.result == ResizeResult::Failure,
            e.trigger.is_some() as u8 + e.filesystem_bytes.is_some() as u8,
        )
    };
    richness(b) > richness(a)
}

/// The union of record lists, one copy per resize, sorted by time.
pub fn merged(lists: &[&[AutoResizeEvent]]) -> Vec<AutoResizeEvent> {
    let mut by_key: BTreeMap<Key, AutoResizeEvent> = BTreeMap::new();
    for e in lists.iter().flat_map(|l| l.iter()) {
        match by_key.get_mut(&key(e)) {
            Some(kept) if better(kept, e) => *kept = e.clone(),
            Some(_) => {}
            None => {
                by_key.insert(key(e), e.clone());
            }
        }
    }
    let mut all: Vec<AutoResizeEvent> = by_key.into_values().collect();
    all.sort_by(|a, b| {
        a.timestamp
            .cmp(&b.timestamp)
            .then(a.pvc_name.cmp(&b.pvc_name))
    });
    all
}

/// Whether two lists hold the same records with the same results, ignoring
/// fields a CRD may have pruned from one of them.
pub fn same_records(a: &[AutoResizeEvent], b: &[AutoResizeEvent]) -> bool {
    let ids = |l: &[AutoResizeEvent]| l.iter().map(|e| (key(e), e.result)).collect::<Vec<_>>();
    ids(a) == ids(b)
}

/// The whole journal of a cluster: the owner's readable status entries and
/// every PVC's annotation records, and the PVCs whose annotation cannot be
/// read (their budget is unknown: no resize for them).
#[derive(Clone, Debug, Default)]
pub struct Journal {
    events: Vec<AutoResizeEvent>,
    /// Positions in `events` per PVC: every volume looks up its own records.
    by_pvc: HashMap<String, Vec<usize>>,
    pub unreadable: HashMap<String, String>,
}

impl Journal {
    pub fn of(source: &Source<'_>, pvcs: &[PersistentVolumeClaim]) -> Journal {
        let (status, _) = lenient::split(source.status_events());
        let mut recorded = Vec::new();
        let mut unreadable = HashMap::new();
        for pvc in pvcs {
            let Some(text) = pvc
                .metadata
                .annotations
                .as_ref()
                .and_then(|a| a.get(PVC_EVENTS_ANNOTATION))
            else {
                continue;
            };
            match parse_annotation(text) {
                Ok(list) => recorded.extend(list),
                Err(e) => {
                    unreadable.insert(pvc.metadata.name.clone().unwrap_or_default(), e);
                }
            }
        }
        Journal::indexed(merged(&[&status, &recorded]), unreadable)
    }

    fn indexed(events: Vec<AutoResizeEvent>, unreadable: HashMap<String, String>) -> Journal {
        let mut by_pvc: HashMap<String, Vec<usize>> = HashMap::new();
        for (i, e) in events.iter().enumerate() {
            by_pvc.entry(e.pvc_name.clone()).or_default().push(i);
        }
        Journal {
            events,
            by_pvc,
            unreadable,
        }
    }

    /// This journal and `records` (merged as [`merged`] does).
    pub fn with(self, records: &[AutoResizeEvent]) -> Journal {
        if records.is_empty() {
            return self;
        }
        Journal::indexed(merged(&[&self.events, records]), self.unreadable)
    }

    /// Every record, oldest first.
    pub fn events(&self) -> &[AutoResizeEvent] {
        &self.events
    }

    /// The records of one PVC, oldest first.
    pub fn of_pvc<'a, 'p>(
        &'a self,
        pvc: &'p str,
    ) -> impl Iterator<Item = &'a AutoResizeEvent> + use<'a, 'p> {
        self.by_pvc
            .get(pvc)
            .into_iter()
            .flatten()
            .map(|&i| &self.events[i])
    }

    /// The latest successful resize of `pvc`.
    pub fn latest_success(&self, pvc: &str) -> Option<&AutoResizeEvent> {
        self.of_pvc(pvc)
            .filter(|e| e.result == ResizeResult::Success)
            .max_by_key(|e| e.timestamp)
    }
}

/// Prunes to entries younger than 25 h (keeping the latest success of each
/// PVC that still `exists`: a PVC that is gone needs no cooldown), then to
/// `cap` entries, dropping old failures first. A success that still counts
/// toward a budget (younger than 24 h) is never dropped, even past the cap,
/// so the cap is sized from the volumes' budgets by the caller.
pub fn pruned(
    events: &[AutoResizeEvent],
    now: Timestamp,
    cap: usize,
    exists: impl Fn(&str) -> bool,
) -> Vec<AutoResizeEvent> {
    let latest = latest_successes(events);
    let mut kept: Vec<AutoResizeEvent> = events
        .iter()
        .filter(|e| {
            e.timestamp > now - RETENTION
                || exists(&e.pvc_name) && latest.get(&e.pvc_name) == Some(&key(e))
        })
        .cloned()
        .collect();
    // A parity grow counts toward no budget: past the cap it goes (unless
    // it is its PVC's latest resize), or a large cluster's parity grows
    // would grow the status without bound.
    let counts = |e: &AutoResizeEvent| {
        e.timestamp > now - BUDGET_WINDOW
            && e.trigger.as_deref() != Some(super::Trigger::Parity.as_str())
    };
    let protected = |e: &AutoResizeEvent| {
        e.result == ResizeResult::Success && (counts(e) || latest.get(&e.pvc_name) == Some(&key(e)))
    };
    while kept.len() > cap {
        let victim = kept
            .iter()
            .position(|e| e.result == ResizeResult::Failure)
            .or_else(|| kept.iter().position(|e| !protected(e)));
        match victim {
            Some(i) => {
                kept.remove(i);
            }
            None => break,
        }
    }
    kept
}

fn latest_successes(events: &[AutoResizeEvent]) -> HashMap<String, Key> {
    let mut latest: HashMap<String, &AutoResizeEvent> = HashMap::new();
    for e in events.iter().filter(|e| e.result == ResizeResult::Success) {
        let slot = latest.entry(e.pvc_name.clone()).or_insert(e);
        if e.timestamp > slot.timestamp {
            *slot = e;
        }
    }
    latest.into_iter().map(|(pvc, e)| (pvc, key(e))).collect()
}

/// The cap for `status.autoResizeEvents`: every PVC's full budget, plus room
/// for failures and for entries aging out of the window.
pub fn capacity(budgets: impl IntoIterator<Item = u32>) -> usize {
    budgets
        .into_iter()
        .map(|b| 2 * b as usize + 2)
        .sum::<usize>()
        .max(10)
}

/// Parses the PVC annotation; unreadable content yields an error, never an
/// empty history (that would reset the budget).
pub fn parse_annotation(value: &str) -> Result<Vec<AutoResizeEvent>, String> {
    serde_json::from_str(value).map_err(|e| {
        format!("annotation {PVC_EVENTS_ANNOTATION} is not a list of resize records: {e}")
    })
}

/// The annotation after recording `event`: the PVC's records of the last
/// 25 h plus its latest success, then `event`.
pub fn annotation_with(
    existing: &[AutoResizeEvent],
    event: &AutoResizeEvent,
    now: Timestamp,
) -> String {
    // The annotation is on the PVC itself: it exists.
    let mut list = pruned(existing, now, usize::MAX, |_| true);
    list.push(event.clone());
    serde_json::to_string(&list).unwrap_or_else(|_| "[]".to_string())
}

/// The annotation with `record` turned into a failure (the storage refused it).
pub fn annotation_marking_failed(existing: &[AutoResizeEvent], record: &AutoResizeEvent) -> String {
    let list: Vec<AutoResizeEvent> = existing
        .iter()
        .map(|e| {
            let mut e = e.clone();
            if key(&e) == key(record) {
                e.result = ResizeResult::Failure;
            }
            e
        })
        .collect();
    serde_json::to_string(&list).unwrap_or_else(|_| "[]".to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::cluster::VolumeType;

    fn ev(ts: &str, pvc: &str, result: ResizeResult) -> AutoResizeEvent {
        AutoResizeEvent {
            timestamp: ts.parse().unwrap(),
            instance_name: "pg-1".into(),
            pvc_name: pvc.into(),
            volume_type: VolumeType::Data,
            tablespace: None,
            previous_size: "1Gi".into(),
            new_size: "2Gi".into(),
            result,
            trigger: None,
            filesystem_bytes: None,
        }
    }

    fn now() -> Timestamp {
        "2026-11-26T12:00:00Z".parse().unwrap()
    }

    #[test]
    fn merging_keeps_one_copy_per_resize_preferring_failures_and_richer_copies() {
        let a = ev("2026-11-26T10:00:00Z", "p", ResizeResult::Success);
        let b = ev("2026-11-26T11:00:00Z", "p", ResizeResult::Success);
        let mut b_rich = b.clone();
        b_rich.trigger = Some("usage".into());
        b_rich.filesystem_bytes = Some(123);
        let mut a_failed = a.clone();
        a_failed.result = ResizeResult::Failure;
        // The mirror lost the fields the fork's CRD lacks; the PVC kept them.
        assert_eq!(
            merged(&[&[b.clone(), a.clone()], &[a.clone(), b_rich.clone()]]),
            vec![a.clone(), b_rich.clone()]
        );
        assert_eq!(
            merged(&[std::slice::from_ref(&a), std::slice::from_ref(&a_failed)]),
            vec![a_failed.clone()]
        );
        assert_eq!(merged(&[&[a_failed.clone(), a]]), vec![a_failed]);
    }

    #[test]
    fn pruning_drops_old_entries_then_failures_but_never_counting_successes() {
        let old = ev("2026-11-25T10:59:00Z", "p", ResizeResult::Success); // 25h01m
        let aged = ev("2026-11-25T11:30:00Z", "p", ResizeResult::Success); // 24.5h: kept unless capped
        let fail = ev("2026-11-26T09:00:00Z", "p", ResizeResult::Failure);
        let s1 = ev("2026-11-26T10:00:00Z", "p", ResizeResult::Success);
        let s2 = ev("2026-11-26T11:00:00Z", "q", ResizeResult::Success);
        let all = vec![old, aged.clone(), fail.clone(), s1.clone(), s2.clone()];
        assert_eq!(
            pruned(&all, now(), 10, |_| true),
            vec![aged.clone(), fail, s1.clone(), s2.clone()]
        );
        assert_eq!(
            pruned(&all, now(), 3, |_| true),
            vec![aged, s1.clone(), s2.clone()]
        );
        assert_eq!(
            pruned(&all, now(), 2, |_| true),
            vec![s1.clone(), s2.clone()]
        );
        assert_eq!(
            pruned(&all, now(), 1, |_| true),
            vec![s1, s2],
            "counting successes survive the cap"
        );
    }

    #[test]
    fn past_the_cap_parity_grows_go_but_each_pvcs_latest_stays() {
        let parity = |ts: &str, pvc: &str| {
            let mut e = ev(ts, pvc, ResizeResult::Success);
            e.trigger = Some("parity".into());
            e
        };
        let mut own = ev("2026-11-26T09:00:00Z", "p", ResizeResult::Success);
        own.trigger = Some("usage".into());
        let all = vec![
            parity("2026-11-26T08:00:00Z", "q"),
            own.clone(),
            parity("2026-11-26T09:30:00Z", "q"),
            parity("2026-11-26T10:00:00Z", "r"),
            parity("2026-11-26T10:30:00Z", "r"),
            parity("2026-11-26T11:00:00Z", "q"),
        ];
        assert_eq!(
            pruned(&all, now(), 3, |_| true),
            vec![own, all[4].clone(), all[5].clone()],
            "the counted resize and each PVC's latest"
        );
    }

    #[test]
    fn each_pvcs_latest_success_survives_retention() {
        let only = ev("2026-11-20T10:00:00Z", "p", ResizeResult::Success);
        let older = ev("2026-11-19T10:00:00Z", "p", ResizeResult::Success);
        assert_eq!(
            pruned(&[older, only.clone()], now(), 10, |_| true),
            vec![only.clone()],
            "cooldowns need the latest resize, however old"
        );
        assert_eq!(
            pruned(std::slice::from_ref(&only), now(), 0, |_| true),
            vec![only]
        );
    }

    #[test]
    fn records_of_pvcs_that_are_gone_go_once_they_count_toward_no_budget() {
        // pg-3 was rebuilt as pg-4 (a node drain with local storage): its
        // parity grow stays while it could count, and goes after 25 h.
        let gone_old = ev("2026-11-25T10:00:00Z", "pg-3", ResizeResult::Success);
        let gone_recent = ev("2026-11-26T10:00:00Z", "pg-5", ResizeResult::Success);
        let kept_old = ev("2026-11-20T10:00:00Z", "pg-1", ResizeResult::Success);
        let all = vec![kept_old.clone(), gone_old, gone_recent.clone()];
        let exists = |pvc: &str| pvc == "pg-1";
        assert_eq!(
            pruned(&all, now(), 100, exists),
            vec![kept_old, gone_recent],
            "the latest success of an existing PVC stays, however old"
        );
    }

    #[test]
    fn capacity_grows_with_budgets() {
        assert_eq!(capacity([3, 3, 3, 3]), 32);
        assert_eq!(capacity([10; 30]), 660);
        assert_eq!(capacity([]), 10);
    }

    #[test]
    fn annotation_round_trip_marking_and_errors() {
        let a = ev("2026-11-24T10:00:00Z", "p", ResizeResult::Failure);
        let b = ev("2026-11-26T10:00:00Z", "p", ResizeResult::Success);
        let text = annotation_with(&[a], &b, now());
        assert_eq!(parse_annotation(&text).unwrap(), vec![b.clone()]);
        let marked =
            parse_annotation(&annotation_marking_failed(std::slice::from_ref(&b), &b)).unwrap();
        assert_eq!(marked[0].result, ResizeResult::Failure);
        let err = parse_annotation("{oops").unwrap_err();
        assert!(err.contains(PVC_EVENTS_ANNOTATION));
    }
}
