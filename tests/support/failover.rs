//! The failover harness shared by `tests/failover.rs` and `benches/failover.rs`: a local fleet
//! of three under the daemon binary, a writer that records every acknowledged write, and a
//! checker that fails if two instances report role master and accept a write at once.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use super::{free_port, require};

pub const INSTANCES: u16 = 3;
pub const POLICY: &str = "failover-e2e";

/// A sync connection with short deadlines, or `None` when nothing answers.
pub fn connect(port: u16, deadline: Duration) -> Option<redis::Connection> {
    connect_at("127.0.0.1", port, deadline)
}

/// [`connect`] to another loopback address (`127.0.0.2`, ...): pods differ by IP.
pub fn connect_at(host: &str, port: u16, deadline: Duration) -> Option<redis::Connection> {
    let client = redis::Client::open(format!("redis://{host}:{port}/")).ok()?;
    let connection = client.get_connection_with_timeout(deadline).ok()?;
    connection.set_read_timeout(Some(deadline)).ok()?;
    connection.set_write_timeout(Some(deadline)).ok()?;
    Some(connection)
}

pub fn info_field(port: u16, field: &str) -> Option<String> {
    info_field_at("127.0.0.1", port, field)
}

/// One `INFO replication` field of the Redis at `host:port`.
pub fn info_field_at(host: &str, port: u16, field: &str) -> Option<String> {
    let mut connection = connect_at(host, port, Duration::from_millis(500))?;
    let text: String = redis::cmd("INFO").arg("replication").query(&mut connection).ok()?;
    text.lines()
        .find_map(|line| line.strip_prefix(field)?.strip_prefix(':').map(|v| v.trim().to_owned()))
}

/// Keys over every database of the Redis on `port`.
pub fn dbsize(port: u16) -> Option<u64> {
    let mut con = connect(port, Duration::from_secs(2))?;
    redis::cmd("DBSIZE").query(&mut con).ok()
}

pub fn wait_until<T>(
    timeout: Duration,
    what: &str,
    log: impl Fn() -> String,
    f: impl Fn() -> Option<T>,
) -> T {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(value) = f() {
            return value;
        }
        assert!(Instant::now() < deadline, "{what} within {timeout:?}\n{}", log());
        std::thread::sleep(Duration::from_millis(20));
    }
}

pub fn signal(pid: u32, signal: &str) {
    let status = Command::new("kill").args([&format!("-{signal}"), &pid.to_string()]).status();
    assert!(status.is_ok_and(|s| s.success()), "kill -{signal} {pid}");
}

/// A local fleet under the daemon (three instances unless [`Fleet::start_with`] says), with
/// the daemon's log in the temp dir.
pub struct Fleet {
    pub base: u16,
    instances: u16,
    pub data: PathBuf,
    pub policy: PathBuf,
    pub log: PathBuf,
    /// The running daemon's `--listen` address (`127.0.0.1:PORT`).
    pub listen: String,
    daemon: Option<Child>,
    _dir: tempfile::TempDir,
}

impl Fleet {
    pub fn start(health: &str) -> Self {
        Self::start_with(INSTANCES, health)
    }

    /// A fleet of `instances`, `extra` appended to the policy's spec as [`Fleet::start`] does.
    pub fn start_with(instances: u16, health: &str) -> Self {
        let server = require("redis-server", "redis-server");
        let dir = tempfile::tempdir().expect("temp dir");
        let base = super::free_ports(instances);
        let data = dir.path().join("data");
        let policies = dir.path().join("policies");
        std::fs::create_dir(&policies).expect("policy dir");
        let policy = policies.join("failover.yaml");
        std::fs::write(
            &policy,
            format!(
                "\
apiVersion: autopilot.redis.io/v1alpha1
kind: RedisPolicy
metadata:
  name: {POLICY}
spec:
  target:
    local:
      redisServer: {server}
      basePort: {base}
      dataDir: {data}
  sampling:
    interval: 1s
    timeout: 500ms
  scaling:
    minReplicas: {instances}
    maxReplicas: {instances}
    metrics:
      - redis: instantaneous_ops_per_sec
        target: 1000000
  health:
    probeInterval: 100ms
    probeTimeout: 300ms
    maxFailoversPerHour: 100
    minReplicasToWrite: 1
    minReplicasMaxLag: 10s
{health}",
                server = server.display(),
                data = data.display(),
            ),
        )
        .expect("write the policy");
        let log = dir.path().join("daemon.log");
        let listen = String::new();
        let mut fleet =
            Self { base, instances, data, policy, log, listen, daemon: None, _dir: dir };
        fleet.spawn_daemon();
        fleet.wait_healthy(Duration::from_secs(30));
        fleet
    }

    pub fn spawn_daemon(&mut self) {
        self.listen = format!("127.0.0.1:{}", free_port());
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .expect("daemon log");
        let child = Command::new(env!("CARGO_BIN_EXE_redis-autopilot"))
            .arg("run")
            .arg("--policies")
            .arg(self.policy.parent().expect("policy dir"))
            .args(["--listen", &self.listen])
            .args(["--max-actions-per-hour", "1000"])
            .env("RUST_LOG", "info")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("spawn redis-autopilot");
        self.daemon = Some(child);
    }

    /// SIGKILL: the daemon dies as in a node crash; its redis-servers keep running.
    pub fn kill_daemon(&mut self) {
        if let Some(mut child) = self.daemon.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// SIGTERM, as a clean shutdown: waits up to 30 s for the daemon to exit and says whether
    /// it did.
    pub fn stop_daemon(&mut self) -> bool {
        let Some(mut child) = self.daemon.take() else { return true };
        let _ = Command::new("kill").args(["-TERM", &child.id().to_string()]).status();
        let deadline = Instant::now() + Duration::from_secs(30);
        while Instant::now() < deadline {
            if matches!(child.try_wait(), Ok(Some(_))) {
                return true;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = child.kill();
        let _ = child.wait();
        false
    }

    /// The running daemon's pid.
    pub fn daemon_pid(&self) -> Option<u32> {
        self.daemon.as_ref().map(Child::id)
    }

    /// Waits until every instance holds `keys` keys (the others resynced from a restore).
    pub fn wait_every_instance_holds(&self, keys: u64, timeout: Duration) {
        for port in self.ports() {
            wait_until(
                timeout,
                &format!("{port} holds every key"),
                || self.log(),
                || (dbsize(port)? == keys).then_some(()),
            );
        }
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    pub fn port(&self, ordinal: u16) -> u16 {
        self.base + ordinal
    }

    pub fn ordinal(&self, port: u16) -> u16 {
        port - self.base
    }

    /// The recorded master's port and epoch.
    pub fn record(&self) -> Option<(u16, u64)> {
        record(&self.data)
    }

    /// The pid in the instance's `redis.pid`; waits while redis-server (re)writes it, when
    /// the file is briefly empty.
    pub fn pid(&self, port: u16) -> u32 {
        let path = self.data.join(self.ordinal(port).to_string()).join("redis.pid");
        wait_until(
            Duration::from_secs(5),
            &format!("a pid in {}", path.display()),
            || self.log(),
            || std::fs::read_to_string(&path).ok()?.trim().parse().ok(),
        )
    }

    /// Exactly the recorded master reports master; every other instance replicates it with
    /// its link up, and acknowledging the master's stream. Returns the master's port.
    pub fn wait_healthy(&self, timeout: Duration) -> u16 {
        wait_until(
            timeout,
            "one master, every replica linked to it",
            || self.log(),
            || {
                let (master, _) = self.record()?;
                (info_field(master, "role")? == "master").then_some(())?;
                for port in self.ports().into_iter().filter(|&p| p != master) {
                    (info_field(port, "role")? == "slave").then_some(())?;
                    (info_field(port, "master_port")? == master.to_string()).then_some(())?;
                    (info_field(port, "master_link_status")? == "up").then_some(())?;
                }
                // A replica reports its link up once it has loaded the RDB, and the master
                // marks it online then too, but streams the writes it buffered during the sync
                // only once the replica's first ACK arrives. Until then those writes exist on the
                // master alone, and a master hung in that window takes them with it, as it would
                // under Sentinel. A PUBLISH (replicated, touching no key) that every replica
                // acknowledges (`WAIT`) proves the stream flows to each.
                let mut connection = connect(master, Duration::from_millis(500))?;
                redis::cmd("PUBLISH").arg("healthy").arg(1).query::<i64>(&mut connection).ok()?;
                let replicas = self.instances - 1;
                let acked: u16 =
                    redis::cmd("WAIT").arg(replicas).arg(500).query(&mut connection).ok()?;
                (acked == replicas).then_some(master)
            },
        )
    }

    pub fn ports(&self) -> Vec<u16> {
        (0..self.instances).map(|o| self.port(o)).collect()
    }
}

impl Drop for Fleet {
    fn drop(&mut self) {
        if let Some(child) = &self.daemon {
            let _ = Command::new("kill").args(["-TERM", &child.id().to_string()]).status();
        }
        if let Some(mut child) = self.daemon.take() {
            let deadline = Instant::now() + Duration::from_secs(10);
            while Instant::now() < deadline && matches!(child.try_wait(), Ok(None)) {
                std::thread::sleep(Duration::from_millis(50));
            }
            let _ = child.kill();
            let _ = child.wait();
        }
        // Instances adopted after a daemon restart, or hung: make sure none outlives the test.
        for ordinal in 0..self.instances {
            let path = self.data.join(ordinal.to_string()).join("redis.pid");
            if let Ok(pid) = std::fs::read_to_string(path) {
                let _ =
                    Command::new("kill").args(["-CONT", pid.trim()]).stderr(Stdio::null()).status();
                let _ =
                    Command::new("kill").args(["-KILL", pid.trim()]).stderr(Stdio::null()).status();
            }
        }
    }
}

pub fn record(data: &Path) -> Option<(u16, u64)> {
    let text = std::fs::read_to_string(data.join("state.json")).ok()?;
    let json: serde_json::Value = serde_json::from_str(&text).ok()?;
    let port = json["master"].as_str()?.rsplit(':').next()?.parse().ok()?;
    Some((port, json["epoch"].as_u64()?))
}

/// One acknowledged write: its number, the port that acknowledged it, and when.
#[derive(Debug, Clone, Copy)]
pub struct Ack {
    pub n: u64,
    pub port: u16,
    pub at: Instant,
}

/// Writes `w:N = N` for N = 0, 1, 2... to whichever instance the state file records as master,
/// following it across failovers, and keeps every acknowledged N.
pub struct Writer {
    stop: Arc<AtomicBool>,
    acks: Arc<Mutex<Vec<Ack>>>,
    handle: Option<JoinHandle<()>>,
}

impl Writer {
    pub fn start(data: &Path) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let acks = Arc::new(Mutex::new(Vec::new()));
        let data = data.to_owned();
        let handle = {
            let (stop, acks) = (Arc::clone(&stop), Arc::clone(&acks));
            std::thread::spawn(move || {
                let mut n = 0_u64;
                while !stop.load(Ordering::Relaxed) {
                    let Some((port, _)) = record(&data) else { continue };
                    let Some(mut connection) = connect(port, Duration::from_millis(200)) else {
                        std::thread::sleep(Duration::from_millis(5));
                        continue;
                    };
                    while !stop.load(Ordering::Relaxed) {
                        let key = format!("w:{n}");
                        let set = redis::cmd("SET").arg(&key).arg(n).query::<()>(&mut connection);
                        if set.is_err() {
                            break;
                        }
                        acks.lock().expect("acks").push(Ack { n, port, at: Instant::now() });
                        n += 1;
                        if record(&data).is_some_and(|(p, _)| p != port) {
                            break;
                        }
                    }
                    std::thread::sleep(Duration::from_millis(2));
                }
            })
        };
        Self { stop, acks, handle: Some(handle) }
    }

    pub fn acks(&self) -> Vec<Ack> {
        self.acks.lock().expect("acks").clone()
    }

    /// The first write acknowledged by `port` after `since`.
    pub fn first_ack_on(&self, port: u16, since: Instant) -> Option<Ack> {
        self.acks().into_iter().find(|a| a.port == port && a.at > since)
    }

    pub fn finish(mut self) -> Vec<Ack> {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(handle) = self.handle.take() {
            handle.join().expect("writer thread");
        }
        self.acks()
    }
}

/// Fails the test if two instances report role master and accept a write at the same moment.
pub struct Checker {
    stop: Arc<AtomicBool>,
    violations: Arc<Mutex<Vec<(Instant, String)>>>,
    handle: Option<JoinHandle<()>>,
}

impl Checker {
    pub fn start(ports: Vec<u16>) -> Self {
        Self::start_at(ports.into_iter().map(|port| ("127.0.0.1".to_owned(), port)).collect())
    }

    /// Checks the instances at these `(host, port)` addresses.
    pub fn start_at(addrs: Vec<(String, u16)>) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let violations = Arc::new(Mutex::new(Vec::new()));
        let handle = {
            let (stop, violations) = (Arc::clone(&stop), Arc::clone(&violations));
            std::thread::spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    let masters: Vec<&(String, u16)> = addrs
                        .iter()
                        .filter(|(h, p)| info_field_at(h, *p, "role").as_deref() == Some("master"))
                        .collect();
                    if masters.len() > 1 {
                        let accepting: Vec<&(String, u16)> = masters
                            .iter()
                            .copied()
                            .filter(|(h, p)| {
                                connect_at(h, *p, Duration::from_millis(200)).is_some_and(
                                    |mut c| {
                                        redis::cmd("SET")
                                            .arg("checker")
                                            .arg(1)
                                            .query::<()>(&mut c)
                                            .is_ok()
                                    },
                                )
                            })
                            .collect();
                        if accepting.len() > 1 {
                            violations.lock().expect("violations").push((
                                Instant::now(),
                                format!("masters {masters:?} both accepted a write"),
                            ));
                        }
                    }
                    std::thread::sleep(Duration::from_millis(10));
                }
            })
        };
        Self { stop, violations, handle: Some(handle) }
    }

    pub fn finish(self) -> Vec<String> {
        self.finish_timed().into_iter().map(|(_, violation)| violation).collect()
    }

    /// Every violation with when it was seen.
    pub fn finish_timed(mut self) -> Vec<(Instant, String)> {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(handle) = self.handle.take() {
            handle.join().expect("checker thread");
        }
        self.violations.lock().expect("violations").clone()
    }
}

/// The acknowledged writes that are not on `port` with their value.
pub fn missing_on(port: u16, acks: &[Ack]) -> Vec<Ack> {
    let mut connection = connect(port, Duration::from_secs(5)).expect("connect to the master");
    let mut missing = Vec::new();
    for chunk in acks.chunks(1000) {
        let keys: Vec<String> = chunk.iter().map(|a| format!("w:{}", a.n)).collect();
        let values: Vec<Option<u64>> =
            redis::cmd("MGET").arg(&keys).query(&mut connection).expect("MGET");
        for (ack, value) in chunk.iter().zip(values) {
            if value != Some(ack.n) {
                missing.push(*ack);
            }
        }
    }
    missing
}

/// Every acknowledged write is on `port` with its value.
pub fn assert_all_present(port: u16, acks: &[Ack], log: impl Fn() -> String) {
    let missing: Vec<u64> = missing_on(port, acks).iter().map(|a| a.n).collect();
    assert!(
        missing.is_empty(),
        "{} of {} acknowledged writes missing on {port}: {:?}...\n{}",
        missing.len(),
        acks.len(),
        &missing[..missing.len().min(20)],
        log()
    );
}
