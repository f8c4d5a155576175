//! Request accounting for benchmarks: API requests counted by identity, User-Agent, verb,
//! resource (with subresource) and response code, and watch events sent.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use serde::Serialize;

/// What one row counts.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(crate) struct Key {
    pub identity: String,
    pub user_agent: String,
    pub verb: String,
    pub resource: String,
    pub code: u16,
}

#[derive(Debug, Default)]
pub(crate) struct Counters {
    requests: AtomicU64,
    watch_events: AtomicU64,
    watch_bookmarks: AtomicU64,
}

impl Counters {
    /// One event line written on a watch opened under this row.
    pub fn watch_event(&self, bookmark: bool) {
        let c = if bookmark {
            &self.watch_bookmarks
        } else {
            &self.watch_events
        };
        c.fetch_add(1, Ordering::Relaxed);
    }
}

/// One row of [`crate::Sandbox::requests`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct RequestCount {
    /// The authenticated identity (bearer token or `/as/` prefix); empty when there was none.
    pub identity: String,
    /// The `User-Agent` header, empty when absent.
    pub user_agent: String,
    /// `get`, `list`, `watch`, `create`, `update`, `patch`, `delete`, `deletecollection`;
    /// for non-resource requests (discovery) the HTTP method in lower case.
    pub verb: String,
    /// Plural with subresource (`clusters/status`), or the URL path of a non-resource request.
    pub resource: String,
    /// HTTP status code of the answer (a watch counts once, when opened).
    pub code: u16,
    pub count: u64,
    /// Events (ADDED, MODIFIED, DELETED, ERROR) sent on the watches counted in this row.
    pub watch_events: u64,
    /// BOOKMARK events sent on those watches.
    pub watch_bookmarks: u64,
}

/// The counters of one sandbox. Counting is a map lookup and an atomic add per request.
#[derive(Default)]
pub(crate) struct Accounting {
    rows: Mutex<HashMap<Key, Arc<Counters>>>,
}

impl Accounting {
    /// Counts one request; the returned counters receive the events of a watch.
    pub fn record(&self, key: Key) -> Arc<Counters> {
        let counters = {
            let mut rows = self.rows.lock().unwrap_or_else(|e| e.into_inner());
            rows.entry(key).or_default().clone()
        };
        counters.requests.fetch_add(1, Ordering::Relaxed);
        counters
    }

    /// Rows with something counted, sorted by identity, user agent, resource, verb and code.
    pub fn snapshot(&self) -> Vec<RequestCount> {
        let rows = self.rows.lock().unwrap_or_else(|e| e.into_inner());
        let mut out: Vec<RequestCount> = rows
            .iter()
            .map(|(k, c)| RequestCount {
                identity: k.identity.clone(),
                user_agent: k.user_agent.clone(),
                verb: k.verb.clone(),
                resource: k.resource.clone(),
                code: k.code,
                count: c.requests.load(Ordering::Relaxed),
                watch_events: c.watch_events.load(Ordering::Relaxed),
                watch_bookmarks: c.watch_bookmarks.load(Ordering::Relaxed),
            })
            .filter(|r| r.count + r.watch_events + r.watch_bookmarks > 0)
            .collect();
        out.sort_by(|a, b| {
            (&a.identity, &a.user_agent, &a.resource, &a.verb, a.code).cmp(&(
                &b.identity,
                &b.user_agent,
                &b.resource,
                &b.verb,
                b.code,
            ))
        });
        out
    }

    /// Zeroes every counter; open watches keep counting into their (now zeroed) rows.
    pub fn reset(&self) {
        let rows = self.rows.lock().unwrap_or_else(|e| e.into_inner());
        for c in rows.values() {
            c.requests.store(0, Ordering::Relaxed);
            c.watch_events.store(0, Ordering::Relaxed);
            c.watch_bookmarks.store(0, Ordering::Relaxed);
        }
    }
}
