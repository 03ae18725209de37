//! What the daemon knows about itself, shared between the policy tasks that write it and the
//! HTTP handlers that read it: readiness (has every policy been evaluated once?) and a bounded
//! ring of recent decisions with their reasons and what became of them.
//!
//! A [`Status`] is a cheap handle (`Arc` inside). The lock is a `std::sync::Mutex` held only
//! for a copy or a push, never across an `.await`.

use std::collections::{BTreeMap, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use serde::Serialize;

use crate::act::ActionOutcome;

use crate::decide::Decision;
use crate::observe::Timestamp;

/// Decisions kept by default: with a 15 s interval and a handful of policies, about the last
/// hour, which is what on-call asks "why did it do that?" about.
pub const DEFAULT_CAPACITY: usize = 500;

/// One decision as `GET /v1/decisions` shows it.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct DecisionRecord {
    pub at: Timestamp,
    pub policy: String,
    pub decision: Decision,
    /// The reason as one sentence ([`Decision::sentence`]), so readers need not render it.
    pub sentence: String,
    /// `None` when the decision asks for nothing (hold).
    pub action: Option<ActionOutcome>,
}

impl DecisionRecord {
    pub fn new(
        at: Timestamp,
        policy: &str,
        decision: impl Into<Decision>,
        action: Option<ActionOutcome>,
    ) -> Self {
        let decision = decision.into();
        let sentence = decision.sentence();
        Self { at, policy: policy.to_owned(), decision, sentence, action }
    }
}

/// Shared daemon state; clone freely.
#[derive(Debug, Clone)]
pub struct Status {
    inner: Arc<Mutex<Inner>>,
}

#[derive(Debug)]
struct Inner {
    /// Loaded policies and whether each has been evaluated at least once.
    policies: BTreeMap<String, bool>,
    /// Oldest first; never longer than `capacity`.
    recent: VecDeque<DecisionRecord>,
    capacity: usize,
}

impl Default for Status {
    fn default() -> Self {
        Self::new(DEFAULT_CAPACITY)
    }
}

impl Status {
    /// Keeps the `capacity` most recent decisions (at least one).
    pub fn new(capacity: usize) -> Self {
        let capacity = capacity.max(1);
        Self {
            inner: Arc::new(Mutex::new(Inner {
                policies: BTreeMap::new(),
                recent: VecDeque::with_capacity(capacity),
                capacity,
            })),
        }
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        // A writer that panicked mid-push leaves at worst a ring one record short: still
        // worth serving, so a poisoned lock is used as is rather than taking the API down.
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// A policy is running; readiness now waits for its first evaluation. Loading it again
    /// (a reload) keeps what it already achieved.
    pub fn policy_loaded(&self, name: &str) {
        self.lock().policies.entry(name.to_owned()).or_insert(false);
    }

    /// A policy was removed on reload: readiness no longer waits for it. Its past decisions
    /// stay in the ring.
    pub fn policy_unloaded(&self, name: &str) {
        self.lock().policies.remove(name);
    }

    /// The policy has been sampled and evaluated once. Call it after every evaluation, even
    /// one that produced no decision (a policy without `scaling` decides nothing); it is
    /// idempotent.
    pub fn first_decision(&self, name: &str) {
        if let Some(decided) = self.lock().policies.get_mut(name) {
            *decided = true;
        }
    }

    /// Ready when at least one policy is loaded and every loaded policy has been evaluated.
    pub fn ready(&self) -> bool {
        self.waiting_for().is_ok()
    }

    /// `Ok` when ready; otherwise why not, as a sentence for `/readyz`.
    pub fn waiting_for(&self) -> Result<(), String> {
        let inner = self.lock();
        if inner.policies.is_empty() {
            return Err("no policy loaded yet".to_owned());
        }
        let waiting: Vec<&str> = inner
            .policies
            .iter()
            .filter(|(_, decided)| !**decided)
            .map(|(name, _)| name.as_str())
            .collect();
        if waiting.is_empty() {
            Ok(())
        } else {
            Err(format!("waiting for the first evaluation of: {}", waiting.join(", ")))
        }
    }

    /// Adds a decision, dropping the oldest when the ring is full.
    pub fn record(&self, record: DecisionRecord) {
        let mut inner = self.lock();
        if inner.recent.len() == inner.capacity {
            inner.recent.pop_front();
        }
        inner.recent.push_back(record);
    }

    /// Every policy there can be decisions of, sorted: the loaded ones (decided yet or not)
    /// and any whose decisions are still in the ring (a policy removed on reload keeps its
    /// past readable).
    pub fn known_policies(&self) -> Vec<String> {
        let inner = self.lock();
        let mut known: Vec<String> = inner.policies.keys().cloned().collect();
        for record in &inner.recent {
            if !known.contains(&record.policy) {
                known.push(record.policy.clone());
            }
        }
        known.sort();
        known
    }

    /// Up to `limit` recent decisions, newest first, of one policy or all.
    pub fn recent(&self, policy: Option<&str>, limit: usize) -> Vec<DecisionRecord> {
        self.lock()
            .recent
            .iter()
            .rev()
            .filter(|r| policy.is_none_or(|p| r.policy == p))
            .take(limit)
            .cloned()
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use chrono::{TimeZone, Utc};

    use super::*;
    use crate::decide::ScalingReason;

    /// A hold at `replicas`, `s` seconds after a fixed instant.
    fn hold(policy: &str, s: i64, replicas: u16) -> DecisionRecord {
        let at =
            Utc.with_ymd_and_hms(2026, 11, 24, 0, 0, 0).unwrap() + chrono::Duration::seconds(s);
        let reason = ScalingReason {
            current: replicas,
            ready: replicas,
            readings: vec![],
            proposed: replicas,
            adjustments: vec![],
            result: replicas,
        };
        DecisionRecord::new(
            at,
            policy,
            crate::decide::ScalingDecision::Hold { replicas, reason },
            None,
        )
    }

    #[test]
    fn ready_once_every_loaded_policy_was_evaluated() {
        let status = Status::default();
        assert_eq!(status.waiting_for(), Err("no policy loaded yet".into()));
        status.policy_loaded("a");
        status.policy_loaded("b");
        status.first_decision("a");
        assert_eq!(status.waiting_for(), Err("waiting for the first evaluation of: b".into()));
        status.first_decision("b");
        assert!(status.ready());
        status.policy_loaded("b");
        assert!(status.ready(), "a reload keeps readiness");
        status.policy_loaded("c");
        assert!(!status.ready());
        status.policy_unloaded("c");
        assert!(status.ready());
    }

    #[test]
    fn the_ring_is_bounded_and_read_newest_first() {
        let status = Status::new(3);
        for s in 0..5 {
            status.record(hold(if s % 2 == 0 { "even" } else { "odd" }, s, 1));
        }
        let all = status.recent(None, 10);
        let times: Vec<_> = all.iter().map(|r| r.at.timestamp() % 60).collect();
        assert_eq!(times, [4, 3, 2]);
        assert_eq!(status.recent(Some("even"), 10).len(), 2);
        assert_eq!(status.recent(None, 1).len(), 1);
    }

    #[test]
    fn records_serialize_in_camel_case_with_the_sentence() {
        let mut record = hold("cache", 0, 2);
        record.action = Some(ActionOutcome::Failed { error: "forbidden".into() });
        let json = serde_json::to_value(&record).unwrap();
        assert_eq!(json["policy"], "cache");
        assert_eq!(json["decision"]["kind"], "hold");
        assert_eq!(json["action"], serde_json::json!({"outcome": "failed", "error": "forbidden"}));
        assert_eq!(json["sentence"], record.decision.sentence());
        assert_eq!(json["at"], "2026-11-24T00:00:00Z");
    }

    /// Health and scaling decisions are separate types; a record of either serializes as the
    /// decision itself, `kind` first-level, as `/v1/decisions` always showed it.
    #[test]
    fn a_health_record_serializes_as_its_decision() {
        use crate::decide::{HealthDecision, HealthReason};

        let at = Utc.with_ymd_and_hms(2026, 11, 24, 0, 0, 0).unwrap();
        let decision = HealthDecision::Fence {
            instance: "redis-1".into(),
            master: "redis-0".into(),
            reason: HealthReason::ClaimsMaster { master: "redis-0".into() },
        };
        let record = DecisionRecord::new(at, "cache", decision, None);
        let json = serde_json::to_value(&record).unwrap();
        assert_eq!(
            json["decision"],
            serde_json::json!({
                "kind": "fence",
                "instance": "redis-1",
                "master": "redis-0",
                "reason": {"why": "claimsMaster", "master": "redis-0"},
            })
        );
        assert_eq!(json["sentence"], "claims master, but redis-0 is the recorded master: fencing");
        assert_eq!(json["action"], serde_json::Value::Null);
    }
}
