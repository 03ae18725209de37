//! Pausing one policy at runtime: a paused policy goes on sampling, deciding and explaining,
//! and acts on nothing (as the daemon-wide `--paused` mode does), until it is resumed. What a
//! human who has taken over one deployment needs, without stopping the daemon's work on the
//! others. The demo's `p` key drives it.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use super::Mode;

/// One policy's switch. Cheap to clone; its [`super::Executor`] and its snapshot runner hold
/// one, and see a change at their next action.
#[derive(Debug, Clone, Default)]
pub struct Pause(Arc<AtomicBool>);

impl Pause {
    pub fn is_paused(&self) -> bool {
        self.0.load(Ordering::Relaxed)
    }

    /// The mode to act in: the daemon's `mode`, or [`Mode::Paused`] while this is on. The
    /// one rule every actor of a policy (its executor, its snapshots) applies.
    pub fn over(&self, mode: Mode) -> Mode {
        if self.is_paused() { Mode::Paused } else { mode }
    }
}

/// Every policy's switch, by name. A reload or a restarted loop gets the same switch back, so
/// a pause holds until it is lifted, whatever happens to the policy's loop meanwhile.
#[derive(Debug, Clone, Default)]
pub struct Pauses(Arc<std::sync::Mutex<BTreeMap<String, Pause>>>);

impl Pauses {
    /// `policy`'s switch (off until set).
    pub fn of(&self, policy: &str) -> Pause {
        let mut switches = self.0.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        switches.entry(policy.to_owned()).or_default().clone()
    }

    /// Pauses or resumes `policy`; returns whether that changed anything.
    pub fn set(&self, policy: &str, paused: bool) -> bool {
        self.of(policy).0.swap(paused, Ordering::Relaxed) != paused
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_switch_handed_out_before_a_pause_sees_it() {
        let pauses = Pauses::default();
        let held = pauses.of("cache");
        assert!(!held.is_paused());
        assert!(pauses.set("cache", true));
        assert!(held.is_paused(), "a loop holding the switch sees the pause");
        assert!(!pauses.of("other").is_paused(), "one policy's pause is its own");
        assert!(!pauses.set("cache", true), "pausing twice changes nothing");
        assert!(pauses.set("cache", false));
        assert!(!held.is_paused());
    }
}
