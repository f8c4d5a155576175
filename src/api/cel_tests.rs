//! The CRDs of `api::crd`: the checked-in AutoResizePolicy CRD is the generator's
//! output and a structural schema; its CEL rules (evaluated with kube-cel, as the
//! sandbox does) agree with `validate` case by case, on the validation table and on
//! policy-only cases; the generated Cluster CRD matches the fork's real one.

use super::crd::{
    generated_cluster_crd, policy_crd, policy_crd_yaml, POLICY_CRD_FILE, REGENERATE_POLICY_CRD,
};
use super::policy::AutoResizePolicy;
use super::validation::{validate_policy, ValidationContext};
use super::validation_tests::{base, error_cases, merge, ErrorCase, DATA};
use serde_json::{json, Value};
use std::collections::{BTreeMap, BTreeSet};

fn workspace_file(relative: &str) -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join(relative)
}

fn openapi_schema(crd: &impl serde::Serialize) -> Value {
    let crd = serde_json::to_value(crd).unwrap();
    crd.pointer("/spec/versions/0/schema/openAPIV3Schema")
        .cloned()
        .expect("the CRD has an openAPIV3Schema")
}

#[test]
fn the_checked_in_policy_crd_is_the_generators_output() {
    let path = workspace_file(POLICY_CRD_FILE);
    let generated = policy_crd_yaml().unwrap();
    let checked_in = std::fs::read_to_string(&path).unwrap_or_else(|e| {
        panic!(
            "{} cannot be read ({e}); generate it with `{REGENERATE_POLICY_CRD}`",
            path.display()
        )
    });
    if checked_in != generated {
        let first = checked_in
            .lines()
            .zip(generated.lines())
            .position(|(a, b)| a != b)
            .unwrap_or_else(|| checked_in.lines().count().min(generated.lines().count()));
        panic!(
            "{POLICY_CRD_FILE} is not what the Rust types generate (first difference at line {}: \
             checked in {:?}, generated {:?}); regenerate it with `{REGENERATE_POLICY_CRD}` and commit it",
            first + 1,
            checked_in.lines().nth(first),
            generated.lines().nth(first),
        );
    }
    // The header says how; the document is the CRD.
    assert!(checked_in.starts_with("# Generated"), "header comment");
    let doc: Value = serde_norway::from_str(&checked_in).unwrap();
    assert_eq!(
        doc["metadata"]["name"],
        "autoresizepolicies.autoresize.cnpg.io"
    );
    // Descriptions are what `kubectl explain` shows users: no notes for us.
    for internal in ["SPEC", "§", "[`"] {
        assert!(
            !checked_in.contains(internal),
            "a CRD description carries {internal:?}: reword the doc comment in src/api"
        );
    }
}

/// Kubernetes' structural-schema rules for what the generator produces: a type on every
/// node (except int-or-string and preserve-unknown-fields nodes), no `$ref`, no
/// `additionalProperties` beside `properties`, int-or-string without a type, and no
/// types inside `anyOf`/`allOf`/`oneOf`.
fn structural_problems(node: &Value, path: &str, out: &mut Vec<String>) {
    let Some(obj) = node.as_object() else {
        out.push(format!("{path}: not an object schema"));
        return;
    };
    if obj.contains_key("$ref") {
        out.push(format!("{path}: $ref"));
    }
    if obj.contains_key("additionalProperties") && obj.contains_key("properties") {
        out.push(format!("{path}: additionalProperties beside properties"));
    }
    let int_or_string = obj.get("x-kubernetes-int-or-string") == Some(&Value::Bool(true));
    let preserve = obj.get("x-kubernetes-preserve-unknown-fields") == Some(&Value::Bool(true));
    match obj.get("type").and_then(Value::as_str) {
        Some(_) if int_or_string => out.push(format!("{path}: int-or-string with a type")),
        Some("object" | "array" | "string" | "integer" | "number" | "boolean") => {}
        Some(other) => out.push(format!("{path}: type {other}")),
        None if int_or_string || preserve => {}
        None => out.push(format!("{path}: no type")),
    }
    for key in ["anyOf", "allOf", "oneOf"] {
        for branch in obj.get(key).and_then(Value::as_array).into_iter().flatten() {
            if branch.get("type").is_some() || branch.get("properties").is_some() {
                out.push(format!("{path}.{key}: a branch with a type or properties"));
            }
        }
    }
    for (k, child) in obj
        .get("properties")
        .and_then(Value::as_object)
        .into_iter()
        .flatten()
    {
        structural_problems(child, &format!("{path}.{k}"), out);
    }
    if let Some(items) = obj.get("items") {
        structural_problems(items, &format!("{path}[]"), out);
    }
    if let Some(additional) = obj.get("additionalProperties").filter(|a| a.is_object()) {
        structural_problems(additional, &format!("{path}{{}}"), out);
    }
}

/// The API server's own checks (compiled against the Kubernetes CEL libraries, costed
/// as it costs them) on Kubernetes 1.30 (CEL compatibility 1.29, the oldest the chart
/// supports) and 1.36: no error, no warning, and the cost within budget with room.
#[test]
fn the_policy_crd_compiles_and_fits_the_cost_budget_on_every_supported_kubernetes() {
    use kube_sandbox::celcheck::{check_crd_schema, decls, PER_CRD_COST_LIMIT};
    let schema = openapi_schema(&policy_crd());
    for version in [decls::OLDEST_SUPPORTED, decls::CURRENT] {
        let report = check_crd_schema(&schema, version, "spec.validation.openAPIV3Schema");
        assert!(
            report.errors.is_empty(),
            "1.{version}: {:#?}",
            report.errors
        );
        assert!(
            report.warnings.is_empty(),
            "1.{version}: {:?}",
            report.warnings
        );
        let (rule, most) = report
            .costs
            .iter()
            .max_by_key(|(_, c)| *c)
            .cloned()
            .unwrap_or_default();
        println!(
            "1.{version}: {} expressions, total cost {} ({:.1}% of the budget); most expensive {most} at {rule}",
            report.costs.len(),
            report.total_cost,
            100.0 * report.total_cost as f64 / PER_CRD_COST_LIMIT as f64
        );
        assert!(
            report.total_cost < PER_CRD_COST_LIMIT / 2,
            "1.{version}: total {} — keep room for new rules",
            report.total_cost
        );
    }
}

#[test]
fn the_crds_are_structural_and_the_policy_crd_is_bounded_for_cel() {
    for (name, schema) in [
        ("policy", openapi_schema(&policy_crd())),
        ("cluster", openapi_schema(&generated_cluster_crd())),
    ] {
        let mut problems = Vec::new();
        structural_problems(&schema, "", &mut problems);
        assert_eq!(problems, Vec::<String>::new(), "{name} CRD");
    }
    let schema = openapi_schema(&policy_crd());
    // The API server does not integrate CEL's null type: a rule comparing a value with
    // `null` does not compile there, and the CRD would be refused.
    let text = serde_json::to_string(&schema).unwrap();
    assert!(
        !text.contains("null)") && !text.contains("= null"),
        "a rule compares with null"
    );
    let spec = &schema["properties"]["spec"];
    assert_eq!(spec["properties"]["tablespaces"]["maxItems"], 8);
    assert_eq!(
        spec["properties"]["tablespaces"]["items"]["properties"]["name"]["maxLength"],
        63
    );
    // Every plain string a rule runs a regex on has a maxLength (else its estimated
    // cost is that of a 3 MiB string); int-or-string values cannot have one.
    let mut unbounded = Vec::new();
    fn visit(node: &Value, path: &str, unbounded: &mut Vec<String>) {
        let regex = node["x-kubernetes-validations"]
            .as_array()
            .into_iter()
            .flatten()
            .any(|r| r["rule"].as_str().unwrap_or("").contains("matches("));
        if regex && node["type"] == "string" && node.get("maxLength").is_none() {
            unbounded.push(path.to_string());
        }
        for (k, c) in node["properties"].as_object().into_iter().flatten() {
            visit(c, &format!("{path}.{k}"), unbounded);
        }
        if node.get("items").is_some() {
            visit(&node["items"], &format!("{path}[]"), unbounded);
        }
    }
    visit(spec, "spec", &mut unbounded);
    assert_eq!(unbounded, Vec::<String>::new());
}

/// The errors of the CRD's CEL rules for `policy`, as `(field, message)`.
fn cel_errors(policy: &Value) -> Vec<(String, String)> {
    let schema = openapi_schema(&policy_crd());
    kube_sandbox::CelRuleEvaluator::new()
        .validate(&schema, policy, None)
        .iter()
        .map(|e| (e.field.clone(), e.to_string()))
        .collect()
}

fn policy(spec: Value) -> Value {
    json!({
        "apiVersion": "autoresize.cnpg.io/v1alpha1", "kind": "AutoResizePolicy",
        "metadata": {"name": "p", "namespace": "default"}, "spec": spec,
    })
}

/// `validate_policy` (without a Cluster) on `object`, as `(field, message)` errors.
fn validate_errors(object: &Value) -> Vec<(String, String)> {
    let typed: AutoResizePolicy = serde_json::from_value(object.clone()).unwrap();
    validate_policy(&typed, None, ValidationContext::default())
        .errors
        .into_iter()
        .map(|e| (e.field, e.message))
        .collect()
}

/// Both reject, with the same fields; `expected` are `(field, validate's fragment,
/// CEL's fragment)`; or both accept when `expected` is empty.
fn assert_agree(name: &str, object: &Value, expected: &[(&str, &str, &str)]) {
    let validate = validate_errors(object);
    let cel = cel_errors(object);
    assert_eq!(
        validate.is_empty(),
        cel.is_empty(),
        "{name}: verdicts differ: validate {validate:?}, CEL {cel:?}"
    );
    let fields = |errors: &[(String, String)]| -> BTreeSet<String> {
        errors.iter().map(|(f, _)| f.clone()).collect()
    };
    let want: BTreeSet<String> = expected.iter().map(|(f, _, _)| f.to_string()).collect();
    assert_eq!(
        fields(&validate),
        want,
        "{name}: validate's fields: {validate:?}"
    );
    assert_eq!(fields(&cel), want, "{name}: CEL's fields: {cel:?}");
    assert_eq!(
        cel.len(),
        want.len(),
        "{name}: one CEL error per field: {cel:?}"
    );
    for (field, validate_fragment, cel_fragment) in expected {
        assert!(
            validate
                .iter()
                .any(|(f, m)| f == field && m.contains(validate_fragment)),
            "{name}: validate at {field} ~ {validate_fragment:?}: {validate:?}"
        );
        assert!(
            cel.iter()
                .any(|(f, m)| f == field && m.contains(cel_fragment)),
            "{name}: CEL at {field} ~ {cel_fragment:?}: {cel:?}"
        );
    }
}

#[test]
fn cel_rules_agree_with_validate_on_the_validation_table() {
    let cases = error_cases();
    assert_eq!(cases.len(), 23, "every case of the table");
    for ErrorCase {
        name,
        resize,
        field,
        message,
        cel_message,
    } in cases
    {
        // The table's Cluster (`base`) as a policy: the same data block, and a WAL
        // volume (the policy has `walStorage`, so the single-volume rule stays quiet).
        let data = base(resize)["storage"]["resize"].clone();
        let object =
            policy(json!({"cluster": "pg", "storage": {"resize": data}, "walStorage": {}}));
        let want = format!("{DATA}.{field}");
        assert_agree(name, &object, &[(&want, message, cel_message)]);
    }
    // The table's base block is valid for both.
    let data = base(json!({}))["storage"]["resize"].clone();
    assert_agree(
        "base",
        &policy(json!({"cluster": "pg", "storage": {"resize": data}, "walStorage": {}})),
        &[],
    );
}

#[test]
fn cel_rules_agree_with_validate_on_policy_cases() {
    let ok = json!({"enabled": true, "expansion": {"limit": "100Gi"}});
    let block = |extra: Value| merge(ok.clone(), extra);
    let data = |extra: Value| json!({"cluster": "pg", "walStorage": {}, "storage": {"resize": block(extra)}});
    let triggers = "spec.storage.resize.triggers";
    let expansion = "spec.storage.resize.expansion";
    let strategy = "spec.storage.resize.strategy";
    let ack = "spec.storage.resize.strategy.walSafetyPolicy.acknowledgeWALRisk";
    type Case<'a> = (&'a str, Value, Vec<(String, &'a str, &'a str)>);
    let at = |path: &str, field: &str| format!("{path}.{field}");
    let cases: Vec<Case> = vec![
        // Accepted by both.
        (
            "durations",
            data(
                json!({"triggers": {"timeToFull": "6h", "inodeUsageThreshold": 90},
            "expansion": {"horizon": "1h30m"}, "strategy": {"cooldown": "90s"}}),
            ),
            vec![],
        ),
        (
            "Go duration forms",
            data(json!({"triggers": {"timeToFull": "+1.5h"},
            "expansion": {"horizon": ".5s"}, "strategy": {"cooldown": "300ms"}})),
            vec![],
        ),
        (
            "mode Recommend",
            data(json!({"strategy": {"mode": "Recommend"}})),
            vec![],
        ),
        (
            "empty strings are unset",
            data(json!({"triggers": {"minAvailable": "", "timeToFull": ""},
            "expansion": {"step": "", "minStep": "", "horizon": ""}, "strategy": {"mode": "", "cooldown": ""}})),
            vec![],
        ),
        (
            "step forms",
            data(json!({"expansion": {"step": "020%"}})),
            vec![],
        ),
        (
            "step 100%",
            data(json!({"expansion": {"step": "100%"}})),
            vec![],
        ),
        (
            "absolute step",
            data(json!({"expansion": {"step": "5Gi"}})),
            vec![],
        ),
        (
            "integer quantities",
            data(json!({"triggers": {"minAvailable": 1073741824},
            "expansion": {"minStep": 0, "maxStep": 2147483648u64},
            "strategy": {"walSafetyPolicy": {"maxSlotRetentionBytes": 1073741824, "maxPendingWALFiles": 0}}})),
            vec![],
        ),
        (
            "maxActionsPerDay 0",
            data(json!({"strategy": {"maxActionsPerDay": 0}})),
            vec![],
        ),
        (
            "tablespaces",
            json!({"cluster": "pg", "tablespaces": [
            {"name": "a", "resize": block(json!({}))}, {"name": "b"}]}),
            vec![],
        ),
        (
            "single volume acknowledged",
            json!({"cluster": "pg", "storage": {"resize":
            block(json!({"strategy": {"walSafetyPolicy": {"acknowledgeWALRisk": true}}}))}}),
            vec![],
        ),
        (
            "single volume disabled",
            json!({"cluster": "pg", "storage": {"resize": {"enabled": false}}}),
            vec![],
        ),
        (
            "WAL only",
            json!({"cluster": "pg", "walStorage": {"resize": block(json!({}))}}),
            vec![],
        ),
        // Durations.
        (
            "timeToFull unit",
            data(json!({"triggers": {"timeToFull": "1d"}})),
            vec![(
                at(triggers, "timeToFull"),
                "invalid duration \"1d\"",
                "invalid duration \"1d\"",
            )],
        ),
        (
            "timeToFull zero",
            data(json!({"triggers": {"timeToFull": "0s"}})),
            vec![(
                at(triggers, "timeToFull"),
                "positive duration",
                "must be a positive duration, got \"0s\"",
            )],
        ),
        (
            "horizon negative",
            data(json!({"expansion": {"horizon": "-5m"}})),
            vec![(
                at(expansion, "horizon"),
                "must not be negative",
                "duration \"-5m\" must not be negative",
            )],
        ),
        (
            "horizon ISO 8601",
            data(json!({"expansion": {"horizon": "PT1H"}})),
            vec![(
                at(expansion, "horizon"),
                "invalid duration",
                "invalid duration \"PT1H\"",
            )],
        ),
        (
            "cooldown 0",
            data(json!({"strategy": {"cooldown": "0"}})),
            vec![(
                at(strategy, "cooldown"),
                "positive duration",
                "must be a positive duration",
            )],
        ),
        (
            "cooldown without unit",
            data(json!({"strategy": {"cooldown": "6"}})),
            vec![(
                at(strategy, "cooldown"),
                "invalid duration",
                "invalid duration \"6\"",
            )],
        ),
        // Inodes.
        (
            "inodes 0",
            data(json!({"triggers": {"inodeUsageThreshold": 0}})),
            vec![(
                at(triggers, "inodeUsageThreshold"),
                "between 1 and 99",
                "percent of inodes used",
            )],
        ),
        (
            "inodes 100",
            data(json!({"triggers": {"inodeUsageThreshold": 100}})),
            vec![(
                at(triggers, "inodeUsageThreshold"),
                "got 100",
                "between 1 and 99",
            )],
        ),
        // Quantities and steps beyond the table.
        (
            "negative integer quantity",
            data(json!({"triggers": {"minAvailable": -5}})),
            vec![(
                at(triggers, "minAvailable"),
                "\"-5\" must not be negative",
                "non-negative",
            )],
        ),
        (
            "negative maxStep alone",
            data(json!({"expansion": {"minStep": "1Gi", "maxStep": "-5Gi"}})),
            vec![(at(expansion, "maxStep"), "negative", "non-negative")],
        ),
        (
            "default minStep above maxStep",
            data(json!({"expansion": {"minStep": "", "maxStep": "1Gi"}})),
            vec![(
                at(expansion, "minStep"),
                "greater than maxStep",
                "greater than maxStep",
            )],
        ),
        (
            "integer minStep above maxStep",
            data(json!({"expansion": {"minStep": 4294967296u64, "maxStep": "3Gi"}})),
            vec![(
                at(expansion, "minStep"),
                "greater than maxStep",
                "greater than maxStep",
            )],
        ),
        (
            "step -20%",
            data(json!({"expansion": {"step": "-20%"}})),
            vec![(at(expansion, "step"), "whole number", "whole number")],
        ),
        (
            "step 00%",
            data(json!({"expansion": {"step": "00%"}})),
            vec![(at(expansion, "step"), "not 0", "not 0")],
        ),
        (
            "step 1000%",
            data(json!({"expansion": {"step": "1000%"}})),
            vec![(
                at(expansion, "step"),
                "between 1% and 100%",
                "between 1% and 100%",
            )],
        ),
        (
            "mode lower case",
            data(json!({"strategy": {"mode": "recommend"}})),
            vec![(
                at(strategy, "mode"),
                "unsupported mode \"recommend\"",
                "unsupported mode \"recommend\"",
            )],
        ),
        // Several errors at once, in every kind of block (validation_tests'
        // errors_are_reported_even_when_disabled_and_in_every_block, as a policy).
        (
            "every block",
            json!({"cluster": "pg",
            "storage": {"resize": {"enabled": false, "expansion": {"step": 0}}},
            "walStorage": {"resize": {"enabled": true, "expansion": {"step": "0%"}}},
            "tablespaces": [{"name": "t", "resize": {"triggers": {"usageThreshold": 120}}}]}),
            vec![
                (
                    "spec.storage.resize.expansion.step".into(),
                    "not 0",
                    "not 0",
                ),
                (
                    "spec.walStorage.resize.expansion.step".into(),
                    "not 0",
                    "not 0",
                ),
                (
                    "spec.tablespaces[0].resize.triggers.usageThreshold".into(),
                    "between 1 and 99",
                    "between 1 and 99",
                ),
            ],
        ),
        // The single-volume rule as it applies to a policy alone: no walStorage in
        // the policy means a Cluster without spec.walStorage.
        (
            "single volume",
            json!({"cluster": "pg", "storage": {"resize": block(json!({}))}}),
            vec![(
                ack.into(),
                "acknowledgeWALRisk: true",
                "acknowledgeWALRisk: true",
            )],
        ),
        (
            "single volume, acknowledgement false",
            json!({"cluster": "pg", "storage": {"resize":
            block(json!({"strategy": {"walSafetyPolicy": {"acknowledgeWALRisk": false}}}))}}),
            vec![(ack.into(), "acknowledgeWALRisk: true", "Required value")],
        ),
        // cluster and tablespaces.
        (
            "no cluster",
            json!({"cluster": ""}),
            vec![(
                "spec.cluster".into(),
                "names no cluster",
                "Required value: names no cluster",
            )],
        ),
        (
            "blank cluster",
            json!({"cluster": "  "}),
            vec![(
                "spec.cluster".into(),
                "names no cluster",
                "names no cluster",
            )],
        ),
        (
            "tablespace without a name",
            json!({"cluster": "pg", "tablespaces": [{"name": ""}]}),
            vec![(
                "spec.tablespaces[0].name".into(),
                "needs its name",
                "Required value: a tablespace needs its name",
            )],
        ),
    ];
    for (name, spec, expected) in &cases {
        let expected: Vec<(&str, &str, &str)> = expected
            .iter()
            .map(|(f, v, c)| (f.as_str(), *v, *c))
            .collect();
        assert_agree(name, &policy(spec.clone()), &expected);
    }
}

#[test]
fn duplicate_tablespaces_are_rejected_by_both() {
    // validate names the second entry; a CEL rule cannot name an index, so the
    // CRD reports the list.
    let object = policy(json!({"cluster": "pg", "tablespaces": [
        {"name": "a"}, {"name": "b"}, {"name": "a"}]}));
    let validate = validate_errors(&object);
    assert_eq!(validate.len(), 1, "{validate:?}");
    assert_eq!(validate[0].0, "spec.tablespaces[2].name");
    assert!(validate[0].1.contains("configured twice"), "{validate:?}");
    let cel = cel_errors(&object);
    assert_eq!(cel.len(), 1, "{cel:?}");
    assert_eq!(cel[0].0, "spec.tablespaces");
    assert!(cel[0].1.contains("configured twice"), "{cel:?}");
    // No `reason: FieldValueDuplicate`: the API server would drop the message for it.
    assert!(cel[0].1.contains("Invalid value"), "{cel:?}");
    // Empty names are "needs its name", not duplicates, for both.
    let empty = policy(json!({"cluster": "pg", "tablespaces": [{"name": ""}, {"name": ""}]}));
    let fields = |e: Vec<(String, String)>| e.into_iter().map(|(f, _)| f).collect::<BTreeSet<_>>();
    assert_eq!(fields(validate_errors(&empty)), fields(cel_errors(&empty)));
}

// ---------------------------------------------------------------------------
// The generated Cluster CRD against the fork's real one
// ---------------------------------------------------------------------------

/// Every property path of a schema (`.spec.storage.size`, `[]` for items, `{}` for
/// additionalProperties) with its node.
fn paths(node: &Value, path: String, out: &mut BTreeMap<String, Value>) {
    out.insert(path.clone(), node.clone());
    for (k, c) in node["properties"].as_object().into_iter().flatten() {
        paths(c, format!("{path}.{k}"), out);
    }
    if node["items"].is_object() {
        paths(&node["items"], format!("{path}[]"), out);
    }
    if node["additionalProperties"].is_object() {
        paths(&node["additionalProperties"], format!("{path}{{}}"), out);
    }
}

fn kind_of(node: &Value) -> String {
    if node["x-kubernetes-int-or-string"] == true {
        "int-or-string".into()
    } else {
        node["type"].as_str().unwrap_or("<none>").into()
    }
}

/// The sandbox serves this copy when the fork's CRD is not available.
#[test]
fn the_sandboxs_copy_of_the_generated_cluster_crd_is_the_generators_output() {
    assert_eq!(
        kube_sandbox::GENERATED_CLUSTER_CRD,
        super::crd::generated_cluster_crd_yaml().unwrap(),
        "regenerate it: cargo run --bin crdgen -- --cluster > crates/kube-sandbox/crds/postgresql.cnpg.io_clusters.generated.yaml"
    );
}

/// Compared with the fork's real CRD where it is available (`$CNPG_CLUSTER_CRD` or
/// `../shared`); an outside contributor has only the generated one, checked above.
#[test]
fn the_generated_cluster_crd_matches_the_forks() {
    let path = match kube_sandbox::fork_cluster_crd_path() {
        Ok(path) => path,
        Err(e) => {
            println!("not compared with the fork's CRD: {e:#}");
            return;
        }
    };
    let text = std::fs::read_to_string(&path).unwrap();
    let real: Value = serde_norway::from_str(&text).unwrap();
    let real_version = real["spec"]["versions"]
        .as_array()
        .unwrap()
        .iter()
        .find(|v| v["name"] == "v1")
        .unwrap();
    let generated = serde_json::to_value(generated_cluster_crd()).unwrap();
    assert_eq!(generated["metadata"]["name"], real["metadata"]["name"]);
    assert_eq!(generated["spec"]["group"], real["spec"]["group"]);
    assert_eq!(generated["spec"]["scope"], real["spec"]["scope"]);
    for name in ["kind", "plural", "singular"] {
        assert_eq!(
            generated["spec"]["names"][name], real["spec"]["names"][name],
            "{name}"
        );
    }
    let version = &generated["spec"]["versions"][0];
    assert_eq!(version["name"], "v1");
    assert_eq!(
        (version["served"].clone(), version["storage"].clone()),
        (json!(true), json!(true))
    );
    assert_eq!(version["subresources"]["status"], json!({}));

    let mut ours = BTreeMap::new();
    paths(
        &version["schema"]["openAPIV3Schema"],
        String::new(),
        &mut ours,
    );
    let mut theirs = BTreeMap::new();
    paths(
        &real_version["schema"]["openAPIV3Schema"],
        String::new(),
        &mut theirs,
    );

    let mut problems = Vec::new();
    for (p, node) in &ours {
        let Some(real_node) = theirs.get(p) else {
            problems.push(format!("{p}: not in the fork's CRD"));
            continue;
        };
        if kind_of(node) != kind_of(real_node) {
            problems.push(format!(
                "{p}: type {} where the fork has {}",
                kind_of(node),
                kind_of(real_node)
            ));
        }
        if let Some(values) = node["enum"].as_array() {
            let allowed = real_node["enum"].as_array().cloned().unwrap_or_default();
            if real_node.get("enum").is_some() && !values.iter().all(|v| allowed.contains(v)) {
                problems.push(format!(
                    "{p}: enum {values:?} is not a subset of {allowed:?}"
                ));
            }
            if real_node.get("enum").is_none() {
                problems.push(format!("{p}: enum {values:?} where the fork has none"));
            }
        }
        // What this CRD adds must be what the fork enforces: bounds and defaults
        // equal, nothing nullable or required that the fork does not declare so.
        for keyword in ["minimum", "maximum", "default"] {
            let same = match (node.get(keyword), real_node.get(keyword)) {
                (None, _) => true,
                (Some(a), Some(b)) if a.is_number() && b.is_number() => a.as_f64() == b.as_f64(),
                (a, b) => a == b,
            };
            if !same {
                problems.push(format!(
                    "{p}: {keyword} {} where the fork has {}",
                    node[keyword], real_node[keyword]
                ));
            }
        }
        if node["nullable"] == true && real_node["nullable"] != true {
            problems.push(format!("{p}: nullable"));
        }
        let required = |n: &Value| -> BTreeSet<String> {
            n["required"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|v| v.as_str().map(String::from))
                .collect()
        };
        if !required(node).is_subset(&required(real_node)) {
            problems.push(format!(
                "{p}: required {:?} beyond the fork's {:?}",
                required(node),
                required(real_node)
            ));
        }
    }
    // Under resize, autoResizeEvents and diskStatus the fields are exactly the fork's:
    // the same are pruned.
    let owned = |p: &str| {
        p.contains(".resize") || p.contains(".autoResizeEvents") || p.contains(".diskStatus")
    };
    let ours_owned: BTreeSet<&String> = ours.keys().filter(|p| owned(p)).collect();
    let theirs_owned: BTreeSet<&String> = theirs
        .keys()
        .filter(|p| owned(p) && !p.contains("resizeInUseVolumes"))
        .collect();
    for p in theirs_owned.difference(&ours_owned) {
        problems.push(format!("{p}: in the fork's CRD, missing here"));
    }
    for p in ours_owned.difference(&theirs_owned) {
        problems.push(format!("{p}: here, not in the fork's CRD"));
    }
    assert!(
        ours_owned.len() > 100,
        "the owned paths were found: {}",
        ours_owned.len()
    );
    // Only the project's deliberately opaque data keeps unknown fields besides the
    // containers whose Rust types keep them (`extra`).
    let preserving: BTreeSet<&str> = ours
        .iter()
        .filter(|(_, n)| n["x-kubernetes-preserve-unknown-fields"] == true)
        .map(|(p, _)| p.as_str())
        .collect();
    assert!(
        preserving.contains(".spec.backup.barmanObjectStore"),
        "{preserving:?}"
    );
    assert!(preserving.iter().all(|p| !owned(p)), "{preserving:?}");
    assert_eq!(problems, Vec::<String>::new());
}

#[test]
fn the_cluster_schema_prunes_policy_only_fields_and_mode_recommend() {
    let schema = openapi_schema(&generated_cluster_crd());
    let resize = &schema["properties"]["spec"]["properties"]["storage"]["properties"]["resize"];
    for (group, field) in [
        ("triggers", "inodeUsageThreshold"),
        ("triggers", "timeToFull"),
        ("expansion", "horizon"),
        ("strategy", "cooldown"),
    ] {
        assert!(
            resize["properties"][group]["properties"]
                .get(field)
                .is_none(),
            "{field}"
        );
    }
    assert_eq!(
        resize["properties"]["strategy"]["properties"]["mode"]["enum"],
        json!(["Standard"])
    );
    // No CEL of the policy in the Cluster: the fork's CRD has none there.
    assert!(!serde_json::to_string(&schema)
        .unwrap()
        .contains("isQuantity"));
}

/// The schema-only mirror types of `crd.rs` read and write a Cluster like `cluster.rs`.
#[test]
fn the_cluster_shapes_mirror_the_cluster_types() {
    let cluster = json!({
        "apiVersion": "postgresql.cnpg.io/v1", "kind": "Cluster",
        "metadata": {"name": "pg", "namespace": "default"},
        "spec": {
            "instances": 3,
            "storage": {"size": "10Gi", "storageClass": "fast", "pvcTemplate": {"x": 1},
                "resize": {"enabled": true, "triggers": {"usageThreshold": 80, "minAvailable": "1Gi"},
                    "expansion": {"step": "20%", "minStep": "2Gi", "maxStep": "5Gi", "limit": "1Ti"},
                    "strategy": {"mode": "Standard", "maxActionsPerDay": 3, "walSafetyPolicy": {
                        "acknowledgeWALRisk": false, "requireArchiveHealthy": true,
                        "maxPendingWALFiles": 100, "maxSlotRetentionBytes": 1073741824, "alertOnResize": true}}}},
            "walStorage": {"size": "2Gi"},
            "tablespaces": [{"name": "t", "owner": {"name": "app"}, "storage": {"size": "1Gi"}}],
            "backup": {"barmanObjectStore": {"destinationPath": "s3://b"}, "retentionPolicy": "30d"},
            "plugins": [{"name": "barman-cloud.cloudnative-pg.io", "isWALArchiver": true, "enabled": true}],
            "replicationSlots": {"highAvailability": {"slotPrefix": "_cnpg_", "enabled": true}, "updateInterval": 30},
        },
        "status": {
            "phase": "Cluster in healthy state",
            "autoResizeEvents": [{"timestamp": "2026-01-01T00:00:00Z", "instanceName": "pg-1",
                "pvcName": "pg-1", "volumeType": "data", "previousSize": "10Gi", "newSize": "12Gi", "result": "success"}],
            "diskStatus": {"instances": {"pg-1": {"dataVolume": {"totalBytes": 10, "usedBytes": 5,
                "availableBytes": 5, "percentUsed": 50, "inodesTotal": 1, "inodesUsed": 1, "inodesFree": 0},
                "walHealth": {"archiveHealthy": true, "pendingWALFiles": 0, "inactiveSlotCount": 0},
                "lastUpdated": "2026-01-01T00:00:00Z"}}},
        },
    });
    let real: super::cluster::Cluster = serde_json::from_value(cluster.clone()).unwrap();
    let shape: super::crd::ClusterShape = serde_json::from_value(cluster.clone()).unwrap();
    let mut real = serde_json::to_value(real).unwrap();
    let mut shape = serde_json::to_value(shape).unwrap();
    // metadata is typed differently (ObjectMeta either way); compare the rest.
    for v in [&mut real, &mut shape] {
        v.as_object_mut().unwrap().remove("metadata");
        v.as_object_mut().unwrap().remove("apiVersion");
        v.as_object_mut().unwrap().remove("kind");
    }
    assert_eq!(shape, real);
    assert_eq!(
        real["spec"], cluster["spec"],
        "nothing lost on a round trip"
    );
}

/// `examples/policies/*.yaml`: each policy is what its `# Expect:` header says, for
/// `validate` and for the CRD's rules alike, with the same fields in error.
#[test]
fn the_example_policies_are_what_their_headers_say() {
    let dir = workspace_file("examples/policies");
    let mut seen = 0;
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        let text = std::fs::read_to_string(&path).unwrap();
        let object: Value = serde_norway::from_str(&text).unwrap();
        if object["kind"] != "AutoResizePolicy" {
            continue;
        }
        seen += 1;
        let expect = text
            .lines()
            .find_map(|l| l.strip_prefix("# Expect: "))
            .unwrap_or_else(|| panic!("{}: no `# Expect:` header", path.display()));
        let valid = match expect {
            "valid" => true,
            "invalid" => false,
            other => panic!("{}: unknown expectation {other:?}", path.display()),
        };
        let validate = validate_errors(&object);
        let cel = cel_errors(&object);
        assert_eq!(
            validate.is_empty(),
            valid,
            "{}: validate {validate:?}",
            path.display()
        );
        assert_eq!(cel.is_empty(), valid, "{}: CEL {cel:?}", path.display());
        let fields =
            |e: &[(String, String)]| e.iter().map(|(f, _)| f.clone()).collect::<BTreeSet<_>>();
        assert_eq!(fields(&validate), fields(&cel), "{}", path.display());
    }
    assert!(seen >= 3, "example policies found: {seen}");
}

/// The generated Cluster CRD served by the sandbox (as `demo` and `sandbox` register it):
/// what the project writes outside the fork's schema is pruned, the rest of a Cluster is
/// kept, and `mode: Recommend` is refused like the fork's enum refuses it.
#[tokio::test]
async fn the_sandbox_serves_the_generated_cluster_crd() {
    use kube::api::{ApiResource, DynamicObject, GroupVersionKind, Patch, PatchParams, PostParams};
    let sandbox = kube_sandbox::Sandbox::start(kube_sandbox::SandboxConfig {
        crds: vec![super::crd::generated_cluster_crd_yaml().unwrap()],
        ..Default::default()
    })
    .await
    .unwrap();
    let client = sandbox.client().await.unwrap();
    let resource = ApiResource::from_gvk_with_plural(
        &GroupVersionKind::gvk("postgresql.cnpg.io", "v1", "Cluster"),
        "clusters",
    );
    let api: kube::Api<DynamicObject> = kube::Api::namespaced_with(client, "default", &resource);
    let cluster = |mode: &str| -> DynamicObject {
        serde_json::from_value(json!({
            "apiVersion": "postgresql.cnpg.io/v1", "kind": "Cluster",
            "metadata": {"name": format!("pg-{}", mode.to_lowercase())},
            "spec": {"instances": 2, "imageName": "postgres:17",
                "storage": {"size": "1Gi", "resize": {"enabled": true,
                    "triggers": {"usageThreshold": 80, "timeToFull": "1h"},
                    "expansion": {"step": "20%", "horizon": "2h"},
                    "strategy": {"mode": mode, "cooldown": "1h"}}}},
        }))
        .unwrap()
    };
    let created = api
        .create(&PostParams::default(), &cluster("Standard"))
        .await
        .unwrap();
    let spec = &created.data["spec"];
    assert_eq!(
        spec["instances"], 2,
        "fields the project does not model are kept"
    );
    assert_eq!(spec["imageName"], "postgres:17");
    let resize = &spec["storage"]["resize"];
    assert!(resize["triggers"].get("timeToFull").is_none(), "{resize}");
    assert!(resize["expansion"].get("horizon").is_none(), "{resize}");
    assert!(resize["strategy"].get("cooldown").is_none(), "{resize}");
    // The fork's defaults apply.
    assert_eq!(resize["expansion"]["minStep"], "2Gi");
    assert_eq!(
        resize["strategy"]["walSafetyPolicy"],
        serde_json::Value::Null
    );
    match api
        .create(&PostParams::default(), &cluster("Recommend"))
        .await
    {
        Err(kube::Error::Api(status)) => {
            assert_eq!(status.code, 422, "{status:?}");
            assert!(
                status.message.contains(
                    "spec.storage.resize.strategy.mode: Unsupported value: \"Recommend\""
                ),
                "{}",
                status.message
            );
        }
        other => panic!("mode Recommend accepted: {other:?}"),
    }
    // Status: the project's entries, pruned of what only a policy's status keeps;
    // a Go zero timestamp (null) is dropped.
    let status = json!({"status": {"phase": "healthy", "autoResizeEvents": [{"timestamp": null,
        "pvcName": "pg-1", "volumeType": "data", "previousSize": "1Gi", "newSize": "2Gi",
        "result": "success", "trigger": "usage", "filesystemBytes": 5}],
        "diskStatus": {"instances": {"pg-1": {"dataVolume": {"totalBytes": 1, "usedBytes": 1,
            "availableBytes": 0, "percentUsed": 100, "growthBytesPerSecond": 1.5}}}}}});
    let written = api
        .patch_status(
            "pg-standard",
            &PatchParams::default(),
            &Patch::Merge(&status),
        )
        .await
        .unwrap();
    assert_eq!(written.data["status"]["phase"], "healthy");
    assert_eq!(
        written.data["status"]["autoResizeEvents"],
        json!([{"pvcName": "pg-1", "volumeType": "data", "previousSize": "1Gi", "newSize": "2Gi", "result": "success"}])
    );
    assert_eq!(
        written.data["status"]["diskStatus"]["instances"]["pg-1"]["dataVolume"],
        json!({"totalBytes": 1, "usedBytes": 1, "availableBytes": 0, "percentUsed": 100})
    );
}
