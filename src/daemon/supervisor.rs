//! The supervisor: loads the policy directory, starts one [`PolicyLoop`] per policy, serves
//! the HTTP surface, routes alerts to the policy that maps them, applies policy reloads
//! (SIGHUP, or a change noticed by polling the directory), and shuts everything down in order
//! on SIGTERM or SIGINT: stop taking work, let in-flight actions finish, stop the HTTP server.
//!
//! A reload that changes where or how a policy connects (`target`, `auth`, `tls`) restarts
//! its loop: the backend is opened from those, so the old loop stops the way shutdown stops
//! it (its in-flight action finishes) and a new one opens the new target; the durable record
//! lives in the backend and stays. Other edits are swapped into the running loop. Secrets are
//! re-read on SIGHUP and on every poll, by content: a rotated password reaches every holder
//! (see [`secret`]), and the loops of the policies that use it rebuild their clients.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;

use super::http::{
    AlertCommand, AlertRoutes, AlertSink, DaemonView, HttpLimits, WebhookAccess, WebhookAuth,
    WebhookTokenError, router, serve,
};
use super::leader::{Election, LeaseSettings, RELEASE_GRACE as LEASE_RELEASE_GRACE};
use super::policies::{Change, Directory, PolicySet, PolicySource};
use super::policy_loop::{Command, PolicyLoop, Shared};
use super::requests::Request;
use super::resources::{Resources, StatusWriter};
use super::snapshots::SnapshotScheduler;
use crate::act::{self, Executor, Mode, Pauses, RateLimit};
use crate::cluster::kubernetes::policies::PolicyWatch;
use crate::cluster::kubernetes::{ClientOptions, KubeClient};
use crate::errors::chain;
use crate::policy::{Diagnostic, Policy, SecretSource};
use crate::sample::secret;

/// How often the policy directory is read for changes (SIGHUP reloads at once).
const RELOAD_POLL: Duration = Duration::from_secs(2);
/// How long shutdown waits for policy loops to finish their in-flight action.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(30);
/// How often a policy whose target could not be opened is tried again. Until it opens, the
/// daemon may hold the Lease with nothing acting for that target, so it must not wait for an
/// edit of the file.
const RETRY_START: Duration = Duration::from_secs(10);

/// Everything `redis-autopilot run` is told on its command line.
#[derive(Debug, Clone)]
pub struct RunConfig {
    /// A directory of policy files (or one file), if any.
    pub policies: Option<PathBuf>,
    /// RedisPolicy objects to run, if any.
    pub resources: Option<ResourceScope>,
    pub mode: Mode,
    pub listen: SocketAddr,
    pub rate_limit: RateLimit,
    /// How the Alertmanager webhook is reached: a bearer token, explicitly open, or disabled.
    pub webhook: WebhookAccess,
    /// What HTTP callers may hold: connections, header time, requests in flight.
    pub http: HttpLimits,
    /// Where the Kubernetes client configuration comes from (StatefulSet targets only).
    pub kube: ClientOptions,
    /// The Lease that decides which daemon acts on StatefulSet targets.
    pub lease: LeaseSettings,
}

/// Which RedisPolicy objects `run --resources` runs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ResourceScope {
    /// Those of one namespace; `None`: `$POD_NAMESPACE`, else the client's namespace.
    Namespace(Option<String>),
    AllNamespaces,
}

/// How long the start waits for the first list of RedisPolicy objects.
const RESOURCES_SYNC: Duration = Duration::from_secs(30);

#[derive(Debug, thiserror::Error)]
pub enum DaemonError {
    #[error("the policy directory has problems:\n{}", lines(.0))]
    Policies(Vec<Diagnostic>),
    #[error(
        "cannot read RedisPolicy objects (is the CRD installed, deploy/base/crd.yaml, and may \
         the daemon list and watch them?)"
    )]
    Resources(#[source] crate::cluster::kubernetes::KubeError),
    #[error(transparent)]
    Token(WebhookTokenError),
    #[error("cannot listen on {addr}")]
    Listen {
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot install the {0} signal handler")]
    Signal(&'static str, #[source] std::io::Error),
    #[error("cannot start the snapshot scheduler")]
    Scheduler(#[source] tokio_cron_scheduler::JobSchedulerError),
}

fn lines(diagnostics: &[Diagnostic]) -> String {
    diagnostics.iter().map(ToString::to_string).collect::<Vec<_>>().join("\n")
}

struct Running {
    /// The version the loop runs.
    policy: Policy,
    commands: mpsc::Sender<Command>,
    task: JoinHandle<()>,
}

impl Running {
    /// Stops the loop the way shutdown does: between steps, an in-flight action finishing.
    async fn stop(self) {
        drop(self.commands);
        let _ = self.task.await;
    }
}

/// Whether `new` connects differently from `old`: the backend and the clients a loop holds
/// are opened from these, so only a new loop takes them.
fn connects_differently(old: &Policy, new: &Policy) -> bool {
    old.target != new.target || old.auth != new.auth || old.tls != new.tls
}

/// The secrets a policy's loop reads: a change in one rebuilds the loop's clients.
fn uses_secret(policy: &Policy, source: &SecretSource) -> bool {
    let auth = policy.auth.as_ref().map(|auth| &auth.password);
    let prometheus =
        policy.prometheus.as_ref().and_then(|p| p.credentials.as_ref()).map(|c| match c {
            crate::policy::PrometheusCredentials::Bearer(token) => token,
            crate::policy::PrometheusCredentials::Basic { password, .. } => password,
        });
    auth == Some(source) || prometheus == Some(source)
}

/// Runs the daemon until SIGTERM or SIGINT. Returns once every policy loop has stopped.
/// `shared` is where loops publish decisions and metrics; the caller may read it too.
pub async fn run(config: RunConfig, shared: Shared) -> Result<(), DaemonError> {
    let client = std::sync::Arc::new(KubeClient::new(config.kube.clone()));
    let mut sources: Vec<Box<dyn PolicySource>> = Vec::new();
    if let Some(dir) = &config.policies {
        sources.push(Box::new(Directory::new(dir)));
    }
    let watch = match &config.resources {
        Some(scope) => {
            let watch = std::sync::Arc::new(watch_resources(&client, scope).await?);
            sources.push(Box::new(Resources::new(watch.clone())));
            Some(watch)
        }
        None => None,
    };
    let (mut set, problems) = PolicySet::load(sources).map_err(DaemonError::Policies)?;
    let webhook = WebhookAuth::resolve(&config.webhook).map_err(DaemonError::Token)?;
    let listener = tokio::net::TcpListener::bind(config.listen)
        .await
        .map_err(|source| DaemonError::Listen { addr: config.listen, source })?;
    let policies: Vec<Policy> = set.policies().cloned().collect();
    count_rejected(&shared, &set);
    let routes = AlertRoutes::new(&policies);
    // Known to `/v1/decisions` (and awaited by `/readyz`) before HTTP serves: a policy that
    // starts later in the loop below is not unknown meanwhile.
    for policy in &policies {
        shared.status.policy_loaded(&policy.name);
    }
    let (alert_sink, mut alerts) = AlertSink::channel(64);
    let (stop, stopped) = watch::channel(false);
    let mut election = Election::new(client.clone(), config.lease.clone());

    let pauses = Pauses::default();
    let http = {
        let mut stopped = stopped.clone();
        let view =
            DaemonView { identity: election.identity(), mode: config.mode, pauses: pauses.clone() };
        let app = router(
            shared.status.clone(),
            view,
            shared.metrics.clone(),
            alert_sink,
            routes.clone(),
            webhook,
            &config.http,
        );
        let (limits, metrics) = (config.http.clone(), shared.metrics.clone());
        tokio::spawn(serve(listener, app, limits, metrics, async move {
            let _ = stopped.wait_for(|stop| *stop).await;
        }))
    };
    tracing::info!(listen = %config.listen, mode = ?config.mode, policies = policies.len(), "daemon started");

    let mut requests = shared.requests.take_receiver();
    let snapshots = SnapshotScheduler::start(
        config.mode,
        pauses.clone(),
        shared.metrics.clone(),
        shared.reports.clone(),
        client.clone(),
    )
    .await
    .map_err(DaemonError::Scheduler)?;
    let statuses = watch.as_ref().map(|watch| {
        let identity = election.identity();
        let writer = StatusWriter::new(
            client.clone(),
            watch.clone(),
            shared.reports.clone(),
            pauses.clone(),
            identity,
        );
        let task = tokio::spawn(writer.clone().run(stopped.clone()));
        (writer, task)
    });
    let mut running: BTreeMap<String, Running> = BTreeMap::new();
    let mut launch = Launch {
        config: &config,
        shared: &shared,
        stopped: &stopped,
        election: &mut election,
        snapshots: &snapshots,
        routes: &routes,
        pauses: &pauses,
        spec_paused: BTreeMap::new(),
        unstarted: BTreeMap::new(),
        leaders: BTreeMap::new(),
        statuses: statuses.as_ref().map(|(writer, _)| writer.clone()),
    };
    for policy in policies {
        launch.start(&mut running, policy).await;
    }
    launch.report(problems);
    launch.publish(&set);
    let mut resource_changes = watch.as_ref().map(|watch| watch.changes());

    let mut terminate = signal(tokio::signal::unix::SignalKind::terminate(), "SIGTERM")?;
    let mut hangup = signal(tokio::signal::unix::SignalKind::hangup(), "SIGHUP")?;
    let mut poll = tokio::time::interval(RELOAD_POLL);
    poll.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut retry =
        tokio::time::interval_at(tokio::time::Instant::now() + RETRY_START, RETRY_START);
    retry.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = terminate.recv() => { tracing::info!("SIGTERM: shutting down"); break; }
            _ = tokio::signal::ctrl_c() => { tracing::info!("SIGINT: shutting down"); break; }
            _ = hangup.recv() => {
                tracing::info!("SIGHUP: reloading policies and secrets");
                launch.reload(&mut set, &mut running).await;
            }
            _ = poll.tick() => launch.reload(&mut set, &mut running).await,
            Some(()) = changed(&mut resource_changes) => launch.reload(&mut set, &mut running).await,
            _ = retry.tick() => launch.retry(&mut running).await,
            Some(command) = alerts.recv() => route(&running, &snapshots, command).await,
            Some(request) = requests.recv() => answer(&running, &snapshots, &pauses, &shared, request),
        }
    }

    let _ = stop.send(true);
    snapshots.shutdown().await;
    if let Some((_, task)) = statuses {
        let _ = task.await;
    }
    let tasks = running.into_values().map(|r| r.task);
    if tokio::time::timeout(SHUTDOWN_GRACE, futures::future::join_all(tasks)).await.is_err() {
        tracing::warn!("policy loops did not stop within {SHUTDOWN_GRACE:?}; abandoning them");
    }
    election.finish(SHUTDOWN_GRACE).await;
    match http.await {
        Ok(Ok(())) => {}
        Ok(Err(error)) => {
            tracing::warn!(error = %chain(&error), "HTTP server stopped with an error")
        }
        Err(error) => tracing::warn!(error = %error, "HTTP server task failed"),
    }
    tracing::info!("daemon stopped");
    Ok(())
}

/// Starts the watch of the RedisPolicy objects `scope` names, and waits for its first list.
async fn watch_resources(
    client: &KubeClient,
    scope: &ResourceScope,
) -> Result<PolicyWatch, DaemonError> {
    let kube = client.get().await.map_err(DaemonError::Resources)?;
    let namespace = match scope {
        ResourceScope::AllNamespaces => None,
        ResourceScope::Namespace(Some(namespace)) => Some(namespace.clone()),
        ResourceScope::Namespace(None) => Some(
            std::env::var("POD_NAMESPACE")
                .ok()
                .filter(|n| !n.is_empty())
                .unwrap_or_else(|| kube.default_namespace().to_owned()),
        ),
    };
    let watch = PolicyWatch::start(kube, namespace.as_deref());
    watch.wait_synced(RESOURCES_SYNC).await.map_err(DaemonError::Resources)?;
    Ok(watch)
}

/// The next change of the RedisPolicy objects; never, without them.
async fn changed(changes: &mut Option<watch::Receiver<u64>>) -> Option<()> {
    match changes {
        Some(changes) => changes.changed().await.ok(),
        None => std::future::pending().await,
    }
}

/// Publishes how many policy files are not running their current content, and why.
fn count_rejected(shared: &Shared, set: &PolicySet) {
    let counts = set.rejected_counts();
    let metrics = &shared.metrics;
    metrics.policies_rejected("invalid", counts.invalid);
    metrics.policies_rejected("overlap", counts.overlap);
    metrics.policies_rejected("duplicate_name", counts.duplicate_name);
}

fn signal(
    kind: tokio::signal::unix::SignalKind,
    name: &'static str,
) -> Result<tokio::signal::unix::Signal, DaemonError> {
    tokio::signal::unix::signal(kind).map_err(|e| DaemonError::Signal(name, e))
}

/// What starting and reloading policies needs from the daemon.
struct Launch<'a> {
    config: &'a RunConfig,
    shared: &'a Shared,
    stopped: &'a watch::Receiver<bool>,
    election: &'a mut Election,
    snapshots: &'a SnapshotScheduler,
    routes: &'a AlertRoutes,
    pauses: &'a Pauses,
    /// Each policy's `spec.paused` as last applied: a request's pause or resume holds until
    /// the file changes its word.
    spec_paused: BTreeMap<String, bool>,
    /// Policies whose loop could not start (their target did not open), by name.
    unstarted: BTreeMap<String, Policy>,
    /// Each policy's leader gate, for its status.
    leaders: BTreeMap<String, crate::act::Leadership>,
    /// Writes the status of RedisPolicy objects (`run --resources`).
    statuses: Option<StatusWriter>,
}

impl Launch<'_> {
    /// The leader gate of `policy`'s actions, snapshots and alerts, set on the scheduler and
    /// the alert routes; `None` (logged) if the election cannot start.
    async fn leadership(&mut self, policy: &Policy) -> Option<crate::act::Leadership> {
        match self.election.leadership_for(policy).await {
            Ok(leadership) => {
                self.snapshots.set(policy, leadership.clone()).await;
                self.routes.lead(&policy.name, leadership.clone());
                self.leaders.insert(policy.name.clone(), leadership.clone());
                Some(leadership)
            }
            Err(error) => {
                tracing::error!(policy = %policy.name, error = %chain(&error), "cannot start leader election");
                None
            }
        }
    }

    /// Starts one policy's loop and schedules its snapshots. A policy whose target cannot be
    /// opened is logged and skipped (the others keep running), and tried again every
    /// [`RETRY_START`] or at once when its file changes.
    async fn start(&mut self, running: &mut BTreeMap<String, Running>, policy: Policy) {
        let name = policy.name.clone();
        self.follow_spec_pause(&policy);
        // Readiness waits for it from now, started or not.
        self.shared.status.policy_loaded(&name);
        self.unstarted.insert(name.clone(), policy.clone());
        let Some(leadership) = self.leadership(&policy).await else { return };
        let (mode, identity) = (self.config.mode, self.election.identity());
        let cluster = match act::target::open_as(&policy, mode, self.election.client(), &identity)
            .await
        {
            Ok(cluster) => cluster,
            Err(error) => {
                tracing::error!(policy = %name, error = %chain(&error), "cannot open the policy's target");
                return;
            }
        };
        let pause = self.pauses.of(&name);
        self.shared.metrics.paused(&name, pause.is_paused());
        let executor = Executor::new(self.config.mode, self.config.rate_limit.clone())
            .with_leadership(leadership)
            .with_pause(pause);
        let version = policy.clone();
        let policy_loop = match PolicyLoop::new(policy, cluster, executor, self.shared.clone()) {
            Ok(policy_loop) => {
                policy_loop.with_snapshots(self.snapshots.clone()).with_actor(&identity)
            }
            Err(error) => {
                tracing::error!(policy = %name, error = %chain(&error), "cannot start the policy");
                return;
            }
        };
        let (commands, receiver) = mpsc::channel(16);
        let stopped = self.stopped.clone();
        // The loop stops first, so nothing probes, heals or fails over while the target stops.
        let task =
            tokio::spawn(async move { policy_loop.run(receiver, stopped).await.stop().await });
        self.unstarted.remove(&name);
        running.insert(name, Running { policy: version, commands, task });
    }

    /// Applies `spec.paused` when it is new or changed (logged, and published as
    /// `policy_paused`), leaving a pause or resume asked for since alone otherwise.
    fn follow_spec_pause(&mut self, policy: &Policy) {
        let name = &policy.name;
        if self.spec_paused.insert(name.clone(), policy.paused) == Some(policy.paused) {
            return;
        }
        if self.pauses.set(name, policy.paused) {
            if policy.paused {
                tracing::warn!(policy = %name, "spec.paused: sampling and deciding, acting on nothing until the file resumes it");
            } else {
                tracing::info!(policy = %name, "spec.paused is off: acting again");
            }
        }
        self.shared.metrics.paused(name, policy.paused);
    }

    /// Tries again to start every policy that could not.
    async fn retry(&mut self, running: &mut BTreeMap<String, Running>) {
        for policy in std::mem::take(&mut self.unstarted).into_values() {
            tracing::info!(policy = %policy.name, "trying again to start the policy");
            self.start(running, policy).await;
        }
    }

    async fn reload(&mut self, set: &mut PolicySet, running: &mut BTreeMap<String, Running>) {
        // Secrets first: a policy edit below starts from the values read now.
        self.refresh_secrets(running).await;
        let changes = set.reload();
        // Even with nothing to apply: a refused or rejected file may just have been deleted.
        count_rejected(self.shared, set);
        if changes.is_empty() {
            // A text reverted to its running version says nothing, and is valid again.
            self.publish(set);
            return;
        }
        for change in changes {
            match change {
                Change::Added(policy) => {
                    tracing::info!(policy = %policy.name, "policy added");
                    self.start(running, policy).await;
                }
                Change::Replaced(policy) => {
                    match running.get_mut(&policy.name) {
                        Some(r) if connects_differently(&r.policy, &policy) => {
                            tracing::info!(policy = %policy.name, "policy connects differently: restarting its loop");
                            if let Some(old) = running.remove(&policy.name) {
                                old.stop().await;
                            }
                            self.start(running, policy).await;
                        }
                        Some(r) => {
                            self.follow_spec_pause(&policy);
                            r.policy = policy.clone();
                            // Its snapshots and alerts follow the gate of the new version.
                            self.leadership(&policy).await;
                            let _ = r.commands.send(Command::Reload(Box::new(policy))).await;
                        }
                        // Its target failed to open before: try again with the new version.
                        None => self.start(running, policy).await,
                    }
                }
                Change::Removed(name) => {
                    self.snapshots.remove(&name).await;
                    self.leaders.remove(&name);
                    self.shared.reports.remove(&name);
                    // A policy added again under this name starts from its own file's word.
                    self.spec_paused.remove(&name);
                    self.pauses.set(&name, false);
                    if self.unstarted.remove(&name).is_some() {
                        self.shared.status.policy_unloaded(&name);
                    }
                    if let Some(r) = running.remove(&name) {
                        r.stop().await;
                        tracing::info!(policy = %name, "policy removed");
                    }
                    // After its loop stopped: no standby acts while it still might.
                    self.election.release(&name, LEASE_RELEASE_GRACE).await;
                }
                problem => self.report(vec![problem]),
            }
        }
        let policies: Vec<Policy> = set.policies().cloned().collect();
        self.routes.replace(&policies);
        self.publish(set);
    }

    /// Logs the policy texts that do not run, and why.
    fn report(&self, problems: Vec<Change>) {
        for problem in problems {
            match problem {
                Change::Rejected { diagnostics, .. } => {
                    for diagnostic in diagnostics {
                        tracing::error!(%diagnostic, "policy rejected: the running version stays");
                    }
                }
                Change::Refused { conflict, diagnostic, .. } => {
                    tracing::error!(%diagnostic, conflict = conflict.label(), "policy refused: it conflicts with a running policy, which keeps running untouched; it loads once the conflict is gone");
                }
                Change::Unreadable(diagnostics) => {
                    for diagnostic in diagnostics {
                        tracing::error!(%diagnostic, "cannot list the policies: every running policy stays");
                    }
                }
                Change::Added(_) | Change::Replaced(_) | Change::Removed(_) => {}
            }
        }
    }

    /// Tells the status writer what runs, who leads it, and what is refused.
    fn publish(&self, set: &PolicySet) {
        if let Some(statuses) = &self.statuses {
            statuses.update(set, &self.leaders);
        }
    }
}

impl Launch<'_> {
    /// Re-reads every secret; the loops of the policies using one that changed rebuild their
    /// clients with it (what their backend holds follows by itself, see [`secret`]).
    async fn refresh_secrets(&mut self, running: &BTreeMap<String, Running>) {
        for refreshed in secret::refresh() {
            match refreshed {
                secret::Refreshed::Changed(source) => {
                    let from = secret::describe(&source);
                    tracing::info!(secret = %from, "secret changed: re-read");
                    for r in running.values().filter(|r| uses_secret(&r.policy, &source)) {
                        let reload = Command::Reload(Box::new(r.policy.clone()));
                        let _ = r.commands.send(reload).await;
                    }
                }
                secret::Refreshed::Failed(source, error) => {
                    let from = secret::describe(&source);
                    tracing::warn!(secret = %from, error = %chain(&error), "cannot re-read a secret: the last value stays in use");
                }
            }
        }
    }
}

/// Answers a request from beside the daemon ([`super::requests`]). A snapshot runs beside the
/// supervisor, as an alert's does; a pause takes effect at the policy's next action.
fn answer(
    running: &BTreeMap<String, Running>,
    snapshots: &SnapshotScheduler,
    pauses: &Pauses,
    shared: &Shared,
    request: Request,
) {
    match request {
        Request::Snapshot { policy, why, answer } => {
            let snapshots = snapshots.clone();
            tokio::spawn(async move {
                let _ = answer.send(snapshots.take_now(&policy, &why).await);
            });
        }
        Request::Pause { policy, paused, why, answer } => {
            if !running.contains_key(&policy) {
                let _ = answer.send(Err(format!("no policy named `{policy}` is running")));
                return;
            }
            if pauses.set(&policy, paused) {
                if paused {
                    tracing::warn!(policy = %policy, why, "paused: sampling and deciding, acting on nothing until resumed");
                } else {
                    tracing::info!(policy = %policy, why, "resumed: acting again");
                }
            }
            shared.metrics.paused(&policy, paused);
            let _ = answer.send(Ok(()));
        }
    }
}

async fn route(
    running: &BTreeMap<String, Running>,
    snapshots: &SnapshotScheduler,
    command: AlertCommand,
) {
    // Snapshots run beside the policy loop (a transfer can take minutes; evaluations go on).
    if command.action == crate::policy::AlertAction::Snapshot {
        let why = format!("alert {}", command.alert_name);
        return snapshots.trigger(&command.policy, &why).await;
    }
    match running.get(&command.policy) {
        Some(r) => {
            let message = Command::Alert { alert_name: command.alert_name, action: command.action };
            let _ = r.commands.send(message).await;
        }
        None => {
            tracing::warn!(policy = %command.policy, alert = %command.alert_name, "alert for a policy that is not running")
        }
    }
}
