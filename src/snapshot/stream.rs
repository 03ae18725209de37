//! The replication handshake that makes a Redis send its RDB, and the payload reader.
//!
//! This is what `redis-cli --rdb` does, on a raw socket because the stream is not RESP once
//! the payload starts: `AUTH` (as the sampler authenticates), `REPLCONF capa eof` and
//! `REPLCONF rdb-only 1` (both must answer `+OK`: a user without `+replconf` would otherwise
//! get a full replica stream that never ends), then `PSYNC ? -1`, answered with
//! `+FULLRESYNC <replid> <offset>` (kept for the manifest). Before the payload the server may
//! send bare `\n` keepalives and `+` lines; `-` lines are errors, of which `-NOMASTERLINK`
//! and `-LOADING` are worth retrying elsewhere or later.
//!
//! The payload comes in one of two forms: `$<len>\r\n` then exactly `len` bytes (disk-based
//! sync), or `$EOF:<40 chars>\r\n`, the RDB, then the same 40 chars (diskless, the default
//! since 7.0). In the second form the reader holds back the last bytes it has seen until it
//! knows they are not the end mark, and ignores newlines after the mark (Redis 7.0.0-7.0.5
//! sent a stray one).
//!
//! Time: each handshake step is bounded; so is each silence (`stall`). A [`Pace`] bounds the
//! rest: the whole transfer runs under the snapshot's deadline, and the payload under its
//! throughput floor, so a peer that keeps the stall timer alive with a keepalive or a byte
//! now and then still fails, naming the figure.

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use tokio::io::{AsyncRead, AsyncReadExt as _, AsyncWrite, AsyncWriteExt as _};
use tokio::net::TcpStream;
use tokio_rustls::rustls;

use super::pace::{Pace, PaceError};
use crate::sample::redis::{Access, Endpoint};

/// One read from the socket: large enough that a fast loopback transfer costs few wakeups.
const READ_SIZE: usize = 256 * 1024;
/// Length of the diskless end mark.
const MARK_LEN: usize = 40;
/// Bytes held back in the diskless form: the mark plus room for trailing newlines.
const HOLD_BACK: usize = MARK_LEN + 8;

/// A socket, plain or TLS.
pub trait Io: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Io for T {}

/// How long each phase may take.
#[derive(Debug, Clone, Copy)]
pub struct Deadlines {
    /// Connecting, TLS, `AUTH` and the `REPLCONF`s, each.
    pub handshake: Duration,
    /// The longest silence once `PSYNC` is sent: no keepalive, no payload byte. Redis sends
    /// a keepalive every second while it forks, so a long silence means a dead peer.
    pub stall: Duration,
}

#[derive(Debug, thiserror::Error)]
pub enum StreamError {
    #[error("cannot connect")]
    Connect(#[source] std::io::Error),
    #[error("TLS: {0}")]
    Tls(String),
    #[error("connection failed while {phase}")]
    Io {
        phase: &'static str,
        #[source]
        source: std::io::Error,
    },
    #[error("no answer within {after:?} while {phase}")]
    Timeout { phase: &'static str, after: Duration },
    #[error("{command} refused: {reply}")]
    Rejected { command: &'static str, reply: String },
    #[error("unexpected reply to {command}: {reply:?}")]
    Protocol { command: &'static str, reply: String },
    #[error("the connection closed after {received} payload bytes{}", expected_text(*.expected))]
    Truncated { received: u64, expected: Option<u64> },
    /// Too slow, or past the snapshot's deadline: the figure and the limit.
    #[error(transparent)]
    Pace(#[from] PaceError),
}

fn expected_text(expected: Option<u64>) -> String {
    expected.map(|n| format!(" of {n}")).unwrap_or_default()
}

impl StreamError {
    /// Worth trying another instance (or the same later): the instance is not connected to
    /// its master, or is loading its data. `-NOPERM`, wrong passwords and protocol errors
    /// are not: they would fail the same way anywhere.
    pub fn retryable(&self) -> bool {
        match self {
            StreamError::Rejected { reply, .. } => {
                reply.starts_with("NOMASTERLINK") || reply.starts_with("LOADING")
            }
            StreamError::Connect(_) => true,
            _ => false,
        }
    }

    pub fn category(&self) -> &'static str {
        match self {
            StreamError::Connect(_) => "connect",
            StreamError::Tls(_) => "tls",
            StreamError::Io { .. } | StreamError::Truncated { .. } => "stream_io",
            StreamError::Timeout { .. } => "stream_timeout",
            StreamError::Rejected { reply, .. } if reply.starts_with("NOMASTERLINK") => {
                "no_master_link"
            }
            StreamError::Rejected { reply, .. }
                if reply.starts_with("WRONGPASS") || reply.starts_with("NOAUTH") =>
            {
                "auth"
            }
            StreamError::Rejected { reply, .. } if reply.starts_with("NOPERM") => "permission",
            StreamError::Rejected { .. } => "rejected",
            StreamError::Protocol { .. } => "protocol",
            StreamError::Pace(error) => error.category(),
        }
    }
}

/// The payload's framing.
#[derive(Debug)]
enum Form {
    Length { remaining: u64 },
    Eof { mark: [u8; MARK_LEN] },
}

/// An RDB transfer in progress: read it with [`Transfer::next`] until `None`.
pub struct Transfer {
    io: Box<dyn Io>,
    buf: BytesMut,
    form: Form,
    done: bool,
    received: u64,
    stall: Duration,
    /// The snapshot's deadline and throughput floor.
    pace: Pace,
    /// When the socket last gave bytes: silence is measured from here.
    last_read: Instant,
    /// From `+FULLRESYNC`: the replication id and offset the RDB corresponds to.
    pub replid: Option<String>,
    pub offset: Option<u64>,
}

impl Transfer {
    /// Connects to `endpoint`, authenticates, and asks for an RDB; returns once the payload
    /// header arrived. Bounded by `deadlines` only; see [`Transfer::open_paced`].
    pub async fn open(
        endpoint: &Endpoint,
        access: &Access,
        deadlines: Deadlines,
    ) -> Result<Self, StreamError> {
        Self::open_paced(endpoint, access, deadlines, Pace::unlimited(Instant::now())).await
    }

    /// [`Transfer::open`] under `pace`: the wait for the payload counts against its
    /// deadline, and the payload read with [`Transfer::next`] against its floor too.
    pub async fn open_paced(
        endpoint: &Endpoint,
        access: &Access,
        deadlines: Deadlines,
        mut pace: Pace,
    ) -> Result<Self, StreamError> {
        pace.check(0, Instant::now())?;
        let io = connect(endpoint, access, deadlines.handshake).await?;
        let mut conn = Conn { io, buf: BytesMut::with_capacity(READ_SIZE) };
        let step = deadlines.handshake;
        if let Some(password) = &access.password {
            let mut args = vec!["AUTH"];
            if let Some(user) = &access.username {
                args.push(user);
            }
            args.push(password.expose());
            conn.command(&args, step).await?;
            // The password is never echoed: a rejection says only what Redis answered.
            conn.expect_ok("AUTH", step).await?;
        }
        conn.command(&["REPLCONF", "capa", "eof"], step).await?;
        conn.expect_ok("REPLCONF capa eof", step).await?;
        conn.command(&["REPLCONF", "rdb-only", "1"], step).await?;
        conn.expect_ok("REPLCONF rdb-only 1", step).await?;
        conn.command(&["PSYNC", "?", "-1"], step).await?;
        let (mut replid, mut offset) = (None, None);
        let form = loop {
            // Keepalives reset the stall timer, so the deadline is judged between them.
            let wait = deadlines.stall.min(pace.until_due(Instant::now()));
            let line = match conn.line("waiting for the RDB", wait).await {
                Err(StreamError::Timeout { .. }) if wait < deadlines.stall => {
                    pace.check(0, Instant::now())?;
                    continue;
                }
                Err(StreamError::Timeout { phase, .. }) => {
                    return Err(StreamError::Timeout { phase, after: deadlines.stall });
                }
                other => other?,
            };
            pace.check(0, Instant::now())?;
            if line.is_empty() {
                continue; // a keepalive while the server forks
            }
            if let Some(rest) = line.strip_prefix("+FULLRESYNC ") {
                let mut parts = rest.split_whitespace();
                replid = parts.next().map(str::to_owned);
                offset = parts.next().and_then(|o| o.parse().ok());
            } else if line.starts_with('+') {
                continue;
            } else if let Some(reply) = line.strip_prefix('-') {
                return Err(StreamError::Rejected { command: "PSYNC", reply: reply.to_owned() });
            } else if let Some(mark) = line.strip_prefix("$EOF:") {
                let mark: [u8; MARK_LEN] = mark
                    .as_bytes()
                    .try_into()
                    .map_err(|_| StreamError::Protocol { command: "PSYNC", reply: line.clone() })?;
                break Form::Eof { mark };
            } else if let Some(len) = line.strip_prefix('$').and_then(|n| n.parse().ok()) {
                break Form::Length { remaining: len };
            } else {
                return Err(StreamError::Protocol { command: "PSYNC", reply: line });
            }
        };
        let now = Instant::now();
        pace.payload_started(now);
        Ok(Self {
            io: conn.io,
            buf: conn.buf,
            form,
            done: false,
            received: 0,
            stall: deadlines.stall,
            pace,
            last_read: now,
            replid,
            offset,
        })
    }

    /// The RDB's size when the server announced it (disk-based sync).
    pub fn announced_len(&self) -> Option<u64> {
        match self.form {
            Form::Length { remaining } => Some(remaining + self.received),
            Form::Eof { .. } => None,
        }
    }

    /// The next piece of the RDB; `None` once it is complete (the end mark seen, or the
    /// announced length read). A connection that closes before is an error.
    pub async fn next(&mut self) -> Result<Option<Bytes>, StreamError> {
        if self.done {
            return Ok(None);
        }
        match self.form {
            Form::Length { remaining } => {
                if self.buf.is_empty() {
                    self.fill().await?;
                }
                let take = self.buf.len().min(usize::try_from(remaining).unwrap_or(usize::MAX));
                let chunk = self.buf.split_to(take).freeze();
                let remaining = remaining - take as u64;
                self.form = Form::Length { remaining };
                self.done = remaining == 0;
                self.received += take as u64;
                Ok(Some(chunk))
            }
            Form::Eof { mark } => loop {
                // Check before reading: the handshake may have read the whole payload already.
                let end = self.buf.len()
                    - self.buf.iter().rev().take_while(|&&b| b == b'\n' || b == b'\r').count();
                if end >= MARK_LEN && self.buf[end - MARK_LEN..end] == mark {
                    self.done = true;
                    let chunk = self.buf.split_to(end - MARK_LEN).freeze();
                    self.received += chunk.len() as u64;
                    return Ok(Some(chunk));
                }
                if self.buf.len() > HOLD_BACK + READ_SIZE / 2 {
                    let chunk = self.buf.split_to(self.buf.len() - HOLD_BACK).freeze();
                    self.received += chunk.len() as u64;
                    return Ok(Some(chunk));
                }
                self.fill().await?;
            },
        }
    }

    /// Reads more from the socket; a close here is a truncated transfer. Silence longer than
    /// `stall` fails; so does the pace: judged on every read and, when nothing arrives, as
    /// soon as the deadline or the end of a throughput window falls due.
    async fn fill(&mut self) -> Result<(), StreamError> {
        let phase = "reading the RDB";
        self.buf.reserve(READ_SIZE);
        loop {
            let now = Instant::now();
            self.pace.check(0, now)?;
            let silent = now.saturating_duration_since(self.last_read);
            if silent >= self.stall {
                return Err(StreamError::Timeout { phase, after: self.stall });
            }
            let wait = (self.stall - silent).min(self.pace.until_due(now));
            // Cancelling `read_buf` loses nothing: bytes are only taken once it completes.
            let Ok(read) = tokio::time::timeout(wait, self.io.read_buf(&mut self.buf)).await else {
                continue; // a limit fell due: judged at the top of the loop
            };
            let read = read.map_err(|source| StreamError::Io { phase, source })?;
            if read == 0 {
                let expected = self.announced_len();
                return Err(StreamError::Truncated {
                    received: self.received + self.buf.len() as u64,
                    expected,
                });
            }
            self.last_read = Instant::now();
            self.pace.check(read as u64, self.last_read)?;
            return Ok(());
        }
    }
}

/// The socket during the handshake: commands out, lines in.
struct Conn {
    io: Box<dyn Io>,
    buf: BytesMut,
}

impl Conn {
    async fn command(&mut self, args: &[&str], deadline: Duration) -> Result<(), StreamError> {
        let mut out = format!("*{}\r\n", args.len()).into_bytes();
        for arg in args {
            out.extend_from_slice(format!("${}\r\n", arg.len()).as_bytes());
            out.extend_from_slice(arg.as_bytes());
            out.extend_from_slice(b"\r\n");
        }
        let phase = "sending a command";
        tokio::time::timeout(deadline, async {
            self.io.write_all(&out).await?;
            self.io.flush().await
        })
        .await
        .map_err(|_| StreamError::Timeout { phase, after: deadline })?
        .map_err(|source| StreamError::Io { phase, source })
    }

    async fn expect_ok(
        &mut self,
        command: &'static str,
        deadline: Duration,
    ) -> Result<(), StreamError> {
        let line = loop {
            let line = self.line("waiting for a reply", deadline).await?;
            if !line.is_empty() {
                break line;
            }
        };
        match line.strip_prefix('-') {
            _ if line == "+OK" => Ok(()),
            Some(reply) => Err(StreamError::Rejected { command, reply: reply.to_owned() }),
            None => Err(StreamError::Protocol { command, reply: line }),
        }
    }

    /// One line without its `\r\n`; an empty string for a bare `\n` keepalive.
    async fn line(
        &mut self,
        phase: &'static str,
        deadline: Duration,
    ) -> Result<String, StreamError> {
        loop {
            if let Some(pos) = memchr::memchr(b'\n', &self.buf) {
                let line = self.buf.split_to(pos + 1);
                let text = line.strip_suffix(b"\n").unwrap_or(&line);
                let text = text.strip_suffix(b"\r").unwrap_or(text);
                return Ok(String::from_utf8_lossy(text).into_owned());
            }
            if self.buf.len() > 64 * 1024 {
                return Err(StreamError::Protocol {
                    command: "PSYNC",
                    reply: "a line longer than 64 KiB".to_owned(),
                });
            }
            self.buf.reserve(READ_SIZE);
            let read = tokio::time::timeout(deadline, self.io.read_buf(&mut self.buf))
                .await
                .map_err(|_| StreamError::Timeout { phase, after: deadline })?
                .map_err(|source| StreamError::Io { phase, source })?;
            if read == 0 {
                return Err(StreamError::Io {
                    phase,
                    source: std::io::ErrorKind::UnexpectedEof.into(),
                });
            }
        }
    }
}

/// A TCP connection, wrapped in TLS when the policy says so (same roots as the sampler: the
/// policy's CA bundle, else the webpki roots).
async fn connect(
    endpoint: &Endpoint,
    access: &Access,
    deadline: Duration,
) -> Result<Box<dyn Io>, StreamError> {
    let tcp =
        tokio::time::timeout(deadline, TcpStream::connect((endpoint.host.as_str(), endpoint.port)))
            .await
            .map_err(|_| StreamError::Timeout { phase: "connecting", after: deadline })?
            .map_err(StreamError::Connect)?;
    // Best effort: only latency of the handshake's small writes depends on it.
    let _ = tcp.set_nodelay(true);
    let Some(tls) = &access.tls else { return Ok(Box::new(tcp)) };
    let mut roots = rustls::RootCertStore::empty();
    match &tls.ca_pem {
        Some(pem) => {
            use rustls::pki_types::pem::PemObject as _;
            for cert in rustls::pki_types::CertificateDer::pem_slice_iter(pem) {
                let cert = cert.map_err(|e| StreamError::Tls(format!("CA bundle: {e}")))?;
                roots.add(cert).map_err(|e| StreamError::Tls(format!("CA bundle: {e}")))?;
            }
        }
        None => roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned()),
    }
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| StreamError::Tls(e.to_string()))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    let name = rustls::pki_types::ServerName::try_from(endpoint.host.clone())
        .map_err(|e| StreamError::Tls(format!("server name `{}`: {e}", endpoint.host)))?;
    let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
    let stream = tokio::time::timeout(deadline, connector.connect(name, tcp))
        .await
        .map_err(|_| StreamError::Timeout { phase: "the TLS handshake", after: deadline })?
        .map_err(|e| StreamError::Tls(e.to_string()))?;
    Ok(Box::new(stream))
}

#[cfg(test)]
mod tests {
    use tokio::io::AsyncWriteExt as _;

    use super::*;

    /// A fake server on loopback that answers the handshake with `script` after reading the
    /// commands, then closes.
    async fn serve(script: Vec<u8>) -> Endpoint {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        tokio::spawn(async move {
            let (mut socket, _) = listener.accept().await.unwrap();
            let mut seen = Vec::new();
            // Answer each command as it arrives: +OK, +OK, then the script after PSYNC.
            let mut answered = 0;
            let mut buf = [0_u8; 1024];
            while answered < 3 {
                let n = socket.read(&mut buf).await.unwrap();
                if n == 0 {
                    return;
                }
                seen.extend_from_slice(&buf[..n]);
                let commands = seen.windows(5).filter(|w| w == b"REPLC" || w == b"PSYNC").count();
                while answered < commands.min(2) {
                    socket.write_all(b"+OK\r\n").await.unwrap();
                    answered += 1;
                }
                if commands == 3 {
                    socket.write_all(&script).await.unwrap();
                    answered = 3;
                }
            }
            let _ = socket.shutdown().await;
        });
        Endpoint { id: format!("127.0.0.1:{port}"), host: "127.0.0.1".into(), port }
    }

    fn deadlines() -> Deadlines {
        Deadlines { handshake: Duration::from_secs(2), stall: Duration::from_secs(2) }
    }

    async fn read_all(script: Vec<u8>) -> Result<(Vec<u8>, Transfer), StreamError> {
        let endpoint = serve(script).await;
        let mut transfer = Transfer::open(&endpoint, &Access::default(), deadlines()).await?;
        let mut out = Vec::new();
        while let Some(chunk) = transfer.next().await? {
            out.extend_from_slice(&chunk);
        }
        Ok((out, transfer))
    }

    #[tokio::test]
    async fn the_diskless_form_strips_the_mark_and_a_stray_newline() {
        let mark = "a".repeat(40);
        let payload = b"REDIS0010 payload bytes \xff12345678".to_vec();
        let mut script = format!("\n\n+FULLRESYNC 0123abcd 42\r\n\n$EOF:{mark}\r\n").into_bytes();
        script.extend_from_slice(&payload);
        script.extend_from_slice(mark.as_bytes());
        script.push(b'\n');
        let (out, transfer) = read_all(script).await.unwrap();
        assert_eq!(out, payload);
        assert_eq!(transfer.replid.as_deref(), Some("0123abcd"));
        assert_eq!(transfer.offset, Some(42));
    }

    #[tokio::test]
    async fn the_length_form_reads_exactly_that_many_bytes() {
        let payload = vec![7_u8; 100_000];
        let mut script = format!("+FULLRESYNC x 1\r\n${}\r\n", payload.len()).into_bytes();
        script.extend_from_slice(&payload);
        script.extend_from_slice(b"trailing garbage never read as RDB");
        let (out, transfer) = read_all(script).await.unwrap();
        assert_eq!(out, payload);
        assert_eq!(transfer.announced_len(), Some(100_000));
    }

    #[tokio::test]
    async fn a_short_transfer_is_an_error_not_a_smaller_rdb() {
        let mut script = b"$100\r\n".to_vec();
        script.extend_from_slice(&[1_u8; 60]);
        let err = read_all(script).await.err().expect("truncated");
        assert!(
            matches!(err, StreamError::Truncated { received: 60, expected: Some(100) }),
            "{err}"
        );
        let mark = "b".repeat(40);
        let script = format!("$EOF:{mark}\r\nREDIS0010 and then nothing").into_bytes();
        let err = read_all(script).await.err().expect("truncated");
        assert!(matches!(err, StreamError::Truncated { expected: None, .. }), "{err}");
    }

    /// Keepalives every 100 ms reset the stall timer forever; the deadline still ends it.
    #[tokio::test]
    async fn endless_keepalives_before_the_payload_end_at_the_deadline() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        tokio::spawn(async move {
            let (mut socket, _) = listener.accept().await.unwrap();
            let mut seen = Vec::new();
            let mut buf = [0_u8; 1024];
            let mut answered = 0;
            while answered < 2 {
                let n = socket.read(&mut buf).await.unwrap();
                seen.extend_from_slice(&buf[..n]);
                let asked = seen.windows(5).filter(|w| w == b"REPLC").count();
                while answered < asked {
                    socket.write_all(b"+OK\r\n").await.unwrap();
                    answered += 1;
                }
            }
            while socket.write_all(b"\n").await.is_ok() {
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        });
        let endpoint = Endpoint { id: format!("127.0.0.1:{port}"), host: "127.0.0.1".into(), port };
        let limits = crate::policy::TransferLimits {
            min_bytes_per_second: 1,
            throughput_window: Duration::from_secs(60),
            deadline: Duration::from_secs(1),
        };
        let pace = Pace::new(limits, Instant::now());
        let access = Access::default();
        let open = Transfer::open_paced(&endpoint, &access, deadlines(), pace);
        let error = tokio::time::timeout(Duration::from_secs(30), open)
            .await
            .expect("the deadline ends the wait")
            .err()
            .expect("past the deadline");
        assert!(matches!(error, StreamError::Pace(PaceError::Deadline { .. })), "{error}");
        assert_eq!(error.category(), "deadline");
    }

    #[tokio::test]
    async fn error_lines_are_classified() {
        let err =
            read_all(b"\n-NOMASTERLINK Can't SYNC while not connected with my master\r\n".to_vec())
                .await
                .err()
                .expect("refused");
        assert!(err.retryable(), "{err}");
        assert_eq!(err.category(), "no_master_link");
        let err =
            read_all(b"-NOPERM this user has no permissions\r\n".to_vec()).await.err().unwrap();
        assert!(!err.retryable());
        assert_eq!(err.category(), "permission");
    }
}
