//! The served resources: built-in types plus those registered from CustomResourceDefinitions.

use std::sync::{Arc, RwLock};

use crate::schema::Schema;

/// How `metadata.generation` moves on writes to the main resource.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Generation {
    /// Stays at 1.
    Fixed,
    /// Bumped when `spec` changes (built-in types such as PVCs).
    OnSpecChange,
    /// Bumped on any change outside `metadata` and `status` (custom resources).
    OnNonMetadataChange,
}

/// One served version of a resource.
#[derive(Debug)]
pub struct VersionDef {
    pub name: String,
    pub served: bool,
    pub storage: bool,
    /// Has a `/status` subresource (status writes are separated from the main resource).
    pub status: bool,
    /// Structural schema of a CRD version; `None` keeps every field (built-ins, schema-less CRDs).
    pub schema: Option<Arc<Schema>>,
}

/// Description of one served resource (all its versions).
#[derive(Debug)]
pub struct ResourceDef {
    pub group: String,
    pub plural: String,
    pub singular: String,
    pub kind: String,
    pub list_kind: String,
    pub namespaced: bool,
    pub short_names: Vec<String>,
    pub categories: Vec<String>,
    /// Built-in type: strategic merge patch is accepted.
    pub strategic: bool,
    pub generation: Generation,
    /// In the order of the CRD (built-ins: one).
    pub versions: Vec<VersionDef>,
}

impl ResourceDef {
    #[allow(clippy::too_many_arguments)]
    fn builtin(
        group: &str,
        version: &str,
        plural: &str,
        kind: &str,
        namespaced: bool,
        status: bool,
        short_names: &[&str],
        generation: Generation,
    ) -> Self {
        Self {
            group: group.into(),
            plural: plural.into(),
            singular: kind.to_lowercase(),
            kind: kind.into(),
            list_kind: format!("{kind}List"),
            namespaced,
            short_names: short_names.iter().map(|s| s.to_string()).collect(),
            categories: Vec::new(),
            strategic: true,
            generation,
            versions: vec![VersionDef {
                name: version.into(),
                served: true,
                storage: true,
                status,
                schema: None,
            }],
        }
    }

    /// `group/version`, or `version` for the core group.
    pub fn api_version(&self, version: &str) -> String {
        if self.group.is_empty() {
            version.to_string()
        } else {
            format!("{}/{}", self.group, version)
        }
    }

    /// `plural.group` (or `plural` for the core group), as used in real error messages.
    pub fn qualified(&self) -> String {
        if self.group.is_empty() {
            self.plural.clone()
        } else {
            format!("{}.{}", self.plural, self.group)
        }
    }

    /// `Kind.group` (or `Kind` for the core group), as apimachinery's `GroupKind.String()`.
    pub fn group_kind(&self) -> String {
        if self.group.is_empty() {
            self.kind.clone()
        } else {
            format!("{}.{}", self.kind, self.group)
        }
    }

    pub fn served_version(&self, version: &str) -> Option<&VersionDef> {
        self.versions.iter().find(|v| v.served && v.name == version)
    }

    /// The version objects are stored in.
    pub fn storage_version(&self) -> &VersionDef {
        self.versions
            .iter()
            .find(|v| v.storage)
            .unwrap_or(&self.versions[0])
    }

    /// Has a status subresource in `version`.
    pub fn has_status(&self, version: &str) -> bool {
        self.served_version(version).is_some_and(|v| v.status)
    }

    /// A custom resource: schema processing, JSON/merge patch only.
    pub fn is_custom(&self) -> bool {
        !self.strategic
    }

    /// Served versions, highest Kubernetes version priority first (v2 > v1 > v1beta1 > v1alpha1).
    pub fn served_versions_by_priority(&self) -> Vec<&str> {
        let mut names: Vec<&str> = self
            .versions
            .iter()
            .filter(|v| v.served)
            .map(|v| v.name.as_str())
            .collect();
        names.sort_by(|a, b| version_priority(b).cmp(&version_priority(a)).then(a.cmp(b)));
        names
    }
}

/// Sort key of a Kubernetes API version name (apimachinery's `CompareKubeAwareVersionStrings`):
/// GA above beta above alpha, higher numbers first; anything else lowest.
fn version_priority(v: &str) -> (u8, u64, u64) {
    let Some(rest) = v.strip_prefix('v') else {
        return (0, 0, 0);
    };
    let digits: String = rest.chars().take_while(char::is_ascii_digit).collect();
    let Ok(major) = digits.parse::<u64>() else {
        return (0, 0, 0);
    };
    let tail = &rest[digits.len()..];
    let (level, num) = if tail.is_empty() {
        return (3, major, 0);
    } else if let Some(n) = tail.strip_prefix("beta") {
        (2, n)
    } else if let Some(n) = tail.strip_prefix("alpha") {
        (1, n)
    } else {
        return (0, 0, 0);
    };
    match num.parse::<u64>() {
        Ok(n) => (level, major, n),
        Err(_) => (0, 0, 0),
    }
}

/// Registry index of PersistentVolumeClaims (checked by a unit test).
pub const PVC: usize = 0;
/// Registry index of StorageClasses (checked by a unit test).
pub const STORAGE_CLASS: usize = 5;
/// Registry index of CustomResourceDefinitions (checked by a unit test).
pub const CRD: usize = 6;

fn builtins() -> Vec<ResourceDef> {
    use Generation::*;
    vec![
        ResourceDef::builtin(
            "",
            "v1",
            "persistentvolumeclaims",
            "PersistentVolumeClaim",
            true,
            true,
            &["pvc"],
            OnSpecChange,
        ),
        ResourceDef::builtin("", "v1", "pods", "Pod", true, true, &["po"], OnSpecChange),
        ResourceDef::builtin("", "v1", "events", "Event", true, false, &["ev"], Fixed),
        ResourceDef::builtin(
            "events.k8s.io",
            "v1",
            "events",
            "Event",
            true,
            false,
            &["ev"],
            Fixed,
        ),
        ResourceDef::builtin(
            "coordination.k8s.io",
            "v1",
            "leases",
            "Lease",
            true,
            false,
            &[],
            Fixed,
        ),
        ResourceDef::builtin(
            "storage.k8s.io",
            "v1",
            "storageclasses",
            "StorageClass",
            false,
            false,
            &["sc"],
            Fixed,
        ),
        ResourceDef::builtin(
            "apiextensions.k8s.io",
            "v1",
            "customresourcedefinitions",
            "CustomResourceDefinition",
            false,
            true,
            &["crd", "crds"],
            OnSpecChange,
        ),
        // Indices 7..=10: crate::admission's constants.
        ResourceDef::builtin(
            "admissionregistration.k8s.io",
            "v1",
            "validatingadmissionpolicies",
            "ValidatingAdmissionPolicy",
            false,
            true,
            &[],
            OnSpecChange,
        ),
        ResourceDef::builtin(
            "admissionregistration.k8s.io",
            "v1",
            "validatingadmissionpolicybindings",
            "ValidatingAdmissionPolicyBinding",
            false,
            false,
            &[],
            OnSpecChange,
        ),
        ResourceDef::builtin(
            "admissionregistration.k8s.io",
            "v1",
            "mutatingadmissionpolicies",
            "MutatingAdmissionPolicy",
            false,
            false,
            &[],
            OnSpecChange,
        ),
        ResourceDef::builtin(
            "admissionregistration.k8s.io",
            "v1",
            "mutatingadmissionpolicybindings",
            "MutatingAdmissionPolicyBinding",
            false,
            false,
            &[],
            OnSpecChange,
        ),
    ]
}

/// `clusters.postgresql.cnpg.io` as if a CRD without schema were installed: every field is kept.
pub fn schemaless_cluster() -> ResourceDef {
    ResourceDef {
        group: "postgresql.cnpg.io".into(),
        plural: "clusters".into(),
        singular: "cluster".into(),
        kind: "Cluster".into(),
        list_kind: "ClusterList".into(),
        namespaced: true,
        short_names: Vec::new(),
        categories: vec!["all".into()],
        strategic: false,
        generation: Generation::OnNonMetadataChange,
        versions: vec![VersionDef {
            name: "v1".into(),
            served: true,
            storage: true,
            status: true,
            schema: None,
        }],
    }
}

struct Entry {
    group: String,
    plural: String,
    /// `None` once its CRD is deleted; the index is kept for a later CRD of the same name.
    def: Option<Arc<ResourceDef>>,
}

/// All resources, indexed by a stable number (the store's key prefix).
pub struct Registry {
    entries: RwLock<Vec<Entry>>,
}

impl Registry {
    /// Built-in types, then the schema-less Cluster placeholder.
    pub fn new() -> Self {
        let mut entries: Vec<Entry> = builtins()
            .into_iter()
            .map(|d| Entry {
                group: d.group.clone(),
                plural: d.plural.clone(),
                def: Some(Arc::new(d)),
            })
            .collect();
        let cluster = schemaless_cluster();
        entries.push(Entry {
            group: cluster.group.clone(),
            plural: cluster.plural.clone(),
            def: Some(Arc::new(cluster)),
        });
        Self {
            entries: RwLock::new(entries),
        }
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, Vec<Entry>> {
        self.entries.read().unwrap_or_else(|e| e.into_inner())
    }

    /// The resource serving `group/version` `plural`.
    pub fn find(
        &self,
        group: &str,
        version: &str,
        plural: &str,
    ) -> Option<(usize, Arc<ResourceDef>)> {
        self.read().iter().enumerate().find_map(|(i, e)| {
            let def = e.def.as_ref()?;
            (e.group == group && e.plural == plural && def.served_version(version).is_some())
                .then(|| (i, def.clone()))
        })
    }

    pub fn get(&self, idx: usize) -> Option<Arc<ResourceDef>> {
        self.read().get(idx).and_then(|e| e.def.clone())
    }

    /// Index of `group`/`plural`, served or not.
    pub fn index_of(&self, group: &str, plural: &str) -> Option<usize> {
        self.read()
            .iter()
            .position(|e| e.group == group && e.plural == plural)
    }

    /// Registers (or replaces) the resource with this group and plural; returns its index.
    pub fn upsert(&self, def: ResourceDef) -> usize {
        let mut entries = self.entries.write().unwrap_or_else(|e| e.into_inner());
        if let Some(i) = entries
            .iter()
            .position(|e| e.group == def.group && e.plural == def.plural)
        {
            entries[i].def = Some(Arc::new(def));
            return i;
        }
        entries.push(Entry {
            group: def.group.clone(),
            plural: def.plural.clone(),
            def: Some(Arc::new(def)),
        });
        entries.len() - 1
    }

    /// Stops serving `group`/`plural`; returns its index if it was served.
    pub fn remove(&self, group: &str, plural: &str) -> Option<usize> {
        let mut entries = self.entries.write().unwrap_or_else(|e| e.into_inner());
        let i = entries
            .iter()
            .position(|e| e.group == group && e.plural == plural)?;
        entries[i].def.take().map(|_| i)
    }

    /// Every served resource with its index, in registry order.
    pub fn snapshot(&self) -> Vec<(usize, Arc<ResourceDef>)> {
        self.read()
            .iter()
            .enumerate()
            .filter_map(|(i, e)| e.def.clone().map(|d| (i, d)))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn well_known_indices() {
        let r = Registry::new();
        assert_eq!(r.get(PVC).unwrap().plural, "persistentvolumeclaims");
        assert_eq!(r.get(STORAGE_CLASS).unwrap().plural, "storageclasses");
        for (idx, plural) in [
            (
                crate::admission::VALIDATING_POLICY,
                "validatingadmissionpolicies",
            ),
            (
                crate::admission::VALIDATING_BINDING,
                "validatingadmissionpolicybindings",
            ),
            (
                crate::admission::MUTATING_POLICY,
                "mutatingadmissionpolicies",
            ),
            (
                crate::admission::MUTATING_BINDING,
                "mutatingadmissionpolicybindings",
            ),
        ] {
            assert_eq!(r.get(idx).unwrap().plural, plural);
        }
        assert_eq!(r.get(CRD).unwrap().plural, "customresourcedefinitions");
        assert!(r.find("postgresql.cnpg.io", "v1", "clusters").is_some());
    }

    #[test]
    fn version_priority_orders_like_kubernetes() {
        let mut v = vec!["v1alpha1", "v1", "v2beta1", "v1beta2", "v2", "foo"];
        v.sort_by_key(|b| std::cmp::Reverse(version_priority(b)));
        assert_eq!(v, ["v2", "v1", "v2beta1", "v1beta2", "v1alpha1", "foo"]);
    }
}
