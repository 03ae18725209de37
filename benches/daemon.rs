//! The daemon as users run it: the release binary, `run --dry-run`, against a fleet of real
//! local `redis-server`s, measured from outside like any other process.
//!
//! Ten policies, each an `endpoints:` target of ten servers, sample every second, read a p95
//! of `instantaneous_ops_per_sec` over 1 m and forecast over 5 m, so each policy's history
//! fills to ~300 rounds of ten instances: the most memory a policy of this shape can hold.
//! Static endpoints cannot be scaled; the daemon still samples, decides and reports, which is
//! all this measures.
//!
//! Printed:
//! - resident memory (`VmRSS`, and the peak `VmHWM`, from `/proc/PID/status`) at fixed times
//!   after start: it must stay flat once the history is full, and under 30 MiB;
//! - time from spawning the process to each policy's first decision on `/v1/decisions` and
//!   to `/readyz` answering 200, and from a policy's first sampling round (the decision's
//!   `at`, taken when the round starts) to that decision being served. Target: under 1 s.
//!
//! `DAEMON_BENCH_SECS` sets how long the measured run lasts (default 180 s). Without
//! `--bench` (the `cargo test` smoke run) it is one policy over two servers, stopped once the
//! first decision is served.

#[path = "../tests/support/mod.rs"]
mod support;

use std::collections::BTreeMap;
use std::io::{Read as _, Write as _};
use std::net::TcpStream;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use support::{Process, Redis, free_port, start_fleet};

/// How often the bench polls the daemon's HTTP surface while waiting for first decisions.
const POLL: Duration = Duration::from_millis(5);

/// Times after start at which memory is read, when the run lasts that long.
const CHECKPOINTS: [u64; 5] = [10, 60, 120, 180, 300];

struct Shape {
    policies: usize,
    per_policy: usize,
    run_for: Duration,
}

fn main() {
    let measuring = std::env::args().any(|a| a == "--bench");
    let shape = if measuring {
        let secs: u64 = std::env::var("DAEMON_BENCH_SECS")
            .map(|s| s.parse().expect("DAEMON_BENCH_SECS must be a whole number of seconds"))
            .unwrap_or(180);
        Shape { policies: 10, per_policy: 10, run_for: Duration::from_secs(secs) }
    } else {
        Shape { policies: 1, per_policy: 2, run_for: Duration::ZERO }
    };
    let count = shape.policies * shape.per_policy;

    let started = Instant::now();
    let fleet = start_fleet(count);
    eprintln!("started {count} redis-servers in {:.1} s", started.elapsed().as_secs_f64());

    let dir = tempfile::tempdir().expect("temp dir");
    let policy_dir = dir.path().join("policies");
    std::fs::create_dir(&policy_dir).expect("policy dir");
    let names: Vec<String> = (0..shape.policies).map(|i| format!("bench-{i:02}")).collect();
    for (name, servers) in names.iter().zip(fleet.chunks(shape.per_policy)) {
        write_policy(&policy_dir, name, servers);
    }

    let port = free_port();
    let log = dir.path().join("daemon.log");
    let spawned = Instant::now();
    let child = Command::new(env!("CARGO_BIN_EXE_redis-autopilot"))
        .args(["run", "--dry-run", "--policies"])
        .arg(&policy_dir)
        .args(["--listen", &format!("127.0.0.1:{port}")])
        .env("RUST_LOG", "info")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).expect("daemon log"))
        .spawn()
        .expect("spawn redis-autopilot");
    let spawned_at = Utc::now();
    let daemon = Process { child, dir: tempfile::tempdir().expect("temp dir") };
    let pid = daemon.pid();

    let first = wait_for_first_decisions(port, &names, spawned, &log);
    report_first_decisions(&first, spawned_at);

    let mut memory = Vec::new();
    memory.push((spawned.elapsed(), read_memory(pid)));
    for at in CHECKPOINTS.iter().map(|&s| Duration::from_secs(s)) {
        if at > shape.run_for {
            break;
        }
        std::thread::sleep(at.saturating_sub(spawned.elapsed()));
        assert_alive(&daemon, &log);
        memory.push((spawned.elapsed(), read_memory(pid)));
    }
    if shape.run_for > spawned.elapsed() {
        std::thread::sleep(shape.run_for - spawned.elapsed());
        memory.push((spawned.elapsed(), read_memory(pid)));
    }
    let failures = sample_failures(port);

    println!(
        "\nmemory of the daemon ({} policies x {} instances):",
        shape.policies, shape.per_policy
    );
    for (at, (rss, hwm)) in &memory {
        println!(
            "  after {:>5.1} s: VmRSS {:>6.1} MiB  VmHWM {:>6.1} MiB",
            at.as_secs_f64(),
            *rss as f64 / 1024.0,
            *hwm as f64 / 1024.0
        );
    }
    println!("  failed INFO samples over the run: {}", failures as u64);

    daemon.signal("TERM");
    drop(daemon);
    drop(fleet);
}

/// A policy over `servers`: p95 ops/s over 1 m and a linear forecast over 5 m, every second.
fn write_policy(dir: &Path, name: &str, servers: &[Redis]) {
    let endpoints: Vec<String> = servers.iter().map(|r| format!("\"{}\"", r.addr())).collect();
    let yaml = format!(
        "apiVersion: autopilot.redis.io/v1alpha1\n\
         kind: RedisPolicy\n\
         metadata:\n  name: {name}\n\
         spec:\n\
         \x20 target:\n    endpoints: [{endpoints}]\n\
         \x20 sampling:\n    interval: 1s\n    timeout: 900ms\n\
         \x20 scaling:\n\
         \x20   minReplicas: 1\n\
         \x20   maxReplicas: 20\n\
         \x20   metrics:\n\
         \x20     - redis: instantaneous_ops_per_sec\n\
         \x20       statistic: p95\n\
         \x20       window: 1m\n\
         \x20       target: 1000\n\
         \x20   forecast:\n      method: linear\n      window: 5m\n",
        endpoints = endpoints.join(", ")
    );
    std::fs::write(dir.join(format!("{name}.yaml")), yaml).expect("write policy");
}

struct FirstDecisions {
    /// Per policy: when the bench first saw a decision (since spawn) and that decision's `at`.
    seen: BTreeMap<String, (Duration, DateTime<Utc>)>,
    ready: Duration,
}

/// Polls `/v1/decisions` and `/readyz` until every policy has a decision and readiness holds.
fn wait_for_first_decisions(
    port: u16,
    names: &[String],
    spawned: Instant,
    log: &Path,
) -> FirstDecisions {
    let deadline = spawned + Duration::from_secs(60);
    let mut seen = BTreeMap::new();
    let mut ready = None;
    while seen.len() < names.len() || ready.is_none() {
        assert!(Instant::now() < deadline, "no decisions within 60 s; log:\n{}", read(log));
        if ready.is_none() && get(port, "/readyz").is_some_and(|(status, _)| status == 200) {
            ready = Some(spawned.elapsed());
        }
        if seen.len() < names.len()
            && let Some((200, body)) = get(port, "/v1/decisions?limit=500")
        {
            let now = spawned.elapsed();
            let records: Vec<serde_json::Value> =
                serde_json::from_str(&body).expect("decisions are JSON");
            // Newest first: the last record of a policy is its earliest still held.
            for record in records.iter().rev() {
                let policy = record["policy"].as_str().expect("policy").to_owned();
                let at: DateTime<Utc> =
                    record["at"].as_str().and_then(|s| s.parse().ok()).expect("at");
                seen.entry(policy).or_insert((now, at));
            }
        }
        std::thread::sleep(POLL);
    }
    FirstDecisions { seen, ready: ready.unwrap_or_default() }
}

fn report_first_decisions(first: &FirstDecisions, spawned_at: DateTime<Utc>) {
    println!("\nfirst decisions (polled every {} ms):", POLL.as_millis());
    println!("  policy     spawn->served  spawn->round start  round start->served");
    let mut worst = (Duration::ZERO, 0.0f64);
    for (policy, (served, at)) in &first.seen {
        let round_start = (*at - spawned_at).num_microseconds().unwrap_or(0) as f64 / 1e6;
        let round_to_served = served.as_secs_f64() - round_start;
        worst = (worst.0.max(*served), worst.1.max(round_to_served));
        println!(
            "  {policy:<10} {:>10.0} ms  {:>15.0} ms  {:>16.0} ms",
            served.as_secs_f64() * 1e3,
            round_start * 1e3,
            round_to_served * 1e3
        );
    }
    println!(
        "  every policy decided {:.0} ms after spawn; worst round start -> served {:.0} ms; \
         /readyz 200 after {:.0} ms",
        worst.0.as_secs_f64() * 1e3,
        worst.1 * 1e3,
        first.ready.as_secs_f64() * 1e3
    );
}

/// `VmRSS` and `VmHWM` in KiB.
fn read_memory(pid: u32) -> (u64, u64) {
    let status = read(&Path::new("/proc").join(pid.to_string()).join("status"));
    let field = |name: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .unwrap_or_else(|| panic!("no {name} in /proc/{pid}/status"))
    };
    (field("VmRSS:"), field("VmHWM:"))
}

/// Samples that did not end `ok`, from the daemon's own metrics: a figure measured while
/// instances time out would not be the daemon as it normally runs.
fn sample_failures(port: u16) -> f64 {
    let Some((200, text)) = get(port, "/metrics") else { panic!("/metrics did not answer") };
    text.lines()
        .filter(|l| l.starts_with("redis_autopilot_samples_total{"))
        .filter(|l| !l.contains("outcome=\"ok\""))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

fn assert_alive(daemon: &Process, log: &Path) {
    let alive = Path::new("/proc").join(daemon.pid().to_string()).join("status");
    let state = read(&alive);
    assert!(!state.contains("State:\tZ"), "the daemon exited; log:\n{}", read(log));
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_default()
}

/// A minimal HTTP/1.1 GET: status code and body, or `None` while nothing listens yet.
fn get(port: u16, path: &str) -> Option<(u16, String)> {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).ok()?;
    stream.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    write!(stream, "GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n").ok()?;
    let mut response = String::new();
    stream.read_to_string(&mut response).ok()?;
    let (head, body) = response.split_once("\r\n\r\n")?;
    let status = head.split(' ').nth(1)?.parse().ok()?;
    let body = if head.to_ascii_lowercase().contains("transfer-encoding: chunked") {
        dechunk(body)
    } else {
        body.to_owned()
    };
    Some((status, body))
}

fn dechunk(mut body: &str) -> String {
    let mut out = String::new();
    while let Some((size, rest)) = body.split_once("\r\n") {
        let Ok(size) = usize::from_str_radix(size.trim(), 16) else { break };
        if size == 0 || rest.len() < size {
            break;
        }
        out.push_str(&rest[..size]);
        body = rest[size..].trim_start_matches("\r\n");
    }
    out
}
