//! The per-PVC daily budget, derived only from `status.autoResizeEvents`.

use crate::api::cluster::{AutoResizeEvent, ResizeResult};
use jiff::{SignedDuration, Timestamp};

/// Budgets count resizes in a rolling window, not per calendar day.
pub const BUDGET_WINDOW: SignedDuration = SignedDuration::from_hours(24);

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Budget {
    /// Successful resizes of the PVC inside the window.
    pub used: u32,
    pub remaining: u32,
    /// When the window next frees a slot, if none is left. None when the
    /// budget is 0 by configuration (it never frees) or is not exhausted.
    pub next_free_at: Option<Timestamp>,
}

/// Counts successful resizes of `pvc` with `timestamp > now - 24h`. An entry
/// whose timestamp cannot be read counts as recent: spending one resize too
/// few is safe, one too many is not.
pub fn budget_for(
    events: &[AutoResizeEvent],
    pvc: &str,
    max_actions: u32,
    now: Timestamp,
) -> Budget {
    let window_start = now - BUDGET_WINDOW;
    let mut counted: Vec<Option<Timestamp>> = events
        .iter()
        .filter(|e| e.result == ResizeResult::Success && e.pvc_name == pvc)
        .map(|e| e.timestamp.parse::<Timestamp>().ok())
        .filter(|t| t.is_none_or(|t| t > window_start))
        .collect();
    let used = u32::try_from(counted.len()).unwrap_or(u32::MAX);
    let remaining = max_actions.saturating_sub(used);
    let next_free_at = if remaining == 0 && max_actions > 0 {
        // Unreadable timestamps (None) sort first and never expire; the
        // slot frees when the (used - max + 1)-th oldest entry leaves.
        counted.sort();
        counted
            .get((used - max_actions) as usize)
            .copied()
            .flatten()
            .map(|t| t + BUDGET_WINDOW)
    } else {
        None
    };
    Budget {
        used,
        remaining,
        next_free_at,
    }
}
