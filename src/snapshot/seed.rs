//! The one-shot master: restore through the replication protocol. A Redis told
//! `REPLICAOF host port` connects there, asks for a full resync and loads whatever RDB it is
//! sent, validating it with its own loader. [`Seed`] is such a master for exactly one sync:
//!
//! 1. it listens (a loopback port for the local fleet, the pod's address in a cluster) and accepts **one** connection, from an
//!    allowed peer address; every other is closed at once, and the listener is closed as soon
//!    as that one is accepted, so a replica that reconnects after a failed load is refused;
//! 2. it answers the replica's handshake as `replication.c`'s `syncWithMaster` expects:
//!    `PING` -> `+PONG`, `AUTH` and every `REPLCONF` (`listening-port`, `ip-address`,
//!    `capa eof`, `capa psync2`) -> `+OK`, and `PSYNC <replid> <offset>` (whatever it asks,
//!    `? -1` or a partial resync) -> `+FULLRESYNC <40 hex chars> 0`; an old-style `SYNC`
//!    gets the payload with no status line;
//! 3. it streams the RDB as `$<len>\r\n` and exactly `len` bytes when the length is known, or
//!    as `$EOF:<40 random chars>\r\n`, the RDB, then the same 40 chars (only to a replica that
//!    announced `capa eof`). The last chunk is held back until the source says the whole RDB
//!    verified: a source that fails (a sha256 or CRC64 mismatch found at the end) closes the
//!    link short of the announced length, so the replica never loads a partial file;
//! 4. then it keeps the link alive (`PING` every second, the replica's `REPLCONF ACK`s read and
//!    dropped) until told to stop: the caller polls the replica's `INFO`
//!    ([`wait_loaded`]: link up to this seed, no sync or load in progress) and then promotes it
//!    or points it at its real master.
//!
//! Before any of that, [`check_version`] compares the RDB's header version with the newest the
//! target's `redis_version` can load (Redis's `rdbLoad` refuses a newer one with "Can't handle
//! RDB format version" and would retry the sync forever): refused, naming both.
//!
//! Memory stays bounded: the payload arrives through a channel of a few chunks and is written
//! as it comes; nothing holds the RDB. Time is bounded: each handshake step, each write (a
//! replica that stops reading), and the whole sync.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use tokio::io::{
    AsyncBufReadExt as _, AsyncRead, AsyncReadExt as _, AsyncWriteExt as _, BufReader,
};
use tokio::net::TcpListener;
use tokio::sync::{mpsc, oneshot, watch};

use super::SnapshotError;
use crate::observe::Info;
use crate::sample::redis::{Access, Endpoint, connect};

/// Length of the replication id in `+FULLRESYNC` and of the `$EOF:` mark (Redis's
/// `CONFIG_RUN_ID_SIZE` and `RDB_EOF_MARK_SIZE`).
const ID_LEN: usize = 40;
/// The longest handshake line or argument accepted from the replica: real ones are short.
const MAX_ARG: usize = 4096;
const MAX_ARGS: usize = 16;
/// How often [`wait_loaded`] looks at the replica.
const POLL: Duration = Duration::from_millis(100);

/// The RDB to send: plain RDB bytes in order, through a bounded channel. The producer sends
/// an error instead of its last chunk when the RDB turns out not to match what it should be;
/// the seed then never completes the transfer.
pub struct Payload {
    /// The RDB's size when known (a manifest's `rawBytes`): `$<len>` framing; else `$EOF:`.
    pub len: Option<u64>,
    pub chunks: mpsc::Receiver<Result<Bytes, SnapshotError>>,
    /// Bytes received before streaming started (the header, read to check the version).
    head: Vec<Bytes>,
}

impl Payload {
    pub fn new(len: Option<u64>, chunks: mpsc::Receiver<Result<Bytes, SnapshotError>>) -> Self {
        Self { len, chunks, head: Vec::new() }
    }

    /// The RDB header's format version (`REDIS0010` -> `Rdb { version: 10 }`), read from the
    /// first bytes, which stay queued to be sent.
    pub async fn header(&mut self) -> Result<RdbHeader, SeedError> {
        let mut seen: Vec<u8> = self.head.iter().flat_map(|b| b.iter().copied()).collect();
        while seen.len() < HEADER_LEN {
            match self.chunks.recv().await {
                Some(Ok(chunk)) => {
                    seen.extend_from_slice(&chunk[..chunk.len().min(HEADER_LEN)]);
                    self.head.push(chunk);
                }
                Some(Err(error)) => return Err(SeedError::Source(Box::new(error))),
                None => break,
            }
        }
        RdbHeader::parse(&seen[..seen.len().min(HEADER_LEN)])
    }

    async fn next(&mut self) -> Option<Result<Bytes, SnapshotError>> {
        if !self.head.is_empty() {
            return Some(Ok(self.head.remove(0)));
        }
        self.chunks.recv().await
    }
}

const HEADER_LEN: usize = 9;

/// What an RDB's first bytes say: who wrote it, in which format version.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RdbHeader {
    /// `VALKEY` + 3 digits (Valkey 9 and later) rather than `REDIS` + 4.
    pub valkey: bool,
    pub version: u16,
}

impl RdbHeader {
    pub fn parse(header: &[u8]) -> Result<Self, SeedError> {
        let (valkey, digits) = match (header.strip_prefix(b"REDIS"), header.strip_prefix(b"VALKEY"))
        {
            (Some(digits), _) => (false, digits),
            (None, Some(digits)) => (true, digits),
            (None, None) => (false, &[][..]),
        };
        let version = (!digits.is_empty() && digits.iter().all(u8::is_ascii_digit))
            .then(|| std::str::from_utf8(digits).ok()?.parse().ok())
            .flatten();
        version.map(|version| Self { valkey, version }).ok_or_else(|| SeedError::NotRdb {
            found: String::from_utf8_lossy(header).into_owned(),
        })
    }
}

impl std::fmt::Display for RdbHeader {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.valkey {
            write!(f, "VALKEY{:03}", self.version)
        } else {
            write!(f, "REDIS{:04}", self.version)
        }
    }
}

/// The server the RDB is for, as its `INFO server` describes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerVersion {
    /// `redis_version` (Valkey reports the Redis version it is compatible with here).
    pub redis: String,
    /// `valkey_version`, on Valkey.
    pub valkey: Option<String>,
}

impl ServerVersion {
    pub fn parse(info: &str) -> Option<Self> {
        let field = |name: &str| {
            info.lines().find_map(|line| {
                let (key, value) = line.split_once(':')?;
                (key == name).then(|| value.trim().to_owned())
            })
        };
        Some(Self { redis: field("redis_version")?, valkey: field("valkey_version") })
    }

    /// The newest RDB format version this server loads: Redis's `RDB_VERSION` for its
    /// release (2.6/2.8: 6, 3.2: 7, 4.0: 8, 5.0-6.2: 9, 7.0: 10, 7.2: 11, 7.4 and 8.0: 12).
    /// `None` for a release newer than this table, whose limit is not known here.
    pub fn max_rdb_version(&self) -> Option<u16> {
        let mut parts = self.redis.split('.').map(|p| p.parse::<u16>().unwrap_or(0));
        let (major, minor) = (parts.next().unwrap_or(0), parts.next().unwrap_or(0));
        Some(match (major, minor) {
            (0..=2, _) => 6,
            (3, 0..=1) => 6,
            (3, _) => 7,
            (4, _) => 8,
            (5..=6, _) => 9,
            (7, 0..=1) => 10,
            (7, 2..=3) => 11,
            (7, _) | (8, 0..=1) => 12,
            _ => return None,
        })
    }
}

impl std::fmt::Display for ServerVersion {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.valkey {
            Some(valkey) => write!(f, "Valkey {valkey}"),
            None => write!(f, "Redis {}", self.redis),
        }
    }
}

/// Whether `server` can load an RDB with `header`: Redis refuses any format version newer
/// than its own (`rdbLoad`: "Can't handle RDB format version"), and only Valkey reads a
/// `VALKEY` header. A server newer than [`ServerVersion::max_rdb_version`] knows is let
/// through: its own loader decides, and a refusal there fails the load (see [`wait_loaded`]).
pub fn check_version(header: RdbHeader, server: &ServerVersion) -> Result<(), SeedError> {
    if header.valkey && server.valkey.is_none() {
        return Err(SeedError::Unsupported {
            rdb: header.to_string(),
            server: server.to_string(),
            why: "only Valkey loads a VALKEY header".into(),
        });
    }
    match server.max_rdb_version() {
        Some(max) if !header.valkey && header.version > max && server.valkey.is_none() => {
            Err(SeedError::Unsupported {
                rdb: header.to_string(),
                server: server.to_string(),
                why: format!("it loads RDB format versions up to {max}"),
            })
        }
        _ => Ok(()),
    }
}

/// How long each part of a seeding may take.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Each handshake command, and each INFO or role command sent to the target.
    pub step: Duration,
    /// From serving to the replica's connection: Redis connects within a second of
    /// `REPLICAOF`, so longer means it cannot reach the seed.
    pub connect: Duration,
    /// One write of payload to the replica: longer means it stopped reading.
    pub stall: Duration,
    /// The whole sync, from `REPLICAOF` to the load done.
    pub total: Duration,
    /// How often the link is kept alive once the payload is sent.
    pub keepalive: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            step: Duration::from_secs(10),
            connect: Duration::from_secs(30),
            // Redis's own repl-timeout (60 s) ends a master link silent that long.
            stall: Duration::from_secs(60),
            total: Duration::from_secs(6 * 3600),
            keepalive: Duration::from_secs(1),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum SeedError {
    #[error("cannot listen on {addr} for the replica")]
    Bind {
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
    #[error(
        "cannot listen on {addr} for the replica: another load from this port was still running after {waited:?}"
    )]
    Busy { addr: SocketAddr, waited: Duration },
    #[error("the payload is not an RDB: it starts with {found:?}")]
    NotRdb { found: String },
    #[error("the target runs {server}, which cannot load this {rdb} RDB: {why}")]
    Unsupported { rdb: String, server: String, why: String },
    #[error("cannot read {instance}'s version: {why}")]
    TargetVersion { instance: String, why: String },
    #[error("{action} on {instance} failed: {why}")]
    Target { action: &'static str, instance: String, why: String },
    #[error("no replica connected to the seed within {after:?}")]
    NoReplica { after: Duration },
    #[error("the replica's handshake failed while {phase}: {why}")]
    Handshake { phase: &'static str, why: String },
    #[error(
        "the RDB's length is unknown and the replica did not announce `capa eof`, so it \
         cannot be framed"
    )]
    NoEofCapability,
    /// A replica other than the target (announcing another listening port) connected.
    #[error("a replica listening on port {announced}, not the target, connected to the seed")]
    OtherReplica { announced: u16 },
    #[error("the replica stopped reading: a write of the payload took more than {after:?}")]
    Stalled { after: Duration },
    #[error("the link to the replica failed after {sent} payload bytes")]
    Link {
        sent: u64,
        #[source]
        source: std::io::Error,
    },
    #[error(
        "the replica closed the link after the whole RDB ({sent} bytes): it did not load it \
         (its log says why)"
    )]
    Rejected { sent: u64 },
    #[error("reading the snapshot failed; the replica was never sent the whole RDB")]
    Source(#[source] Box<SnapshotError>),
    #[error("the sync did not finish within {limit:?} ({sent} RDB bytes sent)")]
    Deadline { limit: Duration, sent: u64 },
    #[error("the seed's task failed: {why}")]
    Task { why: String },
}

impl SeedError {
    /// A bounded label for metrics and reports.
    pub fn category(&self) -> &'static str {
        match self {
            SeedError::Bind { .. } | SeedError::Busy { .. } => "bind",
            SeedError::NotRdb { .. } => "not_rdb",
            SeedError::Unsupported { .. } => "rdb_version",
            SeedError::TargetVersion { .. } | SeedError::Target { .. } => "target",
            SeedError::NoReplica { .. } => "no_replica",
            SeedError::Handshake { .. }
            | SeedError::NoEofCapability
            | SeedError::OtherReplica { .. } => "handshake",
            SeedError::Stalled { .. } => "stalled",
            SeedError::Link { .. } => "link",
            SeedError::Rejected { .. } => "rejected",
            SeedError::Source(_) => "source",
            SeedError::Deadline { .. } => "deadline",
            SeedError::Task { .. } => "task",
        }
    }
}

/// The one replica a seed serves. A connection from another address is closed at once; one
/// whose `REPLCONF listening-port` names another port is turned away before the resync
/// (`-ERR`, its data untouched) and the seed waits on: on a shared host every local replica
/// connects from loopback, and a replica of a master that once listened on the seed's port
/// (ports are reused) would otherwise be fed the snapshot in the target's place.
#[derive(Debug, Clone, Default)]
pub struct Expected {
    /// Its addresses; empty: any.
    pub ips: Vec<IpAddr>,
    /// The port it listens on (and announces); `None`: any.
    pub port: Option<u16>,
}

/// A listening one-shot master, not serving yet.
pub struct Seed {
    listener: TcpListener,
    addr: SocketAddr,
    /// This process's turn on a fixed port, held until the seed is done.
    turn: Option<tokio::sync::OwnedMutexGuard<()>>,
}

/// Seeds on a fixed port (`SEED_PORT` in a pod) take turns: two policies bootstrapping at
/// once in one daemon, or a restore test beside a bootstrap, would otherwise find the port
/// taken and fail. A seed on port 0 takes any free port and needs no turn.
static FIXED_PORT_TURN: std::sync::LazyLock<Arc<tokio::sync::Mutex<()>>> =
    std::sync::LazyLock::new(|| Arc::new(tokio::sync::Mutex::new(())));

/// How often a fixed port still in use is tried again: by another process (`snapshot
/// restore` run in the daemon's pod), or by a seed of this one whose task is being dropped.
const BIND_RETRY: Duration = Duration::from_millis(100);

impl Seed {
    /// Listens on `addr`. Port 0: any free port, at once. A fixed port: after this process's
    /// earlier seeds on one are done, and while another process holds it, tried again, for at
    /// most `wait` in all.
    pub async fn bind(addr: SocketAddr, wait: Duration) -> Result<Self, SeedError> {
        let bind = |source| SeedError::Bind { addr, source };
        if addr.port() == 0 {
            let listener = TcpListener::bind(addr).await.map_err(bind)?;
            let addr = listener.local_addr().map_err(bind)?;
            return Ok(Self { listener, addr, turn: None });
        }
        let deadline = tokio::time::Instant::now() + wait;
        let turn = Arc::clone(&FIXED_PORT_TURN);
        let turn = match turn.try_lock_owned() {
            Ok(turn) => turn,
            Err(_) => {
                tracing::info!(%addr, "another load from this seed port is running: waiting for it");
                let turn =
                    tokio::time::timeout_at(deadline, Arc::clone(&FIXED_PORT_TURN).lock_owned());
                turn.await.map_err(|_| SeedError::Busy { addr, waited: wait })?
            }
        };
        loop {
            match TcpListener::bind(addr).await {
                Ok(listener) => return Ok(Self { listener, addr, turn: Some(turn) }),
                Err(error)
                    if error.kind() == std::io::ErrorKind::AddrInUse
                        && tokio::time::Instant::now() + BIND_RETRY < deadline =>
                {
                    tokio::time::sleep(BIND_RETRY).await;
                }
                Err(error) => return Err(bind(error)),
            }
        }
    }

    /// Where the replica is told to connect.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Serves `payload` to the first replica that is the `expected` one, in a task of its own.
    pub fn serve(self, payload: Payload, expected: Expected, limits: Limits) -> Serving {
        let sent = Arc::new(AtomicU64::new(0));
        let (done_tx, done) = watch::channel(false);
        let (stop, stopped) = oneshot::channel();
        let task = tokio::spawn(serve(
            self.listener,
            payload,
            expected,
            limits,
            Arc::clone(&sent),
            done_tx,
            stopped,
        ));
        Serving { addr: self.addr, sent, done, stop: Some(stop), task, _turn: self.turn }
    }
}

/// A seed at work: how far it is, and the handle to end it.
pub struct Serving {
    addr: SocketAddr,
    sent: Arc<AtomicU64>,
    done: watch::Receiver<bool>,
    stop: Option<oneshot::Sender<()>>,
    task: tokio::task::JoinHandle<Result<u64, SeedError>>,
    /// Released when the seed is stopped or dropped (see [`Seed::bind`]).
    _turn: Option<tokio::sync::OwnedMutexGuard<()>>,
}

impl Serving {
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Payload bytes written to the replica so far.
    pub fn sent(&self) -> u64 {
        self.sent.load(Ordering::Relaxed)
    }

    /// Whether the whole RDB was written.
    pub fn payload_sent(&self) -> bool {
        *self.done.borrow()
    }

    /// The seed's task ended by itself (an error, or the replica left).
    pub fn finished(&self) -> bool {
        self.task.is_finished()
    }

    /// Ends the keepalive and closes the link; returns the payload bytes sent, or why the
    /// seed failed.
    pub async fn stop(mut self) -> Result<u64, SeedError> {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        match (&mut self.task).await {
            Ok(result) => result,
            Err(error) => Err(SeedError::Task { why: error.to_string() }),
        }
    }
}

#[cfg(test)]
impl Serving {
    /// The seed's result once its task ends by itself.
    async fn stop_after_end(mut self) -> Result<u64, SeedError> {
        match (&mut self.task).await {
            Ok(result) => result,
            Err(error) => Err(SeedError::Task { why: error.to_string() }),
        }
    }
}

impl Drop for Serving {
    fn drop(&mut self) {
        // Dropped without `stop` (an error elsewhere): the link must not outlive us.
        self.task.abort();
    }
}

async fn serve(
    listener: TcpListener,
    mut payload: Payload,
    expected: Expected,
    limits: Limits,
    sent: Arc<AtomicU64>,
    done: watch::Sender<bool>,
    mut stop: oneshot::Receiver<()>,
) -> Result<u64, SeedError> {
    let accept = async {
        loop {
            let (socket, peer) = listener.accept().await.map_err(|source| {
                SeedError::Handshake { phase: "accepting", why: source.to_string() }
            })?;
            if !expected.ips.is_empty() && !expected.ips.contains(&peer.ip()) {
                tracing::warn!(%peer, "seed: a connection from an address other than the target's was closed");
                continue;
            }
            let _ = socket.set_nodelay(true);
            let (read, mut write) = socket.into_split();
            let mut reader = BufReader::new(read);
            match handshake(&mut reader, &mut write, limits.step, expected.port).await {
                Ok(eof_capable) => return Ok((reader, write, eof_capable)),
                Err(SeedError::OtherReplica { announced }) => {
                    tracing::warn!(%peer, announced, "seed: turned away a replica listening on another port than the target's");
                }
                Err(error) => return Err(error),
            }
        }
    };
    let (mut reader, mut write, eof_capable) = tokio::time::timeout(limits.connect, accept)
        .await
        .map_err(|_| SeedError::NoReplica { after: limits.connect })??;
    // Exactly one replica: a reconnect after a failed load, or anyone else, is refused.
    drop(listener);

    let mark: Option<String> = match (payload.len, eof_capable) {
        (Some(_), _) => None,
        (None, true) => Some(random_hex()),
        (None, false) => return Err(SeedError::NoEofCapability),
    };
    let header = match (&mark, payload.len) {
        (Some(mark), _) => format!("$EOF:{mark}\r\n"),
        (None, len) => format!("${}\r\n", len.unwrap_or_default()),
    };
    let stall = limits.stall;
    put(stall, &mut write, Bytes::from(header), &sent).await?;
    // Hold the last chunk back until the source ends well: a failed check never completes
    // the transfer, so the replica never loads a file that did not verify.
    let mut held: Option<Bytes> = None;
    loop {
        match payload.next().await {
            Some(Ok(chunk)) => {
                if let Some(previous) = held.replace(chunk) {
                    let len = previous.len() as u64;
                    put(stall, &mut write, previous, &sent).await?;
                    sent.fetch_add(len, Ordering::Relaxed);
                }
            }
            Some(Err(error)) => return Err(SeedError::Source(Box::new(error))),
            None => break,
        }
    }
    if let Some(last) = held {
        let len = last.len() as u64;
        put(stall, &mut write, last, &sent).await?;
        sent.fetch_add(len, Ordering::Relaxed);
    }
    if let Some(mark) = mark {
        put(stall, &mut write, Bytes::from(mark), &sent).await?;
    }
    let total = sent.load(Ordering::Relaxed);
    let _ = done.send(true);

    // Keep the link alive until told to stop: after the load the replica times its master
    // out after repl-timeout without traffic. Only once it has acknowledged (its first
    // `REPLCONF ACK`, sent when the sync is done), as Redis's own master waits after a
    // diskless sync: a PING arriving in the same read as the `$EOF:` mark would end the
    // replica's buffer with it instead of the mark, and the replica would wait for the mark
    // forever. Its ACKs are read and dropped.
    let mut tick = tokio::time::interval(limits.keepalive);
    let mut acknowledged = false;
    let mut scratch = vec![0_u8; 4096];
    loop {
        tokio::select! {
            _ = &mut stop => return Ok(total),
            _ = tick.tick(), if acknowledged => {
                put(stall, &mut write, Bytes::from_static(b"*1\r\n$4\r\nPING\r\n"), &sent).await?;
            }
            read = reader.read(&mut scratch) => match read {
                Ok(0) | Err(_) => return Err(SeedError::Rejected { sent: total }),
                Ok(_) => acknowledged = true,
            },
        }
    }
}

/// Writes `bytes` to the replica within `stall`.
async fn put(
    stall: Duration,
    write: &mut tokio::net::tcp::OwnedWriteHalf,
    bytes: Bytes,
    sent: &AtomicU64,
) -> Result<(), SeedError> {
    match tokio::time::timeout(stall, write.write_all(&bytes)).await {
        Err(_) => Err(SeedError::Stalled { after: stall }),
        Ok(Err(source)) => Err(SeedError::Link { sent: sent.load(Ordering::Relaxed), source }),
        Ok(Ok(())) => Ok(()),
    }
}

/// Answers the replica's handshake up to and including its `PSYNC` (or `SYNC`); returns
/// whether it announced `capa eof`. A replica announcing another listening port than
/// `port` gets `-ERR` and [`SeedError::OtherReplica`] before anything is resynced.
async fn handshake<R: AsyncRead + Unpin>(
    reader: &mut BufReader<R>,
    write: &mut tokio::net::tcp::OwnedWriteHalf,
    step: Duration,
    port: Option<u16>,
) -> Result<bool, SeedError> {
    let mut eof_capable = false;
    loop {
        let command = tokio::time::timeout(step, read_command(reader)).await.map_err(|_| {
            SeedError::Handshake {
                phase: "waiting for the next command",
                why: format!("nothing within {step:?}"),
            }
        })??;
        let Some(command) = command else {
            return Err(SeedError::Handshake {
                phase: "reading commands",
                why: "the replica closed the connection".into(),
            });
        };
        let Some(name) = command.first().map(|n| n.to_ascii_uppercase()) else { continue };
        let (reply, last): (String, bool) = match name.as_slice() {
            b"PING" => ("+PONG\r\n".into(), false),
            b"AUTH" => ("+OK\r\n".into(), false),
            b"REPLCONF" => {
                let words: Vec<Vec<u8>> = command.iter().map(|w| w.to_ascii_lowercase()).collect();
                if words.windows(2).any(|w| w[0] == b"capa" && w[1] == b"eof") {
                    eof_capable = true;
                }
                let announced = words
                    .windows(2)
                    .find(|w| w[0] == b"listening-port")
                    .and_then(|w| std::str::from_utf8(&w[1]).ok()?.parse::<u16>().ok());
                if let (Some(announced), Some(port)) = (announced, port)
                    && announced != port
                {
                    let refusal = b"-ERR this seed serves another replica\r\n";
                    let _ = tokio::time::timeout(step, write.write_all(refusal)).await;
                    return Err(SeedError::OtherReplica { announced });
                }
                ("+OK\r\n".into(), false)
            }
            // Whatever it asks (`? -1`, or a partial resync from a replid it remembers), a
            // full resync: this master has no history to continue.
            b"PSYNC" => (format!("+FULLRESYNC {} 0\r\n", random_hex()), true),
            b"SYNC" => (String::new(), true),
            other => (
                format!("-ERR the seed does not serve {}\r\n", String::from_utf8_lossy(other)),
                false,
            ),
        };
        tokio::time::timeout(step, write.write_all(reply.as_bytes()))
            .await
            .map_err(|_| SeedError::Handshake {
                phase: "answering",
                why: format!("write took more than {step:?}"),
            })?
            .map_err(|e| SeedError::Handshake { phase: "answering", why: e.to_string() })?;
        if last {
            return Ok(eof_capable);
        }
    }
}

/// One command: a RESP array of bulk strings (what a replica sends) or an inline line.
async fn read_command<R: AsyncRead + Unpin>(
    reader: &mut BufReader<R>,
) -> Result<Option<Vec<Vec<u8>>>, SeedError> {
    let bad = |why: String| SeedError::Handshake { phase: "reading a command", why };
    let Some(line) = read_line(reader).await? else { return Ok(None) };
    let Some(count) = line.strip_prefix(b"*") else {
        return Ok(Some(
            line.split(|b| b.is_ascii_whitespace())
                .filter(|w| !w.is_empty())
                .map(<[u8]>::to_vec)
                .collect(),
        ));
    };
    let count: usize = parse_number(count)
        .filter(|&n| n <= MAX_ARGS)
        .ok_or_else(|| bad(format!("an array header {:?}", String::from_utf8_lossy(&line))))?;
    let mut words = Vec::with_capacity(count);
    for _ in 0..count {
        let header = read_line(reader).await?.ok_or_else(|| bad("cut short".into()))?;
        let len =
            header.strip_prefix(b"$").and_then(parse_number).filter(|&n| n <= MAX_ARG).ok_or_else(
                || bad(format!("a bulk header {:?}", String::from_utf8_lossy(&header))),
            )?;
        let mut word = vec![0_u8; len + 2];
        reader.read_exact(&mut word).await.map_err(|e| bad(e.to_string()))?;
        word.truncate(len);
        words.push(word);
    }
    Ok(Some(words))
}

/// A line without its `\r\n`, at most [`MAX_ARG`] bytes; `None` at a clean end of stream.
async fn read_line<R: AsyncRead + Unpin>(
    reader: &mut BufReader<R>,
) -> Result<Option<Vec<u8>>, SeedError> {
    let mut line = Vec::new();
    let read = (&mut *reader)
        .take(MAX_ARG as u64 + 2)
        .read_until(b'\n', &mut line)
        .await
        .map_err(|e| SeedError::Handshake { phase: "reading a command", why: e.to_string() })?;
    if read == 0 {
        return Ok(None);
    }
    if line.last() != Some(&b'\n') {
        return Err(SeedError::Handshake {
            phase: "reading a command",
            why: format!("a line longer than {MAX_ARG} bytes"),
        });
    }
    while matches!(line.last(), Some(b'\n' | b'\r')) {
        line.pop();
    }
    Ok(Some(line))
}

fn parse_number(text: &[u8]) -> Option<usize> {
    std::str::from_utf8(text).ok()?.parse().ok()
}

/// 40 random hex characters: a replication id, or an end mark no RDB will contain by chance.
fn random_hex() -> String {
    let a = uuid::Uuid::new_v4().simple().to_string();
    let b = uuid::Uuid::new_v4().simple().to_string();
    format!("{a}{b}")[..ID_LEN].to_owned()
}

/// The target's `INFO` sections a seeding reads.
pub(crate) async fn info(
    endpoint: &Endpoint,
    access: &Access,
    step: Duration,
) -> Result<String, SeedError> {
    let failed =
        |why: String| SeedError::Target { action: "INFO", instance: endpoint.id.clone(), why };
    let run = async {
        let mut connection =
            connect(endpoint, access, step).await.map_err(|e| failed(e.to_string()))?;
        redis::cmd("INFO")
            .arg("server")
            .arg("replication")
            .arg("persistence")
            .arg("keyspace")
            .query_async::<String>(&mut connection)
            .await
            .map_err(|e| failed(e.to_string()))
    };
    tokio::time::timeout(step, run)
        .await
        .unwrap_or_else(|_| Err(failed(format!("no answer within {step:?}"))))
}

/// Sets the target's `repl-diskless-load` to `value`, returning what it was: `on-empty-db`
/// has an empty replica load a full sync as it arrives, rather than write it all to disk
/// and only then load it (Redis's default, `disabled`), so a restore takes about as long as
/// the slower of the transfer and the load rather than their sum, and needs no disk. A
/// replica holding data still loads from disk (`on-empty-db` falls back), so its memory
/// never holds two datasets as `swapdb` would. `None` when Redis refuses (`CONFIG` renamed
/// or an older server): the load then goes through disk as before.
pub async fn set_diskless_load(
    endpoint: &Endpoint,
    access: &Access,
    step: Duration,
    value: &str,
) -> Option<String> {
    let run = async {
        let mut connection = connect(endpoint, access, step).await.ok()?;
        let (_, previous): (String, String) = redis::cmd("CONFIG")
            .arg("GET")
            .arg("repl-diskless-load")
            .query_async(&mut connection)
            .await
            .ok()?;
        redis::cmd("CONFIG")
            .arg("SET")
            .arg("repl-diskless-load")
            .arg(value)
            .query_async::<()>(&mut connection)
            .await
            .ok()?;
        Some(previous)
    };
    tokio::time::timeout(step, run).await.ok().flatten()
}

/// The target's server version, from its `INFO`.
pub async fn server_version(
    endpoint: &Endpoint,
    access: &Access,
    step: Duration,
) -> Result<ServerVersion, SeedError> {
    let text = info(endpoint, access, step).await.map_err(|e| SeedError::TargetVersion {
        instance: endpoint.id.clone(),
        why: crate::errors::chain(&e),
    })?;
    ServerVersion::parse(&text).ok_or_else(|| SeedError::TargetVersion {
        instance: endpoint.id.clone(),
        why: "its INFO has no redis_version".into(),
    })
}

/// What the replica holds once loaded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Loaded {
    /// Keys over every database, from its `INFO keyspace`.
    pub keys: u64,
    /// RDB bytes sent.
    pub bytes: u64,
    pub took: Duration,
}

/// Waits until `target` has loaded what `serving` sent: the whole payload written, and the
/// target reporting its link to the seed up with no sync or load in progress. Fails when the
/// seed fails (the replica left, or refused the RDB), or after `limits.total`. `progress` is
/// told of every byte sent.
pub async fn wait_loaded(
    target: &Endpoint,
    access: &Access,
    serving: &Serving,
    limits: Limits,
    progress: &dyn super::Progress,
) -> Result<Loaded, SeedError> {
    let started = Instant::now();
    let mut reported = 0;
    loop {
        let sent = serving.sent();
        progress.advance(sent - reported);
        reported = sent;
        if serving.finished() {
            // Only an error ends the task before `stop`.
            return Err(SeedError::Task { why: "ended before the load was confirmed".into() });
        }
        if started.elapsed() > limits.total {
            return Err(SeedError::Deadline { limit: limits.total, sent });
        }
        if serving.payload_sent()
            && let Ok(text) = info(target, access, limits.step).await
        {
            let info = Info::parse(&text);
            let linked = info.replication.master_port == Some(serving.addr().port())
                && info.master_link_up == Some(true)
                && !info.syncing;
            if linked {
                let keys = info.keyspace.iter().map(|db| db.keys).sum();
                return Ok(Loaded { keys, bytes: sent, took: started.elapsed() });
            }
        }
        tokio::time::sleep(POLL).await;
    }
}

#[cfg(test)]
mod tests {
    use tokio::io::AsyncWriteExt as _;

    use super::*;

    fn server(redis: &str) -> ServerVersion {
        ServerVersion { redis: redis.into(), valkey: None }
    }

    #[test]
    fn headers_parse_and_print_as_written() {
        let redis = RdbHeader::parse(b"REDIS0010").unwrap();
        assert_eq!(redis, RdbHeader { valkey: false, version: 10 });
        assert_eq!(redis.to_string(), "REDIS0010");
        let valkey = RdbHeader::parse(b"VALKEY080").unwrap();
        assert_eq!(valkey, RdbHeader { valkey: true, version: 80 });
        assert_eq!(valkey.to_string(), "VALKEY080");
        assert!(matches!(RdbHeader::parse(b"HELLO0010"), Err(SeedError::NotRdb { .. })));
        assert!(matches!(RdbHeader::parse(b"REDIS"), Err(SeedError::NotRdb { .. })));
    }

    #[test]
    fn a_newer_rdb_than_the_server_loads_is_refused_naming_both() {
        let rdb12 = RdbHeader { valkey: false, version: 12 };
        let error = check_version(rdb12, &server("7.0.15")).unwrap_err();
        let text = error.to_string();
        assert!(text.contains("REDIS0012") && text.contains("Redis 7.0.15"), "{text}");
        assert!(text.contains("up to 10"), "{text}");
        assert!(check_version(rdb12, &server("7.4.1")).is_ok());
        assert!(check_version(RdbHeader { valkey: false, version: 9 }, &server("7.0.15")).is_ok());
        assert!(
            check_version(RdbHeader { valkey: false, version: 10 }, &server("6.2.14")).is_err()
        );
        // A release newer than the table: its own loader decides.
        assert!(check_version(RdbHeader { valkey: false, version: 13 }, &server("9.0.0")).is_ok());
    }

    #[test]
    fn only_valkey_loads_a_valkey_header() {
        let header = RdbHeader { valkey: true, version: 80 };
        assert!(check_version(header, &server("7.2.4")).is_err());
        let valkey = ServerVersion { redis: "7.2.4".into(), valkey: Some("9.0.0".into()) };
        assert!(check_version(header, &valkey).is_ok());
    }

    #[test]
    fn the_version_comes_from_info_server() {
        let info = "# Server\r\nredis_version:7.0.15\r\nredis_mode:standalone\r\n";
        assert_eq!(ServerVersion::parse(info), Some(server("7.0.15")));
        assert_eq!(server("7.0.15").max_rdb_version(), Some(10));
        assert_eq!(server("7.2.4").max_rdb_version(), Some(11));
        assert_eq!(server("5.0.7").max_rdb_version(), Some(9));
    }

    fn payload_of(rdb: &'static [u8], len: Option<u64>) -> Payload {
        let (sender, receiver) = mpsc::channel(2);
        tokio::spawn(async move {
            for chunk in rdb.chunks(7) {
                let _ = sender.send(Ok(Bytes::from_static(chunk))).await;
            }
        });
        Payload::new(len, receiver)
    }

    async fn serving(rdb: &'static [u8], len: Option<u64>, limits: Limits) -> Serving {
        let seed = Seed::bind(SocketAddr::from(([127, 0, 0, 1], 0)), Duration::ZERO).await.unwrap();
        let expected = Expected { ips: vec![IpAddr::from([127, 0, 0, 1])], port: None };
        seed.serve(payload_of(rdb, len), expected, limits)
    }

    /// Two seeds on one fixed port in one process take turns: the second waits for the
    /// first to be done, then listens; one that cannot get its turn in time says so.
    #[tokio::test]
    async fn seeds_on_a_fixed_port_take_turns() {
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let addr = SocketAddr::from(([127, 0, 0, 1], port));
        let first = Seed::bind(addr, Duration::ZERO).await.expect("the port is free");
        let error = Seed::bind(addr, Duration::from_millis(200)).await.err().expect("busy");
        assert!(matches!(error, SeedError::Busy { .. }), "{error}");
        assert_eq!(error.category(), "bind");
        let second = tokio::spawn(Seed::bind(addr, Duration::from_secs(30)));
        tokio::task::yield_now().await;
        assert!(!second.is_finished(), "the second seed must wait for the first");
        let serving = first.serve(
            payload_of(b"REDIS0010-body", None),
            Expected::default(),
            Limits::default(),
        );
        drop(serving);
        let second = second.await.unwrap().expect("its turn once the first is done");
        assert_eq!(second.addr(), addr);
    }

    /// Reads from `socket` until `want` bytes arrived.
    async fn read_exactly(socket: &mut tokio::net::TcpStream, want: usize) -> Vec<u8> {
        let mut got = vec![0_u8; want];
        tokio::time::timeout(Duration::from_secs(5), socket.read_exact(&mut got))
            .await
            .expect("in time")
            .expect("read");
        got
    }

    /// What a Redis 7 replica sends, and what it must get back: `+PONG`, `+OK`s, a
    /// `+FULLRESYNC` with a 40-character id, then `$<len>` and exactly the RDB.
    #[tokio::test]
    async fn the_handshake_and_the_length_framing_are_what_a_replica_expects() {
        const RDB: &[u8] = b"REDIS0010-pretend-rdb-body-of-some-length";
        let serving = serving(RDB, Some(RDB.len() as u64), Limits::default()).await;
        let mut socket = tokio::net::TcpStream::connect(serving.addr()).await.unwrap();
        socket.write_all(b"*1\r\n$4\r\nPING\r\n").await.unwrap();
        assert_eq!(read_exactly(&mut socket, 7).await, b"+PONG\r\n");
        socket
            .write_all(b"*3\r\n$8\r\nREPLCONF\r\n$14\r\nlistening-port\r\n$4\r\n6380\r\n")
            .await
            .unwrap();
        assert_eq!(read_exactly(&mut socket, 5).await, b"+OK\r\n");
        socket
            .write_all(
                b"*5\r\n$8\r\nREPLCONF\r\n$4\r\ncapa\r\n$3\r\neof\r\n$4\r\ncapa\r\n$6\r\npsync2\r\n",
            )
            .await
            .unwrap();
        assert_eq!(read_exactly(&mut socket, 5).await, b"+OK\r\n");
        socket.write_all(b"*3\r\n$5\r\nPSYNC\r\n$1\r\n?\r\n$2\r\n-1\r\n").await.unwrap();
        let line = read_exactly(&mut socket, "+FULLRESYNC ".len() + ID_LEN + " 0\r\n".len()).await;
        let line = String::from_utf8(line).unwrap();
        let id = &line["+FULLRESYNC ".len().."+FULLRESYNC ".len() + ID_LEN];
        assert!(id.chars().all(|c| c.is_ascii_hexdigit()), "{line}");
        assert!(line.ends_with(" 0\r\n"), "{line}");
        let header = format!("${}\r\n", RDB.len());
        assert_eq!(read_exactly(&mut socket, header.len()).await, header.as_bytes());
        assert_eq!(read_exactly(&mut socket, RDB.len()).await, RDB);
        // Exactly one replica: nobody else gets in.
        assert!(tokio::net::TcpStream::connect(serving.addr()).await.is_err());
        // Then, once the replica acknowledges (its sync done), keepalives until stopped.
        socket.write_all(b"*3\r\n$8\r\nREPLCONF\r\n$3\r\nACK\r\n$1\r\n0\r\n").await.unwrap();
        assert_eq!(read_exactly(&mut socket, 14).await, b"*1\r\n$4\r\nPING\r\n");
        assert!(serving.payload_sent());
        assert_eq!(serving.stop().await.unwrap(), RDB.len() as u64);
    }

    #[tokio::test]
    async fn without_a_length_the_rdb_is_framed_by_an_end_mark() {
        const RDB: &[u8] = b"REDIS0010-body";
        let serving = serving(RDB, None, Limits::default()).await;
        let mut socket = tokio::net::TcpStream::connect(serving.addr()).await.unwrap();
        socket.write_all(b"REPLCONF capa eof capa psync2\r\nPSYNC ? -1\r\n").await.unwrap();
        let _ok = read_exactly(&mut socket, 5).await;
        let _fullresync = read_exactly(&mut socket, 12 + ID_LEN + 4).await;
        let header = String::from_utf8(read_exactly(&mut socket, 5 + ID_LEN + 2).await).unwrap();
        let mark = header.strip_prefix("$EOF:").unwrap().trim_end().to_owned();
        assert_eq!(mark.len(), ID_LEN);
        assert_eq!(read_exactly(&mut socket, RDB.len()).await, RDB);
        assert_eq!(read_exactly(&mut socket, ID_LEN).await, mark.as_bytes());
        // Nothing follows the mark until the replica acknowledges: a PING right behind it
        // would land in the replica's read of the mark (seen as a suite that hung). Told to
        // stop, the seed closes the link with nothing sent after the mark.
        serving.stop().await.unwrap();
        let mut rest = Vec::new();
        let closed = tokio::time::timeout(Duration::from_secs(5), socket.read_to_end(&mut rest));
        assert!(closed.await.expect("closed in time").is_ok() && rest.is_empty(), "{rest:?}");
    }

    /// Seen as a suite that hung: on a shared host, a replica of a master that once had the
    /// seed's port (ports are reused) reconnected to the seed before the target and was fed
    /// the snapshot, and the target waited for the whole deadline. A replica announcing
    /// another listening port is turned away before its resync; the target is then served.
    #[tokio::test]
    async fn a_replica_listening_on_another_port_than_the_targets_is_turned_away() {
        const RDB: &[u8] = b"REDIS0010-body";
        let seed = Seed::bind(SocketAddr::from(([127, 0, 0, 1], 0)), Duration::ZERO).await.unwrap();
        let expected = Expected { ips: vec![IpAddr::from([127, 0, 0, 1])], port: Some(6380) };
        let serving =
            seed.serve(payload_of(RDB, Some(RDB.len() as u64)), expected, Limits::default());
        let replconf = |port: &str| {
            format!(
                "*3\r\n$8\r\nREPLCONF\r\n$14\r\nlistening-port\r\n${}\r\n{port}\r\n",
                port.len()
            )
        };
        let mut stray = tokio::net::TcpStream::connect(serving.addr()).await.unwrap();
        stray.write_all(replconf("7001").as_bytes()).await.unwrap();
        let refusal = b"-ERR this seed serves another replica\r\n";
        assert_eq!(read_exactly(&mut stray, refusal.len()).await, refusal);
        let mut rest = Vec::new();
        let closed = tokio::time::timeout(Duration::from_secs(5), stray.read_to_end(&mut rest));
        assert!(closed.await.expect("closed in time").is_ok() && rest.is_empty(), "{rest:?}");

        let mut target = tokio::net::TcpStream::connect(serving.addr()).await.unwrap();
        target.write_all(replconf("6380").as_bytes()).await.unwrap();
        assert_eq!(read_exactly(&mut target, 5).await, b"+OK\r\n");
        target.write_all(b"PSYNC ? -1\r\n").await.unwrap();
        let _fullresync = read_exactly(&mut target, 12 + ID_LEN + 4).await;
        let header = format!("${}\r\n", RDB.len());
        assert_eq!(read_exactly(&mut target, header.len()).await, header.as_bytes());
        assert_eq!(read_exactly(&mut target, RDB.len()).await, RDB);
        assert_eq!(serving.stop().await.unwrap(), RDB.len() as u64);
    }

    #[tokio::test]
    async fn a_replica_that_never_connects_ends_the_seed() {
        let limits = Limits { connect: Duration::from_millis(100), ..Limits::default() };
        let serving = serving(b"REDIS0010", Some(9), limits).await;
        let error = serving.stop_after_end().await.unwrap_err();
        assert!(matches!(error, SeedError::NoReplica { .. }), "{error}");
    }

    #[test]
    fn random_ids_are_forty_hex_characters() {
        let id = random_hex();
        assert_eq!(id.len(), ID_LEN);
        assert!(id.chars().all(|c| c.is_ascii_hexdigit()), "{id}");
        assert_ne!(id, random_hex());
    }
}
