//! The leader gate: whether this daemon may act now. Backend-neutral: a Kubernetes Lease
//! ([`crate::cluster::kubernetes::lease`]) drives it for StatefulSet targets; targets that
//! need no election (a local fleet, static endpoints) always lead.

use tokio::sync::watch;

/// Cheap to clone; every policy's [`super::Executor`] holds one.
#[derive(Debug, Clone)]
pub struct Leadership {
    leading: Option<watch::Receiver<bool>>,
    /// Where the leader serves requests, when an elector knows it.
    leader_url: Option<watch::Receiver<Option<String>>>,
}

impl Leadership {
    /// No election: always leading.
    pub fn always() -> Self {
        Self { leading: None, leader_url: None }
    }

    /// Follows an elector's published state: leading while it says `true`. Losing the lease
    /// shows at the next [`Leadership::is_leader`], so the next action is dropped.
    pub fn following(leader: watch::Receiver<bool>) -> Self {
        Self { leading: Some(leader), leader_url: None }
    }

    /// Also knows where the leader serves, as the elector publishes it.
    pub fn with_leader_url(mut self, url: watch::Receiver<Option<String>>) -> Self {
        self.leader_url = Some(url);
        self
    }

    /// Leading now. An elector that stopped (its sender gone) leads no more.
    pub fn is_leader(&self) -> bool {
        self.leading.as_ref().is_none_or(|leader| leader.has_changed().is_ok() && *leader.borrow())
    }

    /// Where the current leader serves requests, if known.
    pub fn leader_url(&self) -> Option<String> {
        self.leader_url.as_ref().and_then(|url| url.borrow().clone())
    }
}
