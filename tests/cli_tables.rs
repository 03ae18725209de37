//! The tables the tool prints for people, from the built binary: one line per row whatever a
//! peer answers, and sizes in binary units, while `--output json` keeps exact bytes.

mod support;

use std::path::Path;
use std::process::Command;

const BIN: &str = env!("CARGO_BIN_EXE_redis-autopilot");

fn run(args: &[&str], policy: &Path) -> (Option<i32>, String, String) {
    let output = Command::new(BIN)
        .args(args)
        .arg("--policy")
        .arg(policy)
        .output()
        .expect("run redis-autopilot");
    let text = |b: &[u8]| String::from_utf8_lossy(b).into_owned();
    (output.status.code(), text(&output.stdout), text(&output.stderr))
}

/// Issue 17: `snapshot list` printed raw bytes (`88892`) where `plan` prints MiB.
#[test]
fn snapshot_list_shows_binary_units_and_its_json_exact_bytes() {
    let (master, replicas) = support::replicated(1);
    // Over a KiB of data, so that the size has a unit beyond bytes.
    support::load_collections(&master, &replicas);
    let dir = tempfile::tempdir().expect("temp dir");
    let policy = dir.path().join("policy.yaml");
    std::fs::write(
        &policy,
        format!(
            "apiVersion: autopilot.redis.io/v1alpha1\nkind: RedisPolicy\nmetadata: {{name: cache}}\n\
             spec:\n  target: {{endpoints: ['{}', '{}']}}\n  snapshots:\n    schedule: '0 0 3 * * *'\n    \
             destination: 'file://{}'\n    compression: none\n",
            master.addr(),
            replicas[0].addr(),
            dir.path().join("backups").display()
        ),
    )
    .expect("write the policy");
    let (code, _, stderr) = run(&["snapshot", "now"], &policy);
    assert_eq!(code, Some(0), "{stderr}");
    let (code, json, stderr) = run(&["snapshot", "list", "--output", "json"], &policy);
    assert_eq!(code, Some(0), "{stderr}");
    let listed: serde_json::Value = serde_json::from_str(&json).expect("list JSON");
    let raw = listed[0]["rawBytes"].as_u64().expect("exact bytes in JSON");
    let (code, table, stderr) = run(&["snapshot", "list"], &policy);
    assert_eq!(code, Some(0), "{stderr}");
    let row = table.lines().nth(1).expect("a row");
    assert!(!row.split_whitespace().any(|w| w == raw.to_string()), "raw bytes in:\n{table}");
    assert!(raw > 1024, "{json}");
    assert!(row.contains(" KiB ") || row.contains(" MiB "), "no binary unit in:\n{table}");
}
