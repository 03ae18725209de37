//! One policy's loop. Two clocks drive it: every `health.probeInterval` a health probe of
//! every instance (failover, fencing, repointing, role labels), and every `sampling.interval`
//! a scaling round (sample, decide, scale). A scaling round samples in a task of its own, so a
//! hung instance that makes a round wait for its timeout never delays the next health probe;
//! and a round starts before a due probe, so a probe that always outlasts its interval (it
//! waits `probeTimeout` for a hung instance) never stops scaling either. A tick that comes
//! more than a period late, or finds its round still sampling, is an overrun: counted in
//! `loop_overruns_total` and logged, at most every 30 s.
//!
//! The loop only orchestrates: it samples, decides, hands each decision to its action path
//! ([`act::scale`], [`crate::act::health`]) and records what became of it (status, metrics,
//! logs, Events). Every *action* happens in this one task, so two actions on the same target
//! are never in flight at once; a reload or an alert is a message to it. Shutdown is checked
//! between steps: an action in flight finishes (every cluster call is bounded by a deadline),
//! and nothing new starts.

use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;

use super::master_watch::MasterWatch;
use super::metrics::Metrics;
use super::snapshots::SnapshotScheduler;
use super::status::{DecisionRecord, Status};
use crate::act::health::HealthActions;
use crate::act::{self, ActionOutcome, DecisionLog, Executor, LogLevel};
use crate::cluster::Cluster;
use crate::decide::health;
use crate::decide::{Decision, Fleet, HealthDecision, Memory, ScalingDecision, decide};
use crate::errors::chain;
use crate::failover::{self, Probe};
use crate::observe::{History, Observation, Timestamp};
use crate::policy::{AlertAction, BeforeAction, Policy, Target};
use crate::resource::status::{LastAction, LastFailover};
use crate::sample::redis::{Access, HEALTH_SECTIONS, RedisSampler};
use crate::sample::{MetricHistory, PolicySampler, SetupError, redis_access};
use crate::snapshot::Snapshotter;

/// What the rest of the daemon can ask of a policy's loop.
#[derive(Debug)]
pub enum Command {
    /// A new valid version of the policy: keep the history and memory, change the rules.
    Reload(Box<Policy>),
    /// An alert the policy maps to an action.
    Alert { alert_name: String, action: AlertAction },
}

/// Handles shared by every policy's loop, the HTTP surface, and code running beside the
/// daemon in its process (the demo).
#[derive(Clone)]
pub struct Shared {
    pub metrics: std::sync::Arc<Metrics>,
    pub status: Status,
    /// What code beside the daemon may ask of it.
    pub requests: super::requests::Requests,
    /// What each policy last saw and did, for its resource's status.
    pub reports: super::report::Reports,
}

impl Shared {
    pub fn new() -> Self {
        Self {
            metrics: std::sync::Arc::new(Metrics::new()),
            status: Status::new(super::status::DEFAULT_CAPACITY),
            requests: super::requests::Requests::new(),
            reports: super::report::Reports::default(),
        }
    }
}

impl Default for Shared {
    fn default() -> Self {
        Self::new()
    }
}

pub struct PolicyLoop<C> {
    policy: Policy,
    cluster: C,
    sampler: Arc<PolicySampler>,
    /// Health probes: the few `INFO` sections failover needs, under `health.probeTimeout`.
    prober: RedisSampler,
    access: Access,
    history: History,
    memory: Memory,
    executor: Executor,
    shared: Shared,
    /// Takes the snapshot `beforeActions: [scaleDown]` asks for.
    snapshots: Option<SnapshotScheduler>,
    /// That snapshot, while it runs or until the scale-down it was for goes ahead.
    before_scale_down: Option<JoinHandle<Result<(), String>>>,
    /// Who this daemon is in the claims it puts on the master record.
    actor: String,
    /// The serving recorded master's address, for the [`MasterWatch`].
    serving_master: Option<(String, u16)>,
    /// Logs each decision: failures at WARN with their chain, repeats once per change.
    decision_log: DecisionLog,
}

impl<C: Cluster> PolicyLoop<C> {
    pub fn new(
        policy: Policy,
        cluster: C,
        executor: Executor,
        shared: Shared,
    ) -> Result<Self, SetupError> {
        let sampler = Arc::new(PolicySampler::new(&policy)?);
        let access = redis_access(&policy)?;
        let prober = prober(&policy, access.clone());
        let history = History::new(policy.history_span(), policy.sampling.interval);
        Ok(Self {
            policy,
            cluster,
            sampler,
            prober,
            access,
            history,
            memory: Memory::default(),
            executor,
            shared,
            snapshots: None,
            before_scale_down: None,
            actor: crate::cluster::kubernetes::lease::default_identity(),
            serving_master: None,
            decision_log: DecisionLog::default(),
        })
    }

    /// Where snapshots a policy takes before its actions come from.
    pub fn with_snapshots(mut self, snapshots: SnapshotScheduler) -> Self {
        self.snapshots = Some(snapshots);
        self
    }

    /// Names this daemon `identity` in the claims it puts on the master record (`run
    /// --identity`; default [`crate::cluster::kubernetes::lease::default_identity`]).
    pub fn with_actor(mut self, identity: &str) -> Self {
        identity.clone_into(&mut self.actor);
        self
    }

    /// Runs until `shutdown` turns true or every command sender is gone. Returns the target,
    /// for the caller to stop explicitly (a local fleet's processes outlive a drop).
    pub async fn run(
        mut self,
        mut commands: mpsc::Receiver<Command>,
        mut shutdown: watch::Receiver<bool>,
    ) -> C {
        let name = self.policy.name.clone();
        self.shared.status.policy_loaded(&name);
        let mut ticker = interval(self.policy.sampling.interval);
        let mut probes = interval(self.policy.health.probe_interval);
        // The scaling round sampling in the background, if one is.
        let mut round: Option<JoinHandle<Observation>> = None;
        let master_watch = MasterWatch::start();
        let mut round_overruns = Overruns::new("scaling");
        let mut probe_overruns = Overruns::new("health");
        // The past of what metrics learn over time (seasonal forecasts, measured bursts), read
        // in the background: a slow Prometheus must not hold up health probes, and rounds
        // sampled meanwhile are learnt as usual.
        let mut history_read = self.read_histories();
        loop {
            master_watch.follow(self.serving_master.clone());
            // Biased: shutdown and commands first, then starting a round (it only spawns its
            // sampling) and taking its result, then a health probe, which runs here and may
            // take `probeTimeout`. Every tick is consumed when it fires, so none starves.
            tokio::select! {
                biased;
                _ = shutdown.changed() => break,
                command = commands.recv() => match command {
                    None => break,
                    Some(Command::Reload(policy)) => {
                        let learnt_before = learnt_configs(&self.policy);
                        self.reload(*policy, &mut ticker, &mut probes);
                        if learnt_configs(&self.policy) != learnt_before {
                            if let Some(read) = history_read.take() {
                                read.abort();
                            }
                            history_read = self.read_histories();
                        }
                    }
                    Some(Command::Alert { alert_name, action }) => {
                        self.alert(&alert_name, action).await;
                    }
                },
                // The master's process went away: probe now, not at the next tick.
                () = master_watch.dropped() => self.check_health().await,
                at = ticker.tick() => {
                    if round_overruns.on_time(&self.shared, &name, at, ticker.period(), round.is_some()) {
                        round = self.start_round().await;
                    }
                }
                observation = wait(&mut round) => {
                    round = None;
                    match observation {
                        Ok(observation) => self.evaluate(observation).await,
                        Err(error) => tracing::error!(policy = %name, %error, "sampling round failed"),
                    }
                }
                histories = wait(&mut history_read) => {
                    history_read = None;
                    if let Ok(histories) = histories {
                        self.seed(&histories);
                    }
                }
                at = probes.tick() => {
                    probe_overruns.on_time(&self.shared, &name, at, probes.period(), false);
                    self.check_health().await;
                }
            }
        }
        if let Some(round) = round {
            round.abort();
        }
        if let Some(read) = history_read {
            read.abort();
        }
        self.shared.status.policy_unloaded(&name);
        tracing::info!(policy = %name, "policy loop stopped");
        self.cluster
    }

    fn reload(
        &mut self,
        policy: Policy,
        ticker: &mut tokio::time::Interval,
        probes: &mut tokio::time::Interval,
    ) {
        match PolicySampler::new(&policy).and_then(|s| Ok((s, redis_access(&policy)?))) {
            Ok((sampler, access)) => {
                self.sampler = Arc::new(sampler);
                self.prober = prober(&policy, access.clone());
                self.access = access;
            }
            Err(error) => {
                tracing::error!(policy = %policy.name, error = %chain(&error), "reload rejected: keeping the running version");
                return;
            }
        }
        if policy.sampling.interval != self.policy.sampling.interval {
            *ticker = interval(policy.sampling.interval);
        }
        if policy.health.probe_interval != self.policy.health.probe_interval {
            *probes = interval(policy.health.probe_interval);
        }
        // The history keeps what was sampled; its size follows the new windows.
        let mut history = History::new(policy.history_span(), policy.sampling.interval);
        for observation in self.history.iter() {
            history.push(observation.clone());
        }
        self.history = history;
        // Rounds already held keep only the old version's fields (`evaluate`): a metric the
        // new version adds starts with an empty window, as it would in a freshly started daemon.
        tracing::info!(policy = %policy.name, "policy reloaded");
        self.policy = policy;
    }

    async fn alert(&mut self, alert_name: &str, action: AlertAction) {
        let name = self.policy.name.clone();
        match action {
            AlertAction::Evaluate => {
                tracing::info!(policy = %name, alert = %alert_name, "alert: evaluating now");
                self.evaluate_now().await;
            }
            AlertAction::ScaleUp(step) => match self.cluster.replicas().await {
                Ok(replicas) => {
                    let at_least = replicas.saturating_add(step);
                    self.memory.scaling.request_scale_up(chrono::Utc::now(), alert_name, at_least);
                    tracing::info!(policy = %name, alert = %alert_name, at_least, "alert: scale-up requested");
                    self.evaluate_now().await;
                }
                Err(error) => {
                    tracing::warn!(policy = %name, alert = %alert_name, error = %chain(&error), "alert: cannot read the replica count");
                }
            },
            AlertAction::Snapshot => {
                // The supervisor hands snapshot alerts to the snapshot scheduler, beside this loop.
                tracing::debug!(policy = %name, alert = %alert_name, "snapshot alert: taken by the snapshot scheduler");
            }
        }
    }

    /// Starts reading the history of every seasonal forecast and measured bursts that name a
    /// query, if any do.
    fn read_histories(&self) -> Option<JoinHandle<Vec<MetricHistory>>> {
        let reads_history = self.policy.scaling.iter().flat_map(|s| &s.metrics).any(|m| {
            m.seasonal.as_ref().is_some_and(|s| s.history.is_some())
                || m.bursts.as_ref().is_some_and(|b| b.history.is_some())
        });
        if !reads_history {
            return None;
        }
        let (sampler, policy) = (Arc::clone(&self.sampler), self.policy.clone());
        Some(tokio::spawn(
            async move { sampler.metric_histories(&policy, chrono::Utc::now()).await },
        ))
    }

    /// Feeds what Prometheus kept to what the metrics learn; a failed read is said and the
    /// metric learns from the rounds alone.
    fn seed(&mut self, histories: &[MetricHistory]) {
        let Some(scaling) = &self.policy.scaling else { return };
        for history in histories {
            let what = history.learns.name();
            match &history.points {
                Ok(points) => {
                    self.memory.scaling.seed(scaling, history.learns, history.metric, points);
                    tracing::info!(policy = %self.policy.name, query = %history.query, points = points.len(), "{what}: history read from Prometheus");
                }
                Err(error) => {
                    tracing::warn!(policy = %self.policy.name, query = %history.query, %error, "{what}: cannot read its history; it learns from the samples alone");
                }
            }
        }
    }

    /// Starts a scaling round's sampling in its own task.
    async fn start_round(&self) -> Option<JoinHandle<Observation>> {
        let members = match self.cluster.members().await {
            Ok(members) => members,
            Err(error) => {
                tracing::warn!(policy = %self.policy.name, error = %chain(&error), "cannot list instances: no evaluation this round");
                return None;
            }
        };
        let endpoints: Vec<_> = members.into_iter().map(|m| m.endpoint).collect();
        let sampler = Arc::clone(&self.sampler);
        Some(tokio::spawn(async move { sampler.round(&endpoints, chrono::Utc::now()).await }))
    }

    /// A whole scaling round in this task (an alert asked for one now).
    async fn evaluate_now(&mut self) {
        if let Some(round) = self.start_round().await {
            match round.await {
                Ok(observation) => self.evaluate(observation).await,
                Err(error) => {
                    tracing::error!(policy = %self.policy.name, %error, "sampling round failed")
                }
            }
        }
    }

    /// decide -> act on one sampled round, each decision recorded with what became of it.
    async fn evaluate(&mut self, mut observation: Observation) {
        let name = self.policy.name.clone();
        let now = observation.at;
        self.shared.metrics.observation(&name, &observation);
        // A policy holds ~300 rounds (5 min at 1 s): whole replies would be ~10 KB per
        // instance-round; the few numbers its metrics read are all `decide` asks of them.
        observation.retain_numbers(&self.policy.redis_fields());
        self.history.push(observation);
        let replicas = match self.cluster.replicas().await {
            Ok(replicas) => replicas,
            Err(error) => {
                tracing::warn!(policy = %name, error = %chain(&error), "cannot read the replica count: no decision this round");
                let why = format!("cannot read the replica count: {}", chain(&error));
                self.shared.reports.update(&name, |r| r.scaling = Some((false, why)));
                return;
            }
        };
        if let Some(decision) =
            decide(&self.policy, &self.history, Fleet { replicas }, &mut self.memory, now)
        {
            self.shared.metrics.decision(&name, decision.kind());
            let action = match &decision {
                ScalingDecision::Hold { replicas, .. } => {
                    // The scale-down a snapshot was being taken for is no longer wanted.
                    self.before_scale_down = None;
                    self.shared.metrics.replicas(&name, *replicas, *replicas);
                    // Words that change only when the decision does: the status is rewritten
                    // on every change, and the numbers move every round.
                    let desired = u32::from(*replicas);
                    self.shared.reports.update(&name, |r| {
                        r.desired = Some(desired);
                        r.scaling = Some((true, format!("holding at {desired} replicas")));
                    });
                    tracing::debug!(policy = %name, reason = %decision.sentence(), "hold");
                    None
                }
                ScalingDecision::Scale { from, to, .. } => {
                    let outcome = match self.snapshot_first(*from, *to).await {
                        Some(outcome) => outcome,
                        None => self.scale(*from, *to, now).await,
                    };
                    let current = if outcome == ActionOutcome::Applied { *to } else { *from };
                    if outcome == ActionOutcome::Applied {
                        self.cluster.explain(decision.kind(), &decision.sentence()).await;
                        let last = LastAction {
                            time: rfc3339(now),
                            what: format!("scale {from} -> {to}"),
                            reason: decision.sentence(),
                        };
                        self.shared.reports.update(&name, |r| {
                            r.desired = Some(u32::from(*to));
                            r.scaling = Some((true, format!("scaled from {from} to {to}")));
                            r.last_scale = Some(last);
                        });
                    }
                    self.shared.metrics.replicas(&name, current, *to);
                    Some(outcome)
                }
            };
            let decision = Decision::from(decision);
            // A hold asks for nothing: `decide` holds every round, logged at DEBUG above.
            let level = action
                .as_ref()
                .map(|outcome| self.decision_log.log(&name, &decision, Some(outcome), now));
            if self.worth_recording(level) {
                self.shared.status.record(DecisionRecord::new(now, &name, decision, action));
            }
        }
        self.shared.status.first_decision(&name);
    }

    /// Whether a decision logged at `level` goes to `/v1/decisions`. The leader records every
    /// one; a standby, which drops every action and decides again on every probe, records a
    /// decision only when it changes, so its ring is not a flood of the same no-ops.
    fn worth_recording(&self, level: Option<LogLevel>) -> bool {
        self.executor.leads() || level != Some(LogLevel::Debug)
    }

    /// One health probe: probe every member, assess, act on what the core decided.
    async fn check_health(&mut self) {
        let name = self.policy.name.clone();
        let probe = match Probe::take(&self.cluster, &self.prober).await {
            Ok(probe) => probe,
            Err(error) => {
                tracing::warn!(policy = %name, error = %chain(&error), "health probe skipped: cannot read the fleet");
                return;
            }
        };
        let now = chrono::Utc::now();
        // Static endpoints have no durable record to keep: their roles are only watched.
        let manage = !matches!(self.policy.target, Target::Endpoints(_));
        let seed_from = self.policy.snapshots.as_ref().and_then(|s| s.bootstrap.as_ref());
        let assessment = health::assess(
            &self.policy.health,
            seed_from,
            probe.input(),
            &mut self.memory.health,
            manage,
            now,
        );
        self.shared.metrics.health(&name, assessment.master_serving, assessment.lagging.len());
        self.report_probe(&probe, assessment.master_serving, now);
        self.serving_master = probe
            .record
            .as_ref()
            .filter(|_| assessment.master_serving)
            .and_then(|record| probe.member(&record.instance))
            .map(|master| (master.endpoint.host.clone(), master.endpoint.port));
        // Opened only for a seed, which is rare: the store's client is not kept between probes.
        let seeds = assessment
            .decisions
            .iter()
            .any(|d| matches!(d, HealthDecision::Seed { .. }))
            .then(|| Snapshotter::new(&self.policy));
        let actions = HealthActions {
            policy: &name,
            cluster: &self.cluster,
            executor: &self.executor,
            context: failover::Context::new(&self.policy, &self.access, &self.actor),
            seeds: seeds.as_ref().map(Result::as_ref),
        };
        for decision in assessment.decisions {
            self.shared.metrics.decision(&name, decision.kind());
            let acted = actions.apply(&mut self.memory.health, &probe, &decision, now).await;
            if let Some(acted) = &acted {
                for (phase, took) in &acted.phases {
                    self.shared.metrics.failover_phase(&name, phase.as_str(), *took);
                }
                self.shared.metrics.action(&name, decision.kind(), &acted.outcome, acted.took);
                if let HealthDecision::Failover { to, epoch, .. } = &decision
                    && acted.outcome == ActionOutcome::Applied
                {
                    let took: Duration = acted.phases.iter().map(|(_, took)| *took).sum();
                    let last = LastFailover {
                        time: rfc3339(now),
                        what: format!("failover to {to} at epoch {epoch}"),
                        reason: decision.sentence(),
                        duration_seconds: Some(took.as_secs_f64()).filter(|s| *s > 0.0),
                    };
                    self.shared.reports.update(&name, |r| r.last_failover = Some(last));
                }
            }
            // `None`: a master down with failover blocked, an alarm rather than an action.
            let outcome = acted.map(|acted| acted.outcome);
            let explained = match &outcome {
                None => true,
                Some(outcome) => {
                    *outcome == ActionOutcome::Applied
                        && !matches!(decision, HealthDecision::Advertise { .. })
                }
            };
            // A standby's view can be a step behind the leader's (a cached record): its
            // Events would contradict what the leader did.
            if explained && self.executor.leads() {
                self.cluster.explain(decision.kind(), &decision.sentence()).await;
            }
            let decision = Decision::from(decision);
            let level = self.decision_log.log(&name, &decision, outcome.as_ref(), now);
            if self.worth_recording(Some(level)) {
                self.shared.status.record(DecisionRecord::new(now, &name, decision, outcome));
            }
        }
        actions.heal(&probe, assessment.master_serving).await;
    }

    /// What this probe says for the policy's status: the record, who answered, and whether
    /// roles are changing (a live claim, or a `FAILOVER` on an instance).
    fn report_probe(&self, probe: &Probe, master_serving: bool, now: Timestamp) {
        let master =
            probe.record.as_ref().map(|record| (record.instance.to_string(), record.epoch));
        let claimed = probe
            .record
            .as_ref()
            .and_then(|record| record.claim.as_ref())
            .is_some_and(|claim| claim.until > now);
        let failing_over = probe.samples.iter().any(|sample| {
            sample.info.as_ref().is_some_and(|info| info.replication.failover_in_progress)
        });
        let answered = probe.samples.iter().filter(|sample| sample.info.is_some()).count();
        let count = |n: usize| u32::try_from(n).unwrap_or(u32::MAX);
        self.shared.reports.update(&self.policy.name, |r| {
            r.master = master;
            r.master_serving = Some(master_serving);
            r.changing_roles = claimed || failing_over;
            r.members = count(probe.members.len());
            r.answered = count(answered);
        });
    }

    /// With `snapshots.beforeActions: [scaleDown]`, a scale-down waits for a snapshot taken for
    /// it, in the background so that health probes go on: `Some` while it runs or when it
    /// failed, `None` once it succeeded (or when none is needed). Dry-run and paused daemons
    /// remove nothing, so they take none.
    async fn snapshot_first(&mut self, from: u16, to: u16) -> Option<ActionOutcome> {
        let wanted = to < from
            && self.executor.mode() == crate::act::Mode::Apply
            && self
                .policy
                .snapshots
                .as_ref()
                .is_some_and(|s| s.before_actions.contains(&BeforeAction::ScaleDown));
        if !wanted {
            return None;
        }
        let Some(snapshots) = self.snapshots.clone() else {
            return Some(ActionOutcome::Failed { error: "no snapshot scheduler".to_owned() });
        };
        let outcome = match self.before_scale_down.take() {
            None => {
                let name = self.policy.name.clone();
                self.before_scale_down = Some(tokio::spawn(async move {
                    snapshots.take_now(&name, "before a scale-down").await.map(drop)
                }));
                ActionOutcome::Deferred { why: "taking a snapshot before scaling down".to_owned() }
            }
            Some(running) if !running.is_finished() => {
                self.before_scale_down = Some(running);
                ActionOutcome::Deferred {
                    why: "a snapshot before scaling down is in flight".to_owned(),
                }
            }
            Some(done) => match done.await {
                Ok(Ok(())) => return None,
                Ok(Err(why)) => ActionOutcome::Failed {
                    error: format!("no snapshot before scaling down ({why}): not scaling down"),
                },
                Err(error) => {
                    ActionOutcome::Failed { error: format!("snapshot task failed: {error}") }
                }
            },
        };
        self.shared.metrics.action(&self.policy.name, "scale", &outcome, None);
        Some(outcome)
    }

    /// The shared action path ([`act::scale`]), timed for the metrics when it reached the
    /// cluster.
    async fn scale(&mut self, from: u16, to: u16, now: Timestamp) -> ActionOutcome {
        let started = Instant::now();
        let context = failover::Context::new(&self.policy, &self.access, &self.actor);
        let hand_over = act::HandOver { health: &self.policy.health, context };
        let (executor, memory) = (&mut self.executor, &mut self.memory);
        let outcome = act::scale(executor, &self.cluster, memory, from, to, now, &hand_over).await;
        let took = matches!(outcome, ActionOutcome::Applied | ActionOutcome::Failed { .. })
            .then(|| started.elapsed());
        self.shared.metrics.action(&self.policy.name, "scale", &outcome, took);
        outcome
    }
}

/// How often a lasting overrun is logged (each one is counted).
const OVERRUN_LOG_EVERY: Duration = Duration::from_secs(30);

/// The overruns of one of the loop's clocks.
struct Overruns {
    clock: &'static str,
    /// Counted since the last log line.
    unlogged: u64,
    logged_at: Option<Instant>,
}

impl Overruns {
    fn new(clock: &'static str) -> Self {
        Self { clock, unlogged: 0, logged_at: None }
    }

    /// Whether the tick scheduled for `at` may start its work: not while `busy` (its last
    /// round still samples). That, or a tick more than a `period` late (the loop was probing
    /// or acting), is an overrun: counted, and logged at most every [`OVERRUN_LOG_EVERY`].
    fn on_time(
        &mut self,
        shared: &Shared,
        policy: &str,
        at: tokio::time::Instant,
        period: Duration,
        busy: bool,
    ) -> bool {
        let late = at.elapsed();
        if !busy && late <= period {
            return true;
        }
        shared.metrics.loop_overrun(policy, self.clock);
        self.unlogged += 1;
        if self.logged_at.is_none_or(|logged| logged.elapsed() >= OVERRUN_LOG_EVERY) {
            let why = if busy {
                "the last round is still sampling (an instance answers slowly or not at all)"
            } else {
                "the loop was busy: a probe waiting for a slow instance, or an action"
            };
            tracing::warn!(
                policy,
                clock = self.clock,
                overruns = self.unlogged,
                ?period,
                ?late,
                why,
                "policy loop overran its interval"
            );
            self.unlogged = 0;
            self.logged_at = Some(Instant::now());
        }
        !busy
    }
}

/// A time as status fields say it (RFC 3339, UTC, milliseconds).
pub fn rfc3339(at: Timestamp) -> String {
    at.to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

fn interval(period: std::time::Duration) -> tokio::time::Interval {
    let mut ticker = tokio::time::interval(period);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    ticker
}

/// The health prober of `policy`.
fn prober(policy: &Policy, access: Access) -> RedisSampler {
    RedisSampler::with_sections(access, policy.health.probe_timeout, HEALTH_SECTIONS)
}

/// Waits for the background task (a round, a history read), if there is one; never
/// completes otherwise.
async fn wait<T>(task: &mut Option<JoinHandle<T>>) -> Result<T, tokio::task::JoinError> {
    match task {
        Some(handle) => handle.await,
        None => std::future::pending().await,
    }
}

/// What each metric learns over time, as configured: a reload that changes it reads the
/// history again.
fn learnt_configs(
    policy: &Policy,
) -> Vec<(Option<crate::policy::Seasonal>, Option<crate::policy::Bursts>)> {
    let metrics = policy.scaling.iter().flat_map(|s| &s.metrics);
    metrics.map(|m| (m.seasonal.clone(), m.bursts.clone())).collect()
}
