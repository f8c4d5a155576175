//! `metadata.managedFields`, as the API server records them for writes
//! that are not server-side apply: the manager of a write (its
//! `fieldManager`, else its User-Agent up to the first `/`) owns every field
//! the write set or changed, and no other manager owns those any more; a
//! field removed is owned by nobody. One entry per manager, operation and
//! subresource, in the `FieldsV1` format (`{"f:spec": {"f:x": {}}}`).
//!
//! Simplifications (README): lists are owned whole (no `k:`/`v:` keys), no
//! `.` markers, and a server-side apply is recorded as an update of the
//! fields it changed.

use serde_json::{json, Map, Value};
use std::collections::{BTreeMap, BTreeSet};

type Path = Vec<String>;

/// The manager of a request, as the API server names it.
pub(crate) fn manager_of(field_manager: Option<&str>, user_agent: &str) -> String {
    match field_manager.filter(|m| !m.is_empty()) {
        Some(m) => m.to_string(),
        None => user_agent.split('/').next().unwrap_or("").to_string(),
    }
}

/// Sets `new`'s managedFields for a write by `manager` that turned `old`
/// (None: a create) into `new`.
pub(crate) fn track(
    old: Option<&Value>,
    new: &mut Value,
    manager: &str,
    subresource: Option<&str>,
    now: &str,
) {
    let before = old.map(leaves).unwrap_or_default();
    let after = leaves(new);
    let changed: BTreeSet<Path> = after
        .iter()
        .filter(|(path, value)| before.get(*path) != Some(*value))
        .map(|(path, _)| path.clone())
        .collect();
    let removed: BTreeSet<Path> = before
        .keys()
        .filter(|path| !after.contains_key(*path))
        .cloned()
        .collect();
    let mut entries: Vec<Value> = old
        .and_then(|o| o.pointer("/metadata/managedFields"))
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    let is_mine = |e: &Value| {
        e["manager"].as_str() == Some(manager)
            && e["operation"] == "Update"
            && e["subresource"].as_str() == subresource
    };
    let mut kept = Vec::new();
    let mut mine: BTreeSet<Path> = BTreeSet::new();
    let mut mine_at: Option<Value> = None;
    // The manager's own entry keeps its place in the list.
    let mut position = None;
    for entry in entries.drain(..) {
        let mut owned = decode(&entry["fieldsV1"]);
        if is_mine(&entry) {
            owned.retain(|p| !removed.contains(p));
            mine = owned;
            mine_at = Some(entry["time"].clone());
            position = Some(kept.len());
            continue;
        }
        owned.retain(|p| !changed.contains(p) && !removed.contains(p));
        if !owned.is_empty() {
            let mut entry = entry;
            entry["fieldsV1"] = encode(&owned);
            kept.push(entry);
        }
    }
    let time = if changed.is_empty() {
        mine_at.unwrap_or_else(|| json!(now))
    } else {
        json!(now)
    };
    mine.extend(changed);
    if !mine.is_empty() {
        let mut entry = json!({
            "manager": manager,
            "operation": "Update",
            "apiVersion": new["apiVersion"].clone(),
            "time": time,
            "fieldsType": "FieldsV1",
            "fieldsV1": encode(&mine),
        });
        if let Some(sub) = subresource {
            entry["subresource"] = json!(sub);
        }
        kept.insert(position.unwrap_or(kept.len()), entry);
    }
    if let Some(meta) = new.get_mut("metadata").and_then(Value::as_object_mut) {
        if kept.is_empty() {
            meta.remove("managedFields");
        } else {
            meta.insert("managedFields".into(), Value::Array(kept));
        }
    }
}

/// Every leaf of an object (scalars, lists, empty objects) by path, minus
/// what the server itself maintains.
fn leaves(obj: &Value) -> BTreeMap<Path, Value> {
    let mut out = BTreeMap::new();
    let Some(map) = obj.as_object() else {
        return out;
    };
    for (key, value) in map {
        if key == "apiVersion" || key == "kind" {
            continue;
        }
        if key == "metadata" {
            let mut meta = value.clone();
            if let Some(m) = meta.as_object_mut() {
                for own in [
                    "managedFields",
                    "resourceVersion",
                    "generation",
                    "uid",
                    "creationTimestamp",
                    "selfLink",
                    "deletionTimestamp",
                    "deletionGracePeriodSeconds",
                ] {
                    m.remove(own);
                }
            }
            walk(&mut vec![key.clone()], &meta, &mut out);
        } else {
            walk(&mut vec![key.clone()], value, &mut out);
        }
    }
    out
}

fn walk(path: &mut Path, value: &Value, out: &mut BTreeMap<Path, Value>) {
    match value {
        Value::Object(map) if !map.is_empty() => {
            for (key, child) in map {
                path.push(key.clone());
                walk(path, child, out);
                path.pop();
            }
        }
        leaf => {
            out.insert(path.clone(), leaf.clone());
        }
    }
}

fn encode(paths: &BTreeSet<Path>) -> Value {
    fn insert(node: &mut Map<String, Value>, path: &[String]) {
        let Some((first, rest)) = path.split_first() else {
            return;
        };
        let child = node
            .entry(format!("f:{first}"))
            .or_insert_with(|| Value::Object(Map::new()));
        if !child.is_object() {
            *child = Value::Object(Map::new());
        }
        if let Value::Object(child) = child {
            insert(child, rest);
        }
    }
    let mut root = Map::new();
    for path in paths {
        insert(&mut root, path);
    }
    Value::Object(root)
}

fn decode(fields: &Value) -> BTreeSet<Path> {
    fn go(node: &Value, path: &mut Path, out: &mut BTreeSet<Path>) {
        let children: Vec<(&String, &Value)> = node
            .as_object()
            .map(|m| m.iter().filter(|(k, _)| *k != ".").collect())
            .unwrap_or_default();
        if children.is_empty() {
            if !path.is_empty() {
                out.insert(path.clone());
            }
            return;
        }
        for (key, child) in children {
            path.push(key.strip_prefix("f:").unwrap_or(key).to_string());
            go(child, path, out);
            path.pop();
        }
    }
    let mut out = BTreeSet::new();
    go(fields, &mut Vec::new(), &mut out);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn owners(obj: &Value) -> Vec<(String, Value)> {
        obj["metadata"]["managedFields"]
            .as_array()
            .map(|a| {
                a.iter()
                    .map(|e| {
                        (
                            e["manager"].as_str().unwrap().to_string(),
                            e["fieldsV1"].clone(),
                        )
                    })
                    .collect()
            })
            .unwrap_or_default()
    }

    #[test]
    fn the_last_writer_of_a_field_owns_it() {
        let mut pvc = json!({"apiVersion": "v1", "kind": "PersistentVolumeClaim",
            "metadata": {"name": "p", "uid": "u", "labels": {"a": "1"}},
            "spec": {"resources": {"requests": {"storage": "1Gi"}}}});
        track(None, &mut pvc, "manager", None, "t0");
        assert_eq!(
            owners(&pvc),
            vec![(
                "manager".to_string(),
                json!({"f:metadata": {"f:labels": {"f:a": {}}, "f:name": {}},
                       "f:spec": {"f:resources": {"f:requests": {"f:storage": {}}}}})
            )]
        );
        let old = pvc.clone();
        pvc["spec"]["resources"]["requests"]["storage"] = json!("2Gi");
        pvc["metadata"]["annotations"] = json!({"x": "y"});
        track(Some(&old), &mut pvc, "cnpg-autoresize", None, "t1");
        let o = owners(&pvc);
        assert_eq!(o.len(), 2);
        assert_eq!(
            o[0].1,
            json!({"f:metadata": {"f:labels": {"f:a": {}}, "f:name": {}}})
        );
        assert_eq!(
            o[1],
            (
                "cnpg-autoresize".to_string(),
                json!({"f:metadata": {"f:annotations": {"f:x": {}}},
                       "f:spec": {"f:resources": {"f:requests": {"f:storage": {}}}}})
            )
        );
        // Writing the same value changes no ownership.
        let old = pvc.clone();
        track(Some(&old), &mut pvc, "manager", None, "t2");
        assert_eq!(owners(&pvc), o);
        // A status write is its own entry.
        let old = pvc.clone();
        pvc["status"] = json!({"phase": "Bound"});
        track(Some(&old), &mut pvc, "manager", Some("status"), "t3");
        let entries = pvc["metadata"]["managedFields"].as_array().unwrap();
        assert_eq!(entries.len(), 3);
        assert_eq!(entries[2]["subresource"], "status");
    }

    #[test]
    fn the_manager_is_the_field_manager_else_the_user_agent() {
        assert_eq!(manager_of(Some("manager"), "kube-rs/1.0"), "manager");
        assert_eq!(manager_of(Some(""), "kubectl/v1.33 (linux)"), "kubectl");
        assert_eq!(
            manager_of(None, "cnpg-autoresize/0.1.0 (pod pg-1)"),
            "cnpg-autoresize"
        );
    }
}
