//! One Lease per policy (issue 14): two daemons on three StatefulSet policies against the fake
//! API server. The first daemon takes every policy's Lease, the second stands by for each
//! (`GET /v1/policies` says so on both); killed, the first's policies move to the second, each
//! through its own Lease, and the time that takes is printed. A policy removed from the
//! directory has its Lease released. An alert for a policy reaching its standby is sent on
//! to the leader (the URL in the Lease), which acts on it.

mod support;

use std::time::{Duration, Instant};

use serde_json::Value;
use support::kube_fake::KubeFake;
use support::policy_daemon::{Daemon, Options};

const NS: &str = "cache";
const LEASE_NS: &str = "redis-autopilot";
const POLICIES: [&str; 3] = ["orders", "sessions", "carts"];
const LEASE_FLAGS: [&str; 6] =
    ["--lease-duration", "1s", "--renew-deadline", "600ms", "--retry-period", "100ms"];
/// Generous, for a loaded machine: the waits end on the event, not on this.
const DEADLINE: Duration = Duration::from_secs(30);

fn policy(name: &str) -> String {
    format!(
        "apiVersion: autopilot.redis.io/v1alpha1\nkind: RedisPolicy\nmetadata: {{name: {name}}}\n\
         spec:\n  target:\n    kubernetes: {{namespace: {NS}, statefulSet: redis-{name}}}\n  \
         alerts:\n    - {{alertname: RedisHot, action: evaluate}}\n"
    )
}

fn holder(fake: &KubeFake, policy: &str) -> Option<String> {
    let lease = fake.lease(LEASE_NS, &format!("redis-autopilot-{policy}"))?;
    lease["spec"]["holderIdentity"].as_str().filter(|h| !h.is_empty()).map(str::to_owned)
}

fn holders(fake: &KubeFake) -> Vec<Option<String>> {
    POLICIES.iter().map(|p| holder(fake, p)).collect()
}

fn daemon(identity: &str, kubeconfig: &std::path::Path) -> Daemon {
    let files: Vec<(String, String)> =
        POLICIES.iter().map(|p| (format!("{p}.yaml"), policy(p))).collect();
    let files: Vec<(&str, &str)> = files.iter().map(|(f, t)| (f.as_str(), t.as_str())).collect();
    let mut args: Vec<String> = vec![
        "--kubeconfig".into(),
        kubeconfig.display().to_string(),
        "--identity".into(),
        identity.into(),
        "--dry-run".into(),
        "--webhook-insecure-no-token".into(),
    ];
    args.extend(LEASE_FLAGS.iter().map(|f| (*f).to_owned()));
    // POD_IP: each daemon advertises http://127.0.0.1:ITS_PORT in the Leases it holds.
    let env =
        vec![("POD_NAMESPACE".into(), LEASE_NS.into()), ("POD_IP".into(), "127.0.0.1".into())];
    let options = Options { args, env, max_fds: None };
    Daemon::spawn_with(tempfile::tempdir().expect("temp dir"), &files, &options)
}

/// `GET /v1/policies`: (name, leading) of each policy the daemon runs.
fn leading(daemon: &Daemon) -> Vec<(String, bool)> {
    let Some((200, body)) = daemon.try_get("/v1/policies") else { return Vec::new() };
    let views: Vec<Value> = serde_json::from_str(&body).unwrap_or_default();
    views
        .iter()
        .map(|v| (v["name"].as_str().unwrap_or_default().to_owned(), v["leading"] == true))
        .collect()
}

#[test]
fn each_policy_has_its_own_lease_and_moves_to_the_standby_when_its_leader_dies() {
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    let fake = runtime.block_on(KubeFake::start());
    for policy in POLICIES {
        fake.add_statefulset(NS, &format!("redis-{policy}"), 0, serde_json::json!({}));
    }
    let dir = tempfile::tempdir().expect("temp dir");
    let kubeconfig = dir.path().join("kubeconfig");
    fake.write_kubeconfig(&kubeconfig, NS);

    let mut a = daemon("daemon-a", &kubeconfig);
    a.wait_until(DEADLINE, "daemon-a holds every policy's Lease", |_| {
        holders(&fake).iter().all(|h| h.as_deref() == Some("daemon-a")).then_some(())
    });
    let mut b = daemon("daemon-b", &kubeconfig);
    b.wait_until(DEADLINE, "daemon-b stands by for every policy", |d| {
        let views = leading(d);
        (views.len() == POLICIES.len() && views.iter().all(|(_, leads)| !leads)).then_some(())
    });
    let views = leading(&a);
    assert!(views.len() == 3 && views.iter().all(|(_, leads)| *leads), "{views:?}\n{}", a.log());
    assert!(holders(&fake).iter().all(|h| h.as_deref() == Some("daemon-a")));

    // An alert for `orders` reaching the standby goes on to its leader, which acts on it.
    let alert = r#"{"version":"4","groupKey":"g","status":"firing","receiver":"autopilot",
        "alerts":[{"status":"firing","labels":{"alertname":"RedisHot","policy":"orders"},
                   "annotations":{},"fingerprint":"f1"}]}"#;
    assert_eq!(b.post_alerts(None, alert), 200, "{}\n{}", b.log(), a.log());
    let received = |d: &Daemon, outcome: &str| {
        d.metric("redis_autopilot_alerts_received_total", &[("outcome", outcome)]).unwrap_or(0.0)
    };
    assert_eq!(received(&b, "forwarded"), 1.0, "{}", b.log());
    assert_eq!(received(&b, "mapped"), 0.0, "the standby acts on nothing");
    assert_eq!(received(&a, "mapped"), 1.0, "{}", a.log());
    assert!(a.log().contains("firing alert mapped to a policy action"), "{}", a.log());

    // kill -9: no Lease is released; each moves once it expired on the standby's clock.
    let killed = Instant::now();
    a.signal("KILL");
    let moved = b.wait_until(DEADLINE, "every Lease moved to daemon-b", |_| {
        holders(&fake).iter().all(|h| h.as_deref() == Some("daemon-b")).then(|| killed.elapsed())
    });
    eprintln!(
        "every policy's Lease moved to the standby {moved:?} after its leader was killed \
         (lease duration 1s, retry period 100ms)"
    );
    b.wait_until(DEADLINE, "daemon-b leads every policy", |d| {
        let views = leading(d);
        (views.len() == 3 && views.iter().all(|(_, leads)| *leads)).then_some(())
    });

    // A policy removed from the directory releases its Lease; the others stay held.
    std::fs::remove_file(b.policies.join("carts.yaml")).expect("remove a policy");
    b.signal("HUP");
    b.wait_until(DEADLINE, "the removed policy's Lease released", |_| {
        holder(&fake, "carts").is_none().then_some(())
    });
    assert_eq!(holder(&fake, "orders").as_deref(), Some("daemon-b"));
    assert_eq!(holder(&fake, "sessions").as_deref(), Some("daemon-b"));
}
