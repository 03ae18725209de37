//! Pausing one policy, against a real local fleet under an in-process daemon: by
//! `spec.paused` in its file, and by a request from beside the daemon (`daemon::requests`,
//! what the demo's `p` key uses). Paused, a dead master's failover is decided, explained and
//! not performed; resumed (the file edited, or a request), it is. A snapshot asked for is
//! refused while paused and taken once resumed, through the same gate as scheduled ones.
//!
//! One test in this file: it ends the in-process daemon with SIGTERM to its own process,
//! which the daemon's handler takes (so nothing else in this binary may be running).

mod support;

use std::path::Path;
use std::time::Duration;

use redis_autopilot::act::{ActionOutcome, Mode, RateLimit};
use redis_autopilot::daemon::policy_loop::Shared;
use redis_autopilot::daemon::supervisor::{RunConfig, run};
use redis_autopilot::decide::{Decision, HealthDecision};
use support::failover::{INSTANCES, info_field, record, signal, wait_until};
use support::{free_port, free_ports, require};

const POLICY: &str = "pause-e2e";

fn write_policy(dir: &Path, base: u16, paused: bool) {
    let server = require("redis-server", "redis-server");
    let policies = dir.join("policies");
    std::fs::create_dir_all(&policies).expect("policy dir");
    // Written whole to a new name, then renamed: the daemon's poll never reads half a file.
    let partial = dir.join("policy.yaml.partial");
    std::fs::write(
        &partial,
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
    downAfter: 1s
    probeInterval: 100ms
    probeTimeout: 300ms
    maxFailoversPerHour: 100
  snapshots:
    schedule: '0 0 0 1 1 *'
    destination: 'file://{backups}'
    compression: none
  paused: {paused}
",
            server = server.display(),
            data = dir.join("data").display(),
            backups = dir.join("backups").display(),
        ),
    )
    .expect("write the policy");
    std::fs::rename(&partial, policies.join("policy.yaml")).expect("rename the policy");
}

/// What became of the newest decision to fail over away from `port`.
fn failover_from(shared: &Shared, port: u16) -> Option<Option<ActionOutcome>> {
    let from = format!("127.0.0.1:{port}");
    shared.status.recent(Some(POLICY), 200).into_iter().find_map(|r| match &r.decision {
        Decision::Health(HealthDecision::Failover { from: Some(dead), .. }) if *dead == from => {
            Some(r.action)
        }
        _ => None,
    })
}

fn paused_gauge(shared: &Shared) -> String {
    let metrics = shared.metrics.encode().expect("metrics");
    let line = format!("redis_autopilot_policy_paused{{policy=\"{POLICY}\"}} ");
    metrics.lines().find_map(|l| l.strip_prefix(line.as_str())).unwrap_or("absent").to_owned()
}

/// Kills the recorded master while the policy is paused: the failover is decided and not
/// performed. Returns the dead master's port and its epoch.
fn kill_master_while_paused(shared: &Shared, data: &Path, base: u16, by: &str) -> (u16, u64) {
    let (master, epoch) = healthy(data, base);
    signal(pid(data, master - base), "KILL");
    let outcome = wait_until(Duration::from_secs(30), "a failover decided", String::new, || {
        failover_from(shared, master)
    });
    assert_eq!(outcome, Some(ActionOutcome::Paused), "paused by {by}");
    assert_eq!(record(data), Some((master, epoch)), "paused, the record stays");
    for replica in (base..base + INSTANCES).filter(|&p| p != master) {
        if let Some(role) = info_field(replica, "role") {
            assert_eq!(role, "slave", "no promotion while paused");
        }
    }
    (master, epoch)
}

/// Waits for the failover away from `dead` to be performed; returns the new master.
fn failed_over(data: &Path, dead: u16, epoch: u64) -> u16 {
    let (master, new_epoch) =
        wait_until(Duration::from_secs(30), "the failover performed", String::new, || {
            record(data).filter(|(port, _)| *port != dead)
        });
    assert!(new_epoch > epoch);
    master
}

/// The recorded master, serving, with every other live instance replicating it and at least
/// one listed by the master as online.
fn healthy(data: &Path, base: u16) -> (u16, u64) {
    wait_until(Duration::from_secs(30), "a master and its replicas", String::new, || {
        let (master, epoch) = record(data)?;
        (info_field(master, "role")? == "master").then_some(())?;
        let replicas = (base..base + INSTANCES).filter(|&p| p != master);
        let mut linked = 0;
        for replica in replicas {
            let Some(port) = info_field(replica, "master_port") else { continue };
            (port == master.to_string()).then_some(())?;
            (info_field(replica, "master_link_status")? == "up").then_some(())?;
            linked += 1;
        }
        // The master's own view too: it lists a replica `online` once it streams to it (what a
        // snapshot's source must be), which can come after the replica reports its link up.
        (linked >= 1).then_some(())?;
        info_field(master, "slave0")?.contains("state=online").then_some((master, epoch))
    })
}

fn pid(data: &Path, ordinal: u16) -> u32 {
    let path = data.join(ordinal.to_string()).join("redis.pid");
    wait_until(Duration::from_secs(5), "a pid in redis.pid", String::new, || {
        std::fs::read_to_string(&path).ok()?.trim().parse().ok()
    })
}

/// Every file under `dir`, as paths.
fn files(dir: &Path) -> Vec<String> {
    let Ok(entries) = std::fs::read_dir(dir) else { return Vec::new() };
    entries
        .filter_map(Result::ok)
        .flat_map(|entry| {
            let path = entry.path();
            if path.is_dir() { files(&path) } else { vec![path.display().to_string()] }
        })
        .collect()
}

#[test]
fn a_paused_policy_decides_and_does_not_act_until_resumed() {
    let dir = tempfile::tempdir().expect("temp dir");
    let base = free_ports(INSTANCES);
    write_policy(dir.path(), base, true);
    let data = dir.path().join("data");
    let _instances = KillOnDrop(data.clone());
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    let shared = Shared::new();
    let daemon = runtime.spawn(run(
        RunConfig {
            policies: Some(dir.path().join("policies")),
            resources: None,
            mode: Mode::Apply,
            listen: format!("127.0.0.1:{}", free_port()).parse().expect("address"),
            rate_limit: RateLimit { max: 100, window: Duration::from_secs(3600) },
            webhook: redis_autopilot::daemon::WebhookAccess::Disabled,
            http: Default::default(),
            kube: Default::default(),
            lease: Default::default(),
        },
        shared.clone(),
    ));
    let requests = shared.requests.clone();

    // Paused by its file: the gauge says so, a snapshot is refused, a failover not performed.
    healthy(&data, base);
    assert_eq!(paused_gauge(&shared), "1");
    let refused = runtime.block_on(requests.snapshot(POLICY, "the test")).expect("running");
    assert_eq!(refused.map(|m| m.id), Err("paused".to_owned()));
    let (dead, epoch) = kill_master_while_paused(&shared, &data, base, "its file");
    // The file resumes it: the failover decided again is performed.
    write_policy(dir.path(), base, false);
    failed_over(&data, dead, epoch);
    assert_eq!(paused_gauge(&shared), "0");

    // Paused by a request (the demo's `p`): the same.
    let paused = runtime.block_on(requests.pause(POLICY, true, "the test")).expect("running");
    assert_eq!(paused, Ok(()));
    assert_eq!(paused_gauge(&shared), "1");
    let unknown = runtime.block_on(requests.pause("nope", true, "the test")).expect("running");
    assert!(unknown.is_err_and(|why| why.contains("nope")));
    let (dead, epoch) = kill_master_while_paused(&shared, &data, base, "a request");
    let resumed = runtime.block_on(requests.pause(POLICY, false, "the test")).expect("running");
    assert_eq!(resumed, Ok(()));
    let master = failed_over(&data, dead, epoch);
    assert_eq!(paused_gauge(&shared), "0");

    // A snapshot asked for now (from a replica linked to the new master) is taken, and is in
    // the store.
    let (now_master, _) = healthy(&data, base);
    assert_eq!(now_master, master);
    let manifest = runtime
        .block_on(requests.snapshot(POLICY, "the test"))
        .expect("running")
        .unwrap_or_else(|why| panic!("no snapshot: {why}"));
    assert!(manifest.raw_bytes > 0);
    assert!(
        files(&dir.path().join("backups")).iter().any(|f| f.contains(&manifest.id)),
        "snapshot {} is in the store: {:?}",
        manifest.id,
        files(&dir.path().join("backups"))
    );

    // SIGTERM to this process: the daemon's handler takes it and stops the fleet.
    let _ = rustix::process::kill_process(rustix::process::getpid(), rustix::process::Signal::TERM);
    let stopped =
        runtime.block_on(async { tokio::time::timeout(Duration::from_secs(60), daemon).await });
    assert!(matches!(stopped, Ok(Ok(Ok(())))), "the daemon stopped cleanly");
}

/// Kills the fleet's instances however the test ends, so a failure leaks no redis-server.
struct KillOnDrop(std::path::PathBuf);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        for ordinal in 0..INSTANCES {
            let path = self.0.join(ordinal.to_string()).join("redis.pid");
            if let Ok(pid) = std::fs::read_to_string(path) {
                let _ = std::process::Command::new("kill").args(["-KILL", pid.trim()]).status();
            }
        }
    }
}
