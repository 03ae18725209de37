//! One `RedisSampler::sample` round over a fleet of real local `redis-server`s, connections
//! warm as in the daemon (the first round connects; every later round is one `INFO` per
//! instance on a cached connection).
//!
//! Criterion reports wall time per round. Printed after it: the sampler process's CPU per
//! sample (user+sys from `/proc/self/stat` over many rounds) next to redis-server's CPU per
//! `INFO` (`cmdstat_info:usec_per_call` on a few instances, and every server's whole-process
//! CPU from `/proc/PID/stat`). Targets: 1,000 instances under 1 s a round; the sampler spending
//! less CPU per sample than a server spends answering it.
//!
//! `SAMPLING_BENCH_INSTANCES` sets the fleet size (default 200; 5 in the `cargo test` smoke run). The sampler holds one socket
//! per instance, so `ulimit -n` must exceed the fleet size; each server runs with a small
//! `maxclients` (so a small descriptor table) and no persistence.

#[path = "../tests/support/mod.rs"]
mod support;

use std::hint::black_box;
use std::time::{Duration, Instant};

use criterion::{Criterion, SamplingMode};
use redis_autopilot::observe::Outcome;
use redis_autopilot::sample::redis::{Access, Endpoint, RedisSampler};
use support::{Redis, start_fleet};

/// Instances whose `INFO commandstats` and process CPU are read for the server-side figure.
const PROBED: usize = 5;

/// `INFO`s sent to each probed instance alone for the quiet server-side figure.
const QUIET_CALLS: usize = 200;

fn main() {
    // `cargo test --all-targets` runs benches once without `--bench`, as a smoke test: a small
    // fleet proves the bench works without starting 200 servers in every CI run.
    let measuring = std::env::args().any(|a| a == "--bench");
    let count: usize = std::env::var("SAMPLING_BENCH_INSTANCES")
        .map(|n| n.parse().expect("SAMPLING_BENCH_INSTANCES must be a whole number"))
        .unwrap_or(if measuring { 200 } else { 5 });
    let started = Instant::now();
    let fleet = start_fleet(count);
    eprintln!("started {count} redis-servers in {:.1} s", started.elapsed().as_secs_f64());
    let endpoints: Vec<Endpoint> =
        fleet.iter().map(|r| Endpoint::parse(&r.addr()).expect("endpoint")).collect();

    // As the daemon runs: a multi-threaded runtime, one sampler kept across rounds.
    let runtime =
        tokio::runtime::Builder::new_multi_thread().enable_all().build().expect("runtime");
    let sampler = RedisSampler::new(Access::default(), Duration::from_secs(5));
    let started = Instant::now();
    check_round(&runtime.block_on(sampler.sample(&endpoints)), &fleet, true);
    eprintln!("first round (connecting) took {:.0} ms", started.elapsed().as_secs_f64() * 1e3);

    let mut criterion = Criterion::default()
        .sample_size(10)
        .warm_up_time(Duration::from_secs(2))
        .measurement_time(Duration::from_secs(10))
        .configure_from_args();
    {
        let mut group = criterion.benchmark_group("sample_round");
        group.sampling_mode(SamplingMode::Flat);
        group.bench_function(format!("{count} instances"), |b| {
            b.iter(|| black_box(runtime.block_on(sampler.sample(black_box(&endpoints)))))
        });
        group.finish();
    }
    criterion.final_summary();

    // CPU accounting, outside criterion: fresh command statistics, then enough rounds for
    // the 10 ms tick of /proc accounting to be noise.
    let probed = &fleet[..PROBED.min(fleet.len())];
    for redis in probed {
        redis.cli(&["CONFIG", "RESETSTAT"]);
    }
    let rounds = (20_000 / count).clamp(20, 200);
    let (sampler_before, servers_before) = (cpu_ticks("self"), server_ticks(&fleet));
    let started = Instant::now();
    for _ in 0..rounds {
        check_round(&runtime.block_on(sampler.sample(&endpoints)), &fleet, false);
    }
    let wall = started.elapsed();
    let (sampler_ticks, servers_ticks) =
        (cpu_ticks("self") - sampler_before, server_ticks(&fleet) - servers_before);
    let samples = (rounds * count) as f64;
    let loaded = usec_per_call(probed);

    // The same servers idle for as long, to take their timers out of the per-INFO figure.
    let idle_before = server_ticks(&fleet);
    std::thread::sleep(wall);
    let idle_ticks = server_ticks(&fleet) - idle_before;

    // `usec_per_call` is wall time inside the command, so it grows when the cores are
    // saturated: also measure it one instance at a time, the machine otherwise quiet.
    for redis in probed {
        redis.cli(&["CONFIG", "RESETSTAT"]);
        let one = [Endpoint::parse(&redis.addr()).expect("endpoint")];
        for _ in 0..QUIET_CALLS {
            runtime.block_on(sampler.sample(&one));
        }
    }
    let quiet = usec_per_call(probed);

    println!("\nsampling bench, {count} instances, {rounds} warm rounds ({samples} samples):");
    println!(
        "  wall per round:            {:>8.1} ms (mean; criterion's estimate above)",
        wall.as_secs_f64() * 1e3 / rounds as f64
    );
    println!(
        "  sampler CPU per sample:    {:>8.1} us (user+sys of this process / samples)",
        ticks_to_usec(sampler_ticks) / samples
    );
    println!(
        "  redis-server CPU per INFO: {:>8.1} us (cmdstat_info usec_per_call during the rounds, \
         {} instances: {})",
        mean(&loaded),
        loaded.len(),
        list(&loaded)
    );
    println!(
        "                             {:>8.1} us (the same, quiet: {QUIET_CALLS} INFOs one \
         instance at a time: {})",
        mean(&quiet),
        list(&quiet)
    );
    println!(
        "                             {:>8.1} us (all servers' user+sys / INFOs, network I/O \
         included, idle timers subtracted)",
        ticks_to_usec(servers_ticks.saturating_sub(idle_ticks)) / samples
    );
}

fn usec_per_call(servers: &[Redis]) -> Vec<f64> {
    servers.iter().map(info_usec_per_call).collect()
}

fn mean(values: &[f64]) -> f64 {
    values.iter().sum::<f64>() / values.len() as f64
}

fn list(values: &[f64]) -> String {
    values.iter().map(|u| format!("{u:.1}")).collect::<Vec<_>>().join(", ")
}

/// Every instance answered, each the server started on its port (run ids are per process).
fn check_round(samples: &[redis_autopilot::observe::InstanceSample], fleet: &[Redis], deep: bool) {
    assert_eq!(samples.len(), fleet.len());
    let failed: Vec<_> = samples.iter().filter(|s| s.outcome != Outcome::Ok).collect();
    assert!(failed.is_empty(), "{} of {} failed, e.g. {:?}", failed.len(), fleet.len(), failed[0]);
    if deep {
        let mut run_ids: Vec<String> = samples
            .iter()
            .map(|s| s.info.as_ref().and_then(|i| i.server.run_id).expect("run_id").to_string())
            .collect();
        run_ids.sort_unstable();
        run_ids.dedup();
        assert_eq!(run_ids.len(), fleet.len(), "every instance is a distinct process");
        for (sample, redis) in samples.iter().zip(fleet) {
            let port = sample.info.as_ref().and_then(|i| i.server.tcp_port);
            assert_eq!(port, Some(redis.port));
        }
    }
}

/// utime + stime of `/proc/<pid>/stat`, in clock ticks.
fn cpu_ticks(pid: &str) -> u64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).expect("read /proc stat");
    // Fields after the parenthesized command name: state is field 3, utime 14, stime 15.
    let rest = &stat[stat.rfind(')').expect("comm") + 2..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let field = |n: usize| fields[n - 3].parse::<u64>().expect("tick count");
    field(14) + field(15)
}

fn server_ticks(servers: &[Redis]) -> u64 {
    servers.iter().map(|r| cpu_ticks(&r.process.pid().to_string())).sum()
}

/// Linux reports process CPU in USER_HZ ticks, 100 per second on every architecture it runs
/// on (the value `sysconf(_SC_CLK_TCK)` returns).
fn ticks_to_usec(ticks: u64) -> f64 {
    ticks as f64 * 10_000.0
}

fn info_usec_per_call(redis: &Redis) -> f64 {
    let stats = redis.cli(&["INFO", "commandstats"]);
    let line = stats
        .lines()
        .find(|l| l.starts_with("cmdstat_info:"))
        .unwrap_or_else(|| panic!("no cmdstat_info on {}:\n{stats}", redis.addr()));
    line.split([':', ','])
        .find_map(|kv| kv.strip_prefix("usec_per_call="))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or_else(|| panic!("no usec_per_call in {line}"))
}
