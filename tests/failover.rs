//! Failover end to end: the built `redis-autopilot run` binary on a local fleet of three real
//! `redis-server` processes, a writer that records every acknowledged write, and a checker
//! that fails the test if two instances report role master and accept a write at the same
//! moment. Masters are killed with SIGKILL, hung with SIGSTOP, restarted empty; the daemon is
//! killed mid-failover; a human switches over with `redis-autopilot failover --graceful`.

mod support;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use support::{free_port, require};

const INSTANCES: u16 = 3;
const POLICY: &str = "failover-e2e";

/// Fleets take turns: on two cores, two fleets failing over at once would starve each other's
/// probes and make timing assertions about the machine, not the daemon.
static TURN: Mutex<()> = Mutex::new(());

fn turn() -> std::sync::MutexGuard<'static, ()> {
    TURN.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// A base port with `INSTANCES` free ports from it.
fn free_port_range() -> u16 {
    loop {
        let base = free_port();
        if base < 65_000
            && (base..base + INSTANCES)
                .all(|p| std::net::TcpListener::bind(("127.0.0.1", p)).is_ok())
        {
            return base;
        }
    }
}

/// A sync connection with short deadlines, or `None` when nothing answers.
fn connect(port: u16, deadline: Duration) -> Option<redis::Connection> {
    let client = redis::Client::open(format!("redis://127.0.0.1:{port}/")).ok()?;
    let connection = client.get_connection_with_timeout(deadline).ok()?;
    connection.set_read_timeout(Some(deadline)).ok()?;
    connection.set_write_timeout(Some(deadline)).ok()?;
    Some(connection)
}

fn info_field(port: u16, field: &str) -> Option<String> {
    let mut connection = connect(port, Duration::from_millis(500))?;
    let text: String = redis::cmd("INFO").arg("replication").query(&mut connection).ok()?;
    text.lines()
        .find_map(|line| line.strip_prefix(field)?.strip_prefix(':').map(|v| v.trim().to_owned()))
}

fn wait_until<T>(
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

fn signal(pid: u32, signal: &str) {
    let status = Command::new("kill").args([&format!("-{signal}"), &pid.to_string()]).status();
    assert!(status.is_ok_and(|s| s.success()), "kill -{signal} {pid}");
}

/// A local fleet of three under the daemon, with the daemon's log in the temp dir.
struct Fleet {
    base: u16,
    data: PathBuf,
    policy: PathBuf,
    log: PathBuf,
    daemon: Option<Child>,
    _dir: tempfile::TempDir,
}

impl Fleet {
    fn start(health: &str) -> Self {
        let server = require("redis-server", "redis-server");
        let dir = tempfile::tempdir().expect("temp dir");
        let base = free_port_range();
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
    minReplicas: {INSTANCES}
    maxReplicas: {INSTANCES}
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
        let mut fleet = Self { base, data, policy, log, daemon: None, _dir: dir };
        fleet.spawn_daemon();
        fleet.wait_healthy(Duration::from_secs(30));
        fleet
    }

    fn spawn_daemon(&mut self) {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .expect("daemon log");
        let child = Command::new(env!("CARGO_BIN_EXE_redis-autopilot"))
            .arg("run")
            .arg("--policies")
            .arg(self.policy.parent().expect("policy dir"))
            .args(["--listen", &format!("127.0.0.1:{}", free_port())])
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
    fn kill_daemon(&mut self) {
        if let Some(mut child) = self.daemon.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    fn port(&self, ordinal: u16) -> u16 {
        self.base + ordinal
    }

    fn ordinal(&self, port: u16) -> u16 {
        port - self.base
    }

    /// The recorded master's port and epoch.
    fn record(&self) -> Option<(u16, u64)> {
        record(&self.data)
    }

    fn pid(&self, port: u16) -> u32 {
        let path = self.data.join(self.ordinal(port).to_string()).join("redis.pid");
        let text = std::fs::read_to_string(&path).expect("pid file");
        text.trim().parse().expect("a pid")
    }

    /// Exactly the recorded master reports master; every other instance replicates it with
    /// its link up. Returns the master's port.
    fn wait_healthy(&self, timeout: Duration) -> u16 {
        wait_until(
            timeout,
            "one master, every replica linked to it",
            || self.log(),
            || {
                let (master, _) = self.record()?;
                (info_field(master, "role")? == "master").then_some(())?;
                for port in (0..INSTANCES).map(|o| self.port(o)).filter(|&p| p != master) {
                    (info_field(port, "role")? == "slave").then_some(())?;
                    (info_field(port, "master_port")? == master.to_string()).then_some(())?;
                    (info_field(port, "master_link_status")? == "up").then_some(())?;
                }
                Some(master)
            },
        )
    }

    fn ports(&self) -> Vec<u16> {
        (0..INSTANCES).map(|o| self.port(o)).collect()
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
        for ordinal in 0..INSTANCES {
            let path = self.data.join(ordinal.to_string()).join("redis.pid");
            if let Ok(pid) = std::fs::read_to_string(path) {
                let _ = Command::new("kill").args(["-CONT", pid.trim()]).status();
                let _ =
                    Command::new("kill").args(["-KILL", pid.trim()]).stderr(Stdio::null()).status();
            }
        }
    }
}

fn record(data: &Path) -> Option<(u16, u64)> {
    let text = std::fs::read_to_string(data.join("state.json")).ok()?;
    let json: serde_json::Value = serde_json::from_str(&text).ok()?;
    let port = json["master"].as_str()?.rsplit(':').next()?.parse().ok()?;
    Some((port, json["epoch"].as_u64()?))
}

/// One acknowledged write: its number, the port that acknowledged it, and when.
#[derive(Debug, Clone, Copy)]
struct Ack {
    n: u64,
    port: u16,
    at: Instant,
}

/// Writes `w:N = N` for N = 0, 1, 2... to whichever instance the state file records as master,
/// following it across failovers, and keeps every acknowledged N.
struct Writer {
    stop: Arc<AtomicBool>,
    acks: Arc<Mutex<Vec<Ack>>>,
    handle: Option<JoinHandle<()>>,
}

impl Writer {
    fn start(data: &Path) -> Self {
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

    fn acks(&self) -> Vec<Ack> {
        self.acks.lock().expect("acks").clone()
    }

    /// The first write acknowledged by `port` after `since`.
    fn first_ack_on(&self, port: u16, since: Instant) -> Option<Ack> {
        self.acks().into_iter().find(|a| a.port == port && a.at > since)
    }

    fn finish(mut self) -> Vec<Ack> {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(handle) = self.handle.take() {
            handle.join().expect("writer thread");
        }
        self.acks()
    }
}

/// Fails the test if two instances report role master and accept a write at the same moment.
struct Checker {
    stop: Arc<AtomicBool>,
    violations: Arc<Mutex<Vec<String>>>,
    handle: Option<JoinHandle<()>>,
}

impl Checker {
    fn start(ports: Vec<u16>) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let violations = Arc::new(Mutex::new(Vec::new()));
        let handle = {
            let (stop, violations) = (Arc::clone(&stop), Arc::clone(&violations));
            std::thread::spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    let masters: Vec<u16> = ports
                        .iter()
                        .copied()
                        .filter(|&p| info_field(p, "role").as_deref() == Some("master"))
                        .collect();
                    if masters.len() > 1 {
                        let accepting: Vec<u16> = masters
                            .iter()
                            .copied()
                            .filter(|&p| {
                                connect(p, Duration::from_millis(200)).is_some_and(|mut c| {
                                    redis::cmd("SET")
                                        .arg("checker")
                                        .arg(1)
                                        .query::<()>(&mut c)
                                        .is_ok()
                                })
                            })
                            .collect();
                        if accepting.len() > 1 {
                            violations
                                .lock()
                                .expect("violations")
                                .push(format!("masters {masters:?} both accepted a write"));
                        }
                    }
                    std::thread::sleep(Duration::from_millis(10));
                }
            })
        };
        Self { stop, violations, handle: Some(handle) }
    }

    fn finish(mut self) -> Vec<String> {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(handle) = self.handle.take() {
            handle.join().expect("checker thread");
        }
        self.violations.lock().expect("violations").clone()
    }
}

/// Every acknowledged write is on `port` with its value.
fn assert_all_present(port: u16, acks: &[Ack], log: impl Fn() -> String) {
    let mut connection = connect(port, Duration::from_secs(5)).expect("connect to the master");
    let mut missing = Vec::new();
    for chunk in acks.chunks(1000) {
        let keys: Vec<String> = chunk.iter().map(|a| format!("w:{}", a.n)).collect();
        let values: Vec<Option<u64>> =
            redis::cmd("MGET").arg(&keys).query(&mut connection).expect("MGET");
        for (ack, value) in chunk.iter().zip(values) {
            if value != Some(ack.n) {
                missing.push(ack.n);
            }
        }
    }
    assert!(
        missing.is_empty(),
        "{} of {} acknowledged writes missing on {port}: {:?}...\n{}",
        missing.len(),
        acks.len(),
        &missing[..missing.len().min(20)],
        log()
    );
}

#[test]
fn twenty_master_kills_under_a_writer_lose_no_acknowledged_write() {
    let _turn = turn();
    let fleet = Fleet::start("    downAfter: 3s\n    confirmWithReplicas: true\n");
    let writer = Writer::start(&fleet.data);
    let checker = Checker::start(fleet.ports());
    let mut resumed = Vec::new();
    for round in 0..20 {
        let master = fleet.wait_healthy(Duration::from_secs(20));
        let (_, epoch) = fleet.record().expect("a record");
        // Some writes on this master first, so that each round loses something if it can.
        let since = Instant::now();
        wait_until(
            Duration::from_secs(5),
            "writes on the master",
            || fleet.log(),
            || {
                (writer.acks().iter().filter(|a| a.port == master && a.at > since).count() > 50)
                    .then_some(())
            },
        );
        let killed = Instant::now();
        signal(fleet.pid(master), "KILL");
        let (new, new_epoch) = wait_until(
            Duration::from_secs(10),
            "a new master",
            || fleet.log(),
            || fleet.record().filter(|(port, _)| *port != master),
        );
        assert_eq!(new_epoch, epoch + 1, "round {round}");
        let ack = wait_until(
            Duration::from_secs(10),
            "a write on the new master",
            || fleet.log(),
            || writer.first_ack_on(new, killed),
        );
        resumed.push(ack.at - killed);
    }
    fleet.wait_healthy(Duration::from_secs(20));
    let acks = writer.finish();
    let violations = checker.finish();
    assert!(violations.is_empty(), "{violations:?}\n{}", fleet.log());
    let (master, _) = fleet.record().expect("a record");
    assert_all_present(master, &acks, || fleet.log());
    resumed.sort();
    eprintln!(
        "writes resumed after a kill -9: median {:?}, max {:?} over {} rounds, {} acknowledged writes",
        resumed[resumed.len() / 2],
        resumed[resumed.len() - 1],
        resumed.len(),
        acks.len()
    );
    // Unambiguous deaths (refused, every replica's link down) do not wait for downAfter.
    assert!(resumed[resumed.len() - 1] < Duration::from_secs(3), "{resumed:?}");
}

#[test]
fn a_hung_master_is_replaced_and_fenced_when_it_resumes() {
    let _turn = turn();
    let fleet = Fleet::start("    downAfter: 2s\n    confirmWithReplicas: true\n");
    let writer = Writer::start(&fleet.data);
    let checker = Checker::start(fleet.ports());
    let master = fleet.wait_healthy(Duration::from_secs(20));
    let pid = fleet.pid(master);
    wait_until(
        Duration::from_secs(5),
        "writes",
        || fleet.log(),
        || (writer.acks().len() > 100).then_some(()),
    );
    let stopped = Instant::now();
    signal(pid, "STOP");
    let (new, _) = wait_until(
        Duration::from_secs(10),
        "a new master",
        || fleet.log(),
        || fleet.record().filter(|(port, _)| *port != master),
    );
    let took = stopped.elapsed();
    assert!(took >= Duration::from_secs(2), "failed over after {took:?}, before downAfter");
    wait_until(
        Duration::from_secs(5),
        "a write on the new master",
        || fleet.log(),
        || writer.first_ack_on(new, stopped),
    );
    std::thread::sleep(Duration::from_millis(500));
    let resumed = Instant::now();
    signal(pid, "CONT");
    wait_until(
        Duration::from_secs(1),
        "the old master fenced within a second",
        || fleet.log(),
        || (info_field(master, "role")? == "slave").then_some(()),
    );
    eprintln!("failed over {took:?} after SIGSTOP; fenced {:?} after SIGCONT", resumed.elapsed());
    fleet.wait_healthy(Duration::from_secs(20));
    let acks = writer.finish();
    assert!(checker.finish().is_empty(), "{}", fleet.log());
    assert!(
        acks.iter().all(|a| a.port != master || a.at < resumed),
        "the old master acknowledged a write after it resumed"
    );
    assert_all_present(new, &acks, || fleet.log());
}

#[test]
fn a_master_restarted_empty_never_wipes_the_replicas() {
    let _turn = turn();
    // No replica confirmation: the restart, not the death, must be what triggers.
    let fleet = Fleet::start("    downAfter: 3s\n    confirmWithReplicas: false\n");
    let master = fleet.wait_healthy(Duration::from_secs(20));
    let mut connection = connect(master, Duration::from_secs(5)).expect("master");
    for chunk in 0..10 {
        let mut pipe = redis::pipe();
        for i in chunk * 1000..(chunk + 1) * 1000 {
            pipe.cmd("SET").arg(format!("k:{i}")).arg(i).ignore();
        }
        pipe.query::<()>(&mut connection).expect("write keys");
    }
    let acked: u64 = redis::cmd("WAIT").arg(2).arg(5000).query(&mut connection).expect("WAIT");
    assert_eq!(acked, 2);
    drop(connection);
    // kill -9, then the same command line the fleet uses, at once: back within the window,
    // as a replica of the recorded master (itself), empty.
    let ordinal = fleet.ordinal(master);
    let dir = fleet.data.join(ordinal.to_string());
    signal(fleet.pid(master), "KILL");
    wait_until(
        Duration::from_secs(5),
        "the port to close",
        || fleet.log(),
        || connect(master, Duration::from_millis(100)).is_none().then_some(()),
    );
    let restarted = Command::new(require("redis-server", "redis-server"))
        .args(["--port", &master.to_string(), "--bind", "127.0.0.1", "--daemonize", "yes"])
        .arg("--dir")
        .arg(&dir)
        .arg("--logfile")
        .arg(dir.join("restarted.log"))
        .arg("--pidfile")
        .arg(dir.join("redis.pid"))
        .args(["--save", "", "--appendonly", "no"])
        .args(["--replicaof", "127.0.0.1", &master.to_string()])
        .status()
        .expect("restart redis-server");
    assert!(restarted.success());
    let (new, _) = wait_until(
        Duration::from_secs(10),
        "a replica with the data promoted",
        || fleet.log(),
        || fleet.record().filter(|(port, _)| *port != master),
    );
    let dbsize = |port: u16| -> Option<u64> {
        redis::cmd("DBSIZE").query(&mut connect(port, Duration::from_secs(1))?).ok()
    };
    assert_eq!(dbsize(new), Some(10_000));
    fleet.wait_healthy(Duration::from_secs(20));
    for port in fleet.ports() {
        wait_until(
            Duration::from_secs(10),
            "every instance holding every key",
            || fleet.log(),
            || (dbsize(port)? == 10_000).then_some(()),
        );
    }
    assert!(fleet.log().contains("after restarting with no data"), "{}", fleet.log());
}

#[test]
fn a_graceful_switchover_under_a_writer_loses_nothing() {
    let _turn = turn();
    let fleet = Fleet::start("    downAfter: 3s\n");
    let writer = Writer::start(&fleet.data);
    let checker = Checker::start(fleet.ports());
    let master = fleet.wait_healthy(Duration::from_secs(20));
    let (_, epoch) = fleet.record().expect("a record");
    wait_until(
        Duration::from_secs(5),
        "writes",
        || fleet.log(),
        || (writer.acks().len() > 200).then_some(()),
    );
    let output = Command::new(env!("CARGO_BIN_EXE_redis-autopilot"))
        .args(["failover", "--graceful", "--policy"])
        .arg(&fleet.policy)
        .output()
        .expect("run failover");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "{stdout}\n{}", String::from_utf8_lossy(&output.stderr));
    assert!(stdout.contains("did switchover") && stdout.contains("chose"), "{stdout}");
    let (new, new_epoch) = fleet.record().expect("a record");
    assert_ne!(new, master);
    assert_eq!(new_epoch, epoch + 1);
    wait_until(
        Duration::from_secs(5),
        "a write on the new master",
        || fleet.log(),
        || writer.first_ack_on(new, Instant::now() - Duration::from_secs(5)),
    );
    fleet.wait_healthy(Duration::from_secs(20));
    let acks = writer.finish();
    assert!(checker.finish().is_empty(), "{}", fleet.log());
    assert_all_present(new, &acks, || fleet.log());
}

#[test]
fn a_daemon_killed_mid_failover_converges_to_one_master_when_restarted() {
    let _turn = turn();
    let mut fleet = Fleet::start("    downAfter: 3s\n");
    let checker = Checker::start(fleet.ports());
    let master = fleet.wait_healthy(Duration::from_secs(20));
    let (_, epoch) = fleet.record().expect("a record");
    let replicas: Vec<u16> = fleet.ports().into_iter().filter(|&p| p != master).collect();
    // The daemon dies; the master dies; the new master is recorded but never promoted: what a
    // crash between "record" and "REPLICAOF NO ONE" leaves behind.
    fleet.kill_daemon();
    signal(fleet.pid(master), "KILL");
    let state = fleet.data.join("state.json");
    let text = std::fs::read_to_string(&state).expect("state");
    let mut json: serde_json::Value = serde_json::from_str(&text).expect("state json");
    json["master"] = format!("127.0.0.1:{}", replicas[0]).into();
    json["epoch"] = (epoch + 1).into();
    std::fs::write(&state, json.to_string()).expect("write state");
    fleet.spawn_daemon();
    let converged = fleet.wait_healthy(Duration::from_secs(20));
    assert_eq!(converged, replicas[0]);
    assert_eq!(fleet.record(), Some((replicas[0], epoch + 1)), "resumed at the recorded epoch");

    // Again, one step further: promoted, but the other replica still follows the dead master.
    fleet.kill_daemon();
    signal(fleet.pid(replicas[0]), "KILL");
    let mut connection = connect(replicas[1], Duration::from_secs(2)).expect("replica");
    redis::cmd("REPLICAOF").arg("NO").arg("ONE").query::<()>(&mut connection).expect("promote");
    json["master"] = format!("127.0.0.1:{}", replicas[1]).into();
    json["epoch"] = (epoch + 2).into();
    std::fs::write(&state, json.to_string()).expect("write state");
    fleet.spawn_daemon();
    assert_eq!(fleet.wait_healthy(Duration::from_secs(20)), replicas[1]);
    let masters: Vec<u16> = fleet
        .ports()
        .into_iter()
        .filter(|&p| info_field(p, "role").as_deref() == Some("master"))
        .collect();
    assert_eq!(masters, [replicas[1]]);
    assert!(checker.finish().is_empty(), "{}", fleet.log());
}
