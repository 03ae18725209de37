//! The command line: one module per subcommand, each with its own `Args` and `run`, and
//! `table`, the one way they print tables and sizes for people. `--output json` keys are
//! camelCase everywhere (`tests/cli_json.rs`). Errors are reported here, at the edge, with
//! their whole chain.

mod check;
mod demo;
mod failover;
mod pause;
mod plan;
mod policy_arg;
mod run;
mod simulate;
mod snapshot;
mod status;
mod table;
mod trace;
mod tune;

use std::path::Path;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// Keeps Redis healthy, right-sized and backed up: samples every instance, decides from
/// declarative policies, acts, and explains every decision.
#[derive(Debug, Parser)]
#[command(name = "redis-autopilot", version, propagate_version = true)]
pub struct Cli {
    /// Log format on stderr: `text` for people, `json` for log pipelines. The level comes from
    /// `RUST_LOG` (default `info`).
    #[arg(long, global = true, value_enum, default_value_t = LogFormat::Text)]
    log_format: LogFormat,
    #[command(subcommand)]
    command: Command,
}

/// How to reach the Kubernetes API, on the commands that open a policy's StatefulSet target
/// (`plan`, `run`, `failover`, `snapshot now`), under a heading of their own; the commands
/// that never open one (`check`, `simulate`, `demo`, the object-store-only snapshot
/// commands) do not take them.
#[derive(Debug, Clone, Default, clap::Args)]
#[command(next_help_heading = "Kubernetes")]
pub struct KubeArgs {
    /// Kubeconfig for StatefulSet targets [default: $KUBECONFIG or ~/.kube/config, else the
    /// in-cluster service account].
    #[arg(long, value_name = "FILE")]
    kubeconfig: Option<std::path::PathBuf>,
    /// Kubeconfig context for StatefulSet targets [default: its current context].
    #[arg(long, value_name = "NAME")]
    context: Option<String>,
}

impl KubeArgs {
    fn options(self) -> crate::cluster::kubernetes::ClientOptions {
        crate::cluster::kubernetes::ClientOptions {
            kubeconfig: self.kubeconfig,
            context: self.context,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum LogFormat {
    Text,
    Json,
}

/// Structured logs on stderr, so stdout stays the command's own output. Colours only when
/// stderr is a terminal: in a file, a pipe or a log collector they are escape-code noise.
fn init_logging(format: LogFormat) {
    use std::io::IsTerminal as _;

    init_logging_to(format, std::io::stderr, std::io::stderr().is_terminal());
}

/// Logs to `writer` (the demo's goes to a file, so the view stays readable).
fn init_logging_to<W>(format: LogFormat, writer: W, ansi: bool)
where
    W: for<'w> tracing_subscriber::fmt::MakeWriter<'w> + Send + Sync + 'static,
{
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder =
        tracing_subscriber::fmt().with_env_filter(filter).with_writer(writer).with_ansi(ansi);
    // A second initialisation (tests calling `run` twice) is harmless: keep the first.
    let _ = match format {
        LogFormat::Text => builder.try_init(),
        LogFormat::Json => builder.json().flatten_event(true).try_init(),
    };
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Validate policy files; print every problem as FILE:LINE:COL: field.path: message.
    Check(check::Args),
    /// Replay a recorded load trace against a policy and the Kubernetes HPA, side by side.
    Simulate(simulate::Args),
    /// Search a policy's scaling settings on a load trace; print the Pareto frontier against
    /// the HPA and write the chosen policy.
    Tune(tune::Args),
    /// Generate synthetic load traces (diurnal, flash crowds, slow ramp) for `simulate`.
    Trace(trace::Args),
    /// Sample a policy's instances now and show what would be done and why; never acts.
    ///
    /// Exit status: 0 when every metric had data, 2 when a metric was missing (the decision
    /// then never scales down), 1 on errors (invalid policy, unreadable secret).
    ///
    /// Example: redis-autopilot plan --policy policies/session-cache.yaml --fill
    Plan(plan::Args),
    /// Run the daemon: sample -> decide -> act for every policy in a directory (or one file)
    /// and, with --resources, every RedisPolicy object.
    Run(run::Args),
    /// Fail the master over to the best replica (or --to), now; --graceful loses no write.
    Failover(failover::Args),
    /// Watch it work on one machine: a local redis-server fleet, trace-driven load, live view.
    Demo(demo::Args),
    /// Take, list, verify, restore or prune RDB snapshots (`spec.snapshots`).
    Snapshot(snapshot::Args),
    /// Show a deployment now: master and epoch, members, health, leader, pause, last actions.
    ///
    /// Exit status: 0 the master serves, 2 it does not (or none is recorded), 1 the status could
    /// not be read.
    ///
    /// Examples: redis-autopilot status --policy policies/session-cache.yaml
    ///           kubectl autopilot status session-cache -n cache
    Status(status::Args),
    /// Stop acting on one RedisPolicy object (the pause annotation); it is still sampled and
    /// decided, and its status says Paused.
    Pause(pause::Args),
    /// Act again on a RedisPolicy object paused with `pause`.
    Resume(pause::Args),
    /// Print the RedisPolicy CustomResourceDefinition (YAML) for `kubectl apply -f -`.
    Crd,
}

/// How a subcommand prints its result.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum Output {
    /// Aligned text for people.
    Table,
    /// One JSON document for scripts.
    Json,
}

/// The async runtime a subcommand runs its work on.
fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    use anyhow::Context as _;
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")
}

/// Writes one block of output to stdout; a closed pipe surfaces as an error `run` knows.
fn emit(text: impl std::fmt::Display) -> anyhow::Result<()> {
    use std::io::Write as _;
    let mut out = std::io::stdout().lock();
    writeln!(out, "{text}").and_then(|()| out.flush())?;
    Ok(())
}

/// Loads a policy, or fails with every problem in it, one `FILE:LINE:COL: field: message` per line.
fn load_policy_or_report(path: &Path) -> anyhow::Result<crate::policy::Policy> {
    crate::policy_files::load_policy(path).map_err(|diagnostics| {
        let lines: Vec<String> = diagnostics.iter().map(ToString::to_string).collect();
        anyhow::anyhow!("{} is not a valid policy:\n{}", path.display(), lines.join("\n"))
    })
}

/// `crd`: the RedisPolicy CustomResourceDefinition, as `deploy/base/crd.yaml` ships it.
fn print_crd() -> anyhow::Result<ExitCode> {
    use anyhow::Context as _;
    let yaml = crate::resource::crd::yaml().context("cannot write the CRD as YAML")?;
    emit(yaml.trim_end())?;
    Ok(ExitCode::SUCCESS)
}

/// The name kubectl runs the binary under as a plugin (`kubectl autopilot ...`).
pub const KUBECTL_PLUGIN: &str = "kubectl-autopilot";

/// Parses the command line. Installed as `kubectl-autopilot` (a copy or a symlink), the
/// binary is a kubectl plugin: the same commands, whose help and errors say `kubectl
/// autopilot`, taking resource names with kubectl's `-n/--namespace`, `--context` and
/// `--kubeconfig`.
fn parse() -> Cli {
    use clap::{CommandFactory as _, FromArgMatches as _};
    let invoked = std::env::args_os().next().unwrap_or_default();
    let plugin = Path::new(&invoked).file_name().is_some_and(|name| name == KUBECTL_PLUGIN);
    if !plugin {
        return Cli::parse();
    }
    let matches =
        Cli::command().name("kubectl autopilot").bin_name("kubectl autopilot").get_matches();
    Cli::from_arg_matches(&matches).unwrap_or_else(|error| error.exit())
}

/// Parses the command line, runs the subcommand, and turns its outcome into an exit code.
pub fn run() -> ExitCode {
    let cli = parse();
    // The demo logs to a file of its own (`demo::run`).
    if !matches!(cli.command, Command::Demo(_)) {
        init_logging(cli.log_format);
    }
    // The status an error exits with: `plan` keeps 2 for "a metric was missing", so its
    // errors exit 1, as its help says.
    let (outcome, failure) = match cli.command {
        Command::Check(args) => (check::run(args), 2),
        Command::Simulate(args) => (simulate::run(args), 2),
        Command::Tune(args) => (tune::run(args), 2),
        Command::Trace(args) => (trace::run(args), 2),
        Command::Plan(args) => (plan::run(args), 1),
        Command::Run(args) => (run::run(args), 1),
        Command::Demo(args) => (demo::run(args), 1),
        Command::Failover(args) => (failover::run(args), 1),
        Command::Snapshot(args) => (snapshot::run(args), 1),
        Command::Status(args) => (status::run(args), 1),
        Command::Pause(args) => (pause::run(args, true), 1),
        Command::Resume(args) => (pause::run(args, false), 1),
        Command::Crd => (print_crd(), 1),
    };
    match outcome {
        Ok(code) => code,
        // The reader went away (`plan | head`): nothing left to say, and nothing went wrong.
        Err(error)
            if error
                .downcast_ref::<std::io::Error>()
                .is_some_and(|e| e.kind() == std::io::ErrorKind::BrokenPipe) =>
        {
            ExitCode::SUCCESS
        }
        Err(error) => {
            // Each cause once: many errors name their source in their own text too.
            eprintln!("error: {}", crate::errors::chain(error.as_ref()));
            ExitCode::from(failure)
        }
    }
}
