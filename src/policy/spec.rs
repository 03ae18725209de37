//! The policy file as written: serde types that mirror the YAML field for field (camelCase).
//!
//! These types check YAML types only. Every field the language requires or defaults is an
//! `Option`, and enum-like words, durations and cron lines stay strings, so that a missing
//! field or a bad word becomes one more positioned problem in [`super::validate`] instead of
//! ending deserialization at the first. Unknown fields are not rejected here either
//! (`deny_unknown_fields` stops at the first): the loader collects them all and names the
//! fields allowed in their place from the `FIELDS` lists below, via [`fields_at`].

use std::collections::BTreeMap;
use std::fmt;

use schemars::JsonSchema;
use serde::Deserialize;
use serde::de::{self, Deserializer, Visitor};

use super::source_map::Segment;

/// The whole document: `apiVersion`, `kind`, `metadata`, `spec`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PolicyDocument {
    pub api_version: Option<String>,
    pub kind: Option<String>,
    pub metadata: Option<Metadata>,
    pub spec: Option<PolicySpec>,
}

impl PolicyDocument {
    pub const FIELDS: &[&str] = &["apiVersion", "kind", "metadata", "spec"];
}

/// `metadata`. A namespace, labels and annotations are accepted so that a RedisPolicy
/// resource's manifest (`kubectl apply -f`) passes `check` as it is; the daemon does not read
/// them from a file.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Metadata {
    pub name: Option<String>,
    pub namespace: Option<String>,
    pub labels: Option<BTreeMap<String, String>>,
    pub annotations: Option<BTreeMap<String, String>>,
}

impl Metadata {
    pub const FIELDS: &[&str] = &["name", "namespace", "labels", "annotations"];
}

/// `spec`.
#[derive(Debug, Clone, Default, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct PolicySpec {
    pub target: Option<TargetSpec>,
    #[serde(default, deserialize_with = "section")]
    pub auth: Option<LoginSpec>,
    #[serde(default, deserialize_with = "section")]
    pub tls: Option<TlsSpec>,
    #[serde(default, deserialize_with = "section")]
    pub prometheus: Option<PrometheusSpec>,
    pub sampling: Option<SamplingSpec>,
    pub scaling: Option<ScalingSpec>,
    pub health: Option<HealthSpec>,
    pub snapshots: Option<SnapshotsSpec>,
    pub alerts: Option<Vec<AlertSpec>>,
    pub paused: Option<bool>,
}

impl PolicySpec {
    pub const FIELDS: &[&str] = &[
        "target",
        "auth",
        "tls",
        "prometheus",
        "sampling",
        "scaling",
        "health",
        "snapshots",
        "alerts",
        "paused",
    ];
}

/// A section that counts as written when its key is: `tls:` with nothing under it (its
/// fields commented out, say) reads as `tls: {}`. Read as absent, it would silently connect
/// without TLS.
fn section<'de, D, T>(deserializer: D) -> Result<Option<T>, D::Error>
where
    D: Deserializer<'de>,
    T: Deserialize<'de> + Default,
{
    Option::<T>::deserialize(deserializer).map(|section| Some(section.unwrap_or_default()))
}

/// A user and where their password is read: `spec.auth` (Redis `AUTH`, the user optional)
/// and `spec.prometheus.basicAuth` (the user required). There is deliberately no `password`
/// field: a policy names where a secret is, never the secret.
#[derive(Debug, Clone, Default, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct LoginSpec {
    pub username: Option<String>,
    pub password_env: Option<String>,
    pub password_file: Option<String>,
}

impl LoginSpec {
    pub const FIELDS: &[&str] = &["username", "passwordEnv", "passwordFile"];
}

/// `spec.tls`: present means TLS.
#[derive(Debug, Clone, Default, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct TlsSpec {
    pub ca_file: Option<String>,
}

impl TlsSpec {
    pub const FIELDS: &[&str] = &["caFile"];
}

/// `spec.prometheus`: at most one of the three credentials.
#[derive(Debug, Clone, Default, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct PrometheusSpec {
    pub url: Option<String>,
    pub bearer_token_env: Option<String>,
    pub bearer_token_file: Option<String>,
    pub basic_auth: Option<LoginSpec>,
}

impl PrometheusSpec {
    pub const FIELDS: &[&str] = &["url", "bearerTokenEnv", "bearerTokenFile", "basicAuth"];
}

/// `spec.target`: exactly one of the three is set.
#[derive(Debug, Clone, Default, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct TargetSpec {
    pub kubernetes: Option<KubernetesSpec>,
    pub endpoints: Option<Vec<String>>,
    pub local: Option<LocalSpec>,
}

impl TargetSpec {
    pub const FIELDS: &[&str] = &["kubernetes", "endpoints", "local"];
}

#[derive(Debug, Clone, Default, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct KubernetesSpec {
    pub namespace: Option<String>,
    pub stateful_set: Option<String>,
    pub port: Option<i64>,
}

impl KubernetesSpec {
    pub const FIELDS: &[&str] = &["namespace", "statefulSet", "port"];
}

#[derive(Debug, Clone, Default, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct LocalSpec {
    pub redis_server: Option<String>,
    pub base_port: Option<i64>,
    pub data_dir: Option<String>,
}

impl LocalSpec {
    pub const FIELDS: &[&str] = &["redisServer", "basePort", "dataDir"];
}

#[derive(Debug, Clone, Default, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct SamplingSpec {
    pub interval: Option<String>,
    pub timeout: Option<String>,
}

impl SamplingSpec {
    pub const FIELDS: &[&str] = &["interval", "timeout"];
}

#[derive(Debug, Clone, Default, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ScalingSpec {
    pub min_replicas: Option<i64>,
    pub max_replicas: Option<i64>,
    pub metrics: Option<Vec<MetricSpec>>,
    pub tolerance: Option<f64>,
    pub band: Option<BandSpec>,
    pub warmup: Option<String>,
    pub scale_up: Option<BehaviorSpec>,
    pub scale_down: Option<BehaviorSpec>,
    pub schedule: Option<Vec<CronFloorSpec>>,
    pub forecast: Option<ForecastSpec>,
}

impl ScalingSpec {
    pub const FIELDS: &[&str] = &[
        "minReplicas",
        "maxReplicas",
        "metrics",
        "tolerance",
        "band",
        "warmup",
        "scaleUp",
        "scaleDown",
        "schedule",
        "forecast",
    ];
}

/// One metric: exactly one of `redis` (an INFO field) or `prometheus` (a PromQL query).
#[derive(Debug, Clone, Default, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct MetricSpec {
    pub redis: Option<String>,
    pub prometheus: Option<String>,
    pub rate: Option<bool>,
    pub aggregate: Option<String>,
    pub statistic: Option<String>,
    pub half_life: Option<String>,
    pub exceedance: Option<f64>,
    pub window: Option<String>,
    pub target: Option<f64>,
    pub plausible_max: Option<f64>,
    pub seasonal: Option<SeasonalSpec>,
    pub saturation: Option<SaturationSpec>,
    pub bursts: Option<BurstsSpec>,
}

/// `metrics[].seasonal`: the daily/weekly forecast (see [`crate::policy::Seasonal`]).
#[derive(Debug, Clone, Default, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct SeasonalSpec {
    pub periods: Option<Vec<String>>,
    pub horizon: Option<String>,
    pub max_error: Option<f64>,
    pub min_rise: Option<f64>,
    pub scale_down_stabilization: Option<String>,
    pub history: Option<String>,
}

impl SeasonalSpec {
    pub const FIELDS: &[&str] =
        &["periods", "horizon", "maxError", "minRise", "scaleDownStabilization", "history"];
}

/// `scaling.band`: fractions of each metric's target (see [`crate::policy::Band`]).
#[derive(Debug, Clone, Default, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct BandSpec {
    pub scale_up_above: Option<f64>,
    pub size_for: Option<f64>,
    pub scale_down_below: Option<f64>,
}

impl BandSpec {
    pub const FIELDS: &[&str] = &["scaleUpAbove", "sizeFor", "scaleDownBelow"];
}

/// `metrics[].saturation`: where a replica is at its ceiling (see
/// [`crate::policy::Saturation`]).
#[derive(Debug, Clone, Default, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct SaturationSpec {
    pub above: Option<f64>,
    pub factor: Option<f64>,
    pub rounds: Option<i64>,
}

impl SaturationSpec {
    pub const FIELDS: &[&str] = &["above", "factor", "rounds"];
}

/// `metrics[].bursts`: headroom sized to the measured burstiness (see
/// [`crate::policy::Bursts`]).
#[derive(Debug, Clone, Default, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct BurstsSpec {
    pub quantile: Option<f64>,
    pub window: Option<String>,
    pub expect: Option<f64>,
    pub max_factor: Option<f64>,
    pub history: Option<String>,
}

impl BurstsSpec {
    pub const FIELDS: &[&str] = &["quantile", "window", "expect", "maxFactor", "history"];
}

impl MetricSpec {
    pub const FIELDS: &[&str] = &[
        "redis",
        "prometheus",
        "rate",
        "aggregate",
        "statistic",
        "halfLife",
        "exceedance",
        "window",
        "target",
        "plausibleMax",
        "seasonal",
        "saturation",
        "bursts",
    ];
}

/// `scaleUp` / `scaleDown`.
#[derive(Debug, Clone, Default, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct BehaviorSpec {
    pub stabilization: Option<String>,
    pub max_step: Option<StepSpec>,
    pub period: Option<String>,
    pub cooldown: Option<String>,
}

impl BehaviorSpec {
    pub const FIELDS: &[&str] = &["stabilization", "maxStep", "period", "cooldown"];
}

/// `maxStep`: a number of pods (`4`) or a percentage string (`"50%"`), told apart by YAML
/// type; the percentage is parsed in validation so a bad one is reported with the rest.
#[derive(Debug, Clone, PartialEq)]
pub enum StepSpec {
    Pods(i64),
    Text(String),
}

/// In the CRD: an integer or a string, as Kubernetes' own `maxSurge` is.
impl JsonSchema for StepSpec {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "StepSpec".into()
    }

    fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
        schemars::json_schema!({
            "description": "A whole number of pods like 4, or a percentage like \"50%\".",
            "x-kubernetes-int-or-string": true
        })
    }
}

impl<'de> Deserialize<'de> for StepSpec {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct StepVisitor;

        impl Visitor<'_> for StepVisitor {
            type Value = StepSpec;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a whole number of pods like 4, or a percentage like \"50%\"")
            }

            fn visit_i64<E: de::Error>(self, v: i64) -> Result<StepSpec, E> {
                Ok(StepSpec::Pods(v))
            }

            fn visit_u64<E: de::Error>(self, v: u64) -> Result<StepSpec, E> {
                // Beyond i64 it is far beyond any limit: saturate and let validation say so.
                Ok(StepSpec::Pods(i64::try_from(v).unwrap_or(i64::MAX)))
            }

            fn visit_str<E: de::Error>(self, v: &str) -> Result<StepSpec, E> {
                Ok(StepSpec::Text(v.to_owned()))
            }

            fn visit_f64<E: de::Error>(self, v: f64) -> Result<StepSpec, E> {
                // `2.5` is a mistake validation words better than a type error, and it then
                // does not hide the other problems in the file.
                Ok(StepSpec::Text(v.to_string()))
            }
        }

        deserializer.deserialize_any(StepVisitor)
    }
}

/// One `schedule` entry: from each firing of `cron`, keep `minReplicas` for `for`.
#[derive(Debug, Clone, Default, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct CronFloorSpec {
    pub cron: Option<String>,
    pub min_replicas: Option<i64>,
    #[serde(rename = "for")]
    pub duration: Option<String>,
}

impl CronFloorSpec {
    pub const FIELDS: &[&str] = &["cron", "minReplicas", "for"];
}

#[derive(Debug, Clone, Default, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ForecastSpec {
    pub method: Option<String>,
    pub window: Option<String>,
}

impl ForecastSpec {
    pub const FIELDS: &[&str] = &["method", "window"];
}

#[derive(Debug, Clone, Default, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct HealthSpec {
    pub down_after: Option<String>,
    pub confirm_with_replicas: Option<bool>,
    pub failover: Option<String>,
    pub max_failovers_per_hour: Option<i64>,
    pub replica_max_lag: Option<String>,
    pub remove_lagging_replicas: Option<bool>,
    pub probe_interval: Option<String>,
    pub probe_timeout: Option<String>,
    pub min_replicas_to_write: Option<i64>,
    pub min_replicas_max_lag: Option<String>,
}

impl HealthSpec {
    pub const FIELDS: &[&str] = &[
        "downAfter",
        "confirmWithReplicas",
        "failover",
        "maxFailoversPerHour",
        "replicaMaxLag",
        "removeLaggingReplicas",
        "probeInterval",
        "probeTimeout",
        "minReplicasToWrite",
        "minReplicasMaxLag",
    ];
}

#[derive(Debug, Clone, Default, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct SnapshotsSpec {
    pub schedule: Option<String>,
    pub source: Option<String>,
    pub destination: Option<String>,
    pub endpoint: Option<String>,
    pub region: Option<String>,
    #[serde(default, deserialize_with = "section")]
    pub credentials: Option<DestinationCredentialsSpec>,
    pub compression: Option<String>,
    pub compression_level: Option<i64>,
    pub retention: Option<RetentionSpec>,
    pub before_actions: Option<Vec<String>>,
    pub min_bytes_per_second: Option<i64>,
    pub throughput_window: Option<String>,
    pub deadline: Option<String>,
    pub bootstrap: Option<String>,
    #[serde(default, deserialize_with = "section")]
    pub encryption: Option<EncryptionSpec>,
    pub verify: Option<VerifySpec>,
}

impl SnapshotsSpec {
    pub const FIELDS: &[&str] = &[
        "schedule",
        "source",
        "destination",
        "endpoint",
        "region",
        "credentials",
        "compression",
        "compressionLevel",
        "retention",
        "beforeActions",
        "minBytesPerSecond",
        "throughputWindow",
        "deadline",
        "bootstrap",
        "encryption",
        "verify",
    ];
}

/// `spec.snapshots.encryption`: where the age recipients (public keys, to encrypt) and the
/// identity (the secret key, to decrypt) are read, never the keys themselves.
#[derive(Debug, Clone, Default, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct EncryptionSpec {
    pub recipients_file: Option<String>,
    pub identity_file: Option<String>,
    pub identity_env: Option<String>,
}

impl EncryptionSpec {
    pub const FIELDS: &[&str] = &["recipientsFile", "identityFile", "identityEnv"];
}

/// `spec.snapshots.verify`: scheduled restore tests.
#[derive(Debug, Clone, Default, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct VerifySpec {
    pub schedule: Option<String>,
    pub keep: Option<i64>,
    #[serde(default, deserialize_with = "section")]
    pub verifier: Option<VerifierSpec>,
}

impl VerifySpec {
    pub const FIELDS: &[&str] = &["schedule", "keep", "verifier"];
}

/// `spec.snapshots.verify.verifier`: the StatefulSet a restore test of a `kubernetes` target
/// scales up and loads the snapshot into.
#[derive(Debug, Clone, Default, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct VerifierSpec {
    pub namespace: Option<String>,
    pub name: Option<String>,
    pub port: Option<i64>,
}

impl VerifierSpec {
    pub const FIELDS: &[&str] = &["namespace", "name", "port"];
}

/// `spec.snapshots.credentials`: where the destination's credentials are read (S3 keys, a
/// GCS service-account key, an Azure account key), never the credentials themselves.
#[derive(Debug, Clone, Default, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct DestinationCredentialsSpec {
    pub access_key_id_env: Option<String>,
    pub access_key_id_file: Option<String>,
    pub secret_access_key_env: Option<String>,
    pub secret_access_key_file: Option<String>,
    pub session_token_env: Option<String>,
    pub session_token_file: Option<String>,
    pub service_account_key_env: Option<String>,
    pub service_account_key_file: Option<String>,
    pub account_name: Option<String>,
    pub account_key_env: Option<String>,
    pub account_key_file: Option<String>,
}

impl DestinationCredentialsSpec {
    pub const FIELDS: &[&str] = &[
        "accessKeyIdEnv",
        "accessKeyIdFile",
        "secretAccessKeyEnv",
        "secretAccessKeyFile",
        "sessionTokenEnv",
        "sessionTokenFile",
        "serviceAccountKeyEnv",
        "serviceAccountKeyFile",
        "accountName",
        "accountKeyEnv",
        "accountKeyFile",
    ];
}

#[derive(Debug, Clone, Default, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct RetentionSpec {
    pub keep_last: Option<i64>,
    pub daily: Option<i64>,
    pub weekly: Option<i64>,
    pub monthly: Option<i64>,
}

impl RetentionSpec {
    pub const FIELDS: &[&str] = &["keepLast", "daily", "weekly", "monthly"];
}

/// One `alerts` entry. `alertname` is spelled as Alertmanager spells the label.
#[derive(Debug, Clone, Default, Deserialize, JsonSchema)]
pub struct AlertSpec {
    pub alertname: Option<String>,
    pub action: Option<AlertActionSpec>,
}

impl AlertSpec {
    pub const FIELDS: &[&str] = &["alertname", "action"];
}

/// `action: evaluate`, `action: snapshot` or `action: {scaleUp: N}` (serde's external tagging:
/// unit variants are plain words, the others one-key mappings).
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum AlertActionSpec {
    Evaluate,
    Snapshot,
    ScaleUp(i64),
}

/// In the CRD: a word or a one-key mapping has no structural schema (a type must be one of
/// the two), so any value is kept and the daemon's validation says what is wrong with it.
impl JsonSchema for AlertActionSpec {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "AlertActionSpec".into()
    }

    fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
        schemars::json_schema!({
            "description": "`evaluate`, `snapshot`, or `{scaleUp: N}`.",
            "x-kubernetes-preserve-unknown-fields": true
        })
    }
}

/// The fields allowed in the mapping at `path`, for "unknown field" messages. `None` where
/// the document has no fixed fields (labels, say) or no mapping is expected.
pub fn fields_at(path: &[Segment]) -> Option<&'static [&'static str]> {
    let fields = match keys(path).as_slice() {
        [] => PolicyDocument::FIELDS,
        [Some("metadata")] => Metadata::FIELDS,
        [Some("spec")] => PolicySpec::FIELDS,
        [Some("spec"), Some("target")] => TargetSpec::FIELDS,
        [Some("spec"), Some("target"), Some("kubernetes")] => KubernetesSpec::FIELDS,
        [Some("spec"), Some("target"), Some("local")] => LocalSpec::FIELDS,
        [Some("spec"), Some("auth")] => LoginSpec::FIELDS,
        [Some("spec"), Some("tls")] => TlsSpec::FIELDS,
        [Some("spec"), Some("prometheus")] => PrometheusSpec::FIELDS,
        [Some("spec"), Some("prometheus"), Some("basicAuth")] => LoginSpec::FIELDS,
        [Some("spec"), Some("sampling")] => SamplingSpec::FIELDS,
        [Some("spec"), Some("scaling")] => ScalingSpec::FIELDS,
        [Some("spec"), Some("scaling"), Some("metrics"), None] => MetricSpec::FIELDS,
        [Some("spec"), Some("scaling"), Some("metrics"), None, Some("seasonal")] => {
            SeasonalSpec::FIELDS
        }
        [Some("spec"), Some("scaling"), Some("metrics"), None, Some("saturation")] => {
            SaturationSpec::FIELDS
        }
        [Some("spec"), Some("scaling"), Some("metrics"), None, Some("bursts")] => {
            BurstsSpec::FIELDS
        }
        [Some("spec"), Some("scaling"), Some("band")] => BandSpec::FIELDS,
        [Some("spec"), Some("scaling"), Some("scaleUp" | "scaleDown")] => BehaviorSpec::FIELDS,
        [Some("spec"), Some("scaling"), Some("schedule"), None] => CronFloorSpec::FIELDS,
        [Some("spec"), Some("scaling"), Some("forecast")] => ForecastSpec::FIELDS,
        [Some("spec"), Some("health")] => HealthSpec::FIELDS,
        [Some("spec"), Some("snapshots")] => SnapshotsSpec::FIELDS,
        [Some("spec"), Some("snapshots"), Some("retention")] => RetentionSpec::FIELDS,
        [Some("spec"), Some("snapshots"), Some("verify")] => VerifySpec::FIELDS,
        [Some("spec"), Some("snapshots"), Some("verify"), Some("verifier")] => VerifierSpec::FIELDS,
        [Some("spec"), Some("snapshots"), Some("credentials")] => {
            DestinationCredentialsSpec::FIELDS
        }
        [Some("spec"), Some("snapshots"), Some("encryption")] => EncryptionSpec::FIELDS,
        [Some("spec"), Some("alerts"), None] => AlertSpec::FIELDS,
        _ => return None,
    };
    Some(fields)
}

/// For an unknown field at `path` that looks like a secret written inline (`password:`
/// under `spec.auth`), the fields that say where to read it instead. Worth more than "did
/// you mean": the author has to move the secret out of the file, not rename a key.
pub fn inline_secret_hint(path: &[Segment]) -> Option<&'static str> {
    let keys = keys(path);
    let (&Some(field), parent) = keys.split_last()? else { return None };
    let is = |name: &str| field.eq_ignore_ascii_case(name);
    match parent {
        [Some("spec"), Some("auth")] | [Some("spec"), Some("prometheus"), Some("basicAuth")]
            if is("password") =>
        {
            Some("secrets are read from passwordEnv or passwordFile, never written in a policy")
        }
        [Some("spec"), Some("prometheus")] if is("bearerToken") || is("token") => Some(
            "secrets are read from bearerTokenEnv or bearerTokenFile, never written in a policy",
        ),
        [Some("spec"), Some("snapshots"), Some("credentials")]
            if [
                "accessKeyId",
                "secretAccessKey",
                "sessionToken",
                "serviceAccountKey",
                "accountKey",
            ]
            .iter()
            .any(|name| is(name)) =>
        {
            Some(
                "secrets are read from the field's `Env` or `File` form, never written in a policy",
            )
        }
        [Some("spec"), Some("snapshots"), Some("encryption")]
            if is("identity") || is("secretKey") || is("key") =>
        {
            Some("the identity is read from identityFile or identityEnv, never written in a policy")
        }
        _ => None,
    }
}

/// A path's mapping keys, with `None` for each list index.
fn keys(path: &[Segment]) -> Vec<Option<&str>> {
    path.iter()
        .map(|segment| match segment {
            Segment::Key(key) => Some(key.as_str()),
            Segment::Index(_) => None,
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::source_map::{FieldPath, Node, NodeKind, SourceMap};

    /// Every field of every struct, once (the values need only the right YAML type).
    const EVERY_FIELD: &str = r#"
apiVersion: x
kind: x
metadata: {name: x, namespace: x, labels: {a: b}, annotations: {a: b}}
spec:
  target:
    kubernetes: {namespace: x, statefulSet: x, port: 1}
    endpoints: [x]
    local: {redisServer: x, basePort: 1, dataDir: x}
  auth: {username: x, passwordEnv: x, passwordFile: x}
  tls: {caFile: x}
  prometheus:
    url: x
    bearerTokenEnv: x
    bearerTokenFile: x
    basicAuth: {username: x, passwordEnv: x, passwordFile: x}
  sampling: {interval: x, timeout: x}
  scaling:
    minReplicas: 1
    maxReplicas: 1
    metrics:
      - {redis: x, prometheus: x, rate: true, aggregate: x, statistic: x, halfLife: x,
          exceedance: 1, window: x, target: 1,
          plausibleMax: 1, seasonal: {periods: [x], horizon: x, maxError: 1, minRise: 1,
          scaleDownStabilization: x, history: x}, saturation: {above: 1, factor: 1, rounds: 1},
          bursts: {quantile: 1, window: x, expect: 1, maxFactor: 1, history: x}}
    tolerance: 0
    band: {scaleUpAbove: 1, sizeFor: 1, scaleDownBelow: 1}
    warmup: x
    scaleUp: {stabilization: x, maxStep: 1, period: x, cooldown: x}
    scaleDown: {stabilization: x, maxStep: "1%", period: x, cooldown: x}
    schedule: [{cron: x, minReplicas: 1, for: x}]
    forecast: {method: x, window: x}
  health:
    downAfter: x
    confirmWithReplicas: true
    failover: x
    maxFailoversPerHour: 1
    replicaMaxLag: x
    removeLaggingReplicas: true
    probeInterval: x
    probeTimeout: x
    minReplicasToWrite: 1
    minReplicasMaxLag: x
  snapshots:
    schedule: x
    source: x
    destination: x
    endpoint: x
    region: x
    credentials:
      accessKeyIdEnv: x
      accessKeyIdFile: x
      secretAccessKeyEnv: x
      secretAccessKeyFile: x
      sessionTokenEnv: x
      sessionTokenFile: x
      serviceAccountKeyEnv: x
      serviceAccountKeyFile: x
      accountName: x
      accountKeyEnv: x
      accountKeyFile: x
    beforeActions: [x]
    compression: x
    compressionLevel: 1
    retention: {keepLast: 1, daily: 1, weekly: 1, monthly: 1}
    minBytesPerSecond: 1
    throughputWindow: x
    deadline: x
    bootstrap: x
    encryption: {recipientsFile: x, identityFile: x, identityEnv: x}
    verify: {schedule: x, keep: 1, verifier: {namespace: x, name: x, port: 1}}
  alerts: [{alertname: x, action: evaluate}]
  paused: false
"#;

    /// Checks each mapping with fixed fields against its `FIELDS`; returns how many it checked.
    fn check_fields(node: &Node, path: &FieldPath) -> usize {
        match &node.kind {
            NodeKind::Map(entries) => {
                let mut checked = 0;
                if let Some(expected) = fields_at(path.segments()) {
                    let mut keys: Vec<&str> =
                        entries.iter().filter_map(|e| e.key.as_deref()).collect();
                    let mut expected = expected.to_vec();
                    keys.sort_unstable();
                    expected.sort_unstable();
                    assert_eq!(keys, expected, "fields of {path}");
                    checked += 1;
                }
                for entry in entries {
                    let key = entry.key.as_deref().unwrap_or_default();
                    checked += check_fields(&entry.value, &path.key(key));
                }
                checked
            }
            NodeKind::Seq(items) => {
                items.iter().enumerate().map(|(i, item)| check_fields(item, &path.index(i))).sum()
            }
            NodeKind::Null | NodeKind::Scalar(_) => 0,
        }
    }

    #[test]
    fn field_lists_match_the_structs() {
        // Every listed name is a real field: none of them is ignored as unknown...
        let mut unknown = Vec::new();
        let parsed: Result<PolicyDocument, _> =
            serde_saphyr::with_deserializer_from_str(EVERY_FIELD, |de| {
                serde_ignored::deserialize(de, |path| unknown.push(path.to_string()))
            });
        assert!(parsed.is_ok(), "{:?}", parsed.err());
        assert!(unknown.is_empty(), "{unknown:?}");
        // ...and every mapping in the document lists exactly its struct's fields (29 mappings:
        // scaleUp and scaleDown share a struct, as do auth and basicAuth).
        let map = SourceMap::parse(EVERY_FIELD, serde_saphyr::Options::default()).expect("YAML");
        assert_eq!(check_fields(map.root(), &FieldPath::root()), 29);
    }

    #[test]
    fn max_step_is_pods_or_text_by_yaml_type() {
        let parse = |text: &str| serde_saphyr::from_str::<StepSpec>(text).expect("a step");
        assert_eq!(parse("4"), StepSpec::Pods(4));
        assert_eq!(parse("\"50%\""), StepSpec::Text("50%".to_owned()));
        assert_eq!(parse("2.5"), StepSpec::Text("2.5".to_owned()));
        assert_eq!(parse("18446744073709551615"), StepSpec::Pods(i64::MAX));
        assert!(serde_saphyr::from_str::<StepSpec>("[1]").is_err());
    }

    #[test]
    fn alert_actions_are_words_or_one_key_mappings() {
        let parse = |text: &str| serde_saphyr::from_str::<AlertActionSpec>(text);
        assert_eq!(parse("evaluate").ok(), Some(AlertActionSpec::Evaluate));
        assert_eq!(parse("snapshot").ok(), Some(AlertActionSpec::Snapshot));
        assert_eq!(parse("{scaleUp: 2}").ok(), Some(AlertActionSpec::ScaleUp(2)));
        assert!(parse("scaleUp").is_err());
        assert!(parse("{scaleUp: 1, snapshot: ~}").is_err());
    }
}
