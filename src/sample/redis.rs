//! The Redis sampler: `INFO` from every instance of a target, concurrently, each under its own
//! deadline, classified by outcome. Connections are kept between rounds (one multiplexed
//! connection per instance) and dropped on any failure, so a round costs one round trip. No
//! reply may exceed [`MAX_REPLY_BYTES`]: more is a protocol error, read in bounded memory.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use redis::aio::MultiplexedConnection;
use redis::{AsyncConnectionConfig, ErrorKind, RedisConnectionInfo, RedisError};

use super::secret::Secret;
use crate::observe::{Info, InstanceId, InstanceSample, Outcome};

pub use crate::model::Endpoint;

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
    let mut settings =
        RedisConnectionInfo::default().set_lib_name("redis-autopilot", env!("CARGO_PKG_VERSION"));
    if let Some(username) = &access.username {
        settings = settings.set_username(username);
    }
    if let Some(password) = &access.password {
        settings = settings.set_password(password.expose());
    }
    // The library's own deadlines default to 500 ms; ours is the caller's.
    let config = AsyncConnectionConfig::new()
        .set_connection_timeout(Some(timeout))
        .set_response_timeout(Some(timeout));
    // The redis crate buffers a reply whole, whatever length it announces: a peer answering
    // `$209715200` grew the daemon by hundreds of MB. So the connection is opened here and
    // every byte the crate reads passes through [`ReplyLimit`] first.
    let stream = tokio::time::timeout(timeout, open_stream(endpoint, access))
        .await
        .map_err(|_| RedisError::from(std::io::Error::from(std::io::ErrorKind::TimedOut)))??;
    let (connection, driver) =
        MultiplexedConnection::new_with_config(&settings, ReplyLimit::new(stream), config).await?;
    tokio::spawn(driver);
    Ok(connection)
}

/// The largest reply accepted from an instance. A real `INFO` is a few KB (a few tens with
/// many clients' or modules' sections); anything past this is a broken or hostile peer.
pub const MAX_REPLY_BYTES: u64 = 1 << 20;

/// What the byte stream under the redis crate is: TCP, or TLS over it.
trait Io: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send {}
impl<T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send> Io for T {}

/// TCP, wrapped in TLS when `access` says so: the policy's CA bundle, else the webpki roots
/// (what the redis crate's `tls-rustls-webpki-roots` trusts). Errors stay `io::Error`s, so
/// [`classify`] tells refusals, timeouts and TLS failures apart as before.
async fn open_stream(endpoint: &Endpoint, access: &Access) -> Result<Box<dyn Io>, RedisError> {
    let tcp = tokio::net::TcpStream::connect((endpoint.host.as_str(), endpoint.port)).await?;
    // Replies are one round trip each: small writes must not wait for Nagle.
    let _ = tcp.set_nodelay(true);
    let Some(tls) = &access.tls else { return Ok(Box::new(tcp)) };
    use tokio_rustls::rustls;
    let bad_config = |what: String| {
        RedisError::from((ErrorKind::InvalidClientConfig, "invalid TLS settings", what))
    };
    let mut roots = rustls::RootCertStore::empty();
    match &tls.ca_pem {
        Some(pem) => {
            use rustls::pki_types::pem::PemObject as _;
            for cert in rustls::pki_types::CertificateDer::pem_slice_iter(pem) {
                let cert = cert.map_err(|e| bad_config(format!("CA bundle: {e}")))?;
                roots.add(cert).map_err(|e| bad_config(format!("CA bundle: {e}")))?;
            }
        }
        None => roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned()),
    }
    let provider = std::sync::Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| bad_config(e.to_string()))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    let name = rustls::pki_types::ServerName::try_from(endpoint.host.clone())
        .map_err(|e| bad_config(format!("server name `{}`: {e}", endpoint.host)))?;
    let connector = tokio_rustls::TlsConnector::from(std::sync::Arc::new(config));
    Ok(Box::new(connector.connect(name, tcp).await?))
}

/// A reply longer than [`MAX_REPLY_BYTES`] (announced or streamed): the read fails with this
/// inside an `InvalidData` I/O error, and the sample is a protocol error.
#[derive(Debug, thiserror::Error)]
#[error("the instance sent a reply longer than {limit} bytes ({what})")]
pub struct ReplyTooLarge {
    limit: u64,
    what: String,
}

/// Follows RESP framing (2 and 3) on the bytes read, without buffering them, and fails the
/// read as soon as one reply announces or reaches more than [`MAX_REPLY_BYTES`]: the redis
/// crate's parser then never holds more than that. Aggregates are tracked too, so a reply of
/// millions of tiny elements is bounded like one huge string.
struct ReplyLimit<S> {
    inner: S,
    limit: u64,
    /// The header line being read (type byte, length or simple value).
    line: Vec<u8>,
    /// Payload bytes (with their CRLF) of the current bulk value still to come.
    payload: u64,
    /// Elements still expected by each open aggregate, innermost last.
    open: Vec<u64>,
    /// Bytes of the current top-level reply so far.
    reply: u64,
}

impl<S> ReplyLimit<S> {
    fn new(inner: S) -> Self {
        Self::with_limit(inner, MAX_REPLY_BYTES)
    }

    fn with_limit(inner: S, limit: u64) -> Self {
        Self { inner, limit, line: Vec::new(), payload: 0, open: Vec::new(), reply: 0 }
    }

    fn too_large(&self, what: String) -> std::io::Error {
        std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            ReplyTooLarge { limit: self.limit, what },
        )
    }

    /// Accounts for `bytes`, just read.
    fn scan(&mut self, mut bytes: &[u8]) -> std::io::Result<()> {
        while !bytes.is_empty() {
            if self.payload > 0 {
                let n = self.payload.min(bytes.len() as u64);
                self.payload -= n;
                self.reply += n;
                bytes = &bytes[n as usize..];
                if self.payload == 0 {
                    self.element_done();
                }
                continue;
            }
            let end = bytes.iter().position(|&b| b == b'\n');
            let take = end.map_or(bytes.len(), |i| i + 1);
            self.line.extend_from_slice(&bytes[..take]);
            self.reply += take as u64;
            bytes = &bytes[take..];
            if self.reply > self.limit {
                return Err(self.too_large(format!("{} bytes and counting", self.reply)));
            }
            if end.is_some() {
                let line = std::mem::take(&mut self.line);
                self.header(&line)?;
            }
        }
        if self.reply > self.limit {
            return Err(self.too_large(format!("{} bytes and counting", self.reply)));
        }
        Ok(())
    }

    /// One complete header line (with its `\r\n`).
    fn header(&mut self, line: &[u8]) -> std::io::Result<()> {
        let text = line.strip_suffix(b"\r\n").unwrap_or(line);
        let Some((&kind, rest)) = text.split_first() else { return Ok(()) };
        // A malformed length is left to the redis crate's parser, which reports it.
        let length = std::str::from_utf8(rest).ok().and_then(|t| t.parse::<i64>().ok());
        match (kind, length) {
            // Bulk string, verbatim string, bulk error: a payload of that length follows.
            (b'$' | b'=' | b'!', Some(n)) if n >= 0 => {
                let n = n as u64;
                if self.reply.saturating_add(n) > self.limit {
                    return Err(self.too_large(format!("a {n}-byte string was announced")));
                }
                self.payload = n + 2;
            }
            // Array, set, push; map and attribute hold pairs.
            (b'*' | b'~' | b'>' | b'%' | b'|', Some(n)) if n > 0 => {
                let n = if matches!(kind, b'%' | b'|') { n as u64 * 2 } else { n as u64 };
                // Every element takes at least 3 bytes (`:1\r\n` is 4, `_\r\n` 3).
                if self.reply.saturating_add(n.saturating_mul(3)) > self.limit {
                    return Err(self.too_large(format!("{n} elements were announced")));
                }
                self.open.push(n);
            }
            _ => self.element_done(),
        }
        Ok(())
    }

    /// A value ended: it counts toward its aggregate, and maybe completes the reply.
    fn element_done(&mut self) {
        while let Some(left) = self.open.last_mut() {
            *left -= 1;
            if *left > 0 {
                return;
            }
            self.open.pop();
        }
        self.reply = 0;
    }
}

impl<S: tokio::io::AsyncRead + Unpin> tokio::io::AsyncRead for ReplyLimit<S> {
    fn poll_read(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        let before = buf.filled().len();
        let polled = std::pin::Pin::new(&mut self.inner).poll_read(cx, buf);
        if let std::task::Poll::Ready(Ok(())) = &polled {
            let fresh = buf.filled()[before..].to_vec();
            if let Err(error) = self.scan(&fresh) {
                return std::task::Poll::Ready(Err(error));
            }
        }
        polled
    }
}

impl<S: tokio::io::AsyncWrite + Unpin> tokio::io::AsyncWrite for ReplyLimit<S> {
    fn poll_write(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        data: &[u8],
    ) -> std::task::Poll<std::io::Result<usize>> {
        std::pin::Pin::new(&mut self.inner).poll_write(cx, data)
    }

    fn poll_flush(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.inner).poll_shutdown(cx)
    }
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
    } else if matches!(error.kind(), ErrorKind::Parse | ErrorKind::UnexpectedReturnType)
        || is_reply_too_large(error)
    {
        Outcome::Protocol(error.to_string())
    } else if is_tls_failure(error) {
        Outcome::Tls(error.to_string())
    } else {
        Outcome::Unreachable(error.to_string())
    }
}

/// [`ReplyLimit`] cut the reply off: the peer does not speak Redis's protocol as Redis does.
fn is_reply_too_large(error: &RedisError) -> bool {
    let io = std::error::Error::source(error)
        .and_then(|source| {
            source.downcast_ref::<std::sync::Arc<dyn std::error::Error + Send + Sync>>()
        })
        .and_then(|shared| shared.downcast_ref::<std::io::Error>());
    io.and_then(std::io::Error::get_ref).is_some_and(|inner| inner.is::<ReplyTooLarge>())
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
    use super::{Endpoint, ReplyLimit};

    #[test]
    fn replies_are_bounded_whole_not_only_per_string() {
        let mut limit = ReplyLimit::with_limit((), 64);
        // Small replies, split anywhere, pass; each reply's count starts afresh.
        for _ in 0..10 {
            for byte in b"*2\r\n$3\r\nabc\r\n:12\r\n+OK\r\n" {
                limit.scan(&[*byte]).unwrap();
            }
        }
        assert!(limit.scan(b"$65\r\n").is_err(), "an announced string over the limit");
        let mut limit = ReplyLimit::with_limit((), 64);
        assert!(limit.scan(b"*30\r\n").is_err(), "more elements than could fit");
        let mut limit = ReplyLimit::with_limit((), 64);
        limit.scan(b"*10\r\n").unwrap();
        let mut failed = false;
        for _ in 0..10 {
            failed |= limit.scan(b"+aaaaaaaaaa\r\n").is_err();
        }
        assert!(failed, "an aggregate whose elements add up past the limit");
        let mut limit = ReplyLimit::with_limit((), 64);
        assert!(limit.scan(&[b'+'; 100]).is_err(), "a line with no end");
    }

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
