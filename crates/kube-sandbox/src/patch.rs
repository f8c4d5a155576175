//! PATCH bodies: JSON patch, JSON merge patch, a strategic-merge subset and a simplified apply.

use serde_json::{Map, Value};

use crate::error::ApiError;
use crate::resources::ResourceDef;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PatchKind {
    Json,
    Merge,
    Strategic,
    Apply,
}

const JSON: &str = "application/json-patch+json";
const MERGE: &str = "application/merge-patch+json";
const STRATEGIC: &str = "application/strategic-merge-patch+json";
const APPLY: &str = "application/apply-patch+yaml";

impl PatchKind {
    /// Maps a Content-Type to a patch kind; strategic merge only for built-in types, as the real server does.
    pub fn from_content_type(ct: &str, res: &ResourceDef) -> Result<Self, ApiError> {
        let media = ct
            .split(';')
            .next()
            .unwrap_or("")
            .trim()
            .to_ascii_lowercase();
        let kind = match media.as_str() {
            JSON => Self::Json,
            MERGE => Self::Merge,
            STRATEGIC if res.strategic => Self::Strategic,
            APPLY => Self::Apply,
            _ => {
                let mut accepted = vec![JSON, MERGE];
                if res.strategic {
                    accepted.push(STRATEGIC);
                }
                accepted.push(APPLY);
                return Err(ApiError::unsupported_media(&accepted));
            }
        };
        Ok(kind)
    }
}

/// Parses an apply body (YAML is a superset of JSON).
pub fn parse_apply_body(body: &[u8]) -> Result<Value, ApiError> {
    let text = std::str::from_utf8(body)
        .map_err(|e| ApiError::bad_request(format!("apply body is not UTF-8: {e}")))?;
    serde_norway::from_str::<Value>(text)
        .map_err(|e| ApiError::bad_request(format!("error decoding YAML: {e}")))
}

/// Applies `body` of `kind` to `target`, returning the patched document.
pub fn apply(kind: PatchKind, target: &Value, body: &[u8]) -> Result<Value, ApiError> {
    let mut doc = target.clone();
    match kind {
        PatchKind::Json => {
            let patch: json_patch::Patch = serde_json::from_slice(body)
                .map_err(|e| ApiError::bad_request(format!("error decoding patch: {e}")))?;
            // The real server answers 422 for any JSON patch that fails to apply, including `test`.
            json_patch::patch(&mut doc, &patch)
                .map_err(|e| ApiError::new(422, "Invalid", e.to_string()))?;
        }
        PatchKind::Merge => {
            json_patch::merge(&mut doc, &parse_json(body)?);
        }
        PatchKind::Strategic => {
            strategic_merge(&mut doc, &parse_json(body)?);
        }
        PatchKind::Apply => {
            json_patch::merge(&mut doc, &parse_apply_body(body)?);
        }
    }
    Ok(doc)
}

fn parse_json(body: &[u8]) -> Result<Value, ApiError> {
    serde_json::from_slice(body)
        .map_err(|e| ApiError::bad_request(format!("error decoding patch: {e}")))
}

/// Merge key of a list field, for the lists that matter to PVCs, pods and metadata.
fn merge_key(field: &str) -> Option<&'static str> {
    Some(match field {
        "conditions" => "type",
        "containers"
        | "initContainers"
        | "ephemeralContainers"
        | "volumes"
        | "env"
        | "imagePullSecrets"
        | "containerStatuses"
        | "initContainerStatuses" => "name",
        "volumeMounts" => "mountPath",
        "volumeDevices" => "devicePath",
        "ownerReferences" => "uid",
        _ => return None,
    })
}

/// Lists of scalars that strategic merge unions instead of replacing.
fn is_set_list(field: &str) -> bool {
    field == "finalizers"
}

/// Strategic merge patch, subset: maps merge recursively, `null` deletes, lists
/// with a known merge key merge by that key (`$patch: delete` removes an item),
/// `finalizers` unions, `$patch: replace` on a map replaces it, other lists replace.
pub fn strategic_merge(target: &mut Value, patch: &Value) {
    let Value::Object(patch_map) = patch else {
        *target = patch.clone();
        return;
    };
    if patch_map.get("$patch").and_then(Value::as_str) == Some("replace") {
        let mut clean = patch_map.clone();
        clean.remove("$patch");
        *target = Value::Object(clean);
        return;
    }
    if !target.is_object() {
        *target = Value::Object(Map::new());
    }
    let Value::Object(tmap) = target else { return };
    for (k, v) in patch_map {
        if k.starts_with('$') {
            continue;
        }
        match v {
            Value::Null => {
                tmap.remove(k);
            }
            Value::Array(items) => {
                let existing = tmap.get_mut(k).and_then(Value::as_array_mut);
                match (existing, merge_key(k)) {
                    (Some(cur), Some(mk)) => merge_list(cur, items, mk),
                    (Some(cur), None) if is_set_list(k) => {
                        for item in items {
                            if !cur.contains(item) {
                                cur.push(item.clone());
                            }
                        }
                    }
                    _ => {
                        let kept: Vec<Value> = items
                            .iter()
                            .filter(|i| i.get("$patch").is_none())
                            .cloned()
                            .collect();
                        tmap.insert(k.clone(), Value::Array(kept));
                    }
                }
            }
            Value::Object(_) => {
                let slot = tmap.entry(k.clone()).or_insert(Value::Null);
                strategic_merge(slot, v);
            }
            _ => {
                tmap.insert(k.clone(), v.clone());
            }
        }
    }
}

fn merge_list(cur: &mut Vec<Value>, items: &[Value], key: &str) {
    for item in items {
        let id = item.get(key);
        let pos = id.and_then(|id| cur.iter().position(|c| c.get(key) == Some(id)));
        let delete = item.get("$patch").and_then(Value::as_str) == Some("delete");
        match (pos, delete) {
            (Some(i), true) => {
                cur.remove(i);
            }
            (None, true) => {}
            (Some(i), false) => strategic_merge(&mut cur[i], item),
            (None, false) => cur.push(item.clone()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn strategic_merges_conditions_by_type() {
        let mut doc = json!({"status": {"conditions": [
            {"type": "A", "status": "True"}, {"type": "B", "status": "False"}]}});
        strategic_merge(
            &mut doc,
            &json!({"status": {"conditions": [{"type": "B", "status": "True"}, {"type": "C", "status": "True"}]}}),
        );
        assert_eq!(
            doc,
            json!({"status": {"conditions": [
                {"type": "A", "status": "True"}, {"type": "B", "status": "True"}, {"type": "C", "status": "True"}]}})
        );
    }

    #[test]
    fn strategic_delete_and_replace() {
        let mut doc = json!({"spec": {"volumes": [{"name": "a"}, {"name": "b"}], "accessModes": ["X"]}, "metadata": {"finalizers": ["f1"]}});
        strategic_merge(
            &mut doc,
            &json!({"spec": {"volumes": [{"name": "a", "$patch": "delete"}], "accessModes": ["Y"]}, "metadata": {"finalizers": ["f2"]}}),
        );
        assert_eq!(
            doc,
            json!({"spec": {"volumes": [{"name": "b"}], "accessModes": ["Y"]}, "metadata": {"finalizers": ["f1", "f2"]}})
        );
    }
}
