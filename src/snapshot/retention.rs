//! Retention, pure: given the complete snapshots (those with a manifest) and the policy's
//! counts, which to delete and why. The newest snapshot is always kept, whatever the counts;
//! an in-progress or failed transfer has no manifest, so it never reaches this function.
//!
//! Rules (as restic and most backup tools read them): `keepLast` keeps the newest N;
//! `daily`/`weekly`/`monthly` keep the newest snapshot of each of the last N days / ISO
//! weeks / months that have one. A snapshot kept by any rule stays.
//!
//! With `spec.snapshots.verify.keep: N`, [`keep_proven`] takes out of the plan the newest N
//! snapshots whose last restore test passed: however the counts are set, N snapshots proven
//! restorable remain (a newer snapshot, not yet tested, never pushes the last proven one out).

use std::collections::BTreeSet;

use chrono::{DateTime, Datelike as _, Utc};

use crate::policy::Retention;

/// The calendar bucket (day, ISO week, month) a time falls in, as `(year, number)`.
type Bucket = fn(&DateTime<Utc>) -> (i32, u32);

/// A snapshot to delete, with the reason shown in logs and `prune --dry-run`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Prune {
    pub id: String,
    pub why: String,
}

/// `snapshots`: ids and times of complete snapshots, in any order.
pub fn plan(snapshots: &[(String, DateTime<Utc>)], retention: &Retention) -> Vec<Prune> {
    let mut sorted: Vec<&(String, DateTime<Utc>)> = snapshots.iter().collect();
    // Newest first; ties broken by id so the outcome never depends on listing order.
    sorted.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| b.0.cmp(&a.0)));
    let mut keep: BTreeSet<&str> = BTreeSet::new();
    for (id, _) in sorted.iter().take(retention.keep_last.max(1) as usize) {
        keep.insert(id);
    }
    let buckets: [(u32, Bucket); 3] = [
        (retention.daily, |t| (t.year(), t.ordinal())),
        (retention.weekly, |t| (t.iso_week().year(), t.iso_week().week())),
        (retention.monthly, |t| (t.year(), t.month())),
    ];
    for (count, bucket) in buckets {
        let mut seen = BTreeSet::new();
        for (id, at) in &sorted {
            if seen.len() >= count as usize {
                break;
            }
            // Newest first: the first snapshot of each bucket is its newest.
            if seen.insert(bucket(at)) {
                keep.insert(id);
            }
        }
    }
    let why = format!(
        "beyond keepLast {} and not the newest of a kept day ({}), week ({}) or month ({})",
        retention.keep_last, retention.daily, retention.weekly, retention.monthly
    );
    sorted
        .iter()
        .filter(|(id, _)| !keep.contains(id.as_str()))
        .map(|(id, _)| Prune { id: id.clone(), why: why.clone() })
        .collect()
}

/// `plan` without the newest `keep` of `proven` (ids of snapshots whose last restore test
/// passed, in any order; ids sort by time).
pub fn keep_proven(plan: Vec<Prune>, proven: &[String], keep: u32) -> Vec<Prune> {
    let mut newest: Vec<&String> = proven.iter().collect();
    newest.sort_unstable_by(|a, b| b.cmp(a));
    newest.truncate(keep as usize);
    plan.into_iter().filter(|prune| !newest.contains(&&prune.id)).collect()
}

#[cfg(test)]
mod tests {
    use chrono::TimeZone as _;
    use proptest::prelude::*;

    use super::*;

    fn at(day: u32, hour: u32) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 3, 1, 0, 0, 0).unwrap()
            + chrono::Duration::days(i64::from(day))
            + chrono::Duration::hours(i64::from(hour))
    }

    fn snaps(times: &[(u32, u32)]) -> Vec<(String, DateTime<Utc>)> {
        times.iter().map(|&(d, h)| (format!("d{d:03}h{h:02}"), at(d, h))).collect()
    }

    fn deleted(snapshots: &[(String, DateTime<Utc>)], retention: &Retention) -> Vec<String> {
        let mut ids: Vec<String> = plan(snapshots, retention).into_iter().map(|p| p.id).collect();
        ids.sort();
        ids
    }

    #[test]
    fn keep_last_keeps_the_newest_n() {
        let s = snaps(&[(0, 0), (0, 6), (0, 12), (0, 18), (1, 0)]);
        let r = Retention { keep_last: 2, ..Retention::default() };
        assert_eq!(deleted(&s, &r), ["d000h00", "d000h06", "d000h12"]);
    }

    #[test]
    fn daily_keeps_the_newest_of_each_recent_day() {
        let s = snaps(&[(0, 1), (0, 23), (1, 5), (1, 6), (2, 3)]);
        let r = Retention { keep_last: 1, daily: 2, ..Retention::default() };
        // Days 2 and 1 are the last two with snapshots: keep d002h03 and d001h06.
        assert_eq!(deleted(&s, &r), ["d000h01", "d000h23", "d001h05"]);
    }

    #[test]
    fn weekly_and_monthly_reach_further_back() {
        // 2026-03-01 is a Sunday: day 0 is in one ISO week, days 1..=7 in the next.
        let s = snaps(&[(0, 0), (3, 0), (5, 0), (40, 0)]);
        let r = Retention { keep_last: 1, weekly: 2, monthly: 2, ..Retention::default() };
        // Weeks: day 40's, days 3-5's (keep day 5). Months: April (40), March (5).
        assert_eq!(deleted(&s, &r), ["d000h00", "d003h00"]);
    }

    #[test]
    fn an_empty_list_prunes_nothing_and_reasons_are_given() {
        assert!(plan(&[], &Retention { keep_last: 1, ..Retention::default() }).is_empty());
        let s = snaps(&[(0, 0), (1, 0)]);
        let p = plan(&s, &Retention { keep_last: 1, ..Retention::default() });
        assert_eq!(p.len(), 1);
        assert!(p[0].why.contains("keepLast 1"), "{}", p[0].why);
    }

    #[test]
    fn the_newest_proven_snapshots_are_kept_whatever_the_counts() {
        let s = snaps(&[(0, 0), (1, 0), (2, 0), (3, 0)]);
        let r = Retention { keep_last: 1, ..Retention::default() };
        let proven = vec!["d000h00".to_owned(), "d001h00".to_owned()];
        let ids = |plan: Vec<Prune>| {
            let mut ids: Vec<String> = plan.into_iter().map(|p| p.id).collect();
            ids.sort();
            ids
        };
        // keep 1: the newest proven (day 1) stays, the older proven one may go.
        assert_eq!(ids(keep_proven(plan(&s, &r), &proven, 1)), ["d000h00", "d002h00"]);
        assert_eq!(ids(keep_proven(plan(&s, &r), &proven, 2)), ["d002h00"]);
        // keep 0 adds nothing to the counts.
        assert_eq!(ids(keep_proven(plan(&s, &r), &proven, 0)), ids(plan(&s, &r)));
    }

    proptest! {
        #[test]
        fn the_newest_is_never_deleted_and_keep_last_always_holds(
            times in prop::collection::vec((0_u32..400, 0_u32..24), 1..60),
            keep_last in 0_u32..10, daily in 0_u32..5, weekly in 0_u32..5, monthly in 0_u32..5,
        ) {
            let mut times = times;
            times.sort_unstable();
            times.dedup();
            let s = snaps(&times);
            let r = Retention { keep_last, daily, weekly, monthly };
            let deleted = deleted(&s, &r);
            let newest = s.iter().max_by(|a, b| a.1.cmp(&b.1).then_with(|| a.0.cmp(&b.0))).unwrap();
            prop_assert!(!deleted.contains(&newest.0));
            let mut unique: Vec<&String> = s.iter().map(|(id, _)| id).collect();
            unique.sort();
            unique.dedup();
            let kept = unique.len() - deleted.len();
            prop_assert!(kept >= (keep_last.max(1) as usize).min(unique.len()));
            // Only listed snapshots are ever deleted.
            prop_assert!(deleted.iter().all(|d| unique.contains(&d)));
        }
    }
}
