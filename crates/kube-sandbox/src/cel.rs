//! `x-kubernetes-validations` (CEL) evaluated with [kube-cel](https://github.com/kube-rs/kube-cel),
//! the sandbox's default [`RuleEvaluator`].
//!
//! Each schema node's rules are evaluated against the node's value (`self`) and, on
//! updates, the stored value (`oldSelf`), and failures become the field errors a
//! kube-apiserver reports (`apiextensions-apiserver/pkg/apiserver/schema/cel/validation.go`):
//!
//! - a rule that evaluates to `false`: at the node's path plus the rule's `fieldPath`,
//!   `Invalid value: "<schema type>": <message>` (the `messageExpression`'s result, else
//!   `message`, else `failed rule: <rule>`), or `Required value: <message>` /
//!   `Forbidden: <message>` / `Duplicate value: "<schema type>"` after the rule's `reason`;
//! - a rule whose evaluation fails: at the node's path, `Invalid value: "<schema type>":
//!   '<error>': call arguments did not match a supported operator, function or macro
//!   signature for rule: <message or rule>` for a type mismatch at run time (e.g. a string
//!   method on the integer of an int-or-string), else `<error> evaluating rule: <message or rule>`.
//!
//! As on a real server, rules do not run on `null` values, a field whose value is `null`
//! is absent to the rules (`has()` is false), and rules that do not use `oldSelf` are not
//! re-checked on an update that leaves the value unchanged (ratcheting).
//!
//! Differences from a real server: no cost limits (neither the CRD's estimated cost nor
//! the per-request budget), kube-cel's function coverage (no `type()`, no `cel.bind`,
//! no two-variable comprehensions: a rule using them fails closed, rejected with an
//! evaluation error), and kube-cel's error texts inside evaluation-error messages.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use kube_cel::{cel, compile_schema, CompiledSchema, ErrorKind, ValidationError};
use serde_json::Value;

use crate::error::{go_value, FieldError, FieldErrorKind};
use crate::schema::{RuleContext, RuleEvaluator};

/// Compiled nodes kept at most (the cache is emptied when full).
const CACHE_LIMIT: usize = 4096;

/// Evaluates `x-kubernetes-validations` rules with kube-cel.
#[derive(Default)]
pub struct CelRuleEvaluator {
    /// Compiled rules per schema node (its JSON without its descendants' rules).
    cache: Mutex<HashMap<String, Arc<CompiledSchema>>>,
}

impl std::fmt::Debug for CelRuleEvaluator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CelRuleEvaluator").finish_non_exhaustive()
    }
}

impl RuleEvaluator for CelRuleEvaluator {
    fn evaluate(&self, ctx: &RuleContext<'_>) -> Vec<FieldError> {
        // Ratcheting, decided before the schema is serialised: an unchanged
        // value is checked again only by transition rules (most writes, e.g.
        // a status patch, leave the spec's rules nothing to do).
        let unchanged = ctx.old_value == Some(ctx.value);
        if unchanged && !ctx.rules.iter().any(|r| r.rule.contains("oldSelf")) {
            return Vec::new();
        }
        match serde_json::to_value(ctx.schema) {
            Ok(schema) => self.evaluate_node(ctx.path, &schema, ctx.value, ctx.old_value),
            Err(e) => vec![FieldError::new(
                ctx.path,
                FieldErrorKind::Internal,
                None,
                &format!("reading the schema of the rules: {e}"),
            )],
        }
    }
}

impl CelRuleEvaluator {
    pub fn new() -> Self {
        Self::default()
    }

    /// Every rule of `schema` (a CRD version's `openAPIV3Schema`) against `object`
    /// (`old`: the stored object, on updates), walking the object like the API server:
    /// the errors of one write, in schema order. Pruning, defaulting and the OpenAPI
    /// validation are not done here.
    pub fn validate(&self, schema: &Value, object: &Value, old: Option<&Value>) -> Vec<FieldError> {
        let mut errors = Vec::new();
        self.walk("", schema, object, old, &mut errors);
        errors
    }

    fn walk(
        &self,
        path: &str,
        schema: &Value,
        value: &Value,
        old: Option<&Value>,
        errors: &mut Vec<FieldError>,
    ) {
        if schema.get("x-kubernetes-validations").is_some() {
            errors.extend(self.evaluate_node(path, schema, value, old));
        }
        let child = |k: &str| {
            if path.is_empty() {
                k.to_string()
            } else {
                format!("{path}.{k}")
            }
        };
        match value {
            Value::Object(map) => {
                for (k, v) in map {
                    let sub = schema
                        .pointer(&format!(
                            "/properties/{}",
                            k.replace('~', "~0").replace('/', "~1")
                        ))
                        .or_else(|| schema.get("additionalProperties").filter(|s| s.is_object()));
                    if let Some(sub) = sub {
                        self.walk(&child(k), sub, v, old.and_then(|o| o.get(k)), errors);
                    }
                }
            }
            Value::Array(items) => {
                if let Some(sub) = schema.get("items") {
                    for (i, v) in items.iter().enumerate() {
                        self.walk(&format!("{path}[{i}]"), sub, v, None, errors);
                    }
                }
            }
            _ => {}
        }
    }

    /// The rules of one node (`schema`, children included for their types and formats;
    /// their own rules are ignored) against its value.
    fn evaluate_node(
        &self,
        path: &str,
        schema: &Value,
        value: &Value,
        old: Option<&Value>,
    ) -> Vec<FieldError> {
        if value.is_null() {
            return Vec::new();
        }
        let Some(rules) = schema
            .get("x-kubernetes-validations")
            .and_then(Value::as_array)
            .filter(|r| !r.is_empty())
        else {
            return Vec::new();
        };
        let unchanged = old == Some(value);
        let mut node = schema.clone();
        strip_descendant_rules(&mut node);
        if unchanged {
            // Ratcheting: only transition rules are checked again on an unchanged value.
            if let Some(Value::Array(list)) = node.get_mut("x-kubernetes-validations") {
                list.retain(|r| rule_text(r).contains("oldSelf"));
                if list.is_empty() {
                    return Vec::new();
                }
            }
        }
        let compiled = self.compiled(&node);
        let value = without_null_fields(value);
        let old = old.map(without_null_fields);
        let failures = match kube_cel::validate_compiled(&compiled, &value, old.as_ref()) {
            Ok(()) => return Vec::new(),
            Err(errors) => errors.into_vec(),
        };
        let node_type = schema.get("type").and_then(Value::as_str).unwrap_or("");
        failures
            .iter()
            .map(|f| field_error(path, node_type, rules, f))
            .collect()
    }

    fn compiled(&self, node: &Value) -> Arc<CompiledSchema> {
        let key = node.to_string();
        let mut cache = self.cache.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(c) = cache.get(&key) {
            return c.clone();
        }
        if cache.len() >= CACHE_LIMIT {
            cache.clear();
        }
        let compiled = Arc::new(compile_schema(node));
        cache.insert(key, compiled.clone());
        compiled
    }
}

/// The value as CEL sees it on a real server: object fields whose value is `null` are
/// absent.
fn without_null_fields(value: &Value) -> Value {
    match value {
        Value::Object(map) => Value::Object(
            map.iter()
                .filter(|(_, v)| !v.is_null())
                .map(|(k, v)| (k.clone(), without_null_fields(v)))
                .collect(),
        ),
        Value::Array(items) => Value::Array(items.iter().map(without_null_fields).collect()),
        other => other.clone(),
    }
}

fn rule_text(rule: &Value) -> &str {
    rule.get("rule").and_then(Value::as_str).unwrap_or("")
}

/// Removes `x-kubernetes-validations` everywhere below the node itself.
fn strip_descendant_rules(node: &mut Value) {
    fn strip(v: &mut Value) {
        match v {
            Value::Object(map) => {
                map.remove("x-kubernetes-validations");
                map.values_mut().for_each(strip);
            }
            Value::Array(items) => items.iter_mut().for_each(strip),
            _ => {}
        }
    }
    if let Value::Object(map) = node {
        for (k, v) in map.iter_mut() {
            if k != "x-kubernetes-validations" {
                strip(v);
            }
        }
    }
}

fn join(path: &str, relative: &str) -> String {
    let relative = relative.trim_start_matches('.');
    match (path.is_empty(), relative.is_empty()) {
        (_, true) => path.to_string(),
        (true, false) => relative.to_string(),
        (false, false) if relative.starts_with('[') => format!("{path}{relative}"),
        (false, false) => format!("{path}.{relative}"),
    }
}

/// A kube-cel failure as the API server reports it.
fn field_error(
    path: &str,
    node_type: &str,
    rules: &[Value],
    failure: &ValidationError,
) -> FieldError {
    let rule = rules.iter().find(|r| rule_text(r) == failure.rule);
    let static_message = rule
        .and_then(|r| r.get("message"))
        .and_then(Value::as_str)
        .filter(|m| !m.trim().is_empty())
        .map(str::trim)
        .unwrap_or(failure.rule.as_str());
    let type_value = Some(go_value(&Value::String(node_type.to_string())));
    match failure.kind {
        ErrorKind::ValidationFailure => {
            let field = match rule
                .and_then(|r| r.get("fieldPath"))
                .and_then(Value::as_str)
            {
                Some(relative) => join(path, relative),
                None => path.to_string(),
            };
            match rule.and_then(|r| r.get("reason")).and_then(Value::as_str) {
                Some("FieldValueRequired") => FieldError::required(&field, &failure.message),
                Some("FieldValueForbidden") => FieldError::forbidden(&field, &failure.message),
                Some("FieldValueDuplicate") => {
                    FieldError::new(&field, FieldErrorKind::Duplicate, type_value, "")
                }
                _ => FieldError::new(
                    &field,
                    FieldErrorKind::Invalid,
                    type_value,
                    &failure.message,
                ),
            }
        }
        ErrorKind::EvaluationError | ErrorKind::UnsupportedReference => {
            let cause = std::error::Error::source(failure)
                .and_then(|e| e.downcast_ref::<cel::ExecutionError>());
            let detail = match cause {
                Some(
                    e @ (cel::ExecutionError::NoSuchOverload
                    | cel::ExecutionError::UnexpectedType { .. }
                    | cel::ExecutionError::UnsupportedTargetType { .. }
                    | cel::ExecutionError::NotSupportedAsMethod { .. }
                    | cel::ExecutionError::ValuesNotComparable(..)
                    | cel::ExecutionError::UnsupportedBinaryOperator(..)
                    | cel::ExecutionError::UnsupportedUnaryOperator(..)),
                ) => format!(
                    "'no such overload ({e})': call arguments did not match a supported operator, \
                     function or macro signature for rule: {static_message}"
                ),
                Some(e) => format!("{e} evaluating rule: {static_message}"),
                None => format!("{} evaluating rule: {static_message}", failure.message),
            };
            FieldError::new(path, FieldErrorKind::Invalid, type_value, &detail)
        }
        _ => FieldError::new(
            path,
            FieldErrorKind::Internal,
            None,
            &format!("x-kubernetes-validations: {}", failure.message),
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn schema() -> Value {
        json!({
            "type": "object",
            "properties": {
                "spec": {
                    "type": "object",
                    "x-kubernetes-validations": [
                        {"rule": "!has(self.min) || !has(self.max) || self.min <= self.max",
                         "message": "min must not exceed max", "fieldPath": ".min"}
                    ],
                    "properties": {
                        "min": {"type": "integer"},
                        "max": {"type": "integer"},
                        "name": {"type": "string", "x-kubernetes-validations": [
                            {"rule": "self != ''", "message": "needs a name", "reason": "FieldValueRequired"}
                        ]},
                        "step": {"x-kubernetes-int-or-string": true, "x-kubernetes-validations": [
                            {"rule": "self != 0 && self.endsWith('%')", "message": "use a percentage",
                             "messageExpression": "'not a percentage: ' + self"}
                        ]},
                        "items": {"type": "array", "items": {"type": "object", "properties": {
                            "n": {"type": "integer", "x-kubernetes-validations": [{"rule": "self > 0"}]}
                        }}}
                    }
                }
            }
        })
    }

    fn errors(object: Value, old: Option<Value>) -> Vec<String> {
        CelRuleEvaluator::new()
            .validate(&schema(), &object, old.as_ref())
            .iter()
            .map(|e| e.to_string())
            .collect()
    }

    #[test]
    fn failures_read_like_the_api_server() {
        let got = errors(
            json!({"spec": {"min": 5, "max": 1, "name": "", "step": "5Gi", "items": [{"n": 1}, {"n": 0}]}}),
            None,
        );
        assert_eq!(
            got,
            [
                "spec.min: Invalid value: \"object\": min must not exceed max",
                "spec.name: Required value: needs a name",
                "spec.step: Invalid value: \"\": not a percentage: 5Gi",
                "spec.items[1].n: Invalid value: \"integer\": failed rule: self > 0",
            ]
        );
        assert!(errors(
            json!({"spec": {"min": 1, "max": 5, "name": "x", "step": "5%"}}),
            None
        )
        .is_empty());
    }

    #[test]
    fn a_type_mismatch_at_run_time_is_reported_with_the_rule_message() {
        let got = errors(json!({"spec": {"step": 20}}), None);
        assert_eq!(got.len(), 1, "{got:?}");
        assert!(
            got[0].starts_with("spec.step: Invalid value: \"\": 'no such overload"),
            "{}",
            got[0]
        );
        assert!(
            got[0].ends_with("call arguments did not match a supported operator, function or macro signature for rule: use a percentage"),
            "{}",
            got[0]
        );
        // 0 makes the rule false without an error: the message expression applies.
        assert_eq!(
            errors(json!({"spec": {"step": 0}}), None),
            ["spec.step: Invalid value: \"\": use a percentage"],
            "the message expression fails on an integer, so the static message is used"
        );
    }

    #[test]
    fn nulls_are_skipped_and_unchanged_values_ratchet() {
        assert!(errors(json!({"spec": {"name": null}}), None).is_empty());
        // A null field is absent to the rules of its parent (the min/max rule's `has()`).
        assert!(errors(json!({"spec": {"min": 5, "max": null}}), None).is_empty());
        let bad = json!({"spec": {"name": ""}});
        assert_eq!(errors(bad.clone(), None).len(), 1);
        assert!(
            errors(bad.clone(), Some(bad)).is_empty(),
            "unchanged: not checked again"
        );
        assert_eq!(
            errors(
                json!({"spec": {"name": ""}}),
                Some(json!({"spec": {"name": "x"}}))
            )
            .len(),
            1
        );
    }
}
