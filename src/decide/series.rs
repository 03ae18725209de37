//! Turns a window of observations into the numbers a metric is judged on: per-round values
//! aggregated across instances, then one statistic over the window (with `statrs`), and an
//! optional linear trend.

use std::time::Duration;

use statrs::statistics::{Data, OrderStatistics, Statistics};

use crate::observe::{History, InstanceSample, Observation, QueryResult, Timestamp};
use crate::policy::{Aggregate, Metric, MetricSource, Statistic};

/// One aggregated value per round, oldest first, or why there is none.
pub fn series(
    metric: &Metric,
    history: &History,
    now: Timestamp,
    window: Duration,
) -> Result<Vec<(Timestamp, f64)>, String> {
    let w = history.window(now, window);
    let mut previous = w.before;
    let mut points = Vec::new();
    let mut last_error = None;
    for round in w.rounds {
        match round_value(metric, round, previous) {
            Ok(v) => points.push((round.at, v)),
            Err(e) => last_error = Some(e),
        }
        previous = Some(round);
    }
    if points.is_empty() {
        let why = last_error.unwrap_or_else(|| "no samples".to_owned());
        return Err(format!("{why} in the last {}", humantime::format_duration(window)));
    }
    Ok(points)
}

/// The metric's value in one round, aggregated across ready instances (or a query's series).
fn round_value(
    metric: &Metric,
    round: &Observation,
    previous: Option<&Observation>,
) -> Result<f64, String> {
    match &metric.source {
        MetricSource::Prometheus { query } => match round.query(query) {
            Some(QueryResult { value: Ok(series), .. }) => {
                aggregate(metric.aggregate, series.iter().copied())
                    .ok_or_else(|| "empty result".to_owned())
            }
            Some(QueryResult { value: Err(e), .. }) => Err(e.clone()),
            None => Err("query not evaluated".to_owned()),
        },
        MetricSource::Redis { field, rate } => {
            let values = round
                .instances
                .iter()
                .filter(|s| s.ready())
                .filter_map(|s| instance_value(s, field, *rate, round.at, previous));
            aggregate(metric.aggregate, values).ok_or_else(|| {
                if round.instances.iter().any(InstanceSample::ready) {
                    format!("no ready instance reports `{field}`")
                } else {
                    "no ready instance".to_owned()
                }
            })
        }
    }
}

/// `None` for no values: an empty aggregate is missing, not zero.
fn aggregate(aggregate: Aggregate, mut values: impl Iterator<Item = f64>) -> Option<f64> {
    let first = values.next()?;
    let (mut sum, mut max, mut n) = (first, first, 1.0);
    for v in values {
        sum += v;
        max = max.max(v);
        n += 1.0;
    }
    Some(match aggregate {
        Aggregate::Mean => sum / n,
        Aggregate::Max => max,
        Aggregate::Sum => sum,
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
    }
}

/// Least-squares line through the series, evaluated `ahead` after `now`. `None` with fewer
/// than two distinct times.
pub fn linear_forecast(
    points: &[(Timestamp, f64)],
    now: Timestamp,
    ahead: Duration,
) -> Option<f64> {
    if points.len() < 2 {
        return None;
    }
    let xs: Vec<f64> = points.iter().map(|(at, _)| (*at - now).as_seconds_f64()).collect();
    let mean_x = xs.iter().mean();
    let mean_y = points.iter().map(|p| p.1).mean();
    let (mut sxy, mut sxx) = (0.0, 0.0);
    for (x, (_, y)) in xs.iter().zip(points) {
        sxy += (x - mean_x) * (y - mean_y);
        sxx += (x - mean_x) * (x - mean_x);
    }
    if sxx <= f64::EPSILON {
        return None;
    }
    let slope = sxy / sxx;
    Some(mean_y + slope * (ahead.as_secs_f64() - mean_x))
}
