//! Talking to other pods' endpoints: size-bounded JSON answers, and a capped,
//! jittered exponential back-off for peers that do not answer.

use serde::de::DeserializeOwned;
use std::time::Duration;

/// GETs `url` with `query`, under `timeout`, reading at most `max_bytes`.
pub async fn get_json<T: DeserializeOwned>(
    http: &reqwest::Client,
    url: &str,
    query: &[(&str, &str)],
    timeout: Duration,
    max_bytes: usize,
) -> Result<T, String> {
    let mut response = http
        .get(url)
        .query(query)
        .timeout(timeout)
        .send()
        .await
        .map_err(|e| format!("GET {url}: {e}"))?;
    if !response.status().is_success() {
        return Err(format!("GET {url}: {}", response.status()));
    }
    if response
        .content_length()
        .is_some_and(|n| n > max_bytes as u64)
    {
        return Err(format!("GET {url}: answer larger than {max_bytes} bytes"));
    }
    let mut body = Vec::new();
    while let Some(chunk) = response
        .chunk()
        .await
        .map_err(|e| format!("GET {url}: {e}"))?
    {
        if body.len() + chunk.len() > max_bytes {
            return Err(format!("GET {url}: answer larger than {max_bytes} bytes"));
        }
        body.extend_from_slice(&chunk);
    }
    serde_json::from_slice(&body).map_err(|e| format!("GET {url}: unreadable answer: {e}"))
}

/// Capped exponential back-off with full jitter on the upper half, so many
/// followers of one unreachable leader do not knock in step.
#[derive(Clone, Debug)]
pub struct Backoff {
    first: Duration,
    cap: Duration,
    current: Duration,
}

impl Backoff {
    pub fn new(first: Duration, cap: Duration) -> Self {
        let cap = cap.max(first);
        Backoff {
            first,
            cap,
            current: first,
        }
    }

    /// The next delay: between half and all of the current step, which doubles up to the cap.
    pub fn next_delay(&mut self) -> Duration {
        let step = self.current;
        self.current = (self.current * 2).min(self.cap);
        let half = step / 2;
        half + jitter(step - half)
    }

    pub fn reset(&mut self) {
        self.current = self.first;
    }
}

/// A random duration in `[0, d)`.
pub fn jitter(d: Duration) -> Duration {
    let millis = d.as_millis().max(1) as u64;
    Duration::from_millis(rand::random_range(0..millis))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_to_its_cap_with_jitter_and_resets() {
        let mut b = Backoff::new(Duration::from_millis(100), Duration::from_secs(2));
        let steps: Vec<Duration> = (0..8).map(|_| b.next_delay()).collect();
        let bounds = [100, 200, 400, 800, 1600, 2000, 2000, 2000];
        for (got, top) in steps.iter().zip(bounds) {
            let top = Duration::from_millis(top);
            assert!(
                *got >= top / 2 && *got <= top,
                "{got:?} not in [{:?}, {top:?}]",
                top / 2
            );
        }
        b.reset();
        assert!(b.next_delay() <= Duration::from_millis(100));
    }
}
