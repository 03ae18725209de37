//! Failover speed as a client sees it: the release daemon on a local fleet of three real
//! `redis-server`s, a writer following the recorded master, and the time from `kill -9` of the
//! master to the first write the new master acknowledges.
//!
//! Two rules are measured, each over several rounds (median, min, max printed):
//! - **downAfter 3 s, no replica confirmation**: the master must fail every probe for
//!   `downAfter` (the comparison with Redis Sentinel at down-after 3 s: ~4.2 s here). Target
//!   ≤ 3.4 s.
//! - **unambiguous death, replica confirmation on**: refused, and every replica reports its
//!   link down, so there is no `downAfter` to wait for. Target < 1 s.
//!
//! `FAILOVER_BENCH_ROUNDS` sets the rounds per rule (default 10). Without `--bench` (the
//! `cargo test` smoke run) it is one round of the unambiguous rule.

#[path = "../tests/support/mod.rs"]
mod support;

use std::time::{Duration, Instant};

use support::failover::{Fleet, Writer, signal, wait_until};

fn main() {
    let measuring = std::env::args().any(|a| a == "--bench");
    let rounds: usize = if measuring {
        std::env::var("FAILOVER_BENCH_ROUNDS")
            .map(|s| s.parse().expect("FAILOVER_BENCH_ROUNDS must be a whole number"))
            .unwrap_or(10)
    } else {
        1
    };
    let mut rules = vec![(
        "unambiguous death, confirmWithReplicas: true (downAfter 3s)",
        "    downAfter: 3s\n    confirmWithReplicas: true\n",
    )];
    if measuring {
        rules.insert(
            0,
            (
                "downAfter 3s, confirmWithReplicas: false",
                "    downAfter: 3s\n    confirmWithReplicas: false\n",
            ),
        );
    }
    for (name, health) in rules {
        let times = measure(health, rounds);
        let ms = |d: Duration| d.as_secs_f64() * 1000.0;
        println!(
            "{name}: kill -9 -> first acknowledged write on the new master over {} rounds: \
             median {:.0} ms, min {:.0} ms, max {:.0} ms",
            times.len(),
            ms(times[times.len() / 2]),
            ms(times[0]),
            ms(times[times.len() - 1]),
        );
    }
}

/// Sorted kill-to-first-write times over `rounds` failovers.
fn measure(health: &str, rounds: usize) -> Vec<Duration> {
    let fleet = Fleet::start(health);
    let writer = Writer::start(&fleet.data);
    let mut times = Vec::with_capacity(rounds);
    for _ in 0..rounds {
        let master = fleet.wait_healthy(Duration::from_secs(30));
        let since = Instant::now();
        wait_until(
            Duration::from_secs(5),
            "writes on the master",
            || fleet.log(),
            || writer.first_ack_on(master, since),
        );
        let killed = Instant::now();
        signal(fleet.pid(master), "KILL");
        let (new, _) = wait_until(
            Duration::from_secs(10),
            "a new master",
            || fleet.log(),
            || fleet.record().filter(|(port, _)| *port != master),
        );
        let ack = wait_until(
            Duration::from_secs(10),
            "a write on the new master",
            || fleet.log(),
            || writer.first_ack_on(new, killed),
        );
        times.push(ack.at - killed);
    }
    writer.finish();
    times.sort();
    times
}
