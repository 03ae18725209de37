//! The pure decision core: a validated policy, the history of observations, the fleet's
//! current shape, what the core remembers of its own past, and `now` in; decisions with their
//! reasons out. No I/O, no clock reads, no async: the daemon, `plan` and `simulate` all call
//! [`decide`] and differ only in where observations come from and where decisions go.

pub mod health;
mod reason;
mod scaling;
mod series;

#[cfg(test)]
mod fixture;
#[cfg(test)]
mod health_tests;
#[cfg(test)]
mod tests;

use serde::Serialize;

use crate::model::Advertised;
use crate::observe::{History, InstanceId, Timestamp};
use crate::policy::Policy;

pub use health::{HealthMemory, HealthReason};
pub use reason::{Adjustment, Reading, ScalingReason, number as format_number};
pub use scaling::ScalingMemory;

/// The deployment as the cluster reports it right now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Fleet {
    /// Instances the deployment asks for (StatefulSet `spec.replicas`), ready or not.
    pub replicas: u16,
}

/// What the core remembers between evaluations. Owned by the caller and passed back in, so the
/// core stays a function of its inputs.
#[derive(Debug, Clone, Default)]
pub struct Memory {
    pub scaling: ScalingMemory,
    pub health: HealthMemory,
}

/// One decision, plain data with the reason behind it. Only the leader's executor applies it.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "kind", rename_all = "camelCase")]
pub enum Decision {
    /// Keep the replica count.
    Hold { replicas: u16, reason: ScalingReason },
    /// Change the replica count.
    Scale { from: u16, to: u16, reason: ScalingReason },
    /// Record `to` as master at `epoch`, promote it, repoint the others (`from`: the master
    /// it replaces; `None` when there was none).
    Failover { from: Option<InstanceId>, to: InstanceId, epoch: u64, reason: HealthReason },
    /// Finish promoting the recorded master (the daemon stopped between record and promote).
    Promote { instance: InstanceId, epoch: u64, reason: HealthReason },
    /// The master is down and nothing is done about it (manual, off, rate-limited, no
    /// candidate): for people and alerts.
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

impl Decision {
    /// Short stable name for logs, metrics labels and Kubernetes Event reasons.
    pub fn kind(&self) -> &'static str {
        match self {
            Decision::Hold { .. } => "hold",
            Decision::Scale { .. } => "scale",
            Decision::Failover { .. } => "failover",
            Decision::Promote { .. } => "promote",
            Decision::MasterDown { .. } => "masterDown",
            Decision::Fence { .. } => "fence",
            Decision::Repoint { .. } => "repoint",
            Decision::Detach { .. } => "detach",
            Decision::Advertise { .. } => "advertise",
        }
    }

    /// The scaling reason, for the decisions [`decide`] makes.
    pub fn scaling_reason(&self) -> Option<&ScalingReason> {
        match self {
            Decision::Hold { reason, .. } | Decision::Scale { reason, .. } => Some(reason),
            _ => None,
        }
    }

    /// The reason as one human sentence.
    pub fn reason(&self) -> String {
        match self {
            Decision::Hold { reason, .. } | Decision::Scale { reason, .. } => reason.to_string(),
            Decision::Failover { reason, .. }
            | Decision::Promote { reason, .. }
            | Decision::MasterDown { reason, .. }
            | Decision::Fence { reason, .. }
            | Decision::Repoint { reason, .. }
            | Decision::Detach { reason, .. }
            | Decision::Advertise { reason, .. } => reason.to_string(),
        }
    }
}

/// Evaluates `policy` against what has been observed. Records the raw scaling recommendation
/// in `memory` (stabilization windows need it); applied actions are recorded by the caller
/// with [`ScalingMemory::record_scale`].
pub fn decide(
    policy: &Policy,
    history: &History,
    fleet: Fleet,
    memory: &mut Memory,
    now: Timestamp,
) -> Vec<Decision> {
    let mut decisions = Vec::new();
    if let Some(scaling) = &policy.scaling {
        decisions.push(scaling::decide(scaling, history, fleet, &mut memory.scaling, now));
    }
    decisions
}
