//! The daemon's HTTP surface through a real listener on a loopback port, read with a real HTTP
//! client: probes, `/metrics` parsed as Prometheus parses it, recent decisions, and the
//! Alertmanager webhook fed the JSON Alertmanager sends.

use std::sync::Arc;
use std::time::Duration;

use chrono::{TimeZone, Utc};
use prometheus_parse::{Scrape, Value};
use redis_autopilot::act::{ActionOutcome, Leadership};
use redis_autopilot::daemon::{
    AlertCommand, AlertRoutes, AlertSink, DaemonView, DecisionRecord, HttpLimits, Metrics, Source,
    Status, WebhookAuth, router, serve,
};
use redis_autopilot::decide::{ScalingDecision, ScalingReason};
use redis_autopilot::observe::Outcome;
use redis_autopilot::policy::{AlertAction, Policy, SecretSource, load_policy_str};
use redis_autopilot::sample::secret::{self, Secret};
use tokio::sync::{mpsc, oneshot};

const TOKEN: &str = "webhook-s3cret";

fn policy(name: &str, alerts: &str) -> Policy {
    let yaml = format!(
        "apiVersion: autopilot.redis.io/v1alpha1
kind: RedisPolicy
metadata:
  name: {name}
spec:
  target:
    endpoints: [\"127.0.0.1:6379\"]
  scaling:
    minReplicas: 1
    maxReplicas: 4
    metrics:
      - redis: instantaneous_ops_per_sec
        target: 1000
  alerts:
{alerts}"
    );
    load_policy_str(&format!("{name}.yaml"), &yaml)
        .unwrap_or_else(|d| panic!("test policy {name} is invalid: {d:?}"))
}

fn policies() -> Vec<Policy> {
    vec![
        policy(
            "checkout",
            "    - alertname: RedisLatencyHigh\n      action: {scaleUp: 2}\n\
             \x20   - alertname: RedisMasterDown\n      action: evaluate\n",
        ),
        policy("sessions", "    - alertname: RedisLatencyHigh\n      action: evaluate\n"),
    ]
}

fn token() -> (tempfile::TempDir, Secret) {
    let dir = tempfile::tempdir().expect("a temp dir");
    let path = dir.path().join("token");
    std::fs::write(&path, format!("{TOKEN}\n")).expect("write the token file");
    let secret = secret::read(&SecretSource::File(path)).expect("read the token file");
    (dir, secret)
}

/// A running server; stops gracefully on drop of `shutdown`.
struct Server {
    base: String,
    status: Status,
    metrics: Arc<Metrics>,
    routes: AlertRoutes,
    commands: mpsc::Receiver<AlertCommand>,
    client: reqwest::Client,
    shutdown: Option<oneshot::Sender<()>>,
    task: tokio::task::JoinHandle<()>,
    _token_dir: tempfile::TempDir,
}

impl Server {
    async fn start() -> Self {
        Self::start_with(Status::default()).await
    }

    async fn start_with(status: Status) -> Self {
        let (dir, token) = token();
        let metrics = Arc::new(Metrics::new());
        let (sink, commands) = AlertSink::channel(16);
        let routes = AlertRoutes::new(&policies());
        let limits = HttpLimits::default();
        let webhook = WebhookAuth::Token(token);
        let view = DaemonView {
            identity: "test".into(),
            mode: redis_autopilot::act::Mode::Apply,
            pauses: redis_autopilot::act::Pauses::default(),
        };
        let app =
            router(status.clone(), view, metrics.clone(), sink, routes.clone(), webhook, &limits);
        let listener =
            tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind a loopback port");
        let base = format!("http://{}", listener.local_addr().expect("the bound address"));
        let (shutdown, stop) = oneshot::channel::<()>();
        let server_metrics = metrics.clone();
        let task = tokio::spawn(async move {
            serve(listener, app, limits, server_metrics, async {
                let _ = stop.await;
            })
            .await
            .expect("server runs until shutdown");
        });
        Self {
            base,
            status,
            metrics,
            routes,
            commands,
            client: reqwest::Client::new(),
            shutdown: Some(shutdown),
            task,
            _token_dir: dir,
        }
    }

    async fn get(&self, path: &str) -> reqwest::Response {
        self.client.get(format!("{}{path}", self.base)).send().await.expect("GET answered")
    }

    async fn webhook(&self, auth: Option<&str>, body: &str) -> reqwest::Response {
        let mut request = self
            .client
            .post(format!("{}/v1/alerts", self.base))
            .header("content-type", "application/json")
            .body(body.to_owned());
        if let Some(auth) = auth {
            request = request.header("authorization", auth);
        }
        request.send().await.expect("POST answered")
    }

    async fn stop(mut self) {
        if let Some(shutdown) = self.shutdown.take() {
            let _ = shutdown.send(());
        }
        tokio::time::timeout(Duration::from_secs(5), &mut self.task)
            .await
            .expect("graceful shutdown completes")
            .expect("the server task did not panic");
    }
}

fn bearer() -> String {
    format!("Bearer {TOKEN}")
}

fn hold(policy: &str, s: i64, replicas: u16) -> DecisionRecord {
    let at = Utc.with_ymd_and_hms(2026, 11, 24, 0, 0, 0).unwrap() + chrono::Duration::seconds(s);
    let reason = ScalingReason {
        current: replicas,
        ready: replicas,
        readings: vec![],
        proposed: replicas,
        adjustments: vec![],
        result: replicas,
    };
    DecisionRecord::new(at, policy, ScalingDecision::Hold { replicas, reason }, None)
}

fn scale(from: u16, to: u16) -> ScalingDecision {
    ScalingDecision::Scale {
        from,
        to,
        reason: ScalingReason {
            current: from,
            ready: from,
            readings: vec![],
            proposed: to,
            adjustments: vec![],
            result: to,
        },
    }
}

/// As Alertmanager 0.27 posts it: one group, two firing alerts (one mapped by `checkout`
/// and `sessions`, one mapped by nobody) and one resolved mapped alert.
fn alertmanager_payload() -> String {
    r#"{
  "receiver": "redis-autopilot",
  "status": "firing",
  "alerts": [
    {
      "status": "firing",
      "labels": {
        "alertname": "RedisLatencyHigh",
        "namespace": "shop",
        "policy": "checkout",
        "severity": "warning"
      },
      "annotations": {"summary": "p99 latency above 5ms for 5m"},
      "startsAt": "2026-11-24T10:00:00.000Z",
      "endsAt": "0001-01-01T00:00:00Z",
      "generatorURL": "http://prometheus:9090/graph?g0.expr=redis_latency_p99+%3E+0.005",
      "fingerprint": "4a2c1b7f9e3d5a60"
    },
    {
      "status": "firing",
      "labels": {"alertname": "NodeDiskAlmostFull", "namespace": "shop", "severity": "info"},
      "annotations": {},
      "startsAt": "2026-11-24T10:01:00.000Z",
      "endsAt": "0001-01-01T00:00:00Z",
      "generatorURL": "http://prometheus:9090/graph?g0.expr=disk",
      "fingerprint": "9f8e7d6c5b4a3921"
    },
    {
      "status": "resolved",
      "labels": {"alertname": "RedisMasterDown", "namespace": "shop"},
      "annotations": {},
      "startsAt": "2026-11-24T09:00:00.000Z",
      "endsAt": "2026-11-24T09:05:00.000Z",
      "generatorURL": "http://prometheus:9090/graph?g0.expr=up",
      "fingerprint": "0011223344556677"
    }
  ],
  "groupLabels": {"namespace": "shop"},
  "commonLabels": {"namespace": "shop"},
  "commonAnnotations": {},
  "externalURL": "http://alertmanager:9093",
  "version": "4",
  "groupKey": "{}:{namespace=\"shop\"}",
  "truncatedAlerts": 0
}"#
    .to_owned()
}

/// The value of the one sample of `name` whose labels include all of `labels`.
fn value(scrape: &Scrape, name: &str, labels: &[(&str, &str)]) -> f64 {
    let matching: Vec<_> = scrape
        .samples
        .iter()
        .filter(|s| s.metric == name)
        .filter(|s| labels.iter().all(|(k, v)| s.labels.get(k) == Some(*v)))
        .collect();
    assert_eq!(matching.len(), 1, "{name} {labels:?}: {matching:#?}");
    match &matching[0].value {
        Value::Counter(v) | Value::Gauge(v) | Value::Untyped(v) => *v,
        Value::Histogram(buckets) => buckets.last().map_or(0.0, |b| b.count),
        other => panic!("{name}: unexpected {other:?}"),
    }
}

#[tokio::test]
async fn health_is_200_and_readiness_waits_for_every_policy() {
    let server = Server::start().await;
    let health = server.get("/healthz").await;
    assert_eq!(health.status(), 200);
    assert_eq!(health.text().await.unwrap(), "ok");

    let before = server.get("/readyz").await;
    assert_eq!(before.status(), 503);
    assert_eq!(before.text().await.unwrap(), "no policy loaded yet");

    server.status.policy_loaded("checkout");
    server.status.policy_loaded("sessions");
    server.status.first_decision("checkout");
    let partial = server.get("/readyz").await;
    assert_eq!(partial.status(), 503);
    assert!(partial.text().await.unwrap().contains("sessions"));

    server.status.first_decision("sessions");
    assert_eq!(server.get("/readyz").await.status(), 200);
    server.stop().await;
}

#[tokio::test]
async fn metrics_parse_as_prometheus_text_with_every_family_and_label_set() {
    let server = Server::start().await;
    let metrics = &server.metrics;
    metrics.sample("checkout", Source::Redis, &Outcome::Ok);
    metrics.sample("checkout", Source::Redis, &Outcome::Ok);
    metrics.sample("checkout", Source::Redis, &Outcome::Timeout);
    metrics.sample("checkout", Source::Prometheus, &Outcome::Refused);
    metrics.decision("checkout", scale(2, 3).kind());
    metrics.decision("sessions", hold("sessions", 0, 1).decision.kind());
    metrics.action("checkout", "scale", &ActionOutcome::Applied, Some(Duration::from_millis(40)));
    metrics.action("checkout", "scale", &ActionOutcome::Failed { error: "forbidden".into() }, None);
    metrics.replicas("checkout", 2, 3);

    let response = server.get("/metrics").await;
    assert_eq!(response.status(), 200);
    let content_type = response.headers()["content-type"].to_str().unwrap().to_owned();
    assert!(content_type.starts_with("application/openmetrics-text; version=1.0.0"));
    let text = response.text().await.unwrap();
    let scrape = Scrape::parse(text.lines().map(|l| Ok(l.to_owned()))).unwrap();

    let samples = "redis_autopilot_samples_total";
    let redis = [("policy", "checkout"), ("source", "redis")];
    assert_eq!(value(&scrape, samples, &[redis[0], redis[1], ("outcome", "ok")]), 2.0);
    assert_eq!(value(&scrape, samples, &[redis[0], redis[1], ("outcome", "timeout")]), 1.0);
    assert_eq!(value(&scrape, samples, &[("source", "prometheus"), ("outcome", "refused")]), 1.0);
    let decisions = "redis_autopilot_decisions_total";
    assert_eq!(value(&scrape, decisions, &[("policy", "checkout"), ("kind", "scale")]), 1.0);
    assert_eq!(value(&scrape, decisions, &[("policy", "sessions"), ("kind", "hold")]), 1.0);
    let actions = "redis_autopilot_actions_total";
    assert_eq!(value(&scrape, actions, &[("kind", "scale"), ("outcome", "applied")]), 1.0);
    assert_eq!(value(&scrape, actions, &[("kind", "scale"), ("outcome", "failed")]), 1.0);
    let duration = "redis_autopilot_action_duration_seconds";
    assert_eq!(value(&scrape, duration, &[("policy", "checkout"), ("kind", "scale")]), 1.0);
    assert_eq!(value(&scrape, "redis_autopilot_replicas_current", &[("policy", "checkout")]), 2.0);
    assert_eq!(value(&scrape, "redis_autopilot_replicas_desired", &[("policy", "checkout")]), 3.0);
    assert!(!text.contains("forbidden"), "error text never becomes a label:\n{text}");

    // The webhook's counter appears once an alert arrived.
    assert_eq!(server.webhook(Some(&bearer()), &alertmanager_payload()).await.status(), 200);
    let text = server.get("/metrics").await.text().await.unwrap();
    let scrape = Scrape::parse(text.lines().map(|l| Ok(l.to_owned()))).unwrap();
    let alerts = "redis_autopilot_alerts_received_total";
    assert_eq!(value(&scrape, alerts, &[("outcome", "mapped")]), 1.0);
    assert_eq!(value(&scrape, alerts, &[("outcome", "unknown")]), 1.0);
    server.stop().await;
}

#[tokio::test]
async fn decisions_are_newest_first_filtered_by_policy_and_limited() {
    let server = Server::start_with(Status::new(5)).await;
    for s in 0..8 {
        let policy = if s % 2 == 0 { "checkout" } else { "sessions" };
        server.status.record(hold(policy, s, 2));
    }
    let mut failed = hold("checkout", 8, 2);
    failed.decision = scale(2, 3).into();
    failed.sentence = failed.decision.sentence();
    failed.action = Some(ActionOutcome::Failed { error: "patch forbidden".into() });
    server.status.record(failed);

    let all: serde_json::Value = server.get("/v1/decisions").await.json().await.unwrap();
    let all = all.as_array().unwrap();
    assert_eq!(all.len(), 5, "the ring keeps only its capacity");
    let seconds: Vec<_> =
        all.iter().map(|r| r["at"].as_str().unwrap()[17..19].to_owned()).collect();
    assert_eq!(seconds, ["08", "07", "06", "05", "04"]);
    assert_eq!(all[0]["decision"]["kind"], "scale");
    assert_eq!(all[0]["action"]["outcome"], "failed");
    assert!(all.iter().all(|r| !r["sentence"].as_str().unwrap().is_empty()));

    let checkout: serde_json::Value =
        server.get("/v1/decisions?policy=checkout&limit=2").await.json().await.unwrap();
    let checkout = checkout.as_array().unwrap();
    assert_eq!(checkout.len(), 2);
    assert!(checkout.iter().all(|r| r["policy"] == "checkout"));
    assert_eq!(checkout[0]["at"], "2026-11-24T00:00:08Z");

    assert_eq!(server.get("/v1/decisions?limit=many").await.status(), 400);
    server.stop().await;
}

#[tokio::test]
async fn a_real_alertmanager_payload_maps_firing_alerts_and_acknowledges_the_rest() {
    let mut server = Server::start().await;
    let response = server.webhook(Some(&bearer()), &alertmanager_payload()).await;
    assert_eq!(response.status(), 200);
    let answer: serde_json::Value = response.json().await.unwrap();
    assert_eq!(
        answer,
        serde_json::json!({
            "mapped": [{
                "policy": "checkout",
                "alertName": "RedisLatencyHigh",
                "action": {"kind": "scaleUp", "replicas": 2}
            }],
            "unknown": ["NodeDiskAlmostFull"]
        })
    );
    let command = server.commands.try_recv().unwrap();
    assert_eq!(
        command,
        AlertCommand {
            policy: "checkout".into(),
            alert_name: "RedisLatencyHigh".into(),
            action: AlertAction::ScaleUp(2)
        }
    );
    assert!(server.commands.try_recv().is_err(), "the resolved alert sends nothing");
    server.stop().await;
}

/// A standby refuses an alert for a policy it does not lead with a 503 that closes the
/// connection, so Alertmanager's retry can reach the leader; nothing is sent or counted as
/// mapped. Leading again, the same payload is accepted.
#[tokio::test]
async fn a_standby_refuses_alerts_with_a_retryable_503_on_a_closed_connection() {
    let mut server = Server::start().await;
    let (leader, following) = tokio::sync::watch::channel(false);
    server.routes.lead("checkout", Leadership::following(following));

    let response = server.webhook(Some(&bearer()), &alertmanager_payload()).await;
    assert_eq!(response.status(), 503);
    assert_eq!(response.headers()["connection"], "close");
    let message = response.text().await.unwrap();
    assert!(message.contains("standby for checkout"), "{message}");
    assert!(server.commands.try_recv().is_err(), "a standby sends nothing");
    let text = server.get("/metrics").await.text().await.unwrap();
    let scrape = Scrape::parse(text.lines().map(|l| Ok(l.to_owned()))).unwrap();
    let alerts = "redis_autopilot_alerts_received_total";
    assert_eq!(value(&scrape, alerts, &[("outcome", "standby")]), 1.0);
    assert!(!text.contains(r#"outcome="mapped""#), "{text}");

    leader.send(true).unwrap();
    let response = server.webhook(Some(&bearer()), &alertmanager_payload()).await;
    assert_eq!(response.status(), 200);
    assert_eq!(server.commands.try_recv().unwrap().policy, "checkout");
    server.stop().await;
}

#[tokio::test]
async fn an_alert_without_a_policy_label_goes_to_every_policy_mapping_it_once() {
    let mut server = Server::start().await;
    // One group, the same alert for two pods: one condition, so one command per policy.
    let alert = |pod: &str| {
        format!(
            r#"{{"status":"firing","labels":{{"alertname":"RedisLatencyHigh","pod":"{pod}"}},
            "annotations":{{}},"startsAt":"2026-11-24T10:00:00Z","endsAt":"0001-01-01T00:00:00Z",
            "generatorURL":"","fingerprint":"{pod}"}}"#
        )
    };
    let body = format!(
        r#"{{"version":"4","status":"firing","receiver":"r","groupLabels":{{}},
        "commonLabels":{{}},"commonAnnotations":{{}},"externalURL":"http://am","groupKey":"g",
        "truncatedAlerts":0,"alerts":[{},{}]}}"#,
        alert("redis-0"),
        alert("redis-1")
    );
    let response = server.webhook(Some(&bearer()), &body).await;
    assert_eq!(response.status(), 200);
    let answer: serde_json::Value = response.json().await.unwrap();
    assert_eq!(answer["mapped"].as_array().unwrap().len(), 2, "{answer}");
    let first = server.commands.try_recv().unwrap();
    let second = server.commands.try_recv().unwrap();
    assert_eq!((first.policy.as_str(), first.action), ("checkout", AlertAction::ScaleUp(2)));
    assert_eq!((second.policy.as_str(), second.action), ("sessions", AlertAction::Evaluate));
    assert!(server.commands.try_recv().is_err(), "no duplicate for the second pod");
    server.stop().await;
}

#[tokio::test]
async fn only_resolved_alerts_send_no_command() {
    let mut server = Server::start().await;
    let body = alertmanager_payload().replace(r#""status": "firing","#, r#""status": "resolved","#);
    let response = server.webhook(Some(&bearer()), &body).await;
    assert_eq!(response.status(), 200);
    let answer: serde_json::Value = response.json().await.unwrap();
    assert_eq!(answer, serde_json::json!({"mapped": [], "unknown": []}));
    assert!(server.commands.try_recv().is_err());
    server.stop().await;
}

#[tokio::test]
async fn the_webhook_needs_the_right_bearer_token() {
    let mut server = Server::start().await;
    for auth in
        [None, Some("Bearer not-the-token"), Some("Basic d2ViaG9vazpzM2NyZXQ="), Some("Bearer")]
    {
        let response = server.webhook(auth, &alertmanager_payload()).await;
        assert_eq!(response.status(), 401, "{auth:?}");
        assert_eq!(response.headers()["www-authenticate"], "Bearer");
        let text = response.text().await.unwrap();
        assert!(!text.contains(TOKEN), "{text}");
    }
    // Checked before the body is read: a bad body without a token is still 401.
    assert_eq!(server.webhook(None, "{").await.status(), 401);
    assert!(server.commands.try_recv().is_err());
    server.stop().await;
}

#[tokio::test]
async fn malformed_webhook_bodies_are_400_naming_the_problem() {
    let mut server = Server::start().await;
    let cases = [
        ("{\"alerts\": [", "EOF"),
        (r#"{"version":"4"}"#, "missing field `alerts`"),
        (r#"{"alerts":[{"status":"pending","labels":{}}]}"#, "alerts[0].status"),
        (r#"{"alerts":[{"status":"firing","labels":{"alertname":3}}]}"#, "alerts[0].labels"),
        (r#"{"alerts":[{"status":"firing","labels":{}}]}"#, "alerts[0].labels.alertname: missing"),
        // A valid mapped alert before a broken one: the whole body is refused, nothing sent.
        (
            r#"{"alerts":[{"status":"firing","labels":{"alertname":"RedisLatencyHigh"}},
                          {"status":"firing","labels":{}}]}"#,
            "alerts[1].labels.alertname: missing",
        ),
    ];
    for (body, expected) in cases {
        let response = server.webhook(Some(&bearer()), body).await;
        assert_eq!(response.status(), 400, "{body}");
        let text = response.text().await.unwrap();
        assert!(text.starts_with("invalid Alertmanager webhook body"), "{text}");
        assert!(text.contains(expected), "{body}: {text}");
    }
    assert!(server.commands.try_recv().is_err());
    let metrics = server.get("/metrics").await.text().await.unwrap();
    assert!(!metrics.contains("alerts_received_total{"), "a refused body counts nothing");
    server.stop().await;
}
