//! Policies: the declarative YAML a user writes, and the validated form the rest of the
//! program consumes.
//!
//! The pipeline is *parse, don't validate*: [`spec`] mirrors the YAML with serde (unknown
//! fields rejected), [`validate`] turns a spec into a [`Policy`] whose invariants hold
//! (`min <= max`, durations positive, cron lines parse) or into every problem it found, and
//! [`load`] ties the two to files and positions (`FILE:LINE:COL: field.path: message`).
//! Nothing downstream re-checks what a `Policy` guarantees.

pub mod bounds;
pub mod cron;
pub mod load;
pub mod overlap;
pub mod source_map;
pub mod spec;
pub mod validate;
pub mod warnings;

use std::time::Duration;

use crate::model::Endpoint;
pub use cron::{CronSchedule, LastFiring};
pub use load::{Diagnostic, Loaded, Severity, load_policy_str, load_policy_str_checked};
pub use overlap::overlap;

/// A validated policy for one Redis deployment.
#[derive(Debug, Clone, PartialEq)]
pub struct Policy {
    pub name: String,
    pub target: Target,
    /// How to authenticate to every Redis of the target; `None`: no `AUTH`.
    pub auth: Option<RedisAuth>,
    /// Connect with TLS (`rediss://`); `None`: plain TCP.
    pub tls: Option<RedisTls>,
    /// Where PromQL metrics are evaluated; present whenever a metric uses `prometheus:`.
    pub prometheus: Option<PrometheusSource>,
    pub sampling: Sampling,
    pub scaling: Option<Scaling>,
    pub health: Health,
    pub snapshots: Option<Snapshots>,
    pub alerts: Vec<AlertRule>,
    /// `spec.paused`: sample, decide and explain, and act on nothing (no scale, no failover,
    /// no snapshot), until the file says otherwise.
    pub paused: bool,
}

impl Policy {
    /// Every distinct PromQL query the policy's metrics read, in policy order.
    pub fn prometheus_queries(&self) -> Vec<&str> {
        let mut queries: Vec<&str> = Vec::new();
        for metric in self.scaling.iter().flat_map(|s| &s.metrics) {
            if let MetricSource::Prometheus { query } = &metric.source
                && !queries.contains(&query.as_str())
            {
                queries.push(query);
            }
        }
        queries
    }

    /// Every distinct `INFO` field the policy's metrics read, sorted: all a round must keep.
    pub fn redis_fields(&self) -> Vec<&str> {
        let mut fields: Vec<&str> = self
            .scaling
            .iter()
            .flat_map(|s| &s.metrics)
            .filter_map(|m| match &m.source {
                MetricSource::Redis { field, .. } => Some(field.as_str()),
                MetricSource::Prometheus { .. } => None,
            })
            .collect();
        fields.sort_unstable();
        fields.dedup();
        fields
    }

    /// Every file the policy reads a secret from, with the field that names it.
    pub fn secret_files<'a>(&'a self) -> Vec<(&'static str, &'a std::path::Path)> {
        let mut files: Vec<(&'static str, &std::path::Path)> = Vec::new();
        let mut add = |field: &'static str, source: &'a SecretSource| {
            if let SecretSource::File(path) = source {
                files.push((field, path.as_path()));
            }
        };
        if let Some(auth) = &self.auth {
            add("spec.auth.passwordFile", &auth.password);
        }
        match self.prometheus.as_ref().and_then(|p| p.credentials.as_ref()) {
            Some(PrometheusCredentials::Bearer(token)) => {
                add("spec.prometheus.bearerTokenFile", token)
            }
            Some(PrometheusCredentials::Basic { password, .. }) => {
                add("spec.prometheus.basicAuth.passwordFile", password)
            }
            None => {}
        }
        match self.snapshots.as_ref().map(|s| &s.destination.store) {
            Some(Store::S3 { credentials: Some(credentials), .. }) => {
                add("spec.snapshots.credentials.accessKeyIdFile", &credentials.access_key_id);
                add(
                    "spec.snapshots.credentials.secretAccessKeyFile",
                    &credentials.secret_access_key,
                );
                if let Some(token) = &credentials.session_token {
                    add("spec.snapshots.credentials.sessionTokenFile", token);
                }
            }
            Some(Store::Gcs { service_account_key: Some(key), .. }) => {
                add("spec.snapshots.credentials.serviceAccountKeyFile", key)
            }
            Some(Store::Azure { credentials: Some(credentials), .. }) => {
                add("spec.snapshots.credentials.accountKeyFile", &credentials.access_key)
            }
            _ => {}
        }
        if let Some(identity) =
            self.snapshots.as_ref().and_then(|s| s.encryption.as_ref()?.identity.as_ref())
        {
            add("spec.snapshots.encryption.identityFile", identity);
        }
        files
    }

    /// How far back the decision core reads: the longest metric or forecast window.
    pub fn history_span(&self) -> Duration {
        self.scaling.as_ref().map_or(Duration::ZERO, |s| {
            s.metrics
                .iter()
                .map(|m| m.window)
                .chain(s.forecast.as_ref().map(|f| f.window))
                .max()
                .unwrap_or(Duration::ZERO)
        })
    }
}

/// Where the Redis instances of a deployment are found.
#[derive(Debug, Clone, PartialEq)]
pub enum Target {
    Kubernetes {
        namespace: String,
        stateful_set: String,
        port: u16,
    },
    /// Instances someone else runs, each parsed once by validation (no two alike).
    Endpoints(Vec<Endpoint>),
    Local {
        redis_server: String,
        base_port: u16,
        data_dir: String,
    },
}

/// Where a credential is read from (never the credential itself: policies are not secret).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SecretSource {
    /// An environment variable's value.
    Env(String),
    /// A file's contents, one trailing newline removed (how Kubernetes mounts a Secret).
    File(std::path::PathBuf),
}

/// `AUTH [username] password` on every connection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RedisAuth {
    /// ACL user; `None` authenticates as `default`.
    pub username: Option<String>,
    pub password: SecretSource,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RedisTls {
    /// PEM bundle to trust instead of the built-in Mozilla roots (`webpki-roots`).
    pub ca_file: Option<std::path::PathBuf>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PrometheusSource {
    /// Base URL of the Prometheus HTTP API, e.g. `http://prometheus.monitoring:9090`.
    pub url: String,
    pub credentials: Option<PrometheusCredentials>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PrometheusCredentials {
    Bearer(SecretSource),
    Basic { username: String, password: SecretSource },
}

#[derive(Debug, Clone, PartialEq)]
pub struct Sampling {
    /// How often every instance (and every PromQL query) is sampled.
    pub interval: Duration,
    /// Per-instance deadline for one sample.
    pub timeout: Duration,
}

/// Replica-count policy. `replicas` everywhere means Redis instances in the deployment
/// (the StatefulSet's `spec.replicas`): the master and its read replicas.
#[derive(Debug, Clone, PartialEq)]
pub struct Scaling {
    pub min_replicas: u16,
    pub max_replicas: u16,
    pub metrics: Vec<Metric>,
    /// Relative band around 1.0 in which the usage ratio changes nothing (HPA's 0.1).
    /// Unused when `band` is set.
    pub tolerance: f64,
    /// Where a scale-up starts, what it sizes for and how far a scale-down may go, as fractions
    /// of each metric's target; `None`: the HPA's rule around `tolerance`.
    pub band: Option<Band>,
    pub scale_up: Behavior,
    pub scale_down: Behavior,
    pub schedule: Vec<CronFloor>,
    pub forecast: Option<Forecast>,
    /// How long a new replica takes to sync and serve; the forecast looks this far ahead.
    pub warmup: Duration,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Metric {
    pub source: MetricSource,
    /// How per-instance values combine at one sample time.
    pub aggregate: Aggregate,
    /// How the aggregated series over `window` becomes one number.
    pub statistic: Statistic,
    pub window: Duration,
    /// Load one replica should carry. A `mean`/`max` value is compared per replica; a `sum`
    /// value is a total and is divided by the target.
    pub target: f64,
    /// The load's daily and weekly profile, learnt as it is observed, as a floor one warm-up
    /// ahead of the ramp that comes every day ([`crate::decide`]'s seasonal forecast).
    pub seasonal: Option<Seasonal>,
    /// The per-replica value at which an instance serves all it can: above it the served
    /// load is capped, so the true demand is unknown and the count steps up by a factor.
    pub saturation: Option<Saturation>,
    /// Measured burstiness scales the level: the band's headroom is sized for `expect`, and a
    /// quieter or noisier load gets proportionally less or more ([`crate::decide`]'s bursts).
    pub bursts: Option<Bursts>,
}

/// A seasonal-naive forecast of a `mean` or `sum` metric's total: the load one period ago
/// (a day, a week), per minute, from whichever period has been right lately.
#[derive(Debug, Clone, PartialEq)]
pub struct Seasonal {
    /// The periods the load repeats over, shortest first (default a day and a week).
    pub periods: Vec<Duration>,
    /// The floor covers the highest load expected from now until one warm-up plus this
    /// ahead, so a ramp a little early is still covered.
    pub horizon: Duration,
    /// The forecast is trusted only while its recent relative error (per minute, an
    /// exponentially weighted mean over about an hour) is at most this.
    pub max_error: f64,
    /// The least rise one period ago (its highest minute ahead over the minute matching
    /// now) that sets a floor: 1 floors every rise; 2 only a load that doubled.
    pub min_rise: f64,
    /// While the trusted forecast agrees that the load stays below the recommendation, a
    /// scale-down waits this long instead of `scaleDown.stabilization`.
    pub scale_down_stabilization: Duration,
    /// A PromQL expression for the same total over time, read back `periods`' longest on a
    /// daemon's start so a restart does not forget; `None`: learnt from the samples alone.
    pub history: Option<String>,
}

/// See [`Metric::bursts`]. The level is multiplied by the `quantile` of each round's value
/// over the level at that round, measured over `window`, divided by `expect`.
#[derive(Debug, Clone, PartialEq)]
pub struct Bursts {
    /// Which quantile of the ratios is the burst the headroom must hold (e.g. 0.99).
    pub quantile: f64,
    /// How long ratios are kept: long enough to be the load's character (a day).
    pub window: Duration,
    /// The burst ratio the policy's band and target were chosen for.
    pub expect: f64,
    /// The most the level is multiplied by (infinite: no cap). `1`: a quieter load than
    /// `expect` gets less headroom, a burstier one none more.
    pub max_factor: f64,
    /// A PromQL expression for the metric per replica over time, read back over `window` on a
    /// daemon's start so a restart does not forget; `None`: measured from the samples alone.
    pub history: Option<String>,
}

/// See [`Metric::saturation`].
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Saturation {
    /// Per-replica value (in the metric's unit) at which a replica is at its ceiling.
    pub above: f64,
    /// Replicas ready now times this, at least, while saturated.
    pub factor: f64,
    /// How many newest rounds must all read at or above `above`: a burst of a few seconds
    /// caught by one round is not a ceiling that needs the count doubled.
    pub rounds: u8,
}

/// See [`Scaling::band`]. Fractions of a metric's target, with
/// `scale_down_below <= size_for <= scale_up_above`:
///
/// - above `scale_up_above` per replica, the count becomes what carries the load at
///   `size_for`;
/// - otherwise it drops to the smallest count that carries the load at `scale_down_below` or
///   less, when that is fewer than now.
///
/// The HPA's rule sizes both ways for the target itself, so a scale-down lands right below the
/// next scale-up's trigger and only its 5-minute window stops it flapping. Landing a scale-down
/// below the band instead lets the window be short: the load must rise the band's width before
/// the count comes back.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Band {
    pub scale_up_above: f64,
    pub size_for: f64,
    pub scale_down_below: f64,
}

#[derive(Debug, Clone, PartialEq)]
pub enum MetricSource {
    /// A numeric field of Redis `INFO`; with `rate`, a counter turned into a per-second rate
    /// between consecutive samples. An instance's value above `plausible_max` (the policy's
    /// `plausibleMax`, else [`bounds::default_plausible_max`]) is an outlier: left out of the
    /// metric and named in the reason. `None`: no limit.
    Redis { field: String, rate: bool, plausible_max: Option<f64> },
    /// A PromQL instant query evaluated against the policy's Prometheus.
    Prometheus { query: String },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Aggregate {
    Mean,
    Max,
    Sum,
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Statistic {
    Mean,
    Max,
    Min,
    Last,
    /// Percentile 1..=99.
    Percentile(u8),
    /// Exponentially weighted mean: a sample `half_life` old weighs half a fresh one.
    Ewma {
        half_life: Duration,
    },
    /// The value one round exceeds with probability `exceedance`, from a model of the window:
    /// load as a Poisson count of requests per second, their size and rate measured from the
    /// window's mean and the variance between consecutive rounds ([`crate::decide`]'s
    /// series).
    Tail {
        exceedance: f64,
    },
}

/// How fast replicas may change in one direction.
#[derive(Debug, Clone, PartialEq)]
pub struct Behavior {
    /// Scale-down: act on the highest recommendation seen in this window; scale-up: the lowest.
    pub stabilization: Duration,
    /// At most this change per `period` (counted from the replicas at the period's start).
    pub max_step: Step,
    pub period: Duration,
    /// Minimum time since the last scale event (either direction) before moving this way.
    pub cooldown: Duration,
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Step {
    Pods(u16),
    Percent(u16),
}

/// At the times `cron` fires, keep at least `min_replicas` for `duration`.
#[derive(Debug, Clone, PartialEq)]
pub struct CronFloor {
    pub cron: CronSchedule,
    pub min_replicas: u16,
    pub duration: Duration,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Forecast {
    pub method: ForecastMethod,
    /// The history the trend is fitted over.
    pub window: Duration,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ForecastMethod {
    /// Least-squares line through the aggregated series, extrapolated by the warm-up time.
    Linear,
}

/// Master and replica health: when the master is down, whether and how often to fail over,
/// and which replicas may take over. The detection rule is in [`crate::decide::health`].
#[derive(Debug, Clone, PartialEq)]
pub struct Health {
    /// How long the master may go without serving before it is declared down.
    pub down_after: Duration,
    /// Require the replicas' agreement before declaring the master down, and allow an
    /// unambiguous death (refused or gone, every replica's link down) to skip `down_after`.
    pub confirm_with_replicas: bool,
    pub failover: FailoverMode,
    pub max_failovers_per_hour: u32,
    /// A replica further behind is marked lagging and never promoted.
    pub replica_max_lag: Duration,
    /// Advertise lagging replicas as `lagging` rather than `replica` (out of the read Service).
    pub remove_lagging_replicas: bool,
    /// How often every instance is probed for health (independent of `sampling.interval`).
    pub probe_interval: Duration,
    /// Deadline of one health probe.
    pub probe_timeout: Duration,
    /// `min-replicas-to-write` / `min-replicas-max-lag` set on every master the daemon
    /// promotes, so an isolated master stops accepting writes.
    pub write_guard: Option<WriteGuard>,
}

/// The defaults of an absent `spec.health` (and of each absent field in it).
impl Default for Health {
    fn default() -> Self {
        Self {
            down_after: Duration::from_secs(5),
            confirm_with_replicas: true,
            failover: FailoverMode::Auto,
            max_failovers_per_hour: 3,
            replica_max_lag: Duration::from_secs(10),
            remove_lagging_replicas: false,
            probe_interval: Duration::from_millis(250),
            probe_timeout: Duration::from_secs(1),
            write_guard: None,
        }
    }
}

/// Redis's `min-replicas-to-write N` and `min-replicas-max-lag S`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WriteGuard {
    pub min_replicas: u32,
    pub max_lag: Duration,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FailoverMode {
    Auto,
    Manual,
    Off,
}

/// Scheduled RDB snapshots, streamed from a replica to object storage (see docs/snapshots.md).
#[derive(Debug, Clone, PartialEq)]
pub struct Snapshots {
    pub schedule: CronSchedule,
    pub source: SnapshotSource,
    pub destination: Destination,
    pub compression: Compression,
    pub retention: Retention,
    /// Actions that take a snapshot first.
    pub before_actions: Vec<BeforeAction>,
    /// How slow and how long a snapshot may be before it is given up.
    pub limits: TransferLimits,
    /// What a fleet with no recorded master and no data anywhere is seeded from.
    pub bootstrap: Option<Bootstrap>,
    /// Client-side encryption before upload; `None`: objects are stored as the RDB (or its
    /// zstd) is.
    pub encryption: Option<Encryption>,
    /// Scheduled restore tests of the newest snapshot (`None`: never run).
    pub verify: Option<Verify>,
}

/// `spec.snapshots.verify`: when to prove the newest snapshot restores (loaded into a scratch
/// instance, its key count and sampled key types checked), and how many proven snapshots
/// retention always keeps.
#[derive(Debug, Clone, PartialEq)]
pub struct Verify {
    pub schedule: CronSchedule,
    /// Retention never deletes the newest `keep` snapshots whose last restore test passed,
    /// whatever its counts say; 0 adds nothing to them.
    pub keep: u32,
    /// Where a `kubernetes` target's restore tests load the snapshot (`verify.verifier`);
    /// local and endpoints targets start a scratch `redis-server` child instead.
    pub verifier: Verifier,
}

/// `spec.snapshots.verify.verifier`: the StatefulSet (`deploy/base/verifier.yaml`, replicas 0)
/// a restore test scales to one pod, loads and scales back to 0. Never a member of any fleet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verifier {
    /// `None`: the daemon's own namespace (`POD_NAMESPACE`, else the Kubernetes client's).
    pub namespace: Option<String>,
    pub name: String,
    /// The port its Redis listens on.
    pub port: u16,
}

impl Verifier {
    /// The StatefulSet `deploy/base` ships.
    pub const DEFAULT_NAME: &str = "redis-autopilot-verifier";
}

impl Default for Verifier {
    fn default() -> Self {
        Self { namespace: None, name: Self::DEFAULT_NAME.to_owned(), port: 6379 }
    }
}

/// `spec.snapshots.bootstrap`: the snapshot a brand-new (or wholly emptied) fleet's first
/// master is loaded from before it is recorded (see docs/snapshots.md).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub enum Bootstrap {
    /// The newest complete snapshot; a destination holding none starts the fleet empty.
    Latest,
    /// That snapshot, by id; it must exist.
    Snapshot(String),
}

impl std::fmt::Display for Bootstrap {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Bootstrap::Latest => f.write_str("the latest snapshot"),
            Bootstrap::Snapshot(id) => write!(f, "snapshot {id}"),
        }
    }
}

/// `spec.snapshots.encryption`: snapshots are encrypted with age to the X25519 public keys
/// in `recipients_file`, read at each snapshot (a rotated Secret applies to the next one);
/// restore and verify decrypt with the identity, read only when an encrypted snapshot is read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Encryption {
    pub recipients_file: std::path::PathBuf,
    /// `None`: this policy can encrypt but not read its encrypted snapshots back.
    pub identity: Option<SecretSource>,
}

/// `minBytesPerSecond`, `throughputWindow` and `deadline`: a source that trickles, or a
/// transfer that never ends, would otherwise hold the policy's snapshot gate (and any
/// scale-down waiting on it) forever, since the stall timer restarts on every byte.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TransferLimits {
    /// The least RDB bytes per second, judged over each `throughput_window` of the payload.
    pub min_bytes_per_second: u64,
    pub throughput_window: Duration,
    /// The longest a snapshot may run, from choosing its source to the end of the RDB.
    pub deadline: Duration,
}

impl Default for TransferLimits {
    fn default() -> Self {
        Self {
            min_bytes_per_second: 1024 * 1024,
            throughput_window: Duration::from_secs(60),
            deadline: Duration::from_secs(6 * 3600),
        }
    }
}

/// Where snapshots go, parsed once by validation: the store consumes it as it is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Destination {
    /// The URL as written in the policy, for messages and logs: validation refuses one that
    /// holds a credential.
    pub url: String,
    pub store: Store,
}

/// The URL as written.
impl std::fmt::Display for Destination {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.url)
    }
}

/// The kind of store a destination names, with what only that kind takes. Each variant
/// holds its own credentials, so S3 keys on a GCS destination cannot even be represented.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Store {
    /// `file:///dir`: a local directory (created when the destination is opened); its root
    /// is the directory, so there is no prefix.
    Local { dir: std::path::PathBuf },
    /// `s3://bucket/prefix`: AWS, or an S3-compatible server at `endpoint` (path-style).
    S3 {
        bucket: String,
        /// The key prefix inside the bucket, without leading or trailing `/`; may be empty.
        prefix: String,
        /// An `http(s)://` URL of an S3-compatible server (MinIO, Ceph, a test server)
        /// instead of AWS, without a trailing `/`.
        endpoint: Option<String>,
        /// `None`: the environment's (`AWS_REGION`), else `us-east-1`.
        region: Option<String>,
        /// `None`: the environment's usual chain (env vars, instance or pod identity).
        credentials: Option<S3Credentials>,
    },
    /// `gs://bucket/prefix`.
    Gcs {
        bucket: String,
        prefix: String,
        /// The service account's JSON key; `None`: the environment's.
        service_account_key: Option<SecretSource>,
    },
    /// `az://container/prefix`.
    Azure {
        container: String,
        prefix: String,
        /// `None`: the environment's.
        credentials: Option<AzureCredentials>,
    },
}

/// Where an S3 destination's keys are read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct S3Credentials {
    pub access_key_id: SecretSource,
    pub secret_access_key: SecretSource,
    pub session_token: Option<SecretSource>,
}

/// An Azure storage account and where its key is read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AzureCredentials {
    pub account: String,
    pub access_key: SecretSource,
}

/// An action preceded by a snapshot.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BeforeAction {
    ScaleDown,
    Failover,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SnapshotSource {
    Replica,
    ReplicaOrMaster,
    Master,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Compression {
    None,
    Zstd { level: i32 },
}

#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Retention {
    pub keep_last: u32,
    pub daily: u32,
    pub weekly: u32,
    pub monthly: u32,
}

/// Maps an Alertmanager alert name to an action the policy already knows.
#[derive(Debug, Clone, PartialEq)]
pub struct AlertRule {
    pub alert_name: String,
    pub action: AlertAction,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AlertAction {
    Evaluate,
    ScaleUp(u16),
    Snapshot,
}
