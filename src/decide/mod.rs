//! The pure decision core: a validated policy, the history of observations, the fleet's
//! current shape, what the core remembers of its own past, and `now` in; decisions with their
//! reasons out. No I/O, no clock reads, no async: the daemon, `plan` and `simulate` all call
//! [`decide`] and differ only in where observations come from and where decisions go.

mod reason;
mod scaling;
mod series;

#[cfg(test)]
mod fixture;
#[cfg(test)]
mod tests;

use serde::Serialize;

use crate::observe::{History, Timestamp};
use crate::policy::Policy;

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
}

/// One decision, plain data with the reason behind it. Only the leader's executor applies it.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "kind", rename_all = "camelCase")]
pub enum Decision {
    /// Keep the replica count.
    Hold { replicas: u16, reason: ScalingReason },
    /// Change the replica count.
    Scale { from: u16, to: u16, reason: ScalingReason },
}

impl Decision {
    /// Short stable name for logs, metrics labels and Kubernetes Event reasons.
    pub fn kind(&self) -> &'static str {
        match self {
            Decision::Hold { .. } => "hold",
            Decision::Scale { .. } => "scale",
        }
    }

    /// The reason as one human sentence.
    pub fn reason(&self) -> String {
        match self {
            Decision::Hold { reason, .. } | Decision::Scale { reason, .. } => reason.to_string(),
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
