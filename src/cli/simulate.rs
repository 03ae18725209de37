//! `redis-autopilot simulate`: replays a load trace against a policy and against the
//! Kubernetes HPA on the same simulated cluster, and prints both results side by side.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context as _;

use super::{Output, emit, load_policy_or_report};
use crate::sim::plot::write_svg;
use crate::sim::report::{Context, Table};
use crate::sim::scenario::{Overrides, Scenario};
use crate::sim::trace::Trace;
use crate::sim::{Settings, simulate};

/// The subcommand's one-line `about` comes from `cli::Command`; this is the rest of `--help`.
const AFTER_LONG_HELP: &str = "\
How it works:
  Both controllers drive the same simulated Redis deployment: each ready instance serves up to
  --capacity-per-replica ops/s, a new instance serves only --warmup after it was requested, and
  load is split evenly over ready instances. The policy runs through the real decision core at
  every spec.sampling.interval; the HPA runs its own algorithm every 15 s with the same bounds
  and the policy's first metric's target per pod. Give a scenario file, or --policy, --trace
  and --capacity-per-replica; flags override the scenario's values. docs/simulation.md has the
  model and the metrics' definitions.

Scenario file (paths relative to it):
  policy: ../policies/session-cache.yaml
  trace: worldcup98-requests-per-minute.csv   # CSV with a header: time,load
  traceScale: 1                 # load x traceScale = demanded ops/s
  capacityPerReplica: 50000     # ops/s one instance serves (required)
  warmup: 2m                    # default: the policy's scaling.warmup
  from: \"1998-06-24 00:00:00\"   # optional slice, spelled like the trace's times
  to: \"1998-07-01 00:00:00\"
  initialReplicas: 2            # default: minReplicas

Reported per controller:
  underProvisionedMinutes  time with demand > capacity x ready instances
  replicaMinutes           requested instances (ready or warming) integrated over time
  scaleEvents              changes of the requested count
  peakReplicas             most instances requested at once
  vsHpa                    the policy's figure over the HPA's for the first three (below 1:
                           the policy does better; null where the HPA's figure is 0)

The plot (--plot) shades the periods each controller was under-provisioned, in its colour,
and dashes the HPA's lines so they stay visible where they coincide with the policy's.

Examples:
  redis-autopilot simulate simulations/session-cache.yaml
  redis-autopilot simulate simulations/session-cache.yaml --warmup 5m --plot out.svg
  redis-autopilot simulate --policy p.yaml --trace load.csv --capacity-per-replica 40000 \\
      --output json";

#[derive(Debug, clap::Args)]
#[command(after_long_help = AFTER_LONG_HELP)]
pub struct Args {
    /// Scenario file (YAML): policy, trace and cluster assumptions in one place.
    #[arg(value_name = "SCENARIO.yaml")]
    scenario: Option<PathBuf>,
    /// Policy file to simulate (overrides the scenario's `policy`).
    #[arg(long, value_name = "FILE")]
    policy: Option<PathBuf>,
    /// Load trace: CSV with a header, column 1 a time, column 2 the load.
    #[arg(long, value_name = "CSV")]
    trace: Option<PathBuf>,
    /// Multiplies the trace's load into demanded ops/s [default: 1].
    #[arg(long, value_name = "K", value_parser = positive_number)]
    trace_scale: Option<f64>,
    /// Ops/s one ready instance serves.
    #[arg(long, value_name = "OPS", value_parser = positive_number)]
    capacity_per_replica: Option<f64>,
    /// Time from requesting an instance to it serving, e.g. `90s` [default: the policy's
    /// scaling.warmup].
    #[arg(long, value_name = "DURATION", value_parser = humantime::parse_duration)]
    warmup: Option<Duration>,
    /// How to print the result.
    #[arg(long, value_enum, default_value_t = Output::Table)]
    output: Output,
    /// Also draw demand, capacity and replicas over time into this SVG file.
    #[arg(long, value_name = "FILE.svg")]
    plot: Option<PathBuf>,
}

fn positive_number(text: &str) -> Result<f64, String> {
    match text.parse::<f64>() {
        Ok(value) if value.is_finite() && value > 0.0 => Ok(value),
        _ => Err(format!("`{text}` is not a number > 0")),
    }
}

pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    let overrides = Overrides {
        policy: args.policy,
        trace: args.trace,
        trace_scale: args.trace_scale,
        capacity_per_replica: args.capacity_per_replica,
        warmup: args.warmup,
    };
    let scenario = Scenario::resolve(args.scenario.as_deref(), overrides)?;
    let mut trace =
        Trace::load(&scenario.trace)?.slice(scenario.from.as_deref(), scenario.to.as_deref())?;
    trace.scale(scenario.trace_scale);
    let policy = load_policy_or_report(&scenario.policy)?;
    let settings = Settings::for_policy(&scenario, &policy)?;
    let simulation = simulate(&policy, &trace, &settings)?;
    let context = Context::new(&policy, &trace, scenario.trace_scale, &settings);

    match args.output {
        Output::Table => {
            emit(Table { context: &context, comparison: &simulation.comparison() })?;
        }
        Output::Json => {
            let json = serde_json::to_string_pretty(&simulation.comparison().report())
                .context("cannot encode the result as JSON")?;
            emit(json)?;
        }
    }
    // On stderr, so `--output json` stays machine-readable. A rate's very first evaluation
    // has no predecessor; only gaps in more than 1% of evaluations say something about the policy.
    for gap in simulation.gaps.iter().filter(|g| g.missing * 100 > g.evaluations) {
        eprintln!(
            "warning: {} was missing in {} of {} evaluations (first: {}); missing data never \
             scales down. The simulated instances report instantaneous_ops_per_sec, \
             total_commands_processed and connected_clients, and every PromQL query reads as the \
             demand.",
            gap.metric, gap.missing, gap.evaluations, gap.example
        );
    }
    if let Some(path) = args.plot {
        let title = format!(
            "Policy `{}` vs HPA on {} ({} .. {})",
            context.policy_name, context.trace_name, context.from, context.to
        );
        write_svg(&path, &title, &trace, &simulation, settings.capacity_per_replica)?;
        if args.output == Output::Table {
            emit(format_args!("\nPlot written to {}", path.display()))?;
        }
    }
    Ok(ExitCode::SUCCESS)
}
