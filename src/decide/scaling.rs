//! Replica-count decisions. The steps follow the Kubernetes HPA where it has an answer
//! (usage ratio with a tolerance band, recommendations stabilized over a window, change per
//! period limited by the count at the period's start) and add what Redis operators ask for:
//! windowed statistics, cooldowns, cron floors, a trend forecast, and the rule that missing
//! or unready data never scales down. An instance reading above its metric's plausible
//! maximum (a broken or lying instance) is left out of the metric, named in the reason, and
//! counts as doubt: no scale-down while it is in the window.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Duration;

use super::bursts::{self, BurstMemory};
use super::reason::{
    Adjustment, Direction, Reading, ScalingReason, past_band_edge, within_tolerance,
};
use super::recommendations::Recommendations;
use super::seasonal::{SeasonalForecast, SeasonalMemory};
use super::series::{self, RoundValues, Series, StatisticMemory, window_start};
use super::{Fleet, ScalingDecision, Settings};
use crate::observe::{History, Timestamp};
use crate::policy::{
    Aggregate, Behavior, LastFiring, Metric, MetricSource, Scaling, Seasonal, Statistic, Step,
};

/// Scaling's memory of its own past: raw recommendations (for stabilization) and applied
/// scale events (for step limits and cooldowns), pruned to the longest window that reads them.
#[derive(Debug, Clone, Default)]
pub struct ScalingMemory {
    recommendations: Recommendations,
    events: VecDeque<ScaleEvent>,
    /// An alert's request for at least this many replicas, until met or expired.
    requested: Option<ScaleRequest>,
    /// Each metric's seasonal profile, by metric index (`None` for a metric without one).
    seasonal: Vec<Option<SeasonalMemory>>,
    /// Each source's value in the rounds of its span, by [`Sources`] index.
    rounds: Vec<RoundValues>,
    /// What each metric keeps for itself, by metric index.
    metrics: Vec<Option<MetricState>>,
    /// Each metric's measured burstiness, by metric index (`None` for a metric without).
    bursts: Vec<Option<BurstMemory>>,
    /// The settings the per-metric memories were last checked against, and the sources their
    /// metrics read. While the policy stays the same (every evaluation but the first after a
    /// start or a reload), one comparison stands for every memory's own check: `simulate`
    /// makes millions of evaluations, and each check compares strings (a field, a query).
    checked: Option<(Scaling, Sources)>,
    /// Each cron floor's last firing, by index in the schedule.
    firings: Vec<LastFiring>,
}

/// What a metric learns over time, and so what its history read back from Prometheus seeds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Learnt {
    /// `seasonal`: the per-minute total, over the longest period.
    Seasonal,
    /// `bursts`: the value per replica each round, over the bursts' window.
    Bursts,
}

impl Learnt {
    /// How logs and warnings name it.
    pub fn name(self) -> &'static str {
        match self {
            Learnt::Seasonal => "seasonal forecast",
            Learnt::Bursts => "measured bursts",
        }
    }
}

/// What a decision given back leaves for the next one to fill in place
/// ([`super::Decider::recycle`]): its readings and its adjustments. A replay decides at every
/// tick, and building them afresh cost an allocation each time.
#[derive(Debug, Default)]
pub(super) struct Room {
    pub readings: Vec<Reading>,
    pub adjustments: Vec<Adjustment>,
}

impl From<ScalingReason> for Room {
    fn from(reason: ScalingReason) -> Self {
        Room { readings: reason.readings, adjustments: reason.adjustments }
    }
}

/// How long an alert's scale-up request stands if it cannot be met (maxReplicas, failures):
/// long enough to outlast cooldowns and rate limits, short enough not to pin the fleet.
const REQUEST_LIFETIME: Duration = Duration::from_secs(600);

#[derive(Debug, Clone, PartialEq, Eq)]
struct ScaleRequest {
    at: Timestamp,
    alert: String,
    at_least: u16,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct ScaleEvent {
    at: Timestamp,
    from: u16,
    to: u16,
}

impl ScalingMemory {
    /// Records a scale the cluster actually performed.
    pub fn record_scale(&mut self, at: Timestamp, from: u16, to: u16) {
        self.events.push_back(ScaleEvent { at, from, to });
        if self.requested.as_ref().is_some_and(|r| to >= r.at_least) {
            self.requested = None;
        }
    }

    /// An alert asks for at least `at_least` replicas: a floor for the next evaluations until a
    /// recorded scale meets it or it expires. Another request replaces it.
    pub fn request_scale_up(&mut self, at: Timestamp, alert: &str, at_least: u16) {
        self.requested = Some(ScaleRequest { at, alert: alert.to_owned(), at_least });
    }

    /// Starts what metric `index` learns over time afresh from its past (oldest first), as
    /// Prometheus kept it, so a restarted daemon decides as the old one would have from its
    /// first decisions: the seasonal profile from the per-minute total, the burst ratios from
    /// the per-replica value each round. Afresh, because the history usually arrives after a
    /// round or two were learnt: a profile only scores the minutes it sees in order, and
    /// ratios must not be counted twice; those rounds are learnt again from the metric's
    /// window at the next decision.
    /// An empty history changes nothing: a query that matched nothing says nothing about the
    /// load, and must not erase what the rounds taught.
    pub fn seed(
        &mut self,
        scaling: &Scaling,
        learns: Learnt,
        index: usize,
        points: &[(Timestamp, f64)],
    ) {
        if points.is_empty() {
            return;
        }
        match learns {
            Learnt::Seasonal => {
                if let Some(slot) = self.seasonal.get_mut(index) {
                    *slot = None;
                }
                if let Some(profile) = seasonal_for(&mut self.seasonal, scaling, index, Check::Fits)
                {
                    profile.feed(points);
                }
            }
            Learnt::Bursts => {
                if let Some(slot) = self.bursts.get_mut(index) {
                    *slot = None;
                }
                let metric = scaling.metrics.get(index);
                if let (Some(memory), Some(metric)) =
                    (bursts_for(&mut self.bursts, scaling, index, Check::Fits), metric)
                {
                    memory.replay(metric, points);
                }
            }
        }
    }

    /// Recommendations and events held: bounded by the policy's windows, not by uptime.
    #[cfg(test)]
    pub(super) fn held(&self) -> usize {
        self.recommendations.len() + self.events.len()
    }

    /// Rounds whose values are remembered, over all sources: bounded by the metrics' spans.
    #[cfg(test)]
    pub(super) fn rounds_held(&self) -> usize {
        self.rounds.iter().map(RoundValues::len).sum()
    }

    /// Burst ratios held, over all metrics: bounded by their windows.
    #[cfg(test)]
    pub(super) fn burst_rounds_held(&self) -> usize {
        self.bursts.iter().flatten().map(BurstMemory::held).sum()
    }

    /// Forgets every remembered round value, so the next evaluation reads all afresh.
    #[cfg(test)]
    pub(super) fn forget_rounds(&mut self) {
        self.rounds.clear();
    }

    fn prune(&mut self, scaling: &Scaling, now: Timestamp) {
        let keep_recommendations = scaling
            .metrics
            .iter()
            .filter_map(|m| m.seasonal.as_ref().map(|s| s.scale_down_stabilization))
            .fold(
                scaling.scale_up.stabilization.max(scaling.scale_down.stabilization),
                Duration::max,
            );
        let keep_events = [&scaling.scale_up, &scaling.scale_down]
            .iter()
            .map(|b| b.period.max(b.cooldown))
            .max()
            .unwrap_or_default();
        self.recommendations.forget_until(window_start(now, keep_recommendations));
        let event_cutoff = window_start(now, keep_events);
        // The newest event stays: cooldowns measure from it.
        while self.events.len() > 1 && self.events.front().is_some_and(|e| e.at <= event_cutoff) {
            self.events.pop_front();
        }
    }
}

/// What one metric keeps between evaluations for itself alone (its source's rounds are
/// shared), started afresh when the metric changes (a reloaded policy).
#[derive(Debug, Clone)]
struct MetricState {
    metric: Metric,
    /// Its name in reasons, made once and shared by every reading rather than formatted and
    /// copied at every evaluation.
    label: Arc<str>,
    /// What its statistic keeps between evaluations.
    statistic: StatisticMemory,
}

/// What [`ScalingMemory`] keeps for one metric, lent to one evaluation of it.
struct MetricMemory<'m> {
    state: &'m mut MetricState,
    seasonal: Option<&'m mut SeasonalMemory>,
    bursts: Option<&'m mut BurstMemory>,
}

/// The distinct sources the metrics read ([`RoundValues`]): each with the first metric that
/// reads it and the longest span any of them reads, and each metric's source by index.
#[derive(Debug, Clone)]
struct Sources {
    read: Vec<(usize, Duration)>,
    of_metric: Vec<usize>,
}

impl Sources {
    fn of(scaling: &Scaling) -> Self {
        let mut sources = Sources { read: Vec::new(), of_metric: Vec::new() };
        for (index, metric) in scaling.metrics.iter().enumerate() {
            let span =
                scaling.forecast.as_ref().map_or(metric.window, |f| f.window.max(metric.window));
            let same = sources.read.iter().position(|&(first, _)| {
                let other = &scaling.metrics[first];
                other.source == metric.source && other.aggregate == metric.aggregate
            });
            let source = match same {
                Some(source) => {
                    sources.read[source].1 = sources.read[source].1.max(span);
                    source
                }
                None => {
                    sources.read.push((index, span));
                    sources.read.len() - 1
                }
            };
            sources.of_metric.push(source);
        }
        sources
    }
}

/// Metric `index`'s own state in `states`.
#[inline]
fn state_for<'m>(
    states: &'m mut Vec<Option<MetricState>>,
    scaling: &Scaling,
    index: usize,
    check: Check,
) -> &'m mut MetricState {
    let metric = &scaling.metrics[index];
    kept_for(
        states,
        scaling,
        index,
        check,
        |state| state.metric == *metric,
        || MetricState {
            metric: metric.clone(),
            label: metric_label(metric).into(),
            statistic: StatisticMemory::new(metric.statistic),
        },
    )
}

/// Metric `index`'s seasonal profile in `profiles`, started afresh when the metric's seasonal
/// settings changed (a reloaded policy); `None` for a metric without one.
#[inline]
fn seasonal_for<'m>(
    profiles: &'m mut Vec<Option<SeasonalMemory>>,
    scaling: &Scaling,
    index: usize,
    check: Check,
) -> Option<&'m mut SeasonalMemory> {
    let seasonal = scaling.metrics.get(index)?.seasonal.as_ref()?;
    let (ahead, lead) = (ahead(scaling, seasonal), scaling.warmup);
    Some(kept_for(
        profiles,
        scaling,
        index,
        check,
        |m| m.fits(seasonal, ahead, lead),
        || SeasonalMemory::new(seasonal, ahead, lead),
    ))
}

/// Metric `index`'s burst memory in `memories`, started afresh when its settings changed;
/// `None` for a metric without `bursts`.
#[inline]
fn bursts_for<'m>(
    memories: &'m mut Vec<Option<BurstMemory>>,
    scaling: &Scaling,
    index: usize,
    check: Check,
) -> Option<&'m mut BurstMemory> {
    let config = scaling.metrics.get(index)?.bursts.as_ref()?;
    Some(kept_for(memories, scaling, index, check, |m| m.fits(config), || BurstMemory::new(config)))
}

/// Whether a per-metric memory is checked against the settings before use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Check {
    /// The settings may have changed since it was learnt.
    Fits,
    /// The settings are those it was last checked against ([`ScalingMemory::checked`]).
    Unchanged,
}

/// Metric `index`'s slot in a per-metric memory, started by `start` when empty or when `fits`
/// says what it holds was learnt under other settings.
fn kept_for<'m, M: Clone>(
    memories: &'m mut Vec<Option<M>>,
    scaling: &Scaling,
    index: usize,
    check: Check,
    fits: impl Fn(&M) -> bool,
    start: impl FnOnce() -> M,
) -> &'m mut M {
    if memories.len() < scaling.metrics.len() {
        memories.resize(scaling.metrics.len(), None);
    }
    let slot = &mut memories[index];
    if check == Check::Fits && !slot.as_ref().is_some_and(fits) {
        *slot = None;
    }
    slot.get_or_insert_with(start)
}

/// How far ahead a seasonal floor looks: a replica asked for now serves after the warm-up.
fn ahead(scaling: &Scaling, seasonal: &Seasonal) -> Duration {
    scaling.warmup.saturating_add(seasonal.horizon)
}

pub(super) fn decide(
    scaling: &Scaling,
    history: &History,
    fleet: Fleet,
    memory: &mut ScalingMemory,
    now: Timestamp,
    settings: Settings,
    room: Room,
) -> ScalingDecision {
    let Room { mut readings, mut adjustments } = room;
    adjustments.clear();
    let current = fleet.replicas;
    let latest = history.latest();
    let ready = latest.map_or(0, |o| o.ready_count()) as u16;
    let unchanged =
        |(checked, _): &(Scaling, Sources)| settings == Settings::Unchanged || checked == scaling;
    let check = if memory.checked.as_ref().is_some_and(unchanged) {
        Check::Unchanged
    } else {
        memory.checked = None;
        // Kept for the expressions they were found for.
        memory.firings.clear();
        Check::Fits
    };
    let (_, sources) =
        memory.checked.get_or_insert_with(|| (scaling.clone(), Sources::of(scaling)));
    memory.rounds.resize_with(sources.read.len(), RoundValues::default);
    for (memo, &(first, span)) in memory.rounds.iter_mut().zip(&sources.read) {
        let metric = &scaling.metrics[first];
        // Unchanged settings read the same sources in the same order.
        if check == Check::Fits {
            memo.keep_for(metric);
        }
        memo.read(metric, history, now, span);
    }
    // One reading per metric, each filled in place: a reading given back from an earlier
    // decision is overwritten rather than dropped and built again.
    readings.truncate(scaling.metrics.len());
    for i in 0..scaling.metrics.len() {
        let metric = &scaling.metrics[i];
        let metric_memory = MetricMemory {
            state: state_for(&mut memory.metrics, scaling, i, check),
            seasonal: seasonal_for(&mut memory.seasonal, scaling, i, check),
            bursts: bursts_for(&mut memory.bursts, scaling, i, check),
        };
        let label = &metric_memory.state.label;
        let reading = match readings.get_mut(i) {
            Some(reading) => {
                reading.restart(label, metric, scaling);
                reading
            }
            None => {
                readings.push(Reading::unread(label, metric, scaling));
                &mut readings[i]
            }
        };
        let series = memory.rounds[sources.of_metric[i]].series();
        read_metric(metric, scaling, &series, current, ready, now, metric_memory, reading);
    }

    let asked = readings.iter().filter_map(|r| r.desired).max();
    let proposed = asked.unwrap_or(current);
    let mut recommendation = proposed;
    if recommendation < current {
        if readings.iter().any(|r| r.desired.is_none()) {
            recommendation = current;
            adjustments.push(Adjustment::MissingNoScaleDown { to: current });
        } else if ready < current {
            recommendation = current;
            adjustments
                .push(Adjustment::UnreadyNoScaleDown { unready: current - ready, to: current });
        } else if let Some(instances) = implausible(&readings) {
            recommendation = current;
            adjustments.push(Adjustment::ImplausibleNoScaleDown { instances, to: current });
        }
    }

    // The forecast speaks on what the metrics asked for, before its own floor joins in.
    let agreed = forecast_agrees(scaling, &readings, recommendation);
    recommendation = seasonal_floor(scaling, &readings, recommendation, &mut adjustments);
    memory.prune(scaling, now);
    memory.recommendations.push(now, recommendation);
    let mut result =
        stabilize(scaling, memory, current, recommendation, agreed, now, &mut adjustments);
    result = limit_rate(scaling, memory, current, result, now, &mut adjustments);
    let request = memory
        .requested
        .as_ref()
        .filter(|r| (now - r.at).to_std().map_or(true, |age| age < REQUEST_LIFETIME));
    memory.firings.resize_with(scaling.schedule.len(), LastFiring::default);
    result = bound(scaling, result, request, &mut memory.firings, now, &mut adjustments);

    let reason = ScalingReason { current, ready, readings, proposed, adjustments, result };
    if result == current {
        ScalingDecision::Hold { replicas: current, reason }
    } else {
        ScalingDecision::Scale { from: current, to: result, reason }
    }
}

/// How many instances had a reading left out as implausible in some metric's window: like
/// an unready one, an instance whose load is unknown.
fn implausible(readings: &[Reading]) -> Option<u16> {
    let mut instances: Vec<&str> =
        readings.iter().flat_map(|r| r.outliers.iter().map(|o| o.instance.as_str())).collect();
    instances.sort_unstable();
    instances.dedup();
    (!instances.is_empty()).then(|| u16::try_from(instances.len()).unwrap_or(u16::MAX))
}

/// Reads one metric into `reading`, which [`Reading::unread`] or [`Reading::restart`] left
/// as a metric not read yet.
#[allow(clippy::too_many_arguments)]
fn read_metric(
    metric: &Metric,
    scaling: &Scaling,
    series: &Series<'_>,
    current: u16,
    ready: u16,
    now: Timestamp,
    memory: MetricMemory<'_>,
    reading: &mut Reading,
) {
    let MetricMemory { state, seasonal, bursts } = memory;
    reading.outliers = series.outliers(now, metric.window);
    if let (Some(profile), Some(config)) = (seasonal, &metric.seasonal) {
        // Learnt from every round the metric had, whatever the window says about it.
        profile.feed(series.points());
        reading.seasonal = profile
            .forecast(config, now, ahead(scaling, config))
            .map(|forecast| seasonal_reading(forecast, scaling, metric.target, current));
    }
    let points = match series.window(now, metric.window) {
        Ok(points) => points,
        Err(why) => {
            reading.value = Err(why);
            return;
        }
    };
    let value = state.statistic.value(metric.statistic, points, now);
    let mut trend = value;
    if let Some(forecast) = &scaling.forecast {
        // The trend only brings a scale-up forward; it never argues for fewer replicas.
        let predicted = series
            .window(now, forecast.window)
            .ok()
            .and_then(|p| series::linear_forecast(p, now, scaling.warmup))
            .filter(|p| *p > value);
        if let Some(predicted) = predicted {
            trend = predicted;
        }
    }
    // `mean` and `sum` series are totals: spread them over the replicas ready now.
    let spread = |total: f64| (ready > 0).then(|| total / f64::from(ready));
    let per_replica_of = |total: f64| match metric.aggregate {
        Aggregate::Max => Some(total),
        Aggregate::Mean | Aggregate::Sum => spread(total),
    };
    let mut load = trend;
    if let Some(memory) = bursts {
        // Rounds are measured against the level around them; only a fleet near its target
        // says how bursty the load is where headroom matters.
        let counted = per_replica_of(value)
            .is_some_and(|level| level >= bursts::COUNTED_FROM * metric.target);
        memory.feed(points, value, counted, now);
        let burst = memory.reading();
        load *= burst.factor;
        reading.bursts = Some(burst);
    }
    let per_replica = per_replica_of(load);
    let shown = |v: f64| match metric.aggregate {
        Aggregate::Mean => spread(v).unwrap_or(v),
        Aggregate::Max | Aggregate::Sum => v,
    };
    reading.value = Ok(shown(value));
    reading.forecast = (trend != value).then(|| shown(trend));
    reading.per_replica = per_replica;
    reading.desired = Some(match per_replica {
        Some(per_replica) => {
            let ratio = per_replica / metric.target;
            replicas_for(scaling, ratio, ratio * f64::from(ready), current)
        }
        // A total with nobody ready to share it: size for the total directly.
        None => to_replicas(load / metric.target),
    });
    if let Some(saturation) = metric.saturation
        && let Some(newest) = points.len().checked_sub(usize::from(saturation.rounds))
    {
        // The newest rounds alone, whatever the statistic: a replica at its ceiling now is
        // what a step must relieve.
        let at_ceiling = |&(_, total): &(Timestamp, f64)| {
            per_replica_of(total).is_some_and(|v| v >= saturation.above)
        };
        if points[newest..].iter().all(at_ceiling) {
            // The served load is capped, so the ratio understates the demand: step by the
            // factor from the replicas serving now.
            let stepped = to_replicas(f64::from(ready) * saturation.factor);
            reading.saturated = true;
            reading.desired = reading.desired.map(|d| d.max(stepped));
        }
    }
}

/// A forecast with the replicas its load needs at the metric's target, sized by the same rule
/// as a metric ([`replicas_for`]): a forecast within the tolerance band of what `current`
/// replicas carry asks for `current`, so a floor hovering around a multiple of the target does
/// not move the count by one replica at a time.
fn seasonal_reading(
    forecast: SeasonalForecast,
    scaling: &Scaling,
    target: f64,
    current: u16,
) -> super::reason::SeasonalReading {
    let ratio = forecast.load / (target * f64::from(current.max(1)));
    let replicas = replicas_for(scaling, ratio, forecast.load / target, current);
    super::reason::SeasonalReading { forecast, replicas }
}

/// The replicas a load asks for, from its usage `ratio` (load per replica over the target)
/// and `needed`, the load in targets (the replicas that would carry it at exactly the target).
///
/// - Without a band, the HPA's rule: within the tolerance, `current`; else `needed` rounded up.
/// - With a band ([`crate::policy::Band`]): above `scaleUpAbove`, what carries the load at
///   `sizeFor`; otherwise the fewest replicas that carry it at `scaleDownBelow` or less, if
///   fewer than `current`.
fn replicas_for(scaling: &Scaling, ratio: f64, needed: f64, current: u16) -> u16 {
    match scaling.band {
        None if within_tolerance(ratio, scaling.tolerance) => current,
        None => to_replicas(needed),
        Some(band) if past_band_edge(ratio, band) => {
            to_replicas(needed / band.size_for).max(current)
        }
        Some(band) => to_replicas(needed / band.scale_down_below).min(current),
    }
}

/// A trusted seasonal forecast's floor joins the recommendation, so the windows and limits
/// treat it as they treat the metrics: up at once, down only as the stabilization allows
/// (a floor that rose for a minute does not cost two scale events). A rise below the metric's
/// `minRise` sets no floor: the metrics follow a gentle ramp in time on their own.
fn seasonal_floor(
    scaling: &Scaling,
    readings: &[Reading],
    recommendation: u16,
    adjustments: &mut Vec<Adjustment>,
) -> u16 {
    let mut result = recommendation;
    for (metric, reading) in scaling.metrics.iter().zip(readings) {
        let Some(min_rise) = metric.seasonal.as_ref().map(|s| s.min_rise) else { continue };
        let Some(seasonal) = reading
            .seasonal
            .as_ref()
            .filter(|s| s.forecast.trusted && s.forecast.load >= s.forecast.now_load * min_rise)
        else {
            continue;
        };
        let min = seasonal.replicas.min(scaling.max_replicas);
        if result < min {
            result = min;
            adjustments.push(Adjustment::SeasonalFloor {
                metric: reading.metric.clone(),
                forecast: seasonal.forecast.clone(),
                min,
                to: result,
            });
        }
    }
    result
}

/// When every metric with a seasonal forecast has a trusted one whose floor is at or below
/// the recommendation, the forecast agrees the load has fallen: the shortest of their
/// `scaleDownStabilization` windows, and the highest floor, for the reason.
fn forecast_agrees(
    scaling: &Scaling,
    readings: &[Reading],
    recommendation: u16,
) -> Option<(Duration, u16)> {
    let mut agreed: Option<(Duration, u16)> = None;
    for (metric, reading) in scaling.metrics.iter().zip(readings) {
        let Some(config) = &metric.seasonal else { continue };
        let seasonal = reading.seasonal.as_ref().filter(|s| s.forecast.trusted)?;
        if seasonal.replicas > recommendation {
            return None;
        }
        let window = config.scale_down_stabilization;
        agreed = Some(match agreed {
            Some((w, floor)) => (w.min(window), floor.max(seasonal.replicas)),
            None => (window, seasonal.replicas),
        });
    }
    agreed
}

fn to_replicas(x: f64) -> u16 {
    // Clamped first so a wild value cannot wrap; bounds apply later.
    x.ceil().clamp(0.0, f64::from(u16::MAX)) as u16
}

fn metric_label(metric: &Metric) -> String {
    let statistic = match metric.statistic {
        Statistic::Mean => "mean".to_owned(),
        Statistic::Max => "max".to_owned(),
        Statistic::Min => "min".to_owned(),
        Statistic::Last => "last".to_owned(),
        Statistic::Percentile(p) => format!("p{p}"),
        Statistic::Ewma { half_life } => {
            format!("ewma(half-life {})", humantime::format_duration(half_life))
        }
        Statistic::Tail { exceedance } => {
            format!("tail(exceeded by 1 round in {:.0})", 1.0 / exceedance)
        }
    };
    let window = humantime::format_duration(metric.window);
    match &metric.source {
        MetricSource::Redis { field, rate, .. } => {
            let aggregate = match metric.aggregate {
                Aggregate::Mean => "mean",
                Aggregate::Max => "max",
                Aggregate::Sum => "sum",
            };
            let rate = if *rate { " rate" } else { "" };
            format!("{statistic} of {aggregate} {field}{rate} over {window}")
        }
        MetricSource::Prometheus { query } => format!("{statistic} of `{query}` over {window}"),
    }
}

/// HPA's stabilization: never above the highest recommendation in the scale-down window,
/// never below the lowest in the scale-up window.
fn stabilize(
    scaling: &Scaling,
    memory: &ScalingMemory,
    current: u16,
    recommendation: u16,
    agreed: Option<(Duration, u16)>,
    now: Timestamp,
    adjustments: &mut Vec<Adjustment>,
) -> u16 {
    let recommendations = &memory.recommendations;
    let up_cutoff = window_start(now, scaling.scale_up.stabilization);
    let up_floor = recommendations.lowest_since(up_cutoff, now).unwrap_or(recommendation);
    let mut down_window = scaling.scale_down.stabilization;
    if let Some((window, floor)) = agreed
        && recommendation < current
        && window < down_window
    {
        down_window = window;
        adjustments.push(Adjustment::ForecastAgrees {
            window,
            instead_of: scaling.scale_down.stabilization,
            floor,
        });
    }
    let down_ceiling = recommendations
        .highest_since(window_start(now, down_window), now)
        .unwrap_or(recommendation);
    if recommendation > current && up_floor < recommendation {
        let to = up_floor.max(current);
        adjustments.push(Adjustment::Stabilized {
            direction: Direction::Up,
            window: scaling.scale_up.stabilization,
            to,
        });
        return to;
    }
    if recommendation < current && down_ceiling > recommendation {
        let to = down_ceiling.min(current);
        adjustments.push(Adjustment::Stabilized {
            direction: Direction::Down,
            window: down_window,
            to,
        });
        return to;
    }
    recommendation
}

/// Cooldown since the last scale event, then at most `maxStep` per `period`, counted from the
/// replicas at the period's start as HPA does.
fn limit_rate(
    scaling: &Scaling,
    memory: &ScalingMemory,
    current: u16,
    wanted: u16,
    now: Timestamp,
    adjustments: &mut Vec<Adjustment>,
) -> u16 {
    if wanted == current {
        return current;
    }
    let (direction, behavior) = if wanted > current {
        (Direction::Up, &scaling.scale_up)
    } else {
        (Direction::Down, &scaling.scale_down)
    };
    if let Some(last) = memory.events.back() {
        let since = (now - last.at).to_std().unwrap_or_default();
        if since < behavior.cooldown {
            adjustments.push(Adjustment::Cooldown {
                direction,
                cooldown: behavior.cooldown,
                remaining: behavior.cooldown - since,
                to: current,
            });
            return current;
        }
    }
    let cutoff = window_start(now, behavior.period);
    let (mut added, mut removed) = (0i32, 0i32);
    for e in memory.events.iter().filter(|e| e.at > cutoff) {
        let change = i32::from(e.to) - i32::from(e.from);
        if change > 0 { added += change } else { removed -= change }
    }
    let period_start = (i32::from(current) - added + removed).max(0);
    let limit = step_limit(behavior, direction, period_start);
    let capped = match direction {
        Direction::Up => wanted.min(limit.max(current)),
        Direction::Down => wanted.max(limit.min(current)),
    };
    if capped != wanted {
        adjustments.push(Adjustment::MaxStep {
            direction,
            step: behavior.max_step.to_string(),
            period: behavior.period,
            to: capped,
        });
    }
    capped
}

fn step_limit(behavior: &Behavior, direction: Direction, period_start: i32) -> u16 {
    let start = f64::from(period_start);
    let limit = match (behavior.max_step, direction) {
        (Step::Pods(n), Direction::Up) => start + f64::from(n),
        (Step::Pods(n), Direction::Down) => start - f64::from(n),
        (Step::Percent(p), Direction::Up) => (start * (1.0 + f64::from(p) / 100.0)).ceil(),
        (Step::Percent(p), Direction::Down) => (start * (1.0 - f64::from(p) / 100.0)).floor(),
    };
    limit.clamp(0.0, f64::from(u16::MAX)) as u16
}

/// Hard bounds last: `maxReplicas`, then `minReplicas`, any active cron floor, and an alert's
/// standing request.
fn bound(
    scaling: &Scaling,
    wanted: u16,
    request: Option<&ScaleRequest>,
    firings: &mut [LastFiring],
    now: Timestamp,
    adjustments: &mut Vec<Adjustment>,
) -> u16 {
    let mut result = wanted;
    if result > scaling.max_replicas {
        result = scaling.max_replicas;
        adjustments.push(Adjustment::MaxReplicas { max: scaling.max_replicas, to: result });
    }
    if result < scaling.min_replicas {
        result = scaling.min_replicas;
        adjustments.push(Adjustment::MinReplicas { min: scaling.min_replicas, to: result });
    }
    for (floor, firing) in scaling.schedule.iter().zip(firings) {
        let active = firing
            .at_or_before(&floor.cron, now)
            .is_some_and(|fired| (now - fired).to_std().is_ok_and(|age| age < floor.duration));
        let min = floor.min_replicas.min(scaling.max_replicas);
        if active && result < min {
            result = min;
            adjustments.push(Adjustment::CronFloor {
                cron: floor.cron.to_string(),
                min,
                to: result,
            });
        }
    }
    if let Some(request) = request {
        let min = request.at_least.min(scaling.max_replicas);
        if result < min {
            result = min;
            adjustments.push(Adjustment::Alert { alert: request.alert.clone(), min, to: result });
        }
    }
    result
}
