//! The plain data every stage shares, at the bottom of the crate: which instances exist
//! ([`Member`], [`Endpoint`]), how one is advertised ([`Advertised`]), and the durable record
//! of the master with its epoch ([`MasterRecord`], [`Claim`]) together with the rule every
//! backend obeys when writing it ([`MasterRecord::advance`], [`MasterRecord::may_promote`],
//! [`MasterRecord::may_repoint`]), written and tested once; and how a snapshot is named
//! ([`snapshot_id`]), which policies refer to and the snapshot store writes.
//!
//! It imports nothing from the crate: the decision core (`policy`, `observe`, `decide`)
//! builds on it, and so do the edges (`sample`, `cluster`, `failover`, `sim`).
//! `tests/purity.rs` checks both rules.

use std::fmt;

use chrono::{DateTime, Utc};

/// Stable name of an instance: a pod name, or `host:port`.
pub type InstanceId = String;

/// Wall-clock instant of a sample or decision. The core never reads a clock: callers pass it.
pub type Timestamp = DateTime<Utc>;

/// Where to reach one Redis instance.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Endpoint {
    /// The instance's stable name: a pod name, or `host:port`.
    pub id: InstanceId,
    pub host: String,
    pub port: u16,
}

impl Endpoint {
    /// Parses `host:port` (the id is the text itself); `[v6]:port` works too.
    pub fn parse(text: &str) -> Option<Self> {
        let (host, port) = text.rsplit_once(':')?;
        let host = host.trim_start_matches('[').trim_end_matches(']');
        let port = port.parse().ok()?;
        (!host.is_empty()).then(|| Self { id: text.to_owned(), host: host.to_owned(), port })
    }

    /// An instance on this host's loopback (a local fleet's), named `127.0.0.1:port`.
    pub fn loopback(port: u16) -> Self {
        Self { id: format!("127.0.0.1:{port}"), host: "127.0.0.1".to_owned(), port }
    }
}

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
    ///   anyone else is refused with [`RecordRefusal::Busy`]. The holder releases it by writing
    ///   its claim with `until` in the past: the record then tells who last changed roles.
    /// - Otherwise the epoch must grow, or stay the same for the same instance (taking or
    ///   releasing a claim on the record as it stands).
    pub fn advance(
        current: Option<&MasterRecord>,
        next: &MasterRecord,
        now: Timestamp,
    ) -> Result<Option<MasterRecord>, RecordRefusal> {
        if current == Some(next) {
            return Ok(None);
        }
        let epoch = current.map_or(0, |c| c.epoch);
        if let Some(claim) = current.and_then(|c| c.active_claim(now))
            && next.claim.as_ref().is_none_or(|mine| mine.by != claim.by)
        {
            return Err(RecordRefusal::Busy { claim: claim.clone() });
        }
        let same = current.is_some_and(|c| c.instance == next.instance && c.epoch == next.epoch);
        if next.epoch > epoch || same {
            return Ok(Some(next.clone()));
        }
        Err(RecordRefusal::StaleEpoch {
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
    ) -> Result<(), RecordRefusal> {
        match current {
            Some(record) if record.instance == member.id && record.epoch == epoch => Ok(()),
            _ => Err(RecordRefusal::NotRecorded {
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
    ) -> Result<(), RecordRefusal> {
        match current {
            Some(record) if record.instance == member.id => {
                Err(RecordRefusal::RecordedMaster { instance: member.id.clone() })
            }
            _ => Ok(()),
        }
    }
}

/// Why the record rule refused a write, a promotion or a repoint. Backends report it as the
/// matching `ClusterError` (the cluster edge converts it).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RecordRefusal {
    #[error("refusing to change roles: {claim}")]
    Busy { claim: Claim },
    #[error(
        "refusing to record {instance} at epoch {epoch}: epochs only grow, and {recorded} is recorded"
    )]
    StaleEpoch { instance: InstanceId, epoch: u64, recorded: String },
    #[error("refusing to promote {instance} at epoch {epoch}: the recorded master is {recorded}")]
    NotRecorded { instance: InstanceId, epoch: u64, recorded: String },
    #[error("refusing to repoint {instance}: it is the recorded master (record another first)")]
    RecordedMaster { instance: InstanceId },
}

/// UTC to the millisecond: two snapshots of one source never share a name.
const TIME_FORMAT: &str = "%Y%m%dT%H%M%S%.3fZ";

/// The id of a snapshot taken at `at` from `source`: characters object stores or shells
/// dislike (`:`, `/`, `[`) become `-`.
pub fn snapshot_id(at: DateTime<Utc>, source: &str) -> String {
    let mut clean = String::with_capacity(source.len());
    for c in source.chars() {
        let c = if c.is_ascii_alphanumeric() || c == '.' || c == '_' { c } else { '-' };
        if !(c == '-' && clean.ends_with('-')) {
            clean.push(c);
        }
    }
    format!("{}-{}", at.format(TIME_FORMAT), clean.trim_matches('-'))
}

/// When a snapshot was taken, from its id (the part every id starts with).
pub fn snapshot_id_time(id: &str) -> Option<DateTime<Utc>> {
    let stamp = id.get(..20)?;
    chrono::NaiveDateTime::parse_from_str(stamp, TIME_FORMAT).ok().map(|t| t.and_utc())
}
