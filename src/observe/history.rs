//! A bounded ring of recent observations, sized from the longest window a policy reads, so
//! memory stays flat however long the daemon runs.

use std::collections::VecDeque;
use std::time::Duration;

use chrono::{NaiveTime, Timelike};

use super::{Observation, Timestamp};

#[derive(Debug, Clone)]
pub struct History {
    observations: VecDeque<Observation>,
    capacity: usize,
}

impl History {
    /// Room for `span` worth of rounds taken every `interval`, plus one older round so that
    /// rates over the first round of a window have a predecessor. A validated policy keeps
    /// this within [`crate::policy::bounds::MAX_HISTORY_ROUNDS`]; memory is taken as rounds
    /// arrive, not up front, so even an unchecked span cannot fail an allocation here.
    pub fn new(span: Duration, interval: Duration) -> Self {
        let rounds = crate::policy::bounds::history_rounds(span, interval);
        let capacity = usize::try_from(rounds).unwrap_or(usize::MAX).saturating_add(2);
        Self { observations: VecDeque::new(), capacity }
    }

    /// Adds the newest round; returns the oldest when it made room, for a caller that
    /// reuses its allocations.
    #[inline]
    pub fn push(&mut self, observation: Observation) -> Option<Observation> {
        let evicted = if self.observations.len() == self.capacity {
            self.observations.pop_front()
        } else {
            None
        };
        self.observations.push_back(observation);
        evicted
    }

    pub fn latest(&self) -> Option<&Observation> {
        self.observations.back()
    }

    pub fn len(&self) -> usize {
        self.observations.len()
    }

    pub fn is_empty(&self) -> bool {
        self.observations.is_empty()
    }

    pub fn capacity(&self) -> usize {
        self.capacity
    }

    /// Oldest first, every observation held.
    pub fn iter(&self) -> impl DoubleEndedIterator<Item = &Observation> + ExactSizeIterator {
        self.observations.iter()
    }

    /// The rounds taken in `(now - window, now]`, oldest first, and the round just before
    /// them (if still held), which a counter's rate over the first round needs.
    #[inline]
    pub fn window(&self, now: Timestamp, window: Duration) -> Window<'_> {
        let start = window_start(now, window);
        let first = self.observations.partition_point(|o| o.at <= start);
        // Evaluated at the newest round nearly always: no search for the end then.
        let end = if self.latest().is_some_and(|o| o.at <= now) {
            self.observations.len()
        } else {
            self.observations.partition_point(|o| o.at <= now)
        };
        Window {
            before: first.checked_sub(1).and_then(|i| self.observations.get(i)),
            held: &self.observations,
            first,
            end: end.max(first),
        }
    }
}

/// The instant `window` before `now`, or the earliest time when that is before it: where a
/// window ending now starts. Every cutoff in the decision core is this one instant.
#[inline]
pub fn window_start(now: Timestamp, window: Duration) -> Timestamp {
    // Within the day, only the time of day moves. chrono's general subtraction goes through
    // the calendar, and an evaluation takes a dozen cutoffs (`simulate` makes millions).
    // The naive parts: `DateTime::time` would add the (zero) offset through the calendar.
    let (date, time) = (now.naive_utc().date(), now.naive_utc().time());
    let (seconds, nanos) = (time.num_seconds_from_midnight(), time.nanosecond());
    let since_midnight = Duration::new(u64::from(seconds), nanos);
    // A leap second's time (nanos past 10^9) takes the general path.
    if nanos < 1_000_000_000
        && window <= since_midnight
        && let left = since_midnight - window
        && let Ok(seconds) = u32::try_from(left.as_secs())
        && let Some(time) =
            NaiveTime::from_num_seconds_from_midnight_opt(seconds, left.subsec_nanos())
    {
        return date.and_time(time).and_utc();
    }
    chrono::Duration::from_std(window)
        .ok()
        .and_then(|w| now.checked_sub_signed(w))
        .unwrap_or(Timestamp::MIN_UTC)
}

/// `later - earlier` in seconds, exactly as chrono's subtraction gives it (`as_seconds_f64`).
/// Within one day only the time of day differs, so the calendar is left out: a statistic
/// weighted by age, or a trend, takes one per round of its window at every evaluation.
pub fn seconds_between(earlier: Timestamp, later: Timestamp) -> f64 {
    const NANOS: i64 = 1_000_000_000;
    let (earlier_naive, later_naive) = (earlier.naive_utc(), later.naive_utc());
    let (from, to) = (earlier_naive.time(), later_naive.time());
    // A leap second's time (nanos past 10^9) takes the general path.
    if earlier_naive.date() == later_naive.date()
        && from.nanosecond() < 1_000_000_000
        && to.nanosecond() < 1_000_000_000
    {
        // As chrono keeps a difference: whole seconds rounded down, and nanos in [0, 10^9).
        let mut seconds =
            i64::from(to.num_seconds_from_midnight()) - i64::from(from.num_seconds_from_midnight());
        let mut nanos = i64::from(to.nanosecond()) - i64::from(from.nanosecond());
        if nanos < 0 {
            seconds -= 1;
            nanos += NANOS;
        }
        return seconds as f64 + nanos as f64 / NANOS as f64;
    }
    (later - earlier).as_seconds_f64()
}

/// A slice of history: see [`History::window`].
#[derive(Debug, Clone, Copy)]
pub struct Window<'a> {
    pub before: Option<&'a Observation>,
    /// The history's rounds, of which the window is those from `first` to before `end`:
    /// indices rather than an iterator, so a reader can start anywhere in the window without
    /// walking to it.
    held: &'a VecDeque<Observation>,
    first: usize,
    end: usize,
}

impl<'a> Window<'a> {
    /// The rounds, oldest first.
    pub fn rounds(&self) -> std::collections::vec_deque::Iter<'a, Observation> {
        self.rounds_from(0)
    }

    /// The rounds from the `skip`th on (none past the window's end).
    pub fn rounds_from(&self, skip: usize) -> std::collections::vec_deque::Iter<'a, Observation> {
        self.held.range(self.first.saturating_add(skip).min(self.end)..self.end)
    }

    /// The `i`th round, from the oldest.
    pub fn round(&self, i: usize) -> Option<&'a Observation> {
        self.first.checked_add(i).filter(|&at| at < self.end).and_then(|at| self.held.get(at))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::{TimeZone, Utc};

    fn round(second: i64) -> Observation {
        Observation {
            at: Utc.timestamp_opt(1_700_000_000 + second, 0).unwrap(),
            instances: vec![],
            queries: vec![],
        }
    }

    proptest::proptest! {
        /// The same-day shortcut lands where chrono's calendar subtraction does.
        #[test]
        fn window_start_is_the_instant_window_before_now(
            seconds in 0i64..4_000_000_000,
            nanos in 0u32..1_000_000_000,
            window_millis in 0u64..(40 * 86_400_000),
        ) {
            let now = Utc.timestamp_opt(seconds, nanos).unwrap();
            let window = Duration::from_millis(window_millis);
            let expected = now - chrono::Duration::from_std(window).unwrap();
            proptest::prop_assert_eq!(window_start(now, window), expected);
        }
    }

    proptest::proptest! {
        /// The same-day shortcut gives chrono's difference to the bit, either way round.
        #[test]
        fn seconds_between_is_chrono_s_difference(
            seconds in 0i64..4_000_000_000,
            nanos in 0u32..1_000_000_000,
            apart_millis in -(3 * 86_400_000i64)..(3 * 86_400_000),
            apart_nanos in 0i64..1_000_000,
        ) {
            let earlier = Utc.timestamp_opt(seconds, nanos).unwrap();
            let later = earlier
                + chrono::Duration::milliseconds(apart_millis)
                + chrono::Duration::nanoseconds(apart_nanos);
            let expected = (later - earlier).as_seconds_f64();
            proptest::prop_assert_eq!(seconds_between(earlier, later).to_bits(), expected.to_bits());
            let back = (earlier - later).as_seconds_f64();
            proptest::prop_assert_eq!(seconds_between(later, earlier).to_bits(), back.to_bits());
        }

        /// Both on one day: the shortcut every time.
        #[test]
        fn seconds_between_within_a_day_is_chrono_s_difference(
            day in 0i64..40_000,
            earlier_nanos in 0i64..86_400_000_000_000,
            later_nanos in 0i64..86_400_000_000_000,
        ) {
            let at = |nanos: i64| Utc.timestamp_nanos(day * 86_400_000_000_000 + nanos);
            let (earlier, later) = (at(earlier_nanos), at(later_nanos));
            let expected = (later - earlier).as_seconds_f64();
            proptest::prop_assert_eq!(seconds_between(earlier, later).to_bits(), expected.to_bits());
        }
    }

    /// A difference whose whole seconds and nanoseconds, added as chrono adds them, round
    /// otherwise than the nanoseconds divided at once (about one in 40,000 differences do).
    #[test]
    fn seconds_between_rounds_as_chrono_does() {
        let midnight = Utc.timestamp_opt(1_700_006_400, 0).unwrap();
        let later = midnight + chrono::Duration::nanoseconds(13_831_381_929);
        let expected = (later - midnight).as_seconds_f64();
        assert_eq!(expected, 13.831_381_928_999_999);
        assert_eq!(seconds_between(midnight, later).to_bits(), expected.to_bits());
    }

    #[test]
    fn window_start_saturates_at_the_earliest_time() {
        let now = Utc.timestamp_opt(0, 0).unwrap();
        assert_eq!(window_start(now, Duration::MAX), Timestamp::MIN_UTC);
    }

    #[test]
    fn stays_bounded_and_keeps_the_newest() {
        let mut history = History::new(Duration::from_secs(60), Duration::from_secs(10));
        for s in (0..1000).step_by(10) {
            history.push(round(s));
        }
        assert_eq!(history.len(), history.capacity());
        assert_eq!(history.capacity(), 8);
        assert_eq!(history.latest().map(|o| o.at), Some(round(990).at));
    }

    /// A span no policy may have (36500 days at 1 ms) is a number, not an allocation.
    #[test]
    fn an_enormous_span_allocates_nothing_up_front() {
        let mut history =
            History::new(Duration::from_secs(36_500 * 86_400), Duration::from_millis(1));
        assert!(history.capacity() > 3_000_000_000_000);
        history.push(round(0));
        assert_eq!(history.len(), 1);
    }

    #[test]
    fn window_holds_rounds_inside_and_the_one_before() {
        let mut history = History::new(Duration::from_secs(60), Duration::from_secs(10));
        for s in (0..100).step_by(10) {
            history.push(round(s));
        }
        let w = history.window(round(90).at, Duration::from_secs(30));
        let inside: Vec<_> = w.rounds().map(|o| o.at).collect();
        assert_eq!(w.round(2).map(|o| o.at), Some(round(90).at));
        assert!(w.round(3).is_none());
        let newest: Vec<_> = w.rounds_from(2).map(|o| o.at).collect();
        assert_eq!(newest, vec![round(90).at]);
        assert_eq!(w.rounds_from(4).count(), 0);
        assert_eq!(inside, vec![round(70).at, round(80).at, round(90).at]);
        assert_eq!(w.before.map(|o| o.at), Some(round(60).at));
    }
}
