//! The Redis-side role commands every [`super::Cluster`] backend shares: make an instance a
//! master or a replica (`REPLICAOF`), hand the master role over without losing writes
//! (`FAILOVER`), and read an instance's `INFO` to choose between replicas. Every call runs under
//! the caller's deadline on a fresh connection (role changes are rare; a cached connection
//! could be to a process that has since restarted). Errors name the instance, never a secret.

use std::time::Duration;

use redis::aio::MultiplexedConnection;

use super::{ClusterError, Member};
use crate::observe::{Info, Role};
use crate::sample::redis::{Access, Endpoint, HEALTH_SECTIONS, connect};

/// How often [`switchover`] looks at the target while it waits for the roles to swap.
const POLL: Duration = Duration::from_millis(50);

/// `REPLICAOF NO ONE` on `member` (`master` is `None`) or `REPLICAOF host port` of `master`.
///
/// Idempotent: Redis answers `OK` to `NO ONE` on a master and "Already connected to specified
/// master" when nothing changes, without a resync. If the daemon dies after sending it, the
/// instance has the new role and a retry changes nothing.
pub async fn replicaof(
    member: &Member,
    master: Option<&Member>,
    access: &Access,
    timeout: Duration,
) -> Result<(), ClusterError> {
    let endpoint = &member.endpoint;
    let mut command = redis::cmd("REPLICAOF");
    match master {
        None => command.arg("NO").arg("ONE"),
        Some(master) => command.arg(&master.endpoint.host).arg(master.endpoint.port),
    };
    let action = if master.is_some() { "REPLICAOF host port" } else { "REPLICAOF NO ONE" };
    let run = async {
        let mut connection = open(endpoint, access, timeout, action).await?;
        command
            .query_async::<()>(&mut connection)
            .await
            .map_err(|source| redis_error(action, endpoint, source))
    };
    bounded(action, endpoint, timeout, run).await
}

/// The least time `FAILOVER` gives its target to catch up. While writes are paused the master
/// does not ask replicas for their offset (`REPLCONF GETACK` would itself advance it), so even
/// a replica that is already caught up says so only with its own acknowledgement, sent once a
/// second.
const CATCH_UP_MIN: Duration = Duration::from_secs(2);

/// The longest [`switchover`] takes with this `timeout`: starting it, the target's catch-up,
/// and the swap.
pub fn switchover_limit(timeout: Duration) -> Duration {
    timeout + timeout.max(CATCH_UP_MIN) + timeout
}

/// Hands the master role from `master` to its replica `to` with
/// `FAILOVER TO host port TIMEOUT ms` (Redis >= 6.2): the master pauses writes, waits up to
/// `timeout` (at least [`CATCH_UP_MIN`]) for `to` to apply everything, then the two swap
/// roles, so no acknowledged write is lost. Returns once `to` reports `role:master`.
///
/// If the target cannot catch up in time Redis aborts on its own and `master` keeps serving
/// writes: the error says so. Other replicas of `master` stay attached to it (now a replica
/// itself): the caller repoints them. Not idempotent: once the swap happened, a second call
/// finds `master` a replica and fails; callers check roles before retrying. If the daemon dies
/// halfway, Redis finishes or aborts the failover by itself.
pub async fn switchover(
    master: &Endpoint,
    to: &Endpoint,
    access: &Access,
    timeout: Duration,
) -> Result<(), ClusterError> {
    const ACTION: &str = "FAILOVER";
    let failed =
        |why: String| ClusterError::Switchover { from: master.id.clone(), to: to.id.clone(), why };
    let catch_up = timeout.max(CATCH_UP_MIN);
    let millis = u64::try_from(catch_up.as_millis()).unwrap_or(u64::MAX);
    let start = async {
        let mut connection = open(master, access, timeout, ACTION).await?;
        redis::cmd("FAILOVER")
            .arg("TO")
            .arg(&to.host)
            .arg(to.port)
            .arg("TIMEOUT")
            .arg(millis)
            .query_async::<()>(&mut connection)
            .await
            .map_err(|source| redis_error(ACTION, master, source))
    };
    bounded(ACTION, master, timeout, start).await?;

    let swap = async {
        loop {
            tokio::time::sleep(POLL).await;
            // Either side may briefly refuse or reset while the roles swap: keep looking until
            // the deadline rather than failing on one bad read.
            if let Ok(info) = info(to, access, timeout).await
                && info.role == Role::Master
            {
                return Ok(());
            }
            if let Ok(text) = info_text(master, access, timeout).await {
                let state = field(&text, "master_failover_state").unwrap_or("no-failover");
                if state == "no-failover" && Info::parse(&text).role == Role::Master {
                    return Err(failed(format!(
                        "Redis aborted the failover ({} did not catch up within {catch_up:?}); \
                         {} is still master",
                        to.id, master.id
                    )));
                }
            }
        }
    };
    // Catching up, then the swap itself.
    let limit = catch_up + timeout;
    match tokio::time::timeout(limit, swap).await {
        Ok(result) => result,
        Err(_elapsed) => Err(failed(format!("{} was not master after {limit:?}", to.id))),
    }
}

/// Sets `min-replicas-to-write` and `min-replicas-max-lag` on a master the daemon promoted,
/// so that, cut off from its replicas, it stops accepting writes (`-NOREPLICAS`) instead of
/// taking writes a failover would discard.
pub async fn write_guard(
    endpoint: &Endpoint,
    guard: &crate::policy::WriteGuard,
    access: &Access,
    timeout: Duration,
) -> Result<(), ClusterError> {
    const ACTION: &str = "CONFIG SET min-replicas-to-write";
    let run = async {
        let mut connection = open(endpoint, access, timeout, ACTION).await?;
        redis::cmd("CONFIG")
            .arg("SET")
            .arg("min-replicas-to-write")
            .arg(guard.min_replicas)
            .arg("min-replicas-max-lag")
            .arg(guard.max_lag.as_secs())
            .query_async::<()>(&mut connection)
            .await
            .map_err(|source| redis_error(ACTION, endpoint, source))
    };
    bounded(ACTION, endpoint, timeout, run).await
}

/// One instance's `INFO` (the health sections), parsed.
pub async fn info(
    endpoint: &Endpoint,
    access: &Access,
    timeout: Duration,
) -> Result<Info, ClusterError> {
    info_text(endpoint, access, timeout).await.map(|text| Info::parse(&text))
}

async fn info_text(
    endpoint: &Endpoint,
    access: &Access,
    timeout: Duration,
) -> Result<String, ClusterError> {
    const ACTION: &str = "INFO";
    let run = async {
        let mut connection = open(endpoint, access, timeout, ACTION).await?;
        let mut command = redis::cmd("INFO");
        for section in HEALTH_SECTIONS {
            command.arg(*section);
        }
        command
            .query_async::<String>(&mut connection)
            .await
            .map_err(|source| redis_error(ACTION, endpoint, source))
    };
    bounded(ACTION, endpoint, timeout, run).await
}

async fn open(
    endpoint: &Endpoint,
    access: &Access,
    timeout: Duration,
    action: &'static str,
) -> Result<MultiplexedConnection, ClusterError> {
    connect(endpoint, access, timeout).await.map_err(|source| redis_error(action, endpoint, source))
}

/// The connection and reply deadlines bound each step; this bounds the call as a whole.
async fn bounded<T>(
    action: &'static str,
    endpoint: &Endpoint,
    timeout: Duration,
    work: impl Future<Output = Result<T, ClusterError>>,
) -> Result<T, ClusterError> {
    tokio::time::timeout(timeout, work).await.unwrap_or_else(|_elapsed| {
        Err(ClusterError::Timeout { action, instance: endpoint.id.clone(), timeout })
    })
}

fn redis_error(
    action: &'static str,
    endpoint: &Endpoint,
    source: redis::RedisError,
) -> ClusterError {
    ClusterError::Redis { action, instance: endpoint.id.clone(), source }
}

/// A raw `INFO` field the typed [`Info`] does not keep.
fn field<'a>(text: &'a str, name: &str) -> Option<&'a str> {
    text.lines().find_map(|line| {
        let (key, value) = line.split_once(':')?;
        (key == name).then(|| value.trim())
    })
}
