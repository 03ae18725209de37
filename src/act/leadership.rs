//! The leader gate: whether this daemon may act now. Backend-neutral: a Kubernetes Lease
//! ([`crate::cluster::kubernetes::lease`]) drives it for StatefulSet targets; targets that
//! need no election (a local fleet, static endpoints) always lead.

use tokio::sync::watch;

/// Cheap to clone; every policy's [`super::Executor`] holds one.
#[derive(Debug, Clone)]
pub struct Leadership(Option<watch::Receiver<bool>>);

impl Leadership {
    /// No election: always leading.
    pub fn always() -> Self {
        Self(None)
    }

    /// Follows an elector's published state: leading while it says `true`. Losing the lease
    /// shows at the next [`Leadership::is_leader`], so the next action is dropped.
    pub fn following(leader: watch::Receiver<bool>) -> Self {
        Self(Some(leader))
    }

    /// Leading now. An elector that stopped (its sender gone) leads no more.
    pub fn is_leader(&self) -> bool {
        self.0.as_ref().is_none_or(|leader| leader.has_changed().is_ok() && *leader.borrow())
    }
}
