//! The command line as one tool: which flags each command shows, that every argument says
//! what it is for, and that the spellings agree across commands. Read from the same clap
//! definition the binary parses with (`Cli::command()`), so nothing here starts a process.

use clap::{CommandFactory as _, Parser as _};
use redis_autopilot::cli::Cli;

/// The built command tree (global arguments propagated, as `--help` shows them).
fn cli() -> clap::Command {
    let mut command = Cli::command();
    command.build();
    command
}

/// `redis-autopilot PATH... --help`, as text without styling.
fn help(path: &[&str]) -> String {
    let mut command = cli();
    let mut at = &mut command;
    for name in path {
        at = at.find_subcommand_mut(name).unwrap_or_else(|| panic!("no subcommand {name}"));
    }
    at.render_long_help().to_string()
}

/// The lines of the `heading:` section of a help text, up to the next heading.
fn section<'a>(help: &'a str, heading: &str) -> Vec<&'a str> {
    let mut lines = help.lines().skip_while(|line| *line != format!("{heading}:"));
    lines.next();
    lines.take_while(|line| line.is_empty() || line.starts_with(' ')).collect()
}

/// The commands whose exit status says more than success or failure say so in their help
/// (the text once sat on their flags' struct, where clap never showed it).
#[test]
fn plan_and_status_help_give_their_exit_status() {
    assert!(help(&["plan"]).contains("2 when a metric was missing"), "{}", help(&["plan"]));
    assert!(help(&["status"]).contains("2 it does not"), "{}", help(&["status"]));
}

/// Issue 17: `--kubeconfig` and `--context` were global, so `check`, `simulate` and `demo`
/// listed them among their own flags although none of them opens a StatefulSet.
#[test]
fn kubernetes_flags_show_only_where_a_statefulset_is_opened_under_their_own_heading() {
    for path in [&["check"][..], &["simulate"], &["demo"], &["snapshot", "list"]] {
        let text = help(path);
        assert!(!text.contains("--kubeconfig"), "{path:?} shows --kubeconfig:\n{text}");
        assert!(!text.contains("--context"), "{path:?} shows --context:\n{text}");
        assert!(text.contains("--log-format"), "{path:?} lost the global --log-format:\n{text}");
    }
    for path in [&["plan"][..], &["run"], &["failover"], &["snapshot", "now"]] {
        let text = help(path);
        let kubernetes = section(&text, "Kubernetes").join("\n");
        assert!(
            kubernetes.contains("--kubeconfig <FILE>") && kubernetes.contains("--context <NAME>"),
            "{path:?}: no Kubernetes section with both flags:\n{text}"
        );
        let flags: Vec<&str> = section(&text, "Kubernetes")
            .into_iter()
            .filter(|line| line.trim_start().starts_with("--"))
            .collect();
        assert_eq!(flags.len(), 2, "{path:?}: the Kubernetes heading holds only its two:\n{text}");
        let options = section(&text, "Options").join("\n");
        assert!(!options.contains("--kubeconfig"), "{path:?}: --kubeconfig under Options:\n{text}");
    }
    // And they still reach the command that uses them.
    let parsed = Cli::try_parse_from([
        "redis-autopilot",
        "plan",
        "--policy",
        "p.yaml",
        "--kubeconfig",
        "k.yaml",
        "--context",
        "prod",
    ]);
    assert!(parsed.is_ok(), "{parsed:?}");
    let refused = Cli::try_parse_from(["redis-autopilot", "check", "p.yaml", "--context", "prod"]);
    assert!(refused.is_err(), "check takes no --context");
}

/// Every argument of every command, `(command path, argument id)`, with no help text.
fn undocumented(command: &clap::Command, path: &str, found: &mut Vec<String>) {
    for arg in command.get_arguments() {
        let id = arg.get_id().as_str();
        if id == "help" || id == "version" {
            continue;
        }
        let empty = |text: Option<&clap::builder::StyledStr>| {
            text.is_none_or(|text| text.to_string().trim().is_empty())
        };
        if empty(arg.get_help()) && empty(arg.get_long_help()) {
            found.push(format!("{path} {id}"));
        }
    }
    for sub in command.get_subcommands() {
        if sub.get_name() == "help" {
            continue;
        }
        undocumented(sub, &format!("{path} {}", sub.get_name()), found);
    }
}

/// Issue 17: `--policy` under every `snapshot` subcommand, `restore <ID>`, `snapshot list
/// --output` and `failover --output` had empty descriptions. A new argument without one
/// fails here.
#[test]
fn every_argument_of_every_command_says_what_it_is_for() {
    let mut found = Vec::new();
    undocumented(&cli(), "redis-autopilot", &mut found);
    assert!(found.is_empty(), "arguments with no help text:\n{}", found.join("\n"));
}

/// Issue 17: `run --policy FILE` was `unexpected argument` while every other command takes
/// `--policy`. `run` reads a directory or one file, so both spellings name the same thing.
#[test]
fn run_takes_policy_as_well_as_policies() {
    for flag in ["--policies", "--policy"] {
        let parsed = Cli::try_parse_from(["redis-autopilot", "run", flag, "policies/a.yaml"]);
        assert!(parsed.is_ok(), "run {flag}: {}", parsed.unwrap_err());
        // Both land in the one value the daemon reads, a directory or a file.
        let matches = cli().get_matches_from(["redis-autopilot", "run", flag, "one.yaml"]);
        let (_, run) = matches.subcommand().expect("a subcommand");
        let path = run.get_one::<std::path::PathBuf>("policies");
        assert_eq!(path.map(|p| p.as_path()), Some(std::path::Path::new("one.yaml")), "{flag}");
    }
    let text = help(&["run"]);
    assert!(text.contains("--policies <PATH>") && text.contains("--policy"), "{text}");
}
