//! Cron lines, parsed exactly as `tokio-cron-scheduler` parses them (six fields, seconds first,
//! day-of-month and day-of-week both honoured), so `check` accepts what the daemon schedules.

use std::fmt;

use chrono::{DateTime, Utc};
use croner::Cron;
use croner::parser::{CronParser, Seconds};

/// A parsed cron expression and the text it came from.
#[derive(Clone)]
pub struct CronSchedule {
    text: String,
    cron: Cron,
}

impl CronSchedule {
    pub fn parse(text: &str) -> Result<Self, String> {
        let cron = CronParser::builder()
            .seconds(Seconds::Required)
            .dom_and_dow(true)
            .build()
            .parse(text)
            .map_err(|e| format!("invalid cron `{text}`: {e}"))?;
        Ok(Self { text: text.to_owned(), cron })
    }

    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// The first firing at or after `from`, if the expression ever fires again.
    pub fn next_at_or_after(&self, from: DateTime<Utc>) -> Option<DateTime<Utc>> {
        self.cron.find_next_occurrence(&from, true).ok()
    }

    /// The last firing at or before `at`.
    pub fn last_at_or_before(&self, at: DateTime<Utc>) -> Option<DateTime<Utc>> {
        self.cron.find_previous_occurrence(&at, true).ok()
    }
}

/// The last firing of one expression at or before an instant, kept with the span it holds
/// for: no firing falls between the instant it was found for and the next firing, so until
/// then the answer stands. A caller that asks at every tick (the decision core, millions of
/// times in `simulate`) searches the calendar once per firing instead of once per tick.
/// Holds for one expression: the caller starts it afresh when the expression changes.
#[derive(Debug, Clone, Default)]
pub struct LastFiring {
    held: Option<HeldFiring>,
}

#[derive(Debug, Clone)]
struct HeldFiring {
    /// The instant it was found for.
    from: DateTime<Utc>,
    last: Option<DateTime<Utc>>,
    /// The first firing after `from`.
    next: DateTime<Utc>,
}

impl LastFiring {
    /// `cron`'s last firing at or before `at`, as [`CronSchedule::last_at_or_before`] gives it.
    pub fn at_or_before(
        &mut self,
        cron: &CronSchedule,
        at: DateTime<Utc>,
    ) -> Option<DateTime<Utc>> {
        if let Some(held) = &self.held
            && held.from <= at
            && at < held.next
        {
            return held.last;
        }
        let last = cron.last_at_or_before(at);
        // Kept only with a next firing to end it: when the search finds none (an expression
        // that never fires again, or one it gave up on), the next call searches again rather
        // than trust "never" for good.
        let next = cron.cron.find_next_occurrence(&at, false).ok();
        self.held = next.map(|next| HeldFiring { from: at, last, next });
        last
    }
}

impl PartialEq for CronSchedule {
    fn eq(&self, other: &Self) -> bool {
        self.text == other.text
    }
}

impl fmt::Debug for CronSchedule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "CronSchedule({:?})", self.text)
    }
}

impl fmt::Display for CronSchedule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    #[test]
    fn weekday_mornings_fire_at_eight() {
        let cron = CronSchedule::parse("0 0 8 * * Mon-Fri").expect("valid cron");
        // 2026-11-24 is a Tuesday.
        let noon = Utc.with_ymd_and_hms(2026, 11, 24, 12, 0, 0).unwrap();
        let last = cron.last_at_or_before(noon).expect("fired this morning");
        assert_eq!(last, Utc.with_ymd_and_hms(2026, 11, 24, 8, 0, 0).unwrap());
        let saturday = Utc.with_ymd_and_hms(2026, 11, 28, 7, 0, 0).unwrap();
        let next = cron.next_at_or_after(saturday).expect("fires on Monday");
        assert_eq!(next, Utc.with_ymd_and_hms(2026, 11, 30, 8, 0, 0).unwrap());
    }

    /// At every instant, in order and out of it, the kept answer is the one a search gives.
    #[test]
    fn a_kept_last_firing_answers_as_a_search_does() {
        let start = Utc.with_ymd_and_hms(2026, 11, 27, 6, 0, 0).unwrap();
        for text in ["0 30 7 * * Mon-Fri", "0 45 11 * * *", "*/20 * * * * *", "0 0 0 1 1 * 2026"] {
            let cron = CronSchedule::parse(text).expect("valid cron");
            let mut kept = LastFiring::default();
            // Every 37 s over five days, then back in time and forward again.
            let mut instants: Vec<_> =
                (0..12_000).map(|i| start + chrono::Duration::seconds(37 * i)).collect();
            instants.extend([start, start + chrono::Duration::days(3), start]);
            for at in instants {
                assert_eq!(
                    kept.at_or_before(&cron, at),
                    cron.last_at_or_before(at),
                    "{text} at {at}"
                );
            }
        }
    }

    #[test]
    fn five_field_lines_are_rejected_because_seconds_are_required() {
        let err = CronSchedule::parse("0 8 * * *").expect_err("five fields");
        assert!(err.contains("0 8 * * *"), "{err}");
    }
}
