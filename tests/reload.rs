//! Reloads of a running daemon, end to end: a rotated password (in Redis and in a
//! Kubernetes-style Secret volume swapped through its `..data` symlink) is picked up without
//! an edit of the policy, and the fleet can still be acted on; an edit of where a policy
//! connects restarts its loop on the new target; a directory the daemon cannot list (out of
//! file descriptors) or a policy file far too large changes nothing.

mod support;

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use support::policy_daemon::{Daemon, instance_pid, recorded_master, signal_pid};
use support::{Redis, free_ports, require};

const SAMPLES: &str = "redis_autopilot_samples_total";

fn samples(daemon: &Daemon, policy: &str, outcome: &str) -> Option<f64> {
    daemon.metric(SAMPLES, &[("policy", policy), ("source", "redis"), ("outcome", outcome)])
}

/// Waits until `more` samples of `policy` than now came back `ok`.
fn wait_for_ok_samples(daemon: &mut Daemon, policy: &str, more: f64) {
    let start =
        daemon.wait_until(Duration::from_secs(20), "/metrics", |d| samples(d, policy, "ok"));
    daemon.wait_until(Duration::from_secs(30), &format!("{more} more ok samples"), |d| {
        samples(d, policy, "ok").filter(|&now| now >= start + more)
    });
}

fn endpoints_policy(name: &str, endpoints: &[u16]) -> String {
    let list: Vec<String> = endpoints.iter().map(|p| format!("'127.0.0.1:{p}'")).collect();
    format!(
        "apiVersion: autopilot.redis.io/v1alpha1
kind: RedisPolicy
metadata: {{name: {name}}}
spec:
  target:
    endpoints: [{list}]
  sampling: {{interval: 1s, timeout: 500ms}}
  scaling:
    minReplicas: 1
    maxReplicas: 4
    metrics:
      - {{redis: instantaneous_ops_per_sec, target: 100000}}
",
        list = list.join(", "),
    )
}

/// A Kubernetes Secret volume holding `password`: `password -> ..data/password`, `..data ->
/// ..<stamp>`, swapped the way the kubelet does it (a new link renamed over `..data`).
fn mount_secret(dir: &Path, stamp: &str, value: &str) {
    let version = dir.join(format!("..{stamp}"));
    std::fs::create_dir_all(&version).expect("create a Secret version dir");
    std::fs::write(version.join("password"), format!("{value}\n")).expect("write the password");
    let staged = dir.join("..data_tmp");
    std::os::unix::fs::symlink(format!("..{stamp}"), &staged).expect("stage ..data");
    std::fs::rename(&staged, dir.join("..data")).expect("swap ..data");
    if std::fs::symlink_metadata(dir.join("password")).is_err() {
        std::os::unix::fs::symlink("..data/password", dir.join("password")).expect("link");
    }
}

/// `redis-cli -a PASSWORD -p PORT ARGS...`; `None` when it fails (refused, wrong password).
fn cli(port: u16, password: &str, args: &[&str]) -> Option<String> {
    let out = Command::new(require("redis-cli", "redis-tools"))
        .args(["--no-auth-warning", "-a", password, "-h", "127.0.0.1", "-p", &port.to_string()])
        .args(args)
        .stderr(Stdio::null())
        .output()
        .expect("run redis-cli");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let failed = !out.status.success()
        || text.starts_with("Could not connect")
        || text.starts_with("NOAUTH")
        || text.starts_with("WRONGPASS")
        || text.starts_with("ERR");
    (!failed).then_some(text)
}

fn info(port: u16, password: &str, field: &str) -> Option<String> {
    cli(port, password, &["INFO", "replication"])?.lines().find_map(|line| {
        let (key, value) = line.split_once(':')?;
        (key == field).then(|| value.trim().to_owned())
    })
}

#[test]
fn a_rotated_password_is_used_for_sampling_and_for_acting() {
    let dir = tempfile::tempdir().expect("temp dir");
    let secrets = dir.path().join("secrets");
    std::fs::create_dir(&secrets).expect("create the Secret volume");
    mount_secret(&secrets, "2026_12_02_first", "first-pass");
    let data_dir = dir.path().join("data");
    let base = free_ports(3);
    let policy = format!(
        "apiVersion: autopilot.redis.io/v1alpha1
kind: RedisPolicy
metadata: {{name: rotate}}
spec:
  target:
    local: {{redisServer: {server}, basePort: {base}, dataDir: {data}}}
  auth: {{passwordFile: {password}}}
  sampling: {{interval: 1s, timeout: 500ms}}
  scaling:
    minReplicas: 2
    maxReplicas: 2
    metrics:
      - {{redis: instantaneous_ops_per_sec, target: 100000}}
",
        server = require("redis-server", "redis-server").display(),
        data = data_dir.display(),
        password = secrets.join("password").display(),
    );
    let mut daemon = Daemon::spawn_in(dir, &[("rotate.yaml", &policy)]);
    daemon.wait_ready(Duration::from_secs(60));
    let ports = [base, base + 1];

    // Rotation: Redis first (every instance), then the Secret.
    for port in ports {
        for setting in ["masterauth", "requirepass"] {
            let set = cli(port, "first-pass", &["CONFIG", "SET", setting, "second-pass"]);
            assert!(set.is_some(), "CONFIG SET {setting} on {port}");
        }
    }
    mount_secret(&secrets, "2026_12_02_second", "second-pass");
    daemon.wait_until(Duration::from_secs(20), "the daemon re-reads the Secret", |d| {
        d.log().contains("secret changed").then_some(())
    });
    // Connections made before keep their login: cut them, so only the new password helps.
    for port in ports {
        let killed =
            cli(port, "second-pass", &["CLIENT", "KILL", "TYPE", "normal", "SKIPME", "yes"]);
        assert!(killed.is_some(), "CLIENT KILL on {port}");
    }
    wait_for_ok_samples(&mut daemon, "rotate", 6.0);

    // Acting: kill the master; the failover promotes and repoints with the new password, and
    // the instance restarted in its place logs in to the new master with it.
    let master = recorded_master(&data_dir).expect("a recorded master");
    let (old, new) = if master.ends_with(&format!(":{base}")) { (0, 1) } else { (1, 0) };
    signal_pid(instance_pid(&data_dir, old).expect("the master's pid"), "KILL");
    let new_master = format!("127.0.0.1:{}", base + new);
    daemon.wait_until(Duration::from_secs(30), "a failover to the replica", |_| {
        let recorded = recorded_master(&data_dir)?;
        let serving = info(base + new, "second-pass", "role")?;
        (recorded == new_master && serving == "master").then_some(())
    });
    daemon.wait_until(
        Duration::from_secs(30),
        "the killed instance back as a linked replica",
        |_| {
            let link = info(base + old, "second-pass", "master_link_status")?;
            (link == "up").then_some(())
        },
    );
    assert!(!daemon.log().contains("WRONGPASS"), "{}", daemon.log());
    assert!(daemon.stop(), "the daemon exits on SIGTERM:\n{}", daemon.log());
}

#[test]
fn an_edit_of_the_endpoints_takes_effect_without_a_restart() {
    let (first, second) = (Redis::master(), Redis::master());
    let mut daemon = Daemon::spawn(&[("edit.yaml", &endpoints_policy("edit", &[first.port]))]);
    daemon.wait_ready(Duration::from_secs(30));
    let replicas = |d: &Daemon| d.metric("redis_autopilot_replicas_current", &[("policy", "edit")]);
    daemon
        .wait_until(Duration::from_secs(20), "one instance", |d| replicas(d).filter(|&n| n == 1.0));
    daemon.write_policy("edit.yaml", &endpoints_policy("edit", &[first.port, second.port]));
    daemon.wait_until(Duration::from_secs(30), "both instances sampled and counted", |d| {
        replicas(d).filter(|&n| n == 2.0)
    });
    assert!(daemon.log().contains("restarting its loop"), "{}", daemon.log());
    daemon.wait_ready(Duration::from_secs(20));
    assert!(daemon.stop(), "the daemon exits on SIGTERM:\n{}", daemon.log());
}

/// The lowest file descriptor number `pid` has free: a soft `RLIMIT_NOFILE` there makes every
/// new open fail with EMFILE.
fn lowest_free_fd(pid: u32) -> u64 {
    let mut open: Vec<u64> = std::fs::read_dir(format!("/proc/{pid}/fd"))
        .expect("list /proc/PID/fd")
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok())
        .collect();
    open.sort_unstable();
    (0..).find(|fd| open.binary_search(fd).is_err()).expect("a free fd")
}

fn set_soft_nofile(pid: u32, limit: &str) {
    let status = Command::new(require("prlimit", "util-linux"))
        .args(["--pid", &pid.to_string(), &format!("--nofile={limit}:")])
        .status()
        .expect("run prlimit");
    assert!(status.success(), "prlimit --nofile={limit}:");
}

#[test]
fn running_out_of_file_descriptors_removes_no_policy() {
    let redis = Redis::master();
    let mut daemon = Daemon::spawn(&[("fds.yaml", &endpoints_policy("fds", &[redis.port]))]);
    daemon.wait_ready(Duration::from_secs(30));
    let limits = std::fs::read_to_string(format!("/proc/{}/limits", daemon.pid())).expect("limits");
    let soft = limits
        .lines()
        .find_map(|l| {
            l.strip_prefix("Max open files")?.split_whitespace().next().map(str::to_owned)
        })
        .expect("Max open files");

    set_soft_nofile(daemon.pid(), &lowest_free_fd(daemon.pid()).to_string());
    daemon.wait_until(Duration::from_secs(20), "a failed listing of the policy directory", |d| {
        d.log().contains("cannot list the policies").then_some(())
    });
    set_soft_nofile(daemon.pid(), &soft);

    wait_for_ok_samples(&mut daemon, "fds", 4.0);
    assert!(!daemon.log().contains("policy removed"), "{}", daemon.log());
    daemon.wait_ready(Duration::from_secs(20));
    assert!(daemon.stop(), "the daemon exits on SIGTERM:\n{}", daemon.log());
}

#[test]
fn a_two_gigabyte_policy_file_is_rejected_without_reading_it() {
    let redis = Redis::master();
    let mut daemon = Daemon::spawn(&[("small.yaml", &endpoints_policy("small", &[redis.port]))]);
    daemon.wait_ready(Duration::from_secs(30));
    let huge = std::fs::File::create(daemon.policies.join("huge.yaml")).expect("create");
    huge.set_len(2 << 30).expect("a sparse 2 GiB file");
    daemon.wait_until(Duration::from_secs(20), "the huge file rejected", |d| {
        d.log().contains("larger than 1024 KiB").then_some(())
    });
    let peak_mb = daemon.status_kb("VmHWM") / 1024;
    assert!(peak_mb < 100, "the daemon's peak memory grew to {peak_mb} MB:\n{}", daemon.log());
    wait_for_ok_samples(&mut daemon, "small", 2.0);
    assert!(daemon.stop(), "the daemon exits on SIGTERM:\n{}", daemon.log());
}
