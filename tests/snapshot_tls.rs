//! Snapshots over TLS against real TLS-only `redis-server`s (`--port 0 --tls-port P`, no
//! client certificates), with a private CA and server certificate made by `openssl` in a temp
//! dir (`support::TlsFiles`): the RDB streamed from a replica that itself replicates over
//! TLS, restored, checked by `redis-check-rdb` and loaded into a plain server; the sampler's
//! `INFO` over TLS with the policy's `caFile`; `snapshot now` through the binary against a
//! host name (`localhost`, verified against a DNS name rather than an address); and what
//! happens without the private CA (the bundled public roots only): the handshake fails,
//! naming the instance and the certificate, and no snapshot is listed.

mod support;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use redis_autopilot::errors::chain;
use redis_autopilot::observe::{Outcome, Role};
use redis_autopilot::policy::{Policy, load_policy_str};
use redis_autopilot::sample::redis::{Access, Endpoint, RedisSampler, Tls};
use redis_autopilot::sample::redis_access;
use redis_autopilot::snapshot::Quiet;
use redis_autopilot::snapshot::Snapshotter;
use redis_autopilot::snapshot::stream::{Deadlines, Transfer};
use support::{Redis, TlsFiles, load_collections, require};

const BIN: &str = env!("CARGO_BIN_EXE_redis-autopilot");

/// Keys `load_data` writes: 3000 strings and 300 each of hashes, lists, sets and sorted sets.
const KEYS: u64 = 3000 + 4 * 300;

/// A few thousand keys of several types on `master` (over TLS when it speaks TLS), and every
/// replica caught up to the master's offset.
fn load_data(master: &Redis, replicas: &[&Redis]) {
    let mut con = master.client().get_connection().expect("connect");
    let mut pipe = redis::pipe();
    for i in 0..3000 {
        // Values that differ per key, so a key restored with another's value would show.
        pipe.cmd("SET").arg(format!("str:{i}")).arg(format!("{i:>5}-{}", "v".repeat(i % 90)));
    }
    pipe.query::<()>(&mut con).expect("load strings");
    load_collections(master, replicas.iter().copied());
}

/// DBSIZE and the values of every 37th key of each type, read with typed commands.
fn contents(redis: &Redis) -> Vec<String> {
    use redis::Commands as _;
    let mut con = redis.client().get_connection().expect("connect");
    let size: u64 = redis::cmd("DBSIZE").query(&mut con).expect("DBSIZE");
    let mut out = vec![format!("dbsize {size}")];
    for i in (0..3000).step_by(37) {
        let value: Option<String> = con.get(format!("str:{i}")).expect("GET");
        out.push(format!("str:{i} {value:?}"));
    }
    for i in (0..300).step_by(37) {
        let hash: Vec<(String, String)> = con.hgetall(format!("hash:{i}")).expect("HGETALL");
        let list: Vec<String> = con.lrange(format!("list:{i}"), 0, -1).expect("LRANGE");
        let mut set: Vec<String> = con.smembers(format!("set:{i}")).expect("SMEMBERS");
        set.sort();
        let zset: Vec<(String, f64)> =
            con.zrange_withscores(format!("zset:{i}"), 0, -1).expect("ZRANGE");
        out.push(format!("{i}: {hash:?} {list:?} {set:?} {zset:?}"));
    }
    out
}

/// Checks `rdb` with `redis-check-rdb`, loads it into a fresh plain (non-TLS) server, and
/// compares that server's contents with `source`'s.
fn assert_restores(rdb: &Path, source: &Redis) {
    let check = Command::new(require("redis-check-rdb", "redis-tools"))
        .arg(rdb)
        .output()
        .expect("run redis-check-rdb");
    let report = String::from_utf8_lossy(&check.stdout);
    assert!(check.status.success() && report.contains("RDB looks OK"), "{report}");
    let dir = rdb.parent().expect("a directory").to_str().expect("utf-8");
    let name = rdb.file_name().expect("a file name").to_str().expect("utf-8");
    let restored = Redis::start(&["--dir", dir, "--dbfilename", name]);
    let (expected, got) = (contents(source), contents(&restored));
    assert_eq!(got[0], format!("dbsize {KEYS}"));
    assert_eq!(got, expected);
}

/// A policy over `instances` with `spec.tls` (`caFile` when given, else `tls: {}`) and
/// snapshots to `file://backups`.
fn policy_text(instances: &[String], ca: Option<&Path>, backups: &Path, source: &str) -> String {
    let endpoints: Vec<String> = instances.iter().map(|e| format!("'{e}'")).collect();
    let tls = match ca {
        Some(ca) => format!("{{caFile: '{}'}}", ca.display()),
        None => "{}".to_owned(),
    };
    format!(
        "apiVersion: autopilot.redis.io/v1alpha1\nkind: RedisPolicy\nmetadata: {{name: cache}}\n\
         spec:\n  target: {{endpoints: [{}]}}\n  tls: {tls}\n  snapshots:\n    \
         schedule: '0 0 3 * * *'\n    destination: 'file://{}'\n    source: {source}\n",
        endpoints.join(", "),
        backups.display()
    )
}

fn policy(text: &str) -> Policy {
    load_policy_str("cache.yaml", text).unwrap_or_else(|diagnostics| {
        let text: Vec<String> = diagnostics.iter().map(ToString::to_string).collect();
        panic!("invalid policy:\n{}", text.join("\n"))
    })
}

fn endpoint(text: &str) -> Endpoint {
    Endpoint::parse(text).expect("endpoint")
}

fn cli(args: &[&str]) -> (bool, String, String) {
    let out = Command::new(BIN).args(args).output().expect("run redis-autopilot");
    let text = |b: &[u8]| String::from_utf8_lossy(b).into_owned();
    (out.status.success(), text(&out.stdout), text(&out.stderr))
}

/// Every file under `dir` (none when it does not exist).
fn files_under(dir: &Path) -> Vec<PathBuf> {
    let Ok(entries) = std::fs::read_dir(dir) else { return Vec::new() };
    entries
        .map(|e| e.expect("dir entry").path())
        .flat_map(|p| if p.is_dir() { files_under(&p) } else { vec![p] })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_snapshot_streams_over_tls_from_the_replica_and_restores_the_same_data() {
    let tls = TlsFiles::generate();
    let master = Redis::start_tls(&tls, &[]);
    let replica = Redis::tls_replica_of(&master, &tls);
    replica.wait_for_field("master_link_status", "up");
    load_data(&master, &[&replica]);
    let work = tempfile::tempdir().expect("temp dir");
    let instances = [master.addr(), replica.addr()];
    let text = policy_text(&instances, Some(&tls.ca), &work.path().join("backups"), "replica");
    let policy = policy(&text);
    let endpoints: Vec<Endpoint> = instances.iter().map(|e| endpoint(e)).collect();

    // The sampler, with the access the policy yields (its caFile read): one INFO round.
    let access = redis_access(&policy).expect("access");
    assert!(access.tls.as_ref().is_some_and(|t| t.ca_pem.is_some()), "caFile was not read");
    let samples = RedisSampler::new(access, Duration::from_secs(5)).sample(&endpoints).await;
    let infos: Vec<_> = samples
        .iter()
        .map(|s| s.info.as_ref().unwrap_or_else(|| panic!("{}: {}", s.id, s.outcome)))
        .collect();
    assert_eq!((infos[0].role, infos[1].role), (Role::Master, Role::Replica));
    assert_eq!(infos[1].master_link_up, Some(true));
    // With plain TCP off, Redis reports the TLS port as `tcp_port`.
    assert_eq!(infos[1].server.tcp_port, Some(replica.port));

    let snapshotter = Snapshotter::new(&policy).expect("snapshotter");
    let manifest = snapshotter
        .take(&endpoints, &Quiet)
        .await
        .unwrap_or_else(|e| panic!("snapshot over TLS: {}", chain(&e)));
    assert_eq!(manifest.source, replica.addr(), "a linked-up replica is the source");
    // A replica's replication id is its master's: the RDB is at a point of that history.
    assert_eq!(manifest.replid, replica.info_field("master_replid"));
    assert_eq!(manifest.redis_version, replica.info_field("redis_version"));
    let listed: Vec<String> =
        snapshotter.list().await.expect("list").into_iter().map(|m| m.id).collect();
    assert_eq!(listed, std::slice::from_ref(&manifest.id));

    let rdb = work.path().join("restored.rdb");
    let restored = snapshotter.restore(&manifest.id, &rdb, &Quiet).await.expect("restore");
    assert_eq!(std::fs::metadata(&rdb).expect("restored file").len(), restored.raw_bytes);
    assert_restores(&rdb, &master);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_the_private_ca_the_handshake_fails_naming_the_instance_and_nothing_is_listed() {
    let tls = TlsFiles::generate();
    let master = Redis::start_tls(&tls, &[]);
    master.cli(&["SET", "k", "v"]);
    let work = tempfile::tempdir().expect("temp dir");
    let backups = work.path().join("backups");
    let text = policy_text(&[master.addr()], None, &backups, "master");
    let policy_file = work.path().join("cache.yaml");
    std::fs::write(&policy_file, &text).expect("write policy");

    // The sampler names the failure TLS, apart from an unreachable instance (an expired
    // certificate shows as `samples_total{outcome="tls"}`).
    let access = redis_access(&policy(&text)).expect("access");
    let samples =
        RedisSampler::new(access, Duration::from_secs(5)).sample(&[endpoint(&master.addr())]).await;
    assert!(
        matches!(&samples[0].outcome, Outcome::Tls(why) if why.contains("certificate")),
        "{}",
        samples[0].outcome
    );

    // The library: the sampler cannot verify the server, so no instance can serve.
    let snapshotter = Snapshotter::new(&policy(&text)).expect("snapshotter");
    let err = snapshotter.take(&[endpoint(&master.addr())], &Quiet).await.expect_err("untrusted");
    let message = chain(&err);
    assert!(
        message.contains(&master.addr()) && message.contains("certificate"),
        "the error should name the instance and its certificate: {message}"
    );
    assert_eq!(err.category(), "tls", "{message}");
    assert!(snapshotter.list().await.expect("list").is_empty());
    assert_eq!(files_under(&backups), Vec::<PathBuf>::new(), "nothing was written");

    // The stream's own TLS, on its own: the same failure, then success with the CA.
    let deadlines = Deadlines { handshake: Duration::from_secs(5), stall: Duration::from_secs(10) };
    let public_roots = Access { tls: Some(Tls { ca_pem: None }), ..Access::default() };
    let err = Transfer::open(&endpoint(&master.addr()), &public_roots, deadlines)
        .await
        .err()
        .expect("untrusted certificate");
    assert_eq!(err.category(), "tls", "{err}");
    assert!(!err.retryable(), "another instance would present the same kind of certificate");
    assert!(err.to_string().contains("certificate"), "{err}");
    let ca_pem = Some(std::fs::read(&tls.ca).expect("read CA"));
    let private_ca = Access { tls: Some(Tls { ca_pem }), ..Access::default() };
    let mut transfer = Transfer::open(&endpoint(&master.addr()), &private_ca, deadlines)
        .await
        .unwrap_or_else(|e| panic!("with the CA: {}", chain(&e)));
    let mut rdb = Vec::new();
    while let Some(chunk) = transfer.next().await.expect("read the RDB") {
        rdb.extend_from_slice(&chunk);
    }
    assert!(rdb.starts_with(b"REDIS") && rdb.len() > 20, "{} bytes", rdb.len());

    // The CLI: exit status 1, the same reason on stderr, nothing listed.
    let policy_arg = policy_file.to_str().expect("utf-8");
    let (ok, _, stderr) = cli(&["snapshot", "now", "--policy", policy_arg]);
    assert!(!ok, "snapshot now succeeded without the CA");
    assert!(stderr.contains(&master.addr()) && stderr.contains("certificate"), "{stderr}");
    let (ok, stdout, stderr) =
        cli(&["snapshot", "list", "--policy", policy_arg, "--output", "json"]);
    assert!(ok, "list: {stderr}");
    assert_eq!(
        serde_json::from_str::<serde_json::Value>(&stdout).expect("JSON"),
        serde_json::json!([])
    );
}

#[test]
fn snapshot_now_over_tls_through_the_cli_by_host_name() {
    let tls = TlsFiles::generate();
    let master = Redis::start_tls(&tls, &[]);
    load_data(&master, &[]);
    let work = tempfile::tempdir().expect("temp dir");
    // `localhost`: rustls checks a DNS name against the certificate, not an address.
    let instance = format!("localhost:{}", master.port);
    let text = policy_text(
        std::slice::from_ref(&instance),
        Some(&tls.ca),
        &work.path().join("b"),
        "master",
    );
    let policy_file = work.path().join("cache.yaml");
    std::fs::write(&policy_file, text).expect("write policy");
    let policy_arg = policy_file.to_str().expect("utf-8");

    let (ok, stdout, stderr) =
        cli(&["snapshot", "now", "--policy", policy_arg, "--output", "json"]);
    assert!(ok, "snapshot now over TLS failed: {stderr}");
    let taken: serde_json::Value = serde_json::from_str(&stdout).expect("manifest JSON");
    assert_eq!(taken[0]["source"], instance.as_str(), "{stdout}");
    let id = taken[0]["id"].as_str().expect("id");

    let (ok, stdout, stderr) = cli(&["snapshot", "verify", "--policy", policy_arg, id]);
    assert!(ok && stdout.contains("OK"), "verify: {stdout} {stderr}");
    let rdb = work.path().join("restored.rdb");
    let rdb_arg = rdb.to_str().expect("utf-8");
    let (ok, _, stderr) =
        cli(&["snapshot", "restore", "--policy", policy_arg, id, "--to", rdb_arg]);
    assert!(ok, "restore: {stderr}");
    assert_restores(&rdb, &master);
}
