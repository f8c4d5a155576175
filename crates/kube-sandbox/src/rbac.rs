//! Authentication (bearer token = identity) and Role-based authorization.

use std::collections::HashMap;
use std::sync::RwLock;

use anyhow::{bail, Context};
use serde::Deserialize;

/// The identity that bypasses RBAC.
pub const ADMIN: &str = "admin";

#[derive(Debug, Clone, Deserialize, Default)]
#[serde(rename_all = "camelCase")]
struct Rule {
    #[serde(default)]
    api_groups: Vec<String>,
    #[serde(default)]
    resources: Vec<String>,
    #[serde(default)]
    verbs: Vec<String>,
    #[serde(default)]
    resource_names: Vec<String>,
}

#[derive(Debug, Clone)]
struct Grant {
    /// `None` for a ClusterRole (all namespaces and cluster-scoped resources).
    namespace: Option<String>,
    rules: Vec<Rule>,
}

#[derive(Debug, Deserialize)]
struct Manifest {
    #[serde(default)]
    kind: String,
    #[serde(default)]
    metadata: Option<ManifestMeta>,
    #[serde(default)]
    rules: Vec<Rule>,
}

#[derive(Debug, Deserialize)]
struct ManifestMeta {
    #[serde(default)]
    namespace: Option<String>,
}

/// What a request wants to do, in RBAC terms.
#[derive(Debug)]
pub struct Attributes<'a> {
    pub verb: &'a str,
    pub group: &'a str,
    /// Resource with subresource, e.g. `clusters/status`.
    pub resource: &'a str,
    pub namespace: Option<&'a str>,
    pub name: Option<&'a str>,
}

/// Roles enforced per identity.
#[derive(Default)]
pub struct Rbac {
    grants: RwLock<HashMap<String, Vec<Grant>>>,
}

fn any_or(list: &[String], want: &str) -> bool {
    list.iter().any(|x| x == "*" || x == want)
}

impl Rbac {
    /// Adds the Role/ClusterRole documents found in `yaml` to `identity`'s grants.
    pub fn enforce(&self, identity: &str, yaml: &str) -> anyhow::Result<()> {
        let mut found = Vec::new();
        for doc in serde_norway::Deserializer::from_str(yaml) {
            let value = serde_norway::Value::deserialize(doc).context("parsing role YAML")?;
            if value.is_null() {
                continue;
            }
            let m: Manifest = serde_norway::from_value(value).context("reading role manifest")?;
            match m.kind.as_str() {
                "Role" => found.push(Grant {
                    namespace: Some(
                        m.metadata
                            .and_then(|md| md.namespace)
                            .unwrap_or_else(|| "default".into()),
                    ),
                    rules: m.rules,
                }),
                "ClusterRole" => found.push(Grant {
                    namespace: None,
                    rules: m.rules,
                }),
                _ => {}
            }
        }
        if found.is_empty() {
            bail!("no Role or ClusterRole found in the manifest for {identity:?}");
        }
        let mut grants = self.grants.write().unwrap_or_else(|e| e.into_inner());
        grants
            .entry(identity.to_string())
            .or_default()
            .extend(found);
        Ok(())
    }

    /// Whether `identity` may do `attrs`; identities without an enforced role may do anything.
    pub fn allows(&self, identity: &str, attrs: &Attributes<'_>) -> bool {
        if identity == ADMIN {
            return true;
        }
        let grants = self.grants.read().unwrap_or_else(|e| e.into_inner());
        let Some(list) = grants.get(identity) else {
            return true;
        };
        list.iter().any(|g| {
            let scope_ok = match (&g.namespace, attrs.namespace) {
                (None, _) => true,
                (Some(ns), Some(want)) => ns == want,
                (Some(_), None) => false,
            };
            scope_ok
                && g.rules.iter().any(|r| {
                    any_or(&r.api_groups, attrs.group)
                        && any_or(&r.resources, attrs.resource)
                        && any_or(&r.verbs, attrs.verb)
                        && (r.resource_names.is_empty()
                            || attrs
                                .name
                                .is_some_and(|n| r.resource_names.iter().any(|x| x == n)))
                })
        })
    }
}

/// The reason part of an RBAC 403, as kube-apiserver words it.
pub fn denial_reason(identity: &str, attrs: &Attributes<'_>) -> String {
    let scope = match attrs.namespace {
        Some(ns) => format!("in the namespace \"{ns}\""),
        None => "at the cluster scope".to_string(),
    };
    format!(
        "User \"{identity}\" cannot {} resource \"{}\" in API group \"{}\" {scope}",
        attrs.verb, attrs.resource, attrs.group
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    const ROLE: &str = r#"
apiVersion: rbac.authorization.k8s.io/v1
kind: Role
metadata: {name: r, namespace: ns}
rules:
  - apiGroups: [""]
    resources: [persistentvolumeclaims]
    verbs: [get, list, watch, patch]
  - apiGroups: [coordination.k8s.io]
    resources: [leases]
    verbs: [get, update]
    resourceNames: [mine]
"#;

    fn attrs<'a>(
        verb: &'a str,
        group: &'a str,
        resource: &'a str,
        name: Option<&'a str>,
    ) -> Attributes<'a> {
        Attributes {
            verb,
            group,
            resource,
            namespace: Some("ns"),
            name,
        }
    }

    #[test]
    fn role_rules() {
        let rbac = Rbac::default();
        rbac.enforce("sa", ROLE).unwrap();
        assert!(rbac.allows(
            "sa",
            &attrs("patch", "", "persistentvolumeclaims", Some("x"))
        ));
        assert!(!rbac.allows(
            "sa",
            &attrs("delete", "", "persistentvolumeclaims", Some("x"))
        ));
        assert!(!rbac.allows(
            "sa",
            &attrs("patch", "", "persistentvolumeclaims/status", Some("x"))
        ));
        assert!(rbac.allows(
            "sa",
            &attrs("get", "coordination.k8s.io", "leases", Some("mine"))
        ));
        assert!(!rbac.allows(
            "sa",
            &attrs("get", "coordination.k8s.io", "leases", Some("other"))
        ));
        assert!(!rbac.allows(
            "sa",
            &attrs("create", "coordination.k8s.io", "leases", None)
        ));
        assert!(rbac.allows("other", &attrs("delete", "", "pods", None)));
        assert!(rbac.enforce("x", "kind: ConfigMap").is_err());
    }
}
