//! The samplers against real parts: `redis-server` (replicated, password, ACL, TLS),
//! `prometheus-redis-exporter` behind a real Prometheus, peers that are not Redis, and
//! `redis-autopilot plan` as on-call runs it.
//!
//! Samplers are driven through the library with `Policy` values built here, to vary one
//! setting at a time; `plan` is driven through the binary with YAML.

mod support;

use std::io::{Read as _, Write as _};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use redis_autopilot::observe::info::ReplicaState;
use redis_autopilot::observe::{Info, InstanceSample, Observation, Outcome, Role};
use redis_autopilot::policy::{
    MetricSource, Policy, PrometheusCredentials, PrometheusSource, RedisAuth, RedisTls,
    SecretSource, load_policy_str,
};
use redis_autopilot::sample::PolicySampler;
use redis_autopilot::sample::redis::{Access, Endpoint, RedisSampler};
use support::{Exporter, Prometheus, Redis, TlsFiles, free_port, replicated};

/// The per-sample deadline in these tests: long enough for a loaded 2-core machine, short
/// enough that the timeout cases stay quick.
const TIMEOUT: Duration = Duration::from_secs(1);

/// How late past the deadline a round may end and still count as "within the timeout".
const SLACK: Duration = Duration::from_millis(700);

// ---------------------------------------------------------------------------------------------
// Fixtures

/// A policy as the loader builds one (1 s sampling timeout, one `redis:` metric), with the
/// sections the loader does not read yet set in Rust.
struct PolicyBuilder(Policy);

fn policy() -> PolicyBuilder {
    let yaml = "apiVersion: autopilot.redis.io/v1alpha1\nkind: RedisPolicy\n\
                metadata: {name: sampling-test}\n\
                spec:\n  target: {endpoints: ['127.0.0.1:6379']}\n  \
                sampling: {interval: 5s, timeout: 1s}\n  \
                scaling:\n    minReplicas: 1\n    maxReplicas: 3\n    metrics:\n      \
                - {redis: connected_clients, window: 5s, target: 100}\n";
    let policy = load_policy_str("sampling-test.yaml", yaml).unwrap_or_else(|diagnostics| {
        panic!(
            "base policy: {}",
            diagnostics.iter().map(ToString::to_string).collect::<Vec<_>>().join("\n")
        )
    });
    assert_eq!(policy.sampling.timeout, TIMEOUT);
    PolicyBuilder(policy)
}

impl PolicyBuilder {
    fn password(mut self, password: SecretSource) -> Self {
        self.0.auth = Some(RedisAuth { username: None, password });
        self
    }

    fn user(mut self, username: &str, password: SecretSource) -> Self {
        self.0.auth = Some(RedisAuth { username: Some(username.into()), password });
        self
    }

    fn tls(mut self, ca_file: Option<&Path>) -> Self {
        self.0.tls = Some(RedisTls { ca_file: ca_file.map(Path::to_path_buf) });
        self
    }

    fn prometheus(mut self, url: &str, credentials: Option<PrometheusCredentials>) -> Self {
        self.0.prometheus = Some(PrometheusSource { url: url.into(), credentials });
        self
    }

    /// Adds a metric reading `query` (built directly: the loader would not accept every query
    /// these tests need, such as a syntax error).
    fn query(mut self, query: &str) -> Self {
        let scaling = self.0.scaling.as_mut().expect("the base policy scales");
        let mut metric = scaling.metrics[0].clone();
        metric.source = MetricSource::Prometheus { query: query.into() };
        scaling.metrics.push(metric);
        self
    }

    fn sampler(&self) -> PolicySampler {
        PolicySampler::new(&self.0).expect("sampler setup")
    }
}

fn endpoint(port: u16) -> Endpoint {
    Endpoint::parse(&format!("127.0.0.1:{port}")).expect("endpoint")
}

/// One round over `ports`, and how long it took.
async fn round(sampler: &PolicySampler, ports: &[u16]) -> (Observation, Duration) {
    let endpoints: Vec<Endpoint> = ports.iter().map(|&p| endpoint(p)).collect();
    let started = Instant::now();
    let observation = sampler.round(&endpoints, chrono::Utc::now()).await;
    let took = started.elapsed();
    assert_eq!(observation.instances.len(), ports.len(), "one sample per endpoint");
    for (sample, port) in observation.instances.iter().zip(ports) {
        assert_eq!(sample.id, format!("127.0.0.1:{port}"), "samples come back in order");
        assert_eq!(sample.info.is_some(), sample.outcome == Outcome::Ok, "{sample:?}");
    }
    (observation, took)
}

fn outcomes(observation: &Observation) -> Vec<&Outcome> {
    observation.instances.iter().map(|s| &s.outcome).collect()
}

fn assert_auth_failed(observation: &Observation, index: usize, message: &str) {
    let outcome = &observation.instances[index].outcome;
    assert!(
        matches!(outcome, Outcome::AuthFailed(m) if m.contains(message)),
        "instance {index}: expected AuthFailed containing {message:?}: {:?}",
        outcomes(observation)
    );
}

fn info(sample: &InstanceSample) -> &Info {
    sample.info.as_ref().unwrap_or_else(|| panic!("no INFO: {sample:?}"))
}

/// Every `name:value` field of a `redis-cli INFO` reply.
fn cli_info(redis: &Redis, section: &[&str]) -> Vec<(String, String)> {
    let args: Vec<&str> = ["INFO"].iter().chain(section).copied().collect();
    redis
        .cli(&args)
        .lines()
        .filter_map(|line| line.split_once(':'))
        .map(|(k, v)| (k.to_owned(), v.trim().to_owned()))
        .collect()
}

fn field<'a>(fields: &'a [(String, String)], name: &str) -> &'a str {
    fields
        .iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.as_str())
        .unwrap_or_else(|| panic!("redis-cli INFO has no `{name}`"))
}

/// `redis-cli` with a password (plus `extra` options) on a server that requires one.
fn cli_as(redis: &Redis, password: &str, args: &[&str]) -> String {
    let with_auth: Vec<&str> =
        ["--no-auth-warning", "-a", password].iter().chain(args).copied().collect();
    redis.cli(&with_auth)
}

fn write_file(dir: &Path, name: &str, text: &str) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, text).expect("write file");
    path
}

/// Asserts `secret` shows up in neither the observation's `Debug` nor any message in it.
fn assert_secret_hidden(observation: &Observation, secret: &str) {
    let debug = format!("{observation:?}");
    assert!(!debug.contains(secret), "the secret leaked into {debug}");
    for sample in &observation.instances {
        assert!(!sample.outcome.to_string().contains(secret), "leaked: {}", sample.outcome);
    }
    for query in &observation.queries {
        if let Err(error) = &query.value {
            assert!(!error.contains(secret), "leaked: {error}");
        }
    }
}

/// A TCP peer that is not Redis: it accepts every connection, waits for a request to end with
/// `request_end`, then answers `reply` (or nothing) and keeps the connection open, recording
/// what it received. Stopped and joined on drop.
struct FakePeer {
    port: u16,
    received: Arc<Mutex<Vec<u8>>>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl FakePeer {
    /// Accepts and never answers.
    fn silent() -> Self {
        Self::start(b"\r\n", None)
    }

    /// Answers `reply` to each command (a RESP command ends with CRLF).
    fn answering(reply: &'static [u8]) -> Self {
        Self::start(b"\r\n", Some(reply))
    }

    /// Answers `reply` to each HTTP request (its headers end with a blank line).
    fn http(reply: String) -> Self {
        Self::start(b"\r\n\r\n", Some(Box::leak(reply.into_boxed_str()).as_bytes()))
    }

    fn start(request_end: &'static [u8], reply: Option<&'static [u8]>) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind a fake peer");
        let port = listener.local_addr().expect("local addr").port();
        let received = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let thread = {
            let (received, stop) = (received.clone(), stop.clone());
            std::thread::spawn(move || {
                let mut open = Vec::new();
                for stream in listener.incoming() {
                    if stop.load(Ordering::SeqCst) {
                        break;
                    }
                    let Ok(mut stream) = stream else { continue };
                    if let Some(reply) = reply {
                        let _ = stream.set_read_timeout(Some(Duration::from_secs(2)));
                        let mut request = Vec::new();
                        let mut buffer = [0; 4096];
                        while !request.ends_with(request_end) {
                            match stream.read(&mut buffer) {
                                Ok(0) | Err(_) => break,
                                Ok(n) => request.extend_from_slice(&buffer[..n]),
                            }
                        }
                        received.lock().expect("lock").extend_from_slice(&request);
                        let _ = stream.write_all(reply);
                    }
                    open.push(stream);
                }
            })
        };
        Self { port, received, stop, thread: Some(thread) }
    }

    fn received(&self) -> String {
        String::from_utf8_lossy(&self.received.lock().expect("lock")).into_owned()
    }
}

impl Drop for FakePeer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        // Wakes the accept loop so it sees the flag.
        let _ = TcpStream::connect(("127.0.0.1", self.port));
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Redis: what a healthy replicated deployment reports

#[tokio::test]
async fn info_from_a_master_and_two_replicas_matches_redis_cli() {
    let (master, replicas) = replicated(2);
    master.cli(&["MSET", "a", "1", "b", "2", "c", "3"]);
    master.cli(&["SET", "session:1", "x", "EX", "3600"]);
    master.cli(&["SET", "session:2", "y", "EX", "3600"]);
    master.cli(&["-n", "1", "MSET", "x", "1", "y", "2", "z", "3"]);
    for replica in &replicas {
        replica.wait_for_field("db0", "keys=5,expires=2,avg_ttl=0");
        replica.wait_for_field("db1", "keys=3,expires=0,avg_ttl=0");
    }
    let servers = [&master, &replicas[0], &replicas[1]];
    let ports: Vec<u16> = servers.iter().map(|r| r.port).collect();

    let sampler = RedisSampler::new(Access::default(), TIMEOUT);
    let endpoints: Vec<Endpoint> = ports.iter().map(|&p| endpoint(p)).collect();
    let samples = sampler.sample(&endpoints).await;
    // Read after the round, while the sampler's connections are still open.
    let cli: Vec<Vec<(String, String)>> = servers.iter().map(|r| cli_info(r, &[])).collect();

    assert_eq!(samples.len(), 3);
    for (i, ((sample, cli), server)) in samples.iter().zip(&cli).zip(servers).enumerate() {
        assert_eq!(sample.outcome, Outcome::Ok, "{sample:?}");
        assert_eq!(sample.id, server.addr());
        let info = info(sample);
        let (role, cli_role) =
            if i == 0 { (Role::Master, "master") } else { (Role::Replica, "slave") };
        assert_eq!(info.role, role, "{}", server.addr());
        assert_eq!(field(cli, "role"), cli_role);
        assert_eq!(
            info.server.run_id.map(|id| id.to_string()).as_deref(),
            Some(field(cli, "run_id"))
        );
        assert_eq!(info.server.tcp_port, Some(server.port));
        let version = info.server.redis_version.expect("redis_version");
        assert_eq!(
            format!("{}.{}.{}", version.major, version.minor, version.patch),
            field(cli, "redis_version")
        );
        assert_eq!(
            info.replication.master_replid.map(|id| id.to_string()).as_deref(),
            Some(field(cli, "master_replid"))
        );
        assert_eq!(info.memory.maxmemory, Some(0));
        assert!(info.memory.used_memory.is_some_and(|m| m > 0), "{:?}", info.memory);
        assert_eq!(info.number("used_memory"), info.memory.used_memory.map(|m| m as f64));
        // The sampler saw its own connection; redis-cli saw that one and its own.
        let clients = info.clients.connected_clients.expect("connected_clients");
        assert_eq!(info.number("connected_clients"), Some(clients as f64));
        assert_eq!(field(cli, "connected_clients"), (clients + 1).to_string(), "{}", server.addr());
        // Keyspace: what was written on the master, replicated.
        let keyspace: Vec<(u32, u64, u64)> =
            info.keyspace.iter().map(|db| (db.db, db.keys, db.expires)).collect();
        assert_eq!(keyspace, [(0, 5, 2), (1, 3, 0)], "{}", server.addr());
        assert_eq!(info.number("keys"), Some(8.0));
        assert_eq!(info.number("expires"), Some(2.0));
        assert_eq!(info.number("db1.keys"), Some(3.0));
        assert!(field(cli, "db0").starts_with("keys=5,expires=2,"), "{}", field(cli, "db0"));
        assert!(info.serving());
        assert!(!info.syncing);
    }

    let master_info = info(&samples[0]);
    assert_eq!(master_info.master_link_up, None);
    assert_eq!(master_info.replication.connected_replicas, Some(2));
    assert_eq!(master_info.number("connected_slaves"), Some(2.0));
    assert_eq!(field(&cli[0], "connected_slaves"), "2");
    let mut replica_ports: Vec<u16> =
        master_info.replication.replicas.iter().map(|r| r.port).collect();
    replica_ports.sort_unstable();
    let mut expected: Vec<u16> = replicas.iter().map(|r| r.port).collect();
    expected.sort_unstable();
    assert_eq!(replica_ports, expected);
    for replica in &master_info.replication.replicas {
        assert_eq!(replica.ip, "127.0.0.1");
        assert_eq!(replica.state, ReplicaState::Online);
    }
    let master_offset_after: u64 =
        field(&cli_info(&master, &["replication"]), "master_repl_offset").parse().expect("offset");
    let master_offset = master_info.replication.master_repl_offset.expect("master offset");
    assert!(master_offset <= master_offset_after);

    for (sample, cli) in samples[1..].iter().zip(&cli[1..]) {
        let info = info(sample);
        assert_eq!(info.master_link_up, Some(true), "{}", sample.id);
        assert_eq!(field(cli, "master_link_status"), "up");
        assert_eq!(info.replication.master_host.as_deref(), Some("127.0.0.1"));
        assert_eq!(info.replication.master_port, Some(master.port));
        assert_eq!(field(cli, "master_port"), master.port.to_string());
        assert_eq!(info.replication.master_replid, master_info.replication.master_replid);
        assert_eq!(info.replication.replica_read_only, Some(true));
        assert!(!info.replication.master_sync_in_progress);
        // A replica never reports more of the stream than the master had produced by then.
        let offset = info.replication.replica_repl_offset.expect("slave_repl_offset");
        assert!(offset <= master_offset_after, "{offset} > {master_offset_after}");
    }
}

/// The id of the one client whose last command was `INFO` (the sampler's connection).
fn sampler_client_id(redis: &Redis) -> String {
    let list = redis.cli(&["CLIENT", "LIST"]);
    let ids: Vec<&str> = list
        .lines()
        .filter(|line| line.contains(" cmd=info "))
        .filter_map(|line| line.split(' ').find_map(|f| f.strip_prefix("id=")))
        .collect();
    assert_eq!(ids.len(), 1, "one sampler connection expected:\n{list}");
    ids[0].to_owned()
}

#[tokio::test]
async fn policy_rounds_reuse_one_connection_per_instance() {
    let redis = Redis::master();
    let sampler = policy().sampler();
    let (first, _) = round(&sampler, &[redis.port]).await;
    assert_eq!(outcomes(&first), [&Outcome::Ok]);
    assert!(first.queries.is_empty(), "no Prometheus configured: {:?}", first.queries);
    let id = sampler_client_id(&redis);
    let (second, _) = round(&sampler, &[redis.port]).await;
    assert_eq!(outcomes(&second), [&Outcome::Ok]);
    assert_eq!(sampler_client_id(&redis), id, "the second round reused the connection");
    let processed = |o: &Observation| info(&o.instances[0]).stats.total_commands_processed;
    assert!(processed(&second) > processed(&first));
}

// ---------------------------------------------------------------------------------------------
// Redis: peers that fail, each next to a healthy instance in the same round

#[tokio::test]
async fn bad_peers_are_classified_and_do_not_hold_up_a_healthy_instance() {
    let healthy = Redis::master();
    let silent = FakePeer::silent();
    let http = FakePeer::answering(b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n");
    let binary = FakePeer::answering(b"\x00\x9f\xfe garbage \x01\x02\r\n");
    let closed = free_port();
    let sampler = policy().sampler();

    let ports = [healthy.port, silent.port, http.port, binary.port, closed];
    let (observation, took) = round(&sampler, &ports).await;
    let got = outcomes(&observation);
    assert_eq!(got[0], &Outcome::Ok, "{:?}", outcomes(&observation));
    assert_eq!(got[1], &Outcome::Timeout, "{:?}", outcomes(&observation));
    assert!(matches!(got[2], Outcome::Protocol(_)), "HTTP answer: {:?}", got[2]);
    assert!(matches!(got[3], Outcome::Protocol(_)), "binary answer: {:?}", got[3]);
    assert_eq!(got[4], &Outcome::Refused);
    assert!(http.received().contains("INFO"), "the sampler sent INFO: {:?}", http.received());
    assert!(took >= TIMEOUT - Duration::from_millis(50), "the silent peer had its full deadline");
    assert!(took < TIMEOUT + SLACK, "the round took {took:?}, timeout {TIMEOUT:?}");

    // Failures do not stick: the next round reconnects and classifies the same way.
    let (again, took) = round(&sampler, &ports).await;
    assert_eq!(outcomes(&again), got);
    assert!(took < TIMEOUT + SLACK, "the second round took {took:?}");
}

#[tokio::test]
async fn a_killed_instance_is_refused_at_once_and_a_restarted_one_is_seen_anew() {
    let healthy = Redis::master();
    let victim = Redis::master();
    let port = victim.port;
    let sampler = policy().sampler();
    let ports = [healthy.port, port];
    let (before, _) = round(&sampler, &ports).await;
    assert_eq!(outcomes(&before), [&Outcome::Ok, &Outcome::Ok]);
    let old_run_id = info(&before.instances[1]).server.run_id.expect("run_id");

    // The sampler holds a connection to the victim; the kill breaks it. The very next round
    // must say what a fresh look says (nobody listens), not report the broken connection.
    drop(victim);
    let (dead, _) = round(&sampler, &ports).await;
    assert_eq!(outcomes(&dead), [&Outcome::Ok, &Outcome::Refused]);

    let restarted = Redis::start_on(port, &[]);
    let (after, _) = round(&sampler, &ports).await;
    assert_eq!(outcomes(&after), [&Outcome::Ok, &Outcome::Ok]);
    assert_ne!(info(&after.instances[1]).server.run_id, Some(old_run_id));

    // Killed and restarted between two rounds: the next round reads the new process.
    drop(restarted);
    let again = Redis::start_on(port, &[]);
    let (after_restart, _) = round(&sampler, &ports).await;
    assert_eq!(outcomes(&after_restart), [&Outcome::Ok, &Outcome::Ok]);
    let run_id = info(&after_restart.instances[1]).server.run_id;
    assert_eq!(run_id.map(|id| id.to_string()), Some(again.info_field("run_id").expect("run_id")));
}

/// Two servers with different passwords, so each round has one that accepts and one that
/// refuses the same credentials.
struct Secured {
    redis: Redis,
    password: &'static str,
}

impl Secured {
    fn start(password: &'static str) -> Self {
        Self { redis: Redis::start(&["--requirepass", password]), password }
    }

    fn cli(&self, args: &[&str]) -> String {
        cli_as(&self.redis, self.password, args)
    }
}

#[tokio::test]
async fn passwords_from_files_authenticate_and_wrong_ones_fail_without_leaking() {
    let (first, second) = (Secured::start("correct horse battery"), Secured::start("staple-9f3a"));
    let ports = [first.redis.port, second.redis.port];
    let dir = tempfile::tempdir().expect("temp dir");

    // The file holds `first`'s password with a trailing newline, as `kubectl` writes it.
    let file = write_file(dir.path(), "password", "correct horse battery\n");
    let (observation, _) =
        round(&policy().password(SecretSource::File(file)).sampler(), &ports).await;
    assert_eq!(outcomes(&observation)[0], &Outcome::Ok, "{:?}", outcomes(&observation));
    assert_auth_failed(&observation, 1, "authentication failed");
    assert_eq!(info(&observation.instances[0]).role, Role::Master);
    assert_secret_hidden(&observation, "correct horse battery");

    let file = write_file(dir.path(), "other", "staple-9f3a");
    let (observation, took) =
        round(&policy().password(SecretSource::File(file)).sampler(), &ports).await;
    assert_auth_failed(&observation, 0, "authentication failed");
    assert_eq!(outcomes(&observation)[1], &Outcome::Ok);
    assert_secret_hidden(&observation, "staple-9f3a");
    assert!(took < TIMEOUT, "an auth failure is an answer, not a timeout: {took:?}");

    // No credentials at all: the server says NOAUTH, which is an authentication failure too.
    let plain = Redis::master();
    let (observation, _) = round(&policy().sampler(), &[first.redis.port, plain.port]).await;
    assert_auth_failed(&observation, 0, "NOAUTH");
    assert_eq!(outcomes(&observation)[1], &Outcome::Ok);
}

#[tokio::test]
async fn acl_users_need_the_info_permission() {
    let (first, second) = (Secured::start("admin-1"), Secured::start("admin-2"));
    first.cli(&["ACL", "SETUSER", "sampler", "on", ">sampler-pw", "~*", "+info"]);
    first.cli(&["ACL", "SETUSER", "blind", "on", ">blind-pw", "~*", "+ping"]);
    second.cli(&["ACL", "SETUSER", "blind", "on", ">blind-pw", "~*", "+info"]);
    let dir = tempfile::tempdir().expect("temp dir");
    let ports = [first.redis.port, second.redis.port];

    let sampler_pw = write_file(dir.path(), "sampler", "sampler-pw");
    let sampler = policy().user("sampler", SecretSource::File(sampler_pw)).sampler();
    let (observation, _) = round(&sampler, &ports).await;
    assert_eq!(outcomes(&observation)[0], &Outcome::Ok, "{:?}", outcomes(&observation));
    assert_auth_failed(&observation, 1, "authentication failed");

    let blind_pw = write_file(dir.path(), "blind", "blind-pw");
    let (observation, _) =
        round(&policy().user("blind", SecretSource::File(blind_pw)).sampler(), &ports).await;
    assert_auth_failed(&observation, 0, "no permissions to run the 'info' command");
    assert_eq!(outcomes(&observation)[1], &Outcome::Ok);
    assert_secret_hidden(&observation, "blind-pw");
}

const CHILD_PORT: &str = "REDIS_AUTOPILOT_TEST_CHILD_PORT";
const PASSWORD_VAR: &str = "REDIS_AUTOPILOT_TEST_REDIS_PASSWORD";

/// Setting a variable in this multi-threaded test process would be unsound (and `unsafe`,
/// which the crate forbids), so the test runs itself again as a child process with the
/// variable set; the child does the sampling, the parent checks that it ran and passed.
#[test]
fn a_password_from_an_environment_variable_authenticates() {
    const NAME: &str = "a_password_from_an_environment_variable_authenticates";
    if let Ok(port) = std::env::var(CHILD_PORT) {
        let port: u16 = port.parse().expect("child port");
        let runtime =
            tokio::runtime::Builder::new_current_thread().enable_all().build().expect("rt");
        runtime.block_on(async {
            let plain = Redis::master();
            let sampler = policy().password(SecretSource::Env(PASSWORD_VAR.into())).sampler();
            let (observation, _) = round(&sampler, &[port, plain.port]).await;
            assert_eq!(outcomes(&observation)[0], &Outcome::Ok, "{:?}", outcomes(&observation));
            // A password sent to a server without one is refused; the round still completes.
            assert!(
                matches!(outcomes(&observation)[1], Outcome::AuthFailed(_)),
                "{:?}",
                outcomes(&observation)
            );
        });
        return;
    }
    let secured = Secured::start("from-the-environment");
    let output = Command::new(std::env::current_exe().expect("test binary"))
        .args([NAME, "--exact", "--test-threads=1"])
        .env(CHILD_PORT, secured.redis.port.to_string())
        .env(PASSWORD_VAR, secured.password)
        .output()
        .expect("run the child test");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success() && stdout.contains(&format!("test {NAME} ... ok")),
        "child failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    // A variable that is not set fails the setup, naming it.
    let unset = PolicySampler::new(&policy().password(SecretSource::Env(PASSWORD_VAR.into())).0);
    let error = error_chain(unset.err().expect("an unset variable fails the setup"));
    assert!(error.contains(PASSWORD_VAR), "{error}");
}

fn error_chain(error: impl std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(&format!(": {cause}"));
        source = cause.source();
    }
    text
}

// ---------------------------------------------------------------------------------------------
// Redis over TLS

#[tokio::test]
async fn tls_with_the_right_ca_samples_and_without_it_fails_cleanly() {
    let tls = TlsFiles::generate();
    let redis = Redis::start_tls(&tls, &[]);

    let (observation, _) = round(&policy().tls(Some(&tls.ca)).sampler(), &[redis.port]).await;
    assert_eq!(outcomes(&observation), [&Outcome::Ok], "{:?}", outcomes(&observation));
    let info = info(&observation.instances[0]);
    let cli = cli_info(&redis, &[]);
    assert_eq!(info.role, Role::Master);
    assert_eq!(info.server.run_id.map(|id| id.to_string()).as_deref(), Some(field(&cli, "run_id")));
    // With plain TCP off, Redis reports the TLS port as `tcp_port`.
    assert_eq!(info.server.tcp_port, Some(redis.port));

    // Trusting only the public roots: the throwaway CA is unknown, so the handshake fails.
    let (observation, took) = round(&policy().tls(None).sampler(), &[redis.port]).await;
    match outcomes(&observation)[0] {
        Outcome::Tls(message) => assert!(
            message.to_lowercase().contains("certificate")
                || message.to_lowercase().contains("issuer"),
            "{message}"
        ),
        other => panic!("expected an untrusted certificate, got {other:?}"),
    }
    assert!(took < TIMEOUT, "a failed handshake is an answer, not a timeout: {took:?}");
}

// ---------------------------------------------------------------------------------------------
// Prometheus

#[tokio::test]
async fn prometheus_queries_read_what_the_exporter_scraped() {
    let (master, _replicas) = replicated(2);
    master.cli(&["MSET", "a", "1", "b", "2", "c", "3", "d", "4", "e", "5"]);
    master.cli(&["-n", "1", "MSET", "x", "1", "y", "2", "z", "3"]);
    let exporter = Exporter::start(&master);
    let prometheus = Prometheus::start(&[exporter.port]);

    // Bounded wait for the first scrape.
    let up = policy().prometheus(&prometheus.url(), None).query("redis_up").sampler();
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let (observation, _) = round(&up, &[]).await;
        match &observation.queries[0].value {
            Ok(values) => {
                assert_eq!(values, &[1.0]);
                break;
            }
            Err(error) if Instant::now() > deadline => {
                let log =
                    std::fs::read_to_string(prometheus.process.dir.path().join("prometheus.log"))
                        .unwrap_or_default();
                panic!("redis_up never had a sample within 30 s (last: {error}):\n{log}");
            }
            Err(_) => tokio::time::sleep(Duration::from_millis(200)).await,
        }
    }

    let queries = [
        "redis_connected_slaves",
        r#"redis_db_keys{db=~"db0|db1"}"#,
        "redis_db_keys",
        "count(redis_db_keys)",
        r#"{__name__=~"redis_connected_slaves|redis_up"}"#,
        "absent_metric_xyz",
        "sum(",
    ];
    // A bearer token Prometheus does not ask for: sent, ignored, and never printed.
    let dir = tempfile::tempdir().expect("temp dir");
    let token = "prom-token-77d1c9";
    let bearer =
        PrometheusCredentials::Bearer(SecretSource::File(write_file(dir.path(), "token", token)));
    let builder = queries
        .iter()
        .fold(policy().prometheus(&prometheus.url(), Some(bearer)), |b, q| b.query(q));
    let (observation, _) = round(&builder.sampler(), &[master.port]).await;
    assert_eq!(outcomes(&observation), [&Outcome::Ok], "Redis and Prometheus in one round");
    assert_eq!(observation.queries.len(), queries.len());
    let value =
        |q: &str| observation.query(q).unwrap_or_else(|| panic!("no result for {q}")).value.clone();
    let sorted = |q: &str| {
        let mut values = value(q).unwrap_or_else(|e| panic!("{q}: {e}"));
        values.sort_by(f64::total_cmp);
        values
    };
    let cli = cli_info(&master, &[]);
    let slaves: f64 = field(&cli, "connected_slaves").parse().expect("number");
    assert_eq!(value("redis_connected_slaves"), Ok(vec![slaves]));
    assert_eq!(slaves, 2.0);
    assert_eq!(sorted(queries[1]), [3.0, 5.0], "one value per database");
    // Every series, as many as Prometheus counts (the exporter also lists empty databases).
    let all_dbs = sorted("redis_db_keys");
    assert_eq!(value("count(redis_db_keys)"), Ok(vec![all_dbs.len() as f64]));
    assert_eq!(all_dbs.iter().sum::<f64>(), 8.0);
    assert_eq!(sorted(queries[4]), [1.0, 2.0]);
    assert_eq!(value("absent_metric_xyz"), Err("empty result".to_owned()));
    let syntax = value("sum(").expect_err("a syntax error");
    assert!(syntax.contains("parse error"), "Prometheus's own message: {syntax}");
    assert_secret_hidden(&observation, token);
}

#[tokio::test]
async fn prometheus_failures_are_errors_with_their_cause_and_no_secret() {
    let redis = Redis::master();
    let dir = tempfile::tempdir().expect("temp dir");
    let token = "tok-5e1f0c2ab7";
    let token_file = write_file(dir.path(), "token", &format!("{token}\n"));
    let bearer = Some(PrometheusCredentials::Bearer(SecretSource::File(token_file)));

    let closed = format!("http://127.0.0.1:{}", free_port());
    let sampler = policy().prometheus(&closed, bearer.clone()).query("redis_up").sampler();
    let (observation, took) = round(&sampler, &[redis.port]).await;
    assert_eq!(outcomes(&observation), [&Outcome::Ok], "Redis is sampled regardless");
    let error = observation.queries[0].value.clone().expect_err("closed port");
    assert!(error.to_lowercase().contains("refused"), "{error}");
    assert!(took < TIMEOUT, "{took:?}");
    assert_secret_hidden(&observation, token);

    // Prometheus answers 400 with its own explanation.
    let bad = FakePeer::http(http_json(
        "400 Bad Request",
        r#"{"status":"error","errorType":"bad_data","error":"1:5: parse error: unclosed left parenthesis"}"#,
    ));
    let sampler = policy()
        .prometheus(&format!("http://127.0.0.1:{}", bad.port), bearer)
        .query("sum(")
        .sampler();
    let (observation, _) = round(&sampler, &[]).await;
    let error = observation.queries[0].value.clone().expect_err("bad query");
    assert!(error.contains("parse error: unclosed left parenthesis"), "{error}");
    assert!(
        bad.received().contains(&format!("authorization: Bearer {token}\r\n")),
        "{}",
        bad.received()
    );
    assert_secret_hidden(&observation, token);

    // An answer that is not Prometheus's JSON.
    let garbage = FakePeer::http(http_json("200 OK", "<html>login</html>"));
    let sampler = policy()
        .prometheus(&format!("http://127.0.0.1:{}", garbage.port), None)
        .query("up")
        .sampler();
    let (observation, _) = round(&sampler, &[]).await;
    assert!(observation.queries[0].value.is_err(), "{:?}", outcomes(&observation));

    // A Prometheus that never answers: the query times out at the sampling deadline.
    let silent = FakePeer::silent();
    let sampler = policy()
        .prometheus(&format!("http://127.0.0.1:{}", silent.port), None)
        .query("up")
        .sampler();
    let (observation, took) = round(&sampler, &[redis.port]).await;
    let error = observation.queries[0].value.clone().expect_err("silent Prometheus");
    assert!(error.contains("timed out"), "{error}");
    assert_eq!(outcomes(&observation), [&Outcome::Ok]);
    assert!(took < TIMEOUT + SLACK, "{took:?}");
}

#[tokio::test]
async fn prometheus_credentials_are_sent_as_headers() {
    let dir = tempfile::tempdir().expect("temp dir");
    let password = "pa55-w0rd-91";
    let basic = Some(PrometheusCredentials::Basic {
        username: "autopilot".into(),
        password: SecretSource::File(write_file(dir.path(), "password", password)),
    });
    let body = r#"{"status":"success","data":{"resultType":"vector","result":[
        {"metric":{"db":"db0"},"value":[1700000000.0,"7"]},
        {"metric":{"db":"db1"},"value":[1700000000.0,"NaN"]},
        {"metric":{"db":"db2"},"value":[1700000000.0,"2.5"]}]}}"#;
    let fake = FakePeer::http(http_json("200 OK", body));
    let sampler =
        policy().prometheus(&format!("http://127.0.0.1:{}", fake.port), basic).query("q").sampler();
    let (observation, _) = round(&sampler, &[]).await;
    // Every finite series, in the order Prometheus gave them; NaN carries no load information.
    assert_eq!(observation.queries[0].value, Ok(vec![7.0, 2.5]));
    // base64("autopilot:pa55-w0rd-91")
    assert!(
        fake.received().contains("authorization: Basic YXV0b3BpbG90OnBhNTUtdzByZC05MQ==\r\n"),
        "{}",
        fake.received()
    );
    assert!(fake.received().starts_with("GET /api/v1/query?query=q"), "{}", fake.received());
    assert_secret_hidden(&observation, password);
}

fn http_json(status: &str, body: &str) -> String {
    format!(
        "HTTP/1.1 {status}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )
}

// ---------------------------------------------------------------------------------------------
// `plan` end to end

struct Plan {
    code: Option<i32>,
    stdout: String,
    stderr: String,
    took: Duration,
}

fn plan(policy: &Path, args: &[&str]) -> Plan {
    let started = Instant::now();
    let output = Command::new(env!("CARGO_BIN_EXE_redis-autopilot"))
        .args(["plan", "--policy"])
        .arg(policy)
        .args(args)
        .output()
        .expect("run redis-autopilot plan");
    Plan {
        code: output.status.code(),
        stdout: String::from_utf8(output.stdout).expect("UTF-8 stdout"),
        stderr: String::from_utf8(output.stderr).expect("UTF-8 stderr"),
        took: started.elapsed(),
    }
}

/// A policy over `endpoints`, sampled with a 1 s timeout, scaling on `used_memory`.
fn plan_policy(dir: &Path, endpoints: &[String]) -> PathBuf {
    let list: Vec<String> = endpoints.iter().map(|e| format!("'{e}'")).collect();
    write_file(
        dir,
        "policy.yaml",
        &format!(
            "apiVersion: autopilot.redis.io/v1alpha1\nkind: RedisPolicy\nmetadata: {{name: plan-e2e}}\n\
             spec:\n  target: {{endpoints: [{}]}}\n  sampling: {{interval: 2s, timeout: 1s}}\n  \
             scaling:\n    minReplicas: 1\n    maxReplicas: 6\n    metrics:\n      \
             - {{redis: used_memory, window: 2s, target: 1073741824}}\n",
            list.join(", ")
        ),
    )
}

#[test]
fn plan_reports_every_instance_and_decides() {
    let (master, replicas) = replicated(2);
    let closed = format!("127.0.0.1:{}", free_port());
    let ids = [master.addr(), replicas[0].addr(), replicas[1].addr(), closed.clone()];
    let dir = tempfile::tempdir().expect("temp dir");
    let policy = plan_policy(dir.path(), &ids);

    let run = plan(&policy, &["--output", "json"]);
    assert_eq!(
        run.code,
        Some(0),
        "every metric had data (from 3 of 4):\n{}{}",
        run.stdout,
        run.stderr
    );
    let report: serde_json::Value = serde_json::from_str(&run.stdout).expect("plan JSON");
    assert_eq!(report["policy"], "plan-e2e");
    assert_eq!(report["missingData"], false);
    let rows = report["instances"].as_array().expect("instances");
    let row = |id: &str| {
        rows.iter().find(|r| r["id"] == id).unwrap_or_else(|| panic!("no row {id}: {report}"))
    };
    assert_eq!(rows.len(), 4);
    assert_eq!(row(&ids[0])["role"], "master");
    assert_eq!(row(&ids[0])["outcome"], "ok");
    for replica in &ids[1..3] {
        assert_eq!(row(replica)["role"], "replica");
        assert_eq!(row(replica)["linkUp"], true);
        assert!(row(replica)["lagBytes"].is_u64(), "{}", row(replica));
    }
    for id in &ids[..3] {
        assert!(row(id)["usedMemory"].as_u64().is_some_and(|m| m > 0), "{}", row(id));
    }
    assert_eq!(row(&closed)["outcome"], "connection refused");
    assert!(row(&closed)["role"].is_null());
    let decisions = report["decisions"].as_array().expect("decisions");
    assert!(!decisions.is_empty(), "{report}");
    for decision in decisions {
        let sentence = decision["sentence"].as_str().expect("sentence");
        assert!(sentence.contains("used_memory"), "{sentence}");
    }

    let table = plan(&policy, &[]);
    assert_eq!(table.code, Some(0), "{}", table.stderr);
    let line = |id: &str| {
        table
            .stdout
            .lines()
            .find(|l| l.starts_with(id))
            .unwrap_or_else(|| panic!("{id}:\n{}", table.stdout))
    };
    assert!(line(&ids[0]).contains("master"));
    assert!(line(&ids[1]).contains("replica"));
    assert!(line(&closed).contains("connection refused"));
    assert!(table.stdout.contains("DECISIONS"), "{}", table.stdout);
}

#[test]
fn plan_on_a_never_answering_instance_exits_2_within_the_timeout() {
    let silent = FakePeer::silent();
    let dir = tempfile::tempdir().expect("temp dir");
    let policy = plan_policy(dir.path(), &[format!("127.0.0.1:{}", silent.port)]);

    let run = plan(&policy, &[]);
    assert_eq!(run.code, Some(2), "{}{}", run.stdout, run.stderr);
    assert!(run.stdout.contains("timed out"), "{}", run.stdout);
    assert!(run.stdout.contains("Data was missing: exit status 2."), "{}", run.stdout);
    // The sampling timeout plus process start-up.
    assert!(run.took < TIMEOUT + Duration::from_secs(2), "plan took {:?}", run.took);

    let json = plan(&policy, &["--output", "json"]);
    assert_eq!(json.code, Some(2));
    let report: serde_json::Value = serde_json::from_str(&json.stdout).expect("plan JSON");
    assert_eq!(report["missingData"], true);
    assert_eq!(report["instances"][0]["outcome"], "timed out");
}

#[test]
fn plan_on_an_invalid_policy_exits_1_as_documented() {
    let dir = tempfile::tempdir().expect("temp dir");
    let policy = write_file(dir.path(), "bad.yaml", "apiVersion: autopilot.redis.io/v1alpha1\n");
    let run = plan(&policy, &[]);
    assert_eq!(run.code, Some(1), "1 on errors, 2 only for missing data:\n{}", run.stderr);
    assert!(run.stderr.contains("bad.yaml"), "{}", run.stderr);
}

/// A policy over `endpoints` scaling on one PromQL `query`, with `prometheus` as the YAML
/// value of `spec.prometheus`.
fn prometheus_policy(dir: &Path, endpoints: &[String], prometheus: &str, query: &str) -> PathBuf {
    let list: Vec<String> = endpoints.iter().map(|e| format!("'{e}'")).collect();
    write_file(
        dir,
        "policy.yaml",
        &format!(
            "apiVersion: autopilot.redis.io/v1alpha1\nkind: RedisPolicy\nmetadata: {{name: plan-prom}}\n\
             spec:\n  target: {{endpoints: [{}]}}\n  sampling: {{interval: 2s, timeout: 1s}}\n  \
             prometheus: {prometheus}\n  scaling:\n    minReplicas: 1\n    maxReplicas: 6\n    \
             metrics:\n      - {{prometheus: '{query}', aggregate: sum, window: 2s, target: 1000}}\n",
            list.join(", ")
        ),
    )
}

#[test]
fn plan_decides_on_a_prometheus_metric() {
    let (master, _replicas) = replicated(2);
    let exporter = Exporter::start(&master);
    let prometheus = Prometheus::start(&[exporter.port]);
    let dir = tempfile::tempdir().expect("temp dir");
    let policy = prometheus_policy(
        dir.path(),
        &[master.addr()],
        &format!("{{url: '{}'}}", prometheus.url()),
        "redis_connected_slaves",
    );
    // Prometheus has nothing until its first scrape: a bounded wait, then a loud failure.
    let deadline = Instant::now() + Duration::from_secs(30);
    let report = loop {
        let run = plan(&policy, &["--output", "json"]);
        if run.code == Some(0) {
            break serde_json::from_str::<serde_json::Value>(&run.stdout).expect("JSON");
        }
        assert!(
            Instant::now() < deadline,
            "no Prometheus data within 30 s:\n{}{}",
            run.stdout,
            run.stderr
        );
        std::thread::sleep(Duration::from_millis(500));
    };
    assert_eq!(report["queries"][0]["series"], serde_json::json!([2.0]));
    let sentence = report["decisions"][0]["sentence"].as_str().expect("sentence");
    assert!(sentence.contains("`redis_connected_slaves`"), "{sentence}");
}

#[test]
fn plan_with_an_empty_or_invalid_query_exits_2_and_says_why() {
    let (master, _replicas) = replicated(0);
    let exporter = Exporter::start(&master);
    let prometheus = Prometheus::start(&[exporter.port]);
    let dir = tempfile::tempdir().expect("temp dir");
    for (query, why) in [("absent_metric_xyz", "empty result"), ("sum(", "parse error")] {
        let url = format!("{{url: '{}'}}", prometheus.url());
        let policy = prometheus_policy(dir.path(), &[master.addr()], &url, query);
        let run = plan(&policy, &["--output", "json"]);
        assert_eq!(run.code, Some(2), "{}{}", run.stdout, run.stderr);
        let report: serde_json::Value = serde_json::from_str(&run.stdout).expect("JSON");
        assert_eq!(report["missingData"], true);
        let error = report["queries"][0]["error"].as_str().expect("error");
        assert!(error.contains(why), "{report}");
        assert_eq!(report["instances"][0]["outcome"], "ok");
    }
}

#[test]
fn plan_with_prometheus_down_exits_2_within_the_timeout() {
    let redis = Redis::master();
    let silent = FakePeer::silent();
    let dir = tempfile::tempdir().expect("temp dir");
    let refused = format!("http://127.0.0.1:{}", free_port());
    let hanging = format!("http://127.0.0.1:{}", silent.port);
    for (url, why) in [(refused, "refused"), (hanging, "timed out")] {
        let policy =
            prometheus_policy(dir.path(), &[redis.addr()], &format!("{{url: '{url}'}}"), "up");
        let run = plan(&policy, &[]);
        assert_eq!(run.code, Some(2), "{}{}", run.stdout, run.stderr);
        assert!(run.stdout.to_lowercase().contains(why), "{}", run.stdout);
        assert!(run.took < TIMEOUT + Duration::from_secs(2), "{:?}", run.took);
    }
}

#[test]
fn plan_with_an_unreadable_token_exits_1_naming_it_and_never_prints_a_token() {
    let redis = Redis::master();
    let dir = tempfile::tempdir().expect("temp dir");
    let missing = dir.path().join("no-such-token");
    let prometheus =
        format!("{{url: 'http://127.0.0.1:9', bearerTokenFile: '{}'}}", missing.display());
    let policy = prometheus_policy(dir.path(), &[redis.addr()], &prometheus, "up");
    let run = plan(&policy, &[]);
    assert_eq!(run.code, Some(1), "{}", run.stderr);
    assert!(
        run.stderr.contains("no-such-token") && run.stderr.contains("spec.prometheus"),
        "{}",
        run.stderr
    );

    let bad = FakePeer::http(http_json(
        "400 Bad Request",
        r#"{"status":"error","errorType":"bad_data","error":"1:5: parse error"}"#,
    ));
    let token = write_file(dir.path(), "token", "tok-e2e-31337");
    let prometheus =
        format!("{{url: 'http://127.0.0.1:{}', bearerTokenFile: '{}'}}", bad.port, token.display());
    let policy = prometheus_policy(dir.path(), &[redis.addr()], &prometheus, "sum(");
    let run = plan(&policy, &["--output", "json"]);
    assert_eq!(run.code, Some(2), "{}{}", run.stdout, run.stderr);
    assert!(bad.received().contains("Bearer tok-e2e-31337"), "{}", bad.received());
    assert!(!run.stdout.contains("tok-e2e-31337") && !run.stderr.contains("tok-e2e-31337"));
}

#[test]
fn plan_with_a_wrong_redis_password_reports_the_failure_without_the_password() {
    let secured = Secured::start("right-horse-battery");
    let dir = tempfile::tempdir().expect("temp dir");
    let wrong = write_file(dir.path(), "password", "wrong-staple-93");
    let policy = write_file(
        dir.path(),
        "policy.yaml",
        &format!(
            "apiVersion: autopilot.redis.io/v1alpha1\nkind: RedisPolicy\nmetadata: {{name: auth}}\n\
             spec:\n  target: {{endpoints: ['{}']}}\n  auth: {{passwordFile: '{}'}}\n  \
             sampling: {{interval: 2s, timeout: 1s}}\n  scaling:\n    minReplicas: 1\n    \
             maxReplicas: 3\n    metrics:\n      - {{redis: used_memory, window: 2s, target: 1e9}}\n",
            secured.redis.addr(),
            wrong.display()
        ),
    );
    let run = plan(&policy, &[]);
    assert_eq!(run.code, Some(2), "{}{}", run.stdout, run.stderr);
    assert!(run.stdout.contains("authentication failed"), "{}", run.stdout);
    assert!(!run.stdout.contains("wrong-staple-93") && !run.stderr.contains("wrong-staple-93"));
    assert!(!run.stdout.contains("right-horse-battery"));

    std::fs::remove_file(&wrong).expect("remove the password file");
    let run = plan(&policy, &[]);
    assert_eq!(run.code, Some(1), "{}", run.stderr);
    assert!(run.stderr.contains("password") && run.stderr.contains("spec.auth"), "{}", run.stderr);
}
