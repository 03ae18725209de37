//! Seeding a new fleet's first master from a snapshot (`spec.snapshots.bootstrap`): the
//! same one-shot master as `restore --into` ([`Snapshotter::load_from_seed`]), loading the
//! instance the health core chose while no master is recorded. Recording and promoting it
//! is the failover's work, done by the caller once the load is confirmed, so clients never
//! see an empty first master.
//!
//! Never over data: every member is asked for its keys right before the load (the health
//! core decided on a probe that may be a moment old), and one that holds any, or cannot be
//! asked, refuses the seed. No claim is taken: with no record there is nothing to claim, and
//! the record written afterwards at epoch 1 is refused if any other actor recorded a master
//! meanwhile.

use std::time::Duration;

use super::{Progress, Snapshotter};
use crate::cluster::{Cluster, Member};
use crate::policy::Bootstrap;
use crate::snapshot::SnapshotError;
use crate::snapshot::manifest::Manifest;
use crate::snapshot::seed::{Limits, Loaded};

impl Snapshotter {
    /// The snapshot `from` names: `None` when it is `latest` and the destination lists none
    /// (a new cache, not an error). A listing that fails is an error, never "none".
    pub async fn bootstrap_source(
        &self,
        from: &Bootstrap,
    ) -> Result<Option<Manifest>, SnapshotError> {
        match from {
            Bootstrap::Latest => Ok(self.list().await?.pop()),
            Bootstrap::Snapshot(id) => self.find(id).await.map(Some),
        }
    }

    /// Loads `target`, a member of `members`, from `manifest`, if no member holds data.
    /// `timeout` bounds each role command and INFO; the load itself, the policy's snapshot
    /// deadline.
    pub async fn seed_first_master<C: Cluster>(
        &self,
        cluster: &C,
        members: &[Member],
        target: &Member,
        manifest: &Manifest,
        timeout: Duration,
        progress: &dyn Progress,
    ) -> Result<Loaded, SnapshotError> {
        super::into::seed_address(target)?;
        let step = timeout.max(Duration::from_secs(2));
        let server = self.loadable_by(target, manifest, step).await?;
        let payload = self.checked_payload(manifest, &server).await?;
        let holding = self.holding_data(members, step).await;
        if !holding.is_empty() {
            return Err(SnapshotError::SeedOverData { instances: holding.join(", ") });
        }
        let limits = Limits { step, total: self.config.limits.deadline, ..Limits::default() };
        let failed =
            |source| SnapshotError::Cluster { action: "point the target at the seed", source };
        let point =
            |seed: Member| async move { cluster.repoint(target, &seed).await.map_err(failed) };
        self.load_from_seed(target, payload, limits, progress, point).await
    }
}
