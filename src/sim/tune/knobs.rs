//! The search space: one [`Knob`] per tunable field of `spec.scaling` and one [`MetricKnob`]
//! per field every metric has, each with the values the search tries, how to read and set it
//! on a validated [`Scaling`], and how it is written back to YAML. [`Tunable::all`] lists what
//! one base policy offers: every metric's target and window (and a tail's exceedance) tuned
//! apart, so a policy whose second or third metric decides is tuned where it decides. Adding a
//! knob is one more entry in [`KNOBS`] or [`METRIC_KNOBS`].
//!
//! Every value a knob offers keeps the policy valid on its own (the bounds `check` enforces:
//! [`crate::policy::bounds`], a window of at least one sampling interval and a history that
//! fits, a target under the metric's plausible maximum), and no two knobs constrain each
//! other, so any combination of offered values is a valid policy. `write` proves it for the
//! chosen one by loading the file it writes through the real loader.

use std::time::Duration;

use crate::policy::{Band, Metric, MetricSource, Policy, Scaling, Statistic, Step, bounds};

/// One value of a knob.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Setting {
    Duration(Duration),
    Number(f64),
    Statistic(Statistic),
    Step(Step),
    Band(Band),
}

impl Setting {
    /// The value as the policy file spells it (a YAML scalar).
    pub fn yaml(&self) -> String {
        match self {
            Setting::Duration(duration) => duration_text(*duration),
            Setting::Number(number) => number.to_string(),
            Setting::Statistic(statistic) => statistic_word(statistic),
            Setting::Step(Step::Pods(pods)) => pods.to_string(),
            Setting::Step(Step::Percent(percent)) => format!("\"{percent}%\""),
            // A flow mapping: the band's three fractions constrain each other, so they are
            // one value, written on one line.
            Setting::Band(band) => format!(
                "{{scaleUpAbove: {}, sizeFor: {}, scaleDownBelow: {}}}",
                band.scale_up_above, band.size_for, band.scale_down_below
            ),
        }
    }

    /// The value for people: as written, with an EWMA's half-life.
    pub fn show(&self) -> String {
        match self {
            Setting::Statistic(Statistic::Ewma { half_life }) => {
                format!("ewma/{}", duration_text(*half_life))
            }
            Setting::Statistic(Statistic::Tail { exceedance }) => format!("tail/{exceedance}"),
            Setting::Step(Step::Percent(percent)) => format!("{percent}%"),
            Setting::Band(band) => {
                format!("{}/{}/{}", band.scale_up_above, band.size_for, band.scale_down_below)
            }
            other => other.yaml(),
        }
    }
}

/// A statistic's word in `statistic:` (an EWMA's half-life is its own field, `halfLife`).
fn statistic_word(statistic: &Statistic) -> String {
    match statistic {
        Statistic::Mean => "mean".to_owned(),
        Statistic::Max => "max".to_owned(),
        Statistic::Min => "min".to_owned(),
        Statistic::Last => "last".to_owned(),
        Statistic::Percentile(n) => format!("p{n}"),
        Statistic::Ewma { .. } => "ewma".to_owned(),
        Statistic::Tail { .. } => "tail".to_owned(),
    }
}

/// A duration in the policy's one syntax, largest unit first without spaces (`1m30s`).
pub fn duration_text(duration: Duration) -> String {
    const UNITS: [(&str, u128); 5] =
        [("d", 86_400_000), ("h", 3_600_000), ("m", 60_000), ("s", 1_000), ("ms", 1)];
    let mut left = duration.as_millis();
    if left == 0 {
        return "0s".to_owned();
    }
    let mut text = String::new();
    for (unit, millis) in UNITS {
        if left >= millis {
            text.push_str(&format!("{}{unit}", left / millis));
            left %= millis;
        }
    }
    text
}

/// One tunable field of `spec.scaling`.
pub struct Knob {
    /// The field under `spec.scaling`, as `check` names it (`scaleDown.stabilization`).
    pub field: &'static str,
    /// The values the search tries for this base policy, the base's own value among them.
    pub values: fn(&Policy, &Scaling) -> Vec<Setting>,
    pub get: fn(&Scaling) -> Setting,
    pub set: fn(&mut Scaling, &Setting),
}

/// One field every metric has (`target`), tuned on each metric apart.
pub struct MetricKnob {
    /// The field under the metric, as `check` names it (`target`).
    pub field: &'static str,
    /// The values the search tries on metric `index`, the base's own value among them.
    pub values: fn(&Policy, &Scaling, usize) -> Vec<Setting>,
    pub get: fn(&Metric) -> Setting,
    pub set: fn(&mut Metric, &Setting),
}

/// A knob as one base policy offers it: one of [`KNOBS`], or one of [`METRIC_KNOBS`] on the
/// metric at an index.
#[derive(Clone, Copy)]
pub enum Tunable {
    Scaling(&'static Knob),
    Metric(&'static MetricKnob, usize),
}

impl Tunable {
    /// Every knob for a policy of `scaling`'s metrics: each metric's own, in metric order, then
    /// the scaling-wide ones.
    pub fn all(scaling: &Scaling) -> Vec<Tunable> {
        let per_metric = (0..scaling.metrics.len())
            .flat_map(|index| METRIC_KNOBS.iter().map(move |knob| Tunable::Metric(knob, index)));
        per_metric.chain(KNOBS.iter().map(Tunable::Scaling)).collect()
    }

    /// The field under `spec.scaling`, as `check` names it (`metrics[2].target`).
    pub fn field(&self) -> String {
        match self {
            Tunable::Scaling(knob) => knob.field.to_owned(),
            Tunable::Metric(knob, index) => format!("metrics[{index}].{}", knob.field),
        }
    }

    /// The values to try, the base's own value first and no value twice.
    pub fn domain(&self, policy: &Policy, scaling: &Scaling) -> Vec<Setting> {
        let values = match self {
            Tunable::Scaling(knob) => (knob.values)(policy, scaling),
            Tunable::Metric(knob, index) => (knob.values)(policy, scaling, *index),
        };
        let mut domain = vec![self.get(scaling)];
        for value in values {
            if !domain.contains(&value) {
                domain.push(value);
            }
        }
        domain
    }

    pub fn get(&self, scaling: &Scaling) -> Setting {
        match self {
            Tunable::Scaling(knob) => (knob.get)(scaling),
            // Validation keeps every metric the base has; a knob is only made for those.
            Tunable::Metric(knob, index) => {
                scaling.metrics.get(*index).map_or(Setting::Number(0.0), knob.get)
            }
        }
    }

    pub fn set(&self, scaling: &mut Scaling, value: &Setting) {
        match self {
            Tunable::Scaling(knob) => (knob.set)(scaling, value),
            Tunable::Metric(knob, index) => {
                if let Some(metric) = scaling.metrics.get_mut(*index) {
                    (knob.set)(metric, value);
                }
            }
        }
    }
}

const fn secs(n: u64) -> Duration {
    Duration::from_secs(n)
}

/// The metric the scaling-wide knobs tune the statistic and blocks of: the first, whose
/// target the HPA baseline shares. Validation guarantees a scaling section has one.
fn first(scaling: &Scaling) -> Option<&Metric> {
    scaling.metrics.first()
}

fn durations(values: &[Duration]) -> Vec<Setting> {
    values.iter().copied().map(Setting::Duration).collect()
}

/// Targets from 60 % to 120 % of the base's, to three significant digits (so the file says
/// `24500`, not `24499.999999999996`), below the metric's plausible maximum and its base
/// saturation ceiling (validation wants both above the target).
fn targets(_: &Policy, scaling: &Scaling, index: usize) -> Vec<Setting> {
    let Some(metric) = scaling.metrics.get(index) else { return Vec::new() };
    let plausible = match &metric.source {
        MetricSource::Redis { plausible_max: Some(max), .. } => *max,
        _ => f64::INFINITY,
    };
    let ceiling = metric.saturation.map_or(plausible, |s| s.above.min(plausible));
    [0.6, 0.7, 0.8, 0.9, 1.1, 1.2]
        .iter()
        .map(|factor| significant(metric.target * factor, 3))
        .filter(|target| target.is_finite() && *target > 0.0 && *target < ceiling)
        .map(Setting::Number)
        .collect()
}

/// `value` rounded to `digits` significant digits.
pub fn significant(value: f64, digits: i32) -> f64 {
    if value == 0.0 || !value.is_finite() {
        return value;
    }
    let scale = 10f64.powi(digits - 1 - value.abs().log10().floor() as i32);
    (value * scale).round() / scale
}

fn statistics(_: &Policy, _: &Scaling) -> Vec<Setting> {
    let mut values = vec![
        Statistic::Mean,
        Statistic::Max,
        Statistic::Last,
        Statistic::Percentile(50),
        Statistic::Percentile(90),
        Statistic::Percentile(95),
        Statistic::Percentile(99),
    ];
    values.extend([15, 30, 60].map(|s| Statistic::Ewma { half_life: secs(s) }));
    values.into_iter().map(Setting::Statistic).collect()
}

/// Windows from one sampling interval to 10 minutes whose history fits the policy's bound,
/// and long enough for the rounds the metric's saturation reads.
fn windows(policy: &Policy, scaling: &Scaling, index: usize) -> Vec<Setting> {
    let interval = policy.sampling.interval;
    let metric = scaling.metrics.get(index);
    let rounds = metric.and_then(|m| m.saturation).map_or(1, |s| u32::from(s.rounds));
    let candidates = [interval, secs(30), secs(60), secs(120), secs(180), secs(300), secs(600)];
    let valid = candidates.into_iter().filter(|window| {
        *window >= interval.saturating_mul(rounds)
            && bounds::METRIC_WINDOW.check(*window, "").is_ok()
            && bounds::history_problem(*window, interval).is_none()
    });
    valid.map(Setting::Duration).collect()
}

/// A tail's exceedance from a tenth to ten times the base's, within validation's range. None
/// on the first metric, whose statistic knob sets its exceedance, nor on a metric that is not
/// a tail.
fn exceedances(_: &Policy, scaling: &Scaling, index: usize) -> Vec<Setting> {
    let tail = scaling.metrics.get(index).filter(|_| index > 0).and_then(|m| match m.statistic {
        Statistic::Tail { exceedance } => Some(exceedance),
        _ => None,
    });
    let Some(exceedance) = tail else { return Vec::new() };
    [0.1, 0.3, 3.0, 10.0]
        .iter()
        .map(|factor| significant(exceedance * factor, 2))
        .filter(|e| bounds::TAIL_EXCEEDANCE.contains(e))
        .map(Setting::Number)
        .collect()
}

/// None under a `band`, which replaces the tolerance: the field would change nothing, and
/// writing it beside the band would make the policy invalid.
fn tolerances(_: &Policy, scaling: &Scaling) -> Vec<Setting> {
    if scaling.band.is_some() {
        return Vec::new();
    }
    [0.0, 0.05, 0.1, 0.15, 0.2].map(Setting::Number).to_vec()
}

/// Under a `band` (else none, as the tolerance is then the knob): bands sized for 80 % to
/// 95 % of the target, each triggered 3, 5 or 10 points above its sizing and scaling down 5 or
/// 10 points below it. One knob for all three fractions, since each bounds the others.
fn bands(_: &Policy, scaling: &Scaling) -> Vec<Setting> {
    if scaling.band.is_none() {
        return Vec::new();
    }
    let mut bands = Vec::new();
    for size_for in [0.8, 0.85, 0.9, 0.95] {
        for up in [0.03, 0.05, 0.1] {
            for down in [0.05, 0.1] {
                bands.push(Setting::Band(Band {
                    scale_up_above: significant(size_for + up, 3),
                    size_for,
                    scale_down_below: significant(size_for - down, 3),
                }));
            }
        }
    }
    bands
}

/// Where the first metric saturates, from 95 % to 110 % of the base's ceiling, and always above
/// every target the target knob offers (validation wants the ceiling above the target). None
/// without a saturation step.
fn saturation_ceilings(policy: &Policy, scaling: &Scaling) -> Vec<Setting> {
    let Some(saturation) = first(scaling).and_then(|m| m.saturation) else { return Vec::new() };
    let highest_target = targets(policy, scaling, 0)
        .into_iter()
        .chain([Setting::Number(first(scaling).map_or(0.0, |m| m.target))])
        .filter_map(|setting| match setting {
            Setting::Number(target) => Some(target),
            _ => None,
        })
        .fold(0.0, f64::max);
    [0.95, 1.05, 1.1]
        .iter()
        .map(|factor| significant(saturation.above * factor, 3))
        .filter(|above| above.is_finite() && *above > highest_target)
        .map(Setting::Number)
        .collect()
}

/// How far a saturated count is multiplied at once; none without a saturation step.
fn saturation_factors(_: &Policy, scaling: &Scaling) -> Vec<Setting> {
    if first(scaling).and_then(|m| m.saturation).is_none() {
        return Vec::new();
    }
    [1.5, 2.0, 3.0, 4.0].map(Setting::Number).to_vec()
}

/// The burst ratio the first metric's headroom is sized for, 10 % either side of the base's in
/// steps of 5 %, within validation's [1, 16]; none without `bursts`.
fn burst_expectations(_: &Policy, scaling: &Scaling) -> Vec<Setting> {
    let Some(bursts) = first(scaling).and_then(|m| m.bursts.as_ref()) else { return Vec::new() };
    [0.9, 0.95, 1.05, 1.1]
        .iter()
        .map(|factor| significant(bursts.expect * factor, 3))
        .filter(|expect| (1.0..=16.0).contains(expect))
        .map(Setting::Number)
        .collect()
}

/// `values` when the first metric has a seasonal forecast; none without one.
fn with_seasonal(scaling: &Scaling, values: Vec<Setting>) -> Vec<Setting> {
    if first(scaling).is_some_and(|m| m.seasonal.is_some()) { values } else { Vec::new() }
}

/// How far past one warm-up the seasonal floor looks: from the ramp's own minute to half an
/// hour early; none without `seasonal`.
fn seasonal_horizons(_: &Policy, scaling: &Scaling) -> Vec<Setting> {
    with_seasonal(scaling, durations(&[secs(0), secs(300), secs(900), secs(1800)]))
}

/// How wrong the seasonal forecast may lately have been and still act; none without `seasonal`.
fn seasonal_errors(_: &Policy, scaling: &Scaling) -> Vec<Setting> {
    with_seasonal(scaling, [0.1, 0.2, 0.3, 0.5].map(Setting::Number).to_vec())
}

/// The least rise that sets a seasonal floor; none without `seasonal`.
fn seasonal_rises(_: &Policy, scaling: &Scaling) -> Vec<Setting> {
    with_seasonal(scaling, [1.0, 1.5, 2.0, 3.0].map(Setting::Number).to_vec())
}

/// The scale-down window while the seasonal forecast agrees; none without `seasonal`.
fn seasonal_stabilizations(_: &Policy, scaling: &Scaling) -> Vec<Setting> {
    with_seasonal(scaling, durations(&[secs(0), secs(60), secs(120), secs(300)]))
}

/// Trend windows from 2 to 30 minutes that fit a line (two sampling intervals at least) and
/// the history bound; none without `forecast`.
fn forecast_windows(policy: &Policy, scaling: &Scaling) -> Vec<Setting> {
    if scaling.forecast.is_none() {
        return Vec::new();
    }
    let interval = policy.sampling.interval;
    let candidates = [secs(120), secs(300), secs(600), secs(900), secs(1800)];
    let valid = candidates.into_iter().filter(|window| {
        *window >= interval.saturating_mul(2)
            && bounds::FORECAST_WINDOW.check(*window, "").is_ok()
            && bounds::history_problem(*window, interval).is_none()
    });
    valid.map(Setting::Duration).collect()
}

fn up_stabilizations(_: &Policy, _: &Scaling) -> Vec<Setting> {
    durations(&[secs(0), secs(15), secs(30), secs(60), secs(120)])
}

fn down_stabilizations(_: &Policy, _: &Scaling) -> Vec<Setting> {
    durations(&[secs(0), secs(60), secs(120), secs(180), secs(300), secs(600)])
}

fn up_steps(_: &Policy, _: &Scaling) -> Vec<Setting> {
    let steps = [Step::Pods(1), Step::Pods(2), Step::Pods(4), Step::Pods(8)];
    let percents = [Step::Percent(50), Step::Percent(100), Step::Percent(200)];
    steps.into_iter().chain(percents).map(Setting::Step).collect()
}

fn down_steps(_: &Policy, _: &Scaling) -> Vec<Setting> {
    let steps = [Step::Pods(1), Step::Pods(2), Step::Pods(4)];
    let percents = [Step::Percent(10), Step::Percent(25), Step::Percent(50), Step::Percent(100)];
    steps.into_iter().chain(percents).map(Setting::Step).collect()
}

fn periods(_: &Policy, _: &Scaling) -> Vec<Setting> {
    durations(&[secs(15), secs(30), secs(60), secs(120)])
}

fn up_cooldowns(_: &Policy, _: &Scaling) -> Vec<Setting> {
    durations(&[secs(0), secs(30), secs(60), secs(120)])
}

fn down_cooldowns(_: &Policy, _: &Scaling) -> Vec<Setting> {
    durations(&[secs(0), secs(60), secs(120), secs(300), secs(600)])
}

// Each setter ignores a value of another kind: the domain only ever holds the kind its own
// getter returns (`tests::every_value_reads_back_as_set` checks every knob).

/// A knob over a `Duration` field of `Scaling`.
macro_rules! duration_knob {
    ($name:literal, $values:expr, $($field:ident).+) => {
        Knob {
            field: $name,
            values: $values,
            get: |scaling| Setting::Duration(scaling.$($field).+),
            set: |scaling, value| {
                if let Setting::Duration(duration) = value {
                    scaling.$($field).+ = *duration;
                }
            },
        }
    };
}

/// A knob over a `Step` field of `Scaling`.
macro_rules! step_knob {
    ($name:literal, $values:expr, $($field:ident).+) => {
        Knob {
            field: $name,
            values: $values,
            get: |scaling| Setting::Step(scaling.$($field).+),
            set: |scaling, value| {
                if let Setting::Step(step) = value {
                    scaling.$($field).+ = *step;
                }
            },
        }
    };
}

/// A knob over a field of an optional block: of the first metric (`metric saturation.above`)
/// or of `spec.scaling` (`scaling forecast.window`). Without the block it reads the field's
/// default, which is never set or written: its values function offers nothing then.
macro_rules! block_knob {
    ($name:literal, $values:expr, $kind:ident, metric $block:ident . $field:ident) => {
        Knob {
            field: $name,
            values: $values,
            get: |scaling| {
                let block = first(scaling).and_then(|m| m.$block.as_ref());
                Setting::$kind(block.map_or(Default::default(), |b| b.$field))
            },
            set: |scaling, value| {
                let block = scaling.metrics.first_mut().and_then(|m| m.$block.as_mut());
                if let (Setting::$kind(value), Some(block)) = (value, block) {
                    block.$field = *value;
                }
            },
        }
    };
    ($name:literal, $values:expr, $kind:ident, scaling $block:ident . $field:ident) => {
        Knob {
            field: $name,
            values: $values,
            get: |scaling| {
                Setting::$kind(scaling.$block.as_ref().map_or(Default::default(), |b| b.$field))
            },
            set: |scaling, value| {
                if let (Setting::$kind(value), Some(block)) = (value, scaling.$block.as_mut()) {
                    block.$field = *value;
                }
            },
        }
    };
}

/// Every field each metric has tuned, in the order reports list them.
pub const METRIC_KNOBS: &[MetricKnob] = &[
    MetricKnob {
        field: "target",
        values: targets,
        get: |metric| Setting::Number(metric.target),
        set: |metric, value| {
            if let Setting::Number(target) = value {
                metric.target = *target;
            }
        },
    },
    MetricKnob {
        field: "window",
        values: windows,
        get: |metric| Setting::Duration(metric.window),
        set: |metric, value| {
            if let Setting::Duration(window) = value {
                metric.window = *window;
            }
        },
    },
    MetricKnob {
        field: "exceedance",
        values: exceedances,
        // Not a tail: a placeholder, never set or written (the values offer nothing then).
        get: |metric| match metric.statistic {
            Statistic::Tail { exceedance } => Setting::Number(exceedance),
            _ => Setting::Number(0.0),
        },
        set: |metric, value| {
            if let (Setting::Number(value), Statistic::Tail { exceedance }) =
                (value, &mut metric.statistic)
            {
                *exceedance = *value;
            }
        },
    },
];

/// Every scaling-wide knob, in the order reports list them (after the metrics' own).
pub const KNOBS: &[Knob] = &[
    Knob {
        field: "metrics[0].statistic",
        values: statistics,
        get: |scaling| Setting::Statistic(first(scaling).map_or(Statistic::Mean, |m| m.statistic)),
        set: |scaling, value| {
            if let (Setting::Statistic(statistic), Some(metric)) =
                (value, scaling.metrics.first_mut())
            {
                metric.statistic = *statistic;
            }
        },
    },
    Knob {
        field: "tolerance",
        values: tolerances,
        get: |scaling| Setting::Number(scaling.tolerance),
        set: |scaling, value| {
            if let Setting::Number(tolerance) = value {
                scaling.tolerance = *tolerance;
            }
        },
    },
    Knob {
        field: "band",
        values: bands,
        // Without a band the knob offers nothing, so its base value is never set or written:
        // the tolerance stands in for it.
        get: |scaling| match scaling.band {
            Some(band) => Setting::Band(band),
            None => Setting::Number(scaling.tolerance),
        },
        set: |scaling, value| {
            if let (Setting::Band(band), Some(_)) = (value, scaling.band) {
                scaling.band = Some(*band);
            }
        },
    },
    block_knob!(
        "metrics[0].saturation.above",
        saturation_ceilings,
        Number,
        metric saturation.above
    ),
    block_knob!("metrics[0].saturation.factor", saturation_factors, Number, metric saturation.factor),
    block_knob!("metrics[0].bursts.expect", burst_expectations, Number, metric bursts.expect),
    block_knob!("metrics[0].seasonal.horizon", seasonal_horizons, Duration, metric seasonal.horizon),
    block_knob!("metrics[0].seasonal.maxError", seasonal_errors, Number, metric seasonal.max_error),
    block_knob!("metrics[0].seasonal.minRise", seasonal_rises, Number, metric seasonal.min_rise),
    block_knob!(
        "metrics[0].seasonal.scaleDownStabilization",
        seasonal_stabilizations,
        Duration,
        metric seasonal.scale_down_stabilization
    ),
    block_knob!("forecast.window", forecast_windows, Duration, scaling forecast.window),
    duration_knob!("scaleUp.stabilization", up_stabilizations, scale_up.stabilization),
    step_knob!("scaleUp.maxStep", up_steps, scale_up.max_step),
    duration_knob!("scaleUp.period", periods, scale_up.period),
    duration_knob!("scaleUp.cooldown", up_cooldowns, scale_up.cooldown),
    duration_knob!("scaleDown.stabilization", down_stabilizations, scale_down.stabilization),
    step_knob!("scaleDown.maxStep", down_steps, scale_down.max_step),
    duration_knob!("scaleDown.period", periods, scale_down.period),
    duration_knob!("scaleDown.cooldown", down_cooldowns, scale_down.cooldown),
];

/// The YAML edits that write `value` of the knob at `field`, as (path under `spec.scaling`,
/// new scalar or `None` to remove the key). A statistic also writes or removes `halfLife` and
/// `exceedance`, which validation accepts only with `ewma` and `tail`.
pub fn yaml_edits(field: &str, value: &Setting) -> Vec<(String, Option<String>)> {
    let mut edits = vec![(field.to_owned(), Some(value.yaml()))];
    if let Setting::Statistic(statistic) = value {
        let sibling = |key: &str| {
            field.rsplit_once('.').map_or(key.to_owned(), |(parent, _)| format!("{parent}.{key}"))
        };
        let (half_life, exceedance) = match statistic {
            Statistic::Ewma { half_life } => (Some(duration_text(*half_life)), None),
            Statistic::Tail { exceedance } => (None, Some(exceedance.to_string())),
            _ => (None, None),
        };
        edits.push((sibling("halfLife"), half_life));
        edits.push((sibling("exceedance"), exceedance));
    }
    edits
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sim::fixtures::{policy, redis_metric};

    fn base() -> Policy {
        policy().metric(redis_metric("instantaneous_ops_per_sec", 35_000.0)).max(12).build()
    }

    /// The base with a band (in place of the tolerance), a saturation step, measured bursts
    /// and a seasonal forecast on its metric, and a linear trend.
    fn banded() -> Policy {
        let mut base = base();
        let scaling = base.scaling.as_mut().expect("scaling");
        scaling.band = Some(Band { scale_up_above: 0.95, size_for: 0.9, scale_down_below: 0.85 });
        scaling.metrics[0].saturation =
            Some(crate::policy::Saturation { above: 47_500.0, factor: 2.0, rounds: 1 });
        scaling.metrics[0].bursts = Some(crate::policy::Bursts {
            quantile: 0.99,
            window: secs(86_400),
            expect: 1.2,
            max_factor: f64::INFINITY,
            history: None,
        });
        scaling.metrics[0].seasonal = Some(crate::policy::Seasonal {
            periods: vec![secs(86_400), secs(7 * 86_400)],
            horizon: secs(300),
            max_error: 0.25,
            min_rise: 1.0,
            scale_down_stabilization: secs(60),
            history: None,
        });
        scaling.forecast = Some(crate::policy::Forecast {
            method: crate::policy::ForecastMethod::Linear,
            window: secs(900),
        });
        base
    }

    /// The banded base with a second metric: a tail with a saturation step of its own.
    fn with_tail() -> Policy {
        let mut base = banded();
        let mut tail = redis_metric("instantaneous_ops_per_sec", 70_000.0);
        tail.statistic = Statistic::Tail { exceedance: 0.0003 };
        tail.window = secs(600);
        tail.saturation =
            Some(crate::policy::Saturation { above: 80_000.0, factor: 2.0, rounds: 2 });
        base.scaling.as_mut().expect("scaling").metrics.push(tail);
        base
    }

    fn domain_of(policy: &Policy, field: &str) -> Vec<Setting> {
        let scaling = policy.scaling.as_ref().expect("scaling");
        let knobs = Tunable::all(scaling);
        let knob = knobs.iter().find(|k| k.field() == field).expect("a knob of that field");
        knob.domain(policy, scaling)
    }

    #[test]
    fn every_value_reads_back_as_set() {
        let bases = [base(), banded(), with_tail()];
        let mut offered: Vec<(String, bool)> = Vec::new();
        for base in &bases {
            let scaling = base.scaling.clone().expect("scaling");
            for knob in Tunable::all(&scaling) {
                let field = knob.field();
                let domain = knob.domain(base, &scaling);
                assert_eq!(domain[0], knob.get(&scaling), "{field}: base value first");
                for value in &domain {
                    let mut tuned = scaling.clone();
                    knob.set(&mut tuned, value);
                    assert_eq!(knob.get(&tuned), *value, "{field}");
                    // The knob sets its own field and no other.
                    let mut back = tuned.clone();
                    knob.set(&mut back, &domain[0]);
                    assert_eq!(back, scaling, "{field}: {value:?} changed another field");
                }
                match offered.iter_mut().find(|(f, _)| *f == field) {
                    Some((_, any)) => *any |= domain.len() > 1,
                    None => offered.push((field, domain.len() > 1)),
                }
            }
        }
        // Every knob the richest base has, the second metric's own included.
        assert_eq!(offered.len(), KNOBS.len() + 2 * METRIC_KNOBS.len());
        for (field, any) in offered {
            // The first metric's exceedance is its statistic knob's to set.
            assert!(any || field == "metrics[0].exceedance", "{field} offers nothing to try");
        }
    }

    #[test]
    fn every_metric_is_tuned_apart_within_its_own_bounds() {
        let base = with_tail();
        // The second metric's targets stay under its saturation ceiling (80,000): 120 % of
        // 70,000 is left out.
        let targets = domain_of(&base, "metrics[1].target");
        assert_eq!(targets[0], Setting::Number(70_000.0));
        assert!(targets.contains(&Setting::Number(42_000.0)), "{targets:?}");
        assert!(!targets.contains(&Setting::Number(84_000.0)), "{targets:?}");
        // Its windows hold the two rounds its saturation reads (10 s sampling: not 10 s).
        let windows = domain_of(&base, "metrics[1].window");
        assert_eq!(windows[0], Setting::Duration(secs(600)));
        assert!(!windows.contains(&Setting::Duration(secs(10))), "{windows:?}");
        // A tail's exceedance from a tenth to ten times the base's.
        let exceedances = domain_of(&base, "metrics[1].exceedance");
        assert_eq!(
            exceedances,
            [0.0003, 0.00003, 0.00009, 0.0009, 0.003].map(Setting::Number).to_vec()
        );
        // Not on a metric that is no tail, nor on the first, whose statistic knob sets it.
        assert_eq!(domain_of(&banded(), "metrics[0].exceedance").len(), 1);
        let mut first_tail = with_tail();
        first_tail.scaling.as_mut().expect("scaling").metrics.swap(0, 1);
        assert_eq!(domain_of(&first_tail, "metrics[0].exceedance").len(), 1);
    }

    #[test]
    fn a_band_leaves_the_tolerance_alone() {
        let base = banded();
        let scaling = base.scaling.clone().expect("scaling");
        assert_eq!(domain_of(&base, "tolerance"), vec![Setting::Number(scaling.tolerance)]);
    }

    #[test]
    fn every_band_offered_is_ordered_and_every_ceiling_above_every_target() {
        let base = banded();
        let scaling = base.scaling.clone().expect("scaling");
        let offered = bands(&base, &scaling);
        assert_eq!(offered.len(), 24);
        for band in offered {
            let Setting::Band(band) = band else { panic!("{band:?} is not a band") };
            assert!(band.scale_down_below < band.size_for && band.size_for < band.scale_up_above);
            assert!(band.scale_down_below > 0.0 && band.scale_up_above <= 2.0, "{band:?}");
        }
        // Targets go up to 120 % of 35,000 = 42,000; 95 % of 47,500 is 45,125.
        let ceilings = saturation_ceilings(&base, &scaling);
        assert_eq!(ceilings.len(), 3, "{ceilings:?}");
        assert!(ceilings.iter().all(|c| matches!(c, Setting::Number(n) if *n > 42_000.0)));
        // A ceiling close to the target keeps every tuned target below the base's ceiling, and
        // every tuned ceiling above the base's target: any pair of them is valid.
        let mut close = banded();
        close.scaling.as_mut().expect("scaling").metrics[0].saturation =
            Some(crate::policy::Saturation { above: 36_000.0, factor: 2.0, rounds: 1 });
        let close_scaling = close.scaling.clone().expect("scaling");
        let targets = targets(&close, &close_scaling, 0);
        assert!(targets.iter().all(|t| matches!(t, Setting::Number(n) if *n < 36_000.0)));
        assert_eq!(targets.len(), 4, "{targets:?}");
        assert_eq!(
            saturation_ceilings(&close, &close_scaling),
            [37_800.0, 39_600.0].map(Setting::Number).to_vec()
        );
        // Without a band or a saturation step these knobs offer nothing beyond the base.
        let plain = super::tests::base();
        let plain_scaling = plain.scaling.clone().expect("scaling");
        assert!(bands(&plain, &plain_scaling).is_empty());
        assert!(saturation_factors(&plain, &plain_scaling).is_empty());
        assert!(burst_expectations(&plain, &plain_scaling).is_empty());
        // Expected bursts stay at or above 1, as validation wants: from 1.0, only upwards.
        let mut calm = banded();
        if let Some(bursts) = calm.scaling.as_mut().and_then(|s| s.metrics[0].bursts.as_mut()) {
            bursts.expect = 1.0;
        }
        let calm_scaling = calm.scaling.clone().expect("scaling");
        let offered = burst_expectations(&calm, &calm_scaling);
        assert_eq!(offered, vec![Setting::Number(1.05), Setting::Number(1.1)]);
    }

    #[test]
    fn windows_respect_the_sampling_interval_and_the_history_bound() {
        let mut base = base();
        base.sampling.interval = secs(45);
        let scaling = base.scaling.clone().expect("scaling");
        let windows = windows(&base, &scaling, 0);
        assert!(windows.contains(&Setting::Duration(secs(45))), "{windows:?}");
        assert!(!windows.contains(&Setting::Duration(secs(30))), "{windows:?}");
        // At 1 s sampling, 10 minutes is 600 rounds: still within the bound.
        base.sampling.interval = secs(1);
        assert!(windows_of(&base).contains(&Setting::Duration(secs(600))));
    }

    #[test]
    fn forecast_knobs_offer_nothing_without_a_forecast_and_fit_the_sampling() {
        let plain = super::tests::base();
        let plain_scaling = plain.scaling.clone().expect("scaling");
        for values in [
            seasonal_horizons,
            seasonal_errors,
            seasonal_rises,
            seasonal_stabilizations,
            forecast_windows,
        ] {
            assert!(values(&plain, &plain_scaling).is_empty());
        }
        // A line needs two rounds: at 2-minute sampling, a 2-minute trend window is left out.
        let mut slow = banded();
        slow.sampling.interval = secs(120);
        let slow_scaling = slow.scaling.clone().expect("scaling");
        let windows = forecast_windows(&slow, &slow_scaling);
        assert!(!windows.contains(&Setting::Duration(secs(120))), "{windows:?}");
        assert!(windows.contains(&Setting::Duration(secs(300))), "{windows:?}");
    }

    fn windows_of(policy: &Policy) -> Vec<Setting> {
        windows(policy, policy.scaling.as_ref().expect("scaling"), 0)
    }

    #[test]
    fn targets_stay_below_the_plausible_maximum() {
        // The default plausible maximum of instantaneous_ops_per_sec is 2,000,000.
        let base = policy().metric(redis_metric("instantaneous_ops_per_sec", 1_800_000.0)).build();
        let scaling = base.scaling.clone().expect("scaling");
        let offered = targets(&base, &scaling, 0);
        assert!(offered.contains(&Setting::Number(1_080_000.0)), "{offered:?}");
        assert!(offered.iter().all(|t| matches!(t, Setting::Number(n) if *n < 2_000_000.0)));
        assert_eq!(offered.len(), 5, "120 % is 2,160,000: left out");
    }

    #[test]
    fn values_are_written_in_the_policy_syntax() {
        assert_eq!(duration_text(Duration::ZERO), "0s");
        assert_eq!(duration_text(secs(90)), "1m30s");
        assert_eq!(duration_text(Duration::from_millis(1500)), "1s500ms");
        assert_eq!(duration_text(secs(86_400 + 3_600)), "1d1h");
        assert_eq!(Setting::Step(Step::Percent(50)).yaml(), "\"50%\"");
        assert_eq!(Setting::Number(24_500.0).yaml(), "24500");
        assert_eq!(significant(35_000.0 * 0.7, 3), 24_500.0);
        assert_eq!(significant(0.123_456, 3), 0.123);
        let ewma = Setting::Statistic(Statistic::Ewma { half_life: secs(30) });
        assert_eq!(
            yaml_edits("metrics[0].statistic", &ewma),
            [
                ("metrics[0].statistic".to_owned(), Some("ewma".to_owned())),
                ("metrics[0].halfLife".to_owned(), Some("30s".to_owned())),
                ("metrics[0].exceedance".to_owned(), None),
            ]
        );
        let p95 = Setting::Statistic(Statistic::Percentile(95));
        assert_eq!(
            yaml_edits("metrics[0].statistic", &p95)[1..],
            [("metrics[0].halfLife".into(), None), ("metrics[0].exceedance".into(), None)]
        );
        // A tail's exceedance is written beside it, and a half-life removed.
        let tail = Setting::Statistic(Statistic::Tail { exceedance: 0.0003 });
        assert_eq!(
            yaml_edits("metrics[0].statistic", &tail)[1..],
            [
                ("metrics[0].halfLife".into(), None),
                ("metrics[0].exceedance".into(), Some("0.0003".into()))
            ]
        );
    }
}
