//! The scale-down hand-over: before a scale removes the ordinal the recorded master runs on,
//! the master role moves to a surviving replica ([`failover::hand_over`]: chosen as a failover
//! chooses, switched over with `FAILOVER TO`, no acknowledged write lost). It runs here, in
//! the action path, so every backend (a local fleet, a StatefulSet, the simulator) goes through
//! the same code; a backend's [`Cluster::scale`] only resizes, and refuses to remove the
//! recorded master ([`ClusterError::WouldRemoveMaster`]).

use crate::cluster::{Cluster, ClusterError, Member, removed_master};
use crate::failover;
use crate::policy::Health;

/// What a hand-over needs besides the cluster: how the successor is chosen, and the failover
/// context (access, deadlines, write guard, actor).
#[derive(Debug, Clone)]
pub struct HandOver<'a> {
    pub health: &'a Health,
    pub context: failover::Context<'a>,
}

/// A master role moved off an ordinal a scale-down removes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HandedOver {
    pub from: Member,
    pub to: Member,
}

/// Resizes `cluster` from `from` (the count decided on) to `to` instances, handing the
/// recorded master over first when `to` would remove it (it is a member, not gone, at an
/// ordinal `>= to`). A count someone else changed since is refused before a hand-over
/// ([`ClusterError::Resized`]), and by the backend's write, atomically. A failed
/// hand-over changes no replica count. Idempotent: after an interrupted call the record
/// names the survivor, so a retry only resizes. Returns the hand-over, if one ran.
pub async fn resize<C: Cluster>(
    cluster: &C,
    from: u16,
    to: u16,
    hand_over: &HandOver<'_>,
) -> Result<Option<HandedOver>, ClusterError> {
    let handed = before_scale(cluster, from, to, hand_over).await?;
    cluster.scale(from, to).await?;
    Ok(handed)
}

/// The hand-over alone: the record read fresh (another actor may have moved the master since
/// the last probe), and the master switched over if `to` removes it; `count` is the replica
/// count the scale was decided on.
pub async fn before_scale<C: Cluster>(
    cluster: &C,
    count: u16,
    to: u16,
    hand_over: &HandOver<'_>,
) -> Result<Option<HandedOver>, ClusterError> {
    let record = cluster.fresh_record().await?;
    let members = cluster.members().await?;
    let Some(from) = removed_master(record.as_ref(), &members, to).cloned() else {
        return Ok(None);
    };
    // No master is moved for a scale someone else has overtaken.
    crate::cluster::refuse_resized(count, to, cluster.replicas().await?)?;
    tracing::info!(master = %from.id, to, "scaling down removes the master: handing it over first");
    let handed =
        failover::hand_over(cluster, &from, to, hand_over.health, &hand_over.context).await;
    match handed {
        Ok(to) => {
            tracing::info!(from = %from.id, to = %to.id, "handed the master over");
            Ok(Some(HandedOver { from, to }))
        }
        Err(error) => Err(error),
    }
}
