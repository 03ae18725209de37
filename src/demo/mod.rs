//! The embedded default, for anyone with one machine: a local fleet of real `redis-server`s
//! managed by the daemon, a load generator replaying a recorded trace against it, and a live
//! view of load, replicas and every decision with its reason. Ctrl-C stops all of it.
//!
//! - [`load`]: the load generator.
//! - [`view`]: the live terminal view.

pub mod load;
pub mod view;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use tokio::sync::watch;

use crate::act::{Mode, RateLimit};
use crate::daemon::policy_loop::Shared;
use crate::daemon::supervisor::{DaemonError, RunConfig, run as run_daemon};
use crate::policy::{Diagnostic, Policy, Target};
use crate::policy_files::load_policy;
use crate::sample::redis::Endpoint;
use crate::sim::trace::{Trace, TraceError};

/// What the demo runs.
#[derive(Debug, Clone)]
pub struct DemoConfig {
    /// A policy with a `local:` target.
    pub policy: PathBuf,
    pub trace: PathBuf,
    pub from: Option<String>,
    pub to: Option<String>,
    /// Trace time per second of demo time: 60 plays a minute of the trace every second.
    pub speed: f64,
    /// The trace is scaled so its busiest moment asks this many ops/s.
    pub peak: f64,
    pub listen: SocketAddr,
    pub mode: Mode,
}

#[derive(Debug, thiserror::Error)]
pub enum DemoError {
    #[error("{} is not a valid policy:\n{}", .0.display(), lines(.1))]
    Policy(PathBuf, Vec<Diagnostic>),
    #[error("the demo needs a `local:` target; {0} has another kind")]
    NotLocal(PathBuf),
    #[error(
        "the demo needs `{0}` (from the Debian package `redis-server`): \
         apt-get install redis-server redis-tools"
    )]
    MissingRedisServer(String),
    #[error(transparent)]
    Trace(#[from] TraceError),
    #[error("the trace is empty or all zero: nothing to replay")]
    EmptyTrace,
    #[error("cannot prepare the demo's policy directory `{}`", .0.display())]
    Scratch(PathBuf, #[source] std::io::Error),
    #[error(transparent)]
    Daemon(#[from] DaemonError),
}

fn lines(diagnostics: &[Diagnostic]) -> String {
    diagnostics.iter().map(ToString::to_string).collect::<Vec<_>>().join("\n")
}

/// Runs the demo until Ctrl-C (or SIGTERM); returns after the fleet has been stopped.
pub async fn run(config: DemoConfig) -> Result<(), DemoError> {
    let policy =
        load_policy(&config.policy).map_err(|d| DemoError::Policy(config.policy.clone(), d))?;
    let Target::Local { redis_server, base_port, .. } = &policy.target else {
        return Err(DemoError::NotLocal(config.policy.clone()));
    };
    if !on_path(redis_server) {
        return Err(DemoError::MissingRedisServer(redis_server.clone()));
    }
    let mut trace =
        Trace::load(&config.trace)?.slice(config.from.as_deref(), config.to.as_deref())?;
    if trace.peak() <= 0.0 {
        return Err(DemoError::EmptyTrace);
    }
    trace.scale(config.peak / trace.peak());

    // The daemon reads a directory: give it one holding only this policy.
    let scratch = std::env::temp_dir().join(format!("redis-autopilot-demo-{}", std::process::id()));
    std::fs::create_dir_all(&scratch).map_err(|e| DemoError::Scratch(scratch.clone(), e))?;
    std::fs::copy(&config.policy, scratch.join("demo.yaml"))
        .map_err(|e| DemoError::Scratch(scratch.clone(), e))?;

    let shared = Shared::new();
    let (targets, targets_rx) = watch::channel(Vec::new());
    let (stop, stopped) = watch::channel(false);
    let base_port = *base_port;
    let speed = config.speed;
    let span = (trace.end() - trace.start()).max(1);
    let demand = {
        let trace = trace.clone();
        // The trace loops, so the demo runs as long as anyone watches.
        move |elapsed: Duration| {
            let played = (elapsed.as_secs_f64() * speed * 1000.0) as i64 % span;
            trace.load_at(trace.start() + played)
        }
    };
    let load = tokio::spawn(load::drive(targets_rx, demand.clone(), stopped.clone()));
    let view = tokio::spawn(view::show(
        view::Feed { shared: shared.clone(), policy: policy.name.clone(), trace, speed },
        move |replicas| {
            let _ = targets.send(local_endpoints(base_port, replicas));
        },
        stopped,
    ));
    view::banner(&policy, &config);

    let daemon = run_daemon(
        RunConfig {
            policies: scratch.clone(),
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
    let _ = std::fs::remove_dir_all(&scratch);
    view::farewell(answered);
    daemon.map_err(DemoError::from)
}

/// The instances `0..replicas` of a local fleet.
fn local_endpoints(base_port: u16, replicas: u16) -> Vec<Endpoint> {
    (0..replicas)
        .filter_map(|i| base_port.checked_add(i))
        .map(|port| Endpoint { id: format!("127.0.0.1:{port}"), host: "127.0.0.1".into(), port })
        .collect()
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
            "{} to {} replicas, target {} per replica",
            s.min_replicas,
            s.max_replicas,
            s.metrics.first().map_or(0.0, |m| m.target)
        ),
        None => "no scaling section".to_owned(),
    }
}
