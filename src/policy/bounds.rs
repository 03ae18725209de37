//! The limits a policy's numbers must keep so that a policy `check` accepts can never crash
//! or starve the daemon: the one duration syntax, each duration field's range, the history a
//! policy may ask for, and how often a snapshot schedule may fire.
//!
//! Every limit has a reason a policy author can act on (`why`), and `check` prints it: a
//! floor is a cost (`sampling.interval: 1ms` keeps a core busy), a ceiling is either a
//! mistake (`window: 30d`) or a size the daemon would have to allocate (history rounds).

use std::time::Duration;

use chrono::{DateTime, TimeZone, Utc};

use super::CronSchedule;

/// The range a duration field accepts, and why.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Bounds {
    /// `Duration::ZERO`: zero is meaningful (no stabilization). Otherwise the least accepted.
    pub min: Duration,
    pub max: Duration,
    /// Why the range is what it is, printed with a value outside it.
    pub why: &'static str,
}

impl Bounds {
    /// `value` when inside the range, else a message that says what was expected.
    pub fn check(&self, value: Duration, text: &str) -> Result<Duration, String> {
        if value < self.min {
            let least = if self.min <= Duration::from_millis(1) {
                "longer than 0".to_owned()
            } else {
                format!("at least {}", show(self.min))
            };
            return Err(format!("must be {least}, found `{text}`{}", because(self.why)));
        }
        if value > self.max {
            return Err(format!(
                "must be at most {}, found `{text}`{}",
                show(self.max),
                because(self.why)
            ));
        }
        Ok(value)
    }
}

fn because(why: &str) -> String {
    if why.is_empty() { String::new() } else { format!(" ({why})") }
}

const MS: Duration = Duration::from_millis(1);
const fn secs(n: u64) -> Duration {
    Duration::from_secs(n)
}
const MINUTE: Duration = secs(60);
const HOUR: Duration = secs(3600);
const DAY: Duration = secs(86_400);
const WEEK: Duration = secs(7 * 86_400);

const A_WEEK_IS_A_MISTAKE: &str = "a history longer than a week is a mistake";

pub const SAMPLING_INTERVAL: Bounds = Bounds {
    min: secs(1),
    max: HOUR,
    why: "every round reads INFO from every instance; more often than once a second costs a \
          CPU core and tells nothing new",
};
pub const SAMPLING_TIMEOUT: Bounds = Bounds { min: MS, max: HOUR, why: "" };
pub const METRIC_WINDOW: Bounds = Bounds { min: MS, max: WEEK, why: A_WEEK_IS_A_MISTAKE };
pub const HALF_LIFE: Bounds = Bounds { min: MS, max: WEEK, why: A_WEEK_IS_A_MISTAKE };
pub const FORECAST_WINDOW: Bounds = Bounds { min: MS, max: WEEK, why: A_WEEK_IS_A_MISTAKE };
/// `exceedance` of `statistic: tail`. Rarer than one round in a million is beyond what a
/// window of rounds can say anything about; more often than one in ten is a percentile's job.
pub const TAIL_EXCEEDANCE: std::ops::RangeInclusive<f64> = 1e-6..=0.1;
/// The most a seasonal forecast multiplies today's load by: a season that rose from nearly
/// nothing (a night at 0) says little about today's rise. `minRise` can ask no more.
pub const SEASONAL_MAX_RISE: f64 = 10.0;
/// A season is learnt per minute; a day and a week are what load repeats over, and a week of
/// minutes (10,080 numbers) is what one metric's profile holds.
pub const SEASONAL_PERIOD: Bounds = Bounds {
    min: HOUR,
    max: WEEK,
    why: "load repeats daily and weekly; a profile holds at most a week of minutes",
};
/// Bursts are the load's character over a day or a week; over less, the estimate moves with
/// every burst and moves the count with it.
pub const BURSTS_WINDOW: Bounds = Bounds {
    min: HOUR,
    max: WEEK,
    why: "burstiness is measured over hours to a week; a shorter window follows each burst",
};
pub const SEASONAL_HORIZON: Bounds =
    Bounds { min: Duration::ZERO, max: HOUR, why: "a floor an hour early already costs a lot" };
pub const WARMUP: Bounds =
    Bounds { min: Duration::ZERO, max: DAY, why: "a replica that takes a day to sync is down" };
pub const STABILIZATION: Bounds =
    Bounds { min: Duration::ZERO, max: DAY, why: "scaling decisions look back a day at most" };
pub const PERIOD: Bounds =
    Bounds { min: MS, max: DAY, why: "scaling decisions look back a day at most" };
pub const COOLDOWN: Bounds =
    Bounds { min: Duration::ZERO, max: DAY, why: "scaling decisions look back a day at most" };
pub const FLOOR_FOR: Bounds =
    Bounds { min: MS, max: WEEK, why: "a floor held for over a week is minReplicas" };
pub const DOWN_AFTER: Bounds =
    Bounds { min: MS, max: HOUR, why: "a master down for an hour is not a detection delay" };
pub const REPLICA_MAX_LAG: Bounds = Bounds { min: MS, max: HOUR, why: "" };
pub const PROBE_INTERVAL: Bounds = Bounds {
    min: Duration::from_millis(100),
    max: MINUTE,
    why: "a probe is a round trip to every instance; faster than 100ms costs CPU on both \
          ends, slower than a minute leaves a dead master unnoticed",
};
pub const PROBE_TIMEOUT: Bounds = Bounds { min: MS, max: MINUTE, why: "" };
pub const MIN_REPLICAS_MAX_LAG: Bounds = Bounds { min: secs(1), max: HOUR, why: "" };

/// The most one Redis instance can plausibly report for a `redis:` scaling metric when the
/// policy sets no `plausibleMax`: a reading above it is a broken or lying instance (a bug, a
/// fake peer, a counter glitch), not load, and must not size the fleet. Known fields only;
/// `None` for the rest (no limit unless the policy sets one). Each default sits well above
/// what one instance has been measured doing, so an honest instance never trips it; a
/// deployment that really goes faster (many I/O threads, a Redis-compatible server) sets
/// `plausibleMax`.
pub fn default_plausible_max(field: &str, rate: bool) -> Option<f64> {
    match (field, rate) {
        // Single-threaded Redis tops out near 1M ops/s even pipelined.
        ("instantaneous_ops_per_sec", false) | ("total_commands_processed", true) => {
            Some(2_000_000.0)
        }
        // 100 Gbit/s, a fast NIC saturated, in kB/s and in bytes/s.
        ("instantaneous_input_kbps" | "instantaneous_output_kbps", false) => Some(12_500_000.0),
        ("total_net_input_bytes" | "total_net_output_bytes", true) => Some(12_500_000_000.0),
        // Linux's default fs.nr_open: no process holds more descriptors than this.
        ("connected_clients", false) => Some(1_048_576.0),
        _ => None,
    }
}

/// The most sampling rounds a policy's history may hold (its longest window over
/// `sampling.interval`): about 7 days at 30 s, a day at 5 s. Each round keeps a few numbers
/// per instance, so this bounds the daemon's memory per policy.
pub const MAX_HISTORY_ROUNDS: u64 = 20_160;

/// How many rounds a history of `span` sampled every `interval` holds, rounded up; what
/// [`crate::observe::History::new`] allocates room for (plus two).
pub fn history_rounds(span: Duration, interval: Duration) -> u64 {
    let interval = interval.as_nanos().max(1);
    let rounds = span.as_nanos().div_ceil(interval);
    u64::try_from(rounds).unwrap_or(u64::MAX)
}

/// `None` when `span` at `interval` fits the history; else why not.
pub fn history_problem(span: Duration, interval: Duration) -> Option<String> {
    let rounds = history_rounds(span, interval);
    if rounds <= MAX_HISTORY_ROUNDS {
        return None;
    }
    let least = span.as_secs().div_ceil(MAX_HISTORY_ROUNDS).max(1);
    Some(format!(
        "{} at sampling.interval {} is {rounds} rounds of history; at most {MAX_HISTORY_ROUNDS} \
         are kept (sample every {} or more, or shorten the window)",
        show(span),
        show(interval),
        show(secs(least)),
    ))
}

/// `snapshots.throughputWindow`: long enough that a pause in the stream is not a verdict,
/// short enough that a trickling source is caught well before the deadline.
pub const SNAPSHOT_THROUGHPUT_WINDOW: Bounds = Bounds {
    min: secs(1),
    max: HOUR,
    why: "throughput is judged once per window; over an hour a trickle holds the snapshot \
          gate that long",
};
/// `snapshots.deadline`: a snapshot holds its policy's snapshot gate, and any scale-down
/// waiting on it, until it ends.
pub const SNAPSHOT_DEADLINE: Bounds = Bounds {
    min: secs(1),
    max: WEEK,
    why: "a snapshot holds the policy's snapshot gate, and any scale-down waiting for it, \
          until it ends",
};
/// `snapshots.minBytesPerSecond`: at least a byte a second; at most 10 GiB/s, faster than
/// any network a Redis streams over, so a larger floor could never be met.
pub const SNAPSHOT_MIN_BYTES_PER_SECOND: (i64, i64) = (1, 10 * 1024 * 1024 * 1024);

/// Snapshots fork the master (or a replica) and stream the whole dataset: at most one per
/// this interval.
pub const MIN_SNAPSHOT_GAP: Duration = secs(5 * 60);

/// The shortest time between two consecutive firings of `cron` over the coming year from a
/// fixed instant (so the answer does not depend on when `check` runs), looking at no more
/// than a few thousand firings: a schedule that fires too often shows it in its first ones.
pub fn shortest_gap(cron: &CronSchedule) -> Option<Duration> {
    let start: DateTime<Utc> = Utc.with_ymd_and_hms(2024, 1, 1, 0, 0, 0).single()?;
    let end = start + chrono::Duration::days(400);
    let mut previous = cron.next_at_or_after(start)?;
    let mut shortest: Option<Duration> = None;
    for _ in 0..4_000 {
        let Some(next) = cron.next_at_or_after(previous + chrono::Duration::seconds(1)) else {
            break;
        };
        let gap = (next - previous).to_std().unwrap_or(Duration::ZERO);
        shortest = Some(shortest.map_or(gap, |s| s.min(gap)));
        if next > end || shortest.is_some_and(|s| s < MIN_SNAPSHOT_GAP) {
            break;
        }
        previous = next;
    }
    shortest
}

/// `None` when a snapshot schedule fires no more often than [`MIN_SNAPSHOT_GAP`].
pub fn snapshot_schedule_problem(cron: &CronSchedule) -> Option<String> {
    let gap = shortest_gap(cron)?;
    (gap < MIN_SNAPSHOT_GAP).then(|| {
        format!(
            "fires {} apart at the closest; snapshots may run at most every {} (each one forks \
             a Redis and streams the whole dataset)",
            show(gap),
            show(MIN_SNAPSHOT_GAP)
        )
    })
}

/// Units, largest first: a compound duration lists them in this order, each at most once.
const UNITS: [(&str, Duration); 5] =
    [("d", DAY), ("h", HOUR), ("m", MINUTE), ("s", secs(1)), ("ms", MS)];

/// Parses the one duration syntax: whole numbers with a unit, `250ms`, `30s`, `5m`, `2h`,
/// `7d`, or several of them largest first without spaces (`1m30s`, `1h30m`). Everything
/// else is refused with a message saying so: `5M` (a month to humantime), `1y`, `5 m`,
/// `1.5m`, `5 minutes`, a bare `30`. Never overflows: a value past ~292 years is refused.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    const EXPECTED: &str = "expected a whole number and a unit (ms, s, m, h or d), like \
                            `250ms`, `30s`, `5m`, `2h`, `7d`, or several largest first, like \
                            `1m30s`";
    let bad = |what: &str| format!("invalid duration `{text}`: {what}; {EXPECTED}");
    if text.is_empty() {
        return Err(bad("empty"));
    }
    if text.chars().all(|ch| ch.is_ascii_digit()) {
        return Err(format!("durations need a unit, e.g. `30s` (found `{text}`)"));
    }
    let mut rest = text;
    let mut total = Duration::ZERO;
    let mut last_unit: Option<usize> = None;
    while !rest.is_empty() {
        let digits = rest.find(|ch: char| !ch.is_ascii_digit()).unwrap_or(rest.len());
        if digits == 0 {
            let ch = rest.chars().next().unwrap_or_default();
            let what = match ch {
                '.' | ',' => "fractions are not accepted (write `90s`, not `1.5m`)".to_owned(),
                '-' | '+' => "a sign is not accepted".to_owned(),
                ch if ch.is_whitespace() => "spaces are not accepted".to_owned(),
                _ => format!("`{ch}` is not a number"),
            };
            return Err(bad(&what));
        }
        let (number, after) = rest.split_at(digits);
        let unit_len = after.find(|ch: char| !ch.is_ascii_alphabetic()).unwrap_or(after.len());
        let (unit, after) = after.split_at(unit_len);
        let Some(index) = UNITS.iter().position(|(name, _)| *name == unit) else {
            let what = match unit {
                "" if after.starts_with(['.', ',']) => {
                    "fractions are not accepted (write `90s`, not `1.5m`)".to_owned()
                }
                "" if after.starts_with(char::is_whitespace) => {
                    "spaces are not accepted".to_owned()
                }
                "" => "a number without a unit".to_owned(),
                "M" | "mo" | "month" | "months" | "y" | "Y" | "yr" | "year" | "years" => {
                    format!("`{unit}` (months, years) is not a unit here")
                }
                "w" | "week" | "weeks" => "`w` is not a unit here; write `7d`".to_owned(),
                other => format!("unknown unit `{other}`"),
            };
            return Err(bad(&what));
        };
        if last_unit.is_some_and(|last| index <= last) {
            return Err(bad("units must go largest first, each once"));
        }
        last_unit = Some(index);
        let value: u64 = number.parse().map_err(|_| bad("number too large"))?;
        let part = u32::try_from(value)
            .ok()
            .and_then(|value| UNITS[index].1.checked_mul(value))
            .ok_or_else(|| bad("number too large"))?;
        total = total.checked_add(part).ok_or_else(|| bad("number too large"))?;
        rest = after;
    }
    Ok(total)
}

/// A duration as `check` writes it (`5m`, `1h 30m`).
pub fn show(d: Duration) -> String {
    humantime::format_duration(d).to_string()
}

#[cfg(test)]
mod tests {
    use rstest::rstest;

    use super::*;

    #[rstest]
    #[case::millis("250ms", Ok(Duration::from_millis(250)))]
    #[case::seconds("30s", Ok(secs(30)))]
    #[case::minutes("5m", Ok(secs(300)))]
    #[case::hours("2h", Ok(secs(7200)))]
    #[case::days("7d", Ok(WEEK))]
    #[case::zero("0s", Ok(Duration::ZERO))]
    #[case::compound("1m30s", Ok(secs(90)))]
    #[case::compound_hours("1h30m", Ok(secs(5400)))]
    #[case::compound_millis("1s500ms", Ok(Duration::from_millis(1500)))]
    #[case::month("5M", Err("(months, years) is not a unit here"))]
    #[case::year("1y", Err("(months, years) is not a unit here"))]
    #[case::week("1w", Err("write `7d`"))]
    #[case::spelled_out("5 minutes", Err("spaces are not accepted"))]
    #[case::word_unit("5minutes", Err("unknown unit `minutes`"))]
    #[case::space("5 m", Err("spaces are not accepted"))]
    #[case::leading_space(" 5m", Err("spaces are not accepted"))]
    #[case::fraction("1.5m", Err("fractions are not accepted"))]
    #[case::bare_integer("30", Err("durations need a unit"))]
    #[case::bare_fraction("1.5", Err("fractions are not accepted"))]
    #[case::negative("-5s", Err("a sign is not accepted"))]
    #[case::empty("", Err("empty"))]
    #[case::micros("5us", Err("unknown unit `us`"))]
    #[case::upper_case("5S", Err("unknown unit `S`"))]
    #[case::smallest_first("30s1m", Err("largest first"))]
    #[case::repeated("1m1m", Err("largest first"))]
    #[case::trailing_number("1m30", Err("a number without a unit"))]
    #[case::overflow("50000000000000d", Err("number too large"))]
    #[case::huge_digits("99999999999999999999999s", Err("number too large"))]
    fn one_duration_syntax(#[case] text: &str, #[case] expected: Result<Duration, &str>) {
        match (parse_duration(text), expected) {
            (Ok(found), Ok(expected)) => assert_eq!(found, expected, "{text}"),
            (Err(found), Err(expected)) => {
                assert!(found.contains(expected), "{text}: {found}");
            }
            (found, expected) => panic!("{text}: {found:?}, expected {expected:?}"),
        }
    }

    #[test]
    fn every_refusal_says_what_was_expected() {
        for text in ["5M", "5 minutes", "1.5m", "1w", "-1s", "x"] {
            let message = parse_duration(text).expect_err(text);
            assert!(message.contains("like `250ms`, `30s`, `5m`"), "{message}");
        }
    }

    #[test]
    fn bounds_explain_themselves() {
        let below = SAMPLING_INTERVAL.check(MS, "1ms").expect_err("a floor");
        assert!(below.starts_with("must be at least 1s, found `1ms` (every round"), "{below}");
        let above = METRIC_WINDOW.check(DAY * 30, "30d").expect_err("a ceiling");
        assert!(above.contains("must be at most 7days, found `30d`"), "{above}");
        let zero = DOWN_AFTER.check(Duration::ZERO, "0s").expect_err("zero");
        assert!(zero.starts_with("must be longer than 0"), "{zero}");
        assert_eq!(STABILIZATION.check(Duration::ZERO, "0s"), Ok(Duration::ZERO));
    }

    #[test]
    fn history_rounds_round_up_and_are_capped() {
        assert_eq!(history_rounds(secs(60), secs(10)), 6);
        assert_eq!(history_rounds(secs(61), secs(10)), 7);
        assert!(history_problem(WEEK, secs(30)).is_none());
        let problem = history_problem(WEEK, secs(10)).expect("too many rounds");
        assert!(problem.contains("60480 rounds"), "{problem}");
        assert!(problem.contains("sample every 30s or more"), "{problem}");
    }

    #[rstest]
    #[case::every_second("* * * * * *", Some(secs(1)))]
    #[case::every_minute("0 * * * * *", Some(MINUTE))]
    #[case::every_five_minutes("0 */5 * * * *", Some(secs(300)))]
    #[case::nightly("0 15 3 * * *", Some(DAY))]
    #[case::two_a_day_close("0 0,2 4 * * *", Some(secs(120)))]
    fn a_schedule_s_shortest_gap(#[case] line: &str, #[case] expected: Option<Duration>) {
        let cron = CronSchedule::parse(line).expect("cron");
        assert_eq!(shortest_gap(&cron), expected, "{line}");
    }

    #[test]
    fn a_gap_across_midnight_counts() {
        let cron = CronSchedule::parse("0 0,59 0,23 * * *").expect("cron");
        // 00:00, 00:59, 23:00, 23:59, then 00:00 the next day: one minute.
        assert_eq!(shortest_gap(&cron), Some(MINUTE));
        assert!(snapshot_schedule_problem(&cron).is_some());
        let nightly = CronSchedule::parse("0 15 3 * * *").expect("cron");
        assert!(snapshot_schedule_problem(&nightly).is_none());
    }
}
