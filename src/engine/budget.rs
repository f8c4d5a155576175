//! The per-PVC daily budget and the cooldown, derived only from the durable
//! resize records (rules 6 and 7 of docs/reference/decision.md), never from
//! process memory.

use super::journal::Journal;
use super::Trigger;
use crate::api::cluster::{AutoResizeEvent, ResizeResult};
use jiff::{SignedDuration, Timestamp};
use std::time::Duration;

/// Budgets count resizes in a rolling window, not per calendar day.
pub const BUDGET_WINDOW: SignedDuration = SignedDuration::from_hours(24);

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Budget {
    /// Trigger-driven successful resizes of the PVC inside the window.
    pub used: u32,
    pub remaining: u32,
    /// When the window next frees a slot, if none is left. None when the
    /// budget is 0 by configuration (it never frees) or is not exhausted.
    pub next_free_at: Option<Timestamp>,
}

/// Counts successful resizes of `pvc` with `timestamp > now - 24h`; size
/// parity grows use no budget.
pub fn budget_for(
    journal: &Journal,
    pvc: &str,
    max_actions: u32,
    now: Timestamp,
    refused: Option<&AutoResizeEvent>,
) -> Budget {
    let window_start = now - BUDGET_WINDOW;
    let mut counted: Vec<Timestamp> = journal
        .of_pvc(pvc)
        .filter(|e| e.result == ResizeResult::Success)
        // The storage refused it: its record is being marked a failure.
        .filter(|e| Some(*e) != refused)
        .filter(|e| e.trigger.as_deref() != Some(Trigger::Parity.as_str()))
        .map(|e| e.timestamp)
        .filter(|t| *t > window_start)
        .collect();
    let used = u32::try_from(counted.len()).unwrap_or(u32::MAX);
    let remaining = max_actions.saturating_sub(used);
    let next_free_at = if remaining == 0 && max_actions > 0 {
        // The slot frees when the (used - max + 1)-th oldest entry leaves.
        counted.sort();
        counted
            .get((used - max_actions) as usize)
            .map(|t| *t + BUDGET_WINDOW)
    } else {
        None
    };
    Budget {
        used,
        remaining,
        next_free_at,
    }
}

/// When the cooldown after the PVC's latest successful resize ends, if it
/// has not yet.
pub fn cooldown_until(
    journal: &Journal,
    pvc: &str,
    cooldown: Duration,
    now: Timestamp,
) -> Option<Timestamp> {
    let latest = journal.latest_success(pvc)?;
    let end = latest
        .timestamp
        .checked_add(SignedDuration::try_from(cooldown).ok()?)
        .ok()?;
    (now < end).then_some(end)
}
