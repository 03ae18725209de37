//! `redis-autopilot tune` end to end: the binary on a small trace (and on two) and an inline
//! policy in a temporary directory; the frontier and the HPA's point, the validation slice, a
//! written policy that `check` passes, the plot, and the errors a user meets first.

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

/// Four hours, one row a minute: a slower swell from 20 to 180 ops/s.
fn second_trace() -> String {
    let mut text = String::from("seconds,ops\n");
    for minute in 0..240u32 {
        let load = 100.0 + 80.0 * (f64::from(minute) / 20.0).sin();
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
        ws.write("swell.csv", &second_trace());
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

    /// `tune` as [`Workspace::tune`], with the second trace (at twice its load) as well.
    fn tune_both(&self, extra: &[&str]) -> Output {
        let swell = self.arg("swell.csv");
        let both = ["--trace", &swell, "--trace-scale", "1", "--trace-scale", "2"];
        self.tune(&both.iter().copied().chain(extra.iter().copied()).collect::<Vec<_>>())
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
fn on_one_trace_json_also_lists_it_under_traces_and_gives_ratios() {
    let ws = Workspace::new();
    let result: Value =
        serde_json::from_str(&stdout(&ws.tune(&["--output", "json"]))).expect("JSON");
    let traces = result["traces"].as_array().expect("a list");
    assert_eq!(traces.len(), 1);
    for key in ["trace", "traceScale", "trainingSlice", "validationSlice", "hpa", "base"] {
        assert_eq!(traces[0][key], result[key], "{key}");
    }
    assert_eq!(result["budgetVsHpa"], 1.0);
    let hpa = result["hpa"]["training"]["replicaMinutes"].as_f64().expect("a number");
    for point in result["frontier"].as_array().expect("a list") {
        let own = point["replicaMinutes"].as_f64().expect("a number");
        let ratio = point["vsHpa"]["replicaMinutes"].as_f64().expect("a number");
        assert!((ratio - own / hpa).abs() < 1e-12, "{point}");
        assert_eq!(point["traces"][0]["replicaMinutes"], point["replicaMinutes"]);
    }
}

#[test]
fn on_two_traces_each_gets_its_slices_and_the_choice_fits_both() {
    let ws = Workspace::new();
    let text = stdout(&ws.tune_both(&[]));
    assert!(text.contains("Tuning policy `tiny` on 2 traces"), "{text}");
    assert!(
        text.contains("load.csv (load x 1): training 0s .. 8640s, validation 8640s .. 10800s"),
        "{text}"
    );
    assert!(
        text.contains("swell.csv (load x 2): training 0s .. 11520s, validation 11520s .. 14400s"),
        "{text}"
    );
    assert!(text.contains("on the trace where it is worst"), "{text}");
    assert!(text.contains("load.csv (load x 1):\nSLICE"), "{text}");
    assert!(text.contains("swell.csv (load x 2):\nSLICE"), "{text}");

    let result: Value =
        serde_json::from_str(&stdout(&ws.tune_both(&["--output", "json"]))).expect("JSON");
    // Per-trace keys live under `traces` only.
    for key in ["trace", "trainingSlice", "hpa", "budgetReplicaMinutes"] {
        assert!(result.get(key).is_none(), "{key} at the top level: {result}");
    }
    let traces = result["traces"].as_array().expect("a list");
    let names: Vec<&str> = traces.iter().map(|t| t["trace"].as_str().expect("text")).collect();
    assert_eq!(names, [ws.arg("load.csv"), ws.arg("swell.csv")]);
    assert_eq!(traces[1]["traceScale"], 2.0);
    let chosen = &result["chosen"];
    let cost = |s: &Value| s["replicaMinutes"].as_f64().expect("a number");
    // The default budget: at most the HPA's replica-minutes on each trace.
    assert_eq!(result["budgetVsHpa"], 1.0);
    // Candidates cheaper than the HPA on both traces exist for this seed.
    assert_eq!(result["withinBudget"], true, "{result}");
    for (t, trace) in traces.iter().enumerate() {
        assert!(cost(&chosen["traces"][t]) <= cost(&trace["hpa"]["training"]), "{result}");
        assert_eq!(trace["chosenSlices"]["training"], chosen["traces"][t]);
    }
    let summed = cost(&chosen["traces"][0]) + cost(&chosen["traces"][1]);
    assert!((cost(chosen) - summed).abs() < 1e-9, "{chosen}");
    // The worst trace's ratio is what the frontier ranks by, cheapest first.
    let ranks: Vec<f64> = result["frontier"]
        .as_array()
        .expect("a list")
        .iter()
        .map(|p| p["vsHpa"]["replicaMinutes"].as_f64().expect("a number"))
        .collect();
    assert!(ranks.windows(2).all(|pair| pair[0] < pair[1]), "{ranks:?}");

    let best = ws.arg("best.yaml");
    stdout(&ws.tune_both(&["--write", &best, "--budget-vs-hpa", "1.5"]));
    let written = std::fs::read_to_string(&best).expect("written");
    let traces =
        format!("# Traces {} (load x 1), {} (load x 2), ", ws.arg("load.csv"), ws.arg("swell.csv"));
    assert!(written.contains(&traces), "{written}");
    assert!(written.contains("swell.csv (load x 2): training slice 0s .. 11520s"), "{written}");
    assert!(written.contains("within the budget of 1.5x the HPA's replica-minutes on every trace"));
    let check = run(&["check", &best]);
    assert!(check.status.success(), "{}\n{written}", String::from_utf8_lossy(&check.stdout));

    let svg_path = ws.arg("frontier.svg");
    stdout(&ws.tune_both(&["--plot", &svg_path]));
    let svg = std::fs::read_to_string(&svg_path).expect("written");
    assert!(
        svg.contains("over the HPA&apos;s, worst trace")
            || svg.contains("over the HPA's, worst trace")
    );
}

#[test]
fn a_near_search_is_named_and_changes_few_settings() {
    let ws = Workspace::new();
    let result: Value =
        serde_json::from_str(&stdout(&ws.tune(&["--search", "near", "--output", "json"])))
            .expect("JSON");
    assert_eq!(result["search"], "near");
    for point in result["frontier"].as_array().expect("a list") {
        let changes = point["changes"].as_array().expect("a list").len();
        assert!(changes <= 4, "{point}");
    }
    let text = stdout(&ws.tune(&[]));
    assert!(text.contains("candidates        24 (seed 1, wide search)"), "{text}");
}

#[test]
fn two_traces_refuse_a_budget_of_one_and_unmatched_scales() {
    let ws = Workspace::new();
    let error = stderr(&ws.tune_both(&["--budget-replica-minutes", "500"]));
    assert!(error.contains("with 2 traces"), "{error}");
    assert!(error.contains("--budget-vs-hpa"), "{error}");
    let error = stderr(&ws.tune_both(&["--trace-scale", "3"]));
    assert!(error.contains("2 --trace and 3 --trace-scale"), "{error}");
    let error = stderr(&ws.tune(&["--budget-replica-minutes", "500", "--budget-vs-hpa", "1"]));
    assert!(error.contains("--budget-vs-hpa"), "{error}");
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
