//! The raw recommendations stabilization reads: the highest and the lowest over any window
//! that ends now, as the HPA's stabilization asks for them.
//!
//! Kept as two monotonic queues rather than the list of every recommendation: a value with a
//! later one at least as high can never again be the highest of a window that ends now (the
//! later one is in every such window that holds it), so it is dropped when the later one
//! arrives, and the same for the lowest. What is left is short (a replica count takes few
//! values), and the extreme of a window is the first entry inside it. `simulate` asks at every
//! tick, and a policy sampled every second with a 5-minute window would otherwise walk 300
//! entries twice per tick.

use std::collections::VecDeque;

use crate::observe::Timestamp;

#[derive(Debug, Clone, Default)]
pub struct Recommendations {
    /// Times ascending, values strictly descending.
    highest: VecDeque<(Timestamp, u16)>,
    /// Times ascending, values strictly ascending.
    lowest: VecDeque<(Timestamp, u16)>,
}

impl Recommendations {
    /// Records the recommendation made at `at` (no earlier than any recorded).
    #[inline]
    pub fn push(&mut self, at: Timestamp, replicas: u16) {
        while self.highest.back().is_some_and(|&(_, r)| r <= replicas) {
            self.highest.pop_back();
        }
        self.highest.push_back((at, replicas));
        while self.lowest.back().is_some_and(|&(_, r)| r >= replicas) {
            self.lowest.pop_back();
        }
        self.lowest.push_back((at, replicas));
    }

    /// Forgets the recommendations made at or before `cutoff`: no window reaches them.
    #[inline]
    pub fn forget_until(&mut self, cutoff: Timestamp) {
        for queue in [&mut self.highest, &mut self.lowest] {
            while queue.front().is_some_and(|&(at, _)| at <= cutoff) {
                queue.pop_front();
            }
        }
    }

    /// The highest recommendation made after `cutoff` or at `now`; `None` if none was.
    #[inline]
    pub fn highest_since(&self, cutoff: Timestamp, now: Timestamp) -> Option<u16> {
        first_since(&self.highest, cutoff, now)
    }

    /// The lowest recommendation made after `cutoff` or at `now`; `None` if none was.
    #[inline]
    pub fn lowest_since(&self, cutoff: Timestamp, now: Timestamp) -> Option<u16> {
        first_since(&self.lowest, cutoff, now)
    }

    /// Entries held: bounded by the window, not by uptime.
    #[cfg(test)]
    pub fn len(&self) -> usize {
        self.highest.len() + self.lowest.len()
    }
}

/// The oldest entry of `queue` in the window: its extreme. A zero window (`cutoff` at `now`)
/// still holds the recommendation made now.
fn first_since(
    queue: &VecDeque<(Timestamp, u16)>,
    cutoff: Timestamp,
    now: Timestamp,
) -> Option<u16> {
    queue.iter().find(|&&(at, _)| at > cutoff || at == now).map(|&(_, r)| r)
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    fn t(second: i64) -> Timestamp {
        chrono::DateTime::from_timestamp(1_800_000_000 + second, 0).expect("a valid instant")
    }

    #[test]
    fn a_zero_window_holds_only_the_recommendation_made_now() {
        let mut recommendations = Recommendations::default();
        recommendations.push(t(0), 9);
        recommendations.push(t(10), 3);
        assert_eq!(recommendations.highest_since(t(10), t(10)), Some(3));
        assert_eq!(recommendations.lowest_since(t(10), t(10)), Some(3));
        assert_eq!(recommendations.highest_since(t(9), t(10)), Some(3));
        assert_eq!(recommendations.highest_since(t(-1), t(10)), Some(9));
    }

    proptest! {
        /// Whatever was recommended, and whatever windows are asked for, the answers are the
        /// extremes of every recommendation kept in the window, as a plain list gives them.
        #[test]
        fn answers_as_the_whole_list_does(
            steps in prop::collection::vec((0_i64..4, 0_u16..8, 0_i64..30, 0_i64..30), 1..200),
        ) {
            let mut recommendations = Recommendations::default();
            let mut all: Vec<(Timestamp, u16)> = Vec::new();
            let mut now = 0;
            for (gap, replicas, window, kept) in steps {
                now += gap;
                // Forgotten by the longest window first, then recorded, as `decide` does.
                let kept = kept.max(window);
                recommendations.forget_until(t(now - kept));
                all.retain(|&(at, _)| at > t(now - kept));
                recommendations.push(t(now), replicas);
                all.push((t(now), replicas));
                let cutoff = t(now - window);
                let in_window = || {
                    all.iter().filter(|&&(at, _)| at > cutoff || at == t(now)).map(|&(_, r)| r)
                };
                prop_assert_eq!(recommendations.highest_since(cutoff, t(now)), in_window().max());
                prop_assert_eq!(recommendations.lowest_since(cutoff, t(now)), in_window().min());
            }
        }
    }
}
