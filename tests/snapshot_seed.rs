//! Restore through the replication protocol, against real `redis-server`s: the one-shot
//! master (`snapshot::seed`) loading a server with every key back (plain and zstd objects),
//! and `snapshot restore --into` on a local fleet run by the daemon: into an empty fleet (every
//! key back on every instance, the others repointed, the epoch advanced), refused over data
//! without `--force`, with `--force` the data replaced first snapshotted and listed, and an RDB
//! newer than the servers load refused naming both versions, whether the manifest says so or
//! only the object's header does.

mod support;

use std::collections::BTreeMap;
use std::net::{Ipv4Addr, SocketAddr};
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use redis_autopilot::policy::load_policy_str;
use redis_autopilot::sample::redis::{Access, Endpoint};
use redis_autopilot::snapshot::seed::{self, Seed};
use redis_autopilot::snapshot::{Quiet, Snapshotter};
use support::failover::{Fleet, POLICY, connect, dbsize, signal, wait_until};
use support::{Redis, load_collections};

const BIN: &str = env!("CARGO_BIN_EXE_redis-autopilot");

/// `count` string keys of `size` bytes LZF cannot shrink much, and the collections.
fn load_data(redis: &Redis, count: usize, size: usize) {
    support::set_strings(redis, "str", count, size);
    let mut con = redis.client().get_connection().expect("connect");
    redis::cmd("SET").arg("ttl:1").arg("v").arg("EX").arg(3600).query::<()>(&mut con).expect("ttl");
    load_collections(redis, []);
}

/// Every key with its type and whole value (sets and hashes sorted), and whether `ttl:1`
/// still has its TTL: a full dump to compare. (`DEBUG DIGEST-VALUE` would do it in one call,
/// but Redis 7 refuses `DEBUG` unless `enable-debug-command` is set, and the fleet's
/// servers are started without it.)
fn digests(port: u16) -> BTreeMap<String, String> {
    let mut con = connect(port, Duration::from_secs(5)).expect("connect");
    let keys: Vec<String> = redis::cmd("KEYS").arg("*").query(&mut con).expect("KEYS");
    let mut out = BTreeMap::new();
    for chunk in keys.chunks(1000) {
        let mut pipe = redis::pipe();
        for key in chunk {
            pipe.cmd("TYPE").arg(key);
        }
        let types: Vec<String> = pipe.query(&mut con).expect("TYPE");
        let mut pipe = redis::pipe();
        for (key, kind) in chunk.iter().zip(&types) {
            match kind.as_str() {
                "string" => pipe.cmd("GET").arg(key),
                "hash" => pipe.cmd("HGETALL").arg(key),
                "list" => pipe.cmd("LRANGE").arg(key).arg(0).arg(-1),
                "set" => pipe.cmd("SMEMBERS").arg(key),
                "zset" => pipe.cmd("ZRANGE").arg(key).arg(0).arg(-1).arg("WITHSCORES"),
                other => panic!("{key}: unexpected type {other}"),
            };
        }
        let values: Vec<Vec<String>> = pipe.query(&mut con).expect("values");
        for ((key, kind), mut value) in chunk.iter().zip(types).zip(values) {
            if kind == "hash" {
                let mut pairs: Vec<String> = value.chunks(2).map(|pair| pair.join("=")).collect();
                pairs.sort();
                value = pairs;
            } else if kind == "set" {
                value.sort();
            }
            out.insert(key.clone(), format!("{kind}:{}", value.join("\u{1}")));
        }
    }
    let ttl: i64 = redis::cmd("TTL").arg("ttl:1").query(&mut con).expect("TTL");
    out.insert("(ttl:1 has a ttl)".into(), (ttl > 0).to_string());
    out
}

/// Snapshots of the fleet's policy, bounded like [`support::seed::limits`] (`deadline` bounds a restore).
fn snapshots_section(dir: &Path, compression: &str) -> String {
    format!(
        "  snapshots:\n    schedule: '0 0 3 * * *'\n    destination: 'file://{}'\n    \
         compression: {compression}\n    source: replicaOrMaster\n    deadline: 2m\n",
        dir.display()
    )
}

/// A policy named like the fleet's, targeting `source` alone: its snapshots land in the
/// folder the fleet restores from.
fn source_policy(source: &Redis, dir: &Path, compression: &str) -> String {
    format!(
        "apiVersion: autopilot.redis.io/v1alpha1\nkind: RedisPolicy\nmetadata: {{name: {POLICY}}}\n\
         spec:\n  target: {{endpoints: [\"{}\"]}}\n{}",
        source.addr(),
        snapshots_section(dir, compression)
    )
}

fn cli(args: &[&str]) -> (bool, String, String) {
    let out = Command::new(BIN).args(args).output().expect("run cli");
    let text = |b: &[u8]| String::from_utf8_lossy(b).into_owned();
    (out.status.success(), text(&out.stdout), text(&out.stderr))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_seed_loads_a_real_redis_server_with_every_key_back() {
    let source = Redis::master();
    load_data(&source, 20_000, 100);
    let expected = digests(source.port);
    // The dump holds the values themselves, not just the key names.
    assert!(expected["str:0"].len() > 100 && expected["hash:42"].contains("a=42"), "{expected:?}");
    for compression in ["none", "zstd"] {
        let dir = tempfile::tempdir().expect("temp dir");
        let policy = load_policy_str("p.yaml", &source_policy(&source, dir.path(), compression))
            .expect("valid policy");
        let snapshotter = Snapshotter::new(&policy).expect("snapshotter");
        let endpoint = Endpoint::parse(&source.addr()).expect("endpoint");
        let manifest = snapshotter.take(&[endpoint], &Quiet).await.expect("snapshot");

        let target = Redis::start(&[]);
        let target_endpoint = Endpoint::parse(&target.addr()).expect("endpoint");
        let access = Access::default();
        let limits = support::seed::limits();
        let server = seed::server_version(&target_endpoint, &access, limits.step).await.unwrap();
        let mut payload = snapshotter.payload(&manifest).await.expect("payload");
        let header = payload.header().await.expect("header");
        assert_eq!(header.version, manifest.rdb_version);
        seed::check_version(header, &server).expect("the server loads its own version");

        let started = Instant::now();
        let seed = Seed::bind(SocketAddr::from((Ipv4Addr::LOCALHOST, 0)), Duration::ZERO)
            .await
            .expect("bind");
        let serving = seed.serve(payload, support::seed::only(&target), limits);
        let port = serving.addr().port().to_string();
        target.cli(&["REPLICAOF", "127.0.0.1", &port]);
        let loaded = seed::wait_loaded(&target_endpoint, &access, &serving, limits, &Quiet)
            .await
            .expect("loaded");
        let took = started.elapsed();
        // Exactly one replica: the listener is closed once it connected.
        assert!(std::net::TcpStream::connect(serving.addr()).is_err(), "a second connection");
        let sent = serving.stop().await.expect("the seed ends cleanly");
        target.cli(&["REPLICAOF", "NO", "ONE"]);
        assert_eq!(target.info_field("role").as_deref(), Some("master"));

        assert_eq!(sent, manifest.raw_bytes);
        assert_eq!(loaded.bytes, manifest.raw_bytes);
        assert_eq!(loaded.keys, expected.len() as u64 - 1);
        let restored = digests(target.port);
        assert!(restored == expected, "{compression}: the restored keys differ");
        eprintln!(
            "seed ({compression}): {} keys, {} RDB bytes ({} stored) loaded in {:.2?}",
            loaded.keys, manifest.raw_bytes, manifest.stored_bytes, took
        );
    }
}

/// A plain snapshot of `source` in `dir`: the snapshotter, its manifest, and its object file.
async fn plain_snapshot(
    source: &Redis,
    dir: &Path,
) -> (Snapshotter, redis_autopilot::snapshot::Manifest, std::path::PathBuf) {
    let policy =
        load_policy_str("p.yaml", &source_policy(source, dir, "none")).expect("valid policy");
    let snapshotter = Snapshotter::new(&policy).expect("snapshotter");
    let endpoint = Endpoint::parse(&source.addr()).expect("endpoint");
    let manifest = snapshotter.take(&[endpoint], &Quiet).await.expect("snapshot");
    let object = dir.join(POLICY).join(&manifest.object);
    (snapshotter, manifest, object)
}

/// Without a known length the seed frames the RDB as `$EOF:<mark>` ... mark, which a Redis
/// that announced `capa eof` reads to the end.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_eof_framing_loads_a_real_redis_server_too() {
    let source = Redis::master();
    load_data(&source, 5_000, 100);
    let expected = digests(source.port);
    let dir = tempfile::tempdir().expect("temp dir");
    let (_, manifest, object) = plain_snapshot(&source, dir.path()).await;
    let rdb = std::fs::read(&object).expect("object");
    let (sender, receiver) = tokio::sync::mpsc::channel(4);
    tokio::spawn(async move {
        for chunk in rdb.chunks(64 * 1024) {
            let _ = sender.send(Ok(bytes::Bytes::copy_from_slice(chunk))).await;
        }
    });
    let target = Redis::start(&[]);
    let (sent, loaded) =
        support::seed::seed_into(&target, seed::Payload::new(None, receiver)).await;
    let loaded = loaded.expect("loaded");
    assert_eq!(sent.expect("the seed ends cleanly"), manifest.raw_bytes);
    assert_eq!(loaded.keys, expected.len() as u64 - 1);
    assert!(digests(target.port) == expected, "the restored keys differ");
}

/// An object replaced by a valid RDB holding other data (its CRC64 recomputed, so Redis's
/// own loader would take it): the sha256 the manifest records does not match, found only at
/// the end, and the seed never completes the transfer: the server loads nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_seed_never_completes_an_rdb_that_does_not_match_its_manifest() {
    let source = Redis::master();
    load_data(&source, 5_000, 100);
    // Short enough that the RDB stores it as written (LZF only tries values over 20 bytes).
    source.cli(&["SET", "marker", "before"]);
    let dir = tempfile::tempdir().expect("temp dir");
    let (snapshotter, manifest, object) = plain_snapshot(&source, dir.path()).await;
    let mut rdb = std::fs::read(&object).expect("object");
    let at = rdb.windows(13).position(|w| w == b"marker\x06before").expect("the value") + 7;
    rdb[at] = b'B';
    let body = rdb.len() - 8;
    let crc = crc::Crc::<u64>::new(&crc::CRC_64_REDIS).checksum(&rdb[..body]);
    rdb[body..].copy_from_slice(&crc.to_le_bytes());
    std::fs::write(&object, &rdb).expect("replace the object");

    let target = Redis::start(&[]);
    let payload = snapshotter.payload(&manifest).await.expect("payload");
    let (sent, loaded) = support::seed::seed_into(&target, payload).await;
    assert!(loaded.is_err(), "loaded a mismatching RDB: {loaded:?}");
    let error = sent.expect_err("the seed fails");
    let text = redis_autopilot::errors::chain(&error);
    assert!(text.contains("sha256"), "{text}");
    assert_eq!(target.cli(&["DBSIZE"]).trim(), "0", "the server loaded the mismatching RDB");
}

/// The manifest of snapshot `id` in `folder`, as JSON.
fn read_manifest(folder: &Path, id: &str) -> serde_json::Value {
    let text = std::fs::read_to_string(folder.join(format!("{id}.json"))).expect("manifest");
    serde_json::from_str(&text).expect("manifest JSON")
}

/// Writes a copy of the plain snapshot `id` whose RDB header says `REDIS00<digits>`, checksum
/// and sha256 recomputed so it verifies, with `manifest_version` as the manifest's
/// `rdbVersion`. Returns the new id.
fn newer_copy(folder: &Path, id: &str, digits: &[u8; 2], manifest_version: u16) -> String {
    let mut manifest = read_manifest(folder, id);
    let object = manifest["object"].as_str().expect("object").to_owned();
    let mut rdb = std::fs::read(folder.join(&object)).expect("object");
    assert_eq!(&rdb[..7], b"REDIS00", "a plain Redis RDB");
    rdb[7..9].copy_from_slice(digits);
    let body = rdb.len() - 8;
    let crc = crc::Crc::<u64>::new(&crc::CRC_64_REDIS).checksum(&rdb[..body]);
    rdb[body..].copy_from_slice(&crc.to_le_bytes());
    let sha = {
        use sha2::Digest as _;
        sha2::Sha256::digest(&rdb).iter().map(|b| format!("{b:02x}")).collect::<String>()
    };
    let at = chrono::Utc::now() + chrono::Duration::seconds(i64::from(manifest_version));
    let new_id = redis_autopilot::snapshot::manifest::snapshot_id(at, "patched");
    let new_object = format!("{new_id}.rdb");
    std::fs::write(folder.join(&new_object), &rdb).expect("write object");
    manifest["id"] = new_id.clone().into();
    manifest["object"] = new_object.into();
    manifest["rdbVersion"] = manifest_version.into();
    manifest["crc64"] = format!("{crc:016x}").into();
    manifest["sha256"] = sha.into();
    std::fs::write(folder.join(format!("{new_id}.json")), manifest.to_string())
        .expect("write manifest");
    new_id
}

#[test]
fn restore_into_a_local_fleet_under_its_daemon() {
    let backups = tempfile::tempdir().expect("temp dir");
    let (id, expected) = source_snapshot(backups.path(), 20_000, 100);

    let fleet = Fleet::start(&snapshots_section(backups.path(), "none"));
    let policy = fleet.policy.to_str().expect("utf-8").to_owned();
    let (master, epoch) = fleet.record().expect("a recorded master");

    // Into an empty fleet, while its daemon runs.
    let started = Instant::now();
    let (ok, out, err) = cli(&["snapshot", "restore", "--policy", &policy, "--latest", "--into"]);
    let took = started.elapsed();
    assert!(ok, "restore --into: {out}\n{err}\n{}", fleet.log());
    // The manifest recorded the source's key count at snapshot time: reported beside the load.
    let keys = expected.len() - 1;
    assert!(
        out.contains(&id) && out.contains(&format!("{keys} keys loaded ({keys} expected)")),
        "{out}"
    );
    let (restored, restored_epoch) = fleet.record().expect("a recorded master");
    assert_eq!(restored_epoch, epoch + 1, "{out}");
    assert_ne!(restored, master, "a replica is loaded, then promoted");
    assert!(out.contains(&format!("127.0.0.1:{restored}")), "{out}");
    assert_eq!(fleet.wait_healthy(Duration::from_secs(60)), restored);
    fleet.wait_every_instance_holds(expected.len() as u64 - 1, Duration::from_secs(30));
    for port in fleet.ports() {
        assert!(digests(port) == expected, "{port}: the keys differ from the source");
    }
    eprintln!("restore --into: {} keys into {restored} in {took:.2?}: {out}", expected.len() - 1);

    // It acted under a claim on the record, like a failover, and released it.
    let state = state(&fleet);
    let claim = &state["claim"];
    assert!(claim["by"].as_str().is_some_and(|by| by.starts_with("cli:")), "{state}");
    let until: chrono::DateTime<chrono::Utc> =
        serde_json::from_value(claim["until"].clone()).expect("until");
    assert!(until <= chrono::Utc::now(), "the claim was released: {state}");

    // Another actor holds the record (a failover in progress): refused, nothing changed.
    let mut busy = state.clone();
    busy["claim"] = serde_json::json!({
        "from": null, "by": "daemon-elsewhere",
        "until": chrono::Utc::now() + chrono::Duration::seconds(120),
    });
    write_state(&fleet, &busy);
    let full_syncs = info(restored, "sync_full");
    let (ok, out, err) =
        cli(&["snapshot", "restore", "--policy", &policy, &id, "--into", "--force"]);
    assert!(!ok, "restore under another actor's claim succeeded: {out}");
    assert!(err.contains("refusing to change roles") && err.contains("daemon-elsewhere"), "{err}");
    assert_eq!(fleet.record(), Some((restored, restored_epoch)));
    // No instance was touched: none was loaded and pointed back (a full resync).
    assert_eq!(info(restored, "sync_full"), full_syncs, "an instance was loaded: {err}");
    for port in fleet.ports().into_iter().filter(|&p| p != restored) {
        assert_eq!(info(port, "master_port"), Some(restored.to_string()));
    }
    write_state(&fleet, &state);

    // Over data: refused without --force, nothing changed.
    let (ok, out, err) = cli(&["snapshot", "restore", "--policy", &policy, &id, "--into"]);
    assert!(!ok, "restore over data succeeded: {out}");
    assert!(err.contains("refusing to restore over data") && err.contains("--force"), "{err}");
    assert_eq!(fleet.record(), Some((restored, restored_epoch)));

    // With --force: the data replaced is snapshotted first, and listed.
    let (ok, out, err) =
        cli(&["snapshot", "restore", "--policy", &policy, &id, "--into", "--force"]);
    assert!(ok, "restore --force: {out}\n{err}\n{}", fleet.log());
    let pre = out
        .lines()
        .find_map(|l| l.strip_prefix("the data it replaced is snapshot "))
        .unwrap_or_else(|| panic!("no pre-restore snapshot named: {out}"))
        .trim()
        .to_owned();
    let (ok, listed, err) = cli(&["snapshot", "list", "--policy", &policy, "--output", "json"]);
    assert!(ok, "{err}");
    let listed: serde_json::Value = serde_json::from_str(&listed).expect("list JSON");
    let ids: Vec<&str> =
        listed.as_array().unwrap().iter().filter_map(|m| m["id"].as_str()).collect();
    assert!(ids.contains(&pre.as_str()) && ids.contains(&id.as_str()), "{ids:?}");
    let (forced, forced_epoch) = fleet.record().expect("record");
    assert_eq!(forced_epoch, restored_epoch + 1);
    assert_eq!(fleet.wait_healthy(Duration::from_secs(60)), forced);
    assert!(digests(forced) == expected);

    // An RDB newer than the servers load (Redis 7.0 loads up to version 10): refused naming
    // both, whether the manifest says so or only the object's header does.
    let folder = backups.path().join(POLICY);
    let honest = newer_copy(&folder, &id, b"12", 12);
    let lying = newer_copy(&folder, &id, b"12", 10);
    for newer in [honest, lying] {
        let (ok, out, err) =
            cli(&["snapshot", "restore", "--policy", &policy, &newer, "--into", "--force"]);
        assert!(!ok, "a newer RDB was restored: {out}");
        assert!(err.contains("REDIS0012") && err.contains("Redis 7."), "{err}");
        assert!(err.contains("up to 10"), "{err}");
        assert_eq!(fleet.record(), Some((forced, forced_epoch)), "{err}");
    }
    assert!(digests(forced) == expected);
}

/// A snapshot of a source holding `count` strings of `size` bytes (and the collections),
/// taken under the fleet's policy name into `backups`: its id, and the source's keys.
fn source_snapshot(
    backups: &Path,
    count: usize,
    size: usize,
) -> (String, BTreeMap<String, String>) {
    let source = Redis::master();
    load_data(&source, count, size);
    let source_file = backups.join("source.yaml");
    std::fs::write(&source_file, source_policy(&source, backups, "none")).expect("policy");
    let (ok, out, err) = cli(&[
        "snapshot",
        "now",
        "--policy",
        source_file.to_str().expect("utf-8"),
        "--output",
        "json",
    ]);
    assert!(ok, "snapshot now: {err}");
    let taken: serde_json::Value = serde_json::from_str(&out).expect("manifest JSON");
    (taken[0]["id"].as_str().expect("id").to_owned(), digests(source.port))
}

/// An instance that is down cannot say whether it holds data: `restore --into` refuses to
/// replace it without `--force`, as it refuses one holding keys, and changes nothing. Skipped
/// as not there, its data would be resynced away from the restored master when it came back.
#[test]
fn restore_into_refuses_while_an_instance_cannot_be_asked() {
    let backups = tempfile::tempdir().expect("temp dir");
    source_snapshot(backups.path(), 100, 10);

    let mut fleet = Fleet::start(&snapshots_section(backups.path(), "none"));
    let policy = fleet.policy.to_str().expect("utf-8").to_owned();
    let record = fleet.record().expect("a recorded master");
    let down = fleet.ports().into_iter().find(|&p| p != record.0).expect("a replica");
    // No daemon to restart it: the instance stays down.
    fleet.kill_daemon();
    signal(fleet.pid(down), "KILL");
    wait_until(Duration::from_secs(10), "the killed instance's port closed", String::new, || {
        connect(down, Duration::from_millis(100)).is_none().then_some(())
    });
    let (ok, out, err) = cli(&["snapshot", "restore", "--policy", &policy, "--latest", "--into"]);
    assert!(!ok, "restored over an instance that could not be asked: {out}");
    assert!(err.contains("refusing to restore over data") && err.contains("--force"), "{err}");
    assert!(err.contains(&format!("127.0.0.1:{down} cannot be asked")), "{err}");
    assert_eq!(fleet.record(), Some(record), "{err}");
}

/// A fleet of one loads its master: pointed at the seed, it is a replica until the load ends.
/// A load that fails (an object corrupted in the store) makes it the master again, with no
/// daemon to put it back; it stayed a replica of a seed long gone, taking no write.
#[test]
fn a_failed_restore_into_a_fleet_of_one_leaves_its_master_serving() {
    let backups = tempfile::tempdir().expect("temp dir");
    let (id, _) = source_snapshot(backups.path(), 2_000, 100);
    let id = id.as_str();
    // The RDB's checksum flipped in the store: the header check passes, and the seed finds
    // the object does not match its manifest only at its end, so it never sends it whole.
    // (Bytes flipped inside the data would reach the replica first, and Redis ends its own
    // process on an RDB it cannot parse while loading it as it arrives.)
    let folder = backups.path().join(POLICY);
    let object = folder.join(read_manifest(&folder, id)["object"].as_str().expect("object"));
    let mut rdb = std::fs::read(&object).expect("object");
    let checksum = rdb.len() - 8;
    for byte in &mut rdb[checksum..] {
        *byte ^= 0x5a;
    }
    std::fs::write(&object, rdb).expect("corrupt the object");

    let mut fleet = Fleet::start_with(1, &snapshots_section(backups.path(), "none"));
    let policy = fleet.policy.to_str().expect("utf-8").to_owned();
    let record = fleet.record().expect("a recorded master");
    fleet.kill_daemon();
    let (ok, out, err) = cli(&["snapshot", "restore", "--policy", &policy, id, "--into"]);
    assert!(!ok, "a corrupted snapshot was restored: {out}");
    assert_eq!(fleet.record(), Some(record), "{err}");
    wait_until(
        Duration::from_secs(10),
        "the master serving again",
        || err.clone(),
        || (info(record.0, "role")? == "master").then_some(()),
    );
    // Serving what it held before the restore: nothing, in this new fleet.
    assert_eq!(dbsize(record.0), Some(0), "{err}");
}

fn state(fleet: &Fleet) -> serde_json::Value {
    let text = std::fs::read_to_string(fleet.data.join("state.json")).expect("state.json");
    serde_json::from_str(&text).expect("state JSON")
}

/// Replaces `state.json` atomically, as the fleet does.
fn write_state(fleet: &Fleet, state: &serde_json::Value) {
    let temporary = fleet.data.join("state.json.test");
    std::fs::write(&temporary, state.to_string()).expect("write state");
    std::fs::rename(&temporary, fleet.data.join("state.json")).expect("replace state");
}

/// One `INFO` field of the Redis on `port`.
fn info(port: u16, field: &str) -> Option<String> {
    let mut con = connect(port, Duration::from_secs(2))?;
    let text: String = redis::cmd("INFO").arg("all").query(&mut con).ok()?;
    text.lines().find_map(|l| l.strip_prefix(field)?.strip_prefix(':').map(|v| v.trim().to_owned()))
}

/// `spec.snapshots.bootstrap: latest`: a new fleet whose destination holds no snapshot starts
/// empty; once one exists, a brand-new fleet of the same policy (a cache recreated elsewhere)
/// has its first master loaded from it *before* it is recorded: epoch 1, every key back on
/// every instance, and never an empty master that clients could have written to.
#[test]
fn a_new_fleet_is_seeded_from_the_latest_snapshot_before_its_first_master_is_recorded() {
    let backups = tempfile::tempdir().expect("temp dir");
    bootstrap_round_trip(&snapshots_section(backups.path(), "zstd"));
}

/// The same from S3 (moto, with its credential checks on), compressed and encrypted: the
/// bootstrap reads the object through the one download path (sha256, age, zstd) with the
/// policy's identity.
#[test]
fn a_new_fleet_is_seeded_from_an_encrypted_compressed_snapshot_in_s3() {
    let dir = tempfile::tempdir().expect("temp dir");
    let keys = support::crypt::keys(dir.path());
    let (moto, key) = support::MotoServer::start_with_auth(&["backups"]);
    std::fs::write(dir.path().join("key"), format!("{}\n", key.id)).expect("key file");
    std::fs::write(dir.path().join("secret"), format!("{}\n", key.secret)).expect("secret file");
    let section = format!(
        "  snapshots:\n    schedule: '0 0 3 * * *'\n    destination: 's3://backups/redis'\n    \
         endpoint: '{endpoint}'\n    region: us-east-1\n    \
         credentials: {{accessKeyIdFile: '{dir}/key', secretAccessKeyFile: '{dir}/secret'}}\n    \
         compression: zstd\n    source: replicaOrMaster\n    deadline: 2m\n    encryption:\n      \
         recipientsFile: '{recipients}'\n      identityFile: '{identity}'\n",
        endpoint = moto.endpoint(),
        dir = dir.path().display(),
        recipients = keys.recipients.display(),
        identity = keys.identity.display(),
    );
    let taken = bootstrap_round_trip(&section);
    assert_eq!(taken["encryption"], "age", "{taken}");
    assert_eq!(taken["compression"], "zstd", "{taken}");
    assert_eq!(moto.open_uploads("backups"), 0);
}

/// Starts a fleet of `section`'s policy with `bootstrap: latest` on an empty destination
/// (it starts empty), writes to it and takes a snapshot, then starts a brand-new fleet of
/// the same policy and checks it was seeded from that snapshot before its first record.
/// Returns the snapshot's manifest.
fn bootstrap_round_trip(section: &str) -> serde_json::Value {
    let section = format!("{section}    bootstrap: latest\n");
    let first = Fleet::start(&section);
    let (master, epoch) = first.record().expect("a recorded master");
    assert_eq!(epoch, 1);
    assert!(first.log().contains("no snapshot to bootstrap from"), "{}", first.log());
    assert_eq!(dbsize(master), Some(0));
    {
        let mut con = connect(master, Duration::from_secs(5)).expect("connect");
        let mut pipe = redis::pipe();
        for i in 0..5_000 {
            pipe.cmd("SET").arg(format!("key:{i}")).arg(format!("value {i}")).ignore();
        }
        pipe.cmd("RPUSH").arg("list").arg(&["a", "b", "c"]).ignore();
        pipe.query::<()>(&mut con).expect("write");
    }
    let expected = digests(master);
    let policy = first.policy.to_str().expect("utf-8").to_owned();
    let (ok, out, err) = cli(&["snapshot", "now", "--policy", &policy, "--output", "json"]);
    assert!(ok, "snapshot now: {err}");
    let taken: serde_json::Value = serde_json::from_str(&out).expect("manifest JSON");
    let id = taken[0]["id"].as_str().expect("id").to_owned();
    drop(first);

    // The cache recreated: new instances, no record, the same policy and destination.
    let second = Fleet::start(&section);
    let log = second.log();
    let (master, epoch) = second.record().expect("a recorded master");
    assert_eq!(epoch, 1, "seeded before the first record, not restored over one: {log}");
    assert!(log.contains("first master seeded from a snapshot") && log.contains(&id), "{log}");
    second.wait_every_instance_holds(expected.len() as u64 - 1, Duration::from_secs(30));
    for port in second.ports() {
        assert!(digests(port) == expected, "{port}: the keys differ from the snapshot");
    }
    assert_eq!(second.wait_healthy(Duration::from_secs(30)), master);
    taken[0].clone()
}
