//! RedisPolicy objects (issue 14), end to end: a daemon on `run --resources` against the fake
//! API server, whose StatefulSet's pods are real redis-servers. An invalid object is said in
//! its status (`Valid=False`, `check`'s words) and in one Event, and is never acted on; fixed,
//! it runs; broken again, its running version keeps running. The status follows a failover
//! (a kill -9 of the master) and a scale, and the kubectl plugin (`kubectl-autopilot`, the
//! binary under that name) shows it, pauses and resumes the policy, and switches over.

mod support;

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde_json::{Value, json};
use support::failover::wait_until;
use support::kube_fake::assert_granted_by_roles;
use support::pods::{LEASE_NS, NS, Pods, PodsDaemon, SET, three_pod_policy};

const POLICY: &str = "sessions";
/// Generous, for a loaded machine: every wait ends on the event.
const DEADLINE: Duration = Duration::from_secs(30);

/// The `spec` of [`three_pod_policy`] with `more`, as the JSON a RedisPolicy object holds.
fn spec(port: u16, more: &str) -> Value {
    let text = three_pod_policy(POLICY, port, more);
    let document: Value = serde_saphyr::from_str(&text).expect("the policy is YAML");
    document["spec"].clone()
}

fn start() -> Pods {
    Pods::start(10, |port| three_pod_policy(POLICY, port, ""))
}

/// The object's status, or `Null`.
fn status(pods: &Pods) -> Value {
    pods.fake.policy(LEASE_NS, POLICY).map(|o| o["status"].clone()).unwrap_or(Value::Null)
}

fn condition(status: &Value, kind: &str) -> Value {
    status["conditions"]
        .as_array()
        .and_then(|all| all.iter().find(|c| c["type"] == kind).cloned())
        .unwrap_or(Value::Null)
}

/// Waits until the status satisfies `check`; returns it.
fn wait_status(
    pods: &Pods,
    what: &str,
    log: impl Fn() -> String,
    check: impl Fn(&Value) -> bool,
) -> Value {
    wait_until(
        DEADLINE,
        what,
        || format!("status {:#}\n{}", status(pods), log()),
        || {
            let status = status(pods);
            check(&status).then_some(status)
        },
    )
}

/// The status writes the fake received.
fn status_writes(pods: &Pods) -> usize {
    let path = format!("/redispolicies/{POLICY}/status");
    pods.fake.requests().iter().filter(|r| r.method != "GET" && r.path.ends_with(&path)).count()
}

/// The Events posted on the RedisPolicy object.
fn policy_events(pods: &Pods) -> Vec<Value> {
    pods.fake
        .events()
        .into_iter()
        .filter(|e| e["regarding"]["kind"] == "RedisPolicy" && e["regarding"]["name"] == POLICY)
        .collect()
}

#[test]
fn an_invalid_resource_is_said_in_its_status_and_an_event_and_never_acted_on() {
    let pods = start();
    let mut invalid = spec(pods.port, "");
    invalid["scaling"]["maxReplicas"] = json!(0);
    invalid["scaling"]["stabilisation"] = json!("1m");
    pods.fake.put_policy(LEASE_NS, POLICY, invalid.clone());
    let daemon = PodsDaemon::on_resources(&pods, "autopilot-0", &["--identity", "autopilot-0"]);
    let log = || daemon.log();

    let said = wait_status(&pods, "Valid=False on the invalid object", log, |s| {
        condition(s, "Valid")["status"] == "False"
    });
    assert_eq!(said["phase"], "Invalid", "{said:#}");
    assert_eq!(said["observedGeneration"], 1, "{said:#}");
    let valid = condition(&said, "Valid");
    let message = valid["message"].as_str().expect("a message");
    // `check`'s words: `field.path: message`, one problem per line, no line numbers of a text
    // the author never wrote.
    assert!(message.contains("spec.scaling.maxReplicas: "), "{message}");
    assert!(message.contains("spec.scaling.stabilisation: "), "the misspelt field: {message}");
    assert_eq!(valid["reason"], "InvalidSpec");
    let events = wait_until(DEADLINE, "an Event on the object", log, || {
        let events = policy_events(&pods);
        (!events.is_empty()).then_some(events)
    });
    assert_eq!(events[0]["type"], "Warning");
    assert_eq!(events[0]["reason"], "InvalidSpec");
    assert!(events[0]["note"].as_str().unwrap_or_default().contains("spec.scaling.maxReplicas"));
    // Never acted on: no record, no role label, no write to the StatefulSet or its scale.
    assert_eq!(pods.record(), None, "{}", log());
    assert_eq!(pods.label(0), None);
    let writes: Vec<_> = pods
        .fake
        .requests()
        .into_iter()
        .filter(|r| r.method != "GET" && r.path.contains("/statefulsets/"))
        .collect();
    assert!(writes.is_empty(), "{writes:?}");
    assert_eq!(policy_events(&pods).len(), 1, "the same problem is no news");

    // Fixed, it runs: the first master recorded, and the status says so.
    pods.fake.put_policy(LEASE_NS, POLICY, spec(pods.port, ""));
    let master = pods.wait_healthy(1, log);
    let healthy = wait_status(&pods, "a healthy status at generation 2", log, |s| {
        s["phase"] == "Healthy" && s["observedGeneration"] == 2
    });
    assert_eq!(healthy["master"], format!("{SET}-{master}"), "{healthy:#}");
    assert_eq!(healthy["epoch"], 1);
    assert_eq!(healthy["replicas"], json!({"desired": 3, "current": 3, "ready": 3}));
    assert_eq!(condition(&healthy, "Valid")["status"], "True");
    assert_eq!(condition(&healthy, "MasterAvailable")["status"], "True");
    assert_eq!(condition(&healthy, "ScalingActive")["status"], "True");
    assert_eq!(condition(&healthy, "BackedUp")["reason"], "NotConfigured");

    // Broken again: said, and the running version keeps running (it still fails over).
    pods.fake.put_policy(LEASE_NS, POLICY, invalid);
    let broken = wait_status(&pods, "Valid=False at generation 3", log, |s| {
        condition(s, "Valid")["status"] == "False" && s["observedGeneration"] == 3
    });
    assert_eq!(broken["phase"], "Invalid");
    assert_eq!(broken["master"], format!("{SET}-{master}"), "the running version's view stays");
    wait_until(DEADLINE, "one Event for the new problem", log, || {
        (policy_events(&pods).len() == 2).then_some(())
    });
    let mut pods = pods;
    pods.kill(master);
    let after = pods.wait_healthy(2, log);
    assert_ne!(after, master);

    // Everything the daemon asked of the API server, the shipped Roles grant.
    assert_granted_by_roles(
        &pods.fake,
        Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/deploy/base")),
    );
}

/// `kubectl-autopilot`: the binary under the plugin's name, in a directory of the test's own.
fn plugin(dir: &Path) -> PathBuf {
    let link = dir.join("kubectl-autopilot");
    if !link.exists() {
        std::os::unix::fs::symlink(env!("CARGO_BIN_EXE_redis-autopilot"), &link)
            .expect("link the plugin");
    }
    link
}

/// `kubectl autopilot ARGS -n redis-autopilot --kubeconfig ...`: its stdout, or a failure
/// with both streams.
fn kubectl_autopilot(pods: &Pods, args: &[&str], log: impl Fn() -> String) -> String {
    let args: Vec<&str> = args.iter().copied().chain(["-n", LEASE_NS]).collect();
    pods.cli(&plugin(pods.dir.path()), &args, log)
}

#[test]
fn the_status_follows_a_failover_and_a_scale_and_the_plugin_shows_pauses_and_switches_over() {
    let mut pods = start();
    let backups = pods.dir.path().join("backups");
    // Snapshots on a yearly schedule, and one now when the `Backup` alert fires.
    let more = format!(
        "  snapshots:\n    schedule: '0 0 0 1 1 *'\n    destination: 'file://{}'\n    \
         source: replicaOrMaster\n  alerts:\n    - {{alertname: Backup, action: snapshot}}\n",
        backups.display()
    );
    pods.fake.put_policy(LEASE_NS, POLICY, spec(pods.port, &more));
    let daemon = PodsDaemon::on_resources(
        &pods,
        "autopilot-0",
        &["--identity", "autopilot-0", "--webhook-insecure-no-token"],
    );
    let log = || daemon.log();
    let first = pods.wait_healthy(1, log);
    wait_status(&pods, "healthy at epoch 1", log, |s| s["phase"] == "Healthy" && s["epoch"] == 1);

    // Written on change only: once the status says the steady state (the scaling rounds
    // hold), three more sampling rounds of a steady fleet (new metric values every round)
    // bring not one status write.
    wait_status(&pods, "the scaling rounds holding", log, |s| {
        condition(s, "ScalingActive")["message"] == "holding at 3 replicas"
    });
    let writes = status_writes(&pods);
    let settled = daemon.samples(&pods.runtime, POLICY);
    wait_until(DEADLINE, "three more sampling rounds", log, || {
        (daemon.samples(&pods.runtime, POLICY) >= settled + 9.0).then_some(())
    });
    assert_eq!(status_writes(&pods), writes, "a steady policy's status was rewritten\n{}", log());

    // A failover: the status names the new master, the epoch, and why, with its duration.
    pods.kill(first);
    let second = pods.wait_healthy(2, log);
    let failed_over = wait_status(&pods, "the failover in the status", log, |s| {
        s["epoch"] == 2 && s["lastFailover"].is_object()
    });
    assert_eq!(failed_over["master"], format!("{SET}-{second}"));
    let last = &failed_over["lastFailover"];
    assert!(last["what"].as_str().unwrap_or_default().contains("failover to"), "{last:#}");
    assert!(!last["reason"].as_str().unwrap_or_default().is_empty(), "{last:#}");
    assert!(last["durationSeconds"].as_f64().is_some_and(|s| s > 0.0), "{last:#}");
    pods.boot(first, true);
    pods.wait_healthy(2, log);

    // The plugin's status page: the resource's phase and the master, by name.
    let page = kubectl_autopilot(
        &pods,
        &["status", POLICY, "--daemon", &format!("http://127.0.0.1:{}", daemon.http)],
        log,
    );
    assert!(page.contains(&format!("Resource: redispolicy {LEASE_NS}/{POLICY}: phase ")), "{page}");
    assert!(page.contains(&format!("Master: {SET}-{second} at epoch 2 (serving)")), "{page}");
    assert!(page.contains("leads it"), "{page}");
    println!("kubectl autopilot status {POLICY}:\n{page}");

    // A snapshot the daemon takes (for an alert): the status names it, its size and why.
    let alert = r#"{"version":"4","groupKey":"g","status":"firing","receiver":"autopilot",
        "alerts":[{"status":"firing","labels":{"alertname":"Backup"},"annotations":{},
                   "fingerprint":"f1"}]}"#;
    let url = format!("http://127.0.0.1:{}/v1/alerts", daemon.http);
    let posted = pods.runtime.block_on(async {
        let client = reqwest::Client::new();
        client.post(url).header("content-type", "application/json").body(alert).send().await
    });
    assert_eq!(posted.expect("POST /v1/alerts").status().as_u16(), 200, "{}", log());
    let backed_up = wait_status(&pods, "the snapshot in the status", log, |s| {
        s["lastSnapshot"].is_object() && condition(s, "BackedUp")["status"] == "True"
    });
    let snapshot = &backed_up["lastSnapshot"];
    assert_eq!(snapshot["reason"], "alert Backup", "{snapshot:#}");
    assert!(snapshot["bytes"].as_u64().is_some_and(|b| b > 0), "{snapshot:#}");
    assert_eq!(snapshot["verified"], false);
    // And one now, by the plugin, by name: another snapshot in the policy's destination.
    let taken = kubectl_autopilot(&pods, &["snapshot", "now", POLICY, "--output", "json"], log);
    let manifests: Value = serde_json::from_str(&taken).expect("the manifest as JSON");
    let id = manifests[0]["id"].as_str().expect("an id");
    assert_ne!(Some(id), snapshot["id"].as_str(), "{taken}");
    assert!(backups.join(POLICY).exists(), "{}", backups.display());

    // A scale: four wanted, the StatefulSet asked for four, the status says so and why.
    let mut four = spec(pods.port, &more);
    four["scaling"]["minReplicas"] = json!(4);
    four["scaling"]["maxReplicas"] = json!(4);
    pods.fake.put_policy(LEASE_NS, POLICY, four);
    let scaled = wait_status(&pods, "the scale in the status", log, |s| s["lastScale"].is_object());
    assert_eq!(scaled["lastScale"]["what"], "scale 3 -> 4", "{scaled:#}");
    assert_eq!(scaled["replicas"]["desired"], 4, "{scaled:#}");
    assert_eq!(pods.fake.statefulset(NS, SET)["spec"]["replicas"], 4);

    // Pause by the plugin: the annotation, the status, the daemon's own word.
    let paused = kubectl_autopilot(&pods, &["pause", POLICY], log);
    assert!(paused.contains("paused"), "{paused}");
    let object = pods.fake.policy(LEASE_NS, POLICY).expect("the object");
    assert_eq!(object["metadata"]["annotations"]["redis-autopilot.io/paused"], "true");
    wait_status(&pods, "phase Paused", log, |s| s["phase"] == "Paused");
    let url = format!("http://127.0.0.1:{}/v1/policies", daemon.http);
    let views: Value = pods
        .runtime
        .block_on(async { reqwest::get(url).await.ok()?.json().await.ok() })
        .expect("/v1/policies");
    assert_eq!(views[0]["paused"], true, "{views:#}");
    kubectl_autopilot(&pods, &["resume", POLICY], log);
    wait_status(&pods, "phase Healthy again", log, |s| s["phase"] == "Healthy");

    // A switchover by the plugin, by name: the status follows it.
    let done = kubectl_autopilot(&pods, &["failover", POLICY, "--graceful"], log);
    assert!(done.contains("did switchover"), "{done}");
    let third = pods.wait_healthy(3, log);
    assert_ne!(third, second);
    let switched = wait_status(&pods, "epoch 3 in the status", log, |s| s["epoch"] == 3);
    assert_eq!(switched["master"], format!("{SET}-{third}"));
}
