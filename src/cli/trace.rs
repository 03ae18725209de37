//! `redis-autopilot trace generate KIND`: writes a seeded synthetic load trace
//! ([`crate::sim::synthetic`]) as a CSV that `simulate` reads; `trace refine`: draws the
//! seconds of a coarser trace of request counts ([`crate::sim::refine`]). Rows are streamed
//! to the file as they are computed, so a trace of weeks at one row per second never sits in
//! memory.

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context as _;
use chrono::SecondsFormat;

use super::emit;
use crate::decide::format_number;
use crate::sim::refine::{self, Refinement};
use crate::sim::synthetic::{Generator, Kind, Spec};
use crate::sim::trace::{Millis, Row, TimeKind, Trace, timestamp};

/// The defaults every flag below shows, from the one place they are defined.
const DEFAULTS: Spec = Spec::new(Kind::Diurnal);

const AFTER_LONG_HELP: &str = "\
Kinds:
  diurnal      a daily profile on the UTC clock (night trough, morning ramp, afternoon peak,
               evening bump), weekends at --weekend of a weekday, each day's amplitude
               jittered by --jitter
  flash-crowd  diurnal plus crowds at random times (--crowds-per-day on average): the load
               multiplies by --crowd-factor to 1.5x that within 10-60 s, then decays over
               3-15 minutes
  slow-ramp    diurnal growing geometrically by --growth over the trace, reaching --peak at
               the end

Every kind carries per-second noise (--noise): a wander over minutes, independent per-second
jitter and bursts of 2-10 s in about one minute in ten. --noise 0 gives a smooth trace. The
same kind, seed and flags always give the same file. Each row holds the mean load of its
--step seconds. docs/simulation.md describes the model and every parameter.

Examples:
  redis-autopilot trace generate diurnal --days 21 --out diurnal.csv
  redis-autopilot trace generate flash-crowd --seed 7 --peak 300000 --out crowd.csv
  redis-autopilot trace generate slow-ramp --days 56 --growth 3 --step 1m --out ramp.csv
  redis-autopilot simulate --policy policies/session-cache.yaml --trace crowd.csv \\
      --capacity-per-replica 50000";

#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(subcommand)]
    command: TraceCommand,
}

#[derive(Debug, clap::Subcommand)]
enum TraceCommand {
    /// Write a synthetic load trace (CSV with the header `time,ops_per_sec`) for `simulate`.
    Generate(GenerateArgs),
    /// Draw the seconds of a trace of request counts per minute (or any period): clustered
    /// random arrivals at each row's rate.
    Refine(RefineArgs),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum KindArg {
    /// Daily profile, weekly cycle, day-to-day jitter.
    Diurnal,
    /// Diurnal plus sudden crowds that decay over minutes.
    FlashCrowd,
    /// Diurnal under steady growth.
    SlowRamp,
}

impl From<KindArg> for Kind {
    fn from(kind: KindArg) -> Self {
        match kind {
            KindArg::Diurnal => Kind::Diurnal,
            KindArg::FlashCrowd => Kind::FlashCrowd,
            KindArg::SlowRamp => Kind::SlowRamp,
        }
    }
}

/// How the CSV spells times.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum Times {
    /// RFC 3339 in UTC (`2026-01-05T14:00:00Z`): keeps the calendar the weekly cycle and any
    /// cron floor follow.
    Calendar,
    /// Seconds from the first row (`0`, `1`, ...): smaller files, but `simulate` places them
    /// at the Unix epoch, a Thursday.
    Seconds,
}

#[derive(Debug, clap::Args)]
#[command(after_long_help = AFTER_LONG_HELP)]
struct GenerateArgs {
    /// What the trace models.
    #[arg(value_enum)]
    kind: KindArg,
    /// Length in days (fractions allowed; at least two steps, at most 366).
    #[arg(long, value_name = "N", allow_negative_numbers = true, default_value_t = DEFAULTS.days)]
    days: f64,
    /// Seed: the same seed and flags give the same trace.
    #[arg(long, value_name = "S", default_value_t = DEFAULTS.seed)]
    seed: u64,
    /// Ops/s of a weekday afternoon's peak before noise, jitter and crowds (slow-ramp: the last
    /// weekday's); at most 1e12.
    #[arg(long, value_name = "OPS", allow_negative_numbers = true, default_value_t = DEFAULTS.peak)]
    peak: f64,
    /// Time between rows, whole seconds, e.g. `1s`, `1m`; each row is the mean of its seconds.
    #[arg(long, value_name = "DURATION", default_value = "1s", value_parser = whole_seconds)]
    step: u32,
    /// The first row's time, RFC 3339; the daily and weekly cycles follow its UTC calendar
    /// [default: 2026-01-05T00:00:00Z, a Monday].
    #[arg(long, value_name = "TIME", value_parser = rfc3339)]
    start: Option<i64>,
    /// How the CSV spells times.
    #[arg(long, value_enum, default_value_t = Times::Calendar)]
    times: Times,
    /// The night trough as a fraction of the peak, in (0, 1].
    #[arg(long, value_name = "FRACTION", allow_negative_numbers = true, default_value_t = DEFAULTS.night)]
    night: f64,
    /// Saturday's and Sunday's level as a fraction of a weekday's, in (0, 2].
    #[arg(long, value_name = "FRACTION", allow_negative_numbers = true, default_value_t = DEFAULTS.weekend)]
    weekend: f64,
    /// Day-to-day amplitude spread (standard deviation of its log), in [0, 0.5].
    #[arg(long, value_name = "SIGMA", allow_negative_numbers = true, default_value_t = DEFAULTS.jitter)]
    jitter: f64,
    /// Per-second noise spread (standard deviation of its log), in [0, 0.5]; bursts scale with
    /// it; 0 turns all noise off.
    #[arg(long, value_name = "SIGMA", allow_negative_numbers = true, default_value_t = DEFAULTS.noise)]
    noise: f64,
    /// flash-crowd: mean crowds per day, in (0, 100].
    #[arg(long, value_name = "N", allow_negative_numbers = true, default_value_t = DEFAULTS.crowds_per_day)]
    crowds_per_day: f64,
    /// flash-crowd: the least a crowd multiplies the load by at its top (each draws 1x to 1.5x
    /// this); 1 to 100.
    #[arg(long, value_name = "X", allow_negative_numbers = true, default_value_t = DEFAULTS.crowd_factor)]
    crowd_factor: f64,
    /// slow-ramp: the level at the end over the level at the start; 1 to 1000.
    #[arg(long, value_name = "X", allow_negative_numbers = true, default_value_t = DEFAULTS.growth)]
    growth: f64,
    /// Write the CSV here [default: stdout].
    #[arg(long, value_name = "FILE.csv")]
    out: Option<PathBuf>,
}

const REFINE_AFTER_LONG_HELP: &str = "\
A per-minute count says how many requests came in a minute, not how they fell within it; the
simulator counts under-provisioned time by the second. Refining draws each second: clusters
of requests (a page and the objects it pulls) arrive at random at the row's rate, and each
holds a geometric number of requests with mean --cluster-size, so a second's count has the
row's mean and (2 x cluster size - 1) times that as its variance. --cluster-size 1 is plain
Poisson arrivals. The output counts requests per second: give `simulate` --trace-scale in ops
per request. The same trace, flags and seed always give the same file. docs/simulation.md
describes the model.

Examples:
  redis-autopilot trace refine simulations/worldcup98-requests-per-minute.csv --per 1m \\
      --cluster-size 10 --out worldcup98-seconds.csv
  redis-autopilot simulate --policy policies/session-cache.yaml \\
      --trace worldcup98-seconds.csv --trace-scale 100 --capacity-per-replica 50000";

#[derive(Debug, clap::Args)]
#[command(after_long_help = REFINE_AFTER_LONG_HELP)]
struct RefineArgs {
    /// The trace to refine (CSV: time, then the requests counted over --per).
    #[arg(value_name = "TRACE.csv")]
    trace: PathBuf,
    /// The period the trace's second column counts requests over, whole seconds, e.g. `1m`.
    #[arg(long, value_name = "DURATION", value_parser = whole_seconds)]
    per: u32,
    /// Mean requests per cluster, from 1 (independent requests) up.
    #[arg(long, value_name = "N", allow_negative_numbers = true, default_value_t = 1.0)]
    cluster_size: f64,
    /// Seed: the same seed, trace and flags give the same seconds.
    #[arg(long, value_name = "S", default_value_t = 1)]
    seed: u64,
    /// Write the CSV here [default: stdout].
    #[arg(long, value_name = "FILE.csv")]
    out: Option<PathBuf>,
}

fn whole_seconds(text: &str) -> Result<u32, String> {
    let duration = humantime::parse_duration(text).map_err(|e| format!("`{text}`: {e}"))?;
    let fits = duration >= Duration::from_secs(1) && duration.subsec_nanos() == 0;
    match u32::try_from(duration.as_secs()) {
        Ok(seconds) if fits => Ok(seconds),
        _ => Err(format!("`{text}` is not a whole number of seconds >= 1s")),
    }
}

fn rfc3339(text: &str) -> Result<i64, String> {
    chrono::DateTime::parse_from_rfc3339(text)
        .map(|at| at.timestamp_millis())
        .map_err(|e| format!("`{text}` is not an RFC 3339 time: {e}"))
}

pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    match args.command {
        TraceCommand::Generate(args) => generate(args),
        TraceCommand::Refine(args) => refine(args),
    }
}

fn generate(args: GenerateArgs) -> anyhow::Result<ExitCode> {
    let spec = Spec {
        kind: args.kind.into(),
        start: args.start.unwrap_or(DEFAULTS.start),
        days: args.days,
        step_seconds: args.step,
        seed: args.seed,
        peak: args.peak,
        night: args.night,
        weekend: args.weekend,
        jitter: args.jitter,
        noise: args.noise,
        crowds_per_day: args.crowds_per_day,
        crowd_factor: args.crowd_factor,
        growth: args.growth,
    };
    let generator = Generator::new(spec)?;
    let start = generator.spec().start;
    let written = write_rows(args.out.as_deref(), "ops_per_sec", 2, generator.rows(), |at| {
        match args.times {
            Times::Calendar => calendar(at),
            Times::Seconds => ((at - start) / 1000).to_string(),
        }
    })?;

    let summary = format!(
        "{} trace, seed {}: {} rows, {} .. {} (UTC), step {}s{}",
        spec.kind,
        spec.seed,
        format_number(written as f64),
        timestamp(spec.start).format("%Y-%m-%d %H:%M:%S"),
        timestamp(generator.end()).format("%Y-%m-%d %H:%M:%S"),
        spec.step_seconds,
        match spec.kind {
            Kind::FlashCrowd => format!(", {} flash crowds", generator.crowds().len()),
            Kind::Diurnal | Kind::SlowRamp => String::new(),
        },
    );
    report(args.out.as_deref(), &summary)
}

fn refine(args: RefineArgs) -> anyhow::Result<ExitCode> {
    let trace = Trace::load(&args.trace)?;
    let spec =
        refine::Spec { per_seconds: args.per, cluster_size: args.cluster_size, seed: args.seed };
    let refinement = Refinement::new(&trace, spec)?;
    let mut requests = 0.0;
    let rows = refinement.rows().inspect(|row| requests += row.load);
    // Whole requests; seconds from the start stay seconds, a calendar is written in RFC 3339.
    let written = write_rows(args.out.as_deref(), "requests", 0, rows, |at| match trace.kind() {
        TimeKind::Calendar => calendar(at),
        TimeKind::Seconds => (at / 1000).to_string(),
    })?;
    let summary = format!(
        "{}: {} seconds, {} requests in clusters of {} on average (the trace counts {}), seed {}",
        trace.name(),
        format_number(written as f64),
        format_number(requests),
        format_number(args.cluster_size),
        format_number(refinement.counted_requests()),
        args.seed,
    );
    report(args.out.as_deref(), &summary)
}

/// Streams a header (`time,` and `column`) and every row to `out` (stdout without one), the
/// time as `time` spells it and the load to `decimals`; returns how many rows were written.
fn write_rows(
    out: Option<&Path>,
    column: &str,
    decimals: usize,
    rows: impl Iterator<Item = Row>,
    time: impl Fn(Millis) -> String,
) -> anyhow::Result<u64> {
    let (sink, name): (Box<dyn Write>, String) = match out {
        Some(path) => {
            let file =
                File::create(path).with_context(|| format!("{}: cannot create", path.display()))?;
            (Box::new(file), path.display().to_string())
        }
        None => (Box::new(std::io::stdout().lock()), "stdout".to_owned()),
    };
    let mut out = BufWriter::with_capacity(1 << 16, sink);
    let write = || -> std::io::Result<u64> {
        writeln!(out, "time,{column}")?;
        let mut count = 0;
        for row in rows {
            writeln!(out, "{},{:.*}", time(row.at), decimals, row.load)?;
            count += 1;
        }
        out.flush()?;
        Ok(count)
    };
    write().with_context(|| format!("{name}: cannot write"))
}

fn calendar(at: Millis) -> String {
    timestamp(at).to_rfc3339_opts(SecondsFormat::Secs, true)
}

/// The summary after the file is written; the CSV may be on stdout, the summary then goes to
/// stderr.
fn report(out: Option<&Path>, summary: &str) -> anyhow::Result<ExitCode> {
    match out {
        Some(path) => emit(format_args!("{summary}, written to {}", path.display()))?,
        None => eprintln!("{summary}"),
    }
    Ok(ExitCode::SUCCESS)
}
