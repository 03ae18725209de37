//! The [`Cluster`] trait for the local fleet: what the action path asks of it (list, scale,
//! the durable record, the guarded role commands), on top of the fleet's state file and
//! processes in [`super`].

use std::collections::BTreeSet;

use super::process::Process;
use super::{LocalFleet, read_state_async};
use crate::cluster::{Cluster, ClusterError, MasterRecord, Member};

impl Cluster for LocalFleet {
    /// Every ordinal below the requested count, the recorded master's, and any still running
    /// above the count (a scale-down under way). One that runs nothing of ours is marked gone
    /// with why (it exited, it cannot start), unless something else answers on its address:
    /// that is probed like any member, so a stranger claiming master there is fenced.
    async fn members(&self) -> Result<Vec<Member>, ClusterError> {
        let state = read_state_async(&self.state_path).await?;
        let master = self.master_ordinal(&state);
        let (alive, not_running) = {
            let mut processes = self.lock();
            self.forget_exited(&mut processes);
            let ordinals: BTreeSet<u16> = (0..state.replicas)
                .chain(master)
                .chain(processes.running.keys().copied())
                .collect();
            let alive: BTreeSet<u16> = processes.running.keys().copied().collect();
            let not_running: Vec<(u16, String)> = ordinals
                .iter()
                .filter(|o| !alive.contains(o))
                .map(|o| {
                    (*o, processes.down.get(o).cloned().unwrap_or_else(|| "not started".into()))
                })
                .collect();
            (ordinals.into_iter().filter(|o| alive.contains(o)).collect::<Vec<_>>(), not_running)
        };
        let mut members = Vec::with_capacity(alive.len() + not_running.len());
        for ordinal in alive {
            members.push(self.member(ordinal)?);
        }
        for (ordinal, why) in not_running {
            let mut member = self.member(ordinal)?;
            // Restarted by someone else (by hand, a supervisor): watch the new process.
            if let Some(adopted) = self.adoptable(ordinal, member.endpoint.port).await {
                let process = Process::Adopted(adopted);
                tracing::info!(instance = %member.id, pid = process.pid(), "adopting an instance restarted by someone else");
                let mut processes = self.lock();
                processes.running.insert(ordinal, process);
                processes.down.remove(&ordinal);
                processes.foreign.remove(&ordinal);
            } else {
                member.gone = self.gone(&member, master == Some(ordinal), why).await;
            }
            members.push(member);
        }
        members.sort_by_key(|m| m.ordinal);
        Ok(members)
    }

    async fn replicas(&self) -> Result<u16, ClusterError> {
        Ok(read_state_async(&self.state_path).await?.replicas)
    }

    /// Reconciles to `to` instances: refused while the recorded master runs on an ordinal
    /// `to` removes (the action path hands it over first), before `to` is recorded as
    /// requested, so a refusal changes nothing; the highest ordinals are stopped; missing
    /// ordinals below `to` are started as replicas of the recorded master (of themselves when
    /// none is recorded) and sync from it in the background, except while the recorded master
    /// runs without serving: they wait for it ([`Cluster::heal`] starts them). If the daemon
    /// dies halfway, calling `scale(from, to)` again finishes the job. The count is checked
    /// under the fleet's lock, so two callers cannot both resize from the same count.
    async fn scale(&self, from: u16, to: u16) -> Result<(), ClusterError> {
        let mut life = self.lifecycle.lock().await;
        let state = read_state_async(&self.state_path).await?;
        crate::cluster::refuse_resized(from, to, state.replicas)?;
        let members = self.members().await?;
        crate::cluster::refuse_removing_master(state.record().as_ref(), &members, to)?;
        let state = self.persist_replicas(to).await?;
        let removing: Vec<(u16, Process)> = {
            let mut processes = self.lock();
            let removed = processes.running.split_off(&to);
            processes.down.retain(|&o, _| o < to);
            processes.foreign.retain(|&o| o < to);
            removed.into_iter().rev().collect()
        };
        for (ordinal, process) in removing {
            self.stop(ordinal, process).await?;
        }
        self.start_missing(&mut life, &state, false).await
    }

    async fn heal(&self) -> Result<(), ClusterError> {
        let mut life = self.lifecycle.lock().await;
        let state = read_state_async(&self.state_path).await?;
        self.start_missing(&mut life, &state, true).await
    }

    async fn recorded_master(&self) -> Result<Option<MasterRecord>, ClusterError> {
        Ok(read_state_async(&self.state_path).await?.record())
    }

    async fn record_master(&self, record: MasterRecord) -> Result<(), ClusterError> {
        let _writing = self.writing.lock().await;
        self.update_state(move |state| {
            let current = state.record();
            let now = chrono::Utc::now();
            let Some(next) = MasterRecord::advance(current.as_ref(), &record, now)? else {
                return Ok(false);
            };
            state.master = Some(next.instance);
            state.epoch = next.epoch;
            state.claim = next.claim;
            Ok(true)
        })
        .await
        .map(drop)
    }

    /// The record is checked, then `REPLICAOF NO ONE` sent with no lock held.
    async fn promote(&self, member: &Member, epoch: u64) -> Result<(), ClusterError> {
        let state = read_state_async(&self.state_path).await?;
        self.guarded().promote(state.record().as_ref(), member, epoch).await
    }

    /// The record is checked, then `FAILOVER TO` sent with no lock held.
    async fn switch_over(
        &self,
        from: &Member,
        to: &Member,
        epoch: u64,
    ) -> Result<(), ClusterError> {
        let state = read_state_async(&self.state_path).await?;
        self.guarded().switch_over(state.record().as_ref(), from, to, epoch).await
    }

    /// Refuses to repoint the recorded master: that would leave the fleet without the master
    /// it records (record another master first). The record is checked, then `REPLICAOF` sent
    /// with no lock held, so repoints run concurrently and one that waits for an unreachable
    /// instance delays no other.
    async fn repoint(&self, member: &Member, master: &Member) -> Result<(), ClusterError> {
        let state = read_state_async(&self.state_path).await?;
        self.guarded().repoint(state.record().as_ref(), member, master).await
    }
}
