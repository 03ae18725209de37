//! What the samplers saw: one [`Observation`] per sampling round, holding every instance's
//! outcome and typed `INFO` ([`info`] parses replies) and every PromQL query's value, and the
//! bounded [`History`] of them that the decision core reads. Plain data; no I/O here.

mod history;
pub mod info;

pub use history::{History, Window, seconds_between, window_start};
pub use info::{Info, RedisId, ReplicaState, Role};

pub use crate::model::{InstanceId, Timestamp};

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

/// How a sample attempt ended. Refused and timed out are kept apart: a refused connection
/// is strong evidence of a dead process, a timeout is not.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    Ok,
    Timeout,
    Refused,
    /// Wrong password, unknown user, or a user not allowed to run `INFO`.
    AuthFailed(String),
    /// The peer answered something that is not Redis.
    Protocol(String),
    /// The TLS handshake failed: an untrusted, expired or misnamed certificate. Apart from
    /// `Unreachable` so an expired certificate is named as such on a dashboard.
    Tls(String),
    /// Any other network failure: reset, unreachable host, name not resolved.
    Unreachable(String),
}

impl std::fmt::Display for Outcome {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Outcome::Ok => f.write_str("ok"),
            Outcome::Timeout => f.write_str("timed out"),
            Outcome::Refused => f.write_str("connection refused"),
            Outcome::AuthFailed(why) => write!(f, "authentication failed: {why}"),
            Outcome::Protocol(why) => write!(f, "protocol error: {why}"),
            Outcome::Tls(why) => write!(f, "TLS handshake failed: {why}"),
            Outcome::Unreachable(why) => write!(f, "unreachable: {why}"),
        }
    }
}

impl Outcome {
    /// Short stable name for metric labels: the variant only, never the detail text, so the
    /// label set stays bounded whatever a peer answers.
    pub fn label(&self) -> &'static str {
        match self {
            Outcome::Ok => "ok",
            Outcome::Timeout => "timeout",
            Outcome::Refused => "refused",
            Outcome::AuthFailed(_) => "auth_failed",
            Outcome::Protocol(_) => "protocol",
            Outcome::Tls(_) => "tls",
            Outcome::Unreachable(_) => "unreachable",
        }
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

    /// [`Info::retain_numbers`] on every instance that answered.
    pub fn retain_numbers(&mut self, fields: &[&str]) {
        for info in self.instances.iter_mut().filter_map(|s| s.info.as_mut()) {
            info.retain_numbers(fields.iter().copied());
        }
    }

    pub fn query(&self, query: &str) -> Option<&QueryResult> {
        self.queries.iter().find(|q| q.query == query)
    }
}
