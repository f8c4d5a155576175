//! Static cost estimation as the API server does it: cel-go's `checker/cost.go` with
//! Kubernetes' library estimator (`k8s.io/apiserver/pkg/cel/library/cost.go`) and sizes
//! from the schema (`maxLength`, `maxItems`, `maxProperties`, or what fits in a request).
//! Only the maximum decides whether a rule fits its budget; the minimum is kept because
//! cel-go's arithmetic (e.g. of `==`) depends on it.

use std::collections::HashMap;

use super::check::Checked;
use super::parse::{Expr, Kind, Literal, ACCUMULATOR};
use super::types::Type;

const SELECT_AND_IDENT: u64 = 1;
const LIST_CREATE_BASE: u64 = 10;
const MAP_CREATE_BASE: u64 = 30;
const STRUCT_CREATE_BASE: u64 = 40;
const STRING_TRAVERSAL: f64 = 0.1;
const REGEX_STRING_LENGTH: f64 = 0.25;

/// A (min, max) range of sizes or costs, saturating like cel-go's.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Range {
    pub min: u64,
    pub max: u64,
}

impl Range {
    pub const UNKNOWN: Range = Range {
        min: 0,
        max: u64::MAX,
    };

    pub fn fixed(v: u64) -> Range {
        Range { min: v, max: v }
    }

    fn add(self, o: Range) -> Range {
        Range {
            min: self.min.saturating_add(o.min),
            max: self.max.saturating_add(o.max),
        }
    }

    fn multiply(self, o: Range) -> Range {
        Range {
            min: self.min.saturating_mul(o.min),
            max: self.max.saturating_mul(o.max),
        }
    }

    fn factor(self, f: f64) -> Range {
        Range {
            min: multiply_by_cost_factor(self.min, f),
            max: multiply_by_cost_factor(self.max, f),
        }
    }

    fn union(self, o: Range) -> Range {
        Range {
            min: self.min.min(o.min),
            max: self.max.max(o.max),
        }
    }
}

fn multiply_by_cost_factor(x: u64, y: f64) -> u64 {
    let xf = x as f64;
    if xf > 0.0 && y > 0.0 && xf > u64::MAX as f64 / y {
        return u64::MAX;
    }
    let ceil = (xf * y).ceil();
    if ceil >= 18_446_744_073_709_551_616.0 {
        return u64::MAX;
    }
    ceil as u64
}

/// Sizes of values reachable from the root variables, by field path (`self`, `spec`,
/// `@items`, `@values`, `@keys`).
pub trait SizeEstimator {
    fn estimate_size(&self, path: &[String]) -> Option<Range>;
}

/// No size known for anything (values not typed by a schema).
pub struct NoSizes;

impl SizeEstimator for NoSizes {
    fn estimate_size(&self, _: &[String]) -> Option<Range> {
        None
    }
}

#[derive(Debug, Clone)]
struct EntrySize {
    list: bool,
    key: Range,
    val: Range,
}

impl EntrySize {
    fn union(a: Option<&EntrySize>, b: Option<&EntrySize>) -> Option<EntrySize> {
        let (a, b) = (a?, b?);
        Some(EntrySize {
            list: a.list,
            key: a.key.union(b.key),
            val: a.val.union(b.val),
        })
    }
}

#[derive(Debug, Clone)]
struct LocalVar {
    path: Vec<String>,
    size: Option<Range>,
    entry: Option<EntrySize>,
}

/// What a function estimator sees of an argument or receiver.
#[derive(Clone)]
struct Node<'e> {
    path: Option<Vec<String>>,
    t: Type,
    expr: Option<&'e Expr>,
    computed: Option<Range>,
}

struct Coster<'a> {
    checked: &'a Checked,
    sizes: &'a dyn SizeEstimator,
    paths: HashMap<u32, Vec<String>>,
    locals: HashMap<String, Vec<LocalVar>>,
    computed_sizes: HashMap<u32, Range>,
    entry_sizes: HashMap<u32, EntrySize>,
}

/// The estimated cost range of a checked expression.
pub fn estimate(checked: &Checked, sizes: &dyn SizeEstimator) -> Range {
    let mut c = Coster {
        checked,
        sizes,
        paths: HashMap::new(),
        locals: HashMap::new(),
        computed_sizes: HashMap::new(),
        entry_sizes: HashMap::new(),
    };
    c.cost(&checked.parsed.expr)
}

impl<'a> Coster<'a> {
    fn type_of(&self, e: &Expr) -> Type {
        self.checked.type_of(e.id)
    }

    fn path(&self, e: &Expr) -> Vec<String> {
        if let Kind::Ident(name) = &e.kind {
            if let Some(v) = self.locals.get(name).and_then(|s| s.last()) {
                return v.path.clone();
            }
        }
        self.paths.get(&e.id).cloned().unwrap_or_default()
    }

    fn cost(&mut self, e: &'a Expr) -> Range {
        if let Some(name) = self.checked.idents.get(&e.id) {
            return self.cost_ident(e, name);
        }
        match &e.kind {
            Kind::Literal(_) => Range::fixed(0),
            Kind::Ident(name) => self.cost_ident(e, name),
            Kind::Select {
                operand,
                field,
                test_only,
            } => {
                if *test_only {
                    // Kubernetes sets PresenceTestHasCost(false).
                    return self.cost(operand);
                }
                let mut sum = self.cost(operand);
                if matches!(
                    self.type_of(operand),
                    Type::Map(..) | Type::Struct(_) | Type::Param(_)
                ) {
                    sum = sum.add(Range::fixed(SELECT_AND_IDENT));
                }
                let mut p = self.path(operand);
                p.push(field.clone());
                self.paths.insert(e.id, p);
                sum
            }
            Kind::Call {
                function,
                target,
                args,
            } => self.cost_call(e, function, target.as_deref(), args),
            Kind::List { elements, .. } => {
                let mut sum = Range::fixed(0);
                let mut item = Range {
                    min: if elements.is_empty() { 0 } else { u64::MAX },
                    max: 0,
                };
                for el in elements {
                    sum = sum.add(self.cost(el));
                    item = item.union(self.size_or_unknown(el));
                }
                self.entry_sizes.insert(
                    e.id,
                    EntrySize {
                        list: true,
                        key: Range::fixed(1),
                        val: item,
                    },
                );
                sum.add(Range::fixed(LIST_CREATE_BASE))
            }
            Kind::Map { entries } => {
                let mut sum = Range::fixed(0);
                let empty_min = if entries.is_empty() { 0 } else { u64::MAX };
                let mut key = Range {
                    min: empty_min,
                    max: 0,
                };
                let mut val = key;
                for entry in entries {
                    sum = sum.add(self.cost(&entry.key));
                    sum = sum.add(self.cost(&entry.value));
                    key = key.union(self.size_or_unknown(&entry.key));
                    val = val.union(self.size_or_unknown(&entry.value));
                }
                self.entry_sizes.insert(
                    e.id,
                    EntrySize {
                        list: false,
                        key,
                        val,
                    },
                );
                sum.add(Range::fixed(MAP_CREATE_BASE))
            }
            Kind::Struct { fields, .. } => {
                let mut sum = Range::fixed(0);
                for f in fields {
                    sum = sum.add(self.cost(&f.value));
                }
                sum.add(Range::fixed(STRUCT_CREATE_BASE))
            }
            Kind::Comprehension(comp) => {
                let mut sum = self.cost(&comp.iter_range);
                sum = sum.add(self.cost(&comp.accu_init));
                self.push_local(&comp.accu_var, &comp.accu_init);
                // One iteration variable (the two-variable forms are not used by macros).
                let entry = self.entry_size(&comp.iter_range);
                let is_list = match &entry {
                    Some(en) => en.list,
                    None => matches!(self.type_of(&comp.iter_range), Type::List(_)),
                };
                let (size, sub) = if is_list {
                    (entry.as_ref().map(|en| en.val), "@items")
                } else {
                    (entry.as_ref().map(|en| en.key), "@keys")
                };
                let mut p = self.path(&comp.iter_range);
                p.push(sub.to_string());
                self.locals
                    .entry(comp.iter_var.clone())
                    .or_default()
                    .push(LocalVar {
                        path: p,
                        size,
                        entry: None,
                    });
                let loop_cost = self.cost(&comp.loop_condition);
                let step_cost = self.cost(&comp.loop_step);
                self.pop_local(&comp.iter_var);
                sum = sum.add(self.cost(&comp.result));
                self.pop_local(&comp.accu_var);
                let range_count = self.size_or_unknown(&comp.iter_range);
                sum = sum.add(range_count.multiply(step_cost.add(loop_cost)));
                match &comp.accu_init.kind {
                    Kind::Literal(_) => {
                        if let Some(s) = self.compute_size(&comp.accu_init) {
                            self.computed_sizes.insert(e.id, s);
                        }
                    }
                    Kind::List { .. } | Kind::Map { .. } => {
                        self.computed_sizes.insert(e.id, range_count);
                        if let Some(step) = self.entry_size(&comp.loop_step) {
                            self.entry_sizes.insert(e.id, step);
                        }
                    }
                    _ => {}
                }
                sum
            }
        }
    }

    fn cost_ident(&mut self, e: &Expr, name: &str) -> Range {
        let path = match self.locals.get(name).and_then(|s| s.last()) {
            Some(v) => v.path.clone(),
            None => vec![name.to_string()],
        };
        self.paths.insert(e.id, path);
        Range::fixed(SELECT_AND_IDENT)
    }

    fn push_local(&mut self, name: &str, e: &Expr) {
        let path = self.path(e);
        let entry = self.entry_size(e);
        let size = self.compute_size(e);
        self.locals
            .entry(name.to_string())
            .or_default()
            .push(LocalVar { path, size, entry });
    }

    fn pop_local(&mut self, name: &str) {
        if let Some(stack) = self.locals.get_mut(name) {
            stack.pop();
        }
    }

    fn node(&self, e: &'a Expr) -> Node<'a> {
        let mut path = self.path(e);
        if path.first().is_some_and(|p| p == ACCUMULATOR) {
            path.clear();
        }
        Node {
            path: Some(path),
            t: self.type_of(e),
            expr: Some(e),
            computed: self.compute_size(e),
        }
    }

    fn compute_size(&self, e: &Expr) -> Option<Range> {
        if let Some(s) = self.computed_sizes.get(&e.id) {
            return Some(*s);
        }
        match &e.kind {
            Kind::Literal(l) => {
                return Some(Range::fixed(match l {
                    Literal::String(s) => s.chars().count() as u64,
                    Literal::Bytes(b) => b.len() as u64,
                    _ => 1,
                }))
            }
            Kind::List { elements, .. } => return Some(Range::fixed(elements.len() as u64)),
            Kind::Map { entries } => return Some(Range::fixed(entries.len() as u64)),
            _ => {}
        }
        let path = self.path(e);
        if !path.is_empty() {
            if let Some(s) = self.sizes.estimate_size(&path) {
                return Some(s);
            }
        }
        if self.type_of(e).is_scalar() {
            return Some(Range::fixed(1));
        }
        if let Kind::Ident(name) = &e.kind {
            if let Some(v) = self.locals.get(name).and_then(|s| s.last()) {
                return v.size;
            }
        }
        None
    }

    fn size_or_unknown(&self, e: &Expr) -> Range {
        self.compute_size(e).unwrap_or(Range::UNKNOWN)
    }

    fn entry_size(&self, e: &Expr) -> Option<EntrySize> {
        if let Some(s) = self.entry_sizes.get(&e.id) {
            return Some(s.clone());
        }
        if let Kind::Ident(name) = &e.kind {
            return self
                .locals
                .get(name)
                .and_then(|s| s.last())
                .and_then(|v| v.entry.clone());
        }
        None
    }

    /// Kubernetes' `sizeEstimate`: the node's computed size, else by its path, else unknown.
    fn k8s_size(&self, n: &Node) -> Range {
        if let Some(s) = n.computed {
            return s;
        }
        if let Some(p) = &n.path {
            if !p.is_empty() {
                if let Some(s) = self.sizes.estimate_size(p) {
                    return s;
                }
            }
        }
        Range::UNKNOWN
    }

    fn cost_call(
        &mut self,
        e: &'a Expr,
        function: &str,
        target: Option<&'a Expr>,
        args: &'a [Expr],
    ) -> Range {
        let qualified = self.checked.qualified_calls.contains(&e.id);
        if function == "dyn" && target.is_none() && args.len() == 1 {
            let arg_cost = self.cost(&args[0]);
            if let Some(s) = self.compute_size(&args[0]) {
                self.computed_sizes.insert(e.id, s);
            }
            if let Some(en) = self.entry_size(&args[0]) {
                self.entry_sizes.insert(e.id, en);
            }
            return Range::fixed(1).add(arg_cost);
        }
        let mut arg_costs = Vec::with_capacity(args.len());
        let mut arg_nodes = Vec::with_capacity(args.len());
        for a in args {
            arg_costs.push(self.cost(a));
            arg_nodes.push(self.node(a));
        }
        let Some(overloads) = self.checked.overloads.get(&e.id).cloned() else {
            return Range::fixed(0);
        };
        if overloads.is_empty() {
            return Range::fixed(0);
        }
        let function = if qualified {
            let prefix = target
                .and_then(super::parse::qualified_name)
                .unwrap_or_default();
            format!("{prefix}.{function}")
        } else {
            function.to_string()
        };
        let mut sum = Range::fixed(0);
        let mut target_node = None;
        if let (Some(t), false) = (target, qualified) {
            sum = sum.add(self.cost(t));
            target_node = Some(self.node(t));
        }
        let mut fn_cost = Range {
            min: u64::MAX,
            max: 0,
        };
        let mut result_size: Option<Range> = None;
        for overload in &overloads {
            let (cost, size) = self.function_cost(
                e,
                &function,
                overload,
                target_node.as_ref(),
                &arg_nodes,
                &arg_costs,
            );
            fn_cost = fn_cost.union(cost);
            if let Some(s) = size {
                result_size = Some(match result_size {
                    None => s,
                    Some(r) => r.union(s),
                });
            }
            match overload.as_str() {
                "index_list" if !args.is_empty() => {
                    result_size = self.entry_size(&args[0]).map(|en| en.val);
                    let mut p = self.path(&args[0]);
                    p.push("@items".into());
                    self.paths.insert(e.id, p);
                }
                "index_map" if !args.is_empty() => {
                    result_size = self.entry_size(&args[0]).map(|en| en.val);
                    let mut p = self.path(&args[0]);
                    p.push("@values".into());
                    self.paths.insert(e.id, p);
                }
                _ => {}
            }
            if result_size.is_none() {
                result_size = self.compute_size(e);
            }
        }
        if let Some(s) = result_size {
            self.computed_sizes.insert(e.id, s);
        }
        sum.add(fn_cost)
    }

    fn function_cost(
        &mut self,
        e: &Expr,
        function: &str,
        overload: &str,
        target: Option<&Node>,
        args: &[Node],
        arg_costs: &[Range],
    ) -> (Range, Option<Range>) {
        let arg_sum = arg_costs.iter().fold(Range::fixed(0), |a, c| a.add(*c));
        if let Some((cost, size)) = self.kubernetes_call_cost(function, overload, target, args) {
            return (cost.add(arg_sum), size);
        }
        let size_of = |n: &Node| n.computed.unwrap_or(Range::UNKNOWN);
        match overload {
            "string_format" => {
                if let Some(t) = target {
                    return (size_of(t).factor(STRING_TRAVERSAL).add(arg_sum), None);
                }
            }
            "string_to_bytes" if args.len() == 1 => {
                let sz = size_of(&args[0]);
                return (
                    sz.factor(STRING_TRAVERSAL).add(arg_sum),
                    Some(Range {
                        min: sz.min,
                        max: sz.max.saturating_mul(4),
                    }),
                );
            }
            "bytes_to_string" if args.len() == 1 => {
                let sz = size_of(&args[0]);
                return (
                    sz.factor(STRING_TRAVERSAL).add(arg_sum),
                    Some(Range {
                        min: sz.min / 4,
                        max: sz.max,
                    }),
                );
            }
            "strings_quote" if args.len() == 1 => {
                let sz = size_of(&args[0]);
                return (
                    sz.factor(STRING_TRAVERSAL).add(arg_sum),
                    Some(Range {
                        min: sz.min.saturating_add(2),
                        max: sz.max.saturating_mul(2).saturating_add(2),
                    }),
                );
            }
            "starts_with_string" | "ends_with_string" if args.len() == 1 => {
                return (
                    size_of(&args[0]).factor(STRING_TRAVERSAL).add(arg_sum),
                    None,
                );
            }
            "in_list" if args.len() == 2 => {
                return (size_of(&args[1]).factor(1.0).add(arg_sum), None);
            }
            "matches_string" => {
                if let (Some(t), 1) = (target, args.len()) {
                    let str_cost = size_of(t).add(Range::fixed(1)).factor(STRING_TRAVERSAL);
                    let regex_cost = size_of(&args[0]).factor(REGEX_STRING_LENGTH);
                    return (str_cost.multiply(regex_cost).add(arg_sum), None);
                }
            }
            "contains_string" => {
                if let (Some(t), 1) = (target, args.len()) {
                    let str_cost = size_of(t).factor(STRING_TRAVERSAL);
                    let sub_cost = size_of(&args[0]).factor(STRING_TRAVERSAL);
                    return (str_cost.multiply(sub_cost).add(arg_sum), None);
                }
            }
            "logical_or" | "logical_and" => {
                let (l, r) = (arg_costs[0], arg_costs[1]);
                return (
                    Range {
                        min: l.min,
                        max: l.add(r).max,
                    },
                    None,
                );
            }
            "conditional" => {
                let size = size_of(&args[1]).union(size_of(&args[2]));
                let Kind::Call { args: exprs, .. } = &e.kind else {
                    return (Range::fixed(1).add(arg_sum), None);
                };
                let entry = EntrySize::union(
                    self.entry_size(&exprs[1]).as_ref(),
                    self.entry_size(&exprs[2]).as_ref(),
                );
                if let Some(en) = entry {
                    self.entry_sizes.insert(e.id, en);
                }
                let cost = arg_costs[0].add(arg_costs[1].union(arg_costs[2]));
                return (cost, Some(size));
            }
            "add_string" | "add_bytes" | "add_list" if args.len() == 2 => {
                let result = size_of(&args[0]).add(size_of(&args[1]));
                if let Kind::Call { args: exprs, .. } = &e.kind {
                    let entry = EntrySize::union(
                        self.entry_size(&exprs[0]).as_ref(),
                        self.entry_size(&exprs[1]).as_ref(),
                    );
                    if let Some(en) = entry {
                        self.entry_sizes.insert(e.id, en);
                    }
                }
                if overload == "add_list" {
                    return (Range::fixed(1).add(arg_sum), Some(result));
                }
                return (result.factor(STRING_TRAVERSAL).add(arg_sum), Some(result));
            }
            "less_string"
            | "greater_string"
            | "less_equals_string"
            | "greater_equals_string"
            | "less_bytes"
            | "greater_bytes"
            | "less_equals_bytes"
            | "greater_equals_bytes"
            | "equals"
            | "not_equals" => {
                let (l, r) = (size_of(&args[0]), size_of(&args[1]));
                let smallest_max = l.max.min(r.max);
                let min = u64::from(smallest_max > 0);
                return (
                    Range {
                        min,
                        max: smallest_max,
                    }
                    .factor(STRING_TRAVERSAL)
                    .add(arg_sum),
                    None,
                );
            }
            _ => {}
        }
        (Range::fixed(1).add(arg_sum), None)
    }

    /// Kubernetes' `CostEstimator.EstimateCallCost` (by function name), before cel-go's.
    fn kubernetes_call_cost(
        &self,
        function: &str,
        overload: &str,
        target: Option<&Node>,
        args: &[Node],
    ) -> Option<(Range, Option<Range>)> {
        let size = |n: &Node| self.k8s_size(n);
        let fixed = |v| Some((Range::fixed(v), None));
        match function {
            "check" => fixed(350_000),
            "serviceAccount" | "path" | "group" | "resource" | "subresource" | "namespace"
            | "name" | "allowed" | "reason" | "error" | "errored" => fixed(1),
            "fieldSelector" | "labelSelector" if args.len() == 1 => {
                let len = size(&args[0]);
                let parse = len.factor(STRING_TRAVERSAL);
                let requirements = len.factor(0.5);
                let per = (LIST_CREATE_BASE + STRUCT_CREATE_BASE) as f64;
                Some((
                    Range::fixed(LIST_CREATE_BASE)
                        .add(parse)
                        .add(requirements.factor(per)),
                    None,
                ))
            }
            "isSorted" | "sum" | "max" | "min" | "indexOf" | "lastIndexOf" => {
                let t = target?;
                match &t.t {
                    Type::List(elem) => {
                        let el = Node {
                            path: t.path.as_ref().map(|p| {
                                let mut p = p.clone();
                                p.push("@items".into());
                                p
                            }),
                            t: (**elem).clone(),
                            expr: None,
                            computed: None,
                        };
                        let mut el_cost = Range::fixed(1);
                        if matches!(el.t, Type::String | Type::Bytes) {
                            el_cost = el_cost.add(size(&el).factor(STRING_TRAVERSAL));
                        }
                        Some((size(t).multiply(el_cost), None))
                    }
                    _ => Some((size(t).factor(STRING_TRAVERSAL), None)),
                }
            }
            "url" | "jsonpatch.escapeKey" if args.len() == 1 => {
                let sz = size(&args[0]);
                Some((sz.factor(STRING_TRAVERSAL), Some(sz)))
            }
            "lowerAscii" | "upperAscii" | "substring" | "trim" => {
                let sz = size(target?);
                Some((sz.factor(STRING_TRAVERSAL), Some(sz)))
            }
            "replace" if target.is_some() && args.len() >= 2 => {
                let sz = size(target?);
                let to_replace = size(&args[0]);
                let with = size(&args[1]);
                let mut count = Range::fixed(0);
                let mut retained = Range::fixed(0);
                if to_replace.min == 0 {
                    count.max = if sz.max < u64::MAX {
                        sz.max + 1
                    } else {
                        sz.max
                    };
                    retained.max = sz.max;
                } else if with.max <= to_replace.min {
                    retained.max = sz.max;
                } else {
                    count.max = (sz.max as f64 / to_replace.min as f64).ceil() as u64;
                }
                if to_replace.max == 0 {
                    count.min = if sz.min < u64::MAX {
                        sz.min + 1
                    } else {
                        sz.min
                    };
                    retained.min = sz.min;
                } else if to_replace.max <= with.min {
                    retained.min = sz.min;
                } else {
                    count.min = (sz.min as f64 / to_replace.max as f64).ceil() as u64;
                }
                let result = count.multiply(with).add(retained);
                Some((sz.factor(2.0 * STRING_TRAVERSAL), Some(result)))
            }
            "split" => {
                let sz = size(target?);
                let mut max = sz.max;
                if let Some(Kind::Literal(Literal::Int(i))) =
                    args.get(1).and_then(|a| a.expr).map(|e| &e.kind)
                {
                    max = *i as u64;
                }
                Some((
                    sz.factor(2.0 * STRING_TRAVERSAL),
                    Some(Range { min: 0, max }),
                ))
            }
            "join" => {
                let t = target?;
                let list = size(t);
                let mut sz = Range::fixed(0);
                if let Type::List(elem) = &t.t {
                    let el = Node {
                        path: t.path.as_ref().map(|p| {
                            let mut p = p.clone();
                            p.push("@items".into());
                            p
                        }),
                        t: (**elem).clone(),
                        expr: None,
                        computed: None,
                    };
                    sz = list.multiply(size(&el));
                }
                if let Some(sep) = args.first() {
                    let seps = Range {
                        min: list.min.saturating_sub(1),
                        max: list.max.saturating_sub(1),
                    };
                    sz = sz.add(size(sep).multiply(seps));
                }
                Some((sz.factor(STRING_TRAVERSAL), Some(sz)))
            }
            "find" | "findAll" if target.is_some() && !args.is_empty() => {
                let sz = size(target?);
                let str_cost = sz.add(Range::fixed(1)).factor(STRING_TRAVERSAL);
                let regex = size(&args[0]).factor(REGEX_STRING_LENGTH);
                Some((
                    str_cost.multiply(regex),
                    Some(Range {
                        min: 0,
                        max: sz.max,
                    }),
                ))
            }
            "cidr" | "isIP" | "isCIDR" if !args.is_empty() => {
                Some((size(&args[0]).factor(STRING_TRAVERSAL), None))
            }
            "ip" => {
                if overload == "cidr_ip" {
                    return fixed(1);
                }
                Some((size(args.first()?).factor(STRING_TRAVERSAL), None))
            }
            "ip.isCanonical" if !args.is_empty() => {
                Some((size(&args[0]).factor(2.0 * STRING_TRAVERSAL), None))
            }
            "masked"
            | "prefixLength"
            | "family"
            | "isUnspecified"
            | "isLoopback"
            | "isLinkLocalMulticast"
            | "isLinkLocalUnicast"
            | "isGlobalUnicast" => fixed(1),
            "containsIP" if !args.is_empty() => {
                let sz = Range { min: 4, max: 16 };
                let mut cost = sz.add(sz).factor(STRING_TRAVERSAL);
                if overload == "cidr_contains_ip_string" {
                    cost = cost.add(size(&args[0]).factor(STRING_TRAVERSAL));
                }
                Some((cost, None))
            }
            "containsCIDR" if !args.is_empty() => {
                let sz = Range { min: 4, max: 16 };
                let mut cost = sz.add(sz).factor(STRING_TRAVERSAL);
                cost = cost.add(sz.factor(STRING_TRAVERSAL)).add(Range::fixed(1));
                if overload == "cidr_contains_cidr_string" {
                    cost = cost.add(size(&args[0]).factor(STRING_TRAVERSAL));
                }
                Some((cost, None))
            }
            "quantity" | "isQuantity" | "semver" | "isSemver" if !args.is_empty() => {
                Some((size(&args[0]).factor(STRING_TRAVERSAL), None))
            }
            "validate" if !args.is_empty() => {
                // MaxNameFormatRegexSize (128) × the regex length factor.
                Some((
                    size(&args[0])
                        .factor(STRING_TRAVERSAL)
                        .factor(128.0 * REGEX_STRING_LENGTH),
                    None,
                ))
            }
            "format.named" => fixed(1),
            "sign" | "asInteger" | "isInteger" | "asApproximateFloat" | "isGreaterThan"
            | "isLessThan" | "compareTo" | "add" | "sub" | "major" | "minor" | "patch" => fixed(1),
            "getScheme" | "getHostname" | "getHost" | "getPort" | "getEscapedPath" | "getQuery" => {
                fixed(1)
            }
            "_==_" if args.len() == 2 => {
                let (l, r) = (&args[0].t, &args[1].t);
                if !l.is_exact(r) {
                    return None;
                }
                match l {
                    Type::Struct(s)
                        if matches!(
                            s.name.as_str(),
                            "kubernetes.Quantity"
                                | "kubernetes.Semver"
                                | "net.IP"
                                | "net.CIDR"
                                | "kubernetes.authorization.Authorizer"
                                | "kubernetes.authorization.PathCheck"
                                | "kubernetes.authorization.GroupCheck"
                                | "kubernetes.authorization.ResourceCheck"
                                | "kubernetes.authorization.Decision"
                        ) =>
                    {
                        fixed(1)
                    }
                    Type::Struct(s) if s.name == "kubernetes.NamedFormat" => {
                        Some((Range { min: 1, max: 100 }.factor(STRING_TRAVERSAL), None))
                    }
                    Type::Struct(s) if s.name == "kubernetes.URL" => {
                        // cel-go's code reads the right-hand side twice here.
                        let size = match args[1].computed {
                            Some(r) => r.union(r),
                            None => Range::fixed(1),
                        };
                        Some((
                            Range {
                                min: 1,
                                max: size.max,
                            }
                            .factor(STRING_TRAVERSAL),
                            None,
                        ))
                    }
                    _ => None,
                }
            }
            _ => None,
        }
    }
}
