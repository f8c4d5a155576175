//! The parts of the CloudNativePG `Cluster` resource (`postgresql.cnpg.io/v1`)
//! that auto-resize reads and writes. Every struct keeps the fields it does not
//! know in `extra`, so an object read and written back loses nothing, and what
//! other programs write (status entries, the `resize` blocks) is read
//! leniently ([`Lenient`]): one bad entry never makes the Cluster unreadable.

use super::lenient::{self, Lenient};
use super::resize::ResizeConfiguration;
use jiff::Timestamp;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use schemars::JsonSchema;
use serde::{Deserialize, Deserializer, Serialize};
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
    pub storage: Option<StorageConfiguration>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub wal_storage: Option<StorageConfiguration>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tablespaces: Option<Vec<TablespaceConfiguration>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub backup: Option<BackupConfiguration>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub plugins: Option<Vec<PluginConfiguration>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub replication_slots: Option<Lenient<ReplicationSlotsConfiguration>>,
    #[serde(flatten)]
    pub extra: Extra,
}

/// CNPG's replication slot settings: which slots are CNPG's own (rule 9).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ReplicationSlotsConfiguration {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub high_availability: Option<HighAvailabilitySlots>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub synchronize_replicas: Option<SynchronizeReplicas>,
    #[serde(flatten)]
    pub extra: Extra,
}

/// `spec.replicationSlots.synchronizeReplicas`: CNPG copies the primary's
/// user slots to every standby (on when absent, as CNPG defaults it).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SynchronizeReplicas {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub enabled: Option<bool>,
    /// Regular expressions (Go's RE2 syntax) of slot names not copied.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub exclude_patterns: Vec<String>,
    #[serde(flatten)]
    pub extra: Extra,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct HighAvailabilitySlots {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub slot_prefix: Option<String>,
    #[serde(flatten)]
    pub extra: Extra,
}

/// CNPG's default prefix of its HA replication slots (`_cnpg_<instance>`).
pub const DEFAULT_HA_SLOT_PREFIX: &str = "_cnpg_";

#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct StorageConfiguration {
    /// The size CNPG creates the PVC with (a quantity string).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub size: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub storage_class: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resize: Option<Lenient<ResizeConfiguration>>,
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
    #[serde(
        default,
        skip_serializing_if = "Vec::is_empty",
        deserialize_with = "lenient_list"
    )]
    pub auto_resize_events: Vec<Lenient<AutoResizeEvent>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub disk_status: Option<Lenient<ClusterDiskStatus>>,
    #[serde(flatten)]
    pub extra: Extra,
}

/// A list whose elements are read one by one; a value that is not a list at
/// all becomes one unreadable element (so it is reported and replaced).
pub fn lenient_list<'de, D, T>(deserializer: D) -> Result<Vec<Lenient<T>>, D::Error>
where
    D: Deserializer<'de>,
    T: serde::de::DeserializeOwned,
{
    Ok(match Value::deserialize(deserializer)? {
        Value::Array(items) => items.into_iter().map(Lenient::read).collect(),
        Value::Null => Vec::new(),
        other => vec![Lenient::Unreadable {
            value: other,
            error: "expected a list".to_string(),
        }],
    })
}

/// Which kind of volume a PVC backs.
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, JsonSchema,
)]
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

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum ResizeResult {
    Success,
    Failure,
}

/// One resize record: on its PVC (annotation) and mirrored in the owner's
/// `status.autoResizeEvents` — the audit log and the budget source. An entry
/// without a readable timestamp or with an unknown `result` does not read
/// and counts toward no budget.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct AutoResizeEvent {
    /// When the resize was decided (RFC 3339, whole seconds).
    #[serde(with = "rfc3339_seconds")]
    #[schemars(with = "String", extend("format" = "date-time"))]
    pub timestamp: Timestamp,
    #[serde(default)]
    pub instance_name: String,
    pub pvc_name: String,
    pub volume_type: VolumeType,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tablespace: Option<String>,
    pub previous_size: String,
    pub new_size: String,
    pub result: ResizeResult,
    /// Which trigger fired (`usage`, `available`, `inodes`, `forecast`,
    /// `parity`). Kept as text so a future trigger name still reads.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub trigger: Option<String>,
    /// The filesystem total the decision saw: the resize is in flight until
    /// the filesystem reports more (filesystems are smaller than devices).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub filesystem_bytes: Option<u64>,
}

/// Kubernetes timestamps: RFC 3339 in, whole seconds in UTC out.
pub mod rfc3339_seconds {
    use jiff::Timestamp;
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn format(t: &Timestamp) -> String {
        t.strftime("%Y-%m-%dT%H:%M:%SZ").to_string()
    }

    pub fn serialize<S: Serializer>(t: &Timestamp, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&format(t))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Timestamp, D::Error> {
        let text = String::deserialize(d)?;
        text.parse::<Timestamp>()
            .map_err(|e| serde::de::Error::custom(format!("timestamp {text:?}: {e}")))
    }
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ClusterDiskStatus {
    #[serde(default)]
    pub instances: BTreeMap<String, InstanceDiskStatus>,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
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

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
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
    /// The instance's growth forecast (bytes per second), when it has one.
    /// Informational: the fork's CRD prunes it; the policy's keeps it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub growth_bytes_per_second: Option<f64>,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct WalHealthStatus {
    pub archive_healthy: bool,
    #[serde(rename = "pendingWALFiles")]
    pub pending_wal_files: u64,
    pub inactive_slot_count: u64,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub inactive_slots: Vec<SlotStatus>,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct SlotStatus {
    pub slot_name: String,
    pub retention_bytes: u64,
}

impl Cluster {
    pub fn name(&self) -> &str {
        self.metadata.name.as_deref().unwrap_or("")
    }

    /// `status.autoResizeEvents` as stored, readable or not.
    pub fn status_events(&self) -> &[Lenient<AutoResizeEvent>] {
        self.status
            .as_ref()
            .map(|s| s.auto_resize_events.as_slice())
            .unwrap_or(&[])
    }

    /// The readable entries of `status.autoResizeEvents`.
    pub fn events(&self) -> Vec<AutoResizeEvent> {
        lenient::split(self.status_events()).0
    }

    /// `status.diskStatus`, when readable.
    pub fn disk_status(&self) -> Option<&ClusterDiskStatus> {
        self.status.as_ref()?.disk_status.as_ref()?.ok()
    }

    /// The prefix of CloudNativePG's HA replication slots
    /// (`spec.replicationSlots.highAvailability.slotPrefix`); empty or
    /// absent means CNPG's default, as CNPG reads it.
    pub fn ha_slot_prefix(&self) -> String {
        self.replication_slots()
            .and_then(|r| r.high_availability.as_ref())
            .and_then(|h| h.slot_prefix.clone())
            .filter(|p| !p.is_empty())
            .unwrap_or_else(|| DEFAULT_HA_SLOT_PREFIX.to_string())
    }

    /// Whether CNPG copies the primary's user slots to standbys, and the
    /// patterns of slots it leaves out (`synchronizeReplicas`, on when absent).
    pub fn synchronized_user_slots(&self) -> (bool, Vec<String>) {
        match self
            .replication_slots()
            .and_then(|r| r.synchronize_replicas.as_ref())
        {
            Some(s) => (s.enabled.unwrap_or(true), s.exclude_patterns.clone()),
            None => (true, Vec::new()),
        }
    }

    fn replication_slots(&self) -> Option<&ReplicationSlotsConfiguration> {
        self.spec.replication_slots.as_ref().and_then(Lenient::ok)
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
