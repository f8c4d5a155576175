//! The growth forecast (docs/reference/decision.md#the-growth-forecast): each
//! instance fits the growth rate of a volume's used bytes by least squares
//! over the last 30 minutes of its own samples. With under 5 minutes of
//! samples, or a rate <= 0, there is no forecast. Pure: the caller passes
//! each sample's monotonic time.

use std::collections::VecDeque;
use std::time::Duration;

/// Samples older than this are forgotten.
pub const WINDOW: Duration = Duration::from_secs(30 * 60);
/// No forecast before the samples span this long.
pub const MIN_SPAN: Duration = Duration::from_secs(5 * 60);
/// At most one sample is kept per this much time (probes run up to 4 Hz).
const RESOLUTION: Duration = Duration::from_secs(1);

/// How much history a forecast uses, and needs.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct ForecastSpan {
    /// Samples older than this are forgotten (by default 30 minutes, as documented).
    pub window: Duration,
    /// No forecast before the samples span this long (by default 5 minutes,
    /// as documented).
    pub min_span: Duration,
}

impl Default for ForecastSpan {
    fn default() -> Self {
        ForecastSpan {
            window: WINDOW,
            min_span: MIN_SPAN,
        }
    }
}

/// The recent samples of one volume: (seconds since an arbitrary origin, used bytes).
#[derive(Clone, Debug, Default)]
pub struct GrowthWindow {
    span: ForecastSpan,
    samples: VecDeque<(f64, f64)>,
}

impl GrowthWindow {
    pub fn with_span(span: ForecastSpan) -> Self {
        GrowthWindow {
            span,
            samples: VecDeque::new(),
        }
    }

    /// Adds a sample taken at `at` (monotonic, non-decreasing).
    pub fn push(&mut self, at: Duration, used_bytes: u64) {
        let t = at.as_secs_f64();
        let several = self.samples.len() > 1;
        match self.samples.back_mut() {
            // Within the resolution the newest sample replaces the last one.
            Some(last) if t - last.0 < RESOLUTION.as_secs_f64() && several => {
                *last = (t, used_bytes as f64);
            }
            _ => self.samples.push_back((t, used_bytes as f64)),
        }
        let oldest = t - self.span.window.as_secs_f64();
        while self.samples.front().is_some_and(|s| s.0 < oldest) {
            self.samples.pop_front();
        }
    }

    /// Forgets everything (the volume could not be read).
    pub fn clear(&mut self) {
        self.samples.clear();
    }

    /// The fitted growth in bytes per second, when there is a forecast.
    pub fn rate(&self) -> Option<f64> {
        let (first, last) = (self.samples.front()?, self.samples.back()?);
        if last.0 - first.0 < self.span.min_span.as_secs_f64() {
            return None;
        }
        least_squares_slope(self.samples.iter().copied()).filter(|r| *r > 0.0)
    }

    pub fn len(&self) -> usize {
        self.samples.len()
    }

    pub fn is_empty(&self) -> bool {
        self.samples.is_empty()
    }
}

/// The slope of the least-squares line through `points`; centred sums keep
/// it exact enough for byte counts in the terabytes.
pub fn least_squares_slope(points: impl Iterator<Item = (f64, f64)> + Clone) -> Option<f64> {
    let (n, sum_t, sum_y) = points.clone().fold((0.0, 0.0, 0.0), |(n, st, sy), (t, y)| {
        (n + 1.0, st + t, sy + y)
    });
    if n < 2.0 {
        return None;
    }
    let (mean_t, mean_y) = (sum_t / n, sum_y / n);
    let (cov, var) = points.fold((0.0, 0.0), |(c, v), (t, y)| {
        let dt = t - mean_t;
        (c + dt * (y - mean_y), v + dt * dt)
    });
    (var > 0.0).then(|| cov / var)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn window(samples: impl IntoIterator<Item = (u64, u64)>) -> GrowthWindow {
        let mut w = GrowthWindow::default();
        for (secs, used) in samples {
            w.push(Duration::from_secs(secs), used);
        }
        w
    }

    #[test]
    fn a_constant_rate_is_recovered_exactly() {
        let w = window((0..=600).map(|s| (s, 1_000_000_000 + s * 52_428_800)));
        assert_eq!(w.rate(), Some(52_428_800.0));
    }

    #[test]
    fn no_forecast_before_five_minutes_or_without_growth() {
        let growing = |span: u64| window((0..=span).map(|s| (s, s * 1000)));
        assert_eq!(growing(299).rate(), None);
        assert_eq!(growing(300).rate(), Some(1000.0));
        assert_eq!(window((0..=600).map(|s| (s, 5_000))).rate(), None, "flat");
        assert_eq!(
            window((0..=600).map(|s| (s, 10_000_000 - s * 1000))).rate(),
            None,
            "shrinking"
        );
    }

    #[test]
    fn only_the_last_thirty_minutes_count() {
        // Fast growth an hour ago, then a slow steady rate for 30 minutes.
        let mut w = window((0..1800).map(|s| (s, s * 1_000_000)));
        let base = 1800 * 1_000_000;
        for s in 1800..=5400 {
            w.push(Duration::from_secs(s), base + (s - 1800) * 1000);
        }
        let rate = w.rate().unwrap();
        assert!((rate - 1000.0).abs() < 1e-6, "{rate}");
        assert!(w.len() <= 1802, "{} samples kept", w.len());
    }

    #[test]
    fn a_bulk_delete_lowers_or_cancels_the_forecast() {
        // 1 MB/s for 20 minutes, then half the data is deleted at once.
        let mut samples: Vec<(u64, u64)> = (0..1200)
            .map(|s| (s, 10_000_000_000 + s * 1_000_000))
            .collect();
        samples.extend((1200..=1500).map(|s| (s, 5_000_000_000 + s * 1_000_000)));
        let rate = window(samples).rate();
        assert!(rate.is_none_or(|r| r < 1_000_000.0), "{rate:?}");
    }

    #[test]
    fn samples_closer_than_a_second_are_merged() {
        let mut w = GrowthWindow::default();
        for ms in (0..10_000).step_by(250) {
            w.push(Duration::from_millis(ms), ms);
        }
        assert!(w.len() <= 12, "{}", w.len());
    }

    proptest! {
        /// Symmetric noise around a steady rate does not move the fit much.
        #[test]
        fn noise_around_a_steady_rate(rate in 1_000u64..100_000_000, noise in 0u64..50_000_000, seed in any::<u64>()) {
            let mut state = seed | 1;
            let mut jitter = || {
                state ^= state << 13; state ^= state >> 7; state ^= state << 17;
                (state % (2 * noise + 1)) as i64 - noise as i64
            };
            let samples: Vec<(u64, u64)> = (0..=1800)
                .map(|s| (s, (100_000_000_000i64 + (s * rate) as i64 + jitter()) as u64))
                .collect();
            let fitted = window(samples).rate().unwrap_or(0.0);
            // The slope's error shrinks with n^1.5: generous bound.
            let bound = noise as f64 * 3.0 / 1800f64.powf(1.5) * 12f64.sqrt() + 1e-3 * rate as f64;
            prop_assert!((fitted - rate as f64).abs() <= bound, "fitted {} rate {} bound {}", fitted, rate, bound);
        }
    }
}
