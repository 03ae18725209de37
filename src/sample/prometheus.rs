//! The Prometheus sampler: the policy's PromQL instant queries, concurrently, each under the
//! sampling deadline. A result is every series' value; aggregating them is the core's job
//! (the metric's `aggregate`), and an empty result is reported as such — never as zero.

use std::time::Duration;

use prometheus_http_query::Client;
use prometheus_http_query::response::Data;

use super::secret::Secret;
use crate::observe::QueryResult;

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

    async fn query(&self, query: &str) -> Result<Vec<f64>, String> {
        let mut request = self.client.query(query);
        request = match &self.auth {
            None => request,
            Some(PrometheusAuth::Bearer(token)) => {
                request.header(reqwest::header::AUTHORIZATION, bearer(token)?)
            }
            Some(PrometheusAuth::Basic { username, password }) => {
                request.header(reqwest::header::AUTHORIZATION, basic(username, password)?)
            }
        };
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
