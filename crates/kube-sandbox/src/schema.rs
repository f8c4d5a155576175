//! Structural schemas of CRD versions, applied the way apiextensions-apiserver does on
//! every write of a custom resource:
//!
//! 1. pruning of unknown fields (`apiextensions-apiserver/pkg/apiserver/schema/pruning/algorithm.go`),
//!    reporting each pruned path for the `unknown field "<path>"` warnings
//!    (`schemaCoercingDecoder` in `customresource_handler.go`);
//! 2. dropping `null`s of non-nullable fields without default (`schema/defaulting/prunenulls.go`);
//! 3. defaulting (`schema/defaulting/algorithm.go`);
//! 4. validation: kube-openapi's `pkg/validation/validate` (type, format, enum, required, bounds,
//!    lengths, pattern, items, properties, allOf/anyOf/oneOf/not), turned into field errors as
//!    `kubeOpenAPIResultToFieldErrors` in `apiextensions-apiserver/pkg/apiserver/validation/validation.go`
//!    does, with CRD validation ratcheting (unchanged values are not re-validated on update);
//! 5. `x-kubernetes-validations` (CEL) through a pluggable [`RuleEvaluator`]; none is built in.

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::sync::{Arc, LazyLock};

use anyhow::{bail, Context};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::{
    JSONSchemaProps, JSONSchemaPropsOrArray, JSONSchemaPropsOrBool, ValidationRule,
};
use regex::Regex;
use serde_json::Value;

use crate::error::{go_float, go_quote, go_value, FieldError, FieldErrorKind};

/// Evaluates `x-kubernetes-validations` rules (CEL). The sandbox has no CEL engine; plug one in
/// with [`crate::SandboxConfig::rule_evaluator`] or [`crate::Sandbox::set_rule_evaluator`].
///
/// It is called after the schema validation, on every create and update (main resource and
/// `/status`) of a custom resource whose schema has rules, once per schema node that carries
/// rules and whose value is present in the new object. The errors it returns are added to the
/// other validation errors of the write (one 422 `Invalid` Status).
pub trait RuleEvaluator: Send + Sync + std::fmt::Debug {
    fn evaluate(&self, ctx: &RuleContext<'_>) -> Vec<FieldError>;
}

/// One schema node with `x-kubernetes-validations`, and the values it applies to.
#[derive(Debug)]
pub struct RuleContext<'a> {
    /// Field path of the node (`spec.storage`), empty at the root.
    pub path: &'a str,
    pub rules: &'a [ValidationRule],
    /// The schema node, as written in the CRD (children included).
    pub schema: &'a JSONSchemaProps,
    /// `self`: the node's value in the new object (after pruning and defaulting).
    pub value: &'a Value,
    /// `oldSelf`: the value at the same path in the stored object (updates only; not
    /// correlated through list items).
    pub old_value: Option<&'a Value>,
    pub object: &'a Value,
    pub old_object: Option<&'a Value>,
}

/// `additionalProperties`.
#[derive(Debug)]
enum Additional {
    /// `true` or `false` without schema: pruning treats the values as schema-less.
    Bool(bool),
    Schema(Box<Schema>),
}

/// A compiled schema node.
#[derive(Debug, Default)]
pub struct Schema {
    types: Vec<String>,
    nullable: bool,
    /// Only formats the API server validates (others are stripped, as `StripUnsupportedFormatsPostProcess`).
    format: Option<String>,
    properties: BTreeMap<String, Schema>,
    additional: Option<Additional>,
    items: Option<Box<Schema>>,
    preserve_unknown: bool,
    embedded: bool,
    default: Option<Value>,
    enum_values: Option<Vec<Value>>,
    required: Vec<String>,
    minimum: Option<f64>,
    maximum: Option<f64>,
    exclusive_minimum: bool,
    exclusive_maximum: bool,
    multiple_of: Option<f64>,
    min_length: Option<i64>,
    max_length: Option<i64>,
    pattern: Option<(String, Regex)>,
    min_items: Option<i64>,
    max_items: Option<i64>,
    unique_items: bool,
    min_properties: Option<i64>,
    max_properties: Option<i64>,
    all_of: Vec<Schema>,
    any_of: Vec<Schema>,
    one_of: Vec<Schema>,
    not: Option<Box<Schema>>,
    rules: Option<Arc<JSONSchemaProps>>,
}

const META_FIELDS: [&str; 3] = ["apiVersion", "kind", "metadata"];

/// Formats a CRD schema may use and the API server checks (`apiserver/validation/formats.go`,
/// names normalised without dashes as go-openapi does).
const SUPPORTED_FORMATS: &[&str] = &[
    "bsonobjectid",
    "uri",
    "email",
    "hostname",
    "ipv4",
    "ipv6",
    "cidr",
    "mac",
    "uuid",
    "uuid3",
    "uuid4",
    "uuid5",
    "isbn",
    "isbn10",
    "isbn13",
    "creditcard",
    "ssn",
    "hexcolor",
    "rgbcolor",
    "byte",
    "password",
    "date",
    "duration",
    "datetime",
    "quantity",
    "k8sshortname",
    "k8slongname",
];

impl Schema {
    /// Compiles one CRD version's `openAPIV3Schema`.
    pub fn compile(props: &JSONSchemaProps) -> anyhow::Result<Schema> {
        Self::compile_at(props, "openAPIV3Schema")
    }

    fn compile_at(p: &JSONSchemaProps, at: &str) -> anyhow::Result<Schema> {
        let int_or_string = p.x_kubernetes_int_or_string == Some(true);
        let types = if int_or_string {
            vec!["integer".to_string(), "string".to_string()]
        } else {
            p.type_.iter().filter(|t| !t.is_empty()).cloned().collect()
        };
        let format = p.format.as_deref().filter(|f| !f.is_empty()).and_then(|f| {
            let supported = match types.as_slice() {
                [] => SUPPORTED_FORMATS.contains(&f.replace('-', "").as_str()),
                [t] if t == "string" => SUPPORTED_FORMATS.contains(&f.replace('-', "").as_str()),
                [t] if t == "integer" => f == "int32" || f == "int64",
                [t] if t == "number" => f == "float" || f == "double",
                _ => false,
            };
            supported.then(|| f.to_string())
        });
        let pattern = match p.pattern.as_deref() {
            Some(src) => Some((
                src.to_string(),
                Regex::new(src)
                    .with_context(|| format!("{at}.pattern: invalid regular expression {src:?}"))?,
            )),
            None => None,
        };
        let mut properties = BTreeMap::new();
        for (k, v) in p.properties.iter().flatten() {
            properties.insert(
                k.clone(),
                Self::compile_at(v, &format!("{at}.properties[{k}]"))?,
            );
        }
        let additional = match &p.additional_properties {
            None => None,
            Some(JSONSchemaPropsOrBool::Bool(b)) => Some(Additional::Bool(*b)),
            Some(JSONSchemaPropsOrBool::Schema(s)) => Some(Additional::Schema(Box::new(
                Self::compile_at(s, &format!("{at}.additionalProperties"))?,
            ))),
        };
        let items = match &p.items {
            None => None,
            Some(JSONSchemaPropsOrArray::Schema(s)) => {
                Some(Box::new(Self::compile_at(s, &format!("{at}.items"))?))
            }
            Some(JSONSchemaPropsOrArray::Schemas(_)) => {
                bail!("{at}.items: must be a schema, not an array of schemas (structural schema)")
            }
        };
        let list = |v: &Option<Vec<JSONSchemaProps>>, what: &str| -> anyhow::Result<Vec<Schema>> {
            v.iter()
                .flatten()
                .enumerate()
                .map(|(i, s)| Self::compile_at(s, &format!("{at}.{what}[{i}]")))
                .collect()
        };
        let not = match &p.not {
            Some(s) => Some(Box::new(Self::compile_at(s, &format!("{at}.not"))?)),
            None => None,
        };
        let rules = p
            .x_kubernetes_validations
            .as_ref()
            .filter(|r| !r.is_empty())
            .map(|_| Arc::new(p.clone()));
        Ok(Schema {
            types,
            nullable: p.nullable == Some(true),
            format,
            properties,
            additional,
            items,
            preserve_unknown: p.x_kubernetes_preserve_unknown_fields == Some(true),
            embedded: p.x_kubernetes_embedded_resource == Some(true),
            default: p.default.as_ref().map(|d| d.0.clone()),
            enum_values: p
                .enum_
                .as_ref()
                .map(|e| e.iter().map(|v| v.0.clone()).collect()),
            required: p.required.clone().unwrap_or_default(),
            minimum: p.minimum,
            maximum: p.maximum,
            exclusive_minimum: p.exclusive_minimum == Some(true),
            exclusive_maximum: p.exclusive_maximum == Some(true),
            multiple_of: p.multiple_of,
            min_length: p.min_length,
            max_length: p.max_length,
            pattern,
            min_items: p.min_items,
            max_items: p.max_items,
            unique_items: p.unique_items == Some(true),
            min_properties: p.min_properties,
            max_properties: p.max_properties,
            all_of: list(&p.all_of, "allOf")?,
            any_of: list(&p.any_of, "anyOf")?,
            one_of: list(&p.one_of, "oneOf")?,
            not,
            rules,
        })
    }

    /// What the API server does while decoding a write: prune unknown fields, drop `null`s of
    /// non-nullable fields without default, apply defaults. Returns the pruned paths, sorted.
    pub fn coerce(&self, obj: &mut Value) -> Vec<String> {
        let mut pruned = Vec::new();
        prune(obj, Some(self), true, &mut Vec::new(), &mut pruned);
        pruned.sort();
        prune_nulls(obj, Some(self));
        default(obj, self);
        pruned
    }

    /// Schema validation of a whole object; with `old`, values equal to the stored ones are
    /// not validated again (CRDValidationRatcheting, GA in 1.33).
    pub fn validate_object(&self, obj: &Value, old: Option<&Value>) -> Vec<FieldError> {
        let mut errs = Vec::new();
        self.validate("", obj, old, &mut errs);
        errs
    }

    /// Runs `evaluator` on every node with `x-kubernetes-validations` whose value is present.
    pub fn evaluate_rules(
        &self,
        evaluator: &dyn RuleEvaluator,
        obj: &Value,
        old: Option<&Value>,
    ) -> Vec<FieldError> {
        let mut errs = Vec::new();
        self.walk_rules(evaluator, "", obj, old, obj, old, &mut errs);
        errs
    }

    #[allow(clippy::too_many_arguments)]
    fn walk_rules(
        &self,
        evaluator: &dyn RuleEvaluator,
        path: &str,
        value: &Value,
        old_value: Option<&Value>,
        object: &Value,
        old_object: Option<&Value>,
        errs: &mut Vec<FieldError>,
    ) {
        if let Some(raw) = &self.rules {
            let rules = raw.x_kubernetes_validations.as_deref().unwrap_or_default();
            errs.extend(evaluator.evaluate(&RuleContext {
                path,
                rules,
                schema: raw,
                value,
                old_value,
                object,
                old_object,
            }));
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
                    let schema = match (self.properties.get(k), &self.additional) {
                        (Some(p), _) => p,
                        (None, Some(Additional::Schema(s))) => s.as_ref(),
                        _ => continue,
                    };
                    let old = old_value.and_then(|o| o.get(k));
                    schema.walk_rules(evaluator, &child(k), v, old, object, old_object, errs);
                }
            }
            Value::Array(items) => {
                if let Some(s) = &self.items {
                    for (i, v) in items.iter().enumerate() {
                        s.walk_rules(
                            evaluator,
                            &format!("{path}[{i}]"),
                            v,
                            None,
                            object,
                            old_object,
                            errs,
                        );
                    }
                }
            }
            _ => {}
        }
    }
}

fn join_path(path: &[String]) -> String {
    let mut s = String::new();
    for seg in path {
        if !s.is_empty() && !seg.starts_with('[') {
            s.push('.');
        }
        s.push_str(seg);
    }
    s
}

/// `prune` of pruning/algorithm.go; `root` makes the node behave as an embedded resource.
fn prune(
    x: &mut Value,
    s: Option<&Schema>,
    root: bool,
    path: &mut Vec<String>,
    out: &mut Vec<String>,
) {
    if let Some(s) = s.filter(|s| s.preserve_unknown) {
        skip_prune(x, s, root, path, out);
        return;
    }
    match x {
        Value::Object(map) => {
            let Some(s) = s else {
                for k in map.keys() {
                    path.push(k.clone());
                    out.push(join_path(path));
                    path.pop();
                }
                map.clear();
                return;
            };
            let embedded = s.embedded || root;
            map.retain(|k, v| {
                if embedded && META_FIELDS.contains(&k.as_str()) {
                    return true;
                }
                let child: Option<Option<&Schema>> = match (s.properties.get(k), &s.additional) {
                    (Some(p), _) => Some(Some(p)),
                    (None, Some(Additional::Schema(a))) => Some(Some(a.as_ref())),
                    (None, Some(Additional::Bool(_))) => Some(None),
                    (None, None) => None,
                };
                path.push(k.clone());
                let keep = match child {
                    Some(c) => {
                        prune(v, c, false, path, out);
                        true
                    }
                    None => {
                        if !META_FIELDS.contains(&k.as_str()) || path.len() > 1 {
                            out.push(join_path(path));
                        }
                        false
                    }
                };
                path.pop();
                keep
            });
        }
        Value::Array(items) => {
            let item_schema = s.and_then(|s| s.items.as_deref());
            for (i, v) in items.iter_mut().enumerate() {
                path.push(format!("[{i}]"));
                prune(v, item_schema, false, path, out);
                path.pop();
            }
        }
        _ => {}
    }
}

/// `skipPrune`: below `x-kubernetes-preserve-unknown-fields`, only specified fields are pruned into.
fn skip_prune(
    x: &mut Value,
    s: &Schema,
    root: bool,
    path: &mut Vec<String>,
    out: &mut Vec<String>,
) {
    match x {
        Value::Object(map) => {
            let embedded = s.embedded || root;
            for (k, v) in map.iter_mut() {
                if embedded && META_FIELDS.contains(&k.as_str()) {
                    continue;
                }
                let child = match (s.properties.get(k), &s.additional) {
                    (Some(p), _) => Some(Some(p)),
                    (None, Some(Additional::Schema(a))) => Some(Some(a.as_ref())),
                    (None, Some(Additional::Bool(_))) => Some(None),
                    (None, None) => None,
                };
                if let Some(c) = child {
                    path.push(k.clone());
                    prune(v, c, false, path, out);
                    path.pop();
                }
            }
        }
        Value::Array(items) => {
            if let Some(item_schema) = s.items.as_deref() {
                for (i, v) in items.iter_mut().enumerate() {
                    path.push(format!("[{i}]"));
                    skip_prune(v, item_schema, false, path, out);
                    path.pop();
                }
            }
        }
        _ => {}
    }
}

fn field_schema<'a>(s: Option<&'a Schema>, k: &str) -> Option<&'a Schema> {
    let s = s?;
    match (s.properties.get(k), &s.additional) {
        (Some(p), _) => Some(p),
        (None, Some(Additional::Schema(a))) => Some(a.as_ref()),
        _ => None,
    }
}

/// `PruneNonNullableNullsWithoutDefaults` (only map values; list items stay).
fn prune_nulls(x: &mut Value, s: Option<&Schema>) {
    match x {
        Value::Object(map) => map.retain(|k, v| {
            let child = field_schema(s, k);
            if v.is_null() && child.is_some_and(|c| !c.nullable && c.default.is_none()) {
                return false;
            }
            prune_nulls(v, child);
            true
        }),
        Value::Array(items) => {
            let item_schema = s.and_then(|s| s.items.as_deref());
            for v in items {
                prune_nulls(v, item_schema);
            }
        }
        _ => {}
    }
}

fn non_nullable_null(x: &Value, s: &Schema) -> bool {
    x.is_null() && !s.nullable
}

/// `Default` of defaulting/algorithm.go: missing fields (and non-nullable nulls) get their
/// default, then every field is visited, so defaults nest.
fn default(x: &mut Value, s: &Schema) {
    match x {
        Value::Object(map) => {
            for (k, prop) in &s.properties {
                let Some(d) = &prop.default else { continue };
                if map.get(k).is_none_or(|v| non_nullable_null(v, prop)) {
                    map.insert(k.clone(), d.clone());
                }
            }
            for (k, v) in map.iter_mut() {
                if let Some(prop) = s.properties.get(k) {
                    default(v, prop);
                } else if let Some(Additional::Schema(a)) = &s.additional {
                    if non_nullable_null(v, a) {
                        if let Some(d) = &a.default {
                            *v = d.clone();
                        }
                    }
                    default(v, a);
                }
            }
        }
        Value::Array(items) => {
            if let Some(item_schema) = s.items.as_deref() {
                for v in items {
                    if non_nullable_null(v, item_schema) {
                        if let Some(d) = &item_schema.default {
                            *v = d.clone();
                        }
                    }
                    default(v, item_schema);
                }
            }
        }
        _ => {}
    }
}

// ---- validation (kube-openapi pkg/validation/validate) ----

/// Field of an openapi error: its path without the leading dot; none gives `<nil>`.
fn field_of(name: &str) -> String {
    if name.is_empty() || name == "." {
        "<nil>".to_string()
    } else {
        name.strip_prefix('.').unwrap_or(name).to_string()
    }
}

/// `InvalidTypeCode` → `field.TypeInvalid`; the message is `typeFailWithData` (value is a string).
fn type_error(name: &str, expected: &str, got: &str) -> FieldError {
    FieldError::new(
        &field_of(name),
        FieldErrorKind::TypeInvalid,
        Some(go_quote(got)),
        &format!(
            "{name} in body must be of type {expected}: {}",
            go_quote(got)
        ),
    )
}

/// Any other openapi error → `field.Invalid(path, value, err.Error())`.
fn invalid(name: &str, value: Option<&Value>, msg: &str) -> FieldError {
    let value = value.map_or_else(|| go_quote(""), go_value);
    FieldError::new(&field_of(name), FieldErrorKind::Invalid, Some(value), msg)
}

/// Errors that are not `*errors.Validation` (anyOf, oneOf, allOf, not): `field.Invalid(nil, "", msg)`.
fn composite(msg: String) -> FieldError {
    FieldError::new("<nil>", FieldErrorKind::Invalid, Some(go_quote("")), &msg)
}

/// JSON type (and go-openapi's inferred format) of a decoded value.
fn json_type(v: &Value) -> (&'static str, &'static str) {
    match v {
        Value::Null => ("null", ""),
        Value::Bool(_) => ("boolean", ""),
        Value::Number(n) if n.is_i64() || n.is_u64() => ("integer", "int64"),
        Value::Number(_) => ("number", "float64"),
        Value::String(_) => ("string", ""),
        Value::Array(_) => ("array", ""),
        Value::Object(_) => ("object", ""),
    }
}

fn is_integral(v: &Value) -> bool {
    v.as_f64()
        .is_some_and(|f| f.fract() == 0.0 && f.is_finite())
}

impl Schema {
    fn has_type(&self, t: &str) -> bool {
        self.types.iter().any(|x| x == t)
    }

    fn validate(&self, path: &str, data: &Value, old: Option<&Value>, errs: &mut Vec<FieldError>) {
        if old == Some(data) {
            // Ratcheting: an unchanged value is not validated again.
            return;
        }
        if data.is_null() {
            if !self.types.is_empty() && !self.has_type("null") && !self.nullable {
                errs.push(type_error(path, &self.types.join(","), "null"));
            }
            self.validate_enum(path, data, errs);
            return;
        }
        if !self.types.is_empty() || self.format.is_some() {
            self.validate_type(path, data, errs);
        }
        self.validate_composition(path, data, old, errs);
        if let Value::String(s) = data {
            self.validate_string(path, s, data, errs);
            self.validate_format(path, s, errs);
        }
        if data.is_number() {
            self.validate_number(path, data, errs);
        }
        if let Value::Array(items) = data {
            self.validate_array(path, items, errs);
        }
        self.validate_enum(path, data, errs);
        if let Value::Object(map) = data {
            self.validate_object_props(path, map, old, errs);
        }
    }

    /// `typeValidator.Validate`.
    fn validate_type(&self, path: &str, data: &Value, errs: &mut Vec<FieldError>) {
        let (sch_type, format) = json_type(data);
        let is_float_int = sch_type == "number" && is_integral(data) && self.has_type("integer");
        let is_int_float = sch_type == "integer" && self.has_type("number");
        let string_or_slice = data.is_string() || data.is_array();
        if let Some(f) = &self.format {
            let is_lower_int = f == "int64" && format == "int32";
            let is_lower_float = f == "float64" && format == "float32";
            if !(string_or_slice
                || self.has_type(sch_type)
                || format == f
                || is_float_int
                || is_int_float
                || is_lower_int
                || is_lower_float)
            {
                errs.push(type_error(path, f, format));
                return;
            }
            if !(self.has_type("number") || self.has_type("integer")) && string_or_slice {
                return;
            }
        }
        if !(self.has_type(sch_type) || is_float_int || is_int_float) {
            errs.push(type_error(path, &self.types.join(","), sch_type));
        }
    }

    /// `schemaPropsValidator`: allOf, oneOf, anyOf, not (kube-openapi picks the "best" failing
    /// branch by match count; the first failing branch is reported here).
    fn validate_composition(
        &self,
        path: &str,
        data: &Value,
        old: Option<&Value>,
        errs: &mut Vec<FieldError>,
    ) {
        let run = |s: &Schema| {
            let mut e = Vec::new();
            s.validate(path, data, old, &mut e);
            e
        };
        if !self.any_of.is_empty() {
            let results: Vec<Vec<FieldError>> = self.any_of.iter().map(run).collect();
            if !results.iter().any(Vec::is_empty) {
                errs.push(composite(format!(
                    "{} must validate at least one schema (anyOf)",
                    go_quote(path)
                )));
                errs.extend(results.into_iter().next().unwrap_or_default());
            }
        }
        if !self.one_of.is_empty() {
            let results: Vec<Vec<FieldError>> = self.one_of.iter().map(run).collect();
            let valid = results.iter().filter(|r| r.is_empty()).count();
            if valid != 1 {
                let extra = if valid == 0 {
                    "Found none valid".to_string()
                } else {
                    format!("Found {valid} valid alternatives")
                };
                errs.push(composite(format!(
                    "{} must validate one and only one schema (oneOf). {extra}",
                    go_quote(path)
                )));
                if valid == 0 {
                    errs.extend(results.into_iter().next().unwrap_or_default());
                }
            }
        }
        if !self.all_of.is_empty() {
            let mut validated = 0;
            for s in &self.all_of {
                let r = run(s);
                if r.is_empty() {
                    validated += 1;
                }
                errs.extend(r);
            }
            if validated != self.all_of.len() {
                let extra = if validated == 0 {
                    ". None validated"
                } else {
                    ""
                };
                errs.push(composite(format!(
                    "{} must validate all the schemas (allOf){extra}",
                    go_quote(path)
                )));
            }
        }
        if let Some(not) = &self.not {
            if run(not).is_empty() {
                errs.push(composite(format!(
                    "{} must not validate the schema (not)",
                    go_quote(path)
                )));
            }
        }
    }

    /// `stringValidator`: the first failure only.
    fn validate_string(&self, path: &str, s: &str, data: &Value, errs: &mut Vec<FieldError>) {
        let len = i64::try_from(s.chars().count()).unwrap_or(i64::MAX);
        if let Some(max) = self.max_length.filter(|m| len > *m) {
            // TooLongFailCode → field.TooLongMaxLength.
            errs.push(FieldError::new(
                &field_of(path),
                FieldErrorKind::TooLong,
                Some(go_value(data)),
                &format!("may not be longer than {max}"),
            ));
            return;
        }
        if let Some(min) = self.min_length.filter(|m| len < *m) {
            errs.push(invalid(
                path,
                Some(data),
                &format!("{path} in body should be at least {min} chars long"),
            ));
            return;
        }
        if let Some((src, re)) = &self.pattern {
            if !re.is_match(s) {
                errs.push(invalid(
                    path,
                    Some(data),
                    &format!("{path} in body should match '{src}'"),
                ));
            }
        }
    }

    /// `formatValidator` with the formats of strfmt's default registry.
    fn validate_format(&self, path: &str, s: &str, errs: &mut Vec<FieldError>) {
        let Some(f) = &self.format else { return };
        if !self.types.is_empty() && !self.has_type("string") {
            return;
        }
        if !format_ok(&f.replace('-', ""), s) {
            errs.push(type_error(path, f, s));
        }
    }

    /// `numberValidator`: multipleOf, minimum, maximum, each reported.
    fn validate_number(&self, path: &str, data: &Value, errs: &mut Vec<FieldError>) {
        let int = data.as_i64();
        let f = data.as_f64().unwrap_or(0.0);
        // For integer data the bound is converted to int64 first, as MinimumNativeType does.
        let bound = |b: f64| -> (bool, String) {
            match int {
                Some(_) => (true, (b as i64).to_string()),
                None => (false, go_float(b)),
            }
        };
        if let Some(m) = self.multiple_of {
            let bad = match int {
                Some(i) => {
                    let m = m as i64;
                    m != 0 && (i / m) * m != i
                }
                // go-openapi: `1/factor*data` below 1, `data/factor` otherwise.
                None => {
                    let q = if m < 1.0 { 1.0 / m * f } else { f / m };
                    q.fract() != 0.0
                }
            };
            if m < 0.0 {
                errs.push(invalid(
                    path,
                    Some(data),
                    &format!(
                        "factor MultipleOf declared for {path} must be positive: {}",
                        bound(m).1
                    ),
                ));
            } else if bad {
                errs.push(invalid(
                    path,
                    Some(data),
                    &format!("{path} in body should be a multiple of {}", bound(m).1),
                ));
            }
        }
        if let Some(min) = self.minimum {
            let (is_int, shown) = bound(min);
            let below = if is_int {
                let (i, m) = (int.unwrap_or(0), min as i64);
                if self.exclusive_minimum {
                    i <= m
                } else {
                    i < m
                }
            } else if self.exclusive_minimum {
                f <= min
            } else {
                f < min
            };
            if below {
                let rel = if self.exclusive_minimum {
                    "greater than"
                } else {
                    "greater than or equal to"
                };
                errs.push(invalid(
                    path,
                    Some(data),
                    &format!("{path} in body should be {rel} {shown}"),
                ));
            }
        }
        if let Some(max) = self.maximum {
            let (is_int, shown) = bound(max);
            let above = if is_int {
                let (i, m) = (int.unwrap_or(0), max as i64);
                if self.exclusive_maximum {
                    i >= m
                } else {
                    i > m
                }
            } else if self.exclusive_maximum {
                f >= max
            } else {
                f > max
            };
            if above {
                let rel = if self.exclusive_maximum {
                    "less than"
                } else {
                    "less than or equal to"
                };
                errs.push(invalid(
                    path,
                    Some(data),
                    &format!("{path} in body should be {rel} {shown}"),
                ));
            }
        }
    }

    /// `schemaSliceValidator`: items first, then minItems, maxItems, uniqueItems.
    fn validate_array(&self, path: &str, items: &[Value], errs: &mut Vec<FieldError>) {
        if let Some(s) = &self.items {
            for (i, v) in items.iter().enumerate() {
                s.validate(&format!("{path}[{i}]"), v, None, errs);
            }
        }
        let size = i64::try_from(items.len()).unwrap_or(i64::MAX);
        if let Some(min) = self.min_items.filter(|m| size < *m) {
            errs.push(invalid(
                path,
                Some(&Value::from(size)),
                &format!("{path} in body should have at least {min} items"),
            ));
        }
        if let Some(max) = self.max_items.filter(|m| size > *m) {
            errs.push(FieldError::new(
                &field_of(path),
                FieldErrorKind::TooMany,
                Some(size.to_string()),
                &format!("must have at most {max} items"),
            ));
        }
        if self.unique_items {
            let dup = items
                .iter()
                .enumerate()
                .any(|(i, a)| items[..i].iter().any(|b| a == b));
            if dup {
                errs.push(invalid(
                    path,
                    None,
                    &format!("{path} in body shouldn't contain duplicates"),
                ));
            }
        }
    }

    /// `basicCommonValidator`: enum (numbers compare by value, as Go converts types first).
    fn validate_enum(&self, path: &str, data: &Value, errs: &mut Vec<FieldError>) {
        let Some(values) = &self.enum_values else {
            return;
        };
        if values.is_empty() {
            return;
        }
        let matches = values.iter().any(|e| match (e, data) {
            (Value::Number(a), Value::Number(b)) => a.as_f64() == b.as_f64(),
            (a, b) => a == b,
        });
        if !matches {
            let supported: Vec<String> = values
                .iter()
                .map(|v| match v {
                    Value::String(s) => s.clone(),
                    other => other.to_string(),
                })
                .collect();
            errs.push(FieldError::not_supported(&field_of(path), data, &supported));
        }
    }

    /// `objectValidator`.
    fn validate_object_props(
        &self,
        path: &str,
        map: &serde_json::Map<String, Value>,
        old: Option<&Value>,
        errs: &mut Vec<FieldError>,
    ) {
        let n = i64::try_from(map.len()).unwrap_or(i64::MAX);
        if let Some(min) = self.min_properties.filter(|m| n < *m) {
            errs.push(invalid(
                path,
                Some(&Value::from(n)),
                &format!("{path} in body should have at least {min} properties"),
            ));
            return;
        }
        if let Some(max) = self.max_properties.filter(|m| n > *m) {
            errs.push(FieldError::new(
                &field_of(path),
                FieldErrorKind::TooMany,
                Some(n.to_string()),
                &format!("must have at most {max} items"),
            ));
            return;
        }
        match &self.additional {
            Some(Additional::Bool(false)) => {
                for k in map.keys().filter(|k| !self.properties.contains_key(*k)) {
                    errs.push(invalid(
                        path,
                        Some(&Value::from(k.as_str())),
                        &format!("{path}.{k} in body is a forbidden property"),
                    ));
                }
            }
            Some(Additional::Schema(a)) => {
                for (k, v) in map
                    .iter()
                    .filter(|(k, _)| !self.properties.contains_key(*k))
                {
                    a.validate(&format!("{path}.{k}"), v, old.and_then(|o| o.get(k)), errs);
                }
            }
            _ => {}
        }
        for (name, prop) in &self.properties {
            if let Some(v) = map.get(name) {
                let child = if path.is_empty() {
                    name.clone()
                } else {
                    format!("{path}.{name}")
                };
                prop.validate(&child, v, old.and_then(|o| o.get(name)), errs);
            }
        }
        for k in &self.required {
            if !map.contains_key(k) {
                errs.push(FieldError::required(&field_of(&format!("{path}.{k}")), ""));
            }
        }
    }
}

// ---- formats (kube-openapi strfmt default registry; approximations noted) ----

fn re(src: &str) -> Option<Regex> {
    Regex::new(src).ok()
}

fn matches(re: &LazyLock<Option<Regex>>, s: &str) -> bool {
    re.as_ref().is_some_and(|r| r.is_match(s))
}

static UUID: LazyLock<Option<Regex>> =
    LazyLock::new(|| re("(?i)^[0-9a-f]{8}-?[0-9a-f]{4}-?[0-9a-f]{4}-?[0-9a-f]{4}-?[0-9a-f]{12}$"));
static UUID3: LazyLock<Option<Regex>> =
    LazyLock::new(|| re("(?i)^[0-9a-f]{8}-?[0-9a-f]{4}-?3[0-9a-f]{3}-?[0-9a-f]{4}-?[0-9a-f]{12}$"));
static UUID4: LazyLock<Option<Regex>> = LazyLock::new(|| {
    re("(?i)^[0-9a-f]{8}-?[0-9a-f]{4}-?4[0-9a-f]{3}-?[89ab][0-9a-f]{3}-?[0-9a-f]{12}$")
});
static UUID5: LazyLock<Option<Regex>> = LazyLock::new(|| {
    re("(?i)^[0-9a-f]{8}-?[0-9a-f]{4}-?5[0-9a-f]{3}-?[89ab][0-9a-f]{3}-?[0-9a-f]{12}$")
});
static HOSTNAME: LazyLock<Option<Regex>> = LazyLock::new(|| {
    re(
        r"^([a-zA-Z0-9\p{S}\p{L}]((-?[a-zA-Z0-9\p{S}\p{L}]{0,62})?)|([a-zA-Z0-9\p{S}\p{L}](([a-zA-Z0-9-\p{S}\p{L}]{0,61}[a-zA-Z0-9\p{S}\p{L}])?)(\.)){1,}([a-zA-Z\p{L}]){2,63})$",
    )
});
static EMAIL: LazyLock<Option<Regex>> = LazyLock::new(|| re(r"^[^@\s<>]+@[^@\s<>]+$"));
static MAC: LazyLock<Option<Regex>> = LazyLock::new(|| {
    re(r"^([0-9A-Fa-f]{2}[:-]){5,19}[0-9A-Fa-f]{2}$|^([0-9A-Fa-f]{4}\.){2,9}[0-9A-Fa-f]{4}$")
});
static HEXCOLOR: LazyLock<Option<Regex>> =
    LazyLock::new(|| re("^#?([0-9a-fA-F]{3}|[0-9a-fA-F]{6})$"));
static RGBCOLOR: LazyLock<Option<Regex>> = LazyLock::new(|| {
    re(
        r"^rgb\(\s*(0|[1-9]\d?|1\d\d?|2[0-4]\d|25[0-5])\s*,\s*(0|[1-9]\d?|1\d\d?|2[0-4]\d|25[0-5])\s*,\s*(0|[1-9]\d?|1\d\d?|2[0-4]\d|25[0-5])\s*\)$",
    )
});
static SSN: LazyLock<Option<Regex>> = LazyLock::new(|| re(r"^\d{3}[- ]?\d{2}[- ]?\d{4}$"));
static BSON: LazyLock<Option<Regex>> = LazyLock::new(|| re("^[0-9a-fA-F]{24}$"));
static ISBN10: LazyLock<Option<Regex>> = LazyLock::new(|| re(r"^(?:[0-9]{9}X|[0-9]{10})$"));
static ISBN13: LazyLock<Option<Regex>> = LazyLock::new(|| re(r"^(?:[0-9]{13})$"));
static DURATION: LazyLock<Option<Regex>> = LazyLock::new(|| {
    re(
        r"^([-+]?((\d+(\.\d*)?)|(\.\d+))(ns|us|µs|μs|ms|s|m|h))+$|^\d+\s*(ns|us|ms|s|m|h|d|w|nanoseconds?|microseconds?|milliseconds?|seconds?|minutes?|hours?|days?|weeks?)$",
    )
});
static DNS_LABEL: LazyLock<Option<Regex>> = LazyLock::new(|| re("^[a-z0-9]([-a-z0-9]*[a-z0-9])?$"));
static DNS_SUBDOMAIN: LazyLock<Option<Regex>> =
    LazyLock::new(|| re(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$"));
static URI_SCHEME: LazyLock<Option<Regex>> =
    LazyLock::new(|| re(r"^[a-zA-Z][a-zA-Z0-9+.-]*:[^\s]*$"));

fn is_base64(s: &str) -> bool {
    s.len().is_multiple_of(4) && {
        let body = s.trim_end_matches('=');
        s.len() - body.len() <= 2
            && body
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'+' || b == b'/')
    }
}

fn is_cidr(s: &str) -> bool {
    let Some((ip, bits)) = s.split_once('/') else {
        return false;
    };
    let Ok(bits) = bits.parse::<u8>() else {
        return false;
    };
    match ip.parse::<IpAddr>() {
        Ok(IpAddr::V4(_)) => bits <= 32,
        Ok(IpAddr::V6(_)) => bits <= 128,
        Err(_) => false,
    }
}

/// Whether `s` has the (normalised) format `f`.
fn format_ok(f: &str, s: &str) -> bool {
    match f {
        "datetime" => s.parse::<jiff::Timestamp>().is_ok(),
        "date" => s.len() == 10 && s.parse::<jiff::civil::Date>().is_ok(),
        "byte" => is_base64(s),
        "password" => true,
        "uri" => s.starts_with('/') || matches(&URI_SCHEME, s),
        "email" => matches(&EMAIL, s),
        "hostname" => matches(&HOSTNAME, s),
        "ipv4" => s.parse::<Ipv4Addr>().is_ok(),
        "ipv6" => s.contains(':') && s.parse::<Ipv6Addr>().is_ok(),
        "cidr" => is_cidr(s),
        "mac" => matches(&MAC, s),
        "uuid" => matches(&UUID, s),
        "uuid3" => matches(&UUID3, s),
        "uuid4" => matches(&UUID4, s),
        "uuid5" => matches(&UUID5, s),
        "isbn" => {
            let d: String = s.chars().filter(|c| !matches!(c, ' ' | '-')).collect();
            matches(&ISBN10, &d) || matches(&ISBN13, &d)
        }
        "isbn10" => matches(&ISBN10, &s.replace(['-', ' '], "")),
        "isbn13" => matches(&ISBN13, &s.replace(['-', ' '], "")),
        "creditcard" => {
            let d: String = s.chars().filter(char::is_ascii_digit).collect();
            (13..=19).contains(&d.len())
        }
        "ssn" => matches(&SSN, s),
        "hexcolor" => matches(&HEXCOLOR, s),
        "rgbcolor" => matches(&RGBCOLOR, s),
        "bsonobjectid" => matches(&BSON, s),
        "duration" => matches(&DURATION, s),
        "quantity" => k8s_quantity::Quantity::parse(s).is_ok(),
        "k8sshortname" => s.len() <= 63 && matches(&DNS_LABEL, s),
        "k8slongname" => s.len() <= 253 && matches(&DNS_SUBDOMAIN, s),
        _ => true,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn schema(v: Value) -> Schema {
        let props: JSONSchemaProps = serde_json::from_value(v).unwrap();
        Schema::compile(&props).unwrap()
    }

    fn root() -> Schema {
        schema(json!({
            "type": "object",
            "properties": {
                "spec": {"type": "object", "required": ["n"], "properties": {
                    "n": {"type": "integer", "minimum": 1, "maximum": 10},
                    "mode": {"type": "string", "enum": ["Standard"], "default": "Standard"},
                    "slot": {"type": "string", "pattern": "^[0-9a-z_]*$"},
                    "step": {"x-kubernetes-int-or-string": true, "anyOf": [{"type": "integer"}, {"type": "string"}]},
                    "free": {"type": "object", "x-kubernetes-preserve-unknown-fields": true, "properties": {"known": {"type": "object", "properties": {"a": {"type": "string"}}}}},
                    "labels": {"type": "object", "additionalProperties": {"type": "string"}},
                    "nested": {"type": "object", "default": {}, "properties": {"inner": {"type": "boolean", "default": false}}},
                    "list": {"type": "array", "maxItems": 2, "items": {"type": "object", "properties": {"t": {"type": "string", "format": "date-time"}, "x": {"type": "string"}}}}
                }},
                "status": {"type": "object", "properties": {"phase": {"type": "string"}}}
            }
        }))
    }

    #[test]
    fn prunes_unknown_fields_and_reports_sorted_paths() {
        let mut obj = json!({
            "apiVersion": "x/v1", "kind": "K", "metadata": {"name": "a", "whatever": 1},
            "spec": {"n": 1, "zz": 1, "free": {"kept": 1, "known": {"a": "x", "b": 2}},
                     "list": [{"x": "a", "y": 1}], "labels": {"k": "v"}},
            "status": {"phase": "P", "extra": {"deep": 1}},
            "top": 1
        });
        let pruned = root().coerce(&mut obj);
        assert_eq!(
            pruned,
            [
                "spec.free.known.b",
                "spec.list[0].y",
                "spec.zz",
                "status.extra",
                "top"
            ]
        );
        assert_eq!(
            obj["metadata"]["whatever"], 1,
            "metadata is never pruned at the root"
        );
        assert_eq!(
            obj["spec"]["free"]["kept"], 1,
            "preserve-unknown-fields keeps unknown keys"
        );
        assert_eq!(obj["spec"]["labels"]["k"], "v");
    }

    #[test]
    fn drops_non_nullable_nulls_and_applies_nested_defaults() {
        let mut obj = json!({"spec": {"n": 1, "slot": null, "list": [{"t": null, "x": "a"}]}});
        root().coerce(&mut obj);
        assert_eq!(
            obj["spec"],
            json!({"n": 1, "list": [{"x": "a"}], "mode": "Standard", "nested": {"inner": false}})
        );
    }

    #[test]
    fn validation_messages_are_the_api_servers() {
        let obj = json!({"spec": {"n": "x", "mode": "Recommend", "slot": "A-",
                          "step": true, "list": [{"t": "nope"}, {}, {}]}});
        let errs: Vec<String> = root()
            .validate_object(&obj, None)
            .iter()
            .map(ToString::to_string)
            .collect();
        assert_eq!(
            errs,
            [
                r#"spec.list[0].t: Invalid value: "nope": spec.list[0].t in body must be of type date-time: "nope""#,
                r#"spec.list: Too many: 3: must have at most 2 items"#,
                r#"spec.mode: Unsupported value: "Recommend": supported values: "Standard""#,
                r#"spec.n: Invalid value: "string": spec.n in body must be of type integer: "string""#,
                r#"spec.slot: Invalid value: "A-": spec.slot in body should match '^[0-9a-z_]*$'"#,
                r#"spec.step: Invalid value: "boolean": spec.step in body must be of type integer,string: "boolean""#,
                r#"<nil>: Invalid value: "": "spec.step" must validate at least one schema (anyOf)"#,
                r#"spec.step: Invalid value: "boolean": spec.step in body must be of type integer: "boolean""#,
            ]
        );
        let errs: Vec<String> = root()
            .validate_object(&json!({"spec": {"n": 0}}), None)
            .iter()
            .map(ToString::to_string)
            .collect();
        assert_eq!(
            errs,
            ["spec.n: Invalid value: 0: spec.n in body should be greater than or equal to 1"]
        );
        let errs: Vec<String> = root()
            .validate_object(&json!({"spec": {}}), None)
            .iter()
            .map(ToString::to_string)
            .collect();
        assert_eq!(errs, ["spec.n: Required value"]);
    }

    #[test]
    fn unchanged_values_are_ratcheted() {
        let old = json!({"spec": {"n": 0}, "status": {"phase": "a"}});
        let new = json!({"spec": {"n": 0}, "status": {"phase": "b"}});
        assert!(root().validate_object(&new, Some(&old)).is_empty());
        assert_eq!(root().validate_object(&new, None).len(), 1);
    }

    #[test]
    fn formats() {
        assert!(format_ok("datetime", "2026-01-02T03:04:05Z"));
        assert!(format_ok("datetime", "2026-01-02T03:04:05.123+02:00"));
        assert!(!format_ok("datetime", "2026-01-02"));
        assert!(format_ok("date", "2026-01-02"));
        assert!(format_ok("byte", "aGVsbG8="));
        assert!(!format_ok("byte", "a"));
        assert!(format_ok("cidr", "10.0.0.0/8"));
        assert!(format_ok("quantity", "1Gi"));
        assert!(!format_ok("k8sshortname", "A"));
    }
}
