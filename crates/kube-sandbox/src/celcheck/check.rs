//! The CEL type checker, as cel-go's `checker/checker.go`: every identifier must be
//! declared, every field must exist on its object type, and every call must match an
//! overload of its function — global or member as declared. Errors carry cel-go's
//! messages and locations.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use super::decls::{Functions, Overload};
use super::parse::{qualified_name, Comprehension, Expr, Kind, Literal, Parsed};
use super::types::{
    is_assignable, is_assignable_list, most_general, substitute, Fields, Mapping, Type,
};

/// What expressions are compiled against: functions of one compatibility version,
/// variables, and the message types that may be constructed.
#[derive(Debug, Clone)]
pub struct Env {
    pub functions: Arc<Functions>,
    pub variables: HashMap<String, Type>,
    /// Message types that `Name{...}` may construct (mutating admission policies).
    pub types: HashMap<String, Type>,
    /// `Object` and `Object.<path>` resolve to dynamic object types (mutating admission
    /// policies' apply configurations and patch values).
    pub dynamic_object_types: bool,
}

impl Env {
    pub fn new(functions: Arc<Functions>) -> Env {
        Env {
            functions,
            variables: HashMap::new(),
            types: HashMap::new(),
            dynamic_object_types: false,
        }
    }
}

/// A type-checked expression: the type of each node and the overloads each call resolved to.
#[derive(Debug)]
pub struct Checked {
    pub parsed: Parsed,
    pub types: HashMap<u32, Type>,
    pub overloads: HashMap<u32, Vec<String>>,
    /// Selections the checker resolved to a (dotted) variable, by id.
    pub idents: HashMap<u32, String>,
    /// Member-style calls resolved to a global function with a dotted name (`sets.contains`).
    pub qualified_calls: HashSet<u32>,
}

impl Checked {
    pub fn output(&self) -> Type {
        self.type_of(self.parsed.expr.id)
    }

    pub fn type_of(&self, id: u32) -> Type {
        self.types.get(&id).cloned().unwrap_or(Type::Dyn)
    }
}

/// One checker error, located at a node.
#[derive(Debug, Clone)]
pub struct CheckError {
    pub id: u32,
    pub message: String,
}

fn type_ident(name: &str) -> Option<Type> {
    let t = match name {
        "bool" => Type::Bool,
        "bytes" => Type::Bytes,
        "double" => Type::Double,
        "int" => Type::Int,
        "uint" => Type::Uint,
        "string" => Type::String,
        "null_type" => Type::Null,
        "list" => Type::list(Type::Dyn),
        "map" => Type::map(Type::Dyn, Type::Dyn),
        "type" => Type::TypeOf(None),
        "google.protobuf.Duration" => Type::Duration,
        "google.protobuf.Timestamp" => Type::Timestamp,
        _ => return None,
    };
    Some(Type::TypeOf(Some(Box::new(t))))
}

struct Checker<'a> {
    env: &'a Env,
    scopes: Vec<HashMap<String, Type>>,
    mapping: Mapping,
    types: HashMap<u32, Type>,
    overloads: HashMap<u32, Vec<String>>,
    idents: HashMap<u32, String>,
    qualified_calls: HashSet<u32>,
    errors: Vec<CheckError>,
    fresh: usize,
}

/// Type-checks a parsed expression.
pub fn check(parsed: Parsed, env: &Env) -> Result<Checked, Box<(Parsed, Vec<CheckError>)>> {
    let mut c = Checker {
        env,
        scopes: Vec::new(),
        mapping: Mapping::default(),
        types: HashMap::new(),
        overloads: HashMap::new(),
        idents: HashMap::new(),
        qualified_calls: HashSet::new(),
        errors: Vec::new(),
        fresh: 0,
    };
    c.check(&parsed.expr);
    if !c.errors.is_empty() {
        return Err(Box::new((parsed, c.errors)));
    }
    let mapping = c.mapping;
    let types = c
        .types
        .into_iter()
        .map(|(id, t)| (id, substitute(&mapping, &t, true)))
        .collect();
    Ok(Checked {
        parsed,
        types,
        overloads: c.overloads,
        idents: c.idents,
        qualified_calls: c.qualified_calls,
    })
}

impl Checker<'_> {
    fn error(&mut self, id: u32, message: String) {
        self.errors.push(CheckError { id, message });
    }

    fn set(&mut self, e: &Expr, t: Type) {
        self.types.insert(e.id, t);
    }

    fn get(&self, e: &Expr) -> Type {
        self.types.get(&e.id).cloned().unwrap_or(Type::Error)
    }

    fn new_type_var(&mut self) -> Type {
        let t = Type::Param(format!("_var{}", self.fresh));
        self.fresh += 1;
        t
    }

    fn lookup_ident(&self, name: &str) -> Option<Type> {
        let name = name.strip_prefix('.').unwrap_or(name);
        for scope in self.scopes.iter().rev() {
            if let Some(t) = scope.get(name) {
                return Some(t.clone());
            }
        }
        self.env
            .variables
            .get(name)
            .cloned()
            .or_else(|| type_ident(name))
    }

    fn check(&mut self, e: &Expr) {
        match &e.kind {
            Kind::Literal(l) => {
                let t = match l {
                    Literal::Bool(_) => Type::Bool,
                    Literal::Int(_) => Type::Int,
                    Literal::Uint(_) => Type::Uint,
                    Literal::Double(_) => Type::Double,
                    Literal::String(_) => Type::String,
                    Literal::Bytes(_) => Type::Bytes,
                    Literal::Null => Type::Null,
                };
                self.set(e, t);
            }
            Kind::Ident(name) => match self.lookup_ident(name) {
                Some(t) => self.set(e, t),
                None => {
                    self.set(e, Type::Error);
                    self.error(
                        e.id,
                        format!("undeclared reference to '{name}' (in container '')"),
                    );
                }
            },
            Kind::Select {
                operand,
                field,
                test_only,
            } => {
                if !test_only {
                    if let Some(q) = qualified_name(e) {
                        // A dotted variable (`authorizer.requestResource`), not a selection.
                        if q.contains('.') && self.scopes.iter().all(|s| !s.contains_key(&q)) {
                            if let Some(t) = self.env.variables.get(&q).cloned() {
                                self.idents.insert(e.id, q);
                                self.set(e, t);
                                return;
                            }
                        }
                    }
                }
                let mut t = self.check_select_field(e, operand, field, false);
                if *test_only {
                    t = Type::Bool;
                }
                let t = substitute(&self.mapping, &t, false);
                self.set(e, t);
            }
            Kind::Call {
                function,
                target,
                args,
            } => self.check_call(e, function, target.as_deref(), args),
            Kind::List { elements, optional } => {
                let mut elem: Option<Type> = None;
                for (i, el) in elements.iter().enumerate() {
                    self.check(el);
                    let mut t = self.get(el);
                    if optional.contains(&i) {
                        let (inner, is_opt) = t.unwrap_optional();
                        let inner = inner.clone();
                        if !is_opt && !inner.is_dyn() {
                            self.error(
                                el.id,
                                format!(
                                    "expected type '{}' but found '{inner}'",
                                    Type::optional(inner.clone())
                                ),
                            );
                        }
                        t = inner;
                    }
                    elem = Some(self.join_types(el, elem, t));
                }
                let elem = match elem {
                    Some(t) => t,
                    None => self.new_type_var(),
                };
                self.set(e, Type::list(elem));
            }
            Kind::Map { entries } => {
                let mut key_t: Option<Type> = None;
                let mut val_t: Option<Type> = None;
                for entry in entries {
                    self.check(&entry.key);
                    let kt = self.get(&entry.key);
                    key_t = Some(self.join_types(&entry.key, key_t, kt));
                    self.check(&entry.value);
                    let mut vt = self.get(&entry.value);
                    if entry.optional {
                        let (inner, is_opt) = vt.unwrap_optional();
                        let inner = inner.clone();
                        if !is_opt && !inner.is_dyn() {
                            self.error(
                                entry.value.id,
                                format!(
                                    "expected type '{}' but found '{inner}'",
                                    Type::optional(inner.clone())
                                ),
                            );
                        }
                        vt = inner;
                    }
                    val_t = Some(self.join_types(&entry.value, val_t, vt));
                }
                let (k, v) = match (key_t, val_t) {
                    (Some(k), Some(v)) => (k, v),
                    _ => (self.new_type_var(), self.new_type_var()),
                };
                self.set(e, Type::map(k, v));
            }
            Kind::Struct {
                type_name, fields, ..
            } => {
                let Some(t) = self.resolve_type(type_name) else {
                    self.error(
                        e.id,
                        format!("undeclared reference to '{type_name}' (in container '')"),
                    );
                    self.set(e, Type::Error);
                    for f in fields {
                        self.check(&f.value);
                    }
                    return;
                };
                self.set(e, t.clone());
                for f in fields {
                    self.check(&f.value);
                    let mut vt = self.get(&f.value);
                    if f.optional {
                        vt = vt.unwrap_optional().0.clone();
                    }
                    let ft = match &t {
                        Type::Struct(s) => match &s.fields {
                            Fields::Declared(m) => m.get(&f.name).cloned(),
                            Fields::Any => Some(Type::Dyn),
                            Fields::None => None,
                        },
                        _ => None,
                    };
                    let Some(ft) = ft else {
                        // Kubernetes' JSONPatch type answers every field name with an
                        // untyped field, so an unknown one reads as a type mismatch.
                        if matches!(&t, Type::Struct(s) if s.name == "JSONPatch") {
                            self.error(
                                f.id,
                                format!(
                                    "expected type of field '{}' is '' but provided type is '{vt}'",
                                    f.name
                                ),
                            );
                        } else {
                            self.error(f.id, format!("undefined field '{}'", f.name));
                        }
                        continue;
                    };
                    if !is_assignable(&mut self.mapping, &ft, &vt) {
                        self.error(
                            f.id,
                            format!(
                                "expected type of field '{}' is '{ft}' but provided type is '{vt}'",
                                f.name
                            ),
                        );
                    }
                }
            }
            Kind::Comprehension(c) => self.check_comprehension(e, c),
        }
    }

    fn resolve_type(&self, name: &str) -> Option<Type> {
        let name = name.strip_prefix('.').unwrap_or(name);
        if let Some(t) = self.env.types.get(name) {
            return Some(t.clone());
        }
        if self.env.dynamic_object_types && (name == "Object" || name.starts_with("Object.")) {
            return Some(Type::Struct(Arc::new(super::types::StructType {
                name: name.to_string(),
                fields: Fields::Any,
            })));
        }
        None
    }

    fn check_select_field(
        &mut self,
        e: &Expr,
        operand: &Expr,
        field: &str,
        optional: bool,
    ) -> Type {
        self.check(operand);
        let operand_t = substitute(&self.mapping, &self.get(operand), false);
        let (target, is_opt) = operand_t.unwrap_optional();
        let target = target.clone();
        let result = match &target {
            Type::Map(_, v) => (**v).clone(),
            Type::Struct(s) => match &s.fields {
                Fields::Declared(m) => match m.get(field) {
                    Some(t) => t.clone(),
                    None => {
                        self.error(e.id, format!("undefined field '{field}'"));
                        Type::Error
                    }
                },
                Fields::Any => Type::Dyn,
                Fields::None => {
                    self.error(e.id, format!("undefined field '{field}'"));
                    Type::Error
                }
            },
            Type::Param(_) => {
                is_assignable(&mut self.mapping, &Type::Dyn, &target);
                Type::Dyn
            }
            t => {
                if !t.is_dyn_or_error() {
                    self.error(e.id, format!("type '{t}' does not support field selection"));
                }
                Type::Dyn
            }
        };
        if is_opt || optional {
            Type::optional(result)
        } else {
            result
        }
    }

    fn check_call(&mut self, e: &Expr, function: &str, target: Option<&Expr>, args: &[Expr]) {
        if function == "_?._" {
            self.check_opt_select(e, args);
            return;
        }
        for a in args {
            self.check(a);
        }
        let Some(target) = target else {
            let name = function.strip_prefix('.').unwrap_or(function);
            match self.env.functions.get(name).map(<[Overload]>::to_vec) {
                Some(overloads) => self.resolve(e, name, &overloads, None, args),
                None => {
                    self.error(
                        e.id,
                        format!("undeclared reference to '{function}' (in container '')"),
                    );
                    self.set(e, Type::Error);
                }
            }
            return;
        };
        if let Some(prefix) = qualified_name(target) {
            let qualified = format!("{}.{function}", prefix.strip_prefix('.').unwrap_or(&prefix));
            if let Some(overloads) = self.env.functions.get(&qualified).map(<[Overload]>::to_vec) {
                self.qualified_calls.insert(e.id);
                self.resolve(e, &qualified, &overloads, None, args);
                return;
            }
        }
        self.check(target);
        match self.env.functions.get(function).map(<[Overload]>::to_vec) {
            Some(overloads) => self.resolve(e, function, &overloads, Some(target), args),
            None => {
                self.set(e, Type::Error);
                self.error(
                    e.id,
                    format!("undeclared reference to '{function}' (in container '')"),
                );
            }
        }
    }

    fn check_opt_select(&mut self, e: &Expr, args: &[Expr]) {
        let [operand, field] = args else {
            self.error(e.id, "unsupported optional field selection".into());
            self.set(e, Type::Error);
            return;
        };
        let Kind::Literal(Literal::String(name)) = &field.kind else {
            self.error(field.id, "unsupported optional field selection".into());
            self.set(e, Type::Error);
            return;
        };
        let t = self.check_select_field(e, operand, name, true);
        let t = substitute(&self.mapping, &t, false);
        self.set(e, t);
        self.overloads
            .insert(e.id, vec!["select_optional_field".to_string()]);
    }

    fn resolve(
        &mut self,
        e: &Expr,
        name: &str,
        overloads: &[Overload],
        target: Option<&Expr>,
        args: &[Expr],
    ) {
        let mut arg_types: Vec<Type> = Vec::new();
        if let Some(t) = target {
            arg_types.push(self.get(t));
        }
        arg_types.extend(args.iter().map(|a| self.get(a)));
        let mut result: Option<Type> = None;
        let mut ids = Vec::new();
        for o in overloads {
            if o.member != target.is_some() {
                continue;
            }
            if name == "_&&_" || name == "_||_" {
                let mut ok = true;
                for (i, t) in arg_types.iter().enumerate() {
                    if !is_assignable(&mut self.mapping, &Type::Bool, t) {
                        let id = args.get(i).map_or(e.id, |a| a.id);
                        self.error(id, format!("expected type 'bool' but found '{t}'"));
                        ok = false;
                    }
                }
                if !ok {
                    self.set(e, Type::Error);
                    return;
                }
                self.overloads.insert(e.id, vec![o.id.clone()]);
                self.set(e, Type::Bool);
                return;
            }
            // Fresh type variables for the overload's parameters.
            let fresh: Vec<(String, Type)> = o
                .type_params
                .iter()
                .map(|p| (p.clone(), self.new_type_var()))
                .collect();
            let rename = |t: &Type| rename_params(t, &fresh);
            let params: Vec<Type> = o.params.iter().map(rename).collect();
            let ret = rename(&o.result);
            if params.len() != arg_types.len() {
                continue;
            }
            if is_assignable_list(&mut self.mapping, &arg_types, &params) {
                ids.push(o.id.clone());
                let r = substitute(&self.mapping, &ret, false);
                result = Some(match result {
                    None => r,
                    Some(prev) if !prev.is_dyn() && !r.is_exact(&prev) => Type::Dyn,
                    Some(prev) => prev,
                });
            }
        }
        match result {
            Some(t) => {
                self.overloads.insert(e.id, ids);
                self.set(e, t);
            }
            None => {
                let shown: Vec<String> = arg_types
                    .iter()
                    .map(|t| substitute(&self.mapping, t, true).to_string())
                    .collect();
                let signature = if target.is_some() {
                    format!("{}.({})", shown[0], shown[1..].join(", "))
                } else {
                    format!("({})", shown.join(", "))
                };
                self.error(
                    e.id,
                    format!("found no matching overload for '{name}' applied to '{signature}'"),
                );
                self.set(e, Type::Error);
            }
        }
    }

    fn join_types(&mut self, e: &Expr, previous: Option<Type>, current: Type) -> Type {
        let Some(previous) = previous else {
            return current;
        };
        if is_assignable(&mut self.mapping, &previous, &current) {
            return most_general(&previous, &current);
        }
        // Kubernetes enables HomogeneousAggregateLiterals: mixed literals are an error.
        self.error(
            e.id,
            format!("expected type '{previous}' but found '{current}'"),
        );
        Type::Error
    }

    fn check_comprehension(&mut self, e: &Expr, c: &Comprehension) {
        self.check(&c.iter_range);
        self.check(&c.accu_init);
        let range = substitute(&self.mapping, &self.get(&c.iter_range), false);
        let accu = self.get(&c.accu_init);
        self.scopes
            .push(HashMap::from([(c.accu_var.clone(), accu.clone())]));
        let (var, var2) = match &range {
            Type::List(el) => {
                if c.iter_var2.is_some() {
                    (Type::Int, Some((**el).clone()))
                } else {
                    ((**el).clone(), None)
                }
            }
            Type::Map(k, v) => ((**k).clone(), c.iter_var2.as_ref().map(|_| (**v).clone())),
            t if t.is_dyn_or_error() || matches!(t, Type::Param(_)) => {
                is_assignable(&mut self.mapping, &Type::Dyn, t);
                (Type::Dyn, c.iter_var2.as_ref().map(|_| Type::Dyn))
            }
            t => {
                self.error(
                    c.iter_range.id,
                    format!(
                        "expression of type '{t}' cannot be range of a comprehension (must be list, map, or dynamic)"
                    ),
                );
                (Type::Error, c.iter_var2.as_ref().map(|_| Type::Error))
            }
        };
        let mut scope = HashMap::from([(c.iter_var.clone(), var)]);
        if let (Some(name), Some(t)) = (&c.iter_var2, var2) {
            scope.insert(name.clone(), t);
        }
        self.scopes.push(scope);
        self.check(&c.loop_condition);
        self.assert_type(&c.loop_condition, &Type::Bool);
        self.check(&c.loop_step);
        self.assert_type(&c.loop_step, &accu);
        self.scopes.pop();
        self.check(&c.result);
        self.scopes.pop();
        let t = substitute(&self.mapping, &self.get(&c.result), false);
        self.set(e, t);
    }

    fn assert_type(&mut self, e: &Expr, want: &Type) {
        let got = self.get(e);
        if !is_assignable(&mut self.mapping, want, &got) {
            self.error(e.id, format!("expected type '{want}' but found '{got}'"));
        }
    }
}

fn rename_params(t: &Type, fresh: &[(String, Type)]) -> Type {
    match t {
        Type::Param(p) => fresh
            .iter()
            .find(|(n, _)| n == p)
            .map_or_else(|| t.clone(), |(_, v)| v.clone()),
        Type::List(e) => Type::list(rename_params(e, fresh)),
        Type::Map(k, v) => Type::map(rename_params(k, fresh), rename_params(v, fresh)),
        Type::Opaque(n, ps) => Type::Opaque(
            n.clone(),
            ps.iter().map(|p| rename_params(p, fresh)).collect(),
        ),
        Type::TypeOf(Some(x)) => Type::TypeOf(Some(Box::new(rename_params(x, fresh)))),
        other => other.clone(),
    }
}
