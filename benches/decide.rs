//! Cost of one evaluation of the decision core: a realistic policy (p95 over 2 m of the mean
//! ops/s, a PromQL total, a cron floor, a linear forecast over 15 m) against a full history of
//! 12 instances sampled every 10 s.

use std::hint::black_box;

use chrono::{TimeZone, Utc};
use criterion::{BatchSize, Criterion, criterion_group, criterion_main};
use redis_autopilot::decide::{Fleet, Memory, decide};
use redis_autopilot::observe::{
    History, Info, InstanceSample, Observation, Outcome, QueryResult, Role,
};
use redis_autopilot::policy::load_policy_str;

const POLICY: &str = r#"
apiVersion: autopilot.redis.io/v1alpha1
kind: RedisPolicy
metadata: {name: bench}
spec:
  target: {endpoints: ["127.0.0.1:6379"]}
  prometheus: {url: "http://prometheus.monitoring:9090"}
  sampling: {interval: 10s, timeout: 2s}
  scaling:
    minReplicas: 2
    maxReplicas: 24
    metrics:
      - redis: instantaneous_ops_per_sec
        aggregate: mean
        statistic: p95
        window: 2m
        target: 30000
      - prometheus: sum(rate(app_redis_requests_total[1m]))
        target: 30000
    scaleDown: {stabilization: 5m, maxStep: 1, period: 1m, cooldown: 2m}
    schedule:
      - {cron: "0 0 8 * * Mon-Fri", minReplicas: 4, for: 10h}
    forecast: {method: linear, window: 15m}
"#;

const QUERY: &str = "sum(rate(app_redis_requests_total[1m]))";

fn round(second: i64, instances: usize) -> Observation {
    let at =
        Utc.with_ymd_and_hms(2026, 11, 24, 12, 0, 0).unwrap() + chrono::Duration::seconds(second);
    let load = 300_000.0 + 50_000.0 * (second as f64 / 600.0).sin();
    Observation {
        at,
        instances: (0..instances)
            .map(|i| {
                let mut info = Info::new(if i == 0 { Role::Master } else { Role::Replica });
                info.master_link_up = (i > 0).then_some(true);
                info.set_number("instantaneous_ops_per_sec", load / instances as f64);
                InstanceSample { id: format!("redis-{i}"), outcome: Outcome::Ok, info: Some(info) }
            })
            .collect(),
        queries: vec![QueryResult { query: QUERY.into(), value: Ok(vec![load]) }],
    }
}

fn bench(c: &mut Criterion) {
    let policy = load_policy_str("bench.yaml", POLICY).expect("valid bench policy");
    let mut history = History::new(std::time::Duration::from_secs(900), policy.sampling.interval);
    let mut last = 0;
    for s in (0..=900).step_by(10) {
        history.push(round(s, 12));
        last = s;
    }
    let now = round(last, 0).at;
    // Each evaluation starts from the same memory: one decision per tick, as callers make them.
    let memory = Memory::default();
    c.bench_function("decide: one evaluation, 12 instances, 15 m history", |b| {
        b.iter_batched_ref(
            || memory.clone(),
            |memory| decide(black_box(&policy), &history, Fleet { replicas: 12 }, memory, now),
            BatchSize::SmallInput,
        )
    });
}

criterion_group!(benches, bench);
criterion_main!(benches);
