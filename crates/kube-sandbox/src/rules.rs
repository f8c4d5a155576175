//! Write rules of the real API server: system metadata, status separation,
//! generation, and the PersistentVolumeClaim validation + resize admission.

use k8s_quantity::Quantity;
use serde_json::{json, Value};

use crate::error::{ApiError, FieldError};
use crate::resources::{Generation, ResourceDef, PVC, STORAGE_CLASS};
use crate::store::Txn;

/// Behaviour switches that differ between Kubernetes versions / feature gates.
#[derive(Debug, Clone, Copy)]
pub struct RuleOptions {
    /// `RecoverVolumeExpansionFailure` (GA in 1.34): allow lowering a request while it stays
    /// above `status.capacity`.
    pub recover_volume_expansion_failure: bool,
    /// The CEL compatibility version CRD rules are compiled at (`crate::celcheck::decls`).
    pub cel_compatibility_version: u32,
}

/// Values `status.allocatedResourceStatuses` accepts (`resizeStatusSet` of
/// pkg/apis/core/validation/validation.go), in `sets.List` (sorted) order.
const RESIZE_STATUSES: [&str; 5] = [
    "ControllerResizeInProgress",
    "ControllerResizeInfeasible",
    "NodeResizeInProgress",
    "NodeResizeInfeasible",
    "NodeResizePending",
];

fn is_dns_subdomain(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 253
        && name.split('.').all(|part| {
            !part.is_empty()
                && part
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
                && !part.starts_with('-')
                && !part.ends_with('-')
        })
}

pub fn validate_name(res: &ResourceDef, name: &str) -> Result<(), ApiError> {
    if name.is_empty() {
        return Err(ApiError::invalid(
            res,
            name,
            &[FieldError::required(
                "metadata.name",
                "name or generateName is required",
            )],
        ));
    }
    if !is_dns_subdomain(name) {
        return Err(ApiError::invalid(res, name, &[FieldError::invalid(
            "metadata.name",
            &format!("{name:?}: a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character (e.g. 'example.com', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*')"),
        )]));
    }
    Ok(())
}

fn storage_request(obj: &Value) -> Option<&str> {
    obj.pointer("/spec/resources/requests/storage")
        .and_then(Value::as_str)
}

fn parse_storage(
    res: &ResourceDef,
    name: &str,
    field: &str,
    q: &str,
) -> Result<Quantity, ApiError> {
    parse_quantity(q).ok_or_else(|| {
        let message = format!("quantities must match the regular expression '^([+-]?[0-9.]+)([eEinumkKMGTP]*[-+]?[0-9]*)$': {q:?}");
        ApiError::invalid(res, name, &[FieldError::invalid(field, &message)])
    })
}

/// A quantity as the API server decodes one from JSON (surrounding white space trimmed).
fn parse_quantity(q: &str) -> Option<Quantity> {
    Quantity::parse(q.trim()).ok()
}

/// `metadata` as a map, created if missing (callers have checked `obj` is an object).
fn metadata_mut(obj: &mut Value) -> Option<&mut serde_json::Map<String, Value>> {
    let map = obj.as_object_mut()?;
    let meta = map.entry("metadata").or_insert_with(|| json!({}));
    if !meta.is_object() {
        *meta = json!({});
    }
    meta.as_object_mut()
}

fn require_object_spec(res: &ResourceDef, name: &str, obj: &Value) -> Result<(), ApiError> {
    match obj.get("spec") {
        Some(Value::Object(_)) => Ok(()),
        _ => Err(ApiError::invalid(
            res,
            name,
            &[FieldError::required("spec", "")],
        )),
    }
}

/// Resource-specific defaulting and validation on create (status of status-subresource types is reset).
pub fn prepare_create(
    res_idx: usize,
    res: &ResourceDef,
    version: &str,
    obj: &mut Value,
    txn: &Txn<'_>,
) -> Result<(), ApiError> {
    let name = obj
        .pointer("/metadata/name")
        .and_then(Value::as_str)
        .unwrap_or("")
        .to_string();
    if res.has_status(version) {
        // The real strategies drop client-set status on create.
        if let Some(m) = obj.as_object_mut() {
            m.remove("status");
        }
        if matches!(res.plural.as_str(), "persistentvolumeclaims" | "pods") && res.group.is_empty()
        {
            obj["status"] = json!({"phase": "Pending"});
        }
    }
    if let Some(m) = metadata_mut(obj) {
        m.insert("generation".into(), json!(1));
    }
    if res_idx == PVC {
        require_object_spec(res, &name, obj)?;
        let mut errs = Vec::new();
        if obj["spec"]["volumeMode"].is_null() {
            obj["spec"]["volumeMode"] = json!("Filesystem");
        }
        if obj["spec"]["storageClassName"].is_null() {
            // DefaultStorageClass admission.
            let default = txn.list(STORAGE_CLASS, None).into_iter().find(|sc| {
                sc.pointer("/metadata/annotations/storageclass.kubernetes.io~1is-default-class")
                    .and_then(Value::as_str)
                    == Some("true")
            });
            if let Some(name) = default.as_ref().and_then(|sc| sc.pointer("/metadata/name")) {
                obj["spec"]["storageClassName"] = name.clone();
            }
        }
        if obj["spec"]["accessModes"]
            .as_array()
            .is_none_or(|a| a.is_empty())
        {
            errs.push(FieldError::required(
                "spec.accessModes",
                "at least 1 access mode is required",
            ));
        }
        match storage_request(obj) {
            None => errs.push(FieldError::required("spec.resources[storage]", "")),
            Some(q) => {
                parse_storage(res, &name, "spec.resources.requests[storage]", q)?;
            }
        }
        if !errs.is_empty() {
            return Err(ApiError::invalid(res, &name, &errs));
        }
    }
    Ok(())
}

/// Copies fields the server owns from the stored object onto an incoming one.
pub fn carry_system_metadata(old: &Value, new: &mut Value) {
    let Some(meta) = metadata_mut(new) else {
        return;
    };
    for key in [
        "uid",
        "creationTimestamp",
        "namespace",
        "name",
        "generation",
        "deletionTimestamp",
    ] {
        match old.pointer(&format!("/metadata/{key}")) {
            Some(v) => {
                meta.insert(key.into(), v.clone());
            }
            None => {
                meta.remove(key);
            }
        }
    }
}

fn without(obj: &Value, keys: &[&str]) -> Value {
    let mut o = obj.clone();
    if let Some(m) = o.as_object_mut() {
        for k in keys {
            m.remove(*k);
        }
    }
    o
}

/// Prepares a write to the main resource: keeps the old status, bumps generation, validates.
pub fn prepare_update(
    res_idx: usize,
    res: &ResourceDef,
    version: &str,
    old: &Value,
    new: &mut Value,
    txn: &Txn<'_>,
    opts: RuleOptions,
) -> Result<(), ApiError> {
    carry_system_metadata(old, new);
    if res.has_status(version) {
        match old.get("status") {
            Some(s) => new["status"] = s.clone(),
            None => {
                if let Some(m) = new.as_object_mut() {
                    m.remove("status");
                }
            }
        }
    }
    if res_idx == PVC {
        validate_pvc_update(res, old, new, txn, opts)?;
    }
    let changed = match res.generation {
        Generation::Fixed => false,
        Generation::OnSpecChange => old.get("spec") != new.get("spec"),
        Generation::OnNonMetadataChange => {
            without(old, &["metadata", "status"]) != without(new, &["metadata", "status"])
        }
    };
    if changed {
        let generation = old
            .pointer("/metadata/generation")
            .and_then(Value::as_i64)
            .unwrap_or(1);
        if let Some(m) = metadata_mut(new) {
            m.insert("generation".into(), json!(generation + 1));
        }
    }
    Ok(())
}

/// A write to `/status`: only `status` changes; PVC status values are validated.
pub fn prepare_status_update(
    res_idx: usize,
    res: &ResourceDef,
    old: &Value,
    new: &mut Value,
) -> Result<(), ApiError> {
    if res_idx == PVC {
        validate_pvc_status(res, old, new)?;
    }
    let status = new.get("status").cloned();
    let mut out = old.clone();
    match status {
        Some(s) => out["status"] = s,
        None => {
            if let Some(m) = out.as_object_mut() {
                m.remove("status");
            }
        }
    }
    *new = out;
    Ok(())
}

/// The `allocatedResourceStatuses` part of `ValidatePersistentVolumeClaimStatusUpdate`: keys are
/// resource names (native ones must be `storage`), values one of [`RESIZE_STATUSES`]. Upstream
/// reports a bad value under the path `status.allocatedResourceStatus` with the *key* as value.
fn validate_pvc_status(res: &ResourceDef, old: &Value, new: &Value) -> Result<(), ApiError> {
    let Some(statuses) = new
        .pointer("/status/allocatedResourceStatuses")
        .and_then(Value::as_object)
    else {
        return Ok(());
    };
    let path = "status.allocatedResourceStatus";
    let mut errs = Vec::new();
    for (k, v) in statuses {
        // validatePersistentVolumeClaimResourceKey: a native (unprefixed or kubernetes.io) name must be storage.
        let native = !k.contains('/') || k.contains("kubernetes.io/");
        if native && k != "storage" {
            errs.push(FieldError::not_supported(
                path,
                &json!(k),
                &["storage".to_string()],
            ));
        }
        if !v.as_str().is_some_and(|s| RESIZE_STATUSES.contains(&s)) {
            let supported: Vec<String> = RESIZE_STATUSES.iter().map(|s| s.to_string()).collect();
            errs.push(FieldError::not_supported(path, &json!(k), &supported));
        }
    }
    if errs.is_empty() {
        return Ok(());
    }
    let name = old
        .pointer("/metadata/name")
        .and_then(Value::as_str)
        .unwrap_or("");
    Err(ApiError::invalid(res, name, &errs))
}

fn validate_pvc_update(
    res: &ResourceDef,
    old: &Value,
    new: &mut Value,
    txn: &Txn<'_>,
    opts: RuleOptions,
) -> Result<(), ApiError> {
    let name = old
        .pointer("/metadata/name")
        .and_then(Value::as_str)
        .unwrap_or("")
        .to_string();
    require_object_spec(res, &name, new)?;
    if new["spec"]["volumeMode"].is_null() && !old["spec"]["volumeMode"].is_null() {
        new["spec"]["volumeMode"] = old["spec"]["volumeMode"].clone();
    }
    let old_q = storage_request(old).unwrap_or("0").to_string();
    let Some(new_q) = storage_request(new).map(str::to_string) else {
        return Err(ApiError::invalid(
            res,
            &name,
            &[FieldError::required("spec.resources[storage]", "")],
        ));
    };
    let old_size = parse_storage(res, &name, "spec.resources.requests[storage]", &old_q)?;
    let new_size = parse_storage(res, &name, "spec.resources.requests[storage]", &new_q)?;

    // Mirrors ValidatePersistentVolumeClaimUpdate: compare specs with the allowed fields neutralised.
    let mut old_spec = old["spec"].clone();
    let mut new_spec = new["spec"].clone();
    if old_spec["volumeName"].as_str().is_none_or(str::is_empty) {
        old_spec["volumeName"] = new_spec["volumeName"].clone();
    }
    if old_spec["storageClassName"].is_null() {
        old_spec["storageClassName"] = new_spec["storageClassName"].clone();
    }
    let bound = old.pointer("/status/phase").and_then(Value::as_str) == Some("Bound");
    if bound {
        new_spec["resources"]["requests"]["storage"] = json!(old_q);
        new_spec["volumeAttributesClassName"] = old_spec["volumeAttributesClassName"].clone();
    } else if new_size == old_size {
        // Same quantity in another notation is no change.
        new_spec["resources"]["requests"]["storage"] = json!(old_q);
    }
    let strip_nulls = |v: &mut Value| {
        if let Some(m) = v.as_object_mut() {
            m.retain(|_, x| !x.is_null());
        }
    };
    strip_nulls(&mut old_spec);
    strip_nulls(&mut new_spec);
    let mut errs = Vec::new();
    if old_spec != new_spec {
        errs.push(FieldError::forbidden(
            "spec",
            "spec is immutable after creation except resources.requests and volumeAttributesClassName for bound claims",
        ));
    }
    if new_size < old_size {
        if !opts.recover_volume_expansion_failure {
            errs.push(FieldError::forbidden(
                "spec.resources.requests.storage",
                "field can not be less than previous value",
            ));
        } else {
            // A missing capacity compares as zero, as the Go quantity does.
            let cap = old
                .pointer("/status/capacity/storage")
                .and_then(Value::as_str)
                .and_then(parse_quantity)
                .or_else(|| parse_quantity("0"));
            if cap.is_none_or(|c| new_size <= c) {
                errs.push(FieldError::forbidden(
                    "spec.resources.requests.storage",
                    "field can not be less than status.capacity",
                ));
            }
        }
    }
    if !errs.is_empty() {
        return Err(ApiError::invalid(res, &name, &errs));
    }

    // PersistentVolumeClaimResize admission (after validation, so an unbound claim already got
    // its 422 above): growth needs an expandable StorageClass.
    if new_size > old_size {
        let class = new["spec"]["storageClassName"].as_str().unwrap_or("");
        let expandable = !class.is_empty()
            && txn
                .get(&(STORAGE_CLASS, String::new(), class.to_string()))
                .and_then(|sc| sc.get("allowVolumeExpansion"))
                .and_then(Value::as_bool)
                == Some(true);
        if !expandable {
            return Err(ApiError::forbidden(
                res,
                &name,
                "only dynamically provisioned pvc can be resized and the storageclass that provisions the pvc must support resize",
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn storage_quantities_are_exact_and_reported_like_the_api_server() {
        let reg = crate::resources::Registry::new();
        let res = reg.get(PVC).unwrap();
        let res = &*res;
        let field = "spec.resources.requests[storage]";
        let parse = |q| parse_storage(res, "a", field, q);
        assert_eq!(parse(" 1Gi ").unwrap(), parse("1073741824").unwrap());
        assert!(parse("1Gi").unwrap() < parse("1073741825").unwrap());
        assert_eq!(parse("0.5Gi").unwrap(), parse("512Mi").unwrap());
        let err = parse("2XGi").unwrap_err();
        assert_eq!(err.code, 422);
        assert_eq!(
            err.message,
            r#"PersistentVolumeClaim "a" is invalid: spec.resources.requests[storage]: Invalid value: quantities must match the regular expression '^([+-]?[0-9.]+)([eEinumkKMGTP]*[-+]?[0-9]*)$': "2XGi""#
        );
    }
}
