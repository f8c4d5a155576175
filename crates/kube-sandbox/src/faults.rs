//! Fault injection: latency (global and per verb/resource), error rates per verb/resource, outage windows, dropped watches.

use std::sync::Mutex;
use std::time::{Duration, Instant};

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde::{Deserialize, Serialize};
use tokio::sync::watch;

use crate::error::ApiError;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ErrorRate {
    pub verb: String,
    pub resource: String,
    pub rate: f64,
    pub code: u16,
}

/// Extra delay for requests matching a verb and a resource.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LatencyRule {
    pub verb: String,
    pub resource: String,
    pub ms: u64,
}

struct State {
    latency: Duration,
    latencies: Vec<LatencyRule>,
    rates: Vec<ErrorRate>,
    outage_until: Option<Instant>,
    clock_offset: jiff::SignedDuration,
    rng: StdRng,
}

/// Fault controls of a running sandbox; see the crate docs for the HTTP form.
pub struct Faults {
    state: Mutex<State>,
    /// Bumped to close every open watch stream.
    drops: watch::Sender<u64>,
}

impl Faults {
    pub(crate) fn new(seed: u64) -> Self {
        Self {
            state: Mutex::new(State {
                latency: Duration::ZERO,
                latencies: Vec::new(),
                rates: Vec::new(),
                outage_until: None,
                clock_offset: jiff::SignedDuration::ZERO,
                rng: StdRng::seed_from_u64(seed),
            }),
            drops: watch::channel(0).0,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Delay added before every API request is handled.
    pub fn set_latency(&self, d: Duration) {
        self.lock().latency = d;
    }

    /// Delay added to requests matching `verb` and `resource` (same matching as
    /// [`Faults::set_error_rate`]), on top of the global latency; zero removes the rule.
    pub fn set_latency_for(&self, verb: &str, resource: &str, d: Duration) {
        let mut st = self.lock();
        st.latencies
            .retain(|r| !(r.verb == verb && r.resource == resource));
        if !d.is_zero() {
            st.latencies.push(LatencyRule {
                verb: verb.to_string(),
                resource: resource.to_string(),
                ms: u64::try_from(d.as_millis()).unwrap_or(u64::MAX),
            });
        }
    }

    /// Fails a fraction `rate` (0.0..=1.0) of requests matching `verb` and `resource` with HTTP `code`.
    /// `verb` is one of get|list|watch|create|update|patch|delete|deletecollection or `*`;
    /// `resource` is a plural, optionally with subresource (`clusters/status`), or `*`.
    pub fn set_error_rate(&self, verb: &str, resource: &str, rate: f64, code: u16) {
        let mut st = self.lock();
        st.rates
            .retain(|r| !(r.verb == verb && r.resource == resource));
        if rate > 0.0 {
            st.rates.push(ErrorRate {
                verb: verb.to_string(),
                resource: resource.to_string(),
                rate: rate.clamp(0.0, 1.0),
                code,
            });
        }
    }

    /// Every request fails with 503 for `d`; open watches are closed now.
    pub fn outage_for(&self, d: Duration) {
        self.lock().outage_until = Some(Instant::now() + d);
        self.drop_watches();
    }

    /// Shifts the server's clock as its answers show it (the `Date` header of
    /// every response) by `offset`: an API server whose clock disagrees with
    /// its clients'.
    pub fn set_clock_offset(&self, offset: jiff::SignedDuration) {
        self.lock().clock_offset = offset;
    }

    /// Now, on the server's (possibly shifted) clock.
    pub(crate) fn server_now(&self) -> jiff::Timestamp {
        let offset = self.lock().clock_offset;
        jiff::Timestamp::now()
            .checked_add(offset)
            .unwrap_or_else(|_| jiff::Timestamp::now())
    }

    /// Closes all open watch streams now.
    pub fn drop_watches(&self) {
        self.drops.send_modify(|g| *g += 1);
    }

    /// Removes latencies, error rates, any outage and any clock offset.
    pub fn clear(&self) {
        let mut st = self.lock();
        st.clock_offset = jiff::SignedDuration::ZERO;
        st.latency = Duration::ZERO;
        st.latencies.clear();
        st.rates.clear();
        st.outage_until = None;
    }

    pub(crate) fn latency(&self) -> Duration {
        self.lock().latency
    }

    /// The delay of the first latency rule matching `verb` and `resource`.
    pub(crate) fn latency_for(&self, verb: &str, resource: &str) -> Duration {
        self.lock()
            .latencies
            .iter()
            .find(|r| matches(&r.verb, verb) && matches(&r.resource, resource))
            .map_or(Duration::ZERO, |r| Duration::from_millis(r.ms))
    }

    pub(crate) fn in_outage(&self) -> bool {
        self.lock().outage_until.is_some_and(|t| Instant::now() < t)
    }

    pub(crate) fn drop_signal(&self) -> watch::Receiver<u64> {
        self.drops.subscribe()
    }

    /// Rolls the dice for one request.
    pub(crate) fn injected_error(&self, verb: &str, resource: &str) -> Option<ApiError> {
        let mut st = self.lock();
        let rule = st
            .rates
            .iter()
            .find(|r| matches(&r.verb, verb) && matches(&r.resource, resource))
            .cloned()?;
        let roll: f64 = st.rng.random();
        (roll < rule.rate).then(|| ApiError::injected(rule.code))
    }

    pub(crate) fn snapshot(&self) -> FaultsView {
        let st = self.lock();
        FaultsView {
            latency_ms: u64::try_from(st.latency.as_millis()).unwrap_or(u64::MAX),
            latencies: st.latencies.clone(),
            error_rates: st.rates.clone(),
            outage_remaining_ms: st.outage_until.map(|t| {
                u64::try_from(t.saturating_duration_since(Instant::now()).as_millis())
                    .unwrap_or(u64::MAX)
            }),
            clock_offset_seconds: st.clock_offset.as_secs(),
        }
    }

    /// Applies a `POST /sandbox/v1/faults` body.
    pub(crate) fn apply_request(&self, req: &FaultsRequest) {
        if req.clear {
            self.clear();
        }
        if let Some(ms) = req.latency_ms {
            self.set_latency(Duration::from_millis(ms));
        }
        for r in &req.latencies {
            self.set_latency_for(&r.verb, &r.resource, Duration::from_millis(r.ms));
        }
        for r in &req.error_rates {
            self.set_error_rate(&r.verb, &r.resource, r.rate, r.code);
        }
        if let Some(ms) = req.outage_ms {
            self.outage_for(Duration::from_millis(ms));
        }
        if req.drop_watches {
            self.drop_watches();
        }
        if let Some(seconds) = req.clock_offset_seconds {
            self.set_clock_offset(jiff::SignedDuration::from_secs(seconds));
        }
    }
}

/// A rule's verb or resource matches `actual` (`*` matches everything).
fn matches(rule: &str, actual: &str) -> bool {
    rule == "*" || rule == actual
}

/// Body of `POST /sandbox/v1/faults`; every field optional, applied in field order.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub(crate) struct FaultsRequest {
    #[serde(default)]
    pub clear: bool,
    pub latency_ms: Option<u64>,
    #[serde(default)]
    pub latencies: Vec<LatencyRule>,
    #[serde(default)]
    pub error_rates: Vec<ErrorRate>,
    pub outage_ms: Option<u64>,
    #[serde(default)]
    pub drop_watches: bool,
    pub clock_offset_seconds: Option<i64>,
}

/// Answer of `GET`/`POST /sandbox/v1/faults`.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct FaultsView {
    pub latency_ms: u64,
    pub latencies: Vec<LatencyRule>,
    pub error_rates: Vec<ErrorRate>,
    pub outage_remaining_ms: Option<u64>,
    pub clock_offset_seconds: i64,
}
