//! `redis-autopilot demo`: the embedded default on one machine.

use std::io::IsTerminal as _;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use crate::act::Mode;
use crate::demo::{DemoConfig, run as run_demo, scratch_dir};

/// Starts a local fleet of real redis-server processes managed by the daemon, replays a load
/// trace against it with real GETs, and shows it live: load against capacity, the fleet, the
/// master and its epoch, and every decision with its reason. On a terminal the view is full
/// screen, with keys to kill the master, change the load and skip ahead; otherwise it prints
/// plain lines. The policy and the trace are built in; the fleet's data and the daemon's log
/// go to a temporary directory. Needs `redis-server` (Debian package redis-server).
///
/// Example: redis-autopilot demo --speed 120 --peak 15000
#[derive(Debug, clap::Args)]
pub struct Args {
    /// A policy with a `local:` target [default: the built-in policies/local-demo.yaml].
    #[arg(long, value_name = "FILE")]
    policy: Option<PathBuf>,
    /// Load trace (CSV: a time column, a load column) [default: the built-in World Cup 1998
    /// requests per minute].
    #[arg(long, value_name = "CSV")]
    trace: Option<PathBuf>,
    /// Replay from this trace time (same spelling as the trace's times). The default starts
    /// half an hour of trace before the afternoon's ramp.
    #[arg(long, default_value = "1998-06-26 13:30:00")]
    from: String,
    /// Replay up to this trace time; the slice then loops.
    #[arg(long, default_value = "1998-06-27 00:00:00")]
    to: String,
    /// Trace time per demo second: 120 plays an hour in 30 seconds.
    #[arg(long, default_value_t = 120.0)]
    speed: f64,
    /// Ops/s at the trace's busiest moment.
    #[arg(long, default_value_t = 15000.0)]
    peak: f64,
    /// Address of the daemon's HTTP endpoints.
    #[arg(long, value_name = "ADDR", default_value = "127.0.0.1:9187")]
    listen: SocketAddr,
    /// Decide and report, but never change the fleet.
    #[arg(long)]
    dry_run: bool,
    /// Plain lines even on a terminal.
    #[arg(long)]
    plain: bool,
}

pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    let scratch = scratch_dir();
    std::fs::create_dir_all(&scratch)?;
    // The daemon's logs would tear the view apart: they go to a file, which the banner names.
    let log = std::fs::File::create(scratch.join("daemon.log"))?;
    super::init_logging_to(super::LogFormat::Text, std::sync::Mutex::new(log), false);
    let config = DemoConfig {
        policy: args.policy,
        trace: args.trace,
        from: Some(args.from),
        to: Some(args.to),
        speed: args.speed,
        peak: args.peak,
        listen: args.listen,
        mode: if args.dry_run { Mode::DryRun } else { Mode::Apply },
        full_screen: !args.plain && std::io::stdout().is_terminal(),
        scratch,
    };
    let runtime = super::runtime()?;
    runtime.block_on(run_demo(config))?;
    Ok(ExitCode::SUCCESS)
}
