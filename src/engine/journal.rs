//! The resize journal: `status.autoResizeEvents` mirrored from the records
//! each resize writes atomically on its PVC. Pure functions over event lists.

use super::budget::BUDGET_WINDOW;
use crate::api::cluster::{AutoResizeEvent, ResizeResult};
use jiff::{SignedDuration, Timestamp};
use std::collections::HashSet;

/// PVC annotation holding the PVC's recent successful resizes, written in the
/// same patch that changes the size, so the record cannot be lost.
pub const PVC_EVENTS_ANNOTATION: &str = "autoresize.cnpg.io/events";

/// Entries older than this may be pruned (they no longer count).
pub const RETENTION: SignedDuration = SignedDuration::from_hours(25);

/// Identity of an event: the same resize is recorded once, wherever it was read.
fn key(e: &AutoResizeEvent) -> (String, String, String, String, bool) {
    (
        e.pvc_name.clone(),
        e.timestamp.clone(),
        e.previous_size.clone(),
        e.new_size.clone(),
        e.result == ResizeResult::Success,
    )
}

/// Events in `extra` that `status` lacks, in order.
pub fn missing_from<'a>(
    status: &[AutoResizeEvent],
    extra: &'a [AutoResizeEvent],
) -> Vec<&'a AutoResizeEvent> {
    let known: HashSet<_> = status.iter().map(key).collect();
    let mut seen = HashSet::new();
    extra
        .iter()
        .filter(|e| !known.contains(&key(e)) && seen.insert(key(e)))
        .collect()
}

/// `status` plus what `extra` adds, sorted by time (unreadable times first).
pub fn merged(status: &[AutoResizeEvent], extra: &[AutoResizeEvent]) -> Vec<AutoResizeEvent> {
    let mut all: Vec<AutoResizeEvent> = status.to_vec();
    all.extend(missing_from(status, extra).into_iter().cloned());
    all.sort_by_key(|e| e.timestamp.parse::<Timestamp>().ok());
    all
}

/// Prunes to entries younger than 25 h, then to `cap` entries, dropping old
/// failures first. A success that still counts toward a budget (younger
/// than 24 h) is never dropped, even past the cap, so the cap is sized from
/// the volumes' budgets by the caller, not fixed.
pub fn pruned(events: &[AutoResizeEvent], now: Timestamp, cap: usize) -> Vec<AutoResizeEvent> {
    let time = |e: &AutoResizeEvent| e.timestamp.parse::<Timestamp>().ok();
    // Unreadable timestamps are kept: they count toward the budget.
    let mut kept: Vec<AutoResizeEvent> = events
        .iter()
        .filter(|e| time(e).is_none_or(|t| t > now - RETENTION))
        .cloned()
        .collect();
    let counts = |e: &AutoResizeEvent| {
        e.result == ResizeResult::Success && time(e).is_none_or(|t| t > now - BUDGET_WINDOW)
    };
    while kept.len() > cap {
        let victim = kept
            .iter()
            .position(|e| e.result == ResizeResult::Failure)
            .or_else(|| kept.iter().position(|e| !counts(e)));
        match victim {
            Some(i) => {
                kept.remove(i);
            }
            None => break,
        }
    }
    kept
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
        format!("annotation {PVC_EVENTS_ANNOTATION} is not a list of resize events: {e}")
    })
}

/// The annotation after recording `event`: the PVC's successes of the last 25 h.
pub fn annotation_with(
    existing: &[AutoResizeEvent],
    event: &AutoResizeEvent,
    now: Timestamp,
) -> String {
    let mut list: Vec<AutoResizeEvent> = existing
        .iter()
        .filter(|e| {
            e.timestamp
                .parse::<Timestamp>()
                .ok()
                .is_none_or(|t| t > now - RETENTION)
        })
        .cloned()
        .collect();
    list.push(event.clone());
    serde_json::to_string(&list).unwrap_or_else(|_| "[]".to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::cluster::VolumeType;

    fn ev(ts: &str, pvc: &str, result: ResizeResult) -> AutoResizeEvent {
        AutoResizeEvent {
            timestamp: ts.to_string(),
            instance_name: "pg-1".into(),
            pvc_name: pvc.into(),
            volume_type: VolumeType::Data,
            tablespace: None,
            previous_size: "1Gi".into(),
            new_size: "2Gi".into(),
            result,
        }
    }

    fn now() -> Timestamp {
        "2026-11-26T12:00:00Z".parse().unwrap()
    }

    #[test]
    fn merging_adds_each_missing_event_once() {
        let a = ev("2026-11-26T10:00:00Z", "p", ResizeResult::Success);
        let b = ev("2026-11-26T11:00:00Z", "p", ResizeResult::Success);
        let status = vec![b.clone()];
        let extra = vec![a.clone(), b.clone(), a.clone()];
        assert_eq!(missing_from(&status, &extra), vec![&a]);
        assert_eq!(merged(&status, &extra), vec![a, b]);
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
            pruned(&all, now(), 10),
            vec![aged.clone(), fail, s1.clone(), s2.clone()]
        );
        assert_eq!(pruned(&all, now(), 3), vec![aged, s1.clone(), s2.clone()]);
        assert_eq!(pruned(&all, now(), 2), vec![s1.clone(), s2.clone()]);
        assert_eq!(
            pruned(&all, now(), 1),
            vec![s1, s2],
            "counting successes survive the cap"
        );
    }

    #[test]
    fn capacity_grows_with_budgets() {
        assert_eq!(capacity([3, 3, 3, 3]), 32);
        assert_eq!(capacity([10; 30]), 660);
        assert_eq!(capacity([]), 10);
    }

    #[test]
    fn annotation_round_trip_and_errors() {
        let a = ev("2026-11-24T10:00:00Z", "p", ResizeResult::Success);
        let b = ev("2026-11-26T10:00:00Z", "p", ResizeResult::Success);
        let text = annotation_with(&[a], &b, now());
        assert_eq!(parse_annotation(&text).unwrap(), vec![b]);
        let err = parse_annotation("{oops").unwrap_err();
        assert!(err.contains(PVC_EVENTS_ANNOTATION));
    }
}
