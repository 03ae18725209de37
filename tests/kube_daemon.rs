//! The daemon end to end on Kubernetes: the built `redis-autopilot run` binary with a
//! `target: kubernetes` policy, reaching the in-process fake API server (`support::kube_fake`)
//! through a kubeconfig, as it would from a laptop. The StatefulSet's three pods are real
//! `redis-server`s on 127.0.0.1, .2 and .3 (one port: pods differ by IP), each booted as a
//! replica of itself, as `deploy/examples/redis` boots them, with its `redis.conf`'s write guard.
//!
//! Covered: the daemon takes the Lease; chooses a first master (annotations, role labels,
//! replication); after a `kill -9` of the master, promotes a replica at the next epoch and
//! repoints the other, with Events on the StatefulSet; fences the old master when it comes back
//! misconfigured as a master, never two masters accepting writes; every request it sent is
//! granted by `deploy/base`'s Roles. With two daemons, only the Lease holder acts, and when it
//! dies with the master the standby takes the Lease and fails over.

mod support;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use axum::http::Method;
use prometheus_parse::{Scrape, Value as Metric};
use serde_json::{Value, json};

use support::failover::{Checker, connect_at, info_field_at, wait_until};
use support::kube_fake::{KubeFake, assert_granted_by_roles, assert_listed};
use support::pods::{
    DEADLINE, IPS, LEASE_NS, NS, Pods, PodsDaemon, ROLE_LABEL, SET, lease_name, read_log,
    three_pod_policy,
};

const POLICY: &str = "kube-e2e";
/// Short leases, so a standby takes over within about a second.
const KEYS: usize = 1000;

/// The pods (`support::pods`) with the policy every test here runs: three replicas, a fast
/// probe, and the write guard as `deploy/examples/redis` sets it.
fn start_pods() -> Pods {
    Pods::start(10, policy)
}

/// The policy [`start_pods`] runs, for pods on `port`.
fn policy(port: u16) -> String {
    three_pod_policy(POLICY, port, "")
}

/// `KEYS` keys on the master, acknowledged by `replicas` replicas before returning.
fn write_keys(pods: &Pods, master: usize, replicas: usize) {
    let mut connection = pods.connect(master);
    let mut pipe = redis::pipe();
    for i in 0..KEYS {
        pipe.cmd("SET").arg(format!("k{i}")).arg(i).ignore();
    }
    pipe.query::<()>(&mut connection).expect("write the keys");
    let acked: usize =
        redis::cmd("WAIT").arg(replicas).arg(5000).query(&mut connection).expect("WAIT");
    assert_eq!(acked, replicas, "replicas acknowledging the writes");
}

/// Every key `write_keys` wrote is on pod `ordinal`'s Redis.
fn assert_keys(pods: &Pods, ordinal: usize) {
    let keys: Vec<String> = (0..KEYS).map(|i| format!("k{i}")).collect();
    let values: Vec<Option<usize>> =
        redis::cmd("MGET").arg(&keys).query(&mut pods.connect(ordinal)).expect("MGET");
    let missing = values.iter().enumerate().filter(|(i, v)| **v != Some(*i)).count();
    assert_eq!(missing, 0, "keys missing on {SET}-{ordinal}");
}

/// Events on the StatefulSet as (reportingInstance, action, reason, note).
fn statefulset_events(pods: &Pods) -> Vec<(String, String, String, String)> {
    let field = |e: &Value, f: &str| e[f].as_str().unwrap_or_default().to_owned();
    pods.fake
        .events()
        .iter()
        .map(|e| {
            assert_eq!(e["regarding"]["kind"], "StatefulSet", "{e}");
            assert_eq!(e["regarding"]["name"], SET, "{e}");
            let who = field(e, "reportingInstance");
            (who, field(e, "action"), field(e, "reason"), field(e, "note"))
        })
        .collect()
}

/// Every request sent is granted by deploy/base's Roles and listed in `API_CALLS`;
/// returns the kinds of request made.
fn assert_granted(pods: &Pods) -> Vec<String> {
    assert_listed(&pods.fake);
    let base = Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy/base");
    let kinds = assert_granted_by_roles(&pods.fake, &base);
    kinds.into_iter().map(|(verb, group, resource)| format!("{verb} {group}/{resource}")).collect()
}

/// What the kube tests read from a running daemon.
impl PodsDaemon {
    /// The decisions `/v1/decisions` keeps for the policy, newest first (up to 500).
    fn decisions(&self, runtime: &tokio::runtime::Runtime) -> Vec<Value> {
        let url = format!("http://127.0.0.1:{}/v1/decisions?policy={POLICY}&limit=500", self.http);
        runtime
            .block_on(async { reqwest::get(url).await.ok()?.json::<Vec<Value>>().await.ok() })
            .expect("/v1/decisions answers")
    }

    /// `redis_autopilot_actions_total` of the policy, by (kind, outcome); empty while the
    /// daemon does not answer.
    fn actions(&self, runtime: &tokio::runtime::Runtime) -> Vec<(String, String, f64)> {
        let url = format!("http://127.0.0.1:{}/metrics", self.http);
        let Some(text) =
            runtime.block_on(async { reqwest::get(url).await.ok()?.text().await.ok() })
        else {
            return Vec::new();
        };
        let scrape =
            Scrape::parse(text.lines().map(|l| Ok(l.to_owned()))).expect("/metrics parses");
        scrape
            .samples
            .iter()
            .filter(|s| s.metric == "redis_autopilot_actions_total")
            .filter(|s| s.labels.get("policy") == Some(POLICY))
            .map(|s| {
                let value = match s.value {
                    Metric::Counter(v) | Metric::Untyped(v) => v,
                    ref other => panic!("actions_total: unexpected {other:?}"),
                };
                let label = |name: &str| s.labels.get(name).unwrap_or_default().to_owned();
                (label("kind"), label("outcome"), value)
            })
            .collect()
    }
}

/// Sum of the counts of `outcome` actions.
fn count(actions: &[(String, String, f64)], outcome: &str) -> f64 {
    actions.iter().filter(|(_, o, _)| o == outcome).map(|(_, _, n)| n).sum()
}

#[test]
fn the_daemon_takes_the_lease_bootstraps_fails_over_and_fences_a_statefulset() {
    let mut pods = start_pods();
    // The identity comes from --identity, not from the environment: the Lease and the
    // Events both carry it.
    let daemon = PodsDaemon::start(
        &pods,
        "autopilot-0",
        &["--identity", "autopilot-0"],
        &[("HOSTNAME", "not-the-identity")],
    );
    let log = || daemon.log();
    wait_until(DEADLINE, "the daemon holds the Lease", log, || {
        (pods.holder(POLICY)? == "autopilot-0").then_some(())
    });

    // No pod holds data: the first master is the lowest ordinal, recorded at epoch 1.
    let first = pods.wait_healthy(1, log);
    assert_eq!(first, 0, "{}", pods.describe());
    assert_eq!(pods.masters(), [first]);
    let events = statefulset_events(&pods);
    assert!(
        events.iter().any(|(_, action, reason, note)| {
            (action.as_str(), reason.as_str()) == ("RecordMaster", "MasterRecorded")
                && note == &format!("record {SET}-0 as master at epoch 1")
        }),
        "{events:#?}"
    );

    // Data on the master, on both replicas too; then the master's Redis dies.
    write_keys(&pods, first, 2);
    let checker = Checker::start_at(pods.addrs());
    let killed = Instant::now();
    pods.kill(first);
    let second = pods.wait_healthy(2, log);
    eprintln!("failed over to {SET}-{second} {:?} after the kill", killed.elapsed());
    assert_ne!(second, first);
    assert_eq!(pods.masters(), [second]);
    assert_keys(&pods, second);
    let events = statefulset_events(&pods);
    let posted = |action: &str, reason: &str, note: &str| {
        events.iter().any(|(_, a, r, n)| a == action && r == reason && n.contains(note))
    };
    assert!(
        posted("RecordMaster", "MasterRecorded", &format!("{SET}-{second} as master at epoch 2")),
        "{events:#?}"
    );
    assert!(posted("Decided", "Failover", &format!("master {SET}-0 refuses")), "{events:#?}");
    assert!(
        posted("Promote", "Promoted", &format!("promote {SET}-{second} (REPLICAOF NO ONE)")),
        "{events:#?}"
    );
    let survivor = 3 - first - second;
    let repointed = format!("point {SET}-{survivor} at master {SET}-{second}");
    assert!(posted("Repoint", "Repointed", &repointed), "{events:#?}");

    // The old master comes back misconfigured: a master, empty. It is fenced (made a replica
    // of the recorded master, labelled `fenced`), resyncs, and is labelled a replica again.
    let before = pods.fake.requests().len();
    pods.boot(first, false);
    pods.wait_healthy(2, log);
    assert_keys(&pods, first);
    let fenced_path = format!("/api/v1/namespaces/{NS}/pods/{SET}-{first}");
    let labels: Vec<Value> = pods.fake.requests()[before..]
        .iter()
        .filter(|r| r.method == "PATCH" && r.path == fenced_path)
        .filter_map(|r| r.body.as_ref().map(|b| b["metadata"]["labels"][ROLE_LABEL].clone()))
        .collect();
    assert_eq!(labels, [json!("fenced"), json!("replica")], "{}", log());
    assert!(statefulset_events(&pods).iter().any(|(_, a, r, _)| a == "Decided" && r == "Fence"));
    let violations = checker.finish();
    assert!(violations.is_empty(), "{violations:?}\n{}", log());

    let events = statefulset_events(&pods);
    assert!(events.iter().all(|(who, ..)| who == "autopilot-0"), "{events:#?}");
    assert_eq!(
        assert_granted(&pods),
        [
            "create coordination.k8s.io/leases",
            "create events.k8s.io/events",
            "get apps/statefulsets",
            "get apps/statefulsets/scale",
            "get coordination.k8s.io/leases",
            "list /pods",
            "patch /pods",
            "patch apps/statefulsets",
            "update coordination.k8s.io/leases",
            "watch /pods",
        ]
    );
}

/// A target that cannot be opened when the daemon starts (a 403 on the StatefulSet, say a Role
/// applied late) is tried again without any edit of the policy, since the daemon may hold the
/// Lease meanwhile and no standby would act: once allowed, the daemon chooses a first master.
#[test]
fn a_target_that_cannot_be_opened_at_start_is_tried_again_until_it_opens() {
    let pods = start_pods();
    let statefulset = format!("/namespaces/{NS}/statefulsets/{SET}");
    pods.fake.forbid(Method::GET, &statefulset);
    let daemon = PodsDaemon::start(&pods, "autopilot-0", &["--identity", "autopilot-0"], &[]);
    let log = || daemon.log();
    wait_until(DEADLINE, "the daemon fails to open the target and says so", log, || {
        daemon.log().contains("cannot open the policy's target").then_some(())
    });
    assert_eq!(pods.record(), None, "nothing acted");
    let url = format!("http://127.0.0.1:{}/readyz", daemon.http);
    let readiness = pods.runtime.block_on(async { reqwest::get(url).await.map(|r| r.status()) });
    assert_eq!(
        readiness.expect("/readyz answers"),
        503,
        "not ready while a policy has not started"
    );

    pods.fake.allow(Method::GET, &statefulset);
    assert_eq!(pods.wait_healthy(1, log), 0);
    wait_until(DEADLINE, "ready once the policy runs", log, || {
        let url = format!("http://127.0.0.1:{}/readyz", daemon.http);
        let status = pods.runtime.block_on(async { reqwest::get(url).await.ok() })?.status();
        (status == 200).then_some(())
    });
    assert!(daemon.log().contains("trying again to start the policy"), "{}", daemon.log());
}

/// On call, from a laptop, while the daemon runs: `failover --dry-run` through the kubeconfig
/// changes nothing; `failover --graceful` switches the master over to a replica at the next
/// epoch with no key lost, and the daemon follows the new record (it never switches back).
#[test]
fn failover_from_a_laptop_switches_over_while_the_daemon_runs() {
    let pods = start_pods();
    let daemon = PodsDaemon::start(&pods, "autopilot-0", &["--identity", "autopilot-0"], &[]);
    let log = || daemon.log();
    let first = pods.wait_healthy(1, log);
    write_keys(&pods, first, 2);
    let checker = Checker::start_at(pods.addrs());
    let failover = |extra: &[&str]| {
        let policy = pods.policy_file().display().to_string();
        let args: Vec<&str> =
            ["failover", "--policy", &policy].into_iter().chain(extra.iter().copied()).collect();
        pods.cli(Path::new(env!("CARGO_BIN_EXE_redis-autopilot")), &args, log)
    };

    let planned = failover(&["--graceful", "--dry-run"]);
    assert!(planned.contains("chose"), "{planned}");
    assert_eq!(pods.record(), Some((first, 1)), "a dry run changes nothing");

    let done = failover(&["--graceful"]);
    assert!(done.contains("did switchover"), "{done}");
    let (new, epoch) = pods.record().expect("a record");
    assert_ne!(new, first);
    assert_eq!(epoch, 2);
    assert_eq!(pods.wait_healthy(2, log), new);
    assert_keys(&pods, new);
    // The daemon keeps to the new record: still the same master, at the same epoch, a few
    // rounds and a record-cache lifetime later. Waited for on what the daemon did, not on a
    // sleep a loaded machine could spend idle: three more sampling rounds (three pods each),
    // and two reads of the record from the API server since the switchover (the first sees
    // epoch 2; the second comes a cache lifetime after it).
    pods.fake.clear_requests();
    let rounds_before = daemon.samples(&pods.runtime, POLICY);
    let set_path = format!("/apis/apps/v1/namespaces/{NS}/statefulsets/{SET}");
    let (reads, rounds) = wait_until(DEADLINE, "three rounds and two record reads", log, || {
        let reads =
            pods.fake.requests().iter().filter(|r| r.method == "GET" && r.path == set_path).count();
        let rounds = (daemon.samples(&pods.runtime, POLICY) - rounds_before) / IPS.len() as f64;
        (reads >= 2 && rounds >= 3.0).then_some((reads, rounds))
    });
    eprintln!("after the switchover: {rounds} rounds, {reads} record reads from the API server");
    assert_eq!(pods.record(), Some((new, 2)), "{}", log());
    assert_eq!(pods.masters(), [new], "{}", pods.describe());
    // Issue 14: the switchover the runbook recommends fails no action of the daemon's (a
    // failed one fires `RedisAutopilotActionsFailing`): not even one decided on a record the
    // daemon had cached from before it.
    let failed: Vec<_> = daemon
        .actions(&pods.runtime)
        .into_iter()
        .filter(|(_, outcome, count)| outcome == "failed" && *count > 0.0)
        .collect();
    assert!(failed.is_empty(), "failed actions after a CLI switchover: {failed:?}\n{}", log());
    let conflicts = checker.finish();
    assert!(conflicts.is_empty(), "two masters accepted writes: {conflicts:?}\n{}", log());

    // Issue 14: `status` through the kubeconfig says who is master now, at which epoch, who
    // changed the roles (the CLI's claim), and which daemon leads the policy.
    let policy = pods.policy_file().display().to_string();
    let url = format!("http://127.0.0.1:{}", daemon.http);
    let args = ["status", "--policy", &policy, "--daemon", &url, "--output", "json"];
    // Exit 0: the master serves.
    let text = pods.cli(Path::new(env!("CARGO_BIN_EXE_redis-autopilot")), &args, log);
    let report: serde_json::Value =
        serde_json::from_str(&text).unwrap_or_else(|e| panic!("{e}: {text}"));
    assert_eq!(report["master"]["instance"], format!("{SET}-{new}"), "{report:#}");
    assert_eq!(
        (report["master"]["epoch"].as_u64(), report["master"]["serving"].as_bool()),
        (Some(2), Some(true))
    );
    assert!(
        report["master"]["changedBy"].as_str().is_some_and(|by| by.starts_with("cli:")),
        "{report:#}"
    );
    assert_eq!(report["members"].as_array().map(Vec::len), Some(IPS.len()), "{report:#}");
    assert_eq!(report["daemon"]["view"]["leading"], true, "{report:#}");
    assert_eq!(report["daemon"]["view"]["identity"], "autopilot-0", "{report:#}");
}

/// Writes `w:N = N` for N = 0, 1, 2... to whichever pod answers as master, and keeps every N
/// acknowledged. Following the role rather than the record is the stricter check: a write
/// any master acknowledged counts.
struct RoleWriter {
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    handle: Option<std::thread::JoinHandle<Vec<u64>>>,
}

impl RoleWriter {
    fn start(addrs: Vec<(String, u16)>) -> Self {
        use std::sync::atomic::Ordering;
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let flag = std::sync::Arc::clone(&stop);
        let handle = std::thread::spawn(move || {
            let mut acks = Vec::new();
            let mut n = 0_u64;
            while !flag.load(Ordering::Relaxed) {
                for (host, port) in &addrs {
                    if info_field_at(host, *port, "role").as_deref() != Some("master") {
                        continue;
                    }
                    let Some(mut c) = connect_at(host, *port, Duration::from_millis(500)) else {
                        continue;
                    };
                    while !flag.load(Ordering::Relaxed) {
                        let set =
                            redis::cmd("SET").arg(format!("w:{n}")).arg(n).query::<()>(&mut c);
                        if set.is_err() {
                            break;
                        }
                        acks.push(n);
                        n += 1;
                    }
                }
                std::thread::sleep(Duration::from_millis(5));
            }
            acks
        });
        Self { stop, handle: Some(handle) }
    }

    fn finish(mut self) -> Vec<u64> {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
        self.handle.take().expect("running").join().expect("writer thread")
    }
}

/// Issue 11, through the Kubernetes backend: ten `failover --graceful` runs from a laptop
/// while the daemon runs, under a writer, with the two-master checker throughout.
#[test]
fn ten_switchovers_from_a_laptop_while_the_daemon_runs_lose_no_acknowledged_write() {
    let pods = start_pods();
    let daemon = PodsDaemon::start(&pods, "autopilot-0", &["--identity", "autopilot-0"], &[]);
    let log = || daemon.log();
    let mut master = pods.wait_healthy(1, log);
    let checker = Checker::start_at(pods.addrs());
    let writer = RoleWriter::start(pods.addrs());
    for round in 0..10_u64 {
        let policy = pods.policy_file().display().to_string();
        let args = ["failover", "--graceful", "--policy", &policy];
        let round_log = || format!("round {round}\n{}", log());
        pods.cli(Path::new(env!("CARGO_BIN_EXE_redis-autopilot")), &args, round_log);
        let new = pods.wait_healthy(round + 2, log);
        assert_ne!(new, master, "round {round}");
        master = new;
    }
    let acks = writer.finish();
    assert!(acks.len() > 100, "the writer wrote: {}", acks.len());
    let conflicts = checker.finish();
    assert!(conflicts.is_empty(), "two masters accepted writes: {conflicts:?}\n{}", log());
    // A stale record cache may still suggest finishing the old promotion for a moment, but
    // the record is checked before acting: deferred, never attempted, so no failed action.
    assert!(!log().contains("outcome=\"failed\""), "a failed action:\n{}", log());
    let mut connection = pods.connect(master);
    let mut missing = 0;
    for chunk in acks.chunks(1000) {
        let keys: Vec<String> = chunk.iter().map(|n| format!("w:{n}")).collect();
        let values: Vec<Option<u64>> =
            redis::cmd("MGET").arg(&keys).query(&mut connection).expect("MGET");
        missing += chunk.iter().zip(values).filter(|(n, v)| Some(**n) != *v).count();
    }
    assert_eq!(missing, 0, "of {} acknowledged writes\n{}", acks.len(), log());
    eprintln!(
        "10 switchovers through the kube fake, {} acknowledged writes, none lost",
        acks.len()
    );
}

/// Issue 11 §5: after a daemon restart, a recorded master whose pod is Pending with no IP is
/// not a member. It used to block failover silently (no decision, not even `MasterDown`); it
/// counts as gone, as a deleted pod does.
#[test]
fn a_recorded_master_whose_pod_has_no_ip_is_failed_over_after_a_daemon_restart() {
    let mut pods = start_pods();
    let mut daemon = PodsDaemon::start(&pods, "autopilot-0", &["--identity", "autopilot-0"], &[]);
    let master = pods.wait_healthy(1, || daemon.log());
    write_keys(&pods, master, 2);
    daemon.kill();
    // The node lost the pod: its Redis is gone and the pod is recreated, Pending, no IP yet.
    pods.kill(master);
    let name = format!("{SET}-{master}");
    let mut pod = pods.fake.pod(NS, &name);
    pod["status"] = json!({"phase": "Pending"});
    pods.fake.put_pod(NS, pod);
    let daemon = PodsDaemon::start(&pods, "autopilot-0", &["--identity", "autopilot-0"], &[]);
    let log = || daemon.log();
    let new = pods.wait_healthy(2, log);
    assert_ne!(new, master);
    assert_keys(&pods, new);
    assert!(log().contains("not a member of the deployment"), "{}", log());
}

#[test]
fn only_the_lease_holder_acts_and_the_standby_fails_over_when_it_dies_with_the_master() {
    let mut pods = start_pods();
    let names = ["autopilot-a", "autopilot-b"];
    let mut daemons: Vec<PodsDaemon> = names
        .iter()
        .map(|name| PodsDaemon::start(&pods, name, &[], &[("POD_NAME", name)]))
        .collect();
    let logs: Vec<PathBuf> = daemons.iter().map(|d| d.log_path.clone()).collect();
    let log = || logs.iter().map(|path| read_log(path)).collect::<Vec<_>>().join("\n");
    let leader_name = wait_until(DEADLINE, "a daemon holds the Lease", log, || pods.holder(POLICY));
    let leader = names.iter().position(|n| *n == leader_name).expect("a daemon's identity");
    let standby = 1 - leader;
    let master = pods.wait_healthy(1, log);

    // The standby probes and decides like the leader and drops every action.
    wait_until(DEADLINE, "the standby drops actions", log, || {
        (count(&daemons[standby].actions(&pods.runtime), "dropped") > 0.0).then_some(())
    });
    let standby_actions = daemons[standby].actions(&pods.runtime);
    assert_eq!(count(&standby_actions, "applied"), 0.0, "{standby_actions:?}");
    // Issue 14: a standby is quiet. It decides on every probe and drops every action; its
    // `/v1/decisions` holds each decision once per change, not one record per drop.
    let dropped = wait_until(DEADLINE, "the standby drops 40 actions", log, || {
        let dropped = count(&daemons[standby].actions(&pods.runtime), "dropped");
        (dropped >= 40.0).then_some(dropped)
    });
    let recorded = daemons[standby].decisions(&pods.runtime);
    let no_ops = recorded.iter().filter(|r| r["action"]["outcome"] == "dropped").count();
    assert!(
        no_ops <= 2 * IPS.len() + 2,
        "{no_ops} dropped decisions recorded for {dropped} dropped actions:\n{recorded:#?}"
    );
    let leader_actions = daemons[leader].actions(&pods.runtime);
    assert!(count(&leader_actions, "applied") > 0.0, "{leader_actions:?}");
    let events = statefulset_events(&pods);
    assert!(!events.is_empty(), "the leader posted no Event");
    assert!(events.iter().all(|(who, ..)| who == &leader_name), "{events:#?}");

    // The leader's node dies, and the master's Redis with it. Once the Lease has been held
    // for a lease duration without renewal, the standby takes it and fails over.
    let before = events.len();
    let died = Instant::now();
    daemons[leader].kill();
    pods.kill(master);
    let new = pods.wait_healthy(2, log);
    let took = died.elapsed();
    eprintln!("the standby failed over {took:?} after the leader and the master died");
    assert_ne!(new, master);
    assert_eq!(pods.holder(POLICY).as_deref(), Some(names[standby]));
    let lease = pods.fake.lease(LEASE_NS, &lease_name(POLICY)).expect("the Lease");
    assert_eq!(lease["spec"]["leaseTransitions"], 1, "{lease}");
    // The standby took the Lease only once the leader's last renewal was a lease duration
    // old (both clocks are this machine's), and within a retry period or so after that.
    let (renewed, acquired) = handover(&pods.fake, names[leader], names[standby]);
    let waited = acquired - renewed;
    assert!(waited >= chrono::TimeDelta::seconds(1), "took the Lease {waited} after its renewal");
    assert!(waited < chrono::TimeDelta::seconds(3), "took the Lease {waited} after its renewal");
    // Detection is immediate (refused, every replica's link down): the lease wait is most of
    // the time; well below the 15 s default lease the flags replace.
    assert!(took < Duration::from_secs(6), "{took:?}\n{}", log());

    let events = &statefulset_events(&pods)[before..];
    assert!(events.iter().all(|(who, ..)| who == names[standby]), "{events:#?}");
    let reasons: BTreeSet<&str> = events.iter().map(|(_, _, reason, _)| reason.as_str()).collect();
    for reason in ["Failover", "MasterRecorded", "Promoted"] {
        assert!(reasons.contains(reason), "{reason} missing: {events:#?}");
    }
    let actions = daemons[standby].actions(&pods.runtime);
    assert!(
        actions
            .iter()
            .any(|(kind, outcome, n)| kind == "failover" && outcome == "applied" && *n >= 1.0),
        "{actions:?}"
    );
    assert_granted(&pods);
}

/// The last renewal of the Lease `old` wrote and the takeover (an update: the create `new`
/// tried at start lost to `old`'s) `new` wrote, as the bodies of their requests say.
fn handover(
    fake: &KubeFake,
    old: &str,
    new: &str,
) -> (chrono::DateTime<chrono::FixedOffset>, chrono::DateTime<chrono::FixedOffset>) {
    let lease = |method: &str| -> Vec<Value> {
        let requests = fake.requests().into_iter();
        let writes = requests.filter(|r| r.path.contains("/leases") && r.method == method);
        writes.filter_map(|r| r.body).collect()
    };
    let (updates, mut writes) = (lease("PUT"), lease("POST"));
    writes.extend(updates.iter().cloned());
    let time = |write: &Value, field: &str| {
        let text = write["spec"][field].as_str().expect("a time in the Lease");
        chrono::DateTime::parse_from_rfc3339(text).expect("an RFC 3339 time")
    };
    let holder = |write: &&Value, who: &str| write["spec"]["holderIdentity"] == who;
    let renewed = writes.iter().rfind(|w| holder(w, old)).expect("a renewal by the leader");
    let acquired = updates.iter().find(|w| holder(w, new)).expect("a takeover by the standby");
    (time(renewed, "renewTime"), time(acquired, "acquireTime"))
}

/// Issue 15 through the Kubernetes backend: `snapshot restore --into` run from the daemon's
/// pod (`kubectl exec`, which inherits its `POD_IP`) while the daemon runs. The seed listens at
/// that address on its fixed port, a pod loads the snapshot, is recorded at the next epoch and
/// promoted, and the others resync from it: every key back on every pod.
#[test]
fn restore_into_a_statefulset_from_the_daemons_pod_while_it_runs() {
    let backups = tempfile::tempdir().expect("temp dir");
    let pods = Pods::start(10, |port| {
        format!(
            "{}  snapshots:\n    schedule: '0 0 3 * * *'\n    destination: 'file://{}'\n    \
             source: replicaOrMaster\n    deadline: 2m\n",
            policy(port),
            backups.path().display()
        )
    });
    let daemon = PodsDaemon::start(&pods, "autopilot-0", &["--identity", "autopilot-0"], &[]);
    let log = || daemon.log();
    let first = pods.wait_healthy(1, log);
    write_keys(&pods, first, 2);
    let cli = |args: &[&str]| {
        let output = Command::new(env!("CARGO_BIN_EXE_redis-autopilot"))
            .args(args)
            .arg("--kubeconfig")
            .arg(pods.kubeconfig())
            .arg("--policy")
            .arg(pods.policy_file())
            .env_remove("KUBECONFIG")
            .env("POD_IP", "127.0.0.10")
            .output()
            .expect("run the CLI");
        let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
        let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
        assert!(output.status.success(), "{args:?}: {stdout}\n{stderr}\n{}", log());
        (stdout, stderr)
    };
    let (taken, _) = cli(&["snapshot", "now", "--output", "json"]);
    let taken: Value = serde_json::from_str(&taken).expect("manifest JSON");
    let id = taken[0]["id"].as_str().expect("id").to_owned();
    // The data lost (a FLUSHALL reaches every replica), then restored.
    let mut master = pods.connect(first);
    redis::cmd("FLUSHALL").query::<()>(&mut master).expect("FLUSHALL");
    let acked: usize = redis::cmd("WAIT").arg(2).arg(5000).query(&mut master).expect("WAIT");
    assert_eq!(acked, 2);
    let (report, progress) = cli(&["snapshot", "restore", &id, "--into"]);
    assert!(progress.contains("seed 127.0.0.10:9188 into"), "{progress}");
    let (restored, epoch) = pods.record().expect("a record");
    assert_eq!(epoch, 2, "{report}");
    assert_ne!(restored, first, "a replica is loaded, then promoted: {report}");
    assert_eq!(pods.wait_healthy(2, log), restored);
    for ordinal in 0..IPS.len() {
        wait_until(DEADLINE, "every key on every pod", log, || {
            let keys: usize = redis::cmd("DBSIZE").query(&mut pods.connect(ordinal)).ok()?;
            (keys == KEYS).then_some(())
        });
        assert_keys(&pods, ordinal);
    }
    assert_eq!(pods.masters(), [restored], "{}", pods.describe());
}
