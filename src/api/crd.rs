//! CustomResourceDefinitions generated from the project's own types.
//!
//! - The `AutoResizePolicy` CRD ([the AutoResizePolicy](docs/reference/configuration.md#the-autoresizepolicy)):
//!   [`policy_crd`] is `AutoResizePolicy::crd()`; its schema comes from the types of
//!   `policy.rs` and `resize.rs`, and carries the
//!   [validation errors](docs/reference/configuration.md#validation-errors) as CEL
//!   `x-kubernetes-validations`, attached by the schemars transforms of this module
//!   ([`policy_spec_schema`], [`policy_resize_schema`]) so that the API server rejects
//!   what `cnpg-autoresize validate` rejects. `cargo run --bin crdgen` prints it; its
//!   output is checked in as [`POLICY_CRD_FILE`].
//! - A stand-in for the CloudNativePG fork's `Cluster` CRD ([`generated_cluster_crd`]),
//!   for when the fork's real CRD is not at hand (`demo`, the `sandbox` command): its
//!   schema is generated from the Cluster fields the project reads and writes, shaped as
//!   the fork declares them (see [`generated_cluster_crd`]).
//!
//! # The CEL rules and the API server
//!
//! A kube-apiserver compiles every rule against the Kubernetes CEL libraries of its
//! compatibility version (1.29 for Kubernetes 1.30, the oldest the chart supports) and
//! refuses a CRD whose rules call a function that is not declared — or not declared
//! that way: `sign` is a global function of the quantity library, `sign(quantity(x))`,
//! never `quantity(x).sign()`. It also estimates each rule's worst-case cost from the
//! schema — a string without `maxLength` (an `x-kubernetes-int-or-string` value too) is
//! taken to be 3 MiB long, so every `quantity()` of it costs ~315k — multiplies it by
//! the number of times the node can occur (`maxItems` of the lists above it), and
//! refuses more than 10M for one rule or 100M in all. Every string a rule reads here
//! is bounded ([`MAX_QUANTITY_LENGTH`], [`MAX_SHORT_STRING_LENGTH`],
//! [`MAX_CLUSTER_NAME_LENGTH`], [`MAX_TABLESPACE_NAME_LENGTH`]) and `spec.tablespaces`
//! has `maxItems: 8`, so the whole schema costs ~0.3 % of the budget
//! (`api::cel_tests` computes it with the sandbox's copy of the API server's checks).
//!
//! kube-cel (the evaluator of the sandbox and of the tests) has no `type()`, so the rules
//! tell integers from strings without it: `string(self)` of an int-or-string value, and
//! for `step` a string method that fails on an integer (rejecting it with the rule's
//! message, "integer step values are ambiguous"). The rules are written as JSON rather
//! than with `kube::core::Rule`, which cannot carry both `message` and `messageExpression`.

use super::cluster::{AutoResizeEvent, ClusterDiskStatus, Extra};
use super::lenient::Lenient;
use super::policy::AutoResizePolicy;
use super::resize::{
    ResizeConfiguration, DEFAULT_MAX_PENDING_WAL_FILES, MAX_ACTIONS_PER_DAY_CEILING,
    RECOMMEND_MODE, STANDARD_MODE, STEP_INTEGER_MESSAGE, STEP_ZERO_MESSAGE,
};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::core::CustomResourceExt;
use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::{json, Map, Value};

/// Where the generated AutoResizePolicy CRD is checked in, relative to the workspace.
pub const POLICY_CRD_FILE: &str =
    "charts/cnpg-autoresize/crds/autoresize.cnpg.io_autoresizepolicies.yaml";

/// The command that regenerates [`POLICY_CRD_FILE`].
pub const REGENERATE_POLICY_CRD: &str =
    "cargo run --bin crdgen > charts/cnpg-autoresize/crds/autoresize.cnpg.io_autoresizepolicies.yaml";

/// At most this many tablespaces in one policy (bounds the CEL cost, see the module docs).
pub const MAX_POLICY_TABLESPACES: u32 = 8;
/// A Kubernetes object name (DNS subdomain) is at most this long.
pub const MAX_CLUSTER_NAME_LENGTH: u32 = 253;
/// PostgreSQL's identifier length limit (NAMEDATALEN - 1).
pub const MAX_TABLESPACE_NAME_LENGTH: u32 = 63;
/// `maxLength` of the plain-string fields of a `resize` block (durations, `mode`).
pub const MAX_SHORT_STRING_LENGTH: u32 = 64;
/// `maxLength` of a quantity field (`step`, `minStep`, `limit`, ...): the longest
/// sensible quantity is ~25 characters; without a bound the API server sizes the value
/// at 3 MiB and the rules of eight tablespaces exceed its cost budget.
pub const MAX_QUANTITY_LENGTH: u32 = 64;

/// The AutoResizePolicy CRD, generated from the Rust types with its CEL rules.
pub fn policy_crd() -> CustomResourceDefinition {
    let mut crd = AutoResizePolicy::crd();
    for version in &mut crd.spec.versions {
        if let Some(schema) = version
            .schema
            .as_mut()
            .and_then(|s| s.open_api_v3_schema.as_mut())
        {
            if let Ok(mut value) = serde_json::to_value(&*schema) {
                drop_unrecognized_formats(&mut value);
                if let Ok(edited) = serde_json::from_value(value) {
                    *schema = edited;
                }
            }
        }
    }
    crd
}

/// schemars writes `format: uint64`/`uint32` for unsigned integers; an API server
/// knows only `int32` and `int64` for integers and warns about any other format.
fn drop_unrecognized_formats(node: &mut Value) {
    match node {
        Value::Object(map) => {
            let integer = map.get("type").and_then(Value::as_str) == Some("integer");
            let known = matches!(
                map.get("format").and_then(Value::as_str),
                Some("int32") | Some("int64")
            );
            if integer && !known {
                map.remove("format");
            }
            map.values_mut().for_each(drop_unrecognized_formats);
        }
        Value::Array(items) => items.iter_mut().for_each(drop_unrecognized_formats),
        _ => {}
    }
}

/// [`policy_crd`] as the YAML checked in under [`POLICY_CRD_FILE`], header included.
pub fn policy_crd_yaml() -> Result<String, serde_norway::Error> {
    let body = serde_norway::to_string(&policy_crd())?;
    Ok(format!(
        "# Generated from the Rust types (src/api/policy.rs, src/api/resize.rs) and the CEL\n\
         # rules of src/api/crd.rs. Do not edit by hand; regenerate with\n\
         #   {REGENERATE_POLICY_CRD}\n\
         # A test (api::cel_tests) fails when this file differs from the generator's output.\n\
         {body}"
    ))
}

// ---------------------------------------------------------------------------
// CEL rules of the AutoResizePolicy CRD
// ---------------------------------------------------------------------------

/// One `x-kubernetes-validations` entry.
struct Rule {
    rule: String,
    message: String,
    message_expression: Option<String>,
    field_path: Option<&'static str>,
    reason: Option<&'static str>,
}

impl Rule {
    fn new(rule: impl Into<String>, message: impl Into<String>) -> Rule {
        Rule {
            rule: rule.into(),
            message: message.into(),
            message_expression: None,
            field_path: None,
            reason: None,
        }
    }

    fn message_expression(mut self, expression: impl Into<String>) -> Rule {
        self.message_expression = Some(expression.into());
        self
    }

    fn field_path(mut self, path: &'static str) -> Rule {
        self.field_path = Some(path);
        self
    }

    fn reason(mut self, reason: &'static str) -> Rule {
        self.reason = Some(reason);
        self
    }

    fn to_value(&self) -> Value {
        let mut v = Map::new();
        v.insert("rule".into(), self.rule.clone().into());
        v.insert("message".into(), self.message.clone().into());
        if let Some(m) = &self.message_expression {
            v.insert("messageExpression".into(), m.clone().into());
        }
        if let Some(p) = self.field_path {
            v.insert("fieldPath".into(), p.into());
        }
        if let Some(r) = self.reason {
            v.insert("reason".into(), r.into());
        }
        Value::Object(v)
    }
}

/// CEL string literal (single quotes) of `text`.
fn lit(text: &str) -> String {
    format!("'{}'", text.replace('\\', "\\\\").replace('\'', "\\'"))
}

/// Go's `time.ParseDuration` grammar, as `parse_go_duration` reads it.
const GO_DURATION: &str = "^[+]?(0|(([0-9]+([.][0-9]*)?|[.][0-9]+)(ns|us|µs|μs|ms|s|m|h))+)$";
const QUANTITY_MESSAGE: &str = "must be a non-negative quantity like '10Gi' or a whole number of bytes (an empty string means unset)";
const DURATION_MESSAGE: &str = "must be a positive Go duration like \"90s\", \"30m\", \"6h\" or \"1h30m\" (an empty string means unset)";
pub(crate) const SINGLE_VOLUME_MESSAGE: &str = "the policy has no walStorage, so it is taken to govern a cluster without spec.walStorage, where WAL shares the data volume and growing it can hide failing archiving or an abandoned replication slot; set acknowledgeWALRisk: true to allow auto-resize, or add walStorage if the cluster has spec.walStorage";

/// A quantity field (int-or-string): "" (unset), or a non-negative quantity; an
/// integer reads as its decimal text (like `resolve`).
fn quantity_rule() -> Rule {
    Rule::new(
        "self == '' || (isQuantity(string(self)) && !string(self).startsWith('-'))",
        QUANTITY_MESSAGE,
    )
}

/// `step`: "<1..100>%" (leading zeros allowed) or a positive quantity; "" is unset;
/// integers are rejected (a non-zero one by the string method failing on it).
fn step_rule() -> Rule {
    let zero = lit(STEP_ZERO_MESSAGE);
    Rule::new(
        "self != 0 && (self == '' || (self.endsWith('%') ? self.matches('^0*([1-9][0-9]?|100)%$') \
         : (isQuantity(self) && sign(quantity(self)) > 0)))",
        STEP_INTEGER_MESSAGE,
    )
    .message_expression(format!(
        "self == 0 ? {zero} : self.endsWith('%') ? (self.matches('^[0-9]+%$') ? \
         (self.matches('^0+%$') ? {zero} : 'a percentage step must be between 1% and 100%') \
         : 'invalid percentage: use a whole number of percent like \\'20%\\'') \
         : isQuantity(self) ? (sign(quantity(self)) < 0 ? 'step must be positive' : {zero}) \
         : 'invalid quantity: step must be a percentage like \\'20%\\' or a quantity like \\'5Gi\\''"
    ))
}

/// A Go duration field: "" (unset) or a positive duration.
fn duration_rule() -> Rule {
    let grammar = lit(GO_DURATION);
    Rule::new(
        format!("self == '' || (self.matches({grammar}) && self.matches('[1-9]'))"),
        DURATION_MESSAGE,
    )
    .message_expression(format!(
        "self.startsWith('-') ? 'duration \"' + self + '\" must not be negative' \
         : self.matches({grammar}) ? 'must be a positive duration, got \"' + self + '\"' \
         : 'invalid duration \"' + self + '\": use a Go duration like \"90s\", \"30m\", \"6h\" or \"1h30m\"'"
    ))
}

fn int_range_rule(min: i64, max: Option<i64>, message: String) -> Rule {
    let rule = match max {
        Some(max) => format!("self >= {min} && self <= {max}"),
        None => format!("self >= {min}"),
    };
    Rule::new(rule, message)
}

/// `minStep` ≤ `maxStep` (with their defaults), checked only when both read as
/// non-negative quantities, like `resolve`. An unreadable one makes its `quantity()`
/// fail; the guard beside it absorbs that error.
fn step_order_rule() -> Rule {
    let set = |f: &str| format!("(has(self.{f}) && self.{f} != '')");
    let effective = |f: &str, default: &str| {
        format!(
            "({} ? quantity(string(self.{f})) : quantity('{default}'))",
            set(f)
        )
    };
    let min_default = super::quantity::format_bytes(super::resize::DEFAULT_MIN_STEP);
    let max_default = super::quantity::format_bytes(super::resize::DEFAULT_MAX_STEP);
    let rule = format!(
        "!{}.isGreaterThan({}) || ({} && !isQuantity(string(self.minStep))) || \
         ({} && (!isQuantity(string(self.maxStep)) || string(self.maxStep).startsWith('-')))",
        effective("minStep", &min_default),
        effective("maxStep", &max_default),
        set("minStep"),
        set("maxStep"),
    );
    Rule::new(
        rule,
        format!("minStep must not be greater than maxStep (their defaults: minStep {min_default}, maxStep {max_default})"),
    )
    .field_path(".minStep")
}

fn mode_rule() -> Rule {
    Rule::new(
        format!("self in ['', '{STANDARD_MODE}', '{RECOMMEND_MODE}']"),
        format!("unsupported mode; use \"{STANDARD_MODE}\" or \"{RECOMMEND_MODE}\""),
    )
    .message_expression(format!(
        "'unsupported mode \"' + self + '\"; use \"{STANDARD_MODE}\" or \"{RECOMMEND_MODE}\"'"
    ))
}

/// The property `name` of an object schema node (looking through an `anyOf` that
/// wraps an optional value).
fn property<'a>(node: &'a mut Value, name: &str) -> Option<&'a mut Value> {
    if node.pointer(&format!("/properties/{name}")).is_some() {
        return node.pointer_mut(&format!("/properties/{name}"));
    }
    node.get_mut("anyOf")?
        .as_array_mut()?
        .iter_mut()
        .find_map(|branch| branch.pointer_mut(&format!("/properties/{name}")))
}

fn add_rules(node: &mut Value, rules: &[Rule]) {
    let Some(obj) = node.as_object_mut() else {
        return;
    };
    let list = obj
        .entry("x-kubernetes-validations")
        .or_insert_with(|| Value::Array(Vec::new()));
    if let Value::Array(list) = list {
        list.extend(rules.iter().map(Rule::to_value));
    }
}

/// An int-or-string node as `x-kubernetes-int-or-string: true` alone (like k8s-openapi's
/// `IntOrString`): kube's structural rewriter would otherwise leave `anyOf: [{}, {}]`
/// of the `anyOf: [{type: integer}, {type: string}]` that `IntOrString` declares.
fn plain_int_or_string(node: &mut Value) {
    let int_or_string = json!([{"type": "integer"}, {"type": "string"}]);
    let Some(obj) = node.as_object_mut() else {
        return;
    };
    if obj.get("anyOf") == Some(&int_or_string) {
        obj.remove("anyOf");
    }
    if let Some(Value::Array(branches)) = obj.get_mut("anyOf") {
        for branch in branches {
            if let Some(b) = branch.as_object_mut() {
                if b.get("anyOf") == Some(&int_or_string) {
                    b.remove("anyOf");
                }
            }
        }
    }
}

fn set_keyword(node: &mut Value, key: &str, value: Value) {
    if let Some(obj) = node.as_object_mut() {
        obj.insert(key.into(), value);
    }
}

/// Applies `edit` to the JSON of `schema`.
fn edit_schema(schema: &mut schemars::Schema, edit: fn(&mut Value)) {
    let mut value = std::mem::take(schema).to_value();
    edit(&mut value);
    if let Ok(edited) = schemars::Schema::try_from(value) {
        *schema = edited;
    }
}

/// schemars transform of `spec` (on `AutoResizePolicySpec`): the rules that need more
/// than one `resize` block, and those of `cluster` and `tablespaces`.
pub fn policy_spec_schema(schema: &mut schemars::Schema) {
    edit_schema(schema, spec_rules);
}

fn spec_rules(node: &mut Value) {
    // No comparison with `null`: the API server does not type CEL's null (comparing a
    // field with it fails to compile); a null field is absent (`has()` is false).
    let enabled = "has(self.storage) && has(self.storage.resize) && \
                   has(self.storage.resize.enabled) && self.storage.resize.enabled == true";
    let wal = "has(self.walStorage)";
    let s = "self.storage.resize.strategy";
    let ack = format!(
        "has({s}) && has({s}.walSafetyPolicy) && has({s}.walSafetyPolicy.acknowledgeWALRisk) && \
         {s}.walSafetyPolicy.acknowledgeWALRisk == true"
    );
    add_rules(
        node,
        &[Rule::new(
            format!("!({enabled}) || ({wal}) || ({ack})"),
            SINGLE_VOLUME_MESSAGE,
        )
        .field_path(".storage.resize.strategy.walSafetyPolicy.acknowledgeWALRisk")
        .reason("FieldValueRequired")],
    );
    if let Some(cluster) = property(node, "cluster") {
        add_rules(
            cluster,
            &[Rule::new(
                "self.trim() != ''",
                "names no cluster: set the name of the CloudNativePG Cluster this policy governs",
            )
            .reason("FieldValueRequired")],
        );
    }
    if let Some(tablespaces) = property(node, "tablespaces") {
        add_rules(
            tablespaces,
            &[Rule::new(
                "self.all(t, t.name == '' || self.exists_one(u, u.name == t.name))",
                "a tablespace is configured twice: each tablespace name may appear once",
            )],
        );
        if let Some(name) = tablespaces
            .get_mut("items")
            .and_then(|items| property(items, "name"))
        {
            add_rules(
                name,
                &[Rule::new("self != ''", "a tablespace needs its name")
                    .reason("FieldValueRequired")],
            );
        }
    }
}

/// schemars transform of a policy's `resize` block (`PolicyVolume.resize`,
/// `PolicyTablespace.resize`): the per-field rules of docs/reference/configuration.md#validation-errors.
pub fn policy_resize_schema(schema: &mut schemars::Schema) {
    edit_schema(schema, resize_rules);
}

fn resize_rules(node: &mut Value) {
    let short = Value::from(MAX_SHORT_STRING_LENGTH);
    let quantity = Value::from(MAX_QUANTITY_LENGTH);
    if let Some(triggers) = property(node, "triggers") {
        if let Some(n) = property(triggers, "usageThreshold") {
            add_rules(
                n,
                &[int_range_rule(
                    1,
                    Some(99),
                    "must be between 1 and 99 (percent used)".into(),
                )],
            );
        }
        if let Some(n) = property(triggers, "inodeUsageThreshold") {
            add_rules(
                n,
                &[int_range_rule(
                    1,
                    Some(99),
                    "must be between 1 and 99 (percent of inodes used)".into(),
                )],
            );
        }
        if let Some(n) = property(triggers, "minAvailable") {
            plain_int_or_string(n);
            set_keyword(n, "maxLength", quantity.clone());
            add_rules(n, &[quantity_rule()]);
        }
        if let Some(n) = property(triggers, "timeToFull") {
            set_keyword(n, "maxLength", short.clone());
            add_rules(n, &[duration_rule()]);
        }
    }
    if let Some(expansion) = property(node, "expansion") {
        add_rules(expansion, &[step_order_rule()]);
        if let Some(n) = property(expansion, "step") {
            plain_int_or_string(n);
            set_keyword(n, "maxLength", quantity.clone());
            add_rules(n, &[step_rule()]);
        }
        for field in ["minStep", "maxStep", "limit"] {
            if let Some(n) = property(expansion, field) {
                plain_int_or_string(n);
                set_keyword(n, "maxLength", quantity.clone());
                add_rules(n, &[quantity_rule()]);
            }
        }
        if let Some(n) = property(expansion, "horizon") {
            set_keyword(n, "maxLength", short.clone());
            add_rules(n, &[duration_rule()]);
        }
    }
    if let Some(strategy) = property(node, "strategy") {
        if let Some(n) = property(strategy, "mode") {
            set_keyword(n, "maxLength", short.clone());
            add_rules(n, &[mode_rule()]);
        }
        if let Some(n) = property(strategy, "maxActionsPerDay") {
            add_rules(
                n,
                &[int_range_rule(
                    0,
                    Some(i64::from(MAX_ACTIONS_PER_DAY_CEILING)),
                    format!("must be between 0 and {MAX_ACTIONS_PER_DAY_CEILING}"),
                )],
            );
        }
        if let Some(n) = property(strategy, "cooldown") {
            set_keyword(n, "maxLength", short.clone());
            add_rules(n, &[duration_rule()]);
        }
        if let Some(wal) = property(strategy, "walSafetyPolicy") {
            if let Some(n) = property(wal, "maxPendingWALFiles") {
                add_rules(
                    n,
                    &[int_range_rule(
                        0,
                        None,
                        "must be 0 (check disabled) or more".into(),
                    )],
                );
            }
            if let Some(n) = property(wal, "maxSlotRetentionBytes") {
                plain_int_or_string(n);
                set_keyword(n, "maxLength", quantity.clone());
                add_rules(n, &[quantity_rule()]);
            }
        }
    }
}

// ---------------------------------------------------------------------------
// A Cluster CRD from the project's own types
// ---------------------------------------------------------------------------

// The Cluster fields the project reads and writes (`cluster.rs`), for the schema: the
// same names and wire types as `ClusterSpec` and `ClusterStatus`. Every struct there
// keeps unknown fields (`extra`), and so does the schema
// (`x-kubernetes-preserve-unknown-fields`), except inside the `resize` blocks and the
// status entries the project owns, which are pruned like the fork's CRD prunes them.
// (`cluster.rs` types do not derive `JsonSchema`; `api::cel_tests` checks these mirror
// them.) Doc comments here become the CRD's descriptions.

/// Specification of a CloudNativePG Cluster: the fields cnpg-autoresize reads and
/// writes are described here; the others are kept as written.
#[allow(dead_code)]
#[derive(CustomResource, Clone, Debug, Default, Serialize, Deserialize, JsonSchema)]
#[kube(
    group = "postgresql.cnpg.io",
    version = "v1",
    kind = "Cluster",
    root = "ClusterShape",
    plural = "clusters",
    namespaced,
    status = "ClusterStatusShape",
    doc = "A CloudNativePG Cluster (schema generated by cnpg-autoresize from the fields it reads and writes)"
)]
#[serde(rename_all = "camelCase")]
pub(crate) struct ClusterSpecShape {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    storage: Option<StorageShape>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    wal_storage: Option<StorageShape>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    tablespaces: Option<Vec<TablespaceShape>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    backup: Option<BackupShape>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    plugins: Option<Vec<PluginShape>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    replication_slots: Option<ReplicationSlotsShape>,
    #[serde(flatten)]
    extra: Extra,
}

#[allow(dead_code)]
#[derive(Clone, Debug, Default, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
struct StorageShape {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    size: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    storage_class: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    resize: Option<Lenient<ResizeConfiguration>>,
    #[serde(flatten)]
    extra: Extra,
}

#[allow(dead_code)]
#[derive(Clone, Debug, Default, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
struct TablespaceShape {
    #[serde(default)]
    name: String,
    #[serde(default)]
    storage: StorageShape,
    #[serde(flatten)]
    extra: Extra,
}

#[allow(dead_code)]
#[derive(Clone, Debug, Default, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
struct BackupShape {
    /// Kept as opaque data: only its presence matters (WAL archiving is configured).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "opaque_object")]
    barman_object_store: Option<Value>,
    #[serde(flatten)]
    extra: Extra,
}

#[allow(dead_code)]
#[derive(Clone, Debug, Default, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
struct PluginShape {
    #[serde(default)]
    name: String,
    #[serde(
        rename = "isWALArchiver",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    is_wal_archiver: Option<bool>,
    #[serde(flatten)]
    extra: Extra,
}

#[allow(dead_code)]
#[derive(Clone, Debug, Default, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
struct ReplicationSlotsShape {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    high_availability: Option<HighAvailabilityShape>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    synchronize_replicas: Option<SynchronizeReplicasShape>,
    #[serde(flatten)]
    extra: Extra,
}

#[allow(dead_code)]
#[derive(Clone, Debug, Default, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
struct SynchronizeReplicasShape {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    enabled: Option<bool>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    exclude_patterns: Vec<String>,
    #[serde(flatten)]
    extra: Extra,
}

#[allow(dead_code)]
#[derive(Clone, Debug, Default, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
struct HighAvailabilityShape {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    slot_prefix: Option<String>,
    #[serde(flatten)]
    extra: Extra,
}

/// Observed state of a CloudNativePG Cluster: the entries cnpg-autoresize writes are
/// described here; the others are kept as written.
#[allow(dead_code)]
#[derive(Clone, Debug, Default, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub(crate) struct ClusterStatusShape {
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    auto_resize_events: Vec<Lenient<AutoResizeEvent>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    disk_status: Option<Lenient<ClusterDiskStatus>>,
    #[serde(flatten)]
    extra: Extra,
}

fn opaque_object(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
    schemars::json_schema!({
        "type": "object",
        "x-kubernetes-preserve-unknown-fields": true,
    })
}

/// Fields of the project's types that only an AutoResizePolicy can carry (docs/reference/configuration.md#fields-only-a-policy-can-carry): the
/// fork's CRD has no place for them, so a real API server prunes them from a Cluster.
const POLICY_ONLY_RESIZE_FIELDS: [(&str, &str); 4] = [
    ("triggers", "inodeUsageThreshold"),
    ("triggers", "timeToFull"),
    ("expansion", "horizon"),
    ("strategy", "cooldown"),
];
/// Status fields the project writes that only the policy's status keeps.
const POLICY_ONLY_EVENT_FIELDS: [&str; 2] = ["trigger", "filesystemBytes"];
const POLICY_ONLY_VOLUME_STATUS_FIELDS: [&str; 1] = ["growthBytesPerSecond"];

/// A `postgresql.cnpg.io/v1` `Cluster` CRD (namespaced, status subresource) whose schema
/// is generated from the Cluster fields the project reads and writes (`cluster.rs`:
/// `spec.storage`/`walStorage`/`tablespaces` with their `resize` blocks, `backup`,
/// `plugins`, `replicationSlots`; `status.autoResizeEvents` and `status.diskStatus`),
/// shaped as the fork's CRD declares them:
///
/// - without the fields only a policy can carry (`inodeUsageThreshold`, `timeToFull`,
///   `horizon`, `cooldown`; the status' `trigger`, `filesystemBytes`,
///   `growthBytesPerSecond`) and with `mode` limited to `[Standard]`;
/// - with the fork's wire types where `resize.rs` reads more leniently (`minAvailable`,
///   `minStep`, `maxStep`, `limit` are strings; `maxSlotRetentionBytes` an int64), its
///   bounds (`usageThreshold` 1..99, `maxActionsPerDay` 0..10) and its defaults;
/// - nothing nullable and no required fields (a `null` is dropped, as the fork's CRD
///   does with a Go zero timestamp);
/// - unknown fields kept where the project's types keep them (`extra`, and the opaque
///   `barmanObjectStore`), pruned in the `resize` blocks and status entries.
///
/// `api::cel_tests` checks it against the fork's real CRD: every property path exists
/// there with the same type, enums are subsets, and the paths under `resize`,
/// `autoResizeEvents` and `diskStatus` are the same set.
pub fn generated_cluster_crd() -> CustomResourceDefinition {
    let crd = ClusterShape::crd();
    let mut value = match serde_json::to_value(&crd) {
        Ok(v) => v,
        Err(_) => return crd,
    };
    if let Some(schema) = value.pointer_mut("/spec/versions/0/schema/openAPIV3Schema") {
        fork_shape(schema);
    }
    serde_json::from_value(value).unwrap_or(crd)
}

/// [`generated_cluster_crd`] as YAML (what `Sandbox::register_crd` takes).
pub fn generated_cluster_crd_yaml() -> Result<String, serde_norway::Error> {
    serde_norway::to_string(&generated_cluster_crd())
}

fn fork_shape(root: &mut Value) {
    if let Some(obj) = root.as_object_mut() {
        obj.remove("title");
    }
    if let Some(Value::Object(props)) = root.get_mut("properties") {
        props.values_mut().for_each(strip_keywords);
    }
    let resize_blocks = [
        "/properties/spec/properties/storage/properties/resize",
        "/properties/spec/properties/walStorage/properties/resize",
        "/properties/spec/properties/tablespaces/items/properties/storage/properties/resize",
    ];
    for path in resize_blocks {
        if let Some(block) = root.pointer_mut(path) {
            fork_resize(block);
        }
    }
    if let Some(event) =
        root.pointer_mut("/properties/status/properties/autoResizeEvents/items/properties")
    {
        remove_keys(event, &POLICY_ONLY_EVENT_FIELDS);
    }
    let instance = "/properties/status/properties/diskStatus/properties/instances/additionalProperties/properties";
    for volume in ["dataVolume", "walVolume"] {
        if let Some(v) = root.pointer_mut(&format!("{instance}/{volume}/properties")) {
            remove_keys(v, &POLICY_ONLY_VOLUME_STATUS_FIELDS);
        }
    }
    if let Some(v) = root.pointer_mut(&format!(
        "{instance}/tablespaces/additionalProperties/properties"
    )) {
        remove_keys(v, &POLICY_ONLY_VOLUME_STATUS_FIELDS);
    }
}

fn remove_keys(map: &mut Value, keys: &[&str]) {
    if let Some(map) = map.as_object_mut() {
        for k in keys {
            map.remove(*k);
        }
    }
}

/// Below the root: no `nullable`, `required` or schemars `default`; unsigned integers
/// as the int64 the fork's Go types use.
fn strip_keywords(node: &mut Value) {
    let Some(map) = node.as_object_mut() else {
        return;
    };
    map.remove("nullable");
    map.remove("required");
    map.remove("default");
    if map.get("x-kubernetes-int-or-string") == Some(&Value::Bool(true)) {
        // What kube's rewriter leaves of IntOrString's `anyOf: [{type: integer}, {type: string}]`.
        map.remove("anyOf");
    }
    let unsigned = map
        .get("format")
        .and_then(Value::as_str)
        .is_some_and(|f| f.starts_with("uint"));
    if unsigned {
        map.insert("format".into(), "int64".into());
        if map.get("minimum").and_then(Value::as_f64) == Some(0.0) {
            map.remove("minimum");
        }
    }
    for (key, child) in map.iter_mut() {
        match (key.as_str(), child) {
            ("properties", Value::Object(props)) => props.values_mut().for_each(strip_keywords),
            ("items" | "additionalProperties" | "not", child) => strip_keywords(child),
            ("anyOf" | "allOf" | "oneOf", Value::Array(branches)) => {
                branches.iter_mut().for_each(strip_keywords)
            }
            _ => {}
        }
    }
}

/// The fork's shape of a `resize` block (see [`generated_cluster_crd`]).
fn fork_resize(block: &mut Value) {
    for (group, field) in POLICY_ONLY_RESIZE_FIELDS {
        if let Some(props) = block.pointer_mut(&format!("/properties/{group}/properties")) {
            remove_keys(props, &[field]);
        }
    }
    let string = |node: &mut Value| {
        let description = node.get("description").cloned();
        *node = json!({"type": "string"});
        if let Some(d) = description {
            set_keyword(node, "description", d);
        }
    };
    let mut at = |path: &str, f: &mut dyn FnMut(&mut Value)| {
        if let Some(node) = block.pointer_mut(path) {
            f(node);
        }
    };
    let min_step = super::quantity::format_bytes(super::resize::DEFAULT_MIN_STEP);
    let max_step = super::quantity::format_bytes(super::resize::DEFAULT_MAX_STEP);
    at("/properties/enabled", &mut |n| {
        set_keyword(n, "default", false.into())
    });
    at("/properties/triggers/properties/minAvailable", &mut |n| {
        string(n)
    });
    at("/properties/triggers/properties/usageThreshold", &mut |n| {
        set_keyword(n, "minimum", 1.into());
        set_keyword(n, "maximum", 99.into());
    });
    for field in ["minStep", "maxStep", "limit"] {
        at(
            &format!("/properties/expansion/properties/{field}"),
            &mut |n| string(n),
        );
    }
    at("/properties/expansion/properties/minStep", &mut |n| {
        set_keyword(n, "default", min_step.clone().into())
    });
    at("/properties/expansion/properties/maxStep", &mut |n| {
        set_keyword(n, "default", max_step.clone().into())
    });
    at("/properties/strategy/properties/mode", &mut |n| {
        set_keyword(n, "enum", json!([STANDARD_MODE]));
        set_keyword(n, "default", STANDARD_MODE.into());
    });
    at(
        "/properties/strategy/properties/maxActionsPerDay",
        &mut |n| {
            set_keyword(n, "minimum", 0.into());
            set_keyword(n, "maximum", MAX_ACTIONS_PER_DAY_CEILING.into());
        },
    );
    let wal = "/properties/strategy/properties/walSafetyPolicy/properties";
    at(&format!("{wal}/maxSlotRetentionBytes"), &mut |n| {
        let description = n.get("description").cloned();
        *n = json!({"type": "integer", "format": "int64"});
        if let Some(d) = description {
            set_keyword(n, "description", d);
        }
    });
    at(&format!("{wal}/maxPendingWALFiles"), &mut |n| {
        set_keyword(n, "default", DEFAULT_MAX_PENDING_WAL_FILES.into())
    });
    at(&format!("{wal}/requireArchiveHealthy"), &mut |n| {
        set_keyword(n, "default", true.into())
    });
    at(&format!("{wal}/alertOnResize"), &mut |n| {
        set_keyword(n, "default", true.into())
    });
}
