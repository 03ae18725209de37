//! Restore tests (`spec.snapshots.verify`) against real parts: `redis-server`s (a local fleet
//! run by the daemon, standalone sources, the scratch instances), a `file://` destination and
//! the built daemon and CLI.
//!
//! - A scheduled restore test of a local fleet's newest snapshot passes: the manifest records
//!   the keyspace and a key sample at snapshot time, and afterwards `verified: {ok: true}`; the
//!   metrics say so; `snapshot list` shows it restorable.
//! - A snapshot whose object was replaced by another valid RDB (its sha256, sizes and CRC64
//!   fixed in the manifest, so only the key count betrays it) fails, reported by reason.
//! - A manifest written before these fields still lists, verifies, restores and is tested.
//! - In a dry run a restore test is only counted: nothing loaded, nothing written.
//! - The scratch instance is killed and its directory removed, discarded or dropped; one that
//!   cannot start is a failed test with a reason, not a panic.

mod support;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use redis_autopilot::cluster::local::Scratch;
use redis_autopilot::cluster::scratch::ScratchKind;
use redis_autopilot::policy::load_policy_str;
use redis_autopilot::sample::redis::{Access, Endpoint};
use redis_autopilot::snapshot::{Quiet, Snapshotter};
use support::failover::dbsize;
use support::policy_daemon::{Daemon, Options, recorded_master};
use support::{Redis, free_ports, require};

const BIN: &str = env!("CARGO_BIN_EXE_redis-autopilot");
const VERIFICATIONS: &str = "redis_autopilot_snapshot_verifications_total";

/// Strings, hashes, lists and sets without a TTL, and `ttl:N` keys with one (never sampled).
fn load(port: u16, strings: usize) {
    let client = redis::Client::open(format!("redis://127.0.0.1:{port}/")).expect("client");
    let mut con = client.get_connection().expect("connect");
    let mut pipe = redis::pipe();
    for i in 0..strings {
        pipe.cmd("SET").arg(format!("str:{i}")).arg(format!("value {i}")).ignore();
    }
    for i in 0..50 {
        pipe.cmd("HSET").arg(format!("hash:{i}")).arg("f").arg(i).ignore();
        pipe.cmd("RPUSH").arg(format!("list:{i}")).arg("a").arg("b").ignore();
        pipe.cmd("SADD").arg(format!("set:{i}")).arg("m").ignore();
        pipe.cmd("SET").arg(format!("ttl:{i}")).arg("v").arg("EX").arg(3600).ignore();
    }
    pipe.query::<()>(&mut con).expect("load");
}

fn cli(args: &[&str]) -> (bool, String, String) {
    let out = Command::new(BIN).args(args).output().expect("run the CLI");
    let text = |b: &[u8]| String::from_utf8_lossy(b).into_owned();
    (out.status.success(), text(&out.stdout), text(&out.stderr))
}

/// `snapshot now` of `policy`: the new manifest.
fn snapshot_now(policy: &Path) -> serde_json::Value {
    let (ok, out, err) =
        cli(&["snapshot", "now", "--policy", policy.to_str().expect("utf-8"), "--output", "json"]);
    assert!(ok, "snapshot now: {err}");
    let taken: serde_json::Value = serde_json::from_str(&out).expect("manifest JSON");
    taken[0].clone()
}

fn read_json(path: &Path) -> serde_json::Value {
    serde_json::from_str(&std::fs::read_to_string(path).expect("read")).expect("JSON")
}

/// A cron line firing once a day, `after` from now (UTC): a schedule may fire at most every
/// 5 minutes, so a test's firing is one a few seconds ahead.
fn daily_cron_in(after: Duration) -> String {
    use chrono::Timelike as _;
    let at = chrono::Utc::now() + chrono::Duration::from_std(after).expect("small");
    format!("{} {} {} * * *", at.second(), at.minute(), at.hour())
}

/// The `spec.snapshots` section: to `backups`, from the master, restore tests on `verify`.
fn snapshots(backups: &Path, verify: &str) -> String {
    format!(
        "  snapshots:\n    schedule: '0 0 3 * * *'\n    destination: 'file://{}'\n    \
         source: master\n    compression: zstd\n    verify: {{schedule: '{verify}', keep: 1}}\n",
        backups.display()
    )
}

fn local_policy(base: u16, data: &Path, backups: &Path, verify: &str) -> String {
    let server = require("redis-server", "redis-server");
    format!(
        "apiVersion: autopilot.redis.io/v1alpha1\nkind: RedisPolicy\nmetadata: {{name: cache}}\n\
         spec:\n  target:\n    local: {{redisServer: {}, basePort: {base}, dataDir: {}}}\n  \
         sampling: {{interval: 1s, timeout: 500ms}}\n  scaling:\n    minReplicas: 2\n    \
         maxReplicas: 2\n    metrics: [{{redis: instantaneous_ops_per_sec, target: 1000000}}]\n{}",
        server.display(),
        data.display(),
        snapshots(backups, verify)
    )
}

fn endpoints_policy(source: &Redis, backups: &Path, verify: &str) -> String {
    format!(
        "apiVersion: autopilot.redis.io/v1alpha1\nkind: RedisPolicy\nmetadata: {{name: cache}}\n\
         spec:\n  target: {{endpoints: ['{}']}}\n{}",
        source.addr(),
        snapshots(backups, verify)
    )
}

/// The daemon's restore-test count with `outcome`.
fn verifications(daemon: &Daemon, outcome: &str) -> Option<f64> {
    daemon.metric(VERIFICATIONS, &[("policy", "cache"), ("outcome", outcome)])
}

#[test]
fn a_scheduled_restore_test_proves_a_local_fleets_newest_snapshot() {
    let dir = tempfile::tempdir().expect("temp dir");
    let (data, backups) = (dir.path().join("data"), dir.path().join("backups"));
    let base = free_ports(2);
    // Restore tests scheduled far ahead at first: the snapshot is taken before one fires.
    let later = daily_cron_in(Duration::from_secs(12 * 3600));
    let mut daemon =
        Daemon::spawn_in(dir, &[("cache.yaml", &local_policy(base, &data, &backups, &later))]);
    let master =
        daemon.wait_until(Duration::from_secs(60), "a recorded master", |_| recorded_master(&data));
    let master: u16 = master.rsplit(':').next().and_then(|p| p.parse().ok()).expect("a port");
    load(master, 3000);
    let total = 3000 + 4 * 50;
    let replica = if master == base { base + 1 } else { base };
    daemon.wait_until(Duration::from_secs(60), "the replica caught up", |_| {
        (dbsize(replica)? == total).then_some(())
    });

    let policy = daemon.policies.join("cache.yaml");
    let taken = snapshot_now(&policy);
    let id = taken["id"].as_str().expect("id").to_owned();
    // The manifest records the source's keyspace and a sample of keys without a TTL.
    assert_eq!(taken["keyspace"]["0"], total, "{taken:#}");
    let sample = taken["sample"].as_array().expect("a sample");
    assert_eq!(sample.len(), 16, "{taken:#}");
    for key in sample {
        let name = key["key"].as_str().expect("name");
        assert!(!name.starts_with("ttl:"), "a key with a TTL was sampled: {taken:#}");
        let kind = name.split(':').next().map(|k| if k == "str" { "string" } else { k });
        assert_eq!(key["type"].as_str(), kind, "{taken:#}");
    }

    // Now a restore test a few seconds ahead (the daemon reloads the edited policy).
    daemon.write_policy(
        "cache.yaml",
        &local_policy(base, &data, &backups, &daily_cron_in(Duration::from_secs(15))),
    );
    daemon.wait_until(Duration::from_secs(90), "a passed restore test", |d| {
        verifications(d, "ok").filter(|n| *n >= 1.0)
    });
    let at = daemon
        .metric("redis_autopilot_snapshot_last_verified_timestamp_seconds", &[("policy", "cache")])
        .expect("metrics");
    assert!(at > 0.0, "{}", daemon.log());
    let manifest = read_json(&backups.join("cache").join(format!("{id}.json")));
    let verified = &manifest["verified"];
    assert_eq!(verified["ok"], true, "{manifest:#}");
    assert_eq!(verified["keys"], total, "{manifest:#}");
    // Only `verified` was added: the object's checks still hold.
    let (ok, _, err) = cli(&["snapshot", "verify", "--policy", policy.to_str().unwrap(), &id]);
    assert!(ok, "verify after the rewrite: {err}");
    let (ok, out, err) = cli(&["snapshot", "list", "--policy", policy.to_str().unwrap()]);
    assert!(ok, "{err}");
    let row = out.lines().find(|l| l.starts_with(&id)).expect("listed");
    assert!(row.contains("restorable"), "{out}");
    // The same test run now from the CLI.
    let policy_arg = policy.to_str().unwrap();
    let (ok, out, err) = cli(&["snapshot", "verify", "--policy", policy_arg, &id, "--restore"]);
    assert!(ok, "verify --restore: {out}\n{err}");
    assert!(out.contains(&format!("restorable: {total} keys loaded ({total} expected)")), "{out}");
    // The fleet was left alone: still the same master, both instances holding everything.
    assert_eq!(recorded_master(&data), Some(format!("127.0.0.1:{master}")));
    assert_eq!((dbsize(master), dbsize(replica)), (Some(total), Some(total)));
    eprintln!(
        "restore test of {id}: {total} keys, {}",
        daemon.log().lines().filter(|l| l.contains("restore test")).collect::<Vec<_>>().join("\n")
    );
}

#[test]
fn a_snapshot_replaced_by_another_valid_rdb_fails_on_its_key_count() {
    let dir = tempfile::tempdir().expect("temp dir");
    let backups = dir.path().join("backups");
    let (big, small) = (Redis::master(), Redis::master());
    load(big.port, 3000);
    load(small.port, 500);
    let later = daily_cron_in(Duration::from_secs(12 * 3600));
    let small_file = dir.path().join("small.yaml");
    std::fs::write(&small_file, endpoints_policy(&small, &backups, &later)).expect("policy");
    let big_file = dir.path().join("big.yaml");
    std::fs::write(&big_file, endpoints_policy(&big, &backups, &later)).expect("policy");
    // The other RDB first, so the real one is the newest.
    let other = snapshot_now(&small_file);
    let real = snapshot_now(&big_file);
    let folder = backups.join("cache");
    let id = real["id"].as_str().expect("id").to_owned();
    support::seed::replace_object_with_another_valid_rdb(&folder, &real, &other);
    // Every check of the object passes: only a restore test can tell.
    let (ok, _, err) = cli(&["snapshot", "verify", "--policy", big_file.to_str().unwrap(), &id]);
    assert!(ok, "the tampered snapshot's checksums hold: {err}");

    let soon = daily_cron_in(Duration::from_secs(12));
    let options = Options {
        env: vec![("PATH".into(), std::env::var("PATH").unwrap_or_default())],
        ..Options::default()
    };
    let mut daemon = Daemon::spawn_with(
        tempfile::tempdir().expect("temp dir"),
        &[("cache.yaml", &endpoints_policy(&big, &backups, &soon))],
        &options,
    );
    daemon.wait_until(Duration::from_secs(90), "a failed restore test", |d| {
        verifications(d, "failed").filter(|n| *n >= 1.0)
    });
    let by_reason = daemon.metric(
        "redis_autopilot_snapshot_verification_failures_total",
        &[("policy", "cache"), ("reason", "key_count")],
    );
    assert_eq!(by_reason, Some(1.0), "{}", daemon.log());
    assert_eq!(verifications(&daemon, "ok"), Some(0.0));
    let manifest = read_json(&folder.join(format!("{id}.json")));
    let verified = &manifest["verified"];
    assert_eq!(verified["ok"], false, "{manifest:#}");
    assert_eq!(verified["reason"], "key_count", "{manifest:#}");
    assert_eq!(verified["keys"], 500 + 4 * 50, "{manifest:#}");
    let why = verified["why"].as_str().expect("why");
    assert!(why.contains("700") && why.contains("3200"), "{why}");
    let (ok, out, err) = cli(&["snapshot", "list", "--policy", big_file.to_str().unwrap()]);
    assert!(ok, "{err}");
    assert!(out.contains("FAILED key_count"), "{out}");
    // The CLI's restore test says the same, and fails.
    let (ok, out, err) =
        cli(&["snapshot", "verify", "--policy", big_file.to_str().unwrap(), &id, "--restore"]);
    assert!(!ok, "{out}");
    assert!(
        err.contains("restore test FAILED (key_count)") && err.contains("700 keys loaded"),
        "{err}"
    );
    // The source was left alone.
    assert_eq!(dbsize(big.port), Some(3200));
}

fn policy_of(text: &str) -> redis_autopilot::policy::Policy {
    load_policy_str("cache.yaml", text).expect("valid policy")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_manifest_from_before_keyspaces_still_lists_verifies_restores_and_is_tested() {
    let dir = tempfile::tempdir().expect("temp dir");
    let backups = dir.path().join("backups");
    let source = Redis::master();
    load(source.port, 1000);
    // Retention keeps one snapshot by its count; `verify.keep: 1` one proven restorable.
    let text = endpoints_policy(&source, &backups, "0 0 4 * * *")
        .replace("    verify:", "    retention: {keepLast: 1}\n    verify:");
    let policy = policy_of(&text);
    let snapshotter = Snapshotter::new(&policy).expect("snapshotter");
    let endpoint = Endpoint { id: source.addr(), host: "127.0.0.1".into(), port: source.port };
    let taken = snapshotter.take(&[endpoint], &Quiet).await.expect("snapshot");
    assert_eq!(taken.keys(), Some(1200));
    // As a manifest written before keyspaces, samples and restore tests were recorded.
    let path = backups.join("cache").join(format!("{}.json", taken.id));
    let mut old = read_json(&path);
    for field in ["keyspace", "sample", "verified"] {
        old.as_object_mut().expect("object").remove(field);
    }
    std::fs::write(&path, serde_json::to_vec_pretty(&old).unwrap()).expect("write");

    let listed = snapshotter.list().await.expect("list");
    assert_eq!(listed.len(), 1);
    let manifest = listed[0].clone();
    assert_eq!((manifest.keys(), manifest.sample.len(), manifest.proven()), (None, 0, false));
    snapshotter.verify(&manifest.id, &Quiet).await.expect("verify");
    let file = dir.path().join("restored.rdb");
    snapshotter.restore(&manifest.id, &file, &Quiet).await.expect("restore");
    assert!(std::fs::metadata(&file).expect("restored").len() > 0);
    let server = require("redis-server", "redis-server").display().to_string();
    let verified =
        snapshotter.restore_test(&manifest, &ScratchKind::Local { redis_server: server }).await;
    assert!(verified.ok, "{verified:?}");
    assert_eq!(verified.keys, Some(1200));
    let written = snapshotter.record_verified(&manifest.id, verified).await.expect("record");
    assert!(written.proven());
    let listed = snapshotter.list().await.expect("list");
    assert!(listed[0].proven() && listed[0].keys().is_none(), "{:?}", listed[0]);
    snapshotter.verify(&manifest.id, &Quiet).await.expect("verify after the rewrite");

    // A newer, untested snapshot: `keepLast: 1` alone would delete the proven one.
    let endpoint = Endpoint { id: source.addr(), host: "127.0.0.1".into(), port: source.port };
    let newer = snapshotter.take(&[endpoint], &Quiet).await.expect("snapshot");
    assert!(snapshotter.prune(false).await.expect("prune").is_empty(), "the proven one stays");
    let ids: Vec<String> =
        snapshotter.list().await.expect("list").into_iter().map(|m| m.id).collect();
    assert_eq!(ids, [manifest.id.clone(), newer.id.clone()]);

    // A scratch that cannot start is a failed test with its reason.
    let missing = ScratchKind::Local { redis_server: "/nonexistent/redis-server".into() };
    let verified = snapshotter.restore_test(&manifest, &missing).await;
    assert!(!verified.ok);
    assert_eq!(verified.reason.as_deref(), Some("scratch"), "{verified:?}");
    assert!(verified.why.as_deref().unwrap_or_default().contains("/nonexistent"), "{verified:?}");
}

fn alive(pid: u32) -> bool {
    // A killed child not reaped yet is a zombie: dead.
    std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|stat| {
        stat.rsplit(')').next().is_some_and(|rest| !rest.trim_start().starts_with('Z'))
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_scratch_instance_is_killed_and_its_directory_removed_discarded_or_dropped() {
    let server = require("redis-server", "redis-server").display().to_string();
    let scratch = Scratch::start(&server, &Access::default(), 0).await.expect("start");
    let (pid, dir): (u32, PathBuf) = (scratch.pid().expect("pid"), scratch.dir().to_owned());
    assert!(alive(pid) && dir.is_dir());
    assert_eq!(dbsize(scratch.endpoint().port), Some(0));
    scratch.discard().await;
    assert!(!alive(pid), "discarded: killed");
    assert!(!dir.exists(), "discarded: its directory removed");

    let scratch = Scratch::start(&server, &Access::default(), 0).await.expect("start");
    let (pid, dir) = (scratch.pid().expect("pid"), scratch.dir().to_owned());
    drop(scratch);
    assert!(!dir.exists(), "dropped: its directory removed");
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while alive(pid) && std::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(!alive(pid), "dropped: killed");
}

/// A restore test goes through the snapshot gate: in a dry run it is counted and nothing is
/// loaded or written.
#[test]
fn a_dry_run_counts_the_restore_test_and_writes_nothing() {
    let dir = tempfile::tempdir().expect("temp dir");
    let backups = dir.path().join("backups");
    let source = Redis::master();
    load(source.port, 100);
    let file = dir.path().join("cache.yaml");
    let later = daily_cron_in(Duration::from_secs(12 * 3600));
    std::fs::write(&file, endpoints_policy(&source, &backups, &later)).expect("policy");
    let taken = snapshot_now(&file);
    let manifest_path =
        backups.join("cache").join(format!("{}.json", taken["id"].as_str().unwrap()));
    let before = std::fs::read(&manifest_path).expect("manifest");
    let options = Options { args: vec!["--dry-run".into()], ..Options::default() };
    let soon = daily_cron_in(Duration::from_secs(12));
    let mut daemon = Daemon::spawn_with(
        tempfile::tempdir().expect("temp dir"),
        &[("cache.yaml", &endpoints_policy(&source, &backups, &soon))],
        &options,
    );
    daemon.wait_until(Duration::from_secs(60), "a restore test counted as a dry run", |d| {
        verifications(d, "dry_run").filter(|n| *n >= 1.0)
    });
    assert_eq!(verifications(&daemon, "ok"), Some(0.0));
    assert_eq!(std::fs::read(&manifest_path).expect("manifest"), before, "nothing written");
}
