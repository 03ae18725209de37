//! Actuators: carry decisions out, or only report them. The policy's task calls
//! [`Executor::admit`] before every action and then performs it through its cluster backend;
//! actions of one policy therefore never overlap (one task, one action at a time), and no
//! more than the configured number happen per window however the decisions flap.
//!
//! [`scale`] is the one action path for a scale decision: the daemon's policy loop and the
//! simulator (through [`crate::sim::cluster::SimCluster`]) both call it, so what `simulate`
//! measures is what the daemon does.

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

/// Admission for one policy's actions: its mode and its rate limit.
#[derive(Debug)]
pub struct Executor {
    mode: Mode,
    limit: RateLimit,
    admitted: VecDeque<Timestamp>,
}

impl Executor {
    pub fn new(mode: Mode, limit: RateLimit) -> Self {
        Self { mode, limit, admitted: VecDeque::new() }
    }

    pub fn mode(&self) -> Mode {
        self.mode
    }

    /// `Ok` when the caller should perform the action now (it is counted); otherwise what to
    /// report instead. Dry runs count against the limit too, so a dry run shows the same
    /// cadence a real run would have.
    pub fn admit(&mut self, now: Timestamp) -> Result<(), ActionOutcome> {
        let window = chrono::Duration::from_std(self.limit.window).unwrap_or(chrono::Duration::MAX);
        while self.admitted.front().is_some_and(|at| now.signed_duration_since(*at) >= window) {
            self.admitted.pop_front();
        }
        if self.mode == Mode::Paused {
            return Err(ActionOutcome::Paused);
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
    /// fence or a repoint delayed by scaling's budget is never safer.
    pub fn admit_health(&self) -> Result<(), ActionOutcome> {
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
    fn paused_reports_without_counting() {
        let mut executor = Executor::new(Mode::Paused, limit(1, 60));
        for s in 0..5 {
            assert_eq!(executor.admit(t(s)), Err(ActionOutcome::Paused));
        }
    }
}
