//! `redis-autopilot tune`: searches a policy's scaling settings on a load trace, prints the
//! Pareto frontier of under-provisioned minutes against replica-minutes with the HPA's point,
//! chooses one under a budget, and reports it on a held-out validation slice.

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
use crate::sim::trace::Trace;
use crate::sim::tune::frontier::{Choice, Scored};
use crate::sim::tune::write::{edits, tuned_policy_text};
use crate::sim::tune::{KnobChange, Options, Outcome, plot, tune};

/// The subcommand's one-line `about` comes from `cli::Command`; this is the rest of `--help`.
const AFTER_LONG_HELP: &str = "\
How it works:
  Candidate 0 is the policy itself; the others vary its scaling settings (every metric's
  target and window and a tail's exceedance, the first metric's statistic and its saturation,
  bursts and seasonal settings, the band or tolerance, the trend's window, and each
  direction's stabilization, maxStep, period and cooldown), drawn from --seed. Every candidate replays the trace's first four
  fifths (the training slice) on the simulated cluster `simulate` uses, in parallel on all
  cores; the HPA (the policy's bounds, its first metric's target per pod) replays it once.

Choice:
  Among candidates within --budget-replica-minutes (default: the HPA's on the training
  slice), the fewest under-provisioned minutes, then the fewest scale events, then the fewest
  replica-minutes. If none fits, the cheapest point of the frontier, and it says so.

Validation:
  The chosen candidate, the base and the HPA replay the whole trace; their figures over the
  last fifth, which the search never saw, are reported apart. A choice much better than the
  HPA on training but not on validation is tuned to that trace, not to the load.

--write keeps BASE's file as it is except spec.scaling, written anew with the tuned fields
commented, and a header saying what the tuning ran on; it is loaded back and must give the
chosen policy (so it passes `check`). docs/simulation.md has the details.

Examples:
  redis-autopilot tune --policy policies/session-cache.yaml \\
      --trace simulations/worldcup98-requests-per-minute.csv --capacity-per-replica 50000 \\
      --plot frontier.svg --write tuned.yaml
  redis-autopilot tune --policy p.yaml --trace load.csv --capacity-per-replica 40000 \\
      --budget-replica-minutes 250000 --candidates 400 --seed 7 --output json";

#[derive(Debug, clap::Args)]
#[command(after_long_help = AFTER_LONG_HELP)]
pub struct Args {
    /// The base policy: candidate 0, and what the others vary.
    #[arg(long, value_name = "BASE.yaml")]
    policy: PathBuf,
    /// Load trace: CSV with a header, column 1 a time, column 2 the load.
    #[arg(long, value_name = "CSV")]
    trace: PathBuf,
    /// Ops/s one ready instance serves.
    #[arg(long, value_name = "OPS", value_parser = positive_number)]
    capacity_per_replica: f64,
    /// Multiplies the trace's load into demanded ops/s.
    #[arg(long, value_name = "K", value_parser = positive_number, default_value_t = 1.0)]
    trace_scale: f64,
    /// Time from requesting an instance to it serving, e.g. `90s` [default: the policy's
    /// scaling.warmup].
    #[arg(long, value_name = "DURATION", value_parser = humantime::parse_duration)]
    warmup: Option<Duration>,
    /// The most replica-minutes the chosen candidate may use on the training slice
    /// [default: the HPA's].
    #[arg(long, value_name = "X", value_parser = positive_number)]
    budget_replica_minutes: Option<f64>,
    /// How many candidates to simulate, the base policy included.
    #[arg(long, value_name = "N", default_value_t = 200,
          value_parser = clap::value_parser!(u32).range(1..=10_000))]
    candidates: u32,
    /// Seed of the candidates' draw: the same seed gives the same candidates.
    #[arg(long, value_name = "S", default_value_t = 1)]
    seed: u64,
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

fn positive_number(text: &str) -> Result<f64, String> {
    match text.parse::<f64>() {
        Ok(value) if value.is_finite() && value > 0.0 => Ok(value),
        _ => Err(format!("`{text}` is not a number > 0")),
    }
}

pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    let mut trace = Trace::load(&args.trace)?;
    trace.scale(args.trace_scale);
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
    let options = Options {
        settings,
        candidates: args.candidates as usize,
        seed: args.seed,
        budget: args.budget_replica_minutes,
    };
    let outcome = tune(&policy, &trace, &options)
        .with_context(|| format!("cannot tune {}", args.policy.display()))?;
    let run = Run { args: &args, trace: &trace, options: &options, outcome: &outcome };

    match args.output {
        Output::Table => emit(run.table())?,
        Output::Json => {
            let json = serde_json::to_string_pretty(&run.json())
                .context("cannot encode the result as JSON")?;
            emit(json)?;
        }
    }
    if let Some(path) = &args.plot {
        let title = format!(
            "tune `{}` on {}: {} candidates, training slice",
            policy.name,
            trace.name(),
            outcome.scored.len()
        );
        plot::write_svg(path, &title, &outcome)?;
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
    trace: &'a Trace,
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

impl Run<'_> {
    fn slice_names(&self) -> (String, String) {
        let t = self.trace;
        let split = t.format_time(self.outcome.split_at);
        (
            format!("{} .. {split}", t.format_time(t.start())),
            format!("{split} .. {}", t.format_time(t.end())),
        )
    }

    fn choice_sentence(&self) -> String {
        let o = self.outcome;
        let index = o.choice.scored().index;
        let budget = format!(
            "{} replica-minutes{}",
            minutes(o.budget),
            if self.options.budget.is_none() { " (the HPA's)" } else { "" }
        );
        match o.choice {
            Choice::WithinBudget(_) => format!(
                "candidate {index}: the fewest under-provisioned minutes within the budget of {budget}"
            ),
            Choice::OverBudget(_) => format!(
                "candidate {index}: no candidate fits the budget of {budget}; this is the cheapest point of the frontier"
            ),
        }
    }

    fn table(&self) -> String {
        let o = self.outcome;
        let s = &self.options.settings;
        let (training, validation) = self.slice_names();
        let mut text = format!(
            "Tuning policy `{}` on {} (load x {})\n  cluster           {} ops/s per replica, warm-up {}, starting at {} replicas\n  candidates        {} (seed {})\n  training slice    {training}\n  validation slice  {validation} (never seen by the search)\n\n",
            o.candidates[0].policy.name,
            self.trace.name(),
            self.args.trace_scale,
            format_number(s.capacity_per_replica),
            humantime::format_duration(s.warmup),
            s.initial_replicas,
            o.scored.len(),
            self.options.seed,
        );
        text.push_str("Pareto frontier on the training slice, cheapest first, with the HPA:\n");
        let columns = ["CANDIDATE", "UNDER-PROV MIN", "REPLICA-MIN", "SCALE EVENTS", "CHANGED"];
        let mut frontier =
            Table::new(&columns).right_aligned(&["UNDER-PROV MIN", "REPLICA-MIN", "SCALE EVENTS"]);
        let figures = |s: &Summary| {
            [
                minutes(s.under_provisioned_minutes),
                minutes(s.replica_minutes),
                s.scale_events.to_string(),
            ]
        };
        let chosen = o.choice.scored().index;
        let hpa = o.hpa.training;
        let mut hpa_row = Some(hpa);
        for point in &o.frontier {
            // The HPA's row goes where its cost falls among the frontier's.
            if let Some(h) = hpa_row.filter(|h| h.replica_minutes < point.summary.replica_minutes) {
                frontier.row(
                    std::iter::once("HPA".to_owned())
                        .chain(figures(&h))
                        .chain(["(baseline)".to_owned()]),
                );
                hpa_row = None;
            }
            let mark = if point.index == chosen { " *" } else { "" };
            let changes = describe(&o.candidates[point.index].changes);
            frontier.row(
                std::iter::once(format!("{}{mark}", point.index))
                    .chain(figures(&point.summary))
                    .chain([changes]),
            );
        }
        if let Some(h) = hpa_row {
            frontier.row(
                std::iter::once("HPA".to_owned())
                    .chain(figures(&h))
                    .chain(["(baseline)".to_owned()]),
            );
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
        text.push_str(&format!("  changed: {}\n\n", describe(&o.chosen_candidate().changes)));
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
            for (who, both) in [("chosen", &o.chosen), ("HPA", &o.hpa), ("base", &o.base)] {
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
        text.push_str(&slices.to_string());
        text.push_str(
            "\n\n  under-provisioned: demand > capacity x ready instances; replica-minutes: requested\n  instances integrated over time. Validation replays the whole trace and counts its last fifth.",
        );
        text
    }

    fn json(&self) -> Json {
        let o = self.outcome;
        let (training, validation) = self.slice_names();
        let point = |scored: &Scored| Point {
            candidate: scored.index,
            under_provisioned_minutes: scored.summary.under_provisioned_minutes,
            replica_minutes: scored.summary.replica_minutes,
            scale_events: scored.summary.scale_events,
            changes: changes(&o.candidates[scored.index].changes),
        };
        Json {
            policy: o.candidates[0].policy.name.clone(),
            trace: self.trace.name().to_owned(),
            trace_scale: self.args.trace_scale,
            capacity_per_replica: self.options.settings.capacity_per_replica,
            warmup_seconds: self.options.settings.warmup.as_secs_f64(),
            candidates: o.scored.len(),
            seed: self.options.seed,
            training_slice: training,
            validation_slice: validation,
            budget_replica_minutes: o.budget,
            within_budget: matches!(o.choice, Choice::WithinBudget(_)),
            chosen: point(&o.choice.scored()),
            frontier: o.frontier.iter().map(point).collect(),
            hpa: o.hpa,
            chosen_slices: o.chosen,
            base: o.base,
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
        let (training, validation) = self.slice_names();
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
        vec![
            format!("Tuned by `redis-autopilot tune` from {}.", self.args.policy.display()),
            format!(
                "Trace {} (load x {}), {} ops/s per replica, warm-up {}, {} candidates (seed {}).",
                self.trace.name(),
                self.args.trace_scale,
                format_number(s.capacity_per_replica),
                humantime::format_duration(s.warmup),
                o.scored.len(),
                self.options.seed,
            ),
            format!("Training slice {training}; validation slice {validation}."),
            format!("Chosen {}.", self.choice_sentence()),
            line("training", &o.chosen.training, &o.hpa.training),
            line("validation", &o.chosen.validation, &o.hpa.validation),
            "Fields marked `tuned` differ from the base policy.".to_owned(),
        ]
    }
}

fn changes(changes: &[KnobChange]) -> Vec<JsonChange> {
    changes
        .iter()
        .map(|c| JsonChange { field: c.field.clone(), base: c.base.show(), value: c.value.show() })
        .collect()
}

/// `--output json`.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct Json {
    policy: String,
    trace: String,
    trace_scale: f64,
    capacity_per_replica: f64,
    warmup_seconds: f64,
    candidates: usize,
    seed: u64,
    training_slice: String,
    validation_slice: String,
    budget_replica_minutes: f64,
    /// `false`: no candidate fitted the budget and `chosen` is the cheapest frontier point.
    within_budget: bool,
    /// The chosen candidate's training figures and changes.
    chosen: Point,
    /// Cheapest first.
    frontier: Vec<Point>,
    /// The HPA's figures on both slices.
    hpa: crate::sim::tune::Slices,
    /// The chosen candidate's figures on both slices.
    chosen_slices: crate::sim::tune::Slices,
    /// The base policy's figures on both slices.
    base: crate::sim::tune::Slices,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct Point {
    candidate: usize,
    under_provisioned_minutes: f64,
    replica_minutes: f64,
    scale_events: u64,
    changes: Vec<JsonChange>,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct JsonChange {
    field: String,
    base: String,
    value: String,
}
