//! Turns a window of observations into the numbers a metric is judged on: per-round values
//! aggregated across instances, then one statistic over the window (with `statrs`), and an
//! optional linear trend. An instance's reading above the metric's plausible maximum is left
//! out of its round and kept as an [`Outlier`] for the reason to name.

use std::collections::VecDeque;
use std::time::Duration;

use serde::Serialize;
use statrs::statistics::Statistics;

pub(super) use crate::observe::window_start;
use crate::observe::{
    History, InstanceId, InstanceSample, Observation, QueryResult, Timestamp, Window,
    seconds_between,
};
use crate::policy::{Aggregate, Metric, MetricSource, Statistic};

/// One aggregated value per round over a span of history, oldest first, and the newest
/// failed round (if any) to explain a gap. Borrowed from the [`RoundValues`] that hold them
/// between evaluations ([`RoundValues::series`]).
pub struct Series<'a> {
    points: &'a [(Timestamp, f64)],
    last_error: Option<&'a (Timestamp, String)>,
    outliers: &'a [(Timestamp, Outlier)],
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

/// One source's value in each round of its span, kept by the caller between evaluations
/// (in [`super::ScalingMemory`]). A source is what a round's value is read from and how
/// instances are aggregated: metrics that judge the same values differently (another
/// statistic, window or target) share it, and its span is the longest any of them reads.
///
/// A round never changes once in the history, and the history only gains rounds at its new
/// end and loses them at its old one, so an evaluation reads only the rounds it has not seen
/// (the newest, in steady state) and drops the ones that left the span, instead of walking
/// every instance of every round of the span: `simulate` makes millions of evaluations, each
/// over up to a few hundred rounds. Holds no more rounds than the span.
#[derive(Debug, Clone, Default)]
pub struct RoundValues {
    /// The source the values were read for: another (a reloaded policy) starts afresh.
    source: Option<(MetricSource, Aggregate)>,
    /// The instant of every round read, oldest first: the span's rounds at the last read.
    rounds: VecDeque<Timestamp>,
    /// The rounds that have a value, with it.
    points: VecDeque<(Timestamp, f64)>,
    /// The rounds without one, with why.
    errors: VecDeque<(Timestamp, String)>,
    outliers: VecDeque<(Timestamp, Outlier)>,
}

impl RoundValues {
    /// Forgets everything unless it was read for `metric`'s source: called before
    /// [`RoundValues::read`] whenever the policy may have changed.
    pub(super) fn keep_for(&mut self, metric: &Metric) {
        if !self.source.as_ref().is_some_and(|(source, aggregate)| {
            *source == metric.source && *aggregate == metric.aggregate
        }) {
            *self =
                Self { source: Some((metric.source.clone(), metric.aggregate)), ..Self::default() };
        }
    }

    #[cfg(test)]
    pub(super) fn len(&self) -> usize {
        self.rounds.len()
    }

    /// Brings the values up to `window`'s rounds: drops those before its first, and reads
    /// those after the last one held. When what is held is not the start of the window (the
    /// first read, or a window that ends before the rounds already read), reads it all.
    fn follow(&mut self, metric: &Metric, window: Window<'_>) {
        let first = window.round(0).map(|round| round.at);
        // A window is a span of time, so the cut falls between instants: rounds that share
        // one leave together, and the kinds of value held stay in step.
        let left = |at: &Timestamp| first.is_none_or(|first| *at < first);
        pop_while(&mut self.rounds, |at| left(at));
        pop_while(&mut self.points, |(at, _)| left(at));
        pop_while(&mut self.errors, |(at, _)| left(at));
        pop_while(&mut self.outliers, |(at, _)| left(at));

        let mut held = self.rounds.len();
        let newest_held = held.checked_sub(1).and_then(|i| window.round(i));
        let continues = held == 0
            || (self.rounds.front() == first.as_ref()
                && newest_held.is_some_and(|round| self.rounds.back() == Some(&round.at)));
        if !continues {
            self.rounds.clear();
            self.points.clear();
            self.errors.clear();
            self.outliers.clear();
            held = 0;
        }
        let mut previous = if held == 0 { window.before } else { newest_held };
        for round in window.rounds_from(held) {
            let mut outliers = Vec::new();
            match round_value(metric, round, previous, &mut outliers) {
                Ok(value) => self.points.push_back((round.at, value)),
                Err(why) => self.errors.push_back((round.at, why)),
            }
            if !outliers.is_empty() {
                self.outliers.extend(outliers.into_iter().map(|o| (round.at, o)));
            }
            self.rounds.push_back(round.at);
            previous = Some(round);
        }
    }
}

fn pop_while<T>(queue: &mut VecDeque<T>, mut pred: impl FnMut(&T) -> bool) {
    while queue.front().is_some_and(&mut pred) {
        queue.pop_front();
    }
}

impl RoundValues {
    /// Reads `span` of history from `metric`'s source; callers then take windows of its
    /// [`RoundValues::series`], so a 15-minute forecast and a 2-minute statistic, or three
    /// metrics on one field, cost one pass. Leaves the values in one piece for `series`.
    /// Values read for another source are kept unless [`RoundValues::keep_for`] came first.
    pub fn read(&mut self, metric: &Metric, history: &History, now: Timestamp, span: Duration) {
        self.follow(metric, history.window(now, span));
        self.points.make_contiguous();
        self.outliers.make_contiguous();
    }

    /// The values as the last [`RoundValues::read`] left them. Borrowed, not collected: the
    /// decision core reads them at every evaluation.
    pub fn series(&self) -> Series<'_> {
        // `read` made each queue one slice; the second halves are empty.
        debug_assert!(
            self.points.as_slices().1.is_empty() && self.outliers.as_slices().1.is_empty()
        );
        Series {
            points: self.points.as_slices().0,
            last_error: self.errors.back(),
            outliers: self.outliers.as_slices().0,
        }
    }
}

impl<'a> Series<'a> {
    /// Every value read, oldest first.
    pub fn points(&self) -> &'a [(Timestamp, f64)] {
        self.points
    }

    /// The instances left out as implausible in `(now - window, now]`, each once with the
    /// highest value it reported, by instance name.
    #[inline]
    pub fn outliers(&self, now: Timestamp, window: Duration) -> Vec<Outlier> {
        if self.outliers.is_empty() {
            return Vec::new();
        }
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
    #[inline]
    pub fn window(
        &self,
        now: Timestamp,
        window: Duration,
    ) -> Result<&'a [(Timestamp, f64)], String> {
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

/// One number from a non-empty series, computed afresh.
pub fn statistic(statistic: Statistic, points: &[(Timestamp, f64)], now: Timestamp) -> f64 {
    StatisticMemory::new(statistic).value(statistic, points, now)
}

/// What a metric's statistic keeps between evaluations (per metric, in
/// [`super::ScalingMemory`]), so that the statistic over a window that moved by a round
/// costs what the round changed: a percentile keeps the window in order, a tail the normal
/// quantile its `exceedance` sets.
#[derive(Debug, Clone)]
pub enum StatisticMemory {
    Nothing,
    Ordered(OrderedValues),
    Tail { exceedance: f64, normal_quantile: f64 },
}

impl StatisticMemory {
    pub fn new(statistic: Statistic) -> Self {
        match statistic {
            Statistic::Percentile(_) => Self::Ordered(OrderedValues::default()),
            Statistic::Tail { exceedance } => Self::Tail {
                exceedance,
                normal_quantile: standard_normal_quantile(1.0 - exceedance),
            },
            _ => Self::Nothing,
        }
    }

    /// `statistic` over `points` (non-empty, oldest first).
    pub fn value(
        &mut self,
        statistic: Statistic,
        points: &[(Timestamp, f64)],
        now: Timestamp,
    ) -> f64 {
        let values = || points.iter().map(|p| p.1);
        match (statistic, &mut *self) {
            (Statistic::Mean, _) => values().mean(),
            (Statistic::Max, _) => Statistics::max(values()),
            (Statistic::Min, _) => Statistics::min(values()),
            (Statistic::Last, _) => points.last().map_or(f64::NAN, |p| p.1),
            (Statistic::Ewma { half_life }, _) => {
                let half_life = half_life.as_secs_f64().max(1e-3);
                let (mut weighted, mut weights) = (0.0, 0.0);
                for (at, v) in points {
                    let age = seconds_between(*at, now).max(0.0);
                    let w = 0.5f64.powf(age / half_life);
                    weighted += w * v;
                    weights += w;
                }
                weighted / weights
            }
            (Statistic::Percentile(p), Self::Ordered(ordered)) => ordered.percentile(points, p),
            (Statistic::Tail { exceedance }, Self::Tail { exceedance: kept, normal_quantile })
                if kept.to_bits() == exceedance.to_bits() =>
            {
                poisson_tail(points, exceedance, *normal_quantile)
            }
            // Kept for another statistic: the metric changed under it.
            (Statistic::Percentile(_) | Statistic::Tail { .. }, _) => {
                *self = Self::new(statistic);
                self.value(statistic, points, now)
            }
        }
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
/// `normal_quantile` is the standard normal's quantile at `1 - exceedance`.
fn poisson_tail(points: &[(Timestamp, f64)], exceedance: f64, normal_quantile: f64) -> f64 {
    let n = points.len();
    let (sum, squared_steps) = sum_and_squared_steps(points);
    let mean = sum / n as f64;
    let variance = if n > 1 { squared_steps / (2.0 * (n - 1) as f64) } else { 0.0 };
    // A constant or empty load has no spread to model: the level is its own tail.
    if !(mean > 0.0 && variance > 0.0 && variance.is_finite()) {
        return mean;
    }
    let request = variance / mean;
    poisson_quantile(mean / request, exceedance, normal_quantile) * request
}

/// The sum of the values and of the squares of the steps between consecutive ones, in four
/// lanes: one running sum is a chain of dependent additions, and a 10-minute window sampled
/// every 5 s is read at every tick.
fn sum_and_squared_steps(points: &[(Timestamp, f64)]) -> (f64, f64) {
    const LANES: usize = 4;
    let (mut sums, mut squares) = ([0.0; LANES], [0.0; LANES]);
    let mut previous = points.first().map_or(0.0, |p| p.1);
    let mut chunks = points.chunks_exact(LANES);
    for chunk in &mut chunks {
        for (lane, &(_, value)) in chunk.iter().enumerate() {
            sums[lane] += value;
            squares[lane] += (value - previous) * (value - previous);
            previous = value;
        }
    }
    for &(_, value) in chunks.remainder() {
        sums[0] += value;
        squares[0] += (value - previous) * (value - previous);
        previous = value;
    }
    (sums.iter().sum(), squares.iter().sum())
}

/// A window's values in order, kept between evaluations (per metric, in
/// [`super::ScalingMemory`]): a percentile over a window that moved by a round then costs
/// one removal and one insertion, not a selection over all of it, and `simulate` takes one
/// at every tick. Like [`RoundValues`], it relies on a round's value never changing.
#[derive(Debug, Clone, Default)]
pub struct OrderedValues {
    /// The window as last seen, oldest first.
    window: VecDeque<(Timestamp, f64)>,
    /// Its values as [`order_key`]s, ascending: the order of [`f64::total_cmp`], compared as
    /// integers.
    sorted: Vec<i64>,
}

impl OrderedValues {
    /// The `p`th percentile of `points` (non-empty, oldest first), by the estimator `statrs`
    /// uses (median-unbiased, R's type 8): the two order statistics around the rank
    /// `(n + 1/3) p/100 + 1/3`, interpolated.
    pub fn percentile(&mut self, points: &[(Timestamp, f64)], p: u8) -> f64 {
        self.follow(points);
        let sorted = &self.sorted;
        let n = sorted.len();
        let tau = f64::from(p) / 100.0;
        let h = (n as f64 + 1.0 / 3.0) * tau + 1.0 / 3.0;
        let rank = h as usize;
        match (sorted.first(), sorted.last()) {
            (Some(&min), _) if rank == 0 || p == 0 => from_order_key(min),
            (_, Some(&max)) if rank >= n || p >= 100 => from_order_key(max),
            (Some(_), Some(_)) => {
                let below = from_order_key(sorted[rank - 1]);
                let above = from_order_key(sorted[rank]);
                below + (h - rank as f64) * (above - below)
            }
            _ => f64::NAN,
        }
    }

    /// Brings the order up to `points`: the values of rounds before its first leave, those
    /// after the last one held enter, each leaving value paired with an entering one where it
    /// can be (a window that moved by a round, at every tick, costs one shift of the values
    /// between the two); anything else (the first call, a window that is not a continuation)
    /// is ordered afresh.
    fn follow(&mut self, points: &[(Timestamp, f64)]) {
        let first = points.first().map(|p| p.0);
        let leaving =
            self.window.iter().take_while(|(at, _)| first.is_none_or(|first| *at < first)).count();
        let held = self.window.len() - leaving;
        let continues = held <= points.len()
            && self.window.get(leaving).map(|p| p.0) == first.filter(|_| held > 0)
            && self.window.back().map(|p| p.0) == held.checked_sub(1).map(|i| points[i].0);
        let entering = if continues { &points[held..] } else { points };
        let mut replaced = continues;
        if continues {
            for (i, &(at, value)) in entering.iter().enumerate() {
                let left = if i < leaving { self.window.pop_front() } else { None };
                self.window.push_back((at, value));
                let new = order_key(value);
                replaced &= match left {
                    Some((_, old)) => replace(&mut self.sorted, order_key(old), new),
                    None => {
                        let at = self.sorted.partition_point(|&key| key < new);
                        self.sorted.insert(at, new);
                        true
                    }
                };
            }
            for _ in entering.len()..leaving {
                replaced &= self
                    .window
                    .pop_front()
                    .is_some_and(|(_, old)| remove(&mut self.sorted, order_key(old)));
            }
        }
        // Not a continuation, or a leaving value was not held: what is held is not what was
        // read. Start afresh.
        if !replaced {
            self.window.clear();
            self.window.extend(points.iter().copied());
            self.sorted.clear();
            self.sorted.extend(points.iter().map(|p| order_key(p.1)));
            self.sorted.sort_unstable();
        }
    }
}

/// `value`'s place in [`f64::total_cmp`]'s order as an integer, as `total_cmp` computes it:
/// the bits of a negative number but the sign flipped, so that integers order as the numbers.
fn order_key(value: f64) -> i64 {
    let bits = value.to_bits() as i64;
    bits ^ ((((bits >> 63) as u64) >> 1) as i64)
}

/// The number whose [`order_key`] is `key` (the mapping is its own inverse).
fn from_order_key(key: i64) -> f64 {
    f64::from_bits((key ^ ((((key >> 63) as u64) >> 1) as i64)) as u64)
}

/// Replaces `old` with `new` in ascending `sorted`, shifting only the keys between them by
/// one place; `false` if `old` is not there.
fn replace(sorted: &mut [i64], old: i64, new: i64) -> bool {
    let Ok(at) = sorted.binary_search(&old) else { return false };
    // Counted with `old` still in place: past it exactly when `new` is greater.
    let to = sorted.partition_point(|&key| key < new);
    if to > at {
        sorted.copy_within(at + 1..to, at);
        sorted[to - 1] = new;
    } else {
        sorted.copy_within(to..at, to + 1);
        sorted[to] = new;
    }
    true
}

/// Removes one `old` from ascending `sorted`; `false` if it is not there.
fn remove(sorted: &mut Vec<i64>, old: i64) -> bool {
    let Ok(at) = sorted.binary_search(&old) else { return false };
    sorted.remove(at);
    true
}

/// The smallest count a Poisson variable of mean `lambda` exceeds with probability at most
/// `exceedance`. Summed term by term while the terms are representable (the first,
/// e^-lambda, underflows past a mean of about 700, and the sum takes a term per count); from
/// a mean of 30 on, where the count is nearly normal, the Cornish-Fisher expansion (normal
/// plus the skew's first correction), which is within one count there. `z` is the standard
/// normal's quantile at `1 - exceedance`, computed once per metric rather than per round.
fn poisson_quantile(lambda: f64, exceedance: f64, z: f64) -> f64 {
    const NORMAL_FROM: f64 = 30.0;
    if lambda >= NORMAL_FROM {
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
/// One pass over the points, each time read once as its seconds after the first point's
/// ([`seconds_between`], which skips the calendar within a day): `simulate` fits a line at
/// every tick, and a calendar difference between two `Timestamp`s costs more than all the
/// arithmetic around it. Times relative to the first point keep the sums as small as the
/// window and the single-pass formula accurate.
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
    let seconds_since_first = |at: &Timestamp| seconds_between(first, *at);
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

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use statrs::statistics::{Data, OrderStatistics};

    fn points(values: &[f64]) -> Vec<(Timestamp, f64)> {
        values.iter().map(|&v| (Timestamp::UNIX_EPOCH, v)).collect()
    }

    proptest! {
        /// The percentile is the one `statrs` computes, over a window that slides by a few
        /// rounds at a time (kept in order) and over one taken afresh.
        #[test]
        fn percentile_is_statrs_percentile(
            values in prop::collection::vec(-1e6f64..1e6, 1..300),
            width in 1usize..40,
            stride in 1usize..4,
            p in 0u8..=100,
        ) {
            let all: Vec<_> = values
                .iter()
                .enumerate()
                .map(|(i, &v)| (Timestamp::UNIX_EPOCH + chrono::Duration::seconds(i as i64), v))
                .collect();
            let mut kept = OrderedValues::default();
            for end in (1..=all.len()).step_by(stride) {
                let window = &all[end.saturating_sub(width)..end];
                let mut copy: Vec<f64> = window.iter().map(|p| p.1).collect();
                let expected = Data::new(copy.as_mut_slice()).percentile(usize::from(p));
                prop_assert_eq!(kept.percentile(window, p).to_bits(), expected.to_bits());
                let fresh = statistic(Statistic::Percentile(p), window, Timestamp::UNIX_EPOCH);
                prop_assert_eq!(fresh.to_bits(), expected.to_bits());
            }
        }

        /// Keys order as `total_cmp` orders the numbers, and give each number back bit for bit.
        #[test]
        fn order_keys_order_as_total_cmp(
            a in prop_oneof![any::<f64>(), Just(-0.0), Just(0.0), Just(f64::NAN), Just(-f64::NAN)],
            b in any::<f64>(),
        ) {
            prop_assert_eq!(order_key(a).cmp(&order_key(b)), a.total_cmp(&b));
            prop_assert_eq!(from_order_key(order_key(a)).to_bits(), a.to_bits());
        }

        /// The four-lane sums are the plain sums, up to rounding.
        #[test]
        fn lane_sums_are_the_sums(values in prop::collection::vec(0f64..1e6, 1..300)) {
            let (sum, squares) = sum_and_squared_steps(&points(&values));
            let plain: f64 = values.iter().sum();
            let plain_squares: f64 = values.windows(2).map(|w| (w[1] - w[0]).powi(2)).sum();
            prop_assert!((sum - plain).abs() <= 1e-9 * plain.abs().max(1.0));
            prop_assert!((squares - plain_squares).abs() <= 1e-9 * plain_squares.max(1.0));
        }
    }
}
