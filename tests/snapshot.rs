//! Snapshots against real parts: `redis-server` (master and replicas on loopback), moto as
//! the S3 server, a local directory, `redis-check-rdb`, and a TCP proxy that injects faults.
//! A missing binary fails loudly (see `support::require` and `scripts/install-test-deps`).
//!
//! What "wrong credentials" covers: a credential that cannot be read (unset variable: named,
//! never echoed), a bucket that does not exist, and, against a moto that checks signatures
//! and IAM keys (`MotoServer::start_with_auth`), a wrong secret for a known key and an
//! unknown key: refused as `store_forbidden`, no secret in the error, nothing listed, no
//! multipart upload left open. The other S3 tests use a moto that accepts any signature.

mod support;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use redis_autopilot::policy::{Policy, load_policy_str};
use redis_autopilot::sample::redis::{Access, Endpoint};
use redis_autopilot::snapshot::Quiet;
use redis_autopilot::snapshot::stream::{Deadlines, Transfer};
use redis_autopilot::snapshot::{SnapshotError, Snapshotter};
use support::failover::wait_until;
use support::{
    MotoServer, Proxy, ProxyFault, Redis, free_port, free_ports, load_collections, replicated,
    require,
};

const BIN: &str = env!("CARGO_BIN_EXE_redis-autopilot");

/// A few thousand keys of several types on `master`, and the replicas caught up.
fn load_data(master: &Redis, replicas: &[Redis]) {
    support::set_strings(master, "str", 3000, 64);
    load_collections(master, replicas);
}

/// Values compared between the source and a restored server.
fn sample_values(redis: &Redis) -> Vec<String> {
    let mut out = vec![redis.cli(&["DBSIZE"])];
    for key in ["str:0", "str:1234", "str:2999"] {
        out.push(redis.cli(&["GET", key]));
    }
    out.push(redis.cli(&["HGETALL", "hash:42"]));
    out.push(redis.cli(&["LRANGE", "list:7", "0", "-1"]));
    let mut members: Vec<String> =
        redis.cli(&["SMEMBERS", "set:299"]).lines().map(str::to_owned).collect();
    members.sort();
    out.push(members.join(","));
    out.push(redis.cli(&["ZRANGE", "zset:3", "0", "-1", "WITHSCORES"]));
    out
}

fn policy_text(instances: &[&Redis], snapshots: &str) -> String {
    let endpoints: Vec<String> = instances.iter().map(|r| format!("\"{}\"", r.addr())).collect();
    format!(
        "apiVersion: autopilot.redis.io/v1alpha1\nkind: RedisPolicy\nmetadata: {{name: cache}}\n\
         spec:\n  target: {{endpoints: [{}]}}\n  snapshots:\n    schedule: '0 0 3 * * *'\n{snapshots}",
        endpoints.join(", ")
    )
}

fn write_policy(dir: &Path, text: &str) -> PathBuf {
    let path = dir.join("cache.yaml");
    std::fs::write(&path, text).expect("write policy");
    path
}

fn policy(text: &str) -> Policy {
    load_policy_str("cache.yaml", text).expect("valid policy")
}

fn cli(args: &[&str], env: &[(&str, &str)]) -> (bool, String, String) {
    let out = Command::new(BIN).args(args).envs(env.iter().copied()).output().expect("run cli");
    let text = |b: &[u8]| String::from_utf8_lossy(b).into_owned();
    (out.status.success(), text(&out.stdout), text(&out.stderr))
}

/// Takes a snapshot with the CLI, restores it, checks it with `redis-check-rdb` and loads it
/// into a fresh server that must hold the same data.
fn round_trip(source: &Redis, policy_file: &Path, env: &[(&str, &str)], work: &Path) {
    let policy = policy_file.to_str().expect("utf-8");
    let (ok, out, err) = cli(&["snapshot", "now", "--policy", policy, "--output", "json"], env);
    assert!(ok, "snapshot now failed: {err}");
    let taken: serde_json::Value = serde_json::from_str(&out).expect("manifest JSON");
    let id = taken[0]["id"].as_str().expect("id").to_owned();
    assert!(taken[0]["crc64"].as_str().is_some_and(|c| c.len() == 16), "{out}");

    let (ok, out, err) = cli(&["snapshot", "list", "--policy", policy, "--output", "json"], env);
    assert!(ok, "list failed: {err}");
    let listed: serde_json::Value = serde_json::from_str(&out).expect("list JSON");
    assert_eq!(listed.as_array().map(Vec::len), Some(1), "{out}");
    assert_eq!(listed[0]["id"], id.as_str());

    let (ok, out, err) = cli(&["snapshot", "verify", "--policy", policy, &id], env);
    assert!(ok && out.contains("OK"), "verify failed: {out} {err}");

    let rdb = work.join("restored.rdb");
    let rdb_text = rdb.to_str().expect("utf-8");
    let (ok, _, err) =
        cli(&["snapshot", "restore", "--policy", policy, &id, "--to", rdb_text], env);
    assert!(ok, "restore failed: {err}");
    let check = Command::new(require("redis-check-rdb", "redis-tools"))
        .arg(&rdb)
        .output()
        .expect("run redis-check-rdb");
    let report = String::from_utf8_lossy(&check.stdout);
    assert!(check.status.success() && report.contains("RDB looks OK"), "{report}");

    let restored =
        Redis::start(&["--dir", work.to_str().expect("utf-8"), "--dbfilename", "restored.rdb"]);
    assert_eq!(sample_values(&restored), sample_values(source));
}

#[test]
fn round_trip_through_a_directory_and_through_s3_with_zstd() {
    let (master, replicas) = replicated(1);
    load_data(&master, &replicas);
    let work = tempfile::tempdir().expect("temp dir");

    // file://, uncompressed, from the replica.
    let backups = work.path().join("backups");
    let text = policy_text(
        &[&master, &replicas[0]],
        &format!("    destination: 'file://{}'\n    compression: none\n", backups.display()),
    );
    let file_work = work.path().join("file");
    std::fs::create_dir_all(&file_work).expect("dir");
    round_trip(&master, &write_policy(&file_work, &text), &[], &file_work);
    // The object and its manifest, named by time and source.
    let names: Vec<String> = std::fs::read_dir(backups.join("cache"))
        .expect("policy folder")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(names.len(), 2, "{names:?}");
    let source = replicas[0].addr().replace(':', "-");
    assert!(names.iter().all(|n| n.contains(&source)), "read from the replica: {names:?}");

    // s3:// on moto, zstd, credentials read from the environment.
    let moto = MotoServer::start();
    moto.create_bucket("backups");
    let text = policy_text(
        &[&master, &replicas[0]],
        &format!(
            "    destination: 's3://backups/redis/prod'\n    endpoint: '{}'\n    region: us-east-1\n\
             \x20   credentials: {{accessKeyIdEnv: TEST_S3_KEY, secretAccessKeyEnv: TEST_S3_SECRET}}\n\
             \x20   compression: zstd\n    compressionLevel: 3\n",
            moto.endpoint()
        ),
    );
    let s3_work = work.path().join("s3");
    std::fs::create_dir_all(&s3_work).expect("dir");
    let env = [("TEST_S3_KEY", "testing"), ("TEST_S3_SECRET", "not-a-real-secret")];
    round_trip(&master, &write_policy(&s3_work, &text), &env, &s3_work);
    assert_eq!(moto.open_uploads("backups"), 0);
}

fn s3_snapshots(moto_endpoint: &str, bucket: &str) -> String {
    format!(
        "    destination: 's3://{bucket}/p'\n    endpoint: '{moto_endpoint}'\n    region: us-east-1\n\
         \x20   compression: none\n"
    )
}

/// Files holding dummy S3 credentials (moto accepts any), and a policy that reads them.
fn s3_policy_with_files(
    instances: &[&Redis],
    moto_endpoint: &str,
    bucket: &str,
    dir: &Path,
) -> Policy {
    let key = dir.join("key");
    let secret = dir.join("secret");
    std::fs::write(&key, "testing\n").expect("write key");
    std::fs::write(&secret, "testing\n").expect("write secret");
    let mut text = policy_text(instances, &s3_snapshots(moto_endpoint, bucket));
    text.push_str(&format!(
        "    credentials: {{accessKeyIdFile: '{}', secretAccessKeyFile: '{}'}}\n",
        key.display(),
        secret.display()
    ));
    policy(&text)
}

fn endpoints(instances: &[&Redis]) -> Vec<Endpoint> {
    instances.iter().map(|r| Endpoint::parse(&r.addr()).expect("endpoint")).collect()
}

/// An endpoint reached through `proxy` but named as the instance behind it.
fn through(proxy: &Proxy) -> Endpoint {
    Endpoint { id: format!("127.0.0.1:{}", proxy.port), host: "127.0.0.1".into(), port: proxy.port }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_corrupted_byte_is_rejected_by_the_crc_and_the_upload_aborted() {
    let master = Redis::master();
    load_data(&master, &[]);
    let moto = MotoServer::start();
    moto.create_bucket("bkt");
    let dir = tempfile::tempdir().expect("temp dir");
    // Flip a byte well inside the payload (past the handshake replies and the RDB header).
    let proxy = Proxy::start(master.port, ProxyFault::FlipDownstreamByte(50_000));
    let text = format!(
        "{}    source: master\n",
        policy_text(&[&master], &s3_snapshots(&moto.endpoint(), "bkt"))
    );
    let mut policy = policy(&text);
    // The same destination (endpoint, bucket, prefix), with the credentials read from files.
    policy.snapshots.as_mut().expect("snapshots").destination =
        s3_policy_with_files(&[&master], &moto.endpoint(), "bkt", dir.path())
            .snapshots
            .expect("s")
            .destination;
    let snapshotter = Snapshotter::new(&policy).expect("snapshotter");
    let err = snapshotter.take(&[through(&proxy)], &Quiet).await.expect_err("corrupt");
    assert!(matches!(err, SnapshotError::Corrupt { .. }), "{err:?}");
    assert_eq!(err.category(), "corrupt");
    let text = redis_autopilot::errors::chain(&err);
    assert!(text.contains("CRC64 mismatch") && text.contains("aborted"), "{text}");
    assert!(snapshotter.list().await.expect("list").is_empty());
    assert_eq!(moto.open_uploads("bkt"), 0, "the multipart upload was aborted");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_store_going_away_mid_upload_leaves_no_snapshot() {
    let master = Redis::master();
    // About 6 MB of RDB: the cut lands inside the upload.
    support::set_strings(&master, "big", 60_000, 100);
    let moto = MotoServer::start();
    moto.create_bucket("bkt");
    let dir = tempfile::tempdir().expect("temp dir");
    let proxy = Proxy::start(moto.port, ProxyFault::CutAfterUpstreamBytes(1_000_000));
    let via_proxy = format!("http://127.0.0.1:{}", proxy.port);
    let mut policy = s3_policy_with_files(&[&master], &via_proxy, "bkt", dir.path());
    policy.snapshots.as_mut().expect("s").source = redis_autopilot::policy::SnapshotSource::Master;
    let snapshotter = Snapshotter::new(&policy).expect("snapshotter");
    let err = snapshotter.take(&endpoints(&[&master]), &Quiet).await.expect_err("cut");
    assert!(proxy.was_cut());
    assert_eq!(err.category(), "upload", "{err:?}");
    let text = redis_autopilot::errors::chain(&err);
    assert!(text.contains("uploading") && text.contains("s3://bkt/p"), "{text}");
    // The store is back (reached directly): nothing is listed.
    let direct = s3_policy_with_files(&[&master], &moto.endpoint(), "bkt", dir.path());
    let listed = Snapshotter::new(&direct).expect("snapshotter").list().await.expect("list");
    assert!(listed.is_empty(), "{listed:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unreadable_credentials_and_a_missing_bucket_fail_clearly() {
    let master = Redis::master();
    let moto = MotoServer::start();
    let text = format!(
        "{}    source: master\n    credentials: {{accessKeyIdEnv: RA_TEST_NO_SUCH_KEY, secretAccessKeyEnv: RA_TEST_NO_SUCH_SECRET}}\n",
        policy_text(&[&master], &s3_snapshots(&moto.endpoint(), "bkt"))
    );
    let err = Snapshotter::new(&policy(&text)).err().expect("unset credential");
    let text = redis_autopilot::errors::chain(&err);
    assert!(text.contains("RA_TEST_NO_SUCH_KEY") && err.category() == "credentials", "{text}");

    let dir = tempfile::tempdir().expect("temp dir");
    let mut policy =
        s3_policy_with_files(&[&master], &moto.endpoint(), "missing-bucket", dir.path());
    policy.snapshots.as_mut().expect("s").source = redis_autopilot::policy::SnapshotSource::Master;
    let snapshotter = Snapshotter::new(&policy).expect("snapshotter");
    let err = snapshotter.take(&endpoints(&[&master]), &Quiet).await.expect_err("no bucket");
    let text = redis_autopilot::errors::chain(&err);
    assert!(text.contains("missing-bucket") || text.contains("NoSuchBucket"), "{text}");
}

/// `credentials` files holding `key_id` and `secret` (under `dir`, named by `name`), and a
/// policy snapshotting `master` to `s3://bkt/p` on `moto_endpoint` with them.
fn s3_policy_with_key(
    master: &Redis,
    moto_endpoint: &str,
    dir: &Path,
    name: &str,
    key_id: &str,
    secret: &str,
) -> Policy {
    let key = dir.join(format!("{name}.key"));
    let secret_file = dir.join(format!("{name}.secret"));
    std::fs::write(&key, key_id).expect("write key");
    std::fs::write(&secret_file, secret).expect("write secret");
    policy(&format!(
        "{}    source: master\n    credentials: {{accessKeyIdFile: '{}', secretAccessKeyFile: '{}'}}\n",
        policy_text(&[master], &s3_snapshots(moto_endpoint, "bkt")),
        key.display(),
        secret_file.display()
    ))
}

/// Wrong credentials against a store that checks them (moto enforcing IAM): a wrong secret
/// for a known key, and a key the store does not know, are refused as `store_forbidden`
/// with the store's own reason, never echo a secret, and leave nothing behind; the right
/// key then takes a snapshot that lists.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_s3_credentials_are_refused_by_a_store_that_checks_them() {
    let master = Redis::master();
    support::set_strings(&master, "k", 500, 64);
    let (moto, key) = MotoServer::start_with_auth(&["bkt"]);
    let dir = tempfile::tempdir().expect("temp dir");
    let wrong_secret: String = key.secret.chars().rev().collect();
    assert_ne!(wrong_secret, key.secret);
    let valid =
        s3_policy_with_key(&master, &moto.endpoint(), dir.path(), "valid", &key.id, &key.secret);
    let lister = Snapshotter::new(&valid).expect("snapshotter");

    let cases = [
        ("wrong secret", key.id.as_str(), wrong_secret.as_str(), "SignatureDoesNotMatch"),
        ("unknown key", "AKIAIOSFODNN7EXAMPLE", key.secret.as_str(), "InvalidAccessKeyId"),
    ];
    for (case, key_id, secret, reason) in cases {
        let name = case.replace(' ', "-");
        let policy =
            s3_policy_with_key(&master, &moto.endpoint(), dir.path(), &name, key_id, secret);
        let err = Snapshotter::new(&policy)
            .expect("snapshotter")
            .take(&endpoints(&[&master]), &Quiet)
            .await
            .expect_err(case);
        let text = redis_autopilot::errors::chain(&err);
        assert_eq!(err.category(), "store_forbidden", "{case}: {text}");
        assert!(text.contains("s3://bkt/p") && text.contains(reason), "{case}: {text}");
        let debug = format!("{err:?}");
        for secret in [&key.secret, &wrong_secret] {
            assert!(
                !text.contains(secret.as_str()) && !debug.contains(secret.as_str()),
                "{case}: {debug}"
            );
        }
        let listed = lister.list().await.expect("list with the valid key");
        assert!(listed.is_empty(), "{case}: {listed:?}");
        assert_eq!(moto.open_uploads("bkt"), 0, "{case}: a multipart upload was left behind");
    }

    // The CLI fails with the store's reason on stderr, and without the secret.
    let cli_policy = write_policy(
        dir.path(),
        &format!(
            "{}    source: master\n    credentials: {{accessKeyIdEnv: TEST_S3_KEY, secretAccessKeyEnv: TEST_S3_SECRET}}\n",
            policy_text(&[&master], &s3_snapshots(&moto.endpoint(), "bkt"))
        ),
    );
    let env = [("TEST_S3_KEY", key.id.as_str()), ("TEST_S3_SECRET", wrong_secret.as_str())];
    let (ok, out, err) =
        cli(&["snapshot", "now", "--policy", cli_policy.to_str().expect("utf-8")], &env);
    assert!(!ok && err.contains("SignatureDoesNotMatch"), "{out}\n{err}");
    assert!(!err.contains(&wrong_secret) && !out.contains(&wrong_secret), "{out}\n{err}");

    // The right key: a snapshot that lists, and no upload left open.
    let manifest = Snapshotter::new(&valid)
        .expect("snapshotter")
        .take(&endpoints(&[&master]), &Quiet)
        .await
        .expect("the valid key uploads");
    let listed: Vec<String> =
        lister.list().await.expect("list").into_iter().map(|m| m.id).collect();
    assert_eq!(listed, [manifest.id]);
    assert_eq!(moto.open_uploads("bkt"), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replica_without_its_master_is_refused_and_another_source_chosen() {
    // A replica of a master that is not there: INFO says its link is down, and PSYNC to it
    // answers -NOMASTERLINK.
    let orphan = Redis::start(&["--replicaof", "127.0.0.1", &free_port().to_string()]);
    let err = Transfer::open(
        &Endpoint::parse(&orphan.addr()).expect("endpoint"),
        &Access::default(),
        Deadlines { handshake: Duration::from_secs(5), stall: Duration::from_secs(5) },
    )
    .await
    .err()
    .expect("NOMASTERLINK");
    assert!(err.retryable() && err.category() == "no_master_link", "{err}");

    let (master, replicas) = replicated(1);
    load_data(&master, &replicas);
    let dir = tempfile::tempdir().expect("temp dir");
    let url = format!("file://{}", dir.path().display());
    let text =
        policy_text(&[&orphan, &master, &replicas[0]], &format!("    destination: '{url}'\n"));
    let snapshotter = Snapshotter::new(&policy(&text)).expect("snapshotter");
    let manifest = snapshotter
        .take(&endpoints(&[&orphan, &master, &replicas[0]]), &Quiet)
        .await
        .expect("the healthy replica serves");
    assert_eq!(manifest.source, replicas[0].addr());
    assert!(manifest.replid.is_some() && manifest.redis_version.is_some());

    // With only the orphan, `source: replica` fails and says why.
    let only = policy_text(&[&orphan], &format!("    destination: '{url}'\n"));
    let err = Snapshotter::new(&policy(&only))
        .expect("snapshotter")
        .take(&endpoints(&[&orphan]), &Quiet)
        .await
        .expect_err("no source");
    let text = redis_autopilot::errors::chain(&err);
    assert!(text.contains("master link down") && err.category() == "no_source", "{text}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retention_keeps_the_newest_and_never_touches_an_unfinished_snapshot() {
    let master = Redis::master();
    support::set_strings(&master, "k", 100, 10);
    let dir = tempfile::tempdir().expect("temp dir");
    let url = format!("file://{}", dir.path().display());
    let text = policy_text(
        &[&master],
        &format!(
            "    destination: '{url}'\n    source: master\n    compression: zstd\n    retention: {{keepLast: 1}}\n"
        ),
    );
    let snapshotter = Snapshotter::new(&policy(&text)).expect("snapshotter");
    let mut ids = Vec::new();
    for _ in 0..3 {
        ids.push(snapshotter.take(&endpoints(&[&master]), &Quiet).await.expect("take").id);
    }
    // An in-progress transfer: an object without a manifest, newer than everything.
    let unfinished = dir.path().join("cache/29991231T235959.999Z-127.0.0.1-1.rdb.zst");
    std::fs::write(&unfinished, b"partial").expect("plant");

    let planned = snapshotter.prune(true).await.expect("dry run");
    assert_eq!(
        planned.iter().map(|p| p.id.clone()).collect::<Vec<_>>(),
        [ids[1].clone(), ids[0].clone()]
    );
    assert_eq!(snapshotter.list().await.expect("list").len(), 3, "a dry run deletes nothing");
    snapshotter.prune(false).await.expect("prune");
    let left: Vec<String> =
        snapshotter.list().await.expect("list").into_iter().map(|m| m.id).collect();
    assert_eq!(left, [ids[2].clone()]);
    assert!(unfinished.exists(), "an unfinished snapshot is never pruned");
    // The pruned snapshots' objects are gone too.
    let files = std::fs::read_dir(dir.path().join("cache")).expect("dir").count();
    assert_eq!(files, 3, "newest object + manifest + the unfinished object");
}

/// The daemon's schedule: a daily firing a few seconds after the daemon starts (a schedule
/// may fire at most every 5 minutes), retention after it, no missed firing reported for a
/// policy that never had a snapshot, metrics published; `--dry-run` uploads nothing.
#[test]
fn the_daemon_takes_scheduled_snapshots_and_dry_run_uploads_nothing() {
    let master = Redis::master();
    support::set_strings(&master, "k", 2000, 50);
    for dry_run in [false, true] {
        let work = tempfile::tempdir().expect("temp dir");
        let backups = work.path().join("backups");
        let policies = work.path().join("policies");
        std::fs::create_dir_all(&policies).expect("dir");
        let text = policy_text(
            &[&master],
            &format!(
                "    destination: 'file://{}'\n    source: master\n    retention: {{keepLast: 2}}\n",
                backups.display()
            ),
        )
        .replace("'0 0 3 * * *'", &format!("'{}'", daily_cron_in(Duration::from_secs(10))));
        std::fs::write(policies.join("cache.yaml"), text).expect("policy");
        let port = free_port();
        let mut args = vec![
            "run".to_owned(),
            "--policies".to_owned(),
            policies.display().to_string(),
            "--listen".to_owned(),
            format!("127.0.0.1:{port}"),
        ];
        if dry_run {
            args.push("--dry-run".to_owned());
        }
        // Killed when dropped, so a failed wait does not leave it running.
        let daemon = support::Process {
            child: Command::new(BIN)
                .args(&args)
                .stdout(std::process::Stdio::null())
                .stderr(std::process::Stdio::null())
                .spawn()
                .expect("start the daemon"),
            dir: tempfile::tempdir().expect("temp dir"),
        };
        // Until the scheduled run has finished, however slow the machine is.
        let outcome = if dry_run { "dry_run" } else { "ok" };
        let runs = format!(r#"snapshot_runs_total{{policy="cache",outcome="{outcome}"}} "#);
        let metrics = wait_until(
            Duration::from_secs(60),
            "a scheduled snapshot run",
            || http_get(port, "/metrics"),
            || {
                let metrics = try_http_get(port, "/metrics")?;
                let count = metrics.lines().find_map(|l| l.split_once(runs.as_str()))?.1;
                (count.trim().parse::<f64>().ok()? >= 1.0).then_some(metrics)
            },
        );
        drop(daemon);
        // A brand-new policy has no snapshot yet: it missed nothing.
        assert!(
            !metrics.contains(r#"redis_autopilot_snapshots_missed_total{policy="cache"} 1"#),
            "{metrics}"
        );
        let manifests = std::fs::read_dir(backups.join("cache"))
            .map(|d| {
                d.filter(|e| {
                    e.as_ref().is_ok_and(|e| e.file_name().to_string_lossy().ends_with(".json"))
                })
                .count()
            })
            .unwrap_or(0);
        if dry_run {
            assert!(
                metrics.contains(r#"snapshot_runs_total{policy="cache",outcome="dry_run"}"#),
                "{metrics}"
            );
            assert_eq!(manifests, 0, "a dry run uploads nothing");
        } else {
            assert!(
                metrics.contains(r#"snapshot_runs_total{policy="cache",outcome="ok"}"#),
                "{metrics}"
            );
            assert!(
                metrics.contains("redis_autopilot_snapshot_last_success_timestamp_seconds"),
                "{metrics}"
            );
            assert!((1..=2).contains(&manifests), "retention keeps 2: {manifests}");
        }
    }
}

/// A credential only the snapshots read (the store's, from files a Secret mounts) missing
/// when the daemon loads the policy: the policy runs, the failure is counted, and once the
/// files are there the next snapshot (one an alert asks for) is taken. The schedule used to
/// be dropped until the policy changed, and with it every later firing and failure count,
/// so the alerts on both went quiet.
#[test]
fn snapshots_wait_for_credentials_mounted_late() {
    let master = Redis::master();
    let moto = MotoServer::start();
    moto.create_bucket("late");
    let work = tempfile::tempdir().expect("temp dir");
    let policies = work.path().join("policies");
    std::fs::create_dir_all(&policies).expect("dir");
    let (key, secret) = (work.path().join("key"), work.path().join("secret"));
    let mut text = policy_text(&[&master], &s3_snapshots(&moto.endpoint(), "late"));
    text.push_str(&format!(
        "    credentials: {{accessKeyIdFile: '{}', secretAccessKeyFile: '{}'}}\n    source: master\n\
         \x20 alerts: [{{alertname: BackupNow, action: snapshot}}]\n",
        key.display(),
        secret.display()
    ));
    std::fs::write(policies.join("cache.yaml"), text).expect("policy");
    let port = free_port();
    // Killed when dropped, so a failed wait does not leave it running.
    let daemon = support::Process {
        child: Command::new(BIN)
            .args(["run", "--policies"])
            .arg(&policies)
            .args(["--listen", &format!("127.0.0.1:{port}"), "--webhook-insecure-no-token"])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("start the daemon"),
        dir: tempfile::tempdir().expect("temp dir"),
    };
    let sample = |metrics: &str, name: &str| -> Option<f64> {
        metrics.lines().find_map(|l| l.strip_prefix(name))?.trim().parse().ok()
    };
    let failed = r#"redis_autopilot_snapshot_failures_total{policy="cache",reason="credentials"} "#;
    wait_until(
        Duration::from_secs(60),
        "the snapshots' failure to read the credentials counted",
        || http_get(port, "/metrics"),
        || (sample(&try_http_get(port, "/metrics")?, failed)? >= 1.0).then_some(()),
    );
    std::fs::write(&key, "testing\n").expect("write key");
    std::fs::write(&secret, "testing\n").expect("write secret");
    let alert = r#"{"status": "firing", "alerts": [{"status": "firing", "labels": {"alertname": "BackupNow"}, "annotations": {}, "fingerprint": "b"}]}"#;
    let taken = r#"redis_autopilot_snapshot_runs_total{policy="cache",outcome="ok"} "#;
    let metrics = wait_until(
        Duration::from_secs(60),
        "a snapshot taken once the credentials are there",
        || http_get(port, "/metrics"),
        || {
            post(port, "/v1/alerts", alert)?;
            let metrics = try_http_get(port, "/metrics")?;
            (sample(&metrics, taken)? >= 1.0).then_some(metrics)
        },
    );
    drop(daemon);
    assert!(
        metrics.contains("redis_autopilot_snapshot_last_success_timestamp_seconds"),
        "{metrics}"
    );
}

/// `POST path` with a JSON `body`; `None` while the daemon does not listen yet.
fn post(port: u16, path: &str, body: &str) -> Option<String> {
    use std::io::{Read as _, Write as _};
    let mut stream = std::net::TcpStream::connect(("127.0.0.1", port)).ok()?;
    write!(
        stream,
        "POST {path} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n\
         Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
    .ok()?;
    let mut response = String::new();
    stream.read_to_string(&mut response).ok()?;
    Some(response)
}

/// A cron line firing once a day, `after` from now (UTC).
fn daily_cron_in(after: Duration) -> String {
    use chrono::Timelike as _;
    let at = chrono::Utc::now() + chrono::Duration::from_std(after).expect("small");
    format!("{} {} {} * * *", at.second(), at.minute(), at.hour())
}

fn http_get(port: u16, path: &str) -> String {
    try_http_get(port, path).unwrap_or_else(|| format!("(nothing answers on port {port})"))
}

/// `None` while the daemon does not listen yet.
fn try_http_get(port: u16, path: &str) -> Option<String> {
    use std::io::{Read as _, Write as _};
    let mut stream = std::net::TcpStream::connect(("127.0.0.1", port)).ok()?;
    write!(stream, "GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").ok()?;
    let mut response = String::new();
    stream.read_to_string(&mut response).ok()?;
    Some(response)
}

/// `beforeActions: [scaleDown]`: the daemon removes an instance only after a snapshot taken
/// for it has completed, and health probes go on meanwhile (the snapshot runs beside them).
#[test]
fn a_scale_down_waits_for_the_snapshot_before_actions_asks_for() {
    let server = require("redis-server", "redis-server");
    let work = tempfile::tempdir().expect("temp dir");
    let backups = work.path().join("backups");
    let data = work.path().join("data");
    let policies = work.path().join("policies");
    std::fs::create_dir_all(&policies).expect("dir");
    std::fs::create_dir_all(&data).expect("dir");
    // The fleet asked for two instances before; load is nil, so the daemon scales to one.
    std::fs::write(data.join("state.json"), r#"{"master": null, "epoch": 0, "replicas": 2}"#)
        .expect("state");
    let base = free_ports(2);
    std::fs::write(
        policies.join("shrink.yaml"),
        format!(
            "\
apiVersion: autopilot.redis.io/v1alpha1
kind: RedisPolicy
metadata:
  name: shrink
spec:
  target:
    local: {{redisServer: {server}, basePort: {base}, dataDir: {data}}}
  sampling: {{interval: 1s, timeout: 500ms}}
  scaling:
    minReplicas: 1
    maxReplicas: 2
    metrics:
      - redis: instantaneous_ops_per_sec
        target: 100000
    scaleDown: {{stabilization: 0s, maxStep: 1, period: 1s, cooldown: 0s}}
  snapshots:
    schedule: '0 0 3 * * *'
    source: replicaOrMaster
    destination: 'file://{backups}'
    beforeActions: [scaleDown]
",
            server = server.display(),
            data = data.display(),
            backups = backups.display(),
        ),
    )
    .expect("policy");
    let port = free_port();
    let mut daemon = Command::new(BIN)
        .args(["run", "--policies"])
        .arg(&policies)
        .args(["--listen", &format!("127.0.0.1:{port}")])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("start the daemon");
    let refuses = |port: u16| std::net::TcpStream::connect(("127.0.0.1", port)).is_err();
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    // The daemon first brings the fleet back to the two instances it asked for...
    while refuses(base + 1) && std::time::Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    // ...then removes one, once the snapshot is in.
    while !refuses(base + 1) && std::time::Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    let removed_at = chrono::Utc::now();
    let decisions = http_get(port, "/v1/decisions");
    let _ = Command::new("kill").args(["-TERM", &daemon.id().to_string()]).status();
    let _ = daemon.wait();
    assert!(refuses(base + 1), "instance 1 was never removed:\n{decisions}");
    let manifests: Vec<serde_json::Value> = std::fs::read_dir(backups.join("shrink"))
        .expect("a snapshot directory")
        .filter_map(Result::ok)
        .filter(|e| e.file_name().to_string_lossy().ends_with(".json"))
        .map(|e| serde_json::from_slice(&std::fs::read(e.path()).expect("read")).expect("json"))
        .collect();
    assert_eq!(manifests.len(), 1, "{manifests:?}");
    let finished: chrono::DateTime<chrono::Utc> =
        serde_json::from_value(manifests[0]["finished"].clone()).expect("finished");
    assert!(
        finished <= removed_at,
        "snapshot finished {finished}, instance removed by {removed_at}"
    );
    assert!(decisions.contains("\"deferred\""), "the scale-down was not deferred:\n{decisions}");
}
