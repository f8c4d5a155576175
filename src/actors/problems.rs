//! Why the manager cannot work: flags that cannot work together, credentials
//! that cannot be read, permissions the Role lacks. In a pod the manager
//! does not exit over them (a native sidecar that exits keeps PostgreSQL
//! from starting, or out of its Service): it stays up inert — probes and
//! metrics go on, no lease is taken, nothing is written — and says why in
//! `cnpg_autoresize_config_valid`, on `/v1/status` and in an error line
//! repeated every minute.

use crate::metrics::Metrics;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::watch;

/// How often a lasting problem is logged again.
pub const REPEAT_EVERY: Duration = Duration::from_secs(60);

/// One problem: what it is about (a flag such as `--renew-interval`, or a
/// permission such as `get leases`), the value at fault, and why.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Problem {
    pub flag: String,
    pub value: String,
    pub message: String,
}

impl Problem {
    pub fn new(
        flag: impl Into<String>,
        value: impl Into<String>,
        message: impl Into<String>,
    ) -> Self {
        Problem {
            flag: flag.into(),
            value: value.into(),
            message: message.into(),
        }
    }

    fn log(&self) {
        tracing::error!(
            flag = %self.flag,
            value = %self.value,
            error = %self.message,
            "the manager cannot work and stays up inert (no lease, no writes) until this is fixed: {} {}: {}",
            self.flag,
            self.value,
            self.message
        );
    }
}

/// Where a problem was found; each source replaces its own problems.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Source {
    /// The command line and environment: fixed until the container restarts.
    Flags,
    /// The kubeconfig or the service account token.
    Credentials,
    /// What the Role allows: the preflight's reads and the planner's watches.
    Permissions,
    /// The leader's own writes of the Lease.
    Lease,
}

/// The manager's current problems, shared by everything that finds or
/// obeys them.
#[derive(Clone)]
pub struct Problems {
    by_source: Arc<Mutex<BTreeMap<Source, Vec<Problem>>>>,
    metrics: Arc<Metrics>,
    changed: watch::Sender<u64>,
}

impl Problems {
    pub fn new(metrics: Arc<Metrics>) -> Self {
        Problems {
            by_source: Arc::default(),
            metrics,
            changed: watch::channel(0).0,
        }
    }

    /// Replaces the problems `source` found; new ones are logged at once.
    pub fn set(&self, source: Source, problems: Vec<Problem>) {
        let mut all = self.by_source.lock().unwrap_or_else(|p| p.into_inner());
        let before = all.get(&source).cloned().unwrap_or_default();
        if before == problems {
            return;
        }
        for p in problems.iter().filter(|p| !before.contains(p)) {
            p.log();
        }
        if problems.is_empty() {
            all.remove(&source);
            if !before.is_empty() {
                tracing::info!(?source, "problem solved");
            }
        } else {
            all.insert(source, problems);
        }
        self.metrics.config_valid.set(i64::from(all.is_empty()));
        drop(all);
        self.changed.send_modify(|n| *n += 1);
    }

    /// Adds one problem to those `source` found.
    pub fn add(&self, source: Source, problem: Problem) {
        let mut now = self
            .by_source
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(&source)
            .cloned()
            .unwrap_or_default();
        if !now.contains(&problem) {
            now.push(problem);
            self.set(source, now);
        }
    }

    /// Every current problem.
    pub fn list(&self) -> Vec<Problem> {
        let all = self.by_source.lock().unwrap_or_else(|p| p.into_inner());
        all.values().flatten().cloned().collect()
    }

    pub fn is_valid(&self) -> bool {
        self.by_source
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .is_empty()
    }

    /// Whether `source` has found a problem.
    pub fn has(&self, source: Source) -> bool {
        self.by_source
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .contains_key(&source)
    }

    /// Whether a source other than `source` has found a problem.
    pub fn has_other_than(&self, source: Source) -> bool {
        self.by_source
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .keys()
            .any(|s| *s != source)
    }

    /// Wakes on every change.
    pub fn subscribe(&self) -> watch::Receiver<u64> {
        self.changed.subscribe()
    }

    /// Logs every lasting problem again each [`REPEAT_EVERY`], so a log
    /// search over any recent window finds why the manager is inert.
    pub async fn repeat_in_log(self) {
        let mut tick = tokio::time::interval(REPEAT_EVERY);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        tick.tick().await;
        loop {
            tick.tick().await;
            for p in self.list() {
                p.log();
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_gauge_follows_the_problems_of_every_source() {
        let metrics = Arc::new(Metrics::new("test").unwrap());
        let problems = Problems::new(metrics.clone());
        assert!(problems.is_valid());
        assert_eq!(metrics.config_valid.get(), 1);
        let lease = Problem::new("update leases", "403", "forbidden");
        problems.set(Source::Lease, vec![lease.clone()]);
        problems.set(
            Source::Flags,
            vec![Problem::new("--renew-interval", "5s", "too slow")],
        );
        assert_eq!(metrics.config_valid.get(), 0);
        assert!(problems.has_other_than(Source::Lease));
        problems.set(Source::Flags, vec![]);
        assert!(!problems.has_other_than(Source::Lease) && problems.has(Source::Lease));
        assert_eq!(problems.list(), vec![lease]);
        assert_eq!(metrics.config_valid.get(), 0);
        problems.set(Source::Lease, vec![]);
        assert_eq!(metrics.config_valid.get(), 1);
    }
}
