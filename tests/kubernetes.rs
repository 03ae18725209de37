//! The Kubernetes backend against a fake API server (`support::kube_fake`) serving the real
//! paths and JSON: the exact requests it sends, its handling of 409/403/unreachable, the pod
//! watch, Events, and leader election between two electors. Where the Redis side matters,
//! real `redis-server`s on loopback play the pods (`127.0.0.1`, `127.0.0.2`: pods differ by
//! IP and share the Redis port).

mod support;

use std::time::{Duration, Instant};

use axum::http::Method;
use redis_autopilot::act::{ActionOutcome, Executor, Leadership, Mode, RateLimit};
use redis_autopilot::cluster::kubernetes::lease::{Elector, LeaseConfig};
use redis_autopilot::cluster::kubernetes::{API_CALLS, KubeClient, KubeCluster, KubeTarget};
use redis_autopilot::cluster::{Advertised, Cluster, ClusterError, MasterRecord, Member};
use redis_autopilot::sample::redis::Access;
use serde_json::{Value, json};
use support::kube_fake::{KubeFake, Recorded, assert_listed, running_pod};
use support::{Redis, free_port};

const NS: &str = "cache";
const SET: &str = "redis";
const SET_PATH: &str = "/apis/apps/v1/namespaces/cache/statefulsets/redis";

fn target(port: u16, event_interval: Duration) -> KubeTarget {
    KubeTarget {
        namespace: NS.into(),
        stateful_set: SET.into(),
        port,
        access: Access::default(),
        timeout: Duration::from_secs(2),
        identity: "autopilot-0".into(),
        event_interval,
    }
}

async fn open(fake: &KubeFake, port: u16) -> KubeCluster {
    open_with(fake, target(port, Duration::from_secs(60))).await
}

async fn open_with(fake: &KubeFake, target: KubeTarget) -> KubeCluster {
    let client =
        KubeClient::from_config(fake.config()).expect("client").get().await.expect("client");
    KubeCluster::open(client, target).await.expect("open the StatefulSet")
}

/// The fake with StatefulSet `redis` (`replicas`, annotations) and running pods at `ips`.
async fn fake_with(replicas: u32, annotations: Value, ips: &[&str]) -> KubeFake {
    let fake = KubeFake::start().await;
    fake.add_statefulset(NS, SET, replicas, annotations);
    for (ordinal, ip) in ips.iter().enumerate() {
        fake.add_pod(NS, SET, ordinal as u16, ip);
    }
    fake
}

fn request(method: &str, path: &str, body: Option<Value>) -> (String, String, Option<Value>) {
    (method.to_owned(), path.to_owned(), body)
}

/// Method, path and body of each request, for exact comparison.
fn sent(requests: &[Recorded]) -> Vec<(String, String, Option<Value>)> {
    requests
        .iter()
        .filter(|r| !r.path.ends_with("/events"))
        .map(|r| (r.method.clone(), r.path.clone(), r.body.clone()))
        .collect()
}

async fn eventually(what: &str, mut check: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !check() {
        assert!(Instant::now() < deadline, "{what} did not happen within 10 s");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn open_reads_the_record_and_lists_the_pods_by_selector() {
    let annotations =
        json!({"redis-autopilot.io/master": "redis-1", "redis-autopilot.io/epoch": "3"});
    let fake = fake_with(2, annotations, &["10.0.0.10", "10.0.0.11"]).await;
    // Another StatefulSet's pod: not a member.
    let mut other = running_pod(NS, "redis-other", 0, "10.0.0.99");
    other["metadata"]["labels"] = json!({"app": "other"});
    fake.put_pod(NS, other);
    let cluster = open(&fake, 6380).await;

    let first = &fake.requests()[0];
    assert_eq!((first.method.as_str(), first.path.as_str()), ("GET", SET_PATH));
    let list = fake.requests().into_iter().find(|r| r.path.ends_with("/pods")).expect("a pod list");
    assert!(list.query.contains("labelSelector=app%3Dredis"), "{}", list.query);

    assert_eq!(cluster.recorded_master().await.unwrap(), Some(MasterRecord::new("redis-1", 3)));
    let members = cluster.members().await.unwrap();
    let summary: Vec<(String, String, u16, u16)> = members
        .iter()
        .map(|m| (m.id.clone(), m.endpoint.host.clone(), m.endpoint.port, m.ordinal))
        .collect();
    assert_eq!(
        summary,
        [
            ("redis-0".to_owned(), "10.0.0.10".to_owned(), 6380, 0),
            ("redis-1".to_owned(), "10.0.0.11".to_owned(), 6380, 1)
        ]
    );
    assert!(members.iter().all(|m| m.gone.is_none()));
    assert_listed(&fake);
}

/// Issue 14: someone's `kubectl scale` between the daemon's decision and its write is a
/// conflict, never overwritten; the action path reports it as deferred (decided again on the
/// new count next round), spends no rate limit, and a decision made on the new count goes
/// through.
#[tokio::test]
async fn a_concurrent_kubectl_scale_is_a_conflict_never_an_overwrite() {
    let fake = fake_with(3, json!({}), &["10.0.0.10", "10.0.0.11", "10.0.0.12"]).await;
    let cluster = open(&fake, 6379).await;

    // Their write lands between the daemon's read of the scale and its PATCH: a 409.
    fake.interleave_statefulset_write(json!({"spec": {"replicas": 5}}));
    let error = cluster.scale(3, 4).await.unwrap_err();
    assert!(matches!(error, ClusterError::Resized { from: 3, to: 4, found: 5 }), "{error}");
    assert_eq!(fake.statefulset(NS, SET)["spec"]["replicas"], 5, "their count stands");

    // Their write landed before the read: refused before any write.
    fake.clear_requests();
    let health = redis_autopilot::policy::Health::default();
    let access = Access::default();
    let context = redis_autopilot::failover::Context {
        access: &access,
        timeout: Duration::from_secs(2),
        guard: None,
        actor: "test",
    };
    let hand_over = redis_autopilot::act::HandOver { health: &health, context };
    let limit = RateLimit { max: 1, window: Duration::from_secs(3600) };
    let mut executor = Executor::new(Mode::Apply, limit);
    let mut memory = redis_autopilot::decide::Memory::default();
    let now = chrono::Utc::now();
    let outcome =
        redis_autopilot::act::scale(&mut executor, &cluster, &mut memory, 3, 4, now, &hand_over)
            .await;
    let ActionOutcome::Deferred { why } = outcome else { panic!("{outcome:?}") };
    assert!(why.contains("now asks for 5 instances"), "{why}");
    assert!(fake.actions().iter().all(|r| r.method != "PATCH"), "nothing written");
    assert_eq!(fake.statefulset(NS, SET)["spec"]["replicas"], 5);

    // Decided again on their count: performed, with the one admission the limit allows.
    let outcome =
        redis_autopilot::act::scale(&mut executor, &cluster, &mut memory, 5, 4, now, &hand_over)
            .await;
    assert_eq!(outcome, ActionOutcome::Applied);
    assert_eq!(fake.statefulset(NS, SET)["spec"]["replicas"], 4);
}

#[tokio::test]
async fn scale_goes_through_the_scale_subresource_with_an_event() {
    let fake = fake_with(1, json!({}), &["10.0.0.10"]).await;
    let cluster = open(&fake, 6379).await;
    fake.clear_requests();

    assert_eq!(cluster.replicas().await.unwrap(), 1);
    let version = fake.statefulset(NS, SET)["metadata"]["resourceVersion"].clone();
    cluster.scale(1, 3).await.unwrap();

    // The write carries the resourceVersion read with the count: it cannot overwrite a
    // change made in between.
    let scale = format!("{SET_PATH}/scale");
    let patch = json!({"metadata": {"resourceVersion": version}, "spec": {"replicas": 3}});
    assert_eq!(
        sent(&fake.actions()),
        [
            request("GET", &scale, None),
            request("GET", &scale, None),
            request("GET", SET_PATH, None),
            request("PATCH", &scale, Some(patch)),
        ]
    );
    assert_eq!(fake.statefulset(NS, SET)["spec"]["replicas"], 3);
    let events = fake.events();
    assert_eq!(events.len(), 1, "{events:?}");
    let event = &events[0];
    assert_eq!(event["apiVersion"], "events.k8s.io/v1");
    assert_eq!(
        (event["action"].as_str(), event["reason"].as_str()),
        (Some("Scale"), Some("ScaledUp"))
    );
    assert_eq!(event["type"], "Normal");
    assert_eq!(event["note"], "scale from 1 to 3 replicas");
    assert_eq!(
        event["regarding"],
        json!({"apiVersion": "apps/v1", "kind": "StatefulSet", "name": "redis", "namespace": "cache",
               "uid": "uid-redis", "resourceVersion": "1"})
    );
    assert_eq!(event["reportingInstance"], "autopilot-0");
    assert!(event["eventTime"].is_string());
    assert_listed(&fake);
}

#[tokio::test]
async fn the_master_record_is_written_under_a_resource_version() {
    let annotations =
        json!({"redis-autopilot.io/master": "redis-0", "redis-autopilot.io/epoch": "3"});
    let fake = fake_with(2, annotations, &["10.0.0.10", "10.0.0.11"]).await;
    let cluster = open(&fake, 6379).await;
    fake.clear_requests();
    let version = fake.statefulset(NS, SET)["metadata"]["resourceVersion"].clone();

    let next = MasterRecord::new("redis-1", 4);
    cluster.record_master(next.clone()).await.unwrap();
    assert_eq!(
        sent(&fake.actions()),
        [
            request("GET", SET_PATH, None),
            request(
                "PATCH",
                SET_PATH,
                // A record without a claim clears any claim annotation (`null` in a merge patch).
                Some(json!({"metadata": {"resourceVersion": version, "annotations": {
                    "redis-autopilot.io/master": "redis-1", "redis-autopilot.io/epoch": "4",
                    "redis-autopilot.io/claim": null}}}))
            ),
        ]
    );
    assert_eq!(cluster.recorded_master().await.unwrap(), Some(next.clone()));

    // The same record again writes nothing; a lower or equal epoch is refused unwritten.
    fake.clear_requests();
    cluster.record_master(next).await.unwrap();
    let stale = cluster.record_master(MasterRecord::new("redis-0", 4)).await;
    assert!(matches!(stale, Err(ClusterError::StaleEpoch { epoch: 4, .. })), "{stale:?}");
    assert!(
        sent(&fake.actions()).iter().all(|(method, ..)| method == "GET"),
        "{:?}",
        fake.actions()
    );
    assert_listed(&fake);
}

#[tokio::test]
async fn a_conflict_is_retried_with_fresh_state() {
    let annotations =
        json!({"redis-autopilot.io/master": "redis-0", "redis-autopilot.io/epoch": "3"});
    let fake = fake_with(2, annotations, &["10.0.0.10", "10.0.0.11"]).await;
    let cluster = open(&fake, 6379).await;

    // Someone edits another annotation between our read and our write: 409, re-read, retry.
    fake.clear_requests();
    fake.interleave_statefulset_write(json!({"metadata": {"annotations": {"team": "cache"}}}));
    cluster.record_master(MasterRecord::new("redis-1", 4)).await.unwrap();
    let methods: Vec<(String, String)> = fake
        .actions()
        .iter()
        .filter(|r| r.path == SET_PATH)
        .map(|r| (r.method.clone(), r.path.clone()))
        .collect();
    let expected: Vec<(String, String)> = ["GET", "PATCH", "GET", "PATCH"]
        .iter()
        .map(|m| ((*m).to_owned(), SET_PATH.to_owned()))
        .collect();
    assert_eq!(methods, expected);
    let set = fake.statefulset(NS, SET);
    assert_eq!(set["metadata"]["annotations"]["redis-autopilot.io/epoch"], "4");
    assert_eq!(set["metadata"]["annotations"]["team"], "cache");

    // Another daemon records a later epoch in between: the re-read sees it and refuses.
    fake.clear_requests();
    fake.interleave_statefulset_write(json!({"metadata": {"annotations": {
        "redis-autopilot.io/master": "redis-0", "redis-autopilot.io/epoch": "9"}}}));
    let lost = cluster.record_master(MasterRecord::new("redis-1", 5)).await;
    match lost {
        Err(ClusterError::StaleEpoch { recorded, .. }) => {
            assert_eq!(recorded, "redis-0 at epoch 9")
        }
        other => panic!("expected a stale epoch, got {other:?}"),
    }
    let patches = fake.actions().iter().filter(|r| r.method == "PATCH").count();
    assert_eq!(patches, 1, "one write, refused with 409; the re-read decided not to write again");
    assert_listed(&fake);
}

#[tokio::test]
async fn forbidden_names_the_missing_permission() {
    let fake = fake_with(1, json!({}), &["10.0.0.10"]).await;
    let cluster = open(&fake, 6379).await;
    fake.forbid(Method::PATCH, "/statefulsets/redis/scale");
    let error = cluster.scale(cluster.replicas().await.unwrap(), 2).await.unwrap_err();
    assert_eq!(error.category(), "kube_forbidden");
    let text = redis_autopilot::errors::chain(&error);
    assert!(
        text.contains(
            "may not `patch` on `statefulsets/scale` (API group apps) for statefulset cache/redis"
        ),
        "{text}"
    );
    // The failure is reported on the StatefulSet too.
    let events = fake.events();
    let event = events.last().expect("a Warning event");
    assert_eq!(
        (event["type"].as_str(), event["reason"].as_str()),
        (Some("Warning"), Some("ScaleFailed"))
    );
    assert!(event["note"].as_str().unwrap().contains("statefulsets/scale"), "{event}");
    assert_eq!(fake.statefulset(NS, SET)["spec"]["replicas"], 1);
}

#[tokio::test]
async fn an_unreachable_api_server_is_a_clear_error() {
    let config = kube::Config::new(format!("http://127.0.0.1:{}", free_port()).parse().unwrap());
    let client = KubeClient::from_config(config).unwrap().get().await.unwrap();
    let started = Instant::now();
    let error = match KubeCluster::open(client, target(6379, Duration::from_secs(60))).await {
        Ok(_) => panic!("opened a StatefulSet with no API server"),
        Err(error) => error,
    };
    assert_eq!(error.category(), "kube_unreachable");
    let text = redis_autopilot::errors::chain(&error);
    assert!(text.contains("the Kubernetes API server is unreachable"), "{text}");
    assert!(text.contains("statefulset cache/redis"), "{text}");
    assert!(started.elapsed() < Duration::from_secs(5), "took {:?}", started.elapsed());
}

#[tokio::test]
async fn a_terminated_or_deleted_pod_is_gone_at_once() {
    let fake = fake_with(2, json!({}), &["10.0.0.10", "10.0.0.11"]).await;
    let cluster = open(&fake, 6379).await;

    let mut crashed = running_pod(NS, SET, 1, "10.0.0.11");
    crashed["status"]["containerStatuses"][0]["state"] =
        json!({"terminated": {"exitCode": 137, "reason": "OOMKilled"}});
    fake.put_pod(NS, crashed);
    fake.delete_pod(NS, "redis-0");

    let gone = |members: &[Member]| -> Vec<(String, String, Option<String>)> {
        members.iter().map(|m| (m.id.clone(), m.endpoint.host.clone(), m.gone.clone())).collect()
    };
    let deadline = Instant::now() + Duration::from_secs(5);
    let members = loop {
        let members = cluster.members().await.unwrap();
        if members.iter().all(|m| m.gone.is_some()) || Instant::now() > deadline {
            break members;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    };
    assert_eq!(
        gone(&members),
        [
            ("redis-0".to_owned(), "10.0.0.10".to_owned(), Some("pod deleted".to_owned())),
            (
                "redis-1".to_owned(),
                "10.0.0.11".to_owned(),
                Some("container `redis` terminated (OOMKilled, exit code 137)".to_owned())
            ),
        ]
    );
    // The StatefulSet recreates redis-0 and it runs again: no longer gone.
    fake.add_pod(NS, SET, 0, "10.0.0.20");
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let members = cluster.members().await.unwrap();
        if members[0].gone.is_none() {
            assert_eq!(members[0].endpoint.host, "10.0.0.20");
            break;
        }
        assert!(Instant::now() < deadline, "redis-0 never came back: {members:?}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_listed(&fake);
}

/// The API server goes down: the pod watch breaks and `members` is an error, not the last
/// view (a pod may die meanwhile, and the health core must not act on a stale list). Back up,
/// the watch relists by itself and `members` shows what changed during the outage.
#[tokio::test]
async fn members_is_an_error_while_the_api_is_down_and_fresh_once_it_is_back() {
    let fake = fake_with(2, json!({}), &["10.0.0.10", "10.0.0.11"]).await;
    let cluster = open(&fake, 6379).await;
    assert!(cluster.members().await.unwrap().iter().all(|m| m.gone.is_none()));

    fake.outage(true);
    let error = poll_members(&cluster, "members is an error during the outage", |m| {
        m.as_ref().err().map(|e| redis_autopilot::errors::chain(e))
    })
    .await;
    assert!(error.contains("redis"), "names the StatefulSet: {error}");
    fake.delete_pod(NS, "redis-1");
    assert!(cluster.members().await.is_err(), "still down: no stale view");

    fake.outage(false);
    let members =
        poll_members(&cluster, "members is fresh after the outage", |m| m.as_ref().ok().cloned())
            .await;
    let gone: Vec<_> = members.iter().map(|m| (m.id.as_str(), m.gone.as_deref())).collect();
    assert_eq!(gone, [("redis-0", None), ("redis-1", Some("pod deleted"))]);
}

/// Calls `members` until `check` makes something of its answer, for at most 15 s (the
/// watch's backoff after an outage is a few seconds).
async fn poll_members<T>(
    cluster: &KubeCluster,
    what: &str,
    check: impl Fn(&Result<Vec<Member>, ClusterError>) -> Option<T>,
) -> T {
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        if let Some(found) = check(&cluster.members().await) {
            return found;
        }
        assert!(Instant::now() < deadline, "{what}: not within 15 s");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn advertise_patches_the_role_label_once() {
    let fake = fake_with(2, json!({}), &["10.0.0.10", "10.0.0.11"]).await;
    let cluster = open(&fake, 6379).await;
    let members = cluster.members().await.unwrap();
    fake.clear_requests();

    cluster.advertise(&members[0], Advertised::Master).await.unwrap();
    cluster.advertise(&members[0], Advertised::Master).await.unwrap();
    cluster.advertise(&members[1], Advertised::Fenced).await.unwrap();
    assert_eq!(
        sent(&fake.actions()),
        [
            request(
                "PATCH",
                "/api/v1/namespaces/cache/pods/redis-0",
                Some(json!({"metadata": {"labels": {"redis-autopilot.io/role": "master"}}}))
            ),
            request(
                "PATCH",
                "/api/v1/namespaces/cache/pods/redis-1",
                Some(json!({"metadata": {"labels": {"redis-autopilot.io/role": "fenced"}}}))
            ),
        ]
    );
    let labels = &fake.pod(NS, "redis-0")["metadata"]["labels"];
    assert_eq!(labels, &json!({"app": "redis", "redis-autopilot.io/role": "master"}));
    assert_listed(&fake);
}

/// The limiter runs on the wall clock, so the test does not assume the calls are fast: it
/// measures. A run whose first three calls took longer than the interval (a loaded machine)
/// proves nothing about holding back and is run again; the wait past the interval is measured
/// from after the first Event went out, so it can only be longer than needed.
#[tokio::test]
async fn events_are_rate_limited_per_action_and_reason() {
    let interval = Duration::from_millis(1500);
    for attempt in 1..=5 {
        let fake = fake_with(1, json!({}), &["10.0.0.10"]).await;
        let cluster = open_with(&fake, target(6379, interval)).await;
        let before_first = Instant::now();
        cluster.scale(cluster.replicas().await.unwrap(), 2).await.unwrap();
        let after_first = Instant::now();
        cluster.scale(cluster.replicas().await.unwrap(), 3).await.unwrap(); // ScaledUp again within the interval: held back
        cluster.scale(cluster.replicas().await.unwrap(), 2).await.unwrap(); // ScaledDown: another reason, posted
        let took = before_first.elapsed();
        if took >= interval {
            eprintln!("attempt {attempt}: the calls took {took:?}, not within {interval:?}");
            continue;
        }
        let reasons: Vec<String> =
            fake.events().iter().map(|e| e["reason"].as_str().unwrap().to_owned()).collect();
        assert_eq!(reasons, ["ScaledUp", "ScaledDown"]);

        tokio::time::sleep_until((after_first + interval).into()).await;
        cluster.scale(cluster.replicas().await.unwrap(), 4).await.unwrap();
        let events = fake.events();
        assert_eq!(events.len(), 3);
        assert_eq!(events[2]["note"], "scale from 2 to 4 replicas (1 more like it held back)");
        assert_listed(&fake);
        return;
    }
    panic!("no attempt made its calls within {interval:?}");
}

/// A new master record starts the Events afresh: a failover a second after the first master
/// is reported in full, not held back as a repeat (with the count held back in the last epoch).
/// Within an epoch repeats are held back, and a record written again unchanged is no new epoch.
#[tokio::test]
async fn a_new_master_epoch_posts_its_events_at_once() {
    let fake = fake_with(2, json!({}), &["10.0.0.10", "10.0.0.11"]).await;
    let cluster = open(&fake, 6379).await;
    let first = MasterRecord::new("redis-0", 1);
    cluster.record_master(first.clone()).await.unwrap();
    cluster.explain("failover", "no master is recorded: chose redis-0").await;
    cluster.explain("failover", "the same epoch").await;
    cluster.record_master(first).await.unwrap();
    cluster.explain("failover", "still the same epoch").await;
    cluster.record_master(MasterRecord::new("redis-1", 2)).await.unwrap();
    cluster.explain("failover", "master redis-0 refuses connections: chose redis-1").await;
    let posted: Vec<(String, String)> = fake
        .events()
        .iter()
        .map(|e| (e["reason"].as_str().unwrap().to_owned(), e["note"].as_str().unwrap().to_owned()))
        .collect();
    let expected = [
        ("MasterRecorded", "record redis-0 as master at epoch 1"),
        ("Failover", "no master is recorded: chose redis-0"),
        ("MasterRecorded", "record redis-1 as master at epoch 2 (1 more like it held back)"),
        (
            "Failover",
            "master redis-0 refuses connections: chose redis-1 (2 more like it held back)",
        ),
    ];
    let expected: Vec<(String, String)> =
        expected.iter().map(|(r, n)| ((*r).to_owned(), (*n).to_owned())).collect();
    assert_eq!(posted, expected);
    assert_listed(&fake);
}

#[tokio::test]
async fn promote_and_repoint_act_on_redis_at_the_pod_ips() {
    let port = free_port();
    let master = Redis::start_at("127.0.0.1", port, &[]);
    let replica =
        Redis::start_at("127.0.0.2", port, &["--replicaof", "127.0.0.1", &port.to_string()]);
    replica.wait_for_field("master_link_status", "up");
    let annotations =
        json!({"redis-autopilot.io/master": "redis-0", "redis-autopilot.io/epoch": "1"});
    let fake = fake_with(2, annotations, &["127.0.0.1", "127.0.0.2"]).await;
    let cluster = open(&fake, port).await;
    let members = cluster.members().await.unwrap();

    // Not recorded yet: refused, Redis untouched.
    let refused = cluster.promote(&members[1], 2).await;
    assert!(matches!(refused, Err(ClusterError::NotRecorded { .. })), "{refused:?}");
    assert_eq!(replica.info_field("role").as_deref(), Some("slave"));

    cluster.record_master(MasterRecord::new("redis-1", 2)).await.unwrap();
    cluster.promote(&members[1], 2).await.unwrap();
    assert_eq!(replica.info_field("role").as_deref(), Some("master"));

    let refused = cluster.repoint(&members[1], &members[0]).await;
    assert!(matches!(refused, Err(ClusterError::RecordedMaster { .. })), "{refused:?}");
    cluster.repoint(&members[0], &members[1]).await.unwrap();
    assert_eq!(master.info_field("master_host").as_deref(), Some("127.0.0.2"));
    master.wait_for_field("master_link_status", "up");

    let actions: Vec<String> =
        fake.events().iter().map(|e| e["action"].as_str().unwrap().to_owned()).collect();
    assert_eq!(actions, ["Promote", "RecordMaster", "Promote", "Repoint", "Repoint"]);
    assert_listed(&fake);
}

#[tokio::test]
async fn a_scale_down_hands_the_master_over_first() {
    let port = free_port();
    let replica =
        Redis::start_at("127.0.0.1", port, &["--replicaof", "127.0.0.2", &port.to_string()]);
    let master = Redis::start_at("127.0.0.2", port, &[]);
    master.cli(&["SET", "key", "value"]);
    replica.wait_for_field("master_link_status", "up");
    let annotations =
        json!({"redis-autopilot.io/master": "redis-1", "redis-autopilot.io/epoch": "1"});
    let fake = fake_with(2, annotations, &["127.0.0.1", "127.0.0.2"]).await;
    let cluster = open(&fake, port).await;
    fake.clear_requests();

    support::resize(&cluster, 1, &Access::default(), Duration::from_secs(2)).await.unwrap();

    assert_eq!(replica.info_field("role").as_deref(), Some("master"));
    assert_eq!(replica.cli(&["GET", "key"]).trim(), "value");
    let record = cluster.recorded_master().await.unwrap().expect("a record");
    assert_eq!((record.instance.as_str(), record.epoch), ("redis-0", 2));
    // The hand-over's claim is released: it still says who changed roles, and holds no more.
    assert_eq!(record.active_claim(chrono::Utc::now()), None, "{record:?}");
    // Recorded, with its claim, and the claim released, before the scale-down removed the old
    // master's pod.
    let writes: Vec<String> =
        fake.actions().iter().filter(|r| r.method == "PATCH").map(|r| r.path.clone()).collect();
    assert_eq!(writes, [SET_PATH.to_owned(), SET_PATH.to_owned(), format!("{SET_PATH}/scale")]);
    assert_eq!(fake.statefulset(NS, SET)["spec"]["replicas"], 1);
    let reasons: Vec<String> =
        fake.events().iter().map(|e| e["reason"].as_str().unwrap().to_owned()).collect();
    // The hand-over acts through the trait like any failover: each step has its Event, in
    // the order of a role change (the record with its claim, the Redis steps, the release).
    assert_eq!(
        reasons,
        ["MasterRecorded", "SwitchedOver", "Repointed", "ClaimReleased", "ScaledDown"]
    );
}

fn lease_config(identity: &str) -> LeaseConfig {
    LeaseConfig {
        name: "redis-autopilot".into(),
        namespace: NS.into(),
        identity: identity.into(),
        lease_duration: Duration::from_secs(1),
        renew_deadline: Duration::from_millis(600),
        retry_period: Duration::from_millis(100),
    }
}

struct Candidate {
    executor: Executor,
    stop: tokio::sync::watch::Sender<bool>,
    task: tokio::task::JoinHandle<()>,
}

async fn candidate(fake: &KubeFake, identity: &str) -> Candidate {
    candidate_with(fake, lease_config(identity)).await
}

async fn candidate_with(fake: &KubeFake, config: LeaseConfig) -> Candidate {
    let client =
        KubeClient::from_config(fake.config()).expect("client").get().await.expect("client");
    let (leader, following) = tokio::sync::watch::channel(false);
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let task = tokio::spawn(Elector::new(client, config).run(leader, stopped));
    let limit = RateLimit { max: 1000, window: Duration::from_secs(3600) };
    let executor =
        Executor::new(Mode::Apply, limit).with_leadership(Leadership::following(following));
    Candidate { executor, stop, task }
}

fn acts(candidate: &mut Candidate) -> bool {
    match candidate.executor.admit(chrono::Utc::now()) {
        Ok(()) => true,
        Err(ActionOutcome::Dropped) => false,
        Err(other) => panic!("unexpected outcome {other:?}"),
    }
}

#[tokio::test]
async fn only_the_lease_holder_acts_and_a_standby_takes_over_after_expiry() {
    let fake = KubeFake::start().await;
    let mut a = candidate(&fake, "autopilot-a").await;
    let started = Instant::now();
    while !acts(&mut a) {
        assert!(started.elapsed() < Duration::from_secs(5), "a never led");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let mut b = candidate(&fake, "autopilot-b").await;
    // For two lease durations, a keeps renewing and b never acts. Whether a acts at each look
    // depends on a renewal landing in time on a loaded machine; that both act never may.
    let until = Instant::now() + Duration::from_secs(2);
    while Instant::now() < until {
        assert!(!acts(&mut b), "b acted while a renews");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(acts(&mut a), "a still leads");
    let lease = fake.lease(NS, "redis-autopilot").expect("the lease");
    assert_eq!(lease["spec"]["holderIdentity"], "autopilot-a");
    assert_eq!(lease["spec"]["leaseDurationSeconds"], 1);

    // a dies without releasing (a crash): it stops acting at once; b acts only once a's
    // last renewal is a lease duration old.
    a.task.abort();
    let _ = (&mut a.task).await;
    let last_renewal = Instant::now();
    assert!(!acts(&mut a), "a dead elector's executor still acts");
    while !acts(&mut b) {
        assert!(last_renewal.elapsed() < Duration::from_secs(4), "b never took over");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let took = last_renewal.elapsed();
    // At least the lease duration less one retry period (a's last renewal may precede the
    // abort): the safety bound. The loop above bounds the other side, generously.
    assert!(took >= Duration::from_millis(800), "b took over after only {took:?}");
    eprintln!("b took over {took:?} after a's last renewal (lease 1s)");
    let lease = fake.lease(NS, "redis-autopilot").unwrap();
    assert_eq!(lease["spec"]["holderIdentity"], "autopilot-b");
    assert_eq!(lease["spec"]["leaseTransitions"], 1);

    // b shuts down cleanly: it stops acting and releases the lease.
    b.stop.send(true).unwrap();
    (&mut b.task).await.unwrap();
    assert!(!acts(&mut b));
    let lease = fake.lease(NS, "redis-autopilot").unwrap();
    assert!(lease["spec"].get("holderIdentity").is_none_or(Value::is_null), "{lease}");
    assert_listed(&fake);
}

/// A lease far longer than the test: b can only lead because a released it, never because
/// it expired, so neither check below depends on how fast the machine is.
#[tokio::test]
async fn a_standby_acts_at_once_after_a_release() {
    let long = |identity: &str| LeaseConfig {
        lease_duration: Duration::from_secs(60),
        ..lease_config(identity)
    };
    let fake = KubeFake::start().await;
    let mut a = candidate_with(&fake, long("autopilot-a")).await;
    eventually("a leads", || acts(&mut a)).await;
    fake.clear_requests();
    let mut b = candidate_with(&fake, long("autopilot-b")).await;
    // b has tried: a lease GET without a write is b's (a writes after each GET). One of a's
    // GETs may be in flight across the clear, so three such GETs mean b got at least two
    // answers, and published the first.
    eventually("b tries for the lease", || {
        let lease: Vec<_> =
            fake.requests().into_iter().filter(|r| r.path.contains("/leases/")).collect();
        let gets = lease.iter().filter(|r| r.method == "GET").count();
        gets.saturating_sub(lease.len() - gets) >= 3
    })
    .await;
    assert!(!acts(&mut b), "b acts while a holds the lease");
    a.stop.send(true).unwrap();
    (&mut a.task).await.unwrap();
    let released = Instant::now();
    // A released lease is free at once: b's next retry takes it, not the expiry a minute on.
    eventually("b leads", || acts(&mut b)).await;
    eprintln!("b led {:?} after the release", released.elapsed());
    let lease = fake.lease(NS, "redis-autopilot").unwrap();
    assert_eq!(lease["spec"]["holderIdentity"], "autopilot-b");
}

#[test]
fn api_calls_are_what_the_role_must_grant() {
    let calls: Vec<String> =
        API_CALLS.iter().map(|c| format!("{} {}/{}", c.verb, c.group, c.rbac_resource())).collect();
    assert_eq!(
        calls,
        [
            "get apps/statefulsets",
            "patch apps/statefulsets",
            "get apps/statefulsets/scale",
            "patch apps/statefulsets/scale",
            "list /pods",
            "watch /pods",
            "patch /pods",
            "create events.k8s.io/events",
            "get coordination.k8s.io/leases",
            "create coordination.k8s.io/leases",
            "update coordination.k8s.io/leases",
            "list autopilot.redis.io/redispolicies",
            "watch autopilot.redis.io/redispolicies",
            "patch autopilot.redis.io/redispolicies/status",
        ]
    );
}

/// `plan` from a laptop: `--kubeconfig` and `--context` select the cluster; the pods are
/// listed through the API and sampled at their IPs.
#[tokio::test]
async fn plan_lists_a_statefulset_through_a_kubeconfig() {
    let redis = Redis::start(&[]);
    let annotations =
        json!({"redis-autopilot.io/master": "redis-0", "redis-autopilot.io/epoch": "1"});
    let fake = fake_with(1, annotations, &["127.0.0.1"]).await;
    let dir = tempfile::tempdir().expect("temp dir");
    let kubeconfig = dir.path().join("kubeconfig");
    let server = format!("http://{}", fake.addr);
    std::fs::write(
        &kubeconfig,
        format!(
            "apiVersion: v1\nkind: Config\nclusters: [{{name: fake, cluster: {{server: \"{server}\"}}}}]\n\
             users: [{{name: nobody, user: {{}}}}]\n\
             contexts: [{{name: fake, context: {{cluster: fake, user: nobody}}}}, \
             {{name: other, context: {{cluster: fake, user: nobody}}}}]\ncurrent-context: other\n"
        ),
    )
    .expect("write kubeconfig");
    let policy = dir.path().join("policy.yaml");
    std::fs::write(
        &policy,
        format!(
            "apiVersion: autopilot.redis.io/v1alpha1\nkind: RedisPolicy\nmetadata: {{name: k8s}}\n\
             spec:\n  target:\n    kubernetes: {{namespace: cache, statefulSet: redis, port: {}}}\n  \
             scaling:\n    minReplicas: 1\n    maxReplicas: 4\n    metrics:\n      \
             - redis: instantaneous_ops_per_sec\n        target: 1000\n",
            redis.port
        ),
    )
    .expect("write policy");
    let binary = env!("CARGO_BIN_EXE_redis-autopilot");
    // The fake serves on this test's runtime: run plan off it.
    let output = tokio::task::spawn_blocking(move || {
        std::process::Command::new(binary)
            .arg("plan")
            .arg("--kubeconfig")
            .arg(&kubeconfig)
            .args(["--context", "fake", "--output", "json", "--policy"])
            .arg(&policy)
            .output()
            .expect("run plan")
    })
    .await
    .expect("plan finished");
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    let report: Value = serde_json::from_slice(&output.stdout).expect("plan JSON");
    assert_eq!(report["instances"][0]["id"], "redis-0");
    assert_eq!(report["instances"][0]["role"], "master");
    assert_eq!(report["decisions"][0]["kind"], "hold", "{report}");
    // plan only reads.
    assert!(fake.requests().iter().all(|r| r.method == "GET"), "{:?}", fake.requests());
}

/// The daemon explains each applied decision with an Event whose note is the decision's
/// reason sentence: what `kubectl describe statefulset` shows an on-call engineer.
#[tokio::test]
async fn a_decision_is_explained_by_an_event_carrying_its_reason() {
    let fake = fake_with(1, json!({}), &["127.0.0.1"]).await;
    let cluster = open(&fake, free_port()).await;
    let reason = "master redis-0 refuses connections and all 2 reachable replicas report the \
                  link down (after 120ms): chose redis-1 (priority 100, offset 5310)";
    cluster.explain("failover", reason).await;
    cluster.explain("masterDown", &"x".repeat(5000)).await;
    let events = fake.events();
    assert_eq!(events.len(), 2, "{events:?}");
    assert_eq!(events[0]["action"], "Decided");
    assert_eq!(events[0]["reason"], "Failover");
    assert_eq!(events[0]["note"], reason);
    assert_eq!(events[0]["regarding"]["kind"], "StatefulSet");
    assert_eq!(events[1]["reason"], "MasterDown");
    let note = events[1]["note"].as_str().unwrap();
    assert!(note.len() <= 1024 && note.ends_with("..."), "{}", note.len());
}

/// Health probes ask for the record several times a second; the API server hears about it at
/// most once per cache period, and a write of this daemon's is seen at once.
///
/// The cache runs on the wall clock, so the test measures rather than assumes: a run whose
/// reads did not all fall within the period of the read or write before them (a loaded
/// machine) proves nothing and is run again; the wait past the period is measured from after
/// the write, so it can only be longer than needed.
#[tokio::test]
async fn the_record_is_read_from_the_api_server_at_most_once_per_cache_period() {
    let period = Duration::from_secs(2);
    for attempt in 1..=5 {
        let annotations =
            json!({"redis-autopilot.io/master": "redis-0", "redis-autopilot.io/epoch": "1"});
        let fake = fake_with(1, annotations, &["127.0.0.1"]).await;
        let before_open = Instant::now();
        let cluster = open(&fake, free_port()).await;
        fake.clear_requests();
        for _ in 0..20 {
            let read = cluster.recorded_master().await.unwrap();
            assert_eq!(read, Some(MasterRecord::new("redis-0", 1)));
        }
        let cached = fake.actions();
        if before_open.elapsed() >= period {
            eprintln!("attempt {attempt}: the reads took {:?}", before_open.elapsed());
            continue;
        }
        assert!(cached.is_empty(), "{cached:?}");
        let next = MasterRecord::new("redis-0", 2);
        let before_write = Instant::now();
        cluster.record_master(next.clone()).await.unwrap();
        let after_write = Instant::now();
        fake.clear_requests();
        assert_eq!(cluster.recorded_master().await.unwrap(), Some(next));
        let cached = fake.actions();
        if before_write.elapsed() >= period {
            eprintln!("attempt {attempt}: the write and read took {:?}", before_write.elapsed());
            continue;
        }
        assert!(cached.is_empty(), "{cached:?}");
        tokio::time::sleep_until((after_write + period).into()).await;
        cluster.recorded_master().await.unwrap();
        let gets: Vec<_> = fake.actions().into_iter().map(|r| (r.method, r.path)).collect();
        assert_eq!(gets, [("GET".to_owned(), SET_PATH.to_owned())]);
        return;
    }
    panic!("no attempt made its reads within {period:?}");
}

/// Issue 14: the daemon's replicas share the policies. A candidate whose process already holds
/// Leases leaves a free one to an idle replica: it waits one retry period more, long here
/// (10 s), so the idle candidate wins on its first try, whatever the timing.
/// The holder writes its URL into the Lease, and every candidate publishes the holder's.
#[tokio::test]
async fn a_loaded_candidate_leaves_a_free_lease_to_an_idle_one_and_learns_its_url() {
    use redis_autopilot::cluster::kubernetes::lease::{Candidacy, URL_ANNOTATION};
    let fake = KubeFake::start().await;
    let client =
        KubeClient::from_config(fake.config()).expect("client").get().await.expect("client");
    let config = |lease: &str, identity: &str| LeaseConfig {
        name: lease.into(),
        lease_duration: Duration::from_secs(30),
        renew_deadline: Duration::from_secs(20),
        retry_period: Duration::from_secs(10),
        ..lease_config(identity)
    };
    // Process "busy" leads two policies: their Leases name it already (it restarted), so it
    // renews them at once.
    let busy = Candidacy::new(Some("http://10.0.0.1:9187".into()));
    let leases: kube::Api<k8s_openapi::api::coordination::v1::Lease> =
        kube::Api::namespaced(client.clone(), NS);
    let mut stops = Vec::new();
    for lease in ["policy-a", "policy-b"] {
        let held = serde_json::from_value(json!({
            "metadata": {"name": lease},
            "spec": {"holderIdentity": "busy", "leaseDurationSeconds": 30},
        }))
        .expect("a Lease");
        leases.create(&Default::default(), &held).await.expect("create the Lease");
        let (leader, mut following) = tokio::sync::watch::channel(false);
        let (url, _) = tokio::sync::watch::channel(None);
        let (stop, stopped) = tokio::sync::watch::channel(false);
        let elector =
            Elector::new(client.clone(), config(lease, "busy")).sharing(busy.clone(), url);
        tokio::spawn(elector.run(leader, stopped));
        tokio::time::timeout(Duration::from_secs(10), following.wait_for(|l| *l))
            .await
            .expect("busy leads")
            .expect("elector alive");
        stops.push(stop);
    }
    assert_eq!(busy.held(), 2);
    let holder_url = |lease: &str| {
        fake.lease(NS, lease)
            .and_then(|l| l["metadata"]["annotations"][URL_ANNOTATION].as_str().map(str::to_owned))
    };
    assert_eq!(holder_url("policy-a").as_deref(), Some("http://10.0.0.1:9187"));

    // A third policy's Lease, free: busy holds back, idle takes it.
    let (url, busy_sees) = tokio::sync::watch::channel(None);
    let mut loaded =
        Elector::new(client.clone(), config("policy-c", "busy")).sharing(busy.clone(), url);
    assert!(!loaded.try_acquire_or_renew().await.expect("a round"), "busy took a free Lease");
    let idle = Candidacy::new(Some("http://10.0.0.2:9187".into()));
    let (url, _) = tokio::sync::watch::channel(None);
    let mut fresh = Elector::new(client.clone(), config("policy-c", "idle")).sharing(idle, url);
    assert!(fresh.try_acquire_or_renew().await.expect("a round"), "idle did not take it");
    // Busy now sees idle's Lease, and where idle serves.
    assert!(!loaded.try_acquire_or_renew().await.expect("a round"));
    assert_eq!(busy_sees.borrow().as_deref(), Some("http://10.0.0.2:9187"));
    for stop in stops {
        let _ = stop.send(true);
    }
}
