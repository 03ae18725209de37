//! Restore tests (`spec.snapshots.verify`) of a StatefulSet, end to end: the built daemon runs a
//! `kubernetes` policy against the fake API server (`support::kube_fake`) whose three Redis
//! pods are real `redis-server`s on 127.0.0.1-3 (`support::pods`), snapshots to a `file://`
//! store, and the restore test fires on its schedule. The test plays the StatefulSet controller
//! for the verifier (`redis-autopilot/redis-autopilot-verifier`, at 0 replicas): when the
//! daemon scales it to 1, a real `redis-server` starts on 127.0.0.4 (connecting out from that
//! address, as a pod would) and a Ready pod with that IP appears in the fake; at 0 the server
//! is killed and the pod deleted. The daemon's seed listens at its `POD_IP` (127.0.0.11, .12)
//! on port 9188, as in a cluster.
//!
//! - A scheduled restore test passes: the verdict in the manifest (`verified.ok`, the keys),
//!   a `RestoreTestPassed` Event on the StatefulSet, the verifier scaled 0 -> 1 -> 0 (two scale
//!   patches) and its server gone; `snapshot verify ID --restore` run by hand (as in the
//!   daemon's pod) then does the same and its identical verdict is a second Event, not held
//!   back; the fleet untouched (same master, epoch and keys), every request granted by
//!   deploy/base's Roles.
//! - A snapshot whose object was replaced by another valid RDB (the manifest's checks fixed to
//!   match) fails on `key_count`, and the Warning Event says so with both counts.
//! - The verifier's guard on the fake alone: two tests naming one verifier take turns (scales
//!   1, 0, 1, 0); a pod that never gets Ready fails in time and is scaled back; a test dropped
//!   mid-way scales it back from a task and releases it to the next.

mod support;

use std::path::Path;
use std::process::Command;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use redis_autopilot::cluster::kubernetes::KubeClient;
use redis_autopilot::cluster::kubernetes::verifier::{Verifier, VerifierTarget};
use serde_json::{Value, json};

use support::failover::wait_until;
use support::kube_fake::{KubeFake, assert_granted_by_roles, assert_listed, running_pod};
use support::pods::{IPS, LEASE_NS, Pods, PodsDaemon, SET, three_pod_policy};
use support::{Redis, free_port};

const POLICY: &str = "kube-verify";
const VERIFIER: &str = "redis-autopilot-verifier";
/// The verifier pod's address: a loopback IP no fleet pod uses.
const VERIFIER_IP: &str = "127.0.0.4";
/// How long a scheduled restore test may take to show, from its firing (15 s ahead) on.
const VERDICT_DEADLINE: Duration = Duration::from_secs(120);

/// The policy: the pods' StatefulSet, three replicas, snapshots to `backups` (a daily firing
/// far ahead: the test takes them with `snapshot now`), restore tests on `verify` into the
/// verifier `verifier` names (the fields inside `verifier: {...}`).
fn policy(port: u16, backups: &Path, verify: &str, verifier: &str) -> String {
    let snapshots = format!(
        "  snapshots:
    schedule: '0 0 3 * * *'
    destination: 'file://{}'
    source: replicaOrMaster
    deadline: 1m
    verify: {{schedule: '{verify}', verifier: {{{verifier}}}}}
",
        backups.display()
    );
    three_pod_policy(POLICY, port, &snapshots)
}

/// A cron line firing once a day, `after` from now (UTC): restore tests may fire at most every
/// 5 minutes, so a test's firing is one a few seconds ahead.
fn daily_cron_in(after: Duration) -> String {
    use chrono::Timelike as _;
    let at = chrono::Utc::now() + chrono::Duration::from_std(after).expect("small");
    format!("{} {} {} * * *", at.second(), at.minute(), at.hour())
}

/// A port free on the verifier's address.
fn verifier_port() -> u16 {
    loop {
        let port = free_port();
        if std::net::TcpListener::bind((VERIFIER_IP, port)).is_ok() {
            return port;
        }
    }
}

/// The verifier's pod as the StatefulSet controller and the kubelet leave it: labelled with
/// its pod name, Running, Ready, at `VERIFIER_IP`.
fn verifier_pod() -> Value {
    let mut pod = running_pod(LEASE_NS, VERIFIER, 0, VERIFIER_IP);
    pod["metadata"]["labels"]["statefulset.kubernetes.io/pod-name"] =
        json!(format!("{VERIFIER}-0"));
    pod["status"]["conditions"] = json!([{"type": "Ready", "status": "True"}]);
    pod
}

/// The verifier's `spec.replicas` in the fake.
fn verifier_replicas(fake: &KubeFake) -> u64 {
    fake.statefulset(LEASE_NS, VERIFIER)["spec"]["replicas"].as_u64().unwrap_or(0)
}

/// Plays the StatefulSet controller for the verifier until `stop`: a real redis-server and a
/// Ready pod while it asks for 1 replica, neither at 0. Each start and stop is logged in `log`.
fn play_verifier_controller(
    fake: &KubeFake,
    port: u16,
    stop: &AtomicBool,
    log: &Mutex<Vec<String>>,
) {
    let mut redis: Option<Redis> = None;
    while !stop.load(Ordering::SeqCst) {
        match (verifier_replicas(fake), redis.is_some()) {
            (1, false) => {
                // Its replication link connects out from the pod's address, as in a pod.
                let args = ["--protected-mode", "no", "--bind-source-addr", VERIFIER_IP];
                redis = Some(Redis::start_at(VERIFIER_IP, port, &args));
                fake.put_pod(LEASE_NS, verifier_pod());
                log.lock().expect("log").push("started".into());
            }
            (0, true) => {
                fake.delete_pod(LEASE_NS, &format!("{VERIFIER}-0"));
                drop(redis.take());
                log.lock().expect("log").push("stopped".into());
            }
            _ => {}
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Stops the controller when the test ends, passed or failed: the scope joins its thread
/// before a failure propagates.
struct StopOnDrop<'a>(&'a AtomicBool);

impl Drop for StopOnDrop<'_> {
    fn drop(&mut self) {
        self.0.store(true, Ordering::SeqCst);
    }
}

/// Whether something answers on the verifier's Redis port.
fn verifier_listening(port: u16) -> bool {
    std::net::TcpStream::connect_timeout(
        &(VERIFIER_IP.parse::<std::net::IpAddr>().expect("ip"), port).into(),
        Duration::from_millis(200),
    )
    .is_ok()
}

/// `redis-autopilot run` on the pods' policy with `POD_IP` = `pod_ip`, killed on drop. The
/// verifier's namespace defaults to the daemon's own (`POD_NAMESPACE`).
fn start_daemon(pods: &Pods, pod_ip: &str) -> PodsDaemon {
    PodsDaemon::start(pods, "autopilot", &["--identity", "autopilot-0"], &[("POD_IP", pod_ip)])
}

/// `KEYS` keys `k{from}`.. `k{to - 1}` on the master, acknowledged by both replicas.
fn write_keys(pods: &Pods, master: usize, from: usize, to: usize) {
    let mut connection = pods.connect(master);
    let mut pipe = redis::pipe();
    for i in from..to {
        pipe.cmd("SET").arg(format!("k{i}")).arg(i).ignore();
    }
    pipe.query::<()>(&mut connection).expect("write the keys");
    let acked: usize = redis::cmd("WAIT").arg(2).arg(5000).query(&mut connection).expect("WAIT");
    assert_eq!(acked, 2, "replicas acknowledging the writes");
}

/// `snapshot now` through the CLI with the fake's kubeconfig: the new manifest.
fn snapshot_now(pods: &Pods) -> Value {
    let policy = pods.policy_file().display().to_string();
    let args = ["snapshot", "now", "--output", "json", "--policy", &policy];
    let text = pods.cli(Path::new(env!("CARGO_BIN_EXE_redis-autopilot")), &args, String::new);
    let taken: Value = serde_json::from_str(&text).expect("manifest JSON");
    taken[0].clone()
}

fn read_json(path: &Path) -> Value {
    serde_json::from_str(&std::fs::read_to_string(path).expect("read")).expect("JSON")
}

/// Events on the StatefulSet with action `RestoreTest`, as (type, reason, note).
fn verdict_events(fake: &KubeFake) -> Vec<(String, String, String)> {
    let field = |e: &Value, f: &str| e[f].as_str().unwrap_or_default().to_owned();
    fake.events()
        .iter()
        .filter(|e| e["action"] == "RestoreTest")
        .map(|e| {
            assert_eq!(e["regarding"]["kind"], "StatefulSet", "{e}");
            assert_eq!(e["regarding"]["name"], SET, "{e}");
            (field(e, "type"), field(e, "reason"), field(e, "note"))
        })
        .collect()
}

/// The bodies of the verifier's scale patches, as the replicas each asked for.
fn verifier_scales(fake: &KubeFake) -> Vec<u64> {
    let path = format!("/apis/apps/v1/namespaces/{LEASE_NS}/statefulsets/{VERIFIER}/scale");
    fake.requests()
        .into_iter()
        .filter(|r| r.method == "PATCH" && r.path == path)
        .map(|r| r.body.and_then(|b| b["spec"]["replicas"].as_u64()).expect("replicas"))
        .collect()
}

/// What the fleet looks like: the record and every pod's key count.
fn fleet(pods: &Pods) -> (Option<(usize, u64)>, Vec<usize>, Vec<usize>) {
    let keys = (0..IPS.len())
        .map(|o| redis::cmd("DBSIZE").query(&mut pods.connect(o)).expect("DBSIZE"))
        .collect();
    (pods.record(), pods.masters(), keys)
}

/// Everything one case needs: the pods with the verifier StatefulSet at 0, the daemon, its
/// first master with `keys` keys written in two steps (a snapshot taken after the first
/// `first` when `first` is set), the verifier's controller played beside the test.
struct Case {
    pods: Pods,
    backups: tempfile::TempDir,
    port: u16,
}

fn start_case(verifier: &'static str) -> Case {
    let backups = tempfile::tempdir().expect("temp dir");
    let later = daily_cron_in(Duration::from_secs(12 * 3600));
    let port = verifier_port();
    let fields = verifier.replace("PORT", &port.to_string());
    let pods = Pods::start(10, |redis_port| policy(redis_port, backups.path(), &later, &fields));
    pods.fake.add_statefulset(LEASE_NS, VERIFIER, 0, json!({}));
    Case { pods, backups, port }
}

/// Turns the restore test on: its schedule a few seconds ahead (the daemon reloads the edited
/// policy file within about 2 s).
fn schedule_restore_test_soon(case: &Case, verifier: &str) {
    let pods = &case.pods;
    let fields = verifier.replace("PORT", &case.port.to_string());
    let soon = daily_cron_in(Duration::from_secs(15));
    std::fs::write(pods.policy_file(), policy(pods.port, case.backups.path(), &soon, &fields))
        .expect("rewrite the policy");
}

/// The manifest of `id` once its restore test's verdict is in it.
fn wait_verdict(case: &Case, id: &str, log: impl Fn() -> String) -> Value {
    let path = case.backups.path().join(POLICY).join(format!("{id}.json"));
    wait_until(VERDICT_DEADLINE, "a restore test's verdict in the manifest", log, || {
        let manifest = read_json(&path);
        (!manifest["verified"].is_null()).then_some(manifest)
    })
}

#[test]
fn a_scheduled_restore_test_of_a_statefulset_passes_in_the_verifier_and_leaves_the_fleet_alone() {
    // The verifier named by its port alone: namespace and name default (POD_NAMESPACE).
    let verifier = "port: PORT";
    let case = start_case(verifier);
    let pods = &case.pods;
    let daemon = start_daemon(pods, "127.0.0.11");
    let log = || daemon.log();
    let (stop, started) = (AtomicBool::new(false), Mutex::new(Vec::new()));
    std::thread::scope(|scope| {
        scope.spawn(|| play_verifier_controller(&pods.fake, case.port, &stop, &started));
        let _stop = StopOnDrop(&stop);
        let master = pods.wait_healthy(1, log);
        write_keys(pods, master, 0, 1000);
        let taken = snapshot_now(pods);
        let id = taken["id"].as_str().expect("id").to_owned();
        assert_eq!(taken["keyspace"]["0"], 1000, "{taken:#}");
        let before = fleet(pods);
        pods.fake.clear_requests();

        schedule_restore_test_soon(&case, verifier);
        let manifest = wait_verdict(&case, &id, log);
        let verified = &manifest["verified"];
        assert_eq!(verified["ok"], true, "{manifest:#}\n{}", log());
        assert_eq!(verified["keys"], 1000, "{manifest:#}");

        // Posted after the manifest is written.
        let events = wait_until(Duration::from_secs(10), "the verdict's Event", log, || {
            let events = verdict_events(&pods.fake);
            (!events.is_empty()).then_some(events)
        });
        assert_eq!(events.len(), 1, "{events:?}");
        let (kind, reason, note) = &events[0];
        assert_eq!((kind.as_str(), reason.as_str()), ("Normal", "RestoreTestPassed"), "{note}");
        assert!(note.contains(&id) && note.contains("1000 keys loaded, 1000 expected"), "{note}");

        // Scaled to 1 for the test and back to 0 before the verdict was written; the
        // controller then stopped its server.
        assert_eq!(verifier_scales(&pods.fake), [1, 0], "{}", log());
        assert_eq!(verifier_replicas(&pods.fake), 0);
        wait_until(Duration::from_secs(10), "the verifier's server gone", log, || {
            (started.lock().expect("log").as_slice() == ["started", "stopped"]
                && !verifier_listening(case.port))
            .then_some(())
        });
        // The same test by hand, from the daemon's pod (`kubectl exec`: its POD_IP and
        // POD_NAMESPACE): the same verdict, posted again as an Event, not held back as a repeat.
        let output = Command::new(env!("CARGO_BIN_EXE_redis-autopilot"))
            .args(["snapshot", "verify", &id, "--restore", "--kubeconfig"])
            .arg(pods.kubeconfig())
            .arg("--policy")
            .arg(pods.policy_file())
            .env_remove("KUBECONFIG")
            .env("POD_IP", "127.0.0.13")
            .env("POD_NAMESPACE", LEASE_NS)
            .output()
            .expect("run the CLI");
        let stdout = String::from_utf8_lossy(&output.stdout);
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(output.status.success(), "verify --restore: {stdout}\n{stderr}");
        assert!(stdout.contains("restorable: 1000 keys loaded (1000 expected)"), "{stdout}");
        let again = verdict_events(&pods.fake);
        assert_eq!(again.len(), 2, "{again:?}");
        assert_eq!(again[1], events[0], "the same verdict, posted again");
        assert_eq!(verifier_scales(&pods.fake), [1, 0, 1, 0]);
        wait_until(Duration::from_secs(10), "the verifier's server gone again", log, || {
            (started.lock().expect("log").len() == 4 && !verifier_listening(case.port))
                .then_some(())
        });

        // No fleet member was touched: same master, epoch, roles and keys.
        assert_eq!(fleet(pods), before, "{}", pods.describe());
        assert_eq!(before.2, [1000, 1000, 1000]);
        // Every request the daemon sent for it is one deploy/base's Roles grant.
        assert_listed(&pods.fake);
        let base = Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy/base");
        let kinds = assert_granted_by_roles(&pods.fake, &base);
        assert!(kinds.contains(&("patch".into(), "apps".into(), "statefulsets/scale".into())));
        eprintln!(
            "restore test of {id} in the verifier: {}",
            log()
                .lines()
                .filter(|l| l.contains("restore test") || l.contains("verifier"))
                .collect::<Vec<_>>()
                .join("\n")
        );
    });
}

#[test]
fn a_snapshot_of_a_statefulset_replaced_by_another_valid_rdb_fails_its_restore_test_on_key_count() {
    let verifier = "namespace: redis-autopilot, name: redis-autopilot-verifier, port: PORT";
    let case = start_case(verifier);
    let pods = &case.pods;
    let daemon = start_daemon(pods, "127.0.0.12");
    let log = || daemon.log();
    let (stop, started) = (AtomicBool::new(false), Mutex::new(Vec::new()));
    std::thread::scope(|scope| {
        scope.spawn(|| play_verifier_controller(&pods.fake, case.port, &stop, &started));
        let _stop = StopOnDrop(&stop);
        let master = pods.wait_healthy(1, log);
        // Two snapshots: 300 keys, then 1000; the newest's object is then replaced by the
        // other's, its manifest's checks fixed to match: only a restore test can tell.
        write_keys(pods, master, 0, 300);
        let other = snapshot_now(pods);
        write_keys(pods, master, 300, 1000);
        let real = snapshot_now(pods);
        let id = real["id"].as_str().expect("id").to_owned();
        assert_ne!(other["id"], real["id"]);
        let folder = case.backups.path().join(POLICY);
        support::seed::replace_object_with_another_valid_rdb(&folder, &real, &other);
        let before = fleet(pods);

        schedule_restore_test_soon(&case, verifier);
        let manifest = wait_verdict(&case, &id, log);
        let verified = &manifest["verified"];
        assert_eq!(verified["ok"], false, "{manifest:#}");
        assert_eq!(verified["reason"], "key_count", "{manifest:#}\n{}", log());
        assert_eq!(verified["keys"], 300, "{manifest:#}");

        // Posted after the manifest is written.
        let events = wait_until(Duration::from_secs(10), "the verdict's Event", log, || {
            let events = verdict_events(&pods.fake);
            (!events.is_empty()).then_some(events)
        });
        assert_eq!(events.len(), 1, "{events:?}");
        let (kind, reason, note) = &events[0];
        assert_eq!((kind.as_str(), reason.as_str()), ("Warning", "RestoreTestFailed"), "{note}");
        assert!(note.contains("(key_count)") && note.contains(&id), "{note}");
        assert!(note.contains("300 keys loaded, 1000 expected"), "{note}");

        assert_eq!(verifier_replicas(&pods.fake), 0);
        wait_until(Duration::from_secs(10), "the verifier's server gone", log, || {
            (started.lock().expect("log").as_slice() == ["started", "stopped"]
                && !verifier_listening(case.port))
            .then_some(())
        });
        assert_eq!(fleet(pods), before, "{}", pods.describe());
    });
}

/// The verifier's guard on the fake alone (no Redis): its pod appears Ready while it asks for
/// 1 replica and goes at 0, as `play_verifier_controller` does, from a task.
async fn play_pods_only(fake: std::sync::Arc<KubeFake>) {
    let mut running = false;
    loop {
        match (verifier_replicas(&fake), running) {
            (1, false) => {
                fake.put_pod(LEASE_NS, verifier_pod());
                running = true;
            }
            (0, true) => {
                fake.delete_pod(LEASE_NS, &format!("{VERIFIER}-0"));
                running = false;
            }
            _ => {}
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// The fake with the verifier at 0, a client for it, and the verifier as a policy names it.
async fn verifier_fake() -> (std::sync::Arc<KubeFake>, kube::Client, VerifierTarget) {
    let fake = std::sync::Arc::new(KubeFake::start().await);
    fake.add_statefulset(LEASE_NS, VERIFIER, 0, json!({}));
    let client =
        KubeClient::from_config(fake.config()).expect("client").get().await.expect("client");
    let target = VerifierTarget { namespace: LEASE_NS.into(), name: VERIFIER.into(), port: 6379 };
    (fake, client, target)
}

/// Two restore tests naming one verifier (two policies) never use it at once: the second
/// scales it up only after the first scaled it back to 0 and its pod went.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_restore_tests_naming_one_verifier_take_turns() {
    let (fake, client, target) = verifier_fake().await;
    let controller = tokio::spawn(play_pods_only(fake.clone()));
    let one = || async {
        let verifier = Verifier::start(client.clone(), &target, Duration::from_secs(10))
            .await
            .expect("the verifier starts");
        let host = verifier.endpoint().host.clone();
        verifier.discard().await;
        host
    };
    let (a, b) = tokio::join!(one(), one());
    controller.abort();
    assert_eq!((a.as_str(), b.as_str()), (VERIFIER_IP, VERIFIER_IP));
    assert_eq!(verifier_scales(&fake), [1, 0, 1, 0], "one at a time");
    assert_eq!(verifier_replicas(&fake), 0);
}

/// A verifier whose pod never becomes Ready fails within the deadline, saying what it saw,
/// and is scaled back to 0.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_verifier_whose_pod_never_gets_ready_fails_in_time_and_is_scaled_back() {
    let (fake, client, target) = verifier_fake().await;
    let error = Verifier::start(client, &target, Duration::from_secs(1))
        .await
        .err()
        .expect("no pod: no verifier");
    let text = redis_autopilot::errors::chain(&error);
    assert!(
        text.contains("was not Running and Ready") && text.contains("not created yet"),
        "{text}"
    );
    assert_eq!(verifier_scales(&fake), [1, 0]);
}

/// A restore test cancelled with the verifier up (the daemon shutting down, a policy removed)
/// scales it back to 0 from a task, and releases it to the next test.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_verifier_dropped_mid_test_is_scaled_back_and_released() {
    let (fake, client, target) = verifier_fake().await;
    let controller = tokio::spawn(play_pods_only(fake.clone()));
    let deadline = Duration::from_secs(10);
    let verifier = Verifier::start(client.clone(), &target, deadline).await.expect("start");
    drop(verifier);
    // The next test gets it once the dropped one's scale-down went out.
    let next = Verifier::start(client, &target, deadline).await.expect("the next test starts");
    next.discard().await;
    controller.abort();
    assert_eq!(verifier_scales(&fake), [1, 0, 1, 0]);
}
