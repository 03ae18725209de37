//! The tables the tool prints for people, from the built binary: one line per row whatever a
//! peer answers, and sizes in binary units, while `--output json` keeps exact bytes.

mod support;

use std::io::{Read as _, Write as _};
use std::net::TcpListener;
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

/// A peer on a loopback port that answers every read with an HTTP error page: not Redis, and
/// the client's parse error about it spans several lines.
fn http_peer() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = listener.local_addr().expect("addr").port();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { return };
            std::thread::spawn(move || {
                let mut buffer = [0_u8; 4096];
                while let Ok(n) = stream.read(&mut buffer) {
                    let page = b"HTTP/1.1 400 Bad Request\r\n\r\n<html>\n<body>bad</body>\n";
                    if n == 0 || stream.write_all(page).is_err() {
                        return;
                    }
                }
            });
        }
    });
    port
}

/// Issue 17: a peer's parse error spanned several lines and broke `plan`'s instance table.
#[test]
fn plan_keeps_an_instance_whose_error_spans_lines_on_one_row() {
    let redis = support::Redis::master();
    let peer = format!("127.0.0.1:{}", http_peer());
    let dir = tempfile::tempdir().expect("temp dir");
    let policy = dir.path().join("policy.yaml");
    std::fs::write(
        &policy,
        format!(
            "apiVersion: autopilot.redis.io/v1alpha1\nkind: RedisPolicy\nmetadata: {{name: t}}\n\
             spec:\n  target: {{endpoints: ['{}', '{peer}']}}\n  sampling: {{timeout: 2s}}\n",
            redis.addr()
        ),
    )
    .expect("write the policy");
    let (code, stdout, stderr) = run(&["plan"], &policy);
    assert!(matches!(code, Some(0 | 2)), "{stdout}\n{stderr}");
    let lines: Vec<&str> = stdout.lines().collect();
    let header = lines.iter().position(|l| l.starts_with("INSTANCE")).expect("a header");
    let rows: Vec<&str> =
        lines[header + 1..].iter().take_while(|l| !l.is_empty()).copied().collect();
    assert_eq!(rows.len(), 2, "one row per instance:\n{stdout}");
    let row = rows.iter().find(|r| r.starts_with(&peer)).expect("the peer's row");
    assert!(row.contains("protocol error"), "{stdout}");
    // The row goes on to the other columns after the error (ROLE and the rest are `-`).
    assert!(row.trim_end().ends_with('-'), "{stdout}");
    // JSON keeps the error as the client said it.
    let (_, json, _) = run(&["plan", "--output", "json"], &policy);
    let report: serde_json::Value = serde_json::from_str(&json).expect("plan JSON");
    let outcome = report["instances"][1]["outcome"].as_str().expect("an outcome");
    assert!(outcome.contains('\n'), "the JSON keeps the full text: {outcome:?}");
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
