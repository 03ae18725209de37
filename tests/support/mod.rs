//! Real servers for integration tests and benchmarks: `redis-server`, the Redis exporter and
//! Prometheus, each started on a free loopback port in its own temp dir and killed by PID on
//! drop. A missing binary fails the test loudly, naming the package that provides it:
//! a test that skips silently would prove nothing.
#![allow(dead_code)] // each test binary uses a different part of the harness

pub mod crypt;
pub mod daemon;
pub mod failover;
pub mod kube_fake;
pub mod pods;
pub mod policy_daemon;
pub mod resp;
pub mod seed;

use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use tempfile::TempDir;

/// Panics with an install hint when `binary` is not on PATH.
pub fn require(binary: &str, package: &str) -> PathBuf {
    let found = std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths).map(|dir| dir.join(binary)).find(|p| p.is_file())
    });
    found.unwrap_or_else(|| {
        panic!(
            "`{binary}` not found on PATH: install the Debian package `{package}` \
             (scripts/install-test-deps does it)"
        )
    })
}

/// Where test servers listen: below Linux's ephemeral range (32768-60999 by default), which
/// the kernel hands to outgoing connections (a test's client, a replica's link to its
/// master). A port found free in that range can be taken by one of those before the server
/// that was meant for it starts: a local fleet's second port once was, and its instance
/// failed to start.
const SERVER_PORTS: std::ops::Range<u16> = 20_000..32_768;

/// A port nobody listens on right now, and no other test of this binary was given.
pub fn free_port() -> u16 {
    free_ports(1)
}

/// A base port with `count` free ports from it, never overlapping a range another test of
/// this binary was given (tests run in parallel and start their servers later).
pub fn free_ports(count: u16) -> u16 {
    static NEXT: std::sync::Mutex<Option<u16>> = std::sync::Mutex::new(None);
    let span = SERVER_PORTS.end - SERVER_PORTS.start;
    let mut next = NEXT.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
    // Each test binary starts at its own place in the range, so one that runs right after
    // another does not reach for the ports its predecessor's servers just let go.
    let offset = u16::try_from(std::process::id() % u32::from(span)).unwrap_or(0);
    let mut base = next.unwrap_or(SERVER_PORTS.start + offset);
    for _ in 0..span {
        if base.saturating_add(count) > SERVER_PORTS.end {
            base = SERVER_PORTS.start;
        }
        let range = base..base + count;
        if range.clone().all(|port| TcpListener::bind(("127.0.0.1", port)).is_ok()) {
            *next = Some(range.end);
            return base;
        }
        base += 1;
    }
    panic!("no {count} consecutive free ports in {SERVER_PORTS:?}");
}

/// A local fleet of `redis-server`s from `base_port`, its data under `dir`, run by the fleet
/// itself, with default health settings and `timeout` for every Redis call.
pub fn local_config(
    dir: &Path,
    base_port: u16,
    timeout: Duration,
) -> redis_autopilot::cluster::local::LocalConfig {
    redis_autopilot::cluster::local::LocalConfig {
        redis_server: require("redis-server", "redis-server").display().to_string(),
        base_port,
        data_dir: dir.to_owned(),
        access: redis_autopilot::sample::redis::Access::default(),
        timeout,
        owns_processes: true,
    }
}

/// `count` string keys `prefix:N` of `size` bytes that LZF cannot shrink much.
pub fn set_strings(redis: &Redis, prefix: &str, count: usize, size: usize) {
    let client = redis::Client::open(format!("redis://{}/", redis.addr())).expect("client");
    let mut con = client.get_connection().expect("connect");
    for batch in (0..count).collect::<Vec<_>>().chunks(5000) {
        let mut pipe = redis::pipe();
        for &i in batch {
            let mut x = (i as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
            let value: String = (0..size)
                .map(|_| {
                    x ^= x << 13;
                    x ^= x >> 7;
                    x ^= x << 17;
                    char::from(b'!' + (x % 90) as u8)
                })
                .collect();
            pipe.cmd("SET").arg(format!("{prefix}:{i}")).arg(value);
        }
        pipe.query::<()>(&mut con).expect("set strings");
    }
}

/// Scales `cluster` to `to` as the daemon's action path does: the recorded master handed over
/// first when `to` removes it ([`redis_autopilot::act::hand_over::resize`]), then the
/// backend's `scale`, which only resizes.
pub async fn resize<C: redis_autopilot::cluster::Cluster>(
    cluster: &C,
    to: u16,
    access: &redis_autopilot::sample::redis::Access,
    timeout: Duration,
) -> Result<(), redis_autopilot::cluster::ClusterError> {
    use redis_autopilot::act::hand_over::{self, HandOver};
    let health = redis_autopilot::policy::Health::default();
    let context =
        redis_autopilot::failover::Context { access, timeout, guard: None, actor: "test" };
    let from = cluster.replicas().await?;
    hand_over::resize(cluster, from, to, &HandOver { health: &health, context }).await.map(drop)
}

/// One health probe of a local fleet with a fresh memory, as a daemon that just started
/// makes it, and its promotions carried out: what the daemon's loop does, without the loop.
pub async fn settle(
    fleet: &redis_autopilot::cluster::local::LocalFleet,
    access: &redis_autopilot::sample::redis::Access,
    timeout: Duration,
) -> Vec<redis_autopilot::decide::HealthDecision> {
    use redis_autopilot::decide::health::{self, HealthDecision, HealthMemory};
    use redis_autopilot::failover::{self, Probe};
    use redis_autopilot::sample::redis::{HEALTH_SECTIONS, RedisSampler};

    let prober = RedisSampler::with_sections(access.clone(), timeout, HEALTH_SECTIONS);
    let probe = Probe::take(fleet, &prober).await.expect("health probe");
    let mut memory = HealthMemory::default();
    let assessment = health::assess(
        &redis_autopilot::policy::Health::default(),
        None,
        probe.input(),
        &mut memory,
        true,
        chrono::Utc::now(),
    );
    let context = failover::Context { access, timeout, guard: None, actor: "test" };
    for decision in &assessment.decisions {
        match decision {
            HealthDecision::Failover { from, to, epoch, .. } => {
                let to = probe.member(to).expect("a member");
                let from = match from.as_deref().and_then(|from| probe.member(from)) {
                    Some(old) => failover::Replaced::Down(old),
                    None => failover::Replaced::Nothing,
                };
                failover::fail_over(fleet, &probe.members, from, to, *epoch, &context)
                    .await
                    .expect("failover");
            }
            HealthDecision::Promote { instance, epoch, .. } => {
                let member = probe.member(instance).expect("a member");
                failover::promote(fleet, member, *epoch, &context).await.expect("promote");
            }
            _ => {}
        }
    }
    assessment.decisions
}

fn wait_for_port(port: u16, child: &mut Child, what: &str, log: &Path) {
    wait_for_addr("127.0.0.1", port, child, what, log);
}

fn wait_for_addr(host: &str, port: u16, child: &mut Child, what: &str, log: &Path) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while Instant::now() < deadline {
        if TcpStream::connect((host, port)).is_ok() {
            return;
        }
        if let Ok(Some(status)) = child.try_wait() {
            let log = std::fs::read_to_string(log).unwrap_or_default();
            panic!("{what} exited with {status} before listening on {port}:\n{log}");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    panic!("{what} did not listen on {port} within 20 s");
}

/// A child process killed (SIGKILL) and reaped on drop, with its temp dir removed after.
pub struct Process {
    pub child: Child,
    pub dir: TempDir,
}

impl Process {
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn signal(&self, signal: &str) {
        let status = Command::new("kill")
            .args([&format!("-{signal}"), &self.pid().to_string()])
            .status()
            .expect("run kill");
        assert!(status.success(), "kill -{signal} {}", self.pid());
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A real `redis-server` on loopback, without persistence unless asked.
pub struct Redis {
    /// The loopback address it listens on (`127.0.0.1` unless started with `start_at`).
    pub host: String,
    pub port: u16,
    pub process: Process,
    /// Connection options `redis-cli` needs for this server (TLS), before `-h`/`-p`.
    cli_options: Vec<String>,
    /// The CA that signed its certificate, when it speaks TLS.
    tls_ca: Option<PathBuf>,
}

impl Redis {
    pub fn start(extra: &[&str]) -> Self {
        Self::start_on(free_port(), extra)
    }

    /// A server on a given port: a restart at the address a killed one had.
    pub fn start_on(port: u16, extra: &[&str]) -> Self {
        let listen = ["--port".to_owned(), port.to_string()];
        Self::spawn("127.0.0.1", port, &listen, extra, None)
    }

    /// A server on another loopback address (`127.0.0.2`, ...): several servers on one port,
    /// the way pods differ by IP and share the Redis port.
    pub fn start_at(host: &str, port: u16, extra: &[&str]) -> Self {
        let listen = ["--port".to_owned(), port.to_string()];
        Self::spawn(host, port, &listen, extra, None)
    }

    /// A server that speaks only TLS (plain TCP off), with `tls`'s server certificate and no
    /// client certificates required. `port` is the TLS port; `cli` talks TLS to it.
    pub fn start_tls(tls: &TlsFiles, extra: &[&str]) -> Self {
        let port = free_port();
        let listen = [
            "--port".to_owned(),
            "0".to_owned(),
            "--tls-port".to_owned(),
            port.to_string(),
            "--tls-cert-file".to_owned(),
            tls.server_cert.display().to_string(),
            "--tls-key-file".to_owned(),
            tls.server_key.display().to_string(),
            "--tls-ca-cert-file".to_owned(),
            tls.ca.display().to_string(),
            "--tls-auth-clients".to_owned(),
            "no".to_owned(),
        ];
        Self::spawn("127.0.0.1", port, &listen, extra, Some(tls.ca.clone()))
    }

    fn spawn(
        host: &str,
        port: u16,
        listen: &[String],
        extra: &[&str],
        tls_ca: Option<PathBuf>,
    ) -> Self {
        let binary = require("redis-server", "redis-server");
        let dir = tempfile::tempdir().expect("temp dir");
        let log = dir.path().join("redis.log");
        let mut args: Vec<String> = listen.to_vec();
        args.extend([
            "--bind".into(),
            host.into(),
            "--dir".into(),
            dir.path().display().to_string(),
            "--logfile".into(),
            log.display().to_string(),
            "--save".into(),
            String::new(),
            "--appendonly".into(),
            "no".into(),
            "--repl-diskless-sync-delay".into(),
            "0".into(),
        ]);
        args.extend(extra.iter().map(|s| s.to_string()));
        let mut child = Command::new(binary)
            .args(&args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn redis-server");
        wait_for_addr(host, port, &mut child, "redis-server", &log);
        let cli_options = match &tls_ca {
            Some(ca) => vec!["--tls".to_owned(), "--cacert".to_owned(), ca.display().to_string()],
            None => Vec::new(),
        };
        Self { host: host.to_owned(), port, process: Process { child, dir }, cli_options, tls_ca }
    }

    /// A TLS-only replica of the TLS-only `master`, replicating over TLS with the same files.
    pub fn tls_replica_of(master: &Redis, tls: &TlsFiles) -> Self {
        let port = master.port.to_string();
        Self::start_tls(tls, &["--tls-replication", "yes", "--replicaof", &master.host, &port])
    }

    pub fn master() -> Self {
        Self::start(&[])
    }

    pub fn replica_of(master: &Redis) -> Self {
        Self::start(&["--replicaof", "127.0.0.1", &master.port.to_string()])
    }

    pub fn addr(&self) -> String {
        format!("{}:{}", self.host, self.port)
    }

    /// A `redis` crate client for this server: `rediss://` trusting the test CA when it
    /// speaks TLS, plain `redis://` otherwise.
    pub fn client(&self) -> redis::Client {
        match &self.tls_ca {
            None => redis::Client::open(format!("redis://{}/", self.addr())).expect("client"),
            Some(ca) => redis::Client::build_with_tls(
                format!("rediss://{}/", self.addr()),
                redis::TlsCertificates {
                    client_tls: None,
                    root_cert: Some(std::fs::read(ca).expect("read the test CA")),
                },
            )
            .expect("TLS client"),
        }
    }

    /// Runs `redis-cli` against this server and returns its stdout.
    pub fn cli(&self, args: &[&str]) -> String {
        let binary = require("redis-cli", "redis-tools");
        let out = Command::new(binary)
            .args(&self.cli_options)
            .args(["-h", &self.host, "-p", &self.port.to_string()])
            .args(args)
            .output()
            .expect("run redis-cli");
        assert!(
            out.status.success(),
            "redis-cli {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// One `INFO` field as redis-cli reports it.
    pub fn info_field(&self, field: &str) -> Option<String> {
        self.cli(&["INFO"]).lines().find_map(|line| {
            let (key, value) = line.split_once(':')?;
            (key == field).then(|| value.trim().to_owned())
        })
    }

    /// Waits until `field` reads `value` (replication settling, say).
    pub fn wait_for_field(&self, field: &str, value: &str) {
        let deadline = Instant::now() + Duration::from_secs(20);
        while Instant::now() < deadline {
            if self.info_field(field).as_deref() == Some(value) {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!("{field} never became {value} on {}", self.addr());
    }
}

/// A throwaway CA and a server certificate it signed for `IP:127.0.0.1` and `DNS:localhost`
/// (an address and a host name are verified differently), made with the
/// `openssl` CLI in a temp dir (removed on drop).
pub struct TlsFiles {
    pub ca: PathBuf,
    pub server_cert: PathBuf,
    pub server_key: PathBuf,
    pub dir: TempDir,
}

impl TlsFiles {
    pub fn generate() -> Self {
        let openssl = require("openssl", "openssl");
        let dir = tempfile::tempdir().expect("temp dir");
        let path = |name: &str| dir.path().join(name);
        let run = |args: &[&str]| {
            let out = Command::new(&openssl)
                .args(args)
                .current_dir(dir.path())
                .output()
                .expect("run openssl");
            assert!(
                out.status.success(),
                "openssl {args:?}: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        };
        // P-256 keys: quick to generate, and both rustls and OpenSSL accept them.
        let ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"];
        run(&[
            &["req", "-x509"],
            &ec[..],
            &[
                "-keyout",
                "ca.key",
                "-out",
                "ca.pem",
                "-days",
                "1",
                "-subj",
                "/CN=redis-autopilot test CA",
                "-addext",
                "basicConstraints=critical,CA:TRUE",
                "-addext",
                "keyUsage=critical,keyCertSign,cRLSign",
            ],
        ]
        .concat());
        run(&[
            &["req"],
            &ec[..],
            &["-keyout", "server.key", "-out", "server.csr", "-subj", "/CN=127.0.0.1"],
        ]
        .concat());
        std::fs::write(
            path("server.ext"),
            "subjectAltName=IP:127.0.0.1,DNS:localhost\nbasicConstraints=CA:FALSE\n\
             keyUsage=critical,digitalSignature\nextendedKeyUsage=serverAuth\n",
        )
        .expect("write server.ext");
        run(&[
            "x509",
            "-req",
            "-in",
            "server.csr",
            "-CA",
            "ca.pem",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-out",
            "server.pem",
            "-days",
            "1",
            "-extfile",
            "server.ext",
        ]);
        Self {
            ca: path("ca.pem"),
            server_cert: path("server.pem"),
            server_key: path("server.key"),
            dir,
        }
    }
}

/// A master and `replicas` replicas, linked and in sync.
/// 300 each of hashes, lists, sets and sorted sets on `master` (`hash:N`, `list:N`, `set:N`,
/// `zset:N`; over TLS when it speaks TLS), then waits until every replica has the master's
/// replication offset.
pub fn load_collections<'a>(master: &Redis, replicas: impl IntoIterator<Item = &'a Redis>) {
    let mut con = master.client().get_connection().expect("connect");
    let mut pipe = redis::pipe();
    for i in 0..300 {
        pipe.cmd("HSET").arg(format!("hash:{i}")).arg("a").arg(i).arg("b").arg("x".repeat(i % 50));
        pipe.cmd("RPUSH").arg(format!("list:{i}")).arg(i).arg(i + 1).arg("tail");
        pipe.cmd("SADD").arg(format!("set:{i}")).arg("m1").arg(format!("m{i}"));
        pipe.cmd("ZADD").arg(format!("zset:{i}")).arg(i).arg("one").arg(i * 2).arg("two");
    }
    pipe.query::<()>(&mut con).expect("load data");
    let offset = master.info_field("master_repl_offset").expect("offset");
    for replica in replicas {
        let deadline = Instant::now() + Duration::from_secs(20);
        while replica.info_field("slave_repl_offset").as_deref() != Some(offset.as_str()) {
            assert!(Instant::now() < deadline, "{} never caught up", replica.addr());
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

pub fn replicated(replicas: usize) -> (Redis, Vec<Redis>) {
    let master = Redis::master();
    let replicas: Vec<Redis> = (0..replicas).map(|_| Redis::replica_of(&master)).collect();
    for r in &replicas {
        r.wait_for_field("master_link_status", "up");
    }
    master.wait_for_field("connected_slaves", &replicas.len().to_string());
    // The master counts a replica connected from its first byte, and lists it `online` (what a
    // snapshot source must be) only once it streams to it, which can come after the replica
    // reports its link up.
    for index in 0..replicas.len() {
        let deadline = Instant::now() + Duration::from_secs(20);
        let field = format!("slave{index}");
        while !master.info_field(&field).is_some_and(|line| line.contains("state=online")) {
            assert!(Instant::now() < deadline, "{field} never online on {}", master.addr());
            std::thread::sleep(Duration::from_millis(50));
        }
    }
    (master, replicas)
}

/// `prometheus-redis-exporter` pointed at one Redis.
pub struct Exporter {
    pub port: u16,
    pub process: Process,
}

impl Exporter {
    pub fn start(redis: &Redis) -> Self {
        let binary = require("prometheus-redis-exporter", "prometheus-redis-exporter");
        let dir = tempfile::tempdir().expect("temp dir");
        let port = free_port();
        let log = dir.path().join("exporter.log");
        let log_file = std::fs::File::create(&log).expect("log file");
        let mut child = Command::new(binary)
            .arg(format!("--redis.addr=redis://{}", redis.addr()))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .stdin(Stdio::null())
            .stdout(log_file.try_clone().expect("log"))
            .stderr(log_file)
            .spawn()
            .expect("spawn prometheus-redis-exporter");
        wait_for_port(port, &mut child, "prometheus-redis-exporter", &log);
        Self { port, process: Process { child, dir } }
    }
}

/// A real Prometheus scraping the given targets every second.
pub struct Prometheus {
    pub port: u16,
    pub process: Process,
}

impl Prometheus {
    pub fn start(targets: &[u16]) -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        let targets: Vec<String> = targets.iter().map(|p| format!("'127.0.0.1:{p}'")).collect();
        let config = format!(
            "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\n\
             scrape_configs:\n  - job_name: redis\n    static_configs:\n      - targets: [{}]\n",
            targets.join(", ")
        );
        let data = dir.path().join("data");
        Self::launch(dir, &config, &data, &[])
    }

    /// A Prometheus that scrapes nothing and holds `openmetrics` (text ending in `# EOF`) as
    /// history, backfilled into its storage with `promtool tsdb create-blocks-from
    /// openmetrics` before it starts, as an operator backfills a new Prometheus.
    pub fn with_history(openmetrics: &str) -> Self {
        let promtool = require("promtool", "prometheus");
        let dir = tempfile::tempdir().expect("temp dir");
        let input = dir.path().join("history.om");
        std::fs::write(&input, openmetrics).expect("write the OpenMetrics history");
        let data = dir.path().join("data");
        let backfill = Command::new(promtool)
            .args(["tsdb", "create-blocks-from", "openmetrics"])
            .arg(&input)
            .arg(&data)
            .output()
            .expect("run promtool");
        assert!(
            backfill.status.success(),
            "promtool create-blocks-from openmetrics failed:\n{}{}",
            String::from_utf8_lossy(&backfill.stdout),
            String::from_utf8_lossy(&backfill.stderr)
        );
        // Blocks older than the default 15 days' retention are dropped at start; keep them
        // whatever the history's age.
        Self::launch(
            dir,
            "global:\n  scrape_interval: 1m\n",
            &data,
            &["--storage.tsdb.retention.time=30d"],
        )
    }

    /// Starts Prometheus in `dir` with `config`, its storage at `data`, on a free port.
    fn launch(dir: tempfile::TempDir, config: &str, data: &Path, extra: &[&str]) -> Self {
        let binary = require("prometheus", "prometheus");
        let port = free_port();
        let config_file = dir.path().join("prometheus.yml");
        std::fs::write(&config_file, config).expect("write prometheus.yml");
        let log = dir.path().join("prometheus.log");
        let log_file = std::fs::File::create(&log).expect("log file");
        let mut child = Command::new(binary)
            .arg(format!("--config.file={}", config_file.display()))
            .arg(format!("--storage.tsdb.path={}", data.display()))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .args(extra)
            .stdin(Stdio::null())
            .stdout(log_file.try_clone().expect("log"))
            .stderr(log_file)
            .spawn()
            .expect("spawn prometheus");
        wait_for_port(port, &mut child, "prometheus", &log);
        Self { port, process: Process { child, dir } }
    }

    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }
}

/// Starts `count` servers from a few threads. Ports are reserved first, all at once, so two
/// threads can never pick the same free port (a second server on a taken port would exit
/// while the first one answered the readiness probe in its place).
pub fn start_fleet(count: usize) -> Vec<Redis> {
    let reserved: Vec<TcpListener> =
        (0..count).map(|_| TcpListener::bind("127.0.0.1:0").expect("reserve a port")).collect();
    let ports: Vec<u16> =
        reserved.iter().map(|l| l.local_addr().expect("local addr").port()).collect();
    drop(reserved);
    let threads = 8.min(count.max(1));
    let chunk = count.div_ceil(threads).max(1);
    let fleet: Vec<Redis> = std::thread::scope(|scope| {
        let handles: Vec<_> = ports
            .chunks(chunk)
            .map(|ports| {
                scope.spawn(move || {
                    ports
                        .iter()
                        .map(|&port| Redis::start_on(port, &["--maxclients", "16"]))
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        handles.into_iter().flat_map(|h| h.join().expect("start thread")).collect()
    });
    assert_eq!(fleet.len(), count);
    fleet
}

/// Where `scripts/install-test-deps` installs moto (a venv under the user's cache dir).
pub fn moto_server_binary() -> PathBuf {
    let cache = std::env::var_os("XDG_CACHE_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache")))
        .expect("HOME or XDG_CACHE_HOME is set");
    let binary = cache.join("redis-autopilot/moto/bin/moto_server");
    assert!(
        binary.is_file(),
        "`{}` not found: run scripts/install-test-deps (it installs moto[server] there)",
        binary.display()
    );
    binary
}

/// The Python of the venv `moto_server` runs from (boto3 is one of moto's dependencies).
fn moto_python() -> PathBuf {
    let python = moto_server_binary().with_file_name("python");
    assert!(
        python.is_file(),
        "`{}` not found: run scripts/install-test-deps (its moto venv provides it)",
        python.display()
    );
    python
}

/// Runs `script` with the moto venv's Python and `args`; returns its stdout, panicking with
/// its stderr when it fails.
fn moto_python_run(script: &str, args: &[&str]) -> String {
    let out = Command::new(moto_python())
        .arg("-c")
        .arg(script)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .expect("run the moto venv's python");
    assert!(
        out.status.success(),
        "python (boto3 against moto) failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// A boto3 client maker for `ENDPOINT`; the other scripts start with it.
const BOTO3_CLIENT: &str = r#"
import json, sys
import boto3
from botocore.exceptions import ClientError

def client(service, endpoint, key_id="testing", secret="testing"):
    return boto3.client(service, endpoint_url=endpoint, region_name="us-east-1",
                        aws_access_key_id=key_id, aws_secret_access_key=secret)
"#;

/// argv: endpoint, buckets... Creates an IAM user, its access key and an inline policy
/// allowing `s3:*`, then the buckets: exactly the requests of moto's no-auth window. Then
/// checks that the window is over (an unknown key is refused) and that the new key works,
/// and prints the key as JSON.
const AUTH_SETUP: &str = r#"
endpoint, buckets = sys.argv[1], sys.argv[2:]
iam = client("iam", endpoint)
iam.create_user(UserName="autopilot")
key = iam.create_access_key(UserName="autopilot")["AccessKey"]
iam.put_user_policy(UserName="autopilot", PolicyName="s3-all", PolicyDocument=json.dumps({
    "Version": "2012-10-17",
    "Statement": [{"Effect": "Allow", "Action": "s3:*", "Resource": "*"}],
}))
for bucket in buckets:
    client("s3", endpoint).create_bucket(Bucket=bucket)
try:
    client("s3", endpoint).list_buckets()
    sys.exit("moto accepted an unknown access key after the setup: it does not check credentials")
except ClientError as e:
    if e.response["Error"]["Code"] != "InvalidAccessKeyId":
        raise
client("s3", endpoint, key["AccessKeyId"], key["SecretAccessKey"]).list_buckets()
print(json.dumps({"id": key["AccessKeyId"], "secret": key["SecretAccessKey"]}))
"#;

/// Requests `AUTH_SETUP` makes before the unknown-key probe, buckets aside.
const AUTH_SETUP_REQUESTS: usize = 3;

/// argv: endpoint, key id, secret, bucket. Prints how many multipart uploads are open.
const OPEN_UPLOADS: &str = r#"
endpoint, key_id, secret, bucket = sys.argv[1:]
s3 = client("s3", endpoint, key_id, secret)
print(len(s3.list_multipart_uploads(Bucket=bucket).get("Uploads", [])))
"#;

/// An IAM access key that a [`MotoServer::start_with_auth`] server accepts for `s3:*`.
#[derive(Debug, Clone)]
pub struct AccessKey {
    pub id: String,
    pub secret: String,
}

/// An S3-compatible server (moto) on loopback: path-style, plain HTTP, everything in memory.
/// [`MotoServer::start`] accepts any credentials; [`MotoServer::start_with_auth`] checks them.
pub struct MotoServer {
    pub port: u16,
    pub process: Process,
    /// The key it checks requests against, when it does.
    auth: Option<AccessKey>,
}

impl MotoServer {
    /// A server that accepts any credentials (moto does not check signatures by default).
    pub fn start() -> Self {
        Self::spawn(&[])
    }

    /// A server that checks credentials as S3 does: every request must be signed by an IAM
    /// access key it knows (`InvalidAccessKeyId`), with that key's secret
    /// (`SignatureDoesNotMatch`), and be allowed by the key's policy (`AccessDenied`), all 403.
    /// moto does so after its first `INITIAL_NO_AUTH_ACTION_COUNT` requests; those create
    /// the user, its key, a policy allowing `s3:*`, and `buckets` (with boto3 from moto's
    /// venv). Returns the key.
    pub fn start_with_auth(buckets: &[&str]) -> (Self, AccessKey) {
        let window = (AUTH_SETUP_REQUESTS + buckets.len()).to_string();
        let mut server = Self::spawn(&[("INITIAL_NO_AUTH_ACTION_COUNT", &window)]);
        let endpoint = server.endpoint();
        let args: Vec<&str> =
            std::iter::once(endpoint.as_str()).chain(buckets.iter().copied()).collect();
        let out = moto_python_run(&format!("{BOTO3_CLIENT}{AUTH_SETUP}"), &args);
        let key: serde_json::Value = serde_json::from_str(&out).expect("the access key as JSON");
        let field = |name: &str| key[name].as_str().expect("id and secret").to_owned();
        let key = AccessKey { id: field("id"), secret: field("secret") };
        server.auth = Some(key.clone());
        (server, key)
    }

    fn spawn(env: &[(&str, &str)]) -> Self {
        let binary = moto_server_binary();
        let dir = tempfile::tempdir().expect("temp dir");
        let port = free_port();
        let log = dir.path().join("moto.log");
        let log_file = std::fs::File::create(&log).expect("log file");
        let mut child = Command::new(binary)
            .args(["-H", "127.0.0.1", "-p", &port.to_string()])
            .envs(env.iter().copied())
            .stdin(Stdio::null())
            .stdout(log_file.try_clone().expect("log"))
            .stderr(log_file)
            .spawn()
            .expect("spawn moto_server");
        wait_for_port(port, &mut child, "moto_server", &log);
        Self { port, process: Process { child, dir }, auth: None }
    }

    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// One unsigned HTTP request (refused by a server started with auth); returns status and
    /// body.
    pub fn request(&self, method: &str, path: &str) -> (u16, String) {
        use std::io::{Read as _, Write as _};
        let mut stream = TcpStream::connect(("127.0.0.1", self.port)).expect("connect to moto");
        write!(
            stream,
            "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1:{}\r\nContent-Length: 0\r\n\
             Connection: close\r\n\r\n",
            self.port
        )
        .expect("send");
        let mut response = String::new();
        stream.read_to_string(&mut response).expect("read response");
        let status = response
            .split_whitespace()
            .nth(1)
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(|| panic!("not an HTTP response: {response}"));
        let body = response.split_once("\r\n\r\n").map(|(_, b)| b.to_owned()).unwrap_or_default();
        (status, body)
    }

    /// Creates `bucket` (on a server started with auth, name it to `start_with_auth` instead).
    pub fn create_bucket(&self, bucket: &str) {
        let (status, body) = self.request("PUT", &format!("/{bucket}"));
        assert_eq!(status, 200, "create bucket {bucket}: {body}");
    }

    /// Multipart uploads started and neither completed nor aborted (listed with the server's
    /// key when it checks credentials).
    pub fn open_uploads(&self, bucket: &str) -> usize {
        if let Some(key) = &self.auth {
            let endpoint = self.endpoint();
            let args = [endpoint.as_str(), &key.id, &key.secret, bucket];
            let out = moto_python_run(&format!("{BOTO3_CLIENT}{OPEN_UPLOADS}"), &args);
            return out.trim().parse().unwrap_or_else(|_| panic!("not a count: {out}"));
        }
        let (status, body) = self.request("GET", &format!("/{bucket}?uploads"));
        assert_eq!(status, 200, "list multipart uploads: {body}");
        body.matches("<UploadId>").count()
    }
}

/// What a [`Proxy`] does to the bytes it forwards.
#[derive(Debug, Clone, Copy)]
pub enum ProxyFault {
    /// Forward faithfully.
    None,
    /// Flip one bit of the upstream's reply at this byte offset (per connection).
    FlipDownstreamByte(u64),
    /// After this many bytes from the client, close every connection and refuse new ones:
    /// the server "goes away" mid-request while its state survives.
    CutAfterUpstreamBytes(u64),
}

/// A TCP proxy on loopback in front of `upstream`, with a fault.
pub struct Proxy {
    pub port: u16,
    cut: std::sync::Arc<std::sync::atomic::AtomicBool>,
}

impl Proxy {
    pub fn start(upstream: u16, fault: ProxyFault) -> Self {
        use std::sync::Arc;
        use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind proxy");
        let port = listener.local_addr().expect("addr").port();
        let cut = Arc::new(AtomicBool::new(false));
        let sent = Arc::new(AtomicU64::new(0));
        let flag = cut.clone();
        std::thread::spawn(move || {
            for client in listener.incoming() {
                let Ok(client) = client else { continue };
                if flag.load(Ordering::SeqCst) {
                    drop(client);
                    continue;
                }
                let Ok(server) = TcpStream::connect(("127.0.0.1", upstream)) else { continue };
                let (c2, s2) =
                    (client.try_clone().expect("clone"), server.try_clone().expect("clone"));
                let (flag_up, sent_up) = (flag.clone(), sent.clone());
                std::thread::spawn(move || {
                    pump(client, server, |buf, _| {
                        if let ProxyFault::CutAfterUpstreamBytes(limit) = fault {
                            let total = sent_up.fetch_add(buf.len() as u64, Ordering::SeqCst);
                            if total + buf.len() as u64 > limit || flag_up.load(Ordering::SeqCst) {
                                flag_up.store(true, Ordering::SeqCst);
                                return false;
                            }
                        }
                        true
                    })
                });
                let flag_down = flag.clone();
                std::thread::spawn(move || {
                    pump(s2, c2, |buf, offset| {
                        if let ProxyFault::FlipDownstreamByte(at) = fault
                            && (offset..offset + buf.len() as u64).contains(&at)
                        {
                            buf[(at - offset) as usize] ^= 0x10;
                        }
                        !flag_down.load(Ordering::SeqCst)
                    })
                });
            }
        });
        Self { port, cut }
    }

    /// Whether a cut fault fired.
    pub fn was_cut(&self) -> bool {
        self.cut.load(std::sync::atomic::Ordering::SeqCst)
    }
}

/// Copies `from` to `to`, letting `inspect` alter each buffer (given its stream offset) or
/// stop the copy (false: both sockets are shut down).
fn pump(mut from: TcpStream, mut to: TcpStream, mut inspect: impl FnMut(&mut [u8], u64) -> bool) {
    use std::io::{Read as _, Write as _};
    let mut buf = vec![0_u8; 64 * 1024];
    let mut offset = 0_u64;
    loop {
        let n = match from.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        if !inspect(&mut buf[..n], offset) {
            break;
        }
        offset += n as u64;
        if to.write_all(&buf[..n]).is_err() {
            break;
        }
    }
    let _ = from.shutdown(std::net::Shutdown::Both);
    let _ = to.shutdown(std::net::Shutdown::Both);
}
