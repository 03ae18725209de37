//! `redis-autopilot trace generate` end to end: the binary writes per-second synthetic traces
//! that `simulate` replays with a shipped policy, the same seed writes the same bytes, and
//! wrong settings are all reported at once.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use serde_json::Value;

fn binary(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_redis-autopilot"))
        .args(args)
        .output()
        .expect("the binary runs")
}

fn generate(args: &[&str]) -> Output {
    let output = binary(&[&["trace", "generate"][..], args].concat());
    assert!(output.status.success(), "generate failed: {}", stderr(&output));
    output
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

fn utf8(path: &Path) -> &str {
    path.to_str().expect("utf-8 path")
}

fn policy() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("policies/session-cache.yaml")
}

#[test]
fn two_days_per_second_of_every_kind_replay_through_simulate() {
    let dir = tempfile::tempdir().expect("temporary directory");
    for kind in ["diurnal", "flash-crowd", "slow-ramp"] {
        let trace = dir.path().join(format!("{kind}.csv"));
        let output = generate(&[kind, "--days", "2", "--seed", "3", "--out", utf8(&trace)]);
        let summary = String::from_utf8_lossy(&output.stdout);
        assert!(summary.contains("172,800 rows"), "{summary}");

        let text = std::fs::read_to_string(&trace).expect("trace written");
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 1 + 2 * 86_400, "{kind}: a header and one row per second");
        assert_eq!(lines[0], "time,ops_per_sec");
        assert!(lines[1].starts_with("2026-01-05T00:00:00Z,"), "{}", lines[1]);
        assert!(lines[2].starts_with("2026-01-05T00:00:01Z,"), "{}", lines[2]);

        let output = binary(&[
            "simulate",
            "--policy",
            utf8(&policy()),
            "--trace",
            utf8(&trace),
            "--capacity-per-replica",
            "50000",
            "--output",
            "json",
        ]);
        assert!(output.status.success(), "{kind}: simulate failed: {}", stderr(&output));
        let result: Value = serde_json::from_slice(&output.stdout).expect("JSON on stdout");
        for controller in ["policy", "hpa"] {
            // A weekday peak of 200,000 ops/s at a target of 35,000 per replica needs more
            // than the policy's two replicas at night: both controllers follow the day.
            let peak = result[controller]["peakReplicas"].as_u64().expect("a count");
            assert!(peak > 3, "{kind}/{controller}: {result}");
            let events = result[controller]["scaleEvents"].as_u64().expect("a count");
            assert!(events >= 2, "{kind}/{controller}: {result}");
            // Two days of at least two replicas.
            let cost = result[controller]["replicaMinutes"].as_f64().expect("a number");
            assert!(cost > 2.0 * 2.0 * 1440.0, "{kind}/{controller}: {result}");
        }
    }
}

#[test]
fn the_same_seed_writes_the_same_bytes_and_seconds_count_from_zero() {
    let dir = tempfile::tempdir().expect("temporary directory");
    let write = |name: &str, extra: &[&str]| {
        let path = dir.path().join(name);
        let args =
            [&["flash-crowd", "--days", "0.5", "--step", "10s", "--out", utf8(&path)], extra]
                .concat();
        generate(&args);
        std::fs::read_to_string(&path).expect("trace written")
    };
    let first = write("a.csv", &["--seed", "9"]);
    assert_eq!(first, write("b.csv", &["--seed", "9"]));
    assert_ne!(first, write("c.csv", &["--seed", "10"]));

    let seconds = write("d.csv", &["--seed", "9", "--times", "seconds"]);
    let times: Vec<&str> =
        seconds.lines().skip(1).take(3).map(|l| l.split(',').next().expect("a time")).collect();
    assert_eq!(times, ["0", "10", "20"]);
    // The same loads, only the times spelled differently.
    let loads = |text: &str| -> Vec<String> {
        text.lines().skip(1).map(|l| l.split(',').nth(1).expect("a load").to_owned()).collect()
    };
    assert_eq!(loads(&seconds), loads(&first));
    assert_eq!(loads(&first).len(), 4_320);
}

#[test]
fn without_out_the_csv_goes_to_stdout_and_the_summary_to_stderr() {
    let output = generate(&["slow-ramp", "--days", "0.01", "--start", "2026-03-02T09:00:00+01:00"]);
    let csv = String::from_utf8_lossy(&output.stdout);
    let mut lines = csv.lines();
    assert_eq!(lines.next(), Some("time,ops_per_sec"));
    assert!(lines.next().is_some_and(|l| l.starts_with("2026-03-02T08:00:00Z,")), "{csv}");
    assert!(stderr(&output).contains("slow-ramp trace, seed 1: 864 rows"), "{}", stderr(&output));
}

#[test]
fn every_wrong_setting_is_reported_at_once() {
    let output = binary(&[
        "trace",
        "generate",
        "diurnal",
        "--days",
        "0",
        "--peak",
        "-5",
        "--noise",
        "2",
        "--weekend",
        "0",
    ]);
    assert_eq!(output.status.code(), Some(2));
    let message = stderr(&output);
    for expected in [
        "days: must be > 0 and <= 366, got 0",
        "peak: must be > 0, got -5",
        "weekend: must be in (0, 2], got 0",
        "noise: must be in [0, 0.5], got 2",
    ] {
        assert!(message.contains(expected), "missing {expected:?} in {message}");
    }

    let output = binary(&["trace", "generate", "diurnal", "--step", "500ms"]);
    assert_eq!(output.status.code(), Some(2));
    assert!(stderr(&output).contains("not a whole number of seconds"), "{}", stderr(&output));
    let output = binary(&["trace", "generate", "sawtooth"]);
    assert_eq!(output.status.code(), Some(2));
    assert!(stderr(&output).contains("flash-crowd"), "{}", stderr(&output));
}
