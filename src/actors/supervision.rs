//! Supervision: every actor is restarted when it stops or panics (logged and
//! counted in `cnpg_autoresize_actor_restarts_total{actor}`); an actor that
//! keeps failing turns `/healthz` red so the kubelet restarts the container.
//! Liveness: each actor beats at least once per expected period.

use crate::metrics::Metrics;
use actix::{Actor, Addr, Context};
use std::collections::{BTreeMap, VecDeque};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::oneshot;

/// Restarts within this window that mean "keeps failing".
const FAILING_RESTARTS: usize = 5;
const FAILING_WINDOW: Duration = Duration::from_secs(300);

/// Each actor beats at least once per `expected` period; `/healthz` fails
/// when one has been silent for three periods or keeps failing.
#[derive(Default)]
pub struct Liveness {
    beats: Mutex<BTreeMap<&'static str, (Instant, Duration)>>,
    failing: Mutex<BTreeMap<&'static str, usize>>,
}

impl Liveness {
    pub fn beat(&self, actor: &'static str, expected: Duration) {
        let mut beats = self.beats.lock().unwrap_or_else(|p| p.into_inner());
        beats.insert(actor, (Instant::now(), expected));
    }

    /// Actors that missed their beats or keep failing, with why.
    pub fn stalled(&self) -> Vec<(&'static str, String)> {
        let beats = self.beats.lock().unwrap_or_else(|p| p.into_inner());
        let mut out: Vec<(&'static str, String)> = beats
            .iter()
            .filter_map(|(name, (at, expected))| {
                let silent = at.elapsed();
                (silent > *expected * 3 + Duration::from_secs(1))
                    .then(|| (*name, format!("silent for {}s", silent.as_secs())))
            })
            .collect();
        let failing = self.failing.lock().unwrap_or_else(|p| p.into_inner());
        out.extend(failing.iter().map(|(name, n)| {
            (
                *name,
                format!("restarted {n} times in {}s", FAILING_WINDOW.as_secs()),
            )
        }));
        out
    }

    fn set_failing(&self, actor: &'static str, restarts: Option<usize>) {
        let mut failing = self.failing.lock().unwrap_or_else(|p| p.into_inner());
        match restarts {
            Some(n) => failing.insert(actor, n),
            None => failing.remove(actor),
        };
    }

    pub fn names(&self) -> Vec<&'static str> {
        let beats = self.beats.lock().unwrap_or_else(|p| p.into_inner());
        beats.keys().copied().collect()
    }
}

/// The address of a supervised actor's current incarnation.
pub struct Supervised<A: Actor> {
    current: Arc<Mutex<Option<Addr<A>>>>,
}

impl<A: Actor> Clone for Supervised<A> {
    fn clone(&self) -> Self {
        Supervised {
            current: self.current.clone(),
        }
    }
}

impl<A: Actor> Supervised<A> {
    pub fn addr(&self) -> Option<Addr<A>> {
        self.current
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }
}

/// Dropped with the actor (a stop, or a panic unwinding its task): tells
/// the supervisor to start a new one.
pub struct Lifeline(#[allow(dead_code)] oneshot::Sender<()>);

impl Lifeline {
    #[cfg(test)]
    pub fn for_tests(sender: oneshot::Sender<()>) -> Self {
        Lifeline(sender)
    }
}

/// Set at shutdown: stopped actors are not restarted any more.
static SHUTTING_DOWN: AtomicBool = AtomicBool::new(false);

pub fn shutting_down() {
    SHUTTING_DOWN.store(true, Ordering::SeqCst);
}

/// Starts the actor made by `factory` and starts a new one whenever it
/// stops or panics, with a capped back-off.
pub fn supervise<A, F>(
    name: &'static str,
    metrics: Arc<Metrics>,
    liveness: Arc<Liveness>,
    mut factory: F,
) -> Supervised<A>
where
    A: Actor<Context = Context<A>>,
    F: FnMut(Lifeline) -> A + 'static,
{
    let handle = Supervised {
        current: Arc::new(Mutex::new(None)),
    };
    let current = handle.current.clone();
    let (first, died) = oneshot::channel();
    *current.lock().unwrap_or_else(|p| p.into_inner()) = Some(factory(Lifeline(first)).start());
    actix_rt::spawn(async move {
        let mut died = died;
        let mut restarts: VecDeque<Instant> = VecDeque::new();
        let mut backoff = Duration::from_millis(100);
        loop {
            let _ = (&mut died).await;
            if SHUTTING_DOWN.load(Ordering::SeqCst) {
                return;
            }
            metrics.actor_restarts.with_label_values(&[name]).inc();
            let now = Instant::now();
            restarts.push_back(now);
            while restarts.front().is_some_and(|t| now - *t > FAILING_WINDOW) {
                restarts.pop_front();
            }
            let keeps_failing = restarts.len() >= FAILING_RESTARTS;
            liveness.set_failing(name, keeps_failing.then_some(restarts.len()));
            tracing::error!(
                actor = name,
                restarts = restarts.len(),
                "actor stopped; restarting it"
            );
            tokio::time::sleep(backoff).await;
            backoff = (backoff * 2).min(Duration::from_secs(10));
            let (lifeline, next) = oneshot::channel();
            died = next;
            *current.lock().unwrap_or_else(|p| p.into_inner()) =
                Some(factory(Lifeline(lifeline)).start());
            if restarts.len() < FAILING_RESTARTS {
                liveness.set_failing(name, None);
            }
        }
    });
    handle
}

/// Test-only fault injection (hidden `--fault-panic ACTOR[:N]` flag of
/// builds with the test bed; the in-pod image has neither): the named
/// actor's first tick succeeds (so it has reported once), then it panics on
/// its next N ticks, to prove supervision works.
#[cfg(feature = "testbed")]
mod faults {
    use std::collections::HashMap;
    use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
    use std::sync::OnceLock;

    static INJECTED_PANICS: OnceLock<HashMap<String, (AtomicBool, AtomicU32)>> = OnceLock::new();

    pub fn inject_panics(specs: &[(String, u32)]) {
        let map = specs
            .iter()
            .map(|(actor, n)| (actor.clone(), (AtomicBool::new(false), AtomicU32::new(*n))))
            .collect();
        let _ = INJECTED_PANICS.set(map);
    }

    /// Panics if a fault was injected for `actor` and is not used up.
    pub fn injected_panic(actor: &str) {
        let Some((ticked, left)) = INJECTED_PANICS.get().and_then(|m| m.get(actor)) else {
            return;
        };
        if !ticked.swap(true, Ordering::SeqCst) {
            return;
        }
        let taken = left.fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1));
        if taken.is_ok() {
            panic!("injected panic in actor {actor} (--fault-panic)");
        }
    }
}

#[cfg(feature = "testbed")]
pub use faults::{inject_panics, injected_panic};

/// Without the test bed there is nothing to inject.
#[cfg(not(feature = "testbed"))]
#[inline(always)]
pub fn injected_panic(_actor: &str) {}
