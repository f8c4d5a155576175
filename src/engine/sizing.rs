//! How big the next size is (docs/reference/decision.md#10-size). Exact
//! integer arithmetic.

use super::forecast::MIN_SPAN;
use crate::api::resize::{ResizePolicy, Step};

pub const MIB: u64 = 1 << 20;

/// The horizon counts for at most this many times the history behind the
/// rate: a rate seen for 5 minutes predicts 20.
pub const HISTORY_MULTIPLE: f64 = 4.0;

/// Rounds up to a whole MiB, saturating at the largest whole MiB in a u64.
pub fn round_up_to_mib(bytes: u128) -> u64 {
    let rounded = bytes.div_ceil(MIB as u128) * MIB as u128;
    u64::try_from(rounded).unwrap_or(u64::MAX / MIB * MIB)
}

/// What a volume's forecast says: the rate, and the history behind it.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Growth {
    pub bytes_per_second: Option<f64>,
    pub history_seconds: Option<f64>,
}

impl Growth {
    pub fn of(stats: &crate::api::report::VolumeStats) -> Growth {
        Growth {
            bytes_per_second: stats.growth_bytes_per_second,
            history_seconds: stats.history_seconds,
        }
    }

    /// The history that bounds the horizon: as reported, else the shortest
    /// a forecast has (a rate without it comes from a hand-written snapshot
    /// or an older manager). Never negative; NaN counts as absent.
    pub fn history(&self) -> f64 {
        self.history_seconds
            .filter(|h| !h.is_nan())
            .unwrap_or(MIN_SPAN.as_secs_f64())
            .max(0.0)
    }

    /// Seconds of growth the horizon buys: `min(horizon, 4 × history)`.
    pub fn horizon_seconds(&self, horizon: std::time::Duration) -> f64 {
        horizon.as_secs_f64().min(HISTORY_MULTIPLE * self.history())
    }
}

/// The increment: a percentage clamped to [minStep, maxStep], or the
/// absolute step; with `horizon` and a forecast, at least the growth
/// expected over `min(horizon, 4 × historySeconds)`, that growth capped at
/// maxStep (a forecast can be wild; the configured step is never cut by it).
pub fn increment(current: u64, policy: &ResizePolicy, growth: Growth) -> u128 {
    let step = match policy.step {
        Step::Percent(pct) => {
            let raw = current as u128 * pct as u128 / 100;
            raw.max(policy.min_step as u128)
                .min(policy.max_step as u128)
        }
        Step::Absolute(bytes) => bytes as u128,
    };
    let forecast = policy
        .horizon
        .zip(growth.bytes_per_second.filter(|g| *g > 0.0));
    match forecast {
        Some((horizon, rate)) => {
            // f64 -> u128 saturates; the cap keeps it sane anyway.
            let expected = (rate * growth.horizon_seconds(horizon)).ceil() as u128;
            step.max(expected.min(policy.max_step as u128))
        }
        None => step,
    }
}

/// `current + increment`, rounded up to a whole MiB, then capped at `limit`.
pub fn new_size(current: u64, policy: &ResizePolicy, growth: Growth) -> u64 {
    let grown = round_up_to_mib(current as u128 + increment(current, policy, growth));
    match policy.limit {
        Some(limit) => grown.min(limit),
        None => grown,
    }
}
