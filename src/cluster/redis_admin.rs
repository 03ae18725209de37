//! The Redis-side role commands every [`super::Cluster`] backend shares: make an instance a
//! master or a replica (`REPLICAOF`), hand the master role over without losing writes
//! (`FAILOVER`), and read an instance's `INFO` to choose between replicas. Every call runs under
//! the caller's deadline on a fresh connection (role changes are rare; a cached connection
//! could be to a process that has since restarted). Errors name the instance, never a secret.

use std::time::Duration;

use redis::aio::MultiplexedConnection;

use super::{ClusterError, MasterRecord, Member};
use crate::observe::{Info, ReplicaState, Role};
use crate::sample::redis::{Access, Endpoint, HEALTH_SECTIONS, connect};

/// The guarded role commands, one implementation for every backend with real instances: each
/// checks the record as stored now (`current`, which the backend reads past any cache from
/// wherever it keeps it) with the one rule ([`MasterRecord::may_promote`],
/// [`MasterRecord::may_repoint`]), then sends the command. Backends differ only in where the
/// record lives and what they report around the call.
#[derive(Debug, Clone, Copy)]
pub struct Guarded<'a> {
    pub access: &'a Access,
    pub timeout: Duration,
}

impl Guarded<'_> {
    /// `REPLICAOF NO ONE` on `member`, if it is the recorded master at `epoch`.
    pub async fn promote(
        &self,
        current: Option<&MasterRecord>,
        member: &Member,
        epoch: u64,
    ) -> Result<(), ClusterError> {
        MasterRecord::may_promote(current, member, epoch)?;
        replicaof(member, None, self.access, self.timeout).await
    }

    /// `FAILOVER TO` from `from` to `to`, if `to` is the recorded master at `epoch`.
    pub async fn switch_over(
        &self,
        current: Option<&MasterRecord>,
        from: &Member,
        to: &Member,
        epoch: u64,
    ) -> Result<(), ClusterError> {
        MasterRecord::may_promote(current, to, epoch)?;
        switchover(&from.endpoint, &to.endpoint, self.access, self.timeout).await
    }

    /// `REPLICAOF` of `master` on `member`, unless `member` is the recorded master.
    pub async fn repoint(
        &self,
        current: Option<&MasterRecord>,
        member: &Member,
        master: &Member,
    ) -> Result<(), ClusterError> {
        MasterRecord::may_repoint(current, member)?;
        replicaof(member, Some(master), self.access, self.timeout).await
    }
}

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

/// The longest [`switchover`] takes with this `timeout`: the master listing the target
/// online, starting it, the target's catch-up, and the swap.
pub fn switchover_limit(timeout: Duration) -> Duration {
    2 * timeout.max(CATCH_UP_MIN) + 2 * timeout
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
    // Redis refuses `FAILOVER TO` a replica it does not list as `online`, and a replica that
    // has just loaded its full sync reports its link up before that: the master lists it
    // online only on its first acknowledgement, sent once a second. Wait on the master's view.
    let listed_online = async {
        loop {
            if let Ok(info) = info(master, access, timeout).await
                && info.replication.replicas.iter().any(|replica| {
                    replica.ip == to.host
                        && replica.port == to.port
                        && replica.state == ReplicaState::Online
                })
            {
                return;
            }
            tokio::time::sleep(POLL).await;
        }
    };
    if tokio::time::timeout(catch_up, listed_online).await.is_err() {
        return Err(failed(format!(
            "{} does not list {} as an online replica after {catch_up:?}",
            master.id, to.id
        )));
    }
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

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};

    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    use super::*;

    /// The names of the complete RESP commands at the front of `buffer`, which loses them.
    fn commands(buffer: &mut Vec<u8>) -> Vec<String> {
        let mut names = Vec::new();
        loop {
            let text = String::from_utf8_lossy(buffer).into_owned();
            let mut lines = text.split("\r\n");
            let Some(count) = lines.next().and_then(|l| l.strip_prefix('*')?.parse::<usize>().ok())
            else {
                return names;
            };
            let mut consumed = text.find("\r\n").map_or(0, |at| at + 2);
            let mut words = Vec::new();
            for _ in 0..count {
                let (Some(_length), Some(word)) = (lines.next(), lines.next()) else {
                    return names;
                };
                if !text[consumed..].contains("\r\n") {
                    return names;
                }
                consumed += text[consumed..].find("\r\n").unwrap() + 2;
                if text.len() < consumed + word.len() + 2 {
                    return names;
                }
                consumed += word.len() + 2;
                words.push(word.to_uppercase());
            }
            buffer.drain(..consumed);
            names.push(words.join(" "));
        }
    }

    /// A fake Redis on loopback answering `INFO` with `info(n)` for its `n`th `INFO` and
    /// `FAILOVER` with `failover(infos answered so far)`; anything else gets `+OK`.
    async fn fake(
        info: impl Fn(usize) -> String + Send + Sync + 'static,
        failover: impl Fn(usize) -> &'static str + Send + Sync + 'static,
    ) -> (Endpoint, Arc<AtomicUsize>) {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let infos = Arc::new(AtomicUsize::new(0));
        let (info, failover) = (Arc::new(info), Arc::new(failover));
        let served = Arc::clone(&infos);
        tokio::spawn(async move {
            while let Ok((mut socket, _)) = listener.accept().await {
                let (info, failover, infos) =
                    (Arc::clone(&info), Arc::clone(&failover), Arc::clone(&served));
                tokio::spawn(async move {
                    let (mut buffer, mut chunk) = (Vec::new(), [0_u8; 4096]);
                    while let Ok(n @ 1..) = socket.read(&mut chunk).await {
                        buffer.extend_from_slice(&chunk[..n]);
                        for command in commands(&mut buffer) {
                            let reply = if command.starts_with("INFO") {
                                let text = info(infos.fetch_add(1, Ordering::SeqCst));
                                format!("${}\r\n{text}\r\n", text.len())
                            } else if command.starts_with("FAILOVER") {
                                failover(infos.load(Ordering::SeqCst)).to_owned()
                            } else {
                                "+OK\r\n".to_owned()
                            };
                            if socket.write_all(reply.as_bytes()).await.is_err() {
                                return;
                            }
                        }
                    }
                });
            }
        });
        (Endpoint { id: format!("127.0.0.1:{port}"), host: "127.0.0.1".into(), port }, infos)
    }

    /// Seen in CI: `FAILOVER TO` a replica that had just finished its full sync was refused
    /// ("target replica is not online") because the master had not yet had its first
    /// acknowledgement. The switchover now waits for the master's own view.
    #[tokio::test]
    async fn a_switchover_waits_until_the_master_lists_its_target_online() {
        const ONLINE_FROM: usize = 3;
        let (target, _) = fake(|_| "role:master\r\n".to_owned(), |_| "+OK\r\n").await;
        let port = target.port;
        let (master, infos) = fake(
            move |n| {
                let state = if n < ONLINE_FROM { "wait_bgsave" } else { "online" };
                format!(
                    "role:master\r\nconnected_slaves:1\r\n\
                     slave0:ip=127.0.0.1,port={port},state={state},offset=0,lag=0\r\n"
                )
            },
            |infos| {
                if infos > ONLINE_FROM {
                    "+OK\r\n"
                } else {
                    "-ERR FAILOVER target replica is not online.\r\n"
                }
            },
        )
        .await;
        switchover(&master, &target, &Access::default(), Duration::from_secs(2))
            .await
            .expect("the switchover waits for the target to be online");
        assert!(infos.load(Ordering::SeqCst) > ONLINE_FROM);
    }

    #[tokio::test]
    async fn a_target_never_listed_online_is_refused_naming_both() {
        let (target, _) = fake(|_| "role:master\r\n".to_owned(), |_| "+OK\r\n").await;
        let (master, _) = fake(
            |_| "role:master\r\nconnected_slaves:0\r\n".to_owned(),
            |_| "-ERR FAILOVER target replica is not online.\r\n",
        )
        .await;
        let error = switchover(&master, &target, &Access::default(), Duration::from_millis(100))
            .await
            .expect_err("a target that is not a replica");
        let text = error.to_string();
        assert!(text.contains(&master.id) && text.contains(&target.id), "{text}");
        assert!(text.contains("online"), "{text}");
    }
}
