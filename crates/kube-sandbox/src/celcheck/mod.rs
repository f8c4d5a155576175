//! CEL as the API server compiles and costs it, for the sandbox's admission of CRDs and
//! admission policies.
//!
//! kube-cel evaluates rules but compiles whatever parses: a member call of a global
//! function, or a rule whose worst case is far over budget, is accepted there and refused
//! by a real kube-apiserver. This module holds the sandbox to the real server's verdict:
//!
//! - [`parse`]: positions and macro expansions as cel-go's parser produces them;
//! - [`decls`]: the Kubernetes CEL libraries' declarations, per compatibility version;
//! - [`check`]: cel-go's type checker (overloads, global vs member, fields of schema types);
//! - [`cost`]: cel-go's cost estimator with Kubernetes' library estimator and schema sizes;
//! - this file: types of schema nodes (`apiserver/pkg/cel/common/schemas.go`) and the CRD
//!   checks of `apiextensions/validation` (per-rule and per-CRD budgets, cardinality).
//!
//! No crate type-checks CEL or estimates its cost in Rust (the `cel` crate only parses and
//! evaluates), hence our own implementation, written from cel-go's and Kubernetes' sources.

pub mod admission;
pub mod check;
pub mod cost;
pub mod decls;
pub mod parse;
pub mod types;

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::{Arc, OnceLock};

use serde_json::Value;

use crate::error::{FieldError, FieldErrorKind};
use check::{Checked, Env};
use cost::{Range, SizeEstimator};
use decls::{Functions, Minor};
use types::{Fields, StructType, Type};

/// The largest request the API server accepts (3 MiB): bounds strings and lists without limits.
pub const MAX_REQUEST_SIZE_BYTES: i64 = 3 * 1024 * 1024;
/// `StaticEstimatedCostLimit`: one rule's estimated cost × its cardinality.
pub const PER_RULE_COST_LIMIT: u64 = 10_000_000;
/// `StaticEstimatedCRDCostLimit`: every rule of one schema together.
pub const PER_CRD_COST_LIMIT: u64 = 100_000_000;

/// The functions of one compatibility version, built once.
pub fn functions(version: Minor) -> Arc<Functions> {
    static CACHE: OnceLock<std::sync::Mutex<HashMap<Minor, Arc<Functions>>>> = OnceLock::new();
    let cache = CACHE.get_or_init(Default::default);
    let mut map = cache.lock().unwrap_or_else(|e| e.into_inner());
    map.entry(version)
        .or_insert_with(|| Arc::new(Functions::for_version(version)))
        .clone()
}

/// A compile failure rendered like cel-go's `Issues.String()`:
/// `ERROR: <input>:L:C: message` with the source line and a caret.
pub fn render_errors(parsed: &parse::Parsed, errors: &[check::CheckError]) -> String {
    let mut located: Vec<(usize, usize, &str)> = errors
        .iter()
        .map(|e| {
            let (l, c) = parsed.location(e.id);
            (l, c, e.message.as_str())
        })
        .collect();
    located.sort_by_key(|(l, c, _)| (*l, *c));
    located
        .iter()
        .map(|(l, c, m)| render_one(parsed, *l, *c, m))
        .collect::<Vec<_>>()
        .join("\n")
}

fn render_one(parsed: &parse::Parsed, line: usize, column: usize, message: &str) -> String {
    let snippet = parsed.line(line).replace('\t', " ");
    let mut caret = String::new();
    for c in snippet.chars().take(column) {
        caret.push(if c.len_utf8() > 1 { '\u{ff0e}' } else { '.' });
    }
    let at = snippet.chars().nth(column);
    caret.push(if at.is_some_and(|c| c.len_utf8() > 1) {
        '\u{ff3e}'
    } else {
        '^'
    });
    format!(
        "ERROR: <input>:{line}:{}: {message}\n | {snippet}\n | {caret}",
        column + 1
    )
}

/// Parses and type-checks `expression`; the error is the API server's text.
pub fn compile(expression: &str, env: &Env) -> Result<Checked, String> {
    let parsed = match parse::parse(expression) {
        Ok(p) => p,
        Err(e) => return Err(render_syntax(expression, &e)),
    };
    let checked = check::check(parsed, env).map_err(|e| render_errors(&e.0, &e.1))?;
    validate_literals(&checked)?;
    Ok(checked)
}

fn render_syntax(source: &str, e: &parse::SyntaxError) -> String {
    let mut line = 1;
    let mut column = 0;
    for c in source.chars().take(e.offset) {
        if c == '\n' {
            line += 1;
            column = 0;
        } else {
            column += 1;
        }
    }
    let text = source.split('\n').nth(line - 1).unwrap_or("");
    let caret: String = std::iter::repeat_n('.', column).chain(['^']).collect();
    format!(
        "ERROR: <input>:{line}:{}: {}\n | {text}\n | {caret}",
        column + 1,
        e.message
    )
}

/// Kubernetes' AST validators (1.29+): literal regexes, durations and timestamps must parse.
fn validate_literals(checked: &Checked) -> Result<(), String> {
    let mut errors = Vec::new();
    walk(&checked.parsed.expr, &mut |e| {
        if let parse::Kind::Call {
            function,
            target,
            args,
        } = &e.kind
        {
            let arg = match (function.as_str(), target.is_some()) {
                ("matches", true) | ("duration", false) | ("timestamp", false) => args.first(),
                ("matches", false) => args.first(),
                _ => None,
            };
            if let Some(parse::Expr {
                id,
                kind: parse::Kind::Literal(parse::Literal::String(s)),
            }) = arg
            {
                let ok = match function.as_str() {
                    "matches" => regex::Regex::new(s).is_ok(),
                    "duration" => go_duration_ok(s),
                    _ => {
                        jiff::Timestamp::strptime("%Y-%m-%dT%H:%M:%S%.f%:z", s).is_ok()
                            || s.parse::<jiff::Timestamp>().is_ok()
                    }
                };
                if !ok {
                    errors.push(check::CheckError {
                        id: *id,
                        message: format!("invalid {function} argument"),
                    });
                }
            }
        }
    });
    if errors.is_empty() {
        Ok(())
    } else {
        Err(render_errors(&checked.parsed, &errors))
    }
}

fn go_duration_ok(s: &str) -> bool {
    static RE: OnceLock<Option<regex::Regex>> = OnceLock::new();
    RE.get_or_init(|| {
        regex::Regex::new(r"^[-+]?(0|(([0-9]+(\.[0-9]*)?|\.[0-9]+)(ns|us|µs|μs|ms|s|m|h))+)$").ok()
    })
    .as_ref()
    .is_some_and(|re| re.is_match(s))
}

fn walk(e: &parse::Expr, f: &mut dyn FnMut(&parse::Expr)) {
    f(e);
    match &e.kind {
        parse::Kind::Select { operand, .. } => walk(operand, f),
        parse::Kind::Call { target, args, .. } => {
            if let Some(t) = target {
                walk(t, f);
            }
            args.iter().for_each(|a| walk(a, f));
        }
        parse::Kind::List { elements, .. } => elements.iter().for_each(|a| walk(a, f)),
        parse::Kind::Map { entries } => entries.iter().for_each(|en| {
            walk(&en.key, f);
            walk(&en.value, f);
        }),
        parse::Kind::Struct { fields, .. } => fields.iter().for_each(|x| walk(&x.value, f)),
        parse::Kind::Comprehension(c) => {
            for x in [
                &c.iter_range,
                &c.accu_init,
                &c.loop_condition,
                &c.loop_step,
                &c.result,
            ] {
                walk(x, f);
            }
        }
        parse::Kind::Literal(_) | parse::Kind::Ident(_) => {}
    }
}

// ------------------------------------------------------------------ schema types

/// The CEL view of a schema node (`DeclType`): its type, the most elements a value of it
/// can have (characters ×4 for strings, items, properties) and its smallest JSON size.
#[derive(Debug, Clone)]
pub struct DeclNode {
    pub t: Type,
    pub max_elements: i64,
    pub min_serialized: i64,
    pub fields: BTreeMap<String, DeclNode>,
    pub elem: Option<Box<DeclNode>>,
    pub key: Option<Box<DeclNode>>,
}

impl DeclNode {
    fn simple(t: Type, min: i64) -> DeclNode {
        DeclNode {
            t,
            max_elements: 0,
            min_serialized: min,
            fields: BTreeMap::new(),
            elem: None,
            key: None,
        }
    }
}

/// CEL's reserved words, escaped as `__word__` when they name a property.
const CEL_RESERVED: &[&str] = &[
    "true",
    "false",
    "null",
    "in",
    "as",
    "break",
    "const",
    "continue",
    "else",
    "for",
    "function",
    "if",
    "import",
    "let",
    "loop",
    "package",
    "namespace",
    "return",
    "var",
    "void",
    "while",
];

/// A property name as CEL sees it (`apiserver/pkg/cel/escaping.go`), or `None` when it
/// cannot be expressed (the property is then invisible to rules).
pub fn escape(name: &str) -> Option<String> {
    if name.is_empty() || name.starts_with(|c: char| c.is_ascii_digit()) {
        return None;
    }
    if CEL_RESERVED.contains(&name) {
        return Some(format!("__{name}__"));
    }
    let mut out = String::new();
    let chars: Vec<char> = name.chars().collect();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        if c == '_' && chars.get(i + 1) == Some(&'_') {
            out.push_str("__underscores__");
            i += 2;
            continue;
        }
        match c {
            '.' => out.push_str("__dot__"),
            '-' => out.push_str("__dash__"),
            '/' => out.push_str("__slash__"),
            c if c.is_ascii_alphanumeric() || c == '_' => out.push(c),
            _ => return None,
        }
        i += 1;
    }
    Some(out)
}

fn schema_type(s: &Value) -> &str {
    s.get("type").and_then(Value::as_str).unwrap_or("")
}

fn int_of(s: &Value, key: &str) -> Option<i64> {
    s.get(key).and_then(Value::as_i64)
}

fn is_true(s: &Value, key: &str) -> bool {
    s.get(key).and_then(Value::as_bool) == Some(true)
}

fn max_string_per_request(s: &Value) -> i64 {
    match s.get("format").and_then(Value::as_str) {
        Some("duration") | Some("date-time") => 32,
        Some("date") => 12,
        _ => MAX_REQUEST_SIZE_BYTES - 2,
    }
}

/// The declared type of a schema node, named `name` (object fields are `name.field`).
pub fn decl_node(s: &Value, is_root: bool, name: &str) -> Option<DeclNode> {
    if is_true(s, "x-kubernetes-int-or-string") {
        let mut n = DeclNode::simple(Type::Dyn, 1);
        n.max_elements = match int_of(s, "maxLength") {
            Some(l) => l.max(0) * 4,
            None => MAX_REQUEST_SIZE_BYTES - 2,
        };
        return Some(n);
    }
    match schema_type(s) {
        "array" => {
            let items = s.get("items")?;
            let elem = decl_node(
                items,
                is_true(items, "x-kubernetes-embedded-resource"),
                &format!("{name}.@idx"),
            )?;
            let max = match int_of(s, "maxItems") {
                Some(m) => m.max(0),
                None => (MAX_REQUEST_SIZE_BYTES - 2) / (elem.min_serialized + 1),
            };
            Some(DeclNode {
                t: Type::list(elem.t.clone()),
                max_elements: max,
                min_serialized: 2,
                fields: BTreeMap::new(),
                elem: Some(Box::new(elem)),
                key: Some(Box::new(DeclNode::simple(Type::Int, 1))),
            })
        }
        "object" => {
            if let Some(ap) = s.get("additionalProperties").filter(|a| a.is_object()) {
                let value = decl_node(
                    ap,
                    is_true(ap, "x-kubernetes-embedded-resource"),
                    &format!("{name}.@elem"),
                )?;
                let max = match int_of(s, "maxProperties") {
                    Some(m) => m.max(0),
                    None => (MAX_REQUEST_SIZE_BYTES - 2) / (value.min_serialized + 6),
                };
                let mut key = DeclNode::simple(Type::String, 2);
                key.max_elements = MAX_REQUEST_SIZE_BYTES - 2;
                return Some(DeclNode {
                    t: Type::map(Type::String, value.t.clone()),
                    max_elements: max,
                    min_serialized: 2,
                    fields: BTreeMap::new(),
                    elem: Some(Box::new(value)),
                    key: Some(Box::new(key)),
                });
            }
            let mut props: BTreeMap<String, Value> = s
                .get("properties")
                .and_then(Value::as_object)
                .map(|m| m.iter().map(|(k, v)| (k.clone(), v.clone())).collect())
                .unwrap_or_default();
            if is_root {
                add_type_and_object_meta(&mut props);
            }
            let required: BTreeSet<&str> = s
                .get("required")
                .and_then(Value::as_array)
                .map(|r| r.iter().filter_map(Value::as_str).collect())
                .unwrap_or_default();
            let mut fields = BTreeMap::new();
            let mut types = BTreeMap::new();
            let mut min = 2;
            for (prop, schema) in &props {
                let Some(escaped) = escape(prop) else {
                    continue;
                };
                let Some(field) = decl_node(
                    schema,
                    is_true(schema, "x-kubernetes-embedded-resource"),
                    &format!("{name}.{escaped}"),
                ) else {
                    continue;
                };
                if required.contains(prop.as_str()) && schema.get("default").is_none() {
                    min += prop.len() as i64 + field.min_serialized + 4;
                }
                types.insert(escaped.clone(), field.t.clone());
                fields.insert(escaped, field);
            }
            Some(DeclNode {
                t: Type::Struct(Arc::new(StructType {
                    name: name.to_string(),
                    fields: Fields::Declared(types),
                })),
                max_elements: 0,
                min_serialized: min,
                fields,
                elem: None,
                key: None,
            })
        }
        "string" => {
            let format = s.get("format").and_then(Value::as_str).unwrap_or("");
            let (t, min) = match format {
                "byte" => (Type::Bytes, 2),
                "duration" => (Type::Duration, 3),
                "date" => (Type::Timestamp, 12),
                "date-time" => (Type::Timestamp, 21),
                _ => (Type::String, 2),
            };
            let mut n = DeclNode::simple(t, min);
            n.max_elements = match (format, int_of(s, "maxLength")) {
                ("byte", Some(l)) => l.max(0),
                ("duration" | "date" | "date-time", _) => max_string_per_request(s),
                (_, Some(l)) => l.max(0) * 4,
                (_, None) => match s.get("enum").and_then(Value::as_array) {
                    Some(e) if !e.is_empty() => e
                        .iter()
                        .filter_map(Value::as_str)
                        .map(|v| v.len() as i64)
                        .max()
                        .unwrap_or(0),
                    _ => MAX_REQUEST_SIZE_BYTES - 2,
                },
            };
            Some(n)
        }
        "boolean" => Some(DeclNode::simple(Type::Bool, 4)),
        "number" => Some(DeclNode::simple(Type::Double, 1)),
        "integer" => Some(DeclNode::simple(Type::Int, 1)),
        _ => None,
    }
}

fn add_type_and_object_meta(props: &mut BTreeMap<String, Value>) {
    let has = |p: &BTreeMap<String, Value>| {
        p.get("metadata")
            .and_then(|m| m.pointer("/properties/name"))
            .is_some()
            && p.get("metadata")
                .and_then(|m| m.pointer("/properties/generateName"))
                .is_some()
            && p.contains_key("kind")
            && p.contains_key("apiVersion")
    };
    if has(props) {
        return;
    }
    props.insert("kind".into(), serde_json::json!({"type": "string"}));
    props.insert("apiVersion".into(), serde_json::json!({"type": "string"}));
    props.insert(
        "metadata".into(),
        serde_json::json!({"type": "object", "properties": {
            "name": {"type": "string"}, "generateName": {"type": "string"}}}),
    );
}

struct SchemaSizes<'a> {
    root: &'a DeclNode,
}

impl SizeEstimator for SchemaSizes<'_> {
    fn estimate_size(&self, path: &[String]) -> Option<Range> {
        let mut node = self.root;
        for part in path.iter().skip(1) {
            node = match part.as_str() {
                "@items" | "@values" => node.elem.as_deref()?,
                "@keys" => node.key.as_deref()?,
                name => node.fields.get(name)?,
            };
        }
        Some(Range {
            min: 0,
            max: node.max_elements.max(0) as u64,
        })
    }
}

/// The environment of a CRD rule at a node of type `node` (`self`, `oldSelf`).
fn rule_env(node: &DeclNode, version: Minor, optional_old_self: bool) -> Env {
    let mut env = Env::new(functions(version));
    env.variables.insert("self".into(), node.t.clone());
    env.variables.insert(
        "oldSelf".into(),
        if optional_old_self {
            Type::optional(node.t.clone())
        } else {
            node.t.clone()
        },
    );
    env
}

/// Getting the cost error message exactly as `getCostErrorMessage` formats it.
pub fn cost_error_message(name: &str, cost: u64, limit: u64) -> String {
    let factor = cost as f64 / limit as f64;
    let factor = if factor > 100.0 {
        "more than 100x".to_string()
    } else if factor < 1.5 {
        format!("{factor:.6}x")
    } else {
        format!("{factor:.1}x")
    };
    format!("{name} exceeds budget by factor of {factor} (try simplifying the rule, or adding maxItems, maxProperties, and maxLength where arrays, maps, and strings are declared)")
}

/// The value the API server prints beside a rule that does not compile: the
/// `apiextensions.ValidationRule` as Go's `encoding/json` writes it (HTML-safe escapes).
fn go_rule_value(rule: &Value) -> String {
    let s = |k: &str| {
        rule.get(k)
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_string()
    };
    let value = serde_json::json!({
        "Rule": s("rule"),
        "Message": s("message"),
        "MessageExpression": s("messageExpression"),
        "Reason": rule.get("reason").cloned().unwrap_or(Value::Null),
        "FieldPath": s("fieldPath"),
        "OptionalOldSelf": rule.get("optionalOldSelf").cloned().unwrap_or(Value::Null),
    });
    go_json(&value)
}

/// JSON as Go's `json.Marshal` writes it: `<`, `>` and `&` escaped.
fn go_json(value: &Value) -> String {
    serde_json::to_string(value)
        .unwrap_or_default()
        .replace('<', "\\u003c")
        .replace('>', "\\u003e")
        .replace('&', "\\u0026")
}

/// What the API server says of one CRD version's schema: the errors it refuses it for,
/// its warnings, and each rule's estimated cost (× cardinality) with the total.
#[derive(Debug, Default)]
pub struct SchemaReport {
    pub errors: Vec<FieldError>,
    pub warnings: Vec<String>,
    /// `(field path of the rule or message expression, cost counted toward the budgets)`.
    pub costs: Vec<(String, u64)>,
    pub total_cost: u64,
}

/// Every `x-kubernetes-validations` rule and message expression of one CRD version's
/// schema compiled in the environment of compatibility `version`, each rule's cost ×
/// cardinality against the per-rule budget, and the sum against the per-schema budget.
/// `at` is the schema's field path (`spec.validation.openAPIV3Schema` when every version
/// shares one schema).
pub fn check_crd_schema(schema: &Value, version: Minor, at: &str) -> SchemaReport {
    let mut out = CrdCheck {
        version,
        errors: Vec::new(),
        total: 0,
        most_expensive: Vec::new(),
        costs: Vec::new(),
    };
    if let Some(root) = decl_node(schema, true, "selfType") {
        out.visit(schema, &root, at, Some(1));
    }
    if out.total > PER_CRD_COST_LIMIT {
        for (path, _) in &out.most_expensive {
            out.errors.push(FieldError::forbidden(
                path,
                "contributed to estimated rule cost total exceeding cost limit for entire OpenAPIv3 schema",
            ));
        }
        out.errors.push(FieldError::forbidden(
            at,
            &cost_error_message(
                "x-kubernetes-validations estimated rule cost total for entire OpenAPIv3 schema",
                out.total,
                PER_CRD_COST_LIMIT,
            ),
        ));
    }
    let mut formats = Vec::new();
    collect_formats(schema, version, &mut formats);
    let mut warnings = Vec::new();
    for f in formats {
        let w = format!("unrecognized format {}", crate::error::go_quote(&f));
        if !warnings.contains(&w) {
            warnings.push(w);
        }
    }
    SchemaReport {
        errors: out.errors,
        warnings,
        costs: out.costs,
        total_cost: out.total,
    }
}

const STRING_FORMATS: &[&str] = &[
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
];

fn collect_formats(s: &Value, version: Minor, out: &mut Vec<String>) {
    if let Some(f) = s
        .get("format")
        .and_then(Value::as_str)
        .filter(|f| !f.is_empty())
    {
        let known = match schema_type(s) {
            "" | "string" => {
                let n = f.replace('-', "");
                STRING_FORMATS.contains(&n.as_str())
                    || (version >= 34 && (n == "k8sshortname" || n == "k8slongname"))
            }
            "integer" => f == "int32" || f == "int64",
            "number" => f == "float" || f == "double",
            _ => false,
        };
        if !known {
            out.push(f.to_string());
        }
    }
    for key in ["items", "additionalProperties", "not"] {
        if let Some(c) = s.get(key).filter(|c| c.is_object()) {
            collect_formats(c, version, out);
        }
    }
    for key in [
        "properties",
        "definitions",
        "patternProperties",
        "dependencies",
    ] {
        if let Some(m) = s.get(key).and_then(Value::as_object) {
            for c in m.values() {
                collect_formats(c, version, out);
            }
        }
    }
    for key in ["allOf", "anyOf", "oneOf"] {
        if let Some(l) = s.get(key).and_then(Value::as_array) {
            for c in l {
                collect_formats(c, version, out);
            }
        }
    }
}

struct CrdCheck {
    version: Minor,
    errors: Vec<FieldError>,
    total: u64,
    most_expensive: Vec<(String, u64)>,
    costs: Vec<(String, u64)>,
}

impl CrdCheck {
    fn observe(&mut self, path: String, cost: u64) {
        self.costs.push((path.clone(), cost));
        self.total = self.total.saturating_add(cost);
        if cost < PER_CRD_COST_LIMIT / 100 {
            return;
        }
        self.most_expensive.push((path, cost));
        self.most_expensive.sort_by_key(|e| std::cmp::Reverse(e.1));
        self.most_expensive.truncate(4);
    }

    /// `cardinality`: how many times this node can occur in one object (`None`: unbounded).
    fn visit(&mut self, s: &Value, node: &DeclNode, at: &str, cardinality: Option<u64>) {
        if let Some(rules) = s.get("x-kubernetes-validations").and_then(Value::as_array) {
            let fallback = (MAX_REQUEST_SIZE_BYTES / (node.min_serialized + 1)) as u64;
            let card = cardinality.unwrap_or(fallback);
            for (i, rule) in rules.iter().enumerate() {
                self.check_rule(
                    rule,
                    node,
                    &format!("{at}.x-kubernetes-validations[{i}]"),
                    card,
                );
            }
        }
        let factor: Option<u64> = match schema_type(s) {
            "array" => int_of(s, "maxItems").map(|m| m.max(0) as u64),
            "object" if s.get("additionalProperties").is_some_and(Value::is_object) => {
                int_of(s, "maxProperties").map(|m| m.max(0) as u64)
            }
            _ => Some(1),
        };
        let child_card = match (cardinality, factor) {
            (Some(c), Some(f)) => Some(c.saturating_mul(f)),
            _ => None,
        };
        if let Some(props) = s.get("properties").and_then(Value::as_object) {
            for (name, sub) in props {
                let Some(escaped) = escape(name) else {
                    continue;
                };
                if let Some(child) = node.fields.get(&escaped) {
                    self.visit(sub, child, &format!("{at}.properties[{name}]"), child_card);
                }
            }
        }
        if let (Some(items), Some(elem)) = (s.get("items"), node.elem.as_deref()) {
            if schema_type(s) == "array" {
                self.visit(items, elem, &format!("{at}.items"), child_card);
            }
        }
        if let (Some(ap), Some(elem)) = (
            s.get("additionalProperties").filter(|a| a.is_object()),
            node.elem.as_deref(),
        ) {
            if schema_type(s) == "object" {
                self.visit(ap, elem, &format!("{at}.additionalProperties"), child_card);
            }
        }
    }

    fn check_rule(&mut self, rule: &Value, node: &DeclNode, at: &str, cardinality: u64) {
        let text = rule.get("rule").and_then(Value::as_str).unwrap_or("");
        if text.trim().is_empty() {
            return;
        }
        let optional_old = rule.get("optionalOldSelf").and_then(Value::as_bool) == Some(true);
        let env = rule_env(node, self.version, optional_old);
        let sizes = SchemaSizes { root: node };
        let rule_path = format!("{at}.rule");
        match compile(text, &env) {
            Err(detail) => {
                // As the API server: a rule that does not compile stops there, its message
                // expression is not looked at.
                self.push_invalid(&rule_path, rule, &format!("compilation failed: {detail}"));
                return;
            }
            Ok(checked) => {
                let cost = cost::estimate(&checked, &sizes).max;
                let total = if cost == 0 {
                    0
                } else {
                    cost.saturating_mul(cardinality)
                };
                if total > PER_RULE_COST_LIMIT {
                    self.errors.push(FieldError::forbidden(
                        &rule_path,
                        &cost_error_message("estimated rule cost", total, PER_RULE_COST_LIMIT),
                    ));
                }
                self.observe(rule_path.clone(), total);
                if !matches!(checked.output(), Type::Bool) {
                    self.push_invalid(&rule_path, rule, "cel expression must evaluate to a bool");
                }
                if !mentions(&checked.parsed.expr, "oldSelf")
                    && rule.get("optionalOldSelf").is_some()
                {
                    self.errors.push(FieldError::new(
                        &format!("{at}.optionalOldSelf"),
                        FieldErrorKind::Invalid,
                        Some(optional_old.to_string()),
                        "may not be set if oldSelf is not used in rule",
                    ));
                }
            }
        }
        if let Some(msg) = rule
            .get("messageExpression")
            .and_then(Value::as_str)
            .filter(|m| !m.trim().is_empty())
        {
            let msg_path = format!("{at}.messageExpression");
            match compile(msg, &env) {
                Err(detail) => self.push_invalid(
                    &msg_path,
                    rule,
                    &format!("messageExpression compilation failed: {detail}"),
                ),
                Ok(checked) => {
                    if !matches!(checked.output(), Type::String) {
                        self.push_invalid(
                            &msg_path,
                            rule,
                            "messageExpression must evaluate to a string",
                        );
                        return;
                    }
                    let cost = cost::estimate(&checked, &sizes).max;
                    if cost > PER_RULE_COST_LIMIT {
                        self.errors.push(FieldError::forbidden(
                            &msg_path,
                            &cost_error_message(
                                "estimated messageExpression cost",
                                cost,
                                PER_RULE_COST_LIMIT,
                            ),
                        ));
                    }
                    self.observe(msg_path, cost);
                }
            }
        }
    }

    fn push_invalid(&mut self, path: &str, rule: &Value, detail: &str) {
        self.errors.push(FieldError::new(
            path,
            FieldErrorKind::Invalid,
            Some(go_rule_value(rule)),
            detail,
        ));
    }
}

fn mentions(e: &parse::Expr, name: &str) -> bool {
    let mut found = false;
    walk(e, &mut |x| {
        if matches!(&x.kind, parse::Kind::Ident(n) if n == name) {
            found = true;
        }
    });
    found
}

#[cfg(test)]
mod tests;
