//! `redis-autopilot simulate` end to end: the binary on tiny traces and an inline policy in a
//! temporary directory, every shipped scenario, and the errors a user meets first.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use serde_json::Value;

/// A policy that samples every 10 s and sizes on the mean ops/s per replica (target 80).
const POLICY: &str = "\
apiVersion: autopilot.redis.io/v1alpha1
kind: RedisPolicy
metadata:
  name: tiny
spec:
  target:
    endpoints: [\"127.0.0.1:6379\"]
  sampling:
    interval: 10s
    timeout: 2s
  scaling:
    minReplicas: 1
    maxReplicas: 4
    metrics:
      - redis: instantaneous_ops_per_sec
        aggregate: mean
        statistic: max
        window: 30s
        target: 80
    tolerance: 0.1
    warmup: 30s
";

/// Ten minutes at a steady 50 ops/s: one replica (capacity 100, target 80) is enough.
const STEADY: &str =
    "seconds,ops\n0,50\n60,50\n120,50\n180,50\n240,50\n300,50\n360,50\n420,50\n480,50\n540,50\n";

/// Two quiet minutes, then four minutes at 250 ops/s: more than one replica can serve.
const STEP: &str = "seconds,ops\n0,50\n60,50\n120,250\n180,250\n240,250\n300,250\n";

struct Workspace {
    dir: tempfile::TempDir,
}

impl Workspace {
    fn new() -> Self {
        Self { dir: tempfile::tempdir().expect("temporary directory") }
    }

    fn write(&self, name: &str, text: &str) -> PathBuf {
        let path = self.dir.path().join(name);
        std::fs::write(&path, text).expect("writable temporary directory");
        path
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }
}

fn simulate(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_redis-autopilot"))
        .arg("simulate")
        .args(args)
        .output()
        .expect("the binary runs")
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

fn json(output: &Output) -> Value {
    assert!(output.status.success(), "failed: {}", stderr(output));
    serde_json::from_slice(&output.stdout).expect("JSON on stdout")
}

fn keys(value: &Value) -> Vec<&str> {
    let mut keys: Vec<&str> =
        value.as_object().expect("an object").keys().map(String::as_str).collect();
    keys.sort_unstable();
    keys
}

#[test]
fn a_scenario_prints_exactly_the_four_numbers_per_controller() {
    let ws = Workspace::new();
    ws.write("policy.yaml", POLICY);
    ws.write("steady.csv", STEADY);
    let scenario = ws.write(
        "scenario.yaml",
        "policy: policy.yaml\ntrace: steady.csv\ncapacityPerReplica: 100\n",
    );
    let result = json(&simulate(&[scenario.to_str().expect("utf-8"), "--output", "json"]));
    // The two objects of the first release, and vsHpa added beside them.
    assert_eq!(keys(&result), ["hpa", "policy", "vsHpa"]);
    for controller in ["policy", "hpa"] {
        assert_eq!(
            keys(&result[controller]),
            ["peakReplicas", "replicaMinutes", "scaleEvents", "underProvisionedMinutes"]
        );
        // One replica for ten minutes, never short, never scaled.
        assert_eq!(result[controller]["underProvisionedMinutes"], 0.0);
        assert_eq!(result[controller]["replicaMinutes"], 10.0);
        assert_eq!(result[controller]["scaleEvents"], 0);
        assert_eq!(result[controller]["peakReplicas"], 1);
    }
    // Equal costs; no ratio where the HPA's figure is 0.
    assert_eq!(
        result["vsHpa"],
        serde_json::json!({"underProvisionedMinutes": null, "replicaMinutes": 1.0,
                           "scaleEvents": null})
    );
}

#[test]
fn vs_hpa_is_the_policy_over_the_hpa_in_the_json_and_the_table() {
    let ws = Workspace::new();
    ws.write("policy.yaml", POLICY);
    ws.write("step.csv", STEP);
    let scenario = ws.write(
        "scenario.yaml",
        "policy: policy.yaml\ntrace: step.csv\ncapacityPerReplica: 100\nwarmup: 1m\n",
    );
    let result = json(&simulate(&[scenario.to_str().expect("utf-8"), "--output", "json"]));
    for key in ["underProvisionedMinutes", "replicaMinutes", "scaleEvents"] {
        let (policy, hpa) = (&result["policy"][key], &result["hpa"][key]);
        let (policy, hpa) = (policy.as_f64().expect("a number"), hpa.as_f64().expect("a number"));
        assert!(hpa > 0.0, "the step trace makes the HPA scale and fall short: {result}");
        let ratio = result["vsHpa"][key].as_f64().expect("a ratio");
        assert!((ratio - policy / hpa).abs() < 1e-12, "{key}: {ratio} vs {policy}/{hpa}");
    }

    let output = simulate(&[scenario.to_str().expect("utf-8")]);
    let table = String::from_utf8_lossy(&output.stdout);
    let replica_minutes = result["vsHpa"]["replicaMinutes"].as_f64().expect("a ratio");
    let row = table.lines().find(|l| l.contains("replica-minutes  ")).expect("a row");
    assert!(row.ends_with(&format!("{replica_minutes:.2}x")), "{table}");
    assert!(table.contains("policy/HPA"), "{table}");
}

#[test]
fn flags_alone_describe_a_run_and_override_a_scenario() {
    let ws = Workspace::new();
    let policy = ws.write("policy.yaml", POLICY);
    let trace = ws.write("step.csv", STEP);
    let flags = simulate(&[
        "--policy",
        policy.to_str().expect("utf-8"),
        "--trace",
        trace.to_str().expect("utf-8"),
        "--capacity-per-replica",
        "100",
        "--output",
        "json",
    ]);
    let result = json(&flags);
    // 250 ops/s on one replica of 100: both controllers scale up, and both are short until
    // new replicas have warmed up.
    for controller in ["policy", "hpa"] {
        assert!(result[controller]["peakReplicas"].as_u64() > Some(1), "{result}");
        assert!(result[controller]["underProvisionedMinutes"].as_f64() > Some(0.0), "{result}");
    }

    // The same run from a scenario whose capacity is too small, fixed by the flag.
    let scenario = ws.write(
        "scenario.yaml",
        "policy: policy.yaml\ntrace: step.csv\ncapacityPerReplica: 1\ntraceScale: 1\n",
    );
    let overridden = json(&simulate(&[
        scenario.to_str().expect("utf-8"),
        "--capacity-per-replica",
        "100",
        "--output",
        "json",
    ]));
    assert_eq!(overridden, result);

    // Scaling the trace down to a fifth keeps one replica comfortably inside capacity.
    let scaled = json(&simulate(&[
        scenario.to_str().expect("utf-8"),
        "--capacity-per-replica",
        "100",
        "--trace-scale",
        "0.2",
        "--output",
        "json",
    ]));
    assert_eq!(scaled["hpa"]["underProvisionedMinutes"], 0.0);
}

#[test]
fn the_table_compares_side_by_side_and_the_plot_is_svg() {
    let ws = Workspace::new();
    ws.write("policy.yaml", POLICY);
    ws.write("step.csv", STEP);
    let scenario = ws.write(
        "scenario.yaml",
        "policy: policy.yaml\ntrace: step.csv\ncapacityPerReplica: 100\nwarmup: 1m\n",
    );
    let plot = ws.path("out.svg");
    let output =
        simulate(&[scenario.to_str().expect("utf-8"), "--plot", plot.to_str().expect("utf-8")]);
    assert!(output.status.success(), "failed: {}", stderr(&output));
    let table = String::from_utf8_lossy(&output.stdout);
    for expected in ["policy", "HPA", "under-provisioned minutes", "replica-minutes", "warm-up 1m"]
    {
        assert!(table.contains(expected), "missing {expected:?} in:\n{table}");
    }
    let svg = std::fs::read_to_string(&plot).expect("plot written");
    assert!(svg.starts_with("<svg"), "{}", &svg[..svg.len().min(200)]);
    assert!(svg.contains("demand"));
}

#[test]
fn every_shipped_scenario_runs() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("simulations");
    let mut scenarios: Vec<PathBuf> = std::fs::read_dir(&dir)
        .expect("simulations/ exists")
        .map(|entry| entry.expect("readable entry").path())
        .filter(|path| path.extension().is_some_and(|e| e == "yaml"))
        .collect();
    scenarios.sort();
    assert!(scenarios.len() >= 3, "expected a scenario per shipped policy: {scenarios:?}");
    for scenario in scenarios {
        let output = simulate(&[scenario.to_str().expect("utf-8"), "--output", "json"]);
        let result = json(&output);
        assert_eq!(keys(&result), ["hpa", "policy", "vsHpa"], "{}", scenario.display());
    }
}

#[test]
fn a_trace_going_back_in_time_names_its_line() {
    let ws = Workspace::new();
    ws.write("policy.yaml", POLICY);
    ws.write("bad.csv", "seconds,ops\n0,50\n60,50\n30,50\n");
    let scenario =
        ws.write("scenario.yaml", "policy: policy.yaml\ntrace: bad.csv\ncapacityPerReplica: 100\n");
    let output = simulate(&[scenario.to_str().expect("utf-8")]);
    assert_eq!(output.status.code(), Some(2));
    let message = stderr(&output);
    assert!(message.contains("bad.csv:4: time `30` is not after the previous row's"), "{message}");
}

#[test]
fn scenario_mistakes_name_file_line_and_field() {
    let ws = Workspace::new();
    let scenario = ws.write(
        "scenario.yaml",
        "policy: policy.yaml\ntrace: t.csv\ncapacityPerReplica: 100\ncapacityPerReplicas: 3\n",
    );
    let output = simulate(&[scenario.to_str().expect("utf-8")]);
    assert_eq!(output.status.code(), Some(2));
    let message = stderr(&output);
    assert!(
        message.contains(
            "scenario.yaml:4:1: capacityPerReplicas: unknown field `capacityPerReplicas`"
        ),
        "{message}"
    );

    let scenario =
        ws.write("zero.yaml", "policy: policy.yaml\ntrace: t.csv\ncapacityPerReplica: -5\n");
    let message = stderr(&simulate(&[scenario.to_str().expect("utf-8")]));
    assert!(message.contains("zero.yaml:3:21: capacityPerReplica: must be > 0"), "{message}");
}

#[test]
fn missing_inputs_and_bad_flags_are_explained() {
    let output = simulate(&["--policy", "p.yaml", "--trace", "t.csv"]);
    assert_eq!(output.status.code(), Some(2));
    assert!(stderr(&output).contains("--capacity-per-replica"), "{}", stderr(&output));

    let output = simulate(&["--capacity-per-replica", "0"]);
    assert_eq!(output.status.code(), Some(2));
    assert!(stderr(&output).contains("is not a number > 0"), "{}", stderr(&output));

    let output = simulate(&[
        "--policy",
        "p.yaml",
        "--trace",
        "/nonexistent/t.csv",
        "--capacity-per-replica",
        "5",
    ]);
    assert_eq!(output.status.code(), Some(2));
    let message = stderr(&output);
    assert!(message.contains("/nonexistent/t.csv: cannot read"), "{message}");
    // The cause once, though the error names it in its own text too.
    assert_eq!(message.matches("No such file or directory").count(), 1, "{message}");
}

#[test]
fn help_explains_the_scenario_and_the_numbers() {
    let output = simulate(&["--help"]);
    assert!(output.status.success());
    let help = String::from_utf8_lossy(&output.stdout);
    for expected in
        ["--capacity-per-replica", "capacityPerReplica", "underProvisionedMinutes", "HPA"]
    {
        assert!(help.contains(expected), "missing {expected:?} in:\n{help}");
    }
}
