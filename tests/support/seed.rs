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

/// Makes snapshot `real` (a manifest as `snapshot now --output json` prints it, in `folder`)
/// hold `other`'s RDB instead, a valid RDB of another dataset, with `real`'s manifest patched
/// to match it (sizes, sha256, CRC64, RDB version), so that every check of the object passes
/// and only a restore test can tell; `other` itself is removed.
pub fn replace_object_with_another_valid_rdb(
    folder: &std::path::Path,
    real: &serde_json::Value,
    other: &serde_json::Value,
) {
    let object = |manifest: &serde_json::Value| {
        folder.join(manifest["object"].as_str().expect("the manifest names its object"))
    };
    let id = |manifest: &serde_json::Value| manifest["id"].as_str().expect("id").to_owned();
    std::fs::copy(object(other), object(real)).expect("replace the object");
    let manifest_path = folder.join(format!("{}.json", id(real)));
    let text = std::fs::read_to_string(&manifest_path).expect("read the manifest");
    let mut manifest: serde_json::Value = serde_json::from_str(&text).expect("manifest JSON");
    for field in ["rawBytes", "storedBytes", "sha256", "crc64", "rdbVersion"] {
        manifest[field] = other[field].clone();
    }
    std::fs::write(&manifest_path, serde_json::to_vec_pretty(&manifest).expect("JSON"))
        .expect("write the manifest");
    std::fs::remove_file(object(other)).expect("remove the other object");
    std::fs::remove_file(folder.join(format!("{}.json", id(other)))).expect("remove its manifest");
}
