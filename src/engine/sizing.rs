//! How big the next size is (SPEC §3 step 7). Exact integer arithmetic.

use crate::api::resize::{ResizePolicy, Step};

pub const MIB: u64 = 1 << 20;

/// Rounds up to a whole MiB, saturating at the largest whole MiB in a u64.
pub fn round_up_to_mib(bytes: u128) -> u64 {
    let rounded = bytes.div_ceil(MIB as u128) * MIB as u128;
    u64::try_from(rounded).unwrap_or(u64::MAX / MIB * MIB)
}

/// `current + step` (percentage steps clamped to [minStep, maxStep]),
/// rounded up to a whole MiB, then capped at `limit`.
pub fn new_size(current: u64, policy: &ResizePolicy) -> u64 {
    let step = match policy.step {
        Step::Percent(pct) => {
            let raw = current as u128 * pct as u128 / 100;
            raw.max(policy.min_step as u128)
                .min(policy.max_step as u128)
        }
        Step::Absolute(bytes) => bytes as u128,
    };
    let grown = round_up_to_mib(current as u128 + step);
    match policy.limit {
        Some(limit) => grown.min(limit),
        None => grown,
    }
}
