//! Pure: what a restore test concludes from a loaded scratch instance. The snapshot is proven
//! restorable when Redis loaded it (the caller's part), its key count is the one the manifest
//! recorded within [`tolerance`], and its sampled keys are there with the types recorded.
//!
//! # The key-count tolerance
//!
//! The manifest's count is the source's `INFO keyspace`, read as the RDB payload began, so
//! just after the fork that wrote it; the RDB holds the keys at the fork. Writes (and expiries)
//! between the two make them differ. The bound is 1% of the recorded count plus 100 keys: the
//! relative part covers a busy large dataset (a few milliseconds of writes), the absolute part
//! a small one, where 1% is a handful of keys. An RDB of another dataset, or one cut short,
//! almost always differs by more. A source written to by a cache that adds keys faster than
//! about 1% per few milliseconds would fail it: that is reported as `key_count`, never
//! silently passed.
//!
//! # Sampled keys
//!
//! Only keys without a time to live are sampled (one with a TTL may have expired by the time
//! of the test). Each sampled key must have its recorded type; up to a quarter of them may be
//! missing (created in the moments between the fork and the `SCAN` that sampled them), no more.

use crate::snapshot::manifest::{Manifest, SampledKey};

/// The relative part of the tolerance: one key in this many (1%).
pub const TOLERANCE_ONE_IN: u64 = 100;
/// The absolute part of the tolerance, in keys.
pub const TOLERANCE_KEYS: u64 = 100;

/// How far the loaded key count may be from `expected` and still pass.
pub fn tolerance(expected: u64) -> u64 {
    expected.div_ceil(TOLERANCE_ONE_IN).saturating_add(TOLERANCE_KEYS)
}

/// Why a restore test failed: a bounded `reason` (a metric label) and a sentence.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failure {
    pub reason: &'static str,
    pub why: String,
}

/// The key count: `loaded` against what `manifest` recorded. A manifest that recorded none
/// (written before keyspaces were, or its `INFO` failed) has nothing to compare: passes.
pub fn check_keys(manifest: &Manifest, loaded: u64) -> Result<(), Failure> {
    let Some(expected) = manifest.keys() else { return Ok(()) };
    let allowed = tolerance(expected);
    if loaded.abs_diff(expected) > allowed {
        return Err(Failure {
            reason: "key_count",
            why: format!(
                "loaded {loaded} keys, the manifest recorded {expected} (allowed difference \
                 {allowed}: 1% + {TOLERANCE_KEYS})"
            ),
        });
    }
    Ok(())
}

/// The sampled keys: `found[i]` is the type the scratch reports for `sample[i]` (`none` when
/// missing).
pub fn check_sample(sample: &[SampledKey], found: &[String]) -> Result<(), Failure> {
    let mut missing = Vec::new();
    for (key, found) in sample.iter().zip(found) {
        if found == "none" {
            missing.push(key);
        } else if *found != key.kind {
            return Err(Failure {
                reason: "key_type",
                why: format!(
                    "key `{}` (db {}) is a {found}, the manifest recorded a {}",
                    key.key, key.db, key.kind
                ),
            });
        }
    }
    if missing.len() > sample.len() / 4 {
        let names: Vec<String> =
            missing.iter().take(3).map(|k| format!("`{}` (db {})", k.key, k.db)).collect();
        return Err(Failure {
            reason: "key_missing",
            why: format!(
                "{} of {} sampled keys are missing, {} at most may be: {}",
                missing.len(),
                sample.len(),
                sample.len() / 4,
                names.join(", ")
            ),
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use chrono::Utc;
    use rstest::rstest;

    use super::*;
    use crate::snapshot::manifest::{Cipher, Codec, FORMAT};

    fn manifest(keyspace: Option<&[(u32, u64)]>) -> Manifest {
        let now = Utc::now();
        Manifest {
            format: FORMAT,
            id: "20261124T023000.000Z-r".into(),
            policy: "cache".into(),
            source: "r".into(),
            run_id: "x".into(),
            object: "20261124T023000.000Z-r.rdb".into(),
            compression: Codec::None,
            encryption: Cipher::None,
            recipients: Vec::new(),
            replid: None,
            repl_offset: None,
            rdb_version: 11,
            redis_version: None,
            raw_bytes: 1,
            stored_bytes: 1,
            crc64: None,
            sha256: "00".into(),
            started: now,
            finished: now,
            keyspace: keyspace.map(|dbs| dbs.iter().copied().collect()),
            sample: Vec::new(),
            sealed_sample: None,
            verified: None,
        }
    }

    #[rstest]
    #[case::empty(0, 100)]
    #[case::small(500, 105)]
    #[case::exactly_one_percent(10_000, 200)]
    #[case::rounds_up(10_001, 201)]
    #[case::large(100_000_000, 1_000_100)]
    #[case::never_overflows(u64::MAX, u64::MAX / 100 + 1 + 100)]
    fn the_tolerance_is_one_percent_plus_a_hundred(#[case] expected: u64, #[case] allowed: u64) {
        assert_eq!(tolerance(expected), allowed);
    }

    #[test]
    fn the_key_count_passes_within_the_tolerance_and_fails_past_it() {
        let m = manifest(Some(&[(0, 9_000), (3, 1_000)]));
        assert_eq!(check_keys(&m, 10_000), Ok(()));
        assert_eq!(check_keys(&m, 10_200), Ok(()));
        assert_eq!(check_keys(&m, 9_800), Ok(()));
        let failure = check_keys(&m, 10_201).unwrap_err();
        assert_eq!(failure.reason, "key_count");
        assert!(failure.why.contains("10201") && failure.why.contains("10000"), "{}", failure.why);
        assert_eq!(check_keys(&m, 9_799).unwrap_err().reason, "key_count");
        // Nothing recorded: nothing to compare.
        assert_eq!(check_keys(&manifest(None), 7), Ok(()));
    }

    fn key(name: &str, kind: &str) -> SampledKey {
        SampledKey { db: 0, key: name.into(), kind: kind.into() }
    }

    #[test]
    fn a_sampled_key_of_another_type_fails_and_a_few_missing_ones_do_not() {
        let sample: Vec<SampledKey> = (0..8).map(|i| key(&format!("k{i}"), "hash")).collect();
        let mut found = vec!["hash".to_owned(); 8];
        assert_eq!(check_sample(&sample, &found), Ok(()));
        found[1] = "none".into();
        found[5] = "none".into();
        assert_eq!(check_sample(&sample, &found), Ok(()), "two of eight may be missing");
        found[6] = "none".into();
        assert_eq!(check_sample(&sample, &found).unwrap_err().reason, "key_missing");
        found = vec!["hash".to_owned(); 8];
        found[3] = "string".into();
        let failure = check_sample(&sample, &found).unwrap_err();
        assert_eq!(failure.reason, "key_type");
        assert!(failure.why.contains("`k3`") && failure.why.contains("string"), "{}", failure.why);
        assert_eq!(check_sample(&[], &[]), Ok(()));
    }
}
