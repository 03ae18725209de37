//! The daemon end to end: the built `redis-autopilot run` binary on a real local fleet of
//! `redis-server` processes, driven by `redis-benchmark` load, Alertmanager-shaped webhooks and
//! policy edits, and observed the way an operator would: `/v1/decisions`, `/metrics`, the
//! daemon's log, and the Redis instances themselves.

mod support;

use std::io::Write as _;
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use prometheus_parse::{Scrape, Value};
use serde_json::Value as Json;

use support::policy_daemon::{self, STOP_GRACE};
use support::{free_ports, require};

/// Instances a fleet may use above its base port (maxReplicas of every policy here is 4, plus
/// room, so a stray extra instance would still be noticed).
const PORT_SPAN: u16 = 6;
/// The one policy file in the daemon's `--policies` directory.
const POLICY_FILE: &str = "e2e.yaml";
const POLICY: &str = "e2e";

/// Tests that drive load take turns: on a 2-core machine two `redis-benchmark`s at once would
/// starve each other's fleet and the daemon's sampling.
static LOAD_LOCK: Mutex<()> = Mutex::new(());

fn load_turn() -> std::sync::MutexGuard<'static, ()> {
    LOAD_LOCK.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

fn refuses(port: u16) -> bool {
    TcpStream::connect(("127.0.0.1", port)).is_err()
}

/// Whether a Redis answering on `port` keeps its data under `dir`: one of this fleet's
/// instances, not a port some other process took once the fleet let it go.
fn serves_from(port: u16, dir: &Path) -> bool {
    use std::io::Read as _;
    let Ok(mut stream) = TcpStream::connect(("127.0.0.1", port)) else { return false };
    let _ = stream.set_read_timeout(Some(Duration::from_secs(2)));
    if stream.write_all(b"*3\r\n$6\r\nCONFIG\r\n$3\r\nGET\r\n$3\r\ndir\r\n").is_err() {
        return false;
    }
    let mut reply = vec![0u8; 4096];
    let read = stream.read(&mut reply).unwrap_or(0);
    String::from_utf8_lossy(&reply[..read]).contains(&*dir.to_string_lossy())
}

/// Polls `probe` every 200 ms until it returns `Some`, or panics naming `what` (with the
/// daemon's log, when there is one) after `limit`.
fn wait_until<T>(
    limit: Duration,
    what: &str,
    daemon: Option<&Daemon>,
    mut probe: impl FnMut() -> Option<T>,
) -> T {
    let deadline = Instant::now() + limit;
    loop {
        if let Some(value) = probe() {
            return value;
        }
        if Instant::now() >= deadline {
            let log = daemon.map(Daemon::log).unwrap_or_default();
            panic!("{what}: not within {limit:?}\n--- daemon log ---\n{log}");
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// `redis-cli -p PORT ARGS...`; `None` when the instance cannot be reached.
fn cli(port: u16, args: &[&str]) -> Option<String> {
    let out = Command::new(require("redis-cli", "redis-tools"))
        .args(["-h", "127.0.0.1", "-p", &port.to_string()])
        .args(args)
        .stderr(Stdio::null())
        .output()
        .expect("run redis-cli");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    (out.status.success() && !text.starts_with("Could not connect")).then_some(text)
}

fn info_field(port: u16, section: &str, field: &str) -> Option<String> {
    cli(port, &["INFO", section])?.lines().find_map(|line| {
        let (key, value) = line.split_once(':')?;
        (key == field).then(|| value.trim().to_owned())
    })
}

/// Writes `keys` keys `k{i}` = `v{i}` on `port` with one redis-cli.
fn write_keys(port: u16, keys: usize) {
    let mut child = Command::new(require("redis-cli", "redis-tools"))
        .args(["-h", "127.0.0.1", "-p", &port.to_string()])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()
        .expect("spawn redis-cli");
    let mut stdin = child.stdin.take().expect("stdin");
    for i in 0..keys {
        writeln!(stdin, "SET k{i} v{i}").expect("write to redis-cli");
    }
    drop(stdin);
    assert!(child.wait().expect("wait for redis-cli").success());
    assert_eq!(cli(port, &["DBSIZE"]).as_deref().map(str::trim), Some(keys.to_string().as_str()));
}

/// `redis-benchmark` GETs against one port until dropped (killed by PID and reaped).
struct Load(Child);

impl Load {
    fn start(port: u16) -> Self {
        let child = Command::new(require("redis-benchmark", "redis-tools"))
            .args(["-h", "127.0.0.1", "-p", &port.to_string()])
            .args(["-t", "get", "-n", "100000000", "-c", "20", "-q"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn redis-benchmark");
        Self(child)
    }
}

impl Drop for Load {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// The scaling section every load test uses: 1000 ops/s per replica (one `redis-benchmark`
/// does tens of thousands, so 4 replicas' worth holds even on a busy shared machine), 1..4
/// replicas, up 2 per 2 s, down one per second after a 3 s stabilization.
const LOAD_SCALING: &str = "  scaling:
    minReplicas: 1
    maxReplicas: 4
    metrics:
      - redis: instantaneous_ops_per_sec
        statistic: max
        window: 3s
        target: 1000
    tolerance: 0.1
    warmup: 1s
    scaleUp: {stabilization: 0s, maxStep: 2, period: 2s, cooldown: 0s}
    scaleDown: {stabilization: 3s, maxStep: 1, period: 1s, cooldown: 0s}
";

/// A quiet fleet (no load): `target` ops/s per replica, never scaling down within a test.
fn quiet_scaling(max_replicas: i64, target: u32) -> String {
    format!(
        "  scaling:
    minReplicas: 1
    maxReplicas: {max_replicas}
    metrics:
      - redis: instantaneous_ops_per_sec
        statistic: max
        window: 3s
        target: {target}
    tolerance: 0.1
    warmup: 1s
    scaleUp: {{stabilization: 0s, maxStep: 2, period: 2s, cooldown: 0s}}
    scaleDown: {{stabilization: 5m, maxStep: 1, period: 1m, cooldown: 0s}}
"
    )
}

/// A whole policy document for a local fleet at `base` in `data_dir`.
fn policy_yaml(base: u16, data_dir: &Path, scaling: &str, alerts: &str) -> String {
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
{scaling}{alerts}",
        server = require("redis-server", "redis-server").display(),
        data = data_dir.display(),
    )
}

/// The daemon binary (`support::policy_daemon`) on one local-fleet policy, stopped (SIGTERM,
/// then SIGKILL) on drop, which also checks that its fleet went with it.
struct Daemon {
    process: policy_daemon::Daemon,
    base: u16,
    data_dir: PathBuf,
}

struct Options<'a> {
    scaling: &'a str,
    alerts: &'a str,
    args: &'a [&'a str],
}

impl Daemon {
    fn start(options: Options<'_>) -> Self {
        require("redis-server", "redis-server");
        let dir = tempfile::tempdir().expect("temp dir");
        // Never a range another test of this binary took: each test's fleet and its checks
        // own their ports.
        let base = free_ports(PORT_SPAN + 1);
        let data_dir = dir.path().join("data");
        let policy = policy_yaml(base, &data_dir, options.scaling, options.alerts);
        let args = options.args.iter().map(|a| (*a).to_owned()).collect();
        let mut process = policy_daemon::Daemon::spawn_with(
            dir,
            &[(POLICY_FILE, &policy)],
            &policy_daemon::Options { args, ..Default::default() },
        );
        if let Err(status) = process.ready_or_exit(Duration::from_secs(30)) {
            panic!("the daemon exited with {status} before ready:\n{}", process.log());
        }
        Self { process, base, data_dir }
    }

    fn log(&self) -> String {
        self.process.log()
    }

    fn try_get(&self, path: &str) -> Option<(u16, String)> {
        self.process.try_get(path)
    }

    fn get(&self, path: &str) -> String {
        let (status, body) = self.try_get(path).unwrap_or_else(|| panic!("GET {path} failed"));
        assert_eq!(status, 200, "GET {path}: {body}");
        body
    }

    /// `/v1/decisions` of the policy, newest first.
    fn decisions(&self) -> Vec<Json> {
        let body = self.get(&format!("/v1/decisions?policy={POLICY}&limit=500"));
        serde_json::from_str(&body).expect("/v1/decisions is a JSON array")
    }

    fn metrics(&self) -> Scrape {
        let text = self.get("/metrics");
        Scrape::parse(text.lines().map(|l| Ok(l.to_owned()))).expect("/metrics parses")
    }

    fn post_alerts(&self, token: Option<&str>, body: &str) -> u16 {
        self.process.post_alerts(token, body)
    }

    fn port(&self, ordinal: u16) -> u16 {
        self.base + ordinal
    }

    /// The fleet's instances listening in its port range.
    fn listening(&self) -> u16 {
        (0..=PORT_SPAN).filter(|&o| serves_from(self.port(o), &self.data_dir)).count() as u16
    }

    /// Replaces the policy file in one rename, so the daemon never reads half of it.
    fn write_policy(&self, text: &str) {
        self.process.write_policy(POLICY_FILE, text);
    }

    /// Pids of the fleet's instances still alive, from their pid files.
    fn live_instances(&self) -> Vec<u32> {
        (0..=PORT_SPAN)
            .filter_map(|o| {
                let text =
                    std::fs::read_to_string(self.data_dir.join(o.to_string()).join("redis.pid"))
                        .ok()?;
                let pid: u32 = text.trim().parse().ok()?;
                let alive = Command::new("kill")
                    .args(["-0", &pid.to_string()])
                    .stderr(Stdio::null())
                    .status()
                    .is_ok_and(|s| s.success());
                alive.then_some(pid)
            })
            .collect()
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let graceful = self.process.stop();
        // The fleet stops its instances when the daemon exits; give the exit a moment to land.
        let deadline = Instant::now() + Duration::from_secs(5);
        let mut leaked = self.live_instances();
        while !leaked.is_empty() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(50));
            leaked = self.live_instances();
        }
        for pid in &leaked {
            let _ = Command::new("kill").args(["-KILL", &pid.to_string()]).status();
        }
        if !std::thread::panicking() {
            assert!(
                graceful,
                "the daemon did not exit within {STOP_GRACE:?} of SIGTERM:\n{}",
                self.log()
            );
            assert!(
                leaked.is_empty(),
                "redis-servers {leaked:?} outlived the daemon:\n{}",
                self.log()
            );
            let listening: Vec<u16> = (0..=PORT_SPAN)
                .map(|o| self.port(o))
                .filter(|&p| serves_from(p, &self.data_dir))
                .collect();
            assert!(
                listening.is_empty(),
                "ports {listening:?} still answer after the daemon exited"
            );
        }
    }
}

fn kind(record: &Json) -> &str {
    record["decision"]["kind"].as_str().unwrap_or_default()
}

fn outcome(record: &Json) -> &str {
    record["action"]["outcome"].as_str().unwrap_or_default()
}

fn from_to(record: &Json) -> (u64, u64) {
    let n = |k: &str| record["decision"][k].as_u64().unwrap_or_else(|| panic!("{k} in {record}"));
    (n("from"), n("to"))
}

fn at(record: &Json) -> DateTime<Utc> {
    record["at"].as_str().and_then(|s| s.parse().ok()).unwrap_or_else(|| panic!("at in {record}"))
}

fn sentence(record: &Json) -> &str {
    record["sentence"].as_str().unwrap_or_default()
}

/// The one sample of `name` whose labels include all of `labels`.
fn sample(scrape: &Scrape, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    let mut matching = scrape
        .samples
        .iter()
        .filter(|s| s.metric == name)
        .filter(|s| labels.iter().all(|(k, v)| s.labels.get(k) == Some(*v)));
    let found = matching.next()?;
    assert!(matching.next().is_none(), "{name} {labels:?} is not unique");
    match found.value {
        Value::Counter(v) | Value::Gauge(v) | Value::Untyped(v) => Some(v),
        ref other => panic!("{name}: unexpected {other:?}"),
    }
}

/// The replica at `port` replicates the master and holds its 100 keys.
fn serves_the_data(port: u16) -> bool {
    info_field(port, "replication", "role").as_deref() == Some("slave")
        && info_field(port, "replication", "master_link_status").as_deref() == Some("up")
        && cli(port, &["DBSIZE"]).is_some_and(|n| n.trim() == "100")
        && cli(port, &["GET", "k42"]).is_some_and(|v| v.trim() == "v42")
}

#[test]
fn load_adds_serving_replicas_and_its_end_removes_them_after_stabilization() {
    let _turn = load_turn();
    let daemon = Daemon::start(Options { scaling: LOAD_SCALING, alerts: "", args: &[] });
    let master = daemon.port(0);
    assert_eq!(info_field(master, "replication", "role").as_deref(), Some("master"));
    assert!(refuses(daemon.port(1)), "the fleet starts at minReplicas 1");
    write_keys(master, 100);

    // Load rises: replicas are added, and they serve the master's data.
    let load = Load::start(master);
    let first_up =
        wait_until(Duration::from_secs(20), "an applied scale-up", Some(&daemon), || {
            daemon.decisions().into_iter().rev().find(|r| {
                kind(r) == "scale" && outcome(r) == "applied" && from_to(r).1 > from_to(r).0
            })
        });
    let (from, to) = from_to(&first_up);
    assert_eq!(from, 1, "{first_up}");
    assert!(to > 1, "{first_up}");
    let added: Vec<u16> = (1..to as u16).map(|o| daemon.port(o)).collect();
    wait_until(
        Duration::from_secs(15),
        "new replicas in sync with 100 keys",
        Some(&daemon),
        || added.iter().all(|&p| serves_the_data(p)).then_some(()),
    );

    let scrape = daemon.metrics();
    let applied = sample(
        &scrape,
        "redis_autopilot_actions_total",
        &[("policy", POLICY), ("kind", "scale"), ("outcome", "applied")],
    );
    assert!(applied.is_some_and(|n| n >= 1.0), "applied scale actions: {applied:?}");
    // Load keeps it at maxReplicas 4; once there, the gauge and the fleet agree.
    wait_until(Duration::from_secs(15), "replicas_current = the fleet = 4", Some(&daemon), || {
        let current =
            sample(&daemon.metrics(), "redis_autopilot_replicas_current", &[("policy", POLICY)]);
        (daemon.listening() == 4 && current == Some(4.0)).then_some(())
    });
    assert!(refuses(daemon.port(4)), "maxReplicas 4 caps the fleet");

    // Load falls: the fleet shrinks back to minReplicas, never before the 3 s stabilization.
    drop(load);
    let load_stopped = Utc::now();
    wait_until(Duration::from_secs(30), "the fleet back at 1 replica", Some(&daemon), || {
        daemon.decisions().first().filter(|r| kind(r) == "hold" && from_to_hold(r) == 1).map(|_| ())
    });
    for ordinal in 1..=PORT_SPAN {
        assert!(refuses(daemon.port(ordinal)), "removed instance {ordinal} still answers");
    }
    assert_eq!(info_field(master, "replication", "role").as_deref(), Some("master"));
    assert_eq!(cli(master, &["DBSIZE"]).as_deref().map(str::trim), Some("100"));

    let decisions = daemon.decisions();
    let downs: Vec<&Json> = decisions
        .iter()
        .filter(|r| kind(r) == "scale" && outcome(r) == "applied" && from_to(r).1 < from_to(r).0)
        .collect();
    // Newest first: 2 -> 1, 3 -> 2, 4 -> 3, each at least a period (1 s) after the previous.
    let steps: Vec<(u64, u64)> = downs.iter().map(|r| from_to(r)).collect();
    assert_eq!(steps, [(2, 1), (3, 2), (4, 3)], "4 -> 1 one replica at a time: {downs:#?}");
    for pair in downs.windows(2) {
        let gap = at(pair[0]) - at(pair[1]);
        assert!(gap >= chrono::Duration::milliseconds(900), "scale-downs {gap} apart: {pair:#?}");
    }
    let earliest = load_stopped + chrono::Duration::seconds(3);
    for down in downs {
        assert!(
            at(down) >= earliest,
            "scale-down at {} is within 3 s of the load stopping at {load_stopped}: {down}",
            at(down)
        );
    }
}

/// The replica count a hold decision keeps.
fn from_to_hold(record: &Json) -> u64 {
    record["decision"]["replicas"].as_u64().unwrap_or_else(|| panic!("replicas in {record}"))
}

#[test]
fn dry_run_decides_to_scale_but_changes_nothing() {
    let _turn = load_turn();
    let daemon = Daemon::start(Options { scaling: LOAD_SCALING, alerts: "", args: &["--dry-run"] });
    let load = Load::start(daemon.port(0));
    let dry =
        wait_until(Duration::from_secs(20), "a dry-run scale decision", Some(&daemon), || {
            daemon.decisions().into_iter().find(|r| kind(r) == "scale" && outcome(r) == "dry_run")
        });
    let (from, to) = from_to(&dry);
    assert_eq!(from, 1, "{dry}");
    assert!(to > 1, "{dry}");
    drop(load);
    let dry_runs = sample(
        &daemon.metrics(),
        "redis_autopilot_actions_total",
        &[("policy", POLICY), ("kind", "scale"), ("outcome", "dry_run")],
    );
    assert!(dry_runs.is_some_and(|n| n >= 1.0), "dry-run scale actions: {dry_runs:?}");
    let applied = sample(
        &daemon.metrics(),
        "redis_autopilot_actions_total",
        &[("policy", POLICY), ("kind", "scale"), ("outcome", "applied")],
    );
    assert!(applied.is_none_or(|n| n == 0.0), "dry-run applied {applied:?} actions");
    let decisions = daemon.decisions();
    assert!(
        decisions.iter().all(|r| outcome(r) != "applied"),
        "dry-run applied something: {decisions:#?}"
    );
    for ordinal in 1..=PORT_SPAN {
        assert!(refuses(daemon.port(ordinal)), "dry-run started instance {ordinal}");
    }
    assert_eq!(daemon.listening(), 1);
}

#[test]
fn an_invalid_reload_keeps_the_running_policy_and_a_valid_one_takes_over() {
    let daemon = Daemon::start(Options { scaling: &quiet_scaling(4, 700), alerts: "", args: &[] });
    let newest = |d: &Daemon| d.decisions().first().map(at);
    wait_until(Duration::from_secs(10), "a decision against target 700", Some(&daemon), || {
        daemon.decisions().first().filter(|r| sentence(r).contains("target 700")).map(|_| ())
    });

    let invalid = policy_yaml(daemon.base, &daemon.data_dir, &quiet_scaling(0, 700), "");
    daemon.write_policy(&invalid);
    wait_until(Duration::from_secs(10), "the rejection logged", Some(&daemon), || {
        daemon.log().contains("spec.scaling.maxReplicas").then_some(())
    });
    let rejected_at = newest(&daemon).expect("decisions so far");
    // The directory is polled every 2 s: 4 s of decisions span at least one more poll.
    let later =
        wait_until(Duration::from_secs(10), "decisions after the rejection", Some(&daemon), || {
            daemon
                .decisions()
                .into_iter()
                .find(|r| at(r) > rejected_at + chrono::Duration::seconds(4))
        });
    assert!(sentence(&later).contains("target 700"), "the old policy stays: {later}");
    let log = daemon.log();
    let rejections = log.lines().filter(|l| l.contains("spec.scaling.maxReplicas")).count();
    assert_eq!(rejections, 1, "one bad edit, one rejection, not one per poll:\n{log}");

    let valid = policy_yaml(daemon.base, &daemon.data_dir, &quiet_scaling(4, 900), "");
    daemon.write_policy(&valid);
    wait_until(Duration::from_secs(10), "a decision against target 900", Some(&daemon), || {
        daemon.decisions().first().filter(|r| sentence(r).contains("target 900")).map(|_| ())
    });
    assert!(daemon.log().contains("policy reloaded"), "{}", daemon.log());
}

#[test]
fn a_firing_alert_with_the_token_scales_up() {
    let token_dir = tempfile::tempdir().expect("temp dir");
    let token_file = token_dir.path().join("token");
    std::fs::write(&token_file, "s3cret\n").expect("write the token");
    let token_arg = token_file.display().to_string();
    let alerts = "  alerts:\n    - alertname: RedisHot\n      action: {scaleUp: 1}\n";
    let daemon = Daemon::start(Options {
        scaling: &quiet_scaling(4, 100_000),
        alerts,
        args: &["--alerts-token-file", &token_arg],
    });
    let payload = r#"{
      "version": "4",
      "groupKey": "{}:{alertname=\"RedisHot\"}",
      "truncatedAlerts": 0,
      "status": "firing",
      "receiver": "redis-autopilot",
      "groupLabels": {"alertname": "RedisHot"},
      "commonLabels": {"alertname": "RedisHot"},
      "commonAnnotations": {},
      "externalURL": "http://alertmanager:9093",
      "alerts": [{
        "status": "firing",
        "labels": {"alertname": "RedisHot", "instance": "127.0.0.1"},
        "annotations": {},
        "startsAt": "2026-11-24T00:00:00Z",
        "endsAt": "0001-01-01T00:00:00Z",
        "generatorURL": "http://prometheus:9090/graph",
        "fingerprint": "c0ffee"
      }]
    }"#;
    assert_eq!(daemon.post_alerts(None, payload), 401);
    assert_eq!(daemon.post_alerts(Some("wrong"), payload), 401);
    assert!(refuses(daemon.port(1)), "nothing scaled on a refused alert");
    assert_eq!(daemon.post_alerts(Some("s3cret"), payload), 200);

    let scaled = wait_until(Duration::from_secs(10), "a scale-up by alert", Some(&daemon), || {
        daemon.decisions().into_iter().find(|r| kind(r) == "scale" && outcome(r) == "applied")
    });
    assert!(sentence(&scaled).contains("by alert RedisHot"), "{scaled}");
    assert_eq!(from_to(&scaled), (1, 2), "{scaled}");
    wait_until(Duration::from_secs(10), "the added replica in sync", Some(&daemon), || {
        (info_field(daemon.port(1), "replication", "master_link_status").as_deref() == Some("up"))
            .then_some(())
    });
    assert!(refuses(daemon.port(2)), "scaleUp: 1 adds one replica");
}
