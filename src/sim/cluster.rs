//! The simulated deployment behind the daemon's [`Cluster`] trait, so the policy under test
//! acts through the same path as the daemon ([`crate::act::scale`]) instead of resizing the
//! model itself.
//!
//! - Members are the model's instances: ids `redis-0`, `redis-1`, ... (StatefulSet pod names)
//!   with endpoints `sim:<ordinal>`. Nothing ever connects to them: the policy controller builds
//!   its observations from the model directly.
//! - [`Cluster::scale`] applies [`ClusterModel::scale_to`] at the simulation's current time,
//!   which the replay sets before each evaluation ([`SimCluster::set_now`]).
//! - Roles are modelled, data is not: the master record is kept in memory with the trait's
//!   epoch rules, and the model remembers which ordinal serves as master. `promote` and
//!   `switch_over` move that role after checking the record (a switch over needs a ready
//!   target, as Redis's `FAILOVER TO` needs one caught up); `repoint` only checks it.
//!   [`Cluster::probe`] answers from the model: the serving master, ready replicas linked up,
//!   warming ones still syncing. A replay starts with the master recorded on the starting
//!   fleet's highest ordinal ([`SimCluster::with_master_at`]), so a scale-down below that count
//!   goes through the daemon's hand-over ([`crate::act::hand_over`]).
//!
//! Every future is ready at once (no I/O, no awaits), so a synchronous caller can drive it with
//! `futures::FutureExt::now_or_never`. The model sits behind a `std::sync::Mutex` only because
//! the trait requires `Sync`; the replay, which owns the cluster, reaches it lock-free through
//! [`SimCluster::model_mut`] in its per-row integration loop, and lends it to a controller's
//! tick exclusively, so the controller reads the model lock-free too ([`SimCluster::model`]).

use std::sync::{Mutex, MutexGuard, PoisonError};

use super::model::ClusterModel;
use super::trace::Millis;
use crate::cluster::{Cluster, ClusterError, MasterRecord, Member, refuse_removing_master};
use crate::observe::{Info, InstanceSample, Outcome, Role};
use crate::sample::redis::{Endpoint, RedisSampler};

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
    /// The ordinal serving as master in the model: where the last promotion or switchover
    /// put it (the record may name another between the record write and the Redis step).
    serving: Option<u16>,
    /// Switchovers carried out, for whoever asks how often the master moved.
    switchovers: u64,
}

impl SimCluster {
    /// `model` as it is at `now`, with no master recorded.
    pub fn new(model: ClusterModel, now: Millis) -> Self {
        let state = State { model, now, master: None, serving: None, switchovers: 0 };
        Self { state: Mutex::new(state) }
    }

    /// The master recorded at epoch 1 on `ordinal`, serving there: a StatefulSet whose master
    /// a past failover left on that pod.
    pub fn with_master_at(self, ordinal: u16) -> Self {
        {
            let mut state = self.lock();
            state.master = Some(MasterRecord::new(&member(ordinal).id, 1));
            state.serving = Some(ordinal);
        }
        self
    }

    /// The ordinal serving as master in the model, if any. Lock-free, as [`SimCluster::model`].
    pub fn serving_master(&mut self) -> Option<u16> {
        self.state_mut().serving
    }

    /// The master record as it stands.
    pub fn record(&self) -> Option<MasterRecord> {
        self.lock().master.clone()
    }

    /// How many switchovers moved the master role so far.
    pub fn switchovers(&self) -> u64 {
        self.lock().switchovers
    }

    /// Exclusive access without locking: the owner integrates time through this.
    pub fn model_mut(&mut self) -> &mut ClusterModel {
        &mut self.state_mut().model
    }

    /// The model as a controller reads it. Lock-free: the exclusive borrow the replay lends a
    /// controller stands in for the lock, which would cost two atomic operations per read at
    /// every tick of a run.
    pub fn model(&mut self) -> &ClusterModel {
        &self.state_mut().model
    }

    /// Moves the simulation's clock to `now` (the replay calls this before each evaluation).
    pub fn set_now(&mut self, now: Millis) {
        self.state_mut().now = now;
    }

    fn state_mut(&mut self) -> &mut State {
        self.state.get_mut().unwrap_or_else(PoisonError::into_inner)
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

    /// Refuses, like every backend, a count changed since `from` was read and to remove the
    /// recorded master; otherwise resizes.
    async fn scale(&self, from: u16, to: u16) -> Result<(), ClusterError> {
        crate::cluster::refuse_resized(from, to, self.lock().model.requested())?;
        let members = self.members().await?;
        refuse_removing_master(self.lock().master.as_ref(), &members, to)?;
        self.resize(to);
        Ok(())
    }

    /// Answers from the model: the serving master, ready replicas linked up, warming ones
    /// still syncing, ordinals beyond the requested count unreachable. Offsets and keys are
    /// not modelled, so every replica is as caught up as the others.
    async fn probe(&self, members: &[Member], _prober: &RedisSampler) -> Vec<InstanceSample> {
        let state = self.lock();
        let ready: Vec<bool> = state.model.instances(0.0).map(|i| i.ready).collect();
        members
            .iter()
            .map(|member| {
                let Some(&ready) = ready.get(usize::from(member.ordinal)) else {
                    let outcome = Outcome::Unreachable("not in the model".into());
                    return InstanceSample { id: member.id.clone(), outcome, info: None };
                };
                let role = if state.serving == Some(member.ordinal) {
                    Role::Master
                } else {
                    Role::Replica
                };
                let mut info = Info::new(role);
                info.master_link_up = (role == Role::Replica).then_some(ready);
                info.syncing = !ready;
                InstanceSample { id: member.id.clone(), outcome: Outcome::Ok, info: Some(info) }
            })
            .collect()
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
        let mut state = self.lock();
        MasterRecord::may_promote(state.master.as_ref(), member, epoch)?;
        state.serving = Some(member.ordinal);
        Ok(())
    }

    /// Checked like `promote`; then, as `FAILOVER TO` does, fails unless `from` serves as
    /// master and `to` is ready (caught up), and swaps the roles.
    async fn switch_over(
        &self,
        from: &Member,
        to: &Member,
        epoch: u64,
    ) -> Result<(), ClusterError> {
        let mut state = self.lock();
        MasterRecord::may_promote(state.master.as_ref(), to, epoch)?;
        let failed = |why: &str| ClusterError::Switchover {
            from: from.id.clone(),
            to: to.id.clone(),
            why: why.to_owned(),
        };
        if state.serving != Some(from.ordinal) {
            return Err(failed("it does not serve as master in the model"));
        }
        let ready =
            state.model.instances(0.0).nth(usize::from(to.ordinal)).is_some_and(|i| i.ready);
        if !ready {
            return Err(failed("the target is not ready (still syncing) in the model"));
        }
        state.serving = Some(to.ordinal);
        state.switchovers += 1;
        Ok(())
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
        ready(cluster.scale(1, 3)).expect("never fails");
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
