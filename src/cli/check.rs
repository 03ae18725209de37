//! `redis-autopilot check PATH...`: validates policy files the way the daemon loads them, and
//! prints every problem in every file, so one run in CI or an editor shows all there is to fix.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context;

use crate::policy::{Diagnostic, load_policy};

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

/// The policy files a command-line path stands for; a path that yields none is a problem
/// (a typo in CI should fail, not pass with nothing checked).
fn policy_files(path: &Path) -> Vec<Result<PathBuf, Diagnostic>> {
    let name = path.display().to_string();
    let metadata = match std::fs::metadata(path) {
        Ok(metadata) => metadata,
        Err(e) => return vec![Err(Diagnostic::whole_file(&name, &format!("cannot read: {e}")))],
    };
    if !metadata.is_dir() {
        return vec![Ok(path.to_owned())];
    }
    let mut found = Vec::new();
    let mut errors = Vec::new();
    walk(path, &mut found, &mut errors);
    found.sort();
    let mut targets: Vec<_> = found.into_iter().map(Ok).collect();
    targets.extend(errors.into_iter().map(Err));
    if targets.is_empty() {
        targets
            .push(Err(Diagnostic::whole_file(&name, "no *.yaml or *.yml files in this directory")));
    }
    targets
}

/// Collects `*.yaml` / `*.yml` under `dir`. Symlinked directories are not followed, so a
/// link cycle cannot make the walk endless.
fn walk(dir: &Path, found: &mut Vec<PathBuf>, errors: &mut Vec<Diagnostic>) {
    let entries = match std::fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) => {
            let message = format!("cannot read directory: {e}");
            errors.push(Diagnostic::whole_file(&dir.display().to_string(), &message));
            return;
        }
    };
    for entry in entries {
        let entry = match entry {
            Ok(entry) => entry,
            Err(e) => {
                let message = format!("cannot read directory: {e}");
                errors.push(Diagnostic::whole_file(&dir.display().to_string(), &message));
                continue;
            }
        };
        let path = entry.path();
        let is_real_dir = entry.file_type().is_ok_and(|kind| kind.is_dir());
        if is_real_dir {
            walk(&path, found, errors);
        } else if is_policy_file(&path) {
            found.push(path);
        }
    }
}

fn is_policy_file(path: &Path) -> bool {
    let yaml = path.extension().is_some_and(|ext| ext == "yaml" || ext == "yml");
    yaml && path.is_file()
}

fn plural<'a>(count: usize, one: &'a str, many: &'a str) -> &'a str {
    if count == 1 { one } else { many }
}
