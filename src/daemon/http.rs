//! The daemon's HTTP surface: probes for the kubelet, `/metrics` for Prometheus, recent
//! decisions for people, and the Alertmanager webhook that turns firing alerts into
//! [`AlertCommand`]s for the daemon.
//!
//! | route | answer |
//! |---|---|
//! | `GET /healthz` | 200 `ok` while the process serves |
//! | `GET /readyz` | 200 once every policy was evaluated; 503 with the reason before |
//! | `GET /metrics` | OpenMetrics text |
//! | `GET /v1/decisions?policy=NAME&limit=N` | recent decisions, newest first, JSON |
//! | `POST /v1/alerts` | Alertmanager webhook (bearer token when configured) |
//!
//! The webhook only *routes*: it never acts. Commands go into the [`AlertSink`] channel and
//! the daemon's policy tasks decide what they mean, so an alert cannot bypass leadership,
//! apply mode or the policy's limits.
//!
//! A standby refuses alerts for the policies it does not lead: `503` with `Connection:
//! close`. Alertmanager retries a 5xx on a new connection, which the Service may send to the
//! leader; accepted by a standby, the alert's action would only be dropped.

use std::collections::BTreeMap;
use std::future::Future;
use std::sync::{Arc, PoisonError, RwLock};

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde::{Deserialize, Serialize};
use subtle::ConstantTimeEq;
use tokio::sync::mpsc;

use super::metrics::{AlertOutcome, CONTENT_TYPE, Metrics};
use super::status::Status;
use crate::act::Leadership;
use crate::policy::{AlertAction, AlertRule, Policy};
use crate::sample::secret::Secret;

/// `/v1/decisions` without `limit`.
const DEFAULT_LIMIT: usize = 50;

/// One mapped firing alert, for the daemon to carry out under the named policy.
#[derive(Debug, Clone, PartialEq)]
pub struct AlertCommand {
    pub policy: String,
    pub alert_name: String,
    pub action: AlertAction,
}

/// The sending half of the daemon's alert channel.
#[derive(Debug, Clone)]
pub struct AlertSink(mpsc::Sender<AlertCommand>);

impl AlertSink {
    /// A sink and the receiver the daemon consumes. When `capacity` commands are queued the
    /// webhook waits for room, so Alertmanager's own timeout and retry apply back-pressure.
    pub fn channel(capacity: usize) -> (Self, mpsc::Receiver<AlertCommand>) {
        let (tx, rx) = mpsc::channel(capacity.max(1));
        (Self(tx), rx)
    }
}

/// Which policy maps which alert name: the `alerts[]` of every loaded policy, and whether
/// this daemon leads each policy. The daemon replaces the rules on policy reload; clones
/// share them.
#[derive(Debug, Clone, Default)]
pub struct AlertRoutes(Arc<RwLock<RouteTable>>);

#[derive(Debug, Default)]
struct RouteTable {
    /// Each policy's name and its `alerts[]`, in policy order.
    rules: Vec<(String, Vec<AlertRule>)>,
    /// The leader gate of each started policy; a policy without one leads (no election).
    leaders: BTreeMap<String, Leadership>,
}

impl AlertRoutes {
    pub fn new(policies: &[Policy]) -> Self {
        let routes = Self::default();
        routes.replace(policies);
        routes
    }

    /// Swaps in the routes of a reloaded policy set.
    pub fn replace(&self, policies: &[Policy]) {
        let rules = policies.iter().map(|p| (p.name.clone(), p.alerts.clone())).collect();
        // Each field is replaced whole, so a poisoned lock cannot hold a half-written one.
        let mut table = self.0.write().unwrap_or_else(PoisonError::into_inner);
        table.leaders.retain(|name, _| policies.iter().any(|p| &p.name == name));
        table.rules = rules;
    }

    /// Sets the leader gate `policy`'s actions obey, which its alerts obey too.
    pub fn lead(&self, policy: &str, leadership: Leadership) {
        let mut table = self.0.write().unwrap_or_else(PoisonError::into_inner);
        table.leaders.insert(policy.to_owned(), leadership);
    }

    /// The policies among `commands` this daemon does not lead now, each once.
    fn standby_for(&self, commands: &[AlertCommand]) -> Vec<String> {
        let table = self.0.read().unwrap_or_else(PoisonError::into_inner);
        let mut standby: Vec<String> = Vec::new();
        for command in commands {
            let leads = table.leaders.get(&command.policy).is_none_or(Leadership::is_leader);
            if !leads && !standby.contains(&command.policy) {
                standby.push(command.policy.clone());
            }
        }
        standby
    }

    /// Commands for a firing alert: every policy mapping `alert_name`, or only `only` when
    /// the alert names a policy.
    fn route(&self, alert_name: &str, only: Option<&str>) -> Vec<AlertCommand> {
        let table = self.0.read().unwrap_or_else(PoisonError::into_inner);
        table
            .rules
            .iter()
            .filter(|(policy, _)| only.is_none_or(|o| o == policy))
            .filter_map(|(policy, rules)| {
                rules.iter().find(|r| r.alert_name == alert_name).map(|rule| AlertCommand {
                    policy: policy.clone(),
                    alert_name: alert_name.to_owned(),
                    action: rule.action,
                })
            })
            .collect()
    }
}

#[derive(Debug, thiserror::Error)]
pub enum HttpError {
    #[error("the HTTP server failed")]
    Serve(#[source] std::io::Error),
}

#[derive(Clone)]
struct App {
    status: Status,
    metrics: Arc<Metrics>,
    alerts: AlertSink,
    routes: AlertRoutes,
    token: Option<Secret>,
}

/// Every route, with its shared state.
pub fn router(
    status: Status,
    metrics: Arc<Metrics>,
    alerts: AlertSink,
    routes: AlertRoutes,
    token: Option<Secret>,
) -> Router {
    Router::new()
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics_text))
        .route("/v1/decisions", get(decisions))
        .route("/v1/alerts", post(alert_webhook))
        .with_state(App { status, metrics, alerts, routes, token })
}

/// Serves `router` on `listener` until `shutdown` completes, then stops accepting and lets
/// in-flight requests finish.
pub async fn serve(
    listener: tokio::net::TcpListener,
    router: Router,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), HttpError> {
    axum::serve(listener, router).with_graceful_shutdown(shutdown).await.map_err(HttpError::Serve)
}

async fn healthz() -> &'static str {
    "ok"
}

async fn readyz(State(app): State<App>) -> Response {
    match app.status.waiting_for() {
        Ok(()) => "ready".into_response(),
        Err(why) => (StatusCode::SERVICE_UNAVAILABLE, why).into_response(),
    }
}

async fn metrics_text(State(app): State<App>) -> Response {
    match app.metrics.encode() {
        Ok(text) => ([(header::CONTENT_TYPE, CONTENT_TYPE)], text).into_response(),
        Err(error) => {
            tracing::error!(%error, "cannot encode the metrics");
            (StatusCode::INTERNAL_SERVER_ERROR, "cannot encode the metrics").into_response()
        }
    }
}

#[derive(Debug, Deserialize)]
struct DecisionsQuery {
    policy: Option<String>,
    limit: Option<usize>,
}

async fn decisions(
    State(app): State<App>,
    Query(query): Query<DecisionsQuery>,
) -> axum::Json<Vec<super::status::DecisionRecord>> {
    let limit = query.limit.unwrap_or(DEFAULT_LIMIT);
    axum::Json(app.status.recent(query.policy.as_deref(), limit))
}

/// Alertmanager's webhook body (version 4), reduced to what routing reads; every other field
/// Alertmanager sends (`groupLabels`, `startsAt`, `generatorURL`, ...) is accepted and ignored.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Webhook {
    #[serde(default)]
    group_key: String,
    alerts: Vec<Alert>,
}

#[derive(Debug, Deserialize)]
struct Alert {
    status: AlertStatus,
    labels: BTreeMap<String, String>,
    #[serde(default)]
    fingerprint: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
enum AlertStatus {
    Firing,
    Resolved,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct Mapped {
    policy: String,
    alert_name: String,
    action: ActionView,
}

/// [`AlertAction`] as the webhook's answer shows it.
#[derive(Debug, Serialize)]
#[serde(tag = "kind", rename_all = "camelCase")]
enum ActionView {
    Evaluate,
    ScaleUp { replicas: u16 },
    Snapshot,
}

impl From<AlertAction> for ActionView {
    fn from(action: AlertAction) -> Self {
        match action {
            AlertAction::Evaluate => ActionView::Evaluate,
            AlertAction::ScaleUp(replicas) => ActionView::ScaleUp { replicas },
            AlertAction::Snapshot => ActionView::Snapshot,
        }
    }
}

#[derive(Debug, Serialize)]
struct WebhookAnswer {
    mapped: Vec<Mapped>,
    unknown: Vec<String>,
}

fn unauthorized(why: &'static str) -> Response {
    tracing::warn!(why, "alert webhook request rejected");
    (
        StatusCode::UNAUTHORIZED,
        [(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"))],
        why,
    )
        .into_response()
}

/// Compares the presented bearer token with the configured one in time independent of where
/// they differ (the length may show; the token's value does not). `Err` says why not.
fn authorized(expected: &Secret, headers: &HeaderMap) -> Result<(), &'static str> {
    let Some(value) = headers.get(header::AUTHORIZATION) else {
        return Err("missing bearer token");
    };
    let presented = value.as_bytes();
    let scheme = b"bearer ";
    let token = match presented.get(..scheme.len()) {
        Some(prefix) if prefix.eq_ignore_ascii_case(scheme) => &presented[scheme.len()..],
        _ => return Err("missing bearer token"),
    };
    if bool::from(token.ct_eq(expected.expose().as_bytes())) {
        Ok(())
    } else {
        Err("wrong bearer token")
    }
}

async fn alert_webhook(State(app): State<App>, headers: HeaderMap, body: Bytes) -> Response {
    // Authenticate before parsing, so an unauthenticated caller learns nothing about the
    // body format.
    if let Some(token) = &app.token
        && let Err(why) = authorized(token, &headers)
    {
        return unauthorized(why);
    }
    let webhook: Webhook =
        match serde_path_to_error::deserialize(&mut serde_json::Deserializer::from_slice(&body)) {
            Ok(webhook) => webhook,
            Err(error) => {
                let message = format!("invalid Alertmanager webhook body: {error}");
                tracing::warn!(%message, "alert webhook request rejected");
                return (StatusCode::BAD_REQUEST, message).into_response();
            }
        };

    // Check every alert before counting or routing any, so a rejected body changes nothing.
    let mut firing = Vec::new();
    for (index, alert) in webhook.alerts.iter().enumerate() {
        if alert.status == AlertStatus::Resolved {
            continue;
        }
        let Some(name) = alert.labels.get("alertname") else {
            let message = format!(
                "invalid Alertmanager webhook body: alerts[{index}].labels.alertname: missing"
            );
            tracing::warn!(%message, "alert webhook request rejected");
            return (StatusCode::BAD_REQUEST, message).into_response();
        };
        firing.push((name, alert));
    }

    // Routed first and counted after, so a refusal by a standby counts nothing as mapped.
    let routed: Vec<_> = firing
        .into_iter()
        .map(|(name, alert)| {
            let only = alert.labels.get("policy").map(String::as_str);
            (name, alert, app.routes.route(name, only))
        })
        .collect();
    let all: Vec<AlertCommand> = routed.iter().flat_map(|(_, _, r)| r.iter().cloned()).collect();
    let standby = app.routes.standby_for(&all);
    if !standby.is_empty() {
        for _ in routed.iter().filter(|(_, _, r)| !r.is_empty()) {
            app.metrics.alert(AlertOutcome::Standby);
        }
        let message = format!(
            "this daemon is a standby for {}: retry, to reach the leader",
            standby.join(", ")
        );
        tracing::info!(group_key = %webhook.group_key, %message, "alert webhook request refused");
        // A new connection, which the Service may balance to the leader.
        return (StatusCode::SERVICE_UNAVAILABLE, [(header::CONNECTION, "close")], message)
            .into_response();
    }

    let mut commands: Vec<AlertCommand> = Vec::new();
    let mut answer = WebhookAnswer { mapped: Vec::new(), unknown: Vec::new() };
    for (name, alert, routed) in routed {
        let only = alert.labels.get("policy").map(String::as_str);
        if routed.is_empty() {
            tracing::info!(
                alert = %name,
                policy = only,
                fingerprint = %alert.fingerprint,
                group_key = %webhook.group_key,
                "firing alert mapped by no policy; acknowledged and ignored"
            );
            app.metrics.alert(AlertOutcome::Unknown);
            if !answer.unknown.contains(name) {
                answer.unknown.push(name.clone());
            }
            continue;
        }
        app.metrics.alert(AlertOutcome::Mapped);
        for command in routed {
            // One group often holds the same alert for several instances (pod-0, pod-1):
            // that is one condition, and `scaleUp: 2` must add two replicas, not four.
            if commands.contains(&command) {
                continue;
            }
            tracing::info!(
                policy = %command.policy,
                alert = %command.alert_name,
                action = ?command.action,
                fingerprint = %alert.fingerprint,
                "firing alert mapped to a policy action"
            );
            answer.mapped.push(Mapped {
                policy: command.policy.clone(),
                alert_name: command.alert_name.clone(),
                action: command.action.into(),
            });
            commands.push(command);
        }
    }

    for command in commands {
        if app.alerts.0.send(command).await.is_err() {
            // The daemon dropped its receiver: it is shutting down. 503 makes Alertmanager
            // retry, against the next replica or this one restarted.
            return (StatusCode::SERVICE_UNAVAILABLE, "the daemon is shutting down")
                .into_response();
        }
    }
    axum::Json(answer).into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn routes() -> AlertRoutes {
        let table = vec![
            (
                "cache".to_owned(),
                vec![AlertRule { alert_name: "RedisHot".into(), action: AlertAction::ScaleUp(2) }],
            ),
            (
                "sessions".to_owned(),
                vec![
                    AlertRule { alert_name: "RedisHot".into(), action: AlertAction::Evaluate },
                    AlertRule { alert_name: "DiskFull".into(), action: AlertAction::Snapshot },
                ],
            ),
        ];
        AlertRoutes(Arc::new(RwLock::new(RouteTable { rules: table, leaders: BTreeMap::new() })))
    }

    #[test]
    fn an_alert_routes_to_every_policy_mapping_it_or_only_the_named_one() {
        let routes = routes();
        let all: Vec<_> = routes.route("RedisHot", None).into_iter().map(|c| c.policy).collect();
        assert_eq!(all, ["cache", "sessions"]);
        let only = routes.route("RedisHot", Some("sessions"));
        assert_eq!(
            only,
            [AlertCommand {
                policy: "sessions".into(),
                alert_name: "RedisHot".into(),
                action: AlertAction::Evaluate
            }]
        );
        assert!(routes.route("DiskFull", Some("cache")).is_empty());
        assert!(routes.route("Nope", None).is_empty());
    }

    #[test]
    fn a_policy_leads_until_its_gate_says_otherwise() {
        let routes = routes();
        let commands = routes.route("RedisHot", None);
        assert!(routes.standby_for(&commands).is_empty(), "no gate: no election, leading");
        let (leader, following) = tokio::sync::watch::channel(false);
        routes.lead("sessions", Leadership::following(following));
        assert_eq!(routes.standby_for(&commands), ["sessions"]);
        assert!(routes.standby_for(&routes.route("RedisHot", Some("cache"))).is_empty());
        leader.send(true).unwrap();
        assert!(routes.standby_for(&commands).is_empty());
        // A removed policy's gate goes with it.
        routes.replace(&[]);
        assert!(routes.0.read().unwrap().leaders.is_empty());
    }

    #[test]
    fn the_token_is_checked_with_the_bearer_scheme() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("token");
        std::fs::write(&path, "s3cret\n").unwrap();
        let secret = crate::sample::secret::read(&crate::policy::SecretSource::File(path)).unwrap();
        let mut headers = HeaderMap::new();
        assert!(authorized(&secret, &headers).is_err());
        headers.insert(header::AUTHORIZATION, HeaderValue::from_static("Basic s3cret"));
        assert!(authorized(&secret, &headers).is_err());
        headers.insert(header::AUTHORIZATION, HeaderValue::from_static("bearer s3cre"));
        assert!(authorized(&secret, &headers).is_err());
        headers.insert(header::AUTHORIZATION, HeaderValue::from_static("Bearer s3cret"));
        assert!(authorized(&secret, &headers).is_ok());
    }
}
