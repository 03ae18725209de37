//! The one action path for a health decision ([`HealthDecision`], made by
//! [`crate::decide::health::assess`]), as [`super::scale`] is for a scale decision: admission
//! ([`Executor::admit_health`]: the mode and leadership decide, not the rate limit), a check
//! that the master record has not moved since the probe, then the failover, promotion or
//! role change through the cluster, and, only once it succeeded, the record in
//! [`HealthMemory`] that the next assessment reads. [`HealthDecision::MasterDown`] is an alarm,
//! not an action: it reaches no cluster.
//!
//! The caller keeps the metrics, the log and the decision record; [`Acted`] says what to count.
//! Every cluster call is bounded by the failover context's deadline, so a decision in flight
//! always ends. A daemon that dies halfway through a failover leaves the record written
//! first; the next probe's "unfinished" rule resumes it.

use std::time::{Duration, Instant};

use super::{ActionOutcome, Executor};
use crate::cluster::{Advertised, Cluster, MasterRecord};
use crate::decide::health::{Evidence, HealthDecision, HealthMemory, HealthReason};
use crate::errors::chain;
use crate::failover::{self, Phase, Probe};
use crate::observe::Timestamp;
use crate::policy::Bootstrap;
use crate::snapshot::{SnapshotError, Snapshotter};

/// What acting on one policy's health decisions goes through: the cluster, the executor that
/// admits each action, the failover context (access, deadlines, who acts), and where a first
/// master is seeded from.
pub struct HealthActions<'a, C> {
    /// The policy's name, for the logs.
    pub policy: &'a str,
    pub cluster: &'a C,
    pub executor: &'a Executor,
    pub context: failover::Context<'a>,
    /// The policy's snapshots, for [`HealthDecision::Seed`]: `Err` says why its destination
    /// cannot be opened; `None` when the policy has none.
    pub seeds: Option<Result<&'a Snapshotter, &'a SnapshotError>>,
}

/// What became of one health action.
#[derive(Debug, Clone, PartialEq)]
pub struct Acted {
    pub outcome: ActionOutcome,
    /// How long it ran against the cluster; `None` when it never reached it (not admitted,
    /// deferred, a member gone), which would otherwise pull the duration histogram to zero.
    pub took: Option<Duration>,
    /// An applied failover's phases, `detecting` first, for the phase metrics.
    pub phases: Vec<(Phase, Duration)>,
}

impl Acted {
    fn without_cluster(outcome: ActionOutcome) -> Self {
        Self { outcome, took: None, phases: Vec::new() }
    }
}

impl<C: Cluster> HealthActions<'_, C> {
    /// Carries out `decision`, made on `probe` at `now`, recording what succeeded in `memory`.
    /// `None` for [`HealthDecision::MasterDown`], which asks for no action.
    pub async fn apply(
        &self,
        memory: &mut HealthMemory,
        probe: &Probe,
        decision: &HealthDecision,
        now: Timestamp,
    ) -> Option<Acted> {
        // A failover needs no record check: its record write is refused if the epoch moved;
        // an advertisement changes no role. The others were decided on the probe's record.
        let acted = match decision {
            HealthDecision::MasterDown { .. } => return None,
            HealthDecision::Failover { from, to, epoch, reason } => {
                let failover = self.fail_over(probe, from.as_deref(), to, *epoch, reason);
                let acted = self.admitted(probe, false, failover).await;
                // A first master replaces nothing: not a failover to count.
                if acted.outcome == ActionOutcome::Applied && from.is_some() {
                    memory.record_failover(now);
                }
                acted
            }
            HealthDecision::Seed { instance, from, reason } => {
                let acted =
                    self.admitted(probe, false, self.seed(probe, instance, from, reason)).await;
                if acted.took.is_some() {
                    memory.record_seed_attempt(now);
                }
                acted
            }
            HealthDecision::Promote { instance, epoch, .. } => {
                self.admitted(probe, true, self.promote(probe, instance, *epoch)).await
            }
            HealthDecision::Fence { instance, master, .. } => {
                self.admitted(probe, true, self.fence(memory, probe, instance, master)).await
            }
            HealthDecision::Repoint { instance, master, .. } => {
                self.admitted(probe, true, self.repoint(probe, instance, master)).await
            }
            HealthDecision::Detach { instance, master, .. } => {
                self.admitted(probe, true, self.detach(memory, probe, instance, master)).await
            }
            HealthDecision::Advertise { instance, role, .. } => {
                self.admitted(probe, false, self.advertise(memory, probe, instance, *role)).await
            }
        };
        Some(acted)
    }

    /// Instances that exited come back as replicas once a master serves (a StatefulSet's
    /// controller does this by itself; a local fleet needs the daemon). Only the leader, in
    /// apply mode, restarts anything.
    pub async fn heal(&self, probe: &Probe, master_serving: bool) {
        if master_serving
            && probe.members.iter().any(|m| m.gone.is_some())
            && self.executor.admit_health().is_ok()
            && let Err(error) = self.cluster.heal().await
        {
            tracing::warn!(policy = %self.policy, error = %chain(&error), "cannot restart exited instances");
        }
    }

    /// Runs `action` (a future: nothing happens until it is awaited) if the executor admits it
    /// and, with `recheck`, the master record is still the probe's.
    async fn admitted(
        &self,
        probe: &Probe,
        recheck: bool,
        action: impl Future<Output = Acted>,
    ) -> Acted {
        if let Err(outcome) = self.executor.admit_health() {
            return Acted::without_cluster(outcome);
        }
        if recheck && let Some(outcome) = self.record_changed(probe).await {
            return Acted::without_cluster(outcome);
        }
        action.await
    }

    /// A failover to `to` at `epoch`, replacing `from` (`None`: a first master).
    async fn fail_over(
        &self,
        probe: &Probe,
        from: Option<&str>,
        to: &str,
        epoch: u64,
        reason: &HealthReason,
    ) -> Acted {
        let policy = self.policy;
        let Some(to) = probe.member(to) else { return missing(to) };
        let started = Instant::now();
        let detection = match reason {
            HealthReason::Down { detection, .. } => Some(detection),
            _ => None,
        };
        // A master that still answers (restarted empty, or answering as a replica) is made a
        // replica of the new one before that one is promoted; one that is down is left.
        let replaced = match (from.and_then(|id| probe.member(id)), detection.map(|d| &d.evidence))
        {
            (None, _) => failover::Replaced::Nothing,
            (Some(old), Some(Evidence::Restarted { .. } | Evidence::NotMaster)) => {
                failover::Replaced::Answering(old)
            }
            (Some(old), _) => failover::Replaced::Down(old),
        };
        match failover::fail_over(self.cluster, &probe.members, replaced, to, epoch, &self.context)
            .await
        {
            Ok(mut timeline) => {
                // From when it last served to the decision, as the reason says ("after 251ms").
                if let Some(detection) = detection {
                    let took = Duration::from_millis(detection.failing_ms);
                    timeline.phases.insert(0, (Phase::Detecting, took));
                }
                tracing::info!(policy = %policy, to = %to.id, epoch, %timeline, "failover done");
                Acted {
                    outcome: ActionOutcome::Applied,
                    took: Some(started.elapsed()),
                    phases: timeline.phases,
                }
            }
            Err(error) => {
                tracing::error!(policy = %policy, to = %to.id, epoch, timeline = %error.timeline, error = %chain(&error), "failover failed: the next probe resumes it");
                ran(started, Err(chain(&error)))
            }
        }
    }

    /// Loads `instance` from the snapshot `from` names, then makes it the first master (a
    /// record at epoch 1, refused if another actor recorded one meanwhile). `latest` with no
    /// snapshot at all starts the fleet empty, as without `bootstrap`; anything else that
    /// fails leaves no master recorded, and the core decides again after `SEED_RETRY`.
    async fn seed(
        &self,
        probe: &Probe,
        instance: &str,
        from: &Bootstrap,
        reason: &HealthReason,
    ) -> Acted {
        let policy = self.policy;
        let Some(target) = probe.member(instance) else { return missing(instance) };
        let snapshotter = match self.seeds {
            Some(Ok(snapshotter)) => snapshotter,
            Some(Err(error)) => {
                let error = format!("cannot open the snapshot destination: {}", chain(error));
                return Acted::without_cluster(ActionOutcome::Failed { error });
            }
            None => {
                let error = "the policy has no snapshot destination to seed from".to_owned();
                return Acted::without_cluster(ActionOutcome::Failed { error });
            }
        };
        let started = Instant::now();
        let manifest = match snapshotter.bootstrap_source(from).await {
            Ok(Some(manifest)) => manifest,
            Ok(None) => {
                tracing::info!(policy = %policy, destination = %snapshotter.destination().url, "no snapshot to bootstrap from: the first master starts empty");
                return self.fail_over(probe, None, instance, 1, reason).await;
            }
            Err(error) => return ran(started, Err(chain(&error))),
        };
        let loaded = snapshotter
            .seed_first_master(
                self.cluster,
                &probe.members,
                target,
                &manifest,
                self.context.timeout,
                &crate::snapshot::Quiet,
            )
            .await;
        match loaded {
            Ok(loaded) => {
                tracing::info!(policy = %policy, instance = %target.id, snapshot = %manifest.id, keys = loaded.keys, bytes = loaded.bytes, took = ?loaded.took, "first master seeded from a snapshot");
                let mut acted = self.fail_over(probe, None, instance, 1, reason).await;
                acted.took = Some(started.elapsed());
                acted
            }
            Err(error) => {
                tracing::error!(policy = %policy, instance = %target.id, snapshot = %manifest.id, error = %chain(&error), "cannot seed the first master: no master is recorded; trying again later");
                ran(started, Err(chain(&error)))
            }
        }
    }

    /// Finishes promoting the recorded master `instance` at `epoch`.
    async fn promote(&self, probe: &Probe, instance: &str, epoch: u64) -> Acted {
        let Some(member) = probe.member(instance) else { return missing(instance) };
        let started = Instant::now();
        let result = failover::promote(self.cluster, member, epoch, &self.context).await;
        ran(started, result.map_err(|e| chain(&e)))
    }

    /// Makes `instance`, which claims master, a replica of `master`, advertised as fenced
    /// until it has resynced.
    async fn fence(
        &self,
        memory: &mut HealthMemory,
        probe: &Probe,
        instance: &str,
        master: &str,
    ) -> Acted {
        let (Some(member), Some(master)) = (probe.member(instance), probe.member(master)) else {
            return missing(instance);
        };
        let started = Instant::now();
        let result = self.cluster.repoint(member, master).await;
        if result.is_ok() {
            memory.record_fenced(instance);
            if self.cluster.advertise(member, Advertised::Fenced).await.is_ok() {
                memory.record_advertised(instance, Advertised::Fenced);
            }
        }
        ran(started, result.map_err(|e| chain(&e)))
    }

    /// Makes `instance`, a replica of something else, a replica of `master`.
    async fn repoint(&self, probe: &Probe, instance: &str, master: &str) -> Acted {
        let (Some(member), Some(master)) = (probe.member(instance), probe.member(master)) else {
            return missing(instance);
        };
        let started = Instant::now();
        let result = self.cluster.repoint(member, master).await;
        ran(started, result.map_err(|e| chain(&e)))
    }

    /// Makes `instance` stop following `master`, whose process is not there: it replicates its
    /// own address (read-only, link down, data kept) until the master is decided on.
    async fn detach(
        &self,
        memory: &mut HealthMemory,
        probe: &Probe,
        instance: &str,
        master: &str,
    ) -> Acted {
        let Some(member) = probe.member(instance) else { return missing(instance) };
        let started = Instant::now();
        let result = self.cluster.repoint(member, member).await;
        if result.is_ok() {
            memory.record_detached(instance, master);
        }
        ran(started, result.map_err(|e| chain(&e)))
    }

    /// Advertises `instance` to clients as `role`.
    async fn advertise(
        &self,
        memory: &mut HealthMemory,
        probe: &Probe,
        instance: &str,
        role: Advertised,
    ) -> Acted {
        let Some(member) = probe.member(instance) else { return missing(instance) };
        let started = Instant::now();
        let result = self.cluster.advertise(member, role).await;
        if result.is_ok() {
            memory.record_advertised(instance, role);
        }
        ran(started, result.map_err(|e| chain(&e)))
    }

    /// A decision that promotes, fences, repoints or detaches was made on the probe's record;
    /// if another actor (the CLI, another daemon) has written the record since, acting on it
    /// would undo their work. Such a decision is deferred (the next probe decides on the new
    /// record), not failed: nothing went wrong.
    async fn record_changed(&self, probe: &Probe) -> Option<ActionOutcome> {
        let why = match self.cluster.fresh_record().await {
            Ok(record) if record == probe.record => return None,
            Ok(record) => format!(
                "the master record changed since the probe (now {}): deciding again",
                MasterRecord::describe(record.as_ref())
            ),
            Err(error) => format!("cannot read the master record: {}", chain(&error)),
        };
        Some(ActionOutcome::Deferred { why })
    }
}

/// An action that reached the cluster at `started`, and how it ended.
fn ran(started: Instant, result: Result<(), String>) -> Acted {
    let outcome = match result {
        Ok(()) => ActionOutcome::Applied,
        Err(error) => ActionOutcome::Failed { error },
    };
    Acted { outcome, took: Some(started.elapsed()), phases: Vec::new() }
}

/// A decision named an instance the member list no longer has (it changed since the probe).
fn missing(instance: &str) -> Acted {
    Acted::without_cluster(ActionOutcome::Failed {
        error: format!("{instance} is no longer a member"),
    })
}

#[cfg(test)]
mod tests {
    use chrono::{TimeZone, Utc};

    use super::*;
    use crate::act::{Mode, RateLimit};
    use crate::cluster::StaticEndpoints;
    use crate::sample::redis::Access;

    fn now() -> Timestamp {
        Utc.timestamp_opt(1_800_000_000, 0).unwrap()
    }

    fn executor(mode: Mode) -> Executor {
        Executor::new(mode, RateLimit { max: 1, window: Duration::from_secs(60) })
    }

    /// A probe that saw no member, and `record`.
    fn probe(record: Option<MasterRecord>) -> Probe {
        Probe { record, members: vec![], samples: vec![] }
    }

    fn master_down() -> HealthDecision {
        HealthDecision::MasterDown {
            master: "redis-0".into(),
            reason: HealthReason::Unfinished { offset: 0 },
        }
    }

    fn repoint() -> HealthDecision {
        HealthDecision::Repoint {
            instance: "redis-1".into(),
            master: "redis-0".into(),
            reason: HealthReason::FollowsOther {
                following: "nothing".into(),
                master: "redis-0".into(),
            },
        }
    }

    fn advertise() -> HealthDecision {
        HealthDecision::Advertise {
            instance: "redis-1".into(),
            role: Advertised::Replica,
            reason: HealthReason::Role { role: Advertised::Replica, detail: "linked up".into() },
        }
    }

    /// Runs `decision`, made on `probe`, through the health path in `mode`.
    async fn apply(mode: Mode, probe: &Probe, decision: &HealthDecision) -> Option<Acted> {
        let cluster = StaticEndpoints::new(vec![]);
        let executor = executor(mode);
        let access = Access::default();
        let context = failover::Context {
            access: &access,
            timeout: Duration::from_secs(1),
            guard: None,
            actor: "test",
        };
        let actions = HealthActions {
            policy: "cache",
            cluster: &cluster,
            executor: &executor,
            context,
            seeds: None,
        };
        actions.apply(&mut HealthMemory::default(), probe, decision, now()).await
    }

    #[tokio::test]
    async fn a_master_down_asks_for_no_action() {
        assert_eq!(apply(Mode::Apply, &probe(None), &master_down()).await, None);
    }

    #[tokio::test]
    async fn paused_and_dry_run_reach_no_cluster() {
        for (mode, outcome) in
            [(Mode::Paused, ActionOutcome::Paused), (Mode::DryRun, ActionOutcome::DryRun)]
        {
            let acted = apply(mode, &probe(None), &repoint()).await;
            assert_eq!(acted, Some(Acted { outcome, took: None, phases: vec![] }));
        }
    }

    /// Acting on a record another actor has replaced would undo their work: a repoint decided
    /// on the probe's record waits for the next probe. An advertisement changes no role and
    /// goes ahead (to find its instance gone from the members).
    #[tokio::test]
    async fn a_record_written_since_the_probe_defers_a_role_change() {
        let seen = probe(Some(MasterRecord { instance: "redis-0".into(), epoch: 3, claim: None }));
        let deferred = ActionOutcome::Deferred {
            why:
                "the master record changed since the probe (now nothing (epoch 0)): deciding again"
                    .into(),
        };
        assert_eq!(
            apply(Mode::Apply, &seen, &repoint()).await,
            Some(Acted { outcome: deferred, took: None, phases: vec![] })
        );
        let gone = ActionOutcome::Failed { error: "redis-1 is no longer a member".into() };
        assert_eq!(
            apply(Mode::Apply, &seen, &advertise()).await,
            Some(Acted { outcome: gone, took: None, phases: vec![] })
        );
    }
}
