//! Actuators: carry decisions out, or only report them. The policy's task calls
//! [`Executor::admit`] before every action and then performs it through its cluster backend;
//! actions of one policy therefore never overlap (one task, one action at a time), and no
//! more than the configured number happen per window however the decisions flap.
//!
//! [`scale`] is the one action path for a scale decision: the daemon's policy loop and the
//! simulator (through [`crate::sim::cluster::SimCluster`]) both call it, so what `simulate`
//! measures is what the daemon does, the scale-down hand-over ([`hand_over`]) included.
//! [`health`] is the one action path for a health decision (failover, promote, fence, repoint,
//! detach, advertise). [`DecisionLog`] logs either kind.

pub mod hand_over;
pub mod health;
mod leadership;
mod pause;
pub mod target;

pub use hand_over::HandOver;
pub use leadership::Leadership;
pub use pause::{Pause, Pauses};

use std::collections::VecDeque;
use std::time::Duration;

use serde::Serialize;

use crate::cluster::{Cluster, ClusterError};
use crate::decide::{Decision, HealthDecision, Memory, ScalingDecision};
use crate::observe::Timestamp;

/// What the daemon does with a decision that asks for an action.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Mode {
    /// Perform actions.
    Apply,
    /// Log and count every action as if performed; change nothing.
    DryRun,
    /// Decide and explain, but neither perform nor pretend: for a human who has taken over.
    Paused,
}

/// What became of one action.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "outcome", rename_all = "snake_case")]
pub enum ActionOutcome {
    /// Executed against the cluster.
    Applied,
    /// Dry-run mode: reported, not executed.
    DryRun,
    /// Paused mode: decided and explained, not executed.
    Paused,
    /// Over the rate limit: the decision stands and is made again next evaluation.
    RateLimited,
    /// Not executed because another daemon holds leadership, or a newer decision superseded it.
    Dropped,
    /// Waiting for what must happen first (a snapshot before a scale-down), or made on a
    /// count someone else has changed since; the decision is made again next evaluation.
    Deferred { why: String },
    /// The target cannot perform the action (a fixed `endpoints:` list cannot scale): the
    /// decision is reported as advice for whoever runs the instances. Not a failure: it is
    /// what such a target always does, and alerts on failed actions must not fire for it.
    Advice { why: String },
    /// Executed and failed; `error` is the whole error chain, for people (never a label).
    Failed { error: String },
}

impl ActionOutcome {
    /// Bounded label for metrics.
    pub fn label(&self) -> &'static str {
        match self {
            ActionOutcome::Applied => "applied",
            ActionOutcome::DryRun => "dry_run",
            ActionOutcome::Paused => "paused",
            ActionOutcome::RateLimited => "rate_limited",
            ActionOutcome::Dropped => "dropped",
            ActionOutcome::Deferred { .. } => "deferred",
            ActionOutcome::Advice { .. } => "advice",
            ActionOutcome::Failed { .. } => "failed",
        }
    }
}

/// At most `max` admitted actions in any `window`.
#[derive(Debug, Clone)]
pub struct RateLimit {
    pub max: u32,
    pub window: Duration,
}

/// Admission for one policy's actions: its mode, its rate limit, and whether this daemon
/// leads.
#[derive(Debug)]
pub struct Executor {
    mode: Mode,
    limit: RateLimit,
    admitted: VecDeque<Timestamp>,
    leadership: Leadership,
    /// This policy paused at runtime: while it is on, the mode is [`Mode::Paused`].
    pause: Pause,
}

impl Executor {
    /// An executor that always leads (no election).
    pub fn new(mode: Mode, limit: RateLimit) -> Self {
        Self {
            mode,
            limit,
            admitted: VecDeque::new(),
            leadership: Leadership::always(),
            pause: Pause::default(),
        }
    }

    /// Acts only while `leadership` says this daemon leads; otherwise every action is
    /// [`ActionOutcome::Dropped`].
    pub fn with_leadership(mut self, leadership: Leadership) -> Self {
        self.leadership = leadership;
        self
    }

    /// Follows `pause`: while it is on, this executor acts as if in [`Mode::Paused`].
    pub fn with_pause(mut self, pause: Pause) -> Self {
        self.pause = pause;
        self
    }

    /// Whether this daemon leads the policy now: a standby decides and explains to itself,
    /// and keeps quiet (no Events, no repeated records).
    pub fn leads(&self) -> bool {
        self.leadership.is_leader()
    }

    /// The mode actions are admitted under now: the daemon's, or `Paused` while this
    /// policy is paused.
    pub fn mode(&self) -> Mode {
        self.pause.over(self.mode)
    }

    /// `Ok` when the caller should perform the action now (it is counted); otherwise what to
    /// report instead. Dry runs count against the limit too, so a dry run shows the same
    /// cadence a real run would have. A standby (not leading) drops every action without
    /// counting it: the leader's cadence is the one that matters.
    pub fn admit(&mut self, now: Timestamp) -> Result<(), ActionOutcome> {
        let window = chrono::Duration::from_std(self.limit.window).unwrap_or(chrono::Duration::MAX);
        while self.admitted.front().is_some_and(|at| now.signed_duration_since(*at) >= window) {
            self.admitted.pop_front();
        }
        let mode = self.mode();
        if mode == Mode::Paused {
            return Err(ActionOutcome::Paused);
        }
        if !self.leadership.is_leader() {
            return Err(ActionOutcome::Dropped);
        }
        if self.admitted.len() >= self.limit.max as usize {
            return Err(ActionOutcome::RateLimited);
        }
        self.admitted.push_back(now);
        match mode {
            Mode::Apply => Ok(()),
            Mode::DryRun => Err(ActionOutcome::DryRun),
            Mode::Paused => Err(ActionOutcome::Paused),
        }
    }

    /// Gives back the last admission: the action turned out to be one the target cannot
    /// perform, so it changed nothing and must not use up the budget of those that can.
    fn refund(&mut self) {
        self.admitted.pop_back();
    }
}

impl Executor {
    /// Admission for health actions (failover, fence, repoint, advertise): the mode decides,
    /// the rate limit does not. They have their own bound (`maxFailoversPerHour`), and a
    /// fence or a repoint delayed by scaling's budget is never safer. A standby drops them,
    /// like every action: only the leader changes roles.
    pub fn admit_health(&self) -> Result<(), ActionOutcome> {
        let mode = self.mode();
        if mode != Mode::Paused && !self.leadership.is_leader() {
            return Err(ActionOutcome::Dropped);
        }
        match mode {
            Mode::Apply => Ok(()),
            Mode::DryRun => Err(ActionOutcome::DryRun),
            Mode::Paused => Err(ActionOutcome::Paused),
        }
    }
}

/// How a decision and what became of it are logged.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogLevel {
    /// The action failed: WARN, with its error chain.
    Warn,
    Info,
    /// The same as the last one logged (a paused daemon re-deciding every probe): DEBUG.
    Debug,
}

/// Logs decisions: a failed action at WARN with its whole error chain, a performed one at
/// INFO, and one that was not performed (paused, dry run, advice, rate limited, no action)
/// at INFO once per change: while the same decision on the same instances comes back with
/// the same outcome, the repeats go to DEBUG, however many other decisions come between (a
/// standby drops an advertisement for each pod on every probe). A decision not seen for
/// [`Self::FORGET_AFTER`] counts as new again.
#[derive(Debug, Default)]
pub struct DecisionLog {
    /// By decision subject (kind and instances): the outcome last seen, and when. Entries not
    /// seen for [`Self::FORGET_AFTER`] are dropped, so it holds at most what one minute decided.
    last: std::collections::HashMap<String, (&'static str, Timestamp)>,
}

impl DecisionLog {
    /// A decision absent this long is logged again when it returns.
    pub const FORGET_AFTER: Duration = Duration::from_secs(60);

    /// The level for `decision` with `outcome` at `now`, remembering it.
    pub fn level(
        &mut self,
        decision: &Decision,
        outcome: Option<&ActionOutcome>,
        now: Timestamp,
    ) -> LogLevel {
        // What the decision is about, without its reason (which carries a ticking "down
        // for 3.2s").
        let subject = subject(decision);
        match outcome {
            Some(ActionOutcome::Failed { .. }) => return LogLevel::Warn,
            Some(ActionOutcome::Applied) => {
                self.last.remove(&subject);
                return LogLevel::Info;
            }
            _ => {}
        }
        let label = outcome.map_or("none", ActionOutcome::label);
        let forget =
            chrono::Duration::from_std(Self::FORGET_AFTER).unwrap_or(chrono::Duration::MAX);
        self.last.retain(|_, (_, seen)| now.signed_duration_since(*seen) < forget);
        let repeat = self.last.get(&subject).is_some_and(|(last, _)| *last == label);
        self.last.insert(subject, (label, now));
        if repeat { LogLevel::Debug } else { LogLevel::Info }
    }

    /// Logs `decision` of `policy` at the level [`Self::level`] chooses, and returns that
    /// level (DEBUG: a repeat). Role advertisements are bookkeeping: DEBUG unless they fail.
    pub fn log(
        &mut self,
        policy: &str,
        decision: &Decision,
        outcome: Option<&ActionOutcome>,
        now: Timestamp,
    ) -> LogLevel {
        let level = self.level(decision, outcome, now);
        let mut shown = level;
        if matches!(decision, Decision::Health(HealthDecision::Advertise { .. }))
            && level != LogLevel::Warn
        {
            shown = LogLevel::Debug;
        }
        let action = decision.kind();
        let label = outcome.map_or("none", ActionOutcome::label);
        let reason = decision.sentence();
        let scale = match decision {
            Decision::Scaling(ScalingDecision::Scale { from, to, .. }) => {
                Some(format!("{from} -> {to}"))
            }
            Decision::Scaling(ScalingDecision::Hold { .. }) | Decision::Health(_) => None,
        };
        match (shown, outcome) {
            (LogLevel::Warn, Some(ActionOutcome::Failed { error })) => {
                tracing::warn!(policy, action, replicas = scale, outcome = label, %reason, error = %error, "action failed");
            }
            (LogLevel::Debug, _) => {
                tracing::debug!(policy, action, replicas = scale, outcome = label, %reason, "decision");
            }
            _ => {
                let why = match outcome {
                    Some(ActionOutcome::Advice { why } | ActionOutcome::Deferred { why }) => {
                        Some(why.as_str())
                    }
                    _ => None,
                };
                tracing::info!(policy, action, replicas = scale, outcome = label, why, %reason, "decision");
            }
        }
        level
    }
}

/// A decision's kind and the instances or counts it is about, without its reason.
fn subject(decision: &Decision) -> String {
    match decision {
        Decision::Scaling(decision) => match decision {
            ScalingDecision::Hold { replicas, .. } => format!("hold {replicas}"),
            ScalingDecision::Scale { from, to, .. } => format!("scale {from} {to}"),
        },
        Decision::Health(decision) => match decision {
            HealthDecision::Failover { from, to, .. } => {
                format!("failover {} {to}", from.as_deref().unwrap_or("-"))
            }
            HealthDecision::Seed { instance, .. } => format!("seed {instance}"),
            HealthDecision::Promote { instance, .. } => format!("promote {instance}"),
            HealthDecision::MasterDown { master, .. } => format!("masterDown {master}"),
            HealthDecision::Fence { instance, master, .. } => format!("fence {instance} {master}"),
            HealthDecision::Repoint { instance, master, .. } => {
                format!("repoint {instance} {master}")
            }
            HealthDecision::Detach { instance, master, .. } => {
                format!("detach {instance} {master}")
            }
            HealthDecision::Advertise { instance, role, .. } => {
                format!("advertise {instance} {role:?}")
            }
        },
    }
}

/// Carries out one scale decision `from -> to` decided at `now`: admission, then
/// [`hand_over::resize`] (the recorded master handed over first if `to` removes it, then
/// [`Cluster::scale`]), then, only once it succeeded, the record in `memory` that the
/// stabilization and cooldown rules read. The caller keeps its own metrics and logs; an
/// outcome other than `Applied`, `Advice` or `Failed` means the cluster was not called.
/// A target that cannot scale ([`ClusterError::Unsupported`]) yields `Advice`, uncounted by
/// the rate limit.
pub async fn scale<C: Cluster>(
    executor: &mut Executor,
    cluster: &C,
    memory: &mut Memory,
    from: u16,
    to: u16,
    now: Timestamp,
    hand_over: &HandOver<'_>,
) -> ActionOutcome {
    if let Err(outcome) = executor.admit(now) {
        return outcome;
    }
    match hand_over::resize(cluster, from, to, hand_over).await {
        Ok(_) => {
            memory.scaling.record_scale(now, from, to);
            ActionOutcome::Applied
        }
        // Someone else resized the target: their count stands, and the next round decides
        // on it. Nothing was changed, so nothing is spent of the rate limit.
        Err(error @ ClusterError::Resized { .. }) => {
            executor.refund();
            ActionOutcome::Deferred { why: error.to_string() }
        }
        Err(error @ ClusterError::Unsupported { .. }) => {
            executor.refund();
            ActionOutcome::Advice { why: error.to_string() }
        }
        Err(error) => ActionOutcome::Failed { error: crate::errors::chain(&error) },
    }
}

#[cfg(test)]
mod tests {
    use chrono::{TimeZone, Utc};

    use super::*;

    fn t(s: i64) -> Timestamp {
        Utc.timestamp_opt(1_800_000_000 + s, 0).unwrap()
    }

    fn limit(max: u32, secs: u64) -> RateLimit {
        RateLimit { max, window: Duration::from_secs(secs) }
    }

    #[test]
    fn apply_admits_up_to_the_limit_per_window() {
        let mut executor = Executor::new(Mode::Apply, limit(2, 60));
        assert_eq!(executor.admit(t(0)), Ok(()));
        assert_eq!(executor.admit(t(10)), Ok(()));
        assert_eq!(executor.admit(t(20)), Err(ActionOutcome::RateLimited));
        // The first admission leaves the window at t=60.
        assert_eq!(executor.admit(t(59)), Err(ActionOutcome::RateLimited));
        assert_eq!(executor.admit(t(60)), Ok(()));
    }

    #[test]
    fn dry_run_never_admits_but_keeps_the_same_cadence() {
        let mut executor = Executor::new(Mode::DryRun, limit(1, 60));
        assert_eq!(executor.admit(t(0)), Err(ActionOutcome::DryRun));
        assert_eq!(executor.admit(t(1)), Err(ActionOutcome::RateLimited));
        assert_eq!(executor.admit(t(61)), Err(ActionOutcome::DryRun));
    }

    #[test]
    fn a_standby_drops_until_it_leads() {
        let (leader, follower) = tokio::sync::watch::channel(false);
        let mut executor = Executor::new(Mode::Apply, limit(1, 60))
            .with_leadership(Leadership::following(follower));
        assert_eq!(executor.admit(t(0)), Err(ActionOutcome::Dropped));
        leader.send(true).unwrap();
        assert_eq!(executor.admit(t(1)), Ok(()));
        assert_eq!(executor.admit_health(), Ok(()));
        leader.send(false).unwrap();
        assert_eq!(executor.admit(t(100)), Err(ActionOutcome::Dropped));
        assert_eq!(executor.admit_health(), Err(ActionOutcome::Dropped));
    }

    fn scale_decision(from: u16, to: u16) -> Decision {
        let reason = crate::decide::ScalingReason {
            current: from,
            ready: from,
            readings: vec![],
            proposed: to,
            adjustments: vec![],
            result: to,
        };
        ScalingDecision::Scale { from, to, reason }.into()
    }

    fn claims_master(instance: &str) -> Decision {
        HealthDecision::Fence {
            instance: instance.to_owned(),
            master: "m".to_owned(),
            reason: crate::decide::health::HealthReason::ClaimsMaster { master: "m".to_owned() },
        }
        .into()
    }

    /// An endpoints target cannot scale: its scale decisions are advice, not failures, so
    /// the failing-actions alert stays quiet; and advice does not use up the rate limit.
    #[tokio::test]
    async fn an_endpoints_target_scales_as_advice() {
        use crate::cluster::StaticEndpoints;

        let cluster = StaticEndpoints::new(vec![]);
        let mut executor = Executor::new(Mode::Apply, limit(1, 60));
        let mut memory = Memory::default();
        let metrics = crate::daemon::metrics::Metrics::new();
        let (health, access) = (crate::policy::Health::default(), Default::default());
        let context = crate::failover::Context {
            access: &access,
            timeout: Duration::from_secs(1),
            guard: None,
            actor: "test",
        };
        let hand_over = HandOver { health: &health, context };
        for round in 0..3 {
            let outcome =
                scale(&mut executor, &cluster, &mut memory, 3, 5, t(round), &hand_over).await;
            assert_eq!(
                outcome,
                ActionOutcome::Advice { why: "endpoints targets cannot scale".to_owned() }
            );
            metrics.action("api", "scale", &outcome, None);
        }
        let text = metrics.encode().expect("metrics");
        assert!(text.contains(r#"kind="scale",outcome="advice"} 3"#), "{text}");
        assert!(!text.contains(r#"outcome="failed""#), "{text}");
        assert_eq!(executor.admit(t(4)), Ok(()), "advice used no admission");
    }

    #[test]
    fn a_failed_action_is_a_warning_every_time() {
        let mut log = DecisionLog::default();
        let failed = ActionOutcome::Failed { error: "scale: forbidden".to_owned() };
        for s in 0..3 {
            assert_eq!(log.level(&scale_decision(3, 5), Some(&failed), t(s)), LogLevel::Warn);
        }
        assert_eq!(
            log.level(&scale_decision(3, 5), Some(&ActionOutcome::Applied), t(4)),
            LogLevel::Info
        );
    }

    /// Paused, the health core re-decides every probe (250 ms): the same decision is logged
    /// once, a change at once, and a decision that comes back after a while once more.
    #[test]
    fn a_repeated_decision_is_logged_once_per_change() {
        let mut log = DecisionLog::default();
        let paused = Some(&ActionOutcome::Paused);
        let at = |ms: i64| t(0) + chrono::Duration::milliseconds(ms);
        assert_eq!(log.level(&claims_master("a"), paused, at(0)), LogLevel::Info);
        for probe in 1..40 {
            assert_eq!(log.level(&claims_master("a"), paused, at(probe * 250)), LogLevel::Debug);
        }
        assert_eq!(log.level(&claims_master("b"), paused, at(10_000)), LogLevel::Info);
        assert_eq!(log.level(&claims_master("b"), None, at(10_250)), LogLevel::Info);
        assert_eq!(log.level(&claims_master("b"), None, at(10_500)), LogLevel::Debug);
        // Scale decisions are remembered apart from health ones.
        assert_eq!(log.level(&scale_decision(3, 4), paused, at(10_500)), LogLevel::Info);
        // Absent for longer than FORGET_AFTER: new again.
        assert_eq!(log.level(&claims_master("b"), None, at(80_000)), LogLevel::Info);
    }

    /// A standby drops a decision for each of several instances on every probe: each is
    /// reported once, however they interleave, not once per probe.
    #[test]
    fn interleaved_repeats_of_several_instances_are_each_reported_once() {
        let mut log = DecisionLog::default();
        let dropped = Some(&ActionOutcome::Dropped);
        let at = |ms: i64| t(0) + chrono::Duration::milliseconds(ms);
        for instance in ["a", "b", "c"] {
            assert_eq!(log.level(&claims_master(instance), dropped, at(0)), LogLevel::Info);
        }
        for probe in 1..40 {
            for instance in ["a", "b", "c"] {
                let level = log.level(&claims_master(instance), dropped, at(probe * 250));
                assert_eq!(level, LogLevel::Debug, "probe {probe}, {instance}");
            }
        }
    }

    #[test]
    fn paused_reports_without_counting() {
        let mut executor = Executor::new(Mode::Paused, limit(1, 60));
        for s in 0..5 {
            assert_eq!(executor.admit(t(s)), Err(ActionOutcome::Paused));
        }
    }
}
