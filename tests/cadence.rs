//! A policy loop's two clocks keep their cadence whatever one instance does: a replica
//! stopped with SIGSTOP, or a peer that accepts TCP and never answers, is a timed-out sample
//! in the health probe and in the scaling round, and neither clock waits for the other.

mod support;

use std::net::TcpListener;
use std::path::Path;
use std::time::Duration;

use support::policy_daemon::{Daemon, instance_pid, recorded_master, signal_pid};
use support::{Redis, free_ports, require};

const SAMPLES: &str = "redis_autopilot_samples_total";
const OVERRUNS: &str = "redis_autopilot_loop_overruns_total";

/// Probes every 250 ms under a 1 s deadline (the defaults): a probe of a hung instance always
/// outlasts the interval. Scaling rounds every second under 500 ms; never scales.
fn cadence_sections() -> &'static str {
    "  sampling: {interval: 1s, timeout: 500ms}
  health: {probeInterval: 250ms, probeTimeout: 1s}
"
}

fn local_policy(base: u16, data_dir: &Path) -> String {
    format!(
        "apiVersion: autopilot.redis.io/v1alpha1
kind: RedisPolicy
metadata: {{name: cadence}}
spec:
  target:
    local: {{redisServer: {server}, basePort: {base}, dataDir: {data}}}
{sections}  scaling:
    minReplicas: 2
    maxReplicas: 2
    metrics:
      - {{redis: instantaneous_ops_per_sec, target: 100000}}
",
        server = require("redis-server", "redis-server").display(),
        data = data_dir.display(),
        sections = cadence_sections(),
    )
}

/// Timed-out `INFO` samples of the policy's scaling rounds: one per round while one instance
/// hangs, so its growth counts rounds.
fn timeouts(daemon: &Daemon) -> Option<f64> {
    daemon.metric(SAMPLES, &[("policy", "cadence"), ("source", "redis"), ("outcome", "timeout")])
}

/// Waits until `rounds` more scaling rounds than now timed out on the hung instance.
fn wait_for_rounds(daemon: &mut Daemon, rounds: f64) {
    let start = daemon.wait_until(Duration::from_secs(10), "/metrics", timeouts);
    daemon.wait_until(
        Duration::from_secs(60),
        &format!("{rounds} scaling rounds with a hung instance"),
        |d| timeouts(d).filter(|&now| now >= start + rounds),
    );
}

#[test]
fn a_stopped_replica_stops_neither_scaling_rounds_nor_health_probes() {
    let dir = tempfile::tempdir().expect("temp dir");
    let data_dir = dir.path().join("data");
    let base = free_ports(3);
    let policy = local_policy(base, &data_dir);
    let mut daemon = Daemon::spawn_in(dir, &[("cadence.yaml", &policy)]);
    daemon.wait_ready(Duration::from_secs(60));
    let master = recorded_master(&data_dir).expect("a local fleet has its master once ready");
    let replica = if master.ends_with(&format!(":{base}")) { 1 } else { 0 };
    let pid = instance_pid(&data_dir, replica).expect("the replica's pid file");

    signal_pid(pid, "STOP");
    // Five rounds at 1 s while every probe waits 1 s for the stopped replica.
    wait_for_rounds(&mut daemon, 5.0);
    let health = [("policy", "cadence"), ("loop", "health")];
    let overruns = daemon.metric(OVERRUNS, &health).expect("/metrics");
    signal_pid(pid, "CONT");
    assert!(overruns > 0.0, "probes outlasting their interval are counted:\n{}", daemon.log());
    assert!(daemon.log().contains("policy loop overran its interval"), "{}", daemon.log());
    assert!(daemon.stop(), "the daemon exits on SIGTERM:\n{}", daemon.log());
}

/// Accepts connections and never answers, like a hung process whose kernel still completes
/// TCP handshakes. Stops accepting when dropped (the held connections close with it).
struct Silent {
    port: u16,
    _listener: std::thread::JoinHandle<()>,
}

impl Silent {
    fn start() -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let port = listener.local_addr().expect("local addr").port();
        let thread = std::thread::spawn(move || {
            let mut held = Vec::new();
            for stream in listener.incoming().flatten() {
                held.push(stream);
            }
        });
        Self { port, _listener: thread }
    }
}

#[test]
fn a_peer_that_never_answers_is_a_timeout_and_the_daemon_gets_ready() {
    let redis = Redis::master();
    let silent = Silent::start();
    let policy = format!(
        "apiVersion: autopilot.redis.io/v1alpha1
kind: RedisPolicy
metadata: {{name: cadence}}
spec:
  target:
    endpoints: ['127.0.0.1:{}', '127.0.0.1:{}']
{}  scaling:
    minReplicas: 1
    maxReplicas: 4
    metrics:
      - {{redis: instantaneous_ops_per_sec, target: 100000}}
",
        redis.port,
        silent.port,
        cadence_sections(),
    );
    let mut daemon = Daemon::spawn(&[("cadence.yaml", &policy)]);
    daemon.wait_ready(Duration::from_secs(30));
    wait_for_rounds(&mut daemon, 3.0);
    let ok = [("policy", "cadence"), ("source", "redis"), ("outcome", "ok")];
    assert!(daemon.metric(SAMPLES, &ok).expect("/metrics") >= 3.0, "{}", daemon.log());
    assert!(daemon.stop(), "the daemon exits on SIGTERM:\n{}", daemon.log());
}
