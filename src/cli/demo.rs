//! `redis-autopilot demo`: the embedded default on one machine.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use crate::act::Mode;
use crate::demo::{DemoConfig, run as run_demo};

/// Starts a local fleet of real redis-server processes managed by the daemon, replays a load
/// trace against it with real GETs, and prints a live view: load, replicas, and every action
/// with its reason. Ctrl-C stops the load, the daemon and the fleet. Needs `redis-server`
/// (Debian package redis-server); installs nothing itself.
///
/// Example: redis-autopilot demo --speed 120 --peak 15000
#[derive(Debug, clap::Args)]
pub struct Args {
    /// A policy with a `local:` target.
    #[arg(long, value_name = "FILE", default_value = "policies/local-demo.yaml")]
    policy: PathBuf,
    /// Load trace (CSV: a time column, a load column).
    #[arg(
        long,
        value_name = "CSV",
        default_value = "simulations/worldcup98-requests-per-minute.csv"
    )]
    trace: PathBuf,
    /// Replay from this trace time (same spelling as the trace's times).
    #[arg(long, default_value = "1998-06-26 00:00:00")]
    from: String,
    /// Replay up to this trace time; the slice then loops.
    #[arg(long, default_value = "1998-06-27 00:00:00")]
    to: String,
    /// Trace time per demo second: 120 plays a day in 12 minutes.
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
}

pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    let config = DemoConfig {
        policy: args.policy,
        trace: args.trace,
        from: Some(args.from),
        to: Some(args.to),
        speed: args.speed,
        peak: args.peak,
        listen: args.listen,
        mode: if args.dry_run { Mode::DryRun } else { Mode::Apply },
    };
    let runtime = super::runtime()?;
    runtime.block_on(run_demo(config))?;
    Ok(ExitCode::SUCCESS)
}
