//! Every JSON document the tool prints names its keys one way: camelCase, as the policy files
//! and Kubernetes objects do (`roundsWanted`, `dryRun`, `rawBytes`). Each command that prints
//! JSON is run here as a user runs it, against real redis-servers, and every key anywhere in
//! its document is checked, so a new snake_case field fails wherever it appears.

mod support;

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use serde_json::Value;
use support::Redis;
use support::daemon::{Daemon, Options, POLICY};
use support::failover::Fleet;

const BIN: &str = env!("CARGO_BIN_EXE_redis-autopilot");

/// `camelCase`: a lowercase ASCII letter, then ASCII letters and digits only.
fn camel_case(key: &str) -> bool {
    let mut chars = key.chars();
    chars.next().is_some_and(|c| c.is_ascii_lowercase()) && chars.all(|c| c.is_ascii_alphanumeric())
}

/// Every key of every object in `value`, at any depth, that is not camelCase, with its path.
fn keys_not_camel_case(value: &Value, path: &str, found: &mut Vec<String>) {
    match value {
        Value::Object(map) => {
            for (key, value) in map {
                let at = format!("{path}.{key}");
                if !camel_case(key) && !found.contains(&at) {
                    found.push(at.clone());
                }
                keys_not_camel_case(value, &at, found);
            }
        }
        Value::Array(items) => {
            for item in items {
                keys_not_camel_case(item, &format!("{path}[]"), found);
            }
        }
        _ => {}
    }
}

/// Parses `text` as JSON and fails on any key that is not camelCase; returns the document.
fn assert_camel_case(what: &str, text: &str) -> Value {
    let document: Value =
        serde_json::from_str(text).unwrap_or_else(|e| panic!("{what}: not JSON ({e}):\n{text}"));
    let mut found = Vec::new();
    keys_not_camel_case(&document, "$", &mut found);
    assert!(found.is_empty(), "{what}: keys not in camelCase: {found:?}\n{text}");
    document
}

/// Runs the binary; its stdout, after checking it exited with one of `codes`.
fn run(args: &[&str], policy: Option<&Path>, codes: &[i32]) -> String {
    let mut command = Command::new(BIN);
    command.args(args);
    if let Some(policy) = policy {
        command.arg("--policy").arg(policy);
    }
    let output = command.output().expect("run redis-autopilot");
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    let code = output.status.code().unwrap_or(-1);
    assert!(
        codes.contains(&code),
        "{args:?} exited {code}:\n{stdout}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    stdout
}

#[test]
fn the_checker_finds_a_snake_case_key_at_any_depth() {
    let mut found = Vec::new();
    let document = serde_json::json!({"ok": [{"fineKey": 1, "deep": {"dry_run": true}}]});
    keys_not_camel_case(&document, "$", &mut found);
    assert_eq!(found, ["$.ok[].deep.dry_run"]);
    assert!(!camel_case("RawBytes") && !camel_case("raw-bytes") && camel_case("crc64"));
}

fn write_policy(dir: &Path, text: &str) -> std::path::PathBuf {
    let path = dir.join("policy.yaml");
    std::fs::write(&path, text).expect("write the policy");
    path
}

#[test]
fn simulate_json_is_camel_case() {
    let scenario = Path::new(env!("CARGO_MANIFEST_DIR")).join("simulations/session-cache.yaml");
    let out = run(&["simulate", scenario.to_str().expect("utf-8"), "--output", "json"], None, &[0]);
    let document = assert_camel_case("simulate", &out);
    assert!(document["policy"]["peakReplicas"].is_u64(), "{out}");
}

#[test]
fn plan_json_is_camel_case() {
    let redis = Redis::master();
    let dir = tempfile::tempdir().expect("temp dir");
    let policy = write_policy(
        dir.path(),
        &format!(
            "apiVersion: autopilot.redis.io/v1alpha1\nkind: RedisPolicy\nmetadata: {{name: plan}}\n\
             spec:\n  target: {{endpoints: ['{}']}}\n  scaling:\n    minReplicas: 1\n    \
             maxReplicas: 4\n    metrics:\n      - redis: instantaneous_ops_per_sec\n        \
             target: 1000\n",
            redis.addr()
        ),
    );
    let out = run(&["plan", "--output", "json"], Some(&policy), &[0, 2]);
    let document = assert_camel_case("plan", &out);
    assert!(document["instances"][0]["usedMemory"].is_u64(), "{out}");
    assert!(document["decisions"][0]["reason"]["readings"].is_array(), "{out}");
}

/// Issue 17: `failover --output json` printed `dry_run` beside plan's `roundsWanted`.
#[test]
fn failover_json_is_camel_case() {
    let fleet = Fleet::start("    downAfter: 3s\n");
    let out = run(
        &["failover", "--dry-run", "--graceful", "--output", "json"],
        Some(&fleet.policy),
        &[0],
    );
    let document = assert_camel_case("failover", &out);
    assert_eq!(document["dryRun"], true, "{out}");
}

#[test]
fn snapshot_now_and_list_json_are_camel_case() {
    let (master, replicas) = support::replicated(1);
    let dir = tempfile::tempdir().expect("temp dir");
    let policy = write_policy(
        dir.path(),
        &format!(
            "apiVersion: autopilot.redis.io/v1alpha1\nkind: RedisPolicy\nmetadata: {{name: cache}}\n\
             spec:\n  target: {{endpoints: ['{}', '{}']}}\n  snapshots:\n    schedule: '0 0 3 * * *'\n    \
             destination: 'file://{}'\n",
            master.addr(),
            replicas[0].addr(),
            dir.path().join("backups").display()
        ),
    );
    let taken = run(&["snapshot", "now", "--output", "json"], Some(&policy), &[0]);
    let taken = assert_camel_case("snapshot now", &taken);
    assert!(taken[0]["rawBytes"].is_u64(), "{taken}");
    let listed = run(&["snapshot", "list", "--output", "json"], Some(&policy), &[0]);
    let listed = assert_camel_case("snapshot list", &listed);
    assert_eq!(listed[0]["id"], taken[0]["id"]);
}

#[test]
fn decisions_json_is_camel_case() {
    let daemon = Daemon::start(Options::default());
    let body =
        daemon.wait_for_200(&format!("/v1/decisions?policy={POLICY}"), Duration::from_secs(20));
    let document = assert_camel_case("/v1/decisions", &body);
    assert!(document.as_array().is_some_and(|records| !records.is_empty()), "{body}");
}

/// `/v1/decisions` holds every kind of decision with every kind of reason and outcome, most of
/// which a short daemon run never makes (a master that restarted empty, a blocked failover):
/// each shape is serialized here. The `match`es list every variant without a wildcard, so a
/// new variant does not compile until it is added to the documents checked.
#[test]
fn every_shape_of_decision_record_is_camel_case() {
    use redis_autopilot::act::ActionOutcome;
    use redis_autopilot::daemon::status::DecisionRecord;
    use redis_autopilot::decide::health::{
        Blocked, Candidate, Choice, Detection, DownRule, Evidence,
    };
    use redis_autopilot::decide::{
        Adjustment, BurstReading, HealthDecision, HealthReason, Reading, ScalingDecision,
        ScalingReason, SeasonalForecast, SeasonalReading,
    };
    use redis_autopilot::model::Advertised;
    use redis_autopilot::policy::Bootstrap;

    let evidences = vec![
        Evidence::Gone("pod deleted".into()),
        Evidence::Refused,
        Evidence::NoAnswer("timed out".into()),
        Evidence::NotMaster,
        Evidence::Restarted { role: "master".into(), keys: 0, most_elsewhere: 10 },
    ];
    for evidence in &evidences {
        match evidence {
            Evidence::Gone(_)
            | Evidence::Refused
            | Evidence::NoAnswer(_)
            | Evidence::NotMaster
            | Evidence::Restarted { .. } => {}
        }
    }
    let candidate = |instance: &str| Candidate {
        instance: instance.into(),
        ordinal: 1,
        priority: 100,
        offset: 42,
        run_id: Some("476d73fda34415412a3f50b6029dfedb1fab1f59".into()),
    };
    let choice = Choice {
        chosen: candidate("redis-1"),
        outranked: vec![candidate("redis-2")],
        excluded: vec![("redis-3".into(), "link down".into())],
    };
    let detection = |evidence: Evidence| Detection {
        master: "redis-0".into(),
        evidence,
        rule: DownRule::Timeout,
        failing_ms: 3000,
        down_after_ms: 3000,
        replicas_reachable: 2,
        replicas_link_down: 2,
    };
    let blocked = vec![
        Blocked::Manual,
        Blocked::Off,
        Blocked::RateLimited { failovers: 3, max: 3 },
        Blocked::NoCandidate { excluded: vec![("redis-1".into(), "lagging".into())] },
        Blocked::ObserveOnly,
    ];
    for b in &blocked {
        match b {
            Blocked::Manual
            | Blocked::Off
            | Blocked::RateLimited { .. }
            | Blocked::NoCandidate { .. }
            | Blocked::ObserveOnly => {}
        }
    }
    let mut reasons = vec![
        HealthReason::Bootstrap { choice: choice.clone() },
        HealthReason::Seed { from: Bootstrap::Latest, choice: choice.clone() },
        HealthReason::Seed {
            from: Bootstrap::Snapshot("20261124T023000.000Z-redis-0".into()),
            choice: choice.clone(),
        },
        HealthReason::Adopt { offset: 7 },
        HealthReason::Unfinished { offset: 7 },
        HealthReason::ClaimsMaster { master: "redis-0".into() },
        HealthReason::FollowsOther { following: "10.0.0.9:6379".into(), master: "redis-0".into() },
        HealthReason::Role { role: Advertised::Lagging, detail: "lag 2 MiB".into() },
        HealthReason::Requested { choice: choice.clone(), graceful: true },
    ];
    for evidence in &evidences {
        reasons.push(HealthReason::Down {
            detection: detection(evidence.clone()),
            choice: choice.clone(),
        });
        reasons.push(HealthReason::Detach { master: "redis-0".into(), evidence: evidence.clone() });
        for b in &blocked {
            reasons.push(HealthReason::DownBlocked {
                detection: detection(evidence.clone()),
                blocked: b.clone(),
            });
        }
    }
    let mut decisions: Vec<HealthDecision> = Vec::new();
    for reason in reasons {
        match &reason {
            HealthReason::Bootstrap { .. }
            | HealthReason::Seed { .. }
            | HealthReason::Adopt { .. }
            | HealthReason::Down { .. }
            | HealthReason::DownBlocked { .. }
            | HealthReason::Unfinished { .. }
            | HealthReason::ClaimsMaster { .. }
            | HealthReason::FollowsOther { .. }
            | HealthReason::Role { .. }
            | HealthReason::Requested { .. }
            | HealthReason::Detach { .. } => {}
        }
        let (i, m) = (String::from("redis-1"), String::from("redis-0"));
        decisions.extend([
            HealthDecision::Failover {
                from: Some(m.clone()),
                to: i.clone(),
                epoch: 2,
                reason: reason.clone(),
            },
            HealthDecision::Seed {
                instance: i.clone(),
                from: Bootstrap::Latest,
                reason: reason.clone(),
            },
            HealthDecision::Promote { instance: i.clone(), epoch: 2, reason: reason.clone() },
            HealthDecision::MasterDown { master: m.clone(), reason: reason.clone() },
            HealthDecision::Fence {
                instance: i.clone(),
                master: m.clone(),
                reason: reason.clone(),
            },
            HealthDecision::Repoint {
                instance: i.clone(),
                master: m.clone(),
                reason: reason.clone(),
            },
            HealthDecision::Detach {
                instance: i.clone(),
                master: m.clone(),
                reason: reason.clone(),
            },
            HealthDecision::Advertise { instance: i, role: Advertised::Master, reason },
        ]);
    }
    for decision in &decisions {
        match decision {
            HealthDecision::Failover { .. }
            | HealthDecision::Seed { .. }
            | HealthDecision::Promote { .. }
            | HealthDecision::MasterDown { .. }
            | HealthDecision::Fence { .. }
            | HealthDecision::Repoint { .. }
            | HealthDecision::Detach { .. }
            | HealthDecision::Advertise { .. } => {}
        }
    }
    let minute = |at: &str| chrono::DateTime::parse_from_rfc3339(at).expect("time").to_utc();
    let forecast = SeasonalForecast {
        period: Duration::from_secs(86_400),
        seen_from: minute("2026-11-23T13:55:00Z"),
        seen_from_load: 150_000.0,
        seen_at: minute("2026-11-23T14:00:00Z"),
        seen_load: 212_000.0,
        now_load: 160_000.0,
        load: 226_133.0,
        error: 0.06,
        trusted: true,
    };
    let adjustments = vec![
        Adjustment::MissingNoScaleDown { to: 3 },
        Adjustment::UnreadyNoScaleDown { unready: 1, to: 3 },
        Adjustment::ImplausibleNoScaleDown { instances: 1, to: 3 },
        Adjustment::MinReplicas { min: 2, to: 3 },
        Adjustment::MaxReplicas { max: 8, to: 3 },
        Adjustment::CronFloor { cron: "0 0 8 * * *".into(), min: 3, to: 3 },
        Adjustment::Alert { alert: "RedisHot".into(), min: 3, to: 3 },
        Adjustment::SeasonalFloor {
            metric: "p95 of mean instantaneous_ops_per_sec over 2m".into(),
            forecast: forecast.clone(),
            min: 3,
            to: 3,
        },
        Adjustment::ForecastAgrees {
            window: Duration::from_secs(60),
            instead_of: Duration::from_secs(300),
            floor: 2,
        },
    ];
    let reading = |value: Result<f64, String>| Reading {
        metric: "p95 of mean instantaneous_ops_per_sec over 2m".into(),
        value,
        forecast: Some(1.0),
        per_replica: Some(1.0),
        target: 1000.0,
        tolerance: 0.1,
        band: None,
        desired: Some(3),
        saturated: true,
        seasonal: Some(SeasonalReading { forecast: forecast.clone(), replicas: 7 }),
        bursts: Some(BurstReading {
            quantile: 0.99,
            measured: Some(1.12),
            expect: 1.2,
            factor: 0.93,
            rounds: 8_640,
        }),
        outliers: Vec::new(),
    };
    let scaling = ScalingReason {
        current: 2,
        ready: 2,
        readings: vec![reading(Ok(2500.0)), reading(Err("no data".into()))],
        proposed: 3,
        adjustments,
        result: 3,
    };
    let outcomes = vec![
        None,
        Some(ActionOutcome::Applied),
        Some(ActionOutcome::DryRun),
        Some(ActionOutcome::Paused),
        Some(ActionOutcome::RateLimited),
        Some(ActionOutcome::Dropped),
        Some(ActionOutcome::Deferred { why: "snapshot first".into() }),
        Some(ActionOutcome::Advice { why: "endpoints cannot scale".into() }),
        Some(ActionOutcome::Failed { error: "forbidden".into() }),
    ];
    for outcome in outcomes.iter().flatten() {
        match outcome {
            ActionOutcome::Applied
            | ActionOutcome::DryRun
            | ActionOutcome::Paused
            | ActionOutcome::RateLimited
            | ActionOutcome::Dropped
            | ActionOutcome::Deferred { .. }
            | ActionOutcome::Advice { .. }
            | ActionOutcome::Failed { .. } => {}
        }
    }
    let at = chrono::DateTime::parse_from_rfc3339("2026-11-24T00:00:00Z").expect("time").to_utc();
    let mut records: Vec<DecisionRecord> = Vec::new();
    for outcome in &outcomes {
        records.push(DecisionRecord::new(
            at,
            "cache",
            ScalingDecision::Scale { from: 2, to: 3, reason: scaling.clone() },
            outcome.clone(),
        ));
        records.push(DecisionRecord::new(
            at,
            "cache",
            ScalingDecision::Hold { replicas: 2, reason: scaling.clone() },
            outcome.clone(),
        ));
    }
    records.extend(decisions.into_iter().map(|d| DecisionRecord::new(at, "cache", d, None)));
    let text = serde_json::to_string(&records).expect("records serialize");
    assert_camel_case("decision records", &text);
}
