//! The growth forecast (docs/reference/decision.md#the-growth-forecast): each
//! instance fits the growth rate of a volume's used bytes by least squares
//! over the last 30 minutes of its own samples. With under 5 minutes of
//! samples, or a rate <= 0, there is no forecast. Beside the rate it keeps a
//! compacted history (one sample per 5 minutes for a day) to say how long the
//! rate has held (`historySeconds`): the horizon counts for at most four times
//! that (rule 10), so a short burst cannot buy a day of growth. Pure: the
//! caller passes each sample's monotonic time.

use std::collections::VecDeque;
use std::time::Duration;

/// Samples older than this are forgotten by the fit.
pub const WINDOW: Duration = Duration::from_secs(30 * 60);
/// No forecast before the samples span this long.
pub const MIN_SPAN: Duration = Duration::from_secs(5 * 60);
/// At most one sample is kept per this much time (probes run up to 4 Hz).
const RESOLUTION_MS: i64 = 1000;
/// Beyond the fit's window, one sample per this much time is kept…
pub const COARSE_STEP: Duration = Duration::from_secs(5 * 60);
/// …for this long: a day's history, 289 samples at most.
pub const HISTORY: Duration = Duration::from_secs(24 * 3600);
/// A stretch of history supports the rate when the volume grew at least
/// this share of the rate over it: steady growth passes, noise and a
/// diurnal rhythm mostly do, a flat day before a burst does not.
const SUPPORT: f64 = 0.5;
/// A rate predicts at most this many times the time it was seen for (the
/// horizon's bound, rule 10, and the fast-fill forecast's).
pub const HISTORY_MULTIPLE: f64 = 4.0;
/// A fast fill is forecast before 5 minutes: the fit over the last 10 s,
/// 1 min or 5 min of samples (the shortest that says so), once it covers
/// at least 5 s, when it predicts the volume full within four times what
/// it covers. The 30-minute fit lags a sudden fill by minutes; a fill that
/// a short span predicts within four times its length is no blip.
const RECENT_MS: [i64; 3] = [10_000, 60_000, 300_000];
const EARLY_SPAN_MS: i64 = 5_000;

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

/// A forecast: the growth rate, and how long the samples behind it go back.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Forecast {
    pub bytes_per_second: f64,
    pub history_seconds: f64,
}

/// The samples of one volume: (milliseconds since an arbitrary origin, used
/// bytes), the fit's running sums, the recent fits', and the compacted
/// history.
#[derive(Clone, Debug, Default)]
pub struct GrowthWindow {
    span: ForecastSpan,
    samples: VecDeque<(i64, u64)>,
    /// The absolute index of `samples[0]` (samples pushed and evicted so far).
    first: usize,
    sums: Sums,
    recent: [Recent; 3],
    coarse: VecDeque<(i64, u64)>,
}

/// A fit over the last few seconds: its sums and its first sample (absolute index).
#[derive(Clone, Copy, Debug, Default)]
struct Recent {
    start: usize,
    sums: Sums,
}

/// Exact running sums of the least-squares fit (integers: adding and
/// removing samples never drifts).
#[derive(Clone, Copy, Debug, Default)]
struct Sums {
    n: i128,
    t: i128,
    y: i128,
    tt: i128,
    ty: i128,
}

impl Sums {
    fn add(&mut self, (t, y): (i64, u64), sign: i128) {
        let (t, y) = (t as i128, y as i128);
        self.n += sign;
        self.t += sign * t;
        self.y += sign * y;
        self.tt += sign * t * t;
        self.ty += sign * t * y;
    }

    /// The slope in bytes per second, when the samples define one.
    fn slope_per_second(&self) -> Option<f64> {
        let num = self
            .n
            .checked_mul(self.ty)?
            .checked_sub(self.t.checked_mul(self.y)?)?
            .checked_mul(1000)?;
        let den = self.n.checked_mul(self.tt)? - self.t.checked_mul(self.t)?;
        if self.n < 2 || den <= 0 {
            return None;
        }
        // Whole part exactly, then the remainder: a constant rate comes out exact.
        Some((num / den) as f64 + (num % den) as f64 / den as f64)
    }
}

impl GrowthWindow {
    pub fn with_span(span: ForecastSpan) -> Self {
        GrowthWindow {
            span,
            ..GrowthWindow::default()
        }
    }

    /// Adds a sample taken at `at` (monotonic, non-decreasing).
    pub fn push(&mut self, at: Duration, used_bytes: u64) {
        let t = i64::try_from(at.as_millis()).unwrap_or(i64::MAX);
        let sample = (t, used_bytes);
        let n = self.samples.len();
        // Within the same second as the last one, the newest sample replaces
        // it: one kept per second at a 4 Hz probe. (Judged by the distance
        // to the last one, every sample of a fast probe replaced it, and the
        // fit had two points.)
        let merge = n > 1
            && self.samples.back().is_some_and(|last| {
                last.0.div_euclid(RESOLUTION_MS) == t.div_euclid(RESOLUTION_MS)
            });
        match self.samples.back_mut() {
            Some(last) if merge => {
                let old = *last;
                *last = sample;
                for sums in self.all_sums() {
                    sums.add(old, -1);
                    sums.add(sample, 1);
                }
            }
            _ => {
                self.samples.push_back(sample);
                for sums in self.all_sums() {
                    sums.add(sample, 1);
                }
            }
        }
        let oldest = t.saturating_sub(millis(self.span.window));
        while let Some(front) = self.samples.front().copied().filter(|s| s.0 < oldest) {
            self.sums.add(front, -1);
            for r in &mut self.recent {
                if r.start == self.first {
                    r.sums.add(front, -1);
                    r.start += 1;
                }
            }
            self.samples.pop_front();
            self.first += 1;
        }
        for (r, span) in self.recent.iter_mut().zip(RECENT_MS) {
            r.start = r.start.max(self.first);
            while let Some(s) = self
                .samples
                .get(r.start - self.first)
                .copied()
                .filter(|s| s.0 < t.saturating_sub(span))
            {
                r.sums.add(s, -1);
                r.start += 1;
            }
        }
        if self
            .coarse
            .back()
            .is_none_or(|c| t - c.0 >= millis(COARSE_STEP))
        {
            self.coarse.push_back(sample);
        }
        let oldest = t.saturating_sub(millis(HISTORY));
        while self.coarse.front().is_some_and(|c| c.0 < oldest) {
            self.coarse.pop_front();
        }
    }

    fn all_sums(&mut self) -> impl Iterator<Item = &mut Sums> {
        std::iter::once(&mut self.sums).chain(self.recent.iter_mut().map(|r| &mut r.sums))
    }

    /// Forgets everything (the volume could not be read).
    pub fn clear(&mut self) {
        *self = GrowthWindow::with_span(self.span);
    }

    /// The 30-minute fit's rate, once its samples span `min_span`.
    fn fitted(&self) -> Option<f64> {
        let (first, last) = (self.samples.front()?, self.samples.back()?);
        if last.0 - first.0 < millis(self.span.min_span) {
            return None;
        }
        self.sums.slope_per_second().filter(|r| *r > 0.0)
    }

    /// A fast fill: the shortest recent fit that predicts the volume full
    /// (`available_bytes` left) within four times what it covers, with
    /// what it covers (seconds). Both halves of it must have grown at half
    /// the rate: a single jump (a file copied at once) is not a fill rate.
    fn fast_fill(&self, available_bytes: u64) -> Option<(f64, f64)> {
        let &(last, used_now) = self.samples.back()?;
        self.recent.iter().find_map(|r| {
            let &(first, used_first) = self.samples.get(r.start - self.first)?;
            let covered = last - first;
            if covered < EARLY_SPAN_MS {
                return None;
            }
            let rate = r.sums.slope_per_second().filter(|r| *r > 0.0)?;
            let seconds = covered as f64 / 1000.0;
            if available_bytes as f64 / rate >= HISTORY_MULTIPLE * seconds {
                return None;
            }
            let (mid, used_mid) = self.used_at_or_after(first + covered / 2)?;
            let grew = |from: u64, to: u64, ms: i64| {
                to as f64 - from as f64 >= SUPPORT * rate * ms as f64 / 1000.0
            };
            (grew(used_first, used_mid, mid - first) && grew(used_mid, used_now, last - mid))
                .then_some((rate, seconds))
        })
    }

    /// The growth rate in bytes per second, when there is a forecast: a
    /// fast fill's, else the 30-minute fit's.
    pub fn rate(&self, available_bytes: u64) -> Option<f64> {
        self.fast_fill(available_bytes)
            .map(|(rate, _)| rate)
            .or_else(|| self.fitted())
    }

    /// The rate and the history behind it, when there is a forecast.
    pub fn forecast(&self, available_bytes: u64) -> Option<Forecast> {
        if let Some((rate, seconds)) = self.fast_fill(available_bytes) {
            return Some(Forecast {
                bytes_per_second: rate,
                history_seconds: seconds,
            });
        }
        let rate = self.fitted()?;
        Some(Forecast {
            bytes_per_second: rate,
            history_seconds: self.history_seconds(rate),
        })
    }

    /// How far back the growth supports `rate`: from the forecast's minimum
    /// span, back through bands that double each time (5, 10, 20, … minutes),
    /// as long as the volume grew over each band at least half the rate. A
    /// burst after a flat day stops at the first flat band; a steady day
    /// goes back a day.
    fn history_seconds(&self, rate: f64) -> f64 {
        let Some(&(now, used_now)) = self.samples.back() else {
            return 0.0;
        };
        let oldest = match (self.coarse.front(), self.samples.front()) {
            (Some(c), Some(s)) => c.0.min(s.0),
            (_, Some(s)) => s.0,
            _ => now,
        };
        let mut span = millis(self.span.min_span).clamp(1, (now - oldest).max(1));
        let mut younger = self.used_at_or_after(now - span).unwrap_or((now, used_now));
        while now - oldest > span {
            let older_edge = now.saturating_sub(span.saturating_mul(2)).max(oldest);
            let Some(older) = self.used_at_or_after(older_edge) else {
                break;
            };
            let seconds = (younger.0 - older.0) as f64 / 1000.0;
            let grown = younger.1 as f64 - older.1 as f64;
            if seconds <= 0.0 || grown < SUPPORT * rate * seconds {
                break;
            }
            span = now - older.0;
            younger = older;
        }
        span as f64 / 1000.0
    }

    /// The first sample at or after `t`: fine samples where they reach,
    /// the compacted history before that.
    fn used_at_or_after(&self, t: i64) -> Option<(i64, u64)> {
        if self.samples.front().is_some_and(|s| s.0 <= t) {
            let i = self.samples.partition_point(|s| s.0 < t);
            return self.samples.get(i).copied();
        }
        let i = self.coarse.partition_point(|c| c.0 < t);
        match self.coarse.get(i) {
            Some(c) if self.samples.front().is_none_or(|s| c.0 <= s.0) => Some(*c),
            _ => self.samples.front().copied(),
        }
    }

    pub fn len(&self) -> usize {
        self.samples.len()
    }

    pub fn is_empty(&self) -> bool {
        self.samples.is_empty()
    }

    /// Samples kept in all, fit and history: bounded whatever the uptime.
    pub fn kept(&self) -> usize {
        self.samples.len() + self.coarse.len()
    }
}

fn millis(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// Room enough that no fast fill is forecast: the 30-minute fit alone.
    const FAR: u64 = u64::MAX;

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
        assert_eq!(w.rate(FAR), Some(52_428_800.0));
    }

    #[test]
    fn no_forecast_before_five_minutes_or_without_growth() {
        let growing = |span: u64| window((0..=span).map(|s| (s, s * 1000)));
        assert_eq!(growing(299).rate(FAR), None);
        assert_eq!(growing(300).rate(FAR), Some(1000.0));
        assert_eq!(
            window((0..=600).map(|s| (s, 5_000))).rate(FAR),
            None,
            "flat"
        );
        assert_eq!(
            window((0..=600).map(|s| (s, 10_000_000 - s * 1000))).rate(FAR),
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
        let rate = w.rate(FAR).unwrap();
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
        let rate = window(samples).rate(FAR);
        assert!(rate.is_none_or(|r| r < 1_000_000.0), "{rate:?}");
    }

    #[test]
    fn a_burst_seen_from_the_start_has_the_history_it_was_seen_for() {
        // A 5-minute pg_restore at 50 MB/s, all this process has seen.
        let w = window((0..=300).map(|s| (s, 10_000_000_000 + s * 50_000_000)));
        let f = w.forecast(FAR).unwrap();
        assert_eq!(f.bytes_per_second, 50e6);
        assert_eq!(f.history_seconds, 300.0);
    }

    #[test]
    fn a_burst_after_a_flat_day_has_only_the_shortest_history() {
        let flat = 10_000_000_000;
        let mut w = window((0..86_400).map(|s| (s, flat)));
        for s in 0..=300 {
            w.push(Duration::from_secs(86_400 + s), flat + s * 50_000_000);
        }
        let f = w.forecast(FAR).unwrap();
        // The fit over 30 minutes sees 25 flat ones: a lower rate...
        assert!(f.bytes_per_second < 10e6, "{f:?}");
        // ...and the flat band before the burst supports none of it.
        assert_eq!(f.history_seconds, 300.0);
    }

    #[test]
    fn a_day_of_steady_growth_justifies_a_day_in_bounded_memory() {
        let w = window((0..=86_400).map(|s| (s, 1_000_000_000 + s * 1_048_576)));
        let f = w.forecast(FAR).unwrap();
        assert_eq!(f.bytes_per_second, 1_048_576.0);
        assert_eq!(f.history_seconds, 86_400.0);
        // Three days probed at 4 Hz keep 30 minutes at 1 Hz and a day at
        // one sample per 5 minutes.
        let mut w = GrowthWindow::default();
        for ms in (0..3 * 86_400_000u64).step_by(250) {
            w.push(Duration::from_millis(ms), ms * 1000);
        }
        assert!(w.kept() <= 1802 + 290, "{} samples kept", w.kept());
        // The oldest sample kept is a day before the newest (a quarter
        // second short, the probe's last step).
        let h = w.forecast(FAR).unwrap().history_seconds;
        assert!((86_399.0..=86_400.0).contains(&h), "{h}");
    }

    #[test]
    fn a_shrink_cuts_the_history_and_a_diurnal_day_keeps_most_of_it() {
        // 6 h at 1 MiB/s, VACUUM FULL frees 10 GiB, then 1 h at 1 MiB/s.
        let mut w = window((0..21_600).map(|s| (s, 20_000_000_000 + s * 1_048_576)));
        let after = 20_000_000_000 + 21_600 * 1_048_576 - 10 * (1 << 30);
        for s in 0..=3_600 {
            w.push(Duration::from_secs(21_600 + s), after + s * 1_048_576);
        }
        let h = w.forecast(FAR).unwrap().history_seconds;
        assert!((300.0..=3_600.0).contains(&h), "{h}");
        // 12 h of writes a day: at the end of a busy day the history goes
        // back over the day's writes, so 4x covers a 24 h horizon.
        let mut w = GrowthWindow::default();
        let mut used = 10_000_000_000u64;
        for s in 0..(86_400 + 20 * 3600u64) {
            if (s % 86_400) >= 8 * 3600 && (s % 86_400) < 20 * 3600 {
                used += 500_000;
            }
            w.push(Duration::from_secs(s), used);
        }
        let f = w.forecast(FAR).unwrap();
        assert!(f.history_seconds >= 6.0 * 3600.0, "{f:?}");
    }

    #[test]
    fn a_short_test_span_reaches_back_to_the_first_sample() {
        let mut w = GrowthWindow::with_span(ForecastSpan {
            window: Duration::from_secs(60),
            min_span: Duration::from_secs(5),
        });
        for s in 0..=30 {
            w.push(Duration::from_secs(s), s * 1_000_000);
        }
        assert_eq!(w.forecast(FAR).unwrap().history_seconds, 30.0);
    }

    #[test]
    fn a_fast_fill_is_forecast_within_seconds_a_blip_is_not() {
        // 50 MB/s with 1 GB left: after 10 s the last 10 s say full in 10 s.
        let w = window((0..=10).map(|s| (s, 1_000_000_000 + s * 50_000_000)));
        let f = w.forecast(500_000_000).unwrap();
        assert_eq!(f.bytes_per_second, 50e6);
        assert_eq!(f.history_seconds, 10.0);
        // The same 10 s with 50 GB left: full in 1000 s, not within 40 s.
        assert_eq!(w.forecast(50_000_000_000), None);
        // A jump (a file copied at once) is no fill rate.
        let jump = window((0..=10).map(|s| (s, if s < 9 { 0 } else { 900_000_000 })));
        assert_eq!(jump.forecast(100_000_000), None);
        // A runaway after a flat half-hour: the 30-minute fit barely moves,
        // the last 10 s see it.
        let mut w = window((0..1800).map(|s| (s, 1_000_000_000)));
        for s in 0..=20 {
            w.push(
                Duration::from_secs(1800 + s),
                1_000_000_000 + s * 100_000_000,
            );
        }
        let f = w.forecast(3_000_000_000).unwrap();
        assert_eq!(f.bytes_per_second, 100e6);
        assert_eq!(f.history_seconds, 10.0);
        assert!(w.rate(FAR).unwrap() < 10e6, "the 30-minute fit lags");
    }

    #[test]
    fn samples_closer_than_a_second_are_merged() {
        let mut w = GrowthWindow::default();
        for ms in (0..10_000).step_by(250) {
            w.push(Duration::from_millis(ms), ms);
        }
        // About one a second: not every sample, and not just the two ends.
        assert!((9..=12).contains(&w.len()), "{}", w.len());
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
            let fitted = window(samples).rate(FAR).unwrap_or(0.0);
            // The slope's error shrinks with n^1.5: generous bound.
            let bound = noise as f64 * 3.0 / 1800f64.powf(1.5) * 12f64.sqrt() + 1e-3 * rate as f64;
            prop_assert!((fitted - rate as f64).abs() <= bound, "fitted {} rate {} bound {}", fitted, rate, bound);
        }
    }
}
