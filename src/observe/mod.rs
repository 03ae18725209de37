//! What the samplers saw: one [`Observation`] per sampling round, holding every instance's
//! outcome and `INFO` numbers and every PromQL query's value, and the bounded [`History`] of
//! them that the decision core reads. Plain data; no I/O here.

mod history;

use std::collections::HashMap;

use chrono::{DateTime, Utc};

pub use history::{History, Window};

/// Wall-clock instant of a sample or decision. The core never reads a clock: callers pass it.
pub type Timestamp = DateTime<Utc>;

/// One sampling round across a deployment.
#[derive(Debug, Clone, PartialEq)]
pub struct Observation {
    pub at: Timestamp,
    pub instances: Vec<InstanceSample>,
    /// One entry per PromQL query the policy uses, keyed by the query text.
    pub queries: Vec<QueryResult>,
}

/// One instance's sample in a round.
#[derive(Debug, Clone, PartialEq)]
pub struct InstanceSample {
    pub id: InstanceId,
    pub outcome: Outcome,
    /// Present exactly when `outcome` is [`Outcome::Ok`].
    pub info: Option<Info>,
}

/// Stable name of an instance: a pod name, or `host:port`.
pub type InstanceId = String;

/// How a sample attempt ended. Refused and timed out are kept apart: a refused connection
/// is strong evidence of a dead process, a timeout is not.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    Ok,
    Timeout,
    Refused,
    AuthFailed,
    Protocol(String),
}

/// The parts of Redis `INFO` the core reasons about, plus every numeric field by name.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Info {
    pub role: Role,
    /// `master_link_status` on a replica; `None` on a master.
    pub master_link_up: Option<bool>,
    /// A full sync or RDB load in progress: the instance cannot serve reads yet.
    pub syncing: bool,
    numbers: HashMap<String, f64>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Role {
    Master,
    #[default]
    Replica,
}

impl Info {
    pub fn new(role: Role) -> Self {
        Self { role, ..Self::default() }
    }

    /// Records a numeric `INFO` field.
    pub fn set_number(&mut self, field: &str, value: f64) {
        self.numbers.insert(field.to_owned(), value);
    }

    /// A numeric `INFO` field by its name, e.g. `instantaneous_ops_per_sec`.
    pub fn number(&self, field: &str) -> Option<f64> {
        self.numbers.get(field).copied()
    }

    /// Whether the instance serves reads: a master, or a replica linked to its master and not
    /// in the middle of a sync.
    pub fn serving(&self) -> bool {
        !self.syncing && (self.role == Role::Master || self.master_link_up == Some(true))
    }
}

impl InstanceSample {
    /// The instance answered and can serve reads.
    pub fn ready(&self) -> bool {
        self.info.as_ref().is_some_and(Info::serving)
    }
}

/// The value of one PromQL query in a round: every series' value (a scalar is one), or why
/// there is none. The metric's `aggregate` combines several series; an empty result is
/// missing, never zero.
#[derive(Debug, Clone, PartialEq)]
pub struct QueryResult {
    pub query: String,
    pub value: Result<Vec<f64>, String>,
}

impl Observation {
    /// Instances that answered and serve reads.
    pub fn ready_count(&self) -> usize {
        self.instances.iter().filter(|s| s.ready()).count()
    }

    pub fn query(&self, query: &str) -> Option<&QueryResult> {
        self.queries.iter().find(|q| q.query == query)
    }
}
