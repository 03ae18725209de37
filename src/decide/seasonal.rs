//! The seasonal forecast: a metric's total load learnt per minute as it is observed, and the
//! shape of the load one period ago (a day, a week) read forward as a floor one warm-up ahead.
//!
//! Seasonal-naive on the *shape*, on purpose. Web load repeats daily and weekly, but not at
//! the same level: a Saturday is quieter than a Friday, and a growing service is busier than
//! last week. So the forecast does not replay yesterday's numbers; it replays yesterday's
//! *rise*: if the load went up 40 % between 13:55 and 14:00 yesterday, today's load now is
//! expected to go up 40 % by 14:00. That needs constant time per decision (the simulator
//! makes hundreds of thousands per run), and it explains itself in one sentence. Fitted
//! models (MSTL, ETS) smooth away the ramps a floor exists for, and need refitting.
//!
//! Each minute holds the mean of its rounds (a peak of noisy rounds would size every floor for
//! a spike). Trust is earned: every completed minute, each period's forecast of it made one
//! warm-up earlier is scored against what came, as an exponentially weighted mean of the
//! relative error over about an hour. Only the period that has been right lately speaks, and
//! only while its error is within `maxError`. A forecast only ever raises the count (a floor)
//! or lets a scale-down the metrics already ask for come sooner; it never scales down by
//! itself.

use std::time::Duration;

use serde::Serialize;

use crate::observe::Timestamp;
use crate::policy::Seasonal;
use crate::policy::bounds::SEASONAL_MAX_RISE as MAX_RISE;

/// How much one completed minute's error weighs against the past: half-life of an hour.
const ERROR_HALF_LIFE_MINUTES: f64 = 60.0;
/// Minutes a period must have been scored on before it is trusted at all.
const MIN_SCORED_MINUTES: u32 = 30;

/// One metric's profile and its periods' scores. Owned by [`super::ScalingMemory`]; fed by
/// the decision core from the metric's series, and seeded by the daemon from Prometheus.
#[derive(Debug, Clone)]
pub struct SeasonalMemory {
    /// Per-minute mean of the total, a ring indexed by epoch minute; NaN: no sample.
    minutes: Vec<f32>,
    /// Rounds in each minute's mean.
    counts: Vec<u16>,
    /// The newest minute held.
    newest: Option<i64>,
    /// The newest sample fed, so feeding the same series twice counts nothing twice.
    last_fed: Option<Timestamp>,
    /// One per period of the policy, in its order.
    scores: Vec<Score>,
    periods: Vec<i64>,
    /// Minutes from a forecast to the minute it is about: the warm-up, at least one.
    lead: i64,
}

#[derive(Debug, Clone, Copy, Default)]
struct Score {
    error: f64,
    scored: u32,
}

/// What the profile says about the time ahead.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct SeasonalForecast {
    /// The period that spoke: the one with the lowest recent error.
    pub period: Duration,
    /// One period ago, the minute matching the newest one held today, and its load.
    pub seen_from: Timestamp,
    pub seen_from_load: f64,
    /// One period ago, the minute of the highest load of the window ahead, and that load.
    pub seen_at: Timestamp,
    pub seen_load: f64,
    /// Today's newest minute's load.
    pub now_load: f64,
    /// `now_load` times the rise one period ago (`seen_load / seen_from_load`): the load
    /// expected within the window ahead.
    pub load: f64,
    /// The period's recent relative error (0.06: within 6 %).
    pub error: f64,
    /// Whether the error is within `maxError`: only a trusted forecast acts.
    pub trusted: bool,
}

fn minute_of(at: Timestamp) -> i64 {
    at.timestamp().div_euclid(60)
}

fn minutes(d: Duration) -> i64 {
    i64::try_from(d.as_secs() / 60).unwrap_or(i64::MAX)
}

fn timestamp_of(minute: i64) -> Timestamp {
    Timestamp::from_timestamp(minute.saturating_mul(60), 0).unwrap_or(Timestamp::MIN_UTC)
}

/// The longest period plus what is looked ahead, and a minute each side. Validation bounds
/// this: a week of periods plus a day of warm-up and an hour of horizon.
fn ring_len(periods: &[i64], ahead: Duration) -> usize {
    let longest = periods.iter().copied().max().unwrap_or(0);
    usize::try_from(longest.saturating_add(minutes(ahead)).saturating_add(2)).unwrap_or(0)
}

/// The rise from `from` to `to`, bounded; `None` when `from` carried no load.
fn rise(from: f64, to: f64) -> Option<f64> {
    (from > 0.0).then(|| (to / from).min(MAX_RISE))
}

impl SeasonalMemory {
    /// Room for the longest period plus `ahead` (warm-up and horizon) and a minute each side;
    /// forecasts are scored `lead` (the warm-up) ahead.
    pub fn new(seasonal: &Seasonal, ahead: Duration, lead: Duration) -> Self {
        let periods: Vec<i64> = seasonal.periods.iter().map(|p| minutes(*p)).collect();
        let len = ring_len(&periods, ahead);
        Self {
            minutes: vec![f32::NAN; len],
            counts: vec![0; len],
            newest: None,
            last_fed: None,
            scores: vec![Score::default(); periods.len()],
            periods,
            lead: minutes(lead).max(1),
        }
    }

    /// Whether this memory was built for `seasonal` looking `ahead` with this `lead`: a
    /// changed policy starts a new one.
    pub fn fits(&self, seasonal: &Seasonal, ahead: Duration, lead: Duration) -> bool {
        // Compared in place: this runs at every evaluation.
        seasonal.periods.iter().map(|p| minutes(*p)).eq(self.periods.iter().copied())
            && ring_len(&self.periods, ahead) == self.minutes.len()
            && minutes(lead).max(1) == self.lead
    }

    /// Feeds the samples newer than any fed before, oldest first.
    pub fn feed(&mut self, points: &[(Timestamp, f64)]) {
        let first = match self.last_fed {
            Some(last) => points.partition_point(|(at, _)| *at <= last),
            None => 0,
        };
        for &(at, value) in &points[first..] {
            self.record(at, value);
        }
    }

    fn slot(&self, minute: i64) -> usize {
        minute.rem_euclid(self.minutes.len() as i64) as usize
    }

    fn held(&self, minute: i64) -> Option<f64> {
        let newest = self.newest?;
        let len = self.minutes.len() as i64;
        if minute > newest || minute <= newest - len {
            return None;
        }
        let value = self.minutes[self.slot(minute)];
        (!value.is_nan()).then_some(f64::from(value))
    }

    fn clear(&mut self, minute: i64) {
        let slot = self.slot(minute);
        self.minutes[slot] = f32::NAN;
        self.counts[slot] = 0;
    }

    fn record(&mut self, at: Timestamp, value: f64) {
        if !value.is_finite() || self.minutes.is_empty() {
            return;
        }
        self.last_fed = Some(self.last_fed.map_or(at, |last| last.max(at)));
        let minute = minute_of(at);
        let len = self.minutes.len() as i64;
        match self.newest {
            Some(newest) if minute <= newest - len => return,
            Some(newest) if minute > newest => {
                // `newest` is complete: score each period's forecast of it, then clear the
                // minutes skipped over (no samples) and the one starting.
                self.score(newest);
                for m in (minute - (minute - newest).min(len) + 1)..=minute {
                    self.clear(m);
                }
                self.newest = Some(minute);
            }
            Some(_) => {}
            None => {
                self.clear(minute);
                self.newest = Some(minute);
            }
        }
        let slot = self.slot(minute);
        let count = self.counts[slot].saturating_add(1);
        let mean = if count == 1 { 0.0 } else { f64::from(self.minutes[slot]) };
        self.minutes[slot] = (mean + (value - mean) / f64::from(count)) as f32;
        self.counts[slot] = count;
    }

    /// Scores each period's forecast of `minute`, made `lead` minutes before it: the load
    /// then times the rise one period earlier.
    fn score(&mut self, minute: i64) {
        let Some(actual) = self.held(minute) else { return };
        let Some(then) = self.held(minute - self.lead) else { return };
        let alpha = 1.0 - 0.5f64.powf(1.0 / ERROR_HALF_LIFE_MINUTES);
        for i in 0..self.periods.len() {
            let period = self.periods[i];
            let (Some(from), Some(to)) =
                (self.held(minute - self.lead - period), self.held(minute - period))
            else {
                continue;
            };
            let Some(rise) = rise(from, to) else { continue };
            let predicted = then * rise;
            let scale = actual.max(predicted);
            let error = if scale > 0.0 { (actual - predicted).abs() / scale } else { 0.0 };
            let score = &mut self.scores[i];
            score.error =
                if score.scored == 0 { error } else { score.error + alpha * (error - score.error) };
            score.scored = score.scored.saturating_add(1);
        }
    }

    /// The load expected within `[now, now + ahead]`: today's newest minute times the rise one
    /// period ago from the matching minute to the highest of that window, from the period with
    /// the lowest recent error among those scored long enough; `None` before any has been.
    pub fn forecast(
        &self,
        seasonal: &Seasonal,
        now: Timestamp,
        ahead: Duration,
    ) -> Option<SeasonalForecast> {
        let newest = self.newest?;
        let now_load = self.held(newest)?;
        let now_minute = minute_of(now).max(newest);
        let ahead_minutes = minutes(ahead).max(0) + 1;
        let mut best: Option<(usize, SeasonalForecast)> = None;
        for (i, &period) in self.periods.iter().enumerate() {
            let score = self.scores[i];
            if score.scored < MIN_SCORED_MINUTES {
                continue;
            }
            let Some(from) = self.held(newest - period) else { continue };
            // Only minutes already seen: with a warm-up longer than the period, the part of
            // the window a period ago that is still ahead is not known yet.
            let peak = (0..=ahead_minutes.min(period - 1))
                .filter_map(|k| {
                    let minute = now_minute + k - period;
                    self.held(minute).map(|load| (load, minute))
                })
                // The first minute of the highest load: when the ramp came.
                .fold(None, |best: Option<(f64, i64)>, (load, minute)| match best {
                    Some((top, _)) if top >= load => best,
                    _ => Some((load, minute)),
                });
            let Some((seen_load, seen_minute)) = peak else { continue };
            let Some(rise) = rise(from, seen_load) else { continue };
            if best.as_ref().is_some_and(|(j, _)| self.scores[*j].error <= score.error) {
                continue;
            }
            best = Some((
                i,
                SeasonalForecast {
                    period: Duration::from_secs(u64::try_from(period).unwrap_or(0) * 60),
                    seen_from: timestamp_of(newest - period),
                    seen_from_load: from,
                    seen_at: timestamp_of(seen_minute),
                    seen_load,
                    now_load,
                    load: now_load * rise,
                    error: score.error,
                    trusted: score.error <= seasonal.max_error,
                },
            ));
        }
        best.map(|(_, forecast)| forecast)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::decide::fixture::{secs, t};

    fn daily() -> Seasonal {
        Seasonal {
            periods: vec![secs(3600), secs(86_400)],
            horizon: secs(300),
            max_error: 0.25,
            min_rise: 1.0,
            scale_down_stabilization: secs(60),
            history: None,
        }
    }

    fn fed(seasonal: &Seasonal, points: &[(Timestamp, f64)]) -> SeasonalMemory {
        let mut memory = SeasonalMemory::new(seasonal, secs(60), secs(60));
        memory.feed(points);
        memory
    }

    /// Feeding the same samples again (every decision reads its whole window) changes nothing.
    #[test]
    fn feeding_a_window_twice_counts_it_once() {
        let seasonal = daily();
        let points: Vec<_> = (0..600).map(|m| (t(m * 60), 100.0 + (m % 7) as f64)).collect();
        let once = fed(&seasonal, &points);
        let mut twice = fed(&seasonal, &points);
        twice.feed(&points[300..]);
        assert_eq!(once.scores[0].scored, twice.scores[0].scored);
        assert_eq!(once.scores[0].error.to_bits(), twice.scores[0].error.to_bits());
    }

    /// The period right lately speaks: on the second day each hour ramps down where the first
    /// day's hours ramped up, so an hour ago has the shape right and a day ago has it wrong.
    #[test]
    fn the_period_with_the_lowest_recent_error_speaks() {
        let seasonal = daily();
        let points: Vec<_> = (0..2 * 1440)
            .map(|m: i64| {
                let minute = (m % 60) as f64;
                let load = if m < 1440 { 100.0 + minute } else { 3.0 * (159.0 - minute) };
                (t(m * 60), load)
            })
            .collect();
        let memory = fed(&seasonal, &points);
        let forecast = memory.forecast(&seasonal, t(2 * 1440 * 60), secs(60)).expect("forecast");
        assert_eq!(forecast.period, secs(3600));
        assert!(forecast.trusted && forecast.error < 0.05, "{forecast:?}");
        // Now 300 (the hour's last minute); an hour ago it went from 300 to 477 at the top of
        // the hour: 300 x 1.59.
        assert_eq!((forecast.now_load, forecast.seen_load), (300.0, 477.0));
        assert!((forecast.load - 477.0).abs() < 1e-9, "{forecast:?}");
    }

    /// Minutes without samples are unknown, not the values a ring slot held a period ago.
    #[test]
    fn a_gap_forgets_rather_than_replays_stale_minutes() {
        let seasonal = Seasonal { periods: vec![secs(3600)], ..daily() };
        let mut memory = fed(&seasonal, &(0..120).map(|m| (t(m * 60), 500.0)).collect::<Vec<_>>());
        // Nothing for three hours, then one sample.
        memory.feed(&[(t(5 * 3600), 10.0)]);
        let base = minute_of(t(0));
        assert_eq!(memory.held(base + 300), Some(10.0));
        // The ring's slot for 04:59 last held a 500 from the first two hours.
        assert_eq!(memory.held(base + 299), None);
        assert_eq!(memory.forecast(&seasonal, t(5 * 3600 + 60), secs(60)), None);
    }
}
