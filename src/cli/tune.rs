//! `redis-autopilot tune`: searches a policy's scaling settings on one or more load traces,
//! prints the Pareto frontier of under-provisioned minutes against replica-minutes with the
//! HPA's point, chooses one under a budget, and reports it on each trace's held-out
//! validation slice.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context as _, bail};
use serde::Serialize;

use super::table::Table;
use super::{Output, emit, load_policy_or_report};
use crate::decide::format_number;
use crate::sim::Settings;
use crate::sim::report::{Summary, minutes};
use crate::sim::trace::{MAX_ROWS, Trace, TraceError};
use crate::sim::tune::frontier::{Choice, Scored, VsHpa};
use crate::sim::tune::write::{edits, tuned_policy_text};
use crate::sim::tune::{
    Budget, KnobChange, MAX_TRACES, OnTrace, Options, Outcome, Search, Slices, TuneError, plot,
    total, tune,
};

/// The subcommand's one-line `about` comes from `cli::Command`; this is the rest of `--help`.
const AFTER_LONG_HELP: &str = "\
How it works:
  Candidate 0 is the policy itself; the others vary its scaling settings (every metric's
  target and window and a tail's exceedance, the first metric's statistic and its saturation,
  bursts and seasonal settings, the band or tolerance, the trend's window, and each
  direction's stabilization, maxStep, period and cooldown), drawn from --seed: with
  --search wide (the default) each keeps a setting half of the time, with --search near it
  changes one or two settings, rarely more. Every candidate replays each trace's first four
  fifths (its training slice) on the simulated cluster `simulate` uses, in parallel on all
  cores; the HPA (the policy's bounds, its first metric's target per pod) replays each once.

Several traces:
  Give --trace once per trace, and --trace-scale once for all or once per trace, in order.
  Candidates are then ranked by each figure over the HPA's, on the trace where it is worst
  (x HPA columns), so the choice holds on every trace rather than on the largest.

Choice:
  Among candidates within the budget (default: the HPA's replica-minutes on every training
  slice; --budget-vs-hpa R for R times that, or --budget-replica-minutes X on one trace), the
  fewest under-provisioned minutes against the HPA's, then the fewest scale events, then the
  fewest replica-minutes. If none fits, the cheapest point of the frontier, and it says so.

Validation:
  The chosen candidate, the base and the HPA replay every whole trace; their figures over
  each last fifth, which the search never saw, are reported apart. A choice much better than
  the HPA on training but not on validation is tuned to that trace, not to the load.

--write keeps BASE's file as it is except spec.scaling, written anew with the tuned fields
commented, and a header saying what the tuning ran on; it is loaded back and must give the
chosen policy (so it passes `check`). docs/simulation.md has the details.

Examples:
  redis-autopilot tune --policy policies/session-cache.yaml \\
      --trace simulations/worldcup98-requests-per-minute.csv --capacity-per-replica 50000 \\
      --plot frontier.svg --write tuned.yaml
  redis-autopilot tune --policy p.yaml --trace load.csv --capacity-per-replica 40000 \\
      --budget-replica-minutes 250000 --candidates 400 --seed 7 --output json
  redis-autopilot tune --policy p.yaml --capacity-per-replica 50000 --warmup 60s \\
      --trace twitter.csv --trace-scale 1000 --trace nasa.csv --trace-scale 20000";

#[derive(Debug, clap::Args)]
#[command(after_long_help = AFTER_LONG_HELP)]
pub struct Args {
    /// The base policy: candidate 0, and what the others vary.
    #[arg(long, value_name = "BASE.yaml")]
    policy: PathBuf,
    /// Load trace: CSV with a header, column 1 a time, column 2 the load. Give it once per
    /// trace to tune on several.
    #[arg(long, value_name = "CSV", required = true)]
    trace: Vec<PathBuf>,
    /// Ops/s one ready instance serves.
    #[arg(long, value_name = "OPS", value_parser = positive_number)]
    capacity_per_replica: f64,
    /// Multiplies a trace's load into demanded ops/s: once for every trace, or once per
    /// --trace, in the same order [default: 1].
    #[arg(long, value_name = "K", value_parser = positive_number)]
    trace_scale: Vec<f64>,
    /// Time from requesting an instance to it serving, e.g. `90s` [default: the policy's
    /// scaling.warmup].
    #[arg(long, value_name = "DURATION", value_parser = humantime::parse_duration)]
    warmup: Option<Duration>,
    /// The most replica-minutes the chosen candidate may use on the training slice (one
    /// trace only) [default: the HPA's].
    #[arg(long, value_name = "X", value_parser = positive_number)]
    budget_replica_minutes: Option<f64>,
    /// The most replica-minutes the chosen candidate may use on every training slice, as a
    /// multiple of the HPA's there [default: 1].
    #[arg(long, value_name = "R", value_parser = positive_number,
          conflicts_with = "budget_replica_minutes")]
    budget_vs_hpa: Option<f64>,
    /// How many candidates to simulate, the base policy included.
    #[arg(long, value_name = "N", default_value_t = 200,
          value_parser = clap::value_parser!(u32).range(1..=10_000))]
    candidates: u32,
    /// Seed of the candidates' draw: the same seed gives the same candidates.
    #[arg(long, value_name = "S", default_value_t = 1)]
    seed: u64,
    /// How far from the base the candidates go.
    #[arg(long, value_enum, default_value_t = SearchArg::Wide)]
    search: SearchArg,
    /// Also draw every candidate, the frontier, the HPA and the choice into this SVG file.
    #[arg(long, value_name = "FILE.svg")]
    plot: Option<PathBuf>,
    /// Write the chosen policy to this file (BASE's file with spec.scaling tuned).
    #[arg(long, value_name = "BEST.yaml")]
    write: Option<PathBuf>,
    /// How to print the result.
    #[arg(long, value_enum, default_value_t = Output::Table)]
    output: Output,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum SearchArg {
    /// Each setting kept half of the time, otherwise any of its values: near and far.
    Wide,
    /// One or two settings changed per candidate, rarely more: the base's neighbourhood.
    Near,
}

impl From<SearchArg> for Search {
    fn from(search: SearchArg) -> Self {
        match search {
            SearchArg::Wide => Search::Wide,
            SearchArg::Near => Search::Near,
        }
    }
}

fn positive_number(text: &str) -> Result<f64, String> {
    match text.parse::<f64>() {
        Ok(value) if value.is_finite() && value > 0.0 => Ok(value),
        _ => Err(format!("`{text}` is not a number > 0")),
    }
}

/// Each `--trace`'s scale: one `--trace-scale` for all, or one each.
fn trace_scales(args: &Args) -> anyhow::Result<Vec<f64>> {
    // Refused here as well as in `tune`, before any trace is read.
    if args.trace.len() > MAX_TRACES {
        return Err(TuneError::TooManyTraces { traces: args.trace.len() }.into());
    }
    match (args.trace_scale.len(), args.trace.len()) {
        (0, traces) => Ok(vec![1.0; traces]),
        (1, traces) => Ok(vec![args.trace_scale[0]; traces]),
        (scales, traces) if scales == traces => Ok(args.trace_scale.clone()),
        (scales, traces) => bail!(
            "{traces} --trace and {scales} --trace-scale: give --trace-scale once for every \
             trace, or once per --trace in the same order"
        ),
    }
}

/// Loads and scales each trace; all of them together hold at most `max_rows` rows, as one
/// trace may.
fn load_traces(paths: &[PathBuf], scales: &[f64], max_rows: usize) -> anyhow::Result<Vec<Trace>> {
    let mut rows_left = max_rows;
    let mut traces = Vec::with_capacity(paths.len());
    for (path, &scale) in paths.iter().zip(scales) {
        let mut trace = Trace::load_at_most(path, rows_left).map_err(|error| match error {
            TraceError::TooManyRows { .. } if paths.len() > 1 => anyhow::anyhow!(
                "{error} (the traces given to tune share {} rows)",
                format_number(max_rows as f64)
            ),
            other => other.into(),
        })?;
        rows_left -= trace.rows().len();
        trace.scale(scale);
        traces.push(trace);
    }
    Ok(traces)
}

pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    let scales = trace_scales(&args)?;
    let traces = load_traces(&args.trace, &scales, MAX_ROWS)?;
    let policy = load_policy_or_report(&args.policy)?;
    let Some(scaling) = &policy.scaling else {
        bail!(
            "{}: policy `{}` has no spec.scaling: there is nothing to tune",
            args.policy.display(),
            policy.name
        );
    };
    let settings = Settings {
        capacity_per_replica: args.capacity_per_replica,
        warmup: args.warmup.unwrap_or(scaling.warmup),
        initial_replicas: scaling.min_replicas,
    };
    let budget = match (args.budget_replica_minutes, args.budget_vs_hpa) {
        (Some(most), _) => Some(Budget::ReplicaMinutes(most)),
        (None, Some(multiple)) => Some(Budget::VsHpa(multiple)),
        (None, None) => None,
    };
    let options = Options {
        settings,
        candidates: args.candidates as usize,
        seed: args.seed,
        search: args.search.into(),
        budget,
    };
    let outcome = tune(&policy, &traces, &options)
        .with_context(|| format!("cannot tune {}", args.policy.display()))?;
    let run =
        Run { args: &args, traces: &traces, scales: &scales, options: &options, outcome: &outcome };

    match args.output {
        Output::Table => emit(run.table())?,
        Output::Json => {
            let json = serde_json::to_string_pretty(&run.json())
                .context("cannot encode the result as JSON")?;
            emit(json)?;
        }
    }
    if let Some(path) = &args.plot {
        let on = match &traces[..] {
            [one] => format!("{}: {} candidates, training slice", one.name(), outcome.scored.len()),
            several => format!(
                "{} traces: {} candidates, training slices",
                several.len(),
                outcome.scored.len()
            ),
        };
        plot::write_svg(path, &format!("tune `{}` on {on}", policy.name), &outcome)?;
        if args.output == Output::Table {
            emit(format_args!("\nPlot written to {}", path.display()))?;
        }
    }
    if let Some(path) = &args.write {
        run.write(path)?;
        if args.output == Output::Table {
            emit(format_args!("Chosen policy written to {} (it passes `check`)", path.display()))?;
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// One tuning run and what it was asked, for its outputs.
struct Run<'a> {
    args: &'a Args,
    /// Already scaled.
    traces: &'a [Trace],
    /// Each trace's `--trace-scale`.
    scales: &'a [f64],
    options: &'a Options,
    outcome: &'a Outcome,
}

/// `scaleDown.stabilization 5m -> 1m`, one per changed knob; `(base policy)` for none.
fn describe(changes: &[KnobChange]) -> String {
    if changes.is_empty() {
        return "(base policy)".to_owned();
    }
    let parts: Vec<String> = changes
        .iter()
        .map(|c| format!("{} {} -> {}", c.field, c.base.show(), c.value.show()))
        .collect();
    parts.join(", ")
}

/// A figure over the HPA's; replica-minutes to a tenth of a percent, since budgets sit there.
fn times(ratio: f64, decimals: usize) -> String {
    format!("{ratio:.decimals$}x")
}

fn vs_hpa_cells(vs: &VsHpa) -> [String; 3] {
    [
        times(vs.under_provisioned_minutes, 2),
        times(vs.replica_minutes, 3),
        times(vs.scale_events, 2),
    ]
}

impl Run<'_> {
    fn several(&self) -> bool {
        self.traces.len() > 1
    }

    /// `(training, validation)` slice names of trace `t`.
    fn slice_names(&self, t: usize) -> (String, String) {
        let trace = &self.traces[t];
        let split = trace.format_time(self.outcome.traces[t].split_at);
        (
            format!("{} .. {split}", trace.format_time(trace.start())),
            format!("{split} .. {}", trace.format_time(trace.end())),
        )
    }

    /// `load.csv (load x 1000)`.
    fn trace_label(&self, t: usize) -> String {
        format!("{} (load x {})", self.traces[t].name(), self.scales[t])
    }

    fn budget_text(&self) -> String {
        match (self.outcome.budget, &self.outcome.traces[..]) {
            (Budget::ReplicaMinutes(most), _) => format!("{} replica-minutes", minutes(most)),
            (Budget::VsHpa(1.0), [one]) => {
                format!("{} replica-minutes (the HPA's)", minutes(one.hpa.training.replica_minutes))
            }
            (Budget::VsHpa(multiple), [one]) => format!(
                "{} replica-minutes ({multiple}x the HPA's)",
                minutes(multiple * one.hpa.training.replica_minutes)
            ),
            (Budget::VsHpa(1.0), _) => "the HPA's replica-minutes on every trace".to_owned(),
            (Budget::VsHpa(multiple), _) => {
                format!("{multiple}x the HPA's replica-minutes on every trace")
            }
        }
    }

    fn choice_sentence(&self) -> String {
        let o = self.outcome;
        let index = o.choice.scored().index;
        let budget = self.budget_text();
        let fewest = if self.several() {
            "the fewest under-provisioned minutes against the HPA's on its worst trace"
        } else {
            "the fewest under-provisioned minutes"
        };
        match o.choice {
            Choice::WithinBudget(_) => {
                format!("candidate {index}: {fewest} within the budget of {budget}")
            }
            Choice::OverBudget(_) => format!(
                "candidate {index}: no candidate fits the budget of {budget}; this is the cheapest point of the frontier"
            ),
        }
    }

    fn table(&self) -> String {
        let o = self.outcome;
        let s = &self.options.settings;
        let mut text = if self.several() {
            let mut text = format!(
                "Tuning policy `{}` on {} traces\n",
                o.candidates[0].policy.name,
                self.traces.len()
            );
            for t in 0..self.traces.len() {
                let (training, validation) = self.slice_names(t);
                text.push_str(&format!(
                    "  trace             {}: training {training}, validation {validation}\n",
                    self.trace_label(t)
                ));
            }
            text
        } else {
            let (training, validation) = self.slice_names(0);
            format!(
                "Tuning policy `{}` on {}\n  training slice    {training}\n  validation slice  {validation} (never seen by the search)\n",
                o.candidates[0].policy.name,
                self.trace_label(0),
            )
        };
        text.push_str(&format!(
            "  cluster           {} ops/s per replica, warm-up {}, starting at {} replicas\n  candidates        {} (seed {}, {} search)\n\n",
            format_number(s.capacity_per_replica),
            humantime::format_duration(s.warmup),
            s.initial_replicas,
            o.scored.len(),
            self.options.seed,
            self.options.search.name(),
        ));
        text.push_str(if self.several() {
            "Pareto frontier on the training slices, cheapest first, with the HPA (figures summed \
             over the traces; x HPA: over the HPA's, on the trace where it is worst):\n"
        } else {
            "Pareto frontier on the training slice, cheapest first, with the HPA:\n"
        });
        let numbers = [
            "UNDER-PROV MIN",
            "REPLICA-MIN",
            "SCALE EVENTS",
            "UNDER-PROV x HPA",
            "REPLICA-MIN x HPA",
            "EVENTS x HPA",
        ];
        let columns: Vec<&'static str> =
            std::iter::once("CANDIDATE").chain(numbers).chain(["CHANGED"]).collect();
        let mut frontier = Table::new(&columns).right_aligned(&numbers);
        let figures = |s: &Summary, vs: &VsHpa| {
            [
                minutes(s.under_provisioned_minutes),
                minutes(s.replica_minutes),
                s.scale_events.to_string(),
            ]
            .into_iter()
            .chain(vs_hpa_cells(vs))
        };
        let chosen = o.choice.scored().index;
        let hpa_total: Vec<Summary> = o.traces.iter().map(|t| t.hpa.training).collect();
        let hpa_vs = o.hpa_vs_hpa();
        let hpa_cells = || {
            std::iter::once("HPA".to_owned())
                .chain(figures(&total(&hpa_total), &hpa_vs))
                .chain(["(baseline)".to_owned()])
        };
        let mut hpa_row = true;
        for point in &o.frontier {
            // The HPA's row goes where its cost falls among the frontier's.
            if hpa_row && hpa_vs.replica_minutes < point.vs_hpa.replica_minutes {
                frontier.row(hpa_cells());
                hpa_row = false;
            }
            let mark = if point.index == chosen { " *" } else { "" };
            let changes = describe(&o.candidates[point.index].changes);
            frontier.row(
                std::iter::once(format!("{}{mark}", point.index))
                    .chain(figures(&point.summary, &point.vs_hpa))
                    .chain([changes]),
            );
        }
        if hpa_row {
            frontier.row(hpa_cells());
        }
        text.push_str(&frontier.to_string());
        let on_frontier = o.frontier.iter().any(|p| p.index == chosen);
        text.push_str(if on_frontier { "\n  * the chosen candidate\n\n" } else { "\n\n" });
        text.push_str(&format!("Chosen: {}\n", self.choice_sentence()));
        if !on_frontier {
            text.push_str(
                "  (off the frontier: it ties a cheaper frontier point on under-provisioned \
                 minutes with fewer scale events)\n",
            );
        }
        text.push_str(&format!("  changed: {}\n", describe(&o.chosen_candidate().changes)));
        for (t, on_trace) in o.traces.iter().enumerate() {
            text.push('\n');
            if self.several() {
                text.push_str(&format!("On {}:\n", self.trace_label(t)));
            }
            text.push_str(&slices_table(on_trace).to_string());
            text.push('\n');
        }
        text.push_str(
            "\n  under-provisioned: demand > capacity x ready instances; replica-minutes: requested\n  instances integrated over time. Validation replays the whole trace and counts its last fifth.",
        );
        text
    }

    fn json(&self) -> Json {
        let o = self.outcome;
        let point = |scored: &Scored| Point {
            candidate: scored.index,
            under_provisioned_minutes: scored.summary.under_provisioned_minutes,
            replica_minutes: scored.summary.replica_minutes,
            scale_events: scored.summary.scale_events,
            changes: changes(&o.candidates[scored.index].changes),
            vs_hpa: scored.vs_hpa,
            traces: o.training[scored.index].clone(),
        };
        let traces: Vec<JsonTrace> = (0..self.traces.len())
            .map(|t| {
                let (training_slice, validation_slice) = self.slice_names(t);
                let on_trace = &o.traces[t];
                JsonTrace {
                    trace: self.traces[t].name().to_owned(),
                    trace_scale: self.scales[t],
                    training_slice,
                    validation_slice,
                    hpa: on_trace.hpa,
                    chosen_slices: on_trace.chosen,
                    base: on_trace.base,
                }
            })
            .collect();
        let (budget_replica_minutes, budget_vs_hpa) = match (o.budget, &o.traces[..]) {
            (Budget::ReplicaMinutes(most), _) => (Some(most), None),
            (Budget::VsHpa(multiple), [one]) => {
                (Some(multiple * one.hpa.training.replica_minutes), Some(multiple))
            }
            (Budget::VsHpa(multiple), _) => (None, Some(multiple)),
        };
        Json {
            policy: o.candidates[0].policy.name.clone(),
            one_trace: match &traces[..] {
                [one] => Some(one.clone()),
                _ => None,
            },
            capacity_per_replica: self.options.settings.capacity_per_replica,
            warmup_seconds: self.options.settings.warmup.as_secs_f64(),
            candidates: o.scored.len(),
            seed: self.options.seed,
            search: self.options.search.name(),
            budget_replica_minutes,
            budget_vs_hpa,
            within_budget: matches!(o.choice, Choice::WithinBudget(_)),
            chosen: point(&o.choice.scored()),
            frontier: o.frontier.iter().map(point).collect(),
            hpa_vs_hpa: o.hpa_vs_hpa(),
            traces,
        }
    }

    /// Writes the chosen policy, then reads the file back through the loader `check` uses.
    fn write(&self, path: &Path) -> anyhow::Result<()> {
        let o = self.outcome;
        let base_path = &self.args.policy;
        let base_text = crate::policy_files::read_policy_text(base_path)
            .with_context(|| format!("{}: cannot read", base_path.display()))?
            .map_err(|diagnostics| {
                let lines: Vec<String> = diagnostics.iter().map(ToString::to_string).collect();
                anyhow::anyhow!("{}", lines.join("\n"))
            })?;
        let chosen = o.chosen_candidate();
        let text = tuned_policy_text(
            &path.display().to_string(),
            &base_text,
            &edits(chosen),
            &self.header(),
            &chosen.policy,
        )?;
        std::fs::write(path, text).with_context(|| format!("{}: cannot write", path.display()))?;
        match crate::policy_files::load_policy(path) {
            Ok(loaded) if loaded == chosen.policy => Ok(()),
            Ok(_) => bail!("{}: written, but it loads as a different policy", path.display()),
            Err(diagnostics) => {
                let lines: Vec<String> = diagnostics.iter().map(ToString::to_string).collect();
                bail!(
                    "{}: written, but it does not pass check:\n{}",
                    path.display(),
                    lines.join("\n")
                )
            }
        }
    }

    fn header(&self) -> Vec<String> {
        let o = self.outcome;
        let s = &self.options.settings;
        let line = |slice: &str, chosen: &Summary, hpa: &Summary| {
            format!(
                "  {slice:<10}  under-provisioned min {} (HPA {}), replica-min {} (HPA {}), scale events {} (HPA {})",
                minutes(chosen.under_provisioned_minutes),
                minutes(hpa.under_provisioned_minutes),
                minutes(chosen.replica_minutes),
                minutes(hpa.replica_minutes),
                chosen.scale_events,
                hpa.scale_events,
            )
        };
        let labels: Vec<String> = (0..self.traces.len()).map(|t| self.trace_label(t)).collect();
        let mut lines = vec![
            format!("Tuned by `redis-autopilot tune` from {}.", self.args.policy.display()),
            format!(
                "{} {}, {} ops/s per replica, warm-up {}, {} candidates (seed {}, {} search).",
                if self.several() { "Traces" } else { "Trace" },
                labels.join(", "),
                format_number(s.capacity_per_replica),
                humantime::format_duration(s.warmup),
                o.scored.len(),
                self.options.seed,
                self.options.search.name(),
            ),
            format!("Chosen {}.", self.choice_sentence()),
        ];
        for (t, on_trace) in o.traces.iter().enumerate() {
            let (training, validation) = self.slice_names(t);
            let on = if self.several() { format!("On {}: t", labels[t]) } else { "T".to_owned() };
            lines.push(format!("{on}raining slice {training}; validation slice {validation}."));
            lines.push(line("training", &on_trace.chosen.training, &on_trace.hpa.training));
            lines.push(line("validation", &on_trace.chosen.validation, &on_trace.hpa.validation));
        }
        lines.push("Fields marked `tuned` differ from the base policy.".to_owned());
        lines
    }
}

/// One trace's figures for the chosen candidate, the HPA and the base on both slices.
fn slices_table(on_trace: &OnTrace) -> Table {
    let mut slices = Table::new(&[
        "SLICE",
        "CONTROLLER",
        "UNDER-PROV MIN",
        "REPLICA-MIN",
        "SCALE EVENTS",
        "PEAK",
    ])
    .right_aligned(&["UNDER-PROV MIN", "REPLICA-MIN", "SCALE EVENTS", "PEAK"]);
    for (slice, pick) in [("training", true), ("validation", false)] {
        for (who, both) in
            [("chosen", &on_trace.chosen), ("HPA", &on_trace.hpa), ("base", &on_trace.base)]
        {
            let s = if pick { both.training } else { both.validation };
            slices.row([
                slice.to_owned(),
                who.to_owned(),
                minutes(s.under_provisioned_minutes),
                minutes(s.replica_minutes),
                s.scale_events.to_string(),
                s.peak_replicas.to_string(),
            ]);
        }
    }
    slices
}

fn changes(changes: &[KnobChange]) -> Vec<JsonChange> {
    changes
        .iter()
        .map(|c| JsonChange { field: c.field.clone(), base: c.base.show(), value: c.value.show() })
        .collect()
}

/// `--output json`. On one trace, every key it had before several traces could be given
/// keeps its meaning; `traces`, `budgetVsHpa`, `hpaVsHpa` and each point's `vsHpa` and
/// `traces` are added.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct Json {
    policy: String,
    /// On one trace: `trace`, `traceScale`, the slices and the three controllers' figures,
    /// at the top level as they always were.
    #[serde(flatten, skip_serializing_if = "Option::is_none")]
    one_trace: Option<JsonTrace>,
    capacity_per_replica: f64,
    warmup_seconds: f64,
    candidates: usize,
    seed: u64,
    /// `wide` or `near`.
    search: &'static str,
    /// On one trace, the budget in its replica-minutes.
    #[serde(skip_serializing_if = "Option::is_none")]
    budget_replica_minutes: Option<f64>,
    /// The budget as a multiple of the HPA's replica-minutes on every trace.
    #[serde(skip_serializing_if = "Option::is_none")]
    budget_vs_hpa: Option<f64>,
    /// `false`: no candidate fitted the budget and `chosen` is the cheapest frontier point.
    within_budget: bool,
    /// The chosen candidate's training figures and changes.
    chosen: Point,
    /// Cheapest first.
    frontier: Vec<Point>,
    /// The HPA's own point on the `vsHpa` axes (1, or 0 where its figure is 0 on every trace).
    hpa_vs_hpa: VsHpa,
    /// One per `--trace`, in order.
    traces: Vec<JsonTrace>,
}

/// One trace: its slices and the three controllers' figures on them.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
struct JsonTrace {
    trace: String,
    trace_scale: f64,
    training_slice: String,
    validation_slice: String,
    /// The HPA's figures on both slices.
    hpa: Slices,
    /// The chosen candidate's figures on both slices.
    chosen_slices: Slices,
    /// The base policy's figures on both slices.
    base: Slices,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct Point {
    candidate: usize,
    /// Summed over the traces' training slices.
    under_provisioned_minutes: f64,
    replica_minutes: f64,
    scale_events: u64,
    changes: Vec<JsonChange>,
    /// Each figure over the HPA's, on the trace where it is worst: what it is ranked by.
    vs_hpa: VsHpa,
    /// Its figures on each trace's training slice, in `--trace` order.
    traces: Vec<Summary>,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct JsonChange {
    field: String,
    base: String,
    value: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn traces_share_the_rows_one_trace_may_hold() {
        let dir = tempfile::tempdir().expect("temporary directory");
        let paths: Vec<PathBuf> = ["a.csv", "b.csv"]
            .iter()
            .map(|name| {
                let path = dir.path().join(name);
                std::fs::write(&path, "seconds,ops\n0,1\n60,2\n120,3\n").expect("writable");
                path
            })
            .collect();
        let loaded = load_traces(&paths, &[1.0, 10.0], 6).expect("6 rows fit");
        assert_eq!(loaded[1].rows()[2].load, 30.0);
        let refused = load_traces(&paths, &[1.0, 1.0], 5).expect_err("6 rows do not").to_string();
        assert!(refused.contains("b.csv:4: more than 2 rows"), "{refused}");
        assert!(refused.contains("(the traces given to tune share 5 rows)"), "{refused}");
        // One trace keeps the trace's own message.
        let alone = load_traces(&paths[..1], &[1.0], 2).expect_err("3 rows").to_string();
        assert!(alone.ends_with("a.csv:4: more than 2 rows; a trace may hold no more"), "{alone}");
    }
}
