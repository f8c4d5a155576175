//! The rules of docs/reference/decision.md#the-rules-in-order, one function
//! each, applied in that order to one volume. Each rule either settles the
//! decision (returns a [`Verdict`]) or lets the next one look.

use super::budget::{budget_for, cooldown_until, Budget};
use super::inflight::{filesystem_in_flight, Claim};
use super::journal::Journal;
use super::sizing::{new_size, Growth};
use super::wal::{wal_safety, WalVerdict};
use super::{
    Action, Decision, PerKind, PlanInput, Reason, Refusal, Thresholds, Trigger, VolumeRef,
    WarningCode,
};
use crate::api::cluster::{AutoResizeEvent, VolumeType};
use crate::api::duration::format_go_duration;
use crate::api::quantity::format_bytes;
use crate::api::report::{InstanceReport, VolumeStats};
use crate::api::resize::{parse_non_negative_bytes, Mode, ResizePolicy, Step};
use crate::api::validation::wal_guarded;

/// What a rule concluded: the action, the reason code, and a sentence.
pub(super) struct Verdict(Action, Option<Reason>, String);

/// What one planning pass shares between volumes.
pub(super) struct Pass<'a> {
    pub input: &'a PlanInput<'a>,
    pub journal: &'a Journal,
    /// The largest capacity among the cluster's Bound PVCs, per role (and tablespace).
    pub largest: &'a PerKind<u64>,
    /// Which inactive slots are CloudNativePG's (rule 9).
    pub cnpg_slots: super::CnpgSlots,
}

/// One kind of volume's configuration, resolved once per pass.
pub(super) struct Config {
    enabled: bool,
    resolved: Result<ResizePolicy, String>,
}

impl Config {
    pub(super) fn of(config: &crate::api::source::VolumeConfig<'_>) -> Config {
        Config {
            enabled: config.resize.is_enabled(),
            resolved: config.resize.resolve(&config.path).map_err(|errors| {
                errors
                    .iter()
                    .map(|e| e.to_string())
                    .collect::<Vec<_>>()
                    .join("; ")
            }),
        }
    }
}

/// Everything known about one volume once its configuration reads.
struct Facts<'a> {
    volume: &'a VolumeRef,
    claim: &'a Claim<'a>,
    report: Option<&'a InstanceReport>,
    policy: ResizePolicy,
    current: u64,
    /// Our latest successful resize of the PVC, when it set the request the
    /// PVC still has (rules 3 and 4 look at it).
    own_record: Option<&'a AutoResizeEvent>,
    budget: Budget,
    single_volume_data: bool,
}

pub(super) fn decide_volume(
    pass: &Pass<'_>,
    config: &Config,
    volume: VolumeRef,
    claim: &Claim<'_>,
    report: Option<&InstanceReport>,
) -> Option<Decision> {
    if !config.enabled {
        return None;
    }
    // The rules borrow the volume; the decision takes it in `finish`.
    let mut d = Decision::unnamed(volume.volume_type);
    // 0. The configuration, the PVC and its records must be readable; never guess.
    let facts = match readable(pass, &volume, claim, report, &config.resolved) {
        Ok(facts) => facts,
        Err(message) => {
            return Some(d.finish(
                volume,
                Verdict(Action::Blocked, Some(Reason::InvalidConfig), message),
            ));
        }
    };
    d.current_size = Some(facts.current);
    d.at_limit = facts
        .policy
        .limit
        .is_some_and(|limit| facts.current >= limit);
    d.budget_remaining = Some(facts.budget.remaining);
    d.next_action_at = facts.budget.next_free_at;
    d.mode = facts.policy.mode;
    d.thresholds = Some(Thresholds::of(&facts.policy));
    // Whatever rule resizes records the filesystem total it saw (if any),
    // so the next pass can tell the resize is still in flight.
    d.filesystem_bytes = facts
        .report
        .and_then(|r| r.stats(volume.volume_type, volume.tablespace.as_deref()))
        .map(VolumeStats::size_bytes);

    let verdict = settle(pass, &facts, &mut d);
    Some(d.finish(volume, verdict))
}

/// Rules 1 to 11 in order; the first that settles the decision wins.
fn settle(pass: &Pass<'_>, f: &Facts<'_>, d: &mut Decision) -> Verdict {
    if let Some(v) = parity(pass, f, d) {
        return v;
    }
    let stats = match fresh_stats(pass, f.volume, f.report) {
        Ok(stats) => stats,
        Err(v) => return v,
    };
    if let Some(v) = refused(f, d).or_else(|| in_flight(pass, f, stats, d)) {
        return v;
    }
    let (trigger, why) = match triggered(&f.policy, stats) {
        Ok(fired) => fired,
        Err(v) => return v,
    };
    d.trigger = Some(trigger);
    if let Some(v) = cooldown(pass, f, &why, d)
        .or_else(|| budget(f, &why))
        .or_else(|| limit(f, &why))
    {
        return v;
    }
    if let Some(v) = f.report.and_then(|r| wal(pass, f, r, &why, d)) {
        return v;
    }
    size(f, stats, &why, d)
}

/// Rule 0: the configuration resolves; the request and the PVC's records read.
fn readable<'a>(
    pass: &'a Pass<'_>,
    volume: &'a VolumeRef,
    claim: &'a Claim<'a>,
    report: Option<&'a InstanceReport>,
    resolved: &Result<ResizePolicy, String>,
) -> Result<Facts<'a>, String> {
    let policy = resolved.clone()?;
    let current = claim.requested.clone()?;
    if let Some(error) = pass.journal.unreadable.get(&volume.pvc) {
        return Err(format!(
            "the resize record on the PVC is unreadable, so its budget is unknown: {error}"
        ));
    }
    let own_record = pass
        .journal
        .latest_success(&volume.pvc)
        .filter(|e| parse_non_negative_bytes(&e.new_size).ok() == Some(current));
    let budget = budget_for(
        pass.journal,
        &volume.pvc,
        policy.max_actions_per_day,
        pass.input.now,
        claim.is_refused().then_some(own_record).flatten(),
    );
    Ok(Facts {
        volume,
        claim,
        report,
        current,
        own_record,
        budget,
        single_volume_data: volume.volume_type == VolumeType::Data
            && pass.input.source.single_volume(),
        policy,
    })
}

/// Rule 1: a PVC smaller than its peers (a replica CNPG created from
/// `spec.storage.size`) grows to the largest capacity at once — before its
/// instance reports anything, without a trigger, without budget. It is a
/// write like any other: `maxActionsPerDay: 0` stops it, Recommend reports it.
fn parity(pass: &Pass<'_>, f: &Facts<'_>, d: &mut Decision) -> Option<Verdict> {
    let largest = *pass
        .largest
        .get(f.volume.volume_type, f.volume.tablespace.as_deref())?;
    if f.current >= largest || !f.claim.is_bound() || f.claim.is_refused() {
        return None;
    }
    if f.claim.in_flight(f.current, f.own_record).is_some() {
        return None;
    }
    let target = f.policy.limit.map_or(largest, |limit| largest.min(limit));
    if target <= f.current {
        return None;
    }
    let gap = format!(
        "{} requests {} while the cluster's largest {} volume has {}",
        f.volume.pvc,
        format_bytes(f.current),
        f.volume.volume_type.as_str(),
        format_bytes(target)
    );
    if f.policy.max_actions_per_day == 0 {
        return Some(Verdict(
            Action::Blocked,
            Some(Reason::RateLimit),
            format!("{gap}, but maxActionsPerDay is 0: auto-resize is disabled, size parity too"),
        ));
    }
    d.trigger = Some(Trigger::Parity);
    d.warnings.push(WarningCode::SizeParity);
    d.new_size = Some(target);
    let verb = match f.policy.mode {
        Mode::Standard => "growing it to match",
        Mode::Recommend => "recommending (mode Recommend, nothing is patched) to grow it to match",
    };
    Some(Verdict(
        Action::Resize,
        None,
        format!("{gap}: {verb} (size parity, no budget used)"),
    ))
}

/// Rule 2: a report from the instance, younger than 3 probe intervals on the
/// clock of the instance that took it.
fn fresh_stats<'r>(
    pass: &Pass<'_>,
    volume: &VolumeRef,
    report: Option<&'r InstanceReport>,
) -> Result<&'r VolumeStats, Verdict> {
    let no_status = |message: String| Verdict(Action::None, Some(Reason::NoStatus), message);
    let Some(report) = report else {
        return Err(no_status(format!(
            "no status from instance {}",
            volume.instance
        )));
    };
    let age = match (report.age_seconds, report.last_updated) {
        (Some(age), _) => Some(age),
        (None, Some(taken)) => Some(pass.input.now.duration_since(taken).as_secs_f64()),
        (None, None) => None,
    };
    let max_age = pass.input.settings.status_max_age.as_secs_f64();
    if let Some(age) = age.filter(|a| *a > max_age) {
        return Err(no_status(format!(
            "the status from instance {} is {age:.1}s old (trusted up to {max_age:.0}s)",
            volume.instance
        )));
    }
    report
        .stats(volume.volume_type, volume.tablespace.as_deref())
        .ok_or_else(|| {
            no_status(format!(
                "instance {} reports no figures for its {} volume",
                volume.instance,
                volume.volume_type.as_str()
            ))
        })
}

/// Rule 3: the storage refused the expansion. Nothing is retried until the
/// request changes; the record of that resize becomes a failure.
fn refused(f: &Facts<'_>, d: &mut Decision) -> Option<Verdict> {
    let said = f.claim.refusal()?;
    d.stuck = true;
    d.refusal = Some(Refusal {
        record: f.own_record.cloned(),
        message: said.clone(),
    });
    Some(Verdict(
        Action::Blocked,
        Some(Reason::ExpansionFailed),
        format!(
            "the storage refused to expand {} to {}: {said}; not retried until the request changes",
            f.volume.pvc,
            format_bytes(f.current)
        ),
    ))
}

/// Rule 4: a resize is still under way.
fn in_flight(
    pass: &Pass<'_>,
    f: &Facts<'_>,
    stats: &VolumeStats,
    d: &mut Decision,
) -> Option<Verdict> {
    let flight = f
        .claim
        .in_flight(f.current, f.own_record)
        .or_else(|| filesystem_in_flight(f.own_record, stats))?;
    d.stuck = flight.since.is_some_and(|since| {
        pass.input.now.duration_since(since) > pass.input.settings.stuck_after
    });
    Some(Verdict(
        Action::None,
        Some(Reason::ResizeInProgress),
        format!(
            "a resize of {} is in flight: {}",
            f.volume.pvc, flight.evidence
        ),
    ))
}

/// Rule 5: which trigger fired (all strict), with a sentence about it.
fn triggered(policy: &ResizePolicy, stats: &VolumeStats) -> Result<(Trigger, String), Verdict> {
    let pct = stats.percent_used_rounded();
    if stats.percent_used_exceeds(policy.usage_threshold) {
        return Ok((
            Trigger::Usage,
            format!("{pct}% used > {}%", policy.usage_threshold),
        ));
    }
    if let Some(min) = policy
        .min_available
        .filter(|min| stats.available_bytes < *min)
    {
        return Ok((
            Trigger::Available,
            format!(
                "{} available < minAvailable {}",
                format_bytes(stats.available_bytes),
                format_bytes(min)
            ),
        ));
    }
    if let Some(threshold) = policy
        .inode_usage_threshold
        .filter(|t| stats.inodes_used_exceeds(*t))
    {
        return Ok((
            Trigger::Inodes,
            format!(
                "{}% of inodes used > {threshold}%",
                stats.inodes_percent_used_rounded()
            ),
        ));
    }
    let to_full = stats.seconds_to_full();
    if let Some((ttf, secs)) = policy.time_to_full.zip(to_full) {
        if secs < ttf.as_secs_f64() {
            return Ok((
                Trigger::Forecast,
                format!(
                    "full in {} at {}/h < timeToFull {}",
                    format_go_duration(std::time::Duration::from_secs(secs as u64)),
                    format_bytes((stats.growth_bytes_per_second.unwrap_or(0.0) * 3600.0) as u64),
                    format_go_duration(ttf)
                ),
            ));
        }
    }
    let mut message = format!(
        "{pct}% used (threshold {}%), {} available",
        policy.usage_threshold,
        format_bytes(stats.available_bytes)
    );
    if policy.time_to_full.is_some() {
        match to_full {
            Some(secs) => message.push_str(&format!(
                ", full in {} at the current rate",
                format_go_duration(std::time::Duration::from_secs(secs as u64))
            )),
            None => message.push_str(", no growth forecast"),
        }
    }
    Err(Verdict(Action::None, Some(Reason::NotTriggered), message))
}

/// Rule 6: the PVC's latest resize is younger than `cooldown`.
fn cooldown(pass: &Pass<'_>, f: &Facts<'_>, why: &str, d: &mut Decision) -> Option<Verdict> {
    let cooldown = f.policy.cooldown?;
    let until = cooldown_until(pass.journal, &f.volume.pvc, cooldown, pass.input.now)?;
    d.next_action_at = Some(until);
    Some(Verdict(
        Action::Blocked,
        Some(Reason::Cooldown),
        format!(
            "{why}, but the last resize was less than {} ago (cooldown); next allowed at {until}",
            format_go_duration(cooldown)
        ),
    ))
}

/// Rule 7: the rolling 24 h budget of this PVC.
fn budget(f: &Facts<'_>, why: &str) -> Option<Verdict> {
    (f.budget.remaining == 0).then(|| {
        Verdict(
            Action::Blocked,
            Some(Reason::RateLimit),
            format!(
                "{why}, but {} of {} resizes in the last 24h are used{}",
                f.budget.used,
                f.policy.max_actions_per_day,
                f.budget
                    .next_free_at
                    .map(|t| format!("; next allowed at {t}"))
                    .unwrap_or_default()
            ),
        )
    })
}

/// Rule 8: the request has reached `limit`.
fn limit(f: &Facts<'_>, why: &str) -> Option<Verdict> {
    let limit = f.policy.limit.filter(|limit| f.current >= *limit)?;
    Some(Verdict(
        Action::Blocked,
        Some(Reason::AtLimit),
        format!(
            "{why}, but the request {} has reached the limit {}",
            format_bytes(f.current),
            format_bytes(limit)
        ),
    ))
}

/// Rule 9: WAL safety, for volumes that hold WAL.
fn wal(
    pass: &Pass<'_>,
    f: &Facts<'_>,
    report: &InstanceReport,
    why: &str,
    d: &mut Decision,
) -> Option<Verdict> {
    if !wal_guarded(pass.input.source.single_volume(), f.volume.volume_type) {
        return None;
    }
    match wal_safety(
        f.single_volume_data,
        &f.policy.wal_safety,
        report,
        &pass.cnpg_slots,
    ) {
        WalVerdict::Blocked(reason, because) => Some(Verdict(
            Action::Blocked,
            Some(reason),
            format!("{why}, but {because}"),
        )),
        WalVerdict::Allowed { warning } => {
            d.warnings.extend(warning);
            d.wal_risk_alert = f.policy.wal_safety.alert_on_resize;
            None
        }
    }
}

/// Rules 10 and 11: the new size; in Recommend mode it is only reported.
fn size(f: &Facts<'_>, stats: &VolumeStats, why: &str, d: &mut Decision) -> Verdict {
    let growth = Growth::of(stats);
    let new = new_size(f.current, &f.policy, growth);
    if new <= f.current {
        return Verdict(
            Action::None,
            Some(Reason::InvalidConfig),
            format!(
                "{why}, but the configured step adds nothing to {} (maxStep {})",
                format_bytes(f.current),
                format_bytes(f.policy.max_step)
            ),
        );
    }
    d.new_size = Some(new);
    let step = match f.policy.step {
        Step::Percent(p) => format!("{p}%"),
        Step::Absolute(bytes) => format_bytes(bytes),
    };
    let horizon = match (f.policy.horizon, growth.bytes_per_second) {
        (Some(h), Some(rate)) if rate > 0.0 => {
            d.history_seconds = Some(growth.history() as u64);
            let counted = growth.horizon_seconds(h);
            let bounded = if counted < h.as_secs_f64() {
                format!(
                    ", counted as {} after {} of history",
                    format_go_duration(std::time::Duration::from_secs(counted as u64)),
                    format_go_duration(std::time::Duration::from_secs(growth.history() as u64))
                )
            } else {
                String::new()
            };
            format!(
                ", horizon {} at {}/h{bounded}",
                format_go_duration(h),
                format_bytes((rate * 3600.0) as u64)
            )
        }
        _ => String::new(),
    };
    let verb = match f.policy.mode {
        Mode::Standard => "growing",
        Mode::Recommend => "recommending (mode Recommend, nothing is patched) to grow",
    };
    Verdict(
        Action::Resize,
        None,
        format!(
            "{why}: {verb} {} from {} to {} (step {step}{horizon})",
            f.volume.pvc,
            format_bytes(f.current),
            format_bytes(new)
        ),
    )
}

impl Decision {
    /// A decision whose names are left empty until [`Decision::finish`]
    /// gives it its volume: the rules read names from the volume itself.
    fn unnamed(volume_type: VolumeType) -> Self {
        Decision::new(VolumeRef {
            instance: String::new(),
            volume_type,
            tablespace: None,
            pvc: String::new(),
        })
    }

    fn finish(mut self, volume: VolumeRef, Verdict(action, reason, message): Verdict) -> Self {
        self.volume = volume;
        self.action = action;
        self.reason = reason;
        self.message = message;
        if action != Action::Resize {
            self.new_size = None;
            self.trigger = None;
            self.wal_risk_alert = false;
            self.history_seconds = None;
        }
        self
    }
}
