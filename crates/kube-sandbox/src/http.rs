//! HTTP front: routing, authentication, fault injection, authorization, accounting and the REST verbs.

use std::borrow::Cow;
use std::collections::{HashMap, HashSet};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use axum::body::{to_bytes, Bytes};
use axum::extract::{Query, Request, State};
use axum::http::{header, HeaderMap, HeaderValue, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Router;
use rand::Rng;
use serde_json::{json, Value};
use tokio::sync::oneshot;

use crate::accounting::{self, Accounting, Counters};
use crate::admission;
use crate::error::{ApiError, FieldError};
use crate::faults::{Faults, FaultsRequest};
use crate::patch::{self, PatchKind};
use crate::rbac::{self, Attributes, Rbac};
use crate::resources::{Registry, ResourceDef, CRD};
use crate::rules::{self, RuleOptions};
use crate::schema::RuleEvaluator;
use crate::selector::Selector;
use crate::store::{EventType, Key, Store, Txn};
use crate::{crd, discovery, watch};

const BODY_LIMIT: usize = 32 * 1024 * 1024;

/// State shared by all requests of one sandbox.
pub(crate) struct Shared {
    pub store: Store,
    pub registry: Registry,
    pub faults: Faults,
    pub rbac: Rbac,
    pub rules: RuleOptions,
    pub accounting: Accounting,
    pub evaluator: RwLock<Option<Arc<dyn RuleEvaluator>>>,
    pub bookmark_interval: Duration,
    pub server_address: String,
}

impl Shared {
    fn evaluator(&self) -> Option<Arc<dyn RuleEvaluator>> {
        self.evaluator
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }
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
    pub def: Arc<ResourceDef>,
    /// The version of the URL (objects are stored in the storage version).
    pub version: String,
    pub namespace: Option<String>,
    pub name: Option<String>,
    pub status: bool,
    pub watch_path: bool,
}

impl ResourceRequest {
    fn key(&self, name: &str) -> Key {
        (
            self.res,
            self.namespace.clone().unwrap_or_default(),
            name.to_string(),
        )
    }

    /// Resource with subresource, as RBAC, faults and accounting name it.
    fn resource_name(&self) -> String {
        if self.status {
            format!("{}/status", self.def.plural)
        } else {
            self.def.plural.clone()
        }
    }

    /// `apiVersion` answered to this request.
    pub fn api_version(&self) -> String {
        self.def.api_version(&self.version)
    }

    /// An object as this request's version shows it (the "None" conversion strategy);
    /// borrowed when it is already in that version, which is the common case.
    pub fn present<'v>(&self, obj: &'v Value) -> Cow<'v, Value> {
        let want = self.api_version();
        if obj.get("apiVersion").and_then(Value::as_str) == Some(want.as_str()) {
            return Cow::Borrowed(obj);
        }
        let mut out = obj.clone();
        out["apiVersion"] = json!(want);
        Cow::Owned(out)
    }

    pub fn present_in_place(&self, obj: &mut Value) {
        let want = self.api_version();
        if obj.get("apiVersion").and_then(Value::as_str) != Some(want.as_str()) {
            obj["apiVersion"] = json!(want);
        }
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
    Requests,
}

fn parse_path(path: &str, registry: &Registry) -> Result<Route, ApiError> {
    let segs: Vec<&str> = path.trim_matches('/').split('/').collect();
    let (group, version, rest) = match segs.as_slice() {
        [""] => return Ok(Route::Root),
        ["healthz" | "livez" | "readyz", ..] => return Ok(Route::Health),
        ["version"] => return Ok(Route::Version),
        ["api"] => return Ok(Route::ApiVersions),
        ["apis"] => return Ok(Route::GroupList),
        ["apis", g] => return Ok(Route::Group((*g).to_string())),
        ["sandbox", "v1", "faults"] => return Ok(Route::Faults),
        ["sandbox", "v1", "requests"] => return Ok(Route::Requests),
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
    let (res, def) = registry
        .find(group, version, plural)
        .ok_or_else(ApiError::no_route)?;
    let status = match sub {
        None => false,
        Some("status") if def.has_status(version) => true,
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
        def,
        version: version.to_string(),
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

/// What accounting needs to know about a request.
#[derive(Default)]
struct RequestInfo {
    /// An API request (not a sandbox control or health endpoint).
    api: bool,
    identity: String,
    verb: String,
    resource: String,
    /// A watch waits for its accounting row before sending events.
    watch_counters: Option<oneshot::Sender<Arc<Counters>>>,
}

/// Response warnings, recorded like apiserver's `WithWarningRecorder` filter: deduplicated,
/// at most 4096 runes of text in all (then each warning is cut to 256 runes), one
/// `Warning: 299 - "<text>"` header each.
#[derive(Default)]
pub(crate) struct Warnings {
    recorded: HashSet<String>,
    ordered: Vec<String>,
    headers: Vec<String>,
    written: usize,
    truncating: bool,
}

const WARNING_TOTAL_RUNES: usize = 4 * 1024;
const WARNING_ITEM_RUNES: usize = 256;

/// `net.NewWarningHeader(299, "-", text)`: the text quoted, `\` and `"` escaped; control
/// characters make it invalid.
fn warning_header(text: &str) -> Option<String> {
    if text.chars().any(|c| c.is_control() && c != '\t') {
        return None;
    }
    let escaped = text.replace('\\', "\\\\").replace('"', "\\\"");
    Some(format!("299 - \"{escaped}\""))
}

fn truncate_runes(text: &str, n: usize) -> (String, usize) {
    let len = text.chars().count();
    if len > n {
        (text.chars().take(n).collect(), n)
    } else {
        (text.to_string(), len)
    }
}

impl Warnings {
    pub fn add(&mut self, text: &str) {
        if text.is_empty() || (self.written >= WARNING_TOTAL_RUNES && self.truncating) {
            return;
        }
        if !self.recorded.insert(text.to_string()) {
            return;
        }
        self.ordered.push(text.to_string());
        let (text, runes) = if self.truncating {
            truncate_runes(text, WARNING_ITEM_RUNES)
        } else {
            (text.to_string(), text.chars().count())
        };
        let Some(header) = warning_header(&text) else {
            return;
        };
        if self.written + runes <= WARNING_TOTAL_RUNES || self.truncating {
            self.written += runes;
            self.headers.push(header);
            return;
        }
        // Over the budget: start again with every warning cut short.
        self.truncating = true;
        self.written = 0;
        self.headers.clear();
        for w in &self.ordered {
            let (t, runes) = truncate_runes(w, WARNING_ITEM_RUNES);
            if let Some(h) = warning_header(&t) {
                self.written += runes;
                self.headers.push(h);
            }
        }
    }

    fn apply(&self, response: &mut Response) {
        for h in &self.headers {
            if let Ok(v) = HeaderValue::from_bytes(h.as_bytes()) {
                response.headers_mut().append(header::WARNING, v);
            }
        }
    }
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
    let mut info = RequestInfo::default();
    let mut warnings = Warnings::default();
    let mut response = match dispatch(
        &shared,
        &method,
        &path,
        &params,
        &headers,
        path_identity.as_deref(),
        body,
        &mut info,
        &mut warnings,
    )
    .await
    {
        Ok(r) => r,
        Err(e) => e.into_response(),
    };
    warnings.apply(&mut response);
    // Every answer carries the server's clock, as a real API server's do
    // (clients compare it with their own).
    let date = jiff::fmt::rfc2822::DateTimePrinter::new()
        .timestamp_to_rfc9110_string(&shared.faults.server_now());
    if let Ok(value) = date
        .map_err(|e| e.to_string())
        .and_then(|d| HeaderValue::from_str(&d).map_err(|e| e.to_string()))
    {
        response.headers_mut().insert(header::DATE, value);
    }
    if info.api {
        let user_agent = headers
            .get(header::USER_AGENT)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_string();
        let counters = shared.accounting.record(accounting::Key {
            identity: info.identity,
            user_agent,
            verb: info.verb,
            resource: info.resource,
            code: response.status().as_u16(),
        });
        if let Some(tx) = info.watch_counters.take() {
            // The watch may be gone already; nothing to count then.
            let _ = tx.send(counters);
        }
    }
    tracing::debug!(%method, %path, status = response.status().as_u16(), "request");
    response
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
    info: &mut RequestInfo,
    warnings: &mut Warnings,
) -> Result<Response, ApiError> {
    if path.starts_with("/openapi") {
        // Not served: kubectl with --validate=false does not need it.
        return Ok((StatusCode::NOT_FOUND, "404 page not found\n").into_response());
    }
    let route = parse_path(path, &shared.registry);
    // Sandbox controls and health are outside the API: no auth, no faults, not counted.
    match &route {
        Ok(Route::Health) => return Ok((StatusCode::OK, "ok").into_response()),
        Ok(Route::Faults) => return faults_endpoint(shared, method, &body),
        Ok(Route::Roles(identity)) => return roles_endpoint(shared, method, identity, &body),
        Ok(Route::Requests) => return requests_endpoint(shared, method),
        _ => {}
    }
    info.api = true;
    // A bearer token wins over the path identity.
    let identity = bearer(headers).or_else(|| path_identity.map(str::to_string));
    info.identity = identity.clone().unwrap_or_default();
    let verb = match &route {
        Ok(Route::Resource(rr)) => {
            info.resource = rr.resource_name();
            verb_of(method, rr, params)
        }
        _ => {
            info.resource = path.to_string();
            Ok(method.as_str().to_lowercase())
        }
    };
    info.verb = match &verb {
        Ok(v) => v.clone(),
        Err(_) => method.as_str().to_lowercase(),
    };
    if shared.faults.in_outage() {
        return Err(ApiError::new(
            503,
            "ServiceUnavailable",
            "the server is currently unable to handle the request",
        ));
    }
    let latency = shared.faults.latency() + shared.faults.latency_for(&info.verb, &info.resource);
    if !latency.is_zero() {
        tokio::time::sleep(latency).await;
    }
    let identity = identity.ok_or_else(ApiError::unauthorized)?;
    let json = |v: Value| Ok(json_response(StatusCode::OK, &v));
    match route? {
        Route::Root => json(json!({"paths": ["/api", "/api/v1", "/apis", "/version"]})),
        Route::Version => json(discovery::version()),
        Route::ApiVersions => json(discovery::api_versions(&shared.server_address)),
        Route::GroupList => json(discovery::api_group_list(&shared.registry)),
        Route::Group(g) => discovery::api_group(&shared.registry, &g)
            .map_or_else(|| Err(ApiError::no_route()), json),
        Route::ResourceList(g, v) => discovery::resource_list(&shared.registry, &g, &v)
            .map_or_else(|| Err(ApiError::no_route()), json),
        Route::Resource(rr) => {
            let verb = verb?;
            resource(
                shared, &rr, &verb, params, headers, &body, &identity, info, warnings,
            )
        }
        Route::Namespace(name) => namespace(shared, method, name.as_deref(), &identity),
        Route::Health | Route::Faults | Route::Roles(_) | Route::Requests => {
            Err(ApiError::no_route())
        }
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

/// `GET` answers the counters, `DELETE` resets them (and answers them, zeroed).
fn requests_endpoint(shared: &Shared, method: &Method) -> Result<Response, ApiError> {
    if *method == Method::DELETE {
        shared.accounting.reset();
    } else if *method != Method::GET {
        return Err(ApiError::method_not_allowed());
    }
    let rows = serde_json::to_value(shared.accounting.snapshot())
        .map_err(|e| ApiError::internal(e.to_string()))?;
    Ok(json_response(StatusCode::OK, &json!({"requests": rows})))
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

fn verb_of(method: &Method, rr: &ResourceRequest, params: &Params) -> Result<String, ApiError> {
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
    if rr.def.namespaced && rr.namespace.is_none() && !matches!(verb, "list" | "watch") {
        return Err(ApiError::method_not_allowed());
    }
    Ok(verb.to_string())
}

/// `fieldValidation` of a write (Warn when absent, as on the real server).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum FieldValidation {
    Ignore,
    Warn,
    Strict,
}

/// Everything a write needs besides the store.
pub(crate) struct WriteCtx<'a> {
    shared: &'a Shared,
    warnings: &'a mut Warnings,
    field_validation: FieldValidation,
    dry_run: bool,
    /// Who writes: `request.userInfo.username` for admission policies.
    identity: &'a str,
    /// Who owns the fields this write sets (managedFields).
    manager: String,
}

impl WriteCtx<'_> {
    fn admission<'r>(
        &'r self,
        rr: &'r ResourceRequest,
        operation: &'r str,
        name: &'r str,
    ) -> admission::Request<'r> {
        admission::Request {
            operation,
            def: &rr.def,
            version: &rr.version,
            subresource: rr.status.then_some("status"),
            namespace: rr.namespace.as_deref(),
            name,
            identity: self.identity,
        }
    }
}

#[allow(clippy::too_many_arguments)]
fn resource(
    shared: &Arc<Shared>,
    rr: &ResourceRequest,
    verb: &str,
    params: &Params,
    headers: &HeaderMap,
    body: &[u8],
    identity: &str,
    info: &mut RequestInfo,
    warnings: &mut Warnings,
) -> Result<Response, ApiError> {
    let def = &rr.def;
    let rbac_resource = rr.resource_name();
    if let Some(err) = shared.faults.injected_error(verb, &rbac_resource) {
        return Err(err);
    }
    let selector = Selector::parse(
        params.get("labelSelector").map(String::as_str),
        params.get("fieldSelector").map(String::as_str),
        &def.plural,
    )?;
    let name_for_rbac = rr.name.as_deref().or(selector.pinned_name());
    let attrs = Attributes {
        verb,
        group: &def.group,
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
    let mut ctx = WriteCtx {
        shared,
        warnings,
        field_validation: match params.get("fieldValidation").map(String::as_str) {
            Some("Ignore") => FieldValidation::Ignore,
            Some("Strict") => FieldValidation::Strict,
            _ => FieldValidation::Warn,
        },
        dry_run: params.get("dryRun").is_some_and(|v| v == "All"),
        identity,
        manager: crate::managed::manager_of(
            params.get("fieldManager").map(String::as_str),
            headers
                .get(header::USER_AGENT)
                .and_then(|v| v.to_str().ok())
                .unwrap_or(""),
        ),
    };
    let name = rr.name.as_deref().unwrap_or("");
    match verb {
        "watch" => {
            let (tx, rx) = oneshot::channel();
            info.watch_counters = Some(tx);
            watch::start(shared.clone(), rr, selector, params, rx)
        }
        "get" => {
            let txn = shared.store.begin();
            let obj = txn
                .get(&rr.key(name))
                .ok_or_else(|| ApiError::not_found(def, name))?;
            Ok(json_response(StatusCode::OK, &rr.present(obj)))
        }
        "list" => {
            let txn = shared.store.begin();
            let items: Vec<Value> = txn
                .list(rr.res, rr.namespace.as_deref())
                .into_iter()
                .filter(|o| selector.matches(o))
                .map(|mut o| {
                    rr.present_in_place(&mut o);
                    o
                })
                .collect();
            Ok(json_response(
                StatusCode::OK,
                &list_doc(rr, txn.current_rv(), items),
            ))
        }
        "create" => {
            let obj = parse_object(body)?;
            let mut txn = shared.store.begin();
            let created = create(&mut txn, &mut ctx, rr, obj)?;
            Ok(json_response(StatusCode::CREATED, &rr.present(&created)))
        }
        "update" => {
            let obj = parse_object(body)?;
            let mut txn = shared.store.begin();
            update(&mut txn, &mut ctx, rr, name, obj)
        }
        "patch" => {
            let ct = headers
                .get(header::CONTENT_TYPE)
                .and_then(|v| v.to_str().ok())
                .unwrap_or("");
            let kind = PatchKind::from_content_type(ct, def)?;
            let mut txn = shared.store.begin();
            patch(&mut txn, &mut ctx, rr, name, kind, body, params)
        }
        "delete" => {
            let mut txn = shared.store.begin();
            delete(&mut txn, &mut ctx, rr, name, body)
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
                let gone = commit_delete(&mut txn, &ctx, rr, &n, obj);
                deleted.push(rr.present(&gone).into_owned());
            }
            let rv = txn.current_rv();
            Ok(json_response(StatusCode::OK, &list_doc(rr, rv, deleted)))
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
    let namespaced: Vec<usize> = shared
        .registry
        .snapshot()
        .into_iter()
        .filter(|(_, d)| d.namespaced)
        .map(|(i, _)| i)
        .collect();
    let txn = shared.store.begin();
    let mut names: Vec<String> = vec!["default".into()];
    for idx in namespaced {
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

pub(crate) fn list_doc(rr: &ResourceRequest, rv: u64, items: Vec<Value>) -> Value {
    json!({
        "kind": rr.def.list_kind,
        "apiVersion": rr.api_version(),
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
fn check_type(rr: &ResourceRequest, obj: &mut Value) -> Result<(), ApiError> {
    let want_av = rr.api_version();
    let def = &rr.def;
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

/// Objects are kept in the storage version.
fn to_storage_version(rr: &ResourceRequest, obj: &mut Value) {
    obj["apiVersion"] = json!(rr.def.api_version(&rr.def.storage_version().name));
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

/// Decoding of a custom resource: the request version's schema prunes, drops non-nullable
/// `null`s and defaults; each pruned field is a warning (or, with `fieldValidation=Strict`, a 400).
fn decode_custom(
    ctx: &mut WriteCtx<'_>,
    rr: &ResourceRequest,
    obj: &mut Value,
) -> Result<(), ApiError> {
    let Some(schema) = rr
        .def
        .served_version(&rr.version)
        .and_then(|v| v.schema.clone())
    else {
        return Ok(());
    };
    let pruned = schema.coerce(obj);
    match ctx.field_validation {
        FieldValidation::Ignore => {}
        FieldValidation::Strict if !pruned.is_empty() => {
            // runtime.StrictDecodingError.
            let list: Vec<String> = pruned
                .iter()
                .map(|p| format!("unknown field \"{p}\""))
                .collect();
            return Err(ApiError::bad_request(format!(
                "strict decoding error: {}",
                list.join(", ")
            )));
        }
        _ => {
            for p in &pruned {
                // schemaCoercingDecoder: fmt.Errorf(`unknown field "%s"`, path).
                ctx.warnings.add(&format!("unknown field \"{p}\""));
            }
        }
    }
    Ok(())
}

/// Validation of a custom resource write: the schema (ratcheting against `old`), then the
/// `x-kubernetes-validations` evaluator if one is plugged in; all errors in one 422.
fn validate_custom(
    ctx: &WriteCtx<'_>,
    rr: &ResourceRequest,
    name: &str,
    new: &Value,
    old: Option<&Value>,
) -> Result<(), ApiError> {
    let Some(schema) = rr
        .def
        .served_version(&rr.version)
        .and_then(|v| v.schema.clone())
    else {
        return Ok(());
    };
    let mut errs: Vec<FieldError> = schema.validate_object(new, old);
    if let Some(evaluator) = ctx.shared.evaluator() {
        errs.extend(schema.evaluate_rules(evaluator.as_ref(), new, old));
    }
    if errs.is_empty() {
        Ok(())
    } else {
        Err(ApiError::invalid(&rr.def, name, &errs))
    }
}

/// A ValidatingAdmissionPolicy or MutatingAdmissionPolicy must compile (422 otherwise).
fn check_policy_object(
    ctx: &WriteCtx<'_>,
    rr: &ResourceRequest,
    name: &str,
    obj: &Value,
) -> Result<(), ApiError> {
    let errs = admission::check_object(rr.res, obj, ctx.shared.rules.cel_compatibility_version);
    if errs.is_empty() {
        Ok(())
    } else {
        Err(ApiError::invalid(&rr.def, name, &errs))
    }
}

pub(crate) fn random_suffix(len: usize) -> String {
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
    ctx: &mut WriteCtx<'_>,
    rr: &ResourceRequest,
    mut obj: Value,
) -> Result<Value, ApiError> {
    let def = &rr.def;
    check_type(rr, &mut obj)?;
    check_namespace(rr, &mut obj)?;
    decode_custom(ctx, rr, &mut obj)?;
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
    rules::prepare_create(rr.res, def, &rr.version, &mut obj, txn)?;
    admission::mutate(txn, &ctx.admission(rr, "CREATE", &name), &mut obj, None)?;
    validate_custom(ctx, rr, &name, &obj, None)?;
    check_policy_object(ctx, rr, &name, &obj)?;
    admission::validate(txn, &ctx.admission(rr, "CREATE", &name), Some(&obj), None)?;
    // Storage comes last: admission refuses before a name is found taken.
    if txn.get(&rr.key(&name)).is_some() {
        return Err(ApiError::already_exists(def, &name));
    }
    if let Some(m) = obj.get_mut("metadata").and_then(Value::as_object_mut) {
        m.remove("deletionTimestamp");
        m.remove("deletionGracePeriodSeconds");
    }
    let crd_def = if rr.res == CRD {
        let mut crd_warnings = Vec::new();
        let d = crd::resource_of(
            &ctx.shared.registry,
            &obj,
            None,
            ctx.shared.rules.cel_compatibility_version,
            &mut crd_warnings,
        )?;
        crd_warnings.iter().for_each(|w| ctx.warnings.add(w));
        crd::prepare(&mut obj, &d, &now_rfc3339());
        Some(d)
    } else {
        None
    };
    set_meta(&mut obj, "uid", json!(new_uid()));
    set_meta(&mut obj, "creationTimestamp", json!(now_rfc3339()));
    to_storage_version(rr, &mut obj);
    crate::managed::track(None, &mut obj, &ctx.manager, None, &now_rfc3339());
    if ctx.dry_run {
        return Ok(obj);
    }
    let rv = txn.next_rv();
    set_meta(&mut obj, "resourceVersion", json!(rv.to_string()));
    txn.commit(rr.key(&name), rv, EventType::Added, obj.clone());
    if let Some(d) = crd_def {
        register(ctx.shared, txn, d);
    }
    Ok(obj)
}

/// Serves the resource of a (new or changed) CRD and brings its stored objects to the new
/// storage schema, as reading them back from etcd would (no new resourceVersion, no event).
fn register(shared: &Shared, txn: &mut Txn<'_>, def: ResourceDef) {
    let schema = def.storage_version().schema.clone();
    let idx = shared.registry.upsert(def);
    if let Some(schema) = schema {
        txn.rewrite_all(idx, |obj| {
            schema.coerce(obj);
        });
    }
}

/// Stops serving a deleted CRD's resource; its objects are deleted (with DELETED events).
fn unregister(shared: &Shared, txn: &mut Txn<'_>, crd_obj: &Value) {
    let group = crd_obj
        .pointer("/spec/group")
        .and_then(Value::as_str)
        .unwrap_or("");
    let plural = crd_obj
        .pointer("/spec/names/plural")
        .and_then(Value::as_str)
        .unwrap_or("");
    let Some(idx) = shared.registry.index_of(group, plural) else {
        return;
    };
    for mut obj in txn.list(idx, None) {
        let key: Key = (
            idx,
            obj.pointer("/metadata/namespace")
                .and_then(Value::as_str)
                .unwrap_or("")
                .to_string(),
            obj_name(&obj).to_string(),
        );
        let rv = txn.next_rv();
        set_meta(&mut obj, "resourceVersion", json!(rv.to_string()));
        txn.commit(key, rv, EventType::Deleted, obj);
    }
    shared.registry.remove(group, plural);
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

/// Shared tail of update and patch: status separation, rules, validation, no-op detection, commit.
fn write_existing(
    txn: &mut Txn<'_>,
    ctx: &mut WriteCtx<'_>,
    rr: &ResourceRequest,
    name: &str,
    old: &Value,
    mut new: Value,
) -> Result<Response, ApiError> {
    let def = &rr.def;
    if rr.status {
        rules::prepare_status_update(rr.res, def, old, &mut new)?;
    } else {
        rules::prepare_update(
            rr.res,
            def,
            &rr.version,
            old,
            &mut new,
            txn,
            ctx.shared.rules,
        )?;
    }
    check_type(rr, &mut new)?;
    to_storage_version(rr, &mut new);
    admission::mutate(txn, &ctx.admission(rr, "UPDATE", name), &mut new, Some(old))?;
    validate_custom(ctx, rr, name, &new, Some(old))?;
    if !rr.status {
        check_policy_object(ctx, rr, name, &new)?;
    }
    admission::validate(
        txn,
        &ctx.admission(rr, "UPDATE", name),
        Some(&new),
        Some(old),
    )?;
    let crd_def = if rr.res == CRD && !rr.status {
        let mut crd_warnings = Vec::new();
        let d = crd::resource_of(
            &ctx.shared.registry,
            &new,
            Some(old),
            ctx.shared.rules.cel_compatibility_version,
            &mut crd_warnings,
        )?;
        crd_warnings.iter().for_each(|w| ctx.warnings.add(w));
        let old_group = old
            .pointer("/spec/group")
            .and_then(Value::as_str)
            .unwrap_or("");
        if d.group != old_group {
            let reg = ctx.shared.registry.get(CRD);
            let errs = [FieldError::invalid_value(
                "spec.group",
                &json!(d.group),
                "field is immutable",
            )];
            return Err(match reg {
                Some(r) => ApiError::invalid(&r, name, &errs),
                None => ApiError::new(422, "Invalid", "spec.group: field is immutable"),
            });
        }
        Some(d)
    } else {
        None
    };
    if same_content(old, &new) {
        return Ok(json_response(StatusCode::OK, &rr.present(old)));
    }
    let subresource = rr.status.then_some("status");
    crate::managed::track(
        Some(old),
        &mut new,
        &ctx.manager,
        subresource,
        &now_rfc3339(),
    );
    if ctx.dry_run {
        return Ok(json_response(StatusCode::OK, &rr.present(&new)));
    }
    let rv = txn.next_rv();
    set_meta(&mut new, "resourceVersion", json!(rv.to_string()));
    txn.commit(rr.key(name), rv, EventType::Modified, new.clone());
    if let Some(d) = crd_def {
        register(ctx.shared, txn, d);
    }
    Ok(json_response(StatusCode::OK, &rr.present(&new)))
}

fn update(
    txn: &mut Txn<'_>,
    ctx: &mut WriteCtx<'_>,
    rr: &ResourceRequest,
    name: &str,
    mut obj: Value,
) -> Result<Response, ApiError> {
    let def = &rr.def;
    check_type(rr, &mut obj)?;
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
            let created = create(txn, ctx, rr, obj)?;
            return Ok(json_response(StatusCode::CREATED, &rr.present(&created)));
        }
        return Err(ApiError::not_found(def, name));
    };
    let want = obj_rv(&obj);
    if !want.is_empty() && want != obj_rv(&old) {
        return Err(ApiError::conflict(def, name));
    }
    decode_custom(ctx, rr, &mut obj)?;
    write_existing(txn, ctx, rr, name, &old, obj)
}

fn patch(
    txn: &mut Txn<'_>,
    ctx: &mut WriteCtx<'_>,
    rr: &ResourceRequest,
    name: &str,
    kind: PatchKind,
    body: &[u8],
    params: &Params,
) -> Result<Response, ApiError> {
    let def = &rr.def;
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
            let created = create(txn, ctx, rr, obj)?;
            return Ok(json_response(StatusCode::CREATED, &rr.present(&created)));
        }
        return Err(ApiError::not_found(def, name));
    };
    // Patches apply to the object as the request's version shows it.
    let mut new = patch::apply(kind, rr.present(&old).as_ref(), body)?;
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
    decode_custom(ctx, rr, &mut new)?;
    write_existing(txn, ctx, rr, name, &old, new)
}

fn commit_delete(
    txn: &mut Txn<'_>,
    ctx: &WriteCtx<'_>,
    rr: &ResourceRequest,
    name: &str,
    mut obj: Value,
) -> Value {
    if ctx.dry_run {
        return obj;
    }
    let rv = txn.next_rv();
    set_meta(&mut obj, "resourceVersion", json!(rv.to_string()));
    txn.commit(rr.key(name), rv, EventType::Deleted, obj.clone());
    if rr.res == CRD {
        unregister(ctx.shared, txn, &obj);
    }
    obj
}

fn delete(
    txn: &mut Txn<'_>,
    ctx: &mut WriteCtx<'_>,
    rr: &ResourceRequest,
    name: &str,
    body: &[u8],
) -> Result<Response, ApiError> {
    let def = &rr.def;
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
    admission::validate(txn, &ctx.admission(rr, "DELETE", name), None, Some(&old))?;
    let deleted = commit_delete(txn, ctx, rr, name, old);
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
        Ok(json_response(StatusCode::OK, &rr.present(&deleted)))
    }
}

/// Creates or replaces a CustomResourceDefinition object (as `kubectl apply` would), serving
/// its resource. Used for [`crate::SandboxConfig::crds`] and [`crate::Sandbox::register_crd`].
pub(crate) fn apply_crd(shared: &Shared, mut obj: Value) -> Result<(), ApiError> {
    let def = shared
        .registry
        .get(CRD)
        .ok_or_else(|| ApiError::internal("the CustomResourceDefinition resource is not served"))?;
    let name = obj_name(&obj).to_string();
    let rr = ResourceRequest {
        res: CRD,
        def,
        version: "v1".into(),
        namespace: None,
        name: Some(name.clone()),
        status: false,
        watch_path: false,
    };
    let mut warnings = Warnings::default();
    let mut ctx = WriteCtx {
        shared,
        warnings: &mut warnings,
        field_validation: FieldValidation::Warn,
        dry_run: false,
        identity: crate::rbac::ADMIN,
        manager: "kubectl-client-side-apply".into(),
    };
    if let Some(m) = obj.get_mut("metadata").and_then(Value::as_object_mut) {
        m.remove("resourceVersion");
    }
    let mut txn = shared.store.begin();
    if txn.get(&rr.key(&name)).is_some() {
        update(&mut txn, &mut ctx, &rr, &name, obj).map(|_| ())
    } else {
        create(&mut txn, &mut ctx, &rr, obj).map(|_| ())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths() {
        let reg = Registry::new();
        let Ok(Route::Resource(r)) = parse_path(
            "/api/v1/namespaces/ns/persistentvolumeclaims/a/status",
            &reg,
        ) else {
            panic!("no resource route");
        };
        assert_eq!(
            (r.namespace.as_deref(), r.name.as_deref(), r.status),
            (Some("ns"), Some("a"), true)
        );
        assert!(matches!(
            parse_path("/api/v1/persistentvolumeclaims", &reg),
            Ok(Route::Resource(_))
        ));
        assert!(matches!(
            parse_path("/apis/storage.k8s.io/v1/storageclasses/x", &reg),
            Ok(Route::Resource(_))
        ));
        assert!(parse_path("/api/v1/namespaces/ns/secrets", &reg).is_err());
        assert!(parse_path("/api/v1/namespaces/ns/pods/a/log", &reg).is_err());
        assert!(parse_path("/apis/storage.k8s.io/v1/namespaces/ns/storageclasses", &reg).is_err());
        assert!(matches!(
            parse_path("/apis/postgresql.cnpg.io/v1", &reg),
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

    #[test]
    fn warnings_are_deduplicated_quoted_and_truncated() {
        let mut w = Warnings::default();
        w.add(r#"unknown field "spec.a""#);
        w.add(r#"unknown field "spec.a""#);
        w.add("back\\slash");
        assert_eq!(
            w.headers,
            [
                r#"299 - "unknown field \"spec.a\"""#,
                r#"299 - "back\\slash""#
            ]
        );
        let mut w = Warnings::default();
        for i in 0..40 {
            w.add(&format!("{i:03}{}", "x".repeat(297)));
        }
        // 4096 runes hold 13 warnings of 300; then all are cut to 256 runes and the rest dropped.
        assert_eq!(w.headers.len(), 16);
        assert!(w.headers.iter().all(|h| h.len() == 256 + 8));
    }
}
