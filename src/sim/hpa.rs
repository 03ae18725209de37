//! The Kubernetes HorizontalPodAutoscaler as the baseline, ported from the controller's own
//! code (`pkg/controller/podautoscaler`: `reconcileAutoscaler`, `calcPlainMetricReplicas`,
//! `normalizeDesiredReplicasWithBehaviors`) for one Pods metric with an `AverageValue` target
//! and the default `behavior`:
//!
//! - scale-up: no stabilization; at most `max(+100 %, +4 pods)` per 15 s, counted from the
//!   replicas at the period's start;
//! - scale-down: the highest recommendation of the last 300 s; at most -100 % per 15 s.
//!
//! Go's arithmetic is kept where it changes results: metric values are integer milli-units
//! and their average is an integer division; windows compare with strict `After`/`Before`.

use std::collections::VecDeque;

use super::cluster::SimCluster;
use super::replay::Controller;
use super::trace::Millis;

/// `--horizontal-pod-autoscaler-sync-period`'s default.
pub const SYNC_PERIOD: Millis = 15_000;
/// `--horizontal-pod-autoscaler-tolerance`'s default.
pub const TOLERANCE: f64 = 0.1;
const SCALE_UP_STABILIZATION: Millis = 0;
const SCALE_DOWN_STABILIZATION: Millis = 300_000;
/// Both default policies (and the scale-down one) count changes over 15 s.
const POLICY_PERIOD: Millis = 15_000;
const SCALE_UP_PERCENT: f64 = 100.0;
const SCALE_UP_PODS: i64 = 4;
const SCALE_DOWN_PERCENT: f64 = 100.0;

/// What an HPA object would say: bounds and the per-pod target.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct HpaSpec {
    pub min_replicas: u16,
    pub max_replicas: u16,
    /// `target.averageValue` of the Pods metric, in the metric's unit.
    pub average_value: f64,
}

/// The controller's state for one HPA: recent recommendations and scale events.
#[derive(Debug, Clone)]
pub struct Hpa {
    spec: HpaSpec,
    recommendations: VecDeque<(Millis, i64)>,
    scale_up_events: VecDeque<(Millis, i64)>,
    scale_down_events: VecDeque<(Millis, i64)>,
}

impl Hpa {
    pub fn new(spec: HpaSpec) -> Self {
        Self {
            spec,
            recommendations: VecDeque::new(),
            scale_up_events: VecDeque::new(),
            scale_down_events: VecDeque::new(),
        }
    }

    /// One `reconcileAutoscaler` at `now`: `current` is the target's `spec.replicas`,
    /// `ready_values` the metric of each ready pod, `unready` how many pods are not ready yet.
    /// Returns the replica count the HPA sets (equal to `current` when it does not scale).
    pub fn reconcile(
        &mut self,
        now: Millis,
        current: u16,
        ready_values: &[f64],
        unready: usize,
    ) -> u16 {
        let current = i64::from(current);
        let (min, max) = (i64::from(self.spec.min_replicas), i64::from(self.spec.max_replicas));
        if self.recommendations.is_empty() {
            // `recordInitialRecommendation`: the first look remembers the current size, which
            // holds a scale-down for the first stabilization window.
            self.recommendations.push_back((now, current));
        }
        let desired = if current == 0 && min != 0 {
            // Scaling is disabled while the target is scaled to zero.
            current
        } else if current > max {
            max
        } else if current < min {
            min
        } else {
            let Some(proposed) = plain_metric_replicas(
                ready_values,
                unready,
                current,
                milli(self.spec.average_value),
            ) else {
                // No metrics (no ready pod): the HPA reports an error and changes nothing.
                return clamp_u16(current);
            };
            let stabilized = self.stabilize(now, current, proposed);
            self.limit_rate(now, current, stabilized)
        };
        if desired != current {
            self.store_scale_event(now, current, desired);
        }
        clamp_u16(desired)
    }

    /// `stabilizeRecommendationWithBehaviors`: never below the lowest recommendation of the
    /// scale-up window, never above the highest of the scale-down window, starting from
    /// `current`. Records the unstabilized recommendation.
    fn stabilize(&mut self, now: Millis, current: i64, desired: i64) -> i64 {
        let up_cutoff = now - SCALE_UP_STABILIZATION;
        let down_cutoff = now - SCALE_DOWN_STABILIZATION;
        let (mut up, mut down) = (desired, desired);
        for &(at, recommendation) in &self.recommendations {
            if at > up_cutoff {
                up = up.min(recommendation);
            }
            if at > down_cutoff {
                down = down.max(recommendation);
            }
        }
        let mut recommendation = current;
        if recommendation < up {
            recommendation = up;
        }
        if recommendation > down {
            recommendation = down;
        }
        // Kubernetes overwrites one sample older than both windows per call; dropping them all
        // is the same for every later result, since no window reaches them again.
        let obsolete = up_cutoff.min(down_cutoff);
        while self.recommendations.front().is_some_and(|&(at, _)| at < obsolete) {
            self.recommendations.pop_front();
        }
        self.recommendations.push_back((now, desired));
        recommendation
    }

    /// `convertDesiredReplicasWithBehaviorRate` with the default policies, then min/max.
    fn limit_rate(&self, now: Millis, current: i64, desired: i64) -> i64 {
        if desired > current {
            let period_start = current - changes_in_period(&self.scale_up_events, now);
            let by_percent = (period_start as f64 * (1.0 + SCALE_UP_PERCENT / 100.0)).ceil() as i64;
            let by_pods = period_start + SCALE_UP_PODS;
            // `selectPolicy: Max`, and never below the current count.
            let limit = by_percent.max(by_pods).max(current);
            desired.min(limit.min(i64::from(self.spec.max_replicas)))
        } else if desired < current {
            let period_start = current + changes_in_period(&self.scale_down_events, now);
            // Go truncates toward zero here (`int32(float64(...))`).
            let limit = ((period_start as f64) * (1.0 - SCALE_DOWN_PERCENT / 100.0)) as i64;
            let limit = limit.min(current);
            desired.max(limit.max(i64::from(self.spec.min_replicas)))
        } else {
            desired
        }
    }

    /// `storeScaleEvent`, keeping only events a period can still see.
    fn store_scale_event(&mut self, now: Millis, from: i64, to: i64) {
        let (events, change) = if to > from {
            (&mut self.scale_up_events, to - from)
        } else {
            (&mut self.scale_down_events, from - to)
        };
        while events.front().is_some_and(|&(at, _)| at < now - POLICY_PERIOD) {
            events.pop_front();
        }
        events.push_back((now, change));
    }
}

/// Replicas added (or removed) by events strictly inside the last period.
fn changes_in_period(events: &VecDeque<(Millis, i64)>, now: Millis) -> i64 {
    let cutoff = now - POLICY_PERIOD;
    events.iter().filter(|&&(at, _)| at > cutoff).map(|&(_, change)| change).sum()
}

/// `calcPlainMetricReplicas` for pods that are either ready with a value or not ready yet
/// (the simulator has no pods missing metrics). `None` when no ready pod reports.
fn plain_metric_replicas(
    ready_values: &[f64],
    unready: usize,
    current: i64,
    target: i64,
) -> Option<i64> {
    if ready_values.is_empty() {
        return None;
    }
    // Saturating, as Kubernetes falls back to big integers rather than wrap on overflow.
    let total = ready_values.iter().map(|v| milli(*v)).fold(0i64, i64::saturating_add);
    let usage_ratio = metric_usage_ratio(total, ready_values.len(), target);
    let scale_up_with_unready = unready > 0 && usage_ratio > 1.0;
    if !scale_up_with_unready {
        if (1.0 - usage_ratio).abs() <= TOLERANCE {
            return Some(current);
        }
        return Some((usage_ratio * ready_values.len() as f64).ceil() as i64);
    }
    // On a scale-up, count unready pods as using nothing and look again.
    let pods = ready_values.len() + unready;
    let new_usage_ratio = metric_usage_ratio(total, pods, target);
    let flips = (usage_ratio < 1.0 && new_usage_ratio > 1.0)
        || (usage_ratio > 1.0 && new_usage_ratio < 1.0);
    if (1.0 - new_usage_ratio).abs() <= TOLERANCE || flips {
        return Some(current);
    }
    let new_replicas = (new_usage_ratio * pods as f64).ceil() as i64;
    let wrong_way = (new_usage_ratio < 1.0 && new_replicas > current)
        || (new_usage_ratio > 1.0 && new_replicas < current);
    Some(if wrong_way { current } else { new_replicas })
}

/// `GetMetricUsageRatio`: the integer average of milli-values over the target.
fn metric_usage_ratio(total: i64, pods: usize, target: i64) -> f64 {
    let average = total / i64::try_from(pods).unwrap_or(i64::MAX).max(1);
    average as f64 / target.max(1) as f64
}

/// A quantity's `MilliValue()`, which rounds up.
fn milli(value: f64) -> i64 {
    (value * 1000.0).ceil() as i64
}

fn clamp_u16(replicas: i64) -> u16 {
    u16::try_from(replicas.max(0)).unwrap_or(u16::MAX)
}

/// The HPA driving the simulated cluster: every sync period it reads each ready pod's
/// ops/s (their even share of the served load) and sets the replica count.
pub struct HpaController {
    hpa: Hpa,
    ready_values: Vec<f64>,
}

impl HpaController {
    pub fn new(spec: HpaSpec) -> Self {
        Self { hpa: Hpa::new(spec), ready_values: Vec::new() }
    }
}

impl Controller for HpaController {
    fn interval(&self) -> Millis {
        SYNC_PERIOD
    }

    /// The HPA is a baseline, not the policy's action path: it resizes the simulated
    /// cluster directly, as the Kubernetes controller writes `spec.replicas`.
    fn evaluate(&mut self, now: Millis, demand: f64, cluster: &mut SimCluster) {
        let model = cluster.model();
        let (current, ready, per_instance) =
            (model.requested(), model.ready(), model.ops_per_ready_instance(demand));
        let ready = usize::from(ready);
        self.ready_values.clear();
        self.ready_values.resize(ready, per_instance);
        let unready = usize::from(current) - ready;
        let desired = self.hpa.reconcile(now, current, &self.ready_values, unready);
        if desired != current {
            cluster.resize(desired);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sim::model::ClusterModel;

    fn hpa(min: u16, max: u16, average_value: f64) -> Hpa {
        Hpa::new(HpaSpec { min_replicas: min, max_replicas: max, average_value })
    }

    const T0: Millis = 1_000_000;

    #[test]
    fn doubles_when_the_metric_is_twice_the_target() {
        // Kubernetes docs: current 200m, desired 100m -> replicas double.
        let mut hpa = hpa(1, 10, 0.1);
        assert_eq!(hpa.reconcile(T0, 2, &[0.2, 0.2], 0), 4);
    }

    #[test]
    fn custom_metric_average_decides_the_count() {
        // Kubernetes' TestReplicaCalcScaleUpCM: values 20k, 10k, 30k against 15k -> 4.
        let mut hpa = hpa(1, 10, 15_000.0);
        assert_eq!(hpa.reconcile(T0, 3, &[20_000.0, 10_000.0, 30_000.0], 0), 4);
    }

    #[test]
    fn tolerance_keeps_small_deviations() {
        let mut hpa = hpa(1, 10, 100.0);
        assert_eq!(hpa.reconcile(T0, 4, &[109.0; 4], 0), 4); // ratio 1.09: within 0.1
        // Exactly 1.1 is outside: |1.0 - 1.1| is 0.10000000000000009 in binary floating
        // point, in Go as here. ceil(1.1 x 4) = 5.
        assert_eq!(hpa.reconcile(T0 + SYNC_PERIOD, 4, &[110.0; 4], 0), 5);
    }

    #[test]
    fn unready_pods_count_as_zero_on_a_scale_up_and_can_cancel_it() {
        let mut hpa = hpa(1, 20, 100.0);
        // 3 ready at 150 (ratio 1.5) + 3 unready: re-run gives 450 / 6 = 75 -> direction flips.
        assert_eq!(hpa.reconcile(T0, 6, &[150.0; 3], 3), 6);
        // 4 ready at 130 + 1 unready: 520 / 5 = 104 -> within tolerance: hold.
        assert_eq!(hpa.reconcile(T0 + SYNC_PERIOD, 5, &[130.0; 4], 1), 5);
        // 2 ready at 250 + 1 unready: 500 / 3 = 166.666 -> ceil(1.66666 x 3) = 5.
        assert_eq!(hpa.reconcile(T0 + 2 * SYNC_PERIOD, 3, &[250.0; 2], 1), 5);
    }

    #[test]
    fn unready_pods_are_left_out_when_scaling_down() {
        // 2 ready at 20 (ratio 0.2), 2 unready: no re-run; ceil(0.2 x 2) = 1 proposed, but the
        // initial recommendation (4) holds the scale-down for 300 s.
        let mut hpa = hpa(1, 20, 100.0);
        assert_eq!(hpa.reconcile(T0, 4, &[20.0; 2], 2), 4);
        assert_eq!(hpa.reconcile(T0 + SCALE_DOWN_STABILIZATION, 4, &[20.0; 2], 2), 1);
    }

    #[test]
    fn scale_up_is_limited_to_double_or_four_pods_per_period() {
        let mut hpa = hpa(1, 100, 100.0);
        // 1 pod at 1000 wants 10: max(1 x 2, 1 + 4) = 5.
        assert_eq!(hpa.reconcile(T0, 1, &[1000.0], 0), 5);
        // 7.5 s later the +4 is still inside the period: the period started at 1 -> limit 5.
        assert_eq!(hpa.reconcile(T0 + 7_500, 5, &[1000.0; 5], 0), 5);
        // 15 s after it, the event is out of the period (strictly after the cutoff only):
        // from 5, max(10, 9) = 10, and 5 pods at 1000 want 50.
        assert_eq!(hpa.reconcile(T0 + SYNC_PERIOD, 5, &[1000.0; 5], 0), 10);
    }

    #[test]
    fn max_replicas_caps_the_scale_up() {
        let mut hpa = hpa(1, 30, 100.0);
        assert_eq!(hpa.reconcile(T0, 10, &[400.0; 10], 0), 20); // limit max(20, 14)
        let mut hpa = self::hpa(1, 12, 100.0);
        assert_eq!(hpa.reconcile(T0, 10, &[400.0; 10], 0), 12);
    }

    #[test]
    fn scale_down_waits_for_the_highest_recommendation_of_five_minutes() {
        let mut hpa = hpa(2, 20, 100.0);
        // Busy at the start: 10 pods at 100 -> hold at 10.
        assert_eq!(hpa.reconcile(T0, 10, &[100.0; 10], 0), 10);
        // Then quiet: each look proposes ceil(0.2 x 10) = 2, but 10 was recommended within
        // 300 s, so nothing moves until that recommendation leaves the window.
        let mut t = T0;
        while t < T0 + SCALE_DOWN_STABILIZATION - SYNC_PERIOD {
            t += SYNC_PERIOD;
            assert_eq!(hpa.reconcile(t, 10, &[20.0; 10], 0), 10, "at {t}");
        }
        // Exactly 300 s after it, the old recommendation is no longer strictly inside.
        t += SYNC_PERIOD;
        assert_eq!(hpa.reconcile(t, 10, &[20.0; 10], 0), 2);
    }

    #[test]
    fn scale_down_stops_at_min_replicas() {
        let mut hpa = hpa(3, 20, 100.0);
        assert_eq!(hpa.reconcile(T0, 6, &[1.0; 6], 0), 6);
        assert_eq!(hpa.reconcile(T0 + SCALE_DOWN_STABILIZATION, 6, &[1.0; 6], 0), 3);
    }

    #[test]
    fn counts_outside_the_bounds_are_brought_inside_at_once() {
        let mut hpa = hpa(3, 8, 100.0);
        assert_eq!(hpa.reconcile(T0, 1, &[0.0], 0), 3);
        let mut hpa = self::hpa(3, 8, 100.0);
        assert_eq!(hpa.reconcile(T0, 12, &[0.0; 12], 0), 8);
    }

    #[test]
    fn no_ready_pod_means_no_change() {
        let mut hpa = hpa(1, 8, 100.0);
        assert_eq!(hpa.reconcile(T0, 3, &[], 3), 3);
    }

    #[test]
    fn the_controller_reads_the_even_share_of_served_load() {
        // 2 ready pods of capacity 1000 serving 500 ops/s -> 250 each against a target of
        // 100 -> ceil(2.5 x 2) = 5.
        let mut cluster = SimCluster::new(ClusterModel::new(2, 1000.0, 0, 0), 0);
        let mut controller =
            HpaController::new(HpaSpec { min_replicas: 1, max_replicas: 10, average_value: 100.0 });
        controller.evaluate(0, 500.0, &mut cluster);
        assert_eq!(cluster.model().requested(), 5);
    }
}
