//! The Prometheus sampler: the policy's PromQL instant queries, concurrently, each under the
//! sampling deadline. A result is every series' value; aggregating them is the core's job
//! (the metric's `aggregate`), and an empty result is reported as such — never as zero.
//!
//! It also reads a seasonal forecast's history back ([`PrometheusSampler::history`]): a range
//! query per day, so a daemon that restarts forecasts from its first decision.

use std::time::Duration;

use prometheus_http_query::Client;
use prometheus_http_query::response::Data;

use super::secret::Secret;
use crate::observe::{QueryResult, Timestamp};

/// How to authenticate to Prometheus, secrets already read.
#[derive(Debug, Clone)]
pub enum PrometheusAuth {
    Bearer(Secret),
    Basic { username: String, password: Secret },
}

pub struct PrometheusSampler {
    client: Client,
    auth: Option<PrometheusAuth>,
    timeout: Duration,
}

#[derive(Debug, thiserror::Error)]
pub enum PrometheusSetupError {
    #[error("invalid Prometheus URL `{url}`: {message}")]
    Url { url: String, message: String },
}

impl PrometheusSampler {
    pub fn new(
        url: &str,
        auth: Option<PrometheusAuth>,
        timeout: Duration,
    ) -> Result<Self, PrometheusSetupError> {
        let http = reqwest::Client::builder().timeout(timeout).build().map_err(|e| {
            PrometheusSetupError::Url { url: url.to_owned(), message: e.to_string() }
        })?;
        let client = Client::from(http, url).map_err(|e| PrometheusSetupError::Url {
            url: url.to_owned(),
            message: e.to_string(),
        })?;
        Ok(Self { client, auth, timeout })
    }

    /// Evaluates every query concurrently; one result per query, in order.
    pub async fn sample(&self, queries: &[String]) -> Vec<QueryResult> {
        futures::future::join_all(
            queries.iter().map(|q| async move {
                QueryResult { query: q.clone(), value: self.query(q).await }
            }),
        )
        .await
    }

    fn authorization(&self) -> Result<Option<reqwest::header::HeaderValue>, String> {
        match &self.auth {
            None => Ok(None),
            Some(PrometheusAuth::Bearer(token)) => bearer(token).map(Some),
            Some(PrometheusAuth::Basic { username, password }) => {
                basic(username, password).map(Some)
            }
        }
    }

    async fn query(&self, query: &str) -> Result<Vec<f64>, String> {
        let mut request = self.client.query(query);
        if let Some(value) = self.authorization()? {
            request = request.header(reqwest::header::AUTHORIZATION, value);
        }
        let response = tokio::time::timeout(self.timeout, request.get())
            .await
            .map_err(|_| format!("timed out after {}", humantime::format_duration(self.timeout)))?
            .map_err(|e| crate::errors::chain(&e))?;
        let values = match response.data() {
            Data::Scalar(sample) => vec![sample.value()],
            Data::Vector(series) => series.iter().map(|s| s.sample().value()).collect(),
            Data::Matrix(_) => {
                return Err("a range vector; write an instant query (no `[5m]` at the end)".into());
            }
        };
        // NaN (a division by zero in the query, say) carries no load information.
        let values: Vec<f64> = values.into_iter().filter(|v| v.is_finite()).collect();
        if values.is_empty() {
            return Err("empty result".into());
        }
        Ok(values)
    }
}

/// At most a day per range query, and fewer points than Prometheus' 11,000 per series: a day
/// of minutes or of 10-second rounds is one read.
const HISTORY_CHUNK: Duration = Duration::from_secs(86_400);
const HISTORY_POINTS_PER_READ: i64 = 10_000;
/// More series than this is a query that forgot to sum them.
const HISTORY_MAX_SERIES: usize = 64;
/// Each range query's deadline: a day of one series is one quick read, even on a loaded
/// Prometheus, and a start must not hang on it.
const HISTORY_TIMEOUT: Duration = Duration::from_secs(30);

impl PrometheusSampler {
    /// `query`'s values every `step` over `[start, end]`, oldest first, the series of each
    /// instant summed (the query should return one: the total). Read a day (or 10,000 steps)
    /// per request.
    pub async fn history(
        &self,
        query: &str,
        start: Timestamp,
        end: Timestamp,
        step: Duration,
    ) -> Result<Vec<(Timestamp, f64)>, String> {
        let step_seconds = step.as_secs().max(1) as i64;
        let chunk = (HISTORY_CHUNK.as_secs() as i64).min(step_seconds * HISTORY_POINTS_PER_READ);
        let (mut from, end) = (start.timestamp(), end.timestamp());
        let mut points = Vec::new();
        while from <= end {
            let to = (from + chunk - step_seconds).min(end);
            let mut request = self.client.query_range(query, from, to, step_seconds as f64);
            if let Some(value) = self.authorization()? {
                request = request.header(reqwest::header::AUTHORIZATION, value);
            }
            let response = tokio::time::timeout(HISTORY_TIMEOUT, request.get())
                .await
                .map_err(|_| {
                    format!("timed out after {}", humantime::format_duration(HISTORY_TIMEOUT))
                })?
                .map_err(|e| crate::errors::chain(&e))?;
            let Data::Matrix(series) = response.data() else {
                return Err("not a range result; write an instant-vector expression".into());
            };
            if series.len() > HISTORY_MAX_SERIES {
                return Err(format!(
                    "{} series; write a query that sums them into one total",
                    series.len()
                ));
            }
            let mut totals: std::collections::BTreeMap<i64, f64> = Default::default();
            for sample in series.iter().flat_map(|s| s.samples()) {
                if sample.value().is_finite() {
                    *totals.entry(sample.timestamp() as i64).or_default() += sample.value();
                }
            }
            points.extend(
                totals
                    .into_iter()
                    .filter_map(|(at, v)| Some((Timestamp::from_timestamp(at, 0)?, v))),
            );
            from = to + step_seconds;
        }
        Ok(points)
    }
}

fn bearer(token: &Secret) -> Result<reqwest::header::HeaderValue, String> {
    let mut value = reqwest::header::HeaderValue::try_from(format!("Bearer {}", token.expose()))
        .map_err(|_| "bearer token holds characters not allowed in a header".to_owned())?;
    value.set_sensitive(true);
    Ok(value)
}

fn basic(username: &str, password: &Secret) -> Result<reqwest::header::HeaderValue, String> {
    use base64::Engine as _;
    let encoded = base64::engine::general_purpose::STANDARD
        .encode(format!("{username}:{}", password.expose()));
    let mut value = reqwest::header::HeaderValue::try_from(format!("Basic {encoded}"))
        .map_err(|_| "basic auth holds characters not allowed in a header".to_owned())?;
    value.set_sensitive(true);
    Ok(value)
}
