//! CEL types and the type-checker's assignability, as cel-go's `checker/types.go`
//! defines them (type parameters bound through a substitution mapping).

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::sync::Arc;

#[derive(Clone, Debug)]
pub enum Type {
    Bool,
    Int,
    Uint,
    Double,
    String,
    Bytes,
    Null,
    Duration,
    Timestamp,
    Dyn,
    Error,
    List(Box<Type>),
    Map(Box<Type>, Box<Type>),
    /// A named message type: Kubernetes' library types (`kubernetes.Quantity`, ...)
    /// or an object of a schema, with its fields.
    Struct(Arc<StructType>),
    /// `optional_type(T)`, and functions while resolving overloads.
    Opaque(String, Vec<Type>),
    Param(String),
    /// The type of a type value (`int`, `type(x)`).
    TypeOf(Option<Box<Type>>),
}

#[derive(Debug)]
pub struct StructType {
    pub name: String,
    pub fields: Fields,
}

/// What can be selected on a message type.
#[derive(Debug)]
pub enum Fields {
    /// Library types (`kubernetes.Quantity`, ...): no field.
    None,
    /// A schema object or a declared type: these fields only.
    Declared(BTreeMap<String, Type>),
    /// Mutating admission policies' `Object.*` types: any field, of type `dyn`.
    Any,
}

impl Type {
    pub fn named(name: &str) -> Type {
        Type::Struct(Arc::new(StructType {
            name: name.to_string(),
            fields: Fields::None,
        }))
    }

    pub fn list(t: Type) -> Type {
        Type::List(Box::new(t))
    }

    pub fn map(k: Type, v: Type) -> Type {
        Type::Map(Box::new(k), Box::new(v))
    }

    pub fn optional(t: Type) -> Type {
        Type::Opaque("optional_type".to_string(), vec![t])
    }

    pub fn is_dyn(&self) -> bool {
        matches!(self, Type::Dyn)
    }

    pub fn is_error(&self) -> bool {
        matches!(self, Type::Error)
    }

    pub fn is_dyn_or_error(&self) -> bool {
        self.is_dyn() || self.is_error()
    }

    /// `T` of `optional_type(T)`.
    pub fn unwrap_optional(&self) -> (&Type, bool) {
        match self {
            Type::Opaque(n, p) if n == "optional_type" && p.len() == 1 => (&p[0], true),
            t => (t, false),
        }
    }

    /// Fixed-size values (cel-go's `isScalar`).
    pub fn is_scalar(&self) -> bool {
        match self {
            Type::Bool
            | Type::Double
            | Type::Duration
            | Type::Int
            | Type::Timestamp
            | Type::Uint => true,
            Type::Opaque(n, p) if n == "optional_type" => p.first().is_some_and(Type::is_scalar),
            _ => false,
        }
    }

    fn kind(&self) -> u8 {
        match self {
            Type::Bool => 1,
            Type::Int => 2,
            Type::Uint => 3,
            Type::Double => 4,
            Type::String => 5,
            Type::Bytes => 6,
            Type::Null => 7,
            Type::Duration => 8,
            Type::Timestamp => 9,
            Type::Dyn => 10,
            Type::Error => 11,
            Type::List(_) => 12,
            Type::Map(..) => 13,
            Type::Struct(_) => 14,
            Type::Opaque(..) => 15,
            Type::Param(_) => 16,
            Type::TypeOf(_) => 17,
        }
    }

    fn type_name(&self) -> String {
        match self {
            Type::Struct(s) => s.name.clone(),
            Type::Opaque(n, _) => n.clone(),
            Type::Param(n) => n.clone(),
            Type::List(_) => "list".into(),
            Type::Map(..) => "map".into(),
            t => t.to_string(),
        }
    }

    fn params(&self) -> Vec<&Type> {
        match self {
            Type::List(e) => vec![e],
            Type::Map(k, v) => vec![k, v],
            Type::Opaque(_, p) => p.iter().collect(),
            Type::TypeOf(Some(t)) => vec![t],
            _ => vec![],
        }
    }

    /// cel-go's `IsExactType`: same kind, name and parameters.
    pub fn is_exact(&self, other: &Type) -> bool {
        if self.kind() != other.kind() || self.type_name() != other.type_name() {
            return false;
        }
        let (a, b) = (self.params(), other.params());
        a.len() == b.len() && a.iter().zip(b).all(|(x, y)| x.is_exact(y))
    }
}

impl fmt::Display for Type {
    /// As cel-go's `FormatCELType`, the text of its error messages.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Type::Bool => write!(f, "bool"),
            Type::Int => write!(f, "int"),
            Type::Uint => write!(f, "uint"),
            Type::Double => write!(f, "double"),
            Type::String => write!(f, "string"),
            Type::Bytes => write!(f, "bytes"),
            Type::Null => write!(f, "null"),
            Type::Duration => write!(f, "duration"),
            Type::Timestamp => write!(f, "timestamp"),
            Type::Dyn => write!(f, "dyn"),
            Type::Error => write!(f, "!error!"),
            Type::List(e) => write!(f, "list({e})"),
            Type::Map(k, v) => write!(f, "map({k}, {v})"),
            Type::Struct(s) => write!(f, "{}", s.name),
            Type::Opaque(n, p) => {
                if p.is_empty() {
                    return write!(f, "{n}");
                }
                let p: Vec<String> = p.iter().map(Type::to_string).collect();
                write!(f, "{n}({})", p.join(", "))
            }
            Type::Param(n) => write!(f, "{n}"),
            Type::TypeOf(None) => write!(f, "type"),
            Type::TypeOf(Some(t)) => write!(f, "type({t})"),
        }
    }
}

/// Type-parameter bindings of one check (cel-go's `mapping`).
#[derive(Clone, Debug, Default)]
pub struct Mapping {
    subs: HashMap<String, Type>,
}

impl Mapping {
    fn find(&self, t: &Type) -> Option<&Type> {
        match t {
            Type::Param(n) => self.subs.get(n),
            _ => None,
        }
    }

    fn add(&mut self, param: &Type, t: Type) {
        if let Type::Param(n) = param {
            self.subs.insert(n.clone(), t);
        }
    }
}

fn is_equal_or_less_specific(t1: &Type, t2: &Type) -> bool {
    if t1.is_dyn() || matches!(t1, Type::Param(_)) {
        return true;
    }
    if t2.is_dyn() || matches!(t2, Type::Param(_)) {
        return false;
    }
    if t1.kind() != t2.kind() {
        return false;
    }
    match (t1, t2) {
        (Type::Opaque(n1, p1), Type::Opaque(n2, p2)) => {
            n1 == n2
                && p1.len() == p2.len()
                && p1
                    .iter()
                    .zip(p2)
                    .all(|(a, b)| is_equal_or_less_specific(a, b))
        }
        (Type::List(a), Type::List(b)) => is_equal_or_less_specific(a, b),
        (Type::Map(k1, v1), Type::Map(k2, v2)) => {
            is_equal_or_less_specific(k1, k2) && is_equal_or_less_specific(v1, v2)
        }
        (Type::TypeOf(_), Type::TypeOf(_)) => true,
        _ => t1.is_exact(t2),
    }
}

pub fn most_general(t1: &Type, t2: &Type) -> Type {
    if is_equal_or_less_specific(t1, t2) {
        t1.clone()
    } else {
        t2.clone()
    }
}

fn is_legacy_nullable(t: &Type) -> bool {
    matches!(
        t,
        Type::Opaque(..) | Type::Struct(_) | Type::Duration | Type::Timestamp
    )
}

fn internal_is_assignable(m: &mut Mapping, t1: &Type, t2: &Type) -> bool {
    if matches!(t2, Type::Param(_)) {
        let (valid, has_sub) = is_valid_type_substitution(m, t1, t2);
        if valid {
            return true;
        }
        if has_sub {
            return false;
        }
    }
    if matches!(t1, Type::Param(_)) {
        return is_valid_type_substitution(m, t2, t1).0;
    }
    if t1.is_dyn_or_error() || t2.is_dyn_or_error() {
        return true;
    }
    if matches!(t1, Type::Null) {
        return is_legacy_nullable(t2) || matches!(t2, Type::Null);
    }
    if matches!(t2, Type::Null) {
        return is_legacy_nullable(t1);
    }
    match (t1, t2) {
        (Type::TypeOf(_), other) => matches!(other, Type::TypeOf(_)),
        (Type::Opaque(..), _) | (Type::List(_), _) | (Type::Map(..), _) => {
            t1.kind() == t2.kind()
                && t1.type_name() == t2.type_name()
                && internal_is_assignable_list(
                    m,
                    &t1.params().into_iter().cloned().collect::<Vec<_>>(),
                    &t2.params().into_iter().cloned().collect::<Vec<_>>(),
                )
        }
        _ => t1.kind() == t2.kind() && t1.type_name() == t2.type_name(),
    }
}

fn is_valid_type_substitution(m: &mut Mapping, t1: &Type, t2: &Type) -> (bool, bool) {
    if t1.kind() == t2.kind() && t1.is_exact(t2) {
        return (true, true);
    }
    if let Some(sub) = m.find(t2).cloned() {
        if t1.kind() == sub.kind() && t1.is_exact(&sub) {
            return (true, true);
        }
        if internal_is_assignable(m, t1, &sub) {
            let general = most_general(t1, &sub);
            if not_referenced_in(m, t2, &general) {
                m.add(t2, general);
            }
            return (true, true);
        }
        return (false, true);
    }
    if not_referenced_in(m, t2, t1) {
        m.add(t2, t1.clone());
        return (true, false);
    }
    (false, false)
}

fn internal_is_assignable_list(m: &mut Mapping, l1: &[Type], l2: &[Type]) -> bool {
    l1.len() == l2.len()
        && l1
            .iter()
            .zip(l2)
            .all(|(a, b)| internal_is_assignable(m, a, b))
}

fn not_referenced_in(m: &Mapping, t: &Type, within: &Type) -> bool {
    if t.is_exact(within) {
        return false;
    }
    match within {
        Type::Param(_) => match m.find(within) {
            None => true,
            Some(sub) => not_referenced_in(m, t, &sub.clone()),
        },
        Type::Opaque(..) | Type::List(_) | Type::Map(..) | Type::TypeOf(_) => {
            within.params().iter().all(|p| not_referenced_in(m, t, p))
        }
        _ => true,
    }
}

/// Whether `t2` can be used where `t1` is expected, binding type parameters in `m` on success.
pub fn is_assignable(m: &mut Mapping, t1: &Type, t2: &Type) -> bool {
    let mut copy = m.clone();
    if internal_is_assignable(&mut copy, t1, t2) {
        *m = copy;
        true
    } else {
        false
    }
}

pub fn is_assignable_list(m: &mut Mapping, l1: &[Type], l2: &[Type]) -> bool {
    let mut copy = m.clone();
    if internal_is_assignable_list(&mut copy, l1, l2) {
        *m = copy;
        true
    } else {
        false
    }
}

/// `t` with its bound type parameters replaced; unbound ones become `dyn` when asked.
pub fn substitute(m: &Mapping, t: &Type, param_to_dyn: bool) -> Type {
    if let Some(sub) = m.find(t) {
        return substitute(m, sub, param_to_dyn);
    }
    match t {
        Type::Param(_) if param_to_dyn => Type::Dyn,
        Type::Opaque(n, p) => Type::Opaque(
            n.clone(),
            p.iter().map(|x| substitute(m, x, param_to_dyn)).collect(),
        ),
        Type::List(e) => Type::list(substitute(m, e, param_to_dyn)),
        Type::Map(k, v) => Type::map(
            substitute(m, k, param_to_dyn),
            substitute(m, v, param_to_dyn),
        ),
        Type::TypeOf(Some(x)) => Type::TypeOf(Some(Box::new(substitute(m, x, param_to_dyn)))),
        other => other.clone(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn assignability_follows_cel_go() {
        let mut m = Mapping::default();
        assert!(is_assignable(&mut m, &Type::Dyn, &Type::String));
        assert!(is_assignable(&mut m, &Type::String, &Type::Dyn));
        assert!(!is_assignable(&mut m, &Type::String, &Type::Int));
        assert!(!is_assignable(&mut m, &Type::String, &Type::Null));
        assert!(is_assignable(
            &mut m,
            &Type::named("kubernetes.Quantity"),
            &Type::Null
        ));
        let a = Type::Param("A".into());
        assert!(is_assignable_list(
            &mut m,
            &[Type::String, Type::String],
            &[a.clone(), a.clone()]
        ));
        assert!(substitute(&m, &a, false).is_exact(&Type::String));
        let mut m = Mapping::default();
        assert!(!is_assignable_list(
            &mut m,
            &[Type::String, Type::Int],
            &[a.clone(), a.clone()]
        ));
        assert_eq!(
            Type::map(Type::String, Type::list(Type::Dyn)).to_string(),
            "map(string, list(dyn))"
        );
    }
}
