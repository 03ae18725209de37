//! `redis-autopilot status` against a local fleet of real redis-servers run by a real daemon:
//! the page says who is master at which epoch and whether it serves, lists every member, says
//! who leads the policy, and after a master is killed shows the failover with its reason. With
//! the master dead and no daemon, it says the master is down (where `plan` only said a metric
//! was missing) and exits 2. A daemon that cannot be reached is said so, not fatal. The same
//! page comes from the kubectl plugin (the binary run as `kubectl-autopilot`).

mod support;

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use serde_json::Value;
use support::failover::{Fleet, POLICY, signal, wait_until};

/// Runs `status` on the fleet's policy: exit code, stdout, stderr.
fn status(fleet: &Fleet, daemon: &str, json: bool) -> (Option<i32>, String, String) {
    status_by(Path::new(env!("CARGO_BIN_EXE_redis-autopilot")), fleet, daemon, json)
}

/// [`status`], run as `program`.
fn status_by(
    program: &Path,
    fleet: &Fleet,
    daemon: &str,
    json: bool,
) -> (Option<i32>, String, String) {
    let mut command = Command::new(program);
    command.arg("status").arg("--policy").arg(&fleet.policy).args(["--daemon", daemon]);
    if json {
        command.args(["--output", "json"]);
    }
    let out = command.output().expect("run status");
    let text = |b: &[u8]| String::from_utf8_lossy(b).into_owned();
    (out.status.code(), text(&out.stdout), text(&out.stderr))
}

fn status_json(fleet: &Fleet) -> (Option<i32>, Value) {
    let (code, out, err) = status(fleet, &format!("http://{}", fleet.listen), true);
    let report = serde_json::from_str(&out).unwrap_or_else(|e| panic!("{e}: {out}{err}"));
    (code, report)
}

#[test]
fn status_shows_the_master_the_members_the_leader_and_a_failover_with_its_reason() {
    let mut fleet = Fleet::start("");
    let (master, epoch) = fleet.record().expect("a recorded master");

    let (code, report) = status_json(&fleet);
    assert_eq!(code, Some(0), "{report:#}");
    assert_eq!(report["policy"], POLICY);
    assert_eq!(report["master"]["instance"], format!("127.0.0.1:{master}"), "{report:#}");
    assert_eq!(report["master"]["epoch"], epoch);
    assert_eq!(report["master"]["serving"], true);
    let members = report["members"].as_array().expect("members");
    assert_eq!(members.len(), fleet.ports().len(), "{report:#}");
    let masters = members.iter().filter(|m| m["role"] == "master").count();
    assert_eq!(masters, 1, "{report:#}");
    assert!(
        members.iter().filter(|m| m["role"] == "replica").all(|m| m["linkUp"] == true),
        "{report:#}"
    );
    assert_eq!(report["daemon"]["view"]["leading"], true, "{report:#}");
    assert_eq!(report["paused"], false);
    assert_eq!(report["verdict"], Value::Array(vec![]), "a healthy fleet: {report:#}");

    // Kill the master: the daemon fails over, and status shows the new master and why.
    signal(fleet.pid(master), "KILL");
    wait_until(
        Duration::from_secs(30),
        "a failover",
        || fleet.log(),
        || fleet.record().filter(|&(_, e)| e > epoch),
    );
    let (new_master, new_epoch) = fleet.record().expect("a record");
    // As the kubectl plugin: the binary under the plugin's name, with a policy file.
    let bin = tempfile::tempdir().expect("temp dir");
    let plugin = bin.path().join("kubectl-autopilot");
    std::os::unix::fs::symlink(env!("CARGO_BIN_EXE_redis-autopilot"), &plugin).expect("link");
    let help = Command::new(&plugin).arg("--help").output().expect("run the plugin");
    let help = String::from_utf8_lossy(&help.stdout);
    assert!(help.contains("Usage: kubectl autopilot"), "{help}");
    let (code, out, err) = status_by(&plugin, &fleet, &format!("http://{}", fleet.listen), false);
    assert_eq!(code, Some(0), "{out}{err}");
    eprintln!("status after the failover:\n{out}");
    assert!(
        out.contains(&format!("Master: 127.0.0.1:{new_master} at epoch {new_epoch} (serving)")),
        "{out}"
    );
    assert!(out.contains("leads it"), "{out}");
    let failover = out.lines().find(|l| l.starts_with("Last failover:")).unwrap_or_default();
    assert!(
        failover.contains(&format!("to 127.0.0.1:{new_master} at epoch {new_epoch}"))
            && failover.contains(&format!("127.0.0.1:{master}")),
        "the failover and its reason: {out}"
    );

    // No daemon: status still reads the fleet and says the daemon was not reached.
    let (code, out, _) = status(&fleet, "http://127.0.0.1:1", false);
    assert_eq!(code, Some(0), "{out}");
    assert!(out.contains("Daemon: not reached at http://127.0.0.1:1"), "{out}");

    // The master dead and nobody acting on it: status says so and exits 2.
    fleet.kill_daemon();
    signal(fleet.pid(new_master), "KILL");
    wait_until(
        Duration::from_secs(10),
        "the master gone",
        || fleet.log(),
        || {
            support::failover::connect(new_master, Duration::from_millis(200))
                .is_none()
                .then_some(())
        },
    );
    let (code, out, err) = status(&fleet, "http://127.0.0.1:1", false);
    assert_eq!(code, Some(2), "{out}{err}");
    eprintln!("status with the master dead and no daemon:\n{out}");
    assert!(out.contains("(NOT serving)"), "{out}");
    let health: Vec<&str> = out
        .lines()
        .skip_while(|l| !l.starts_with("Health ("))
        .skip(1)
        .take_while(|l| l.starts_with("  "))
        .collect();
    assert!(
        health.iter().any(|l| l.contains(&format!("127.0.0.1:{new_master}"))),
        "the verdict names the dead master: {out}"
    );
}
