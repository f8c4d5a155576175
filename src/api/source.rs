//! Where a cluster's configuration comes from
//! (docs/reference/configuration.md#where-the-configuration-lives): an
//! `AutoResizePolicy` targeting it when there is one, else the Cluster's own
//! `resize` blocks (the CloudNativePG fork). Sizes, the WAL volume, the
//! tablespaces, archiving and the HA slot prefix always come from the Cluster.

use super::cluster::{AutoResizeEvent, Cluster, VolumeType};
use super::field::FieldPath;
use super::lenient::{self, Lenient};
use super::policy::{AutoResizePolicy, PolicyVolume};
use super::resize::ResizeConfiguration;

/// A cluster's configuration source.
#[derive(Clone, Copy)]
pub struct Source<'a> {
    pub cluster: &'a Cluster,
    pub policy: Option<&'a AutoResizePolicy>,
}

/// One kind of volume with its `resize` block, where it is written, and the
/// size CloudNativePG creates its PVCs with.
pub struct VolumeConfig<'a> {
    pub volume_type: VolumeType,
    pub tablespace: Option<&'a str>,
    pub resize: &'a Lenient<ResizeConfiguration>,
    /// Path of the `resize` block in the object that carries it.
    pub path: FieldPath,
    /// The Cluster's `size` for this kind of volume, as written.
    pub size: Option<&'a str>,
}

impl<'a> Source<'a> {
    pub fn fork(cluster: &'a Cluster) -> Self {
        Source {
            cluster,
            policy: None,
        }
    }

    /// Every kind of volume the Cluster has that carries a `resize` block in
    /// this source: data, WAL, then tablespaces in the Cluster's order.
    pub fn volumes(&self) -> Vec<VolumeConfig<'a>> {
        let spec = &self.cluster.spec;
        let mut out = Vec::new();
        let policy = self.policy.map(|p| &p.spec);
        let from_policy = |v: Option<&'a PolicyVolume>, field: &str| {
            v.and_then(|v| v.resize.as_ref())
                .map(|r| (r, FieldPath::new("spec").child(field).child("resize")))
        };
        if let Some(storage) = &spec.storage {
            let block = match policy {
                Some(p) => from_policy(p.storage.as_ref(), "storage"),
                None => storage
                    .resize
                    .as_ref()
                    .map(|r| (r, FieldPath::new("spec.storage.resize"))),
            };
            if let Some((resize, path)) = block {
                out.push(VolumeConfig {
                    volume_type: VolumeType::Data,
                    tablespace: None,
                    resize,
                    path,
                    size: storage.size.as_deref(),
                });
            }
        }
        if let Some(wal) = &spec.wal_storage {
            let block = match policy {
                Some(p) => from_policy(p.wal_storage.as_ref(), "walStorage"),
                None => wal
                    .resize
                    .as_ref()
                    .map(|r| (r, FieldPath::new("spec.walStorage.resize"))),
            };
            if let Some((resize, path)) = block {
                out.push(VolumeConfig {
                    volume_type: VolumeType::Wal,
                    tablespace: None,
                    resize,
                    path,
                    size: wal.size.as_deref(),
                });
            }
        }
        for (i, tablespace) in spec.tablespaces.iter().flatten().enumerate() {
            let block = match policy {
                Some(p) => p
                    .tablespaces
                    .iter()
                    .enumerate()
                    .find(|(_, t)| t.name == tablespace.name)
                    .and_then(|(j, t)| {
                        t.resize.as_ref().map(|r| {
                            (
                                r,
                                FieldPath::new("spec.tablespaces").index(j).child("resize"),
                            )
                        })
                    }),
                None => tablespace.storage.resize.as_ref().map(|r| {
                    (
                        r,
                        FieldPath::new("spec.tablespaces")
                            .index(i)
                            .child("storage")
                            .child("resize"),
                    )
                }),
            };
            if let Some((resize, path)) = block {
                out.push(VolumeConfig {
                    volume_type: VolumeType::Tablespace,
                    tablespace: Some(tablespace.name.as_str()),
                    resize,
                    path,
                    size: tablespace.storage.size.as_deref(),
                });
            }
        }
        out
    }

    /// The owner's `status.autoResizeEvents` as stored, readable or not.
    pub fn status_events(&self) -> &'a [Lenient<AutoResizeEvent>] {
        match self.policy {
            Some(p) => p.status_events(),
            None => self.cluster.status_events(),
        }
    }

    /// The readable entries of the owner's `status.autoResizeEvents`.
    pub fn events(&self) -> Vec<AutoResizeEvent> {
        lenient::split(self.status_events()).0
    }

    /// WAL lives on the data volume (no `spec.walStorage`).
    pub fn single_volume(&self) -> bool {
        self.cluster.spec.wal_storage.is_none()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn cluster(spec: serde_json::Value) -> Cluster {
        serde_json::from_value(
            json!({"apiVersion": "postgresql.cnpg.io/v1", "kind": "Cluster",
            "metadata": {"name": "pg"}, "spec": spec}),
        )
        .unwrap()
    }

    #[test]
    fn a_policy_replaces_the_cluster_blocks_but_only_for_volumes_the_cluster_has() {
        let c = cluster(json!({
            "storage": {"size": "10Gi", "resize": {"enabled": true}},
            "tablespaces": [{"name": "events", "storage": {"size": "1Gi"}}],
        }));
        let fork: Vec<_> = Source::fork(&c)
            .volumes()
            .iter()
            .map(|v| v.path.to_string())
            .collect();
        assert_eq!(fork, ["spec.storage.resize"]);

        let policy: AutoResizePolicy = serde_json::from_value(json!({
            "apiVersion": "autoresize.cnpg.io/v1alpha1", "kind": "AutoResizePolicy",
            "metadata": {"name": "p"},
            "spec": {"cluster": "pg",
                "walStorage": {"resize": {"enabled": true}},
                "tablespaces": [{"name": "other", "resize": {"enabled": true}},
                                {"name": "events", "resize": {"enabled": true}}]},
        }))
        .unwrap();
        let source = Source {
            cluster: &c,
            policy: Some(&policy),
        };
        let volumes: Vec<_> = source
            .volumes()
            .iter()
            .map(|v| (v.path.to_string(), v.size.map(str::to_string)))
            .collect();
        // No data block in the policy (the Cluster's is ignored), no WAL volume
        // in the Cluster, and only the tablespace the Cluster has.
        assert_eq!(
            volumes,
            [(
                "spec.tablespaces[1].resize".to_string(),
                Some("1Gi".to_string())
            )]
        );
    }
}
