//! A scratch instance: a throwaway `redis-server` child a restore test loads a snapshot into.
//! Never a member of any fleet: a free loopback port, its own new directory under the system
//! temp dir (mode 0700), no persistence (`--save "" --appendonly no`), the policy's password
//! (so nothing else on the host reads the restored data), and the same minimal environment as
//! the fleet's instances ([`super::process::command`]).
//!
//! [`Scratch`] is a guard: [`Scratch::discard`] kills the process by its pid (through a pidfd)
//! and removes the directory; dropping it without that does the same without waiting, so a
//! restore test that fails or is cancelled at any point leaves no process and no data behind.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use rustix::process::Signal;

use super::process::Process;
use super::{HOST, POLL, START_DEADLINE, write_auth_config};
use crate::cluster::ClusterError;
use crate::sample::redis::{Access, Endpoint};

/// Attempts at a free port: another process may take the one found before redis-server binds it.
const PORT_ATTEMPTS: usize = 3;
/// Lines of the scratch's log kept for an error: redis-server says there why a load failed.
const LOG_LINES: usize = 8;

/// A running scratch instance; see the module documentation.
pub struct Scratch {
    process: Option<Process>,
    dir: PathBuf,
    endpoint: Endpoint,
}

impl Scratch {
    /// Starts `redis-server` (a path, or a name looked up on `PATH`) on a free loopback port
    /// and waits until it listens, at most [`START_DEADLINE`]. With a password in `access`, it
    /// demands it (and sends it to the master it is pointed at). `databases`: how many it
    /// has (at least 16, Redis's default): an RDB naming a database past that stops the load.
    pub async fn start(
        redis_server: &str,
        access: &Access,
        databases: u32,
    ) -> Result<Self, ClusterError> {
        let dir = new_dir()?;
        // The guard exists from here on: every failure below removes the directory.
        let mut scratch = Self {
            process: None,
            dir,
            endpoint: Endpoint { id: "scratch".into(), host: HOST.into(), port: 0 },
        };
        let mut last = None;
        for _ in 0..PORT_ATTEMPTS {
            match scratch.spawn(redis_server, access, databases.max(16)).await {
                Ok(()) => return Ok(scratch),
                Err(error @ ClusterError::Spawn { .. }) => return Err(error),
                Err(error) => last = Some(error),
            }
        }
        Err(last.unwrap_or_else(|| ClusterError::Start {
            instance: "scratch".into(),
            why: "no attempt was made".into(),
            log: scratch.log(),
        }))
    }

    async fn spawn(
        &mut self,
        redis_server: &str,
        access: &Access,
        databases: u32,
    ) -> Result<(), ClusterError> {
        let port = free_port().map_err(|source| ClusterError::Spawn {
            binary: redis_server.to_owned(),
            instance: "scratch".into(),
            source,
        })?;
        self.endpoint = Endpoint { id: format!("scratch {HOST}:{port}"), host: HOST.into(), port };
        let auth = write_auth_config(&self.dir, access)?;
        let mut command = super::process::command(redis_server);
        // A config file must come first on redis-server's command line.
        if let Some(auth) = auth {
            command.arg(auth);
        }
        let child = command
            .arg("--port")
            .arg(port.to_string())
            .args(["--bind", HOST, "--daemonize", "no"])
            .arg("--dir")
            .arg(&self.dir)
            .arg("--logfile")
            .arg(self.log())
            .args(["--save", "", "--appendonly", "no"])
            .arg("--databases")
            .arg(databases.to_string())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|source| ClusterError::Spawn {
                binary: redis_server.to_owned(),
                instance: self.endpoint.id.clone(),
                source,
            })?;
        let mut process = Process::Child(child);
        let failed = |why: String, log: PathBuf| ClusterError::Start {
            instance: format!("scratch {HOST}:{port}"),
            why,
            log,
        };
        let deadline = Instant::now() + START_DEADLINE;
        loop {
            if !process.alive() {
                return Err(failed(
                    format!("redis-server exited: {}", self.log_tail()),
                    self.log(),
                ));
            }
            if tokio::net::TcpStream::connect((HOST, port)).await.is_ok() {
                tracing::debug!(instance = %self.endpoint.id, pid = process.pid(), "scratch instance started");
                self.process = Some(process);
                return Ok(());
            }
            if Instant::now() >= deadline {
                let _ = process.signal(Signal::KILL);
                reap(&mut process).await;
                return Err(failed(format!("not listening after {START_DEADLINE:?}"), self.log()));
            }
            tokio::time::sleep(POLL).await;
        }
    }

    pub fn endpoint(&self) -> &Endpoint {
        &self.endpoint
    }

    /// The process's pid, while it runs.
    pub fn pid(&self) -> Option<u32> {
        self.process.as_ref().map(Process::pid)
    }

    /// The scratch's directory (removed by [`Self::discard`] or drop).
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    fn log(&self) -> PathBuf {
        self.dir.join("redis.log")
    }

    /// The last lines of redis-server's log, one line: why a load was refused, say.
    pub fn log_tail(&self) -> String {
        let text = std::fs::read_to_string(self.log()).unwrap_or_default();
        let lines: Vec<&str> = text.lines().filter(|l| !l.trim().is_empty()).collect();
        lines[lines.len().saturating_sub(LOG_LINES)..].join(" | ")
    }

    /// Kills the process (SIGKILL: nothing in it is worth a clean shutdown), waits for it to
    /// exit, and removes the directory.
    pub async fn discard(mut self) {
        if let Some(mut process) = self.process.take() {
            let _ = process.signal(Signal::KILL);
            reap(&mut process).await;
        }
        // `Drop` removes the directory.
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        if let Some(mut process) = self.process.take() {
            // Not awaited here: SIGKILL ends it within moments, and the child is reaped by
            // the last `alive` look below or, failing that, becomes the init's to reap once
            // this process exits.
            let _ = process.signal(Signal::KILL);
            let _ = process.alive();
        }
        if let Err(error) = std::fs::remove_dir_all(&self.dir)
            && error.kind() != std::io::ErrorKind::NotFound
        {
            tracing::warn!(dir = %self.dir.display(), error = %error, "cannot remove the scratch instance's directory");
        }
    }
}

/// Waits (bounded) until `process` has exited, reaping it.
async fn reap(process: &mut Process) {
    let deadline = Instant::now() + Duration::from_secs(5);
    while process.alive() && Instant::now() < deadline {
        tokio::time::sleep(POLL).await;
    }
}

/// A new directory of our own (mode 0700) under the system temp dir: `create_dir` fails if
/// the name exists, so nothing planted there is used.
fn new_dir() -> Result<PathBuf, ClusterError> {
    use std::os::unix::fs::DirBuilderExt as _;
    let base = std::env::temp_dir();
    let mut attempt = 0;
    loop {
        let dir = base.join(format!("redis-autopilot-scratch-{}", uuid::Uuid::new_v4().simple()));
        match std::fs::DirBuilder::new().mode(0o700).create(&dir) {
            Ok(()) => return Ok(dir),
            // A random name taken: try another, a few times.
            Err(source) if source.kind() == std::io::ErrorKind::AlreadyExists && attempt < 3 => {
                attempt += 1;
            }
            Err(source) => {
                return Err(ClusterError::StateIo { action: "create", path: dir, source });
            }
        }
    }
}

/// A loopback port nothing listens on now.
fn free_port() -> std::io::Result<u16> {
    Ok(std::net::TcpListener::bind((HOST, 0))?.local_addr()?.port())
}
