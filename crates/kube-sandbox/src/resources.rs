//! The fixed set of resources the sandbox serves (as if their CRDs were installed).

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

/// Static description of one served resource.
#[derive(Debug)]
pub struct ResourceDef {
    pub group: &'static str,
    pub version: &'static str,
    pub plural: &'static str,
    pub singular: &'static str,
    pub kind: &'static str,
    pub namespaced: bool,
    /// Has a `/status` subresource (status writes are separated from the main resource).
    pub status: bool,
    pub short_names: &'static [&'static str],
    /// Built-in type: strategic merge patch is accepted.
    pub strategic: bool,
    pub generation: Generation,
}

impl ResourceDef {
    pub fn api_version(&self) -> String {
        if self.group.is_empty() {
            self.version.to_string()
        } else {
            format!("{}/{}", self.group, self.version)
        }
    }

    /// `plural.group` (or `plural` for the core group), as used in real error messages.
    pub fn qualified(&self) -> String {
        if self.group.is_empty() {
            self.plural.to_string()
        } else {
            format!("{}.{}", self.plural, self.group)
        }
    }

    pub fn group_version(&self) -> (&'static str, &'static str) {
        (self.group, self.version)
    }
}

pub const RESOURCES: &[ResourceDef] = &[
    ResourceDef {
        group: "",
        version: "v1",
        plural: "persistentvolumeclaims",
        singular: "persistentvolumeclaim",
        kind: "PersistentVolumeClaim",
        namespaced: true,
        status: true,
        short_names: &["pvc"],
        strategic: true,
        generation: Generation::OnSpecChange,
    },
    ResourceDef {
        group: "",
        version: "v1",
        plural: "pods",
        singular: "pod",
        kind: "Pod",
        namespaced: true,
        status: true,
        short_names: &["po"],
        strategic: true,
        generation: Generation::OnSpecChange,
    },
    ResourceDef {
        group: "",
        version: "v1",
        plural: "events",
        singular: "event",
        kind: "Event",
        namespaced: true,
        status: false,
        short_names: &["ev"],
        strategic: true,
        generation: Generation::Fixed,
    },
    ResourceDef {
        group: "events.k8s.io",
        version: "v1",
        plural: "events",
        singular: "event",
        kind: "Event",
        namespaced: true,
        status: false,
        short_names: &["ev"],
        strategic: true,
        generation: Generation::Fixed,
    },
    ResourceDef {
        group: "coordination.k8s.io",
        version: "v1",
        plural: "leases",
        singular: "lease",
        kind: "Lease",
        namespaced: true,
        status: false,
        short_names: &[],
        strategic: true,
        generation: Generation::Fixed,
    },
    ResourceDef {
        group: "storage.k8s.io",
        version: "v1",
        plural: "storageclasses",
        singular: "storageclass",
        kind: "StorageClass",
        namespaced: false,
        status: false,
        short_names: &["sc"],
        strategic: true,
        generation: Generation::Fixed,
    },
    ResourceDef {
        group: "postgresql.cnpg.io",
        version: "v1",
        plural: "clusters",
        singular: "cluster",
        kind: "Cluster",
        namespaced: true,
        status: true,
        short_names: &[],
        strategic: false,
        generation: Generation::OnNonMetadataChange,
    },
];

/// Index of the resource with this group, version and plural.
pub fn find(group: &str, version: &str, plural: &str) -> Option<usize> {
    RESOURCES
        .iter()
        .position(|r| r.group == group && r.version == version && r.plural == plural)
}

/// Registry index of PersistentVolumeClaims (checked by a unit test).
pub const PVC: usize = 0;
/// Registry index of StorageClasses (checked by a unit test).
pub const STORAGE_CLASS: usize = 5;

/// Distinct API groups (non-core), in registry order.
pub fn groups() -> Vec<&'static str> {
    let mut out: Vec<&'static str> = Vec::new();
    for r in RESOURCES {
        if !r.group.is_empty() && !out.contains(&r.group) {
            out.push(r.group);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn well_known_indices() {
        assert_eq!(RESOURCES[PVC].plural, "persistentvolumeclaims");
        assert_eq!(RESOURCES[STORAGE_CLASS].plural, "storageclasses");
    }
}
