//! `redis-autopilot tune` end to end: the binary on a small trace and an inline policy in a
//! temporary directory; the frontier and the HPA's point, the validation slice, a written
//! policy that `check` passes, the plot, and the errors a user meets first.

use std::path::PathBuf;
use std::process::{Command, Output};

use serde_json::Value;

/// Samples every 10 s, sizes on the p95 of the mean ops/s per replica (target 80). The
/// comments and the health section must survive `--write`.
const POLICY: &str = "\
# A small cache: this comment stays in the tuned file.
apiVersion: autopilot.redis.io/v1alpha1
kind: RedisPolicy
metadata:
  name: tiny
spec:
  target:
    endpoints: [\"127.0.0.1:6379\"]   # the one instance
  sampling:
    interval: 10s
    timeout: 2s
  scaling:
    minReplicas: 1
    maxReplicas: 8
    metrics:
      - redis: instantaneous_ops_per_sec
        statistic: p95
        window: 1m
        target: 80
    warmup: 30s
    scaleDown:
      stabilization: 5m
  health:
    downAfter: 3s   # kept as written
";

const NO_SCALING: &str = "\
apiVersion: autopilot.redis.io/v1alpha1
kind: RedisPolicy
metadata:
  name: watch-only
spec:
  target:
    endpoints: [\"127.0.0.1:6379\"]
";

/// Three hours, one row a minute: a daily-like swell from 50 to 450 ops/s and back, twice,
/// with a spike, so scaling choices matter on both slices.
fn trace() -> String {
    let mut text = String::from("seconds,ops\n");
    for minute in 0..180u32 {
        let phase = f64::from(minute % 90) / 90.0 * std::f64::consts::TAU;
        let mut load = 250.0 - 200.0 * phase.cos();
        if minute % 37 == 5 {
            load *= 1.6;
        }
        text.push_str(&format!("{},{load:.1}\n", minute * 60));
    }
    text
}

struct Workspace {
    dir: tempfile::TempDir,
}

impl Workspace {
    fn new() -> Self {
        let ws = Self { dir: tempfile::tempdir().expect("temporary directory") };
        ws.write("policy.yaml", POLICY);
        ws.write("load.csv", &trace());
        ws
    }

    fn write(&self, name: &str, text: &str) -> PathBuf {
        let path = self.path(name);
        std::fs::write(&path, text).expect("writable temporary directory");
        path
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    fn arg(&self, name: &str) -> String {
        self.path(name).display().to_string()
    }

    /// `tune` on the workspace's policy and trace with 24 candidates, and `extra`.
    fn tune(&self, extra: &[&str]) -> Output {
        let (policy, trace) = (self.arg("policy.yaml"), self.arg("load.csv"));
        let base = [
            "tune",
            "--policy",
            &policy,
            "--trace",
            &trace,
            "--capacity-per-replica",
            "100",
            "--candidates",
            "24",
        ];
        run(&base.iter().copied().chain(extra.iter().copied()).collect::<Vec<_>>())
    }
}

fn run(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_redis-autopilot"))
        .args(args)
        .output()
        .expect("the binary runs")
}

fn stdout(output: &Output) -> String {
    assert!(output.status.success(), "failed: {}", String::from_utf8_lossy(&output.stderr));
    String::from_utf8_lossy(&output.stdout).into_owned()
}

fn stderr(output: &Output) -> String {
    assert!(!output.status.success(), "succeeded: {}", String::from_utf8_lossy(&output.stdout));
    String::from_utf8_lossy(&output.stderr).into_owned()
}

#[test]
fn the_table_shows_the_frontier_with_the_hpa_and_both_slices() {
    let ws = Workspace::new();
    let text = stdout(&ws.tune(&[]));
    assert!(text.contains("Pareto frontier on the training slice"), "{text}");
    assert!(text.lines().any(|l| l.starts_with("HPA ") && l.ends_with("(baseline)")), "{text}");
    assert!(text.contains("training slice    0s .. 8640s"), "{text}");
    assert!(text.contains("validation slice  8640s .. 10800s"), "{text}");
    assert!(text.contains("Chosen: candidate "), "{text}");
    for slice in ["training", "validation"] {
        for who in ["chosen", "HPA", "base"] {
            let row = format!("{slice:<10}  {who}");
            assert!(text.lines().any(|l| l.starts_with(&row)), "no `{row}` row:\n{text}");
        }
    }
}

#[test]
fn json_reports_the_frontier_the_choice_and_the_validation_slice() {
    let ws = Workspace::new();
    let result: Value =
        serde_json::from_str(&stdout(&ws.tune(&["--output", "json"]))).expect("JSON");
    assert_eq!(result["candidates"], 24);
    assert_eq!(result["validationSlice"], "8640s .. 10800s");
    let frontier = result["frontier"].as_array().expect("a list");
    assert!(!frontier.is_empty());
    let costs: Vec<f64> =
        frontier.iter().map(|p| p["replicaMinutes"].as_f64().expect("a number")).collect();
    assert!(costs.windows(2).all(|pair| pair[0] < pair[1]), "{costs:?}");
    // The budget defaults to the HPA's training replica-minutes.
    let hpa_training = &result["hpa"]["training"];
    assert_eq!(result["budgetReplicaMinutes"], hpa_training["replicaMinutes"]);
    let chosen = &result["chosen"];
    if result["withinBudget"] == true {
        assert!(chosen["replicaMinutes"].as_f64() <= hpa_training["replicaMinutes"].as_f64());
    }
    assert_eq!(result["chosenSlices"]["training"]["replicaMinutes"], chosen["replicaMinutes"]);
    // The validation slice is 36 of the 180 minutes: less than the training slice's cost.
    for who in ["hpa", "chosenSlices", "base"] {
        let (training, validation) = (&result[who]["training"], &result[who]["validation"]);
        let cost = |s: &Value| s["replicaMinutes"].as_f64().expect("a number");
        assert!(cost(validation) >= 36.0 && cost(validation) < cost(training), "{who}: {result}");
    }
}

#[test]
fn a_tight_budget_is_said_to_fit_nothing() {
    let ws = Workspace::new();
    let text = stdout(&ws.tune(&["--budget-replica-minutes", "1"]));
    assert!(text.contains("no candidate fits the budget of 1 replica-minutes"), "{text}");
}

#[test]
fn the_written_policy_passes_check_and_keeps_the_rest_of_the_file() {
    let ws = Workspace::new();
    let best = ws.arg("best.yaml");
    // A budget well above the HPA's makes a better candidate than the base likely to exist;
    // whichever is chosen, the file must load.
    let text = stdout(&ws.tune(&["--write", &best, "--budget-replica-minutes", "2000"]));
    assert!(text.contains(&format!("Chosen policy written to {best}")), "{text}");
    let written = std::fs::read_to_string(&best).expect("written");
    assert!(written.starts_with("# Tuned by `redis-autopilot tune` from "), "{written}");
    assert!(written.contains("# A small cache: this comment stays in the tuned file."));
    assert!(written.contains("endpoints: [\"127.0.0.1:6379\"]   # the one instance"));
    assert!(written.contains("  health:\n    downAfter: 3s   # kept as written\n"), "{written}");
    assert!(written.contains("#   validation  under-provisioned min "), "{written}");
    let check = run(&["check", &best]);
    assert!(check.status.success(), "{}\n{written}", String::from_utf8_lossy(&check.stdout));
}

#[test]
fn the_plot_marks_the_candidates_the_frontier_the_hpa_and_the_choice() {
    let ws = Workspace::new();
    let svg_path = ws.arg("frontier.svg");
    stdout(&ws.tune(&["--plot", &svg_path]));
    let svg = std::fs::read_to_string(&svg_path).expect("written");
    assert!(svg.starts_with("<svg"), "{}", &svg[..100.min(svg.len())]);
    for text in [
        "candidates (24)",
        "Pareto frontier",
        "HPA",
        "chosen (candidate",
        "replica-minutes (training slice)",
        "under-provisioned minutes (training slice)",
    ] {
        assert!(svg.contains(text), "no `{text}` in the plot");
    }
}

#[test]
fn bad_inputs_get_clear_errors() {
    let ws = Workspace::new();
    let missing = ws.arg("missing.csv");
    let error = stderr(&run(&[
        "tune",
        "--policy",
        &ws.arg("policy.yaml"),
        "--trace",
        &missing,
        "--capacity-per-replica",
        "100",
    ]));
    assert!(error.contains(&format!("{missing}: cannot read")), "{error}");

    let watch_only = ws.write("watch-only.yaml", NO_SCALING);
    let error = stderr(&run(&[
        "tune",
        "--policy",
        &watch_only.display().to_string(),
        "--trace",
        &ws.arg("load.csv"),
        "--capacity-per-replica",
        "100",
    ]));
    assert!(error.contains("watch-only.yaml: policy `watch-only` has no spec.scaling"), "{error}");

    let short = ws.write("short.csv", "seconds,ops\n0,10\n60,10\n120,10\n");
    let error = stderr(&run(&[
        "tune",
        "--policy",
        &ws.arg("policy.yaml"),
        "--trace",
        &short.display().to_string(),
        "--capacity-per-replica",
        "100",
    ]));
    assert!(error.contains("short.csv: the trace spans 3.0 minutes"), "{error}");
    assert!(error.contains("validation slice"), "{error}");

    let error = stderr(&ws.tune(&["--budget-replica-minutes", "0"]));
    assert!(error.contains("--budget-replica-minutes"), "{error}");
    assert!(error.contains("`0` is not a number > 0"), "{error}");
    let error = stderr(&ws.tune(&["--candidates", "0"]));
    assert!(error.contains("--candidates"), "{error}");
}
