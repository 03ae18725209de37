//! Opening a policy's target ready to act: the backend ([`AnyCluster::open_as`]), and for a
//! local fleet with no master recorded its first one ([`failover::bootstrap`], chosen by the
//! health core like every later one). Here rather than in `cluster`, because a backend only
//! does what it is told: choosing a master is the failover's work, and the backend below it
//! must not reach up to it.

use crate::cluster::{AnyCluster, ClusterError};
use crate::failover;
use crate::policy::Policy;
use crate::sample::redis_access;

use super::Mode;

/// Opens `policy`'s target as [`AnyCluster::open_as`] does, then gives a local fleet its first
/// master if it has none. Without a master there is nothing to watch, so this happens in every
/// mode; dry-run and paused only stop the daemon from *changing* the fleet afterwards.
pub async fn open_as(
    policy: &Policy,
    mode: Mode,
    kube: &crate::cluster::kubernetes::KubeClient,
    identity: &str,
) -> Result<AnyCluster, ClusterError> {
    let cluster = AnyCluster::open_as(policy, kube, identity).await?;
    if let AnyCluster::Local(fleet) = &cluster {
        let access = redis_access(policy).map_err(ClusterError::Access)?;
        let context = failover::Context::new(policy, &access, identity);
        let seed_from = policy.snapshots.as_ref().and_then(|s| s.bootstrap.as_ref());
        failover::bootstrap(fleet.as_ref(), &policy.health, seed_from, &context).await?;
        let replicas = crate::cluster::Cluster::replicas(fleet.as_ref()).await?;
        tracing::info!(policy = %policy.name, replicas, ?mode, "local fleet ready");
    }
    Ok(cluster)
}
