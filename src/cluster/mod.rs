//! The cluster edge: the one small trait the daemon acts through to list, scale, promote,
//! switch over and repoint Redis instances, and to keep the durable record of which instance
//! is the master. Backends only do what they are told: choosing a master and handing it over
//! before a scale-down is the action path's work ([`crate::act::hand_over`]), never a
//! backend's, so nothing here reaches up to `failover` or `act`.
//!
//! - [`Cluster`]: the trait. Backends: [`local::LocalFleet`] (child processes on loopback),
//!   [`kubernetes::KubeCluster`] (a StatefulSet's pods), [`StaticEndpoints`], and the
//!   simulator's [`crate::sim::cluster::SimCluster`]. Used generically, never as `dyn`.
//! - [`redis_admin`]: the Redis-side role commands every backend shares (`REPLICAOF`,
//!   `FAILOVER`), each under a deadline.
//! - [`local`]: the embedded default backend.
//! - [`kubernetes`]: the in-cluster backend, and the Lease that decides which daemon acts.
//! - [`scratch`]: where a restore test loads a snapshot (a local `redis-server` child or the
//!   verifier StatefulSet), outside every fleet.
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
pub mod scratch;

pub use any::AnyCluster;
pub use endpoints::StaticEndpoints;

use std::future::Future;
use std::path::PathBuf;

pub use crate::model::{Advertised, Claim, MasterRecord, Member, RecordRefusal};
use crate::observe::{InstanceId, InstanceSample};
use crate::policy::Policy;
use crate::sample::redis::RedisSampler;

/// The deadline of each role command sent to an instance (and of a failover's steps): long
/// enough for a health probe and for a sampling round, whichever the policy allows more.
pub fn action_timeout(policy: &Policy) -> std::time::Duration {
    policy.health.probe_timeout.max(policy.sampling.timeout)
}

/// What the daemon acts through. Every call is bounded by a deadline chosen by the backend;
/// every action is safe to retry after a failure or a daemon restart (each says how).
pub trait Cluster: Send + Sync {
    /// The instances that exist now, in ordinal order.
    fn members(&self) -> impl Future<Output = Result<Vec<Member>, ClusterError>> + Send;

    /// How many instances were last requested by [`Cluster::scale`].
    fn replicas(&self) -> impl Future<Output = Result<u16, ClusterError>> + Send;

    /// Makes ordinals `0..to` exist and removes the others, if the count is still `from` (the
    /// one the caller decided on). Only resizes: it refuses
    /// ([`ClusterError::WouldRemoveMaster`]) to remove the recorded master while that one is a
    /// member not gone. Moving the master off first is the action path's job
    /// ([`crate::act::hand_over`]), the same for every backend.
    ///
    /// A count that is neither `from` nor `to` was changed by someone else since the caller
    /// read it (`kubectl scale`): refused with [`ClusterError::Resized`] and nothing written,
    /// atomically where others can write (a resourceVersion precondition on Kubernetes), so a
    /// decision is made again on the new count and never overwrites it. Idempotent: calling
    /// it again with the same `from` and `to` finishes an interrupted call.
    fn scale(&self, from: u16, to: u16) -> impl Future<Output = Result<(), ClusterError>> + Send;

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

    /// Hands the master role from `from` to its replica `to` without losing acknowledged
    /// writes (Redis `FAILOVER TO`: writes pause until `to` caught up, then the two swap).
    /// Refused unless `to` at `epoch` is the recorded master, as [`Cluster::promote`] is. Not
    /// idempotent on Redis's side: once the swap happened a second call fails, so callers
    /// check roles before retrying ([`redis_admin::switchover`]).
    fn switch_over(
        &self,
        from: &Member,
        to: &Member,
        epoch: u64,
    ) -> impl Future<Output = Result<(), ClusterError>> + Send;

    /// One health sample (`INFO`) of each of `members`, in the same order, through `prober`
    /// (its deadline bounds the round): what a failover or a hand-over chooses by. Every
    /// backend with real instances asks Redis; the simulator answers from its model.
    fn probe(
        &self,
        members: &[Member],
        prober: &RedisSampler,
    ) -> impl Future<Output = Vec<InstanceSample>> + Send {
        let endpoints: Vec<_> = members.iter().map(|m| m.endpoint.clone()).collect();
        async move { prober.sample(&endpoints).await }
    }

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

    /// Tells the people watching the deployment a result that is news every time, however
    /// alike the last one was: a restore test's verdict (`action` `RestoreTest`, `reason`
    /// `RestoreTestPassed` or `RestoreTestFailed`, `warning` when it failed, `note` the numbers).
    /// Not [`Cluster::explain`]: that one holds back a repeat of the same kind within a minute,
    /// which would hide a second identical verdict (a `snapshot verify --restore` run by hand
    /// right after the scheduled one). Kubernetes: an Event on the StatefulSet. Elsewhere the
    /// logs carry it, so the default does nothing.
    fn announce(
        &self,
        _action: &str,
        _reason: &str,
        _warning: bool,
        _note: &str,
    ) -> impl Future<Output = ()> + Send {
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
    /// A scale-down reached the backend with the recorded master still on an ordinal it
    /// removes: the action path hands it over first, so this means something recorded it
    /// there in between (or a caller skipped the hand-over).
    #[error(
        "refusing to scale to {to}: it would remove the recorded master {instance} (ordinal {ordinal}); hand it over first"
    )]
    WouldRemoveMaster { instance: InstanceId, ordinal: u16, to: u16 },
    /// The count changed since the caller read it: someone else resized the target.
    #[error(
        "refusing to scale {from} -> {to}: the target now asks for {found} instances (someone else resized it since this was decided)"
    )]
    Resized { from: u16, to: u16, found: u16 },
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

/// The recorded master, when a scale to `to` would remove it: a member, not gone, at an
/// ordinal `>= to` (highest ordinals go first). What the action path hands over before such
/// a scale, and what every backend's [`Cluster::scale`] refuses.
pub fn removed_master<'m>(
    record: Option<&MasterRecord>,
    members: &'m [Member],
    to: u16,
) -> Option<&'m Member> {
    let record = record?;
    members.iter().find(|m| m.id == record.instance && m.ordinal >= to && m.gone.is_none())
}

/// [`Cluster::scale`]'s precondition, for every backend: the count read now is the one the
/// caller decided on, or already the one it asked for (a retry finishing an interrupted call).
pub fn refuse_resized(from: u16, to: u16, found: u16) -> Result<(), ClusterError> {
    if found == from || found == to {
        Ok(())
    } else {
        Err(ClusterError::Resized { from, to, found })
    }
}

/// [`ClusterError::WouldRemoveMaster`] when a scale to `to` would remove the recorded master
/// ([`removed_master`]): the one check every backend's [`Cluster::scale`] makes first.
pub fn refuse_removing_master(
    record: Option<&MasterRecord>,
    members: &[Member],
    to: u16,
) -> Result<(), ClusterError> {
    match removed_master(record, members, to) {
        Some(master) => Err(ClusterError::WouldRemoveMaster {
            instance: master.id.clone(),
            ordinal: master.ordinal,
            to,
        }),
        None => Ok(()),
    }
}

impl From<RecordRefusal> for ClusterError {
    fn from(refusal: RecordRefusal) -> Self {
        match refusal {
            RecordRefusal::Busy { claim } => ClusterError::Busy { claim },
            RecordRefusal::StaleEpoch { instance, epoch, recorded } => {
                ClusterError::StaleEpoch { instance, epoch, recorded }
            }
            RecordRefusal::NotRecorded { instance, epoch, recorded } => {
                ClusterError::NotRecorded { instance, epoch, recorded }
            }
            RecordRefusal::RecordedMaster { instance } => ClusterError::RecordedMaster { instance },
        }
    }
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
            ClusterError::WouldRemoveMaster { .. } => "would_remove_master",
            ClusterError::Resized { .. } => "resized",
            ClusterError::Busy { .. } => "busy",
            ClusterError::Unsupported { .. } => "unsupported",
            ClusterError::Access(_) => "access",
            ClusterError::Kubernetes(error) => error.category(),
        }
    }
}
