//! Reading manifests and snapshots (YAML or JSON) from a file or stdin.

use serde::de::DeserializeOwned;
use std::io::Read;
use std::path::Path;

/// A problem with the input itself: the command exits 2 with this line.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct InputError(pub String);

/// Reads `path` ("-" or absent = stdin) as one YAML or JSON document.
pub fn read_document(path: Option<&Path>) -> Result<serde_json::Value, InputError> {
    let (name, text) = match path {
        None => read_stdin()?,
        Some(p) if p.as_os_str() == "-" => read_stdin()?,
        Some(p) => {
            let text = std::fs::read_to_string(p)
                .map_err(|e| InputError(format!("cannot read {}: {e}", p.display())))?;
            (p.display().to_string(), text)
        }
    };
    parse_document(&name, &text)
}

fn read_stdin() -> Result<(String, String), InputError> {
    let mut text = String::new();
    std::io::stdin()
        .read_to_string(&mut text)
        .map_err(|e| InputError(format!("cannot read standard input: {e}")))?;
    Ok(("standard input".to_string(), text))
}

/// Parses one document; YAML is a superset of JSON, so one parser serves both.
pub fn parse_document(name: &str, text: &str) -> Result<serde_json::Value, InputError> {
    let mut documents = Vec::new();
    for document in serde_norway::Deserializer::from_str(text) {
        let yaml: serde_norway::Value = serde::Deserialize::deserialize(document)
            .map_err(|e| InputError(format!("{name}: not valid YAML or JSON: {e}")))?;
        // JSON has no NaN or infinity, and converting YAML's `.nan` would
        // silently make it null (absent): refused, naming where.
        if let Some(at) = non_finite(&yaml) {
            return Err(InputError(format!(
                "{name}: {at}: not a finite number (.nan and .inf are not values here)"
            )));
        }
        let value = serde_json::to_value(&yaml)
            .map_err(|e| InputError(format!("{name}: not valid YAML or JSON: {e}")))?;
        if !value.is_null() {
            documents.push(value);
        }
    }
    match documents.len() {
        0 => Err(InputError(format!("{name}: the input is empty"))),
        1 => Ok(documents.remove(0)),
        n => Err(InputError(format!(
            "{name}: expected one document, found {n}"
        ))),
    }
}

/// Where a YAML value holds a number that is not finite, if anywhere.
fn non_finite(value: &serde_norway::Value) -> Option<String> {
    use serde_norway::Value;
    match value {
        Value::Number(n) => (n.is_nan() || n.is_infinite()).then(|| ".".to_string()),
        Value::Sequence(items) => items
            .iter()
            .enumerate()
            .find_map(|(i, v)| non_finite(v).map(|at| join(&format!("[{i}]"), &at))),
        Value::Mapping(map) => map.iter().find_map(|(k, v)| {
            let key = k
                .as_str()
                .map(str::to_string)
                .unwrap_or_else(|| format!("{k:?}"));
            non_finite(v).map(|at| join(&key, &at))
        }),
        Value::Tagged(tagged) => non_finite(&tagged.value),
        Value::Null | Value::Bool(_) | Value::String(_) => None,
    }
}

fn join(head: &str, rest: &str) -> String {
    if rest == "." {
        head.to_string()
    } else if rest.starts_with('[') {
        format!("{head}{rest}")
    } else {
        format!("{head}.{rest}")
    }
}

/// Deserializes with the failing field's path in the message.
pub fn typed<T: DeserializeOwned>(name: &str, value: serde_json::Value) -> Result<T, InputError> {
    serde_path_to_error::deserialize(value).map_err(|e| {
        let path = e.path().to_string();
        let at = if path == "." {
            String::new()
        } else {
            format!(" at {path}")
        };
        InputError(format!("{name}{at}: {}", e.into_inner()))
    })
}

/// The (API group, kind) a manifest declares.
pub fn kind_of(value: &serde_json::Value) -> (&str, &str) {
    let kind = value.get("kind").and_then(|k| k.as_str()).unwrap_or("");
    let api_version = value
        .get("apiVersion")
        .and_then(|k| k.as_str())
        .unwrap_or("");
    (api_version.split('/').next().unwrap_or(""), kind)
}

/// Checks `apiVersion`/`kind` name the expected resource.
pub fn expect_kind(
    name: &str,
    value: &serde_json::Value,
    group: &str,
    kind: &str,
) -> Result<(), InputError> {
    if !value.is_object() {
        return Err(InputError(format!("{name} is not an object")));
    }
    let (found_group, found_kind) = kind_of(value);
    if found_kind != kind || found_group != group {
        let api_version = value
            .get("apiVersion")
            .and_then(|k| k.as_str())
            .unwrap_or("");
        let what = if kind == crate::api::cluster::KIND {
            "CloudNativePG Cluster"
        } else {
            kind
        };
        return Err(InputError(format!(
            "{name} is not a {what} manifest (apiVersion {api_version:?}, kind {found_kind:?}; expected group {group:?}, kind {kind:?})"
        )));
    }
    Ok(())
}
