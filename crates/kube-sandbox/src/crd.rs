//! CustomResourceDefinitions: reading manifests, checking them like
//! `apiextensions-apiserver/pkg/apis/apiextensions/validation` (the checks listed in the
//! README), and turning them into served resources.

use std::sync::Arc;

use anyhow::{bail, Context};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use serde::Deserialize;
use serde_json::{json, Value};

use crate::error::{ApiError, FieldError};
use crate::resources::{Generation, Registry, ResourceDef, VersionDef, CRD};
use crate::schema::Schema;

/// The CRD documents in a YAML (several documents) or JSON text.
pub fn parse_manifests(text: &str) -> anyhow::Result<Vec<Value>> {
    let mut out = Vec::new();
    for (i, doc) in serde_norway::Deserializer::from_str(text).enumerate() {
        let value = Value::deserialize(doc)
            .with_context(|| format!("parsing document {i} of the CRD manifest"))?;
        if value.is_null() {
            continue;
        }
        let kind = value.get("kind").and_then(Value::as_str).unwrap_or("");
        if kind != "CustomResourceDefinition" {
            bail!("document {i} of the CRD manifest is a {kind:?}, not a CustomResourceDefinition");
        }
        out.push(value);
    }
    if out.is_empty() {
        bail!("no CustomResourceDefinition found in the manifest");
    }
    Ok(out)
}

fn invalid(registry: &Registry, name: &str, errs: &[FieldError]) -> ApiError {
    match registry.get(CRD) {
        Some(def) => ApiError::invalid(&def, name, errs),
        None => ApiError::new(
            422,
            "Invalid",
            format!("CustomResourceDefinition {name:?} is invalid"),
        ),
    }
}

/// Checks a CRD object and builds the resource it serves (422 `Invalid` when it is not
/// acceptable). The CEL rules of each version's schema are compiled and costed as the API
/// server does at CEL compatibility version `cel_version` (`crate::celcheck`); a schema
/// that `old` (the stored CRD, on updates) already had is not checked again, as the API
/// server ratchets unchanged schemas. Warnings (unrecognized formats) go to `warnings`.
pub fn resource_of(
    registry: &Registry,
    obj: &Value,
    old: Option<&Value>,
    cel_version: u32,
    warnings: &mut Vec<String>,
) -> Result<ResourceDef, ApiError> {
    let name = obj
        .pointer("/metadata/name")
        .and_then(Value::as_str)
        .unwrap_or("")
        .to_string();
    let crd: CustomResourceDefinition = serde_json::from_value(obj.clone()).map_err(|e| {
        ApiError::bad_request(format!(
            "error decoding CustomResourceDefinition {name:?}: {e}"
        ))
    })?;
    let spec = &crd.spec;
    let mut errs = Vec::new();
    if spec.group.is_empty() {
        errs.push(FieldError::required("spec.group", ""));
    }
    if spec.names.plural.is_empty() {
        errs.push(FieldError::required("spec.names.plural", ""));
    }
    if spec.names.kind.is_empty() {
        errs.push(FieldError::required("spec.names.kind", ""));
    }
    // ValidateCustomResourceDefinition: the name is fixed by the names.
    if name != format!("{}.{}", spec.names.plural, spec.group) {
        errs.push(FieldError::invalid_value(
            "metadata.name",
            &Value::from(name.as_str()),
            "must be spec.names.plural+\".\"+spec.group",
        ));
    }
    if spec.scope != "Namespaced" && spec.scope != "Cluster" {
        errs.push(FieldError::not_supported(
            "spec.scope",
            &Value::from(spec.scope.as_str()),
            &["Cluster".to_string(), "Namespaced".to_string()],
        ));
    }
    if spec.versions.is_empty() {
        errs.push(FieldError::required(
            "spec.versions",
            "must have exactly one version marked as storage version",
        ));
    } else if spec.versions.iter().filter(|v| v.storage).count() != 1 {
        errs.push(FieldError::invalid(
            "spec.versions",
            "must have exactly one version marked as storage version",
        ));
    }
    cel_checks(obj, old, cel_version, &mut errs, warnings);
    let mut versions = Vec::new();
    for (i, v) in spec.versions.iter().enumerate() {
        let at = format!("spec.versions[{i}].schema.openAPIV3Schema");
        let schema = match v
            .schema
            .as_ref()
            .and_then(|s| s.open_api_v3_schema.as_ref())
        {
            None => {
                errs.push(FieldError::required(&at, "schemas are required"));
                None
            }
            Some(props) => match Schema::compile(props) {
                Ok(s) => Some(Arc::new(s)),
                Err(e) => {
                    errs.push(FieldError::invalid(&at, &format!("{e:#}")));
                    None
                }
            },
        };
        versions.push(VersionDef {
            name: v.name.clone(),
            served: v.served,
            storage: v.storage,
            status: v.subresources.as_ref().is_some_and(|s| s.status.is_some()),
            schema,
        });
    }
    if !errs.is_empty() {
        return Err(invalid(registry, &name, &errs));
    }
    let names = &spec.names;
    Ok(ResourceDef {
        group: spec.group.clone(),
        plural: names.plural.clone(),
        singular: names
            .singular
            .clone()
            .unwrap_or_else(|| names.kind.to_lowercase()),
        kind: names.kind.clone(),
        list_kind: names
            .list_kind
            .clone()
            .unwrap_or_else(|| format!("{}List", names.kind)),
        namespaced: spec.scope == "Namespaced",
        short_names: names.short_names.clone().unwrap_or_default(),
        categories: names.categories.clone().unwrap_or_default(),
        strategic: false,
        generation: Generation::OnNonMetadataChange,
        versions,
    })
}

/// The CEL checks of every version's schema; one shared schema is reported at
/// `spec.validation.openAPIV3Schema`, as the API server's internal version names it.
fn cel_checks(
    obj: &Value,
    old: Option<&Value>,
    cel_version: u32,
    errs: &mut Vec<FieldError>,
    warnings: &mut Vec<String>,
) {
    let schemas = |o: &Value| -> Vec<Value> {
        o.pointer("/spec/versions")
            .and_then(Value::as_array)
            .map(|vs| {
                vs.iter()
                    .map(|v| {
                        v.pointer("/schema/openAPIV3Schema")
                            .cloned()
                            .unwrap_or(Value::Null)
                    })
                    .collect()
            })
            .unwrap_or_default()
    };
    let new = schemas(obj);
    let before = old.map(schemas).unwrap_or_default();
    let shared = new.windows(2).all(|w| w[0] == w[1]);
    for (i, schema) in new.iter().enumerate() {
        if schema.is_null() || (shared && i > 0) || before.contains(schema) {
            continue;
        }
        let at = if shared {
            "spec.validation.openAPIV3Schema".to_string()
        } else {
            format!("spec.versions[{i}].schema.openAPIV3Schema")
        };
        let report = crate::celcheck::check_crd_schema(schema, cel_version, &at);
        errs.extend(report.errors);
        for w in report.warnings {
            if !warnings.contains(&w) {
                warnings.push(w);
            }
        }
    }
}

/// The accepted names, as the API server reports them in `status.acceptedNames`.
fn accepted_names(def: &ResourceDef) -> Value {
    let mut names = json!({
        "plural": def.plural, "singular": def.singular, "kind": def.kind, "listKind": def.list_kind,
    });
    if !def.short_names.is_empty() {
        names["shortNames"] = json!(def.short_names);
    }
    if !def.categories.is_empty() {
        names["categories"] = json!(def.categories);
    }
    names
}

/// Server-set fields of a CRD object: defaults the API server fills in and an Established status.
pub fn prepare(obj: &mut Value, def: &ResourceDef, now: &str) {
    if obj.pointer("/spec/conversion").is_none() {
        if let Some(spec) = obj.get_mut("spec").and_then(Value::as_object_mut) {
            spec.insert("conversion".into(), json!({"strategy": "None"}));
        }
    }
    let condition = |type_: &str, reason: &str, message: &str| json!({"type": type_, "status": "True", "reason": reason, "message": message, "lastTransitionTime": now});
    obj["status"] = json!({
        "conditions": [
            condition("NamesAccepted", "NoConflicts", "no conflicts found"),
            condition("Established", "InitialNamesAccepted", "the initial names have been accepted"),
        ],
        "acceptedNames": accepted_names(def),
        "storedVersions": [def.storage_version().name],
    });
}
