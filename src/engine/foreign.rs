//! Resizes made by someone else (docs/reference/decision.md#beside-another-resizer):
//! the CloudNativePG fork's operator resizes PVCs on the same `resize` blocks,
//! with an unconditional merge patch. A PVC whose request another field
//! manager raised above the size CloudNativePG creates it with, without a
//! record of ours, was resized by another resizer. Its PVC says so in
//! `metadata.managedFields`: the manager that last set the request owns
//! `spec.resources.requests.storage`.

use super::journal::Journal;
use super::volumes::classify_pvc;
use crate::api::resize::parse_non_negative_bytes;
use crate::api::source::Source;
use k8s_openapi::api::core::v1::PersistentVolumeClaim;

/// The field manager of every write of ours to a PVC.
pub const FIELD_MANAGER: &str = "cnpg-autoresize";

/// A PVC request another resizer raised.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ForeignResize {
    pub pvc: String,
    /// The field manager that owns the request now.
    pub manager: String,
    /// The request it set, in bytes.
    pub request: u64,
    /// The size CloudNativePG creates this kind of PVC with.
    pub created_at: u64,
}

/// The PVCs of governed volumes whose request another field manager raised
/// without a record of ours. A PVC without managedFields tells nothing.
pub fn foreign_resizes(
    source: &Source<'_>,
    pvcs: &[PersistentVolumeClaim],
    journal: &Journal,
) -> Vec<ForeignResize> {
    let cluster = source.cluster.name();
    let kinds = source.volumes();
    pvcs.iter()
        .filter_map(|pvc| {
            let volume = classify_pvc(pvc, cluster)?;
            let kind = kinds.iter().find(|k| {
                k.volume_type == volume.volume_type && k.tablespace == volume.tablespace.as_deref()
            })?;
            if !kind.resize.is_enabled() {
                return None;
            }
            let created_at = parse_non_negative_bytes(kind.size?).ok()?;
            let request = super::requested_bytes(pvc).ok()?;
            if request <= created_at {
                return None;
            }
            let manager = request_owner(pvc)?;
            if manager == FIELD_MANAGER {
                return None;
            }
            let ours = journal
                .of_pvc(&volume.pvc)
                .any(|e| parse_non_negative_bytes(&e.new_size).ok() == Some(request));
            (!ours).then(|| ForeignResize {
                pvc: volume.pvc,
                manager: manager.to_string(),
                request,
                created_at,
            })
        })
        .collect()
}

/// The field manager owning `spec.resources.requests.storage`.
pub fn request_owner(pvc: &PersistentVolumeClaim) -> Option<&str> {
    pvc.metadata
        .managed_fields
        .as_ref()?
        .iter()
        .filter(|e| e.subresource.as_deref().unwrap_or("").is_empty())
        .find(|e| {
            e.fields_v1.as_ref().is_some_and(|f| {
                f.0.pointer("/f:spec/f:resources/f:requests/f:storage")
                    .is_some()
            })
        })
        .and_then(|e| e.manager.as_deref())
}
