//! [`LocalFleet`], the embedded default [`Cluster`](super::Cluster) backend: `redis-server` processes on
//! `127.0.0.1`, instance `n` on port `basePort + n` with its files in `dataDir/n`, and the
//! durable record (master, epoch, requested replicas) in `dataDir/state.json`.
//!
//! Every instance boots as a replica: of the recorded master, or of itself when none is
//! recorded yet (a Redis replicating itself stays a harmless read-only replica with
//! `master_link_status:down` that refuses to feed others, `-NOMASTERLINK`). Only
//! [`Cluster::promote`](super::Cluster::promote) makes a master, so an instance that restarts empty can never wipe the
//! others by coming back as a master.
//!
//! - `state`: the durable record, replaced atomically.
//! - `process`: starting an instance (minimal environment), recognising one a previous daemon
//!   started (never a stranger behind a stale `redis.pid`), signalling it through a pidfd.
//! - `scratch`: a throwaway instance outside the fleet that restore tests load a snapshot
//!   into, killed and its directory removed afterwards.
//! - `dumps`: what a restart of the whole fleet restores: the clean shutdown's save, else the
//!   freshest file left, and never a replica's stale `dump.rdb`.
//!
//! Processes are stopped only by an explicit call ([`LocalFleet::shutdown`], a scale-down),
//! each logged; dropping a [`LocalFleet`] leaves them running for the next
//! [`LocalFleet::open`] to adopt. No lock is held across a call to Redis: the record is read
//! and checked, then the role command runs, so one unreachable instance delays no other.

mod cluster;
mod dumps;
mod process;
mod scratch;
mod state;

use std::collections::{BTreeMap, BTreeSet};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant, SystemTime};

use rustix::process::Signal;

use self::dumps::{ColdStart, Dump, Saved};
use self::process::{Identity, Process};
pub use self::scratch::Scratch;
pub use self::state::read_record;
use self::state::{State, read_state, read_state_async, update_state};
use super::redis_admin;
use super::{ClusterError, Member};
use crate::observe::Role;
use crate::policy::{Policy, Target};
use crate::sample::redis::{Access, Endpoint};

/// How long an instance may take to listen after it was started.
const START_DEADLINE: Duration = Duration::from_secs(10);
/// How long a stopped instance gets to exit after `SIGTERM` before `SIGKILL`.
const STOP_GRACE: Duration = Duration::from_secs(3);
/// How long the master gets to write its dump and exit on a clean shutdown.
const SAVE_DEADLINE: Duration = Duration::from_secs(20);
/// How long a look at an address nothing of ours runs on may take.
const KNOCK: Duration = Duration::from_millis(200);
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
    /// This handle runs the fleet (the daemon): [`LocalFleet::shutdown`] may stop it. Off (a
    /// one-off command acting beside a daemon), `shutdown` refuses. Dropping a fleet stops
    /// nothing either way: the next [`LocalFleet::open`] adopts the instances.
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
                timeout: super::action_timeout(policy),
                owns_processes: true,
            }),
            Target::Kubernetes { .. } | Target::Endpoints(_) => None,
        }
    }
}

/// Every `dataDir/N` directory, by ordinal.
fn ordinal_dirs(dir: &Path) -> Result<Vec<(u16, PathBuf)>, ClusterError> {
    let entries = std::fs::read_dir(dir).map_err(|source| ClusterError::StateIo {
        action: "list",
        path: dir.to_owned(),
        source,
    })?;
    let mut dirs: Vec<(u16, PathBuf)> = entries
        .flatten()
        .filter(|entry| entry.file_type().is_ok_and(|t| t.is_dir()))
        .filter_map(|entry| {
            let ordinal = entry.file_name().to_str()?.parse::<u16>().ok()?;
            Some((ordinal, entry.path()))
        })
        .collect();
    dirs.sort();
    Ok(dirs)
}

/// Runs `work` (file I/O that may block: fsync, a lock another process holds) on the blocking
/// pool, not on an async worker. A panic in it is re-raised here, as if it had run inline;
/// a runtime shutting down under it is an error about `path`.
async fn blocking<T: Send + 'static>(
    path: &Path,
    work: impl FnOnce() -> Result<T, ClusterError> + Send + 'static,
) -> Result<T, ClusterError> {
    match tokio::task::spawn_blocking(work).await {
        Ok(result) => result,
        Err(error) => match error.try_into_panic() {
            Ok(panic) => std::panic::resume_unwind(panic),
            Err(error) => Err(ClusterError::StateIo {
                action: "finish work on",
                path: path.to_owned(),
                source: std::io::Error::other(error),
            }),
        },
    }
}

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

/// The fleet's processes. Behind a plain mutex held only for lookups and `/proc` reads, never
/// across an `.await`.
#[derive(Default)]
struct Processes {
    running: BTreeMap<u16, Process>,
    /// Why an ordinal runs nothing of ours: the start that failed, the process that exited.
    down: BTreeMap<u16, String>,
    /// Ordinals where something the fleet did not start answers, once logged.
    foreign: BTreeSet<u16>,
}

/// What only one caller at a time may do: start and stop processes.
#[derive(Default)]
struct Lifecycle {
    /// The ordinal whose next start keeps its `dump.rdb`: the recorded master after a restart
    /// of the whole fleet (see `dumps`).
    keep: Option<u16>,
    /// The clean shutdown's record that start consumed, to write back if it fails.
    saved: Option<dumps::Saved>,
}

/// The local backend. Starting and stopping processes (scale, heal, shutdown) is serialized;
/// reading the fleet, recording and the role commands never wait for it.
pub struct LocalFleet {
    config: LocalConfig,
    state_path: PathBuf,
    lifecycle: tokio::sync::Mutex<Lifecycle>,
    /// Held while the record is read, checked and written back, so two writers in this
    /// process never interleave. No Redis call is made under it.
    writing: tokio::sync::Mutex<()>,
    processes: std::sync::Mutex<Processes>,
}

impl LocalFleet {
    /// The role commands, guarded by the record, under this fleet's access and deadline.
    fn guarded(&self) -> redis_admin::Guarded<'_> {
        redis_admin::Guarded { access: &self.config.access, timeout: self.config.timeout }
    }

    /// Opens the fleet in `config.data_dir` (created if missing): reads the recorded state and
    /// adopts the instances a previous daemon left running: a pid in `dataDir/n/redis.pid`
    /// that is provably instance `n` (a redis-server of its port, working in its directory)
    /// and whose port answers. Any other pid there is logged and never signalled. Starts
    /// nothing: call [`Cluster::scale`](super::Cluster::scale) with [`Cluster::replicas`](super::Cluster::replicas) to restore the requested
    /// count.
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
        let state_path = config.data_dir.join("state.json");
        // Fail early on a corrupt record: it names the master.
        read_state(&state_path)?;
        let fleet = Self {
            config,
            state_path,
            lifecycle: tokio::sync::Mutex::default(),
            writing: tokio::sync::Mutex::default(),
            processes: std::sync::Mutex::default(),
        };
        let mut running = BTreeMap::new();
        for ordinal in ordinal_dirs(&fleet.config.data_dir)?.into_iter().map(|(ordinal, _)| ordinal)
        {
            let Ok(port) = fleet.port(ordinal) else { continue };
            let dir = fleet.dir(ordinal);
            match process::adoptable(&Identity { host: HOST, port, dir: &dir }) {
                Ok(Some(adopted)) => {
                    let process = Process::Adopted(adopted);
                    tracing::info!(instance = %format!("{HOST}:{port}"), pid = process.pid(), "adopting a running instance");
                    running.insert(ordinal, process);
                }
                Ok(None) => {}
                Err(why) => {
                    tracing::warn!(instance = %format!("{HOST}:{port}"), %why, "not adopting: the pid file names no instance of this fleet; nothing will signal it");
                }
            }
        }
        fleet.lock().running = running;
        Ok(fleet)
    }

    /// [`LocalFleet::open`] from async code: it reads the data dir and `/proc` and knocks on
    /// ports, so it runs on the blocking pool, not on an async worker.
    pub async fn open_async(config: LocalConfig) -> Result<Self, ClusterError> {
        let data_dir = config.data_dir.clone();
        blocking(&data_dir, move || Self::open(config)).await
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Processes> {
        // Nothing panics while holding it; if something did, the map is still consistent.
        self.processes.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Stops every instance, explicitly and logged: the replicas first, then the recorded
    /// master with `SHUTDOWN SAVE`, recording that save so the next start restores exactly
    /// what it acknowledged (see `dumps`). The record and the requested count stay: the next
    /// [`Cluster::scale`](super::Cluster::scale) brings the instances back. Refused on a fleet opened without
    /// [`LocalConfig::owns_processes`].
    pub async fn shutdown(&self) -> Result<(), ClusterError> {
        if !self.config.owns_processes {
            return Err(ClusterError::Unsupported {
                target: "attached local",
                action: "stop their instances",
            });
        }
        let _life = self.lifecycle.lock().await;
        let state = read_state_async(&self.state_path).await?;
        let master = self.master_ordinal(&state);
        let processes = std::mem::take(&mut self.lock().running);
        let data_dir = self.config.data_dir.display().to_string();
        tracing::info!(data_dir, instances = processes.len(), master = %state.describe(), "stopping the local fleet");
        let (masters, replicas): (Vec<_>, Vec<_>) =
            processes.into_iter().partition(|(ordinal, _)| Some(*ordinal) == master);
        let stopped =
            futures::future::join_all(replicas.into_iter().map(|(o, p)| self.stop(o, p))).await;
        let mut result = stopped.into_iter().collect::<Result<(), _>>();
        match masters.into_iter().next() {
            Some((ordinal, process)) => {
                let saved = self.save_and_stop(ordinal, process, &state).await;
                result = result.and(saved);
            }
            None if state.master.is_some() => tracing::warn!(
                master = %state.describe(),
                "the recorded master is not running: nothing saved; the next start restores the freshest file left"
            ),
            None => {}
        }
        tracing::info!(data_dir, "local fleet stopped");
        result
    }

    /// The last step of a clean shutdown: the master, its replicas already gone, writes its
    /// data with `SHUTDOWN SAVE` (nothing is accepted between the save and the exit), and
    /// `dataDir/saved.json` vouches for that file. Without a save (not serving as master, the
    /// save refused), it is stopped like the others and the reason logged.
    async fn save_and_stop(
        &self,
        ordinal: u16,
        mut process: Process,
        state: &State,
    ) -> Result<(), ClusterError> {
        let member = self.member(ordinal)?;
        let timeout = self.config.timeout;
        let info = redis_admin::info(&member.endpoint, &self.config.access, timeout).await;
        if !info.as_ref().is_ok_and(|info| info.role == Role::Master) {
            let why = match info {
                Ok(_) => "it is not serving as master".to_owned(),
                Err(error) => crate::errors::chain(&error),
            };
            tracing::warn!(instance = %member.id, %why, "cannot save the master's data: stopping it without a save; the next start restores the freshest file left");
            return self.stop(ordinal, process).await;
        }
        // File times are taken from a coarse clock: allow for it.
        let since = SystemTime::now() - Duration::from_secs(1);
        if let Err(why) = self.shutdown_save(&member).await {
            tracing::error!(instance = %member.id, %why, "SHUTDOWN SAVE failed: stopping the master without a save; the next start restores the freshest file left");
            return self.stop(ordinal, process).await;
        }
        let dir = self.dir(ordinal);
        let deadline = Instant::now() + SAVE_DEADLINE;
        while process.alive() {
            if Instant::now() >= deadline {
                tracing::error!(instance = %member.id, "the master did not exit within {SAVE_DEADLINE:?} of SHUTDOWN SAVE: stopping it; the next start restores the freshest file left");
                return self.stop(ordinal, process).await;
            }
            tokio::time::sleep(POLL).await;
        }
        let look = dir.clone();
        let found = blocking(&dir, move || Ok(Dump::find(&look))).await?;
        match found.filter(|dump| dump.modified >= since) {
            Some(dump) => {
                let saved = Saved::new(member.id.clone(), state.epoch, ordinal, &dump);
                let data_dir = self.config.data_dir.clone();
                blocking(&self.config.data_dir, move || dumps::write_saved(&data_dir, &saved))
                    .await?;
                tracing::info!(instance = %member.id, epoch = state.epoch, dump = %dump.describe(), "the master saved its data: the next start restores it and promotes it again");
            }
            None => tracing::error!(
                instance = %member.id,
                "the master exited without writing a dump: the next start restores the freshest file left"
            ),
        }
        Ok(())
    }

    /// `SHUTDOWN SAVE`. Success closes the connection without a reply; an error reply (the
    /// save failed, so Redis stays up) is the failure.
    async fn shutdown_save(&self, member: &Member) -> Result<(), String> {
        let endpoint = &member.endpoint;
        let timeout = SAVE_DEADLINE;
        let run = async {
            let mut connection =
                crate::sample::redis::connect(endpoint, &self.config.access, timeout)
                    .await
                    .map_err(|e| e.to_string())?;
            match redis::cmd("SHUTDOWN").arg("SAVE").query_async::<()>(&mut connection).await {
                Ok(()) => Ok(()),
                // An error reply: Redis refused to go down (the save failed) and still runs.
                Err(error) if error.code().is_some() => Err(error.to_string()),
                // The connection closed (or the reply is slow to come): whether the server
                // went down, as asked, is seen by waiting for the process to exit.
                Err(_) => Ok(()),
            }
        };
        tokio::time::timeout(timeout, run)
            .await
            .unwrap_or_else(|_| Err(format!("no answer within {timeout:?}")))
    }

    fn dir(&self, ordinal: u16) -> PathBuf {
        self.config.data_dir.join(ordinal.to_string())
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
    /// Its `dump.rdb` is set aside first unless `keep_dump` (see `dumps`).
    async fn start(
        &self,
        ordinal: u16,
        master_port: u16,
        keep_dump: bool,
    ) -> Result<Process, ClusterError> {
        let member = self.member(ordinal)?;
        let dir = self.dir(ordinal);
        let log = dir.join("redis.log");
        let failed = |why: String| ClusterError::Start {
            instance: member.id.clone(),
            why,
            log: log.clone(),
        };
        let create = dir.clone();
        blocking(&dir, move || {
            std::fs::create_dir_all(&create).map_err(|source| ClusterError::StateIo {
                action: "create",
                path: create.clone(),
                source,
            })
        })
        .await?;
        // Something already answering there would be mistaken for the new instance.
        if tokio::net::TcpStream::connect((HOST, member.endpoint.port)).await.is_ok() {
            return Err(failed(format!("port {} is already in use", member.endpoint.port)));
        }
        let (files, access) = (dir.clone(), self.config.access.clone());
        let (set_aside, auth) = blocking(&dir, move || {
            let set_aside = if keep_dump { None } else { dumps::set_aside(&files)? };
            Ok((set_aside, write_auth_config(&files, &access)?))
        })
        .await?;
        if let Some(dump) = set_aside {
            tracing::info!(instance = %member.id, dump = %dump.describe(), "set aside a stale dump.rdb: the instance starts empty and resyncs from the master");
        }
        let mut command = process::command(&self.config.redis_server);
        // A config file must come first on redis-server's command line.
        if let Some(auth) = auth {
            command.arg(auth);
        }
        let child = command
            .arg("--port")
            .arg(member.endpoint.port.to_string())
            .args(["--bind", HOST, "--daemonize", "no"])
            .arg("--dir")
            .arg(&dir)
            .arg("--logfile")
            .arg(&log)
            .arg("--pidfile")
            .arg(dir.join("redis.pid"))
            // Durability comes from replicas, the clean shutdown's save and snapshots: no
            // save points, no AOF. A restarted instance starts empty and resyncs, which is
            // what booting as a replica expects.
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
        let mut process = Process::Child(child);
        let deadline = Instant::now() + START_DEADLINE;
        loop {
            if let Process::Child(child) = &mut process
                && let Ok(Some(status)) = child.try_wait()
            {
                return Err(failed(format!("redis-server exited with {status}")));
            }
            if tokio::net::TcpStream::connect((HOST, member.endpoint.port)).await.is_ok() {
                tracing::info!(instance = %member.id, pid = process.pid(), master_port, "started");
                return Ok(process);
            }
            if Instant::now() >= deadline {
                let _ = process.signal(Signal::KILL);
                // Reaped without blocking a worker: SIGKILL ends it within moments.
                let reap = Instant::now() + STOP_GRACE;
                while process.alive() && Instant::now() < reap {
                    tokio::time::sleep(POLL).await;
                }
                return Err(failed(format!("not listening after {START_DEADLINE:?}")));
            }
            tokio::time::sleep(POLL).await;
        }
    }

    /// `SIGTERM`, then `SIGKILL` if the process is still there after [`STOP_GRACE`].
    async fn stop(&self, ordinal: u16, mut process: Process) -> Result<(), ClusterError> {
        let member = self.member(ordinal)?;
        if !process.alive() {
            return Ok(());
        }
        tracing::info!(instance = %member.id, pid = process.pid(), "stopping");
        if let Err(why) = process.signal(Signal::TERM) {
            tracing::debug!(instance = %member.id, %why, "SIGTERM not delivered");
        }
        let deadline = Instant::now() + STOP_GRACE;
        while Instant::now() < deadline {
            if !process.alive() {
                return Ok(());
            }
            tokio::time::sleep(POLL).await;
        }
        tracing::warn!(instance = %member.id, pid = process.pid(), "still running {STOP_GRACE:?} after SIGTERM: SIGKILL");
        let _ = process.signal(Signal::KILL);
        let deadline = Instant::now() + STOP_GRACE;
        while Instant::now() < deadline {
            if !process.alive() {
                return Ok(());
            }
            tokio::time::sleep(POLL).await;
        }
        Err(ClusterError::Stop {
            instance: member.id,
            why: format!("pid {} survived SIGKILL", process.pid()),
        })
    }

    /// Writes `to` as the requested count, re-reading the record first: a `redis-autopilot
    /// failover` run by hand may have recorded a new master since.
    async fn persist_replicas(&self, to: u16) -> Result<State, ClusterError> {
        let _writing = self.writing.lock().await;
        self.update_state(move |state| {
            let changed = state.replicas != to;
            state.replicas = to;
            Ok(changed)
        })
        .await
    }

    /// [`state::update_state`] off the async workers.
    async fn update_state(
        &self,
        change: impl FnOnce(&mut State) -> Result<bool, ClusterError> + Send + 'static,
    ) -> Result<State, ClusterError> {
        let path = self.state_path.clone();
        blocking(&self.state_path, move || update_state(&path, change)).await
    }

    /// Forgets instances that exited and starts the missing ordinals below the requested
    /// count, as replicas of the recorded master, except the recorded master itself when
    /// `spare_master`. A fleet with nothing running first restores what it can (see `dumps`).
    /// Every missing ordinal is tried; the first failure is returned.
    async fn start_missing(
        &self,
        life: &mut Lifecycle,
        state: &State,
        spare_master: bool,
    ) -> Result<(), ClusterError> {
        let master = self.master_ordinal(state);
        let (missing, cold, master_runs) = {
            let mut processes = self.lock();
            self.forget_exited(&mut processes);
            let missing: Vec<u16> = (0..state.replicas)
                .filter(|o| !processes.running.contains_key(o))
                .filter(|o| !(spare_master && master == Some(*o)))
                .collect();
            let master_runs = master.is_some_and(|m| processes.running.contains_key(&m));
            (missing, processes.running.is_empty(), master_runs)
        };
        if missing.is_empty() {
            return Ok(());
        }
        // A recorded master that runs without serving (an unfinished promotion, a hung
        // process) cannot feed a new replica, and an instance that never linked up reports
        // offset 1, which would outrank a master that has not replicated anything yet: the
        // others wait until it serves, and `heal` starts them then.
        let wait_for_master = match master {
            Some(m) if master_runs && missing.iter().any(|&o| o != m) => {
                let member = self.member(m)?;
                let info =
                    redis_admin::info(&member.endpoint, &self.config.access, self.config.timeout);
                !info.await.is_ok_and(|info| info.role == Role::Master)
            }
            _ => false,
        };
        // A file kept for the master of a cold start is for that master only: after a
        // failover it is as stale as any other.
        if life.keep != master {
            life.keep = None;
            life.saved = None;
        }
        let mut missing = missing;
        if cold && !spare_master {
            (life.keep, life.saved) = self.cold_start(state, master).await?;
            // The recorded master first, from what it keeps. If it cannot start, nothing else
            // does: the fleet stays cold, so the next attempt restores that file again. Replicas
            // started beside a master that is not there would make it a warm start, and a warm
            // start sets every file aside.
            if let Some(master) = master {
                missing.sort_by_key(|&ordinal| ordinal != master);
            }
        }
        let mut result = Ok(());
        for ordinal in missing {
            if wait_for_master && master != Some(ordinal) {
                let why = "not started: waiting for the recorded master to serve";
                self.lock().down.insert(ordinal, why.to_owned());
                continue;
            }
            let keep = life.keep == Some(ordinal) && master == Some(ordinal);
            let master_port = self.port(master.unwrap_or(ordinal))?;
            match self.start(ordinal, master_port, keep).await {
                Ok(process) => {
                    if keep {
                        (life.keep, life.saved) = (None, None);
                    }
                    let mut processes = self.lock();
                    processes.running.insert(ordinal, process);
                    processes.down.remove(&ordinal);
                    processes.foreign.remove(&ordinal);
                }
                Err(error) => {
                    self.lock().down.insert(ordinal, format!("cannot start: {error}"));
                    if cold && master == Some(ordinal) {
                        // It never loaded its file: the record vouches for it still.
                        if let Some(saved) = life.saved.take() {
                            let data_dir = self.config.data_dir.clone();
                            blocking(&self.config.data_dir, move || {
                                dumps::write_saved(&data_dir, &saved)
                            })
                            .await?;
                        }
                        tracing::warn!(ordinal, error = %crate::errors::chain(&error), "the recorded master cannot start: starting none of the others, so the next attempt is a cold start again");
                        return Err(error);
                    }
                    if result.is_ok() {
                        result = Err(error);
                    }
                }
            }
        }
        result
    }

    /// A fleet about to start with nothing running: decides what it restores and says what
    /// was lost ([`dumps::prepare`]). Returns the ordinal that keeps its file.
    async fn cold_start(
        &self,
        state: &State,
        master: Option<u16>,
    ) -> Result<(Option<u16>, Option<dumps::Saved>), ClusterError> {
        let data_dir = self.config.data_dir.clone();
        let recorded = state.master.clone().zip(master).map(|(id, o)| (id, o, state.epoch));
        let start = blocking(&self.config.data_dir, move || {
            let dirs = ordinal_dirs(&data_dir)?;
            let recorded = recorded.as_ref().map(|(id, o, epoch)| (id.as_str(), *o, *epoch));
            dumps::prepare(&data_dir, &dirs, recorded)
        })
        .await?;
        let master = state.describe();
        match &start {
            ColdStart::Saved { dump, .. } => {
                tracing::info!(%master, dump = %dump.describe(), "restarting from the clean shutdown's save: the master starts from it and is promoted again at its epoch; the others resync from it")
            }
            ColdStart::Freshest { from, dump, .. } => {
                tracing::warn!(%master, from = %format!("{HOST}:{}", self.config.base_port.saturating_add(*from)), dump = %dump.describe(), "the fleet was not shut down cleanly: restoring the freshest data left, a dump.rdb from the last full sync, on the recorded master; every write acknowledged after it was written is lost")
            }
            ColdStart::Nothing => {
                tracing::warn!(%master, "the fleet was not shut down cleanly and no instance left a dump.rdb: everything the fleet held is lost (instances run without persistence)")
            }
            ColdStart::New => {}
        }
        let keeps = start.keeps();
        let saved = match start {
            ColdStart::Saved { record, .. } => Some(record),
            _ => None,
        };
        Ok((keeps, saved))
    }

    /// Drops processes that exited from `running`, remembering why in `down`. Each look is a
    /// syscall that returns at once ([`Process::alive`]), so the mutex is held for no I/O.
    fn forget_exited(&self, processes: &mut Processes) {
        let exited: Vec<(u16, u32)> = processes
            .running
            .iter_mut()
            .filter_map(|(&ordinal, process)| (!process.alive()).then(|| (ordinal, process.pid())))
            .collect();
        for (ordinal, pid) in exited {
            processes.running.remove(&ordinal);
            processes.down.insert(ordinal, format!("redis-server pid {pid} exited"));
        }
    }

    /// [`process::adoptable`] off the async workers (it reads files and knocks on the port);
    /// `None` when there is nothing to adopt or the look failed.
    async fn adoptable(&self, ordinal: u16, port: u16) -> Option<process::Adopted> {
        let dir = self.dir(ordinal);
        let look = move || process::adoptable(&Identity { host: HOST, port, dir: &dir });
        tokio::task::spawn_blocking(look).await.ok()?.ok()?
    }

    /// Why `member` (not running as ours) counts as gone, or `None` when it is to be probed
    /// like any member: something answers on its address and it is not the recorded master.
    /// Whatever answers there is then probed, and fenced if it claims master; the recorded
    /// master's address answering with anything but our process is no evidence that it serves.
    async fn gone(&self, member: &Member, is_master: bool, why: String) -> Option<String> {
        let address = (HOST, member.endpoint.port);
        let answers = matches!(
            tokio::time::timeout(KNOCK, tokio::net::TcpStream::connect(address)).await,
            Ok(Ok(_))
        );
        let first = {
            let mut processes = self.lock();
            if answers {
                processes.foreign.insert(member.ordinal)
            } else {
                processes.foreign.remove(&member.ordinal);
                false
            }
        };
        if answers && first {
            tracing::warn!(instance = %member.id, %why, "something the fleet did not start answers on this instance's address: it is probed like any member, and fenced if it claims master");
        }
        (is_master || !answers).then_some(why)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
            owns_processes: true,
        };
        assert!(matches!(LocalFleet::open(config), Err(ClusterError::StateCorrupt { .. })));
    }
}
