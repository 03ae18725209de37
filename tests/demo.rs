//! `redis-autopilot demo` end to end: a real local fleet under trace-driven load scales up,
//! the live view shows the action with its reason, and SIGINT (Ctrl-C) stops load, daemon and
//! every redis-server it started.

mod support;

use std::io::{BufRead as _, BufReader};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use support::{free_port, free_ports, require};

#[test]
fn the_demo_scales_a_real_fleet_and_cleans_up_on_ctrl_c() {
    require("redis-server", "redis-server");
    let dir = tempfile::tempdir().expect("temp dir");
    let base = free_ports(4);
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

/// The ports of the built-in policy's fleet (`policies/local-demo.yaml`: 7000 + i, six at most).
const BUILT_IN_PORTS: std::ops::Range<u16> = 7000..7006;

#[test]
fn the_built_in_demo_runs_from_any_directory_and_leaves_nothing_in_it() {
    require("redis-server", "redis-server");
    let cwd = tempfile::tempdir().expect("temp dir");
    let mut child = Command::new(env!("CARGO_BIN_EXE_redis-autopilot"))
        .args(["demo", "--plain", "--listen"])
        .arg(format!("127.0.0.1:{}", free_port()))
        .current_dir(cwd.path())
        // No `simulations/` or `policies/` here: both must come from the binary.
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("start the demo");
    let pid = child.id();
    let scratch = std::env::temp_dir().join(format!("redis-autopilot-demo-{pid}"));
    let (lines_tx, lines) = mpsc::channel();
    let stdout = child.stdout.take().expect("stdout");
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            let _ = lines_tx.send(line);
        }
    });
    // The default replay starts half an hour of trace before the ramp: at 120x, the first
    // scale-up comes within seconds, not minutes.
    let deadline = Instant::now() + Duration::from_secs(90);
    let mut transcript = Vec::new();
    let scaled = loop {
        match lines.recv_timeout(deadline.saturating_duration_since(Instant::now())) {
            Ok(line) => {
                let found = line.contains(">>") && line.contains("scale [applied]");
                transcript.push(line);
                if found {
                    break true;
                }
            }
            Err(_) => break false,
        }
    };
    let in_scratch = scratch.join("data").join("state.json").is_file();
    let _ = Command::new("kill").args(["-INT", &pid.to_string()]).status();
    let status = child.wait().expect("demo exits");
    assert!(scaled, "no scale-up within 90 s:\n{}", transcript.join("\n"));
    assert!(transcript[0].contains("embedded World Cup 1998 trace"), "{}", transcript[0]);
    assert!(in_scratch, "the fleet's record is not in {}", scratch.display());
    assert!(status.success(), "demo exited with {status}");
    let left: Vec<_> = std::fs::read_dir(cwd.path()).expect("read cwd").flatten().collect();
    assert!(left.is_empty(), "the demo wrote into its working directory: {left:?}");
    assert!(!scratch.exists(), "{} outlived the demo", scratch.display());
    for port in BUILT_IN_PORTS {
        assert!(
            std::net::TcpStream::connect(("127.0.0.1", port)).is_err(),
            "port {port} still answers after Ctrl-C"
        );
    }
}

#[test]
fn a_port_in_use_stops_the_demo_before_it_starts_and_names_the_flag() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = taken.local_addr().expect("address");
    let child = Command::new(env!("CARGO_BIN_EXE_redis-autopilot"))
        .args(["demo", "--plain", "--listen", &addr.to_string()])
        .current_dir(std::env::temp_dir())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("run the demo");
    let scratch = std::env::temp_dir().join(format!("redis-autopilot-demo-{}", child.id()));
    let output = child.wait_with_output().expect("the demo's output");
    let (stdout, stderr) =
        (String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr));
    assert!(!output.status.success(), "{stdout}\n{stderr}");
    assert!(stderr.contains(&format!("cannot listen on {addr}")), "{stderr}");
    assert!(stderr.contains("pass --listen 127.0.0.1:PORT"), "{stderr}");
    // Nothing was started, so nothing is reported as stopped, and nothing is left behind.
    assert!(!stdout.contains("demo stopped"), "{stdout}");
    assert!(!scratch.exists(), "{} left behind", scratch.display());
}
