//! Which Kubernetes Events a planning pass should emit
//! (docs/reference/events.md), with aggregation: a lasting condition is
//! announced once when it starts, then at most once an hour, never on every
//! pass.

use crate::api::resize::Mode;
use crate::engine::{Action, Decision, Reason, Trigger, WarningCode};
use std::collections::HashMap;
use std::time::{Duration, Instant};

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Severity {
    Normal,
    Warning,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Notice {
    pub severity: Severity,
    /// The Event reason, e.g. `AutoResizeRateLimited`.
    pub reason: &'static str,
    pub message: String,
    pub pvc: String,
}

pub const REPEAT_AFTER: Duration = Duration::from_secs(3600);

/// Event reason for a decision that did not resize, if it deserves one.
pub fn blocked_event_reason(reason: Reason) -> Option<&'static str> {
    match reason {
        Reason::RateLimit => Some("AutoResizeRateLimited"),
        Reason::AtLimit => Some("AutoResizeAtLimit"),
        Reason::SingleVolumeNoAck
        | Reason::ArchiveUnhealthy
        | Reason::PendingWalExceeded
        | Reason::SlotRetentionExceeded => Some("AutoResizeBlocked"),
        Reason::InvalidConfig => Some("AutoResizeInvalidConfig"),
        Reason::ExpansionFailed => Some("AutoResizeFailed"),
        // A cooldown is the configuration working as asked: metric and status only.
        Reason::NoStatus | Reason::ResizeInProgress | Reason::NotTriggered | Reason::Cooldown => {
            None
        }
    }
}

/// The standing conditions a decision reports (not the resize itself).
pub fn conditions_of(d: &Decision) -> Vec<Notice> {
    let mut out = Vec::new();
    let pvc = d.volume.pvc.clone();
    if let Some(reason) = d.reason.filter(|_| d.action != Action::Resize) {
        if let Some(event) = blocked_event_reason(reason) {
            out.push(Notice {
                severity: Severity::Warning,
                reason: event,
                message: format!("{} ({}): {}", pvc, reason, d.message),
                pvc: pvc.clone(),
            });
        }
    }
    if d.action == Action::Resize && d.mode == Mode::Recommend {
        out.push(Notice {
            severity: Severity::Normal,
            reason: "AutoResizeRecommended",
            message: d.message.clone(),
            pvc: pvc.clone(),
        });
    }
    // A refused expansion is announced as AutoResizeFailed, not as stuck.
    if d.stuck && d.reason != Some(Reason::ExpansionFailed) {
        out.push(Notice {
            severity: Severity::Warning,
            reason: "AutoResizeStuck",
            message: format!(
                "{pvc}: resize in flight for too long; check the CSI driver: {}",
                d.message
            ),
            pvc: pvc.clone(),
        });
    }
    out
}

/// A `no_status` that has lasted longer than `--stuck-resize-after`.
pub fn no_status(d: &Decision, lasted: Duration) -> Notice {
    Notice {
        severity: Severity::Warning,
        reason: "AutoResizeNoStatus",
        message: format!(
            "{}: no usable status from instance {} for {}s: {}",
            d.volume.pvc,
            d.volume.instance,
            lasted.as_secs(),
            d.message
        ),
        pvc: d.volume.pvc.clone(),
    }
}

/// Another field manager raised a PVC's request without a record of ours.
pub fn foreign_resize(f: &crate::engine::ForeignResize) -> Notice {
    use crate::api::quantity::format_bytes;
    Notice {
        severity: Severity::Warning,
        reason: "AutoResizeForeignResizer",
        message: format!(
            "{}: field manager {:?} raised the request to {} (created at {}) without a record of cnpg-autoresize; two resizers on one volume can double a resize: run the CloudNativePG fork with its own resizer off (docs/reference/operations.md#beside-the-forks-own-resizer)",
            f.pvc,
            f.manager,
            format_bytes(f.request),
            format_bytes(f.created_at)
        ),
        pvc: f.pvc.clone(),
    }
}

/// The leader's clock is more than a minute off the API server's.
pub fn clock_skew(leader: &str, skew_seconds: f64) -> Notice {
    let direction = if skew_seconds > 0.0 {
        "ahead of"
    } else {
        "behind"
    };
    Notice {
        severity: Severity::Warning,
        reason: "AutoResizeClockSkew",
        message: format!(
            "the clock of the leader {leader} is {:.0}s {direction} the API server's (its Date header): resize records, budgets and cooldowns are dated by the leader's clock; fix time synchronisation (NTP) on its node",
            skew_seconds.abs()
        ),
        pvc: String::new(),
    }
}

/// What a successful resize announces.
pub fn resized(d: &Decision) -> Vec<Notice> {
    let pvc = d.volume.pvc.clone();
    let trigger = d.trigger.map(Trigger::as_str).unwrap_or("?");
    let mut out = vec![Notice {
        severity: Severity::Normal,
        reason: "AutoResizeSuccess",
        message: format!("{} (trigger {trigger})", d.message),
        pvc: pvc.clone(),
    }];
    if d.warnings.contains(&WarningCode::WalHealthUnavailable) {
        out.push(Notice {
            severity: Severity::Warning,
            reason: "AutoResizeWALHealthUnavailable",
            message: format!("{pvc}: resized without WAL health verification (fail-open): WAL health of instance {} is unavailable", d.volume.instance),
            pvc: pvc.clone(),
        });
    }
    if d.wal_risk_alert {
        out.push(Notice {
            severity: Severity::Warning,
            reason: "AutoResizeWALRisk",
            message: format!(
                "{pvc}: a volume holding WAL grew; check WAL archiving and replication slots ({})",
                d.message
            ),
            pvc,
        });
    }
    out
}

/// A condition that clears is remembered this long: a volume hovering at
/// its threshold re-enters the same condition again and again, and that is
/// one story, not a new Event each time.
pub const FORGET_AFTER: Duration = Duration::from_secs(5 * 60);

/// Remembers which conditions were announced, and when last seen.
#[derive(Default)]
pub struct Aggregator {
    announced: HashMap<(String, &'static str), (Instant, Instant)>,
}

impl Aggregator {
    /// The notices among `current` to emit now. A condition absent from
    /// `current` for longer than [`FORGET_AFTER`] is forgotten, so it is
    /// announced again if it returns after that.
    pub fn filter(&mut self, current: Vec<Notice>, now: Instant) -> Vec<Notice> {
        let keys: std::collections::HashSet<_> =
            current.iter().map(|n| (n.pvc.clone(), n.reason)).collect();
        self.announced
            .retain(|k, (_, seen)| keys.contains(k) || now.duration_since(*seen) < FORGET_AFTER);
        current
            .into_iter()
            .filter(|n| {
                let key = (n.pvc.clone(), n.reason);
                match self.announced.get_mut(&key) {
                    Some((at, seen)) if now.duration_since(*at) < REPEAT_AFTER => {
                        *seen = now;
                        false
                    }
                    _ => {
                        self.announced.insert(key, (now, now));
                        true
                    }
                }
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn notice(pvc: &str, reason: &'static str) -> Notice {
        Notice {
            severity: Severity::Warning,
            reason,
            message: format!("{pvc} {reason}"),
            pvc: pvc.into(),
        }
    }

    #[test]
    fn a_lasting_condition_is_announced_once_an_hour() {
        let mut agg = Aggregator::default();
        let t0 = Instant::now();
        let rate = || vec![notice("p", "AutoResizeRateLimited")];
        assert_eq!(agg.filter(rate(), t0).len(), 1);
        assert_eq!(agg.filter(rate(), t0 + Duration::from_secs(5)).len(), 0);
        assert_eq!(agg.filter(rate(), t0 + Duration::from_secs(3599)).len(), 0);
        assert_eq!(agg.filter(rate(), t0 + Duration::from_secs(3601)).len(), 1);
    }

    #[test]
    fn a_condition_that_clears_and_returns_is_announced_again_only_after_a_while() {
        let mut agg = Aggregator::default();
        let t0 = Instant::now();
        let at = |s: u64| t0 + Duration::from_secs(s);
        let blocked = || vec![notice("p", "AutoResizeBlocked")];
        assert_eq!(agg.filter(blocked(), t0).len(), 1);
        // A volume hovering at its threshold: in, out, in again.
        for s in 1..20 {
            let current = if s % 2 == 0 { blocked() } else { vec![] };
            assert_eq!(agg.filter(current, at(s)).len(), 0, "flap at {s}s");
        }
        // Gone for longer than the memory window: a new story.
        assert_eq!(agg.filter(vec![], at(20)).len(), 0);
        let back = at(20) + FORGET_AFTER + Duration::from_secs(1);
        assert_eq!(agg.filter(vec![], back).len(), 0);
        assert_eq!(agg.filter(blocked(), back).len(), 1);
        // Another PVC or another reason is its own condition.
        let both = vec![
            notice("p", "AutoResizeBlocked"),
            notice("q", "AutoResizeBlocked"),
            notice("p", "AutoResizeAtLimit"),
        ];
        assert_eq!(agg.filter(both, back).len(), 2);
    }

    #[test]
    fn reasons_map_to_the_spec_events() {
        assert_eq!(
            blocked_event_reason(Reason::RateLimit),
            Some("AutoResizeRateLimited")
        );
        assert_eq!(
            blocked_event_reason(Reason::AtLimit),
            Some("AutoResizeAtLimit")
        );
        assert_eq!(
            blocked_event_reason(Reason::ArchiveUnhealthy),
            Some("AutoResizeBlocked")
        );
        assert_eq!(
            blocked_event_reason(Reason::SlotRetentionExceeded),
            Some("AutoResizeBlocked")
        );
        assert_eq!(
            blocked_event_reason(Reason::InvalidConfig),
            Some("AutoResizeInvalidConfig")
        );
        assert_eq!(blocked_event_reason(Reason::NotTriggered), None);
    }
}
