//! The parts of the CloudNativePG `Cluster` resource (`postgresql.cnpg.io/v1`)
//! that auto-resize reads and writes. Every struct keeps the fields it does not
//! know in `extra`, so an object read and written back loses nothing.

use super::resize::ResizeConfiguration;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use std::collections::BTreeMap;

pub const API_GROUP: &str = "postgresql.cnpg.io";
pub const API_VERSION: &str = "postgresql.cnpg.io/v1";
pub const KIND: &str = "Cluster";

/// Unknown fields, preserved on round trips.
pub type Extra = Map<String, Value>;

#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Cluster {
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub api_version: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub kind: String,
    #[serde(default)]
    pub metadata: ObjectMeta,
    #[serde(default)]
    pub spec: ClusterSpec,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<ClusterStatus>,
}

#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ClusterSpec {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub instances: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub storage: Option<StorageConfiguration>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub wal_storage: Option<StorageConfiguration>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tablespaces: Option<Vec<TablespaceConfiguration>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub backup: Option<BackupConfiguration>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub plugins: Option<Vec<PluginConfiguration>>,
    #[serde(flatten)]
    pub extra: Extra,
}

#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct StorageConfiguration {
    /// The size CNPG creates the PVC with (a quantity string).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub size: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub storage_class: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resize: Option<ResizeConfiguration>,
    #[serde(flatten)]
    pub extra: Extra,
}

#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TablespaceConfiguration {
    #[serde(default)]
    pub name: String,
    #[serde(default)]
    pub storage: StorageConfiguration,
    #[serde(flatten)]
    pub extra: Extra,
}

#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct BackupConfiguration {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub barman_object_store: Option<Value>,
    #[serde(flatten)]
    pub extra: Extra,
}

#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PluginConfiguration {
    #[serde(default)]
    pub name: String,
    #[serde(
        rename = "isWALArchiver",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub is_wal_archiver: Option<bool>,
    #[serde(flatten)]
    pub extra: Extra,
}

#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ClusterStatus {
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub auto_resize_events: Vec<AutoResizeEvent>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub disk_status: Option<ClusterDiskStatus>,
    #[serde(flatten)]
    pub extra: Extra,
}

/// Which kind of volume a PVC backs.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum VolumeType {
    Data,
    Wal,
    Tablespace,
}

impl VolumeType {
    pub fn as_str(self) -> &'static str {
        match self {
            VolumeType::Data => "data",
            VolumeType::Wal => "wal",
            VolumeType::Tablespace => "tablespace",
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ResizeResult {
    Success,
    Failure,
}

/// One entry of `status.autoResizeEvents`: the audit log and the budget source.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AutoResizeEvent {
    /// RFC 3339. Kept as text: an entry we cannot read must still count
    /// toward the budget rather than make the whole status unreadable.
    pub timestamp: String,
    pub instance_name: String,
    pub pvc_name: String,
    pub volume_type: VolumeType,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tablespace: Option<String>,
    pub previous_size: String,
    pub new_size: String,
    pub result: ResizeResult,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ClusterDiskStatus {
    #[serde(default)]
    pub instances: BTreeMap<String, InstanceDiskStatus>,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct InstanceDiskStatus {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub data_volume: Option<VolumeDiskStatus>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub wal_volume: Option<VolumeDiskStatus>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub tablespaces: BTreeMap<String, VolumeDiskStatus>,
    #[serde(rename = "walHealth", default, skip_serializing_if = "Option::is_none")]
    pub wal_health: Option<WalHealthStatus>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_updated: Option<String>,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct VolumeDiskStatus {
    pub total_bytes: u64,
    pub used_bytes: u64,
    pub available_bytes: u64,
    pub percent_used: u64,
    #[serde(default)]
    pub inodes_total: u64,
    #[serde(default)]
    pub inodes_used: u64,
    #[serde(default)]
    pub inodes_free: u64,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct WalHealthStatus {
    pub archive_healthy: bool,
    #[serde(rename = "pendingWALFiles")]
    pub pending_wal_files: u64,
    pub inactive_slot_count: u64,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub inactive_slots: Vec<SlotStatus>,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SlotStatus {
    pub slot_name: String,
    pub retention_bytes: u64,
}

impl Cluster {
    pub fn name(&self) -> &str {
        self.metadata.name.as_deref().unwrap_or("")
    }

    pub fn events(&self) -> &[AutoResizeEvent] {
        self.status
            .as_ref()
            .map(|s| s.auto_resize_events.as_slice())
            .unwrap_or(&[])
    }

    /// CNPG archives WAL through barman or a plugin that declares itself the archiver.
    pub fn has_wal_archiving(&self) -> bool {
        let barman = self
            .spec
            .backup
            .as_ref()
            .is_some_and(|b| b.barman_object_store.as_ref().is_some_and(|v| !v.is_null()));
        let plugin = self
            .spec
            .plugins
            .iter()
            .flatten()
            .any(|p| p.is_wal_archiver == Some(true));
        barman || plugin
    }

    /// The storage configuration (and its manifest path) for a volume type.
    pub fn storage_for(
        &self,
        volume_type: VolumeType,
        tablespace: Option<&str>,
    ) -> Option<(&StorageConfiguration, super::FieldPath)> {
        let spec = super::FieldPath::new("spec");
        match volume_type {
            VolumeType::Data => self
                .spec
                .storage
                .as_ref()
                .map(|s| (s, spec.child("storage"))),
            VolumeType::Wal => self
                .spec
                .wal_storage
                .as_ref()
                .map(|s| (s, spec.child("walStorage"))),
            VolumeType::Tablespace => {
                let name = tablespace?;
                self.spec
                    .tablespaces
                    .iter()
                    .flatten()
                    .enumerate()
                    .find(|(_, t)| t.name == name)
                    .map(|(i, t)| {
                        (
                            &t.storage,
                            spec.child("tablespaces").index(i).child("storage"),
                        )
                    })
            }
        }
    }
}

/// Lets `kube::Api<Cluster>` read, watch and patch the CRD with these types.
impl kube::Resource for Cluster {
    type DynamicType = ();
    type Scope = k8s_openapi::NamespaceResourceScope;

    fn kind(_: &()) -> std::borrow::Cow<'_, str> {
        KIND.into()
    }
    fn group(_: &()) -> std::borrow::Cow<'_, str> {
        API_GROUP.into()
    }
    fn version(_: &()) -> std::borrow::Cow<'_, str> {
        "v1".into()
    }
    fn plural(_: &()) -> std::borrow::Cow<'_, str> {
        "clusters".into()
    }
    fn meta(&self) -> &ObjectMeta {
        &self.metadata
    }
    fn meta_mut(&mut self) -> &mut ObjectMeta {
        &mut self.metadata
    }
}
