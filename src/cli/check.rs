//! `redis-autopilot check PATH...`: validates policy files the way the daemon loads them, and
//! prints every problem in every file, so one run in CI or an editor shows all there is to fix.
//!
//! Beyond each file on its own: two policies on the same target are refused
//! ([`crate::policy::overlap`]), risky combinations are warned about (exit status stays 0),
//! a file that a checked policy names as a secret is reported without a byte of it, and a
//! snapshot recipients file that can be read must hold age public keys (validation itself
//! does no I/O, so this is checked here).

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context;

use crate::policy::overlap::refusal;
use crate::policy::{Diagnostic, Loaded, Severity};
use crate::policy_files::{load_policy_checked, policy_files};

/// Arguments of `check`. Its one-line help is the subcommand's doc in `cli/mod.rs`; the
/// rest of `--help` is here.
#[derive(Debug, clap::Args)]
#[command(after_help = "Each problem is one line, FILE:LINE:COL: field.path: message, then a \
    summary line; a warning (a valid policy's risk) reads FILE:LINE:COL: field.path: warning: \
    message. Directories are searched recursively for *.yaml and *.yml files, in sorted \
    order. Two policies on the same target (the same endpoint, StatefulSet, local ports or \
    data directory) are a problem. Exit status: 0 when every policy is valid, warnings or \
    not; 1 when any has a problem (a path that does not exist counts as one).\n\n\
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

/// One checked path and what it yielded.
struct Checked {
    file: Option<PathBuf>,
    result: Result<Loaded, Vec<Diagnostic>>,
    /// Problems found across files (an overlap), added to this file's.
    more: Vec<Diagnostic>,
}

pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    let mut checked: Vec<Checked> = args
        .paths
        .iter()
        .flat_map(|path| policy_files(path))
        .map(|target| match target {
            Ok(file) => {
                Checked { result: load_policy_checked(&file), file: Some(file), more: Vec::new() }
            }
            Err(diagnostic) => Checked { file: None, result: Err(vec![diagnostic]), more: vec![] },
        })
        .collect();
    hide_secret_files(&mut checked);
    check_recipients_files(&mut checked);
    find_overlaps(&mut checked);

    let mut out = std::io::stdout().lock();
    let (mut failed, mut problems, mut warnings) = (0_usize, 0_usize, 0_usize);
    for entry in &checked {
        let mut shown: Vec<&Diagnostic> = match &entry.result {
            Ok(loaded) => loaded.warnings.iter().collect(),
            Err(diagnostics) => diagnostics.iter().collect(),
        };
        shown.extend(&entry.more);
        shown.sort_by_key(|d| (d.line, d.column));
        let errors = shown.iter().filter(|d| d.severity == Severity::Error).count();
        if errors > 0 {
            failed += 1;
        }
        problems += errors;
        warnings += shown.len() - errors;
        for diagnostic in shown {
            writeln!(out, "{diagnostic}").context("writing to stdout")?;
        }
    }
    let warned = if warnings == 0 {
        String::new()
    } else {
        format!(", {warnings} {}", plural(warnings, "warning", "warnings"))
    };
    writeln!(
        out,
        "{} {} checked, {failed} with problems, {problems} {}{warned}",
        checked.len(),
        plural(checked.len(), "policy", "policies"),
        plural(problems, "problem", "problems"),
    )
    .context("writing to stdout")?;
    Ok(if failed == 0 { ExitCode::SUCCESS } else { ExitCode::from(1) })
}

/// A checked file that a valid policy reads a secret from: whatever its diagnostics would
/// quote is dropped for one line that says what it is.
fn hide_secret_files(checked: &mut [Checked]) {
    let secrets: Vec<(PathBuf, String, &'static str)> = checked
        .iter()
        .filter_map(|entry| entry.result.as_ref().ok())
        .flat_map(|loaded| {
            loaded
                .policy
                .secret_files()
                .into_iter()
                .map(|(field, path)| (same_file_key(path), loaded.policy.name.clone(), field))
        })
        .collect();
    for entry in checked.iter_mut() {
        let Some(file) = &entry.file else { continue };
        let key = same_file_key(file);
        if let Some((_, policy, field)) = secrets.iter().find(|(secret, ..)| *secret == key) {
            let name = file.display().to_string();
            let message = format!(
                "policy `{policy}` reads a secret from this file ({field}); it is not a policy, \
                 and nothing in it is shown"
            );
            entry.result = Err(vec![Diagnostic::whole_file(&name, &message)]);
        }
    }
}

/// A valid policy's `spec.snapshots.encryption.recipientsFile`, when it can be read here,
/// must parse as age public keys: a typo or a secret key pasted there (reported by its line,
/// never shown) fails `check` rather than the first snapshot, and so does one that is no
/// regular file or too large. One that cannot be opened here is not a problem: it is usually
/// a Secret mounted only where the daemon runs.
fn check_recipients_files(checked: &mut [Checked]) {
    use crate::policy::source_map::{Anchor, FieldPath};
    for entry in checked.iter_mut() {
        let Ok(loaded) = &entry.result else { continue };
        let Some(encryption) = loaded.policy.snapshots.as_ref().and_then(|s| s.encryption.as_ref())
        else {
            continue;
        };
        let file = &encryption.recipients_file;
        let error = match crate::snapshot::crypt::Recipients::read(file) {
            Err(crate::snapshot::crypt::CryptError::ReadRecipients { source, .. })
                if source.kind() != std::io::ErrorKind::InvalidData =>
            {
                continue;
            }
            Err(error) => error,
            Ok(_) => continue,
        };
        let path =
            FieldPath::root().key("spec").key("snapshots").key("encryption").key("recipientsFile");
        entry.more.push(loaded.diagnostic(&path, Anchor::Value, &crate::errors::chain(&error)));
    }
}

/// The same file under whatever name: its canonical path when it exists.
fn same_file_key(path: &Path) -> PathBuf {
    std::fs::canonicalize(path).unwrap_or_else(|_| path.to_owned())
}

/// Every pair of valid policies on one target: a problem at the later one's `spec.target`.
fn find_overlaps(checked: &mut [Checked]) {
    let mut found = Vec::new();
    for (j, later) in checked.iter().enumerate() {
        let Ok(b) = &later.result else { continue };
        for earlier in &checked[..j] {
            let Ok(a) = &earlier.result else { continue };
            if let Some(diagnostic) = refusal(a, b) {
                found.push((j, diagnostic));
            }
        }
    }
    for (j, diagnostic) in found {
        checked[j].more.push(diagnostic);
    }
}

fn plural<'a>(count: usize, one: &'a str, many: &'a str) -> &'a str {
    if count == 1 { one } else { many }
}
