//! Why a scaling decision came out as it did: the numbers behind it, kept as data and rendered
//! to one sentence that logs, Events, `plan` and the HTTP API all show.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use serde::Serialize;

pub use super::bursts::BurstReading;
pub use super::seasonal::SeasonalForecast;
pub use super::series::Outlier;
use crate::policy::{Band, Metric, Scaling, Step};

/// Everything that shaped one scaling decision, in the order it was applied.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ScalingReason {
    pub current: u16,
    pub ready: u16,
    /// One per metric, in policy order.
    pub readings: Vec<Reading>,
    /// What the metrics alone asked for (before windows, limits and bounds).
    pub proposed: u16,
    /// Each rule that moved the number after the metrics, in order.
    pub adjustments: Vec<Adjustment>,
    pub result: u16,
}

/// One metric's evaluation.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Reading {
    /// e.g. `p95 of mean instantaneous_ops_per_sec over 2m`.
    pub metric: Arc<str>,
    /// The statistic over the window, or why it is missing.
    #[serde(serialize_with = "serialize_result")]
    pub value: Result<f64, String>,
    /// The trend's value one warm-up ahead, when a forecast raised the value.
    pub forecast: Option<f64>,
    /// Load per replica the value implies (equal to `value` for mean/max aggregates).
    pub per_replica: Option<f64>,
    pub target: f64,
    pub tolerance: f64,
    /// The band that sized `desired` instead of `tolerance`, when the policy has one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub band: Option<Band>,
    /// Replicas this metric asks for; `None` when missing.
    pub desired: Option<u16>,
    /// The newest rounds read at or above the metric's `saturation.above` per replica: the
    /// served load is capped, and `desired` is at least the ready replicas times the factor.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub saturated: bool,
    /// What the metric's seasonal profile says of the time ahead, once it has learnt enough.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub seasonal: Option<SeasonalReading>,
    /// The measured burstiness that scaled the load, for a metric with `bursts`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub bursts: Option<BurstReading>,
    /// Instances whose readings in the window were above the plausible maximum and left out
    /// (each with the highest it reported).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub outliers: Vec<Outlier>,
}

impl Reading {
    /// Metric `metric`, named `label`, before it is read: no value, asking for nothing.
    pub(super) fn unread(label: &Arc<str>, metric: &Metric, scaling: &Scaling) -> Self {
        Reading {
            metric: Arc::clone(label),
            value: Err(String::new()),
            forecast: None,
            per_replica: None,
            target: metric.target,
            tolerance: scaling.tolerance,
            band: scaling.band,
            desired: None,
            saturated: false,
            seasonal: None,
            bursts: None,
            outliers: Vec::new(),
        }
    }

    /// Makes this reading what [`Reading::unread`] returns, field by field: a decision made at
    /// every tick of a replay reuses the one before's readings, and a reading built afresh
    /// would be moved twice (a few hundred bytes each) and its label counted up and down.
    pub(super) fn restart(&mut self, label: &Arc<str>, metric: &Metric, scaling: &Scaling) {
        if !Arc::ptr_eq(&self.metric, label) {
            self.metric = Arc::clone(label);
        }
        match &mut self.value {
            Err(why) => why.clear(),
            Ok(_) => self.value = Err(String::new()),
        }
        self.forecast = None;
        self.per_replica = None;
        self.target = metric.target;
        self.tolerance = scaling.tolerance;
        self.band = scaling.band;
        self.desired = None;
        self.saturated = false;
        self.seasonal = None;
        self.bursts = None;
        self.outliers.clear();
    }
}

/// A seasonal forecast and the replicas its load needs at the metric's target.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct SeasonalReading {
    #[serde(flatten)]
    pub forecast: SeasonalForecast,
    pub replicas: u16,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "rule", rename_all = "camelCase")]
pub enum Adjustment {
    /// A metric was missing, and missing data never scales down.
    MissingNoScaleDown {
        to: u16,
    },
    /// Some instances are not ready (syncing or unreachable): their load is unknown.
    UnreadyNoScaleDown {
        unready: u16,
        to: u16,
    },
    /// Some instances' readings were left out as implausible: their load is unknown.
    ImplausibleNoScaleDown {
        instances: u16,
        to: u16,
    },
    /// The stabilization window held the count at the extreme recommendation it saw.
    Stabilized {
        direction: Direction,
        window: Duration,
        to: u16,
    },
    /// The trusted seasonal forecast agrees the load stays low: the scale-down window was
    /// `window` rather than `instead_of`.
    #[serde(rename_all = "camelCase")]
    ForecastAgrees {
        window: Duration,
        instead_of: Duration,
        floor: u16,
    },
    /// `maxStep` per `period` capped the change.
    MaxStep {
        direction: Direction,
        step: String,
        period: Duration,
        to: u16,
    },
    /// Too soon after the last scale event.
    Cooldown {
        direction: Direction,
        cooldown: Duration,
        remaining: Duration,
        to: u16,
    },
    MinReplicas {
        min: u16,
        to: u16,
    },
    MaxReplicas {
        max: u16,
        to: u16,
    },
    CronFloor {
        cron: String,
        min: u16,
        to: u16,
    },
    /// A trusted seasonal forecast: the load one period ago, one warm-up ahead, needs `min`.
    SeasonalFloor {
        metric: Arc<str>,
        forecast: SeasonalForecast,
        min: u16,
        to: u16,
    },
    /// An alert mapped to `scaleUp` asked for at least `min`.
    Alert {
        alert: String,
        min: u16,
        to: u16,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub enum Direction {
    Up,
    Down,
}

impl fmt::Display for Direction {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Direction::Up => "scale-up",
            Direction::Down => "scale-down",
        })
    }
}

fn serialize_result<S: serde::Serializer>(
    value: &Result<f64, String>,
    s: S,
) -> Result<S::Ok, S::Error> {
    #[derive(Serialize)]
    #[serde(rename_all = "camelCase")]
    enum Value<'a> {
        Ok(f64),
        Missing(&'a str),
    }
    match value {
        Ok(v) => Value::Ok(*v).serialize(s),
        Err(e) => Value::Missing(e).serialize(s),
    }
}

impl fmt::Display for Step {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Step::Pods(n) => write!(f, "{n}"),
            Step::Percent(p) => write!(f, "{p}%"),
        }
    }
}

/// `41200.4` -> `41,200`; small values keep one decimal so `0.4` does not read as `0`.
pub fn number(v: f64) -> String {
    if !v.is_finite() {
        return v.to_string();
    }
    if v.abs() < 100.0 && v.fract() != 0.0 {
        return format!("{v:.1}");
    }
    let digits = format!("{:.0}", v.abs());
    let mut out = String::with_capacity(digits.len() + digits.len() / 3 + 1);
    if v < -0.5 {
        out.push('-');
    }
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// Whether a usage ratio is close enough to 1 to change nothing. The epsilon keeps a ratio
/// of exactly `1 + tolerance` (1,100 against 1,000 x 1.1) inside the band despite rounding.
pub fn within_tolerance(ratio: f64, tolerance: f64) -> bool {
    (ratio - 1.0).abs() <= tolerance + 1e-9
}

/// Whether a usage ratio is past a band's scale-up edge. The epsilon keeps a ratio of exactly
/// the edge inside the band despite rounding, as [`within_tolerance`] does.
pub fn past_band_edge(ratio: f64, band: Band) -> bool {
    ratio > band.scale_up_above + 1e-9
}

/// ` x 0.93 for bursts (p99 of rounds over their level 1.12, the headroom sized for 1.2)`
/// (with `; at most maxFactor 1` where the cap held it), or why the factor is still 1.
fn render_bursts(f: &mut fmt::Formatter<'_>, bursts: &BurstReading) -> fmt::Result {
    // 0.99 -> p99, 0.995 -> p99.5: the percentile without float noise.
    let percentile = format!("p{}", (bursts.quantile * 1000.0).round() / 10.0);
    match bursts.measured {
        Some(measured) => {
            write!(
                f,
                " x {:.2} for bursts ({percentile} of rounds over their level {measured:.2}, the \
                 headroom sized for {}",
                bursts.factor, bursts.expect
            )?;
            // Below the measured ratio only when `maxFactor` held it.
            if measured / bursts.expect > bursts.factor + 1e-9 {
                write!(f, "; at most maxFactor {}", bursts.factor)?;
            }
            f.write_str(")")
        }
        None => write!(
            f,
            " (bursts: {} rounds near the target so far, too few for the {percentile})",
            bursts.rounds
        ),
    }
}

fn dur(d: Duration) -> humantime::FormattedDuration {
    humantime::format_duration(d)
}

/// How many outliers a reason names; the rest are counted (the JSON keeps them all).
const OUTLIERS_SHOWN: usize = 3;

impl fmt::Display for Reading {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.render(f, None)
    }
}

impl Reading {
    /// The reading as a sentence; with `ready` (the instances its load was shared over), the
    /// arithmetic behind the count it asks for, so `-> 5` never has to be taken on trust.
    fn render(&self, f: &mut fmt::Formatter<'_>, ready: Option<u16>) -> fmt::Result {
        self.render_value(f, ready)?;
        if self.outliers.is_empty() {
            return Ok(());
        }
        f.write_str(" (left out as implausible: ")?;
        for (i, outlier) in self.outliers.iter().take(OUTLIERS_SHOWN).enumerate() {
            if i > 0 {
                f.write_str(", ")?;
            }
            write!(
                f,
                "{} reported {} > plausibleMax {}",
                outlier.instance,
                number(outlier.value),
                number(outlier.plausible_max)
            )?;
        }
        if self.outliers.len() > OUTLIERS_SHOWN {
            write!(f, " and {} more", self.outliers.len() - OUTLIERS_SHOWN)?;
        }
        f.write_str(")")
    }

    /// `band`'s rule in words: which edge the load is past and what it was sized for, e.g.
    /// `33,600 per replica > 95 % of target 35,000 -> 5 (sized for 90 %: 33,600 x 4 ready /
    /// 31,500 = 4.27, rounded up)`.
    fn render_band(
        &self,
        f: &mut fmt::Formatter<'_>,
        band: Band,
        per_replica: f64,
        ready: Option<u16>,
    ) -> fmt::Result {
        let ratio = per_replica / self.target;
        let percent = |fraction: f64| number(fraction * 100.0);
        let up = past_band_edge(ratio, band);
        let (cmp, sized_for) =
            if up { (">", band.size_for) } else { ("<=", band.scale_down_below) };
        write!(f, " {cmp} {} % of target {}", percent(band.scale_up_above), number(self.target))?;
        let Some(desired) = self.desired else { return Ok(()) };
        if self.saturated {
            return write!(f, " but saturated (served load at its ceiling) -> {desired}");
        }
        write!(f, " -> {desired}")?;
        let Some(ready) = ready else { return Ok(()) };
        let carried = self.target * sized_for;
        let exact = per_replica * f64::from(ready) / carried;
        let how = if up { "sized for" } else { "fewer only at or below" };
        write!(
            f,
            " ({how} {} %: {} x {ready} ready / {} = {}",
            percent(sized_for),
            number(per_replica),
            number(carried),
            number(exact)
        )?;
        // `replicas_for` keeps a scale-up from asking for fewer and a scale-down for more.
        f.write_str(if f64::from(desired) != exact.ceil() {
            if up { ", never fewer than now)" } else { ", never more than now)" }
        } else if exact.fract() == 0.0 {
            ")"
        } else {
            ", rounded up)"
        })
    }

    fn render_value(&self, f: &mut fmt::Formatter<'_>, ready: Option<u16>) -> fmt::Result {
        let value = match &self.value {
            Err(why) => return write!(f, "{} missing ({why})", self.metric),
            Ok(v) => *v,
        };
        write!(f, "{} {}", self.metric, number(value))?;
        if let Some(forecast) = self.forecast {
            write!(f, " (trend {} after warm-up)", number(forecast))?;
        }
        if let Some(bursts) = &self.bursts {
            render_bursts(f, bursts)?;
        }
        let Some(per_replica) = self.per_replica else {
            return write!(f, " with no ready replica to divide it");
        };
        if self.per_replica != Some(value) || self.forecast.is_some() || self.bursts.is_some() {
            write!(f, " = {} per replica", number(per_replica))?;
        }
        let ratio = per_replica / self.target;
        if let Some(band) = self.band {
            return self.render_band(f, band, per_replica, ready);
        }
        let cmp = if within_tolerance(ratio, self.tolerance) {
            "within"
        } else if ratio > 1.0 {
            ">"
        } else {
            "<"
        };
        if cmp == "within" {
            write!(f, " within {} of target {}", self.tolerance, number(self.target))?;
            match self.desired {
                Some(desired) if self.saturated => {
                    write!(f, " but saturated (served load at its ceiling) -> {desired}")
                }
                _ => Ok(()),
            }
        } else {
            write!(
                f,
                " {cmp} target {} x {}",
                number(self.target),
                1.0 + if cmp == ">" { self.tolerance } else { -self.tolerance }
            )?;
            let Some(desired) = self.desired else { return Ok(()) };
            if self.saturated {
                // The arithmetic below is not what asked for `desired`: the step is.
                return write!(f, " and saturated (served load at its ceiling) -> {desired}");
            }
            write!(f, " -> {desired}")?;
            match ready {
                Some(ready) => {
                    // The rule in `scaling::read_metric`: the ready instances' share of the
                    // load over the target, rounded up.
                    let exact = per_replica / self.target * f64::from(ready);
                    let plural = if ready == 1 { "" } else { "s" };
                    write!(
                        f,
                        " ({} / {} x {ready} ready instance{plural} = {}",
                        number(per_replica),
                        number(self.target),
                        number(exact)
                    )?;
                    f.write_str(if exact.fract() == 0.0 { ")" } else { ", rounded up)" })
                }
                None => Ok(()),
            }
        }
    }
}

impl fmt::Display for Adjustment {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Adjustment::MissingNoScaleDown { to } => {
                write!(f, "kept at {to}: missing data never scales down")
            }
            Adjustment::UnreadyNoScaleDown { unready, to } => {
                write!(f, "kept at {to}: {unready} instance(s) not ready, their load unknown")
            }
            Adjustment::ImplausibleNoScaleDown { instances, to } => write!(
                f,
                "kept at {to}: {instances} instance(s) reported implausible readings, their \
                 load unknown"
            ),
            Adjustment::Stabilized { direction, window, to } => {
                write!(f, "held at {to} by the {direction} stabilization window {}", dur(*window))
            }
            Adjustment::ForecastAgrees { window, instead_of, floor } => write!(
                f,
                "scale-down window {} instead of {}: the seasonal forecast agrees (it needs {floor})",
                dur(*window),
                dur(*instead_of)
            ),
            Adjustment::MaxStep { direction, step, period, to } => {
                write!(f, "capped at {to} by {direction} maxStep {step} per {}", dur(*period))
            }
            Adjustment::Cooldown { direction, cooldown, remaining, to } => write!(
                f,
                "kept at {to} by {direction} cooldown {} ({} left)",
                dur(*cooldown),
                dur(*remaining)
            ),
            Adjustment::MinReplicas { min, to } => write!(f, "raised to {to} by minReplicas {min}"),
            Adjustment::MaxReplicas { max, to } => {
                write!(f, "lowered to {to} by maxReplicas {max}")
            }
            Adjustment::CronFloor { cron, min, to } => {
                write!(f, "raised to {to} by schedule `{cron}` (at least {min})")
            }
            Adjustment::SeasonalFloor { metric, forecast, min, to } => write!(
                f,
                "raised to {to} by the seasonal forecast of {metric}: {} ago the load went from \
                 {} ({}) to {} ({}), so {} now x {:.2} = {} (lately within {:.0} %), {min} \
                 replicas",
                dur(forecast.period),
                number(forecast.seen_from_load),
                forecast.seen_from.format("%a %H:%M UTC"),
                number(forecast.seen_load),
                forecast.seen_at.format("%a %H:%M UTC"),
                number(forecast.now_load),
                forecast.load / forecast.now_load,
                number(forecast.load),
                forecast.error * 100.0
            ),
            Adjustment::Alert { alert, min, to } => {
                write!(f, "raised to {to} by alert {alert} (at least {min})")
            }
        }
    }
}

impl fmt::Display for ScalingReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, reading) in self.readings.iter().enumerate() {
            if i > 0 {
                f.write_str("; ")?;
            }
            reading.render(f, Some(self.ready))?;
        }
        if self.readings.is_empty() {
            f.write_str("no metrics")?;
        }
        if self.ready != self.current {
            write!(f, "; {} of {} ready", self.ready, self.current)?;
        }
        write!(f, "; {} -> {}", self.current, self.proposed)?;
        for adjustment in &self.adjustments {
            write!(f, ", {adjustment}")?;
        }
        if self.result == self.current {
            write!(f, "; hold at {}", self.result)
        } else {
            write!(f, "; scale {} -> {}", self.current, self.result)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::number;

    #[test]
    fn numbers_read_like_a_person_wrote_them() {
        assert_eq!(number(41_200.4), "41,200");
        assert_eq!(number(1_234_567.0), "1,234,567");
        assert_eq!(number(999.0), "999");
        assert_eq!(number(0.37), "0.4");
        assert_eq!(number(12.0), "12");
        assert_eq!(number(-2500.0), "-2,500");
    }
}
