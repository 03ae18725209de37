//! Behaviour of the scaling core, one rule per test, through the public `decide` entry point (and
//! the replay's `Decider`, which must decide as it does).

use std::time::Duration;

use super::fixture::{RoundBuilder, round, scaling, secs, t};
use super::{Fleet, Memory, ScalingDecision, decide};
use crate::observe::{History, Outcome, Timestamp};
use crate::policy::{Aggregate, MetricSource, Policy, Statistic, Step};

/// Drives the core the way every caller does: push a round, decide, apply what was decided.
struct Run {
    policy: Policy,
    history: History,
    memory: Memory,
    replicas: u16,
}

impl Run {
    fn new(policy: Policy, replicas: u16) -> Self {
        let history = History::new(Duration::from_secs(3600), policy.sampling.interval);
        Self { policy, history, memory: Memory::default(), replicas }
    }

    fn tick(&mut self, round: RoundBuilder) -> ScalingDecision {
        let at = round.0.at;
        self.history.push(round.0);
        let decision = decide(
            &self.policy,
            &self.history,
            Fleet { replicas: self.replicas },
            &mut self.memory,
            at,
        )
        .expect("a policy with scaling decides");
        if let ScalingDecision::Scale { from, to, .. } = decision {
            self.memory.scaling.record_scale(at, from, to);
            self.replicas = to;
        }
        decision
    }

    /// Ticks every 10 s from `from` to `to` (inclusive) with `replicas` ready instances each at
    /// `ops`; returns the replica count after each tick.
    fn steady(&mut self, from: i64, to: i64, ops: f64) -> Vec<u16> {
        (from..=to)
            .step_by(10)
            .map(|s| {
                let n = usize::from(self.replicas);
                self.tick(round(t(s)).ready_ops(&vec![ops; n]));
                self.replicas
            })
            .collect()
    }
}

fn scaled_to(d: &ScalingDecision) -> Option<u16> {
    match d {
        ScalingDecision::Scale { to, .. } => Some(*to),
        ScalingDecision::Hold { .. } => None,
    }
}

#[test]
fn load_above_target_scales_up_to_the_usage_ratio_and_says_why() {
    let policy = scaling().redis("instantaneous_ops_per_sec", 30_000.0).policy();
    let mut run = Run::new(policy, 3);
    let d = run.tick(round(t(0)).ready_ops(&[41_200.0, 41_200.0, 41_200.0]));
    // ratio 41,200 / 30,000 = 1.373; ceil(1.373 x 3) = 5
    assert_eq!(scaled_to(&d), Some(5));
    assert_eq!(
        d.sentence(),
        "mean of mean instantaneous_ops_per_sec over 30s 41,200 > target 30,000 x 1.1 -> 5 \
         (41,200 / 30,000 x 3 ready instances = 4.1, rounded up); 3 -> 5; scale 3 -> 5"
    );
}

#[test]
fn a_count_the_load_divides_into_exactly_is_not_rounded() {
    let policy = scaling().redis("instantaneous_ops_per_sec", 2000.0).policy();
    let mut run = Run::new(policy, 3);
    let d = run.tick(round(t(0)).ready_ops(&[4000.0, 4000.0, 4000.0]));
    assert_eq!(scaled_to(&d), Some(6));
    assert!(
        d.sentence().contains("-> 6 (4,000 / 2,000 x 3 ready instances = 6); 3 -> 6"),
        "{}",
        d.sentence()
    );
}

#[test]
fn load_inside_the_tolerance_band_holds() {
    let policy = scaling().redis("instantaneous_ops_per_sec", 1000.0).policy();
    let mut run = Run::new(policy, 4);
    let d = run.tick(round(t(0)).ready_ops(&[1090.0, 1090.0, 1090.0, 1090.0]));
    assert_eq!(scaled_to(&d), None);
    assert!(d.sentence().contains("within 0.1 of target 1,000"), "{}", d.sentence());
}

#[test]
fn low_load_scales_down_to_what_the_load_needs() {
    let policy = scaling().redis("instantaneous_ops_per_sec", 1000.0).policy();
    let mut run = Run::new(policy, 6);
    let d = run.tick(round(t(0)).ready_ops(&[200.0; 6]));
    // total 1,200 needs ceil(0.2 x 6) = 2 replicas
    assert_eq!(scaled_to(&d), Some(2));
}

#[test]
fn a_missing_metric_never_scales_down_and_the_reason_says_what_is_missing() {
    let query = "sum(rate(app_requests_total[1m]))";
    let policy = scaling()
        .redis("instantaneous_ops_per_sec", 1000.0)
        .metric(MetricSource::Prometheus { query: query.into() }, Aggregate::Sum, 1000.0)
        .policy();
    let mut run = Run::new(policy, 5);
    let d = run.tick(round(t(0)).ready_ops(&[100.0; 5]).query(query, Err("empty result".into())));
    assert_eq!(scaled_to(&d), None, "{}", d.sentence());
    let reason = d.sentence();
    assert!(
        reason.contains(&format!("`{query}` over 30s missing (empty result in the last 30s)")),
        "{reason}"
    );
    assert!(reason.contains("missing data never scales down"), "{reason}");
}

#[test]
fn a_missing_metric_still_lets_another_metric_scale_up() {
    let query = "sum(rate(app_requests_total[1m]))";
    let policy = scaling()
        .redis("instantaneous_ops_per_sec", 1000.0)
        .metric(MetricSource::Prometheus { query: query.into() }, Aggregate::Sum, 1000.0)
        .policy();
    let mut run = Run::new(policy, 2);
    let d = run.tick(round(t(0)).ready_ops(&[2000.0, 2000.0]));
    assert_eq!(scaled_to(&d), Some(4), "{}", d.sentence());
}

#[test]
fn no_instance_answering_is_missing_not_zero() {
    let policy = scaling().redis("instantaneous_ops_per_sec", 1000.0).policy();
    let mut run = Run::new(policy, 3);
    let d = run.tick(
        round(t(0))
            .unreachable(Outcome::Refused)
            .unreachable(Outcome::Timeout)
            .unreachable(Outcome::Timeout),
    );
    assert_eq!(scaled_to(&d), None);
    assert!(
        d.sentence().contains("missing (no ready instance in the last 30s)"),
        "{}",
        d.sentence()
    );
}

#[test]
fn unready_instances_block_scale_down_but_not_scale_up() {
    let policy = scaling().redis("instantaneous_ops_per_sec", 1000.0).policy();
    let mut run = Run::new(policy.clone(), 4);
    let d = run.tick(round(t(0)).ready_ops(&[100.0, 100.0, 100.0]).syncing());
    assert_eq!(scaled_to(&d), None);
    assert!(d.sentence().contains("1 instance(s) not ready"), "{}", d.sentence());

    let mut run = Run::new(policy, 4);
    let d = run.tick(round(t(0)).ready_ops(&[3000.0, 3000.0, 3000.0]).syncing());
    // 9,000 ops over 3 ready instances needs 9 replicas.
    assert_eq!(scaled_to(&d), Some(9));
}

#[test]
fn a_sum_is_a_total_divided_by_the_per_replica_target() {
    let query = "sum(rate(app_requests_total[1m]))";
    let policy = scaling()
        .metric(MetricSource::Prometheus { query: query.into() }, Aggregate::Sum, 1000.0)
        .policy();
    let mut run = Run::new(policy, 2);
    let d = run.tick(round(t(0)).ready_ops(&[0.0, 0.0]).query(query, Ok(vec![5000.0, 500.0])));
    assert_eq!(scaled_to(&d), Some(6));
    assert!(
        d.sentence().contains(
            "5,500 = 2,750 per replica > target 1,000 x 1.1 -> 6 \
             (2,750 / 1,000 x 2 ready instances = 5.5, rounded up)"
        ),
        "{}",
        d.sentence()
    );
}

#[test]
fn an_empty_query_result_is_missing_and_several_series_follow_the_aggregate() {
    let query = "rate(redis_commands_processed_total[1m])";
    let policy = scaling()
        .metric(MetricSource::Prometheus { query: query.into() }, Aggregate::Max, 1000.0)
        .policy();
    let mut run = Run::new(policy.clone(), 3);
    let d = run.tick(round(t(0)).ready_ops(&[0.0; 3]).query(query, Ok(vec![])));
    assert!(d.sentence().contains("missing (empty result in the last 30s)"), "{}", d.sentence());
    let mut run = Run::new(policy, 3);
    let d = run.tick(round(t(0)).ready_ops(&[0.0; 3]).query(query, Ok(vec![400.0, 2500.0, 900.0])));
    // The hottest series, 2,500 per replica: ceil(2.5 x 3) = 8.
    assert_eq!(scaled_to(&d), Some(8), "{}", d.sentence());
}

#[test]
fn max_aggregate_follows_the_hottest_instance() {
    let policy = scaling()
        .metric(
            MetricSource::Redis { field: "used_cpu".into(), rate: false, plausible_max: None },
            Aggregate::Max,
            50.0,
        )
        .policy();
    let mut run = Run::new(policy, 2);
    let d = run.tick(round(t(0)).ready("used_cpu", &[10.0, 90.0]));
    // 90 / 50 = 1.8 -> ceil(3.6) = 4
    assert_eq!(scaled_to(&d), Some(4));
}

#[test]
fn a_counter_becomes_a_rate_and_a_reset_is_skipped() {
    let policy = scaling()
        .metric(
            MetricSource::Redis {
                field: "total_commands_processed".into(),
                rate: true,
                plausible_max: None,
            },
            Aggregate::Mean,
            1000.0,
        )
        .statistic(Statistic::Last, secs(60))
        .policy();
    let mut run = Run::new(policy, 2);
    let field = "total_commands_processed";
    let first = run.tick(round(t(0)).ready(field, &[0.0, 0.0]));
    assert!(
        first.sentence().contains("missing"),
        "one round has no rate yet: {}",
        first.sentence()
    );
    // 30,000 commands in 10 s on each = 3,000/s -> 6 replicas
    let d = run.tick(round(t(10)).ready(field, &[30_000.0, 30_000.0]));
    assert_eq!(scaled_to(&d), Some(6), "{}", d.sentence());
    // redis-1 restarted and its counter went back to 5: only redis-0's 1,000/s counts.
    run.replicas = 2;
    let d = run.tick(round(t(20)).ready(field, &[40_000.0, 5.0]));
    assert!(d.sentence().contains("rate over 1m 1,000 within"), "{}", d.sentence());
}

#[test]
fn percentiles_and_ewma_follow_their_definitions() {
    let window = secs(100);
    let p90 = scaling()
        .redis("instantaneous_ops_per_sec", 1.0)
        .statistic(Statistic::Percentile(90), window)
        .max(1000)
        .policy();
    let mut run = Run::new(p90, 1);
    for i in 1..=10 {
        run.replicas = 1;
        run.tick(round(t(i * 10)).ready_ops(&[f64::from(i as u32) * 100.0]));
    }
    run.replicas = 1;
    let d = run.tick(round(t(101)).ready_ops(&[100.0]));
    // Window (1 s, 101 s] holds 100, 100, 200, ..., 1,000. statrs uses the R-8 estimator:
    // h = (11 + 1/3) x 0.9 + 1/3 = 10.53 -> 900 + 0.53 x (1,000 - 900) = 953.
    assert!(
        d.sentence().starts_with("p90 of mean instantaneous_ops_per_sec over 1m 40s 953 "),
        "{}",
        d.sentence()
    );

    let ewma = scaling()
        .redis("instantaneous_ops_per_sec", 1.0)
        .statistic(Statistic::Ewma { half_life: secs(10) }, window)
        .max(1000)
        .policy();
    let mut run = Run::new(ewma, 1);
    run.tick(round(t(0)).ready_ops(&[0.0]));
    run.replicas = 1;
    let d = run.tick(round(t(10)).ready_ops(&[300.0]));
    // weights 0.5 (10 s old) and 1: (0 x 0.5 + 300) / 1.5 = 200
    assert!(d.sentence().contains("over 1m 40s 200 "), "{}", d.sentence());
}

/// Rounds alternating between `mean - spread` and `mean + spread`, every 5 s: their mean is
/// `mean` and half their mean squared step is `2 x spread^2`, the variance `tail` reads.
fn alternating(mean: f64, spread: f64, rounds: i64) -> Vec<(Timestamp, f64)> {
    (0..rounds)
        .map(|i| (t(i * 5), if i % 2 == 0 { mean - spread } else { mean + spread }))
        .collect()
}

/// `tail` is a Poisson quantile in requests of the measured size: a load of requests of
/// 20,000 arriving once a second on average (variance / mean = 20,000, mean / that = 1)
/// reaches 5 requests (100,000) one round in a thousand and 4 (80,000) one in a hundred,
/// as a Poisson count of mean 1 does (P(X <= 4) = 0.9963, P(X <= 5) = 0.9994). Many small
/// requests (1,000 each, 100 a second) are nearly normal: 133 requests, as the Poisson
/// quantile is.
#[test]
fn a_tail_is_the_poisson_quantile_of_the_measured_requests() {
    use super::series::statistic;
    let tail = |exceedance, points: &[(Timestamp, f64)]| {
        statistic(Statistic::Tail { exceedance }, points, points[points.len() - 1].0)
    };
    // 2 x spread^2 = 20,000 x 20,000 (mean 20,000 of 20,000-sized requests).
    let few_large = alternating(20_000.0, (20_000.0f64 * 20_000.0 / 2.0).sqrt(), 120);
    let close = |a: f64, b: f64| (a - b).abs() < 1e-6 * b;
    assert!(close(tail(0.001, &few_large), 100_000.0), "{}", tail(0.001, &few_large));
    assert!(close(tail(0.01, &few_large), 80_000.0), "{}", tail(0.01, &few_large));
    let many_small = alternating(100_000.0, (1_000.0f64 * 100_000.0 / 2.0).sqrt(), 120);
    assert!(close(tail(0.001, &many_small), 133_000.0), "{}", tail(0.001, &many_small));
    // A constant load has no spread: its tail is itself.
    let flat: Vec<_> = (0..10).map(|i| (t(i * 5), 42_000.0)).collect();
    assert_eq!(tail(0.001, &flat), 42_000.0);
}

/// A load that stepped from 50,000 to 100,000 within the window is one large step, not a
/// spread around 75,000: its tail (about 90,000) stays below the new level, where the
/// variance around the mean (625,000,000) would have put it at 158,000.
#[test]
fn a_step_within_the_window_is_not_read_as_noise() {
    use super::series::statistic;
    let stepped: Vec<_> =
        (0..60).map(|i| (t(i * 5), if i < 30 { 50_000.0 } else { 100_000.0 })).collect();
    let tail = statistic(Statistic::Tail { exceedance: 0.001 }, &stepped, t(295));
    assert!(tail < 100_000.0, "{tail}");
}

#[test]
fn a_window_measured_with_fewer_replicas_does_not_overshoot_after_a_scale_up() {
    let policy = scaling()
        .redis("instantaneous_ops_per_sec", 1000.0)
        .statistic(Statistic::Max, secs(60))
        .max(100)
        .policy();
    let mut run = Run::new(policy, 2);
    // 6,000 ops/s on 2 replicas needs 6.
    assert_eq!(scaled_to(&run.tick(round(t(0)).ready_ops(&[3000.0, 3000.0]))), Some(6));
    // The same 6,000 ops/s now spread over 6. The window still holds the 3,000-per-replica
    // round, but as a total of 6,000: 1,000 per replica ready now, nothing more to add.
    let d = run.tick(round(t(10)).ready_ops(&[1000.0; 6]));
    assert_eq!(scaled_to(&d), None, "{}", d.sentence());
    assert!(d.sentence().contains("over 1m 1,000 within"), "{}", d.sentence());
}

#[test]
fn scale_down_waits_for_the_stabilization_window() {
    let policy = scaling()
        .redis("instantaneous_ops_per_sec", 1000.0)
        .down(60, Step::Percent(100), 15, 0)
        .policy();
    let mut run = Run::new(policy, 4);
    run.steady(0, 0, 1000.0);
    let replicas = run.steady(10, 90, 200.0);
    // The 30 s mean falls 600 -> 467 -> 200, recommending 3, 2, then 1 from t=10, 20, 30;
    // each is acted on only once the higher ones before it are a full minute old.
    assert_eq!(replicas, [4, 4, 4, 4, 4, 3, 2, 1, 1]);
}

#[test]
fn max_step_caps_the_change_per_period_from_the_period_start() {
    let policy = scaling()
        .redis("instantaneous_ops_per_sec", 1000.0)
        .max(20)
        .up(0, Step::Pods(2), 30, 0)
        .policy();
    let mut run = Run::new(policy, 2);
    let d = run.tick(round(t(0)).ready_ops(&[5000.0, 5000.0]));
    assert_eq!(scaled_to(&d), Some(4));
    assert!(d.sentence().contains("capped at 4 by scale-up maxStep 2 per 30s"), "{}", d.sentence());
    // Still inside the 30 s period that began at 2: no further step allowed.
    let d = run.tick(round(t(10)).ready_ops(&[5000.0; 4]));
    assert_eq!(scaled_to(&d), None, "{}", d.sentence());
    // The period has rolled: 4 + 2.
    let d = run.tick(round(t(31)).ready_ops(&[5000.0; 4]));
    assert_eq!(scaled_to(&d), Some(6));
}

#[test]
fn percent_steps_round_like_the_hpa() {
    let policy = scaling()
        .redis("instantaneous_ops_per_sec", 1000.0)
        .max(100)
        .up(0, Step::Percent(50), 60, 0)
        .down(0, Step::Percent(50), 60, 0)
        .policy();
    let mut run = Run::new(policy.clone(), 3);
    let d = run.tick(round(t(0)).ready_ops(&[10_000.0; 3]));
    assert_eq!(scaled_to(&d), Some(5), "ceil(3 x 1.5)");
    let mut run = Run::new(policy, 5);
    let d = run.tick(round(t(0)).ready_ops(&[10.0; 5]));
    assert_eq!(scaled_to(&d), Some(2), "floor(5 x 0.5)");
}

#[test]
fn cooldown_after_a_scale_event_holds_and_counts_down() {
    let policy = scaling()
        .redis("instantaneous_ops_per_sec", 1000.0)
        .down(0, Step::Percent(100), 15, 120)
        .policy();
    let mut run = Run::new(policy, 2);
    assert_eq!(scaled_to(&run.tick(round(t(0)).ready_ops(&[2000.0, 2000.0]))), Some(4));
    let d = run.tick(round(t(30)).ready_ops(&[100.0; 4]));
    assert_eq!(scaled_to(&d), None);
    assert!(d.sentence().contains("scale-down cooldown 2m (1m 30s left)"), "{}", d.sentence());
    let d = run.tick(round(t(120)).ready_ops(&[100.0; 4]));
    assert_eq!(scaled_to(&d), Some(1));
}

#[test]
fn bounds_override_everything() {
    let policy = scaling().redis("instantaneous_ops_per_sec", 1000.0).min(2).max(5).policy();
    let mut run = Run::new(policy.clone(), 3);
    let d = run.tick(round(t(0)).ready_ops(&[100_000.0; 3]));
    assert_eq!(scaled_to(&d), Some(5));
    assert!(d.sentence().contains("lowered to 5 by maxReplicas 5"), "{}", d.sentence());
    let mut run = Run::new(policy, 3);
    let d = run.tick(round(t(0)).ready_ops(&[0.0; 3]));
    assert_eq!(scaled_to(&d), Some(2));
    assert!(d.sentence().contains("raised to 2 by minReplicas 2"), "{}", d.sentence());
}

#[test]
fn a_cron_floor_holds_replicas_for_its_duration() {
    let policy = scaling()
        .redis("instantaneous_ops_per_sec", 1000.0)
        .floor("0 0 8 * * Mon-Fri", 4, secs(3600))
        .policy();
    let eight = 8 * 3600;
    let mut run = Run::new(policy, 1);
    assert_eq!(scaled_to(&run.tick(round(t(eight - 10)).ready_ops(&[10.0]))), None);
    let d = run.tick(round(t(eight)).ready_ops(&[10.0]));
    assert_eq!(scaled_to(&d), Some(4));
    assert!(
        d.sentence().contains("raised to 4 by schedule `0 0 8 * * Mon-Fri` (at least 4)"),
        "{}",
        d.sentence()
    );
    assert_eq!(scaled_to(&run.tick(round(t(eight + 3599)).ready_ops(&[10.0; 4]))), None);
    assert_eq!(scaled_to(&run.tick(round(t(eight + 3600)).ready_ops(&[10.0; 4]))), Some(1));
}

/// A reload that moves a floor's schedule is read at once: the firing kept for the old
/// expression does not hold the floor up.
#[test]
fn a_reloaded_schedule_is_read_at_once() {
    let floor_at = |cron: &str| {
        scaling().redis("instantaneous_ops_per_sec", 1000.0).floor(cron, 4, secs(3600)).policy()
    };
    let eight = 8 * 3600;
    let mut run = Run::new(floor_at("0 0 8 * * Mon-Fri"), 1);
    assert_eq!(scaled_to(&run.tick(round(t(eight)).ready_ops(&[10.0]))), Some(4));
    run.policy = floor_at("0 0 20 * * Mon-Fri");
    let d = run.tick(round(t(eight + 60)).ready_ops(&[10.0; 4]));
    assert_eq!(scaled_to(&d), Some(1), "{}", d.sentence());
}

#[test]
fn a_rising_trend_scales_up_before_the_load_arrives() {
    let with_forecast =
        scaling().redis("instantaneous_ops_per_sec", 1000.0).forecast(secs(60), secs(60)).policy();
    let without = scaling().redis("instantaneous_ops_per_sec", 1000.0).policy();
    // Load per instance climbs 50 ops/s every 10 s, from 700 to 950: still under target.
    let ramp = |run: &mut Run| -> Vec<ScalingDecision> {
        (0..6)
            .map(|i| run.tick(round(t(i * 10)).ready_ops(&[700.0 + 50.0 * i as f64; 2])))
            .collect()
    };
    let mut plain = Run::new(without, 2);
    assert!(ramp(&mut plain).iter().all(|d| scaled_to(d).is_none()));
    let mut ahead = Run::new(with_forecast, 2);
    let first_scale = (0..6)
        .map(|i| (i, ahead.tick(round(t(i * 10)).ready_ops(&[700.0 + 50.0 * i as f64; 2]))))
        .find(|(_, d)| scaled_to(d).is_some());
    // At t=30 the 30 s mean is 800, but the line through 700..850 reaches 1,150 one warm-up
    // (60 s) ahead: 2 x 1.15 -> 3. (At t=20 the trend, 1,100, sat exactly on the band's edge.)
    let (i, d) = first_scale.expect("the forecast scales up");
    assert_eq!((i, scaled_to(&d)), (3, Some(3)), "{}", d.sentence());
    assert!(d.sentence().contains("over 30s 800 (trend 1,150 after warm-up)"), "{}", d.sentence());
}

/// The fit is exact on a line, even with large loads over a long window, and has no slope to
/// give without two distinct times.
#[test]
fn the_linear_trend_extends_the_line_through_the_window() {
    use super::series::linear_forecast;
    let line: Vec<(Timestamp, f64)> =
        (0..90).map(|i| (t(10_000 + i * 10), 2_000_000.0 + 250.0 * i as f64)).collect();
    let now = t(10_000 + 89 * 10);
    let ahead = linear_forecast(&line, now, secs(60)).expect("a slope");
    // 60 s past the last point is 6 steps of 250 further.
    assert!((ahead - (2_000_000.0 + 250.0 * 95.0)).abs() < 1e-3, "{ahead}");
    assert_eq!(linear_forecast(&line[..1], now, secs(60)), None);
    let same_instant = [(t(5), 1.0), (t(5), 3.0)];
    assert_eq!(linear_forecast(&same_instant, t(5), secs(60)), None);
}

#[test]
fn a_falling_trend_never_argues_for_fewer_replicas() {
    let policy =
        scaling().redis("instantaneous_ops_per_sec", 1000.0).forecast(secs(60), secs(60)).policy();
    let mut run = Run::new(policy, 2);
    let mut last = None;
    for i in 0..6 {
        last = Some(run.tick(round(t(i * 10)).ready_ops(&[1000.0 - 20.0 * i as f64; 2])));
    }
    let d = last.unwrap();
    assert_eq!(scaled_to(&d), None, "{}", d.sentence());
    assert!(!d.sentence().contains("trend"), "{}", d.sentence());
}

#[test]
fn memory_stays_bounded_over_a_long_run() {
    let policy = scaling()
        .redis("instantaneous_ops_per_sec", 1000.0)
        .down(300, Step::Percent(100), 60, 0)
        .policy();
    let mut run = Run::new(policy, 3);
    for i in 0..10_000 {
        let ops = if i % 50 < 25 { 2500.0 } else { 300.0 };
        let n = usize::from(run.replicas);
        run.tick(round(t(i * 10)).ready_ops(&vec![ops; n]));
    }
    assert!(run.memory.scaling.held() <= 31 + 7, "held {}", run.memory.scaling.held());
}

#[test]
fn an_alert_request_is_a_floor_until_a_scale_meets_it() {
    let policy = scaling().redis("instantaneous_ops_per_sec", 1000.0).policy();
    let mut run = Run::new(policy, 2);
    run.memory.scaling.request_scale_up(t(0), "RedisLatencyHigh", 4);
    let d = run.tick(round(t(0)).ready_ops(&[1000.0, 1000.0]));
    assert_eq!(scaled_to(&d), Some(4));
    assert!(
        d.sentence().contains("raised to 4 by alert RedisLatencyHigh (at least 4)"),
        "{}",
        d.sentence()
    );
    // Met: the floor is gone. The 30 s window holds totals 2,000 and 400, 300 per replica
    // over the 4 ready now, which asks for 2.
    let d = run.tick(round(t(10)).ready_ops(&[100.0; 4]));
    assert_eq!(scaled_to(&d), Some(2), "{}", d.sentence());
    assert!(!d.sentence().contains("alert"), "{}", d.sentence());
}

#[test]
fn an_alert_request_expires_when_it_cannot_be_met() {
    let policy = scaling().redis("instantaneous_ops_per_sec", 1000.0).max(3).policy();
    let mut run = Run::new(policy, 3);
    run.memory.scaling.request_scale_up(t(0), "RedisLatencyHigh", 5);
    let d = run.tick(round(t(0)).ready_ops(&[100.0; 3]));
    assert_eq!(scaled_to(&d), None, "maxReplicas caps the request: {}", d.sentence());
    let d = run.tick(round(t(601)).ready_ops(&[100.0; 3]));
    assert_eq!(scaled_to(&d), Some(1), "expired after 10 minutes: {}", d.sentence());
}

/// Issue 12: one instance answering INFO with a fake 5,000,000 ops/s among eight honest ones
/// at 33,000 (target 35,000). Counted, the mean is 584,889 per replica: 9 -> 151, capped at
/// maxReplicas. Left out, the fleet holds, and the reason names the instance and its value.
#[test]
fn a_fake_reading_does_not_size_the_fleet_and_the_reason_names_it() {
    let policy = scaling().max(30).redis("instantaneous_ops_per_sec", 35_000.0).policy();
    let mut run = Run::new(policy, 9);
    let mut ops = vec![33_000.0; 9];
    ops[4] = 5_000_000.0;
    let d = run.tick(round(t(0)).ready_ops(&ops));
    assert_eq!(scaled_to(&d), None, "{d:?}");
    let reason = d.reason();
    assert_eq!(reason.readings[0].value, Ok(33_000.0), "the honest instances' mean");
    let text = reason.to_string();
    assert!(
        text.contains(
            "left out as implausible: redis-4 reported 5,000,000 > plausibleMax 2,000,000"
        ),
        "{text}"
    );
    assert!(text.ends_with("hold at 9"), "{text}");
    // The decision keeps it as data too (JSON for /v1/decisions).
    let outlier = &reason.readings[0].outliers[0];
    assert_eq!((outlier.instance.as_str(), outlier.value), ("redis-4", 5_000_000.0));
}

#[test]
fn an_implausible_reading_is_doubt_no_scale_down_while_it_is_in_the_window() {
    let policy = scaling().redis("instantaneous_ops_per_sec", 35_000.0).policy();
    let mut run = Run::new(policy, 4);
    // The honest three ask for 1; the fourth's load is unknown.
    let d = run.tick(round(t(0)).ready_ops(&[5_000.0, 5_000.0, 5_000.0, 9e9]));
    assert_eq!(scaled_to(&d), None, "{d:?}");
    let text = d.reason().to_string();
    assert!(text.contains("kept at 4: 1 instance(s) reported implausible readings"), "{text}");
    // Once the window (30 s) holds only plausible readings, it scales down.
    for s in [10, 20, 30] {
        run.tick(round(t(s)).ready_ops(&[5_000.0; 4]));
    }
    assert_eq!(run.replicas, 1);
}

#[test]
fn every_reading_implausible_is_a_missing_metric() {
    let policy = scaling().redis("instantaneous_ops_per_sec", 35_000.0).policy();
    let mut run = Run::new(policy, 3);
    let d = run.tick(round(t(0)).ready_ops(&[5e6, 6e6, f64::NAN]));
    let reason = d.reason();
    assert_eq!(scaled_to(&d), None);
    let text = reason.to_string();
    assert!(text.contains("every reading of `instantaneous_ops_per_sec` is implausible"), "{text}");
    assert!(text.contains("redis-0 reported 5,000,000") && text.contains("redis-2 reported NaN"));
}

#[test]
fn a_policy_plausible_max_replaces_the_default() {
    let source = MetricSource::Redis {
        field: "instantaneous_ops_per_sec".into(),
        rate: false,
        plausible_max: Some(10_000_000.0),
    };
    let policy = scaling().metric(source, Aggregate::Mean, 2_500_000.0).policy();
    let mut run = Run::new(policy, 2);
    // 5,000,000 is plausible here (a Redis-compatible server with many threads): 2 -> 4.
    let d = run.tick(round(t(0)).ready_ops(&[5e6, 5e6]));
    assert_eq!(scaled_to(&d), Some(4), "{d:?}");
}

/// Per-minute totals from `from` (seconds after `t(0)`) for `minutes` minutes, as the daemon
/// reads them back from Prometheus: `load(second)` at the start of each minute.
fn minutes_of(from: i64, minutes: i64, load: impl Fn(i64) -> f64) -> Vec<(Timestamp, f64)> {
    (0..minutes).map(|m| from + m * 60).map(|s| (t(s), load(s))).collect()
}

/// Yesterday (the day before `t(0)` + 1 day) the load jumped from 1,000 to 5,000 at 14:00;
/// today it has matched yesterday minute by minute so far.
fn yesterday_ramped_at_two_pm(today: impl Fn(i64) -> f64) -> Vec<(Timestamp, f64)> {
    let ramp = 14 * 3600;
    let mut points = minutes_of(0, 24 * 60, |s| if s >= ramp { 5_000.0 } else { 1_000.0 });
    points.extend(minutes_of(86_400, 13 * 60 + 50, |s| today(s - 86_400)));
    points
}

fn seasonal_run(policy: Policy, replicas: u16, history: &[(Timestamp, f64)]) -> Run {
    let mut run = Run::new(policy, replicas);
    let scaling = run.policy.scaling.clone().expect("scaling");
    run.memory.scaling.seed(&scaling, crate::decide::Learnt::Seasonal, 0, history);
    run
}

/// Issue 16: the load that came yesterday at 14:00 is a floor one warm-up (30 s) plus the
/// horizon (5 m) ahead of it today, with the numbers in the reason; before that window the
/// floor says nothing.
#[test]
fn a_trusted_seasonal_forecast_raises_the_count_a_warmup_ahead_of_yesterdays_ramp() {
    let policy = scaling().redis("instantaneous_ops_per_sec", 1000.0).seasonal(&[24], 60).policy();
    let mut run = seasonal_run(policy, 1, &yesterday_ramped_at_two_pm(|_| 1_000.0));
    let today = 86_400;
    // 13:50: the window ahead ends at 13:55:30; yesterday's ramp is not in it.
    let early = run.tick(round(t(today + 13 * 3600 + 50 * 60)).ready_ops(&[1_000.0]));
    assert_eq!(scaled_to(&early), None, "{}", early.sentence());
    // 13:55: the window reaches 14:00.
    let decision = run.tick(round(t(today + 13 * 3600 + 55 * 60)).ready_ops(&[1_000.0]));
    assert_eq!(scaled_to(&decision), Some(5), "{}", decision.sentence());
    assert!(
        decision.sentence().contains(
            "raised to 5 by the seasonal forecast of mean of mean instantaneous_ops_per_sec over \
             30s: 1day ago the load went from 1,000 (Tue 13:55 UTC) to 5,000 (Tue 14:00 UTC), \
             so 1,000 now x 5.00 = 5,000 (lately within 0 %), 5 replicas"
        ),
        "{}",
        decision.sentence()
    );
}

/// `minRise`: yesterday's ramp was a 5x rise; a floor that asks for a rise of at least 6
/// sets none, one that asks for 5 sets the same floor as without it.
#[test]
fn a_rise_below_min_rise_sets_no_floor() {
    let floor_at_two_pm = |min_rise: f64| {
        let mut policy =
            scaling().redis("instantaneous_ops_per_sec", 1000.0).seasonal(&[24], 60).policy();
        if let Some(seasonal) = policy.scaling.as_mut().and_then(|s| s.metrics[0].seasonal.as_mut())
        {
            seasonal.min_rise = min_rise;
        }
        let mut run = seasonal_run(policy, 1, &yesterday_ramped_at_two_pm(|_| 1_000.0));
        let decision = run.tick(round(t(86_400 + 13 * 3600 + 55 * 60)).ready_ops(&[1_000.0]));
        scaled_to(&decision)
    };
    assert_eq!(floor_at_two_pm(5.0), Some(5));
    assert_eq!(floor_at_two_pm(6.0), None);
}

/// A forecast that has been wrong lately (today's load swings minute by minute where
/// yesterday's was flat) is not trusted: no floor, and the reading says why.
#[test]
fn a_seasonal_forecast_wrong_lately_is_not_trusted() {
    let policy = scaling().redis("instantaneous_ops_per_sec", 1000.0).seasonal(&[24], 60).policy();
    let swinging = |s: i64| if (s / 60) % 2 == 0 { 500.0 } else { 2_000.0 };
    let mut run = seasonal_run(policy, 2, &yesterday_ramped_at_two_pm(swinging));
    let decision = run.tick(round(t(86_400 + 13 * 3600 + 55 * 60)).ready_ops(&[1_000.0, 1_000.0]));
    assert_eq!(scaled_to(&decision), None, "{}", decision.sentence());
    let seasonal = decision.reason().readings[0].seasonal.clone().expect("a forecast");
    assert!(!seasonal.forecast.trusted);
    assert!(seasonal.forecast.error > 0.4, "{:?}", seasonal.forecast);
}

/// The forecast never scales down by itself: yesterday's quiet hour needs 1 replica, today
/// the load holds at 3,600 on 4 (within tolerance), and the count stays.
#[test]
fn a_low_seasonal_forecast_never_scales_down_by_itself() {
    let policy = scaling()
        .redis("instantaneous_ops_per_sec", 1000.0)
        .seasonal(&[24], 0)
        .down(300, Step::Pods(10), 15, 0)
        .policy();
    let quiet = minutes_of(0, 24 * 60 + 10 * 60, |s| if s < 86_400 { 500.0 } else { 3_600.0 });
    let mut run = seasonal_run(policy, 4, &quiet);
    let counts = run.steady(86_400 + 10 * 3600, 86_400 + 10 * 3600 + 600, 900.0);
    assert!(counts.iter().all(|&n| n == 4), "{counts:?}");
}

/// When the load has fallen and the trusted forecast agrees it stays low, the scale-down
/// waits `scaleDownStabilization` (30 s) rather than `scaleDown.stabilization` (5 m); with
/// no forecast the same fall waits the five minutes.
#[test]
fn a_scale_down_the_forecast_agrees_with_comes_sooner() {
    let policy = |seasonal: bool| {
        let builder = scaling().redis("instantaneous_ops_per_sec", 1000.0);
        let builder = if seasonal { builder.seasonal(&[24], 30) } else { builder };
        builder.down(300, Step::Pods(10), 15, 0).policy()
    };
    // Yesterday and today: 4,000 until 10:00, then 1,000.
    let fall = 10 * 3600;
    let history =
        minutes_of(0, 24 * 60 + 10 * 60, |s| if s % 86_400 < fall { 4_000.0 } else { 1_000.0 });
    let start = 86_400 + fall;
    let mut agreed = seasonal_run(policy(true), 4, &history);
    let mut plain = seasonal_run(policy(false), 4, &history);
    for run in [&mut agreed, &mut plain] {
        assert!(run.steady(start - 300, start - 10, 1_000.0).iter().all(|&n| n == 4));
    }
    let with_forecast = agreed.steady(start, start + 120, 250.0);
    let without = plain.steady(start, start + 120, 250.0);
    // 250 x 4 = 1,000 from 10:00: both want 1; the plain policy holds for its 5 minutes.
    assert_eq!(without.last(), Some(&4), "{without:?}");
    assert_eq!(with_forecast.last(), Some(&1), "{with_forecast:?}");
    let first_down = with_forecast.iter().position(|&n| n < 4).expect("scaled down");
    assert!(first_down <= 4, "{with_forecast:?}");
}

/// A replica serving at its ceiling hides the demand behind it: within tolerance of the
/// target or not, the count steps by the factor from the replicas serving now.
#[test]
fn a_saturated_metric_steps_by_its_factor() {
    let policy =
        scaling().redis("instantaneous_ops_per_sec", 1000.0).saturation(1_050.0, 2.0).policy();
    let mut run = Run::new(policy, 3);
    let decision = run.tick(round(t(0)).ready_ops(&[1_060.0, 1_060.0, 1_060.0]));
    assert_eq!(scaled_to(&decision), Some(6), "{}", decision.sentence());
    assert!(decision.sentence().contains("saturated (served load at its ceiling) -> 6"));
    // Below the ceiling, the ratio as always.
    let mut run = Run::new(
        scaling().redis("instantaneous_ops_per_sec", 1000.0).saturation(1_500.0, 2.0).policy(),
        3,
    );
    let decision = run.tick(round(t(0)).ready_ops(&[1_400.0, 1_400.0, 1_400.0]));
    assert_eq!(scaled_to(&decision), Some(5), "{}", decision.sentence());
}

/// A p50 over 2 minutes with measured bursts (the 0.9 quantile over an hour, the band sized
/// for 1.1) at a target of 1,000 per replica, on 4 replicas.
fn bursty_policy() -> Policy {
    scaling()
        .redis("instantaneous_ops_per_sec", 1000.0)
        .statistic(Statistic::Percentile(50), secs(120))
        .bursts(0.9, secs(3600), 1.1)
        .policy()
}

/// Runs up to `rounds` rounds of 1,050 per replica on 4 replicas, every fifth `burst` times
/// that, and returns the first scale, or the last decision if none.
fn run_bursts(run: &mut Run, from: i64, rounds: i64, burst: f64) -> ScalingDecision {
    let mut last = None;
    for i in 0..rounds {
        let ops = if i % 5 == 4 { 1_050.0 * burst } else { 1_050.0 };
        let decision = run.tick(round(t(from + i * 10)).ready_ops(&[ops; 4]));
        if scaled_to(&decision).is_some() {
            return decision;
        }
        last = Some(decision);
    }
    last.expect("at least one round")
}

/// The burst reading of a decision's first metric.
fn bursts_of(d: &ScalingDecision) -> super::reason::BurstReading {
    d.reason().readings[0].bursts.expect("a burst reading")
}

/// The same level (1,050 per replica, within the tolerance of a 1,000 target) asks for more
/// replicas when a fifth of the rounds are bursts of 1.5x, and for none when the load is
/// steady: the headroom follows the load's measured bursts.
#[test]
fn measured_bursts_size_the_headroom_for_the_load_at_hand() {
    let mut steady = Run::new(bursty_policy(), 4);
    let d = run_bursts(&mut steady, 0, 200, 1.0);
    assert_eq!(scaled_to(&d), None, "{}", d.sentence());
    let bursts = bursts_of(&d);
    assert!(bursts.factor < 1.0, "{bursts:?}");

    let mut bursty = Run::new(bursty_policy(), 4);
    let d = run_bursts(&mut bursty, 0, 200, 1.5);
    // The 0.9 quantile is a burst, about 1.5: 1,050 x 1.5 / 1.1 = 1,432 per replica -> 6.
    assert_eq!(scaled_to(&d), Some(6), "{}", d.sentence());
    assert!(
        d.sentence().contains(
            "x 1.37 for bursts (p90 of rounds over their level 1.51, the headroom sized for 1.1)"
        ),
        "{}",
        d.sentence()
    );
}

/// What a metric learnt is kept while the policy stays the same, and learnt afresh when a
/// reload changed the settings it was learnt under (another `expect` here).
#[test]
fn a_reload_that_changes_a_metric_s_bursts_learns_them_afresh() {
    let mut run = Run::new(bursty_policy(), 4);
    let learnt = bursts_of(&run_bursts(&mut run, 0, 100, 1.0)).rounds;
    assert!(learnt > 50, "{learnt} rounds");
    let kept = bursts_of(&run_bursts(&mut run, 1000, 1, 1.0)).rounds;
    assert!(kept >= learnt, "{kept} rounds kept of {learnt}");

    run.policy = scaling()
        .redis("instantaneous_ops_per_sec", 1000.0)
        .statistic(Statistic::Percentile(50), secs(120))
        .bursts(0.9, secs(3600), 1.2)
        .policy();
    let afresh = bursts_of(&run_bursts(&mut run, 1010, 1, 1.0)).rounds;
    assert!(afresh < learnt / 4, "{afresh} rounds after the reload, {learnt} before");
}

/// `maxFactor: 1`: the same bursts of 1.5x measured, but the factor only ever lowers the
/// level, so the level within the tolerance scales nothing and the reason says what held it.
#[test]
fn a_burst_factor_capped_at_one_never_adds_headroom() {
    let mut policy = bursty_policy();
    if let Some(bursts) = policy.scaling.as_mut().and_then(|s| s.metrics[0].bursts.as_mut()) {
        bursts.max_factor = 1.0;
    }
    let mut capped = Run::new(policy, 4);
    let d = run_bursts(&mut capped, 0, 200, 1.5);
    assert_eq!(scaled_to(&d), None, "{}", d.sentence());
    assert_eq!(bursts_of(&d).factor, 1.0);
    assert!(
        d.sentence().contains(
            "(p90 of rounds over their level 1.51, the headroom sized for 1.1; \
             at most maxFactor 1)"
        ),
        "{}",
        d.sentence()
    );
}

/// Issue 16: a restarted daemon measures the bursts from its first decision. The history
/// Prometheus kept (the value per replica each round: 1,050, every fifth 1.5x, for 200 rounds)
/// seeds the same ratios the live rounds would have counted, so the first round after it
/// decides what the 200th live round did; without it the factor is 1 and nothing moves.
#[test]
fn a_history_of_the_value_per_replica_measures_the_bursts_from_the_first_decision() {
    let mut live = Run::new(bursty_policy(), 4);
    let lived = run_bursts(&mut live, 0, 200, 1.5);
    assert_eq!(scaled_to(&lived), Some(6), "{}", lived.sentence());

    let first = first_decision_after_bursty_history(1_050.0);
    assert_eq!(scaled_to(&first), Some(6), "{}", first.sentence());
    assert_eq!(bursts_of(&first).measured, bursts_of(&lived).measured);

    let mut forgetful = Run::new(bursty_policy(), 4);
    let first = forgetful.tick(round(t(2_000)).ready_ops(&[1_050.0; 4]));
    assert_eq!((scaled_to(&first), bursts_of(&first).factor), (None, 1.0), "{}", first.sentence());
}

/// Rounds of a history well under the target (an idle night) are not counted, as live ones
/// are not: their ratios say nothing about the headroom at the target.
#[test]
fn a_history_under_half_the_target_counts_no_bursts() {
    let first = first_decision_after_bursty_history(300.0);
    // The live round's own ratio alone.
    assert_eq!(bursts_of(&first).rounds, 1, "{}", first.sentence());
}

/// The first decision (4 replicas at a steady 1,050) of a run seeded with 200 rounds of
/// history per replica at `level`, every fifth 1.5 times that.
fn first_decision_after_bursty_history(level: f64) -> ScalingDecision {
    let history: Vec<(Timestamp, f64)> =
        (0..200).map(|i| (t(i * 10), if i % 5 == 4 { level * 1.5 } else { level })).collect();
    let mut run = Run::new(bursty_policy(), 4);
    let scaling = run.policy.scaling.clone().expect("scaling");
    run.memory.scaling.seed(&scaling, crate::decide::Learnt::Bursts, 0, &history);
    run.tick(round(t(2_000)).ready_ops(&[1_050.0; 4]))
}

/// Until the window holds ten rounds beyond the quantile (100 for the 0.9), the factor is 1
/// and the policy decides as without bursts.
#[test]
fn bursts_change_nothing_until_enough_rounds_are_counted() {
    let mut run = Run::new(bursty_policy(), 4);
    let d = run_bursts(&mut run, 0, 60, 1.5);
    assert_eq!(scaled_to(&d), None, "{}", d.sentence());
    let bursts = bursts_of(&d);
    assert_eq!((bursts.measured, bursts.factor), (None, 1.0), "{bursts:?}");
    assert!(d.sentence().contains("too few for the p90"), "{}", d.sentence());
}

/// Lasting rises and falls (crowds coming and going) are not bursts: each round is measured
/// against the higher of the level before it and the level around it, so neither the first
/// rounds after a rise nor the last before a fall read as bursts. Measured against the level
/// before it alone, a load that doubles for 5 minutes in every 10 reads as bursts of 2x.
#[test]
fn lasting_rises_and_falls_are_not_counted_as_bursts() {
    let policy = scaling()
        .redis("instantaneous_ops_per_sec", 1000.0)
        .statistic(Statistic::Percentile(50), secs(120))
        .bursts(0.95, secs(3600), 1.1)
        .policy();
    let mut run = Run::new(policy, 4);
    let mut last = None;
    for i in 0..360 {
        // 5 minutes (30 rounds) at 1,050 per replica, 5 minutes at 2,100.
        let ops = if (i / 30) % 2 == 0 { 1_050.0 } else { 2_100.0 };
        last = Some(run.tick(round(t(i * 10)).ready_ops(&[ops; 4])));
    }
    let d = last.expect("decided");
    let bursts = bursts_of(&d);
    let measured = bursts.measured.expect("enough rounds");
    assert!(measured < 1.02, "{bursts:?}: {}", d.sentence());
}

/// The quantile kept up to date round by round is the one a sort of the rounds in the window
/// gives, to its bin (half a percent), as rounds come and go.
#[test]
fn the_burst_quantile_follows_the_rounds_in_its_window() {
    use super::bursts::BurstMemory;
    let config = crate::policy::Bursts {
        quantile: 0.95,
        window: secs(600),
        expect: 1.0,
        max_factor: f64::INFINITY,
        history: None,
    };
    let mut memory = BurstMemory::new(&config);
    let mut seed: u64 = 7;
    let mut held: Vec<(i64, f64)> = Vec::new();
    for i in 0..2_000i64 {
        seed = seed.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1_442_695_040_888_963_407);
        // Mostly 0.9 to 1.1, a burst up to 2.5 now and then; the mix changes over time.
        let unit = (seed >> 11) as f64 / (1u64 << 53) as f64;
        let value = if unit < 0.02 + 0.05 * ((i / 300) % 2) as f64 {
            1.0 + 1.5 * unit * 10.0
        } else {
            0.9 + 0.2 * unit
        };
        // A window of one round, at level 1: the round is measured at once, as `value`.
        memory.feed(&[(t(i), value)], 1.0, true, t(i));
        held.push((i, value));
        held.retain(|(at, _)| *at > i - 600);
        let Some(measured) = memory.reading().measured else { continue };
        let mut sorted: Vec<f64> = held.iter().map(|(_, v)| *v).collect();
        sorted.sort_by(f64::total_cmp);
        let rank = (0.95 * sorted.len() as f64).ceil() as usize;
        let exact = sorted[rank - 1];
        assert!(
            measured >= exact && measured <= exact * 1.0051,
            "round {i}: {measured} for {exact}"
        );
    }
}

/// Ratios older than the window are forgotten: memory is bounded by the window, not uptime.
#[test]
fn burst_memory_is_bounded_by_its_window() {
    let mut run = Run::new(bursty_policy(), 4);
    run_bursts(&mut run, 0, 1_000, 1.2);
    // An hour of rounds at 10 s.
    assert!(
        run.memory.scaling.burst_rounds_held() <= 360,
        "{}",
        run.memory.scaling.burst_rounds_held()
    );
}

/// A history read that matched nothing (an empty range result) leaves what the profile
/// learnt alone: the forecast that raised the count still does.
#[test]
fn an_empty_seasonal_history_erases_nothing() {
    let policy = scaling().redis("instantaneous_ops_per_sec", 1000.0).seasonal(&[24], 60).policy();
    let mut run = seasonal_run(policy, 1, &yesterday_ramped_at_two_pm(|_| 1_000.0));
    let scaling = run.policy.scaling.clone().expect("scaling");
    run.memory.scaling.seed(&scaling, crate::decide::Learnt::Seasonal, 0, &[]);
    let decision = run.tick(round(t(86_400 + 13 * 3600 + 55 * 60)).ready_ops(&[1_000.0]));
    assert_eq!(scaled_to(&decision), Some(5), "{}", decision.sentence());
}

/// The band sizes a scale-up for `sizeFor`: 4 replicas at 980 against a target of 1,000 are
/// past 95 %, and 3,920 at 90 % needs 4.4 -> 5. At 940 (94 %) nothing moves: the HPA's rule
/// would hold both, as both are within its 10 %.
#[test]
fn a_band_scales_up_past_its_edge_sized_for_its_headroom() {
    let policy = scaling().redis("instantaneous_ops_per_sec", 1000.0).band(0.95, 0.9, 0.85);
    let mut run = Run::new(policy.policy(), 4);
    let decision = run.tick(round(t(0)).ready_ops(&[940.0; 4]));
    assert_eq!(scaled_to(&decision), None, "{}", decision.sentence());
    let decision = run.tick(round(t(30)).ready_ops(&[980.0; 4]));
    assert_eq!(scaled_to(&decision), Some(5), "{}", decision.sentence());
    let sentence = decision.sentence();
    assert!(
        sentence.contains(
            "> 95 % of target 1,000 -> 5 (sized for 90 %: 980 x 4 ready / 900 = 4.4, rounded up)"
        ),
        "{sentence}"
    );
}

/// A scale-down lands where the smaller count carries the load at `scaleDownBelow` or less,
/// not at the target: 5 replicas at 700 (3,500) go to 5 (3,500 / 850 = 4.1 -> 5 holds), and
/// at 650 (3,250 / 850 = 3.8) to 4, which then runs at 81 %: a whole band below the next
/// scale-up. The HPA's rule would have gone to 4 at 700 already, at 87.5 %.
#[test]
fn a_band_scales_down_only_to_a_count_below_its_floor() {
    let policy = scaling().redis("instantaneous_ops_per_sec", 1000.0).band(0.95, 0.9, 0.85);
    let mut run = Run::new(policy.policy(), 5);
    let decision = run.tick(round(t(0)).ready_ops(&[700.0; 5]));
    assert_eq!(scaled_to(&decision), None, "{}", decision.sentence());
    let sentence = decision.sentence();
    assert!(
        sentence.contains("<= 95 % of target 1,000 -> 5 (fewer only at or below 85 %: 700 x 5 ready / 850 = 4.1, rounded up)"),
        "{sentence}"
    );
    let decision = run.tick(round(t(30)).ready_ops(&[650.0; 5]));
    assert_eq!(scaled_to(&decision), Some(4), "{}", decision.sentence());
    // And it stays there: 3,250 over 4 is 812.5, below the edge, and 3 would be past 85 %.
    assert_eq!(run.steady(60, 120, 812.5), vec![4; 7]);
}

/// With `rounds: 2`, one saturated round (a burst of a few seconds) is not a ceiling; two
/// in a row are, and the count steps by the factor.
#[test]
fn saturation_over_two_rounds_ignores_a_one_round_burst() {
    let policy = scaling()
        .redis("instantaneous_ops_per_sec", 1000.0)
        .statistic(Statistic::Min, secs(20))
        .saturation_over(1_050.0, 2.0, 2)
        .policy();
    let mut run = Run::new(policy, 3);
    run.tick(round(t(0)).ready_ops(&[900.0; 3]));
    let burst = run.tick(round(t(10)).ready_ops(&[1_060.0; 3]));
    assert_eq!(scaled_to(&burst), None, "{}", burst.sentence());
    run.tick(round(t(20)).ready_ops(&[900.0; 3]));
    let held = run.tick(round(t(30)).ready_ops(&[1_060.0; 3]));
    assert_eq!(scaled_to(&held), None, "{}", held.sentence());
    let ceiling = run.tick(round(t(40)).ready_ops(&[1_060.0; 3]));
    assert_eq!(scaled_to(&ceiling), Some(6), "{}", ceiling.sentence());
}

/// Round values remembered between evaluations decide exactly as values read afresh: two
/// runs over the same rounds (a counter turned into a rate, a fake reading, an instance
/// syncing, two rounds at one instant), one forgetting its memory before each evaluation,
/// give the same sentence every time; and the memory holds no more than the windows.
#[test]
fn remembered_round_values_decide_as_fresh_ones() {
    let policy = scaling()
        .max(30)
        .redis("instantaneous_ops_per_sec", 1000.0)
        .statistic(Statistic::Mean, secs(60))
        .metric(
            MetricSource::Redis {
                field: "total_commands_processed".into(),
                rate: true,
                plausible_max: Some(10_000.0),
            },
            Aggregate::Mean,
            2000.0,
        )
        .policy();
    let (mut remembering, mut forgetting) = (Run::new(policy.clone(), 3), Run::new(policy, 3));
    let mut commands = 0.0;
    for i in 0..40i64 {
        // Each instance's load and counter; a round repeats its instant at i = 20.
        let at = if i == 21 { t(200) } else { t(i * 10) };
        let ops = 900.0 + 40.0 * (i % 7) as f64;
        commands += ops * 10.0;
        let mut values = vec![ops; usize::from(remembering.replicas)];
        if i % 9 == 4 {
            values[0] = 5_000_000.0;
        }
        let round_of = |values: &[f64]| {
            let mut r = round(at).ready_ops(values);
            for (n, sample) in r.0.instances.iter_mut().enumerate() {
                let counter = if i % 13 == 6 && n == 1 { 1.0 } else { commands };
                sample.info.as_mut().expect("info").set_number("total_commands_processed", counter);
            }
            if i % 11 == 3 { r.syncing() } else { r }
        };
        forgetting.memory.scaling.forget_rounds();
        let kept = remembering.tick(round_of(&values));
        let fresh = forgetting.tick(round_of(&values));
        assert_eq!(kept.sentence(), fresh.sentence(), "round {i}");
    }
    // 60 s at 10 s: at most 7 rounds per metric (the window and the one at its edge).
    assert!(
        remembering.memory.scaling.rounds_held() <= 14,
        "{}",
        remembering.memory.scaling.rounds_held()
    );
}

/// A reloaded policy whose metric reads another field does not reuse the old field's values.
#[test]
fn a_reloaded_metric_reads_its_own_field_in_rounds_already_seen() {
    let ops =
        scaling().redis("instantaneous_ops_per_sec", 1000.0).statistic(Statistic::Mean, secs(60));
    let mut run = Run::new(ops.policy(), 2);
    let round_at = |s: i64| {
        let mut r = round(t(s)).ready_ops(&[500.0, 500.0]);
        for sample in &mut r.0.instances {
            sample.info.as_mut().expect("info").set_number("connected_clients", 3000.0);
        }
        r
    };
    for s in (0..50).step_by(10) {
        run.tick(round_at(s));
    }
    run.policy = scaling()
        .max(10)
        .redis("connected_clients", 1000.0)
        .statistic(Statistic::Mean, secs(60))
        .policy();
    let decision = run.tick(round_at(50));
    assert_eq!(decision.reason().readings[0].value, Ok(3000.0), "{}", decision.sentence());
}

/// Metrics on one field share its rounds, read over the longest of their windows: each reads
/// exactly what it reads alone, evaluation after evaluation.
#[test]
fn metrics_on_one_field_read_as_each_alone() {
    let ops = "instantaneous_ops_per_sec";
    let short = |b: super::fixture::ScalingBuilder| {
        b.redis(ops, 1000.0).statistic(Statistic::Percentile(50), secs(30))
    };
    let long = |b: super::fixture::ScalingBuilder| {
        b.redis(ops, 1000.0).statistic(Statistic::Tail { exceedance: 0.001 }, secs(120))
    };
    let mut both = Run::new(long(short(scaling().max(30))).policy(), 3);
    let mut alone = [
        Run::new(short(scaling().max(30)).policy(), 3),
        Run::new(long(scaling().max(30)).policy(), 3),
    ];
    for i in 0..40i64 {
        let values: Vec<f64> = (0..3).map(|n| 900.0 + 37.0 * ((i * 7 + n) % 5) as f64).collect();
        let read = |run: &mut Run| {
            let decision = run.tick(round(t(i * 10)).ready_ops(&values));
            // The same fleet for every run, whatever each decided.
            run.replicas = 3;
            decision.reason().readings.clone()
        };
        let together = read(&mut both);
        let separately: Vec<_> = alone.iter_mut().flat_map(read).collect();
        assert_eq!(together, separately, "round {i}");
    }
}

/// A replay's `Decider`, which compares the policy with its memory once and fills each
/// decision's readings and adjustments over the last one's, decides exactly as `decide` does
/// at every tick:
/// through ramps up and down, and a metric that goes missing (a reading that was a number
/// becomes a reason, and back).
#[test]
fn a_decider_decides_as_decide_does() {
    const QUERY: &str = "sum(rate(app_reads[1m]))";
    let policy = scaling()
        .redis("instantaneous_ops_per_sec", 1000.0)
        .statistic(Statistic::Percentile(95), secs(60))
        .metric(MetricSource::Prometheus { query: QUERY.into() }, Aggregate::Sum, 3000.0)
        .policy();
    let mut run = Run::new(policy.clone(), 2);
    let mut decider = super::Decider::new(&policy);
    let mut history = History::new(Duration::from_secs(3600), policy.sampling.interval);
    let (mut replicas, mut scales) = (2, 0);
    for s in (0..1800_i64).step_by(10) {
        // A rise to 6,500 ops/s and back, every 10 minutes.
        let load = 500.0 + 20.0 * (300 - (s % 600 - 300).abs()) as f64;
        let query =
            if (400..500).contains(&s) { Err("timeout".to_owned()) } else { Ok(vec![load]) };
        let n = usize::from(run.replicas);
        let make = || round(t(s)).ready_ops(&vec![load / n as f64; n]).query(QUERY, query.clone());
        let expected = run.tick(make());
        history.push(make().0);
        let decision = decider.decide(&history, Fleet { replicas }, t(s)).expect("decides");
        assert_eq!(decision, expected, "at {s} s");
        if let ScalingDecision::Scale { from, to, .. } = decision {
            decider.memory().scaling.record_scale(t(s), from, to);
            (replicas, scales) = (to, scales + 1);
        }
        decider.recycle(decision);
    }
    assert!(scales >= 4, "the run scaled {scales} times");
}
