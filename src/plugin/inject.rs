//! What the plugin decides, without any I/O: whether a pod is an instance pod
//! of a Cluster that enabled the plugin, whether the plugin's parameters are
//! valid, and the JSON patch that adds the manager container.
//!
//! The container comes from the chart's one template helper (the sidecar
//! template, [`SidecarTemplate`]); what depends on the pod is added here
//! exactly as the chart's MutatingAdmissionPolicy computes it in CEL: from
//! the `postgres` container's volume mounts, each mount at the data path, the
//! WAL path, each tablespace path, the socket directory (peer authentication
//! only) and the API token, in that order, re-mounted read-only at the same
//! path under the pod's own volume name.

use serde_json::{json, Map, Value};
use std::fmt;
use std::time::Duration;

/// The plugin's name: `GetPluginMetadata`, the Service label
/// `cnpg.io/pluginName` and `spec.plugins[].name` must all say it.
pub const PLUGIN_NAME: &str = "autoresize.cnpg.io";

/// CloudNativePG's scratch volume (its socket directory is `run/` inside).
pub const CONTROLLER_DIR: &str = "/controller";
/// Where Kubernetes mounts a ServiceAccount token.
pub const TOKEN_PATH: &str = "/var/run/secrets/kubernetes.io/serviceaccount";
/// CloudNativePG's mount paths (the chart's `sidecar.walPath` /
/// `sidecar.tablespacesPath` defaults; the chart passes its values).
pub const DEFAULT_WAL_PATH: &str = "/var/lib/postgresql/wal";
pub const DEFAULT_TABLESPACES_PATH: &str = "/var/lib/postgresql/tablespaces";
const DEFAULT_DATA_PATH: &str = "/var/lib/postgresql/data";

/// The container's HTTP port name (the liveness probe, the PodMonitor).
const PORT_NAME: &str = "autoresize";
/// Ports CloudNativePG uses in an instance pod: PostgreSQL, its metrics
/// exporter, the instance manager's status endpoint and its pprof.
const CNPG_PORTS: [u16; 4] = [5432, 9187, 8000, 6060];
/// Below these the manager cannot work (it measured 25 MiB peak RSS as a
/// 50-instance leader, docs/benchmarks.md): a container that is OOM-killed in
/// a loop is not ready, and a native sidecar's readiness is the pod's.
const MIN_MEMORY: &str = "32Mi";
const MIN_CPU: &str = "10m";

/// How the manager reaches PostgreSQL (the chart's `sidecar.postgres.auth`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Auth {
    /// Over CloudNativePG's socket as `cnpg_metrics_exporter`.
    Peer,
    /// Over TCP with a password from a Secret.
    Password,
}

impl Auth {
    pub fn as_str(self) -> &'static str {
        match self {
            Auth::Peer => "peer",
            Auth::Password => "password",
        }
    }
}

/// The manager container as the chart renders it with no pod-dependent
/// parts: the default one first, then (optionally) the other auth mode.
#[derive(Clone, Debug)]
pub struct SidecarTemplate {
    containers: Vec<(Auth, Map<String, Value>)>,
}

/// The chart's default rendering (`charts/cnpg-autoresize`, default values),
/// for a plugin started without `--sidecar-template`. A test keeps it equal
/// to the chart (hack/render-plugin-fixtures.py writes it).
pub const BUILTIN_TEMPLATE: &str = include_str!("sidecar-default.yaml");

impl SidecarTemplate {
    /// One or more YAML (or JSON) documents, each a container.
    pub fn parse(text: &str) -> Result<SidecarTemplate, String> {
        let mut containers: Vec<(Auth, Map<String, Value>)> = Vec::new();
        for (i, document) in serde_norway::Deserializer::from_str(text).enumerate() {
            let value: Value = serde::Deserialize::deserialize(document)
                .map_err(|e| format!("document {}: not YAML: {e}", i + 1))?;
            let container = match value {
                Value::Null => continue,
                Value::Object(map) => map,
                other => {
                    return Err(format!(
                        "document {}: expected a container (a mapping), got {}",
                        i + 1,
                        kind_of(&other)
                    ))
                }
            };
            let name = container.get("name").and_then(Value::as_str).unwrap_or("");
            if name.is_empty() {
                return Err(format!("document {}: the container has no name", i + 1));
            }
            if !container
                .get("args")
                .and_then(Value::as_array)
                .is_some_and(|args| args.iter().any(|a| a.as_str() == Some("run")))
            {
                return Err(format!(
                    "document {}: container {name:?} does not run `cnpg-autoresize run`",
                    i + 1
                ));
            }
            let auth = auth_of(&container);
            if containers.iter().any(|(a, _)| *a == auth) {
                return Err(format!(
                    "document {}: a second container for postgres auth {}",
                    i + 1,
                    auth.as_str()
                ));
            }
            if let Some((_, first)) = containers.first() {
                if first.get("name") != container.get("name") {
                    return Err(format!(
                        "document {}: container {name:?} is not named like the first one",
                        i + 1
                    ));
                }
            }
            containers.push((auth, container));
        }
        if containers.is_empty() {
            return Err("no container in the sidecar template".to_string());
        }
        Ok(SidecarTemplate { containers })
    }

    pub fn builtin() -> Result<SidecarTemplate, String> {
        SidecarTemplate::parse(BUILTIN_TEMPLATE)
    }

    /// The container's name (the same in every document).
    pub fn name(&self) -> &str {
        self.containers
            .first()
            .and_then(|(_, c)| c.get("name"))
            .and_then(Value::as_str)
            .unwrap_or("")
    }

    pub fn default_auth(&self) -> Auth {
        self.containers
            .first()
            .map(|(a, _)| *a)
            .unwrap_or(Auth::Peer)
    }

    fn container(&self, auth: Auth) -> Option<&Map<String, Value>> {
        self.containers
            .iter()
            .find(|(a, _)| *a == auth)
            .map(|(_, c)| c)
    }

    fn has(&self, auth: Auth) -> bool {
        self.container(auth).is_some()
    }
}

/// Password mode is the one with a `PGPASSWORD` variable.
fn auth_of(container: &Map<String, Value>) -> Auth {
    if env_entry(container, "PGPASSWORD").is_some() {
        Auth::Password
    } else {
        Auth::Peer
    }
}

fn env_entry<'a>(container: &'a Map<String, Value>, name: &str) -> Option<&'a Value> {
    container
        .get("env")?
        .as_array()?
        .iter()
        .find(|e| e.get("name").and_then(Value::as_str) == Some(name))
}

fn kind_of(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "a list",
        Value::Object(_) => "a mapping",
    }
}

/// Where CloudNativePG mounts the volumes the manager measures.
#[derive(Clone, Debug)]
pub struct MountPaths {
    pub wal: String,
    pub tablespaces: String,
}

impl Default for MountPaths {
    fn default() -> Self {
        MountPaths {
            wal: DEFAULT_WAL_PATH.to_string(),
            tablespaces: DEFAULT_TABLESPACES_PATH.to_string(),
        }
    }
}

/// A refused parameter (or plugin entry): the field, the value and why.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ParamError {
    /// e.g. `["spec", "plugins", "0", "parameters", "cpu"]`; never empty.
    pub path: Vec<String>,
    pub value: String,
    pub message: String,
}

impl ParamError {
    fn parameter(index: usize, name: &str, value: &str, message: impl Into<String>) -> Self {
        ParamError {
            path: vec![
                "spec".into(),
                "plugins".into(),
                index.to_string(),
                "parameters".into(),
                name.to_string(),
            ],
            value: value.to_string(),
            message: message.into(),
        }
    }

    /// `spec.plugins[0].parameters.cpu`.
    pub fn field(&self) -> String {
        let mut out = String::new();
        for (i, part) in self.path.iter().enumerate() {
            if !part.is_empty() && part.bytes().all(|b| b.is_ascii_digit()) {
                out.push_str(&format!("[{part}]"));
            } else {
                if i > 0 {
                    out.push('.');
                }
                out.push_str(part);
            }
        }
        out
    }
}

impl fmt::Display for ParamError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}={:?}: {}", self.field(), self.value, self.message)
    }
}

/// The parameters a Cluster may give the plugin (`spec.plugins[].parameters`):
/// the manager container's settings only. The resize configuration lives in
/// the AutoResizePolicy or the fork's `resize` blocks.
pub const PARAMETERS: [&str; 8] = [
    "image",
    "probeInterval",
    "cpu",
    "memory",
    "postgresAuth",
    "postgresSecret",
    "postgresSecretKey",
    "httpPort",
];

/// Parameters, checked.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Parameters {
    pub image: Option<String>,
    pub probe_interval: Option<String>,
    pub cpu: Option<String>,
    pub memory: Option<String>,
    pub auth: Option<Auth>,
    pub secret: Option<String>,
    pub secret_key: Option<String>,
    pub http_port: Option<u16>,
}

/// The Cluster's entry for this plugin in `spec.plugins`.
#[derive(Clone, Debug, PartialEq)]
pub struct PluginEntry {
    pub index: usize,
    pub enabled: bool,
    pub parameters: Map<String, Value>,
}

/// Our entry of `spec.plugins`: `Ok(None)` when the Cluster does not list
/// the plugin; an error for an entry that cannot be read or a second entry.
pub fn plugin_entry(cluster: &Value) -> Result<Option<PluginEntry>, Vec<ParamError>> {
    let Some(plugins) = cluster.pointer("/spec/plugins").and_then(Value::as_array) else {
        return Ok(None);
    };
    let mut found: Option<PluginEntry> = None;
    let mut errors = Vec::new();
    for (index, entry) in plugins.iter().enumerate() {
        if entry.get("name").and_then(Value::as_str) != Some(PLUGIN_NAME) {
            continue;
        }
        let at = |field: &str| {
            vec![
                "spec".into(),
                "plugins".into(),
                index.to_string(),
                field.to_string(),
            ]
        };
        if let Some(first) = &found {
            errors.push(ParamError {
                path: at("name"),
                value: PLUGIN_NAME.to_string(),
                message: format!(
                    "the plugin is listed twice (also spec.plugins[{}]): keep one entry",
                    first.index
                ),
            });
            continue;
        }
        let enabled = match entry.get("enabled") {
            None | Some(Value::Null) => true,
            Some(Value::Bool(b)) => *b,
            Some(other) => {
                errors.push(ParamError {
                    path: at("enabled"),
                    value: other.to_string(),
                    message: "expected true or false".into(),
                });
                false
            }
        };
        let parameters = match entry.get("parameters") {
            None | Some(Value::Null) => Map::new(),
            Some(Value::Object(map)) => map.clone(),
            Some(other) => {
                errors.push(ParamError {
                    path: at("parameters"),
                    value: other.to_string(),
                    message: "expected a map of strings".into(),
                });
                Map::new()
            }
        };
        found = Some(PluginEntry {
            index,
            enabled,
            parameters,
        });
    }
    if errors.is_empty() {
        Ok(found)
    } else {
        Err(errors)
    }
}

/// Checks every parameter against the template it will change; every error,
/// not just the first.
pub fn parse_parameters(
    entry: &PluginEntry,
    template: &SidecarTemplate,
) -> Result<Parameters, Vec<ParamError>> {
    let index = entry.index;
    let mut params = Parameters::default();
    let mut errors = Vec::new();
    let mut refuse = |name: &str, value: &str, message: String| {
        errors.push(ParamError::parameter(index, name, value, message));
    };
    for (name, raw) in &entry.parameters {
        let Some(value) = raw.as_str() else {
            refuse(name, &raw.to_string(), "expected a string".into());
            continue;
        };
        match name.as_str() {
            "image" => match check_image(value) {
                Ok(()) => params.image = Some(value.to_string()),
                Err(m) => refuse(name, value, m),
            },
            "probeInterval" => match check_probe_interval(value, template) {
                Ok(()) => params.probe_interval = Some(value.to_string()),
                Err(m) => refuse(name, value, m),
            },
            "cpu" => match check_quantity(value, MIN_CPU) {
                Ok(()) => params.cpu = Some(value.to_string()),
                Err(m) => refuse(name, value, m),
            },
            "memory" => match check_quantity(value, MIN_MEMORY) {
                Ok(()) => params.memory = Some(value.to_string()),
                Err(m) => refuse(name, value, m),
            },
            "postgresAuth" => match value {
                "peer" | "password" => {
                    let auth = if value == "peer" {
                        Auth::Peer
                    } else {
                        Auth::Password
                    };
                    if template.has(auth) {
                        params.auth = Some(auth);
                    } else {
                        refuse(
                            name,
                            value,
                            format!(
                                "the plugin's sidecar template has no container for {value} authentication"
                            ),
                        );
                    }
                }
                _ => refuse(name, value, "expected peer or password".into()),
            },
            "postgresSecret" => match check_dns_subdomain(value) {
                Ok(()) => params.secret = Some(value.to_string()),
                Err(m) => refuse(name, value, m),
            },
            "postgresSecretKey" => match check_secret_key(value) {
                Ok(()) => params.secret_key = Some(value.to_string()),
                Err(m) => refuse(name, value, m),
            },
            "httpPort" => match check_port(value) {
                Ok(port) => params.http_port = Some(port),
                Err(m) => refuse(name, value, m),
            },
            _ => refuse(
                name,
                value,
                format!(
                    "unknown parameter (a typo?); the plugin takes {}",
                    PARAMETERS.join(", ")
                ),
            ),
        }
    }
    let auth = params.auth.unwrap_or(template.default_auth());
    if auth == Auth::Peer {
        for name in ["postgresSecret", "postgresSecretKey"] {
            if let Some(value) = entry.parameters.get(name).and_then(Value::as_str) {
                errors.push(ParamError::parameter(
                    index,
                    name,
                    value,
                    "used only with postgresAuth=password (peer authentication needs no Secret)",
                ));
            }
        }
    }
    if errors.is_empty() {
        Ok(params)
    } else {
        errors.sort_by(|a, b| a.path.cmp(&b.path));
        Err(errors)
    }
}

/// An image reference as the distribution reference grammar has it:
/// `[host[:port]/]path[:tag][@algorithm:digest]`.
fn check_image(value: &str) -> Result<(), String> {
    let invalid = || {
        "not an image reference (e.g. ghcr.io/org/cnpg-autoresize:0.2.0 or …@sha256:<digest>)"
            .to_string()
    };
    if value.is_empty() || value.len() > 1024 {
        return Err(invalid());
    }
    let (name_tag, digest) = match value.split_once('@') {
        Some((n, d)) => (n, Some(d)),
        None => (value, None),
    };
    if let Some(digest) = digest {
        let (algorithm, hex) = digest.split_once(':').ok_or_else(invalid)?;
        let algorithm_ok = !algorithm.is_empty()
            && algorithm
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"+._-".contains(&b));
        if !algorithm_ok || hex.len() < 32 || !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(invalid());
        }
    }
    // A tag follows the last ':' after the last '/' (a ':' before it is a port).
    let last_slash = name_tag.rfind('/').map(|i| i + 1).unwrap_or(0);
    let (name, tag) = match name_tag[last_slash..].rfind(':') {
        Some(i) => (
            &name_tag[..last_slash + i],
            Some(&name_tag[last_slash + i + 1..]),
        ),
        None => (name_tag, None),
    };
    if let Some(tag) = tag {
        let mut bytes = tag.bytes();
        let first_ok = bytes
            .next()
            .is_some_and(|b| b.is_ascii_alphanumeric() || b == b'_');
        if !first_ok
            || tag.len() > 128
            || !bytes.all(|b| b.is_ascii_alphanumeric() || b"_.-".contains(&b))
        {
            return Err(invalid());
        }
    }
    let mut components = name.split('/').collect::<Vec<_>>();
    if components.len() > 1 {
        let host = components[0];
        if host.contains('.') || host.contains(':') || host == "localhost" {
            let (domain, port) = match host.split_once(':') {
                Some((d, p)) => (d, Some(p)),
                None => (host, None),
            };
            let domain_ok = !domain.is_empty()
                && domain.split('.').all(|label| {
                    !label.is_empty()
                        && !label.starts_with('-')
                        && !label.ends_with('-')
                        && label
                            .bytes()
                            .all(|b| b.is_ascii_alphanumeric() || b == b'-')
                });
            let port_ok =
                port.is_none_or(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()));
            if !domain_ok || !port_ok {
                return Err(invalid());
            }
            components.remove(0);
        }
    }
    let component_ok = |c: &str| {
        // lowercase alphanumerics separated by '.', '_', '__' or dashes.
        let bytes = c.as_bytes();
        !bytes.is_empty()
            && bytes[0].is_ascii_lowercase() | bytes[0].is_ascii_digit()
            && bytes[bytes.len() - 1].is_ascii_lowercase() | bytes[bytes.len() - 1].is_ascii_digit()
            && bytes
                .iter()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"._-".contains(b))
            && !c.contains("..")
            && !c.contains("___")
            && !c.contains("._")
            && !c.contains("_.")
    };
    if components.is_empty() || !components.iter().all(|c| component_ok(c)) {
        return Err(invalid());
    }
    Ok(())
}

/// A duration the manager's `--probe-interval` takes, within the template's
/// lease: a report is trusted for 3 probe intervals, which must fit in the
/// lease, and `--stuck-resize-after` must be at least that long (the rules
/// `run` checks before it starts).
fn check_probe_interval(value: &str, template: &SidecarTemplate) -> Result<(), String> {
    let probe = crate::manager::run::parse_duration(value)?;
    let container = template
        .containers
        .first()
        .map(|(_, c)| c)
        .ok_or_else(|| "no sidecar template".to_string())?;
    let arg_duration = |flag: &str, default: Duration| {
        string_args(container)
            .iter()
            .find_map(|a| a.strip_prefix(flag).and_then(|v| v.strip_prefix('=')))
            .and_then(|v| crate::manager::run::parse_duration(v).ok())
            .unwrap_or(default)
    };
    let lease = arg_duration("--lease-duration", Duration::from_secs(15));
    let stuck = arg_duration("--stuck-resize-after", Duration::from_secs(600));
    if probe.saturating_mul(3) > lease {
        return Err(format!(
            "a report is trusted for 3 probe intervals, which must fit in the lease ({lease:?})"
        ));
    }
    if probe.saturating_mul(3) > stuck {
        return Err(format!(
            "must be at most a third of --stuck-resize-after ({stuck:?})"
        ));
    }
    Ok(())
}

/// A Kubernetes quantity of at least `min` (e.g. `10m`, `32Mi`).
fn check_quantity(value: &str, min: &str) -> Result<(), String> {
    let q: k8s_quantity::Quantity = value
        .parse()
        .map_err(|e| format!("not a Kubernetes quantity (e.g. 100m, 64Mi): {e}"))?;
    let floor: k8s_quantity::Quantity = min
        .parse()
        .map_err(|e| format!("the minimum {min:?}: {e}"))?;
    if q < floor {
        return Err(format!(
            "must be at least {min}: less cannot run the manager (requests equal limits)"
        ));
    }
    Ok(())
}

/// A Secret's name.
fn check_dns_subdomain(value: &str) -> Result<(), String> {
    let ok = !value.is_empty()
        && value.len() <= 253
        && value.split('.').all(|label| {
            !label.is_empty()
                && label
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
                && !label.starts_with('-')
                && !label.ends_with('-')
        });
    if ok {
        Ok(())
    } else {
        Err("not a Secret name (lowercase letters, digits, '-' and '.')".into())
    }
}

/// A key of a Secret's data.
fn check_secret_key(value: &str) -> Result<(), String> {
    let ok = !value.is_empty()
        && value.len() <= 253
        && value != "."
        && value != ".."
        && value
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-._".contains(&b));
    if ok {
        Ok(())
    } else {
        Err("not a Secret key (letters, digits, '-', '_' and '.')".into())
    }
}

fn check_port(value: &str) -> Result<u16, String> {
    let port: u16 = value
        .parse()
        .ok()
        .filter(|p| *p > 0)
        .ok_or_else(|| "expected a port number from 1 to 65535".to_string())?;
    if CNPG_PORTS.contains(&port) {
        return Err(
            "CloudNativePG uses this port in the pod (PostgreSQL 5432, metrics 9187, status 8000, pprof 6060)"
                .to_string(),
        );
    }
    Ok(port)
}

fn string_args(container: &Map<String, Value>) -> Vec<String> {
    container
        .get("args")
        .and_then(Value::as_array)
        .map(|args| {
            args.iter()
                .filter_map(|a| a.as_str().map(String::from))
                .collect()
        })
        .unwrap_or_default()
}

/// What the hook does with one object.
#[derive(Clone, Debug, PartialEq)]
pub enum Outcome {
    /// Nothing, and why (not our pod, not our Cluster, …).
    Skip(String),
    /// The parameters are refused: nothing is injected (see
    /// docs/deploy-cnpg-i.md#invalid-parameters).
    Invalid(Vec<ParamError>),
    /// RFC 6902 operations; empty when the pod already has the container as
    /// it should be.
    Patch(Vec<Value>),
}

/// The lifecycle hook's decision for `object` (the Pod CloudNativePG is about
/// to create or evaluate) of `cluster`.
pub fn lifecycle_hook(
    template: &SidecarTemplate,
    paths: &MountPaths,
    cluster: &Value,
    object: &Value,
) -> Outcome {
    let entry = match plugin_entry(cluster) {
        Ok(Some(entry)) => entry,
        Ok(None) => return Outcome::Skip("the Cluster does not list the plugin".into()),
        Err(errors) => return Outcome::Invalid(errors),
    };
    if !entry.enabled {
        return Outcome::Skip("the plugin is disabled in the Cluster".into());
    }
    let Some(cluster_name) = cluster.pointer("/metadata/name").and_then(Value::as_str) else {
        return Outcome::Skip("the Cluster has no name".into());
    };
    if let Some(reason) = not_an_instance_pod(object, cluster_name, cluster) {
        return Outcome::Skip(reason);
    }
    let params = match parse_parameters(&entry, template) {
        Ok(p) => p,
        Err(errors) => return Outcome::Invalid(errors),
    };
    match patch_for(template, paths, &params, cluster_name, object) {
        Ok(ops) => Outcome::Patch(ops),
        Err(reason) => Outcome::Skip(reason),
    }
}

/// Why `object` is not an instance pod of the Cluster `cluster_name`, if it
/// is not. Job pods carry `cnpg.io/jobRole`; instance pods
/// `cnpg.io/podRole=instance` and `cnpg.io/cluster=<name>`.
fn not_an_instance_pod(object: &Value, cluster_name: &str, cluster: &Value) -> Option<String> {
    if object.get("kind").and_then(Value::as_str) != Some("Pod")
        || object.get("apiVersion").and_then(Value::as_str) != Some("v1")
    {
        return Some("not a v1 Pod".into());
    }
    let label = |key: &str| {
        object
            .pointer("/metadata/labels")
            .and_then(|l| l.get(key))
            .and_then(Value::as_str)
    };
    if label("cnpg.io/jobRole").is_some() {
        return Some("a Job's pod (cnpg.io/jobRole)".into());
    }
    if label("cnpg.io/podRole") != Some("instance") {
        return Some("not an instance pod (cnpg.io/podRole)".into());
    }
    if label("cnpg.io/cluster") != Some(cluster_name) {
        return Some(format!(
            "not a pod of Cluster {cluster_name:?} (cnpg.io/cluster)"
        ));
    }
    let namespace = |v: &Value| {
        v.pointer("/metadata/namespace")
            .and_then(Value::as_str)
            .map(String::from)
    };
    if let (Some(pod_ns), Some(cluster_ns)) = (namespace(object), namespace(cluster)) {
        if pod_ns != cluster_ns {
            return Some("the pod is in another namespace than the Cluster".into());
        }
    }
    None
}

/// The container for this pod, and the operations that put it in place.
fn patch_for(
    template: &SidecarTemplate,
    paths: &MountPaths,
    params: &Parameters,
    cluster_name: &str,
    pod: &Value,
) -> Result<Vec<Value>, String> {
    let name = template.name();
    let in_list = |list: &str| {
        pod.pointer(&format!("/spec/{list}"))
            .and_then(Value::as_array)
            .and_then(|items| {
                items
                    .iter()
                    .position(|c| c.get("name").and_then(Value::as_str) == Some(name))
            })
    };
    // A regular container of that name: adding ours would make the pod
    // invalid (names are unique across both lists).
    if in_list("containers").is_some() {
        return Err(format!("the pod already has a container named {name:?}"));
    }
    let container = container_for(template, paths, params, cluster_name, pod)?;
    let init = pod
        .pointer("/spec/initContainers")
        .and_then(Value::as_array);
    Ok(match (init, in_list("initContainers")) {
        (Some(items), Some(i)) if items.get(i) == Some(&container) => Vec::new(),
        (Some(_), Some(i)) => vec![
            json!({"op": "replace", "path": format!("/spec/initContainers/{i}"), "value": container}),
        ],
        (Some(_), None) => {
            vec![json!({"op": "add", "path": "/spec/initContainers/-", "value": container})]
        }
        (None, _) => {
            vec![json!({"op": "add", "path": "/spec/initContainers", "value": [container]})]
        }
    })
}

/// The manager container for `pod`: the template with the pod's mounts and
/// volume arguments, then the parameters.
pub fn container_for(
    template: &SidecarTemplate,
    paths: &MountPaths,
    params: &Parameters,
    cluster_name: &str,
    pod: &Value,
) -> Result<Value, String> {
    let auth = params.auth.unwrap_or(template.default_auth());
    let mut container = template
        .container(auth)
        .cloned()
        .ok_or_else(|| format!("no sidecar template for {} authentication", auth.as_str()))?;
    let mounts: Vec<&Map<String, Value>> = pod
        .pointer("/spec/containers")
        .and_then(Value::as_array)
        .and_then(|cs| {
            cs.iter()
                .find(|c| c.get("name").and_then(Value::as_str) == Some("postgres"))
        })
        .and_then(|c| c.get("volumeMounts"))
        .and_then(Value::as_array)
        .map(|ms| ms.iter().filter_map(Value::as_object).collect())
        .unwrap_or_default();
    let mount_path =
        |m: &Map<String, Value>| m.get("mountPath").and_then(Value::as_str).map(String::from);
    let at = |path: &str| -> Vec<&Map<String, Value>> {
        mounts
            .iter()
            .copied()
            .filter(|m| mount_path(m).as_deref() == Some(path))
            .collect()
    };
    let args = string_args(&container);
    let data_path = args
        .iter()
        .find_map(|a| a.strip_prefix("--data-path="))
        .unwrap_or(DEFAULT_DATA_PATH)
        .to_string();
    let data = at(&data_path);
    if data.is_empty() {
        return Err(format!(
            "the postgres container mounts nothing at {data_path}"
        ));
    }
    let wal = at(&paths.wal);
    let tbs_dir = format!("{}/", paths.tablespaces.trim_end_matches('/'));
    let tablespaces: Vec<(String, &Map<String, Value>)> = mounts
        .iter()
        .copied()
        .filter_map(|m| {
            let path = mount_path(m)?;
            let name = path.strip_prefix(&tbs_dir)?;
            (!name.is_empty() && !name.contains('/')).then(|| (name.to_string(), m))
        })
        .collect();
    let peer_socket = env_entry(&container, "PGHOST")
        .and_then(|e| e.get("value"))
        .and_then(Value::as_str)
        .is_some_and(|host| {
            host == CONTROLLER_DIR || host.starts_with(&format!("{CONTROLLER_DIR}/"))
        });
    let controller = if peer_socket {
        at(CONTROLLER_DIR)
    } else {
        Vec::new()
    };
    let token = at(TOKEN_PATH);

    let read_only = |m: &Map<String, Value>| json!({"name": m.get("name").cloned().unwrap_or(Value::Null), "mountPath": m.get("mountPath").cloned().unwrap_or(Value::Null), "readOnly": true});
    let volume_mounts: Vec<Value> = data
        .iter()
        .chain(wal.iter())
        .chain(tablespaces.iter().map(|(_, m)| m))
        .chain(controller.iter())
        .chain(token.iter())
        .map(|m| read_only(m))
        .collect();
    let mut volume_args: Vec<String> = wal
        .iter()
        .filter_map(|m| mount_path(m))
        .map(|p| format!("--wal-path={p}"))
        .collect();
    volume_args.extend(
        tablespaces
            .iter()
            .filter_map(|(name, m)| mount_path(m).map(|p| format!("--tablespace={name}={p}"))),
    );

    let mut args = args;
    let after_data = args
        .iter()
        .position(|a| a.starts_with("--data-path="))
        .map(|i| i + 1)
        .unwrap_or(args.len());
    args.splice(after_data..after_data, volume_args);

    // The parameters.
    if let Some(interval) = &params.probe_interval {
        set_arg(&mut args, "--probe-interval", interval);
    }
    if let Some(port) = params.http_port {
        let host = args
            .iter()
            .find_map(|a| a.strip_prefix("--http-addr="))
            .and_then(|addr| addr.rsplit_once(':').map(|(h, _)| h.to_string()))
            .unwrap_or_else(|| "0.0.0.0".to_string());
        set_arg(&mut args, "--http-addr", &format!("{host}:{port}"));
        if let Some(ports) = container.get_mut("ports").and_then(Value::as_array_mut) {
            for p in ports.iter_mut() {
                if p.get("name").and_then(Value::as_str) == Some(PORT_NAME) {
                    p["containerPort"] = json!(port);
                }
            }
        }
    }
    container.insert("args".into(), json!(args));
    container.insert("volumeMounts".into(), Value::Array(volume_mounts));
    if let Some(image) = &params.image {
        container.insert("image".into(), json!(image));
    }
    for (resource, value) in [("cpu", &params.cpu), ("memory", &params.memory)] {
        let Some(value) = value else { continue };
        let resources = container.entry("resources").or_insert_with(|| json!({}));
        for side in ["requests", "limits"] {
            if let Some(map) = resources.as_object_mut() {
                let entry = map.entry(side).or_insert_with(|| json!({}));
                if let Some(quantities) = entry.as_object_mut() {
                    quantities.insert(resource.into(), json!(value));
                }
            }
        }
    }
    if auth == Auth::Password {
        let secret = params
            .secret
            .clone()
            .unwrap_or_else(|| format!("{cluster_name}-autoresize"));
        if let Some(env) = container.get_mut("env").and_then(Value::as_array_mut) {
            for e in env.iter_mut() {
                if e.get("name").and_then(Value::as_str) != Some("PGPASSWORD") {
                    continue;
                }
                if let Some(reference) = e.pointer_mut("/valueFrom/secretKeyRef") {
                    reference["name"] = json!(secret);
                    if let Some(key) = &params.secret_key {
                        reference["key"] = json!(key);
                    }
                }
            }
        }
    }
    Ok(Value::Object(container))
}

fn set_arg(args: &mut Vec<String>, flag: &str, value: &str) {
    let prefix = format!("{flag}=");
    match args.iter_mut().find(|a| a.starts_with(&prefix)) {
        Some(arg) => *arg = format!("{prefix}{value}"),
        None => args.push(format!("{prefix}{value}")),
    }
}

/// Validation for `ValidateClusterCreate` / `ValidateClusterChange`: every
/// refused parameter of the Cluster's entry (none when it does not list the
/// plugin).
pub fn validate_cluster(template: &SidecarTemplate, cluster: &Value) -> Vec<ParamError> {
    match plugin_entry(cluster) {
        Ok(Some(entry)) => parse_parameters(&entry, template).err().unwrap_or_default(),
        Ok(None) => Vec::new(),
        Err(errors) => errors,
    }
}

#[cfg(test)]
#[path = "inject_tests.rs"]
mod tests;
