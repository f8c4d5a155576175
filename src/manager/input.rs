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
        let value: serde_json::Value = serde::Deserialize::deserialize(document)
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

/// Checks `apiVersion`/`kind` name a CNPG Cluster.
pub fn expect_cluster(name: &str, value: &serde_json::Value) -> Result<(), InputError> {
    let kind = value.get("kind").and_then(|k| k.as_str());
    let api_version = value
        .get("apiVersion")
        .and_then(|k| k.as_str())
        .unwrap_or("");
    let group = api_version.split('/').next().unwrap_or("");
    if kind != Some(crate::api::cluster::KIND) || group != crate::api::cluster::API_GROUP {
        return Err(InputError(format!(
            "{name} is not a CloudNativePG Cluster manifest (apiVersion {:?}, kind {:?}; expected {:?}, kind \"Cluster\")",
            api_version,
            kind.unwrap_or(""),
            crate::api::cluster::API_VERSION
        )));
    }
    Ok(())
}
