//! Legacy (unaggregated) discovery documents, built from the registry (CRDs included);
//! clients asking for aggregated discovery fall back to these when the answer's
//! Content-Type is plain JSON.

use serde_json::{json, Value};

use crate::resources::Registry;

pub fn version() -> Value {
    json!({
        "major": "1",
        "minor": "36",
        "gitVersion": "v1.36.0-kube-sandbox",
        "gitCommit": "0000000000000000000000000000000000000000",
        "gitTreeState": "clean",
        "buildDate": "2026-01-01T00:00:00Z",
        "goVersion": "go1.25.0",
        "compiler": "gc",
        "platform": "linux/amd64"
    })
}

pub fn api_versions(server: &str) -> Value {
    json!({
        "kind": "APIVersions",
        "versions": ["v1"],
        "serverAddressByClientCIDRs": [{"clientCIDR": "0.0.0.0/0", "serverAddress": server}]
    })
}

/// Served versions of `group`, highest priority first (the first is the preferred one).
fn group_versions(registry: &Registry, group: &str) -> Vec<String> {
    let mut versions: Vec<String> = Vec::new();
    for (_, def) in registry.snapshot() {
        if def.group != group {
            continue;
        }
        for v in def.served_versions_by_priority() {
            if !versions.iter().any(|x| x == v) {
                versions.push(v.to_string());
            }
        }
    }
    versions
}

fn group_doc(registry: &Registry, group: &str) -> Option<Value> {
    let versions = group_versions(registry, group);
    let docs: Vec<Value> = versions
        .iter()
        .map(|v| json!({"groupVersion": format!("{group}/{v}"), "version": v}))
        .collect();
    let preferred = docs.first()?.clone();
    Some(json!({"name": group, "versions": docs, "preferredVersion": preferred}))
}

pub fn api_group_list(registry: &Registry) -> Value {
    let mut groups: Vec<String> = Vec::new();
    for (_, def) in registry.snapshot() {
        if !def.group.is_empty() && !groups.contains(&def.group) {
            groups.push(def.group.clone());
        }
    }
    let list: Vec<Value> = groups
        .iter()
        .filter_map(|g| group_doc(registry, g))
        .collect();
    json!({"kind": "APIGroupList", "apiVersion": "v1", "groups": list})
}

pub fn api_group(registry: &Registry, group: &str) -> Option<Value> {
    let mut doc = group_doc(registry, group)?;
    doc["kind"] = json!("APIGroup");
    doc["apiVersion"] = json!("v1");
    Some(doc)
}

const MAIN_VERBS: &[&str] = &[
    "create",
    "delete",
    "deletecollection",
    "get",
    "list",
    "patch",
    "update",
    "watch",
];

/// APIResourceList for one group/version (`""` group = core).
pub fn resource_list(registry: &Registry, group: &str, version: &str) -> Option<Value> {
    let mut resources = Vec::new();
    for (_, r) in registry.snapshot() {
        if r.group != group {
            continue;
        }
        let Some(v) = r.served_version(version) else {
            continue;
        };
        let mut doc = json!({
            "name": r.plural,
            "singularName": r.singular,
            "namespaced": r.namespaced,
            "kind": r.kind,
            "verbs": MAIN_VERBS,
        });
        if !r.short_names.is_empty() {
            doc["shortNames"] = json!(r.short_names);
        }
        if !r.categories.is_empty() {
            doc["categories"] = json!(r.categories);
        }
        resources.push(doc);
        if v.status {
            resources.push(json!({
                "name": format!("{}/status", r.plural),
                "singularName": "",
                "namespaced": r.namespaced,
                "kind": r.kind,
                "verbs": ["get", "patch", "update"],
            }));
        }
    }
    if resources.is_empty() {
        return None;
    }
    if group.is_empty() {
        resources.push(json!({"name": "namespaces", "singularName": "namespace", "namespaced": false, "kind": "Namespace", "verbs": ["get", "list"], "shortNames": ["ns"]}));
    }
    let gv = if group.is_empty() {
        version.to_string()
    } else {
        format!("{group}/{version}")
    };
    Some(
        json!({"kind": "APIResourceList", "apiVersion": "v1", "groupVersion": gv, "resources": resources}),
    )
}
