//! Failover and switchover as explicit state machines over the [`Cluster`] trait:
//! detecting -> promoting -> re-pointing -> done | failed, each phase timed.
//!
//! The health core ([`crate::decide::health`]) decides *that* and *to whom*; this module does
//! it, in an order that is safe to interrupt at any point:
//!
//! 1. **promoting**: record the new master at the new epoch (durable, before anything acts on
//!    it), `REPLICAOF NO ONE`, then the write guard. A daemon that dies here restarts knowing
//!    whom it meant to promote, and the core's "unfinished" rule finishes the job.
//! 2. **re-pointing**: every other reachable member replicates the new master. One that cannot
//!    be reached now (the dead master) is fenced or repointed by a later probe, when it answers.
//!
//! A switchover (a human's `--graceful`, or a scale-down removing the master) uses Redis's
//! `FAILOVER TO`, which pauses writes until the target caught up: no acknowledged write lost.
//!
//! # One actor at a time
//!
//! Every failover and switchover first writes the new record with a [`Claim`] naming its
//! actor (the daemon, or the CLI) and a deadline, and releases it when done. While a claim
//! holds, the record refuses every other writer ([`MasterRecord::advance`]) and the health
//! core of every daemon leaves roles alone, so a daemon never "finishes" a promotion that a
//! switchover is in the middle of. A holder that dies leaves a claim that lapses by itself
//! after [`claim_lifetime`].

use std::fmt;
use std::time::{Duration, Instant};

use serde::Serialize;

use crate::cluster::{Claim, Cluster, ClusterError, MasterRecord, Member, redis_admin};
use crate::decide::health::{self, HealthInput};
use crate::observe::{InstanceId, InstanceSample};
use crate::policy::{Bootstrap, Health, Policy, WriteGuard};
use crate::sample::redis::{Access, HEALTH_SECTIONS, RedisSampler};

/// One health probe: the durable record, the members, and one sample of each.
#[derive(Debug, Clone)]
pub struct Probe {
    pub record: Option<MasterRecord>,
    pub members: Vec<Member>,
    /// One per member, same order.
    pub samples: Vec<InstanceSample>,
}

impl Probe {
    /// Probes every member of `cluster` with `prober` (its deadline bounds the round), through
    /// [`Cluster::probe`].
    pub async fn take<C: Cluster>(
        cluster: &C,
        prober: &RedisSampler,
    ) -> Result<Self, ClusterError> {
        let members = cluster.members().await?;
        let record = cluster.recorded_master().await?;
        let samples = cluster.probe(&members, prober).await;
        Ok(Self { record, members, samples })
    }

    /// What the health core reads.
    pub fn input(&self) -> HealthInput<'_> {
        HealthInput { record: self.record.as_ref(), members: &self.members, samples: &self.samples }
    }

    pub fn member(&self, id: &str) -> Option<&Member> {
        self.members.iter().find(|m| m.id == id)
    }
}

/// The phases of a failover, in order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub enum Phase {
    /// From the first failed probe to the decision.
    Detecting,
    /// Record, `REPLICAOF NO ONE` (or `FAILOVER TO`), write guard.
    Promoting,
    /// The other members follow the new master.
    Repointing,
}

impl Phase {
    pub fn as_str(self) -> &'static str {
        match self {
            Phase::Detecting => "detecting",
            Phase::Promoting => "promoting",
            Phase::Repointing => "repointing",
        }
    }
}

/// How long each phase took, for one log line and the phase metrics.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Timeline {
    pub phases: Vec<(Phase, Duration)>,
    /// Members that could not be repointed now (left to later probes), with why.
    pub unreached: Vec<(InstanceId, String)>,
}

impl Timeline {
    fn time<T>(&mut self, phase: Phase, started: Instant, result: T) -> T {
        self.phases.push((phase, started.elapsed()));
        result
    }
}

impl fmt::Display for Timeline {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut first = true;
        for (phase, took) in &self.phases {
            if !first {
                f.write_str(", ")?;
            }
            first = false;
            write!(f, "{} {:.1?}", phase.as_str(), took)?;
        }
        for (instance, why) in &self.unreached {
            write!(f, "; {instance} not repointed yet: {why}")?;
        }
        Ok(())
    }
}

/// A failover that stopped in a phase. The record, if written, stands: the next probe resumes.
#[derive(Debug, thiserror::Error)]
#[error("failover to {to} failed while {}: {source}", .phase.as_str())]
pub struct FailoverError {
    pub to: InstanceId,
    pub phase: Phase,
    /// The phases that completed before it failed.
    pub timeline: Timeline,
    #[source]
    pub source: ClusterError,
}

/// What a failover needs besides the cluster: how to reach the instances, the guard to set
/// on the new master, and who is acting (named in the claim on the record).
#[derive(Debug, Clone)]
pub struct Context<'a> {
    pub access: &'a Access,
    pub timeout: Duration,
    pub guard: Option<&'a WriteGuard>,
    /// The daemon's identity, or `cli:USER@HOST/PID`.
    pub actor: &'a str,
}

impl<'a> Context<'a> {
    /// The one way to build a context for `policy`'s target.
    pub fn new(policy: &'a Policy, access: &'a Access, actor: &'a str) -> Self {
        Self {
            access,
            timeout: action_timeout(policy),
            guard: policy.health.write_guard.as_ref(),
            actor,
        }
    }

    /// A claim by this actor, taking the master role from `from`, for [`claim_lifetime`].
    fn claim(&self, from: Option<&Member>) -> Claim {
        let lifetime = chrono::TimeDelta::from_std(claim_lifetime(self.timeout))
            .unwrap_or(chrono::TimeDelta::MAX);
        Claim {
            from: from.map(|m| m.id.clone()),
            by: self.actor.to_owned(),
            until: chrono::Utc::now() + lifetime,
        }
    }
}

/// The deadline of each role command a failover sends ([`crate::cluster::action_timeout`]).
pub use crate::cluster::action_timeout;

/// The CLI's actor name: `cli:USER@HOST/PID`.
pub fn cli_actor() -> String {
    let user = std::env::var("USER").unwrap_or_else(|_| "someone".into());
    let host = crate::cluster::kubernetes::lease::default_identity();
    format!("cli:{user}@{host}/{}", std::process::id())
}

/// How long a claim holds if its holder dies before releasing it: the longest a switchover
/// can take (`FAILOVER`'s catch-up and swap, the write guard, repointing, two record writes,
/// each bounded by `timeout`) with a margin. After that another actor may act again.
pub fn claim_lifetime(timeout: Duration) -> Duration {
    redis_admin::switchover_limit(timeout) + timeout * 4 + Duration::from_secs(5)
}

/// Gives a fleet with no recorded master its first one, as the health core chooses it (the
/// instance already serving as master, or the lowest ordinal of a fleet holding no data).
/// Opening a local fleet does this in every mode, as it starts the processes in every mode:
/// without a master there is nothing to watch. A first master the core would seed from a
/// snapshot (`seed_from`) is left to the daemon's health loop, which seeds only when it may
/// act. Returns the record, if there is one now.
pub async fn bootstrap<C: Cluster>(
    cluster: &C,
    health: &Health,
    seed_from: Option<&Bootstrap>,
    context: &Context<'_>,
) -> Result<Option<MasterRecord>, ClusterError> {
    if let Some(record) = cluster.recorded_master().await? {
        return Ok(Some(record));
    }
    let prober =
        RedisSampler::with_sections(context.access.clone(), context.timeout, HEALTH_SECTIONS);
    let probe = Probe::take(cluster, &prober).await?;
    let mut memory = crate::decide::HealthMemory::default();
    let now = chrono::Utc::now();
    let assessment = health::assess(health, seed_from, probe.input(), &mut memory, true, now);
    for decision in assessment.decisions {
        if let health::HealthDecision::Failover { from: None, to, epoch, reason } = decision {
            let Some(to) = probe.member(&to) else { continue };
            tracing::info!(master = %to.id, %reason, "first master");
            fail_over(cluster, &probe.members, Replaced::Nothing, to, epoch, context)
                .await
                .map_err(|e| e.source)?;
        }
    }
    cluster.recorded_master().await
}

/// The master a failover replaces.
#[derive(Debug, Clone, Copy)]
pub enum Replaced<'a> {
    /// None was recorded: a first master.
    Nothing,
    /// Its process is not there, or it does not answer.
    Down(&'a Member),
    /// It still answers, and takes writes or could (restarted empty, a failover forced over
    /// a serving master): it is made a replica of the new master *before* that one is
    /// promoted, so the two never take writes at once.
    Answering(&'a Member),
}

impl<'a> Replaced<'a> {
    fn member(self) -> Option<&'a Member> {
        match self {
            Replaced::Nothing => None,
            Replaced::Down(member) | Replaced::Answering(member) => Some(member),
        }
    }
}

/// Records `to` as master at `epoch` under this actor's claim, demotes the old master if it
/// still answers, promotes `to`, sets the write guard, repoints every other member that is
/// not gone, and releases the claim. Idempotent: run again with the same arguments by the
/// same actor, it finishes what an interrupted run started.
pub async fn fail_over<C: Cluster>(
    cluster: &C,
    members: &[Member],
    from: Replaced<'_>,
    to: &Member,
    epoch: u64,
    context: &Context<'_>,
) -> Result<Timeline, FailoverError> {
    let failed =
        |phase, timeline, source| FailoverError { to: to.id.clone(), phase, timeline, source };
    let mut timeline = Timeline::default();
    let started = Instant::now();
    let claim = context.claim(from.member());
    let promoted = async {
        let record =
            MasterRecord { claim: Some(claim.clone()), ..MasterRecord::new(&to.id, epoch) };
        cluster.record_master(record).await?;
        if let Replaced::Answering(old) = from
            && let Err(error) = cluster.repoint(old, to).await
        {
            // Not fatal: it is fenced when it next answers. Said, since until then it may
            // take writes beside the new master.
            tracing::warn!(old = %old.id, error = %crate::errors::chain(&error), "cannot demote the old master before promoting");
        }
        cluster.promote(to, epoch).await?;
        guard(to, context).await
    }
    .await;
    timeline.time(Phase::Promoting, started, ());
    if let Err(source) = promoted {
        return Err(failed(Phase::Promoting, timeline, source));
    }
    let started = Instant::now();
    repoint_others(cluster, members, to, &mut timeline).await;
    timeline.time(Phase::Repointing, started, ());
    release(cluster, &to.id, epoch, claim).await;
    Ok(timeline)
}

/// Finishes an unfinished promotion: `REPLICAOF NO ONE` on the recorded master and its write
/// guard. The record already names it at `epoch`; the backend checks that it still does.
pub async fn promote<C: Cluster>(
    cluster: &C,
    to: &Member,
    epoch: u64,
    context: &Context<'_>,
) -> Result<(), ClusterError> {
    cluster.promote(to, epoch).await?;
    guard(to, context).await
}

/// Hands the master role from `from` (serving) to its replica `to` without losing
/// acknowledged writes: records `to` at `epoch` under this actor's claim, then Redis's
/// `FAILOVER TO` (writes paused until `to` caught up, then the roles swap), then the write
/// guard, the others follow `to`, and the claim is released. If Redis aborts and `from`
/// still serves, `from` is recorded back at `epoch + 1`, so the record always names the
/// instance that takes writes.
pub async fn switch_over<C: Cluster>(
    cluster: &C,
    members: &[Member],
    from: &Member,
    to: &Member,
    epoch: u64,
    context: &Context<'_>,
) -> Result<Timeline, FailoverError> {
    let failed =
        |phase, timeline, source| FailoverError { to: to.id.clone(), phase, timeline, source };
    let mut timeline = Timeline::default();
    let started = Instant::now();
    let claim = context.claim(Some(from));
    let record = MasterRecord { claim: Some(claim.clone()), ..MasterRecord::new(&to.id, epoch) };
    if let Err(source) = cluster.record_master(record).await {
        return Err(failed(Phase::Promoting, timeline, source));
    }
    if let Err(source) = cluster.switch_over(from, to, epoch).await {
        let prober =
            RedisSampler::with_sections(context.access.clone(), context.timeout, HEALTH_SECTIONS);
        let sample = cluster.probe(std::slice::from_ref(from), &prober).await;
        let still_master = sample
            .first()
            .and_then(|s| s.info.as_ref())
            .is_some_and(|info| info.role == crate::observe::Role::Master);
        if still_master {
            release(cluster, &from.id, epoch + 1, claim).await;
        }
        timeline.time(Phase::Promoting, started, ());
        return Err(failed(Phase::Promoting, timeline, source));
    }
    let guarded = guard(to, context).await;
    timeline.time(Phase::Promoting, started, ());
    if let Err(source) = guarded {
        return Err(failed(Phase::Promoting, timeline, source));
    }
    let started = Instant::now();
    repoint_others(cluster, members, to, &mut timeline).await;
    timeline.time(Phase::Repointing, started, ());
    release(cluster, &to.id, epoch, claim).await;
    Ok(timeline)
}

/// Records `instance` at `epoch` with `claim` released (its deadline now), so every actor may
/// act again and the record still says who last changed roles. Best effort: a claim that
/// cannot be released lapses by itself.
async fn release<C: Cluster>(cluster: &C, instance: &str, epoch: u64, mut claim: Claim) {
    claim.until = chrono::Utc::now();
    let record = MasterRecord { claim: Some(claim), ..MasterRecord::new(instance, epoch) };
    if let Err(error) = cluster.record_master(record).await {
        tracing::warn!(error = %crate::errors::chain(&error), master = %instance, "cannot release the claim on the master record: it lapses by itself");
    }
}

/// Moves the master role off `from`, which a scale-down to `keep` instances is about to
/// remove, to the best instance below `keep`: chosen as a failover chooses
/// ([`health::successor`]), handed over by [`switch_over`], losing no acknowledged write.
/// The action path ([`crate::act::hand_over`]) calls this before every scale-down that
/// would remove the recorded master, whatever the backend; it records through the trait.
pub async fn hand_over<C: Cluster>(
    cluster: &C,
    from: &Member,
    keep: u16,
    health: &Health,
    context: &Context<'_>,
) -> Result<Member, ClusterError> {
    let prober =
        RedisSampler::with_sections(context.access.clone(), context.timeout, HEALTH_SECTIONS);
    let probe = Probe::take(cluster, &prober).await?;
    let (survivors, samples): (Vec<Member>, Vec<InstanceSample>) = probe
        .members
        .iter()
        .cloned()
        .zip(probe.samples.iter().cloned())
        .filter(|(member, _)| member.ordinal < keep && member.gone.is_none())
        .unzip();
    let epoch = probe.record.as_ref().map_or(0, |r| r.epoch) + 1;
    let input =
        HealthInput { record: probe.record.as_ref(), members: &survivors, samples: &samples };
    let no_candidate = |excluded: String| ClusterError::NoCandidate {
        master: from.id.clone(),
        excluded: if excluded.is_empty() { "no instance is kept".into() } else { excluded },
    };
    let choice = health::successor(health, input, Some(&from.id)).map_err(|excluded| {
        let reasons: Vec<String> =
            excluded.iter().map(|(instance, why)| format!("{instance}: {why}")).collect();
        no_candidate(reasons.join("; "))
    })?;
    let to = survivors
        .iter()
        .find(|m| m.id == choice.chosen.instance)
        .ok_or_else(|| no_candidate(format!("{} is not among the kept", choice.chosen.instance)))?;
    switch_over(cluster, &probe.members, from, to, epoch, context).await.map_err(|e| e.source)?;
    Ok(to.clone())
}

async fn guard(master: &Member, context: &Context<'_>) -> Result<(), ClusterError> {
    match context.guard {
        Some(guard) => {
            redis_admin::write_guard(&master.endpoint, guard, context.access, context.timeout).await
        }
        None => Ok(()),
    }
}

/// Every member but `master` and those gone follows `master`, concurrently; the ones that
/// fail are noted, not fatal: a later probe repoints or fences them when they answer.
async fn repoint_others<C: Cluster>(
    cluster: &C,
    members: &[Member],
    master: &Member,
    timeline: &mut Timeline,
) {
    let others = members.iter().filter(|m| m.id != master.id && m.gone.is_none());
    let results = futures::future::join_all(
        others.map(|member| async move { (member, cluster.repoint(member, master).await) }),
    )
    .await;
    for (member, result) in results {
        if let Err(error) = result {
            timeline.unreached.push((member.id.clone(), crate::errors::chain(&error)));
        }
    }
}
