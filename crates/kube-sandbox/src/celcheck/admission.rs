//! Admission policies' CEL as the API server compiles it when a
//! `ValidatingAdmissionPolicy` or `MutatingAdmissionPolicy` is created or updated
//! (`pkg/apis/admissionregistration/validation` with the composition compiler of
//! `apiserver/pkg/admission/plugin/cel`): `object`, `oldObject` and `params` are `dyn`,
//! `request` and `namespaceObject` are typed, `variables` has one field per variable of
//! the type its expression compiled to, and each expression must evaluate to its kind's
//! type. No static cost limit applies to policies (their budget is spent at run time).
//! Also: the rewriting that lets kube-cel (which cannot construct messages) evaluate a
//! mutating policy's `JSONPatch{...}` and `Object.x{...}` constructions as maps.

use std::collections::BTreeMap;
use std::sync::Arc;

use serde_json::Value;

use super::check::Env;
use super::decls::Minor;
use super::parse::{self, Kind};
use super::types::{Fields, StructType, Type};
use super::{compile, functions};
use crate::error::FieldError;

fn object(name: &str, fields: &[(&str, Type)]) -> Type {
    Type::Struct(Arc::new(StructType {
        name: name.to_string(),
        fields: Fields::Declared(
            fields
                .iter()
                .map(|(n, t)| (n.to_string(), t.clone()))
                .collect(),
        ),
    }))
}

/// `request`'s type (`BuildRequestType`).
fn request_type() -> Type {
    let gvk = object(
        "kubernetes.GroupVersionKind",
        &[
            ("group", Type::String),
            ("version", Type::String),
            ("kind", Type::String),
        ],
    );
    let gvr = object(
        "kubernetes.GroupVersionResource",
        &[
            ("group", Type::String),
            ("version", Type::String),
            ("resource", Type::String),
        ],
    );
    let user = object(
        "kubernetes.UserInfo",
        &[
            ("username", Type::String),
            ("uid", Type::String),
            ("groups", Type::list(Type::String)),
            ("extra", Type::map(Type::String, Type::list(Type::String))),
        ],
    );
    object(
        "kubernetes.AdmissionRequest",
        &[
            ("kind", gvk.clone()),
            ("resource", gvr.clone()),
            ("subResource", Type::String),
            ("requestKind", gvk),
            ("requestResource", gvr),
            ("requestSubResource", Type::String),
            ("name", Type::String),
            ("namespace", Type::String),
            ("operation", Type::String),
            ("userInfo", user),
            ("dryRun", Type::Bool),
            ("options", Type::Dyn),
        ],
    )
}

/// `namespaceObject`'s type (`BuildNamespaceType`).
fn namespace_type() -> Type {
    let strings = Type::map(Type::String, Type::String);
    let metadata = object(
        "kubernetes.NamespaceMetadata",
        &[
            ("name", Type::String),
            ("generateName", Type::String),
            ("namespace", Type::String),
            ("labels", strings.clone()),
            ("annotations", strings),
            ("UID", Type::String),
            ("creationTimestamp", Type::Timestamp),
            ("deletionGracePeriodSeconds", Type::Int),
            ("deletionTimestamp", Type::Timestamp),
            ("generation", Type::Int),
            ("resourceVersion", Type::String),
            ("finalizers", Type::list(Type::String)),
        ],
    );
    let condition = object(
        "kubernetes.NamespaceCondition",
        &[
            ("status", Type::String),
            ("type", Type::String),
            ("lastTransitionTime", Type::Timestamp),
            ("message", Type::String),
            ("reason", Type::String),
        ],
    );
    object(
        "kubernetes.Namespace",
        &[
            ("metadata", metadata),
            (
                "spec",
                object(
                    "kubernetes.NamespaceSpec",
                    &[("finalizers", Type::list(Type::String))],
                ),
            ),
            (
                "status",
                object(
                    "kubernetes.NamespaceStatus",
                    &[
                        ("conditions", Type::list(condition)),
                        ("phase", Type::String),
                    ],
                ),
            ),
        ],
    )
}

/// The kinds of policy whose expressions are checked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PolicyKind {
    Validating,
    Mutating,
}

fn base_env(version: Minor, kind: PolicyKind, variables: &BTreeMap<String, Type>) -> Env {
    let mut env = Env::new(functions(version));
    for (name, t) in [
        ("object", Type::Dyn),
        ("oldObject", Type::Dyn),
        ("params", Type::Dyn),
        ("request", request_type()),
        ("namespaceObject", namespace_type()),
        (
            "authorizer",
            Type::named("kubernetes.authorization.Authorizer"),
        ),
        (
            "authorizer.requestResource",
            Type::named("kubernetes.authorization.ResourceCheck"),
        ),
    ] {
        env.variables.insert(name.to_string(), t);
    }
    env.variables.insert(
        "variables".to_string(),
        Type::Struct(Arc::new(StructType {
            name: "kubernetes.variables".to_string(),
            fields: Fields::Declared(variables.clone()),
        })),
    );
    if kind == PolicyKind::Mutating {
        env.types.insert(
            "JSONPatch".to_string(),
            object(
                "JSONPatch",
                &[
                    ("op", Type::String),
                    ("path", Type::String),
                    ("from", Type::String),
                    ("value", Type::Dyn),
                ],
            ),
        );
        env.dynamic_object_types = true;
    }
    env
}

/// Every expression of a policy's `spec` compiled as the API server does on create:
/// the field errors it would answer with (`spec.validations[0].expression: Invalid
/// value: "…": compilation failed: …`).
pub fn check_policy(spec: &Value, kind: PolicyKind, version: Minor) -> Vec<FieldError> {
    let mut errors = Vec::new();
    let mut variables: BTreeMap<String, Type> = BTreeMap::new();
    let expr_of = |v: &Value| {
        v.get("expression")
            .and_then(Value::as_str)
            .map(str::to_string)
    };
    let check = |env: &Env,
                 field: &str,
                 expression: &str,
                 want: Option<&Type>,
                 errors: &mut Vec<FieldError>|
     -> Option<Type> {
        match compile(expression, env) {
            Err(detail) => {
                errors.push(FieldError::invalid_value(
                    field,
                    &Value::from(expression),
                    &format!("compilation failed: {detail}"),
                ));
                None
            }
            Ok(checked) => {
                let out = checked.output();
                // The exact type: a `dyn` result is refused too.
                if let Some(want) = want.filter(|w| !out.is_exact(w)) {
                    errors.push(FieldError::invalid_value(
                        field,
                        &Value::from(expression),
                        &format!("must evaluate to {want} but got {out}"),
                    ));
                }
                Some(out)
            }
        }
    };
    // Variables first: each may use the ones before it.
    for (i, v) in spec
        .get("variables")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .enumerate()
    {
        let env = base_env(version, kind, &variables);
        let Some(expression) = expr_of(v) else {
            continue;
        };
        let name = v
            .get("name")
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_string();
        let t = check(
            &env,
            &format!("spec.variables[{i}].expression"),
            &expression,
            None,
            &mut errors,
        );
        variables.insert(name, t.unwrap_or(Type::Dyn));
    }
    // Match conditions are compiled on their own, without the policy's variables.
    let mut conditions_env = base_env(version, kind, &BTreeMap::new());
    conditions_env.variables.remove("variables");
    let env = base_env(version, kind, &variables);
    for (i, c) in spec
        .get("matchConditions")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .enumerate()
    {
        if let Some(e) = expr_of(c) {
            check(
                &conditions_env,
                &format!("spec.matchConditions[{i}].expression"),
                &e,
                Some(&Type::Bool),
                &mut errors,
            );
        }
    }
    for (i, v) in spec
        .get("validations")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .enumerate()
    {
        if let Some(e) = expr_of(v) {
            check(
                &env,
                &format!("spec.validations[{i}].expression"),
                &e,
                Some(&Type::Bool),
                &mut errors,
            );
        }
        if let Some(m) = v
            .get("messageExpression")
            .and_then(Value::as_str)
            .filter(|m| !m.is_empty())
        {
            check(
                &env,
                &format!("spec.validations[{i}].messageExpression"),
                m,
                Some(&Type::String),
                &mut errors,
            );
        }
    }
    for (i, m) in spec
        .get("mutations")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .enumerate()
    {
        if let Some(e) = m.pointer("/jsonPatch/expression").and_then(Value::as_str) {
            let want = Type::list(env.types.get("JSONPatch").cloned().unwrap_or(Type::Dyn));
            check(
                &env,
                &format!("spec.mutations[{i}].jsonPatch.expression"),
                e,
                Some(&want),
                &mut errors,
            );
        }
        if let Some(e) = m
            .pointer("/applyConfiguration/expression")
            .and_then(Value::as_str)
        {
            check(
                &env,
                &format!("spec.mutations[{i}].applyConfiguration.expression"),
                e,
                None,
                &mut errors,
            );
        }
    }
    errors
}

/// `expression` with every message construction (`JSONPatch{op: "add"}`,
/// `Object.spec.x{name: n}`) written as a map with string keys (`{'op': "add"}`), so
/// that an evaluator without message types computes the same values. The expression
/// must parse (policies are compiled before they are stored).
pub fn struct_literals_as_maps(expression: &str) -> Result<String, String> {
    let parsed = parse::parse(expression).map_err(|e| e.message)?;
    let mut edits: Vec<(usize, usize, String)> = Vec::new();
    fn collect(p: &parse::Parsed, e: &parse::Expr, edits: &mut Vec<(usize, usize, String)>) {
        if let Kind::Struct {
            type_offset,
            fields,
            ..
        } = &e.kind
        {
            edits.push((*type_offset, p.offset(e.id), String::new()));
            for f in fields {
                edits.push((
                    f.name_offset,
                    f.name_offset + f.name.chars().count(),
                    format!("'{}'", f.name),
                ));
            }
        }
        match &e.kind {
            Kind::Select { operand, .. } => collect(p, operand, edits),
            Kind::Call { target, args, .. } => {
                if let Some(t) = target {
                    collect(p, t, edits);
                }
                args.iter().for_each(|a| collect(p, a, edits));
            }
            Kind::List { elements, .. } => elements.iter().for_each(|a| collect(p, a, edits)),
            Kind::Map { entries } => entries.iter().for_each(|en| {
                collect(p, &en.key, edits);
                collect(p, &en.value, edits);
            }),
            Kind::Struct { fields, .. } => fields.iter().for_each(|f| collect(p, &f.value, edits)),
            Kind::Comprehension(c) => {
                for x in [
                    &c.iter_range,
                    &c.accu_init,
                    &c.loop_condition,
                    &c.loop_step,
                    &c.result,
                ] {
                    collect(p, x, edits);
                }
            }
            Kind::Literal(_) | Kind::Ident(_) => {}
        }
    }
    collect(&parsed, &parsed.expr, &mut edits);
    let mut chars: Vec<char> = expression.chars().collect();
    edits.sort_by_key(|(start, _, _)| std::cmp::Reverse(*start));
    for (start, end, text) in edits {
        if start <= end && end <= chars.len() {
            chars.splice(start..end, text.chars());
        }
    }
    Ok(chars.into_iter().collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn constructions_become_maps_and_nothing_else_changes() {
        let src = r#"[JSONPatch{op: "add", path: "/spec/x", value: Object.spec.initContainers{name: "a", env: [Object.spec.initContainers.env{name: "B"}]}}] + (has(object.spec) ? [] : [])"#;
        assert_eq!(
            struct_literals_as_maps(src).unwrap(),
            r#"[{'op': "add", 'path': "/spec/x", 'value': {'name': "a", 'env': [{'name': "B"}]}}] + (has(object.spec) ? [] : [])"#
        );
    }

    #[test]
    fn policies_are_compiled_with_typed_requests_and_variables() {
        let ok = json!({
            "variables": [{"name": "caller", "expression": "request.userInfo.username.split(':')"}],
            "matchConditions": [{"name": "sa", "expression": "request.userInfo.username.startsWith('system:')"}],
            "validations": [{"expression": "object.metadata.name == variables.caller[3]",
                "messageExpression": "'not ' + variables.caller[3]"}]
        });
        assert!(check_policy(&ok, PolicyKind::Validating, super::super::decls::CURRENT).is_empty());
        let bad = json!({
            "validations": [
                {"expression": "request.userInfo.usrname == 'x'"},
                {"expression": "object.x"},
                {"expression": "true", "messageExpression": "1"}
            ],
            "mutations": [{"patchType": "JSONPatch", "jsonPatch": {"expression": "[JSONPatch{op: 'add', pth: '/x'}]"}}]
        });
        let errors = check_policy(&bad, PolicyKind::Mutating, super::super::decls::CURRENT);
        let text: Vec<String> = errors.iter().map(|e| e.to_string()).collect();
        assert_eq!(errors.len(), 4, "{text:#?}");
        assert!(text[0].contains("undefined field 'usrname'"), "{text:#?}");
        assert!(
            text[1].contains("spec.validations[1].expression")
                && text[1].contains("must evaluate to bool but got dyn"),
            "{text:#?}"
        );
        assert!(
            text[2].contains("spec.validations[2].messageExpression")
                && text[2].contains("must evaluate to string but got int"),
            "{text:#?}"
        );
        assert!(
            text[3].contains("expected type of field 'pth' is '' but provided type is 'string'"),
            "{text:#?}"
        );
    }
}
