//! A policy that passes `check` cannot crash or starve the daemon: every duration and every
//! size derived from them (history rounds, `10 x downAfter`) is bounded. The property test
//! writes policies with random durations in every duration field (valid spellings, wrong
//! units, huge numbers) and, for each one the loader accepts, builds what the daemon builds
//! and decides on it.

use std::time::Duration;

use proptest::prelude::*;
use redis_autopilot::decide::{Fleet, Memory, decide};
use redis_autopilot::observe::{History, Observation};
use redis_autopilot::policy::bounds::{MAX_HISTORY_ROUNDS, parse_duration};
use redis_autopilot::policy::load_policy_str;

const HEAD: &str = "apiVersion: autopilot.redis.io/v1alpha1\nkind: RedisPolicy\n\
                    metadata: {name: p}\nspec:\n  target: {kubernetes: {namespace: n, statefulSet: s}}\n";

/// The two policies of the issue: both passed `check`, one aborted the daemon on a 200 TB
/// allocation, the other panicked on a duration overflow.
#[test]
fn the_policies_that_crashed_the_daemon_are_refused() {
    let huge_history = format!(
        "{HEAD}  sampling: {{interval: 1ms, timeout: 500us}}\n  scaling:\n    minReplicas: 1\n    \
         maxReplicas: 3\n    metrics: [{{redis: connected_clients, target: 10, window: 36500d}}]\n"
    );
    let problems = load_policy_str("a.yaml", &huge_history).expect_err("refused");
    let shown: Vec<String> = problems.iter().map(ToString::to_string).collect();
    assert!(
        shown.iter().any(|p| p.contains("a.yaml:6:") && p.contains("spec.sampling.interval")),
        "{shown:#?}"
    );
    assert!(
        shown.iter().any(|p| p.contains("spec.scaling.metrics[0].window: must be at most 7days")),
        "{shown:#?}"
    );

    let overflow = format!("{HEAD}  health: {{downAfter: 50000000000000d}}\n");
    let problems = load_policy_str("b.yaml", &overflow).expect_err("refused");
    assert_eq!(problems.len(), 1, "{problems:?}");
    assert_eq!((problems[0].line, problems[0].path.as_str()), (6, "spec.health.downAfter"));
    assert!(problems[0].message.contains("number too large"), "{}", problems[0]);
}

/// A week of history at 1 s would be 604,800 rounds: refused, with what to do instead.
#[test]
fn history_rounds_are_bounded_with_advice() {
    let text = format!(
        "{HEAD}  sampling: {{interval: 1s, timeout: 500ms}}\n  scaling:\n    minReplicas: 1\n    \
         maxReplicas: 3\n    metrics: [{{redis: connected_clients, target: 10, window: 7d}}]\n"
    );
    let problems = load_policy_str("c.yaml", &text).expect_err("refused");
    assert_eq!(problems.len(), 1, "{problems:?}");
    assert!(problems[0].message.contains("604800 rounds"), "{}", problems[0]);
    assert!(problems[0].message.contains("sample every 30s or more"), "{}", problems[0]);
}

/// A duration as a policy author might write it: mostly plausible, sometimes absurd.
fn duration_text() -> impl Strategy<Value = String> {
    let number = prop_oneof![8 => 1_u64..120, 1 => 0_u64..100_000, 1 => any::<u64>()];
    let unit = prop_oneof![
        12 => prop::sample::select(vec!["ms", "s", "m", "h", "d"]),
        1 => prop::sample::select(vec!["M", "y", "w", "", " m", "us"]),
    ];
    prop_oneof![
        20 => (number, unit).prop_map(|(n, u)| format!("{n}{u}")),
        1 => (0_u64..100, 0_u64..100).prop_map(|(m, s)| format!("{m}m{s}s")),
        1 => prop::sample::select(vec!["1.5m", "5 minutes", "-1s", "", "P1D", "1e3s"])
            .prop_map(str::to_owned),
    ]
}

fn field(name: &'static str) -> impl Strategy<Value = String> {
    prop::option::weighted(0.3, duration_text())
        .prop_map(move |value| value.map_or(String::new(), |v| format!("{name}: '{v}', ")))
}

prop_compose! {
    fn policy_text()(
        sampling in (field("interval"), field("timeout")),
        metric in (field("window"), field("halfLife"), any::<bool>()),
        forecast in prop::option::weighted(0.3, duration_text()),
        behavior in (field("stabilization"), field("period"), field("cooldown")),
        warmup in field("warmup"),
        floor_for in prop::option::weighted(0.3, duration_text()),
        health in (field("downAfter"), field("replicaMaxLag"), field("probeInterval"), field("probeTimeout")),
    ) -> String {
        let statistic = if metric.2 || !metric.1.is_empty() { "statistic: ewma, " } else { "" };
        let forecast = forecast.map_or(String::new(), |w| format!("    forecast: {{window: '{w}'}}\n"));
        let floor = floor_for.map_or(String::new(), |f| {
            format!("    schedule: [{{cron: '0 0 8 * * *', minReplicas: 2, for: '{f}'}}]\n")
        });
        format!(
            "{HEAD}  sampling: {{{}{}}}\n  scaling:\n    minReplicas: 1\n    maxReplicas: 10\n    \
             metrics: [{{redis: connected_clients, target: 10, {statistic}{}{}}}]\n    {}\n    \
             scaleUp: {{{}{}{}}}\n{forecast}{floor}  health: {{{}{}{}{}}}\n",
            sampling.0, sampling.1, metric.0, metric.1,
            if warmup.is_empty() { String::new() } else { warmup.trim_end_matches(", ").to_owned() },
            behavior.0, behavior.1, behavior.2, health.0, health.1, health.2, health.3,
        )
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 1000, ..ProptestConfig::default() })]

    /// Whatever passes builds the daemon's history within the cap and decides without a
    /// panic; every duration the health core multiplies stays far from overflow.
    #[test]
    fn a_policy_that_passes_cannot_crash_the_daemon(text in policy_text()) {
        let Ok(policy) = load_policy_str("p.yaml", &text) else { return Ok(()) };
        let interval = policy.sampling.interval;
        prop_assert!(interval >= Duration::from_secs(1), "{text}");
        let history = History::new(policy.history_span(), interval);
        prop_assert!(
            history.capacity() as u64 <= MAX_HISTORY_ROUNDS + 2,
            "capacity {} for\n{text}", history.capacity()
        );
        let health = &policy.health;
        prop_assert!(health.down_after.checked_mul(10).is_some());
        prop_assert!(health.probe_interval >= Duration::from_millis(100), "{text}");
        for d in [health.down_after, health.replica_max_lag, health.probe_timeout] {
            prop_assert!(d <= Duration::from_secs(3600), "{text}");
        }

        let mut history = history;
        let mut memory = Memory::default();
        let start = chrono::DateTime::from_timestamp(1_800_000_000, 0).expect("a time");
        let step = chrono::Duration::from_std(interval).expect("a small interval");
        for round in 0..3 {
            let now = start + step * round;
            let _ = decide(&policy, &history, Fleet { replicas: 3 }, &mut memory, now);
            history.push(Observation { at: now, instances: vec![], queries: vec![] });
        }
    }

    /// Whatever `parse_duration` accepts is what its spelling says.
    #[test]
    fn accepted_durations_read_as_written(n in 0_u32..1_000_000, unit in prop::sample::select(vec![
        ("ms", 1_u64), ("s", 1_000), ("m", 60_000), ("h", 3_600_000), ("d", 86_400_000),
    ])) {
        let parsed = parse_duration(&format!("{n}{}", unit.0));
        prop_assert_eq!(parsed, Ok(Duration::from_millis(u64::from(n) * unit.1)));
    }
}

/// The generator reaches both sides: if nothing passed, the property tested nothing.
#[test]
fn the_generator_writes_policies_that_pass_and_fail() {
    use proptest::strategy::ValueTree;
    use proptest::test_runner::TestRunner;

    let mut runner = TestRunner::deterministic();
    let strategy = policy_text();
    let (mut passed, mut failed) = (0, 0);
    for _ in 0..1000 {
        let text = strategy.new_tree(&mut runner).expect("a value").current();
        match load_policy_str("p.yaml", &text) {
            Ok(_) => passed += 1,
            Err(_) => failed += 1,
        }
    }
    assert!(passed >= 20 && failed >= 20, "passed {passed}, failed {failed}");
}
