//! Issue 11, the partition: the daemon is cut off from the master while clients and replicas
//! still reach it, and the write guard (`minReplicasToWrite: 1`, `minReplicasMaxLag: 1s`)
//! bounds the acknowledged writes lost to those the old master took in the guard's window.
//!
//! The cut is an iptables rule that drops (not refuses: a real partition times out) the
//! daemon's packets to the master's address and Redis port, chosen by owner: the daemon runs as
//! `nobody` (`setpriv`), everything else as root. So the target is Kubernetes, through the
//! in-process fake API server (`support::kube_fake`): its pods are real `redis-server`s started
//! by the test as root on 127.0.0.1, .2 and .3 with one port, so the rule's address isolates
//! exactly the master pod, and replication between the pods (root) is never cut. A `local:`
//! target would not do: the servers the daemon spawns would run as `nobody` too, and the rule
//! would cut their replication along with the daemon.
//!
//! Each of three rounds, under a writer that stays on whichever master accepts its writes and
//! the two-master checker: the daemon fails over after `downAfter` (`confirmWithReplicas:
//! false`); the old master refuses writes (`NOREPLICAS`) as soon as its replicas leave it,
//! which they do at once because repointing is concurrent (the daemon's `REPLICAOF` to the
//! unreachable old master blocks for the whole action timeout meanwhile); the cut lasts until
//! that `REPLICAOF` has timed out, and once it heals the old master is fenced. No write
//! acknowledged before the cut, nor more than the replication lag before the promotion, may be
//! lost; the figures are printed.
//!
//! Needs root and `iptables` (scripts/install-test-deps); without them it fails, never skips.
//! Each rule is removed when the round ends, and on drop, so a failing test leaves none behind.

mod support;

use std::path::Path;
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use support::failover::{Checker, connect_at, info_field_at, wait_until};
use support::pods::{DEADLINE, IPS, NS, Pods, PodsDaemon, SET};
use support::require;

const POLICY: &str = "partition-e2e";
/// The user the daemon runs as: the iptables rule matches its packets only.
const DAEMON_USER: &str = "nobody";
const DAEMON_GROUP: &str = "nogroup";
const DOWN_AFTER: Duration = Duration::from_secs(2);
const PROBE_INTERVAL: Duration = Duration::from_millis(100);
/// `minReplicasMaxLag`, in the whole seconds Redis takes.
const MAX_LAG_SECS: u64 = 1;
const ROUNDS: u64 = 3;
/// How far replication to a replica may trail the old master's acknowledgements (over
/// loopback, milliseconds; generous for a loaded 2-core machine): a write acknowledged this
/// long before the promotion may still be missing on the promoted replica. One acknowledged
/// earlier and missing is a real loss.
const ASYNC_WINDOW: Duration = Duration::from_millis(100);
/// The longest the old master may accept writes after the promotion: `min-replicas-max-lag`,
/// plus 1 s because Redis counts a replica's lag in whole seconds from its last once-a-second
/// `REPLCONF ACK`. (Repointing its replicas away closes their links, which usually engages the
/// guard at once; the bound is what holds even if a link lingers.)
const GUARD_BOUND: Duration = Duration::from_secs(MAX_LAG_SECS + 1);

/// The daemon's action timeout (`sampling.timeout`, longer than `probeTimeout`): how long
/// its `REPLICAOF` to the unreachable old master blocks. Long, so that a repointing that
/// waited for it before repointing the reachable replica would show in when the guard engages.
const ACTION_TIMEOUT: Duration = Duration::from_secs(2);

/// Panics unless this runs as root with a working `iptables` owner match: the test must
/// never pass by skipping the partition.
fn require_root_and_iptables() {
    let uid = Command::new("id").arg("-u").output().expect("run id -u");
    let uid = String::from_utf8_lossy(&uid.stdout).trim().to_owned();
    assert_eq!(uid, "0", "the partition test needs root (iptables, setpriv); running as uid {uid}");
    require("iptables", "iptables");
    require("setpriv", "util-linux");
    let listed = Command::new("iptables").args(["-w", "-n", "-L", "OUTPUT"]).output();
    let listed = listed.expect("run iptables");
    assert!(
        listed.status.success(),
        "iptables cannot list OUTPUT here: {}",
        String::from_utf8_lossy(&listed.stderr)
    );
}

/// An iptables rule dropping the daemon's packets to `ip:port`; removed on drop.
struct Cut {
    rule: Vec<String>,
}

impl Cut {
    fn daemon_from(ip: &str, port: u16) -> Self {
        let rule: Vec<String> = [
            "OUTPUT",
            "-o",
            "lo",
            "-p",
            "tcp",
            "-d",
            ip,
            "--dport",
            &port.to_string(),
            "-m",
            "owner",
            "--uid-owner",
            DAEMON_USER,
            "-j",
            "DROP",
        ]
        .iter()
        .map(|s| (*s).to_owned())
        .collect();
        let added = Command::new("iptables").args(["-w", "-A"]).args(&rule).output();
        let added = added.expect("run iptables");
        assert!(
            added.status.success(),
            "iptables -A {}: {}",
            rule.join(" "),
            String::from_utf8_lossy(&added.stderr)
        );
        Self { rule }
    }
}

impl Drop for Cut {
    fn drop(&mut self) {
        let removed = Command::new("iptables").args(["-w", "-D"]).args(&self.rule).output();
        if !removed.is_ok_and(|o| o.status.success()) && !std::thread::panicking() {
            panic!("could not remove iptables rule {}", self.rule.join(" "));
        }
    }
}

/// The pods (`support::pods`), their Redis servers run by the test as root, with the policy
/// every round runs; the daemon runs as `nobody` and reads it.
fn start_pods() -> Pods {
    Pods::start(MAX_LAG_SECS, |port| {
        format!(
            "\
apiVersion: autopilot.redis.io/v1alpha1
kind: RedisPolicy
metadata:
  name: {POLICY}
spec:
  target:
    kubernetes: {{namespace: {NS}, statefulSet: {SET}, port: {port}}}
  sampling:
    interval: 5s
    timeout: {action}s
  scaling:
    minReplicas: 3
    maxReplicas: 3
    metrics:
      - redis: instantaneous_ops_per_sec
        target: 1000000
  health:
    downAfter: {down}s
    confirmWithReplicas: false
    probeInterval: {probe}ms
    probeTimeout: 300ms
    maxFailoversPerHour: 100
    minReplicasToWrite: 1
    minReplicasMaxLag: {MAX_LAG_SECS}s
",
            action = ACTION_TIMEOUT.as_secs(),
            down = DOWN_AFTER.as_secs(),
            probe = PROBE_INTERVAL.as_millis(),
        )
    })
}

/// Whether the fake saw a `Fence` decision Event.
fn fenced(pods: &Pods) -> bool {
    pods.fake.events().iter().any(|e| e["action"] == "Decided" && e["reason"] == "Fence")
}

/// `redis-autopilot run` as `nobody` on the pods' policy, killed on drop.
fn start_daemon(pods: &Pods) -> PodsDaemon {
    let (user, group) = (format!("--reuid={DAEMON_USER}"), format!("--regid={DAEMON_GROUP}"));
    let home = pods.dir.path().display().to_string();
    PodsDaemon::start_as(
        pods,
        "daemon",
        &["setpriv", &user, &group, "--clear-groups", "--"],
        &["--identity", "autopilot-0", "--max-actions-per-hour", "1000"],
        &[("HOME", &home)],
    )
}

/// One acknowledged write: its number, the pod that acknowledged it, and when.
#[derive(Debug, Clone, Copy)]
struct Ack {
    n: u64,
    ordinal: usize,
    at: Instant,
}

/// Writes `PREFIX:N = N` for N = 0, 1, 2... to whichever pod answers as master, staying on a
/// connection as long as it accepts writes, as a client with an open connection does in a
/// partition: the old master gets every write it is willing to acknowledge.
struct Writer {
    prefix: String,
    stop: Arc<AtomicBool>,
    acks: Arc<Mutex<Vec<Ack>>>,
    handle: Option<JoinHandle<()>>,
}

impl Writer {
    fn start(port: u16, prefix: &str) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let acks = Arc::new(Mutex::new(Vec::new()));
        let handle = {
            let (stop, acks, prefix) = (Arc::clone(&stop), Arc::clone(&acks), prefix.to_owned());
            std::thread::spawn(move || {
                let mut n = 0_u64;
                while !stop.load(Ordering::Relaxed) {
                    for (ordinal, ip) in IPS.iter().enumerate() {
                        if info_field_at(ip, port, "role").as_deref() != Some("master") {
                            continue;
                        }
                        let Some(mut c) = connect_at(ip, port, Duration::from_millis(500)) else {
                            continue;
                        };
                        while !stop.load(Ordering::Relaxed) {
                            let key = format!("{prefix}:{n}");
                            if redis::cmd("SET").arg(key).arg(n).query::<()>(&mut c).is_err() {
                                break;
                            }
                            acks.lock().expect("acks").push(Ack { n, ordinal, at: Instant::now() });
                            n += 1;
                        }
                    }
                    std::thread::sleep(Duration::from_millis(5));
                }
            })
        };
        Self { prefix: prefix.to_owned(), stop, acks, handle: Some(handle) }
    }

    fn count_on(&self, ordinal: usize) -> usize {
        self.acks.lock().expect("acks").iter().filter(|a| a.ordinal == ordinal).count()
    }

    fn finish(mut self) -> (String, Vec<Ack>) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(handle) = self.handle.take() {
            handle.join().expect("writer thread");
        }
        let acks = self.acks.lock().expect("acks").clone();
        (self.prefix.clone(), acks)
    }
}

/// The first moment one of `replicas` answers `ROLE` as a master, polled back to back on open
/// connections: the promotion (`REPLICAOF NO ONE`), to within a round trip, which the record
/// (written before it) and `INFO` polls would place tens of milliseconds late.
struct PromotionWatch {
    handle: JoinHandle<Option<(usize, Instant)>>,
}

impl PromotionWatch {
    /// Watches until a replica answers as master, or for `DEADLINE` at most.
    fn start(port: u16, replicas: Vec<usize>) -> Self {
        let handle = std::thread::spawn(move || {
            let mut connections: Vec<(usize, redis::Connection)> = replicas
                .into_iter()
                .map(|o| (o, connect_at(IPS[o], port, Duration::from_secs(1)).expect("connect")))
                .collect();
            let deadline = Instant::now() + DEADLINE;
            while Instant::now() < deadline {
                for (ordinal, c) in &mut connections {
                    let role: Result<Vec<redis::Value>, _> = redis::cmd("ROLE").query(c);
                    let at = Instant::now();
                    let first = role.ok().and_then(|r| r.into_iter().next());
                    if first.is_some_and(|v| {
                        redis::from_redis_value::<String>(v).is_ok_and(|r| r == "master")
                    }) {
                        return Some((*ordinal, at));
                    }
                }
            }
            None
        });
        Self { handle }
    }

    /// The replica that answered as master first, and when.
    fn finish(self) -> Option<(usize, Instant)> {
        self.handle.join().expect("watch thread")
    }
}

/// The acknowledged writes missing from the Redis at `ordinal`.
fn missing(pods: &Pods, ordinal: usize, prefix: &str, acks: &[Ack]) -> Vec<Ack> {
    let mut connection =
        connect_at(IPS[ordinal], pods.port, Duration::from_secs(5)).expect("connect");
    let mut missing = Vec::new();
    for chunk in acks.chunks(1000) {
        let keys: Vec<String> = chunk.iter().map(|a| format!("{prefix}:{}", a.n)).collect();
        let values: Vec<Option<u64>> =
            redis::cmd("MGET").arg(&keys).query(&mut connection).expect("MGET");
        missing.extend(chunk.iter().zip(values).filter(|(a, v)| *v != Some(a.n)).map(|(a, _)| *a));
    }
    missing
}

/// What one round measured.
#[derive(Debug, Default)]
struct Round {
    acks: usize,
    old_after_cut: usize,
    old_after_promotion: usize,
    lost: usize,
    lost_before_cut: usize,
    lost_in_async_window: usize,
    lost_after_promotion: usize,
    detection: Duration,
    guard: Duration,
    two_master_observations: usize,
}

#[test]
fn a_master_cut_off_from_the_daemon_only_is_failed_over_and_the_guard_bounds_the_lost_writes() {
    require_root_and_iptables();
    let started = Instant::now();
    let pods = start_pods();
    let daemon = start_daemon(&pods);
    let log = || daemon.log();
    let mut master = pods.wait_healthy(1, log);
    let mut rounds = Vec::new();
    for round in 0..ROUNDS {
        // Each round fails over once: round r starts at epoch r + 1.
        rounds.push(partition_round(&pods, &daemon.log_path, round, master, round + 1, log));
        master = pods.record().expect("a record").0;
    }
    let total = |f: fn(&Round) -> usize| rounds.iter().map(f).sum::<usize>();
    eprintln!(
        "partition: {ROUNDS} rounds in {:?}, downAfter {DOWN_AFTER:?}, minReplicasMaxLag \
         {MAX_LAG_SECS}s: {} acknowledged writes, {} acknowledged by an old master after the \
         cut ({} after the promotion); lost {} ({} acknowledged before the cut, {} in the async \
         window, {} after the promotion); detection at most {:?}, the guard engaged at most {:?} \
         after the promotion; two masters accepting writes seen at {} checks",
        started.elapsed(),
        total(|r| r.acks),
        total(|r| r.old_after_cut),
        total(|r| r.old_after_promotion),
        total(|r| r.lost),
        total(|r| r.lost_before_cut),
        total(|r| r.lost_in_async_window),
        total(|r| r.lost_after_promotion),
        rounds.iter().map(|r| r.detection).max().unwrap_or_default(),
        rounds.iter().map(|r| r.guard).max().unwrap_or_default(),
        total(|r| r.two_master_observations),
    );
}

/// Cuts the daemon off from `master` (recorded at `epoch`) under a writer and the two-master
/// checker; waits for the failover, the guard on the old master, and, once the cut is removed,
/// its fencing; then counts and bounds the acknowledged writes missing from the new master.
fn partition_round(
    pods: &Pods,
    daemon_log: &Path,
    round: u64,
    master: usize,
    epoch: u64,
    log: impl Fn() -> String + Copy,
) -> Round {
    let checker = Checker::start_at(pods.addrs());
    let writer = Writer::start(pods.port, &format!("r{round}"));
    wait_until(DEADLINE, "the writer writes to the master", log, || {
        (writer.count_on(master) >= 200).then_some(())
    });

    let replicas = (0..IPS.len()).filter(|&o| o != master).collect();
    let watch = PromotionWatch::start(pods.port, replicas);
    let cut = Cut::daemon_from(IPS[master], pods.port);
    let cut_at = Instant::now();
    // 1. The daemon declares the master down after downAfter and promotes a replica.
    let new = wait_until(DEADLINE, "a failover to a replica", log, || {
        let (new, recorded) = pods.record()?;
        (recorded == epoch + 1 && pods.info(new, "role")? == "master").then_some(new)
    });
    let (seen, promoted) = watch.finish().expect("the watch saw the promotion");
    assert_eq!(seen, new, "{}", log());
    let detection = promoted - cut_at;
    // downAfter counts from the master's last served probe, up to a probe interval before
    // the cut.
    assert!(detection + PROBE_INTERVAL >= DOWN_AFTER, "failed over {detection:?} after the cut");
    // The old master, reachable by clients and replicas, stops taking writes.
    let refused = wait_until(DEADLINE, "the old master refuses writes (NOREPLICAS)", log, || {
        let mut c = connect_at(IPS[master], pods.port, Duration::from_millis(500))?;
        match redis::cmd("SET").arg("guard-probe").arg(1).query::<()>(&mut c) {
            Err(e) if e.to_string().contains("NOREPLICAS") => Some(Instant::now()),
            _ => None,
        }
    });
    wait_until(DEADLINE, "the writer writes to the new master", log, || {
        (writer.count_on(new) >= 200).then_some(())
    });
    // The partition outlasts the failover: the daemon's REPLICAOF to the old master has timed
    // out (a heal before that would let the retransmitted command repoint it), so only a fence
    // can end its reign.
    let done = format!("epoch={}", epoch + 1);
    wait_until(DEADLINE, "the daemon's failover done, the old master not repointed", log, || {
        std::fs::read_to_string(daemon_log)
            .ok()?
            .lines()
            .any(|l| {
                l.contains("failover done") && l.contains(&done) && l.contains("not repointed")
            })
            .then_some(())
    });

    // 3. The cut heals: the old master, still a master, is fenced and resyncs.
    drop(cut);
    let healed = Instant::now();
    assert_eq!(pods.wait_healthy(epoch + 1, log), new);
    assert!(fenced(pods), "no Fence decision\n{}", log());
    let (prefix, acks) = writer.finish();
    let violations = checker.finish_timed();

    // 2. Count and classify the acknowledged writes missing from the new master.
    let lost = missing(pods, new, &prefix, &acks);
    let on_old = |a: &&Ack| a.ordinal == master;
    let old_after_cut = acks.iter().filter(on_old).filter(|a| a.at >= cut_at).count();
    let old_after_promotion = acks.iter().filter(on_old).filter(|a| a.at >= promoted).count();
    let last_old_ack = acks.iter().filter(on_old).map(|a| a.at).max().expect("old master acks");
    let before_cut = lost.iter().filter(|a| a.at < cut_at).count();
    let async_start = promoted.checked_sub(ASYNC_WINDOW).expect("an instant");
    let before_window = lost.iter().filter(|a| a.at < async_start).count();
    let in_window = lost.iter().filter(|a| a.at >= async_start && a.at < promoted).count();
    let after_promotion = lost.iter().filter(|a| a.at >= promoted).count();
    let earliest_lost = match lost.iter().map(|a| a.at).min() {
        Some(at) if at < promoted => format!("{:?} before", promoted - at),
        Some(at) => format!("{:?} after", at - promoted),
        None => "none".to_owned(),
    };
    let guard = refused.saturating_duration_since(promoted);
    let last_after = last_old_ack.saturating_duration_since(promoted);
    let windows: Vec<String> = violations
        .iter()
        .map(|(at, _)| {
            let after = |t: Instant| at.checked_duration_since(t);
            match after(promoted) {
                Some(d) => format!("+{d:?}"),
                None => format!("-{:?}", promoted - *at),
            }
        })
        .collect();
    let timeline = daemon_timeline(&log(), epoch + 1);
    eprintln!(
        "round {round}: cut {SET}-{master}; {SET}-{new} promoted {detection:?} after the cut \
         ({timeline}); the old master refused writes {guard:?} after the promotion (its last \
         acknowledged write {last_after:?} after); {} writes acknowledged, {old_after_cut} by the \
         old master after the cut, {old_after_promotion} after the promotion; lost {} \
         ({before_cut} acknowledged before the cut, {in_window} in the {ASYNC_WINDOW:?} async \
         window, {after_promotion} after the promotion; the earliest acknowledged {earliest_lost} the \
         promotion); two masters accepted writes at {} \
         checks, at {windows:?} from the promotion; healed {:?} after the cut",
        acks.len(),
        lost.len(),
        violations.len(),
        healed - cut_at,
    );

    let first_lost: Vec<(u64, usize)> = lost.iter().take(10).map(|a| (a.n, a.ordinal)).collect();
    assert_eq!(before_cut, 0, "acknowledged before the cut and lost: {first_lost:?}\n{}", log());
    assert_eq!(
        before_window,
        0,
        "lost writes acknowledged more than {ASYNC_WINDOW:?} before the promotion: \
         {first_lost:?}\n{}",
        log()
    );
    assert!(lost.iter().all(|a| a.ordinal == master), "lost on another pod: {first_lost:?}");
    // The guard: the old master takes writes for at most GUARD_BOUND after the promotion, so
    // the writes lost are those of that window, however long the partition lasts.
    assert!(guard <= GUARD_BOUND, "the old master took writes {guard:?} after the promotion");
    // Its replicas left it at once: the reachable one was repointed concurrently with the
    // unreachable old master, not after its REPLICAOF timed out.
    assert!(
        guard < ACTION_TIMEOUT / 2,
        "the guard engaged {guard:?} after the promotion: repointing waited for the old master\n{}",
        log()
    );
    assert!(last_after <= GUARD_BOUND, "last write on the old master {last_after:?} after");
    // Two masters took writes only between the promotion and the guard (a check records the
    // time after both writes succeeded: allow one check's length), never after the heal.
    for (at, violation) in &violations {
        assert!(*at >= async_start, "two masters before the promotion: {violation}");
        assert!(
            *at <= refused + Duration::from_secs(1),
            "two masters after the guard: {violation}"
        );
    }
    Round {
        acks: acks.len(),
        old_after_cut,
        old_after_promotion,
        lost: lost.len(),
        lost_before_cut: before_cut,
        lost_in_async_window: in_window,
        lost_after_promotion: after_promotion,
        detection,
        guard,
        two_master_observations: violations.len(),
    }
}

/// The `timeline` of the daemon's `failover done` line at `epoch`, or what is missing.
fn daemon_timeline(log: &str, epoch: u64) -> String {
    log.lines()
        .filter(|l| l.contains("failover done") && l.contains(&format!("epoch={epoch}")))
        .find_map(|l| l.split_once("timeline=").map(|(_, t)| t.trim().to_owned()))
        .unwrap_or_else(|| format!("no failover done line at epoch {epoch}"))
}
