//! [`LocalFleet`], the embedded default [`Cluster`] backend: `redis-server` child processes on
//! `127.0.0.1`, instance `n` on port `basePort + n` with its files in `dataDir/n`, and the
//! durable record (master, epoch, requested replicas) in `dataDir/state.json`.
//!
//! Every instance boots as a replica: of the recorded master, or of itself when none is
//! recorded yet (a Redis replicating itself stays a harmless read-only replica with
//! `master_link_status:down` that refuses to feed others, `-NOMASTERLINK`). Only
//! [`Cluster::promote`] makes a master, so an instance that restarts empty can never wipe the
//! others by coming back as a master.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use super::redis_admin;
use super::{Claim, Cluster, ClusterError, MasterRecord, Member};
use crate::failover;
use crate::observe::InstanceId;
use crate::policy::{Health, Policy, Target};
use crate::sample::redis::{Access, Endpoint};

/// How long an instance may take to listen after it was started.
const START_DEADLINE: Duration = Duration::from_secs(10);
/// How long a stopped instance gets to exit after `SIGTERM` before `SIGKILL`.
const STOP_GRACE: Duration = Duration::from_secs(3);
const POLL: Duration = Duration::from_millis(20);
const HOST: &str = "127.0.0.1";

/// How to run a local fleet.
#[derive(Debug, Clone)]
pub struct LocalConfig {
    /// The `redis-server` binary: a path, or a name looked up on `PATH`.
    pub redis_server: String,
    pub base_port: u16,
    pub data_dir: PathBuf,
    /// How the role commands authenticate to the instances.
    pub access: Access,
    /// Deadline of every role command.
    pub timeout: Duration,
    /// How a scale-down that removes the master chooses its successor and guards it.
    pub health: Health,
    /// Stop every instance when the fleet is dropped. Off, the instances outlive the daemon
    /// and the next [`LocalFleet::open`] on the same `data_dir` adopts them.
    pub owns_processes: bool,
}

impl LocalConfig {
    /// The configuration of a policy's `local` target; `None` for other targets.
    pub fn from_policy(policy: &Policy, access: Access) -> Option<Self> {
        match &policy.target {
            Target::Local { redis_server, base_port, data_dir } => Some(Self {
                redis_server: redis_server.clone(),
                base_port: *base_port,
                data_dir: PathBuf::from(data_dir),
                access,
                timeout: crate::failover::action_timeout(policy),
                health: policy.health.clone(),
                owns_processes: true,
            }),
            Target::Kubernetes { .. } | Target::Endpoints(_) => None,
        }
    }
}

/// `dataDir/state.json`: what must survive a daemon restart.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct State {
    /// The recorded master's instance id, `null` until the health core chose the first.
    master: Option<InstanceId>,
    epoch: u64,
    /// Instances requested by the last [`Cluster::scale`].
    replicas: u16,
    /// The claim of whoever last changed roles ([`crate::cluster::Claim`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    claim: Option<Claim>,
}

impl State {
    fn record(&self) -> Option<MasterRecord> {
        self.master.clone().map(|instance| MasterRecord {
            instance,
            epoch: self.epoch,
            claim: self.claim.clone(),
        })
    }
}

/// Holds an exclusive lock on `dataDir/state.lock` while a record is read, checked and
/// written: the daemon and a `redis-autopilot failover` run by hand are two processes, and
/// the epoch rule only holds if neither writes between the other's read and write. A lock
/// file of its own, because `state.json` is replaced by rename.
fn lock_state(path: &Path) -> Result<std::fs::File, ClusterError> {
    let lock = path.with_extension("lock");
    let io = |action: &'static str| {
        let path = lock.clone();
        move |source| ClusterError::StateIo { action, path, source }
    };
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&lock)
        .map_err(io("open"))?;
    file.lock().map_err(io("lock"))?;
    Ok(file)
}

/// Reads the state file; a missing file is the empty state of a new fleet.
fn read_state(path: &Path) -> Result<State, ClusterError> {
    match std::fs::read(path) {
        Ok(bytes) => serde_json::from_slice(&bytes)
            .map_err(|source| ClusterError::StateCorrupt { path: path.to_owned(), source }),
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => Ok(State::default()),
        Err(source) => Err(ClusterError::StateIo { action: "read", path: path.to_owned(), source }),
    }
}

/// Replaces the state file atomically: a temp file is written and fsynced, renamed over the
/// old one, and the directory fsynced, so a crash at any point leaves either the old or the
/// new state on disk, never a torn one.
fn write_state(path: &Path, state: &State) -> Result<(), ClusterError> {
    let io = |action: &'static str, path: &Path| {
        let path = path.to_owned();
        move |source| ClusterError::StateIo { action, path, source }
    };
    let temp = path.with_extension("json.tmp");
    let json = serde_json::to_vec_pretty(state)
        .map_err(|source| ClusterError::StateCorrupt { path: path.to_owned(), source })?;
    let mut file = std::fs::File::create(&temp).map_err(io("create", &temp))?;
    file.write_all(&json).map_err(io("write", &temp))?;
    file.sync_all().map_err(io("fsync", &temp))?;
    drop(file);
    std::fs::rename(&temp, path).map_err(io("rename into place", path))?;
    if let Some(dir) = path.parent() {
        std::fs::File::open(dir).and_then(|d| d.sync_all()).map_err(io("fsync", dir))?;
    }
    Ok(())
}

/// A running instance: our child, or one a previous daemon started (known by its pid file).
enum Process {
    Child(Child),
    Adopted(u32),
}

impl Process {
    fn pid(&self) -> u32 {
        match self {
            Process::Child(child) => child.id(),
            Process::Adopted(pid) => *pid,
        }
    }

    /// Whether the process is still there (reaping our child if it exited).
    fn alive(&mut self) -> bool {
        match self {
            Process::Child(child) => matches!(child.try_wait(), Ok(None)),
            Process::Adopted(pid) => signal(*pid, "0"),
        }
    }

    /// `SIGKILL`, and reap our child; used on drop, where nothing can wait politely.
    fn kill_now(&mut self) {
        match self {
            Process::Child(child) => {
                // Already exited is the only error: nothing to do then.
                let _ = child.kill();
                let _ = child.wait();
            }
            Process::Adopted(pid) => {
                signal(*pid, "KILL");
            }
        }
    }
}

/// Sends `signal` with the `kill` utility (this crate forbids `unsafe`, so no `libc::kill`);
/// `true` when it was delivered. Signal `0` only asks whether the process exists.
/// With a password in `access`, writes `dir/auth.conf` (mode 0600) so the instance demands
/// what the daemon sends and authenticates to its master the same way. A file, not
/// arguments, so the password never shows in the process list.
fn write_auth_config(dir: &Path, access: &Access) -> Result<Option<PathBuf>, ClusterError> {
    use std::os::unix::fs::PermissionsExt;
    let Some(password) = &access.password else { return Ok(None) };
    let secret = config_string(password.expose());
    let text = match &access.username {
        // The named user alone may connect, as in a cluster whose ACL the policy was written for.
        Some(user) => {
            let user = config_string(user);
            let rule = config_string(&format!(">{}", password.expose()));
            format!(
                "user default off\nuser {user} on {rule} ~* &* +@all\n\
                 masteruser {user}\nmasterauth {secret}\n"
            )
        }
        None => format!("requirepass {secret}\nmasterauth {secret}\n"),
    };
    let path = dir.join("auth.conf");
    let io = |source| ClusterError::StateIo { action: "write", path: path.clone(), source };
    // Restricted before the secret is written, also when the file was already there.
    let mut file = std::fs::File::create(&path).map_err(io)?;
    file.set_permissions(std::fs::Permissions::from_mode(0o600)).map_err(io)?;
    file.write_all(text.as_bytes()).map_err(io)?;
    Ok(Some(path))
}

/// A value quoted for redis.conf, every byte `\xHH`-escaped so no character of a password
/// can end the string or the line.
fn config_string(value: &str) -> String {
    let escaped: String = value.bytes().map(|b| format!("\\x{b:02x}")).collect();
    format!("\"{escaped}\"")
}

fn signal(pid: u32, signal: &str) -> bool {
    Command::new("kill")
        .arg(format!("-{signal}"))
        .arg(pid.to_string())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|status| status.success())
}

/// The pid in `dir/redis.pid`, if that process is alive.
fn live_pid(dir: &Path) -> Option<u32> {
    let text = std::fs::read_to_string(dir.join("redis.pid")).ok()?;
    text.trim().parse::<u32>().ok().filter(|pid| signal(*pid, "0"))
}

struct Inner {
    state: State,
    running: BTreeMap<u16, Process>,
}

/// The local backend. Actions are serialized: one at a time, each seeing the last's result.
pub struct LocalFleet {
    config: LocalConfig,
    state_path: PathBuf,
    inner: tokio::sync::Mutex<Inner>,
}

impl LocalFleet {
    /// Opens the fleet in `config.data_dir` (created if missing): reads the recorded state and
    /// adopts the instances a previous daemon left running (a live pid in `dataDir/n/redis.pid`).
    /// Starts nothing: call [`Cluster::scale`] with [`Cluster::replicas`] to restore the
    /// requested count.
    pub fn open(mut config: LocalConfig) -> Result<Self, ClusterError> {
        std::fs::create_dir_all(&config.data_dir).map_err(|source| ClusterError::StateIo {
            action: "create",
            path: config.data_dir.clone(),
            source,
        })?;
        // redis-server changes into `--dir` before it opens `--logfile`: a relative data dir
        // (`./data/demo`) would point the log somewhere that does not exist.
        config.data_dir = std::fs::canonicalize(&config.data_dir).map_err(|source| {
            ClusterError::StateIo { action: "resolve", path: config.data_dir.clone(), source }
        })?;
        let dir = &config.data_dir;
        let state_path = dir.join("state.json");
        let state = read_state(&state_path)?;
        let mut running = BTreeMap::new();
        let entries = std::fs::read_dir(dir).map_err(|source| ClusterError::StateIo {
            action: "list",
            path: dir.clone(),
            source,
        })?;
        for entry in entries.flatten() {
            let Some(ordinal) = entry.file_name().to_str().and_then(|n| n.parse::<u16>().ok())
            else {
                continue;
            };
            if let Some(pid) = live_pid(&entry.path()) {
                running.insert(ordinal, Process::Adopted(pid));
            }
        }
        Ok(Self { config, state_path, inner: tokio::sync::Mutex::new(Inner { state, running }) })
    }

    /// Stops every instance this fleet runs (`SIGTERM`, then `SIGKILL` after a grace period),
    /// highest ordinal first. The record and the requested count stay: the next
    /// [`Cluster::scale`] brings the instances back, as replicas.
    pub async fn shutdown(&self) -> Result<(), ClusterError> {
        let mut inner = self.inner.lock().await;
        let ordinals: Vec<u16> = inner.running.keys().rev().copied().collect();
        for ordinal in ordinals {
            if let Some(process) = inner.running.remove(&ordinal) {
                self.stop(ordinal, process).await?;
            }
        }
        Ok(())
    }

    fn live_pid(&self, ordinal: u16) -> Option<u32> {
        live_pid(&self.config.data_dir.join(ordinal.to_string()))
    }

    fn port(&self, ordinal: u16) -> Result<u16, ClusterError> {
        self.config
            .base_port
            .checked_add(ordinal)
            .ok_or(ClusterError::PortRange { base_port: self.config.base_port, ordinal })
    }

    fn member(&self, ordinal: u16) -> Result<Member, ClusterError> {
        let port = self.port(ordinal)?;
        let id = format!("{HOST}:{port}");
        Ok(Member {
            endpoint: Endpoint { id: id.clone(), host: HOST.into(), port },
            id,
            ordinal,
            gone: None,
        })
    }

    /// The ordinal the recorded master runs as, if it is one of ours.
    fn master_ordinal(&self, state: &State) -> Option<u16> {
        let master = state.master.as_deref()?;
        let port: u16 = master.strip_prefix(HOST)?.strip_prefix(':')?.parse().ok()?;
        port.checked_sub(self.config.base_port)
    }

    /// Starts instance `ordinal` as a replica of port `master_port` and waits until it listens.
    async fn start(&self, ordinal: u16, master_port: u16) -> Result<Process, ClusterError> {
        let member = self.member(ordinal)?;
        let dir = self.config.data_dir.join(ordinal.to_string());
        let log = dir.join("redis.log");
        let failed = |why: String| ClusterError::Start {
            instance: member.id.clone(),
            why,
            log: log.clone(),
        };
        std::fs::create_dir_all(&dir).map_err(|source| ClusterError::StateIo {
            action: "create",
            path: dir.clone(),
            source,
        })?;
        // Something already answering there would be mistaken for the new instance.
        if tokio::net::TcpStream::connect((HOST, member.endpoint.port)).await.is_ok() {
            return Err(failed(format!("port {} is already in use", member.endpoint.port)));
        }
        let mut command = Command::new(&self.config.redis_server);
        // A config file must come first on redis-server's command line.
        if let Some(auth) = write_auth_config(&dir, &self.config.access)? {
            command.arg(auth);
        }
        let mut child = command
            .arg("--port")
            .arg(member.endpoint.port.to_string())
            .args(["--bind", HOST, "--daemonize", "no"])
            .arg("--dir")
            .arg(&dir)
            .arg("--logfile")
            .arg(&log)
            .arg("--pidfile")
            .arg(dir.join("redis.pid"))
            // Durability comes from replicas and snapshots, not from local files: a restarted
            // instance starts empty and resyncs, which is what booting as a replica expects.
            .args(["--save", "", "--appendonly", "no"])
            .args(["--repl-diskless-sync", "yes", "--repl-diskless-sync-delay", "0"])
            // Replicas hear from an idle master every second, not every ten: "no replica has
            // heard from it within downAfter" then means what it says.
            .args(["--repl-ping-replica-period", "1"])
            .args(["--replicaof", HOST])
            .arg(master_port.to_string())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|source| ClusterError::Spawn {
                binary: self.config.redis_server.clone(),
                instance: member.id.clone(),
                source,
            })?;
        let deadline = Instant::now() + START_DEADLINE;
        loop {
            if let Ok(Some(status)) = child.try_wait() {
                return Err(failed(format!("redis-server exited with {status}")));
            }
            if tokio::net::TcpStream::connect((HOST, member.endpoint.port)).await.is_ok() {
                return Ok(Process::Child(child));
            }
            if Instant::now() >= deadline {
                let mut process = Process::Child(child);
                process.kill_now();
                return Err(failed(format!("not listening after {START_DEADLINE:?}")));
            }
            tokio::time::sleep(POLL).await;
        }
    }

    /// `SIGTERM`, then `SIGKILL` if the process is still there after [`STOP_GRACE`].
    async fn stop(&self, ordinal: u16, mut process: Process) -> Result<(), ClusterError> {
        if !process.alive() {
            return Ok(());
        }
        let instance = self.member(ordinal)?.id;
        signal(process.pid(), "TERM");
        let deadline = Instant::now() + STOP_GRACE;
        while Instant::now() < deadline {
            if !process.alive() {
                return Ok(());
            }
            tokio::time::sleep(POLL).await;
        }
        process.kill_now();
        if process.alive() {
            return Err(ClusterError::Stop {
                instance,
                why: format!("pid {} survived SIGKILL", process.pid()),
            });
        }
        Ok(())
    }

    /// Moves the master role off `master` (about to be removed) to the best instance below
    /// `keep` ([`failover::hand_over`]).
    async fn hand_over(&self, master: u16, keep: u16) -> Result<(), ClusterError> {
        let actor = crate::cluster::kubernetes::lease::default_identity();
        let context = failover::Context {
            access: &self.config.access,
            timeout: self.config.timeout,
            guard: self.config.health.write_guard.as_ref(),
            actor: &actor,
        };
        let from = self.member(master)?;
        failover::hand_over(self, &from, keep, &self.config.health, &context).await.map(drop)
    }

    /// Re-reads the state file: a `redis-autopilot failover` run by hand may have recorded a
    /// new master since.
    fn refresh(&self, inner: &mut Inner) -> Result<(), ClusterError> {
        inner.state = read_state(&self.state_path)?;
        Ok(())
    }

    /// Forgets instances that exited and starts the missing ordinals below the requested
    /// count, as replicas of the recorded master, except the recorded master itself when
    /// `spare_master`.
    async fn start_missing(
        &self,
        inner: &mut Inner,
        spare_master: bool,
    ) -> Result<(), ClusterError> {
        inner.running.retain(|_, process| process.alive());
        let master = self.master_ordinal(&inner.state);
        for ordinal in 0..inner.state.replicas {
            if inner.running.contains_key(&ordinal) || (spare_master && master == Some(ordinal)) {
                continue;
            }
            let master_port = self.port(master.unwrap_or(ordinal))?;
            let process = self.start(ordinal, master_port).await?;
            inner.running.insert(ordinal, process);
        }
        Ok(())
    }
}

impl Cluster for LocalFleet {
    /// Instances that exited stay members, marked gone, until the next [`Cluster::scale`]
    /// restarts them: a dead master must be seen dead, not vanish.
    async fn members(&self) -> Result<Vec<Member>, ClusterError> {
        let mut inner = self.inner.lock().await;
        let mut members = Vec::with_capacity(inner.running.len());
        for (&ordinal, process) in &mut inner.running {
            let mut member = self.member(ordinal)?;
            if !process.alive() {
                // Restarted by someone else (by hand, a supervisor): watch the new process.
                match self.live_pid(ordinal).filter(|&pid| pid != process.pid()) {
                    Some(pid) => *process = Process::Adopted(pid),
                    None => {
                        member.gone = Some(format!("redis-server pid {} exited", process.pid()))
                    }
                }
            }
            members.push(member);
        }
        Ok(members)
    }

    async fn replicas(&self) -> Result<u16, ClusterError> {
        Ok(self.inner.lock().await.state.replicas)
    }

    /// Records `to` as requested, then reconciles: instances that exited are forgotten; the
    /// recorded master, if it is to be removed, is switched over first (see `hand_over`); the
    /// highest ordinals are stopped; missing ordinals below `to` are started as replicas of the
    /// recorded master (of themselves when none is recorded) and sync from it in the
    /// background. If the daemon dies halfway, calling `scale(to)` again finishes the job; a
    /// failed switchover removes nothing.
    async fn scale(&self, to: u16) -> Result<(), ClusterError> {
        let hand_over = {
            let mut inner = self.inner.lock().await;
            self.refresh(&mut inner)?;
            if inner.state.replicas != to {
                let mut state = inner.state.clone();
                state.replicas = to;
                write_state(&self.state_path, &state)?;
                inner.state = state;
            }
            inner.running.retain(|_, process| process.alive());
            self.master_ordinal(&inner.state)
                .filter(|&master| master >= to && inner.running.contains_key(&master))
        };
        // Outside the lock: the switchover records the new master through the trait.
        if let Some(master) = hand_over {
            self.hand_over(master, to).await?;
        }
        let mut inner = self.inner.lock().await;
        self.refresh(&mut inner)?;
        let removing: Vec<u16> = inner.running.range(to..).rev().map(|(&o, _)| o).collect();
        for ordinal in removing {
            if let Some(process) = inner.running.remove(&ordinal) {
                self.stop(ordinal, process).await?;
            }
        }
        self.start_missing(&mut inner, false).await
    }

    async fn heal(&self) -> Result<(), ClusterError> {
        let mut inner = self.inner.lock().await;
        self.refresh(&mut inner)?;
        self.start_missing(&mut inner, true).await
    }

    async fn recorded_master(&self) -> Result<Option<MasterRecord>, ClusterError> {
        let mut inner = self.inner.lock().await;
        self.refresh(&mut inner)?;
        Ok(inner.state.record())
    }

    async fn record_master(&self, record: MasterRecord) -> Result<(), ClusterError> {
        let mut inner = self.inner.lock().await;
        let _locked = lock_state(&self.state_path)?;
        self.refresh(&mut inner)?;
        let current = inner.state.record();
        let Some(next) = MasterRecord::advance(current.as_ref(), &record, chrono::Utc::now())?
        else {
            return Ok(());
        };
        let mut state = inner.state.clone();
        state.master = Some(next.instance);
        state.epoch = next.epoch;
        state.claim = next.claim;
        write_state(&self.state_path, &state)?;
        inner.state = state;
        Ok(())
    }

    async fn promote(&self, member: &Member, epoch: u64) -> Result<(), ClusterError> {
        let mut inner = self.inner.lock().await;
        self.refresh(&mut inner)?;
        MasterRecord::may_promote(inner.state.record().as_ref(), member, epoch)?;
        redis_admin::replicaof(member, None, &self.config.access, self.config.timeout).await
    }

    /// Refuses to repoint the recorded master: that would leave the fleet without the master
    /// it records (record another master first).
    async fn repoint(&self, member: &Member, master: &Member) -> Result<(), ClusterError> {
        let mut inner = self.inner.lock().await;
        self.refresh(&mut inner)?;
        MasterRecord::may_repoint(inner.state.record().as_ref(), member)?;
        redis_admin::replicaof(member, Some(master), &self.config.access, self.config.timeout).await
    }
}

impl Drop for LocalFleet {
    fn drop(&mut self) {
        if self.config.owns_processes {
            for process in self.inner.get_mut().running.values_mut() {
                process.kill_now();
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn state_round_trips_and_replaces_atomically() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state.json");
        assert_eq!(read_state(&path).unwrap(), State::default());
        let state =
            State { master: Some("127.0.0.1:7000".into()), epoch: 3, replicas: 2, claim: None };
        write_state(&path, &state).unwrap();
        assert_eq!(read_state(&path).unwrap(), state);
        let next = State { epoch: 4, ..state };
        write_state(&path, &next).unwrap();
        assert_eq!(read_state(&path).unwrap(), next);
        // No temp file is left behind once the new state is in place.
        let names: Vec<_> =
            std::fs::read_dir(dir.path()).unwrap().map(|e| e.unwrap().file_name()).collect();
        assert_eq!(names, ["state.json"]);
        let json: serde_json::Value =
            serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
        assert_eq!(
            json,
            serde_json::json!({"master": "127.0.0.1:7000", "epoch": 4, "replicas": 2})
        );
    }

    #[test]
    fn a_corrupt_state_file_is_a_clear_error() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state.json");
        for text in [
            "{\"master\": \"a\", \"epo",
            "{\"master\": null, \"epoch\": 1, \"replicas\": 1, \"x\": 1}",
            "",
        ] {
            std::fs::write(&path, text).unwrap();
            let error = read_state(&path).unwrap_err();
            assert_eq!(error.category(), "state_corrupt");
            let message = error.to_string();
            assert!(message.contains("state.json") && message.contains("not valid"), "{message}");
        }
    }

    #[test]
    fn a_corrupt_state_file_stops_open() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("state.json"), "not json").unwrap();
        let config = LocalConfig {
            redis_server: "redis-server".into(),
            base_port: 7000,
            data_dir: dir.path().to_owned(),
            access: Access::default(),
            timeout: Duration::from_secs(1),
            health: Health::default(),
            owns_processes: true,
        };
        assert!(matches!(LocalFleet::open(config), Err(ClusterError::StateCorrupt { .. })));
    }
}
