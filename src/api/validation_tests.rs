//! Every validation error and warning of docs/reference/configuration.md
//! (#validation-errors, #warnings), as a table.

use super::cluster::Cluster;
use super::validation::validate_cluster;
use serde_json::{json, Value};

fn cluster(spec: Value) -> Cluster {
    serde_json::from_value(json!({
        "apiVersion": "postgresql.cnpg.io/v1", "kind": "Cluster",
        "metadata": {"name": "pg"}, "spec": spec,
    }))
    .unwrap()
}

/// A cluster with separate WAL storage, archiving and a limit: no findings.
pub(super) fn base(data_resize: Value) -> Value {
    json!({
        "backup": {"barmanObjectStore": {"destinationPath": "s3://b"}},
        "storage": {"size": "10Gi", "resize": merge(json!({"enabled": true, "expansion": {"limit": "100Gi"}}), data_resize)},
        "walStorage": {"size": "2Gi"},
    })
}

pub(super) fn merge(mut a: Value, b: Value) -> Value {
    if let (Some(a), Value::Object(b)) = (a.as_object_mut(), b) {
        for (k, v) in b {
            match (a.get_mut(&k), v) {
                (Some(existing @ Value::Object(_)), v @ Value::Object(_)) => {
                    *existing = merge(existing.take(), v)
                }
                (_, v) => {
                    a.insert(k, v);
                }
            }
        }
    }
    a
}

pub(super) const DATA: &str = "spec.storage.resize";

#[test]
fn a_good_configuration_has_no_findings() {
    let report = validate_cluster(&cluster(base(json!({}))));
    assert_eq!(
        (report.errors.len(), report.warnings.len()),
        (0, 0),
        "{report:?}"
    );
}

/// One invalid `resize` block of the data volume (merged into [`base`]): where
/// `validate` reports it (relative to the block) and a fragment of its message, and a
/// fragment of the message of the AutoResizePolicy CRD's CEL rule that rejects it
/// (`cel_tests` runs the same cases through the CRD).
pub(super) struct ErrorCase {
    pub name: &'static str,
    pub resize: Value,
    pub field: &'static str,
    pub message: &'static str,
    pub cel_message: &'static str,
}

fn case(
    name: &'static str,
    resize: Value,
    field: &'static str,
    message: &'static str,
    cel_message: &'static str,
) -> ErrorCase {
    ErrorCase {
        name,
        resize,
        field,
        message,
        cel_message,
    }
}

/// The errors of docs/reference/configuration.md#validation-errors, one per
/// case.
pub(super) fn error_cases() -> Vec<ErrorCase> {
    vec![
        case(
            "threshold 0",
            json!({"triggers": {"usageThreshold": 0}}),
            "triggers.usageThreshold",
            "between 1 and 99",
            "between 1 and 99 (percent used)",
        ),
        case(
            "threshold 100",
            json!({"triggers": {"usageThreshold": 100}}),
            "triggers.usageThreshold",
            "got 100",
            "between 1 and 99 (percent used)",
        ),
        case(
            "minAvailable",
            json!({"triggers": {"minAvailable": "lots"}}),
            "triggers.minAvailable",
            "\"lots\"",
            "must be a non-negative quantity",
        ),
        case(
            "minAvailable negative",
            json!({"triggers": {"minAvailable": "-1Gi"}}),
            "triggers.minAvailable",
            "negative",
            "non-negative",
        ),
        case(
            "minStep typo",
            json!({"expansion": {"minStep": "2XGi"}}),
            "expansion.minStep",
            "2XGi",
            "must be a non-negative quantity",
        ),
        case(
            "maxStep",
            json!({"expansion": {"maxStep": "1.2.3"}}),
            "expansion.maxStep",
            "1.2.3",
            "must be a non-negative quantity",
        ),
        case(
            "limit",
            json!({"expansion": {"limit": "1Tb"}}),
            "expansion.limit",
            "1Tb",
            "must be a non-negative quantity",
        ),
        case(
            "limit negative",
            json!({"expansion": {"limit": "-5Gi"}}),
            "expansion.limit",
            "negative",
            "non-negative",
        ),
        case(
            "integer step",
            json!({"expansion": {"step": 20}}),
            "expansion.step",
            "integer step values are ambiguous",
            "integer step values are ambiguous",
        ),
        case(
            "step 0",
            json!({"expansion": {"step": 0}}),
            "expansion.step",
            "not 0",
            "not 0",
        ),
        case(
            "step 0%",
            json!({"expansion": {"step": "0%"}}),
            "expansion.step",
            "not 0",
            "not 0",
        ),
        case(
            "step 0Gi",
            json!({"expansion": {"step": "0Gi"}}),
            "expansion.step",
            "not 0",
            "not 0",
        ),
        case(
            "step 101%",
            json!({"expansion": {"step": "101%"}}),
            "expansion.step",
            "between 1% and 100%",
            "between 1% and 100%",
        ),
        case(
            "step 2.5%",
            json!({"expansion": {"step": "2.5%"}}),
            "expansion.step",
            "whole number",
            "whole number",
        ),
        case(
            "step -1Gi",
            json!({"expansion": {"step": "-1Gi"}}),
            "expansion.step",
            "positive",
            "positive",
        ),
        case(
            "step junk",
            json!({"expansion": {"step": "fast"}}),
            "expansion.step",
            "\"fast\"",
            "invalid quantity",
        ),
        case(
            "minStep > maxStep",
            json!({"expansion": {"minStep": "10Gi", "maxStep": "5Gi"}}),
            "expansion.minStep",
            "greater than maxStep",
            "greater than maxStep",
        ),
        case(
            "minStep > default maxStep",
            json!({"expansion": {"minStep": "501Gi"}}),
            "expansion.minStep",
            "500Gi",
            "500Gi",
        ),
        case(
            "actions 11",
            json!({"strategy": {"maxActionsPerDay": 11}}),
            "strategy.maxActionsPerDay",
            "between 0 and 10",
            "between 0 and 10",
        ),
        case(
            "actions -1",
            json!({"strategy": {"maxActionsPerDay": -1}}),
            "strategy.maxActionsPerDay",
            "got -1",
            "between 0 and 10",
        ),
        case(
            "mode",
            json!({"strategy": {"mode": "Aggressive"}}),
            "strategy.mode",
            "Standard",
            "unsupported mode \"Aggressive\"",
        ),
        case(
            "pending negative",
            json!({"strategy": {"walSafetyPolicy": {"maxPendingWALFiles": -1}}}),
            "strategy.walSafetyPolicy.maxPendingWALFiles",
            "got -1",
            "must be 0 (check disabled) or more",
        ),
        case(
            "slot bytes",
            json!({"strategy": {"walSafetyPolicy": {"maxSlotRetentionBytes": "1GB"}}}),
            "strategy.walSafetyPolicy.maxSlotRetentionBytes",
            "1GB",
            "must be a non-negative quantity",
        ),
    ]
}

#[test]
fn errors() {
    for ErrorCase {
        name,
        resize,
        field,
        message,
        ..
    } in error_cases()
    {
        let report = validate_cluster(&cluster(base(resize)));
        let want = format!("{DATA}.{field}");
        assert!(
            report
                .errors
                .iter()
                .any(|e| e.field == want && e.message.contains(message)),
            "{name}: want {want} ~ {message:?}, got {:?}",
            report.errors
        );
        assert_eq!(
            report.errors.len(),
            1,
            "{name}: exactly one error: {:?}",
            report.errors
        );
    }
}

#[test]
fn errors_are_reported_even_when_disabled_and_in_every_block() {
    let spec = json!({
        "storage": {"size": "10Gi", "resize": {"enabled": false, "expansion": {"step": 0}}},
        "walStorage": {"size": "2Gi", "resize": {"enabled": true, "expansion": {"step": "0%"}}},
        "tablespaces": [{"name": "t", "storage": {"size": "1Gi", "resize": {"triggers": {"usageThreshold": 120}}}}],
    });
    let report = validate_cluster(&cluster(spec));
    let fields: Vec<_> = report.errors.iter().map(|e| e.field.as_str()).collect();
    assert_eq!(
        fields,
        [
            "spec.storage.resize.expansion.step",
            "spec.walStorage.resize.expansion.step",
            "spec.tablespaces[0].storage.resize.triggers.usageThreshold"
        ]
    );
}

#[test]
fn single_volume_requires_acknowledgement() {
    let spec = |ack: Value| json!({"storage": {"size": "1Gi", "resize": {"enabled": true, "strategy": {"walSafetyPolicy": ack}}}});
    let report = validate_cluster(&cluster(spec(json!({}))));
    let ack = "spec.storage.resize.strategy.walSafetyPolicy.acknowledgeWALRisk";
    assert!(
        report
            .errors
            .iter()
            .any(|e| e.field == ack && e.message.contains("acknowledgeWALRisk: true")),
        "{report:?}"
    );
    assert!(validate_cluster(&cluster(spec(json!({"acknowledgeWALRisk": true})))).is_valid());
    // Disabled: nothing to acknowledge.
    let disabled = json!({"storage": {"size": "1Gi", "resize": {"enabled": false}}});
    assert!(validate_cluster(&cluster(disabled)).is_valid());
}

#[test]
fn warnings() {
    let limit = "spec.storage.resize.expansion.limit";
    let cases: Vec<(&str, Value, &str, &str)> = vec![
        (
            "limit below size",
            base(json!({"expansion": {"limit": "5Gi"}})),
            limit,
            "will never trigger",
        ),
        (
            "limit equal to size",
            base(json!({"expansion": {"limit": "10240Mi"}})),
            limit,
            "will never trigger",
        ),
        (
            "no limit",
            {
                let mut s = base(json!({}));
                s["storage"]["resize"]["expansion"]
                    .as_object_mut()
                    .unwrap()
                    .remove("limit");
                s
            },
            limit,
            "bounded only by the daily budget",
        ),
        (
            "budget 0",
            base(json!({"strategy": {"maxActionsPerDay": 0}})),
            "spec.storage.resize.strategy.maxActionsPerDay",
            "disables auto-resize",
        ),
        (
            "minAvailable > size",
            base(json!({"triggers": {"minAvailable": "11Gi"}})),
            "spec.storage.resize.triggers.minAvailable",
            "every check",
        ),
        (
            "minStep with absolute step",
            base(json!({"expansion": {"step": "5Gi", "minStep": "1Gi"}})),
            "spec.storage.resize.expansion.minStep",
            "ignored",
        ),
        (
            "maxStep with absolute step",
            base(json!({"expansion": {"step": "5Gi", "maxStep": "10Gi"}})),
            "spec.storage.resize.expansion.maxStep",
            "ignored",
        ),
        (
            "ack with walStorage",
            base(json!({"strategy": {"walSafetyPolicy": {"acknowledgeWALRisk": true}}})),
            "spec.storage.resize.strategy.walSafetyPolicy.acknowledgeWALRisk",
            "no effect",
        ),
        (
            "no archiving",
            {
                let mut s = base(json!({}));
                s.as_object_mut().unwrap().remove("backup");
                s["walStorage"]["resize"] =
                    json!({"enabled": true, "expansion": {"limit": "10Gi"}});
                s
            },
            "spec.walStorage.resize.strategy.walSafetyPolicy.requireArchiveHealthy",
            "check is skipped",
        ),
    ];
    for (name, spec, field, message) in cases {
        let report = validate_cluster(&cluster(spec));
        assert!(report.is_valid(), "{name}: {:?}", report.errors);
        assert_eq!(report.warnings.len(), 1, "{name}: {:?}", report.warnings);
        assert_eq!(report.warnings[0].field, field, "{name}");
        assert!(
            report.warnings[0].message.contains(message),
            "{name}: {}",
            report.warnings[0].message
        );
    }
}

#[test]
fn archiving_by_plugin_counts_and_only_wal_holding_volumes_warn() {
    let spec = json!({
        "plugins": [{"name": "barman-cloud.cloudnative-pg.io", "isWALArchiver": true}],
        "storage": {"size": "10Gi", "resize": {"enabled": true, "expansion": {"limit": "20Gi"},
            "strategy": {"walSafetyPolicy": {"acknowledgeWALRisk": true}}}},
    });
    let report = validate_cluster(&cluster(spec.clone()));
    assert_eq!(report.warnings, vec![], "archiving through a plugin");
    let mut without = spec;
    without["plugins"][0]["isWALArchiver"] = json!(false);
    let report = validate_cluster(&cluster(without));
    assert_eq!(report.warnings.len(), 1);
    // Tablespaces never hold WAL: no archive warning for them.
    let tbs = json!({"walStorage": {"size": "1Gi"}, "tablespaces": [{"name": "t", "storage": {"size": "1Gi",
        "resize": {"enabled": true, "expansion": {"limit": "2Gi"}}}}]});
    assert_eq!(validate_cluster(&cluster(tbs)).warnings, vec![]);
}

#[test]
fn empty_strings_mean_absent() {
    let report = validate_cluster(&cluster(base(
        json!({"triggers": {"minAvailable": ""}, "expansion": {"step": "", "minStep": ""}, "strategy": {"mode": ""}}),
    )));
    assert!(
        report.is_valid() && report.warnings.is_empty(),
        "{report:?}"
    );
}

#[test]
fn resolved_defaults_match_the_spec() {
    use super::resize::{ResizeConfiguration, Step, WalSafety};
    use super::FieldPath;
    let policy = ResizeConfiguration::default()
        .resolve(&FieldPath::new("r"))
        .unwrap();
    assert_eq!(policy.usage_threshold, 80);
    assert_eq!(policy.min_available, None);
    assert_eq!(policy.step, Step::Percent(20));
    assert_eq!(
        (policy.min_step, policy.max_step, policy.limit),
        (2 << 30, 500 << 30, None)
    );
    assert_eq!(policy.max_actions_per_day, 3);
    assert_eq!(
        policy.wal_safety,
        WalSafety {
            acknowledge_wal_risk: false,
            require_archive_healthy: true,
            max_pending_wal_files: 100,
            max_slot_retention_bytes: 0,
            alert_on_resize: true
        }
    );
}

mod policies {
    use super::super::policy::AutoResizePolicy;
    use super::super::validation::{validate_policy, ValidationContext};
    use super::cluster;
    use serde_json::{json, Value};

    fn policy(spec: Value) -> AutoResizePolicy {
        serde_json::from_value(json!({
            "apiVersion": "autoresize.cnpg.io/v1alpha1", "kind": "AutoResizePolicy",
            "metadata": {"name": "p", "namespace": "default"}, "spec": spec,
        }))
        .unwrap()
    }

    /// `(field, message)` of every error.
    fn errors(policy: &AutoResizePolicy, with: Option<Value>) -> Vec<(String, String)> {
        let cluster = with.map(cluster);
        validate_policy(policy, cluster.as_ref(), ValidationContext::default())
            .errors
            .into_iter()
            .map(|e| (e.field, e.message))
            .collect()
    }

    const ACK: &str = "spec.storage.resize.strategy.walSafetyPolicy.acknowledgeWALRisk";

    #[test]
    fn without_wal_storage_a_policy_needs_the_acknowledgement_whatever_the_cluster_has() {
        // The API server refuses this policy (a CEL rule of its CRD cannot see
        // the Cluster), so validate must refuse it with or without the Cluster.
        let p = policy(json!({"cluster": "pg", "storage": {"resize": {"enabled": true}}}));
        let with_wal = json!({"storage": {"size": "10Gi"}, "walStorage": {"size": "2Gi"}});
        let without_wal = json!({"storage": {"size": "10Gi"}});
        for cluster in [None, Some(with_wal), Some(without_wal)] {
            let found = errors(&p, cluster.clone());
            assert_eq!(found.len(), 1, "{cluster:?}: {found:?}");
            assert_eq!(found[0].0, ACK);
            assert_eq!(found[0].1, crate::api::crd::SINGLE_VOLUME_MESSAGE);
        }
        let named = policy(json!({"cluster": "pg", "walStorage": {},
            "storage": {"resize": {"enabled": true}}}));
        assert_eq!(errors(&named, None), []);
        // Naming walStorage for a Cluster that has none: WAL is on the data
        // volume after all, and the engine blocks it (single_volume_no_ack).
        let found = errors(&named, Some(json!({"storage": {"size": "10Gi"}})));
        assert_eq!(found.len(), 1, "{found:?}");
        assert_eq!(found[0].0, ACK);
        assert!(found[0].1.contains("no spec.walStorage"), "{found:?}");
    }

    #[test]
    fn the_crds_size_limits_are_checked() {
        let many: Vec<Value> = (0..9).map(|i| json!({"name": format!("t{i}")})).collect();
        let found = errors(&policy(json!({"cluster": "pg", "tablespaces": many})), None);
        assert_eq!(found.len(), 1, "{found:?}");
        assert_eq!(found[0].0, "spec.tablespaces");
        assert!(
            found[0].1.contains("at most 8") && found[0].1.contains("got 9"),
            "{found:?}"
        );

        let long = "t".repeat(64);
        let found = errors(
            &policy(json!({"cluster": "pg", "tablespaces": [{"name": long}]})),
            None,
        );
        assert_eq!(found.len(), 1, "{found:?}");
        assert_eq!(found[0].0, "spec.tablespaces[0].name");
        assert!(
            found[0].1.contains("at most 63") && found[0].1.contains("got 64"),
            "{found:?}"
        );

        let duration = "1m".repeat(33);
        let found = errors(
            &policy(
                json!({"cluster": "pg", "walStorage": {}, "storage": {"resize": {
                "enabled": true, "strategy": {"cooldown": duration}}}}),
            ),
            None,
        );
        assert_eq!(found.len(), 1, "{found:?}");
        assert_eq!(found[0].0, "spec.storage.resize.strategy.cooldown");
        assert!(
            found[0].1.contains("at most 64") && found[0].1.contains("got 66"),
            "{found:?}"
        );

        // Quantities are bounded too (their CEL rules would exceed the cost budget).
        let quantity = format!("{}1Gi", "0".repeat(62));
        for field in ["step", "minStep", "limit"] {
            let found = errors(
                &policy(
                    json!({"cluster": "pg", "walStorage": {}, "storage": {"resize": {
                    "enabled": true, "expansion": {field: quantity}}}}),
                ),
                None,
            );
            let at = format!("spec.storage.resize.expansion.{field}");
            assert!(
                found
                    .iter()
                    .any(|(f, m)| *f == at && m.contains("at most 64") && m.contains("got 65")),
                "{field}: {found:?}"
            );
        }
    }

    #[test]
    fn a_tablespace_configured_twice_reports_its_block_once() {
        let broken = json!({"enabled": true, "expansion": {"step": "0"}});
        let p = policy(json!({"cluster": "pg", "tablespaces": [
            {"name": "a", "resize": broken}, {"name": "a", "resize": broken}]}));
        let found = errors(&p, None);
        let step = "spec.tablespaces[0].resize.expansion.step";
        assert_eq!(
            found.iter().filter(|(f, _)| f == step).count(),
            1,
            "{found:?}"
        );
        assert!(
            found
                .iter()
                .any(|(f, m)| f == "spec.tablespaces[1].name" && m.contains("configured twice")),
            "{found:?}"
        );
    }
}
