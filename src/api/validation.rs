//! Validation of a Cluster's resize configuration (SPEC §2.1 errors, §2.2
//! warnings). Errors reject the configuration; warnings are accepted but told.

use super::cluster::{Cluster, StorageConfiguration, VolumeType};
use super::field::{FieldIssue, FieldPath};
use super::quantity::format_bytes;
use super::resize::{parse_non_negative_bytes, ResizePolicy, Step};
use serde::Serialize;

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

/// One storage block of the cluster with its manifest path.
pub struct StorageBlock<'a> {
    pub volume_type: VolumeType,
    pub tablespace: Option<&'a str>,
    pub storage: &'a StorageConfiguration,
    pub path: FieldPath,
}

/// Every storage block the cluster declares: data, WAL, then tablespaces.
pub fn storage_blocks(cluster: &Cluster) -> Vec<StorageBlock<'_>> {
    let spec = FieldPath::new("spec");
    let mut blocks = Vec::new();
    if let Some(storage) = &cluster.spec.storage {
        blocks.push(StorageBlock {
            volume_type: VolumeType::Data,
            tablespace: None,
            storage,
            path: spec.child("storage"),
        });
    }
    if let Some(storage) = &cluster.spec.wal_storage {
        blocks.push(StorageBlock {
            volume_type: VolumeType::Wal,
            tablespace: None,
            storage,
            path: spec.child("walStorage"),
        });
    }
    for (i, tablespace) in cluster.spec.tablespaces.iter().flatten().enumerate() {
        blocks.push(StorageBlock {
            volume_type: VolumeType::Tablespace,
            tablespace: Some(tablespace.name.as_str()),
            storage: &tablespace.storage,
            path: spec.child("tablespaces").index(i).child("storage"),
        });
    }
    blocks
}

/// Whether WAL-safety checks guard this kind of volume: WAL volumes, and the
/// data volume when WAL lives on it (no `spec.walStorage`).
pub fn wal_guarded(cluster: &Cluster, volume_type: VolumeType) -> bool {
    match volume_type {
        VolumeType::Wal => true,
        VolumeType::Data => cluster.spec.wal_storage.is_none(),
        VolumeType::Tablespace => false,
    }
}

pub fn validate_cluster(cluster: &Cluster) -> ValidationReport {
    let mut report = ValidationReport::default();
    for block in storage_blocks(cluster) {
        let Some(resize) = &block.storage.resize else {
            continue;
        };
        let resize_path = block.path.child("resize");
        let ack_path = resize_path
            .child("strategy")
            .child("walSafetyPolicy")
            .child("acknowledgeWALRisk");
        let single_volume_data =
            block.volume_type == VolumeType::Data && cluster.spec.wal_storage.is_none();
        if resize.is_enabled() && single_volume_data && !resize.acknowledges_wal_risk() {
            report.errors.push(FieldIssue::new(
                &ack_path,
                "the cluster has no spec.walStorage, so WAL shares the data volume and growing it \
                 can hide failing archiving or an abandoned replication slot; set \
                 acknowledgeWALRisk: true to allow auto-resize, or add spec.walStorage",
            ));
        }
        let policy = match resize.resolve(&resize_path) {
            Ok(policy) => policy,
            Err(errors) => {
                report.errors.extend(errors);
                continue;
            }
        };
        if resize.is_enabled() {
            report.warnings.extend(warnings_for(
                cluster,
                &block,
                &policy,
                &resize_path,
                single_volume_data,
            ));
        }
    }
    report
}

fn warnings_for(
    cluster: &Cluster,
    block: &StorageBlock<'_>,
    policy: &ResizePolicy,
    resize_path: &FieldPath,
    single_volume_data: bool,
) -> Vec<FieldIssue> {
    let mut warnings = Vec::new();
    let expansion = resize_path.child("expansion");
    let strategy = resize_path.child("strategy");
    let wal_policy = strategy.child("walSafetyPolicy");
    // CNPG validates `size` itself; an unreadable size only skips the comparisons.
    let size = block
        .storage
        .size
        .as_deref()
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
                &resize_path.child("triggers").child("minAvailable"),
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
            if set {
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
        && wal_guarded(cluster, block.volume_type)
        && !cluster.has_wal_archiving()
    {
        warnings.push(FieldIssue::new(
            &wal_policy.child("requireArchiveHealthy"),
            "requireArchiveHealthy is true but the cluster has no WAL archiving configured \
             (no spec.backup.barmanObjectStore and no plugin with isWALArchiver: true): the check is skipped",
        ));
    }
    warnings
}
