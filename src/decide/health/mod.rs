//! Health: is the recorded master serving, and if not, which instance takes over; which
//! instances must be fenced or repointed; how each is advertised. Pure like the rest of the
//! core: one health probe of every member, the durable master record and `now` in,
//! [`HealthDecision`]s with their reasons out; [`crate::act::health`] carries them out.
//!
//! - `assess`: the walk over one probe ([`assess()`]): does the recorded master serve, is it
//!   down and by which rule, and what follows (failover, promote, fence, repoint, detach,
//!   advertise, or a report that nothing is done).
//! - `choice`: who takes over ([`successor`] for a human's failover), and why each other
//!   instance cannot.
//! - `reasons`: why each decision was made ([`HealthReason`] and the evidence, rule and
//!   refusal inside it), kept as data and rendered to one sentence.
//!
//! This file holds what they share: the probe as input, the memory kept between probes, what
//! one probe saw of each instance, and the decision type.

mod assess;
mod choice;
mod reasons;

#[cfg(test)]
mod tests;

use std::collections::{HashMap, HashSet, VecDeque};

use serde::Serialize;

use crate::model::{Advertised, MasterRecord, Member};
use crate::observe::{Info, InstanceId, InstanceSample, Outcome, RedisId, Role, Timestamp};
use crate::policy::Bootstrap;

pub use assess::{Assessment, assess};
pub use choice::{Candidate, Choice, successor};
pub use reasons::{Blocked, Detection, DownRule, Evidence, HealthReason};

/// What one health probe saw: the members, one sample each (same order), and the record.
#[derive(Debug, Clone, Copy)]
pub struct HealthInput<'a> {
    pub record: Option<&'a MasterRecord>,
    pub members: &'a [Member],
    pub samples: &'a [InstanceSample],
}

/// What the health core remembers between probes. Owned by the caller.
#[derive(Debug, Clone, Default)]
pub struct HealthMemory {
    /// The master record and when this daemon first saw it: the start of `failing` when the
    /// recorded master has not served since (a daemon restart, a new record).
    record_seen: Option<(MasterRecord, Timestamp)>,
    /// The master record and when it last served.
    last_serving: Option<(MasterRecord, Timestamp)>,
    /// Each instance's last run id: a new one means the process restarted.
    run_ids: HashMap<InstanceId, RedisId>,
    /// Each replica's lag in seconds as the master last reported it.
    lag: HashMap<InstanceId, u64>,
    /// When failovers were applied, for `maxFailoversPerHour`.
    failovers: VecDeque<Timestamp>,
    /// What each instance is advertised as, once applied.
    advertised: HashMap<InstanceId, Advertised>,
    /// Instances that restarted with no data and have held none since: never promotable while
    /// another holds data, however many probes ago the restart was seen.
    empty_since_restart: HashSet<InstanceId>,
    /// Instances whose run id changed since they were last recorded master: a recorded
    /// master among them holding less than another instance restarted without its data
    /// (clients may already have written a few keys into it).
    restarted: HashSet<InstanceId>,
    /// Instances fenced and not yet resynced.
    fenced: HashSet<InstanceId>,
    /// The last "master down, no failover" report, so that it is made once per change.
    reported: Option<String>,
    /// Replicas detached from a master that stopped answering (by replica), and from which
    /// master: they keep their data whatever restarts on its address.
    detached: HashMap<InstanceId, InstanceId>,
    /// When seeding a first master from a snapshot last reached the fleet: a seed that
    /// failed (a corrupt object, a refused RDB) is tried again after [`SEED_RETRY`], not on
    /// every probe, each of which would download the snapshot again.
    seed_attempted: Option<Timestamp>,
}

/// How long after a seeding attempt the next may start.
pub const SEED_RETRY: std::time::Duration = std::time::Duration::from_secs(60);

impl HealthMemory {
    /// Records an applied failover (counted against `maxFailoversPerHour`).
    pub fn record_failover(&mut self, at: Timestamp) {
        self.failovers.push_back(at);
    }

    /// Records that `instance` is now advertised as `role`.
    pub fn record_advertised(&mut self, instance: &str, role: Advertised) {
        self.advertised.insert(instance.to_owned(), role);
    }

    /// Records that `instance` was detached from `master`.
    pub fn record_detached(&mut self, instance: &str, master: &str) {
        self.detached.insert(instance.to_owned(), master.to_owned());
    }

    /// Records that seeding a first master reached the fleet, whatever became of it.
    pub fn record_seed_attempt(&mut self, at: Timestamp) {
        self.seed_attempted = Some(at);
    }

    /// Records that `instance` was fenced: advertised as such until it has resynced.
    pub fn record_fenced(&mut self, instance: &str) {
        self.fenced.insert(instance.to_owned());
    }

    /// How many failovers were applied in the hour before `now`.
    fn failovers_within_hour(&mut self, now: Timestamp) -> usize {
        while self.failovers.front().is_some_and(|at| now - *at > chrono::TimeDelta::hours(1)) {
            self.failovers.pop_front();
        }
        self.failovers.len()
    }
}

/// One instance as a health probe saw it.
#[derive(Debug, Clone, Copy)]
struct Seen<'a> {
    member: &'a Member,
    outcome: &'a Outcome,
    info: Option<&'a Info>,
}

impl Seen<'_> {
    fn id(&self) -> &str {
        &self.member.id
    }

    /// Answering, and not reported gone by the backend.
    fn answering(&self) -> Option<&Info> {
        self.info.filter(|_| self.member.gone.is_none())
    }

    /// Its replication offset: how much of the write history it holds.
    fn offset(&self) -> u64 {
        self.info.map_or(0, |info| {
            let replication = &info.replication;
            match info.role {
                Role::Replica => replication.replica_repl_offset,
                Role::Master => replication.master_repl_offset,
            }
            .or(replication.master_repl_offset)
            .unwrap_or(0)
        })
    }

    fn keys(&self) -> u64 {
        self.info.map_or(0, |info| info.keyspace.iter().map(|db| db.keys).sum())
    }

    /// Holds keys. Not the offset: a replica that never linked up reports an offset of 1.
    fn holds_data(&self) -> bool {
        self.keys() > 0
    }

    /// Whether its data descends from `other`'s write history: the same replication id, or
    /// the one `other` continued when it was promoted. A master that restarted without its
    /// data starts a new history, so replicas still holding the old one do not share it;
    /// a replica that synced from it since does. Unknown ids share nothing.
    fn shares_history(&self, other: &Seen<'_>) -> bool {
        let replid = |s: &Seen<'_>| s.info.and_then(|i| i.replication.master_replid);
        let Some(own) = replid(self) else { return false };
        other.info.is_some_and(|i| {
            i.replication.master_replid == Some(own) || i.replication.master_replid2 == Some(own)
        })
    }

    /// Whether it replicates `master`'s endpoint.
    fn follows(&self, master: &Member) -> bool {
        self.info.is_some_and(|info| {
            info.role == Role::Replica
                && info.replication.master_port == Some(master.endpoint.port)
                && info.replication.master_host.as_deref() == Some(master.endpoint.host.as_str())
        })
    }

    /// How it failed, strongest evidence first.
    fn failure(&self) -> Evidence {
        if let Some(why) = &self.member.gone {
            return Evidence::Gone(why.clone());
        }
        match self.outcome {
            Outcome::Ok => Evidence::NotMaster,
            Outcome::Refused => Evidence::Refused,
            other => Evidence::NoAnswer(other.to_string()),
        }
    }
}

/// One health decision, what [`assess()`] returns: plain data with the reason behind it. Only
/// the leader acts on it ([`crate::act::health`]).
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "kind", rename_all = "camelCase")]
pub enum HealthDecision {
    /// Record `to` as master at `epoch`, promote it, repoint the others (`from`: the master
    /// it replaces; `None` when there was none).
    Failover { from: Option<InstanceId>, to: InstanceId, epoch: u64, reason: HealthReason },
    /// Load `instance` from a snapshot, then record it as the first master at epoch 1 and
    /// promote it (`spec.snapshots.bootstrap`): no master is recorded and no instance holds
    /// data.
    Seed { instance: InstanceId, from: Bootstrap, reason: HealthReason },
    /// Finish promoting the recorded master (the daemon stopped between record and promote).
    Promote { instance: InstanceId, epoch: u64, reason: HealthReason },
    /// The master is down and nothing is done about it (manual, off, rate-limited, no
    /// candidate): for people and alerts, not an action.
    MasterDown { master: InstanceId, reason: HealthReason },
    /// Make an instance that claims master a replica of the recorded master.
    Fence { instance: InstanceId, master: InstanceId, reason: HealthReason },
    /// Make a replica of something else a replica of the recorded master.
    Repoint { instance: InstanceId, master: InstanceId, reason: HealthReason },
    /// Make a replica of a master whose process is not there stop following it (it
    /// replicates its own address until the master is decided on).
    Detach { instance: InstanceId, master: InstanceId, reason: HealthReason },
    /// Advertise an instance's role to clients (Kubernetes: its pod label).
    Advertise { instance: InstanceId, role: Advertised, reason: HealthReason },
}

impl HealthDecision {
    /// Short stable name for logs, metrics labels and Kubernetes Event reasons.
    pub fn kind(&self) -> &'static str {
        match self {
            HealthDecision::Failover { .. } => "failover",
            HealthDecision::Seed { .. } => "seed",
            HealthDecision::Promote { .. } => "promote",
            HealthDecision::MasterDown { .. } => "masterDown",
            HealthDecision::Fence { .. } => "fence",
            HealthDecision::Repoint { .. } => "repoint",
            HealthDecision::Detach { .. } => "detach",
            HealthDecision::Advertise { .. } => "advertise",
        }
    }

    /// Why it was made.
    pub fn reason(&self) -> &HealthReason {
        match self {
            HealthDecision::Failover { reason, .. }
            | HealthDecision::Seed { reason, .. }
            | HealthDecision::Promote { reason, .. }
            | HealthDecision::MasterDown { reason, .. }
            | HealthDecision::Fence { reason, .. }
            | HealthDecision::Repoint { reason, .. }
            | HealthDecision::Detach { reason, .. }
            | HealthDecision::Advertise { reason, .. } => reason,
        }
    }

    /// The reason as one human sentence.
    pub fn sentence(&self) -> String {
        self.reason().to_string()
    }
}

/// Pairs members with samples and notes restarts (a run id that changed).
fn see<'a>(input: HealthInput<'a>, memory: &mut HealthMemory) -> Vec<Seen<'a>> {
    input
        .members
        .iter()
        .zip(input.samples)
        .map(|(member, sample)| {
            let info = sample.info.as_ref().filter(|_| sample.outcome == Outcome::Ok);
            let run_id = info.and_then(|i| i.server.run_id);
            let restarted = match run_id {
                Some(id) => {
                    memory.run_ids.insert(member.id.clone(), id).is_some_and(|old| old != id)
                }
                None => false,
            };
            let seen = Seen { member, outcome: &sample.outcome, info };
            if restarted {
                memory.restarted.insert(member.id.clone());
            }
            if seen.holds_data() {
                memory.empty_since_restart.remove(&member.id);
            } else if restarted {
                memory.empty_since_restart.insert(member.id.clone());
            }
            seen
        })
        .collect()
}
