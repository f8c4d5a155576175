//! In-memory object store with one global resourceVersion and a bounded event history.
//!
//! All reads and writes happen under one mutex so that resourceVersions, the
//! history used for watch resumption and the live event broadcast stay in the
//! same order, like etcd revisions behind a real API server.

use std::collections::{BTreeMap, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard};

use serde_json::Value;
use tokio::sync::broadcast;

/// Watch event type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventType {
    Added,
    Modified,
    Deleted,
}

impl EventType {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Added => "ADDED",
            Self::Modified => "MODIFIED",
            Self::Deleted => "DELETED",
        }
    }
}

/// One committed change.
#[derive(Debug)]
pub struct Event {
    pub rv: u64,
    pub resource: usize,
    pub kind: EventType,
    /// Object after the change (for deletions: its last state, at the deletion's RV).
    pub object: Value,
    /// Object before the change, so selector watches can turn edits into ADDED/DELETED.
    pub prev: Option<Value>,
}

/// (resource index, namespace or "" for cluster-scoped, name)
pub type Key = (usize, String, String);

struct Inner {
    rv: u64,
    objects: BTreeMap<Key, Value>,
    history: VecDeque<Arc<Event>>,
    /// Highest RV dropped from the history; watches from an older RV get 410.
    evicted: u64,
}

pub struct Store {
    inner: Mutex<Inner>,
    live: broadcast::Sender<Arc<Event>>,
    history_cap: usize,
}

impl Store {
    pub fn new(history_cap: usize) -> Self {
        let (live, _) = broadcast::channel(4096);
        Self {
            inner: Mutex::new(Inner {
                rv: 1,
                objects: BTreeMap::new(),
                history: VecDeque::new(),
                evicted: 0,
            }),
            live,
            history_cap: history_cap.max(1),
        }
    }

    /// Starts an atomic read/write section.
    pub fn begin(&self) -> Txn<'_> {
        Txn {
            inner: self.inner.lock().unwrap_or_else(|e| e.into_inner()),
            store: self,
        }
    }
}

/// Exclusive access to the store; dropping it releases the lock.
pub struct Txn<'a> {
    inner: MutexGuard<'a, Inner>,
    store: &'a Store,
}

impl Txn<'_> {
    pub fn current_rv(&self) -> u64 {
        self.inner.rv
    }

    pub fn get(&self, key: &Key) -> Option<&Value> {
        self.inner.objects.get(key)
    }

    /// Objects of one resource, optionally restricted to one namespace, ordered by (namespace, name).
    pub fn list(&self, resource: usize, namespace: Option<&str>) -> Vec<Value> {
        let start = (resource, String::new(), String::new());
        self.inner
            .objects
            .range(start..)
            .take_while(|((r, _, _), _)| *r == resource)
            .filter(|((_, ns, _), _)| namespace.is_none_or(|want| ns == want))
            .map(|(_, v)| v.clone())
            .collect()
    }

    /// Rewrites every stored object of `resource` in place, without a new resourceVersion or an
    /// event (what a changed CRD schema does to objects read back from etcd).
    pub fn rewrite_all(&mut self, resource: usize, mut f: impl FnMut(&mut Value)) {
        let start = (resource, String::new(), String::new());
        for (_, v) in self
            .inner
            .objects
            .range_mut(start..)
            .take_while(|((r, _, _), _)| *r == resource)
        {
            f(v);
        }
    }

    /// Assigns the next resourceVersion.
    pub fn next_rv(&mut self) -> u64 {
        self.inner.rv += 1;
        self.inner.rv
    }

    /// Stores `object` (its resourceVersion already set to `rv`) and publishes the event.
    pub fn commit(&mut self, key: Key, rv: u64, kind: EventType, object: Value) {
        let prev = match kind {
            EventType::Deleted => self.inner.objects.remove(&key),
            _ => self.inner.objects.insert(key.clone(), object.clone()),
        };
        let event = Arc::new(Event {
            rv,
            resource: key.0,
            kind,
            object,
            prev,
        });
        self.inner.history.push_back(event.clone());
        while self.inner.history.len() > self.store.history_cap {
            if let Some(old) = self.inner.history.pop_front() {
                self.inner.evicted = old.rv;
            }
        }
        // No receivers is fine: nobody is watching.
        let _ = self.store.live.send(event);
    }

    /// Subscribes to live events; everything committed after this call is received.
    pub fn subscribe(&self) -> broadcast::Receiver<Arc<Event>> {
        self.store.live.subscribe()
    }

    /// Events with rv > `since`, or `Err(oldest_resumable)` if some were evicted.
    pub fn history_since(&self, since: u64) -> Result<Vec<Arc<Event>>, u64> {
        if since < self.inner.evicted {
            return Err(self.inner.evicted);
        }
        Ok(self
            .inner
            .history
            .iter()
            .filter(|e| e.rv > since)
            .cloned()
            .collect())
    }
}
