//! Loading a real `redis-server` through the one-shot master (`snapshot::seed`), as the
//! restore tests do: bounded, and serving the target alone.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::Duration;

use redis_autopilot::sample::redis::{Access, Endpoint};
use redis_autopilot::snapshot::Quiet;
use redis_autopilot::snapshot::seed::{self, Limits, Seed};

use super::Redis;

/// Short steps, and a whole sync bounded at two minutes (the default is the six hours a
/// production restore may take): a sync that never completes fails the test with the seed's
/// `Deadline` error instead of holding the suite.
pub fn limits() -> Limits {
    Limits { step: Duration::from_secs(5), total: Duration::from_secs(120), ..Limits::default() }
}

/// The seed serves `target` alone: its address and the port it listens on.
pub fn only(target: &Redis) -> seed::Expected {
    seed::Expected { ips: vec![IpAddr::V4(Ipv4Addr::LOCALHOST)], port: Some(target.port) }
}

/// Loads `payload` into `target` through a seed; returns what the seed and the wait said.
pub async fn seed_into(
    target: &Redis,
    payload: seed::Payload,
) -> (Result<u64, seed::SeedError>, Result<seed::Loaded, seed::SeedError>) {
    let endpoint = Endpoint::parse(&target.addr()).expect("endpoint");
    let limits = limits();
    let bind =
        Seed::bind(SocketAddr::from((Ipv4Addr::LOCALHOST, 0)), Duration::ZERO).await.expect("bind");
    let serving = bind.serve(payload, only(target), limits);
    target.cli(&["REPLICAOF", "127.0.0.1", &serving.addr().port().to_string()]);
    let loaded = seed::wait_loaded(&endpoint, &Access::default(), &serving, limits, &Quiet).await;
    let sent = serving.stop().await;
    target.cli(&["REPLICAOF", "NO", "ONE"]);
    (sent, loaded)
}
