//! Fuzzes `Info::parse`, the one function that reads bytes a remote server chose: it must
//! never panic, and what it returns must hold together (lookups, equality, totals).

#![no_main]

use libfuzzer_sys::fuzz_target;
use redis_autopilot::observe::Info;

fuzz_target!(|data: &[u8]| {
    // Lossy, so every input reaches the parser instead of being refused as invalid UTF-8.
    let text = String::from_utf8_lossy(data);
    let mut info = Info::parse(&text);

    // Pieces of the input looked up as names, including `line.key` forms. A few suffice: each
    // lookup scans every field, and a slow target explores less.
    for name in text.split(['\n', ':', ',', '=']).take(64) {
        let _ = info.number(name);
    }
    assert_eq!(info, info.clone());
    let _ = format!("{info:?}");

    if !info.keyspace.is_empty() {
        let keys = info.keyspace.iter().fold(0u64, |sum, db| sum.saturating_add(db.keys));
        assert_eq!(info.number("keys"), Some(keys as f64));
    }
    assert_eq!(info.syncing, info.replication.master_sync_in_progress || info.persistence.loading);

    let name = text.lines().next().unwrap_or_default();
    info.set_number(name, 1.5);
    assert_eq!(info.number(name), Some(1.5));
});
