//! HTTP front: routing, authentication, fault injection, authorization and the REST verbs.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use axum::body::{to_bytes, Bytes};
use axum::extract::{Query, Request, State};
use axum::http::{header, HeaderMap, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Router;
use rand::Rng;
use serde_json::{json, Value};

use crate::error::ApiError;
use crate::faults::{Faults, FaultsRequest};
use crate::patch::{self, PatchKind};
use crate::rbac::{self, Attributes, Rbac};
use crate::resources::{self, ResourceDef, RESOURCES};
use crate::rules::{self, RuleOptions};
use crate::selector::Selector;
use crate::store::{EventType, Key, Store, Txn};
use crate::{discovery, watch};

const BODY_LIMIT: usize = 32 * 1024 * 1024;

/// State shared by all requests of one sandbox.
pub(crate) struct Shared {
    pub store: Store,
    pub faults: Faults,
    pub rbac: Rbac,
    pub rules: RuleOptions,
    pub bookmark_interval: Duration,
    pub server_address: String,
}

pub(crate) fn router(shared: Arc<Shared>) -> Router {
    Router::new().fallback(handle).with_state(shared)
}

fn json_response(code: StatusCode, body: &Value) -> Response {
    (
        code,
        [(header::CONTENT_TYPE, "application/json")],
        body.to_string(),
    )
        .into_response()
}

type Params = HashMap<String, String>;

/// A request for a served resource, after path parsing.
#[derive(Debug)]
pub(crate) struct ResourceRequest {
    pub res: usize,
    pub namespace: Option<String>,
    pub name: Option<String>,
    pub status: bool,
    pub watch_path: bool,
}

impl ResourceRequest {
    fn def(&self) -> &'static ResourceDef {
        &RESOURCES[self.res]
    }
    fn key(&self, name: &str) -> Key {
        (
            self.res,
            self.namespace.clone().unwrap_or_default(),
            name.to_string(),
        )
    }
}

enum Route {
    Root,
    Health,
    Version,
    ApiVersions,
    GroupList,
    Group(String),
    ResourceList(String, String),
    /// Namespaces are implicit: every name exists (kubectl looks one up after a 404).
    Namespace(Option<String>),
    Resource(ResourceRequest),
    Faults,
    Roles(String),
}

fn parse_path(path: &str) -> Result<Route, ApiError> {
    let segs: Vec<&str> = path.trim_matches('/').split('/').collect();
    let (group, version, rest) = match segs.as_slice() {
        [""] => return Ok(Route::Root),
        ["healthz" | "livez" | "readyz", ..] => return Ok(Route::Health),
        ["version"] => return Ok(Route::Version),
        ["api"] => return Ok(Route::ApiVersions),
        ["apis"] => return Ok(Route::GroupList),
        ["apis", g] => return Ok(Route::Group((*g).to_string())),
        ["sandbox", "v1", "faults"] => return Ok(Route::Faults),
        ["sandbox", "v1", "roles", id] => return Ok(Route::Roles((*id).to_string())),
        ["api", v, rest @ ..] => ("", *v, rest),
        ["apis", g, v, rest @ ..] => (*g, *v, rest),
        _ => return Err(ApiError::no_route()),
    };
    if rest.is_empty() {
        return Ok(Route::ResourceList(group.to_string(), version.to_string()));
    }
    let (watch_path, rest) = match rest {
        ["watch", more @ ..] => (true, more),
        _ => (false, rest),
    };
    if let ("", ["namespaces", name @ ..]) = (group, rest) {
        match name {
            [] => return Ok(Route::Namespace(None)),
            [n] => return Ok(Route::Namespace(Some((*n).to_string()))),
            _ => {}
        }
    }
    let (namespace, rest) = match rest {
        ["namespaces", ns, more @ ..] if !more.is_empty() => (Some((*ns).to_string()), more),
        _ => (None, rest),
    };
    let (plural, name, sub) = match rest {
        [p] => (*p, None, None),
        [p, n] => (*p, Some((*n).to_string()), None),
        [p, n, s] => (*p, Some((*n).to_string()), Some(*s)),
        _ => return Err(ApiError::no_route()),
    };
    let res = resources::find(group, version, plural).ok_or_else(ApiError::no_route)?;
    let def = &RESOURCES[res];
    let status = match sub {
        None => false,
        Some("status") if def.status => true,
        Some(_) => return Err(ApiError::no_route()),
    };
    if !def.namespaced && namespace.is_some() {
        return Err(ApiError::no_route());
    }
    if def.namespaced && namespace.is_none() && name.is_some() {
        return Err(ApiError::no_route());
    }
    if name.as_deref() == Some("") {
        return Err(ApiError::no_route());
    }
    Ok(Route::Resource(ResourceRequest {
        res,
        namespace,
        name,
        status,
        watch_path,
    }))
}

fn bearer(headers: &HeaderMap) -> Option<String> {
    let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let token = value.strip_prefix("Bearer ")?.trim();
    (!token.is_empty()).then(|| token.to_string())
}

async fn handle(State(shared): State<Arc<Shared>>, req: Request) -> Response {
    let method = req.method().clone();
    let path = req.uri().path().to_string();
    let params: Params = Query::<Params>::try_from_uri(req.uri())
        .map(|q| q.0)
        .unwrap_or_default();
    let headers = req.headers().clone();
    let body = match to_bytes(req.into_body(), BODY_LIMIT).await {
        Ok(b) => b,
        Err(e) => return ApiError::bad_request(format!("reading body: {e}")).into_response(),
    };
    let (path_identity, path) = split_identity_prefix(&path);
    let response = match dispatch(
        &shared,
        &method,
        &path,
        &params,
        &headers,
        path_identity.as_deref(),
        body,
    )
    .await
    {
        Ok(r) => r,
        Err(e) => e.into_response(),
    };
    tracing::debug!(%method, %path, status = response.status().as_u16(), "request");
    response
}

/// Prefix carrying the identity in the URL path, for clients (client-go/kubectl)
/// that never send credentials over plain HTTP.
pub(crate) const IDENTITY_PREFIX: &str = "/as/";

/// Splits `/as/<identity>/rest` into (identity, `/rest`).
fn split_identity_prefix(path: &str) -> (Option<String>, String) {
    let Some(rest) = path.strip_prefix(IDENTITY_PREFIX) else {
        return (None, path.to_string());
    };
    let (id, tail) = rest.split_once('/').unwrap_or((rest, ""));
    let id = percent_decode(id);
    ((!id.is_empty()).then_some(id), format!("/{tail}"))
}

fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = |b: u8| char::from(b).to_digit(16);
        match (
            bytes[i],
            bytes.get(i + 1).and_then(|b| hex(*b)),
            bytes.get(i + 2).and_then(|b| hex(*b)),
        ) {
            (b'%', Some(h), Some(l)) => {
                out.push(u8::try_from(h * 16 + l).unwrap_or(b'?'));
                i += 3;
            }
            (b, _, _) => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Percent-encodes an identity for the `/as/<identity>` prefix.
pub(crate) fn percent_encode(s: &str) -> String {
    s.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"-._~:@".contains(&b) {
                char::from(b).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

#[allow(clippy::too_many_arguments)]
async fn dispatch(
    shared: &Arc<Shared>,
    method: &Method,
    path: &str,
    params: &Params,
    headers: &HeaderMap,
    path_identity: Option<&str>,
    body: Bytes,
) -> Result<Response, ApiError> {
    if path.starts_with("/openapi") {
        // Not served: kubectl with --validate=false does not need it.
        return Ok((StatusCode::NOT_FOUND, "404 page not found\n").into_response());
    }
    let route = parse_path(path);
    // Sandbox controls and health are outside the API: no auth, no faults.
    match &route {
        Ok(Route::Health) => return Ok((StatusCode::OK, "ok").into_response()),
        Ok(Route::Faults) => return faults_endpoint(shared, method, &body),
        Ok(Route::Roles(identity)) => return roles_endpoint(shared, method, identity, &body),
        _ => {}
    }
    if shared.faults.in_outage() {
        return Err(ApiError::new(
            503,
            "ServiceUnavailable",
            "the server is currently unable to handle the request",
        ));
    }
    let latency = shared.faults.latency();
    if !latency.is_zero() {
        tokio::time::sleep(latency).await;
    }
    // A bearer token wins over the path identity; neither means 401.
    let identity = bearer(headers)
        .or_else(|| path_identity.map(str::to_string))
        .ok_or_else(ApiError::unauthorized)?;
    let json = |v: Value| Ok(json_response(StatusCode::OK, &v));
    match route? {
        Route::Root => json(json!({"paths": ["/api", "/api/v1", "/apis", "/version"]})),
        Route::Version => json(discovery::version()),
        Route::ApiVersions => json(discovery::api_versions(&shared.server_address)),
        Route::GroupList => json(discovery::api_group_list()),
        Route::Group(g) => discovery::api_group(&g).map_or_else(|| Err(ApiError::no_route()), json),
        Route::ResourceList(g, v) => {
            discovery::resource_list(&g, &v).map_or_else(|| Err(ApiError::no_route()), json)
        }
        Route::Resource(rr) => resource(shared, method, &rr, params, headers, &body, &identity),
        Route::Namespace(name) => namespace(shared, method, name.as_deref(), &identity),
        Route::Health | Route::Faults | Route::Roles(_) => Err(ApiError::no_route()),
    }
}

fn faults_endpoint(shared: &Shared, method: &Method, body: &[u8]) -> Result<Response, ApiError> {
    if *method == Method::POST {
        let req: FaultsRequest = serde_json::from_slice(body)
            .map_err(|e| ApiError::bad_request(format!("invalid faults request: {e}")))?;
        shared.faults.apply_request(&req);
    } else if *method != Method::GET {
        return Err(ApiError::method_not_allowed());
    }
    let view = serde_json::to_value(shared.faults.snapshot())
        .map_err(|e| ApiError::internal(e.to_string()))?;
    Ok(json_response(StatusCode::OK, &view))
}

fn roles_endpoint(
    shared: &Shared,
    method: &Method,
    identity: &str,
    body: &[u8],
) -> Result<Response, ApiError> {
    if *method != Method::POST {
        return Err(ApiError::method_not_allowed());
    }
    let yaml = std::str::from_utf8(body).map_err(|e| ApiError::bad_request(e.to_string()))?;
    shared
        .rbac
        .enforce(identity, yaml)
        .map_err(|e| ApiError::bad_request(format!("{e:#}")))?;
    Ok(json_response(
        StatusCode::OK,
        &json!({"identity": identity, "enforced": true}),
    ))
}

fn verb_of(
    method: &Method,
    rr: &ResourceRequest,
    params: &Params,
) -> Result<&'static str, ApiError> {
    let watch =
        rr.watch_path || matches!(params.get("watch").map(String::as_str), Some("true" | "1"));
    let verb = match (method.as_str(), rr.name.is_some()) {
        ("GET", _) if watch => "watch",
        ("GET", true) => "get",
        ("GET", false) => "list",
        ("POST", false) => "create",
        ("PUT", true) => "update",
        ("PATCH", true) => "patch",
        ("DELETE", true) => "delete",
        ("DELETE", false) => "deletecollection",
        _ => return Err(ApiError::method_not_allowed()),
    };
    if rr.status && !matches!(verb, "get" | "update" | "patch") {
        return Err(ApiError::method_not_allowed());
    }
    if rr.def().namespaced && rr.namespace.is_none() && !matches!(verb, "list" | "watch") {
        return Err(ApiError::method_not_allowed());
    }
    Ok(verb)
}

fn resource(
    shared: &Arc<Shared>,
    method: &Method,
    rr: &ResourceRequest,
    params: &Params,
    headers: &HeaderMap,
    body: &[u8],
    identity: &str,
) -> Result<Response, ApiError> {
    let def = rr.def();
    let verb = verb_of(method, rr, params)?;
    let rbac_resource = if rr.status {
        format!("{}/status", def.plural)
    } else {
        def.plural.to_string()
    };
    if let Some(err) = shared.faults.injected_error(verb, &rbac_resource) {
        return Err(err);
    }
    let selector = Selector::parse(
        params.get("labelSelector").map(String::as_str),
        params.get("fieldSelector").map(String::as_str),
        def.plural,
    )?;
    let name_for_rbac = rr.name.as_deref().or(selector.pinned_name());
    let attrs = Attributes {
        verb,
        group: def.group,
        resource: &rbac_resource,
        namespace: rr.namespace.as_deref(),
        name: name_for_rbac,
    };
    if !shared.rbac.allows(identity, &attrs) {
        return Err(ApiError::forbidden(
            def,
            rr.name.as_deref().unwrap_or(""),
            &rbac::denial_reason(identity, &attrs),
        ));
    }
    let dry_run = params.get("dryRun").is_some_and(|v| v == "All");
    let name = rr.name.as_deref().unwrap_or("");
    match verb {
        "watch" => watch::start(shared.clone(), rr, selector, params),
        "get" => {
            let txn = shared.store.begin();
            let obj = txn
                .get(&rr.key(name))
                .ok_or_else(|| ApiError::not_found(def, name))?;
            Ok(json_response(StatusCode::OK, obj))
        }
        "list" => {
            let txn = shared.store.begin();
            let items: Vec<Value> = txn
                .list(rr.res, rr.namespace.as_deref())
                .into_iter()
                .filter(|o| selector.matches(o))
                .collect();
            Ok(json_response(
                StatusCode::OK,
                &list_doc(def, txn.current_rv(), items),
            ))
        }
        "create" => {
            let obj = parse_object(body)?;
            let mut txn = shared.store.begin();
            let created = create(&mut txn, rr, obj, dry_run)?;
            Ok(json_response(StatusCode::CREATED, &created))
        }
        "update" => {
            let obj = parse_object(body)?;
            let mut txn = shared.store.begin();
            update(&mut txn, shared.rules, rr, name, obj, dry_run)
        }
        "patch" => {
            let ct = headers
                .get(header::CONTENT_TYPE)
                .and_then(|v| v.to_str().ok())
                .unwrap_or("");
            let kind = PatchKind::from_content_type(ct, def)?;
            let mut txn = shared.store.begin();
            patch(
                &mut txn,
                shared.rules,
                rr,
                name,
                kind,
                body,
                params,
                dry_run,
            )
        }
        "delete" => {
            let mut txn = shared.store.begin();
            delete(&mut txn, rr, name, body, dry_run)
        }
        "deletecollection" => {
            let mut txn = shared.store.begin();
            let victims: Vec<Value> = txn
                .list(rr.res, rr.namespace.as_deref())
                .into_iter()
                .filter(|o| selector.matches(o))
                .collect();
            let mut deleted = Vec::new();
            for obj in victims {
                let n = obj_name(&obj).to_string();
                deleted.push(commit_delete(&mut txn, rr, &n, obj, dry_run));
            }
            let rv = txn.current_rv();
            Ok(json_response(StatusCode::OK, &list_doc(def, rv, deleted)))
        }
        _ => Err(ApiError::method_not_allowed()),
    }
}

fn namespace_doc(name: &str) -> Value {
    json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}, "spec": {"finalizers": ["kubernetes"]}, "status": {"phase": "Active"}})
}

/// Read-only, implicit namespaces: `get` of any name succeeds; `list` shows those in use plus `default`.
fn namespace(
    shared: &Shared,
    method: &Method,
    name: Option<&str>,
    identity: &str,
) -> Result<Response, ApiError> {
    if *method != Method::GET {
        return Err(ApiError::method_not_allowed());
    }
    let verb = if name.is_some() { "get" } else { "list" };
    let attrs = Attributes {
        verb,
        group: "",
        resource: "namespaces",
        namespace: None,
        name,
    };
    if !shared.rbac.allows(identity, &attrs) {
        let subject = match name {
            Some(n) => format!("namespaces \"{n}\""),
            None => "namespaces".to_string(),
        };
        return Err(ApiError::new(
            403,
            "Forbidden",
            format!(
                "{subject} is forbidden: {}",
                rbac::denial_reason(identity, &attrs)
            ),
        ));
    }
    if let Some(n) = name {
        return Ok(json_response(StatusCode::OK, &namespace_doc(n)));
    }
    let txn = shared.store.begin();
    let mut names: Vec<String> = vec!["default".into()];
    for idx in (0..RESOURCES.len()).filter(|i| RESOURCES[*i].namespaced) {
        for obj in txn.list(idx, None) {
            if let Some(ns) = obj.pointer("/metadata/namespace").and_then(Value::as_str) {
                names.push(ns.to_string());
            }
        }
    }
    names.sort();
    names.dedup();
    let items: Vec<Value> = names.iter().map(|n| namespace_doc(n)).collect();
    Ok(json_response(
        StatusCode::OK,
        &json!({"kind": "NamespaceList", "apiVersion": "v1", "metadata": {"resourceVersion": txn.current_rv().to_string()}, "items": items}),
    ))
}

pub(crate) fn list_doc(def: &ResourceDef, rv: u64, items: Vec<Value>) -> Value {
    json!({
        "kind": format!("{}List", def.kind),
        "apiVersion": def.api_version(),
        "metadata": {"resourceVersion": rv.to_string()},
        "items": items,
    })
}

fn parse_object(body: &[u8]) -> Result<Value, ApiError> {
    let v: Value = serde_json::from_slice(body).or_else(|_| {
        // kubectl and other clients may send YAML; it is a superset of JSON.
        patch::parse_apply_body(body)
    })?;
    if !v.is_object() {
        return Err(ApiError::bad_request(
            "the request body must be a JSON object",
        ));
    }
    Ok(v)
}

fn obj_name(obj: &Value) -> &str {
    obj.pointer("/metadata/name")
        .and_then(Value::as_str)
        .unwrap_or("")
}

fn obj_rv(obj: &Value) -> &str {
    obj.pointer("/metadata/resourceVersion")
        .and_then(Value::as_str)
        .unwrap_or("")
}

fn set_meta(obj: &mut Value, key: &str, value: Value) {
    if !obj.get("metadata").is_some_and(Value::is_object) {
        obj["metadata"] = json!({});
    }
    obj["metadata"][key] = value;
}

/// Checks the body's apiVersion/kind against the URL and fills them in when absent.
fn check_type(def: &ResourceDef, obj: &mut Value) -> Result<(), ApiError> {
    let want_av = def.api_version();
    match obj.get("apiVersion").and_then(Value::as_str) {
        Some(av) if av != want_av => {
            return Err(ApiError::bad_request(format!(
                "the API version in the data ({av}) does not match the expected API version ({want_av})"
            )))
        }
        _ => obj["apiVersion"] = json!(want_av),
    }
    match obj.get("kind").and_then(Value::as_str) {
        Some(k) if k != def.kind => {
            return Err(ApiError::bad_request(format!(
                "the kind in the data ({k}) does not match the expected kind ({})",
                def.kind
            )))
        }
        _ => obj["kind"] = json!(def.kind),
    }
    Ok(())
}

/// Checks the body's namespace against the URL and fills it in.
fn check_namespace(rr: &ResourceRequest, obj: &mut Value) -> Result<(), ApiError> {
    let body_ns = obj
        .pointer("/metadata/namespace")
        .and_then(Value::as_str)
        .filter(|s| !s.is_empty())
        .map(str::to_string);
    match (&rr.namespace, body_ns) {
        (Some(url), Some(b)) if *url != b => Err(ApiError::bad_request(
            "the namespace of the provided object does not match the namespace sent on the request",
        )),
        (Some(url), _) => {
            set_meta(obj, "namespace", json!(url));
            Ok(())
        }
        (None, _) => {
            if let Some(m) = obj.get_mut("metadata").and_then(Value::as_object_mut) {
                m.remove("namespace");
            }
            Ok(())
        }
    }
}

fn random_suffix(len: usize) -> String {
    // The alphabet apimachinery uses for generateName (no vowels, no confusable digits).
    const ALPHABET: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";
    let mut rng = rand::rng();
    (0..len)
        .map(|_| char::from(ALPHABET[rng.random_range(0..ALPHABET.len())]))
        .collect()
}

fn new_uid() -> String {
    let b: [u8; 16] = rand::rng().random();
    let hex: String = b.iter().map(|x| format!("{x:02x}")).collect();
    format!(
        "{}-{}-4{}-a{}-{}",
        &hex[0..8],
        &hex[8..12],
        &hex[13..16],
        &hex[17..20],
        &hex[20..32]
    )
}

pub(crate) fn now_rfc3339() -> String {
    let now = jiff::Timestamp::now();
    jiff::Timestamp::from_second(now.as_second())
        .map(|t| t.strftime("%Y-%m-%dT%H:%M:%SZ").to_string())
        .unwrap_or_else(|_| "1970-01-01T00:00:00Z".into())
}

fn create(
    txn: &mut Txn<'_>,
    rr: &ResourceRequest,
    mut obj: Value,
    dry_run: bool,
) -> Result<Value, ApiError> {
    let def = rr.def();
    check_type(def, &mut obj)?;
    check_namespace(rr, &mut obj)?;
    let mut name = obj_name(&obj).to_string();
    if name.is_empty() {
        if let Some(prefix) = obj
            .pointer("/metadata/generateName")
            .and_then(Value::as_str)
        {
            let prefix = prefix.to_string();
            name = format!("{prefix}{}", random_suffix(5));
            for _ in 0..8 {
                if txn.get(&rr.key(&name)).is_none() {
                    break;
                }
                name = format!("{prefix}{}", random_suffix(5));
            }
            set_meta(&mut obj, "name", json!(name));
        }
    }
    rules::validate_name(def, &name)?;
    if txn.get(&rr.key(&name)).is_some() {
        return Err(ApiError::already_exists(def, &name));
    }
    rules::prepare_create(rr.res, &mut obj, txn)?;
    if let Some(m) = obj.get_mut("metadata").and_then(Value::as_object_mut) {
        m.remove("deletionTimestamp");
        m.remove("deletionGracePeriodSeconds");
    }
    set_meta(&mut obj, "uid", json!(new_uid()));
    set_meta(&mut obj, "creationTimestamp", json!(now_rfc3339()));
    if dry_run {
        return Ok(obj);
    }
    let rv = txn.next_rv();
    set_meta(&mut obj, "resourceVersion", json!(rv.to_string()));
    txn.commit(rr.key(&name), rv, EventType::Added, obj.clone());
    Ok(obj)
}

/// Objects equal apart from resourceVersion/managedFields: the write is a no-op.
fn same_content(a: &Value, b: &Value) -> bool {
    let strip = |v: &Value| {
        let mut v = v.clone();
        if let Some(m) = v.get_mut("metadata").and_then(Value::as_object_mut) {
            m.remove("resourceVersion");
            m.remove("managedFields");
        }
        v
    };
    strip(a) == strip(b)
}

/// Shared tail of update and patch: status separation, rules, no-op detection, commit.
fn write_existing(
    txn: &mut Txn<'_>,
    opts: RuleOptions,
    rr: &ResourceRequest,
    name: &str,
    old: &Value,
    mut new: Value,
    dry_run: bool,
) -> Result<Response, ApiError> {
    let def = rr.def();
    if rr.status {
        rules::prepare_status_update(old, &mut new);
    } else {
        rules::prepare_update(rr.res, old, &mut new, txn, opts)?;
    }
    if same_content(old, &new) {
        return Ok(json_response(StatusCode::OK, old));
    }
    check_type(def, &mut new)?;
    if dry_run {
        return Ok(json_response(StatusCode::OK, &new));
    }
    let rv = txn.next_rv();
    set_meta(&mut new, "resourceVersion", json!(rv.to_string()));
    txn.commit(rr.key(name), rv, EventType::Modified, new.clone());
    Ok(json_response(StatusCode::OK, &new))
}

fn update(
    txn: &mut Txn<'_>,
    opts: RuleOptions,
    rr: &ResourceRequest,
    name: &str,
    mut obj: Value,
    dry_run: bool,
) -> Result<Response, ApiError> {
    let def = rr.def();
    check_type(def, &mut obj)?;
    check_namespace(rr, &mut obj)?;
    match obj_name(&obj) {
        "" => set_meta(&mut obj, "name", json!(name)),
        n if n != name => {
            return Err(ApiError::bad_request(format!(
                "the name of the object ({n}) does not match the name on the URL ({name})"
            )))
        }
        _ => {}
    }
    let Some(old) = txn.get(&rr.key(name)).cloned() else {
        // Leases allow create-on-update, like the real LeaseStrategy.
        if def.plural == "leases" && !rr.status {
            let created = create(txn, rr, obj, dry_run)?;
            return Ok(json_response(StatusCode::CREATED, &created));
        }
        return Err(ApiError::not_found(def, name));
    };
    let want = obj_rv(&obj);
    if !want.is_empty() && want != obj_rv(&old) {
        return Err(ApiError::conflict(def, name));
    }
    write_existing(txn, opts, rr, name, &old, obj, dry_run)
}

#[allow(clippy::too_many_arguments)]
fn patch(
    txn: &mut Txn<'_>,
    opts: RuleOptions,
    rr: &ResourceRequest,
    name: &str,
    kind: PatchKind,
    body: &[u8],
    params: &Params,
    dry_run: bool,
) -> Result<Response, ApiError> {
    let def = rr.def();
    if kind == PatchKind::Apply && params.get("fieldManager").is_none_or(|f| f.is_empty()) {
        return Err(ApiError::new(
            422,
            "Invalid",
            "PatchOptions.meta.k8s.io \"\" is invalid: fieldManager: Required value: is required for apply patch",
        ));
    }
    let Some(old) = txn.get(&rr.key(name)).cloned() else {
        if kind == PatchKind::Apply && !rr.status {
            let mut obj = patch::parse_apply_body(body)?;
            if !obj.is_object() {
                return Err(ApiError::bad_request("the request body must be an object"));
            }
            set_meta(&mut obj, "name", json!(name));
            let created = create(txn, rr, obj, dry_run)?;
            return Ok(json_response(StatusCode::CREATED, &created));
        }
        return Err(ApiError::not_found(def, name));
    };
    let new = patch::apply(kind, &old, body)?;
    if !new.is_object() {
        return Err(ApiError::new(
            422,
            "Invalid",
            "the patched object is not a JSON object",
        ));
    }
    // A resourceVersion left in the result is a precondition, as on the real server.
    let want = obj_rv(&new);
    if !want.is_empty() && want != obj_rv(&old) {
        return Err(ApiError::conflict(def, name));
    }
    write_existing(txn, opts, rr, name, &old, new, dry_run)
}

fn commit_delete(
    txn: &mut Txn<'_>,
    rr: &ResourceRequest,
    name: &str,
    mut obj: Value,
    dry_run: bool,
) -> Value {
    if dry_run {
        return obj;
    }
    let rv = txn.next_rv();
    set_meta(&mut obj, "resourceVersion", json!(rv.to_string()));
    txn.commit(rr.key(name), rv, EventType::Deleted, obj.clone());
    obj
}

fn delete(
    txn: &mut Txn<'_>,
    rr: &ResourceRequest,
    name: &str,
    body: &[u8],
    dry_run: bool,
) -> Result<Response, ApiError> {
    let def = rr.def();
    let old = txn
        .get(&rr.key(name))
        .cloned()
        .ok_or_else(|| ApiError::not_found(def, name))?;
    let opts: Value = if body.iter().all(u8::is_ascii_whitespace) {
        Value::Null
    } else {
        serde_json::from_slice(body)
            .map_err(|e| ApiError::bad_request(format!("invalid DeleteOptions: {e}")))?
    };
    if let Some(want) = opts
        .pointer("/preconditions/resourceVersion")
        .and_then(Value::as_str)
    {
        if want != obj_rv(&old) {
            return Err(ApiError::conflict_msg(def, name, &format!(
                "Precondition failed: ResourceVersion in precondition: {want}, ResourceVersion in object meta: {}",
                obj_rv(&old)
            )));
        }
    }
    let uid = old
        .pointer("/metadata/uid")
        .and_then(Value::as_str)
        .unwrap_or("")
        .to_string();
    if let Some(want) = opts.pointer("/preconditions/uid").and_then(Value::as_str) {
        if want != uid {
            return Err(ApiError::conflict_msg(
                def,
                name,
                &format!(
                    "Precondition failed: UID in precondition: {want}, UID in object meta: {uid}"
                ),
            ));
        }
    }
    let deleted = commit_delete(txn, rr, name, old, dry_run);
    if def.strategic {
        // Built-in types answer an immediate deletion with a Success Status.
        Ok(json_response(
            StatusCode::OK,
            &json!({
                "kind": "Status",
                "apiVersion": "v1",
                "metadata": {},
                "status": "Success",
                "details": {"name": name, "group": def.group, "kind": def.plural, "uid": uid},
            }),
        ))
    } else {
        Ok(json_response(StatusCode::OK, &deleted))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths() {
        let Ok(Route::Resource(r)) =
            parse_path("/api/v1/namespaces/ns/persistentvolumeclaims/a/status")
        else {
            panic!("no resource route");
        };
        assert_eq!(
            (r.namespace.as_deref(), r.name.as_deref(), r.status),
            (Some("ns"), Some("a"), true)
        );
        assert!(matches!(
            parse_path("/api/v1/persistentvolumeclaims"),
            Ok(Route::Resource(_))
        ));
        assert!(matches!(
            parse_path("/apis/storage.k8s.io/v1/storageclasses/x"),
            Ok(Route::Resource(_))
        ));
        assert!(parse_path("/api/v1/namespaces/ns/secrets").is_err());
        assert!(parse_path("/api/v1/namespaces/ns/pods/a/log").is_err());
        assert!(parse_path("/apis/storage.k8s.io/v1/namespaces/ns/storageclasses").is_err());
        assert!(matches!(
            parse_path("/apis/postgresql.cnpg.io/v1"),
            Ok(Route::ResourceList(..))
        ));
    }

    #[test]
    fn identity_prefix() {
        let id = "system:serviceaccount:ns:sa x";
        let path = format!("/as/{}/api/v1", percent_encode(id));
        assert_eq!(
            split_identity_prefix(&path),
            (Some(id.to_string()), "/api/v1".to_string())
        );
        assert_eq!(split_identity_prefix("/api"), (None, "/api".to_string()));
    }
}
