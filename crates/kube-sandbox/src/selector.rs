//! Label and field selectors for list and watch.

use serde_json::Value;

use crate::error::ApiError;

#[derive(Debug, Clone, PartialEq)]
enum LabelReq {
    Eq(String, String),
    NotEq(String, String),
    In(String, Vec<String>),
    NotIn(String, Vec<String>),
    Exists(String),
    NotExists(String),
}

#[derive(Debug, Clone, PartialEq)]
struct FieldReq {
    path: String,
    value: String,
    negate: bool,
}

/// Parsed `labelSelector` + `fieldSelector`; empty matches everything.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Selector {
    labels: Vec<LabelReq>,
    fields: Vec<FieldReq>,
}

/// Splits on commas that are not inside parentheses.
fn split_top(s: &str) -> Vec<&str> {
    let mut out = Vec::new();
    let (mut depth, mut start) = (0i32, 0usize);
    for (i, c) in s.char_indices() {
        match c {
            '(' => depth += 1,
            ')' => depth -= 1,
            ',' if depth == 0 => {
                out.push(&s[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    out.push(&s[start..]);
    out.into_iter()
        .map(str::trim)
        .filter(|p| !p.is_empty())
        .collect()
}

fn parse_label(req: &str) -> Result<LabelReq, ApiError> {
    let bad = || ApiError::bad_request(format!("unable to parse requirement: {req:?}"));
    if let Some(key) = req.strip_prefix('!') {
        return Ok(LabelReq::NotExists(key.trim().to_string()));
    }
    if let Some((key, rest)) = req.split_once(char::is_whitespace) {
        let rest = rest.trim_start();
        let (negate, list) = if let Some(l) = rest.strip_prefix("notin") {
            (true, l)
        } else if let Some(l) = rest.strip_prefix("in") {
            (false, l)
        } else {
            (false, "")
        };
        let list = list.trim();
        if list.starts_with('(') && list.ends_with(')') {
            let values: Vec<String> = list[1..list.len() - 1]
                .split(',')
                .map(|v| v.trim().to_string())
                .filter(|v| !v.is_empty())
                .collect();
            let key = key.trim().to_string();
            return Ok(if negate {
                LabelReq::NotIn(key, values)
            } else {
                LabelReq::In(key, values)
            });
        }
    }
    if let Some((k, v)) = req.split_once("!=") {
        return Ok(LabelReq::NotEq(k.trim().into(), v.trim().into()));
    }
    if let Some((k, v)) = req.split_once("==").or_else(|| req.split_once('=')) {
        return Ok(LabelReq::Eq(k.trim().into(), v.trim().into()));
    }
    if req.contains(char::is_whitespace) || req.contains(['(', ')', '<', '>']) {
        return Err(bad());
    }
    Ok(LabelReq::Exists(req.to_string()))
}

/// Field paths the sandbox can select on (per resource: metadata.* everywhere, a few pod fields).
fn field_supported(path: &str, plural: &str) -> bool {
    matches!(path, "metadata.name" | "metadata.namespace")
        || (plural == "pods" && matches!(path, "status.phase" | "spec.nodeName"))
}

impl Selector {
    pub fn parse(label: Option<&str>, field: Option<&str>, plural: &str) -> Result<Self, ApiError> {
        let mut sel = Selector::default();
        for req in split_top(label.unwrap_or("")) {
            sel.labels.push(parse_label(req)?);
        }
        for req in split_top(field.unwrap_or("")) {
            let (path, value, negate) = if let Some((p, v)) = req.split_once("!=") {
                (p, v, true)
            } else if let Some((p, v)) = req.split_once("==").or_else(|| req.split_once('=')) {
                (p, v, false)
            } else {
                return Err(ApiError::bad_request(format!(
                    "invalid selector: '{req}'; can't understand '{req}'"
                )));
            };
            let path = path.trim();
            if !field_supported(path, plural) {
                return Err(ApiError::bad_request(format!(
                    "field label not supported: {path}"
                )));
            }
            sel.fields.push(FieldReq {
                path: path.to_string(),
                value: value.trim().to_string(),
                negate,
            });
        }
        Ok(sel)
    }

    /// The single name this selector pins with `metadata.name=`, used by RBAC resourceNames.
    pub fn pinned_name(&self) -> Option<&str> {
        self.fields
            .iter()
            .find(|f| f.path == "metadata.name" && !f.negate)
            .map(|f| f.value.as_str())
    }

    pub fn matches(&self, obj: &Value) -> bool {
        let labels = obj.pointer("/metadata/labels");
        let label = |k: &str| labels.and_then(|l| l.get(k)).and_then(Value::as_str);
        let labels_ok = self.labels.iter().all(|r| match r {
            LabelReq::Eq(k, v) => label(k) == Some(v.as_str()),
            LabelReq::NotEq(k, v) => label(k) != Some(v.as_str()),
            LabelReq::In(k, vs) => label(k).is_some_and(|l| vs.iter().any(|v| v == l)),
            LabelReq::NotIn(k, vs) => label(k).is_none_or(|l| vs.iter().all(|v| v != l)),
            LabelReq::Exists(k) => label(k).is_some(),
            LabelReq::NotExists(k) => label(k).is_none(),
        });
        labels_ok
            && self.fields.iter().all(|f| {
                let ptr = format!("/{}", f.path.replace('.', "/"));
                let actual = obj.pointer(&ptr).and_then(Value::as_str).unwrap_or("");
                (actual == f.value) != f.negate
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn obj() -> Value {
        json!({"metadata": {"name": "a", "namespace": "ns", "labels": {"app": "pg", "tier": "db"}}})
    }

    fn m(label: &str, field: &str) -> bool {
        Selector::parse(Some(label), Some(field), "pods")
            .unwrap()
            .matches(&obj())
    }

    #[test]
    fn label_operators() {
        assert!(m("app=pg", ""));
        assert!(m("app==pg,tier=db", ""));
        assert!(!m("app!=pg", ""));
        assert!(m("missing!=x", ""));
        assert!(m("app in (pg, web)", ""));
        assert!(!m("app notin (pg)", ""));
        assert!(m("missing notin (pg)", ""));
        assert!(m("app", ""));
        assert!(m("!missing", ""));
        assert!(!m("!app", ""));
    }

    #[test]
    fn field_operators() {
        assert!(m("", "metadata.name=a"));
        assert!(m("", "metadata.name!=b,metadata.namespace==ns"));
        assert!(!m("", "metadata.namespace!=ns"));
        assert!(Selector::parse(None, Some("spec.x=1"), "pods").is_err());
    }
}
