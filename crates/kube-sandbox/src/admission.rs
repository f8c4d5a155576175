//! Admission, as a real API server runs it for the resources the sandbox serves:
//!
//! 1. mutating: the `ServiceAccount` plugin (on pod create: a projected
//!    `kube-api-access-<suffix>` volume mounted into every container, unless
//!    `automountServiceAccountToken: false`), then every bound
//!    `MutatingAdmissionPolicy` (`JSONPatch` mutations), then the `ServiceAccount`
//!    plugin again (a policy may have added a container), then the pod's QoS class
//!    (`status.qosClass`, computed by the pod strategy after admission);
//! 2. validating: every bound `ValidatingAdmissionPolicy` with `validationActions`
//!    `Deny` — a failed validation is the API server's `<resource>.<group> "<name>" is
//!    forbidden: ValidatingAdmissionPolicy 'p' with binding 'b' denied request: <message>`,
//!    an evaluation error (with `failurePolicy: Fail`) the same with `expression '<e>'
//!    resulted in error: <error>` as the message. Match conditions come first; variables
//!    are lazy, so one that fails is an error only for the expressions that read it.
//!
//! Policies and bindings are `admissionregistration.k8s.io/v1` objects in the store;
//! their CEL is compiled on create as the API server does (`celcheck::admission`) and
//! evaluated by kube-cel, with `object`, `oldObject`, `request` (with `userInfo`: the
//! sandbox identity as the username), `namespaceObject` and `variables`. Matching:
//! `resourceRules` (operations, groups, versions, resources incl. `x/status`),
//! `excludeResourceRules`, `objectSelector`, `namespaceSelector` (a namespace's labels
//! are `kubernetes.io/metadata.name: <name>`), the binding's `matchResources`, and
//! `matchConditions`; `failurePolicy` decides what an evaluation error does. Not done:
//! `paramKind`/`paramRef`, `auditAnnotations`, `Audit`/`Warn` actions, `ApplyConfiguration`
//! mutations, reinvocation.

use std::collections::HashMap;
use std::sync::Arc;

use kube_cel::cel::objects::{Key, Map};
use kube_cel::cel::{Context, Program, Value as CelValue};
use kube_cel::KubeCelExt;
use serde_json::{json, Value};

use crate::celcheck::admission::{check_policy, struct_literals_as_maps, PolicyKind};
use crate::error::{ApiError, FieldError};
use crate::resources::ResourceDef;
use crate::store::Txn;

/// Registry indices of the policy resources (see `resources::builtins`).
pub const VALIDATING_POLICY: usize = 7;
pub const VALIDATING_BINDING: usize = 8;
pub const MUTATING_POLICY: usize = 9;
pub const MUTATING_BINDING: usize = 10;

const TOKEN_PATH: &str = "/var/run/secrets/kubernetes.io/serviceaccount";

/// The request being admitted.
pub struct Request<'a> {
    /// CREATE, UPDATE or DELETE (a patch is an UPDATE).
    pub operation: &'a str,
    pub def: &'a ResourceDef,
    pub version: &'a str,
    pub subresource: Option<&'a str>,
    pub namespace: Option<&'a str>,
    pub name: &'a str,
    pub identity: &'a str,
}

impl Request<'_> {
    fn resource(&self) -> String {
        match self.subresource {
            Some(s) => format!("{}/{s}", self.def.plural),
            None => self.def.plural.clone(),
        }
    }
}

/// The compile errors of a policy object being written (empty for other resources).
pub fn check_object(res: usize, obj: &Value, cel_version: u32) -> Vec<FieldError> {
    let kind = match res {
        VALIDATING_POLICY => PolicyKind::Validating,
        MUTATING_POLICY => PolicyKind::Mutating,
        _ => return Vec::new(),
    };
    check_policy(obj.get("spec").unwrap_or(&Value::Null), kind, cel_version)
}

/// Mutating admission of a write; `object` is changed in place.
pub fn mutate(
    txn: &Txn<'_>,
    req: &Request<'_>,
    object: &mut Value,
    old: Option<&Value>,
) -> Result<(), ApiError> {
    let is_pod = req.def.group.is_empty() && req.def.plural == "pods" && req.subresource.is_none();
    if is_pod && req.operation == "CREATE" {
        mount_service_account_token(object);
    }
    for (policy, binding) in bound(txn, MUTATING_POLICY, MUTATING_BINDING) {
        let mut eval = match Evaluation::prepare(&policy, &binding, req, Some(&*object), old) {
            Ok(Some(eval)) => eval,
            Ok(None) => continue,
            Err(e) => {
                return Err(policy_error(
                    &policy,
                    &binding,
                    "MutatingAdmissionPolicy",
                    &e,
                ))
            }
        };
        let fail_open = policy
            .pointer("/spec/failurePolicy")
            .and_then(Value::as_str)
            == Some("Ignore");
        let patched = (|| -> Result<Option<Value>, String> {
            let mut current = object.clone();
            for m in policy
                .pointer("/spec/mutations")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
            {
                let Some(expression) = m.pointer("/jsonPatch/expression").and_then(Value::as_str)
                else {
                    continue;
                };
                let ops = eval.value(expression)?;
                let ops: json_patch::Patch = serde_json::from_value(ops).map_err(|e| {
                    format!("the JSONPatch expression's result is not a JSON patch: {e}")
                })?;
                json_patch::patch(&mut current, &ops)
                    .map_err(|e| format!("JSON patch failed: {e}"))?;
                eval.set_object(&current);
            }
            Ok(Some(current))
        })();
        match patched {
            Ok(Some(p)) => *object = p,
            Ok(None) => {}
            Err(e) if fail_open => {
                tracing::debug!(policy = %name_of(&policy), error = %e, "mutating policy failed open");
            }
            Err(e) => {
                return Err(policy_error(
                    &policy,
                    &binding,
                    "MutatingAdmissionPolicy",
                    &e,
                ))
            }
        }
    }
    if is_pod && req.operation == "CREATE" {
        mount_service_account_token(object);
        let qos = qos_class(object);
        object["status"]["qosClass"] = json!(qos);
    }
    Ok(())
}

/// Validating admission of a write (`object` is `None` on DELETE).
pub fn validate(
    txn: &Txn<'_>,
    req: &Request<'_>,
    object: Option<&Value>,
    old: Option<&Value>,
) -> Result<(), ApiError> {
    for (policy, binding) in bound(txn, VALIDATING_POLICY, VALIDATING_BINDING) {
        let actions = binding
            .pointer("/spec/validationActions")
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default();
        if !actions.iter().any(|a| a == "Deny") {
            continue;
        }
        let eval = match Evaluation::prepare(&policy, &binding, req, object, old) {
            Ok(Some(eval)) => eval,
            Ok(None) => continue,
            Err(e) => return Err(denied(&policy, &binding, &e, "Invalid", req)),
        };
        let fail_open = policy
            .pointer("/spec/failurePolicy")
            .and_then(Value::as_str)
            == Some("Ignore");
        for v in policy
            .pointer("/spec/validations")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            let expression = v
                .get("expression")
                .and_then(Value::as_str)
                .unwrap_or("true");
            match eval.bool(expression) {
                Ok(true) => {}
                Ok(false) => {
                    let message = v
                        .get("messageExpression")
                        .and_then(Value::as_str)
                        .and_then(|m| eval.value(m).ok())
                        .and_then(|m| m.as_str().map(str::to_string))
                        .or_else(|| v.get("message").and_then(Value::as_str).map(str::to_string))
                        .unwrap_or_else(|| format!("failed expression: {expression}"));
                    let reason = v.get("reason").and_then(Value::as_str).unwrap_or("Invalid");
                    return Err(denied(&policy, &binding, &message, reason, req));
                }
                Err(_) if fail_open => {}
                Err(e) => {
                    let message = format!("expression '{expression}' resulted in error: {e}");
                    return Err(denied(&policy, &binding, &message, "Invalid", req));
                }
            }
        }
    }
    Ok(())
}

fn name_of(v: &Value) -> &str {
    v.pointer("/metadata/name")
        .and_then(Value::as_str)
        .unwrap_or("")
}

/// `(policy, binding)` for every binding of an existing policy.
fn bound(txn: &Txn<'_>, policies: usize, bindings: usize) -> Vec<(Value, Value)> {
    let by_name: HashMap<String, Value> = txn
        .list(policies, None)
        .into_iter()
        .map(|p| (name_of(&p).to_string(), p))
        .collect();
    txn.list(bindings, None)
        .into_iter()
        .filter_map(|b| {
            let policy = b.pointer("/spec/policyName").and_then(Value::as_str)?;
            by_name.get(policy).map(|p| (p.clone(), b.clone()))
        })
        .collect()
}

/// A denial as the real server words it: admission's `Forbidden` wording
/// (`<resource>.<group> "<name>" is forbidden: `) around the policy's
/// message, with the code of the validation's reason.
fn denied(
    policy: &Value,
    binding: &Value,
    message: &str,
    reason: &str,
    req: &Request<'_>,
) -> ApiError {
    let (code, reason) = match reason {
        "Unauthorized" => (401, "Unauthorized"),
        "Forbidden" => (403, "Forbidden"),
        "RequestEntityTooLarge" => (413, "RequestEntityTooLarge"),
        _ => (422, "Invalid"),
    };
    ApiError::new(
        code,
        reason,
        format!(
            "{} is forbidden: ValidatingAdmissionPolicy '{}' with binding '{}' denied request: \
             {message}",
            forbidden_subject(req),
            name_of(policy),
            name_of(binding)
        ),
    )
}

/// `<resource>[.<group>] "<name>"`, as `admission.NewForbidden` names it.
fn forbidden_subject(req: &Request<'_>) -> String {
    let resource = if req.def.group.is_empty() {
        req.def.plural.clone()
    } else {
        format!("{}.{}", req.def.plural, req.def.group)
    };
    if req.name.is_empty() {
        resource
    } else {
        format!("{resource} \"{}\"", req.name)
    }
}

fn policy_error(policy: &Value, binding: &Value, kind: &str, error: &str) -> ApiError {
    ApiError::new(
        500,
        "InternalError",
        format!(
            "{kind} '{}' with binding '{}' failed: {error}",
            name_of(policy),
            name_of(binding)
        ),
    )
}

/// The CEL variables of one policy on one request.
struct Evaluation {
    activation: HashMap<String, CelValue>,
    /// Variables whose evaluation failed, with the real server's error.
    failed_variables: HashMap<String, String>,
}

impl Evaluation {
    /// `None` when the policy or its binding does not match the request.
    fn prepare(
        policy: &Value,
        binding: &Value,
        req: &Request<'_>,
        object: Option<&Value>,
        old: Option<&Value>,
    ) -> Result<Option<Evaluation>, String> {
        let subject = object.or(old).unwrap_or(&Value::Null);
        for constraints in [
            policy.pointer("/spec/matchConstraints"),
            binding.pointer("/spec/matchResources"),
        ]
        .into_iter()
        .flatten()
        {
            if !matches_resources(constraints, req, subject) {
                return Ok(None);
            }
        }
        let namespace = req.namespace.unwrap_or("");
        let request = json!({
            "kind": {"group": req.def.group, "version": req.version, "kind": req.def.kind},
            "resource": {"group": req.def.group, "version": req.version, "resource": req.def.plural},
            "subResource": req.subresource.unwrap_or(""),
            "requestKind": {"group": req.def.group, "version": req.version, "kind": req.def.kind},
            "requestResource": {"group": req.def.group, "version": req.version, "resource": req.def.plural},
            "requestSubResource": req.subresource.unwrap_or(""),
            "name": req.name,
            "namespace": namespace,
            "operation": req.operation,
            "userInfo": {"username": req.identity, "uid": "", "groups": ["system:authenticated"]},
            "dryRun": false,
        });
        let mut eval = Evaluation {
            activation: HashMap::from([
                ("object".to_string(), to_cel(object.unwrap_or(&Value::Null))),
                ("oldObject".to_string(), to_cel(old.unwrap_or(&Value::Null))),
                ("request".to_string(), to_cel(&request)),
                ("params".to_string(), CelValue::Null),
                (
                    "namespaceObject".to_string(),
                    if namespace.is_empty() {
                        CelValue::Null
                    } else {
                        to_cel(&json!({"metadata": {"name": namespace,
                            "labels": {"kubernetes.io/metadata.name": namespace}}}))
                    },
                ),
                ("variables".to_string(), to_cel(&json!({}))),
            ]),
            failed_variables: HashMap::new(),
        };
        let fail_open = policy
            .pointer("/spec/failurePolicy")
            .and_then(Value::as_str)
            == Some("Ignore");
        let error = |e: String| -> Result<Option<Evaluation>, String> {
            if fail_open {
                Ok(None)
            } else {
                Err(e)
            }
        };
        // Match conditions first: they cannot use variables, and a request
        // they exclude never evaluates any.
        for c in policy
            .pointer("/spec/matchConditions")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            let expression = c
                .get("expression")
                .and_then(Value::as_str)
                .unwrap_or("true");
            match eval.bool(expression) {
                Ok(true) => {}
                Ok(false) => return Ok(None),
                Err(e) => return error(format!("matchCondition {:?}: {e}", c.get("name"))),
            }
        }
        // Variables are lazy on a real server: one that fails to evaluate is
        // an error only for the expressions that use it.
        let mut variables = serde_json::Map::new();
        for v in policy
            .pointer("/spec/variables")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            let name = v.get("name").and_then(Value::as_str).unwrap_or("");
            let expression = v
                .get("expression")
                .and_then(Value::as_str)
                .unwrap_or("null");
            match eval.value(expression) {
                Ok(value) => {
                    variables.insert(name.to_string(), value);
                    eval.activation.insert(
                        "variables".to_string(),
                        to_cel(&Value::Object(variables.clone())),
                    );
                }
                Err(e) => {
                    eval.failed_variables.insert(
                        name.to_string(),
                        format!("composited variable {name:?} fails to evaluate: {e}"),
                    );
                }
            }
        }
        Ok(Some(eval))
    }

    fn set_object(&mut self, object: &Value) {
        self.activation.insert("object".to_string(), to_cel(object));
    }

    fn run(&self, expression: &str) -> Result<CelValue, String> {
        for (name, error) in &self.failed_variables {
            if uses_variable(expression, name) {
                return Err(error.clone());
            }
        }
        let source = struct_literals_as_maps(expression)?;
        let program = Program::compile(&source).map_err(|e| e.to_string())?;
        let mut ctx = Context::default();
        ctx.register_all();
        for (k, v) in &self.activation {
            ctx.add_variable_from_value(k.clone(), v.clone());
        }
        program.execute(&ctx).map_err(|e| e.to_string())
    }

    fn value(&self, expression: &str) -> Result<Value, String> {
        Ok(from_cel(&self.run(expression)?))
    }

    fn bool(&self, expression: &str) -> Result<bool, String> {
        match self.run(expression)? {
            CelValue::Bool(b) => Ok(b),
            other => Err(format!("expected a bool, got {other:?}")),
        }
    }
}

/// Whether `expression` reads `variables.<name>`.
fn uses_variable(expression: &str, name: &str) -> bool {
    let needle = format!("variables.{name}");
    expression.match_indices(&needle).any(|(at, _)| {
        let end = at + needle.len();
        !expression[end..].starts_with(|c: char| c.is_alphanumeric() || c == '_')
    })
}

fn matches_resources(constraints: &Value, req: &Request<'_>, subject: &Value) -> bool {
    let rule_matches = |r: &Value| {
        let list = |k: &str| -> Vec<String> {
            r.get(k)
                .and_then(Value::as_array)
                .map(|a| {
                    a.iter()
                        .filter_map(|x| x.as_str().map(str::to_string))
                        .collect()
                })
                .unwrap_or_default()
        };
        let any = |l: &[String], want: &str| l.iter().any(|x| x == "*" || x == want);
        let resource = req.resource();
        let resource_ok = list("resources").iter().any(|x| {
            x == "*"
                || *x == resource
                || (x == "*/*")
                || (req.subresource.is_some() && x.strip_prefix("*/") == req.subresource)
        });
        let operations = list("operations");
        any(&list("apiGroups"), &req.def.group)
            && any(&list("apiVersions"), req.version)
            && (operations.is_empty() || any(&operations, req.operation))
            && resource_ok
    };
    let rules: Vec<&Value> = constraints
        .get("resourceRules")
        .and_then(Value::as_array)
        .map(|a| a.iter().collect())
        .unwrap_or_default();
    if !rules.is_empty() && !rules.iter().any(|r| rule_matches(r)) {
        return false;
    }
    if constraints
        .get("excludeResourceRules")
        .and_then(Value::as_array)
        .is_some_and(|a| a.iter().any(rule_matches))
    {
        return false;
    }
    let labels = subject
        .pointer("/metadata/labels")
        .cloned()
        .unwrap_or_else(|| json!({}));
    if let Some(sel) = constraints.get("objectSelector") {
        if !label_selector_matches(sel, &labels) {
            return false;
        }
    }
    if let (Some(sel), Some(ns)) = (constraints.get("namespaceSelector"), req.namespace) {
        if !label_selector_matches(sel, &json!({"kubernetes.io/metadata.name": ns})) {
            return false;
        }
    }
    true
}

/// A `metav1.LabelSelector` against `labels` (an empty selector matches everything).
pub fn label_selector_matches(selector: &Value, labels: &Value) -> bool {
    let label = |k: &str| labels.get(k).and_then(Value::as_str);
    let by_label = selector
        .get("matchLabels")
        .and_then(Value::as_object)
        .into_iter()
        .flatten()
        .all(|(k, v)| label(k) == v.as_str());
    let by_expression = selector
        .get("matchExpressions")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .all(|e| {
            let key = e.get("key").and_then(Value::as_str).unwrap_or("");
            let values: Vec<&str> = e
                .get("values")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
                .filter_map(Value::as_str)
                .collect();
            match e.get("operator").and_then(Value::as_str) {
                Some("In") => label(key).is_some_and(|v| values.contains(&v)),
                Some("NotIn") => label(key).is_none_or(|v| !values.contains(&v)),
                Some("Exists") => label(key).is_some(),
                Some("DoesNotExist") => label(key).is_none(),
                _ => false,
            }
        });
    by_label && by_expression
}

fn to_cel(v: &Value) -> CelValue {
    match v {
        Value::Null => CelValue::Null,
        Value::Bool(b) => CelValue::Bool(*b),
        Value::Number(n) => match (n.as_i64(), n.as_u64()) {
            (Some(i), _) => CelValue::Int(i),
            (None, Some(u)) => CelValue::UInt(u),
            _ => CelValue::Float(n.as_f64().unwrap_or(0.0)),
        },
        Value::String(s) => CelValue::String(Arc::new(s.clone())),
        Value::Array(a) => CelValue::List(Arc::new(a.iter().map(to_cel).collect())),
        Value::Object(m) => CelValue::Map(Map {
            map: Arc::new(
                m.iter()
                    .map(|(k, v)| (Key::String(Arc::new(k.clone())), to_cel(v)))
                    .collect(),
            ),
        }),
    }
}

fn from_cel(v: &CelValue) -> Value {
    match v {
        CelValue::Null => Value::Null,
        CelValue::Bool(b) => json!(b),
        CelValue::Int(i) => json!(i),
        CelValue::UInt(u) => json!(u),
        CelValue::Float(f) => json!(f),
        CelValue::String(s) => json!(s.as_str()),
        CelValue::List(l) => Value::Array(l.iter().map(from_cel).collect()),
        CelValue::Map(m) => Value::Object(
            m.map
                .iter()
                .map(|(k, v)| {
                    let key = match k {
                        Key::String(s) => s.to_string(),
                        Key::Int(i) => i.to_string(),
                        Key::Uint(u) => u.to_string(),
                        Key::Bool(b) => b.to_string(),
                    };
                    (key, from_cel(v))
                })
                .collect(),
        ),
        other => json!(format!("{other:?}")),
    }
}

/// The `ServiceAccount` admission plugin's token mount: a projected volume with the
/// token, the cluster CA and the namespace, at the well-known path of every container
/// that has nothing mounted there — unless the pod opts out.
fn mount_service_account_token(pod: &mut Value) {
    if pod.pointer("/spec/automountServiceAccountToken") == Some(&json!(false)) {
        return;
    }
    if pod.pointer("/spec/serviceAccountName").is_none() {
        pod["spec"]["serviceAccountName"] = json!("default");
    }
    let existing = pod
        .pointer("/spec/volumes")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(|v| v.get("name").and_then(Value::as_str))
        .find(|n| n.starts_with("kube-api-access-"))
        .map(str::to_string);
    let mut used: Option<String> = existing.clone();
    for list in ["containers", "initContainers"] {
        let Some(containers) = pod
            .pointer_mut(&format!("/spec/{list}"))
            .and_then(Value::as_array_mut)
        else {
            continue;
        };
        for c in containers {
            let mounted = c
                .get("volumeMounts")
                .and_then(Value::as_array)
                .is_some_and(|m| m.iter().any(|m| m["mountPath"] == TOKEN_PATH));
            if mounted {
                continue;
            }
            let volume = used
                .get_or_insert_with(|| format!("kube-api-access-{}", crate::http::random_suffix(5)))
                .clone();
            let mounts = c
                .as_object_mut()
                .map(|o| o.entry("volumeMounts").or_insert_with(|| json!([])));
            if let Some(Value::Array(m)) = mounts {
                m.push(json!({"name": volume, "mountPath": TOKEN_PATH, "readOnly": true}));
            }
        }
    }
    if let (Some(volume), None) = (&used, &existing) {
        let spec = &mut pod["spec"];
        if !spec["volumes"].is_array() {
            spec["volumes"] = json!([]);
        }
        if let Some(volumes) = spec["volumes"].as_array_mut() {
            volumes.push(json!({"name": volume, "projected": {"defaultMode": 420, "sources": [
                {"serviceAccountToken": {"expirationSeconds": 3607, "path": "token"}},
                {"configMap": {"name": "kube-root-ca.crt", "items": [{"key": "ca.crt", "path": "ca.crt"}]}},
                {"downwardAPI": {"items": [{"path": "namespace", "fieldRef": {"apiVersion": "v1", "fieldPath": "metadata.namespace"}}]}}
            ]}}));
        }
    }
}

/// `GetPodQOS`: BestEffort without any request or limit; Guaranteed when every container
/// (init containers included) has CPU and memory limits and requests equal to them (a
/// missing request defaults to its limit); Burstable otherwise.
pub fn qos_class(pod: &Value) -> &'static str {
    let containers: Vec<&Value> = ["containers", "initContainers"]
        .iter()
        .flat_map(|l| {
            pod.pointer(&format!("/spec/{l}"))
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
        })
        .collect();
    let quantity = |c: &Value, kind: &str, res: &str| -> Option<i128> {
        let text = match c.pointer(&format!("/resources/{kind}/{res}"))? {
            Value::String(s) => s.clone(),
            Value::Number(n) => n.to_string(),
            _ => return None,
        };
        // Exact values: "500m" == "0.5", "1Gi" == "1073741824".
        Some(k8s_quantity::Quantity::parse(&text).ok()?.nanos())
    };
    let mut any = false;
    let mut guaranteed = true;
    for c in &containers {
        for res in ["cpu", "memory"] {
            let limit = quantity(c, "limits", res);
            let request = quantity(c, "requests", res).or(limit);
            if limit.is_some() || request.is_some() {
                any = true;
            }
            match (request, limit) {
                (Some(r), Some(l)) if r == l => {}
                _ => guaranteed = false,
            }
        }
        let other = |kind: &str| {
            c.pointer(&format!("/resources/{kind}"))
                .and_then(Value::as_object)
                .is_some_and(|m| !m.is_empty())
        };
        if other("requests") || other("limits") {
            any = true;
        }
    }
    if !any {
        "BestEffort"
    } else if guaranteed {
        "Guaranteed"
    } else {
        "Burstable"
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pod(containers: Value, init: Value) -> Value {
        json!({"spec": {"containers": containers, "initContainers": init}})
    }

    #[test]
    fn qos_classes_follow_kubernetes() {
        let guaranteed = json!({"resources": {"limits": {"cpu": "1", "memory": "1Gi"}}});
        let burstable = json!({"resources": {"requests": {"cpu": "10m", "memory": "32Mi"}, "limits": {"memory": "128Mi"}}});
        let none = json!({});
        assert_eq!(qos_class(&pod(json!([none]), json!([]))), "BestEffort");
        assert_eq!(
            qos_class(&pod(json!([guaranteed]), json!([]))),
            "Guaranteed"
        );
        assert_eq!(
            qos_class(&pod(
                json!([{"resources": {"requests": {"cpu": "500m", "memory": "1Gi"}, "limits": {"cpu": "0.5", "memory": "1Gi"}}}]),
                json!([])
            )),
            "Guaranteed"
        );
        // A Guaranteed pod with a Burstable sidecar is Burstable.
        assert_eq!(
            qos_class(&pod(json!([guaranteed]), json!([burstable]))),
            "Burstable"
        );
        assert_eq!(
            qos_class(&pod(json!([guaranteed]), json!([none]))),
            "Burstable"
        );
    }

    #[test]
    fn the_token_is_mounted_unless_the_pod_opts_out() {
        let mut p = pod(
            json!([{"name": "a"}]),
            json!([{"name": "b", "volumeMounts": [{"name": "x", "mountPath": TOKEN_PATH}]}]),
        );
        mount_service_account_token(&mut p);
        assert_eq!(
            p["spec"]["containers"][0]["volumeMounts"][0]["mountPath"],
            TOKEN_PATH
        );
        assert_eq!(
            p["spec"]["initContainers"][0]["volumeMounts"]
                .as_array()
                .unwrap()
                .len(),
            1
        );
        assert!(p["spec"]["volumes"][0]["name"]
            .as_str()
            .unwrap()
            .starts_with("kube-api-access-"));
        let mut opted_out =
            json!({"spec": {"automountServiceAccountToken": false, "containers": [{"name": "a"}]}});
        mount_service_account_token(&mut opted_out);
        assert!(opted_out["spec"]["containers"][0]
            .get("volumeMounts")
            .is_none());
    }

    #[test]
    fn label_selectors() {
        let labels = json!({"a": "1", "b": "2"});
        assert!(label_selector_matches(&json!({}), &labels));
        assert!(label_selector_matches(
            &json!({"matchLabels": {"a": "1"}}),
            &labels
        ));
        assert!(!label_selector_matches(
            &json!({"matchLabels": {"a": "2"}}),
            &labels
        ));
        assert!(label_selector_matches(
            &json!({"matchExpressions": [{"key": "b", "operator": "In", "values": ["2", "3"]}, {"key": "c", "operator": "DoesNotExist"}]}),
            &labels
        ));
        assert!(!label_selector_matches(
            &json!({"matchExpressions": [{"key": "a", "operator": "NotIn", "values": ["1"]}]}),
            &labels
        ));
    }
}
