//! Actuators: carry decisions out, or only report them. The policy's task calls
//! [`Executor::admit`] before every action and then performs it through its cluster backend;
//! actions of one policy therefore never overlap (one task, one action at a time), and no
//! more than the configured number happen per window however the decisions flap.
//!
//! [`scale`] is the one action path for a scale decision: the daemon's policy loop and the
//! simulator (through [`crate::sim::cluster::SimCluster`]) both call it, so what `simulate`
//! measures is what the daemon does.

mod leadership;

pub use leadership::Leadership;

use std::collections::VecDeque;
use std::time::Duration;

use serde::Serialize;

use crate::cluster::Cluster;
use crate::decide::Memory;
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
    /// Waiting for what must happen first (a snapshot before a scale-down); the decision
    /// stands and is made again next evaluation.
    Deferred { why: String },
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
}

impl Executor {
    /// An executor that always leads (no election).
    pub fn new(mode: Mode, limit: RateLimit) -> Self {
        Self { mode, limit, admitted: VecDeque::new(), leadership: Leadership::always() }
    }

    /// Acts only while `leadership` says this daemon leads; otherwise every action is
    /// [`ActionOutcome::Dropped`].
    pub fn with_leadership(mut self, leadership: Leadership) -> Self {
        self.leadership = leadership;
        self
    }

    pub fn mode(&self) -> Mode {
        self.mode
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
        if self.mode == Mode::Paused {
            return Err(ActionOutcome::Paused);
        }
        if !self.leadership.is_leader() {
            return Err(ActionOutcome::Dropped);
        }
        if self.admitted.len() >= self.limit.max as usize {
            return Err(ActionOutcome::RateLimited);
        }
        self.admitted.push_back(now);
        match self.mode {
            Mode::Apply => Ok(()),
            Mode::DryRun => Err(ActionOutcome::DryRun),
            Mode::Paused => Err(ActionOutcome::Paused),
        }
    }
}

impl Executor {
    /// Admission for health actions (failover, fence, repoint, advertise): the mode decides,
    /// the rate limit does not. They have their own bound (`maxFailoversPerHour`), and a
    /// fence or a repoint delayed by scaling's budget is never safer. A standby drops them,
    /// like every action: only the leader changes roles.
    pub fn admit_health(&self) -> Result<(), ActionOutcome> {
        if self.mode != Mode::Paused && !self.leadership.is_leader() {
            return Err(ActionOutcome::Dropped);
        }
        match self.mode {
            Mode::Apply => Ok(()),
            Mode::DryRun => Err(ActionOutcome::DryRun),
            Mode::Paused => Err(ActionOutcome::Paused),
        }
    }
}

/// Carries out one scale decision `from -> to` decided at `now`: admission, then
/// [`Cluster::scale`], then, only once it succeeded, the record in `memory` that the
/// stabilization and cooldown rules read. The caller keeps its own metrics and logs; an
/// outcome other than `Applied` or `Failed` means the cluster was not called.
pub async fn scale<C: Cluster>(
    executor: &mut Executor,
    cluster: &C,
    memory: &mut Memory,
    from: u16,
    to: u16,
    now: Timestamp,
) -> ActionOutcome {
    if let Err(outcome) = executor.admit(now) {
        return outcome;
    }
    match cluster.scale(to).await {
        Ok(()) => {
            memory.scaling.record_scale(now, from, to);
            ActionOutcome::Applied
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

    #[test]
    fn paused_reports_without_counting() {
        let mut executor = Executor::new(Mode::Paused, limit(1, 60));
        for s in 0..5 {
            assert_eq!(executor.admit(t(s)), Err(ActionOutcome::Paused));
        }
    }
}
