//! INFO values must not drive scaling unchecked (issue 12: one peer's fake 5,000,000 ops/s
//! proposed `scale 9 -> 18`). Through `redis-autopilot plan`, on an `endpoints` target of
//! three real redis-servers and a peer on loopback that answers `INFO` with
//! `instantaneous_ops_per_sec:5000000`: the reading is left out, the fleet is not resized by
//! it, and the reason names the peer and what it reported.

mod support;

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::process::Command;

use support::replicated;

/// The INFO a lying peer answers with: a master claiming 5,000,000 ops/s.
const FAKE_INFO: &str = "# Server\r\nredis_version:7.0.15\r\ntcp_port:6379\r\n\r\n# Clients\r\n\
                         connected_clients:1\r\n\r\n# Memory\r\nused_memory:1000000\r\n\r\n\
                         # Stats\r\ninstantaneous_ops_per_sec:5000000\r\n\r\n# Replication\r\n\
                         role:master\r\nconnected_slaves:0\r\nmaster_repl_offset:0\r\n";

/// Serves one connection: `INFO` gets [`FAKE_INFO`], anything else `+OK`.
fn serve(mut socket: TcpStream) {
    let mut buffer = Vec::new();
    let mut chunk = [0_u8; 4096];
    loop {
        let n = socket.read(&mut chunk).unwrap_or(0);
        if n == 0 {
            return;
        }
        buffer.extend_from_slice(&chunk[..n]);
        for name in support::resp::commands(&mut buffer) {
            let reply = if name == "INFO" {
                format!("${}\r\n{FAKE_INFO}\r\n", FAKE_INFO.len())
            } else {
                "+OK\r\n".to_owned()
            };
            if socket.write_all(reply.as_bytes()).is_err() {
                return;
            }
        }
    }
}

/// A peer on loopback that speaks just enough RESP to lie in `INFO`; it lives as long as the
/// test process (each connection on a thread of its own).
fn lying_peer() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = listener.local_addr().expect("local addr").port();
    std::thread::spawn(move || {
        for socket in listener.incoming().flatten() {
            std::thread::spawn(move || serve(socket));
        }
    });
    port
}

#[test]
fn plan_leaves_a_fake_five_million_ops_reading_out_and_names_it() {
    let (master, replicas) = replicated(2);
    let fake = format!("127.0.0.1:{}", lying_peer());
    let mut endpoints = vec![master.addr(), replicas[0].addr(), replicas[1].addr()];
    endpoints.insert(1, fake.clone());
    let list: Vec<String> = endpoints.iter().map(|e| format!("'{e}'")).collect();
    let dir = tempfile::tempdir().expect("temp dir");
    let policy = dir.path().join("policy.yaml");
    // Four instances, target 1,000 ops/s each: the honest three idle. Counted, the fake
    // reading alone makes the mean 1,250,000 per replica: 4 -> 5,000, capped at 20.
    std::fs::write(
        &policy,
        format!(
            "apiVersion: autopilot.redis.io/v1alpha1\nkind: RedisPolicy\nmetadata: {{name: liar}}\n\
             spec:\n  target: {{endpoints: [{}]}}\n  sampling: {{interval: 2s, timeout: 1s}}\n  \
             scaling:\n    minReplicas: 1\n    maxReplicas: 20\n    metrics:\n      \
             - {{redis: instantaneous_ops_per_sec, statistic: last, window: 2s, target: 1000}}\n",
            list.join(", ")
        ),
    )
    .expect("write the policy");

    let output = Command::new(env!("CARGO_BIN_EXE_redis-autopilot"))
        .args(["plan", "--output", "json", "--policy"])
        .arg(&policy)
        .output()
        .expect("run redis-autopilot plan");
    let (stdout, stderr) =
        (String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr));
    assert_eq!(output.status.code(), Some(0), "the metric has data:\n{stdout}{stderr}");
    let report: serde_json::Value = serde_json::from_str(&stdout).expect("plan JSON");
    let rows = report["instances"].as_array().expect("instances");
    let row = rows.iter().find(|r| r["id"] == fake.as_str()).expect("the fake peer's row");
    assert_eq!((&row["outcome"], &row["opsPerSec"]), (&"ok".into(), &5_000_000.into()));

    let decision = &report["decisions"][0];
    let sentence = decision["sentence"].as_str().expect("a reason sentence");
    eprintln!("plan: {sentence}");
    assert!(
        sentence.contains(&format!(
            "left out as implausible: {fake} reported 5,000,000 > plausibleMax 2,000,000"
        )),
        "names the fake peer and its value: {sentence}"
    );
    // The honest three ask for fewer; the fake's load is unknown, so nothing scales down.
    assert!(sentence.ends_with("hold at 4"), "{sentence}");
    assert!(sentence.contains("1 instance(s) reported implausible readings"), "{sentence}");
    let reading = &decision["reason"]["readings"][0];
    assert!(reading["value"]["ok"].as_f64().expect("a value") < 1_000.0, "{reading}");
    assert_eq!(reading["outliers"][0]["instance"], fake.as_str(), "{reading}");
    assert_eq!(reading["outliers"][0]["value"], 5_000_000.0, "{reading}");
}
