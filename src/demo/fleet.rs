//! What the demo's view knows about the fleet: each instance's role, link, lag and ops/s from
//! its own `INFO`, and the recorded master with its epoch from the fleet's durable record.
//! Read the way an operator would, from outside the daemon, once a second.

use std::path::Path;
use std::time::Duration;

use crate::observe::info::{Info, Role as InfoRole};

/// How long one instance gets to answer `INFO`.
const INFO_TIMEOUT: Duration = Duration::from_millis(300);

/// An instance's role as the view shows it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    Master,
    Replica,
    /// No answer within the view's deadline: stopped, killed, not started, or just slow. The
    /// view cannot tell which, so it says only that.
    NoAnswer,
}

/// One row of the fleet table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Instance {
    /// `127.0.0.1:PORT`.
    pub id: String,
    pub role: Role,
    /// A replica's link to its master.
    pub link_up: Option<bool>,
    /// How far a replica's applied offset is behind the master's, in bytes of stream.
    pub lag_bytes: Option<u64>,
    /// `instantaneous_ops_per_sec`.
    pub ops: Option<u64>,
}

/// Reads every port from `base` for `count` instances; those that do not answer are `NoAnswer`.
pub async fn instances(base: u16, count: u16) -> Vec<Instance> {
    let ports: Vec<u16> = (0..count).filter_map(|i| base.checked_add(i)).collect();
    let infos = futures::future::join_all(ports.iter().map(|&port| info(port))).await;
    let master_offset = infos
        .iter()
        .flatten()
        .find(|i| i.role == InfoRole::Master)
        .and_then(|i| i.replication.master_repl_offset);
    ports
        .iter()
        .zip(infos)
        .map(|(port, info)| {
            let id = format!("127.0.0.1:{port}");
            let Some(info) = info else {
                return Instance {
                    id,
                    role: Role::NoAnswer,
                    link_up: None,
                    lag_bytes: None,
                    ops: None,
                };
            };
            let ops = info.stats.instantaneous_ops_per_sec;
            match info.role {
                InfoRole::Master => {
                    Instance { id, role: Role::Master, link_up: None, lag_bytes: None, ops }
                }
                _ => Instance {
                    id,
                    role: Role::Replica,
                    link_up: info.master_link_up,
                    lag_bytes: master_offset
                        .zip(info.replication.replica_repl_offset)
                        .map(|(m, r)| m.saturating_sub(r)),
                    ops,
                },
            }
        })
        .collect()
}

/// The ports of the instances that serve reads: the master, and replicas whose link is up.
pub fn serving(instances: &[Instance]) -> Vec<u16> {
    instances
        .iter()
        .filter(|i| serves(i))
        .filter_map(|i| i.id.rsplit(':').next()?.parse().ok())
        .collect()
}

/// Who serves, in words for the view: "the master alone", "the master and 1 replica", "the
/// master and 3 replicas"; without a master (a failover under way) "no master, 2 replicas";
/// and two masters as such, since that is what the autopilot exists to prevent.
pub fn serving_in_words(instances: &[Instance]) -> String {
    let count = |role| instances.iter().filter(|i| i.role == role && serves(i)).count();
    let (masters, replicas) = (count(Role::Master), count(Role::Replica));
    let replicas_in_words = match replicas {
        1 => "1 replica".to_owned(),
        n => format!("{n} replicas"),
    };
    match (masters, replicas) {
        (0, 0) => "none".to_owned(),
        (0, _) => format!("no master, {replicas_in_words}"),
        (2.., _) => format!("{masters} masters, {replicas_in_words}"),
        (_, 0) => "the master alone".to_owned(),
        _ => format!("the master and {replicas_in_words}"),
    }
}

fn serves(instance: &Instance) -> bool {
    match instance.role {
        Role::Master => true,
        Role::Replica => instance.link_up == Some(true),
        Role::NoAnswer => false,
    }
}

async fn info(port: u16) -> Option<Info> {
    let read = async {
        let client = redis::Client::open(format!("redis://127.0.0.1:{port}/")).ok()?;
        let mut connection = client.get_multiplexed_async_connection().await.ok()?;
        let text: String = redis::cmd("INFO").query_async(&mut connection).await.ok()?;
        Some(Info::parse(&text))
    };
    tokio::time::timeout(INFO_TIMEOUT, read).await.ok().flatten()
}

/// The recorded master and its epoch (`dataDir/state.json`); `Ok(None)` before the first is
/// chosen. A failed read is an error to show, never "no master".
pub async fn recorded_master(data_dir: &Path) -> Result<Option<(String, u64)>, String> {
    let record = crate::cluster::local::read_record(data_dir).await.map_err(|e| e.to_string())?;
    Ok(record.map(|r| (r.instance.to_string(), r.epoch)))
}

/// Stops the master's process with `SHUTDOWN NOSAVE`: to the fleet it is a crash (its port
/// refuses, nothing is saved), which is what the failover is there for.
pub async fn kill(id: &str) -> Result<(), String> {
    let client = redis::Client::open(format!("redis://{id}/")).map_err(|e| e.to_string())?;
    let mut connection =
        tokio::time::timeout(INFO_TIMEOUT, client.get_multiplexed_async_connection())
            .await
            .map_err(|_| format!("{id} does not answer"))?
            .map_err(|e| e.to_string())?;
    // The server closes the connection instead of answering: an error here is success.
    let _: redis::RedisResult<()> = tokio::time::timeout(
        INFO_TIMEOUT,
        redis::cmd("SHUTDOWN").arg("NOSAVE").query_async(&mut connection),
    )
    .await
    .unwrap_or(Ok(()));
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn instance(port: u16, role: Role, link_up: Option<bool>) -> Instance {
        Instance { id: format!("127.0.0.1:{port}"), role, link_up, lag_bytes: None, ops: None }
    }

    /// Counts only who serves (a replica whose link is down does not), in singular or plural.
    #[test]
    fn who_serves_is_said_in_words() {
        let master = instance(7000, Role::Master, None);
        let linked = |port| instance(port, Role::Replica, Some(true));
        let unlinked = instance(7003, Role::Replica, Some(false));
        let silent = instance(7004, Role::NoAnswer, None);
        let cases = [
            (vec![master.clone(), silent.clone()], "the master alone"),
            (vec![master.clone(), linked(7001), unlinked.clone()], "the master and 1 replica"),
            (vec![master.clone(), linked(7001), linked(7002)], "the master and 2 replicas"),
            (vec![linked(7001), unlinked.clone(), silent.clone()], "no master, 1 replica"),
            (vec![master.clone(), instance(7005, Role::Master, None)], "2 masters, 0 replicas"),
            (vec![unlinked, silent], "none"),
        ];
        for (instances, words) in cases {
            assert_eq!(serving_in_words(&instances), words, "{instances:?}");
        }
    }
}
