//! The local fleet's data safety against real `redis-server` processes: a clean daemon restart
//! keeps every acknowledged write, the master and its epoch; after every process was killed
//! the freshest data left is restored and the loss logged; a failed scale-down hand-over
//! changes nothing and can be retried; a stranger on an instance's port is fenced; repointing
//! never waits for another instance's timeout; a dropped fleet leaves its instances running;
//! a stale pid file never gets a stranger adopted or signalled; instances get none of the
//! daemon's environment.

mod support;

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use redis_autopilot::cluster::local::{LocalConfig, LocalFleet};
use redis_autopilot::cluster::{Cluster, ClusterError, MasterRecord, Member};
use redis_autopilot::sample::redis::Access;
use support::failover::{
    Ack, Checker, Fleet, Writer, assert_all_present, connect, dbsize, info_field, signal,
    wait_until,
};
use support::{free_ports, require};

const TIMEOUT: Duration = Duration::from_secs(5);

/// Daemon fleets take turns: on two cores, two at once starve each other's probes.
static TURN: Mutex<()> = Mutex::new(());

fn turn() -> std::sync::MutexGuard<'static, ()> {
    TURN.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

fn config(dir: &Path, base_port: u16) -> LocalConfig {
    support::local_config(dir, base_port, TIMEOUT)
}

/// One health probe and its promotions carried out: the first master of a new fleet.
/// A scale through the action path's hand-over, as the daemon makes it.
async fn resize(fleet: &LocalFleet, to: u16) -> Result<(), ClusterError> {
    support::resize(fleet, to, &Access::default(), TIMEOUT).await
}

async fn settle(fleet: &LocalFleet) {
    support::settle(fleet, &Access::default(), TIMEOUT).await;
}

fn refuses(port: u16) -> bool {
    std::net::TcpStream::connect(("127.0.0.1", port)).is_err()
}

fn wait_for(port: u16, field: &str, value: &str) {
    wait_until(Duration::from_secs(15), &format!("{field}:{value} on {port}"), String::new, || {
        (info_field(port, field)? == value).then_some(())
    });
}

fn redis_cmd(port: u16, args: &[&str]) -> redis::RedisResult<redis::Value> {
    let mut connection = connect(port, TIMEOUT).expect("connect");
    let mut command = redis::cmd(args[0]);
    for arg in &args[1..] {
        command.arg(*arg);
    }
    command.query(&mut connection)
}

/// How many of `acks` are not on `port`.
fn missing(port: u16, acks: &[Ack]) -> usize {
    let mut connection = connect(port, TIMEOUT).expect("connect");
    acks.chunks(1000)
        .map(|chunk| {
            let keys: Vec<String> = chunk.iter().map(|a| format!("w:{}", a.n)).collect();
            let values: Vec<Option<u64>> =
                redis::cmd("MGET").arg(&keys).query(&mut connection).expect("MGET");
            chunk.iter().zip(values).filter(|(ack, value)| *value != Some(ack.n)).count()
        })
        .sum()
}

fn pid_file(dir: &Path, ordinal: u16) -> u32 {
    let text =
        std::fs::read_to_string(dir.join(ordinal.to_string()).join("redis.pid")).expect("pid file");
    text.trim().parse().expect("a pid")
}

fn process_exists(pid: u32) -> bool {
    // A zombie has no command line: it is gone for every purpose here.
    std::fs::read(format!("/proc/{pid}/cmdline")).is_ok_and(|cmdline| !cmdline.is_empty())
}

/// A process that is killed when the test ends, however it ends.
struct Stranger(Child);

impl Drop for Stranger {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Sends SIGCONT to a stopped process when the test ends, however it ends.
struct Resume(u32);

impl Drop for Resume {
    fn drop(&mut self) {
        let _ = Command::new("kill").args(["-CONT", &self.0.to_string()]).status();
    }
}

/// The log the daemon wrote from byte `from` on, without its colours.
fn log_since(fleet: &Fleet, from: usize) -> String {
    let log = fleet.log().get(from..).unwrap_or_default().to_owned();
    let mut plain = String::with_capacity(log.len());
    let mut chars = log.chars();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            // `ESC [ ... m`
            for c in chars.by_ref() {
                if c == 'm' {
                    break;
                }
            }
        } else {
            plain.push(c);
        }
    }
    plain
}

fn decided(log: &str, kind: &str) -> bool {
    log.contains(&format!("action=\"{kind}\"")) || log.contains(&format!("action={kind} "))
}

/// Issue 11: a demo stopped with Ctrl-C and started again rolled a list back from 21,884
/// entries to 10,848 (replicas loaded the `dump.rdb` of their last full sync) and failed over.
#[test]
fn a_clean_daemon_restart_keeps_every_acknowledged_write_the_master_and_its_epoch() {
    let _turn = turn();
    let mut fleet = Fleet::start("    downAfter: 3s\n");
    let master = fleet.wait_healthy(Duration::from_secs(20));
    let (_, epoch) = fleet.record().expect("a record");
    let writer = Writer::start(&fleet.data);
    wait_until(
        Duration::from_secs(20),
        "writes",
        || fleet.log(),
        || (writer.acks().len() > 2_000).then_some(()),
    );

    assert!(fleet.stop_daemon(), "the daemon did not exit on SIGTERM:\n{}", fleet.log());
    for port in fleet.ports() {
        assert!(refuses(port), "instance {port} outlived the daemon\n{}", fleet.log());
    }
    let acked_before = writer.acks().len();
    let restart_log = fleet.log().len();
    let restarted = Instant::now();
    fleet.spawn_daemon();
    assert_eq!(fleet.wait_healthy(Duration::from_secs(30)), master, "{}", fleet.log());
    assert_eq!(fleet.record(), Some((master, epoch)), "{}", fleet.log());
    wait_until(
        Duration::from_secs(20),
        "writes after the restart",
        || fleet.log(),
        || writer.first_ack_on(master, restarted),
    );
    let acks = writer.finish();
    assert_all_present(master, &acks, || fleet.log());
    let log = log_since(&fleet, restart_log);
    assert!(!decided(&log, "failover"), "the daemon's own restart caused a failover:\n{log}");
    assert!(decided(&log, "promote"), "the master was not promoted again:\n{log}");
    eprintln!(
        "clean restart: {acked_before} writes acknowledged before the stop, {} in all, none lost",
        acks.len()
    );
}

/// A clean restart whose master cannot start at first (something else holds its port): the
/// others wait for it, so the next attempt is a cold start again, and the master then starts
/// from the clean shutdown's save with every key. Started beside the missing master, the
/// replicas made that attempt a warm start, which set the save aside and served nothing.
#[test]
fn a_master_that_cannot_start_at_first_still_restarts_from_the_clean_shutdowns_save() {
    let _turn = turn();
    let mut fleet = Fleet::start("    downAfter: 3s\n");
    let master = fleet.wait_healthy(Duration::from_secs(20));
    let (_, epoch) = fleet.record().expect("a record");
    let mut connection = connect(master, Duration::from_secs(2)).expect("connect");
    for i in 0..1_000 {
        let _: () =
            redis::cmd("SET").arg(format!("k{i}")).arg(i).query(&mut connection).expect("SET");
    }
    drop(connection);
    assert!(fleet.stop_daemon(), "the daemon did not exit on SIGTERM:\n{}", fleet.log());
    let squatter = std::net::TcpListener::bind(("127.0.0.1", master)).expect("take the port");
    let from = fleet.log().len();
    fleet.spawn_daemon();
    wait_until(
        Duration::from_secs(60),
        "a failed start of the master",
        || fleet.log(),
        || log_since(&fleet, from).contains("cannot open the policy's target").then_some(()),
    );
    for port in fleet.ports().into_iter().filter(|&p| p != master) {
        assert!(refuses(port), "{port} started without its master:\n{}", fleet.log());
    }
    drop(squatter);
    assert_eq!(fleet.wait_healthy(Duration::from_secs(60)), master, "{}", fleet.log());
    assert_eq!(fleet.record(), Some((master, epoch)), "{}", fleet.log());
    for port in fleet.ports() {
        wait_until(
            Duration::from_secs(30),
            "every key on every instance",
            || fleet.log(),
            || (dbsize(port)? == 1_000).then_some(()),
        );
    }
}

/// Issue 11, unclean: every process killed. The state after the restart is the freshest one
/// left (a replica's dump of its last full sync), no instance serves anything older, and the
/// log says what was lost.
#[test]
fn after_every_process_was_killed_the_freshest_data_left_is_restored_and_the_loss_logged() {
    let _turn = turn();
    let mut fleet = Fleet::start("    downAfter: 3s\n");
    let master = fleet.wait_healthy(Duration::from_secs(20));
    let (_, epoch) = fleet.record().expect("a record");
    let writer = Writer::start(&fleet.data);
    wait_until(
        Duration::from_secs(20),
        "writes",
        || fleet.log(),
        || (writer.acks().len() > 1_000).then_some(()),
    );
    // A replica restarted now resyncs and keeps the RDB of that full sync: the freshest file
    // the fleet will have. Everything acknowledged before it was killed is in it.
    let replica = fleet.ports().into_iter().find(|&p| p != master).expect("a replica");
    let old_pid = fleet.pid(replica);
    let resynced_from = Instant::now();
    signal(old_pid, "KILL");
    wait_until(
        Duration::from_secs(20),
        "the replica restarted",
        || fleet.log(),
        || (fleet.pid(replica) != old_pid).then_some(()),
    );
    fleet.wait_healthy(Duration::from_secs(20));
    let in_the_dump: Vec<Ack> =
        writer.acks().into_iter().filter(|a| a.at < resynced_from).collect();
    wait_until(
        Duration::from_secs(10),
        "more writes",
        || fleet.log(),
        || (writer.acks().len() > in_the_dump.len() + 500).then_some(()),
    );

    fleet.kill_daemon();
    for port in fleet.ports() {
        signal(fleet.pid(port), "KILL");
    }
    wait_until(
        Duration::from_secs(10),
        "every instance dead",
        || fleet.log(),
        || fleet.ports().into_iter().all(refuses).then_some(()),
    );
    let acked = writer.acks();
    let restart_log = fleet.log().len();
    fleet.spawn_daemon();
    assert_eq!(fleet.wait_healthy(Duration::from_secs(30)), master, "{}", fleet.log());
    assert_eq!(fleet.record(), Some((master, epoch)), "{}", fleet.log());
    let acks = writer.finish();
    assert_all_present(master, &in_the_dump, || fleet.log());
    let log = log_since(&fleet, restart_log);
    assert!(
        log.contains("was not shut down cleanly")
            && log.contains("every write acknowledged after it was written is lost")
            && log.contains(&format!("127.0.0.1:{replica}")),
        "the loss is not logged:\n{log}"
    );
    // No instance serves anything older: the replicas resynced from the restored master.
    let dbsize = |port: u16| -> Option<u64> {
        let mut connection = connect(port, TIMEOUT)?;
        redis::cmd("DBSIZE").query(&mut connection).ok()
    };
    let restored = dbsize(master).expect("DBSIZE");
    wait_until(
        Duration::from_secs(20),
        "every replica holding what the master holds",
        || log.clone(),
        || fleet.ports().into_iter().all(|p| dbsize(p) == Some(restored)).then_some(()),
    );
    eprintln!(
        "unclean restart: {} writes acknowledged before the kill, {} of them in the freshest dump, {} lost; {} acknowledged in all",
        acked.len(),
        in_the_dump.len(),
        missing(master, &acked),
        acks.len()
    );
}

/// Issue 11, case 2: `scale` recorded the smaller count before the hand-over, so a failed
/// hand-over left `replicas()` lying and the scale-down never retried.
#[tokio::test]
async fn a_failed_hand_over_keeps_the_count_and_a_retry_succeeds() {
    let dir = tempfile::tempdir().unwrap();
    let base = free_ports(2);
    let fleet = LocalFleet::open(config(dir.path(), base)).unwrap();
    fleet.scale(fleet.replicas().await.unwrap(), 2).await.unwrap();
    settle(&fleet).await;
    let [m0, m1]: [Member; 2] = fleet.members().await.unwrap().try_into().unwrap();
    // The highest ordinal becomes the master, so that scaling to one must hand over.
    fleet.record_master(MasterRecord::new(m1.id.clone(), 2)).await.unwrap();
    fleet.promote(&m1, 2).await.unwrap();
    fleet.repoint(&m0, &m1).await.unwrap();
    tokio::task::spawn_blocking(move || {
        wait_for(base, "master_port", &(base + 1).to_string());
        wait_for(base, "master_link_status", "up");
    })
    .await
    .unwrap();

    // The only replica may not take over: the hand-over fails.
    redis_cmd(base, &["CONFIG", "SET", "replica-priority", "0"]).unwrap();
    let error = resize(&fleet, 1).await.unwrap_err();
    assert!(matches!(error, ClusterError::NoCandidate { .. }), "{error:?}");
    // The refusal says why the replica was passed over, not a guess.
    assert!(error.to_string().contains(&format!("{}: replica-priority 0", m0.id)), "{error}");
    assert_eq!(fleet.replicas().await.unwrap(), 2, "the smaller count was recorded anyway");
    assert_eq!(fleet.members().await.unwrap().len(), 2);
    assert!(fleet.members().await.unwrap().iter().all(|m| m.gone.is_none()));
    assert!(!refuses(base) && !refuses(base + 1), "an instance was removed");
    let record = fleet.recorded_master().await.unwrap().map(|r| (r.instance, r.epoch));
    assert_eq!(record, Some((m1.id.clone(), 2)));

    // Once it may, the same call finishes the job.
    redis_cmd(base, &["CONFIG", "SET", "replica-priority", "100"]).unwrap();
    resize(&fleet, 1).await.unwrap();
    assert_eq!(fleet.replicas().await.unwrap(), 1);
    let record = fleet.recorded_master().await.unwrap().map(|r| (r.instance, r.epoch));
    assert_eq!(record, Some((m0.id.clone(), 3)));
    assert!(refuses(base + 1));
    fleet.shutdown().await.unwrap();
}

/// Issue 11, case 3: a replica's port taken by a stranger claiming master. The ordinal stays
/// a member, what answers there is probed, and it is fenced at once.
#[test]
fn a_stranger_claiming_master_on_a_replicas_port_is_fenced() {
    let _turn = turn();
    let fleet = Fleet::start("    downAfter: 3s\n");
    let master = fleet.wait_healthy(Duration::from_secs(20));
    let replica = fleet.ports().into_iter().find(|&p| p != master).expect("a replica");
    let checker = Checker::start(fleet.ports());
    // The daemon is paused so that it cannot restart the replica before the stranger takes
    // its port.
    let daemon = fleet.daemon_pid().expect("the daemon runs");
    signal(daemon, "STOP");
    let resume = Resume(daemon);
    signal(fleet.pid(replica), "KILL");
    wait_until(
        Duration::from_secs(10),
        "the replica dead",
        || fleet.log(),
        || refuses(replica).then_some(()),
    );
    let elsewhere = tempfile::tempdir().unwrap();
    let stranger = Command::new(require("redis-server", "redis-server"))
        .args(["--port", &replica.to_string(), "--bind", "127.0.0.1", "--save", ""])
        .arg("--dir")
        .arg(elsewhere.path())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start the stranger");
    let _stranger = Stranger(stranger);
    wait_until(
        Duration::from_secs(10),
        "the stranger serving",
        || fleet.log(),
        || (info_field(replica, "role")? == "master").then_some(()),
    );
    redis_cmd(replica, &["SET", "stranger", "1"]).unwrap();

    let resumed = Instant::now();
    drop(resume);
    wait_until(
        Duration::from_secs(10),
        "the stranger fenced",
        || fleet.log(),
        || {
            (info_field(replica, "role")? == "slave"
                && info_field(replica, "master_port")? == master.to_string())
            .then_some(())
        },
    );
    let fenced_after = resumed.elapsed();
    let violations = checker.finish_timed();
    let window = match (violations.first(), violations.last()) {
        (Some((first, _)), Some((last, _))) => *last - *first,
        _ => Duration::ZERO,
    };
    eprintln!(
        "stranger fenced {fenced_after:?} after the daemon resumed; two masters accepted writes for {window:?} ({} checks)",
        violations.len()
    );
    // Probes run every 100 ms: a probe or two, with room for a loaded machine.
    assert!(window < Duration::from_secs(2), "{violations:?}\n{}", fleet.log());
    assert!(fleet.log().contains("something the fleet did not start answers"), "{}", fleet.log());
}

/// Issue 11, case 4: one unreachable instance must not hold up repointing the others.
#[tokio::test]
async fn repointing_a_healthy_replica_does_not_wait_for_an_unreachable_one() {
    let dir = tempfile::tempdir().unwrap();
    let base = free_ports(3);
    let fleet = LocalFleet::open(config(dir.path(), base)).unwrap();
    fleet.scale(fleet.replicas().await.unwrap(), 3).await.unwrap();
    settle(&fleet).await;
    let [m0, m1, m2]: [Member; 3] = fleet.members().await.unwrap().try_into().unwrap();
    let stopped = pid_file(dir.path(), 2);
    signal(stopped, "STOP");
    let _resume = Resume(stopped);

    // The stalled repoint starts first: it would hold anything serialized behind it until
    // its deadline.
    let stalled = fleet.repoint(&m2, &m0);
    let healthy = fleet.repoint(&m1, &m0);
    tokio::pin!(stalled, healthy);
    tokio::select! {
        biased;
        result = &mut stalled => panic!("the stopped instance answered first: {result:?}"),
        result = &mut healthy => result.expect("repoint the healthy replica"),
    }
    // Its deadline (the connection's or the call's) ends it.
    let error = stalled.await.unwrap_err();
    assert!(error.to_string().contains(&m2.id), "{error}");
    drop(_resume);
    fleet.shutdown().await.unwrap();
}

/// Issue 12: dropping a fleet SIGKILLed every instance, so a transient error that dropped it
/// made the fleet restart empty. Now only an explicit shutdown stops them.
#[tokio::test]
async fn a_dropped_fleet_leaves_its_instances_running_for_the_next_open() {
    let dir = tempfile::tempdir().unwrap();
    let base = free_ports(2);
    let fleet = LocalFleet::open(config(dir.path(), base)).unwrap();
    fleet.scale(fleet.replicas().await.unwrap(), 2).await.unwrap();
    settle(&fleet).await;
    let pids = [pid_file(dir.path(), 0), pid_file(dir.path(), 1)];
    drop(fleet);
    assert!(!refuses(base) && !refuses(base + 1), "dropping the fleet stopped its instances");
    assert!(pids.iter().all(|&pid| process_exists(pid)));

    let reopened = LocalFleet::open(config(dir.path(), base)).unwrap();
    let members = reopened.members().await.unwrap();
    assert_eq!(members.len(), 2);
    assert!(members.iter().all(|m| m.gone.is_none()), "{members:?}");
    reopened.shutdown().await.unwrap();
    assert!(refuses(base) && refuses(base + 1));
}

/// Issue 12: a stale `redis.pid` naming a reused pid got an unrelated process adopted and
/// later SIGKILLed.
#[tokio::test]
async fn a_pid_file_naming_another_process_is_never_adopted_or_signalled() {
    let dir = tempfile::tempdir().unwrap();
    let base = free_ports(2);
    let decoy = Command::new("sleep").arg("300").spawn().expect("start a decoy");
    let mut decoy = Stranger(decoy);
    for ordinal in ["0", "1"] {
        std::fs::create_dir_all(dir.path().join(ordinal)).unwrap();
        std::fs::write(dir.path().join(ordinal).join("redis.pid"), format!("{}\n", decoy.0.id()))
            .unwrap();
    }
    let fleet = LocalFleet::open(config(dir.path(), base)).unwrap();
    fleet.scale(fleet.replicas().await.unwrap(), 1).await.unwrap();
    settle(&fleet).await;
    let members = fleet.members().await.unwrap();
    assert_eq!(members.len(), 1, "{members:?}");
    assert_ne!(pid_file(dir.path(), 0), decoy.0.id(), "instance 0 was never started");
    fleet.shutdown().await.unwrap();
    assert!(refuses(base));
    assert!(matches!(decoy.0.try_wait(), Ok(None)), "the decoy was signalled");
}

/// Issue 12: the daemon's environment (cloud credentials) must not reach redis-server.
#[tokio::test]
async fn instances_get_none_of_the_daemons_environment() {
    assert!(
        std::env::vars().any(|(name, _)| name.starts_with("CARGO")),
        "a test runs with CARGO_*"
    );
    let dir = tempfile::tempdir().unwrap();
    let base = free_ports(1);
    let server = require("redis-server", "redis-server");
    // redis-server overwrites its environment block with its process title, so a wrapper
    // records what it was given before it becomes redis-server.
    let wrapper = dir.path().join("redis-server-wrapper");
    let seen = dir.path().join("environment");
    std::fs::write(
        &wrapper,
        format!("#!/bin/sh\nenv > '{}'\nexec '{}' \"$@\"\n", seen.display(), server.display()),
    )
    .unwrap();
    let mut permissions = std::fs::metadata(&wrapper).unwrap().permissions();
    std::os::unix::fs::PermissionsExt::set_mode(&mut permissions, 0o755);
    std::fs::set_permissions(&wrapper, permissions).unwrap();
    let data = dir.path().join("data");
    let fleet = LocalFleet::open(LocalConfig {
        redis_server: wrapper.display().to_string(),
        ..config(&data, base)
    })
    .unwrap();
    fleet.scale(fleet.replicas().await.unwrap(), 1).await.unwrap();
    let environment = std::fs::read_to_string(&seen).unwrap();
    let names: Vec<&str> =
        environment.lines().filter_map(|line| line.split_once('=').map(|(n, _)| n)).collect();
    // What the shell itself sets is allowed; nothing of the daemon's but PATH.
    let allowed = ["PATH", "PWD", "OLDPWD", "SHLVL", "_"];
    let leaked: Vec<&&str> = names.iter().filter(|n| !allowed.contains(n)).collect();
    assert!(leaked.is_empty(), "redis-server got {leaked:?}:\n{environment}");
    assert!(names.contains(&"PATH"));
    // Adopted through the wrapper as well: the process is the instance.
    assert!(fleet.members().await.unwrap().iter().all(|m| m.gone.is_none()));
    fleet.shutdown().await.unwrap();
    assert!(refuses(base));
}
