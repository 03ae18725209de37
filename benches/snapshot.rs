//! Snapshot throughput and memory against `redis-cli --rdb`, in one run on one dataset.
//!
//! A `redis-server` is filled with `DEBUG POPULATE` (`SNAPSHOT_BENCH_KEYS` keys of 100 bytes;
//! default 3,000,000, about 450 MB in memory; 20,000 in the `cargo test --all-targets` smoke
//! run), then, alternating, `redis-cli --rdb FILE` and `redis-autopilot snapshot now` to a
//! `file://` destination (no compression: the same bytes land on the same disk), each run as
//! a child process. Reported: the best of `ROUNDS` runs of each in MB/s of RDB, their ratio
//! (target >= 0.95), and the snapshot process's peak resident memory (`VmHWM`, polled from
//! `/proc` while it runs; target < 64 MiB whatever the dataset size).
//!
//! Then restore, on the same RDB: the anchor is `redis-server --dbfilename` loading it from
//! local disk (from spawn to `loading:0` with every key), against the one-shot master
//! (`Snapshotter::load_from_seed`, the path `restore --into` and bootstrap take) loading an
//! empty `redis-server` from the `file://` destination (from `REPLICAOF` to loaded). Reported:
//! the best of `ROUNDS` of each, their ratio (target >= 0.9), and this bench process's peak
//! resident memory across the restores (target < 64 MiB), which holds the restoring code.

#[path = "../tests/support/mod.rs"]
mod support;

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use support::{Redis, require};

const BIN: &str = env!("CARGO_BIN_EXE_redis-autopilot");
const ROUNDS: usize = 3;

fn main() {
    let measuring = std::env::args().any(|a| a == "--bench");
    let keys: u64 = std::env::var("SNAPSHOT_BENCH_KEYS")
        .map(|n| n.parse().expect("SNAPSHOT_BENCH_KEYS must be a whole number"))
        .unwrap_or(if measuring { 3_000_000 } else { 20_000 });
    let redis = Redis::start(&["--enable-debug-command", "yes"]);
    let started = Instant::now();
    redis.cli(&["DEBUG", "POPULATE", &keys.to_string(), "key", "100"]);
    let used = redis.info_field("used_memory").unwrap_or_default();
    eprintln!(
        "populated {keys} keys ({used} bytes used) in {:.1} s",
        started.elapsed().as_secs_f64()
    );

    let work = tempfile::tempdir().expect("temp dir");
    let backups = work.path().join("backups");
    let policy = work.path().join("bench.yaml");
    std::fs::write(
        &policy,
        format!(
            "apiVersion: autopilot.redis.io/v1alpha1\nkind: RedisPolicy\nmetadata: {{name: bench}}\n\
             spec:\n  target: {{endpoints: [\"{}\"]}}\n  snapshots:\n    schedule: '0 0 3 * * *'\n\
             \x20   source: master\n    destination: 'file://{}'\n    compression: none\n",
            redis.addr(),
            backups.display()
        ),
    )
    .expect("write policy");

    let cli = require("redis-cli", "redis-tools");
    let mut best_cli = Duration::MAX;
    let mut best_ours = Duration::MAX;
    let mut peak_rss_kib = 0;
    let mut rdb_bytes = 0;
    for round in 0..ROUNDS {
        let out = work.path().join("cli.rdb");
        let mut command = Command::new(&cli);
        command.args(["-h", "127.0.0.1", "-p", &redis.port.to_string(), "--rdb"]).arg(&out);
        let (elapsed, _) = timed(command);
        rdb_bytes = std::fs::metadata(&out).expect("cli rdb").len();
        std::fs::remove_file(&out).expect("remove");
        best_cli = best_cli.min(elapsed);

        let mut command = Command::new(BIN);
        command.args(["snapshot", "now", "--policy"]).arg(&policy);
        let (elapsed, rss) = timed(command);
        best_ours = best_ours.min(elapsed);
        peak_rss_kib = peak_rss_kib.max(rss);
        let stored = stored_size(&backups.join("bench"));
        assert_eq!(stored, rdb_bytes, "round {round}: both RDBs have the same size");
        std::fs::remove_dir_all(&backups).expect("clean backups");
    }
    let mbps = |d: Duration| rdb_bytes as f64 / d.as_secs_f64() / 1e6;
    println!(
        "\nsnapshot bench, {keys} keys, RDB {:.1} MB, best of {ROUNDS}:",
        rdb_bytes as f64 / 1e6
    );
    println!(
        "  redis-cli --rdb (local file):        {:>8.1} MB/s ({:.2} s)",
        mbps(best_cli),
        best_cli.as_secs_f64()
    );
    println!(
        "  snapshot now (file://, verified):    {:>8.1} MB/s ({:.2} s)",
        mbps(best_ours),
        best_ours.as_secs_f64()
    );
    println!(
        "  throughput ratio (target >= 0.95):   {:>8.2}x",
        best_cli.as_secs_f64() / best_ours.as_secs_f64()
    );
    println!("  snapshot peak RSS (target < 64 MiB): {:>8.1} MiB", peak_rss_kib as f64 / 1024.0);

    restore(&policy, &backups, keys, rdb_bytes);
}

/// The restore half: see the module documentation.
fn restore(policy: &Path, backups: &Path, keys: u64, rdb_bytes: u64) {
    let mut command = Command::new(BIN);
    command.args(["snapshot", "now", "--policy"]).arg(policy);
    timed(command);
    let folder = backups.join("bench");
    let rdb = std::fs::read_dir(&folder)
        .expect("policy folder")
        .filter_map(Result::ok)
        .map(|e| e.path())
        .find(|p| p.extension().is_some_and(|e| e == "rdb"))
        .expect("the snapshot's object");
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    let text = std::fs::read_to_string(policy).expect("the bench policy");
    let policy =
        redis_autopilot::policy::load_policy_str("bench.yaml", &text).expect("the bench policy");
    let snapshotter = redis_autopilot::snapshot::Snapshotter::new(&policy).expect("snapshotter");
    let manifest = runtime.block_on(snapshotter.latest()).expect("the snapshot");
    let mut best_disk = Duration::MAX;
    let mut best_seed = Duration::MAX;
    for _ in 0..ROUNDS {
        let dir = tempfile::tempdir().expect("temp dir");
        std::fs::copy(&rdb, dir.path().join("dump.rdb")).expect("copy the RDB");
        let started = Instant::now();
        let loading = Redis::start(&[
            "--dir",
            dir.path().to_str().expect("utf-8"),
            "--dbfilename",
            "dump.rdb",
        ]);
        wait_loaded(&loading, keys);
        best_disk = best_disk.min(started.elapsed());
        drop(loading);

        let target = Redis::start(&[]);
        let member = redis_autopilot::cluster::Member {
            id: target.addr(),
            endpoint: redis_autopilot::sample::redis::Endpoint::parse(&target.addr())
                .expect("endpoint"),
            ordinal: 0,
            gone: None,
        };
        let started = Instant::now();
        let loaded = runtime.block_on(async {
            let payload = snapshotter.payload(&manifest).await.expect("payload");
            let limits = redis_autopilot::snapshot::seed::Limits::default();
            let point = |seed: redis_autopilot::cluster::Member| {
                let port = seed.endpoint.port.to_string();
                let reply = target.cli(&["REPLICAOF", &seed.endpoint.host, &port]);
                async move {
                    assert!(reply.contains("OK"), "REPLICAOF: {reply}");
                    Ok(())
                }
            };
            let quiet = redis_autopilot::snapshot::Quiet;
            snapshotter.load_from_seed(&member, payload, limits, &quiet, point).await
        });
        let loaded = loaded.expect("loaded from the seed");
        best_seed = best_seed.min(started.elapsed());
        assert_eq!(loaded.keys, keys, "every key restored");
    }
    let peak_kib = std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| vm_hwm(&s))
        .unwrap_or_default();
    let mbps = |d: Duration| rdb_bytes as f64 / d.as_secs_f64() / 1e6;
    println!(
        "\nrestore bench, {keys} keys, RDB {:.1} MB, best of {ROUNDS}:",
        rdb_bytes as f64 / 1e6
    );
    println!(
        "  redis-server --dbfilename (disk):    {:>8.1} MB/s ({:.2} s)",
        mbps(best_disk),
        best_disk.as_secs_f64()
    );
    println!(
        "  one-shot master (file://, verified): {:>8.1} MB/s ({:.2} s)",
        mbps(best_seed),
        best_seed.as_secs_f64()
    );
    println!(
        "  throughput ratio (target >= 0.9):    {:>8.2}x",
        best_disk.as_secs_f64() / best_seed.as_secs_f64()
    );
    println!("  restoring process peak RSS (< 64 MiB): {:>6.1} MiB", peak_kib as f64 / 1024.0);
}

/// Waits until `redis` has loaded its RDB: `loading:0` and `keys` keys.
fn wait_loaded(redis: &Redis, keys: u64) {
    let deadline = Instant::now() + Duration::from_secs(600);
    loop {
        let done = redis.info_field("loading").as_deref() == Some("0")
            && redis.cli(&["DBSIZE"]).trim().parse::<u64>().ok() == Some(keys);
        if done {
            return;
        }
        assert!(Instant::now() < deadline, "the RDB did not load within 10 minutes");
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// Runs `command` to completion; returns its wall time and its peak RSS in KiB (`VmHWM`,
/// polled every few milliseconds: the high-water mark only grows, so the last reading is
/// within one poll of the true peak).
fn timed(mut command: Command) -> (Duration, u64) {
    let started = Instant::now();
    let mut child = command.stdout(Stdio::null()).stderr(Stdio::piped()).spawn().expect("spawn");
    let status_file = format!("/proc/{}/status", child.id());
    let mut peak = 0;
    let status = loop {
        if let Some(hwm) = std::fs::read_to_string(&status_file).ok().and_then(|s| vm_hwm(&s)) {
            peak = peak.max(hwm);
        }
        if let Some(status) = child.try_wait().expect("wait") {
            break status;
        }
        std::thread::sleep(Duration::from_millis(2));
    };
    let elapsed = started.elapsed();
    if !status.success() {
        let mut err = String::new();
        if let Some(mut stderr) = child.stderr.take() {
            use std::io::Read as _;
            let _ = stderr.read_to_string(&mut err);
        }
        panic!("{command:?} failed: {err}");
    }
    (elapsed, peak)
}

fn vm_hwm(status: &str) -> Option<u64> {
    status.lines().find_map(|line| {
        line.strip_prefix("VmHWM:")?.trim().strip_suffix("kB")?.trim().parse().ok()
    })
}

/// Size of the one RDB object in a policy folder.
fn stored_size(folder: &Path) -> u64 {
    std::fs::read_dir(folder)
        .expect("policy folder")
        .filter_map(Result::ok)
        .filter(|e| e.file_name().to_string_lossy().ends_with(".rdb"))
        .map(|e| e.metadata().expect("metadata").len())
        .sum()
}
