//! Watch streams: newline-delimited JSON events over a chunked response.

use std::collections::HashMap;
use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use futures::channel::mpsc;
use futures::SinkExt;
use serde_json::{json, Value};
use tokio::sync::broadcast::error::{RecvError, TryRecvError};
use tokio::sync::oneshot;

use crate::accounting::Counters;
use crate::error::ApiError;
use crate::http::{ResourceRequest, Shared};
use crate::selector::Selector;
use crate::store::{Event, EventType};

/// Cap for watches without `timeoutSeconds` (the real server picks 30-60 minutes).
const DEFAULT_TIMEOUT: Duration = Duration::from_secs(1800);

struct Filter {
    res: usize,
    namespace: Option<String>,
    selector: Selector,
    /// The watch's apiVersion when it differs from the storage version.
    api_version: Option<String>,
}

impl Filter {
    fn visible(&self, obj: &Value) -> bool {
        let ns_ok = self.namespace.as_deref().is_none_or(|ns| {
            obj.pointer("/metadata/namespace").and_then(Value::as_str) == Some(ns)
        });
        ns_ok && self.selector.matches(obj)
    }

    /// The object as this watch's version shows it.
    fn present(&self, obj: &Value) -> Value {
        let mut out = obj.clone();
        if let Some(av) = &self.api_version {
            out["apiVersion"] = json!(av);
        }
        out
    }

    /// The event this watcher sees, if any: selector transitions become ADDED/DELETED like on the real server.
    fn translate(&self, ev: &Event) -> Option<(EventType, Value)> {
        let (kind, mut obj) = self.translate_raw(ev)?;
        if let Some(av) = &self.api_version {
            obj["apiVersion"] = json!(av);
        }
        Some((kind, obj))
    }

    fn translate_raw(&self, ev: &Event) -> Option<(EventType, Value)> {
        if ev.resource != self.res {
            return None;
        }
        let now = self.visible(&ev.object);
        let before = ev.prev.as_ref().is_some_and(|p| self.visible(p));
        match ev.kind {
            EventType::Added => now.then(|| (EventType::Added, ev.object.clone())),
            EventType::Deleted => now.then(|| (EventType::Deleted, ev.object.clone())),
            EventType::Modified => match (before, now) {
                (true, true) => Some((EventType::Modified, ev.object.clone())),
                (false, true) => Some((EventType::Added, ev.object.clone())),
                (true, false) => Some((EventType::Deleted, ev.object.clone())),
                (false, false) => None,
            },
        }
    }
}

/// One event line and whether it is a BOOKMARK (for accounting).
type Line = (Bytes, bool);

fn line(kind: &str, object: &Value) -> Line {
    let mut s = json!({"type": kind, "object": object}).to_string();
    s.push('\n');
    (Bytes::from(s), kind == "BOOKMARK")
}

fn bookmark(kind: &str, api_version: &str, rv: u64, initial_end: bool) -> Line {
    let mut meta = json!({"resourceVersion": rv.to_string()});
    if initial_end {
        meta["annotations"] = json!({"k8s.io/initial-events-end": "true"});
    }
    line(
        "BOOKMARK",
        &json!({"kind": kind, "apiVersion": api_version, "metadata": meta}),
    )
}

fn invalid_list_options(msg: &str) -> ApiError {
    ApiError::new(
        422,
        "Invalid",
        format!("ListOptions.meta.k8s.io \"\" is invalid: {msg}"),
    )
}

/// Opens a watch; the initial events (or a 410 ERROR event) are computed under the store lock.
pub(crate) fn start(
    shared: Arc<Shared>,
    rr: &ResourceRequest,
    selector: Selector,
    params: &HashMap<String, String>,
    counters: oneshot::Receiver<Arc<Counters>>,
) -> Result<Response, ApiError> {
    let kind = rr.def.kind.clone();
    let api_version = rr.api_version();
    let bookmarks = params
        .get("allowWatchBookmarks")
        .is_some_and(|v| v == "true" || v == "1");
    let send_initial = params.get("sendInitialEvents").map(String::as_str);
    let timeout = match params.get("timeoutSeconds") {
        Some(t) => Duration::from_secs(
            t.parse::<u64>()
                .map_err(|_| ApiError::bad_request(format!("invalid timeoutSeconds: {t:?}")))?,
        ),
        None => DEFAULT_TIMEOUT,
    };
    let rv_param = params
        .get("resourceVersion")
        .map(String::as_str)
        .unwrap_or("");
    if send_initial == Some("true") {
        if params.get("resourceVersionMatch").map(String::as_str) != Some("NotOlderThan") {
            return Err(invalid_list_options(
                "resourceVersionMatch: Forbidden: sendInitialEvents requires setting resourceVersionMatch to NotOlderThan",
            ));
        }
        if !bookmarks {
            return Err(invalid_list_options(
                "allowWatchBookmarks: Forbidden: sendInitialEvents requires setting allowWatchBookmarks to true",
            ));
        }
    }
    let storage_av = rr.def.api_version(&rr.def.storage_version().name);
    let filter = Filter {
        res: rr.res,
        namespace: rr.namespace.clone(),
        selector,
        api_version: (storage_av != api_version).then(|| api_version.clone()),
    };

    let mut initial: Vec<Line> = Vec::new();
    let (mut rx, start_rv, gone) = {
        let txn = shared.store.begin();
        let rx = txn.subscribe();
        let current = txn.current_rv();
        let synthetic = send_initial == Some("true")
            || (send_initial.is_none() && (rv_param.is_empty() || rv_param == "0"));
        if synthetic {
            for obj in txn.list(rr.res, rr.namespace.as_deref()) {
                if filter.visible(&obj) {
                    initial.push(line("ADDED", &filter.present(&obj)));
                }
            }
            if send_initial == Some("true") {
                initial.push(bookmark(&kind, &api_version, current, true));
            }
            (rx, current, false)
        } else {
            let since: u64 = rv_param.parse().map_err(|_| {
                invalid_list_options(&format!(
                    "resourceVersion: Invalid value: {rv_param:?}: must be a number"
                ))
            })?;
            match txn.history_since(since) {
                Ok(events) => {
                    for ev in &events {
                        if let Some((kind, obj)) = filter.translate(ev) {
                            initial.push(line(kind.as_str(), &obj));
                        }
                    }
                    (rx, current.max(since), false)
                }
                Err(oldest) => {
                    let status = ApiError::gone(since, oldest + 1).to_status();
                    initial.push(line("ERROR", &status));
                    (rx, current, true)
                }
            }
        }
    };

    let (mut tx, body_rx) = mpsc::channel::<Result<Bytes, Infallible>>(64);
    let mut drops = shared.faults.drop_signal();
    drops.borrow_and_update();
    tokio::spawn(async move {
        // The accounting row arrives once the request is counted (dropped sender: not counted).
        let counters = counters.await.ok();
        let count = |bookmark: bool| {
            if let Some(c) = &counters {
                c.watch_event(bookmark);
            }
        };
        // Counted before sending, so a client that saw an event sees it counted.
        for (chunk, is_bookmark) in initial {
            count(is_bookmark);
            if tx.send(Ok(chunk)).await.is_err() {
                return;
            }
        }
        if gone {
            return;
        }
        let deadline = tokio::time::sleep(timeout);
        tokio::pin!(deadline);
        let mut ticker =
            tokio::time::interval(shared.bookmark_interval.max(Duration::from_millis(10)));
        ticker.tick().await;
        let mut last_rv = start_rv;
        loop {
            let mut out: Vec<Line> = Vec::new();
            tokio::select! {
                _ = &mut deadline => return,
                _ = drops.changed() => return,
                _ = ticker.tick(), if bookmarks => {
                    // Drain under the lock so the bookmark's RV covers every event sent before it.
                    let (rv, pending) = {
                        let txn = shared.store.begin();
                        let mut pending = Vec::new();
                        loop {
                            match rx.try_recv() {
                                Ok(ev) => pending.push(ev),
                                Err(TryRecvError::Lagged(_)) => return,
                                Err(_) => break,
                            }
                        }
                        (txn.current_rv(), pending)
                    };
                    for ev in &pending {
                        if ev.rv <= last_rv {
                            continue;
                        }
                        last_rv = ev.rv;
                        if let Some((kind, obj)) = filter.translate(ev) {
                            out.push(line(kind.as_str(), &obj));
                        }
                    }
                    last_rv = last_rv.max(rv);
                    out.push(bookmark(&kind, &api_version, last_rv, false));
                }
                ev = rx.recv() => match ev {
                    Ok(ev) if ev.rv > last_rv => {
                        last_rv = ev.rv;
                        if let Some((kind, obj)) = filter.translate(&ev) {
                            out.push(line(kind.as_str(), &obj));
                        }
                    }
                    Ok(_) => {}
                    // Lagged: events were lost, so end the stream; the client resumes from its last RV.
                    Err(RecvError::Lagged(_) | RecvError::Closed) => return,
                },
            }
            for (chunk, is_bookmark) in out {
                count(is_bookmark);
                if tx.send(Ok(chunk)).await.is_err() {
                    return;
                }
            }
        }
    });
    Ok((
        StatusCode::OK,
        [(header::CONTENT_TYPE, "application/json")],
        Body::from_stream(body_rx),
    )
        .into_response())
}
