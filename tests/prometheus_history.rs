//! Issue 16: what metrics learn over time starts from what Prometheus kept, so a restart does
//! not forget. A real Prometheus holds the history, backfilled with `promtool`; `plan` reads it
//! exactly as the daemon does (`PolicySampler::metric_histories`, then `ScalingMemory::seed`),
//! and the daemon reads it in the background when the policy starts.
//!
//! - The seasonal forecast: two days of a load gauge per minute; yesterday the load jumped
//!   from 1,000 to 5,000 a few minutes after this time of day. A one-replica fleet must be
//!   raised to the five replicas yesterday's rise (x5) needs, and the reason must say so.
//! - Measured bursts: an hour of the load per replica every 10 s, every fifth round a burst of
//!   1.5x. The first decision must size the headroom for those bursts, which live rounds alone
//!   would take 17 minutes to measure.

mod support;

use std::fmt::Write as _;
use std::process::Command;

use std::time::Duration;

use serde_json::Value;
use support::policy_daemon;
use support::{Prometheus, Redis};

const BIN: &str = env!("CARGO_BIN_EXE_redis-autopilot");

/// A gauge's samples as OpenMetrics text, as `promtool` backfills it.
fn openmetrics(gauge: &str, samples: impl Iterator<Item = (i64, u32)>) -> String {
    let mut text = format!("# HELP {gauge} Ops/s.\n# TYPE {gauge} gauge\n");
    for (at, value) in samples {
        writeln!(text, "{gauge} {value} {at}").expect("write to a string");
    }
    text.push_str("# EOF\n");
    text
}

/// Minute samples of `app_load` from two days ago until `end_ago` seconds ago; the load is
/// 5,000 from `ramp_in` seconds from now minus a day, for an hour, and 1,000 otherwise.
fn history(now: i64, ramp_in: i64, end_ago: i64) -> String {
    let ramp = now + ramp_in - 86_400;
    let start = (now - 2 * 86_400) / 60 * 60;
    let minutes = (start..now - end_ago).step_by(60);
    openmetrics(
        "app_load",
        minutes.map(|at| (at, if (ramp..ramp + 3600).contains(&at) { 5_000 } else { 1_000 })),
    )
}

/// The policy: `maxclients` reads a steady 1,000 (today's load, which has matched yesterday's
/// at this time), and its seasonal history is `app_load` in `prometheus`.
fn policy(redis: &Redis, prometheus: &Prometheus) -> String {
    format!(
        "apiVersion: autopilot.redis.io/v1alpha1\nkind: RedisPolicy\nmetadata: {{name: cache}}\n\
         spec:\n  target: {{endpoints: ['{}']}}\n  prometheus: {{url: '{}'}}\n  scaling:\n    \
         minReplicas: 1\n    maxReplicas: 8\n    metrics:\n      - redis: maxclients\n        \
         target: 1000\n        seasonal:\n          periods: [1d]\n          history: \
         'sum(app_load)'\n    scaleUp: {{maxStep: 8}}\n",
        redis.addr(),
        prometheus.url()
    )
}

/// A Redis whose `maxclients` stands for today's steady 1,000, and a Prometheus whose history
/// has yesterday's ramp 3 minutes after this time of day (inside the 5 m horizon plus the 30 s
/// warm-up the forecast looks ahead). The last 10 minutes are left to the head block, as a
/// live Prometheus would have them, and are simply missing here.
fn yesterday_ramped() -> (Redis, Prometheus, i64) {
    let now = chrono::Utc::now().timestamp();
    let prometheus = Prometheus::with_history(&history(now, 3 * 60, 10 * 60));
    (Redis::start(&["--maxclients", "1000"]), prometheus, now)
}

/// A scale decision (as `plan --output json` and `/v1/decisions` print it) raised to 5 by the
/// seasonal floor, with the load seen one day ago at the minute the ramp came.
fn assert_raised_by_yesterdays_ramp(decision: &Value, now: i64) {
    assert_eq!(decision["kind"], "scale", "{decision:#}");
    assert_eq!(decision["to"], 5, "{decision:#}");
    let floor = decision["reason"]["adjustments"]
        .as_array()
        .and_then(|all| all.iter().find(|a| a["rule"] == "seasonalFloor"))
        .unwrap_or_else(|| panic!("no seasonal floor: {decision:#}"));
    assert_eq!(floor["forecast"]["seenLoad"], 5_000.0, "{floor:#}");
    assert_eq!(floor["forecast"]["load"], 5_000.0, "{floor:#}");
    assert_eq!(floor["forecast"]["trusted"], true, "{floor:#}");
    let ramp_minute = (now + 3 * 60 - 86_400) / 60 * 60 + 60;
    let seen_at = floor["forecast"]["seenAt"].as_str().expect("seenAt");
    let seen_at = chrono::DateTime::parse_from_rfc3339(seen_at).expect("RFC 3339").timestamp();
    assert!((ramp_minute - 60..=ramp_minute).contains(&seen_at), "{floor:#}");
}

/// `plan --output json` on `policy`: its first decision. Nothing may fail to be read.
fn plan_first_decision(policy: &str) -> Value {
    let dir = tempfile::tempdir().expect("temp dir");
    let policy_file = dir.path().join("policy.yaml");
    std::fs::write(&policy_file, policy).expect("write the policy");
    let output = Command::new(BIN)
        .args(["plan", "--output", "json", "--policy"])
        .arg(&policy_file)
        .output()
        .expect("run plan");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!stderr.contains("cannot read"), "{stderr}");
    let document: Value = serde_json::from_str(&stdout)
        .unwrap_or_else(|e| panic!("plan printed no JSON ({e}):\n{stdout}\n{stderr}"));
    document["decisions"][0].clone()
}

/// The daemon on `policy`: the first decision `wanted` finds within a minute, and its log. It
/// reads the history in the background when the policy starts; its decisions after that are
/// advice (an `endpoints` target is observed).
fn daemon_decision(policy: &str, what: &str, wanted: fn(&Value) -> bool) -> (Value, String) {
    let mut daemon = policy_daemon::Daemon::spawn(&[("cache.yaml", policy)]);
    let decision = daemon.wait_until(Duration::from_secs(60), what, |d| {
        let (status, body) = d.try_get("/v1/decisions?policy=cache&limit=50")?;
        let decisions: Vec<Value> = serde_json::from_str(&body).ok().filter(|_| status == 200)?;
        decisions.into_iter().map(|record| record["decision"].clone()).find(wanted)
    });
    (decision, daemon.log())
}

#[test]
fn plan_forecasts_yesterdays_ramp_from_a_backfilled_prometheus() {
    let (redis, prometheus, now) = yesterday_ramped();
    let decision = plan_first_decision(&policy(&redis, &prometheus));
    assert_raised_by_yesterdays_ramp(&decision, now);
}

#[test]
fn the_daemon_forecasts_yesterdays_ramp_from_a_backfilled_prometheus() {
    let (redis, prometheus, now) = yesterday_ramped();
    let (decision, log) = daemon_decision(&policy(&redis, &prometheus), "a seasonal floor", |d| {
        d["reason"]["adjustments"]
            .as_array()
            .is_some_and(|all| all.iter().any(|a| a["rule"] == "seasonalFloor"))
    });
    assert_raised_by_yesterdays_ramp(&decision, now);
    assert!(log.contains("seasonal forecast: history read from Prometheus"), "{log}");
}

/// Rounds every 10 s of `app_ops_per_replica` from 70 until 10 minutes ago: 1,050, and every
/// fifth round 1.5 times that.
fn bursty_hour(now: i64) -> String {
    let start = (now - 70 * 60) / 10 * 10;
    let rounds = (start..now - 10 * 60).step_by(10).enumerate();
    openmetrics(
        "app_ops_per_replica",
        rounds.map(|(i, at)| (at, if i % 5 == 4 { 1_575 } else { 1_050 })),
    )
}

/// One replica whose `maxclients` stands for a steady 1,050 ops/s against a target of 1,000
/// (within the tolerance), with its bursts measured over an hour from `app_ops_per_replica`.
fn bursty_policy(redis: &Redis, prometheus: &Prometheus) -> String {
    format!(
        "apiVersion: autopilot.redis.io/v1alpha1\nkind: RedisPolicy\nmetadata: {{name: cache}}\n\
         spec:\n  target: {{endpoints: ['{}']}}\n  prometheus: {{url: '{}'}}\n  sampling: \
         {{interval: 10s}}\n  scaling:\n    minReplicas: 1\n    maxReplicas: 8\n    metrics:\n      \
         - redis: maxclients\n        statistic: p50\n        window: 2m\n        target: 1000\n        \
         bursts: {{quantile: 0.9, window: 1h, expect: 1.1, history: \
         'avg(app_ops_per_replica)'}}\n",
        redis.addr(),
        prometheus.url()
    )
}

fn bursty_past() -> (Redis, Prometheus) {
    let prometheus = Prometheus::with_history(&bursty_hour(chrono::Utc::now().timestamp()));
    (Redis::start(&["--maxclients", "1050"]), prometheus)
}

/// A decision whose headroom was sized for the history's bursts: the 0.9 quantile of the
/// rounds over their level is a burst (1.5), so 1,050 x 1.5 / 1.1 = 1,432 asks for 2 replicas.
fn assert_sized_for_the_past_bursts(decision: &Value) {
    let bursts = &decision["reason"]["readings"][0]["bursts"];
    let measured = bursts["measured"].as_f64().unwrap_or_else(|| panic!("{decision:#}"));
    assert!((1.49..1.52).contains(&measured), "{decision:#}");
    assert!(bursts["rounds"].as_u64().is_some_and(|r| r >= 200), "{decision:#}");
    assert_eq!(decision["to"], 2, "{decision:#}");
}

#[test]
fn plan_measures_the_bursts_prometheus_kept() {
    let (redis, prometheus) = bursty_past();
    assert_sized_for_the_past_bursts(&plan_first_decision(&bursty_policy(&redis, &prometheus)));
}

#[test]
fn the_daemon_measures_the_bursts_prometheus_kept() {
    let (redis, prometheus) = bursty_past();
    let (decision, log) =
        daemon_decision(&bursty_policy(&redis, &prometheus), "measured bursts", |d| {
            d["reason"]["readings"][0]["bursts"]["measured"].is_number()
        });
    assert_sized_for_the_past_bursts(&decision);
    assert!(log.contains("measured bursts: history read from Prometheus"), "{log}");
}
