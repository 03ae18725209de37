//! What each policy's loop last saw and did, in the words a RedisPolicy's `status` uses: the
//! recorded master and whether it serves, the members and how many answered, the replica
//! count asked for, and the last scale, failover and snapshot with their reasons. The loop and
//! the snapshot scheduler write it as they go; the status writer
//! ([`super::resources::StatusWriter`]) reads it once a second.
//!
//! A [`Reports`] is a cheap handle (`Arc` inside); the lock is held only for a copy or an
//! update, never across an `.await`.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, PoisonError};

use crate::resource::status::{LastAction, LastFailover, LastSnapshot};

/// One policy's report.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct PolicyReport {
    /// The recorded master and its epoch, as of the last health probe.
    pub master: Option<(String, u64)>,
    /// Whether the recorded master serves writes.
    pub master_serving: Option<bool>,
    /// A claim on the record, or a `FAILOVER` under way on an instance.
    pub changing_roles: bool,
    /// Members the target has, and how many answered the last probe.
    pub members: u32,
    pub answered: u32,
    /// The replica count the last scaling round asked for.
    pub desired: Option<u32>,
    /// Whether scaling is being decided, and in words why or why not: words that change only
    /// when the decision does (no metric values), so a steady policy's status stays as it is.
    pub scaling: Option<(bool, String)>,
    pub last_scale: Option<LastAction>,
    pub last_failover: Option<LastFailover>,
    pub last_snapshot: Option<LastSnapshot>,
}

/// Every policy's report; clone freely.
#[derive(Debug, Clone, Default)]
pub struct Reports(Arc<Mutex<BTreeMap<String, PolicyReport>>>);

impl Reports {
    /// Changes `policy`'s report.
    pub fn update(&self, policy: &str, change: impl FnOnce(&mut PolicyReport)) {
        let mut reports = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        change(reports.entry(policy.to_owned()).or_default());
    }

    /// A copy of `policy`'s report, if its loop has said anything yet.
    pub fn get(&self, policy: &str) -> Option<PolicyReport> {
        self.0.lock().unwrap_or_else(PoisonError::into_inner).get(policy).cloned()
    }

    /// Forgets a removed policy: one added again under its name starts afresh.
    pub fn remove(&self, policy: &str) {
        self.0.lock().unwrap_or_else(PoisonError::into_inner).remove(policy);
    }
}
