//! `redis-autopilot check PATH...`: validates policy files the way the daemon loads them, and
//! prints every problem in every file, so one run in CI or an editor shows all there is to fix.

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;

use crate::policy::{load_policy, policy_files};

/// Arguments of `check`. Its one-line help is the subcommand's doc in `cli/mod.rs`; the
/// rest of `--help` is here.
#[derive(Debug, clap::Args)]
#[command(after_help = "Each problem is one line, FILE:LINE:COL: field.path: message, then a \
    summary line. Directories are searched recursively for *.yaml and *.yml files, in sorted \
    order. Exit status: 0 when every policy is valid, 1 when any has a problem (a path that \
    does not exist counts as one).\n\n\
    Examples:\n  \
    redis-autopilot check policies/\n  \
    redis-autopilot check policies/session-cache.yaml staging/checkout.yml\n\n\
    A policy with a problem:\n  \
    $ redis-autopilot check bad.yaml\n  \
    bad.yaml:9:18: spec.scaling.maxReplicas: must be >= minReplicas (4), found 2\n  \
    1 policy checked, 1 with problems, 1 problem")]
pub struct Args {
    /// Policy files, or directories searched recursively for *.yaml / *.yml.
    #[arg(required = true, value_name = "PATH")]
    paths: Vec<PathBuf>,
}

pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    let mut out = std::io::stdout().lock();
    let mut checked = 0_usize;
    let mut failed = 0_usize;
    let mut problems = 0_usize;
    for target in args.paths.iter().flat_map(|path| policy_files(path)) {
        checked += 1;
        let diagnostics = match target {
            Ok(file) => load_policy(&file).err().unwrap_or_default(),
            Err(diagnostic) => vec![diagnostic],
        };
        if !diagnostics.is_empty() {
            failed += 1;
            problems += diagnostics.len();
        }
        for diagnostic in diagnostics {
            writeln!(out, "{diagnostic}").context("writing to stdout")?;
        }
    }
    writeln!(
        out,
        "{checked} {} checked, {failed} with problems, {problems} {}",
        plural(checked, "policy", "policies"),
        plural(problems, "problem", "problems"),
    )
    .context("writing to stdout")?;
    Ok(if failed == 0 { ExitCode::SUCCESS } else { ExitCode::from(1) })
}

fn plural<'a>(count: usize, one: &'a str, many: &'a str) -> &'a str {
    if count == 1 { one } else { many }
}
