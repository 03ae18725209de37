//! `spec.scaling`: the replica bounds, the metrics and their statistics, the scale-up and
//! scale-down behaviour, scheduled floors, and the forecast.

use std::time::Duration;

use super::checker::{Checker, secs};
use crate::policy::bounds;
use crate::policy::source_map::FieldPath;
use crate::policy::spec::{
    BandSpec, BehaviorSpec, BurstsSpec, CronFloorSpec, ForecastSpec, MetricSpec, SaturationSpec,
    ScalingSpec, SeasonalSpec, StepSpec,
};
use crate::policy::{
    Aggregate, Band, Behavior, Bursts, CronFloor, Forecast, ForecastMethod, Metric, MetricSource,
    Sampling, Saturation, Scaling, Seasonal, Statistic, Step,
};

/// Replica counts above this are almost certainly a typo (and would not fit a StatefulSet
/// one operator can reason about).
pub const MAX_REPLICAS_LIMIT: i64 = 1000;

pub(super) fn check_scaling(
    c: &mut Checker,
    spec: &ScalingSpec,
    path: &FieldPath,
    sampling: Option<&Sampling>,
) -> Option<Scaling> {
    let interval = sampling.map(|s| s.interval);
    let min_path = path.key("minReplicas");
    let max_path = path.key("maxReplicas");
    let min: Option<u16> = c
        .required(spec.min_replicas.as_ref(), &min_path)
        .and_then(|&min| c.int(Some(min), &min_path, None, 1, MAX_REPLICAS_LIMIT));
    let mut max: Option<u16> = c
        .required(spec.max_replicas.as_ref(), &max_path)
        .and_then(|&max| c.int(Some(max), &max_path, None, 1, MAX_REPLICAS_LIMIT));
    if let (Some(min), Some(found)) = (min, max)
        && found < min
    {
        c.bad(&max_path, format!("must be >= minReplicas ({min}), found {found}"));
        max = None;
    }

    let metrics_path = path.key("metrics");
    let metrics = c.required(spec.metrics.as_ref(), &metrics_path).and_then(|metrics| {
        if metrics.is_empty() {
            c.bad(&metrics_path, "needs at least one metric");
            return None;
        }
        let checked: Vec<Option<Metric>> = metrics
            .iter()
            .enumerate()
            .map(|(i, metric)| check_metric(c, metric, &metrics_path.index(i), interval))
            .collect();
        checked.into_iter().collect::<Option<Vec<_>>>()
    });

    let tolerance = match spec.tolerance {
        None => Some(0.1),
        Some(t) if t.is_finite() && (0.0..1.0).contains(&t) => Some(t),
        Some(t) => {
            c.bad(&path.key("tolerance"), format!("must be >= 0 and < 1, found {t}"));
            None
        }
    };
    let band = match &spec.band {
        None => Some(None),
        Some(_) if spec.tolerance.is_some() => {
            c.unexpected(
                &path.key("band"),
                "band replaces tolerance: give one or the other, not both",
            );
            None
        }
        Some(band) => check_band(c, band, &path.key("band")).map(Some),
    };
    let warmup =
        c.duration(spec.warmup.as_deref(), &path.key("warmup"), Some(secs(30)), bounds::WARMUP);
    let scale_up = check_behavior(
        c,
        spec.scale_up.as_ref(),
        &path.key("scaleUp"),
        Behavior {
            stabilization: Duration::ZERO,
            max_step: Step::Percent(100),
            period: secs(15),
            cooldown: Duration::ZERO,
        },
    );
    let scale_down = check_behavior(
        c,
        spec.scale_down.as_ref(),
        &path.key("scaleDown"),
        Behavior {
            stabilization: secs(300),
            max_step: Step::Percent(100),
            period: secs(15),
            cooldown: Duration::ZERO,
        },
    );
    let schedule = match &spec.schedule {
        None => Some(Vec::new()),
        Some(floors) => {
            let checked: Vec<Option<CronFloor>> = floors
                .iter()
                .enumerate()
                .map(|(i, floor)| check_floor(c, floor, &path.key("schedule").index(i), max))
                .collect();
            checked.into_iter().collect::<Option<Vec<_>>>()
        }
    };
    let forecast = match &spec.forecast {
        None => Some(None),
        Some(forecast) => check_forecast(c, forecast, &path.key("forecast"), interval).map(Some),
    };

    Some(Scaling {
        min_replicas: min?,
        max_replicas: max?,
        metrics: metrics?,
        tolerance: tolerance?,
        band: band?,
        scale_up: scale_up?,
        scale_down: scale_down?,
        schedule: schedule?,
        forecast: forecast?,
        warmup: warmup?,
    })
}

fn check_metric(
    c: &mut Checker,
    spec: &MetricSpec,
    path: &FieldPath,
    interval: Option<Duration>,
) -> Option<Metric> {
    let source = match (&spec.redis, &spec.prometheus) {
        (None, None) => {
            c.bad(path, "needs a source: `redis: INFO_FIELD` or `prometheus: QUERY`");
            None
        }
        (Some(_), Some(_)) => {
            c.unexpected(
                &path.key("prometheus"),
                "a metric has one source; `redis` is already set",
            );
            None
        }
        (Some(field), None) => {
            let valid = !field.is_empty()
                && field.chars().all(|ch| ch.is_ascii_alphanumeric() || ch == '_');
            if valid {
                let rate = spec.rate.unwrap_or(false);
                let plausible_max =
                    spec.plausible_max.or_else(|| bounds::default_plausible_max(field, rate));
                Some(MetricSource::Redis { field: field.clone(), rate, plausible_max })
            } else {
                c.bad(
                    &path.key("redis"),
                    format!(
                        "must be a field of Redis INFO like `instantaneous_ops_per_sec` \
                         (letters, digits, `_`), found `{field}`"
                    ),
                );
                None
            }
        }
        (None, Some(query)) => {
            if spec.rate.is_some() {
                c.unexpected(
                    &path.key("rate"),
                    "applies to `redis` metrics only; a PromQL query takes rate() itself",
                );
                None
            } else if spec.plausible_max.is_some() {
                c.unexpected(
                    &path.key("plausibleMax"),
                    "applies to `redis` metrics only (one instance's reading); bound a PromQL \
                     query in the query itself (clamp_max)",
                );
                None
            } else if query.trim().is_empty() {
                c.bad(&path.key("prometheus"), "must be a PromQL query");
                None
            } else {
                Some(MetricSource::Prometheus { query: query.clone() })
            }
        }
    };
    // A Prometheus query usually sums the whole deployment already; a Redis field is per
    // instance, and the mean load per replica is what a per-replica target compares with.
    let default_aggregate = if spec.prometheus.is_some() && spec.redis.is_none() {
        Aggregate::Sum
    } else {
        Aggregate::Mean
    };
    let aggregate = c.word(
        spec.aggregate.as_deref(),
        &path.key("aggregate"),
        default_aggregate,
        &[("mean", Aggregate::Mean), ("max", Aggregate::Max), ("sum", Aggregate::Sum)],
    );
    let window_path = path.key("window");
    let window = c
        .duration(spec.window.as_deref(), &window_path, Some(secs(60)), bounds::METRIC_WINDOW)
        .and_then(|window| c.at_least_intervals(window, &window_path, interval, 1));
    let statistic = check_statistic(c, spec, path, window);
    let target = c.required(spec.target.as_ref(), &path.key("target")).and_then(|&target| {
        if target.is_finite() && target > 0.0 {
            Some(target)
        } else {
            c.bad(
                &path.key("target"),
                format!("must be a finite number greater than 0, found {target}"),
            );
            None
        }
    });
    let source = source.and_then(|source| check_plausible_max(c, spec, path, source, target));
    let seasonal = match &spec.seasonal {
        None => Some(None),
        Some(seasonal) => {
            check_seasonal(c, seasonal, &path.key("seasonal"), aggregate, &spec.prometheus)
                .map(Some)
        }
    };
    let saturation = match &spec.saturation {
        None => Some(None),
        Some(saturation) => {
            check_saturation(c, saturation, &path.key("saturation"), target).map(Some)
        }
    };
    let bursts = match &spec.bursts {
        None => Some(None),
        Some(bursts) => check_bursts(c, bursts, &path.key("bursts"), interval).map(Some),
    };
    if let (Some(Some(saturation)), Some(window), Some(interval)) = (&saturation, window, interval)
        && window < interval.saturating_mul(u32::from(saturation.rounds))
    {
        c.bad(
            &path.key("saturation").key("rounds"),
            format!(
                "{} rounds of sampling.interval ({}) do not fit in the metric's window ({})",
                saturation.rounds,
                humantime::format_duration(interval),
                humantime::format_duration(window)
            ),
        );
        return None;
    }
    Some(Metric {
        source: source?,
        aggregate: aggregate?,
        statistic: statistic?,
        window: window?,
        target: target?,
        seasonal: seasonal?,
        saturation: saturation?,
        bursts: bursts?,
    })
}

/// `seasonal`: up to three distinct periods of whole minutes (the profile is kept per
/// minute), on a total (`mean` or `sum`: a `max` is one instance's load, which a different
/// count of replicas would have changed).
fn check_seasonal(
    c: &mut Checker,
    spec: &SeasonalSpec,
    path: &FieldPath,
    aggregate: Option<Aggregate>,
    query: &Option<String>,
) -> Option<Seasonal> {
    if aggregate == Some(Aggregate::Max) {
        c.unexpected(
            path,
            "needs `aggregate: mean` or `sum`: a `max` is one instance's load, and it depends \
             on how many replicas shared it",
        );
        return None;
    }
    let periods_path = path.key("periods");
    let periods = match &spec.periods {
        None => Some(vec![secs(86_400), secs(7 * 86_400)]),
        Some(texts) if texts.is_empty() || texts.len() > 3 => {
            c.bad(&periods_path, format!("needs 1 to 3 periods, found {}", texts.len()));
            None
        }
        Some(texts) => {
            let mut periods = Vec::with_capacity(texts.len());
            for (i, text) in texts.iter().enumerate() {
                let at = periods_path.index(i);
                let period = c.duration(Some(text), &at, None, bounds::SEASONAL_PERIOD);
                match period {
                    Some(p) if p.as_secs() % 60 != 0 || p.subsec_nanos() != 0 => {
                        c.bad(&at, format!("must be whole minutes, found {text}"));
                    }
                    Some(p) if periods.contains(&p) => {
                        c.bad(&at, format!("is listed twice: {text}"));
                    }
                    Some(p) => periods.push(p),
                    None => {}
                }
            }
            (periods.len() == texts.len()).then(|| {
                periods.sort_unstable();
                periods
            })
        }
    };
    let horizon = c.duration(
        spec.horizon.as_deref(),
        &path.key("horizon"),
        Some(secs(5 * 60)),
        bounds::SEASONAL_HORIZON,
    );
    let max_error = match spec.max_error {
        None => Some(0.25),
        Some(e) if e.is_finite() && e > 0.0 && e <= 1.0 => Some(e),
        Some(e) => {
            c.bad(&path.key("maxError"), format!("must be > 0 and <= 1, found {e}"));
            None
        }
    };
    let min_rise = within(
        c,
        spec.min_rise.or(Some(1.0)),
        &path.key("minRise"),
        1.0..=bounds::SEASONAL_MAX_RISE,
        &format!("must be >= 1 and <= {}", bounds::SEASONAL_MAX_RISE),
    );
    let scale_down_stabilization = c.duration(
        spec.scale_down_stabilization.as_deref(),
        &path.key("scaleDownStabilization"),
        Some(secs(60)),
        bounds::STABILIZATION,
    );
    // A Prometheus metric's own query is its history.
    let history = check_history(c, &spec.history, path, query);
    Some(Seasonal {
        periods: periods?,
        horizon: horizon?,
        max_error: max_error?,
        min_rise: min_rise?,
        scale_down_stabilization: scale_down_stabilization?,
        history: history?,
    })
}

/// `bursts`: a quantile in [0.5, 1) that the window's rounds can answer (at least ten rounds
/// beyond it), a window of hours to a week that the history cap holds, and an expected ratio
/// of at least 1.
fn check_bursts(
    c: &mut Checker,
    spec: &BurstsSpec,
    path: &FieldPath,
    interval: Option<Duration>,
) -> Option<Bursts> {
    let window_path = path.key("window");
    let window = c
        .duration(spec.window.as_deref(), &window_path, Some(secs(86_400)), bounds::BURSTS_WINDOW)
        .and_then(|window| match interval.and_then(|i| bounds::history_problem(window, i)) {
            Some(problem) => {
                c.bad(&window_path, problem);
                None
            }
            None => Some(window),
        });
    let quantile_path = path.key("quantile");
    let quantile = match spec.quantile {
        None => Some(0.99),
        Some(q) if q.is_finite() && (0.5..1.0).contains(&q) => Some(q),
        Some(q) => {
            c.bad(&quantile_path, format!("must be at least 0.5 and below 1, found {q}"));
            None
        }
    };
    // A quantile the window cannot answer is reported on the quantile; `expect` is still
    // checked, so every problem shows at once.
    let quantile = quantile.filter(|&q| {
        let (Some(window), Some(interval)) = (window, interval) else { return true };
        let rounds = bounds::history_rounds(window, interval);
        let needed = (10.0 / (1.0 - q)).ceil();
        if (rounds as f64) >= needed {
            return true;
        }
        c.bad(
            &quantile_path,
            format!(
                "the {q} quantile needs at least {needed} rounds in bursts.window (ten beyond \
                 it); {} at sampling.interval {} holds {rounds}",
                humantime::format_duration(window),
                humantime::format_duration(interval)
            ),
        );
        false
    });
    const BURST_RATIOS: std::ops::RangeInclusive<f64> = 1.0..=16.0;
    const BURST_RATIOS_TEXT: &str = "must be at least 1 and at most 16";
    let expect = within(c, spec.expect, &path.key("expect"), BURST_RATIOS, BURST_RATIOS_TEXT);
    // No cap unless one is written.
    let max_factor = match spec.max_factor {
        None => Some(f64::INFINITY),
        given => within(c, given, &path.key("maxFactor"), BURST_RATIOS, BURST_RATIOS_TEXT),
    };
    let history = check_history(c, &spec.history, path, &None);
    Some(Bursts {
        quantile: quantile?,
        window: window?,
        expect: expect?,
        max_factor: max_factor?,
        history: history?,
    })
}

/// A finite number within `range`, or `must` as the problem (`must be ..., found X`); an
/// absent one is required (give `Some(default)` for a field that has one).
fn within(
    c: &mut Checker,
    value: Option<f64>,
    path: &FieldPath,
    range: std::ops::RangeInclusive<f64>,
    must: &str,
) -> Option<f64> {
    match value {
        Some(v) if v.is_finite() && range.contains(&v) => Some(v),
        Some(v) => {
            c.bad(path, format!("{must}, found {v}"));
            None
        }
        None => c.required(None::<&f64>, path).copied(),
    }
}

/// A `history` query: as written, or `default` when absent; a blank one is a problem.
fn check_history(
    c: &mut Checker,
    history: &Option<String>,
    path: &FieldPath,
    default: &Option<String>,
) -> Option<Option<String>> {
    match history {
        Some(text) if text.trim().is_empty() => {
            c.bad(&path.key("history"), "must be a PromQL query");
            None
        }
        Some(text) => Some(Some(text.clone())),
        None => Some(default.clone()),
    }
}

/// `saturation`: a ceiling above the target (at or below it, every busy replica would read
/// saturated), and a factor above 1 and at most 10.
fn check_saturation(
    c: &mut Checker,
    spec: &SaturationSpec,
    path: &FieldPath,
    target: Option<f64>,
) -> Option<Saturation> {
    let above_path = path.key("above");
    let above = c.required(spec.above.as_ref(), &above_path).and_then(|&above| match target {
        _ if !above.is_finite() || above <= 0.0 => {
            c.bad(&above_path, format!("must be a finite number greater than 0, found {above}"));
            None
        }
        Some(target) if above <= target => {
            c.bad(
                &above_path,
                format!(
                    "must be above the target ({target}): at or below it every busy replica \
                     would read saturated, found {above}"
                ),
            );
            None
        }
        _ => Some(above),
    });
    let factor = match spec.factor {
        None => Some(2.0),
        Some(f) if f.is_finite() && f > 1.0 && f <= 10.0 => Some(f),
        Some(f) => {
            c.bad(&path.key("factor"), format!("must be > 1 and <= 10, found {f}"));
            None
        }
    };
    let rounds = c.int(spec.rounds, &path.key("rounds"), Some(1), 1, SATURATION_ROUNDS_MAX);
    Some(Saturation { above: above?, factor: factor?, rounds: rounds? })
}

/// More rounds than this and a real ceiling would go unanswered for a minute at 10 s rounds.
const SATURATION_ROUNDS_MAX: i64 = 6;

/// `band`: three fractions of the target in (0, 2], ordered
/// `scaleDownBelow <= sizeFor <= scaleUpAbove` (a scale-up sized above its own trigger would
/// trigger again, and a scale-down allowed above the sizing would undo the scale-up).
fn check_band(c: &mut Checker, spec: &BandSpec, path: &FieldPath) -> Option<Band> {
    let mut fraction = |value: Option<&f64>, key: &str| {
        let field = path.key(key);
        c.required(value, &field).and_then(|&v| {
            if v.is_finite() && v > 0.0 && v <= 2.0 {
                Some(v)
            } else {
                c.bad(&field, format!("must be a fraction of the target in (0, 2], found {v}"));
                None
            }
        })
    };
    let up = fraction(spec.scale_up_above.as_ref(), "scaleUpAbove");
    let size_for = fraction(spec.size_for.as_ref(), "sizeFor");
    let down = fraction(spec.scale_down_below.as_ref(), "scaleDownBelow");
    let (up, size_for, down) = (up?, size_for?, down?);
    let mut ordered = true;
    if size_for > up {
        c.bad(
            &path.key("sizeFor"),
            format!("must be at most scaleUpAbove ({up}): a scale-up would trigger the next, found {size_for}"),
        );
        ordered = false;
    }
    if down > size_for {
        c.bad(
            &path.key("scaleDownBelow"),
            format!("must be at most sizeFor ({size_for}): a scale-down would undo a scale-up, found {down}"),
        );
        ordered = false;
    }
    ordered.then_some(Band { scale_up_above: up, size_for, scale_down_below: down })
}

/// `plausibleMax`: a finite number above the target. At or below the target, honest load
/// could never reach the target, so the metric could never scale up: a mistake, whether the
/// policy wrote the number or the field's default is too low for this deployment.
fn check_plausible_max(
    c: &mut Checker,
    spec: &MetricSpec,
    path: &FieldPath,
    source: MetricSource,
    target: Option<f64>,
) -> Option<MetricSource> {
    let MetricSource::Redis { field, plausible_max: Some(max), .. } = &source else {
        return Some(source);
    };
    let max_path = path.key("plausibleMax");
    if !(max.is_finite() && *max > 0.0) {
        c.bad(&max_path, format!("must be a finite number greater than 0, found {max}"));
        return None;
    }
    match target {
        Some(target) if *max <= target => {
            let (at, message) = if spec.plausible_max.is_some() {
                let message = format!(
                    "must be above the target ({target}): a reading above it is left out as \
                     implausible, so the metric could never reach its target, found {max}"
                );
                (max_path, message)
            } else {
                // No `plausibleMax` in the file: said at the target it is too low for.
                let message = format!(
                    "the default plausible maximum of `{field}` per instance is {max}, not \
                     above the target ({target}): set plausibleMax above the target if one \
                     instance really carries that much"
                );
                (path.key("target"), message)
            };
            c.bad(&at, message);
            None
        }
        _ => Some(source),
    }
}

fn check_statistic(
    c: &mut Checker,
    spec: &MetricSpec,
    path: &FieldPath,
    window: Option<Duration>,
) -> Option<Statistic> {
    let stat_path = path.key("statistic");
    let half_life_path = path.key("halfLife");
    let exceedance_path = path.key("exceedance");
    let text = spec.statistic.as_deref().unwrap_or("mean");
    let statistic = match text {
        "mean" => Some(Statistic::Mean),
        "max" => Some(Statistic::Max),
        "min" => Some(Statistic::Min),
        "last" => Some(Statistic::Last),
        // A quarter of the window: the oldest sample in the window then weighs 1/16. Without
        // a window there is no default to fall back on; the window's own problem has been
        // reported.
        "ewma" => c
            .duration(
                spec.half_life.as_deref(),
                &half_life_path,
                window.map(|w| w / 4),
                bounds::HALF_LIFE,
            )
            .map(|half_life| Statistic::Ewma { half_life }),
        "tail" => within(
            c,
            spec.exceedance.or(Some(DEFAULT_EXCEEDANCE)),
            &exceedance_path,
            bounds::TAIL_EXCEEDANCE,
            &format!(
                "must be >= {} and <= {}",
                bounds::TAIL_EXCEEDANCE.start(),
                bounds::TAIL_EXCEEDANCE.end()
            ),
        )
        .map(|exceedance| Statistic::Tail { exceedance }),
        other => match percentile(other) {
            Some(n @ 1..=99) => Some(Statistic::Percentile(n)),
            _ => {
                c.bad(
                    &stat_path,
                    format!(
                        "unknown statistic `{other}`, expected one of mean, max, min, last, \
                         p1..p99 (e.g. p95), ewma, tail"
                    ),
                );
                return None;
            }
        },
    };
    if spec.half_life.is_some() && text != "ewma" {
        c.unexpected(&half_life_path, "applies only with `statistic: ewma`");
        return None;
    }
    if spec.exceedance.is_some() && text != "tail" {
        c.unexpected(&exceedance_path, "applies only with `statistic: tail`");
        return None;
    }
    statistic
}

/// `tail`'s default: one round in a thousand above the value.
const DEFAULT_EXCEEDANCE: f64 = 0.001;

/// `p95` -> 95; digits only, without a leading zero, so each percentile has one spelling.
fn percentile(text: &str) -> Option<u8> {
    let digits = text.strip_prefix('p')?;
    let plain = digits.chars().all(|ch| ch.is_ascii_digit()) && !digits.starts_with('0');
    if plain { digits.parse().ok() } else { None }
}

fn check_behavior(
    c: &mut Checker,
    spec: Option<&BehaviorSpec>,
    path: &FieldPath,
    default: Behavior,
) -> Option<Behavior> {
    let Some(spec) = spec else { return Some(default) };
    let stabilization = c.duration(
        spec.stabilization.as_deref(),
        &path.key("stabilization"),
        Some(default.stabilization),
        bounds::STABILIZATION,
    );
    let max_step = match &spec.max_step {
        None => Some(default.max_step),
        Some(step) => check_step(c, step, &path.key("maxStep")),
    };
    let period = c.duration(
        spec.period.as_deref(),
        &path.key("period"),
        Some(default.period),
        bounds::PERIOD,
    );
    let cooldown = c.duration(
        spec.cooldown.as_deref(),
        &path.key("cooldown"),
        Some(default.cooldown),
        bounds::COOLDOWN,
    );
    Some(Behavior {
        stabilization: stabilization?,
        max_step: max_step?,
        period: period?,
        cooldown: cooldown?,
    })
}

fn check_step(c: &mut Checker, step: &StepSpec, path: &FieldPath) -> Option<Step> {
    match step {
        StepSpec::Pods(pods) => {
            c.int(Some(*pods), path, None, 1, MAX_REPLICAS_LIMIT).map(Step::Pods)
        }
        StepSpec::Text(text) => {
            let percent = text.trim().strip_suffix('%').and_then(|n| n.trim().parse::<i64>().ok());
            match percent {
                Some(p @ 1..=1000) => u16::try_from(p).ok().map(Step::Percent),
                Some(p) => {
                    c.bad(path, format!("a percentage step must be 1% to 1000%, found {p}%"));
                    None
                }
                None => {
                    c.bad(
                        path,
                        format!(
                            "expected a whole number of pods like 4 or a percentage like \
                             \"50%\", found `{text}`"
                        ),
                    );
                    None
                }
            }
        }
    }
}

fn check_floor(
    c: &mut Checker,
    spec: &CronFloorSpec,
    path: &FieldPath,
    max_replicas: Option<u16>,
) -> Option<CronFloor> {
    let cron = c.cron(spec.cron.as_deref(), &path.key("cron"));
    let min_path = path.key("minReplicas");
    let min_replicas = c
        .required(spec.min_replicas.as_ref(), &min_path)
        .and_then(|&min| c.int::<u16>(Some(min), &min_path, None, 1, MAX_REPLICAS_LIMIT))
        .and_then(|min| match max_replicas {
            Some(max) if min > max => {
                c.bad(&min_path, format!("must be <= maxReplicas ({max}), found {min}"));
                None
            }
            _ => Some(min),
        });
    let duration = c.duration(spec.duration.as_deref(), &path.key("for"), None, bounds::FLOOR_FOR);
    Some(CronFloor { cron: cron?, min_replicas: min_replicas?, duration: duration? })
}

fn check_forecast(
    c: &mut Checker,
    spec: &ForecastSpec,
    path: &FieldPath,
    interval: Option<Duration>,
) -> Option<Forecast> {
    let method = c.word(
        spec.method.as_deref(),
        &path.key("method"),
        ForecastMethod::Linear,
        &[("linear", ForecastMethod::Linear)],
    );
    let window_path = path.key("window");
    // Two samples is the least a line can be fitted through.
    let window = c
        .duration(spec.window.as_deref(), &window_path, None, bounds::FORECAST_WINDOW)
        .and_then(|window| c.at_least_intervals(window, &window_path, interval, 2));
    Some(Forecast { method: method?, window: window? })
}

#[cfg(test)]
mod tests {
    use rstest::rstest;

    use super::*;
    use crate::policy::validate::testing::*;

    #[rstest]
    #[case::max_below_min(
        "  scaling:\n    minReplicas: 4\n    maxReplicas: 2\n    metrics: [{redis: x, target: 1}]\n",
        "spec.scaling.maxReplicas",
        7,
        18,
        "must be >= minReplicas (4), found 2"
    )]
    #[case::min_zero(
        "  scaling:\n    minReplicas: 0\n    maxReplicas: 2\n    metrics: [{redis: x, target: 1}]\n",
        "spec.scaling.minReplicas",
        6,
        18,
        "must be at least 1, found 0"
    )]
    #[case::max_over_limit(
        "  scaling:\n    minReplicas: 1\n    maxReplicas: 1001\n    metrics: [{redis: x, target: 1}]\n",
        "spec.scaling.maxReplicas",
        7,
        18,
        "must be at most 1000"
    )]
    #[case::max_missing(
        "  scaling:\n    minReplicas: 1\n    metrics: [{redis: x, target: 1}]\n",
        "spec.scaling.maxReplicas",
        6,
        5,
        "missing required field `maxReplicas`"
    )]
    #[case::metrics_empty(
        "  scaling:\n    minReplicas: 1\n    maxReplicas: 2\n    metrics: []\n",
        "spec.scaling.metrics",
        8,
        14,
        "needs at least one metric"
    )]
    #[case::metric_without_source(
        &scaling("      - target: 5\n"),
        "spec.scaling.metrics[1]", 11, 9, "needs a source"
    )]
    #[case::metric_with_two_sources(
        &scaling("      - {redis: x, prometheus: 'up', target: 5}\n"),
        "spec.scaling.metrics[1].prometheus", 11, 20, "one source; `redis` is already set"
    )]
    #[case::rate_on_prometheus(
        &scaling("      - {prometheus: 'up', rate: true, target: 5}\n"),
        "spec.scaling.metrics[1].rate", 11, 28, "applies to `redis` metrics only"
    )]
    #[case::redis_field_with_spaces(
        &scaling("      - {redis: 'used memory', target: 5}\n"),
        "spec.scaling.metrics[1].redis", 11, 17, "must be a field of Redis INFO"
    )]
    #[case::statistic_p100(
        &scaling("        statistic: p100\n"),
        "spec.scaling.metrics[0].statistic", 11, 20, "unknown statistic `p100`"
    )]
    #[case::half_life_without_ewma(
        &scaling("        halfLife: 30s\n"),
        "spec.scaling.metrics[0].halfLife", 11, 9, "applies only with `statistic: ewma`"
    )]
    #[case::exceedance_without_tail(
        &scaling("        exceedance: 0.001\n"),
        "spec.scaling.metrics[0].exceedance", 11, 9, "applies only with `statistic: tail`"
    )]
    #[case::exceedance_out_of_range(
        &scaling("        statistic: tail\n        exceedance: 0.5\n"),
        "spec.scaling.metrics[0].exceedance", 12, 21, "must be >= 0.000001 and <= 0.1, found 0.5"
    )]
    #[case::aggregate_unknown(
        &scaling("        aggregate: avg\n"),
        "spec.scaling.metrics[0].aggregate", 11, 20, "unknown value `avg`, expected one of mean, max, sum"
    )]
    #[case::window_shorter_than_interval(
        &scaling("        window: 5s\n"),
        "spec.scaling.metrics[0].window", 11, 17, "must be at least sampling.interval (10s), found 5s"
    )]
    #[case::target_zero(
        "  scaling:\n    minReplicas: 1\n    maxReplicas: 2\n    metrics: [{redis: x, target: 0}]\n",
        "spec.scaling.metrics[0].target",
        8,
        34,
        "must be a finite number greater than 0, found 0"
    )]
    #[case::target_nan(
        "  scaling:\n    minReplicas: 1\n    maxReplicas: 2\n    metrics: [{redis: x, target: .nan}]\n",
        "spec.scaling.metrics[0].target",
        8,
        34,
        "found NaN"
    )]
    #[case::target_missing(
        "  scaling:\n    minReplicas: 1\n    maxReplicas: 2\n    metrics: [{redis: x}]\n",
        "spec.scaling.metrics[0].target",
        8,
        15,
        "missing required field `target`"
    )]
    #[case::plausible_max_zero(
        &scaling("        plausibleMax: 0\n"),
        "spec.scaling.metrics[0].plausibleMax", 11, 23, "must be a finite number greater than 0, found 0"
    )]
    #[case::plausible_max_below_target(
        &scaling("        plausibleMax: 50\n"),
        "spec.scaling.metrics[0].plausibleMax", 11, 23, "must be above the target (100)"
    )]
    #[case::plausible_max_on_a_query(
        "  scaling:\n    minReplicas: 1\n    maxReplicas: 2\n    metrics: [{prometheus: up, plausibleMax: 5, target: 1}]\n",
        "spec.scaling.metrics[0].plausibleMax",
        8,
        32,
        "applies to `redis` metrics only"
    )]
    #[case::target_above_the_default_plausible_max(
        "  scaling:\n    minReplicas: 1\n    maxReplicas: 2\n    metrics: [{redis: instantaneous_ops_per_sec, target: 3000000}]\n",
        "spec.scaling.metrics[0].target",
        8,
        58,
        "the default plausible maximum of `instantaneous_ops_per_sec` per instance is 2000000"
    )]
    #[case::tolerance_one(
        &scaling("    tolerance: 1\n"),
        "spec.scaling.tolerance", 11, 16, "must be >= 0 and < 1, found 1"
    )]
    #[case::duration_without_unit(
        &scaling("    warmup: 30\n"),
        "spec.scaling.warmup", 11, 13, "durations need a unit, e.g. `30s`"
    )]
    #[case::duration_garbage(
        &scaling("    warmup: soon\n"),
        "spec.scaling.warmup", 11, 13, "invalid duration `soon`"
    )]
    #[case::max_step_zero_percent(
        &scaling("    scaleUp: {maxStep: \"0%\"}\n"),
        "spec.scaling.scaleUp.maxStep", 11, 24, "must be 1% to 1000%, found 0%"
    )]
    #[case::max_step_fraction(
        &scaling("    scaleUp: {maxStep: 2.5}\n"),
        "spec.scaling.scaleUp.maxStep", 11, 24, "found `2.5`"
    )]
    #[case::max_step_zero_pods(
        &scaling("    scaleDown: {maxStep: 0}\n"),
        "spec.scaling.scaleDown.maxStep", 11, 26, "must be at least 1, found 0"
    )]
    #[case::period_zero(
        &scaling("    scaleDown: {period: 0s}\n"),
        "spec.scaling.scaleDown.period", 11, 25, "must be longer than 0"
    )]
    #[case::floor_above_max(
        &scaling("    schedule:\n      - {cron: '0 0 8 * * *', minReplicas: 11, for: 1h}\n"),
        "spec.scaling.schedule[0].minReplicas", 12, 44, "must be <= maxReplicas (10), found 11"
    )]
    #[case::floor_five_field_cron(
        &scaling("    schedule:\n      - {cron: '0 8 * * *', minReplicas: 2, for: 1h}\n"),
        "spec.scaling.schedule[0].cron", 12, 16, "invalid cron `0 8 * * *`"
    )]
    #[case::floor_without_for(
        &scaling("    schedule:\n      - {cron: '0 0 8 * * *', minReplicas: 2}\n"),
        "spec.scaling.schedule[0].for", 12, 9, "missing required field `for`"
    )]
    #[case::forecast_window_too_short(
        &scaling("    forecast: {window: 15s}\n"),
        "spec.scaling.forecast.window", 11, 24, "must be at least 2 x sampling.interval (20s)"
    )]
    #[case::forecast_method_unknown(
        &scaling("    forecast: {method: holt, window: 15m}\n"),
        "spec.scaling.forecast.method", 11, 24, "unknown value `holt`, expected one of linear"
    )]
    #[case::seasonal_period_twice(
        &scaling("        seasonal: {periods: [1d, 1d]}\n"),
        "spec.scaling.metrics[0].seasonal.periods[1]", 11, 34, "is listed twice: 1d"
    )]
    #[case::seasonal_period_not_whole_minutes(
        &scaling("        seasonal: {periods: [61m30s]}\n"),
        "spec.scaling.metrics[0].seasonal.periods[0]", 11, 30, "must be whole minutes, found 61m30s"
    )]
    #[case::seasonal_on_a_max(
        &scaling("        aggregate: max\n        seasonal: {}\n"),
        "spec.scaling.metrics[0].seasonal", 12, 9,
        "needs `aggregate: mean` or `sum`: a `max` is one instance's load, and it depends on how \
         many replicas shared it"
    )]
    #[case::seasonal_max_error_zero(
        &scaling("        seasonal: {maxError: 0}\n"),
        "spec.scaling.metrics[0].seasonal.maxError", 11, 30, "must be > 0 and <= 1, found 0"
    )]
    #[case::seasonal_min_rise_below_one(
        &scaling("        seasonal: {minRise: 0.5}\n"),
        "spec.scaling.metrics[0].seasonal.minRise", 11, 29, "must be >= 1 and <= 10, found 0.5"
    )]
    #[case::bursts_max_factor_below_one(
        &scaling("        bursts: {expect: 1.2, maxFactor: 0.5}\n"),
        "spec.scaling.metrics[0].bursts.maxFactor", 11, 42,
        "must be at least 1 and at most 16, found 0.5"
    )]
    #[case::seasonal_history_without_prometheus(
        &scaling("        seasonal: {history: 'sum(x)'}\n"),
        "spec.scaling.metrics[0].seasonal.history", 11, 20,
        "needs spec.prometheus.url to evaluate PromQL"
    )]
    #[case::bursts_history_empty(
        &scaling("        bursts: {expect: 1.2, history: ' '}\n"),
        "spec.scaling.metrics[0].bursts.history", 11, 40, "must be a PromQL query"
    )]
    #[case::bursts_history_without_prometheus(
        &scaling("        bursts: {expect: 1.2, history: 'avg(x)'}\n"),
        "spec.scaling.metrics[0].bursts.history", 11, 31,
        "needs spec.prometheus.url to evaluate PromQL"
    )]
    #[case::saturation_below_target(
        &scaling("        saturation: {above: 90}\n"),
        "spec.scaling.metrics[0].saturation.above", 11, 29,
        "must be above the target (100): at or below it every busy replica would read \
         saturated, found 90"
    )]
    #[case::saturation_rounds_zero(
        &scaling("        saturation: {above: 150, rounds: 0}\n"),
        "spec.scaling.metrics[0].saturation.rounds", 11, 42, "must be at least 1, found 0"
    )]
    #[case::saturation_rounds_beyond_the_window(
        &scaling("        window: 30s\n        saturation: {above: 150, rounds: 4}\n"),
        "spec.scaling.metrics[0].saturation.rounds", 12, 42,
        "4 rounds of sampling.interval (10s) do not fit in the metric's window (30s)"
    )]
    #[case::bursts_quantile_one(
        &scaling("        bursts: {quantile: 1, expect: 1.2}\n"),
        "spec.scaling.metrics[0].bursts.quantile", 11, 28, "must be at least 0.5 and below 1, found 1"
    )]
    #[case::bursts_quantile_beyond_the_window(
        &scaling("        bursts: {quantile: 0.999, window: 1h, expect: 1.2}\n"),
        "spec.scaling.metrics[0].bursts.quantile", 11, 28,
        "the 0.999 quantile needs at least 10000 rounds in bursts.window (ten beyond it); 1h at \
         sampling.interval 10s holds 360"
    )]
    #[case::bursts_window_minutes(
        &scaling("        bursts: {window: 10m, expect: 1.2}\n"),
        "spec.scaling.metrics[0].bursts.window", 11, 26, "hours to a week"
    )]
    #[case::bursts_window_beyond_the_history_cap(
        &scaling("        bursts: {window: 7d, expect: 1.2}\n"),
        "spec.scaling.metrics[0].bursts.window", 11, 26, "60480 rounds of history; at most 20160"
    )]
    #[case::bursts_expect_below_one(
        &scaling("        bursts: {expect: 0.9}\n"),
        "spec.scaling.metrics[0].bursts.expect", 11, 26, "must be at least 1 and at most 16, found 0.9"
    )]
    #[case::bursts_without_expect(
        &scaling("        bursts: {quantile: 0.99}\n"),
        "spec.scaling.metrics[0].bursts.expect", 11, 17, "missing required field `expect`"
    )]
    #[case::band_and_tolerance(
        &scaling("    tolerance: 0.1\n    band: {scaleUpAbove: 0.95, sizeFor: 0.9, scaleDownBelow: 0.85}\n"),
        "spec.scaling.band", 12, 5, "band replaces tolerance: give one or the other, not both"
    )]
    #[case::band_fraction_zero(
        &scaling("    band: {scaleUpAbove: 0, sizeFor: 0.9, scaleDownBelow: 0.85}\n"),
        "spec.scaling.band.scaleUpAbove", 11, 26, "must be a fraction of the target in (0, 2], found 0"
    )]
    #[case::band_sized_above_its_edge(
        &scaling("    band: {scaleUpAbove: 0.9, sizeFor: 0.95, scaleDownBelow: 0.85}\n"),
        "spec.scaling.band.sizeFor", 11, 40,
        "must be at most scaleUpAbove (0.9): a scale-up would trigger the next, found 0.95"
    )]
    #[case::band_down_above_the_sizing(
        &scaling("    band: {scaleUpAbove: 0.95, sizeFor: 0.9, scaleDownBelow: 0.92}\n"),
        "spec.scaling.band.scaleDownBelow", 11, 62,
        "must be at most sizeFor (0.9): a scale-down would undo a scale-up, found 0.92"
    )]
    fn a_broken_rule_is_reported_at_its_field(
        #[case] body: &str,
        #[case] path: &str,
        #[case] line: usize,
        #[case] column: usize,
        #[case] message: &str,
    ) {
        assert_problem(&format!("{HEAD}{body}{TARGET}"), path, line, column, message);
    }

    #[rstest]
    #[case::p1("p1", Some(1))]
    #[case::p99("p99", Some(99))]
    #[case::leading_zero("p05", None)]
    #[case::signed("p+5", None)]
    #[case::bare("p", None)]
    fn percentiles_have_one_spelling(#[case] text: &str, #[case] expected: Option<u8>) {
        assert_eq!(percentile(text), expected);
    }
}
