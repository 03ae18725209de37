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

    #[test]
    fn five_field_lines_are_rejected_because_seconds_are_required() {
        let err = CronSchedule::parse("0 8 * * *").expect_err("five fields");
        assert!(err.contains("0 8 * * *"), "{err}");
    }
}
