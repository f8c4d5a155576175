//! Validation of a resize configuration (the errors and warnings of
//! docs/reference/configuration.md#validation-errors and #warnings),
//! from a Cluster's `resize` blocks or an `AutoResizePolicy`. Errors reject
//! the configuration; warnings are accepted but told.

use super::cluster::{Cluster, VolumeType};
use super::duration::format_go_duration;
use super::field::{FieldIssue, FieldPath};
use super::policy::AutoResizePolicy;
use super::quantity::format_bytes;
use super::resize::{
    parse_non_negative_bytes, ResizeConfiguration, ResizePolicy, Step, RECOMMEND_MODE,
};
use super::source::{Source, VolumeConfig};
use serde::Serialize;
use std::time::Duration;

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct ValidationReport {
    pub errors: Vec<FieldIssue>,
    pub warnings: Vec<FieldIssue>,
}

impl ValidationReport {
    pub fn is_valid(&self) -> bool {
        self.errors.is_empty()
    }
}

/// What validation assumes about the running system.
#[derive(Clone, Copy, Debug)]
pub struct ValidationContext {
    /// The managers' `--probe-interval` (a forecast trigger shorter than two
    /// probes cannot act in time).
    pub probe_interval: Duration,
}

impl Default for ValidationContext {
    fn default() -> Self {
        ValidationContext {
            probe_interval: Duration::from_secs(1),
        }
    }
}

/// Whether WAL-safety checks guard this kind of volume: WAL volumes, and the
/// data volume when WAL lives on it (no `spec.walStorage`).
pub fn wal_guarded(single_volume: bool, volume_type: VolumeType) -> bool {
    match volume_type {
        VolumeType::Wal => true,
        VolumeType::Data => single_volume,
        VolumeType::Tablespace => false,
    }
}

/// Validates a Cluster's own `resize` blocks (the CloudNativePG fork).
pub fn validate_cluster(cluster: &Cluster) -> ValidationReport {
    validate(Source::fork(cluster), ValidationContext::default())
}

/// Validates an `AutoResizePolicy`. Without its Cluster, the Cluster is
/// assumed to have exactly the volumes the policy configures (a WAL volume
/// only if the policy has `walStorage`) and size comparisons are skipped.
pub fn validate_policy(
    policy: &AutoResizePolicy,
    cluster: Option<&Cluster>,
    context: ValidationContext,
) -> ValidationReport {
    let assumed;
    let cluster = match cluster {
        Some(c) => c,
        None => {
            assumed = cluster_assumed_from(policy);
            &assumed
        }
    };
    let mut report = validate(
        Source {
            cluster,
            policy: Some(policy),
        },
        context,
    );
    use crate::api::crd::{
        MAX_CLUSTER_NAME_LENGTH, MAX_POLICY_TABLESPACES, MAX_TABLESPACE_NAME_LENGTH,
    };
    let spec = FieldPath::new("spec");
    // The CRD's rule, word for word: the API server refuses such a policy
    // whatever the Cluster looks like.
    if let Some(data) = policy.spec.storage.as_ref().and_then(|s| s.resize.as_ref()) {
        if policy.spec.wal_storage.is_none() && data.is_enabled() && !data.acknowledges_wal_risk() {
            report.errors.push(FieldIssue::new(
                &spec
                    .child("storage")
                    .child("resize")
                    .child("strategy")
                    .child("walSafetyPolicy")
                    .child("acknowledgeWALRisk"),
                crate::api::crd::SINGLE_VOLUME_MESSAGE,
            ));
        }
    }
    if policy.spec.cluster.trim().is_empty() {
        report.errors.push(FieldIssue::new(
            &spec.child("cluster"),
            "names no cluster: set the name of the CloudNativePG Cluster this policy governs",
        ));
    } else if policy.spec.cluster.chars().count() > MAX_CLUSTER_NAME_LENGTH as usize {
        report.errors.push(FieldIssue::new(
            &spec.child("cluster"),
            format!(
                "must be at most {MAX_CLUSTER_NAME_LENGTH} characters (a Kubernetes name, the CRD's maxLength), got {}",
                policy.spec.cluster.chars().count()
            ),
        ));
    } else if let Some(name) = cluster.metadata.name.as_deref() {
        if name != policy.spec.cluster {
            report.warnings.push(FieldIssue::new(
                &spec.child("cluster"),
                format!(
                    "targets cluster {:?}, but the given Cluster is {name:?}",
                    policy.spec.cluster
                ),
            ));
        }
    }
    if policy.spec.tablespaces.len() > MAX_POLICY_TABLESPACES as usize {
        report.errors.push(FieldIssue::new(
            &spec.child("tablespaces"),
            format!(
                "at most {MAX_POLICY_TABLESPACES} tablespaces (the CRD's maxItems), got {}",
                policy.spec.tablespaces.len()
            ),
        ));
    }
    let mut seen = std::collections::HashSet::new();
    for (i, t) in policy.spec.tablespaces.iter().enumerate() {
        let path = spec.child("tablespaces").index(i).child("name");
        if t.name.is_empty() {
            report
                .errors
                .push(FieldIssue::new(&path, "a tablespace needs its name"));
        } else if t.name.chars().count() > MAX_TABLESPACE_NAME_LENGTH as usize {
            report.errors.push(FieldIssue::new(
                &path,
                format!(
                    "must be at most {MAX_TABLESPACE_NAME_LENGTH} characters (PostgreSQL's limit, the CRD's maxLength), got {} ({:?})",
                    t.name.chars().count(),
                    t.name
                ),
            ));
        } else if !seen.insert(t.name.as_str()) {
            report.errors.push(FieldIssue::new(
                &path,
                format!("tablespace {:?} is configured twice", t.name),
            ));
        } else if !cluster
            .spec
            .tablespaces
            .iter()
            .flatten()
            .any(|c| c.name == t.name)
        {
            report.warnings.push(FieldIssue::new(
                &path,
                format!(
                    "the Cluster has no tablespace {:?}: this block is ignored",
                    t.name
                ),
            ));
        }
    }
    if policy.spec.wal_storage.is_some() && cluster.spec.wal_storage.is_none() {
        report.warnings.push(FieldIssue::new(
            &spec.child("walStorage"),
            "the Cluster has no spec.walStorage: this block is ignored",
        ));
    }
    let cluster_blocks = Source::fork(cluster).volumes();
    if let Some(block) = cluster_blocks.first() {
        report.warnings.push(FieldIssue::new(
            &block.path,
            "the Cluster's own resize blocks are ignored while a policy governs it",
        ));
    }
    report
}

/// The Cluster a policy implies when none is given: each tablespace once
/// (a name configured twice is one error, not two sets of block errors).
fn cluster_assumed_from(policy: &AutoResizePolicy) -> Cluster {
    let mut seen = std::collections::HashSet::new();
    let tablespaces: Vec<serde_json::Value> = policy
        .spec
        .tablespaces
        .iter()
        .filter(|t| seen.insert(t.name.as_str()))
        .map(|t| serde_json::json!({"name": t.name, "storage": {}}))
        .collect();
    let mut spec = serde_json::json!({"storage": {}, "tablespaces": tablespaces});
    if policy.spec.wal_storage.is_some() {
        spec["walStorage"] = serde_json::json!({});
    }
    serde_json::from_value(serde_json::json!({
        "metadata": {"name": policy.spec.cluster},
        "spec": spec,
    }))
    .unwrap_or_default()
}

pub fn validate(source: Source<'_>, context: ValidationContext) -> ValidationReport {
    let mut report = ValidationReport::default();
    let single_volume = source.single_volume();
    for block in source.volumes() {
        let resize_path = &block.path;
        let ack_path = resize_path
            .child("strategy")
            .child("walSafetyPolicy")
            .child("acknowledgeWALRisk");
        let single_volume_data = block.volume_type == VolumeType::Data && single_volume;
        // A policy without walStorage is held to its CRD's rule in
        // validate_policy, whatever the Cluster has; one with walStorage
        // for a single-volume Cluster is checked here, as the engine
        // blocks it (single_volume_no_ack).
        if block.resize.is_enabled()
            && single_volume_data
            && source.policy.is_none_or(|p| p.spec.wal_storage.is_some())
            && !block.resize.acknowledges_wal_risk()
        {
            report.errors.push(FieldIssue::new(
                &ack_path,
                "the cluster has no spec.walStorage, so WAL shares the data volume and growing it \
                 can hide failing archiving or an abandoned replication slot; set \
                 acknowledgeWALRisk: true to allow auto-resize, or add spec.walStorage",
            ));
        }
        let policy = match block.resize.resolve(resize_path) {
            Ok(policy) => policy,
            Err(errors) => {
                report.errors.extend(errors);
                continue;
            }
        };
        if let Some(written) = block.resize.ok() {
            report.warnings.extend(unknown_fields(written, resize_path));
            if source.policy.is_none() {
                report
                    .warnings
                    .extend(pruned_by_fork_crd(written, resize_path));
            }
        }
        if block.resize.is_enabled() {
            report.warnings.extend(warnings_for(
                &source,
                &block,
                &policy,
                single_volume_data,
                context,
            ));
        }
    }
    report
}

/// Fields this version does not know: a real API server drops them.
fn unknown_fields(r: &ResizeConfiguration, path: &FieldPath) -> Vec<FieldIssue> {
    let mut found = Vec::new();
    let mut add = |extra: &super::cluster::Extra, at: FieldPath| {
        for key in extra.keys() {
            found.push(FieldIssue::new(
                &at.child(key),
                "unknown field: ignored (a real API server drops it)",
            ));
        }
    };
    add(&r.extra, path.clone());
    if let Some(t) = &r.triggers {
        add(&t.extra, path.child("triggers"));
    }
    if let Some(e) = &r.expansion {
        add(&e.extra, path.child("expansion"));
    }
    if let Some(s) = &r.strategy {
        add(&s.extra, path.child("strategy"));
        if let Some(w) = &s.wal_safety_policy {
            add(&w.extra, path.child("strategy").child("walSafetyPolicy"));
        }
    }
    found
}

/// Fields only an AutoResizePolicy can carry, written into a Cluster: the
/// fork's CRD has no place for them, so a real API server prunes them (or,
/// for `mode: Recommend`, rejects the Cluster). They are honoured when met.
fn pruned_by_fork_crd(r: &ResizeConfiguration, path: &FieldPath) -> Vec<FieldIssue> {
    let mut found = Vec::new();
    let triggers = path.child("triggers");
    let expansion = path.child("expansion");
    let strategy = path.child("strategy");
    let mut prune = |set: bool, at: FieldPath| {
        if set {
            found.push(FieldIssue::new(
                &at,
                "only an AutoResizePolicy can carry this field: the CloudNativePG fork's Cluster \
                 CRD has no place for it, so a real API server prunes it",
            ));
        }
    };
    if let Some(t) = &r.triggers {
        prune(
            t.inode_usage_threshold.is_some(),
            triggers.child("inodeUsageThreshold"),
        );
        prune(t.time_to_full.is_some(), triggers.child("timeToFull"));
    }
    if let Some(e) = &r.expansion {
        prune(e.horizon.is_some(), expansion.child("horizon"));
    }
    if let Some(s) = &r.strategy {
        prune(s.cooldown.is_some(), strategy.child("cooldown"));
        if s.mode.as_deref() == Some(RECOMMEND_MODE) {
            found.push(FieldIssue::new(
                &strategy.child("mode"),
                "the CloudNativePG fork's Cluster CRD allows only mode Standard: a real API \
                 server rejects this Cluster (422); use an AutoResizePolicy for Recommend",
            ));
        }
    }
    found
}

fn warnings_for(
    source: &Source<'_>,
    block: &VolumeConfig<'_>,
    policy: &ResizePolicy,
    single_volume_data: bool,
    context: ValidationContext,
) -> Vec<FieldIssue> {
    let mut warnings = Vec::new();
    let resize_path = &block.path;
    let expansion = resize_path.child("expansion");
    let strategy = resize_path.child("strategy");
    let triggers = resize_path.child("triggers");
    let wal_policy = strategy.child("walSafetyPolicy");
    // CNPG validates `size` itself; an unreadable size only skips the comparisons.
    let size = block
        .size
        .filter(|s| !s.is_empty())
        .and_then(|s| parse_non_negative_bytes(s).ok());

    match (policy.limit, size) {
        (Some(limit), Some(size)) if limit <= size => warnings.push(FieldIssue::new(
            &expansion.child("limit"),
            format!(
                "limit ({}) is not above the configured size ({}): auto-resize will never trigger",
                format_bytes(limit),
                format_bytes(size)
            ),
        )),
        (None, _) => warnings.push(FieldIssue::new(
            &expansion.child("limit"),
            "no limit is set: growth is bounded only by the daily budget (maxActionsPerDay)",
        )),
        _ => {}
    }
    if policy.max_actions_per_day == 0 {
        warnings.push(FieldIssue::new(
            &strategy.child("maxActionsPerDay"),
            "maxActionsPerDay is 0 while enabled is true: this disables auto-resize",
        ));
    }
    if let (Some(min_available), Some(size)) = (policy.min_available, size) {
        if min_available > size {
            warnings.push(FieldIssue::new(
                &triggers.child("minAvailable"),
                format!(
                    "minAvailable ({}) is larger than the configured size ({}): the trigger fires on every check",
                    format_bytes(min_available),
                    format_bytes(size)
                ),
            ));
        }
    }
    if let Step::Absolute(_) = policy.step {
        for (set, name) in [
            (policy.min_step_set, "minStep"),
            (policy.max_step_set, "maxStep"),
        ] {
            // maxStep still caps the growth a horizon adds.
            if set && !(name == "maxStep" && policy.horizon.is_some()) {
                warnings.push(FieldIssue::new(
                    &expansion.child(name),
                    format!("{name} only applies to percentage steps; with an absolute step it is ignored"),
                ));
            }
        }
    }
    if policy.wal_safety.acknowledge_wal_risk && !single_volume_data {
        let why = if block.volume_type == VolumeType::Data {
            "the cluster has spec.walStorage, so WAL is not on the data volume"
        } else {
            "it only applies to the data volume of a single-volume cluster"
        };
        warnings.push(FieldIssue::new(
            &wal_policy.child("acknowledgeWALRisk"),
            format!("acknowledgeWALRisk has no effect here: {why}"),
        ));
    }
    if policy.wal_safety.require_archive_healthy
        && wal_guarded(source.single_volume(), block.volume_type)
        && !source.cluster.has_wal_archiving()
    {
        warnings.push(FieldIssue::new(
            &wal_policy.child("requireArchiveHealthy"),
            "requireArchiveHealthy is true but the cluster has no WAL archiving configured \
             (no spec.backup.barmanObjectStore and no plugin with isWALArchiver: true): the check is skipped",
        ));
    }
    if let Some(ttf) = policy.time_to_full {
        let two_probes = context.probe_interval * 2;
        if ttf < two_probes {
            warnings.push(FieldIssue::new(
                &triggers.child("timeToFull"),
                format!(
                    "timeToFull ({}) is shorter than two probe intervals ({}): the volume can fill \
                     before a probe sees the forecast cross it",
                    format_go_duration(ttf),
                    format_go_duration(two_probes)
                ),
            ));
        }
    }
    if let Some(cooldown) = policy.cooldown {
        let day = Duration::from_secs(24 * 3600);
        // n resizes need (n - 1) cooldowns inside the rolling 24 h.
        let fit = (day.as_secs() / cooldown.as_secs().max(1)) + 1;
        if policy.max_actions_per_day > 0 && u64::from(policy.max_actions_per_day) > fit {
            warnings.push(FieldIssue::new(
                &strategy.child("cooldown"),
                format!(
                    "with a cooldown of {} at most {fit} resizes fit in 24h: maxActionsPerDay {} cannot all be used",
                    format_go_duration(cooldown),
                    policy.max_actions_per_day
                ),
            ));
        }
    }
    warnings
}
