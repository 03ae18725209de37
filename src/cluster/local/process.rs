//! The local fleet's processes: a `redis-server` started with a minimal environment, one a
//! previous daemon started recognised for what it is (never a stranger behind a reused pid or
//! a stale `redis.pid`), and signals sent through a pidfd, so a pid that changed hands between
//! the check and the signal is never hit. No subprocess, no `unsafe`, nothing that blocks:
//! liveness is `Child::try_wait` for our children and a zero-timeout `poll` of the pidfd kept
//! for an adopted one (readable once it exited), so a probe's liveness check is a syscall that
//! returns at once, never a `/proc` read. Adopting one ([`adoptable`]) reads files and knocks
//! on its port: callers run it off the async workers.

use std::os::fd::OwnedFd;
use std::path::Path;
use std::process::{Child, Command};
use std::time::Duration;

use rustix::event::{PollFd, PollFlags, Timespec, poll};
use rustix::process::{Pid, PidfdFlags, Signal, pidfd_open, pidfd_send_signal};

/// Where an instance is: what a process must match to be taken for it.
#[derive(Debug, Clone, Copy)]
pub(super) struct Identity<'a> {
    pub host: &'a str,
    pub port: u16,
    /// The instance's canonical `--dir`, which redis-server makes its working directory.
    pub dir: &'a Path,
}

/// A running instance: our child, or one a previous daemon started, adopted only once proven
/// to be the instance ([`identify`]).
pub(super) enum Process {
    Child(Child),
    Adopted(Adopted),
}

/// A process a previous daemon started: its pid, and a pidfd opened *before* it was proven to
/// be the instance, so the fd names that very process for as long as it is kept, whatever
/// later happens to the pid.
#[derive(Debug)]
pub(super) struct Adopted {
    pid: u32,
    fd: OwnedFd,
}

impl Process {
    pub fn pid(&self) -> u32 {
        match self {
            Process::Child(child) => child.id(),
            Process::Adopted(adopted) => adopted.pid,
        }
    }

    /// Whether the process is still there (reaping our child if it exited). An adopted one is
    /// alive until its pidfd turns readable, which it does when the process exits: a pid
    /// reused by anything else afterwards is not mistaken for it.
    pub fn alive(&mut self) -> bool {
        match self {
            Process::Child(child) => matches!(child.try_wait(), Ok(None)),
            Process::Adopted(adopted) => {
                let mut fds = [PollFd::new(&adopted.fd, PollFlags::IN)];
                let now = Timespec { tv_sec: 0, tv_nsec: 0 };
                match poll(&mut fds, Some(&now)) {
                    Ok(0) => true,
                    Ok(_) => !fds[0].revents().intersects(PollFlags::IN | PollFlags::HUP),
                    // Interrupted: say alive, the next look decides.
                    Err(_) => true,
                }
            }
        }
    }

    /// Sends `signal` through a pidfd: the adopted process's own (it names the process proven
    /// to be the instance, never whoever holds its pid now), or one opened on our child (its
    /// pid stays ours until we reap it).
    pub fn signal(&mut self, signal: Signal) -> Result<(), String> {
        let pid = self.pid();
        match self {
            Process::Adopted(adopted) => {
                pidfd_send_signal(&adopted.fd, signal).map_err(|e| format!("pid {pid}: {e}"))
            }
            Process::Child(_) => {
                let raw = i32::try_from(pid).ok().and_then(Pid::from_raw).ok_or("not a pid")?;
                let fd =
                    pidfd_open(raw, PidfdFlags::empty()).map_err(|e| format!("pid {pid}: {e}"))?;
                pidfd_send_signal(&fd, signal).map_err(|e| format!("pid {pid}: {e}"))
            }
        }
    }
}

/// Whether `pid` is the redis-server of `identity`: its command line names redis-server and
/// the instance's port (as arguments, or as the process title redis-server sets,
/// `redis-server 127.0.0.1:PORT`), and its working directory is the instance's `--dir`.
/// `Err` says why not. A zombie has no command line and is not the instance.
pub(super) fn identify(pid: u32, identity: &Identity<'_>) -> Result<(), String> {
    let proc = Path::new("/proc").join(pid.to_string());
    let cmdline = std::fs::read(proc.join("cmdline")).map_err(|e| format!("pid {pid}: {e}"))?;
    let text = String::from_utf8_lossy(&cmdline);
    let words: Vec<&str> =
        text.split(['\0', ' ']).filter(|word| !word.is_empty()).collect::<Vec<_>>();
    let shown = || words.join(" ");
    let program = words.first().and_then(|w| w.rsplit('/').next()).unwrap_or("");
    if !program.starts_with("redis-server") {
        return Err(format!("pid {pid} is not a redis-server (`{}`)", shown()));
    }
    let port = identity.port.to_string();
    let address = format!("{}:{port}", identity.host);
    let on_port = words.iter().any(|w| *w == address)
        || words.windows(2).any(|pair| pair[0] == "--port" && pair[1] == port);
    if !on_port {
        return Err(format!("pid {pid} is a redis-server of another port (`{}`)", shown()));
    }
    let cwd = std::fs::read_link(proc.join("cwd")).map_err(|e| format!("pid {pid}: {e}"))?;
    if cwd != identity.dir {
        return Err(format!(
            "pid {pid} is a redis-server of another directory (`{}`)",
            cwd.display()
        ));
    }
    Ok(())
}

/// The process in `dir/redis.pid` if it is provably the instance and its port answers:
/// `Ok(None)` without a pid file, `Err` (why) with one that names anything else. Blocking
/// (file reads, a connect of up to a second): run it off the async workers.
pub(super) fn adoptable(identity: &Identity<'_>) -> Result<Option<Adopted>, String> {
    let path = identity.dir.join("redis.pid");
    let text = match std::fs::read_to_string(&path) {
        Ok(text) => text,
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(error) => return Err(format!("cannot read `{}`: {error}", path.display())),
    };
    let pid: u32 = text
        .trim()
        .parse()
        .map_err(|_| format!("`{}` holds no pid: {:?}", path.display(), text.trim()))?;
    if pid == 0 {
        return Err(format!("`{}` holds pid 0", path.display()));
    }
    // Opened before the check, so the fd names the process that passed it.
    let raw = i32::try_from(pid).ok().and_then(Pid::from_raw).ok_or("not a pid")?;
    let fd = pidfd_open(raw, PidfdFlags::empty())
        .map_err(|e| format!("`{}`: pid {pid}: {e}", path.display()))?;
    identify(pid, identity).map_err(|why| format!("`{}`: {why}", path.display()))?;
    let address = (identity.host, identity.port);
    let answers = std::net::ToSocketAddrs::to_socket_addrs(&address)
        .ok()
        .and_then(|mut addrs| addrs.next())
        .is_some_and(|addr| {
            std::net::TcpStream::connect_timeout(&addr, Duration::from_secs(1)).is_ok()
        });
    if !answers {
        return Err(format!(
            "pid {pid} is the instance's redis-server but its port does not answer"
        ));
    }
    Ok(Some(Adopted { pid, fd }))
}

/// `binary` with nothing of the daemon's environment (cloud credentials, tokens) but `PATH`,
/// which a wrapper script or a name looked up on it needs; redis-server needs nothing else.
pub(super) fn command(binary: &str) -> Command {
    let mut command = Command::new(binary);
    command.env_clear();
    if let Some(path) = std::env::var_os("PATH") {
        command.env("PATH", path);
    }
    command
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An adopted process is watched through its pidfd: alive while it runs, dead once it
    /// exited (here reaped at once, so its pid is free for reuse), with no `/proc` read.
    #[test]
    fn an_adopted_process_is_alive_until_its_pidfd_says_it_exited() {
        let mut child = Command::new("sleep").arg("30").spawn().expect("start sleep");
        let pid = child.id();
        let raw = Pid::from_raw(i32::try_from(pid).unwrap()).unwrap();
        let fd = pidfd_open(raw, PidfdFlags::empty()).expect("pidfd");
        let mut adopted = Process::Adopted(Adopted { pid, fd });
        assert!(adopted.alive());
        adopted.signal(Signal::TERM).expect("signalled through the pidfd");
        child.wait().expect("reaped");
        assert!(!adopted.alive());
        assert!(
            adopted.signal(Signal::KILL).is_err(),
            "a signal to an exited process goes nowhere"
        );
    }

    #[test]
    fn a_process_that_is_not_a_redis_server_is_not_an_instance() {
        let dir = tempfile::tempdir().unwrap();
        let dir = std::fs::canonicalize(dir.path()).unwrap();
        let identity = Identity { host: "127.0.0.1", port: 7000, dir: &dir };
        let why = identify(std::process::id(), &identity).unwrap_err();
        assert!(why.contains("not a redis-server"), "{why}");
        std::fs::write(dir.join("redis.pid"), format!("{}\n", std::process::id())).unwrap();
        let why = adoptable(&identity).unwrap_err();
        assert!(why.contains("redis.pid") && why.contains("not a redis-server"), "{why}");
        std::fs::write(dir.join("redis.pid"), "garbage").unwrap();
        assert!(adoptable(&identity).unwrap_err().contains("holds no pid"));
        std::fs::remove_file(dir.join("redis.pid")).unwrap();
        assert!(matches!(adoptable(&identity), Ok(None)));
    }
}
