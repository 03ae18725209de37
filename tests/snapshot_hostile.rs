//! Hostile input to the samplers and the snapshot store: peers that answer with endless
//! replies, stores holding planted manifests, symlinks and oversized objects. Each case is
//! bounded in time and memory; none needs more than a fake peer on 127.0.0.1 or a temp dir.

mod support;

use std::io::{Read as _, Write as _};
use std::net::TcpListener;
use std::time::{Duration, Instant};

use redis_autopilot::observe::Outcome;
use redis_autopilot::sample::redis::{Access, Endpoint, RedisSampler};

/// The process's resident set, in KiB, from `/proc/self/status`.
fn vm_rss_kib() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").expect("procfs");
    let line = status.lines().find(|l| l.starts_with("VmRSS:")).expect("VmRSS line");
    line.split_whitespace().nth(1).and_then(|n| n.parse().ok()).expect("VmRSS value")
}

/// A peer that answers every command `+OK` except `INFO`, which it answers with a bulk
/// string announcing `announced` bytes and then streams zeros until the client hangs up.
/// Returns the port and a handle yielding how many payload bytes it managed to send.
fn endless_info_peer(announced: u64) -> (u16, std::thread::JoinHandle<u64>) {
    let listener = TcpListener::bind("127.0.0.1:0").expect("test fixture");
    let port = listener.local_addr().expect("test fixture").port();
    let handle = std::thread::spawn(move || {
        let (mut socket, _) = listener.accept().expect("test fixture");
        let mut buffer = Vec::new();
        let mut chunk = [0_u8; 4096];
        loop {
            let n = socket.read(&mut chunk).unwrap_or(0);
            if n == 0 {
                return 0;
            }
            buffer.extend_from_slice(&chunk[..n]);
            for name in support::resp::commands(&mut buffer) {
                if name != "INFO" {
                    socket.write_all(b"+OK\r\n").expect("test fixture");
                    continue;
                }
                socket.write_all(format!("${announced}\r\n").as_bytes()).expect("test fixture");
                let zeros = vec![b'0'; 64 * 1024];
                let mut sent = 0_u64;
                while sent < announced {
                    match socket.write(&zeros) {
                        Ok(0) | Err(_) => return sent,
                        Ok(n) => sent += n as u64,
                    }
                }
                return sent;
            }
        }
    });
    (port, handle)
}

#[tokio::test]
async fn an_info_reply_announcing_200_mb_is_a_protocol_error_read_in_bounded_memory() {
    let (port, peer) = endless_info_peer(200 * 1024 * 1024);
    let endpoint = Endpoint::parse(&format!("127.0.0.1:{port}")).expect("test fixture");
    // A generous deadline: the cap, not the clock, must end this sample.
    let sampler = RedisSampler::new(Access::default(), Duration::from_secs(60));
    let before = vm_rss_kib();
    let started = Instant::now();
    let sample = sampler.sample(&[endpoint]).await.remove(0);
    let took = started.elapsed();
    let growth = vm_rss_kib().saturating_sub(before);
    assert!(
        matches!(&sample.outcome, Outcome::Protocol(why) if why.contains("longer than")),
        "{:?}",
        sample.outcome
    );
    assert!(took < Duration::from_secs(30), "took {took:?}");
    // The cap is 1 MiB; allow the runtime and the redis crate their buffers.
    assert!(growth < 32 * 1024, "VmRSS grew by {growth} KiB");
    drop(sampler);
    let sent = peer.join().expect("test fixture");
    eprintln!("peer sent {sent} payload bytes; VmRSS grew {growth} KiB; took {took:?}");
    assert!(sent < 200 * 1024 * 1024, "the client read the whole reply");
}

// ---------------------------------------------------------------------------------------------
// The snapshot store

use redis_autopilot::policy::load_policy_str;
use redis_autopilot::snapshot::Quiet;
use redis_autopilot::snapshot::Snapshotter;
use support::Redis;

/// A snapshotter for `master` writing to `dir` (policy `cache`, keepLast 1).
fn snapshotter(master: &Redis, dir: &std::path::Path, compression: &str) -> Snapshotter {
    let text = format!(
        "apiVersion: autopilot.redis.io/v1alpha1\nkind: RedisPolicy\nmetadata: {{name: cache}}\n\
         spec:\n  target: {{endpoints: [\"{}\"]}}\n  snapshots:\n    schedule: '0 0 3 * * *'\n\
         \x20   destination: 'file://{}'\n    source: master\n    compression: {compression}\n\
         \x20   retention: {{keepLast: 1}}\n",
        master.addr(),
        dir.display()
    );
    Snapshotter::new(&load_policy_str("cache.yaml", &text).expect("policy")).expect("snapshotter")
}

fn endpoint(redis: &Redis) -> Endpoint {
    Endpoint::parse(&redis.addr()).expect("test fixture")
}

/// The manifest JSON of `id` in `folder`, as a mutable value.
fn manifest_json(folder: &std::path::Path, id: &str) -> serde_json::Value {
    serde_json::from_slice(&std::fs::read(folder.join(format!("{id}.json"))).expect("test fixture"))
        .expect("test fixture")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prune_never_deletes_outside_the_store_nor_a_listed_snapshot() {
    let master = Redis::master();
    master.cli(&["SET", "k", "v"]);
    let store = tempfile::tempdir().expect("test fixture");
    let outside = tempfile::tempdir().expect("test fixture");
    let snapshotter = snapshotter(&master, store.path(), "none");
    let old = snapshotter.take(&[endpoint(&master)], &Quiet).await.expect("take").id;
    let newest = snapshotter.take(&[endpoint(&master)], &Quiet).await.expect("take").id;
    let folder = store.path().join("cache");

    // 1. An old manifest whose object goes through a symlinked folder to a file outside.
    std::fs::write(outside.path().join("victim.rdb"), b"precious").expect("test fixture");
    std::os::unix::fs::symlink(outside.path(), folder.join("sub")).expect("test fixture");
    let evil = "20000101T000000.000Z-evil";
    let mut m = manifest_json(&folder, &old);
    m["id"] = evil.into();
    m["object"] = "sub/victim.rdb".into();
    std::fs::write(folder.join(format!("{evil}.json")), m.to_string()).expect("test fixture");
    // 2. An old manifest naming its own object, which is a symlink to a file outside.
    std::fs::write(outside.path().join("victim2.rdb"), b"precious").expect("test fixture");
    let linked = "20000101T000000.001Z-linked";
    std::os::unix::fs::symlink(
        outside.path().join("victim2.rdb"),
        folder.join(format!("{linked}.rdb")),
    )
    .expect("test fixture");
    let mut m = manifest_json(&folder, &old);
    m["id"] = linked.into();
    m["object"] = format!("{linked}.rdb").into();
    std::fs::write(folder.join(format!("{linked}.json")), m.to_string()).expect("test fixture");
    // 3. The newest manifest copied under an old name, as is, and with its id renamed.
    std::fs::copy(
        folder.join(format!("{newest}.json")),
        folder.join("20000101T000000.002Z-copy.json"),
    )
    .expect("test fixture");
    let renamed = "20000101T000000.003Z-renamed";
    let mut m = manifest_json(&folder, &newest);
    m["id"] = renamed.into();
    std::fs::write(folder.join(format!("{renamed}.json")), m.to_string()).expect("test fixture");

    let listing = snapshotter.listing().await.expect("listing");
    let ids: Vec<&str> = listing.manifests.iter().map(|m| m.id.as_str()).collect();
    assert_eq!(ids, [old.as_str(), newest.as_str()]);
    assert_eq!(listing.skipped.len(), 4, "{:?}", listing.skipped);
    let pruned = snapshotter.prune(false).await.expect("prune");
    assert_eq!(pruned.iter().map(|p| p.id.as_str()).collect::<Vec<_>>(), [old.as_str()]);
    assert_eq!(
        std::fs::read(outside.path().join("victim.rdb")).expect("test fixture"),
        b"precious"
    );
    assert_eq!(
        std::fs::read(outside.path().join("victim2.rdb")).expect("test fixture"),
        b"precious"
    );
    assert!(folder.join(format!("{newest}.rdb")).exists(), "the newest object was deleted");
    let left: Vec<String> =
        snapshotter.list().await.expect("test fixture").into_iter().map(|m| m.id).collect();
    assert_eq!(left, std::slice::from_ref(&newest));
    snapshotter.verify(&newest, &Quiet).await.expect("the newest still verifies");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_manifests_are_skipped_and_a_zstd_bomb_stops_at_the_recorded_size() {
    let master = Redis::master();
    master.cli(&["SET", "k", "v"]);
    let store = tempfile::tempdir().expect("test fixture");
    let snapshotter = snapshotter(&master, store.path(), "zstd");
    let id = snapshotter.take(&[endpoint(&master)], &Quiet).await.expect("take").id;
    let folder = store.path().join("cache");

    // Garbage, and a 300 MB manifest (sparse: costs no disk), are skipped with why.
    std::fs::write(folder.join("garbage.json"), b"{not json").expect("test fixture");
    let huge =
        std::fs::File::create(folder.join("20000101T000000.000Z-huge.json")).expect("test fixture");
    huge.set_len(300 * 1024 * 1024).expect("test fixture");
    let before = vm_rss_kib();
    let listing = snapshotter.listing().await.expect("listing despite bad manifests");
    let growth = vm_rss_kib().saturating_sub(before);
    assert_eq!(
        listing.manifests.iter().map(|m| m.id.clone()).collect::<Vec<_>>(),
        std::slice::from_ref(&id)
    );
    let whys: Vec<&str> = listing.skipped.iter().map(|s| s.why.as_str()).collect();
    assert_eq!(whys.len(), 2, "{whys:?}");
    assert!(whys.iter().any(|w| w.contains("more than")), "{whys:?}");
    assert!(growth < 64 * 1024, "reading manifests grew VmRSS by {growth} KiB");
    snapshotter.prune(false).await.expect("prune despite bad manifests");

    // A 64 KB zstd object expanding to 1 GiB, with a manifest that matches it as stored.
    let bomb = {
        let mut encoder = zstd::stream::write::Encoder::new(Vec::new(), 19).expect("test fixture");
        let zeros = vec![0_u8; 1 << 20];
        for _ in 0..1024 {
            encoder.write_all(&zeros).expect("test fixture");
        }
        encoder.finish().expect("test fixture")
    };
    let bombed = "20000101T000000.000Z-bomb";
    std::fs::write(folder.join(format!("{bombed}.rdb.zst")), &bomb).expect("test fixture");
    let mut m = manifest_json(&folder, &id);
    m["id"] = bombed.into();
    m["object"] = format!("{bombed}.rdb.zst").into();
    m["storedBytes"] = (bomb.len() as u64).into();
    use sha2::Digest as _;
    let sha: String = sha2::Sha256::digest(&bomb).iter().map(|b| format!("{b:02x}")).collect();
    m["sha256"] = sha.into();
    std::fs::write(folder.join(format!("{bombed}.json")), m.to_string()).expect("test fixture");
    let restored = store.path().join("restored.rdb");
    let started = Instant::now();
    let error = snapshotter.restore(bombed, &restored, &Quiet).await.expect_err("a bomb");
    let text = redis_autopilot::errors::chain(&error);
    assert!(text.contains("expands past"), "{text}");
    assert!(started.elapsed() < Duration::from_secs(60));
    assert!(!restored.exists());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restore_refuses_to_overwrite_and_never_follows_a_planted_partial_symlink() {
    use std::os::unix::fs::PermissionsExt as _;
    let master = Redis::master();
    master.cli(&["SET", "k", "v"]);
    let store = tempfile::tempdir().expect("test fixture");
    let work = tempfile::tempdir().expect("test fixture");
    let snapshotter = snapshotter(&master, store.path(), "none");
    let id = snapshotter.take(&[endpoint(&master)], &Quiet).await.expect("take").id;

    // An existing file is kept, untouched, unless the caller says to replace it.
    let to = work.path().join("dump.rdb");
    std::fs::write(&to, b"keep me").expect("test fixture");
    let error = snapshotter.restore(&id, &to, &Quiet).await.expect_err("an existing file");
    assert!(error.to_string().contains("--force"), "{error}");
    assert_eq!(std::fs::read(&to).expect("test fixture"), b"keep me");
    snapshotter.restore_with(&id, &to, true, &Quiet).await.expect("overwrite when asked");
    assert!(std::fs::read(&to).expect("test fixture").starts_with(b"REDIS"));
    let mode = std::fs::metadata(&to).expect("test fixture").permissions().mode() & 0o777;
    assert_eq!(mode, 0o600, "a restored RDB is readable by its owner only");

    // A symlink planted at FILE.partial is refused, and its target left alone.
    let victim = work.path().join("victim");
    std::fs::write(&victim, b"precious").expect("test fixture");
    let fresh = work.path().join("fresh.rdb");
    std::os::unix::fs::symlink(&victim, work.path().join("fresh.rdb.partial"))
        .expect("test fixture");
    let error = snapshotter.restore(&id, &fresh, &Quiet).await.expect_err("a planted symlink");
    assert!(redis_autopilot::errors::chain(&error).contains("fresh.rdb.partial"), "{error}");
    assert_eq!(std::fs::read(&victim).expect("test fixture"), b"precious");
    assert!(!fresh.exists());

    // And with nothing in the way, a restore to a new path works.
    let new = work.path().join("new.rdb");
    snapshotter.restore(&id, &new, &Quiet).await.expect("restore to a new file");
    assert!(!work.path().join("new.rdb.partial").exists());
    assert!(std::fs::read(&new).expect("test fixture").starts_with(b"REDIS"));
}

/// A manifest recording a compression this build does not know (`lz9`: a newer writer, a
/// hand edit) is refused by name wherever it is read, never restored as plain bytes, which
/// would hand Redis an RDB it cannot load, nor listed or pruned as a snapshot.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_manifest_with_an_unknown_compression_is_refused_by_name() {
    let master = Redis::master();
    master.cli(&["SET", "k", "v"]);
    let store = tempfile::tempdir().expect("test fixture");
    let snapshotter = snapshotter(&master, store.path(), "none");
    let id = snapshotter.take(&[endpoint(&master)], &Quiet).await.expect("take").id;
    let folder = store.path().join("cache");
    let mut m = manifest_json(&folder, &id);
    m["compression"] = "lz9".into();
    std::fs::write(folder.join(format!("{id}.json")), m.to_string()).expect("test fixture");

    let restored = store.path().join("restored.rdb");
    let error = snapshotter.restore(&id, &restored, &Quiet).await.expect_err("unknown codec");
    let text = redis_autopilot::errors::chain(&error);
    assert!(text.contains("lz9"), "{text}");
    assert!(!restored.exists());
    let error = snapshotter.verify(&id, &Quiet).await.expect_err("unknown codec");
    assert!(redis_autopilot::errors::chain(&error).contains("lz9"));
    let listing = snapshotter.listing().await.expect("listing");
    assert!(listing.manifests.is_empty(), "{:?}", listing.manifests);
    assert!(listing.skipped.iter().any(|s| s.why.contains("lz9")), "{:?}", listing.skipped);
}
