//! Requests to a running daemon from code beside it (`daemon::requests`, what the demo's keys
//! use), against a real local fleet: a paused policy decides a failover and does not perform
//! it, and resuming performs it; a snapshot asked for is refused while paused and taken once
//! resumed, through the same gate as scheduled ones.
//!
//! One test in this file: it ends the in-process daemon with SIGTERM to its own process,
//! which the daemon's handler takes (so nothing else in this binary may be running).

mod support;

use std::path::Path;
use std::time::Duration;

use redis_autopilot::act::{ActionOutcome, Mode, RateLimit};
use redis_autopilot::daemon::policy_loop::Shared;
use redis_autopilot::daemon::supervisor::{RunConfig, run};
use support::failover::{INSTANCES, free_port_range, info_field, record, signal, wait_until};
use support::{free_port, require};

const POLICY: &str = "requests-e2e";

fn write_policy(dir: &Path, base: u16) {
    let server = require("redis-server", "redis-server");
    let policies = dir.join("policies");
    std::fs::create_dir_all(&policies).expect("policy dir");
    std::fs::write(
        policies.join("policy.yaml"),
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
",
            server = server.display(),
            data = dir.join("data").display(),
            backups = dir.join("backups").display(),
        ),
    )
    .expect("write the policy");
}

/// The newest decision of `kind`, with what became of it.
fn latest(shared: &Shared, kind: &str) -> Option<Option<ActionOutcome>> {
    let recent = shared.status.recent(Some(POLICY), 200);
    recent.into_iter().find(|r| r.decision.kind() == kind).map(|r| r.action)
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
    let base = free_port_range();
    write_policy(dir.path(), base);
    let data = dir.path().join("data");
    let _instances = KillOnDrop(data.clone());
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    let shared = Shared::new();
    let daemon = runtime.spawn(run(
        RunConfig {
            policies: dir.path().join("policies"),
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
    let no_log = String::new;
    let (master, epoch) = wait_until(Duration::from_secs(30), "a recorded master", no_log, || {
        let (port, epoch) = record(&data)?;
        (info_field(port, "role")? == "master").then_some((port, epoch))
    });
    let replicas: Vec<u16> = (base..base + INSTANCES).filter(|&p| p != master).collect();
    wait_until(Duration::from_secs(30), "the replicas linked", no_log, || {
        for &replica in &replicas {
            (info_field(replica, "master_link_status")? == "up").then_some(())?;
        }
        Some(())
    });

    let requests = shared.requests.clone();
    let paused = runtime.block_on(requests.pause(POLICY, true, "the test")).expect("running");
    assert_eq!(paused, Ok(()));
    let metrics = shared.metrics.encode().expect("metrics");
    assert!(
        metrics.contains(&format!("redis_autopilot_policy_paused{{policy=\"{POLICY}\"}} 1")),
        "{metrics}"
    );
    let unknown = runtime.block_on(requests.pause("nope", true, "the test")).expect("running");
    assert!(unknown.is_err_and(|why| why.contains("nope")));
    let refused = runtime.block_on(requests.snapshot(POLICY, "the test")).expect("running");
    assert_eq!(refused.map(|m| m.id), Err("paused".to_owned()));

    // The master dies while paused: the failover is decided, explained, and not performed.
    signal(pid(&data, master - base), "KILL");
    let outcome = wait_until(Duration::from_secs(30), "a failover decided", no_log, || {
        latest(&shared, "failover")
    });
    assert_eq!(outcome, Some(ActionOutcome::Paused));
    assert_eq!(record(&data), Some((master, epoch)), "paused, the record stays");
    for &replica in &replicas {
        let role = info_field(replica, "role");
        assert_eq!(role.as_deref(), Some("slave"), "no promotion while paused");
    }

    // Resumed: the decision made again is performed.
    let resumed = runtime.block_on(requests.pause(POLICY, false, "the test")).expect("running");
    assert_eq!(resumed, Ok(()));
    let (new_master, new_epoch) =
        wait_until(Duration::from_secs(30), "the failover performed", no_log, || {
            record(&data).filter(|(port, _)| *port != master)
        });
    assert!(replicas.contains(&new_master));
    assert!(new_epoch > epoch);
    let metrics = shared.metrics.encode().expect("metrics");
    assert!(metrics.contains(&format!("redis_autopilot_policy_paused{{policy=\"{POLICY}\"}} 0")));

    // A snapshot asked for now (from a replica linked to the new master) is taken, and is in
    // the store.
    let source = replicas.iter().copied().find(|&p| p != new_master).expect("another replica");
    wait_until(
        Duration::from_secs(30),
        "the other replica linked to the new master",
        no_log,
        || {
            (info_field(source, "master_port")? == new_master.to_string()).then_some(())?;
            (info_field(source, "master_link_status")? == "up").then_some(())
        },
    );
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
