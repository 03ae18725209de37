//! `status` of a RedisPolicy: what an on-call engineer asks first ("who is master, since
//! when, is anything wrong"), written by the policy's leader through the status subresource
//! and shown by `kubectl get redispolicies` and `redis-autopilot status`.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// The observed state of one policy. Every field is optional: a policy the daemon has not
/// reached yet, or an invalid one, has only some of them.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct PolicyStatus {
    /// The `metadata.generation` this status describes: older means the daemon has not
    /// read the latest spec yet.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// One word for the whole policy.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phase: Option<Phase>,
    /// The recorded master (`host:port`, or the pod's name on Kubernetes).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub master: Option<String>,
    /// The failover epoch of the recorded master: it grows by one with every failover.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub epoch: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub replicas: Option<Replicas>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_scale: Option<LastAction>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_failover: Option<LastFailover>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_snapshot: Option<LastSnapshot>,
    /// `Valid`, `MasterAvailable`, `ScalingActive`, `BackedUp`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<Condition>,
}

impl PolicyStatus {
    /// Every top-level field as serialized, so a writer can clear the ones now empty.
    pub const FIELDS: &[&str] = &[
        "observedGeneration",
        "phase",
        "master",
        "epoch",
        "replicas",
        "lastScale",
        "lastFailover",
        "lastSnapshot",
        "conditions",
    ];
}

/// The policy's state in one word, most urgent first when several hold.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub enum Phase {
    /// The spec does not pass `check`: nothing is acted on (a previously valid version
    /// keeps running).
    Invalid,
    /// A failover or switchover is under way.
    FailingOver,
    /// Paused (`spec.paused` or the annotation): sampled and decided, never acted on.
    Paused,
    /// Serving, but something needs attention (a member down, a master not serving).
    Degraded,
    Healthy,
}

/// Instances, as the scale subresource counts them.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Replicas {
    /// What the policy last asked for.
    pub desired: u32,
    /// Members the target has (running or not).
    pub current: u32,
    /// Members that answered the last probe.
    pub ready: u32,
}

/// The last action of a kind: when, what and why (the decision's sentence).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct LastAction {
    /// RFC 3339.
    pub time: String,
    /// What was done, e.g. `scale 3 -> 4`.
    pub what: String,
    pub reason: String,
}

/// The last failover this daemon applied (a master replaced after it went down), with how long
/// it took. Switchovers (a scale-down handing the master over, `failover --graceful`) are not
/// recorded here; their Events and decisions are.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct LastFailover {
    pub time: String,
    pub what: String,
    pub reason: String,
    /// From the first failed probe to the last member repointed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub duration_seconds: Option<f64>,
}

/// The newest snapshot in the destination.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct LastSnapshot {
    /// When it finished, RFC 3339.
    pub time: String,
    pub id: String,
    /// The object as stored.
    pub bytes: u64,
    /// Whether a restore test proved it restores.
    pub verified: bool,
    /// Why it was taken: `schedule`, `alert NAME`, `before a scale-down`, a request's words.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

/// A condition, as Kubernetes objects report them (`metav1.Condition`'s fields).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Condition {
    #[serde(rename = "type")]
    pub kind: String,
    /// `True`, `False` or `Unknown`.
    pub status: String,
    /// One CamelCase word.
    pub reason: String,
    /// For people: for `Valid=False`, every problem as `check` prints it
    /// (`field.path: message`), one per line.
    pub message: String,
    /// When `status` last changed, RFC 3339.
    pub last_transition_time: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
}
