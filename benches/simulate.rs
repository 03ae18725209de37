//! How fast `simulate` replays a long, fine-grained trace: one synthetic week at one row per
//! second (604,800 rows). Throughput is reported in rows (steps) per second; the target is
//! 3 M rows/s (a week in 0.2 s) for policy + HPA together, forecasts included.
//!
//! - `policy_and_hpa`: the realistic policy (sampling every 10 s, p95 over 2 m) and the HPA.
//! - `policy_with_forecast_and_hpa`: the same plus a 15 m linear forecast, which makes the
//!   decision core read 90 rounds per tick instead of 12.
//! - `policy_with_seasonal_and_hpa`: the realistic policy with a daily and weekly seasonal
//!   forecast and a saturation step, as `policies/session-cache.yaml` has them: the profile
//!   is fed and read at every tick.
//! - `session_cache_and_hpa`: `policies/session-cache.yaml` as shipped (capacity 50,000 ops/s
//!   per replica, for its 35,000 target).
//! - `<policy>_and_hpa`: each other policy in `policies/` as shipped, on the week scaled to the
//!   same load against its capacity (its first metric's target is 70 % of a replica, as for
//!   session-cache). `local_demo` samples every second, so every row is a tick: it is the
//!   one shipped policy at the edge of the target (see docs/simulation.md).
//! - `hpa_only`: the simulator's own cost (event loop, cluster model, HPA) without the core.
//!
//! `simulate` replays the policy and the HPA on one core each.

use std::hint::black_box;
use std::time::Duration;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use redis_autopilot::policy::{
    Aggregate, Behavior, Forecast, ForecastMethod, Health, Metric, MetricSource, Policy, Sampling,
    Saturation, Scaling, Seasonal, Statistic, Step, Target,
};
use redis_autopilot::sim::hpa::{HpaController, HpaSpec};
use redis_autopilot::sim::model::ClusterModel;
use redis_autopilot::sim::replay::replay;
use redis_autopilot::sim::trace::{Row, TimeKind, Trace};
use redis_autopilot::sim::{Settings, simulate};

const WEEK_SECONDS: i64 = 7 * 24 * 3600;
const CAPACITY_PER_REPLICA: f64 = 25_000.0;

/// A daily sinusoid between 10k and 110k ops/s, +-5 % noise, and a burst of +40 % lasting
/// 2 to 17 minutes roughly every 3 hours. Deterministic: a fixed linear congruential
/// generator stands in for randomness so every run replays the same week.
fn synthetic_week() -> Trace {
    let mut state: u64 = 0x2545_f491_4f6c_dd1d;
    let mut next_unit = move || {
        state =
            state.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1_442_695_040_888_963_407);
        (state >> 11) as f64 / (1u64 << 53) as f64
    };
    let mut burst_until = 0;
    let rows = (0..WEEK_SECONDS)
        .map(|second| {
            let day = second as f64 / 86_400.0;
            let daily = 60_000.0 - 50_000.0 * (std::f64::consts::TAU * day).cos();
            if second >= burst_until && next_unit() < 1.0 / 10_800.0 {
                burst_until = second + 120 + (next_unit() * 900.0) as i64;
            }
            let burst = if second < burst_until { 1.4 } else { 1.0 };
            let noise = 1.0 + 0.1 * (next_unit() - 0.5);
            Row { at: second * 1000, load: daily * burst * noise }
        })
        .collect();
    Trace::from_rows("synthetic week", TimeKind::Seconds, rows).expect("increasing times")
}

fn realistic_policy(forecast: Option<Forecast>) -> Policy {
    Policy {
        name: "bench".into(),
        target: Target::Endpoints(vec![redis_autopilot::model::Endpoint::loopback(6379)]),
        auth: None,
        tls: None,
        prometheus: None,
        sampling: Sampling { interval: Duration::from_secs(10), timeout: Duration::from_secs(2) },
        scaling: Some(Scaling {
            min_replicas: 2,
            max_replicas: 12,
            metrics: vec![Metric {
                source: MetricSource::Redis {
                    field: "instantaneous_ops_per_sec".into(),
                    rate: false,
                    plausible_max: Some(2_000_000.0),
                },
                aggregate: Aggregate::Mean,
                statistic: Statistic::Percentile(95),
                window: Duration::from_secs(120),
                target: 17_500.0,
                seasonal: None,
                saturation: None,
                bursts: None,
            }],
            tolerance: 0.1,
            band: None,
            scale_up: Behavior {
                stabilization: Duration::ZERO,
                max_step: Step::Pods(4),
                period: Duration::from_secs(15),
                cooldown: Duration::from_secs(30),
            },
            scale_down: Behavior {
                stabilization: Duration::from_secs(300),
                max_step: Step::Pods(1),
                period: Duration::from_secs(60),
                cooldown: Duration::from_secs(300),
            },
            schedule: vec![],
            forecast,
            warmup: Duration::from_secs(90),
        }),
        health: Health { down_after: Duration::from_secs(3), ..Health::default() },
        snapshots: None,
        alerts: vec![],
        paused: false,
    }
}

fn week_per_second(c: &mut Criterion) {
    let trace = synthetic_week();
    let plain = realistic_policy(None);
    let forecasting = realistic_policy(Some(Forecast {
        method: ForecastMethod::Linear,
        window: Duration::from_secs(900),
    }));
    let mut seasonal = realistic_policy(None);
    if let Some(metric) = seasonal.scaling.as_mut().and_then(|s| s.metrics.first_mut()) {
        metric.seasonal = Some(Seasonal {
            periods: vec![Duration::from_secs(86_400), Duration::from_secs(7 * 86_400)],
            horizon: Duration::from_secs(300),
            max_error: 0.25,
            min_rise: 1.0,
            scale_down_stabilization: Duration::from_secs(60),
            history: None,
        });
        metric.saturation = Some(Saturation { above: 23_750.0, factor: 2.0, rounds: 1 });
    }
    let settings = Settings {
        capacity_per_replica: CAPACITY_PER_REPLICA,
        warmup: Duration::from_secs(90),
        initial_replicas: 2,
    };
    let mut group = c.benchmark_group("week_per_second");
    group.throughput(Throughput::Elements(trace.rows().len() as u64));
    group.sample_size(10);
    group.bench_function("policy_and_hpa", |b| {
        b.iter(|| simulate(black_box(&plain), black_box(&trace), &settings).expect("simulates"))
    });
    group.bench_function("policy_with_forecast_and_hpa", |b| {
        b.iter(|| {
            simulate(black_box(&forecasting), black_box(&trace), &settings).expect("simulates")
        })
    });
    group.bench_function("policy_with_seasonal_and_hpa", |b| {
        b.iter(|| simulate(black_box(&seasonal), black_box(&trace), &settings).expect("simulates"))
    });
    // The recommended policy as shipped: sampling every 5 s, three metrics (the tail over
    // 10 minutes), the band, saturation over two rounds, capped bursts, the seasonal floor.
    let shipped = redis_autopilot::policy::load_policy_str(
        "session-cache.yaml",
        include_str!("../policies/session-cache.yaml"),
    )
    .expect("the shipped policy loads");
    let shipped_settings = Settings { capacity_per_replica: 50_000.0, ..settings };
    group.bench_function("session_cache_and_hpa", |b| {
        b.iter(|| {
            simulate(black_box(&shipped), black_box(&trace), &shipped_settings).expect("simulates")
        })
    });
    for (name, text) in [
        ("checkout_scheduled", include_str!("../policies/checkout-scheduled.yaml")),
        ("api_prometheus", include_str!("../policies/api-prometheus.yaml")),
        ("local_demo", include_str!("../policies/local-demo.yaml")),
    ] {
        let policy = redis_autopilot::policy::load_policy_str(name, text).expect("it loads");
        let target = policy.scaling.as_ref().expect("it scales").metrics[0].target;
        let capacity = target / 0.7;
        let mut scaled = trace.clone();
        scaled.scale(capacity / shipped_settings.capacity_per_replica);
        let settings = Settings { capacity_per_replica: capacity, ..settings };
        group.bench_function(format!("{name}_and_hpa"), |b| {
            b.iter(|| {
                simulate(black_box(&policy), black_box(&scaled), &settings).expect("simulates")
            })
        });
    }
    group.bench_function("hpa_only", |b| {
        b.iter(|| {
            let cluster = ClusterModel::new(2, CAPACITY_PER_REPLICA, 90_000, trace.start());
            let mut hpa = HpaController::new(HpaSpec {
                min_replicas: 2,
                max_replicas: 12,
                average_value: 17_500.0,
            });
            replay(black_box(&trace), cluster, &mut hpa)
        })
    });
    group.finish();
}

criterion_group!(benches, week_per_second);
criterion_main!(benches);
