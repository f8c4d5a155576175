//! Liveness of the actors for `/healthz`, and restart accounting.

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Each actor beats at least once per `expected` period; `/healthz` fails
/// when one has been silent for three periods.
#[derive(Default)]
pub struct Liveness {
    beats: Mutex<BTreeMap<&'static str, (Instant, Duration)>>,
}

impl Liveness {
    pub fn beat(&self, actor: &'static str, expected: Duration) {
        let mut beats = self.beats.lock().unwrap_or_else(|p| p.into_inner());
        beats.insert(actor, (Instant::now(), expected));
    }

    /// Actors that missed their beats, with how long they have been silent.
    pub fn stalled(&self) -> Vec<(&'static str, Duration)> {
        let beats = self.beats.lock().unwrap_or_else(|p| p.into_inner());
        beats
            .iter()
            .filter_map(|(name, (at, expected))| {
                let silent = at.elapsed();
                (silent > *expected * 3 + Duration::from_secs(1)).then_some((*name, silent))
            })
            .collect()
    }

    pub fn names(&self) -> Vec<&'static str> {
        let beats = self.beats.lock().unwrap_or_else(|p| p.into_inner());
        beats.keys().copied().collect()
    }
}

/// Whether the API server answered recently (readiness).
#[derive(Default)]
pub struct ApiReachability(std::sync::atomic::AtomicBool);

impl ApiReachability {
    pub fn set(&self, reachable: bool) {
        self.0
            .store(reachable, std::sync::atomic::Ordering::Relaxed);
    }

    pub fn get(&self) -> bool {
        self.0.load(std::sync::atomic::Ordering::Relaxed)
    }
}
