//! The daemon's own Prometheus metrics: every name, help text and label is defined here, in one
//! explicit registry under the `redis_autopilot` prefix, and exposed by `GET /metrics`.
//!
//! Beside them, unprefixed as every Prometheus client names them, `process_open_fds`,
//! `process_max_fds` and `process_resident_memory_bytes`, read from `/proc/self` at scrape
//! time ([`process`]; absent where there is no `/proc`).
//!
//! Label values are bounded by construction: policy names come from validated policies, every
//! other label is a `&'static str` chosen by this crate (an outcome's variant, a decision's
//! kind). Error text and `Debug` output never become labels; they go to logs and to
//! `/v1/decisions`.

use std::time::Duration;

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeLabelSet, EncodeMetric};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::{ConstGauge, Gauge};
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::{Registry, Unit};

use crate::act::ActionOutcome;
use crate::observe::{Observation, Outcome, QueryResult};

/// Every metric name starts with this.
pub const PREFIX: &str = "redis_autopilot";

/// What `GET /metrics` answers with: OpenMetrics text, which Prometheus negotiates and parses.
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// Where a sample came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    /// One instance's `INFO`.
    Redis,
    /// One PromQL query.
    Prometheus,
}

impl Source {
    fn label(self) -> &'static str {
        match self {
            Source::Redis => "redis",
            Source::Prometheus => "prometheus",
        }
    }
}

/// How an Alertmanager alert was handled.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AlertOutcome {
    /// At least one policy maps its name to an action.
    Mapped,
    /// No policy maps it (or not the policy its `policy` label names).
    Unknown,
    /// Mapped, but refused: this daemon is a standby for the policy, and could not send it
    /// on to the leader.
    Standby,
    /// Mapped to a policy another replica leads, and sent on to it.
    Forwarded,
}

impl AlertOutcome {
    fn label(self) -> &'static str {
        match self {
            AlertOutcome::Mapped => "mapped",
            AlertOutcome::Unknown => "unknown",
            AlertOutcome::Standby => "standby",
            AlertOutcome::Forwarded => "forwarded",
        }
    }
}

/// Why the HTTP surface refused a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// Too many requests in handlers at once.
    RequestLimit,
    /// The webhook's bearer token was missing or wrong.
    Unauthorized,
    /// The webhook is disabled (no token configured, no opt-out).
    WebhookDisabled,
    /// A webhook body over the size cap.
    BodyTooLarge,
    /// A webhook body not received within the read timeout.
    BodyTimeout,
    /// A webhook body the connection failed to deliver.
    BodyUnreadable,
    /// No turn to read a webhook body within the read timeout.
    WebhookBusy,
    /// A webhook body that is not an Alertmanager payload.
    BadBody,
    /// More alerts in one request than allowed.
    TooManyAlerts,
}

impl Refusal {
    fn label(self) -> &'static str {
        match self {
            Refusal::RequestLimit => "request_limit",
            Refusal::Unauthorized => "unauthorized",
            Refusal::WebhookDisabled => "webhook_disabled",
            Refusal::BodyTooLarge => "body_too_large",
            Refusal::BodyTimeout => "body_timeout",
            Refusal::BodyUnreadable => "body_unreadable",
            Refusal::WebhookBusy => "webhook_busy",
            Refusal::BadBody => "bad_body",
            Refusal::TooManyAlerts => "too_many_alerts",
        }
    }
}

/// How an HTTP connection ended badly.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConnectionError {
    /// The caller did not send a request's headers within the read timeout (or stayed idle).
    HeaderTimeout,
    /// Not HTTP/1, or headers over the size cap.
    BadRequest,
    /// The caller closed mid-request.
    Incomplete,
    Other,
}

impl ConnectionError {
    fn label(self) -> &'static str {
        match self {
            ConnectionError::HeaderTimeout => "header_timeout",
            ConnectionError::BadRequest => "bad_request",
            ConnectionError::Incomplete => "incomplete",
            ConnectionError::Other => "other",
        }
    }
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ReasonLabels {
    reason: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct KindLabels {
    kind: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct SampleLabels {
    policy: String,
    source: &'static str,
    outcome: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct DecisionLabels {
    policy: String,
    kind: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ActionLabels {
    policy: String,
    kind: &'static str,
    outcome: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct PolicyLabels {
    policy: String,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct SnapshotRunLabels {
    policy: String,
    /// `ok`, `failed`, `busy` (one already in flight), `dry_run`, `paused`.
    outcome: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct SnapshotFailureLabels {
    policy: String,
    /// `SnapshotError::category()`: bounded.
    reason: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct VerificationFailureLabels {
    policy: String,
    /// A restore test's bounded reason (`key_count`, `rejected`, `scratch`, ...).
    reason: String,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct SnapshotBytesLabels {
    policy: String,
    /// `raw` (the RDB) or `stored` (the object, compressed or not).
    kind: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct PhaseLabels {
    policy: String,
    phase: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct LoopLabels {
    policy: String,
    /// `health` (the probe) or `scaling` (the sampling round).
    r#loop: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct AlertLabels {
    outcome: &'static str,
}

/// The registry and every metric in it. Share it as `Arc<Metrics>`: recording takes `&self`.
#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    /// The `process_*` collector, outside the prefix.
    process: Registry,
    http_connections: Gauge,
    http_connections_refused: Counter,
    http_connection_errors: Family<KindLabels, Counter>,
    http_accept_errors: Counter,
    http_requests_refused: Family<ReasonLabels, Counter>,
    samples: Family<SampleLabels, Counter>,
    decisions: Family<DecisionLabels, Counter>,
    actions: Family<ActionLabels, Counter>,
    snapshot_runs: Family<SnapshotRunLabels, Counter>,
    snapshot_failures: Family<SnapshotFailureLabels, Counter>,
    snapshot_last_success: Family<PolicyLabels, Gauge>,
    snapshot_duration: Family<PolicyLabels, Histogram>,
    snapshot_bytes: Family<SnapshotBytesLabels, Gauge>,
    snapshots_missed: Family<PolicyLabels, Counter>,
    verifications: Family<SnapshotRunLabels, Counter>,
    verification_failures: Family<VerificationFailureLabels, Counter>,
    last_verified: Family<PolicyLabels, Gauge>,
    action_duration: Family<DecisionLabels, Histogram>,
    replicas_current: Family<PolicyLabels, Gauge>,
    replicas_desired: Family<PolicyLabels, Gauge>,
    paused: Family<PolicyLabels, Gauge>,
    alerts: Family<AlertLabels, Counter>,
    master_serving: Family<PolicyLabels, Gauge>,
    replicas_lagging: Family<PolicyLabels, Gauge>,
    failover_phase: Family<PhaseLabels, Histogram>,
    loop_overruns: Family<LoopLabels, Counter>,
    policies_rejected: Family<ReasonLabels, Gauge>,
}

/// Failover phases last from about a millisecond (a promotion on loopback) to tens of seconds
/// (detection with a long downAfter): 1 ms doubling up to about 65 s.
fn phase_buckets() -> impl Iterator<Item = f64> {
    exponential_buckets(0.001, 2.0, 17)
}

/// Scaling a StatefulSet takes tens of milliseconds to patch; a snapshot upload can take
/// minutes: 10 ms doubling up to about 11 minutes covers both.
fn action_buckets() -> impl Iterator<Item = f64> {
    exponential_buckets(0.01, 2.0, 17)
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix(PREFIX);
        let samples = Family::<SampleLabels, Counter>::default();
        registry.register(
            "samples",
            "Sample attempts, by policy, source (redis: one instance's INFO; prometheus: one \
             query) and outcome",
            samples.clone(),
        );
        let decisions = Family::<DecisionLabels, Counter>::default();
        registry.register(
            "decisions",
            "Decisions made by the core, by policy and kind",
            decisions.clone(),
        );
        let actions = Family::<ActionLabels, Counter>::default();
        registry.register(
            "actions",
            "Actions, by policy, kind and outcome (applied, dry_run, failed, dropped)",
            actions.clone(),
        );
        let action_duration = Family::<DecisionLabels, Histogram>::new_with_constructor(|| {
            Histogram::new(action_buckets())
        });
        registry.register_with_unit(
            "action_duration",
            "How long executed actions (applied or failed) took, by policy and kind",
            Unit::Seconds,
            action_duration.clone(),
        );
        let replicas_current = Family::<PolicyLabels, Gauge>::default();
        registry.register(
            "replicas_current",
            "Redis instances the deployment asks for now, by policy",
            replicas_current.clone(),
        );
        let replicas_desired = Family::<PolicyLabels, Gauge>::default();
        registry.register(
            "replicas_desired",
            "Redis instances the latest decision wants, by policy",
            replicas_desired.clone(),
        );
        let paused = Family::<PolicyLabels, Gauge>::default();
        registry.register(
            "policy_paused",
            "1 while a policy is paused (it samples and decides, and acts on nothing), by policy",
            paused.clone(),
        );
        let alerts = Family::<AlertLabels, Counter>::default();
        registry.register(
            "alerts_received",
            "Firing Alertmanager alerts received, by outcome (mapped to a policy action, or \
             unknown)",
            alerts.clone(),
        );
        let snapshot_runs = Family::<SnapshotRunLabels, Counter>::default();
        registry.register(
            "snapshot_runs",
            "Snapshot runs (scheduled, alert or before an action), by policy and outcome (ok, \
             failed, busy, dry_run, paused)",
            snapshot_runs.clone(),
        );
        let snapshot_failures = Family::<SnapshotFailureLabels, Counter>::default();
        registry.register(
            "snapshot_failures",
            "Failed snapshots, by policy and reason",
            snapshot_failures.clone(),
        );
        let snapshot_last_success = Family::<PolicyLabels, Gauge>::default();
        registry.register_with_unit(
            "snapshot_last_success_timestamp",
            "When the policy's last snapshot completed (Unix time)",
            Unit::Seconds,
            snapshot_last_success.clone(),
        );
        let snapshot_duration = Family::<PolicyLabels, Histogram>::new_with_constructor(|| {
            Histogram::new(action_buckets())
        });
        registry.register_with_unit(
            "snapshot_duration",
            "How long successful snapshots took, by policy",
            Unit::Seconds,
            snapshot_duration.clone(),
        );
        let snapshot_bytes = Family::<SnapshotBytesLabels, Gauge>::default();
        registry.register_with_unit(
            "snapshot_size",
            "Size of the policy's last snapshot: the RDB (raw) and the object (stored)",
            Unit::Bytes,
            snapshot_bytes.clone(),
        );
        let snapshots_missed = Family::<PolicyLabels, Counter>::default();
        registry.register(
            "snapshots_missed",
            "Scheduled snapshots that did not happen (the daemon was down at the time), found at \
             start by comparing the newest snapshot with the schedule",
            snapshots_missed.clone(),
        );
        let verifications = Family::<SnapshotRunLabels, Counter>::default();
        registry.register(
            "snapshot_verifications",
            "Scheduled restore tests of the newest snapshot, by policy and outcome (ok, failed, \
             busy, standby, dry_run, paused, no_snapshot)",
            verifications.clone(),
        );
        let verification_failures = Family::<VerificationFailureLabels, Counter>::default();
        registry.register(
            "snapshot_verification_failures",
            "Failed restore tests, by policy and reason",
            verification_failures.clone(),
        );
        let last_verified = Family::<PolicyLabels, Gauge>::default();
        registry.register_with_unit(
            "snapshot_last_verified_timestamp",
            "When a restore test last proved one of the policy's snapshots restorable (Unix time)",
            Unit::Seconds,
            last_verified.clone(),
        );
        let master_serving = Family::<PolicyLabels, Gauge>::default();
        registry.register(
            "master_serving",
            "1 when the recorded master answered the latest health probe as a master, by policy",
            master_serving.clone(),
        );
        let replicas_lagging = Family::<PolicyLabels, Gauge>::default();
        registry.register(
            "replicas_lagging",
            "Replicas beyond health.replicaMaxLag, link down or syncing, by policy",
            replicas_lagging.clone(),
        );
        let failover_phase = Family::<PhaseLabels, Histogram>::new_with_constructor(|| {
            Histogram::new(phase_buckets())
        });
        registry.register_with_unit(
            "failover_phase_duration",
            "How long each phase of a failover took (detecting, promoting, repointing), by policy",
            Unit::Seconds,
            failover_phase.clone(),
        );
        let loop_overruns = Family::<LoopLabels, Counter>::default();
        registry.register(
            "loop_overruns",
            "Ticks of a policy loop's clock that found the last probe or round still running, \
             or came more than a period late (an action was running), by policy and loop \
             (health, scaling)",
            loop_overruns.clone(),
        );
        let policies_rejected = Family::<ReasonLabels, Gauge>::default();
        registry.register(
            "policies_rejected",
            "Policy files whose current content is not running, by reason: invalid (does not \
             validate or cannot be read), overlap (its target overlaps a running policy's), \
             duplicate_name (another file defines its policy); a running version stays",
            policies_rejected.clone(),
        );
        let http_connections = Gauge::default();
        registry.register(
            "http_connections",
            "HTTP connections open now (capped: see --http-max-connections)",
            http_connections.clone(),
        );
        let http_connections_refused = Counter::default();
        registry.register(
            "http_connections_refused",
            "HTTP connections accepted and closed at once because the connection cap was reached",
            http_connections_refused.clone(),
        );
        let http_connection_errors = Family::<KindLabels, Counter>::default();
        registry.register(
            "http_connection_errors",
            "HTTP connections that ended badly, by kind (header_timeout, bad_request, \
             incomplete, other)",
            http_connection_errors.clone(),
        );
        let http_accept_errors = Counter::default();
        registry.register(
            "http_accept_errors",
            "Failed accepts on the HTTP listener (out of file descriptors, say)",
            http_accept_errors.clone(),
        );
        let http_requests_refused = Family::<ReasonLabels, Counter>::default();
        registry.register(
            "http_requests_refused",
            "HTTP requests refused, by reason (request_limit, unauthorized, webhook_disabled, \
             body_too_large, body_timeout, body_unreadable, webhook_busy, bad_body, \
             too_many_alerts)",
            http_requests_refused.clone(),
        );
        let mut process = Registry::default();
        process.register_collector(Box::new(process::ProcessCollector));
        Self {
            registry,
            process,
            http_connections,
            http_connections_refused,
            http_connection_errors,
            http_accept_errors,
            http_requests_refused,
            samples,
            decisions,
            actions,
            snapshot_runs,
            snapshot_failures,
            snapshot_last_success,
            snapshot_duration,
            snapshot_bytes,
            snapshots_missed,
            verifications,
            verification_failures,
            last_verified,
            action_duration,
            replicas_current,
            replicas_desired,
            paused,
            alerts,
            master_serving,
            replicas_lagging,
            failover_phase,
            loop_overruns,
            policies_rejected,
        }
    }

    /// One sample attempt: an instance's `INFO` or one PromQL query.
    pub fn sample(&self, policy: &str, source: Source, outcome: &Outcome) {
        self.samples
            .get_or_create(&SampleLabels {
                policy: policy.to_owned(),
                source: source.label(),
                outcome: outcome.label(),
            })
            .inc();
    }

    /// One PromQL query's result: `ok`, or `error` whatever the reason (the reason is logged).
    pub fn query(&self, policy: &str, result: &QueryResult) {
        self.samples
            .get_or_create(&SampleLabels {
                policy: policy.to_owned(),
                source: Source::Prometheus.label(),
                outcome: if result.value.is_ok() { "ok" } else { "error" },
            })
            .inc();
    }

    /// Every instance sample and query result of one round.
    pub fn observation(&self, policy: &str, observation: &Observation) {
        for instance in &observation.instances {
            self.sample(policy, Source::Redis, &instance.outcome);
        }
        for query in &observation.queries {
            self.query(policy, query);
        }
    }

    /// One decision of `kind` ([`crate::decide::ScalingDecision::kind`],
    /// [`crate::decide::HealthDecision::kind`]).
    pub fn decision(&self, policy: &str, kind: &'static str) {
        self.decisions.get_or_create(&DecisionLabels { policy: policy.to_owned(), kind }).inc();
    }

    /// One action's end. `duration` is how long it ran; `None` for actions that never ran
    /// (dropped, dry run), which would otherwise pull the histogram towards zero.
    pub fn action(
        &self,
        policy: &str,
        kind: &'static str,
        outcome: &ActionOutcome,
        duration: Option<Duration>,
    ) {
        self.actions
            .get_or_create(&ActionLabels {
                policy: policy.to_owned(),
                kind,
                outcome: outcome.label(),
            })
            .inc();
        if let Some(duration) = duration {
            self.action_duration
                .get_or_create(&DecisionLabels { policy: policy.to_owned(), kind })
                .observe(duration.as_secs_f64());
        }
    }

    pub fn replicas(&self, policy: &str, current: u16, desired: u16) {
        let labels = PolicyLabels { policy: policy.to_owned() };
        self.replicas_current.get_or_create(&labels).set(i64::from(current));
        self.replicas_desired.get_or_create(&labels).set(i64::from(desired));
    }

    pub fn paused(&self, policy: &str, paused: bool) {
        let labels = PolicyLabels { policy: policy.to_owned() };
        self.paused.get_or_create(&labels).set(i64::from(paused));
    }

    /// One snapshot run's outcome; `ok` and `failed` come with their details.
    pub fn snapshot_run(&self, policy: &str, outcome: &'static str) {
        self.snapshot_runs
            .get_or_create(&SnapshotRunLabels { policy: policy.to_owned(), outcome })
            .inc();
    }

    pub fn snapshot_succeeded(
        &self,
        policy: &str,
        finished_unix: i64,
        duration: Duration,
        raw: u64,
        stored: u64,
    ) {
        self.snapshot_run(policy, "ok");
        let labels = PolicyLabels { policy: policy.to_owned() };
        self.snapshot_last_success.get_or_create(&labels).set(finished_unix);
        self.snapshot_duration.get_or_create(&labels).observe(duration.as_secs_f64());
        for (kind, bytes) in [("raw", raw), ("stored", stored)] {
            self.snapshot_bytes
                .get_or_create(&SnapshotBytesLabels { policy: policy.to_owned(), kind })
                .set(i64::try_from(bytes).unwrap_or(i64::MAX));
        }
    }

    pub fn snapshot_failed(&self, policy: &str, reason: &'static str) {
        self.snapshot_run(policy, "failed");
        self.snapshot_failures
            .get_or_create(&SnapshotFailureLabels { policy: policy.to_owned(), reason })
            .inc();
    }

    pub fn snapshot_missed(&self, policy: &str) {
        self.snapshots_missed.get_or_create(&PolicyLabels { policy: policy.to_owned() }).inc();
    }

    /// One scheduled restore test's outcome, when it did not run or fail.
    pub fn verification_run(&self, policy: &str, outcome: &'static str) {
        self.verifications
            .get_or_create(&SnapshotRunLabels { policy: policy.to_owned(), outcome })
            .inc();
    }

    /// A restore test that passed at `at_unix`.
    pub fn verification_passed(&self, policy: &str, at_unix: i64) {
        self.verification_run(policy, "ok");
        let labels = PolicyLabels { policy: policy.to_owned() };
        self.last_verified.get_or_create(&labels).set(at_unix);
    }

    /// A restore test that failed, with its bounded reason.
    pub fn verification_failed(&self, policy: &str, reason: &str) {
        self.verification_run(policy, "failed");
        self.verification_failures
            .get_or_create(&VerificationFailureLabels {
                policy: policy.to_owned(),
                reason: reason.to_owned(),
            })
            .inc();
    }

    /// What the latest health probe concluded.
    pub fn health(&self, policy: &str, master_serving: bool, lagging: usize) {
        let labels = PolicyLabels { policy: policy.to_owned() };
        self.master_serving.get_or_create(&labels).set(i64::from(master_serving));
        self.replicas_lagging
            .get_or_create(&labels)
            .set(i64::try_from(lagging).unwrap_or(i64::MAX));
    }

    /// One phase of a failover.
    pub fn failover_phase(&self, policy: &str, phase: &'static str, took: Duration) {
        self.failover_phase
            .get_or_create(&PhaseLabels { policy: policy.to_owned(), phase })
            .observe(took.as_secs_f64());
    }

    /// A tick of the `health` or `scaling` clock that could not start on time.
    pub fn loop_overrun(&self, policy: &str, r#loop: &'static str) {
        self.loop_overruns.get_or_create(&LoopLabels { policy: policy.to_owned(), r#loop }).inc();
    }

    /// How many policy files are not running their current content for `reason`
    /// (`invalid`, `overlap`, `duplicate_name`).
    pub fn policies_rejected(&self, reason: &'static str, files: usize) {
        let files = i64::try_from(files).unwrap_or(i64::MAX);
        self.policies_rejected.get_or_create(&ReasonLabels { reason }).set(files);
    }

    pub fn alert(&self, outcome: AlertOutcome) {
        self.alerts.get_or_create(&AlertLabels { outcome: outcome.label() }).inc();
    }

    pub fn http_connection_opened(&self) {
        self.http_connections.inc();
    }

    pub fn http_connection_closed(&self) {
        self.http_connections.dec();
    }

    /// A connection accepted and closed at once: the cap was reached.
    pub fn http_connection_refused(&self) {
        self.http_connections_refused.inc();
    }

    pub fn http_connection_failed(&self, error: ConnectionError) {
        self.http_connection_errors.get_or_create(&KindLabels { kind: error.label() }).inc();
    }

    pub fn http_accept_failed(&self) {
        self.http_accept_errors.inc();
    }

    pub fn http_refused(&self, refusal: Refusal) {
        self.http_requests_refused.get_or_create(&ReasonLabels { reason: refusal.label() }).inc();
    }

    /// Both registries as OpenMetrics text (see [`CONTENT_TYPE`]).
    pub fn encode(&self) -> Result<String, std::fmt::Error> {
        use prometheus_client::encoding::text;
        let mut out = String::new();
        text::encode_registry(&mut out, &self.registry)?;
        text::encode_registry(&mut out, &self.process)?;
        text::encode_eof(&mut out)?;
        Ok(out)
    }
}

/// The process's own resources, read from `/proc/self` when asked (Linux; `None` elsewhere).
pub mod process {
    use super::{ConstGauge, DescriptorEncoder, EncodeMetric};

    /// Open file descriptors (the listing's own descriptor included).
    pub fn open_fds() -> Option<u64> {
        Some(std::fs::read_dir("/proc/self/fd").ok()?.count() as u64)
    }

    /// The soft open-file limit (`ulimit -n`); `None` when unlimited or unknown.
    pub fn max_fds() -> Option<u64> {
        let limits = std::fs::read_to_string("/proc/self/limits").ok()?;
        let line = limits.lines().find(|l| l.starts_with("Max open files"))?;
        line.trim_start_matches("Max open files").split_whitespace().next()?.parse().ok()
    }

    /// Resident memory (`VmRSS`).
    pub fn resident_bytes() -> Option<u64> {
        let status = std::fs::read_to_string("/proc/self/status").ok()?;
        let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
        let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
        Some(kib * 1024)
    }

    /// Reads the three at each scrape.
    #[derive(Debug)]
    pub(super) struct ProcessCollector;

    impl super::Collector for ProcessCollector {
        fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
            let gauges = [
                ("process_open_fds", "Number of open file descriptors", open_fds()),
                ("process_max_fds", "Maximum number of open file descriptors", max_fds()),
                (
                    "process_resident_memory_bytes",
                    "Resident memory size in bytes",
                    resident_bytes(),
                ),
            ];
            for (name, help, value) in gauges {
                let Some(value) = value.and_then(|v| i64::try_from(v).ok()) else { continue };
                let gauge = ConstGauge::new(value);
                let metric = encoder.encode_descriptor(name, help, None, gauge.metric_type())?;
                gauge.encode(metric)?;
            }
            Ok(())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_carry_the_outcome_variant_never_its_detail() {
        let metrics = Metrics::new();
        metrics.sample("cache", Source::Redis, &Outcome::AuthFailed("WRONGPASS secret".into()));
        metrics.query(
            "cache",
            &QueryResult { query: "up".into(), value: Err("connection reset".into()) },
        );
        let text = metrics.encode().unwrap();
        assert!(
            text.contains(
                r#"redis_autopilot_samples_total{policy="cache",source="redis",outcome="auth_failed"} 1"#
            ),
            "{text}"
        );
        assert!(text.contains(r#"source="prometheus",outcome="error"} 1"#), "{text}");
        assert!(!text.contains("WRONGPASS") && !text.contains("reset"), "{text}");
        assert!(text.ends_with("# EOF\n"), "{text}");
    }

    #[test]
    fn process_gauges_come_unprefixed_after_the_daemons_own() {
        let metrics = Metrics::new();
        metrics.http_refused(Refusal::Unauthorized);
        let text = metrics.encode().unwrap();
        let open = text.lines().find(|l| l.starts_with("process_open_fds ")).expect("open fds");
        let max = text.lines().find(|l| l.starts_with("process_max_fds ")).expect("max fds");
        let value = |line: &str| line.rsplit(' ').next().unwrap().parse::<u64>().unwrap();
        assert!(value(open) >= 3 && value(open) <= value(max), "{open} {max}");
        assert!(text.contains("process_resident_memory_bytes "), "{text}");
        assert!(
            text.contains(
                r#"redis_autopilot_http_requests_refused_total{reason="unauthorized"} 1"#
            ),
            "{text}"
        );
        assert!(text.ends_with("# EOF\n") && text.matches("# EOF").count() == 1, "{text}");
    }

    #[test]
    fn only_actions_that_ran_are_timed() {
        let metrics = Metrics::new();
        metrics.action("cache", "scale", &ActionOutcome::Dropped, None);
        metrics.action("cache", "scale", &ActionOutcome::Applied, Some(Duration::from_millis(30)));
        let text = metrics.encode().unwrap();
        assert!(
            text.contains(
                r#"redis_autopilot_action_duration_seconds_count{policy="cache",kind="scale"} 1"#
            ),
            "{text}"
        );
        assert!(text.contains(r#"kind="scale",outcome="dropped"} 1"#), "{text}");
    }
}
