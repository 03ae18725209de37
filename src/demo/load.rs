//! The demo's load generator: real `GET`s spread evenly over the instances that serve reads,
//! at a rate that follows a trace. Commands go out in pipelines every tick, so one task drives
//! tens of thousands of ops/s without a connection per request.

use std::collections::HashMap;
use std::time::Duration;

use redis::aio::MultiplexedConnection;
use tokio::sync::watch;

use crate::sample::redis::Endpoint;

/// How often a batch goes out: short enough that Redis's own 1.6 s ops/s estimate sees a
/// steady rate.
const TICK: Duration = Duration::from_millis(100);

/// Issues `rate(elapsed)` GETs per second, spread over `targets` (updated as the fleet changes),
/// until `stop` turns true. Returns how many commands were answered.
pub async fn drive(
    mut targets: watch::Receiver<Vec<Endpoint>>,
    rate: impl Fn(Duration) -> f64,
    mut stop: watch::Receiver<bool>,
) -> u64 {
    let started = tokio::time::Instant::now();
    let mut ticker = tokio::time::interval(TICK);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    let mut connections: HashMap<String, MultiplexedConnection> = HashMap::new();
    let (mut owed, mut answered) = (0.0, 0u64);
    loop {
        tokio::select! {
            _ = ticker.tick() => {}
            _ = stop.changed() => {}
        }
        if *stop.borrow() {
            return answered;
        }
        let endpoints = targets.borrow_and_update().clone();
        connections.retain(|id, _| endpoints.iter().any(|e| &e.id == id));
        if endpoints.is_empty() {
            continue;
        }
        owed += rate(started.elapsed()).max(0.0) * TICK.as_secs_f64();
        let batch = owed.floor();
        owed -= batch;
        let per_instance = (batch as usize).div_ceil(endpoints.len());
        if per_instance == 0 {
            continue;
        }
        let sends = endpoints.iter().map(|endpoint| {
            let cached = connections.get(&endpoint.id).cloned();
            async move {
                let mut connection = match cached {
                    Some(connection) => connection,
                    None => connect(endpoint).await?,
                };
                let mut pipe = redis::pipe();
                for i in 0..per_instance {
                    pipe.cmd("GET").arg(format!("demo:{}", i % 1000)).ignore();
                }
                let reply: redis::RedisResult<()> = pipe.query_async(&mut connection).await;
                reply.ok().map(|()| (endpoint.id.clone(), connection))
            }
        });
        let results = tokio::time::timeout(TICK, futures::future::join_all(sends)).await;
        for (id, connection) in results.unwrap_or_default().into_iter().flatten() {
            answered += per_instance as u64;
            connections.insert(id, connection);
        }
    }
}

async fn connect(endpoint: &Endpoint) -> Option<MultiplexedConnection> {
    let client =
        redis::Client::open(format!("redis://{}:{}/", endpoint.host, endpoint.port)).ok()?;
    client.get_multiplexed_async_connection().await.ok()
}
