//! How big the next size is (docs/reference/decision.md#10-size). Exact
//! integer arithmetic.

use crate::api::resize::{ResizePolicy, Step};

pub const MIB: u64 = 1 << 20;

/// Rounds up to a whole MiB, saturating at the largest whole MiB in a u64.
pub fn round_up_to_mib(bytes: u128) -> u64 {
    let rounded = bytes.div_ceil(MIB as u128) * MIB as u128;
    u64::try_from(rounded).unwrap_or(u64::MAX / MIB * MIB)
}

/// The increment: a percentage clamped to [minStep, maxStep], or the
/// absolute step; with `horizon` and a forecast, at least the growth
/// expected over the horizon, that growth capped at maxStep (a forecast can
/// be wild; the configured step is never cut by it).
pub fn increment(
    current: u64,
    policy: &ResizePolicy,
    growth_bytes_per_second: Option<f64>,
) -> u128 {
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
        .zip(growth_bytes_per_second.filter(|g| *g > 0.0));
    match forecast {
        Some((horizon, rate)) => {
            // f64 -> u128 saturates; the cap keeps it sane anyway.
            let expected = (rate * horizon.as_secs_f64()).ceil() as u128;
            step.max(expected.min(policy.max_step as u128))
        }
        None => step,
    }
}

/// `current + increment`, rounded up to a whole MiB, then capped at `limit`.
pub fn new_size(current: u64, policy: &ResizePolicy, growth_bytes_per_second: Option<f64>) -> u64 {
    let grown =
        round_up_to_mib(current as u128 + increment(current, policy, growth_bytes_per_second));
    match policy.limit {
        Some(limit) => grown.min(limit),
        None => grown,
    }
}
