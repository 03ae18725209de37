//! The pure decision core: a validated policy, the history of observations, the fleet's
//! current shape, what the core remembers of its own past, and `now` in; decisions with their
//! reasons out. No I/O, no clock reads, no async: the daemon, `plan` and `simulate` all call
//! [`decide`] and differ only in where observations come from and where decisions go.
//!
//! Two kinds of decision, each with its own reason and its own action path: [`decide`] makes
//! [`ScalingDecision`]s (hold, scale; acted on by [`crate::act::scale`]) and
//! [`health::assess`] makes [`HealthDecision`]s (failover, fence, repoint, ...; acted on by
//! [`crate::act::health`]). [`Decision`] holds either, for the record only.

mod bursts;
pub mod health;
mod reason;
mod recommendations;
mod scaling;
mod seasonal;
mod series;

#[cfg(test)]
mod fixture;
#[cfg(test)]
mod tests;

use serde::Serialize;

use crate::observe::{History, Timestamp};
use crate::policy::Policy;

pub use health::{HealthDecision, HealthMemory, HealthReason};
pub use reason::{
    Adjustment, BurstReading, Reading, ScalingReason, SeasonalReading, number as format_number,
};
use scaling::Room;
pub use scaling::{Learnt, ScalingMemory};
pub use seasonal::SeasonalForecast;

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

/// A replica-count decision, what [`decide`] returns: plain data with the reason behind it.
/// Only the leader's executor applies it ([`crate::act::scale`]).
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "kind", rename_all = "camelCase")]
pub enum ScalingDecision {
    /// Keep the replica count.
    Hold { replicas: u16, reason: ScalingReason },
    /// Change the replica count.
    Scale { from: u16, to: u16, reason: ScalingReason },
}

impl ScalingDecision {
    /// Short stable name for logs, metrics labels and Kubernetes Event reasons.
    pub fn kind(&self) -> &'static str {
        match self {
            ScalingDecision::Hold { .. } => "hold",
            ScalingDecision::Scale { .. } => "scale",
        }
    }

    /// The numbers behind it.
    pub fn reason(&self) -> &ScalingReason {
        match self {
            ScalingDecision::Hold { reason, .. } | ScalingDecision::Scale { reason, .. } => reason,
        }
    }

    /// The reason as one human sentence.
    pub fn sentence(&self) -> String {
        self.reason().to_string()
    }
}

/// Either kind of decision, as the daemon records, counts and logs them (`/v1/decisions`,
/// metrics, Events). Each path makes and acts on its own kind; this only carries them to the
/// record. Serialized as the inner decision (untagged): each already names its `kind`.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(untagged)]
// A health decision is larger than a scaling one (its reason carries a candidate ranking);
// a record is built once and moved into the status ring, so boxing would buy nothing.
#[allow(clippy::large_enum_variant)]
pub enum Decision {
    Scaling(ScalingDecision),
    Health(HealthDecision),
}

impl Decision {
    /// Short stable name for logs, metrics labels and Kubernetes Event reasons.
    pub fn kind(&self) -> &'static str {
        match self {
            Decision::Scaling(decision) => decision.kind(),
            Decision::Health(decision) => decision.kind(),
        }
    }

    /// The reason as one human sentence.
    pub fn sentence(&self) -> String {
        match self {
            Decision::Scaling(decision) => decision.sentence(),
            Decision::Health(decision) => decision.sentence(),
        }
    }
}

impl From<ScalingDecision> for Decision {
    fn from(decision: ScalingDecision) -> Self {
        Decision::Scaling(decision)
    }
}

impl From<HealthDecision> for Decision {
    fn from(decision: HealthDecision) -> Self {
        Decision::Health(decision)
    }
}

/// Evaluates `policy` against what has been observed: its scaling decision, `None` for a
/// policy without `scaling`. Records the raw scaling recommendation in `memory`
/// (stabilization windows need it); applied actions are recorded by the caller with
/// [`ScalingMemory::record_scale`].
pub fn decide(
    policy: &Policy,
    history: &History,
    fleet: Fleet,
    memory: &mut Memory,
    now: Timestamp,
) -> Option<ScalingDecision> {
    let scaling = policy.scaling.as_ref()?;
    let (memory, settings) = (&mut memory.scaling, Settings::MayHaveChanged);
    Some(scaling::decide(scaling, history, fleet, memory, now, settings, Room::default()))
}

/// [`decide`] for one policy over a whole run, as `simulate` and `tune` replay it: the policy
/// is borrowed for as long as the memory lives, so it cannot change under it, and the memory
/// is checked against it once instead of at every decision (a comparison of the whole scaling
/// section, strings included: about a twentieth of a decision made every second). The daemon,
/// whose policy can be reloaded between two decisions, calls [`decide`].
#[derive(Debug)]
pub struct Decider<'p> {
    policy: &'p Policy,
    memory: Memory,
    /// What a decision given back ([`Decider::recycle`]) leaves, overwritten at the next: a
    /// decision then costs no allocation.
    spare: Room,
}

impl<'p> Decider<'p> {
    /// Decides for `policy`, starting from an empty memory.
    pub fn new(policy: &'p Policy) -> Self {
        Self { policy, memory: Memory::default(), spare: Room::default() }
    }

    /// As [`decide`] with this decider's policy and memory.
    pub fn decide(
        &mut self,
        history: &History,
        fleet: Fleet,
        now: Timestamp,
    ) -> Option<ScalingDecision> {
        let scaling = self.policy.scaling.as_ref()?;
        let (memory, settings) = (&mut self.memory.scaling, Settings::Unchanged);
        let room = std::mem::take(&mut self.spare);
        Some(scaling::decide(scaling, history, fleet, memory, now, settings, room))
    }

    /// Takes back a decision that is no longer needed, so the next one reuses its room.
    pub fn recycle(&mut self, decision: ScalingDecision) {
        let (ScalingDecision::Hold { reason, .. } | ScalingDecision::Scale { reason, .. }) =
            decision;
        self.spare = reason.into();
    }

    /// The memory, for the action path to record what it applied.
    pub fn memory(&mut self) -> &mut Memory {
        &mut self.memory
    }
}

/// Whether the settings a memory was learnt under may differ from the policy decided with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Settings {
    /// The policy may have been reloaded since the last decision: compare.
    MayHaveChanged,
    /// The policy is the one every earlier decision with this memory was made with.
    Unchanged,
}
