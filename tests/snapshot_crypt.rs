//! Encryption at rest (`spec.snapshots.encryption`, age), against real `redis-server`s and a
//! `file://` destination: an encrypted snapshot is stored as age ciphertext and its manifest
//! records `encryption: age` with the recipients; it verifies, restores to a file, seeds a
//! server and restores `--into` a local fleet with every key back when the identity matches;
//! a wrong or missing identity fails clearly (naming the recipients, never a key) before
//! anything is changed; a truncated ciphertext whose manifest was patched to match fails at
//! decryption and loads nothing; a manifest from before encryption restores as plain.

mod support;

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use redis_autopilot::policy::load_policy_str;
use redis_autopilot::sample::redis::Endpoint;
use redis_autopilot::snapshot::manifest::Cipher;
use redis_autopilot::snapshot::{Manifest, Quiet, SnapshotError, Snapshotter};
use support::Redis;
use support::crypt::{Keys, identity_file, key_pair, keys};
use support::failover::{Fleet, POLICY, connect, dbsize};

const BIN: &str = env!("CARGO_BIN_EXE_redis-autopilot");

fn snapshots_section(dir: &Path, compression: &str, keys: Option<&Keys>) -> String {
    let mut text = format!(
        "  snapshots:\n    schedule: '0 0 3 * * *'\n    destination: 'file://{}'\n    \
         compression: {compression}\n    source: replicaOrMaster\n    deadline: 2m\n",
        dir.display()
    );
    if let Some(keys) = keys {
        text.push_str(&format!(
            "    encryption:\n      recipientsFile: '{}'\n      identityFile: '{}'\n",
            keys.recipients.display(),
            keys.identity.display()
        ));
    }
    text
}

fn source_policy(source: &Redis, dir: &Path, compression: &str, keys: Option<&Keys>) -> String {
    format!(
        "apiVersion: autopilot.redis.io/v1alpha1\nkind: RedisPolicy\nmetadata: {{name: {POLICY}}}\n\
         spec:\n  target: {{endpoints: [\"{}\"]}}\n{}",
        source.addr(),
        snapshots_section(dir, compression, keys)
    )
}

fn snapshotter(source: &Redis, dir: &Path, compression: &str, keys: Option<&Keys>) -> Snapshotter {
    let text = source_policy(source, dir, compression, keys);
    let policy = load_policy_str("p.yaml", &text).expect("valid policy");
    Snapshotter::new(&policy).expect("snapshotter")
}

async fn take(snapshotter: &Snapshotter, source: &Redis) -> Manifest {
    let endpoint = Endpoint::parse(&source.addr()).expect("endpoint");
    snapshotter.take(&[endpoint], &Quiet).await.expect("snapshot")
}

fn load_data(redis: &Redis, count: usize) {
    support::set_strings(redis, "str", count, 100);
    redis.cli(&["SET", "marker", "plaintext-marker"]);
}

/// Every key with its value (the data here is strings only).
fn dump(port: u16) -> BTreeMap<String, String> {
    let mut con = connect(port, Duration::from_secs(5)).expect("connect");
    let keys: Vec<String> = redis::cmd("KEYS").arg("*").query(&mut con).expect("KEYS");
    let mut out = BTreeMap::new();
    for chunk in keys.chunks(1000) {
        let values: Vec<String> = redis::cmd("MGET").arg(chunk).query(&mut con).expect("MGET");
        out.extend(chunk.iter().cloned().zip(values));
    }
    out
}

fn cli(args: &[&str]) -> (bool, String, String) {
    let out = Command::new(BIN).args(args).output().expect("run cli");
    let text = |b: &[u8]| String::from_utf8_lossy(b).into_owned();
    (out.status.success(), text(&out.stdout), text(&out.stderr))
}

fn sha256_hex(bytes: &[u8]) -> String {
    use sha2::Digest as _;
    sha2::Sha256::digest(bytes).iter().map(|b| format!("{b:02x}")).collect()
}

/// The full error chain, and its Debug: both must be free of key material.
fn shown(error: &SnapshotError) -> String {
    format!("{} {error:?}", redis_autopilot::errors::chain(error))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_encrypted_snapshot_is_age_ciphertext_and_reads_back_with_its_identity() {
    let dir = tempfile::tempdir().expect("temp dir");
    let keys = keys(dir.path());
    let backups = dir.path().join("backups");
    let source = Redis::master();
    load_data(&source, 5_000);
    let expected = dump(source.port);
    let snapshotter = snapshotter(&source, &backups, "zstd", Some(&keys));
    let manifest = take(&snapshotter, &source).await;

    assert_eq!(manifest.encryption, Cipher::Age);
    assert_eq!(manifest.recipients, vec![keys.public.clone()]);
    assert!(manifest.object.ends_with(".rdb.zst.age"), "{}", manifest.object);
    let folder = backups.join(POLICY);
    let object = std::fs::read(folder.join(&manifest.object)).expect("object");
    assert!(object.starts_with(b"age-encryption.org/v1\n"), "not an age file");
    assert_eq!(object.len() as u64, manifest.stored_bytes);
    assert_eq!(sha256_hex(&object), manifest.sha256, "the sha256 is of the object as stored");
    // Neither an RDB nor zstd, and the data is not readable in it.
    assert!(!object.windows(5).any(|w| w == b"REDIS"));
    assert!(!object.starts_with(&[0x28, 0xb5, 0x2f, 0xfd]));
    assert!(!object.windows(16).any(|w| w == b"plaintext-marker"));
    let json = std::fs::read_to_string(folder.join(format!("{}.json", manifest.id))).unwrap();
    assert!(json.contains("\"encryption\": \"age\"") && json.contains(&keys.public), "{json}");
    assert!(!json.contains(&keys.secret));

    snapshotter.verify(&manifest.id, &Quiet).await.expect("verifies with the identity");

    // Restore to a file: the plain RDB the source sent.
    let file = dir.path().join("restored.rdb");
    snapshotter.restore(&manifest.id, &file, &Quiet).await.expect("restore");
    let rdb = std::fs::read(&file).expect("restored file");
    assert!(rdb.starts_with(b"REDIS"));
    assert_eq!(rdb.len() as u64, manifest.raw_bytes);

    // Through the seed: every key back.
    let target = Redis::start(&[]);
    let (sent, loaded) =
        support::seed::seed_into(&target, snapshotter.payload(&manifest).await.unwrap()).await;
    assert_eq!(sent.expect("the seed ends cleanly"), manifest.raw_bytes);
    assert_eq!(loaded.expect("loaded").keys, expected.len() as u64);
    assert!(dump(target.port) == expected, "the restored keys differ");

    // A policy that can encrypt but names no identity cannot read it back, and says so.
    let keys_no_identity = Keys { identity: dir.path().join("unused"), ..keys };
    let text = source_policy(&source, &backups, "zstd", Some(&keys_no_identity))
        .replace(&format!("      identityFile: '{}'\n", keys_no_identity.identity.display()), "");
    let policy = load_policy_str("p.yaml", &text).expect("valid policy");
    let encrypt_only = Snapshotter::new(&policy).expect("snapshotter");
    let error = encrypt_only.verify(&manifest.id, &Quiet).await.expect_err("no identity");
    let text = shown(&error);
    assert!(matches!(error, SnapshotError::NoIdentity { .. }), "{text}");
    assert!(
        text.contains("names no identity") && text.contains(&keys_no_identity.public),
        "{text}"
    );
}

/// The wrong key, then no key file: each fails naming what the snapshot needs and where the
/// identity was looked for, shows no secret, and writes no file.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_or_missing_identity_fails_clearly_without_showing_a_key() {
    let dir = tempfile::tempdir().expect("temp dir");
    let keys = keys(dir.path());
    let backups = dir.path().join("backups");
    let source = Redis::master();
    load_data(&source, 500);
    let snapshotter = snapshotter(&source, &backups, "none", Some(&keys));
    let manifest = take(&snapshotter, &source).await;

    let (other_secret, other_public) = key_pair();
    std::fs::write(&keys.identity, identity_file(&other_secret, &other_public)).unwrap();
    let error = snapshotter.verify(&manifest.id, &Quiet).await.expect_err("wrong identity");
    let text = shown(&error);
    assert_eq!(error.category(), "no_identity", "{text}");
    assert!(text.contains("holds none of them"), "{text}");
    assert!(text.contains(&keys.public) && text.contains(&other_public), "{text}");
    assert!(text.contains(&keys.identity.display().to_string()), "{text}");
    assert!(!text.contains(&keys.secret) && !text.contains(&other_secret), "{text}");
    let file = dir.path().join("restored.rdb");
    let error = snapshotter.restore(&manifest.id, &file, &Quiet).await.expect_err("wrong");
    assert_eq!(error.category(), "no_identity");
    assert!(!file.exists() && !dir.path().join("restored.rdb.partial").exists());
    assert!(snapshotter.payload(&manifest).await.is_err(), "no payload without the identity");

    std::fs::remove_file(&keys.identity).unwrap();
    let error = snapshotter.verify(&manifest.id, &Quiet).await.expect_err("no identity file");
    let text = shown(&error);
    assert_eq!(error.category(), "identity", "{text}");
    assert!(text.contains("cannot read the identity"), "{text}");
    assert!(text.contains(&keys.identity.display().to_string()), "{text}");
    assert!(!file.exists());

    // The CLI says the same, and prints no key.
    std::fs::write(&keys.identity, identity_file(&other_secret, &other_public)).unwrap();
    let policy = dir.path().join("policy.yaml");
    std::fs::write(&policy, source_policy(&source, &backups, "none", Some(&keys))).unwrap();
    let policy = policy.to_str().unwrap();
    let (ok, out, err) =
        cli(&["snapshot", "restore", "--policy", policy, &manifest.id, "--to", "x.rdb"]);
    assert!(!ok, "{out}");
    assert!(err.contains("holds none of them") && err.contains(&keys.public), "{err}");
    assert!(!err.contains(&other_secret) && !out.contains(&other_secret), "{err}");

    // Without its recipients file a snapshot fails before any Redis forks, and none is listed.
    std::fs::remove_file(&keys.recipients).unwrap();
    let endpoint = Endpoint::parse(&source.addr()).expect("endpoint");
    let forks = source.info_field("total_forks");
    let error = snapshotter.take(&[endpoint], &Quiet).await.expect_err("no recipients");
    let text = shown(&error);
    assert_eq!(error.category(), "recipients", "{text}");
    assert!(text.contains(&keys.recipients.display().to_string()), "{text}");
    assert_eq!(source.info_field("total_forks"), forks, "Redis forked for a doomed snapshot");
    assert_eq!(snapshotter.list().await.expect("list").len(), 1);
}

/// The object cut short and its manifest patched to match (size and sha256), so only
/// decryption can tell: verify, restore and the seed all fail, and the server loads nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_truncated_ciphertext_fails_and_nothing_is_loaded() {
    let dir = tempfile::tempdir().expect("temp dir");
    let keys = keys(dir.path());
    let backups = dir.path().join("backups");
    let source = Redis::master();
    load_data(&source, 5_000);
    let snapshotter = snapshotter(&source, &backups, "none", Some(&keys));
    let manifest = take(&snapshotter, &source).await;
    let folder = backups.join(POLICY);
    let mut object = std::fs::read(folder.join(&manifest.object)).expect("object");
    assert!(object.len() > 200_000, "several 64 KiB chunks: {}", object.len());
    object.truncate(object.len() - 1000);
    std::fs::write(folder.join(&manifest.object), &object).unwrap();
    let manifest_file = folder.join(format!("{}.json", manifest.id));
    let mut json: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&manifest_file).unwrap()).unwrap();
    json["storedBytes"] = object.len().into();
    json["sha256"] = sha256_hex(&object).into();
    std::fs::write(&manifest_file, json.to_string()).unwrap();
    let manifest: Manifest = serde_json::from_value(json).unwrap();

    let error = snapshotter.verify(&manifest.id, &Quiet).await.expect_err("truncated");
    let text = shown(&error);
    assert_eq!(error.category(), "decrypt", "{text}");
    assert!(text.contains(&manifest.id), "{text}");
    assert!(!text.contains(&keys.secret), "{text}");
    let file = dir.path().join("restored.rdb");
    let error = snapshotter.restore(&manifest.id, &file, &Quiet).await.expect_err("truncated");
    assert_eq!(error.category(), "decrypt");
    assert!(!file.exists(), "a partial RDB was left");

    let target = Redis::start(&[]);
    let (sent, loaded) =
        support::seed::seed_into(&target, snapshotter.payload(&manifest).await.unwrap()).await;
    assert!(loaded.is_err(), "loaded a truncated snapshot: {loaded:?}");
    let error = sent.expect_err("the seed fails");
    assert!(redis_autopilot::errors::chain(&error).contains("decrypt"), "{error}");
    assert_eq!(target.cli(&["DBSIZE"]).trim(), "0", "the server loaded part of it");
}

/// A manifest written before encryption existed (no `encryption` field) lists, verifies and
/// restores as plain, under a policy that now encrypts.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_old_manifest_without_the_field_restores_as_plain() {
    let dir = tempfile::tempdir().expect("temp dir");
    let keys = keys(dir.path());
    let backups = dir.path().join("backups");
    let source = Redis::master();
    load_data(&source, 2_000);
    let expected = dump(source.port);
    let plain = snapshotter(&source, &backups, "zstd", None);
    let manifest = take(&plain, &source).await;
    let manifest_file = backups.join(POLICY).join(format!("{}.json", manifest.id));
    let mut json: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&manifest_file).unwrap()).unwrap();
    let fields = json.as_object_mut().unwrap();
    assert_eq!(fields.remove("encryption"), Some("none".into()));
    assert!(!fields.contains_key("recipients"));
    std::fs::write(&manifest_file, json.to_string()).unwrap();

    let encrypting = snapshotter(&source, &backups, "zstd", Some(&keys));
    let listed = encrypting.list().await.expect("list");
    assert!(listed.iter().any(|m| m.id == manifest.id && m.encryption == Cipher::None));
    encrypting.verify(&manifest.id, &Quiet).await.expect("verifies as plain");
    let file = dir.path().join("restored.rdb");
    encrypting.restore(&manifest.id, &file, &Quiet).await.expect("restores as plain");
    assert_eq!(std::fs::metadata(&file).unwrap().len(), manifest.raw_bytes);
    let target = Redis::start(&[]);
    let (sent, loaded) =
        support::seed::seed_into(&target, encrypting.payload(&manifest).await.unwrap()).await;
    sent.expect("sent");
    loaded.expect("loaded");
    assert!(dump(target.port) == expected);
}

/// `restore --into` a local fleet run by its daemon: with the wrong identity it is refused
/// before anything changes (no instance loaded, the record as it was); with the right one
/// every instance ends up with every key.
#[test]
fn restore_into_a_local_fleet_decrypts_and_a_wrong_identity_changes_nothing() {
    let dir = tempfile::tempdir().expect("temp dir");
    let keys = keys(dir.path());
    let backups = dir.path().join("backups");
    let source = Redis::master();
    load_data(&source, 10_000);
    let expected = dump(source.port);
    let source_file = dir.path().join("source.yaml");
    std::fs::write(&source_file, source_policy(&source, &backups, "zstd", Some(&keys))).unwrap();
    let (ok, out, err) =
        cli(&["snapshot", "now", "--policy", source_file.to_str().unwrap(), "--output", "json"]);
    assert!(ok, "snapshot now: {err}");
    let taken: serde_json::Value = serde_json::from_str(&out).expect("manifest JSON");
    assert_eq!(taken[0]["encryption"], "age", "{out}");

    let fleet = Fleet::start(&snapshots_section(&backups, "zstd", Some(&keys)));
    let policy = fleet.policy.to_str().expect("utf-8").to_owned();
    let before = fleet.record().expect("a recorded master");

    let (other_secret, other_public) = key_pair();
    std::fs::write(&keys.identity, identity_file(&other_secret, &other_public)).unwrap();
    let (ok, out, err) = cli(&["snapshot", "restore", "--policy", &policy, "--latest", "--into"]);
    assert!(!ok, "restored with the wrong identity: {out}");
    assert!(err.contains("holds none of them") && err.contains(&keys.public), "{err}");
    assert_eq!(fleet.record(), Some(before), "the record changed");
    for port in fleet.ports() {
        assert_eq!(dbsize(port), Some(0), "{port} was loaded");
    }

    std::fs::write(&keys.identity, identity_file(&keys.secret, &keys.public)).unwrap();
    let (ok, out, err) = cli(&["snapshot", "restore", "--policy", &policy, "--latest", "--into"]);
    assert!(ok, "restore --into: {out}\n{err}\n{}", fleet.log());
    let (restored, epoch) = fleet.record().expect("a recorded master");
    assert_eq!(epoch, before.1 + 1);
    assert_eq!(fleet.wait_healthy(Duration::from_secs(60)), restored);
    fleet.wait_every_instance_holds(expected.len() as u64, Duration::from_secs(30));
    for port in fleet.ports() {
        assert!(dump(port) == expected, "{port}: the keys differ from the source");
    }
    let log = fleet.log();
    for secret in [&keys.secret, &other_secret] {
        assert!(!log.contains(secret.as_str()) && !out.contains(secret.as_str()));
        assert!(!err.contains(secret.as_str()));
    }
}

/// The same through S3 (moto), credentials from files, with more than one multipart part:
/// the object stored is age ciphertext, the sha256 is of it, and a snapshot larger than one
/// upload part restores with every key back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_encrypted_snapshot_round_trips_through_s3() {
    let dir = tempfile::tempdir().expect("temp dir");
    let keys = keys(dir.path());
    let moto = support::MotoServer::start();
    moto.create_bucket("backups");
    let source = Redis::master();
    // Incompressible values, about 12 MB: more than one 8 MiB part.
    support::set_strings(&source, "big", 12_000, 1_000);
    let expected = dump(source.port);
    std::fs::write(dir.path().join("key"), "testing\n").unwrap();
    std::fs::write(dir.path().join("secret"), "testing\n").unwrap();
    let text = format!(
        "apiVersion: autopilot.redis.io/v1alpha1\nkind: RedisPolicy\nmetadata: {{name: {POLICY}}}\n\
         spec:\n  target: {{endpoints: [\"{addr}\"]}}\n  snapshots:\n    schedule: '0 0 3 * * *'\n    \
         destination: 's3://backups/redis'\n    endpoint: '{endpoint}'\n    region: us-east-1\n    \
         credentials: {{accessKeyIdFile: '{dir}/key', secretAccessKeyFile: '{dir}/secret'}}\n    \
         compression: zstd\n    source: master\n    encryption:\n      recipientsFile: '{recipients}'\n      \
         identityFile: '{identity}'\n",
        addr = source.addr(),
        endpoint = moto.endpoint(),
        dir = dir.path().display(),
        recipients = keys.recipients.display(),
        identity = keys.identity.display(),
    );
    let policy = load_policy_str("p.yaml", &text).expect("valid policy");
    let snapshotter = Snapshotter::new(&policy).expect("snapshotter");
    let manifest = take(&snapshotter, &source).await;
    assert_eq!(manifest.encryption, Cipher::Age);
    assert!(manifest.stored_bytes > 8 * 1024 * 1024, "{} bytes", manifest.stored_bytes);
    assert_eq!(moto.open_uploads("backups"), 0);

    let file = dir.path().join("restored.rdb");
    snapshotter.restore(&manifest.id, &file, &Quiet).await.expect("restore from S3");
    assert_eq!(std::fs::metadata(&file).unwrap().len(), manifest.raw_bytes);
    let target = Redis::start(&[]);
    let (sent, loaded) =
        support::seed::seed_into(&target, snapshotter.payload(&manifest).await.unwrap()).await;
    assert_eq!(sent.expect("sent"), manifest.raw_bytes);
    assert_eq!(loaded.expect("loaded").keys, expected.len() as u64);
    assert!(dump(target.port) == expected);
}

/// Key names are the dataset's own words: an encrypted snapshot's manifest names none of
/// them. Its sampled keys are sealed to the same recipients (`sealedSample`), and a restore
/// test opens them with the identity and checks their types: a sample sealed with a wrong
/// type fails the test on that key.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_encrypted_snapshot_seals_its_sampled_key_names_and_a_restore_test_opens_them() {
    let dir = tempfile::tempdir().expect("temp dir");
    let keys = keys(dir.path());
    let backups = dir.path().join("backups");
    let source = Redis::master();
    load_data(&source, 300);
    let snapshotter = snapshotter(&source, &backups, "zstd", Some(&keys));
    let manifest = take(&snapshotter, &source).await;

    let path = backups.join(POLICY).join(format!("{}.json", manifest.id));
    let json = std::fs::read_to_string(&path).expect("manifest");
    assert!(manifest.sample.is_empty(), "{json}");
    assert!(manifest.sealed_sample.is_some(), "{json}");
    assert!(!json.contains("str:") && !json.contains("marker"), "a key name in clear:\n{json}");

    let server = support::require("redis-server", "redis-server").display().to_string();
    let verified = snapshotter.restore_test(&manifest, &server).await;
    assert!(verified.ok, "{verified:?}");
    assert_eq!(verified.keys, Some(301));

    // The sealed sample is what the test checks: sealed to say `marker` is a hash, the test
    // fails on it, naming it.
    let recipients = redis_autopilot::snapshot::crypt::Recipients::read(&keys.recipients).unwrap();
    let forged = br#"[{"db":0,"key":"marker","type":"hash"}]"#;
    let sealed = redis_autopilot::snapshot::crypt::seal(&recipients, forged).expect("seal");
    let forged = Manifest {
        sealed_sample: Some({
            use base64::Engine as _;
            base64::engine::general_purpose::STANDARD.encode(sealed)
        }),
        ..manifest.clone()
    };
    let verified = snapshotter.restore_test(&forged, &server).await;
    assert!(!verified.ok, "{verified:?}");
    assert_eq!(verified.reason.as_deref(), Some("key_type"), "{verified:?}");
    assert!(verified.why.as_deref().is_some_and(|why| why.contains("`marker`")), "{verified:?}");
}
