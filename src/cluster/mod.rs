//! The cluster edge: the one small trait the daemon acts through to list, scale, promote and
//! repoint Redis instances, and to keep the durable record of which instance is the master.
//!
//! - [`Cluster`]: the trait. Backends: [`local::LocalFleet`] (child processes on loopback),
//!   [`kubernetes::KubeCluster`] (a StatefulSet's pods), [`StaticEndpoints`], and the
//!   simulator's [`crate::sim::cluster::SimCluster`]. Used generically, never as `dyn`.
//! - [`redis_admin`]: the Redis-side role commands every backend shares (`REPLICAOF`,
//!   `FAILOVER`), each under a deadline.
//! - [`local`]: the embedded default backend.
//! - [`kubernetes`]: the in-cluster backend, and the Lease that decides which daemon acts.
//!
//! # The master invariant
//!
//! Every instance boots as a replica. An instance becomes master only through
//! [`Cluster::promote`], and only after [`Cluster::record_master`] durably named it at a new
//! epoch: a daemon that dies between the two restarts knowing which instance it meant to
//! promote, and never finds a master it has no record of.

mod any;
mod endpoints;
pub mod kubernetes;
pub mod local;
pub mod redis_admin;

pub use any::AnyCluster;
pub use endpoints::StaticEndpoints;

use std::fmt;
use std::future::Future;
use std::path::PathBuf;

use crate::observe::{InstanceId, Timestamp};
use crate::sample::redis::Endpoint;

/// One instance that exists now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Member {
    pub id: InstanceId,
    pub endpoint: Endpoint,
    /// Position in the deployment (a StatefulSet ordinal); scaling down removes the highest.
    pub ordinal: u16,
    /// Set when the backend itself knows the instance is gone (its process exited, its pod was
    /// deleted or evicted, its Redis container terminated), with what it saw. Failover
    /// detection weighs it like a refused connection: stronger evidence than a timeout.
    pub gone: Option<String>,
}

/// How an instance is advertised to clients, so that Services can select by it (Kubernetes:
/// the pod label `redis-autopilot.io/role`). Advertising is not the role itself: Redis holds
/// that; this follows it, one step behind.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Advertised {
    /// The recorded master, serving writes.
    Master,
    /// A replica linked to the recorded master, within the policy's lag bound.
    Replica,
    /// Claimed to be master without being the recorded one; made a replica, kept out of both
    /// Services until it has resynced.
    Fenced,
    /// A replica beyond `health.replicaMaxLag`: out of the replicas Service when the policy
    /// says so.
    Lagging,
}

impl Advertised {
    /// The label value.
    pub fn as_str(self) -> &'static str {
        match self {
            Advertised::Master => "master",
            Advertised::Replica => "replica",
            Advertised::Fenced => "fenced",
            Advertised::Lagging => "lagging",
        }
    }
}

/// The durable answer to "who is master": the instance, and the epoch at which it was chosen.
/// Epochs only grow, so a stale decision (an older epoch) can be recognised and refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MasterRecord {
    pub instance: InstanceId,
    pub epoch: u64,
    /// Set while an actor (a daemon, the CLI) is moving the master role to `instance`: until
    /// it clears the claim, or the claim lapses, no other actor changes roles on the fleet.
    pub claim: Option<Claim>,
}

/// "Roles are being changed by `by`, until `until`": the mutual exclusion every actor on one
/// fleet honours (see `docs/failover.md`). A switchover pauses writes on the old master and
/// swaps roles over a second or more; anything else that promotes, fences or repoints in that
/// window (a daemon's "unfinished promotion" rule, a second CLI) would split the write
/// history. The claim lives in the durable record, so it holds across processes and hosts,
/// for every backend, and it lapses by itself if its holder dies.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Claim {
    /// The master the role is taken from, if one served.
    pub from: Option<InstanceId>,
    /// Who acts: a daemon's identity, or `cli:USER@HOST/PID`.
    pub by: String,
    /// When the claim lapses if its holder has not cleared it (it died). Compared with the
    /// reader's clock: clocks more than a few seconds apart shorten or stretch it.
    pub until: Timestamp,
}

impl fmt::Display for Claim {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} is changing roles", self.by)?;
        if let Some(from) = &self.from {
            write!(f, " (taking the master role from {from})")?;
        }
        write!(f, " until {}", self.until.format("%H:%M:%S%.3fZ"))
    }
}

impl MasterRecord {
    /// A record with no claim.
    pub fn new(instance: impl Into<InstanceId>, epoch: u64) -> Self {
        Self { instance: instance.into(), epoch, claim: None }
    }

    /// The record a backend stores as separate fields (the local state file, the StatefulSet's
    /// annotations): none until a master is named.
    pub fn stored(master: Option<&InstanceId>, epoch: u64, claim: Option<&Claim>) -> Option<Self> {
        master.map(|instance| Self { instance: instance.clone(), epoch, claim: claim.cloned() })
    }

    /// The claim, while it holds at `now`.
    pub fn active_claim(&self, now: Timestamp) -> Option<&Claim> {
        self.claim.as_ref().filter(|claim| claim.until > now)
    }

    /// One line for errors and logs: `redis-1 at epoch 3`, or `nothing (epoch 0)`.
    pub fn describe(record: Option<&MasterRecord>) -> String {
        match record {
            Some(record) => format!("{} at epoch {}", record.instance, record.epoch),
            None => "nothing (epoch 0)".to_owned(),
        }
    }

    /// The rule every backend's [`Cluster::record_master`] obeys, written once: what to write
    /// when `current` is recorded and `next` is asked for at `now` (`None`: nothing, it is
    /// already recorded).
    ///
    /// - While a claim holds, only its holder writes (a record claimed by the same `by`);
    ///   anyone else is refused with [`ClusterError::Busy`]. The holder releases it by writing
    ///   its claim with `until` in the past: the record then tells who last changed roles.
    /// - Otherwise the epoch must grow, or stay the same for the same instance (taking or
    ///   releasing a claim on the record as it stands).
    pub fn advance(
        current: Option<&MasterRecord>,
        next: &MasterRecord,
        now: Timestamp,
    ) -> Result<Option<MasterRecord>, ClusterError> {
        if current == Some(next) {
            return Ok(None);
        }
        let epoch = current.map_or(0, |c| c.epoch);
        if let Some(claim) = current.and_then(|c| c.active_claim(now))
            && next.claim.as_ref().is_none_or(|mine| mine.by != claim.by)
        {
            return Err(ClusterError::Busy { claim: claim.clone() });
        }
        let same = current.is_some_and(|c| c.instance == next.instance && c.epoch == next.epoch);
        if next.epoch > epoch || same {
            return Ok(Some(next.clone()));
        }
        Err(ClusterError::StaleEpoch {
            instance: next.instance.clone(),
            epoch: next.epoch,
            recorded: Self::describe(current),
        })
    }

    /// The rule every backend's [`Cluster::promote`] obeys: only the recorded master, at its
    /// recorded epoch, is made a master.
    pub fn may_promote(
        current: Option<&MasterRecord>,
        member: &Member,
        epoch: u64,
    ) -> Result<(), ClusterError> {
        match current {
            Some(record) if record.instance == member.id && record.epoch == epoch => Ok(()),
            _ => Err(ClusterError::NotRecorded {
                instance: member.id.clone(),
                epoch,
                recorded: Self::describe(current),
            }),
        }
    }

    /// The rule every backend's [`Cluster::repoint`] obeys: the recorded master is never made
    /// a replica (record another master first).
    pub fn may_repoint(
        current: Option<&MasterRecord>,
        member: &Member,
    ) -> Result<(), ClusterError> {
        match current {
            Some(record) if record.instance == member.id => {
                Err(ClusterError::RecordedMaster { instance: member.id.clone() })
            }
            _ => Ok(()),
        }
    }
}

/// What the daemon acts through. Every call is bounded by a deadline chosen by the backend;
/// every action is safe to retry after a failure or a daemon restart (each says how).
pub trait Cluster: Send + Sync {
    /// The instances that exist now, in ordinal order.
    fn members(&self) -> impl Future<Output = Result<Vec<Member>, ClusterError>> + Send;

    /// How many instances were last requested by [`Cluster::scale`].
    fn replicas(&self) -> impl Future<Output = Result<u16, ClusterError>> + Send;

    /// Makes ordinals `0..to` exist and removes the others. Never removes the recorded master:
    /// a backend first switches it over to a surviving replica. Idempotent: calling it again
    /// with the same `to` finishes an interrupted call.
    fn scale(&self, to: u16) -> impl Future<Output = Result<(), ClusterError>> + Send;

    /// The last durably recorded master, if any. A backend may answer from a short-lived
    /// cache (Kubernetes: see `RECORD_MAX_AGE`); [`Cluster::fresh_record`] never does.
    fn recorded_master(
        &self,
    ) -> impl Future<Output = Result<Option<MasterRecord>, ClusterError>> + Send;

    /// The record as stored now, read past any cache: what an action checks its decision
    /// against just before it acts (another actor may have written since the probe).
    fn fresh_record(
        &self,
    ) -> impl Future<Output = Result<Option<MasterRecord>, ClusterError>> + Send {
        self.recorded_master()
    }

    /// Durably records `record` before anything acts on it. Refuses an epoch lower than the
    /// recorded one, or the same epoch naming another instance; recording the same record
    /// again is a no-op, so a retry is safe.
    fn record_master(
        &self,
        record: MasterRecord,
    ) -> impl Future<Output = Result<(), ClusterError>> + Send;

    /// Makes `member` a master (`REPLICAOF NO ONE`). Refused unless `member` at `epoch` is the
    /// recorded master. Idempotent.
    fn promote(
        &self,
        member: &Member,
        epoch: u64,
    ) -> impl Future<Output = Result<(), ClusterError>> + Send;

    /// Makes `member` replicate `master`. Idempotent (Redis answers "already connected").
    fn repoint(
        &self,
        member: &Member,
        master: &Member,
    ) -> impl Future<Output = Result<(), ClusterError>> + Send;

    /// Brings back instances that exited, as replicas of the recorded master. A StatefulSet's
    /// controller does this by itself, so the default does nothing; a local fleet restarts
    /// its processes. Never restarts the recorded master: that one waits for a failover (or,
    /// once restarted by someone else, is recognised as restarted and replaced).
    fn heal(&self) -> impl Future<Output = Result<(), ClusterError>> + Send {
        async { Ok(()) }
    }

    /// Tells the people watching the deployment why the daemon acted, or why it did not (a
    /// master down with failover blocked): `kind` is the decision's kind, `reason` its
    /// sentence. Kubernetes: an Event on the StatefulSet. Elsewhere the logs and
    /// `/v1/decisions` carry it, so the default does nothing.
    fn explain(&self, _kind: &str, _reason: &str) -> impl Future<Output = ()> + Send {
        async {}
    }

    /// Advertises `member` as `role` to clients. Backends without a service layer (a local
    /// fleet, static endpoints, the simulator) have nothing to advertise: the default does
    /// nothing. Idempotent.
    fn advertise(
        &self,
        _member: &Member,
        _role: Advertised,
    ) -> impl Future<Output = Result<(), ClusterError>> + Send {
        async { Ok(()) }
    }
}

/// Why a cluster action failed. Messages name instances, files and binaries, never secrets.
#[derive(Debug, thiserror::Error)]
pub enum ClusterError {
    #[error("cannot {action} `{}`", .path.display())]
    StateIo {
        action: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("state file `{}` is not valid (fix or remove it; it records the master)", .path.display())]
    StateCorrupt {
        path: PathBuf,
        #[source]
        source: serde_json::Error,
    },
    #[error("cannot start `{binary}` (spec.target.local.redisServer) for instance {instance}")]
    Spawn {
        binary: String,
        instance: InstanceId,
        #[source]
        source: std::io::Error,
    },
    #[error("instance {instance} did not start listening: {why} (see `{}`)", .log.display())]
    Start { instance: InstanceId, why: String, log: PathBuf },
    #[error("cannot stop instance {instance}: {why}")]
    Stop { instance: InstanceId, why: String },
    #[error("ordinal {ordinal} has no port: basePort {base_port} + ordinal is beyond 65535")]
    PortRange { base_port: u16, ordinal: u16 },
    #[error("{action} on {instance} failed")]
    Redis {
        action: &'static str,
        instance: InstanceId,
        #[source]
        source: redis::RedisError,
    },
    #[error("{action} on {instance} timed out after {timeout:?}")]
    Timeout { action: &'static str, instance: InstanceId, timeout: std::time::Duration },
    #[error("switchover from {from} to {to} did not complete: {why}")]
    Switchover { from: InstanceId, to: InstanceId, why: String },
    /// `excluded` says why each instance kept was passed over.
    #[error("no replica of {master} can take over ({excluded}): refusing to remove it")]
    NoCandidate { master: InstanceId, excluded: String },
    #[error("refusing to promote {instance} at epoch {epoch}: the recorded master is {recorded}")]
    NotRecorded { instance: InstanceId, epoch: u64, recorded: String },
    #[error(
        "refusing to record {instance} at epoch {epoch}: epochs only grow, and {recorded} is recorded"
    )]
    StaleEpoch { instance: InstanceId, epoch: u64, recorded: String },
    #[error("refusing to repoint {instance}: it is the recorded master (record another first)")]
    RecordedMaster { instance: InstanceId },
    #[error("refusing to change roles: {claim}")]
    Busy { claim: Claim },
    #[error("{target} targets cannot {action}")]
    Unsupported { target: &'static str, action: &'static str },
    #[error("cannot prepare access to the instances")]
    Access(#[source] crate::sample::SetupError),
    #[error(transparent)]
    Kubernetes(Box<kubernetes::KubeError>),
}

impl From<kubernetes::KubeError> for ClusterError {
    fn from(error: kubernetes::KubeError) -> Self {
        ClusterError::Kubernetes(Box::new(error))
    }
}

impl ClusterError {
    /// A bounded label for metrics.
    pub fn category(&self) -> &'static str {
        match self {
            ClusterError::StateIo { .. } => "state_io",
            ClusterError::StateCorrupt { .. } => "state_corrupt",
            ClusterError::Spawn { .. } => "spawn",
            ClusterError::Start { .. } => "start",
            ClusterError::Stop { .. } => "stop",
            ClusterError::PortRange { .. } => "port_range",
            ClusterError::Redis { .. } => "redis",
            ClusterError::Timeout { .. } => "timeout",
            ClusterError::Switchover { .. } => "switchover",
            ClusterError::NoCandidate { .. } => "no_candidate",
            ClusterError::NotRecorded { .. } => "not_recorded",
            ClusterError::StaleEpoch { .. } => "stale_epoch",
            ClusterError::RecordedMaster { .. } => "recorded_master",
            ClusterError::Busy { .. } => "busy",
            ClusterError::Unsupported { .. } => "unsupported",
            ClusterError::Access(_) => "access",
            ClusterError::Kubernetes(error) => error.category(),
        }
    }
}
