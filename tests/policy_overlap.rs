//! Two policies on one target fight: each scales and fails over by its own view, undoing the
//! other's (issue 12: two `local` policies on one `basePort`/`dataDir` flip-flopped the fleet
//! between 2 and 3 replicas). The daemon refuses the second the way `check` does: at start it
//! does not start, naming both files; dropped into the directory of a running daemon, it is
//! refused while the first one's fleet keeps its replica count, and it loads once it moves
//! off the first one's target.

mod support;

use std::net::TcpStream;
use std::path::Path;
use std::time::{Duration, Instant};

use support::policy_daemon::{Daemon, recorded_master};
use support::{free_ports, require};

const SAMPLES: &str = "redis_autopilot_samples_total";
const REPLICAS: &str = "redis_autopilot_replicas_current";
const DECISIONS: &str = "redis_autopilot_decisions_total";
const REJECTED: &str = "redis_autopilot_policies_rejected";

/// A local fleet held at exactly `replicas` (min = max), sampled every second.
fn local_policy(name: &str, base: u16, data_dir: &Path, replicas: u16) -> String {
    format!(
        "apiVersion: autopilot.redis.io/v1alpha1
kind: RedisPolicy
metadata: {{name: {name}}}
spec:
  target:
    local: {{redisServer: {server}, basePort: {base}, dataDir: {data}}}
  sampling: {{interval: 1s, timeout: 500ms}}
  scaling:
    minReplicas: {replicas}
    maxReplicas: {replicas}
    metrics:
      - {{redis: instantaneous_ops_per_sec, target: 100000}}
",
        server = require("redis-server", "redis-server").display(),
        data = data_dir.display(),
    )
}

fn ok_samples(daemon: &Daemon, policy: &str) -> Option<f64> {
    daemon.metric(SAMPLES, &[("policy", policy), ("source", "redis"), ("outcome", "ok")])
}

fn listening(port: u16) -> bool {
    TcpStream::connect_timeout(&([127, 0, 0, 1], port).into(), Duration::from_millis(200)).is_ok()
}

#[test]
fn a_policy_dropped_onto_a_running_fleet_is_refused_and_the_fleet_keeps_its_size() {
    let dir = tempfile::tempdir().expect("temp dir");
    let data = dir.path().join("data");
    let base = free_ports(4);
    let first = local_policy("first", base, &data, 2);
    let mut daemon = Daemon::spawn_in(dir, &[("first.yaml", &first)]);
    daemon.wait_ready(Duration::from_secs(60));
    daemon.wait_until(Duration::from_secs(30), "first's fleet at 2 replicas", |d| {
        let replicas = d.metric(REPLICAS, &[("policy", "first")])?;
        (replicas == 2.0 && recorded_master(&data).is_some()).then_some(())
    });
    let scales_before = daemon.metric(DECISIONS, &[("policy", "first"), ("kind", "scale")]);

    // The same ports and data directory, asking for 3: the fleet of issue 12.
    let second = local_policy("second", base, &data, 3);
    daemon.write_policy("second.yaml", &second);
    daemon.wait_until(Duration::from_secs(30), "the second policy refused", |d| {
        (d.metric(REJECTED, &[("reason", "overlap")])? == 1.0).then_some(())
    });
    let log = daemon.log();
    let refusal = log
        .lines()
        .find(|line| line.contains("policy refused"))
        .unwrap_or_else(|| panic!("no refusal logged\n{log}"));
    let (first_file, second_file) =
        (daemon.policies.join("first.yaml"), daemon.policies.join("second.yaml"));
    for file in [&first_file, &second_file] {
        assert!(refusal.contains(&file.display().to_string()), "names {file:?}: {refusal}");
    }
    assert!(refusal.contains("ports meet"), "names the overlap: {refusal}");

    // Scaling rounds of the first policy, waited on as events: every look at the fleet in
    // between finds 2 replicas, a third port never listening and the second policy never
    // sampling. Before the fix, the second policy's first round scaled the fleet to 3.
    const ROUNDS: f64 = 8.0;
    let start = ok_samples(&daemon, "first").expect("first's samples");
    let mut looks = 0;
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let replicas = daemon.metric(REPLICAS, &[("policy", "first")]).expect("/metrics");
        assert_eq!(replicas, 2.0, "first's fleet changed size after {looks} looks");
        assert!(!listening(base + 2), "a third instance listens after {looks} looks");
        assert_eq!(ok_samples(&daemon, "second"), Some(0.0), "the second policy runs");
        looks += 1;
        // 2 instances per round.
        if ok_samples(&daemon, "first").expect("/metrics") >= start + 2.0 * ROUNDS {
            break;
        }
        assert!(Instant::now() < deadline, "{ROUNDS} rounds not within 60 s");
        assert!(daemon.child.try_wait().expect("try_wait").is_none(), "the daemon exited");
        std::thread::sleep(Duration::from_millis(100));
    }
    let scales_after = daemon.metric(DECISIONS, &[("policy", "first"), ("kind", "scale")]);
    assert_eq!(scales_after, scales_before, "first decided to scale its fleet again");
    assert!(daemon.try_get("/healthz").is_some_and(|(status, _)| status == 200));
    eprintln!("{ROUNDS} rounds of `first`, {looks} looks: always 2 replicas, no third instance");

    // Moved off the first fleet's ports and directory, the second policy loads.
    let other = daemon.dir.path().join("other");
    let second = local_policy("second", free_ports(2), &other, 1);
    daemon.write_policy("second.yaml", &second);
    daemon.wait_until(Duration::from_secs(60), "the second policy running", |d| {
        let rejected = d.metric(REJECTED, &[("reason", "overlap")])?;
        (rejected == 0.0 && ok_samples(d, "second")? > 0.0).then_some(())
    });
    assert_eq!(daemon.metric(REPLICAS, &[("policy", "first")]), Some(2.0));
    assert!(!listening(base + 2));
}

#[test]
fn overlapping_policies_in_the_directory_fail_the_start_naming_both_files() {
    let dir = tempfile::tempdir().expect("temp dir");
    let (data, other) = (dir.path().join("data"), dir.path().join("other"));
    let base = free_ports(4);
    // Apart in ports, one inside the other's data directory.
    let first = local_policy("first", base, &data, 2);
    let second = local_policy("second", base + 2, &data.join("nested"), 1);
    let mut daemon = Daemon::spawn_in(dir, &[("first.yaml", &first), ("second.yaml", &second)]);
    let deadline = Instant::now() + Duration::from_secs(30);
    let status = loop {
        if let Some(status) = daemon.child.try_wait().expect("try_wait") {
            break status;
        }
        assert!(Instant::now() < deadline, "still running\n{}", daemon.log());
        std::thread::sleep(Duration::from_millis(100));
    };
    let log = daemon.log();
    assert!(!status.success(), "{status}\n{log}");
    let second_file = daemon.policies.join("second.yaml").display().to_string();
    let first_file = daemon.policies.join("first.yaml").display().to_string();
    let line = log
        .lines()
        .find(|line| line.starts_with(&second_file))
        .unwrap_or_else(|| panic!("no problem at second.yaml\n{log}"));
    assert!(line.contains(&format!("overlaps policy `first` ({first_file})")), "{line}");
    assert!(line.contains("same or nested"), "{line}");
    // Nothing was started for either.
    assert!(!data.exists() && !other.exists(), "a fleet was started");
    assert!(!listening(base) && !listening(base + 2));
}
