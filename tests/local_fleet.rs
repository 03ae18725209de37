//! The local fleet against real `redis-server` processes: the first master chosen by the
//! health core, scale up and down, the durable master record, a scale-down that must first
//! switch the master over without losing a key, a master that restarts empty, and a missing
//! binary.

mod support;

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::time::{Duration, Instant};

use redis_autopilot::cluster::local::{LocalConfig, LocalFleet};
use redis_autopilot::cluster::{Cluster, ClusterError, MasterRecord, Member};
use redis_autopilot::decide::HealthDecision;
use redis_autopilot::decide::health::{DownRule, HealthReason};
use redis_autopilot::policy::SecretSource;
use redis_autopilot::sample::redis::Access;
use redis_autopilot::sample::secret;
use support::{free_port, free_ports};

const TIMEOUT: Duration = Duration::from_secs(5);

fn config(dir: &Path, base_port: u16) -> LocalConfig {
    support::local_config(dir, base_port, TIMEOUT)
}

async fn settle(fleet: &LocalFleet) -> Vec<HealthDecision> {
    support::settle(fleet, &Access::default(), TIMEOUT).await
}

async fn settle_with(fleet: &LocalFleet, access: &Access) -> Vec<HealthDecision> {
    support::settle(fleet, access, TIMEOUT).await
}

fn promotions(decisions: &[HealthDecision]) -> Vec<&HealthDecision> {
    decisions
        .iter()
        .filter(|d| matches!(d, HealthDecision::Failover { .. } | HealthDecision::Promote { .. }))
        .collect()
}

async fn connection(port: u16) -> redis::aio::MultiplexedConnection {
    let client = redis::Client::open(format!("redis://127.0.0.1:{port}/")).expect("redis URL");
    // Longer than `WAIT`'s own deadline: the crate's default (500 ms) would cut it short.
    let config = redis::AsyncConnectionConfig::new().set_response_timeout(Some(2 * TIMEOUT));
    client.get_multiplexed_async_connection_with_config(&config).await.expect("connect to redis")
}

async fn info_field(port: u16, field: &str) -> Option<String> {
    // `None` also while nothing listens: callers wait for instances to come and go.
    let client = redis::Client::open(format!("redis://127.0.0.1:{port}/")).ok()?;
    let mut connection = client.get_multiplexed_async_connection().await.ok()?;
    let text: String =
        redis::cmd("INFO").arg("replication").query_async(&mut connection).await.ok()?;
    text.lines().find_map(|line| {
        let (key, value) = line.split_once(':')?;
        (key == field).then(|| value.trim().to_owned())
    })
}

async fn wait_for(port: u16, field: &str, value: &str) {
    let deadline = Instant::now() + Duration::from_secs(15);
    while Instant::now() < deadline {
        if info_field(port, field).await.as_deref() == Some(value) {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("{field} never became {value} on port {port}");
}

/// Writes `count` keys and waits until `replicas` replicas acknowledged them, returning how
/// many did. `WAIT` counts acknowledgements of the offset of *this connection's* last write,
/// so it must go on the connection that wrote: on a fresh one it returns at once.
async fn write_keys(port: u16, count: usize, replicas: usize) -> usize {
    let mut pipe = redis::pipe();
    for i in 0..count {
        pipe.cmd("SET").arg(format!("key:{i}")).arg(i).ignore();
    }
    pipe.cmd("WAIT").arg(replicas).arg(5000);
    let mut connection = connection(port).await;
    let (acked,): (usize,) = pipe.query_async(&mut connection).await.expect("write keys");
    acked
}

async fn dbsize(port: u16) -> usize {
    redis::cmd("DBSIZE").query_async(&mut connection(port).await).await.expect("DBSIZE")
}

fn refuses(port: u16) -> bool {
    std::net::TcpStream::connect(("127.0.0.1", port)).is_err()
}

fn state(dir: &Path) -> serde_json::Value {
    serde_json::from_slice(&std::fs::read(dir.join("state.json")).expect("read state.json"))
        .expect("state.json is JSON")
}

/// `state` without its claim, which must be released: a bootstrap or a hand-over leaves its
/// claim in the record, lapsed, to say who last changed roles.
fn without_released_claim(mut state: serde_json::Value) -> serde_json::Value {
    if let Some(claim) = state.as_object_mut().and_then(|fields| fields.remove("claim")) {
        let until: chrono::DateTime<chrono::Utc> =
            serde_json::from_value(claim["until"].clone()).expect("a claim's deadline");
        assert!(until <= chrono::Utc::now(), "the claim still holds: {claim}");
    }
    state
}

fn id(port: u16) -> String {
    format!("127.0.0.1:{port}")
}

#[tokio::test]
async fn first_master_scale_up_replicate_scale_down_and_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let base = free_ports(3);
    let fleet = LocalFleet::open(config(dir.path(), base)).unwrap();
    assert_eq!(fleet.recorded_master().await.unwrap(), None);

    fleet.scale(fleet.replicas().await.unwrap(), 1).await.unwrap();
    // Booted as a replica of itself: read-only, no master until the health core chooses one.
    assert_eq!(info_field(base, "role").await.as_deref(), Some("slave"));
    let decisions = settle(&fleet).await;
    assert!(
        matches!(
            &decisions[..],
            [HealthDecision::Failover {
                from: None,
                epoch: 1,
                reason: HealthReason::Bootstrap { .. },
                ..
            }]
        ),
        "{decisions:?}"
    );
    let record = fleet.recorded_master().await.unwrap();
    let recorded = record.as_ref().map(|r| (r.instance.as_str(), r.epoch));
    assert_eq!(recorded, Some((id(base).as_str(), 1)));
    // The first master's claim is released: nobody is changing roles now.
    assert!(record.as_ref().is_some_and(|r| r.active_claim(chrono::Utc::now()).is_none()));
    assert_eq!(info_field(base, "role").await.as_deref(), Some("master"));

    fleet.scale(fleet.replicas().await.unwrap(), 3).await.unwrap();
    let members = fleet.members().await.unwrap();
    let ordinals: Vec<u16> = members.iter().map(|m| m.ordinal).collect();
    assert_eq!(ordinals, [0, 1, 2]);
    assert_eq!(members[2].endpoint.port, base + 2);
    for port in [base + 1, base + 2] {
        wait_for(port, "master_link_status", "up").await;
        assert_eq!(info_field(port, "master_port").await, Some(base.to_string()));
    }
    assert_eq!(write_keys(base, 100, 2).await, 2);
    for port in [base + 1, base + 2] {
        assert_eq!(dbsize(port).await, 100);
        let value: String =
            redis::cmd("GET").arg("key:42").query_async(&mut connection(port).await).await.unwrap();
        assert_eq!(value, "42");
    }
    assert_eq!(
        without_released_claim(state(dir.path())),
        serde_json::json!({"master": id(base), "epoch": 1, "replicas": 3})
    );

    fleet.scale(fleet.replicas().await.unwrap(), 1).await.unwrap();
    assert!(refuses(base + 1) && refuses(base + 2));
    assert_eq!(fleet.members().await.unwrap().len(), 1);
    assert_eq!(fleet.replicas().await.unwrap(), 1);
    assert_eq!(state(dir.path())["replicas"], 1);
    // A master that serves is left alone.
    assert!(promotions(&settle(&fleet).await).is_empty());
    assert_eq!(fleet.recorded_master().await.unwrap(), record);

    // A second daemon on the same directory reads the record and adopts the running instance,
    // and, not owning it, leaves it running when dropped.
    let reopened =
        LocalFleet::open(LocalConfig { owns_processes: false, ..config(dir.path(), base) })
            .unwrap();
    assert_eq!(reopened.recorded_master().await.unwrap(), record);
    assert_eq!(reopened.replicas().await.unwrap(), 1);
    let adopted: Vec<String> =
        reopened.members().await.unwrap().into_iter().map(|m| m.id).collect();
    assert_eq!(adopted, [id(base)]);
    drop(reopened);
    assert!(!refuses(base));

    fleet.shutdown().await.unwrap();
    assert!(refuses(base));
}

#[tokio::test]
async fn scaling_down_the_master_switches_over_first_without_losing_keys() {
    let dir = tempfile::tempdir().unwrap();
    let base = free_ports(3);
    let fleet = LocalFleet::open(config(dir.path(), base)).unwrap();
    fleet.scale(fleet.replicas().await.unwrap(), 3).await.unwrap();
    settle(&fleet).await;
    for port in [base + 1, base + 2] {
        wait_for(port, "master_link_status", "up").await;
    }
    let members = fleet.members().await.unwrap();
    let [m0, m1, m2]: [Member; 3] = members.try_into().unwrap();

    // Promoting anything but the recorded master, or demoting the recorded master, is refused.
    let refused = fleet.promote(&m2, 2).await.unwrap_err();
    assert_eq!(refused.category(), "not_recorded", "{refused}");
    let refused = fleet.repoint(&m0, &m2).await.unwrap_err();
    assert_eq!(refused.category(), "recorded_master", "{refused}");
    let stale = fleet.record_master(MasterRecord::new(m2.id.clone(), 1)).await;
    assert_eq!(stale.unwrap_err().category(), "stale_epoch");

    // Make the highest ordinal the master, the way the failover logic will.
    fleet.record_master(MasterRecord::new(m2.id.clone(), 2)).await.unwrap();
    fleet.promote(&m2, 2).await.unwrap();
    fleet.repoint(&m0, &m2).await.unwrap();
    fleet.repoint(&m1, &m2).await.unwrap();
    for port in [base, base + 1] {
        wait_for(port, "master_port", &(base + 2).to_string()).await;
        wait_for(port, "master_link_status", "up").await;
    }

    const KEYS: usize = 10_000;
    // No replica need acknowledge: the hand-over itself must wait for their offsets.
    write_keys(base + 2, KEYS, 0).await;
    // The backend alone only resizes: it refuses to remove the master, and removes nothing.
    let refused = fleet.scale(fleet.replicas().await.unwrap(), 2).await.unwrap_err();
    assert_eq!(refused.category(), "would_remove_master", "{refused}");
    assert!(!refuses(base + 2));
    support::resize(&fleet, 2, &Access::default(), TIMEOUT).await.unwrap();

    let record = fleet.recorded_master().await.unwrap().unwrap();
    assert_eq!(record.epoch, 3);
    let new = if record.instance == m0.id { &m0 } else { &m1 };
    assert!(record.instance == m0.id || record.instance == m1.id, "{record:?}");
    assert_eq!(info_field(new.endpoint.port, "role").await.as_deref(), Some("master"));
    assert_eq!(dbsize(new.endpoint.port).await, KEYS);
    assert!(refuses(base + 2));
    let other = if new.ordinal == 0 { &m1 } else { &m0 };
    wait_for(other.endpoint.port, "master_port", &new.endpoint.port.to_string()).await;
    wait_for(other.endpoint.port, "master_link_status", "up").await;
    let mut written = state(dir.path());
    // The hand-over's claim, released: who last changed roles, and that nobody is now.
    let claim = written.as_object_mut().and_then(|s| s.remove("claim")).expect("a claim");
    assert!(claim["by"].is_string() && claim["from"] == serde_json::json!(id(base + 2)), "{claim}");
    assert_eq!(written, serde_json::json!({"master": new.id, "epoch": 3, "replicas": 2}));
    fleet.shutdown().await.unwrap();
}

#[tokio::test]
async fn a_missing_redis_server_is_named() {
    let dir = tempfile::tempdir().unwrap();
    let base_port = free_port();
    let config = LocalConfig {
        redis_server: "/nonexistent/redis-server".into(),
        ..config(dir.path(), base_port)
    };
    let fleet = LocalFleet::open(config).unwrap();
    let error = fleet.scale(fleet.replicas().await.unwrap(), 1).await.unwrap_err();
    assert!(matches!(error, ClusterError::Spawn { .. }), "{error:?}");
    let message = error.to_string();
    assert!(
        message.contains("/nonexistent/redis-server") && message.contains("redisServer"),
        "{message}"
    );
    // The requested instance stays a member, gone, with why: a dead master must be seen dead.
    let members = fleet.members().await.unwrap();
    assert_eq!(members.len(), 1, "{members:?}");
    let why = members[0].gone.as_deref().expect("reported gone");
    assert!(why.contains("/nonexistent/redis-server"), "{why}");
}

#[tokio::test]
async fn a_master_that_restarted_empty_comes_back_a_replica_and_a_replica_with_data_takes_over() {
    let dir = tempfile::tempdir().unwrap();
    let base = free_ports(2);
    let fleet = LocalFleet::open(config(dir.path(), base)).unwrap();
    fleet.scale(fleet.replicas().await.unwrap(), 2).await.unwrap();
    settle(&fleet).await;
    wait_for(base + 1, "master_link_status", "up").await;
    assert_eq!(write_keys(base, 100, 1).await, 1);

    // The master dies; without persistence it restarts empty. Reconciling brings it back,
    // as a replica (of itself: it is the recorded master), never as a master. The port closes
    // a moment before the process exits, so reconcile until the exit is seen, as the daemon's
    // loop would.
    let _ =
        redis::cmd("SHUTDOWN").arg("NOSAVE").query_async::<()>(&mut connection(base).await).await;
    let deadline = Instant::now() + Duration::from_secs(10);
    while !refuses(base) {
        assert!(Instant::now() < deadline, "instance 0 never stopped");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    loop {
        fleet.scale(fleet.replicas().await.unwrap(), 2).await.unwrap();
        if info_field(base, "role").await.is_some() {
            break;
        }
        assert!(Instant::now() < deadline, "instance 0 never came back");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(info_field(base, "role").await.as_deref(), Some("slave"));
    assert_eq!(dbsize(base).await, 0);

    // Promoting the empty instance again would wipe the replica: the replica with the data
    // takes over at once (no downAfter to wait for), and the restarted one follows it.
    let decisions = settle(&fleet).await;
    let [
        HealthDecision::Failover {
            from,
            to,
            epoch: 2,
            reason: HealthReason::Down { detection, .. },
        },
    ] = &promotions(&decisions)[..]
    else {
        panic!("expected one failover: {decisions:?}");
    };
    assert_eq!((from.as_deref(), to.as_str()), (Some(id(base).as_str()), id(base + 1).as_str()));
    assert_eq!(detection.rule, DownRule::RestartedEmpty);
    assert_eq!(dbsize(base + 1).await, 100);
    wait_for(base, "master_link_status", "up").await;
    assert_eq!(dbsize(base).await, 100);
    fleet.shutdown().await.unwrap();
}

/// A policy with `auth`: the instances demand the password the daemon sends (as the default
/// user, or as a named ACL user with the default user off), replicas authenticate to their
/// master with it, and it never shows in a process's command line.
#[tokio::test]
async fn a_fleet_with_auth_demands_it_and_replicates_with_it() {
    const PASSWORD: &str = "s3cret \"with\" spaces\\ and # signs";
    for username in [None, Some("autopilot")] {
        let dir = tempfile::tempdir().unwrap();
        let secret_file = dir.path().join("password");
        std::fs::write(&secret_file, format!("{PASSWORD}\n")).unwrap();
        let password = secret::read(&SecretSource::File(secret_file)).unwrap();
        let access =
            Access { username: username.map(str::to_owned), password: Some(password), tls: None };
        let base = free_ports(2);
        let fleet =
            LocalFleet::open(LocalConfig { access: access.clone(), ..config(dir.path(), base) })
                .unwrap();
        fleet.scale(fleet.replicas().await.unwrap(), 2).await.unwrap();
        settle_with(&fleet, &access).await;

        let url = |port: u16| match username {
            Some(user) => format!("redis://{user}:{}@127.0.0.1:{port}/", urlencode(PASSWORD)),
            None => format!("redis://:{}@127.0.0.1:{port}/", urlencode(PASSWORD)),
        };
        let mut authed = redis::Client::open(url(base + 1))
            .unwrap()
            .get_multiplexed_async_connection()
            .await
            .expect("the policy's credentials are accepted");
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            let info: String =
                redis::cmd("INFO").arg("replication").query_async(&mut authed).await.unwrap();
            if info.contains("master_link_status:up") {
                break;
            }
            assert!(Instant::now() < deadline, "the replica never authenticated: {info}");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }

        // Without credentials, nothing but the refusal.
        let mut anonymous = connection(base).await;
        let refused = redis::cmd("PING").query_async::<String>(&mut anonymous).await.unwrap_err();
        assert!(refused.to_string().contains("NOAUTH"), "{refused}");

        for ordinal in ["0", "1"] {
            let pid = std::fs::read_to_string(dir.path().join(ordinal).join("redis.pid")).unwrap();
            let cmdline = std::fs::read(format!("/proc/{}/cmdline", pid.trim())).unwrap();
            assert!(!String::from_utf8_lossy(&cmdline).contains("s3cret"));
            let mode = std::fs::metadata(dir.path().join(ordinal).join("auth.conf"))
                .unwrap()
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, 0o600, "auth.conf is readable by others");
        }
        fleet.shutdown().await.unwrap();
    }
}

/// Percent-encodes every byte but ASCII letters and digits, for a password in a URL.
fn urlencode(text: &str) -> String {
    text.bytes()
        .map(
            |b| {
                if b.is_ascii_alphanumeric() {
                    (b as char).to_string()
                } else {
                    format!("%{b:02X}")
                }
            },
        )
        .collect()
}
