//! `redis-autopilot demo` end to end: a real local fleet under trace-driven load scales up,
//! the live view shows the action with its reason, and SIGINT (Ctrl-C) stops load, daemon and
//! every redis-server it started.

mod support;

use std::io::{BufRead as _, BufReader};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use support::{free_port, require};

/// A base port with `count` free ports above it.
fn free_range(count: u16) -> u16 {
    loop {
        let base = free_port();
        let free = (0..count).all(|i| {
            base.checked_add(i)
                .is_some_and(|p| std::net::TcpListener::bind(("127.0.0.1", p)).is_ok())
        });
        if free && base < 65000 {
            return base;
        }
    }
}

#[test]
fn the_demo_scales_a_real_fleet_and_cleans_up_on_ctrl_c() {
    require("redis-server", "redis-server");
    let dir = tempfile::tempdir().expect("temp dir");
    let base = free_range(4);
    let policy = dir.path().join("demo.yaml");
    std::fs::write(
        &policy,
        format!(
            "apiVersion: autopilot.redis.io/v1alpha1\nkind: RedisPolicy\nmetadata: {{name: demo-test}}\n\
             spec:\n  target:\n    local: {{basePort: {base}, dataDir: '{}'}}\n  \
             sampling: {{interval: 1s, timeout: 500ms}}\n  scaling:\n    minReplicas: 1\n    \
             maxReplicas: 3\n    metrics:\n      - {{redis: instantaneous_ops_per_sec, window: 3s, target: 1000}}\n    \
             warmup: 1s\n    scaleUp: {{maxStep: 2, period: 1s}}\n",
            dir.path().join("data").display()
        ),
    )
    .expect("write policy");
    // A flat trace: 6,000 ops/s from the start asks for more than one replica at once.
    let trace = dir.path().join("flat.csv");
    std::fs::write(&trace, "t,load\n0,6000\n60,6000\n").expect("write trace");

    let mut child = Command::new(env!("CARGO_BIN_EXE_redis-autopilot"))
        .args(["demo", "--policy"])
        .arg(&policy)
        .arg("--trace")
        .arg(&trace)
        .args(["--from", "0", "--to", "60", "--speed", "1", "--peak", "6000"])
        .arg("--listen")
        .arg(format!("127.0.0.1:{}", free_port()))
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("start the demo");
    let pid = child.id();
    let (lines_tx, lines) = mpsc::channel();
    let stdout = child.stdout.take().expect("stdout");
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            let _ = lines_tx.send(line);
        }
    });

    let deadline = Instant::now() + Duration::from_secs(40);
    let mut transcript = Vec::new();
    let scaled = loop {
        let remaining = deadline.saturating_duration_since(Instant::now());
        match lines.recv_timeout(remaining) {
            Ok(line) => {
                // Redis's own ops/s estimate ramps over ~1.6 s, so the fleet may get there in
                // steps (1 -> 2 -> 3).
                let found = line.contains(">>")
                    && line.contains("[applied]")
                    && line.trim_end().ends_with("-> 3");
                transcript.push(line);
                if found {
                    break true;
                }
            }
            Err(_) => break false,
        }
    };
    // The new replicas really exist and follow the master.
    let replica = format!("{}", base + 2);
    let info = Command::new(require("redis-cli", "redis-tools"))
        .args(["-p", &replica, "INFO", "replication"])
        .output()
        .expect("redis-cli");
    let _ = Command::new("kill").args(["-INT", &pid.to_string()]).status();
    let status = child.wait().expect("demo exits");
    assert!(scaled, "no scale-up within 40 s:\n{}", transcript.join("\n"));
    assert!(String::from_utf8_lossy(&info.stdout).contains("role:slave"), "{info:?}");
    assert!(status.success(), "demo exited with {status}");
    let farewell: Vec<String> = lines.try_iter().collect();
    assert!(farewell.iter().any(|l| l.contains("the fleet is shut down")), "{farewell:?}");
    for port in base..base + 3 {
        assert!(
            std::net::TcpStream::connect(("127.0.0.1", port)).is_err(),
            "port {port} still answers after Ctrl-C"
        );
    }
}
