//! The command line: one module per subcommand, each with its own `Args` and `run`.
//! Errors are reported here, at the edge, with their whole chain.

mod check;
mod simulate;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// Keeps Redis healthy, right-sized and backed up: samples every instance, decides from
/// declarative policies, acts, and explains every decision.
#[derive(Debug, Parser)]
#[command(name = "redis-autopilot", version, propagate_version = true)]
pub struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Validate policy files; print every problem as FILE:LINE:COL: field.path: message.
    Check(check::Args),
    /// Replay a recorded load trace against a policy and the Kubernetes HPA, side by side.
    Simulate(simulate::Args),
}

/// Parses the command line, runs the subcommand, and turns its outcome into an exit code.
pub fn run() -> ExitCode {
    let cli = Cli::parse();
    let outcome = match cli.command {
        Command::Check(args) => check::run(args),
        Command::Simulate(args) => simulate::run(args),
    };
    match outcome {
        Ok(code) => code,
        Err(error) => {
            eprintln!("error: {error:#}");
            ExitCode::from(2)
        }
    }
}
