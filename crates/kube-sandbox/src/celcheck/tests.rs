use serde_json::json;

use super::decls::{CURRENT, OLDEST_SUPPORTED};
use super::*;

fn int_or_string() -> Value {
    json!({"x-kubernetes-int-or-string": true, "nullable": true})
}

fn compile_at(rule: &str, schema: &Value) -> Result<Checked, String> {
    let node = decl_node(schema, false, "selfType").unwrap();
    compile(rule, &rule_env(&node, CURRENT, false))
}

#[test]
fn sign_is_a_global_function_so_a_member_call_does_not_compile() {
    let member = "self != 0 && (self == '' || (self.endsWith('%') ? self.matches('^0*([1-9][0-9]?|100)%$') : (isQuantity(self) && quantity(self).sign() > 0)))";
    let err = compile_at(member, &int_or_string()).unwrap_err();
    assert!(
        err.starts_with("ERROR: <input>:1:132: found no matching overload for 'sign' applied to 'kubernetes.Quantity.()'"),
        "{err}"
    );
    assert!(
        err.ends_with(&format!("\n | {member}\n | {}^", ".".repeat(131))),
        "{err}"
    );
    let global = member.replace("quantity(self).sign()", "sign(quantity(self))");
    compile_at(&global, &int_or_string()).unwrap();
}

#[test]
fn undeclared_names_unknown_fields_and_wrong_types_are_refused() {
    let obj = json!({"type": "object", "properties": {"a": {"type": "string"}, "n": {"type": "integer"}}});
    let cases = [
        ("self.b == 'x'", "undefined field 'b'"),
        (
            "foo(self.a)",
            "undeclared reference to 'foo' (in container '')",
        ),
        (
            "self.a == 1",
            "found no matching overload for '_==_' applied to '(string, int)'",
        ),
        (
            "self.n.startsWith('x')",
            "found no matching overload for 'startsWith' applied to 'int.(string)'",
        ),
        (
            "self.a + 1 > 0",
            "found no matching overload for '_+_' applied to '(string, int)'",
        ),
        (
            "[1, 'a'].size() > 0",
            "expected type 'int' but found 'string'",
        ),
        ("self.a.matches('(')", "invalid matches argument"),
        ("self.a.size() > 0 &&", "Syntax error"),
    ];
    for (rule, want) in cases {
        let err = compile_at(rule, &obj).unwrap_err();
        assert!(err.contains(want), "{rule}: {err}");
    }
    for ok in [
        "self.a.size() > 0 && has(self.n)",
        "self.n > 0 || self.a in ['x', 'y']",
        "self.a.lowerAscii().trim() == 'x'",
        "isQuantity(self.a) && quantity(self.a).isGreaterThan(quantity('1Gi'))",
        "['a', 'b'].all(x, x.size() == 1)",
    ] {
        compile_at(ok, &obj).unwrap_or_else(|e| panic!("{ok}: {e}"));
    }
}

#[test]
fn libraries_newer_than_the_compatibility_version_are_not_there() {
    let node = decl_node(&json!({"type": "string"}), false, "selfType").unwrap();
    let old = rule_env(&node, OLDEST_SUPPORTED, false);
    let new = rule_env(&node, CURRENT, false);
    for rule in ["isIP(self)", "semver(self).major() > 0"] {
        assert!(compile(rule, &old).is_err(), "{rule}");
        compile(rule, &new).unwrap();
    }
}

#[test]
fn a_rule_over_budget_for_its_cardinality_is_forbidden() {
    // Two quantities of unbounded strings, repeated for up to 8 list items.
    let expansion = json!({
        "type": "object",
        "properties": {"minStep": int_or_string(), "maxStep": int_or_string()},
        "x-kubernetes-validations": [{
            "rule": "!((has(self.minStep) && self.minStep != '') ? quantity(string(self.minStep)) : quantity('2Gi')).isGreaterThan(((has(self.maxStep) && self.maxStep != '') ? quantity(string(self.maxStep)) : quantity('500Gi'))) || ((has(self.minStep) && self.minStep != '') && !isQuantity(string(self.minStep))) || ((has(self.maxStep) && self.maxStep != '') && (!isQuantity(string(self.maxStep)) || string(self.maxStep).startsWith('-')))",
            "message": "minStep must not be greater than maxStep"
        }]
    });
    let once = json!({"type": "object", "properties": {"spec": {"type": "object", "properties": {"expansion": expansion}}}});
    let errors = check_crd_schema(&once, CURRENT, "spec.validation.openAPIV3Schema").errors;
    assert!(errors.is_empty(), "{errors:?}");
    let eight = json!({"type": "object", "properties": {"spec": {"type": "object", "properties": {
        "tablespaces": {"type": "array", "maxItems": 8, "items": {"type": "object", "properties": {"expansion": expansion}}}
    }}}});
    let errors = check_crd_schema(&eight, CURRENT, "spec.validation.openAPIV3Schema").errors;
    assert_eq!(errors.len(), 1, "{errors:?}");
    assert_eq!(
        errors[0].field,
        "spec.validation.openAPIV3Schema.properties[spec].properties[tablespaces].items.properties[expansion].x-kubernetes-validations[0].rule"
    );
    assert!(
        errors[0]
            .detail
            .starts_with("estimated rule cost exceeds budget by factor of 2.3x"),
        "{}",
        errors[0]
    );
    // Bounded strings bring it well within budget.
    let mut bounded = eight.clone();
    for f in ["minStep", "maxStep"] {
        bounded["properties"]["spec"]["properties"]["tablespaces"]["items"]["properties"]
            ["expansion"]["properties"][f]["maxLength"] = json!(64);
    }
    let errors = check_crd_schema(&bounded, CURRENT, "spec.validation.openAPIV3Schema").errors;
    assert!(errors.is_empty(), "{errors:?}");
}

#[test]
fn unrecognized_formats_are_warnings() {
    let s = json!({"type": "object", "properties": {
        "a": {"type": "integer", "format": "uint64"},
        "b": {"type": "string", "format": "date-time"},
        "c": {"type": "integer", "format": "int64"}
    }});
    let report = check_crd_schema(&s, CURRENT, "x");
    assert!(report.errors.is_empty());
    assert_eq!(
        report.warnings,
        vec!["unrecognized format \"uint64\"".to_string()]
    );
}

#[test]
fn escaping_follows_kubernetes() {
    assert_eq!(escape("a-b").as_deref(), Some("a__dash__b"));
    assert_eq!(escape("namespace").as_deref(), Some("__namespace__"));
    assert_eq!(escape("a__b").as_deref(), Some("a__underscores__b"));
    assert_eq!(escape("1a"), None);
    assert_eq!(escape("a b"), None);
}
