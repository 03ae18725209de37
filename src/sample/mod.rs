//! Samplers: the edges that look at the world. Each turns one external system into plain
//! observation data for the pure core, with every call under its own deadline, so one slow or
//! dead peer never delays or fails the others.
//!
//! - [`redis`]: every instance's `INFO`, concurrently, classified by outcome.
//! - [`prometheus`]: the policy's PromQL instant queries.
//! - [`secret`]: credentials from environment variables or files, never printed.
//! - [`PolicySampler`]: both, for one policy, as one [`Observation`] per round, and the
//!   history its seasonal forecasts start from.

pub mod prometheus;
pub mod redis;
pub mod secret;

use std::path::PathBuf;
use std::time::Duration;

use self::prometheus::{PrometheusAuth, PrometheusSampler, PrometheusSetupError};
use self::redis::{Access, Endpoint, RedisSampler, Tls};
use self::secret::SecretError;
use crate::decide::Learnt;
use crate::observe::{Observation, Timestamp};
use crate::policy::{Policy, PrometheusCredentials, Target};

/// Everything one policy samples each round: its instances' `INFO` and its PromQL queries.
pub struct PolicySampler {
    redis: RedisSampler,
    prometheus: Option<PrometheusSampler>,
    queries: Vec<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum SetupError {
    #[error("cannot read the Redis password (spec.auth)")]
    RedisPassword(#[source] SecretError),
    #[error("cannot read the TLS CA file `{}` (spec.tls.caFile)", .path.display())]
    CaFile {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot read the Prometheus credentials (spec.prometheus)")]
    PrometheusCredentials(#[source] SecretError),
    #[error(transparent)]
    Prometheus(#[from] PrometheusSetupError),
    #[error("target `{0}` is a StatefulSet: its instances are listed through the Kubernetes API")]
    KubernetesTarget(String),
}

impl PolicySampler {
    /// Reads the policy's secrets now (so a missing one fails at start, naming where it was
    /// expected) and prepares the clients.
    pub fn new(policy: &Policy) -> Result<Self, SetupError> {
        let access = redis_access(policy)?;
        let timeout = policy.sampling.timeout;
        let prometheus = match &policy.prometheus {
            None => None,
            Some(source) => {
                let auth = match &source.credentials {
                    None => None,
                    Some(PrometheusCredentials::Bearer(token)) => Some(PrometheusAuth::Bearer(
                        secret::read(token).map_err(SetupError::PrometheusCredentials)?,
                    )),
                    Some(PrometheusCredentials::Basic { username, password }) => {
                        Some(PrometheusAuth::Basic {
                            username: username.clone(),
                            password: secret::read(password)
                                .map_err(SetupError::PrometheusCredentials)?,
                        })
                    }
                };
                Some(PrometheusSampler::new(&source.url, auth, timeout)?)
            }
        };
        Ok(Self {
            redis: RedisSampler::new(access, timeout),
            prometheus,
            queries: policy.prometheus_queries().into_iter().map(str::to_owned).collect(),
        })
    }

    /// One round: every endpoint and every query at once; `at` is when the round started.
    pub async fn round(&self, endpoints: &[Endpoint], at: Timestamp) -> Observation {
        let queries = async {
            match &self.prometheus {
                Some(prometheus) => prometheus.sample(&self.queries).await,
                None => Vec::new(),
            }
        };
        let (instances, queries) = tokio::join!(self.redis.sample(endpoints), queries);
        Observation { at, instances, queries }
    }
}

/// One metric's past, as Prometheus kept it, for what the metric learns over time.
#[derive(Debug, Clone, PartialEq)]
pub struct MetricHistory {
    /// The metric's index in `spec.scaling.metrics`.
    pub metric: usize,
    pub learns: Learnt,
    pub query: String,
    /// Oldest first, one per step; or why it could not be read.
    pub points: Result<Vec<(Timestamp, f64)>, String>,
}

impl PolicySampler {
    /// The history of every metric whose seasonal forecast or measured bursts name a query:
    /// for the forecast per minute, over the longest period plus what it looks ahead and an
    /// hour to score it on; for the bursts per sampling round, over their window plus the
    /// metric's (the level of the window's first round).
    pub async fn metric_histories(&self, policy: &Policy, now: Timestamp) -> Vec<MetricHistory> {
        let Some(scaling) = &policy.scaling else { return Vec::new() };
        const MINUTE: Duration = Duration::from_secs(60);
        let mut wanted = Vec::new();
        for (metric, m) in scaling.metrics.iter().enumerate() {
            if let Some(seasonal) = &m.seasonal
                && let Some(query) = &seasonal.history
            {
                let longest = seasonal.periods.iter().max().copied().unwrap_or_default();
                let span = longest
                    .saturating_add(scaling.warmup)
                    .saturating_add(seasonal.horizon)
                    .saturating_add(Duration::from_secs(3600));
                wanted.push((metric, Learnt::Seasonal, query.clone(), span, MINUTE));
            }
            if let Some(bursts) = &m.bursts
                && let Some(query) = &bursts.history
            {
                let span = bursts.window.saturating_add(m.window);
                let step = policy.sampling.interval;
                wanted.push((metric, Learnt::Bursts, query.clone(), span, step));
            }
        }
        let reads = wanted.into_iter().map(|(metric, learns, query, span, step)| async move {
            let start = chrono::Duration::from_std(span)
                .ok()
                .and_then(|span| now.checked_sub_signed(span))
                .unwrap_or(now);
            let points = match &self.prometheus {
                Some(prometheus) => prometheus.history(&query, start, now, step).await,
                None => Err("no spec.prometheus to read it from".to_owned()),
            };
            MetricHistory { metric, learns, query, points }
        });
        futures::future::join_all(reads).await
    }
}

/// How to reach the policy's Redis instances: its `auth` and `tls`, with secrets read now (so
/// a missing one fails at start, naming where it was expected).
pub fn redis_access(policy: &Policy) -> Result<Access, SetupError> {
    let mut access = Access::default();
    if let Some(auth) = &policy.auth {
        access.username = auth.username.clone();
        access.password = Some(secret::read(&auth.password).map_err(SetupError::RedisPassword)?);
    }
    if let Some(tls) = &policy.tls {
        let ca_pem = match &tls.ca_file {
            None => None,
            Some(path) => Some(
                // 1 MiB: a whole system CA bundle is a few hundred KiB.
                crate::file_read::read_regular(path, 1 << 20)
                    .map_err(|source| SetupError::CaFile { path: path.clone(), source })?,
            ),
        };
        access.tls = Some(Tls { ca_pem });
    }
    Ok(access)
}

/// The instances of a target that need no cluster API: the listed endpoints, or every port
/// the local fleet may use (`basePort` up to `maxReplicas` instances).
pub fn static_endpoints(policy: &Policy) -> Result<Vec<Endpoint>, SetupError> {
    match &policy.target {
        Target::Endpoints(list) => Ok(list.clone()),
        Target::Local { base_port, .. } => {
            let count = policy.scaling.as_ref().map_or(1, |s| s.max_replicas);
            Ok((0..count)
                .filter_map(|i| base_port.checked_add(i))
                .map(Endpoint::loopback)
                .collect())
        }
        Target::Kubernetes { namespace, stateful_set, .. } => {
            Err(SetupError::KubernetesTarget(format!("{namespace}/{stateful_set}")))
        }
    }
}
