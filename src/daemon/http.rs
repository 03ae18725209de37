//! The daemon's HTTP surface: probes for the kubelet, `/metrics` for Prometheus, recent
//! decisions for people, and the Alertmanager webhook that turns firing alerts into
//! [`AlertCommand`]s for the daemon.
//!
//! | route | answer |
//! |---|---|
//! | `GET /healthz` | 200 `ok` while the process serves |
//! | `GET /readyz` | 200 once every policy was evaluated; 503 with the reason before |
//! | `GET /metrics` | OpenMetrics text |
//! | `GET /v1/decisions?policy=NAME&limit=N` | recent decisions, newest first, JSON; a policy it knows nothing of: 404 with the names it knows |
//! | `GET /v1/policies` | each loaded policy: whether this daemon leads it, whether it is paused, the mode and the daemon's identity (what `redis-autopilot status` asks) |
//! | `POST /v1/alerts` | Alertmanager webhook: bearer token, or explicitly open, or 404 (disabled) |
//!
//! The webhook only *routes*: it never acts. Commands go into the [`AlertSink`] channel and
//! the daemon's policy tasks decide what they mean, so an alert cannot bypass leadership,
//! apply mode or the policy's limits.
//!
//! Each policy has its own leader among the daemon's replicas, so one request may carry alerts
//! for policies led by different replicas. A replica sends the alerts of the policies it
//! does not lead on to their leaders (the URL each leader writes into its Lease), with the
//! caller's credentials and a [`FORWARDED_HEADER`], and answers once every leader accepted
//! its share; only then does it hand its own share to its policies. A forwarded request is
//! never forwarded again. When a leader is unknown (no URL in its Lease, or the Lease just
//! moved) or does not accept, the whole request is refused with `503` and `Connection:
//! close`: Alertmanager retries a 5xx, on a new connection the Service may send elsewhere.
//!
//! **Hostile callers.** The listener may face anything that reaches the pod, so every
//! resource a caller can hold is bounded ([`HttpLimits`]): connections (past the cap a new
//! one is accepted and closed at once, and never more than half the process's open-file
//! limit), the time to send a request's headers (which also ends idle keep-alive
//! connections), the size of those headers, requests in handlers at once, and for the
//! webhook: the token is checked on the headers before any body byte is read, bodies are
//! capped ([`MAX_WEBHOOK_BODY`]) and read a few at a time under the same timeout, and one
//! request carries at most [`MAX_ALERTS`] alerts. Routing is linear in the alerts, and
//! anything from the request that is logged goes through [`escaped`] first.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::future::Future;
use std::pin::pin;
use std::sync::{Arc, Mutex, PoisonError, RwLock};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Body;
use axum::extract::{Query, Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use futures::StreamExt as _;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use serde::{Deserialize, Serialize};
use subtle::ConstantTimeEq;
use tokio::sync::{Semaphore, mpsc, watch};
use tokio::task::JoinSet;

use super::metrics::{AlertOutcome, CONTENT_TYPE, ConnectionError, Metrics, Refusal};
use super::status::Status;
use crate::act::Leadership;
use crate::policy::{AlertAction, Policy, SecretSource};
use crate::sample::secret::{self, Secret};

/// `/v1/decisions` without `limit`.
const DEFAULT_LIMIT: usize = 50;
/// The largest webhook body read. Alertmanager sends one group per request, and an alert with
/// its labels, annotations and generator URL is well under a kilobyte: [`MAX_ALERTS`] of them
/// fit.
pub const MAX_WEBHOOK_BODY: usize = 1024 * 1024;
/// The most alerts one webhook request may carry (Alertmanager's `max_alerts` truncates a
/// group to this; the deploy example sets it).
pub const MAX_ALERTS: usize = 1000;
/// Webhook bodies read at once; past it `503` with `Retry-After`, so at most this many times
/// [`MAX_WEBHOOK_BODY`] is buffered, whoever sends.
const WEBHOOK_BODIES_IN_FLIGHT: usize = 4;
/// hyper's read buffer per connection, which bounds a request's headers: Alertmanager's,
/// Prometheus's and the kubelet's are a few hundred bytes.
const MAX_HEAD_BYTES: usize = 64 * 1024;
/// At most this many characters of a logged request value (an alert name can be megabytes).
const MAX_LOGGED_CHARS: usize = 128;
/// Unknown alert names the summary log line shows; the rest are counted.
const UNKNOWN_SHOWN: usize = 5;
/// Marks a webhook request one replica sent on to another (its value: the sender's identity).
/// Such a request is never sent on again, so two replicas that each think the other leads
/// cannot pass it back and forth.
pub const FORWARDED_HEADER: &str = "x-redis-autopilot-forwarded-by";
/// The policies a forwarded request was sent on for (comma-separated): the receiver acts on
/// those only. The request carries the whole body, whose other alerts belong to other leaders.
pub const FORWARDED_FOR_HEADER: &str = "x-redis-autopilot-forwarded-for";
/// How long a leader has to accept forwarded alerts.
const FORWARD_TIMEOUT: Duration = Duration::from_secs(5);
/// A rejected webhook caller is logged at most once per this, with a count of the others.
const REJECTION_LOG_EVERY: Duration = Duration::from_secs(10);
/// After a failed `accept` (out of file descriptors, say), wait this long before the next,
/// rather than spin: a closing connection frees what it needs.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(100);
/// How long shutdown waits for open connections to finish their request.
const DRAIN_GRACE: Duration = Duration::from_secs(10);

/// What the HTTP listener lets callers hold. The defaults suit a pod facing Prometheus,
/// Alertmanager and the kubelet; a connection flood past them is refused, not queued.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpLimits {
    /// Connections open at once; past it a new connection is accepted and closed. Never more
    /// than half the open-file limit ([`HttpLimits::connection_cap`]).
    pub max_connections: usize,
    /// How long a caller has to send a request's headers (and, idle, the next request's) and
    /// a webhook body.
    pub read_timeout: Duration,
    /// Requests in handlers at once; past it `503` with `Retry-After`.
    pub max_requests: usize,
}

impl Default for HttpLimits {
    fn default() -> Self {
        Self { max_connections: 256, read_timeout: Duration::from_secs(10), max_requests: 64 }
    }
}

impl HttpLimits {
    /// The connection cap applied: `max_connections`, lowered to half the process's
    /// open-file limit so that HTTP callers can never take the descriptors Redis connections,
    /// the API client and snapshot uploads need.
    pub fn connection_cap(&self) -> usize {
        let cap = match super::metrics::process::max_fds() {
            Some(max_fds) => self.max_connections.min(usize::try_from(max_fds / 2).unwrap_or(0)),
            None => self.max_connections,
        };
        cap.max(1)
    }
}

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

/// How `POST /v1/alerts` is reached, as the command line says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WebhookAccess {
    /// Callers present this bearer token.
    Token(SecretSource),
    /// Anyone who reaches the port (`--webhook-insecure-no-token`).
    InsecureNoToken,
    /// The route answers 404: no token was configured and no one opted out of one.
    Disabled,
}

/// [`WebhookAccess`] with the token read.
#[derive(Debug, Clone)]
pub enum WebhookAuth {
    Token(Secret),
    InsecureNoToken,
    Disabled,
}

#[derive(Debug, thiserror::Error)]
pub enum WebhookTokenError {
    #[error("cannot read the webhook token")]
    Read(#[source] secret::SecretError),
    /// An empty token would let `Authorization: Bearer ` through.
    #[error("the webhook token from {0} is empty")]
    Empty(String),
}

impl WebhookAuth {
    /// Reads the token now and says at start how the webhook is reached. An empty token (or
    /// one of only whitespace) is an error, never an open webhook.
    pub fn resolve(access: &WebhookAccess) -> Result<Self, WebhookTokenError> {
        match access {
            WebhookAccess::Token(source) => {
                let token = secret::read(source).map_err(WebhookTokenError::Read)?;
                if token.expose().trim().is_empty() {
                    let from = match source {
                        SecretSource::Env(name) => format!("environment variable `{name}`"),
                        SecretSource::File(path) => format!("file `{}`", path.display()),
                    };
                    return Err(WebhookTokenError::Empty(from));
                }
                tracing::info!("POST /v1/alerts requires the bearer token");
                Ok(Self::Token(token))
            }
            WebhookAccess::InsecureNoToken => {
                tracing::warn!(
                    "POST /v1/alerts accepts any caller (--webhook-insecure-no-token): anyone \
                     who reaches the port can trigger scale-ups, evaluations and snapshots"
                );
                Ok(Self::InsecureNoToken)
            }
            WebhookAccess::Disabled => {
                tracing::info!(
                    "POST /v1/alerts is disabled (404): pass --alerts-token-file or \
                     --alerts-token-env to enable it"
                );
                Ok(Self::Disabled)
            }
        }
    }
}

/// Which policy maps which alert name: the `alerts[]` of every loaded policy, and whether
/// this daemon leads each policy. The daemon replaces the rules on policy reload; clones
/// share them.
#[derive(Debug, Clone, Default)]
pub struct AlertRoutes(Arc<RwLock<RouteTable>>);

#[derive(Debug, Default)]
struct RouteTable {
    /// Alert name -> each policy mapping it (in policy order) and its action: one lookup
    /// per alert, however many policies and rules there are.
    by_alert: HashMap<String, Vec<(String, AlertAction)>>,
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
        let mut by_alert: HashMap<String, Vec<(String, AlertAction)>> = HashMap::new();
        for policy in policies {
            let mut seen = HashSet::new();
            for rule in &policy.alerts {
                // A policy's first rule for a name wins, as a scan of its rules would find.
                if seen.insert(rule.alert_name.as_str()) {
                    let entry = by_alert.entry(rule.alert_name.clone()).or_default();
                    entry.push((policy.name.clone(), rule.action));
                }
            }
        }
        // Each field is replaced whole, so a poisoned lock cannot hold a half-written one.
        let mut table = self.0.write().unwrap_or_else(PoisonError::into_inner);
        table.leaders.retain(|name, _| policies.iter().any(|p| &p.name == name));
        table.by_alert = by_alert;
    }

    /// Sets the leader gate `policy`'s actions obey, which its alerts obey too.
    pub fn lead(&self, policy: &str, leadership: Leadership) {
        let mut table = self.0.write().unwrap_or_else(PoisonError::into_inner);
        table.leaders.insert(policy.to_owned(), leadership);
    }

    /// Whether this daemon leads `policy` now (a policy without a gate leads: no election).
    fn leads(&self, policy: &str) -> bool {
        let table = self.0.read().unwrap_or_else(PoisonError::into_inner);
        table.leaders.get(policy).is_none_or(Leadership::is_leader)
    }

    /// Where the leader of each of `policies` serves; `Err` names those whose leader is not
    /// known.
    fn leaders_of(
        &self,
        policies: &[String],
    ) -> Result<BTreeMap<String, Vec<String>>, Vec<String>> {
        let table = self.0.read().unwrap_or_else(PoisonError::into_inner);
        let mut by_url: BTreeMap<String, Vec<String>> = BTreeMap::new();
        let mut unknown = Vec::new();
        for policy in policies {
            match table.leaders.get(policy).and_then(Leadership::leader_url) {
                Some(url) => by_url.entry(url).or_default().push(policy.clone()),
                None => unknown.push(policy.clone()),
            }
        }
        if unknown.is_empty() { Ok(by_url) } else { Err(unknown) }
    }

    /// The policies among `commands` this daemon does not lead now, each once, in order.
    fn standby_for(&self, commands: &[AlertCommand]) -> Vec<String> {
        let table = self.0.read().unwrap_or_else(PoisonError::into_inner);
        let mut checked: HashSet<&str> = HashSet::new();
        let mut standby: Vec<String> = Vec::new();
        for command in commands {
            if !checked.insert(command.policy.as_str()) {
                continue;
            }
            let leads = table.leaders.get(&command.policy).is_none_or(Leadership::is_leader);
            if !leads {
                standby.push(command.policy.clone());
            }
        }
        standby
    }

    /// Commands for a firing alert: every policy mapping `alert_name`, or only `only` when
    /// the alert names a policy.
    fn route(&self, alert_name: &str, only: Option<&str>) -> Vec<AlertCommand> {
        let table = self.0.read().unwrap_or_else(PoisonError::into_inner);
        let Some(mapped) = table.by_alert.get(alert_name) else { return Vec::new() };
        mapped
            .iter()
            .filter(|(policy, _)| only.is_none_or(|o| o == policy))
            .map(|(policy, action)| AlertCommand {
                policy: policy.clone(),
                alert_name: alert_name.to_owned(),
                action: *action,
            })
            .collect()
    }
}

#[derive(Debug, thiserror::Error)]
pub enum HttpError {
    #[error("the HTTP server failed")]
    Serve(#[source] std::io::Error),
}

/// Request text as a log line may show it: control characters (newline, carriage return,
/// ESC, ...) and Unicode bidirectional overrides escaped (`\n`, `\u{1b}`), and at most
/// [`MAX_LOGGED_CHARS`] characters, so a caller can neither forge log lines nor flood them.
pub fn escaped(text: &str) -> String {
    let mut out = String::with_capacity(text.len().min(MAX_LOGGED_CHARS + 8));
    for (count, c) in text.chars().enumerate() {
        if count == MAX_LOGGED_CHARS {
            out.push_str("...");
            break;
        }
        let bidi = matches!(c, '\u{200e}' | '\u{200f}' | '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}');
        if c.is_control() || bidi {
            out.extend(c.escape_default());
        } else {
            out.push(c);
        }
    }
    out
}

/// Logs a rejected webhook caller at most once per [`REJECTION_LOG_EVERY`], with how many
/// were not logged since: a flood of bad requests must not become a flood of log lines.
#[derive(Debug, Default)]
struct RejectionLog(Mutex<(Option<Instant>, u64)>);

impl RejectionLog {
    fn warn(&self, why: &str) {
        let mut state = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        let (last, suppressed) = &mut *state;
        let now = Instant::now();
        if last.is_some_and(|at| now.duration_since(at) < REJECTION_LOG_EVERY) {
            *suppressed += 1;
            return;
        }
        tracing::warn!(why, not_logged_since = *suppressed, "alert webhook request rejected");
        *last = Some(now);
        *suppressed = 0;
    }
}

#[derive(Clone)]
struct App {
    /// Sends alerts on to the leaders of the policies this daemon does not lead.
    forwarder: reqwest::Client,
    status: Status,
    daemon: DaemonView,
    metrics: Arc<Metrics>,
    alerts: AlertSink,
    routes: AlertRoutes,
    webhook: Arc<WebhookAuth>,
    read_timeout: Duration,
    /// Permits to read a webhook body ([`WEBHOOK_BODIES_IN_FLIGHT`]).
    bodies: Arc<Semaphore>,
    rejections: Arc<RejectionLog>,
}

#[derive(Clone)]
struct RequestGate {
    permits: Arc<Semaphore>,
    metrics: Arc<Metrics>,
}

/// Every route, with its shared state, and at most `limits.max_requests` in handlers at once.
/// What `GET /v1/policies` reads besides the loaded policies and their leader gates.
#[derive(Debug, Clone)]
pub struct DaemonView {
    /// Who this daemon is (`run --identity`, or the pod's name): in its Lease and Events.
    pub identity: String,
    pub mode: crate::act::Mode,
    pub pauses: crate::act::Pauses,
}

/// One loaded policy as `GET /v1/policies` shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PolicyView {
    pub name: String,
    /// This daemon acts on it now (it holds its lease, or there is no election).
    pub leading: bool,
    /// Paused (`spec.paused`, or a pause request): decided, never acted on.
    pub paused: bool,
    /// `apply` or `dry_run`: the daemon's `--dry-run`.
    pub mode: String,
    pub identity: String,
}

pub fn router(
    status: Status,
    daemon: DaemonView,
    metrics: Arc<Metrics>,
    alerts: AlertSink,
    routes: AlertRoutes,
    webhook: WebhookAuth,
    limits: &HttpLimits,
) -> Router {
    let gate = RequestGate {
        permits: Arc::new(Semaphore::new(limits.max_requests.max(1))),
        metrics: metrics.clone(),
    };
    let forwarder = reqwest::Client::builder()
        .timeout(FORWARD_TIMEOUT)
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap_or_default();
    let app = App {
        forwarder,
        status,
        daemon,
        metrics,
        alerts,
        routes,
        webhook: Arc::new(webhook),
        read_timeout: limits.read_timeout,
        bodies: Arc::new(Semaphore::new(WEBHOOK_BODIES_IN_FLIGHT)),
        rejections: Arc::default(),
    };
    Router::new()
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics_text))
        .route("/v1/decisions", get(decisions))
        .route("/v1/policies", get(policies))
        .route("/v1/alerts", post(alert_webhook))
        .with_state(app)
        .layer(middleware::from_fn_with_state(gate, limit_requests))
}

/// Refuses a request at once when `max_requests` are in handlers: waiting would let a slow
/// flood queue without bound.
async fn limit_requests(State(gate): State<RequestGate>, request: Request, next: Next) -> Response {
    let Ok(_permit) = gate.permits.try_acquire() else {
        gate.metrics.http_refused(Refusal::RequestLimit);
        return (
            StatusCode::SERVICE_UNAVAILABLE,
            [(header::RETRY_AFTER, "1")],
            "too many requests in flight",
        )
            .into_response();
    };
    next.run(request).await
}

/// Counts an open connection for as long as it lives.
struct OpenConnection(Arc<Metrics>);

impl OpenConnection {
    fn new(metrics: Arc<Metrics>) -> Self {
        metrics.http_connection_opened();
        Self(metrics)
    }
}

impl Drop for OpenConnection {
    fn drop(&mut self) {
        self.0.http_connection_closed();
    }
}

fn connection_error(error: &hyper::Error) -> ConnectionError {
    if error.is_timeout() {
        ConnectionError::HeaderTimeout
    } else if error.is_parse() || error.is_parse_too_large() {
        ConnectionError::BadRequest
    } else if error.is_incomplete_message() {
        ConnectionError::Incomplete
    } else {
        ConnectionError::Other
    }
}

/// Serves `router` on `listener` within `limits` until `shutdown` completes, then stops
/// accepting and lets in-flight requests finish (for up to [`DRAIN_GRACE`]).
///
/// Each connection is HTTP/1 (all kubelet probes, Prometheus scrapes and Alertmanager
/// speak) with a header timeout and a bounded read buffer; past the connection cap a new
/// connection is accepted and closed, so the kernel's queue never fills with callers
/// waiting for a slot and the process's descriptors stay bounded.
pub async fn serve(
    listener: tokio::net::TcpListener,
    router: Router,
    limits: HttpLimits,
    metrics: Arc<Metrics>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), HttpError> {
    let cap = limits.connection_cap();
    if cap < limits.max_connections {
        tracing::warn!(
            requested = limits.max_connections,
            applied = cap,
            "HTTP connection cap lowered to half the open-file limit"
        );
    }
    tracing::info!(
        max_connections = cap,
        read_timeout = ?limits.read_timeout,
        max_requests = limits.max_requests,
        "HTTP limits"
    );
    let slots = Arc::new(Semaphore::new(cap));
    let (closing, closed) = watch::channel(false);
    let mut connections = JoinSet::new();
    let mut shutdown = pin!(shutdown);
    let mut accept_failing = false;
    loop {
        let stream = tokio::select! {
            () = &mut shutdown => break,
            Some(_) = connections.join_next(), if !connections.is_empty() => continue,
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => {
                    accept_failing = false;
                    stream
                }
                Err(error) => {
                    metrics.http_accept_failed();
                    if !accept_failing {
                        tracing::warn!(%error, "cannot accept HTTP connections; retrying");
                    }
                    accept_failing = true;
                    tokio::time::sleep(ACCEPT_BACKOFF).await;
                    continue;
                }
            },
        };
        let Ok(slot) = slots.clone().try_acquire_owned() else {
            metrics.http_connection_refused();
            drop(stream);
            continue;
        };
        let service = TowerToHyperService::new(router.clone());
        let metrics = metrics.clone();
        let mut closed = closed.clone();
        let read_timeout = limits.read_timeout;
        connections.spawn(async move {
            let _slot = slot;
            let _open = OpenConnection::new(metrics.clone());
            let mut builder = hyper::server::conn::http1::Builder::new();
            builder
                .timer(TokioTimer::new())
                .header_read_timeout(read_timeout)
                .max_buf_size(MAX_HEAD_BYTES);
            let mut connection = pin!(builder.serve_connection(TokioIo::new(stream), service));
            let result = tokio::select! {
                result = connection.as_mut() => result,
                () = async { drop(closed.wait_for(|closed| *closed).await) } => {
                    connection.as_mut().graceful_shutdown();
                    connection.await
                }
            };
            if let Err(error) = result {
                tracing::debug!(%error, "HTTP connection ended with an error");
                metrics.http_connection_failed(connection_error(&error));
            }
        });
    }
    // New connections are refused by the kernel from here on.
    drop(listener);
    let _ = closing.send(true);
    let drained = tokio::time::timeout(DRAIN_GRACE, async {
        while connections.join_next().await.is_some() {}
    })
    .await;
    if drained.is_err() {
        tracing::warn!(
            open = connections.len(),
            "HTTP connections still open {DRAIN_GRACE:?} after shutdown; closing them"
        );
        connections.shutdown().await;
    }
    Ok(())
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

/// `/v1/decisions`' answer to a policy it knows nothing of: a typo must not read as a policy
/// that decided nothing.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct UnknownPolicy {
    error: String,
    known_policies: Vec<String>,
}

async fn decisions(State(app): State<App>, Query(query): Query<DecisionsQuery>) -> Response {
    let limit = query.limit.unwrap_or(DEFAULT_LIMIT);
    if let Some(name) = query.policy.as_deref() {
        let known = app.status.known_policies();
        if !known.iter().any(|k| k == name) {
            let error = format!("no policy named `{}`", escaped(name));
            let answer = UnknownPolicy { error, known_policies: known };
            return (StatusCode::NOT_FOUND, axum::Json(answer)).into_response();
        }
    }
    axum::Json(app.status.recent(query.policy.as_deref(), limit)).into_response()
}

async fn policies(State(app): State<App>) -> Response {
    let mode = match app.daemon.mode {
        crate::act::Mode::Apply => "apply",
        crate::act::Mode::DryRun => "dry_run",
        crate::act::Mode::Paused => "paused",
    };
    let views: Vec<PolicyView> = app
        .status
        .known_policies()
        .into_iter()
        .map(|name| PolicyView {
            leading: app.routes.leads(&name),
            paused: app.daemon.mode == crate::act::Mode::Paused
                || app.daemon.pauses.of(&name).is_paused(),
            mode: mode.to_owned(),
            identity: app.daemon.identity.clone(),
            name,
        })
        .collect();
    axum::Json(views).into_response()
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

/// A refused webhook request: counted by reason, logged (rate-limited), answered with
/// `message`. Nothing the caller sent is in `message` unescaped.
fn refuse(app: &App, refusal: Refusal, status: StatusCode, message: String) -> Response {
    app.metrics.http_refused(refusal);
    app.rejections.warn(&message);
    match refusal {
        Refusal::Unauthorized => {
            let bearer = [(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"))];
            (status, bearer, message).into_response()
        }
        // Alertmanager retries these; a new connection may find a free slot.
        Refusal::WebhookBusy => (status, [(header::RETRY_AFTER, "1")], message).into_response(),
        _ => (status, message).into_response(),
    }
}

/// The webhook body, read only after the caller was authenticated: refused by its declared
/// length before any byte is read, else read while holding one of the few body permits,
/// within the read timeout.
async fn read_body(app: &App, headers: &HeaderMap, body: Body) -> Result<Vec<u8>, Response> {
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    let too_large = || {
        let message = format!("webhook body larger than {MAX_WEBHOOK_BODY} bytes");
        refuse(app, Refusal::BodyTooLarge, StatusCode::PAYLOAD_TOO_LARGE, message)
    };
    if declared.is_some_and(|length| length > MAX_WEBHOOK_BODY as u64) {
        return Err(too_large());
    }
    // No queue: a caller waiting for a turn would hold a request slot the probes need.
    // Alertmanager retries a 503.
    let Ok(permit) = app.bodies.try_acquire() else {
        let message = "too many webhook bodies being read: retry".to_owned();
        return Err(refuse(app, Refusal::WebhookBusy, StatusCode::SERVICE_UNAVAILABLE, message));
    };
    let deadline = tokio::time::Instant::now() + app.read_timeout;
    let read = async {
        let mut bytes = Vec::new();
        let mut stream = body.into_data_stream();
        while let Some(chunk) = stream.next().await {
            let chunk = chunk.map_err(|_| None)?;
            if bytes.len() + chunk.len() > MAX_WEBHOOK_BODY {
                return Err(Some(()));
            }
            bytes.extend_from_slice(&chunk);
        }
        Ok(bytes)
    };
    let result = tokio::time::timeout_at(deadline, read).await;
    drop(permit);
    match result {
        Ok(Ok(bytes)) => Ok(bytes),
        Ok(Err(Some(()))) => Err(too_large()),
        Ok(Err(None)) => {
            let message = "cannot read the webhook body".to_owned();
            Err(refuse(app, Refusal::BodyUnreadable, StatusCode::BAD_REQUEST, message))
        }
        Err(_) => {
            let message = format!("webhook body not received within {:?}", app.read_timeout);
            Err(refuse(app, Refusal::BodyTimeout, StatusCode::REQUEST_TIMEOUT, message))
        }
    }
}

fn bad_request(app: &App, message: String) -> Response {
    refuse(app, Refusal::BadBody, StatusCode::BAD_REQUEST, message)
}

/// The policies a forwarded request was sent here for ([`FORWARDED_FOR_HEADER`]); `None` for
/// a request from Alertmanager itself.
fn forwarded_for(headers: &HeaderMap) -> Option<Vec<String>> {
    headers.contains_key(FORWARDED_HEADER).then(|| {
        let value = headers.get(FORWARDED_FOR_HEADER).and_then(|v| v.to_str().ok());
        value
            .unwrap_or_default()
            .split(',')
            .map(str::trim)
            .filter(|policy| !policy.is_empty())
            .map(str::to_owned)
            .collect()
    })
}

/// Sends the webhook `body` on to the leader of each of `policies` (this daemon leads none of
/// them), all at once; `Err` says why one did not take it. A request that was itself
/// forwarded is not sent on again.
async fn forward(
    app: &App,
    headers: &HeaderMap,
    body: &[u8],
    policies: &[String],
) -> Result<(), String> {
    if headers.contains_key(FORWARDED_HEADER) {
        return Err("the request was already sent on to this daemon as their leader".to_owned());
    }
    let leaders = app.routes.leaders_of(policies).map_err(|unknown| {
        format!("the leader of {} is not known (no URL in its Lease)", unknown.join(", "))
    })?;
    let sends = leaders.iter().map(|(url, led)| async move {
        let mut request = app
            .forwarder
            .post(format!("{}/v1/alerts", url.trim_end_matches('/')))
            .header(header::CONTENT_TYPE, "application/json")
            .header(FORWARDED_HEADER, app.daemon.identity.as_str())
            .header(FORWARDED_FOR_HEADER, led.join(","))
            .body(body.to_vec());
        if let Some(authorization) = headers.get(header::AUTHORIZATION) {
            request = request.header(header::AUTHORIZATION, authorization);
        }
        let answer = request.send().await.and_then(reqwest::Response::error_for_status);
        match answer {
            Ok(_) => {
                tracing::info!(leader = %url, policies = %led.join(", "), "alerts sent on to the policies' leader");
                Ok(())
            }
            Err(error) => Err(format!(
                "the leader of {} at {url} did not take them ({})",
                led.join(", "),
                crate::errors::chain(&error.without_url())
            )),
        }
    });
    let failures: Vec<String> =
        futures::future::join_all(sends).await.into_iter().filter_map(Result::err).collect();
    if failures.is_empty() { Ok(()) } else { Err(failures.join("; ")) }
}

async fn alert_webhook(State(app): State<App>, headers: HeaderMap, body: Body) -> Response {
    // Authenticate on the headers, before any body byte is read: an unauthenticated caller
    // costs no body buffer and learns nothing about the body format.
    match &*app.webhook {
        WebhookAuth::Token(token) => {
            if let Err(why) = authorized(token, &headers) {
                return refuse(&app, Refusal::Unauthorized, StatusCode::UNAUTHORIZED, why.into());
            }
        }
        WebhookAuth::InsecureNoToken => {}
        WebhookAuth::Disabled => {
            let message = "POST /v1/alerts is disabled: the daemon runs without a webhook token";
            return refuse(&app, Refusal::WebhookDisabled, StatusCode::NOT_FOUND, message.into());
        }
    }
    let body = match read_body(&app, &headers, body).await {
        Ok(body) => body,
        Err(response) => return response,
    };
    let webhook: Webhook =
        match serde_path_to_error::deserialize(&mut serde_json::Deserializer::from_slice(&body)) {
            Ok(webhook) => webhook,
            Err(error) => {
                return bad_request(&app, format!("invalid Alertmanager webhook body: {error}"));
            }
        };
    if webhook.alerts.len() > MAX_ALERTS {
        let message = format!(
            "{} alerts in one request; at most {MAX_ALERTS} (set max_alerts: {MAX_ALERTS} on \
             Alertmanager's webhook receiver)",
            webhook.alerts.len()
        );
        return refuse(&app, Refusal::TooManyAlerts, StatusCode::PAYLOAD_TOO_LARGE, message);
    }
    let group_key = escaped(&webhook.group_key);

    // Check every alert before counting or routing any, so a rejected body changes nothing.
    let mut firing = Vec::new();
    for (index, alert) in webhook.alerts.iter().enumerate() {
        if alert.status == AlertStatus::Resolved {
            continue;
        }
        let Some(name) = alert.labels.get("alertname") else {
            return bad_request(
                &app,
                format!(
                    "invalid Alertmanager webhook body: alerts[{index}].labels.alertname: missing"
                ),
            );
        };
        firing.push((name, alert));
    }

    // Routed first and counted after, so a refusal by a standby counts nothing as mapped. A
    // forwarded request is acted on for the policies it was sent here for only; an alert
    // mapped to none of those is another leader's (`elsewhere`), neither unknown nor ours.
    let sent_for = forwarded_for(&headers);
    let routed: Vec<_> = firing
        .into_iter()
        .map(|(name, alert)| {
            let only = alert.labels.get("policy").map(String::as_str);
            let mut commands = app.routes.route(name, only);
            let mapped = !commands.is_empty();
            if let Some(sent_for) = &sent_for {
                commands.retain(|command| sent_for.contains(&command.policy));
            }
            let elsewhere = mapped && commands.is_empty();
            (name, alert, commands, elsewhere)
        })
        .collect();
    let all: Vec<AlertCommand> = routed.iter().flat_map(|(_, _, r, _)| r.iter().cloned()).collect();
    let standby = app.routes.standby_for(&all);
    if !standby.is_empty()
        && let Err(why) = forward(&app, &headers, &body, &standby).await
    {
        for _ in routed.iter().filter(|(_, _, r, _)| !r.is_empty()) {
            app.metrics.alert(AlertOutcome::Standby);
        }
        let message = format!(
            "this daemon is a standby for {}, and {why}: retry, to reach the leader",
            standby.join(", ")
        );
        tracing::info!(%group_key, %message, "alert webhook request refused");
        // A new connection, which the Service may balance to the leader.
        return (StatusCode::SERVICE_UNAVAILABLE, [(header::CONNECTION, "close")], message)
            .into_response();
    }
    drop(body);

    let mut commands: Vec<AlertCommand> = Vec::new();
    let mut sent: HashSet<(String, String)> = HashSet::new();
    let mut answer = WebhookAnswer { mapped: Vec::new(), unknown: Vec::new() };
    let mut unknown_seen: HashSet<&str> = HashSet::new();
    let mut unknown_alerts = 0_usize;
    for (name, alert, routed, elsewhere) in routed {
        if elsewhere {
            continue;
        }
        if routed.is_empty() {
            app.metrics.alert(AlertOutcome::Unknown);
            unknown_alerts += 1;
            if unknown_seen.insert(name.as_str()) {
                answer.unknown.push(name.clone());
            }
            continue;
        }
        let (theirs, ours): (Vec<_>, Vec<_>) =
            routed.into_iter().partition(|command| standby.contains(&command.policy));
        if !theirs.is_empty() {
            app.metrics.alert(AlertOutcome::Forwarded);
        }
        if ours.is_empty() {
            continue;
        }
        app.metrics.alert(AlertOutcome::Mapped);
        for command in ours {
            // One group often holds the same alert for several instances (pod-0, pod-1):
            // that is one condition, and `scaleUp: 2` must add two replicas, not four. A
            // policy maps a name to one action, so policy and name identify the command.
            if !sent.insert((command.policy.clone(), command.alert_name.clone())) {
                continue;
            }
            tracing::info!(
                policy = %command.policy,
                alert = %command.alert_name,
                action = ?command.action,
                fingerprint = %escaped(&alert.fingerprint),
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
    if unknown_alerts > 0 {
        // One line per request, however many unknown alerts it carries.
        let shown: Vec<String> =
            answer.unknown.iter().take(UNKNOWN_SHOWN).map(|n| escaped(n)).collect();
        let more = answer.unknown.len().saturating_sub(UNKNOWN_SHOWN);
        let names = if more > 0 {
            format!("{}, and {more} more", shown.join(", "))
        } else {
            shown.join(", ")
        };
        tracing::info!(
            alerts = unknown_alerts,
            distinct = answer.unknown.len(),
            %names,
            %group_key,
            "firing alerts mapped by no policy; acknowledged and ignored"
        );
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
        let routes = AlertRoutes::default();
        let mut by_alert: HashMap<String, Vec<(String, AlertAction)>> = HashMap::new();
        let table = [
            ("cache", "RedisHot", AlertAction::ScaleUp(2)),
            ("sessions", "RedisHot", AlertAction::Evaluate),
            ("sessions", "DiskFull", AlertAction::Snapshot),
        ];
        for (policy, alert, action) in table {
            by_alert.entry(alert.to_owned()).or_default().push((policy.to_owned(), action));
        }
        routes.0.write().unwrap().by_alert = by_alert;
        routes
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

    #[test]
    fn logged_request_text_cannot_break_a_line_or_drive_a_terminal() {
        assert_eq!(escaped("RedisHot"), "RedisHot");
        assert_eq!(
            escaped("x\n2026-01-01T00:00:00Z ERROR forged"),
            r"x\n2026-01-01T00:00:00Z ERROR forged"
        );
        assert_eq!(escaped("\u{1b}[31mred\r\u{7f}"), r"\u{1b}[31mred\r\u{7f}");
        assert_eq!(escaped("a\u{202e}b"), r"a\u{202e}b");
        let long = "a".repeat(10_000);
        assert_eq!(escaped(&long).chars().count(), MAX_LOGGED_CHARS + 3);
    }

    fn view(mode: crate::act::Mode) -> DaemonView {
        DaemonView { identity: "pod-a".into(), mode, pauses: crate::act::Pauses::default() }
    }

    /// `GET /v1/policies`: each loaded policy, whether this daemon leads it (its leader gate)
    /// and whether it is paused (a pause request, or the daemon's own `--paused`).
    #[tokio::test]
    async fn policies_say_who_leads_each_and_whether_it_is_paused() {
        let status = Status::new(10);
        status.policy_loaded("checkout");
        status.policy_loaded("sessions");
        let routes = AlertRoutes::default();
        let (_leading, following) = tokio::sync::watch::channel(false);
        routes.lead("sessions", Leadership::following(following));
        let daemon = view(crate::act::Mode::Apply);
        daemon.pauses.set("checkout", true);
        let (sink, _commands) = AlertSink::channel(1);
        let app = router(
            status.clone(),
            daemon,
            Arc::new(Metrics::new()),
            sink.clone(),
            routes.clone(),
            WebhookAuth::Disabled,
            &HttpLimits::default(),
        );
        let (code, body) = get(app, "/v1/policies").await;
        assert_eq!(code, 200, "{body}");
        let views: Vec<PolicyView> = serde_json::from_str(&body).unwrap();
        let summary: Vec<(&str, bool, bool)> =
            views.iter().map(|v| (v.name.as_str(), v.leading, v.paused)).collect();
        assert_eq!(summary, [("checkout", true, true), ("sessions", false, false)], "{body}");
        assert!(views.iter().all(|v| v.identity == "pod-a" && v.mode == "apply"), "{body}");

        let app = router(
            status,
            view(crate::act::Mode::Paused),
            Arc::new(Metrics::new()),
            sink,
            routes,
            WebhookAuth::Disabled,
            &HttpLimits::default(),
        );
        let (_, body) = get(app, "/v1/policies").await;
        let views: Vec<PolicyView> = serde_json::from_str(&body).unwrap();
        assert!(views.iter().all(|v| v.paused), "a --paused daemon pauses every policy: {body}");
    }

    /// Issue 14: one request with alerts for two policies led by two replicas. The replica
    /// Alertmanager reached acts on its own policy's alert and sends the other on to its
    /// leader, which acts on that one only (the body's other alert is the sender's): each
    /// command is sent once, by its policy's leader, and both answer 200.
    #[tokio::test]
    async fn alerts_for_policies_led_by_two_replicas_are_each_acted_on_by_its_leader() {
        let policy = |name: &str| {
            let text = format!(
                "apiVersion: autopilot.redis.io/v1alpha1\nkind: RedisPolicy\nmetadata: {{name: {name}}}\n\
                 spec:\n  target: {{endpoints: ['{name}:6379']}}\n  \
                 alerts:\n    - {{alertname: Hot, action: evaluate}}\n"
            );
            crate::policy::load_policy_str("p.yaml", &text).expect("a valid policy")
        };
        let policies = [policy("orders"), policy("carts")];
        let listeners = [
            tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap(),
            tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap(),
        ];
        let urls: Vec<String> =
            listeners.iter().map(|l| format!("http://{}", l.local_addr().unwrap())).collect();
        // Replica 0 leads `orders`, replica 1 leads `carts`; each knows where the other serves.
        let mut commands = Vec::new();
        let mut stops = Vec::new();
        let mut keep = Vec::new();
        for (me, listener) in listeners.into_iter().enumerate() {
            let routes = AlertRoutes::new(&policies);
            for (index, policy) in policies.iter().enumerate() {
                let (leads, following) = tokio::sync::watch::channel(index == me);
                let (url, leader_url) = tokio::sync::watch::channel(Some(urls[index].clone()));
                let leadership = Leadership::following(following).with_leader_url(leader_url);
                routes.lead(&policy.name, leadership);
                keep.push((leads, url));
            }
            let (sink, received) = AlertSink::channel(8);
            commands.push(received);
            let app = router(
                Status::new(10),
                DaemonView {
                    identity: format!("replica-{me}"),
                    mode: crate::act::Mode::Apply,
                    pauses: crate::act::Pauses::default(),
                },
                Arc::new(Metrics::new()),
                sink,
                routes,
                WebhookAuth::InsecureNoToken,
                &HttpLimits::default(),
            );
            let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
            let metrics = Arc::new(Metrics::new());
            tokio::spawn(serve(listener, app, HttpLimits::default(), metrics, async {
                let _ = stopped.await;
            }));
            stops.push(stop);
        }
        let body = r#"{"version":"4","groupKey":"g","status":"firing","receiver":"autopilot",
            "alerts":[{"status":"firing","labels":{"alertname":"Hot","policy":"orders"},"annotations":{},"fingerprint":"1"},
                      {"status":"firing","labels":{"alertname":"Hot","policy":"carts"},"annotations":{},"fingerprint":"2"}]}"#;
        let answer = reqwest::Client::new()
            .post(format!("{}/v1/alerts", urls[0]))
            .header("content-type", "application/json")
            .body(body)
            .send()
            .await
            .unwrap();
        let status = answer.status().as_u16();
        assert_eq!(status, 200, "{}", answer.text().await.unwrap());
        let policies_of = |received: &mut mpsc::Receiver<AlertCommand>| {
            let mut policies = Vec::new();
            while let Ok(command) = received.try_recv() {
                policies.push(command.policy);
            }
            policies
        };
        assert_eq!(policies_of(&mut commands[0]), ["orders"], "replica 0 acts on its own");
        assert_eq!(policies_of(&mut commands[1]), ["carts"], "replica 1 on what it leads");
        for stop in stops {
            let _ = stop.send(());
        }
    }

    /// `GET path` on `router` served on a loopback port: status and body.
    async fn get(router: Router, path: &str) -> (u16, String) {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}{path}", listener.local_addr().unwrap());
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let metrics = Arc::new(Metrics::new());
        let server = tokio::spawn(serve(listener, router, HttpLimits::default(), metrics, async {
            let _ = stopped.await;
        }));
        let response = reqwest::get(&url).await.unwrap();
        let answer = (response.status().as_u16(), response.text().await.unwrap());
        let _ = stop.send(());
        server.await.unwrap().unwrap();
        answer
    }

    /// Issue 17: `/v1/decisions?policy=nope` answered `[]` with 200, as if `nope` ran and had
    /// decided nothing. Known: a loaded policy (decisions or not yet) and one whose decisions
    /// are still kept (removed on reload, its past stays readable).
    #[tokio::test]
    async fn decisions_of_an_unknown_policy_are_a_404_naming_the_known_ones() {
        use crate::daemon::status::DecisionRecord;
        use crate::decide::{ScalingDecision, ScalingReason};

        let status = Status::new(10);
        status.policy_loaded("sessions");
        let reason = ScalingReason {
            current: 2,
            ready: 2,
            readings: vec![],
            proposed: 2,
            adjustments: vec![],
            result: 2,
        };
        let hold = ScalingDecision::Hold { replicas: 2, reason };
        status.record(DecisionRecord::new(chrono::Utc::now(), "checkout", hold, None));
        let (sink, _commands) = AlertSink::channel(1);
        let app = router(
            status,
            view(crate::act::Mode::Apply),
            Arc::new(Metrics::new()),
            sink,
            AlertRoutes::default(),
            WebhookAuth::Disabled,
            &HttpLimits::default(),
        );

        let (code, body) = get(app.clone(), "/v1/decisions?policy=nope").await;
        assert_eq!(code, 404, "{body}");
        let answer: serde_json::Value = serde_json::from_str(&body).unwrap();
        assert_eq!(answer["knownPolicies"], serde_json::json!(["checkout", "sessions"]), "{body}");
        assert!(answer["error"].as_str().unwrap().contains("`nope`"), "{body}");

        let (code, body) = get(app.clone(), "/v1/decisions?policy=sessions").await;
        assert_eq!((code, body.as_str()), (200, "[]"), "loaded, nothing decided yet");
        let (code, body) = get(app.clone(), "/v1/decisions?policy=checkout").await;
        let records: serde_json::Value = serde_json::from_str(&body).unwrap();
        assert_eq!((code, records.as_array().map(Vec::len)), (200, Some(1)), "{body}");
        let (code, body) = get(app, "/v1/decisions").await;
        let records: serde_json::Value = serde_json::from_str(&body).unwrap();
        assert_eq!((code, records.as_array().map(Vec::len)), (200, Some(1)), "{body}");
    }

    #[test]
    fn an_empty_token_is_an_error_not_an_open_webhook() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("token");
        std::fs::write(&path, "  \n").unwrap();
        let error = WebhookAuth::resolve(&WebhookAccess::Token(SecretSource::File(path)))
            .unwrap_err()
            .to_string();
        assert!(error.contains("empty") && error.contains("token"), "{error}");
    }
}
