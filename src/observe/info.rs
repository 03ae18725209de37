//! A Redis `INFO` reply as a typed [`Info`]: the fields the daemon reasons about in small
//! per-section structs, and every numeric field by name for policies ([`Info::number`]).
//!
//! The sampler parses one reply per instance per round, 1,000 instances a round, so
//! [`Info::parse`] is one pass over the text that keeps one owned copy of it and a compact
//! index into that copy: no allocation per field, and numbers are parsed once, while scanning.
//! Parsing never fails and never panics: what it does not understand it skips.

use std::{fmt, iter};

use chrono::DateTime;

use super::Timestamp;

/// What an instance said about itself in `INFO`.
///
/// The typed fields are plain data: [`Info::parse`] fills them from a reply, simulators and
/// tests set them directly. [`Info::number`] answers from the reply as received plus whatever
/// [`Info::set_number`] recorded; it does not read the typed fields back.
#[derive(Debug, Clone, Default)]
pub struct Info {
    /// `role`; [`Role::Replica`] when the reply does not say.
    pub role: Role,
    /// `master_link_status` on a replica; `None` on a master.
    pub master_link_up: Option<bool>,
    /// A full sync or RDB load in progress (`master_sync_in_progress:1` or `loading:1`): the
    /// instance cannot serve reads yet.
    pub syncing: bool,
    /// The typed sections, read as fields of `Info` (`info.replication`) through `Deref`.
    /// Boxed, and dropped by [`Info::retain_numbers`], because a history round kept only for
    /// its numbers would otherwise carry ~400 bytes of sections per instance.
    sections: Option<Box<Sections>>,
    numbers: Fields,
}

/// Every typed section of an `INFO` reply.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Sections {
    pub server: Server,
    pub clients: Clients,
    pub memory: Memory,
    pub persistence: Persistence,
    pub stats: Stats,
    pub replication: Replication,
    pub cpu: Cpu,
    /// One entry per `dbN` line, in reply order. Redis lists only databases holding keys.
    pub keyspace: Vec<Keyspace>,
}

/// What an `Info` without sections reads as: every section empty.
static NO_SECTIONS: std::sync::LazyLock<Sections> = std::sync::LazyLock::new(Sections::default);

impl std::ops::Deref for Info {
    type Target = Sections;

    fn deref(&self) -> &Sections {
        self.sections.as_deref().unwrap_or(&NO_SECTIONS)
    }
}

impl std::ops::DerefMut for Info {
    fn deref_mut(&mut self) -> &mut Sections {
        self.sections.get_or_insert_with(Box::default)
    }
}

/// Equal when they read the same: absent sections equal empty ones.
impl PartialEq for Info {
    fn eq(&self, other: &Self) -> bool {
        self.role == other.role
            && self.master_link_up == other.master_link_up
            && self.syncing == other.syncing
            && self.numbers == other.numbers
            && **self == **other
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Role {
    Master,
    /// Also what an instance is taken for when it does not say: the cautious reading, since
    /// a replica serves only once its link is known to be up.
    #[default]
    Replica,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Master => "master",
            Role::Replica => "replica",
        }
    }
}

/// `# Server`.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Server {
    pub redis_version: Option<Version>,
    /// Changes on every restart: a new run id with the same address means the data may be new.
    pub run_id: Option<RedisId>,
    pub uptime_in_seconds: Option<u64>,
    pub tcp_port: Option<u16>,
}

/// `redis_version`, e.g. `7.0.15`; ordered, so feature checks read `>= Version::new(6, 2, 0)`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Version {
    pub major: u16,
    pub minor: u16,
    pub patch: u16,
}

/// A 40-hex-digit `run_id` or `master_replid`, kept as its 20 bytes. Orders like its hex text,
/// which is how Sentinel breaks ties between replicas (smallest run id).
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct RedisId(pub [u8; 20]);

/// `# Clients`.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Clients {
    pub connected_clients: Option<u64>,
    pub blocked_clients: Option<u64>,
}

/// `# Memory`, in bytes.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Memory {
    pub used_memory: Option<u64>,
    /// `0` means no limit, as in Redis.
    pub maxmemory: Option<u64>,
    pub mem_fragmentation_ratio: Option<f64>,
}

/// `# Persistence`.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Persistence {
    /// Loading an RDB or AOF (at boot, or after a full sync): not serving yet.
    pub loading: bool,
    pub rdb_bgsave_in_progress: bool,
    pub rdb_last_save_time: Option<Timestamp>,
    /// `rdb_last_bgsave_status`: `ok` or `err`.
    pub rdb_last_bgsave_ok: Option<bool>,
    pub aof_enabled: bool,
}

/// `# Stats`.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Stats {
    pub instantaneous_ops_per_sec: Option<u64>,
    pub total_commands_processed: Option<u64>,
    pub keyspace_hits: Option<u64>,
    pub keyspace_misses: Option<u64>,
}

/// `# Replication`. Redis still spells its fields `slave_*`; the typed names follow the
/// current configuration names (`replica-priority`, ...) and each says which field it reads.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Replication {
    /// `master_host`, on a replica.
    pub master_host: Option<String>,
    pub master_port: Option<u16>,
    /// `master_last_io_seconds_ago`; `None` also when Redis reports `-1` (no link).
    pub master_last_io_seconds_ago: Option<u64>,
    /// `master_link_down_since_seconds`; `None` also when Redis reports `-1` (never linked).
    pub master_link_down_since_seconds: Option<u64>,
    /// `master_sync_in_progress`: a full sync from the master is running.
    pub master_sync_in_progress: bool,
    /// `slave_repl_offset`: how much of the master's stream this replica has applied.
    pub replica_repl_offset: Option<u64>,
    pub master_repl_offset: Option<u64>,
    pub master_replid: Option<RedisId>,
    /// `master_replid2`: the history this one continues, on an instance promoted from a
    /// replica; `None` when Redis reports all zeros (no such history).
    pub master_replid2: Option<RedisId>,
    /// `slave_priority`: lower is preferred for promotion; `0` means never promote.
    pub replica_priority: Option<u32>,
    /// `slave_read_only`.
    pub replica_read_only: Option<bool>,
    /// `connected_slaves`.
    pub connected_replicas: Option<u32>,
    /// One entry per `slaveN` line, in reply order.
    pub replicas: Vec<ConnectedReplica>,
    /// `min_slaves_good_slaves`: replicas within `min-replicas-max-lag`; present only when
    /// `min-replicas-to-write` is set.
    pub min_replicas_good: Option<u32>,
    /// `master_failover_state` other than `no-failover`: a `FAILOVER` (a switchover, by
    /// anyone) is pausing writes or swapping roles on this master right now.
    pub failover_in_progress: bool,
}

/// One `slaveN:ip=..,port=..,state=..,offset=..,lag=..` line on a master. `ip` and `port`
/// identify the replica and are required; a line without them is skipped.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConnectedReplica {
    pub ip: String,
    pub port: u16,
    pub state: ReplicaState,
    pub offset: Option<u64>,
    /// Seconds since the replica last acknowledged.
    pub lag: Option<u64>,
}

/// A connected replica's `state`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReplicaState {
    /// Waiting for the master's RDB to be produced.
    WaitBgsave,
    /// Receiving the RDB.
    SendBulk,
    /// Streaming commands.
    Online,
    /// Missing, or a state this parser does not know.
    Unknown,
}

/// `# CPU`, in seconds of CPU time since start.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Cpu {
    pub used_cpu_sys: Option<f64>,
    pub used_cpu_user: Option<f64>,
}

/// One `dbN:keys=..,expires=..,avg_ttl=..` line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Keyspace {
    pub db: u32,
    pub keys: u64,
    /// Keys with a time to live.
    pub expires: u64,
    /// Milliseconds; an estimate, `0` on replicas.
    pub avg_ttl: u64,
}

impl Info {
    pub fn new(role: Role) -> Self {
        Self { role, ..Self::default() }
    }

    /// Reads an `INFO` reply (any sections; `\r\n` or `\n` line ends). Each `name:value` line
    /// is a field; `# Section` headers, blank lines, lines without `:` and values a typed field
    /// cannot hold are skipped (the value stays reachable through [`Info::number`] when it is a
    /// number). When a name repeats, the later line wins, for typed fields and numbers alike.
    pub fn parse(text: &str) -> Self {
        let mut info = Self::default();
        let mut numbers = Fields::with_reply(text);
        let mut totals: Option<(u64, u64)> = None;
        let bytes = text.as_bytes();
        let (mut line_start, mut colon) = (0, None);
        // One vectorized pass finds every separator and line end; a last line may lack `\n`.
        for at in memchr::memchr2_iter(b':', b'\n', bytes).chain(iter::once(bytes.len())) {
            if bytes.get(at) == Some(&b':') {
                colon.get_or_insert(at);
                continue;
            }
            let (start, colon) = (line_start, colon.take());
            line_start = at + 1;
            let end = if at > start && bytes.get(at - 1) == Some(&b'\r') { at - 1 } else { at };
            if bytes.get(start) == Some(&b'#') {
                if text.get(start..end) == Some("# Keyspace") {
                    totals.get_or_insert((0, 0));
                }
                continue;
            }
            // No separator, or an empty name.
            let Some(colon) = colon.filter(|&c| c > start) else { continue };
            let (Some(name), Some(value)) = (text.get(start..colon), text.get(colon + 1..end))
            else {
                continue;
            };
            let (Some(name_span), Some(value_span)) =
                (Span::new(start, colon), Span::new(colon + 1, end))
            else {
                // Past the 4 GiB a span can address; a real reply is a few kilobytes.
                break;
            };
            let value_entry = parse_number(value).map_or(Value::Text(value_span), Value::Number);
            numbers.entries.push(Entry { name: name_span, value: value_entry });
            if let Some(db) = info.apply(name, value) {
                let (keys, expires) = totals.get_or_insert((0, 0));
                *keys = keys.saturating_add(db.keys);
                *expires = expires.saturating_add(db.expires);
            }
        }
        // A reply with a keyspace section reports totals even when no database holds a key:
        // an empty instance has zero keys, not an unknown number of them. Appended last, they
        // override any line of the same name.
        if let Some((keys, expires)) = totals {
            numbers.push("keys", keys as f64);
            numbers.push("expires", expires as f64);
        }
        info.syncing = info.replication.master_sync_in_progress || info.persistence.loading;
        info.numbers = numbers;
        info
    }

    /// Records a numeric field, replacing any value of that name.
    pub fn set_number(&mut self, field: &str, value: f64) {
        self.numbers.set(field, value);
    }

    /// Rewrites the first fields [`Info::set_number`] recorded on an `Info` built empty, in
    /// the order they were recorded, with `values`; any further field stays as it was. For a
    /// caller that built the `Info` itself and rewrites the same fields at every round (the
    /// simulator, once per instance per sampling tick): no name is looked up.
    pub fn overwrite_numbers_in_order(&mut self, values: impl IntoIterator<Item = f64>) {
        for (entry, value) in self.numbers.entries.iter_mut().zip(values) {
            entry.value = Value::Number(value);
        }
    }

    /// A numeric field by name, for policies:
    /// - a top-level field: `instantaneous_ops_per_sec`, `used_memory`, `master_repl_offset`;
    /// - one value of a `key=value` line as `line.key`: `db0.keys`, `slave1.lag`,
    ///   `cmdstat_get.usec_per_call`, `errorstat_ERR.count`,
    ///   `latency_percentiles_usec_get.p99.9`;
    /// - `keys` and `expires`: totals over all databases, present whenever the reply had a
    ///   keyspace section (`0` for an empty instance).
    ///
    /// Values that are not finite decimal numbers (`97.32%`, `ok`, `nan`) are not numbers.
    #[inline]
    pub fn number(&self, field: &str) -> Option<f64> {
        match self.numbers.get(field) {
            Some(Resolved::Number(v)) => Some(v),
            Some(Resolved::Text(_)) => None,
            None => {
                let (line, key) = field.split_once('.')?;
                let Some(Resolved::Text(value)) = self.numbers.get(line) else { return None };
                pairs(value).find(|(k, _)| *k == key).and_then(|(_, v)| parse_number(v))
            }
        }
    }

    /// Keeps only what a history round needs: the numbers `fields` name (each as
    /// [`Info::number`] reads it now; a `line.key` value is parsed once and kept under that
    /// name) and the role, link and sync flags that decide readiness. The typed sections are
    /// dropped and read as empty. A history of hundreds of rounds then holds a few dozen bytes
    /// per instance-round instead of the whole reply and its index (~10 KB for a default
    /// `INFO`) and ~400 bytes of sections.
    pub fn retain_numbers<'a>(&mut self, fields: impl IntoIterator<Item = &'a str>) {
        let mut kept = Fields::default();
        for field in fields {
            if let Some(value) = self.number(field) {
                kept.set(field, value);
            }
        }
        kept.text.shrink_to_fit();
        kept.entries.shrink_to_fit();
        self.numbers = kept;
        self.sections = None;
    }

    /// Whether the instance serves reads: a master, or a replica linked to its master and not
    /// in the middle of a sync.
    #[inline]
    pub fn serving(&self) -> bool {
        !self.syncing && (self.role == Role::Master || self.master_link_up == Some(true))
    }

    /// Fills the typed field a line maps to, if any; returns the keyspace entry when the line
    /// was one, so the caller can total it. Integers are parsed as their own type, not read
    /// back from the `f64`, which cannot hold every `u64` offset exactly.
    fn apply(&mut self, name: &str, value: &str) -> Option<Keyspace> {
        let flag = value == "1";
        match name.as_bytes() {
            b"redis_version" => self.server.redis_version = Version::parse(value),
            b"run_id" => self.server.run_id = RedisId::parse(value),
            b"uptime_in_seconds" => self.server.uptime_in_seconds = value.parse().ok(),
            b"tcp_port" => self.server.tcp_port = value.parse().ok(),
            b"connected_clients" => self.clients.connected_clients = value.parse().ok(),
            b"blocked_clients" => self.clients.blocked_clients = value.parse().ok(),
            b"used_memory" => self.memory.used_memory = value.parse().ok(),
            b"maxmemory" => self.memory.maxmemory = value.parse().ok(),
            b"mem_fragmentation_ratio" => self.memory.mem_fragmentation_ratio = parse_number(value),
            b"loading" => self.persistence.loading = flag,
            b"rdb_bgsave_in_progress" => self.persistence.rdb_bgsave_in_progress = flag,
            b"rdb_last_save_time" => {
                self.persistence.rdb_last_save_time =
                    value.parse().ok().and_then(|s| DateTime::from_timestamp(s, 0));
            }
            b"rdb_last_bgsave_status" => {
                self.persistence.rdb_last_bgsave_ok = match value {
                    "ok" => Some(true),
                    "err" => Some(false),
                    _ => None,
                };
            }
            b"aof_enabled" => self.persistence.aof_enabled = flag,
            b"instantaneous_ops_per_sec" => {
                self.stats.instantaneous_ops_per_sec = value.parse().ok()
            }
            b"total_commands_processed" => self.stats.total_commands_processed = value.parse().ok(),
            b"keyspace_hits" => self.stats.keyspace_hits = value.parse().ok(),
            b"keyspace_misses" => self.stats.keyspace_misses = value.parse().ok(),
            b"role" => match value {
                "master" => self.role = Role::Master,
                "slave" => self.role = Role::Replica,
                _ => {}
            },
            b"master_host" => self.replication.master_host = Some(value.to_owned()),
            b"master_failover_state" => {
                self.replication.failover_in_progress = value != "no-failover";
            }
            b"master_port" => self.replication.master_port = value.parse().ok(),
            b"master_link_status" => {
                self.master_link_up = match value {
                    "up" => Some(true),
                    "down" => Some(false),
                    _ => None,
                };
            }
            b"master_last_io_seconds_ago" => {
                self.replication.master_last_io_seconds_ago = value.parse().ok();
            }
            b"master_link_down_since_seconds" => {
                self.replication.master_link_down_since_seconds = value.parse().ok();
            }
            b"master_sync_in_progress" => self.replication.master_sync_in_progress = flag,
            b"slave_repl_offset" => self.replication.replica_repl_offset = value.parse().ok(),
            b"master_repl_offset" => self.replication.master_repl_offset = value.parse().ok(),
            b"master_replid" => self.replication.master_replid = RedisId::parse(value),
            b"master_replid2" => {
                self.replication.master_replid2 =
                    RedisId::parse(value).filter(|id| *id != RedisId([0; 20]));
            }
            b"slave_priority" | b"replica_priority" => {
                self.replication.replica_priority = value.parse().ok();
            }
            b"slave_read_only" | b"replica_read_only" => {
                self.replication.replica_read_only = match value {
                    "1" => Some(true),
                    "0" => Some(false),
                    _ => None,
                };
            }
            b"connected_slaves" => self.replication.connected_replicas = value.parse().ok(),
            b"min_slaves_good_slaves" => self.replication.min_replicas_good = value.parse().ok(),
            b"used_cpu_sys" => self.cpu.used_cpu_sys = parse_number(value),
            b"used_cpu_user" => self.cpu.used_cpu_user = parse_number(value),
            // `db3` and `slave0`, but not `slave_priority`.
            [b'd', b'b', digits @ ..] => {
                let db = Keyspace::parse(index(digits)?, value)?;
                self.keyspace.push(db);
                return Some(db);
            }
            [b's', b'l', b'a', b'v', b'e', digits @ ..] if index(digits).is_some() => {
                self.replication.replicas.extend(ConnectedReplica::parse(value));
            }
            _ => {}
        }
        None
    }
}

impl Version {
    pub fn new(major: u16, minor: u16, patch: u16) -> Self {
        Self { major, minor, patch }
    }

    fn parse(text: &str) -> Option<Self> {
        let mut parts = text.splitn(3, '.').map(str::parse);
        match (parts.next(), parts.next(), parts.next()) {
            (Some(Ok(major)), Some(Ok(minor)), Some(Ok(patch))) => {
                Some(Self { major, minor, patch })
            }
            _ => None,
        }
    }
}

impl RedisId {
    fn parse(hex: &str) -> Option<Self> {
        let digits = hex.as_bytes();
        if digits.len() != 40 {
            return None;
        }
        let mut id = [0; 20];
        for (byte, pair) in id.iter_mut().zip(digits.chunks_exact(2)) {
            let high = char::from(pair[0]).to_digit(16)?;
            let low = char::from(pair[1]).to_digit(16)?;
            *byte = u8::try_from((high << 4) | low).ok()?;
        }
        Some(Self(id))
    }
}

impl fmt::Display for RedisId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.iter().try_for_each(|b| write!(f, "{b:02x}"))
    }
}

/// As hex, the way Redis prints it.
impl fmt::Debug for RedisId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "RedisId({self})")
    }
}

impl ConnectedReplica {
    fn parse(value: &str) -> Option<Self> {
        let (mut ip, mut port, mut state, mut offset, mut lag) =
            (None, None, ReplicaState::Unknown, None, None);
        for (key, v) in pairs(value) {
            match key {
                "ip" => ip = Some(v),
                "port" => port = v.parse().ok(),
                "state" => {
                    state = match v {
                        "wait_bgsave" => ReplicaState::WaitBgsave,
                        "send_bulk" => ReplicaState::SendBulk,
                        "online" => ReplicaState::Online,
                        _ => ReplicaState::Unknown,
                    };
                }
                "offset" => offset = v.parse().ok(),
                "lag" => lag = v.parse().ok(),
                _ => {}
            }
        }
        Some(Self { ip: ip?.to_owned(), port: port?, state, offset, lag })
    }
}

impl Keyspace {
    /// `keys` is required: a line without it says nothing about the database. Redis always
    /// prints `expires` and `avg_ttl`; should one be missing it reads `0`.
    fn parse(db: u32, value: &str) -> Option<Self> {
        let (mut keys, mut expires, mut avg_ttl) = (None, 0, 0);
        for (key, v) in pairs(value) {
            match key {
                "keys" => keys = v.parse().ok(),
                "expires" => expires = v.parse().unwrap_or(0),
                "avg_ttl" => avg_ttl = v.parse().unwrap_or(0),
                _ => {}
            }
        }
        Some(Self { db, keys: keys?, expires, avg_ttl })
    }
}

/// The `N` of a `dbN` or `slaveN` name.
fn index(digits: &[u8]) -> Option<u32> {
    if digits.is_empty() || !digits.iter().all(u8::is_ascii_digit) {
        return None;
    }
    digits.iter().try_fold(0u32, |n, d| n.checked_mul(10)?.checked_add(u32::from(d - b'0')))
}

/// The `key=value` pairs of a compound value; pieces without `=` are skipped.
fn pairs(value: &str) -> impl Iterator<Item = (&str, &str)> {
    value.split(',').filter_map(|pair| pair.split_once('='))
}

/// A finite number as Redis prints one: an optional `-`, then a digit, e.g. `42`, `-1`, `3.50`.
/// Anything else (`ok`, `calls=3,..`, `nan`) is text, refused before the general parser spends
/// time on it. Most values are short integers: those take an exact fast path (15 digits fit
/// an `f64` mantissa); the rest go through the standard parser.
fn parse_number(text: &str) -> Option<f64> {
    let bytes = text.as_bytes();
    let (negative, digits) = match bytes {
        [b'-', rest @ ..] => (true, rest),
        _ => (false, bytes),
    };
    if !digits.first().is_some_and(u8::is_ascii_digit) {
        return None;
    }
    if digits.len() <= 15 && digits.iter().all(u8::is_ascii_digit) {
        let n = digits.iter().fold(0u64, |n, d| n * 10 + u64::from(d - b'0'));
        let n = n as f64;
        return Some(if negative { -n } else { n });
    }
    text.parse::<f64>().ok().filter(|v| v.is_finite())
}

/// The numbers behind [`Info::number`]: one owned copy of the reply, then the names
/// [`Info::set_number`] added, and one small [`Entry`] per field pointing into it.
#[derive(Clone, Default)]
struct Fields {
    text: String,
    entries: Vec<Entry>,
}

#[derive(Debug, Clone, Copy, PartialEq)]
struct Entry {
    name: Span,
    value: Value,
}

/// Numbers are parsed while scanning; other values stay text until asked for, since only
/// `line.key` lookups read them.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Value {
    Number(f64),
    Text(Span),
}

/// A byte range of [`Fields::text`]. `u32` keeps an [`Entry`] at 24 bytes; text beyond 4 GiB
/// is not indexed.
#[derive(Debug, Clone, Copy, PartialEq)]
struct Span {
    start: u32,
    end: u32,
}

/// A field's value as read back.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Resolved<'a> {
    Number(f64),
    Text(&'a str),
}

impl Span {
    fn new(start: usize, end: usize) -> Option<Self> {
        Some(Self { start: u32::try_from(start).ok()?, end: u32::try_from(end).ok()? })
    }

    fn len(self) -> usize {
        self.end.saturating_sub(self.start) as usize
    }
}

impl Fields {
    fn with_reply(reply: &str) -> Self {
        // About one field per 30 bytes in real replies; rounding up avoids regrowing.
        Self { text: reply.to_owned(), entries: Vec::with_capacity(reply.len() / 24) }
    }

    fn text_of(&self, span: Span) -> &str {
        self.text.get(span.start as usize..span.end as usize).unwrap_or_default()
    }

    /// The last entry named `name`: later lines override earlier ones. Compared as bytes,
    /// lengths first: a name is looked up at every round of every window, and slicing the
    /// text as `str` checks character boundaries that whole names always fall on.
    #[inline]
    fn position(&self, name: &str) -> Option<usize> {
        let (text, name) = (self.text.as_bytes(), name.as_bytes());
        self.entries.iter().rposition(|e| {
            e.name.len() == name.len()
                && text.get(e.name.start as usize..e.name.end as usize) == Some(name)
        })
    }

    fn resolve(&self, value: Value) -> Resolved<'_> {
        match value {
            Value::Number(v) => Resolved::Number(v),
            Value::Text(span) => Resolved::Text(self.text_of(span)),
        }
    }

    #[inline]
    fn get(&self, name: &str) -> Option<Resolved<'_>> {
        self.position(name).map(|i| self.resolve(self.entries[i].value))
    }

    #[inline]
    fn set(&mut self, name: &str, value: f64) {
        match self.position(name) {
            Some(i) => self.entries[i].value = Value::Number(value),
            None => self.push(name, value),
        }
    }

    /// Appends a field without looking for an earlier one: being last, it wins lookups.
    fn push(&mut self, name: &str, value: f64) {
        let start = self.text.len();
        let Some(span) = Span::new(start, start + name.len()) else { return };
        self.text.push_str(name);
        self.entries.push(Entry { name: span, value: Value::Number(value) });
    }

    /// Every field of `self` reads the same in `other`.
    fn agree_with(&self, other: &Self) -> bool {
        self.entries
            .iter()
            .all(|e| other.get(self.text_of(e.name)) == self.get(self.text_of(e.name)))
    }
}

/// Equal when every field reads the same, whatever the order fields were recorded in: two
/// observations built by `set_number` in different orders are the same observation.
impl PartialEq for Fields {
    fn eq(&self, other: &Self) -> bool {
        (self.text == other.text && self.entries == other.entries)
            || (self.agree_with(other) && other.agree_with(self))
    }
}

/// As a map from name to value, not as offsets into the text.
impl fmt::Debug for Fields {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_map()
            .entries(self.entries.iter().map(|e| (self.text_of(e.name), self.resolve(e.value))))
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;
    use rstest::rstest;

    use super::*;

    /// Real `INFO all` replies from Redis 7.0.15, captured over RESP byte for byte.
    const MASTER: &str = include_str!("../../tests/fixtures/info/master.txt");
    const REPLICA: &str = include_str!("../../tests/fixtures/info/replica.txt");
    const LINK_DOWN: &str = include_str!("../../tests/fixtures/info/replica-link-down.txt");
    const SYNCING: &str = include_str!("../../tests/fixtures/info/replica-syncing.txt");
    const LOADING: &str = include_str!("../../tests/fixtures/info/replica-loading.txt");
    const FIXTURES: [&str; 5] = [MASTER, REPLICA, LINK_DOWN, SYNCING, LOADING];

    fn id(hex: &str) -> RedisId {
        RedisId::parse(hex).expect("a 40-digit hex id")
    }

    fn at(unix: i64) -> Timestamp {
        DateTime::from_timestamp(unix, 0).expect("a valid instant")
    }

    #[test]
    fn retained_numbers_read_as_before_and_the_rest_are_gone() {
        let whole = Info::parse(MASTER);
        let mut kept = whole.clone();
        let fields =
            ["instantaneous_ops_per_sec", "db0.keys", "keys", "slave0.lag", "no_such_field"];
        kept.retain_numbers(fields);
        for field in fields {
            assert_eq!(kept.number(field), whole.number(field), "{field}");
        }
        assert!(kept.number("instantaneous_ops_per_sec").is_some());
        assert!(kept.number("db0.keys").is_some());
        assert_eq!(kept.number("used_memory"), None);
        assert_eq!(kept.number("db0.expires"), None);
        // What readiness reads stays; the typed sections are gone and read as empty.
        assert_eq!((kept.role, kept.serving()), (whole.role, whole.serving()));
        assert_eq!(*kept, Sections::default());
        assert!(whole.stats.instantaneous_ops_per_sec.is_some());
    }

    #[test]
    fn retaining_keeps_recorded_numbers_and_skips_text_values() {
        let mut info = Info::parse(LINK_DOWN);
        info.set_number("custom", 2.5);
        // `master_link_status:down` is text: not a number before, not one after.
        info.retain_numbers(["custom", "master_link_status"]);
        assert_eq!(info.number("custom"), Some(2.5));
        assert_eq!(info.number("master_link_status"), None);
    }

    #[test]
    fn a_promoted_instance_keeps_the_history_it_continues() {
        let history = "15b30630954f55b03528bf9ad9d3f7eb6b4260e8";
        let info = Info::parse(&MASTER.replace(
            "master_replid2:0000000000000000000000000000000000000000",
            &format!("master_replid2:{history}"),
        ));
        assert_eq!(info.replication.master_replid2, Some(id(history)));
    }

    #[test]
    fn master_with_two_replicas_and_two_databases() {
        let info = Info::parse(MASTER);
        assert_eq!(info.role, Role::Master);
        assert_eq!(info.master_link_up, None);
        assert!(!info.syncing);
        assert!(info.serving());
        assert_eq!(
            info.server,
            Server {
                redis_version: Some(Version::new(7, 0, 15)),
                run_id: Some(id("476d73fda34415412a3f50b6029dfedb1fab1f59")),
                uptime_in_seconds: Some(126),
                tcp_port: Some(27001),
            }
        );
        assert_eq!(info.clients, Clients { connected_clients: Some(5), blocked_clients: Some(0) });
        assert_eq!(
            info.memory,
            Memory {
                used_memory: Some(2_684_360),
                maxmemory: Some(268_435_456),
                mem_fragmentation_ratio: Some(3.50),
            }
        );
        assert_eq!(
            info.persistence,
            Persistence {
                loading: false,
                rdb_bgsave_in_progress: false,
                rdb_last_save_time: Some(at(1_795_485_179)),
                rdb_last_bgsave_ok: Some(true),
                aof_enabled: true,
            }
        );
        assert_eq!(
            info.stats,
            Stats {
                instantaneous_ops_per_sec: Some(47_717),
                total_commands_processed: Some(153_497),
                keyspace_hits: Some(200),
                keyspace_misses: Some(200),
            }
        );
        assert_eq!(
            info.replication,
            Replication {
                master_repl_offset: Some(6_878_386),
                master_replid: Some(id("15b30630954f55b03528bf9ad9d3f7eb6b4260e8")),
                connected_replicas: Some(2),
                replicas: vec![
                    ConnectedReplica {
                        ip: "127.0.0.1".into(),
                        port: 27002,
                        state: ReplicaState::Online,
                        offset: Some(5_562_496),
                        lag: Some(1),
                    },
                    ConnectedReplica {
                        ip: "127.0.0.1".into(),
                        port: 27003,
                        state: ReplicaState::Online,
                        offset: Some(5_563_261),
                        lag: Some(1),
                    },
                ],
                min_replicas_good: Some(2),
                ..Replication::default()
            }
        );
        assert_eq!(info.cpu, Cpu { used_cpu_sys: Some(1.450822), used_cpu_user: Some(0.372853) });
        assert_eq!(
            info.keyspace,
            [
                Keyspace { db: 0, keys: 2001, expires: 100, avg_ttl: 3_477_990 },
                Keyspace { db: 3, keys: 250, expires: 40, avg_ttl: 7_077_990 },
            ]
        );
    }

    #[test]
    fn numbers_by_name_on_the_master() {
        let info = Info::parse(MASTER);
        assert_eq!(info.number("instantaneous_ops_per_sec"), Some(47_717.0));
        assert_eq!(info.number("mem_fragmentation_ratio"), Some(3.5));
        assert_eq!(info.number("second_repl_offset"), Some(-1.0));
        assert_eq!(info.number("keys"), Some(2251.0), "total over db0 and db3");
        assert_eq!(info.number("expires"), Some(140.0));
        assert_eq!(info.number("db3.avg_ttl"), Some(7_077_990.0));
        assert_eq!(info.number("slave1.offset"), Some(5_563_261.0));
        assert_eq!(info.number("cmdstat_get.usec_per_call"), Some(0.25));
        assert_eq!(info.number("errorstat_ERR.count"), Some(1.0));
        assert_eq!(info.number("latency_percentiles_usec_get.p99.9"), Some(8.031));
        // Text, not numbers.
        for field in ["role", "redis_version", "used_memory_peak_perc", "slave0", "slave0.ip"] {
            assert_eq!(info.number(field), None, "{field}");
        }
        for field in ["nonexistent", "db1.keys", "db0.nonexistent", "", "."] {
            assert_eq!(info.number(field), None, "{field}");
        }
    }

    #[test]
    fn replica_with_its_link_up() {
        let info = Info::parse(REPLICA);
        assert_eq!(info.role, Role::Replica);
        assert_eq!(info.master_link_up, Some(true));
        assert!(info.serving());
        assert_eq!(info.server.run_id, Some(id("fb1567d72bf0b0f0601b197ce907a3dcffec3c62")));
        assert_eq!(info.memory.maxmemory, Some(0));
        assert!(!info.persistence.aof_enabled);
        assert_eq!(
            info.replication,
            Replication {
                master_host: Some("127.0.0.1".into()),
                master_port: Some(27001),
                master_last_io_seconds_ago: Some(0),
                master_link_down_since_seconds: None,
                master_sync_in_progress: false,
                replica_repl_offset: Some(7_356_106),
                master_repl_offset: Some(7_356_106),
                master_replid: Some(id("15b30630954f55b03528bf9ad9d3f7eb6b4260e8")),
                // `master_replid2:000...`: no earlier history.
                master_replid2: None,
                replica_priority: Some(50),
                replica_read_only: Some(true),
                connected_replicas: Some(0),
                replicas: vec![],
                min_replicas_good: None,
                failover_in_progress: false,
            }
        );
        assert_eq!(info.number("keys"), Some(2251.0));
        assert_eq!(info.number("db0.avg_ttl"), Some(0.0));
    }

    #[test]
    fn replica_whose_master_is_gone() {
        let info = Info::parse(LINK_DOWN);
        assert_eq!(info.master_link_up, Some(false));
        assert!(!info.syncing);
        assert!(!info.serving());
        let replication = &info.replication;
        assert_eq!(replication.master_last_io_seconds_ago, None, "-1: no link");
        assert_eq!(replication.master_link_down_since_seconds, Some(3));
        assert_eq!(replication.replica_repl_offset, Some(13_507_485));
        assert_eq!(info.number("master_last_io_seconds_ago"), Some(-1.0));
    }

    #[test]
    fn replica_receiving_a_full_sync() {
        let info = Info::parse(SYNCING);
        assert!(info.replication.master_sync_in_progress);
        assert!(!info.persistence.loading);
        assert!(info.syncing);
        assert!(!info.serving());
        assert_eq!(info.replication.master_link_down_since_seconds, None, "-1: never linked");
        assert_eq!(info.number("master_sync_read_bytes"), Some(278_611.0));
        assert_eq!(info.number("master_sync_left_bytes"), Some(-278_611.0));
        assert!(info.keyspace.is_empty());
        assert_eq!(info.number("keys"), Some(0.0), "a keyspace section with no database");
    }

    #[test]
    fn replica_loading_the_rdb_it_received() {
        let info = Info::parse(LOADING);
        assert!(info.persistence.loading);
        assert!(info.syncing);
        assert!(!info.serving());
        assert_eq!(info.number("loading_loaded_perc"), Some(1.98));
        assert_eq!(info.keyspace, [Keyspace { db: 0, keys: 59_342, expires: 0, avg_ttl: 0 }]);
    }

    /// Every value the text shows as a number is reachable by name, with exactly the value the
    /// standard parser reads from the text; everything else is not a number.
    #[rstest]
    #[case::master(MASTER)]
    #[case::replica(REPLICA)]
    #[case::link_down(LINK_DOWN)]
    #[case::syncing(SYNCING)]
    #[case::loading(LOADING)]
    fn every_numeric_field_reads_as_in_the_text(#[case] text: &str) {
        let info = Info::parse(text);
        let mut checked = 0;
        for line in text.lines().filter(|l| !l.starts_with('#')) {
            let Some((name, value)) = line.split_once(':') else { continue };
            match value.parse::<f64>() {
                Ok(v) => {
                    assert_eq!(info.number(name), Some(v), "{line}");
                    checked += 1;
                }
                Err(_) => assert_eq!(info.number(name), None, "{line}"),
            }
            for (key, v) in value.split(',').filter_map(|pair| pair.split_once('=')) {
                let field = format!("{name}.{key}");
                assert_eq!(info.number(&field), v.parse().ok(), "{field} in {line}");
                checked += 1;
            }
        }
        assert!(checked > 100, "only {checked} numbers in the fixture");
    }

    #[rstest]
    #[case::master(MASTER)]
    #[case::loading(LOADING)]
    fn lf_and_crlf_read_the_same(#[case] text: &str) {
        assert!(text.contains("\r\n"), "fixtures keep Redis's CRLF");
        assert_eq!(Info::parse(&text.replace("\r\n", "\n")), Info::parse(text));
    }

    #[test]
    fn malformed_lines_are_skipped() {
        let text = "# Server\n\
                    \n\
                    no separator here\n\
                    :no name\n\
                    tcp_port:99999\n\
                    role:sentinel\n\
                    run_id:not-hex\n\
                    redis_version:7.x\n\
                    a:b:c\n\
                    nan_value:nan\n\
                    inf_value:inf\n\
                    huge:1e999\n\
                    plus:+5\n\
                    slave_priority:10\n\
                    slave0:ip=10.0.0.1,port=notaport,state=online\n\
                    slave1:port=6379\n\
                    slave2:ip=10.0.0.2,port=6380,state=weird,offset=x\n\
                    slavex:ip=10.0.0.3,port=6381\n\
                    db0:expires=3\n\
                    dbx:keys=1\n\
                    db99999999999:keys=1\n\
                    db1:keys=7,junk,avg_ttl=\n\
                    used_memory:1\n\
                    used_memory:2\r\n\
                    #used_cpu_sys:1";
        let info = Info::parse(text);
        assert_eq!(info.server.tcp_port, None, "does not fit a port");
        assert_eq!(info.number("tcp_port"), Some(99_999.0));
        assert_eq!(info.role, Role::Replica, "unknown role: the default");
        assert_eq!(info.server.run_id, None);
        assert_eq!(info.server.redis_version, None);
        assert_eq!(info.number("a"), None, "value `b:c`");
        for field in ["nan_value", "inf_value", "huge", "plus", "used_cpu_sys"] {
            assert_eq!(info.number(field), None, "{field}");
        }
        assert_eq!(info.replication.replica_priority, Some(10));
        assert_eq!(
            info.replication.replicas,
            [ConnectedReplica {
                ip: "10.0.0.2".into(),
                port: 6380,
                state: ReplicaState::Unknown,
                offset: None,
                lag: None,
            }]
        );
        assert_eq!(info.keyspace, [Keyspace { db: 1, keys: 7, expires: 0, avg_ttl: 0 }]);
        assert_eq!(info.number("keys"), Some(7.0), "db lines count even without a header");
        assert_eq!(info.memory.used_memory, Some(2), "the later line wins");
        assert_eq!(info.number("used_memory"), Some(2.0));
        assert_eq!(info.number("no separator here"), None);
    }

    #[test]
    fn no_keyspace_section_no_totals() {
        let info = Info::parse("# Server\r\nredis_version:7.0.15\r\n");
        assert_eq!(info.number("keys"), None);
        assert_eq!(info.server.redis_version, Some(Version::new(7, 0, 15)));
        assert_eq!(Info::parse(""), Info::default());
    }

    #[test]
    fn synthesized_observations() {
        let mut info = Info::new(Role::Master);
        assert_eq!(info.number("instantaneous_ops_per_sec"), None);
        info.set_number("instantaneous_ops_per_sec", 41_200.0);
        info.set_number("used_memory", 1e9);
        info.set_number("instantaneous_ops_per_sec", 30_000.0);
        assert_eq!(info.number("instantaneous_ops_per_sec"), Some(30_000.0));
        assert_eq!(info.number("used_memory"), Some(1e9));
        assert!(info.serving());

        let mut other = Info::new(Role::Master);
        other.set_number("used_memory", 1e9);
        other.set_number("instantaneous_ops_per_sec", 30_000.0);
        assert_eq!(info, other, "the order fields were set in does not matter");
        other.set_number("used_memory", 2e9);
        assert_ne!(info, other);
        other.set_number("used_memory", 1e9);
        other.set_number("keys", 0.0);
        assert_ne!(info, other, "an extra field");

        let debug = format!("{info:?}");
        assert!(debug.contains("\"used_memory\": Number(1000000000.0)"), "{debug}");
    }

    #[test]
    fn set_number_overrides_a_parsed_field() {
        let mut info = Info::parse(MASTER);
        info.set_number("used_memory", 1.0);
        info.set_number("db0.keys", 5.0);
        info.set_number("synthetic", 2.0);
        assert_eq!(info.number("used_memory"), Some(1.0));
        assert_eq!(info.number("db0.keys"), Some(5.0));
        assert_eq!(info.number("db3.keys"), Some(250.0));
        assert_eq!(info.number("synthetic"), Some(2.0));
        assert_ne!(info, Info::parse(MASTER));
    }

    #[test]
    fn numbers_are_overwritten_in_the_order_they_were_recorded() {
        let mut info = Info::new(Role::Replica);
        info.set_number("instantaneous_ops_per_sec", 0.0);
        info.set_number("total_commands_processed", 0.0);
        info.set_number("connected_clients", 10.0);
        info.overwrite_numbers_in_order([41_200.0, 7e9]);
        assert_eq!(info.number("instantaneous_ops_per_sec"), Some(41_200.0));
        assert_eq!(info.number("total_commands_processed"), Some(7e9));
        // Past the values given, a field keeps its own.
        assert_eq!(info.number("connected_clients"), Some(10.0));
    }

    #[test]
    fn ids_and_versions() {
        let hex = "476d73fda34415412a3f50b6029dfedb1fab1f59";
        assert_eq!(id(hex).to_string(), hex);
        assert_eq!(format!("{:?}", id(hex)), format!("RedisId({hex})"));
        assert!(id("0fffffffffffffffffffffffffffffffffffffff") < id(hex), "orders like the text");
        for bad in ["", "476d73fd", &format!("{hex}0"), &hex.replace('d', "g"), &"é".repeat(20)] {
            assert_eq!(RedisId::parse(bad), None, "{bad}");
        }
        assert!(Version::new(7, 0, 15) >= Version::new(6, 2, 0));
        assert!(Version::new(6, 0, 20) < Version::new(6, 2, 0));
        assert_eq!(Version::parse("255.255.255"), Some(Version::new(255, 255, 255)));
        assert_eq!(Version::parse("7.2"), None);
    }

    /// A fixture with random edits: characters inserted, removed or replaced anywhere,
    /// including inside separators and line ends.
    fn mutated() -> impl Strategy<Value = String> {
        let edit = (any::<prop::sample::Index>(), 0..3u8, any::<char>());
        (prop::sample::select(FIXTURES.to_vec()), prop::collection::vec(edit, 1..40)).prop_map(
            |(text, edits)| {
                let mut chars: Vec<char> = text.chars().collect();
                for (at, kind, c) in edits {
                    let i = at.index(chars.len() + 1);
                    match kind {
                        0 => chars.insert(i, c),
                        1 if i < chars.len() => {
                            chars.remove(i);
                        }
                        _ if i < chars.len() => chars[i] = c,
                        _ => {}
                    }
                }
                chars.into_iter().collect()
            },
        )
    }

    /// Parses, then reads every name the text could hold back, so lookups are exercised too.
    fn exercise(text: &str) {
        let info = Info::parse(text);
        for name in text.split(['\n', ':', ',', '=']) {
            let _ = info.number(name);
        }
        assert_eq!(info.clone(), info);
        let _ = format!("{info:?}");
    }

    proptest! {
        #[test]
        fn arbitrary_text_never_panics(text in any::<String>()) {
            exercise(&text);
        }

        #[test]
        fn info_like_text_never_panics(text in "([a-z0-9_]{0,12}[:=,.#-]?[0-9a-z.=,-]{0,12}\r?\n?){0,30}") {
            exercise(&text);
        }

        #[test]
        fn mutated_fixtures_never_panic(text in mutated()) {
            exercise(&text);
        }

        /// Whatever the name and value, a `name:value` line reads back as written.
        #[test]
        fn numbers_round_trip(name in "[a-z_]{1,30}", value in any::<i64>(), fraction in 0..1000u32) {
            let text = format!("{name}:{value}\r\n{name}_f:{value}.{fraction:03}\r\n");
            let info = Info::parse(&text);
            prop_assert_eq!(info.number(&name), Some(value as f64));
            let decimal: f64 = format!("{value}.{fraction:03}").parse().expect("a decimal");
            prop_assert_eq!(info.number(&format!("{name}_f")), Some(decimal));
        }
    }
}
