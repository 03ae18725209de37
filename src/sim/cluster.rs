//! The simulated deployment behind the daemon's [`Cluster`] trait, so the policy under test
//! acts through the same path as the daemon ([`crate::act::scale`]) instead of resizing the
//! model itself.
//!
//! - Members are the model's instances: ids `redis-0`, `redis-1`, ... (StatefulSet pod names)
//!   with endpoints `sim:<ordinal>`. Nothing ever connects to them: the policy controller builds
//!   its observations from the model directly.
//! - [`Cluster::scale`] applies [`ClusterModel::scale_to`] at the simulation's current time,
//!   which the replay sets before each evaluation ([`SimCluster::set_now`]).
//! - Failover is not simulated: the master record is kept in memory with the trait's epoch
//!   rules, and `promote`/`repoint` only check them. Ordinal 0 always plays the master in the
//!   model, whatever is recorded.
//!
//! Every future is ready at once (no I/O, no awaits), so a synchronous caller can drive it with
//! `futures::FutureExt::now_or_never`. The model sits behind a `std::sync::Mutex` only because
//! the trait requires `Sync`; the replay, which owns the cluster, reaches it lock-free through
//! [`SimCluster::model_mut`] in its per-row integration loop.

use std::sync::{Mutex, MutexGuard, PoisonError};

use super::model::ClusterModel;
use super::trace::Millis;
use crate::cluster::{Cluster, ClusterError, MasterRecord, Member};
use crate::sample::redis::Endpoint;

/// Host of every simulated endpoint: a name that resolves nowhere, on purpose.
const HOST: &str = "sim";

pub struct SimCluster {
    state: Mutex<State>,
}

struct State {
    model: ClusterModel,
    /// The simulation's current time: when a scale requested now takes effect.
    now: Millis,
    master: Option<MasterRecord>,
}

impl SimCluster {
    /// `model` as it is at `now`, with no master recorded.
    pub fn new(model: ClusterModel, now: Millis) -> Self {
        Self { state: Mutex::new(State { model, now, master: None }) }
    }

    /// Exclusive access without locking: the owner integrates time through this.
    pub fn model_mut(&mut self) -> &mut ClusterModel {
        &mut self.state.get_mut().unwrap_or_else(PoisonError::into_inner).model
    }

    /// Moves the simulation's clock to `now` (the replay calls this before each evaluation).
    pub fn set_now(&mut self, now: Millis) {
        self.state.get_mut().unwrap_or_else(PoisonError::into_inner).now = now;
    }

    /// Reads the model through a shared reference, as a controller does.
    pub fn with_model<R>(&self, read: impl FnOnce(&ClusterModel) -> R) -> R {
        read(&self.lock().model)
    }

    /// Sets the replica count at the current time: what [`Cluster::scale`] does, for a
    /// baseline (the HPA) that is not the policy's action path.
    pub fn resize(&self, to: u16) {
        let mut state = self.lock();
        let now = state.now;
        state.model.scale_to(to, now);
    }

    /// A panic while holding the lock cannot leave the model half-changed in a way later
    /// calls could trip over (every mutation is one model call), so a poisoned lock is used
    /// as is.
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

fn member(ordinal: u16) -> Member {
    let id = format!("redis-{ordinal}");
    Member {
        endpoint: Endpoint { id: id.clone(), host: HOST.into(), port: ordinal },
        id,
        ordinal,
        gone: None,
    }
}

impl Cluster for SimCluster {
    async fn members(&self) -> Result<Vec<Member>, ClusterError> {
        Ok((0..self.lock().model.requested()).map(member).collect())
    }

    async fn replicas(&self) -> Result<u16, ClusterError> {
        Ok(self.lock().model.requested())
    }

    /// Never fails. The recorded master is not switched over first: the model has no roles
    /// to switch, and its master (ordinal 0) survives every scale but one to zero.
    async fn scale(&self, to: u16) -> Result<(), ClusterError> {
        self.resize(to);
        Ok(())
    }

    async fn recorded_master(&self) -> Result<Option<MasterRecord>, ClusterError> {
        Ok(self.lock().master.clone())
    }

    /// The trait's rules ([`MasterRecord::advance`]), with claims timed by the wall clock as
    /// the failover state machine writes them.
    async fn record_master(&self, record: MasterRecord) -> Result<(), ClusterError> {
        let mut state = self.lock();
        if let Some(next) =
            MasterRecord::advance(state.master.as_ref(), &record, chrono::Utc::now())?
        {
            state.master = Some(next);
        }
        Ok(())
    }

    async fn promote(&self, member: &Member, epoch: u64) -> Result<(), ClusterError> {
        Ok(MasterRecord::may_promote(self.lock().master.as_ref(), member, epoch)?)
    }

    async fn repoint(&self, member: &Member, _master: &Member) -> Result<(), ClusterError> {
        Ok(MasterRecord::may_repoint(self.lock().master.as_ref(), member)?)
    }
}

#[cfg(test)]
mod tests {
    use futures::FutureExt;

    use super::*;

    fn ready<T>(future: impl Future<Output = T>) -> T {
        future.now_or_never().expect("simulated cluster futures are ready at once")
    }

    #[test]
    fn scale_applies_at_the_current_time_and_members_follow() {
        let mut cluster = SimCluster::new(ClusterModel::new(1, 100.0, 30_000, 0), 0);
        cluster.set_now(10_000);
        ready(cluster.scale(3)).expect("never fails");
        assert_eq!(ready(cluster.replicas()).expect("replicas"), 3);
        assert_eq!(cluster.model_mut().next_ready_at(), Some(40_000));
        let members = ready(cluster.members()).expect("members");
        let names: Vec<(&str, u16)> =
            members.iter().map(|m| (m.id.as_str(), m.endpoint.port)).collect();
        assert_eq!(names, [("redis-0", 0), ("redis-1", 1), ("redis-2", 2)]);
    }

    #[test]
    fn the_master_record_follows_the_epoch_rules() {
        let cluster = SimCluster::new(ClusterModel::new(2, 100.0, 0, 0), 0);
        let (m0, m1) = (member(0), member(1));
        let record = |instance: &str, epoch| MasterRecord::new(instance, epoch);
        assert!(ready(cluster.promote(&m0, 1)).is_err());
        ready(cluster.record_master(record("redis-0", 1))).expect("first record");
        ready(cluster.record_master(record("redis-0", 1))).expect("same record again");
        assert!(matches!(
            ready(cluster.record_master(record("redis-1", 1))),
            Err(ClusterError::StaleEpoch { .. })
        ));
        ready(cluster.promote(&m0, 1)).expect("recorded");
        assert!(ready(cluster.repoint(&m0, &m1)).is_err());
        ready(cluster.repoint(&m1, &m0)).expect("a replica may be repointed");
        assert_eq!(ready(cluster.recorded_master()).expect("read"), Some(record("redis-0", 1)));
    }
}
