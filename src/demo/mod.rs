//! The embedded default, for anyone with one machine: a local fleet of real `redis-server`s
//! managed by the daemon, a load generator replaying a recorded trace against it, and a live
//! view of load, capacity, the fleet and every decision with its reason.
//!
//! Everything it needs is in the binary (the `policies/local-demo.yaml` policy and the World
//! Cup 1998 trace), so `redis-autopilot demo` runs from any directory; its fleet's data, the
//! daemon's policy directory and its log live in a temporary directory, removed at the end.
//!
//! - [`load`]: the load generator.
//! - [`fleet`]: what the view reads off the fleet (roles, links, lag, ops/s, the record).
//! - [`screen`]: the full-screen view's content and drawing (pure, tested on a test backend).
//! - [`tui`]: the full-screen view on a terminal, with its keys.
//! - [`view`]: plain lines, when stdout is not a terminal (a pipe, a log, CI).

pub mod fleet;
pub mod load;
pub mod screen;
pub mod tui;
pub mod view;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::time::Duration;

use tokio::sync::watch;

use crate::act::{Mode, RateLimit};
use crate::daemon::policy_loop::Shared;
use crate::daemon::supervisor::{DaemonError, RunConfig, run as run_daemon};
use crate::policy::load::load_policy_str;
use crate::policy::{Diagnostic, Policy, Target};
use crate::policy_files::load_policy;
use crate::sample::redis::Endpoint;
use crate::sim::trace::{Millis, Trace, TraceError};

/// The policy the demo runs unless given another: `policies/local-demo.yaml`.
pub const DEFAULT_POLICY: &str = include_str!("../../policies/local-demo.yaml");
/// The trace it replays unless given another.
const DEFAULT_TRACE: &str = include_str!("../../simulations/worldcup98-requests-per-minute.csv");
const DEFAULT_TRACE_NAME: &str = "worldcup98-requests-per-minute.csv (embedded)";
/// The embedded policy's `dataDir`, replaced by the demo's temporary directory.
const DEFAULT_DATA_DIR: &str = "./data/local-demo";
/// The embedded policy's snapshot directory, replaced by one in the demo's directory.
const DEFAULT_BACKUPS: &str = "/tmp/redis-autopilot-local-demo/backups";

/// What the demo runs.
#[derive(Debug, Clone)]
pub struct DemoConfig {
    /// A policy with a `local:` target; `None`: the embedded one.
    pub policy: Option<PathBuf>,
    /// A load trace; `None`: the embedded one.
    pub trace: Option<PathBuf>,
    pub from: Option<String>,
    pub to: Option<String>,
    /// Trace time per second of demo time: 60 plays a minute of the trace every second.
    pub speed: f64,
    /// The trace is scaled so its busiest moment asks this many ops/s.
    pub peak: f64,
    pub listen: SocketAddr,
    pub mode: Mode,
    /// The full-screen view (on a terminal) or plain lines.
    pub full_screen: bool,
    /// The demo's own directory: the fleet's data (embedded policy), the daemon's policy
    /// directory and its log.
    pub scratch: PathBuf,
}

#[derive(Debug, thiserror::Error)]
pub enum DemoError {
    #[error("{name} is not a valid policy:\n{}", lines(.diagnostics))]
    Policy { name: String, diagnostics: Vec<Diagnostic> },
    #[error("the demo needs a `local:` target; {0} has another kind")]
    NotLocal(String),
    #[error(
        "the demo needs `{0}` (from the Debian package `redis-server`): \
         apt-get install redis-server redis-tools"
    )]
    MissingRedisServer(String),
    #[error(transparent)]
    Trace(#[from] TraceError),
    #[error("the trace is empty or all zero: nothing to replay")]
    EmptyTrace,
    #[error(
        "cannot listen on {0} for the daemon's HTTP endpoints ({1}): another demo or daemon may \
         be running; pass --listen 127.0.0.1:PORT with a free port"
    )]
    Listen(SocketAddr, #[source] std::io::Error),
    #[error("cannot prepare the demo's directory `{}`", .0.display())]
    Scratch(PathBuf, #[source] std::io::Error),
    #[error(transparent)]
    Daemon(#[from] DaemonError),
}

fn lines(diagnostics: &[Diagnostic]) -> String {
    diagnostics.iter().map(ToString::to_string).collect::<Vec<_>>().join("\n")
}

/// The demo's directory for this run: under the system's temporary directory, never the
/// current one.
pub fn scratch_dir() -> PathBuf {
    std::env::temp_dir().join(format!("redis-autopilot-demo-{}", std::process::id()))
}

/// The trace as the demo replays it: from its start, looping, at `speed`, its load times a
/// factor `+` and `-` change, skipped ahead by `n`. Shared by the load generator and the view.
pub struct Playback {
    pub trace: Trace,
    pub speed: f64,
    factor_bits: AtomicU64,
    skipped: AtomicI64,
}

impl Playback {
    pub fn new(trace: Trace, speed: f64) -> Self {
        Self {
            trace,
            speed,
            factor_bits: AtomicU64::new(1f64.to_bits()),
            skipped: AtomicI64::new(0),
        }
    }

    /// The trace time played after `elapsed` of demo time.
    pub fn trace_at(&self, elapsed: Duration) -> Millis {
        let span = (self.trace.end() - self.trace.start()).max(1);
        let played = (elapsed.as_secs_f64() * self.speed * 1000.0) as Millis
            + self.skipped.load(Ordering::Relaxed);
        self.trace.start() + played.rem_euclid(span)
    }

    /// Ops/s asked for after `elapsed`.
    pub fn demand(&self, elapsed: Duration) -> f64 {
        self.trace.load_at(self.trace_at(elapsed)) * self.factor()
    }

    pub fn factor(&self) -> f64 {
        f64::from_bits(self.factor_bits.load(Ordering::Relaxed))
    }

    /// Sets the load factor, kept within 0.1x and 10x.
    pub fn set_factor(&self, factor: f64) {
        self.factor_bits.store(factor.clamp(0.1, 10.0).to_bits(), Ordering::Relaxed);
    }

    /// Jumps `by` of trace time ahead.
    pub fn skip(&self, by: Duration) {
        self.skipped.fetch_add(by.as_millis() as Millis, Ordering::Relaxed);
    }
}

/// What the views watch.
pub struct Feed {
    pub shared: Shared,
    pub policy: String,
    pub playback: Arc<Playback>,
}

/// The embedded policy with its `dataDir` and its snapshots in `scratch`.
fn embedded_policy(scratch: &Path) -> String {
    let data = scratch.join("data");
    let backups = scratch.join("backups");
    DEFAULT_POLICY
        .replace(DEFAULT_DATA_DIR, &data.to_string_lossy())
        .replace(DEFAULT_BACKUPS, &backups.to_string_lossy())
}

/// The policy to run, as text, and what to call it in errors.
fn policy_text(config: &DemoConfig) -> Result<(String, Policy), DemoError> {
    match &config.policy {
        Some(path) => {
            let name = path.display().to_string();
            let policy = load_policy(path)
                .map_err(|diagnostics| DemoError::Policy { name: name.clone(), diagnostics })?;
            let text =
                std::fs::read_to_string(path).map_err(|e| DemoError::Scratch(path.clone(), e))?;
            Ok((text, policy))
        }
        None => {
            let text = embedded_policy(&config.scratch);
            let name = "the embedded local-demo policy";
            let policy = load_policy_str(name, &text)
                .map_err(|diagnostics| DemoError::Policy { name: name.to_owned(), diagnostics })?;
            Ok((text, policy))
        }
    }
}

fn load_trace(config: &DemoConfig) -> Result<Trace, DemoError> {
    let trace = match &config.trace {
        Some(path) => Trace::load(path)?,
        None => Trace::parse(DEFAULT_TRACE_NAME, DEFAULT_TRACE.as_bytes())?,
    };
    let mut trace = trace.slice(config.from.as_deref(), config.to.as_deref())?;
    if trace.peak() <= 0.0 {
        return Err(DemoError::EmptyTrace);
    }
    trace.scale(config.peak / trace.peak());
    Ok(trace)
}

/// What the demo checked and prepared before starting anything.
struct Prepared {
    policy: Policy,
    /// The local fleet's first port and data directory.
    base_port: u16,
    data_dir: PathBuf,
    trace: Trace,
    /// The daemon's policy directory, holding only the demo's policy.
    policies: PathBuf,
}

/// Everything that can fail before a process starts: the port, the policy, `redis-server`,
/// the trace, the daemon's policy directory.
fn prepare(config: &DemoConfig) -> Result<Prepared, DemoError> {
    // Before anything starts: a port in use is the most common way a second demo fails.
    drop(
        std::net::TcpListener::bind(config.listen)
            .map_err(|e| DemoError::Listen(config.listen, e))?,
    );
    let (text, policy) = policy_text(config)?;
    let Target::Local { redis_server, base_port, data_dir } = &policy.target else {
        return Err(DemoError::NotLocal(policy.name.clone()));
    };
    if !on_path(redis_server) {
        return Err(DemoError::MissingRedisServer(redis_server.clone()));
    }
    let (base_port, data_dir) = (*base_port, PathBuf::from(data_dir));
    let trace = load_trace(config)?;
    // The daemon reads a directory: give it one holding only this policy.
    let policies = config.scratch.join("policies");
    std::fs::create_dir_all(&policies).map_err(|e| DemoError::Scratch(policies.clone(), e))?;
    std::fs::write(policies.join("demo.yaml"), &text)
        .map_err(|e| DemoError::Scratch(policies.clone(), e))?;
    Ok(Prepared { policy, base_port, data_dir, trace, policies })
}

/// Runs the demo until Ctrl-C (or SIGTERM, or `q` in the full-screen view); returns after the
/// fleet has been stopped. A demo that fails before starting anything leaves nothing behind.
pub async fn run(config: DemoConfig) -> Result<(), DemoError> {
    let Prepared { policy, base_port, data_dir, trace, policies } = match prepare(&config) {
        Ok(prepared) => prepared,
        Err(error) => {
            let _ = std::fs::remove_dir_all(&config.scratch);
            return Err(error);
        }
    };
    let shared = Shared::new();
    let (targets, targets_rx) = watch::channel(Vec::new());
    let (stop, stopped) = watch::channel(false);
    let playback = Arc::new(Playback::new(trace, config.speed));
    let demand = {
        let playback = Arc::clone(&playback);
        move |elapsed: Duration| playback.demand(elapsed)
    };
    let load = tokio::spawn(load::drive(targets_rx, demand, stopped.clone()));
    let feed = Feed { shared: shared.clone(), policy: policy.name.clone(), playback };
    let serving_changed = move |ports: Vec<u16>| {
        let _ = targets.send(ports.into_iter().map(Endpoint::loopback).collect());
    };
    let scaling = policy.scaling.as_ref();
    let fleet_at = tui::FleetAt {
        base_port,
        max_instances: scaling.map_or(1, |s| s.max_replicas),
        data_dir,
        target: scaling.and_then(|s| s.metrics.first()).map_or(0.0, |m| m.target),
    };
    let view = if config.full_screen {
        tokio::spawn(tui::show(feed, fleet_at, serving_changed, stopped))
    } else {
        view::banner(&policy, &config);
        tokio::spawn(view::show(feed, fleet_at, serving_changed, stopped))
    };

    let daemon = run_daemon(
        RunConfig {
            policies: Some(policies.clone()),
            resources: None,
            mode: config.mode,
            listen: config.listen,
            rate_limit: RateLimit { max: 600, window: Duration::from_secs(3600) },
            // The demo posts no alerts; with no token, the webhook stays off.
            webhook: crate::daemon::WebhookAccess::Disabled,
            http: Default::default(),
            kube: Default::default(),
            lease: Default::default(),
        },
        shared,
    )
    .await;
    let _ = stop.send(true);
    let answered = load.await.unwrap_or(0);
    let _ = view.await;
    match &daemon {
        // Its log explains the failure: keep the directory and say where it is.
        Err(_) => view::say(&format!(
            "the daemon's log is in {}",
            config.scratch.join("daemon.log").display()
        )),
        Ok(()) => {
            let _ = std::fs::remove_dir_all(&config.scratch);
            view::farewell(answered);
        }
    }
    daemon.map_err(DemoError::from)
}

/// Whether `binary` (a path, or a name looked up on `PATH`) is an executable file.
fn on_path(binary: &str) -> bool {
    let path = Path::new(binary);
    if path.components().count() > 1 {
        return path.is_file();
    }
    std::env::var_os("PATH")
        .is_some_and(|paths| std::env::split_paths(&paths).any(|dir| dir.join(binary).is_file()))
}

/// The policy is a plain value: shown in the banner.
fn describe(policy: &Policy) -> String {
    match &policy.scaling {
        Some(s) => format!(
            "{} to {} instances (the master and its replicas), target {} ops/s per instance",
            s.min_replicas,
            s.max_replicas,
            crate::decide::format_number(s.metrics.first().map_or(0.0, |m| m.target))
        ),
        None => "no scaling section".to_owned(),
    }
}
