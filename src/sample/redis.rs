//! The Redis sampler: `INFO` from every instance of a target, concurrently, each under its own
//! deadline, classified by outcome. Connections are kept between rounds (one multiplexed
//! connection per instance) and dropped on any failure, so a round costs one round trip.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use redis::aio::MultiplexedConnection;
use redis::{
    AsyncConnectionConfig, Client, ConnectionAddr, ErrorKind, IntoConnectionInfo,
    RedisConnectionInfo, RedisError,
};

use super::secret::Secret;
use crate::observe::{Info, InstanceId, InstanceSample, Outcome};

/// Where to reach one Redis instance.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Endpoint {
    /// The instance's stable name: a pod name, or `host:port`.
    pub id: InstanceId,
    pub host: String,
    pub port: u16,
}

impl Endpoint {
    /// Parses `host:port` (the id is the text itself); `[v6]:port` works too.
    pub fn parse(text: &str) -> Option<Self> {
        let (host, port) = text.rsplit_once(':')?;
        let host = host.trim_start_matches('[').trim_end_matches(']');
        let port = port.parse().ok()?;
        (!host.is_empty()).then(|| Self { id: text.to_owned(), host: host.to_owned(), port })
    }
}

/// How to authenticate and encrypt. Built by the caller from the policy's `auth` and `tls`,
/// with secrets already read.
#[derive(Debug, Clone, Default)]
pub struct Access {
    /// ACL user; `None` authenticates as `default` (plain `AUTH password`).
    pub username: Option<String>,
    pub password: Option<Secret>,
    pub tls: Option<Tls>,
}

#[derive(Debug, Clone, Default)]
pub struct Tls {
    /// PEM bundle to trust instead of the built-in Mozilla roots (`webpki-roots`).
    pub ca_pem: Option<Vec<u8>>,
}

pub struct RedisSampler {
    access: Access,
    timeout: Duration,
    /// `INFO` sections asked for; empty: Redis's default set.
    sections: &'static [&'static str],
    connections: Mutex<HashMap<InstanceId, MultiplexedConnection>>,
}

/// What a health probe reads: run id (restarts), roles, links and offsets, and whether an
/// instance holds any keys. A few hundred bytes instead of the default set's ~4 KB, since
/// probes run several times a second.
pub const HEALTH_SECTIONS: &[&str] = &["server", "replication", "keyspace"];

impl RedisSampler {
    /// A sampler reading Redis's default `INFO` sections.
    pub fn new(access: Access, timeout: Duration) -> Self {
        Self::with_sections(access, timeout, &[])
    }

    pub fn with_sections(
        access: Access,
        timeout: Duration,
        sections: &'static [&'static str],
    ) -> Self {
        Self { access, timeout, sections, connections: Mutex::default() }
    }

    fn command(&self) -> redis::Cmd {
        let mut command = redis::cmd("INFO");
        for section in self.sections {
            command.arg(*section);
        }
        command
    }

    /// Samples every endpoint concurrently. Always returns one sample per endpoint, in order;
    /// the round takes at most about `timeout`, however many peers hang.
    pub async fn sample(&self, endpoints: &[Endpoint]) -> Vec<InstanceSample> {
        futures::future::join_all(endpoints.iter().map(|e| self.sample_one(e))).await
    }

    async fn sample_one(&self, endpoint: &Endpoint) -> InstanceSample {
        let result = tokio::time::timeout(self.timeout, self.info(endpoint)).await;
        let outcome = match result {
            Ok(Ok(text)) => {
                return InstanceSample {
                    id: endpoint.id.clone(),
                    outcome: Outcome::Ok,
                    info: Some(Info::parse(&text)),
                };
            }
            Ok(Err(error)) => classify(&error),
            Err(_elapsed) => Outcome::Timeout,
        };
        // Whatever went wrong, the next round starts from a fresh connection.
        self.cache().remove(&endpoint.id);
        tracing::debug!(instance = %endpoint.id, %outcome, "INFO sample failed");
        InstanceSample { id: endpoint.id.clone(), outcome, info: None }
    }

    async fn info(&self, endpoint: &Endpoint) -> Result<String, RedisError> {
        let cached = self.cache().get(&endpoint.id).cloned();
        if let Some(mut connection) = cached {
            match self.command().query_async(&mut connection).await {
                // The connection broke since the last round (the instance died or restarted):
                // that says nothing about the instance now, so look again on a fresh one,
                // which is refused, or reaches the new process. `INFO` only reads, so asking
                // twice is harmless; both attempts share the caller's deadline.
                Err(error) if error.is_connection_dropped() => {
                    self.cache().remove(&endpoint.id);
                }
                result => return result,
            }
        }
        let mut connection = connect(endpoint, &self.access, self.timeout).await?;
        self.cache().insert(endpoint.id.clone(), connection.clone());
        self.command().query_async(&mut connection).await
    }

    fn cache(&self) -> std::sync::MutexGuard<'_, HashMap<InstanceId, MultiplexedConnection>> {
        // A panic elsewhere while holding the lock leaves only connections behind: still usable.
        self.connections.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

/// Opens one multiplexed connection to `endpoint` with `access`, both the connect and every
/// reply bounded by `timeout`. Shared by the sampler and the cluster's role commands, so both
/// authenticate and encrypt the same way. The password is sent in `AUTH` only; the redis
/// crate's errors never include it.
pub(crate) async fn connect(
    endpoint: &Endpoint,
    access: &Access,
    timeout: Duration,
) -> Result<MultiplexedConnection, RedisError> {
    let addr = match &access.tls {
        None => ConnectionAddr::Tcp(endpoint.host.clone(), endpoint.port),
        Some(_) => ConnectionAddr::TcpTls {
            host: endpoint.host.clone(),
            port: endpoint.port,
            insecure: false,
            tls_params: None,
        },
    };
    let mut settings =
        RedisConnectionInfo::default().set_lib_name("redis-autopilot", env!("CARGO_PKG_VERSION"));
    if let Some(username) = &access.username {
        settings = settings.set_username(username);
    }
    if let Some(password) = &access.password {
        settings = settings.set_password(password.expose());
    }
    let info = addr.into_connection_info()?.set_redis_settings(settings);
    let client = match access.tls.as_ref().and_then(|t| t.ca_pem.clone()) {
        Some(root_cert) => Client::build_with_tls(
            info,
            redis::TlsCertificates { client_tls: None, root_cert: Some(root_cert) },
        )?,
        None => Client::open(info)?,
    };
    // The library's own deadlines default to 500 ms; ours is the caller's.
    let config = AsyncConnectionConfig::new()
        .set_connection_timeout(Some(timeout))
        .set_response_timeout(Some(timeout));
    client.get_multiplexed_async_connection_with_config(&config).await
}

/// Refused and timed out stay apart: failover detection weighs them differently.
fn classify(error: &RedisError) -> Outcome {
    if error.is_connection_refusal() {
        Outcome::Refused
    } else if error.is_timeout() {
        Outcome::Timeout
    } else if error.kind() == ErrorKind::AuthenticationFailed
        || matches!(error.code(), Some("WRONGPASS" | "NOAUTH" | "NOPERM"))
    {
        Outcome::AuthFailed(error.to_string())
    } else if matches!(error.kind(), ErrorKind::Parse | ErrorKind::UnexpectedReturnType) {
        Outcome::Protocol(error.to_string())
    } else if is_tls_failure(error) {
        Outcome::Tls(error.to_string())
    } else {
        Outcome::Unreachable(error.to_string())
    }
}

/// A rustls error under the I/O error: the handshake, not the network, failed. The redis
/// crate keeps the I/O error in an `Arc` it exposes only as an error source, and the TLS
/// stream reports rustls errors as I/O errors wrapping them.
fn is_tls_failure(error: &RedisError) -> bool {
    use std::error::Error;
    let io = std::error::Error::source(error)
        .and_then(|source| source.downcast_ref::<std::sync::Arc<dyn Error + Send + Sync>>())
        .and_then(|shared| shared.downcast_ref::<std::io::Error>());
    io.and_then(std::io::Error::get_ref)
        .is_some_and(|inner| inner.is::<tokio_rustls::rustls::Error>())
}

#[cfg(test)]
mod tests {
    use super::Endpoint;

    #[test]
    fn endpoints_parse_host_and_port() {
        let e = Endpoint::parse("10.0.0.7:6380").unwrap();
        assert_eq!((e.host.as_str(), e.port, e.id.as_str()), ("10.0.0.7", 6380, "10.0.0.7:6380"));
        let v6 = Endpoint::parse("[::1]:6379").unwrap();
        assert_eq!((v6.host.as_str(), v6.port), ("::1", 6379));
        assert!(Endpoint::parse("no-port").is_none());
        assert!(Endpoint::parse(":6379").is_none());
        assert!(Endpoint::parse("host:99999").is_none());
    }
}
