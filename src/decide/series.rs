//! Turns a window of observations into the numbers a metric is judged on: per-round values
//! aggregated across instances, then one statistic over the window (with `statrs`), and an
//! optional linear trend. An instance's reading above the metric's plausible maximum is left
//! out of its round and kept as an [`Outlier`] for the reason to name.

use std::borrow::Cow;
use std::collections::VecDeque;
use std::time::Duration;

use serde::Serialize;
use statrs::statistics::{Data, OrderStatistics, Statistics};

use crate::observe::{History, InstanceId, InstanceSample, Observation, QueryResult, Timestamp};
use crate::policy::{Aggregate, Metric, MetricSource, Statistic};

/// One aggregated value per round over a span of history, oldest first, and the newest
/// round's failure (if any) to explain a gap.
pub struct Series {
    points: Vec<(Timestamp, f64)>,
    last_error: Option<(Timestamp, String)>,
    outliers: Vec<(Timestamp, Outlier)>,
}

/// One instance's reading left out of a round: above the metric's plausible maximum.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Outlier {
    pub instance: InstanceId,
    /// What it reported (a rate for a `rate` metric).
    pub value: f64,
    pub plausible_max: f64,
}

/// One metric's value in each round of its span, kept by the caller between evaluations
/// (in [`super::ScalingMemory`]). A round never changes once in the history, so an evaluation
/// aggregates only the rounds it has not seen, the newest in steady state, instead of every
/// instance of every round of the span: `simulate` makes millions of evaluations. Holds no
/// more rounds than the span.
#[derive(Debug, Clone, Default)]
pub struct RoundValues {
    /// The metric the values were read for: another (a reloaded policy) starts afresh.
    metric: Option<Metric>,
    /// The metric's name in reasons, made once rather than formatted at every evaluation.
    label: Option<String>,
    rounds: VecDeque<RoundValue>,
}

#[derive(Debug, Clone)]
struct RoundValue {
    at: Timestamp,
    value: Result<f64, String>,
    outliers: Vec<Outlier>,
}

impl RoundValues {
    /// Forgets everything unless it was read for `metric`.
    fn keep_for(&mut self, metric: &Metric) {
        if self.metric.as_ref() != Some(metric) {
            *self = Self { metric: Some(metric.clone()), ..Self::default() };
        }
    }

    /// `metric`'s name in reasons, made by `make` once per metric.
    pub fn label(&mut self, metric: &Metric, make: impl FnOnce() -> String) -> &str {
        self.keep_for(metric);
        self.label.get_or_insert_with(make)
    }

    #[cfg(test)]
    pub(super) fn len(&self) -> usize {
        self.rounds.len()
    }

    /// The value of `round` (whose predecessor in the history is `previous`), read once.
    /// Rounds come oldest first; `next` is where the search for this one starts.
    fn value_of(
        &mut self,
        metric: &Metric,
        round: &Observation,
        previous: Option<&Observation>,
        next: &mut usize,
    ) -> Cow<'_, RoundValue> {
        if previous.is_some_and(|p| p.at >= round.at) {
            // Two rounds at one instant would share a key: the later is read afresh each time.
            return Cow::Owned(RoundValue::read(metric, round, previous));
        }
        while self.rounds.get(*next).is_some_and(|r| r.at < round.at) {
            *next += 1;
        }
        if self.rounds.get(*next).is_none_or(|r| r.at != round.at) {
            self.rounds.insert(*next, RoundValue::read(metric, round, previous));
        }
        *next += 1;
        Cow::Borrowed(&self.rounds[*next - 1])
    }
}

impl RoundValue {
    fn read(metric: &Metric, round: &Observation, previous: Option<&Observation>) -> Self {
        let mut outliers = Vec::new();
        let value = round_value(metric, round, previous, &mut outliers);
        Self { at: round.at, value, outliers }
    }
}

impl Series {
    /// Reads `span` of history once; callers then take windows of it, so a 15-minute forecast
    /// and a 2-minute statistic cost one pass. Rounds read before come from `memo`.
    pub fn read(
        metric: &Metric,
        history: &History,
        now: Timestamp,
        span: Duration,
        memo: &mut RoundValues,
    ) -> Self {
        memo.keep_for(metric);
        let w = history.window(now, span);
        // What left the span is never read again.
        let first = w.rounds.clone().next().map(|round| round.at);
        while memo.rounds.front().is_some_and(|r| first.is_none_or(|first| r.at < first)) {
            memo.rounds.pop_front();
        }
        let mut previous = w.before;
        let mut points = Vec::with_capacity(w.rounds.len());
        let mut last_error = None;
        let mut outliers = Vec::new();
        let mut next = 0;
        for round in w.rounds {
            let read = memo.value_of(metric, round, previous, &mut next);
            match &read.value {
                Ok(v) => points.push((round.at, *v)),
                Err(e) => last_error = Some((round.at, e.clone())),
            }
            outliers.extend(read.outliers.iter().map(|o| (round.at, o.clone())));
            previous = Some(round);
        }
        Self { points, last_error, outliers }
    }

    /// Every value read, oldest first.
    pub fn points(&self) -> &[(Timestamp, f64)] {
        &self.points
    }

    /// The instances left out as implausible in `(now - window, now]`, each once with the
    /// highest value it reported, by instance name.
    pub fn outliers(&self, now: Timestamp, window: Duration) -> Vec<Outlier> {
        let start = window_start(now, window);
        let mut found: Vec<Outlier> = Vec::new();
        for (_, outlier) in self.outliers.iter().filter(|(at, _)| *at > start) {
            match found.iter_mut().find(|o| o.instance == outlier.instance) {
                Some(seen) if seen.value < outlier.value => *seen = outlier.clone(),
                Some(_) => {}
                None => found.push(outlier.clone()),
            }
        }
        found.sort_by(|a, b| a.instance.cmp(&b.instance));
        found
    }

    /// The points in `(now - window, now]`, or why there are none.
    pub fn window(&self, now: Timestamp, window: Duration) -> Result<&[(Timestamp, f64)], String> {
        let start = window_start(now, window);
        let first = self.points.partition_point(|(at, _)| *at <= start);
        let points = &self.points[first..];
        if !points.is_empty() {
            return Ok(points);
        }
        let span = humantime::format_duration(window);
        Err(match &self.last_error {
            Some((at, why)) if *at > start => format!("{why} in the last {span}"),
            _ => format!("no samples in the last {span}"),
        })
    }
}

/// The instant `window` before `now`, or the earliest time when that is before it: where a
/// window ending now starts. Every cutoff in the core is this one instant.
pub(super) fn window_start(now: Timestamp, window: Duration) -> Timestamp {
    chrono::Duration::from_std(window)
        .ok()
        .and_then(|w| now.checked_sub_signed(w))
        .unwrap_or(Timestamp::MIN_UTC)
}

/// The metric's value in one round, aggregated across ready instances (or a query's series).
/// A reading above the plausible maximum is left out, as if the instance had reported no
/// value (so a `mean` assumes it as busy as the rest), and added to `outliers`. Left out
/// rather than clamped: a clamped 5,000,000 ops/s still reads 2,000,000, dozens of times an
/// honest instance's load, and would still multiply the fleet; an impossible number says
/// nothing about the load, only that the instance is broken or lying.
fn round_value(
    metric: &Metric,
    round: &Observation,
    previous: Option<&Observation>,
    outliers: &mut Vec<Outlier>,
) -> Result<f64, String> {
    match &metric.source {
        MetricSource::Prometheus { query } => match round.query(query) {
            Some(QueryResult { value: Ok(series), .. }) => {
                aggregate(metric.aggregate, round.ready_count(), series.iter().copied())
                    .ok_or_else(|| "empty result".to_owned())
            }
            Some(QueryResult { value: Err(e), .. }) => Err(e.clone()),
            None => Err("query not evaluated".to_owned()),
        },
        MetricSource::Redis { field, rate, plausible_max } => {
            let mut left_out = 0;
            // Streamed into the aggregate: this runs for every round of every window at every
            // evaluation, and `simulate` makes millions of them.
            let values = round.instances.iter().filter(|s| s.ready()).filter_map(|s| {
                let value = instance_value(s, field, *rate, round.at, previous)?;
                match plausible_max {
                    Some(max) if value.is_nan() || value > *max => {
                        let outlier =
                            Outlier { instance: s.id.clone(), value, plausible_max: *max };
                        outliers.push(outlier);
                        left_out += 1;
                        None
                    }
                    _ => Some(value),
                }
            });
            let value = aggregate(metric.aggregate, round.ready_count(), values);
            value.ok_or_else(|| {
                if left_out > 0 {
                    format!("every reading of `{field}` is implausible")
                } else if round.instances.iter().any(InstanceSample::ready) {
                    format!("no ready instance reports `{field}`")
                } else {
                    "no ready instance".to_owned()
                }
            })
        }
    }
}

/// A round's value: for `max` the hottest instance (or series); for `sum` the total; for
/// `mean` also a total: the mean times the replicas ready in that round, so an instance
/// without a value (a counter reset) is assumed as busy as the rest. The caller spreads
/// totals over the replicas ready *now*: a window of per-replica means measured while fewer
/// replicas served would overstate today's per-replica load.
/// `None` for no values: an empty aggregate is missing, not zero.
fn aggregate(
    aggregate: Aggregate,
    ready_in_round: usize,
    mut values: impl Iterator<Item = f64>,
) -> Option<f64> {
    let first = values.next()?;
    let (mut sum, mut max, mut n) = (first, first, 1usize);
    for v in values {
        sum += v;
        max = max.max(v);
        n += 1;
    }
    Some(match aggregate {
        Aggregate::Max => max,
        Aggregate::Sum => sum,
        Aggregate::Mean => sum / n as f64 * ready_in_round.max(n) as f64,
    })
}

fn instance_value(
    sample: &InstanceSample,
    field: &str,
    rate: bool,
    at: Timestamp,
    previous: Option<&Observation>,
) -> Option<f64> {
    let now_value = sample.info.as_ref()?.number(field)?;
    if !rate {
        return Some(now_value);
    }
    let before = previous?;
    let old = before.instances.iter().find(|s| s.id == sample.id)?.info.as_ref()?.number(field)?;
    let seconds = (at - before.at).as_seconds_f64();
    // A counter that went down was reset (restart): no rate for this round.
    (seconds > 0.0 && now_value >= old).then(|| (now_value - old) / seconds)
}

/// One number from a non-empty series.
pub fn statistic(statistic: Statistic, points: &[(Timestamp, f64)], now: Timestamp) -> f64 {
    let values = || points.iter().map(|p| p.1);
    match statistic {
        Statistic::Mean => values().mean(),
        Statistic::Max => Statistics::max(values()),
        Statistic::Min => Statistics::min(values()),
        Statistic::Last => points.last().map_or(f64::NAN, |p| p.1),
        Statistic::Percentile(p) => {
            let mut buf: Vec<f64> = values().collect();
            Data::new(buf.as_mut_slice()).percentile(usize::from(p))
        }
        Statistic::Ewma { half_life } => {
            let half_life = half_life.as_secs_f64().max(1e-3);
            let (mut weighted, mut weights) = (0.0, 0.0);
            for (at, v) in points {
                let age = (now - *at).as_seconds_f64().max(0.0);
                let w = 0.5f64.powf(age / half_life);
                weighted += w * v;
                weights += w;
            }
            weighted / weights
        }
        Statistic::Tail { exceedance } => poisson_tail(points, exceedance),
    }
}

/// The value one round of `points` exceeds with probability `exceedance`, modelling the load
/// as requests that arrive at random: a Poisson count of requests per round, each of one
/// size. Both are measured from the window: a Poisson count's variance is its mean, so
/// variance / mean is the size of a request and mean / size their count.
///
/// Why a model and not a percentile: a percentile over a window that holds a few hundred
/// rounds cannot see a one-in-a-thousand round, and how far the rare round reaches depends on
/// how few requests make up the load. A load of many small requests is nearly normal; one of
/// few large ones is skewed, its rare rounds far above the mean (a Poisson count of mean 1
/// reaches 5 one round in 270). The same `exceedance` sizes both right.
///
/// The variance is taken between consecutive rounds (half the mean squared difference), not
/// around the window's mean: a lasting rise or fall within the window (a flash crowd, the
/// morning ramp) adds one large difference, not a spread of every round around a mean that
/// lies between two levels.
fn poisson_tail(points: &[(Timestamp, f64)], exceedance: f64) -> f64 {
    let n = points.len();
    let mean = points.iter().map(|p| p.1).sum::<f64>() / n as f64;
    let squared_steps: f64 = points.windows(2).map(|w| (w[1].1 - w[0].1).powi(2)).sum();
    let variance = if n > 1 { squared_steps / (2.0 * (n - 1) as f64) } else { 0.0 };
    // A constant or empty load has no spread to model: the level is its own tail.
    if !(mean > 0.0 && variance > 0.0 && variance.is_finite()) {
        return mean;
    }
    let request = variance / mean;
    poisson_quantile(mean / request, exceedance) * request
}

/// The smallest count a Poisson variable of mean `lambda` exceeds with probability at most
/// `exceedance`. Summed term by term while the terms are representable (the first,
/// e^-lambda, underflows past a mean of about 700, and the sum takes a term per count); from
/// a mean of 30 on, where the count is nearly normal, the Cornish-Fisher expansion (normal
/// plus the skew's first correction), which is within one count there.
fn poisson_quantile(lambda: f64, exceedance: f64) -> f64 {
    const NORMAL_FROM: f64 = 30.0;
    if lambda >= NORMAL_FROM {
        let z = standard_normal_quantile(1.0 - exceedance);
        return (lambda + z * lambda.sqrt() + (z * z - 1.0) / 6.0).ceil();
    }
    let (mut term, mut below, mut count) = ((-lambda).exp(), 0.0, 0.0);
    loop {
        below += term;
        // A mean under 30 is exceeded by 1e-6 within ~60 counts; the bound only guards the
        // loop against rounding that keeps `below` a hair under its target.
        if 1.0 - below <= exceedance || count >= 200.0 {
            return count;
        }
        count += 1.0;
        term *= lambda / count;
    }
}

fn standard_normal_quantile(p: f64) -> f64 {
    use statrs::distribution::{ContinuousCDF, Normal};
    Normal::standard().inverse_cdf(p)
}

/// Least-squares line through the series, evaluated `ahead` after `now`. `None` with fewer
/// than two distinct times.
///
/// One pass over the points, each time read once as whole milliseconds: `simulate` fits a
/// line at every tick, and a calendar difference between two `Timestamp`s costs more than all
/// the arithmetic around it (a millisecond is far below any sampling interval). The sums are
/// of times relative to the first point, which keeps them as small as the window and the
/// single-pass formula accurate.
pub fn linear_forecast(
    points: &[(Timestamp, f64)],
    now: Timestamp,
    ahead: Duration,
) -> Option<f64> {
    let (first, last) = (points.first()?.0, points.last()?.0);
    // Points are oldest first: two distinct times exist exactly when the ends differ.
    if first == last {
        return None;
    }
    let origin = first.timestamp_millis();
    let seconds_since_first = |at: &Timestamp| (at.timestamp_millis() - origin) as f64 / 1000.0;
    let (mut sx, mut sy, mut sxx, mut sxy) = (0.0, 0.0, 0.0, 0.0);
    for (at, y) in points {
        let x = seconds_since_first(at);
        sx += x;
        sy += y;
        sxx += x * x;
        sxy += x * y;
    }
    let n = points.len() as f64;
    let (mean_x, mean_y) = (sx / n, sy / n);
    let (cov, var) = (sxy - sx * mean_y, sxx - sx * mean_x);
    if var <= 0.0 {
        return None;
    }
    let at = seconds_since_first(&now) + ahead.as_secs_f64();
    Some(mean_y + cov / var * (at - mean_x))
}
