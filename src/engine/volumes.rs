//! Which volume a PVC is, from CNPG's labels (names as a fallback).

use crate::api::cluster::VolumeType;
use k8s_openapi::api::core::v1::PersistentVolumeClaim;

pub const LABEL_CLUSTER: &str = "cnpg.io/cluster";
pub const LABEL_INSTANCE: &str = "cnpg.io/instanceName";
pub const LABEL_PVC_ROLE: &str = "cnpg.io/pvcRole";
pub const LABEL_TABLESPACE: &str = "cnpg.io/tablespaceName";
/// CNPG labels instance pods `cnpg.io/podRole=instance` (Job pods differ).
pub const LABEL_POD_ROLE: &str = "cnpg.io/podRole";

/// One volume of one instance. Orders by instance, then data, WAL, tablespaces.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct VolumeRef {
    pub instance: String,
    pub volume_type: VolumeType,
    pub tablespace: Option<String>,
    pub pvc: String,
}

/// Classifies a PVC of `cluster`. CNPG labels every PVC with its role and
/// instance; PVCs without labels fall back to CNPG's naming (`<pod>`,
/// `<pod>-wal`, `<pod>-tbs-<name>`). A PVC labelled for another cluster, or
/// with an unknown role, is not ours.
pub fn classify_pvc(pvc: &PersistentVolumeClaim, cluster: &str) -> Option<VolumeRef> {
    let name = pvc.metadata.name.clone()?;
    let labels = pvc.metadata.labels.as_ref();
    let label = |key: &str| labels.and_then(|l| l.get(key)).map(String::as_str);
    if label(LABEL_CLUSTER).is_some_and(|c| c != cluster) {
        return None;
    }
    let (volume_type, tablespace, derived_instance) = match label(LABEL_PVC_ROLE) {
        Some("PG_DATA") => (VolumeType::Data, None, name.clone()),
        Some("PG_WAL") => (
            VolumeType::Wal,
            None,
            name.strip_suffix("-wal").unwrap_or(&name).to_string(),
        ),
        Some("PG_TABLESPACE") => {
            let from_name = name.rsplit_once("-tbs-");
            let tablespace = label(LABEL_TABLESPACE)
                .map(str::to_string)
                .or_else(|| from_name.map(|(_, t)| t.to_string()))?;
            let instance = from_name
                .map(|(i, _)| i.to_string())
                .unwrap_or_else(|| name.clone());
            (VolumeType::Tablespace, Some(tablespace), instance)
        }
        Some(_) => return None,
        None => {
            if let Some(instance) = name.strip_suffix("-wal") {
                (VolumeType::Wal, None, instance.to_string())
            } else if let Some((instance, tablespace)) = name.rsplit_once("-tbs-") {
                (
                    VolumeType::Tablespace,
                    Some(tablespace.to_string()),
                    instance.to_string(),
                )
            } else {
                (VolumeType::Data, None, name.clone())
            }
        }
    };
    let instance = label(LABEL_INSTANCE)
        .map(str::to_string)
        .unwrap_or(derived_instance);
    Some(VolumeRef {
        instance,
        volume_type,
        tablespace,
        pvc: name,
    })
}
